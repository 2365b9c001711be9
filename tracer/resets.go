package tracer

// Resets this end sent: from a connection's own socket, from no socket
// (a refused SYN, a segment of a connection already gone), and from a
// listening socket.

func (b *Builder) onResetSent(ev *Event) {
	if ev.NoSocket {
		// tcp_v4_send_reset()/tcp_v6_send_reset() with no socket answer
		// whatever segment found none: a SYN is a refused connect, anything
		// else the segment of a connection this end no longer has.
		if ev.SegFlags == 0 || ev.SegFlags.IsSYN() {
			b.refusedRecord(ev)
		} else {
			b.strayReset(ev, DetailNoSocketSegment, nil)
		}
		return
	}
	switch ev.State {
	case StateListen:
		b.onListenerReset(ev)
		return
	case StateTimeWait:
		b.timeWaitReset(ev)
		return
	}
	c := b.lookup(ev)
	if c == nil {
		return
	}
	c.setFlag(FlagResetSent)
	c.item(ev.Time, resetItem(ev, ev.State, DetailNone))
	if c.tupleKnown {
		// The event's tuple may have decayed (tcp_disconnect() zeroes
		// inet_dport); the record's is the one the reset was sent on.
		b.killTimeWait(c.NetNS, c.Local, c.Remote, ev)
	}
}

// refusedRecord: a reset sent with no socket answers a packet for which no
// socket exists; for a SYN that is a refused connection, recorded on the
// server side as its own record.
func (b *Builder) refusedRecord(ev *Event) {
	b.nextID++
	c := b.newConn(ev, b.nextID, RoleServer)
	c.setFlag(FlagRefused)
	c.setFlag(FlagResetSent)
	c.item(ev.Time, resetItem(ev, 0, DetailNoSocket))
	c.Outcome = OutcomeRefused
	c.ClosedBy = ClosedByLocal
	c.closedAt = ev.Time
	b.indexTuple(c)
	b.closing = append(b.closing, c)
}

// strayReset places a reset sent by no connection socket (the listener's,
// or none at all). It belongs to the connection with that tuple when one is
// followed; a request (known from its SYN-ACK retransmits) dies with it. A
// connection already closed only gains a timeline item: the segment came
// after its end (on loopback a client that connects and closes at once
// sometimes has an ACK arrive microseconds after the server socket closed)
// and, for a cleanly closed one, changes nothing but the peer's TIME_WAIT,
// which the reset ends early (killTimeWait). A handshake
// abandoned moments ago already has its record, which the client's links
// to. Otherwise the reset is a record of its own: the end of a connection
// that this end had already forgotten, outcome reset. Its role is client
// when the other end is a traced server, server otherwise (the usual case:
// a server restarted, or its listener closed, while clients still send).
func (b *Builder) strayReset(ev *Event, detail Detail, l *Listener) {
	state := ev.State
	if ev.NoSocket {
		state = 0
	}
	it := resetItem(ev, state, detail)
	if detail == DetailNoSocketSegment {
		it.Segment = ev.SegFlags
	}
	b.killTimeWait(ev.NetNS, ev.Local, ev.Remote, ev)
	k := newTupleKey(ev.NetNS, ev.Local, ev.Remote)
	if c, ok := b.tuples[k]; ok {
		switch {
		case c.pending && c.closedAt.IsZero():
			it.Effect = ResetDroppedRequest
			c.setFlag(FlagResetSent)
			c.item(ev.Time, it)
			delete(b.requests, c.ID)
			c.closedAt = ev.Time
			b.closing = append(b.closing, c)
		case !c.closedAt.IsZero():
			it.Effect = ResetAfterClose
			c.item(ev.Time, it)
		default:
			c.setFlag(FlagResetSent)
			c.item(ev.Time, it)
		}
		return
	}
	if _, ok := b.abandoned[k]; ok {
		return
	}
	role := RoleServer
	if p, ok := b.tuples[newTupleKey(ev.NetNS, ev.Remote, ev.Local)]; ok && p.Role == RoleServer {
		role = RoleClient
	}
	b.nextID++
	c := b.newConn(ev, b.nextID, role)
	if l != nil {
		c.PID, c.Comm, c.listener = l.PID, l.Comm, l
	}
	c.setFlag(FlagResetSent)
	c.item(ev.Time, it)
	c.ClosedBy = ClosedByLocal
	c.closedAt = ev.Time
	b.indexTuple(c)
	b.joinOverflow(c)
	b.closing = append(b.closing, c)
}

// resetItem is the timeline item of a reset sent.
func resetItem(ev *Event, state State, detail Detail) Item {
	it := Item{Kind: ItemResetSent, State: state, Detail: detail}
	if ev.HasReason {
		it.Reason, it.HasReason = ev.Reason, true
	}
	return it
}

// onListenerReset: a reset sent by the listening socket itself, answering
// the segment whose addresses the event carries. Two kernel paths do this:
//   - tcp_check_req() matched the segment to a request and dropped it, with
//     SK_RST_REASON_INVALID_SYN: the final ACK met a full accept queue while
//     net.ipv4.tcp_abort_on_overflow=1 (the drop that follows is the
//     TCP_LISTEN_OVERFLOW skb drop onOverflow sees), or the segment was not
//     acceptable to the request;
//   - tcp_v4_do_rcv()/tcp_v6_do_rcv() gave the listener a segment that no
//     connection or request matched, and tcp_rcv_state_process() in
//     TCP_LISTEN refuses any ACK (SKB_DROP_REASON_TCP_FLAGS, reason
//     TCP_FLAGS): data from a client whose handshake the server abandoned
//     or whose connection it already destroyed.
//
// Either way the peer sees ECONNRESET; strayReset places it.
func (b *Builder) onListenerReset(ev *Event) {
	l := b.listener(ev, ev.Cookie)
	l.Resets++
	b.strayReset(ev, DetailByListener, l)
}
