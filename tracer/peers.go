package tracer

import "time"

// Both ends of a connection are two records. On loopback they share a
// namespace and their tuples are reversed; between namespaces (a veth
// pair, containers) each end has its own namespace, and identical private
// addresses may belong to unrelated namespaces. An end in another
// namespace is linked only when it is the one record there with the
// reversed tuple whose lifetime overlaps this one's.

// indexTuple indexes c under its tuple once known, and links it to its
// other end: in its namespace (reversed tuple), else in another one.
func (b *Builder) indexTuple(c *Connection) {
	if !c.Local.Addr().IsValid() || c.Local.Port() == 0 || c.Remote.Port() == 0 {
		return
	}
	c.tupleKnown = true
	k := newTupleKey(c.NetNS, c.Local, c.Remote)
	if p, ok := b.tuples[k]; ok && p != c && c.Role == RoleServer && p.Role == RoleServer && !p.pending && p.closedAt.IsZero() {
		// Two children for one tuple: see discardTwin.
		c.twin, p.twin = p, c
	}
	b.tuples[k] = c
	p, ok := b.tuples[newTupleKey(c.NetNS, c.Remote, c.Local)]
	if !ok || p == c {
		p = b.otherEnd(c)
	}
	if p == nil || p == c {
		b.addEnd(c) // until its other end comes, maybe in another namespace
		return
	}
	// The other end keeps the peer it has: a listener's reset that
	// becomes a record of its own (onListenerReset) comes after the
	// connection that end belonged to.
	c.PeerID = p.ID
	if p.PeerID == 0 {
		p.PeerID = c.ID
	}
	b.removeEnd(p)
	b.removeEnd(c)
}

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
		if q, ok := b.tuples[newTupleKey(p.NetNS, p.Remote, p.Local)]; ok && q != p {
			continue // p's other end is in p's namespace
		}
		if found != nil {
			return nil // ambiguous: unrelated namespaces with the same addresses
		}
		found = p
	}
	return found
}
