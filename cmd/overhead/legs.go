package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// leg is one load run, untraced (t nil) or under one tracer.
type leg struct {
	t         *tracer
	round     int
	conns     uint64
	seconds   float64
	machineUs float64 // busy CPU of the whole machine per connection
	cpu       time.Duration
	progs     map[string]progCost
	items     uint64 // events or records the tracer reports
	itemWord  string
	lost      uint64
	export    int64 // bytes of tcpscope's export, -1 if none
	exportNA  string
}

func (l leg) rate() float64 { return float64(l.conns) / l.seconds }

// legResults are the legs in the order they ran, and the tracers that
// refused to run (an option older binaries lack) with their reason.
type legResults struct {
	legs      []leg
	refused   map[string]string
	refusedBy []*tracer
}

// legs runs the rounds: in each, an untraced leg and then one leg per
// tracer, so that a slow drift of the host touches every kind alike.
func (b *bench) legs(ctx context.Context, tracers []*tracer) (legResults, error) {
	res := legResults{refused: map[string]string{}}
	b.load(ctx, time.Second) // warm up: caches, the listener's queue, CPU frequency
	for round := 1; round <= b.o.legs; round++ {
		for _, t := range append([]*tracer{nil}, tracers...) {
			if t != nil && res.refused[t.key] != "" {
				continue
			}
			l, err := b.runLeg(ctx, t)
			l.round = round
			if t != nil && t.optional && errors.Is(err, errRefused) {
				res.refused[t.key] = firstLine(strings.TrimPrefix(err.Error(), t.label+" "))
				res.refusedBy = append(res.refusedBy, t)
				fmt.Fprintf(os.Stderr, "%s: n/a: %v\n", t.label, err)
				continue
			}
			if err != nil {
				return res, fmt.Errorf("running leg %d of %s: %w", round, label(t), err)
			}
			progress(round, l)
			res.legs = append(res.legs, l)
		}
	}
	return res, nil
}

func label(t *tracer) string {
	if t == nil {
		return "untraced"
	}
	return t.label
}

func progress(round int, l leg) {
	fmt.Fprintf(os.Stderr, "leg %d %-28s %7.0f conn/s", round, label(l.t), l.rate())
	if l.t != nil {
		fmt.Fprintf(os.Stderr, "  cpu %.2fs  %s %d  lost %d", l.cpu.Seconds(), l.itemWord, l.items, l.lost)
	}
	fmt.Fprintln(os.Stderr)
}

func (b *bench) runLeg(ctx context.Context, t *tracer) (leg, error) {
	l := leg{t: t, export: -1}
	if t == nil {
		return l, b.measureLoad(ctx, &l)
	}
	p, err := b.start(t)
	if err != nil {
		return l, err
	}
	defer p.cleanup()
	if err := p.waitReady(ctx, t); err != nil {
		p.kill()
		return l, err
	}
	progs, err := programsOf(p.cmd.Process.Pid)
	if err != nil {
		p.kill()
		return l, err
	}
	defer progs.close()
	if err := measureTraced(ctx, b, p, progs, &l); err != nil {
		return l, err
	}
	return l, readReport(p, &l)
}

// measureTraced runs the load under the ready tracer p and stops it. Its
// CPU counts from the load's start to its exit (the drain and last writes
// included, start-up excluded); its programs' runs likewise.
func measureTraced(ctx context.Context, b *bench, p *proc, progs *programs, l *leg) error {
	before, err := progs.snapshot()
	if err != nil {
		p.kill()
		return err
	}
	cpu0, err := processCPU(p.cmd.Process.Pid)
	if err != nil {
		p.kill()
		return err
	}
	if err := b.measureLoad(ctx, l); err != nil {
		p.kill()
		return err
	}
	if err := p.stop(); err != nil {
		return err
	}
	after, err := progs.snapshot()
	if err != nil {
		return err
	}
	l.cpu = p.cpu() - cpu0
	l.progs = progs.delta(before, after)
	return nil
}

func (b *bench) measureLoad(ctx context.Context, l *leg) error {
	m0, err := readMachineTicks()
	if err != nil {
		return err
	}
	start := time.Now()
	l.conns = b.load(ctx, b.o.legLen)
	l.seconds = time.Since(start).Seconds()
	if err := ctx.Err(); err != nil {
		return err
	}
	m1, err := readMachineTicks()
	if err != nil {
		return err
	}
	if l.conns == 0 {
		return errors.New("measuring load: no connection completed")
	}
	l.machineUs = float64(m1.busy-m0.busy) / userHZ * 1e6 / float64(l.conns)
	return nil
}

var (
	tallyRE     = regexp.MustCompile(`(?m)^tcpscope: (events|records): (\d+)\b.*; lost (\d+)\s*$`)
	recursionRE = regexp.MustCompile(`(?m)^tcpscope: recursion misses: .*; lost (\d+)\s*$`)
	capturedRE  = regexp.MustCompile(`(?m)^(\d+) packets captured`)
	droppedRE   = regexp.MustCompile(`(?m)^(\d+) packets dropped by kernel`)
	toolLostRE  = regexp.MustCompile(`(?m)lost (\d+) events`)
)

// readReport reads what the stopped tracer says it saw and lost, and the
// size of what it wrote.
func readReport(p *proc, l *leg) error {
	stderr := p.stderr.String()
	switch {
	case l.t.export != "":
		if err := tcpscopeTally(stderr, l); err != nil {
			return err
		}
		return exportSize(p, l)
	case l.t.lines:
		l.itemWord = "lines"
		l.lost = sumMatches(toolLostRE, stderr)
		n, err := countLines(p.stdout)
		l.items = n
		return err
	default:
		l.itemWord = "packets"
		l.items = sumMatches(capturedRE, stderr)
		l.lost = sumMatches(droppedRE, stderr)
		return nil
	}
}

// tcpscopeTally reads the closing lines of tcpscope record on stderr:
// "events: N (...); lost M", and in an aggregating build maybe a
// "records: N (...); lost M" line too; the recursion guard's losses count.
func tcpscopeTally(stderr string, l *leg) error {
	ms := tallyRE.FindAllStringSubmatch(stderr, -1)
	if len(ms) == 0 {
		return fmt.Errorf("reading tcpscope's tally: no events/records line in: %s", stderr)
	}
	// What crossed from the kernel: records when the kernel aggregated
	// (the events line then counts the events they held), else events.
	pick := ms[0]
	for _, m := range ms {
		if m[1] == "records" {
			pick = m
		}
	}
	for _, m := range ms {
		lost, _ := strconv.ParseUint(m[3], 10, 64)
		l.lost += lost
	}
	l.items, _ = strconv.ParseUint(pick[2], 10, 64) // \d+ parses unless it overflows
	l.itemWord = pick[1]
	l.lost += sumMatches(recursionRE, stderr)
	return nil
}

func sumMatches(re *regexp.Regexp, s string) uint64 {
	var sum uint64
	for _, m := range re.FindAllStringSubmatch(s, -1) {
		n, _ := strconv.ParseUint(m[1], 10, 64)
		sum += n
	}
	return sum
}
