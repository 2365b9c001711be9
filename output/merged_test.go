package output

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tcpscope/tcpscope/tracer"
)

var mergedContracts = []recordContract{
	{RecordMerge, reflect.TypeFor[MergeMeta](), "merge", true, false},
	{RecordHostPair, reflect.TypeFor[HostPairRecord](), "host_pair", true, false},
	{RecordPair, reflect.TypeFor[PairRecord](), "pair", true, true},
	{RecordUnmatched, reflect.TypeFor[UnmatchedRecord](), "unmatched", true, true},
}

// fullMerged sets every field of every merged record.
func fullMerged() *Merged {
	in := fullRecords()
	cl := in.conns[0]
	sv := in.conns[0]
	sv.Role, sv.Local, sv.Remote = tracer.RoleServer, cl.Remote, cl.Local
	off, unc := int64(-1500), int64(40)
	return &Merged{
		Meta: MergeMeta{FormatVersion: FormatVersion, Tcpscope: "test", Created: in.meta.Start,
			Inputs: []MergeInput{{Host: "a", File: "a.jsonl", Hostname: "ha", Connections: 3}, {Host: "b", File: "b.jsonl", Hostname: "hb", Connections: 2}}},
		HostPairs: []HostPairRecord{{ClientHost: "a", ServerHost: "b", Joined: 1, ClientsUnmatched: 1, ServersUnmatched: 2,
			OffsetUs: &off, UncertaintyUs: &unc, Handshakes: 1}},
		Pairs: []MergedPair{{ClientHost: "a", ServerHost: "b", OffsetUs: &off, UncertaintyUs: &unc,
			Diagnosis: []string{"client got ECONNRESET: the server sent it, reason TCP_ABORT_ON_CLOSE"}, Client: cl, Server: sv}},
		Unmatched: []MergedHalf{{Host: "a", PeerHost: "b", Diagnosis: []string{"client timed out and the server (b) has no record: nothing reached a socket on the server"}, Conn: cl}},
	}
}

// minimalMerged sets only what is always written.
func minimalMerged() *Merged {
	c := minimalRecords().conns[0]
	return &Merged{Meta: MergeMeta{FormatVersion: FormatVersion, Inputs: []MergeInput{{}}},
		HostPairs: []HostPairRecord{{}}, Pairs: []MergedPair{{Client: c, Server: c}}, Unmatched: []MergedHalf{{Conn: c}}}
}

// writeMergedLines writes m, checks every line against the schema, and
// returns the records by type, their type removed.
func writeMergedLines(t *testing.T, m *Merged) (string, map[string][]map[string]any) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "m.jsonl")
	var buf bytes.Buffer
	if err := WriteMerged(&buf, m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := ValidateExport(path); err != nil {
		t.Errorf("schema: %v", err)
	}
	out := map[string][]map[string]any{}
	for _, line := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		var r map[string]any
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatal(err)
		}
		typ, _ := r["type"].(string)
		delete(r, "type")
		out[typ] = append(out[typ], r)
	}
	return path, out
}

func TestMergedRecordsMatchWriterAndSchema(t *testing.T) {
	var schema map[string]any
	if err := json.Unmarshal(Schema, &schema); err != nil {
		t.Fatal(err)
	}
	_, full := writeMergedLines(t, fullMerged())
	_, minimal := writeMergedLines(t, minimalMerged())
	defs := schema["$defs"].(map[string]any)
	var lineTypes []string
	for _, e := range defs["line"].(map[string]any)["properties"].(map[string]any)["type"].(map[string]any)["enum"].([]any) {
		lineTypes = append(lineTypes, e.(string))
	}
	for _, rc := range mergedContracts {
		t.Run(rc.def, func(t *testing.T) { checkContract(t, schema, lineTypes, rc, full, minimal) })
	}
}

func TestMergedRoundTrip(t *testing.T) {
	want := fullMerged()
	path, _ := writeMergedLines(t, want)
	if ok, err := IsMerged(path); !ok || err != nil {
		t.Fatalf("IsMerged = %v, %v; want true", ok, err)
	}
	got, err := ReadMerged(path)
	if err != nil {
		t.Fatal(err)
	}
	// Times come back in UTC; the records were made in UTC.
	if !reflect.DeepEqual(got, want) {
		t.Errorf("read back\n%s\nwant\n%s", dumpMerged(got), dumpMerged(want))
	}
}

func dumpMerged(m *Merged) string {
	b, _ := json.MarshalIndent(m, "", " ")
	return string(b)
}

func TestReadMergedRejectsExport(t *testing.T) {
	path := filepath.Join(t.TempDir(), "e.jsonl")
	if err := os.WriteFile(path, []byte(`{"type":"meta","format_version":1,"tcpscope":"t","kernel":"k","start":"2026-01-01T00:00:00Z"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if ok, err := IsMerged(path); ok || err != nil {
		t.Errorf("IsMerged(export) = %v, %v; want false", ok, err)
	}
	if _, err := ReadMerged(path); err == nil || !strings.Contains(err.Error(), "not a merged file") {
		t.Errorf("ReadMerged(export) error %v; want not a merged file", err)
	}
}

func TestMergedTables(t *testing.T) {
	m := fullMerged()
	m.HostPairs = append(m.HostPairs, HostPairRecord{ClientHost: "a", ClientsUnmatched: 4})
	var buf bytes.Buffer
	if err := MergedTables(&buf, m); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"1 connections joined across 2 exports; 1 halves without partner",
		"| a           | b              | 1      | 1             | 2             | -1.5ms ± 40us (1 handshakes)",
		"| a           | (not recorded) | 0      | 4             | 0             | unknown (no handshake seen by both ends)",
		"client got ECONNRESET: the server sent it, reason TCP_ABORT_ON_CLOSE",
		"client timed out and the server (b) has no record",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("tables lack %q:\n%s", want, out)
		}
	}
}
