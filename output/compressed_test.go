package output

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/tracer"
)

// TestCompressedExportReadsLikePlain: a .jsonl.zst holds the records of
// the .jsonl written alongside, is told by its content whatever its name,
// and is read from a pipe too.
func TestCompressedExportReadsLikePlain(t *testing.T) {
	dir := t.TempDir()
	plain, zst := filepath.Join(dir, "run.jsonl"), filepath.Join(dir, "run.jsonl.zst")
	writeLargeExport(t, plain, 5000)
	writeLargeExport(t, zst, 5000)
	want, err := ReadExport(plain)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(zst)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(data, zstdMagic) {
		t.Fatalf("%s does not start with the zstd magic: % x", zst, data[:4])
	}
	renamed := filepath.Join(dir, "renamed.jsonl")
	if err := os.WriteFile(renamed, data, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{zst, renamed} {
		got, err := ReadExport(p)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) || len(got.Connections) != 5000 || got.Summary == nil || len(got.Warnings(p)) != 0 {
			t.Fatalf("%s reads otherwise than %s: %d connections, warnings %q", p, plain, len(got.Connections), got.Warnings(p))
		}
	}
	piped, err := readPiped(data, zst, ReadOptions{})
	if err != nil || !reflect.DeepEqual(piped, want) {
		t.Fatalf("piped %s: %v", zst, err)
	}
	if err := ValidateExport(zst); err != nil {
		t.Fatalf("%s does not validate: %v", zst, err)
	}
	if st, _ := os.Stat(plain); int64(len(data))*5 > st.Size() {
		t.Errorf("%s is %d bytes, %s %d: compressed less than 5 times", zst, len(data), plain, st.Size())
	}
}

// frameEnd is where one flush of a .jsonl.zst ended, and how many
// connections the file then held.
type frameEnd struct {
	size  int
	conns int
}

// writeFramed writes n generated connections to a .jsonl.zst, flushing
// every `every`, and returns where each flush (frame) ended.
func writeFramed(t *testing.T, path string, n, every int) []frameEnd {
	t0 := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	e, err := CreateExport(path, nil, Meta{Tcpscope: "test", Kernel: "6.18", Start: t0})
	if err != nil {
		t.Fatal(err)
	}
	size := func() int {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return int(st.Size())
	}
	ends := []frameEnd{{size(), 0}}
	for i := 0; i < n; i++ {
		c := largeConnection(i, t0)
		if err := e.WriteConnection(&c); err != nil {
			t.Fatal(err)
		}
		if (i+1)%every == 0 {
			if err := e.Flush(); err != nil {
				t.Fatal(err)
			}
			ends = append(ends, frameEnd{size(), i + 1})
		}
	}
	if err := e.Close(tracer.NewStats(), Extra{End: t0}); err != nil {
		t.Fatal(err)
	}
	return ends
}

// TestCompressedExportCutReadsWholeFrames: a .jsonl.zst cut anywhere (what
// SIGKILL or a full disk leaves) reads every connection of its whole
// frames, says it was cut when the cut is inside a frame, and is refused
// by --strict.
func TestCompressedExportCutReadsWholeFrames(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run.jsonl.zst")
	ends := writeFramed(t, path, 1000, 300)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(ends); i++ {
		prev, end := ends[i-1], ends[i]
		for _, cut := range []int{end.size, prev.size + 1, (prev.size + end.size) / 2, end.size - 1} {
			rec, err := readBytes(t, data[:cut], ReadOptions{})
			if err != nil {
				t.Fatalf("cut at %d: %v", cut, err)
			}
			inside := cut != end.size
			n := len(rec.Connections)
			if n < prev.conns || n > end.conns || !inside && n != end.conns || rec.Cut != inside {
				t.Fatalf("cut at %d (frames end at %d, %d): %d connections, cut %v; want %d to %d", cut, prev.size, end.size, n, rec.Cut, prev.conns, end.conns)
			}
			for j, c := range rec.Connections {
				if c.ID != uint64(j+1) {
					t.Fatalf("cut at %d: connection %d has id %d", cut, j, c.ID)
				}
			}
			w := strings.Join(rec.Warnings("run.jsonl.zst"), "\n")
			if inside != strings.Contains(w, "run.jsonl.zst: the compressed file is cut short inside its last zstd frame") {
				t.Fatalf("cut at %d: warnings %q", cut, w)
			}
			if _, err := readBytes(t, data[:cut], ReadOptions{Strict: true}); err == nil {
				t.Fatalf("cut at %d: --strict reads it", cut)
			}
		}
	}
}

// TestCompressedExportDamageIsAnError: a changed byte is an error (the
// decompressor's, or the JSON's when the damaged frame decodes before its
// checksum is checked), not a cut.
func TestCompressedExportDamageIsAnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run.jsonl.zst")
	writeFramed(t, path, 900, 300)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, at := range []int{len(data) / 3, len(data) / 2, len(data)/2 + 7, len(data) * 2 / 3} {
		damaged := bytes.Clone(data)
		damaged[at] ^= 0xff
		if rec, err := readBytes(t, damaged, ReadOptions{}); err == nil {
			t.Errorf("a .jsonl.zst damaged at %d of %d reads: %d connections, cut %v", at, len(data), len(rec.Connections), rec.Cut)
		}
	}
}

func TestExportNames(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"run.json.zst", "run.zst", "run.jsonl.gz"} {
		if _, err := OpenExport(filepath.Join(dir, name), nil, Owner{}); err == nil || !strings.Contains(err.Error(), ".jsonl.zst (the same, zstd-compressed)") {
			t.Errorf("output %s: %v", name, err)
		}
	}
}
