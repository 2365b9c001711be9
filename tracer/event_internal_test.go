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

func FuzzDecode(f *testing.F) {
	f.Add(rawEvent(bpfEvent{Kind: uint8(KindState), Family: afInet}))
	f.Add(rawEvent(bpfEvent{Kind: uint8(KindResetSent), Family: afInet6, Flags: 0xff}))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		var ev Event
		if err := Decode(b, Clock{}, &ev); err == nil {
			_ = ev.Kind.String() + ev.OldState.String() + ev.Reason.String() + ev.Comm.String()
			_ = ev.Local.String()
		}
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
