package tracer_test

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/netns"
	"github.com/tcpscope/tcpscope/tracer/nettest"
)

// collector reads a tracer's events in the background.
type collector struct {
	tr     *tracer.Tracer
	mu     sync.Mutex
	events []tracer.Event
	errs   []error
	notify chan struct{}
	done   chan struct{}
}

// traceNS opens a tracer filtered to one namespace and collects its events
// until the test ends.
func traceNS(t *testing.T, ns *netns.NS, cfg tracer.Config) *collector {
	t.Helper()
	cfg.NetNS = append(cfg.NetNS, ns.Inode)
	tr, err := tracer.Open(cfg)
	if err != nil {
		t.Fatalf("opening tracer: %v", err)
	}
	c := &collector{tr: tr, notify: make(chan struct{}, 1), done: make(chan struct{})}
	t.Cleanup(func() {
		tr.Close()
		<-c.done
	})
	go c.run()
	return c
}

func (c *collector) run() {
	defer close(c.done)
	for {
		var ev tracer.Event
		err := c.tr.Read(&ev)
		if errors.Is(err, tracer.ErrClosed) {
			return
		}
		c.mu.Lock()
		if err != nil {
			c.errs = append(c.errs, err)
		} else {
			c.events = append(c.events, ev)
		}
		c.mu.Unlock()
		select {
		case c.notify <- struct{}{}:
		default:
		}
	}
}

func (c *collector) snapshot() []tracer.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]tracer.Event(nil), c.events...)
}

// waitFor returns the events once pred holds, re-checking it on every new
// event and every 50 ms; the timeout only bounds a test that would
// otherwise hang.
func (c *collector) waitFor(t *testing.T, what string, timeout time.Duration, pred func([]tracer.Event) bool) []tracer.Event {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	// Also on a tick: a predicate may poll the kernel (sock_diag) for a
	// state that no further event announces.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		evs := c.snapshot()
		if pred(evs) {
			return evs
		}
		select {
		case <-c.notify:
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for %s; saw:\n%s", timeout, what, dump(evs))
		}
	}
}

func dump(evs []tracer.Event) string {
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "  %-17s ck=%-6d %s -> %s %s->%s state=%s err=%d reason=%s nosock=%v\n",
			e.Kind, e.Cookie, e.Local, e.Remote, e.OldState, e.NewState, e.State, e.Err, e.Reason, e.NoSocket)
	}
	return b.String()
}

// transitions lists "OLD->NEW" for one socket.
func transitions(evs []tracer.Event, cookie uint64) []string {
	var out []string
	for _, e := range evs {
		if e.Kind == tracer.KindState && e.Cookie == cookie {
			out = append(out, e.OldState.String()+"->"+e.NewState.String())
		}
	}
	return out
}

func find(evs []tracer.Event, pred func(tracer.Event) bool) (tracer.Event, bool) {
	for _, e := range evs {
		if pred(e) {
			return e, true
		}
	}
	return tracer.Event{}, false
}

func closed(evs []tracer.Event, cookie uint64) bool {
	_, ok := find(evs, func(e tracer.Event) bool {
		return e.Cookie == cookie && e.Kind == tracer.KindState && e.NewState == tracer.StateClose
	})
	return ok
}

// listen opens a listener inside ns and closes it at cleanup.
func listen(t *testing.T, ns *netns.NS, network, address string) net.Listener {
	t.Helper()
	ln, err := ns.Listen(network, address)
	if err != nil {
		t.Fatalf("listening in namespace: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func dial(ns *netns.NS, network, address string, timeout time.Duration) (net.Conn, error) {
	return ns.Dial(network, address, timeout)
}

func newNS(t *testing.T) *netns.NS { return nettest.New(t) }

// modes runs a test in the aggregated mode and in the per-event mode.
func modes(t *testing.T, test func(t *testing.T, events bool)) {
	for _, events := range []bool{false, true} {
		name := "aggregated"
		if events {
			name = "events"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			test(t, events)
		})
	}
}

// retransmitted is a waitFor predicate: an event pred accepts came, or, in
// the aggregated mode, where a socket's events come when it closes or
// becomes ESTABLISHED, the namespace's kernel counters show at least n
// retransmits tried (sent, or failed as a netfilter drop makes them).
func retransmitted(t *testing.T, ns *netns.NS, events bool, n uint64, pred func(tracer.Event) bool) func([]tracer.Event) bool {
	return func(evs []tracer.Event) bool {
		if _, ok := find(evs, pred); ok || events {
			return ok
		}
		c, err := ns.Counters()
		if err != nil {
			t.Fatalf("reading kernel counters: %v", err)
		}
		return c["Tcp.RetransSegs"]+c["TcpExt.TCPRetransFail"] >= n
	}
}
