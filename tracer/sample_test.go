package tracer

import (
	"testing"
	"time"
)

// samplerRig is a builder fed synthetic events with a sampler and a
// TIME_WAIT tracker wired as a recording wires them.
type samplerRig struct {
	b  *Builder
	s  *Sampler
	tw *TimeWaitTracker
}

func newSamplerRig() *samplerRig {
	r := &samplerRig{s: NewSampler(time.Second, t0), tw: NewTimeWaitTracker()}
	r.b = NewBuilder(BuilderConfig{Clock: Clock{OffsetNs: t0.UnixNano()}, Grace: 100 * time.Millisecond,
		Emit: r.s.Closed, EmitListener: func(*Listener) {},
		OnTimeWait: r.tw.Enter, OnTimeWaitUndone: r.tw.Undo, OnTimeWaitKilled: r.tw.Release})
	return r
}

// feed adds the script's events, expiring as the recorder does.
func (r *samplerRig) feed(s *script) {
	for i := range s.events {
		r.b.Expire(s.events[i].Time)
		r.b.Add(&s.events[i])
	}
	s.events = nil
}

// queues is one 200 ms tick's accept-queue sample of listener 1 on srv.
func (r *samplerRig) queues(at time.Duration, queue uint32, overflows uint64) {
	r.b.Expire(t0.Add(at))
	r.b.SampleQueues(7, []QueueSample{{Cookie: 1, Local: srv, Queue: queue, Backlog: 2}}, overflows, overflows)
	r.s.Watch(r.b)
}

func (r *samplerRig) take(at time.Duration, k Counters) Sample {
	return r.s.Take(t0.Add(at), r.b, k, r.tw)
}

func checkSample(t *testing.T, name string, got Sample, opened, closed, flagged, lost, lostRecords uint64, interval time.Duration) {
	t.Helper()
	if got.Opened != opened || got.Closed != closed || got.Flagged != flagged || got.LostEvents != lost ||
		got.LostRecords != lostRecords || got.Interval != interval {
		t.Errorf("%s: opened %d closed %d flagged %d lost %d/%d over %s; want %d %d %d %d/%d over %s", name,
			got.Opened, got.Closed, got.Flagged, got.LostEvents, got.LostRecords, got.Interval,
			opened, closed, flagged, lost, lostRecords, interval)
	}
}

// TestSamplerIntervals: each sample counts what happened in its own
// interval, and the levels at its end.
func TestSamplerIntervals(t *testing.T) {
	r := newSamplerRig()
	s := &script{}
	listen := st(1, StateClose, StateListen, srv, ap("0.0.0.0:0"))
	listen.MaxBacklog = 2
	s.ev(listen)
	// Interval 1: a connection and its server end, the client left in
	// TIME_WAIT; the listener full at one look, 4 SYNs dropped meanwhile.
	clientHandshake(s, 10)
	serverHandshake(s, 11, 180)
	s.at(10 * time.Millisecond).ev(st(10, StateEstablished, StateFinWait1, cli, srv))
	s.at(10*time.Millisecond + 10*time.Microsecond).ev(st(11, StateEstablished, StateCloseWait, srv, cli))
	s.at(10*time.Millisecond + 20*time.Microsecond).ev(st(10, StateFinWait1, StateFinWait2, cli, srv))
	s.at(11 * time.Millisecond).ev(st(11, StateCloseWait, StateLastAck, srv, cli))
	s.at(11*time.Millisecond + 10*time.Microsecond).ev(st(10, StateFinWait2, StateClose, cli, srv))
	s.at(11*time.Millisecond + 20*time.Microsecond).ev(st(11, StateLastAck, StateClose, srv, cli))
	r.feed(s)
	r.queues(400*time.Millisecond, 3, 4)
	r.queues(800*time.Millisecond, 1, 0)
	first := r.take(time.Second, Counters{Lost: 5, LostRecords: 1})
	checkSample(t, "first", first, 2, 2, 0, 5, 1, time.Second)
	if first.ClosedByOutcome[OutcomeTimeWait] != 1 || first.ClosedByOutcome[OutcomeClosed] != 1 {
		t.Errorf("first: closed by outcome %v", first.ClosedByOutcome)
	}
	want := ListenerSample{NetNS: 7, Local: srv, Queue: 1, PeakQueue: 3, Backlog: 2, OverflowDrops: 4}
	if len(first.Listeners) != 1 || first.Listeners[0] != want {
		t.Errorf("first: listeners %+v, want %+v", first.Listeners, want)
	}
	if len(first.TimeWait) != 1 || first.TimeWait[0] != (TimeWaitCount{NetNS: 7, Remote: srv, Count: 1}) {
		t.Errorf("first: TIME_WAIT %+v, want 1 toward %s", first.TimeWait, srv)
	}

	// Interval 2, 1.2 s long: a refused connect (client and the server's
	// socketless reset), both flagged; the queue drained.
	s.at(1100 * time.Millisecond).ev(st(20, StateClose, StateSynSent, cliSS, srv))
	s.at(1100*time.Millisecond + 10*time.Microsecond).ev(Event{Kind: KindResetSent, NoSocket: true, HasReason: true, Reason: 1, SegFlags: TCPSyn, Local: srv, Remote: cli})
	s.at(1100*time.Millisecond + 20*time.Microsecond).ev(Event{Kind: KindResetReceived, Cookie: 20, State: StateSynSent, Local: cli, Remote: srv})
	s.at(1100*time.Millisecond + 21*time.Microsecond).ev(st(20, StateSynSent, StateClose, cli, srv))
	r.feed(s)
	r.queues(1600*time.Millisecond, 0, 0)
	second := r.take(2200*time.Millisecond, Counters{Lost: 7, LostRecords: 1})
	checkSample(t, "second", second, 2, 2, 2, 2, 0, 1200*time.Millisecond)
	if second.ClosedByOutcome[OutcomeRefused] != 2 {
		t.Errorf("second: closed by outcome %v", second.ClosedByOutcome)
	}
	want = ListenerSample{NetNS: 7, Local: srv, Queue: 0, PeakQueue: 1, Backlog: 2}
	if len(second.Listeners) != 1 || second.Listeners[0] != want {
		t.Errorf("second: listeners %+v, want %+v (peak from the level the interval started with)", second.Listeners, want)
	}

	// Interval 3: the listener closes; it is in this sample, not the next.
	s.at(2500 * time.Millisecond).ev(st(1, StateListen, StateClose, srv, ap("0.0.0.0:0")))
	r.feed(s)
	r.b.Finish(t0.Add(3 * time.Second))
	third := r.take(3*time.Second, Counters{Lost: 7, LostRecords: 1})
	checkSample(t, "third", third, 0, 0, 0, 0, 0, 800*time.Millisecond)
	if len(third.Listeners) != 1 {
		t.Errorf("third: listeners %+v, want the one closed in it", third.Listeners)
	}
	if last := r.take(3100*time.Millisecond, Counters{Lost: 7, LostRecords: 1}); len(last.Listeners) != 0 {
		t.Errorf("after its close: listeners %+v", last.Listeners)
	}
}

// TestSamplerDiscardedTwin: a server child started in one interval and
// discarded as a twin in the next lowers the builder's total; the next
// sample counts 0 opened, not 2^64-1, and the samples sum to the records.
func TestSamplerDiscardedTwin(t *testing.T) {
	s, b := NewSampler(time.Second, t0), &Builder{}
	var sum uint64
	for i, step := range []struct{ started, discarded, want uint64 }{{5, 0, 5}, {5, 1, 0}, {7, 1, 1}} {
		b.started, b.discarded = step.started, step.discarded
		got := s.Take(t0.Add(time.Duration(i+1)*time.Second), b, Counters{}, nil)
		if got.Opened != step.want {
			t.Errorf("sample %d: opened %d, want %d", i+1, got.Opened, step.want)
		}
		sum += got.Opened
	}
	if sum != 6 {
		t.Errorf("samples sum to %d opened, want the 6 records", sum)
	}
}

// TestSamplerDue: an interval ends at the first tick at or past its
// length; 0 takes none.
func TestSamplerDue(t *testing.T) {
	s := NewSampler(time.Second, t0)
	if s.Due(t0.Add(999*time.Millisecond)) || !s.Due(t0.Add(time.Second)) {
		t.Error("a 1 s interval is due from 1 s on")
	}
	if NewSampler(0, t0).Due(t0.Add(time.Hour)) {
		t.Error("interval 0 takes samples")
	}
}

// BenchmarkSamplerClosed is what a sample costs each connection record:
// its counts, no allocation.
func BenchmarkSamplerClosed(b *testing.B) {
	s := NewSampler(time.Second, t0)
	c := &Connection{Outcome: OutcomeTimeWait, Flags: FlagsOf(FlagTimeWait, FlagSynRetransmitted)}
	b.ReportAllocs()
	for b.Loop() {
		s.Closed(c)
	}
}
