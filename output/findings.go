package output

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tcpscope/tcpscope/tracer/findings"
)

// FindingsEnv is what findings need of a recording besides its
// connections, from what its export holds: a live recording and a report
// of its export pass the same start and Extra, and so get the same
// findings (findings.Accumulator.Finish).
func FindingsEnv(start time.Time, x Extra) findings.Env {
	env := findings.Env{Start: start, End: x.End, Sysctls: x.Sysctls}
	for i := range x.Listeners {
		l := &x.Listeners[i]
		env.Listeners = append(env.Listeners, findings.Listener{ID: l.ID, NetNS: l.NetNS, Local: l.Local, PID: l.PID, Comm: l.Comm,
			Backlog: l.Backlog, PeakQueue: l.PeakQueue, Connections: l.Connections, Overflows: l.Overflows, Syncookies: l.Syncookies,
			QueueSamples: l.QueueSamples, FullSamples: l.FullSamples, OverflowsAttributed: l.OverflowsAttributed,
			SynDropsAttributed: l.SynDropsAttributed, DropsAttributed: l.DropsAttributed,
			SynRetransmitClients: l.SynRetransmitClients, ClientSynRetransmits: l.ClientSynRetransmits, Start: l.Start, End: l.End})
	}
	for _, c := range x.Counters {
		env.Counters = append(env.Counters, findings.Counter{NetNS: c.NetNS, Name: c.Counter, Delta: c.Delta})
	}
	for _, t := range x.TimeWait {
		env.TimeWait = append(env.TimeWait, findings.TimeWait{NetNS: t.Key.NetNS, Local: t.Key.Local, Remote: t.Key.Remote,
			Peak: t.Peak, Ports: t.Ports, Entered: t.Total, Warned: t.Warned})
	}
	return env
}

func appendFindings(b []byte, fs []findings.Finding) []byte {
	b = append(b, '[')
	for i := range fs {
		f := &fs[i]
		if i > 0 {
			b = append(b, ',')
		}
		o := newObj(b)
		o.str("kind", f.Kind.String())
		o.str("severity", f.Severity.String())
		o.uint("netns", uint64(f.NetNS))
		o.str("subject", f.Subject)
		o.key("evidence")
		o.b = append(o.b, '[')
		for j, e := range f.Evidence {
			if j > 0 {
				o.b = append(o.b, ',')
			}
			eo := newObj(o.b)
			eo.str("name", e.Name)
			eo.uint("value", e.Value)
			o.b = eo.end()
		}
		o.b = append(o.b, ']')
		o.key("sysctls")
		o.b = appendSysctls(o.b, f.Sysctls)
		o.time("first", f.First)
		o.time("last", f.Last)
		o.str("mechanism", f.Mechanism)
		o.str("advice", f.Advice)
		b = o.end()
	}
	return append(b, ']')
}

// findingsFromRecords converts the summary's "findings"; appendFindings is
// its inverse. One of a kind or severity this build does not know (a newer
// tcpscope's) is left out.
func findingsFromRecords(rs []FindingRecord) []findings.Finding {
	var out []findings.Finding
	for _, r := range rs {
		k, ok := findings.ParseKind(r.Kind)
		s, sok := findings.ParseSeverity(r.Severity)
		if !ok || !sok {
			continue
		}
		f := findings.Finding{Kind: k, Severity: s, NetNS: r.NetNS, Subject: r.Subject, First: r.First, Last: r.Last,
			Mechanism: r.Mechanism, Advice: r.Advice}
		for _, e := range r.Evidence {
			f.Evidence = append(f.Evidence, findings.Fact{Name: e.Name, Value: e.Value})
		}
		for _, v := range r.Sysctls {
			f.Sysctls = append(f.Sysctls, findings.Sysctl{NetNS: v.NetNS, Name: v.Name, Value: v.Value})
		}
		out = append(out, f)
	}
	return out
}

// FindingsText renders the findings, most severe first, as the summary's
// first section: what broke, the numbers that show it, why, and what to
// change. Nothing when there are none.
func FindingsText(w io.Writer, fs []findings.Finding) {
	if len(fs) == 0 {
		return
	}
	fmt.Fprintf(w, "\nFINDINGS (%d, most severe first)\n", len(fs))
	for i := range fs {
		f := &fs[i]
		fmt.Fprintf(w, "%d. %s %s: %s, netns %d, %s to %s\n", i+1, strings.ToUpper(f.Severity.String()), f.Kind, f.Subject, f.NetNS,
			f.First.Local().Format("15:04:05.000"), f.Last.Local().Format("15:04:05.000"))
		ev := make([]string, len(f.Evidence))
		for j, e := range f.Evidence {
			ev[j] = fmt.Sprintf("%s %d", e.Name, e.Value)
		}
		fmt.Fprintf(w, "   evidence: %s\n", strings.Join(ev, ", "))
		if len(f.Sysctls) > 0 {
			ss := make([]string, len(f.Sysctls))
			for j, s := range f.Sysctls {
				ss[j] = fmt.Sprintf("%s = %s", s.Name, s.Value)
			}
			fmt.Fprintf(w, "   settings: %s\n", strings.Join(ss, ", "))
		}
		fmt.Fprintf(w, "   why: %s\n", f.Mechanism)
		fmt.Fprintf(w, "   change: %s\n", f.Advice)
	}
}
