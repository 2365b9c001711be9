package output

import (
	"strings"
	"testing"

	"github.com/tcpscope/tcpscope/tracer"
)

func TestDetailsNamesWhoSentTheReset(t *testing.T) {
	for _, tc := range []struct {
		state tracer.State
		want  string
	}{
		{tracer.StateEstablished, "RST sent: TCP_ABORT_ON_CLOSE, lived 12us"},
		{tracer.StateListen, "RST sent by the listener: TCP_ABORT_ON_CLOSE, lived 12us"},
	} {
		c := &tracer.Connection{Role: tracer.RoleServer, SynRecvUs: -1, HandshakeUs: -1, DurationUs: 12,
			Timeline: []tracer.Item{{Kind: tracer.ItemResetSent, State: tc.state, Reason: rstReason("TCP_ABORT_ON_CLOSE"), HasReason: true}}}
		if got := Details(c); got != tc.want {
			t.Errorf("reset in %s: %q, want %q", tc.state, got, tc.want)
		}
	}
}

// A connection open before tracing has no known start: its record says how
// long it was seen, at least; one still open at the end lived at least that.
func TestLifetimeSaysWhatIsKnown(t *testing.T) {
	for _, tc := range []struct {
		outcome tracer.Outcome
		flags   tracer.FlagSet
		want    string
	}{
		{tracer.OutcomeOpen, tracer.FlagsOf(tracer.FlagPreexisting), "seen for ≥ 4.00s"},
		{tracer.OutcomeClosed, tracer.FlagsOf(tracer.FlagPreexisting), "seen for ≥ 4.00s"},
		{tracer.OutcomeOpen, 0, "lived ≥ 4.00s"},
		{tracer.OutcomeClosed, 0, "lived 4.00s"},
	} {
		c := &tracer.Connection{Role: tracer.RoleClient, Outcome: tc.outcome, Flags: tc.flags, SynRecvUs: -1, HandshakeUs: -1, DurationUs: 4_000_000}
		if got := Details(c); got != tc.want {
			t.Errorf("%s %v: %q, want %q", tc.outcome, tc.flags, got, tc.want)
		}
	}
	c := &tracer.Connection{Role: tracer.RoleClient, Outcome: tracer.OutcomeOpen, Flags: tracer.FlagsOf(tracer.FlagPreexisting),
		SynRecvUs: -1, HandshakeUs: -1, DurationUs: 4_000_000}
	var b strings.Builder
	if err := TimelineTable(&b, c); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "open before tracing, first seen ") || strings.Contains(b.String(), "lived") {
		t.Errorf("report of a preexisting connection:\n%s", b.String())
	}
}

// TestTimelineTableSaysLifetimeOnce: the header line of report --id says
// how long the connection lived once.
func TestTimelineTableSaysLifetimeOnce(t *testing.T) {
	c := &tracer.Connection{ID: 7, Role: tracer.RoleServer, Outcome: tracer.OutcomeClosed, SynRecvUs: 3_040_000, HandshakeUs: -1,
		DurationUs: 3_070_000, Retransmits: tracer.Retransmits{SynAck: 2}}
	var b strings.Builder
	if err := TimelineTable(&b, c); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(b.String(), "lived 3.07s"); n != 1 {
		t.Errorf("report --id says the lifetime %d times, want once:\n%s", n, b.String())
	}
}

func TestDetailsCountsFinRetransmitsApart(t *testing.T) {
	c := &tracer.Connection{Role: tracer.RoleClient, Outcome: tracer.OutcomeClosed, SynRecvUs: -1, HandshakeUs: -1, DurationUs: 12,
		Retransmits: tracer.Retransmits{Data: 2, Fin: 1}}
	if got, want := Details(c), "data rtx x2, FIN rtx x1, lived 12us"; got != want {
		t.Errorf("%q, want %q", got, want)
	}
}

func TestRecursionLine(t *testing.T) {
	rs := []tracer.RecursionMisses{
		{Tracepoint: "sock/inet_sock_set_state", Program: "handle_set_state", Misses: 5, Nested: 4, NestedMisses: 2},
		{Tracepoint: "tcp/tcp_retransmit_skb", Program: "handle_retransmit_err"},
	}
	want := "recursion misses: 5 (inet_sock_set_state 5, 4 handled nested, 1 lost, nested program's own misses 2); lost 1"
	if got := RecursionLine(rs); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	if got, want := RecursionLine(rs[1:]), "recursion misses: 0; lost 0"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// The summary tables name outcomes and flags.
func TestSummaryTablesNameOutcomesAndFlags(t *testing.T) {
	s := tracer.NewStats()
	s.Add(&tracer.Connection{Role: tracer.RoleClient, Outcome: tracer.OutcomeAbandoned, HandshakeUs: -1, SynRecvUs: -1,
		Flags: tracer.FlagsOf(tracer.FlagSynRetransmitted)})
	var b strings.Builder
	if err := SummaryTables(&b, s, Extra{}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| abandoned_by_app |", "| syn_retransmitted |"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, b.String())
		}
	}
}
