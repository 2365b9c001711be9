package merge

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/tracer"
)

var (
	t0      = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	cliAddr = netip.MustParseAddr("10.0.0.2")
	srvAddr = netip.MustParseAddr("10.0.0.1")
)

func us(n int64) time.Duration { return time.Duration(n) * time.Microsecond }

// conn is a synthetic pair: a client that connects at start, and the
// server half as the server's clock (skew ahead of the client's) sees it,
// with a one-way delay of owd.
type conn struct {
	port          uint16
	start         time.Time
	owd, skew     time.Duration
	synsLost      int           // client SYNs lost before the server
	ackLate       time.Duration // the final ACK arrives this late
	serverResets  bool          // the server aborts and sends a reset
	serverRecords bool
}

func (p conn) halves() (tracer.Connection, tracer.Connection) {
	rto := time.Second
	syn := p.start
	c := tracer.Connection{Role: tracer.RoleClient, Local: netip.AddrPortFrom(cliAddr, p.port),
		Remote: netip.AddrPortFrom(srvAddr, 80), Start: syn, HandshakeUs: -1, SynRecvUs: -1}
	c.Timeline = append(c.Timeline, tracer.Item{At: syn, Kind: tracer.ItemState, From: tracer.StateClose, To: tracer.StateSynSent})
	for range p.synsLost {
		syn = syn.Add(rto)
		rto *= 2
		c.Timeline = append(c.Timeline, tracer.Item{At: syn, Kind: tracer.ItemRetransmit, State: tracer.StateSynSent, Detail: tracer.DetailResentSyn})
		c.Retransmits.Syn++
	}
	r0 := syn.Add(p.owd + p.skew)
	est := syn.Add(2 * p.owd)
	r1 := est.Add(p.owd + p.skew + p.ackLate)
	c.Timeline = append(c.Timeline, tracer.Item{At: est, Kind: tracer.ItemState, From: tracer.StateSynSent, To: tracer.StateEstablished})
	c.HandshakeUs = est.Sub(p.start).Microseconds()
	s := tracer.Connection{Role: tracer.RoleServer, Local: netip.AddrPortFrom(srvAddr, 80),
		Remote: netip.AddrPortFrom(cliAddr, p.port), Start: r0, HandshakeUs: -1, SynRecvUs: r1.Sub(r0).Microseconds()}
	s.Timeline = []tracer.Item{{At: r0, Kind: tracer.ItemSynAck, State: tracer.StateSynRecv, Detail: tracer.DetailFirstSynAck},
		{At: r1, Kind: tracer.ItemState, From: tracer.StateSynRecv, To: tracer.StateEstablished}}
	end := r1.Add(10 * time.Millisecond)
	if p.serverResets {
		reason, _ := tracer.ParseRSTReason("TCP_ABORT_ON_CLOSE")
		s.Timeline = append(s.Timeline, tracer.Item{At: end, Kind: tracer.ItemResetSent, Reason: reason, HasReason: true})
		s.Flags = s.Flags.With(tracer.FlagResetSent)
		c.Flags = c.Flags.With(tracer.FlagResetReceived)
		c.Errno, _ = tracer.ParseErrno("ECONNRESET")
	}
	s.End = end
	c.End = end.Add(-p.skew + p.owd)
	return c, s
}

// hostsOf records the pairs on a client host and a server host.
func hostsOf(conns ...conn) []Host {
	hosts := []Host{{Name: "client"}, {Name: "server", Listeners: []Listener{{Local: netip.AddrPortFrom(netip.IPv4Unspecified(), 80)}}}}
	for _, p := range conns {
		c, s := p.halves()
		hosts[0].Connections = append(hosts[0].Connections, c)
		if p.serverRecords {
			hosts[1].Connections = append(hosts[1].Connections, s)
		}
	}
	return hosts
}

func TestJoinEstimatesOffset(t *testing.T) {
	skew := 3 * time.Second
	var conns []conn
	for i := range 20 {
		conns = append(conns, conn{port: uint16(40000 + i), start: t0.Add(time.Duration(i) * 10 * time.Millisecond),
			owd: us(50 + int64(i%5)*10), skew: skew, serverRecords: true})
	}
	res := Join(hostsOf(conns...))
	if len(res.Pairs) != 20 || len(res.Unmatched) != 0 {
		t.Fatalf("pairs %d, unmatched %d; want 20, 0", len(res.Pairs), len(res.Unmatched))
	}
	if len(res.HostPairs) != 1 {
		t.Fatalf("host pairs %+v; want one", res.HostPairs)
	}
	off := res.HostPairs[0].Offset
	if d := off.Us - skew.Microseconds(); d < -off.UncertaintyUs || d > off.UncertaintyUs {
		t.Errorf("offset %d ± %d µs; true %d", off.Us, off.UncertaintyUs, skew.Microseconds())
	}
	// The one-way delays are 50..90 µs: the bounds cannot be tighter, and
	// intersected they should be that tight.
	if off.UncertaintyUs > 60 || off.Brackets != 20 {
		t.Errorf("uncertainty %d µs from %d handshakes; want <= 60 from 20", off.UncertaintyUs, off.Brackets)
	}
	for _, p := range res.Pairs {
		if p.Client.Local != p.Server.Remote {
			t.Errorf("joined %v with %v", p.Client.Local, p.Server.Remote)
		}
		if len(p.Diagnosis) != 0 {
			t.Errorf("healthy pair diagnosed %q", p.Diagnosis)
		}
	}
}

func TestJoinReusedTuple(t *testing.T) {
	// One tuple, three connections seconds apart; the server half of the
	// middle one is missing. Each half joins its own, the middle client
	// stays alone, and no client joins a server half seconds away.
	skew := -2 * time.Second
	conns := []conn{
		{port: 40000, start: t0, owd: us(80), skew: skew, serverRecords: true},
		{port: 40000, start: t0.Add(5 * time.Second), owd: us(80), skew: skew},
		{port: 40000, start: t0.Add(10 * time.Second), owd: us(80), skew: skew, serverRecords: true},
	}
	hosts := hostsOf(conns...)
	res := Join(hosts)
	if len(res.Pairs) != 2 || len(res.Unmatched) != 1 {
		t.Fatalf("pairs %d, unmatched %d; want 2, 1", len(res.Pairs), len(res.Unmatched))
	}
	for _, p := range res.Pairs {
		gap := p.Server.Start.Add(-skew).Sub(p.Client.Start)
		if gap < 0 || gap > time.Millisecond {
			t.Errorf("client at %v joined a server half %v later", p.Client.Start, gap)
		}
	}
	if got := res.Unmatched[0].Conn.Start; !got.Equal(t0.Add(5 * time.Second)) {
		t.Errorf("unmatched client started %v; want the middle one", got)
	}
}

func TestDiagnoses(t *testing.T) {
	conns := []conn{
		{port: 40000, start: t0, owd: us(60), serverRecords: true},
		{port: 40001, start: t0.Add(time.Millisecond), owd: us(60), synsLost: 2, serverRecords: true},
		{port: 40002, start: t0.Add(2 * time.Millisecond), owd: us(60), serverResets: true, serverRecords: true},
		{port: 40003, start: t0.Add(3 * time.Millisecond), owd: us(60), ackLate: 3 * time.Second, serverRecords: true},
	}
	hosts := hostsOf(conns...)
	timedOut := tracer.Connection{Role: tracer.RoleClient, Local: netip.AddrPortFrom(cliAddr, 40009),
		Remote: netip.AddrPortFrom(srvAddr, 80), Start: t0, End: t0.Add(7 * time.Second), HandshakeUs: -1, SynRecvUs: -1,
		Outcome: tracer.OutcomeTimeout}
	hosts[0].Connections = append(hosts[0].Connections, timedOut)
	res := Join(hosts)
	want := map[uint16]string{
		40001: "client sent 3 SYNs, the server saw only the third: the first 2 were lost before the server's TCP (no listener drop counted)",
		40002: "client got ECONNRESET: the server sent it, reason TCP_ABORT_ON_CLOSE",
		40003: "server waited 3.0 s in SYN_RECV: the client's final ACK left the client at +0 ms and arrived at +3.0 s",
	}
	for _, p := range res.Pairs {
		got := strings.Join(p.Diagnosis, "; ")
		if got != want[p.Client.Local.Port()] {
			t.Errorf("port %d: diagnosis %q; want %q", p.Client.Local.Port(), got, want[p.Client.Local.Port()])
		}
	}
	if len(res.Unmatched) != 1 || len(res.Unmatched[0].Diagnosis) != 1 ||
		res.Unmatched[0].Diagnosis[0] != "client timed out and the server (server) has no record: nothing reached a socket on the server" {
		t.Errorf("unmatched %+v; want the timed-out client, diagnosed", res.Unmatched)
	}
	if hp := res.HostPairs; len(hp) != 1 || hp[0].Joined != 4 || hp[0].ClientsUnmatched != 1 {
		t.Errorf("host pairs %+v; want one with 4 joined, 1 client alone", hp)
	}
}

func TestListenerDropsNamed(t *testing.T) {
	hosts := hostsOf(conn{port: 40001, start: t0, owd: us(60), synsLost: 1, serverRecords: true},
		conn{port: 40002, start: t0, owd: us(70), serverRecords: true})
	hosts[1].Listeners[0].Drops = 4
	res := Join(hosts)
	for _, p := range res.Pairs {
		if p.Client.Local.Port() != 40001 {
			continue
		}
		want := "client sent 2 SYNs, the server saw only the second: the first was dropped by the listener (4 drops attributed to it)"
		if len(p.Diagnosis) != 1 || p.Diagnosis[0] != want {
			t.Errorf("diagnosis %q; want %q", p.Diagnosis, want)
		}
	}
}

func TestSameExportNotJoined(t *testing.T) {
	// One recorder links its own halves itself: merge leaves them alone.
	hosts := hostsOf(conn{port: 40000, start: t0, owd: us(60), serverRecords: true})
	hosts[0].Connections = append(hosts[0].Connections, hosts[1].Connections...)
	hosts = hosts[:1]
	res := Join(hosts)
	if len(res.Pairs) != 0 || len(res.Unmatched) != 2 {
		t.Errorf("pairs %d, unmatched %d; want 0, 2", len(res.Pairs), len(res.Unmatched))
	}
}

// preexisting is a half recorded without its handshake (open before the
// recording began), alive from start to end.
func preexisting(role tracer.Role, local, remote netip.AddrPort, start, end time.Time) tracer.Connection {
	return tracer.Connection{Role: role, Local: local, Remote: remote, Start: start, End: end,
		HandshakeUs: -1, SynRecvUs: -1, Flags: tracer.FlagSet(0).With(tracer.FlagPreexisting)}
}

func TestJoinWithoutHandshakes(t *testing.T) {
	// No handshake brackets the offset: it is unknown, and halves join
	// only when their lives overlap on equal clocks.
	cl, sv := netip.AddrPortFrom(cliAddr, 40000), netip.AddrPortFrom(srvAddr, 80)
	cl2 := netip.AddrPortFrom(cliAddr, 40001)
	hosts := []Host{
		{Name: "a", Connections: []tracer.Connection{
			preexisting(tracer.RoleClient, cl, sv, t0, t0.Add(time.Second)),
			preexisting(tracer.RoleClient, cl2, sv, t0, t0.Add(time.Second)),
		}},
		{Name: "b", Connections: []tracer.Connection{
			preexisting(tracer.RoleServer, sv, cl, t0, t0.Add(time.Second)),
			// The same tuple as the second client, a minute later: another
			// connection.
			preexisting(tracer.RoleServer, sv, cl2, t0.Add(time.Minute), t0.Add(61*time.Second)),
		}},
	}
	res := Join(hosts)
	if len(res.Pairs) != 1 || res.Pairs[0].Client.Local != cl {
		t.Fatalf("pairs %+v; want only %v joined", res.Pairs, cl)
	}
	if len(res.Unmatched) != 2 {
		t.Errorf("%d unmatched; want 2 (the second client, the late server half)", len(res.Unmatched))
	}
	if hp := res.HostPairs; len(hp) != 1 || hp[0].Offset.Known() || hp[0].Joined != 1 || hp[0].ClientsUnmatched != 1 || hp[0].ServersUnmatched != 1 {
		t.Errorf("host pairs %+v; want one, offset unknown, 1 joined, 1 alone each side", hp)
	}
}

func TestJoinClosestOfTwo(t *testing.T) {
	// Two server halves of one tuple inside the client's life: the one
	// whose handshake agrees with the offset the others give is the
	// partner; the other, 300 ms off, stays alone.
	conns := []conn{
		{port: 40000, start: t0, owd: us(100), serverRecords: true},
		{port: 40001, start: t0.Add(time.Millisecond), owd: us(100), serverRecords: true},
		{port: 40002, start: t0.Add(2 * time.Millisecond), owd: us(100), serverRecords: true},
	}
	hosts := hostsOf(conns...)
	hosts[0].Connections[0].End = t0.Add(time.Second)
	decoy := hosts[1].Connections[0]
	decoy.Timeline = slices.Clone(decoy.Timeline)
	for i := range decoy.Timeline {
		decoy.Timeline[i].At = decoy.Timeline[i].At.Add(300 * time.Millisecond)
	}
	decoy.Start = decoy.Start.Add(300 * time.Millisecond)
	hosts[1].Connections = append([]tracer.Connection{decoy}, hosts[1].Connections...)
	res := Join(hosts)
	if len(res.Pairs) != 3 || len(res.Unmatched) != 1 || !res.Unmatched[0].Conn.Start.Equal(decoy.Start) {
		t.Fatalf("pairs %d, unmatched %+v; want 3 and the decoy", len(res.Pairs), res.Unmatched)
	}
}

func TestResetsEitherWay(t *testing.T) {
	c, s := conn{port: 40000, start: t0, owd: us(60), serverRecords: true}.halves()
	// The client aborts; the server receives the reset.
	reason, _ := tracer.ParseRSTReason("TCP_ABORT_ON_CLOSE")
	c.Timeline = append(c.Timeline, tracer.Item{At: c.End, Kind: tracer.ItemResetSent, Reason: reason, HasReason: true})
	s.Flags = s.Flags.With(tracer.FlagResetReceived)
	s.Errno, _ = tracer.ParseErrno("ECONNRESET")
	res := Join([]Host{{Name: "a", Connections: []tracer.Connection{c}}, {Name: "b", Connections: []tracer.Connection{s}}})
	want := "server got ECONNRESET: the client sent it, reason TCP_ABORT_ON_CLOSE"
	if len(res.Pairs) != 1 || strings.Join(res.Pairs[0].Diagnosis, "; ") != want {
		t.Fatalf("pairs %+v; want one diagnosed %q", res.Pairs, want)
	}
	// A reset neither socket sent.
	c.Timeline = c.Timeline[:len(c.Timeline)-1]
	res = Join([]Host{{Name: "a", Connections: []tracer.Connection{c}}, {Name: "b", Connections: []tracer.Connection{s}}})
	if d := res.Pairs[0].Diagnosis; len(d) != 1 || !strings.Contains(d[0], "the client's socket did not send") {
		t.Errorf("diagnosis %q; want a reset from elsewhere", d)
	}
}

func TestRefusedJoined(t *testing.T) {
	// A refused connect and the server host's socketless reset: no
	// handshake, joined by their lives, and the reset's reason named.
	cl, sv := netip.AddrPortFrom(cliAddr, 40000), netip.AddrPortFrom(srvAddr, 81)
	reason, _ := tracer.ParseRSTReason("NO_SOCKET")
	client := tracer.Connection{Role: tracer.RoleClient, Local: cl, Remote: sv, Start: t0, End: t0.Add(us(80)),
		HandshakeUs: -1, SynRecvUs: -1, Outcome: tracer.OutcomeRefused, Flags: tracer.FlagSet(0).With(tracer.FlagRefused)}
	client.Timeline = []tracer.Item{{At: t0, Kind: tracer.ItemState, From: tracer.StateClose, To: tracer.StateSynSent}}
	server := tracer.Connection{Role: tracer.RoleServer, Local: sv, Remote: cl, Start: t0.Add(us(40)), End: t0.Add(us(40)),
		HandshakeUs: -1, SynRecvUs: -1, Outcome: tracer.OutcomeRefused,
		Timeline: []tracer.Item{{At: t0.Add(us(40)), Kind: tracer.ItemResetSent, Reason: reason, HasReason: true}}}
	res := Join([]Host{{Name: "a", Connections: []tracer.Connection{client}}, {Name: "b", Connections: []tracer.Connection{server}}})
	want := "client was refused: the server's host answered its SYN with a reset, reason NO_SOCKET"
	if len(res.Pairs) != 1 || strings.Join(res.Pairs[0].Diagnosis, "; ") != want {
		t.Fatalf("pairs %+v; want one diagnosed %q", res.Pairs, want)
	}
}
