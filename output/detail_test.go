package output

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tcpscope/tcpscope/tracer"
)

// The detail texts are part of the export: pinned here, one per detail.
func TestDetailTexts(t *testing.T) {
	for _, tc := range []struct {
		it   tracer.Item
		want string
	}{
		{tracer.Item{Kind: tracer.ItemError, Detail: tracer.DetailOwnAbort}, "set by this end's own abort (tcp_disconnect()); no process sees it"},
		{tracer.Item{Kind: tracer.ItemSynAck, Detail: tracer.DetailFirstSynAck}, "first SYN-ACK sent (request socket)"},
		{tracer.Item{Kind: tracer.ItemSynAckRetransmit, Detail: tracer.DetailSynAckNo, SynAckNo: 3}, "SYN-ACK #3"},
		{tracer.Item{Kind: tracer.ItemRetransmit, Detail: tracer.DetailResentSyn}, "SYN"},
		{tracer.Item{Kind: tracer.ItemRetransmit, Detail: tracer.DetailResentSyn, Errno: 1}, "SYN not sent"},
		{tracer.Item{Kind: tracer.ItemRetransmit, Detail: tracer.DetailResentSynAck}, "SYN-ACK"},
		{tracer.Item{Kind: tracer.ItemRetransmit, Detail: tracer.DetailResentFin}, "FIN"},
		{tracer.Item{Kind: tracer.ItemRetransmit, Detail: tracer.DetailResentData}, "data"},
		{tracer.Item{Kind: tracer.ItemRetransmit, Detail: tracer.DetailResentDataFin, Errno: 105}, "data, with FIN not sent"},
		{tracer.Item{Kind: tracer.ItemResetSent, Detail: tracer.DetailNoSocket}, "no socket"},
		{tracer.Item{Kind: tracer.ItemResetSent, Detail: tracer.DetailNoSocketSegment, Segment: tracer.TCPPsh | tracer.TCPAck}, "no socket for this PSH|ACK segment"},
		{tracer.Item{Kind: tracer.ItemResetSent, Detail: tracer.DetailNoSocketSegment, Segment: tracer.TCPAck, Effect: tracer.ResetDroppedRequest},
			"no socket for this ACK segment, which dropped the request"},
		{tracer.Item{Kind: tracer.ItemResetSent, Detail: tracer.DetailByListener}, "sent by the listener"},
		{tracer.Item{Kind: tracer.ItemResetSent, Detail: tracer.DetailByListener, Effect: tracer.ResetDroppedRequest}, "sent by the listener, which dropped the request"},
		{tracer.Item{Kind: tracer.ItemResetSent, Detail: tracer.DetailByListener, Effect: tracer.ResetAfterClose},
			"sent by the listener: answered a segment that came after the close"},
		{tracer.Item{Kind: tracer.ItemTimeWait, Detail: tracer.DetailTimeWaitHolds}, "holds its local port for 60s (TCP_TIMEWAIT_LEN)"},
		{tracer.Item{Kind: tracer.ItemTimeWait, Detail: tracer.DetailTimeWaitHanded}, "handed its local port to a timewait sock"},
		{tracer.Item{Kind: tracer.ItemTimeWaitKilled, Detail: tracer.DetailTimeWaitKill}, "a reset destroyed the timewait sock before its 60s: the port is free"},
		{tracer.Item{Kind: tracer.ItemListenOverflow, Detail: tracer.DetailOverflow}, "final ACK dropped: accept queue full"},
		{tracer.Item{Kind: tracer.ItemListenOverflow, Detail: tracer.DetailOverflowCookie}, "final ACK (SYN cookie) dropped: accept queue full"},
		{tracer.Item{Kind: tracer.ItemState}, ""},
	} {
		if got := DetailText(&tc.it); got != tc.want {
			t.Errorf("detail %d: %q, want %q", tc.it.Detail, got, tc.want)
		}
		back := tracer.Item{Kind: tc.it.Kind, Errno: tc.it.Errno}
		parseDetail(&back, tc.want)
		if back != tc.it {
			t.Errorf("%q reads back as %+v, want %+v", tc.want, back, tc.it)
		}
	}
	// A text this build does not write is kept whole.
	it := tracer.Item{Kind: tracer.ItemResetSent}
	for _, text := range []string{"sent by the listener, twice", "SYN-ACK #x", "no socket for this BOGUS segment", `a "quoted"\ text`} {
		parseDetail(&it, text)
		if it.Detail < tracer.DetailCount || DetailText(&it) != text {
			t.Errorf("%q reads back as detail %d %q", text, it.Detail, DetailText(&it))
		}
	}
}

// An export read back renders as it was written, byte for byte, names
// this kernel or build does not know included: reset reasons numbered
// differently on the recording's kernel, a flag, an item kind and a
// detail of a newer tcpscope.
func TestReadRenderRoundTrip(t *testing.T) {
	golden, err := os.ReadFile(filepath.Join("testdata", "builder-golden.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	foreign := strings.NewReplacer(
		`"reason":"NO_SOCKET"`, `"reason":"NO_SOCKET_ELSEWHERE"`,
		`"reason":"TCP_FLAGS"`, `"reason":"TCP_FLAGS_ELSEWHERE"`,
		`"flags":["time_wait"]`, `"flags":["time_wait","a_newer_flag"]`,
		`"kind":"synack","state":"SYN_RECV","detail":"first SYN-ACK sent (request socket)"`, `"kind":"a_newer_kind","state":"SYN_RECV","detail":"a newer detail"`,
	)
	var want bytes.Buffer
	want.WriteString(`{"type":"meta","format_version":1,"tcpscope":"test","kernel":"x","hostname":"h","start":"2026-11-21T12:00:00Z"}` + "\n")
	for _, line := range strings.Split(string(golden), "\n") {
		if line != "" && !strings.HasPrefix(line, "#") {
			want.WriteString(foreign.Replace(line) + "\n")
		}
	}
	for _, name := range []string{"NO_SOCKET_ELSEWHERE", "TCP_FLAGS_ELSEWHERE", "a_newer_flag", "a_newer_kind", "a newer detail"} {
		if !strings.Contains(want.String(), name) {
			t.Fatalf("the golden file has nothing to replace by %s", name)
		}
	}
	path := filepath.Join(t.TempDir(), "foreign.jsonl")
	if err := os.WriteFile(path, want.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	rec, err := ReadExport(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(want.String(), "\n")[1:]
	if len(rec.Connections) != len(lines)-1 {
		t.Fatalf("%d connections read, want %d", len(rec.Connections), len(lines)-1)
	}
	for i := range rec.Connections {
		got := string(AppendConnectionJSON(nil, &rec.Connections[i])) + "\n"
		if got != lines[i] {
			t.Errorf("connection %d renders\n%s want\n%s", i, got, lines[i])
		}
	}
}
