// Package findings turns what a recording holds into findings: one per
// cause found (a listener whose accept queue overflowed, connects that
// found no local port...), each with its evidence in numbers from the
// recording, the mechanism in plain words and what to change, quoting the
// settings of the namespace concerned. It reads only what an export holds,
// so a saved recording gives the same findings as the live run: the live
// path and the export reader both fill its inputs (Accumulator.Add with
// each finished connection, then Finish with the rest).
package findings

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/tcpscope/tcpscope/tracer"
)

// Kind is what a finding is about. Other tools depend on the names:
// never rename, only add.
type Kind uint8

// Kinds, in report order among findings of one severity.
const (
	AcceptQueueOverflow Kind = iota
	TimeWaitExhaustion
	HandshakeTimeout
	SynFloodCookies
	LateFinalACK
	ServerResets
	ClientResets
	DataLoss
	ConnectionRefused
	kindCount
)

var kindNames = [...]string{
	AcceptQueueOverflow: "accept_queue_overflow",
	TimeWaitExhaustion:  "time_wait_exhaustion",
	HandshakeTimeout:    "handshake_timeout",
	SynFloodCookies:     "syn_flood_cookies",
	LateFinalACK:        "late_final_ack",
	ServerResets:        "server_resets",
	ClientResets:        "client_resets",
	DataLoss:            "data_loss",
	ConnectionRefused:   "connection_refused",
}

func (k Kind) String() string {
	if k < kindCount {
		return kindNames[k]
	}
	return ""
}

// Kinds lists every kind in report order.
func Kinds() []Kind {
	out := make([]Kind, kindCount)
	for i := range out {
		out[i] = Kind(i)
	}
	return out
}

// ParseKind reads a kind name.
func ParseKind(s string) (Kind, bool) {
	i := slices.Index(kindNames[:], s)
	return Kind(i), i >= 0 && s != ""
}

// Severity is how much a finding matters; a higher one is reported first.
type Severity uint8

// Severities, least severe first.
const (
	Info Severity = iota
	Warning
	Critical
	severityCount
)

var severityNames = [...]string{Info: "info", Warning: "warning", Critical: "critical"}

func (s Severity) String() string {
	if s < severityCount {
		return severityNames[s]
	}
	return ""
}

// ParseSeverity reads a severity name.
func ParseSeverity(s string) (Severity, bool) {
	i := slices.Index(severityNames[:], s)
	return Severity(i), i >= 0
}

// Fact is one number of a finding's evidence: a listener's field, a
// count of connections, or a kernel counter's delta (named as nstat
// names it, e.g. TcpExt.ListenOverflows).
type Fact struct {
	Name  string
	Value uint64
}

// Finding is one cause found in a recording.
type Finding struct {
	Kind     Kind
	Severity Severity
	NetNS    uint32
	// Subject is what the finding is about: a listener "addr:port" and
	// its owner, or a destination.
	Subject string
	// Evidence are the numbers from this recording, most telling first.
	Evidence []Fact
	// Sysctls are the current settings of NetNS the advice quotes.
	Sysctls []Sysctl
	// First and Last bound the connections concerned (zero: none).
	First, Last time.Time
	// Mechanism is what happened, in one or two plain sentences; Advice,
	// what to change.
	Mechanism, Advice string
}

// Fact returns the value of one of the evidence's numbers.
func (f *Finding) Fact(name string) (uint64, bool) {
	for _, e := range f.Evidence {
		if e.Name == name {
			return e.Value, true
		}
	}
	return 0, false
}

// Listener is a listener as an export holds it.
type Listener struct {
	ID          uint64
	NetNS       uint32
	Local       netip.AddrPort
	PID         uint32
	Comm        string
	Backlog     uint32
	PeakQueue   uint32
	Connections uint64
	Overflows   uint64
	Syncookies  uint64
	// From sampling: see tracer.Listener.
	QueueSamples, FullSamples                                uint64
	OverflowsAttributed, SynDropsAttributed, DropsAttributed uint64
	SynRetransmitClients, ClientSynRetransmits               uint64
	Start, End                                               time.Time
}

// Counter is one kernel counter's delta in one namespace.
type Counter struct {
	NetNS uint32
	Name  string
	Delta uint64
}

// TimeWait is one destination's TIME_WAIT load (tracer.TimeWaitDest).
type TimeWait struct {
	NetNS   uint32
	Local   netip.Addr
	Remote  netip.AddrPort
	Peak    int
	Ports   int // usable local ports, 0 unknown
	Entered uint64
	Warned  bool
}

// Env is what a recording holds besides its connections.
type Env struct {
	Start, End time.Time
	Listeners  []Listener
	Counters   []Counter
	TimeWait   []TimeWait
	Sysctls    []Sysctl
}

// counter returns a namespace counter's delta (0 when it did not move).
func (e *Env) counter(netnsIno uint32, name string) uint64 {
	for _, c := range e.Counters {
		if c.NetNS == netnsIno && c.Name == name {
			return c.Delta
		}
	}
	return 0
}

// sysctl returns a namespace setting's value ("" when not read).
func (e *Env) sysctl(netnsIno uint32, name string) string {
	for _, s := range e.Sysctls {
		if s.NetNS == netnsIno && s.Name == name {
			return s.Value
		}
	}
	return ""
}

// quote lists the settings of a namespace that were read, among names.
func (e *Env) quote(netnsIno uint32, names ...string) []Sysctl {
	var out []Sysctl
	for _, n := range names {
		if v := e.sysctl(netnsIno, n); v != "" {
			out = append(out, Sysctl{NetNS: netnsIno, Name: n, Value: v})
		}
	}
	return out
}

// value quotes a setting for a sentence: "net.core.somaxconn = 4096", or
// "net.core.somaxconn (not read)".
func (e *Env) value(netnsIno uint32, name string) string {
	if v := e.sysctl(netnsIno, name); v != "" {
		return fmt.Sprintf("%s = %s", name, v)
	}
	return name + " (not read)"
}

// span bounds some connections' times.
type span struct{ first, last time.Time }

func (s *span) add(c *tracer.Connection) {
	if s.first.IsZero() || c.Start.Before(s.first) {
		s.first = c.Start
	}
	if c.End.After(s.last) {
		s.last = c.End
	}
}

// Accumulator collects, connection by connection, what findings need, so
// that connections need not be kept.
type Accumulator struct {
	// listen_overflow and syncookie connections, by the listener they
	// met: a server's listener id, or a client's destination.
	overflowByID, cookieByID     map[uint64]*group
	overflowByDst, cookieByDst   map[dest]*group
	refused, exhausted, timeWait map[dest]*group
	timedOut                     map[dest]*group   // connects that timed out
	lateACK                      map[uint64]*group // long SYN_RECV with SYN-ACK retransmits, by listener id
	resets                       map[resetKey]*group
	// Client resets for unread or late data, each connection's span, kept apart
	// until Finish knows when its process's connections ended (see
	// stopWindow); and by client process, when its last connection ended.
	unreadResets map[resetKey][]span
	clientEnd    map[proc]time.Time
	// Per namespace: every connection, and by peer address those that
	// retransmitted data.
	connsIn  map[uint32]uint64
	dataLoss map[uint32]map[netip.Addr]*group
}

// resetKey is who sent resets, and the kernel's reason.
type resetKey struct {
	role   tracer.Role
	netns  uint32
	end    netip.AddrPort // a server's local end, a client's destination
	comm   string
	pid    uint32
	reason string
}

// proc is a process in a namespace.
type proc struct {
	netns uint32
	comm  string
	pid   uint32
}

// stopWindow: a load tool that stops (wrk at its -d, ab at its -n) closes
// the connections it still has: those whose answer had arrived unread send
// a reset as they close (reason TCP_ABORT_ON_CLOSE, __tcp_close()), those
// whose answer comes after the close send one when it comes (reason
// TCP_ABORT_ON_DATA, tcp_rcv_state_process() in FIN_WAIT1/2). Such client
// resets within stopWindow of the process's last connection end are that
// stop, not a fault.
const stopWindow = time.Second

// dest is a namespace and a destination.
type dest struct {
	netns uint32
	to    netip.AddrPort
}

// group counts some connections of one subject.
type group struct {
	n          uint64
	span       span
	closedHere uint64 // of TIME_WAIT connections: this end closed first
	server     uint64 // of refused ones: seen on the server side only
	synRtx     uint64 // of timed-out connects: their SYN retransmits
	longest    time.Duration
	synAckRtx  uint64 // of late final ACKs: the SYN-ACK retransmits
	dataRtx    uint64 // of data_loss: the data segments retransmitted
	longestUs  int64  // of late final ACKs: the longest SYN_RECV stay
}

func (g *group) add(c *tracer.Connection) {
	g.n++
	g.span.add(c)
}

// New returns an empty Accumulator.
func New() *Accumulator {
	return &Accumulator{
		overflowByID: map[uint64]*group{}, cookieByID: map[uint64]*group{},
		overflowByDst: map[dest]*group{}, cookieByDst: map[dest]*group{},
		refused: map[dest]*group{}, exhausted: map[dest]*group{}, timeWait: map[dest]*group{}, timedOut: map[dest]*group{},
		lateACK: map[uint64]*group{}, resets: map[resetKey]*group{}, unreadResets: map[resetKey][]span{}, clientEnd: map[proc]time.Time{},
		connsIn: map[uint32]uint64{}, dataLoss: map[uint32]map[netip.Addr]*group{},
	}
}

func groupOf[K comparable](m map[K]*group, k K) *group {
	g, ok := m[k]
	if !ok {
		g = &group{}
		m[k] = g
	}
	return g
}

// Add takes one finished connection.
func (a *Accumulator) Add(c *tracer.Connection) {
	for _, f := range []struct {
		flag  tracer.Flag
		byID  map[uint64]*group
		byDst map[dest]*group
	}{{tracer.FlagListenOverflow, a.overflowByID, a.overflowByDst}, {tracer.FlagSyncookie, a.cookieByID, a.cookieByDst}} {
		if !c.Flags.Has(f.flag) {
			continue
		}
		switch {
		case c.Role == tracer.RoleServer && c.ListenerID != 0:
			groupOf(f.byID, c.ListenerID).add(c)
		case c.Role == tracer.RoleClient:
			groupOf(f.byDst, dest{c.NetNS, c.Remote}).add(c)
		}
	}
	switch {
	case c.Outcome == tracer.OutcomeRefused && c.Role == tracer.RoleClient:
		groupOf(a.refused, dest{c.NetNS, c.Remote}).add(c)
	case c.Outcome == tracer.OutcomeRefused && c.Role == tracer.RoleServer && c.PeerID == 0:
		// The refusing end alone was traced: its local end is where
		// nothing listened.
		g := groupOf(a.refused, dest{c.NetNS, c.Local})
		g.add(c)
		g.server++
	}
	if c.Flags.Has(tracer.FlagPortExhausted) {
		groupOf(a.exhausted, dest{c.NetNS, c.Remote}).add(c)
	}
	if c.Role == tracer.RoleServer && c.ListenerID != 0 && c.Flags.Has(tracer.FlagLongSynRecv) && c.Retransmits.SynAck > 0 {
		g := groupOf(a.lateACK, c.ListenerID)
		g.add(c)
		g.synAckRtx += uint64(c.Retransmits.SynAck)
		g.longestUs = max(g.longestUs, c.SynRecvUs)
	}
	a.connsIn[c.NetNS]++
	if c.Flags.Has(tracer.FlagDataRetransmitted) {
		peers, ok := a.dataLoss[c.NetNS]
		if !ok {
			peers = map[netip.Addr]*group{}
			a.dataLoss[c.NetNS] = peers
		}
		g := groupOf(peers, c.Remote.Addr())
		g.add(c)
		g.dataRtx += uint64(c.Retransmits.Data)
	}
	if c.Flags.Has(tracer.FlagResetSent) && c.Outcome != tracer.OutcomeRefused && c.Role != tracer.RoleUnknown {
		k := resetKey{role: c.Role, netns: c.NetNS, end: c.Local, comm: c.Comm, pid: c.PID, reason: resetReason(c)}
		if c.Role == tracer.RoleClient {
			k.end = c.Remote
		}
		if c.Role == tracer.RoleClient && (k.reason == "TCP_ABORT_ON_CLOSE" || k.reason == "TCP_ABORT_ON_DATA") {
			a.unreadResets[k] = append(a.unreadResets[k], span{c.Start, c.End})
		} else {
			groupOf(a.resets, k).add(c)
		}
	}
	if c.Role == tracer.RoleClient {
		p := proc{c.NetNS, c.Comm, c.PID}
		if c.End.After(a.clientEnd[p]) {
			a.clientEnd[p] = c.End
		}
	}
	if c.Role == tracer.RoleClient && c.Flags.Has(tracer.FlagHandshakeTimeout) {
		g := groupOf(a.timedOut, dest{c.NetNS, c.Remote})
		g.add(c)
		g.synRtx += uint64(c.Retransmits.Syn)
		g.longest = max(g.longest, c.End.Sub(c.Start))
	}
	if c.Outcome == tracer.OutcomeTimeWait && c.Role == tracer.RoleClient {
		g := groupOf(a.timeWait, dest{c.NetNS, c.Remote})
		g.add(c)
		if c.ClosedBy == tracer.ClosedByLocal {
			g.closedHere++
		}
	}
}

// Finish computes the findings, most severe first.
func (a *Accumulator) Finish(env Env) []Finding {
	var out []Finding
	out = append(out, a.acceptQueue(&env)...)
	out = append(out, a.synCookies(&env)...)
	out = append(out, a.lateFinalACK(&env)...)
	out = append(out, a.resetFindings(&env)...)
	out = append(out, a.dataLossFindings(&env)...)
	out = append(out, a.timeWaitExhaustion(&env)...)
	out = append(out, a.handshakeTimeout(&env)...)
	out = append(out, a.connectionRefused(&env)...)
	slices.SortStableFunc(out, func(x, y Finding) int {
		if c := cmp.Compare(y.Severity, x.Severity); c != 0 {
			return c
		}
		if c := cmp.Compare(x.Kind, y.Kind); c != 0 {
			return c
		}
		if c := cmp.Compare(y.Evidence[0].Value, x.Evidence[0].Value); c != 0 {
			return c
		}
		return cmp.Compare(x.Subject, y.Subject)
	})
	return out
}

// listenerSubject names a listener and its owner.
func listenerSubject(l *Listener) string {
	s := l.Local.String()
	if l.Comm != "" || l.PID != 0 {
		s += fmt.Sprintf(" (%s/%d)", l.Comm, l.PID)
	}
	return s
}

// serves tells whether a listener takes connections toward to.
func serves(l *Listener, to netip.AddrPort) bool {
	return l.Local.Port() == to.Port() && (l.Local.Addr().IsUnspecified() || l.Local.Addr() == to.Addr())
}

// clientGroups sums the groups of clients whose destination a listener
// serves, in its namespace.
func clientGroups(m map[dest]*group, l *Listener) group {
	var sum group
	for d, g := range m {
		if d.netns == l.NetNS && serves(l, d.to) {
			sum.n += g.n
			merge(&sum.span, g.span)
		}
	}
	return sum
}

func merge(s *span, o span) {
	if o.first.IsZero() {
		return
	}
	if s.first.IsZero() || o.first.Before(s.first) {
		s.first = o.first
	}
	if o.last.After(s.last) {
		s.last = o.last
	}
}

// facts keeps the named numbers, dropping zero ones after the first keep.
func facts(keep int, fs ...Fact) []Fact {
	out := fs[:keep:keep]
	for _, f := range fs[keep:] {
		if f.Value != 0 {
			out = append(out, f)
		}
	}
	return out
}
