package main

import (
	"fmt"
	"io"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/output"
	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/findings"
	"github.com/tcpscope/tcpscope/tracer/netns"
	"github.com/tcpscope/tcpscope/tracer/nettest"
)

// setSysctls sets per-namespace settings inside a private namespace.
func setSysctls(t *testing.T, ns interface {
	Sysctl(name, value string) error
}, values map[string]string) {
	t.Helper()
	for k, v := range values {
		if err := ns.Sysctl(k, v); err != nil {
			t.Fatal(err)
		}
	}
}

// sysctlsOf are the summary's sysctls of one namespace, by name.
func sysctlsOf(rec *output.Recording, netnsIno uint32) map[string]string {
	out := map[string]string{}
	if rec.Summary == nil {
		return out
	}
	for _, s := range rec.Summary.Sysctls {
		if s.NetNS == netnsIno {
			out[s.Name] = s.Value
		}
	}
	return out
}

// TestRecordSysctls: a private namespace with non-default settings and a
// traced listener; the export's summary carries the namespace's values.
func TestRecordSysctls(t *testing.T) {
	t.Parallel()
	ns := nettest.New(t)
	want := map[string]string{
		findings.SomaxConn:       "7",
		findings.MaxSynBacklog:   "64",
		findings.Syncookies:      "0",
		findings.AbortOnOverflow: "1",
		findings.LocalPortRange:  "41000 41999",
		findings.TwReuse:         "0",
		findings.SynRetries:      "3",
		findings.SynAckRetries:   "4",
	}
	setSysctls(t, ns, want)
	r := startRecord(t, ns, "run.jsonl")
	c, s := connectedPair(t, ns)
	c.Close()
	s.Close()
	r.waitConnections(t, 2, 15*time.Second)
	rec := r.stop(t)
	got := sysctlsOf(rec, ns.Inode)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("sysctls of namespace %d: %v, want %v", ns.Inode, got, want)
	}
	if fs := checkedFindings(t, r, rec); len(fs) != 0 {
		t.Errorf("one clean connection, findings: %s", dumpJSON(fs))
	}
}

// findingsSection is the FINDINGS section of a printed summary, "" when
// there is none.
func findingsSection(out string) string {
	i := strings.Index(out, "\nFINDINGS (")
	if i < 0 {
		return ""
	}
	var lines []string
	for j, l := range strings.Split(out[i+1:], "\n") {
		if j > 0 && !strings.HasPrefix(l, "   ") && (l == "" || l[0] < '0' || l[0] > '9') {
			break
		}
		lines = append(lines, l)
	}
	return strings.Join(lines, "\n")
}

// checkedFindings returns the findings of a stopped recording's export,
// once it has checked that they are computed from the export alone (what
// report computes from the records equals what the live run stored), that
// report prints the section the live run printed, and that every setting
// a finding quotes is its namespace's value in the summary's sysctls.
func checkedFindings(t *testing.T, r *recording, rec *output.Recording) []findings.Finding {
	t.Helper()
	x := rec.Summary.Extra()
	stored := x.Findings
	x.Listeners = rec.Listeners
	if again := recordingFindings(rec, x); !reflect.DeepEqual(again, stored) {
		t.Errorf("findings from the records:\n%s\nstored by the live run:\n%s", dumpJSON(again), dumpJSON(stored))
	}
	out, err := runBinary(t, "report", r.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("live run's findings:\n%s", findingsSection(r.stdout.String()))
	if live, again := findingsSection(r.stdout.String()), findingsSection(out); live != again {
		t.Errorf("live run printed:\n%s\nreport printed:\n%s", live, again)
	}
	for _, f := range stored {
		values := sysctlsOf(rec, f.NetNS)
		for _, s := range f.Sysctls {
			if s.NetNS != f.NetNS || values[s.Name] != s.Value || s.Value == "" {
				t.Errorf("%s quotes %s = %q in namespace %d; the summary holds %q", f.Kind, s.Name, s.Value, s.NetNS, values[s.Name])
			}
		}
	}
	return stored
}

// findingOf returns the one finding of a kind, failing otherwise.
func findingOf(t *testing.T, fs []findings.Finding, k findings.Kind) *findings.Finding {
	t.Helper()
	var out *findings.Finding
	for i := range fs {
		if fs[i].Kind == k {
			if out != nil {
				t.Fatalf("two %s findings: %s", k, dumpJSON(fs))
			}
			out = &fs[i]
		}
	}
	if out == nil {
		t.Fatalf("no %s finding: %s", k, dumpJSON(fs))
	}
	return out
}

// fact returns one number of a finding's evidence (0 when absent: the
// evidence leaves out counters that did not move).
func fact(f *findings.Finding, name string) uint64 {
	v, _ := f.Fact(name)
	return v
}

// counterOf is a namespace counter's delta in the summary.
func counterOf(rec *output.Recording, netnsIno uint32, name string) uint64 {
	for _, c := range rec.Summary.Counters {
		if c.NetNS == netnsIno && c.Counter == name {
			return c.Delta
		}
	}
	return 0
}

// quoted checks the settings a finding quotes against the namespace's
// own values, read now.
func quoted(t *testing.T, f *findings.Finding, ns *netns.NS, names ...string) {
	t.Helper()
	var want []findings.Sysctl
	for _, n := range names {
		v, err := ns.ReadSysctl(n)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, findings.Sysctl{NetNS: ns.Inode, Name: n, Value: strings.Join(strings.Fields(v), " ")})
	}
	if !reflect.DeepEqual(f.Sysctls, want) {
		t.Errorf("%s quotes %v, the namespace holds %v", f.Kind, f.Sysctls, want)
	}
}

// checkAcceptQueueFinding checks the accept_queue_overflow finding of a
// recording's only listener against the listener's record, the
// connections flagged listen_overflow and the namespace's counters;
// wantFlagged < 0 skips the count of flagged connections.
func checkAcceptQueueFinding(t *testing.T, r *recording, rec *output.Recording, ns *netns.NS, wantFlagged int) *findings.Finding {
	t.Helper()
	if len(rec.Listeners) != 1 {
		t.Fatalf("listeners: %s", dumpJSON(rec.Listeners))
	}
	l := rec.Listeners[0]
	var flagged uint64
	for _, c := range rec.Connections {
		if c.Flags.Has(tracer.FlagListenOverflow) && (c.ListenerID == l.ID || c.Role == tracer.RoleClient && c.Remote == l.Local) {
			flagged++
		}
	}
	f := findingOf(t, checkedFindings(t, r, rec), findings.AcceptQueueOverflow)
	if f.Severity != findings.Critical || f.Subject != fmt.Sprintf("%s (%s/%d)", l.Local, l.Comm, l.PID) || f.NetNS != ns.Inode ||
		fact(f, "backlog") != uint64(l.Backlog) || fact(f, "peak_accept_queue") != uint64(l.PeakQueue) ||
		fact(f, "overflow_drops") != l.Overflows || fact(f, "syn_drops_attributed") != l.SynDropsAttributed ||
		fact(f, "accept_queue_drops") != l.Overflows+l.SynDropsAttributed || fact(f, "listen_overflow_connections") != flagged ||
		fact(f, "full_queue_samples") != l.FullSamples ||
		fact(f, "TcpExt.ListenOverflows") != counterOf(rec, ns.Inode, "TcpExt.ListenOverflows") ||
		fact(f, "TcpExt.ListenDrops") != counterOf(rec, ns.Inode, "TcpExt.ListenDrops") {
		t.Errorf("finding against listener %s and %d flagged connections: %s", dumpJSON(l), flagged, dumpJSON(f))
	}
	if fact(f, "accept_queue_drops") == 0 && flagged == 0 {
		t.Errorf("a finding without drops: %s", dumpJSON(f))
	}
	quoted(t, f, ns, findings.SomaxConn, findings.AbortOnOverflow)
	if !strings.Contains(f.Mechanism, fmt.Sprintf("holds %d connections (its backlog %d", l.Backlog+1, l.Backlog)) {
		t.Errorf("mechanism: %s", f.Mechanism)
	}
	return f
}

// checkQueueFindings: a listener with backlog 1 that never accepts, hit by
// a burst (TestListenerOverflowAndSyncookies): its accept queue overflowed;
// with tcp_syncookies 1 or 2 and cookies sent, a syn_flood_cookies finding
// quotes the setting.
func checkQueueFindings(t *testing.T, r *recording, rec *output.Recording, ns *netns.NS, syncookies string) {
	t.Helper()
	checkAcceptQueueFinding(t, r, rec, ns, -1)
	fs := rec.Summary.Extra().Findings
	sent := counterOf(rec, ns.Inode, "TcpExt.SyncookiesSent")
	var cookies []findings.Finding
	for _, f := range fs {
		if f.Kind == findings.SynFloodCookies {
			cookies = append(cookies, f)
		}
	}
	if sent == 0 {
		if len(cookies) != 0 {
			t.Errorf("no cookie sent, yet %s", dumpJSON(cookies))
		}
		return
	}
	if len(cookies) != 1 {
		t.Fatalf("%d cookies sent, findings %s", sent, dumpJSON(fs))
	}
	f := &cookies[0]
	l := rec.Listeners[0]
	subject := fmt.Sprintf("%s (%s/%d)", l.Local, l.Comm, l.PID)
	if l.Syncookies == 0 {
		subject = fmt.Sprintf("namespace %d", ns.Inode)
	}
	if f.Subject != subject || f.NetNS != ns.Inode || fact(f, "TcpExt.SyncookiesSent") != sent || fact(f, "syncookie_connections") != l.Syncookies ||
		fact(f, "TcpExt.SyncookiesRecv") != counterOf(rec, ns.Inode, "TcpExt.SyncookiesRecv") ||
		!strings.Contains(f.Mechanism, "net.ipv4.tcp_syncookies = "+syncookies) || (syncookies == "2") == strings.Contains(f.Mechanism, "Possible SYN flooding") {
		t.Errorf("finding against listener %s: %s", dumpJSON(l), dumpJSON(f))
	}
	quoted(t, f, ns, findings.Syncookies, findings.MaxSynBacklog, findings.SomaxConn)
}

// TestClientResetsFinding: a client that closes with SO_LINGER 0 resets
// its connection (tcp_disconnect(), reason TCP_STATE): a client_resets
// finding names it, the reason and the namespace's counters.
func TestClientResetsFinding(t *testing.T) {
	t.Parallel()
	ns := nettest.New(t)
	r := startRecord(t, ns, "run.jsonl")
	c, s := connectedPair(t, ns)
	defer s.Close()
	if err := c.(*net.TCPConn).SetLinger(0); err != nil {
		t.Fatal(err)
	}
	c.Close()
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := s.Read(make([]byte, 1)); err == nil || !strings.Contains(err.Error(), "reset") {
		t.Fatalf("server read: %v, want a reset", err)
	}
	r.waitConnections(t, 2, 15*time.Second)
	rec := r.stop(t)
	cl := one(t, rec, tracer.RoleClient)
	reason := "NOT_SPECIFIED"
	for _, it := range cl.Timeline {
		if it.Kind == tracer.ItemResetSent && it.HasReason {
			reason = reasonName(it)
		}
	}
	if kernelHas(t, tracer.CloseResetReasons) && reason != "TCP_STATE" {
		t.Errorf("client reset reason %q, want TCP_STATE", reason)
	}
	fs := checkedFindings(t, r, rec)
	f := findingOf(t, fs, findings.ClientResets)
	if f.Subject != fmt.Sprintf("%s/%d toward %s, reason %s", cl.Comm, cl.PID, cl.Remote, reason) || f.NetNS != ns.Inode ||
		fact(f, "reset_connections") != 1 || fact(f, "Tcp.OutRsts") != counterOf(rec, ns.Inode, "Tcp.OutRsts") || fact(f, "Tcp.OutRsts") == 0 ||
		reason == "TCP_STATE" && (fact(f, "TcpExt.TCPAbortOnData") != counterOf(rec, ns.Inode, "TcpExt.TCPAbortOnData") || !strings.Contains(f.Mechanism, "SO_LINGER")) {
		t.Errorf("finding: %s", dumpJSON(f))
	}
	for _, g := range fs {
		if g.Kind == findings.ServerResets {
			t.Errorf("the server sent no reset, yet: %s", dumpJSON(g))
		}
	}
}

// TestDataLossFinding: four connections whose first request is dropped
// (nftables, inside the namespace) until the kernel has retransmitted
// each: a data_loss finding counts them, their retransmits and the peer.
func TestDataLossFinding(t *testing.T) {
	t.Parallel()
	ns := nettest.New(t)
	ln := listenNS(t, ns, "tcp4", "127.0.0.1:0")
	const n = 4
	go func() {
		for i := 0; i < n; i++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	to := netns.AddrPort(ln)
	r := startRecord(t, ns, "run.jsonl")
	var conns []net.Conn
	for i := 0; i < n; i++ {
		c, err := dialNS(t, ns, "tcp4", to.String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	before, err := ns.Counters()
	if err != nil {
		t.Fatal(err)
	}
	// Dropped on input, so each retransmit leaves the socket and counts.
	remove, err := ns.AddDrop(netns.Drop{DstPort: to.Port(), FlagMask: netns.FlagPSH, Flags: netns.FlagPSH, Input: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range conns {
		c.Write([]byte("request"))
	}
	// Each request's first retransmit, dropped too, then the path heals.
	waitCounter(t, ns, before, "Tcp.RetransSegs", n, 10*time.Second)
	if err := remove(); err != nil {
		t.Fatal(err)
	}
	for _, c := range conns {
		c.Close()
	}
	r.waitConnections(t, 2*n, 15*time.Second)
	rec := r.stop(t)
	var flagged, rtx uint64
	for _, c := range rec.Connections {
		if c.Flags.Has(tracer.FlagDataRetransmitted) {
			flagged++
			rtx += uint64(c.Retransmits.Data)
		}
	}
	f := findingOf(t, checkedFindings(t, r, rec), findings.DataLoss)
	if flagged < n || f.Subject != "peer 127.0.0.1" || f.NetNS != ns.Inode || fact(f, "data_retransmitted_connections") != flagged ||
		fact(f, "connections") != uint64(len(rec.Connections)) || fact(f, "data_retransmits") != rtx || fact(f, "peers") != 1 ||
		fact(f, "Tcp.RetransSegs") != counterOf(rec, ns.Inode, "Tcp.RetransSegs") {
		t.Errorf("%d connections flagged data_retransmitted (%d retransmits); finding: %s", flagged, rtx, dumpJSON(f))
	}
}

// connectedPair is one IPv4 connection inside ns: the client's end and the
// server's accepted end.
func connectedPair(t *testing.T, ns *netns.NS) (client, server net.Conn) {
	t.Helper()
	ln := listenNS(t, ns, "tcp4", "127.0.0.1:0")
	c, err := dialNS(t, ns, "tcp4", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return c, s
}
