package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/output"
	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/nettest"
)

// collectorDir is the separate Go module of the test collector.
const collectorDir = "../internal/otelcol"

var (
	collectorOnce sync.Once
	collectorBin  string
	collectorErr  error
)

// collectorBinary builds cmd/internal/otelcol once per test binary, into a
// directory of the system's temp dir named after the module's sources, so
// later runs reuse it until go.mod, go.sum or main.go change. Outside CI a
// collector that cannot be built skips the test; under CI=true it fails.
func collectorBinary(t *testing.T) string {
	t.Helper()
	collectorOnce.Do(func() { collectorBin, collectorErr = buildCollector() })
	if collectorErr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("building the OpenTelemetry collector: %v", collectorErr)
		}
		t.Skipf("building the OpenTelemetry collector: %v", collectorErr)
	}
	return collectorBin
}

func buildCollector() (string, error) {
	h := sha256.New()
	for _, f := range []string{"go.mod", "go.sum", "main.go"} {
		b, err := os.ReadFile(filepath.Join(collectorDir, f))
		if err != nil {
			return "", fmt.Errorf("reading the collector's sources: %w", err)
		}
		h.Write(b)
	}
	bin := filepath.Join(os.TempDir(), "tcpscope-otelcol-"+hex.EncodeToString(h.Sum(nil))[:16], "otelcol")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	// Built beside and renamed: a build cut short leaves no binary that
	// a later run would take for whole.
	tmp := bin + ".tmp"
	cmd := exec.Command(goTool(), "build", "-o", tmp, ".")
	cmd.Dir = collectorDir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build in %s: %w\n%s", collectorDir, err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", fmt.Errorf("placing the collector: %w", err)
	}
	return bin, nil
}

// freePort is a port nothing listens on at 127.0.0.1 right now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startCollector runs the collector with its OTLP/HTTP receiver on a free
// port of 127.0.0.1 and file exporters writing logs.json and metrics.json
// in the returned dir (OTLP JSON, a line per export request). It returns
// once the receiver accepts connections.
func startCollector(t *testing.T) (endpoint, dir string) {
	t.Helper()
	bin := collectorBinary(t)
	dir = t.TempDir()
	port := freePort(t)
	// No telemetry server: its default port would clash between runs.
	config := fmt.Sprintf(`receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:%d
exporters:
  file/logs:
    path: %s/logs.json
  file/metrics:
    path: %s/metrics.json
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [file/logs]
    metrics:
      receivers: [otlp]
      exporters: [file/metrics]
`, port, dir, dir)
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	stderr := &lockedBuffer{}
	cmd := exec.Command(bin, "--config", cfg)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill(); <-done })
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	waitFor(t, 30*time.Second, done, stderr, "the collector's receiver", func() bool {
		c, err := net.Dial("tcp4", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return "http://" + addr, dir
}

// waitFor polls ok until it holds, failing when the process behind done
// exits first or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, done chan error, stderr fmt.Stringer, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !ok() {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("waiting for %s: the collector exited (%v): %s", what, err, stderr.String())
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s after %v: %s", what, timeout, stderr.String())
		}
	}
}

// otlpLog is one log record as the file exporter wrote it, with its
// resource's attributes; attribute values as strings (OTLP JSON writes
// 64-bit integers as strings too).
type otlpLog struct {
	resource map[string]string
	attrs    map[string]string
	body     string
}

// readOTLPLogs reads the file exporter's output; a last line still being
// written is left for the next poll.
func readOTLPLogs(t *testing.T, path string) []otlpLog {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var logs []otlpLog
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		var req otlpRequest
		if json.Unmarshal(sc.Bytes(), &req) != nil {
			break
		}
		for _, rl := range req.ResourceLogs {
			for _, sl := range rl.ScopeLogs {
				for _, lr := range sl.LogRecords {
					logs = append(logs, otlpLog{resource: attrMap(rl.Resource.Attributes), attrs: attrMap(lr.Attributes), body: lr.Body.String()})
				}
			}
		}
	}
	return logs
}

type otlpRequest struct {
	ResourceLogs []struct {
		Resource  struct{ Attributes []otlpAttr }
		ScopeLogs []struct {
			LogRecords []struct {
				Body       otlpValue
				Attributes []otlpAttr
			}
		}
	}
}

type otlpAttr struct {
	Key   string
	Value otlpValue
}

type otlpValue struct {
	StringValue *string
	IntValue    *string
	ArrayValue  *struct{ Values []otlpValue }
}

func (v otlpValue) String() string {
	switch {
	case v.StringValue != nil:
		return *v.StringValue
	case v.IntValue != nil:
		return *v.IntValue
	case v.ArrayValue != nil:
		s := make([]string, len(v.ArrayValue.Values))
		for i, e := range v.ArrayValue.Values {
			s[i] = e.String()
		}
		return strings.Join(s, ",")
	}
	return ""
}

func attrMap(kvs []otlpAttr) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		m[kv.Key] = kv.Value.String()
	}
	return m
}

// TestRecordOTLP records real traffic in a private namespace with
// --otlp-endpoint pointing at a real OpenTelemetry Collector and checks
// that the collector received one log record per exported connection,
// with the connection as its body and the right attributes, and the
// connection counts as metrics.
func TestRecordOTLP(t *testing.T) {
	t.Parallel()
	nettest.RequirePrivileges(t)
	endpoint, dir := startCollector(t)
	logs := filepath.Join(dir, "logs.json")
	ns := nettest.New(t)
	r := startRecord(t, ns, "run.jsonl", "--otlp-endpoint", endpoint)
	addr, _ := startServer(t, ns, "tcp4", "127.0.0.1:0", "client-closes", 3)
	dialClose(t, ns, addr, 3)
	if _, err := dialNS(t, ns, "tcp4", "127.0.0.1:9", 5*time.Second); err == nil {
		t.Fatal("connect to port 9 succeeded")
	}
	r.waitConnections(t, 7, 15*time.Second)
	rec := r.stop(t)
	var got []otlpLog
	waitFor(t, 30*time.Second, make(chan error, 1), &lockedBuffer{}, "log record per connection", func() bool {
		got = readOTLPLogs(t, logs)
		return len(got) >= len(rec.Connections)
	})
	if len(got) != len(rec.Connections) {
		t.Fatalf("%d log records for %d connections", len(got), len(rec.Connections))
	}
	byID := map[string]otlpLog{}
	for _, l := range got {
		byID[l.attrs["tcpscope.connection.id"]] = l
	}
	host, _ := os.Hostname()
	refused := 0
	for i := range rec.Connections {
		c := &rec.Connections[i]
		l, ok := byID[strconv.FormatUint(c.ID, 10)]
		if !ok {
			t.Errorf("no log record for connection %d", c.ID)
			continue
		}
		checkOTLPAttrs(t, c, l)
		if c.Outcome == tracer.OutcomeRefused && c.Role == tracer.RoleClient {
			refused++
		}
		want := map[string]string{"service.name": "tcpscope", "host.name": host, "tcpscope.netns": strconv.FormatUint(uint64(ns.Inode), 10)}
		for k, v := range want {
			if l.resource[k] != v {
				t.Errorf("connection %d: resource %s = %q, want %q", c.ID, k, l.resource[k], v)
			}
		}
	}
	if refused != 1 {
		t.Errorf("%d refused client records, want 1", refused)
	}
	if d := rec.Summary.OTLPDropped; d == nil || *d != 0 {
		t.Errorf("summary otlp_dropped_records %v, want 0", d)
	}
	checkOTLPMetrics(t, filepath.Join(dir, "metrics.json"), rec)
}

// checkOTLPMetrics waits until the collector's last tcpscope.connections
// export counts every connection of the export, by role, outcome and
// error.type.
func checkOTLPMetrics(t *testing.T, path string, rec *output.Recording) {
	t.Helper()
	want := map[string]int{}
	for i := range rec.Connections {
		c := &rec.Connections[i]
		e := ""
		if c.Outcome == tracer.OutcomeRefused {
			e = "refused"
		}
		want[c.Role.String()+"/"+c.Outcome.String()+"/"+e]++
	}
	var got map[string]int
	waitFor(t, 30*time.Second, make(chan error, 1), &lockedBuffer{}, "tcpscope.connections counting every connection", func() bool {
		got = otlpConnectionCounts(t, path)
		return maps.Equal(got, want)
	})
}

// checkOTLPAttrs compares a log record with the export's connection.
func checkOTLPAttrs(t *testing.T, c *tracer.Connection, l otlpLog) {
	t.Helper()
	var body output.ConnectionRecord
	if err := json.Unmarshal([]byte(l.body), &body); err != nil || body.ID != c.ID || len(body.Timeline) != len(c.Timeline) {
		t.Errorf("connection %d: body %q (%v) is not its record", c.ID, l.body, err)
	}
	client, server := c.Local, c.Remote
	if c.Role == tracer.RoleServer {
		client, server = c.Remote, c.Local
	}
	want := map[string]string{
		"network.transport": "tcp", "network.type": "ipv4", "tcpscope.role": c.Role.String(), "tcpscope.outcome": c.Outcome.String(),
		"client.address": client.Addr().String(), "client.port": strconv.Itoa(int(client.Port())),
		"server.address": server.Addr().String(), "server.port": strconv.Itoa(int(server.Port())),
		"network.peer.address": c.Remote.Addr().String(), "error.type": "",
	}
	if c.Outcome == tracer.OutcomeRefused {
		want["error.type"] = "refused"
	}
	for k, v := range want {
		if l.attrs[k] != v {
			t.Errorf("connection %d (%s %s): %s = %q, want %q", c.ID, c.Role, c.Outcome, k, l.attrs[k], v)
		}
	}
}

// TestRecordOTLPCollectorDown: a collector that is not there changes
// nothing in the recording; every record it could not take is counted.
func TestRecordOTLPCollectorDown(t *testing.T) {
	t.Parallel()
	nettest.RequirePrivileges(t)
	endpoint := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	ns := nettest.New(t)
	r := startRecord(t, ns, "run.jsonl", "--otlp-endpoint", endpoint)
	addr, _ := startServer(t, ns, "tcp4", "127.0.0.1:0", "client-closes", 3)
	dialClose(t, ns, addr, 3)
	r.waitConnections(t, 6, 15*time.Second)
	rec := r.stop(t)
	if len(rec.Connections) < 6 {
		t.Fatalf("%d connections in the export, want 6", len(rec.Connections))
	}
	d := rec.Summary.OTLPDropped
	if d == nil || *d != uint64(len(rec.Connections)) {
		t.Errorf("summary otlp_dropped_records %v, want %d", d, len(rec.Connections))
	}
	want := fmt.Sprintf("otlp: sent 0 connection records to %s, dropped %d", endpoint, len(rec.Connections))
	if !strings.Contains(r.stderr.String(), want) {
		t.Errorf("stderr lacks %q:\n%s", want, r.stderr.String())
	}
}

// otlpConnectionCounts reads the metrics file the collector wrote and
// returns the last export's tcpscope.connections data points (cumulative:
// the last one holds the totals), keyed "role/outcome/error.type".
func otlpConnectionCounts(t *testing.T, path string) map[string]int {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var last map[string]int
	for _, line := range strings.Split(string(b), "\n") {
		var req otlpMetricsRequest
		if json.Unmarshal([]byte(line), &req) != nil {
			continue
		}
		for _, rm := range req.ResourceMetrics {
			for _, sm := range rm.ScopeMetrics {
				for _, m := range sm.Metrics {
					if m.Name != "tcpscope.connections" {
						continue
					}
					last = map[string]int{}
					for _, dp := range m.Sum.DataPoints {
						a := attrMap(dp.Attributes)
						n, _ := strconv.Atoi(dp.AsInt)
						last[a["tcpscope.role"]+"/"+a["tcpscope.outcome"]+"/"+a["error.type"]] += n
					}
				}
			}
		}
	}
	return last
}

type otlpMetricsRequest struct {
	ResourceMetrics []struct {
		ScopeMetrics []struct {
			Metrics []struct {
				Name string
				Sum  struct {
					DataPoints []struct {
						AsInt      string
						Attributes []otlpAttr
					}
				}
			}
		}
	}
}
