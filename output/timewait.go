package output

import (
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/tcpscope/tcpscope/tracer"
)

// TimeWaitPressure is one destination's TIME_WAIT load, with the kernel's
// own count of its TIME_WAIT sockets when it could be read (sock_diag).
type TimeWaitPressure struct {
	tracer.TimeWaitDest
	KernelCount int // -1 when not read
}

func appendTimeWait(b []byte, ts []TimeWaitPressure) []byte {
	b = append(b, '[')
	for i, t := range ts {
		if i > 0 {
			b = append(b, ',')
		}
		o := newObj(b)
		o.uint("netns", uint64(t.Key.NetNS))
		o.str("local_addr", t.Key.Local.String())
		o.str("remote_addr", t.Key.Remote.Addr().String())
		o.uint("remote_port", uint64(t.Key.Remote.Port()))
		o.uint("peak", uint64(t.Peak))
		o.uint("live_at_end", uint64(t.Now))
		if t.KernelCount >= 0 {
			o.uint("kernel_count_at_end", uint64(t.KernelCount))
		}
		o.uint("usable_ports", uint64(t.Ports))
		o.uint("entered", t.Total)
		o.boolean("warned", t.Warned)
		b = o.end()
	}
	return append(b, ']')
}

// TimeWaitAlertLine is the live warning when a destination's TIME_WAIT
// sockets approach its usable local ports, timed like a flagged line.
func TimeWaitAlertLine(a tracer.TimeWaitAlert) string {
	d := a.Dest
	s := fmt.Sprintf("%s WARNING TIME_WAIT pressure: %s -> %s holds %d TIME_WAIT sockets, %d%% of %d local ports (ip_local_port_range), +%.0f/s",
		a.At.Local().Format("15:04:05.000"), d.Key.Local, d.Key.Remote, d.Now, 100*d.Now/max(d.Ports, 1), d.Ports, d.RatePerS)
	if a.TimeLeft > 0 {
		s += fmt.Sprintf("; connects fail with EADDRNOTAVAIL in about %s", a.TimeLeft.Round(100*time.Millisecond))
	}
	return s
}

// TimeWaitTable renders the destinations with the most TIME_WAIT.
func TimeWaitTable(w io.Writer, ts []TimeWaitPressure) error { return TimeWaitTableData(ts).Render(w) }

// TimeWaitTableData is TimeWaitTable's data.
func TimeWaitTableData(ts []TimeWaitPressure) Table {
	var rows [][]string
	for _, t := range ts {
		if t.Peak < 2 && !t.Warned {
			continue
		}
		ports, kernel, warned := "?", "-", ""
		if t.Ports > 0 {
			ports = fmt.Sprintf("%d (%d%%)", t.Ports, 100*t.Peak/t.Ports)
		}
		if t.KernelCount >= 0 {
			kernel = strconv.Itoa(t.KernelCount)
		}
		if t.Warned {
			warned = "passed 80% of ports"
		}
		rows = append(rows, []string{fmt.Sprintf("%s -> %s", t.Key.Local, t.Key.Remote), strconv.Itoa(t.Peak),
			strconv.Itoa(t.Now), kernel, ports, warned})
	}
	return Table{"TIME_WAIT pressure", []string{"TIME_WAIT TOWARD", "PEAK", "NOW", "KERNEL NOW", "LOCAL PORTS (PEAK SHARE)", "WARNING"}, rows}
}
