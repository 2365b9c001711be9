package findings

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/tracer"
)

var t0 = time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

var (
	server = netip.MustParseAddrPort("10.0.0.1:8080")
	client = netip.MustParseAddrPort("10.0.0.2:40000")
)

func conn(role tracer.Role, outcome tracer.Outcome, startMs int, flags ...tracer.Flag) *tracer.Connection {
	c := &tracer.Connection{Role: role, Outcome: outcome, NetNS: 1, Start: at(startMs), End: at(startMs + 10), Flags: tracer.FlagsOf(flags...)}
	c.Local, c.Remote = client, server
	if role == tracer.RoleServer {
		c.Local, c.Remote, c.ListenerID = server, client, 7
	}
	return c
}

func sysctls(kv ...string) []Sysctl {
	var out []Sysctl
	for i := 0; i < len(kv); i += 2 {
		out = append(out, Sysctl{NetNS: 1, Name: kv[i], Value: kv[i+1]})
	}
	return out
}

func listener() Listener {
	return Listener{ID: 7, NetNS: 1, Local: server, PID: 42, Comm: "srv", Backlog: 5, PeakQueue: 5, Connections: 100, Start: at(0), End: at(10000)}
}

func fact(t *testing.T, f *Finding, name string) uint64 {
	t.Helper()
	v, ok := f.Fact(name)
	if !ok {
		t.Fatalf("%s finding has no %s: %+v", f.Kind, name, f.Evidence)
	}
	return v
}

func only(t *testing.T, fs []Finding, k Kind) *Finding {
	t.Helper()
	if len(fs) != 1 || fs[0].Kind != k {
		t.Fatalf("findings %+v, want one %s", fs, k)
	}
	return &fs[0]
}

func TestHealthyNoFinding(t *testing.T) {
	a := New()
	for i := 0; i < 1000; i++ {
		a.Add(conn(tracer.RoleClient, tracer.OutcomeTimeWait, i, tracer.FlagTimeWait))
		a.Add(conn(tracer.RoleServer, tracer.OutcomeClosed, i))
	}
	// A few tail loss probes among a thousand connections are no loss.
	for i := 0; i < 10; i++ {
		a.Add(conn(tracer.RoleClient, tracer.OutcomeTimeWait, i, tracer.FlagTimeWait, tracer.FlagDataRetransmitted))
	}
	l := listener()
	l.PeakQueue = 2
	env := Env{Start: at(0), End: at(2000), Listeners: []Listener{l},
		Counters: []Counter{{1, "Tcp.ActiveOpens", 1000}, {1, "Tcp.PassiveOpens", 1000}, {1, "TcpExt.TW", 1000}},
		TimeWait: []TimeWait{{NetNS: 1, Remote: server, Peak: 1000, Ports: 28232, Entered: 1000}},
		Sysctls:  sysctls(SomaxConn, "4096", LocalPortRange, "32768 60999")}
	if fs := a.Finish(env); len(fs) != 0 {
		t.Errorf("healthy traffic: %+v", fs)
	}
	if fs := New().Finish(Env{}); len(fs) != 0 {
		t.Errorf("quiet recording: %+v", fs)
	}
}

func TestAcceptQueueOverflow(t *testing.T) {
	a := New()
	a.Add(conn(tracer.RoleServer, tracer.OutcomeClosed, 100, tracer.FlagListenOverflow, tracer.FlagSynAckRetransmitted))
	a.Add(conn(tracer.RoleClient, tracer.OutcomeClosed, 50, tracer.FlagListenOverflow))
	a.Add(conn(tracer.RoleClient, tracer.OutcomeClosed, 60)) // not flagged
	l := listener()
	l.Overflows, l.OverflowsAttributed, l.SynDropsAttributed, l.FullSamples = 3, 10, 7, 4
	env := Env{Listeners: []Listener{l}, Counters: []Counter{{1, "TcpExt.ListenOverflows", 12}, {1, "TcpExt.ListenDrops", 12}},
		Sysctls: sysctls(SomaxConn, "7", AbortOnOverflow, "0", Syncookies, "1")}
	f := only(t, a.Finish(env), AcceptQueueOverflow)
	if f.Severity != Critical || f.Subject != "10.0.0.1:8080 (srv/42)" || f.NetNS != 1 || !f.First.Equal(at(50)) || !f.Last.Equal(at(110)) {
		t.Errorf("finding %+v", f)
	}
	for name, want := range map[string]uint64{"accept_queue_drops": 10, "overflow_drops": 3, "syn_drops_attributed": 7,
		"listen_overflow_connections": 2, "backlog": 5, "peak_accept_queue": 5, "full_queue_samples": 4, "TcpExt.ListenOverflows": 12} {
		if got := fact(t, f, name); got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
	if len(f.Sysctls) != 2 || f.Sysctls[0] != (Sysctl{1, SomaxConn, "7"}) || f.Sysctls[1] != (Sysctl{1, AbortOnOverflow, "0"}) {
		t.Errorf("sysctls quoted: %+v", f.Sysctls)
	}
	for _, want := range []string{"holds 6 connections (its backlog 5", "net.core.somaxconn = 7", "dropped 10 SYNs or final ACKs", "ListenOverflows +12"} {
		if !strings.Contains(f.Mechanism, want) {
			t.Errorf("mechanism lacks %q: %s", want, f.Mechanism)
		}
	}
	for _, want := range []string{"backlog (now 5)", "net.core.somaxconn = 7", "tcp_abort_on_overflow = 0", "connection reset by peer"} {
		if !strings.Contains(f.Advice, want) {
			t.Errorf("advice lacks %q: %s", want, f.Advice)
		}
	}
}

func TestSynFloodCookies(t *testing.T) {
	a := New()
	a.Add(conn(tracer.RoleServer, tracer.OutcomeClosed, 100, tracer.FlagSyncookie))
	l := listener()
	l.Syncookies = 3
	env := Env{Listeners: []Listener{l}, Counters: []Counter{{1, "TcpExt.SyncookiesSent", 30}, {1, "TcpExt.SyncookiesRecv", 3}},
		Sysctls: sysctls(SomaxConn, "4096", Syncookies, "1", MaxSynBacklog, "128")}
	f := only(t, a.Finish(env), SynFloodCookies)
	if f.Subject != "10.0.0.1:8080 (srv/42)" || fact(t, f, "syncookie_connections") != 3 || fact(t, f, "syncookie_flagged_connections") != 1 ||
		fact(t, f, "TcpExt.SyncookiesSent") != 30 || fact(t, f, "TcpExt.SyncookiesRecv") != 3 || fact(t, f, "backlog") != 5 {
		t.Errorf("finding %+v", f)
	}
	if _, ok := f.Fact("TcpExt.SyncookiesFailed"); ok {
		t.Errorf("a counter that did not move is evidence: %+v", f.Evidence)
	}
	for _, want := range []string{"net.ipv4.tcp_syncookies = 1", "Possible SYN flooding on port ...:8080", "3 connections completed through a cookie"} {
		if !strings.Contains(f.Mechanism, want) {
			t.Errorf("mechanism lacks %q: %s", want, f.Mechanism)
		}
	}
	if !strings.Contains(f.Advice, "net.ipv4.tcp_max_syn_backlog = 128") || len(f.Sysctls) != 3 {
		t.Errorf("advice %s, sysctls %+v", f.Advice, f.Sysctls)
	}
	env.Sysctls = sysctls(Syncookies, "2")
	if f := only(t, a.Finish(env), SynFloodCookies); !strings.Contains(f.Mechanism, "every SYN") || strings.Contains(f.Mechanism, "Possible SYN flooding") ||
		!strings.Contains(f.Advice, "back to 1") {
		t.Errorf("tcp_syncookies 2: %+v", f)
	}
	// Cookies counted in a namespace with no traced listener that took one.
	fs := New().Finish(Env{Start: at(0), End: at(1000), Counters: []Counter{{2, "TcpExt.SyncookiesSent", 4}}})
	if f := only(t, fs, SynFloodCookies); f.Subject != "namespace 2" || fact(t, f, "TcpExt.SyncookiesSent") != 4 {
		t.Errorf("namespace finding %+v", f)
	}
}

func TestTimeWaitExhaustion(t *testing.T) {
	a := New()
	for i := 0; i < 200; i++ {
		c := conn(tracer.RoleClient, tracer.OutcomeTimeWait, i*10, tracer.FlagTimeWait)
		c.ClosedBy = tracer.ClosedByLocal
		a.Add(c)
	}
	for i := 0; i < 30; i++ {
		c := conn(tracer.RoleClient, tracer.OutcomeFailed, 2000+i, tracer.FlagPortExhausted)
		c.Local = netip.AddrPort{}
		a.Add(c)
	}
	env := Env{TimeWait: []TimeWait{{NetNS: 1, Local: client.Addr(), Remote: server, Peak: 200, Ports: 200, Entered: 200, Warned: true}},
		Sysctls: sysctls(LocalPortRange, "40000 40199", TwReuse, "0")}
	f := only(t, a.Finish(env), TimeWaitExhaustion)
	if f.Severity != Critical || f.Subject != "10.0.0.1:8080" || !f.First.Equal(at(0)) || !f.Last.Equal(at(2039)) {
		t.Errorf("finding %+v", f)
	}
	for name, want := range map[string]uint64{"port_exhausted_connections": 30, "time_wait_peak": 200, "usable_ports": 200,
		"time_wait_connections": 200, "time_wait_per_second": 100, "closed_first_by_client": 200} {
		if got := fact(t, f, name); got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
	for _, want := range []string{"100/s × 60 s = 6000 ports", "200 usable local ports (net.ipv4.ip_local_port_range = 40000 40199)", "30 connects failed with EADDRNOTAVAIL"} {
		if !strings.Contains(f.Mechanism, want) {
			t.Errorf("mechanism lacks %q: %s", want, f.Mechanism)
		}
	}
	if !strings.Contains(f.Advice, "keep-alive") || !strings.Contains(f.Advice, "tcp_tw_reuse to 1 (now 0)") {
		t.Errorf("advice %s", f.Advice)
	}
	// Pressure past the warning, no connect failed yet: a warning.
	env.TimeWait[0].Peak = 170
	if f := only(t, New().Finish(env), TimeWaitExhaustion); f.Severity != Warning || fact(t, f, "time_wait_peak") != 170 {
		t.Errorf("warned only: %+v", f)
	}
}

func TestConnectionRefused(t *testing.T) {
	a := New()
	for i := 0; i < 3; i++ {
		a.Add(conn(tracer.RoleClient, tracer.OutcomeRefused, i*100, tracer.FlagRefused))
	}
	// The server side of a traced client's refusal is not counted twice;
	// one whose client was not traced is.
	s := conn(tracer.RoleServer, tracer.OutcomeRefused, 0, tracer.FlagResetSent)
	s.PeerID = 9
	a.Add(s)
	s = conn(tracer.RoleServer, tracer.OutcomeRefused, 300, tracer.FlagResetSent)
	a.Add(s)
	f := only(t, a.Finish(Env{}), ConnectionRefused)
	if f.Subject != "10.0.0.1:8080" || fact(t, f, "refused_connections") != 4 || fact(t, f, "listener_appeared_later") != 0 ||
		!strings.Contains(f.Mechanism, "4 connects to 10.0.0.1:8080 between 09:00:00.000 and 09:00:00.310") {
		t.Errorf("finding %+v", f)
	}
	l := listener()
	l.Start = at(250)
	f = only(t, a.Finish(Env{Listeners: []Listener{l}}), ConnectionRefused)
	if fact(t, f, "listener_appeared_later") != 1 || !strings.Contains(f.Mechanism, "(re)starting") {
		t.Errorf("finding with a later listener %+v", f)
	}
}

func TestHandshakeTimeout(t *testing.T) {
	a := New()
	for i := 0; i < 2; i++ {
		c := conn(tracer.RoleClient, tracer.OutcomeTimeout, i*100, tracer.FlagSynRetransmitted, tracer.FlagHandshakeTimeout)
		c.Retransmits.Syn = 2
		c.End = c.Start.Add(7 * time.Second)
		a.Add(c)
	}
	// A server request whose SYN-ACKs went unanswered is not a connect.
	a.Add(conn(tracer.RoleServer, tracer.OutcomeTimeout, 0, tracer.FlagHandshakeTimeout))
	env := Env{Counters: []Counter{{1, "TcpExt.TCPSynRetrans", 4}}, Sysctls: sysctls(SynRetries, "2")}
	f := only(t, a.Finish(env), HandshakeTimeout)
	if f.Severity != Critical || f.Subject != "10.0.0.1:8080" || fact(t, f, "handshake_timeout_connections") != 2 || fact(t, f, "syn_retransmits") != 4 ||
		fact(t, f, "listener_drops") != 0 || fact(t, f, "TcpExt.TCPSynRetrans") != 4 || len(f.Sysctls) != 1 ||
		!strings.Contains(f.Mechanism, "2 connects to 10.0.0.1:8080 got no answer: 4 SYN retransmits in all, then connect() gave up with ETIMEDOUT after 7s (net.ipv4.tcp_syn_retries = 2 sets that wait)") || !strings.Contains(f.Mechanism, "No traced listener") {
		t.Errorf("finding %+v", f)
	}
	l := listener()
	env.Listeners = []Listener{l}
	if f := only(t, a.Finish(env), HandshakeTimeout); !strings.Contains(f.Mechanism, "counted no drop") {
		t.Errorf("with a listener that dropped nothing: %s", f.Mechanism)
	}
	l.Overflows = 5
	env.Listeners = []Listener{l}
	fs := a.Finish(env)
	if len(fs) != 2 || fs[1].Kind != HandshakeTimeout || fact(t, &fs[1], "listener_drops") != 5 || !strings.Contains(fs[1].Mechanism, "see accept_queue_overflow") {
		t.Errorf("with a listener that dropped: %+v", fs)
	}
}

func TestLateFinalACK(t *testing.T) {
	a := New()
	for i := 0; i < 3; i++ {
		c := conn(tracer.RoleServer, tracer.OutcomeClosed, i*100, tracer.FlagSynAckRetransmitted, tracer.FlagLongSynRecv)
		c.Retransmits.SynAck, c.SynRecvUs = 2, int64(1000000*(i+1))
		a.Add(c)
	}
	// Long SYN_RECV without a SYN-ACK retransmit is not a late final ACK.
	a.Add(conn(tracer.RoleServer, tracer.OutcomeClosed, 0, tracer.FlagLongSynRecv))
	env := Env{Listeners: []Listener{listener()}, Sysctls: sysctls(SynAckRetries, "5")}
	f := only(t, a.Finish(env), LateFinalACK)
	if f.Severity != Warning || f.Subject != "10.0.0.1:8080 (srv/42)" || fact(t, f, "late_final_ack_connections") != 3 ||
		fact(t, f, "synack_retransmits") != 6 || fact(t, f, "longest_syn_recv_us") != 3000000 || fact(t, f, "accept_queue_drops") != 0 ||
		!strings.Contains(f.Mechanism, "3 connections to 10.0.0.1:8080 waited up to 3s in SYN_RECV") ||
		!strings.Contains(f.Mechanism, "at most net.ipv4.tcp_synack_retries = 5 times") || !strings.Contains(f.Mechanism, "dropped none") {
		t.Errorf("finding %+v", f)
	}
	l := listener()
	l.Overflows = 2
	env.Listeners = []Listener{l}
	fs := a.Finish(env)
	if len(fs) != 2 || fs[1].Kind != LateFinalACK || !strings.Contains(fs[1].Mechanism, "see accept_queue_overflow") {
		t.Errorf("with overflow drops: %+v", fs)
	}
}

func TestResets(t *testing.T) {
	reason := func(name string) tracer.RSTReason { r, _ := tracer.ParseRSTReason(name); return r }
	a := New()
	for i := 0; i < 2; i++ {
		c := conn(tracer.RoleServer, tracer.OutcomeReset, i*100, tracer.FlagResetSent)
		c.PID, c.Comm = 42, "srv"
		c.Timeline = []tracer.Item{{Kind: tracer.ItemResetSent, Reason: reason("TCP_ABORT_ON_CLOSE"), HasReason: true}}
		a.Add(c)
	}
	c := conn(tracer.RoleClient, tracer.OutcomeReset, 0, tracer.FlagResetSent)
	c.PID, c.Comm = 7, "ab"
	c.Timeline = []tracer.Item{{Kind: tracer.ItemResetSent, Reason: reason("TCP_STATE"), HasReason: true}}
	a.Add(c)
	// A refusal's reset is connection_refused's.
	a.Add(conn(tracer.RoleServer, tracer.OutcomeRefused, 0, tracer.FlagResetSent))
	fs := a.Finish(Env{Counters: []Counter{{1, "TcpExt.TCPAbortOnClose", 2}, {1, "Tcp.OutRsts", 4}}})
	if len(fs) != 3 {
		t.Fatalf("findings %+v", fs)
	}
	sv, cl := &fs[0], &fs[1]
	if sv.Kind != ServerResets || sv.Subject != "10.0.0.1:8080 (srv/42), reason TCP_ABORT_ON_CLOSE" || fact(t, sv, "reset_connections") != 2 ||
		fact(t, sv, "TcpExt.TCPAbortOnClose") != 2 || fact(t, sv, "Tcp.OutRsts") != 4 || !strings.Contains(sv.Mechanism, "unread") ||
		!strings.Contains(sv.Advice, "Read the whole request") {
		t.Errorf("server resets %+v", sv)
	}
	if cl.Kind != ClientResets || cl.Subject != "ab/7 toward 10.0.0.1:8080, reason TCP_STATE" || fact(t, cl, "reset_connections") != 1 ||
		!strings.Contains(cl.Mechanism, "SO_LINGER") {
		t.Errorf("client resets %+v", cl)
	}
	if fs[2].Kind != ConnectionRefused {
		t.Errorf("refused: %+v", fs[2])
	}
}

func TestDataLoss(t *testing.T) {
	a := New()
	peer := func(addr string, n int) {
		for i := 0; i < n; i++ {
			c := conn(tracer.RoleClient, tracer.OutcomeClosed, i, tracer.FlagDataRetransmitted)
			c.Remote = netip.MustParseAddrPort(addr)
			c.Retransmits.Data = 2
			a.Add(c)
		}
	}
	peer("10.0.0.9:80", 2)
	if fs := a.Finish(Env{}); len(fs) != 0 {
		t.Errorf("two connections: %+v", fs)
	}
	peer("10.0.0.8:80", 3)
	for i := 0; i < 45; i++ {
		a.Add(conn(tracer.RoleClient, tracer.OutcomeClosed, i))
	}
	f := only(t, a.Finish(Env{Counters: []Counter{{1, "Tcp.RetransSegs", 10}}}), DataLoss)
	if f.Subject != "peer 10.0.0.8 and 1 more peer" || fact(t, f, "data_retransmitted_connections") != 5 || fact(t, f, "connections") != 50 ||
		fact(t, f, "data_retransmits") != 10 || fact(t, f, "peers") != 2 || fact(t, f, "Tcp.RetransSegs") != 10 ||
		!strings.Contains(f.Mechanism, "5 connections of 50 in namespace 1 (10%) resent data, 10 data segments in all, toward or from 10.0.0.8 (3), 10.0.0.9 (2)") {
		t.Errorf("finding %+v", f)
	}
	for i := 0; i < 60; i++ {
		a.Add(conn(tracer.RoleClient, tracer.OutcomeClosed, i))
	}
	if fs := a.Finish(Env{}); len(fs) != 0 {
		t.Errorf("5 of 110 connections: %+v", fs)
	}
}

func TestMostSevereFirst(t *testing.T) {
	a := New()
	a.Add(conn(tracer.RoleClient, tracer.OutcomeRefused, 0, tracer.FlagRefused))
	c := conn(tracer.RoleClient, tracer.OutcomeFailed, 0, tracer.FlagPortExhausted)
	c.Remote = netip.MustParseAddrPort("10.0.0.3:80")
	a.Add(c)
	l := listener()
	l.Overflows, l.Syncookies = 1, 1
	var kinds []string
	for _, f := range a.Finish(Env{Listeners: []Listener{l}}) {
		kinds = append(kinds, f.Severity.String()+" "+f.Kind.String())
	}
	want := "critical accept_queue_overflow,critical time_wait_exhaustion,warning syn_flood_cookies,warning connection_refused"
	if got := strings.Join(kinds, ","); got != want {
		t.Errorf("order %s, want %s", got, want)
	}
}

func TestNames(t *testing.T) {
	for _, k := range Kinds() {
		if p, ok := ParseKind(k.String()); !ok || p != k || k.String() == "" {
			t.Errorf("kind %d: %q", k, k)
		}
	}
	for s := Info; s < severityCount; s++ {
		if p, ok := ParseSeverity(s.String()); !ok || p != s {
			t.Errorf("severity %d: %q", s, s)
		}
	}
	if _, ok := ParseKind("nope"); ok {
		t.Error("ParseKind accepts an unknown name")
	}
}

// TestUnreadResetsAtStop: a load tool that stops with answers unread or
// still to come resets those connections as it closes them or as the
// answers come: no finding. The same reset earlier in its run is one.
func TestUnreadResetsAtStop(t *testing.T) {
	reason, _ := tracer.ParseRSTReason("TCP_ABORT_ON_CLOSE")
	late, _ := tracer.ParseRSTReason("TCP_ABORT_ON_DATA")
	a := New()
	client := func(startMs int, reset bool) {
		c := conn(tracer.RoleClient, tracer.OutcomeClosed, startMs)
		c.PID, c.Comm = 7, "wrk"
		if reset {
			c.Outcome, c.Flags = tracer.OutcomeReset, tracer.FlagsOf(tracer.FlagResetSent)
			c.Timeline = []tracer.Item{{Kind: tracer.ItemResetSent, Reason: reason, HasReason: true}}
		}
		a.Add(c)
	}
	for ms := 0; ms < 2000; ms += 100 {
		client(ms, false)
	}
	client(1950, true)
	client(1980, true)
	c := conn(tracer.RoleClient, tracer.OutcomeReset, 1990, tracer.FlagResetSent)
	c.PID, c.Comm = 7, "wrk"
	c.Timeline = []tracer.Item{{Kind: tracer.ItemResetSent, Reason: late, HasReason: true}}
	a.Add(c)
	if fs := a.Finish(Env{}); len(fs) != 0 {
		t.Errorf("resets as the client stopped: %+v", fs)
	}
	client(500, true)
	f := only(t, a.Finish(Env{}), ClientResets)
	if f.Subject != "wrk/7 toward 10.0.0.1:8080, reason TCP_ABORT_ON_CLOSE" || fact(t, f, "reset_connections") != 1 || !f.First.Equal(at(500)) || !f.Last.Equal(at(510)) {
		t.Errorf("a reset before the stop: %+v", f)
	}
}
