package output

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/findings"
)

// FuzzReadExport: arbitrary bytes as .jsonl or .json never panic the
// reader; they are read or rejected with an error, the same from a file
// and from a pipe, and what strict reading accepts is whole. Whatever is
// read, written back (either form) and read again, is the same recording
// (but what the writer derives: the summary's statistics, the format
// version), and a second round changes nothing; written back from a file
// the schema accepts, it is one the schema accepts. Seeds: testdata/fuzz.
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
	// A .jsonl.zst of two frames, as the recorder writes it.
	enc, err := newFrameEncoder()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(enc.EncodeAll([]byte(summary+"\n"), enc.EncodeAll([]byte(meta+"\n"), nil)))
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
			checkStreamed(t, data, p, rec, err)
			strict, serr := ReadExportWith(p, ReadOptions{Strict: true})
			switch {
			case serr == nil && (strict.TornLine != 0 || strict.Summary == nil || strict.Cut):
				t.Fatalf("strict reading accepted torn line %d, summary %v, cut %v", strict.TornLine, strict.Summary != nil, strict.Cut)
			case serr == nil && err != nil:
				t.Fatalf("strict reading accepted what tolerant reading refused: %v", err)
			case serr != nil && err == nil && rec.TornLine == 0 && rec.Summary != nil && !rec.Cut:
				t.Fatalf("strict reading refused a whole recording: %v", serr)
			}
			if err == nil && name == "f.json" { // both files written
				checkRewrite(t, rec, ValidateExport(p) == nil || ValidateExport(filepath.Join(dir, "f.jsonl")) == nil)
			}
		}
	})
}

// checkRewrite writes rec back in both forms and reads it again.
func checkRewrite(t *testing.T, rec *Recording, valid bool) {
	t.Helper()
	sch, err := compiledSchema()
	if err != nil {
		t.Fatal(err)
	}
	var again [2]*Recording
	for i, name := range []string{"re.jsonl", "re.json"} {
		data := rewrite(t, rec, name)
		if err := validateData(sch, name, data, name == "re.json", 0); valid && err != nil {
			t.Fatalf("the schema accepts the input, not %s written back from it: %v", name, err)
		}
		got, err := ReadExportFrom(bytes.NewReader(data), name, ReadOptions{Strict: true})
		if err != nil {
			t.Fatalf("reading %s written back: %v", name, err)
		}
		again[i] = got
	}
	if !reflect.DeepEqual(again[0], again[1]) {
		t.Fatalf("the two forms read differently: %s", diff(again[0], again[1]))
	}
	want, got := canonical(rec), canonical(again[0])
	if rec.Summary == nil {
		got.Summary = nil // the writer always ends with one
	}
	if !reflect.DeepEqual(want, got) {
		t.Fatalf("written back and read, the recording changed: %s", diff(got, want))
	}
	third, err := ReadExportFrom(bytes.NewReader(rewrite(t, again[0], "third.jsonl")), "third.jsonl", ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(third, again[0]) {
		t.Fatalf("a second round trip changed the recording: %s", diff(third, again[0]))
	}
}

// rewrite writes a recording read from a file in the form name says, the
// way tcpscope records (listeners, connections, and the summary at Close),
// to memory: files would be synced.
func rewrite(t *testing.T, rec *Recording, name string) []byte {
	t.Helper()
	var b bytes.Buffer
	e := &Export{w: &b, jsonl: strings.HasSuffix(name, ".jsonl")}
	if err := e.Start(rec.Meta); err != nil {
		t.Fatal(err)
	}
	for i := range rec.Listeners {
		if err := e.WriteListener(&rec.Listeners[i]); err != nil {
			t.Fatal(err)
		}
	}
	s := tracer.NewStats()
	for i := range rec.Connections {
		s.Add(&rec.Connections[i])
		if err := e.WriteConnection(&rec.Connections[i]); err != nil {
			t.Fatal(err)
		}
	}
	var x Extra
	if rec.Summary != nil {
		x = rec.Summary.Extra()
	}
	if err := e.Close(s, x); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// canonical is a copy of rec without what the writer derives instead of
// copying: the format version (its own), the summary's figures computed
// from the connections and the meta record, the counters' meanings and
// the recursion misses' lost; times in UTC, as written; a torn line is
// not written back.
func canonical(rec *Recording) *Recording {
	c := *rec
	c.Meta.FormatVersion, c.TornLine = 0, 0
	c.Meta.Start = c.Meta.Start.UTC()
	c.Connections = append([]tracer.Connection(nil), rec.Connections...)
	for i := range c.Connections {
		conn := &c.Connections[i]
		conn.Start, conn.End = conn.Start.UTC(), conn.End.UTC()
		conn.Timeline = append([]tracer.Item(nil), conn.Timeline...)
		for j := range conn.Timeline {
			conn.Timeline[j].At = conn.Timeline[j].At.UTC()
		}
	}
	c.Listeners = append([]ListenerRow(nil), rec.Listeners...)
	for i := range c.Listeners {
		c.Listeners[i].Start, c.Listeners[i].End = c.Listeners[i].Start.UTC(), c.Listeners[i].End.UTC()
	}
	if rec.Summary != nil {
		s := *rec.Summary
		s.End = s.End.UTC()
		s.Start, s.Connections, s.ByOutcome, s.ByRole, s.Flags = time.Time{}, 0, nil, RoleCounts{}, nil
		s.HandshakeUs, s.SynRecvUs, s.TopFlaggedPeers, s.Kernel, s.Tcpscope = Quantiles{}, Quantiles{}, nil, "", ""
		s.Counters = append([]CounterDelta(nil), s.Counters...)
		for i := range s.Counters {
			s.Counters[i].Meaning = ""
		}
		s.Recursion = append([]RecursionRecord(nil), s.Recursion...)
		for i := range s.Recursion {
			s.Recursion[i].Lost = 0
		}
		// Findings of a kind or severity this build does not know are
		// left out (findingsFromRecords).
		var fs []FindingRecord
		for _, f := range s.Findings {
			_, kok := findings.ParseKind(f.Kind)
			_, sok := findings.ParseSeverity(f.Severity)
			if kok && sok {
				f.First, f.Last = f.First.UTC(), f.Last.UTC()
				fs = append(fs, f)
			}
		}
		s.Findings = fs
		c.Summary = &s
	}
	emptyToNil(reflect.ValueOf(&c).Elem())
	return &c
}

// emptyToNil makes every empty slice and map in v nil: the writer writes
// [] for nil, and a file may lack the key.
func emptyToNil(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			emptyToNil(v.Elem())
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				emptyToNil(v.Field(i))
			}
		}
	case reflect.Slice, reflect.Map:
		if v.Len() == 0 {
			v.SetZero()
		} else if v.Kind() == reflect.Slice {
			for i := 0; i < v.Len(); i++ {
				emptyToNil(v.Index(i))
			}
		}
	}
}

// FuzzConnectionRoundTrip: a connection record converted to a connection
// (as the reader does) and written is the same record, key by key; read
// back, the same connection, typed field by typed field (texts spelt as
// the writer does: invalid UTF-8 replaced).
func FuzzConnectionRoundTrip(f *testing.F) {
	// Names from the schema's enums (and a few of the free-text ones): the
	// reader reads names, the writer writes them.
	f.Add(uint64(4834), uint64(4835), uint64(0), uint8(0), uint8(2), []byte{10, 0, 0, 2}, []byte{10, 0, 0, 1}, uint16(40000), uint16(80),
		uint32(4026531833), uint32(100), "wrk", int64(1_795_000_000_123_456_789), int64(279), int64(122), int64(-1), uint64(0x5a5a5a5a5a5a5a5a),
		uint32(0x01020304), uint64(43), uint64(18), uint32(1<<9|3<<28), "until later", int64(122))
	f.Add(uint64(1<<52+1), uint64(0), uint64(5), uint8(1), uint8(4), []byte{}, bytes.Repeat([]byte{0x20}, 16), uint16(1), uint16(5000),
		uint32(1), uint32(0), "we\"ird\x01\xff", int64(-5), int64(0), int64(-7), int64(3_000_000), uint64(1<<63-1),
		uint32(0), uint64(0), uint64(0), uint32(0xffff|1<<28), "no\tsocket \xfe", int64(0))
	f.Fuzz(func(t *testing.T, id, peer, listener uint64, role, outcome uint8, local, remote []byte, lport, rport uint16,
		netns, pid uint32, comm string, start, duration, handshake, synRecv int64, names uint64,
		rtx uint32, received, acked uint64, flags uint32, detail string, prev int64) {
		t0 := time.Unix(0, start).UTC()
		r := ConnectionRecord{ID: id, PeerID: peer, ListenerID: listener, Role: []string{"client", "server"}[role%2],
			Family: pick(names, "family"), LocalAddr: fuzzAddr(local), RemoteAddr: fuzzAddr(remote), LocalPort: lport, RemotePort: rport,
			NetNS: netns, PID: pid, Comm: comm, Start: t0, End: t0.Add(time.Duration(duration) * time.Microsecond), DurationUs: duration,
			HandshakeUs: &handshake, SynRecvUs: &synRecv, SynRecvMethod: pick(names>>2, "syn_recv_method"),
			Retransmits:   RetransmitsRecord{Syn: rtx & 0xff, SynAck: rtx >> 8 & 0xff, Data: rtx >> 16 & 0xff, Fin: rtx >> 24},
			BytesReceived: received, BytesAcked: acked, ClosedBy: pick(names>>5, "closed_by"),
			Outcome: pick(uint64(outcome), "outcome"), Errno: pick(names>>7, "errno")}
		for i, fl := range fuzzNames["flag"] {
			if flags&(1<<i) != 0 {
				r.Flags = append(r.Flags, fl)
			}
		}
		for i := int64(0); i < int64(flags>>28); i++ { // up to 15 items
			n := names >> (10 + 4*i)
			r.Timeline = append(r.Timeline, ItemRecord{At: t0.Add(time.Duration(i*prev) * time.Microsecond), OffsetUs: i * prev,
				Kind: pick(n, "kind"), From: pick(n>>1, "state"), To: pick(n>>2, "state"), State: pick(n>>3, "state"),
				Reason: pick(n, "reason"), Errno: pick(n>>1, "errno"), Detail: detail, PrevStateUs: prev})
		}
		// The connection, as typed values; then the record as the writer
		// spells it: texts with invalid UTF-8 replaced, a negative
		// duration unknown (null).
		c := fromRecord(r)
		r.Comm = asWritten(r.Comm)
		for i := range r.Timeline {
			r.Timeline[i].Detail = asWritten(r.Timeline[i].Detail)
		}
		if handshake < 0 {
			r.HandshakeUs = nil
		}
		if synRecv < 0 {
			r.SynRecvUs = nil
		}
		want := fromRecord(r)
		line := AppendConnectionJSON(nil, &c)
		var written ConnectionRecord
		if err := json.Unmarshal(line, &written); err != nil {
			t.Fatalf("%v\n%s", err, line)
		}
		emptyToNil(reflect.ValueOf(&written).Elem())
		emptyToNil(reflect.ValueOf(&r).Elem())
		if !reflect.DeepEqual(written, r) {
			t.Fatalf("the record written differs: %s\n%s", diff(written, r), line)
		}
		rec, err := ReadExportFrom(bytes.NewReader(append(append([]byte(`{"type":"meta","format_version":1,"start":"2026-11-21T12:00:00Z"}`+"\n"), line...), '\n')), "c.jsonl", ReadOptions{})
		if err != nil {
			t.Fatalf("%v\n%s", err, line)
		}
		if len(rec.Connections) != 1 || !reflect.DeepEqual(rec.Connections[0], want) {
			t.Fatalf("read back: %s\n%s", diff(rec.Connections, []tracer.Connection{want}), line)
		}
	})
}

// fuzzNames are the names pick chooses from: the schema's enums, and
// examples of the free-text names (reset reasons, errnos); "" none.
var fuzzNames = map[string][]string{
	"outcome": {"open", "closed", "time_wait", "reset", "refused", "timeout", "abandoned_by_app", "failed"},
	"flag": {"syn_retransmitted", "synack_retransmitted", "long_syn_recv", "reset_sent", "reset_received", "refused",
		"handshake_timeout", "data_retransmitted", "fin_retransmitted", "time_wait", "preexisting", "incomplete",
		"listen_overflow", "syncookie", "port_exhausted", "time_wait_killed"}, // in report order
	"family":          {"ipv4", "ipv6", ""},
	"syn_recv_method": {"synack_timestamp", "srtt", "total_rto_time", "child_socket", ""},
	"closed_by":       {"local", "remote", ""},
	"errno":           {"", "ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EADDRNOTAVAIL", "EPIPE"},
	"kind":            {"state", "retransmit", "synack_retransmit", "reset_sent", "reset_received", "error", "time_wait", "time_wait_killed", "synack", "listen_overflow"},
	"state":           {"", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV"},
	"reason":          {"", "NO_SOCKET", "TCP_FLAGS", "TCP_ABORT_ON_CLOSE", "NOT_SPECIFIED"},
}

// pick chooses one of the names of what by the low bits of n.
func pick(n uint64, what string) string {
	names := fuzzNames[what]
	return names[n%uint64(len(names))]
}

// fuzzAddr makes an IPv4 address of 4 bytes, an IPv6 one of 16, and null
// (unknown to the kernel) of any other length.
func fuzzAddr(b []byte) *string {
	a, ok := netip.AddrFromSlice(b)
	if !ok {
		return nil
	}
	s := a.String()
	return &s
}

// asWritten is s as the writer spells it: each byte of invalid UTF-8
// replaced by U+FFFD.
func asWritten(s string) string {
	var b strings.Builder
	for _, r := range s {
		b.WriteRune(r)
	}
	return b.String()
}

// firstDiff names the first field, at any depth, where a and b differ.
func firstDiff(a, b reflect.Value, path string) string {
	if a.Kind() != b.Kind() {
		return path
	}
	switch a.Kind() {
	case reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			if a.IsNil() != b.IsNil() {
				return path
			}
			return ""
		}
		return firstDiff(a.Elem(), b.Elem(), path)
	case reflect.Struct:
		if a.Type() == reflect.TypeFor[time.Time]() || a.Type() == reflect.TypeFor[netip.AddrPort]() {
			break
		}
		for i := 0; i < a.NumField(); i++ {
			if !a.Type().Field(i).IsExported() {
				continue
			}
			if d := firstDiff(a.Field(i), b.Field(i), path+"."+a.Type().Field(i).Name); d != "" {
				return d
			}
		}
		return ""
	case reflect.Slice:
		if a.Len() != b.Len() || a.IsNil() != b.IsNil() {
			return fmt.Sprintf("%s (len %d nil %v, len %d nil %v)", path, a.Len(), a.IsNil(), b.Len(), b.IsNil())
		}
		for i := 0; i < a.Len(); i++ {
			if d := firstDiff(a.Index(i), b.Index(i), fmt.Sprintf("%s[%d]", path, i)); d != "" {
				return d
			}
		}
		return ""
	}
	if !reflect.DeepEqual(a.Interface(), b.Interface()) {
		return fmt.Sprintf("%s: %#v, %#v", path, a.Interface(), b.Interface())
	}
	return ""
}

func diff(a, b any) string { return firstDiff(reflect.ValueOf(a), reflect.ValueOf(b), "") }
