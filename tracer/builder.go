package tracer

import (
	"fmt"
	"net/netip"
	"sort"
	"time"
)

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

// timeWaitEntry is a client's TIME_WAIT whose record is already written,
// remembered for 60 s so that a reset killing it still frees its port.
type timeWaitEntry struct {
	atNs      int64 // entered, Unix ns
	netns     uint32
	ambiguous bool // two namespaces hold this tuple in TIME_WAIT
}

type tupleKey struct {
	netns         uint32
	local, remote netip.AddrPort
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
		tl, fl := c.Timeline[:0], c.Flags[:0]
		*c = Connection{Timeline: tl, Flags: fl}
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

func (b *Builder) newConn(ev *Event, id uint64, role Role) *Connection {
	b.started++
	c := b.get()
	c.ID = id
	c.Role = role
	c.NetNS = ev.NetNS
	c.Start = ev.Time
	c.stateAt = ev.Time
	c.HandshakeUs = -1
	c.SynRecvUs = -1
	c.setTuple(ev)
	b.conns[id] = c
	if len(b.conns) > b.cfg.MaxConnections {
		b.evict(c)
	}
	return c
}

// evict emits the least recently active tenth of the connections followed
// (never keep), flagged incomplete: their later events will be unmatched.
func (b *Builder) evict(keep *Connection) {
	type aged struct {
		at time.Time
		c  *Connection
	}
	all := make([]aged, 0, len(b.conns))
	for _, c := range b.conns {
		if c != keep && !c.emitted {
			at := c.stateAt
			if n := len(c.Timeline); n > 0 && c.Timeline[n-1].At.After(at) {
				at = c.Timeline[n-1].At
			}
			all = append(all, aged{at, c})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].at.Before(all[j].at) })
	n := max(len(all)/10, 1)
	for _, a := range all[:min(n, len(all))] {
		a.c.setFlag(FlagIncomplete)
		delete(b.requests, a.c.ID)
		b.emit(a.c)
		b.evicted++
	}
	// Closed ones may still wait in the grace queue: drop emitted entries.
	live := b.closing[:0]
	for _, c := range b.closing {
		if !c.emitted || c.closedAt.IsZero() {
			live = append(live, c)
		}
	}
	b.closing = live
}

// Evicted counts connections emitted early because of MaxConnections.
func (b *Builder) Evicted() uint64 { return b.evicted }

func (c *Connection) setTuple(ev *Event) {
	if !ev.Local.Addr().IsValid() {
		return
	}
	c.Local, c.Remote = ev.Local, ev.Remote
	if ev.Local.Addr().Is4() {
		c.Family = "ipv4"
	} else {
		c.Family = "ipv6"
	}
}

// timeWaitDetail explains the inferred TIME_WAIT step; it ends 60 s after.
const timeWaitDetail = "holds its local port for 60s (TCP_TIMEWAIT_LEN)"

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
			c.item(ev.Time, Item{Kind: KindResetReceived.String(), State: ev.State.String()})
		}
	case KindError:
		if c := b.lookup(ev); c != nil {
			b.onError(c, ev)
		}
	case KindListenOverflow:
		b.onOverflow(ev)
	}
}

// onError records the errno a socket error report hands its process.
func (b *Builder) onError(c *Connection, ev *Event) {
	it := Item{Kind: KindError.String(), State: ev.State.String(), Errno: ErrnoName(ev.Err)}
	if ev.State == StateClose && it.Errno == "ECONNRESET" && c.flags&flagBit(FlagResetReceived) == 0 {
		// tcp_disconnect(), the abort of close() with SO_LINGER 0 (and of
		// the unaccepted children of a closing listener), moves the socket
		// to CLOSE first, then sends its reset (from ESTABLISHED and the
		// like) and sets sk_err = ECONNRESET for itself (from SYN_SENT too),
		// and ends with sk_error_report(). A reset received never reports
		// from CLOSE (tcp_reset() returns early there). No process will read
		// this error, so it is no errno of the connection.
		it.Detail = "set by this end's own abort (tcp_disconnect()); no process sees it"
		c.item(ev.Time, it)
		return
	}
	c.Errno = it.Errno
	c.item(ev.Time, it)
}

func (c *Connection) item(at time.Time, it Item) {
	it.At = at
	it.OffsetUs = at.Sub(c.Start).Microseconds()
	c.Timeline = append(c.Timeline, it)
}

// lookup finds the connection of an event on a socket that is not opening.
// An unknown cookie is a connection that was open before tracing started.
func (b *Builder) lookup(ev *Event) *Connection {
	if ev.Cookie == 0 {
		b.orphans++
		return nil
	}
	if c, ok := b.conns[ev.Cookie]; ok {
		return c
	}
	if ev.State == StateTimeWait || ev.State == StateNewSynRecv || ev.State == StateListen {
		// A timewait sock outlives its emitted connection; request socks
		// and listeners are not connections.
		b.orphans++
		return nil
	}
	return b.preexisting(ev)
}

func (b *Builder) preexisting(ev *Event) *Connection {
	role := RoleClient
	if _, ok := b.listenerByPort[listenKey{ev.NetNS, ev.Local.Port()}]; ok {
		role = RoleServer
	}
	c := b.newConn(ev, ev.Cookie, role)
	c.setFlag(FlagPreexisting)
	if b.lossSeen {
		// It may have opened during the trace, its opening events lost:
		// a loss is noticed up to a tick late, after the record that
		// lost them was, or was not yet, followed.
		c.setFlag(FlagIncomplete)
	}
	if ev.Kind == KindState {
		c.state = ev.OldState
	} else {
		c.state = ev.State
	}
	c.established = c.state != StateSynSent && c.state != StateSynRecv
	b.indexTuple(c)
	return c
}

func (b *Builder) onState(ev *Event) {
	switch {
	case ev.NewState == StateListen:
		b.onListen(ev)
		return
	case ev.OldState == StateListen && ev.NewState == StateClose:
		b.onUnlisten(ev)
		return
	}
	var c *Connection
	switch {
	case ev.OldState == StateClose && ev.NewState == StateSynSent:
		// connect() runs in process context: the current task is the owner.
		if old, ok := b.conns[ev.Cookie]; ok {
			b.finish(old, ev.Time) // a socket reused by a second connect()
		}
		c = b.newConn(ev, ev.Cookie, RoleClient)
		c.PID, c.Comm = ev.TGID, b.comm(ev.Comm)
		c.synSentAt = ev.Time
	case ev.OldState == StateListen && ev.NewState == StateSynRecv:
		c = b.serverChild(ev)
	default:
		c = b.lookup(ev)
		if c == nil {
			return
		}
		if !c.tupleKnown {
			c.setTuple(ev)
			b.indexTuple(c)
		}
		if c.state != ev.OldState {
			// The socket left a state this record never saw it enter: a
			// transition between was lost, counted or not.
			b.gaps++
			c.setFlag(FlagIncomplete)
		}
	}
	c.transition(ev)
	if ev.HasTCPInfo {
		c.BytesReceived, c.BytesAcked = ev.BytesReceived, ev.BytesAcked
	}
	switch ev.NewState {
	case StateEstablished:
		b.onEstablished(c, ev)
	case StateFinWait1, StateLastAck:
		// close() in process context: for a connection that predates the
		// trace this is the best owner we will see.
		if c.PID == 0 && c.Has(FlagPreexisting) {
			c.PID, c.Comm = ev.TGID, b.comm(ev.Comm)
		}
	case StateClose:
		if b.discardTwin(c, ev) {
			return
		}
		if !c.closedAt.IsZero() {
			// Already in the grace queue: a second entry would outlive the
			// record, which is recycled once emitted.
			return
		}
		c.closedAt = ev.Time
		b.closing = append(b.closing, c)
		if b.cfg.OnTimeWait != nil && c.Role == RoleClient && c.tupleKnown && c.enteredTimeWait() {
			c.twTold = true
			b.cfg.OnTimeWait(c.NetNS, c.Local, c.Remote, ev.Time)
		}
	}
}

// discardTwin drops a server child that the kernel created and destroyed
// at once because another child already holds its tuple: when two ACKs
// validate the same SYN cookie, each builds a child, and the second one's
// inet_ehash_nolisten() fails and sets it to CLOSE straight from SYN_RECV.
// That child was never a connection.
func (b *Builder) discardTwin(c *Connection, ev *Event) bool {
	t := c.twin
	if t == nil || c.Role != RoleServer || c.established || ev.OldState != StateSynRecv || t.emitted {
		return false
	}
	t.twin = nil
	delete(b.conns, c.ID)
	k := tupleKey{c.NetNS, c.Local, c.Remote}
	b.tuples[k] = t
	if p, ok := b.tuples[tupleKey{c.NetNS, c.Remote, c.Local}]; ok {
		p.PeerID, t.PeerID = t.ID, p.ID
	}
	if l := c.listener; l != nil && l.Children > 0 {
		l.Children--
	}
	b.discarded++
	b.removeEnd(c)
	c.emitted = true
	b.free = append(b.free, c)
	return true
}

func (c *Connection) transition(ev *Event) {
	prev := int64(0)
	// A child socket was never in LISTEN: its LISTEN->SYN_RECV only says it
	// was cloned from the listener.
	if !c.stateAt.IsZero() && len(c.Timeline) > 0 && ev.OldState != StateListen {
		prev = ev.Time.Sub(c.stateAt).Microseconds()
	}
	c.item(ev.Time, Item{Kind: KindState.String(), From: ev.OldState.String(), To: ev.NewState.String(), PrevStateUs: prev})
	c.state = ev.NewState
	c.stateAt = ev.Time
}

// serverChild starts a server-side connection. The child socket was cloned
// from its listener (hence LISTEN->SYN_RECV) when the final ACK arrived,
// and carries its request socket's cookie, so SYN-ACK retransmits already
// seen for that request join it here.
func (b *Builder) serverChild(ev *Event) *Connection {
	c, pending := b.requests[ev.Cookie]
	if pending {
		delete(b.requests, ev.Cookie)
		c.pending = false
		c.setTuple(ev)
	} else {
		if old, ok := b.conns[ev.Cookie]; ok {
			b.finish(old, ev.Time)
		}
		c = b.newConn(ev, ev.Cookie, RoleServer)
	}
	l := b.listener(ev, ev.ListenerCookie)
	switch {
	case ev.HasOwner:
		c.PID, c.Comm = ev.OwnerTGID, b.comm(ev.OwnerComm)
	case l != nil && c.PID == 0:
		c.PID, c.Comm = l.PID, l.Comm
	}
	if l != nil {
		c.listener = l
		l.Children++
	}
	b.indexTuple(c)
	b.joinOverflow(c)
	return c
}

// sortTimeline restores time order after an item was added late.
func sortTimeline(items []Item) {
	for i := 1; i < len(items); i++ {
		for j := i; j > 0 && items[j].At.Before(items[j-1].At); j-- {
			items[j], items[j-1] = items[j-1], items[j]
		}
	}
}

func (b *Builder) onEstablished(c *Connection, ev *Event) {
	if c.established {
		return
	}
	c.established = true
	switch c.Role {
	case RoleClient:
		if !c.synSentAt.IsZero() {
			c.HandshakeUs = ev.Time.Sub(c.synSentAt).Microseconds()
		}
	case RoleServer:
		b.measureSynRecv(c, ev)
		if l := c.listener; l != nil && c.SynRecvUs >= 0 {
			l.SynRecv.Add(c.SynRecvUs)
		}
	}
}

// measureSynRecv sets the real SYN_RECV stay: from the first SYN-ACK to the
// final ACK, which is the request socket's life, not the child socket's few
// microseconds between LISTEN->SYN_RECV and SYN_RECV->ESTABLISHED.
func (b *Builder) measureSynRecv(c *Connection, ev *Event) {
	switch {
	case c.sntSynAckNs == 0 && ev.HasTCPInfo && ev.TotalRetrans == 0 && (ev.SRTTUs == 0 || ev.SRTTUs%1000 == 0):
		// A SYN cookie child. The kernel keeps no cookie mark on it (the
		// request socket behind it lived only to send the SYN-ACK), but its
		// RTT tells: tcp_get_cookie_sock() never calls tcp_synack_rtt_meas()
		// with a request, so the first RTT sample comes from the timestamp
		// echo, in whole milliseconds (tcp_rtt_tsopt_us), or not at all
		// (srtt 0 without timestamps). A normal child's first sample is
		// now - snt_synack in microseconds, a whole millisecond only by
		// chance (1 in 1000). The SYN-ACK time is unknown.
		c.setFlag(FlagSyncookie)
		if l := c.listener; l != nil {
			l.Syncookies++
		}
		c.SynRecvUs = -1
		return
	case c.sntSynAckNs != 0:
		// tcp_make_synack() stamped the first SYN-ACK (snt_synack, seen on the
		// SYN-ACK retransmit events) with tcp_clock_us(): CLOCK_MONOTONIC.
		c.SynRecvUs = (int64(ev.BootNs) - c.sntSynAckNs) / 1000
		c.SynRecvHow = SynRecvFromSynAck
	case ev.HasTCPInfo && ev.TotalRetrans == 0 && ev.SRTTUs > 0:
		// tcp_synack_rtt_meas() seeds srtt with now - snt_synack only when the
		// request never retransmitted (total_retrans = req->num_retrans).
		c.SynRecvUs = int64(ev.SRTTUs)
		c.SynRecvHow = SynRecvFromSRTT
	case ev.HasRTO && ev.TotalRTO > 0:
		// tcp_create_openreq_child() sets total_rto_time = now - snt_synack
		// in ms when the request's timer fired (6.7+).
		c.SynRecvUs = int64(ev.TotalRTOTimeMs) * 1000
		c.SynRecvHow = SynRecvFromRTOTime
	default:
		c.SynRecvUs = ev.Time.Sub(c.Start).Microseconds()
		c.SynRecvHow = SynRecvFromChildAge
	}
	if c.SynRecvHow != SynRecvFromChildAge {
		c.requestStarted(ev.Time.Add(-time.Duration(c.SynRecvUs) * time.Microsecond))
	}
	if ev.HasTCPInfo && ev.TotalRetrans > c.Retransmits.SynAck {
		// SYN-ACK retransmits whose events were filtered or lost still show
		// in the child's total_retrans, inherited from req->num_retrans.
		c.Retransmits.SynAck = ev.TotalRetrans
	}
	if c.Retransmits.SynAck > 0 {
		c.setFlag(FlagSynAckRetransmitted)
	}
	if time.Duration(c.SynRecvUs)*time.Microsecond >= b.cfg.SynRecvThreshold {
		c.setFlag(FlagLongSynRecv)
	}
}

// ItemSynAck marks the request socket's first SYN-ACK: the start of what
// ss calls SYN-RECV, which no state tracepoint sees.
const ItemSynAck = "synack"

// requestStarted moves a server connection's start back to its first
// SYN-ACK and marks it in the timeline.
func (c *Connection) requestStarted(at time.Time) {
	if len(c.Timeline) > 0 && c.Timeline[0].Kind == ItemSynAck {
		return
	}
	if at.Before(c.Start) {
		c.Start = at
	}
	c.Timeline = append(c.Timeline, Item{})
	copy(c.Timeline[1:], c.Timeline)
	c.Timeline[0] = Item{At: at, Kind: ItemSynAck, State: StateSynRecv.String(), Detail: "first SYN-ACK sent (request socket)"}
}

func (b *Builder) onRetransmit(ev *Event) {
	c := b.lookup(ev)
	if c == nil {
		return
	}
	what := ev.Resent()
	detail := what
	if what == ResentData && ev.SegFlags&TCPFin != 0 {
		detail = "data, with FIN"
	}
	it := Item{Kind: KindRetransmit.String(), State: ev.State.String(), Detail: detail}
	if ev.HasErr && ev.Err != 0 {
		// 6.17+: the retransmit failed and nothing left the host.
		it.Errno = ErrnoName(ev.Err)
		it.Detail = detail + " not sent"
		c.item(ev.Time, it)
		return
	}
	c.item(ev.Time, it)
	switch what {
	case ResentSyn:
		c.Retransmits.Syn++
		c.setFlag(FlagSynRetransmitted)
		b.synRetransmitToward(c, ev)
	case ResentSynAck:
		c.Retransmits.SynAck++
		c.setFlag(FlagSynAckRetransmitted)
	case ResentFin:
		c.Retransmits.Fin++
		c.setFlag(FlagFinRetransmitted)
	default:
		c.Retransmits.Data++
		c.setFlag(FlagDataRetransmitted)
	}
}

// onSynAck records a SYN-ACK retransmit of a request socket. No state
// tracepoint sees request sockets, so the first one seen starts a pending
// server record that its child (same cookie) takes over.
func (b *Builder) onSynAck(ev *Event) {
	l := b.listener(ev, ev.ListenerCookie)
	if l != nil {
		l.SynAcks++
		l.sawQueue(ev.Backlog, ev.MaxBacklog)
	}
	c, ok := b.conns[ev.Cookie]
	if !ok {
		c = b.newConn(ev, ev.Cookie, RoleServer)
		c.pending = true
		c.state = StateNewSynRecv
		if ev.HasOwner {
			c.PID, c.Comm = ev.OwnerTGID, b.comm(ev.OwnerComm)
		} else if l != nil {
			c.PID, c.Comm = l.PID, l.Comm
		}
		c.listener = l
		b.requests[ev.Cookie] = c
		b.indexTuple(c)
		b.joinOverflow(c)
	}
	if ev.SntSynAckUs != 0 && c.sntSynAckNs == 0 {
		c.sntSynAckNs = int64(ev.SntSynAckUs)*1000 + b.cfg.Clock.MonoToBootNs
		c.requestStarted(time.Unix(0, b.cfg.Clock.OffsetNs+c.sntSynAckNs))
	}
	c.Retransmits.SynAck++
	c.setFlag(FlagSynAckRetransmitted)
	c.lastSynAckAt = ev.Time
	c.numTimeout = ev.NumTimeout
	c.item(ev.Time, Item{Kind: KindSynAckRetransmit.String(), State: StateSynRecv.String(),
		Detail: fmt.Sprintf("SYN-ACK #%d", ev.NumRetrans+1)})
}

func (b *Builder) onResetSent(ev *Event) {
	if ev.NoSocket {
		// tcp_v4_send_reset()/tcp_v6_send_reset() with no socket answer
		// whatever segment found none: a SYN is a refused connect, anything
		// else the segment of a connection this end no longer has.
		if ev.SegFlags == 0 || ev.SegFlags.IsSYN() {
			b.refusedRecord(ev)
		} else {
			b.strayReset(ev, "no socket for this "+ev.SegFlags.String()+" segment", nil)
		}
		return
	}
	switch ev.State {
	case StateListen:
		b.onListenerReset(ev)
		return
	case StateTimeWait:
		b.timeWaitReset(ev)
		return
	}
	c := b.lookup(ev)
	if c == nil {
		return
	}
	c.setFlag(FlagResetSent)
	it := Item{Kind: KindResetSent.String(), State: ev.State.String()}
	if ev.HasReason {
		it.Reason = ev.Reason.String()
	}
	c.item(ev.Time, it)
	if c.tupleKnown {
		// The event's tuple may have decayed (tcp_disconnect() zeroes
		// inet_dport); the record's is the one the reset was sent on.
		b.killTimeWait(c.NetNS, c.Local, c.Remote, ev)
	}
}

// refusedRecord: a reset sent with no socket answers a packet for which no
// socket exists; for a SYN that is a refused connection, recorded on the
// server side as its own record.
func (b *Builder) refusedRecord(ev *Event) {
	b.nextID++
	c := b.newConn(ev, b.nextID, RoleServer)
	c.setFlag(FlagRefused)
	c.setFlag(FlagResetSent)
	it := Item{Kind: KindResetSent.String(), Detail: "no socket"}
	if ev.HasReason {
		it.Reason = ev.Reason.String()
	}
	c.item(ev.Time, it)
	c.Outcome = OutcomeRefused
	c.ClosedBy = "local"
	c.closedAt = ev.Time
	b.indexTuple(c)
	b.closing = append(b.closing, c)
}

// strayReset places a reset sent by no connection socket (the listener's,
// or none at all). It belongs to the connection with that tuple when one is
// followed; a request (known from its SYN-ACK retransmits) dies with it. A
// connection already closed only gains a timeline item: the segment came
// after its end (on loopback a client that connects and closes at once
// sometimes has an ACK arrive microseconds after the server socket closed)
// and, for a cleanly closed one, changes nothing but the peer's TIME_WAIT,
// which the reset ends early (killTimeWait). A handshake
// abandoned moments ago already has its record, which the client's links
// to. Otherwise the reset is a record of its own: the end of a connection
// that this end had already forgotten, outcome reset. Its role is client
// when the other end is a traced server, server otherwise (the usual case:
// a server restarted, or its listener closed, while clients still send).
func (b *Builder) strayReset(ev *Event, detail string, l *Listener) {
	it := Item{Kind: KindResetSent.String(), State: ev.State.String(), Detail: detail}
	if ev.NoSocket {
		it.State = ""
	}
	if ev.HasReason {
		it.Reason = ev.Reason.String()
	}
	b.killTimeWait(ev.NetNS, ev.Local, ev.Remote, ev)
	k := tupleKey{ev.NetNS, ev.Local, ev.Remote}
	if c, ok := b.tuples[k]; ok {
		switch {
		case c.pending && c.closedAt.IsZero():
			it.Detail += ", which dropped the request"
			c.setFlag(FlagResetSent)
			c.item(ev.Time, it)
			delete(b.requests, c.ID)
			c.closedAt = ev.Time
			b.closing = append(b.closing, c)
		case !c.closedAt.IsZero():
			it.Detail += ": answered a segment that came after the close"
			c.item(ev.Time, it)
		default:
			c.setFlag(FlagResetSent)
			c.item(ev.Time, it)
		}
		return
	}
	if _, ok := b.abandoned[k]; ok {
		return
	}
	role := RoleServer
	if p, ok := b.tuples[tupleKey{ev.NetNS, ev.Remote, ev.Local}]; ok && p.Role == RoleServer {
		role = RoleClient
	}
	b.nextID++
	c := b.newConn(ev, b.nextID, role)
	if l != nil {
		c.PID, c.Comm, c.listener = l.PID, l.Comm, l
	}
	c.setFlag(FlagResetSent)
	c.item(ev.Time, it)
	c.ClosedBy = "local"
	c.closedAt = ev.Time
	b.indexTuple(c)
	b.joinOverflow(c)
	b.closing = append(b.closing, c)
}

func (b *Builder) indexTuple(c *Connection) {
	if !c.Local.Addr().IsValid() || c.Local.Port() == 0 || c.Remote.Port() == 0 {
		return
	}
	c.tupleKnown = true
	k := tupleKey{c.NetNS, c.Local, c.Remote}
	if p, ok := b.tuples[k]; ok && p != c && c.Role == RoleServer && p.Role == RoleServer && !p.pending && p.closedAt.IsZero() {
		// Two children for one tuple: see discardTwin.
		c.twin, p.twin = p, c
	}
	b.tuples[k] = c
	p, ok := b.tuples[tupleKey{c.NetNS, c.Remote, c.Local}]
	if !ok || p == c {
		p = b.otherEnd(c)
	}
	if p == nil || p == c {
		b.addEnd(c) // until its other end comes, maybe in another namespace
		return
	}
	// The other end keeps the peer it has: a listener's reset that
	// becomes a record of its own (onListenerReset) comes after the
	// connection that end belonged to.
	c.PeerID = p.ID
	if p.PeerID == 0 {
		p.PeerID = c.ID
	}
	b.removeEnd(p)
	b.removeEnd(c)
}

// Expire emits connections closed more than Grace before now, and
// requests whose SYN-ACK timer should have fired again by now but did not:
// the request died (client gone, RST, or tcp_synack_retries reached).
func (b *Builder) Expire(now time.Time) {
	n := 0
	for _, c := range b.closing {
		if now.Sub(c.closedAt) < b.cfg.Grace {
			break
		}
		b.emit(c)
		n++
	}
	b.closing = b.closing[n:]
	for id, c := range b.requests {
		if now.After(requestDeadline(c).Add(b.cfg.Grace)) {
			delete(b.requests, id)
			c.closedAt = requestDeadline(c)
			b.emit(c)
		}
	}
	for k, d := range b.overflowed {
		// A request lives at most about two minutes (TCP_RTO_MAX backoff).
		if now.Sub(d.at) > 3*time.Minute {
			delete(b.overflowed, k)
		}
	}
	for k, a := range b.abandoned {
		if now.Sub(a.at) > 3*time.Minute {
			delete(b.abandoned, k)
		}
	}
	b.expireTimeWaits(now)
}

type abandonedRequest struct {
	id uint64
	at time.Time
}

// maxAbandoned bounds the abandoned requests remembered for linking.
const maxAbandoned = 65536

// linkAbandoned: a handshake the server gave up on leaves a client that
// believes it is connected; when that client ends (typically reset by the
// listener once it sends data), its peer is the abandoned request record.
func (b *Builder) linkAbandoned(c *Connection) {
	switch {
	case c.pending && c.Outcome == OutcomeTimeout && c.tupleKnown:
		if len(b.abandoned) < maxAbandoned {
			b.abandoned[tupleKey{c.NetNS, c.Local, c.Remote}] = abandonedRequest{c.ID, c.closedAt}
		}
	case c.Role == RoleClient && c.PeerID == 0 && c.tupleKnown:
		if a, ok := b.abandoned[tupleKey{c.NetNS, c.Remote, c.Local}]; ok {
			c.PeerID = a.id
		}
	}
}

// requestDeadline is when the request's next SYN-ACK would have gone out:
// reqsk_timer_handler() re-arms with TCP_TIMEOUT_INIT << num_timeout.
func requestDeadline(c *Connection) time.Time {
	shift := min(int(c.numTimeout)+1, 7)
	backoff := min(time.Second<<shift, 120*time.Second) // TCP_RTO_MAX
	return c.lastSynAckAt.Add(backoff)
}

// Finish emits every connection still followed: closed ones as they ended,
// the rest with outcome open (or timeout, for requests already dead).
func (b *Builder) Finish(now time.Time) {
	for _, c := range b.closing {
		b.emit(c)
	}
	b.closing = b.closing[:0]
	for id, c := range b.requests {
		delete(b.requests, id)
		if now.After(requestDeadline(c)) {
			c.closedAt = requestDeadline(c)
		}
		c.seenUntil = now
		b.emit(c)
	}
	for _, c := range b.conns {
		c.seenUntil = now
		b.emit(c)
	}
	b.settleQueues()
	for id, l := range b.listenerSet {
		delete(b.listenerSet, id)
		l.End, l.Open = now, true
		b.cfg.EmitListener(l)
	}
}

// finish ends a connection whose cookie a new one takes (the socket was
// reused). A closed one stays in the grace queue, which emits it; an open
// one is emitted now.
func (b *Builder) finish(c *Connection, now time.Time) {
	if !c.closedAt.IsZero() {
		if b.conns[c.ID] == c {
			delete(b.conns, c.ID)
		}
		return
	}
	c.closedAt = now
	b.emit(c)
}

func (b *Builder) emit(c *Connection) {
	if c.emitted {
		return
	}
	c.emitted = true
	if b.conns[c.ID] == c {
		delete(b.conns, c.ID)
	}
	if c.tupleKnown {
		k := tupleKey{c.NetNS, c.Local, c.Remote}
		if b.tuples[k] == c {
			delete(b.tuples, k)
		}
	}
	b.removeEnd(c)
	c.conclude(b.cfg)
	b.timeWaitConcluded(c)
	b.linkAbandoned(c)
	if l := c.target; l != nil && l.ID < syntheticIDBase {
		c.ListenerID = l.ID
	}
	if l := c.listener; l != nil {
		// A listener first known by port gets its cookie later.
		if l.ID < syntheticIDBase {
			c.ListenerID = l.ID
		}
		if c.pending && c.Outcome == OutcomeTimeout {
			l.Abandoned++
		}
	}
	b.cfg.Emit(c)
	b.free = append(b.free, c)
}

// conclude settles outcome, closed_by, TIME_WAIT and the exported flags.
func (c *Connection) conclude(cfg BuilderConfig) {
	if c.Outcome == "" {
		c.Outcome = c.outcome()
	}
	if c.ClosedBy == "" {
		c.ClosedBy = c.closedBy()
	}
	if c.Outcome == OutcomeTimeWait {
		c.setFlag(FlagTimeWait)
		if c.twKilledAt.IsZero() {
			c.item(c.closedAt, Item{Kind: ItemTimeWait, State: StateTimeWait.String(), Detail: timeWaitDetail})
		} else {
			c.item(c.closedAt, Item{Kind: ItemTimeWait, State: StateTimeWait.String(), Detail: timeWaitKilledDetail})
			c.item(c.twKilledAt, Item{Kind: ItemTimeWaitKilled, State: StateTimeWait.String(), Reason: c.twKillReason, Detail: timeWaitKillDetail})
			sortTimeline(c.Timeline)
		}
	} else if !c.twKilledAt.IsZero() {
		c.flags &^= flagBit(FlagTimeWaitKilled)
	}
	for i := range c.Timeline {
		c.Timeline[i].OffsetUs = c.Timeline[i].At.Sub(c.Start).Microseconds()
	}
	switch c.Outcome {
	case OutcomeRefused:
		c.setFlag(FlagRefused)
	case OutcomeTimeout:
		if !c.established {
			c.setFlag(FlagHandshakeTimeout)
		}
	}
	end := c.closedAt
	if c.Outcome == OutcomeOpen || end.IsZero() {
		end = c.stateAt
		if n := len(c.Timeline); n > 0 && c.Timeline[n-1].At.After(end) {
			end = c.Timeline[n-1].At
		}
		// Still open when tracing stopped: it lived at least until then.
		if c.Outcome == OutcomeOpen && c.seenUntil.After(end) {
			end = c.seenUntil
		}
	}
	c.End = end
	c.DurationUs = end.Sub(c.Start).Microseconds()
	c.Flags = c.Flags[:0]
	for i, f := range AllFlags {
		if c.flags&(1<<i) != 0 {
			c.Flags = append(c.Flags, f)
		}
	}
}

func (c *Connection) outcome() Outcome {
	closed := !c.closedAt.IsZero()
	switch {
	case c.pending && closed && c.flags&flagBit(FlagResetSent) != 0:
		return OutcomeReset // the listener reset the request (onListenerReset)
	case c.pending && closed:
		return OutcomeTimeout // the request died without a child
	case !closed:
		return OutcomeOpen
	}
	reset := c.flags&(flagBit(FlagResetSent)|flagBit(FlagResetReceived)) != 0
	if !c.established {
		switch {
		case c.Role == RoleClient && c.Local.Port() == 0 && !reset && c.Retransmits.Syn == 0 && c.Errno == "":
			// CLOSE->SYN_SENT->CLOSE without a local port: tcp_v4_connect()
			// set SYN_SENT, then inet_hash_connect() found no free port and
			// connect() failed with EADDRNOTAVAIL. No packet was sent.
			c.Errno = "EADDRNOTAVAIL"
			c.setFlag(FlagPortExhausted)
			return OutcomeFailed
		case c.Errno == "ECONNREFUSED" || c.flags&flagBit(FlagResetReceived) != 0:
			return OutcomeRefused
		case c.Role == RoleClient && !reset && c.Errno == "" && c.closedFrom(StateSynSent):
			// SYN_SENT->CLOSE with no reset and no error: the owner closed
			// the socket mid-connect (__tcp_close() -> tcp_close_state()),
			// whatever SYNs were resent. A connect that times out reports
			// ETIMEDOUT first (tcp_write_err()).
			return OutcomeAbandoned
		case c.Errno == "ETIMEDOUT" || c.Retransmits.Syn > 0:
			return OutcomeTimeout
		case reset:
			return OutcomeReset
		}
		return OutcomeFailed
	}
	switch {
	case reset || c.Errno == "ECONNRESET" || c.Errno == "EPIPE":
		return OutcomeReset
	case c.Errno == "ETIMEDOUT":
		return OutcomeTimeout
	}
	// tcp_time_wait() hands the connection to a timewait sock and closes the
	// full socket from FIN_WAIT2 or CLOSING; no tracepoint names TIME_WAIT.
	if n := c.lastStateItem(); n != nil && n.To == StateClose.String() &&
		(n.From == StateFinWait2.String() || n.From == StateClosing.String()) && c.Errno == "" {
		return OutcomeTimeWait
	}
	return OutcomeClosed
}

// closedFrom reports whether the last state change went from `from` to CLOSE.
func (c *Connection) closedFrom(from State) bool {
	n := c.lastStateItem()
	return n != nil && n.To == StateClose.String() && n.From == from.String()
}

func (c *Connection) lastStateItem() *Item {
	for i := len(c.Timeline) - 1; i >= 0; i-- {
		if c.Timeline[i].Kind == KindState.String() {
			return &c.Timeline[i]
		}
	}
	return nil
}

// closedBy: who sent the first FIN or RST. A local FIN is the move to
// FIN_WAIT1, a remote one the move to CLOSE_WAIT.
func (c *Connection) closedBy() string {
	for _, it := range c.Timeline {
		switch {
		case it.Kind == KindState.String() && it.To == StateFinWait1.String():
			return "local"
		case it.Kind == KindState.String() && it.To == StateCloseWait.String():
			return "remote"
		case it.Kind == KindResetSent.String():
			return "local"
		case it.Kind == KindResetReceived.String():
			return "remote"
		}
	}
	return ""
}
