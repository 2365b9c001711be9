package html

import (
	"cmp"
	"math"
	"slices"
	"time"

	"github.com/tcpscope/tcpscope/output"
	"github.com/tcpscope/tcpscope/tracer"
)

// maxBins bounds the time axis: a week's recording has as many bars as a
// minute's.
const maxBins = 500

// niceWidths are the bin widths the time axis picks from.
var niceWidths = []time.Duration{
	time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond,
	50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second, time.Minute,
	2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour,
	6 * time.Hour, 12 * time.Hour, 24 * time.Hour,
}

// axis is the page's time axis: n bins of width from start.
type axis struct {
	start time.Time
	width time.Duration
	n     int
}

func newAxis(start, end time.Time, minWidth time.Duration) axis {
	span := end.Sub(start)
	w := niceWidths[len(niceWidths)-1]
	for _, nw := range niceWidths {
		if nw >= minWidth && span/nw < maxBins {
			w = nw
			break
		}
	}
	return axis{start: start, width: w, n: int(span/w) + 1}
}

// bin is the bin of t, clamped to the axis.
func (a axis) bin(t time.Time) int { return a.binNs(t.UnixNano()) }

func (a axis) binNs(ns int64) int {
	i := int((ns - a.start.UnixNano()) / int64(a.width))
	return min(max(i, 0), a.n-1)
}

// series is one named line or stack layer over the axis's bins (or over
// the histograms' bins).
type series struct {
	Name   string
	Color  string
	Values []float64
}

// connectionSeries counts, per bin, the connections opened and closed by
// outcome (the outcome they ended with) and the flagged ones by flag.
// The connections still open at the end are opened but not closed;
// stillOpen counts them.
func (r *Report) connectionSeries(a axis) (opened, closed, flags []series, stillOpen int) {
	byOutcome := func() map[tracer.Outcome][]float64 { return map[tracer.Outcome][]float64{} }
	op, cl := byOutcome(), byOutcome()
	fl := map[tracer.Flag][]float64{}
	add := func(m map[tracer.Outcome][]float64, o tracer.Outcome, i int) {
		if m[o] == nil {
			m[o] = make([]float64, a.n)
		}
		m[o][i]++
	}
	for _, b := range r.brief {
		if !b.pre {
			add(op, b.outcome, a.binNs(b.start))
		}
		if b.outcome == tracer.OutcomeOpen {
			stillOpen++ // it has not ended: its end is the recording's
		} else {
			add(cl, b.outcome, a.binNs(b.end))
		}
		for f := range b.flags.Without(tracer.FlagTimeWait).Without(tracer.FlagPreexisting).All() {
			if fl[f] == nil {
				fl[f] = make([]float64, a.n)
			}
			fl[f][a.binNs(b.end)]++
		}
	}
	for _, o := range tracer.AllOutcomes {
		if op[o] != nil {
			opened = append(opened, series{o.String(), outcomeColor(o), op[o]})
		}
		if cl[o] != nil {
			closed = append(closed, series{o.String(), outcomeColor(o), cl[o]})
		}
	}
	for i, f := range tracer.AllFlags {
		if fl[f] != nil {
			flags = append(flags, series{f.String(), palette[i%len(palette)], fl[f]})
		}
	}
	return opened, closed, flags, stillOpen
}

// maxLines bounds the listeners and destinations drawn as lines: the
// busiest are drawn, the page says how many more there were.
const maxLines = 8

// sampleSeries puts the samples in the axis's bins. A sample covers its
// interval, from Time-Interval to Time: per listener the accept queue
// (the peak over the bins it covers) and the drops (spread evenly over
// them), per destination its TIME_WAIT sockets (the peak). Bins no sample
// covers, before the first one in particular, are empty (NaN), not 0. A
// listener a sample lacks was gone: 0. A destination it lacks is 0 too,
// unless the sample's list was full (tracer.MaxSampleTimeWait): then it
// may just have dropped out of the busiest, and is unknown. left says how
// many listeners and destinations were not drawn.
func sampleSeries(a axis, samples []output.Sample) (queues, drops, timeWait []series, left int) {
	q, d, tw := map[string][]float64{}, map[string][]float64{}, map[string][]float64{}
	get := func(m map[string][]float64, k string) []float64 {
		if m[k] == nil {
			m[k] = emptyBins(a.n)
		}
		return m[k]
	}
	covered, twKnown := make([]bool, a.n), make([]bool, a.n)
	for i := range samples {
		s := &samples[i]
		full := len(s.TimeWait) >= tracer.MaxSampleTimeWait
		a.cover(s, func(b int, _ float64) {
			covered[b] = true
			twKnown[b] = twKnown[b] || !full
		})
		for _, l := range s.Listeners {
			k := netText(l.NetNS, l.Addr, l.Port)
			v, dv := get(q, k), get(d, k)
			a.cover(s, func(b int, share float64) {
				v[b] = peak(v[b], float64(max(l.Queue, l.PeakQueue)))
				dv[b] = peak(dv[b], 0) + share*float64(l.OverflowDrops)
			})
		}
		for _, t := range s.TimeWait {
			v := get(tw, "toward "+netText(t.NetNS, t.RemoteAddr, t.RemotePort))
			a.cover(s, func(b int, _ float64) { v[b] = peak(v[b], float64(t.Count)) })
		}
	}
	fillZeros(q, covered)
	fillZeros(tw, twKnown)
	queues, l1 := busiest(q)
	drops = make([]series, 0, len(queues))
	for _, s := range queues {
		drops = append(drops, series{s.Name + " drops", s.Color, d[s.Name]})
	}
	timeWait, l2 := busiest(tw)
	return queues, drops, timeWait, l1 + l2
}

// netText names a listener or destination: one line per address, whatever
// its backlog did.
func netText(netns uint32, addr string, port uint16) string {
	return output.NetText(netns, addr, port)
}

// emptyBins is a series with no value yet.
func emptyBins(n int) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = math.NaN()
	}
	return v
}

// peak is the larger of a bin's value (NaN when empty) and x.
func peak(v, x float64) float64 {
	if math.IsNaN(v) {
		return x
	}
	return max(v, x)
}

// fillZeros sets the empty bins that known says a sample covered to 0: the
// sample lacked the listener or destination.
func fillZeros(m map[string][]float64, known []bool) {
	for _, v := range m {
		for i := range v {
			if known[i] && math.IsNaN(v[i]) {
				v[i] = 0
			}
		}
	}
}

// cover calls f with each bin sample s's interval overlaps and the share
// of the interval in it.
func (a axis) cover(s *output.Sample, f func(b int, share float64)) {
	to := s.Time.UnixNano()
	from := to - max(s.IntervalMs, 0)*int64(time.Millisecond)
	if to <= from {
		f(a.binNs(to), 1)
		return
	}
	first, last := a.binNs(from), a.binNs(to-1)
	w, origin := int64(a.width), a.start.UnixNano()
	for b := first; b <= last; b++ {
		lo := max(from, origin+int64(b)*w)
		hi := min(to, origin+int64(b+1)*w)
		if b == first {
			lo = from // clamped to the axis: the bin takes what is before it
		}
		if b == last {
			hi = to
		}
		f(b, float64(hi-lo)/float64(to-from))
	}
}

// busiest returns the maxLines series with the highest peaks, and how
// many were left out.
func busiest(m map[string][]float64) ([]series, int) {
	out := make([]series, 0, len(m))
	for k, v := range m {
		out = append(out, series{Name: k, Values: v})
	}
	peak := func(s series) float64 { return sliceMax(s.Values) }
	slices.SortFunc(out, func(a, b series) int {
		if c := cmp.Compare(peak(b), peak(a)); c != 0 {
			return c
		}
		return cmp.Compare(a.Name, b.Name)
	})
	left := max(len(out)-maxLines, 0)
	out = out[:min(len(out), maxLines)]
	for i := range out {
		out[i].Color = palette[i%len(palette)]
	}
	return out, left
}

// palette colours series that have no colour of their own.
var palette = []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"}

func outcomeColor(o tracer.Outcome) string {
	switch o {
	case tracer.OutcomeClosed:
		return "#4c9a2a"
	case tracer.OutcomeTimeWait:
		return "#a3c985"
	case tracer.OutcomeOpen:
		return "#7aa6d6"
	case tracer.OutcomeReset:
		return "#d9534f"
	case tracer.OutcomeRefused:
		return "#f0ad4e"
	case tracer.OutcomeTimeout:
		return "#9b59b6"
	case tracer.OutcomeAbandoned:
		return "#b08d57"
	}
	return "#555555"
}
