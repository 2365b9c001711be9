package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/tcpscope/tcpscope/output"
	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/capture"
	"golang.org/x/term"
)

// liveView shows progress while recording: on a terminal, a panel redrawn
// about once a second under the flagged lines; otherwise a plain status
// line on stderr every interval.
type liveView struct {
	report     io.Writer // flagged lines
	status     io.Writer // panel or status lines
	tty        bool      // status is a terminal: draw the panel
	reportTTY  bool      // report is a terminal too: clear the panel before writing
	color      bool
	interval   time.Duration
	shown      int
	panel      []string
	last       time.Time
	start      time.Time
	prevOpened uint64
	prevClosed uint64
	collapse   output.Collapser // repeats of one failure, counted per second
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func newLiveView(report, status io.Writer, interval time.Duration) *liveView {
	v := &liveView{report: report, status: status, interval: interval, start: time.Now(), last: time.Now(),
		collapse: output.Collapser{Window: time.Second}}
	v.tty = isTerminal(status)
	v.reportTTY = v.tty && isTerminal(report)
	_, noColor := os.LookupEnv("NO_COLOR")
	v.color = v.tty && !noColor
	if v.tty {
		v.interval = time.Second
	}
	return v
}

// line prints one flagged line (or warning) above the panel.
func (v *liveView) line(s string) {
	if v.reportTTY {
		v.clear()
	}
	fmt.Fprintln(v.report, s)
	if v.reportTTY {
		v.redraw()
	}
}

func (v *liveView) clear() {
	if v.shown > 0 {
		// Up to the panel's first line, then erase to the end of the screen.
		fmt.Fprintf(v.status, "\x1b[%dF\x1b[J", v.shown)
		v.shown = 0
	}
}

func (v *liveView) redraw() {
	for _, l := range v.panel {
		fmt.Fprintln(v.status, l)
	}
	v.shown = len(v.panel)
}

// flagged prints a flagged connection's line, or counts it when it repeats
// a failure already shown this second.
func (v *liveView) flagged(c *tracer.Connection, now time.Time) {
	for _, l := range v.collapse.Add(c, now) {
		v.line(l)
	}
}

// tick refreshes the panel, or prints a status line when one is due.
func (v *liveView) tick(now time.Time, snap func(dt time.Duration) output.Live) {
	for _, l := range v.collapse.Flush(now) {
		v.line(l)
	}
	dt := now.Sub(v.last)
	if dt < v.interval {
		return
	}
	v.last = now
	l := snap(dt)
	if !v.tty {
		fmt.Fprintln(v.status, output.StatusLine(l))
		return
	}
	v.clear()
	v.panel = output.PanelLines(l, v.color)
	v.redraw()
}

// finish prints the counts still pending and removes the panel before the
// summary.
func (v *liveView) finish() {
	for _, l := range v.collapse.End(time.Now()) {
		v.line(l)
	}
	if v.tty {
		v.clear()
		v.panel = nil
	}
}

// live turns a recording's snapshot into the numbers shown, with rates
// over the dt since the last one.
func (v *liveView) live(sn capture.Snapshot, dt time.Duration) output.Live {
	opened, closed := sn.Started, sn.Stats.Connections
	l := output.Live{
		Elapsed:      time.Since(v.start),
		OpenedPerS:   float64(opened-v.prevOpened) / dt.Seconds(),
		ClosedPerS:   float64(closed-v.prevClosed) / dt.Seconds(),
		OpenNow:      sn.Open,
		Connections:  closed,
		Flags:        sn.Stats.ByFlag,
		TimeWaitNow:  sn.TimeWaitNow,
		SynRecvP99Us: sn.Stats.SynRecv.Quantile(0.99),
		Lost:         sn.Lost,
	}
	v.prevOpened, v.prevClosed = opened, closed
	if d := sn.TimeWaitWorst; sn.TimeWaitWorstOK && d.Ports > 0 {
		l.TimeWaitWorst = fmt.Sprintf("worst %s -> %s: %d of %d ports", d.Key.Local, d.Key.Remote, d.Now, d.Ports)
	}
	return l
}
