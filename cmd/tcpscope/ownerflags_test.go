package main

import (
	"encoding/json"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/output"
	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/capture"
	"github.com/tcpscope/tcpscope/tracer/cgroups"
)

const (
	ownerDocker = "3f2a1b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708"
	ownerCRI    = "3f2a99990000000000000000000000000000000000000000000000000000abcd"
	ownerPod    = "0b6c2c6e_1f4d_4b63_9f0a_2d5e8c7b1a90"
)

// writeOwnersExport writes one connection per owner: a Docker container,
// a Kubernetes pod's containerd container, a systemd service, a plain
// cgroup, and one whose cgroup was not named. Their ids are 1 to 5.
func writeOwnersExport(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "owners.jsonl")
	t0 := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	e, err := output.CreateExport(path, nil, output.Meta{Tcpscope: "test", Kernel: "6.18", Start: t0})
	if err != nil {
		t.Fatal(err)
	}
	owners := []struct {
		comm string
		pid  uint32
		path string
	}{
		{"nginx", 100, "/system.slice/docker-" + ownerDocker + ".scope"},
		{"envoy", 200, "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + ownerPod + ".slice/cri-containerd-" + ownerCRI + ".scope"},
		{"nginx", 300, "/system.slice/nginx.service"},
		{"wrk", 400, "/tcpscope-test/plain"},
		{"wrk", 500, ""},
	}
	s := tracer.NewStats()
	for i, o := range owners {
		c := tracer.Connection{ID: uint64(i + 1), Role: tracer.RoleClient, Family: tracer.FamilyIPv4,
			Local: netip.AddrPortFrom(netip.MustParseAddr("10.0.0.2"), uint16(40000+i)), Remote: netip.MustParseAddrPort("10.0.0.1:80"),
			PID: o.pid, Comm: o.comm, CgroupID: uint64(7000 + i), Start: t0, End: t0.Add(time.Millisecond),
			HandshakeUs: 100, SynRecvUs: -1, Outcome: tracer.OutcomeClosed, ClosedBy: tracer.ClosedByLocal}
		if o.path != "" {
			c.Cgroup = cgroups.Parse(o.path)
		}
		s.Add(&c)
		if err := e.WriteConnection(&c); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Close(s, output.Extra{End: t0.Add(time.Second)}); err != nil {
		t.Fatal(err)
	}
	return path
}

// reportIDs runs report --format json with args and returns the ids of the
// connections it selects.
func reportIDs(t *testing.T, path string, args ...string) []uint64 {
	t.Helper()
	out, errs, code := report(t, nil, append([]string{path, "--format", "json"}, args...)...)
	if code != 0 {
		t.Fatalf("report %q: exit %d: %s", args, code, errs)
	}
	var ids []uint64
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var r output.ConnectionRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("report %q line %q: %v", args, line, err)
		}
		ids = append(ids, r.ID)
	}
	return ids
}

func TestReportOwnerFilters(t *testing.T) {
	path := writeOwnersExport(t)
	for _, tc := range []struct {
		args []string
		want []uint64
	}{
		{nil, []uint64{1, 2, 3, 4, 5}},
		{[]string{"--pid", "200"}, []uint64{2}},
		{[]string{"--pid", "100,300", "--pid", "500"}, []uint64{1, 3, 5}},
		{[]string{"--comm", "nginx"}, []uint64{1, 3}},
		{[]string{"--comm", "nginx", "--comm", "wrk"}, []uint64{1, 3, 4, 5}},
		{[]string{"--cgroup", "/system.slice"}, []uint64{1, 3}},
		{[]string{"--cgroup", "kubepods.slice/"}, []uint64{2}},
		{[]string{"--cgroup", "/system.slic"}, nil}, // a subtree, not a string prefix
		{[]string{"--cgroup", "/"}, []uint64{1, 2, 3, 4}},
		{[]string{"--cgroup", "/sys/fs/cgroup/system.slice"}, []uint64{1, 3}},
		{[]string{"--cgroup", "/sys/fs/cgroup/unified/kubepods.slice"}, []uint64{2}},
		{[]string{"--cgroup", "/sys/fs/cgroup"}, []uint64{1, 2, 3, 4}},
		{[]string{"--container", "3f2a"}, []uint64{1, 2}},
		{[]string{"--container", "3f2a1b"}, []uint64{1}},
		{[]string{"--container", "containerd:3f2a"}, []uint64{2}},
		{[]string{"--container", "docker:3f2a9999"}, nil},
		// Combined with each other and with the other filters: all must hold.
		{[]string{"--comm", "nginx", "--container", "3f2a"}, []uint64{1}},
		{[]string{"--cgroup", "/system.slice", "--port", "80", "--outcome", "closed"}, []uint64{1, 3}},
		{[]string{"--cgroup", "/system.slice", "--outcome", "reset"}, nil},
	} {
		if got := reportIDs(t, path, tc.args...); !slices.Equal(got, tc.want) {
			t.Errorf("report %q: connections %v, want %v", tc.args, got, tc.want)
		}
	}
}

func TestReportOwnerFiltersRefuseBadValues(t *testing.T) {
	path := writeOwnersExport(t)
	for _, args := range [][]string{
		{"--pid", "0"}, {"--pid", "nginx"}, {"--comm", "a-name-longer-than-15"},
		{"--cgroup", "//"}, {"--container", "3f2"}, {"--container", "lxc:3f2a"}, {"--container", "xyz123"},
	} {
		_, errs, code := report(t, nil, append([]string{path}, args...)...)
		if code != 2 || !strings.Contains(errs, args[0]) {
			t.Errorf("report %q: exit %d, stderr %q; want exit 2 naming %s", args, code, errs, args[0])
		}
	}
}

// The text report shows the owner where it is flagged, and the timeline
// names the cgroup.
func TestReportShowsOwners(t *testing.T) {
	path := writeOwnersExport(t)
	out, errs, code := report(t, nil, path, "--id", "2")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"envoy/200 in containerd:3f2a99990000", "pod 0b6c2c6e-1f4d-4b63-9f0a-2d5e8c7b1a90"} {
		if !strings.Contains(out, want) {
			t.Errorf("timeline lacks %q:\n%s", want, out)
		}
	}
}

// Without cgroup v2, record and run say once what records lack, and go on.
func TestAnnounceWarnsWithoutCgroup2(t *testing.T) {
	var b strings.Builder
	announce(&b, capture.Started{Attached: 7, Features: tracer.Features{Cgroup2Err: cgroups.ErrNoCgroup2}})
	want := "tcpscope: warning: no cgroup v2 hierarchy mounted: records name no cgroup, container or unit\n" +
		"tcpscope: tracing (7 tracepoints attached); Ctrl-C to stop\n"
	if b.String() != want {
		t.Errorf("announce wrote %q, want %q", b.String(), want)
	}
	b.Reset()
	announce(&b, capture.Started{Attached: 7, Features: tracer.Features{Cgroup2: "/sys/fs/cgroup"}})
	if strings.Contains(b.String(), "cgroup") {
		t.Errorf("a warning with cgroup v2 mounted: %q", b.String())
	}
	// A kernel whose BTF says its sockets do not point to their cgroup
	// (before 5.15).
	b.Reset()
	announce(&b, capture.Started{Attached: 7, Features: tracer.Features{Cgroup2: "/sys/fs/cgroup", BTF: true}})
	if !strings.HasPrefix(b.String(), "tcpscope: warning: this kernel lacks sockets that point to their cgroup v2 (Linux 5.15+): records name no cgroup") {
		t.Errorf("no warning on a kernel without socket cgroups: %q", b.String())
	}
}
