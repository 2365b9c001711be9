package output

import (
	"errors"
	"strings"
	"testing"

	"github.com/tcpscope/tcpscope/tracer"
)

// TestCheckTableSaysWhatWasTried: "attached" only after a trial attached
// the programs; otherwise the row says the tracepoint was found and why
// attaching was not tried, or that it failed.
func TestCheckTableSaysWhatWasTried(t *testing.T) {
	f := tracer.Features{Kernel: "6.18", BTF: true, Hooks: []tracer.Hook{
		{Tracepoint: "sock/inet_sock_set_state", Required: true, Present: true},
		{Tracepoint: "tcp/tcp_send_reset", Present: true, Variant: "with reason (6.10+)"},
	}}
	for _, tc := range []struct {
		trial      AttachTrial
		want, deny []string
	}{
		{AttachTrial{Why: "needs root"}, []string{"| found ", "in kernel BTF; attaching not tried: needs root", "in kernel BTF, with reason (6.10+); attaching not tried"}, []string{"attached"}},
		{AttachTrial{Tried: true}, []string{"| attached ", "| attached, with reason (6.10+)"}, []string{"not tried", "FAILED"}},
		{AttachTrial{Tried: true, Err: errors.New("attaching the programs: EPERM")}, []string{"| FAILED ", "EPERM", "attaching failed (above)"}, []string{"| attached"}},
		// The default mode failed to load, the per-event one attached.
		{AttachTrial{Tried: true, AggregateErr: errors.New("loading BPF programs: program walk_conns: EINVAL")},
			[]string{"| attached ", "| FAILED  | loading BPF programs: program walk_conns: EINVAL; record --events works"}, []string{"not tried"}},
		{AttachTrial{Tried: true}, []string{"timelines in socket storage, end-of-recording walk (iter/tcp) loaded"}, []string{"FAILED"}},
	} {
		var b strings.Builder
		if err := CheckTable(&b, f, tc.trial); err != nil {
			t.Fatal(err)
		}
		for _, w := range tc.want {
			if !strings.Contains(b.String(), w) {
				t.Errorf("trial %+v: table lacks %q:\n%s", tc.trial, w, b.String())
			}
		}
		for _, d := range tc.deny {
			if strings.Contains(b.String(), d) {
				t.Errorf("trial %+v: table says %q:\n%s", tc.trial, d, b.String())
			}
		}
	}
}
