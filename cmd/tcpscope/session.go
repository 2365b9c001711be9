package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/tcpscope/tcpscope/output"
	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/netns"
)

// sessionOptions is what record, run and demo share.
type sessionOptions struct {
	cfg          tracer.Config
	output       string // export path, "" for none, "-" for stdout
	events       bool   // print every event
	format       string // event format: text or jsonl
	synRecvLimit time.Duration
	statusEvery  time.Duration // plain status lines when not on a terminal
	maxConns     int
	command      []string // recorded in the export's meta
	// onConn, when set, also sees every finished connection.
	onConn func(*tracer.Connection)
	// sharedTerminal: another program writes to the terminal too (run's
	// CMD), so no panel is drawn: redrawing it would erase CMD's lines.
	sharedTerminal bool
	// samplePerFlag, when set, prints only the first flagged lines of each
	// flag (the demo), and how many were left out.
	samplePerFlag int
}

// session is one recording: tracer, builder, export and what is printed.
type session struct {
	opts    sessionOptions
	tr      *tracer.Tracer
	rec     *tracer.Recorder
	stats   *tracer.Stats
	export  *output.Export
	meta    output.Meta
	report  io.Writer // flagged lines and the summary
	stderr  io.Writer
	events  *bufio.Writer
	buf     []byte
	werr    error
	flagged uint64

	namespaces map[uint32]*netns.NS // handles of the namespaces whose counters are read
	book       *counterBook
	timeWait   *tracer.TimeWaitTracker
	listeners  []output.ListenerRow
	view       *liveView
	shown      map[tracer.Flag]int // flagged lines printed, by flag (samplePerFlag)
	omitted    uint64              // flagged lines not printed (samplePerFlag)
}

// openSession opens the output and then the tracer; nothing is traced
// before both succeed.
func openSession(opts sessionOptions, stdout, stderr io.Writer) (*session, error) {
	if opts.output == "-" && opts.events {
		return nil, usagef("--events and -o - both write to standard output: pick one")
	}
	// The export is opened and locked before anything is loaded: a path
	// that cannot be written, a link or another recorder's file is bad
	// input. Through sudo, the file goes to the user who ran sudo.
	var export *output.Export
	if opts.output != "" {
		var err error
		if export, err = output.OpenExport(opts.output, stdout, output.SudoOwner(os.Getenv)); err != nil {
			return nil, usageError{err}
		}
	}
	// Batch ring-buffer wakeups: one per quarter megabyte of events rather
	// than one per event, which at load costs more than the events
	// themselves; the reader also polls every 100 ms, which bounds how late
	// a flagged line can be. --events keeps a wakeup per event.
	opts.cfg.PollInterval = 100 * time.Millisecond
	if !opts.events && opts.cfg.RingBufferBytes >= 4<<20 {
		opts.cfg.WakeupBytes = 256 << 10
	}
	namespaces, err := openNamespaces(opts.cfg.NetNS)
	if err != nil {
		export.Abort()
		return nil, err
	}
	// Tracing everywhere: which namespaces exist now, and their counters,
	// so that one first seen later is known as created meanwhile or not.
	var census map[uint32]netns.Existing
	if len(opts.cfg.NetNS) == 0 {
		census = netns.Census()
	}
	tr, err := tracer.Open(opts.cfg)
	if err != nil {
		export.Abort()
		closeNamespaces(namespaces)
		return nil, err
	}
	s := &session{opts: opts, tr: tr, stats: tracer.NewStats(), report: stdout, stderr: stderr, namespaces: namespaces}
	s.book = newCounterBook(census)
	for ino, ns := range namespaces {
		s.startCounters(ino, ns)
	}
	s.timeWait = tracer.NewTimeWaitTracker()
	s.timeWait.Ports = s.portRange
	s.timeWait.OnAlert = func(a tracer.TimeWaitAlert) { s.view.line(output.TimeWaitAlertLine(a)) }
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
	s.meta = output.Meta{Tcpscope: version, Kernel: tr.Features().Kernel, Start: time.Now(), Command: opts.command}
	s.meta.Hostname, _ = os.Hostname()
	if export != nil {
		s.export = export
		if err = export.Start(s.meta); err != nil {
			export.Abort()
			tr.Close()
			closeNamespaces(namespaces)
			return nil, err
		}
	}
	b := tracer.NewBuilder(tracer.BuilderConfig{
		SynRecvThreshold: opts.synRecvLimit,
		MaxConnections:   opts.maxConns,
		Clock:            tr.Clock(),
		Emit:             s.emit,
		EmitListener:     s.emitListener,
		OnTimeWait:       s.timeWait.Enter,
		OnTimeWaitUndone: s.timeWait.Undo,
		OnTimeWaitKilled: s.timeWait.Release,
		RFC1337:          s.rfc1337,
	})
	s.rec = &tracer.Recorder{Tracer: tr, Builder: b, OnTick: s.tick, OnSample: s.sampleKernel, OnNetNS: s.seeNetNS}
	// Listeners that predate the trace: their owners and backlogs, from
	// /proc/net/tcp and the processes holding their sockets.
	for ino, ns := range namespaces {
		ls, err := ns.Listeners()
		if err != nil {
			continue
		}
		for _, l := range ls {
			b.SeedListener(ino, l.Local, l.PID, l.Comm, l.Backlog, l.Queue, s.meta.Start)
		}
	}
	if opts.events {
		s.events = bufio.NewWriterSize(stdout, 64<<10)
		if opts.format == "text" {
			fmt.Fprintln(s.events, output.EventHeader)
		}
		s.rec.OnEvent = s.printEvent
	}
	announce(stderr, tr)
	return s, nil
}

func (s *session) emit(c *tracer.Connection) {
	s.stats.Add(c)
	if s.opts.onConn != nil {
		s.opts.onConn(c)
	}
	if s.export != nil && s.werr == nil {
		s.werr = s.export.WriteConnection(c)
	}
	if c.Flagged() && !s.opts.events {
		s.flagged++
		if s.opts.samplePerFlag > 0 {
			s.sample(c)
			return
		}
		s.view.flagged(c, time.Now())
	}
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

func (s *session) emitListener(l *tracer.Listener) {
	row := output.RowOfListener(l)
	s.listeners = append(s.listeners, row)
	if s.export != nil && s.werr == nil {
		s.werr = s.export.WriteListener(&row)
	}
}

// openNamespaces opens the namespaces whose kernel counters a recording
// reports: those given with --netns (each must exist), else tcpscope's own.
func openNamespaces(inodes []uint32) (map[uint32]*netns.NS, error) {
	out := map[uint32]*netns.NS{}
	if len(inodes) == 0 {
		self, err := netns.Self()
		if err != nil {
			return nil, fmt.Errorf("opening this network namespace: %w", err)
		}
		out[self.Inode] = self
		return out, nil
	}
	for _, ino := range inodes {
		ns, err := netns.Find(ino)
		if err != nil {
			closeNamespaces(out)
			return nil, usageError{fmt.Errorf("--netns %d: %w (list them with: lsns -t net)", ino, err)}
		}
		out[ino] = ns
	}
	return out, nil
}

func closeNamespaces(m map[uint32]*netns.NS) {
	for _, ns := range m {
		ns.Close()
	}
}

// portRange is the number of usable local ports in a namespace; unknown
// when the namespace is gone.
func (s *session) portRange(netnsIno uint32) (n int, ok bool) {
	s.inNamespace(netnsIno, func(ns *netns.NS) {
		if lo, hi, err := ns.PortRange(); err == nil {
			n, ok = hi-lo+1, true
		}
	})
	return n, ok
}

// inNamespace runs fn with a handle of a namespace, opening it on first
// use and holding it while fewer than maxHeldNamespaces are held (past
// that, the handle is closed after fn); fn does not run when the
// namespace is gone.
func (s *session) inNamespace(netnsIno uint32, fn func(*netns.NS)) {
	if ns, ok := s.namespaces[netnsIno]; ok {
		fn(ns)
		return
	}
	found, err := netns.Find(netnsIno)
	if err != nil {
		return
	}
	if len(s.namespaces) >= maxHeldNamespaces {
		defer found.Close()
	} else {
		s.adopt(netnsIno, found)
	}
	fn(found)
}

// rfc1337 reads net.ipv4.tcp_rfc1337 in a namespace (0, the default, when
// it cannot be read).
func (s *session) rfc1337(netnsIno uint32) (on bool) {
	s.inNamespace(netnsIno, func(ns *netns.NS) {
		v, err := ns.ReadSysctl("net.ipv4.tcp_rfc1337")
		on = err == nil && v != "0"
	})
	return on
}

// kernelEnd reads what the kernel itself says at the end: counter deltas
// and the TIME_WAIT sockets sock_diag lists, per destination.
func (s *session) kernelEnd(now time.Time) ([]output.CounterDelta, []output.TimeWaitPressure) {
	deltas := s.counterDeltas()
	var tw []output.TimeWaitPressure
	kernel := map[tracer.TimeWaitKey]int{}
	read := map[uint32]bool{}
	for _, d := range s.timeWait.Top(10, now) {
		if ns, ok := s.namespaces[d.Key.NetNS]; ok && !read[d.Key.NetNS] {
			read[d.Key.NetNS] = true
			if socks, err := ns.TCPSockets(1 << uint(tracer.StateTimeWait)); err == nil {
				for _, sk := range socks {
					kernel[tracer.TimeWaitKey{NetNS: d.Key.NetNS, Local: sk.Local.Addr(), Remote: sk.Remote}]++
				}
			}
		}
		p := output.TimeWaitPressure{TimeWaitDest: d, KernelCount: -1}
		if read[d.Key.NetNS] {
			p.KernelCount = kernel[d.Key]
		}
		tw = append(tw, p)
	}
	return deltas, tw
}

func (s *session) printEvent(ev *tracer.Event) error {
	if s.opts.format == "jsonl" {
		s.buf = output.AppendEventJSON(s.buf[:0], ev)
	} else {
		s.buf = output.AppendEventText(s.buf[:0], ev)
	}
	if _, err := s.events.Write(s.buf); err != nil {
		return fmt.Errorf("writing events: %w", err)
	}
	if s.tr.Pending() == 0 {
		return s.events.Flush()
	}
	return nil
}

func (s *session) tick(now time.Time) error {
	s.timeWait.Expire(now)
	if !s.opts.events {
		s.view.tick(now, s.snapshot)
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

// run records until ctx ends, then writes the summary and the export.
// An export is completed even when recording failed midway.
func (s *session) run(ctx context.Context) error {
	defer s.tr.Close()
	defer closeNamespaces(s.namespaces)
	runErr := s.rec.Run(ctx)
	if runErr != nil && s.export != nil {
		// Whatever was recorded still gets a summary; the export is whole.
		s.rec.Builder.Finish(time.Now())
	}
	s.view.finish()
	if s.omitted > 0 && !s.opts.events {
		kept := ""
		if s.export != nil {
			kept = " and kept in the export"
		}
		fmt.Fprintf(s.report, "... %d more flagged connections not shown (the first %d of each flag are above; all are counted below%s)\n",
			s.omitted, s.opts.samplePerFlag, kept)
	}
	counters, cerr := s.tr.Counters()
	end := time.Now()
	x := output.Extra{End: end, LostEvents: counters.Lost, Orphans: s.rec.Builder.Orphans(), Listeners: s.listeners,
		Evicted: s.rec.Builder.Evicted(), Unreadable: counters.Unreadable, Undecoded: s.rec.DecodeErrors, Recursion: counters.Recursion,
		Discarded: s.rec.Builder.Discarded(), Gaps: s.rec.Builder.Gaps()}
	x.Counters, x.TimeWait = s.kernelEnd(end)
	var exportErr error
	if s.export != nil {
		if s.werr != nil {
			s.export.Abort()
			exportErr = s.werr
		} else {
			exportErr = s.export.Close(s.stats, x)
		}
	}
	if !s.opts.events {
		if err := output.SummaryTables(s.report, s.stats, x); err != nil && exportErr == nil {
			exportErr = err
		}
	}
	fmt.Fprintln(s.stderr, "tcpscope: "+output.TallyLine(output.Tally{ByKind: s.kindCounts(), Lost: counters.Lost}))
	if counters.StorageFailures > 0 {
		fmt.Fprintf(s.stderr, "tcpscope: %d listeners could not be given socket storage: their connections have no owner or listener id\n", counters.StorageFailures)
	}
	if counters.Lost > 0 {
		fmt.Fprintf(s.stderr, "tcpscope: %d events were lost because the ring buffer was full: raise --ring-buffer-size or narrow --port/--netns\n", counters.Lost)
	}
	if n := len(s.book.lost); n > 0 {
		fmt.Fprintf(s.stderr, "tcpscope: %d network namespaces seen in events could not be opened: they have no kernel counters\n", n)
	}
	if s.rec.DecodeErrors > 0 {
		fmt.Fprintf(s.stderr, "tcpscope: %d records could not be decoded\n", s.rec.DecodeErrors)
	}
	if counters.Unreadable > 0 {
		fmt.Fprintf(s.stderr, "tcpscope: %d events were dropped because their packet could not be read\n", counters.Unreadable)
	}
	if cerr == nil {
		fmt.Fprintln(s.stderr, "tcpscope: "+output.RecursionLine(counters.Recursion))
	}
	if s.export != nil && exportErr == nil && s.export.Path() != "-" {
		fmt.Fprintf(s.stderr, "tcpscope: wrote %d connections to %s\n", s.stats.Connections, s.export.Path())
	}
	switch {
	case runErr != nil:
		return runErr
	case exportErr != nil:
		return exportErr
	}
	return cerr
}

func (s *session) kindCounts() map[tracer.Kind]uint64 {
	m := map[tracer.Kind]uint64{}
	for _, k := range tracer.Kinds() {
		m[k] = s.rec.Events[k]
	}
	return m
}

// cmdStdout is where a traced command writes: the terminal, or stderr when
// tcpscope's own stdout carries the JSONL export or the event stream.
func (s *session) cmdStdout() io.Writer {
	if s.opts.output == "-" || s.opts.events {
		return s.stderr
	}
	return os.Stdout
}

// abort releases a session that never ran.
func (s *session) abort() {
	if s.export != nil {
		s.export.Abort()
	}
	s.tr.Close()
	closeNamespaces(s.namespaces)
}
