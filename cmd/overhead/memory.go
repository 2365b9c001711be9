package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// maxMemoryConns bounds -memory: the loopback's ephemeral ports
// (32768-60999) must suffice, and the descriptors of this process.
const maxMemoryConns = 25000

// memResult is tcpscope's memory with n live connections in the namespace.
type memResult struct {
	label     string
	conns     int
	userBytes int64 // tracer RSS growth while the connections opened
	omem      int64 // sum of sk_omem_alloc of the namespace's established sockets
	baseOmem  int64 // the same, untraced
	sockets   int
	charged   int // sockets whose sk_omem_alloc is not 0 (they hold storage)
}

// memory holds n idle connections untraced, then under each tcpscope
// mode, and compares. Socket-local storage is charged to the socket's
// sk_omem_alloc (the "o" of ss -m), which nothing else uses on an idle TCP
// socket: its growth is the kernel memory tracing costs per connection.
func (b *bench) memory(ctx context.Context, n int) ([]memResult, error) {
	if err := checkFileLimit(n + 512); err != nil {
		return nil, err
	}
	base, err := b.omemHolding(ctx, n)
	if err != nil {
		return nil, fmt.Errorf("measuring untraced socket memory: %w", err)
	}
	var out []memResult
	for _, t := range allTracers(b.o) {
		if t.key != "tcpscope" && t.key != "tcpscope-events" {
			continue
		}
		r, err := b.memoryUnder(ctx, t, n)
		if err != nil {
			return nil, fmt.Errorf("measuring memory under %s: %w", t.label, err)
		}
		r.baseOmem = base.sum
		fmt.Fprintf(os.Stderr, "memory %-20s %d connections: RSS +%d B, omem %d B on %d of %d sockets (untraced %d B)\n",
			t.label, n, r.userBytes, r.omem, r.charged, r.sockets, base.sum)
		out = append(out, r)
	}
	return out, nil
}

func (b *bench) omemHolding(ctx context.Context, n int) (omem, error) {
	h, err := b.hold(ctx, n)
	if err != nil {
		return omem{}, err
	}
	defer h.release()
	return b.socketMemory()
}

func (b *bench) memoryUnder(ctx context.Context, t *tracer, n int) (memResult, error) {
	r := memResult{label: t.label, conns: n}
	p, err := b.start(t)
	if err != nil {
		return r, err
	}
	defer p.cleanup()
	if err := p.waitReady(ctx, t); err != nil {
		p.kill()
		return r, err
	}
	pid := p.cmd.Process.Pid
	rss0, err := rssBytes(pid)
	if err != nil {
		p.kill()
		return r, err
	}
	h, err := b.hold(ctx, n)
	if err != nil {
		p.kill()
		return r, err
	}
	defer h.release() // after the tracer stopped: the closes are not measured
	rss1, err := settledRSS(ctx, pid)
	var m omem
	if err == nil {
		m, err = b.socketMemory()
	}
	if err != nil {
		p.kill()
		return r, err
	}
	r.omem, r.sockets, r.charged = m.sum, m.sockets, m.charged
	r.userBytes = rss1 - rss0
	return r, p.stop()
}

// settledRSS waits until the tracer has taken in the new connections: its
// RSS stops growing for half a second (10 s at most). Another process's
// progress shows nowhere else, hence the polling.
func settledRSS(ctx context.Context, pid int) (int64, error) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	last, steady := int64(-1), 0
	for i := 0; i < 100 && steady < 5; i++ {
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-tick.C:
		}
		rss, err := rssBytes(pid)
		if err != nil {
			return 0, err
		}
		if rss <= last {
			steady++
		} else {
			last, steady = rss, 0
		}
	}
	return last, nil
}

var skmemRE = regexp.MustCompile(`skmem:\(r\d+,rb\d+,t\d+,tb\d+,f\d+,w\d+,o(\d+),`)

// omem is sk_omem_alloc over the namespace's established TCP sockets.
type omem struct {
	sum              int64
	sockets, charged int
}

// socketMemory reads sk_omem_alloc of the namespace's established TCP
// sockets, as ss -tm shows it.
func (b *bench) socketMemory() (omem, error) {
	var m omem
	ss, err := findBinary("ss")
	if err != nil {
		return m, fmt.Errorf("%w (apt-get install iproute2)", err)
	}
	self, err := os.Executable()
	if err != nil {
		return m, fmt.Errorf("finding this program: %w", err)
	}
	nsPath := fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), b.ns.Fd())
	out, err := exec.Command(self, "exec-in-ns", nsPath, ss, "-tmnH", "state", "established").Output()
	if err != nil {
		return m, fmt.Errorf("running ss in the namespace: %w", err)
	}
	for _, match := range skmemRE.FindAllSubmatch(out, -1) {
		v, _ := strconv.ParseInt(string(match[1]), 10, 64) // \d+
		m.sum += v
		m.sockets++
		if v > 0 {
			m.charged++
		}
	}
	return m, nil
}

// held are n idle connections: the client ends are descriptors of this
// process; the server ends wait in their listener's accept queue, full
// established sockets that need no descriptor (the descriptor limit, which
// this process may not raise, would otherwise halve n).
type held struct {
	lfd int
	fds []int
}

// hold connects n times to a listener of its own whose queue takes them all.
func (b *bench) hold(ctx context.Context, n int) (*held, error) {
	// net.core.somaxconn is per namespace: this one is private.
	if err := b.ns.Sysctl("net.core.somaxconn", strconv.Itoa(n)); err != nil {
		return nil, fmt.Errorf("sizing the accept queue: %w", err)
	}
	lfd, port, err := listen(b.ns, n)
	if err != nil {
		return nil, err
	}
	h := &held{lfd: lfd}
	if err := b.ns.Do(func() error { return h.connectN(ctx, port, n) }); err != nil {
		h.release()
		return nil, fmt.Errorf("opening %d connections: %w", n, err)
	}
	return h, nil
}

func (h *held) connectN(ctx context.Context, port, n int) error {
	to := &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}
	for i := 0; i < n; i++ {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("making socket %d: %w", i, err)
		}
		h.fds = append(h.fds, fd)
		if err := unix.Connect(fd, to); err != nil {
			return fmt.Errorf("connecting %d: %w", i, err)
		}
	}
	return nil
}

// release resets every connection (linger 0: no TIME_WAIT left behind for
// the next measurement); closing the listener resets the queued ends.
func (h *held) release() {
	for _, fd := range h.fds {
		unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
		unix.Close(fd)
	}
	unix.Close(h.lfd)
}

// checkFileLimit tells whether this process may hold want descriptors (Go
// raised the soft limit to the hard one at start).
func checkFileLimit(want int) error {
	var l unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &l); err != nil {
		return fmt.Errorf("reading the descriptor limit: %w", err)
	}
	if l.Cur < uint64(want) {
		return fmt.Errorf("checking the descriptor limit: -memory needs %d descriptors, the limit is %d (ulimit -n)", want, l.Cur)
	}
	return nil
}
