package tracer

import (
	"net/netip"
	"runtime"
	"testing"
	"time"
	"unsafe"
)

// connectionEvents is one loopback connection as the kernel reports it:
// both ends' transitions, a client that closes first.
func connectionEvents(ck uint64, port uint16) []bpfEvent {
	cli := [16]byte{127, 0, 0, 1}
	mk := func(cookie uint64, from, to State, lport, rport uint16) bpfEvent {
		e := bpfEvent{Kind: uint8(KindState), Cookie: cookie, OldState: uint8(from), NewState: uint8(to),
			Family: afInet, Sport: lport, Dport: rport, Saddr: cli, Daddr: cli, Netns: 7}
		if to == StateEstablished || to == StateClose {
			e.Flags |= uint8(bpfEventFlagEVENT_F_TCP_INFO)
			e.SrttUs = 40
		}
		return e
	}
	c, s := ck, ck+1
	return []bpfEvent{
		mk(c, StateClose, StateSynSent, 0, 80),
		mk(c, StateSynSent, StateEstablished, port, 80),
		mk(s, StateListen, StateSynRecv, 80, port),
		mk(s, StateSynRecv, StateEstablished, 80, port),
		mk(c, StateEstablished, StateFinWait1, port, 80),
		mk(s, StateEstablished, StateCloseWait, 80, port),
		mk(c, StateFinWait1, StateFinWait2, port, 80),
		mk(s, StateCloseWait, StateLastAck, 80, port),
		mk(c, StateFinWait2, StateClose, port, 80),
		mk(s, StateLastAck, StateClose, 80, port),
	}
}

func rawEvents(n int) [][]byte {
	var out [][]byte
	for i := 0; len(out) < n; i++ {
		for _, e := range connectionEvents(uint64(2*i+10), uint16(10000+i%50000)) {
			e.TsNs = uint64(i) * 1000
			out = append(out, append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&e)), EventSize)...))
		}
	}
	return out[:n]
}

func BenchmarkDecode(b *testing.B) {
	raw := rawEvents(1000)
	var ev Event
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := Decode(raw[i%len(raw)], Clock{}, &ev); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkDecodeAndBuild is the userspace hot path: decode each record and
// feed the timeline builder, with periodic expiry, completed connections
// handed to an Emit that keeps nothing.
func BenchmarkDecodeAndBuild(b *testing.B) {
	const conns = 100000
	raw := rawEvents(conns * 10)
	emitted := 0
	bld := NewBuilder(BuilderConfig{Grace: time.Millisecond, Emit: func(*Connection) { emitted++ }})
	var ev Event
	base := time.Now()
	clock := Clock{OffsetNs: base.UnixNano()}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := raw[i%len(raw)]
		if err := Decode(r, clock, &ev); err != nil {
			b.Fatal(err)
		}
		// Fresh cookies each lap, as the kernel would give.
		lap := uint64(i / len(raw))
		ev.Cookie += lap * 2 * conns
		ev.Time = ev.Time.Add(time.Duration(lap) * time.Second)
		bld.Add(&ev)
		if i%4096 == 0 {
			bld.Expire(ev.Time)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// TestBuilderSteadyStateAllocations: once warm, following connections
// allocates nothing per event (records are recycled after Emit).
func TestBuilderSteadyStateAllocations(t *testing.T) {
	raw := rawEvents(20000)
	bld := NewBuilder(BuilderConfig{Grace: time.Nanosecond})
	var ev Event
	clock := Clock{OffsetNs: time.Now().UnixNano()}
	lap := 0
	feed := func() {
		for _, r := range raw {
			Decode(r, clock, &ev)
			ev.Cookie += uint64(lap) * 40000
			ev.Time = ev.Time.Add(time.Duration(lap) * time.Second)
			bld.Add(&ev)
		}
		bld.Expire(ev.Time.Add(time.Second))
		lap++
	}
	feed() // warm: maps sized, records pooled
	feed()
	allocs := testing.AllocsPerRun(5, feed)
	perEvent := allocs / float64(len(raw))
	t.Logf("%.0f allocations per %d events (%.4f per event)", allocs, len(raw), perEvent)
	if perEvent > 0.01 {
		t.Errorf("%.3f allocations per event on the steady path", perEvent)
	}
}

var _ = netip.Addr{}

// BenchmarkLiveConnectionMemory reports the heap held per connection the
// builder follows (open, established, a few timeline steps).
func BenchmarkLiveConnectionMemory(b *testing.B) {
	const n = 100000
	for i := 0; i < b.N; i++ {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		bld := NewBuilder(BuilderConfig{})
		var ev Event
		for c := 0; c < n; c++ {
			for _, r := range connectionEvents(uint64(2*c+10), uint16(10000+c%50000))[:4] {
				fromRaw(&r, Clock{}, &ev)
				bld.Add(&ev)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(bld.Live()), "bytes/connection")
		runtime.KeepAlive(bld)
	}
}
