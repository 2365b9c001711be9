package output

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/cgroups"
	"github.com/tcpscope/tcpscope/tracer/findings"
)

// The contract test: for every record, the keys the writer writes, the
// json tags of its type in records.go and the properties of its JSON
// Schema definition are the same, recursively; omitempty, export:"optional"
// and the schema's "required" say the same thing.

// recordContract names a record's Go type and schema definition.
type recordContract struct {
	typ     string // the "type" of its .jsonl line
	goType  reflect.Type
	def     string // under $defs in the schema
	inLines bool   // a .jsonl line of its own
	// nested: records nested in it leave out their own "type" (which
	// their schema definitions allow).
	nested bool
}

var recordContracts = []recordContract{
	{RecordMeta, reflect.TypeFor[Meta](), "meta", true, false},
	{RecordConnection, reflect.TypeFor[ConnectionRecord](), "connection", true, false},
	{RecordListener, reflect.TypeFor[ListenerRecord](), "listener", true, false},
	{RecordSummary, reflect.TypeFor[SummaryRecord](), "summary", true, false},
	{RecordSample, reflect.TypeFor[Sample](), "sample", true, false},
	{"", reflect.TypeFor[Document](), "document", false, true},
}

// keyInfo is what one source says about one key. Paths join keys with
// dots; the elements of an array of objects add no step.
type keyInfo struct {
	omitempty bool // struct: written only when set
	optional  bool // struct: export:"optional"
	required  bool // schema
	isMap     bool // its keys are data (outcome and flag names)
	names     []string
}

// structKeys lists the keys a record type declares, recursively.
func structKeys(t reflect.Type) map[string]keyInfo {
	out := map[string]keyInfo{}
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag, ok := f.Tag.Lookup("json")
			if !ok || tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			path := prefix + name
			info := keyInfo{omitempty: strings.Contains(opts, "omitempty"), optional: f.Tag.Get("export") == "optional"}
			ft := f.Type
			for ft.Kind() == reflect.Pointer || ft.Kind() == reflect.Slice {
				ft = ft.Elem()
			}
			switch {
			case ft.Kind() == reflect.Map:
				info.isMap = true
			case ft.Kind() == reflect.Struct && ft != reflect.TypeFor[time.Time]():
				walk(ft, path+".")
			}
			out[path] = info
		}
	}
	walk(t, "")
	return out
}

// schemaKeys lists the properties of a schema definition, recursively;
// a map's names are the enum of its propertyNames.
func schemaKeys(t *testing.T, schema map[string]any, def string) map[string]keyInfo {
	t.Helper()
	defs := schema["$defs"].(map[string]any)
	resolve := func(n map[string]any) map[string]any {
		for {
			ref, ok := n["$ref"].(string)
			if !ok {
				return n
			}
			n = defs[strings.TrimPrefix(ref, "#/$defs/")].(map[string]any)
		}
	}
	out := map[string]keyInfo{}
	var walk func(n map[string]any, prefix string)
	walk = func(n map[string]any, prefix string) {
		n = resolve(n)
		if items, ok := n["items"].(map[string]any); ok {
			walk(items, prefix)
			return
		}
		props, ok := n["properties"].(map[string]any)
		if !ok {
			return
		}
		if n["additionalProperties"] != false {
			t.Errorf("schema %s %q: additionalProperties is not false: unknown keys would pass", def, prefix)
		}
		req := map[string]bool{}
		required, _ := n["required"].([]any) // none: nothing required
		for _, r := range required {
			req[r.(string)] = true
		}
		for name, p := range props {
			path := prefix + name
			for r := range req {
				if _, ok := props[r]; !ok {
					t.Errorf("schema %s %q: %q required but not a property", def, prefix, r)
				}
			}
			info := keyInfo{required: req[name]}
			pn := resolve(p.(map[string]any))
			if names, ok := pn["propertyNames"].(map[string]any); ok {
				info.isMap = true
				for _, e := range resolve(names)["enum"].([]any) {
					info.names = append(info.names, e.(string))
				}
				sort.Strings(info.names)
			} else {
				walk(pn, path+".")
			}
			out[path] = info
		}
	}
	walk(defs[def].(map[string]any), "")
	return out
}

// writtenKeys lists the keys of written records (all of one type),
// recursively; a map's names are its keys.
func writtenKeys(records []map[string]any, maps func(path string) bool) map[string]keyInfo {
	out := map[string]keyInfo{}
	var walk func(v any, prefix string)
	walk = func(v any, prefix string) {
		switch v := v.(type) {
		case []any:
			for _, e := range v {
				walk(e, prefix)
			}
		case map[string]any:
			for k, e := range v {
				path := prefix + k
				info := out[path]
				if maps(path) {
					info.isMap = true
					if obj, ok := e.(map[string]any); ok {
						for name := range obj {
							if !slices.Contains(info.names, name) {
								info.names = append(info.names, name)
							}
						}
						sort.Strings(info.names)
					}
				} else {
					walk(e, path+".")
				}
				out[path] = info
			}
		}
	}
	for _, r := range records {
		walk(r, "")
	}
	return out
}

// contractExport writes a .jsonl and a .json of the given records and
// splits them by record type: every .jsonl line (its "type" removed), and
// the whole .json document.
func contractExport(t *testing.T, in exportInput) map[string][]map[string]any {
	t.Helper()
	conns, ls, meta, x := in.conns, in.listeners, in.meta, in.x
	out := map[string][]map[string]any{}
	for _, name := range []string{"c.jsonl", "c.json"} {
		path := filepath.Join(t.TempDir(), name)
		e, err := CreateExport(path, nil, meta)
		if err != nil {
			t.Fatal(err)
		}
		s := tracer.NewStats()
		for i := range ls {
			if err := e.WriteListener(&ls[i]); err != nil {
				t.Fatal(err)
			}
		}
		for i := range in.samples {
			if err := e.WriteSample(&in.samples[i]); err != nil {
				t.Fatal(err)
			}
		}
		for i := range conns {
			s.Add(&conns[i])
			if err := e.WriteConnection(&conns[i]); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.Close(s, x); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := ValidateExport(path); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if name == "c.json" {
			var doc map[string]any
			if err := json.Unmarshal(data, &doc); err != nil {
				t.Fatal(err)
			}
			// Only connections carry their type in a document.
			for _, c := range doc["connections"].([]any) {
				if typ := c.(map[string]any)["type"]; typ != RecordConnection {
					t.Errorf(".json connection of type %v", typ)
				}
				delete(c.(map[string]any), "type")
			}
			out[""] = append(out[""], doc)
			continue
		}
		for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
			var r map[string]any
			if err := json.Unmarshal(line, &r); err != nil {
				t.Fatal(err)
			}
			typ, _ := r["type"].(string)
			delete(r, "type")
			out[typ] = append(out[typ], r)
		}
	}
	return out
}

// exportInput is what a recording writes.
type exportInput struct {
	conns     []tracer.Connection
	listeners []ListenerRow
	meta      Meta
	x         Extra
	samples   []tracer.Sample
}

// fromRecord converts a connection record, timeline included, as the
// reader does: tests spell connections by their names in a file.
func fromRecord(r ConnectionRecord) tracer.Connection {
	c, err := connectionFromRecord(&r)
	if err == nil {
		c.Timeline, err = timelineFromRecords(r.Timeline)
	}
	if err != nil {
		panic(err)
	}
	return c
}

// fullRecords sets every field of every record, optional ones included.
// A container id and a pod UID as the runtimes write them.
const (
	testContainer = "3f2a1b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708"
	testPod       = "0b6c2c6e-1f4d-4b63-9f0a-2d5e8c7b1a90"
	testPodU      = "0b6c2c6e_1f4d_4b63_9f0a_2d5e8c7b1a90"
)

func fullRecords() exportInput {
	t0 := time.Date(2026, 11, 21, 12, 0, 0, 123456789, time.UTC)
	us := func(n int64) time.Time { return t0.Add(time.Duration(n) * time.Microsecond) }
	local, remote, handshake, synRecv := "10.0.0.2", "10.0.0.1", int64(122), int64(40)
	conns := sampleConnections()
	conns[0] = fromRecord(ConnectionRecord{ID: 4834, PeerID: 4835, ListenerID: 9, Role: "client", Family: "ipv4",
		LocalAddr: &local, RemoteAddr: &remote, LocalPort: 40000, RemotePort: 80, NetNS: 4026531833, PID: 100, Comm: "wrk",
		CgroupID: 7001, Cgroup: "/kubepods.slice/kubepods-pod" + testPodU + ".slice/cri-containerd-" + testContainer + ".scope",
		ContainerID: testContainer, ContainerRuntime: "containerd", PodUID: testPod, Unit: "wrk.service",
		Start: t0, End: us(279), DurationUs: 279, HandshakeUs: &handshake, SynRecvUs: &synRecv, SynRecvMethod: "srtt",
		Retransmits: RetransmitsRecord{Syn: 1, SynAck: 2, Data: 3, Fin: 4}, BytesReceived: 43, BytesAcked: 18,
		ClosedBy: "local", Outcome: "time_wait", Errno: "ECONNRESET", Flags: []string{"reset_received", "time_wait"},
		Timeline: []ItemRecord{
			{At: us(1), OffsetUs: 1, Kind: "state", From: "ESTABLISHED", To: "CLOSE", State: "ESTABLISHED",
				Reason: "TCP_ABORT_ON_CLOSE", Errno: "ECONNRESET", Detail: "d", PrevStateUs: 7},
			{At: t0, Kind: "state", From: "CLOSE", To: "SYN_SENT"},
			{At: us(122), OffsetUs: 122, Kind: "state", From: "SYN_SENT", To: "ESTABLISHED", PrevStateUs: 122},
			{At: us(279), OffsetUs: 279, Kind: "time_wait", State: "TIME_WAIT", Detail: "until later"},
		}})
	unattributed, dropped := uint64(3), uint64(8)
	ls := []ListenerRow{{ID: 5, NetNS: 1, Local: netip.MustParseAddrPort("10.0.0.1:80"), PID: 2, Comm: "srv", Backlog: 4,
		CgroupID: 7002, Cgroup: cgroups.Info{Path: "/docker/" + testContainer, ContainerID: testContainer, Runtime: "docker", PodUID: testPod, Unit: "srv.service"},
		PeakQueue: 5, Connections: 6, SynAcks: 7, Abandoned: 8, Resets: 9, Overflows: 10, Syncookies: 11, QueueSamples: 12,
		FullSamples: 13, OverflowsAttributed: 14, SynDropsAttributed: 15, DropsAttributed: 16, SynRetransmitClients: 17,
		ClientSynRetransmits: 18, SynRecv: Quantiles{Count: 1, P50: 2, P90: 3, P99: 4, Max: 5}, Start: t0, End: t0.Add(time.Second),
		Preexisting: true, Open: true}}
	meta := Meta{Tcpscope: "test", Kernel: "6.18", Hostname: "h", Start: t0, Command: []string{"ab", "-n", "1"}}
	x := Extra{End: t0.Add(time.Minute), LostEvents: 1, LostRecords: 9, Orphans: 2, Evicted: 3, Unreadable: 4, Undecoded: 5, Discarded: 6, Gaps: 7, OTLPDropped: &dropped,
		Recursion: []tracer.RecursionMisses{{Tracepoint: "sock/inet_sock_set_state", Program: "handle_set_state", Misses: 5, Nested: 4, NestedMisses: 1}},
		Counters:  []CounterDelta{{NetNS: 1, Counter: "TcpExt.ListenOverflows", Delta: 4, Created: true, Unattributed: &unattributed}},
		TimeWait: []TimeWaitPressure{{TimeWaitDest: tracer.TimeWaitDest{Key: tracer.TimeWaitKey{NetNS: 1,
			Local: netip.MustParseAddr("10.0.0.2"), Remote: netip.MustParseAddrPort("10.0.0.1:80")},
			Now: 1, Peak: 2, Total: 3, Ports: 4, Warned: true}, KernelCount: 1}},
		Sysctls: []findings.Sysctl{{NetNS: 1, Name: findings.SomaxConn, Value: "7"}},
		Findings: []findings.Finding{{Kind: findings.SynFloodCookies, Severity: findings.Warning, NetNS: 1, Subject: "10.0.0.1:80 (srv/2)",
			Evidence: []findings.Fact{{Name: "syncookie_connections", Value: 11}},
			Sysctls:  []findings.Sysctl{{NetNS: 1, Name: findings.Syncookies, Value: "1"}},
			First:    t0, Last: t0.Add(time.Second), Mechanism: "m", Advice: "a"}},
	}
	sample := tracer.Sample{Time: t0.Add(time.Second), Interval: time.Second, Opened: 3, Closed: 2, Flagged: 1, LostEvents: 4, LostRecords: 5,
		Listeners: []tracer.ListenerSample{{NetNS: 1, Local: netip.MustParseAddrPort("10.0.0.1:80"), Queue: 2, PeakQueue: 5, Backlog: 4, OverflowDrops: 6}},
		TimeWait:  []tracer.TimeWaitCount{{NetNS: 1, Remote: netip.MustParseAddrPort("10.0.0.1:80"), Count: 7}}}
	for _, o := range tracer.AllOutcomes {
		sample.ClosedByOutcome[o] = 1
	}
	return exportInput{conns, ls, meta, x, []tracer.Sample{sample}}
}

// minimalRecords sets what is always written and nothing optional; each
// array holds one element, itself minimal.
func minimalRecords() exportInput {
	t0 := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	remote := "10.0.0.1"
	conns := []tracer.Connection{fromRecord(ConnectionRecord{ID: 1, Role: "client", Outcome: "reset", Start: t0, End: t0,
		RemoteAddr: &remote, RemotePort: 80, Flags: []string{"reset_received"}, Timeline: []ItemRecord{{At: t0, Kind: "reset_received"}}})}
	ls := []ListenerRow{{ID: 5}}
	x := Extra{End: t0,
		Recursion: []tracer.RecursionMisses{{Tracepoint: "sock/inet_sock_set_state"}},
		Counters:  []CounterDelta{{NetNS: 1, Counter: "TcpExt.ListenOverflows"}},
		TimeWait:  []TimeWaitPressure{{KernelCount: -1}},
		Sysctls:   []findings.Sysctl{{}},
		Findings:  []findings.Finding{{Evidence: []findings.Fact{{}}, Sysctls: []findings.Sysctl{{}}}},
	}
	return exportInput{conns, ls, Meta{Start: t0}, x, []tracer.Sample{{Time: t0}}}
}

// checkNoZero fails for a field of v, at any depth, that holds its zero
// value: the full records must exercise every key. Of an array, the first
// element is the full one.
func checkNoZero(t *testing.T, v reflect.Value, path string) {
	t.Helper()
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			t.Errorf("full records leave %s nil", path)
			return
		}
		checkNoZero(t, v.Elem(), path)
	case reflect.Slice, reflect.Map:
		if v.Len() == 0 {
			t.Errorf("full records leave %s empty", path)
		}
		if v.Kind() == reflect.Slice && v.Len() > 0 {
			checkNoZero(t, v.Index(0), path+"[0]")
		}
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			if v.Interface().(time.Time).IsZero() {
				t.Errorf("full records leave %s zero", path)
			}
			return
		}
		for i := 0; i < v.NumField(); i++ {
			checkNoZero(t, v.Field(i), path+"."+v.Type().Field(i).Name)
		}
	default:
		if v.IsZero() {
			t.Errorf("full records leave %s zero", path)
		}
	}
}

func TestRecordsMatchWriterAndSchema(t *testing.T) {
	var schema map[string]any
	if err := json.Unmarshal(Schema, &schema); err != nil {
		t.Fatal(err)
	}
	full := contractExport(t, fullRecords())
	minimal := contractExport(t, minimalRecords())
	defs := schema["$defs"].(map[string]any)
	var lineTypes []string
	for _, e := range defs["line"].(map[string]any)["properties"].(map[string]any)["type"].(map[string]any)["enum"].([]any) {
		lineTypes = append(lineTypes, e.(string))
	}
	for _, rc := range recordContracts {
		t.Run(rc.def, func(t *testing.T) { checkContract(t, schema, lineTypes, rc, full, minimal) })
	}
}

// checkContract compares, for one record, its json tags, its schema
// definition and the keys written in full and in minimal records.
func checkContract(t *testing.T, schema map[string]any, lineTypes []string, rc recordContract, full, minimal map[string][]map[string]any) {
	t.Helper()
	defs := schema["$defs"].(map[string]any)
	if len(full[rc.typ]) == 0 || len(minimal[rc.typ]) == 0 {
		t.Fatalf("no %q record written", rc.def)
	}
	// The record's "type": the schema's const, one of the line types.
	sch := schemaKeys(t, schema, rc.def)
	if rc.inLines {
		typ := defs[rc.def].(map[string]any)["properties"].(map[string]any)["type"]
		if c, _ := typ.(map[string]any)["const"].(string); c != rc.typ || !slices.Contains(lineTypes, rc.typ) {
			t.Errorf("schema: %s's type const %q, line types %q; want %q in both", rc.def, c, lineTypes, rc.typ)
		}
		delete(sch, "type")
	}
	for path := range sch {
		if rc.nested && strings.Count(path, ".") == 1 && strings.HasSuffix(path, ".type") {
			delete(sch, path) // the records' own "type", not written there but connections'
		}
	}
	tags := structKeys(rc.goType)
	isMap := func(path string) bool { return tags[path].isMap }
	wrote, wroteMin := writtenKeys(full[rc.typ], isMap), writtenKeys(minimal[rc.typ], isMap)

	// Every record type decodes what was written, and the full
	// records leave nothing at zero.
	for i, r := range full[rc.typ] {
		b, _ := json.Marshal(r)
		v := reflect.New(rc.goType)
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v.Interface()); err != nil {
			t.Errorf("decoding into %s: %v", rc.goType, err)
			continue
		}
		if i == 0 { // the full one
			checkNoZero(t, v.Elem(), rc.goType.Name())
		}
	}
	paths := map[string]bool{}
	for _, m := range []map[string]keyInfo{tags, sch, wrote} {
		for p := range m {
			paths[p] = true
		}
	}
	for _, p := range slices.Sorted(func(yield func(string) bool) {
		for p := range paths {
			if !yield(p) {
				return
			}
		}
	}) {
		tag, inTags := tags[p]
		s, inSchema := sch[p]
		w, written := wrote[p]
		_, writtenMin := wroteMin[p]
		if !inTags || !inSchema || !written {
			t.Errorf("%q: json tag of %s %v, schema property %v, written %v: want all three", p, rc.goType, inTags, inSchema, written)
			continue
		}
		if tag.isMap != s.isMap || tag.isMap != w.isMap {
			t.Errorf("%q: a map in %s %v, in the schema %v", p, rc.goType, tag.isMap, s.isMap)
		}
		if s.isMap && !slices.Equal(s.names, w.names) {
			t.Errorf("%q: the writer's keys %q, the schema's names %q", p, w.names, s.names)
		}
		if tag.omitempty == writtenMin && !underOmitted(tags, p) {
			t.Errorf("%q: omitempty %v, but written in the minimal record %v", p, tag.omitempty, writtenMin)
		}
		if want := !tag.omitempty && !tag.optional; s.required != want {
			t.Errorf("%q: required in the schema %v; want %v (omitempty %v, export:\"optional\" %v)", p, s.required, want, tag.omitempty, tag.optional)
		}
	}
}

// underOmitted tells whether a key lies inside one written only when set
// (a sample's "listeners"): the minimal record leaves out the whole
// object, so its own keys cannot be told apart there.
func underOmitted(tags map[string]keyInfo, path string) bool {
	for i := strings.LastIndexByte(path, '.'); i > 0; i = strings.LastIndexByte(path[:i], '.') {
		if tags[path[:i]].omitempty {
			return true
		}
	}
	return false
}
