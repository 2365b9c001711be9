package html

import (
	"bytes"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/output"
	"github.com/tcpscope/tcpscope/tracer"
)

var t0 = time.Date(2026, 12, 2, 14, 0, 0, 0, time.UTC)

// genConnection is the i-th connection of a generated load, every gap
// apart: clients and servers in turn, and every tenth one flagged in one
// of four ways (a reset with its reason, SYN retransmits, a refusal, an
// overflowing accept queue).
func genConnection(i int, gap time.Duration) tracer.Connection {
	start := t0.Add(time.Duration(i) * gap)
	c := tracer.Connection{ID: uint64(i + 1), Family: tracer.FamilyIPv4, NetNS: 4026531840, PID: 4242, Comm: "loadgen",
		Start: start, HandshakeUs: -1, SynRecvUs: -1}
	at := func(us int64) time.Time { return start.Add(time.Duration(us) * time.Microsecond) }
	state := func(us int64, from, to tracer.State) tracer.Item {
		return tracer.Item{At: at(us), OffsetUs: us, Kind: tracer.ItemState, From: from, To: to}
	}
	port := netip.AddrPortFrom(netip.MustParseAddr("10.1.0.2"), uint16(20000+i%30000))
	server := netip.MustParseAddrPort("10.1.0.1:8080")
	c.Role, c.Local, c.Remote, c.Outcome, c.ClosedBy = tracer.RoleClient, port, server, tracer.OutcomeTimeWait, tracer.ClosedByLocal
	c.HandshakeUs = int64(50 + i%200)
	c.Flags = tracer.FlagsOf(tracer.FlagTimeWait)
	c.Timeline = []tracer.Item{state(0, tracer.StateClose, tracer.StateSynSent),
		state(c.HandshakeUs, tracer.StateSynSent, tracer.StateEstablished),
		state(2000, tracer.StateEstablished, tracer.StateFinWait1), state(2100, tracer.StateFinWait1, tracer.StateFinWait2),
		state(2200, tracer.StateFinWait2, tracer.StateClose),
		{At: at(2200), OffsetUs: 2200, Kind: tracer.ItemTimeWait, State: tracer.StateTimeWait, Detail: tracer.DetailTimeWaitHolds}}
	c.DurationUs = 2200
	if i%2 == 1 {
		c.Role, c.Local, c.Remote, c.Outcome, c.ClosedBy, c.Comm = tracer.RoleServer, server, port, tracer.OutcomeClosed, tracer.ClosedByRemote, "server"
		c.HandshakeUs, c.SynRecvUs, c.Flags = -1, int64(30+i%100), 0
		c.Timeline = []tracer.Item{{At: start, Kind: tracer.ItemSynAck, State: tracer.StateSynRecv, Detail: tracer.DetailFirstSynAck},
			state(c.SynRecvUs, tracer.StateListen, tracer.StateSynRecv), state(c.SynRecvUs, tracer.StateSynRecv, tracer.StateEstablished),
			state(2100, tracer.StateEstablished, tracer.StateCloseWait), state(2150, tracer.StateCloseWait, tracer.StateLastAck),
			state(2200, tracer.StateLastAck, tracer.StateClose)}
	}
	if i%10 == 3 {
		flag(&c, i/10%4, at)
	}
	c.End = at(c.DurationUs)
	return c
}

// flag turns a client into one of four flagged connections.
func flag(c *tracer.Connection, kind int, at func(int64) time.Time) {
	switch kind {
	case 0:
		c.Outcome, c.Flags = tracer.OutcomeReset, tracer.FlagsOf(tracer.FlagResetReceived)
		c.Timeline = append(c.Timeline[:2:2], tracer.Item{At: at(900), OffsetUs: 900, Kind: tracer.ItemResetReceived, State: tracer.StateEstablished},
			tracer.Item{At: at(900), OffsetUs: 900, Kind: tracer.ItemState, From: tracer.StateEstablished, To: tracer.StateClose})
		c.DurationUs = 900
	case 1:
		c.Flags = c.Flags.With(tracer.FlagSynRetransmitted)
		c.Retransmits.Syn, c.HandshakeUs = 1, 1_000_300
		c.Timeline = []tracer.Item{c.Timeline[0],
			{At: at(1_000_000), OffsetUs: 1_000_000, Kind: tracer.ItemRetransmit, State: tracer.StateSynSent, Detail: tracer.DetailResentSyn},
			{At: at(1_000_300), OffsetUs: 1_000_300, Kind: tracer.ItemState, From: tracer.StateSynSent, To: tracer.StateEstablished, PrevStateUs: 1_000_300},
			{At: at(1_002_000), OffsetUs: 1_002_000, Kind: tracer.ItemState, From: tracer.StateEstablished, To: tracer.StateClose}}
		c.DurationUs, c.Outcome = 1_002_000, tracer.OutcomeClosed
	case 2:
		c.Outcome, c.Flags, c.HandshakeUs = tracer.OutcomeRefused, tracer.FlagsOf(tracer.FlagRefused, tracer.FlagResetReceived), -1
		c.Remote = netip.MustParseAddrPort("10.1.0.1:9999")
		c.Timeline = []tracer.Item{c.Timeline[0], {At: at(40), OffsetUs: 40, Kind: tracer.ItemResetReceived, State: tracer.StateSynSent},
			{At: at(40), OffsetUs: 40, Kind: tracer.ItemState, From: tracer.StateSynSent, To: tracer.StateClose}}
		c.DurationUs = 40
	default:
		c.Role, c.Comm, c.Flags = tracer.RoleServer, "server", tracer.FlagsOf(tracer.FlagResetSent)
		c.Local, c.Remote = c.Remote, c.Local
		c.Outcome, c.HandshakeUs, c.SynRecvUs = tracer.OutcomeReset, -1, 60
		c.Timeline = []tracer.Item{{At: at(0), Kind: tracer.ItemSynAck, State: tracer.StateSynRecv, Detail: tracer.DetailFirstSynAck},
			{At: at(60), OffsetUs: 60, Kind: tracer.ItemState, From: tracer.StateSynRecv, To: tracer.StateEstablished},
			{At: at(700), OffsetUs: 700, Kind: tracer.ItemState, From: tracer.StateEstablished, To: tracer.StateClose},
			{At: at(700), OffsetUs: 700, Kind: tracer.ItemResetSent, State: tracer.StateClose, HasReason: true, Reason: abortOnData()}}
		c.DurationUs = 700
	}
}

func abortOnData() tracer.RSTReason {
	r, ok := tracer.ParseRSTReason("TCP_ABORT_ON_DATA")
	if !ok {
		panic("TCP_ABORT_ON_DATA is not a reset reason")
	}
	return r
}

// render feeds conns to a report and returns the page.
func render(t testing.TB, opts Options, rec *output.Recording, conns ...tracer.Connection) string {
	t.Helper()
	r := New(opts)
	for i := range conns {
		if err := r.Connection(&conns[i]); err != nil {
			t.Fatal(err)
		}
	}
	if rec == nil {
		rec = &output.Recording{Meta: output.Meta{FormatVersion: 1, Start: t0}}
	}
	var b bytes.Buffer
	if err := r.Write(&b, rec); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func gen(n int, gap time.Duration) []tracer.Connection {
	out := make([]tracer.Connection, n)
	for i := range out {
		out[i] = genConnection(i, gap)
	}
	return out
}

var flaggedRow = regexp.MustCompile(`<div class="conn flagged"[^>]*data-id="(\d+)"`)

// TestPageDrawsEveryFlaggedConnection: under the cap every flagged
// connection has its row, its timeline and no cap note; the story names
// the counts and the reset's reason.
func TestPageDrawsEveryFlaggedConnection(t *testing.T) {
	conns := gen(400, 5*time.Millisecond)
	page := render(t, Options{}, nil, conns...)
	want := 0
	for i := range conns {
		if conns[i].Flagged() {
			want++
			if !strings.Contains(page, `data-id="`+itoa(conns[i].ID)+`"`) {
				t.Errorf("flagged connection %d has no row", conns[i].ID)
			}
		}
	}
	if got := len(flaggedRow.FindAllStringSubmatch(page, -1)); got != want || want != 40 {
		t.Errorf("%d flagged rows, want %d (40 generated)", got, want)
	}
	for _, s := range []string{"400 connections, 40 flagged", "TCP_ABORT_ON_DATA 10", `id="timelines"`, "Client handshake time", "Connections opened (up) and ended (down)"} {
		if !strings.Contains(page, s) {
			t.Errorf("page lacks %q", s)
		}
	}
	if strings.Contains(page, `id="cap-note"`) {
		t.Errorf("cap note with every flagged connection drawn")
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

// TestPageCapsTheWaterfall: over the cap, the page draws the cap and says
// how many it left out.
func TestPageCapsTheWaterfall(t *testing.T) {
	page := render(t, Options{MaxDrawn: 25, MaxOthers: 10}, nil, gen(2000, time.Millisecond)...)
	if got := len(flaggedRow.FindAllString(page, -1)); got != 25 {
		t.Errorf("%d flagged rows drawn, want the cap of 25", got)
	}
	if got := strings.Count(page, `<div class="conn other"`); got != 10 {
		t.Errorf("%d unflagged rows, want the cap of 10", got)
	}
	if !strings.Contains(page, "25 of the 200 flagged connections are drawn") {
		t.Errorf("no note of the cap")
	}
}

// TestPageEscapesWhatTheExportHolds: a process name is the recorded
// program's choice; it must stay text in the rows, the timelines' JSON and
// the tables.
func TestPageEscapesWhatTheExportHolds(t *testing.T) {
	const hostile = `</script><img src=x onerror=alert(1)>"'&`
	conns := gen(20, time.Millisecond)
	for i := range conns {
		conns[i].Comm = hostile
	}
	rec := &output.Recording{Meta: output.Meta{FormatVersion: 1, Start: t0, Command: []string{hostile}},
		Listeners: []output.ListenerRow{{ID: 1, Local: netip.MustParseAddrPort("10.1.0.1:8080"), PID: 1, Comm: hostile, Connections: 10}}}
	page := render(t, Options{Legend: []output.LegendRow{{Fault: hostile, Finding: hostile}}}, rec, conns...)
	for _, bad := range []string{"<img", "</script><", "onerror=alert(1)>"} {
		if strings.Contains(page, bad) {
			t.Errorf("page holds %q unescaped", bad)
		}
	}
	if !strings.Contains(page, `&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;`) {
		t.Errorf("the process name is not shown escaped")
	}
	if !strings.Contains(page, `\u003c/script\u003e\u003cimg`) {
		t.Errorf("the timelines' JSON does not escape the process name")
	}
	if got := strings.Count(page, "</script>"); got != 2 {
		t.Errorf("%d </script> in the page, want its own 2", got)
	}
}

// TestPageLoadsNothing: the page is one file: no URL to fetch, and a
// content security policy that forbids fetching anyway.
func TestPageLoadsNothing(t *testing.T) {
	page := render(t, Options{}, nil, gen(50, time.Millisecond)...)
	for _, s := range []string{"http://", "https://", " src=", "@import", "url("} {
		if strings.Contains(page, s) {
			t.Errorf("page holds %q", s)
		}
	}
	if !strings.Contains(page, `content="default-src 'none'`) {
		t.Errorf("no content security policy")
	}
}

// TestPageCommandAndStatus: run's command line and exit status show.
func TestPageCommandAndStatus(t *testing.T) {
	status := 3
	page := render(t, Options{Command: []string{"ab", "-n", "100", "http://10.1.0.1:8080/"}, ExitStatus: &status}, nil, gen(10, time.Millisecond)...)
	if !strings.Contains(page, `<code id="command">ab -n 100 http://10.1.0.1:8080/</code>, exit status <b id="exit-status">3</b>`) {
		t.Errorf("no command line and exit status")
	}
}

// TestPageSamples: with sample records the page draws the accept queue and
// TIME_WAIT per listener and destination; without, it says why not.
func TestPageSamples(t *testing.T) {
	conns := gen(200, 10*time.Millisecond)
	without := render(t, Options{}, nil, conns...)
	if !strings.Contains(without, "no sample records") || strings.Contains(without, "Accept queue per listener") {
		t.Errorf("without samples: no note, or a queue chart")
	}
	rec := &output.Recording{Meta: output.Meta{FormatVersion: 1, Start: t0}}
	for i := range 20 {
		rec.Samples = append(rec.Samples, output.Sample{Time: t0.Add(time.Duration(i+1) * 100 * time.Millisecond), IntervalMs: 100, Opened: 10, Closed: 10,
			Listeners: []output.SampleListener{{NetNS: 1, Addr: "10.1.0.1", Port: 8080, Queue: uint32(i % 5), Backlog: 4, OverflowDrops: uint64(i % 3)}},
			TimeWait:  []output.SampleTimeWait{{NetNS: 1, RemoteAddr: "10.1.0.1", RemotePort: 8080, Count: 10 * i}}})
	}
	with := render(t, Options{}, rec, conns...)
	for _, s := range []string{"Accept queue per listener", "10.1.0.1:8080 (netns 1)", "TIME_WAIT sockets per destination", "toward 10.1.0.1:8080 (netns 1), peak 190"} {
		if !strings.Contains(with, s) {
			t.Errorf("with samples: page lacks %q", s)
		}
	}
	if strings.Contains(with, "no sample records") {
		t.Errorf("with samples: still the note")
	}
}

// TestSegments: a server's bar starts in SYN_RECV at its first SYN-ACK,
// not at the child socket's LISTEN -> SYN_RECV.
func TestSegments(t *testing.T) {
	c := genConnection(1, time.Millisecond)
	got := segments(&c)
	want := []segment{{"SYN_RECV", 0, 31}, {"ESTABLISHED", 31, 2100}, {"CLOSE_WAIT", 2100, 2150}, {"LAST_ACK", 2150, 2200}}
	if len(got) != len(want) {
		t.Fatalf("segments %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("segment %d: %v, want %v", i, got[i], want[i])
		}
	}
}

// TestLargeRecording: a recording of 500,000 connections, 50,000 of them
// flagged, read from its export as `report --html -` reads it, gives a
// page under 20 MB that draws the capped waterfall. The export (555 MB)
// is written into a pipe as it is read, not to disk.
func TestLargeRecording(t *testing.T) {
	if testing.Short() {
		t.Skip("generates and reads an export of 500,000 connections")
	}
	pr, pw := io.Pipe()
	go func() {
		e, err := output.CreateExport("-", pw, output.Meta{Tcpscope: "test", Kernel: "6.18", Start: t0})
		if err == nil {
			err = fillExport(e, 500_000)
		}
		pw.CloseWithError(err)
	}()
	r, rec, err := Read("-", pr, true, Options{})
	pr.Close() // a writer still writing gets an error, not a block
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := r.Write(&b, rec); err != nil {
		t.Fatal(err)
	}
	t.Logf("page of 500,000 connections: %.1f MB", float64(b.Len())/1e6)
	if b.Len() > 20<<20 {
		t.Errorf("page of 500,000 connections is %d bytes, over 20 MiB", b.Len())
	}
	if got := len(flaggedRow.FindAllIndex(b.Bytes(), -1)); got != DefaultMaxDrawn {
		t.Errorf("%d flagged rows, want the cap %d", got, DefaultMaxDrawn)
	}
	if !bytes.Contains(b.Bytes(), []byte("1,000 of the 50,000 flagged connections are drawn")) {
		t.Errorf("no cap note")
	}
}

// writeExport writes n generated connections, 1.2 ms apart, with the
// recorder's writer.
func writeExport(tb testing.TB, n int) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "large.jsonl")
	e, err := output.CreateExport(path, nil, output.Meta{Tcpscope: "test", Kernel: "6.18", Start: t0})
	if err != nil {
		tb.Fatal(err)
	}
	if err := fillExport(e, n); err != nil {
		tb.Fatal(err)
	}
	return path
}

// fillExport writes n generated connections, 1.2 ms apart, and closes e.
func fillExport(e *output.Export, n int) error {
	s := tracer.NewStats()
	for i := range n {
		c := genConnection(i, 1200*time.Microsecond)
		s.Add(&c)
		if err := e.WriteConnection(&c); err != nil {
			e.Abort()
			return err
		}
	}
	return e.Close(s, output.Extra{End: s.End})
}

// BenchmarkLargeRecording: reading an export of 500,000 connections and
// rendering its page, as `report --html` does.
func BenchmarkLargeRecording(b *testing.B) {
	path := writeExport(b, 500_000)
	st, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(st.Size())
	b.ResetTimer()
	for b.Loop() {
		r, rec, err := Read(path, nil, true, Options{})
		if err != nil {
			b.Fatal(err)
		}
		var out bytes.Buffer
		if err := r.Write(&out, rec); err != nil {
			b.Fatal(err)
		}
	}
}
