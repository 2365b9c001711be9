package tracer

import (
	"fmt"
	"unsafe"

	"github.com/cilium/ebpf"
)

// ServeNestedOnly makes t trace as if each main program were busy on every
// CPU whenever its tracepoint fires, the state in which the kernel skips it
// for recursion: the main programs are detached and their running flags
// raised, so every event comes from the _nested programs.
func ServeNestedOnly(t *Tracer) error {
	for i, a := range t.attached {
		if !a.nested {
			if err := t.links[i].Close(); err != nil {
				return fmt.Errorf("detaching %s: %w", a.name(), err)
			}
		}
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return fmt.Errorf("counting CPUs: %w", err)
	}
	busy := make([]uint32, cpus)
	for i := range busy {
		busy[i] = 1
	}
	for h := range uint32(bpfHookHOOK_MAX) {
		if err := t.maps.Running.Put(h, busy); err != nil {
			return fmt.Errorf("raising the running flag of hook %d: %w", h, err)
		}
	}
	return nil
}

// DetachNested closes the _nested programs' links, leaving the main ones.
func DetachNested(t *Tracer) error {
	for i, a := range t.attached {
		if a.nested {
			if err := t.links[i].Close(); err != nil {
				return fmt.Errorf("detaching %s: %w", a.name(), err)
			}
		}
	}
	return nil
}

// RawConnectionRecords is n loopback connections as the aggregated mode's
// kernel side sends them: per connection four records (each end's early
// one at ESTABLISHED, then its close), in the order they come.
func RawConnectionRecords(n int) [][]byte {
	var out [][]byte
	for i := 0; i < n; i++ {
		ck, port, ts := uint64(2*i+10), uint16(10000+i%50000), uint64(i)*1000
		for _, r := range connectionRecords(ck, port, ts) {
			out = append(out, append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&r)), RecordSize)...))
		}
	}
	return out
}

func connectionRecords(ck uint64, port uint16, ts uint64) []bpfConnRecord {
	lo := [16]byte{127, 0, 0, 1}
	mk := func(cookie uint64, lport, rport uint16, flags bpfRecordFlag, steps ...State) bpfConnRecord {
		r := bpfConnRecord{Cookie: cookie, Netns: 7, Family: afInet, Sport: lport, Dport: rport, Saddr: lo, Daddr: lo,
			Flags: uint8(flags | bpfRecordFlagRECORD_F_TCP_INFO), SrttUs: 40}
		r.Conn.Tgid = 42
		r.Conn.Flags = uint8(bpfConnFlagCONN_F_EST_INFO)
		r.Conn.EstSrttUs = 40
		for i := 0; i+1 < len(steps); i++ {
			r.Conn.Slots[i] = bpfSlot{TsNs: ts + uint64(i)*10, Kind: uint8(KindState), State: uint8(steps[i]), Aux: uint8(steps[i+1])}
		}
		r.Conn.Nslots = uint8(len(steps) - 1)
		return r
	}
	early, closed := bpfRecordFlagRECORD_F_EARLY, bpfRecordFlagRECORD_F_CLOSED
	c, s := ck, ck+1
	return []bpfConnRecord{
		mk(c, port, 80, early, StateClose, StateSynSent, StateEstablished),
		mk(s, 80, port, early, StateListen, StateSynRecv, StateEstablished),
		mk(c, port, 80, closed, StateEstablished, StateFinWait1, StateFinWait2, StateClose),
		mk(s, 80, port, closed, StateEstablished, StateCloseWait, StateLastAck, StateClose),
	}
}
