package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/tcpscope/tcpscope/cmd/internal/demoload"
	"github.com/tcpscope/tcpscope/output"
	"github.com/tcpscope/tcpscope/output/html"
	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/findings"
)

func newDemoCmd() *cobra.Command {
	var out, page string
	var d time.Duration
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Trace a built-in load with injected failures, in a private network namespace",
		Long: `Create a private network namespace, run small servers and a bounded load in it
that hits the failures load tests meet (lost final ACKs, a listener that falls
behind, refused connects, aborted connections, TIME_WAIT churn), trace it with
the same code as "record", and say which injected fault produced which
finding. The host's network, sysctls and firewall are never touched; the
namespace and everything in it are removed at the end.`,
		Example: `  sudo tcpscope demo
  sudo tcpscope demo --duration 30s -o demo.jsonl
  sudo tcpscope demo --html demo.html             # then open demo.html in a browser`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), demoOptions{out: out, html: page, d: d}, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "keep the recording in `FILE`: FILE.jsonl, FILE.jsonl.zst or FILE.json")
	cmd.Flags().StringVar(&page, "html", "", "also write an offline HTML report of the demo, its injected faults and findings included, to `FILE`")
	d = 15 * time.Second
	cmd.Flags().Var(durationValue{&d, between(8*time.Second, 10*time.Minute, "the demo runs")}, "duration", "how long the load runs (8s to 10m)")
	return cmd
}

// demoSamplePerFlag is how many flagged lines of each flag the demo prints.
const demoSamplePerFlag = 3

// demoOptions are the demo's flags.
type demoOptions struct {
	out, html string
	d         time.Duration
}

// demoIntro opens the demo's HTML report, for a reader who knows nothing
// of tcpscope or of the demo.
const demoIntro = "This is tcpscope's built-in demo. It ran small servers and a load of web clients in a private network namespace, " +
	"and injected the failures load tests meet: final ACKs lost, a listener that accepts too slowly for its backlog, connects to a closed port, " +
	"servers that abort requests, and clients that churn through their local ports. tcpscope traced every TCP connection from the kernel's " +
	"own events, with no packet capture: the table below pairs each injected fault with what tcpscope found, and the rest of the page shows the evidence."

// demoSession is the demo's recording, but for the namespace it traces.
func demoSession(out string) sessionOptions {
	return sessionOptions{
		output:       out,
		synRecvLimit: time.Second,
		sampleEvery:  time.Second,
		command:      []string{"tcpscope", "demo"},
		// The demo flags hundreds of connections; its reader wants the
		// summary and the legend, and a few lines of each kind.
		samplePerFlag: demoSamplePerFlag,
	}
}

func runDemo(parent context.Context, o demoOptions, stdout, stderr io.Writer) error {
	opts := demoSession(o.out)
	cleanup, err := htmlExport(&opts, o.html)
	if err != nil {
		return err
	}
	defer cleanup()
	if f, err := tracer.Probe(); err == nil {
		if err := f.Usable(); err != nil {
			return err
		}
	}
	ns, err := demoload.NewNamespace()
	if err != nil {
		return err
	}
	defer ns.Close()
	if parent == nil {
		parent = context.Background()
	}
	ctx, cancel := stopContext(parent, 0)
	defer cancel()
	opts.cfg.NetNS = []uint32{ns.Inode}
	s, err := newSession(opts, stdout, stderr)
	if err != nil {
		return err
	}
	traceCtx, stopTrace := context.WithCancel(ctx)
	defer stopTrace()
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- s.record(traceCtx, func() error { close(ready); return nil }) }()
	select {
	case <-ready:
	case err := <-done:
		return err // tracing never started
	}
	fmt.Fprintf(stdout, "demo: network namespace %d, servers on 127.0.0.1:%d-%d, load for %s\n",
		ns.Inode, demoload.PortWeb, demoload.PortChurn, o.d)
	injected, loadErr := ns.Run(ctx, o.d)
	// Let the last closes, resets and TIME_WAIT entries land.
	select {
	case <-time.After(1500 * time.Millisecond):
	case <-ctx.Done():
	}
	stopTrace()
	if err := <-done; err != nil {
		return err
	}
	if loadErr != nil {
		return loadErr
	}
	legend := demoLegend(injected, s.found)
	if err := output.DemoLegend(stdout, legend); err != nil || o.html == "" {
		return err
	}
	return writeHTML(stderr, opts.output, o.html, html.Options{Intro: demoIntro, Legend: legend})
}

// demoFault is one fault the demo injects, and the finding that must
// report it: its kind, about the demo server's port (and, for resets, the
// kernel's reason named in the subject).
type demoFault struct {
	fault  string
	kind   findings.Kind
	port   uint16
	reason string
	facts  []string // the evidence the table shows
	note   string   // why this finding follows from the fault
}

// demoFaults lists what the demo injected, each with the findings that
// report it; a fault can show in more than one (a listener that falls
// behind also sends SYN cookies).
func demoFaults(in demoload.Injected) [][]demoFault {
	return [][]demoFault{
		{{fault: fmt.Sprintf("final ACKs of %d clients of :%d dropped for %s", in.SlowClients, demoload.PortSlow, in.AckDropWindow.Round(100*time.Millisecond)),
			kind: findings.LateFinalACK, port: demoload.PortSlow, facts: []string{"late_final_ack_connections", "synack_retransmits", "longest_syn_recv_us", "accept_queue_drops"}}},
		{{fault: fmt.Sprintf("burst of %d connects at :%d (backlog %d, accepts every 150ms)", in.TinyBurst, demoload.PortTiny, in.TinyBacklog),
			kind: findings.AcceptQueueOverflow, port: demoload.PortTiny, facts: []string{"accept_queue_drops", "backlog", "peak_accept_queue", "client_syn_retransmits"}},
			{kind: findings.SynFloodCookies, port: demoload.PortTiny, facts: []string{"syncookie_connections", "TcpExt.SyncookiesSent"}},
			// Clients whose final ACK met the full queue believe they are
			// connected and resend their request; those still resending
			// when the demo stops its server are answered with resets.
			{kind: findings.ServerResets, port: demoload.PortTiny, reason: "NO_SOCKET", facts: []string{"reset_connections"},
				note: " (clients still resending when the server stopped)"},
			// The overflow also dropped final ACKs of some burst clients
			// (the finding says so and points to accept_queue_overflow).
			{kind: findings.LateFinalACK, port: demoload.PortTiny, facts: []string{"late_final_ack_connections", "accept_queue_drops"}},
			// A burst client whose time ran out as its answer came closed
			// with the answer unread.
			{kind: findings.ClientResets, port: demoload.PortTiny, reason: "TCP_ABORT_ON_CLOSE", facts: []string{"reset_connections"},
				note: " (clients whose time ran out as the answer came)"}},
		{{fault: fmt.Sprintf("%d connects to closed port :%d", in.Refused, demoload.PortClosed),
			kind: findings.ConnectionRefused, port: demoload.PortClosed, facts: []string{"refused_connections", "listener_appeared_later"}}},
		{{fault: fmt.Sprintf("server on :%d aborted %d requests with SO_LINGER 0 and closed %d unread", demoload.PortWeb, in.Lingered, in.Unread),
			kind: findings.ServerResets, port: demoload.PortWeb, reason: "TCP_STATE", facts: []string{"reset_connections"}},
			{kind: findings.ServerResets, port: demoload.PortWeb, reason: "TCP_ABORT_ON_CLOSE", facts: []string{"reset_connections"}}},
		{{fault: fmt.Sprintf("%d client-first closes to :%d with %d local ports, tcp_tw_reuse=0", in.Churn, demoload.PortChurn, in.ChurnPorts),
			kind: findings.TimeWaitExhaustion, port: demoload.PortChurn, facts: []string{"port_exhausted_connections", "time_wait_peak", "usable_ports", "time_wait_per_second"}}},
	}
}

// demoSubjectPort is the port of a demo finding's subject
// ("127.0.0.1:8082 (tcpscope/2335)", "127.0.0.1:8080 (...), reason X",
// "tcpscope/2335 toward 127.0.0.1:8082, reason X").
func demoSubjectPort(subject string) (uint16, bool) {
	if _, dst, ok := strings.Cut(subject, " toward "); ok {
		subject = dst
	}
	addr, _, _ := strings.Cut(subject, " ")
	ap, err := netip.ParseAddrPort(strings.TrimSuffix(addr, ","))
	return ap.Port(), err == nil
}

func (d demoFault) matches(f *findings.Finding) bool {
	port, ok := demoSubjectPort(f.Subject)
	return ok && f.Kind == d.kind && port == d.port &&
		(d.reason == "" || strings.HasSuffix(f.Subject, ", reason "+d.reason))
}

// demoLegend pairs each injected fault with the findings of the recording
// that report it; a fault no finding reports says NOT FOUND, and findings
// of no injected fault get a row of their own.
func demoLegend(in demoload.Injected, fs []findings.Finding) []output.LegendRow {
	used := make([]bool, len(fs))
	var rows []output.LegendRow
	for _, group := range demoFaults(in) {
		var found []string
		for _, d := range group {
			hit := false
			for i := range fs {
				if !d.matches(&fs[i]) {
					continue
				}
				used[i], hit = true, true
				found = append(found, demoFindingText(&fs[i], d.facts)+d.note)
			}
			if !hit && d.fault != "" {
				found = append(found, fmt.Sprintf("NOT FOUND: no %s finding for :%d", d.kind, d.port))
			}
		}
		rows = append(rows, output.LegendRow{Fault: group[0].fault, Finding: strings.Join(found, "; ")})
	}
	for i := range fs {
		if !used[i] {
			rows = append(rows, output.LegendRow{Fault: "(not injected)", Finding: demoFindingText(&fs[i], nil)})
		}
	}
	return rows
}

// demoFindingText is a finding in a line: its kind, subject and the
// evidence named (all of it when none is named).
func demoFindingText(f *findings.Finding, facts []string) string {
	subject, _, _ := strings.Cut(f.Subject, " (")
	if _, dst, ok := strings.Cut(subject, " toward "); ok {
		subject, _, _ = strings.Cut(dst, ",")
	}
	if _, reason, ok := strings.Cut(f.Subject, ", reason "); ok {
		subject += " " + reason
	}
	var ev []string
	for _, e := range f.Evidence {
		if len(facts) > 0 && !slices.Contains(facts, e.Name) {
			continue
		}
		v := strconv.FormatUint(e.Value, 10)
		if strings.HasSuffix(e.Name, "_us") {
			v = output.Duration(int64(e.Value))
		}
		ev = append(ev, strings.TrimSuffix(e.Name, "_us")+" "+v)
	}
	return fmt.Sprintf("%s %s: %s", f.Kind, subject, strings.Join(ev, ", "))
}
