package tracer

import (
	"net/netip"
	"time"
)

// Role says which end of a connection a record describes.
type Role string

// Roles.
const (
	RoleClient Role = "client" // active open: connect()
	RoleServer Role = "server" // passive open: a child of a listener
)

// Outcome is how a connection ended.
type Outcome string

// Outcomes. Other tools depend on these names: never rename.
const (
	OutcomeOpen     Outcome = "open"      // still open when tracing stopped
	OutcomeClosed   Outcome = "closed"    // orderly close, no TIME_WAIT on this end
	OutcomeTimeWait Outcome = "time_wait" // orderly close, this end entered TIME_WAIT
	OutcomeReset    Outcome = "reset"     // ended by a reset, sent or received
	OutcomeRefused  Outcome = "refused"   // the handshake met a reset: nothing listened
	OutcomeTimeout  Outcome = "timeout"   // a handshake or an established connection timed out
	OutcomeFailed   Outcome = "failed"    // ended otherwise before it was established
	// OutcomeAbandoned: the client's own process closed the socket while
	// connect() was still in progress (SYN_SENT): no reset, no error, no
	// connect timeout. ab's spare connects, curl --connect-timeout.
	OutcomeAbandoned Outcome = "abandoned_by_app"
)

// Flag marks something worth a look. Other tools depend on these names:
// never rename, only add.
type Flag string

// Flags, in the order they are reported.
const (
	FlagSynRetransmitted    Flag = "syn_retransmitted"
	FlagSynAckRetransmitted Flag = "synack_retransmitted"
	FlagLongSynRecv         Flag = "long_syn_recv"
	FlagResetSent           Flag = "reset_sent"
	FlagResetReceived       Flag = "reset_received"
	FlagRefused             Flag = "refused"
	FlagHandshakeTimeout    Flag = "handshake_timeout"
	FlagDataRetransmitted   Flag = "data_retransmitted"
	FlagFinRetransmitted    Flag = "fin_retransmitted"
	FlagTimeWait            Flag = "time_wait"
	FlagPreexisting         Flag = "preexisting"
	FlagIncomplete          Flag = "incomplete"
	FlagListenOverflow      Flag = "listen_overflow"
	FlagSyncookie           Flag = "syncookie"
	FlagPortExhausted       Flag = "port_exhausted"
	// FlagTimeWaitKilled: the end entered TIME_WAIT (outcome time_wait)
	// and a reset from the other end destroyed the timewait sock early,
	// freeing its port.
	FlagTimeWaitKilled Flag = "time_wait_killed"
)

// AllFlags lists every flag in report order.
var AllFlags = []Flag{
	FlagSynRetransmitted, FlagSynAckRetransmitted, FlagLongSynRecv, FlagResetSent, FlagResetReceived,
	FlagRefused, FlagHandshakeTimeout, FlagDataRetransmitted, FlagFinRetransmitted, FlagTimeWait, FlagPreexisting, FlagIncomplete,
	FlagListenOverflow, FlagSyncookie, FlagPortExhausted, FlagTimeWaitKilled,
}

// AllOutcomes lists every outcome in report order.
var AllOutcomes = []Outcome{OutcomeOpen, OutcomeClosed, OutcomeTimeWait, OutcomeReset, OutcomeRefused, OutcomeTimeout, OutcomeAbandoned, OutcomeFailed}

// Retransmits counts segments the kernel resent (sent ones only). Data
// counts every segment with payload, a FIN riding on data included; Fin
// counts bare FINs, whose loss delays only the close.
type Retransmits struct {
	Syn    uint32
	SynAck uint32
	Data   uint32
	Fin    uint32
}

// Item kinds of a timeline besides the event kinds.
const (
	ItemTimeWait       = "time_wait"        // inferred: the socket handed over to a timewait sock
	ItemTimeWaitKilled = "time_wait_killed" // inferred: a reset from the other end destroyed the timewait sock
)

// Item is one step of a connection's timeline.
type Item struct {
	At       time.Time `json:"at"`
	OffsetUs int64     `json:"offset_us"`
	Kind     string    `json:"kind"`
	From     string    `json:"from,omitempty"`
	To       string    `json:"to,omitempty"`
	State    string    `json:"state,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	Errno    string    `json:"errno,omitempty"`
	Detail   string    `json:"detail,omitempty"`
	// PrevStateUs is the time spent in From, for state items.
	PrevStateUs int64 `json:"prev_state_us,omitempty"`
}

// SynRecv measurement methods, from most to least exact.
const (
	SynRecvFromSynAck   = "synack_timestamp" // ACK time minus the request's first SYN-ACK (snt_synack), us
	SynRecvFromSRTT     = "srtt"             // no SYN-ACK retransmit: the child's first RTT sample is exactly SYN-ACK to ACK
	SynRecvFromRTOTime  = "total_rto_time"   // SYN-ACK timeouts happened but their events were not seen: ms resolution (6.7+)
	SynRecvFromChildAge = "child_socket"     // lower bound only: the child socket's own SYN_RECV time
)

// Connection is the story of one TCP connection as seen from one end.
type Connection struct {
	ID          uint64
	PeerID      uint64
	ListenerID  uint64
	Role        Role
	Family      string
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
	SynRecvHow  string
	Retransmits Retransmits
	// Payload bytes, from tcp_sock at the last ESTABLISHED or CLOSE seen:
	// received, and sent and acknowledged by the peer.
	BytesReceived uint64
	BytesAcked    uint64
	ClosedBy      string // local, remote or "" (not closed, or no FIN/RST)
	Outcome       Outcome
	Errno         string
	Flags         []Flag
	Timeline      []Item

	// Builder state, not exported.
	listener     *Listener
	target       *Listener   // client: the traced listener its SYN retransmits aimed at
	twin         *Connection // another server child with this tuple
	flags        uint32
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
	twKillReason string
	twTold       bool        // OnTimeWait was told at the close
	endKey       endKey      // the tuple it is indexed under in Builder.ends
	endNext      *Connection // next record with the same tuple in another namespace
	inEnds       bool
}

// Has reports whether flag f is set.
func (c *Connection) Has(f Flag) bool {
	for _, x := range c.Flags {
		if x == f {
			return true
		}
	}
	return c.flags&flagBit(f) != 0
}

func flagBit(f Flag) uint32 {
	for i, x := range AllFlags {
		if x == f {
			return 1 << i
		}
	}
	return 0
}

func (c *Connection) setFlag(f Flag) { c.flags |= flagBit(f) }

// Flagged reports whether any flag other than time_wait and preexisting is
// set: the connections worth a line while recording.
func (c *Connection) Flagged() bool {
	for _, f := range c.Flags {
		if f != FlagTimeWait && f != FlagPreexisting {
			return true
		}
	}
	return false
}
