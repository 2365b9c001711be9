package tracer

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

// A reset the listener itself sends (state LISTEN, the listener's cookie)
// ends the request it matches, becomes its own record when nothing matches,
// and only annotates a connection that already closed.
func TestListenerResets(t *testing.T) {
	const listener = 1
	rst := func(local, remote netip.AddrPort) Event {
		return Event{Kind: KindResetSent, Cookie: listener, State: StateListen, HasReason: true, Reason: 2, Local: local, Remote: remote}
	}
	s := &script{}
	l := st(listener, StateClose, StateListen, srv, ap("0.0.0.0:0"))
	l.TGID, l.Comm = 200, commOf("nginx")
	s.at(0).ev(l)
	// A request known from its SYN-ACK retransmit, dropped with a reset.
	req := ap("10.0.0.3:40001")
	s.at(time.Second).ev(Event{Kind: KindSynAckRetransmit, Cookie: 90, ListenerCookie: listener, SntSynAckUs: 1, Local: srv, Remote: req})
	s.at(1500 * time.Millisecond).ev(rst(srv, req))
	// A second reset toward the same client (its next segment) must not
	// close the record twice.
	s.at(1510 * time.Millisecond).ev(rst(srv, req))
	// A segment nothing matches.
	stray := ap("10.0.0.4:40002")
	s.at(1600 * time.Millisecond).ev(rst(srv, stray))
	// A connection that closed a moment before a late segment of its own.
	serverHandshake(s, 11, 100)
	s.at(2 * time.Second).ev(st(11, StateEstablished, StateCloseWait, srv, cli))
	s.at(2*time.Second + time.Millisecond).ev(st(11, StateCloseWait, StateLastAck, srv, cli))
	s.at(2*time.Second + 2*time.Millisecond).ev(st(11, StateLastAck, StateClose, srv, cli))
	s.at(2*time.Second + 3*time.Millisecond).ev(rst(srv, cli))
	var listeners []Listener
	out := map[uint64]Connection{}
	emits := 0
	b := NewBuilder(BuilderConfig{Clock: Clock{OffsetNs: t0.UnixNano()},
		Emit: func(c *Connection) {
			emits++
			cp := *c
			cp.Timeline = slices.Clone(c.Timeline)
			out[c.ID] = cp
		},
		EmitListener: func(l *Listener) { listeners = append(listeners, *l) }})
	for i := range s.events {
		b.Expire(s.events[i].Time)
		b.Add(&s.events[i])
	}
	b.Finish(t0.Add(10 * time.Second))
	if len(out) != 3 || len(listeners) != 1 {
		t.Fatalf("%d records, %d listeners; want request, stray reset and connection, one listener: %v", len(out), len(listeners), out)
	}
	if emits != 3 {
		t.Errorf("%d records emitted, want 3", emits)
	}
	if listeners[0].Resets != 4 || listeners[0].Abandoned != 0 {
		t.Errorf("listener resets %d abandoned %d, want 4 and 0", listeners[0].Resets, listeners[0].Abandoned)
	}
	r := out[90]
	check(t, r, OutcomeReset, ClosedByLocal, FlagSynAckRetransmitted, FlagResetSent)
	if !r.End.Equal(t0.Add(1500*time.Millisecond)) || r.Remote != req {
		t.Errorf("request ended %s toward %s, want at the reset toward %s", r.End, r.Remote, req)
	}
	var strayRec Connection
	for id, c := range out {
		if id >= syntheticIDBase {
			strayRec = c
		}
	}
	check(t, strayRec, OutcomeReset, ClosedByLocal, FlagResetSent)
	if strayRec.Role != RoleServer || strayRec.Remote != stray || strayRec.Local != srv || strayRec.PID != 200 || strayRec.ListenerID != listener {
		t.Errorf("stray reset record: %+v", strayRec)
	}
	c := out[11]
	check(t, c, OutcomeClosed, ClosedByRemote)
	if last := c.Timeline[len(c.Timeline)-1]; last.Kind != ItemResetSent || last.State != StateListen || last.Effect != ResetAfterClose {
		t.Errorf("closed connection's last item %+v, want the listener's reset", last)
	}
}

// A socketless reset answering anything but a SYN is not a refused connect:
// the segment belongs to a connection this end no longer has.
func TestSocketlessResetOfAKnownConnection(t *testing.T) {
	s := &script{}
	clientHandshake(s, 10)
	s.at(time.Second).ev(Event{Kind: KindResetSent, NoSocket: true, HasReason: true, Reason: 1, SegFlags: TCPAck | TCPPsh, Local: srv, Remote: cli})
	s.at(time.Second + 10*time.Microsecond).ev(Event{Kind: KindResetReceived, Cookie: 10, State: StateEstablished, Local: cli, Remote: srv})
	s.at(time.Second + 11*time.Microsecond).ev(st(10, StateEstablished, StateClose, cli, srv))
	s.at(time.Second + 12*time.Microsecond).ev(Event{Kind: KindError, Cookie: 10, Err: 104, State: StateClose, Local: cli, Remote: srv})
	got := run(s, 3*time.Second)
	if len(got) != 2 {
		t.Fatalf("%d records, want client and the server's reset: %v", len(got), got)
	}
	check(t, got[10], OutcomeReset, ClosedByRemote, FlagResetReceived)
	for id, c := range got {
		if id == 10 {
			continue
		}
		check(t, c, OutcomeReset, ClosedByLocal, FlagResetSent)
		if c.Role != RoleServer || c.PeerID != 10 || c.Timeline[0].Detail != DetailNoSocketSegment || c.Timeline[0].Segment != TCPPsh|TCPAck {
			t.Errorf("server-side reset record: %+v", c)
		}
	}
}

func TestTCPFlagsString(t *testing.T) {
	for f, want := range map[TCPFlags]string{0: "", TCPSyn: "SYN", TCPSyn | TCPAck: "SYN|ACK", TCPAck | TCPPsh | TCPFin: "FIN|PSH|ACK"} {
		if got := f.String(); got != want {
			t.Errorf("%#x: %q, want %q", uint8(f), got, want)
		}
	}
	if !TCPSyn.IsSYN() || (TCPSyn | TCPAck).IsSYN() || TCPAck.IsSYN() {
		t.Error("IsSYN: only a bare SYN opens a connection")
	}
}

// An overflow drop seen before its connection joins it by tuple when the
// child appears; one already followed is flagged at once.
func TestOverflowJoinsTheConnection(t *testing.T) {
	s := &script{}
	drop := func(cookie bool) Event {
		return Event{Kind: KindListenOverflow, ListenerCookie: 1, Syncookie: cookie, Backlog: 6, MaxBacklog: 5, Local: srv, Remote: cli}
	}
	s.at(100 * time.Microsecond).ev(drop(true))
	serverHandshake(s, 11, 100)
	s.at(time.Millisecond).ev(drop(false))
	got := run(s, time.Second)
	c := got[11]
	check(t, c, OutcomeOpen, ClosedByNone, FlagListenOverflow)
	var details []Detail
	for _, it := range c.Timeline {
		if it.Kind == ItemListenOverflow {
			details = append(details, it.Detail)
		}
	}
	want := []Detail{DetailOverflowCookie, DetailOverflow}
	if !slices.Equal(details, want) {
		t.Errorf("overflow items %q, want %q", details, want)
	}
}
