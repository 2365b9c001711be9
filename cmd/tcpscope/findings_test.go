package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/output"
	"github.com/tcpscope/tcpscope/tracer/findings"
	"github.com/tcpscope/tcpscope/tracer/nettest"
)

// setSysctls sets per-namespace settings inside a private namespace.
func setSysctls(t *testing.T, ns interface {
	Sysctl(name, value string) error
}, values map[string]string) {
	t.Helper()
	for k, v := range values {
		if err := ns.Sysctl(k, v); err != nil {
			t.Fatal(err)
		}
	}
}

// sysctlsOf are the summary's sysctls of one namespace, by name.
func sysctlsOf(rec *output.Recording, netnsIno uint32) map[string]string {
	out := map[string]string{}
	if rec.Summary == nil {
		return out
	}
	for _, s := range rec.Summary.Sysctls {
		if s.NetNS == netnsIno {
			out[s.Name] = s.Value
		}
	}
	return out
}

// TestRecordSysctls: a private namespace with non-default settings and a
// traced listener; the export's summary carries the namespace's values.
func TestRecordSysctls(t *testing.T) {
	t.Parallel()
	ns := nettest.New(t)
	want := map[string]string{
		findings.SomaxConn:       "7",
		findings.MaxSynBacklog:   "64",
		findings.Syncookies:      "2",
		findings.AbortOnOverflow: "1",
		findings.LocalPortRange:  "41000 41999",
		findings.TwReuse:         "0",
	}
	setSysctls(t, ns, want)
	r := startRecord(t, ns, "run.jsonl")
	ln := listenNS(t, ns, "tcp4", "127.0.0.1:0")
	c, err := dialNS(t, ns, "tcp4", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	s.Close()
	r.waitConnections(t, 2, 15*time.Second)
	rec := r.stop(t)
	got := sysctlsOf(rec, ns.Inode)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("sysctls of namespace %d: %v, want %v", ns.Inode, got, want)
	}
}
