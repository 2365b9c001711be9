package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/tcpscope/tcpscope/tracer"
)

// traceFlags are the flags record, run and demo share.
type traceFlags struct {
	ports      []uint
	netns      []uint
	duration   time.Duration
	ringBuffer string
}

func (f *traceFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	// A word in backquotes is the value name --help shows (pflag).
	fl.UintSliceVar(&f.ports, "port", nil, fmt.Sprintf("only connections with this local or remote `PORT` (repeatable, at most %d; filtered in the kernel)", tracer.MaxFilter))
	fl.UintSliceVar(&f.netns, "netns", nil, fmt.Sprintf("only the network namespace with this `INODE`, as printed by: ls -L -i /proc/PID/ns/net (repeatable, at most %d)", tracer.MaxFilter))
	hideEmptyDefault(cmd, "port", "netns")
	fl.DurationVar(&f.duration, "duration", 0, "stop after this long (e.g. 30s, 5m); default: until Ctrl-C")
	fl.StringVar(&f.ringBuffer, "ring-buffer-size", "16MiB", "kernel ring buffer `SIZE`, a power of two up to 256MiB (e.g. 4MiB, 64MiB)")
}

// hideEmptyDefault keeps --help from printing "(default [])" after list
// flags that are empty by default (pflag hides it only for some list types).
func hideEmptyDefault(cmd *cobra.Command, names ...string) {
	for _, n := range names {
		cmd.Flags().Lookup(n).DefValue = ""
	}
}

func (f *traceFlags) config() (tracer.Config, error) {
	var cfg tracer.Config
	if len(f.ports) > tracer.MaxFilter {
		return cfg, usagef("--port given %d times: at most %d ports can be filtered", len(f.ports), tracer.MaxFilter)
	}
	for _, p := range f.ports {
		if p == 0 || p > 65535 {
			return cfg, usagef("--port %d: a port is 1-65535", p)
		}
		cfg.Ports = append(cfg.Ports, uint16(p))
	}
	if len(f.netns) > tracer.MaxFilter {
		return cfg, usagef("--netns given %d times: at most %d namespaces can be filtered", len(f.netns), tracer.MaxFilter)
	}
	for _, n := range f.netns {
		if n == 0 || n > 0xffffffff {
			return cfg, usagef("--netns %d: not a namespace inode", n)
		}
		cfg.NetNS = append(cfg.NetNS, uint32(n))
	}
	if f.duration < 0 {
		return cfg, usagef("--duration %s: must not be negative", f.duration)
	}
	size, err := parseSize(f.ringBuffer)
	if err != nil {
		return cfg, usagef("--ring-buffer-size %q: %v", f.ringBuffer, err)
	}
	if size < os.Getpagesize() || size&(size-1) != 0 {
		return cfg, usagef("--ring-buffer-size %q: must be a power of two of at least %d bytes", f.ringBuffer, os.Getpagesize())
	}
	if size > maxRingBuffer {
		return cfg, usagef("--ring-buffer-size %q: at most 256MiB, which holds 1.4 million events, over 10 s of the busiest load measured; the kernel keeps the whole buffer in memory", f.ringBuffer)
	}
	cfg.RingBufferBytes = size
	return cfg, nil
}

// maxRingBuffer caps --ring-buffer-size. The kernel's own bound is looser:
// ringbuf_map_alloc() (kernel/bpf/ringbuf.c) takes any page-aligned power of
// two in the 32-bit max_entries, so 2 GiB is accepted, and
// bpf_ringbuf_area_alloc() allocates every page at once, charged to the
// memory cgroup and never swapped. A buffer only absorbs bursts the reader
// catches up with: 256 MiB holds about 1.4 million of our 184-byte records
// (176 bytes of event plus the 8-byte record header), more than ten seconds
// of the 120,000 events/s of the busiest load measured (README,
// Performance), while the reader drains 3.7 million events/s. A reader that
// is behind for longer than that is behind for good; a bigger buffer only
// takes memory from the host under test.
const maxRingBuffer = 256 << 20

// parseSize reads "4096", "64KiB", "16MiB", "1GiB" (K/M/G and KB/MB/GB
// are taken as powers of 1024 too).
func parseSize(s string) (int, error) {
	t := strings.TrimSpace(s)
	mult := 1
	for _, u := range []struct {
		suffix string
		mult   int
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}} {
		if strings.HasSuffix(strings.ToUpper(t), strings.ToUpper(u.suffix)) {
			t, mult = strings.TrimSpace(t[:len(t)-len(u.suffix)]), u.mult
			break
		}
	}
	n, err := strconv.Atoi(t)
	if err != nil || n <= 0 {
		return 0, errors.New("not a size (e.g. 16MiB)")
	}
	if n > math.MaxInt/mult {
		return 0, errors.New("too large")
	}
	return n * mult, nil
}

type recordFlags struct {
	traceFlags
	output       string
	events       bool
	format       string
	formatSet    func() bool // --format was given
	synRecvLimit time.Duration
	statusEvery  time.Duration
	maxConns     int
}

func (f *recordFlags) registerRecord(cmd *cobra.Command) {
	f.register(cmd)
	fl := cmd.Flags()
	fl.StringVarP(&f.output, "output", "o", "", "write connections to `FILE`: FILE.jsonl (a line each, as they end), FILE.json (one document at the end) or - (JSONL on stdout)")
	fl.BoolVar(&f.events, "events", false, "print one line per kernel event as it happens, instead of flagged connections")
	fl.StringVar(&f.format, "format", "text", "`FORMAT` of the --events lines: text (aligned columns) or jsonl; only with --events")
	f.formatSet = func() bool { return fl.Changed("format") }
	fl.DurationVar(&f.synRecvLimit, "syn-recv-threshold", time.Second, "flag long_syn_recv when a server waited this long for the final ACK")
	fl.DurationVar(&f.statusEvery, "status-interval", 10*time.Second, "when stderr is not a terminal, print a plain status line this often")
	fl.IntVar(&f.maxConns, "max-connections", tracer.DefaultMaxConnections, "connections followed at once; past it the least recently active are written early, flagged incomplete")
}

func (f *recordFlags) options() (sessionOptions, error) {
	cfg, err := f.config()
	if err != nil {
		return sessionOptions{}, err
	}
	if f.format != "text" && f.format != "jsonl" {
		return sessionOptions{}, usagef("--format %q: use text or jsonl", f.format)
	}
	if !f.events && f.formatSet != nil && f.formatSet() {
		return sessionOptions{}, usagef("--format %s: only applies to --events (connection records are JSONL with -o FILE.jsonl or -o -)", f.format)
	}
	if f.synRecvLimit <= 0 {
		return sessionOptions{}, usagef("--syn-recv-threshold %s: must be positive", f.synRecvLimit)
	}
	if f.statusEvery <= 0 {
		return sessionOptions{}, usagef("--status-interval %s: must be positive", f.statusEvery)
	}
	if f.maxConns < 1000 {
		return sessionOptions{}, usagef("--max-connections %d: at least 1000", f.maxConns)
	}
	return sessionOptions{cfg: cfg, output: f.output, events: f.events, format: f.format,
		synRecvLimit: f.synRecvLimit, statusEvery: f.statusEvery, maxConns: f.maxConns}, nil
}

func newRecordCmd() *cobra.Command {
	var f recordFlags
	cmd := &cobra.Command{
		Use:   "record",
		Short: "Trace TCP connections until Ctrl-C or --duration",
		Long: `Trace every TCP connection on this host (all network namespaces) until Ctrl-C
or --duration. While recording, one line is printed for each connection that
ends flagged; at the end, a summary. -o keeps every connection's timeline.`,
		Example: `  sudo tcpscope record -o run.jsonl               # flagged connections live, summary at the end
  sudo tcpscope record --port 8080 --duration 60s -o run.json
  sudo tcpscope record --events                   # every kernel event, as it happens
  tcpscope report run.jsonl                       # the tables again, later, without root`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts, err := f.options()
			if err != nil {
				return err
			}
			// Catch Ctrl-C before saying "tracing": from then on an
			// interrupt must end the recording, not the process.
			ctx, cancel := stopContext(cmd.Context(), f.duration)
			defer cancel()
			s, err := openSession(opts, cmd.OutOrStdout(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			return s.run(ctx)
		},
	}
	f.registerRecord(cmd)
	return cmd
}

// stopContext ends on SIGINT, SIGTERM, SIGHUP or after d (when d > 0).
// SIGHUP is what a closed terminal or a lost ssh session sends: it ends the
// recording like SIGTERM, with the summary and a whole export, instead of
// killing tcpscope midway.
func stopContext(parent context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if parent == nil {
		parent = context.Background()
	}
	catchSIGPIPE()
	ctx, cancel := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	if d > 0 {
		tctx, tcancel := context.WithTimeout(ctx, d)
		return tctx, func() { tcancel(); cancel() }
	}
	return ctx, cancel
}

// catchSIGPIPE keeps a reader that goes away (record --events | head, a
// pager quit) from killing a recording: by default the Go runtime exits on
// SIGPIPE from a write to standard output, leaving a .json unwritten and a
// .jsonl without its summary. With SIGPIPE caught the write fails with
// EPIPE instead, and the recording ends through its error path, which
// completes the export. A caught signal (unlike an ignored one) is reset to
// the default for the command run starts.
func catchSIGPIPE() {
	sigpipeOnce.Do(func() { signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE) })
}

var sigpipeOnce sync.Once

// announce tells, on stderr, that every program is attached: from this line
// on nothing is missed. Missing optional tracepoints are named once.
func announce(stderr io.Writer, tr *tracer.Tracer) {
	for _, h := range tr.Features().Missing() {
		fmt.Fprintf(stderr, "tcpscope: warning: tracepoint %s is missing on this kernel: %s\n", h.Tracepoint, h.Degrades)
	}
	fmt.Fprintf(stderr, "tcpscope: tracing (%d tracepoints attached); Ctrl-C to stop\n", tr.Attached())
}
