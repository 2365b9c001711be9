package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/tcpscope/tcpscope/output/html"
	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/capture"
)

// traceFlags are the flags record, run and demo share.
type traceFlags struct {
	ports      []uint16
	netns      []uint32
	pids       []uint32
	comms      []string
	cgroups    []tracer.CgroupFilter
	duration   time.Duration
	ringBuffer int
}

func (f *traceFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	// A word in backquotes is the value name --help shows (pflag).
	fl.Var(portsValue(&f.ports, tracer.MaxFilter), "port", fmt.Sprintf("only connections with this local or remote `PORT` (repeatable, at most %d; filtered in the kernel)", tracer.MaxFilter))
	fl.Var(netnsValue(&f.netns, tracer.MaxFilter), "netns", fmt.Sprintf("only the network namespace `NETNS`: an ip netns name, a file like /proc/PID/ns/net, a PID, or an inode as printed by ls -L -i /proc/PID/ns/net (repeatable, at most %d)", tracer.MaxFilter))
	fl.Var(pidsValue(&f.pids, tracer.MaxFilter), "pid", fmt.Sprintf("only sockets owned by the process `PID`: the connect() or listen() caller; a server's connections go by its listener (repeatable, at most %d; filtered in the kernel)", tracer.MaxFilter))
	fl.Var(commsValue(&f.comms, tracer.MaxFilter), "comm", fmt.Sprintf("only sockets owned by a task named `NAME`, as /proc/PID/comm shows it (repeatable, at most %d; filtered in the kernel)", tracer.MaxFilter))
	fl.Var(cgroupsValue(&f.cgroups, tracer.MaxFilter), "cgroup", fmt.Sprintf("only sockets whose owner is in the cgroup v2 `PATH` or below it: a directory under the cgroup2 mount, or a path as /proc/PID/cgroup shows it (repeatable, at most %d; filtered in the kernel)", tracer.MaxFilter))
	fl.Var(durationValue{&f.duration, notNegative}, "duration", "stop after this long (e.g. 30s, 5m); default: until Ctrl-C")
	hideEmptyDefault(cmd, "port", "netns", "pid", "comm", "cgroup", "duration")
	f.ringBuffer = tracer.DefaultRingBufferBytes
	fl.Var(&ringSizeValue{bytes: &f.ringBuffer, text: fmt.Sprintf("%dMiB", tracer.DefaultRingBufferBytes>>20)}, "ring-buffer-size", "kernel ring buffer `SIZE`, a power of two up to 256MiB (e.g. 4MiB, 64MiB)")
}

// hideEmptyDefault keeps --help from printing "(default [])" or "(default
// 0s)" after flags that are empty by default (pflag hides it only for some
// of its own types).
func hideEmptyDefault(cmd *cobra.Command, names ...string) {
	for _, n := range names {
		cmd.Flags().Lookup(n).DefValue = ""
	}
}

// config is the tracer's configuration; every value was checked while
// parsing.
func (f *traceFlags) config() tracer.Config {
	return tracer.Config{Ports: f.ports, NetNS: f.netns, PIDs: f.pids, Comms: f.comms, Cgroups: f.cgroups,
		RingBufferBytes: f.ringBuffer}
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
	sampleEvery  time.Duration
	perfetto     string
	readyFile    string
	html         string
	metricsAddr  string
	otlpEndpoint *url.URL
}

func (f *recordFlags) registerRecord(cmd *cobra.Command) {
	f.register(cmd)
	fl := cmd.Flags()
	fl.StringVarP(&f.output, "output", "o", "", "write connections to `FILE`: FILE.jsonl (a line each, as they end), FILE.jsonl.zst (the same, zstd-compressed), FILE.json (one document at the end) or - (JSONL on stdout)")
	fl.BoolVar(&f.events, "events", false, "print one line per kernel event as it happens, instead of flagged connections; the kernel then sends every event (the per-event mode), not one record per connection")
	f.format = "text"
	fl.Var(formatValue{&f.format}, "format", "`FORMAT` of the --events lines: text (aligned columns) or json (an object per line; jsonl is accepted too); only with --events")
	f.formatSet = func() bool { return fl.Changed("format") }
	f.synRecvLimit = time.Second
	fl.Var(durationValue{&f.synRecvLimit, positive}, "syn-recv-threshold", "flag long_syn_recv when a server waited this long for the final ACK")
	f.statusEvery = 10 * time.Second
	fl.Var(durationValue{&f.statusEvery, positive}, "status-interval", "when stderr is not a terminal, print a plain status line this often")
	f.maxConns = tracer.DefaultMaxConnections
	f.sampleEvery = time.Second
	fl.Var(durationValue{&f.sampleEvery, sampleInterval}, "sample-interval", "write a sample record (connections opened and closed, accept queues, TIME_WAIT per destination, lost events) to the export this often (at least 200ms, the recorder's tick; 0 writes none)")
	fl.StringVar(&f.perfetto, "perfetto", "", "at the end, also write the recording as a Perfetto trace (ui.perfetto.dev) to `FILE`, read back from the export: needs -o FILE")
	fl.Var(atLeastValue{&f.maxConns, 1000}, "max-connections", "connections followed at once (at least 1000); past it the least recently active are written early, flagged incomplete")
	fl.Var(hostPortValue{&f.metricsAddr}, "metrics-addr", "serve Prometheus metrics at http://`HOST:PORT`/metrics while tracing (e.g. 127.0.0.1:9464, :9464); with no -o, record is a long-running agent")
	fl.Var(endpointValue{&f.otlpEndpoint}, "otlp-endpoint", "also ship every connection record as an OTLP log record, and connection counts as OTLP metrics, to the collector at `URL`, OTLP/HTTP (e.g. http://127.0.0.1:4318)")
	fl.StringVar(&f.html, "html", "", htmlUsage)
	fl.StringVar(&f.readyFile, "ready-file", "", "once every program is attached, write tcpscope's pid to `FILE` (for scripts: from then on nothing is missed)")
}

func (f *recordFlags) options() (sessionOptions, error) {
	if !f.events && f.formatSet != nil && f.formatSet() {
		return sessionOptions{}, usagef("--format only applies to --events (connection records are JSONL with -o FILE.jsonl or -o -)")
	}
	if err := checkReadyFile(f.readyFile); err != nil {
		return sessionOptions{}, err
	}
	if f.perfetto != "" && (f.output == "" || f.output == "-") {
		return sessionOptions{}, usagef("--perfetto is written from the export: give -o FILE too")
	}
	return sessionOptions{cfg: f.config(), output: f.output, events: f.events, format: f.format,
		synRecvLimit: f.synRecvLimit, statusEvery: f.statusEvery, maxConns: f.maxConns, sampleEvery: f.sampleEvery, perfetto: f.perfetto, readyFile: f.readyFile,
		metricsAddr: f.metricsAddr, otlpEndpoint: f.otlpEndpoint}, nil
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
  sudo tcpscope record -o week.jsonl.zst          # a long recording, about 20 times smaller on disk
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
			cleanup, err := htmlExport(&opts, f.html)
			if err != nil {
				return err
			}
			defer cleanup()
			ctx, cancel := stopContext(cmd.Context(), f.duration)
			defer cancel()
			s, err := newSession(opts, cmd.OutOrStdout(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if err := s.record(ctx, nil); err != nil || f.html == "" {
				return err
			}
			return writeHTML(cmd.ErrOrStderr(), opts.output, f.html, html.Options{})
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
func announce(stderr io.Writer, st capture.Started) {
	for _, h := range st.Features.Missing() {
		fmt.Fprintf(stderr, "tcpscope: warning: tracepoint %s is missing on this kernel: %s\n", h.Tracepoint, h.Degrades)
	}
	switch f := st.Features; {
	case f.Cgroup2Err != nil:
		fmt.Fprintf(stderr, "tcpscope: warning: %v: records name no cgroup, container or unit\n", f.Cgroup2Err)
	case f.BTF && !f.Has(tracer.SocketCgroups):
		fmt.Fprintf(stderr, "tcpscope: warning: this kernel lacks %s: records name no cgroup, container or unit\n", tracer.SocketCgroups)
	}
	for _, err := range st.ListenerErrs {
		fmt.Fprintf(stderr, "tcpscope: warning: %v: listeners open before tracing have no owner or backlog\n", err)
	}
	for _, l := range st.Unowned {
		fmt.Fprintf(stderr, "tcpscope: warning: listener %s of %s/%d was open before tracing and the kernel was not told its owner (%v): --pid and --comm leave its connections out (--cgroup keeps them; or restart it while tracing)\n",
			l.Local, l.Comm, l.PID, l.Err)
	}
	fmt.Fprintf(stderr, "tcpscope: tracing (%d tracepoints attached); Ctrl-C to stop\n", st.Attached)
}
