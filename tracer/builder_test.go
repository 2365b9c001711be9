package tracer

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

// script builds synthetic events for the builder, a mock of the kernel.
type script struct {
	now    time.Duration
	netns  uint32
	events []Event
}

func (s *script) at(d time.Duration) *script { s.now = d; return s }

func (s *script) ev(e Event) *script {
	e.Time = t0.Add(s.now)
	e.BootNs = uint64(s.now)
	if e.NetNS == 0 {
		e.NetNS = 7
	}
	s.events = append(s.events, e)
	return s
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

var (
	cli    = ap("10.0.0.2:40000")
	srv    = ap("10.0.0.1:80")
	cliSS  = ap("10.0.0.2:0")
	commOf = func(s string) (c Comm) { copy(c[:], s); return }
)

func st(cookie uint64, from, to State, local, remote netip.AddrPort) Event {
	return Event{Kind: KindState, Cookie: cookie, OldState: from, NewState: to, State: from, Local: local, Remote: remote}
}

func run(s *script, finishAt time.Duration) map[uint64]Connection {
	out := map[uint64]Connection{}
	b := NewBuilder(BuilderConfig{Clock: Clock{OffsetNs: t0.UnixNano()}, Emit: func(c *Connection) {
		cp := *c
		cp.Timeline = slices.Clone(c.Timeline)
		out[c.ID] = cp
	}})
	for i := range s.events {
		b.Expire(s.events[i].Time)
		b.Add(&s.events[i])
	}
	b.Finish(t0.Add(finishAt))
	return out
}

func clientHandshake(s *script, ck uint64) {
	e := st(ck, StateClose, StateSynSent, cliSS, srv)
	e.TGID, e.Comm = 100, commOf("wrk")
	s.at(0).ev(e)
	s.at(300 * time.Microsecond).ev(st(ck, StateSynSent, StateEstablished, cli, srv))
}

func serverHandshake(s *script, ck uint64, srttUs uint32) {
	e := st(ck, StateListen, StateSynRecv, srv, cli)
	e.HasOwner, e.OwnerTGID, e.OwnerComm, e.ListenerCookie = true, 200, commOf("nginx"), 1
	s.at(250 * time.Microsecond).ev(e)
	est := st(ck, StateSynRecv, StateEstablished, srv, cli)
	est.HasTCPInfo, est.SRTTUs = true, srttUs
	s.at(260 * time.Microsecond).ev(est)
}

func check(t *testing.T, c Connection, outcome Outcome, closedBy ClosedBy, flags ...Flag) {
	t.Helper()
	if c.Outcome != outcome || c.ClosedBy != closedBy {
		t.Errorf("conn %d: outcome %s closed_by %q, want %s %q", c.ID, c.Outcome, c.ClosedBy, outcome, closedBy)
	}
	if c.Flags != FlagsOf(flags...) {
		t.Errorf("conn %d: flags %v, want %v", c.ID, c.Flags, FlagsOf(flags...))
	}
}

func TestClientClosesFirst(t *testing.T) {
	s := &script{}
	clientHandshake(s, 10)
	serverHandshake(s, 11, 180)
	s.at(10 * time.Millisecond).ev(st(10, StateEstablished, StateFinWait1, cli, srv))
	s.at(10*time.Millisecond + 10*time.Microsecond).ev(st(11, StateEstablished, StateCloseWait, srv, cli))
	s.at(10*time.Millisecond + 20*time.Microsecond).ev(st(10, StateFinWait1, StateFinWait2, cli, srv))
	s.at(11 * time.Millisecond).ev(st(11, StateCloseWait, StateLastAck, srv, cli))
	s.at(11*time.Millisecond + 10*time.Microsecond).ev(st(10, StateFinWait2, StateClose, cli, srv))
	s.at(11*time.Millisecond + 20*time.Microsecond).ev(st(11, StateLastAck, StateClose, srv, cli))
	got := run(s, time.Second)
	c, sv := got[10], got[11]
	check(t, c, OutcomeTimeWait, ClosedByLocal, FlagTimeWait)
	check(t, sv, OutcomeClosed, ClosedByRemote)
	if c.Role != RoleClient || c.PID != 100 || c.Comm != "wrk" || c.Local != cli || c.Remote != srv {
		t.Errorf("client record: %+v", c)
	}
	if c.HandshakeUs != 300 || c.PeerID != 11 || sv.PeerID != 10 {
		t.Errorf("handshake %d peer %d/%d", c.HandshakeUs, c.PeerID, sv.PeerID)
	}
	if sv.Role != RoleServer || sv.PID != 200 || sv.Comm != "nginx" || sv.ListenerID != 1 {
		t.Errorf("server owner: %+v", sv)
	}
	if sv.SynRecvUs != 180 || sv.SynRecvHow != SynRecvFromSRTT || sv.Start != t0.Add(260*time.Microsecond-180*time.Microsecond) {
		t.Errorf("server syn_recv %d via %s start %s", sv.SynRecvUs, sv.SynRecvHow, sv.Start)
	}
	last := c.Timeline[len(c.Timeline)-1]
	if last.Kind != ItemTimeWait || last.State != StateTimeWait {
		t.Errorf("client timeline ends with %+v, want a TIME_WAIT step", last)
	}
	if fw2 := c.Timeline[3]; fw2.From != StateFinWait1 || fw2.PrevStateUs != 20 {
		t.Errorf("FIN_WAIT1->FIN_WAIT2 item %+v, want 20us in FIN_WAIT1", fw2)
	}
	if c.DurationUs != 11010 {
		t.Errorf("client duration %d us", c.DurationUs)
	}
}

func TestRefused(t *testing.T) {
	s := &script{}
	e := st(20, StateClose, StateSynSent, cliSS, srv)
	s.at(0).ev(e)
	s.at(10 * time.Microsecond).ev(Event{Kind: KindResetSent, NoSocket: true, HasReason: true, Reason: 1, SegFlags: TCPSyn, Local: srv, Remote: cli})
	s.at(20 * time.Microsecond).ev(Event{Kind: KindResetReceived, Cookie: 20, State: StateSynSent, Local: cli, Remote: srv})
	s.at(21 * time.Microsecond).ev(st(20, StateSynSent, StateClose, cli, srv))
	s.at(22 * time.Microsecond).ev(Event{Kind: KindError, Cookie: 20, Err: 111, State: StateClose, Local: cli, Remote: srv})
	got := run(s, time.Second)
	if len(got) != 2 {
		t.Fatalf("%d records, want client and server: %v", len(got), got)
	}
	c := got[20]
	check(t, c, OutcomeRefused, ClosedByRemote, FlagResetReceived, FlagRefused)
	if c.Errno != ErrnoConnRefused || c.HandshakeUs != -1 {
		t.Errorf("client errno %q handshake %d", c.Errno, c.HandshakeUs)
	}
	var sv Connection
	for id, r := range got {
		if id != 20 {
			sv = r
		}
	}
	check(t, sv, OutcomeRefused, ClosedByLocal, FlagResetSent, FlagRefused)
	if sv.Role != RoleServer || sv.Local != srv || sv.Remote != cli || sv.PeerID != 20 || c.PeerID != sv.ID {
		t.Errorf("server refused record %+v (client peer %d)", sv, c.PeerID)
	}
	if it := sv.Timeline[0]; !it.HasReason || it.Reason != 1 || it.Detail != DetailNoSocket {
		t.Errorf("server timeline %+v", sv.Timeline)
	}
}

func TestSynTimeout(t *testing.T) {
	s := &script{}
	s.at(0).ev(st(30, StateClose, StateSynSent, cliSS, srv))
	for i := 1; i <= 3; i++ {
		s.at(time.Duration(i) * time.Second).ev(Event{Kind: KindRetransmit, Cookie: 30, State: StateSynSent, HasErr: true, Local: cli, Remote: srv})
	}
	// A failed attempt is recorded, not counted.
	s.at(3500 * time.Millisecond).ev(Event{Kind: KindRetransmit, Cookie: 30, State: StateSynSent, HasErr: true, Err: -1, Local: cli, Remote: srv})
	s.at(7 * time.Second).ev(st(30, StateSynSent, StateClose, cli, srv))
	s.at(7 * time.Second).ev(Event{Kind: KindError, Cookie: 30, Err: 110, State: StateClose, Local: cli, Remote: srv})
	c := run(s, 10*time.Second)[30]
	check(t, c, OutcomeTimeout, ClosedByNone, FlagSynRetransmitted, FlagHandshakeTimeout)
	if c.Retransmits.Syn != 3 || c.Errno != ErrnoTimedOut {
		t.Errorf("syn retransmits %d errno %q", c.Retransmits.Syn, c.Errno)
	}
	if it := c.Timeline[4]; it.Errno != Errno(unix.EPERM) || it.Detail != DetailResentSyn {
		t.Errorf("failed retransmit item %+v", it)
	}
}

func TestResetMidStream(t *testing.T) {
	t.Run("received", func(t *testing.T) {
		s := &script{}
		clientHandshake(s, 40)
		s.at(time.Millisecond).ev(Event{Kind: KindResetReceived, Cookie: 40, State: StateEstablished, Local: cli, Remote: srv})
		s.ev(st(40, StateEstablished, StateClose, cli, srv))
		s.ev(Event{Kind: KindError, Cookie: 40, Err: 104, State: StateClose})
		check(t, run(s, time.Second)[40], OutcomeReset, ClosedByRemote, FlagResetReceived)
	})
	t.Run("sent after close", func(t *testing.T) {
		// __tcp_close(): ESTABLISHED->CLOSE first, then the reset's trace.
		s := &script{}
		serverHandshake(s, 41, 100)
		s.at(time.Millisecond).ev(st(41, StateEstablished, StateClose, srv, cli))
		s.at(time.Millisecond + 5*time.Microsecond).ev(Event{Kind: KindResetSent, Cookie: 41, State: StateClose, HasReason: true, Reason: 11, Local: srv, Remote: cli})
		c := run(s, time.Second)[41]
		check(t, c, OutcomeReset, ClosedByLocal, FlagResetSent)
		if it := c.Timeline[len(c.Timeline)-1]; !it.HasReason || it.Reason != 11 {
			t.Errorf("last item %+v", it)
		}
	})
	t.Run("fin_wait2 timeout is not time_wait", func(t *testing.T) {
		s := &script{}
		clientHandshake(s, 42)
		s.at(time.Millisecond).ev(st(42, StateEstablished, StateFinWait1, cli, srv))
		s.ev(st(42, StateFinWait1, StateFinWait2, cli, srv))
		s.at(60 * time.Second).ev(Event{Kind: KindResetSent, Cookie: 42, State: StateFinWait2, HasReason: true, Reason: 14, Local: cli, Remote: srv})
		s.ev(st(42, StateFinWait2, StateClose, cli, srv))
		check(t, run(s, 70*time.Second)[42], OutcomeReset, ClosedByLocal, FlagResetSent)
	})
}

func TestGraceKeepsClosedConnectionsForLateEvents(t *testing.T) {
	var emitted []uint64
	b := NewBuilder(BuilderConfig{Grace: time.Second, Emit: func(c *Connection) { emitted = append(emitted, c.ID) }})
	s := &script{}
	clientHandshake(s, 50)
	s.at(time.Millisecond).ev(st(50, StateEstablished, StateClose, cli, srv))
	for i := range s.events {
		b.Add(&s.events[i])
	}
	b.Expire(t0.Add(500 * time.Millisecond))
	if len(emitted) != 0 {
		t.Fatalf("emitted %v before the grace period ended", emitted)
	}
	b.Expire(t0.Add(1100 * time.Millisecond))
	if !slices.Equal(emitted, []uint64{50}) || b.Live() != 0 {
		t.Fatalf("emitted %v, live %d after grace", emitted, b.Live())
	}
}

// TestOpenExcludesClosing: a closed connection waiting out the grace
// period is still followed (Live) but no longer open.
func TestOpenExcludesClosing(t *testing.T) {
	b := NewBuilder(BuilderConfig{Grace: time.Second})
	s := &script{}
	clientHandshake(s, 50)
	clientHandshake(s, 51)
	s.at(time.Millisecond).ev(st(50, StateEstablished, StateClose, cli, srv))
	for i := range s.events {
		b.Add(&s.events[i])
	}
	if b.Live() != 2 || b.Open() != 1 {
		t.Errorf("one of two closed: live %d open %d, want 2 and 1", b.Live(), b.Open())
	}
	b.Expire(t0.Add(1100 * time.Millisecond))
	if b.Live() != 1 || b.Open() != 1 {
		t.Errorf("after grace: live %d open %d, want 1 and 1", b.Live(), b.Open())
	}
}

func TestPointerReuseAndUnknownSockets(t *testing.T) {
	s := &script{}
	clientHandshake(s, 60)
	s.at(time.Millisecond).ev(st(60, StateEstablished, StateClose, cli, srv))
	// Same address and tuple, new cookie: a new connection.
	s.at(2 * time.Millisecond).ev(st(61, StateClose, StateSynSent, cliSS, srv))
	s.ev(st(61, StateSynSent, StateEstablished, cli, srv))
	// A retransmit for a socket never seen opening: it predates the trace.
	s.ev(Event{Kind: KindRetransmit, Cookie: 62, State: StateEstablished, Local: ap("10.0.0.2:5000"), Remote: srv})
	// A reset from a timewait sock of an emitted connection: nothing to add.
	s.at(5 * time.Second).ev(Event{Kind: KindResetSent, Cookie: 60, State: StateTimeWait, Local: cli, Remote: srv})
	got := run(s, 6*time.Second)
	if len(got) != 3 {
		t.Fatalf("%d records, want 3", len(got))
	}
	check(t, got[60], OutcomeClosed, ClosedByNone)
	check(t, got[61], OutcomeOpen, ClosedByNone)
	check(t, got[62], OutcomeOpen, ClosedByNone, FlagDataRetransmitted, FlagPreexisting)
	if got[62].Retransmits.Data != 1 {
		t.Errorf("preexisting retransmits %+v", got[62].Retransmits)
	}
}

func TestPreexistingOwnerFromClose(t *testing.T) {
	s := &script{}
	e := st(70, StateEstablished, StateFinWait1, cli, srv)
	e.TGID, e.Comm = 300, commOf("redis")
	s.at(0).ev(e)
	s.ev(st(70, StateFinWait1, StateFinWait2, cli, srv))
	s.ev(st(70, StateFinWait2, StateClose, cli, srv))
	c := run(s, time.Second)[70]
	check(t, c, OutcomeTimeWait, ClosedByLocal, FlagTimeWait, FlagPreexisting)
	if c.PID != 300 || c.Comm != "redis" {
		t.Errorf("owner %d %q", c.PID, c.Comm)
	}
}

func TestSynAckRetransmitsThenChild(t *testing.T) {
	s := &script{}
	synack := func(n uint8) Event {
		return Event{Kind: KindSynAckRetransmit, Cookie: 80, ListenerCookie: 1, State: StateListen,
			SntSynAckUs: 1000, NumRetrans: n, NumTimeout: n, Local: srv, Remote: cli}
	}
	// snt_synack = 1 ms on the monotonic clock = 1 ms of script time.
	s.at(1001 * time.Millisecond).ev(synack(0))
	s.at(3001 * time.Millisecond).ev(synack(1))
	e := st(80, StateListen, StateSynRecv, srv, cli)
	s.at(3500 * time.Millisecond).ev(e)
	est := st(80, StateSynRecv, StateEstablished, srv, cli)
	est.HasTCPInfo, est.TotalRetrans, est.HasRTO, est.TotalRTO, est.TotalRTOTimeMs = true, 2, true, 2, 3499
	s.at(3500*time.Millisecond + 20*time.Microsecond).ev(est)
	c := run(s, 4*time.Second)[80]
	check(t, c, OutcomeOpen, ClosedByNone, FlagSynAckRetransmitted, FlagLongSynRecv)
	if c.SynRecvUs != 3499020 || c.SynRecvHow != SynRecvFromSynAck || c.Retransmits.SynAck != 2 {
		t.Errorf("syn_recv %d via %s, synack %d", c.SynRecvUs, c.SynRecvHow, c.Retransmits.SynAck)
	}
	if !c.Start.Equal(t0.Add(time.Millisecond)) || c.Timeline[0].Kind != ItemSynAck {
		t.Errorf("start %s first item %+v", c.Start, c.Timeline[0])
	}
}

func TestAbandonedRequest(t *testing.T) {
	s := &script{}
	s.at(time.Second).ev(Event{Kind: KindSynAckRetransmit, Cookie: 90, SntSynAckUs: 1, NumTimeout: 0, Local: srv, Remote: cli})
	s.at(3 * time.Second).ev(Event{Kind: KindSynAckRetransmit, Cookie: 90, SntSynAckUs: 1, NumTimeout: 1, Local: srv, Remote: cli})
	// The next SYN-ACK was due at 3s + 4s; nothing came.
	var got []Connection
	b := NewBuilder(BuilderConfig{Emit: func(c *Connection) { got = append(got, *c) }})
	for i := range s.events {
		b.Add(&s.events[i])
	}
	b.Expire(t0.Add(7 * time.Second))
	if len(got) != 0 {
		t.Fatalf("request expired before its next SYN-ACK was due")
	}
	b.Expire(t0.Add(8100 * time.Millisecond))
	if len(got) != 1 {
		t.Fatalf("abandoned request not emitted")
	}
	check(t, got[0], OutcomeTimeout, ClosedByNone, FlagSynAckRetransmitted, FlagHandshakeTimeout)
	if got[0].Role != RoleServer || got[0].Retransmits.SynAck != 2 || got[0].End != t0.Add(7*time.Second) {
		t.Errorf("abandoned request record %+v", got[0])
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h Histogram
	for v := int64(1); v <= 1000; v++ {
		h.Add(v * 1000)
	}
	for _, c := range []struct {
		q    float64
		want int64
	}{{0.5, 500_000}, {0.9, 900_000}, {0.99, 990_000}} {
		got := h.Quantile(c.q)
		if diff := float64(got-c.want) / float64(c.want); diff > 0.035 || diff < -0.035 {
			t.Errorf("p%.0f = %d, want %d within 3.5%%", c.q*100, got, c.want)
		}
	}
	if h.Max() != 1_000_000 || h.Count() != 1000 {
		t.Errorf("max %d count %d", h.Max(), h.Count())
	}
	var small Histogram
	small.Add(7)
	if small.Quantile(0.5) != 7 || (&Histogram{}).Quantile(0.5) != -1 {
		t.Errorf("small histogram")
	}
}

func TestDuplicateCookieChildIsNotAConnection(t *testing.T) {
	s := &script{}
	serverHandshake(s, 100, 0) // srtt 0, no retransmits: a SYN cookie child
	// A second ACK validated the same cookie: a second child for the tuple,
	// closed at once because the tuple is taken.
	s.at(400 * time.Microsecond).ev(st(101, StateListen, StateSynRecv, srv, cli))
	s.ev(st(101, StateSynRecv, StateClose, srv, cli))
	got := run(s, time.Second)
	if _, ok := got[101]; ok || len(got) != 1 {
		t.Fatalf("records %v: the discarded twin must not be one", got)
	}
	check(t, got[100], OutcomeOpen, ClosedByNone, FlagSyncookie)
}

func TestMaxConnectionsEvictsOldestAsIncomplete(t *testing.T) {
	var got []Connection
	b := NewBuilder(BuilderConfig{MaxConnections: 100, Emit: func(c *Connection) { got = append(got, *c) }})
	for i := 0; i < 150; i++ {
		ev := st(uint64(1000+i), StateClose, StateSynSent, cliSS, srv)
		ev.Time = t0.Add(time.Duration(i) * time.Millisecond)
		b.Add(&ev)
	}
	if b.Live() > 100 {
		t.Errorf("%d connections followed, cap 100", b.Live())
	}
	if len(got) == 0 || uint64(len(got)) != b.Evicted() {
		t.Fatalf("%d emitted, %d evicted", len(got), b.Evicted())
	}
	for _, c := range got {
		if c.ID >= 1000+50 || c.Outcome != OutcomeOpen || !c.Flags.Has(FlagIncomplete) {
			t.Errorf("evicted %d: outcome %s flags %v; want the oldest, open and incomplete", c.ID, c.Outcome, c.Flags)
		}
	}
}

func TestReusedSocketWhileClosingIsNotLost(t *testing.T) {
	s := &script{}
	clientHandshake(s, 200)
	s.at(time.Millisecond).ev(st(200, StateEstablished, StateClose, cli, srv))
	// The same cookie connects again within the grace period.
	s.at(2 * time.Millisecond).ev(st(200, StateClose, StateSynSent, cliSS, srv))
	s.ev(st(200, StateSynSent, StateEstablished, ap("10.0.0.2:40001"), srv))
	var got []Connection
	b := NewBuilder(BuilderConfig{Clock: Clock{OffsetNs: t0.UnixNano()}, Emit: func(c *Connection) { got = append(got, *c) }})
	for i := range s.events {
		b.Add(&s.events[i])
	}
	b.Expire(t0.Add(2 * time.Second))
	if len(got) != 1 || got[0].Outcome != OutcomeClosed || b.Live() != 1 {
		t.Fatalf("after grace: %d emitted (%v), %d live; want the first closed and the second followed", len(got), got, b.Live())
	}
}

// A socket first seen mid-life after events were dropped may have opened
// during the trace with its opening events among the dropped ones: its
// preexisting record is incomplete. Before any drop it is only preexisting.
func TestPreexistingAfterLossIsIncomplete(t *testing.T) {
	b := NewBuilder(BuilderConfig{Clock: Clock{OffsetNs: t0.UnixNano()}})
	ev := st(5, StateEstablished, StateFinWait1, srv, cli)
	ev.Time = t0
	b.Add(&ev)
	if c := b.conns[5]; !c.Has(FlagPreexisting) || c.Has(FlagIncomplete) {
		t.Fatalf("before any loss: flags %v", c.Flags)
	}
	b.MarkIncomplete()
	ev = st(6, StateEstablished, StateCloseWait, srv, ap("10.0.0.2:40001"))
	ev.Time = t0.Add(time.Second)
	b.Add(&ev)
	if c := b.conns[6]; !c.Has(FlagPreexisting) || !c.Has(FlagIncomplete) {
		t.Errorf("after a loss: flags %v, want preexisting and incomplete", c.Flags)
	}
}

// A state event whose old state is not where the connection was last seen
// means a transition between them was lost (the kernel skipped it): the
// connection is incomplete and the gap is counted.
func TestStateGapIsIncomplete(t *testing.T) {
	b := NewBuilder(BuilderConfig{Clock: Clock{OffsetNs: t0.UnixNano()}})
	for _, ev := range []Event{
		st(9, StateClose, StateSynSent, cliSS, srv),
		// SYN_SENT -> ESTABLISHED lost.
		st(9, StateEstablished, StateFinWait1, cli, srv),
	} {
		ev.Time = t0
		b.Add(&ev)
	}
	if c := b.conns[9]; !c.Has(FlagIncomplete) || b.Gaps() != 1 {
		t.Errorf("flags %v, gaps %d; want incomplete and 1", c.Flags, b.Gaps())
	}
	ok := st(10, StateClose, StateSynSent, cliSS, srv)
	ok.Time = t0
	b.Add(&ok)
	ok = st(10, StateSynSent, StateEstablished, ap("10.0.0.2:40002"), srv)
	b.Add(&ok)
	if c := b.conns[10]; c.Has(FlagIncomplete) || b.Gaps() != 1 {
		t.Errorf("unbroken sequence: flags %v, gaps %d", c.Flags, b.Gaps())
	}
}
