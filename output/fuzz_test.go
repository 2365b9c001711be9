package output

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzReadExport: arbitrary bytes as .jsonl or .json never panic the
// reader; they are read or rejected with an error.
func FuzzReadExport(f *testing.F) {
	f.Add([]byte(`{"type":"meta","format_version":1,"tcpscope":"x","kernel":"y","start":"2026-11-21T12:00:00Z"}` + "\n"))
	f.Add([]byte(`{"meta":{"format_version":1,"tcpscope":"x","kernel":"y","start":"2026-11-21T12:00:00Z"},"connections":[],"listeners":[],"summary":{"end":"2026-11-21T12:00:00Z"}}`))
	f.Add([]byte("{\"type\":\"connection\"}\n"))
	f.Add([]byte(""))
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
		}
	})
}
