package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/output"
	"github.com/tcpscope/tcpscope/tracer/netns"
	"github.com/tcpscope/tcpscope/tracer/nettest"
)

// host is one namespace traced by its own agent, and the load driven in it.
type host struct {
	ns                  *netns.NS
	agent               *recording
	metrics             string // the agent's HOST:PORT
	ok, refused, resets int
	before, after       netns.Counters
	scraped             map[string]float64 // tcpscope_connections_total by "role/outcome"
	exported            map[string]float64 // the export's connections by "role/outcome"
	scrapedFailures     map[string]float64 // tcpscope_connection_failures_total by "role/error_type"
	scrapedHandshakes   float64
	timeWait            float64 // sum of tcpscope_time_wait_sockets
}

// TestPrometheusScrapesAgents: two namespaces ("hosts"), each traced by its
// own `record --netns N --metrics-addr`, scraped by a real Prometheus every
// second. After bounded load in each (connections that succeed, connects
// refused, connections reset), the totals Prometheus holds per agent are
// the connections each export holds, by role and outcome, and agree with
// the kernel's own counters in each namespace.
func TestPrometheusScrapesAgents(t *testing.T) {
	prom := requireTool(t, "prometheus", "prometheus")
	hosts := []*host{{ok: 5, refused: 3, resets: 2}, {ok: 4, refused: 2, resets: 3}}
	for i, h := range hosts {
		h.ns = nettest.New(t)
		h.agent = startRecord(t, h.ns, fmt.Sprintf("host%d.jsonl", i), "--duration", "5m", "--metrics-addr", "127.0.0.1:0")
		h.metrics = servedAt(t, h.agent)
	}
	api := startPrometheus(t, prom, hosts[0].metrics, hosts[1].metrics)
	for _, h := range hosts {
		h.drive(t)
	}
	for _, h := range hosts {
		// Both ends of each connection, and the reset that refused each
		// connect (the server's NO_SOCKET record).
		h.agent.waitConnections(t, 2*(h.ok+h.refused+h.resets), 30*time.Second)
		h.scraped = waitSettled(t, api, h.metrics, h.agent.path)
		h.scrapedFailures = queryBy(t, api, fmt.Sprintf(`tcpscope_connection_failures_total{instance=%q}`, h.metrics), "role", "error_type")
		hs := queryBy(t, api, fmt.Sprintf(`tcpscope_handshake_duration_seconds_count{instance=%q,role="client"}`, h.metrics), "role")
		h.scrapedHandshakes = hs["client"]
		h.timeWait = queryBy(t, api, fmt.Sprintf(`sum(tcpscope_time_wait_sockets{instance=%q})`, h.metrics))[""]
		if os.Getenv("TCPSCOPE_TEST_SHOW") != "" {
			t.Logf("%s/metrics:\n%s", h.metrics, agentMetrics(t, h.metrics))
		}
	}
	for i, h := range hosts {
		h.check(t, fmt.Sprintf("host %d", i))
	}
}

// agentMetrics is what an agent serves, its own tcpscope_* lines.
func agentMetrics(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(body), "\n") {
		if strings.Contains(l, "tcpscope_") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// servedAt reads where an agent serves its metrics from its stderr.
func servedAt(t *testing.T, r *recording) string {
	t.Helper()
	m := regexp.MustCompile(`serving metrics on http://([^/]+)/metrics`).FindStringSubmatch(r.stderr.String())
	if m == nil {
		t.Fatalf("the agent did not say where it serves metrics: %s", r.stderr.String())
	}
	return m[1]
}

const promConfig = `global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: tcpscope
    static_configs:
      - targets: [%q, %q]
`

// startPrometheus runs prometheus on 127.0.0.1 with a configuration that
// scrapes the targets and a TSDB in a temporary directory; it is stopped
// at cleanup. It returns the HTTP API's base URL once Prometheus is ready.
func startPrometheus(t *testing.T, prom string, targets ...string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, promConfig, targets[0], targets[1]), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeLoopbackPort(t)
	var log lockedBuffer
	cmd := exec.Command(prom, "--config.file", cfg, "--storage.tsdb.path", filepath.Join(dir, "tsdb"),
		"--web.listen-address", addr)
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill(); <-done })
	base := "http://" + addr
	poll(t, time.Minute, func() (bool, string) {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("prometheus exited (%v): %s", err, log.String())
		default:
		}
		resp, err := http.Get(base + "/-/ready")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	return base
}

// freeLoopbackPort is a port free on 127.0.0.1 now, for a program that
// must be told its port (Prometheus does not print one it picked).
func freeLoopbackPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// poll calls ready every 200 ms until it says true, failing the test
// after limit with ready's last word.
func poll(t *testing.T, limit time.Duration, ready func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for ; ; <-tick.C {
		ok, why := ready()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not there after %s: %s", limit, why)
		}
	}
}

// drive opens h.ok connections that end in an orderly close, h.refused
// connects to a port nothing listens on, and h.resets connections the
// server aborts (SO_LINGER 0) after reading the request.
func (h *host) drive(t *testing.T) {
	t.Helper()
	var err error
	if h.before, err = h.ns.Counters(); err != nil {
		t.Fatal(err)
	}
	ln, err := h.ns.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go acceptClose(ln)
	dialClose(t, h.ns, ln.Addr().String(), h.ok)
	closed, err := h.ns.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	for range h.refused {
		if c, err := dialNS(t, h.ns, "tcp4", closed.Addr().String(), 5*time.Second); err == nil {
			c.Close()
			t.Fatalf("connect to %s succeeded; nothing listens there", closed.Addr())
		}
	}
	addr, _ := startServer(t, h.ns, "tcp4", "127.0.0.1:0", "linger0", h.resets)
	for range h.resets {
		c, err := dialNS(t, h.ns, "tcp4", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("request"))
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.Copy(io.Discard, c); err == nil || !strings.Contains(err.Error(), "reset") {
			t.Errorf("the server's abort did not reset the client: %v", err)
		}
		c.Close()
	}
}

// waitSettled waits until Prometheus holds, for the agent at instance, as
// many connections as its export, unchanged over two scrapes, and returns
// them by "role/outcome".
func waitSettled(t *testing.T, api, instance, export string) map[string]float64 {
	t.Helper()
	query := fmt.Sprintf(`sum by (role, outcome) (tcpscope_connections_total{instance=%q})`, instance)
	var last map[string]float64
	var since time.Time
	poll(t, time.Minute, func() (bool, string) {
		got := queryBy(t, api, query, "role", "outcome")
		if fmt.Sprint(got) != fmt.Sprint(last) {
			last, since = got, time.Now()
		}
		total, want := 0.0, exportedConnections(export)
		for _, v := range got {
			total += v
		}
		// Scrapes are a second apart: unchanged for 2.5 s is two scrapes.
		return int(total) == want && time.Since(since) > 2500*time.Millisecond,
			fmt.Sprintf("%s: %v, want %d connections", instance, got, want)
	})
	return last
}

// queryBy runs an instant query and returns its samples keyed by the
// values of labels, joined by "/".
func queryBy(t *testing.T, api, query string, labels ...string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(api + "/api/v1/query?query=" + url.QueryEscape(query))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Status string
		Error  string
		Data   struct {
			Result []struct {
				Metric map[string]string
				Value  [2]any
			}
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || r.Status != "success" {
		t.Fatalf("query %s: %v %s %s", query, err, r.Status, r.Error)
	}
	out := map[string]float64{}
	for _, s := range r.Data.Result {
		key := make([]string, len(labels))
		for i, l := range labels {
			key[i] = s.Metric[l]
		}
		var v float64
		fmt.Sscan(fmt.Sprint(s.Value[1]), &v)
		out[strings.Join(key, "/")] = v
	}
	return out
}

// check compares what Prometheus scraped with the agent's export and with
// the namespace's kernel counters.
func (h *host) check(t *testing.T, name string) {
	t.Helper()
	var err error
	if h.after, err = h.ns.Counters(); err != nil {
		t.Fatal(err)
	}
	rec := h.agent.stop(t)
	h.exported = map[string]float64{}
	for _, c := range rec.Connections {
		h.exported[c.Role.String()+"/"+c.Outcome.String()]++
	}
	if fmt.Sprint(h.scraped) != fmt.Sprint(h.exported) {
		t.Errorf("%s: Prometheus holds connections %v, the export %v", name, h.scraped, h.exported)
	}
	// TIME_WAIT lasts 60 s: every client end of the test that entered it
	// still holds its local port toward the destination.
	if tw := h.exported["client/time_wait"]; h.timeWait != tw {
		t.Errorf("%s: tcpscope_time_wait_sockets sum to %v, the export has %v client time_wait ends", name, h.timeWait, tw)
	}
	h.checkKernel(t, name, rec)
}

// checkKernel holds the scraped totals against the namespace's counters:
// every connect is an active open, every accepted connection a passive
// open, every refused connect an attempt that failed, and every refusal
// (the server side's NO_SOCKET record) and abort a reset sent.
func (h *host) checkKernel(t *testing.T, name string, rec *output.Recording) {
	t.Helper()
	d := netns.Delta(h.before, h.after)
	scraped := func(role string) float64 {
		n := 0.0
		for k, v := range h.scraped {
			if strings.HasPrefix(k, role+"/") {
				n += v
			}
		}
		return n
	}
	t.Logf("%s: scraped %v, failures %v; kernel ActiveOpens %d PassiveOpens %d OutRsts %d AttemptFails %d EstabResets %d",
		name, h.scraped, h.scrapedFailures, d["Tcp.ActiveOpens"], d["Tcp.PassiveOpens"], d["Tcp.OutRsts"], d["Tcp.AttemptFails"], d["Tcp.EstabResets"])
	if c := scraped("client"); c != float64(d["Tcp.ActiveOpens"]) || c != float64(h.ok+h.refused+h.resets) {
		t.Errorf("%s: %v client connections scraped, kernel ActiveOpens %d, connects made %d", name, c, d["Tcp.ActiveOpens"], h.ok+h.refused+h.resets)
	}
	if s := scraped("server") - h.scraped["server/refused"]; s != float64(d["Tcp.PassiveOpens"]) || s != float64(h.ok+h.resets) {
		t.Errorf("%s: %v server connections scraped, kernel PassiveOpens %d, accepted %d", name, s, d["Tcp.PassiveOpens"], h.ok+h.resets)
	}
	refused := h.scrapedFailures["client/refused"]
	if refused != float64(h.refused) || refused != float64(d["Tcp.AttemptFails"]) {
		t.Errorf("%s: %v refused connects scraped, kernel AttemptFails %d, refused %d", name, refused, d["Tcp.AttemptFails"], h.refused)
	}
	sent := h.scrapedFailures["server/refused"] + h.scrapedFailures["server/reset"]
	// An abort resets an established connection at both ends.
	if sent != float64(d["Tcp.OutRsts"]) || h.scrapedFailures["client/reset"] != float64(h.resets) ||
		h.scrapedFailures["client/reset"]+h.scrapedFailures["server/reset"] != float64(d["Tcp.EstabResets"]) {
		t.Errorf("%s: failures scraped %v; kernel OutRsts %d, want the %d refusals and %d aborts", name, h.scrapedFailures, d["Tcp.OutRsts"], h.refused, h.resets)
	}
	if h.scrapedHandshakes != float64(h.ok+h.resets) {
		t.Errorf("%s: %v client handshakes in the histogram, want the %d established", name, h.scrapedHandshakes, h.ok+h.resets)
	}
}
