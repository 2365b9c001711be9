package output

import (
	"time"
)

// The export's records, each declared once. A type below is one record, or
// one object nested in a record, as it appears in a file: its json tags
// are the contract. The writer (AppendConnectionJSON, AppendListenerJSON,
// AppendSummaryJSON, appendMeta and the Export type) appends the same keys
// by hand, without reflection, for speed; the reader (read.go) decodes
// into these types and converts them; the JSON Schema
// (schema/export.schema.json) documents them. TestRecordsMatchWriterAndSchema
// proves, key by key and recursively, that the three agree.
//
// Tags: a key with omitempty is written only when it holds something; a
// key with export:"optional" is always written, but the schema does not
// require it (recordings made before it was added lack it: read as zero).
// Every other key is always written and required.
//
// A .jsonl line is a record with a leading "type" key naming it (the
// Record* constants); a .json is a Document, in which only connections
// carry their "type".

// Record types: the "type" key of a .jsonl line.
const (
	RecordMeta       = "meta"
	RecordConnection = "connection"
	RecordListener   = "listener"
	RecordSummary    = "summary"
	RecordSample     = "sample"
)

// FormatVersion is the export format's version; readers reject newer ones.
const FormatVersion = 1

// Meta is the meta record: what recorded, where and when. It comes first.
type Meta struct {
	FormatVersion int       `json:"format_version"`
	Tcpscope      string    `json:"tcpscope"`
	Kernel        string    `json:"kernel"`
	Hostname      string    `json:"hostname" export:"optional"`
	Start         time.Time `json:"start"`
	Command       []string  `json:"command,omitempty"`
}

// ConnectionRecord is a connection record: one tracer.Connection.
// connectionFromRecord converts it; AppendConnectionJSON writes it.
type ConnectionRecord struct {
	ID         uint64 `json:"id"`
	PeerID     uint64 `json:"peer_id,omitempty"`
	ListenerID uint64 `json:"listener_id,omitempty"`
	Role       string `json:"role"`
	Family     string `json:"family"`
	// Addresses are null when the kernel did not know them.
	LocalAddr     *string           `json:"local_addr"`
	RemoteAddr    *string           `json:"remote_addr"`
	LocalPort     uint16            `json:"local_port"`
	RemotePort    uint16            `json:"remote_port"`
	NetNS         uint32            `json:"netns"`
	PID           uint32            `json:"pid"`
	Comm          string            `json:"comm"`
	Start         time.Time         `json:"start"`
	End           time.Time         `json:"end"`
	DurationUs    int64             `json:"duration_us"`
	HandshakeUs   *int64            `json:"handshake_us"` // null: unknown
	SynRecvUs     *int64            `json:"syn_recv_us"`  // null: unknown
	SynRecvMethod string            `json:"syn_recv_method,omitempty"`
	Retransmits   RetransmitsRecord `json:"retransmits"`
	BytesReceived uint64            `json:"bytes_received"`
	BytesAcked    uint64            `json:"bytes_acked"`
	ClosedBy      string            `json:"closed_by"`
	Outcome       string            `json:"outcome"`
	Errno         string            `json:"errno,omitempty"`
	Flags         []string          `json:"flags"`
	Timeline      []ItemRecord      `json:"timeline"`

	// The owner's cgroup (tracer/cgroups): its v2 id, its path below the
	// cgroup2 mount and what the path tells; absent when unknown.
	CgroupID         uint64 `json:"cgroup_id,omitempty"`
	Cgroup           string `json:"cgroup,omitempty"`
	ContainerID      string `json:"container_id,omitempty"`
	ContainerRuntime string `json:"container_runtime,omitempty"`
	PodUID           string `json:"pod_uid,omitempty"`
	Unit             string `json:"unit,omitempty"`
}

// RetransmitsRecord is a connection's "retransmits" object.
type RetransmitsRecord struct {
	Syn    uint32 `json:"syn"`
	SynAck uint32 `json:"synack"`
	Data   uint32 `json:"data"`
	Fin    uint32 `json:"fin" export:"optional"`
}

// ItemRecord is one step of a connection's "timeline": one tracer.Item.
type ItemRecord struct {
	At          time.Time `json:"at"`
	OffsetUs    int64     `json:"offset_us"`
	Kind        string    `json:"kind"`
	From        string    `json:"from,omitempty"`
	To          string    `json:"to,omitempty"`
	State       string    `json:"state,omitempty"`
	Reason      string    `json:"reason,omitempty"`
	Errno       string    `json:"errno,omitempty"`
	Detail      string    `json:"detail,omitempty"`
	PrevStateUs int64     `json:"prev_state_us,omitempty"`
}

// ListenerRecord is a listener record: one ListenerRow.
// listenerFromRecord converts it; AppendListenerJSON writes it.
type ListenerRecord struct {
	ID                   uint64    `json:"id"`
	LocalAddr            *string   `json:"local_addr"` // null: unknown
	LocalPort            uint16    `json:"local_port"`
	NetNS                uint32    `json:"netns"`
	PID                  uint32    `json:"pid"`
	Comm                 string    `json:"comm"`
	Backlog              uint32    `json:"backlog"`
	PeakQueue            uint32    `json:"peak_accept_queue"`
	Connections          uint64    `json:"connections"`
	SynAcks              uint64    `json:"synack_retransmits"`
	Abandoned            uint64    `json:"abandoned_requests"`
	Resets               uint64    `json:"resets_sent"`
	Overflows            uint64    `json:"overflow_drops"`
	Syncookies           uint64    `json:"syncookie_connections"`
	QueueSamples         uint64    `json:"queue_samples"`
	FullSamples          uint64    `json:"full_queue_samples"`
	OverflowsAttributed  uint64    `json:"overflow_drops_attributed"`
	SynDropsAttributed   uint64    `json:"syn_drops_attributed"`
	DropsAttributed      uint64    `json:"listen_drops_attributed"`
	SynRetransmitClients uint64    `json:"syn_retransmit_clients"`
	ClientSynRetransmits uint64    `json:"client_syn_retransmits"`
	SynRecv              Quantiles `json:"syn_recv_us"`
	Start                time.Time `json:"start"`
	End                  time.Time `json:"end"`
	Preexisting          bool      `json:"preexisting"`
	Open                 bool      `json:"open"`

	// The owner's cgroup (tracer/cgroups): its v2 id, its path below the
	// cgroup2 mount and what the path tells; absent when unknown.
	CgroupID         uint64 `json:"cgroup_id,omitempty"`
	Cgroup           string `json:"cgroup,omitempty"`
	ContainerID      string `json:"container_id,omitempty"`
	ContainerRuntime string `json:"container_runtime,omitempty"`
	PodUID           string `json:"pod_uid,omitempty"`
	Unit             string `json:"unit,omitempty"`
}

// Quantiles summarise a duration distribution in microseconds; -1 unknown
// (null in a file).
type Quantiles struct {
	Count uint64 `json:"count"`
	P50   int64  `json:"p50"`
	P90   int64  `json:"p90"`
	P99   int64  `json:"p99"`
	Max   int64  `json:"max"`
}

// SummaryRecord is the summary record, written last. The counts by
// outcome, role and flag, the latencies and the top peers are recomputed
// from the connections when a report renders them; the rest cannot be.
type SummaryRecord struct {
	Start           time.Time         `json:"start"`
	End             time.Time         `json:"end"`
	Connections     uint64            `json:"connections"`
	ByOutcome       map[string]uint64 `json:"by_outcome"` // outcome name: count
	ByRole          RoleCounts        `json:"by_role"`
	Flags           map[string]uint64 `json:"flags"` // flag name: count
	HandshakeUs     Quantiles         `json:"handshake_us"`
	SynRecvUs       Quantiles         `json:"syn_recv_us"`
	TopFlaggedPeers []PeerRecord      `json:"top_flagged_peers"`
	LostEvents      uint64            `json:"lost_events"`
	LostRecords     uint64            `json:"lost_records" export:"optional"`
	UnmatchedEvents uint64            `json:"unmatched_events" export:"optional"`
	Evicted         uint64            `json:"evicted_connections" export:"optional"`
	Unreadable      uint64            `json:"unreadable_events" export:"optional"`
	Undecoded       uint64            `json:"undecoded_events" export:"optional"`
	Discarded       uint64            `json:"discarded_children" export:"optional"`
	Gaps            uint64            `json:"state_gaps" export:"optional"`
	OTLPDropped     *uint64           `json:"otlp_dropped_records,omitempty" export:"optional"`
	Recursion       []RecursionRecord `json:"recursion_misses" export:"optional"`
	Counters        []CounterDelta    `json:"kernel_counters"`
	TimeWait        []TimeWaitRecord  `json:"time_wait"`
	Sysctls         []SysctlRecord    `json:"sysctls" export:"optional"`
	Findings        []FindingRecord   `json:"findings" export:"optional"`
	Kernel          string            `json:"kernel"`
	Tcpscope        string            `json:"tcpscope"`
}

// RoleCounts is the summary's "by_role": outcome name: count, per role.
type RoleCounts struct {
	Client map[string]uint64 `json:"client" export:"optional"`
	Server map[string]uint64 `json:"server" export:"optional"`
}

// PeerRecord is one of the summary's "top_flagged_peers".
type PeerRecord struct {
	Addr  string `json:"addr"`
	Count uint64 `json:"count"`
}

// RecursionRecord is one tracepoint's "recursion_misses": one
// tracer.RecursionMisses.
type RecursionRecord struct {
	Tracepoint   string `json:"tracepoint"`
	Program      string `json:"program"`
	Misses       uint64 `json:"misses"`
	Nested       uint64 `json:"handled_nested"`
	NestedMisses uint64 `json:"nested_misses"`
	Lost         uint64 `json:"lost"` // Misses - Nested, 0 if negative
}

// CounterDelta is one of the summary's "kernel_counters": how much one
// kernel counter moved in one namespace while recording.
type CounterDelta struct {
	NetNS   uint32 `json:"netns"`
	Counter string `json:"counter"`
	Delta   uint64 `json:"delta"`
	// Meaning is what a file says; the writer always writes
	// CounterMeaning's words.
	Meaning string `json:"meaning"`
	// Created: the namespace was created during the recording, so the
	// delta counts from zero.
	Created bool `json:"netns_created,omitempty"`
	// Unattributed, on the ListenOverflows and ListenDrops rows of a
	// namespace whose listeners were sampled: the part of the delta no
	// single listener explains.
	Unattributed *uint64 `json:"unattributed,omitempty"`
}

// TimeWaitRecord is one destination of the summary's "time_wait": one
// TimeWaitPressure.
type TimeWaitRecord struct {
	NetNS       uint32 `json:"netns"`
	LocalAddr   string `json:"local_addr"`
	RemoteAddr  string `json:"remote_addr"`
	RemotePort  uint16 `json:"remote_port"`
	Peak        int    `json:"peak"`
	LiveAtEnd   int    `json:"live_at_end"`
	KernelCount *int   `json:"kernel_count_at_end,omitempty"` // absent: not read
	Ports       int    `json:"usable_ports"`
	Entered     uint64 `json:"entered"`
	Warned      bool   `json:"warned"`
}

// SysctlRecord is one of the summary's "sysctls": one setting's value in
// one namespace at the end (findings.Sysctl).
type SysctlRecord struct {
	NetNS uint32 `json:"netns"`
	Name  string `json:"name"`
	Value string `json:"value"`
}

// FindingRecord is one of the summary's "findings", most severe first:
// one findings.Finding.
type FindingRecord struct {
	Kind      string         `json:"kind"`
	Severity  string         `json:"severity"`
	NetNS     uint32         `json:"netns"`
	Subject   string         `json:"subject"`
	Evidence  []FactRecord   `json:"evidence"`
	Sysctls   []SysctlRecord `json:"sysctls"`
	First     time.Time      `json:"first"`
	Last      time.Time      `json:"last"`
	Mechanism string         `json:"mechanism"`
	Advice    string         `json:"advice"`
}

// FactRecord is one number of a finding's "evidence".
type FactRecord struct {
	Name  string `json:"name"`
	Value uint64 `json:"value"`
}

// Document is a .json export: the records of a .jsonl in one object.
// Meta and Summary are pointers so that a reader can tell them absent.
type Document struct {
	Meta        *Meta              `json:"meta"`
	Connections []ConnectionRecord `json:"connections"`
	Listeners   []ListenerRecord   `json:"listeners"`
	Summary     *SummaryRecord     `json:"summary"`
	Samples     []Sample           `json:"samples" export:"optional"`
}

// UnmarshalJSON reads null quantiles, and negative ones (which the writer
// writes as null), as -1.
func (q *Quantiles) UnmarshalJSON(b []byte) error {
	var raw struct {
		Count              uint64
		P50, P90, P99, Max *int64
	}
	if err := jsonUnmarshal(b, &raw); err != nil {
		return err
	}
	val := func(p *int64) int64 {
		if p == nil || *p < 0 {
			return -1
		}
		return *p
	}
	*q = Quantiles{Count: raw.Count, P50: val(raw.P50), P90: val(raw.P90), P99: val(raw.P99), Max: val(raw.Max)}
	return nil
}

// Sample is a sample record: one sampling interval of the recording
// (tracer.Sample). Counts are increments over the interval; queue,
// backlog and count are levels at its end. AppendSampleJSON writes it;
// the reader keeps them in Recording.Samples, in file order (time order).
type Sample struct {
	Time       time.Time `json:"time"` // the end of the interval
	IntervalMs int64     `json:"interval_ms"`
	Opened     uint64    `json:"opened"`
	Closed     uint64    `json:"closed"`
	// ClosedByOutcome holds the outcomes of the connections closed, those
	// with at least one.
	ClosedByOutcome map[string]uint64 `json:"closed_by_outcome"`
	Flagged         uint64            `json:"flagged"`
	LostEvents      uint64            `json:"lost_events"`
	LostRecords     uint64            `json:"lost_records"`
	Listeners       []SampleListener  `json:"listeners,omitempty"`
	// TimeWait holds at most tracer.MaxSampleTimeWait destinations, the
	// most sockets first.
	TimeWait []SampleTimeWait `json:"time_wait,omitempty"`
}

// SampleListener is one listener of a sample.
type SampleListener struct {
	NetNS         uint32 `json:"netns"`
	Addr          string `json:"addr"` // written null when unknown, read as ""
	Port          uint16 `json:"port"`
	Queue         uint32 `json:"queue"`
	PeakQueue     uint32 `json:"peak_queue"`
	Backlog       uint32 `json:"backlog"`
	OverflowDrops uint64 `json:"overflow_drops"`
}

// SampleTimeWait is one destination's live TIME_WAIT sockets in a sample.
type SampleTimeWait struct {
	NetNS      uint32 `json:"netns"`
	RemoteAddr string `json:"remote_addr"`
	RemotePort uint16 `json:"remote_port"`
	Count      int    `json:"count"`
}
