package otlp

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdklog "go.opentelemetry.io/otel/sdk/log"

	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/cgroups"
)

func TestParseEndpoint(t *testing.T) {
	for s, ok := range map[string]bool{
		"http://127.0.0.1:4318": true, "https://collector.example:443/v1/logs": true, "http://[::1]:4318": true,
		"127.0.0.1:4318": false, "http://127.0.0.1": false, "grpc://127.0.0.1:4317": false, "http://:4318": false,
		"http://127.0.0.1:0": false, "http://127.0.0.1:70000": false, "http://u:p@127.0.0.1:4318": false, "http://h:1/?x=1": false,
	} {
		if _, err := ParseEndpoint(s); (err == nil) != ok {
			t.Errorf("ParseEndpoint(%q): %v, want ok %v", s, err, ok)
		}
	}
	for in, want := range map[string]string{"http://127.0.0.1:4318": "http://127.0.0.1:4318/v1/metrics",
		"http://h:1/v1/logs": "http://h:1/v1/metrics", "http://h:1/otlp/": "http://h:1/otlp/v1/metrics"} {
		u, _ := ParseEndpoint(in)
		if got := signalURL(u, "metrics"); got != want {
			t.Errorf("%s: metrics to %q, want %q", in, got, want)
		}
	}
}

func attrs(c *tracer.Connection) map[string]string {
	m := map[string]string{}
	for _, kv := range Attributes(c) {
		m[string(kv.Key)] = kv.Value.Emit()
	}
	return m
}

// TestAttributesByRole: client and server are named by role, whichever
// end was local.
func TestAttributesByRole(t *testing.T) {
	a, b := netip.MustParseAddrPort("10.0.0.2:40000"), netip.MustParseAddrPort("10.0.0.1:80")
	cl := &tracer.Connection{ID: 7, Role: tracer.RoleClient, Family: tracer.FamilyIPv4, Local: a, Remote: b, Outcome: tracer.OutcomeRefused, NetNS: 9}
	sv := &tracer.Connection{ID: 8, Role: tracer.RoleServer, Family: tracer.FamilyIPv4, Local: b, Remote: a, Outcome: tracer.OutcomeClosed}
	for _, c := range []*tracer.Connection{cl, sv} {
		m := attrs(c)
		want := map[string]string{"client.address": "10.0.0.2", "client.port": "40000", "server.address": "10.0.0.1", "server.port": "80",
			"network.transport": "tcp", "network.type": "ipv4", "network.peer.address": c.Remote.Addr().String(), "tcpscope.role": c.Role.String()}
		for k, v := range want {
			if m[k] != v {
				t.Errorf("%s: %s = %q, want %q", c.Role, k, m[k], v)
			}
		}
	}
	if m := attrs(cl); m["error.type"] != "refused" || m["tcpscope.connection.id"] != "7" || m["tcpscope.netns"] != "9" {
		t.Errorf("refused client: %v", m)
	}
	if _, ok := attrs(sv)["error.type"]; ok {
		t.Errorf("a clean close has an error.type")
	}
	mapped := &tracer.Connection{Role: tracer.RoleClient, Family: tracer.FamilyIPv6, Local: netip.MustParseAddrPort("[::ffff:10.0.0.2]:1"), Remote: b}
	if m := attrs(mapped); m["client.address"] != "10.0.0.2" || m["network.type"] != "ipv6" {
		t.Errorf("IPv4-mapped address: %v", m)
	}
}

// TestAttributesOwner: the owner's container and pod under the semantic
// conventions' names, only when the cgroup's path names them.
func TestAttributesOwner(t *testing.T) {
	id := strings.Repeat("3f2a", 16)
	c := &tracer.Connection{Role: tracer.RoleServer, Cgroup: cgroups.Info{
		Path:        "/kubepods.slice/kubepods-pod4f1c2a7e_93b0_4c1e_8d2f_6a5b7c9d0e11.slice/cri-containerd-" + id + ".scope",
		ContainerID: id, Runtime: cgroups.RuntimeContainerd, PodUID: "4f1c2a7e-93b0-4c1e-8d2f-6a5b7c9d0e11"}}
	m := attrs(c)
	for k, v := range map[string]string{"container.id": id, "container.runtime.name": "containerd",
		"k8s.pod.uid": c.Cgroup.PodUID, "tcpscope.cgroup": c.Cgroup.Path} {
		if m[k] != v {
			t.Errorf("%s = %q, want %q", k, m[k], v)
		}
	}
	if _, ok := m["tcpscope.unit"]; ok {
		t.Errorf("a container without a unit has tcpscope.unit")
	}
	unit := attrs(&tracer.Connection{Cgroup: cgroups.Info{Path: "/system.slice/nginx.service", Unit: "nginx.service"}})
	if unit["tcpscope.unit"] != "nginx.service" || unit["container.id"] != "" {
		t.Errorf("a service's owner: %v", unit)
	}
	if _, ok := attrs(&tracer.Connection{})["tcpscope.cgroup"]; ok {
		t.Errorf("no cgroup, yet tcpscope.cgroup")
	}
}

// TestErrorType: the categories are metrics.ErrorType's (tested there);
// other failures keep their errno, or _OTHER without one.
func TestErrorType(t *testing.T) {
	cases := []struct {
		c    tracer.Connection
		want string
	}{
		{tracer.Connection{Outcome: tracer.OutcomeClosed}, ""},
		{tracer.Connection{Outcome: tracer.OutcomeRefused}, "refused"},
		{tracer.Connection{Outcome: tracer.OutcomeFailed, Flags: tracer.FlagSet(0).With(tracer.FlagPortExhausted)}, "port_exhausted"},
		{tracer.Connection{Outcome: tracer.OutcomeFailed, Errno: tracer.ErrnoOf(113)}, "ehostunreach"},
		{tracer.Connection{Outcome: tracer.OutcomeFailed}, "_OTHER"},
	}
	for _, tc := range cases {
		if got := ErrorType(&tc.c); got != tc.want {
			t.Errorf("outcome %s flags %v errno %s: %q, want %q", tc.c.Outcome, tc.c.Flags, tc.c.Errno, got, tc.want)
		}
	}
}

// stuckExporter takes nothing until release is closed: a collector that
// does not answer.
type stuckExporter struct {
	release chan struct{}
	got     int
}

func (e *stuckExporter) Export(ctx context.Context, rs []sdklog.Record) error {
	select {
	case <-e.release:
		e.got += len(rs)
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (*stuckExporter) Shutdown(context.Context) error   { return nil }
func (*stuckExporter) ForceFlush(context.Context) error { return nil }

// TestQueueNeverBlocks: with the exporter stuck, emitting more than the
// queue holds returns at once, counting the overflow; what is still queued
// when Shutdown's deadline passes is dropped too, and the counts add up.
func TestQueueNeverBlocks(t *testing.T) {
	exp := &stuckExporter{release: make(chan struct{})}
	q := newQueue(exp, 10, 4, time.Hour, time.Hour)
	var r sdklog.Record
	r.SetBody(attribute.StringValue("x"))
	for range 100 {
		if err := q.OnEmit(context.Background(), &r); err != nil {
			t.Fatal(err)
		}
	}
	// The exporter holds one batch of 4 at most, the queue 10.
	if d := q.dropped.Load(); d < 100-10-4 {
		t.Errorf("dropped %d of 100 with room for 14", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := q.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if sent, dropped := q.sent.Load(), q.dropped.Load(); sent != 0 || dropped != 100 {
		t.Errorf("sent %d dropped %d, want 0 and 100", sent, dropped)
	}
}

// TestQueueSendsAtShutdown: what is queued at the end is sent when the
// collector answers within the deadline.
func TestQueueSendsAtShutdown(t *testing.T) {
	exp := &stuckExporter{release: make(chan struct{})}
	close(exp.release)
	q := newQueue(exp, 100, 8, time.Hour, time.Hour)
	var r sdklog.Record
	for range 20 {
		q.OnEmit(context.Background(), &r)
	}
	if err := q.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if sent, dropped := q.sent.Load(), q.dropped.Load(); sent != 20 || dropped != 0 || exp.got != 20 {
		t.Errorf("sent %d dropped %d exported %d, want 20, 0, 20", sent, dropped, exp.got)
	}
}
