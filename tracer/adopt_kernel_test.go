package tracer_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/netns"
	"golang.org/x/sys/unix"
)

// TestStalePreexistingListener: the owner user space found for a listener
// open before the trace names that listener only. A later listener on the
// same port, opened by a process the pid filter does not want, gets no
// children kept under the old owner's name.
func TestStalePreexistingListener(t *testing.T) {
	modes(t, func(t *testing.T, events bool) {
		ns := newNS(t)
		_, _, plain := testCgroups(t)
		srv := startHelper(t, ns, plain, "cgserve", "serve:1")
		pid := uint32(srv.cmd.Process.Pid)
		probe := listen(t, ns, "tcp4", "127.0.0.1:0")
		port := addrPort(t, probe.Addr()).Port()
		if err := probe.Close(); err != nil {
			t.Fatal(err)
		}
		col := traceNS(t, ns, tracer.Config{PIDs: []uint32{pid}, Events: events})
		// As if the wanted helper had listened on port before the trace.
		if err := col.tr.AdoptListener(ns.Inode, port, pid, "cgserve"); err != nil {
			t.Fatal(err)
		}
		ln := listen(t, ns, "tcp4", fmt.Sprintf("127.0.0.1:%d", port))
		connectAndReset(t, ns, ln)
		// The helper's connection comes after: once its child closed, any
		// event of the test's listener's child would have come too.
		srvPort := srv.port(t)
		c, err := dial(ns, "tcp4", fmt.Sprintf("127.0.0.1:%d", srvPort), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte{1}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, c); err != nil {
			t.Fatal(err)
		}
		c.Close()
		srv.wait(t)
		evs := col.waitFor(t, "the helper's child to close", 10*time.Second, func(evs []tracer.Event) bool {
			_, ok := find(evs, func(e tracer.Event) bool {
				return e.Local.Port() == srvPort && e.NewState == tracer.StateClose
			})
			return ok
		})
		for _, e := range evs {
			if e.Local.Port() == port || e.Remote.Port() == port {
				t.Errorf("kept though the test process (not pid %d) owns it: %s %s->%s %s->%s owner %d/%s",
					pid, e.Kind, e.Local, e.Remote, e.OldState, e.NewState, e.OwnerTGID, e.OwnerComm)
			}
		}
	})
}

// TestPreexistingListenerKept: a wanted listener open before the trace,
// whose owner the kernel is told, keeps its children and its own close.
func TestPreexistingListenerKept(t *testing.T) {
	modes(t, func(t *testing.T, events bool) {
		ns := newNS(t)
		_, _, plain := testCgroups(t)
		srv := startHelper(t, ns, plain, "cgserve", "serve:1")
		port := srv.port(t) // listening before the trace
		pid := uint32(srv.cmd.Process.Pid)
		col := traceNS(t, ns, tracer.Config{PIDs: []uint32{pid}, Events: events})
		if err := col.tr.AdoptListener(ns.Inode, port, pid, "cgserve"); err != nil {
			t.Fatal(err)
		}
		c, err := dial(ns, "tcp4", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte{1}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, c); err != nil {
			t.Fatal(err)
		}
		c.Close()
		srv.wait(t) // the listener closed too
		col.waitFor(t, "the child's and the listener's close", 10*time.Second, func(evs []tracer.Event) bool {
			_, child := find(evs, func(e tracer.Event) bool {
				return e.Local.Port() == port && e.Remote.Port() != 0 && e.NewState == tracer.StateClose
			})
			_, listener := find(evs, func(e tracer.Event) bool {
				return e.Local.Port() == port && e.OldState == tracer.StateListen && e.NewState == tracer.StateClose
			})
			return child && listener
		})
	})
}

// connectAndReset makes one connection to ln and closes both ends with a
// reset (SO_LINGER 0), so that both reach CLOSE before it returns.
func connectAndReset(t *testing.T, ns *netns.NS, ln net.Listener) {
	t.Helper()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			t.Errorf("accepting: %v", err)
		}
		accepted <- c
	}()
	c, err := dial(ns, "tcp4", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, conn := range []net.Conn{<-accepted, c} {
		if conn == nil {
			t.FailNow()
		}
		if err := conn.(*net.TCPConn).SetLinger(0); err != nil {
			t.Fatal(err)
		}
		if err := conn.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCommIsTheProcessName: --comm NAME, as /proc/PID/comm shows it,
// keeps a connection made from a thread that renamed itself (as thread
// pools do), and names the process, not the thread, as its owner.
func TestCommIsTheProcessName(t *testing.T) {
	modes(t, func(t *testing.T, events bool) {
		ns := newNS(t)
		ln := listen(t, ns, "tcp4", "127.0.0.1:0")
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		b, err := os.ReadFile("/proc/self/comm")
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSpace(string(b))
		col := traceNS(t, ns, tracer.Config{Comms: []string{name}, Events: events})
		to := addrPort(t, ln.Addr())
		worker := connectFromThread(t, ns, to.Port(), "worker")
		// A connection from an unrenamed thread, after: once it closed,
		// the worker's would have come.
		marker := connectFromThread(t, ns, to.Port(), "")
		evs := col.waitFor(t, "the marker connection to close", 10*time.Second, func(evs []tracer.Event) bool {
			_, ok := find(evs, func(e tracer.Event) bool { return e.Local.Port() == marker && e.NewState == tracer.StateClose })
			return ok
		})
		kept := 0
		for _, e := range evs {
			if e.Local.Port() != worker || e.Remote != to {
				continue
			}
			kept++
			if e.NewState == tracer.StateClose && e.Comm.String() != name {
				t.Errorf("the worker thread's connection is owned by %q, want the process %q", e.Comm, name)
			}
		}
		if kept == 0 {
			t.Errorf("--comm %q kept nothing of the connection a thread named worker made; saw:\n%s", name, dump(evs))
		}
	})
}

// connectFromThread connects to port on ns's loopback from a new thread
// named thread (unless empty), closes with a reset, and returns the local
// port.
func connectFromThread(t *testing.T, ns *netns.NS, port uint16, thread string) uint16 {
	t.Helper()
	var local uint16
	err := onThread(ns.Fd(), thread, func() error {
		var err error
		local, err = connectHere(port)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return local
}

// onThread runs fn on a thread of its own, never the main thread (renaming
// it would rename the process), in the network namespace nsFd, named
// thread unless empty. The thread is never unlocked: it dies with its
// namespace and name.
func onThread(nsFd int, thread string, fn func() error) error {
	release := make(chan struct{})
	defer close(release)
	for {
		done := make(chan error, 1)
		go func() {
			runtime.LockOSThread()
			if unix.Gettid() == unix.Getpid() {
				done <- errMainThread
				<-release // hold it, so that the next try runs elsewhere
				runtime.UnlockOSThread()
				return
			}
			done <- enterAndRun(nsFd, thread, fn)
		}()
		if err := <-done; err != errMainThread {
			return err
		}
	}
}

var errMainThread = errors.New("on the main thread")

func enterAndRun(nsFd int, thread string, fn func() error) error {
	if err := unix.Setns(nsFd, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("entering the namespace: %w", err)
	}
	if thread != "" {
		name := append([]byte(thread), 0)
		if err := unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&name[0])), 0, 0, 0); err != nil {
			return fmt.Errorf("naming the thread: %w", err)
		}
	}
	return fn()
}

// connectHere connects to port on loopback, closes with a reset and
// returns the local port.
func connectHere(port uint16) (uint16, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("making a socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, &unix.SockaddrInet4{Port: int(port), Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return 0, fmt.Errorf("connecting: %w", err)
	}
	if err := unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1}); err != nil {
		return 0, fmt.Errorf("setting SO_LINGER: %w", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return 0, fmt.Errorf("reading the local address: %w", err)
	}
	return uint16(sa.(*unix.SockaddrInet4).Port), nil
}
