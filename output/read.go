package output

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"time"

	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/findings"
)

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// Recording is an export read back.
type Recording struct {
	Meta        Meta
	Connections []tracer.Connection
	Listeners   []ListenerRow
	// Samples are the sample records, in file order; connections and
	// listeners are not in them, so a reader can draw a time axis from
	// these alone.
	Samples []Sample
	// Summary is nil when the recording never finished (a JSONL file cut
	// short by a crash or SIGKILL).
	Summary *SummaryRecord
	// TornLine is the line on which a last record cut short begins (a
	// full disk, or a kill in the middle of a write): it was skipped, and
	// every record before it read. 0 when the input ends with a whole one.
	TornLine int
	// Cut is set when a compressed export ends inside a zstd frame (the
	// recorder was killed while writing it, or the disk filled): every
	// whole frame was read.
	Cut bool
}

// Warnings says, a line each, what a recording read without error lacks.
func (r *Recording) Warnings(name string) []string {
	var w []string
	if r.Cut {
		w = append(w, fmt.Sprintf("%s: the compressed file is cut short inside its last zstd frame (a kill or a full disk while writing): every whole frame is read, the records of the last are lost", name))
	}
	if r.TornLine > 0 {
		w = append(w, fmt.Sprintf("%s:%d: the last record is cut short (a full disk or a kill while writing): skipped; every record before it is read", name, r.TornLine))
	}
	if r.Summary == nil {
		w = append(w, fmt.Sprintf("%s has no summary record: the recording did not finish (lost events unknown)", name))
	}
	return w
}

// Extra rebuilds the summary's kernel-side parts for the tables. Its
// Findings are the ones the file holds.
func (s *SummaryRecord) Extra() Extra {
	x := Extra{End: s.End, LostEvents: s.LostEvents, LostRecords: s.LostRecords, Orphans: s.UnmatchedEvents, Evicted: s.Evicted, Counters: s.Counters,
		Unreadable: s.Unreadable, Undecoded: s.Undecoded, Discarded: s.Discarded, Gaps: s.Gaps, OTLPDropped: s.OTLPDropped}
	for _, r := range s.Recursion {
		x.Recursion = append(x.Recursion, tracer.RecursionMisses{Tracepoint: r.Tracepoint, Program: r.Program,
			Misses: r.Misses, Nested: r.Nested, NestedMisses: r.NestedMisses})
	}
	for i := range s.TimeWait {
		x.TimeWait = append(x.TimeWait, timeWaitFromRecord(&s.TimeWait[i]))
	}
	for _, v := range s.Sysctls {
		x.Sysctls = append(x.Sysctls, findings.Sysctl{NetNS: v.NetNS, Name: v.Name, Value: v.Value})
	}
	x.Findings = findingsFromRecords(s.Findings)
	return x
}

// timeWaitFromRecord converts a "time_wait" entry; appendTimeWait is its
// inverse.
func timeWaitFromRecord(t *TimeWaitRecord) TimeWaitPressure {
	p := TimeWaitPressure{KernelCount: -1}
	if t.KernelCount != nil {
		p.KernelCount = *t.KernelCount
	}
	local, _ := netip.ParseAddr(t.LocalAddr)
	remote, _ := netip.ParseAddr(t.RemoteAddr)
	p.Key = tracer.TimeWaitKey{NetNS: t.NetNS, Local: local, Remote: netip.AddrPortFrom(remote, t.RemotePort)}
	p.Peak, p.Now, p.Ports, p.Total, p.Warned = t.Peak, t.LiveAtEnd, t.Ports, t.Entered, t.Warned
	return p
}

// connectionInput is a ConnectionRecord as the reader decodes it: the
// timeline stays raw until the options say it is wanted (timelines are
// most of a big file).
type connectionInput struct {
	ConnectionRecord
	Timeline json.RawMessage `json:"timeline"`
}

// ReadOptions tune ReadExport.
type ReadOptions struct {
	// FlaggedTimelinesOnly decodes the timeline only of connections with
	// a flag that matters (tracer.Connection.Flagged): the tables need no
	// more, and timelines are most of a big file.
	FlaggedTimelinesOnly bool
	// Strict refuses what is otherwise read with a warning: a last record
	// cut short, a compressed file cut inside a frame, and a recording
	// without its summary.
	Strict bool
	// Connection, when set, is handed each connection as it is read,
	// instead of keeping them all in Recording.Connections: reading then
	// holds one connection at a time, whatever the size of a .jsonl. The
	// connection is reused after the call returns; an error stops the
	// reading and is returned as it is.
	Connection func(*tracer.Connection) error
}

func (j *connectionInput) connection(opts ReadOptions) (tracer.Connection, error) {
	c, err := connectionFromRecord(&j.ConnectionRecord)
	if err != nil {
		return c, fmt.Errorf("connection %d: %w", j.ID, err)
	}
	if len(j.Timeline) > 0 && (!opts.FlaggedTimelinesOnly || c.Flagged()) {
		var items []ItemRecord
		if err := json.Unmarshal(j.Timeline, &items); err != nil {
			return c, fmt.Errorf("connection %d: timeline: %w", j.ID, err)
		}
		if c.Timeline, err = timelineFromRecords(items); err != nil {
			return c, fmt.Errorf("connection %d: timeline: %w", j.ID, err)
		}
	}
	return c, nil
}

// connectionFromRecord converts a connection record, but its timeline
// (timelineFromRecords), to the timeline model; AppendConnectionJSON is
// its inverse.
func connectionFromRecord(j *ConnectionRecord) (tracer.Connection, error) {
	c := tracer.Connection{
		ID: j.ID, PeerID: j.PeerID, ListenerID: j.ListenerID,
		NetNS: j.NetNS, PID: j.PID, Comm: j.Comm, Start: j.Start, End: j.End, DurationUs: j.DurationUs,
		HandshakeUs: -1, SynRecvUs: -1,
		Retransmits:   tracer.Retransmits{Syn: j.Retransmits.Syn, SynAck: j.Retransmits.SynAck, Data: j.Retransmits.Data, Fin: j.Retransmits.Fin},
		BytesReceived: j.BytesReceived, BytesAcked: j.BytesAcked,
		CgroupID: j.CgroupID, Cgroup: cgroupFromRecord(j.Cgroup, j.ContainerID, j.ContainerRuntime, j.PodUID, j.Unit),
	}
	// Unknown (-1) is null in a file, as is any negative (optDuration).
	if j.HandshakeUs != nil && *j.HandshakeUs >= 0 {
		c.HandshakeUs = *j.HandshakeUs
	}
	if j.SynRecvUs != nil && *j.SynRecvUs >= 0 {
		c.SynRecvUs = *j.SynRecvUs
	}
	if err := checkTimes(j.Start, j.End); err != nil {
		return c, err
	}
	if err := namesFromRecord(j, &c); err != nil {
		return c, err
	}
	var err error
	if c.Local, err = maybeAddrPort(j.LocalAddr, j.LocalPort); err != nil {
		return c, err
	}
	if c.Remote, err = maybeAddrPort(j.RemoteAddr, j.RemotePort); err != nil {
		return c, err
	}
	return c, nil
}

// namesFromRecord reads the connection's names into typed values: role,
// family, syn_recv_method, closed_by, outcome, errno, flags.
func namesFromRecord(j *ConnectionRecord, c *tracer.Connection) error {
	var ok bool
	if c.Role, ok = tracer.ParseRole(j.Role); !ok || c.Role == tracer.RoleUnknown {
		return fmt.Errorf("unknown role %q", j.Role)
	}
	if c.Outcome, ok = tracer.ParseOutcome(j.Outcome); !ok {
		return fmt.Errorf("unknown outcome %q", j.Outcome)
	}
	if c.Family, ok = tracer.ParseFamily(j.Family); !ok {
		return fmt.Errorf("unknown family %q", j.Family)
	}
	if c.SynRecvHow, ok = tracer.ParseSynRecvHow(j.SynRecvMethod); !ok {
		return fmt.Errorf("unknown syn_recv_method %q", j.SynRecvMethod)
	}
	if c.ClosedBy, ok = tracer.ParseClosedBy(j.ClosedBy); !ok {
		return fmt.Errorf("unknown closed_by %q", j.ClosedBy)
	}
	if j.Errno != "" {
		if c.Errno, ok = tracer.ParseErrno(j.Errno); !ok {
			return fmt.Errorf("unknown errno %q", j.Errno)
		}
	}
	for _, name := range j.Flags {
		f, ok := tracer.ParseFlag(name)
		if !ok {
			return fmt.Errorf("unknown flag %q", name)
		}
		c.Flags = c.Flags.With(f)
	}
	return nil
}

// timelineFromRecords converts a connection's "timeline"; an empty one is
// nil.
func timelineFromRecords(items []ItemRecord) ([]tracer.Item, error) {
	if len(items) == 0 {
		return nil, nil
	}
	out := make([]tracer.Item, len(items))
	for i := range items {
		if err := itemFromRecord(&items[i], &out[i]); err != nil {
			return nil, fmt.Errorf("item %d: %w", i, err)
		}
	}
	return out, nil
}

// itemFromRecord converts one timeline item; appendItem is its inverse.
func itemFromRecord(j *ItemRecord, it *tracer.Item) error {
	if err := checkTimes(j.At); err != nil {
		return err
	}
	*it = tracer.Item{At: j.At, OffsetUs: j.OffsetUs, PrevStateUs: j.PrevStateUs}
	var ok bool
	if it.Kind, ok = tracer.ParseItemKind(j.Kind); !ok {
		return fmt.Errorf("unknown kind %q", j.Kind)
	}
	for _, s := range []struct {
		name string
		to   *tracer.State
	}{{j.From, &it.From}, {j.To, &it.To}, {j.State, &it.State}} {
		if s.name == "" {
			continue
		}
		if *s.to, ok = tracer.ParseState(s.name); !ok {
			return fmt.Errorf("unknown state %q", s.name)
		}
	}
	if j.Reason != "" {
		if it.Reason, ok = tracer.ParseRSTReason(j.Reason); !ok {
			return fmt.Errorf("unknown reason %q", j.Reason)
		}
		it.HasReason = true
	}
	if j.Errno != "" {
		if it.Errno, ok = tracer.ParseErrno(j.Errno); !ok {
			return fmt.Errorf("unknown errno %q", j.Errno)
		}
	}
	parseDetail(it, j.Detail)
	return nil
}

// maybeAddrPort reads an address that may be null (unknown to the kernel).
func maybeAddrPort(s *string, port uint16) (netip.AddrPort, error) {
	if s == nil {
		return netip.AddrPortFrom(netip.Addr{}, port), nil
	}
	a, err := netip.ParseAddr(*s)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(a, port), nil
}

// ReadExport reads a .jsonl or .json export, naming the file and line of
// the first thing wrong with it.
func ReadExport(path string) (*Recording, error) { return ReadExportWith(path, ReadOptions{}) }

// ReadExportWith is ReadExport with options.
func ReadExportWith(path string, opts ReadOptions) (*Recording, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadExportFrom(f, path, opts)
}

// ReadExportFrom reads an export from r (a file or a pipe: it is read once,
// front to back), calling it name in errors. The form is told by content,
// not by name: tcpscope's own .jsonl streams line by line; anything else
// (a .json document, or either form reformatted, by jq for one) is read
// whole and taken as one document or as a sequence of records.
func ReadExportFrom(r io.Reader, name string, opts ReadOptions) (*Recording, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	if head, _ := br.Peek(len(zstdMagic)); bytes.Equal(head, zstdMagic) {
		return readCompressed(br, name, opts)
	}
	return readPlain(br, name, opts, nil)
}

// readPlain reads an uncompressed export; src is the decompressor it
// comes out of, nil for a plain file.
func readPlain(br *bufio.Reader, name string, opts ReadOptions, src *frameReader) (*Recording, error) {
	first, skipped, err := firstByte(br)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if first != '{' {
		return nil, fmt.Errorf("%s:%d: not a tcpscope export (it does not start with a JSON object)", name, skipped+1)
	}
	if head, _ := br.Peek(len(recordPrefix)); string(head) == recordPrefix {
		return readJSONL(&recordReader{name: name, opts: opts, src: src}, br, skipped)
	}
	data, err := io.ReadAll(br)
	if err != nil {
		return nil, fmt.Errorf("%s: reading: %w", name, err)
	}
	if src != nil && src.cut {
		// Only tcpscope's own line layout is read up to a cut.
		return nil, src.cutError(name)
	}
	return readDocument(name, data, skipped, opts)
}

// recordPrefix starts every line tcpscope writes to a .jsonl.
const recordPrefix = `{"type":"`

// firstByte returns the first byte that is not white space, unread, and
// how many lines it skipped to get there.
func firstByte(br *bufio.Reader) (byte, int, error) {
	lines := 0
	for {
		b, err := br.ReadByte()
		if err == io.EOF {
			return 0, 0, errors.New("empty file: not a tcpscope export")
		}
		if err != nil {
			return 0, 0, fmt.Errorf("reading: %w", err)
		}
		if b == '\n' {
			lines++
		}
		if !isSpace(b) {
			return b, lines, br.UnreadByte()
		}
	}
}

func isSpace(b byte) bool { return b == ' ' || b == '\n' || b == '\r' || b == '\t' }

func checkMeta(name string, line int, m Meta) error {
	if m.FormatVersion == 0 {
		return fmt.Errorf("%s:%d: not a tcpscope export (no format_version)", name, line)
	}
	if m.FormatVersion > FormatVersion {
		return fmt.Errorf("%s:%d: export format version %d is newer than this tcpscope reads (%d): upgrade tcpscope", name, line, m.FormatVersion, FormatVersion)
	}
	if err := checkTimes(m.Start); err != nil {
		return fmt.Errorf("%s:%d: meta: %w", name, line, err)
	}
	return nil
}

// checkTimes refuses a time the writer could not write back: RFC 3339 in
// UTC has years 0 to 9999 (an offset can push one out).
func checkTimes(ts ...time.Time) error {
	for _, t := range ts {
		if y := t.UTC().Year(); y < 0 || y > 9999 {
			return fmt.Errorf("time %s out of range (years 0 to 9999 in UTC)", t.Format(time.RFC3339Nano))
		}
	}
	return nil
}

// checkSummary refuses what the writer could not write back (a TIME_WAIT
// destination's negative count), and spells its addresses as the writer
// does (netip.Addr's String: "invalid IP" for one it cannot read).
func checkSummary(s *SummaryRecord) error {
	if err := checkTimes(s.Start, s.End); err != nil {
		return err
	}
	for i := range s.TimeWait {
		t := &s.TimeWait[i]
		local, _ := netip.ParseAddr(t.LocalAddr)
		remote, _ := netip.ParseAddr(t.RemoteAddr)
		t.LocalAddr, t.RemoteAddr = local.String(), remote.String()
		if t.Peak < 0 || t.LiveAtEnd < 0 || t.Ports < 0 || t.KernelCount != nil && *t.KernelCount < 0 {
			return fmt.Errorf("time_wait toward %s: a negative count", t.RemoteAddr)
		}
	}
	return nil
}

// recordReader collects the records of a .jsonl, whatever their layout.
type recordReader struct {
	name    string
	opts    ReadOptions
	src     *frameReader // the decompressor of a .jsonl.zst, else nil
	rec     Recording
	sawMeta bool
	conn    tracer.Connection // the one handed to opts.Connection
	fast    fastDecoder
}

// add reads one whole record that starts on line.
func (r *recordReader) add(raw []byte, line int) error {
	var typ struct {
		Type string `json:"type"`
	}
	// tcpscope writes "type" first: read it without parsing the line twice.
	if t, ok := leadingType(raw); ok {
		typ.Type = t
	} else if err := json.Unmarshal(raw, &typ); err != nil {
		if !r.sawMeta {
			return fmt.Errorf("%s:%d: not a tcpscope export (its first record is not a JSON object with a type: %v)", r.name, line, err)
		}
		return fmt.Errorf("%s:%d: invalid JSON: %v", r.name, line, err)
	}
	if !r.sawMeta && typ.Type != RecordMeta {
		return fmt.Errorf("%s:%d: not a tcpscope export (the first record is not its meta record)", r.name, line)
	}
	switch typ.Type {
	case RecordMeta:
		if r.sawMeta {
			return fmt.Errorf("%s:%d: a second meta record", r.name, line)
		}
		r.sawMeta = true
		if err := json.Unmarshal(raw, &r.rec.Meta); err != nil {
			return fmt.Errorf("%s:%d: invalid meta record: %v", r.name, line, err)
		}
		return checkMeta(r.name, line, r.rec.Meta)
	case RecordConnection:
		return r.addConnection(raw, line)
	case RecordListener:
		var j ListenerRecord
		if err := json.Unmarshal(raw, &j); err != nil {
			return fmt.Errorf("%s:%d: invalid listener record: %v", r.name, line, err)
		}
		l, err := listenerFromRecord(&j)
		if err != nil {
			return fmt.Errorf("%s:%d: %v", r.name, line, err)
		}
		r.rec.Listeners = append(r.rec.Listeners, l)
	case RecordSummary:
		var s SummaryRecord
		if err := json.Unmarshal(raw, &s); err != nil {
			return fmt.Errorf("%s:%d: invalid summary record: %v", r.name, line, err)
		}
		if err := checkSummary(&s); err != nil {
			return fmt.Errorf("%s:%d: invalid summary record: %v", r.name, line, err)
		}
		r.rec.Summary = &s
	case RecordSample:
		var s Sample
		if err := json.Unmarshal(raw, &s); err != nil {
			return fmt.Errorf("%s:%d: invalid sample record: %v", r.name, line, err)
		}
		if err := checkSample(&s); err != nil {
			return fmt.Errorf("%s:%d: invalid sample record: %v", r.name, line, err)
		}
		r.rec.Samples = append(r.rec.Samples, s)
	default:
		return fmt.Errorf("%s:%d: unknown record type %q", r.name, line, typ.Type)
	}
	return nil
}

// addConnection reads one connection record: through the decoder of
// tcpscope's own layout when it can, else (and for every error message)
// encoding/json.
func (r *recordReader) addConnection(raw []byte, line int) error {
	var c tracer.Connection
	var ok bool
	var err error
	if fastDecoding {
		c, ok, err = r.fast.connection(raw, r.opts)
	}
	if !ok {
		var j connectionInput
		if err := json.Unmarshal(raw, &j); err != nil {
			return fmt.Errorf("%s:%d: invalid connection record: %v", r.name, line, err)
		}
		c, err = j.connection(r.opts)
	}
	if err != nil {
		return fmt.Errorf("%s:%d: %v", r.name, line, err)
	}
	return r.keep(c)
}

// fastDecoding is off only in the tests that compare the two decoders.
var fastDecoding = true

// keep hands c on, or keeps it.
func (r *recordReader) keep(c tracer.Connection) error {
	if r.opts.Connection == nil {
		r.rec.Connections = append(r.rec.Connections, c)
		return nil
	}
	r.conn = c
	return r.opts.Connection(&r.conn)
}

// torn ends the reading at a last record cut short on line: the records
// before it are the recording, unless the options are strict.
func (r *recordReader) torn(line int, raw []byte) (*Recording, error) {
	switch {
	case !r.sawMeta && !looksLikeExport(raw):
		return nil, fmt.Errorf("%s:%d: not a tcpscope export (not whole JSON)", r.name, line)
	case !r.sawMeta:
		return nil, fmt.Errorf("%s:%d: truncated meta record: the file was cut short before its first record", r.name, line)
	case r.opts.Strict:
		return nil, fmt.Errorf("%s:%d: truncated record (no end of line): the file was cut short", r.name, line)
	}
	r.rec.TornLine = line
	return r.finish()
}

func (r *recordReader) finish() (*Recording, error) {
	if !r.sawMeta {
		return nil, fmt.Errorf("%s: not a tcpscope export (no meta record)", r.name)
	}
	if r.src != nil && r.src.cut {
		if r.opts.Strict {
			return nil, r.src.cutError(r.name)
		}
		r.rec.Cut = true
	}
	if r.rec.Summary == nil && r.opts.Strict {
		return nil, fmt.Errorf("%s: no summary record: the recording did not finish", r.name)
	}
	return &r.rec, nil
}

// looksLikeExport tells a tcpscope export cut short from another program's
// broken JSON, for the error message only.
func looksLikeExport(b []byte) bool {
	return bytes.Contains(b, []byte(`"meta"`)) || bytes.Contains(b, []byte(`"format_version"`))
}

// readJSONL reads tcpscope's own .jsonl a line at a time. Each write of
// the recorder is whole lines, so only the last line can lack its end of
// line: that is a record cut short (a full disk, a kill in the middle of a
// write) unless it is whole JSON, which lacks only the newline. A broken
// line anywhere else is damage, and an error.
func readJSONL(r *recordReader, br *bufio.Reader, line int) (*Recording, error) {
	var long []byte // a line longer than br's buffer
	for {
		raw, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			long = append(long[:0], raw...)
			for err == bufio.ErrBufferFull {
				raw, err = br.ReadSlice('\n')
				long = append(long, raw...)
			}
			raw = long
		}
		if len(raw) == 0 && err == io.EOF {
			break
		}
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("%s:%d: reading: %w", r.name, line+1, err)
		}
		line++
		last := err == io.EOF
		raw = bytes.TrimSpace(raw)
		if len(raw) == 0 {
			continue
		}
		if last && !json.Valid(raw) {
			return r.torn(line, raw)
		}
		if err := r.add(raw, line); err != nil {
			return nil, err
		}
	}
	return r.finish()
}

// documentInput is a Document as the reader decodes it, connections as
// connectionInput. Type is set instead when the first value is a record of
// a reformatted .jsonl.
type documentInput struct {
	Type *string `json:"type"`
	Document
	Connections []connectionInput `json:"connections"`
}

// readDocument reads a whole input that is not tcpscope's own .jsonl
// layout: a .json document in any formatting, or records reformatted (each
// spread over lines, or with their keys reordered).
func readDocument(name string, data []byte, skipped int, opts ReadOptions) (*Recording, error) {
	var doc documentInput
	err := json.Unmarshal(data, &doc)
	var se *json.SyntaxError
	switch {
	case doc.Type != nil || errors.As(err, &se):
		// Records, or broken JSON: the value-by-value reader says where.
		return readValues(name, data, skipped, opts)
	case err != nil:
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, fmt.Errorf("%s:%d: invalid %s: %v", name, skipped+lineAt(data, te.Offset), te.Field, err)
		}
		return nil, fmt.Errorf("%s: invalid export: %v", name, err)
	case doc.Meta == nil:
		return nil, fmt.Errorf("%s:%d: not a tcpscope export (no meta)", name, skipped+1)
	}
	if err := checkMeta(name, skipped+1, *doc.Meta); err != nil {
		return nil, err
	}
	if doc.Summary == nil && opts.Strict {
		return nil, fmt.Errorf("%s: no summary: the recording did not finish", name)
	}
	if doc.Summary != nil {
		if err := checkSummary(doc.Summary); err != nil {
			return nil, fmt.Errorf("%s: invalid summary: %v", name, err)
		}
	}
	rec := &Recording{Meta: *doc.Meta, Summary: doc.Summary}
	for i := range doc.Samples {
		if err := checkSample(&doc.Samples[i]); err != nil {
			return nil, fmt.Errorf("%s: sample %d: %v", name, i+1, err)
		}
	}
	if len(doc.Samples) > 0 {
		rec.Samples = doc.Samples // an empty "samples" reads as none, as in a .jsonl
	}
	for i := range doc.Listeners {
		l, err := listenerFromRecord(&doc.Listeners[i])
		if err != nil {
			return nil, fmt.Errorf("%s: listener %d: %v", name, i+1, err)
		}
		rec.Listeners = append(rec.Listeners, l)
	}
	r := &recordReader{name: name, opts: opts, rec: *rec}
	for i := range doc.Connections {
		c, err := doc.Connections[i].connection(opts)
		if err != nil {
			return nil, fmt.Errorf("%s: connection %d: %v", name, i+1, err)
		}
		if err := r.keep(c); err != nil {
			return nil, err
		}
	}
	return &r.rec, nil
}

// readValues reads data as a sequence of JSON values, each a record, or
// finds what is wrong with it: the value starting on which line is broken,
// cut short, or not a record.
func readValues(name string, data []byte, skipped int, opts ReadOptions) (*Recording, error) {
	r := &recordReader{name: name, opts: opts}
	dec := json.NewDecoder(bytes.NewReader(data))
	line, pos := skipped+1, 0
	for n := 0; ; n++ {
		start := int(dec.InputOffset())
		for start < len(data) && isSpace(data[start]) {
			start++
		}
		if start == len(data) {
			break
		}
		line += bytes.Count(data[pos:start], []byte("\n"))
		pos = start
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return r.broken(data[start:], line, err)
		}
		if n == 0 {
			var probe struct {
				Type *string         `json:"type"`
				Meta json.RawMessage `json:"meta"`
			}
			json.Unmarshal(raw, &probe)
			if probe.Type == nil && probe.Meta != nil {
				next := int(dec.InputOffset())
				for next < len(data) && isSpace(data[next]) {
					next++
				}
				return nil, fmt.Errorf("%s:%d: more data after the end of the document", name, line+bytes.Count(data[start:next], []byte("\n")))
			}
		}
		if err := r.add(raw, line); err != nil {
			return nil, err
		}
	}
	return r.finish()
}

// broken explains a value, starting on line, that did not decode: rest is
// the input from its first byte on.
func (r *recordReader) broken(rest []byte, line int, err error) (*Recording, error) {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		// The input ends inside this value: the last record, cut short.
		if r.sawMeta {
			return r.torn(line, rest)
		}
		if !looksLikeExport(rest) {
			return nil, fmt.Errorf("%s:%d: not a tcpscope export (not whole JSON)", r.name, line)
		}
		end := line + bytes.Count(bytes.TrimRight(rest, " \t\r\n"), []byte("\n"))
		return nil, fmt.Errorf("%s:%d: truncated document: the file was cut short", r.name, end)
	}
	// Where exactly: the decoder's offsets count from its own buffer.
	var v struct{}
	at := line
	var se *json.SyntaxError
	if verr := json.Unmarshal(rest, &v); errors.As(verr, &se) {
		at = line + bytes.Count(rest[:min(se.Offset, int64(len(rest)))], []byte("\n"))
		err = verr
	}
	if !r.sawMeta && !looksLikeExport(rest) {
		return nil, fmt.Errorf("%s:%d: not a tcpscope export (invalid JSON: %v)", r.name, at, err)
	}
	return nil, fmt.Errorf("%s:%d: invalid JSON: %v", r.name, at, err)
}

func lineAt(data []byte, off int64) int {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	return bytes.Count(data[:off], []byte("\n")) + 1
}

// leadingType reads the record type of a line that starts {"type":"...".
func leadingType(raw []byte) (string, bool) {
	const prefix = `{"type":"`
	if !bytes.HasPrefix(raw, []byte(prefix)) {
		return "", false
	}
	rest := raw[len(prefix):]
	end := bytes.IndexByte(rest, '"')
	if end <= 0 || end > 16 {
		return "", false
	}
	return string(rest[:end]), true
}
