package html

import (
	"math"

	"github.com/tcpscope/tcpscope/tracer"
)

// Distributions are drawn on a log axis from 1 us to 1000 s, binsPerDecade
// bins a decade: fine enough that the handshakes that waited for a SYN
// retransmit (1 s, 3 s, 7 s) stand apart from the ones that did not.
const (
	binsPerDecade = 20
	decades       = 9
	logBins       = binsPerDecade * decades
)

// logHist counts microsecond durations in logarithmic bins.
type logHist [logBins]uint64

func (h *logHist) add(us int64) {
	if us < 0 {
		return
	}
	i := 0
	if us > 1 {
		i = int(math.Log10(float64(us)) * binsPerDecade)
	}
	h[min(i, logBins-1)]++
}

// binEdge is the lower edge of bin i, in microseconds.
func binEdge(i int) float64 { return math.Pow(10, float64(i)/binsPerDecade) }

// histograms are the page's distributions.
type histograms struct {
	handshake logHist                     // clients: SYN_SENT to ESTABLISHED
	synRecv   logHist                     // servers: SYN-ACK to final ACK
	lifetime  map[tracer.Outcome]*logHist // by outcome
}

func newHistograms() histograms {
	return histograms{lifetime: map[tracer.Outcome]*logHist{}}
}

// add counts a connection as tracer.Stats does its latencies.
func (h *histograms) add(c *tracer.Connection) {
	if c.Role == tracer.RoleClient && c.HandshakeUs >= 0 {
		h.handshake.add(c.HandshakeUs)
	}
	if c.Role == tracer.RoleServer && c.SynRecvUs >= 0 {
		h.synRecv.add(c.SynRecvUs)
	}
	if c.Has(tracer.FlagPreexisting) {
		return // its lifetime is unknown
	}
	l := h.lifetime[c.Outcome]
	if l == nil {
		l = new(logHist)
		h.lifetime[c.Outcome] = l
	}
	l.add(c.DurationUs)
}
