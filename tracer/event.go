package tracer

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
	"unsafe"
)

// Kind says which kernel hook produced an event.
type Kind uint8

// Event kinds, one per tracepoint.
const (
	KindState            = Kind(bpfEventKindEVENT_STATE)
	KindRetransmit       = Kind(bpfEventKindEVENT_RETRANSMIT)
	KindSynAckRetransmit = Kind(bpfEventKindEVENT_SYNACK_RETRANSMIT)
	KindResetSent        = Kind(bpfEventKindEVENT_RESET_SENT)
	KindResetReceived    = Kind(bpfEventKindEVENT_RESET_RECEIVED)
	KindError            = Kind(bpfEventKindEVENT_SOCK_ERROR)
	KindListenOverflow   = Kind(bpfEventKindEVENT_LISTEN_OVERFLOW)
)

var kindNames = [...]string{
	KindState:            "state",
	KindRetransmit:       "retransmit",
	KindSynAckRetransmit: "synack_retransmit",
	KindResetSent:        "reset_sent",
	KindResetReceived:    "reset_received",
	KindError:            "error",
	KindListenOverflow:   "listen_overflow",
}

// String is the snake_case name used in every export: "reset_sent".
func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return fmt.Sprintf("kind_%d", uint8(k))
}

// Kinds lists every event kind in numeric order.
func Kinds() []Kind {
	return []Kind{KindState, KindRetransmit, KindSynAckRetransmit, KindResetSent, KindResetReceived, KindError, KindListenOverflow}
}

// Comm is a task name as the kernel stores it: up to 16 bytes, NUL-padded.
type Comm [16]byte

// String returns the name up to its first NUL.
func (c Comm) String() string {
	for i, b := range c {
		if b == 0 {
			return string(c[:i])
		}
	}
	return string(c[:])
}

// Event is one decoded kernel event. It holds no pointers to the ring
// buffer and decoding it allocates nothing.
type Event struct {
	Kind   Kind
	Time   time.Time // wall clock, from the kernel's CLOCK_BOOTTIME stamp
	BootNs uint64    // the raw CLOCK_BOOTTIME stamp
	// Cookie identifies the socket (bpf_get_socket_cookie); a server-side
	// child has its request socket's cookie. 0 when the kernel passed none.
	Cookie         uint64
	ListenerCookie uint64
	NetNS          uint32
	CPU            uint32
	// CgroupID is the cgroup v2 id of the socket's owner: the cgroup of
	// the process that made the socket (a server-side child: its
	// listener's), the inode number of its directory under the cgroup2
	// mount. 0 when no full socket says: a timewait sock, no socket.
	CgroupID uint64

	// The task on the CPU when the event fired. Receive-path events run in
	// softirq context: this is then swapper/N, ksoftirqd or even the peer
	// process on loopback, never necessarily the socket's owner.
	PID  uint32
	TGID uint32
	Comm Comm

	// The owner of the listener a server-side socket came from, from socket
	// storage recorded when listen() ran (HasOwner).
	HasOwner  bool
	OwnerTGID uint32
	OwnerComm Comm

	Local  netip.AddrPort // v4-mapped IPv6 addresses are unmapped
	Remote netip.AddrPort

	OldState State // KindState
	NewState State // KindState
	State    State // state when the event fired (0 when there was no socket)

	// Err: for KindRetransmit the kernel's result (0 = sent, negative errno
	// = failed; HasErr says the kernel reports it, 6.17+), for KindError the
	// socket's positive errno.
	Err    int32
	HasErr bool

	Reason    RSTReason // KindResetSent, HasReason on 6.10+
	HasReason bool
	NoSocket  bool // KindResetSent with no socket: nothing listened on the port
	// SegFlags: KindResetSent, the TCP flags of the segment the reset
	// answers (a TCPFlags value); 0 for a reset that answers none
	// (tcp_send_active_reset(): close, abort, timeout). KindRetransmit: the
	// flags of the segment resent (0 from a build that did not read them).
	SegFlags TCPFlags
	// SegData: KindRetransmit, the resent segment carries payload bytes
	// (a FIN may ride on data).
	SegData bool

	// tcp_sock counters, when HasTCPInfo (state changes to ESTABLISHED and
	// CLOSE, retransmits). TotalRTO* need 6.7+ (HasRTO).
	HasTCPInfo     bool
	HasRTO         bool
	TotalRetrans   uint32
	SRTTUs         uint32
	TotalRTO       uint16
	TotalRTOTimeMs uint32
	BytesReceived  uint64
	BytesAcked     uint64

	// KindSynAckRetransmit: the request socket's first SYN-ACK time
	// (CLOCK_MONOTONIC us) and its counts before this retransmit.
	SntSynAckUs uint64
	NumRetrans  uint8
	NumTimeout  uint8

	// Syncookie: KindListenOverflow, the dropped final ACK carried a SYN
	// cookie (there was no request socket).
	Syncookie bool

	// Listener queue: accept-queue length and backlog.
	Backlog    uint32
	MaxBacklog uint32
}

// EventSize is the size of one raw event record.
const EventSize = int(unsafe.Sizeof(bpfEvent{}))

// ErrShortRecord is returned for a ring-buffer sample smaller than an event.
var ErrShortRecord = errors.New("short event record")

// Clock converts the kernel's CLOCK_BOOTTIME nanoseconds to wall time.
type Clock struct {
	// OffsetNs is wall-clock ns minus CLOCK_BOOTTIME ns, sampled once.
	OffsetNs int64
	// MonoToBootNs is CLOCK_BOOTTIME minus CLOCK_MONOTONIC (time spent
	// suspended), for kernel stamps taken with tcp_clock_us().
	MonoToBootNs int64
}

// Decode fills ev from one raw ring-buffer sample. The sample length is
// checked, never trusted: the record is copied out only when it is at least
// as large as the C struct.
func Decode(raw []byte, clock Clock, ev *Event) error {
	if len(raw) < EventSize {
		return fmt.Errorf("%w: %d bytes, want %d", ErrShortRecord, len(raw), EventSize)
	}
	var r bpfEvent
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&r)), EventSize), raw)
	fromRaw(&r, clock, ev)
	if ev.Kind == 0 || int(ev.Kind) >= len(kindNames) {
		return fmt.Errorf("unknown event kind %d", r.Kind)
	}
	return nil
}

func fromRaw(r *bpfEvent, clock Clock, ev *Event) {
	flags := bpfEventFlag(r.Flags)
	*ev = Event{
		Kind:           Kind(r.Kind),
		Time:           time.Unix(0, clock.OffsetNs+int64(r.TsNs)),
		BootNs:         r.TsNs,
		Cookie:         r.Cookie,
		ListenerCookie: r.ListenerCookie,
		NetNS:          r.Netns,
		CPU:            r.Cpu,
		CgroupID:       r.CgroupId,
		PID:            r.Pid,
		TGID:           r.Tgid,
		Comm:           *(*Comm)(unsafe.Pointer(&r.Comm)),
		HasOwner:       flags&bpfEventFlagEVENT_F_OWNER != 0,
		OwnerTGID:      r.OwnerTgid,
		OwnerComm:      *(*Comm)(unsafe.Pointer(&r.OwnerComm)),
		OldState:       State(r.OldState),
		NewState:       State(r.NewState),
		State:          State(r.State),
		Err:            r.Err,
		HasErr:         flags&bpfEventFlagEVENT_F_HAS_ERR != 0,
		Reason:         RSTReason(r.Reason),
		HasReason:      flags&bpfEventFlagEVENT_F_HAS_REASON != 0,
		NoSocket:       flags&bpfEventFlagEVENT_F_NO_SOCKET != 0,
		SegFlags:       TCPFlags(r.SegFlags),
		SegData:        flags&bpfEventFlagEVENT_F_SEG_DATA != 0,
		Syncookie:      flags&bpfEventFlagEVENT_F_SYNCOOKIE != 0,
		HasTCPInfo:     flags&bpfEventFlagEVENT_F_TCP_INFO != 0,
		HasRTO:         flags&bpfEventFlagEVENT_F_HAS_RTO != 0,
		TotalRetrans:   r.TotalRetrans,
		SRTTUs:         r.SrttUs,
		TotalRTO:       r.TotalRto,
		TotalRTOTimeMs: r.TotalRtoTimeMs,
		BytesReceived:  r.BytesReceived,
		BytesAcked:     r.BytesAcked,
		SntSynAckUs:    r.SntSynackUs,
		NumRetrans:     r.NumRetrans,
		NumTimeout:     r.NumTimeout,
		Backlog:        r.Backlog,
		MaxBacklog:     r.MaxBacklog,
	}
	ev.Local = netip.AddrPortFrom(addr(r.Family, &r.Saddr), r.Sport)
	ev.Remote = netip.AddrPortFrom(addr(r.Family, &r.Daddr), r.Dport)
}

const (
	afInet  = 2
	afInet6 = 10
)

// addr turns a kernel address into a netip.Addr. AF_INET6 sockets that talk
// to IPv4 peers carry v4-mapped addresses (::ffff:a.b.c.d); they are unmapped
// so one connection reads the same from either end.
func addr(family uint16, b *[16]uint8) netip.Addr {
	switch family {
	case afInet:
		return netip.AddrFrom4([4]byte(b[:4]))
	case afInet6:
		return netip.AddrFrom16(*b).Unmap()
	}
	return netip.Addr{}
}

// TCPFlags is the flags byte of a TCP header.
type TCPFlags uint8

// TCP header flags.
const (
	TCPFin TCPFlags = 1 << iota
	TCPSyn
	TCPRst
	TCPPsh
	TCPAck
	TCPUrg
	TCPEce
	TCPCwr
)

var tcpFlagNames = [...]string{"FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"}

// String names the flags set in header order, as Wireshark lists them:
// "SYN", "SYN|ACK", "PSH|ACK"; "" for none.
func (f TCPFlags) String() string {
	var b []byte
	for bit := range tcpFlagNames {
		if f&(1<<bit) != 0 {
			if len(b) > 0 {
				b = append(b, '|')
			}
			b = append(b, tcpFlagNames[bit]...)
		}
	}
	return string(b)
}

// IsSYN: a bare SYN, the first segment of a connection.
func (f TCPFlags) IsSYN() bool { return f&(TCPSyn|TCPAck|TCPRst) == TCPSyn }

// What a retransmit resent, as Resent names it.
const (
	ResentSyn    = "SYN"
	ResentSynAck = "SYN-ACK"
	ResentFin    = "FIN"
	ResentData   = "data"
)

// Resent names what a KindRetransmit event resent, from the segment's own
// flags and length: a SYN, a SYN-ACK (TCP Fast Open children; a request's
// SYN-ACKs are KindSynAckRetransmit), a bare FIN, or data. A FIN that rides
// on payload counts as data: the data was lost too, and it is what the peer
// waits for. A bare FIN's loss only delays the close (a tail loss probe
// resends it even when the ACK was merely late: see on_retransmit in
// bpf/tcpscope.bpf.c).
// Events without segment flags (recordings of older builds) fall back on
// the socket state: SYN_SENT a SYN, SYN_RECV a SYN-ACK, data otherwise.
func (ev *Event) Resent() string {
	f := ev.SegFlags
	switch {
	case f == 0 && ev.State == StateSynSent, f&TCPSyn != 0 && f&TCPAck == 0:
		return ResentSyn
	case f == 0 && ev.State == StateSynRecv, f&TCPSyn != 0:
		return ResentSynAck
	case !ev.SegData && f&TCPFin != 0:
		return ResentFin
	}
	return ResentData
}
