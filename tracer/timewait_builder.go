package tracer

import (
	"net/netip"
	"time"
)

// The TIME_WAIT a cleanly closed record leaves behind (tcp_time_wait()
// hands the tuple to a timewait sock, which no tracepoint names), what
// the builder tells the TIME_WAIT tracker of it, and the resets that end
// it early.

// timeWaitEntry is a client's TIME_WAIT whose record is already written,
// remembered for 60 s so that a reset killing it still frees its port.
type timeWaitEntry struct {
	atNs      int64 // entered, Unix ns
	netns     uint32
	ambiguous bool // two namespaces hold this tuple in TIME_WAIT
}

// enteredTimeWait: the record closed cleanly from FIN_WAIT2 or CLOSING,
// so tcp_time_wait() gave its tuple to a timewait sock.
func (c *Connection) enteredTimeWait() bool {
	if !c.established || c.pending || c.closedAt.IsZero() {
		return false
	}
	if c.Outcome != OutcomeUnknown {
		return c.Outcome == OutcomeTimeWait
	}
	return c.outcome() == OutcomeTimeWait
}

// timeWaitAlive: c's timewait sock may still live at `at`.
func (c *Connection) timeWaitAlive(at time.Time) bool {
	return c.twKilledAt.IsZero() && !at.Before(c.closedAt) && at.Sub(c.closedAt) < TimeWaitLen && c.enteredTimeWait()
}

func (b *Builder) rfc1337On(netns uint32) bool {
	if b.cfg.RFC1337 == nil {
		return false
	}
	on, ok := b.rfc1337[netns]
	if !ok {
		on = b.cfg.RFC1337(netns)
		b.rfc1337[netns] = on
	}
	return on
}

// killTimeWait: the end with tuple local->remote in netns sent a reset,
// which reaches the other end. When that end is in TIME_WAIT, the reset
// destroys its timewait sock: tcp_timewait_state_process() kills a
// timewait sock on an RST whose seq is its rcv_nxt (inet_twsk_deschedule_put(),
// unless net.ipv4.tcp_rfc1337=1) or, in its FIN_WAIT2 substate, on any
// in-window RST. No tracepoint tcpscope uses sees the victim:
// tcp_receive_reset fires only in tcp_reset() for full sockets, and
// tcp_v4_rcv() frees the RST through kfree_skb, which tcpscope follows only
// for listen overflows. The sender is seen: a listener or
// a socketless reset answering the timewait sock's own ACK (the reset's seq
// is that ACK's ack_seq, the victim's rcv_nxt, tcp_v4_send_reset()), or the
// other end's full socket aborting (seq snd_nxt, the victim's rcv_nxt once
// that end's FIN was acknowledged).
func (b *Builder) killTimeWait(netns uint32, local, remote netip.AddrPort, ev *Event) {
	if !local.Addr().IsValid() || local.Port() == 0 || remote.Port() == 0 {
		return
	}
	// A record still in its grace period: the same namespace, else the one
	// other namespace where that tuple's TIME_WAIT lives.
	var victim *Connection
	if c, ok := b.tuples[newTupleKey(netns, remote, local)]; ok {
		if c.timeWaitAlive(ev.Time) {
			victim = c
		}
	} else if s, ok := b.tuples[newTupleKey(netns, local, remote)]; ok && s.PeerID != 0 {
		// The sender's record names its other end.
		if c, ok := b.conns[s.PeerID]; ok && c.NetNS != netns && c.Local == remote && c.Remote == local && c.timeWaitAlive(ev.Time) {
			victim = c
		}
	} else {
		for c := b.ends[newEndKey(remote, local)]; c != nil; c = c.endNext {
			if c.NetNS == netns || !c.timeWaitAlive(ev.Time) {
				continue
			}
			if victim != nil {
				return // ambiguous
			}
			victim = c
		}
	}
	if victim != nil {
		if !b.rfc1337On(victim.NetNS) {
			victim.timeWaitKilled(ev)
		}
		return
	}
	k := newEndKey(remote, local)
	if e, ok := b.timeWaits[k]; ok && e.live(ev.Time) && !e.ambiguous && !b.rfc1337On(e.netns) {
		b.releaseTimeWait(k, e, ev.Time)
	}
}

// live: the entry's timewait sock may still exist at `at`.
func (e timeWaitEntry) live(at time.Time) bool {
	ns := at.UnixNano()
	return ns >= e.atNs && ns-e.atNs < int64(TimeWaitLen)
}

// timeWaitReset: a timewait sock sent a reset (TCP_TIMEWAIT_SOCKET):
// tcp_timewait_state_process() answered new data or a SYN in its FIN_WAIT2
// substate with TCP_TW_RST, and tcp_v4_rcv()/tcp_v6_rcv() then destroy it
// (inet_twsk_deschedule_put()). The timewait sock keeps the full socket's
// cookie and tuple.
func (b *Builder) timeWaitReset(ev *Event) {
	if c, ok := b.conns[ev.Cookie]; ok && ev.Cookie != 0 && c.timeWaitAlive(ev.Time) {
		c.timeWaitKilled(ev)
		return
	}
	k := newEndKey(ev.Local, ev.Remote)
	if e, ok := b.timeWaits[k]; ok && !e.ambiguous && e.netns == ev.NetNS && e.live(ev.Time) {
		b.releaseTimeWait(k, e, ev.Time)
		return
	}
	b.orphans++
}

// timeWaitKilled: the reset ev killed c's timewait sock.
func (c *Connection) timeWaitKilled(ev *Event) {
	c.twKilledAt, c.twKillReason, c.twKillHasRsn = ev.Time, ev.Reason, ev.HasReason
	c.setFlag(FlagTimeWaitKilled)
}

// maxTimeWaits bounds the written TIME_WAIT clients remembered (the
// kernel's own default tcp_max_tw_buckets is of this order).
const maxTimeWaits = 1 << 18

// timeWaitConcluded settles what OnTimeWait was told at the close: takes it
// back when the record concluded otherwise, tells a kill, and remembers a
// live TIME_WAIT for a later one.
func (b *Builder) timeWaitConcluded(c *Connection) {
	// Only a client's TIME_WAIT holds an ephemeral port connect() needs;
	// a server's sits on its listening port and exhausts nothing.
	if c.Outcome != OutcomeTimeWait || c.Role != RoleClient || !c.tupleKnown {
		if c.twTold && b.cfg.OnTimeWaitUndone != nil {
			b.cfg.OnTimeWaitUndone(c.NetNS, c.Local, c.Remote, c.closedAt)
		}
		return
	}
	if !c.twTold && b.cfg.OnTimeWait != nil {
		b.cfg.OnTimeWait(c.NetNS, c.Local, c.Remote, c.closedAt)
	}
	if !c.twKilledAt.IsZero() {
		if b.cfg.OnTimeWaitKilled != nil {
			b.cfg.OnTimeWaitKilled(c.NetNS, c.Local, c.Remote, c.closedAt, c.twKilledAt)
		}
		return
	}
	if b.cfg.OnTimeWaitKilled == nil {
		return // nothing to tell of a later kill
	}
	k := newEndKey(c.Local, c.Remote)
	e, ok := b.timeWaits[k]
	switch {
	case ok && e.netns != c.NetNS && e.live(c.closedAt):
		e.ambiguous = true
		b.timeWaits[k] = e
		return
	case !ok && len(b.timeWaits) >= maxTimeWaits:
		return
	}
	b.timeWaits[k] = timeWaitEntry{atNs: c.closedAt.UnixNano(), netns: c.NetNS}
}

func (b *Builder) releaseTimeWait(k endKey, e timeWaitEntry, at time.Time) {
	delete(b.timeWaits, k)
	if b.cfg.OnTimeWaitKilled != nil {
		local, remote := k.addrs()
		b.cfg.OnTimeWaitKilled(e.netns, local, remote, time.Unix(0, e.atNs), at)
	}
}

// expireTimeWaits forgets TIME_WAITs over 60 s old, sweeping the whole
// map once every 60 s rather than keeping a queue per entry.
func (b *Builder) expireTimeWaits(now time.Time) {
	if now.Sub(b.twSweptAt) < TimeWaitLen {
		return
	}
	b.twSweptAt = now
	for k, e := range b.timeWaits {
		if !e.live(now) {
			delete(b.timeWaits, k)
		}
	}
}
