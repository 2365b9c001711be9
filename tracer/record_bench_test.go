package tracer_test

import (
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/output"
	"github.com/tcpscope/tcpscope/tracer"
)

// BenchmarkRecordToJSONL is the aggregated mode's user-space path for one
// connection record, from the ring buffer's bytes to its JSONL line:
// DecodeRecord, the builder, and the export's encoder into a reused
// buffer. A connection is four records (each end's early one and its
// close) and two lines. Every connection also counts in the samples, and
// a sample is taken every 4096 records, as a recording does.
func BenchmarkRecordToJSONL(b *testing.B) {
	const conns = 50000
	raw := tracer.RawConnectionRecords(conns)
	var line []byte
	bytes := 0
	sampler := tracer.NewSampler(time.Second, time.Now())
	bld := tracer.NewBuilder(tracer.BuilderConfig{Grace: time.Millisecond, Emit: func(c *tracer.Connection) {
		sampler.Closed(c)
		line = output.AppendConnectionJSON(line[:0], c)
		bytes += len(line)
	}})
	evs := make([]tracer.Event, tracer.ConnSlots)
	clock := tracer.Clock{OffsetNs: time.Now().UnixNano()}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		info, err := tracer.DecodeRecord(raw[i%len(raw)], clock, evs)
		if err != nil {
			b.Fatal(err)
		}
		// Fresh cookies and times each lap, as the kernel would give.
		lap := uint64(i / len(raw))
		for j := range evs[:info.Events] {
			ev := &evs[j]
			ev.Cookie += lap * 2 * conns
			ev.Time = ev.Time.Add(time.Duration(lap) * time.Second)
			bld.Add(ev)
		}
		if i%4096 == 0 {
			bld.Expire(evs[0].Time)
			s := sampler.Take(evs[0].Time, bld, tracer.Counters{}, nil)
			line = output.AppendSampleJSON(line[:0], &s, true)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)*4, "ns/conn")
	b.ReportMetric(float64(bytes)/float64(b.N)*4/2, "B/line")
}
