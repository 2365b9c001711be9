package tracer

import (
	"net/netip"
	"time"

	"github.com/tcpscope/tcpscope/tracer/cgroups"
)

// The timeline builder, by topic:
//   - builder.go: the Builder, its configuration, the event dispatch;
//   - state.go: state changes, errors and retransmits of known sockets;
//   - handshake.go: request sockets, SYN-ACKs, the SYN_RECV measurement;
//   - resets.go: resets sent, with or without a socket;
//   - listeners.go: listening sockets, their queues and overflows;
//   - lifecycle.go: starting, evicting, expiring and emitting records;
//   - timewait_builder.go: the TIME_WAIT a closed record leaves, and the
//     resets that kill it;
//   - outcome.go: the conclusion of a finished record (pure functions);
//   - peers.go: linking the two ends of a connection.

// TimeWaitLen is TCP_TIMEWAIT_LEN: a timewait socket lives 60 s, a constant
// of the kernel (include/net/tcp.h), not the tcp_fin_timeout sysctl, which
// only bounds FIN_WAIT2.
const TimeWaitLen = 60 * time.Second

// BuilderConfig tunes the timeline builder.
type BuilderConfig struct {
	// SynRecvThreshold sets long_syn_recv (default 1s).
	SynRecvThreshold time.Duration
	// Grace is how long a closed connection waits for the events the kernel
	// emits after the CLOSE transition (the reset tcp_send_active_reset()
	// traces after tcp_set_state(), the socket error report) before it is
	// emitted. Default 1s.
	Grace time.Duration
	// Clock converts the request socket's CLOCK_MONOTONIC snt_synack.
	Clock Clock
	// Emit receives every finished connection. The Connection is reused
	// after Emit returns: copy what must outlive the call.
	Emit func(*Connection)
	// EmitListener receives each listener when it closes or at Finish.
	EmitListener func(*Listener)
	// Cgroups, when set, names the owner's cgroup of each connection and
	// listener emitted (Connection.Cgroup).
	Cgroups *cgroups.Resolver
	// MaxConnections caps the connections followed at once; past it the
	// least recently active tenth are emitted as open and incomplete.
	// 0 means DefaultMaxConnections.
	MaxConnections int
	// OnTimeWait, when set, learns of each client socket entering
	// TIME_WAIT at the moment it does (FIN_WAIT2 or CLOSING to CLOSE
	// without a reset), so that warnings are not late. The record's
	// conclusion, a grace period later, has the last word: OnTimeWaitUndone
	// takes back an entry that a reset traced right after the close showed
	// was none.
	OnTimeWait func(netns uint32, local, remote netip.AddrPort, at time.Time)
	// OnTimeWaitUndone takes back an OnTimeWait entry (entered is its time).
	OnTimeWaitUndone func(netns uint32, local, remote netip.AddrPort, entered time.Time)
	// OnTimeWaitKilled, when set, learns of each such client socket whose
	// timewait sock a reset from the other end destroyed before its 60 s
	// (entered is the time given to OnTimeWait): its port is free again.
	OnTimeWaitKilled func(netns uint32, local, remote netip.AddrPort, entered, at time.Time)
	// RFC1337 reports net.ipv4.tcp_rfc1337 of a namespace: when set, a
	// reset does not kill a socket in TIME_WAIT. nil means 0, the default.
	RFC1337 func(netns uint32) bool
}

// endKey is a tuple without its namespace: both ends of one connection in
// two namespaces (veth peers, containers) have reversed endKeys. Plain
// bytes, so that hashing it and the maps holding it stay cheap.
type endKey struct {
	local, remote [16]byte
	lport, rport  uint16
}

func newEndKey(local, remote netip.AddrPort) endKey {
	return endKey{local.Addr().As16(), remote.Addr().As16(), local.Port(), remote.Port()}
}

// addrs returns the tuple; addresses were unmapped when decoded, so an
// IPv4-mapped form is IPv4.
func (k endKey) addrs() (local, remote netip.AddrPort) {
	return netip.AddrPortFrom(netip.AddrFrom16(k.local).Unmap(), k.lport),
		netip.AddrPortFrom(netip.AddrFrom16(k.remote).Unmap(), k.rport)
}

// tupleKey is a tuple in one namespace, as plain bytes for the same
// reason as endKey: hashing netip.AddrPort is several times slower.
type tupleKey struct {
	netns uint32
	end   endKey
}

func newTupleKey(netns uint32, local, remote netip.AddrPort) tupleKey {
	return tupleKey{netns, newEndKey(local, remote)}
}

type listenKey struct {
	netns uint32
	port  uint16
}

// Builder turns events into connection timelines, keyed by socket cookie.
// It is not safe for concurrent use.
type Builder struct {
	cfg      BuilderConfig
	conns    map[uint64]*Connection
	requests map[uint64]*Connection // request sockets known from SYN-ACK retransmits only
	tuples   map[tupleKey]*Connection
	ends     map[endKey]*Connection // every indexed record by tuple, all namespaces (linked by endNext)
	closing  []*Connection          // closed, in close order, waiting for Grace

	timeWaits map[endKey]timeWaitEntry // written clients in TIME_WAIT, for OnTimeWaitKilled
	twSweptAt time.Time                // when timeWaits was last cleared of entries over 60 s old
	rfc1337   map[uint32]bool

	listenerSet    map[uint64]*Listener
	listenerByPort map[listenKey]uint64
	overflowed     map[tupleKey]overflowDrop
	abandoned      map[tupleKey]abandonedRequest // recently abandoned requests, by tuple
	free           []*Connection
	nextID         uint64
	orphans        uint64
	started        uint64
	discarded      uint64
	evicted        uint64
	comms          map[Comm]string

	queues       map[uint32]*nsQueues // last accept-queue sample per namespace
	unattributed map[uint32][2]uint64 // ListenOverflows, ListenDrops no listener explains
	// lossSeen: events were dropped in this recording, so a socket first
	// seen mid-life may be one whose opening events were among them.
	lossSeen bool
	gaps     uint64
	// lastCgroup is the cgroup of the last event seen (seeCgroup).
	lastCgroup uint64
}

// DefaultMaxConnections bounds the builder's memory on a busy server
// (about 1.1 KiB per connection with a short timeline, see
// BenchmarkLiveConnectionMemory).
const DefaultMaxConnections = 200000

// syntheticIDBase numbers records that have no socket (a refused SYN). It
// is far above any socket cookie and still exact in a JSON number.
const syntheticIDBase = 1 << 52

// NewBuilder returns an empty builder.
func NewBuilder(cfg BuilderConfig) *Builder {
	if cfg.SynRecvThreshold == 0 {
		cfg.SynRecvThreshold = time.Second
	}
	if cfg.Grace == 0 {
		cfg.Grace = time.Second
	}
	if cfg.MaxConnections <= 0 {
		cfg.MaxConnections = DefaultMaxConnections
	}
	if cfg.Emit == nil {
		cfg.Emit = func(*Connection) {}
	}
	if cfg.EmitListener == nil {
		cfg.EmitListener = func(*Listener) {}
	}
	if r := cfg.Cgroups; r != nil {
		emit, emitListener := cfg.Emit, cfg.EmitListener
		cfg.Emit = func(c *Connection) {
			c.Cgroup = resolveCgroup(r, c.CgroupID, c.Cgroup)
			emit(c)
		}
		cfg.EmitListener = func(l *Listener) {
			l.Cgroup = resolveCgroup(r, l.CgroupID, l.Cgroup)
			emitListener(l)
		}
	}
	return &Builder{
		cfg:      cfg,
		conns:    make(map[uint64]*Connection, 1024),
		requests: map[uint64]*Connection{},
		tuples:   make(map[tupleKey]*Connection, 1024),
		ends:     make(map[endKey]*Connection, 1024),
		nextID:   syntheticIDBase,

		timeWaits: map[endKey]timeWaitEntry{},
		rfc1337:   map[uint32]bool{},

		comms:          map[Comm]string{},
		listenerSet:    map[uint64]*Listener{},
		listenerByPort: map[listenKey]uint64{},
		overflowed:     map[tupleKey]overflowDrop{},
		abandoned:      map[tupleKey]abandonedRequest{},
		queues:         map[uint32]*nsQueues{},
		unattributed:   map[uint32][2]uint64{},
	}
}

// seeCgroup has the resolver name a cgroup as soon as an event shows it,
// while it surely exists: a container that exits before its connections
// are emitted keeps its name. Events of one cgroup come in runs; only a
// change asks the resolver. A miss (a walk not due yet, where the cgroup
// cannot be opened by handle) is not remembered: the next event asks again.
func (b *Builder) seeCgroup(id uint64) {
	if id == 0 || id == b.lastCgroup || b.cfg.Cgroups == nil {
		return
	}
	if _, ok := b.cfg.Cgroups.Path(id); ok {
		b.lastCgroup = id
	}
}

// resolveCgroup names cgroup id, unless it was named already (a listener
// is emitted once, but its record may be reused).
func resolveCgroup(r *cgroups.Resolver, id uint64, have cgroups.Info) cgroups.Info {
	if id == 0 || have.Path != "" {
		return have
	}
	return r.Resolve(id)
}

// Live is how many connections (and pending requests) are being followed.
func (b *Builder) Live() int { return len(b.conns) }

// Open is how many followed connections have not closed: Live without
// those waiting out the grace period in the closing queue.
func (b *Builder) Open() int {
	n := len(b.conns)
	for _, c := range b.closing {
		if !c.emitted && b.conns[c.ID] == c {
			n--
		}
	}
	return n
}

// Orphans counts events for sockets the builder could not place (for
// example a reset sent by a timewait socket of a connection already emitted).
func (b *Builder) Orphans() uint64 { return b.orphans }

func (b *Builder) get() *Connection {
	if n := len(b.free); n > 0 {
		c := b.free[n-1]
		b.free = b.free[:n-1]
		tl := c.Timeline[:0]
		*c = Connection{Timeline: tl}
		return c
	}
	return &Connection{}
}

// MarkIncomplete flags every connection followed now, and every pending
// request, as incomplete: events were lost while they were open.
func (b *Builder) MarkIncomplete() {
	b.lossSeen = true
	for _, c := range b.conns {
		c.setFlag(FlagIncomplete)
	}
}

// Discarded counts server children the kernel destroyed at birth (a
// duplicate of a connection already established on the same tuple).
func (b *Builder) Discarded() uint64 { return b.discarded }

// Gaps counts state events whose old state was not the state the
// connection was last seen in: a transition between them was lost.
func (b *Builder) Gaps() uint64 { return b.gaps }

// Started counts connections the builder began following.
func (b *Builder) Started() uint64 { return b.started }

// comm returns a task name as a string, interned: task names repeat, and
// converting each one would allocate per connection.
func (b *Builder) comm(c Comm) string {
	if s, ok := b.comms[c]; ok {
		return s
	}
	s := c.String()
	if len(b.comms) < 4096 {
		b.comms[c] = s
	}
	return s
}

// Add feeds one event.
func (b *Builder) Add(ev *Event) {
	b.seeCgroup(ev.CgroupID)
	switch ev.Kind {
	case KindState:
		b.onState(ev)
	case KindRetransmit:
		b.onRetransmit(ev)
	case KindSynAckRetransmit:
		b.onSynAck(ev)
	case KindResetSent:
		b.onResetSent(ev)
	case KindResetReceived:
		if c := b.lookup(ev); c != nil {
			c.setFlag(FlagResetReceived)
			c.item(ev.Time, Item{Kind: ItemResetReceived, State: ev.State})
		}
	case KindError:
		if c := b.lookup(ev); c != nil {
			b.onError(c, ev)
		}
	case KindListenOverflow:
		b.onOverflow(ev)
	}
}

func (c *Connection) item(at time.Time, it Item) {
	it.At = at
	it.OffsetUs = at.Sub(c.Start).Microseconds()
	c.Timeline = append(c.Timeline, it)
}
