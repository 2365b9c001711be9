// Package metrics renders a recording as Prometheus metrics: the
// definitions of every tcpscope_* metric and how a finished connection,
// a closed listener and a live snapshot move them. It only renders; the
// HTTP server that exposes the registry is the caller's.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/tcpscope/tcpscope/tracer"
)

// MaxListeners bounds the listener label: listeners past it are summed
// under "other", so a host opening thousands of ports cannot blow up the
// series count.
const MaxListeners = 50

// Other is the label value of everything past a bound.
const Other = "other"

// HandshakeBuckets are the handshake histogram's bounds in seconds: fine
// below a second for loopback and LAN round trips, then a pair around each
// step of the kernel's SYN (and SYN-ACK) retransmit schedule, 1 s, 3 s,
// 7 s, 15 s, 31 s after the first SYN, so that a handshake that needed one
// or two retransmits lands in its own bucket.
var HandshakeBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
	1, 1.5, 3, 3.5, 7, 7.5, 15, 16, 31, 32, 63, 64}

// Metrics holds every tcpscope metric of one recording. Connection,
// Listener and Live are called from the recording's goroutine; scrapes
// run on the HTTP server's.
type Metrics struct {
	reg       *prometheus.Registry
	conns     *prometheus.CounterVec
	flags     *prometheus.CounterVec
	failures  *prometheus.CounterVec
	handshake *prometheus.HistogramVec
	retrans   *prometheus.CounterVec
	live      *Live
}

// New defines the metrics in a registry of their own (with Go's process
// metrics, which say what the agent itself costs).
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		conns: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tcpscope_connections_total",
			Help: "Connections that ended, by role and outcome."}, []string{"role", "outcome"}),
		flags: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tcpscope_connection_flags_total",
			Help: "Connections that ended with a flag, by role and flag (a connection counts once per flag)."}, []string{"role", "flag"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tcpscope_connection_failures_total",
			Help: "Connections that failed, by role and error type: refused, reset, timed_out, port_exhausted, abandoned."}, []string{"role", "error_type"}),
		handshake: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "tcpscope_handshake_duration_seconds",
			Help:    "Handshake time: client, SYN sent to established; server, SYN-ACK sent to final ACK (SYN_RECV stay).",
			Buckets: HandshakeBuckets}, []string{"role"}),
		retrans: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tcpscope_retransmits_total",
			Help: "Retransmitted segments of ended connections, by kind: syn, synack, data, fin."}, []string{"kind"}),
		live: NewLive(),
	}
	m.reg.MustRegister(m.conns, m.flags, m.failures, m.handshake, m.retrans, m.live,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	// Failures and retransmits are shown at 0 from the start: an alert on
	// their rate then sees the first one, rather than a series that
	// appears with it.
	for _, role := range []string{"client", "server"} {
		for _, et := range ErrorTypes {
			m.failures.WithLabelValues(role, et)
		}
	}
	for _, k := range RetransmitKinds {
		m.retrans.WithLabelValues(k)
	}
	return m
}

// ErrorTypes are the values of the error_type label.
var ErrorTypes = []string{"refused", "reset", "timed_out", "port_exhausted", "abandoned"}

// RetransmitKinds are the values of the kind label of retransmits.
var RetransmitKinds = []string{"syn", "synack", "data", "fin"}

// Handler serves the registry in the exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Connection counts a connection that ended.
func (m *Metrics) Connection(c *tracer.Connection) {
	role := roleLabel(c.Role)
	m.conns.WithLabelValues(role, outcomeLabel(c.Outcome)).Inc()
	for f := range c.Flags.All() {
		m.flags.WithLabelValues(role, f.String()).Inc()
	}
	if et := ErrorType(c); et != "" {
		m.failures.WithLabelValues(role, et).Inc()
	}
	if us := HandshakeUs(c); us >= 0 {
		m.handshake.WithLabelValues(role).Observe(float64(us) / 1e6)
	}
	r := c.Retransmits
	for _, k := range []struct {
		kind string
		n    uint32
	}{{"syn", r.Syn}, {"synack", r.SynAck}, {"data", r.Data}, {"fin", r.Fin}} {
		if k.n > 0 {
			m.retrans.WithLabelValues(k.kind).Add(float64(k.n))
		}
	}
}

// HandshakeUs is the handshake time of the connection's end, -1 when
// unknown: a client's connect time, a server's SYN_RECV stay.
func HandshakeUs(c *tracer.Connection) int64 {
	switch c.Role {
	case tracer.RoleClient:
		return c.HandshakeUs
	case tracer.RoleServer:
		return c.SynRecvUs
	}
	return -1
}

// roleLabel names a role; a connection whose open was not seen (it
// predates the trace) has role "unknown" rather than an empty label.
func roleLabel(r tracer.Role) string {
	if s := r.String(); s != "" {
		return s
	}
	return "unknown"
}

func outcomeLabel(o tracer.Outcome) string {
	if s := o.String(); s != "" {
		return s
	}
	return "unknown"
}

// ErrorType is the error_type label of a failed connection, "" for one
// that did not fail. Port exhaustion comes first (the connect found no
// local port: outcome failed, errno EADDRNOTAVAIL); then the outcome; a
// connection that failed otherwise is named by its errno when the errno
// is one of the five.
func ErrorType(c *tracer.Connection) string {
	if c.Has(tracer.FlagPortExhausted) || c.Errno == tracer.ErrnoAddrNotAvail {
		return "port_exhausted"
	}
	switch c.Outcome {
	case tracer.OutcomeRefused:
		return "refused"
	case tracer.OutcomeReset:
		return "reset"
	case tracer.OutcomeTimeout:
		return "timed_out"
	case tracer.OutcomeAbandoned:
		return "abandoned"
	case tracer.OutcomeFailed:
		return errnoType(c.Errno)
	}
	return ""
}

func errnoType(e tracer.Errno) string {
	switch e {
	case tracer.ErrnoConnRefused:
		return "refused"
	case tracer.ErrnoConnReset, tracer.ErrnoPipe:
		return "reset"
	case tracer.ErrnoTimedOut:
		return "timed_out"
	}
	return ""
}

// OTLPDropped adds tcpscope_otlp_dropped_records_total, read from
// dropped at each scrape: the records --otlp-endpoint could not deliver.
func (m *Metrics) OTLPDropped(dropped func() uint64) {
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "tcpscope_otlp_dropped_records_total",
		Help: "Connection records that did not reach the OTLP collector (down, slow, or the queue full); the export has them all."},
		func() float64 { return float64(dropped()) }))
}

// Listener keeps the overflow drops of a listener that closed, so that
// its counter does not go back when it leaves the live snapshot.
func (m *Metrics) Listener(l *tracer.Listener) {
	m.live.CloseListener(l.Local.String(), l.Overflows+l.SynDropsAttributed())
}

// Live takes the live numbers: the listeners followed now, the busiest
// TIME_WAIT destinations with the total of live TIME_WAIT sockets, and
// the events and records the kernel side lost so far.
func (m *Metrics) Live(listeners []tracer.ListenerLoad, busiest []tracer.TimeWaitDest, timeWaitNow int, lost uint64) {
	m.live.Update(listeners, busiest, timeWaitNow, lost)
}
