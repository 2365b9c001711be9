package output

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// WriteMerged writes m as JSONL: its merge record, host pairs, pairs and
// unmatched halves, a line each.
func WriteMerged(w io.Writer, m *Merged) error {
	bw := bufio.NewWriterSize(w, 1<<16)
	var b []byte
	line := func(rec []byte) error {
		_, err := bw.Write(append(rec, '\n'))
		return err
	}
	if err := line(appendMergeMeta(b[:0], &m.Meta)); err != nil {
		return fmt.Errorf("writing the merged file: %w", err)
	}
	for i := range m.HostPairs {
		if err := line(appendHostPair(b[:0], &m.HostPairs[i])); err != nil {
			return fmt.Errorf("writing the merged file: %w", err)
		}
	}
	for i := range m.Pairs {
		b = appendPair(b[:0], &m.Pairs[i])
		if err := line(b); err != nil {
			return fmt.Errorf("writing the merged file: %w", err)
		}
	}
	for i := range m.Unmatched {
		b = appendUnmatched(b[:0], &m.Unmatched[i])
		if err := line(b); err != nil {
			return fmt.Errorf("writing the merged file: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("writing the merged file: %w", err)
	}
	return nil
}

func appendMergeMeta(b []byte, m *MergeMeta) []byte {
	o := newObj(b)
	o.str("type", RecordMerge)
	o.int("format_version", int64(m.FormatVersion))
	o.str("tcpscope", m.Tcpscope)
	o.time("created", m.Created)
	o.key("inputs")
	o.b = append(o.b, '[')
	for i, in := range m.Inputs {
		if i > 0 {
			o.b = append(o.b, ',')
		}
		e := newObj(o.b)
		e.str("host", in.Host)
		e.str("file", in.File)
		e.str("hostname", in.Hostname)
		e.int("connections", int64(in.Connections))
		o.b = e.end()
	}
	o.b = append(o.b, ']')
	return o.end()
}

func appendHostPair(b []byte, h *HostPairRecord) []byte {
	o := newObj(b)
	o.str("type", RecordHostPair)
	o.str("client_host", h.ClientHost)
	o.str("server_host", h.ServerHost)
	o.int("joined", int64(h.Joined))
	o.int("clients_unmatched", int64(h.ClientsUnmatched))
	o.int("servers_unmatched", int64(h.ServersUnmatched))
	intOrNull(&o, "offset_us", h.OffsetUs)
	intOrNull(&o, "offset_uncertainty_us", h.UncertaintyUs)
	o.int("offset_handshakes", int64(h.Handshakes))
	return o.end()
}

func appendPair(b []byte, p *MergedPair) []byte {
	o := newObj(b)
	o.str("type", RecordPair)
	o.str("client_host", p.ClientHost)
	o.str("server_host", p.ServerHost)
	intOrNull(&o, "offset_us", p.OffsetUs)
	intOrNull(&o, "offset_uncertainty_us", p.UncertaintyUs)
	appendStrings(&o, "diagnosis", p.Diagnosis)
	o.key("client")
	o.b = appendConnection(o.b, &p.Client, false)
	o.key("server")
	o.b = appendConnection(o.b, &p.Server, false)
	return o.end()
}

func appendUnmatched(b []byte, u *MergedHalf) []byte {
	o := newObj(b)
	o.str("type", RecordUnmatched)
	o.str("host", u.Host)
	o.str("peer_host", u.PeerHost)
	appendStrings(&o, "diagnosis", u.Diagnosis)
	o.key("connection")
	o.b = appendConnection(o.b, &u.Conn, false)
	return o.end()
}

func intOrNull(o *obj, k string, v *int64) {
	if v == nil {
		o.null(k)
		return
	}
	o.int(k, *v)
}

func appendStrings(o *obj, k string, ss []string) {
	o.key(k)
	o.b = append(o.b, '[')
	for i, s := range ss {
		if i > 0 {
			o.b = append(o.b, ',')
		}
		o.b = appendString(o.b, s)
	}
	o.b = append(o.b, ']')
}

// mergedPrefix starts a merged file: IsMerged tells one from an export.
const mergedPrefix = `{"type":"merge"`

// IsMerged says whether the file at path is a merged file.
func IsMerged(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	head := make([]byte, len(mergedPrefix))
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("reading %s: %w", path, err)
	}
	return string(head[:n]) == mergedPrefix, nil
}

// ReadMerged reads a merged file, naming the line of the first thing
// wrong with it.
func ReadMerged(path string) (*Merged, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := &Merged{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 256<<20)
	for line := 1; sc.Scan(); line++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		if err := m.add(sc.Bytes(), line); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if m.Meta.FormatVersion == 0 {
		return nil, fmt.Errorf("%s: not a merged file (no merge record)", path)
	}
	return m, nil
}

// add reads one line of a merged file.
func (m *Merged) add(raw []byte, line int) error {
	typ, _ := leadingType(raw)
	if line == 1 && typ != RecordMerge {
		return errors.New("not a merged file (it does not start with a merge record)")
	}
	switch typ {
	case RecordMerge:
		if err := json.Unmarshal(raw, &m.Meta); err != nil {
			return fmt.Errorf("merge record: %w", err)
		}
		if m.Meta.FormatVersion > FormatVersion {
			return fmt.Errorf("format version %d is newer than this tcpscope reads (%d)", m.Meta.FormatVersion, FormatVersion)
		}
	case RecordHostPair:
		var h HostPairRecord
		if err := json.Unmarshal(raw, &h); err != nil {
			return fmt.Errorf("host_pair record: %w", err)
		}
		m.HostPairs = append(m.HostPairs, h)
	case RecordPair:
		return m.addPair(raw)
	case RecordUnmatched:
		return m.addUnmatched(raw)
	default:
		return fmt.Errorf("unknown record type %q", typ)
	}
	return nil
}

func (m *Merged) addPair(raw []byte) error {
	var in struct {
		PairRecord
		Client connectionInput `json:"client"`
		Server connectionInput `json:"server"`
	}
	if err := json.Unmarshal(raw, &in); err != nil {
		return fmt.Errorf("pair record: %w", err)
	}
	p := MergedPair{ClientHost: in.ClientHost, ServerHost: in.ServerHost, OffsetUs: in.OffsetUs,
		UncertaintyUs: in.UncertaintyUs, Diagnosis: in.Diagnosis}
	var err error
	if p.Client, err = in.Client.connection(ReadOptions{}); err != nil {
		return fmt.Errorf("pair's client: %w", err)
	}
	if p.Server, err = in.Server.connection(ReadOptions{}); err != nil {
		return fmt.Errorf("pair's server: %w", err)
	}
	m.Pairs = append(m.Pairs, p)
	return nil
}

func (m *Merged) addUnmatched(raw []byte) error {
	var in struct {
		UnmatchedRecord
		Connection connectionInput `json:"connection"`
	}
	if err := json.Unmarshal(raw, &in); err != nil {
		return fmt.Errorf("unmatched record: %w", err)
	}
	c, err := in.Connection.connection(ReadOptions{})
	if err != nil {
		return fmt.Errorf("unmatched record: %w", err)
	}
	m.Unmatched = append(m.Unmatched, MergedHalf{Host: in.Host, PeerHost: in.PeerHost, Diagnosis: in.Diagnosis, Conn: c})
	return nil
}
