package output

import (
	"io"
	"testing"
)

// BenchmarkExportJSONL: encoding finished connections for a .jsonl export.
func BenchmarkExportJSONL(b *testing.B) {
	conns := sampleConnections()
	e := &Export{w: io.Discard, jsonl: true}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := e.WriteConnection(&conns[i%len(conns)]); err != nil {
			b.Fatal(err)
		}
	}
	e.Flush()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "connections/s")
}
