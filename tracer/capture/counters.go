package capture

import (
	"cmp"
	"slices"
	"time"

	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/netns"
)

// maxHeldNamespaces bounds the namespaces a recording keeps open.
const maxHeldNamespaces = 512

// maxPIDTries bounds the processes tried to open one namespace seen in
// events before falling back to a scan of /proc.
const maxPIDTries = 16

// counterEvery is how often the counters of a namespace without a traced
// listener are read; namespaces with one are read on every tick.
const counterEvery = time.Second

// nsCounters is the counter history of one namespace.
type nsCounters struct {
	baseline netns.Counters // at the start, or zero for a namespace created since
	last     netns.Counters
	lastRead time.Time
	listen   netns.ListenCounters // at the last sample
	created  bool                 // created during the recording: counted from zero
}

// counterBook follows the kernel counters of every namespace a recording
// sees. A namespace is opened the first time an event names it and held
// (its descriptor keeps it from being freed) until the recording ends, so
// one created and deleted meanwhile still gets its final reading.
type counterBook struct {
	// census: the namespaces alive at the start, with their counters; nil
	// when --netns named them (all are opened at the start).
	census  map[uint32]netns.Existing
	ns      map[uint32]*nsCounters
	tried   map[uint32]map[uint32]bool // pids tried per namespace not yet opened
	scanned map[uint32]bool            // namespaces /proc was scanned for
	lost    map[uint32]bool            // seen in events, never opened
}

func newCounterBook(census map[uint32]netns.Existing) *counterBook {
	return &counterBook{census: census, ns: map[uint32]*nsCounters{}, tried: map[uint32]map[uint32]bool{},
		scanned: map[uint32]bool{}, lost: map[uint32]bool{}}
}

// startCounters records the baseline of a namespace opened at the start.
func (r *recording) startCounters(ino uint32, ns *netns.NS) {
	c, err := ns.Counters()
	if err != nil {
		return
	}
	r.book.ns[ino] = &nsCounters{baseline: c, last: c, lastRead: time.Now(), listen: listenOf(c)}
}

// adopt takes a namespace first seen in events. Its baseline is its census
// reading when it is the namespace the census saw under that inode (same
// SO_NETNS_COOKIE: inodes are reused, cookies are not); otherwise it was
// created during the recording and its counters started from zero.
func (r *recording) adopt(ino uint32, ns *netns.NS) {
	r.namespaces[ino] = ns
	delete(r.book.tried, ino)
	delete(r.book.lost, ino)
	c, err := ns.Counters()
	if err != nil {
		return
	}
	nc := &nsCounters{baseline: netns.Counters{}, last: c, lastRead: time.Now(), created: true, listen: listenOf(c)}
	if r.book.census == nil {
		// No census to tell: the first reading is the baseline.
		nc.baseline, nc.created = c, false
	} else if e, ok := r.book.census[ino]; ok {
		if cookie, _ := ns.Cookie(); cookie == e.Cookie {
			nc.baseline, nc.created = e.Counters, false
		}
	}
	r.book.ns[ino] = nc
}

// seeNetNS is the recorder's OnNetNS: it opens the namespace of an event
// through the task the event names, when that task is still in it. The
// thread first: setns() moves one thread, not its process. In softirq
// context the task is whichever one was interrupted, so a few are tried
// before sampleKernel falls back to a scan of /proc.
func (r *recording) seeNetNS(ev *tracer.Event) bool {
	if _, ok := r.namespaces[ev.NetNS]; ok || r.book.scanned[ev.NetNS] {
		return true // open, or not found even by a scan of /proc
	}
	if r.book.census == nil {
		return true // --netns: every namespace traced was opened at the start
	}
	if len(r.namespaces) >= maxHeldNamespaces {
		r.book.lost[ev.NetNS] = true
		return true
	}
	tried := r.book.tried[ev.NetNS]
	if tried == nil {
		tried = map[uint32]bool{}
		r.book.tried[ev.NetNS] = tried
		r.book.lost[ev.NetNS] = true
	}
	for _, pid := range []uint32{ev.PID, ev.TGID, ev.OwnerTGID} {
		if pid == 0 || tried[pid] || len(tried) >= maxPIDTries {
			continue
		}
		tried[pid] = true
		if ns, err := netns.OpenPID(pid, ev.NetNS); err == nil {
			r.adopt(ev.NetNS, ns)
			return true
		}
	}
	return len(tried) >= maxPIDTries
}

// sampleKernel is the recorder's OnSample. Where a traced listener lives,
// on every tick: one sock_diag dump of the namespace's listeners, whose
// accept queues go to the builder with the interval's ListenOverflows and
// ListenDrops increments. Every held namespace, each second: all its
// counters, kept as its last reading.
func (r *recording) sampleKernel(now time.Time) {
	for ino := range r.book.lost {
		// Not found through the events' tasks: one scan of /proc.
		if r.book.scanned[ino] || len(r.namespaces) >= maxHeldNamespaces {
			continue
		}
		r.book.scanned[ino] = true
		if ns, err := netns.Find(ino); err == nil {
			r.adopt(ino, ns)
		}
	}
	live := r.rec.Builder.ListenerNamespaces()
	for ino, ns := range r.namespaces {
		nc := r.book.ns[ino]
		if nc == nil {
			continue
		}
		all := now.Sub(nc.lastRead) >= counterEvery
		if !live[ino] && !all {
			continue
		}
		sm, err := ns.Sample(all, live[ino])
		if err != nil {
			continue
		}
		if live[ino] {
			qs := make([]tracer.QueueSample, len(sm.Listeners))
			for i, sk := range sm.Listeners {
				qs[i] = tracer.QueueSample{Cookie: sk.Cookie, Local: sk.Local, Queue: sk.RQueue, Backlog: sk.WQueue}
			}
			r.rec.Builder.SampleQueues(ino, qs, sub(sm.Listen.Overflows, nc.listen.Overflows), sub(sm.Listen.Drops, nc.listen.Drops))
		}
		nc.listen = sm.Listen
		if all {
			nc.last, nc.lastRead = sm.Counters, now
		}
	}
	if r.sampler != nil {
		r.sampler.Watch(r.rec.Builder)
	}
}

func sub(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return 0
}

func listenOf(c netns.Counters) netns.ListenCounters {
	return netns.ListenCounters{Overflows: c["TcpExt.ListenOverflows"], Drops: c["TcpExt.ListenDrops"]}
}

// counterDeltas reads every held namespace a last time and returns what
// moved since its baseline; a namespace that cannot be read keeps its last
// reading.
func (r *recording) counterDeltas() []CounterDelta {
	var deltas []CounterDelta
	for ino, nc := range r.book.ns {
		if ns, ok := r.namespaces[ino]; ok {
			if c, err := ns.Counters(); err == nil {
				nc.last = c
			}
		}
		d := netns.Delta(nc.baseline, nc.last)
		overflows, drops, sampled := r.rec.Builder.Unattributed(ino)
		for _, name := range r.reported(d) {
			if d[name] == 0 {
				continue
			}
			cd := CounterDelta{NetNS: ino, Counter: name, Delta: d[name], Created: nc.created}
			switch {
			case !sampled:
			case name == "TcpExt.ListenOverflows":
				cd.Unattributed = &overflows
			case name == "TcpExt.ListenDrops":
				cd.Unattributed = &drops
			}
			deltas = append(deltas, cd)
		}
	}
	slices.SortFunc(deltas, func(a, b CounterDelta) int {
		return cmp.Or(cmp.Compare(a.NetNS, b.NetNS), cmp.Compare(a.Counter, b.Counter))
	})
	return deltas
}

// reported names the counters of a delta the summary reports: those of
// Options.Counters, or every one.
func (r *recording) reported(d netns.Counters) []string {
	if r.opts.Counters != nil {
		return r.opts.Counters
	}
	names := make([]string, 0, len(d))
	for name := range d {
		names = append(names, name)
	}
	return names
}
