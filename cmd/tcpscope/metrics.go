package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/tcpscope/tcpscope/output/metrics"
	"github.com/tcpscope/tcpscope/tracer/capture"
)

// metricsServer serves /metrics for as long as a recording runs.
type metricsServer struct {
	m    *metrics.Metrics
	ln   net.Listener
	srv  *http.Server
	done chan error
	up   bool // serving
}

// listenMetrics binds addr before anything is traced: an address that
// cannot be bound (a port in use, an address this host lacks) is bad
// input.
func listenMetrics(addr string) (*metricsServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, usageError{fmt.Errorf("--metrics-addr %s: %w", addr, err)}
	}
	m := metrics.New()
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	// ReadHeaderTimeout: a client that never finishes its request must not
	// hold a connection for the agent's whole life.
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return &metricsServer{m: m, ln: ln, srv: srv, done: make(chan error, 1)}, nil
}

// serve starts answering scrapes; say tells where, once.
func (ms *metricsServer) serve(say io.Writer) {
	fmt.Fprintf(say, "tcpscope: serving metrics on http://%s/metrics\n", ms.ln.Addr())
	ms.up = true
	go func() { ms.done <- ms.srv.Serve(ms.ln) }()
}

// stop ends the server, letting a scrape in progress finish; one that
// never served (the recording did not start) only gives its port back.
func (ms *metricsServer) stop() error {
	if !ms.up {
		ms.ln.Close()
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := ms.srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("stopping the metrics server: %w", err)
	}
	if err := <-ms.done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving metrics: %w", err)
	}
	return nil
}

// live hands the live numbers to /metrics.
func (ms *metricsServer) live(sn capture.Snapshot) {
	ms.m.Live(sn.Listeners, sn.TimeWaitBusiest, sn.TimeWaitNow, sn.Lost)
}
