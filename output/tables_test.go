package output

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/cgroups"
)

// The table renderers, read the way a user reads them: which tables,
// their headers, and the cells of a row.

// table is one rendered ASCII table.
type table struct {
	header []string
	rows   [][]string
}

// parseTables finds the tables in out: a border line (starting with '+'),
// the header's cells (starting with '|'), a border, the rows, a border.
func parseTables(out string) []table {
	var tables []table
	var cur *table
	borders := 0
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(line, "+"):
			if cur == nil {
				tables = append(tables, table{})
				cur, borders = &tables[len(tables)-1], 0
			}
			if borders++; borders == 3 {
				cur = nil
			}
		case strings.HasPrefix(line, "|"):
			var cells []string
			for _, c := range strings.Split(strings.Trim(line, "|"), "|") {
				cells = append(cells, strings.TrimSpace(c))
			}
			if cur.header == nil {
				cur.header = cells
			} else {
				cur.rows = append(cur.rows, cells)
			}
		default:
			cur = nil
		}
	}
	return tables
}

// find returns the table whose first header cell is name.
func find(t *testing.T, out, name string) table {
	t.Helper()
	for _, tb := range parseTables(out) {
		if tb.header[0] == name {
			return tb
		}
	}
	t.Fatalf("no %s table in:\n%s", name, out)
	return table{}
}

// row returns, by header, the cells of the row whose first cell is key.
func (tb table) row(t *testing.T, key string) map[string]string {
	t.Helper()
	for _, r := range tb.rows {
		if r[0] == key {
			m := map[string]string{}
			for i, h := range tb.header {
				m[h] = r[i]
			}
			return m
		}
	}
	t.Fatalf("no row %q in the %s table: %q", key, tb.header[0], tb.rows)
	return nil
}

// column lists one column's cells, top to bottom.
func (tb table) column(name string) []string {
	i := slices.Index(tb.header, name)
	var out []string
	for _, r := range tb.rows {
		out = append(out, r[i])
	}
	return out
}

func headers(out string) []string {
	var hs []string
	for _, tb := range parseTables(out) {
		hs = append(hs, tb.header[0])
	}
	return hs
}

func statsOf(cs []tracer.Connection) *tracer.Stats {
	s := tracer.NewStats()
	for i := range cs {
		s.Add(&cs[i])
	}
	return s
}

func render(t *testing.T, f func(*strings.Builder) error) string {
	t.Helper()
	var b strings.Builder
	if err := f(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestSummaryTables(t *testing.T) {
	in := fullRecords()
	in.x.Listeners = in.listeners
	out := render(t, func(b *strings.Builder) error { return SummaryTables(b, statsOf(in.conns), in.x) })

	if want := []string{"OUTCOME", "FLAG", "LATENCY", "LISTENER", "TIME_WAIT TOWARD", "KERNEL COUNTER", "PEER"}; !slices.Equal(headers(out), want) {
		t.Errorf("tables %q, want %q:\n%s", headers(out), want, out)
	}
	for _, w := range []string{
		"\n3 connections from ", "; lost events: 1, lost connection records: 9\n",
		"WARNING: 1 kernel events were lost (ring buffer full)",
		"WARNING: 9 connection records, each up to 13 events of one socket, were lost (ring buffer full)",
		"WARNING: 10 more kernel events were lost (4 unreadable, 5 undecoded, 1 skipped by the kernel's recursion guard)",
		"WARNING: 7 state transitions are missing",
		"WARNING: 3 connections were written early",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("summary lacks %q:\n%s", w, out)
		}
	}
	outcomes := find(t, out, "OUTCOME")
	if got := outcomes.column("OUTCOME"); !slices.Equal(got, []string{"open", "time_wait", "refused"}) {
		t.Errorf("outcome rows %q: want those seen, in report order", got)
	}
	if r := outcomes.row(t, "refused"); r["CLIENT"] != "0" || r["SERVER"] != "1" || r["TOTAL"] != "1" {
		t.Errorf("refused row %v", r)
	}
	if r := find(t, out, "FLAG").row(t, "long_syn_recv"); r["CONNECTIONS"] != "1" || !strings.HasPrefix(r["MEANING"], "handshake waited long") {
		t.Errorf("long_syn_recv row %v", r)
	}
	lat := find(t, out, "LATENCY")
	if r := lat.row(t, "client handshake (SYN_SENT to ESTABLISHED)"); r["N"] != "1" || r["P50"] != "122us" || r["MAX"] != "122us" {
		t.Errorf("handshake row %v", r)
	}
	if r := lat.row(t, "server SYN_RECV stay (SYN-ACK to final ACK)"); r["N"] != "1" || r["MAX"] != "3.00s" {
		t.Errorf("SYN_RECV row %v", r)
	}
	l := find(t, out, "LISTENER").row(t, "10.0.0.1:80")
	for k, v := range map[string]string{"OWNER": "srv/2 in docker:3f2a1b4c5d6e", "PEAK QUEUE/BACKLOG": "5/4", "QUEUE FULL": "108%", "CONNS": "6",
		"SYN-ACK RTX": "7", "ACK OVERFLOWS (SEEN)": "10", "SYN DROPS (ATTRIBUTED)": "15", "CLIENT SYN RTX": "18",
		"ABANDONED": "8", "RESETS": "9", "SYN_RECV P50/P99/MAX": "2us / 4us / 5us"} {
		if l[k] != v {
			t.Errorf("listener %s %q, want %q", k, l[k], v)
		}
	}
	if r := find(t, out, "TIME_WAIT TOWARD").row(t, "10.0.0.2 -> 10.0.0.1:80"); r["PEAK"] != "2" || r["NOW"] != "1" || r["KERNEL NOW"] != "1" ||
		r["LOCAL PORTS (PEAK SHARE)"] != "4 (50%)" || r["WARNING"] != "passed 80% of ports" {
		t.Errorf("TIME_WAIT row %v", r)
	}
	if r := find(t, out, "KERNEL COUNTER").row(t, "TcpExt.ListenOverflows"); r["NETNS"] != "1 (new)" || r["DELTA"] != "4" ||
		r["MEANING"] != "4 times a listener's accept queue was full (SYNs or final ACKs dropped); 3 not attributed to one listener" {
		t.Errorf("counter row %v", r)
	}
	if got := find(t, out, "PEER").column("PEER"); len(got) != 3 || !slices.Contains(got, "10.0.0.3") {
		t.Errorf("peers %q", got)
	}
}

// A quiet recording: no warning, and no table for what did not happen.
func TestSummaryTablesLeaveOutWhatDidNotHappen(t *testing.T) {
	t0 := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	conns := []tracer.Connection{{ID: 1, Role: tracer.RoleClient, Outcome: tracer.OutcomeClosed, Start: t0, End: t0,
		HandshakeUs: -1, SynRecvUs: -1}}
	x := Extra{
		Listeners: []ListenerRow{{ID: 5, Local: netip.MustParseAddrPort("10.0.0.1:80")}},             // saw nothing
		TimeWait:  []TimeWaitPressure{{TimeWaitDest: tracer.TimeWaitDest{Peak: 1}, KernelCount: -1}}, // below 2, not warned
	}
	out := render(t, func(b *strings.Builder) error { return SummaryTables(b, statsOf(conns), x) })
	if got := headers(out); !slices.Equal(got, []string{"OUTCOME"}) {
		t.Errorf("tables %q, want only OUTCOME:\n%s", got, out)
	}
	if strings.Contains(out, "WARNING") || !strings.Contains(out, "; lost events: 0\n") {
		t.Errorf("a quiet summary:\n%s", out)
	}
	if r := find(t, out, "OUTCOME").row(t, "closed"); r["CLIENT"] != "1" || r["SERVER"] != "0" || r["TOTAL"] != "1" {
		t.Errorf("closed row %v", r)
	}
}

func TestTimelineTable(t *testing.T) {
	c := fullRecords().conns[0]
	out := render(t, func(b *strings.Builder) error { return TimelineTable(b, &c) })
	lines := strings.SplitN(out, "\n", 5)
	if lines[0] != "connection 4834: client 10.0.0.2:40000 -> 10.0.0.1:80 wrk/100 in containerd:3f2a1b4c5d6e, netns 4026531833" ||
		lines[1] != "cgroup /kubepods.slice/kubepods-pod"+testPodU+".slice/cri-containerd-"+testContainer+".scope"+
			" (containerd container "+testContainer+", pod "+testPod+", unit wrk.service)" ||
		lines[2] != "outcome time_wait, closed by local, flags [reset_received,time_wait], peer 4835" ||
		!strings.HasPrefix(lines[3], "started ") || !strings.HasSuffix(lines[3], "; SYN x1, SYN-ACK x2, data rtx x3, FIN rtx x4, handshake 122us, lived 279us") {
		t.Errorf("header lines:\n%s", strings.Join(lines[:4], "\n"))
	}
	tb := find(t, out, "OFFSET")
	if want := []string{"OFFSET", "STATE OR EVENT", "DETAIL", "TIME IN PREVIOUS STATE"}; !slices.Equal(tb.header, want) {
		t.Errorf("header %q", tb.header)
	}
	if got := tb.column("STATE OR EVENT"); !slices.Equal(got, []string{"ESTABLISHED -> CLOSE", "CLOSE -> SYN_SENT", "SYN_SENT -> ESTABLISHED", "time_wait"}) {
		t.Errorf("steps %q: one a timeline item, state changes as from -> to", got)
	}
	if r := tb.row(t, "+1us"); r["DETAIL"] != "d, reason TCP_ABORT_ON_CLOSE, ECONNRESET" || r["TIME IN PREVIOUS STATE"] != "7us in ESTABLISHED" {
		t.Errorf("full item row %v", r)
	}
	if r := tb.row(t, "+279us"); r["DETAIL"] != "until later, in TIME_WAIT" || r["TIME IN PREVIOUS STATE"] != "" {
		t.Errorf("time_wait row %v: a state that is not a change is named \"in\"", r)
	}
}

// Listeners: the busiest first; one that saw nothing is left out; an
// unknown owner and an unsampled queue are dashes.
func TestListenerTable(t *testing.T) {
	ls := []ListenerRow{
		{Local: netip.MustParseAddrPort("10.0.0.1:80"), Connections: 1, Backlog: 128, SynRecv: Quantiles{P50: -1, P99: -1, Max: -1}},
		{Local: netip.MustParseAddrPort("10.0.0.1:81")},
		{Local: netip.MustParseAddrPort("[2001:db8::1]:443"), Connections: 9, PID: 7, Comm: "nginx", QueueSamples: 4, FullSamples: 1,
			SynRecv: Quantiles{P50: 1500, P99: 2_000_000, Max: 3_000_000}},
		{Local: netip.AddrPortFrom(netip.Addr{}, 82), ClientSynRetransmits: 2, SynRecv: Quantiles{P50: -1, P99: -1, Max: -1}},
	}
	out := render(t, func(b *strings.Builder) error { return ListenerTable(b, ls) })
	tb := find(t, out, "LISTENER")
	if got := tb.column("LISTENER"); !slices.Equal(got, []string{"[2001:db8::1]:443", "10.0.0.1:80", "*:82"}) {
		t.Errorf("listeners %q, want the busiest first and the idle one left out", got)
	}
	if r := tb.row(t, "[2001:db8::1]:443"); r["OWNER"] != "nginx/7" || r["QUEUE FULL"] != "25%" || r["SYN_RECV P50/P99/MAX"] != "1.5ms / 2.00s / 3.00s" {
		t.Errorf("busy listener %v", r)
	}
	if r := tb.row(t, "10.0.0.1:80"); r["OWNER"] != "-" || r["QUEUE FULL"] != "-" || r["PEAK QUEUE/BACKLOG"] != "0/128" || r["SYN_RECV P50/P99/MAX"] != "- / - / -" {
		t.Errorf("quiet listener %v", r)
	}
	if out := render(t, func(b *strings.Builder) error { return ListenerTable(b, ls[1:2]) }); out != "" {
		t.Errorf("only idle listeners: %q, want nothing", out)
	}
}

func TestTimeWaitTable(t *testing.T) {
	key := tracer.TimeWaitKey{Local: netip.MustParseAddr("10.0.0.2"), Remote: netip.MustParseAddrPort("10.0.0.1:80")}
	ts := []TimeWaitPressure{
		{TimeWaitDest: tracer.TimeWaitDest{Key: key, Peak: 3, Now: 0}, KernelCount: -1},
		{TimeWaitDest: tracer.TimeWaitDest{Key: tracer.TimeWaitKey{Local: key.Local, Remote: netip.MustParseAddrPort("10.0.0.9:80")}, Peak: 1}, KernelCount: 0},
	}
	out := render(t, func(b *strings.Builder) error { return TimeWaitTable(b, ts) })
	tb := find(t, out, "TIME_WAIT TOWARD")
	if len(tb.rows) != 1 {
		t.Errorf("rows %q, want the destination with a peak of 1 left out", tb.rows)
	}
	if r := tb.row(t, "10.0.0.2 -> 10.0.0.1:80"); r["PEAK"] != "3" || r["NOW"] != "0" || r["KERNEL NOW"] != "-" || r["LOCAL PORTS (PEAK SHARE)"] != "?" || r["WARNING"] != "" {
		t.Errorf("row %v: unknown kernel count and ports", r)
	}
}

func TestCounterTable(t *testing.T) {
	zero := uint64(0)
	out := render(t, func(b *strings.Builder) error {
		return CounterTable(b, []CounterDelta{
			{NetNS: 4026531833, Counter: "TcpExt.ListenDrops", Delta: 2, Unattributed: &zero},
			{NetNS: 7, Counter: "TcpExt.NotExplained", Delta: 1},
		})
	})
	tb := find(t, out, "KERNEL COUNTER")
	if want := []string{"KERNEL COUNTER", "NETNS", "DELTA", "MEANING"}; !slices.Equal(tb.header, want) {
		t.Errorf("header %q", tb.header)
	}
	if r := tb.row(t, "TcpExt.ListenDrops"); r["NETNS"] != "4026531833" || r["DELTA"] != "2" ||
		r["MEANING"] != "2 packets dropped by listeners (includes the overflows)" {
		t.Errorf("row %v: nothing unattributed is not mentioned", r)
	}
	if r := tb.row(t, "TcpExt.NotExplained"); r["MEANING"] != "" {
		t.Errorf("unknown counter %v", r)
	}
	if out := render(t, func(b *strings.Builder) error { return CounterTable(b, nil) }); out != "" {
		t.Errorf("no counter moved: %q, want nothing", out)
	}
}

// TestCheckTableRows: without privileges the BPF features are unknown; a
// missing tracepoint says what is lost, or that tracing cannot work.
func TestCheckTableRows(t *testing.T) {
	f := tracer.Features{Kernel: "6.18", CapBPF: true, Hooks: []tracer.Hook{
		{Tracepoint: "sock/inet_sock_set_state", Required: true, Degrades: "every connection"},
		{Tracepoint: "tcp/tcp_send_reset", Degrades: "resets sent", Present: false},
	}}
	out := render(t, func(b *strings.Builder) error { return CheckTable(b, f, AttachTrial{Why: "needs root"}) })
	tb := find(t, out, "CHECK")
	if want := []string{"CHECK", "STATUS", "DETAIL"}; !slices.Equal(tb.header, want) {
		t.Errorf("header %q", tb.header)
	}
	for key, want := range map[string][2]string{
		"kernel":                              {"ok", "6.18"},
		"privileges":                          {"MISSING", "CAP_BPF=true CAP_PERFMON=false CAP_SYS_ADMIN=false: run as root, or grant CAP_BPF and CAP_PERFMON"},
		"kernel BTF":                          {"MISSING", "cannot load programs: no BTF at /sys/kernel/btf/vmlinux (needs CONFIG_DEBUG_INFO_BTF=y)"},
		"tracefs":                             {"unused", "not mounted; not needed: tcpscope attaches BTF-typed tracepoints"},
		"BPF features":                        {"unknown", "probing needs the privileges above"},
		"tracepoint sock/inet_sock_set_state": {"MISSING", "cannot trace: every connection"},
		"tracepoint tcp/tcp_send_reset":       {"MISSING", "lost: resets sent"},
	} {
		if r := tb.row(t, key); r["STATUS"] != want[0] || r["DETAIL"] != want[1] {
			t.Errorf("%s: %q %q, want %q %q", key, r["STATUS"], r["DETAIL"], want[0], want[1])
		}
	}
}

// The owner as tables show it: a container wins over a unit; a cgroup
// with neither adds nothing; an id the resolver could not name is told.
func TestOwnerName(t *testing.T) {
	docker := cgroups.Parse("/system.slice/docker-" + testContainer + ".scope")
	unit := cgroups.Parse("/system.slice/nginx.service")
	plain := cgroups.Parse("/tcpscope/plain")
	for _, tc := range []struct {
		comm string
		pid  uint32
		cg   cgroups.Info
		want string
	}{
		{"nginx", 1234, docker, "nginx/1234 in docker:3f2a1b4c5d6e"},
		{"nginx", 1234, unit, "nginx/1234 (unit nginx.service)"},
		{"nginx", 1234, plain, "nginx/1234"},
		{"", 0, docker, "- in docker:3f2a1b4c5d6e"},
		{"", 0, cgroups.Info{}, "-"},
	} {
		if got := OwnerName(tc.comm, tc.pid, &tc.cg); got != tc.want {
			t.Errorf("OwnerName(%q, %d, %q) = %q, want %q", tc.comm, tc.pid, tc.cg.Path, got, tc.want)
		}
	}
	if got := cgroupLine(42, &cgroups.Info{}); got != "cgroup id 42 (path not found)" {
		t.Errorf("an unnamed id: %q", got)
	}
	if got := cgroupLine(42, &plain); got != "cgroup /tcpscope/plain" {
		t.Errorf("a plain path: %q", got)
	}
	if got := cgroupLine(0, &cgroups.Info{}); got != "" {
		t.Errorf("no cgroup: %q", got)
	}
}
