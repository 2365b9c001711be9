package output

import (
	"testing"

	"github.com/tcpscope/tcpscope/tracer"
)

func TestDetailsNamesWhoSentTheReset(t *testing.T) {
	for _, tc := range []struct {
		state, want string
	}{
		{"ESTABLISHED", "RST sent: TCP_ABORT_ON_CLOSE, lived 12us"},
		{"LISTEN", "RST sent by the listener: TCP_ABORT_ON_CLOSE, lived 12us"},
	} {
		c := &tracer.Connection{Role: tracer.RoleServer, SynRecvUs: -1, HandshakeUs: -1, DurationUs: 12,
			Timeline: []tracer.Item{{Kind: tracer.KindResetSent.String(), State: tc.state, Reason: "TCP_ABORT_ON_CLOSE"}}}
		if got := Details(c); got != tc.want {
			t.Errorf("reset in %s: %q, want %q", tc.state, got, tc.want)
		}
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
