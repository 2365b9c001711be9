package tracer

import (
	"math/bits"
	"net/netip"
	"sort"
	"time"
)

// Histogram keeps a distribution of microsecond durations in log-linear
// buckets: exact below 64 us, within 1/32 (3 %) above, in fixed memory.
type Histogram struct {
	buckets [64 + 58*32]uint64
	count   uint64
	max     int64
}

func bucketOf(v uint64) int {
	if v < 64 {
		return int(v)
	}
	shift := bits.Len64(v) - 6
	return 64 + (shift-1)*32 + int(v>>shift) - 32
}

// bucketMid is a representative value of bucket i (its midpoint).
func bucketMid(i int) int64 {
	if i < 64 {
		return int64(i)
	}
	shift := (i-64)/32 + 1
	lo := uint64((i-64)%32+32) << shift
	return int64(lo + (uint64(1)<<shift)/2)
}

// Add records one duration; negative values (unknown) are ignored.
func (h *Histogram) Add(us int64) {
	if us < 0 {
		return
	}
	h.buckets[bucketOf(uint64(us))]++
	h.count++
	if us > h.max {
		h.max = us
	}
}

// Count is the number of values recorded.
func (h *Histogram) Count() uint64 { return h.count }

// Max is the largest value recorded, exactly.
func (h *Histogram) Max() int64 { return h.max }

// Quantile returns the q-quantile (0 < q <= 1), or -1 when empty.
func (h *Histogram) Quantile(q float64) int64 {
	if h.count == 0 {
		return -1
	}
	rank := uint64(q*float64(h.count) + 0.5)
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, n := range h.buckets {
		seen += n
		if seen >= rank {
			return min(bucketMid(i), h.max)
		}
	}
	return h.max
}

// PeerCount is a remote address and how many of its connections were flagged.
type PeerCount struct {
	Addr  string `json:"addr"`
	Count uint64 `json:"count"`
}

// maxPeers bounds the flagged-peer table; further peers count as other.
const maxPeers = 10000

// Stats accumulates the summary of a recording from its connections. The
// same code summarises a live recording and a saved export.
type Stats struct {
	Start, End  time.Time
	Connections uint64
	ByRole      map[Role]map[Outcome]uint64
	ByOutcome   map[Outcome]uint64
	ByFlag      map[Flag]uint64
	Handshake   Histogram // clients: SYN_SENT to ESTABLISHED
	SynRecv     Histogram // servers: SYN-ACK to final ACK
	peers       map[netip.Addr]uint64
	OtherPeers  uint64
}

// NewStats returns empty statistics.
func NewStats() *Stats {
	return &Stats{
		ByRole:    map[Role]map[Outcome]uint64{RoleClient: {}, RoleServer: {}},
		ByOutcome: map[Outcome]uint64{},
		ByFlag:    map[Flag]uint64{},
		peers:     map[netip.Addr]uint64{},
	}
}

// Add counts one connection.
func (s *Stats) Add(c *Connection) {
	s.Connections++
	if s.Start.IsZero() || c.Start.Before(s.Start) {
		s.Start = c.Start
	}
	if c.End.After(s.End) {
		s.End = c.End
	}
	byOutcome := s.ByRole[c.Role]
	if byOutcome == nil {
		byOutcome = map[Outcome]uint64{}
		s.ByRole[c.Role] = byOutcome
	}
	byOutcome[c.Outcome]++
	s.ByOutcome[c.Outcome]++
	for f := range c.Flags.All() {
		s.ByFlag[f]++
	}
	if c.Role == RoleClient && c.HandshakeUs >= 0 {
		s.Handshake.Add(c.HandshakeUs)
	}
	if c.Role == RoleServer && c.SynRecvUs >= 0 {
		s.SynRecv.Add(c.SynRecvUs)
	}
	if c.Flagged() && c.Remote.Addr().IsValid() {
		a := c.Remote.Addr()
		if _, ok := s.peers[a]; ok || len(s.peers) < maxPeers {
			s.peers[a]++
		} else {
			s.OtherPeers++
		}
	}
}

// TopPeers returns the n remote addresses with the most flagged connections.
func (s *Stats) TopPeers(n int) []PeerCount {
	out := make([]PeerCount, 0, len(s.peers))
	for a, c := range s.peers {
		out = append(out, PeerCount{Addr: a.String(), Count: c})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Addr < out[j].Addr
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}
