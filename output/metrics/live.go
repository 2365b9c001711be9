package metrics

import (
	"maps"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tcpscope/tcpscope/tracer"
)

var (
	overflowDesc = prometheus.NewDesc("tcpscope_listener_overflow_drops_total",
		"Connections a listener's full accept queue turned away, by listener ADDR:PORT: final ACKs seen dropped (kernel 6.15+) and SYN drops the namespace's ListenOverflows counter attributes to it.", []string{"listener"}, nil)
	queueDesc = prometheus.NewDesc("tcpscope_listener_accept_queue",
		"Connections waiting in a listener's accept queue at the last look, by listener ADDR:PORT.", []string{"listener"}, nil)
	timeWaitDesc = prometheus.NewDesc("tcpscope_time_wait_sockets",
		"Live TIME_WAIT sockets of connections this host opened, by destination ADDR:PORT: the busiest destinations, the rest as \"other\".", []string{"destination"}, nil)
	lostDesc = prometheus.NewDesc("tcpscope_lost_events_total",
		"Events and connection records the kernel side dropped because the ring buffer was full.", nil, nil)
)

// Live holds the numbers a recording reads as a whole each time
// (listener loads, TIME_WAIT, the kernel's loss counters) rather than
// counts event by event, bounded and labelled the same for Prometheus
// and OTLP. Update and Collect (or View) run on different goroutines.
type Live struct {
	mu       sync.Mutex
	names    map[string]bool   // listener labels given out, at most MaxListeners
	closed   map[string]uint64 // overflow drops of the listeners that closed
	queues   map[string]uint64
	drops    map[string]uint64 // closed plus live
	timeWait map[string]uint64
	lost     uint64
}

func NewLive() *Live {
	return &Live{names: map[string]bool{}, closed: map[string]uint64{}, queues: map[string]uint64{},
		drops: map[string]uint64{}, timeWait: map[string]uint64{}}
}

// label is a listener's label: its ADDR:PORT (the same port in several
// namespaces shares one), or "other" past MaxListeners. Called locked.
func (lc *Live) label(addr string) string {
	if lc.names[addr] {
		return addr
	}
	if len(lc.names) >= MaxListeners {
		return Other
	}
	lc.names[addr] = true
	return addr
}

func (lc *Live) CloseListener(addr string, overflows uint64) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	l := lc.label(addr)
	lc.closed[l] += overflows
	lc.drops[l] = max(lc.drops[l], lc.closed[l])
}

func (lc *Live) Update(listeners []tracer.ListenerLoad, busiest []tracer.TimeWaitDest, timeWaitNow int, lost uint64) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	lc.queues = map[string]uint64{}
	drops := map[string]uint64{}
	for l, n := range lc.closed {
		drops[l] = n
	}
	for _, ld := range listeners {
		l := lc.label(ld.Local.String())
		// Several listeners under one label: the fullest queue shows.
		lc.queues[l] = max(lc.queues[l], uint64(ld.Queue))
		drops[l] += ld.Overflows
	}
	// A counter never goes back, even when the listeners behind a label
	// changed between two looks.
	for l, n := range drops {
		lc.drops[l] = max(lc.drops[l], n)
	}
	lc.timeWait = map[string]uint64{}
	rest := timeWaitNow
	for _, d := range busiest {
		lc.timeWait[d.Key.Remote.String()] += uint64(d.Now)
		rest -= d.Now
	}
	lc.timeWait[Other] = uint64(max(rest, 0))
	lc.lost = max(lc.lost, lost)
}

// EndLost raises the lost count to the kernel's final tally, which the
// last look may have missed.
func (lc *Live) EndLost(lost uint64) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	lc.lost = max(lc.lost, lost)
}

// LiveView is a copy of the live numbers, by label.
type LiveView struct {
	OverflowDrops map[string]uint64 // by listener ADDR:PORT or "other"
	AcceptQueue   map[string]uint64 // by listener
	TimeWait      map[string]uint64 // by destination ADDR:PORT or "other"
	Lost          uint64
}

// View copies the live numbers; the caller may keep them.
func (lc *Live) View() LiveView {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	return LiveView{OverflowDrops: maps.Clone(lc.drops), AcceptQueue: maps.Clone(lc.queues),
		TimeWait: maps.Clone(lc.timeWait), Lost: lc.lost}
}

func (lc *Live) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{overflowDesc, queueDesc, timeWaitDesc, lostDesc} {
		ch <- d
	}
}

func (lc *Live) Collect(ch chan<- prometheus.Metric) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	for l, n := range lc.drops {
		ch <- prometheus.MustNewConstMetric(overflowDesc, prometheus.CounterValue, float64(n), l)
	}
	for l, n := range lc.queues {
		ch <- prometheus.MustNewConstMetric(queueDesc, prometheus.GaugeValue, float64(n), l)
	}
	for d, n := range lc.timeWait {
		ch <- prometheus.MustNewConstMetric(timeWaitDesc, prometheus.GaugeValue, float64(n), d)
	}
	ch <- prometheus.MustNewConstMetric(lostDesc, prometheus.CounterValue, float64(lc.lost))
}
