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

	"github.com/tcpscope/tcpscope/tracer"
)

// MetricInterval is how often the metrics are sent; the end of the
// recording sends them once more.
const MetricInterval = 10 * time.Second

// meters are the OTLP metrics: connections by role, outcome and error, and
// the log records the queue dropped.
type meters struct {
	provider    *sdkmetric.MeterProvider
	connections metric.Int64Counter
	duration    metric.Float64Histogram
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
	m := &meters{provider: p}
	meter := p.Meter("tcpscope", metric.WithInstrumentationVersion(version))
	if m.connections, err = meter.Int64Counter("tcpscope.connections", metric.WithUnit("{connection}"),
		metric.WithDescription("finished connection records, by role, outcome and error.type")); err != nil {
		return nil, fmt.Errorf("creating tcpscope.connections: %w", err)
	}
	if m.duration, err = meter.Float64Histogram("tcpscope.connection.duration", metric.WithUnit("s"),
		metric.WithDescription("connection lifetime, first to last event")); err != nil {
		return nil, fmt.Errorf("creating tcpscope.connection.duration: %w", err)
	}
	_, err = meter.Int64ObservableCounter("tcpscope.otlp.dropped_records", metric.WithUnit("{record}"),
		metric.WithDescription("connection log records the collector never took"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(int64(q.dropped.Load()))
			return nil
		}))
	if err != nil {
		return nil, fmt.Errorf("creating tcpscope.otlp.dropped_records: %w", err)
	}
	return m, nil
}

// add counts one finished connection.
func (m *meters) add(c *tracer.Connection) {
	kv := []attribute.KeyValue{attribute.String("tcpscope.role", c.Role.String()), attribute.String("tcpscope.outcome", c.Outcome.String())}
	if e := ErrorType(c); e != "" {
		kv = append(kv, attribute.String("error.type", e))
	}
	set := metric.WithAttributeSet(attribute.NewSet(kv...))
	m.connections.Add(context.Background(), 1, set)
	if c.DurationUs >= 0 {
		m.duration.Record(context.Background(), float64(c.DurationUs)/1e6, set)
	}
}
