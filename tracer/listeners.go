package tracer

import (
	"net/netip"
	"time"

	"github.com/tcpscope/tcpscope/tracer/cgroups"
)

// Listener is the story of one listening socket: what its accept queue and
// handshakes went through while traced.
type Listener struct {
	ID        uint64 // the listening socket's cookie
	NetNS     uint32
	Local     netip.AddrPort
	PID       uint32 // the process that called listen()
	Comm      string
	CgroupID  uint64 // cgroup v2 id of the process that made the socket; 0 unknown
	Backlog   uint32 // sk_max_ack_backlog
	PeakQueue uint32 // the largest accept queue seen (sk_ack_backlog), in events or samples
	Queue     uint32 // the accept queue at the last event or sample that read it
	Children  uint64 // connections created from it (final ACK accepted)
	SynAcks   uint64 // SYN-ACK retransmits of its requests
	Overflows uint64 // observed: final ACKs dropped because the accept queue was full (6.15+)
	// Sampled accept queue (SampleQueues): how many samples found the
	// listener, and how many of those found its accept queue full.
	QueueSamples, FullSamples uint64
	// Attributed: the namespace's ListenOverflows and ListenDrops
	// increments of the sampling intervals in which this listener was the
	// only listener of its namespace with a full accept queue.
	OverflowsAttributed, DropsAttributed uint64
	// Traced clients of the same namespace that retransmitted a SYN toward
	// this listener, and their SYN retransmits.
	SynRetransmitClients, ClientSynRetransmits uint64
	Syncookies                                 uint64 // connections completed through a SYN cookie
	Abandoned                                  uint64 // requests that died without a connection
	Resets                                     uint64 // resets the listening socket itself sent
	SynRecv                                    Histogram
	Start, End                                 time.Time
	Preexisting                                bool // listening before tracing started
	Open                                       bool // still listening when tracing stopped

	// Cgroup is what CgroupID names, filled when the listener is emitted.
	Cgroup cgroups.Info
}

// listener returns the listener of a server-side event, creating a
// preexisting one when its CLOSE->LISTEN was not seen. Children of a
// listener that predates the trace carry no listener cookie (its socket
// storage was never set), so such a listener is first known by its port
// under a synthetic id, and takes its real cookie from the first event
// that names it (a SYN-ACK retransmit or an overflow drop).
func (b *Builder) listener(ev *Event, id uint64) *Listener {
	l := b.findListener(ev, id)
	if l.CgroupID == 0 {
		// Seeded from sock_diag, which does not say: every event about a
		// listener or its children carries the listener's cgroup.
		l.CgroupID = ev.CgroupID
	}
	return l
}

func (b *Builder) findListener(ev *Event, id uint64) *Listener {
	key := listenKey{ev.NetNS, ev.Local.Port()}
	known := b.listenerByPort[key]
	if id != 0 {
		if l, ok := b.listenerSet[id]; ok {
			return l
		}
		if l, ok := b.listenerSet[known]; ok && known >= syntheticIDBase {
			delete(b.listenerSet, known)
			l.ID = id
			b.listenerSet[id] = l
			b.listenerByPort[key] = id
			return l
		}
	} else if l, ok := b.listenerSet[known]; ok {
		return l
	}
	if id == 0 {
		b.nextID++
		id = b.nextID
	}
	l := &Listener{ID: id, NetNS: ev.NetNS, Local: netip.AddrPortFrom(netip.Addr{}, ev.Local.Port()),
		Start: ev.Time, Preexisting: true}
	if ev.HasOwner {
		l.PID, l.Comm = ev.OwnerTGID, b.comm(ev.OwnerComm)
	}
	b.listenerSet[id] = l
	b.listenerByPort[key] = id
	return l
}

func (b *Builder) onListen(ev *Event) {
	l := &Listener{ID: ev.Cookie, NetNS: ev.NetNS, Local: ev.Local, PID: ev.TGID, Comm: b.comm(ev.Comm),
		CgroupID: ev.CgroupID, Backlog: ev.MaxBacklog, Start: ev.Time}
	b.listenerSet[ev.Cookie] = l
	b.listenerByPort[listenKey{ev.NetNS, ev.Local.Port()}] = ev.Cookie
}

func (b *Builder) onUnlisten(ev *Event) {
	k := listenKey{ev.NetNS, ev.Local.Port()}
	if b.listenerByPort[k] == ev.Cookie {
		delete(b.listenerByPort, k)
	}
	if l, ok := b.listenerSet[ev.Cookie]; ok {
		delete(b.listenerSet, ev.Cookie)
		l.End = ev.Time
		b.cfg.EmitListener(l)
	}
}

func (l *Listener) sawQueue(backlog, max uint32) {
	l.Queue = backlog
	if backlog > l.PeakQueue {
		l.PeakQueue = backlog
	}
	if max > l.Backlog {
		l.Backlog = max
	}
}

// SynDropsAttributed is how many of the attributed overflows were SYNs:
// the attributed ListenOverflows less the final-ACK drops observed. A SYN
// turned away by a full accept queue has no tracepoint: tcp_conn_request()
// sees sk_acceptq_is_full(), counts ListenOverflows and ListenDrops
// (tcp_listendrop()) and consumes the skb, so only the counters show it.
func (l *Listener) SynDropsAttributed() uint64 {
	if l.OverflowsAttributed > l.Overflows {
		return l.OverflowsAttributed - l.Overflows
	}
	return 0
}

// QueueSample is one listening socket of a namespace as sock_diag lists it.
type QueueSample struct {
	Cookie  uint64
	Local   netip.AddrPort
	Queue   uint32 // sk_ack_backlog
	Backlog uint32 // sk_max_ack_backlog
}

// full mirrors sk_acceptq_is_full(): the queue may hold one connection
// more than the backlog.
func (q QueueSample) full() bool { return q.Queue > q.Backlog }

// nsQueues is what the last sample of a namespace found.
type nsQueues struct {
	full      map[uint64]bool // cookies of the listeners found full
	overflows map[*Listener]uint64
	pending   *interval // the last interval, decided at the next sample
}

// interval is one sampling interval of a namespace awaiting attribution.
type interval struct {
	netns            uint32
	overflows, drops uint64
	candidates       map[uint64]bool      // cookies (or ids) of listeners full in it
	traced           map[uint64]*Listener // traced listeners by sampled cookie
}

// ListenerNamespaces returns the namespaces that have a traced listener
// now: those whose accept queues are worth sampling.
func (b *Builder) ListenerNamespaces() map[uint32]bool {
	out := map[uint32]bool{}
	for _, l := range b.listenerSet {
		out[l.NetNS] = true
	}
	return out
}

// ListenerLoad is a listening socket's load now, for live gauges.
type ListenerLoad struct {
	NetNS uint32
	Local netip.AddrPort
	Queue uint32 // accept queue at the last event or sample
	// Overflows: what a full accept queue turned away so far, the final
	// ACKs seen dropped and the SYN drops attributed to it.
	Overflows uint64
}

// ListenerLoads returns the load of every listener followed now.
func (b *Builder) ListenerLoads() []ListenerLoad {
	out := make([]ListenerLoad, 0, len(b.listenerSet))
	for _, l := range b.listenerSet {
		out = append(out, ListenerLoad{NetNS: l.NetNS, Local: l.Local, Queue: l.Queue, Overflows: l.Overflows + l.SynDropsAttributed()})
	}
	return out
}

// SampleQueues takes one sample of a namespace's listeners (all of them,
// traced or not) together with how much its ListenOverflows and
// ListenDrops counters grew since the previous sample. The increments go to
// a traced listener when it is the only listener of the namespace whose
// accept queue was full at either end of the interval, or whose final-ACK
// overflow drops were observed in it; otherwise they stay unattributed.
// Events reach the builder up to a ring-buffer poll (100 ms) after the
// counters moved, so an interval is decided at the next sample, with the
// drops observed meanwhile counted in both.
func (b *Builder) SampleQueues(netns uint32, samples []QueueSample, overflows, drops uint64) {
	prev := b.queues[netns]
	now := &nsQueues{full: map[uint64]bool{}, overflows: map[*Listener]uint64{}}
	cur := &interval{netns: netns, overflows: overflows, drops: drops, candidates: map[uint64]bool{}, traced: map[uint64]*Listener{}}
	if prev != nil {
		for id := range prev.full {
			cur.candidates[id] = true
		}
	}
	for _, q := range samples {
		if q.full() {
			now.full[q.Cookie] = true
			cur.candidates[q.Cookie] = true
		}
		l := b.listenerSet[q.Cookie]
		if l == nil {
			// A listener that predates the trace is known by its port
			// until an event gives its cookie.
			if id, ok := b.listenerByPort[listenKey{netns, q.Local.Port()}]; ok && id >= syntheticIDBase {
				l = b.listenerSet[id]
			}
		}
		if l == nil || l.NetNS != netns {
			continue
		}
		cur.traced[q.Cookie] = l
		l.QueueSamples++
		if q.full() {
			l.FullSamples++
		}
		l.sawQueue(q.Queue, q.Backlog)
	}
	observed := b.observedOverflows(netns, prev, now, cur)
	if prev != nil && prev.pending != nil {
		for id := range observed {
			prev.pending.candidates[id] = true
			if _, ok := prev.pending.traced[id]; !ok {
				prev.pending.traced[id] = cur.traced[id]
			}
		}
		b.attribute(prev.pending)
	}
	now.pending = cur
	b.queues[netns] = now
}

// observedOverflows notes each traced listener's overflow count in now,
// and returns (and makes candidates of cur) those whose final-ACK overflow
// drops were observed since the previous sample.
func (b *Builder) observedOverflows(netns uint32, prev, now *nsQueues, cur *interval) map[uint64]bool {
	observed := map[uint64]bool{}
	for _, l := range b.listenerSet {
		if l.NetNS != netns {
			continue
		}
		now.overflows[l] = l.Overflows
		if prev != nil && l.Overflows > prev.overflows[l] {
			// A final-ACK overflow was observed: it was full meanwhile.
			// Its sample's cookie names it (a listener known by port has
			// a synthetic id).
			id := l.ID
			for c, t := range cur.traced {
				if t == l {
					id = c
				}
			}
			observed[id] = true
			cur.candidates[id] = true
			if _, ok := cur.traced[id]; !ok {
				cur.traced[id] = l
			}
		}
	}
	return observed
}

// attribute decides one interval.
func (b *Builder) attribute(iv *interval) {
	if iv.overflows == 0 && iv.drops == 0 {
		return
	}
	if len(iv.candidates) == 1 {
		for id := range iv.candidates {
			if l := iv.traced[id]; l != nil && l.End.IsZero() {
				l.OverflowsAttributed += iv.overflows
				l.DropsAttributed += iv.drops
				return
			}
		}
	}
	u := b.unattributed[iv.netns]
	u[0] += iv.overflows
	u[1] += iv.drops
	b.unattributed[iv.netns] = u
}

// settleQueues decides the intervals still pending: at the end, every
// event has been read.
func (b *Builder) settleQueues() {
	for _, q := range b.queues {
		if q.pending != nil {
			b.attribute(q.pending)
			q.pending = nil
		}
	}
}

// Unattributed returns a namespace's ListenOverflows and ListenDrops
// increments, while its listeners were sampled, that no single listener
// explains; sampled is false when its listeners never were.
func (b *Builder) Unattributed(netns uint32) (overflows, drops uint64, sampled bool) {
	u := b.unattributed[netns]
	_, sampled = b.queues[netns]
	return u[0], u[1], sampled
}

// synRetransmitToward links a client's SYN retransmit to the traced
// listener of its namespace it is aimed at: same port, and the listener's
// address, or for a wildcard listener a local one (loopback, or the
// client's own source address, which the kernel picks for a local
// destination).
func (b *Builder) synRetransmitToward(c *Connection, ev *Event) {
	if c.target == nil {
		l := b.listenerSet[b.listenerByPort[listenKey{ev.NetNS, ev.Remote.Port()}]]
		if l == nil {
			return
		}
		to := ev.Remote.Addr()
		if a := l.Local.Addr(); a.IsValid() && !a.IsUnspecified() {
			if a != to {
				return
			}
		} else if !to.IsLoopback() && to != ev.Local.Addr() {
			return
		}
		c.target = l
		l.SynRetransmitClients++
	}
	c.target.ClientSynRetransmits++
}

// onOverflow: a final ACK was dropped because the listener's accept queue
// was full. The request socket survives (or, for a SYN cookie, the client
// resends) and the connection it belongs to (same tuple) is flagged when it
// shows up, or now if already followed.
func (b *Builder) onOverflow(ev *Event) {
	if l := b.listener(ev, ev.ListenerCookie); l != nil {
		l.Overflows++
		l.sawQueue(ev.Backlog, ev.MaxBacklog)
	}
	d := overflowDrop{at: ev.Time, cookie: ev.Syncookie}
	k := newTupleKey(ev.NetNS, ev.Local, ev.Remote)
	if c, ok := b.tuples[k]; ok {
		c.overflowed(d)
		return
	}
	if len(b.overflowed) < maxOverflowed {
		b.overflowed[k] = d
	}
}

// overflowDrop is one final ACK dropped for a full accept queue.
type overflowDrop struct {
	at     time.Time
	cookie bool // it carried a SYN cookie: no request socket waited
}

func (c *Connection) overflowed(d overflowDrop) {
	c.setFlag(FlagListenOverflow)
	detail := DetailOverflow
	if d.cookie {
		detail = DetailOverflowCookie
	}
	c.item(d.at, Item{Kind: ItemListenOverflow, Detail: detail})
	sortTimeline(c.Timeline)
}

// joinOverflow gives a connection seen after its overflow drop the flag.
func (b *Builder) joinOverflow(c *Connection) {
	k := newTupleKey(c.NetNS, c.Local, c.Remote)
	if d, ok := b.overflowed[k]; ok {
		delete(b.overflowed, k)
		c.overflowed(d)
	}
}

// maxOverflowed bounds the tuples remembered for connections not yet seen.
const maxOverflowed = 65536

// SeedListener tells the builder of a socket already listening when tracing
// started, with its owner: its children then count toward it, by port, until
// an event names its cookie.
func (b *Builder) SeedListener(netns uint32, local netip.AddrPort, pid uint32, comm string, backlog, queue uint32, now time.Time) {
	key := listenKey{netns, local.Port()}
	if _, ok := b.listenerByPort[key]; ok {
		return
	}
	b.nextID++
	l := &Listener{ID: b.nextID, NetNS: netns, Local: local, PID: pid, Comm: comm, Backlog: backlog,
		PeakQueue: queue, Start: now, Preexisting: true}
	b.listenerSet[l.ID] = l
	b.listenerByPort[key] = l.ID
}
