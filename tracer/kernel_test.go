package tracer_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/netns"
	"github.com/tcpscope/tcpscope/tracer/nettest"
	"golang.org/x/sys/unix"
)

func addrPort(t *testing.T, a net.Addr) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		t.Fatalf("parsing %s: %v", a, err)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// TestLifecycleSequences drives one connection per case and checks the
// exact state sequence of both ends, their tuples and the server's owner.
func TestLifecycleSequences(t *testing.T) {
	cases := []struct {
		name, network, addr string
		clientFirst         bool
		client, server      []string
	}{
		{"ipv4/client-closes", "tcp4", "127.0.0.1:0", true,
			[]string{"CLOSE->SYN_SENT", "SYN_SENT->ESTABLISHED", "ESTABLISHED->FIN_WAIT1", "FIN_WAIT1->FIN_WAIT2", "FIN_WAIT2->CLOSE"},
			[]string{"LISTEN->SYN_RECV", "SYN_RECV->ESTABLISHED", "ESTABLISHED->CLOSE_WAIT", "CLOSE_WAIT->LAST_ACK", "LAST_ACK->CLOSE"}},
		{"ipv4/server-closes", "tcp4", "127.0.0.1:0", false,
			[]string{"CLOSE->SYN_SENT", "SYN_SENT->ESTABLISHED", "ESTABLISHED->CLOSE_WAIT", "CLOSE_WAIT->LAST_ACK", "LAST_ACK->CLOSE"},
			[]string{"LISTEN->SYN_RECV", "SYN_RECV->ESTABLISHED", "ESTABLISHED->FIN_WAIT1", "FIN_WAIT1->FIN_WAIT2", "FIN_WAIT2->CLOSE"}},
		{"ipv6/client-closes", "tcp6", "[::1]:0", true,
			[]string{"CLOSE->SYN_SENT", "SYN_SENT->ESTABLISHED", "ESTABLISHED->FIN_WAIT1", "FIN_WAIT1->FIN_WAIT2", "FIN_WAIT2->CLOSE"},
			[]string{"LISTEN->SYN_RECV", "SYN_RECV->ESTABLISHED", "ESTABLISHED->CLOSE_WAIT", "CLOSE_WAIT->LAST_ACK", "LAST_ACK->CLOSE"}},
		{"ipv6/server-closes", "tcp6", "[::1]:0", false,
			[]string{"CLOSE->SYN_SENT", "SYN_SENT->ESTABLISHED", "ESTABLISHED->CLOSE_WAIT", "CLOSE_WAIT->LAST_ACK", "LAST_ACK->CLOSE"},
			[]string{"LISTEN->SYN_RECV", "SYN_RECV->ESTABLISHED", "ESTABLISHED->FIN_WAIT1", "FIN_WAIT1->FIN_WAIT2", "FIN_WAIT2->CLOSE"}},
	}
	for _, tc := range cases {
		for _, events := range []bool{false, true} {
			name := tc.name + "/aggregated"
			if events {
				name = tc.name + "/events"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				lifecycleCase(t, events, tc.network, tc.addr, tc.clientFirst, tc.client, tc.server)
			})
		}
	}
}

// lifecycleCase is one case of TestLifecycleSequences, in one mode.
func lifecycleCase(t *testing.T, events bool, network, addr string, clientFirst bool, wantClient, wantServer []string) {
	ns := newNS(t)
	col := traceNS(t, ns, tracer.Config{Events: events})
	ln := listen(t, ns, network, addr)
	server := addrPort(t, ln.Addr())

	accepted := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- err
			return
		}
		defer c.Close()
		if clientFirst {
			_, err = io.Copy(io.Discard, c) // until the client's FIN
		}
		accepted <- err
	}()
	c, err := dial(ns, network, server.String(), 5*time.Second)
	if err != nil {
		t.Fatalf("dialing %s: %v", server, err)
	}
	client := addrPort(t, c.LocalAddr())
	if clientFirst {
		c.Close()
	} else {
		io.Copy(io.Discard, c) // until the server's FIN
		c.Close()
	}
	if err := <-accepted; err != nil {
		t.Fatalf("server: %v", err)
	}

	var clientCk, serverCk, listenerCk uint64
	evs := col.waitFor(t, "both ends to reach CLOSE", 10*time.Second, func(evs []tracer.Event) bool {
		for _, e := range evs {
			if e.Kind != tracer.KindState {
				continue
			}
			switch {
			case e.NewState == tracer.StateListen:
				listenerCk = e.Cookie
			case e.NewState == tracer.StateSynSent && e.Remote == server:
				clientCk = e.Cookie
			case e.OldState == tracer.StateListen && e.NewState == tracer.StateSynRecv && e.Remote == client:
				serverCk = e.Cookie
			}
		}
		return clientCk != 0 && serverCk != 0 && closed(evs, clientCk) && closed(evs, serverCk)
	})
	if got := transitions(evs, clientCk); !slices.Equal(got, wantClient) {
		t.Errorf("client transitions\n got %v\nwant %v", got, wantClient)
	}
	if got := transitions(evs, serverCk); !slices.Equal(got, wantServer) {
		t.Errorf("server transitions\n got %v\nwant %v", got, wantServer)
	}
	for _, e := range evs {
		if e.NetNS != ns.Inode {
			t.Errorf("event from namespace %d, want only %d", e.NetNS, ns.Inode)
		}
		switch {
		case e.Cookie == clientCk && e.NewState == tracer.StateSynSent:
			// connect() runs in process context; the port is not
			// chosen yet when the event fires. A record carries the
			// tuple as it was when it was sent.
			port := uint16(0)
			if !events {
				port = client.Port()
			}
			if e.Local.Port() != port || e.Remote != server || e.TGID != uint32(os.Getpid()) {
				t.Errorf("client SYN_SENT: local %s remote %s tgid %d; want port %d, %s, %d", e.Local, e.Remote, e.TGID, port, server, os.Getpid())
			}
		case e.Cookie == clientCk:
			if e.Local != client || e.Remote != server {
				t.Errorf("client %s->%s: tuple %s -> %s, want %s -> %s", e.OldState, e.NewState, e.Local, e.Remote, client, server)
			}
		case e.Cookie == serverCk:
			if e.Local != server || e.Remote != client {
				t.Errorf("server %s->%s: tuple %s -> %s, want %s -> %s", e.OldState, e.NewState, e.Local, e.Remote, server, client)
			}
		}
	}
	// Both ends' sockets were made by this process: its cgroup.
	self := selfCgroup(t)
	for _, e := range evs {
		if e.Kind == tracer.KindState && (e.Cookie == clientCk || e.Cookie == serverCk || e.Cookie == listenerCk) && e.CgroupID != self {
			t.Errorf("%s->%s of socket %d: cgroup %d, want this process's %d", e.OldState, e.NewState, e.Cookie, e.CgroupID, self)
		}
	}
	child, _ := find(evs, func(e tracer.Event) bool { return e.Cookie == serverCk && e.NewState == tracer.StateSynRecv })
	if !child.HasOwner || child.OwnerTGID != uint32(os.Getpid()) || child.ListenerCookie != listenerCk {
		t.Errorf("server child: owner %v pid %d listener %d; want pid %d listener %d",
			child.HasOwner, child.OwnerTGID, child.ListenerCookie, os.Getpid(), listenerCk)
	}
}

// selfCgroup is the cgroup v2 id of this process, from /proc/self/cgroup.
func selfCgroup(t *testing.T) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatalf("reading /proc/self/cgroup: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if path, ok := strings.CutPrefix(line, "0::"); ok {
			cg, err := tracer.ResolveCgroup(path)
			if err != nil {
				t.Fatalf("resolving this process's cgroup: %v", err)
			}
			return cg.ID
		}
	}
	t.Fatalf("no cgroup v2 line in /proc/self/cgroup: %q", b)
	return 0
}

// blockingConnect runs one blocking IPv4 connect(2), as most programs do,
// in the calling thread's namespace.
func blockingConnect(to netip.AddrPort) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Connect(fd, &unix.SockaddrInet4{Port: int(to.Port()), Addr: to.Addr().As4()})
}

// TestRefusedConnect: a SYN to a port nobody listens on. The server side
// sends a reset with no socket (reason NO_SOCKET); the client receives it
// in SYN_SENT and its connect() fails with ECONNREFUSED.
func TestRefusedConnect(t *testing.T) {
	t.Parallel()
	nettest.RequireKernelFeature(t, tracer.ResetReasons)
	ns := newNS(t)
	col := traceNS(t, ns, tracer.Config{})
	// A port that was just free: listen, note it, close.
	ln := listen(t, ns, "tcp4", "127.0.0.1:0")
	target := addrPort(t, ln.Addr())
	ln.Close()

	// A blocking connect(2), as most programs do: on failure the kernel
	// also runs tcp_disconnect() (__inet_stream_connect), which reports a
	// second, empty socket error that tcpscope must drop.
	err := ns.Do(func() error { return blockingConnect(target) })
	if !errors.Is(err, unix.ECONNREFUSED) {
		t.Fatalf("connect to closed port %s: %v, want ECONNREFUSED", target, err)
	}
	// A marker after everything connect() caused: a listener opened and
	// closed. The ring buffer keeps reservation order, so once its
	// LISTEN->CLOSE is read, every earlier event has been.
	marker := listen(t, ns, "tcp4", "127.0.0.1:0")
	markerPort := addrPort(t, marker.Addr()).Port()
	marker.Close()
	evs := col.waitFor(t, "the refused connect's events and the marker", 5*time.Second, func(evs []tracer.Event) bool {
		_, ok := find(evs, func(e tracer.Event) bool {
			return e.Kind == tracer.KindState && e.OldState == tracer.StateListen && e.NewState == tracer.StateClose && e.Local.Port() == markerPort
		})
		return ok
	})
	sent, _ := find(evs, func(e tracer.Event) bool { return e.Kind == tracer.KindResetSent })
	if !sent.NoSocket || sent.Cookie != 0 || !sent.HasReason || sent.Reason.String() != "NO_SOCKET" || sent.SegFlags != tracer.TCPSyn {
		t.Errorf("reset sent: no-socket %v cookie %d reason %s answering %q; want a socketless NO_SOCKET reset answering a SYN",
			sent.NoSocket, sent.Cookie, sent.Reason, sent.SegFlags)
	}
	if sent.Local != target || sent.NetNS != ns.Inode {
		t.Errorf("reset sent from %s in netns %d, want %s in %d", sent.Local, sent.NetNS, target, ns.Inode)
	}
	recv, _ := find(evs, func(e tracer.Event) bool { return e.Kind == tracer.KindResetReceived })
	if recv.State != tracer.StateSynSent || recv.Remote != target || recv.Local != sent.Remote {
		t.Errorf("reset received in %s on %s -> %s; want SYN_SENT on %s -> %s", recv.State, recv.Local, recv.Remote, sent.Remote, target)
	}
	errEv, _ := find(evs, func(e tracer.Event) bool { return e.Kind == tracer.KindError })
	// connect() then calls tcp_disconnect(), whose sk_error_report() carries
	// no error (sk_err already consumed): it must not appear as a second one.
	reports := 0
	for _, e := range evs {
		if e.Kind == tracer.KindError {
			reports++
		}
	}
	if reports != 1 {
		t.Errorf("%d socket error events, want 1 (ECONNREFUSED)", reports)
	}
	if tracer.ErrnoName(errEv.Err) != "ECONNREFUSED" || errEv.Cookie != recv.Cookie {
		t.Errorf("socket error %s on cookie %d, want ECONNREFUSED on %d", tracer.ErrnoName(errEv.Err), errEv.Cookie, recv.Cookie)
	}
	if got, want := transitions(evs, recv.Cookie), []string{"CLOSE->SYN_SENT", "SYN_SENT->CLOSE"}; !slices.Equal(got, want) {
		t.Errorf("client transitions %v, want %v", got, want)
	}
}

// TestSynRetransmit drops the client's SYNs until the first retransmit is
// seen: that retransmit fails inside the namespace (netfilter returns
// -EPERM, which 6.17+ reports), the next one gets through.
func TestSynRetransmit(t *testing.T) { modes(t, synRetransmit) }

func synRetransmit(t *testing.T, events bool) {
	ns := newNS(t)
	col := traceNS(t, ns, tracer.Config{Events: events})
	ln := listen(t, ns, "tcp4", "127.0.0.1:0")
	server := addrPort(t, ln.Addr())
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	remove, err := ns.AddDrop(netns.Drop{DstPort: server.Port(), FlagMask: netns.FlagSYN | netns.FlagACK, Flags: netns.FlagSYN})
	if err != nil {
		t.Fatal(err)
	}
	defer remove()

	dialed := make(chan error, 1)
	go func() {
		c, err := dial(ns, "tcp4", server.String(), 15*time.Second)
		if err == nil {
			c.Close()
		}
		dialed <- err
	}()
	col.waitFor(t, "a SYN retransmit", 10*time.Second, retransmitted(t, ns, events, 1, func(e tracer.Event) bool {
		return e.Kind == tracer.KindRetransmit
	}))
	if err := remove(); err != nil {
		t.Fatal(err)
	}
	if err := <-dialed; err != nil {
		t.Fatalf("connect after SYN drops stopped: %v", err)
	}
	evs := col.waitFor(t, "the client to be established", 10*time.Second, func(evs []tracer.Event) bool {
		_, ok := find(evs, func(e tracer.Event) bool {
			return e.Kind == tracer.KindState && e.NewState == tracer.StateEstablished && e.Remote == server
		})
		return ok
	})
	est, _ := find(evs, func(e tracer.Event) bool {
		return e.Kind == tracer.KindState && e.NewState == tracer.StateEstablished && e.Remote == server
	})
	var failed, sent int
	for _, e := range evs {
		if e.Kind != tracer.KindRetransmit {
			continue
		}
		if e.Cookie != est.Cookie || e.State != tracer.StateSynSent || e.Remote != server {
			t.Errorf("retransmit on cookie %d in %s to %s; want the client's (%d) in SYN_SENT to %s", e.Cookie, e.State, e.Remote, est.Cookie, server)
		}
		if e.HasErr && e.Err != 0 {
			failed++
			if tracer.ErrnoName(e.Err) != "EPERM" {
				t.Errorf("failed SYN retransmit with %s, want EPERM (netfilter drop)", tracer.ErrnoName(e.Err))
			}
		} else {
			sent++
		}
	}
	if sent != 1 {
		t.Errorf("%d SYN retransmits left the host, want exactly 1 (the one after the drop rule went)", sent)
	}
	if est.HasErr && failed < 1 {
		t.Errorf("no failed retransmit reported while SYNs were dropped")
	}
	if est.TotalRetrans != uint32(sent+failed) {
		t.Errorf("tcp_sock total_retrans %d at ESTABLISHED, want %d (every retransmit attempt)", est.TotalRetrans, sent+failed)
	}
}

// TestSynAckRetransmit drops the client's ACKs, so the server's request
// socket retransmits its SYN-ACK; the connection then completes and the
// child socket carries the request's cookie.
func TestSynAckRetransmit(t *testing.T) {
	t.Parallel()
	ns := newNS(t)
	col := traceNS(t, ns, tracer.Config{})
	ln := listen(t, ns, "tcp6", "[::1]:0")
	server := addrPort(t, ln.Addr())
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	remove, err := ns.AddDrop(netns.Drop{DstPort: server.Port(), FlagMask: netns.FlagSYN | netns.FlagACK, Flags: netns.FlagACK})
	if err != nil {
		t.Fatal(err)
	}
	defer remove()
	// The client's connect() completes at once: its final ACK is what is lost.
	c, err := dial(ns, "tcp6", server.String(), 5*time.Second)
	if err != nil {
		t.Fatalf("dialing: %v", err)
	}
	defer c.Close()
	client := addrPort(t, c.LocalAddr())

	evs := col.waitFor(t, "a SYN-ACK retransmit", 10*time.Second, func(evs []tracer.Event) bool {
		_, ok := find(evs, func(e tracer.Event) bool { return e.Kind == tracer.KindSynAckRetransmit })
		return ok
	})
	if err := remove(); err != nil {
		t.Fatal(err)
	}
	// Data carries an ACK: it completes the handshake on the server.
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if sc, ok := <-accepted; ok {
		sc.Close()
	}
	evs = col.waitFor(t, "the server child socket", 10*time.Second, func(evs []tracer.Event) bool {
		_, ok := find(evs, func(e tracer.Event) bool { return e.Kind == tracer.KindState && e.NewState == tracer.StateSynRecv })
		return ok
	})
	rtx, _ := find(evs, func(e tracer.Event) bool { return e.Kind == tracer.KindSynAckRetransmit })
	child, _ := find(evs, func(e tracer.Event) bool { return e.Kind == tracer.KindState && e.NewState == tracer.StateSynRecv })
	listener, _ := find(evs, func(e tracer.Event) bool { return e.Kind == tracer.KindState && e.NewState == tracer.StateListen })
	if rtx.Cookie == 0 || rtx.Cookie != child.Cookie {
		t.Errorf("SYN-ACK retransmit cookie %d, child cookie %d: want equal (the child inherits the request's cookie)", rtx.Cookie, child.Cookie)
	}
	if rtx.ListenerCookie != listener.Cookie || rtx.State != tracer.StateListen {
		t.Errorf("SYN-ACK retransmit on listener %d in %s, want %d in LISTEN", rtx.ListenerCookie, rtx.State, listener.Cookie)
	}
	if rtx.Local != server || rtx.Remote != client {
		t.Errorf("SYN-ACK retransmit %s -> %s, want %s -> %s", rtx.Local, rtx.Remote, server, client)
	}
	if rtx.NumRetrans != 0 || rtx.SntSynAckUs == 0 {
		t.Errorf("first SYN-ACK retransmit: num_retrans %d snt_synack %d, want 0 and a timestamp", rtx.NumRetrans, rtx.SntSynAckUs)
	}
	if !rtx.HasOwner || rtx.OwnerTGID != uint32(os.Getpid()) {
		t.Errorf("SYN-ACK retransmit owner %v/%d, want this process %d", rtx.HasOwner, rtx.OwnerTGID, os.Getpid())
	}
}

// TestLostEvents: with a one-page ring buffer and no reader during a burst,
// events are lost; the kernel counts every one, so received + lost equals
// what the burst produced.
func TestLostEvents(t *testing.T) {
	t.Parallel()
	ns := newNS(t)
	// Events one by one: the per-event mode (the aggregated one is in
	// cmd/tcpscope TestLossesAreCountedAndFlagged).
	tr, err := tracer.Open(tracer.Config{NetNS: []uint32{ns.Inode}, RingBufferBytes: os.Getpagesize(), PollInterval: 50 * time.Millisecond, Events: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	// Refused connects make a known number of events, half of them in
	// softirq context: CLOSE->SYN_SENT, the listener-less port's reset
	// (tcp_v4_send_reset, no socket), its receipt in SYN_SENT, ECONNREFUSED
	// and SYN_SENT->CLOSE. Connections that close cleanly do not: the kernel
	// may add tail loss probes, and on 6.18 a FIN that races the child's
	// insertion in the established hash (inet_ehash_insert() unlinks the
	// request socket before it links the child) reaches the listener and is
	// answered with a reset.
	ln := listen(t, ns, "tcp4", "127.0.0.1:0")
	target := addrPort(t, ln.Addr())
	ln.Close()
	const attempts = 100
	err = ns.Do(func() error {
		for i := 0; i < attempts; i++ {
			if err := blockingConnect(target); !errors.Is(err, unix.ECONNREFUSED) {
				return fmt.Errorf("connect %d to closed port %s: %v, want ECONNREFUSED", i, target, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Plus the listener's CLOSE->LISTEN and LISTEN->CLOSE.
	want := uint64(attempts*5 + 2)
	var received uint64
	var ev tracer.Event
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		err := tr.Read(&ev)
		if err == nil {
			received++
			continue
		}
		if err != tracer.ErrNoEvent {
			t.Fatal(err)
		}
		if c, err := tr.Counters(); err != nil {
			t.Fatal(err)
		} else if received+c.Lost >= want {
			break
		}
	}
	c, err := tr.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if c.Lost == 0 {
		t.Errorf("no loss counted with a %d-byte ring buffer", os.Getpagesize())
	}
	if received+c.Lost != want {
		t.Errorf("received %d + lost %d = %d, want %d events", received, c.Lost, received+c.Lost, want)
	}
	t.Logf("received %d, lost %d of %d", received, c.Lost, want)
}

// TestNestedProgramsServeSkippedEvents: when the kernel skips a main
// program because it already runs on that CPU (a softirq interrupting it),
// its _nested twin must deliver the event, complete, and count it. The
// state is forced: main programs detached, their running flags raised.
func TestNestedProgramsServeSkippedEvents(t *testing.T) {
	ns := newNS(t)
	col := traceNS(t, ns, tracer.Config{})
	if err := tracer.ServeNestedOnly(col.tr); err != nil {
		t.Fatal(err)
	}
	ln := listen(t, ns, "tcp4", "127.0.0.1:0")
	server := addrPort(t, ln.Addr())
	accepted := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_, err = io.Copy(io.Discard, c)
			c.Close()
		}
		accepted <- err
	}()
	c, err := dial(ns, "tcp4", server.String(), 5*time.Second)
	if err != nil {
		t.Fatalf("dialing %s: %v", server, err)
	}
	client := addrPort(t, c.LocalAddr())
	c.Close()
	if err := <-accepted; err != nil {
		t.Fatalf("server: %v", err)
	}
	// A refused connect: a reset sent with no socket (traced since
	// ResetReasons), a socket error.
	socketless := nettest.HasKernelFeature(t, tracer.ResetReasons)
	closedLn := listen(t, ns, "tcp4", "127.0.0.1:0")
	refused := addrPort(t, closedLn.Addr())
	closedLn.Close()
	if err := ns.Do(func() error { return blockingConnect(refused) }); !errors.Is(err, unix.ECONNREFUSED) {
		t.Fatalf("connecting to closed %s: %v, want ECONNREFUSED", refused, err)
	}

	var clientCk, serverCk uint64
	evs := col.waitFor(t, "both ends closed and the refusal", 10*time.Second, func(evs []tracer.Event) bool {
		var rst, sockErr bool
		for _, e := range evs {
			switch {
			case e.Kind == tracer.KindState && e.NewState == tracer.StateSynSent && e.Remote == server:
				clientCk = e.Cookie
			case e.Kind == tracer.KindState && e.OldState == tracer.StateListen && e.NewState == tracer.StateSynRecv && e.Remote == client:
				serverCk = e.Cookie
			case e.Kind == tracer.KindResetSent && e.Local == refused:
				rst = true
			case e.Kind == tracer.KindError && e.Remote == refused:
				sockErr = true
			}
		}
		return clientCk != 0 && serverCk != 0 && closed(evs, clientCk) && closed(evs, serverCk) && (rst || !socketless) && sockErr
	})
	want := map[uint64][]string{
		clientCk: {"CLOSE->SYN_SENT", "SYN_SENT->ESTABLISHED", "ESTABLISHED->FIN_WAIT1", "FIN_WAIT1->FIN_WAIT2", "FIN_WAIT2->CLOSE"},
		serverCk: {"LISTEN->SYN_RECV", "SYN_RECV->ESTABLISHED", "ESTABLISHED->CLOSE_WAIT", "CLOSE_WAIT->LAST_ACK", "LAST_ACK->CLOSE"},
	}
	for ck, w := range want {
		if got := transitions(evs, ck); !slices.Equal(got, w) {
			t.Errorf("cookie %d transitions\n got %v\nwant %v", ck, got, w)
		}
	}
	cnt, err := col.tr.Counters()
	if err != nil {
		t.Fatal(err)
	}
	nested := map[string]uint64{}
	for _, r := range cnt.Recursion {
		nested[r.Tracepoint] = r.Nested
	}
	states := uint64(0)
	for _, e := range evs {
		if e.Kind == tracer.KindState {
			states++
		}
	}
	// Counted before the namespace filter, so at least the events seen here.
	if nested["sock/inet_sock_set_state"] < states || (socketless && nested["tcp/tcp_send_reset"] == 0) || nested["sock/inet_sk_error_report"] == 0 {
		t.Errorf("events handled nested: %v; want at least the %d state events, a reset and an error", nested, states)
	}
}

// TestRecursionMissesReported: every tracepoint attached is reported with
// its main program's recursion_misses, read from the kernel's program info.
func TestRecursionMissesReported(t *testing.T) {
	ns := newNS(t)
	col := traceNS(t, ns, tracer.Config{})
	cnt, err := col.tr.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if len(cnt.Recursion) != col.tr.Attached() {
		t.Fatalf("%d recursion entries for %d tracepoints attached: %+v", len(cnt.Recursion), col.tr.Attached(), cnt.Recursion)
	}
	seen := map[string]bool{}
	for _, r := range cnt.Recursion {
		if r.Tracepoint == "" || !strings.HasPrefix(r.Program, "handle_") || strings.HasSuffix(r.Program, "_nested") || seen[r.Tracepoint] {
			t.Errorf("bad entry %+v", r)
		}
		seen[r.Tracepoint] = true
	}
	if !seen["sock/inet_sock_set_state"] {
		t.Errorf("inet_sock_set_state missing from %+v", cnt.Recursion)
	}
}

// TestRecursionUnderSteeredLoad: with loopback packets received on the
// other CPU (receive packet steering, set in the test's namespace only),
// the softirq that carries a handshake often interrupts the state program
// running in process context there, which the kernel then skips: hundreds
// of skips per 3,200 connections. The _nested program must take most of
// them and the rest must be counted. Opt-in (TCPSCOPE_STRESS=1): a 20 s
// load on both CPUs. It also logs how many transitions arrived in all:
// on 6.18 a few per run are missing beyond those counted, and never
// reached a BPF program (README, Guarantees); the builder flags those
// connections through their state gaps.
func TestRecursionUnderSteeredLoad(t *testing.T) {
	if os.Getenv("TCPSCOPE_STRESS") == "" {
		t.Skip("a 20 s load test: set TCPSCOPE_STRESS=1")
	}
	if runtime.NumCPU() < 2 {
		t.Skip("steering needs two CPUs")
	}
	ns := newNS(t)
	if err := ns.SteerLoopback(fmt.Sprintf("%x", 1<<runtime.NumCPU()-1)); err != nil {
		t.Fatal(err)
	}
	col := traceNS(t, ns, tracer.Config{})
	if os.Getenv("TCPSCOPE_TEST_NO_NESTED") != "" {
		if err := tracer.DetachNested(col.tr); err != nil {
			t.Fatal(err)
		}
	}
	ln := listen(t, ns, "tcp4", "127.0.0.1:0")
	server := ln.Addr().String()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				io.Copy(io.Discard, c)
				c.Close()
			}()
		}
	}()
	const workers, perWorker = 8, 400
	deadline := time.Now().Add(20 * time.Second)
	var wg sync.WaitGroup
	var dialed atomic.Int64
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWorker && time.Now().Before(deadline); i++ {
				c, err := dial(ns, "tcp4", server, 5*time.Second)
				if err != nil {
					t.Errorf("dialing: %v", err)
					return
				}
				dialed.Add(1)
				c.Close()
			}
		}()
	}
	wg.Wait()
	n := int(dialed.Load())
	// Every transition has fired once no socket is left between SYN_SENT
	// and LAST_ACK: only the listener and TIME_WAIT remain.
	var open uint32
	for _, st := range []tracer.State{tracer.StateEstablished, tracer.StateSynSent, tracer.StateSynRecv, tracer.StateFinWait1,
		tracer.StateFinWait2, tracer.StateCloseWait, tracer.StateLastAck, tracer.StateClosing, tracer.StateNewSynRecv} {
		open |= 1 << uint(st)
	}
	for end := time.Now().Add(30 * time.Second); ; {
		socks, err := ns.TCPSockets(open)
		if err != nil {
			t.Fatal(err)
		}
		if len(socks) == 0 {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("%d sockets still closing after 30s", len(socks))
		}
		select {
		case <-col.notify:
		case <-time.After(100 * time.Millisecond):
		}
	}
	// Five transitions on each end, both ends cleanly closed.
	want := 10 * n
	count := func(evs []tracer.Event) int {
		k := 0
		for _, e := range evs {
			if e.Kind == tracer.KindState && e.NewState != tracer.StateListen && !(e.OldState == tracer.StateListen && e.NewState == tracer.StateClose) {
				k++
			}
		}
		return k
	}
	// Polled, not waitFor: its dump of every event would drown the numbers.
	var cnt tracer.Counters
	var got int
	for end := time.Now().Add(10 * time.Second); ; {
		var err error
		if cnt, err = col.tr.Counters(); err != nil {
			t.Fatal(err)
		}
		if got = count(col.snapshot()); got+int(cnt.Dropped()) >= want || time.Now().After(end) {
			break
		}
		select {
		case <-col.notify:
		case <-time.After(100 * time.Millisecond):
		}
	}
	var sm tracer.RecursionMisses
	for _, r := range cnt.Recursion {
		if r.Tracepoint == "sock/inet_sock_set_state" {
			sm = r
		}
	}
	col.mu.Lock()
	readErrs := len(col.errs)
	col.mu.Unlock()
	t.Logf("%d connections, %d of %d state events; inet_sock_set_state: %d recursion misses, %d handled nested, %d lost; dropped in all %d; %d read errors",
		n, got, want, sm.Misses, sm.Nested, sm.Lost(), cnt.Dropped(), readErrs)
	if got > want {
		t.Errorf("%d state events, more than the %d of %d connections", got, want, n)
	}
	if sm.Misses > 0 && sm.Nested == 0 {
		t.Errorf("%d recursion misses and none handled nested", sm.Misses)
	}
	if sm.Nested*2 < sm.Misses {
		t.Errorf("only %d of %d recursion misses handled nested", sm.Nested, sm.Misses)
	}
	if readErrs > 0 {
		t.Errorf("%d read errors", readErrs)
	}
	t.Logf("not delivered: %d, of which counted: %d", want-got, cnt.Dropped())
}
