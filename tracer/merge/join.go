package merge

import (
	"math"
	"net/netip"
	"sort"
	"time"

	"github.com/tcpscope/tcpscope/tracer"
)

// hostKey orders a host pair: the client's host, then the server's.
type hostKey struct{ client, server int }

// candidate is a client half and a server half with reversed 4-tuples, in
// different exports: the same connection if their times agree.
type candidate struct {
	key            hostKey
	client, server *tracer.Connection
	// lo, hi bound the offset (server clock - client clock) the pair's
	// handshake allows; bracketed is false when either half lacks the
	// times (a preexisting connection, a handshake never completed).
	lo, hi    time.Duration
	bracketed bool
	// listenerDrops: drops the server's listener is known to have made.
	listenerDrops uint64
}

// tuple is a connection's 4-tuple from the client's side.
type tuple struct{ client, server netip.AddrPort }

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// candidates pairs every client half with every server half of the same
// tuple in another export.
func candidates(hosts []Host) []candidate {
	type at struct {
		host int
		c    *tracer.Connection
	}
	servers := map[tuple][]at{}
	for h := range hosts {
		for i := range hosts[h].Connections {
			c := &hosts[h].Connections[i]
			if c.Role == tracer.RoleServer {
				k := tuple{unmap(c.Remote), unmap(c.Local)}
				servers[k] = append(servers[k], at{h, c})
			}
		}
	}
	var out []candidate
	for h := range hosts {
		for i := range hosts[h].Connections {
			c := &hosts[h].Connections[i]
			if c.Role != tracer.RoleClient {
				continue
			}
			for _, s := range servers[tuple{unmap(c.Local), unmap(c.Remote)}] {
				if s.host == h {
					continue // one recorder links its own halves (peer_id)
				}
				cd := candidate{key: hostKey{h, s.host}, client: c, server: s.c,
					listenerDrops: listenerDrops(hosts[s.host].Listeners, s.c.Local)}
				cd.lo, cd.hi, cd.bracketed = bounds(c, s.c)
				out = append(out, cd)
			}
		}
	}
	return out
}

func listenerDrops(ls []Listener, local netip.AddrPort) uint64 {
	var n uint64
	for _, l := range ls {
		if l.Local.Port() == local.Port() && (!l.Local.Addr().IsValid() || l.Local.Addr().IsUnspecified() || l.Local.Addr().Unmap() == local.Addr().Unmap()) {
			n += l.Drops
		}
	}
	return n
}

// bounds is what one handshake says of the offset θ = server clock -
// client clock. The client sent its first SYN at s1 and became
// ESTABLISHED at e (when the SYN-ACK arrived, sending its final ACK); the
// server answered a SYN at r0 and became ESTABLISHED at r1 (the final ACK,
// or a later segment, arrived). Segments take no negative time, so:
// the SYN-ACK sent at r0 arrived by e: θ >= r0 - e; the answered SYN left
// at s1 or later: θ <= r0 - s1; the ACK that left at e arrived by r1:
// θ <= r1 - e.
func bounds(c, s *tracer.Connection) (lo, hi time.Duration, ok bool) {
	s1, e, okc := clientHandshake(c)
	r0, r1, oks := serverHandshake(s)
	if !okc || !oks {
		return 0, 0, false
	}
	lo = r0.Sub(e)
	hi = min(r0.Sub(s1), r1.Sub(e))
	return lo, hi, lo <= hi
}

// clientHandshake gives the client's first SYN and its ESTABLISHED.
func clientHandshake(c *tracer.Connection) (syn, est time.Time, ok bool) {
	syn = stateTime(c, tracer.StateSynSent)
	est = stateTime(c, tracer.StateEstablished)
	if syn.IsZero() && !est.IsZero() && c.HandshakeUs >= 0 {
		syn = est.Add(-time.Duration(c.HandshakeUs) * time.Microsecond)
	}
	if est.IsZero() && !syn.IsZero() && c.HandshakeUs >= 0 {
		est = syn.Add(time.Duration(c.HandshakeUs) * time.Microsecond)
	}
	return syn, est, !syn.IsZero() && !est.IsZero()
}

// serverHandshake gives the server's first SYN-ACK (the SYN's arrival) and
// its ESTABLISHED.
func serverHandshake(s *tracer.Connection) (synack, est time.Time, ok bool) {
	for _, it := range s.Timeline {
		if it.Kind == tracer.ItemSynAck {
			synack = it.At
			break
		}
	}
	est = stateTime(s, tracer.StateEstablished)
	if synack.IsZero() && !est.IsZero() && s.SynRecvUs >= 0 {
		synack = est.Add(-time.Duration(s.SynRecvUs) * time.Microsecond)
	}
	if est.IsZero() && !synack.IsZero() && s.SynRecvUs >= 0 {
		est = synack.Add(time.Duration(s.SynRecvUs) * time.Microsecond)
	}
	return synack, est, !synack.IsZero() && !est.IsZero()
}

// stateTime is when the connection first entered state, zero if never.
func stateTime(c *tracer.Connection, state tracer.State) time.Time {
	for _, it := range c.Timeline {
		if it.Kind == tracer.ItemState && it.To == state {
			return it.At
		}
	}
	return time.Time{}
}

// estimateOffsets finds, per host pair, the offset most handshakes agree
// on, then intersects the bounds of those that contain it. A candidate
// that is not the same connection (a tuple reused) gives bounds far off,
// which the majority leaves out.
func estimateOffsets(cands []candidate) map[hostKey]Offset {
	byKey := map[hostKey][]candidate{}
	for _, c := range cands {
		if c.bracketed {
			byKey[c.key] = append(byKey[c.key], c)
		}
	}
	out := map[hostKey]Offset{}
	for k, cs := range byKey {
		best := mostCovered(cs)
		lo, hi := time.Duration(math.MinInt64), time.Duration(math.MaxInt64)
		n := 0
		for _, c := range cs {
			if c.lo <= best && best <= c.hi {
				lo, hi, n = max(lo, c.lo), min(hi, c.hi), n+1
			}
		}
		mid := lo + (hi-lo)/2
		us := mid.Microseconds()
		// Whole microseconds, rounded so that [lo, hi] stays inside.
		half := max(hi-mid, mid-lo) + absDur(mid-time.Duration(us)*time.Microsecond)
		out[k] = Offset{Us: us, UncertaintyUs: int64((half + time.Microsecond - 1) / time.Microsecond), Brackets: n}
	}
	return out
}

// mostCovered returns a point inside the most intervals.
func mostCovered(cs []candidate) time.Duration {
	type edge struct {
		at   time.Duration
		open int // +1 opens, -1 closes
	}
	edges := make([]edge, 0, 2*len(cs))
	for _, c := range cs {
		edges = append(edges, edge{c.lo, 1}, edge{c.hi, -1})
	}
	// Opens before closes at one point: closed intervals that touch overlap.
	sort.Slice(edges, func(i, j int) bool {
		if edges[i].at != edges[j].at {
			return edges[i].at < edges[j].at
		}
		return edges[i].open > edges[j].open
	})
	depth, bestDepth, best := 0, -1, time.Duration(0)
	for _, e := range edges {
		depth += e.open
		if depth > bestDepth {
			bestDepth, best = depth, e.at
		}
	}
	return best
}

// chooseBracketed keeps the bracketed candidates whose bounds agree with
// their host pair's offset, each half in one pair: the closest first.
func chooseBracketed(cands []candidate, offsets map[hostKey]Offset) []candidate {
	type near struct {
		c    candidate
		dist time.Duration // from the middle of its bounds to the offset
	}
	var ok []near
	for _, c := range cands {
		off, known := offsets[c.key]
		if !c.bracketed || !known {
			continue
		}
		theta := time.Duration(off.Us) * time.Microsecond
		if c.lo-matchSlack > theta || c.hi+matchSlack < theta {
			continue
		}
		ok = append(ok, near{c, absDur(c.lo + (c.hi-c.lo)/2 - theta)})
	}
	sort.SliceStable(ok, func(i, j int) bool { return ok[i].dist < ok[j].dist })
	out := make([]candidate, len(ok))
	for i := range ok {
		out[i] = ok[i].c
	}
	return oneToOne(out, nil)
}

// chooseByLifetime joins what no handshake brackets: halves whose
// lifetimes overlap once the offset is applied (a preexisting connection,
// a handshake that never completed on one end). Without an offset the
// clocks are taken as agreeing.
func chooseByLifetime(cands []candidate, offsets map[hostKey]Offset, taken map[*tracer.Connection]bool) []candidate {
	var ok []candidate
	for _, c := range cands {
		if taken[c.client] || taken[c.server] {
			continue
		}
		off := offsets[c.key]
		slack := matchSlack + time.Duration(max(off.UncertaintyUs, 0))*time.Microsecond
		theta := time.Duration(off.Us) * time.Microsecond
		sStart, sEnd := c.server.Start.Add(-theta), c.server.End.Add(-theta)
		// The server's half begins inside the client's life, and ends after
		// the client began.
		if sStart.Before(c.client.Start.Add(-slack)) || sStart.After(c.client.End.Add(slack)) || sEnd.Before(c.client.Start.Add(-slack)) {
			continue
		}
		ok = append(ok, c)
	}
	return oneToOne(ok, taken)
}

// oneToOne keeps, in order, the candidates whose halves are in no pair
// yet: neither in taken nor in a candidate kept before.
func oneToOne(cs []candidate, taken map[*tracer.Connection]bool) []candidate {
	used := map[*tracer.Connection]bool{}
	var out []candidate
	for _, c := range cs {
		if taken[c.client] || taken[c.server] || used[c.client] || used[c.server] {
			continue
		}
		used[c.client], used[c.server] = true, true
		out = append(out, c)
	}
	return out
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
