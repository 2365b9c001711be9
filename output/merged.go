package output

import (
	"time"

	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/merge"
)

// The records of a merged file (tcpscope merge): a merge record first,
// then one host_pair record per host pair, then the pair records (both
// halves of a connection, joined) and the unmatched records (halves no
// other export completes). Declared here as the export's records are;
// TestMergedRecordsMatchWriterAndSchema proves the writer, these types
// and the schema agree.
const (
	RecordMerge     = "merge"
	RecordHostPair  = "host_pair"
	RecordPair      = "pair"
	RecordUnmatched = "unmatched"
)

// MergeMeta is the merge record: what was merged.
type MergeMeta struct {
	FormatVersion int          `json:"format_version"`
	Tcpscope      string       `json:"tcpscope"`
	Created       time.Time    `json:"created"`
	Inputs        []MergeInput `json:"inputs"`
}

// MergeInput is one export merged: a host, named by its file.
type MergeInput struct {
	Host        string `json:"host"`
	File        string `json:"file"`
	Hostname    string `json:"hostname"`
	Connections int    `json:"connections"`
}

// HostPairRecord is a host_pair record. A host named "" is none of the
// exports (the peer of halves whose remote address no export holds).
type HostPairRecord struct {
	ClientHost       string `json:"client_host"`
	ServerHost       string `json:"server_host"`
	Joined           int    `json:"joined"`
	ClientsUnmatched int    `json:"clients_unmatched"`
	ServersUnmatched int    `json:"servers_unmatched"`
	// OffsetUs is the server host's clock minus the client host's, ±
	// UncertaintyUs; both null when no handshake bracketed it.
	OffsetUs      *int64 `json:"offset_us"`
	UncertaintyUs *int64 `json:"offset_uncertainty_us"`
	Handshakes    int    `json:"offset_handshakes"`
}

// PairRecord is a pair record: one connection, both halves whole, as
// each host's clock timed it; the offset maps the server's times onto
// the client's (client time = server time - offset_us).
type PairRecord struct {
	ClientHost    string           `json:"client_host"`
	ServerHost    string           `json:"server_host"`
	OffsetUs      *int64           `json:"offset_us"`
	UncertaintyUs *int64           `json:"offset_uncertainty_us"`
	Diagnosis     []string         `json:"diagnosis"`
	Client        ConnectionRecord `json:"client"`
	Server        ConnectionRecord `json:"server"`
}

// UnmatchedRecord is an unmatched record: a half without its partner.
type UnmatchedRecord struct {
	Host       string           `json:"host"`
	PeerHost   string           `json:"peer_host"` // "": no export holds its remote address
	Diagnosis  []string         `json:"diagnosis"`
	Connection ConnectionRecord `json:"connection"`
}

// Merged is a merged file in memory.
type Merged struct {
	Meta      MergeMeta
	HostPairs []HostPairRecord
	Pairs     []MergedPair
	Unmatched []MergedHalf
}

// MergedPair is a pair record read.
type MergedPair struct {
	ClientHost, ServerHost  string
	OffsetUs, UncertaintyUs *int64
	Diagnosis               []string
	Client, Server          tracer.Connection
}

// MergedHalf is an unmatched record read.
type MergedHalf struct {
	Host, PeerHost string
	Diagnosis      []string
	Conn           tracer.Connection
}

// MergedFrom puts what merge.Join found into a file's form.
func MergedFrom(res *merge.Result, inputs []MergeInput, version string, now time.Time) *Merged {
	m := &Merged{Meta: MergeMeta{FormatVersion: FormatVersion, Tcpscope: version, Created: now.UTC(), Inputs: inputs}}
	name := func(h int) string {
		if h < 0 {
			return ""
		}
		return res.Hosts[h]
	}
	for _, hp := range res.HostPairs {
		off, unc := offsetPtrs(hp.Offset)
		m.HostPairs = append(m.HostPairs, HostPairRecord{ClientHost: name(hp.ClientHost), ServerHost: name(hp.ServerHost),
			Joined: hp.Joined, ClientsUnmatched: hp.ClientsUnmatched, ServersUnmatched: hp.ServersUnmatched,
			OffsetUs: off, UncertaintyUs: unc, Handshakes: hp.Offset.Brackets})
	}
	for _, p := range res.Pairs {
		off, unc := offsetPtrs(p.Offset)
		m.Pairs = append(m.Pairs, MergedPair{ClientHost: name(p.ClientHost), ServerHost: name(p.ServerHost),
			OffsetUs: off, UncertaintyUs: unc, Diagnosis: p.Diagnosis, Client: *p.Client, Server: *p.Server})
	}
	for _, u := range res.Unmatched {
		m.Unmatched = append(m.Unmatched, MergedHalf{Host: name(u.Host), PeerHost: name(u.PeerHost), Diagnosis: u.Diagnosis, Conn: *u.Conn})
	}
	return m
}

func offsetPtrs(o merge.Offset) (*int64, *int64) {
	if !o.Known() {
		return nil, nil
	}
	us, unc := o.Us, o.UncertaintyUs
	return &us, &unc
}
