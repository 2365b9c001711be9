package otlp

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	"go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/tcpscope/tcpscope/tracer"
)

// Queue and export bounds. 8192 records (4.8 MB of queue) absorb a
// collector's pause of a few hundred milliseconds at the busiest loads
// measured (README, Performance); a collector that takes longer than
// ExportTimeout for a batch is treated as down.
const (
	QueueSize     = 8192
	BatchSize     = 512
	Interval      = time.Second
	ExportTimeout = 10 * time.Second
)

// ParseEndpoint checks an --otlp-endpoint: http://HOST:PORT, optionally
// with a base path (see signalURL).
func ParseEndpoint(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, errors.New("not a URL (e.g. http://127.0.0.1:4318)")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, errors.New("must start with http:// or https:// (OTLP/HTTP; e.g. http://127.0.0.1:4318)")
	}
	if u.Hostname() == "" || u.Port() == "" {
		return nil, errors.New("needs a host and a port (e.g. http://127.0.0.1:4318)")
	}
	if p, err := strconv.Atoi(u.Port()); err != nil || p < 1 || p > 65535 {
		return nil, errors.New("a port is 1-65535")
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, errors.New("takes no user, query or fragment")
	}
	return u, nil
}

// Resource is who sends: the host and the namespaces traced (empty: all).
type Resource struct {
	HostName string
	NetNS    []uint32
}

func (r Resource) resource() *resource.Resource {
	ns := "all"
	if len(r.NetNS) > 0 {
		s := make([]string, len(r.NetNS))
		for i, n := range r.NetNS {
			s[i] = strconv.FormatUint(uint64(n), 10)
		}
		ns = strings.Join(s, ",")
	}
	return resource.NewSchemaless(attribute.String("service.name", "tcpscope"),
		attribute.String("host.name", r.HostName), attribute.String("tcpscope.netns", ns))
}

// Shipper sends connection records as OTLP log records, and counts them
// in OTLP metrics.
type Shipper struct {
	provider *sdklog.LoggerProvider
	logger   log.Logger
	queue    *queue
	meters   *meters
}

// New starts a shipper to endpoint (checked by ParseEndpoint). Nothing is
// sent yet: a collector that is down is found out by the first export.
func New(endpoint *url.URL, version string, res Resource) (*Shipper, error) {
	opts := []otlploghttp.Option{otlploghttp.WithEndpointURL(signalURL(endpoint, "logs")), otlploghttp.WithTimeout(ExportTimeout),
		otlploghttp.WithRetry(otlploghttp.RetryConfig{Enabled: true, InitialInterval: 500 * time.Millisecond,
			MaxInterval: 2 * time.Second, MaxElapsedTime: ExportTimeout})}
	if endpoint.Scheme == "http" {
		opts = append(opts, otlploghttp.WithInsecure())
	}
	exp, err := otlploghttp.New(context.Background(), opts...)
	if err != nil {
		return nil, fmt.Errorf("creating the OTLP exporter: %w", err)
	}
	q := newQueue(exp, QueueSize, BatchSize, Interval, ExportTimeout)
	m, err := newMeters(signalURL(endpoint, "metrics"), endpoint.Scheme == "http", res.resource(), version, q)
	if err != nil {
		return nil, err
	}
	p := sdklog.NewLoggerProvider(sdklog.WithResource(res.resource()), sdklog.WithProcessor(q))
	return &Shipper{provider: p, logger: p.Logger("tcpscope", log.WithInstrumentationVersion(version)), queue: q, meters: m}, nil
}

// signalURL is the endpoint's URL for one signal: like
// OTEL_EXPORTER_OTLP_ENDPOINT, the endpoint is a base to which
// /v1/logs or /v1/metrics is added (a base given as .../v1/logs is taken
// without it).
func signalURL(u *url.URL, signal string) string {
	c := *u
	base := strings.TrimSuffix(strings.TrimSuffix(c.Path, "/"), "/v1/logs")
	c.Path = base + "/v1/" + signal
	return c.String()
}

// Ship queues one connection; body is its JSON line as the export writes
// it. It never blocks: a full queue drops the record.
func (s *Shipper) Ship(c *tracer.Connection, body []byte) {
	var r log.Record
	r.SetTimestamp(c.End)
	r.SetObservedTimestamp(time.Now())
	r.SetEventName("tcpscope.connection")
	r.SetSeverity(log.SeverityInfo)
	if c.Flagged() {
		r.SetSeverity(log.SeverityWarn)
	}
	r.SetBody(attribute.StringValue(strings.TrimSuffix(string(body), "\n")))
	r.AddAttributes(Attributes(c)...)
	s.logger.Emit(context.Background(), r)
	s.meters.add(c)
}

// Listener keeps the overflow drops of a listener that closed, so that
// its counter does not go back when it leaves the live numbers.
func (s *Shipper) Listener(l *tracer.Listener) {
	s.meters.live.CloseListener(l.Local.String(), l.Overflows+l.SynDropsAttributed())
}

// Live takes the live numbers, as metrics.Metrics.Live; the next export
// sends them.
func (s *Shipper) Live(listeners []tracer.ListenerLoad, busiest []tracer.TimeWaitDest, timeWaitNow int, lost uint64) {
	s.meters.live.Update(listeners, busiest, timeWaitNow, lost)
}

// EndLost gives the kernel's final lost count, for the last export.
func (s *Shipper) EndLost(lost uint64) { s.meters.live.EndLost(lost) }

// Dropped is how many records have been dropped so far.
func (s *Shipper) Dropped() uint64 { return s.queue.dropped.Load() }

// Close sends what is queued, then the metrics a last time (the drop
// count final), waiting at most until ctx ends, and returns how many
// records were sent and dropped in all.
func (s *Shipper) Close(ctx context.Context) (sent, dropped uint64, err error) {
	if err = s.provider.Shutdown(ctx); err != nil {
		err = fmt.Errorf("shutting down the OTLP log exporter: %w", err)
	}
	if merr := s.meters.provider.Shutdown(ctx); merr != nil {
		err = errors.Join(err, fmt.Errorf("sending the OTLP metrics: %w", merr))
	}
	return s.queue.sent.Load(), s.queue.dropped.Load(), err
}
