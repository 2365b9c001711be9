// Command overhead measures what tracing costs a short-connection load: a
// closed-loop client and server inside a private network namespace, run in
// legs that alternate untraced and each tracer (tcpscope aggregated and
// --events, tcpdump, libbpf-tools tcplife and tcpstates), and reports per
// tracer the CPU it costs per connection (its processes plus its BPF
// programs), the throughput it leaves, what it writes and what it loses.
// With -memory N it also measures the memory tcpscope needs per live
// connection, in user space and in the kernel.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

type options struct {
	legs       int
	legLen     time.Duration
	workers    int
	tcpscope   string
	extra      []string
	only       map[string]bool
	requireAll bool
	memory     int
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "exec-in-ns" {
		execInNS(os.Args[2], os.Args[3:])
	}
	var o options
	flag.IntVar(&o.legs, "legs", 3, "legs of each kind, alternated (at least 3)")
	flag.DurationVar(&o.legLen, "leg", 3*time.Second, "length of one leg's load")
	flag.IntVar(&o.workers, "workers", 4, "client workers")
	flag.StringVar(&o.tcpscope, "tcpscope", "./tcpscope", "tcpscope binary")
	extra := flag.String("tcpscope-args", "", "extra arguments for every tcpscope record")
	only := flag.String("tracers", "", "comma-separated tracers to run (default all): "+strings.Join(tracerNames(), ","))
	flag.BoolVar(&o.requireAll, "require-all", false, "fail instead of skipping a tracer that is not installed")
	flag.IntVar(&o.memory, "memory", 0, fmt.Sprintf("also hold N live connections under tcpscope and report bytes per connection (0: skip, at most %d)", maxMemoryConns))
	flag.Parse()
	o.extra = strings.Fields(*extra)
	if *only != "" {
		o.only = map[string]bool{}
		for _, n := range strings.Split(*only, ",") {
			o.only[strings.TrimSpace(n)] = true
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "overhead:", err)
		os.Exit(1)
	}
}

// execInNS enters the namespace at path and execs args there: tcpdump and
// ss see only the load's namespace this way.
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

func run(ctx context.Context, o options) error {
	if o.legs < 3 {
		return errors.New("checking flags: -legs must be at least 3 (medians and spread)")
	}
	if o.memory < 0 || o.memory > maxMemoryConns {
		return fmt.Errorf("checking flags: -memory must be 0..%d", maxMemoryConns)
	}
	closeStats, err := enableBPFStats()
	if err != nil {
		return err
	}
	defer closeStats()
	tracers, skipped, err := selectTracers(o)
	if err != nil {
		return err
	}
	unmount, err := tracefsFor(tracers)
	if err != nil {
		return err
	}
	defer unmount()
	b, err := newBench(o)
	if err != nil {
		return err
	}
	defer b.close()
	var mem []memResult
	if o.memory > 0 { // first: it is short, and fails early if it must
		if mem, err = b.memory(ctx, o.memory); err != nil {
			return err
		}
	}
	res, err := b.legs(ctx, tracers)
	if err != nil {
		return err
	}
	report(os.Stdout, o, res, skipped, mem, b.failures.Load())
	return nil
}
