package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/tcpscope/tcpscope/output"
	"github.com/tcpscope/tcpscope/tracer/netns"
	"github.com/tcpscope/tcpscope/tracer/nettest"
)

// serveAndDial accepts and closes connections on a new listener in ns,
// and opens and closes n to it.
func serveAndDial(t *testing.T, ns *netns.NS, n int) {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() (err error) { ln, err = net.Listen("tcp4", "127.0.0.1:0"); return }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go acceptClose(ln)
	dialClose(t, ns, ln.Addr().String(), n)
}

// decompressed writes the JSONL a .jsonl.zst holds to a .jsonl beside it.
func decompressed(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	plain, err := dec.DecodeAll(data, nil)
	if err != nil {
		t.Fatalf("decompressing %s: %v", path, err)
	}
	out := strings.TrimSuffix(path, ".zst")
	if err := os.WriteFile(out, plain, 0o600); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRecordCompressed: `record -o run.jsonl.zst` writes a zstd file (Ctrl-C
// completes it) whose records are the JSONL stream, and report prints the
// same for it as for that stream uncompressed.
func TestRecordCompressed(t *testing.T) {
	ns := nettest.New(t)
	r := startRecord(t, ns, "run.jsonl.zst")
	serveAndDial(t, ns, 5)
	r.waitConnections(t, 10, 20*time.Second)
	rec := r.stop(t) // validated against the schema
	if len(rec.Connections) < 10 || len(rec.Warnings(r.path)) != 0 {
		t.Fatalf("%s: %d connections, warnings %q; want both ends of 5, none", r.path, len(rec.Connections), rec.Warnings(r.path))
	}
	data, err := os.ReadFile(r.path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(data, []byte{0x28, 0xb5, 0x2f, 0xfd}) {
		t.Fatalf("%s starts with % x, not zstd's magic", r.path, data[:min(4, len(data))])
	}
	plain := decompressed(t, r.path)
	id := fmt.Sprint(rec.Connections[0].ID)
	for _, args := range [][]string{{}, {"--format", "json"}, {"--id", id}, {"--outcome", "closed"}} {
		want, err := runBinary(t, append([]string{"report", plain}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		got, err := runBinary(t, append([]string{"report", r.path}, args...)...)
		if err != nil || got != want {
			t.Errorf("report %s %v: %v\n%s\nwant, as for the .jsonl:\n%s", r.path, args, err, got, want)
		}
	}
}

// TestCompressedExportAfterKill: SIGKILL in the middle of a recording to
// a .jsonl.zst leaves a file that reads up to its last frame: report
// shows those connections and warns that the recording did not finish;
// --strict refuses it.
func TestCompressedExportAfterKill(t *testing.T) {
	ns := nettest.New(t)
	r := startRecord(t, ns, "run.jsonl.zst")
	serveAndDial(t, ns, 4)
	r.waitConnections(t, 8, 20*time.Second)
	serveAndDial(t, ns, 3) // still being written, perhaps, when killed
	r.cmd.Process.Kill()
	err := <-r.done
	r.done <- err
	rec, err := output.ReadExport(r.path)
	if err != nil {
		t.Fatalf("reading %s after SIGKILL: %v", r.path, err)
	}
	if rec.Summary != nil || len(rec.Connections) < 8 {
		t.Fatalf("%s after SIGKILL: %d connections, summary %v; want at least 8, none", r.path, len(rec.Connections), rec.Summary != nil)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(binary, "report", r.path)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || !strings.Contains(stderr.String(), r.path+" has no summary record: the recording did not finish") {
		t.Errorf("report %s after SIGKILL: %v, stderr %q", r.path, err, stderr.String())
	}
	if want := fmt.Sprintf("%d connections", len(rec.Connections)); !strings.Contains(stdout.String(), want) {
		t.Errorf("report %s after SIGKILL does not say %q:\n%s", r.path, want, stdout.String())
	}
	out, err := exec.Command(binary, "report", "--strict", r.path).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "no summary") {
		t.Errorf("report --strict %s after SIGKILL: %v: %s", r.path, err, out)
	}
	if entries, _ := os.ReadDir(filepath.Dir(r.path)); len(entries) != 1 {
		t.Errorf("left in the directory: %v, want only run.jsonl.zst", entries)
	}
}
