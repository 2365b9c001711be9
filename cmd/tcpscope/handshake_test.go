package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/output"
	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/findings"
	"github.com/tcpscope/tcpscope/tracer/netns"
	"github.com/tcpscope/tcpscope/tracer/nettest"
	"golang.org/x/sys/unix"
)

func listenNS(t *testing.T, ns *netns.NS, network, addr string) net.Listener {
	t.Helper()
	ln, err := ns.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// dropClientACKs drops every non-SYN segment toward port: the client's
// final ACK of the handshake, and anything after it.
func dropClientACKs(t *testing.T, ns *netns.NS, port uint16) func() error {
	t.Helper()
	remove, err := ns.AddDrop(netns.Drop{DstPort: port, FlagMask: netns.FlagSYN | netns.FlagACK, Flags: netns.FlagACK})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { remove() })
	return remove
}

func serverRecords(rec *output.Recording) []tracer.Connection {
	var out []tracer.Connection
	for _, c := range rec.Connections {
		if c.Role == tracer.RoleServer {
			out = append(out, c)
		}
	}
	return out
}

// TestSynRecvStay: the client's final ACKs are lost for 2.5 s. The server's
// record shows the real SYN_RECV stay (the request socket's life), not the
// child socket's microseconds, and as many SYN-ACK retransmits as the
// kernel counted.
func TestSynRecvStay(t *testing.T) {
	for _, fam := range []struct{ network, addr string }{{"tcp4", "127.0.0.1:0"}, {"tcp6", "[::1]:0"}} {
		t.Run(fam.network, func(t *testing.T) {
			t.Parallel()
			ns := nettest.New(t)
			r := startRecord(t, ns, "run.jsonl")
			ln := listenNS(t, ns, fam.network, fam.addr)
			go func() {
				if c, err := ln.Accept(); err == nil {
					c.Read(make([]byte, 8))
					c.Close()
				}
			}()
			port := netip.MustParseAddrPort(ln.Addr().String()).Port()
			before, _ := ns.Counters()
			remove := dropClientACKs(t, ns, port)
			c, err := dialNS(t, ns, fam.network, ln.Addr().String(), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			connected := time.Now()
			time.Sleep(2500 * time.Millisecond) // the fault itself: ACKs lost for 2.5 s
			remove()
			released := time.Now()
			c.Write([]byte("x")) // carries the ACK that completes the handshake
			c.Close()
			r.waitConnections(t, 2, 15*time.Second)
			after, _ := ns.Counters()
			rec := r.stop(t)
			sv := serverRecords(rec)
			if len(sv) != 1 {
				t.Fatalf("%d server records: %s", len(sv), dumpJSON(rec.Connections))
			}
			s := sv[0]
			waited := released.Sub(connected).Microseconds()
			if s.SynRecvHow != tracer.SynRecvFromSynAck || math.Abs(float64(s.SynRecvUs-waited)) > 0.05*float64(waited) {
				t.Errorf("syn_recv_us %d via %s; the client waited %d us", s.SynRecvUs, s.SynRecvHow, waited)
			}
			want := netns.Delta(before, after)["TcpExt.TCPSynRetrans"]
			if want == 0 || uint64(s.Retransmits.SynAck) != want || !s.Flags.Has(tracer.FlagSynAckRetransmitted) ||
				!s.Flags.Has(tracer.FlagLongSynRecv) {
				t.Errorf("server: synack retransmits %d (kernel counted %d), flags %v", s.Retransmits.SynAck, want, s.Flags)
			}
			if len(rec.Listeners) != 1 || rec.Listeners[0].SynAcks != want || rec.Listeners[0].Connections != 1 {
				t.Errorf("listener records: %s", dumpJSON(rec.Listeners))
			}
			l := rec.Listeners[0]
			f := findingOf(t, checkedFindings(t, r, rec), findings.LateFinalACK)
			if f.Subject != fmt.Sprintf("%s (%s/%d)", l.Local, l.Comm, l.PID) || f.NetNS != ns.Inode || fact(f, "late_final_ack_connections") != 1 ||
				fact(f, "synack_retransmits") != want || fact(f, "longest_syn_recv_us") != uint64(s.SynRecvUs) || fact(f, "accept_queue_drops") != 0 ||
				!f.First.Equal(s.Start) || !strings.Contains(f.Mechanism, "dropped none") {
				t.Errorf("finding: %s", dumpJSON(f))
			}
			quoted(t, f, ns, findings.SynAckRetries)
		})
	}
}

// TestAbandonedHandshake: the client's ACKs never arrive and the server
// gives up after tcp_synack_retries=1; the request becomes its own record.
func TestAbandonedHandshake(t *testing.T) {
	t.Parallel()
	ns := nettest.New(t)
	if err := ns.Sysctl("net.ipv4.tcp_synack_retries", "1"); err != nil {
		t.Fatal(err)
	}
	r := startRecord(t, ns, "run.jsonl")
	ln := listenNS(t, ns, "tcp4", "127.0.0.1:0")
	port := netip.MustParseAddrPort(ln.Addr().String()).Port()
	remove := dropClientACKs(t, ns, port)
	c, err := dialNS(t, ns, "tcp4", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// SYN-ACK at 0 s, retransmit at 1 s, request dropped at 3 s.
	r.waitConnections(t, 1, 15*time.Second)
	// The client still believes it is connected: its first data meets the
	// listener, which resets it.
	remove()
	c.Write([]byte("late"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || !strings.Contains(err.Error(), "reset") {
		t.Errorf("client read after the request died: %v, want a reset", err)
	}
	c.Close()
	r.waitConnections(t, 2, 15*time.Second)
	rec := r.stop(t)
	sv, cl := one(t, rec, tracer.RoleServer), one(t, rec, tracer.RoleClient)
	if sv.Outcome != tracer.OutcomeTimeout || sv.Retransmits.SynAck != 1 ||
		!slices.Equal(sv.Flags.List(), []tracer.Flag{tracer.FlagSynAckRetransmitted, tracer.FlagHandshakeTimeout}) {
		t.Errorf("abandoned request: %s", dumpJSON(sv))
	}
	if d := sv.End.Sub(sv.Start); d < 2900*time.Millisecond || d > 3500*time.Millisecond {
		t.Errorf("request lived %v, want about 3 s (1 s + 2 s of SYN-ACK timers)", d)
	}
	if cl.Outcome != tracer.OutcomeReset || cl.PeerID != sv.ID {
		t.Errorf("client: outcome %s peer %d; want reset and linked to the abandoned request %d", cl.Outcome, cl.PeerID, sv.ID)
	}
	// The listener's reset of the late data is counted, and makes no second
	// record for the abandoned handshake.
	if len(rec.Listeners) != 1 || rec.Listeners[0].Abandoned != 1 || rec.Listeners[0].Resets != 1 {
		t.Errorf("listener: %s", dumpJSON(rec.Listeners))
	}
}

// TestTimeWaitExhaustion: a client-closes-first storm against a narrowed
// ip_local_port_range (tcp_tw_reuse off) until connect() fails, then 300
// failing connects in a row: the live view prints the first in full and
// counts the repeats, every one of them is in the export.
func TestTimeWaitExhaustion(t *testing.T) {
	t.Parallel()
	ns := nettest.New(t)
	ln := listenNS(t, ns, "tcp4", "127.0.0.1:0")
	for k, v := range map[string]string{"net.ipv4.ip_local_port_range": "40000 40199", "net.ipv4.tcp_tw_reuse": "0"} {
		if err := ns.Sysctl(k, v); err != nil {
			t.Fatal(err)
		}
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { c.Read(make([]byte, 1)); c.Close() }()
		}
	}()
	r := startRecord(t, ns, "run.jsonl")
	server := netip.MustParseAddrPort(ln.Addr().String())
	var warnedAt, failedAt, succeeded int
	failures := 0
	const wantFailures = 300
	warned := func() bool { return strings.Contains(r.stdout.String(), "WARNING TIME_WAIT pressure") }
	for i := 1; i <= 400+wantFailures && failures < wantFailures; i++ {
		if warnedAt == 0 && warned() {
			warnedAt = i
		}
		// Past 80 % of the 200 ports (the warning's threshold) with a
		// margin, wait for the warning, however late a loaded machine
		// prints it: it must come before the ports run out, whatever
		// the recorder's latency.
		if succeeded == 170 && warnedAt == 0 {
			deadline := time.Now().Add(30 * time.Second)
			for !warned() && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond) // polling with a deadline
			}
			if warned() {
				warnedAt = i
			}
		}
		// One connect() per attempt: Go's net.Dial retries EADDRNOTAVAIL.
		err := ns.Do(func() error { return connectClose(server) })
		if err != nil {
			if !errors.Is(err, syscall.EADDRNOTAVAIL) {
				t.Fatalf("connect %d: %v, want EADDRNOTAVAIL", i, err)
			}
			if failedAt == 0 {
				failedAt = i
			}
			failures++
			continue
		}
		succeeded++
	}
	if failedAt == 0 {
		t.Fatalf("no EADDRNOTAVAIL after 400 connects with 200 ports")
	}
	if warnedAt == 0 || warnedAt >= failedAt {
		t.Errorf("warning seen before connect %d, first EADDRNOTAVAIL at connect %d; stdout:\n%s", warnedAt, failedAt, r.stdout.String())
	}
	rec := r.stop(t)
	exhausted := 0
	for _, c := range rec.Connections {
		if c.Flags.Has(tracer.FlagPortExhausted) {
			exhausted++
			if c.Outcome != tracer.OutcomeFailed || c.Errno.String() != "EADDRNOTAVAIL" || c.Local.Port() != 0 {
				t.Errorf("exhausted connect recorded as %s", dumpJSON(c))
			}
		}
	}
	if exhausted != failures {
		t.Errorf("%d port_exhausted records, %d connects failed", exhausted, failures)
	}
	// Live view: a few lines account for every record.
	var shown, counted int
	countRe := regexp.MustCompile(`\[port_exhausted\] x(\d+) more since \d\d:\d\d:\d\d\.\d{3}$`)
	timed := regexp.MustCompile(`^\d\d:\d\d:\d\d\.\d{3} `)
	for _, l := range strings.Split(r.stdout.String(), "\n") {
		if strings.Contains(l, "WARNING TIME_WAIT pressure") && !timed.MatchString(l) {
			t.Errorf("warning line without a timestamp: %q", l)
		}
		if !strings.Contains(l, "[port_exhausted]") {
			continue
		}
		shown++
		if !timed.MatchString(l) {
			t.Errorf("port_exhausted line without a timestamp: %q", l)
		}
		if m := countRe.FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[1])
			counted += n
		} else {
			counted++
		}
	}
	if shown > 10 || counted != exhausted {
		t.Errorf("%d port_exhausted lines account for %d records, want at most 10 lines for %d records:\n%s",
			shown, counted, exhausted, r.stdout.String())
	}
	tw := rec.Summary.TimeWait
	if len(tw) == 0 {
		t.Fatalf("no TIME_WAIT row in the summary")
	}
	row := tw[0]
	if row.KernelCount == nil || math.Abs(float64(row.LiveAtEnd-*row.KernelCount)) > 1 || row.Ports != 200 || !row.Warned {
		t.Errorf("TIME_WAIT row %s: live %d, kernel %v, ports %d", fmt.Sprint(row), row.LiveAtEnd, row.KernelCount, row.Ports)
	}
	f := findingOf(t, checkedFindings(t, r, rec), findings.TimeWaitExhaustion)
	if f.Severity != findings.Critical || f.Subject != server.String() || f.NetNS != ns.Inode || fact(f, "port_exhausted_connections") != uint64(exhausted) ||
		fact(f, "usable_ports") != 200 || fact(f, "time_wait_peak") != uint64(row.Peak) || fact(f, "time_wait_connections") < uint64(succeeded)-1 ||
		!strings.Contains(f.Mechanism, fmt.Sprintf("%d connects failed with EADDRNOTAVAIL", exhausted)) {
		t.Errorf("finding (%d connects succeeded): %s", succeeded, dumpJSON(f))
	}
	if q := fmt.Sprint(f.Sysctls); q != fmt.Sprintf("[{%d net.ipv4.ip_local_port_range 40000 40199} {%[1]d net.ipv4.tcp_tw_reuse 0}]", ns.Inode) {
		t.Errorf("settings quoted: %s", q)
	}
}

// connectClose connects with one connect(2) call and closes at once, so
// the client end is the active closer and enters TIME_WAIT.
func connectClose(to netip.AddrPort) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Connect(fd, &unix.SockaddrInet4{Port: int(to.Port()), Addr: to.Addr().As4()})
}

// listenBacklog listens with an explicit backlog and never accepts.
func listenBacklog(t *testing.T, ns *netns.NS, backlog int) netip.AddrPort {
	t.Helper()
	ln, err := ns.ListenBacklog(0, backlog)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return netns.AddrPort(ln)
}

// burst starts n non-blocking connects at once and closes them after d.
func burst(t *testing.T, ns *netns.NS, to netip.AddrPort, n int, d time.Duration) {
	t.Helper()
	closeAll := connectAll(t, ns, to, n)
	time.Sleep(d) // let SYN and SYN-ACK timers run: the fault under study
	closeAll()
}

// TestListenerOverflowAndSyncookies: a listener with backlog 1 that never
// accepts, hit by a burst, with tcp_syncookies 0, 1 and 2.
func TestListenerOverflowAndSyncookies(t *testing.T) {
	for _, mode := range []string{"0", "1", "2"} {
		t.Run("syncookies="+mode, func(t *testing.T) {
			t.Parallel()
			ns := nettest.New(t)
			if err := ns.Sysctl("net.ipv4.tcp_syncookies", mode); err != nil {
				t.Fatal(err)
			}
			r := startRecord(t, ns, "run.jsonl")
			to := listenBacklog(t, ns, 1)
			before, _ := ns.Counters()
			burst(t, ns, to, 12, 2500*time.Millisecond)
			after, _ := ns.Counters()
			rec := r.stop(t)
			d := netns.Delta(before, after)
			if len(rec.Listeners) != 1 {
				t.Fatalf("listeners: %s", dumpJSON(rec.Listeners))
			}
			l := rec.Listeners[0]
			var overflowItems, cookies uint64
			for _, c := range rec.Connections {
				for _, it := range c.Timeline {
					if it.Kind == tracer.ItemListenOverflow {
						overflowItems++
					}
				}
				if c.Flags.Has(tracer.FlagSyncookie) {
					cookies++
				}
			}
			t.Logf("kernel: %v; listener: conns %d overflow %d cookies %d peak %d/%d", d, l.Connections, l.Overflows, l.Syncookies, l.PeakQueue, l.Backlog)
			if l.Connections != d["Tcp.PassiveOpens"] || l.Backlog != 1 {
				t.Errorf("listener: %d connections, backlog %d; kernel PassiveOpens %d", l.Connections, l.Backlog, d["Tcp.PassiveOpens"])
			}
			if d["TcpExt.ListenOverflows"] == 0 || l.Overflows > d["TcpExt.ListenOverflows"] || overflowItems != l.Overflows {
				t.Errorf("overflow drops: listener %d, on connections %d, kernel ListenOverflows %d", l.Overflows, overflowItems, d["TcpExt.ListenOverflows"])
			}
			if l.Syncookies != d["TcpExt.SyncookiesRecv"] || cookies != l.Syncookies {
				t.Errorf("syncookie connections: listener %d, flagged %d, kernel SyncookiesRecv %d", l.Syncookies, cookies, d["TcpExt.SyncookiesRecv"])
			}
			if mode == "2" && d["TcpExt.SyncookiesSent"] == 0 {
				t.Errorf("tcp_syncookies=2 sent no cookies")
			}
			var reported uint64
			for _, cd := range rec.Summary.Counters {
				if cd.Counter == "TcpExt.ListenOverflows" && cd.NetNS == ns.Inode {
					reported = cd.Delta
				}
			}
			if reported == 0 {
				t.Errorf("summary lacks the ListenOverflows delta: %s", dumpJSON(rec.Summary.Counters))
			}
			checkQueueFindings(t, r, rec, ns, mode)
		})
	}
}

// TestFinalACKOverflow: requests made while the accept queue had room, whose
// final ACKs arrive once it is full (the listener never accepts). Since
// 6.15 the kernel drops each such ACK with reason TCP_LISTEN_OVERFLOW and
// names the listener, which identifies the connection.
func TestFinalACKOverflow(t *testing.T) {
	t.Parallel()
	nettest.RequireKernelFeature(t, tracer.ListenOverflowDrops)
	ns := nettest.New(t)
	r := startRecord(t, ns, "run.jsonl")
	to := listenBacklog(t, ns, 4) // SYN queue 4, accept queue 5
	before, _ := ns.Counters()
	remove := dropClientACKs(t, ns, to.Port())
	var pending []net.Conn
	for i := 0; i < 3; i++ { // three requests wait for their final ACK
		c, err := dialNS(t, ns, "tcp4", to.String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		pending = append(pending, c)
	}
	remove()
	for i := 0; i < 5; i++ { // five connections fill the accept queue
		c, err := dialNS(t, ns, "tcp4", to.String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	// The pending requests' SYN-ACK timers fire at 1 s; the clients answer
	// with ACKs that now meet a full queue.
	waitCounter(t, ns, before, "TcpExt.ListenOverflows", 3, 10*time.Second)
	// Stop tracing, then read the kernel's count; closing the pending
	// clients afterwards (their FINs meet the full queue too) counts nowhere.
	rec := r.stop(t)
	after, _ := ns.Counters()
	for _, c := range pending {
		c.Close()
	}
	d := netns.Delta(before, after)
	flagged := 0
	for _, c := range rec.Connections {
		if c.Flags.Has(tracer.FlagListenOverflow) {
			flagged++
			if c.Role != tracer.RoleServer || c.Local != to {
				t.Errorf("overflow flagged on %s", dumpJSON(c))
			}
		}
	}
	if len(rec.Listeners) != 1 {
		t.Fatalf("listeners: %s", dumpJSON(rec.Listeners))
	}
	l := rec.Listeners[0]
	if d["TcpExt.ListenOverflows"] != l.Overflows || l.Overflows < 3 || flagged != 3 || l.PeakQueue != 5 {
		t.Errorf("kernel ListenOverflows %d; listener overflow drops %d, peak queue %d/%d; %d connections flagged listen_overflow",
			d["TcpExt.ListenOverflows"], l.Overflows, l.PeakQueue, l.Backlog, flagged)
	}
}

// resetsSent returns the connection records with a sent reset that match
// accepts, with that reset's timeline item.
func resetsSent(rec *output.Recording, match func(tracer.Item) bool) (out []tracer.Connection, items []tracer.Item) {
	for _, c := range rec.Connections {
		for _, it := range c.Timeline {
			if it.Kind == tracer.ItemResetSent && match(it) {
				out = append(out, c)
				items = append(items, it)
			}
		}
	}
	return out, items
}

// byListener: resets the listening socket itself sent.
func byListener(it tracer.Item) bool { return it.State == tracer.StateListen }

// TestAbortOnOverflow: as TestFinalACKOverflow, with
// net.ipv4.tcp_abort_on_overflow=1: the listener answers each final ACK that
// meets the full accept queue with a reset, and the client's next read
// fails with ECONNRESET. Each request ends as a reset record.
func TestAbortOnOverflow(t *testing.T) {
	t.Parallel()
	nettest.RequireKernelFeature(t, tracer.ListenOverflowDrops)
	ns := nettest.New(t)
	if err := ns.Sysctl("net.ipv4.tcp_abort_on_overflow", "1"); err != nil {
		t.Fatal(err)
	}
	r := startRecord(t, ns, "run.jsonl")
	to := listenBacklog(t, ns, 4) // SYN queue 4, accept queue 5
	before, _ := ns.Counters()
	remove := dropClientACKs(t, ns, to.Port())
	var pending []net.Conn
	for i := 0; i < 3; i++ {
		c, err := dialNS(t, ns, "tcp4", to.String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		pending = append(pending, c)
	}
	remove()
	for i := 0; i < 5; i++ {
		c, err := dialNS(t, ns, "tcp4", to.String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	// The SYN-ACK timers fire at 1 s, the clients' ACKs meet the full queue
	// and the listener resets them: each pending client's read ends.
	for i, c := range pending {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("pending client %d read: %v, want ECONNRESET", i, err)
		}
	}
	r.waitConnections(t, 3+len(pending), 15*time.Second)
	rec := r.stop(t)
	after, _ := ns.Counters()
	d := netns.Delta(before, after)
	resets, items := resetsSent(rec, byListener)
	if len(rec.Listeners) != 1 {
		t.Fatalf("listeners: %s", dumpJSON(rec.Listeners))
	}
	l := rec.Listeners[0]
	t.Logf("kernel: ListenOverflows %d EmbryonicRsts %d OutRsts %d; listener resets %d overflow drops %d",
		d["TcpExt.ListenOverflows"], d["TcpExt.EmbryonicRsts"], d["Tcp.OutRsts"], l.Resets, l.Overflows)
	if len(resets) != len(pending) || l.Resets != uint64(len(pending)) || l.Overflows != d["TcpExt.ListenOverflows"] ||
		d["TcpExt.EmbryonicRsts"] != uint64(len(pending)) {
		t.Fatalf("%d records reset by the listener, listener resets %d, overflow drops %d; kernel ListenOverflows %d EmbryonicRsts %d: %s",
			len(resets), l.Resets, l.Overflows, d["TcpExt.ListenOverflows"], d["TcpExt.EmbryonicRsts"], dumpJSON(resets))
	}
	for i, c := range resets {
		if c.Role != tracer.RoleServer || c.Local != to || c.Outcome != tracer.OutcomeReset || reasonName(items[i]) != "INVALID_SYN" ||
			!c.Flags.Has(tracer.FlagListenOverflow) || !c.Flags.Has(tracer.FlagResetSent) || c.PeerID == 0 {
			t.Errorf("request reset by the listener (reason %s): %s", reasonName(items[i]), dumpJSON(c))
		}
	}
	for _, c := range byRole(t, rec, tracer.RoleClient) {
		if c.Outcome == tracer.OutcomeReset && (c.Errno.String() != "ECONNRESET" || !c.Flags.Has(tracer.FlagResetReceived)) {
			t.Errorf("reset client: %s", dumpJSON(c))
		}
	}
	f := checkAcceptQueueFinding(t, r, rec, ns, 0)
	if fact(f, "overflow_drops") != d["TcpExt.ListenOverflows"] || !strings.Contains(f.Advice, "net.ipv4.tcp_abort_on_overflow = 1 turns these drops into resets") {
		t.Errorf("finding: %s", dumpJSON(f))
	}
}

// TestStraySegmentReset: the server's child aborts (SO_LINGER 0) while its
// reset is dropped, so the client still believes it is connected. Its next
// segment matches no connection: the listener answers with a reset of
// reason TCP_FLAGS, or, once the listener is closed too, the kernel answers
// with a socketless NO_SOCKET reset, which answers a PSH|ACK and is no
// refused connect. Once the child's record is written, either is a
// server-side record of its own, outcome reset; while the child's record
// still waits (its grace period), the reset joins it as a late item.
func TestStraySegmentReset(t *testing.T) {
	for _, tc := range []struct {
		name, reason  string
		closeListener bool
		late          bool // the client's segment comes while the child's record waits
	}{
		{"listener", "TCP_FLAGS", false, false},
		{"no-socket", "NO_SOCKET", true, false},
		{"listener-after-close", "TCP_FLAGS", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			nettest.RequireKernelFeature(t, tracer.ResetReasons) // resets from a listener or no socket
			ns := nettest.New(t)
			r := startRecord(t, ns, "run.jsonl")
			ln := listenNS(t, ns, "tcp4", "127.0.0.1:0")
			to := netip.MustParseAddrPort(ln.Addr().String())
			accepted := make(chan net.Conn, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					close(accepted)
					return
				}
				accepted <- c
			}()
			cl, err := dialNS(t, ns, "tcp4", to.String(), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			child, ok := <-accepted
			if !ok {
				t.Fatal("accept failed")
			}
			remove, err := ns.AddDrop(netns.Drop{SrcPort: to.Port(), FlagMask: netns.FlagRST, Flags: netns.FlagRST})
			if err != nil {
				t.Fatal(err)
			}
			child.(*net.TCPConn).SetLinger(0)
			child.Close()
			if tc.closeListener {
				ln.Close()
			}
			if !tc.late {
				// The child's record is written once it closed and the grace
				// period passed: the kernel has no socket for this tuple.
				r.waitConnections(t, 1, 15*time.Second)
			}
			if err := remove(); err != nil {
				t.Fatal(err)
			}
			cl.Write([]byte("late"))
			cl.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := cl.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("client read: %v, want ECONNRESET", err)
			}
			cl.Close()
			want := 3
			if tc.late {
				want = 2
			}
			r.waitConnections(t, want, 15*time.Second)
			rec := r.stop(t)
			if len(rec.Connections) != want {
				t.Fatalf("%d records, want %d: %s", len(rec.Connections), want, dumpJSON(rec.Connections))
			}
			client := one(t, rec, tracer.RoleClient)
			stray, items := resetsSent(rec, func(it tracer.Item) bool { return reasonName(it) == tc.reason })
			if len(stray) != 1 {
				t.Fatalf("%d records with a %s reset: %s", len(stray), tc.reason, dumpJSON(rec.Connections))
			}
			s := stray[0]
			if s.Role != tracer.RoleServer || s.Outcome != tracer.OutcomeReset || s.Flags.Has(tracer.FlagRefused) ||
				s.Local != to || s.Remote != client.Local {
				t.Errorf("stray segment's reset: %s", dumpJSON(s))
			}
			if tc.late {
				// The aborted child itself, its own reset first.
				if s.ID != client.PeerID || !strings.Contains(output.DetailText(&items[0]), "after the close") || s.Timeline[len(s.Timeline)-1] != items[0] {
					t.Errorf("the late reset is not the child's last item: %s", dumpJSON(s))
				}
			} else if s.PeerID != client.ID || client.PeerID == s.ID || client.PeerID == 0 {
				t.Errorf("peers: the stray reset's record must point at the client, the client at the aborted child: %s", dumpJSON(rec.Connections))
			}
			if !tc.closeListener && (s.ListenerID == 0 || s.PID == 0) {
				t.Errorf("the listener's reset names no listener or owner: %s", dumpJSON(s))
			}
			if client.Outcome != tracer.OutcomeReset || client.Errno.String() != "ECONNRESET" {
				t.Errorf("client: %s", dumpJSON(client))
			}
			var resets uint64
			for _, l := range rec.Listeners {
				resets += l.Resets
			}
			if want := map[bool]uint64{false: 1, true: 0}[tc.closeListener]; resets != want {
				t.Errorf("listener resets %d, want %d: %s", resets, want, dumpJSON(rec.Listeners))
			}
		})
	}
}

// TestSyncookieFinalACKOverflow: with tcp_syncookies=2 every handshake is a
// SYN cookie, so no request socket waits for the final ACK. Two clients'
// final ACKs are lost while the accept queue has room; once a third
// connection fills it, their first data (which carries the cookie ACK) is
// dropped, with no request socket to keep. The clients resend until the
// server accepts. Each drop is an overflow of the listener (the kernel's
// ListenOverflows counts exactly these here), and both connections are
// flagged listen_overflow and syncookie.
func TestSyncookieFinalACKOverflow(t *testing.T) {
	// cookie_v4_check() and cookie_v6_check() drop the ACK alike.
	for _, fam := range []struct{ network, addr string }{{"tcp4", "127.0.0.1:0"}, {"tcp6", "[::1]:0"}} {
		t.Run(fam.network, func(t *testing.T) {
			t.Parallel()
			nettest.RequireKernelFeature(t, tracer.ListenOverflowDrops)
			ns := nettest.New(t)
			if err := ns.Sysctl("net.ipv4.tcp_syncookies", "2"); err != nil {
				t.Fatal(err)
			}
			r := startRecord(t, ns, "run.jsonl")
			ln, err := ns.ListenBacklogAt(netip.MustParseAddrPort(fam.addr), 0) // accept queue of one
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			to := netns.AddrPort(ln)
			before, _ := ns.Counters()
			remove := dropClientACKs(t, ns, to.Port())
			var late []net.Conn
			for i := 0; i < 2; i++ {
				c, err := dialNS(t, ns, fam.network, to.String(), 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				late = append(late, c)
			}
			remove()
			filler, err := dialNS(t, ns, fam.network, to.String(), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer filler.Close()
			for _, c := range append(late, filler) {
				c.Write([]byte("ping"))
			}
			// Wait until each late client's data met the full queue at least once.
			deadline := time.Now().Add(5 * time.Second)
			for {
				now, _ := ns.Counters()
				if netns.Delta(before, now)["TcpExt.ListenOverflows"] >= 2 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no accept-queue overflow in 5s: %v", netns.Delta(before, now))
				}
				time.Sleep(20 * time.Millisecond)
			}
			served := make(chan error, 1)
			go func() {
				for i := 0; i < 3; i++ {
					c, err := ln.Accept()
					if err != nil {
						served <- err
						return
					}
					// Read the request first: closing with unread data would reset.
					_, err = io.ReadFull(c, make([]byte, 4))
					c.Close()
					if err != nil {
						served <- err
						return
					}
				}
				served <- nil
			}()
			for i, c := range late {
				c.SetReadDeadline(time.Now().Add(15 * time.Second))
				if _, err := c.Read(make([]byte, 1)); err != io.EOF {
					t.Fatalf("late client %d: %v, want the server's close (EOF)", i, err)
				}
				c.Close()
			}
			if err := <-served; err != nil {
				t.Fatal(err)
			}
			filler.Close()
			r.waitConnections(t, 6, 15*time.Second)
			rec := r.stop(t)
			after, _ := ns.Counters()
			d := netns.Delta(before, after)
			if len(rec.Listeners) != 1 {
				t.Fatalf("listeners: %s", dumpJSON(rec.Listeners))
			}
			l := rec.Listeners[0]
			var flagged []tracer.Connection
			for _, c := range serverRecords(rec) {
				if c.Flags.Has(tracer.FlagListenOverflow) {
					flagged = append(flagged, c)
				}
			}
			t.Logf("kernel: %v; listener overflow drops %d", d, l.Overflows)
			if l.Overflows != d["TcpExt.ListenOverflows"] || l.Overflows < 2 || len(flagged) != 2 {
				sm := rec.Summary
				t.Fatalf("listener overflow drops %d, kernel ListenOverflows %d; %d server records flagged listen_overflow: %s\n"+
					"unmatched events %d, state gaps %d, discarded children %d, recursion %s; all records: %s",
					l.Overflows, d["TcpExt.ListenOverflows"], len(flagged), dumpJSON(serverRecords(rec)),
					sm.UnmatchedEvents, sm.Gaps, sm.Discarded, dumpJSON(sm.Recursion), dumpJSON(rec.Connections))
			}
			for _, c := range flagged {
				if !c.Flags.Has(tracer.FlagSyncookie) {
					t.Errorf("overflowed cookie connection not flagged syncookie: %s", dumpJSON(c))
				}
				var detail string
				for _, it := range c.Timeline {
					if it.Kind == tracer.ItemListenOverflow {
						detail = output.DetailText(&it)
					}
				}
				if !strings.Contains(detail, "SYN cookie") {
					t.Errorf("overflow item %q does not name the SYN cookie", detail)
				}
			}
			checkQueueFindings(t, r, rec, ns, "2")
		})
	}
}
