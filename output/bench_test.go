package output

import (
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/findings"
)

// BenchmarkExportJSONL: encoding finished connections for a .jsonl export,
// and for a .jsonl.zst (compressed a frame per flush): the cost per
// connection, and the bytes each takes on disk, for a load test's records.
func BenchmarkExportJSONL(b *testing.B) {
	t0 := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	conns := make([]tracer.Connection, 4096)
	for i := range conns {
		conns[i] = largeConnection(i, t0)
	}
	for _, name := range []string{"jsonl", "jsonl.zst"} {
		b.Run(name, func(b *testing.B) {
			var out countingWriter
			e := &Export{w: &out, jsonl: true}
			if name == "jsonl.zst" {
				var err error
				if e.zst, err = newFrameEncoder(); err != nil {
					b.Fatal(err)
				}
			}
			// Once before timing: the first name lookup reads the kernel's
			// BTF, the first frame sets the compressor up.
			if err := e.WriteConnection(&conns[0]); err != nil || e.Flush() != nil {
				b.Fatal(err)
			}
			out.n = 0
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				c := &conns[i%len(conns)]
				c.ID = uint64(i + 1)
				if err := e.WriteConnection(c); err != nil {
					b.Fatal(err)
				}
			}
			if err := e.Flush(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "connections/s")
			b.ReportMetric(float64(out.n)/float64(b.N), "disk-bytes/conn")
		})
	}
}

// countingWriter counts what is written to it.
type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return len(p), nil
}

// BenchmarkReportLargeExport: what report does with a long recording
// (200,000 generated connections of a load test), read from a .jsonl and
// from a .jsonl.zst: read each connection and add it to the tables'
// tallies (statistics, findings, flagged lines), streaming as report
// does, and, for comparison, keeping every connection as ReadExport does.
// It reports records/s and the peak of the live heap, sampled every
// millisecond.
func BenchmarkReportLargeExport(b *testing.B) {
	const n = 200_000
	dir := b.TempDir()
	for _, name := range []string{"run.jsonl", "run.jsonl.zst"} {
		path := filepath.Join(dir, name)
		writeLargeExport(b, path, n)
		st, err := os.Stat(path)
		if err != nil {
			b.Fatal(err)
		}
		for _, how := range []string{"stream", "whole"} {
			b.Run(name+"/"+how, func(b *testing.B) {
				peak := heapPeak(b, func() { reportOnce(b, path, n, how == "stream") })
				b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "records/s")
				b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
				b.ReportMetric(float64(st.Size())/n, "disk-bytes/conn")
			})
		}
	}
}

// reportOnce reads path as report does and checks it read n connections.
func reportOnce(b *testing.B, path string, n int, stream bool) {
	stats, acc := tracer.NewStats(), findings.New()
	flagged := 0
	tally := func(c *tracer.Connection) error {
		stats.Add(c)
		acc.Add(c)
		if c.Flagged() {
			flagged += len(FlaggedLine(c))
		}
		return nil
	}
	opts := ReadOptions{FlaggedTimelinesOnly: true}
	if stream {
		opts.Connection = tally
	}
	rec, err := ReadExportWith(path, opts)
	if err != nil {
		b.Fatal(err)
	}
	for i := range rec.Connections {
		tally(&rec.Connections[i])
	}
	if stats.Connections != uint64(n) || flagged == 0 {
		b.Fatalf("read %d connections, want %d", stats.Connections, n)
	}
}

// heapPeak runs f b.N times and returns the largest heap seen (live
// objects and garbage not yet swept, as the GC lets it grow).
func heapPeak(b *testing.B, f func()) uint64 {
	runtime.GC()
	var peak atomic.Uint64
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		// runtime/metrics, unlike ReadMemStats, does not stop the world.
		sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				metrics.Read(sample)
				if v := sample[0].Value.Uint64(); v > peak.Load() {
					peak.Store(v)
				}
			}
		}
	}()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f()
	}
	b.StopTimer()
	close(done)
	<-stopped
	return peak.Load()
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
