package main

import (
	"fmt"
	"io"
	"runtime"
	"sort"
	"time"

	"golang.org/x/sys/unix"
)

// spread is a median over legs and the range it came from.
type spread struct {
	med, lo, hi float64
	n           int
}

func spreadOf(xs []float64) spread {
	if len(xs) == 0 {
		return spread{}
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return spread{med: m, lo: s[0], hi: s[len(s)-1], n: len(s)}
}

// format renders "median (min-max)" with the precision given.
func (s spread) format(prec int) string {
	if s.n == 0 {
		return "-"
	}
	f := func(v float64) string { return fmt.Sprintf("%.*f", prec, v) }
	if s.n == 1 || f(s.lo) == f(s.hi) {
		return f(s.med)
	}
	return f(s.med) + " (" + f(s.lo) + "–" + f(s.hi) + ")"
}

// per collects one value per leg of tracer key ("" for untraced).
func per(legs []leg, key string, v func(leg) (float64, bool)) spread {
	var xs []float64
	for _, l := range legs {
		if l.t != nil && l.t.key == key || l.t == nil && key == "" {
			if x, ok := v(l); ok {
				xs = append(xs, x)
			}
		}
	}
	return spreadOf(xs)
}

func report(w io.Writer, o options, res legResults, skipped []string, mem []memResult, failures uint64) {
	reportHeader(w, o)
	// A load whose exchanges fail is not the load measured.
	fmt.Fprintf(w, "Exchanges that failed, over all legs: %d.\n", failures)
	fmt.Fprintln(w)
	costTable(w, res)
	fmt.Fprintln(w)
	programTable(w, res.legs)
	if len(mem) > 0 {
		fmt.Fprintln(w)
		memoryTable(w, mem)
	}
	for _, s := range skipped {
		fmt.Fprintln(w, "skipped: "+s)
	}
}

func reportHeader(w io.Writer, o options) {
	var uts unix.Utsname
	unix.Uname(&uts)
	fmt.Fprintf(w, "\n%s, %d CPUs, Linux %s; load: %d client threads, closed loop (connect, 16 B, 64 B back, close) in a private netns; %d legs of %s per kind, alternated\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), runtime.NumCPU(), unix.ByteSliceToString(uts.Release[:]),
		o.workers, o.legs, o.legLen)
	fmt.Fprintln(w, "Figures are median (min–max) over legs. A connection is both its ends (client and server socket).")
	fmt.Fprintln(w, "CPU: the tracer's processes from the load's start to their exit (drain and last writes included), plus its BPF programs' run time (bpf_stats).")
}

func costTable(w io.Writer, res legResults) {
	fmt.Fprintln(w, "| tracer | conn/s | traced/untraced | CPU µs/conn: processes | BPF | **total** | machine CPU µs/conn | reported per conn | lost (all legs) | export B/conn |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|")
	untraced := per(res.legs, "", func(l leg) (float64, bool) { return l.rate(), true })
	mach := per(res.legs, "", func(l leg) (float64, bool) { return l.machineUs, true })
	fmt.Fprintf(w, "| untraced | %s | 1 | - | - | - | %s | - | - | - |\n", untraced.format(0), mach.format(1))
	for _, t := range tracersIn(res.legs) {
		fmt.Fprintln(w, costRow(res.legs, t))
	}
	for _, t := range res.refusedBy {
		fmt.Fprintf(w, "| %s | n/a | | | | | | | | n/a (refused, below) |\n", t.label)
	}
	for _, t := range res.refusedBy {
		fmt.Fprintf(w, "\n%s: %s\n", t.label, res.refused[t.key])
	}
}

func costRow(legs []leg, t *tracer) string {
	rates := per(legs, t.key, func(l leg) (float64, bool) { return l.rate(), true })
	ratio := per(legs, t.key, func(l leg) (float64, bool) { return ratioInRound(legs, l) })
	proc := per(legs, t.key, func(l leg) (float64, bool) { return usPerConn(l.cpu, l), true })
	bpf := per(legs, t.key, func(l leg) (float64, bool) { return usPerConn(totalBPF(l), l), true })
	total := per(legs, t.key, func(l leg) (float64, bool) { return usPerConn(l.cpu+totalBPF(l), l), true })
	mach := per(legs, t.key, func(l leg) (float64, bool) { return l.machineUs, true })
	items := per(legs, t.key, func(l leg) (float64, bool) { return float64(l.items) / float64(l.conns), true })
	var lost uint64
	for _, l := range legs {
		if l.t == t {
			lost += l.lost
		}
	}
	disk := per(legs, t.key, func(l leg) (float64, bool) { return float64(l.export) / float64(l.conns), l.export >= 0 })
	word, diskCell := "", disk.format(0)
	for _, l := range legs {
		if l.t == t {
			word = l.itemWord
			if l.exportNA != "" {
				diskCell = l.exportNA
			}
		}
	}
	if t.export == "" {
		diskCell = "-"
	}
	return fmt.Sprintf("| %s | %s | %s | %s | %s | **%s** | %s | %s %s | %d | %s |", t.label, rates.format(0), ratio.format(3),
		proc.format(1), bpf.format(1), total.format(1), mach.format(1), items.format(2), word, lost, diskCell)
}

func usPerConn(d time.Duration, l leg) float64 {
	return float64(d.Nanoseconds()) / 1e3 / float64(l.conns)
}

func totalBPF(l leg) time.Duration {
	var sum time.Duration
	for _, c := range l.progs {
		sum += c.ns
	}
	return sum
}

// ratioInRound compares a traced leg with the untraced leg of its round,
// which ran just before it.
func ratioInRound(legs []leg, l leg) (float64, bool) {
	for _, u := range legs {
		if u.t == nil && u.round == l.round {
			return l.rate() / u.rate(), true
		}
	}
	return 0, false
}

func tracersIn(legs []leg) []*tracer {
	var out []*tracer
	seen := map[*tracer]bool{}
	for _, l := range legs {
		if l.t != nil && !seen[l.t] {
			seen[l.t] = true
			out = append(out, l.t)
		}
	}
	return out
}

func programTable(w io.Writer, legs []leg) {
	fmt.Fprintln(w, "| tracer | BPF program | runs/conn | ns/run |")
	fmt.Fprintln(w, "|---|---|---|---|")
	rows := 0
	for _, t := range tracersIn(legs) {
		for _, name := range programNames(legs, t) {
			runs := per(legs, t.key, func(l leg) (float64, bool) { return float64(l.progs[name].runs) / float64(l.conns), true })
			ns := per(legs, t.key, func(l leg) (float64, bool) {
				c := l.progs[name]
				return float64(c.ns.Nanoseconds()) / float64(c.runs), c.runs > 0
			})
			runsCell := runs.format(2)
			if runs.hi < 0.005 { // runs caused by other traffic of the host, not the load
				runsCell = "<0.01"
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s |\n", t.label, name, runsCell, ns.format(0))
			rows++
		}
	}
	if rows == 0 {
		fmt.Fprintln(w, "| (no tracer with BPF programs ran) | | | |")
	}
}

// programNames are a tracer's programs that ran at all, by name.
func programNames(legs []leg, t *tracer) []string {
	set := map[string]bool{}
	for _, l := range legs {
		if l.t == t {
			for name, c := range l.progs {
				set[name] = set[name] || c.runs > 0
			}
		}
	}
	var names []string
	for name, ran := range set {
		if ran {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

func memoryTable(w io.Writer, mem []memResult) {
	fmt.Fprintln(w, "| tracer | live connections | user space B/conn (RSS growth) | kernel: sockets holding storage | sk_omem B each | kernel B/conn added (untraced: B/conn) |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	for _, m := range mem {
		each := 0.0
		if m.charged > 0 {
			each = float64(m.omem) / float64(m.charged)
		}
		fmt.Fprintf(w, "| %s | %d | %.0f | %d of %d | %.0f | %.0f (%.0f) |\n", m.label, m.conns,
			float64(m.userBytes)/float64(m.conns), m.charged, m.sockets, each,
			float64(m.omem-m.baseOmem)/float64(m.conns), float64(m.baseOmem)/float64(m.conns))
	}
}
