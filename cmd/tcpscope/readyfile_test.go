package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/output"
	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/nettest"
)

// TestReadyFileRun: run writes --ready-file, with tcpscope's pid, once
// tracing is attached and before it starts CMD, which reads it here; the
// "tracing" line came first.
func TestReadyFileRun(t *testing.T) {
	nettest.RequirePrivileges(t)
	dir := t.TempDir()
	ready, path := filepath.Join(dir, "ready"), filepath.Join(dir, "run.jsonl")
	var stdout, stderr lockedBuffer
	cmd := exec.Command(binary, "run", "--linger", "0s", "--ready-file", ready, "-o", path, "--", "cat", ready)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("tcpscope run: %v\n%s", err, stderr.String())
	}
	first, _, _ := strings.Cut(stdout.String(), "\n")
	if want := fmt.Sprint(cmd.Process.Pid); first != want {
		t.Errorf("CMD read %q from the ready file, want tcpscope's pid %s; stdout:\n%s", first, want, stdout.String())
	}
	if !strings.Contains(stderr.String(), "tracing (") {
		t.Errorf("no tracing line: %s", stderr.String())
	}
	if err := output.ValidateExport(path); err != nil {
		t.Errorf("export: %v", err)
	}
	if _, err := os.Stat(ready); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ready file still there after tracing ended: %v", err)
	}
}

// TestReadyFileRecord: a connection opened as soon as the ready file is
// there is recorded whole, from its handshake, on both ends.
func TestReadyFileRecord(t *testing.T) {
	nettest.RequirePrivileges(t)
	ns := nettest.New(t)
	r := startRecord(t, ns, "run.jsonl") // waits for --ready-file
	addr, _ := startServer(t, ns, "tcp4", "127.0.0.1:0", "client-closes", 1)
	dialClose(t, ns, addr, 1)
	r.waitConnections(t, 2, 30*time.Second)
	rec := r.stop(t)
	if len(rec.Connections) != 2 {
		t.Fatalf("%d connections, want the client and the server: %s", len(rec.Connections), dumpJSON(rec.Connections))
	}
	for _, c := range rec.Connections {
		if c.Has(tracer.FlagPreexisting) || c.Has(tracer.FlagIncomplete) {
			t.Errorf("connection not recorded from its start: %s", dumpJSON(c))
		}
	}
}
