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
// file, keeps this process's connections: both ends of one to a listener
// it opened while traced, the client end only of one to its listener that
// predates the trace (the kernel cannot tell that listener's owner, and
// tcpscope warns so), and nothing else.
func TestRecordPIDFilter(t *testing.T) {
	ns := nettest.New(t)
	pre, err := ns.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pre.Close()
	nsFile := fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), ns.Fd())
	r := startRecord(t, nil, "pid.jsonl", "--netns", nsFile, "--pid", strconv.Itoa(os.Getpid()))
	preAddr := netip.MustParseAddrPort(pre.Addr().String())
	if want := fmt.Sprintf("warning: listener %s of ", preAddr); !strings.Contains(r.stderr.String(), want) {
		t.Errorf("stderr lacks %q:\n%s", want, r.stderr.String())
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
	r.waitConnections(t, 3, 10*time.Second)
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
		default:
			t.Errorf("connection the filter leaves out: %s", dumpJSON(c))
		}
		if c.PID != uint32(os.Getpid()) {
			t.Errorf("connection %s->%s owned by %d, want %d", c.Local, c.Remote, c.PID, os.Getpid())
		}
	}
	for _, want := range []string{"client to post", "child of post", "client to pre"} {
		if got[want] != 1 {
			t.Errorf("%s: %d records, want 1 (all: %v)", want, got[want], got)
		}
	}
}
