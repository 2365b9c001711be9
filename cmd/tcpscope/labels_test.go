package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/output"
	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/netns"
	"github.com/tcpscope/tcpscope/tracer/nettest"
	"golang.org/x/sys/unix"
)

// TestRecordFinRetransmit drops the client's FIN on its way in, once: the
// kernel resends it (a tail loss probe), and the client's record counts one
// FIN retransmit, no data, as the namespace's RetransSegs does.
func TestRecordFinRetransmit(t *testing.T) {
	t.Parallel()
	ns := nettest.New(t)
	r := startRecord(t, ns, "run.jsonl")
	addr, _ := startServer(t, ns, "tcp4", "127.0.0.1:0", "client-closes", 1)
	c, err := dialNS(t, ns, "tcp4", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	client := netipAddrPort(t, c.LocalAddr().String())
	// On input: the FIN leaves the socket (the retransmit's err is 0), so
	// the kernel counts each resend in RetransSegs as tcpscope does.
	remove, err := ns.AddDrop(netns.Drop{SrcPort: client.Port(), FlagMask: netns.FlagFIN, Flags: netns.FlagFIN, Input: true})
	if err != nil {
		t.Fatal(err)
	}
	before, err := ns.Counters()
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	// The idle connection's FIN is the only packet in the namespace: once IP
	// has received it, the input hook has dropped it (same softirq). Let the
	// resend through.
	waitCounter(t, ns, before, "Ip.InReceives", 1, 10*time.Second)
	if err := remove(); err != nil {
		t.Fatal(err)
	}
	r.waitConnections(t, 2, 20*time.Second)
	after, _ := ns.Counters()
	rec := r.stop(t)
	cl, sv := one(t, rec, tracer.RoleClient), one(t, rec, tracer.RoleServer)
	if got := netns.Delta(before, after)["Tcp.RetransSegs"]; got != 1 || cl.Retransmits != (tracer.Retransmits{Fin: 1}) ||
		sv.Retransmits != (tracer.Retransmits{}) {
		t.Errorf("retransmits: client %+v, server %+v; Tcp.RetransSegs delta %d; want one bare FIN, the client's", cl.Retransmits, sv.Retransmits, got)
	}
	if !slices.Equal(cl.Flags.List(), []tracer.Flag{tracer.FlagFinRetransmitted, tracer.FlagTimeWait}) {
		t.Errorf("client flags %v, want fin_retransmitted and time_wait (no data_retransmitted)", cl.Flags)
	}
	for _, it := range cl.Timeline {
		if it.Kind == tracer.ItemRetransmit && (output.DetailText(&it) != "FIN" || it.State != tracer.StateFinWait1) {
			t.Errorf("client retransmit item %+v, want a FIN in FIN_WAIT1", it)
		}
	}
	if !strings.Contains(r.stdout.String(), "[fin_retransmitted,time_wait] FIN rtx x1,") {
		t.Errorf("flagged line lacks the FIN retransmit:\n%s", r.stdout.String())
	}
}

// startConnect starts a non-blocking connect(2) from inside ns, as curl and
// ab do, and returns the socket.
func startConnect(t *testing.T, ns *netns.NS, to string) int {
	t.Helper()
	ap := netipAddrPort(t, to)
	var fd int
	err := ns.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		err = unix.Connect(fd, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()})
		if !errors.Is(err, unix.EINPROGRESS) {
			unix.Close(fd)
			return fmt.Errorf("connect: %v, want EINPROGRESS", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return fd
}

// TestRecordAbandonedConnect: SYNs to the port are dropped; the client's
// own process closes its connecting socket, before the first SYN
// retransmit or after one, or aborts it with SO_LINGER 0 (tcp_disconnect()
// then reports ECONNRESET to the socket itself). Its record is
// abandoned_by_app, with no errno and no handshake_timeout.
func TestRecordAbandonedConnect(t *testing.T) {
	for _, tc := range []struct {
		name        string
		retransmits uint64
		linger0     bool
	}{{"before a SYN retransmit", 0, false}, {"after a SYN retransmit", 1, false}, {"SO_LINGER 0", 0, true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ns := nettest.New(t)
			if _, err := ns.AddDrop(netns.Drop{DstPort: 7, FlagMask: netns.FlagSYN | netns.FlagACK, Flags: netns.FlagSYN, Input: true}); err != nil {
				t.Fatal(err)
			}
			r := startRecord(t, ns, "run.jsonl")
			before, err := ns.Counters()
			if err != nil {
				t.Fatal(err)
			}
			fd := startConnect(t, ns, "127.0.0.1:7")
			if tc.retransmits > 0 {
				waitCounter(t, ns, before, "TcpExt.TCPSynRetrans", tc.retransmits, 10*time.Second)
			}
			if tc.linger0 {
				if err := unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0}); err != nil {
					t.Fatal(err)
				}
			}
			unix.Close(fd)
			after, _ := ns.Counters()
			r.waitConnections(t, 1, 15*time.Second)
			rec := r.stop(t)
			cl := one(t, rec, tracer.RoleClient)
			var wantFlags []tracer.Flag
			if tc.retransmits > 0 {
				wantFlags = []tracer.Flag{tracer.FlagSynRetransmitted}
			}
			if cl.Outcome != tracer.OutcomeAbandoned || cl.Errno != 0 || !slices.Equal(cl.Flags.List(), wantFlags) {
				t.Errorf("client: outcome %s errno %q flags %v; want abandoned_by_app, no errno, flags %v\n%s",
					cl.Outcome, cl.Errno, cl.Flags, wantFlags, dumpJSON(cl))
			}
			if got := netns.Delta(before, after)["TcpExt.TCPSynRetrans"]; uint64(cl.Retransmits.Syn) != got || got != tc.retransmits {
				t.Errorf("SYN retransmits %d, TcpExt.TCPSynRetrans delta %d, want %d", cl.Retransmits.Syn, got, tc.retransmits)
			}
			if tc.linger0 {
				// The kernel did report ECONNRESET; it stays in the timeline.
				if it := cl.Timeline[len(cl.Timeline)-1]; it.Kind != tracer.ItemError || it.Errno.String() != "ECONNRESET" {
					t.Errorf("last item %+v, want tcp_disconnect()'s ECONNRESET report", it)
				}
			}
			if !strings.Contains(r.stdout.String(), "| abandoned_by_app | 1 ") {
				t.Errorf("summary lacks the abandoned connect:\n%s", r.stdout.String())
			}
		})
	}
}

// TestRecordPreexistingOpenAtEnd: a connection opened before tracing is
// half-closed while tracing, then left open. Both ends are preexisting and
// open; their records last until tracing stopped, and the report says how
// long they were seen, not "lived 0us".
func TestRecordPreexistingOpenAtEnd(t *testing.T) {
	t.Parallel()
	ns := nettest.New(t)
	ln := listenNS(t, ns, "tcp4", "127.0.0.1:0")
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	c, err := dialNS(t, ns, "tcp4", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	defer sc.Close()
	r := startRecord(t, ns, "run.jsonl")
	// The client's FIN: client FIN_WAIT1 -> FIN_WAIT2, server CLOSE_WAIT.
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, sc); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		socks, err := ns.TCPSockets(1 << tracer.StateFinWait2)
		if err != nil {
			t.Fatal(err)
		}
		if len(socks) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the client never reached FIN_WAIT2")
		}
		time.Sleep(5 * time.Millisecond)
	}
	stopAt := time.Now()
	rec := r.stop(t)
	if len(rec.Connections) != 2 {
		t.Fatalf("%d records, want both ends: %s", len(rec.Connections), dumpJSON(rec.Connections))
	}
	for _, c := range rec.Connections {
		if c.Outcome != tracer.OutcomeOpen || !c.Flags.Has(tracer.FlagPreexisting) {
			t.Errorf("%s: outcome %s flags %v, want open and preexisting", c.Role, c.Outcome, c.Flags)
		}
		if c.End.Before(stopAt) || c.DurationUs != c.End.Sub(c.Start).Microseconds() || c.DurationUs <= 0 {
			t.Errorf("%s: start %s end %s (%d us); want it to last until tracing stopped, after %s",
				c.Role, c.Start, c.End, c.DurationUs, stopAt)
		}
		out, err := runBinary(t, "report", r.path, "--id", fmt.Sprint(c.ID))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "seen for ≥ ") || strings.Contains(out, "lived") {
			t.Errorf("report --id %d:\n%s", c.ID, out)
		}
	}
}
