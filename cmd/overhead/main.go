// Command overhead measures what tracing costs a short-connection load: a
// closed-loop client and server inside a private network namespace, run in
// legs that alternate untraced, traced by tcpscope, and (when installed)
// captured by tcpdump, and reports medians and their ratios.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/tcpscope/tcpscope/tracer/netns"
	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "exec-in-ns" {
		execInNS(os.Args[2], os.Args[3:])
	}
	// Run-time statistics of BPF programs while this process lives (the
	// kernel keeps them only as long as a descriptor asks for them).
	if stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME)); err == nil {
		defer stats.Close()
	}
	legs := flag.Int("legs", 5, "legs of each kind, alternated")
	legLen := flag.Duration("leg", 3*time.Second, "length of one leg")
	workers := flag.Int("workers", 4, "client workers")
	tcpscope := flag.String("tcpscope", "./tcpscope", "tcpscope binary")
	extra := flag.String("tcpscope-args", "", "extra arguments for tcpscope record")
	flag.Parse()
	if err := run(*legs, *legLen, *workers, *tcpscope, strings.Fields(*extra)); err != nil {
		fmt.Fprintln(os.Stderr, "overhead:", err)
		os.Exit(1)
	}
}

// execInNS enters the namespace at path and execs args there.
func execInNS(path string, args []string) {
	runtime.LockOSThread()
	fd, err := unix.Open(path, unix.O_RDONLY, 0)
	if err == nil {
		err = unix.Setns(fd, unix.CLONE_NEWNET)
	}
	if err == nil {
		var bin string
		if bin, err = exec.LookPath(args[0]); err == nil {
			err = unix.Exec(bin, args, os.Environ())
		}
	}
	fmt.Fprintln(os.Stderr, "exec-in-ns:", err)
	os.Exit(1)
}

type leg struct {
	bpfNs   float64 // BPF program run time per second of leg, ns
	kind    string
	rate    float64 // connections per second
	events  float64 // events per second (traced legs)
	lost    uint64
	cpu     time.Duration
	rssKiB  int64
	seconds float64
}

func run(legs int, legLen time.Duration, workers int, tcpscope string, extra []string) error {
	ns, err := netns.Create()
	if err != nil {
		return fmt.Errorf("creating namespace: %w", err)
	}
	defer ns.Close()
	port, stop, err := startServer(ns)
	if err != nil {
		return err
	}
	defer stop()
	kinds := []string{"untraced", "tcpscope"}
	if _, err := exec.LookPath("tcpdump"); err == nil {
		kinds = append(kinds, "tcpdump")
	}
	var results []leg
	warm := load(ns, port, workers, time.Second) // warm up
	_ = warm
	for i := 0; i < legs; i++ {
		for _, k := range kinds {
			l, err := runLeg(k, ns, port, workers, legLen, tcpscope, extra)
			if err != nil {
				return fmt.Errorf("%s leg: %w", k, err)
			}
			fmt.Fprintf(os.Stderr, "leg %d %-9s %8.0f conn/s", i+1, k, l.rate)
			if k == "tcpscope" {
				fmt.Fprintf(os.Stderr, "  %8.0f events/s  lost %d  cpu %.2fs  rss %d MiB", l.events, l.lost, l.cpu.Seconds(), l.rssKiB/1024)
			}
			fmt.Fprintln(os.Stderr)
			results = append(results, l)
		}
	}
	report(os.Stdout, results, workers, legLen, legs)
	return nil
}

func runLeg(kind string, ns *netns.NS, port, workers int, d time.Duration, tcpscope string, extra []string) (leg, error) {
	l := leg{kind: kind, seconds: d.Seconds()}
	var cmd *exec.Cmd
	var stderr *bufio.Scanner
	var rest strings.Builder
	out := filepath.Join(os.TempDir(), "tcpscope-overhead.jsonl")
	switch kind {
	case "tcpscope":
		args := append([]string{"record", "--netns", strconv.FormatUint(uint64(ns.Inode), 10), "-o", out}, extra...)
		cmd = exec.Command(tcpscope, args...)
	case "tcpdump":
		self, _ := os.Executable()
		cmd = exec.Command(self, "exec-in-ns", fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), ns.Fd()),
			"tcpdump", "-i", "lo", "-s", "96", "-w", "/dev/null", "-U", "--immediate-mode")
	}
	if cmd != nil {
		pipe, err := cmd.StderrPipe()
		if err != nil {
			return l, err
		}
		if err := cmd.Start(); err != nil {
			return l, err
		}
		stderr = bufio.NewScanner(pipe)
		ready := "tracing ("
		if kind == "tcpdump" {
			ready = "listening on"
		}
		for stderr.Scan() && !strings.Contains(stderr.Text(), ready) {
			rest.WriteString(stderr.Text() + "\n")
		}
	}
	before := bpfStats()
	n := load(ns, port, workers, d)
	l.rate = float64(n) / d.Seconds()
	if cmd == nil {
		return l, nil
	}
	after := bpfStats()
	l.bpfNs = float64(after.Runtime-before.Runtime) / d.Seconds()
	cmd.Process.Signal(os.Interrupt)
	for stderr.Scan() {
		rest.WriteString(stderr.Text() + "\n")
	}
	if err := cmd.Wait(); err != nil && kind == "tcpscope" {
		return l, fmt.Errorf("%v: %s", err, rest.String())
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		l.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		l.rssKiB = ru.Maxrss
	}
	if kind == "tcpscope" {
		if m := regexp.MustCompile(`events: (\d+) .*; lost (\d+)`).FindStringSubmatch(rest.String()); m != nil {
			ev, _ := strconv.ParseFloat(m[1], 64)
			l.events = ev / d.Seconds()
			l.lost, _ = strconv.ParseUint(m[2], 10, 64)
		} else {
			return l, errors.New("no event tally from tcpscope: " + rest.String())
		}
		os.Remove(out)
	}
	return l, nil
}

// startServer serves on 127.0.0.1 in ns: read 16 bytes, answer 64, close.
func startServer(ns *netns.NS) (int, func(), error) {
	var lfd int
	err := ns.Do(func() error {
		var err error
		if lfd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return err
		}
		if err := unix.Bind(lfd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			return err
		}
		return unix.Listen(lfd, 4096)
	})
	if err != nil {
		return 0, nil, err
	}
	sa, _ := unix.Getsockname(lfd)
	port := sa.(*unix.SockaddrInet4).Port
	var stopping atomic.Bool
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			req := make([]byte, 16)
			resp := make([]byte, 64)
			for !stopping.Load() {
				fd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
				if err != nil {
					if errors.Is(err, unix.EINTR) {
						continue
					}
					return
				}
				io.ReadFull(fdReader(fd), req)
				unix.Write(fd, resp)
				unix.Close(fd)
			}
		}()
	}
	return port, func() {
		stopping.Store(true)
		unix.Shutdown(lfd, unix.SHUT_RDWR)
		unix.Close(lfd)
		wg.Wait()
	}, nil
}

type fdReader int

func (f fdReader) Read(p []byte) (int, error) {
	n, err := unix.Read(int(f), p)
	if n == 0 && err == nil {
		return 0, io.EOF
	}
	return n, err
}

// load runs the closed loop for d: connect, send 16 B, read the answer
// until the server closes, close. Each worker owns an OS thread inside ns.
func load(ns *netns.NS, port, workers int, d time.Duration) uint64 {
	var total atomic.Uint64
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ns.Do(func() error {
				to := &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}
				req := make([]byte, 16)
				buf := make([]byte, 128)
				var n uint64
				for i := 0; ; i++ {
					if i&15 == 0 && time.Now().After(deadline) {
						break
					}
					fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
					if err != nil {
						continue
					}
					if unix.Connect(fd, to) == nil {
						unix.Write(fd, req)
						for {
							m, err := unix.Read(fd, buf)
							if m <= 0 || err != nil {
								break
							}
						}
						n++
					}
					unix.Close(fd)
				}
				total.Add(n)
				return nil
			})
		}()
	}
	wg.Wait()
	return total.Load()
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func report(w io.Writer, results []leg, workers int, legLen time.Duration, legs int) {
	by := map[string][]float64{}
	var ev, cpu, bpfNs, perEvent, userPerConn, bpfPerConn []float64
	var lost uint64
	var rss int64
	for _, l := range results {
		by[l.kind] = append(by[l.kind], l.rate)
		if l.kind == "tcpscope" {
			ev = append(ev, l.events)
			bpfNs = append(bpfNs, l.bpfNs)
			// Per event, not per program run: each tracepoint runs a main
			// program and its _nested twin, which returns at once unless
			// the main one is busy on that CPU.
			if l.events > 0 {
				perEvent = append(perEvent, l.bpfNs/l.events)
			}
			cpu = append(cpu, l.cpu.Seconds()/l.seconds)
			if l.rate > 0 {
				// A connection is both its ends: client and server socket.
				userPerConn = append(userPerConn, 1e6*l.cpu.Seconds()/(l.rate*l.seconds))
				bpfPerConn = append(bpfPerConn, l.bpfNs/l.rate/1e3)
			}
			lost += l.lost
			rss = max(rss, l.rssKiB)
		}
	}
	u := median(by["untraced"])
	spread := 0.0
	if xs := by["untraced"]; len(xs) > 1 {
		s := append([]float64(nil), xs...)
		sort.Float64s(s)
		spread = (s[len(s)-1] - s[0]) / u
	}
	var uts unix.Utsname
	unix.Uname(&uts)
	fmt.Fprintf(w, "machine: %d CPUs, Linux %s; %d workers, %d legs of %s per kind, alternated\n",
		runtime.NumCPU(), unix.ByteSliceToString(uts.Release[:]), workers, legs, legLen)
	fmt.Fprintf(w, "%-10s %12s %8s\n", "leg", "conn/s", "ratio")
	fmt.Fprintf(w, "%-10s %12.0f %8.3f   (A/A spread of untraced legs: %.1f%%)\n", "untraced", u, 1.0, 100*spread)
	for _, k := range []string{"tcpscope", "tcpdump"} {
		if xs, ok := by[k]; ok {
			fmt.Fprintf(w, "%-10s %12.0f %8.3f\n", k, median(xs), median(xs)/u)
		}
	}
	fmt.Fprintf(w, "tcpscope: %.0f events/s (median), lost %d, user-space CPU %.0f%% of one core, peak RSS %d MiB\n",
		median(ev), lost, 100*median(cpu), rss/1024)
	fmt.Fprintf(w, "tcpscope BPF programs: %.0f ns per event, %.1f%% of one core\n", median(perEvent), median(bpfNs)/1e7)
	fmt.Fprintf(w, "tcpscope CPU per traced connection (both ends): user space %.1f us + BPF %.1f us = %.1f us\n",
		median(userPerConn), median(bpfPerConn), median(userPerConn)+median(bpfPerConn))
}

// bpfStats sums the run-time statistics of tcpscope's programs.
func bpfStats() ebpf.ProgramStats {
	var sum ebpf.ProgramStats
	for id := ebpf.ProgramID(0); ; {
		next, err := ebpf.ProgramGetNextID(id)
		if err != nil {
			return sum
		}
		id = next
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue
		}
		info, err := p.Info()
		if err == nil && strings.HasPrefix(info.Name, "handle_") {
			if st, err := p.Stats(); err == nil {
				sum.Runtime += st.Runtime
				sum.RunCount += st.RunCount
				if os.Getenv("OVERHEAD_DEBUG") != "" && st.RunCount > 0 {
					fmt.Fprintf(os.Stderr, "  %s: %d runs, %d ns/run\n", info.Name, st.RunCount, st.Runtime.Nanoseconds()/int64(st.RunCount))
				}
			}
		}
		p.Close()
	}
}
