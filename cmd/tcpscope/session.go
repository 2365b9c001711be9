package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"time"

	"github.com/tcpscope/tcpscope/output"
	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/capture"
	"github.com/tcpscope/tcpscope/tracer/cgroups"
	"github.com/tcpscope/tcpscope/tracer/findings"
)

// sessionOptions is what record, run and demo share.
type sessionOptions struct {
	cfg          tracer.Config
	output       string // export path, "" for none, "-" for stdout
	quietExport  bool   // the export is a temporary one (--html without -o): not announced
	events       bool   // print every event
	format       string // event format: text or json
	synRecvLimit time.Duration
	statusEvery  time.Duration // plain status lines when not on a terminal
	maxConns     int
	sampleEvery  time.Duration // sample records in the export; 0 for none
	perfetto     string        // the Perfetto trace written from the export at the end, "" for none
	readyFile    string        // written once tracing is attached, "" for none
	command      []string      // recorded in the export's meta
	// sharedTerminal: another program writes to the terminal too (run's
	// CMD), so no panel is drawn: redrawing it would erase CMD's lines.
	sharedTerminal bool
	// samplePerFlag, when set, prints only the first flagged lines of each
	// flag (the demo), and how many were left out.
	samplePerFlag int
	metricsAddr   string   // serve /metrics here while tracing, "" for none
	otlpEndpoint  *url.URL // ship records over OTLP/HTTP, nil for none
}

// session is what one recording shows and writes: the export, the event
// lines, the live view and the final tables. The recording itself is
// tracer/capture's; the session is its sinks.
type session struct {
	opts    sessionOptions
	export  *output.Export
	report  io.Writer // flagged lines and the summary
	stderr  io.Writer
	events  *bufio.Writer
	buf     []byte
	werr    error
	flagged uint64
	ready   bool // capture's Ready ran to the end: the recording started

	listeners []output.ListenerRow
	findings  *findings.Accumulator // every connection, for the findings
	found     []findings.Finding    // what finish computed from them
	view      *liveView
	shown     map[tracer.Flag]int // flagged lines printed, by flag (samplePerFlag)
	omitted   uint64              // flagged lines not printed (samplePerFlag)
	metrics   *metricsServer      // nil without --metrics-addr
	otlp      *otlpSink           // nil without --otlp-endpoint
	liveAt    time.Time           // when /metrics and OTLP last read the live numbers
}

// newSession checks the options and opens the output; nothing is loaded
// before, so bad input is reported before anything is traced.
func newSession(opts sessionOptions, stdout, stderr io.Writer) (*session, error) {
	if opts.output == "-" && opts.events {
		return nil, usagef("--events and -o - both write to standard output: pick one")
	}
	// The export is opened and locked before anything is loaded: a path
	// that cannot be written, a link or another recorder's file is bad
	// input. Through sudo, the file goes to the user who ran sudo.
	var ms *metricsServer
	if opts.metricsAddr != "" {
		var err error
		if ms, err = listenMetrics(opts.metricsAddr); err != nil {
			return nil, err
		}
	}
	var export *output.Export
	if opts.output != "" {
		var err error
		if export, err = output.OpenExport(opts.output, stdout, output.SudoOwner(os.Getenv)); err != nil {
			if ms != nil {
				ms.stop()
			}
			return nil, usageError{err}
		}
	}
	s := &session{opts: opts, export: export, report: stdout, stderr: stderr, findings: findings.New(), metrics: ms}
	var err error
	if s.otlp, err = newOTLPSink(opts.otlpEndpoint, opts.cfg.NetNS); err != nil {
		if export != nil {
			export.Abort()
		}
		if ms != nil {
			ms.stop()
		}
		return nil, err
	}
	if ms != nil && s.otlp != nil {
		ms.m.OTLPDropped(s.otlp.ship.Dropped)
	}
	if opts.statusEvery == 0 {
		opts.statusEvery = 10 * time.Second
	}
	s.view = newLiveView(s.report, stderr, opts.statusEvery)
	if opts.sharedTerminal {
		s.view.tty, s.view.reportTTY, s.view.color = false, false, false
		s.view.interval = opts.statusEvery
	}
	if opts.output == "-" {
		s.report = stderr
	}
	if opts.events {
		s.events = bufio.NewWriterSize(stdout, 64<<10)
		if opts.format == "text" {
			fmt.Fprintln(s.events, output.EventHeader)
		}
	}
	return s, nil
}

// record traces until ctx ends, then writes the summary and the export.
// onReady, when set, runs once tracing is attached and before any record
// (run starts its command there); its error ends the recording at once.
// An export is completed even when recording failed midway.
func (s *session) record(ctx context.Context, onReady func() error) error {
	if s.opts.readyFile != "" {
		// The ready file says "tracing now": gone once tracing ended, or
		// when the recording could not start after it was written.
		defer os.Remove(s.opts.readyFile)
	}
	sinks := capture.Sinks{
		Ready:      func(st capture.Started) error { return s.start(st, onReady) },
		Connection: s.emit,
		Listener:   s.emitListener,
		Alert:      func(a tracer.TimeWaitAlert) { s.view.line(output.TimeWaitAlertLine(a)) },
		Tick:       s.tick,
	}
	if s.export != nil {
		sinks.Sample = s.export.WriteSample
	}
	if s.opts.events {
		sinks.Event = s.printEvent
	}
	sum, err := capture.Run(ctx, capture.Options{Config: s.opts.cfg, SynRecvThreshold: s.opts.synRecvLimit,
		MaxConnections: s.opts.maxConns, EveryEvent: s.opts.events, Counters: output.ReportedCounters(),
		SampleInterval: s.opts.sampleEvery}, sinks)
	if s.metrics != nil {
		if merr := s.metrics.stop(); err == nil {
			err = merr
		}
	}
	if !s.ready {
		s.otlp.finish(s, nil)
		if s.export != nil {
			s.export.Abort()
		}
		if capture.IsUsage(err) {
			return usageError{err}
		}
		return err
	}
	return s.finish(sum, err)
}

// start is capture's Ready: the export's meta, the "tracing" line, the
// ready file, then onReady.
func (s *session) start(st capture.Started, onReady func() error) error {
	meta := output.Meta{Tcpscope: version, Kernel: st.Features.Kernel, Start: st.Start, Command: s.opts.command}
	meta.Hostname, _ = os.Hostname()
	if s.export != nil {
		if err := s.export.Start(meta); err != nil {
			return err
		}
	}
	s.view.start, s.view.last = st.Start, st.Start
	announce(s.stderr, st)
	if s.metrics != nil {
		s.metrics.serve(s.stderr)
	}
	if s.opts.readyFile != "" {
		if err := writeReadyFile(s.opts.readyFile, os.Getpid()); err != nil {
			return err
		}
	}
	if onReady != nil {
		if err := onReady(); err != nil {
			return err
		}
	}
	s.ready = true
	return nil
}

func (s *session) emit(c *tracer.Connection) error {
	s.findings.Add(c)
	if s.metrics != nil {
		s.metrics.m.Connection(c)
	}
	if s.export != nil && s.werr == nil {
		s.werr = s.export.WriteConnection(c)
	}
	s.otlp.emit(c)
	if c.Flagged() && !s.opts.events {
		s.flagged++
		if s.opts.samplePerFlag > 0 {
			s.sample(c)
		} else {
			s.view.flagged(c, time.Now())
		}
	}
	return s.werr
}

// sample prints a flagged line only while one of its flags has been shown
// fewer than samplePerFlag times, and counts the rest.
func (s *session) sample(c *tracer.Connection) {
	if s.shown == nil {
		s.shown = map[tracer.Flag]int{}
	}
	show := false
	for f := range c.Flags.All() {
		if f != tracer.FlagTimeWait && f != tracer.FlagPreexisting && s.shown[f] < s.opts.samplePerFlag {
			show = true
		}
	}
	if !show {
		s.omitted++
		return
	}
	for f := range c.Flags.All() {
		s.shown[f]++
	}
	s.view.line(output.FlaggedLine(c))
}

func (s *session) emitListener(l *tracer.Listener) error {
	row := output.RowOfListener(l)
	if s.metrics != nil {
		s.metrics.m.Listener(l)
	}
	s.otlp.listener(l)
	s.listeners = append(s.listeners, row)
	if s.export != nil && s.werr == nil {
		s.werr = s.export.WriteListener(&row)
	}
	return s.werr
}

func (s *session) printEvent(ev *tracer.Event, cg cgroups.Info, drained bool) error {
	if s.opts.format == "json" {
		s.buf = output.AppendEventJSON(s.buf[:0], ev, &cg)
	} else {
		s.buf = output.AppendEventText(s.buf[:0], ev, &cg)
	}
	if _, err := s.events.Write(s.buf); err != nil {
		return fmt.Errorf("writing events: %w", err)
	}
	if drained {
		return s.events.Flush()
	}
	return nil
}

// readLive hands the live numbers to /metrics and OTLP at most once a
// second: they cost a walk of the listeners and TIME_WAIT destinations,
// and scrapes and exports come seconds apart.
func (s *session) readLive(now time.Time, snap func() capture.Snapshot) {
	if (s.metrics == nil && s.otlp == nil) || now.Sub(s.liveAt) < time.Second {
		return
	}
	s.liveAt = now
	sn := snap()
	if s.metrics != nil {
		s.metrics.live(sn)
	}
	s.otlp.live(sn)
}

func (s *session) tick(now time.Time, snap func() capture.Snapshot) error {
	s.readLive(now, snap)
	if !s.opts.events {
		s.view.tick(now, func(dt time.Duration) output.Live { return s.view.live(snap(), dt) })
	}
	if s.werr != nil {
		return s.werr
	}
	if s.events != nil {
		if err := s.events.Flush(); err != nil {
			return fmt.Errorf("writing events: %w", err)
		}
	}
	if s.export != nil {
		return s.export.Flush()
	}
	return nil
}

// finish prints the summary and completes the export. Errors, first one
// wins: the recording's, the export's, reading the kernel's tallies.
func (s *session) finish(sum capture.Summary, runErr error) error {
	s.view.finish()
	if s.omitted > 0 && !s.opts.events {
		kept := ""
		if s.export != nil {
			kept = " and kept in the export"
		}
		fmt.Fprintf(s.report, "... %d more flagged connections not shown (the first %d of each flag are above; all are counted below%s)\n",
			s.omitted, s.opts.samplePerFlag, kept)
	}
	x := extraOf(sum, s.listeners)
	x.Findings = s.findings.Finish(output.FindingsEnv(sum.Start, x))
	s.found = x.Findings
	if s.otlp != nil && sum.KernelErr == nil {
		s.otlp.ship.EndLost(sum.Kernel.Dropped())
	}
	s.otlp.finish(s, &x)
	var exportErr error
	if s.export != nil {
		if s.werr != nil {
			s.export.Abort()
			exportErr = s.werr
		} else {
			exportErr = s.export.Close(sum.Stats, x)
		}
	}
	if !s.opts.events {
		if err := output.SummaryTables(s.report, sum.Stats, x); err != nil && exportErr == nil {
			exportErr = err
		}
	}
	s.notes(sum)
	if s.export != nil && exportErr == nil && s.export.Path() != "-" && !s.opts.quietExport {
		fmt.Fprintf(s.stderr, "tcpscope: wrote %d connections to %s\n", sum.Stats.Connections, s.export.Path())
		exportErr = s.writePerfetto()
	}
	switch {
	case runErr != nil:
		return runErr
	case exportErr != nil:
		return exportErr
	}
	return sum.KernelErr
}

// writePerfetto writes the trace of the export just closed, if asked.
func (s *session) writePerfetto() error {
	if s.opts.perfetto == "" {
		return nil
	}
	path := s.export.Path()
	read := func(o output.ReadOptions) (*output.Recording, error) { return output.ReadExportWith(path, o) }
	if err := writePerfettoFile(s.opts.perfetto, read, nil); err != nil {
		return err
	}
	fmt.Fprintf(s.stderr, "tcpscope: wrote the Perfetto trace to %s (open it at https://ui.perfetto.dev)\n", s.opts.perfetto)
	return nil
}

// notes says on stderr what the recording counted and what it missed.
func (s *session) notes(sum capture.Summary) {
	k := sum.Kernel
	fmt.Fprintln(s.stderr, "tcpscope: "+output.TallyLine(output.Tally{ByKind: sum.Events, Lost: k.Lost}))
	if sum.Aggregated {
		r := sum.Records
		fmt.Fprintf(s.stderr, "tcpscope: records: %d (at close %d, early %d of which %d for full slots, open at the end %d); lost %d\n",
			r.Total(), r.Closed, r.Early, k.RecordsFull, r.Open, k.LostRecords)
	}
	if k.StorageFailures > 0 {
		fmt.Fprintf(s.stderr, "tcpscope: socket storage could not be created %d times: a listener's connections then have no owner or listener id, a connection's events are sent one by one\n", k.StorageFailures)
	}
	if k.Lost > 0 || k.LostRecords > 0 {
		fmt.Fprintf(s.stderr, "tcpscope: %d events and %d connection records were lost because the ring buffer was full: raise --ring-buffer-size or narrow --port/--netns/--pid/--comm/--cgroup\n", k.Lost, k.LostRecords)
	}
	if sum.Unopened > 0 {
		fmt.Fprintf(s.stderr, "tcpscope: %d network namespaces seen in events could not be opened: they have no kernel counters\n", sum.Unopened)
	}
	if sum.CgroupErr != nil {
		fmt.Fprintf(s.stderr, "tcpscope: warning: naming cgroups: %v: some records have a cgroup_id and no path\n", sum.CgroupErr)
	}
	if sum.Undecoded > 0 {
		fmt.Fprintf(s.stderr, "tcpscope: %d records could not be decoded\n", sum.Undecoded)
	}
	if k.Unreadable > 0 {
		fmt.Fprintf(s.stderr, "tcpscope: %d events were dropped because their packet could not be read\n", k.Unreadable)
	}
	if sum.KernelErr == nil {
		fmt.Fprintln(s.stderr, "tcpscope: "+output.RecursionLine(k.Recursion))
	}
}

// extraOf is the part of a recording's summary the export and the tables
// take beyond the connection statistics.
func extraOf(sum capture.Summary, listeners []output.ListenerRow) output.Extra {
	x := output.Extra{End: sum.End, LostEvents: sum.Kernel.Lost, LostRecords: sum.Kernel.LostRecords, Orphans: sum.Orphans, Listeners: listeners,
		Evicted: sum.Evicted, Unreadable: sum.Kernel.Unreadable, Undecoded: sum.Undecoded, Recursion: sum.Kernel.Recursion,
		Discarded: sum.Discarded, Gaps: sum.Gaps, Sysctls: sum.Sysctls}
	for _, d := range sum.Counters {
		x.Counters = append(x.Counters, output.CounterDelta{NetNS: d.NetNS, Counter: d.Counter, Delta: d.Delta,
			Created: d.Created, Unattributed: d.Unattributed})
	}
	for _, t := range sum.TimeWait {
		x.TimeWait = append(x.TimeWait, output.TimeWaitPressure{TimeWaitDest: t.TimeWaitDest, KernelCount: t.KernelCount})
	}
	return x
}

// cmdStdout is where a traced command writes: the terminal, or stderr when
// tcpscope's own stdout carries the JSONL export or the event stream.
func (s *session) cmdStdout() io.Writer {
	if s.opts.output == "-" || s.opts.events {
		return s.stderr
	}
	return os.Stdout
}
