package html

import (
	"strconv"
	"strings"
	"time"

	"github.com/tcpscope/tcpscope/output"
	"github.com/tcpscope/tcpscope/tracer"
)

// row is one connection of the waterfall, kept in the page's terms: the
// reader reuses its connection, and a kept row must not hold on to more
// than it draws.
type row struct {
	ID         uint64
	Start      time.Time
	DurationUs int64
	Flagged    bool
	Role       string
	Outcome    string
	Flags      []string
	Local      string
	Remote     string
	Peer       string
	Ports      string // local and remote port, space-separated, for the filter
	Process    string // comm/pid
	Segments   []segment
	Marks      []mark
	// Head and Timeline are `tcpscope report --id`'s heading lines and
	// rows (output.TimelineData).
	Head     []string
	Timeline [][]string
}

// segment is a stretch of the connection's life in one state, in
// microseconds from its start.
type segment struct {
	State    string
	From, To int64
}

// mark is an event drawn on the bar: a retransmit, a reset, an error.
type mark struct {
	Class string
	At    int64
	Title string
}

func rowOf(c *tracer.Connection, flagged bool) row {
	r := row{ID: c.ID, Start: c.Start, DurationUs: max(c.DurationUs, 0), Flagged: flagged, Role: c.Role.String(),
		Outcome: c.Outcome.String(), Local: output.Endpoint(c.Local), Remote: output.Endpoint(c.Remote),
		Peer:  c.Remote.Addr().String(),
		Ports: strconv.Itoa(int(c.Local.Port())) + " " + strconv.Itoa(int(c.Remote.Port()))}
	if c.Comm != "" || c.PID != 0 {
		r.Process = c.Comm + "/" + strconv.FormatUint(uint64(c.PID), 10)
	}
	for f := range c.Flags.All() {
		r.Flags = append(r.Flags, f.String())
	}
	head, t := output.TimelineData(c)
	r.Head, r.Timeline = head, t.Rows
	r.Segments = segments(c)
	for i := range c.Timeline {
		it := &c.Timeline[i]
		if class := markClass(it); class != "" {
			cells := t.Rows[i]
			title := strings.TrimSpace(cells[0] + " " + cells[1])
			if cells[2] != "" {
				title += ": " + cells[2]
			}
			r.Marks = append(r.Marks, mark{Class: class, At: it.OffsetUs, Title: title})
		}
	}
	return r
}

// segments splits a connection's life into its states. A server's starts
// in SYN_RECV at its first SYN-ACK (the request socket), before the child
// socket's LISTEN -> SYN_RECV.
func segments(c *tracer.Connection) []segment {
	var out []segment
	var cur tracer.State
	var since int64
	for i := range c.Timeline {
		it := &c.Timeline[i]
		switch {
		case it.Kind == tracer.ItemSynAck && cur == 0:
			cur, since = tracer.StateSynRecv, it.OffsetUs
		case it.Kind == tracer.ItemState && it.To == tracer.StateSynRecv && cur == tracer.StateSynRecv:
			// The child socket of a request already drawn.
		case it.Kind == tracer.ItemState:
			if cur != 0 && it.OffsetUs > since {
				out = append(out, segment{State: cur.String(), From: since, To: it.OffsetUs})
			}
			cur, since = it.To, it.OffsetUs
		}
	}
	if cur != 0 && cur != tracer.StateClose && c.DurationUs > since {
		out = append(out, segment{State: cur.String(), From: since, To: c.DurationUs})
	}
	return out
}

// markClass names the marker an item gets; "" for none (state changes
// are the bar's segments).
func markClass(it *tracer.Item) string {
	switch it.Kind {
	case tracer.ItemRetransmit:
		switch it.Detail {
		case tracer.DetailResentSyn:
			return "rtx-syn"
		case tracer.DetailResentSynAck:
			return "rtx-synack"
		case tracer.DetailResentFin:
			return "rtx-fin"
		}
		return "rtx-data"
	case tracer.ItemSynAckRetransmit:
		return "rtx-synack"
	case tracer.ItemResetSent:
		return "rst-sent"
	case tracer.ItemResetReceived:
		return "rst-recv"
	case tracer.ItemError:
		return "err"
	case tracer.ItemListenOverflow:
		return "ovf"
	}
	return ""
}
