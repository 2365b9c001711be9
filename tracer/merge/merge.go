// Package merge joins the two halves of TCP connections recorded by
// separate tcpscope recorders (other hosts, or other namespaces of one
// host): a client half in one export and the server half with the reversed
// 4-tuple in another. It estimates each host pair's clock offset from the
// handshakes themselves and says, for the pairs worth a look, what only
// both ends together show. Everything here is a pure function of the
// connections it is given.
package merge

import (
	"net/netip"
	"sort"
	"time"

	"github.com/tcpscope/tcpscope/tracer"
)

// Host is one export: a host's (or a namespace's) connections.
type Host struct {
	Name        string
	Connections []tracer.Connection
	Listeners   []Listener
}

// Listener is what a server's listener counted that a diagnosis needs.
type Listener struct {
	Local netip.AddrPort
	// Drops the listener itself is known to have dropped (SYNs and final
	// ACKs attributed to it: overflow, SYN queue drops).
	Drops uint64
}

// Offset is a host pair's clock offset: the server host's clock minus the
// client host's, in microseconds, ± UncertaintyUs. UncertaintyUs is -1
// when no handshake bracketed it (Us is then 0, assumed).
type Offset struct {
	Us            int64
	UncertaintyUs int64
	Brackets      int // handshakes whose bounds were intersected
}

// Known says whether a handshake measured the offset.
func (o Offset) Known() bool { return o.UncertaintyUs >= 0 }

// Pair is a joined connection: both halves whole, and the offset of their
// host pair.
type Pair struct {
	ClientHost, ServerHost int
	Client, Server         *tracer.Connection
	Offset                 Offset
	Diagnosis              []string
}

// Half is a connection half that no other export completes. PeerHost is
// the host its remote address belongs to, -1 when none of the exports'.
type Half struct {
	Host, PeerHost int
	Conn           *tracer.Connection
	Diagnosis      []string
}

// HostPair tallies one (client host, server host) pair. ServerHost is -1
// for client halves whose peer none of the exports holds; ClientHost is
// -1 for server halves whose client none holds.
type HostPair struct {
	ClientHost, ServerHost int
	Offset                 Offset
	Joined                 int
	ClientsUnmatched       int
	ServersUnmatched       int
}

// Result is what Join found.
type Result struct {
	Hosts     []string
	HostPairs []HostPair
	Pairs     []Pair
	Unmatched []Half
}

// matchSlack widens a pair's bounds when it is checked against its host
// pair's offset: clocks are read at slightly different moments from the
// segments they time (the tracepoints fire a few microseconds off).
const matchSlack = time.Millisecond

// Join joins the halves of every connection found in hosts.
func Join(hosts []Host) *Result {
	res := &Result{}
	for _, h := range hosts {
		res.Hosts = append(res.Hosts, h.Name)
	}
	cands := candidates(hosts)
	offsets := estimateOffsets(cands)
	taken := map[*tracer.Connection]bool{}
	for _, c := range chooseBracketed(cands, offsets) {
		res.addPair(c, offsets, taken)
	}
	for _, c := range chooseByLifetime(cands, offsets, taken) {
		res.addPair(c, offsets, taken)
	}
	sort.Slice(res.Pairs, func(i, j int) bool { return res.Pairs[i].Client.Start.Before(res.Pairs[j].Client.Start) })
	res.unmatched(hosts, taken, listenersOf(hosts))
	res.tally(offsets)
	return res
}

func (res *Result) addPair(c candidate, offsets map[hostKey]Offset, taken map[*tracer.Connection]bool) {
	taken[c.client], taken[c.server] = true, true
	off := offsets[c.key]
	res.Pairs = append(res.Pairs, Pair{ClientHost: c.key.client, ServerHost: c.key.server,
		Client: c.client, Server: c.server, Offset: off, Diagnosis: diagnosePair(c, off)})
}
