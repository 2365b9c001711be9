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

// The cgroup v2 row: ok with its mount, or what is lost without one.
func TestCheckTableCgroupRow(t *testing.T) {
	for _, tc := range []struct {
		f              tracer.Features
		status, detail string
	}{
		{tracer.Features{Cgroup2: "/sys/fs/cgroup/unified"},
			"ok", "mounted at /sys/fs/cgroup/unified: records name the owner's cgroup, container and unit"},
		{tracer.Features{Cgroup2: "/sys/fs/cgroup", BTF: true}, // BTF without the socket's cgroup
			"MISSING", "lost: the owner's cgroup, container and unit of each record, and --cgroup: this kernel lacks sockets that point to their cgroup v2 (Linux 5.15+)"},
		{tracer.Features{Cgroup2: "/sys/fs/cgroup", CgroupNamespace: true},
			"partial", "mounted at /sys/fs/cgroup, inside a cgroup namespace: records name only cgroups within it (their paths relative to its root), and --cgroup is refused"},
		{tracer.Features{Cgroup2Err: errors.New("no cgroup v2 hierarchy mounted")},
			"MISSING", "lost: the owner's cgroup, container and unit of each record (no cgroup v2 hierarchy mounted; mount one with: mount -t cgroup2 none /sys/fs/cgroup/unified)"},
	} {
		var b strings.Builder
		if err := CheckTable(&b, tc.f, AttachTrial{Why: "needs root"}); err != nil {
			t.Fatal(err)
		}
		var cells []string
		for _, line := range strings.Split(b.String(), "\n") {
			if f := strings.Split(line, "|"); len(f) == 5 && strings.TrimSpace(f[1]) == "cgroup v2" {
				cells = []string{strings.TrimSpace(f[2]), strings.TrimSpace(f[3])}
			}
		}
		if len(cells) != 2 || cells[0] != tc.status || cells[1] != tc.detail {
			t.Errorf("cgroup v2 row %q, want %q, %q:\n%s", cells, tc.status, tc.detail, b.String())
		}
	}
}
