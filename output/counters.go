package output

import (
	"fmt"
	"io"
	"sort"
	"strconv"
)

// counterMeaning says what a counter's rise means, in a load-tester's words.
// %d is the delta.
// TcpExt.TW is LINUX_MIB_TIMEWAITED, which __inet_twsk_schedule()
// (net/ipv4/inet_timewait_sock.c) increments when tcp_time_wait() first
// schedules a timewait sock (LINUX_MIB_TIMEWAITKILLED instead for a timeout
// of 4 s or less); nothing counts its expiry.
var counterMeaning = map[string]string{
	"TcpExt.ListenOverflows":      "%d times a listener's accept queue was full (SYNs or final ACKs dropped)",
	"TcpExt.ListenDrops":          "%d packets dropped by listeners (includes the overflows)",
	"TcpExt.TCPReqQFullDrop":      "%d SYNs dropped: SYN queue full and syncookies off",
	"TcpExt.TCPReqQFullDoCookies": "%d SYNs answered with a syncookie: SYN queue full",
	"TcpExt.SyncookiesSent":       "%d syncookies sent",
	"TcpExt.SyncookiesRecv":       "%d ACKs carried a valid syncookie (a full accept queue can still turn them away)",
	"TcpExt.SyncookiesFailed":     "%d ACKs carried an invalid or expired syncookie",
	"TcpExt.TCPSynRetrans":        "%d SYNs and SYN-ACKs retransmitted",
	"TcpExt.TCPTimeouts":          "%d retransmission timer expiries (handshakes included)",
	"TcpExt.TCPAbortOnData":       "%d connections reset: closed with data arriving, or SO_LINGER 0",
	"TcpExt.TCPAbortOnClose":      "%d connections reset: closed with unread data",
	"TcpExt.TCPAbortOnMemory":     "%d connections reset: out of socket memory",
	"TcpExt.TCPAbortOnTimeout":    "%d connections dropped: too many retransmissions",
	"TcpExt.TCPAbortOnLinger":     "%d connections reset: FIN_WAIT2 with TCP_LINGER2 < 0",
	"TcpExt.EmbryonicRsts":        "%d requests (SYN_RECV) ended by a reset, received or sent by the listener",
	"TcpExt.TW":                   "%d sockets entered TIME_WAIT (counted on entry, not when it ends)",
	"TcpExt.TCPTimeWaitOverflow":  "%d TIME_WAIT sockets not created: tcp_max_tw_buckets reached",
	"TcpExt.TCPRetransFail":       "%d retransmits failed to leave the host",
	"TcpExt.TCPDeferAcceptDrop":   "%d connections dropped by TCP_DEFER_ACCEPT",
	"Tcp.AttemptFails":            "%d connection attempts failed",
	"Tcp.EstabResets":             "%d established connections reset",
	"Tcp.OutRsts":                 "%d resets sent",
	"Tcp.RetransSegs":             "%d segments retransmitted",
	"Tcp.ActiveOpens":             "%d connects started",
	"Tcp.PassiveOpens":            "%d connections accepted by listeners",
}

// ReportedCounters lists the kernel counters a summary shows.
func ReportedCounters() []string {
	out := make([]string, 0, len(counterMeaning))
	for k := range counterMeaning {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// CounterMeaning explains one counter's delta.
func CounterMeaning(name string, delta uint64) string {
	if m, ok := counterMeaning[name]; ok {
		return fmt.Sprintf(m, delta)
	}
	return ""
}

func appendCounterDeltas(b []byte, ds []CounterDelta) []byte {
	b = append(b, '[')
	for i, d := range ds {
		if i > 0 {
			b = append(b, ',')
		}
		o := newObj(b)
		o.uint("netns", uint64(d.NetNS))
		o.str("counter", d.Counter)
		o.uint("delta", d.Delta)
		o.str("meaning", CounterMeaning(d.Counter, d.Delta))
		if d.Created {
			o.boolean("netns_created", true)
		}
		if d.Unattributed != nil {
			o.uint("unattributed", *d.Unattributed)
		}
		b = o.end()
	}
	return append(b, ']')
}

// CounterTable renders the counters that moved.
func CounterTable(w io.Writer, ds []CounterDelta) error { return CounterTableData(ds).Render(w) }

// CounterTableData is CounterTable's data.
func CounterTableData(ds []CounterDelta) Table {
	var rows [][]string
	for _, d := range ds {
		ns := strconv.FormatUint(uint64(d.NetNS), 10)
		if d.Created {
			ns += " (new)"
		}
		meaning := CounterMeaning(d.Counter, d.Delta)
		if d.Unattributed != nil && *d.Unattributed > 0 {
			meaning += fmt.Sprintf("; %d not attributed to one listener", *d.Unattributed)
		}
		rows = append(rows, []string{d.Counter, ns, strconv.FormatUint(d.Delta, 10), meaning})
	}
	return Table{"Kernel counters", []string{"KERNEL COUNTER", "NETNS", "DELTA", "MEANING"}, rows}
}
