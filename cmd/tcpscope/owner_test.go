package main

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/nettest"
)

// TestRecordPIDFilter: record --pid, with --netns given as a namespace
// file, keeps this process's connections, both ends, to a listener it
// opened while traced and to one that predates the trace (whose owner
// tcpscope finds at start and tells the kernel), in both modes.
func TestRecordPIDFilter(t *testing.T) {
	for name, mode := range map[string][]string{"aggregated": nil, "events": {"--events"}} {
		t.Run(name, func(t *testing.T) { recordPIDFilter(t, mode) })
	}
}

func recordPIDFilter(t *testing.T, mode []string) {
	ns := nettest.New(t)
	pre, err := ns.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pre.Close()
	nsFile := fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), ns.Fd())
	r := startRecord(t, nil, "pid.jsonl", append([]string{"--netns", nsFile, "--pid", strconv.Itoa(os.Getpid())}, mode...)...)
	preAddr := netip.MustParseAddrPort(pre.Addr().String())
	if strings.Contains(r.stderr.String(), "warning") {
		t.Errorf("stderr warns:\n%s", r.stderr.String())
	}
	post, err := ns.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer post.Close()
	postAddr := netip.MustParseAddrPort(post.Addr().String())
	go acceptClose(pre)
	go acceptClose(post)
	dialClose(t, ns, postAddr.String(), 1)
	dialClose(t, ns, preAddr.String(), 1)
	r.waitConnections(t, 4, 10*time.Second)
	rec := r.stop(t)
	got := map[string]int{}
	for _, c := range rec.Connections {
		switch {
		case c.Role == tracer.RoleClient && c.Remote == postAddr:
			got["client to post"]++
		case c.Role == tracer.RoleServer && c.Local.Port() == postAddr.Port():
			got["child of post"]++
		case c.Role == tracer.RoleClient && c.Remote == preAddr:
			got["client to pre"]++
		case c.Role == tracer.RoleServer && c.Local.Port() == preAddr.Port():
			got["child of pre"]++
		default:
			t.Errorf("connection the filter leaves out: %s", dumpJSON(c))
		}
		if c.PID != uint32(os.Getpid()) {
			t.Errorf("connection %s->%s owned by %d, want %d", c.Local, c.Remote, c.PID, os.Getpid())
		}
	}
	for _, want := range []string{"client to post", "child of post", "client to pre", "child of pre"} {
		if got[want] != 1 {
			t.Errorf("%s: %d records, want 1 (all: %v)", want, got[want], got)
		}
	}
}
