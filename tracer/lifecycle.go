package tracer

import (
	"sort"
	"time"
)

// The life of a record in the builder: started, evicted when too many are
// followed, held for a grace period after its close, expired, emitted.

func (b *Builder) newConn(ev *Event, id uint64, role Role) *Connection {
	b.started++
	c := b.get()
	c.ID = id
	c.Role = role
	c.NetNS = ev.NetNS
	c.CgroupID = ev.CgroupID
	c.Start = ev.Time
	c.stateAt = ev.Time
	c.HandshakeUs = -1
	c.SynRecvUs = -1
	c.setTuple(ev)
	b.conns[id] = c
	if len(b.conns) > b.cfg.MaxConnections {
		b.evict(c)
	}
	return c
}

// evict emits the least recently active tenth of the connections followed
// (never keep), flagged incomplete: their later events will be unmatched.
func (b *Builder) evict(keep *Connection) {
	type aged struct {
		at time.Time
		c  *Connection
	}
	all := make([]aged, 0, len(b.conns))
	for _, c := range b.conns {
		if c != keep && !c.emitted {
			at := c.stateAt
			if n := len(c.Timeline); n > 0 && c.Timeline[n-1].At.After(at) {
				at = c.Timeline[n-1].At
			}
			all = append(all, aged{at, c})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].at.Before(all[j].at) })
	n := max(len(all)/10, 1)
	for _, a := range all[:min(n, len(all))] {
		a.c.setFlag(FlagIncomplete)
		delete(b.requests, a.c.ID)
		b.emit(a.c)
		b.evicted++
	}
	// Closed ones may still wait in the grace queue: drop emitted entries.
	live := b.closing[:0]
	for _, c := range b.closing {
		if !c.emitted || c.closedAt.IsZero() {
			live = append(live, c)
		}
	}
	b.closing = live
}

// Evicted counts connections emitted early because of MaxConnections.
func (b *Builder) Evicted() uint64 { return b.evicted }

// Expire emits connections closed more than Grace before now, and
// requests whose SYN-ACK timer should have fired again by now but did not:
// the request died (client gone, RST, or tcp_synack_retries reached).
func (b *Builder) Expire(now time.Time) {
	n := 0
	for _, c := range b.closing {
		if now.Sub(c.closedAt) < b.cfg.Grace {
			break
		}
		b.emit(c)
		n++
	}
	b.closing = b.closing[n:]
	for id, c := range b.requests {
		if now.After(requestDeadline(c).Add(b.cfg.Grace)) {
			delete(b.requests, id)
			c.closedAt = requestDeadline(c)
			b.emit(c)
		}
	}
	for k, d := range b.overflowed {
		// A request lives at most about two minutes (TCP_RTO_MAX backoff).
		if now.Sub(d.at) > 3*time.Minute {
			delete(b.overflowed, k)
		}
	}
	for k, a := range b.abandoned {
		if now.Sub(a.at) > 3*time.Minute {
			delete(b.abandoned, k)
		}
	}
	b.expireTimeWaits(now)
}

// Finish emits every connection still followed: closed ones as they ended,
// the rest with outcome open (or timeout, for requests already dead).
func (b *Builder) Finish(now time.Time) {
	for _, c := range b.closing {
		b.emit(c)
	}
	b.closing = b.closing[:0]
	for id, c := range b.requests {
		delete(b.requests, id)
		if now.After(requestDeadline(c)) {
			c.closedAt = requestDeadline(c)
		}
		c.seenUntil = now
		b.emit(c)
	}
	for _, c := range b.conns {
		c.seenUntil = now
		b.emit(c)
	}
	b.settleQueues()
	for id, l := range b.listenerSet {
		delete(b.listenerSet, id)
		l.End, l.Open = now, true
		b.cfg.EmitListener(l)
	}
}

// finish ends a connection whose cookie a new one takes (the socket was
// reused). A closed one stays in the grace queue, which emits it; an open
// one is emitted now.
func (b *Builder) finish(c *Connection, now time.Time) {
	if !c.closedAt.IsZero() {
		if b.conns[c.ID] == c {
			delete(b.conns, c.ID)
		}
		return
	}
	c.closedAt = now
	b.emit(c)
}

func (b *Builder) emit(c *Connection) {
	if c.emitted {
		return
	}
	c.emitted = true
	if b.conns[c.ID] == c {
		delete(b.conns, c.ID)
	}
	if c.tupleKnown {
		k := newTupleKey(c.NetNS, c.Local, c.Remote)
		if b.tuples[k] == c {
			delete(b.tuples, k)
		}
	}
	b.removeEnd(c)
	c.conclude()
	b.timeWaitConcluded(c)
	b.linkAbandoned(c)
	if l := c.target; l != nil && l.ID < syntheticIDBase {
		c.ListenerID = l.ID
	}
	if l := c.listener; l != nil {
		// A listener first known by port gets its cookie later.
		if l.ID < syntheticIDBase {
			c.ListenerID = l.ID
		}
		if c.pending && c.Outcome == OutcomeTimeout {
			l.Abandoned++
		}
	}
	b.cfg.Emit(c)
	b.free = append(b.free, c)
}
