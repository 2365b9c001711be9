package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"time"

	"github.com/tcpscope/tcpscope/output"
	"github.com/tcpscope/tcpscope/output/otlp"
	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/capture"
)

// endpointValue is --otlp-endpoint: an OTLP/HTTP URL, checked while
// parsing.
type endpointValue struct{ u **url.URL }

func (v endpointValue) String() string {
	if *v.u == nil {
		return ""
	}
	return (*v.u).String()
}

func (v endpointValue) Set(s string) error {
	u, err := otlp.ParseEndpoint(s)
	if err != nil {
		return err
	}
	*v.u = u
	return nil
}

func (endpointValue) Type() string { return "URL" }

// otlpDrain bounds how long the end of a recording waits for the collector
// to take what is still queued.
const otlpDrain = 5 * time.Second

// otlpSink ships the session's connection records, when --otlp-endpoint
// is given.
type otlpSink struct {
	ship     *otlp.Shipper
	endpoint *url.URL
	buf      []byte
}

func newOTLPSink(endpoint *url.URL, netns []uint32) (*otlpSink, error) {
	if endpoint == nil {
		return nil, nil
	}
	host, err := os.Hostname()
	if err != nil {
		return nil, fmt.Errorf("reading the host name: %w", err)
	}
	ship, err := otlp.New(endpoint, version, otlp.Resource{HostName: host, NetNS: netns})
	if err != nil {
		return nil, err
	}
	return &otlpSink{ship: ship, endpoint: endpoint}, nil
}

// emit queues c; it never waits on the collector.
func (o *otlpSink) emit(c *tracer.Connection) {
	if o == nil {
		return
	}
	o.buf = output.AppendConnectionJSON(o.buf[:0], c)
	o.ship.Ship(c, o.buf)
}

// listener keeps a closed listener's overflow drops in the OTLP metrics.
func (o *otlpSink) listener(l *tracer.Listener) {
	if o == nil {
		return
	}
	o.ship.Listener(l)
}

// live hands the live numbers to the OTLP metrics; the next export sends
// them.
func (o *otlpSink) live(sn capture.Snapshot) {
	if o == nil {
		return
	}
	o.ship.Live(sn.Listeners, sn.TimeWaitBusiest, sn.TimeWaitNow, sn.Lost)
}

// finish sends what is queued, at most otlpDrain long, says on stderr how
// many records went and sets the export's drop count. Without x (the
// recording never started, nothing was queued) it only stops the shipper.
func (o *otlpSink) finish(s *session, x *output.Extra) {
	if o == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), otlpDrain)
	defer cancel()
	sent, dropped, err := o.ship.Close(ctx)
	if err != nil {
		fmt.Fprintf(s.stderr, "tcpscope: warning: %v\n", err)
	}
	if x == nil {
		return
	}
	x.OTLPDropped = &dropped
	fmt.Fprintf(s.stderr, "tcpscope: otlp: sent %d connection records to %s, dropped %d\n", sent, o.endpoint, dropped)
	if dropped > 0 {
		fmt.Fprintf(s.stderr, "tcpscope: %d connection records did not reach the collector (down, slow or the queue of %d full); the export has them all\n", dropped, otlp.QueueSize)
	}
}
