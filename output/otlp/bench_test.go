package otlp

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"

	"github.com/tcpscope/tcpscope/tracer"
)

type discardExporter struct{}

func (discardExporter) Export(context.Context, []sdklog.Record) error { return nil }
func (discardExporter) Shutdown(context.Context) error                { return nil }
func (discardExporter) ForceFlush(context.Context) error              { return nil }

// BenchmarkShip is what --otlp-endpoint adds on the recorder's path per
// connection: the log record, its attributes, the queue and the metrics,
// with an exporter that takes everything at once.
func BenchmarkShip(b *testing.B) {
	q := newQueue(discardExporter{}, QueueSize, BatchSize, Interval, ExportTimeout)
	p := sdklog.NewLoggerProvider(sdklog.WithResource(Resource{HostName: "h"}.resource()), sdklog.WithProcessor(q))
	u, _ := ParseEndpoint("http://127.0.0.1:1")
	m, err := newMeters(signalURL(u, "metrics"), true, Resource{}.resource(), "test", q)
	if err != nil {
		b.Fatal(err)
	}
	s := &Shipper{provider: p, logger: p.Logger("tcpscope", log.WithInstrumentationVersion("test")), queue: q, meters: m}
	c := &tracer.Connection{ID: 1, Role: tracer.RoleClient, Family: tracer.FamilyIPv4, Outcome: tracer.OutcomeRefused,
		Local: netip.MustParseAddrPort("10.0.0.2:40000"), Remote: netip.MustParseAddrPort("10.0.0.1:80"), End: time.Now(),
		Flags: tracer.FlagSet(0).With(tracer.FlagRefused)}
	body := make([]byte, 900) // a typical connection line
	b.ReportAllocs()
	for b.Loop() {
		s.Ship(c, body)
	}
	b.StopTimer()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		b.Fatal(err)
	}
	// Nothing listens for the metrics: their last export fails, as it
	// should; only the log side is measured.
	_ = m.provider.Shutdown(ctx)
	if d := q.dropped.Load(); d != 0 {
		b.Logf("the queue dropped %d records: the exporter goroutine fell behind", d)
	}
}
