// Package demoload is the load `tcpscope demo` traces: inside one private
// network namespace it runs small servers and a bounded load that hits the
// failures load-testers chase, each injected on purpose. It is test load,
// not part of the tracer: only the demo command (and its tests) use it.
package demoload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tcpscope/tcpscope/tracer/netns"
	"golang.org/x/sys/unix"
)

// Ports of the demo's servers inside its namespace (private, so fixed).
const (
	PortWeb    = 8080 // healthy HTTP-like server; aborts some requests on purpose
	PortSlow   = 8081 // its clients' final ACKs are dropped for a while
	PortTiny   = 8082 // backlog 2, accepts slowly, hit by a burst
	PortChurn  = 8083 // client-closes-first churn against few local ports
	PortClosed = 8099 // nothing listens
)

// Local port range and TIME_WAIT reuse set in the namespace, so the churn
// meets port exhaustion in seconds.
const (
	PortLo = 40000
	PortHi = 42047
)

// Injected counts what the load did, to set against what tcpscope found.
type Injected struct {
	WebRequests    int64
	Lingered       int64 // web requests aborted with SO_LINGER 0
	Unread         int64 // web requests closed unread
	SlowClients    int64
	AckDropWindow  time.Duration
	TinyBurst      int64
	TinyBacklog    int
	Refused        int64
	Churn          int64
	ChurnFailures  int64 // connects that failed with EADDRNOTAVAIL
	ChurnPorts     int
	Duration       time.Duration
	ClientAddr     netip.Addr
	ServerAddr     netip.Addr
	SyncookiesMode string
}

// Setup prepares the namespace: sysctls that only exist inside it.
func Setup(ns *netns.NS) error {
	for k, v := range map[string]string{
		"net.ipv4.ip_local_port_range": fmt.Sprintf("%d %d", PortLo, PortHi),
		"net.ipv4.tcp_tw_reuse":        "0",
		"net.ipv4.tcp_syncookies":      "1",
	} {
		if err := ns.Sysctl(k, v); err != nil {
			return fmt.Errorf("setting %s in the demo namespace: %w", k, err)
		}
	}
	return nil
}

// Run drives the load for d (at least 8 s) and returns what it injected.
// Every loop is bounded by d and stops by itself.
func Run(ctx context.Context, ns *netns.NS, d time.Duration) (Injected, error) {
	if d < 8*time.Second {
		d = 8 * time.Second
	}
	in := Injected{AckDropWindow: d / 6, TinyBacklog: 2, ChurnPorts: PortHi - PortLo + 1, Duration: d,
		ClientAddr: netip.MustParseAddr("127.0.0.1"), ServerAddr: netip.MustParseAddr("127.0.0.1"), SyncookiesMode: "1"}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	start := time.Now()
	at := func(frac float64) time.Time { return start.Add(time.Duration(frac * float64(d))) }

	srv, err := startServers(ns, in.TinyBacklog, start.Add(d+time.Second))
	if err != nil {
		return in, err
	}
	defer srv.close()

	var wg sync.WaitGroup
	goRun := func(f func()) { wg.Add(1); go func() { defer wg.Done(); f() }() }
	goRun(func() { webLoad(ctx, ns, &in) })
	goRun(func() { refusedLoad(ctx, ns, &in) })
	goRun(func() { slowACKs(ctx, ns, at(0.15), &in) })
	goRun(func() { tinyBurst(ctx, ns, at(0.45), &in) })
	goRun(func() { churn(ctx, ns, at(0.3), at(0.95), &in) })
	wg.Wait()
	srv.drain()
	srv.wait()
	in.Lingered, in.Unread = srv.lingered.Load(), srv.unread.Load()
	return in, nil
}

type servers struct {
	lns      []net.Listener
	lingered atomic.Int64
	unread   atomic.Int64
	until    time.Time // no connection is served past this
	draining atomic.Bool
	wg       sync.WaitGroup
	once     sync.Once
	conns    sync.WaitGroup
}

func (s *servers) close() {
	s.once.Do(func() {
		for _, ln := range s.lns {
			ln.Close()
		}
	})
}

// drain accepts at once what the listeners' accept queues still hold,
// reads each to its end and closes it, then closes the listeners. A
// listener closed with connections in its queue resets them
// (inet_csk_listen_stop() -> tcp_disconnect(), reason TCP_STATE): the demo
// injects no such fault, so it must not produce one.
func (s *servers) drain() {
	s.draining.Store(true)
	for _, ln := range s.lns {
		ln.(*net.TCPListener).SetDeadline(time.Now().Add(300 * time.Millisecond))
	}
	s.wg.Wait()
	s.close()
}

func (s *servers) wait() { s.wg.Wait(); s.conns.Wait() }

func startServers(ns *netns.NS, tinyBacklog int, until time.Time) (*servers, error) {
	s := &servers{until: until}
	var web, slow, churnLn, tiny net.Listener
	err := func() (err error) {
		if web, err = ns.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", PortWeb)); err != nil {
			return err
		}
		if slow, err = ns.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", PortSlow)); err != nil {
			return err
		}
		if churnLn, err = ns.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", PortChurn)); err != nil {
			return err
		}
		tiny, err = ns.ListenBacklog(PortTiny, tinyBacklog)
		return err
	}()
	if err != nil {
		for _, ln := range []net.Listener{web, slow, churnLn, tiny} {
			if ln != nil {
				ln.Close()
			}
		}
		return nil, fmt.Errorf("starting demo servers: %w", err)
	}
	s.lns = []net.Listener{web, slow, churnLn, tiny}
	var n atomic.Int64
	s.serve(web, func(c *net.TCPConn) {
		switch k := n.Add(1); {
		case k%20 == 0: // abort: SO_LINGER 0 sends a reset (reason TCP_STATE)
			readRequest(c)
			c.SetLinger(0)
			s.lingered.Add(1)
		case k%25 == 0: // close with the request unread: reset, TCP_ABORT_ON_CLOSE
			if waitUnread(c) {
				s.unread.Add(1)
			}
		default:
			readRequest(c)
			c.Write([]byte(response))
			io.Copy(io.Discard, c) // the client closes first
		}
	}, 0)
	s.serve(slow, answer, 0)
	s.serve(churnLn, func(c *net.TCPConn) { io.Copy(io.Discard, c) }, 0)
	s.serve(tiny, answer, 150*time.Millisecond) // an application that accepts slowly
	return s, nil
}

func answer(c *net.TCPConn) {
	readRequest(c)
	c.Write([]byte(response))
	io.Copy(io.Discard, c)
}

func (s *servers) serve(ln net.Listener, handle func(*net.TCPConn), acceptEvery time.Duration) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns.Add(1)
			draining := s.draining.Load()
			go func() {
				defer s.conns.Done()
				defer c.Close()
				// Each connection gets its time even when accepted late
				// (a tiny-burst client still waiting at the load's end):
				// a handler past its deadline would close with the
				// request unread, a reset (TCP_ABORT_ON_CLOSE).
				c.SetDeadline(later(s.until, time.Now().Add(2*time.Second)))
				if draining {
					// The client has given up: read to its FIN so that
					// the close sends a FIN, not a reset.
					io.Copy(io.Discard, c)
					return
				}
				handle(c.(*net.TCPConn))
			}()
			if acceptEvery > 0 && !s.draining.Load() {
				time.Sleep(acceptEvery)
			}
		}
	}()
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func readRequest(c *net.TCPConn) {
	buf := make([]byte, 512)
	c.Read(buf)
}

// waitUnread reports whether the request came to sit unread in the
// receive queue (within a second; at the very end of the demo the client
// may have given up instead).
func waitUnread(c *net.TCPConn) bool {
	raw, err := c.SyscallConn()
	if err != nil {
		return false
	}
	for i := 0; i < 1000; i++ {
		var n int
		raw.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) })
		if n > 0 {
			return true
		}
		time.Sleep(time.Millisecond)
	}
	return false
}

func dial(ns *netns.NS, port int, timeout time.Duration) (net.Conn, error) {
	return ns.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", port), timeout)
}

const response = "HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello"

// request sends a request, reads the whole answer (or the server's reset
// or close) until deadline, and closes first.
func request(c net.Conn, deadline time.Time) error {
	defer c.Close()
	c.SetDeadline(deadline)
	if _, err := c.Write([]byte("GET / HTTP/1.0\r\n\r\n")); err != nil {
		return err
	}
	_, err := io.ReadFull(c, make([]byte, len(response)))
	return err
}

// requestDeadline is 8 s from now, or the load's end if sooner.
func requestDeadline(ctx context.Context) time.Time {
	deadline := time.Now().Add(8 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	return deadline
}

func webLoad(ctx context.Context, ns *netns.NS, in *Injected) {
	var wg sync.WaitGroup
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			every(ctx, 40*time.Millisecond, func() { // about 75 requests/s in all
				c, err := dial(ns, PortWeb, 2*time.Second)
				if err != nil {
					return
				}
				atomic.AddInt64(&in.WebRequests, 1)
				// Not cut short when the load stops: a client that closed
				// before a late answer came would send a reset (reason
				// TCP_ABORT_ON_DATA), a fault the demo does not inject.
				request(c, time.Now().Add(2*time.Second))
			})
		}()
	}
	wg.Wait()
}

func refusedLoad(ctx context.Context, ns *netns.NS, in *Injected) {
	every(ctx, time.Second, func() {
		if c, err := dial(ns, PortClosed, time.Second); err == nil {
			c.Close()
		} else {
			atomic.AddInt64(&in.Refused, 1)
		}
	})
}

// every runs fn every d until ctx ends.
func every(ctx context.Context, d time.Duration, fn func()) {
	tick := time.NewTicker(d)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		fn()
	}
}

// slowACKs drops every client segment but SYNs toward the slow server for
// a window: its clients' final ACKs are lost, the server retransmits
// SYN-ACKs and the handshakes stay long in SYN_RECV.
func slowACKs(ctx context.Context, ns *netns.NS, from time.Time, in *Injected) {
	if !sleepUntil(ctx, from) {
		return
	}
	remove, err := ns.AddDrop(netns.Drop{DstPort: PortSlow, FlagMask: netns.FlagSYN | netns.FlagACK, Flags: netns.FlagACK})
	if err != nil {
		return
	}
	defer remove()
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		c, err := dial(ns, PortSlow, 2*time.Second)
		if err != nil {
			continue
		}
		atomic.AddInt64(&in.SlowClients, 1)
		wg.Add(1)
		go func() { defer wg.Done(); request(c, requestDeadline(ctx)) }()
	}
	sleepUntil(ctx, from.Add(in.AckDropWindow))
	remove()
	wg.Wait()
}

// tinyBurst fires connects at once at a listener with backlog 2 whose
// application accepts one connection every 150 ms.
func tinyBurst(ctx context.Context, ns *netns.NS, at time.Time, in *Injected) {
	if !sleepUntil(ctx, at) {
		return
	}
	var wg sync.WaitGroup
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := dial(ns, PortTiny, time.Until(ctxDeadline(ctx)))
			if err != nil {
				return
			}
			// Not cut short when the load stops, as in webLoad: a client
			// that gave up while waiting in the slow accept queue would
			// get its late answer after its close and reset it
			// (TCP_ABORT_ON_DATA), a fault the demo does not inject.
			request(c, time.Now().Add(8*time.Second))
		}()
		atomic.AddInt64(&in.TinyBurst, 1)
	}
	wg.Wait()
}

// churn opens and closes connections as fast as it can, client first, so
// the client side piles up TIME_WAIT toward one destination until connect()
// finds no local port.
func churn(ctx context.Context, ns *netns.NS, from, until time.Time, in *Injected) {
	if !sleepUntil(ctx, from) {
		return
	}
	to := &unix.SockaddrInet4{Port: PortChurn, Addr: [4]byte{127, 0, 0, 1}}
	tick := time.NewTicker(time.Millisecond) // at most 1000 connects/s
	defer tick.Stop()
	for time.Now().Before(until) && in.ChurnFailures < 20 {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		err := ns.Do(func() error {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			return unix.Connect(fd, to)
		})
		switch {
		case err == nil:
			in.Churn++
		case errors.Is(err, syscall.EADDRNOTAVAIL):
			in.ChurnFailures++
		}
	}
}

func sleepUntil(ctx context.Context, t time.Time) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(time.Until(t)):
		return true
	}
}

func ctxDeadline(ctx context.Context) time.Time {
	if d, ok := ctx.Deadline(); ok {
		return d
	}
	return time.Now().Add(time.Minute)
}
