package tracer

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

// twCalls records what a builder tells its TIME_WAIT tracker.
type twCalls struct {
	entered []time.Time
	killed  []time.Time
	undone  []time.Time
	tracker *TimeWaitTracker
}

func runTW(s *script, finishAt time.Duration, rfc1337 bool) (map[uint64]Connection, *twCalls) {
	out := map[uint64]Connection{}
	calls := &twCalls{tracker: NewTimeWaitTracker()}
	b := NewBuilder(BuilderConfig{Clock: Clock{OffsetNs: t0.UnixNano()},
		Emit: func(c *Connection) {
			cp := *c
			cp.Timeline = slices.Clone(c.Timeline)
			out[c.ID] = cp
		},
		OnTimeWait: func(netns uint32, local, remote netip.AddrPort, at time.Time) {
			calls.entered = append(calls.entered, at)
			calls.tracker.Enter(netns, local, remote, at)
		},
		OnTimeWaitUndone: func(netns uint32, local, remote netip.AddrPort, entered time.Time) {
			calls.undone = append(calls.undone, entered)
			calls.tracker.Undo(netns, local, remote, entered)
		},
		OnTimeWaitKilled: func(netns uint32, local, remote netip.AddrPort, entered, at time.Time) {
			calls.killed = append(calls.killed, at)
			calls.tracker.Release(netns, local, remote, entered, at)
		},
		RFC1337: func(uint32) bool { return rfc1337 },
	})
	for i := range s.events {
		b.Expire(s.events[i].Time)
		b.Add(&s.events[i])
	}
	b.Finish(t0.Add(finishAt))
	return out, calls
}

// clientFirstClose: the client (10) closes first and enters TIME_WAIT at
// 11.01 ms; the server (11) closes at 11.02 ms.
func clientFirstClose(s *script) {
	clientHandshake(s, 10)
	serverHandshake(s, 11, 180)
	s.at(10 * time.Millisecond).ev(st(10, StateEstablished, StateFinWait1, cli, srv))
	s.at(10*time.Millisecond + 10*time.Microsecond).ev(st(11, StateEstablished, StateCloseWait, srv, cli))
	s.at(10*time.Millisecond + 20*time.Microsecond).ev(st(10, StateFinWait1, StateFinWait2, cli, srv))
	s.at(11 * time.Millisecond).ev(st(11, StateCloseWait, StateLastAck, srv, cli))
	s.at(11*time.Millisecond + 10*time.Microsecond).ev(st(10, StateFinWait2, StateClose, cli, srv))
	s.at(11*time.Millisecond + 20*time.Microsecond).ev(st(11, StateLastAck, StateClose, srv, cli))
}

const twClosedAt = 11*time.Millisecond + 10*time.Microsecond

// A socket that reaches CLOSE from FIN_WAIT2 and then sends a reset
// (tcp_rcv_state_process() aborting on data after close(): tcp_done(),
// then TCP_ABORT_ON_DATA) never held a TIME_WAIT.
func TestAbortOnDataIsNoTimeWait(t *testing.T) {
	s := &script{}
	clientHandshake(s, 10)
	s.at(10 * time.Millisecond).ev(st(10, StateEstablished, StateFinWait1, cli, srv))
	s.at(11 * time.Millisecond).ev(st(10, StateFinWait1, StateFinWait2, cli, srv))
	s.at(11*time.Millisecond + time.Microsecond).ev(st(10, StateFinWait2, StateClose, cli, srv))
	s.at(11*time.Millisecond + 5*time.Microsecond).ev(Event{Kind: KindResetSent, Cookie: 10, State: StateClose, HasReason: true, Reason: 8, Local: cli, Remote: srv})
	got, calls := runTW(s, 5*time.Second, false)
	check(t, got[10], OutcomeReset, ClosedByLocal, FlagResetSent)
	// Told at the close (warnings must not wait), taken back at the
	// conclusion.
	if len(calls.entered) != len(calls.undone) || calls.tracker.Live() != 0 {
		t.Errorf("TIME_WAIT entries %v, undone %v, tracker live %d; want each entry undone", calls.entered, calls.undone, calls.tracker.Live())
	}
	// The TIME_WAIT table shows each destination's peak: the entry taken
	// back must not count there either.
	if d := calls.tracker.Top(1, t0.Add(time.Second)); len(d) == 1 && (d[0].Total != 0 || d[0].Peak != 0) {
		t.Errorf("tracker counts %d entries, peak %d; want 0 and 0", d[0].Total, d[0].Peak)
	}
}

// A reset from the other end kills the client's timewait sock: the
// listener answering the timewait sock's late ACK (TCP_FLAGS), while the
// client's record waits for its grace period or after it was written.
func TestTimeWaitKilledByPeerReset(t *testing.T) {
	listenerRST := Event{Kind: KindResetSent, Cookie: 1, State: StateListen, HasReason: true, Reason: 6, SegFlags: TCPAck, Local: srv, Remote: cli}
	for _, tc := range []struct {
		name    string
		at      time.Duration
		rfc1337 bool
		killed  bool // the record says so (the reset came within its grace period)
		freed   bool // the tracker released the port
	}{
		{"in-grace", 500 * time.Millisecond, false, true, true},
		{"written", 5 * time.Second, false, false, true},
		{"rfc1337", 500 * time.Millisecond, true, false, false},
		{"after-60s", 61 * time.Second, false, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &script{}
			clientFirstClose(s)
			s.at(tc.at).ev(listenerRST)
			got, calls := runTW(s, 70*time.Second, tc.rfc1337)
			c := got[10]
			if !slices.Equal(calls.entered, []time.Time{t0.Add(twClosedAt)}) {
				t.Errorf("TIME_WAIT entries %v, want one at the close", calls.entered)
			}
			if tc.killed {
				check(t, c, OutcomeTimeWait, ClosedByLocal, FlagTimeWait, FlagTimeWaitKilled)
				last := c.Timeline[len(c.Timeline)-1]
				if last.Kind != ItemTimeWaitKilled || !last.At.Equal(t0.Add(tc.at)) || !last.HasReason || last.Reason != 6 || last.Detail != DetailTimeWaitKill {
					t.Errorf("last item %+v, want the kill at the reset", last)
				}
				if tw := c.Timeline[len(c.Timeline)-2]; tw.Kind != ItemTimeWait || tw.Detail != DetailTimeWaitHanded || !tw.At.Equal(t0.Add(twClosedAt)) {
					t.Errorf("item before the kill %+v, want TIME_WAIT at the close", tw)
				}
			} else {
				check(t, c, OutcomeTimeWait, ClosedByLocal, FlagTimeWait)
			}
			if want := map[bool]int{true: 1}[tc.freed]; len(calls.killed) != want {
				t.Errorf("%d kills told the tracker, want %d", len(calls.killed), want)
			}
			// The tracker's view just after the reset.
			dests := calls.tracker.Top(1, t0.Add(tc.at+time.Millisecond))
			live := 0
			if len(dests) == 1 {
				live = dests[0].Now
			}
			if want := map[bool]int{false: 1, true: 0}[tc.freed]; tc.at < TimeWaitLen && live != want {
				t.Errorf("tracker: %d live TIME_WAIT after the reset, want %d", live, want)
			}
		})
	}
}

// A timewait sock in its FIN_WAIT2 substate that gets new data answers
// with a reset (TCP_TIMEWAIT_SOCKET) and is destroyed.
func TestTimeWaitSockResetKillsIt(t *testing.T) {
	s := &script{}
	clientHandshake(s, 10)
	s.at(10 * time.Millisecond).ev(st(10, StateEstablished, StateFinWait1, cli, srv))
	s.at(11 * time.Millisecond).ev(st(10, StateFinWait1, StateFinWait2, cli, srv))
	s.at(11*time.Millisecond + time.Microsecond).ev(st(10, StateFinWait2, StateClose, cli, srv))
	s.at(20 * time.Millisecond).ev(Event{Kind: KindResetSent, Cookie: 10, State: StateTimeWait, HasReason: true, Reason: 9, Local: cli, Remote: srv})
	got, calls := runTW(s, 5*time.Second, false)
	check(t, got[10], OutcomeTimeWait, ClosedByLocal, FlagTimeWait, FlagTimeWaitKilled)
	if len(calls.entered) != 1 || len(calls.killed) != 1 || calls.tracker.Live() != 0 {
		t.Errorf("entries %v kills %v live %d; want one each and none live", calls.entered, calls.killed, calls.tracker.Live())
	}
}

// Ends in two namespaces (a veth pair) are linked by the reversed tuple.
func TestPeersAcrossNamespaces(t *testing.T) {
	s := &script{}
	clientFirstClose(s)
	for i := range s.events {
		if s.events[i].Cookie == 11 {
			s.events[i].NetNS = 8
		}
	}
	got := run(s, 5*time.Second)
	if got[10].PeerID != 11 || got[11].PeerID != 10 {
		t.Errorf("peers %d/%d, want 11/10", got[10].PeerID, got[11].PeerID)
	}
}

// A refused connect across namespaces: the server's socketless reset
// record and the client are linked.
func TestRefusedAcrossNamespaces(t *testing.T) {
	s := &script{}
	e := st(10, StateClose, StateSynSent, cliSS, srv)
	s.at(0).ev(e)
	s.at(50 * time.Microsecond).ev(Event{Kind: KindResetSent, NoSocket: true, HasReason: true, Reason: 1, SegFlags: TCPSyn, Local: srv, Remote: cli, NetNS: 8})
	s.at(60 * time.Microsecond).ev(Event{Kind: KindResetReceived, Cookie: 10, State: StateSynSent, Local: cli, Remote: srv})
	s.at(61 * time.Microsecond).ev(st(10, StateSynSent, StateClose, cli, srv))
	got := run(s, 5*time.Second)
	if len(got) != 2 {
		t.Fatalf("%d records: %v", len(got), got)
	}
	for id, c := range got {
		if id == 10 {
			continue
		}
		if c.PeerID != 10 || got[10].PeerID != id {
			t.Errorf("peers %d/%d, want linked", got[10].PeerID, c.PeerID)
		}
	}
}

// Identical tuples in unrelated namespaces are linked only when their
// lifetimes overlap and only one candidate exists.
func TestSameTupleUnrelatedNamespaces(t *testing.T) {
	ev := func(s *script, at time.Duration, netns uint32, e Event) {
		e.NetNS = netns
		s.at(at).ev(e)
	}
	t.Run("one after the other", func(t *testing.T) {
		s := &script{}
		// Namespace 7: a client whose server is not traced, closed at 11 ms.
		ev(s, 0, 7, st(10, StateClose, StateSynSent, cliSS, srv))
		ev(s, time.Millisecond, 7, st(10, StateSynSent, StateEstablished, cli, srv))
		ev(s, 10*time.Millisecond, 7, st(10, StateEstablished, StateFinWait1, cli, srv))
		ev(s, 11*time.Millisecond, 7, st(10, StateFinWait1, StateClose, cli, srv))
		// 50 ms later, while that record waits for its grace period,
		// namespace 8 has a server with the reversed tuple.
		ev(s, 50*time.Millisecond, 8, st(21, StateListen, StateSynRecv, srv, cli))
		got := run(s, 5*time.Second)
		if got[10].PeerID != 0 || got[21].PeerID != 0 {
			t.Errorf("peers 10->%d 21->%d, want none", got[10].PeerID, got[21].PeerID)
		}
	})
	t.Run("two candidates", func(t *testing.T) {
		s := &script{}
		ev(s, 0, 9, st(30, StateClose, StateSynSent, cliSS, srv))
		ev(s, 10*time.Microsecond, 9, st(30, StateSynSent, StateEstablished, cli, srv))
		ev(s, 20*time.Microsecond, 10, st(40, StateClose, StateSynSent, cliSS, srv))
		ev(s, 30*time.Microsecond, 10, st(40, StateSynSent, StateEstablished, cli, srv))
		ev(s, 40*time.Microsecond, 8, st(21, StateListen, StateSynRecv, srv, cli))
		got := run(s, 5*time.Second)
		if got[21].PeerID != 0 || got[30].PeerID != 0 || got[40].PeerID != 0 {
			t.Errorf("peers 21->%d 30->%d 40->%d, want none", got[21].PeerID, got[30].PeerID, got[40].PeerID)
		}
	})
}
