package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/output"
	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/netns"
	"github.com/tcpscope/tcpscope/tracer/nettest"
	"golang.org/x/sys/unix"
)

// enterNetNSFd3 puts a helper process's thread into the network namespace
// its parent passed as fd 3, or ends the process.
func enterNetNSFd3() {
	runtime.LockOSThread()
	if err := unix.Setns(3, unix.CLONE_NEWNET); err != nil {
		fmt.Fprintln(os.Stderr, "setns:", err)
		os.Exit(1)
	}
}

// helperServer runs in a child process (the test binary re-executed with
// TCPSCOPE_TEST_HELPER=server): it enters the namespace passed as fd 3,
// listens, prints its port, and serves TCPSCOPE_CONNS connections the way
// TCPSCOPE_MODE says. Being its own process, it shows that a server-side
// connection's owner is the listener's process, not whoever the softirq
// interrupted.
func helperServer() {
	enterNetNSFd3()
	ln, err := net.Listen(os.Getenv("TCPSCOPE_NETWORK"), os.Getenv("TCPSCOPE_ADDR"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	n, _ := strconv.Atoi(os.Getenv("TCPSCOPE_CONNS"))
	mode := os.Getenv("TCPSCOPE_MODE")
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		c, err := ln.Accept()
		if err != nil {
			os.Exit(1)
		}
		wg.Add(1)
		go func(c *net.TCPConn) {
			defer wg.Done()
			serve(c, mode)
		}(c.(*net.TCPConn))
	}
	wg.Wait()
	ln.Close()
	os.Exit(0)
}

func serve(c *net.TCPConn, mode string) {
	buf := make([]byte, 64)
	switch mode {
	case "client-closes": // read until the client's FIN, then close
		io.Copy(io.Discard, c)
	case "server-closes":
	case "linger0": // read the request, then abort: RST with reason TCP_STATE
		c.Read(buf)
		c.SetLinger(0)
	case "unread": // close while the request is unread: RST, TCP_ABORT_ON_CLOSE
		if err := awaitUnread(c, 10*time.Second); err != nil {
			fmt.Fprintln(os.Stderr, "helper server:", err)
		}
	case "echo": // answer each read until EOF
		for {
			n, err := c.Read(buf)
			if err != nil {
				break
			}
			c.Write(buf[:n])
		}
	}
	c.Close()
}

// awaitUnread waits, without reading, until data sits in c's receive
// queue: poll(2) for POLLIN, then SIOCINQ to tell data from a bare FIN.
func awaitUnread(c *net.TCPConn, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	pfd := []unix.PollFd{{Fd: int32(fd(c)), Events: unix.POLLIN}}
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("no data to leave unread within %s", limit)
		}
		n, err := unix.Poll(pfd, int(left.Milliseconds())+1)
		if err == unix.EINTR { // the Go runtime's preemption signal
			continue
		}
		if err != nil {
			return fmt.Errorf("polling for data: %w", err)
		}
		if n == 0 {
			continue
		}
		queued, err := unix.IoctlGetInt(fd(c), unix.SIOCINQ)
		if err != nil {
			return fmt.Errorf("reading the receive queue length: %w", err)
		}
		if queued == 0 {
			return errors.New("the peer closed without sending data")
		}
		return nil
	}
}

func fd(c *net.TCPConn) int {
	raw, _ := c.SyscallConn()
	var fd int
	raw.Control(func(f uintptr) { fd = int(f) })
	return fd
}

// helperExecInNS (TCPSCOPE_TEST_HELPER=exec-in-ns) enters the namespace
// named by TCPSCOPE_NETNS_PATH and execs its arguments there: execve from
// the thread that called setns() keeps that namespace.
func helperExecInNS() {
	runtime.LockOSThread()
	fd, err := unix.Open(os.Getenv("TCPSCOPE_NETNS_PATH"), unix.O_RDONLY, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "open netns:", err)
		os.Exit(1)
	}
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		fmt.Fprintln(os.Stderr, "setns:", err)
		os.Exit(1)
	}
	args := os.Args[1:]
	path, err := exec.LookPath(args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(127)
	}
	err = unix.Exec(path, args, os.Environ())
	fmt.Fprintln(os.Stderr, "exec:", err)
	os.Exit(126)
}

// helperSignals (TCPSCOPE_TEST_HELPER=signals) is a CMD for `tcpscope run`
// that shows which signals reach it. It prints "pid N" and "ready", then a
// line per signal: "interrupt N" for the Nth SIGINT, "hangup", and
// "terminate" for SIGTERM, on which it exits with the number of SIGINTs
// seen as its status. TCPSCOPE_SIGNALS=ignore: it ignores SIGINT, SIGTERM
// and SIGHUP; int-exits: it exits 3 on the first SIGINT. It gives up after
// a minute.
func helperSignals() {
	mode := os.Getenv("TCPSCOPE_SIGNALS")
	sigs := make(chan os.Signal, 8)
	if mode == "ignore" {
		signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	} else {
		signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	}
	fmt.Printf("pid %d\nready\n", os.Getpid())
	interrupts := 0
	giveUp := time.After(time.Minute)
	for {
		select {
		case sig := <-sigs:
			switch sig {
			case syscall.SIGINT:
				interrupts++
				fmt.Printf("interrupt %d\n", interrupts)
				if mode == "int-exits" {
					os.Exit(3)
				}
			case syscall.SIGHUP:
				fmt.Println("hangup")
			case syscall.SIGTERM:
				fmt.Println("terminate")
				os.Exit(interrupts)
			}
		case <-giveUp:
			fmt.Println("gave up")
			os.Exit(99)
		}
	}
}

// inNS returns a command line that runs args inside ns, for tcpscope run.
func inNS(t *testing.T, ns *netns.NS, args ...string) ([]string, []string) {
	t.Helper()
	env := []string{"TCPSCOPE_TEST_HELPER=exec-in-ns", fmt.Sprintf("TCPSCOPE_NETNS_PATH=/proc/%d/fd/%d", os.Getpid(), ns.Fd())}
	return append([]string{os.Args[0]}, args...), env
}

// startServer starts the helper server in ns and returns its address and pid.
func startServer(t *testing.T, ns *netns.NS, network, addr, mode string, conns int) (string, int) {
	t.Helper()
	dup, err := unix.Dup(ns.Fd())
	if err != nil {
		t.Fatal(err)
	}
	nsFile := os.NewFile(uintptr(dup), "netns")
	defer nsFile.Close()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "TCPSCOPE_TEST_HELPER=server", "TCPSCOPE_NETWORK="+network,
		"TCPSCOPE_ADDR="+addr, "TCPSCOPE_MODE="+mode, "TCPSCOPE_CONNS="+strconv.Itoa(conns))
	cmd.ExtraFiles = []*os.File{nsFile}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("helper server did not start: %v", err)
	}
	host, _, _ := net.SplitHostPort(addr)
	return net.JoinHostPort(host, strings.TrimSpace(line)), cmd.Process.Pid
}

// recording is a `tcpscope record` process writing an export.
type recording struct {
	cmd    *exec.Cmd
	path   string
	stdout *lockedBuffer
	stderr *lockedBuffer
	done   chan error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startRecord runs tcpscope record on one namespace (every namespace when
// ns is nil) and returns once its --ready-file says every program is
// attached.
func startRecord(t *testing.T, ns *netns.NS, name string, args ...string) *recording {
	t.Helper()
	// The ready file in a directory of its own: tests look at what the
	// export's directory holds.
	path, ready := filepath.Join(t.TempDir(), name), filepath.Join(t.TempDir(), "ready")
	r := &recording{path: path, stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, done: make(chan error, 1)}
	if ns != nil {
		args = append([]string{"--netns", fmt.Sprint(ns.Inode)}, args...)
	}
	args = append([]string{"record", "-o", path, "--duration", "60s", "--ready-file", ready}, args...)
	r.cmd = exec.Command(binary, args...)
	r.cmd.Stdout, r.cmd.Stderr = r.stdout, r.stderr
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.done <- r.cmd.Wait() }()
	t.Cleanup(func() { r.cmd.Process.Kill(); <-r.done })
	waitReady(t, ready, r.cmd.Process.Pid, r.done, r.stderr)
	return r
}

// waitReady waits until tcpscope (pid) has written its --ready-file,
// failing the test when tcpscope exits first or takes over a minute (which
// startPiped starts cmd with its stdout on the write end pw of a pipe (the
// test keeps the read end) and stderr into stderr, and waits for its
// --ready-file; the channel gets cmd's exit.
func startPiped(t *testing.T, cmd *exec.Cmd, pw *os.File, stderr *lockedBuffer, ready string) chan error {
	t.Helper()
	cmd.Stdout, cmd.Stderr = pw, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	waitReady(t, ready, cmd.Process.Pid, done, stderr)
	return done
}

// is polling with a deadline). An exit status read from done is put back.
func waitReady(t *testing.T, path string, pid int, done chan error, stderr fmt.Stringer) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if b, err := os.ReadFile(path); err == nil {
			if got := strings.TrimSpace(string(b)); got != fmt.Sprint(pid) {
				t.Fatalf("ready file holds %q, want tcpscope's pid %d", got, pid)
			}
			return
		}
		select {
		case err := <-done:
			done <- err
			t.Fatalf("tcpscope exited before it was ready (%v): %s", err, stderr.String())
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			t.Fatalf("tcpscope not ready after a minute: %s", stderr.String())
		}
	}
}

// waitConnections waits until the export holds n connection records: the
// recorder writes each one a grace second after it closed.
func (r *recording) waitConnections(t *testing.T, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for got := 0; ; <-tick.C {
		got = exportedConnections(r.path)
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d connection records after %v; stderr:\n%s", got, n, timeout, r.stderr.String())
		}
	}
}

// exportedConnections counts the connection records an export being
// written holds so far.
func exportedConnections(path string) int {
	if !strings.HasSuffix(path, output.ZstdSuffix) {
		data, _ := os.ReadFile(path)
		return bytes.Count(data, []byte(`{"type":"connection"`))
	}
	n := 0
	count := func(*tracer.Connection) error { n++; return nil }
	output.ReadExportWith(path, output.ReadOptions{FlaggedTimelinesOnly: true, Connection: count})
	return n
}

// stop interrupts tcpscope like Ctrl-C and returns its validated export.
func (r *recording) stop(t *testing.T) *output.Recording { return r.stopSample(t, 0) }

// stopSample is stop for big exports: the schema check covers the first n
// lines and the last (every line is still parsed).
func (r *recording) stopSample(t *testing.T, n int) *output.Recording {
	t.Helper()
	r.cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-r.done:
		r.done <- err
		if err != nil {
			t.Fatalf("tcpscope record: %v\n%s", err, r.stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("tcpscope record did not stop on SIGINT")
	}
	if err := output.ValidateExportSample(r.path, n); err != nil {
		t.Fatalf("export does not match the schema: %v", err)
	}
	if os.Getenv("TCPSCOPE_TEST_SHOW") != "" {
		t.Logf("tcpscope record output:\n%s", r.stdout.String())
	}
	rec, err := output.ReadExport(r.path)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Summary == nil {
		t.Fatalf("export has no summary")
	}
	// Every tracepoint attached reports its recursion misses.
	if rs := rec.Summary.Extra().Recursion; len(rs) == 0 || rs[0].Tracepoint != "sock/inet_sock_set_state" || rs[0].Program != "handle_set_state" {
		t.Errorf("summary recursion_misses: %+v", rs)
	}
	return rec
}

func dumpJSON(v any) string {
	// Connections as the export spells them: their fields are typed.
	switch c := v.(type) {
	case tracer.Connection:
		return string(output.AppendConnectionJSON(nil, &c))
	case *tracer.Connection:
		return string(output.AppendConnectionJSON(nil, c))
	case []tracer.Connection:
		var b []byte
		for i := range c {
			b = append(output.AppendConnectionJSON(b, &c[i]), '\n')
		}
		return string(b)
	}
	b, _ := json.MarshalIndent(v, "", " ")
	return string(b)
}

// dialClose opens and closes n connections to addr from inside ns.
func dialClose(t *testing.T, ns *netns.NS, addr string, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		c, err := dialNS(t, ns, "tcp4", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
}

// TestAwaitUnread: the "unread" helper mode gives up when no request comes
// (it used to poll SIOCINQ forever), reports a peer that closed without
// sending, and leaves a request that came unread. Loopback, no root.
func TestAwaitUnread(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pair := func() (client net.Conn, server *net.TCPConn) {
		t.Helper()
		client, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { client.Close(); s.Close() })
		return client, s.(*net.TCPConn)
	}

	client, server := pair()
	start := time.Now()
	if err := awaitUnread(server, 100*time.Millisecond); err == nil {
		t.Fatal("awaitUnread succeeded with nothing sent")
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Errorf("awaitUnread gave up after %s, limit 100ms", waited)
	}
	if _, err := client.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if err := awaitUnread(server, 10*time.Second); err != nil {
		t.Fatalf("data sent: %v", err)
	}
	if n, err := unix.IoctlGetInt(fd(server), unix.SIOCINQ); err != nil || n != 4 {
		t.Errorf("receive queue holds %d bytes (%v), want the 4 sent, unread", n, err)
	}

	client, server = pair()
	client.Close()
	if err := awaitUnread(server, 10*time.Second); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("peer closed without data: %v", err)
	}
}

// kernelHas says whether the running kernel offers k, for a test that
// checks what k gives only where the kernel has it (nettest.RequireKernelFeature
// skips whole tests); under CI=true a missing k fails the test.
func kernelHas(t *testing.T, k tracer.KernelFeature) bool {
	t.Helper()
	return nettest.HasKernelFeature(t, k)
}
