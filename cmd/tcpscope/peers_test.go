package main

import (
	be "encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/output"
	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/netns"
	"github.com/tcpscope/tcpscope/tracer/nettest"
	"golang.org/x/sys/unix"
)

// sendSegment sends one crafted IPv4 TCP segment (no options, no payload)
// through a raw socket inside ns.
func sendSegment(t *testing.T, ns *netns.NS, from, to netip.AddrPort, seq, ack uint32, flags byte) {
	t.Helper()
	err := ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		pkt := make([]byte, 40)
		pkt[0] = 0x45
		be.BigEndian.PutUint16(pkt[2:], 40)
		pkt[6], pkt[8], pkt[9] = 0x40, 64, unix.IPPROTO_TCP
		src, dst := from.Addr().As4(), to.Addr().As4()
		copy(pkt[12:16], src[:])
		copy(pkt[16:20], dst[:])
		be.BigEndian.PutUint16(pkt[10:], checksum(pkt[:20]))
		tcp := pkt[20:]
		be.BigEndian.PutUint16(tcp[0:], from.Port())
		be.BigEndian.PutUint16(tcp[2:], to.Port())
		be.BigEndian.PutUint32(tcp[4:], seq)
		be.BigEndian.PutUint32(tcp[8:], ack)
		tcp[12], tcp[13] = 5<<4, flags
		be.BigEndian.PutUint16(tcp[14:], 65535)
		pseudo := append(append(append([]byte{}, pkt[12:20]...), 0, unix.IPPROTO_TCP, 0, 20), tcp...)
		be.BigEndian.PutUint16(tcp[16:], checksum(pseudo))
		return unix.Sendto(fd, pkt, 0, &unix.SockaddrInet4{Addr: dst})
	})
	if err != nil {
		t.Fatalf("sending a crafted segment: %v", err)
	}
}

const tcpTimeWait = 6

// waitTimeWait polls sock_diag until the tuple is in TIME_WAIT (want) or
// gone from it (!want).
// A recording given as rec is stopped on a timeout, and the records of
// that pair are shown: their timelines say what became of the socket.
func waitTimeWait(t *testing.T, ns *netns.NS, local, remote netip.AddrPort, want bool, rec ...*recording) {
	t.Helper()
	const limit = 15 * time.Second // generous: a loaded 2-core machine
	deadline := time.Now().Add(limit)
	for {
		socks, err := ns.TCPSockets(1 << tcpTimeWait)
		if err != nil {
			t.Fatal(err)
		}
		found := slices.ContainsFunc(socks, func(s netns.Socket) bool { return s.Local == local && s.Remote == remote })
		if found == want {
			return
		}
		if time.Now().After(deadline) {
			states := pairStates(ns, local, remote)
			var records []tracer.Connection
			for _, r := range rec {
				for _, c := range r.stop(t).Connections {
					if c.Local == local || c.Remote == local {
						records = append(records, c)
					}
				}
			}
			t.Fatalf("%s -> %s in TIME_WAIT: %v after %s, want %v; sockets of that pair now: %s; records of that pair: %s",
				local, remote, found, limit, want, states, dumpJSON(records))
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
}

// pairStates lists the states of every socket of a tuple, either way,
// for a failure message.
func pairStates(ns *netns.NS, a, b netip.AddrPort) string {
	socks, err := ns.TCPSockets(^uint32(0))
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, s := range socks {
		if (s.Local == a && s.Remote == b) || (s.Local == b && s.Remote == a) {
			out = append(out, fmt.Sprintf("%s->%s %s", s.Local, s.Remote, tracer.State(s.State)))
		}
	}
	return fmt.Sprint(out)
}

// serveUntilEOF accepts connections and closes each one after the
// client's FIN: the client closes first and keeps the TIME_WAIT.
func serveUntilEOF(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() { io.Copy(io.Discard, c); c.Close() }()
	}
}

func byID(rec *output.Recording, id uint64) (tracer.Connection, bool) {
	for _, c := range rec.Connections {
		if c.ID == id {
			return c, true
		}
	}
	return tracer.Connection{}, false
}

// TestTimeWaitKilledByReset: two clients close first and hold TIME_WAIT.
// A crafted out-of-window ACK makes the first one's timewait sock answer
// with an ACK (tcp_timewait_state_process(), TCP_TW_ACK_OOW); that ACK finds
// only the listener, which answers with a reset (TCP_FLAGS) whose seq is
// the timewait sock's rcv_nxt, and the reset kills it (tcp_rfc1337=0). The
// first client's record stays time_wait, flagged time_wait_killed with the
// kill in its timeline when the reset comes while the record waits for
// its grace period; either way the TIME_WAIT table counts what sock_diag
// lists at the end.
func TestTimeWaitKilledByReset(t *testing.T) {
	for _, tc := range []struct {
		name    string
		written bool // the reset comes after the client's record was written
	}{{"in-grace", false}, {"written", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			nettest.RequireKernelFeature(t, tracer.ResetReasons) // the listener's reset to the timewait sock
			ns := nettest.New(t)
			r := startRecord(t, ns, "run.jsonl")
			ln := listenNS(t, ns, "tcp4", "127.0.0.1:0")
			go serveUntilEOF(ln)
			server := netns.AddrPort(ln)
			var clients [2]netip.AddrPort
			for i := range clients {
				c, err := dialNS(t, ns, "tcp4", server.String(), 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				clients[i] = netip.MustParseAddrPort(c.LocalAddr().String())
				c.Close()
			}
			for _, cl := range clients {
				waitTimeWait(t, ns, cl, server, true, r)
			}
			if tc.written {
				r.waitConnections(t, 4, 15*time.Second)
			}
			sendSegment(t, ns, server, clients[0], 0x5eed0001, 0x5eed0002, 0x10)
			waitTimeWait(t, ns, clients[0], server, false)
			want := 4
			if tc.written {
				want = 5 // the listener's reset is a record of its own
			}
			r.waitConnections(t, want, 15*time.Second)
			rec := r.stop(t)
			if len(rec.Connections) != want {
				t.Fatalf("%d records, want %d: %s", len(rec.Connections), want, dumpJSON(rec.Connections))
			}
			var killed, kept tracer.Connection
			for _, c := range byRole(t, rec, tracer.RoleClient) {
				switch c.Local {
				case clients[0]:
					killed = c
				case clients[1]:
					kept = c
				}
			}
			if kept.Outcome != tracer.OutcomeTimeWait || kept.Flags.Has(tracer.FlagTimeWaitKilled) {
				t.Errorf("client left alone: %s", dumpJSON(kept))
			}
			if killed.Outcome != tracer.OutcomeTimeWait || !killed.Flags.Has(tracer.FlagTimeWait) {
				t.Errorf("killed client's outcome: %s", dumpJSON(killed))
			}
			i := slices.IndexFunc(killed.Timeline, func(it tracer.Item) bool { return it.Kind == tracer.ItemTimeWaitKilled })
			if tc.written {
				if i >= 0 || killed.Flags.Has(tracer.FlagTimeWaitKilled) {
					t.Errorf("a record written before the reset cannot know it: %s", dumpJSON(killed))
				}
			} else if i < 0 || !killed.Flags.Has(tracer.FlagTimeWaitKilled) || reasonName(killed.Timeline[i]) != "TCP_FLAGS" {
				t.Errorf("killed client without the kill: %s", dumpJSON(killed))
			}
			tw := rec.Summary.TimeWait
			if len(tw) != 1 {
				t.Fatalf("TIME_WAIT rows: %s", dumpJSON(tw))
			}
			if row := tw[0]; row.KernelCount == nil || *row.KernelCount != 1 || row.LiveAtEnd != 1 {
				t.Errorf("TIME_WAIT row: live %d, kernel %v; want 1 and 1: %s", row.LiveAtEnd, row.KernelCount, dumpJSON(row))
			}
		})
	}
}

// TestDataAfterClientClose: the client closes first, then the server sends
// data. The client's socket, already closed, answers with a reset: either
// the orphaned FIN_WAIT2 socket aborts on the data (TCP_ABORT_ON_DATA,
// after a FIN_WAIT2 -> CLOSE with no TIME_WAIT), or its timewait sock, in
// the FIN_WAIT2 substate, resets (TCP_TIMEWAIT_SOCKET) and is destroyed.
// Either way no TIME_WAIT is left, and the table must say so.
func TestDataAfterClientClose(t *testing.T) {
	t.Parallel()
	nettest.RequireKernelFeature(t, tracer.ResetReasons) // the timewait sock's reset, or the reason of the abort
	ns := nettest.New(t)
	r := startRecord(t, ns, "run.jsonl")
	ln := listenNS(t, ns, "tcp4", "127.0.0.1:0")
	served := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		io.Copy(io.Discard, c) // until the client's FIN
		// Write until the client's reset makes a write fail.
		deadline := time.Now().Add(5 * time.Second)
		for i := 0; i < 100 && time.Now().Before(deadline); i++ {
			if _, err := c.Write([]byte("late")); err != nil {
				served <- nil
				return
			}
		}
		served <- errors.New("no reset from the closed client")
	}()
	server := netns.AddrPort(ln)
	c, err := dialNS(t, ns, "tcp4", server.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	client := netip.MustParseAddrPort(c.LocalAddr().String())
	c.Close()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	waitTimeWait(t, ns, client, server, false)
	r.waitConnections(t, 2, 15*time.Second)
	rec := r.stop(t)
	cl := one(t, rec, tracer.RoleClient)
	killed := cl.Outcome == tracer.OutcomeTimeWait && cl.Flags.Has(tracer.FlagTimeWaitKilled)
	aborted := cl.Outcome == tracer.OutcomeReset && slices.ContainsFunc(cl.Timeline, func(it tracer.Item) bool { return reasonName(it) == "TCP_ABORT_ON_DATA" })
	if !killed && !aborted {
		t.Errorf("client: %s", dumpJSON(cl))
	}
	t.Logf("client outcome %s, flags %v", cl.Outcome, cl.Flags)
	for _, row := range rec.Summary.TimeWait {
		if row.KernelCount == nil || *row.KernelCount != 0 || row.LiveAtEnd != 0 {
			t.Errorf("TIME_WAIT row: live %d, kernel %v; want 0 and 0: %s", row.LiveAtEnd, row.KernelCount, dumpJSON(row))
		}
	}
}

// vethPair makes two namespaces joined by a veth pair, 10.77.0.1/24 on
// the first and 10.77.0.2/24 on the second.
func vethPair(t *testing.T) (a, b *netns.NS, addrA, addrB netip.Addr) {
	t.Helper()
	a, b = nettest.New(t), nettest.New(t)
	pa, pb := netip.MustParsePrefix("10.77.0.1/24"), netip.MustParsePrefix("10.77.0.2/24")
	if err := a.Veth("tsa", pa, b, "tsb", pb); err != nil {
		t.Fatal(err)
	}
	return a, b, pa.Addr(), pb.Addr()
}

// TestPeersAcrossVeth: client in one namespace, server in another, joined
// by veth. A clean connection's two records name each other, and so do a
// refused connect's client and the server's socketless reset.
func TestPeersAcrossVeth(t *testing.T) {
	t.Parallel()
	nsA, nsB, _, addrB := vethPair(t)
	r := startRecord(t, nsA, "run.jsonl", "--netns", fmt.Sprint(nsB.Inode))
	ln := listenNS(t, nsB, "tcp4", netip.AddrPortFrom(addrB, 0).String())
	go serveUntilEOF(ln)
	server := netns.AddrPort(ln)
	c, err := dialNS(t, nsA, "tcp4", server.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	client := netip.MustParseAddrPort(c.LocalAddr().String())
	c.Close()
	// A port nothing listens on: a listener's, closed.
	closed := listenNS(t, nsB, "tcp4", netip.AddrPortFrom(addrB, 0).String())
	refusedAt := netns.AddrPort(closed)
	closed.Close()
	if _, err := dialNS(t, nsA, "tcp4", refusedAt.String(), 5*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("connect to a closed port: %v, want ECONNREFUSED", err)
	}
	r.waitConnections(t, 4, 15*time.Second)
	rec := r.stop(t)
	if len(rec.Connections) != 4 {
		t.Fatalf("%d records, want 4: %s", len(rec.Connections), dumpJSON(rec.Connections))
	}
	var cl, sv, rcl, rsv tracer.Connection
	for _, x := range rec.Connections {
		switch {
		case x.Role == tracer.RoleClient && x.Local == client:
			cl = x
		case x.Role == tracer.RoleServer && x.Local == server:
			sv = x
		case x.Role == tracer.RoleClient && x.Remote == refusedAt:
			rcl = x
		case x.Role == tracer.RoleServer && x.Local == refusedAt:
			rsv = x
		}
	}
	if cl.NetNS != nsA.Inode || sv.NetNS != nsB.Inode || cl.Outcome != tracer.OutcomeTimeWait || sv.Remote != client {
		t.Fatalf("connection records: %s", dumpJSON(rec.Connections))
	}
	if cl.PeerID != sv.ID || sv.PeerID != cl.ID {
		t.Errorf("client peer %d, server peer %d; want %d and %d", cl.PeerID, sv.PeerID, sv.ID, cl.ID)
	}
	if rcl.Outcome != tracer.OutcomeRefused || rsv.Outcome != tracer.OutcomeRefused || rsv.NetNS != nsB.Inode {
		t.Fatalf("refused records: %s", dumpJSON(rec.Connections))
	}
	if rcl.PeerID != rsv.ID || rsv.PeerID != rcl.ID {
		t.Errorf("refused client peer %d, server reset peer %d; want %d and %d", rcl.PeerID, rsv.PeerID, rsv.ID, rcl.ID)
	}
}

// TestSameTupleUnrelatedNamespaces: two unrelated veth pairs with the same
// addresses. Only the first pair's client end and the second pair's
// server end are traced, and the second connection reuses the first's
// ports, so the two traced records have reversed tuples; the second starts
// after the first closed, while its record still waits for its grace
// period. They are no pair.
func TestSameTupleUnrelatedNamespaces(t *testing.T) {
	t.Parallel()
	a1, b1, _, addrB := vethPair(t)
	a2, b2, addrA, _ := vethPair(t)
	r := startRecord(t, a1, "run.jsonl", "--netns", fmt.Sprint(b2.Inode))
	ln1 := listenNS(t, b1, "tcp4", netip.AddrPortFrom(addrB, 0).String())
	go serveUntilEOF(ln1)
	server := netns.AddrPort(ln1)
	ln2 := listenNS(t, b2, "tcp4", server.String()) // the same port, in an unrelated namespace
	go serveUntilEOF(ln2)
	c, err := dialNS(t, a1, "tcp4", server.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	client := netip.MustParseAddrPort(c.LocalAddr().String())
	c.Close()
	waitTimeWait(t, a1, client, server, true)
	// The same client port, in the second pair's fresh namespace.
	var c2 net.Conn
	err = a2.Do(func() (err error) {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(addrA, client.Port()))}
		c2, err = d.Dial("tcp4", server.String())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	c2.Close()
	r.waitConnections(t, 2, 15*time.Second)
	rec := r.stop(t)
	if len(rec.Connections) != 2 {
		t.Fatalf("%d records, want 2: %s", len(rec.Connections), dumpJSON(rec.Connections))
	}
	cl, sv := one(t, rec, tracer.RoleClient), one(t, rec, tracer.RoleServer)
	if cl.Local != sv.Remote || cl.Remote != sv.Local || !sv.Start.After(cl.End) {
		t.Fatalf("want reversed tuples, the server starting after the client ended: %s", dumpJSON(rec.Connections))
	}
	if cl.PeerID != 0 || sv.PeerID != 0 {
		t.Errorf("unrelated ends linked: client peer %d, server peer %d", cl.PeerID, sv.PeerID)
	}
}
