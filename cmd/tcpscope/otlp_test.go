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
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/output"
	"github.com/tcpscope/tcpscope/output/metrics"
	"github.com/tcpscope/tcpscope/output/otlp"
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
// error.type, then checks that the same export carries the rest of the
// /metrics set with the export's numbers.
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
	var last map[string]otlpMetric
	waitFor(t, 30*time.Second, make(chan error, 1), &lockedBuffer{}, "tcpscope.connections counting every connection", func() bool {
		last = lastOTLPMetrics(t, path)
		return maps.Equal(last["tcpscope.connections"].points("tcpscope.role", "tcpscope.outcome", "error.type"), want)
	})
	checkOTLPCounts(t, last, rec)
	checkOTLPLive(t, last, rec)
}

// checkOTLPCounts compares the per-connection metrics with the export.
func checkOTLPCounts(t *testing.T, last map[string]otlpMetric, rec *output.Recording) {
	t.Helper()
	failures, flags, handshakes := map[string]int{}, map[string]int{}, map[string]int{}
	for _, role := range []string{"client", "server"} {
		for _, et := range metrics.ErrorTypes {
			failures[role+"/"+et] = 0
		}
	}
	for i := range rec.Connections {
		c := &rec.Connections[i]
		if et := otlp.ErrorType(c); et != "" {
			failures[c.Role.String()+"/"+et]++
		}
		for f := range c.Flags.All() {
			flags[c.Role.String()+"/"+f.String()]++
		}
		if metrics.HandshakeUs(c) >= 0 {
			handshakes[c.Role.String()]++
		}
	}
	if failures["client/refused"] != 1 {
		t.Errorf("the export has %d refused clients, want 1", failures["client/refused"])
	}
	wantPoints(t, last, "tcpscope.connection.failures", failures, "tcpscope.role", "error.type")
	wantPoints(t, last, "tcpscope.connection.flags", flags, "tcpscope.role", "tcpscope.flag")
	wantPoints(t, last, "tcpscope.handshake.duration", handshakes, "tcpscope.role")
	wantPoints(t, last, "tcpscope.retransmits", map[string]int{"syn": 0, "synack": 0, "data": 0, "fin": 0}, "tcpscope.retransmit.kind")
	for _, dp := range last["tcpscope.handshake.duration"].Histogram.DataPoints {
		if !slices.Equal(dp.ExplicitBounds, metrics.HandshakeBuckets) {
			t.Errorf("tcpscope.handshake.duration bounds %v, want %v", dp.ExplicitBounds, metrics.HandshakeBuckets)
		}
	}
}

// checkOTLPLive checks the numbers read live: a point per listener of the
// export with its overflow drops, the kernel's losses, and TIME_WAIT
// sockets never more than the connections that ended.
func checkOTLPLive(t *testing.T, last map[string]otlpMetric, rec *output.Recording) {
	t.Helper()
	drops := map[string]int{}
	for _, l := range rec.Listeners {
		drops[l.Local.String()] += int(l.Overflows + l.SynDropsAttributed)
	}
	if len(drops) == 0 {
		t.Error("the export has no listener")
	}
	wantPoints(t, last, "tcpscope.listener.overflow_drops", drops, "tcpscope.listener")
	lost := last["tcpscope.lost_events"].points()
	if want := int(rec.Summary.LostEvents + rec.Summary.LostRecords); len(lost) != 1 || lost[""] < want {
		t.Errorf("tcpscope.lost_events %v, want at least %d", lost, want)
	}
	tw := 0
	for _, n := range last["tcpscope.time_wait.sockets"].points("tcpscope.destination") {
		tw += n
	}
	if _, ok := last["tcpscope.time_wait.sockets"]; !ok || tw > len(rec.Connections) {
		t.Errorf("tcpscope.time_wait.sockets sums to %d (sent: %v), want at most %d", tw, ok, len(rec.Connections))
	}
}

func wantPoints(t *testing.T, last map[string]otlpMetric, name string, want map[string]int, keys ...string) {
	t.Helper()
	if got := last[name].points(keys...); !maps.Equal(got, want) {
		t.Errorf("%s by %v: %v, want %v", name, keys, got, want)
	}
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
		"tcpscope.cgroup": c.Cgroup.Path, "container.id": c.Cgroup.ContainerID,
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

// lastOTLPMetrics reads the metrics file the collector wrote and returns
// each metric as last exported (cumulative: the last one holds the
// totals).
func lastOTLPMetrics(t *testing.T, path string) map[string]otlpMetric {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	last := map[string]otlpMetric{}
	for _, line := range strings.Split(string(b), "\n") {
		var req otlpMetricsRequest
		if json.Unmarshal([]byte(line), &req) != nil {
			continue
		}
		for _, rm := range req.ResourceMetrics {
			for _, sm := range rm.ScopeMetrics {
				for _, m := range sm.Metrics {
					last[m.Name] = m
				}
			}
		}
	}
	return last
}

type otlpMetricsRequest struct {
	ResourceMetrics []struct {
		ScopeMetrics []struct {
			Metrics []otlpMetric
		}
	}
}

type otlpMetric struct {
	Name                  string
	Sum, Gauge, Histogram struct {
		DataPoints []otlpPoint
	}
}

type otlpPoint struct {
	AsInt          string
	Count          string
	ExplicitBounds []float64
	Attributes     []otlpAttr
}

// points are a metric's values (a histogram's counts) keyed by the values
// of keys joined with "/".
func (m otlpMetric) points(keys ...string) map[string]int {
	got := map[string]int{}
	for _, dps := range [][]otlpPoint{m.Sum.DataPoints, m.Gauge.DataPoints, m.Histogram.DataPoints} {
		for _, dp := range dps {
			a := attrMap(dp.Attributes)
			vals := make([]string, len(keys))
			for i, k := range keys {
				vals[i] = a[k]
			}
			n, _ := strconv.Atoi(dp.AsInt + dp.Count)
			got[strings.Join(vals, "/")] += n
		}
	}
	return got
}
