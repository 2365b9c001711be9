package tracer

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// DefaultRingBufferBytes is the ring buffer size when Config leaves it 0
// (DEFAULT_RINGBUF_BYTES in bpf/event.h).
const DefaultRingBufferBytes = int(bpfLimitsDEFAULT_RINGBUF_BYTES)

// MaxFilter is how many ports or namespaces a kernel-side filter holds
// (MAX_FILTER in bpf/event.h).
const MaxFilter = int(bpfLimitsMAX_FILTER)

// Config says what to trace. Filters are applied in the kernel.
type Config struct {
	// RingBufferBytes must be a power of two and a multiple of the page size.
	RingBufferBytes int
	// Ports keeps only events whose local or remote port is listed.
	Ports []uint16
	// NetNS keeps only events from these network namespaces (inode numbers).
	NetNS []uint32
	// The owner filters keep only the sockets whose owner (the connect()
	// or listen() caller; a server-side connection's is its listener's)
	// is one of PIDs (thread group ids), is named one of Comms (task
	// names as /proc/PID/comm shows them), and is in one of Cgroups or
	// below it. Both ends of a connection between two kept owners are
	// kept. PIDs and Comms cannot tell the owner of a socket that was
	// opened before tracing started, and leave it out: see owner_wanted()
	// in bpf/tcpscope.bpf.c.
	PIDs    []uint32
	Comms   []string
	Cgroups []CgroupFilter
	// WakeupBytes > 0 batches reader wakeups: the kernel wakes the reader
	// only once this much data waits; the reader also polls every
	// PollInterval for the rest.
	WakeupBytes uint64
	// PollInterval > 0 makes Read return ErrNoEvent when no event came
	// within it, so a caller can do periodic work on the same goroutine.
	PollInterval time.Duration
	// Events selects the per-event mode: every kernel event crosses to
	// user space on its own. By default (the aggregated mode) a connection
	// socket's events are kept in its socket storage and cross as one
	// record (see record.go); Read returns the same events either way.
	Events bool
}

// ErrClosed is returned by Read once the tracer is closed.
var ErrClosed = errors.New("tracer closed")

// ErrNoEvent is returned by Read when PollInterval passed without an event.
var ErrNoEvent = errors.New("no event within the poll interval")

// Tracer owns the loaded BPF objects, their links and the ring-buffer reader.
type Tracer struct {
	maps     bpfMaps
	programs []*ebpf.Program // every program loaded
	links    []link.Link
	attached []attachment // in the order of links
	reader   *ringbuf.Reader
	rec      ringbuf.Record
	clock    Clock
	features Features
	poll     time.Duration

	// The aggregated mode: the walk program, and the events of the last
	// record read, handed out one by one.
	walk     *ebpf.Program
	pending  [ConnSlots]Event
	npending int
	next     int
	stopping stopPhase
	walked   *walkReader
	walking  bool       // Read's: the walk is being read
	walkMu   sync.Mutex // walked: Read reads it, Close may close it
	lateOnce sync.Once
	cfg      Config
	records  [4]uint64 // by RecordKind

	stopOnce  sync.Once
	stopErr   error
	closeOnce sync.Once
	closeErr  error
	final     atomic.Pointer[Counters]
	drained   bool
}

// Open loads the BPF programs, sets the filters and attaches every program
// the kernel supports. Either all of them attach or none stays attached.
func Open(cfg Config) (t *Tracer, err error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	feats, err := Probe()
	if err != nil {
		return nil, err
	}
	if err := feats.Usable(); err != nil {
		return nil, err
	}
	if len(cfg.Cgroups) > 0 && !feats.Has(SocketCgroups) {
		return nil, fmt.Errorf("filtering by cgroup needs %s", SocketCgroups)
	}
	spec, attach, err := prepare(cfg, feats)
	if err != nil {
		return nil, err
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		return nil, fmt.Errorf("loading BPF programs: %w", err)
	}
	// Closes what was not handed over below: the .rodata copy, which the
	// programs hold a reference of their own to.
	defer coll.Close()
	t = &Tracer{features: feats, poll: cfg.PollInterval, cfg: cfg}
	defer func() {
		if err != nil {
			t.Close()
			t = nil
		}
	}()
	if err := coll.Assign(&t.maps); err != nil {
		return nil, fmt.Errorf("loading BPF maps: %w", err)
	}
	for i := range attach {
		// The one step from a spec to its loaded program: coll.Assign
		// cannot fill bpfPrograms, whose programs this kernel does not
		// take were never loaded.
		attach[i].prog = coll.DetachProgram(attach[i].spec.Name)
		t.programs = append(t.programs, attach[i].prog)
	}
	if !cfg.Events {
		t.walk = coll.DetachProgram(walkProgram)
		t.programs = append(t.programs, t.walk)
	}
	if err := t.attach(attach); err != nil {
		return nil, err
	}
	if t.reader, err = ringbuf.NewReader(t.maps.Events); err != nil {
		return nil, fmt.Errorf("opening ring buffer reader: %w", err)
	}
	if t.clock, err = bootClock(); err != nil {
		return nil, err
	}
	if cfg.WakeupBytes > 0 && t.poll == 0 {
		t.poll = 200 * time.Millisecond
	}
	return t, nil
}

// prepare reads the BPF object, sets its load-time constants and sizes,
// and keeps only the programs this kernel's tracepoints take.
func prepare(cfg Config, feats Features) (*ebpf.CollectionSpec, []attachment, error) {
	spec, err := loadBpf()
	if err != nil {
		return nil, nil, fmt.Errorf("loading BPF object: %w", err)
	}
	var specs bpfSpecs
	if err := spec.Assign(&specs); err != nil {
		return nil, nil, fmt.Errorf("reading BPF object: %w", err)
	}
	if err := configure(&specs, cfg, feats); err != nil {
		return nil, nil, err
	}
	attach := feats.choosePrograms(&specs.bpfProgramSpecs)
	keepOnly(spec, attach)
	if !cfg.Events {
		spec.Programs[walkProgram] = specs.WalkConns
	}
	return spec, attach, nil
}

// attach links every loaded program to its tracepoint; on an error the
// links made so far stay in t for Close.
func (t *Tracer) attach(progs []attachment) error {
	for _, a := range progs {
		l, err := link.AttachTracing(link.TracingOptions{Program: a.prog, AttachType: ebpf.AttachTraceRawTp})
		if err != nil {
			return fmt.Errorf("attaching %s: %w", a.tracepoint, err)
		}
		t.attached = append(t.attached, a)
		t.links = append(t.links, l)
	}
	return nil
}

func (c *Config) validate() error {
	if c.RingBufferBytes == 0 {
		c.RingBufferBytes = DefaultRingBufferBytes
	}
	page := os.Getpagesize()
	n := c.RingBufferBytes
	if n < page || n&(n-1) != 0 {
		return fmt.Errorf("ring buffer size %d: must be a power of two of at least %d bytes", n, page)
	}
	if len(c.Ports) > MaxFilter {
		return fmt.Errorf("%d ports given: at most %d can be filtered in the kernel", len(c.Ports), MaxFilter)
	}
	if len(c.NetNS) > MaxFilter {
		return fmt.Errorf("%d network namespaces given: at most %d can be filtered in the kernel", len(c.NetNS), MaxFilter)
	}
	if len(c.PIDs) > MaxFilter || len(c.Comms) > MaxFilter || len(c.Cgroups) > MaxFilter {
		return fmt.Errorf("%d processes, %d task names and %d cgroups given: at most %d of each can be filtered in the kernel",
			len(c.PIDs), len(c.Comms), len(c.Cgroups), MaxFilter)
	}
	for _, name := range c.Comms {
		if err := CheckComm(name); err != nil {
			return err
		}
	}
	if c.WakeupBytes >= uint64(n) {
		return fmt.Errorf("wakeup threshold %d must be below the ring buffer size %d", c.WakeupBytes, n)
	}
	return nil
}

// CheckComm tells whether name can match a task name: the kernel keeps
// the first 15 bytes of a program's name (TASK_COMM_LEN, with its NUL).
func CheckComm(name string) error {
	switch {
	case name == "":
		return errors.New("an empty task name matches nothing")
	case len(name) > 15:
		return fmt.Errorf("task name %q is longer than the kernel keeps: use its first 15 bytes, %q, as /proc/PID/comm shows", name, name[:15])
	case strings.IndexByte(name, 0) >= 0:
		return errors.New("a task name holds no NUL byte")
	}
	return nil
}

// configure sizes the ring buffer and sets the BPF side's constants.
func configure(s *bpfSpecs, cfg Config, f Features) error {
	s.Events.MaxEntries = uint32(cfg.RingBufferBytes)
	var ports [MaxFilter]uint16
	copy(ports[:], cfg.Ports)
	var netns [MaxFilter]uint32
	copy(netns[:], cfg.NetNS)
	var pids [MaxFilter]uint32
	copy(pids[:], cfg.PIDs)
	var comms [MaxFilter][16]byte
	for i, name := range cfg.Comms {
		copy(comms[i][:], name)
	}
	var cgroups [MaxFilter]uint64
	var levels [MaxFilter]uint32
	for i, cg := range cfg.Cgroups {
		cgroups[i], levels[i] = cg.ID, cg.Level
	}
	sets := []struct {
		v     *ebpf.VariableSpec
		value any
	}{
		{s.FilterPortCount, uint32(len(cfg.Ports))},
		{s.FilterPorts, ports},
		{s.FilterNetnsCount, uint32(len(cfg.NetNS))},
		{s.FilterNetns, netns},
		{s.FilterPidCount, uint32(len(cfg.PIDs))},
		{s.FilterPids, pids},
		{s.FilterCommCount, uint32(len(cfg.Comms))},
		{s.FilterComms, comms},
		{s.FilterCgroupCount, uint32(len(cfg.Cgroups))},
		{s.FilterCgroups, cgroups},
		{s.FilterCgroupLevels, levels},
		{s.WakeupBytes, cfg.WakeupBytes},
		{s.Aggregate, !cfg.Events},
		{s.EarlyEstablished, !cfg.Events},
		{s.ListenOverflowReason, f.listenOverflowReason},
		{s.NoSocketReason, f.noSocketReason},
	}
	for _, set := range sets {
		if err := set.v.Set(set.value); err != nil {
			return fmt.Errorf("setting %s: %w", set.v.Name, err)
		}
	}
	return nil
}

// bootClock samples the offset between the wall clock and CLOCK_BOOTTIME,
// the clock of bpf_ktime_get_boot_ns(): the boot clock read between two
// wall-clock reads, their midpoint taken. A reader preempted between the
// reads (a busy machine) would be off by half the gap, and two recorders
// whose exports are merged would disagree by that much: the offset is
// taken from the tightest of several tries.
func bootClock() (Clock, error) {
	var ts, mono unix.Timespec
	var offset int64
	best := time.Duration(math.MaxInt64)
	for range 16 {
		before := time.Now()
		if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
			return Clock{}, fmt.Errorf("reading CLOCK_BOOTTIME: %w", err)
		}
		if gap := time.Since(before); gap < best {
			best, offset = gap, before.UnixNano()+gap.Nanoseconds()/2-ts.Nano()
		}
	}
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &mono); err != nil {
		return Clock{}, fmt.Errorf("reading CLOCK_MONOTONIC: %w", err)
	}
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return Clock{}, fmt.Errorf("reading CLOCK_BOOTTIME: %w", err)
	}
	return Clock{OffsetNs: offset, MonoToBootNs: ts.Nano() - mono.Nano()}, nil
}

// Features reports what this kernel let the tracer attach.
func (t *Tracer) Features() Features { return t.features }

// Clock returns the boot-clock to wall-clock conversion in use.
func (t *Tracer) Clock() Clock { return t.clock }

// Read blocks until the next event and decodes it into ev. It returns
// ErrClosed once Stop has been called and every event already in the ring
// buffer (and, in the aggregated mode, every connection still open) has
// been read, or after Close. Records that fail to decode are returned as
// errors and may be skipped by the caller.
func (t *Tracer) Read(ev *Event) error {
	for {
		if t.next < t.npending {
			*ev = t.pending[t.next]
			t.next++
			return nil
		}
		if t.drained {
			return ErrClosed
		}
		if t.walking {
			if err := t.readWalk(); err != nil {
				return err
			}
			continue
		}
		raw, err := t.readRing()
		switch {
		case err == nil:
			if len(raw) == RecordSize && t.walk != nil {
				if err := t.expand(raw); err != nil {
					return err
				}
				continue
			}
			return Decode(raw, t.clock, ev)
		case errors.Is(err, ringbuf.ErrFlushed):
			if err := t.nextStopPhase(); err != nil {
				return err
			}
		default:
			return err
		}
	}
}

// readRing takes the next sample off the ring buffer.
func (t *Tracer) readRing() ([]byte, error) {
	if t.poll > 0 {
		t.reader.SetDeadline(time.Now().Add(t.poll))
	}
	err := t.reader.ReadInto(&t.rec)
	switch {
	case err == nil:
		return t.rec.RawSample, nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		return nil, ErrNoEvent
	case errors.Is(err, ringbuf.ErrFlushed):
		return nil, err
	case errors.Is(err, ringbuf.ErrClosed), errors.Is(err, os.ErrClosed):
		t.drained = true
		return nil, ErrClosed
	}
	return nil, fmt.Errorf("reading ring buffer: %w", err)
}

// expand decodes a connection record into the pending events.
func (t *Tracer) expand(raw []byte) error {
	info, err := DecodeRecord(raw, t.clock, t.pending[:])
	t.next, t.npending = 0, info.Events
	if err != nil {
		t.npending = 0
		return err
	}
	t.records[info.Kind]++
	return nil
}

// Aggregated tells whether the kernel aggregates connections into records
// (the default) rather than sending every event (Config.Events).
func (t *Tracer) Aggregated() bool { return t.walk != nil }

// Records counts the connection records read: sent at the close, sent
// early (at ESTABLISHED or with full slots), and read by the walk.
func (t *Tracer) Records() (closed, early, open uint64) {
	return t.records[RecordClosed], t.records[RecordEarly], t.records[RecordOpen]
}

// Counters are the kernel side's own tallies, summed over CPUs.
type Counters struct {
	// Lost counts events dropped because the ring buffer was full.
	Lost uint64
	// StorageFailures counts listeners whose owner could not be recorded.
	StorageFailures uint64
	// Unreadable counts events dropped because the packet they describe
	// could not be read (a reset sent or an accept-queue drop).
	Unreadable uint64
	// LostRecords counts connection records (aggregated mode) dropped
	// because the ring buffer was full: each lost up to ConnSlots events.
	LostRecords uint64
	// RecordsFull counts records sent before the close because a
	// connection had more events than its storage holds (not a loss).
	RecordsFull uint64
	// Recursion has one entry per tracepoint attached, in attach order.
	Recursion []RecursionMisses
}

// RecursionMisses is what the kernel's recursion guard did to one
// tracepoint's programs: the kernel skips a tracing program that fires on
// a CPU where it already runs and counts that only in the program's
// recursion_misses (see the running map in bpf/tcpscope.bpf.c).
type RecursionMisses struct {
	Tracepoint string // "sock/inet_sock_set_state"
	Program    string // the main program, "handle_set_state"
	// Misses is the main program's recursion_misses: events it skipped.
	Misses uint64
	// Nested is how many events its _nested twin handled for it.
	Nested uint64
	// NestedMisses is the twin's own recursion_misses. They cost nothing:
	// the twin is only busy when the main program is not, and the main
	// program then handled the event.
	NestedMisses uint64
}

// Lost is how many events neither program handled.
func (r RecursionMisses) Lost() uint64 {
	if r.Misses > r.Nested {
		return r.Misses - r.Nested
	}
	return 0
}

// Dropped is every event the kernel side dropped: ring buffer full,
// unreadable packets and recursion skips nobody handled.
func (c Counters) Dropped() uint64 {
	n := c.Lost + c.Unreadable + c.LostRecords
	for _, r := range c.Recursion {
		n += r.Lost()
	}
	return n
}

// RecursionLost sums Lost over the tracepoints.
func (c Counters) RecursionLost() uint64 {
	var n uint64
	for _, r := range c.Recursion {
		n += r.Lost()
	}
	return n
}

// Counters reads the per-CPU counters (their last values after Close).
func (t *Tracer) Counters() (Counters, error) {
	if f := t.final.Load(); f != nil {
		return *f, nil
	}
	read := func(idx bpfCounter) (uint64, error) {
		var perCPU []uint64
		if err := t.maps.Counters.Lookup(uint32(idx), &perCPU); err != nil {
			return 0, fmt.Errorf("reading counter %d: %w", idx, err)
		}
		var sum uint64
		for _, v := range perCPU {
			sum += v
		}
		return sum, nil
	}
	var c Counters
	var err error
	// Misses first, what the twins handled after: a skip is counted before
	// its twin runs, so only a skip whose twin, on another CPU, has not yet
	// started when the counters are read shows as lost (for that reading;
	// the one after Stop is exact). The other order would show every skip
	// handled between the two reads.
	misses := make([]uint64, len(t.attached))
	for i, a := range t.attached {
		st, err := a.prog.Stats()
		if err != nil {
			return c, fmt.Errorf("reading statistics of %s: %w", a.name(), err)
		}
		misses[i] = st.RecursionMisses
	}
	if c.Lost, err = read(bpfCounterCOUNTER_LOST); err != nil {
		return c, err
	}
	if c.StorageFailures, err = read(bpfCounterCOUNTER_STORAGE_FAIL); err != nil {
		return c, err
	}
	if c.Unreadable, err = read(bpfCounterCOUNTER_UNREADABLE); err != nil {
		return c, err
	}
	if c.LostRecords, err = read(bpfCounterCOUNTER_LOST_RECORDS); err != nil {
		return c, err
	}
	if c.RecordsFull, err = read(bpfCounterCOUNTER_RECORDS_FULL); err != nil {
		return c, err
	}
	for i, a := range t.attached {
		if !a.nested {
			c.Recursion = append(c.Recursion, RecursionMisses{Tracepoint: a.tracepoint, Program: a.name(), Misses: misses[i]})
			continue
		}
		r := &c.Recursion[len(c.Recursion)-1]
		r.NestedMisses = misses[i]
		if r.Nested, err = read(bpfCounterCOUNTER_NESTED + bpfCounter(a.hook)); err != nil {
			return c, err
		}
	}
	return c, nil
}

// Stop detaches every program, so no new event is produced, and lets Read
// drain what the ring buffer already holds before it returns ErrClosed.
// It is safe to call more than once and from another goroutine.
func (t *Tracer) Stop() error {
	t.stopOnce.Do(func() {
		var errs []error
		for i, l := range t.links {
			if t.detachedLate(i) {
				continue // see walk.go
			}
			if err := l.Close(); err != nil {
				errs = append(errs, fmt.Errorf("detaching: %w", err))
			}
		}
		if t.reader != nil {
			if err := t.reader.Flush(); err != nil {
				errs = append(errs, fmt.Errorf("flushing ring buffer: %w", err))
			}
		}
		t.stopErr = errors.Join(errs...)
	})
	return t.stopErr
}

// Close stops the tracer, unblocks Read and frees the BPF objects. It is
// safe to call more than once and from another goroutine.
func (t *Tracer) Close() error {
	t.closeOnce.Do(func() {
		errs := []error{t.Stop(), t.detachLate()}
		t.closeWalk()
		if t.maps.Counters != nil {
			if c, err := t.Counters(); err == nil {
				t.final.Store(&c)
			}
		}
		if t.reader != nil {
			errs = append(errs, t.reader.Close())
		}
		for _, p := range t.programs {
			p.Close()
		}
		errs = append(errs, t.maps.Close())
		t.closeErr = errors.Join(errs...)
	})
	return t.closeErr
}

// AdoptListener tells the kernel the owner of a listener that was open
// before tracing started (the process holding its socket), found by the
// caller: its connections then have that owner, as if its listen() had
// been seen, and the pid and comm filters can keep them (see
// preexisting in bpf/tcpscope.bpf.c). Only with those filters, and only
// for an owner they want: the kernel keeps no more.
func (t *Tracer) AdoptListener(netns uint32, port uint16, pid uint32, comm string) error {
	if len(t.cfg.PIDs) == 0 && len(t.cfg.Comms) == 0 {
		return nil
	}
	key := bpfListenKey{Netns: netns, Port: uint32(port)}
	owner := bpfListenOwner{Tgid: pid}
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&owner.Comm[0])), len(owner.Comm)), comm)
	if err := t.maps.Preexisting.Put(&key, &owner); err != nil {
		return fmt.Errorf("adopting the listener on port %d: %w", port, err)
	}
	return nil
}

// Pending is how many bytes of events wait in the ring buffer.
func (t *Tracer) Pending() int { return t.reader.AvailableBytes() }

// Attached is how many tracepoints are attached (each serves one with a
// main program and its _nested twin).
func (t *Tracer) Attached() int { return len(t.links) / 2 }
