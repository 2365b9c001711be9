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
