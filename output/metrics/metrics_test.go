package metrics

import (
	"io"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/tracer"
)

// scrape returns what a scraper reads from the handler.
func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, err := io.ReadAll(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

func wantLines(t *testing.T, body string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if !strings.Contains(body, "\n"+l+"\n") {
			t.Errorf("no line %q in the scrape", l)
		}
	}
}

// TestConnectionMetrics: each finished connection moves its role and
// outcome, each of its flags, its failure type, its handshake bucket and
// its retransmits.
func TestConnectionMetrics(t *testing.T) {
	m := New()
	m.Connection(&tracer.Connection{Role: tracer.RoleClient, Outcome: tracer.OutcomeTimeWait, HandshakeUs: 1_000_150,
		SynRecvUs: -1, Flags: tracer.FlagsOf(tracer.FlagSynRetransmitted, tracer.FlagTimeWait), Retransmits: tracer.Retransmits{Syn: 1}})
	m.Connection(&tracer.Connection{Role: tracer.RoleClient, Outcome: tracer.OutcomeRefused, HandshakeUs: -1, SynRecvUs: -1,
		Flags: tracer.FlagsOf(tracer.FlagRefused), Errno: tracer.ErrnoConnRefused})
	m.Connection(&tracer.Connection{Role: tracer.RoleClient, Outcome: tracer.OutcomeFailed, HandshakeUs: -1, SynRecvUs: -1,
		Flags: tracer.FlagsOf(tracer.FlagPortExhausted), Errno: tracer.ErrnoAddrNotAvail})
	m.Connection(&tracer.Connection{Role: tracer.RoleServer, Outcome: tracer.OutcomeReset, HandshakeUs: -1, SynRecvUs: 40,
		Flags: tracer.FlagsOf(tracer.FlagResetSent), Retransmits: tracer.Retransmits{Data: 2, Fin: 1}})
	wantLines(t, scrape(t, m),
		`tcpscope_connections_total{outcome="time_wait",role="client"} 1`,
		`tcpscope_connections_total{outcome="refused",role="client"} 1`,
		`tcpscope_connections_total{outcome="failed",role="client"} 1`,
		`tcpscope_connections_total{outcome="reset",role="server"} 1`,
		`tcpscope_connection_flags_total{flag="syn_retransmitted",role="client"} 1`,
		`tcpscope_connection_flags_total{flag="reset_sent",role="server"} 1`,
		`tcpscope_connection_failures_total{error_type="refused",role="client"} 1`,
		`tcpscope_connection_failures_total{error_type="port_exhausted",role="client"} 1`,
		`tcpscope_connection_failures_total{error_type="reset",role="server"} 1`,
		// One SYN retransmit: past 1 s, within the 1.5 s bucket.
		`tcpscope_handshake_duration_seconds_bucket{role="client",le="1"} 0`,
		`tcpscope_handshake_duration_seconds_bucket{role="client",le="1.5"} 1`,
		`tcpscope_handshake_duration_seconds_bucket{role="server",le="0.0001"} 1`,
		`tcpscope_retransmits_total{kind="syn"} 1`,
		`tcpscope_retransmits_total{kind="data"} 2`,
		`tcpscope_retransmits_total{kind="fin"} 1`,
		// Shown at 0 before the first.
		`tcpscope_retransmits_total{kind="synack"} 0`,
		`tcpscope_connection_failures_total{error_type="abandoned",role="server"} 0`,
	)
}

// TestErrorType: the error_type of each failure, "" for connections that
// did not fail.
func TestErrorType(t *testing.T) {
	for _, tc := range []struct {
		c    tracer.Connection
		want string
	}{
		{tracer.Connection{Outcome: tracer.OutcomeClosed}, ""},
		{tracer.Connection{Outcome: tracer.OutcomeTimeWait}, ""},
		{tracer.Connection{Outcome: tracer.OutcomeOpen}, ""},
		{tracer.Connection{Outcome: tracer.OutcomeRefused}, "refused"},
		{tracer.Connection{Outcome: tracer.OutcomeReset}, "reset"},
		{tracer.Connection{Outcome: tracer.OutcomeTimeout}, "timed_out"},
		{tracer.Connection{Outcome: tracer.OutcomeAbandoned}, "abandoned"},
		{tracer.Connection{Outcome: tracer.OutcomeFailed, Errno: tracer.ErrnoAddrNotAvail}, "port_exhausted"},
		{tracer.Connection{Outcome: tracer.OutcomeFailed, Flags: tracer.FlagsOf(tracer.FlagPortExhausted)}, "port_exhausted"},
		{tracer.Connection{Outcome: tracer.OutcomeFailed, Errno: tracer.ErrnoTimedOut}, "timed_out"},
		{tracer.Connection{Outcome: tracer.OutcomeFailed}, ""},
	} {
		if got := ErrorType(&tc.c); got != tc.want {
			t.Errorf("outcome %s errno %d flags %v: error_type %q, want %q", tc.c.Outcome, tc.c.Errno, tc.c.Flags, got, tc.want)
		}
	}
}

// TestLiveMetrics: listener and TIME_WAIT gauges follow the last look; a
// listener's overflow drops survive its close; labels stay bounded.
func TestLiveMetrics(t *testing.T) {
	m := New()
	web := netip.MustParseAddrPort("10.0.0.1:80")
	m.Live([]tracer.ListenerLoad{{Local: web, Queue: 7, Overflows: 3}}, []tracer.TimeWaitDest{
		{Key: tracer.TimeWaitKey{Remote: netip.MustParseAddrPort("10.0.0.2:5432")}, Now: 40}}, 45, 2)
	wantLines(t, scrape(t, m),
		`tcpscope_listener_accept_queue{listener="10.0.0.1:80"} 7`,
		`tcpscope_listener_overflow_drops_total{listener="10.0.0.1:80"} 3`,
		`tcpscope_time_wait_sockets{destination="10.0.0.2:5432"} 40`,
		`tcpscope_time_wait_sockets{destination="other"} 5`,
		`tcpscope_lost_events_total 2`)
	// The listener closes with one more drop, then a new one opens on the
	// same address: drops keep counting from 4.
	m.Listener(&tracer.Listener{Local: web, Overflows: 4, End: time.Now()})
	m.Live([]tracer.ListenerLoad{{Local: web, Queue: 0, Overflows: 1}}, nil, 0, 2)
	wantLines(t, scrape(t, m),
		`tcpscope_listener_accept_queue{listener="10.0.0.1:80"} 0`,
		`tcpscope_listener_overflow_drops_total{listener="10.0.0.1:80"} 5`,
		`tcpscope_time_wait_sockets{destination="other"} 0`)
	var many []tracer.ListenerLoad
	for p := range 2 * MaxListeners {
		many = append(many, tracer.ListenerLoad{Local: netip.AddrPortFrom(web.Addr(), uint16(1000+p)), Queue: 1})
	}
	m.Live(many, nil, 0, 2)
	body := scrape(t, m)
	if n := strings.Count(body, "tcpscope_listener_accept_queue{"); n > MaxListeners+1 || !strings.Contains(body, `tcpscope_listener_accept_queue{listener="other"} 1`) {
		t.Errorf("%d accept-queue series for %d listeners, want at most %d and other", n, len(many), MaxListeners)
	}
}

// TestOTLPDropped: the OTLP drop count is read at each scrape.
func TestOTLPDropped(t *testing.T) {
	m := New()
	n := uint64(0)
	m.OTLPDropped(func() uint64 { return n })
	wantLines(t, scrape(t, m), "tcpscope_otlp_dropped_records_total 0")
	n = 7
	wantLines(t, scrape(t, m), "tcpscope_otlp_dropped_records_total 7")
}
