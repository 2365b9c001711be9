package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/output"
	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/netns"
	"github.com/tcpscope/tcpscope/tracer/nettest"
	"golang.org/x/sys/unix"
)

// TestModesAgree: the aggregated mode (the default) and the per-event
// mode (--events) record the same traffic at the same time, two tcpscope
// processes side by side, and their exports agree field by field on every
// connection (socket cookies are the kernel's, so the ids are the same).
// Only times may differ, by the few microseconds one recorder's program
// runs before the other's on each tracepoint. The traffic covers a
// connection open before tracing started, plain exchanges, a refused
// connect, an abort on close, a socket port reused by a second connection,
// a SYN timeout, a connection with more events than a socket's storage
// holds (so its record is sent in parts), and one still open at the end.
func TestModesAgree(t *testing.T) {
	t.Parallel()
	ns := nettest.New(t)
	setSysctls(t, ns, map[string]string{"net.ipv4.tcp_syn_retries": "1"})
	echo := listenNS(t, ns, "tcp4", "127.0.0.1:0")
	go serveAll(echo, echoConn)
	before, err := dialNS(t, ns, "tcp4", echo.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	agg := startRecord(t, ns, "aggregated.jsonl")
	ev := startRecord(t, ns, "events.jsonl", "--events", "--format", "json")

	exchange(t, before)
	before.Close()
	for i := 0; i < 5; i++ {
		c, err := dialNS(t, ns, "tcp4", echo.Addr().String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		exchange(t, c)
		c.Close()
	}
	refused(t, ns)
	abortUnread(t, ns, func() (net.Listener, netip.AddrPort) {
		ln := listenNS(t, ns, "tcp4", "127.0.0.1:0")
		return ln, netipAddrPort(t, ln.Addr().String())
	})
	reusedPort(t, ns)
	bulkWithLosses(t, ns)
	synTimeout(t, ns)
	open, err := dialNS(t, ns, "tcp4", echo.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	exchange(t, open)
	halfClosed(t, ns)

	recAgg, recEv := agg.stop(t), ev.stop(t)
	compareModes(t, recAgg, recEv)
	// Records came at close, early, for full slots and from the walk (the
	// half-closed connection's ends at least); none was lost.
	if closed, early, full, open, lost := recordTally(t, agg.stderr.String()); closed == 0 || early == 0 || full == 0 || open < 2 || lost != 0 {
		t.Errorf("records: %d at close, %d early, %d for full slots, %d open at the end, %d lost", closed, early, full, open, lost)
	}
	bulk, outcomes := 0, map[tracer.Outcome]int{}
	for _, c := range recAgg.Connections {
		outcomes[c.Outcome]++
		if len(c.Timeline) > tracer.ConnSlots {
			bulk++
		}
	}
	t.Logf("%d connections compared, outcomes %v, %d with more than %d timeline entries",
		len(recAgg.Connections), outcomes, bulk, tracer.ConnSlots)
	if bulk == 0 {
		t.Errorf("no connection had more than %d timeline entries: the record-in-parts path went untested", tracer.ConnSlots)
	}
}

// TestWalkWithoutFilter: without --netns the end-of-recording walk finds
// by itself the namespaces with sockets to read, reads each once, and the
// half-closed connection left at the end is recorded once per end with its
// last state change, which only the walk could send.
func TestWalkWithoutFilter(t *testing.T) {
	t.Parallel()
	ns := nettest.New(t)
	r := startRecord(t, nil, "run.jsonl")
	client, server := halfClosed(t, ns)
	rec := r.stop(t)
	if _, _, _, open, lost := recordTally(t, r.stderr.String()); open < 2 || lost != 0 {
		t.Errorf("records: %d open at the end, %d lost; want at least the 2 half-closed ends, none lost", open, lost)
	}
	seen := map[uint64]int{}
	var ends []tracer.Connection
	for _, c := range rec.Connections {
		seen[c.ID]++
		if c.NetNS == ns.Inode && (c.Local == client || c.Local == server) {
			ends = append(ends, c)
		}
	}
	for id, n := range seen {
		if n > 1 {
			t.Errorf("connection %d written %d times", id, n)
		}
	}
	if len(ends) != 2 {
		t.Fatalf("%d records for the half-closed connection's ends, want 2:\n%s", len(ends), dumpJSON(ends))
	}
	for _, c := range ends {
		want := tracer.StateCloseWait
		if c.Local == client {
			want = tracer.StateFinWait2
		}
		last := c.Timeline[len(c.Timeline)-1]
		if c.Outcome != tracer.OutcomeOpen || last.Kind != tracer.ItemState || last.To != want {
			t.Errorf("%s end: outcome %s, last item %+v; want open, last state %s:\n%s", c.Role, c.Outcome, last, want, dumpJSON(c))
		}
	}
}

// recordTally reads the aggregated recorder's closing tally: records
// sent at close, early, of those for full slots, read by the walk, lost.
// It fails the test when storage could not be created.
func recordTally(t *testing.T, stderr string) (closed, early, full, open, lost int) {
	t.Helper()
	m := regexp.MustCompile(`records: \d+ \(at close (\d+), early (\d+) of which (\d+) for full slots, open at the end (\d+)\); lost (\d+)`).FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("no records tally on stderr:\n%s", stderr)
	}
	n := make([]int, len(m))
	for i := 1; i < len(m); i++ {
		n[i], _ = strconv.Atoi(m[i])
	}
	if strings.Contains(stderr, "socket storage could not be created") {
		t.Errorf("storage failures: %s", stderr)
	}
	return n[1], n[2], n[3], n[4], n[5]
}

// compareModes fails for every connection one export has and the other
// lacks, and for every field that differs.
func compareModes(t *testing.T, agg, ev *output.Recording) {
	t.Helper()
	byID := func(rec *output.Recording) map[uint64]map[string]any {
		out := map[uint64]map[string]any{}
		for i := range rec.Connections {
			var m map[string]any
			if err := json.Unmarshal(output.AppendConnectionJSON(nil, &rec.Connections[i]), &m); err != nil {
				t.Fatal(err)
			}
			out[rec.Connections[i].ID] = m
		}
		return out
	}
	a, e := byID(agg), byID(ev)
	if len(a) < 15 {
		t.Errorf("only %d connections in the aggregated export", len(a))
	}
	var ids []uint64
	for id := range a {
		ids = append(ids, id)
	}
	for id := range e {
		if _, ok := a[id]; !ok {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		x, okA := a[id]
		y, okE := e[id]
		switch {
		case !okA:
			t.Errorf("connection %d only in the per-event export: %v", id, y)
		case !okE:
			t.Errorf("connection %d only in the aggregated export: %v", id, x)
		default:
			open := x["outcome"] == "open"
			diffs := diffJSON("", x, y, open)
			for _, d := range diffs {
				t.Errorf("connection %d (%v %v): %s", id, x["role"], x["outcome"], d)
			}
			if len(diffs) > 0 {
				bx, _ := json.Marshal(x)
				by, _ := json.Marshal(y)
				t.Logf("aggregated: %s\nper-event:  %s", bx, by)
			}
		}
	}
}

// timeSlack is how far the two recorders' stamps of one kernel event may
// be apart: the other recorder's programs run in between.
const timeSlack = 20 * time.Millisecond

// diffJSON lists the differences between two decoded JSON values. Times
// ("at", "start", "end", *_until) and durations (*_us) may differ by
// timeSlack; a connection still open at the end was cut by each recorder's
// own stop, so its end and byte counters may differ too.
func diffJSON(path string, x, y any, open bool) []string {
	key := path[strings.LastIndexByte(path, '.')+1:]
	switch {
	case open && (key == "end" || key == "duration_us" || strings.HasPrefix(key, "bytes_")):
		return nil
	case key == "at" || key == "start" || key == "end" || strings.HasSuffix(key, "_until"):
		tx, errX := time.Parse(time.RFC3339Nano, fmt.Sprint(x))
		ty, errY := time.Parse(time.RFC3339Nano, fmt.Sprint(y))
		if errX == nil && errY == nil && (tx.Sub(ty) <= timeSlack && ty.Sub(tx) <= timeSlack) {
			return nil
		}
	case strings.HasSuffix(key, "_us"):
		fx, okX := x.(float64)
		fy, okY := y.(float64)
		if okX && okY && fx-fy <= float64(timeSlack.Microseconds()) && fy-fx <= float64(timeSlack.Microseconds()) {
			return nil
		}
	}
	mx, okX := x.(map[string]any)
	my, okY := y.(map[string]any)
	if okX && okY {
		var out []string
		keys := map[string]bool{}
		for k := range mx {
			keys[k] = true
		}
		for k := range my {
			keys[k] = true
		}
		for k := range keys {
			out = append(out, diffJSON(path+"."+k, mx[k], my[k], open)...)
		}
		sort.Strings(out)
		return out
	}
	lx, okX := x.([]any)
	ly, okY := y.([]any)
	if okX && okY && len(lx) == len(ly) {
		var out []string
		for i := range lx {
			out = append(out, diffJSON(fmt.Sprintf("%s[%d]", path, i), lx[i], ly[i], open)...)
		}
		return out
	}
	bx, _ := json.Marshal(x)
	by, _ := json.Marshal(y)
	if bytes.Equal(bx, by) {
		return nil
	}
	return []string{fmt.Sprintf("%s: aggregated %s, per-event %s", path, bx, by)}
}

func serveAll(ln net.Listener, serve func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go serve(c)
	}
}

func echoConn(c net.Conn) {
	defer c.Close()
	io.Copy(c, c)
}

// exchange sends a line and waits for its echo.
func exchange(t *testing.T, c net.Conn) {
	t.Helper()
	if _, err := c.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
}

// refused connects to a port nothing listens on.
func refused(t *testing.T, ns *netns.NS) {
	t.Helper()
	ln := listenNS(t, ns, "tcp4", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	if c, err := dialNS(t, ns, "tcp4", addr, 5*time.Second); err == nil {
		c.Close()
		t.Fatalf("connect to closed %s succeeded", addr)
	}
}

// reusedPort: two connections, one after the other, from the same local
// port to the same server: one tuple, two sockets (two cookies). The
// server closes first, so the client leaves no TIME_WAIT behind.
func reusedPort(t *testing.T, ns *netns.NS) {
	t.Helper()
	ln := listenNS(t, ns, "tcp4", "127.0.0.1:0")
	go serveAll(ln, func(c net.Conn) { c.Close() })
	var local string
	for i := 0; i < 2; i++ {
		var c net.Conn
		err := ns.Do(func() error {
			d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
				var serr error
				rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1) })
				return serr
			}}
			if local != "" {
				d.LocalAddr = net.TCPAddrFromAddrPort(netip.MustParseAddrPort(local))
			}
			var err error
			c, err = d.DialContext(context.Background(), "tcp4", ln.Addr().String())
			return err
		})
		if err != nil {
			t.Fatalf("connection %d from %q: %v", i+1, local, err)
		}
		local = c.LocalAddr().String()
		io.Copy(io.Discard, c) // until the server's FIN
		c.Close()
	}
}

// bulkWithLosses sends 8 MiB while one segment in five toward the server
// is dropped: the retransmits give the client more events than its socket
// storage holds.
func bulkWithLosses(t *testing.T, ns *netns.NS) {
	t.Helper()
	ln := listenNS(t, ns, "tcp4", "127.0.0.1:0")
	done := make(chan struct{})
	go func() {
		defer close(done)
		if c, err := ln.Accept(); err == nil {
			io.Copy(io.Discard, c)
			c.Close()
		}
	}()
	to := netipAddrPort(t, ln.Addr().String())
	c, err := dialNS(t, ns, "tcp4", to.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	remove, err := ns.AddDrop(netns.Drop{DstPort: to.Port(), Input: true, Every: 5})
	if err != nil {
		t.Fatal(err)
	}
	c.SetWriteDeadline(time.Now().Add(30 * time.Second))
	_, werr := c.Write(make([]byte, 8<<20))
	if err := remove(); err != nil {
		t.Fatal(err)
	}
	if werr != nil {
		t.Fatal(werr)
	}
	c.Close()
	<-done
}

// halfClosed leaves a connection half closed at the end: the client shut
// its side (FIN_WAIT2), the server read the FIN and holds its side open
// (CLOSE_WAIT). Both ends changed state after their early record, so the
// end-of-recording walk sends their records. It returns once the client is
// in FIN_WAIT2 (the server's ACK of the FIN may be delayed).
func halfClosed(t *testing.T, ns *netns.NS) (client, server netip.AddrPort) {
	t.Helper()
	ln := listenNS(t, ns, "tcp4", "127.0.0.1:0")
	eof := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(eof)
			return
		}
		io.Copy(io.Discard, c)
		eof <- c
	}()
	c, err := dialNS(t, ns, "tcp4", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	s, ok := <-eof
	if !ok {
		t.Fatal("the half-closed connection was not accepted")
	}
	t.Cleanup(func() { s.Close() })
	client, server = netipAddrPort(t, c.LocalAddr().String()), netipAddrPort(t, s.LocalAddr().String())
	deadline := time.Now().Add(10 * time.Second)
	for tick := time.NewTicker(10 * time.Millisecond); ; <-tick.C {
		socks, err := ns.TCPSockets(1 << tracer.StateFinWait2)
		if err != nil {
			t.Fatal(err)
		}
		for _, so := range socks {
			if so.Local == client {
				tick.Stop()
				return client, server
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("client %s not in FIN_WAIT2 after 10s", client)
		}
	}
}

// synTimeout connects where every SYN is dropped: with tcp_syn_retries 1
// the connect fails after about 3 s (ETIMEDOUT).
func synTimeout(t *testing.T, ns *netns.NS) {
	t.Helper()
	ln := listenNS(t, ns, "tcp4", "127.0.0.1:0")
	to := netipAddrPort(t, ln.Addr().String())
	remove, err := ns.AddDrop(netns.Drop{DstPort: to.Port(), FlagMask: netns.FlagSYN | netns.FlagACK, Flags: netns.FlagSYN, Input: true})
	if err != nil {
		t.Fatal(err)
	}
	defer remove()
	if c, err := dialNS(t, ns, "tcp4", to.String(), 10*time.Second); err == nil {
		c.Close()
		t.Fatal("connect with every SYN dropped succeeded")
	}
}
