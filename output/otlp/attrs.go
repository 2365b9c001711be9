package otlp

import (
	"net/netip"
	"strings"

	"go.opentelemetry.io/otel/attribute"

	"github.com/tcpscope/tcpscope/output/metrics"
	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/cgroups"
)

// Attributes are a connection's log record attributes: OpenTelemetry
// semantic-convention names where one exists, tcpscope.* otherwise.
func Attributes(c *tracer.Connection) []attribute.KeyValue {
	kv := make([]attribute.KeyValue, 0, 16)
	kv = append(kv, attribute.String("network.transport", "tcp"))
	switch c.Family {
	case tracer.FamilyIPv4:
		kv = append(kv, attribute.String("network.type", "ipv4"))
	case tracer.FamilyIPv6:
		kv = append(kv, attribute.String("network.type", "ipv6"))
	}
	kv = appendEnds(kv, c)
	if c.Remote.IsValid() {
		kv = append(kv, attribute.String("network.peer.address", addr(c.Remote)),
			attribute.Int("network.peer.port", int(c.Remote.Port())))
	}
	if e := ErrorType(c); e != "" {
		kv = append(kv, attribute.String("error.type", e))
	}
	kv = append(kv,
		attribute.Int64("tcpscope.connection.id", int64(c.ID)),
		attribute.String("tcpscope.role", c.Role.String()),
		attribute.String("tcpscope.outcome", c.Outcome.String()),
		attribute.Int64("tcpscope.netns", int64(c.NetNS)))
	var flags []string
	for f := range c.Flags.All() {
		flags = append(flags, f.String())
	}
	if len(flags) > 0 {
		kv = append(kv, attribute.StringSlice("tcpscope.flags", flags))
	}
	if c.Errno != 0 {
		kv = append(kv, attribute.String("tcpscope.errno", c.Errno.String()))
	}
	return appendOwner(kv, &c.Cgroup)
}

// appendOwner names the owner's container and pod with the semantic
// conventions' names, its cgroup and systemd unit with tcpscope's; each
// only when the cgroup's path says.
func appendOwner(kv []attribute.KeyValue, g *cgroups.Info) []attribute.KeyValue {
	for _, a := range [...]struct{ key, value string }{
		{"container.id", g.ContainerID},
		{"container.runtime.name", g.Runtime},
		{"k8s.pod.uid", g.PodUID},
		{"tcpscope.cgroup", g.Path},
		{"tcpscope.unit", g.Unit},
	} {
		if a.value != "" {
			kv = append(kv, attribute.String(a.key, a.value))
		}
	}
	return kv
}

// appendEnds names the two ends by role: a client's local end is the
// client, a server's local end is the server. A connection of unknown role
// has no client or server.
func appendEnds(kv []attribute.KeyValue, c *tracer.Connection) []attribute.KeyValue {
	client, server := c.Local, c.Remote
	switch c.Role {
	case tracer.RoleClient:
	case tracer.RoleServer:
		client, server = c.Remote, c.Local
	default:
		return kv
	}
	if client.IsValid() {
		kv = append(kv, attribute.String("client.address", addr(client)), attribute.Int("client.port", int(client.Port())))
	}
	if server.IsValid() {
		kv = append(kv, attribute.String("server.address", addr(server)), attribute.Int("server.port", int(server.Port())))
	}
	return kv
}

// addr is an address without an IPv4-mapped prefix or a zone, as the
// export writes it.
func addr(ap netip.AddrPort) string {
	a := ap.Addr().Unmap().WithZone("")
	return a.String()
}

// ErrorType is the error.type of a failed connection: refused, reset,
// timed_out, port_exhausted or abandoned; "" for one that did not fail.
// Another failure is named by its errno (lowercase), or "_OTHER" as the
// semantic conventions ask when there is none.
func ErrorType(c *tracer.Connection) string {
	// The categories of the Prometheus metric's error_type, one mapping.
	if t := metrics.ErrorType(c); t != "" {
		return t
	}
	if c.Outcome == tracer.OutcomeFailed {
		if c.Errno != 0 {
			return strings.ToLower(c.Errno.String())
		}
		return "_OTHER"
	}
	return ""
}
