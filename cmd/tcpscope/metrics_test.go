package main

import (
	"bytes"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/tracer/netns"
	"github.com/tcpscope/tcpscope/tracer/nettest"
)

// TestMetricsAddrInUse: a --metrics-addr whose port another program holds
// is bad input, refused before anything is traced (no root needed).
func TestMetricsAddrInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, cmdline := range [][]string{{"record"}, {"run", "--", "true"}} {
		args := append([]string{cmdline[0], "--metrics-addr", ln.Addr().String()}, cmdline[1:]...)
		var stderr bytes.Buffer
		cmd := exec.Command(binary, args...)
		cmd.Stderr = &stderr
		err := cmd.Run()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 2 || !strings.Contains(stderr.String(), "address already in use") || strings.Contains(stderr.String(), "tracing (") {
			t.Errorf("tcpscope %s: %v, stderr %q; want exit status 2, address already in use, nothing traced", strings.Join(args, " "), err, stderr.String())
		}
	}
}

// TestMetricsListenerGauges: while connections wait in a full accept
// queue, the agent's accept-queue gauge shows the queue the kernel
// reports for that listener, and the overflow drops count the connects
// the full queue turned away, at most the namespace's ListenOverflows.
func TestMetricsListenerGauges(t *testing.T) {
	ns := nettest.New(t)
	r := startRecord(t, ns, "queue.jsonl", "--metrics-addr", "127.0.0.1:0")
	addr := servedAt(t, r)
	before, err := ns.Counters()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := ns.ListenBacklog(0, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ap := netns.AddrPort(ln)
	closeAll := connectAll(t, ns, ap, 6)
	defer closeAll()
	queueLine := fmt.Sprintf(`tcpscope_listener_accept_queue{listener=%q} `, ap.String())
	dropsLine := fmt.Sprintf(`tcpscope_listener_overflow_drops_total{listener=%q} `, ap.String())
	var queue, drops, kernelQueue float64
	poll(t, 30*time.Second, func() (bool, string) {
		body := agentMetrics(t, addr)
		queue, drops = metricValue(body, queueLine), metricValue(body, dropsLine)
		kernelQueue = -1
		if ls, err := ns.Listeners(); err == nil {
			for _, l := range ls {
				if l.Local == ap {
					kernelQueue = float64(l.Queue)
				}
			}
		}
		return queue == kernelQueue && queue == 3 && drops > 0,
			fmt.Sprintf("gauge %v, kernel queue %v, drops %v:\n%s", queue, kernelQueue, drops, body)
	})
	after, err := ns.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if overflows := netns.Delta(before, after)["TcpExt.ListenOverflows"]; drops > float64(overflows) {
		t.Errorf("%v overflow drops scraped, the kernel counted %d ListenOverflows", drops, overflows)
	}
	t.Logf("accept queue %v (kernel %v), overflow drops %v", queue, kernelQueue, drops)
	closeAll()
	ln.Close()
	r.stop(t)
}

// metricValue is the value on the line of body that starts with prefix,
// -1 when there is none.
func metricValue(body, prefix string) float64 {
	for _, l := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(l, prefix); ok {
			if v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64); err == nil {
				return v
			}
		}
	}
	return -1
}
