package otlp

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/tcpscope/tcpscope/output/metrics"
	"github.com/tcpscope/tcpscope/tracer"
)

// MetricInterval is how often the metrics are sent; the end of the
// recording sends them once more.
const MetricInterval = 10 * time.Second

// meters are the OTLP metrics: the Prometheus set of output/metrics under
// OpenTelemetry names, plus the connections' lifetimes and the log
// records the queue dropped. Counters and histograms move as connections
// end; the live numbers are read by the exporter's callback.
type meters struct {
	provider    *sdkmetric.MeterProvider
	connections metric.Int64Counter
	duration    metric.Float64Histogram
	flags       metric.Int64Counter
	failures    metric.Int64Counter
	handshake   metric.Float64Histogram
	retrans     metric.Int64Counter
	live        *metrics.Live
}

func newMeters(url string, insecure bool, res *resource.Resource, version string, q *queue) (*meters, error) {
	opts := []otlpmetrichttp.Option{otlpmetrichttp.WithEndpointURL(url), otlpmetrichttp.WithTimeout(ExportTimeout),
		otlpmetrichttp.WithRetry(otlpmetrichttp.RetryConfig{Enabled: true, InitialInterval: 500 * time.Millisecond,
			MaxInterval: 2 * time.Second, MaxElapsedTime: ExportTimeout})}
	if insecure {
		opts = append(opts, otlpmetrichttp.WithInsecure())
	}
	exp, err := otlpmetrichttp.New(context.Background(), opts...)
	if err != nil {
		return nil, fmt.Errorf("creating the OTLP metric exporter: %w", err)
	}
	p := sdkmetric.NewMeterProvider(sdkmetric.WithResource(res),
		sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(MetricInterval))))
	m := &meters{provider: p, live: metrics.NewLive()}
	meter := p.Meter("tcpscope", metric.WithInstrumentationVersion(version))
	if err := m.counters(meter); err != nil {
		return nil, err
	}
	if err := m.observers(meter, q); err != nil {
		return nil, err
	}
	m.zeroFailures()
	return m, nil
}

// counters creates the instruments that move as connections end.
func (m *meters) counters(meter metric.Meter) error {
	var err error
	if m.connections, err = meter.Int64Counter("tcpscope.connections", metric.WithUnit("{connection}"),
		metric.WithDescription("connections that ended, by role, outcome and error.type")); err != nil {
		return fmt.Errorf("creating tcpscope.connections: %w", err)
	}
	if m.duration, err = meter.Float64Histogram("tcpscope.connection.duration", metric.WithUnit("s"),
		metric.WithDescription("connection lifetime, first to last event")); err != nil {
		return fmt.Errorf("creating tcpscope.connection.duration: %w", err)
	}
	if m.flags, err = meter.Int64Counter("tcpscope.connection.flags", metric.WithUnit("{connection}"),
		metric.WithDescription("connections that ended with a flag, by role and flag (once per flag)")); err != nil {
		return fmt.Errorf("creating tcpscope.connection.flags: %w", err)
	}
	if m.failures, err = meter.Int64Counter("tcpscope.connection.failures", metric.WithUnit("{connection}"),
		metric.WithDescription("connections that failed, by role and error.type")); err != nil {
		return fmt.Errorf("creating tcpscope.connection.failures: %w", err)
	}
	if m.handshake, err = meter.Float64Histogram("tcpscope.handshake.duration", metric.WithUnit("s"),
		metric.WithDescription("handshake time: client, SYN sent to established; server, SYN_RECV stay"),
		metric.WithExplicitBucketBoundaries(metrics.HandshakeBuckets...)); err != nil {
		return fmt.Errorf("creating tcpscope.handshake.duration: %w", err)
	}
	if m.retrans, err = meter.Int64Counter("tcpscope.retransmits", metric.WithUnit("{segment}"),
		metric.WithDescription("retransmitted segments of ended connections, by kind")); err != nil {
		return fmt.Errorf("creating tcpscope.retransmits: %w", err)
	}
	return nil
}

// zeroFailures shows failures and retransmits at 0 from the start, as
// /metrics does: an alert on their rate then sees the first one.
func (m *meters) zeroFailures() {
	ctx := context.Background()
	for _, role := range []string{"client", "server"} {
		for _, et := range metrics.ErrorTypes {
			m.failures.Add(ctx, 0, metric.WithAttributes(attribute.String("tcpscope.role", role), attribute.String("error.type", et)))
		}
	}
	for _, k := range metrics.RetransmitKinds {
		m.retrans.Add(ctx, 0, metric.WithAttributes(attribute.String("tcpscope.retransmit.kind", k)))
	}
}

// observers creates the instruments read at each export: the live
// numbers and the queue's drop count.
func (m *meters) observers(meter metric.Meter, q *queue) error {
	var ins [5]metric.Int64Observable
	var err error
	if ins[0], err = meter.Int64ObservableCounter("tcpscope.otlp.dropped_records", metric.WithUnit("{record}"),
		metric.WithDescription("connection log records the collector never took")); err != nil {
		return fmt.Errorf("creating tcpscope.otlp.dropped_records: %w", err)
	}
	if ins[1], err = meter.Int64ObservableCounter("tcpscope.listener.overflow_drops", metric.WithUnit("{connection}"),
		metric.WithDescription("connections a listener's full accept queue turned away, by listener")); err != nil {
		return fmt.Errorf("creating tcpscope.listener.overflow_drops: %w", err)
	}
	if ins[2], err = meter.Int64ObservableGauge("tcpscope.listener.accept_queue", metric.WithUnit("{connection}"),
		metric.WithDescription("connections waiting in a listener's accept queue at the last look")); err != nil {
		return fmt.Errorf("creating tcpscope.listener.accept_queue: %w", err)
	}
	if ins[3], err = meter.Int64ObservableGauge("tcpscope.time_wait.sockets", metric.WithUnit("{socket}"),
		metric.WithDescription("live TIME_WAIT sockets of connections this host opened, by destination")); err != nil {
		return fmt.Errorf("creating tcpscope.time_wait.sockets: %w", err)
	}
	if ins[4], err = meter.Int64ObservableCounter("tcpscope.lost_events", metric.WithUnit("{event}"),
		metric.WithDescription("events the kernel side dropped because the ring buffer was full")); err != nil {
		return fmt.Errorf("creating tcpscope.lost_events: %w", err)
	}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(ins[0], int64(q.dropped.Load()))
		v := m.live.View()
		observeBy(o, ins[1], "tcpscope.listener", v.OverflowDrops)
		observeBy(o, ins[2], "tcpscope.listener", v.AcceptQueue)
		observeBy(o, ins[3], "tcpscope.destination", v.TimeWait)
		o.ObserveInt64(ins[4], int64(v.Lost))
		return nil
	}, ins[0], ins[1], ins[2], ins[3], ins[4])
	if err != nil {
		return fmt.Errorf("registering the live OTLP metrics: %w", err)
	}
	return nil
}

func observeBy(o metric.Observer, ins metric.Int64Observable, key string, by map[string]uint64) {
	for label, n := range by {
		o.ObserveInt64(ins, int64(n), metric.WithAttributes(attribute.String(key, label)))
	}
}

// add counts one finished connection, as output/metrics does.
func (m *meters) add(c *tracer.Connection) {
	ctx := context.Background()
	r := attribute.String("tcpscope.role", roleOf(c))
	kv := []attribute.KeyValue{r, attribute.String("tcpscope.outcome", c.Outcome.String())}
	et := ErrorType(c)
	if et != "" {
		kv = append(kv, attribute.String("error.type", et))
		m.failures.Add(ctx, 1, metric.WithAttributes(r, attribute.String("error.type", et)))
	}
	set := metric.WithAttributeSet(attribute.NewSet(kv...))
	m.connections.Add(ctx, 1, set)
	if c.DurationUs >= 0 {
		m.duration.Record(ctx, float64(c.DurationUs)/1e6, set)
	}
	for f := range c.Flags.All() {
		m.flags.Add(ctx, 1, metric.WithAttributes(r, attribute.String("tcpscope.flag", f.String())))
	}
	if us := metrics.HandshakeUs(c); us >= 0 {
		m.handshake.Record(ctx, float64(us)/1e6, metric.WithAttributes(r))
	}
	rt := c.Retransmits
	for _, k := range []struct {
		kind string
		n    uint32
	}{{"syn", rt.Syn}, {"synack", rt.SynAck}, {"data", rt.Data}, {"fin", rt.Fin}} {
		if k.n > 0 {
			m.retrans.Add(ctx, int64(k.n), metric.WithAttributes(attribute.String("tcpscope.retransmit.kind", k.kind)))
		}
	}
}

// roleOf names a connection's role; one whose open was not seen is
// "unknown", as in /metrics.
func roleOf(c *tracer.Connection) string {
	if s := c.Role.String(); s != "" {
		return s
	}
	return "unknown"
}
