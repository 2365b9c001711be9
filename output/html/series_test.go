package html

import (
	"fmt"
	"math"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/output"
	"github.com/tcpscope/tcpscope/tracer"
)

// binsText prints a series' bins, "-" for an empty one.
func binsText(v []float64) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = "-"
		if !math.IsNaN(x) {
			parts[i] = fmt.Sprintf("%g", x)
		}
	}
	return strings.Join(parts, " ")
}

func seriesNamed(t *testing.T, ss []series, name string) []float64 {
	t.Helper()
	for _, s := range ss {
		if s.Name == name {
			return s.Values
		}
	}
	t.Fatalf("no series %q in %v", name, ss)
	return nil
}

// TestSampleSeriesBins: a sample covers its interval, not the bin of its
// end; the bins before the first sample and after the last are empty; a
// listener or destination a sample lacks is 0, unless the sample's
// TIME_WAIT list was full.
func TestSampleSeriesBins(t *testing.T) {
	a := axis{start: t0, width: 500 * time.Millisecond, n: 10}
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	full := make([]output.SampleTimeWait, tracer.MaxSampleTimeWait)
	for i := range full {
		full[i] = output.SampleTimeWait{NetNS: 1, RemoteAddr: "10.0.0.2", RemotePort: uint16(1000 + i), Count: 1}
	}
	samples := []output.Sample{
		{Time: at(2000), IntervalMs: 1000, Listeners: []output.SampleListener{{NetNS: 1, Port: 8080, Queue: 1, PeakQueue: 3, Backlog: 4, OverflowDrops: 4}},
			TimeWait: []output.SampleTimeWait{{NetNS: 1, RemoteAddr: "fd00::1", RemotePort: 80, Count: 2}}},
		{Time: at(3000), IntervalMs: 1000, Listeners: []output.SampleListener{{NetNS: 1, Port: 8080, Queue: 1, PeakQueue: 1, Backlog: 8}}},
		{Time: at(4000), IntervalMs: 1000, TimeWait: full},
	}
	queues, drops, tw, _ := sampleSeries(a, samples)
	if len(queues) != 1 {
		t.Fatalf("%d queue lines, want 1 (a backlog change is the same listener)", len(queues))
	}
	for _, c := range []struct{ name, got, want string }{
		{"queue", binsText(seriesNamed(t, queues, "*:8080 (netns 1)")), "- - 3 3 1 1 0 0 - -"},
		{"drops", binsText(seriesNamed(t, drops, "*:8080 (netns 1) drops")), "- - 2 2 0 0 - - - -"},
		{"TIME_WAIT", binsText(seriesNamed(t, tw, "toward [fd00::1]:80 (netns 1)")), "- - 2 2 0 0 - - - -"},
	} {
		if c.got != c.want {
			t.Errorf("%s bins %q, want %q", c.name, c.got, c.want)
		}
	}
}

// TestSampleSeriesCoarseBins: samples finer than the bins: a bin holds the
// peak of the samples in it and the sum of their drops.
func TestSampleSeriesCoarseBins(t *testing.T) {
	a := axis{start: t0, width: 2 * time.Second, n: 2}
	var samples []output.Sample
	for i := range 4 {
		samples = append(samples, output.Sample{Time: t0.Add(time.Duration(i+1) * time.Second), IntervalMs: 1000,
			Listeners: []output.SampleListener{{NetNS: 1, Addr: "10.0.0.1", Port: 80, PeakQueue: uint32(i), OverflowDrops: uint64(i)}}})
	}
	queues, drops, _, _ := sampleSeries(a, samples)
	if got := binsText(queues[0].Values); got != "1 3" {
		t.Errorf("queue bins %q, want %q", got, "1 3")
	}
	if got := binsText(drops[0].Values); got != "1 5" {
		t.Errorf("drops bins %q, want %q", got, "1 5")
	}
}

// TestEndedLeavesOpenOut: a connection still open at the end is opened,
// not ended; the chart's note counts them.
func TestEndedLeavesOpenOut(t *testing.T) {
	conns := gen(4, 10*time.Millisecond)
	conns[0].Outcome, conns[2].Outcome = tracer.OutcomeOpen, tracer.OutcomeOpen
	page := render(t, Options{}, nil, conns...)
	if !strings.Contains(page, "Still open at the end, opened but not ended: 2.") {
		t.Errorf("no note of the 2 connections still open")
	}
	ended := regexp.MustCompile(`; ended [^<]*`)
	var texts []string
	for _, m := range ended.FindAllString(page, -1) {
		texts = append(texts, m)
		if strings.Contains(m, "open") {
			t.Errorf("an open connection counted as ended: %q", m)
		}
	}
	if len(texts) == 0 {
		t.Errorf("no bar says what ended")
	}
}
