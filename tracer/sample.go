package tracer

import (
	"cmp"
	"net/netip"
	"slices"
	"time"
)

// Sample is one sampling interval of a recording: what happened in it (the
// counts are increments over the interval) and the levels at its end
// (accept queues, TIME_WAIT sockets). A time axis is drawn from them.
type Sample struct {
	Time     time.Time     // the end of the interval
	Interval time.Duration // its real length
	// Opened counts connections first seen in the interval (server
	// children the kernel destroyed at birth are left out, as they have no
	// record). In the aggregated mode, one never established is first seen
	// by its record, at its end: the kernel sends early records only at
	// ESTABLISHED. Closed counts those whose record was written in it.
	Opened, Closed  uint64
	ClosedByOutcome [AllOutcomesLen]uint64 // indexed by Outcome
	Flagged         uint64                 // closed with a flag that matters (Connection.Flagged)
	// LostEvents and LostRecords: ring-buffer reserves that failed in
	// the interval, for events (per-event mode) and for connection
	// records (aggregated mode).
	LostEvents, LostRecords uint64
	Listeners               []ListenerSample
	TimeWait                []TimeWaitCount
}

// AllOutcomesLen sizes arrays indexed by Outcome.
const AllOutcomesLen = int(OutcomeAbandoned) + 1

// ListenerSample is one listener in a sample.
type ListenerSample struct {
	NetNS     uint32
	Local     netip.AddrPort
	Queue     uint32 // accept queue at the last look of the interval
	PeakQueue uint32 // the largest accept queue seen in the interval
	Backlog   uint32
	// OverflowDrops: final ACKs seen dropped for a full accept queue and
	// SYN drops attributed to the listener, in the interval. Attribution
	// is decided one 200 ms tick late, so a drop may count in the next
	// interval.
	OverflowDrops uint64
}

// TimeWaitCount is the live TIME_WAIT sockets toward one destination.
type TimeWaitCount struct {
	NetNS  uint32
	Remote netip.AddrPort
	Count  int
}

// MaxSampleTimeWait bounds a sample's TIME_WAIT destinations: the ones
// with the most sockets are kept.
const MaxSampleTimeWait = 50

// Sampler cuts a recording into sample intervals. Closed sees every
// connection emitted, Watch runs on every tick while the listeners are
// still followed, and Take ends an interval. It allocates per sample, not
// per connection.
type Sampler struct {
	Interval time.Duration
	start    time.Time
	cur      Sample
	// The builder's and the kernel's running totals at the interval start.
	opened, lost, lostRecords uint64
	listeners                 map[*Listener]*watched
}

// watched is a listener's levels in the current interval.
type watched struct {
	ListenerSample
	dropsAt uint64 // its drop total at the interval start
}

// NewSampler starts the first interval at start.
func NewSampler(interval time.Duration, start time.Time) *Sampler {
	return &Sampler{Interval: interval, start: start, listeners: map[*Listener]*watched{}}
}

// Closed counts a connection whose record is written.
func (s *Sampler) Closed(c *Connection) {
	s.cur.Closed++
	if int(c.Outcome) < len(s.cur.ClosedByOutcome) {
		s.cur.ClosedByOutcome[c.Outcome]++
	}
	if c.Flagged() {
		s.cur.Flagged++
	}
}

// listenerDrops is what a full accept queue turned away so far.
func listenerDrops(l *Listener) uint64 { return l.Overflows + l.SynDropsAttributed() }

// Watch reads the accept queue of every listener followed now (after
// SampleQueues updated them), keeping each one's peak of the interval.
func (s *Sampler) Watch(b *Builder) {
	for _, l := range b.listenerSet {
		w := s.listeners[l]
		if w == nil {
			// A listener first seen now counts its drops from here.
			w = &watched{dropsAt: listenerDrops(l)}
			s.listeners[l] = w
		}
		w.NetNS, w.Local, w.Queue, w.Backlog = l.NetNS, l.Local, l.Queue, l.Backlog
		w.PeakQueue = max(w.PeakQueue, l.Queue)
	}
}

// Due tells whether the interval is over at now.
func (s *Sampler) Due(now time.Time) bool {
	return s.Interval > 0 && now.Sub(s.start) >= s.Interval
}

// Take ends the interval at now and starts the next: b's connection
// totals, the kernel's counters k and the TIME_WAIT tracker's live sockets
// (tw may be nil) complete the counts seen meanwhile.
func (s *Sampler) Take(now time.Time, b *Builder, k Counters, tw *TimeWaitTracker) Sample {
	out := s.cur
	out.Time, out.Interval = now, now.Sub(s.start)
	// A twin discarded after the interval it started in lowers the total
	// (discardTwin): that interval counted it already, so this one counts
	// none, and the high mark stays so that the samples still sum to the
	// records.
	opened := b.started - b.discarded
	out.Opened, s.opened = opened-min(s.opened, opened), max(s.opened, opened)
	out.LostEvents, s.lost = k.Lost-min(s.lost, k.Lost), k.Lost
	out.LostRecords, s.lostRecords = k.LostRecords-min(s.lostRecords, k.LostRecords), k.LostRecords
	out.Listeners = s.takeListeners()
	if tw != nil {
		out.TimeWait = tw.LiveCounts(now, MaxSampleTimeWait)
	}
	s.cur = Sample{}
	s.start = now
	return out
}

// takeListeners ends the interval of every listener watched; a listener
// closed meanwhile is in its last sample.
func (s *Sampler) takeListeners() []ListenerSample {
	if len(s.listeners) == 0 {
		return nil
	}
	out := make([]ListenerSample, 0, len(s.listeners))
	for l, w := range s.listeners {
		drops := listenerDrops(l)
		w.OverflowDrops = drops - min(w.dropsAt, drops)
		out = append(out, w.ListenerSample)
		if !l.End.IsZero() {
			delete(s.listeners, l)
			continue
		}
		w.dropsAt, w.PeakQueue = drops, w.Queue
	}
	slices.SortFunc(out, func(a, b ListenerSample) int {
		if c := cmp.Compare(a.NetNS, b.NetNS); c != 0 {
			return c
		}
		return a.Local.Compare(b.Local)
	})
	return out
}
