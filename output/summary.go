package output

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/cgroups"
)

// Duration renders microseconds for people: 850us, 3.2ms, 3.03s.
func Duration(us int64) string {
	switch {
	case us < 0:
		return "-"
	case us < 1000:
		return fmt.Sprintf("%dus", us)
	case us < 1_000_000:
		return strconv.FormatFloat(float64(us)/1000, 'g', 3, 64) + "ms"
	}
	return fmt.Sprintf("%.2fs", float64(us)/1e6)
}

// FlaggedLine is the one line printed when a flagged connection ends: time,
// role, local -> remote, owner, outcome, flags and the durations that matter.
func FlaggedLine(c *tracer.Connection) string {
	var b strings.Builder
	b.WriteString(c.End.Local().Format("15:04:05.000"))
	fmt.Fprintf(&b, " %-6s %s -> %s", c.Role, Endpoint(c.Local), Endpoint(c.Remote))
	if c.Comm != "" || c.PID != 0 || c.Cgroup.Path != "" {
		b.WriteString(" " + OwnerName(c.Comm, c.PID, &c.Cgroup))
	}
	fmt.Fprintf(&b, " %s", c.Outcome)
	if c.Errno != 0 {
		fmt.Fprintf(&b, " (%s)", c.Errno)
	}
	fmt.Fprintf(&b, " [%s]", joinFlags(c.Flags))
	if d := Details(c); d != "" {
		b.WriteString(" " + d)
	}
	return b.String()
}

// OwnerName renders who owns a socket: "nginx/1234", and where it runs when
// its cgroup says: "nginx/1234 in docker:3f2a1b4c5d6e" (a container, its
// id cut to 12 digits as docker ps shows it), "nginx/1234 (unit
// nginx.service)" (a systemd service). "-" when nothing is known.
func OwnerName(comm string, pid uint32, cg *cgroups.Info) string {
	s := "-"
	if comm != "" || pid != 0 {
		s = orDash(comm) + "/" + strconv.FormatUint(uint64(pid), 10)
	}
	switch {
	case cg.ContainerID != "":
		return s + " in " + cg.Short()
	case cg.Unit != "":
		return s + " (unit " + cg.Unit + ")"
	}
	return s
}

// cgroupLine is the owner's cgroup as the timeline's heading tells it:
// "cgroup /system.slice/docker-<id>.scope (docker container 3f2a…, pod
// <uid>)"; "" when unknown.
func cgroupLine(id uint64, cg *cgroups.Info) string {
	if id == 0 && cg.Path == "" {
		return ""
	}
	path := cg.Path
	if path == "" {
		path = fmt.Sprintf("id %d (path not found)", id)
	}
	var parts []string
	if cg.ContainerID != "" {
		parts = append(parts, cg.Runtime+" container "+cg.ContainerID)
	}
	if cg.PodUID != "" {
		parts = append(parts, "pod "+cg.PodUID)
	}
	if cg.Unit != "" {
		parts = append(parts, "unit "+cg.Unit)
	}
	if len(parts) == 0 {
		return "cgroup " + path
	}
	return "cgroup " + path + " (" + strings.Join(parts, ", ") + ")"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Details lists a connection's telling figures: "SYN-ACK x2, SYN_RECV 3.03s".
func Details(c *tracer.Connection) string {
	var parts []string
	r := c.Retransmits
	if r.Syn > 0 {
		parts = append(parts, fmt.Sprintf("SYN x%d", r.Syn))
	}
	if r.SynAck > 0 {
		parts = append(parts, fmt.Sprintf("SYN-ACK x%d", r.SynAck))
	}
	if r.Data > 0 {
		parts = append(parts, fmt.Sprintf("data rtx x%d", r.Data))
	}
	if r.Fin > 0 {
		parts = append(parts, fmt.Sprintf("FIN rtx x%d", r.Fin))
	}
	if c.Role == tracer.RoleServer && c.SynRecvUs >= 0 && c.SynRecvHow != tracer.SynRecvFromChildAge {
		parts = append(parts, "SYN_RECV "+Duration(c.SynRecvUs))
	}
	if c.Role == tracer.RoleClient && c.HandshakeUs >= 0 {
		parts = append(parts, "handshake "+Duration(c.HandshakeUs))
	}
	for _, it := range c.Timeline {
		if it.Kind == tracer.ItemResetSent && it.HasReason {
			if it.State == tracer.StateListen {
				parts = append(parts, "RST sent by the listener: "+it.Reason.String())
			} else {
				parts = append(parts, "RST sent: "+it.Reason.String())
			}
			break
		}
	}
	parts = append(parts, Lifetime(c))
	return strings.Join(parts, ", ")
}

// Lifetime says how long a connection lived, as far as the trace knows:
// "lived 3.07s"; "lived ≥ 2s" for one still open when tracing stopped;
// "seen for ≥ 2s" for one open before tracing started, whose start is
// unknown (its record starts at its first event).
func Lifetime(c *tracer.Connection) string {
	switch {
	case c.Has(tracer.FlagPreexisting):
		return "seen for ≥ " + Duration(c.DurationUs)
	case c.Outcome == tracer.OutcomeOpen:
		return "lived ≥ " + Duration(c.DurationUs)
	}
	return "lived " + Duration(c.DurationUs)
}

func recursionLost(rs []tracer.RecursionMisses) uint64 {
	var n uint64
	for _, r := range rs {
		n += r.Lost()
	}
	return n
}

// SummaryTables renders the end-of-recording summary.
func SummaryTables(w io.Writer, s *tracer.Stats, x Extra) error {
	summaryHeader(w, s, x)
	FindingsText(w, x.Findings)
	for _, t := range SummaryTableData(s, x) {
		if err := t.Render(w); err != nil {
			return err
		}
	}
	return nil
}

// Table is one table's data: the text report draws it in ASCII, the HTML
// report as an HTML table, from the same rows.
type Table struct {
	Title  string // what it shows, for a heading
	Header []string
	Rows   [][]string
}

// Render draws the table in ASCII; nothing when it has no rows.
func (t Table) Render(w io.Writer) error { return tableIfAny(w, t.Header, t.Rows) }

// SummaryTableData is the summary's tables, in report order, the empty
// ones left out.
func SummaryTableData(s *tracer.Stats, x Extra) []Table {
	var out []Table
	for _, t := range []Table{outcomeTable(s), flagTable(s), latencyTable(s), ListenerTableData(x.Listeners),
		TimeWaitTableData(x.TimeWait), CounterTableData(x.Counters), peerTable(s)} {
		if len(t.Rows) > 0 {
			out = append(out, t)
		}
	}
	return out
}

// summaryHeader is the line that counts the connections, and a warning for
// each way the recording may be incomplete.
func summaryHeader(w io.Writer, s *tracer.Stats, x Extra) {
	fmt.Fprintf(w, "\n%d connections", s.Connections)
	if !s.Start.IsZero() {
		fmt.Fprintf(w, " from %s to %s", s.Start.Local().Format("15:04:05"), s.End.Local().Format("15:04:05"))
	}
	fmt.Fprintf(w, "; lost events: %d", x.LostEvents)
	if x.LostRecords > 0 {
		fmt.Fprintf(w, ", lost connection records: %d", x.LostRecords)
	}
	fmt.Fprintln(w)
	if x.LostEvents > 0 {
		fmt.Fprintf(w, "WARNING: %d kernel events were lost (ring buffer full): connections open then are flagged incomplete\n", x.LostEvents)
	}
	if x.LostRecords > 0 {
		fmt.Fprintf(w, "WARNING: %d connection records, each up to %d events of one socket, were lost (ring buffer full): connections open then are flagged incomplete\n", x.LostRecords, tracer.ConnSlots)
	}
	if n := x.Unreadable + x.Undecoded + recursionLost(x.Recursion); n > 0 {
		fmt.Fprintf(w, "WARNING: %d more kernel events were lost (%d unreadable, %d undecoded, %d skipped by the kernel's recursion guard): connections open then are flagged incomplete\n",
			n, x.Unreadable, x.Undecoded, recursionLost(x.Recursion))
	}
	if x.Gaps > 0 {
		fmt.Fprintf(w, "WARNING: %d state transitions are missing from their connections (state_gaps), which are flagged incomplete\n", x.Gaps)
	}
	if x.Evicted > 0 {
		fmt.Fprintf(w, "WARNING: %d connections were written early, flagged incomplete: more were open than --max-connections\n", x.Evicted)
	}
}

// tableIfAny draws a table only when it has rows.
func tableIfAny(w io.Writer, header []string, rows [][]string) error {
	if len(rows) == 0 {
		return nil
	}
	return renderTable(w, header, rows)
}

func outcomeTable(s *tracer.Stats) Table {
	var rows [][]string
	for _, o := range tracer.AllOutcomes {
		cl, sv := s.ByRole[tracer.RoleClient][o], s.ByRole[tracer.RoleServer][o]
		if cl+sv == 0 {
			continue
		}
		rows = append(rows, []string{o.String(), strconv.FormatUint(cl, 10), strconv.FormatUint(sv, 10), strconv.FormatUint(cl+sv, 10)})
	}
	return Table{"Outcomes", []string{"OUTCOME", "CLIENT", "SERVER", "TOTAL"}, rows}
}

func flagTable(s *tracer.Stats) Table {
	var rows [][]string
	for _, f := range tracer.AllFlags {
		if n := s.ByFlag[f]; n > 0 {
			rows = append(rows, []string{f.String(), strconv.FormatUint(n, 10), FlagMeaning(f)})
		}
	}
	return Table{"Flags", []string{"FLAG", "CONNECTIONS", "MEANING"}, rows}
}

func latencyTable(s *tracer.Stats) Table {
	var rows [][]string
	for _, h := range []struct {
		name string
		h    *tracer.Histogram
	}{{"client handshake (SYN_SENT to ESTABLISHED)", &s.Handshake}, {"server SYN_RECV stay (SYN-ACK to final ACK)", &s.SynRecv}} {
		if h.h.Count() == 0 {
			continue
		}
		rows = append(rows, []string{h.name, strconv.FormatUint(h.h.Count(), 10), Duration(h.h.Quantile(0.5)),
			Duration(h.h.Quantile(0.9)), Duration(h.h.Quantile(0.99)), Duration(h.h.Max())})
	}
	return Table{"Handshake latency", []string{"LATENCY", "N", "P50", "P90", "P99", "MAX"}, rows}
}

func peerTable(s *tracer.Stats) Table {
	var rows [][]string
	for _, p := range s.TopPeers(5) {
		rows = append(rows, []string{p.Addr, strconv.FormatUint(p.Count, 10)})
	}
	return Table{"Peers with the most flagged connections", []string{"PEER", "FLAGGED CONNECTIONS"}, rows}
}

// FlagMeaning says what a flag means, in a line.
func FlagMeaning(f tracer.Flag) string { return flagMeaning[f] }

var flagMeaning = map[tracer.Flag]string{
	tracer.FlagSynRetransmitted:    "client resent its SYN: SYN or SYN-ACK lost, or the listener dropped it",
	tracer.FlagSynAckRetransmitted: "server resent its SYN-ACK: the client's final ACK did not arrive in time",
	tracer.FlagLongSynRecv:         "handshake waited long on the server (SYN-ACK to final ACK)",
	tracer.FlagResetSent:           "this end sent a RST",
	tracer.FlagResetReceived:       "this end received a RST",
	tracer.FlagRefused:             "connect refused: nothing listened on the port",
	tracer.FlagHandshakeTimeout:    "handshake never completed",
	tracer.FlagDataRetransmitted:   "segments carrying data were resent (a FIN riding on data included)",
	tracer.FlagFinRetransmitted:    "a bare FIN was resent: its ACK came late or not at all (often a tail loss probe); only the close waited",
	tracer.FlagTimeWait:            "this end closed first and holds TIME_WAIT for 60s",
	tracer.FlagPreexisting:         "already open when tracing started",
	tracer.FlagIncomplete:          "events of this connection may be missing",
	tracer.FlagListenOverflow:      "its final ACK was dropped: the listener's accept queue was full",
	tracer.FlagSyncookie:           "completed through a SYN cookie: the listener's SYN queue was full",
	tracer.FlagPortExhausted:       "connect() found no free local port (EADDRNOTAVAIL); no packet sent",
	tracer.FlagTimeWaitKilled:      "its TIME_WAIT ended early: a reset destroyed the timewait sock and freed the port",
}

// TimelineTable prints one connection's whole timeline.
func TimelineTable(w io.Writer, c *tracer.Connection) error {
	head, t := TimelineData(c)
	for _, line := range head {
		fmt.Fprintln(w, line)
	}
	return renderTable(w, t.Header, t.Rows)
}

// TimelineData is what TimelineTable shows: its heading lines and its
// table, a row per timeline item.
func TimelineData(c *tracer.Connection) (head []string, t Table) {
	var b strings.Builder
	fmt.Fprintf(&b, "connection %d: %s %s -> %s", c.ID, c.Role, Endpoint(c.Local), Endpoint(c.Remote))
	if c.Comm != "" || c.PID != 0 || c.Cgroup.Path != "" {
		fmt.Fprintf(&b, " %s", OwnerName(c.Comm, c.PID, &c.Cgroup))
	}
	fmt.Fprintf(&b, ", netns %d", c.NetNS)
	head = append(head, b.String())
	if line := cgroupLine(c.CgroupID, &c.Cgroup); line != "" {
		head = append(head, line)
	}
	b.Reset()
	fmt.Fprintf(&b, "outcome %s, closed by %s, flags [%s]", c.Outcome, orDash(c.ClosedBy.String()), joinFlags(c.Flags))
	if c.PeerID != 0 {
		fmt.Fprintf(&b, ", peer %d", c.PeerID)
	}
	head = append(head, b.String())
	started := "started"
	if c.Has(tracer.FlagPreexisting) {
		started = "open before tracing, first seen"
	}
	// Details ends with the lifetime.
	head = append(head, fmt.Sprintf("%s %s; %s", started, c.Start.Local().Format(time.RFC3339Nano), Details(c)))
	t = Table{Title: "Timeline", Header: []string{"OFFSET", "STATE OR EVENT", "DETAIL", "TIME IN PREVIOUS STATE"}}
	for i := range c.Timeline {
		t.Rows = append(t.Rows, timelineRow(&c.Timeline[i]))
	}
	return head, t
}

func timelineRow(it *tracer.Item) []string {
	step := it.Kind.String()
	if it.Kind == tracer.ItemState {
		step = it.From.String() + " -> " + it.To.String()
	}
	var detail []string
	if it.Detail != tracer.DetailNone {
		detail = append(detail, DetailText(it))
	}
	if it.State != 0 && it.Kind != tracer.ItemState {
		detail = append(detail, "in "+it.State.String())
	}
	if it.HasReason {
		detail = append(detail, "reason "+it.Reason.String())
	}
	if it.Errno != 0 {
		detail = append(detail, it.Errno.String())
	}
	prev := ""
	if it.Kind == tracer.ItemState && it.PrevStateUs > 0 {
		prev = Duration(it.PrevStateUs) + " in " + it.From.String()
	}
	return []string{"+" + Duration(it.OffsetUs), step, strings.Join(detail, ", "), prev}
}

func joinFlags(fs tracer.FlagSet) string { return fs.String() }
