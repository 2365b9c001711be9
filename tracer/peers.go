package tracer

import (
	"net/netip"
	"time"
)

// Both ends of a connection are two records. On loopback they share a
// namespace and their tuples are reversed; between namespaces (a veth
// pair, containers) each end has its own namespace, and identical private
// addresses may belong to unrelated namespaces. An end in another
// namespace is linked only when it is the one record there with the
// reversed tuple whose lifetime overlaps this one's.

// addEnd indexes c, which has no other end yet, under its tuple in the
// list of all namespaces'. Linked records leave it.
func (b *Builder) addEnd(c *Connection) {
	k := newEndKey(c.Local, c.Remote)
	if c.inEnds {
		if c.endKey == k {
			return
		}
		b.removeEnd(c)
	}
	c.endKey, c.inEnds = k, true
	c.endNext = b.ends[k]
	b.ends[k] = c
}

func (b *Builder) removeEnd(c *Connection) {
	if !c.inEnds {
		return
	}
	c.inEnds = false
	prev := (*Connection)(nil)
	for p := b.ends[c.endKey]; p != nil; prev, p = p, p.endNext {
		if p != c {
			continue
		}
		switch {
		case prev != nil:
			prev.endNext = p.endNext
		case p.endNext != nil:
			b.ends[c.endKey] = p.endNext
		default:
			delete(b.ends, c.endKey)
		}
		break
	}
	c.endNext = nil
}

// lifetime is a record's span; an open record's has no end.
func (c *Connection) lifetime() (start, end time.Time) {
	return c.Start, c.closedAt
}

// overlaps: the two records lived at the same time.
func overlaps(a, b *Connection) bool {
	as, ae := a.lifetime()
	bs, be := b.lifetime()
	return (ae.IsZero() || !bs.After(ae)) && (be.IsZero() || !as.After(be))
}

// otherEnd finds c's other end in another namespace: the only record with
// the reversed tuple there that lived while c did and has no other end in
// its own namespace or elsewhere.
func (b *Builder) otherEnd(c *Connection) *Connection {
	var found *Connection
	for p := b.ends[newEndKey(c.Remote, c.Local)]; p != nil; p = p.endNext {
		if p == c || p.NetNS == c.NetNS || p.emitted || !overlaps(c, p) {
			continue
		}
		if p.PeerID != 0 {
			return nil // p has its other end: c is a second claimant
		}
		if q, ok := b.tuples[tupleKey{p.NetNS, p.Remote, p.Local}]; ok && q != p {
			continue // p's other end is in p's namespace
		}
		if found != nil {
			return nil // ambiguous: unrelated namespaces with the same addresses
		}
		found = p
	}
	return found
}

// enteredTimeWait: the record closed cleanly from FIN_WAIT2 or CLOSING,
// so tcp_time_wait() gave its tuple to a timewait sock.
func (c *Connection) enteredTimeWait() bool {
	if !c.established || c.pending || c.closedAt.IsZero() {
		return false
	}
	if c.Outcome != "" {
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

// Detail texts of the TIME_WAIT items.
const (
	timeWaitKilledDetail = "handed its local port to a timewait sock"
	timeWaitKillDetail   = "a reset destroyed the timewait sock before its 60s: the port is free"
)

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
	reason := ""
	if ev.HasReason {
		reason = ev.Reason.String()
	}
	// A record still in its grace period: the same namespace, else the one
	// other namespace where that tuple's TIME_WAIT lives.
	var victim *Connection
	if c, ok := b.tuples[tupleKey{netns, remote, local}]; ok {
		if c.timeWaitAlive(ev.Time) {
			victim = c
		}
	} else if s, ok := b.tuples[tupleKey{netns, local, remote}]; ok && s.PeerID != 0 {
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
			victim.timeWaitKilled(ev.Time, reason)
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
	reason := ""
	if ev.HasReason {
		reason = ev.Reason.String()
	}
	if c, ok := b.conns[ev.Cookie]; ok && ev.Cookie != 0 && c.timeWaitAlive(ev.Time) {
		c.timeWaitKilled(ev.Time, reason)
		return
	}
	k := newEndKey(ev.Local, ev.Remote)
	if e, ok := b.timeWaits[k]; ok && !e.ambiguous && e.netns == ev.NetNS && e.live(ev.Time) {
		b.releaseTimeWait(k, e, ev.Time)
		return
	}
	b.orphans++
}

func (c *Connection) timeWaitKilled(at time.Time, reason string) {
	c.twKilledAt, c.twKillReason = at, reason
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
