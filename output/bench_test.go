package output

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tcpscope/tcpscope/tracer"
)

// BenchmarkExportJSONL: encoding finished connections for a .jsonl export.
func BenchmarkExportJSONL(b *testing.B) {
	conns := sampleConnections()
	e := &Export{w: io.Discard, jsonl: true}
	// Once before timing: the first name lookup reads the kernel's BTF.
	if err := e.WriteConnection(&conns[0]); err != nil {
		b.Fatal(err)
	}
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

// benchExport writes a .jsonl or .json export of n connections.
func benchExport(b *testing.B, name string, n int) string {
	conns := sampleConnections()
	path := filepath.Join(b.TempDir(), name)
	e, err := CreateExport(path, nil, Meta{Tcpscope: "bench", Kernel: "6.18", Start: conns[0].Start})
	if err != nil {
		b.Fatal(err)
	}
	s := tracer.NewStats()
	for i := 0; i < n; i++ {
		c := conns[i%len(conns)]
		c.ID = uint64(i + 1)
		s.Add(&c)
		if err := e.WriteConnection(&c); err != nil {
			b.Fatal(err)
		}
	}
	if err := e.Close(s, Extra{End: conns[0].Start}); err != nil {
		b.Fatal(err)
	}
	return path
}

// BenchmarkReadExport: report's read of a 2,000-connection export, as
// the tables need it (timelines of flagged connections only): as tcpscope
// writes it, and reformatted.
func BenchmarkReadExport(b *testing.B) {
	for _, name := range []string{"run.jsonl", "run.json", "indented.jsonl", "indented.json"} {
		b.Run(name, func(b *testing.B) {
			const n = 2000
			path := benchExport(b, strings.TrimPrefix(name, "indented"), n)
			if strings.HasPrefix(name, "indented") { // as jq . lays it out
				data, err := os.ReadFile(path)
				if err != nil {
					b.Fatal(err)
				}
				if err := os.WriteFile(path, reformat(b, data, "indent"), 0o600); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				rec, err := ReadExportWith(path, ReadOptions{FlaggedTimelinesOnly: true})
				if err != nil || len(rec.Connections) != n {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "connections/s")
		})
	}
}
