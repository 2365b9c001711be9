package output

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/tracer"
)

// perfettoRecording: a client and its server end in one namespace (both
// traced: an arrow), an overlapping connection reset by its server, one of
// an unknown owner, and three samples: a listener's queue filling, a
// TIME_WAIT destination that drains.
func perfettoRecording() *Recording {
	t0 := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	at := func(ms float64) time.Time { return t0.Add(time.Duration(ms * float64(time.Millisecond))) }
	cli, srv := netip.MustParseAddrPort("10.0.0.2:40000"), netip.MustParseAddrPort("10.0.0.1:80")
	state := func(ms float64, from, to tracer.State) tracer.Item {
		return tracer.Item{At: at(ms), Kind: tracer.ItemState, From: from, To: to}
	}
	client := tracer.Connection{ID: 10, PeerID: 11, Role: tracer.RoleClient, Local: cli, Remote: srv, NetNS: 7, PID: 100, Comm: "wrk",
		Start: at(1), End: at(5), Outcome: tracer.OutcomeTimeWait, Flags: tracer.FlagsOf(tracer.FlagTimeWait, tracer.FlagSynRetransmitted),
		Timeline: []tracer.Item{state(1, tracer.StateClose, tracer.StateSynSent),
			{At: at(2), Kind: tracer.ItemRetransmit, State: tracer.StateSynSent},
			state(3, tracer.StateSynSent, tracer.StateEstablished), state(4, tracer.StateEstablished, tracer.StateFinWait1),
			state(4.5, tracer.StateFinWait1, tracer.StateFinWait2), state(5, tracer.StateFinWait2, tracer.StateClose),
			{At: at(5), Kind: tracer.ItemTimeWait, State: tracer.StateTimeWait, Detail: tracer.DetailTimeWaitHolds}}}
	server := tracer.Connection{ID: 11, PeerID: 10, Role: tracer.RoleServer, Local: srv, Remote: cli, NetNS: 7, PID: 200, Comm: "nginx",
		Start: at(2.9), End: at(5), Outcome: tracer.OutcomeClosed,
		Timeline: []tracer.Item{{At: at(2.9), Kind: tracer.ItemSynAck, State: tracer.StateSynRecv},
			state(3, tracer.StateListen, tracer.StateSynRecv), state(3, tracer.StateSynRecv, tracer.StateEstablished), state(4, tracer.StateEstablished, tracer.StateCloseWait),
			state(4.6, tracer.StateCloseWait, tracer.StateLastAck), state(5, tracer.StateLastAck, tracer.StateClose)}}
	reset := tracer.Connection{ID: 12, Role: tracer.RoleServer, Local: srv, Remote: netip.MustParseAddrPort("10.0.0.3:41000"), NetNS: 7,
		PID: 200, Comm: "nginx", Start: at(2), End: at(6), Outcome: tracer.OutcomeReset, Flags: tracer.FlagsOf(tracer.FlagResetSent),
		Timeline: []tracer.Item{state(2.5, tracer.StateSynRecv, tracer.StateEstablished),
			{At: at(6), Kind: tracer.ItemResetSent, State: tracer.StateEstablished, HasReason: true, Reason: rstReason("TCP_ABORT_ON_CLOSE")},
			state(6, tracer.StateEstablished, tracer.StateClose)}}
	orphan := tracer.Connection{ID: 13, Role: tracer.RoleClient, Local: cli, Remote: netip.MustParseAddrPort("10.0.0.9:9"),
		Start: at(1), End: at(1), Outcome: tracer.OutcomeRefused, Timeline: []tracer.Item{state(1, tracer.StateSynSent, tracer.StateClose)}}
	// An older record of the tuple the server's names its peer: not the
	// server's, so no arrow.
	stale := tracer.Connection{ID: 14, PeerID: 11, Role: tracer.RoleClient, Local: cli, Remote: srv, NetNS: 7, PID: 100, Comm: "wrk",
		Start: at(0.5), End: at(0.8), Outcome: tracer.OutcomeReset, Timeline: []tracer.Item{state(0.5, tracer.StateClose, tracer.StateSynSent)}}
	listener := SampleListener{NetNS: 7, Addr: "10.0.0.1", Port: 80, Backlog: 2}
	dest := SampleTimeWait{NetNS: 7, RemoteAddr: "10.0.0.1", RemotePort: 80, Count: 2}
	samples := []Sample{{Time: at(1000), IntervalMs: 1000, Opened: 4, Listeners: []SampleListener{listener}, TimeWait: []SampleTimeWait{dest}},
		{Time: at(2000), IntervalMs: 1000, Closed: 4, Listeners: []SampleListener{{NetNS: 7, Addr: "10.0.0.1", Port: 80, Queue: 3, PeakQueue: 3, Backlog: 2, OverflowDrops: 5}}},
		{Time: at(3000), IntervalMs: 1000}}
	return &Recording{Meta: Meta{FormatVersion: 1, Tcpscope: "test", Kernel: "6.18", Start: t0},
		Connections: []tracer.Connection{client, server, reset, orphan, stale},
		Listeners:   []ListenerRow{{ID: 1, NetNS: 7, Local: srv, PID: 200, Comm: "nginx", Backlog: 2}},
		Samples:     samples}
}

// decodedEvent is an event of a written trace, for the assertions.
type decodedEvent struct {
	Ph, Name, Cat, ID, BindID string
	Pid                       uint64
	Ts                        float64
	FlowIn, FlowOut           bool
	Args                      map[string]any
}

func decodeTrace(t *testing.T, data []byte) []decodedEvent {
	t.Helper()
	var doc struct {
		TraceEvents []struct {
			decodedEvent
			BindID  string `json:"bind_id"`
			FlowIn  bool   `json:"flow_in"`
			FlowOut bool   `json:"flow_out"`
		} `json:"traceEvents"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	out := make([]decodedEvent, len(doc.TraceEvents))
	for i, e := range doc.TraceEvents {
		out[i] = e.decodedEvent
		out[i].BindID, out[i].FlowIn, out[i].FlowOut = e.BindID, e.FlowIn, e.FlowOut
	}
	return out
}

// TestPerfettoTrace: what a user sees in Perfetto, event by event.
func TestPerfettoTrace(t *testing.T) {
	var buf bytes.Buffer
	if err := WritePerfetto(&buf, perfettoRecording()); err != nil {
		t.Fatal(err)
	}
	if err := ValidateTrace(buf.Bytes()); err != nil {
		t.Fatalf("invalid trace: %v\n%s", err, buf.String())
	}
	evs := decodeTrace(t, buf.Bytes())
	procs := map[uint64]string{}
	var slices0xa []string
	var out, in *decodedEvent
	for i := range evs {
		e := &evs[i]
		switch {
		case e.Ph == "M":
			procs[e.Pid] = e.Args["name"].(string)
		case e.Ph == "b" && e.ID == "0xa":
			slices0xa = append(slices0xa, e.Name)
		}
		if e.FlowOut {
			if out != nil {
				t.Errorf("a second flow out: %+v", e)
			}
			out = e
		}
		if e.FlowIn {
			if in != nil {
				t.Errorf("a second flow in: %+v", e)
			}
			in = e
		}
	}
	if procs[100] != "wrk/100" || procs[200] != "nginx/200" || procs[perfettoUnknownPID] != "owner unknown" {
		t.Errorf("processes %v", procs)
	}
	want := []string{"10.0.0.2:40000 -> 10.0.0.1:80 client time_wait", "SYN_SENT", "ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2"}
	if !slices.Equal(slices0xa, want) {
		t.Errorf("client slices %q, want %q", slices0xa, want)
	}
	if out == nil || in == nil || out.ID != "0xa" || in.ID != "0xb" || out.BindID != "0xa" || in.BindID != "0xa" || out.Ts > in.Ts {
		t.Errorf("flow from the client to its server end: out %+v, in %+v", out, in)
	}
	checkPerfettoStates(t, evs, "0xb", []string{"SYN_RECV 2900.001 2999.999", "ESTABLISHED 3000 3999.999", "CLOSE_WAIT 4000 4599.999", "LAST_ACK 4600 4999.999"})
	checkPerfettoInstants(t, evs)
	checkPerfettoCounters(t, evs)
}

// checkPerfettoStates: a connection's state slices, "NAME BEGIN END".
func checkPerfettoStates(t *testing.T, evs []decodedEvent, id string, want []string) {
	t.Helper()
	var got []string
	begun := map[string]float64{}
	for _, e := range evs {
		if e.ID != id || strings.Contains(e.Name, " ") {
			continue
		}
		switch e.Ph {
		case "b":
			begun[e.Name] = e.Ts
		case "e":
			got = append(got, fmt.Sprintf("%s %v %v", e.Name, begun[e.Name], e.Ts))
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("states of %s %q, want %q", id, got, want)
	}
}

func checkPerfettoInstants(t *testing.T, evs []decodedEvent) {
	t.Helper()
	var names []string
	for _, e := range evs {
		if e.Ph == "n" {
			names = append(names, e.ID+" "+e.Name)
			if e.Name == "reset_sent TCP_ABORT_ON_CLOSE" && (e.Args["reason"] != "TCP_ABORT_ON_CLOSE" || e.Ts != 5999.999) {
				t.Errorf("reset instant %+v: want its reason in args, at the last ns of its connection", e)
			}
		}
	}
	want := []string{"0xa retransmit", "0xa time_wait", "0xb synack", "0xc reset_sent TCP_ABORT_ON_CLOSE"}
	if !slices.Equal(names, want) {
		t.Errorf("instants %q, want %q", names, want)
	}
}

func checkPerfettoCounters(t *testing.T, evs []decodedEvent) {
	t.Helper()
	var conns, queue, tw []string
	for _, e := range evs {
		if e.Ph != "C" {
			continue
		}
		text := fmt.Sprintf("%gms %s", e.Ts/1000, jsonText(e.Args))
		switch {
		case e.Name == "connections":
			conns = append(conns, text)
		case strings.HasPrefix(e.Name, "accept queue 10.0.0.1:80 (netns 7)") && e.Pid == 200:
			queue = append(queue, text)
		case e.Name == "TIME_WAIT to 10.0.0.1:80 (netns 7)":
			tw = append(tw, text)
		}
	}
	// What happened in an interval starts with it; levels are at its end.
	wantConns := []string{`0ms {"closed":0,"flagged":0,"opened":4}`, `1000ms {"closed":4,"flagged":0,"opened":0}`, `2000ms {"closed":0,"flagged":0,"opened":0}`}
	if !slices.Equal(conns, wantConns) {
		t.Errorf("connections counters %q, want %q", conns, wantConns)
	}
	wantQueue := []string{`0ms {"overflow_drops":0,"peak":0}`, `1000ms {"backlog":2,"queue":0}`,
		`1000ms {"overflow_drops":5,"peak":3}`, `2000ms {"backlog":2,"queue":3}`,
		`2000ms {"overflow_drops":0,"peak":0}`, `3000ms {"queue":0}`}
	if !slices.Equal(queue, wantQueue) {
		t.Errorf("accept queue counters on the listener owner's track %q, want %q", queue, wantQueue)
	}
	if wantTW := []string{`1000ms {"count":2}`, `2000ms {"count":0}`}; !slices.Equal(tw, wantTW) {
		t.Errorf("TIME_WAIT counters %q, want %q (0 once the destination is gone)", tw, wantTW)
	}
}

// TestPerfettoTimeWaitUnknown: a destination missing from a sample whose
// list is full may only have dropped out of the busiest: no 0 for it
// until a sample with room says it is gone.
func TestPerfettoTimeWaitUnknown(t *testing.T) {
	t0 := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	full := make([]SampleTimeWait, tracer.MaxSampleTimeWait)
	for i := range full {
		full[i] = SampleTimeWait{NetNS: 1, RemoteAddr: "10.0.0.1", RemotePort: uint16(1000 + i), Count: 5}
	}
	rec := &Recording{Meta: Meta{FormatVersion: 1, Start: t0}, Samples: []Sample{
		{Time: t0.Add(time.Second), IntervalMs: 1000, TimeWait: []SampleTimeWait{{NetNS: 1, RemoteAddr: "10.0.0.9", RemotePort: 80, Count: 3}}},
		{Time: t0.Add(2 * time.Second), IntervalMs: 1000, TimeWait: full},
		{Time: t0.Add(3 * time.Second), IntervalMs: 1000}}}
	var buf bytes.Buffer
	if err := WritePerfetto(&buf, rec); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range decodeTrace(t, buf.Bytes()) {
		if e.Ph == "C" && e.Name == "TIME_WAIT to 10.0.0.9:80 (netns 1)" {
			got = append(got, fmt.Sprintf("%gms %s", e.Ts/1000, jsonText(e.Args)))
		}
	}
	if want := []string{`1000ms {"count":3}`, `3000ms {"count":0}`}; !slices.Equal(got, want) {
		t.Errorf("TIME_WAIT counters %q, want %q", got, want)
	}
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestValidateTraceRefuses: the checker finds each broken rule.
func TestValidateTraceRefuses(t *testing.T) {
	head := `{"displayTimeUnit":"ms","traceEvents":[{"ph":"M","name":"process_name","pid":1,"tid":1,"ts":0,"args":{"name":"p/1"}},`
	for name, events := range map[string]string{
		"unended":                 `{"ph":"b","name":"a","cat":"tcp","id":"0x1","pid":1,"tid":1,"ts":1}`,
		"crossed":                 `{"ph":"b","name":"a","cat":"tcp","id":"0x1","pid":1,"tid":1,"ts":1},{"ph":"b","name":"s","cat":"tcp","id":"0x1","pid":1,"tid":1,"ts":2},{"ph":"e","name":"a","cat":"tcp","id":"0x1","pid":1,"tid":1,"ts":3},{"ph":"e","name":"s","cat":"tcp","id":"0x1","pid":1,"tid":1,"ts":4}`,
		"backwards":               `{"ph":"b","name":"a","cat":"tcp","id":"0x1","pid":1,"tid":1,"ts":5},{"ph":"e","name":"a","cat":"tcp","id":"0x1","pid":1,"tid":1,"ts":4}`,
		"instant alone":           `{"ph":"n","name":"i","cat":"tcp","id":"0x1","pid":1,"tid":1,"ts":1}`,
		"no ts":                   `{"ph":"C","name":"c","pid":1,"tid":1,"args":{"v":1}}`,
		"text counter":            `{"ph":"C","name":"c","pid":1,"tid":1,"ts":1,"args":{"v":"x"}}`,
		"flow never in":           `{"ph":"b","name":"a","cat":"tcp","id":"0x1","pid":1,"tid":1,"ts":1,"bind_id":"0x1","flow_out":true},{"ph":"e","name":"a","cat":"tcp","id":"0x1","pid":1,"tid":1,"ts":2}`,
		"unnamed pid":             `{"ph":"C","name":"c","pid":2,"tid":2,"ts":1,"args":{"v":1}}`,
		"no cat":                  `{"ph":"b","name":"a","id":"0x1","pid":1,"tid":1,"ts":1},{"ph":"e","name":"a","id":"0x1","pid":1,"tid":1,"ts":2}`,
		"unknown phase":           `{"ph":"Q","name":"a","pid":1,"tid":1,"ts":1}`,
		"begin and end at one ts": `{"ph":"b","name":"a","cat":"tcp","id":"0x1","pid":1,"tid":1,"ts":1},{"ph":"b","name":"s","cat":"tcp","id":"0x1","pid":1,"tid":1,"ts":2},{"ph":"e","name":"s","cat":"tcp","id":"0x1","pid":1,"tid":1,"ts":2},{"ph":"e","name":"a","cat":"tcp","id":"0x1","pid":1,"tid":1,"ts":3}`,
		"end and begin at one ts": `{"ph":"b","name":"a","cat":"tcp","id":"0x1","pid":1,"tid":1,"ts":1},{"ph":"b","name":"s","cat":"tcp","id":"0x1","pid":1,"tid":1,"ts":2},{"ph":"e","name":"s","cat":"tcp","id":"0x1","pid":1,"tid":1,"ts":3},{"ph":"b","name":"t","cat":"tcp","id":"0x1","pid":1,"tid":1,"ts":3},{"ph":"e","name":"t","cat":"tcp","id":"0x1","pid":1,"tid":1,"ts":4},{"ph":"e","name":"a","cat":"tcp","id":"0x1","pid":1,"tid":1,"ts":5}`,
		"flow backwards":          `{"ph":"b","name":"a","cat":"tcp","id":"0x1","pid":1,"tid":1,"ts":5,"bind_id":"0x1","flow_out":true},{"ph":"e","name":"a","cat":"tcp","id":"0x1","pid":1,"tid":1,"ts":6},{"ph":"b","name":"b","cat":"tcp","id":"0x2","pid":1,"tid":1,"ts":1,"bind_id":"0x1","flow_in":true},{"ph":"e","name":"b","cat":"tcp","id":"0x2","pid":1,"tid":1,"ts":2}`,
	} {
		if err := ValidateTrace([]byte(head + events + "]}")); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := ValidateTrace([]byte(head + `{"ph":"C","name":"c","pid":1,"tid":1,"ts":1,"args":{"v":1}}]}`)); err != nil {
		t.Errorf("a valid trace refused: %v", err)
	}
}

// TestPerfettoFromExport: the trace of an export file, read twice, is the
// one of the recording in memory; a connection left out takes its arrow.
func TestPerfettoFromExport(t *testing.T) {
	rec := perfettoRecording()
	in := exportInput{conns: rec.Connections, meta: rec.Meta, listeners: rec.Listeners}
	for _, s := range rec.Samples {
		in.samples = append(in.samples, sampleFromRecord(s))
	}
	path := t.TempDir() + "/p.jsonl"
	writeSampled(t, path, in)
	read := func(o ReadOptions) (*Recording, error) { return ReadExportWith(path, o) }
	var fromFile, inMemory bytes.Buffer
	if err := PerfettoFromExport(&fromFile, read, nil); err != nil {
		t.Fatal(err)
	}
	back, err := ReadExport(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := WritePerfetto(&inMemory, back); err != nil {
		t.Fatal(err)
	}
	if fromFile.String() != inMemory.String() {
		t.Errorf("the trace of the file differs from the recording's:\n%s\n%s", fromFile.String(), inMemory.String())
	}
	var servers bytes.Buffer
	onlyServers := func(c *tracer.Connection) bool { return c.Role == tracer.RoleServer }
	if err := PerfettoFromExport(&servers, read, onlyServers); err != nil {
		t.Fatal(err)
	}
	if err := ValidateTrace(servers.Bytes()); err != nil {
		t.Errorf("servers only: %v", err)
	}
	if strings.Contains(servers.String(), "bind_id") || strings.Contains(servers.String(), "client") {
		t.Errorf("servers only: a client or an arrow to one is left:\n%s", servers.String())
	}
}

// sampleFromRecord converts a sample record back, for writing.
func sampleFromRecord(s Sample) tracer.Sample {
	out := tracer.Sample{Time: s.Time, Interval: time.Duration(s.IntervalMs) * time.Millisecond, Opened: s.Opened, Closed: s.Closed, Flagged: s.Flagged}
	for _, l := range s.Listeners {
		a, _ := netip.ParseAddr(l.Addr)
		out.Listeners = append(out.Listeners, tracer.ListenerSample{NetNS: l.NetNS, Local: netip.AddrPortFrom(a, l.Port), Queue: l.Queue,
			PeakQueue: l.PeakQueue, Backlog: l.Backlog, OverflowDrops: l.OverflowDrops})
	}
	for _, d := range s.TimeWait {
		out.TimeWait = append(out.TimeWait, tracer.TimeWaitCount{NetNS: d.NetNS, Remote: netip.AddrPortFrom(netip.MustParseAddr(d.RemoteAddr), d.RemotePort), Count: d.Count})
	}
	return out
}
