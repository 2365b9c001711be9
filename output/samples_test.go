package output

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/tracer"
)

// TestSamplesReadBack: the sample records of a .jsonl and of a .json read
// back as written, in order, beside the connections.
func TestSamplesReadBack(t *testing.T) {
	in := fullRecords()
	t1 := in.meta.Start.Add(1500 * time.Millisecond)
	second := tracer.Sample{Time: t1, Interval: 500 * time.Millisecond, Opened: 1,
		Listeners: []tracer.ListenerSample{{NetNS: 2, Local: netip.AddrPortFrom(netip.Addr{}, 81), Queue: 1, PeakQueue: 1, Backlog: 9}}}
	in.samples = append(in.samples, second)
	want := []Sample{
		{Time: in.samples[0].Time, IntervalMs: 1000, Opened: 3, Closed: 2, Flagged: 1, LostEvents: 4, LostRecords: 5,
			ClosedByOutcome: map[string]uint64{"open": 1, "closed": 1, "time_wait": 1, "reset": 1, "refused": 1, "timeout": 1, "abandoned_by_app": 1, "failed": 1},
			Listeners:       []SampleListener{{NetNS: 1, Addr: "10.0.0.1", Port: 80, Queue: 2, PeakQueue: 5, Backlog: 4, OverflowDrops: 6}},
			TimeWait:        []SampleTimeWait{{NetNS: 1, RemoteAddr: "10.0.0.1", RemotePort: 80, Count: 7}}},
		{Time: t1, IntervalMs: 500, Opened: 1, ClosedByOutcome: map[string]uint64{},
			Listeners: []SampleListener{{NetNS: 2, Port: 81, Queue: 1, PeakQueue: 1, Backlog: 9}}},
	}
	for _, name := range []string{"s.jsonl", "s.json", "s.jsonl.zst"} {
		path := filepath.Join(t.TempDir(), name)
		writeSampled(t, path, in)
		if err := ValidateExport(path); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		rec, err := ReadExportWith(path, ReadOptions{Strict: true})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(rec.Samples, want) {
			t.Errorf("%s: samples\n%+v\nwant\n%+v", name, rec.Samples, want)
		}
		if len(rec.Connections) != len(in.conns) {
			t.Errorf("%s: %d connections read beside the samples, want %d", name, len(rec.Connections), len(in.conns))
		}
	}
}

// TestSampleInvalid: a sample the writer could not have written is an
// error naming its line.
func TestSampleInvalid(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.jsonl")
	writeText(t, path, `{"type":"meta","format_version":1,"tcpscope":"t","kernel":"k","start":"2026-11-21T12:00:00Z"}
{"type":"sample","time":"2026-11-21T12:00:01Z","interval_ms":-5,"opened":0,"closed":0,"closed_by_outcome":{},"flagged":0,"lost_events":0,"lost_records":0}
`)
	_, err := ReadExport(path)
	if err == nil || err.Error() != path+":2: invalid sample record: a negative interval_ms -5" {
		t.Errorf("got %v", err)
	}
}

func writeSampled(t *testing.T, path string, in exportInput) {
	t.Helper()
	e, err := CreateExport(path, nil, in.meta)
	if err != nil {
		t.Fatal(err)
	}
	s := tracer.NewStats()
	for i := range in.samples {
		if err := e.WriteSample(&in.samples[i]); err != nil {
			t.Fatal(err)
		}
	}
	for i := range in.conns {
		s.Add(&in.conns[i])
		if err := e.WriteConnection(&in.conns[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Close(s, in.x); err != nil {
		t.Fatal(err)
	}
}

func writeText(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}
