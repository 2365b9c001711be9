package main

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpscope/tcpscope/output"
	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/cgroups"
	"github.com/tcpscope/tcpscope/tracer/netns"
	"github.com/tcpscope/tcpscope/tracer/nettest"
)

// helperClient (TCPSCOPE_TEST_HELPER=client) enters the namespace passed
// as fd 3 and opens and closes TCPSCOPE_CONNS connections to
// TCPSCOPE_ADDR: a client process of its own, which a test can start in a
// cgroup.
func helperClient() {
	enterNetNSFd3()
	n, _ := strconv.Atoi(os.Getenv("TCPSCOPE_CONNS"))
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", os.Getenv("TCPSCOPE_ADDR"), 5*time.Second)
		if err != nil {
			fmt.Fprintln(os.Stderr, "dial:", err)
			os.Exit(1)
		}
		c.Close()
	}
	os.Exit(0)
}

// testCgroups are cgroups a test made under the cgroup2 mount, shaped as
// runtimes name theirs, below one directory of its own.
type testCgroups struct {
	mount, top string
	dirs       []string // made in this order, removed in reverse
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n/2)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// makeCgroups makes top and the given paths below it. The cgroups are
// removed at cleanup if the test did not remove them.
func makeCgroups(t *testing.T, paths ...string) *testCgroups {
	t.Helper()
	mount, err := cgroups.FindMount()
	if err != nil {
		nettest.Unavailable(t, "no cgroup v2: %v", err)
	}
	cg := &testCgroups{mount: mount, top: "/tcpscope-test-" + randomHex(t, 8)}
	t.Cleanup(func() {
		if err := cg.remove(); err != nil {
			t.Errorf("removing the test's cgroups: %v", err)
		}
	})
	for _, p := range append([]string{""}, paths...) {
		for _, dir := range pathsDown(cg.top + p) {
			if slices.Contains(cg.dirs, dir) {
				continue
			}
			if err := os.Mkdir(filepath.Join(mount, dir), 0o755); err != nil {
				t.Fatalf("making cgroup %s: %v", dir, err)
			}
			cg.dirs = append(cg.dirs, dir)
		}
	}
	return cg
}

// pathsDown lists /a, /a/b, /a/b/c for /a/b/c.
func pathsDown(p string) []string {
	var out []string
	parts := strings.Split(strings.Trim(p, "/"), "/")
	for i := range parts {
		out = append(out, "/"+strings.Join(parts[:i+1], "/"))
	}
	return out
}

// remove removes every cgroup made, deepest first; a cgroup that still
// holds a process cannot be removed (EBUSY).
func (cg *testCgroups) remove() error {
	var errs []error
	for i := len(cg.dirs) - 1; i >= 0; i-- {
		if err := os.Remove(filepath.Join(cg.mount, cg.dirs[i])); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// open returns a descriptor of the cgroup at path (below the mount), for
// starting a process in it (SysProcAttr.CgroupFD).
func (cg *testCgroups) open(t *testing.T, path string) int {
	t.Helper()
	fd, err := unix.Open(filepath.Join(cg.mount, path), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func (cg *testCgroups) id(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(cg.mount, path), &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// helperIn starts the test binary as helper (server or client) in ns and
// in the cgroup cgFD: the process is born there (clone3's
// CLONE_INTO_CGROUP), so every socket it makes is the cgroup's.
func helperIn(t *testing.T, ns *netns.NS, cgFD int, helper string, env ...string) (*exec.Cmd, *bufio.Reader) {
	t.Helper()
	dup, err := unix.Dup(ns.Fd())
	if err != nil {
		t.Fatal(err)
	}
	nsFile := os.NewFile(uintptr(dup), "netns")
	defer nsFile.Close()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(append(os.Environ(), "TCPSCOPE_TEST_HELPER="+helper), env...)
	cmd.ExtraFiles = []*os.File{nsFile}
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cgFD}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the %s helper in a cgroup: %v", helper, err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, bufio.NewReader(out)
}

// TestRecordCgroups: a server born in a Docker-shaped cgroup, a client in
// a Kubernetes-shaped one, a client in a plain one and the test itself (in
// its own cgroup) talk in a private namespace; the cgroups are removed
// before the records are written. The export names each end's cgroup,
// container, runtime and pod, in both kernel modes and with the kernel
// keeping only the test's cgroups (record --cgroup), which leaves out the
// test's own client end; report --container and --cgroup select them.
func TestRecordCgroups(t *testing.T) {
	nettest.RequirePrivileges(t)
	for _, mode := range []struct {
		name     string
		args     []string
		filtered bool
	}{{"aggregated", nil, false}, {"events", []string{"--events"}, false}, {"kernel-filter", nil, true}} {
		t.Run(mode.name, func(t *testing.T) { testRecordCgroups(t, mode.args, mode.filtered) })
	}
}

// cgroupEnds are the cgroups of TestRecordCgroups, as the export should
// name them.
type cgroupEnds struct {
	cg                          *testCgroups
	docker, cri                 string
	server, client, plain       cgroups.Info
	serverID, clientID, plainID uint64
}

func newCgroupEnds(t *testing.T) *cgroupEnds {
	e := &cgroupEnds{docker: randomHex(t, 64), cri: randomHex(t, 64)}
	u := randomHex(t, 32)
	pod := u[:8] + "-" + u[8:12] + "-" + u[12:16] + "-" + u[16:20] + "-" + u[20:]
	serverPath := "/docker-" + e.docker + ".scope"
	clientPath := "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + strings.ReplaceAll(pod, "-", "_") +
		".slice/cri-containerd-" + e.cri + ".scope"
	e.cg = makeCgroups(t, serverPath, clientPath, "/plain")
	top := e.cg.top
	e.server = cgroups.Info{Path: top + serverPath, ContainerID: e.docker, Runtime: cgroups.RuntimeDocker}
	e.client = cgroups.Info{Path: top + clientPath, ContainerID: e.cri, Runtime: cgroups.RuntimeContainerd, PodUID: pod}
	e.plain = cgroups.Info{Path: top + "/plain"}
	e.serverID, e.clientID, e.plainID = e.cg.id(t, e.server.Path), e.cg.id(t, e.client.Path), e.cg.id(t, e.plain.Path)
	return e
}

// ownCgroup is the test process's cgroup v2 path, from /proc/self/cgroup.
func ownCgroup(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return p
		}
	}
	t.Fatalf("no cgroup v2 line in /proc/self/cgroup:\n%s", b)
	return ""
}

func testRecordCgroups(t *testing.T, args []string, filtered bool) {
	e := newCgroupEnds(t)
	ns := nettest.New(t)
	if filtered {
		args = append(args, "--cgroup", e.cg.top)
	}
	rec := startRecord(t, ns, "cg.jsonl", args...)
	server, out := helperIn(t, ns, e.cg.open(t, e.server.Path), "server",
		"TCPSCOPE_NETWORK=tcp4", "TCPSCOPE_ADDR=127.0.0.1:0", "TCPSCOPE_MODE=client-closes", "TCPSCOPE_CONNS=3")
	port, err := out.ReadString('\n')
	if err != nil {
		t.Fatalf("the server did not start: %v", err)
	}
	addr := "127.0.0.1:" + strings.TrimSpace(port)
	owners := map[uint32]cgroups.Info{uint32(os.Getpid()): cgroups.Parse(ownCgroup(t))}
	for _, want := range []cgroups.Info{e.client, e.plain} {
		client, _ := helperIn(t, ns, e.cg.open(t, want.Path), "client", "TCPSCOPE_ADDR="+addr, "TCPSCOPE_CONNS=1")
		if err := client.Wait(); err != nil {
			t.Fatalf("client in %s: %v", want.Path, err)
		}
		owners[uint32(client.Process.Pid)] = want
	}
	dialClose(t, ns, addr, 1) // from the test's own cgroup
	if err := server.Wait(); err != nil {
		t.Fatalf("server: %v", err)
	}
	// Every process is gone: the cgroups go too, before the recorder
	// writes the records (a grace second after each close) and the
	// listener (at the end).
	if err := e.cg.remove(); err != nil {
		t.Fatalf("removing the cgroups: %v", err)
	}
	for _, dir := range e.cg.dirs {
		if _, err := os.Stat(filepath.Join(e.cg.mount, dir)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("cgroup %s still there: %v", dir, err)
		}
	}
	wantClients := 3
	if filtered {
		wantClients = 2 // not the test's own end
		delete(owners, uint32(os.Getpid()))
	}
	rec.waitConnections(t, 3+wantClients, 30*time.Second)
	e.check(t, rec.stop(t), owners, wantClients)
	if slices.Contains(args, "--events") {
		// The event lines say where each server event's owner runs.
		want := "127.0.0.1:" + strings.TrimSpace(port) + " "
		in := "(in docker:" + e.docker[:12] + ")"
		n := 0
		for _, line := range strings.Split(rec.stdout.String(), "\n") {
			if strings.Contains(line, want) && strings.HasSuffix(line, in) {
				n++
			}
		}
		if n == 0 {
			t.Errorf("no event line of the server ends with %q:\n%s", in, rec.stdout.String())
		}
	}
	checkReportSelects(t, rec.path, e.cg.top, e.docker, e.cri)
}

// check checks each record's cgroup: the server's three ends and its
// listener in the Docker-shaped cgroup, each client's in its own.
func (e *cgroupEnds) check(t *testing.T, r *output.Recording, owners map[uint32]cgroups.Info, wantClients int) {
	t.Helper()
	servers := byRole(t, r, tracer.RoleServer)
	if len(servers) != 3 {
		t.Fatalf("%d server records, want 3: %s", len(servers), dumpJSON(r.Connections))
	}
	for _, c := range servers {
		checkOwner(t, c, e.serverID, e.server)
	}
	clients := byRole(t, r, tracer.RoleClient)
	if len(clients) != wantClients {
		t.Fatalf("%d client records, want %d: %s", len(clients), wantClients, dumpJSON(r.Connections))
	}
	ids := map[string]uint64{e.client.Path: e.clientID, e.plain.Path: e.plainID}
	for _, c := range clients {
		want, ok := owners[c.PID]
		if !ok {
			t.Errorf("client record of pid %d, which is none of %v", c.PID, owners)
			continue
		}
		if id, ours := ids[want.Path]; ours {
			checkOwner(t, c, id, want)
		} else if c.Cgroup != want || c.CgroupID == 0 {
			t.Errorf("the test's own client end: cgroup %d %+v, want %+v", c.CgroupID, c.Cgroup, want)
		}
	}
	i := slices.IndexFunc(r.Listeners, func(l output.ListenerRow) bool { return l.Local.Port() == servers[0].Local.Port() })
	if i < 0 || r.Listeners[i].CgroupID != e.serverID || r.Listeners[i].Cgroup != e.server {
		t.Errorf("listener records %+v: want one with cgroup %d %+v", r.Listeners, e.serverID, e.server)
	}
}

// checkOwner checks a record's cgroup id (the directory's inode, as the
// test made it) and what its path was read as.
func checkOwner(t *testing.T, c tracer.Connection, id uint64, want cgroups.Info) {
	t.Helper()
	if c.CgroupID != id || c.Cgroup != want {
		t.Errorf("%s %d (%s/%d): cgroup %d %+v, want %d %+v", c.Role, c.ID, c.Comm, c.PID, c.CgroupID, c.Cgroup, id, want)
	}
}

// checkReportSelects: report's filters pick each end by its container and
// cgroup.
func checkReportSelects(t *testing.T, path, top, docker, cri string) {
	t.Helper()
	count := func(args ...string) int { return len(reportIDs(t, path, args...)) }
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"--container", "docker:" + docker[:12]}, 3},
		{[]string{"--container", cri[:8]}, 1},
		{[]string{"--container", "containerd:" + cri[:8], "--pid", "1"}, 0},
		{[]string{"--cgroup", top}, 5},
		{[]string{"--cgroup", top + "/plain"}, 1},
		{[]string{"--cgroup", top + "/kubepods.slice"}, 1},
	} {
		if got := count(tc.args...); got != tc.want {
			t.Errorf("report %q: %d connections, want %d", tc.args, got, tc.want)
		}
	}
}
