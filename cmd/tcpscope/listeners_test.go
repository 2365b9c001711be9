package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/output"
	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/netns"
	"github.com/tcpscope/tcpscope/tracer/nettest"
	"golang.org/x/sys/unix"
)

// connectAll starts n non-blocking connects to ap from inside ns. The
// function it returns closes their descriptors, once: a descriptor closed
// twice could be another parallel test's by then.
func connectAll(t *testing.T, ns *netns.NS, ap netip.AddrPort, n int) (closeAll func()) {
	t.Helper()
	var fds []int
	err := ns.Do(func() error {
		for i := 0; i < n; i++ {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			fds = append(fds, fd)
			err = unix.Connect(fd, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()})
			if err != nil && !errors.Is(err, unix.EINPROGRESS) {
				return err
			}
		}
		return nil
	})
	closeAll = sync.OnceFunc(func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	})
	t.Cleanup(closeAll)
	if err != nil {
		t.Fatal(err)
	}
	return closeAll
}

// waitCounter polls a namespace counter until its growth since before
// reaches want.
func waitCounter(t *testing.T, ns *netns.NS, before netns.Counters, name string, want uint64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for ; ; <-tick.C {
		now, err := ns.Counters()
		if err != nil {
			t.Fatal(err)
		}
		got := netns.Delta(before, now)[name]
		if got >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s grew by %d in %v, want %d", name, got, timeout, want)
		}
	}
}

// TestSynOverflowAttributed: tcp_syncookies 0, a listener with backlog 2
// that never accepts, and a burst of connects. Past the third, every SYN
// (and each SYN retransmit) meets a full accept queue and is dropped with
// no tracepoint; the listener's row shows the full queue from sampling and
// the namespace's ListenOverflows attributed to it, exactly, and the
// clients that retransmitted their SYN are linked to it.
func TestSynOverflowAttributed(t *testing.T) {
	t.Parallel()
	ns := nettest.New(t)
	if err := ns.Sysctl("net.ipv4.tcp_syncookies", "0"); err != nil {
		t.Fatal(err)
	}
	r := startRecord(t, ns, "run.jsonl")
	ln, err := ns.ListenBacklog(0, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	before, _ := ns.Counters()
	const n = 10
	closeAll := connectAll(t, ns, netns.AddrPort(ln), n)
	// The seven refused SYNs are retransmitted after 1 s, into the full
	// queue again.
	waitCounter(t, ns, before, "TcpExt.TCPSynRetrans", n-3, 10*time.Second)
	closeAll() // ends the connects still in SYN_SENT: nothing more is sent
	after, _ := ns.Counters()
	rec := r.stop(t)
	d := netns.Delta(before, after)
	if len(rec.Listeners) != 1 {
		t.Fatalf("listeners: %s", dumpJSON(rec.Listeners))
	}
	l := rec.Listeners[0]
	t.Logf("kernel: ListenOverflows %d ListenDrops %d; listener: %s", d["TcpExt.ListenOverflows"], d["TcpExt.ListenDrops"], dumpJSON(l))
	if l.PeakQueue != 3 || l.Backlog != 2 || l.FullSamples == 0 || l.QueueSamples < l.FullSamples {
		t.Errorf("accept queue: peak %d/%d, %d of %d samples full; want 3/2 (backlog + 1) and full samples",
			l.PeakQueue, l.Backlog, l.FullSamples, l.QueueSamples)
	}
	lo := d["TcpExt.ListenOverflows"]
	if lo < 2*(n-3) || l.OverflowsAttributed != lo || l.SynDropsAttributed != lo-l.Overflows ||
		l.DropsAttributed != d["TcpExt.ListenDrops"] {
		t.Errorf("attributed: overflows %d, SYN drops %d (observed final-ACK drops %d), listen drops %d; kernel ListenOverflows %d, ListenDrops %d",
			l.OverflowsAttributed, l.SynDropsAttributed, l.Overflows, l.DropsAttributed, lo, d["TcpExt.ListenDrops"])
	}
	var clients, linked, syns uint64
	for _, c := range rec.Connections {
		if c.Role != tracer.RoleClient || !c.Flags.Has(tracer.FlagSynRetransmitted) {
			continue
		}
		clients++
		syns += uint64(c.Retransmits.Syn)
		if c.ListenerID == l.ID {
			linked++
		}
	}
	if clients < n-3 || linked != clients || l.SynRetransmitClients != clients || l.ClientSynRetransmits != syns {
		t.Errorf("%d clients retransmitted %d SYNs, %d linked to the listener; listener counts %d clients, %d SYN retransmits",
			clients, syns, linked, l.SynRetransmitClients, l.ClientSynRetransmits)
	}
	if !slices.ContainsFunc(rec.Summary.Counters, func(c output.CounterDelta) bool {
		return c.NetNS == ns.Inode && c.Counter == "TcpExt.ListenOverflows" && c.Delta >= lo &&
			c.Unattributed != nil && *c.Unattributed == c.Delta-l.OverflowsAttributed
	}) {
		t.Errorf("summary lacks the ListenOverflows row, or its unattributed part: %s", dumpJSON(rec.Summary.Counters))
	}
}

// heldBy reports whether process pid holds network namespace ino open.
func heldBy(pid int, ino uint32) bool {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, _ := os.ReadDir(dir)
	for _, f := range fds {
		if l, _ := os.Readlink(dir + "/" + f.Name()); l == fmt.Sprintf("net:[%d]", ino) {
			return true
		}
	}
	return false
}

// TestNamespaceCounters: a recording of every namespace. One namespace is
// created, used and deleted during it; it still gets its counter rows,
// counted from zero. Another existed, with traffic, before the recording:
// its rows count only what happened since the start.
func TestNamespaceCounters(t *testing.T) {
	nettest.RequirePrivileges(t)
	old := nettest.New(t)
	oldLn := listenNS(t, old, "tcp4", "127.0.0.1:0")
	go acceptClose(oldLn)
	dialClose(t, old, oldLn.Addr().String(), 3) // before the recording
	r := startRecord(t, nil, "all.jsonl")
	dialClose(t, old, oldLn.Addr().String(), 4)

	ns, err := netns.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	ln, err := ns.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go acceptClose(ln)
	const n = 5
	dialClose(t, ns, ln.Addr().String(), n)
	// The namespace lives on only if tcpscope opened it: wait for that,
	// then delete it (listener and last handle closed).
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for ; !heldBy(r.cmd.Process.Pid, ns.Inode); <-tick.C {
		if time.Now().After(deadline) {
			t.Fatalf("tcpscope never opened namespace %d", ns.Inode)
		}
	}
	ln.Close()
	ino := ns.Inode
	ns.Close()
	rec := r.stop(t)
	rows := map[uint32]map[string]output.CounterDelta{}
	for _, c := range rec.Summary.Counters {
		if rows[c.NetNS] == nil {
			rows[c.NetNS] = map[string]output.CounterDelta{}
		}
		rows[c.NetNS][c.Counter] = c
	}
	gone := rows[ino]
	if gone["Tcp.ActiveOpens"].Delta != n || gone["Tcp.PassiveOpens"].Delta != n || !gone["Tcp.ActiveOpens"].Created {
		t.Errorf("namespace created and deleted during the recording: %s", dumpJSON(gone))
	}
	was := rows[old.Inode]
	if was["Tcp.ActiveOpens"].Delta != 4 || was["Tcp.PassiveOpens"].Delta != 4 || was["Tcp.ActiveOpens"].Created {
		t.Errorf("namespace that predates the recording: %s", dumpJSON(was))
	}
}

func acceptClose(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}
