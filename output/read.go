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
)

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// Recording is an export read back.
type Recording struct {
	Meta        Meta
	Connections []tracer.Connection
	Listeners   []ListenerRow
	// Summary is nil when the recording never finished (a JSONL file cut
	// short by a crash or SIGKILL).
	Summary *SummaryRecord
}

// SummaryRecord is the part of a saved summary that cannot be recomputed
// from the connections.
type SummaryRecord struct {
	End             time.Time       `json:"end"`
	Connections     uint64          `json:"connections"`
	LostEvents      uint64          `json:"lost_events"`
	UnmatchedEvents uint64          `json:"unmatched_events"`
	Evicted         uint64          `json:"evicted_connections"`
	Unreadable      uint64          `json:"unreadable_events"`
	Undecoded       uint64          `json:"undecoded_events"`
	Discarded       uint64          `json:"discarded_children"`
	Gaps            uint64          `json:"state_gaps"`
	Recursion       []recursionJSON `json:"recursion_misses"`
	Kernel          string          `json:"kernel"`
	Tcpscope        string          `json:"tcpscope"`
	Counters        []CounterDelta  `json:"kernel_counters"`
	TimeWait        []timeWaitJSON  `json:"time_wait"`
}

type recursionJSON struct {
	Tracepoint   string `json:"tracepoint"`
	Program      string `json:"program"`
	Misses       uint64 `json:"misses"`
	Nested       uint64 `json:"handled_nested"`
	NestedMisses uint64 `json:"nested_misses"`
}

type timeWaitJSON struct {
	NetNS       uint32 `json:"netns"`
	LocalAddr   string `json:"local_addr"`
	RemoteAddr  string `json:"remote_addr"`
	RemotePort  uint16 `json:"remote_port"`
	Peak        int    `json:"peak"`
	LiveAtEnd   int    `json:"live_at_end"`
	KernelCount *int   `json:"kernel_count_at_end"`
	Ports       int    `json:"usable_ports"`
	Entered     uint64 `json:"entered"`
	Warned      bool   `json:"warned"`
}

// Extra rebuilds the summary's kernel-side parts for the tables.
func (s *SummaryRecord) Extra() Extra {
	x := Extra{End: s.End, LostEvents: s.LostEvents, Orphans: s.UnmatchedEvents, Evicted: s.Evicted, Counters: s.Counters,
		Unreadable: s.Unreadable, Undecoded: s.Undecoded, Discarded: s.Discarded, Gaps: s.Gaps}
	for _, r := range s.Recursion {
		x.Recursion = append(x.Recursion, tracer.RecursionMisses{Tracepoint: r.Tracepoint, Program: r.Program,
			Misses: r.Misses, Nested: r.Nested, NestedMisses: r.NestedMisses})
	}
	for _, t := range s.TimeWait {
		p := TimeWaitPressure{KernelCount: -1}
		if t.KernelCount != nil {
			p.KernelCount = *t.KernelCount
		}
		local, _ := netip.ParseAddr(t.LocalAddr)
		remote, _ := netip.ParseAddr(t.RemoteAddr)
		p.Key = tracer.TimeWaitKey{NetNS: t.NetNS, Local: local, Remote: netip.AddrPortFrom(remote, t.RemotePort)}
		p.Peak, p.Now, p.Ports, p.Total, p.Warned = t.Peak, t.LiveAtEnd, t.Ports, t.Entered, t.Warned
		x.TimeWait = append(x.TimeWait, p)
	}
	return x
}

type connectionJSON struct {
	Type        string          `json:"type"`
	ID          uint64          `json:"id"`
	PeerID      uint64          `json:"peer_id"`
	ListenerID  uint64          `json:"listener_id"`
	Role        tracer.Role     `json:"role"`
	Family      string          `json:"family"`
	LocalAddr   *string         `json:"local_addr"`
	LocalPort   uint16          `json:"local_port"`
	RemoteAddr  *string         `json:"remote_addr"`
	RemotePort  uint16          `json:"remote_port"`
	NetNS       uint32          `json:"netns"`
	PID         uint32          `json:"pid"`
	Comm        string          `json:"comm"`
	Start       time.Time       `json:"start"`
	End         time.Time       `json:"end"`
	DurationUs  int64           `json:"duration_us"`
	HandshakeUs *int64          `json:"handshake_us"`
	SynRecvUs   *int64          `json:"syn_recv_us"`
	SynRecvHow  string          `json:"syn_recv_method"`
	Retransmits retransmits     `json:"retransmits"`
	BytesRecv   uint64          `json:"bytes_received"`
	BytesAcked  uint64          `json:"bytes_acked"`
	ClosedBy    string          `json:"closed_by"`
	Outcome     string          `json:"outcome"`
	Errno       string          `json:"errno"`
	Flags       []tracer.Flag   `json:"flags"`
	Timeline    json.RawMessage `json:"timeline"`
}

type retransmits struct {
	Syn    uint32 `json:"syn"`
	SynAck uint32 `json:"synack"`
	Data   uint32 `json:"data"`
}

// ReadOptions tune ReadExport.
type ReadOptions struct {
	// FlaggedTimelinesOnly decodes the timeline only of connections with
	// a flag that matters (tracer.Connection.Flagged): the tables need no
	// more, and timelines are most of a big file.
	FlaggedTimelinesOnly bool
}

func (j *connectionJSON) connection(opts ReadOptions) (tracer.Connection, error) {
	c := tracer.Connection{
		ID: j.ID, PeerID: j.PeerID, ListenerID: j.ListenerID, Role: j.Role, Family: j.Family,
		NetNS: j.NetNS, PID: j.PID, Comm: j.Comm, Start: j.Start, End: j.End, DurationUs: j.DurationUs,
		HandshakeUs: -1, SynRecvUs: -1, SynRecvHow: j.SynRecvHow,
		Retransmits:   tracer.Retransmits{Syn: j.Retransmits.Syn, SynAck: j.Retransmits.SynAck, Data: j.Retransmits.Data},
		BytesReceived: j.BytesRecv, BytesAcked: j.BytesAcked,
		ClosedBy: j.ClosedBy, Outcome: tracer.Outcome(j.Outcome), Errno: j.Errno, Flags: j.Flags,
	}
	if len(j.Timeline) > 0 && (!opts.FlaggedTimelinesOnly || c.Flagged()) {
		if err := json.Unmarshal(j.Timeline, &c.Timeline); err != nil {
			return c, fmt.Errorf("connection %d: timeline: %w", j.ID, err)
		}
	}
	if j.HandshakeUs != nil {
		c.HandshakeUs = *j.HandshakeUs
	}
	if j.SynRecvUs != nil {
		c.SynRecvUs = *j.SynRecvUs
	}
	if j.Role != tracer.RoleClient && j.Role != tracer.RoleServer {
		return c, fmt.Errorf("connection %d: unknown role %q", j.ID, j.Role)
	}
	if !validOutcome(c.Outcome) {
		return c, fmt.Errorf("connection %d: unknown outcome %q", j.ID, j.Outcome)
	}
	var err error
	if c.Local, err = maybeAddrPort(j.LocalAddr, j.LocalPort); err != nil {
		return c, fmt.Errorf("connection %d: %w", j.ID, err)
	}
	if c.Remote, err = maybeAddrPort(j.RemoteAddr, j.RemotePort); err != nil {
		return c, fmt.Errorf("connection %d: %w", j.ID, err)
	}
	return c, nil
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

func validOutcome(o tracer.Outcome) bool {
	for _, x := range tracer.AllOutcomes {
		if x == o {
			return true
		}
	}
	return false
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
	br := bufio.NewReaderSize(f, 1<<20)
	first, err := firstByte(br)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if first != '{' {
		return nil, fmt.Errorf("%s:1: not a tcpscope export (it does not start with a JSON object)", path)
	}
	head, _ := br.Peek(16)
	if bytes.HasPrefix(bytes.TrimLeft(head, " \t\r\n"), []byte(`{"meta"`)) {
		return readJSON(path, br, opts)
	}
	return readJSONL(path, br, opts)
}

func firstByte(br *bufio.Reader) (byte, error) {
	for {
		b, err := br.ReadByte()
		if err == io.EOF {
			return 0, errors.New("empty file: not a tcpscope export")
		}
		if err != nil {
			return 0, err
		}
		if b != ' ' && b != '\n' && b != '\r' && b != '\t' {
			return b, br.UnreadByte()
		}
	}
}

func checkMeta(path string, line int, m Meta) error {
	if m.FormatVersion == 0 {
		return fmt.Errorf("%s:%d: not a tcpscope export (no format_version)", path, line)
	}
	if m.FormatVersion > FormatVersion {
		return fmt.Errorf("%s:%d: export format version %d is newer than this tcpscope reads (%d): upgrade tcpscope", path, line, m.FormatVersion, FormatVersion)
	}
	return nil
}

func readJSONL(path string, br *bufio.Reader, opts ReadOptions) (*Recording, error) {
	rec := &Recording{}
	line := 0
	sawMeta := false
	for {
		raw, err := br.ReadBytes('\n')
		if len(raw) == 0 && err == io.EOF {
			break
		}
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("%s:%d: %w", path, line+1, err)
		}
		line++
		if err == io.EOF {
			return nil, fmt.Errorf("%s:%d: truncated record (no end of line): the file was cut short", path, line)
		}
		raw = bytes.TrimSpace(raw)
		if len(raw) == 0 {
			continue
		}
		var typ struct {
			Type string `json:"type"`
		}
		// tcpscope writes "type" first: read it without parsing the line twice.
		if t, ok := leadingType(raw); ok {
			typ.Type = t
		} else if err := json.Unmarshal(raw, &typ); err != nil {
			return nil, fmt.Errorf("%s:%d: invalid JSON: %v", path, line, err)
		}
		if !sawMeta && typ.Type != "meta" {
			return nil, fmt.Errorf("%s:%d: not a tcpscope export (the first record is not its meta record)", path, line)
		}
		switch typ.Type {
		case "meta":
			if sawMeta {
				return nil, fmt.Errorf("%s:%d: a second meta record", path, line)
			}
			sawMeta = true
			if err := json.Unmarshal(raw, &rec.Meta); err != nil {
				return nil, fmt.Errorf("%s:%d: invalid meta record: %v", path, line, err)
			}
			if err := checkMeta(path, line, rec.Meta); err != nil {
				return nil, err
			}
		case "connection":
			var j connectionJSON
			if err := json.Unmarshal(raw, &j); err != nil {
				return nil, fmt.Errorf("%s:%d: invalid connection record: %v", path, line, err)
			}
			c, err := j.connection(opts)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: %v", path, line, err)
			}
			rec.Connections = append(rec.Connections, c)
		case "listener":
			var j listenerJSON
			if err := json.Unmarshal(raw, &j); err != nil {
				return nil, fmt.Errorf("%s:%d: invalid listener record: %v", path, line, err)
			}
			l, err := j.row()
			if err != nil {
				return nil, fmt.Errorf("%s:%d: %v", path, line, err)
			}
			rec.Listeners = append(rec.Listeners, l)
		case "summary":
			var s SummaryRecord
			if err := json.Unmarshal(raw, &s); err != nil {
				return nil, fmt.Errorf("%s:%d: invalid summary record: %v", path, line, err)
			}
			rec.Summary = &s
		default:
			return nil, fmt.Errorf("%s:%d: unknown record type %q", path, line, typ.Type)
		}
	}
	if !sawMeta {
		return nil, fmt.Errorf("%s: not a tcpscope export (no meta record)", path)
	}
	return rec, nil
}

func readJSON(path string, br *bufio.Reader, opts ReadOptions) (*Recording, error) {
	data, err := io.ReadAll(br)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var doc struct {
		Meta        *Meta            `json:"meta"`
		Connections []connectionJSON `json:"connections"`
		Listeners   []listenerJSON   `json:"listeners"`
		Summary     *SummaryRecord   `json:"summary"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) && se.Offset >= int64(len(bytes.TrimRight(data, " \t\r\n"))) {
			return nil, fmt.Errorf("%s:%d: truncated document: the file was cut short", path, lineAt(data, se.Offset))
		}
		if errors.As(err, &se) {
			return nil, fmt.Errorf("%s:%d: invalid JSON: %v", path, lineAt(data, se.Offset), err)
		}
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, fmt.Errorf("%s:%d: invalid %s: %v", path, lineAt(data, te.Offset), te.Field, err)
		}
		return nil, fmt.Errorf("%s: invalid export: %v", path, err)
	}
	if doc.Meta == nil {
		return nil, fmt.Errorf("%s:1: not a tcpscope export (no meta)", path)
	}
	if err := checkMeta(path, 1, *doc.Meta); err != nil {
		return nil, err
	}
	if doc.Summary == nil {
		return nil, fmt.Errorf("%s: no summary: the file is incomplete", path)
	}
	rec := &Recording{Meta: *doc.Meta, Summary: doc.Summary}
	for i := range doc.Listeners {
		l, err := doc.Listeners[i].row()
		if err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		rec.Listeners = append(rec.Listeners, l)
	}
	for i := range doc.Connections {
		c, err := doc.Connections[i].connection(opts)
		if err != nil {
			return nil, fmt.Errorf("%s: connection %d: %v", path, i+1, err)
		}
		rec.Connections = append(rec.Connections, c)
	}
	return rec, nil
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
