package output

import (
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strconv"
	"time"

	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/cgroups"
)

// QuantilesOf reads a histogram.
func QuantilesOf(h *tracer.Histogram) Quantiles {
	q := Quantiles{Count: h.Count(), P50: h.Quantile(0.5), P90: h.Quantile(0.9), P99: h.Quantile(0.99), Max: -1}
	if h.Count() > 0 {
		q.Max = h.Max()
	}
	return q
}

// ListenerRow is a listener as exported: the same from a live recording
// and from a saved file.
type ListenerRow struct {
	ID          uint64
	NetNS       uint32
	Local       netip.AddrPort
	PID         uint32
	Comm        string
	CgroupID    uint64
	Cgroup      cgroups.Info
	Backlog     uint32
	PeakQueue   uint32
	Connections uint64
	SynAcks     uint64
	Abandoned   uint64
	Resets      uint64
	Overflows   uint64
	Syncookies  uint64
	// From sampling the accept queue and the namespace's counters.
	QueueSamples        uint64
	FullSamples         uint64
	OverflowsAttributed uint64
	SynDropsAttributed  uint64
	DropsAttributed     uint64
	// Traced clients of its namespace that retransmitted SYNs toward it.
	SynRetransmitClients uint64
	ClientSynRetransmits uint64
	SynRecv              Quantiles
	Start, End           time.Time
	Preexisting          bool
	Open                 bool
}

// RowOfListener converts a live listener.
func RowOfListener(l *tracer.Listener) ListenerRow {
	return ListenerRow{ID: l.ID, NetNS: l.NetNS, Local: l.Local, PID: l.PID, Comm: l.Comm, CgroupID: l.CgroupID, Cgroup: l.Cgroup, Backlog: l.Backlog,
		PeakQueue: l.PeakQueue, Connections: l.Children, SynAcks: l.SynAcks, Abandoned: l.Abandoned,
		Resets: l.Resets, Overflows: l.Overflows, Syncookies: l.Syncookies, SynRecv: QuantilesOf(&l.SynRecv),
		QueueSamples: l.QueueSamples, FullSamples: l.FullSamples, OverflowsAttributed: l.OverflowsAttributed,
		SynDropsAttributed: l.SynDropsAttributed(), DropsAttributed: l.DropsAttributed,
		SynRetransmitClients: l.SynRetransmitClients, ClientSynRetransmits: l.ClientSynRetransmits,
		Start: l.Start, End: l.End, Preexisting: l.Preexisting, Open: l.Open}
}

// AppendListenerJSON appends one listener as a JSON object (no newline).
func AppendListenerJSON(b []byte, l *ListenerRow, withType bool) []byte {
	o := newObj(b)
	if withType {
		o.str("type", RecordListener)
	}
	o.uint("id", l.ID)
	o.addrOrNull("local_addr", l.Local.Addr())
	o.uint("local_port", uint64(l.Local.Port()))
	o.uint("netns", uint64(l.NetNS))
	o.uint("pid", uint64(l.PID))
	o.str("comm", l.Comm)
	o.cgroup(l.CgroupID, &l.Cgroup)
	o.uint("backlog", uint64(l.Backlog))
	o.uint("peak_accept_queue", uint64(l.PeakQueue))
	o.uint("connections", l.Connections)
	o.uint("synack_retransmits", l.SynAcks)
	o.uint("abandoned_requests", l.Abandoned)
	o.uint("resets_sent", l.Resets)
	o.uint("overflow_drops", l.Overflows)
	o.uint("syncookie_connections", l.Syncookies)
	o.uint("queue_samples", l.QueueSamples)
	o.uint("full_queue_samples", l.FullSamples)
	o.uint("overflow_drops_attributed", l.OverflowsAttributed)
	o.uint("syn_drops_attributed", l.SynDropsAttributed)
	o.uint("listen_drops_attributed", l.DropsAttributed)
	o.uint("syn_retransmit_clients", l.SynRetransmitClients)
	o.uint("client_syn_retransmits", l.ClientSynRetransmits)
	o.key("syn_recv_us")
	o.b = appendQuantileValues(o.b, l.SynRecv)
	o.time("start", l.Start)
	o.time("end", l.End)
	o.boolean("preexisting", l.Preexisting)
	o.boolean("open", l.Open)
	return o.end()
}

// listenerFromRecord converts a listener record; AppendListenerJSON is
// its inverse.
func listenerFromRecord(j *ListenerRecord) (ListenerRow, error) {
	r := ListenerRow{ID: j.ID, NetNS: j.NetNS, PID: j.PID, Comm: j.Comm, Backlog: j.Backlog, PeakQueue: j.PeakQueue,
		Connections: j.Connections, SynAcks: j.SynAcks, Abandoned: j.Abandoned, Resets: j.Resets, Overflows: j.Overflows,
		Syncookies: j.Syncookies, SynRecv: j.SynRecv, Start: j.Start, End: j.End, Preexisting: j.Preexisting, Open: j.Open,
		QueueSamples: j.QueueSamples, FullSamples: j.FullSamples, OverflowsAttributed: j.OverflowsAttributed,
		SynDropsAttributed: j.SynDropsAttributed, DropsAttributed: j.DropsAttributed,
		SynRetransmitClients: j.SynRetransmitClients, ClientSynRetransmits: j.ClientSynRetransmits}
	r.CgroupID, r.Cgroup = j.CgroupID, cgroupFromRecord(j.Cgroup, j.ContainerID, j.ContainerRuntime, j.PodUID, j.Unit)
	var err error
	if r.Local, err = maybeAddrPort(j.LocalAddr, j.LocalPort); err != nil {
		return r, fmt.Errorf("listener %d: %w", j.ID, err)
	}
	if err := checkTimes(j.Start, j.End); err != nil {
		return r, fmt.Errorf("listener %d: %w", j.ID, err)
	}
	return r, nil
}

// ListenerTable renders the listeners that saw handshakes.
func ListenerTable(w io.Writer, ls []ListenerRow) error { return ListenerTableData(ls).Render(w) }

// ListenerTableData is ListenerTable's data.
func ListenerTableData(ls []ListenerRow) Table {
	ls = append([]ListenerRow(nil), ls...)
	sort.SliceStable(ls, func(i, j int) bool { return ls[i].Connections > ls[j].Connections })
	var rows [][]string
	for i := range ls {
		l := &ls[i]
		if l.Connections == 0 && l.SynAcks == 0 && l.Overflows == 0 && l.Resets == 0 && l.OverflowsAttributed == 0 &&
			l.FullSamples == 0 && l.ClientSynRetransmits == 0 {
			continue
		}
		owner := "-"
		if l.PID != 0 || l.Cgroup.Path != "" {
			owner = OwnerName(l.Comm, l.PID, &l.Cgroup)
		}
		full := "-" // share of the accept-queue samples that found it full
		if l.QueueSamples > 0 {
			full = fmt.Sprintf("%d%%", l.FullSamples*100/l.QueueSamples)
		}
		rows = append(rows, []string{Endpoint(l.Local), owner, fmt.Sprintf("%d/%d", l.PeakQueue, l.Backlog), full,
			strconv.FormatUint(l.Connections, 10), strconv.FormatUint(l.SynAcks, 10),
			strconv.FormatUint(l.Overflows, 10), strconv.FormatUint(l.SynDropsAttributed, 10), strconv.FormatUint(l.ClientSynRetransmits, 10),
			strconv.FormatUint(l.Abandoned, 10), strconv.FormatUint(l.Resets, 10),
			Duration(l.SynRecv.P50) + " / " + Duration(l.SynRecv.P99) + " / " + Duration(l.SynRecv.Max)})
	}
	// Seen: final ACKs dropped, each traced. Attributed: SYNs dropped, from
	// the namespace's counters while only this listener was full.
	return Table{"Listeners", []string{"LISTENER", "OWNER", "PEAK QUEUE/BACKLOG", "QUEUE FULL", "CONNS", "SYN-ACK RTX",
		"ACK OVERFLOWS (SEEN)", "SYN DROPS (ATTRIBUTED)", "CLIENT SYN RTX", "ABANDONED", "RESETS", "SYN_RECV P50/P99/MAX"}, rows}
}
