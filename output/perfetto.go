package output

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/tcpscope/tcpscope/tracer"
)

// The Chrome trace-event JSON that ui.perfetto.dev opens: one process
// track per owning process, each connection a nestable async slice (ph
// "b"/"e", cat "tcp", id its connection id) holding its states as nested
// slices and its retransmits, resets and errors as async instants (ph
// "n"); accept queues, TIME_WAIT and connection counts from the sample
// records as counters (ph "C").
//
// The arrows between the two ends of a connection are Perfetto's flow
// events of version 2: "bind_id" with "flow_out" on the "b" of the end
// that starts first, "flow_in" on the other's. Version 1 flow events
// ("s"/"t"/"f") bind only to slices on thread tracks (B/E/X events, the
// slice enclosing the flow event's ts on its pid/tid), so they cannot
// attach to async slices, and connections must be async slices because
// they overlap. Perfetto's JSON importer binds v2 flows on "b" and "n"
// events to the slice the event opens; the flow must begin before it
// ends, hence the earlier end carries flow_out.
//
// Perfetto sorts the events by time before nesting them, and events with
// the same timestamp may come out in any order: a state therefore ends
// 1 ns before the next one begins and begins 1 ns after its connection,
// so that every begin and end has a time of its own within its slice.

// PerfettoWriter writes one trace as a recording is read: connections as
// they come (Connection), the samples and listeners at the end (Finish).
type PerfettoWriter struct {
	w      *bufio.Writer
	origin time.Time
	conns  map[uint64]traceConn // every connection in the trace, by id
	procs  map[uint32]string    // pid to process_name
	buf    []byte
	order  []int // itemOrder's
	// lastAsync is the time of the connection's last begin or end: each
	// comes strictly after it (asyncAt).
	lastAsync time.Time
	first     bool
	err       error
}

const (
	// Tracks with no process of their own: pids above Linux's
	// PID_MAX_LIMIT (4194304), so none is a real process's.
	perfettoUnknownPID = 4194305 // connections whose owner is not known
	perfettoSamplesPID = 4194306 // counters of no one process
	// ns gives each begin and end a time of its own (see above).
	ns = time.Nanosecond
)

// traceConn is what the arrows need of a connection in the trace.
type traceConn struct {
	start time.Time
	peer  uint64
}

// newPerfettoWriter starts a trace of a recording. Times are written
// relative to origin, which must not be after any time written; conns
// (a PerfettoScan's) holds every connection the trace will hold: an
// arrow is drawn to a connection's peer only when the peer is in it.
func newPerfettoWriter(w io.Writer, meta Meta, origin time.Time, conns map[uint64]traceConn) *PerfettoWriter {
	p := &PerfettoWriter{w: bufio.NewWriterSize(w, 256<<10), origin: origin, conns: conns, procs: map[uint32]string{}, first: true}
	o := newObj(nil)
	o.str("displayTimeUnit", "ms")
	o.key("otherData")
	d := newObj(o.b)
	d.str("tcpscope", meta.Tcpscope)
	d.str("kernel", meta.Kernel)
	d.str("hostname", meta.Hostname)
	d.time("start", meta.Start)
	d.time("origin", origin)
	o.b = d.end()
	o.key("traceEvents")
	p.write(append(o.b, '['))
	return p
}

func (p *PerfettoWriter) write(b []byte) {
	if p.err == nil {
		_, p.err = p.w.Write(b)
	}
}

// event starts one event object in p.buf: ph, name, cat, pid, tid, ts.
func (p *PerfettoWriter) event(ph, name, cat string, pid uint32, at time.Time) obj {
	b := p.buf[:0]
	if !p.first {
		b = append(b, ",\n"...)
	}
	p.first = false
	o := newObj(b)
	o.str("ph", ph)
	o.str("name", name)
	if cat != "" {
		o.str("cat", cat)
	}
	o.uint("pid", uint64(pid))
	o.uint("tid", uint64(pid))
	o.key("ts")
	o.b = p.appendTs(o.b, at)
	return o
}

func (p *PerfettoWriter) emit(o obj) {
	p.buf = o.end()
	p.write(p.buf)
}

// appendTs writes at as microseconds since the origin, to the ns.
func (p *PerfettoWriter) appendTs(b []byte, at time.Time) []byte {
	d := max(at.Sub(p.origin), 0)
	b = strconv.AppendInt(b, int64(d/time.Microsecond), 10)
	if frac := int64(d % time.Microsecond); frac != 0 {
		b = append(b, '.', byte('0'+frac/100), byte('0'+frac/10%10), byte('0'+frac%10))
	}
	return b
}

// process returns the track of a connection's owner, naming it once.
func (p *PerfettoWriter) process(pid uint32, comm string) uint32 {
	if pid == 0 {
		p.procs[perfettoUnknownPID] = "owner unknown"
		return perfettoUnknownPID
	}
	if _, ok := p.procs[pid]; !ok {
		p.procs[pid] = comm + "/" + strconv.FormatUint(uint64(pid), 10)
	}
	return pid
}

func hexID(id uint64) string { return "0x" + strconv.FormatUint(id, 16) }

// connectionName is "tuple role outcome", the slice's and its track's name.
func connectionName(c *tracer.Connection) string {
	return fmt.Sprintf("%s -> %s %s %s", addrPortText(c.Local), addrPortText(c.Remote), c.Role, c.Outcome)
}

func addrPortText(ap netip.AddrPort) string {
	if !ap.Addr().IsValid() {
		return "?:" + strconv.Itoa(int(ap.Port()))
	}
	return ap.String()
}

// Connection writes one connection: its slice, its states inside it and
// its timeline's other items as instants. The connection is not kept.
func (p *PerfettoWriter) Connection(c *tracer.Connection) error {
	pid := p.process(c.PID, c.Comm)
	name, id := connectionName(c), hexID(c.ID)
	start, end := c.Start, c.End
	if end.Before(start.Add(2 * ns)) {
		end = start.Add(2 * ns)
	}
	p.lastAsync = start
	b := p.event("b", name, "tcp", pid, start)
	b.str("id", id)
	p.flow(&b, c)
	b.key("args")
	b.b = appendConnectionArgs(b.b, c)
	p.emit(b)
	p.timeline(c, pid, id, start, end)
	e := p.event("e", name, "tcp", pid, p.asyncAt(end))
	e.str("id", id)
	p.emit(e)
	return p.err
}

// asyncAt is the time of a connection's next begin or end: t, or a
// nanosecond after the one before when t is not after it. Perfetto sorts
// the events by time and orders those of one time as it likes: a begin
// and an end at one time could nest the wrong way.
func (p *PerfettoWriter) asyncAt(t time.Time) time.Time {
	if !t.After(p.lastAsync) {
		t = p.lastAsync.Add(ns)
	}
	p.lastAsync = t
	return t
}

// flow adds the arrow to the connection's other end, when both are in the
// trace, from the end that starts first (the client, on one host; the
// lower id when both start at once).
func (p *PerfettoWriter) flow(o *obj, c *tracer.Connection) {
	// Only two records that name each other: a tuple reused while its
	// old connection's record was still followed can make a third name
	// one of them.
	peer, ok := p.conns[c.PeerID]
	if c.PeerID == 0 || !ok || peer.peer != c.ID {
		return
	}
	o.str("bind_id", hexID(min(c.ID, c.PeerID)))
	if c.Start.Before(peer.start) || c.Start.Equal(peer.start) && c.ID < c.PeerID {
		o.boolean("flow_out", true)
	} else {
		o.boolean("flow_in", true)
	}
}

func appendConnectionArgs(b []byte, c *tracer.Connection) []byte {
	o := newObj(b)
	o.uint("id", c.ID)
	optUint(&o, "peer_id", c.PeerID)
	o.str("role", c.Role.String())
	o.str("outcome", c.Outcome.String())
	o.str("closed_by", c.ClosedBy.String())
	o.errno("errno", c.Errno)
	o.key("flags")
	o.b = append(o.b, '"')
	sep := false
	for f := range c.Flags.All() {
		if sep {
			o.b = append(o.b, ' ')
		}
		sep = true
		o.b = append(o.b, f.String()...)
	}
	o.b = append(o.b, '"')
	o.int("duration_us", c.DurationUs)
	optDuration(&o, "handshake_us", c.HandshakeUs)
	optDuration(&o, "syn_recv_us", c.SynRecvUs)
	o.uint("netns", uint64(c.NetNS))
	o.uint("pid", uint64(c.PID))
	o.str("comm", c.Comm)
	return o.end()
}

// timeline writes the states as slices nested in the connection's, each
// between [start+1ns, end-1ns], and every other item as an instant. Of
// items at the same time, the state changes go first: an instant then
// falls in the state it happened in, and every event follows the one
// before it in time.
func (p *PerfettoWriter) timeline(c *tracer.Connection, pid uint32, id string, start, end time.Time) {
	lo, hi := start.Add(ns), end.Add(-ns)
	clamp := func(t time.Time) time.Time {
		if t.Before(lo) {
			return lo
		}
		if t.After(hi) {
			return hi
		}
		return t
	}
	var open tracer.State // 0: none
	var openAt time.Time
	closeState := func(at time.Time) {
		if open != 0 {
			p.stateEvent("e", pid, id, open, clamp(at.Add(-ns)))
			open = 0
		}
	}
	if first := firstState(c.Timeline); first >= 0 {
		// The state it was in from its start: a server child is in
		// SYN_RECV from its start, though its LISTEN -> SYN_RECV comes
		// with its final ACK.
		it := &c.Timeline[first]
		open, openAt = it.From, lo
		if open == tracer.StateListen {
			open = it.To
		}
		if open == tracer.StateClose {
			open = 0
		}
		if open != 0 {
			openAt = p.stateEvent("b", pid, id, open, openAt)
		}
	}
	for _, i := range p.itemOrder(c.Timeline) {
		it := &c.Timeline[i]
		if it.Kind != tracer.ItemState {
			p.instant(pid, id, it, later(clamp(it.At), openAt))
			continue
		}
		if it.To == open {
			continue
		}
		closeState(it.At)
		if it.To != tracer.StateClose && it.To != 0 {
			open = it.To
			openAt = p.stateEvent("b", pid, id, open, clamp(it.At))
		}
	}
	closeState(end)
}

// itemOrder lists the timeline's items in time order, state changes first
// among items at the same time. The timeline is in time order already.
func (p *PerfettoWriter) itemOrder(tl []tracer.Item) []int {
	p.order = p.order[:0]
	for i := 0; i < len(tl); {
		j := i
		for j < len(tl) && tl[j].At.Equal(tl[i].At) {
			j++
		}
		for _, states := range []bool{true, false} {
			for k := i; k < j; k++ {
				if (tl[k].Kind == tracer.ItemState) == states {
					p.order = append(p.order, k)
				}
			}
		}
		i = j
	}
	return p.order
}

func later(a, b time.Time) time.Time {
	if a.Before(b) {
		return b
	}
	return a
}

func firstState(tl []tracer.Item) int {
	return slices.IndexFunc(tl, func(it tracer.Item) bool { return it.Kind == tracer.ItemState })
}

// stateEvent writes the begin or the end of a state's slice at at, or
// just after the connection's last begin or end (asyncAt): it returns
// the time written.
func (p *PerfettoWriter) stateEvent(ph string, pid uint32, id string, s tracer.State, at time.Time) time.Time {
	at = p.asyncAt(at)
	o := p.event(ph, s.String(), "tcp", pid, at)
	o.str("id", id)
	p.emit(o)
	return at
}

// instant writes a timeline item as an async instant: its kind and reason
// as its name, the item as the export spells it as its args.
func (p *PerfettoWriter) instant(pid uint32, id string, it *tracer.Item, at time.Time) {
	name := it.Kind.String()
	if it.HasReason {
		name += " " + it.Reason.String()
	}
	o := p.event("n", name, "tcp", pid, at)
	o.str("id", id)
	o.key("args")
	o.b = appendItem(o.b, it)
	p.emit(o)
}
