package output

import (
	"fmt"

	"github.com/tcpscope/tcpscope/tracer"
)

// AppendSampleJSON appends one sample record (no newline); withType false
// leaves out its "type" (an entry of a .json document's "samples").
func AppendSampleJSON(b []byte, s *tracer.Sample, withType bool) []byte {
	o := newObj(b)
	if withType {
		o.str("type", RecordSample)
	}
	o.time("time", s.Time)
	o.int("interval_ms", s.Interval.Milliseconds())
	o.uint("opened", s.Opened)
	o.uint("closed", s.Closed)
	o.key("closed_by_outcome")
	byOutcome := newObj(o.b)
	for _, oc := range tracer.AllOutcomes {
		if n := s.ClosedByOutcome[oc]; n > 0 {
			byOutcome.uint(oc.String(), n)
		}
	}
	o.b = byOutcome.end()
	o.uint("flagged", s.Flagged)
	o.uint("lost_events", s.LostEvents)
	o.uint("lost_records", s.LostRecords)
	if len(s.Listeners) > 0 {
		o.key("listeners")
		o.b = append(o.b, '[')
		for i := range s.Listeners {
			if i > 0 {
				o.b = append(o.b, ',')
			}
			o.b = appendSampleListener(o.b, &s.Listeners[i])
		}
		o.b = append(o.b, ']')
	}
	if len(s.TimeWait) > 0 {
		o.key("time_wait")
		o.b = append(o.b, '[')
		for i, t := range s.TimeWait {
			if i > 0 {
				o.b = append(o.b, ',')
			}
			w := newObj(o.b)
			w.uint("netns", uint64(t.NetNS))
			w.addr("remote_addr", t.Remote.Addr())
			w.uint("remote_port", uint64(t.Remote.Port()))
			w.int("count", int64(t.Count))
			o.b = w.end()
		}
		o.b = append(o.b, ']')
	}
	return o.end()
}

func appendSampleListener(b []byte, l *tracer.ListenerSample) []byte {
	o := newObj(b)
	o.uint("netns", uint64(l.NetNS))
	o.addrOrNull("addr", l.Local.Addr())
	o.uint("port", uint64(l.Local.Port()))
	o.uint("queue", uint64(l.Queue))
	o.uint("peak_queue", uint64(l.PeakQueue))
	o.uint("backlog", uint64(l.Backlog))
	o.uint("overflow_drops", l.OverflowDrops)
	return o.end()
}

// WriteSample adds one sample: a line in JSONL, an entry of the
// "samples" array of a .json document.
func (e *Export) WriteSample(s *tracer.Sample) error {
	e.records++
	if !e.jsonl {
		e.samples = AppendSampleJSON(append(e.samples, ','), s, false)
		return nil
	}
	e.buf = append(AppendSampleJSON(e.buf, s, true), '\n')
	if len(e.buf) >= e.flushSize() {
		return e.Flush()
	}
	return nil
}

// checkSample refuses what the writer could not write back.
func checkSample(s *Sample) error {
	if err := checkTimes(s.Time); err != nil {
		return err
	}
	if s.IntervalMs < 0 {
		return fmt.Errorf("a negative interval_ms %d", s.IntervalMs)
	}
	for _, t := range s.TimeWait {
		if t.Count < 0 {
			return fmt.Errorf("time_wait toward %s: a negative count", t.RemoteAddr)
		}
	}
	return nil
}
