package html

import (
	"cmp"
	"fmt"
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
func (r *Report) connectionSeries(a axis) (opened, closed, flags []series) {
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
		add(cl, b.outcome, a.binNs(b.end))
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
	return opened, closed, flags
}

// maxLines bounds the listeners and destinations drawn as lines: the
// busiest are drawn, the page says how many more there were.
const maxLines = 8

// sampleSeries puts the samples in the axis's bins, each at its end: per
// listener the accept queue (the peak in the bin) and the drops (their
// sum), per destination its TIME_WAIT sockets (the peak in the bin). left says how
// many listeners and destinations were not drawn.
func sampleSeries(a axis, samples []output.Sample) (queues, drops, timeWait []series, left int) {
	q, d, tw := map[string][]float64{}, map[string][]float64{}, map[string][]float64{}
	get := func(m map[string][]float64, k string) []float64 {
		if m[k] == nil {
			m[k] = make([]float64, a.n)
		}
		return m[k]
	}
	sampled := make([]bool, a.n)
	for i := range samples {
		s := &samples[i]
		b := a.bin(s.Time)
		sampled[b] = true
		for _, l := range s.Listeners {
			k := fmt.Sprintf("%s:%d backlog %d (netns %d)", l.Addr, l.Port, l.Backlog, l.NetNS)
			v := get(q, k)
			v[b] = max(v[b], float64(l.Queue), float64(l.PeakQueue))
			get(d, k)[b] += float64(l.OverflowDrops)
		}
		for _, t := range s.TimeWait {
			v := get(tw, fmt.Sprintf("toward %s:%d (netns %d)", t.RemoteAddr, t.RemotePort, t.NetNS))
			v[b] = max(v[b], float64(t.Count))
		}
	}
	for _, m := range []map[string][]float64{q, tw} {
		for _, v := range m {
			holdLevels(v, sampled)
		}
	}
	queues, l1 := busiest(q)
	drops = make([]series, 0, len(queues))
	for _, s := range queues {
		drops = append(drops, series{s.Name + " drops", s.Color, d[s.Name]})
	}
	timeWait, l2 := busiest(tw)
	return queues, drops, timeWait, l1 + l2
}

// holdLevels fills the bins no sample fell in with the level before them:
// the bins can be finer than the samples (the connections' time series
// share the axis), and a level holds until the next sample says
// otherwise. A sample that lacks a listener or destination says 0.
func holdLevels(v []float64, sampled []bool) {
	for i := 1; i < len(v); i++ {
		if !sampled[i] {
			v[i] = v[i-1]
		}
	}
}

// busiest returns the maxLines series with the highest peaks, and how
// many were left out.
func busiest(m map[string][]float64) ([]series, int) {
	out := make([]series, 0, len(m))
	for k, v := range m {
		out = append(out, series{Name: k, Values: v})
	}
	peak := func(s series) float64 { return slices.Max(s.Values) }
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
