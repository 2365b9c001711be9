package tracer

import (
	"errors"
	"net/netip"
	"testing"
	"time"
	"unsafe"
)

func rawEvent(r bpfEvent) []byte {
	return append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&r)), EventSize)...)
}

func TestDecodeState(t *testing.T) {
	r := bpfEvent{
		TsNs: 5_000_000_123, Cookie: 42, Netns: 4026531833, Pid: 7, Tgid: 6, Cpu: 1,
		Sport: 8080, Dport: 50000, Family: afInet,
		Kind: uint8(KindState), OldState: uint8(StateSynRecv), NewState: uint8(StateEstablished),
		Flags: uint8(bpfEventFlagEVENT_F_TCP_INFO), TotalRetrans: 2, SrttUs: 120,
	}
	copy(r.Saddr[:], []byte{10, 0, 0, 1})
	copy(r.Daddr[:], []byte{10, 0, 0, 2})
	copy((*[16]byte)(unsafe.Pointer(&r.Comm))[:], "nginx")
	var ev Event
	clock := Clock{OffsetNs: 1_700_000_000_000_000_000}
	if err := Decode(rawEvent(r), clock, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Kind != KindState || ev.OldState != StateSynRecv || ev.NewState != StateEstablished {
		t.Errorf("kind/states: %s %s->%s", ev.Kind, ev.OldState, ev.NewState)
	}
	if want := netip.MustParseAddrPort("10.0.0.1:8080"); ev.Local != want {
		t.Errorf("local %s, want %s", ev.Local, want)
	}
	if want := netip.MustParseAddrPort("10.0.0.2:50000"); ev.Remote != want {
		t.Errorf("remote %s, want %s", ev.Remote, want)
	}
	if !ev.Time.Equal(time.Unix(0, clock.OffsetNs+5_000_000_123)) {
		t.Errorf("time %s", ev.Time)
	}
	if ev.Comm.String() != "nginx" || !ev.HasTCPInfo || ev.TotalRetrans != 2 || ev.HasOwner {
		t.Errorf("comm %q tcpinfo %v retrans %d owner %v", ev.Comm, ev.HasTCPInfo, ev.TotalRetrans, ev.HasOwner)
	}
}

func TestDecodeUnmapsV4MappedIPv6(t *testing.T) {
	r := bpfEvent{Kind: uint8(KindResetReceived), Family: afInet6, Sport: 1, Dport: 2}
	m := netip.MustParseAddr("::ffff:192.0.2.7").As16()
	r.Saddr = m
	r.Daddr = netip.MustParseAddr("2001:db8::1").As16()
	var ev Event
	if err := Decode(rawEvent(r), Clock{}, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Local.Addr() != netip.MustParseAddr("192.0.2.7") || ev.Remote.Addr() != netip.MustParseAddr("2001:db8::1") {
		t.Errorf("got %s -> %s", ev.Local, ev.Remote)
	}
}

func TestDecodeRejectsShortAndUnknown(t *testing.T) {
	var ev Event
	if err := Decode(make([]byte, EventSize-1), Clock{}, &ev); !errors.Is(err, ErrShortRecord) {
		t.Errorf("short record: %v", err)
	}
	if err := Decode(rawEvent(bpfEvent{Kind: 200}), Clock{}, &ev); err == nil {
		t.Errorf("unknown kind decoded without error")
	}
}

func TestDecodeAllocatesNothing(t *testing.T) {
	raw := rawEvent(bpfEvent{Kind: uint8(KindState), Family: afInet6})
	var ev Event
	if n := testing.AllocsPerRun(100, func() { _ = Decode(raw, Clock{}, &ev) }); n != 0 {
		t.Errorf("Decode allocates %.0f times per event", n)
	}
}

// encode is Decode's inverse for what an Event keeps: the raw record that
// decodes to ev. The address family is not kept (a v4-mapped IPv6 address
// decodes as IPv4), so it is AF_INET for IPv4 addresses, AF_INET6 for
// IPv6 ones, 0 for none.
func encode(ev *Event) bpfEvent {
	r := bpfEvent{
		TsNs: ev.BootNs, Cookie: ev.Cookie, ListenerCookie: ev.ListenerCookie,
		SntSynackUs: ev.SntSynAckUs, BytesReceived: ev.BytesReceived, BytesAcked: ev.BytesAcked,
		Netns: ev.NetNS, Pid: ev.PID, Tgid: ev.TGID, OwnerTgid: ev.OwnerTGID, Cpu: ev.CPU,
		Err: ev.Err, Reason: uint32(ev.Reason), TotalRetrans: ev.TotalRetrans, SrttUs: ev.SRTTUs,
		TotalRtoTimeMs: ev.TotalRTOTimeMs, Backlog: ev.Backlog, MaxBacklog: ev.MaxBacklog,
		Sport: ev.Local.Port(), Dport: ev.Remote.Port(), TotalRto: ev.TotalRTO,
		Comm: *(*[16]int8)(unsafe.Pointer(&ev.Comm)), OwnerComm: *(*[16]int8)(unsafe.Pointer(&ev.OwnerComm)),
		Kind: uint8(ev.Kind), OldState: uint8(ev.OldState), NewState: uint8(ev.NewState), State: uint8(ev.State),
		NumRetrans: ev.NumRetrans, NumTimeout: ev.NumTimeout, SegFlags: uint8(ev.SegFlags),
	}
	for _, f := range []struct {
		set  bool
		flag bpfEventFlag
	}{
		{ev.NoSocket, bpfEventFlagEVENT_F_NO_SOCKET}, {ev.HasOwner, bpfEventFlagEVENT_F_OWNER},
		{ev.HasTCPInfo, bpfEventFlagEVENT_F_TCP_INFO}, {ev.HasErr, bpfEventFlagEVENT_F_HAS_ERR},
		{ev.HasReason, bpfEventFlagEVENT_F_HAS_REASON}, {ev.HasRTO, bpfEventFlagEVENT_F_HAS_RTO},
		{ev.Syncookie, bpfEventFlagEVENT_F_SYNCOOKIE}, {ev.SegData, bpfEventFlagEVENT_F_SEG_DATA},
	} {
		if f.set {
			r.Flags |= uint8(f.flag)
		}
	}
	switch local := ev.Local.Addr(); {
	case local.Is4():
		r.Family = afInet
	case local.Is6():
		r.Family = afInet6
	}
	r.Saddr = ev.Local.Addr().As16()
	r.Daddr = ev.Remote.Addr().As16()
	if r.Family == afInet {
		r.Saddr, r.Daddr = [16]uint8{}, [16]uint8{}
		a, b := ev.Local.Addr().As4(), ev.Remote.Addr().As4()
		copy(r.Saddr[:], a[:])
		copy(r.Daddr[:], b[:])
	}
	return r
}

// FuzzDecode: every record that decodes keeps each raw field (the
// addresses as their family says), and encoding the Event back decodes to
// the same Event.
func FuzzDecode(f *testing.F) {
	f.Add(rawEvent(bpfEvent{Kind: uint8(KindState), Family: afInet}))
	f.Add(rawEvent(bpfEvent{Kind: uint8(KindResetSent), Family: afInet6, Flags: 0xff}))
	full := bpfEvent{
		TsNs: 1, Cookie: 2, ListenerCookie: 3, SntSynackUs: 4, BytesReceived: 5, BytesAcked: 6,
		Netns: 7, Pid: 8, Tgid: 9, OwnerTgid: 10, Cpu: 11, Err: -12, Reason: 13, TotalRetrans: 14,
		SrttUs: 15, TotalRtoTimeMs: 16, Backlog: 17, MaxBacklog: 18, Sport: 19, Dport: 20,
		Family: afInet6, TotalRto: 21, Kind: uint8(KindSynAckRetransmit), OldState: 22, NewState: 23,
		State: 24, NumRetrans: 25, NumTimeout: 26, Flags: 0xa5, SegFlags: 27,
	}
	full.Saddr = netip.MustParseAddr("2001:db8::1").As16()
	full.Daddr = netip.MustParseAddr("::ffff:192.0.2.9").As16()
	copy((*[16]byte)(unsafe.Pointer(&full.Comm))[:], "curl")
	copy((*[16]byte)(unsafe.Pointer(&full.OwnerComm))[:], "nginx: worker")
	f.Add(rawEvent(full))
	f.Add([]byte{1, 2, 3})
	clock := Clock{OffsetNs: 1_700_000_000_000_000_000}
	f.Fuzz(func(t *testing.T, b []byte) {
		var ev Event
		if err := Decode(b, clock, &ev); err != nil {
			return
		}
		var r bpfEvent
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&r)), EventSize), b)

		got := encode(&ev)
		// Every field but the addresses comes back as it was.
		want := r
		want.Family, want.Saddr, want.Daddr = got.Family, got.Saddr, got.Daddr
		if got != want {
			t.Errorf("decoded and encoded again:\n got %+v\nwant %+v", got, want)
		}
		if ns := ev.Time.UnixNano(); ns != clock.OffsetNs+int64(r.TsNs) {
			t.Errorf("time %d, want offset + %d", ns, r.TsNs)
		}
		for _, a := range []struct {
			name string
			got  netip.Addr
			raw  [16]uint8
		}{{"local", ev.Local.Addr(), r.Saddr}, {"remote", ev.Remote.Addr(), r.Daddr}} {
			var want netip.Addr
			switch r.Family {
			case afInet:
				want = netip.AddrFrom4([4]byte(a.raw[:4]))
			case afInet6:
				want = netip.AddrFrom16(a.raw).Unmap()
			}
			if a.got != want {
				t.Errorf("%s address %s from family %d %x, want %s", a.name, a.got, r.Family, a.raw, want)
			}
		}

		var again Event
		raw := rawEvent(got)
		if err := Decode(raw, clock, &again); err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if again != ev {
			t.Errorf("round trip:\n got %+v\nwant %+v", again, ev)
		}
		_ = ev.Kind.String() + ev.OldState.String() + ev.Reason.String() + ev.Comm.String() + ev.Local.String()
	})
}

func TestNamesFromBTFMatchKernelSpelling(t *testing.T) {
	// These names are what users grep for; they come from BTF when present
	// and from the fallback otherwise, and must agree.
	for s, want := range map[State]string{StateSynSent: "SYN_SENT", StateFinWait2: "FIN_WAIT2", StateTimeWait: "TIME_WAIT", StateNewSynRecv: "NEW_SYN_RECV"} {
		if s.String() != want {
			t.Errorf("state %d: %q, want %q", s, s.String(), want)
		}
	}
	if RSTReason(1).String() != "NO_SOCKET" {
		t.Errorf("reset reason 1: %q", RSTReason(1).String())
	}
	if ErrnoName(111) != "ECONNREFUSED" || ErrnoName(-1) != "EPERM" || ErrnoName(0) != "" {
		t.Errorf("errno names: %q %q", ErrnoName(111), ErrnoName(-1))
	}
}
