package html

import (
	"fmt"
	"html/template"
	"slices"
	"strconv"
	"time"

	"github.com/tcpscope/tcpscope/output"
	"github.com/tcpscope/tcpscope/tracer"
)

// charts draws the time series, the sample records' included; notes say
// why one is missing.
func (r *Report) charts(start, end time.Time, samples []output.Sample) ([]chart, []string) {
	a := newAxis(start, end, time.Millisecond)
	opened, closed, flags, stillOpen := r.connectionSeries(a)
	per := "per " + a.width.String()
	note := "Coloured by how each connection ended. Hover a bar for its counts."
	if stillOpen > 0 {
		note += fmt.Sprintf(" Still open at the end, opened but not ended: %s.", thousands(stillOpen))
	}
	cs := []chart{{
		Title:  "Connections opened (up) and ended (down), " + per,
		Note:   note,
		SVG:    barChart(a, "connections opened and ended", "connections", opened, closed, "opened", "ended"),
		Legend: legend(opened)},
	}
	if len(flags) > 0 {
		cs = append(cs, chart{
			Title:  "Flagged connections by flag, " + per,
			Note:   "When each flagged connection ended; a connection with two flags counts under both.",
			SVG:    barChart(a, "flagged connections by flag", "connections", flags, nil, "flags", ""),
			Legend: legend(flags)})
	}
	if len(samples) == 0 {
		return cs, []string{"This export has no sample records (it was made by an older tcpscope): the accept-queue and TIME_WAIT charts need them."}
	}
	queues, drops, tw, left := sampleSeries(a, samples)
	var notes []string
	if left > 0 {
		notes = append(notes, fmt.Sprintf("%d more listeners or destinations are not drawn: the %d busiest of each are.", left, maxLines))
	}
	if len(queues) > 0 {
		cs = append(cs, chart{
			Title:  "Accept queue per listener, and drops",
			Note:   "Lines: connections waiting for accept(), the peak of each sample interval, drawn over the interval. Marks along the bottom: final ACKs dropped because the queue was full, spread evenly over their sample interval. No line: no sample yet.",
			SVG:    lineChart(a, "accept queue per listener", "queued", queues, drops),
			Legend: legend(queues)})
	}
	if len(tw) > 0 {
		cs = append(cs, chart{
			Title:  "TIME_WAIT sockets per destination",
			Note:   "Each holds a local port for 60 s: a line that reaches the usable local ports means connects fail with EADDRNOTAVAIL. A gap: no sample yet, or the destination was not among a sample's busiest " + strconv.Itoa(tracer.MaxSampleTimeWait) + ".",
			SVG:    lineChart(a, "TIME_WAIT per destination", "sockets", tw, nil),
			Legend: legend(tw)})
	}
	return cs, notes
}

// distributions draws the handshake times and the lifetimes.
func (r *Report) distributions() []chart {
	h := &r.hist
	steps := []refLine{{1e6, "1 s: SYN resent once"}, {3e6, "3 s: twice"}}
	var cs []chart
	if hs := histSeries("client handshake", "#1f77b4", &h.handshake); hs != nil {
		cs = append(cs, chart{Title: "Client handshake time (SYN_SENT to ESTABLISHED)",
			Note: "Log scale. A lost SYN or SYN-ACK costs the client the retransmission timeout: handshakes near 1 s and 3 s waited for one or two SYN retransmits.",
			SVG:  histChart("client handshake time", hs, steps)})
	}
	if hs := histSeries("server SYN_RECV", "#ff7f0e", &h.synRecv); hs != nil {
		cs = append(cs, chart{Title: "Server SYN_RECV stay (SYN-ACK to final ACK)",
			Note: "Log scale. Near 1 s and 3 s: the final ACK came only after one or two SYN-ACK retransmits (lost, or dropped by a full accept queue).",
			SVG:  histChart("server SYN_RECV time", hs, []refLine{{1e6, "1 s: SYN-ACK resent once"}, {3e6, "3 s: twice"}})})
	}
	var life []series
	for _, o := range tracer.AllOutcomes {
		if l := h.lifetime[o]; l != nil {
			life = append(life, series{o.String(), outcomeColor(o), counts(l)})
		}
	}
	if len(life) > 0 {
		cs = append(cs, chart{Title: "Connection lifetimes by outcome",
			Note: "Log scale, stacked by how each connection ended (connections open before tracing are left out: their start is unknown).",
			SVG:  histChart("connection lifetimes", life, nil), Legend: legend(life)})
	}
	return cs
}

func histSeries(name, color string, h *logHist) []series {
	v := counts(h)
	if slices.Max(v) == 0 {
		return nil
	}
	return []series{{name, color, v}}
}

func counts(h *logHist) []float64 {
	v := make([]float64, logBins)
	for i, n := range h {
		v[i] = float64(n)
	}
	return v
}

// waterfall lays out the connections kept: flagged ones, then the
// unflagged sample, each sorted by start, on the recording's time axis.
func (r *Report) waterfall(start, end time.Time) waterfall {
	w := waterfall{Flagged: r.flagged, Drawn: len(r.drawn.rows), Others: len(r.others.rows),
		Unflagged: int(r.stats.Connections) - r.flagged,
		Start:     start.Local().Format("15:04:05.000"), Span: end.Sub(start).Round(time.Millisecond).String()}
	span := float64(end.Sub(start).Microseconds())
	seenFlag, seenOutcome := map[string]bool{}, map[string]bool{}
	for _, rows := range [][]row{r.drawn.rows, r.others.rows} {
		rows = slices.Clone(rows)
		slices.SortStableFunc(rows, func(a, b row) int { return a.Start.Compare(b.Start) })
		for i := range rows {
			w.Rows = append(w.Rows, rowViewOf(&rows[i], start, span))
			for _, f := range rows[i].Flags {
				seenFlag[f] = true
			}
			seenOutcome[rows[i].Outcome] = true
		}
	}
	for _, f := range tracer.AllFlags {
		if seenFlag[f.String()] {
			w.FlagNames = append(w.FlagNames, f.String())
		}
	}
	for _, o := range tracer.AllOutcomes {
		if seenOutcome[o.String()] {
			w.Outcomes = append(w.Outcomes, o.String())
		}
	}
	return w
}

// minBar is the narrowest bar, in percent of the axis: a connection of a
// millisecond in a minute's recording still shows, and can be clicked.
const minBar = 0.8

func rowViewOf(r *row, start time.Time, span float64) rowView {
	left := 100 * float64(r.Start.Sub(start).Microseconds()) / span
	width := max(100*float64(r.DurationUs)/span, minBar)
	left = min(max(left, 0), 100-width)
	v := rowView{row: *r, Bar: template.CSS(fmt.Sprintf("left:%.3f%%;width:%.3f%%", left, width))}
	dur := float64(max(r.DurationUs, 1))
	for _, s := range r.Segments {
		v.Segs = append(v.Segs, part{Class: "seg s-" + s.State,
			Style: template.CSS(fmt.Sprintf("left:%.2f%%;width:%.2f%%", 100*float64(s.From)/dur, 100*float64(s.To-s.From)/dur)),
			Title: fmt.Sprintf("%s %s", s.State, output.Duration(s.To-s.From))})
	}
	for _, m := range r.Marks {
		v.Dots = append(v.Dots, part{Class: "mk " + m.Class,
			Style: template.CSS(fmt.Sprintf("left:%.2f%%", min(100*float64(m.At)/dur, 100))), Title: m.Title})
	}
	return v
}
