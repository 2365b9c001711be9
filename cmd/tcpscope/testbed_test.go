package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/output"
	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/netns"
)

// abRequests is the load ab puts on the server host: one connection per
// request (no keep-alive), four at a time.
const abRequests = 200

// TestMergeTestBed: a client host and a server host (namespaces joined by
// veth), one recorder each, real load from ab, and the seed faults
// injected inside the hosts: SO_LINGER 0 resets, the client's final ACKs
// dropped, an accept queue of two that overflows, and a client port range
// of ten ports that runs out. merge must join every connection whose SYN
// reached the server exactly once, find the clocks equal, and diagnose
// each fault.
func TestMergeTestBed(t *testing.T) {
	t.Parallel()
	ab := requireTool(t, "ab", "apache2-utils")
	nsA, nsB, _, addrB := vethPair(t)
	recA := startRecord(t, nsA, "client.jsonl")
	recB := startRecord(t, nsB, "server.jsonl")
	listen := func() (net.Listener, netip.AddrPort) {
		ln := listenNS(t, nsB, "tcp4", netip.AddrPortFrom(addrB, 0).String())
		return ln, netns.AddrPort(ln)
	}
	abLoad(t, nsA, ab, listen)
	lingerResets(t, nsA, listen, 2)
	abortUnread(t, nsA, listen)
	lateACK(t, nsA, nsB, listen)
	overflow(t, nsA, nsB, netip.AddrPortFrom(addrB, 0))
	held := exhaustPorts(t, nsA, listen)
	// Clients: ab's, 2 linger resets, 1 abort, 1 late ACK, 5 overflow, the
	// held ports and the connect that found none. Servers: all but that.
	clients := abRequests + 2 + 1 + 1 + 5 + held + 1
	recA.waitConnections(t, clients, 30*time.Second)
	recB.waitConnections(t, clients-1, 30*time.Second)
	a, b := recA.stop(t), recB.stop(t)
	merged := filepath.Join(t.TempDir(), "both.jsonl")
	out, err := exec.Command(binary, "merge", recA.path, recB.path, "-o", merged).CombinedOutput()
	if err != nil {
		t.Fatalf("tcpscope merge: %v\n%s", err, out)
	}
	if os.Getenv("TCPSCOPE_TEST_SHOW") != "" {
		t.Logf("tcpscope merge:\n%s", out)
	}
	checkTestBed(t, merged, string(out), a, b)
}

// abLoad serves HTTP on a listener of the server host and runs ab inside
// the client host against it.
func abLoad(t *testing.T, client *netns.NS, ab string, listen func() (net.Listener, netip.AddrPort)) {
	t.Helper()
	ln, at := listen()
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "hello") }))
	args, env := inNS(t, client, ab, "-q", "-n", fmt.Sprint(abRequests), "-c", "4", "-s", "10", fmt.Sprintf("http://%s/", at))
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ab: %v\n%s", err, out)
	}
	complete := regexp.MustCompile(`Complete requests:\s+(\d+)`).FindStringSubmatch(string(out))
	failed := regexp.MustCompile(`Failed requests:\s+(\d+)`).FindStringSubmatch(string(out))
	if complete == nil || complete[1] != fmt.Sprint(abRequests) || failed == nil || failed[1] != "0" {
		t.Fatalf("ab did not complete %d requests without failure:\n%s", abRequests, out)
	}
}

// lingerResets: the server reads the request, sets SO_LINGER 0 and
// closes, which resets the connection; the client reads ECONNRESET.
func lingerResets(t *testing.T, client *netns.NS, listen func() (net.Listener, netip.AddrPort), n int) {
	t.Helper()
	ln, at := listen()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Read(make([]byte, 64))
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	}()
	for range n {
		c, err := client.Dial("tcp4", at.String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte("request")); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = c.Read(make([]byte, 1))
		c.Close()
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("client read after the server's SO_LINGER 0 close: %v, want ECONNRESET", err)
		}
	}
}

// overflow: a listener with backlog 2 (an accept queue of three) that
// accepts nothing until the kernel has dropped SYNs for it. Three clients
// fill the queue; two more have their first SYN and its retransmit
// dropped by the listener and get in with the third once the accepter
// catches up. The queue stays full for a second, which the recorder's
// queue samples see: that is what attributes the drops to the listener.
// (Backlog 2, not 1: the two retransmitted SYNs arrive together, and a
// SYN queue of one would answer the second with a cookie.)
func overflow(t *testing.T, client, server *netns.NS, at netip.AddrPort) {
	t.Helper()
	ln, err := server.ListenBacklogAt(at, 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	at = netns.AddrPort(ln)
	dialClose(t, client, at.String(), 3)
	before, err := server.Counters()
	if err != nil {
		t.Fatal(err)
	}
	dialed := make(chan error, 2)
	for range 2 {
		go func() { dialed <- dialOnce(client, at) }()
	}
	waitCounter(t, server, before, "TcpExt.ListenDrops", 4, 10*time.Second)
	go serveUntilEOF(ln)
	for range 2 {
		if err := <-dialed; err != nil {
			t.Fatalf("connect after the listener's drop: %v", err)
		}
	}
}

// exhaustPorts narrows the client host's port range to ten ports, holds
// connections to one server port until connect fails with EADDRNOTAVAIL,
// and returns how many it held.
func exhaustPorts(t *testing.T, client *netns.NS, listen func() (net.Listener, netip.AddrPort)) int {
	t.Helper()
	if err := client.Sysctl("net.ipv4.ip_local_port_range", "40000 40009"); err != nil {
		t.Fatal(err)
	}
	ln, at := listen()
	go serveUntilEOF(ln)
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for len(held) <= 10 {
		c, err := client.Dial("tcp4", at.String(), 5*time.Second)
		if errors.Is(err, syscall.EADDRNOTAVAIL) {
			return len(held)
		}
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	t.Fatalf("%d connections from a range of 10 ports", len(held))
	return 0
}

// checkTestBed checks the merged file against the two exports: every
// server record joined to exactly one client record, the only client
// alone the connect that found no port, the clocks equal, and each
// injected fault diagnosed.
func checkTestBed(t *testing.T, path, tables string, client, server *output.Recording) {
	t.Helper()
	m := readMergedOnePair(t, path)
	clients, servers := byRole(t, client, tracer.RoleClient), byRole(t, server, tracer.RoleServer)
	hp := m.HostPairs[0]
	// The connects that found no port (Go's dialer tries such a connect
	// three times) are the only clients without a partner.
	noPort := 0
	for _, c := range clients {
		if c.Errno == tracer.Errno(syscall.EADDRNOTAVAIL) {
			noPort++
		}
	}
	t.Logf("%d client and %d server records; host pair %s", len(clients), len(servers), dumpJSON(hp))
	if hp.Joined != len(servers) || len(m.Pairs) != len(servers) || hp.ServersUnmatched != 0 || hp.ClientsUnmatched != len(clients)-len(servers) || hp.ClientsUnmatched != noPort {
		t.Errorf("host pair %s, %d pairs; want %d joined, %d clients alone", dumpJSON(hp), len(m.Pairs), len(servers), noPort)
	}
	checkJoinedOnce(t, m)
	if hp.OffsetUs == nil || *hp.UncertaintyUs > 1000 || abs(*hp.OffsetUs) > *hp.UncertaintyUs+100 {
		t.Errorf("offset %s; want 0 ± at most 1 ms", dumpJSON(hp))
	}
	for _, h := range m.Unmatched {
		if h.Conn.Errno != tracer.Errno(syscall.EADDRNOTAVAIL) {
			t.Errorf("a half alone that is not the exhausted connect: %s", dumpJSON(h.Conn))
		}
	}
	wants := []string{
		"client sent 3 SYNs, the server saw only the third: the first 2 were dropped by the listener (",
		"client got ECONNRESET: the server sent it, reason TCP_STATE", // SO_LINGER 0
		"client got ECONNRESET: the server sent it, reason TCP_ABORT_ON_CLOSE",
		"in SYN_RECV: the client's final ACK left the client at +0 ms and arrived at +1.",
	}
	for _, want := range wants {
		if !strings.Contains(tables, want) {
			t.Errorf("merge output lacks %q", want)
		}
	}
}

// checkJoinedOnce: no record of either export is in two pairs, and each
// pair's halves are one connection seen from both ends.
func checkJoinedOnce(t *testing.T, m *output.Merged) {
	t.Helper()
	seen := map[[2]uint64]bool{}
	for _, p := range m.Pairs {
		if p.Client.Local != p.Server.Remote || p.Client.Remote != p.Server.Local {
			t.Errorf("pair of %v -> %v with %v -> %v", p.Client.Local, p.Client.Remote, p.Server.Remote, p.Server.Local)
		}
		for i, id := range []uint64{p.Client.ID, p.Server.ID} {
			if seen[[2]uint64{uint64(i), id}] {
				t.Errorf("record %d of the %s export joined twice", id, []string{"client", "server"}[i])
			}
			seen[[2]uint64{uint64(i), id}] = true
		}
	}
}
