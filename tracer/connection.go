package tracer

import (
	"net/netip"
	"time"

	"github.com/tcpscope/tcpscope/tracer/cgroups"
)

// Retransmits counts segments the kernel resent (sent ones only). Data
// counts every segment with payload, a FIN riding on data included; Fin
// counts bare FINs, whose loss delays only the close.
type Retransmits struct {
	Syn    uint32
	SynAck uint32
	Data   uint32
	Fin    uint32
}

// Item is one step of a connection's timeline.
type Item struct {
	At       time.Time
	OffsetUs int64
	Kind     ItemKind
	From, To State // state items
	State    State // the socket's state when the event fired; 0 for none
	// Reason: reset items, when HasReason (0 is NOT_SPECIFIED).
	Reason    RSTReason
	HasReason bool
	Errno     Errno
	Detail    Detail
	// SynAckNo: DetailSynAckNo, the SYN-ACK's number (2 is the first
	// retransmit). Segment: DetailNoSocketSegment, the flags of the segment
	// the reset answered. Effect: what a reset sent by no connection socket
	// did to the record it joined.
	SynAckNo uint8
	Segment  TCPFlags
	Effect   ResetEffect
	// PrevStateUs is the time spent in From, for state items.
	PrevStateUs int64
}

// Connection is the story of one TCP connection as seen from one end.
type Connection struct {
	ID          uint64
	PeerID      uint64
	ListenerID  uint64
	Role        Role
	Family      Family
	Local       netip.AddrPort
	Remote      netip.AddrPort
	NetNS       uint32
	PID         uint32
	Comm        string
	Start       time.Time
	End         time.Time
	DurationUs  int64
	HandshakeUs int64 // client: SYN_SENT to ESTABLISHED; -1 unknown
	SynRecvUs   int64 // server: SYN-ACK to final ACK; -1 unknown
	SynRecvHow  SynRecvHow
	Retransmits Retransmits
	// Payload bytes, from tcp_sock at the last ESTABLISHED or CLOSE seen:
	// received, and sent and acknowledged by the peer.
	BytesReceived uint64
	BytesAcked    uint64
	ClosedBy      ClosedBy
	Outcome       Outcome
	Errno         Errno
	Flags         FlagSet
	Timeline      []Item
	// CgroupID is the cgroup v2 id of the socket's owner (Event.CgroupID):
	// the connect() caller's cgroup, or a server child's listener's (the
	// listen() caller's). 0 when unknown.
	CgroupID uint64
	// Cgroup is what CgroupID names, filled when the record is emitted
	// (BuilderConfig.Cgroups); only CgroupID when the path was not found.
	Cgroup cgroups.Info

	// Builder state, not exported.
	listener     *Listener
	target       *Listener   // client: the traced listener its SYN retransmits aimed at
	twin         *Connection // another server child with this tuple
	state        State
	stateAt      time.Time
	synSentAt    time.Time
	established  bool
	closedAt     time.Time
	seenUntil    time.Time // still open when tracing stopped, at this time
	pending      bool      // a request socket seen only through SYN-ACK retransmits
	sntSynAckNs  int64
	lastSynAckAt time.Time
	numTimeout   uint8
	tupleKnown   bool
	emitted      bool
	twKilledAt   time.Time // when a reset killed its timewait sock
	twKillReason RSTReason
	twKillHasRsn bool
	twTold       bool        // OnTimeWait was told at the close
	endKey       endKey      // the tuple it is indexed under in Builder.ends
	endNext      *Connection // next record with the same tuple in another namespace
	inEnds       bool
}

// Has reports whether flag f is set.
func (c *Connection) Has(f Flag) bool { return c.Flags.Has(f) }

func (c *Connection) setFlag(f Flag) { c.Flags = c.Flags.With(f) }

// Flagged reports whether any flag other than time_wait and preexisting is
// set: the connections worth a line while recording.
func (c *Connection) Flagged() bool {
	return c.Flags.Without(FlagTimeWait).Without(FlagPreexisting) != 0
}
