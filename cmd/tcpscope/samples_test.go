package main

import (
	"bytes"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/output"
	"github.com/tcpscope/tcpscope/tracer/netns"
	"github.com/tcpscope/tcpscope/tracer/nettest"
)

// readThenClose accepts connections and closes each once its client has:
// the client closes first and keeps the TIME_WAIT.
func readThenClose(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			io.Copy(io.Discard, c)
			c.Close()
		}()
	}
}

// TestSampleRecords: a recording with a listener whose tiny accept queue
// overflows and clients that close first into TIME_WAIT. Its sample
// records add up to its connection records, show the full queue and the
// drops of that listener, and the TIME_WAIT sockets toward the other.
func TestSampleRecords(t *testing.T) {
	t.Parallel()
	ns := nettest.New(t)
	if err := ns.Sysctl("net.ipv4.tcp_syncookies", "0"); err != nil {
		t.Fatal(err)
	}
	trace := filepath.Join(t.TempDir(), "run.trace.json")
	r := startRecord(t, ns, "run.jsonl", "--sample-interval", "500ms", "--perfetto", trace)
	full, err := ns.ListenBacklog(0, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer full.Close()
	tw := listenNS(t, ns, "tcp4", "127.0.0.1:0")
	go readThenClose(tw)
	before, _ := ns.Counters()
	const overflowing, closing = 8, 5
	closeAll := connectAll(t, ns, netns.AddrPort(full), overflowing)
	waitCounter(t, ns, before, "TcpExt.ListenOverflows", overflowing-3, 10*time.Second)
	dialClose(t, ns, tw.Addr().String(), closing)
	// Written a grace second after their close: samples were taken
	// meanwhile, with the queue still full.
	r.waitConnections(t, 2*closing, 10*time.Second)
	closeAll()
	rec := r.stop(t)
	if len(rec.Samples) < 2 {
		t.Fatalf("%d samples: %s", len(rec.Samples), dumpJSON(rec.Samples))
	}
	t.Logf("%d connections, samples:\n%s", len(rec.Connections), dumpJSON(rec.Samples))
	checkSampleCounts(t, rec)
	checkSampleQueue(t, rec, uint16(netns.AddrPort(full).Port()))
	checkSampleTimeWait(t, rec, uint16(netns.AddrPort(tw).Port()))
	checkPerfetto(t, r.path, trace, rec)
}

// checkPerfetto: record's --perfetto trace is the one report --format
// perfetto writes of the export; it follows the trace-event rules, draws
// an arrow for each connection whose two ends were traced, and has the
// accept queue's and TIME_WAIT's counters.
func checkPerfetto(t *testing.T, export, trace string, rec *output.Recording) {
	t.Helper()
	written, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	if err := output.ValidateTrace(written); err != nil {
		t.Fatalf("record --perfetto: %v", err)
	}
	out, err := exec.Command(binary, "report", export, "--format", "perfetto").Output()
	if err != nil {
		t.Fatalf("report --format perfetto: %v", err)
	}
	if !bytes.Equal(out, written) {
		t.Errorf("report --format perfetto differs from record --perfetto")
	}
	pairs := 0
	for i := range rec.Connections {
		if rec.Connections[i].PeerID != 0 {
			pairs++
		}
	}
	text := string(written)
	flows := strings.Count(text, `"flow_out":true`) + strings.Count(text, `"flow_in":true`)
	if pairs == 0 || flows != pairs || !strings.Contains(text, `"name":"accept queue 127.0.0.1:`) ||
		!strings.Contains(text, `"queue":3`) || !strings.Contains(text, `"name":"TIME_WAIT to 127.0.0.1:`) {
		t.Errorf("trace: %d flow ends for %d connections with a traced peer, or a counter missing", flows, pairs)
	}
}

// checkSampleCounts: opened and closed sum to the connection records,
// outcomes to closed, flagged to the flagged records; every interval but
// the last is at least the one asked for.
func checkSampleCounts(t *testing.T, rec *output.Recording) {
	t.Helper()
	var opened, closed, flagged uint64
	for i, s := range rec.Samples {
		opened += s.Opened
		closed += s.Closed
		flagged += s.Flagged
		var byOutcome uint64
		for _, n := range s.ClosedByOutcome {
			byOutcome += n
		}
		if byOutcome != s.Closed {
			t.Errorf("sample %d: outcomes sum to %d, closed %d", i, byOutcome, s.Closed)
		}
		if i < len(rec.Samples)-1 && s.IntervalMs < 500 {
			t.Errorf("sample %d: interval %d ms, asked for 500", i, s.IntervalMs)
		}
	}
	var want uint64
	for i := range rec.Connections {
		if rec.Connections[i].Flagged() {
			want++
		}
	}
	n := uint64(len(rec.Connections))
	if opened != n || closed != n || flagged != want {
		t.Errorf("samples: %d opened, %d closed, %d flagged; the export holds %d connections, %d flagged", opened, closed, flagged, n, want)
	}
}

// checkSampleQueue: the overflowing listener shows a full queue in some
// sample, and its drops over the samples are the listener record's.
func checkSampleQueue(t *testing.T, rec *output.Recording, port uint16) {
	t.Helper()
	var peak uint32
	var drops uint64
	for _, s := range rec.Samples {
		for _, l := range s.Listeners {
			if l.Port == port {
				peak = max(peak, l.PeakQueue)
				drops += l.OverflowDrops
			}
		}
	}
	var row *output.ListenerRow
	for i := range rec.Listeners {
		if rec.Listeners[i].Local.Port() == port {
			row = &rec.Listeners[i]
		}
	}
	if row == nil {
		t.Fatalf("no listener record for port %d", port)
	}
	if want := max(row.Overflows, row.OverflowsAttributed); peak != 3 || drops == 0 || drops != want {
		t.Errorf("listener :%d in the samples: peak queue %d (want 3, backlog 2 + 1), %d drops (want the record's %d > 0)", port, peak, drops, want)
	}
}

// checkSampleTimeWait: the last sample counts every client that closed
// into TIME_WAIT toward the other listener.
func checkSampleTimeWait(t *testing.T, rec *output.Recording, port uint16) {
	t.Helper()
	var want int
	for i := range rec.Connections {
		c := &rec.Connections[i]
		if c.Remote.Port() == port && c.Outcome.String() == "time_wait" {
			want++
		}
	}
	last := rec.Samples[len(rec.Samples)-1]
	got := 0
	for _, d := range last.TimeWait {
		if d.RemotePort == port {
			got += d.Count
		}
	}
	if want == 0 || got != want {
		t.Errorf("TIME_WAIT toward :%d in the last sample %d, %d clients closed into it: %s", port, got, want, dumpJSON(last.TimeWait))
	}
}
