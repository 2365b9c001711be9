package output

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

// reformat rewrites every JSON value of data the way jq would: indented
// (jq .), compact (jq -c), or with sorted keys (jq -S); "lines" keeps one
// value a line.
func reformat(t testing.TB, data []byte, how string) []byte {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var out bytes.Buffer
	for dec.More() {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			t.Fatal(err)
		}
		switch how {
		case "indent":
			if err := json.Indent(&out, raw, "", "  "); err != nil {
				t.Fatal(err)
			}
		case "compact":
			if err := json.Compact(&out, raw); err != nil {
				t.Fatal(err)
			}
		case "sorted":
			var v any
			d := json.NewDecoder(bytes.NewReader(raw))
			d.UseNumber()
			if err := d.Decode(&v); err != nil {
				t.Fatal(err)
			}
			b, err := json.MarshalIndent(v, "", "\t") // map keys come out sorted
			if err != nil {
				t.Fatal(err)
			}
			out.Write(b)
		}
		out.WriteByte('\n')
	}
	return out.Bytes()
}

// readBytes reads data from a file, and through a pipe that hands it over
// a few bytes at a time (report - reads standard input once, front to
// back): both must read the same.
func readBytes(t *testing.T, data []byte, opts ReadOptions) (*Recording, error) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "in")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	rec, err := ReadExportWith(p, opts)
	piped, perr := readPiped(data, p, opts)
	if (err == nil) != (perr == nil) || err != nil && err.Error() != perr.Error() || !reflect.DeepEqual(rec, piped) {
		t.Errorf("read through a pipe differs: %v / %v", err, perr)
	}
	return rec, err
}

func readPiped(data []byte, name string, opts ReadOptions) (*Recording, error) {
	return ReadExportFrom(iotest.HalfReader(bytes.NewReader(data)), name, opts)
}

// TestReadExportAnyFormatting: any valid JSON layout of either form reads
// as the file tcpscope wrote.
func TestReadExportAnyFormatting(t *testing.T) {
	for _, name := range []string{"run.json", "run.jsonl"} {
		path, _ := writeExport(t, name, sampleConnections())
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		want, err := ReadExport(path)
		if err != nil {
			t.Fatal(err)
		}
		variants := map[string][]byte{
			"indent":          reformat(t, data, "indent"),
			"compact":         reformat(t, data, "compact"),
			"sorted":          reformat(t, data, "sorted"),
			"leading-space":   append([]byte("\n\n  "), data...),
			"crlf":            bytes.ReplaceAll(data, []byte("\n"), []byte("\r\n")),
			"no-final-eol":    bytes.TrimRight(data, "\n"),
			"indent-no-eol":   bytes.TrimRight(reformat(t, data, "indent"), "\n"),
			"trailing-blanks": append(append([]byte{}, data...), "\n\n \n"...),
		}
		for how, v := range variants {
			got, err := readBytes(t, v, ReadOptions{Strict: true})
			if err != nil {
				t.Errorf("%s %s: %v", name, how, err)
				continue
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s %s read differently:\n got %+v\nwant %+v", name, how, got, want)
			}
			if w := got.Warnings(name); len(w) > 0 {
				t.Errorf("%s %s: warnings %q", name, how, w)
			}
		}
	}
}

// TestReadExportTornLastRecord cuts a .jsonl, and the same records spread
// over lines, anywhere: each record before the cut is read, a record
// cut short is skipped and named (an error when strict), and a cut that
// leaves only whole records is no cut at all.
func TestReadExportTornLastRecord(t *testing.T) {
	path, _ := writeExport(t, "run.jsonl", sampleConnections())
	data, _ := os.ReadFile(path)
	full, _ := ReadExport(path)
	for _, how := range []string{"tcpscope", "indent"} {
		if how == "indent" {
			data = reformat(t, data, "indent")
		}
		// Each record's first byte and line.
		type span struct{ start, end, line int }
		var spans []span
		dec := json.NewDecoder(bytes.NewReader(data))
		for dec.More() {
			var raw json.RawMessage
			dec.Decode(&raw)
			end := int(dec.InputOffset())
			start := end - len(raw)
			spans = append(spans, span{start, end, bytes.Count(data[:start], []byte("\n")) + 1})
		}
		for cut := spans[0].end; cut < len(data); cut++ {
			whole, torn, near := 0, 0, false
			for _, s := range spans {
				switch {
				case s.end <= cut:
					whole++
				case s.start < cut:
					torn = s.line
				}
				near = near || abs(cut-s.start) < 3 || abs(cut-s.end) < 3
			}
			if !near && cut%31 != 0 {
				continue // every record's edges, and a sample of the bytes between
			}
			rec, err := readPiped(data[:cut], "in", ReadOptions{})
			if err != nil {
				t.Fatalf("%s cut at byte %d: %v", how, cut, err)
			}
			conns := min(whole-1, len(full.Connections))
			if rec.TornLine != torn || len(rec.Connections) != conns || (rec.Summary != nil) != (whole == len(spans)) {
				t.Fatalf("%s cut at byte %d: torn line %d, %d connections, summary %v; want torn line %d, %d connections",
					how, cut, rec.TornLine, len(rec.Connections), rec.Summary != nil, torn, conns)
			}
			if conns > 0 && !reflect.DeepEqual(rec.Connections, full.Connections[:conns]) {
				t.Fatalf("%s cut at byte %d: the records before the cut read differently", how, cut)
			}
			_, serr := readPiped(data[:cut], "in", ReadOptions{Strict: true})
			switch {
			case torn > 0 && (serr == nil || !strings.Contains(serr.Error(), ":"+strconv.Itoa(torn)+": truncated record")):
				t.Fatalf("%s cut at byte %d, strict: %v; want the torn line %d named", how, cut, serr, torn)
			case torn == 0 && whole < len(spans) && (serr == nil || !strings.Contains(serr.Error(), "no summary")):
				t.Fatalf("%s cut at byte %d, strict: %v; want no summary refused", how, cut, serr)
			}
		}
	}
}

func TestRecordingWarnings(t *testing.T) {
	path, _ := writeExport(t, "run.jsonl", sampleConnections())
	data, _ := os.ReadFile(path)
	lines := strings.SplitAfter(string(data), "\n")
	rec, err := readBytes(t, []byte(lines[0]+lines[1]+lines[2][:30]), ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w := rec.Warnings("run.jsonl")
	if len(w) != 2 || !strings.HasPrefix(w[0], "run.jsonl:3: the last record is cut short") || !strings.Contains(w[1], "no summary") {
		t.Errorf("warnings %q", w)
	}
}

// TestReadExportDamageIsAnError: only the last record may be cut short; a
// broken record anywhere else, or a broken meta record, is an error naming
// its line.
func TestReadExportDamageIsAnError(t *testing.T) {
	path, _ := writeExport(t, "run.jsonl", sampleConnections())
	data, _ := os.ReadFile(path)
	lines := strings.SplitAfter(string(data), "\n")
	doc, _ := writeExport(t, "run.json", sampleConnections())
	docData, _ := os.ReadFile(doc)
	indented := string(reformat(t, data, "indent"))
	cases := []struct {
		name, content, want string
	}{
		{"torn-middle", lines[0] + lines[1][:40] + "\n" + lines[2], ":2: invalid connection record"},
		{"torn-then-more", lines[0] + lines[1][:40] + lines[2], ":2: invalid connection record"},
		{"garbage-last-line", lines[0] + lines[1] + "}}garbage\n", ":3: invalid JSON"},
		{"torn-meta", lines[0][:30], ":1: truncated meta record"},
		{"torn-indented-meta", indented[:30], ":3: truncated document"},
		{"indented-garbage", strings.Replace(indented, `"connection"`, `"connection" x`, 1), "invalid JSON"},
		{"document-then-more", string(docData) + lines[1], ":6: more data after the end of the document"},
		{"truncated-document", string(docData[:len(docData)/2]), "truncated document"},
	}
	for _, c := range cases {
		_, err := readBytes(t, []byte(c.content), ReadOptions{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}

// TestReadExportOtherJSON: another program's JSON, whole or cut short, is
// not a tcpscope export; never "truncated".
func TestReadExportOtherJSON(t *testing.T) {
	for _, content := range []string{
		`{"foo":1}`,
		"{\"foo\":1}\n{\"foo\":2}\n",
		"{\n  \"name\": \"x\",\n  \"items\": [1, 2]\n}\n",
		`{"level":"info","msg":"started"}` + "\n" + `{"level":"info","msg":"sto`,
		`{"type":"event","x":1}` + "\n",
		`{"type":"event","x":`,
		`{"name": "x", "items": [1, 2`,
		`{"name": "x"} garbage`,
		"[1, 2]\n",
		`"meta"`,
	} {
		_, err := readBytes(t, []byte(content), ReadOptions{})
		if err == nil || !strings.Contains(err.Error(), "not a tcpscope export") || strings.Contains(err.Error(), "truncated") {
			t.Errorf("%q: %v, want \"not a tcpscope export\"", content, err)
		}
	}
}

// TestReadExportNoSummary: a recording without its summary is read (the
// report warns); strict refuses it.
func TestReadExportNoSummary(t *testing.T) {
	for _, name := range []string{"run.json", "run.jsonl"} {
		path, _ := writeExport(t, name, sampleConnections())
		data, _ := os.ReadFile(path)
		if name == "run.json" {
			var doc map[string]json.RawMessage
			json.Unmarshal(data, &doc)
			delete(doc, "summary")
			data, _ = json.Marshal(doc)
		} else {
			data = data[:bytes.LastIndex(bytes.TrimRight(data, "\n"), []byte("\n"))+1]
		}
		rec, err := readBytes(t, data, ReadOptions{})
		if err != nil || rec.Summary != nil || len(rec.Connections) != 3 {
			t.Errorf("%s without summary: %v", name, err)
		}
		if _, err := readBytes(t, data, ReadOptions{Strict: true}); err == nil || !strings.Contains(err.Error(), "no summary") {
			t.Errorf("%s without summary, strict: %v", name, err)
		}
	}
}

func abs(n int) int { return max(n, -n) }

// TestFuzzSeedsRead: the committed seeds of FuzzReadExport are what they
// are named for: the exports among them read, whole or up to a torn last
// record, the rest are refused. (FuzzReadExport runs them too, asserting
// its round trips.)
func TestFuzzSeedsRead(t *testing.T) {
	for seed, conns := range map[string]int{
		"json-document": 1, "meta-and-connection": 1, "jq-indented-document": 1,
		"jq-indented-jsonl": 1, "no-final-newline": 1, "truncated-line": 0, // refused: -1
		"future-version": -1, "garbage": -1,
		// Read, and written back the same: a negative duration is unknown,
		// an address the writer spells "invalid IP".
		"full-export-jsonl": 3, "full-export-json": 3, "negative-quantile": 0, "negative-handshake": 1, "time-wait-bad-address": 0,
		// Refused: what the writer could not write back.
		"time-wait-negative-peak": -1, "year-10000-in-utc": -1,
	} {
		file, err := os.ReadFile(filepath.Join("testdata", "fuzz", "FuzzReadExport", seed))
		if err != nil {
			t.Fatal(err)
		}
		lit := strings.TrimSpace(strings.TrimPrefix(string(file), "go test fuzz v1\n"))
		data, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lit, "[]byte("), ")"))
		if err != nil {
			t.Fatalf("%s: %v", seed, err)
		}
		rec, err := readBytes(t, []byte(data), ReadOptions{})
		if (err == nil) != (conns >= 0) || err == nil && len(rec.Connections) != conns {
			t.Errorf("seed %s: %v, want %d connections read (-1: refused)", seed, err, conns)
		}
	}
}
