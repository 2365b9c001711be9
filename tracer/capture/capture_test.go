package capture

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/cgroups"
	"github.com/tcpscope/tcpscope/tracer/netns"
	"github.com/tcpscope/tcpscope/tracer/nettest"
)

// result is what Run returned.
type result struct {
	sum Summary
	err error
}

// connectOnce opens a listener in ns, connects to it once, and closes the
// connection (client first) and the listener.
func connectOnce(t *testing.T, ns *netns.NS) {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() (err error) { ln, err = net.Listen("tcp4", "127.0.0.1:0"); return }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		if c, err := ln.Accept(); err == nil {
			io.Copy(io.Discard, c)
			c.Close()
		}
	}()
	var c net.Conn
	if err := ns.Do(func() (err error) { c, err = net.DialTimeout("tcp4", ln.Addr().String(), 5*time.Second); return }); err != nil {
		t.Fatal(err)
	}
	c.Close()
	<-accepted
}

// TestRunSinks: Ready comes before any record; each end of a connection
// goes to Connection, its listener to Listener, every event to Event; the
// summary counts them, and nothing from the host's other namespaces.
func TestRunSinks(t *testing.T) {
	ns := nettest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan Started, 1)
	conns := make(chan *tracer.Connection, 16)
	var listeners, events, readyAt, foreign int
	done := make(chan result, 1)
	go func() {
		sum, err := Run(ctx, Options{Config: tracer.Config{NetNS: []uint32{ns.Inode}, RingBufferBytes: 1 << 20},
			SynRecvThreshold: time.Second, MaxConnections: 1000}, Sinks{
			Ready: func(st Started) error { readyAt = events + listeners + len(conns); ready <- st; return nil },
			Connection: func(c *tracer.Connection) error {
				conns <- c
				return nil
			},
			Listener: func(*tracer.Listener) error { listeners++; return nil },
			Event: func(ev *tracer.Event, _ cgroups.Info, _ bool) error {
				if ev.NetNS != ns.Inode {
					foreign++
				}
				events++
				return nil
			},
		})
		done <- result{sum, err}
	}()
	var st Started
	select {
	case st = <-ready:
	case r := <-done:
		t.Fatalf("Run ended before Ready: %v", r.err)
	}
	if st.Attached == 0 || st.Start.IsZero() || st.Features.Kernel == "" {
		t.Errorf("Started %+v", st)
	}
	connectOnce(t, ns)
	deadline := time.After(30 * time.Second)
	for got := 0; got < 2; got++ {
		select {
		case <-conns:
		case <-deadline:
			t.Fatalf("%d of 2 connections after 30s", got)
		}
	}
	cancel()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if readyAt != 0 {
		t.Errorf("%d records before Ready", readyAt)
	}
	if foreign != 0 {
		t.Errorf("%d events of other namespaces", foreign)
	}
	if r.sum.Stats.Connections != 2 || listeners != 1 {
		t.Errorf("summary: %d connections, %d listeners; want 2 and 1", r.sum.Stats.Connections, listeners)
	}
	var counted uint64
	for _, n := range r.sum.Events {
		counted += n
	}
	if events == 0 || r.sum.Events[tracer.KindState] == 0 || counted != uint64(events) {
		t.Errorf("%d events seen, the summary counts %v", events, r.sum.Events)
	}
	if r.sum.End.Before(r.sum.Start) || r.sum.KernelErr != nil || len(r.sum.Kernel.Recursion) == 0 {
		t.Errorf("summary: start %s end %s kernel %+v %v", r.sum.Start, r.sum.End, r.sum.Kernel, r.sum.KernelErr)
	}
	var opens uint64
	for _, d := range r.sum.Counters {
		if d.NetNS != ns.Inode {
			t.Errorf("counter of namespace %d: %+v", d.NetNS, d)
		}
		if d.Counter == "Tcp.ActiveOpens" {
			opens = d.Delta
		}
	}
	if opens != 1 {
		t.Errorf("Tcp.ActiveOpens moved by %d, want 1: %+v", opens, r.sum.Counters)
	}
}

// TestRunSinkErrorStops: an error from a sink stops the recording; Run
// returns it with a whole summary.
func TestRunSinkErrorStops(t *testing.T) {
	ns := nettest.New(t)
	full := errors.New("disk full")
	ready := make(chan struct{})
	done := make(chan result, 1)
	go func() {
		// No deadline of its own: only the sink's error ends this Run.
		sum, err := Run(context.Background(), Options{Config: tracer.Config{NetNS: []uint32{ns.Inode}, RingBufferBytes: 1 << 20},
			SynRecvThreshold: time.Second, MaxConnections: 1000}, Sinks{
			Ready:      func(Started) error { close(ready); return nil },
			Connection: func(*tracer.Connection) error { return full },
		})
		done <- result{sum, err}
	}()
	select {
	case <-ready:
	case r := <-done:
		t.Fatalf("Run ended before Ready: %v", r.err)
	}
	connectOnce(t, ns)
	select {
	case r := <-done:
		if !errors.Is(r.err, full) {
			t.Errorf("Run returned %v, want the sink's error", r.err)
		}
		if r.sum.Stats == nil || r.sum.Stats.Connections != 2 {
			t.Errorf("summary after the error: %+v; want both connections counted", r.sum.Stats)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a sink's error did not stop the recording")
	}
}

// TestRunReadyError: an error from Ready ends Run at once, nothing
// recorded.
func TestRunReadyError(t *testing.T) {
	ns := nettest.New(t)
	no := errors.New("no")
	sum, err := Run(context.Background(), Options{Config: tracer.Config{NetNS: []uint32{ns.Inode}, RingBufferBytes: 1 << 20}},
		Sinks{Ready: func(Started) error { return no }})
	if !errors.Is(err, no) || sum.Stats != nil {
		t.Errorf("Run: %v, %+v; want Ready's error and a zero summary", err, sum)
	}
}

// TestRunMissingNamespace: a --netns that names no namespace is a
// UsageError, before Ready.
func TestRunMissingNamespace(t *testing.T) {
	nettest.RequirePrivileges(t)
	_, err := Run(context.Background(), Options{Config: tracer.Config{NetNS: []uint32{1}, RingBufferBytes: 1 << 20}},
		Sinks{Ready: func(Started) error { t.Error("Ready called"); return nil }})
	if !IsUsage(err) {
		t.Errorf("Run: %v, want a UsageError", err)
	}
}
