package output

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/tcpscope/tcpscope/tracer"
)

// readStreamed reads data handing each connection to a callback, as report
// does, and returns the recording with the connections it was handed.
func readStreamed(data []byte, name string, opts ReadOptions) (*Recording, error) {
	var conns []tracer.Connection
	opts.Connection = func(c *tracer.Connection) error {
		conns = append(conns, *c)
		return nil
	}
	rec, err := ReadExportFrom(bytes.NewReader(data), name, opts)
	if rec != nil {
		rec.Connections = conns
	}
	return rec, err
}

// checkStreamed: streaming data gives what reading it whole (rec, err) gave.
func checkStreamed(t *testing.T, data []byte, name string, rec *Recording, err error) {
	t.Helper()
	got, gerr := readStreamed(data, name, ReadOptions{})
	if (err == nil) != (gerr == nil) || err != nil && err.Error() != gerr.Error() {
		t.Fatalf("streamed: error %v, read whole: %v", gerr, err)
	}
	if err == nil && !reflect.DeepEqual(got, rec) {
		t.Fatalf("streamed:\n%+v\nread whole:\n%+v", got, rec)
	}
}

// testExports are the exports the tests hold: the fuzz corpus (real
// recordings among them), the writer's samples and a generated load.
func testExports(t *testing.T) map[string][]byte {
	out := map[string][]byte{}
	dir := "testdata/fuzz/FuzzReadExport"
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		_, quoted, _ := strings.Cut(strings.TrimSpace(string(raw)), "[]byte(")
		data, err := strconv.Unquote(strings.TrimSuffix(quoted, ")"))
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		out[e.Name()] = []byte(data)
	}
	for _, name := range []string{"sample.jsonl", "sample.json", "large.jsonl"} {
		p := filepath.Join(t.TempDir(), name)
		if name == "large.jsonl" {
			writeLargeExport(t, p, 3000)
		} else {
			writeSampleExport(t, p)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = data
	}
	return out
}

// writeSampleExport writes the sample connections and a listener.
func writeSampleExport(t *testing.T, path string) {
	conns := sampleConnections()
	e, err := CreateExport(path, nil, Meta{Tcpscope: "test", Kernel: "6.18", Start: conns[0].Start})
	if err != nil {
		t.Fatal(err)
	}
	s := tracer.NewStats()
	for i := range conns {
		s.Add(&conns[i])
		if err := e.WriteConnection(&conns[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.WriteListener(&ListenerRow{ID: 5, NetNS: 1, Comm: "nginx", Backlog: 511}); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(s, Extra{End: conns[0].End}); err != nil {
		t.Fatal(err)
	}
}

// TestStreamingReaderEqualsWholeReader: report's reading (connection by
// connection, through the fast decoder) gives, on every export the tests
// hold, what reading the whole file with encoding/json gave.
func TestStreamingReaderEqualsWholeReader(t *testing.T) {
	for name, data := range testExports(t) {
		for _, opts := range []ReadOptions{{}, {FlaggedTimelinesOnly: true}, {Strict: true}} {
			fastDecoding = false
			want, werr := ReadExportFrom(bytes.NewReader(data), "f", opts)
			fastDecoding = true
			got, gerr := readStreamed(data, "f", opts)
			if (werr == nil) != (gerr == nil) || werr != nil && werr.Error() != gerr.Error() {
				t.Fatalf("%s %+v: error %v, want %v", name, opts, gerr, werr)
			}
			if werr == nil && !reflect.DeepEqual(got, want) {
				t.Fatalf("%s %+v: streamed\n%+v\nwant\n%+v", name, opts, got, want)
			}
			if werr == nil && name == "large.jsonl" && len(got.Connections) != 3000 {
				t.Fatalf("%s: %d connections, want 3000", name, len(got.Connections))
			}
		}
	}
}
