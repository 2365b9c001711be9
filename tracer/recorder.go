package tracer

import (
	"context"
	"errors"
	"time"
)

// Recorder runs the tracing loop: events from the tracer into the builder,
// periodic expiry, and callbacks for whoever renders. Everything runs on
// the goroutine that calls Run.
type Recorder struct {
	Tracer  *Tracer
	Builder *Builder
	// OnEvent, when set, sees every event before the builder does.
	OnEvent func(*Event) error
	// OnTick runs about every TickInterval and once more at the end.
	OnTick func(now time.Time) error
	// OnSample runs before each OnTick, and once more before the builder
	// finishes at the end, while every listener is still followed.
	OnSample     func(now time.Time)
	TickInterval time.Duration
	// OnNetNS, when set, sees events of each network namespace until it
	// returns true for one of them: the namespace is then known.
	OnNetNS func(*Event) bool
	// DecodeErrors counts records that could not be decoded; each is an
	// event lost, so it marks the connections followed incomplete too.
	DecodeErrors uint64
	// Events counts events read, by kind.
	Events [8]uint64
	lost   uint64
	netns  map[uint32]bool // namespaces OnNetNS is done with
	lastNS uint32
}

// checkLoss flags every connection followed now as incomplete when events
// were dropped since the last look (ring buffer full, unreadable packets,
// recursion skips no program handled, records that did not decode): any
// of them may have lost one.
func (r *Recorder) checkLoss() {
	c, err := r.Tracer.Counters()
	if err != nil {
		return
	}
	if n := c.Dropped() + r.DecodeErrors; n != r.lost {
		r.lost = n
		r.Builder.MarkIncomplete()
	}
}

// DefaultTickInterval is the recorder's tick when TickInterval is 0: the
// accept queues are looked at, and samples cut, on it.
const DefaultTickInterval = 200 * time.Millisecond

// Run traces until ctx ends, then detaches, drains the ring buffer, and
// hands every connection still followed to the builder's Emit.
func (r *Recorder) Run(ctx context.Context) error {
	if r.TickInterval == 0 {
		r.TickInterval = DefaultTickInterval
	}
	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		select {
		case <-ctx.Done():
			r.Tracer.Stop()
		case <-stopped:
		}
	}()
	var ev Event
	r.netns = map[uint32]bool{}
	next := time.Now().Add(r.TickInterval)
	var n uint32
	for {
		err := r.Tracer.Read(&ev)
		switch {
		case err == nil:
			if err := r.handle(&ev); err != nil {
				return err
			}
		case errors.Is(err, ErrClosed):
			return r.finish(time.Now())
		case errors.Is(err, ErrNoEvent):
		default:
			r.DecodeErrors++
		}
		// Look at the clock every 256 events, or when idle.
		if n++; n&255 != 0 && err == nil {
			continue
		}
		if now := time.Now(); now.After(next) {
			next = now.Add(r.TickInterval)
			if err := r.periodic(now); err != nil {
				return err
			}
		}
	}
}

// handle counts one event, shows it to OnNetNS and OnEvent, and gives it
// to the builder.
func (r *Recorder) handle(ev *Event) error {
	if int(ev.Kind) < len(r.Events) {
		r.Events[ev.Kind]++
	}
	if r.OnNetNS != nil && ev.NetNS != r.lastNS {
		// Consecutive events are mostly of one namespace.
		if r.netns[ev.NetNS] || r.OnNetNS(ev) {
			r.netns[ev.NetNS] = true
			r.lastNS = ev.NetNS
		}
	}
	if r.OnEvent != nil {
		if err := r.OnEvent(ev); err != nil {
			return err
		}
	}
	r.Builder.Add(ev)
	return nil
}

// periodic is the work of each tick: loss check, expiry, kernel samples,
// then OnTick.
func (r *Recorder) periodic(now time.Time) error {
	r.checkLoss()
	r.Builder.Expire(now)
	if r.OnSample != nil {
		r.OnSample(now)
	}
	if r.OnTick != nil {
		return r.OnTick(now)
	}
	return nil
}

// finish runs once the ring buffer is drained after Stop: a last loss
// check and sample while every listener is still followed, then the
// builder hands out what it still follows, and a last OnTick.
func (r *Recorder) finish(now time.Time) error {
	r.checkLoss()
	if r.OnSample != nil {
		r.OnSample(now)
	}
	r.Builder.Finish(now)
	if r.OnTick != nil {
		return r.OnTick(now)
	}
	return nil
}
