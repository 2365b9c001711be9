package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/output"
	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/findings"
	"github.com/tcpscope/tcpscope/tracer/netns"
	"github.com/tcpscope/tcpscope/tracer/nettest"
)

func dialNS(t *testing.T, ns *netns.NS, network, addr string, timeout time.Duration) (net.Conn, error) {
	t.Helper()
	return ns.Dial(network, addr, timeout)
}

func byRole(t *testing.T, rec *output.Recording, role tracer.Role) []tracer.Connection {
	t.Helper()
	var out []tracer.Connection
	for _, c := range rec.Connections {
		if c.Role == role {
			out = append(out, c)
		}
	}
	return out
}

func one(t *testing.T, rec *output.Recording, role tracer.Role) tracer.Connection {
	t.Helper()
	cs := byRole(t, rec, role)
	if len(cs) != 1 {
		t.Fatalf("%d %s records, want 1: %s", len(cs), role, dumpJSON(rec.Connections))
	}
	return cs[0]
}

// TestRecordCleanConnections: both close orders, IPv4 and IPv6. The server
// is another process, so owners are checked against two real pids.
func TestRecordCleanConnections(t *testing.T) {
	cases := []struct {
		name, network, addr, mode string
		client, server            tracer.Outcome
		clientBy, serverBy        string
	}{
		{"ipv4/client-closes", "tcp4", "127.0.0.1:0", "client-closes", tracer.OutcomeTimeWait, tracer.OutcomeClosed, "local", "remote"},
		{"ipv4/server-closes", "tcp4", "127.0.0.1:0", "server-closes", tracer.OutcomeClosed, tracer.OutcomeTimeWait, "remote", "local"},
		{"ipv6/client-closes", "tcp6", "[::1]:0", "client-closes", tracer.OutcomeTimeWait, tracer.OutcomeClosed, "local", "remote"},
		{"ipv6/server-closes", "tcp6", "[::1]:0", "server-closes", tracer.OutcomeClosed, tracer.OutcomeTimeWait, "remote", "local"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ns := nettest.New(t)
			r := startRecord(t, ns, "run.jsonl")
			addr, serverPid := startServer(t, ns, tc.network, tc.addr, tc.mode, 1)
			c, err := dialNS(t, ns, tc.network, addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if tc.mode == "server-closes" {
				io.Copy(io.Discard, c)
			}
			c.Close()
			r.waitConnections(t, 2, 15*time.Second)
			rec := r.stop(t)
			cl, sv := one(t, rec, tracer.RoleClient), one(t, rec, tracer.RoleServer)
			if cl.Outcome != tc.client || sv.Outcome != tc.server || cl.ClosedBy.String() != tc.clientBy || sv.ClosedBy.String() != tc.serverBy {
				t.Errorf("client %s closed_by %s, server %s closed_by %s; want %s %s, %s %s",
					cl.Outcome, cl.ClosedBy, sv.Outcome, sv.ClosedBy, tc.client, tc.clientBy, tc.server, tc.serverBy)
			}
			if cl.PID != uint32(os.Getpid()) || sv.PID != uint32(serverPid) || sv.Comm != cl.Comm {
				t.Errorf("owners: client %s/%d server %s/%d; want pids %d and %d", cl.Comm, cl.PID, sv.Comm, sv.PID, os.Getpid(), serverPid)
			}
			if cl.PeerID != sv.ID || sv.PeerID != cl.ID || cl.Local != sv.Remote || cl.Remote != sv.Local {
				t.Errorf("ends not linked: client %d %s->%s peer %d, server %d %s->%s peer %d",
					cl.ID, cl.Local, cl.Remote, cl.PeerID, sv.ID, sv.Local, sv.Remote, sv.PeerID)
			}
			want := netip.MustParseAddrPort(addr)
			if sv.Local != want || cl.Local.Port() == 0 || sv.ListenerID == 0 {
				t.Errorf("server local %s want %s; client local %s; listener %d", sv.Local, want, cl.Local, sv.ListenerID)
			}
			if cl.HandshakeUs < 0 || sv.SynRecvUs < 0 || sv.SynRecvHow != tracer.SynRecvFromSRTT {
				t.Errorf("handshake %d us, syn_recv %d us via %s", cl.HandshakeUs, sv.SynRecvUs, sv.SynRecvHow)
			}
			closer := cl
			if tc.mode == "server-closes" {
				closer = sv
			}
			if !slices.Equal(closer.Flags.List(), []tracer.Flag{tracer.FlagTimeWait}) || closer.Timeline[len(closer.Timeline)-1].State != tracer.StateTimeWait {
				t.Errorf("active closer flags %v, last step %+v", closer.Flags, closer.Timeline[len(closer.Timeline)-1])
			}
			if fs := checkedFindings(t, r, rec); len(fs) != 0 {
				t.Errorf("clean connections, findings: %s", dumpJSON(fs))
			}
		})
	}
}

// TestRecordRefused: a connect to a closed port.
func TestRecordRefused(t *testing.T) {
	t.Parallel()
	nettest.RequireKernelFeature(t, tracer.ResetReasons) // the server side's socketless reset
	ns := nettest.New(t)
	r := startRecord(t, ns, "run.json")
	if _, err := dialNS(t, ns, "tcp4", "127.0.0.1:9", 5*time.Second); err == nil {
		t.Fatal("connect to port 9 succeeded")
	}
	rec := r.stop(t)
	cl, sv := one(t, rec, tracer.RoleClient), one(t, rec, tracer.RoleServer)
	if cl.Outcome != tracer.OutcomeRefused || cl.Errno.String() != "ECONNREFUSED" || !cl.Flags.Has(tracer.FlagRefused) || cl.PID != uint32(os.Getpid()) {
		t.Errorf("client: %s", dumpJSON(cl))
	}
	if sv.Outcome != tracer.OutcomeRefused || sv.Local.Port() != 9 || sv.Remote != cl.Local || sv.PeerID != cl.ID ||
		!sv.Flags.Has(tracer.FlagResetSent) || reasonName(sv.Timeline[0]) != "NO_SOCKET" {
		t.Errorf("server refused record: %s", dumpJSON(sv))
	}
	f := findingOf(t, checkedFindings(t, r, rec), findings.ConnectionRefused)
	if f.Subject != "127.0.0.1:9" || f.NetNS != ns.Inode || fact(f, "refused_connections") != 1 || fact(f, "listener_appeared_later") != 0 ||
		!f.First.Equal(cl.Start) || !f.Last.Equal(cl.End) {
		t.Errorf("finding: %s", dumpJSON(f))
	}
}

// TestRecordSynTimeout drops every SYN on the way in, with tcp_syn_retries
// lowered in the namespace, until connect() gives up.
func TestRecordSynTimeout(t *testing.T) {
	t.Parallel()
	ns := nettest.New(t)
	if err := ns.Sysctl("net.ipv4.tcp_syn_retries", "2"); err != nil {
		t.Fatal(err)
	}
	// Dropped on input, so each retransmit leaves the socket (err 0) and is
	// counted both by the kernel's TCPSynRetrans and by tcpscope.
	if _, err := ns.AddDrop(netns.Drop{DstPort: 7, FlagMask: netns.FlagSYN | netns.FlagACK, Flags: netns.FlagSYN, Input: true}); err != nil {
		t.Fatal(err)
	}
	before, err := ns.Counters()
	if err != nil {
		t.Fatal(err)
	}
	r := startRecord(t, ns, "run.jsonl")
	_, err = dialNS(t, ns, "tcp4", "127.0.0.1:7", 30*time.Second)
	if err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("connect: %v, want a timeout", err)
	}
	after, _ := ns.Counters()
	rec := r.stop(t)
	cl := one(t, rec, tracer.RoleClient)
	want := netns.Delta(before, after)["TcpExt.TCPSynRetrans"]
	if cl.Outcome != tracer.OutcomeTimeout || cl.Errno.String() != "ETIMEDOUT" ||
		!slices.Equal(cl.Flags.List(), []tracer.Flag{tracer.FlagSynRetransmitted, tracer.FlagHandshakeTimeout}) {
		t.Errorf("client: %s", dumpJSON(cl))
	}
	if want == 0 || uint64(cl.Retransmits.Syn) != want {
		// The timeline shows whether a retransmit failed (errno, "not
		// sent") or is missing altogether.
		t.Errorf("SYN retransmits %d, TcpExtTCPSynRetrans delta %d; client: %s", cl.Retransmits.Syn, want, dumpJSON(cl))
	}
	f := findingOf(t, checkedFindings(t, r, rec), findings.HandshakeTimeout)
	if f.Subject != "127.0.0.1:7" || f.NetNS != ns.Inode || fact(f, "handshake_timeout_connections") != 1 ||
		fact(f, "syn_retransmits") != uint64(cl.Retransmits.Syn) || fact(f, "listener_drops") != 0 ||
		fact(f, "TcpExt.TCPSynRetrans") != counterOf(rec, ns.Inode, "TcpExt.TCPSynRetrans") ||
		!strings.Contains(f.Mechanism, "No traced listener") || !f.First.Equal(cl.Start) || !f.Last.Equal(cl.End) {
		t.Errorf("finding: %s", dumpJSON(f))
	}
	quoted(t, f, ns, findings.SynRetries)
}

// TestRecordResets: the server aborts, with SO_LINGER 0 and by closing with
// the request unread. Both ends end reset; the server sent it, with the
// kernel's reason.
func TestRecordResets(t *testing.T) {
	for _, tc := range []struct{ mode, reason string }{{"linger0", "TCP_STATE"}, {"unread", "TCP_ABORT_ON_CLOSE"}} {
		t.Run(tc.mode, func(t *testing.T) {
			t.Parallel()
			ns := nettest.New(t)
			r := startRecord(t, ns, "run.jsonl")
			addr, _ := startServer(t, ns, "tcp4", "127.0.0.1:0", tc.mode, 1)
			c, err := dialNS(t, ns, "tcp4", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
			_, err = io.Copy(io.Discard, c)
			if err == nil || !strings.Contains(err.Error(), "reset") {
				t.Errorf("client read: %v, want connection reset", err)
			}
			c.Close()
			r.waitConnections(t, 2, 15*time.Second)
			rec := r.stop(t)
			cl, sv := one(t, rec, tracer.RoleClient), one(t, rec, tracer.RoleServer)
			if cl.Outcome != tracer.OutcomeReset || cl.ClosedBy != tracer.ClosedByRemote || !cl.Flags.Has(tracer.FlagResetReceived) || cl.Errno.String() != "ECONNRESET" {
				t.Errorf("client: %s", dumpJSON(cl))
			}
			if sv.Outcome != tracer.OutcomeReset || sv.ClosedBy != tracer.ClosedByLocal || !sv.Flags.Has(tracer.FlagResetSent) {
				t.Errorf("server: %s", dumpJSON(sv))
			}
			// The aborting end's process got no error: with SO_LINGER 0,
			// tcp_disconnect() reports ECONNRESET to the closing socket itself.
			if sv.Errno != 0 {
				t.Errorf("server errno %q, want none (only the client saw ECONNRESET)", sv.Errno)
			}
			for _, l := range strings.Split(r.stdout.String(), "\n") {
				if strings.Contains(l, " server ") && strings.Contains(l, "ECONNRESET") {
					t.Errorf("server line shows an errno: %s", l)
				}
			}
			var reason string
			for _, it := range sv.Timeline {
				if it.Kind == tracer.ItemResetSent {
					reason = reasonName(it)
				}
			}
			if !kernelHas(t, tracer.CloseResetReasons) {
				t.Logf("reset reason %q not checked: needs %s", reason, tracer.CloseResetReasons)
			} else if reason != tc.reason {
				t.Errorf("server reset reason %q, want %q", reason, tc.reason)
			}
			f := findingOf(t, checkedFindings(t, r, rec), findings.ServerResets)
			counter := map[string]string{"TCP_STATE": "TcpExt.TCPAbortOnData", "TCP_ABORT_ON_CLOSE": "TcpExt.TCPAbortOnClose"}[reason]
			if f.Subject != fmt.Sprintf("%s (%s/%d), reason %s", sv.Local, sv.Comm, sv.PID, reason) || f.NetNS != ns.Inode ||
				fact(f, "reset_connections") != 1 || fact(f, "Tcp.OutRsts") != counterOf(rec, ns.Inode, "Tcp.OutRsts") ||
				counter != "" && fact(f, counter) != counterOf(rec, ns.Inode, counter) || !f.First.Equal(sv.Start) {
				t.Errorf("finding: %s", dumpJSON(f))
			}
		})
	}
}

// TestRecordDataRetransmits drops the client's data segments for a while.
func TestRecordDataRetransmits(t *testing.T) {
	t.Parallel()
	ns := nettest.New(t)
	r := startRecord(t, ns, "run.jsonl")
	addr, _ := startServer(t, ns, "tcp4", "127.0.0.1:0", "echo", 1)
	c, err := dialNS(t, ns, "tcp4", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	port := netip.MustParseAddrPort(addr).Port()
	before, _ := ns.Counters()
	remove, err := ns.AddDrop(netns.Drop{DstPort: port, FlagMask: netns.FlagPSH, Flags: netns.FlagPSH, Input: true})
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("ping"))
	// Let a few RTOs (200 ms, 400 ms, 800 ms...) pass, then let the data in.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		now, _ := ns.Counters()
		if netns.Delta(before, now)["Tcp.RetransSegs"] >= 3 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	remove()
	buf := make([]byte, 4)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("echo after drops: %v", err)
	}
	c.Close()
	r.waitConnections(t, 2, 15*time.Second)
	after, _ := ns.Counters()
	rec := r.stop(t)
	cl, sv := one(t, rec, tracer.RoleClient), one(t, rec, tracer.RoleServer)
	// Every retransmit in the namespace since the handshake is one of these
	// two sockets': the client's dropped data, and whatever the server's
	// side needed (a tail loss probe of the echo when the client is slow).
	want := netns.Delta(before, after)["Tcp.RetransSegs"]
	// Tail loss probes of a close resend bare FINs, counted apart.
	if !cl.Flags.Has(tracer.FlagDataRetransmitted) || cl.Retransmits.Data < 3 ||
		uint64(cl.Retransmits.Data+sv.Retransmits.Data+cl.Retransmits.Fin+sv.Retransmits.Fin) != want {
		t.Errorf("data retransmits: client %+v, server %+v; Tcp RetransSegs delta %d; client flags %v",
			cl.Retransmits, sv.Retransmits, want, cl.Flags)
	}
}

// TestReportReproducesTables: report renders a saved file's tables exactly
// as record printed them at the end.
func TestReportReproducesTables(t *testing.T) {
	t.Parallel()
	ns := nettest.New(t)
	r := startRecord(t, ns, "run.jsonl")
	addr, _ := startServer(t, ns, "tcp4", "127.0.0.1:0", "client-closes", 3)
	dialClose(t, ns, addr, 3)
	dialNS(t, ns, "tcp4", "127.0.0.1:9", 5*time.Second)
	r.waitConnections(t, 8, 15*time.Second)
	r.stop(t)
	out, err := runBinary(t, "report", r.path)
	if err != nil {
		t.Fatal(err)
	}
	recorded := r.stdout.String()
	if got, want := tablesOf(out), tablesOf(recorded); got != want || want == "" {
		t.Errorf("report tables differ from record's:\n--- report\n%s\n--- record\n%s", got, want)
	}
	if n := strings.Count(out, " refused ["); n+strings.Count(out, " refused (ECONNREFUSED) [") != 2 {
		t.Errorf("report lacks the two refused lines:\n%s", out)
	}
	// The same file on standard input, as it is and laid out by jq ., and
	// cut short inside its summary: the same connections.
	data, err := os.ReadFile(r.path)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range [][]byte{data, indentJSON(t, data)} {
		if got, stderr, code := report(t, in, "-"); code != 0 || stderr != "" || got != out {
			t.Errorf("report - : exit %d, stderr %q, stdout:\n%s\nwant:\n%s", code, stderr, got, out)
		}
	}
	last := bytes.LastIndexByte(data[:len(data)-1], '\n') + 1
	torn := data[:last+20]
	got, stderr, code := report(t, torn, "-")
	lastLine := fmt.Sprintf("standard input:%d: the last record is cut short", bytes.Count(torn, []byte("\n"))+1)
	if code != 0 || !strings.Contains(stderr, lastLine) || !strings.Contains(stderr, "no summary") ||
		strings.Count(got, " refused [")+strings.Count(got, " refused (ECONNREFUSED) [") != 2 {
		t.Errorf("report - cut short: exit %d, stderr %q, stdout:\n%s", code, stderr, got)
	}
}

// tablesOf keeps the ASCII tables of an output.
func tablesOf(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "+") || strings.HasPrefix(l, "|") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// TestRecordV4MappedServer: a dual-stack listener's child is an AF_INET6
// socket carrying v4-mapped addresses (::ffff:127.0.0.1); its record reads
// as IPv4, the same tuple as the AF_INET client's, and the two are linked.
func TestRecordV4MappedServer(t *testing.T) {
	t.Parallel()
	ns := nettest.New(t)
	r := startRecord(t, ns, "run.jsonl")
	ln := listenNS(t, ns, "tcp", "[::]:0")
	port := netipAddrPort(t, ln.Addr().String()).Port()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Read(make([]byte, 1)) // until the client's FIN
			c.Close()
		}
	}()
	c, err := dialNS(t, ns, "tcp4", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	client := netipAddrPort(t, c.LocalAddr().String())
	c.Close()
	r.waitConnections(t, 2, 15*time.Second)
	rec := r.stop(t)
	cl, sv := one(t, rec, tracer.RoleClient), one(t, rec, tracer.RoleServer)
	want := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	if sv.Family != tracer.FamilyIPv4 || sv.Local != want || sv.Remote != client || sv.PeerID != cl.ID || cl.PeerID != sv.ID {
		t.Errorf("server of a dual-stack listener: %s %s -> %s peer %d; want ipv4 %s -> %s linked to %d",
			sv.Family, sv.Local, sv.Remote, sv.PeerID, want, client, cl.ID)
	}
}

// TestRecordPreexisting: a listener (another process) and a connection that
// were open before tracing started. The old connection is recorded as
// preexisting, its owners taken from the close() each end ran; the new one
// is attributed to the listener's process, found through /proc.
func TestRecordPreexisting(t *testing.T) {
	t.Parallel()
	ns := nettest.New(t)
	addr, serverPid := startServer(t, ns, "tcp4", "127.0.0.1:0", "client-closes", 2)
	old, err := dialNS(t, ns, "tcp4", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	r := startRecord(t, ns, "run.jsonl")
	dialClose(t, ns, addr, 1)
	old.Close()
	r.waitConnections(t, 4, 15*time.Second)
	rec := r.stop(t)
	port := netipAddrPort(t, addr).Port()
	var pre, fresh []tracer.Connection
	for _, c := range rec.Connections {
		if c.Flags.Has(tracer.FlagPreexisting) {
			pre = append(pre, c)
		} else {
			fresh = append(fresh, c)
		}
	}
	if len(pre) != 2 || len(fresh) != 2 {
		t.Fatalf("%d preexisting and %d new records, want 2 and 2: %s", len(pre), len(fresh), dumpJSON(rec.Connections))
	}
	for _, c := range pre {
		wantRole, wantPid := tracer.RoleClient, uint32(os.Getpid())
		if c.Local.Port() == port {
			wantRole, wantPid = tracer.RoleServer, uint32(serverPid)
		}
		if c.Role != wantRole || c.PID != wantPid || c.Outcome == tracer.OutcomeOpen {
			t.Errorf("preexisting %s %s -> %s: role %s pid %d outcome %s; want %s, pid %d, ended",
				c.Role, c.Local, c.Remote, c.Role, c.PID, c.Outcome, wantRole, wantPid)
		}
	}
	for _, c := range fresh {
		if c.Role == tracer.RoleServer && c.PID != uint32(serverPid) {
			t.Errorf("new server connection owned by %d, want the listener's process %d", c.PID, serverPid)
		}
	}
	if len(rec.Listeners) != 1 || !rec.Listeners[0].Preexisting || rec.Listeners[0].PID != uint32(serverPid) ||
		rec.Listeners[0].Connections != 1 || rec.Listeners[0].Backlog == 0 {
		t.Errorf("listener: %s", dumpJSON(rec.Listeners))
	}
}

// TestStatusOpenExcludesClosing: the status line's "open" drops when a
// connection closes, not a grace second later when its record is written
// ("ended").
func TestStatusOpenExcludesClosing(t *testing.T) {
	t.Parallel()
	ns := nettest.New(t)
	ln := listenNS(t, ns, "tcp4", "127.0.0.1:0")
	r := startRecord(t, ns, "run.jsonl", "--status-interval", "100ms")
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- c
		}
	}()
	c, err := dialNS(t, ns, "tcp4", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	sc := <-accepted
	waitStatus := func(from int, want string) int {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for ; ; <-tick.C {
			if i := strings.Index(r.stderr.String()[from:], want); i >= 0 {
				return from + i + len(want)
			}
			if time.Now().After(deadline) {
				t.Fatalf("no status line with %q within 10s:\n%s", want, r.stderr.String()[from:])
			}
		}
	}
	at := waitStatus(0, " 2 open, 0 ended,")
	c.Close()
	sc.Close()
	// The records are written a grace second after the close; every status
	// line in between must already count the two as closed.
	waitStatus(at, " 0 open, 0 ended,")
	waitStatus(at, " 0 open, 2 ended,")
	rec := r.stop(t)
	if len(rec.Connections) != 2 {
		t.Errorf("%d records, want 2", len(rec.Connections))
	}
}
