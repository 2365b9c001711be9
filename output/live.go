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
