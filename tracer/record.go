package tracer

import (
	"fmt"
	"net/netip"
	"time"
	"unsafe"
)

// In the aggregated mode a connection socket's events are kept in its
// socket storage and arrive together, as one conn_record (bpf/event.h),
// when the socket becomes ESTABLISHED, when its slots are full, when it
// closes, and from the end-of-recording walk for a socket still open.
// DecodeRecord turns a record back into the events the per-event mode
// would have sent for that socket, so that one builder serves both modes
// and they produce the same connection records.

// RecordSize is the size of one raw connection record.
const RecordSize = int(unsafe.Sizeof(bpfConnRecord{}))

// ConnSlots is how many events a record holds at most (CONN_SLOTS).
const ConnSlots = int(bpfLimitsCONN_SLOTS)

// RecordKind says why the kernel sent a connection record.
type RecordKind uint8

// Why a record was sent.
const (
	RecordClosed RecordKind = iota + 1 // the socket closed: its last record
	RecordEarly                        // ESTABLISHED, or slots full: more follow
	RecordOpen                         // the end-of-recording walk: still open
)

// RecordInfo is what a decoded record says beyond its events.
type RecordInfo struct {
	Kind   RecordKind
	Cookie uint64
	Events int
}

// DecodeRecord fills evs with the events of one raw connection record, in
// the order they happened, and returns how many. evs must hold ConnSlots
// events. Like Decode, it allocates nothing and checks the length.
func DecodeRecord(raw []byte, clock Clock, evs []Event) (RecordInfo, error) {
	if len(raw) < RecordSize {
		return RecordInfo{}, fmt.Errorf("%w: %d bytes, want %d", ErrShortRecord, len(raw), RecordSize)
	}
	if len(evs) < ConnSlots {
		return RecordInfo{}, fmt.Errorf("decoding a record needs room for %d events, got %d", ConnSlots, len(evs))
	}
	r := (*bpfConnRecord)(unsafe.Pointer(unsafe.SliceData(raw)))
	// The sample is read in place; copy it first when it may be unaligned.
	if uintptr(unsafe.Pointer(r))%8 != 0 {
		var copied bpfConnRecord
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&copied)), RecordSize), raw)
		r = &copied
	}
	info := RecordInfo{Kind: recordKind(r.Flags), Cookie: r.Cookie}
	n := int(r.Conn.Nslots)
	if n > ConnSlots {
		return info, fmt.Errorf("record of socket %d holds %d slots, at most %d exist", r.Cookie, n, ConnSlots)
	}
	base := recordBase(r, clock)
	for i := 0; i < n; i++ {
		ev := &evs[i]
		*ev = base
		if err := slotEvent(r, &r.Conn.Slots[i], clock, ev); err != nil {
			return info, err
		}
	}
	info.Events = n
	return info, nil
}

func recordKind(flags uint8) RecordKind {
	f := bpfRecordFlag(flags)
	switch {
	case f&bpfRecordFlagRECORD_F_CLOSED != 0:
		return RecordClosed
	case f&bpfRecordFlagRECORD_F_OPEN != 0:
		return RecordOpen
	}
	return RecordEarly
}

// recordBase is what every event of a record shares: the socket, its
// namespace and tuple as read when the record was sent, and its owner as
// storage kept it. The task of each event is that owner: the per-event
// mode's current task matters only where the owner was taken (connect(),
// close() of a connection that predates the trace), and storage took it
// there.
func recordBase(r *bpfConnRecord, clock Clock) Event {
	c := &r.Conn
	comm := *(*Comm)(unsafe.Pointer(&c.Comm))
	ev := Event{
		Cookie:   r.Cookie,
		NetNS:    r.Netns,
		CgroupID: r.CgroupId,
		PID:      c.Tgid,
		TGID:     c.Tgid,
		Comm:     comm,
	}
	ev.Local = netip.AddrPortFrom(addr(r.Family, &r.Saddr), r.Sport)
	ev.Remote = netip.AddrPortFrom(addr(r.Family, &r.Daddr), r.Dport)
	return ev
}

// slotEvent completes ev, a copy of the record's base, from one slot.
func slotEvent(r *bpfConnRecord, s *bpfSlot, clock Clock, ev *Event) error {
	flags := bpfEventFlag(s.Flags)
	ev.Kind = Kind(s.Kind)
	ev.BootNs = s.TsNs
	ev.Time = time.Unix(0, clock.OffsetNs+int64(s.TsNs))
	ev.State = State(s.State)
	switch ev.Kind {
	case KindState:
		stateSlot(r, s, ev)
	case KindRetransmit:
		ev.SegFlags = TCPFlags(s.Aux)
		ev.SegData = flags&bpfEventFlagEVENT_F_SEG_DATA != 0
		ev.HasErr = flags&bpfEventFlagEVENT_F_HAS_ERR != 0
		ev.Err = int32(s.Arg)
	case KindResetSent:
		ev.SegFlags = TCPFlags(s.Aux)
		ev.Reason = RSTReason(s.Arg)
		ev.HasReason = flags&bpfEventFlagEVENT_F_HAS_REASON != 0
	case KindResetReceived:
	case KindError:
		ev.Err = int32(s.Arg)
	default:
		return fmt.Errorf("record of socket %d: unknown slot kind %d", r.Cookie, s.Kind)
	}
	return nil
}

// stateSlot fills a state change. The tcp_sock counters go where the
// per-event mode reads them: at ESTABLISHED those storage kept then, at
// CLOSE those the record was sent with. A record sent while the socket
// lives gives its ESTABLISHED change the byte counters of that moment, the
// latest there are.
func stateSlot(r *bpfConnRecord, s *bpfSlot, ev *Event) {
	c := &r.Conn
	cf := bpfConnFlag(c.Flags)
	rf := bpfRecordFlag(r.Flags)
	ev.OldState, ev.NewState = State(s.State), State(s.Aux)
	switch {
	case ev.OldState == StateListen && ev.NewState == StateSynRecv:
		if cf&bpfConnFlagCONN_F_OWNER != 0 {
			ev.HasOwner = true
			ev.OwnerTGID, ev.OwnerComm = ev.TGID, ev.Comm
			ev.ListenerCookie = c.ListenerCookie
		}
	case ev.NewState == StateEstablished && cf&bpfConnFlagCONN_F_EST_INFO != 0:
		ev.HasTCPInfo = true
		ev.TotalRetrans, ev.SRTTUs = c.EstTotalRetrans, c.EstSrttUs
		ev.HasRTO = cf&bpfConnFlagCONN_F_EST_RTO != 0
		ev.TotalRTO, ev.TotalRTOTimeMs = c.EstTotalRto, c.EstTotalRtoTimeMs
		if rf&bpfRecordFlagRECORD_F_CLOSED == 0 {
			ev.BytesReceived, ev.BytesAcked = r.BytesReceived, r.BytesAcked
		}
	case ev.NewState == StateClose && rf&bpfRecordFlagRECORD_F_TCP_INFO != 0:
		ev.HasTCPInfo = true
		ev.TotalRetrans, ev.SRTTUs = r.TotalRetrans, r.SrttUs
		ev.HasRTO = rf&bpfRecordFlagRECORD_F_HAS_RTO != 0
		ev.TotalRTO, ev.TotalRTOTimeMs = r.TotalRto, r.TotalRtoTimeMs
		ev.BytesReceived, ev.BytesAcked = r.BytesReceived, r.BytesAcked
	}
}
