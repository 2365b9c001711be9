// Package capture composes one recording: it opens the network namespaces
// whose kernel counters are read, the tracer, seeds the listeners that
// predate the trace, runs the recorder loop (events into the builder,
// periodic expiry and kernel sampling), follows TIME_WAIT pressure, and at
// the end reconciles what it inferred with what the kernel says (counter
// deltas, the TIME_WAIT sockets sock_diag lists). What it finds goes to
// Sinks as it happens and into the Summary at the end; rendering and files
// are the caller's (capture never imports output).
package capture

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/cgroups"
	"github.com/tcpscope/tcpscope/tracer/findings"
	"github.com/tcpscope/tcpscope/tracer/netns"
)

// Options are what one recording traces and how.
type Options struct {
	Config tracer.Config
	// SynRecvThreshold flags long_syn_recv past this wait for the final ACK.
	SynRecvThreshold time.Duration
	// MaxConnections bounds the connections followed at once.
	MaxConnections int
	// EveryEvent: the Event sink wants each event as it happens, so the
	// ring buffer wakes the reader on every event.
	EveryEvent bool
	// Counters names the kernel counters whose deltas Summary.Counters
	// reports; nil reports every counter that moved.
	Counters []string
	// SampleInterval cuts the recording into samples handed to
	// Sinks.Sample, a last partial one at the end; 0 takes none.
	SampleInterval time.Duration
}

// Sinks receive a recording as it happens; each is optional. Everything
// runs on the goroutine that called Run. An error returned by a sink stops
// the recording at the next tick (Event's and Tick's at once) and Run
// returns it, with a whole Summary: the connections still followed are
// handed to Connection first, so whatever was recorded can be completed.
// Sinks keep being called after an error, so that counts stay whole.
type Sinks struct {
	// Ready runs once every program is attached and before any record:
	// from then on nothing is missed. An error from Ready ends Run at
	// once, with nothing recorded and a zero Summary.
	Ready func(Started) error
	// Connection receives each connection when it ends (or at the end).
	Connection func(*tracer.Connection) error
	// Listener receives each listener when it closes (or at the end).
	Listener func(*tracer.Listener) error
	// Event sees every event before the builder does; drained tells that
	// the ring buffer held no more events when it was read (a good time
	// to flush).
	Event func(ev *tracer.Event, cg cgroups.Info, drained bool) error
	// Alert receives TIME_WAIT pressure alerts.
	Alert func(tracer.TimeWaitAlert)
	// Tick runs about every 200 ms and once more at the end; snap reads
	// the live numbers (only call it when they are shown: it costs).
	Tick func(now time.Time, snap func() Snapshot) error
	// Sample receives each sample (Options.SampleInterval), the last one
	// after every connection and listener was handed out.
	Sample func(*tracer.Sample) error
}

// Started describes a recording whose programs are all attached.
type Started struct {
	Start    time.Time
	Features tracer.Features
	Attached int // tracepoints attached
	// Unowned are the listeners open before tracing started whose
	// owner the pid and comm filters want, but which the kernel could
	// not be told of (Tracer.AdoptListener): it cannot tell who owns
	// their connections and leaves them out; the cgroup filter can.
	Unowned []UnownedListener
	// ListenerErrs say which namespaces' listeners could not be listed:
	// theirs have no owner or backlog from before the trace.
	ListenerErrs []error
}

// UnownedListener is a listener of Started.Unowned and why the kernel
// was not told of its owner.
type UnownedListener struct {
	netns.ListeningSocket
	Err error
}

// errSharedPort: the kernel keys the owners of listeners that predate the
// trace by namespace and port (a child socket shows no more), so a port
// whose listeners have different owners cannot be given one.
var errSharedPort = errors.New("its port is shared with a listener of another owner")

// Snapshot is the live state of a recording.
type Snapshot struct {
	Started     uint64 // connections started so far
	Open        int    // connections followed now
	Stats       *tracer.Stats
	TimeWaitNow int
	// TimeWaitWorst is the destination under most TIME_WAIT pressure, if
	// any (ok false otherwise).
	TimeWaitWorst   tracer.TimeWaitDest
	TimeWaitWorstOK bool
	Lost            uint64 // events the kernel side dropped
	// Listeners is the load of every listener followed now.
	Listeners []tracer.ListenerLoad
	// TimeWaitBusiest are the destinations with the most live TIME_WAIT
	// sockets (at most BusiestTimeWait of them).
	TimeWaitBusiest []tracer.TimeWaitDest
}

// BusiestTimeWait bounds Snapshot.TimeWaitBusiest.
const BusiestTimeWait = 10

// Summary is what a recording found, for the final tables and the export.
type Summary struct {
	Start, End time.Time
	Stats      *tracer.Stats
	// Kernel are the kernel side's own tallies at the end; KernelErr
	// tells why they could not all be read.
	Kernel    tracer.Counters
	KernelErr error
	// Undecoded counts records user space could not decode.
	Undecoded uint64
	// Events counts the events read, by kind (in the aggregated mode,
	// those the records held too).
	Events map[tracer.Kind]uint64
	// Aggregated: the kernel sent connection records; Records counts them
	// by why they were sent (see tracer.Tracer.Records).
	Aggregated bool
	Records    RecordCounts
	// From the builder: see tracer.Builder's Orphans, Evicted, Discarded
	// and Gaps.
	Orphans, Evicted, Discarded, Gaps uint64
	// Counters are the kernel counters that moved, per namespace.
	Counters []CounterDelta
	// TimeWait are the destinations under most TIME_WAIT pressure, with
	// the kernel's own count of their TIME_WAIT sockets.
	TimeWait []TimeWaitPressure
	// Unopened counts namespaces seen in events that could not be opened:
	// they have no kernel counters.
	Unopened int
	// CgroupErr is why the cgroup hierarchy could not be walked the last
	// time it failed: records then lack the names of cgroups first seen
	// after it.
	CgroupErr error
	// Sysctls are findings.SysctlNames read at the end in each namespace
	// with a traced listener, a TIME_WAIT destination, or a connect that
	// found no local port or timed out, by namespace then name; a
	// namespace gone by then has none.
	Sysctls []findings.Sysctl
	// Listeners are not kept here: each one went to Sinks.Listener, and a
	// listener holds a whole histogram, too much to keep thousands of.
}

// CounterDelta is how much one kernel counter moved in one namespace.
type CounterDelta struct {
	NetNS   uint32
	Counter string
	Delta   uint64
	// Created: the namespace was created during the recording, so the
	// delta counts from zero.
	Created bool
	// Unattributed, on the ListenOverflows and ListenDrops rows of a
	// namespace whose listeners were sampled: the part of the delta no
	// single listener explains.
	Unattributed *uint64
}

// TimeWaitPressure is one destination's TIME_WAIT load with the kernel's
// count of its TIME_WAIT sockets at the end (-1 when not read).
type TimeWaitPressure struct {
	tracer.TimeWaitDest
	KernelCount int
}

// UsageError is bad input found while opening a recording (a --netns that
// does not exist): nothing was traced.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

// Run records until ctx ends. It returns the summary and the error that
// stopped the recording, if any; a recording that could not start returns
// a zero Summary and its error (a UsageError for bad input).
func Run(ctx context.Context, opts Options, sinks Sinks) (sum Summary, err error) {
	r, err := open(opts, sinks)
	if err != nil {
		return Summary{}, err
	}
	defer func() {
		if cerr := r.close(); err == nil {
			err = cerr
		}
	}()
	if sinks.Ready != nil {
		if err := sinks.Ready(r.started); err != nil {
			return Summary{}, err
		}
	}
	runErr := r.rec.Run(ctx)
	if runErr != nil {
		// Whatever was recorded still gets a summary; an export is whole.
		r.rec.Builder.Finish(time.Now())
	}
	if r.sampler != nil {
		r.keep(r.takeSample(time.Now()))
		if runErr == nil {
			runErr = r.sinkErr
		}
	}
	return r.summary(), runErr
}

// recording is one Run's state.
type recording struct {
	opts    Options
	sinks   Sinks
	tr      *tracer.Tracer
	rec     *tracer.Recorder
	stats   *tracer.Stats
	started Started
	sinkErr error // the first error a sink returned

	namespaces map[uint32]*netns.NS // handles of the namespaces whose counters are read
	// settingsOf are the namespaces whose sysctls the summary reads.
	settingsOf map[uint32]bool
	book       *counterBook
	timeWait   *tracer.TimeWaitTracker
	sampler    *tracer.Sampler   // nil without Options.SampleInterval
	counters   tracer.Counters   // the kernel's last reading for samples
	cgroups    *cgroups.Resolver // nil without cgroup v2
}

// open opens the namespaces and then the tracer; nothing is traced before
// both succeed.
func open(opts Options, sinks Sinks) (*recording, error) {
	opts.Config = readerConfig(opts)
	namespaces, err := openNamespaces(opts.Config.NetNS)
	if err != nil {
		return nil, err
	}
	// Tracing everywhere: which namespaces exist now, and their counters,
	// so that one first seen later is known as created meanwhile or not.
	var census map[uint32]netns.Existing
	if len(opts.Config.NetNS) == 0 {
		census = netns.Census()
	}
	tr, err := tracer.Open(opts.Config)
	if err != nil {
		closeNamespaces(namespaces)
		return nil, err
	}
	r := &recording{opts: opts, sinks: sinks, tr: tr, stats: tracer.NewStats(), namespaces: namespaces, settingsOf: map[uint32]bool{}}
	r.book = newCounterBook(census)
	for ino, ns := range namespaces {
		r.startCounters(ino, ns)
	}
	r.timeWait = tracer.NewTimeWaitTracker()
	r.timeWait.Ports = r.portRange
	r.timeWait.OnAlert = func(a tracer.TimeWaitAlert) {
		if sinks.Alert != nil {
			sinks.Alert(a)
		}
	}
	r.started = Started{Start: time.Now(), Features: tr.Features(), Attached: tr.Attached()}
	r.startRecorder()
	r.seedListeners()
	if sinks.Event != nil {
		r.rec.OnEvent = func(ev *tracer.Event) error {
			return sinks.Event(ev, r.cgroups.Resolve(ev.CgroupID), tr.Pending() == 0)
		}
	}
	return r, nil
}

// readerConfig is the tracer's configuration with how the kernel side
// hands over events: batched ring-buffer wakeups, one per quarter megabyte
// of events rather than one per event, which at load costs more than the
// events themselves (the reader also polls every 100 ms, which bounds how
// late a flagged line can be); EveryEvent keeps a wakeup per event, and
// needs the kernel's per-event mode (otherwise connections are aggregated
// in the kernel).
func readerConfig(opts Options) tracer.Config {
	cfg := opts.Config
	cfg.PollInterval = 100 * time.Millisecond
	cfg.Events = opts.EveryEvent
	if !opts.EveryEvent && cfg.RingBufferBytes >= 4<<20 {
		cfg.WakeupBytes = 256 << 10
	}
	return cfg
}

// startRecorder makes the cgroup resolver, the builder, the recorder and
// the sampler of an open tracer.
func (r *recording) startRecorder() {
	opts, sinks, tr := r.opts, r.sinks, r.tr
	// Without a cgroup v2 hierarchy the records carry no cgroup: the
	// caller warns (Features.Cgroup2Err).
	if mount := r.started.Features.Cgroup2; mount != "" {
		r.cgroups = cgroups.NewResolver(mount)
	}
	b := tracer.NewBuilder(tracer.BuilderConfig{
		Cgroups:          r.cgroups,
		SynRecvThreshold: opts.SynRecvThreshold,
		MaxConnections:   opts.MaxConnections,
		Clock:            tr.Clock(),
		Emit:             r.emit,
		EmitListener:     r.emitListener,
		OnTimeWait:       r.timeWait.Enter,
		OnTimeWaitUndone: r.timeWait.Undo,
		OnTimeWaitKilled: r.timeWait.Release,
		RFC1337:          r.rfc1337,
	})
	r.rec = &tracer.Recorder{Tracer: tr, Builder: b, OnTick: r.tick, OnSample: r.sampleKernel, OnNetNS: r.seeNetNS}
	if opts.SampleInterval > 0 && sinks.Sample != nil {
		r.sampler = tracer.NewSampler(opts.SampleInterval, r.started.Start)
	}
}

// seedListeners tells the builder about listeners that predate the trace:
// their owners and backlogs, from sock_diag and the processes holding
// their sockets; and the kernel about the owners the pid and comm filters
// want.
func (r *recording) seedListeners() {
	for ino, ns := range r.namespaces {
		ls, err := ns.Listeners()
		if err != nil {
			r.started.ListenerErrs = append(r.started.ListenerErrs, fmt.Errorf("listing the listeners of netns %d: %w", ino, err))
			continue
		}
		shared := sharedPorts(ls)
		for _, l := range ls {
			r.rec.Builder.SeedListener(ino, l.Local, l.PID, l.Comm, l.Backlog, l.Queue, r.started.Start)
			if !ownerWanted(r.opts.Config, l) {
				continue
			}
			err := errSharedPort
			if !shared[l.Local.Port()] {
				err = r.tr.AdoptListener(ino, l.Local.Port(), l.PID, l.Comm)
			}
			if err != nil {
				r.started.Unowned = append(r.started.Unowned, UnownedListener{l, err})
			}
		}
	}
}

// sharedPorts are the ports of one namespace's listeners ls that
// listeners of different owners (or of none found) hold, as SO_REUSEPORT
// or one address each allow.
func sharedPorts(ls []netns.ListeningSocket) map[uint16]bool {
	type owner struct {
		pid  uint32
		comm string
	}
	first := map[uint16]owner{}
	shared := map[uint16]bool{}
	for _, l := range ls {
		o := owner{l.PID, l.Comm}
		if prev, ok := first[l.Local.Port()]; !ok {
			first[l.Local.Port()] = o
		} else if prev != o {
			shared[l.Local.Port()] = true
		}
	}
	return shared
}

// ownerWanted tells whether the pid and comm filters, when set, want the
// owner of listener l.
func ownerWanted(cfg tracer.Config, l netns.ListeningSocket) bool {
	if len(cfg.PIDs) == 0 && len(cfg.Comms) == 0 {
		return false
	}
	return (len(cfg.PIDs) == 0 || slices.Contains(cfg.PIDs, l.PID)) &&
		(len(cfg.Comms) == 0 || slices.Contains(cfg.Comms, l.Comm))
}

// close detaches and frees the tracer and the namespace handles; the
// tracer's error (stopping it, closing the ring-buffer reader) is returned.
func (r *recording) close() error {
	err := r.tr.Close()
	closeNamespaces(r.namespaces)
	if err != nil {
		return fmt.Errorf("closing the tracer: %w", err)
	}
	return nil
}

// keep remembers the first error a sink returned.
func (r *recording) keep(err error) {
	if err != nil && r.sinkErr == nil {
		r.sinkErr = err
	}
}

func (r *recording) emit(c *tracer.Connection) {
	r.stats.Add(c)
	if r.sampler != nil {
		r.sampler.Closed(c)
	}
	if c.Flags.Has(tracer.FlagPortExhausted) || c.Role == tracer.RoleClient && c.Flags.Has(tracer.FlagHandshakeTimeout) {
		r.settingsOf[c.NetNS] = true
	}
	if r.sinks.Connection != nil {
		r.keep(r.sinks.Connection(c))
	}
}

func (r *recording) emitListener(l *tracer.Listener) {
	r.settingsOf[l.NetNS] = true
	if r.sinks.Listener != nil {
		r.keep(r.sinks.Listener(l))
	}
}

func (r *recording) tick(now time.Time) error {
	r.timeWait.Expire(now)
	if r.sampler != nil && r.sampler.Due(now) {
		r.keep(r.takeSample(now))
	}
	if r.sinks.Tick != nil {
		if err := r.sinks.Tick(now, r.snapshot); err != nil {
			return err
		}
	}
	return r.sinkErr
}

// snapshot reads the live numbers.
func (r *recording) snapshot() Snapshot {
	s := Snapshot{Started: r.rec.Builder.Started(), Open: r.rec.Builder.Open(), Stats: r.stats, TimeWaitNow: r.timeWait.Live()}
	if c, err := r.tr.Counters(); err == nil {
		s.Lost = c.Dropped()
	}
	now := time.Now()
	if top := r.timeWait.Top(1, now); len(top) > 0 {
		s.TimeWaitWorst, s.TimeWaitWorstOK = top[0], true
	}
	s.Listeners = r.rec.Builder.ListenerLoads()
	s.TimeWaitBusiest = r.timeWait.Busiest(BusiestTimeWait, now)
	return s
}

// RecordCounts are the connection records read in the aggregated mode.
type RecordCounts struct {
	Closed, Early, Open uint64
}

// Total is every record read.
func (r RecordCounts) Total() uint64 { return r.Closed + r.Early + r.Open }

// summary reads what the kernel says at the end and sums up.
func (r *recording) summary() Summary {
	b := r.rec.Builder
	s := Summary{Start: r.started.Start, Stats: r.stats, Undecoded: r.rec.DecodeErrors, Events: map[tracer.Kind]uint64{},
		Orphans: b.Orphans(), Evicted: b.Evicted(), Discarded: b.Discarded(), Gaps: b.Gaps()}
	s.Kernel, s.KernelErr = r.tr.Counters()
	s.Aggregated = r.tr.Aggregated()
	s.Records.Closed, s.Records.Early, s.Records.Open = r.tr.Records()
	for _, k := range tracer.Kinds() {
		s.Events[k] = r.rec.Events[k]
	}
	s.End = time.Now()
	s.Counters, s.TimeWait = r.kernelEnd(s.End)
	s.Unopened = len(r.book.lost)
	if r.cgroups != nil {
		s.CgroupErr = r.cgroups.Err()
	}
	for _, t := range s.TimeWait {
		r.settingsOf[t.Key.NetNS] = true
	}
	s.Sysctls = r.sysctls()
	return s
}

// IsUsage tells whether err is bad input found by Run.
func IsUsage(err error) bool {
	var ue UsageError
	return errors.As(err, &ue)
}
