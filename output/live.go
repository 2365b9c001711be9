package output

import (
	"fmt"
	"strings"
	"time"

	"github.com/tcpscope/tcpscope/tracer"
)

// Live is a snapshot of a recording in progress.
type Live struct {
	Elapsed       time.Duration
	OpenedPerS    float64 // connections started per second, last interval
	ClosedPerS    float64 // connections ended per second, last interval
	OpenNow       int     // connections followed now
	Connections   uint64  // ended so far
	Flags         map[tracer.Flag]uint64
	TimeWaitNow   int
	TimeWaitWorst string // the destination under most pressure, if any
	SynRecvP99Us  int64  // -1 unknown
	Lost          uint64
}

const (
	bold   = "\x1b[1m"
	red    = "\x1b[31m"
	yellow = "\x1b[33m"
	reset  = "\x1b[0m"
)

// PanelLines renders the live panel shown under the flagged lines on a
// terminal. Colour codes only when color is set.
func PanelLines(l Live, color bool) []string {
	paint := func(code, s string) string {
		if !color {
			return s
		}
		return code + s + reset
	}
	lines := []string{
		paint(bold, fmt.Sprintf("-- tcpscope %s", l.Elapsed.Round(time.Second))) +
			fmt.Sprintf("  opened %.0f/s  closed %.0f/s  open %d  ended %d  SYN_RECV p99 %s",
				l.OpenedPerS, l.ClosedPerS, l.OpenNow, l.Connections, Duration(l.SynRecvP99Us)),
	}
	var flags []string
	for _, f := range tracer.AllFlags {
		if n := l.Flags[f]; n > 0 && f != tracer.FlagTimeWait && f != tracer.FlagPreexisting {
			flags = append(flags, fmt.Sprintf("%s %d", f, n))
		}
	}
	if len(flags) == 0 {
		lines = append(lines, "   flagged: none")
	} else {
		lines = append(lines, "   flagged: "+paint(yellow, strings.Join(flags, "  ")))
	}
	tw := fmt.Sprintf("   TIME_WAIT now %d", l.TimeWaitNow)
	if l.TimeWaitWorst != "" {
		tw += "  " + paint(red, l.TimeWaitWorst)
	}
	lost := fmt.Sprintf("  lost events %d", l.Lost)
	if l.Lost > 0 {
		lost = "  " + paint(red, fmt.Sprintf("lost events %d", l.Lost))
	}
	return append(lines, tw+lost)
}

// StatusLine is the plain one-line status printed when output is not a
// terminal: no control characters, no colour.
func StatusLine(l Live) string {
	var flagged uint64
	for f, n := range l.Flags {
		if f != tracer.FlagTimeWait && f != tracer.FlagPreexisting {
			flagged += n
		}
	}
	return fmt.Sprintf("tcpscope: %s elapsed, %.0f opened/s, %.0f closed/s, %d open, %d ended, %d flagged, TIME_WAIT %d, SYN_RECV p99 %s, lost %d",
		l.Elapsed.Round(time.Second), l.OpenedPerS, l.ClosedPerS, l.OpenNow, l.Connections, flagged, l.TimeWaitNow, Duration(l.SynRecvP99Us), l.Lost)
}

// Collapser keeps a failure that repeats toward one destination (a connect
// storm meeting EADDRNOTAVAIL, connects to a closed port) from flooding
// the live view: the first record of a kind is printed in full, repeats
// within Window are counted, and one line per key and window gives the
// count. Only the live view collapses; every record still goes to the export.
// Time comes from the caller, so tests drive it.
type Collapser struct {
	Window  time.Duration
	buckets map[collapseKey]*collapseBucket
	order   []collapseKey // keys in first-seen order, for stable output
	due     time.Time     // when the earliest window ends: nothing to flush before
}

type collapseKey struct {
	role    tracer.Role
	netns   uint32
	remote  string
	outcome tracer.Outcome
	errno   tracer.Errno
	flags   tracer.FlagSet
}

type collapseBucket struct {
	start   time.Time // window start (the caller's clock)
	n       int       // repeats counted in this window
	last    string    // the last repeat, rendered as its collapsed line prefix
	since   time.Time // end of the record last printed or counted before this window
	lastEnd time.Time // end of the last repeat
}

// collapsible: a client's connect that failed or was refused carries
// nothing of its own but the destination and the error, so a thousand of
// them read as one.
func collapsible(c *tracer.Connection) bool {
	switch c.Outcome {
	case tracer.OutcomeFailed, tracer.OutcomeRefused:
		return c.Role == tracer.RoleClient
	}
	return false
}

func keyOf(c *tracer.Connection) collapseKey {
	return collapseKey{role: c.Role, netns: c.NetNS, remote: Endpoint(c.Remote), outcome: c.Outcome, errno: c.Errno,
		flags: c.Flags}
}

// Add takes a flagged connection at now and returns the lines to print:
// the counts of windows that have ended, then the connection's own line
// unless it is a repeat inside its key's window. A count line carries the
// time of the last repeat it counts and, after "since", the time of the
// record printed or counted before them.
func (k *Collapser) Add(c *tracer.Connection, now time.Time) []string {
	out := k.Flush(now)
	if !collapsible(c) {
		return append(out, FlaggedLine(c))
	}
	if k.buckets == nil {
		k.buckets = map[collapseKey]*collapseBucket{}
	}
	key := keyOf(c)
	if b, ok := k.buckets[key]; ok {
		b.n++
		b.last, b.lastEnd = collapsedPrefix(c), c.End
		return out
	}
	k.buckets[key] = &collapseBucket{start: now, since: c.End}
	if len(k.order) == 0 || now.Add(k.Window).Before(k.due) {
		k.due = now.Add(k.Window)
	}
	k.order = append(k.order, key)
	return append(out, FlaggedLine(c))
}

// Flush returns one count line for each key whose window ended by now and
// saw repeats; such a key starts a new window, so a storm that goes on
// prints one line per Window. A key whose window saw no repeat is dropped:
// its next record is printed in full again.
func (k *Collapser) Flush(now time.Time) []string {
	return k.flush(now, false)
}

// End returns the counts still pending, when the recording stops.
func (k *Collapser) End(now time.Time) []string {
	return k.flush(now, true)
}

func (k *Collapser) flush(now time.Time, all bool) []string {
	if !all && now.Before(k.due) {
		return nil
	}
	var out []string
	keep := k.order[:0]
	due := time.Time{}
	for _, key := range k.order {
		b := k.buckets[key]
		if !all && now.Sub(b.start) < k.Window {
			keep = append(keep, key)
			if end := b.start.Add(k.Window); due.IsZero() || end.Before(due) {
				due = end
			}
			continue
		}
		if b.n > 0 {
			out = append(out, fmt.Sprintf("%s x%d more since %s", b.last, b.n, b.since.Local().Format("15:04:05.000")))
		}
		if b.n > 0 && !all {
			*b = collapseBucket{start: now, since: b.lastEnd}
			keep = append(keep, key)
			if end := now.Add(k.Window); due.IsZero() || end.Before(due) {
				due = end
			}
			continue
		}
		delete(k.buckets, key)
	}
	k.order, k.due = keep, due
	return out
}

// collapsedPrefix is a flagged line without the per-connection details:
// time, role, endpoints, owner, outcome, errno and flags.
func collapsedPrefix(c *tracer.Connection) string {
	line := FlaggedLine(c)
	if i := strings.LastIndex(line, "] "); i >= 0 {
		return line[:i+1]
	}
	return line
}
