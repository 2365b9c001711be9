package findings

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/tcpscope/tcpscope/tracer"
)

// acceptQueue: listeners whose accept queue turned connections away.
func (a *Accumulator) acceptQueue(env *Env) []Finding {
	var out []Finding
	for i := range env.Listeners {
		l := &env.Listeners[i]
		flagged := clientGroups(a.overflowByDst, l)
		if g, ok := a.overflowByID[l.ID]; ok {
			flagged.n += g.n
			merge(&flagged.span, g.span)
		}
		// Overflows are the final ACKs seen dropped; SynDropsAttributed,
		// the namespace's ListenOverflows the listener explains beyond
		// them: together every drop attributed to it.
		drops := l.Overflows + l.SynDropsAttributed
		if drops == 0 && flagged.n == 0 {
			continue
		}
		f := Finding{Kind: AcceptQueueOverflow, Severity: Critical, NetNS: l.NetNS, Subject: listenerSubject(l),
			Sysctls: env.quote(l.NetNS, SomaxConn, AbortOnOverflow), First: flagged.span.first, Last: flagged.span.last}
		if f.First.IsZero() {
			f.First, f.Last = l.Start, l.End
		}
		overflows := env.counter(l.NetNS, "TcpExt.ListenOverflows")
		f.Evidence = facts(6,
			Fact{"accept_queue_drops", drops},
			Fact{"overflow_drops", l.Overflows},
			Fact{"syn_drops_attributed", l.SynDropsAttributed},
			Fact{"listen_overflow_connections", flagged.n},
			Fact{"backlog", uint64(l.Backlog)},
			Fact{"peak_accept_queue", uint64(l.PeakQueue)},
			Fact{"full_queue_samples", l.FullSamples},
			Fact{"syn_retransmit_clients", l.SynRetransmitClients},
			Fact{"client_syn_retransmits", l.ClientSynRetransmits},
			Fact{"TcpExt.ListenOverflows", overflows},
			Fact{"TcpExt.ListenDrops", env.counter(l.NetNS, "TcpExt.ListenDrops")},
		)
		// sk_acceptq_is_full() is sk_ack_backlog > sk_max_ack_backlog: the
		// queue takes one connection more than the backlog before it drops.
		f.Mechanism = fmt.Sprintf("The accept queue of %s holds %d connections (its backlog %d, the smaller of the listen() argument and %s, plus one) and peaked at %d: "+
			"the application accepted slower than connections arrived, so the kernel dropped %d SYNs or final ACKs (TcpExt.ListenOverflows +%d in namespace %d). "+
			"A client whose SYN was dropped resends it after 1 s, then 3 s; one whose final ACK was dropped believes it is connected and its request waits for seconds until the server's SYN-ACK retransmit.",
			l.Local, l.Backlog+1, l.Backlog, env.value(l.NetNS, SomaxConn), l.PeakQueue, drops, overflows, l.NetNS)
		abort := "net.ipv4.tcp_abort_on_overflow (not read)"
		switch env.sysctl(l.NetNS, AbortOnOverflow) {
		case "0":
			abort = "net.ipv4.tcp_abort_on_overflow = 0 keeps these drops silent; set to 1 it turns them into resets (\"connection reset by peer\" in ab), which fail at once instead of waiting"
		case "1":
			abort = "net.ipv4.tcp_abort_on_overflow = 1 turns these drops into resets (\"connection reset by peer\" in ab); set to 0 the clients would wait and retry instead"
		}
		f.Advice = fmt.Sprintf("Accept faster (more accepting threads or processes, less work before accept()), and raise the listen() backlog (now %d) together with %s: the smaller of the two applies. %s.",
			l.Backlog, env.value(l.NetNS, SomaxConn), abort)
		out = append(out, f)
	}
	return out
}

// synCookies: listeners that answered SYNs with cookies, and namespaces
// whose counters say cookies were sent for no traced listener.
func (a *Accumulator) synCookies(env *Env) []Finding {
	var out []Finding
	covered := map[uint32]bool{}
	for i := range env.Listeners {
		l := &env.Listeners[i]
		flagged := clientGroups(a.cookieByDst, l)
		if g, ok := a.cookieByID[l.ID]; ok {
			flagged.n += g.n
			merge(&flagged.span, g.span)
		}
		if l.Syncookies == 0 && flagged.n == 0 {
			continue
		}
		covered[l.NetNS] = true
		f := a.cookieFinding(env, l.NetNS, listenerSubject(l), flagged.span,
			Fact{"syncookie_connections", l.Syncookies}, Fact{"syncookie_flagged_connections", flagged.n}, Fact{"backlog", uint64(l.Backlog)})
		if f.First.IsZero() {
			f.First, f.Last = l.Start, l.End
		}
		// tcp_conn_request() sends a cookie when tcp_syncookies is 2 or
		// inet_csk_reqsk_queue_is_full(); tcp_syn_flood_action() logs
		// "Possible SYN flooding" once per listener, but never at 2.
		if env.sysctl(l.NetNS, Syncookies) == "2" {
			f.Mechanism = fmt.Sprintf("net.ipv4.tcp_syncookies = 2 makes the kernel answer every SYN to %s with a SYN cookie, its SYN queue full or not, without logging; %s completed through a cookie. ",
				l.Local, plural(l.Syncookies, "connection")) + cookieLoss
			f.Advice = "Set net.ipv4.tcp_syncookies back to 1 (the default): cookies only when the SYN queue is full."
		} else {
			f.Mechanism = fmt.Sprintf("The SYN queue of %s was full (it holds as many requests as the backlog, %d), so the kernel answered SYNs with SYN cookies (%s) and logged \"Possible SYN flooding on port ...:%d. Sending cookies.\"; %s completed through a cookie. ",
				l.Local, l.Backlog, env.value(l.NetNS, Syncookies), l.Local.Port(), plural(l.Syncookies, "connection")) + cookieLoss
			f.Advice = fmt.Sprintf("If this is your load test and not an attack, raise the listen() backlog (now %d) and %s, and accept faster. %s only limits the SYN queue when syncookies are off.",
				l.Backlog, env.value(l.NetNS, SomaxConn), env.value(l.NetNS, MaxSynBacklog))
		}
		out = append(out, f)
	}
	seen := map[uint32]bool{}
	for _, c := range env.Counters {
		if c.Name != "TcpExt.SyncookiesSent" || c.Delta == 0 || covered[c.NetNS] || seen[c.NetNS] {
			continue
		}
		seen[c.NetNS] = true
		f := a.cookieFinding(env, c.NetNS, fmt.Sprintf("namespace %d", c.NetNS), span{env.Start, env.End})
		f.Mechanism = fmt.Sprintf("A listener of namespace %d had a full SYN queue, or net.ipv4.tcp_syncookies is 2, so the kernel answered SYNs with SYN cookies (%s); no traced listener completed a cookie connection. ",
			c.NetNS, env.value(c.NetNS, Syncookies)) + cookieLoss
		f.Advice = fmt.Sprintf("Find the listener (its port is in the kernel log), raise its listen() backlog and %s, and accept faster. %s only limits the SYN queue when syncookies are off.",
			env.value(c.NetNS, SomaxConn), env.value(c.NetNS, MaxSynBacklog))
		out = append(out, f)
	}
	return out
}

// cookieLoss is what a SYN cookie connection loses.
const cookieLoss = "A cookie remembers only an approximate MSS and, without TCP timestamps, no window scaling or SACK: cookie connections can be slower."

// cookieFinding is a syn_flood_cookies finding with its counters and
// settings; first holds the connection counts, if any.
func (a *Accumulator) cookieFinding(env *Env, netnsIno uint32, subject string, sp span, first ...Fact) Finding {
	counters := []Fact{
		{"TcpExt.SyncookiesSent", env.counter(netnsIno, "TcpExt.SyncookiesSent")},
		{"TcpExt.TCPReqQFullDoCookies", env.counter(netnsIno, "TcpExt.TCPReqQFullDoCookies")},
		{"TcpExt.SyncookiesRecv", env.counter(netnsIno, "TcpExt.SyncookiesRecv")},
		{"TcpExt.SyncookiesFailed", env.counter(netnsIno, "TcpExt.SyncookiesFailed")},
	}
	keep := len(first)
	if keep == 0 {
		keep = 1 // the SyncookiesSent that found it
	}
	return Finding{Kind: SynFloodCookies, Severity: Warning, NetNS: netnsIno, Subject: subject,
		Evidence: facts(keep, append(first, counters...)...),
		Sysctls:  env.quote(netnsIno, Syncookies, MaxSynBacklog, SomaxConn), First: sp.first, Last: sp.last}
}

// timeWaitExhaustion: destinations toward which connects found no local
// port, or whose TIME_WAIT sockets neared the usable local ports.
func (a *Accumulator) timeWaitExhaustion(env *Env) []Finding {
	var out []Finding
	dests := map[dest]bool{}
	for d := range a.exhausted {
		dests[d] = true
	}
	pressure := map[dest]*TimeWait{}
	for i := range env.TimeWait {
		t := &env.TimeWait[i]
		d := dest{t.NetNS, t.Remote}
		if p, ok := pressure[d]; !ok || t.Peak > p.Peak {
			pressure[d] = t
		}
		if t.Warned {
			dests[d] = true
		}
	}
	for d := range dests {
		failed := a.exhausted[d]
		if failed == nil {
			failed = &group{}
		}
		tw := a.timeWait[d]
		if tw == nil {
			tw = &group{}
		}
		var p TimeWait
		if pp := pressure[d]; pp != nil {
			p = *pp
		}
		sev := Warning
		if failed.n > 0 {
			sev = Critical
		}
		sp := failed.span
		merge(&sp, tw.span)
		// The rate of new TIME_WAIT sockets over the connections toward
		// the destination; each holds its port for TCP_TIMEWAIT_LEN (60 s,
		// hard-coded in the kernel).
		var ratePerS uint64
		if secs := tw.span.last.Sub(tw.span.first).Seconds(); secs >= 1 {
			ratePerS = uint64(float64(tw.n) / secs)
		} else {
			ratePerS = tw.n
		}
		f := Finding{Kind: TimeWaitExhaustion, Severity: sev, NetNS: d.netns, Subject: d.to.String(),
			Sysctls: env.quote(d.netns, LocalPortRange, TwReuse), First: sp.first, Last: sp.last}
		f.Evidence = facts(5,
			Fact{"port_exhausted_connections", failed.n},
			Fact{"time_wait_peak", uint64(p.Peak)},
			Fact{"usable_ports", uint64(p.Ports)},
			Fact{"time_wait_connections", tw.n},
			Fact{"time_wait_per_second", ratePerS},
			Fact{"closed_first_by_client", tw.closedHere},
		)
		ports := "the usable local ports"
		if p.Ports > 0 {
			ports = fmt.Sprintf("%d usable local ports (%s)", p.Ports, env.value(d.netns, LocalPortRange))
		}
		var mech strings.Builder
		fmt.Fprintf(&mech, "Connections toward %s were opened at about %d/s and closed first by the client (%d of %d), so the client's end holds each local port in TIME_WAIT for 60 s: %d/s × 60 s = %d ports needed, against %s; TIME_WAIT peaked at %d.",
			d.to, ratePerS, tw.closedHere, tw.n, ratePerS, ratePerS*60, ports, p.Peak)
		if failed.n > 0 {
			fmt.Fprintf(&mech, " %s failed with EADDRNOTAVAIL: no local port was left for this destination.", plural(failed.n, "connect"))
		}
		f.Mechanism = mech.String()
		f.Advice = fmt.Sprintf("In order of preference: reuse connections (HTTP keep-alive, a connection pool) instead of one per request; "+
			"spread over more local addresses or destination ports (each pair has its own ports); widen %s; "+
			"set net.ipv4.tcp_tw_reuse to 1 (now %s) so that outgoing connects may reuse a TIME_WAIT port. "+
			"Having the server close first would move TIME_WAIT to the server instead.",
			env.value(d.netns, LocalPortRange), orNotRead(env.sysctl(d.netns, TwReuse)))
		out = append(out, f)
	}
	return out
}

// plural counts things: "1 connect", "2 connects".
func plural(n uint64, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}

func orNotRead(v string) string {
	if v == "" {
		return "not read"
	}
	return v
}

// connectionRefused: destinations where connects met no listener.
func (a *Accumulator) connectionRefused(env *Env) []Finding {
	var out []Finding
	for d, g := range a.refused {
		f := Finding{Kind: ConnectionRefused, Severity: Warning, NetNS: d.netns, Subject: d.to.String(), First: g.span.first, Last: g.span.last}
		// A listener on that port that started after the first refusal:
		// the server (re)started during the test.
		var later *Listener
		for i := range env.Listeners {
			l := &env.Listeners[i]
			if l.NetNS == d.netns && serves(l, d.to) && l.Start.After(g.span.first) {
				later = l
				break
			}
		}
		appeared := uint64(0)
		if later != nil {
			appeared = 1
		}
		f.Evidence = []Fact{{"refused_connections", g.n}, {"listener_appeared_later", appeared}}
		var mech strings.Builder
		fmt.Fprintf(&mech, "%s to %s between %s and %s met a reset: nothing listened on that port, so the kernel refused them (ECONNREFUSED).",
			plural(g.n, "connect"), d.to, clock(g.span.first), clock(g.span.last))
		if later != nil {
			fmt.Fprintf(&mech, " A listener (%s) started there at %s, after the first refusal: the server was (re)starting during the test.",
				listenerSubject(later), clock(later.Start))
			f.Advice = "Start the load only once the server listens (wait for its port, or a readiness check), and restart servers without closing the listening socket (socket handoff, SO_REUSEPORT)."
		} else {
			f.Advice = "Check the address and port the clients use, and that the server runs and listens there (ss -ltn) in the same network namespace."
		}
		f.Mechanism = mech.String()
		out = append(out, f)
	}
	return out
}

// clock is a time of day for a sentence, in UTC so that a report gives
// the same words anywhere.
func clock(t time.Time) string { return t.UTC().Format("15:04:05.000") }

// handshakeTimeout: destinations toward which connects timed out, their
// SYNs unanswered.
func (a *Accumulator) handshakeTimeout(env *Env) []Finding {
	var out []Finding
	for d, g := range a.timedOut {
		f := Finding{Kind: HandshakeTimeout, Severity: Critical, NetNS: d.netns, Subject: d.to.String(),
			Sysctls: env.quote(d.netns, SynRetries), First: g.span.first, Last: g.span.last}
		// A traced listener of the destination, in the clients' namespace.
		var l *Listener
		for i := range env.Listeners {
			if env.Listeners[i].NetNS == d.netns && serves(&env.Listeners[i], d.to) {
				l = &env.Listeners[i]
				break
			}
		}
		var drops uint64
		if l != nil {
			drops = l.Overflows + l.SynDropsAttributed
		}
		f.Evidence = facts(3,
			Fact{"handshake_timeout_connections", g.n},
			Fact{"syn_retransmits", g.synRtx},
			Fact{"listener_drops", drops},
			Fact{"TcpExt.TCPSynRetrans", env.counter(d.netns, "TcpExt.TCPSynRetrans")},
			Fact{"TcpExt.TCPReqQFullDrop", env.counter(d.netns, "TcpExt.TCPReqQFullDrop")},
		)
		var mech strings.Builder
		// tcp_syn_retries sets connect()'s time budget, not the count of
		// retransmits: retransmits_timed_out() models the exponential
		// backoff of that many retries, and the first
		// tcp_syn_linear_timeouts retransmits (6.5+) come every second,
		// so more SYNs fit into it.
		fmt.Fprintf(&mech, "%s to %s got no answer: %s in all, then connect() gave up with ETIMEDOUT after %s (%s sets that wait). ",
			plural(g.n, "connect"), d.to, plural(g.synRtx, "SYN retransmit"), g.longest.Round(100*time.Millisecond), env.value(d.netns, SynRetries))
		switch {
		case l != nil && drops > 0:
			fmt.Fprintf(&mech, "The traced listener %s dropped %d SYNs or final ACKs with its accept queue full: see accept_queue_overflow.", listenerSubject(l), drops)
			f.Advice = "Make the listener keep up (see accept_queue_overflow): a larger backlog and a faster accept loop."
		case l != nil:
			fmt.Fprintf(&mech, "The traced listener %s counted no drop: the SYNs or its SYN-ACKs were lost between the two (a firewall rule, a route).", listenerSubject(l))
			f.Advice = "Look for what drops packets between client and server: firewall rules (nft list ruleset), routes, a full conntrack table (nf_conntrack: table full in the kernel log)."
		default:
			mech.WriteString("No traced listener served that address in this namespace: the SYNs were lost on the way (a firewall dropping them, a route to nowhere, or a host that is down).")
			f.Advice = "Check that the server is up and reachable from the client (firewall rules, routes, the address); trace the server's namespace too (--netns) to see whether its listener drops them."
		}
		f.Mechanism = mech.String()
		out = append(out, f)
	}
	return out
}

// lateFinalACK: listeners whose handshakes waited long in SYN_RECV while
// they resent their SYN-ACK: the clients' final ACKs came late.
func (a *Accumulator) lateFinalACK(env *Env) []Finding {
	var out []Finding
	for i := range env.Listeners {
		l := &env.Listeners[i]
		g, ok := a.lateACK[l.ID]
		if !ok {
			continue
		}
		f := Finding{Kind: LateFinalACK, Severity: Warning, NetNS: l.NetNS, Subject: listenerSubject(l),
			Sysctls: env.quote(l.NetNS, SynAckRetries), First: g.span.first, Last: g.span.last}
		drops := l.Overflows + l.SynDropsAttributed
		f.Evidence = facts(4,
			Fact{"late_final_ack_connections", g.n},
			Fact{"synack_retransmits", g.synAckRtx},
			Fact{"longest_syn_recv_us", uint64(max(g.longestUs, 0))},
			Fact{"accept_queue_drops", drops},
		)
		var mech strings.Builder
		fmt.Fprintf(&mech, "%s to %s waited up to %s in SYN_RECV for the client's final ACK, while the server resent its SYN-ACK %s in all (1 s, 3 s, 7 s... after the first; at most %s times); meanwhile the clients believed they were connected and their requests waited. ",
			plural(g.n, "connection"), l.Local, time.Duration(g.longestUs*1000).Round(time.Millisecond), plural(g.synAckRtx, "time"), env.value(l.NetNS, SynAckRetries))
		if drops > 0 {
			fmt.Fprintf(&mech, "The listener's accept queue was full at times (%d drops): final ACKs that met it were dropped, see accept_queue_overflow.", drops)
			f.Advice = "Fix the accept queue first (see accept_queue_overflow); if late final ACKs remain, look for loss between the clients and the server."
		} else {
			mech.WriteString("The listener dropped none: the final ACKs were lost or delayed between client and server.")
			f.Advice = "Look for what loses or delays packets between the clients and the server: firewall rules, a full conntrack table, an overloaded link, NIC or middlebox; ss -ti on the server shows the retransmits."
		}
		f.Mechanism = mech.String()
		out = append(out, f)
	}
	return out
}

// resetReason is the kernel's reason for the first reset a connection
// sent, "NOT_SPECIFIED" when the kernel gave none.
func resetReason(c *tracer.Connection) string {
	for i := range c.Timeline {
		if it := &c.Timeline[i]; it.Kind == tracer.ItemResetSent && it.HasReason {
			if n := it.Reason.String(); n != "" {
				return n
			}
		}
	}
	return "NOT_SPECIFIED"
}

// resetMeaning is, per reset reason, what made the kernel send it, the
// counter that counts it, and what to change.
var resetMeaning = map[string]struct{ why, counter, advice string }{
	"TCP_ABORT_ON_CLOSE": {"the application closed the socket with received data still unread (often the request or its tail): __tcp_close() sends a reset instead of a FIN, and the peer may lose the response it had not read yet",
		"TcpExt.TCPAbortOnClose", "Read the whole request before closing, or shutdown(SHUT_WR) and drain until the peer's FIN, then close."},
	"TCP_STATE": {"the socket was closed with SO_LINGER {on, 0} (tcp_disconnect()), or aborted (ss -K, tcp_abort), or was waiting in the accept queue of a listener that closed",
		"TcpExt.TCPAbortOnData", "Close without SO_LINGER 0 unless an abortive close is wanted, and close listeners only once their accept queue is drained."},
	"TCP_ABORT_ON_DATA": {"data arrived after the application had closed the socket",
		"TcpExt.TCPAbortOnData", "Keep reading until the peer's FIN (or shutdown(SHUT_WR) first), so that late data does not meet a closed socket."},
	"TCP_ABORT_ON_MEMORY": {"the kernel ran short of socket memory and reset orphaned sockets",
		"TcpExt.TCPAbortOnMemory", "Raise net.ipv4.tcp_mem or close connections faster."},
	"TCP_ABORT_ON_LINGER": {"a socket with TCP_LINGER2 < 0 was closed in FIN_WAIT2",
		"TcpExt.TCPAbortOnLinger", "Do not set TCP_LINGER2 below 0 unless the resets are wanted."},
	"INVALID_SYN": {"the listener reset requests whose final ACK met its full accept queue (tcp_abort_on_overflow = 1): see accept_queue_overflow",
		"TcpExt.ListenOverflows", "Make the listener keep up (see accept_queue_overflow)."},
	"NO_SOCKET": {"segments arrived for connections this end no longer had (after a reset, a crash or a restart), and the kernel answered them with resets",
		"Tcp.OutRsts", "Look at what closed those connections first (their other resets, or a restart) in the timelines."},
	"TCP_FLAGS": {"a listener received a segment with unexpected flags for a connection it no longer had, and answered with a reset",
		"Tcp.OutRsts", "Look at what closed those connections first (their other resets, or a restart) in the timelines."},
}

// resetFindings: resets sent, by the end that sent them (server_resets,
// client_resets) and the kernel's reason.
func (a *Accumulator) resetFindings(env *Env) []Finding {
	resets := maps.Clone(a.resets)
	for k, spans := range a.unreadResets {
		end := a.clientEnd[proc{k.netns, k.comm, k.pid}]
		for _, sp := range spans {
			if sp.last.Before(end.Add(-stopWindow)) {
				g := groupOf(resets, k)
				g.n++
				merge(&g.span, sp)
			}
		}
	}
	var out []Finding
	for k, g := range resets {
		kind, subject := ServerResets, fmt.Sprintf("%s (%s/%d), reason %s", k.end, k.comm, k.pid, k.reason)
		if k.role == tracer.RoleClient {
			kind, subject = ClientResets, fmt.Sprintf("%s/%d toward %s, reason %s", k.comm, k.pid, k.end, k.reason)
		}
		m, known := resetMeaning[k.reason]
		if !known {
			m.why = "the kernel sent resets with reason " + k.reason
			m.advice = "Match the reset times with the application's logs, and look at the connections' timelines (tcpscope report --id)."
		}
		f := Finding{Kind: kind, Severity: Warning, NetNS: k.netns, Subject: subject, First: g.span.first, Last: g.span.last}
		fs := []Fact{{"reset_connections", g.n}}
		if m.counter != "" {
			fs = append(fs, Fact{m.counter, env.counter(k.netns, m.counter)})
		}
		if m.counter != "Tcp.OutRsts" {
			fs = append(fs, Fact{"Tcp.OutRsts", env.counter(k.netns, "Tcp.OutRsts")})
		}
		f.Evidence = facts(1, fs...)
		side := "server"
		if k.role == tracer.RoleClient {
			side = "client"
		}
		f.Mechanism = fmt.Sprintf("The %s %s/%d sent resets on %s (reason %s): %s.", side, k.comm, k.pid, plural(g.n, "connection"), k.reason, m.why)
		f.Advice = m.advice
		out = append(out, f)
	}
	return out
}

// Data retransmits make a data_loss finding in a namespace when at least
// dataLossMin connections, and at least dataLossPercent of its
// connections, retransmitted data: an occasional tail loss probe in a
// healthy run does not.
const (
	dataLossMin     = 3
	dataLossPercent = 5
)

// dataLossFindings: namespaces where a share of the connections
// retransmitted data, and toward which peers.
func (a *Accumulator) dataLossFindings(env *Env) []Finding {
	var out []Finding
	for ns, peers := range a.dataLoss {
		var sum group
		for _, g := range peers {
			sum.n += g.n
			sum.dataRtx += g.dataRtx
			merge(&sum.span, g.span)
		}
		total := a.connsIn[ns]
		if sum.n < dataLossMin || sum.n*100 < total*dataLossPercent {
			continue
		}
		addrs := slices.SortedFunc(maps.Keys(peers), func(x, y netip.Addr) int {
			if c := cmp.Compare(peers[y].n, peers[x].n); c != 0 {
				return c
			}
			return x.Compare(y)
		})
		var top []string
		for i, p := range addrs {
			if i == 5 {
				top = append(top, fmt.Sprintf("%d more", len(addrs)-5))
				break
			}
			top = append(top, fmt.Sprintf("%s (%d)", p, peers[p].n))
		}
		subject := fmt.Sprintf("peer %s", addrs[0])
		if len(addrs) > 1 {
			subject += fmt.Sprintf(" and %s", plural(uint64(len(addrs)-1), "more peer"))
		}
		f := Finding{Kind: DataLoss, Severity: Warning, NetNS: ns, Subject: subject, First: sum.span.first, Last: sum.span.last}
		f.Evidence = facts(4,
			Fact{"data_retransmitted_connections", sum.n},
			Fact{"connections", total},
			Fact{"data_retransmits", sum.dataRtx},
			Fact{"peers", uint64(len(addrs))},
			Fact{"Tcp.RetransSegs", env.counter(ns, "Tcp.RetransSegs")},
			Fact{"TcpExt.TCPTimeouts", env.counter(ns, "TcpExt.TCPTimeouts")},
		)
		f.Mechanism = fmt.Sprintf("%s of %d in namespace %d (%d%%) resent data, %s in all, toward or from %s: segments were lost or their ACKs came late, and each loss costs a retransmission timeout (200 ms or more) or a fast retransmit.",
			plural(sum.n, "connection"), total, ns, sum.n*100/total, plural(sum.dataRtx, "data segment"), strings.Join(top, ", "))
		f.Advice = "Look for loss on the path to those peers: interface drops (ip -s link), a full queue or shaper (tc -s qdisc), firewall or conntrack drops, an overloaded peer; if an accept_queue_overflow finding is listed too, its clients resending requests explain part of it."
		out = append(out, f)
	}
	return out
}
