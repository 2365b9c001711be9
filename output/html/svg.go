package html

import (
	"fmt"
	"html/template"
	"math"
	"strings"
	"time"

	"github.com/tcpscope/tcpscope/output"
)

// The charts' geometry, in SVG user units; the page scales them to its
// width.
const (
	chartW, chartH = 960.0, 200.0
	padL, padR     = 56.0, 8.0
	padT, padB     = 8.0, 26.0
	plotW          = chartW - padL - padR
	plotH          = chartH - padT - padB
)

var esc = template.HTMLEscapeString

// svgOpen starts a chart; label names it for screen readers.
func svgOpen(b *strings.Builder, label string) {
	fmt.Fprintf(b, `<svg class="chart" viewBox="0 0 %g %g" role="img" aria-label="%s">`, chartW, chartH, esc(label))
}

// timeAxis draws the x axis of a time chart: ticks at round offsets from
// the recording's start.
func timeAxis(b *strings.Builder, a axis) {
	span := time.Duration(a.n) * a.width
	step := niceWidths[len(niceWidths)-1]
	for _, w := range niceWidths {
		if span/w <= 10 {
			step = w
			break
		}
	}
	y := padT + plotH
	fmt.Fprintf(b, `<line class="axis" x1="%g" y1="%g" x2="%g" y2="%g"/>`, padL, y, padL+plotW, y)
	for t := time.Duration(0); t <= span; t += step {
		x := padL + plotW*float64(t)/float64(span)
		fmt.Fprintf(b, `<line class="tick" x1="%.1f" y1="%g" x2="%.1f" y2="%g"/><text x="%.1f" y="%g" text-anchor="middle">+%s</text>`,
			x, y, x, y+4, x, y+16, esc(shortDuration(t)))
	}
}

func shortDuration(d time.Duration) string {
	s := d.String()
	for _, suffix := range []string{"m0s", "h0m"} {
		if strings.HasSuffix(s, suffix) {
			s = s[:len(s)-2]
		}
	}
	return s
}

// yAxis draws a value axis from 0 to top (below the zero line too when
// mirrored) and returns the y of value v.
func yAxis(b *strings.Builder, top float64, mirrored bool, unit string) func(float64) float64 {
	zero, h := padT+plotH, plotH
	if mirrored {
		zero, h = padT+plotH/2, plotH/2
	}
	y := func(v float64) float64 { return zero - h*v/top }
	label := func(v float64) {
		fmt.Fprintf(b, `<text x="%g" y="%.1f" text-anchor="end">%s</text>`, padL-4, y(v)+4, esc(count(math.Abs(v))))
		fmt.Fprintf(b, `<line class="grid" x1="%g" y1="%.1f" x2="%g" y2="%.1f"/>`, padL, y(v), padL+plotW, y(v))
	}
	label(top)
	label(top / 2)
	if mirrored {
		label(-top / 2)
		label(-top)
	}
	fmt.Fprintf(b, `<line class="axis" x1="%g" y1="%.1f" x2="%g" y2="%.1f"/>`, padL, zero, padL+plotW, zero)
	fmt.Fprintf(b, `<text class="unit" x="4" y="%g" transform="rotate(-90 10 %g)">%s</text>`, padT+plotH/2, padT+plotH/2, esc(unit))
	return y
}

func count(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

// niceTop rounds a chart's largest value up to 1, 2 or 5 times a power
// of ten.
func niceTop(v float64) float64 {
	if v <= 1 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// stackTotals sums the layers of a stack, bin by bin.
func stackTotals(ss []series, n int) []float64 {
	t := make([]float64, n)
	for _, s := range ss {
		for i, v := range s.Values {
			t[i] += v
		}
	}
	return t
}

// barChart draws stacked bars per bin: up above the axis, down (when
// given) mirrored below it. Each bin has a hover title with its counts.
func barChart(a axis, label, unit string, up, down []series, upName, downName string) template.HTML {
	var b strings.Builder
	svgOpen(&b, label)
	ut, dt := stackTotals(up, a.n), stackTotals(down, a.n)
	top := niceTop(max(sliceMax(ut), sliceMax(dt)))
	y := yAxis(&b, top, down != nil, unit)
	bw := plotW / float64(a.n)
	stack := func(ss []series, sign float64) {
		base := make([]float64, a.n)
		for _, s := range ss {
			fmt.Fprintf(&b, `<g fill="%s">`, esc(s.Color))
			for i, v := range s.Values {
				if v == 0 {
					continue
				}
				y0, y1 := y(sign*base[i]), y(sign*(base[i]+v))
				fmt.Fprintf(&b, `<rect x="%.2f" y="%.2f" width="%.2f" height="%.2f"/>`, padL+bw*float64(i), math.Min(y0, y1), math.Max(bw-0.3, 0.3), math.Abs(y1-y0))
				base[i] += v
			}
			b.WriteString(`</g>`)
		}
	}
	stack(up, 1)
	stack(down, -1)
	for i := range a.n {
		if ut[i]+dt[i] == 0 {
			continue
		}
		title := binTitle(a, i) + ": " + layerText(up, i, upName)
		if down != nil {
			title += "; " + layerText(down, i, downName)
		}
		fmt.Fprintf(&b, `<rect class="hover" x="%.2f" y="%g" width="%.2f" height="%g"><title>%s</title></rect>`, padL+bw*float64(i), padT, bw, plotH, esc(title))
	}
	timeAxis(&b, a)
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// sliceMax is the largest value, 0 at least; empty bins (NaN) are
// skipped.
func sliceMax(v []float64) float64 {
	m := 0.0
	for _, x := range v {
		if x > m {
			m = x
		}
	}
	return m
}

// binTitle names bin i's time range.
func binTitle(a axis, i int) string {
	from := a.start.Add(time.Duration(i) * a.width)
	return from.Local().Format("15:04:05.000") + " +" + a.width.String()
}

// layerText lists a bin's counts by layer: "opened 12 (closed 10, reset 2)".
func layerText(ss []series, i int, name string) string {
	var parts []string
	total := 0.0
	for _, s := range ss {
		if v := s.Values[i]; v > 0 {
			parts = append(parts, s.Name+" "+count(v))
			total += v
		}
	}
	if len(parts) == 0 {
		return name + " 0"
	}
	return name + " " + count(total) + " (" + strings.Join(parts, ", ") + ")"
}

// lineChart draws levels as step lines per bin, and events (drops) as
// bars along the bottom in the same colours.
func lineChart(a axis, label, unit string, lines, bars []series) template.HTML {
	var b strings.Builder
	svgOpen(&b, label)
	top := 0.0
	for _, s := range lines {
		top = max(top, sliceMax(s.Values))
	}
	y := yAxis(&b, niceTop(top), false, unit)
	bw := plotW / float64(a.n)
	for _, s := range bars {
		fmt.Fprintf(&b, `<g class="drops" fill="%s">`, esc(s.Color))
		for i, v := range s.Values {
			if v > 0 {
				fmt.Fprintf(&b, `<rect x="%.2f" y="%g" width="%.2f" height="8"><title>%s: %s %s</title></rect>`,
					padL+bw*float64(i), padT+plotH-8, math.Max(bw, 3), esc(binTitle(a, i)), esc(count(v)), esc(s.Name))
			}
		}
		b.WriteString(`</g>`)
	}
	for _, s := range lines {
		fmt.Fprintf(&b, `<path class="line" stroke="%s" d="%s"><title>%s, peak %s</title></path>`,
			esc(s.Color), stepPath(s.Values, bw, y), esc(s.Name), esc(count(sliceMax(s.Values))))
	}
	timeAxis(&b, a)
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// stepPath draws levels as steps, one bin wide each; an empty bin (NaN)
// breaks the line: nothing is known there.
func stepPath(v []float64, bw float64, y func(float64) float64) string {
	var d strings.Builder
	move := true
	for i, x := range v {
		if math.IsNaN(x) {
			move = true
			continue
		}
		cmd := "L"
		if move {
			cmd, move = "M", false
		}
		fmt.Fprintf(&d, "%s%.1f,%.1f L%.1f,%.1f ", cmd, padL+bw*float64(i), y(x), padL+bw*float64(i+1), y(x))
	}
	return strings.TrimSpace(d.String())
}

// refLine marks a duration on a distribution's axis (the SYN retransmit
// steps).
type refLine struct {
	us    float64
	label string
}

// histChart draws distributions over the log bins, stacked, with a
// logarithmic count axis: the few connections that waited a second
// stay visible beside thousands that took microseconds.
func histChart(label string, ss []series, refs []refLine) template.HTML {
	lo, hi := logBins, 0
	for _, s := range ss {
		for i, v := range s.Values {
			if v > 0 {
				lo, hi = min(lo, i), max(hi, i)
			}
		}
	}
	if hi < lo {
		return ""
	}
	// Whole decades, and at least up to 10 s when a reference line is
	// drawn, so that 1 s and 3 s are on the axis.
	lo = lo / binsPerDecade * binsPerDecade
	hi = (hi/binsPerDecade + 1) * binsPerDecade
	if len(refs) > 0 {
		hi = max(hi, 7*binsPerDecade)
	}
	hi = min(hi, logBins)
	var b strings.Builder
	svgOpen(&b, label)
	totals := stackTotals(ss, logBins)
	top := math.Log10(1 + niceTop(sliceMax(totals)))
	y := func(v float64) float64 { return padT + plotH - plotH*math.Log10(1+v)/top }
	x := func(bin float64) float64 { return padL + plotW*(bin-float64(lo))/float64(hi-lo) }
	for _, v := range []float64{1, 10, 100, 1000, 10000, 100000} {
		if math.Log10(1+v) > top {
			break
		}
		fmt.Fprintf(&b, `<line class="grid" x1="%g" y1="%.1f" x2="%g" y2="%.1f"/><text x="%g" y="%.1f" text-anchor="end">%s</text>`,
			padL, y(v), padL+plotW, y(v), padL-4, y(v)+4, esc(count(v)))
	}
	fmt.Fprintf(&b, `<text class="unit" x="4" y="%g" transform="rotate(-90 10 %g)">connections (log)</text>`, padT+plotH/2, padT+plotH/2)
	histBars(&b, ss, lo, hi, x, y)
	histAxis(&b, lo, hi, x)
	for i, r := range refs {
		// Labels to the left of their line, one below the other: the
		// lines of 1 s and 3 s are close.
		bin := math.Log10(r.us) * binsPerDecade
		fmt.Fprintf(&b, `<line class="ref" x1="%.1f" y1="%g" x2="%.1f" y2="%g"/><text class="ref" x="%.1f" y="%g" text-anchor="end">%s</text>`,
			x(bin), padT, x(bin), padT+plotH, x(bin)-3, padT+12+14*float64(i), esc(r.label))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

func histBars(b *strings.Builder, ss []series, lo, hi int, x, y func(float64) float64) {
	base := make([]float64, logBins)
	for _, s := range ss {
		fmt.Fprintf(b, `<g fill="%s">`, esc(s.Color))
		for i := lo; i < hi; i++ {
			v := s.Values[i]
			if v == 0 {
				continue
			}
			y0, y1 := y(base[i]), y(base[i]+v)
			fmt.Fprintf(b, `<rect x="%.2f" y="%.2f" width="%.2f" height="%.2f"><title>%s to %s: %s %s</title></rect>`,
				x(float64(i)), y1, math.Max(x(float64(i+1))-x(float64(i))-0.5, 0.5), y0-y1,
				esc(output.Duration(int64(binEdge(i)))), esc(output.Duration(int64(binEdge(i+1)))), esc(count(v)), esc(s.Name))
			base[i] += v
		}
		b.WriteString(`</g>`)
	}
}

// histAxis labels the decades of a log axis.
func histAxis(b *strings.Builder, lo, hi int, x func(float64) float64) {
	yb := padT + plotH
	fmt.Fprintf(b, `<line class="axis" x1="%g" y1="%g" x2="%g" y2="%g"/>`, padL, yb, padL+plotW, yb)
	for i := lo; i <= hi; i += binsPerDecade {
		xi := x(float64(i))
		fmt.Fprintf(b, `<line class="tick" x1="%.1f" y1="%g" x2="%.1f" y2="%g"/><text x="%.1f" y="%g" text-anchor="middle">%s</text>`,
			xi, yb, xi, yb+4, xi, yb+16, decadeNames[i/binsPerDecade])
	}
}

// decadeNames label the decades of the log axis, from 1 us.
var decadeNames = [decades + 1]string{"1us", "10us", "100us", "1ms", "10ms", "100ms", "1s", "10s", "100s", "1000s"}

// legend lists a chart's series with their colours.
func legend(ss []series) template.HTML {
	var b strings.Builder
	b.WriteString(`<p class="legend">`)
	for _, s := range ss {
		fmt.Fprintf(&b, `<span><i style="background:%s"></i>%s</span>`, esc(s.Color), esc(s.Name))
	}
	b.WriteString(`</p>`)
	return template.HTML(b.String())
}
