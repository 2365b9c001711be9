package output

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/findings"
)

// TestFindingsComeFirst: the summary prints the findings before its
// tables, each with its evidence, settings, mechanism and advice.
func TestFindingsComeFirst(t *testing.T) {
	s := tracer.NewStats()
	s.Add(&tracer.Connection{Role: tracer.RoleClient, Outcome: tracer.OutcomeRefused, Flags: tracer.FlagsOf(tracer.FlagRefused),
		Remote: netip.MustParseAddrPort("10.0.0.1:80"), HandshakeUs: -1, SynRecvUs: -1})
	t0 := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	x := Extra{Findings: []findings.Finding{{Kind: findings.ConnectionRefused, Severity: findings.Warning, NetNS: 3, Subject: "10.0.0.1:80",
		Evidence: []findings.Fact{{Name: "refused_connections", Value: 1}}, Sysctls: []findings.Sysctl{{NetNS: 3, Name: findings.SomaxConn, Value: "7"}},
		First: t0, Last: t0, Mechanism: "nothing listened", Advice: "start the server"}}}
	var b strings.Builder
	if err := SummaryTables(&b, s, x); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	want := []string{"FINDINGS (1, most severe first)", "1. WARNING connection_refused: 10.0.0.1:80, netns 3",
		"   evidence: refused_connections 1", "   settings: net.core.somaxconn = 7", "   why: nothing listened", "   change: start the server", "OUTCOME"}
	at := 0
	for _, w := range want {
		i := strings.Index(out[at:], w)
		if i < 0 {
			t.Fatalf("summary lacks %q after offset %d:\n%s", w, at, out)
		}
		at += i
	}
	var none strings.Builder
	if err := SummaryTables(&none, s, Extra{}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(none.String(), "FINDINGS") {
		t.Errorf("no findings, yet a section:\n%s", none.String())
	}
}
