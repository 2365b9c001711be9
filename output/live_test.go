package output

import (
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
