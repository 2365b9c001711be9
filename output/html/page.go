package html

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tcpscope/tcpscope/output"
	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/findings"
)

var (
	//go:embed page.tmpl
	pageTemplate string
	//go:embed page.css
	pageCSS string
	//go:embed page.js
	pageJS string
)

var page = template.Must(template.New("page").Funcs(template.FuncMap{
	"join": func(s []string) string { return strings.Join(s, " ") },
	"num":  thousands,
}).Parse(pageTemplate))

// view is what the template draws.
type view struct {
	Title      string
	Intro      string
	Story      story
	Command    string
	ExitStatus string
	Legend     *output.Table
	Warnings   []string
	Findings   []findingView
	Charts     []chart
	Notes      []string // why a chart is missing
	Dists      []chart
	Waterfall  waterfall
	Tables     []output.Table
	CSS        template.CSS
	JS         template.JS
	Timelines  template.JS
	Generated  string
}

// story is the page's heading: the recording in a few sentences.
type story struct {
	Headline string
	Lead     string
	Points   []string
}

type chart struct {
	Title, Note string
	SVG         template.HTML
	Legend      template.HTML
}

type findingView struct {
	Severity, Kind, Subject, When, Evidence, Settings, Why, Change string
}

type waterfall struct {
	Rows        []rowView
	Flagged     int // in the export
	Drawn       int // flagged rows drawn
	Others      int // unflagged rows embedded
	Unflagged   int // in the export
	FlagNames   []string
	Outcomes    []string
	Start, Span string
}

type rowView struct {
	row
	Bar   template.CSS
	Segs  []part
	Dots  []part
	Label string
}

type part struct {
	Class string
	Style template.CSS
	Title string
}

// Write renders the page of rec, whose connections were handed to
// Connection as it was read.
func (r *Report) Write(w io.Writer, rec *output.Recording) error {
	start, end := r.span(rec)
	x := r.extra(rec, start)
	v := view{CSS: template.CSS(pageCSS), JS: template.JS(pageJS), Generated: rec.Meta.Tcpscope}
	v.Title = fmt.Sprintf("tcpscope: %s connections, %s flagged", thousands(int(r.stats.Connections)), thousands(r.flagged))
	v.Intro = r.opts.Intro
	v.Story = r.story(rec, start, end, x)
	v.Command, v.ExitStatus = r.command(rec)
	if len(r.opts.Legend) > 0 {
		t := output.LegendTableData(r.opts.Legend)
		v.Legend = &t
	}
	v.Warnings = rec.Warnings("the export")
	v.Findings = findingViews(x.Findings)
	v.Charts, v.Notes = r.charts(start, end, rec.Samples)
	v.Dists = r.distributions()
	v.Waterfall = r.waterfall(start, end)
	v.Tables = output.SummaryTableData(r.stats, x)
	tl, err := r.timelines()
	if err != nil {
		return err
	}
	v.Timelines = tl
	if err := page.Execute(w, v); err != nil {
		return fmt.Errorf("writing the HTML report: %w", err)
	}
	return nil
}

// command is the traced command line and its exit status, when known.
func (r *Report) command(rec *output.Recording) (string, string) {
	cmd := r.opts.Command
	if len(cmd) == 0 {
		cmd = rec.Meta.Command
	}
	status := ""
	if r.opts.ExitStatus != nil {
		status = strconv.Itoa(*r.opts.ExitStatus)
	}
	return strings.Join(cmd, " "), status
}

func (r *Report) story(rec *output.Recording, start, end time.Time, x output.Extra) story {
	s := story{Headline: fmt.Sprintf("%s connections, %s flagged", thousands(int(r.stats.Connections)), thousands(r.flagged))}
	host := ""
	if rec.Meta.Hostname != "" {
		host = " on " + rec.Meta.Hostname
	}
	s.Lead = fmt.Sprintf("tcpscope traced %s TCP connections%s between %s and %s (%s). ",
		thousands(int(r.stats.Connections)), host, start.Local().Format("15:04:05"), end.Local().Format("15:04:05"),
		end.Sub(start).Round(100*time.Millisecond))
	switch {
	case r.flagged == 0:
		s.Lead += "None ended with a flag worth a look: every handshake, transfer and close went as TCP intends."
	default:
		s.Lead += fmt.Sprintf("%s of them ended with a flag worth a look (below: what they had in common, then each one drawn on the time axis).", thousands(r.flagged))
	}
	for _, f := range tracer.AllFlags {
		n := r.stats.ByFlag[f]
		if n == 0 || f == tracer.FlagTimeWait || f == tracer.FlagPreexisting {
			continue
		}
		p := fmt.Sprintf("%s %s: %s", thousands(int(n)), f, output.FlagMeaning(f))
		if f == tracer.FlagResetSent && len(r.resets) > 0 {
			p += " (the kernel's reasons: " + reasons(r.resets) + ")"
		}
		s.Points = append(s.Points, p)
	}
	if x.LostEvents+x.LostRecords > 0 {
		s.Points = append(s.Points, fmt.Sprintf("%d kernel events and %d connection records were lost (ring buffer full): connections open then are flagged incomplete", x.LostEvents, x.LostRecords))
	}
	return s
}

// reasons lists reset reasons, most frequent first.
func reasons(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if m[a] != m[b] {
			return m[b] - m[a]
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

func findingViews(fs []findings.Finding) []findingView {
	out := make([]findingView, 0, len(fs))
	for i := range fs {
		f := &fs[i]
		ev := make([]string, len(f.Evidence))
		for j, e := range f.Evidence {
			ev[j] = fmt.Sprintf("%s %d", e.Name, e.Value)
		}
		set := make([]string, len(f.Sysctls))
		for j, s := range f.Sysctls {
			set[j] = s.Name + " = " + s.Value
		}
		out = append(out, findingView{Severity: f.Severity.String(), Kind: f.Kind.String(), Subject: f.Subject,
			When:     f.First.Local().Format("15:04:05.000") + " to " + f.Last.Local().Format("15:04:05.000"),
			Evidence: strings.Join(ev, ", "), Settings: strings.Join(set, ", "), Why: f.Mechanism, Change: f.Advice})
	}
	return out
}

// thousands writes n with thin separators: 500,000.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// timelines is the embedded connections' `report --id` data, by id, as
// JSON: encoding/json escapes <, > and &, so the data cannot end its
// script element whatever a comm or a reason holds.
func (r *Report) timelines() (template.JS, error) {
	type entry struct {
		Head []string   `json:"h"`
		Rows [][]string `json:"r"`
	}
	m := make(map[string]entry, len(r.drawn.rows)+len(r.others.rows))
	for _, rows := range [][]row{r.drawn.rows, r.others.rows} {
		for i := range rows {
			m[strconv.FormatUint(rows[i].ID, 10)] = entry{rows[i].Head, rows[i].Timeline}
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("encoding the timelines: %w", err)
	}
	return template.JS(b), nil
}
