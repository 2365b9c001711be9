package tracer

import (
	"iter"
	"math/bits"
	"sync"
)

// The small enumerations of a connection record. Each has its names in
// one table, indexed by value; String renders a value and the Parse
// function reads a name back (from an export).

// Role says which end of a connection a record describes.
type Role uint8

// Roles.
const (
	RoleUnknown Role = iota
	RoleClient       // active open: connect()
	RoleServer       // passive open: a child of a listener
)

var roleNames = [...]string{RoleUnknown: "", RoleClient: "client", RoleServer: "server"}

func (r Role) String() string {
	if int(r) < len(roleNames) {
		return roleNames[r]
	}
	return ""
}

// ParseRole reads a role name; "" is RoleUnknown.
func ParseRole(s string) (Role, bool) { return parseName[Role](roleNames[:], s) }

// Outcome is how a connection ended.
type Outcome uint8

// Outcomes. Other tools depend on their names: never rename.
const (
	OutcomeUnknown  Outcome = iota // not concluded yet
	OutcomeOpen                    // still open when tracing stopped
	OutcomeClosed                  // orderly close, no TIME_WAIT on this end
	OutcomeTimeWait                // orderly close, this end entered TIME_WAIT
	OutcomeReset                   // ended by a reset, sent or received
	OutcomeRefused                 // the handshake met a reset: nothing listened
	OutcomeTimeout                 // a handshake or an established connection timed out
	OutcomeFailed                  // ended otherwise before it was established
	// OutcomeAbandoned: the client's own process closed the socket while
	// connect() was still in progress (SYN_SENT): no reset, no error, no
	// connect timeout. ab's spare connects, curl --connect-timeout.
	OutcomeAbandoned
)

var outcomeNames = [...]string{
	OutcomeUnknown:   "",
	OutcomeOpen:      "open",
	OutcomeClosed:    "closed",
	OutcomeTimeWait:  "time_wait",
	OutcomeReset:     "reset",
	OutcomeRefused:   "refused",
	OutcomeTimeout:   "timeout",
	OutcomeFailed:    "failed",
	OutcomeAbandoned: "abandoned_by_app",
}

func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return ""
}

// ParseOutcome reads an outcome name; ok is false for "" and unknown names.
func ParseOutcome(s string) (Outcome, bool) {
	o, ok := parseName[Outcome](outcomeNames[:], s)
	return o, ok && o != OutcomeUnknown
}

// AllOutcomes lists every outcome in report order.
var AllOutcomes = []Outcome{OutcomeOpen, OutcomeClosed, OutcomeTimeWait, OutcomeReset, OutcomeRefused, OutcomeTimeout, OutcomeAbandoned, OutcomeFailed}

// Flag marks something worth a look. Its value is its place in report
// order. Other tools depend on the names: never rename, only add (at the
// end, before flagCount).
type Flag uint8

// Flags, in the order they are reported.
const (
	FlagSynRetransmitted Flag = iota
	FlagSynAckRetransmitted
	FlagLongSynRecv
	FlagResetSent
	FlagResetReceived
	FlagRefused
	FlagHandshakeTimeout
	FlagDataRetransmitted
	FlagFinRetransmitted
	FlagTimeWait
	FlagPreexisting
	FlagIncomplete
	FlagListenOverflow
	FlagSyncookie
	FlagPortExhausted
	// FlagTimeWaitKilled: the end entered TIME_WAIT (outcome time_wait)
	// and a reset from the other end destroyed the timewait sock early,
	// freeing its port.
	FlagTimeWaitKilled
	flagCount
)

var flagNames = [...]string{
	FlagSynRetransmitted:    "syn_retransmitted",
	FlagSynAckRetransmitted: "synack_retransmitted",
	FlagLongSynRecv:         "long_syn_recv",
	FlagResetSent:           "reset_sent",
	FlagResetReceived:       "reset_received",
	FlagRefused:             "refused",
	FlagHandshakeTimeout:    "handshake_timeout",
	FlagDataRetransmitted:   "data_retransmitted",
	FlagFinRetransmitted:    "fin_retransmitted",
	FlagTimeWait:            "time_wait",
	FlagPreexisting:         "preexisting",
	FlagIncomplete:          "incomplete",
	FlagListenOverflow:      "listen_overflow",
	FlagSyncookie:           "syncookie",
	FlagPortExhausted:       "port_exhausted",
	FlagTimeWaitKilled:      "time_wait_killed",
}

// unknownFlags gives a flag name this build does not know (an export of
// a newer tcpscope) one of the bits above the known ones, for this
// process, so that reading and rendering such an export keeps it.
var unknownFlags = newRegistry(uint32(flagCount), 32)

func (f Flag) String() string {
	if f < flagCount {
		return flagNames[f]
	}
	name, _ := unknownFlags.name(uint32(f))
	return name
}

// ParseFlag reads a flag name. A name this build does not know gets a
// process-local value (see unknownFlags); ok is false for "" and when no
// bit is left.
func ParseFlag(s string) (Flag, bool) {
	if f, ok := parseName[Flag](flagNames[:], s); ok {
		return f, true
	}
	if s == "" {
		return 0, false
	}
	v, ok := unknownFlags.value(s)
	return Flag(v), ok
}

// AllFlags lists every flag in report order.
var AllFlags = func() []Flag {
	out := make([]Flag, flagCount)
	for i := range out {
		out[i] = Flag(i)
	}
	return out
}()

// FlagSet is a set of flags; it iterates in report order.
type FlagSet uint32

// FlagsOf returns the set of the given flags.
func FlagsOf(flags ...Flag) FlagSet {
	var s FlagSet
	for _, f := range flags {
		s = s.With(f)
	}
	return s
}

// Has reports whether f is in the set.
func (s FlagSet) Has(f Flag) bool { return s&(1<<f) != 0 }

// With returns the set with f added.
func (s FlagSet) With(f Flag) FlagSet { return s | 1<<f }

// Without returns the set with f removed.
func (s FlagSet) Without(f Flag) FlagSet { return s &^ (1 << f) }

// Len is the number of flags in the set.
func (s FlagSet) Len() int { return bits.OnesCount32(uint32(s)) }

// All yields the flags in report order.
func (s FlagSet) All() iter.Seq[Flag] {
	return func(yield func(Flag) bool) {
		for r := uint32(s); r != 0; r &= r - 1 {
			if !yield(Flag(bits.TrailingZeros32(r))) {
				return
			}
		}
	}
}

// List returns the flags in report order.
func (s FlagSet) List() []Flag {
	out := make([]Flag, 0, s.Len())
	for f := range s.All() {
		out = append(out, f)
	}
	return out
}

// String lists the flag names in report order, comma-separated.
func (s FlagSet) String() string {
	var b []byte
	for f := range s.All() {
		if len(b) > 0 {
			b = append(b, ',')
		}
		b = append(b, f.String()...)
	}
	return string(b)
}

// Family is a connection's address family.
type Family uint8

// Families; FamilyUnknown when no tuple was seen.
const (
	FamilyUnknown Family = iota
	FamilyIPv4
	FamilyIPv6
)

var familyNames = [...]string{FamilyUnknown: "", FamilyIPv4: "ipv4", FamilyIPv6: "ipv6"}

func (f Family) String() string {
	if int(f) < len(familyNames) {
		return familyNames[f]
	}
	return ""
}

// ParseFamily reads a family name; "" is FamilyUnknown.
func ParseFamily(s string) (Family, bool) { return parseName[Family](familyNames[:], s) }

// ClosedBy says which end sent the first FIN or RST.
type ClosedBy uint8

// Closing ends; ClosedByNone when not closed, or with no FIN or RST.
const (
	ClosedByNone ClosedBy = iota
	ClosedByLocal
	ClosedByRemote
)

var closedByNames = [...]string{ClosedByNone: "", ClosedByLocal: "local", ClosedByRemote: "remote"}

func (c ClosedBy) String() string {
	if int(c) < len(closedByNames) {
		return closedByNames[c]
	}
	return ""
}

// ParseClosedBy reads a closed_by name; "" is ClosedByNone.
func ParseClosedBy(s string) (ClosedBy, bool) { return parseName[ClosedBy](closedByNames[:], s) }

// SynRecvHow says how a server's SYN_RECV time was measured.
type SynRecvHow uint8

// SynRecv measurement methods, from most to least exact.
const (
	SynRecvUnknown      SynRecvHow = iota // not measured
	SynRecvFromSynAck                     // ACK time minus the request's first SYN-ACK (snt_synack), us
	SynRecvFromSRTT                       // no SYN-ACK retransmit: the child's first RTT sample is exactly SYN-ACK to ACK
	SynRecvFromRTOTime                    // SYN-ACK timeouts happened but their events were not seen: ms resolution (6.7+)
	SynRecvFromChildAge                   // lower bound only: the child socket's own SYN_RECV time
)

var synRecvHowNames = [...]string{
	SynRecvUnknown:      "",
	SynRecvFromSynAck:   "synack_timestamp",
	SynRecvFromSRTT:     "srtt",
	SynRecvFromRTOTime:  "total_rto_time",
	SynRecvFromChildAge: "child_socket",
}

func (h SynRecvHow) String() string {
	if int(h) < len(synRecvHowNames) {
		return synRecvHowNames[h]
	}
	return ""
}

// ParseSynRecvHow reads a syn_recv_method name; "" is SynRecvUnknown.
func ParseSynRecvHow(s string) (SynRecvHow, bool) {
	return parseName[SynRecvHow](synRecvHowNames[:], s)
}

// ItemKind says what a timeline item is: an event kind, or a step the
// builder inferred. An event kind's value is its Kind's.
type ItemKind uint8

// Item kinds.
const (
	ItemState            = ItemKind(KindState)
	ItemRetransmit       = ItemKind(KindRetransmit)
	ItemSynAckRetransmit = ItemKind(KindSynAckRetransmit)
	ItemResetSent        = ItemKind(KindResetSent)
	ItemResetReceived    = ItemKind(KindResetReceived)
	ItemError            = ItemKind(KindError)
	ItemListenOverflow   = ItemKind(KindListenOverflow)
)

// Inferred item kinds, above every event kind.
const (
	// ItemSynAck marks the request socket's first SYN-ACK: the start of
	// what ss calls SYN-RECV, which no state tracepoint sees.
	ItemSynAck         ItemKind = 64 + iota
	ItemTimeWait                // the socket handed over to a timewait sock
	ItemTimeWaitKilled          // a reset from the other end destroyed the timewait sock
	itemInferredEnd
)

var inferredItemNames = [...]string{
	ItemSynAck - ItemSynAck:         "synack",
	ItemTimeWait - ItemSynAck:       "time_wait",
	ItemTimeWaitKilled - ItemSynAck: "time_wait_killed",
}

// unknownItemKinds gives an item kind this build does not know (an export
// of a newer tcpscope) a process-local value, so that it survives a read
// and render.
var unknownItemKinds = newRegistry(uint32(itemInferredEnd), 256)

func (k ItemKind) String() string {
	if name := itemKindNames[k]; name != "" {
		return name
	}
	return unknownItemKindName(k)
}

// itemKindNames holds every known item kind's name, for the export writer.
var itemKindNames = func() (t [256]string) {
	for _, k := range Kinds() {
		t[k] = k.String()
	}
	for i, name := range inferredItemNames {
		t[ItemSynAck+ItemKind(i)] = name
	}
	return t
}()

func unknownItemKindName(k ItemKind) string {
	name, _ := unknownItemKinds.name(uint32(k))
	return name
}

// ParseItemKind reads an item kind name; one this build does not know
// gets a process-local value.
func ParseItemKind(s string) (ItemKind, bool) {
	for _, k := range Kinds() {
		if k.String() == s {
			return ItemKind(k), true
		}
	}
	for i, name := range inferredItemNames {
		if name == s {
			return ItemSynAck + ItemKind(i), true
		}
	}
	if s == "" {
		return 0, false
	}
	v, ok := unknownItemKinds.value(s)
	return ItemKind(v), ok
}

// Detail says what an item means beyond its kind; the texts are the
// renderer's (output). Details that carry a number keep it in their own
// Item field (SynAckNo, Segment).
type Detail uint8

// Details.
const (
	DetailNone Detail = iota
	// error: the ECONNRESET of this end's own abort (tcp_disconnect()).
	DetailOwnAbort
	// synack: the request socket's first SYN-ACK.
	DetailFirstSynAck
	// synack_retransmit: SYN-ACK number Item.SynAckNo.
	DetailSynAckNo
	// retransmit: what was resent (Event.Resent); not sent when the item
	// has an errno.
	DetailResentSyn
	DetailResentSynAck
	DetailResentFin
	DetailResentData
	DetailResentDataFin // data with a FIN riding on it
	// reset_sent without a connection socket: Item.Effect says more.
	DetailNoSocket        // a refused SYN
	DetailNoSocketSegment // answering a segment with flags Item.Segment
	DetailByListener      // sent by the listening socket
	// time_wait and time_wait_killed.
	DetailTimeWaitHolds  // holds the port its 60 s
	DetailTimeWaitHanded // handed to a timewait sock (that a reset killed)
	DetailTimeWaitKill   // the reset that killed it
	// listen_overflow: the final ACK dropped (with a SYN cookie).
	DetailOverflow
	DetailOverflowCookie
	// DetailCount bounds the details this build writes; a renderer may use
	// the values above for texts it read and did not know.
	DetailCount
)

// ResetEffect is what a reset sent by no connection socket did to the
// record it joined.
type ResetEffect uint8

// Reset effects.
const (
	ResetEffectNone     ResetEffect = iota
	ResetDroppedRequest             // it ended the pending request
	ResetAfterClose                 // it answered a segment that came after the close
	ResetEffectCount
)

// registry hands out process-local values for names this process does not
// know, above a table's values: a name read from an export of another
// kernel or build, kept so that rendering it gives the name back.
type registry struct {
	mu        sync.Mutex
	base, end uint32
	byName    map[string]uint32
	names     []string
}

func newRegistry(base, end uint32) *registry {
	return &registry{base: base, end: end, byName: map[string]uint32{}}
}

// value returns the name's value, adding it; ok is false when the range
// is full.
func (r *registry) value(name string) (uint32, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if v, ok := r.byName[name]; ok {
		return v, true
	}
	v := r.base + uint32(len(r.names))
	if v >= r.end {
		return 0, false
	}
	r.byName[name] = v
	r.names = append(r.names, name)
	return v, true
}

func (r *registry) name(v uint32) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if v < r.base || v-r.base >= uint32(len(r.names)) {
		return "", false
	}
	return r.names[v-r.base], true
}

func parseName[T ~uint8](table []string, s string) (T, bool) {
	for i, name := range table {
		if name == s {
			return T(i), true
		}
	}
	return 0, false
}
