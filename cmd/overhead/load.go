package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tcpscope/tcpscope/tracer/netns"
	"golang.org/x/sys/unix"
)

// bench is the load's namespace and its server.
type bench struct {
	o        options
	ns       *netns.NS
	port     int
	stopSrv  func()
	failures atomic.Uint64 // connects that failed, over all legs
}

func newBench(o options) (*bench, error) {
	ns, err := netns.Create()
	if err != nil {
		return nil, fmt.Errorf("creating namespace: %w", err)
	}
	port, stop, err := startServer(ns)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("starting server: %w", err)
	}
	return &bench{o: o, ns: ns, port: port, stopSrv: stop}, nil
}

func (b *bench) close() {
	b.stopSrv()
	b.ns.Close()
}

// listen opens a listening socket on 127.0.0.1 (any port) inside ns.
func listen(ns *netns.NS, backlog int) (int, int, error) {
	var lfd int
	err := ns.Do(func() error {
		var err error
		if lfd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return err
		}
		if err := unix.Bind(lfd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			unix.Close(lfd)
			return err
		}
		return unix.Listen(lfd, backlog)
	})
	if err != nil {
		return -1, 0, fmt.Errorf("listening: %w", err)
	}
	sa, err := unix.Getsockname(lfd)
	if err != nil {
		unix.Close(lfd)
		return -1, 0, fmt.Errorf("reading listener address: %w", err)
	}
	return lfd, sa.(*unix.SockaddrInet4).Port, nil
}

// startServer serves on 127.0.0.1 in ns: read 16 bytes, answer 64, close.
func startServer(ns *netns.NS) (int, func(), error) {
	lfd, port, err := listen(ns, 4096)
	if err != nil {
		return 0, nil, err
	}
	var stopping atomic.Bool
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			serve(lfd, &stopping)
		}()
	}
	return port, func() {
		stopping.Store(true)
		unix.Shutdown(lfd, unix.SHUT_RDWR)
		unix.Close(lfd)
		wg.Wait()
	}, nil
}

func serve(lfd int, stopping *atomic.Bool) {
	req := make([]byte, 16)
	resp := make([]byte, 64)
	for !stopping.Load() {
		fd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
		if err != nil {
			if errors.Is(err, unix.EINTR) || errors.Is(err, unix.ECONNABORTED) {
				continue
			}
			return // the listener was shut down
		}
		// A client that vanished mid-request is the client's count to
		// keep (it counts only complete exchanges); the server just closes.
		if _, err := io.ReadFull(fdReader(fd), req); err == nil {
			unix.Write(fd, resp)
		}
		unix.Close(fd)
	}
}

type fdReader int

func (f fdReader) Read(p []byte) (int, error) {
	n, err := unix.Read(int(f), p)
	if n == 0 && err == nil {
		return 0, io.EOF
	}
	return n, err
}

// load runs the closed loop for d (or until ctx ends): connect, send 16 B,
// read the answer until the server closes, close. Each worker owns an OS
// thread inside the namespace. It returns the complete exchanges.
func (b *bench) load(ctx context.Context, d time.Duration) uint64 {
	var total atomic.Uint64
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	for w := 0; w < b.o.workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.ns.Do(func() error {
				total.Add(b.worker(ctx, deadline))
				return nil
			})
		}()
	}
	wg.Wait()
	return total.Load()
}

func (b *bench) worker(ctx context.Context, deadline time.Time) uint64 {
	to := &unix.SockaddrInet4{Port: b.port, Addr: [4]byte{127, 0, 0, 1}}
	req := make([]byte, 16)
	buf := make([]byte, 128)
	var n uint64
	for i := 0; ; i++ {
		if i&15 == 0 && (time.Now().After(deadline) || ctx.Err() != nil) {
			return n
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			b.failures.Add(1)
			continue
		}
		if exchange(fd, to, req, buf) {
			n++
		} else {
			b.failures.Add(1)
		}
		unix.Close(fd)
	}
}

// exchange is one request and its whole answer on fd.
func exchange(fd int, to unix.Sockaddr, req, buf []byte) bool {
	if unix.Connect(fd, to) != nil {
		return false
	}
	if _, err := unix.Write(fd, req); err != nil {
		return false
	}
	got := 0
	for {
		m, err := unix.Read(fd, buf)
		if err != nil {
			return false
		}
		if m == 0 {
			return got == 64
		}
		got += m
	}
}
