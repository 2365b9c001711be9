package main

import (
	"os"
	"path/filepath"
	"testing"
)

// The tally is what the table's "reported per conn" and "lost" columns
// come from: the records that crossed when the kernel aggregated, else the
// events; the losses of every line count, and so do the recursion guard's.
func TestTcpscopeTally(t *testing.T) {
	stderr := `tcpscope: tracing (7 tracepoints attached); Ctrl-C to stop
tcpscope: records: 200 (connection 200); lost 2
tcpscope: events: 12 (state 10, retransmit 2, synack_retransmit 0, reset_sent 0, reset_received 0, error 0, listen_overflow 0); lost 3
tcpscope: recursion misses: 4 (inet_sock_set_state 4, 3 handled nested, 1 lost, nested program's own misses 0); lost 1
tcpscope: wrote 200 connections to x.jsonl
`
	l := leg{}
	if err := tcpscopeTally(stderr, &l); err != nil {
		t.Fatal(err)
	}
	if l.items != 200 || l.lost != 6 || l.itemWord != "records" {
		t.Errorf("got %d %s, lost %d; want 200 records, lost 6", l.items, l.itemWord, l.lost)
	}
	l = leg{}
	if err := tcpscopeTally("tcpscope: events: 12 (state 12); lost 0\n", &l); err != nil || l.items != 12 || l.itemWord != "events" {
		t.Errorf("events only: got %d %s (%v); want 12 events", l.items, l.itemWord, err)
	}
	if err := tcpscopeTally("tcpscope: tracing\n", &leg{}); err == nil {
		t.Error("a recording without a tally line was accepted")
	}
}

func TestSkmemOfSS(t *testing.T) {
	out := "0      0      127.0.0.1:36372 127.0.0.1:34829\n\t skmem:(r0,rb131072,t0,tb3939840,f0,w0,o280,bl0,d0)\n" +
		"0      0      127.0.0.1:34829 127.0.0.1:36372\n\t skmem:(r0,rb131072,t0,tb3939840,f0,w0,o0,bl0,d0)\n"
	ms := skmemRE.FindAllStringSubmatch(out, -1)
	if len(ms) != 2 || ms[0][1] != "280" || ms[1][1] != "0" {
		t.Errorf("sk_omem_alloc of two sockets read as %q, want 280 and 0", ms)
	}
}

func TestCountLinesSkipsHeader(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out")
	body := "PID     COMM             LADDR           LPORT RADDR           RPORT TX_KB  RX_KB  MS\n" +
		"1234    curl             127.0.0.1       40000 127.0.0.1       80    0      0      0.10\n" +
		"1234    curl             127.0.0.1       40001 127.0.0.1       80    0      0      0.11\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	n, err := countLines(path)
	if err != nil || n != 2 {
		t.Errorf("countLines = %d, %v; want 2 lines", n, err)
	}
}

func TestSpreadFormat(t *testing.T) {
	if got := spreadOf([]float64{3, 1, 2, 10}).format(1); got != "2.5 (1.0–10.0)" {
		t.Errorf("median (min–max) of 1,2,3,10 = %q", got)
	}
	if got := spreadOf(nil).format(1); got != "-" {
		t.Errorf("no legs rendered %q, want -", got)
	}
}
