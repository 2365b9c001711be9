package output

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"testing/iotest"
)

// FuzzReadExport: arbitrary bytes as .jsonl or .json never panic the
// reader; they are read or rejected with an error, the same from a file
// and from a pipe, and what strict reading accepts is whole.
func FuzzReadExport(f *testing.F) {
	const meta = `{"type":"meta","format_version":1,"tcpscope":"x","kernel":"y","start":"2026-11-21T12:00:00Z"}`
	const summary = `{"type":"summary","end":"2026-11-21T12:00:00Z","connections":0}`
	f.Add([]byte(meta + "\n"))
	f.Add([]byte(`{"meta":{"format_version":1,"tcpscope":"x","kernel":"y","start":"2026-11-21T12:00:00Z"},"connections":[],"listeners":[],"summary":{"end":"2026-11-21T12:00:00Z"}}`))
	f.Add([]byte("{\"type\":\"connection\"}\n"))
	f.Add([]byte(""))
	// jq . of a .json, and of a .jsonl; a .jsonl without its last newline,
	// and one whose last record was cut short.
	f.Add([]byte("{\n  \"meta\": {\n    \"format_version\": 1,\n    \"start\": \"2026-11-21T12:00:00Z\"\n  },\n  \"connections\": [],\n  \"listeners\": []\n}\n"))
	f.Add([]byte("{\n  \"type\": \"meta\",\n  \"format_version\": 1\n}\n{\n  \"type\": \"summary\",\n  \"connections\": 0\n}\n"))
	f.Add([]byte(meta + "\n" + summary))
	f.Add([]byte(meta + "\n" + summary[:30]))
	f.Add([]byte(`{"foo":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		for _, name := range []string{"f.jsonl", "f.json"} {
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, data, 0o600); err != nil {
				t.Fatal(err)
			}
			rec, err := ReadExport(p)
			if err == nil && rec == nil {
				t.Fatal("no recording and no error")
			}
			piped, perr := ReadExportFrom(iotest.HalfReader(bytes.NewReader(data)), p, ReadOptions{})
			if (err == nil) != (perr == nil) || err != nil && err.Error() != perr.Error() || !reflect.DeepEqual(rec, piped) {
				t.Fatalf("a pipe reads differently: %v / %v", err, perr)
			}
			strict, serr := ReadExportWith(p, ReadOptions{Strict: true})
			switch {
			case serr == nil && (strict.TornLine != 0 || strict.Summary == nil):
				t.Fatalf("strict reading accepted torn line %d, summary %v", strict.TornLine, strict.Summary != nil)
			case serr == nil && err != nil:
				t.Fatalf("strict reading accepted what tolerant reading refused: %v", err)
			case serr != nil && err == nil && rec.TornLine == 0 && rec.Summary != nil:
				t.Fatalf("strict reading refused a whole recording: %v", serr)
			}
		}
	})
}
