// Package html renders a recording as one self-contained HTML page: the
// story in words, time series and distributions drawn as SVG, a waterfall
// of the flagged connections with their timelines, and the summary's
// tables. The page fetches nothing (inline CSS, a little inline script, no
// fonts): it opens offline, from a file, in any browser.
//
// A Report is fed the export's connections one at a time, as the reader
// streams them (Connection); it keeps tallies and a bounded set of
// connections, so that its memory and the page's size stay bounded
// whatever the size of the recording. Write renders the page from them and
// the rest of the recording, its sample records included (the reader keeps
// those: a few hundred bytes a tick). No I/O but the io.Writer given
// (file.go: Read and WriteFile do the reading and writing).
package html

import (
	"math/rand/v2"
	"time"

	"github.com/tcpscope/tcpscope/output"
	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/findings"
)

// Defaults of Options' limits.
const (
	DefaultMaxDrawn  = 1000 // flagged connections drawn in the waterfall
	DefaultMaxOthers = 1000 // unflagged connections kept for "show all"
)

// Options says what the page shows beyond the export.
type Options struct {
	// Command is the traced command line (tcpscope run); the meta
	// record's is used when empty.
	Command []string
	// ExitStatus is the command's exit status, nil when not known.
	ExitStatus *int
	// Intro, when set, says in a few sentences what was recorded (the
	// demo's load), above the story.
	Intro string
	// Legend is the demo's table of injected faults and findings.
	Legend []output.LegendRow
	// MaxDrawn bounds the flagged connections drawn; MaxOthers the
	// unflagged ones kept to be shown on demand. 0 means the default.
	MaxDrawn, MaxOthers int
}

// Report collects what the page shows while the export is read.
type Report struct {
	opts    Options
	stats   *tracer.Stats
	acc     *findings.Accumulator
	brief   []brief // every connection, in 24 bytes, for the time series
	hist    histograms
	flagged int // connections with a flag that matters
	drawn   reservoir
	others  reservoir
	resets  map[string]int // resets sent by flagged connections, by reason
}

// brief is what the time series need of a connection.
type brief struct {
	start, end int64 // unix nanoseconds
	flags      tracer.FlagSet
	outcome    tracer.Outcome
	pre        bool // open before tracing: its start is not an opening
}

// New returns an empty report.
func New(opts Options) *Report {
	if opts.MaxDrawn <= 0 {
		opts.MaxDrawn = DefaultMaxDrawn
	}
	if opts.MaxOthers <= 0 {
		opts.MaxOthers = DefaultMaxOthers
	}
	// A fixed seed: the same export gives the same page.
	return &Report{opts: opts, stats: tracer.NewStats(), acc: findings.New(),
		hist:   newHistograms(),
		drawn:  reservoir{max: opts.MaxDrawn, rng: rand.New(rand.NewPCG(1, 2))},
		others: reservoir{max: opts.MaxOthers, rng: rand.New(rand.NewPCG(3, 4))},
		resets: map[string]int{}}
}

// Connection takes one connection of the export; c may be reused once it
// returns. It never fails: its error is for output.ReadOptions.Connection.
func (r *Report) Connection(c *tracer.Connection) error {
	r.stats.Add(c)
	r.acc.Add(c)
	r.brief = append(r.brief, brief{start: c.Start.UnixNano(), end: c.End.UnixNano(), flags: c.Flags,
		outcome: c.Outcome, pre: c.Has(tracer.FlagPreexisting)})
	r.hist.add(c)
	if !c.Flagged() {
		r.others.offer(c, false)
		return nil
	}
	r.flagged++
	for i := range c.Timeline {
		if it := &c.Timeline[i]; it.Kind == tracer.ItemResetSent && it.HasReason {
			r.resets[it.Reason.String()]++
			break
		}
	}
	r.drawn.offer(c, true)
	return nil
}

// reservoir keeps an even sample of up to max connections of a stream
// (Algorithm R): a big recording's waterfall shows its whole span, not
// only its first minutes.
type reservoir struct {
	max  int
	seen int
	rows []row
	rng  *rand.Rand
}

func (v *reservoir) offer(c *tracer.Connection, flagged bool) {
	v.seen++
	if len(v.rows) < v.max {
		v.rows = append(v.rows, rowOf(c, flagged))
		return
	}
	if i := v.rng.IntN(v.seen); i < v.max {
		v.rows[i] = rowOf(c, flagged)
	}
}

// span is the recording's time range: from the meta record's start (or
// the first connection's) to the summary's end (or the last connection's).
func (r *Report) span(rec *output.Recording) (time.Time, time.Time) {
	start, end := rec.Meta.Start, r.stats.End
	if rec.Summary != nil {
		start, end = rec.Summary.Start, rec.Summary.End
	}
	if start.IsZero() || !r.stats.Start.IsZero() && r.stats.Start.Before(start) {
		start = r.stats.Start
	}
	if r.stats.End.After(end) {
		end = r.stats.End
	}
	if !end.After(start) {
		end = start.Add(time.Second)
	}
	return start, end
}

// extra is the summary's kernel-side part, and the findings computed from
// the connections as `tcpscope report` does.
func (r *Report) extra(rec *output.Recording, start time.Time) output.Extra {
	x := output.Extra{End: r.stats.End}
	if rec.Summary != nil {
		x = rec.Summary.Extra()
	}
	x.Listeners = rec.Listeners
	x.Findings = r.acc.Finish(output.FindingsEnv(start, x))
	return x
}
