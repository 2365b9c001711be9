package tracer_test

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/netns"
	"github.com/tcpscope/tcpscope/tracer/nettest"
	"golang.org/x/sys/unix"
)

// helperEnv makes the test binary a helper process that owns sockets in
// a cgroup of its own (see runHelper).
const helperEnv = "TCPSCOPE_OWNER_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		if err := runHelper(mode); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runHelper, in the namespace passed as fd 3: "serve:N" listens on
// 127.0.0.1 once a line comes on stdin, prints its port, and serves N connections (reads a byte,
// closes first); "dial:ADDR" connects, prints its local port, sends a
// byte and reads until the server closes, from a thread named worker.
func runHelper(mode string) error {
	runtime.LockOSThread() // the namespace is the thread's
	if err := unix.Setns(3, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("entering the namespace: %w", err)
	}
	verb, arg, _ := strings.Cut(mode, ":")
	switch verb {
	case "serve":
		n, err := strconv.Atoi(arg)
		if err != nil {
			return err
		}
		// Listen once told: the test learns the pid first, to filter on it.
		if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
			return fmt.Errorf("waiting for the go: %w", err)
		}
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		fmt.Println(ln.Addr().(*net.TCPAddr).Port)
		for i := 0; i < n; i++ {
			c, err := ln.Accept()
			if err != nil {
				return err
			}
			if _, err := c.Read(make([]byte, 1)); err != nil {
				return err
			}
			c.Close()
		}
		return ln.Close()
	case "dial":
		// From a thread that renamed itself, as thread pools do: the
		// owner is still the process, by its name (see --comm).
		return onThread(3, "worker", func() error { return dialOnce(arg) })
	}
	return fmt.Errorf("unknown helper mode %q", mode)
}

// dialOnce connects to addr, prints its local port, sends a byte and
// reads until the server closes.
func dialOnce(addr string) error {
	c, err := net.DialTimeout("tcp4", addr, 5*time.Second)
	if err != nil {
		return err
	}
	fmt.Println(c.LocalAddr().(*net.TCPAddr).Port)
	if _, err := c.Write([]byte{1}); err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, c)
	c.Close()
	return err
}

// helper is a helper process started in a cgroup, under a task name.
type helper struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

// startHelper runs the test binary as comm (a symlink of that name makes
// it the task name) directly in cgroup dir (clone3 CLONE_INTO_CGROUP), in
// namespace ns.
func startHelper(t *testing.T, ns *netns.NS, cgroup, comm, mode string) *helper {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatalf("finding the test binary: %v", err)
	}
	link := filepath.Join(t.TempDir(), comm)
	if err := os.Symlink(self, link); err != nil {
		t.Fatalf("linking the test binary: %v", err)
	}
	cg, err := unix.Open(cgroup, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("opening cgroup %s: %v", cgroup, err)
	}
	defer unix.Close(cg)
	nsFd, err := unix.Dup(ns.Fd())
	if err != nil {
		t.Fatalf("duplicating the namespace: %v", err)
	}
	nsFile := os.NewFile(uintptr(nsFd), "netns")
	defer nsFile.Close()
	cmd := exec.Command(link, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	cmd.ExtraFiles = []*os.File{nsFile}
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cg}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("piping the helper: %v", err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatalf("piping the helper: %v", err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting helper %s: %v", mode, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return &helper{cmd: cmd, in: stdin, out: bufio.NewReader(stdout)}
}

// port reads the port the helper printed; a server is told to go first.
func (h *helper) port(t *testing.T) uint16 {
	t.Helper()
	if _, err := io.WriteString(h.in, "go\n"); err != nil {
		t.Fatalf("starting the helper: %v", err)
	}
	line, err := h.out.ReadString('\n')
	if err != nil {
		t.Fatalf("reading the helper's port: %v", err)
	}
	p, err := strconv.ParseUint(strings.TrimSpace(line), 10, 16)
	if err != nil {
		t.Fatalf("helper printed %q", line)
	}
	return uint16(p)
}

func (h *helper) wait(t *testing.T) {
	t.Helper()
	if err := h.cmd.Wait(); err != nil {
		t.Fatalf("helper %s: %v", h.cmd.Env[len(h.cmd.Env)-1], err)
	}
}

// testCgroups makes a cgroup for one test under the cgroup2 mount, with
// a child shaped like a Docker container's scope and a plain one, and
// removes them at cleanup (moving out any process left in them).
func testCgroups(t *testing.T) (parent, docker, plain string) {
	t.Helper()
	mount, err := tracer.CgroupMount()
	if err != nil {
		nettest.Unavailable(t, "no cgroup v2: %v", err)
	}
	id := make([]byte, 32)
	rand.Read(id)
	parent = filepath.Join(mount, "tcpscope-test-"+hex.EncodeToString(id[:4]))
	docker = filepath.Join(parent, "docker-"+hex.EncodeToString(id)+".scope")
	plain = filepath.Join(parent, "plain")
	for _, d := range []string{parent, docker, plain} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatalf("creating cgroup: %v", err)
		}
	}
	t.Cleanup(func() {
		for _, d := range []string{docker, plain, parent} {
			evacuate(t, d, mount)
			if err := os.Remove(d); err != nil {
				t.Errorf("removing cgroup: %v", err)
			}
		}
		if _, err := os.Stat(parent); !os.IsNotExist(err) {
			t.Errorf("cgroup %s still exists: %v", parent, err)
		}
	})
	return parent, docker, plain
}

// evacuate moves any process still in cgroup dir to the root cgroup.
func evacuate(t *testing.T, dir, root string) {
	b, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	for _, pid := range strings.Fields(string(b)) {
		if err := os.WriteFile(filepath.Join(root, "cgroup.procs"), []byte(pid), 0); err != nil {
			t.Errorf("moving %s out of %s: %v", pid, dir, err)
		}
	}
}

// ownerNet is what TestOwnerFilters drives: a server in the Docker-shaped
// cgroup, a listener of the test process itself (the root cgroup), and
// three clients: one in the plain cgroup to that server, one in the
// Docker-shaped cgroup to the test's listener, and last one in the
// Docker-shaped cgroup to the server, each finished before the next.
type ownerNet struct {
	ns                    *netns.NS
	srv                   *helper
	parent, docker, plain tracer.CgroupFilter
	serverPort, rootPort  uint16
	// Client ports.
	plainToServer, dockerToRoot, dockerToServer uint16
}

// prepareOwners makes the cgroups and starts the server, which listens
// only once drive says.
func prepareOwners(t *testing.T, ns *netns.NS) *ownerNet {
	n := &ownerNet{ns: ns}
	parent, docker, plain := testCgroups(t)
	n.parent, n.docker, n.plain = resolve(t, parent), resolve(t, docker), resolve(t, plain)
	n.srv = startHelper(t, ns, docker, "cgserve", "serve:2")
	return n
}

func resolve(t *testing.T, dir string) tracer.CgroupFilter {
	t.Helper()
	cg, err := tracer.ResolveCgroup(dir)
	if err != nil {
		t.Fatalf("resolving %s: %v", dir, err)
	}
	return cg
}

// drive runs the traffic.
func (n *ownerNet) drive(t *testing.T) {
	n.serverPort = n.srv.port(t)
	ln := listen(t, n.ns, "tcp4", "127.0.0.1:0")
	n.rootPort = addrPort(t, ln.Addr()).Port()
	served := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_, err = c.Read(make([]byte, 1))
			c.Close()
		}
		served <- err
	}()
	dialFrom := func(cgroup tracer.CgroupFilter, port uint16) uint16 {
		h := startHelper(t, n.ns, cgroup.Path, "cgdial", fmt.Sprintf("dial:127.0.0.1:%d", port))
		p := h.port(t)
		h.wait(t)
		return p
	}
	n.plainToServer = dialFrom(n.plain, n.serverPort)
	n.dockerToRoot = dialFrom(n.docker, n.rootPort)
	if err := <-served; err != nil {
		t.Fatalf("test listener: %v", err)
	}
	n.dockerToServer = dialFrom(n.docker, n.serverPort)
	n.srv.wait(t)
}

// socket is one end of a connection, by its ports.
type socket struct {
	local, remote uint16
	cgroup        uint64 // its owner's
}

// ends names every connection end ownerNet makes.
func (n *ownerNet) ends() map[string]socket {
	return map[string]socket{
		"plain client to server":  {n.plainToServer, n.serverPort, n.plain.ID},
		"server child of plain":   {n.serverPort, n.plainToServer, n.docker.ID},
		"docker client to root":   {n.dockerToRoot, n.rootPort, n.docker.ID},
		"root child of docker":    {n.rootPort, n.dockerToRoot, 0},
		"docker client to server": {n.dockerToServer, n.serverPort, n.docker.ID},
		"server child of docker":  {n.serverPort, n.dockerToServer, n.docker.ID},
	}
}

// TestOwnerFilters: the kernel's cgroup, pid and comm filters keep
// exactly the connection ends whose owner matches (a server child by its
// listener's owner, though its handshake runs in softirq context), in
// both modes, and every kept event carries its owner's cgroup id.
func TestOwnerFilters(t *testing.T) {
	cases := []struct {
		name string
		cfg  func(n *ownerNet) tracer.Config
		kept []string
	}{
		{"cgroup", func(n *ownerNet) tracer.Config {
			return tracer.Config{Cgroups: []tracer.CgroupFilter{n.docker}}
		}, []string{"server child of plain", "docker client to root", "docker client to server", "server child of docker"}},
		{"cgroup-subtree", func(n *ownerNet) tracer.Config {
			return tracer.Config{Cgroups: []tracer.CgroupFilter{n.parent}}
		}, []string{"plain client to server", "server child of plain", "docker client to root", "docker client to server", "server child of docker"}},
		{"pid", func(n *ownerNet) tracer.Config {
			return tracer.Config{PIDs: []uint32{uint32(n.srv.cmd.Process.Pid)}}
		}, []string{"server child of plain", "server child of docker"}},
		{"comm", func(n *ownerNet) tracer.Config {
			return tracer.Config{Comms: []string{"cgdial"}}
		}, []string{"plain client to server", "docker client to root", "docker client to server"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			modes(t, func(t *testing.T, events bool) {
				ns := newNS(t)
				n := prepareOwners(t, ns)
				cfg := tc.cfg(n)
				cfg.Events = events
				col := traceNS(t, ns, cfg)
				n.drive(t)
				checkOwners(t, col, n, tc.kept)
			})
		})
	}
}

// checkOwners waits for the kept ends to close, then checks that no event
// came from another socket, and the cgroup of every event.
func checkOwners(t *testing.T, col *collector, n *ownerNet, kept []string) {
	ends := n.ends()
	evs := col.waitFor(t, "the kept ends to close", 10*time.Second, func(evs []tracer.Event) bool {
		for _, name := range kept {
			if _, ok := find(evs, func(e tracer.Event) bool { return isEnd(e, ends[name]) && e.NewState == tracer.StateClose }); !ok {
				return false
			}
		}
		return true
	})
	allowed := map[uint64]uint64{} // cookie: cgroup
	for name, s := range ends {
		seen := false
		for _, e := range evs {
			if isEnd(e, s) {
				seen = true
				allowed[e.Cookie] = s.cgroup
			}
		}
		if want := slices.Contains(kept, name); seen != want {
			t.Errorf("%s (ports %d->%d): recorded %v, want %v", name, s.local, s.remote, seen, want)
		}
	}
	if slices.Contains(kept, "server child of docker") {
		if l, ok := find(evs, func(e tracer.Event) bool { return e.NewState == tracer.StateListen }); ok {
			allowed[l.Cookie] = n.docker.ID
		} else {
			t.Errorf("the server's listener was not recorded")
		}
	}
	for _, e := range evs {
		want, ok := allowed[e.Cookie]
		switch {
		case !ok:
			t.Errorf("event of a socket the filter leaves out: %s %s->%s %s->%s", e.Kind, e.Local, e.Remote, e.OldState, e.NewState)
		case e.CgroupID != want:
			t.Errorf("%s %s->%s %s->%s: cgroup %d, want %d", e.Kind, e.Local, e.Remote, e.OldState, e.NewState, e.CgroupID, want)
		}
	}
}

// isEnd tells whether e is about socket s (a per-event SYN_SENT, whose
// port is not chosen yet, is matched by its cookie instead).
func isEnd(e tracer.Event, s socket) bool {
	return e.Local.Port() == s.local && e.Remote.Port() == s.remote
}
