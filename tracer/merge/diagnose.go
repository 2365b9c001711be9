package merge

import (
	"fmt"
	"net/netip"
	"sort"
	"time"

	"github.com/tcpscope/tcpscope/tracer"
)

// longSynRecv is the SYN_RECV stay worth explaining: a final ACK that
// came a retransmission timeout late.
const longSynRecv = 200 * time.Millisecond

// diagnosePair says what only both halves together show.
func diagnosePair(c candidate, off Offset) []string {
	var out []string
	if d := synDiagnosis(c, off); d != "" {
		out = append(out, d)
	}
	if c.client.Outcome == tracer.OutcomeRefused {
		out = append(out, refusedDiagnosis(c.server))
	} else if d := resetDiagnosis(c.client, c.server, "client", "server"); d != "" {
		out = append(out, d)
	}
	if d := resetDiagnosis(c.server, c.client, "server", "client"); d != "" {
		out = append(out, d)
	}
	if d := synRecvDiagnosis(c, off); d != "" {
		out = append(out, d)
	}
	return out
}

// clientSyns lists when the client sent each SYN (the first, then every
// retransmission that left).
func clientSyns(c *tracer.Connection) []time.Time {
	var out []time.Time
	for _, it := range c.Timeline {
		switch {
		case it.Kind == tracer.ItemState && it.To == tracer.StateSynSent:
			out = append(out, it.At)
		case it.Kind == tracer.ItemRetransmit && it.Detail == tracer.DetailResentSyn && it.Errno == 0:
			out = append(out, it.At)
		}
	}
	return out
}

// synDiagnosis: the client retransmitted its SYN; which one did the
// server answer, and where did the others go?
func synDiagnosis(c candidate, off Offset) string {
	syns := clientSyns(c.client)
	r0, _, ok := serverHandshake(c.server)
	if len(syns) < 2 || !ok || !off.Known() {
		return ""
	}
	// The server's SYN arrival in the client's clock; the SYN it answered
	// is the last one sent before it.
	arrived := r0.Add(-time.Duration(off.Us-off.UncertaintyUs) * time.Microsecond)
	seen := 0
	for i, s := range syns {
		if !s.After(arrived.Add(matchSlack)) {
			seen = i + 1
		}
	}
	if seen < 2 {
		return fmt.Sprintf("client sent %d SYNs, the server answered the first: the SYN-ACK or the client's ACK was slow or lost", len(syns))
	}
	where := "lost before the server's TCP (no listener drop counted)"
	if c.listenerDrops > 0 {
		where = fmt.Sprintf("dropped by the listener (%d drops attributed to it)", c.listenerDrops)
	}
	lost := "the first was"
	if seen > 2 {
		lost = fmt.Sprintf("the first %d were", seen-1)
	}
	return fmt.Sprintf("client sent %d SYNs, the server saw only the %s: %s %s", len(syns), ordinal(seen), lost, where)
}

func ordinal(n int) string {
	switch n {
	case 1:
		return "first"
	case 2:
		return "second"
	case 3:
		return "third"
	case 4:
		return "fourth"
	case 5:
		return "fifth"
	}
	return fmt.Sprintf("%dth", n)
}

// resetDiagnosis: got received a reset; did other send it, and why?
func resetDiagnosis(got, other *tracer.Connection, gotName, otherName string) string {
	if !got.Flags.Has(tracer.FlagResetReceived) {
		return ""
	}
	what := "a reset"
	if got.Errno != 0 {
		what = got.Errno.String()
	}
	for _, it := range other.Timeline {
		if it.Kind != tracer.ItemResetSent {
			continue
		}
		if it.HasReason {
			return fmt.Sprintf("%s got %s: the %s sent it, reason %s", gotName, what, otherName, it.Reason)
		}
		return fmt.Sprintf("%s got %s: the %s sent it", gotName, what, otherName)
	}
	return fmt.Sprintf("%s got %s the %s's socket did not send: it came from elsewhere (a middlebox, or the %s's stack without a socket)", gotName, what, otherName, otherName)
}

// refusedDiagnosis: the client was refused, and the server's host
// recorded the reset that refused it.
func refusedDiagnosis(server *tracer.Connection) string {
	for _, it := range server.Timeline {
		if it.Kind == tracer.ItemResetSent && it.HasReason {
			return fmt.Sprintf("client was refused: the server's host answered its SYN with a reset, reason %s", it.Reason)
		}
	}
	return "client was refused: the server's host answered its SYN with a reset"
}

// synRecvDiagnosis: the server stayed long in SYN_RECV; when did the
// client's final ACK leave, and when did it (or what stood for it) arrive?
func synRecvDiagnosis(c candidate, off Offset) string {
	r0, r1, oks := serverHandshake(c.server)
	_, e, okc := clientHandshake(c.client)
	if !oks || !okc || !off.Known() || r1.Sub(r0) < longSynRecv {
		return ""
	}
	left := e.Add(time.Duration(off.Us) * time.Microsecond).Sub(r0)
	return fmt.Sprintf("server waited %s in SYN_RECV: the client's final ACK left the client at +%s and arrived at +%s",
		human(r1.Sub(r0)), human(max(left, 0)), human(r1.Sub(r0)))
}

// human renders a duration in ms below a second, else in s.
func human(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%d ms", d.Milliseconds())
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}

// hostsByAddr maps every local address an export shows to its host.
func hostsByAddr(hosts []Host) map[netip.Addr]int {
	out := map[netip.Addr]int{}
	for h := range hosts {
		for i := range hosts[h].Connections {
			if a := hosts[h].Connections[i].Local.Addr().Unmap(); a.IsValid() && !a.IsUnspecified() && !a.IsLoopback() {
				out[a] = h
			}
		}
		for _, l := range hosts[h].Listeners {
			if a := l.Local.Addr().Unmap(); a.IsValid() && !a.IsUnspecified() && !a.IsLoopback() {
				out[a] = h
			}
		}
	}
	return out
}

// listenersOf maps a host to the ports its listeners held.
func listenersOf(hosts []Host) map[int]map[uint16]bool {
	out := map[int]map[uint16]bool{}
	for h := range hosts {
		out[h] = map[uint16]bool{}
		for _, l := range hosts[h].Listeners {
			out[h][l.Local.Port()] = true
		}
	}
	return out
}

// unmatched lists the halves left alone, with what the absence of the
// other half says.
func (res *Result) unmatched(hosts []Host, taken map[*tracer.Connection]bool, listening map[int]map[uint16]bool) {
	owner := hostsByAddr(hosts)
	for h := range hosts {
		for i := range hosts[h].Connections {
			c := &hosts[h].Connections[i]
			if taken[c] || (c.Role != tracer.RoleClient && c.Role != tracer.RoleServer) {
				continue
			}
			peer, ok := owner[c.Remote.Addr().Unmap()]
			if !ok || peer == h {
				peer = -1
			}
			half := Half{Host: h, PeerHost: peer, Conn: c}
			if d := aloneDiagnosis(c, peer, res.Hosts, listening); d != "" {
				half.Diagnosis = []string{d}
			}
			res.Unmatched = append(res.Unmatched, half)
		}
	}
}

// aloneDiagnosis explains a client half whose server host was recorded
// and holds no record of it.
func aloneDiagnosis(c *tracer.Connection, peer int, names []string, listening map[int]map[uint16]bool) string {
	if c.Role != tracer.RoleClient || peer < 0 {
		return ""
	}
	switch {
	case c.Outcome == tracer.OutcomeTimeout && c.HandshakeUs < 0:
		return fmt.Sprintf("client timed out and the server (%s) has no record: nothing reached a socket on the server", names[peer])
	case c.Outcome == tracer.OutcomeRefused && !listening[peer][c.Remote.Port()]:
		return fmt.Sprintf("client was refused and the server (%s) had no listener on port %d", names[peer], c.Remote.Port())
	case c.Outcome == tracer.OutcomeRefused:
		return fmt.Sprintf("client was refused though the server (%s) listened on port %d: its listener or a filter answered the SYN with a reset", names[peer], c.Remote.Port())
	}
	return ""
}

// tally fills HostPairs, sorted by host names.
func (res *Result) tally(offsets map[hostKey]Offset) {
	rows := map[hostKey]*HostPair{}
	row := func(k hostKey) *HostPair {
		if rows[k] == nil {
			rows[k] = &HostPair{ClientHost: k.client, ServerHost: k.server, Offset: offsets[k]}
			if _, ok := offsets[k]; !ok {
				rows[k].Offset.UncertaintyUs = -1
			}
		}
		return rows[k]
	}
	for _, p := range res.Pairs {
		row(hostKey{p.ClientHost, p.ServerHost}).Joined++
	}
	for _, u := range res.Unmatched {
		if u.Conn.Role == tracer.RoleClient {
			row(hostKey{u.Host, u.PeerHost}).ClientsUnmatched++
		} else {
			row(hostKey{u.PeerHost, u.Host}).ServersUnmatched++
		}
	}
	for _, r := range rows {
		res.HostPairs = append(res.HostPairs, *r)
	}
	sort.Slice(res.HostPairs, func(i, j int) bool {
		a, b := res.HostPairs[i], res.HostPairs[j]
		if a.ClientHost != b.ClientHost {
			return a.ClientHost < b.ClientHost
		}
		return a.ServerHost < b.ServerHost
	})
}
