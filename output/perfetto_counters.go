package output

import (
	"io"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tcpscope/tcpscope/tracer"
)

// Finish writes the counters of the samples, on the track of the
// listener's owner (from the listener records) or on a track of their
// own, then every process's name, and ends the trace.
func (p *PerfettoWriter) Finish(samples []Sample, listeners []ListenerRow) error {
	owners := map[listenerKey]ListenerRow{}
	for _, l := range listeners {
		owners[listenerKey{l.NetNS, l.Local.Port()}] = l
	}
	last := map[string]uint32{} // counter name to its track, for the zeroes
	for i := range samples {
		p.sampleCounters(&samples[i], owners, last)
	}
	p.procs[perfettoSamplesPID] = "tcpscope samples"
	for _, pid := range slices.Sorted(maps.Keys(p.procs)) {
		o := p.event("M", "process_name", "", pid, p.origin)
		o.key("args")
		a := newObj(o.b)
		a.str("name", p.procs[pid])
		o.b = a.end()
		p.emit(o)
	}
	p.write([]byte("]}\n"))
	if p.err == nil {
		p.err = p.w.Flush()
	}
	return p.err
}

type listenerKey struct {
	netns uint32
	port  uint16
}

// series is one value of a counter event: a counter track of its own.
type series struct {
	name  string
	value uint64
}

// sampleCounters writes one sample's counters. What happened in the
// interval (opened, closed, flagged, an accept queue's peak and drops) is
// written at the interval's start, so that it spans the interval; levels
// measured at its end (queue, backlog, TIME_WAIT) at its end. A listener
// missing from a sample that had one before gets a 0, so that its counter
// does not stay at its last level; so does a destination, unless the
// sample's list was full: it may only have dropped out of the busiest.
func (p *PerfettoWriter) sampleCounters(s *Sample, owners map[listenerKey]ListenerRow, last map[string]uint32) {
	from := s.Time.Add(-time.Duration(max(s.IntervalMs, 0)) * time.Millisecond)
	seen := map[string]bool{}
	p.counter("connections", perfettoSamplesPID, from, []series{{"opened", s.Opened}, {"closed", s.Closed}, {"flagged", s.Flagged}})
	for _, l := range s.Listeners {
		pid := uint32(perfettoSamplesPID)
		if row, ok := owners[listenerKey{l.NetNS, l.Port}]; ok && row.PID != 0 {
			pid = p.process(row.PID, row.Comm)
		}
		name := "accept queue " + NetText(l.NetNS, l.Addr, l.Port)
		p.counter(name, pid, from, []series{{"peak", uint64(l.PeakQueue)}, {"overflow_drops", l.OverflowDrops}})
		p.counter(name, pid, s.Time, []series{{"queue", uint64(l.Queue)}, {"backlog", uint64(l.Backlog)}})
		seen[name], last[name] = true, pid
	}
	for _, t := range s.TimeWait {
		name := "TIME_WAIT to " + NetText(t.NetNS, t.RemoteAddr, t.RemotePort)
		p.counter(name, perfettoSamplesPID, s.Time, []series{{"count", uint64(max(t.Count, 0))}})
		seen[name], last[name] = true, perfettoSamplesPID
	}
	full := len(s.TimeWait) >= tracer.MaxSampleTimeWait
	for _, name := range slices.Sorted(maps.Keys(last)) {
		switch {
		case seen[name]:
		case strings.HasPrefix(name, "TIME_WAIT"):
			if !full {
				p.counter(name, last[name], s.Time, []series{{"count", 0}})
				delete(last, name)
			}
		default: // a listener keeps its backlog
			p.counter(name, last[name], from, []series{{"peak", 0}, {"overflow_drops", 0}})
			p.counter(name, last[name], s.Time, []series{{"queue", 0}})
			delete(last, name)
		}
	}
}

// NetText names a listener or destination: its address (IPv6 in
// brackets, * when unknown or the wildcard), port and network namespace.
func NetText(netns uint32, addr string, port uint16) string {
	if a, err := netip.ParseAddr(addr); err == nil && a.Is6() {
		addr = "[" + addr + "]"
	}
	if addr == "" {
		addr = "*"
	}
	return addr + ":" + strconv.Itoa(int(port)) + " (netns " + strconv.FormatUint(uint64(netns), 10) + ")"
}

// counter writes a "C" event: one series per arg, all numbers.
func (p *PerfettoWriter) counter(name string, pid uint32, at time.Time, values []series) {
	o := p.event("C", name, "", pid, at)
	o.key("args")
	a := newObj(o.b)
	for _, v := range values {
		a.uint(v.name, v.value)
	}
	o.b = a.end()
	p.emit(o)
}

// WritePerfetto writes a whole recording held in memory as a trace.
func WritePerfetto(w io.Writer, rec *Recording) error {
	scan := NewPerfettoScan()
	for i := range rec.Connections {
		scan.Add(&rec.Connections[i])
	}
	p := scan.Writer(w, rec.Meta)
	for i := range rec.Connections {
		if err := p.Connection(&rec.Connections[i]); err != nil {
			return err
		}
	}
	return p.Finish(rec.Samples, rec.Listeners)
}

// PerfettoScan is what a first reading of an export tells the trace: the
// connections in it and the earliest time.
type PerfettoScan struct {
	conns  map[uint64]traceConn
	origin time.Time
}

// NewPerfettoScan starts a scan; Add takes each connection kept.
func NewPerfettoScan() *PerfettoScan { return &PerfettoScan{conns: map[uint64]traceConn{}} }

// Add notes one connection of the trace.
func (s *PerfettoScan) Add(c *tracer.Connection) {
	s.conns[c.ID] = traceConn{start: c.Start, peer: c.PeerID}
	if s.origin.IsZero() || c.Start.Before(s.origin) {
		s.origin = c.Start
	}
}

// Writer starts the trace of the scanned recording, whose meta is m.
func (s *PerfettoScan) Writer(w io.Writer, m Meta) *PerfettoWriter {
	origin := m.Start
	if !s.origin.IsZero() && s.origin.Before(origin) {
		origin = s.origin
	}
	return newPerfettoWriter(w, m, origin, s.conns)
}

// PerfettoFromExport writes the trace of an export that read reads, twice:
// a first reading (without timelines) finds the connections kept and the
// earliest time, so that an arrow is drawn only to a connection in the
// trace; the second writes them one at a time, so memory does not grow
// with the file. keep selects connections (nil keeps all).
func PerfettoFromExport(w io.Writer, read func(ReadOptions) (*Recording, error), keep func(*tracer.Connection) bool) error {
	scan := NewPerfettoScan()
	first, err := read(ReadOptions{FlaggedTimelinesOnly: true, Connection: func(c *tracer.Connection) error {
		if keep == nil || keep(c) {
			scan.Add(c)
		}
		return nil
	}})
	if err != nil {
		return err
	}
	p := scan.Writer(w, first.Meta)
	rec, err := read(ReadOptions{Connection: func(c *tracer.Connection) error {
		if keep != nil && !keep(c) {
			return nil
		}
		return p.Connection(c)
	}})
	if err != nil {
		return err
	}
	return p.Finish(rec.Samples, rec.Listeners)
}
