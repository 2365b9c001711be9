package main

import (
	"html"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/tcpscope/tcpscope/cmd/internal/demoload"
	"github.com/tcpscope/tcpscope/output"
	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/netns"
	"github.com/tcpscope/tcpscope/tracer/nettest"
)

// hostState is what the demo must leave as it found: the host namespace's
// nftables tables and the sysctls the demo sets in its own namespace.
func hostState(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	conn, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	tables, err := conn.ListTables()
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range tables {
		out["nft table "+tb.Name] = strconv.Itoa(int(tb.Family))
	}
	for _, name := range []string{"ip_local_port_range", "tcp_tw_reuse", "tcp_syncookies", "tcp_syn_retries", "tcp_synack_retries"} {
		b, err := os.ReadFile("/proc/sys/net/ipv4/" + name)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = string(b)
	}
	return out
}

func TestDemo(t *testing.T) {
	nettest.RequirePrivileges(t)
	before := hostState(t)
	path, page := filepath.Join(t.TempDir(), "demo.jsonl"), filepath.Join(t.TempDir(), "demo.html")
	start := time.Now()
	code, stdout, stderr := runTcpscope(t, nil, "demo", "--duration", "8s", "-o", path, "--html", page)
	took := time.Since(start)
	if code != 0 {
		t.Fatalf("demo: exit %d\n%s\n%s", code, stdout, stderr)
	}
	// Set-up and shutdown take a few seconds; far more means the demo did
	// not stop on time (a loaded machine still stays well inside this).
	if took > 30*time.Second {
		t.Errorf("an 8s demo took %v", took)
	}
	// Not a terminal here: plain lines only.
	if strings.ContainsRune(stdout+stderr, '\x1b') {
		t.Errorf("escape sequences in non-terminal output")
	}
	if !strings.Contains(stdout, "INJECTED FAULT") {
		t.Errorf("no legend in the demo output")
	}
	checkDemoPage(t, page, stdout)
	rec, err := output.ReadExport(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := output.ValidateExport(path); err != nil {
		t.Fatal(err)
	}
	checkDemoSample(t, stdout, rec)
	checkDemoFindings(t, stdout, rec)
	count := func(port uint16, role tracer.Role, f tracer.Flag) int {
		n := 0
		for _, c := range rec.Connections {
			p := c.Remote.Port()
			if c.Role == tracer.RoleServer {
				p = c.Local.Port()
			}
			if c.Role == role && (p == port || port == 0) && c.Flags.Has(f) {
				n++
			}
		}
		return n
	}
	reasons := map[string]int{}
	for _, c := range rec.Connections {
		for _, it := range c.Timeline {
			if it.Kind == tracer.ItemResetSent && c.Local.Port() == demoload.PortWeb {
				reasons[reasonName(it)]++
			}
		}
	}
	checks := []struct {
		what string
		got  int
	}{
		{"servers of :8081 with SYN-ACK retransmits", count(demoload.PortSlow, tracer.RoleServer, tracer.FlagSynAckRetransmitted)},
		{"servers of :8081 with long SYN_RECV", count(demoload.PortSlow, tracer.RoleServer, tracer.FlagLongSynRecv)},
		{"clients of :8082 retransmitting SYNs", count(demoload.PortTiny, tracer.RoleClient, tracer.FlagSynRetransmitted)},
		{"refused clients of :8099", count(demoload.PortClosed, tracer.RoleClient, tracer.FlagRefused)},
		{"refused server records on :8099", count(demoload.PortClosed, tracer.RoleServer, tracer.FlagRefused)},
		{"resets from :8080 with reason TCP_STATE (SO_LINGER 0)", reasons["TCP_STATE"]},
		{"resets from :8080 with reason TCP_ABORT_ON_CLOSE (unread)", reasons["TCP_ABORT_ON_CLOSE"]},
		{"clients of :8080 that received a reset", count(demoload.PortWeb, tracer.RoleClient, tracer.FlagResetReceived)},
		{"clients of :8083 in TIME_WAIT", count(demoload.PortChurn, tracer.RoleClient, tracer.FlagTimeWait)},
		{"connects that found no local port", count(0, tracer.RoleClient, tracer.FlagPortExhausted)},
	}
	// What older kernels do not trace.
	needs := map[string]tracer.KernelFeature{
		"refused server records on :8099":                           tracer.ResetReasons,
		"resets from :8080 with reason TCP_STATE (SO_LINGER 0)":     tracer.CloseResetReasons,
		"resets from :8080 with reason TCP_ABORT_ON_CLOSE (unread)": tracer.CloseResetReasons,
	}
	for _, c := range checks {
		if k, ok := needs[c.what]; ok && !kernelHas(t, k) {
			t.Logf("not checked, %s needs %s", c.what, k)
		} else if c.got == 0 {
			t.Errorf("demo export has no %s", c.what)
		}
	}
	var overflows uint64
	for _, cd := range rec.Summary.Counters {
		if cd.Counter == "TcpExt.ListenOverflows" {
			overflows = cd.Delta
		}
	}
	if overflows == 0 {
		t.Errorf("no ListenOverflows delta in the summary")
	}
	if len(rec.Summary.TimeWait) == 0 || !rec.Summary.TimeWait[0].Warned {
		t.Errorf("no TIME_WAIT pressure warning in the summary")
	}
	// Everything the demo made is gone, and the host is as it was.
	m := regexp.MustCompile(`network namespace (\d+)`).FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("demo did not name its namespace:\n%s", stdout)
	}
	ino, _ := strconv.ParseUint(m[1], 10, 32)
	if ns, err := netns.Find(uint32(ino)); err == nil {
		// The kernel hands a freed namespace's inode out again
		// (proc_alloc_inum), and tests running beside this one make
		// namespaces: one is the demo's only if it has the demo's ports.
		lo, hi, err := ns.PortRange()
		ns.Close()
		if err != nil || lo == demoload.PortLo && hi == demoload.PortHi {
			t.Errorf("the demo's namespace %d is still held (ip_local_port_range %d-%d, %v)", ino, lo, hi, err)
		}
	}
	after := hostState(t)
	for k, v := range before {
		if after[k] != v {
			t.Errorf("host %s changed: %q -> %q", k, v, after[k])
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			t.Errorf("host gained %s", k)
		}
	}
}

// checkDemoSample: the demo prints the first few flagged lines of each flag,
// says how many it left out (shown + left out = every flagged record), and
// then the summary and the legend.
func checkDemoSample(t *testing.T, stdout string, rec *output.Recording) {
	t.Helper()
	flagged := 0
	for i := range rec.Connections {
		if rec.Connections[i].Flagged() {
			flagged++
		}
	}
	lineRe := regexp.MustCompile(`^\d\d:\d\d:\d\d\.\d{3} (client|server) `)
	shown := 0
	for _, l := range strings.Split(stdout, "\n") {
		if lineRe.MatchString(l) {
			shown++
		}
	}
	m := regexp.MustCompile(`(?m)^\.\.\. (\d+) more flagged connections not shown \(the first 3 of each flag are above; all are counted below and kept in the export\)$`).FindStringSubmatchIndex(stdout)
	if m == nil {
		t.Fatalf("no \"more not shown\" line; %d flagged lines shown of %d:\n%s", shown, flagged, stdout)
	}
	omitted, _ := strconv.Atoi(stdout[m[2]:m[3]])
	if shown+omitted != flagged || shown > 3*len(tracer.AllFlags) || omitted == 0 {
		t.Errorf("%d flagged lines shown and %d said left out, export has %d flagged records", shown, omitted, flagged)
	}
	rest := stdout[m[1]:]
	if !strings.Contains(rest, " connections from ") || !strings.Contains(rest, "| FLAG ") || !strings.Contains(rest, "INJECTED FAULT") {
		t.Errorf("summary and legend do not follow the sample:\n%s", rest)
	}
}

var ownerRe = regexp.MustCompile(`^\S*/\d+ | \(\S*/\d+\)`)

// checkDemoFindings: each injected fault is reported by its finding, the
// legend says so, and the demo's clean traffic yields no other finding.
func checkDemoFindings(t *testing.T, stdout string, rec *output.Recording) {
	t.Helper()
	type key struct {
		kind, subject string // subject: address and port, then ", reason X" for resets
	}
	const host = "127.0.0.1:"
	port := func(p int) string { return host + strconv.Itoa(p) }
	want := map[key]bool{
		{"late_final_ack", port(demoload.PortSlow)}:                               true,
		{"accept_queue_overflow", port(demoload.PortTiny)}:                        true,
		{"connection_refused", port(demoload.PortClosed)}:                         true,
		{"server_resets", port(demoload.PortWeb) + ", reason TCP_STATE"}:          true,
		{"server_resets", port(demoload.PortWeb) + ", reason TCP_ABORT_ON_CLOSE"}: true,
		{"time_wait_exhaustion", port(demoload.PortChurn)}:                        true,
		// The burst at :8082 also fills its SYN queue: cookies may follow.
		{"syn_flood_cookies", port(demoload.PortTiny)}: false,
		// Clients whose final ACK was dropped and still resend their
		// request when the demo stops the server meet NO_SOCKET resets.
		{"server_resets", port(demoload.PortTiny) + ", reason NO_SOCKET"}: false,
		// ... and some of their final ACKs met the full queue.
		{"late_final_ack", port(demoload.PortTiny)}: false,
		// A burst client whose time ran out as its answer came.
		{"client_resets", "toward " + port(demoload.PortTiny) + ", reason TCP_ABORT_ON_CLOSE"}: false,
	}
	if !kernelHas(t, tracer.CloseResetReasons) {
		t.Logf("not checked, the resets of :8080 need %s", tracer.CloseResetReasons)
		want[key{"server_resets", port(demoload.PortWeb) + ", reason TCP_STATE"}] = false
		want[key{"server_resets", port(demoload.PortWeb) + ", reason TCP_ABORT_ON_CLOSE"}] = false
	}
	got := map[key]bool{}
	for _, f := range rec.Summary.Findings {
		// "127.0.0.1:8080 (tcpscope/123), reason TCP_STATE" -> "127.0.0.1:8080, reason TCP_STATE";
		// "tcpscope/123 toward 127.0.0.1:8082, reason X" -> "toward 127.0.0.1:8082, reason X".
		subject := ownerRe.ReplaceAllString(f.Subject, "")
		k := key{f.Kind, subject}
		if _, ok := want[k]; !ok {
			t.Errorf("the demo injected nothing that explains finding %s %s: %s", f.Kind, f.Subject, f.Mechanism)
		}
		got[k] = true
	}
	for k, required := range want {
		if required && !got[k] {
			t.Errorf("no %s finding for %s", k.kind, k.subject)
		}
	}
	legend := stdout[strings.Index(stdout, "INJECTED FAULT"):]
	for _, s := range []string{"NOT FOUND", "(not injected)"} {
		if strings.Contains(legend, s) {
			t.Errorf("legend says %s:\n%s", s, legend)
		}
	}
	for _, s := range []string{"late_final_ack 127.0.0.1:8081: late_final_ack_connections ", "accept_queue_overflow 127.0.0.1:8082: accept_queue_drops ",
		"connection_refused 127.0.0.1:8099: refused_connections ", "time_wait_exhaustion 127.0.0.1:8083: port_exhausted_connections "} {
		if !strings.Contains(legend, s) {
			t.Errorf("legend lacks %q:\n%s", s, legend)
		}
	}
}

// checkDemoPage: the demo's HTML report holds its legend, every row as
// the terminal shows it, and the queue and TIME_WAIT charts of its sample
// records.
func checkDemoPage(t *testing.T, page, stdout string) {
	t.Helper()
	b, err := os.ReadFile(page)
	if err != nil {
		t.Fatalf("demo --html: %v", err)
	}
	doc := string(b)
	for _, s := range []string{`<p class="lead" id="intro">This is tcpscope&#39;s built-in demo.`, "What the demo injected, and what tcpscope found", "Accept queue per listener", "TIME_WAIT sockets per destination"} {
		if !strings.Contains(doc, s) {
			t.Errorf("the demo's page lacks %q", s)
		}
	}
	terminal := terminalLegend(stdout)
	if len(terminal) == 0 {
		t.Fatalf("no INJECTED/FOUND rows in the demo's output:\n%s", stdout)
	}
	_, section, _ := strings.Cut(doc, `<section id="legend">`)
	section, _, _ = strings.Cut(section, "</section>")
	var onPage [][2]string
	for _, m := range legendRow.FindAllStringSubmatch(section, -1) {
		onPage = append(onPage, [2]string{html.UnescapeString(m[1]), html.UnescapeString(m[2])})
	}
	if !slices.Equal(onPage, terminal) {
		t.Errorf("the page's legend rows\n%q\ndiffer from the terminal's\n%q", onPage, terminal)
	}
}

var legendRow = regexp.MustCompile(`<tr><td>(.*?)</td><td>(.*?)</td></tr>`)

// terminalLegend reads the rows of the INJECTED FAULT | FOUND table the
// demo prints, cells trimmed.
func terminalLegend(stdout string) [][2]string {
	var rows [][2]string
	in := false
	for _, line := range strings.Split(stdout, "\n") {
		cells := strings.Split(strings.TrimSpace(line), " | ")
		switch {
		case strings.HasPrefix(line, "| INJECTED FAULT"):
			in = true
		case in && strings.HasPrefix(line, "+-") && len(rows) > 0:
			return rows
		case in && strings.HasPrefix(line, "| ") && len(cells) == 2:
			rows = append(rows, [2]string{strings.TrimSpace(strings.TrimPrefix(cells[0], "|")), strings.TrimSpace(strings.TrimSuffix(cells[1], "|"))})
		}
	}
	return rows
}
