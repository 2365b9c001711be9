package main

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/tcpscope/tcpscope/output"
	"github.com/tcpscope/tcpscope/output/html"
	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/findings"
)

type reportFlags struct {
	flags    []string
	outcomes []string
	ports    []uint16
	peers    []string
	owner    ownerFlags
	id       uint64
	format   string
	strict   bool
	html     string
	perfetto string // also write the Perfetto trace here, "" for none
}

func newReportCmd() *cobra.Command {
	var f reportFlags
	cmd := &cobra.Command{
		Use:   "report FILE",
		Short: "Render a saved recording (.jsonl or .json, or - for standard input) again; no root needed",
		Example: `  tcpscope report run.jsonl
  jq . run.json | tcpscope report -
  tcpscope report run.jsonl --flag synack_retransmitted --port 8080
  tcpscope report run.jsonl --outcome reset --format json
  tcpscope report run.jsonl --container docker:3f2a --comm nginx
  tcpscope report run.jsonl --cgroup /kubepods.slice --outcome reset
  tcpscope report run.jsonl --id 4211             # one connection's whole timeline
  tcpscope report run.jsonl --html run.html       # one offline page: charts, flagged connections, tables
  tcpscope report run.jsonl.zst                   # compressed: told by its content, not its name
  tcpscope report both.jsonl                      # a file tcpscope merge wrote: pairs per host pair, diagnoses`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			filter, err := f.filter()
			if err != nil {
				return err
			}
			if merged, err := reportMerged(cmd, args[0], &f); merged || err != nil {
				return err
			}
			if f.html != "" {
				return f.writeHTML(cmd, args[0])
			}
			return f.report(cmd, args[0], filter)
		},
	}
	fl := cmd.Flags()
	fl.StringSliceVar(&f.flags, "flag", nil, "only connections with this `FLAG` (repeatable: any of them)")
	fl.StringSliceVar(&f.outcomes, "outcome", nil, "only connections with this `OUTCOME` (repeatable: any of them)")
	fl.Var(portsValue(&f.ports, 0), "port", "only connections with this local or remote `PORT` (repeatable)")
	fl.StringSliceVar(&f.peers, "peer", nil, "only connections with this remote `ADDR` (repeatable)")
	hideEmptyDefault(cmd, "port")
	f.owner.add(cmd)
	fl.Uint64Var(&f.id, "id", 0, "print the whole timeline of the connection with this `ID`")
	f.format = "text"
	fl.Var(reportFormatValue{&f.format}, "format", "`FORMAT`: text (tables; table is accepted too), json (the matching connection records, one per line), or perfetto (a trace for ui.perfetto.dev of the matching connections, with the samples' counters)")
	fl.StringVar(&f.perfetto, "perfetto", "", "also write the Perfetto trace (as --format perfetto) of the matching connections to `FILE`")
	fl.StringVar(&f.html, "html", "", "write an offline HTML report to `FILE` instead: the story, charts over time, distributions, the flagged connections with their timelines, the tables")
	fl.BoolVar(&f.strict, "strict", false, "refuse (exit status 2) a file whose last record is cut short or that has no summary, instead of warning")
	return cmd
}

// report writes the report, the Perfetto trace, or both.
func (f *reportFlags) report(cmd *cobra.Command, name string, filter func(*tracer.Connection) bool) error {
	if f.format != "perfetto" && f.perfetto == "" {
		return f.run(cmd, name, filter)
	}
	if f.id != 0 {
		return usagef("--id prints one connection's timeline: not with --format perfetto or --perfetto")
	}
	read, err := exportReader(name, cmd.InOrStdin())
	if err != nil {
		return err
	}
	if f.format == "perfetto" {
		// The trace's writes fail through out: a full disk is exit 1, an
		// export that cannot be read exit 2.
		out := &stickyWriter{w: cmd.OutOrStdout()}
		w := bufio.NewWriter(out)
		if err := output.PerfettoFromExport(w, read, filter); err != nil {
			if out.err != nil {
				return fmt.Errorf("writing the trace: %w", out.err)
			}
			return usageError{err}
		}
		if err := w.Flush(); err != nil {
			return fmt.Errorf("writing the trace: %w", err)
		}
	} else if err := f.runFrom(cmd, name, filter, read); err != nil {
		return err
	}
	if f.perfetto == "" {
		return nil
	}
	return writePerfettoFile(f.perfetto, read, filter)
}

// run reads the export and writes the report as it reads: connection by
// connection, keeping only the tables' tallies (and, for --id, the one
// connection), so that memory does not grow with the file.
func (f *reportFlags) run(cmd *cobra.Command, name string, filter func(*tracer.Connection) bool) error {
	return f.runFrom(cmd, name, filter, nil)
}

// runFrom is run reading through read (nil: name, or standard input).
func (f *reportFlags) runFrom(cmd *cobra.Command, name string, filter func(*tracer.Connection) bool, read func(output.ReadOptions) (*output.Recording, error)) error {
	// Every write goes through w, whose first error sticks: a full disk is
	// an error, not an empty report and exit status 0. Its buffer holds
	// the report of a recording of some thousand connections whole, so
	// that an export found damaged at its end prints nothing but the
	// error; a longer report flows out as it is read.
	w := bufio.NewWriterSize(cmd.OutOrStdout(), reportBuffer)
	r := &rendering{f: f, w: w, filter: filter, stats: tracer.NewStats(), findings: findings.New()}
	opts := output.ReadOptions{FlaggedTimelinesOnly: f.id == 0 && f.format == "text", Strict: f.strict, Connection: r.connection}
	if name == "-" {
		name = "standard input"
	}
	if read == nil {
		// Read once: standard input streams, as a file does.
		read = func(o output.ReadOptions) (*output.Recording, error) {
			if name == "standard input" {
				return output.ReadExportFrom(cmd.InOrStdin(), name, o)
			}
			return output.ReadExportWith(name, o)
		}
	}
	rec, err := read(opts)
	switch {
	case r.werr != nil:
		return fmt.Errorf("writing the report: %w", r.werr)
	case err != nil:
		return usageError{err}
	}
	for _, warning := range rec.Warnings(name) {
		fmt.Fprintf(cmd.ErrOrStderr(), "tcpscope: warning: %s\n", warning)
	}
	err = r.finish(rec, name)
	if ferr := w.Flush(); ferr != nil && err == nil {
		err = fmt.Errorf("writing the report: %w", ferr)
	}
	return err
}

// reportMerged renders a file tcpscope merge wrote; merged is false for
// anything else (an export, or standard input), left to run.
func reportMerged(cmd *cobra.Command, name string, f *reportFlags) (merged bool, err error) {
	if name == "-" {
		return false, nil
	}
	// A file that cannot be opened is left to run, which reports it as it
	// reports any export's.
	if merged, err = output.IsMerged(name); !merged || err != nil {
		return false, nil
	}
	if f.filtered() || f.id != 0 || f.format != "text" || f.html != "" {
		return true, usagef("%s is a merged file: report renders its tables only (no --flag, --outcome, --port, --peer, --pid, --comm, --cgroup, --container, --id, --format json or --html)", name)
	}
	m, err := output.ReadMerged(name)
	if err != nil {
		return true, usageError{err}
	}
	return true, output.MergedTables(cmd.OutOrStdout(), m)
}

// writeHTML renders the whole recording as one page; the page has its own
// filters.
func (f *reportFlags) writeHTML(cmd *cobra.Command, name string) error {
	if f.filtered() || f.id != 0 || f.format != "text" || f.perfetto != "" {
		return usagef("--html renders the whole recording (the page filters by flag, outcome, port, peer and process itself): no --flag, --outcome, --port, --peer, --id, --format or --perfetto")
	}
	if err := checkHTMLPath(f.html); err != nil {
		return err
	}
	r, rec, err := html.Read(name, cmd.InOrStdin(), f.strict, html.Options{})
	if err != nil {
		return usageError{err}
	}
	if name == "-" {
		name = "standard input"
	}
	for _, warning := range rec.Warnings(name) {
		fmt.Fprintf(cmd.ErrOrStderr(), "tcpscope: warning: %s\n", warning)
	}
	return html.WriteFile(f.html, output.SudoOwner(os.Getenv), func(w io.Writer) error { return r.Write(w, rec) })
}

// reportBuffer is how much of the report is held before it is written.
const reportBuffer = 4 << 20

// rendering is one report being written as its export is read.
type rendering struct {
	f        *reportFlags
	w        io.Writer
	filter   func(*tracer.Connection) bool
	stats    *tracer.Stats
	findings *findings.Accumulator
	found    *tracer.Connection // --id's connection, once read
	buf      []byte
	werr     error // the first write error: it stops the reading
}

func (f *reportFlags) filtered() bool {
	return len(f.flags)+len(f.outcomes)+len(f.ports)+len(f.peers) > 0 || f.owner.set()
}

// connection takes one connection of the export: the matching records
// (--format json) and the flagged lines are written at once.
func (r *rendering) connection(c *tracer.Connection) error {
	if r.f.id != 0 {
		if c.ID == r.f.id && r.found == nil {
			cp := *c // c is reused; its timeline is its own
			r.found = &cp
		}
		return nil
	}
	if r.f.format == "text" && !r.f.filtered() {
		r.findings.Add(c)
	}
	if !r.filter(c) {
		return nil
	}
	r.stats.Add(c)
	var err error
	switch {
	case r.f.format == "json":
		r.buf = append(output.AppendConnectionJSON(r.buf[:0], c), '\n')
		_, err = r.w.Write(r.buf)
	case c.Flagged():
		_, err = fmt.Fprintln(r.w, output.FlaggedLine(c))
	}
	if err != nil {
		r.werr = err
	}
	return err
}

// finish writes what comes once the whole export is read: one
// connection's timeline (--id) or the tables.
func (r *rendering) finish(rec *output.Recording, name string) error {
	f := r.f
	if f.id != 0 {
		if r.found == nil {
			return fmt.Errorf("no connection with id %d in %s", f.id, name)
		}
		if f.format == "json" {
			_, err := fmt.Fprintf(r.w, "%s\n", output.AppendConnectionJSON(nil, r.found))
			return err
		}
		return output.TimelineTable(r.w, r.found)
	}
	if f.format == "json" {
		return nil
	}
	x := output.Extra{End: r.stats.End}
	if rec.Summary != nil {
		x = rec.Summary.Extra()
	}
	if !f.filtered() {
		x.Listeners = rec.Listeners
		x.Findings = findingsOf(r.findings, rec, x)
	} else {
		x.Counters, x.TimeWait, x.Findings = nil, nil, nil
	}
	return output.SummaryTables(r.w, r.stats, x)
}

// recordingFindings computes a saved recording's findings again, from its
// records, as the live run did: the same findings, in a recording made
// before tcpscope stored them too. x is the recording's Extra, listeners
// included.
func recordingFindings(rec *output.Recording, x output.Extra) []findings.Finding {
	a := findings.New()
	for i := range rec.Connections {
		a.Add(&rec.Connections[i])
	}
	return findingsOf(a, rec, x)
}

// findingsOf finishes a, which has taken every connection of rec.
func findingsOf(a *findings.Accumulator, rec *output.Recording, x output.Extra) []findings.Finding {
	start := rec.Meta.Start
	if rec.Summary != nil {
		start = rec.Summary.Start
	}
	return a.Finish(output.FindingsEnv(start, x))
}

// filter is the conjunction of the filters given, each of which takes any
// of its values.
func (f *reportFlags) filter() (func(*tracer.Connection) bool, error) {
	var keep []func(*tracer.Connection) bool
	flags, err := parseNamed("--flag", "a flag", "flags", f.flags, tracer.AllFlags)
	if err != nil {
		return nil, err
	}
	if len(flags) > 0 {
		keep = append(keep, func(c *tracer.Connection) bool { return slices.ContainsFunc(flags, c.Flags.Has) })
	}
	outcomes, err := parseNamed("--outcome", "an outcome", "outcomes", f.outcomes, tracer.AllOutcomes)
	if err != nil {
		return nil, err
	}
	if len(outcomes) > 0 {
		keep = append(keep, func(c *tracer.Connection) bool { return slices.Contains(outcomes, c.Outcome) })
	}
	if len(f.ports) > 0 {
		keep = append(keep, func(c *tracer.Connection) bool {
			return slices.ContainsFunc(f.ports, func(p uint16) bool { return c.Local.Port() == p || c.Remote.Port() == p })
		})
	}
	var peers []netip.Addr
	for _, s := range f.peers {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, usagef("--peer %q: not an IP address", s)
		}
		peers = append(peers, a.Unmap())
	}
	if len(peers) > 0 {
		keep = append(keep, func(c *tracer.Connection) bool { return slices.Contains(peers, c.Remote.Addr()) })
	}
	owner, err := f.owner.filters()
	if err != nil {
		return nil, err
	}
	keep = append(keep, owner...)
	return func(c *tracer.Connection) bool {
		for _, k := range keep {
			if !k(c) {
				return false
			}
		}
		return true
	}, nil
}

// parseNamed reads the names given to flag into values of all, by their
// String; aNoun and nouns name them in the error.
func parseNamed[T fmt.Stringer](flag, aNoun, nouns string, names []string, all []T) ([]T, error) {
	var out []T
	for _, s := range names {
		i := slices.IndexFunc(all, func(v T) bool { return v.String() == s })
		if i < 0 {
			return nil, usagef("%s %q: not %s; %s are %s", flag, s, aNoun, nouns, joinNames(all))
		}
		out = append(out, all[i])
	}
	return out, nil
}

func joinNames[T fmt.Stringer](xs []T) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = x.String()
	}
	return strings.Join(s, ", ")
}
