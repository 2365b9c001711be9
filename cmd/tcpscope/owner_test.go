package main

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/netns"
	"github.com/tcpscope/tcpscope/tracer/nettest"
	"golang.org/x/sys/unix"
)

// TestRecordPIDFilter: record --pid, with --netns given as a namespace
// file, keeps this process's connections, both ends, to a listener it
// opened while traced and to one that predates the trace (whose owner
// tcpscope finds at start and tells the kernel), in both modes; another
// process's client end, in the same namespace, is left out (the server
// end it reaches is this process's, and kept).
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
	dialFromProcess(t, ns, postAddr.String())
	r.waitConnections(t, 5, 10*time.Second)
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
	want := map[string]int{"client to post": 1, "child of post": 2, "client to pre": 1, "child of pre": 1}
	for name, n := range want {
		if got[name] != n {
			t.Errorf("%s: %d records, want %d (all: %v)", name, got[name], n, got)
		}
	}
}

// dialFromProcess connects once to addr from another process (the client
// helper) in namespace ns, and waits for it to finish.
func dialFromProcess(t *testing.T, ns *netns.NS, addr string) {
	t.Helper()
	dup, err := unix.Dup(ns.Fd())
	if err != nil {
		t.Fatal(err)
	}
	nsFile := os.NewFile(uintptr(dup), "netns")
	defer nsFile.Close()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "TCPSCOPE_TEST_HELPER=client", "TCPSCOPE_ADDR="+addr, "TCPSCOPE_CONNS=1")
	cmd.ExtraFiles = []*os.File{nsFile}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the client process: %v\n%s", err, out)
	}
}
