package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"github.com/tcpscope/tcpscope/cmd/internal/demoload"
	"github.com/tcpscope/tcpscope/output"
	"github.com/tcpscope/tcpscope/tracer"
)

func newDemoCmd() *cobra.Command {
	var out string
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
  sudo tcpscope demo --duration 30s -o demo.jsonl`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), out, d, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "keep the recording in `FILE`: FILE.jsonl or FILE.json")
	d = 15 * time.Second
	cmd.Flags().Var(durationValue{&d, between(8*time.Second, 10*time.Minute, "the demo runs")}, "duration", "how long the load runs (8s to 10m)")
	return cmd
}

// demoSamplePerFlag is how many flagged lines of each flag the demo prints.
const demoSamplePerFlag = 3

func runDemo(parent context.Context, out string, d time.Duration, stdout, stderr io.Writer) error {
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
	findings := newDemoFindings()
	s, err := newSession(sessionOptions{
		cfg:          tracer.Config{NetNS: []uint32{ns.Inode}},
		output:       out,
		synRecvLimit: time.Second,
		command:      []string{"tcpscope", "demo"},
		// The demo flags hundreds of connections; its reader wants the
		// summary and the legend, and a few lines of each kind.
		samplePerFlag: demoSamplePerFlag,
		onConn:        findings.add,
	}, stdout, stderr)
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
		ns.Inode, demoload.PortWeb, demoload.PortChurn, d)
	injected, loadErr := ns.Run(ctx, d)
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
	return output.DemoLegend(stdout, findings.legend(injected, s.listeners))
}

// demoFindings tallies, per demo server port, what tcpscope flagged.
type demoFindings struct {
	byPort map[uint16]map[tracer.Flag]int
	// Reset reasons sent, by port, by name: sk_rst_reason values are
	// numbered differently across kernels (names come from BTF), and the
	// demo expects reasons by name.
	reasons map[uint16]map[string]int
}

func newDemoFindings() *demoFindings {
	return &demoFindings{byPort: map[uint16]map[tracer.Flag]int{}, reasons: map[uint16]map[string]int{}}
}

func (f *demoFindings) add(c *tracer.Connection) {
	port := c.Remote.Port()
	if c.Role == tracer.RoleServer {
		port = c.Local.Port()
	}
	m := f.byPort[port]
	if m == nil {
		m = map[tracer.Flag]int{}
		f.byPort[port] = m
	}
	for fl := range c.Flags.All() {
		m[fl]++
	}
	for _, it := range c.Timeline {
		if it.Kind == tracer.ItemResetSent && it.HasReason && c.Has(tracer.FlagResetSent) {
			if f.reasons[port] == nil {
				f.reasons[port] = map[string]int{}
			}
			f.reasons[port][it.Reason.String()]++
		}
	}
}

func (f *demoFindings) legend(in demoload.Injected, listeners []output.ListenerRow) []output.LegendRow {
	var tiny, slow output.ListenerRow
	for _, l := range listeners {
		switch l.Local.Port() {
		case demoload.PortTiny:
			tiny = l
		case demoload.PortSlow:
			slow = l
		}
	}
	p := func(port uint16, fl tracer.Flag) int { return f.byPort[port][fl] }
	// Clients whose final ACK met the full queue believe they are connected
	// and resend their request until the server stops; the kernel then
	// answers with NO_SOCKET resets.
	var tinyResets string
	if n := f.reasons[demoload.PortTiny]["NO_SOCKET"]; n > 0 {
		tinyResets = fmt.Sprintf("; %d still resending when the server stopped: reset_sent NO_SOCKET %d", n, n)
	}
	return []output.LegendRow{
		{Fault: fmt.Sprintf("final ACKs of %d clients of :%d dropped for %s", in.SlowClients, demoload.PortSlow, in.AckDropWindow.Round(100*time.Millisecond)),
			Finding: fmt.Sprintf("synack_retransmitted %d, long_syn_recv %d; SYN_RECV max %s", p(demoload.PortSlow, tracer.FlagSynAckRetransmitted),
				p(demoload.PortSlow, tracer.FlagLongSynRecv), output.Duration(slow.SynRecv.Max))},
		{Fault: fmt.Sprintf("burst of %d connects at :%d (backlog %d, accepts every 150ms)", in.TinyBurst, demoload.PortTiny, in.TinyBacklog),
			Finding: fmt.Sprintf("syn_retransmitted %d, listen_overflow %d, syncookie %d; peak accept queue %d/%d, SYN drops attributed %d",
				p(demoload.PortTiny, tracer.FlagSynRetransmitted), p(demoload.PortTiny, tracer.FlagListenOverflow),
				p(demoload.PortTiny, tracer.FlagSyncookie), tiny.PeakQueue, tiny.Backlog, tiny.SynDropsAttributed) + tinyResets},
		{Fault: fmt.Sprintf("%d connects to closed port :%d", in.Refused, demoload.PortClosed),
			Finding: fmt.Sprintf("refused %d (client and server side records)", p(demoload.PortClosed, tracer.FlagRefused))},
		{Fault: fmt.Sprintf("server on :%d aborted %d requests with SO_LINGER 0 and closed %d unread", demoload.PortWeb, in.Lingered, in.Unread),
			Finding: fmt.Sprintf("reset_sent %d (TCP_STATE %d, TCP_ABORT_ON_CLOSE %d), reset_received %d",
				p(demoload.PortWeb, tracer.FlagResetSent), f.reasons[demoload.PortWeb]["TCP_STATE"], f.reasons[demoload.PortWeb]["TCP_ABORT_ON_CLOSE"], p(demoload.PortWeb, tracer.FlagResetReceived))},
		{Fault: fmt.Sprintf("%d client-first closes to :%d with %d local ports, tcp_tw_reuse=0", in.Churn, demoload.PortChurn, in.ChurnPorts),
			Finding: fmt.Sprintf("time_wait %d, port_exhausted %d (connect() saw EADDRNOTAVAIL %d times)",
				p(demoload.PortChurn, tracer.FlagTimeWait), p(0, tracer.FlagPortExhausted)+p(demoload.PortChurn, tracer.FlagPortExhausted), in.ChurnFailures)},
	}
}
