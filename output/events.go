package output

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/cgroups"
)

// EventHeader is the header line of the text event stream.
const EventHeader = "TIME            CPU KIND              NETNS       COOKIE   PID     COMM             LOCAL                    REMOTE                   DETAIL"

// AppendEventText appends one aligned text line (with newline) for ev;
// cg, the socket owner's cgroup, adds where it runs when it names a
// container or a unit: "(in docker:3f2a1b4c5d6e)", "(unit nginx.service)".
func AppendEventText(b []byte, ev *tracer.Event, cg *cgroups.Info) []byte {
	b = ev.Time.AppendFormat(b, "15:04:05.000000")
	b = fmt.Appendf(b, " %-3d %-17s %-11d %-8d %-7d %-16s %-24s %-24s ",
		ev.CPU, ev.Kind, ev.NetNS, ev.Cookie, ev.TGID, ev.Comm.String(), Endpoint(ev.Local), Endpoint(ev.Remote))
	b = append(b, EventDetail(ev)...)
	switch {
	case cg.ContainerID != "":
		b = append(b, " (in "...)
		b = append(b, cg.Short()...)
		b = append(b, ')')
	case cg.Unit != "":
		b = append(b, " (unit "...)
		b = append(b, cg.Unit...)
		b = append(b, ')')
	}
	return append(b, '\n')
}

// Endpoint spells an address and port as ip:port or [v6]:port; "*:0" for
// an address the kernel did not know.
func Endpoint(ap netip.AddrPort) string {
	if !ap.Addr().IsValid() {
		return "*:" + strconv.Itoa(int(ap.Port()))
	}
	return ap.String()
}

// EventDetail is the kind-specific part of a text line.
func EventDetail(ev *tracer.Event) string {
	var s strings.Builder
	switch ev.Kind {
	case tracer.KindState:
		fmt.Fprintf(&s, "%s -> %s", ev.OldState, ev.NewState)
		if ev.NewState == tracer.StateListen {
			fmt.Fprintf(&s, " backlog %d", ev.MaxBacklog)
		}
		if ev.HasOwner {
			fmt.Fprintf(&s, " (listener owner %s/%d)", ev.OwnerComm, ev.OwnerTGID)
		}
	case tracer.KindRetransmit:
		fmt.Fprintf(&s, "%s in %s", ev.Resent(), ev.State)
		if ev.SegFlags != 0 {
			fmt.Fprintf(&s, " (%s)", ev.SegFlags)
		}
		if ev.HasErr && ev.Err != 0 {
			fmt.Fprintf(&s, ", not sent: %s", tracer.ErrnoName(ev.Err))
		}
	case tracer.KindSynAckRetransmit:
		fmt.Fprintf(&s, "SYN-ACK #%d of request, listener %d, accept queue %d/%d",
			ev.NumRetrans+1, ev.ListenerCookie, ev.Backlog, ev.MaxBacklog)
	case tracer.KindResetSent:
		if ev.NoSocket {
			s.WriteString("no socket")
		} else {
			fmt.Fprintf(&s, "in %s", ev.State)
		}
		if ev.SegFlags != 0 {
			fmt.Fprintf(&s, ", answering %s", ev.SegFlags)
		}
		if ev.HasReason {
			fmt.Fprintf(&s, ", reason %s", ev.Reason)
		}
	case tracer.KindResetReceived:
		fmt.Fprintf(&s, "in %s", ev.State)
	case tracer.KindError:
		fmt.Fprintf(&s, "%s in %s", tracer.ErrnoName(ev.Err), ev.State)
	case tracer.KindListenOverflow:
		what := "final ACK"
		if ev.Syncookie {
			what = "final ACK (SYN cookie)"
		}
		fmt.Fprintf(&s, "%s dropped: accept queue full %d/%d, listener %d", what, ev.Backlog, ev.MaxBacklog, ev.ListenerCookie)
	}
	return s.String()
}

// AppendEventJSON appends one JSON Lines record (with newline) for ev,
// with its socket owner's cgroup cg as a connection record has it.
func AppendEventJSON(b []byte, ev *tracer.Event, cg *cgroups.Info) []byte {
	o := newObj(b)
	o.str("type", "event")
	o.time("time", ev.Time)
	o.str("kind", ev.Kind.String())
	o.uint("cookie", ev.Cookie)
	if ev.ListenerCookie != 0 {
		o.uint("listener_cookie", ev.ListenerCookie)
	}
	o.uint("netns", uint64(ev.NetNS))
	o.uint("cpu", uint64(ev.CPU))
	o.uint("pid", uint64(ev.TGID))
	o.uint("tid", uint64(ev.PID))
	o.str("comm", ev.Comm.String())
	if ev.Local.Addr().IsValid() {
		o.str("family", family(ev.Local.Addr()))
		o.str("local_addr", ev.Local.Addr().String())
		o.str("remote_addr", ev.Remote.Addr().String())
	}
	o.uint("local_port", uint64(ev.Local.Port()))
	o.uint("remote_port", uint64(ev.Remote.Port()))
	if ev.State != 0 {
		o.str("state", ev.State.String())
	}
	switch ev.Kind {
	case tracer.KindState:
		o.str("from", ev.OldState.String())
		o.str("to", ev.NewState.String())
		if ev.NewState == tracer.StateListen {
			o.uint("backlog", uint64(ev.MaxBacklog))
		}
	case tracer.KindRetransmit:
		o.str("what", ev.Resent())
		if ev.SegFlags != 0 {
			o.str("segment_flags", ev.SegFlags.String())
		}
		o.boolean("sent", !ev.HasErr || ev.Err == 0)
		if ev.HasErr && ev.Err != 0 {
			o.str("errno", tracer.ErrnoName(ev.Err))
		}
	case tracer.KindSynAckRetransmit:
		o.uint("num_retrans", uint64(ev.NumRetrans))
		o.uint("num_timeout", uint64(ev.NumTimeout))
		o.uint("accept_queue", uint64(ev.Backlog))
		o.uint("backlog", uint64(ev.MaxBacklog))
	case tracer.KindResetSent:
		o.boolean("no_socket", ev.NoSocket)
		if ev.SegFlags != 0 {
			o.str("answered_flags", ev.SegFlags.String())
		}
		if ev.HasReason {
			o.str("reason", ev.Reason.String())
		}
	case tracer.KindError:
		o.str("errno", tracer.ErrnoName(ev.Err))
	case tracer.KindListenOverflow:
		o.uint("accept_queue", uint64(ev.Backlog))
		o.uint("backlog", uint64(ev.MaxBacklog))
		o.boolean("syncookie", ev.Syncookie)
	}
	// The socket owner's cgroup, as a connection record names it.
	o.cgroup(ev.CgroupID, cg)
	if ev.HasOwner {
		o.uint("owner_pid", uint64(ev.OwnerTGID))
		o.str("owner_comm", ev.OwnerComm.String())
	}
	if ev.HasTCPInfo {
		o.uint("total_retrans", uint64(ev.TotalRetrans))
		o.uint("srtt_us", uint64(ev.SRTTUs))
	}
	return append(o.end(), '\n')
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "ipv4"
	}
	return "ipv6"
}

// Tally counts events by kind for the closing line of a recording.
type Tally struct {
	ByKind map[tracer.Kind]uint64
	Lost   uint64
}

// TallyLine renders "events: state 12, retransmit 1, ...; lost 0".
func TallyLine(t Tally) string {
	var parts []string
	var total uint64
	for _, k := range tracer.Kinds() {
		parts = append(parts, fmt.Sprintf("%s %d", k, t.ByKind[k]))
		total += t.ByKind[k]
	}
	return fmt.Sprintf("events: %d (%s); lost %d", total, strings.Join(parts, ", "), t.Lost)
}

// RecursionLine renders the kernel's recursion guard per tracepoint:
// "recursion misses: 3 (inet_sock_set_state 3, 3 handled nested, 0 lost,
// nested program's own misses 0); lost 0".
// Only tracepoints with misses are named.
func RecursionLine(rs []tracer.RecursionMisses) string {
	var total, lost uint64
	var parts []string
	for _, r := range rs {
		total += r.Misses
		lost += r.Lost()
		if r.Misses == 0 && r.NestedMisses == 0 {
			continue
		}
		name := r.Tracepoint[strings.IndexByte(r.Tracepoint, '/')+1:]
		parts = append(parts, fmt.Sprintf("%s %d, %d handled nested, %d lost, nested program's own misses %d",
			name, r.Misses, r.Nested, r.Lost(), r.NestedMisses))
	}
	line := fmt.Sprintf("recursion misses: %d", total)
	if len(parts) > 0 {
		line += " (" + strings.Join(parts, "; ") + ")"
	}
	return fmt.Sprintf("%s; lost %d", line, lost)
}
