package output

import (
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/tracer"
)

func sampleLive() Live {
	return Live{Elapsed: 12 * time.Second, OpenedPerS: 950, ClosedPerS: 940, OpenNow: 12, Connections: 11000,
		Flags:       map[tracer.Flag]uint64{tracer.FlagSynAckRetransmitted: 3, tracer.FlagTimeWait: 9000, tracer.FlagRefused: 2},
		TimeWaitNow: 9000, SynRecvP99Us: 3_040_000, Lost: 0}
}

func TestPanelLines(t *testing.T) {
	lines := PanelLines(sampleLive(), false)
	text := strings.Join(lines, "\n")
	for _, want := range []string{"opened 950/s", "open 12", "SYN_RECV p99 3.04s", "synack_retransmitted 3", "refused 2", "TIME_WAIT now 9000", "lost events 0"} {
		if !strings.Contains(text, want) {
			t.Errorf("panel lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "\x1b") {
		t.Errorf("escape codes without colour: %q", text)
	}
	if strings.Contains(text, "time_wait 9000") {
		t.Errorf("time_wait is not a problem flag: %s", text)
	}
	if colored := strings.Join(PanelLines(sampleLive(), true), "\n"); !strings.Contains(colored, "\x1b[") {
		t.Errorf("no colour when asked")
	}
}

func TestStatusLineHasNoControlCharacters(t *testing.T) {
	l := sampleLive()
	l.Lost = 5
	s := StatusLine(l)
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			t.Fatalf("control character %q in %q", r, s)
		}
	}
	if !strings.Contains(s, "5 flagged") || !strings.Contains(s, "lost 5") {
		t.Errorf("status line %q", s)
	}
}

func exhausted(at time.Time) *tracer.Connection {
	return &tracer.Connection{Role: tracer.RoleClient, NetNS: 7, Remote: netip.MustParseAddrPort("127.0.0.1:8083"),
		Start: at, End: at, Outcome: tracer.OutcomeFailed, Errno: tracer.ErrnoAddrNotAvail, Comm: "storm", PID: 42,
		Flags: tracer.FlagsOf(tracer.FlagPortExhausted)}
}

// TestCollapserCountsRepeats: 12,001 identical failures in 2.5 s print as
// one full line and a count per second, and the counts add up.
func TestCollapserCountsRepeats(t *testing.T) {
	k := Collapser{Window: time.Second}
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.Local)
	var lines []string
	const n = 12001
	for i := 0; i < n; i++ {
		now := t0.Add(time.Duration(i) * 2500 * time.Millisecond / n)
		lines = append(lines, k.Add(exhausted(now), now)...)
	}
	lines = append(lines, k.End(t0.Add(2500*time.Millisecond))...)
	if len(lines) != 4 {
		t.Fatalf("%d lines, want 1 full and 3 counts:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	if !strings.HasPrefix(lines[0], "03:04:05.000 client *:0 -> 127.0.0.1:8083 storm/42 failed (EADDRNOTAVAIL) [port_exhausted]") {
		t.Errorf("first line %q", lines[0])
	}
	total := 1
	re := regexp.MustCompile(`^(\S+) .*\[port_exhausted\] x(\d+) more since (\S+)$`)
	since := "03:04:05.000" // the full line's time, then the last counted one's
	for _, l := range lines[1:] {
		m := re.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("count line %q", l)
		}
		c, _ := strconv.Atoi(m[2])
		total += c
		if m[3] != since {
			t.Errorf("count line %q: want since %s", l, since)
		}
		since = m[1]
	}
	if total != n {
		t.Errorf("lines account for %d records, want %d:\n%s", total, n, strings.Join(lines, "\n"))
	}
	if !strings.HasPrefix(lines[1], "03:04:05.999 ") || !strings.Contains(lines[1], " x4800 more since 03:04:05.000") {
		t.Errorf("a count per second expected: %q", lines[1])
	}
}

// TestCollapserKeepsDistinctAndQuietKeys: another destination, another
// errno or an established connection is never folded into a count, and a
// failure that does not repeat within the window is printed in full again.
func TestCollapserKeepsDistinctAndQuietKeys(t *testing.T) {
	k := Collapser{Window: time.Second}
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.Local)
	other := exhausted(t0)
	other.Remote = netip.MustParseAddrPort("127.0.0.1:9000")
	refused := exhausted(t0)
	refused.Outcome, refused.Errno, refused.Flags = tracer.OutcomeRefused, tracer.ErrnoConnRefused, tracer.FlagsOf(tracer.FlagRefused)
	reset := exhausted(t0)
	reset.Outcome, reset.Errno, reset.Flags = tracer.OutcomeReset, 0, tracer.FlagsOf(tracer.FlagResetReceived)
	var lines []string
	for _, c := range []*tracer.Connection{exhausted(t0), other, refused, reset, reset} {
		lines = append(lines, k.Add(c, t0)...)
	}
	if len(lines) != 5 {
		t.Fatalf("%d lines, want 5 full ones:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	if got := k.Flush(t0.Add(1500 * time.Millisecond)); len(got) != 0 {
		t.Errorf("counts without repeats: %q", got)
	}
	later := t0.Add(3 * time.Second)
	if got := k.Add(exhausted(later), later); len(got) != 1 || strings.Contains(got[0], " more since ") {
		t.Errorf("a failure after a quiet window: %q, want its full line", got)
	}
	if got := k.End(later); len(got) != 0 {
		t.Errorf("End without repeats: %q", got)
	}
}

func TestTimeWaitAlertLineHasTime(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 678_000_000, time.Local)
	a := tracer.TimeWaitAlert{At: at, Dest: tracer.TimeWaitDest{Key: tracer.TimeWaitKey{Local: netip.MustParseAddr("127.0.0.1"),
		Remote: netip.MustParseAddrPort("127.0.0.1:8083")}, Now: 160, Ports: 200}}
	if l := TimeWaitAlertLine(a); !strings.HasPrefix(l, "03:04:05.678 WARNING TIME_WAIT pressure: ") {
		t.Errorf("alert line %q lacks the time every other line starts with", l)
	}
}
