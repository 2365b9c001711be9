package main

import (
	"errors"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/output"
	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/netns"
)

// TestMergeAcrossVeth: a client host and a server host (two namespaces
// joined by veth), one recorder each. Clean connections, a first SYN lost
// on the way in, a final ACK held back, a server that closes with unread
// data, a connect refused, and a client whose every SYN is dropped. merge
// joins every pair,
// finds the clocks agree, and gives the diagnoses only both ends allow.
func TestMergeAcrossVeth(t *testing.T) {
	t.Parallel()
	nsA, nsB, _, addrB := vethPair(t)
	// One SYN retransmission, then ETIMEDOUT after 3 s instead of 127 s.
	if err := nsA.Sysctl("net.ipv4.tcp_syn_retries", "1"); err != nil {
		t.Fatal(err)
	}
	recA := startRecord(t, nsA, "client.jsonl")
	recB := startRecord(t, nsB, "server.jsonl")
	listen := func() (net.Listener, netip.AddrPort) {
		ln := listenNS(t, nsB, "tcp4", netip.AddrPortFrom(addrB, 0).String())
		return ln, netns.AddrPort(ln)
	}
	clean, cleanAt := listen()
	go serveUntilEOF(clean)
	for range 5 {
		dialClose(t, nsA, cleanAt.String(), 1)
	}
	dropped := droppedListener(t, nsB, listen)
	timedOut := make(chan error, 1)
	go func() { timedOut <- dialOnce(nsA, dropped) }()
	lostSyn(t, nsA, nsB, listen)
	lateACK(t, nsA, nsB, listen)
	abortUnread(t, nsA, listen)
	refusedConnect(t, nsA, listen)
	if err := <-timedOut; !errors.Is(err, syscall.ETIMEDOUT) {
		t.Fatalf("connect with every SYN dropped: %v, want ETIMEDOUT", err)
	}
	recA.waitConnections(t, 10, 20*time.Second)
	recB.waitConnections(t, 9, 20*time.Second)
	recA.stop(t)
	recB.stop(t)
	merged := filepath.Join(t.TempDir(), "both.jsonl")
	out, err := exec.Command(binary, "merge", recA.path, recB.path, "-o", merged).CombinedOutput()
	if err != nil {
		t.Fatalf("tcpscope merge: %v\n%s", err, out)
	}
	t.Logf("tcpscope merge:\n%s", out)
	checkMerged(t, merged, string(out))
}

// The faults, one each, every one on its own listener.

// droppedListener is a listener whose host drops every SYN toward it.
func droppedListener(t *testing.T, server *netns.NS, listen func() (net.Listener, netip.AddrPort)) netip.AddrPort {
	_, at := listen()
	drop(t, server, netns.Drop{DstPort: at.Port(), FlagMask: netns.FlagSYN | netns.FlagACK, Flags: netns.FlagSYN, Input: true})
	return at
}

// dialOnce connects and closes; the kernel's own timeout decides.
func dialOnce(client *netns.NS, at netip.AddrPort) error {
	c, err := client.Dial("tcp4", at.String(), 30*time.Second)
	if err == nil {
		c.Close()
	}
	return err
}

// lostSyn: the server's host drops the first SYN only; the retransmitted
// one gets through.
func lostSyn(t *testing.T, client, server *netns.NS, listen func() (net.Listener, netip.AddrPort)) {
	ln, at := listen()
	go serveUntilEOF(ln)
	drop(t, server, netns.Drop{DstPort: at.Port(), FlagMask: netns.FlagSYN | netns.FlagACK, Flags: netns.FlagSYN, Input: true, Every: 1 << 30})
	dialClose(t, client, at.String(), 1)
}

// lateACK: the client's host holds back its final ACK until the server
// has retransmitted its SYN-ACK.
func lateACK(t *testing.T, client, server *netns.NS, listen func() (net.Listener, netip.AddrPort)) {
	ln, at := listen()
	go serveUntilEOF(ln)
	before, err := server.Counters()
	if err != nil {
		t.Fatal(err)
	}
	remove := dropClientACKs(t, client, at.Port())
	c, err := client.Dial("tcp4", at.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for tick := time.NewTicker(20 * time.Millisecond); ; <-tick.C {
		now, err := server.Counters()
		if err != nil {
			t.Fatal(err)
		}
		if netns.Delta(before, now)["TcpExt.TCPSynRetrans"] > 0 {
			tick.Stop()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the server never retransmitted its SYN-ACK")
		}
	}
	if err := remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("x")); err != nil { // carries the ACK that completes the handshake
		t.Fatal(err)
	}
	c.Close()
}

// abortUnread: the server closes with the client's data unread, which
// resets the connection (TCP_ABORT_ON_CLOSE); the client reads ECONNRESET.
func abortUnread(t *testing.T, client *netns.NS, listen func() (net.Listener, netip.AddrPort)) {
	ln, at := listen()
	accepted := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			err = awaitUnread(c.(*net.TCPConn), 10*time.Second)
			c.Close()
		}
		accepted <- err
	}()
	c, err := client.Dial("tcp4", at.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("left unread")); err != nil {
		t.Fatal(err)
	}
	if err := <-accepted; err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client read after the server's abort: %v, want ECONNRESET", err)
	}
}

// refusedConnect: a port nothing listens on (a listener's, closed); the server's
// host answers the SYN with a reset.
func refusedConnect(t *testing.T, client *netns.NS, listen func() (net.Listener, netip.AddrPort)) {
	ln, at := listen()
	ln.Close()
	if err := dialOnce(client, at); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("connect to a closed port: %v, want ECONNREFUSED", err)
	}
}

func drop(t *testing.T, ns *netns.NS, d netns.Drop) {
	t.Helper()
	remove, err := ns.AddDrop(d)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { remove() })
}

// checkMerged checks the merged file and the tables: every pair joined,
// the clocks found equal, and each fault diagnosed.
func checkMerged(t *testing.T, path, tables string) {
	t.Helper()
	m := readMergedOnePair(t, path)
	hp := m.HostPairs[0]
	if hp.ClientHost != "client" || hp.ServerHost != "server" || hp.Joined != 9 || hp.ClientsUnmatched != 1 || hp.ServersUnmatched != 0 {
		t.Errorf("host pair %s; want client -> server, 9 joined, 1 client alone", dumpJSON(hp))
	}
	// One clock: the offset is 0 within its uncertainty, give or take
	// what separates the two recorders' mappings of kernel time to wall
	// time (each samples the two clocks once: tens of µs on a busy
	// machine). A handshake whose server event was stamped late (its CPU
	// busy elsewhere) may disagree: most must agree.
	if hp.OffsetUs == nil || *hp.UncertaintyUs > 1000 || abs(*hp.OffsetUs) > *hp.UncertaintyUs+100 || hp.Handshakes < 6 {
		t.Errorf("offset %s; want 0 ± at most 1 ms from at least 6 of the 8 handshakes", dumpJSON(hp))
	}
	for _, p := range m.Pairs {
		if p.Client.Local != p.Server.Remote || p.Client.Remote != p.Server.Local {
			t.Errorf("pair of %v -> %v with %v -> %v", p.Client.Local, p.Client.Remote, p.Server.Remote, p.Server.Local)
		}
	}
	wants := []string{
		"client sent 2 SYNs, the server saw only the second: the first was lost before the server's TCP (no listener drop counted)",
		"client got ECONNRESET: the server sent it, reason TCP_ABORT_ON_CLOSE",
		"in SYN_RECV: the client's final ACK left the client at +0 ms and arrived at +1.",
		"client timed out and the server (server) has no record: nothing reached a socket on the server",
		"client was refused: the server's host answered its SYN with a reset, reason NO_SOCKET",
	}
	report, err := exec.Command(binary, "report", path).CombinedOutput()
	if err != nil {
		t.Fatalf("tcpscope report: %v\n%s", err, report)
	}
	for _, want := range wants {
		for name, text := range map[string]string{"merge": tables, "report": string(report)} {
			if !strings.Contains(text, want) {
				t.Errorf("%s output lacks %q", name, want)
			}
		}
	}
	if diagnosed := countDiagnosed(m); diagnosed != 5 {
		t.Errorf("%d diagnosed pairs and halves; want 5", diagnosed)
	}
}

func countDiagnosed(m *output.Merged) int {
	n := 0
	for _, p := range m.Pairs {
		if len(p.Diagnosis) > 0 {
			n++
		}
	}
	for _, h := range m.Unmatched {
		if len(h.Diagnosis) > 0 {
			n++
		}
	}
	return n
}

func abs(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

// TestReportMergedFile: report renders a merged file's tables, and
// refuses the options that only an export's connections take. No root.
func TestReportMergedFile(t *testing.T) {
	start := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	cl := tracer.Connection{Role: tracer.RoleClient, Outcome: tracer.OutcomeReset, Start: start, End: start.Add(time.Second),
		Local: netip.MustParseAddrPort("10.0.0.2:40000"), Remote: netip.MustParseAddrPort("10.0.0.1:80"), HandshakeUs: -1, SynRecvUs: -1}
	sv := cl
	sv.Role, sv.Local, sv.Remote = tracer.RoleServer, cl.Remote, cl.Local
	off, unc := int64(12), int64(3)
	m := &output.Merged{Meta: output.MergeMeta{FormatVersion: output.FormatVersion, Created: start, Inputs: []output.MergeInput{{Host: "a"}, {Host: "b"}}},
		HostPairs: []output.HostPairRecord{{ClientHost: "a", ServerHost: "b", Joined: 1, OffsetUs: &off, UncertaintyUs: &unc, Handshakes: 1}},
		Pairs:     []output.MergedPair{{ClientHost: "a", ServerHost: "b", OffsetUs: &off, UncertaintyUs: &unc, Diagnosis: []string{"a diagnosis"}, Client: cl, Server: sv}}}
	path := filepath.Join(t.TempDir(), "both.jsonl")
	if err := writeMergedFile(path, m); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(binary, "report", path).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "+12us ± 3us (1 handshakes)") || !strings.Contains(string(out), "a diagnosis") {
		t.Errorf("tcpscope report of a merged file: %v\n%s", err, out)
	}
	for _, args := range [][]string{{"--id", "1"}, {"--flag", "reset_sent"}, {"--format", "json"}} {
		err := exec.Command(binary, append([]string{"report", path}, args...)...).Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
			t.Errorf("tcpscope report merged %s: %v, want exit status 2", strings.Join(args, " "), err)
		}
	}
}

// readMergedOnePair reads a merged file that must match the schema and
// hold one host pair.
func readMergedOnePair(t *testing.T, path string) *output.Merged {
	t.Helper()
	if err := output.ValidateExport(path); err != nil {
		t.Errorf("merged file does not match the schema: %v", err)
	}
	m, err := output.ReadMerged(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.HostPairs) != 1 {
		t.Fatalf("host pairs %s; want one", dumpJSON(m.HostPairs))
	}
	return m
}
