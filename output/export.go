package output

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/cgroups"
	"github.com/tcpscope/tcpscope/tracer/findings"
)

// Extra is what a summary holds besides the connection statistics.
type Extra struct {
	End        time.Time
	LostEvents uint64
	// LostRecords counts connection records (aggregated mode) the kernel
	// dropped because the ring buffer was full.
	LostRecords uint64
	Orphans     uint64
	Evicted     uint64 // connections written early, over --max-connections
	// Unreadable counts events the kernel side dropped because their
	// packet could not be read; Undecoded, records user space could not
	// decode.
	Unreadable, Undecoded uint64
	// Discarded counts server children the kernel destroyed at birth
	// (tracer.Builder.Discarded): Tcp.PassiveOpens counts them, no record
	// stands for them.
	Discarded uint64
	// Gaps counts state events that skipped a state (tracer.Builder.Gaps).
	Gaps uint64
	// Recursion is, per tracepoint, what the kernel's recursion guard
	// skipped and how much of it the _nested programs caught.
	Recursion []tracer.RecursionMisses
	Counters  []CounterDelta
	Listeners []ListenerRow
	TimeWait  []TimeWaitPressure
	Sysctls   []findings.Sysctl
	// Findings, most severe first (findings.Accumulator.Finish).
	Findings []findings.Finding
	// OTLPDropped, when set (records were shipped over OTLP), counts
	// connection records the collector never took: queue full, export
	// failed after its retries, or still queued at the end.
	OTLPDropped *uint64
}

// AppendConnectionJSON appends one connection as a JSON object (no newline).
func AppendConnectionJSON(b []byte, c *tracer.Connection) []byte {
	return appendConnection(b, c, true)
}

// appendConnection appends a connection; withType false leaves out its
// "type" (a connection nested in a merged file's pair).
func appendConnection(b []byte, c *tracer.Connection, withType bool) []byte {
	o := newObj(b)
	if withType {
		o.str("type", RecordConnection)
	}
	o.uint("id", c.ID)
	optUint(&o, "peer_id", c.PeerID)
	optUint(&o, "listener_id", c.ListenerID)
	o.str("role", c.Role.String())
	o.str("family", c.Family.String())
	o.addrOrNull("local_addr", c.Local.Addr())
	o.addrOrNull("remote_addr", c.Remote.Addr())
	o.uint("local_port", uint64(c.Local.Port()))
	o.uint("remote_port", uint64(c.Remote.Port()))
	o.uint("netns", uint64(c.NetNS))
	o.uint("pid", uint64(c.PID))
	o.str("comm", c.Comm)
	o.cgroup(c.CgroupID, &c.Cgroup)
	o.time("start", c.Start)
	o.time("end", c.End)
	o.int("duration_us", c.DurationUs)
	optDuration(&o, "handshake_us", c.HandshakeUs)
	optDuration(&o, "syn_recv_us", c.SynRecvUs)
	o.strOmit("syn_recv_method", c.SynRecvHow.String())
	o.key("retransmits")
	r := newObj(o.b)
	r.uint("syn", uint64(c.Retransmits.Syn))
	r.uint("synack", uint64(c.Retransmits.SynAck))
	r.uint("data", uint64(c.Retransmits.Data))
	r.uint("fin", uint64(c.Retransmits.Fin))
	o.b = r.end()
	o.uint("bytes_received", c.BytesReceived)
	o.uint("bytes_acked", c.BytesAcked)
	o.str("closed_by", c.ClosedBy.String())
	o.str("outcome", c.Outcome.String())
	o.errno("errno", c.Errno)
	o.key("flags")
	o.b = append(o.b, '[')
	sep := false
	for f := range c.Flags.All() {
		if sep {
			o.b = append(o.b, ',')
		}
		sep = true
		o.b = appendString(o.b, f.String())
	}
	o.b = append(o.b, ']')
	o.key("timeline")
	o.b = append(o.b, '[')
	for i := range c.Timeline {
		if i > 0 {
			o.b = append(o.b, ',')
		}
		o.b = appendItem(o.b, &c.Timeline[i])
	}
	o.b = append(o.b, ']')
	return o.end()
}

func appendItem(b []byte, it *tracer.Item) []byte {
	o := newObj(b)
	o.time("at", it.At)
	o.int("offset_us", it.OffsetUs)
	o.str("kind", it.Kind.String())
	o.state("from", it.From)
	o.state("to", it.To)
	o.state("state", it.State)
	if it.HasReason {
		o.str("reason", it.Reason.String())
	}
	o.errno("errno", it.Errno)
	o.detail(it)
	if it.PrevStateUs != 0 {
		o.int("prev_state_us", it.PrevStateUs)
	}
	return o.end()
}

// cgroup writes the owner's cgroup keys, each omitted when empty.
func (o *obj) cgroup(id uint64, cg *cgroups.Info) {
	optUint(o, "cgroup_id", id)
	o.strOmit("cgroup", cg.Path)
	o.strOmit("container_id", cg.ContainerID)
	o.strOmit("container_runtime", cg.Runtime)
	o.strOmit("pod_uid", cg.PodUID)
	o.strOmit("unit", cg.Unit)
}

// cgroupFromRecord is the inverse of obj.cgroup.
func cgroupFromRecord(path, container, runtime, pod, unit string) cgroups.Info {
	return cgroups.Info{Path: path, ContainerID: container, Runtime: runtime, PodUID: pod, Unit: unit}
}

// state writes a state, omitted when there is none (0).
func (o *obj) state(k string, s tracer.State) {
	if s != 0 {
		o.str(k, s.String())
	}
}

// errno writes an errno, omitted when there is none.
func (o *obj) errno(k string, e tracer.Errno) {
	if e != 0 {
		o.str(k, e.String())
	}
}

// detail writes an item's detail text, omitted when there is none. The
// texts of this build need no escaping: they go straight to the buffer.
func (o *obj) detail(it *tracer.Item) {
	switch {
	case it.Detail == tracer.DetailNone:
	case it.Detail >= tracer.DetailCount:
		o.str("detail", DetailText(it))
	default:
		o.key("detail")
		o.b = append(o.b, '"')
		o.b = appendDetail(o.b, it)
		o.b = append(o.b, '"')
	}
}

func optUint(o *obj, k string, v uint64) {
	if v != 0 {
		o.uint(k, v)
	}
}

func optDuration(o *obj, k string, us int64) {
	if us < 0 {
		o.null(k)
		return
	}
	o.int(k, us)
}

// AppendSummaryJSON appends the summary object (no newline).
func AppendSummaryJSON(b []byte, s *tracer.Stats, meta Meta, x Extra, withType bool) []byte {
	o := newObj(b)
	if withType {
		o.str("type", RecordSummary)
	}
	o.time("start", meta.Start)
	o.time("end", x.End)
	o.uint("connections", s.Connections)
	o.key("by_outcome")
	o.b = appendCounts(o.b, outcomeNames(), func(k string) uint64 { return s.ByOutcome[outcomeNamed(k)] })
	o.key("by_role")
	r := newObj(o.b)
	for _, role := range []tracer.Role{tracer.RoleClient, tracer.RoleServer} {
		r.key(role.String())
		r.b = appendCounts(r.b, outcomeNames(), func(k string) uint64 { return s.ByRole[role][outcomeNamed(k)] })
	}
	o.b = r.end()
	o.key("flags")
	o.b = appendCounts(o.b, flagNames(), func(k string) uint64 { f, _ := tracer.ParseFlag(k); return s.ByFlag[f] })
	o.key("handshake_us")
	o.b = appendQuantiles(o.b, &s.Handshake)
	o.key("syn_recv_us")
	o.b = appendQuantiles(o.b, &s.SynRecv)
	o.key("top_flagged_peers")
	o.b = append(o.b, '[')
	for i, p := range s.TopPeers(10) {
		if i > 0 {
			o.b = append(o.b, ',')
		}
		po := newObj(o.b)
		po.str("addr", p.Addr)
		po.uint("count", p.Count)
		o.b = po.end()
	}
	o.b = append(o.b, ']')
	o.uint("lost_events", x.LostEvents)
	o.uint("lost_records", x.LostRecords)
	o.uint("unmatched_events", x.Orphans)
	o.uint("evicted_connections", x.Evicted)
	o.uint("unreadable_events", x.Unreadable)
	o.uint("undecoded_events", x.Undecoded)
	o.uint("discarded_children", x.Discarded)
	o.uint("state_gaps", x.Gaps)
	if x.OTLPDropped != nil {
		o.uint("otlp_dropped_records", *x.OTLPDropped)
	}
	o.key("recursion_misses")
	o.b = appendRecursion(o.b, x.Recursion)
	o.key("kernel_counters")
	o.b = appendCounterDeltas(o.b, x.Counters)
	o.key("time_wait")
	o.b = appendTimeWait(o.b, x.TimeWait)
	o.key("sysctls")
	o.b = appendSysctls(o.b, x.Sysctls)
	o.key("findings")
	o.b = appendFindings(o.b, x.Findings)
	o.str("kernel", meta.Kernel)
	o.str("tcpscope", meta.Tcpscope)
	return o.end()
}

func appendSysctls(b []byte, ss []findings.Sysctl) []byte {
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		o := newObj(b)
		o.uint("netns", uint64(s.NetNS))
		o.str("name", s.Name)
		o.str("value", s.Value)
		b = o.end()
	}
	return append(b, ']')
}

func appendRecursion(b []byte, rs []tracer.RecursionMisses) []byte {
	b = append(b, '[')
	for i, r := range rs {
		if i > 0 {
			b = append(b, ',')
		}
		o := newObj(b)
		o.str("tracepoint", r.Tracepoint)
		o.str("program", r.Program)
		o.uint("misses", r.Misses)
		o.uint("handled_nested", r.Nested)
		o.uint("nested_misses", r.NestedMisses)
		o.uint("lost", r.Lost())
		b = o.end()
	}
	return append(b, ']')
}

func appendCounts(b []byte, keys []string, get func(string) uint64) []byte {
	o := newObj(b)
	for _, k := range keys {
		o.uint(k, get(k))
	}
	return o.end()
}

func appendQuantiles(b []byte, h *tracer.Histogram) []byte {
	return appendQuantileValues(b, QuantilesOf(h))
}

func appendQuantileValues(b []byte, q Quantiles) []byte {
	o := newObj(b)
	o.uint("count", q.Count)
	optDuration(&o, "p50", q.P50)
	optDuration(&o, "p90", q.P90)
	optDuration(&o, "p99", q.P99)
	optDuration(&o, "max", q.Max)
	return o.end()
}

func outcomeNames() []string {
	out := make([]string, len(tracer.AllOutcomes))
	for i, o := range tracer.AllOutcomes {
		out[i] = o.String()
	}
	return out
}

func outcomeNamed(name string) tracer.Outcome {
	o, _ := tracer.ParseOutcome(name)
	return o
}

func flagNames() []string {
	out := make([]string, len(tracer.AllFlags))
	for i, f := range tracer.AllFlags {
		out[i] = f.String()
	}
	return out
}

func appendMeta(b []byte, m Meta, withType bool) []byte {
	o := newObj(b)
	if withType {
		o.str("type", RecordMeta)
	}
	o.int("format_version", int64(m.FormatVersion))
	o.str("tcpscope", m.Tcpscope)
	o.str("kernel", m.Kernel)
	o.str("hostname", m.Hostname)
	o.time("start", m.Start)
	if len(m.Command) > 0 {
		o.key("command")
		o.b = append(o.b, '[')
		for i, a := range m.Command {
			if i > 0 {
				o.b = append(o.b, ',')
			}
			o.b = appendString(o.b, a)
		}
		o.b = append(o.b, ']')
	}
	return o.end()
}

// Export writes connections to a .jsonl or .json file (or JSONL to
// stdout for "-") as they end, and the summary at Close.
type Export struct {
	path  string // final path; "" for stdout
	tmp   string // .json: the temporary file renamed at Close
	f     *os.File
	w     io.Writer
	jsonl bool
	// zst compresses a .jsonl.zst: each Flush ends one zstd frame.
	zst     *zstd.Encoder
	zbuf    []byte
	owner   Owner
	created bool // the file did not exist before OpenExport
	started bool // Start truncated the file and wrote the header
	buf     []byte
	n       uint64 // connections written
	records uint64 // connections and listeners written
	meta    Meta
	closed  bool
	// listeners and samples of a .json document, each preceded by a
	// comma.
	listeners, samples []byte
}

// flushAt is the buffered size at which whole lines are written out.
const flushAt = 64 << 10

// zstFlushAt is flushAt for a .jsonl.zst, whose every flush is a whole
// zstd frame: larger frames compress better (about 19 times at 64 KiB,
// 24 times at 256 KiB on a load test's records), and a crash loses at most
// the one frame not yet written (the recorder also flushes on every tick).
const zstFlushAt = 256 << 10

// CreateExport opens the export (see OpenExport) and starts it. Files are
// 0600: they name addresses and processes.
func CreateExport(path string, stdout io.Writer, meta Meta) (*Export, error) {
	e, err := OpenExport(path, stdout, Owner{})
	if err != nil {
		return nil, err
	}
	if err := e.Start(meta); err != nil {
		e.Abort()
		return nil, err
	}
	return e, nil
}

// Start empties the file, restricts it to its owner (0600, handed to the
// Owner given to OpenExport) and writes the header.
func (e *Export) Start(meta Meta) error {
	meta.FormatVersion = FormatVersion
	e.meta, e.started = meta, true
	if e.f != nil {
		if err := e.f.Truncate(0); err != nil {
			return fmt.Errorf("emptying %s: %w", e.f.Name(), err)
		}
		if err := e.f.Chmod(0o600); err != nil {
			return fmt.Errorf("restricting %s to its owner: %w", e.f.Name(), err)
		}
		if e.owner.Set {
			if err := e.f.Chown(e.owner.UID, e.owner.GID); err != nil {
				return fmt.Errorf("handing %s to uid %d: %w", e.f.Name(), e.owner.UID, err)
			}
		}
	}
	if e.jsonl {
		e.buf = append(appendMeta(e.buf, e.meta, true), '\n')
	} else {
		e.buf = append(e.buf, `{"meta":`...)
		e.buf = appendMeta(e.buf, e.meta, false)
		e.buf = append(e.buf, ",\"connections\":[\n"...)
	}
	return e.Flush()
}

// WriteListener adds one listener: a line in JSONL, an entry of the
// "listeners" array of a .json document.
func (e *Export) WriteListener(l *ListenerRow) error {
	e.records++
	if !e.jsonl {
		e.listeners = AppendListenerJSON(append(e.listeners, ','), l, false)
		return nil
	}
	e.buf = append(AppendListenerJSON(e.buf, l, true), '\n')
	return nil
}

// WriteConnection adds one connection. JSONL lines reach the file whole at
// the next Flush (or when 64 KiB are buffered).
func (e *Export) WriteConnection(c *tracer.Connection) error {
	if !e.jsonl && e.n > 0 {
		e.buf = append(e.buf, ",\n"...)
	}
	e.buf = AppendConnectionJSON(e.buf, c)
	if e.jsonl {
		e.buf = append(e.buf, '\n')
	}
	e.n++
	e.records++
	if len(e.buf) >= e.flushSize() {
		return e.Flush()
	}
	return nil
}

// flushSize is the buffered size at which WriteConnection flushes.
func (e *Export) flushSize() int {
	if e.zst != nil {
		return zstFlushAt
	}
	return flushAt
}

// Flush writes the buffered whole lines with one write; in a .jsonl.zst
// as one zstd frame, so that what a crash leaves decodes up to the last
// write.
func (e *Export) Flush() error {
	if len(e.buf) == 0 {
		return nil
	}
	out := e.buf
	if e.zst != nil {
		e.zbuf = e.zst.EncodeAll(e.buf, e.zbuf[:0])
		out = e.zbuf
	}
	_, err := e.w.Write(out)
	e.buf = e.buf[:0]
	if err != nil {
		return fmt.Errorf("writing %s: %w", e.name(), err)
	}
	return nil
}

func (e *Export) name() string {
	if e.path == "" {
		return "standard output"
	}
	return e.path
}

// Close writes the summary and completes the file: a .json is synced and
// renamed into place, so it is either whole or absent.
func (e *Export) Close(s *tracer.Stats, x Extra) error {
	if e.closed {
		return nil
	}
	e.closed = true
	if e.jsonl {
		e.buf = append(AppendSummaryJSON(e.buf, s, e.meta, x, true), '\n')
	} else {
		e.buf = append(e.buf, "\n],\"listeners\":["...)
		if len(e.listeners) > 0 {
			e.buf = append(e.buf, e.listeners[1:]...)
		}
		e.buf = append(e.buf, "],\"samples\":["...)
		if len(e.samples) > 0 {
			e.buf = append(e.buf, e.samples[1:]...)
		}
		e.buf = append(e.buf, "],\"summary\":"...)
		e.buf = append(AppendSummaryJSON(e.buf, s, e.meta, x, false), "}\n"...)
	}
	err := e.Flush()
	if e.f == nil {
		return err
	}
	if err == nil {
		err = e.f.Sync()
	}
	// The temporary is renamed while still open, so the lock covers the
	// whole recording up to the rename.
	if e.tmp != "" {
		if err == nil {
			err = os.Rename(e.tmp, e.path)
		}
		if err != nil {
			os.Remove(e.tmp)
		}
	}
	if cerr := e.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("finishing %s: %w", e.name(), err)
	}
	return nil
}

// Abort drops an unfinished .json, and a .jsonl that OpenExport created
// and no record was written to (a command run could not start: the file
// would hold only its header), then closes the file (releasing its lock).
// A nil Export is fine.
func (e *Export) Abort() {
	if e == nil || e.closed {
		return
	}
	e.closed = true
	if e.tmp != "" || e.created && e.records == 0 {
		os.Remove(e.f.Name())
	}
	if e.f != nil {
		e.f.Close()
	}
}

// Path is where the export goes ("-" for stdout).
func (e *Export) Path() string {
	if e.path == "" {
		return "-"
	}
	return e.path
}
