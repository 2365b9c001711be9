package tracer

// State changes, socket errors and retransmits of sockets the builder
// follows.

// onState follows a state change: a listener opening or closing, or a
// connection socket moving on.
func (b *Builder) onState(ev *Event) {
	switch {
	case ev.NewState == StateListen:
		b.onListen(ev)
		return
	case ev.OldState == StateListen && ev.NewState == StateClose:
		b.onUnlisten(ev)
		return
	}
	c := b.stateConn(ev)
	if c == nil {
		return
	}
	if c.CgroupID == 0 {
		// First seen through an event without a full socket.
		c.CgroupID = ev.CgroupID
	}
	c.transition(ev)
	if ev.HasTCPInfo {
		c.BytesReceived, c.BytesAcked = ev.BytesReceived, ev.BytesAcked
	}
	switch ev.NewState {
	case StateEstablished:
		b.onEstablished(c, ev)
	case StateFinWait1, StateLastAck:
		// close() in process context: for a connection that predates the
		// trace this is the best owner we will see.
		if c.PID == 0 && c.Has(FlagPreexisting) {
			c.PID, c.Comm = ev.TGID, b.comm(ev.Comm)
		}
	case StateClose:
		b.onClose(c, ev)
	}
}

// stateConn finds, or starts, the record a state change belongs to.
func (b *Builder) stateConn(ev *Event) *Connection {
	switch {
	case ev.OldState == StateClose && ev.NewState == StateSynSent:
		// connect() runs in process context: the current task is the owner.
		if old, ok := b.conns[ev.Cookie]; ok {
			b.finish(old, ev.Time) // a socket reused by a second connect()
		}
		c := b.newConn(ev, ev.Cookie, RoleClient)
		c.PID, c.Comm = ev.TGID, b.comm(ev.Comm)
		c.synSentAt = ev.Time
		return c
	case ev.OldState == StateListen && ev.NewState == StateSynRecv:
		return b.serverChild(ev)
	}
	c := b.lookup(ev)
	if c == nil {
		return nil
	}
	if !c.tupleKnown {
		c.setTuple(ev)
		b.indexTuple(c)
	}
	if c.state != ev.OldState {
		// The socket left a state this record never saw it enter: a
		// transition between was lost, counted or not.
		b.gaps++
		c.setFlag(FlagIncomplete)
	}
	return c
}

// onClose queues a closed record for its grace period.
func (b *Builder) onClose(c *Connection, ev *Event) {
	if b.discardTwin(c, ev) {
		return
	}
	if !c.closedAt.IsZero() {
		// Already in the grace queue: a second entry would outlive the
		// record, which is recycled once emitted.
		return
	}
	c.closedAt = ev.Time
	b.closing = append(b.closing, c)
	if b.cfg.OnTimeWait != nil && c.Role == RoleClient && c.tupleKnown && c.enteredTimeWait() {
		c.twTold = true
		b.cfg.OnTimeWait(c.NetNS, c.Local, c.Remote, ev.Time)
	}
}

// lookup finds the connection of an event on a socket that is not opening.
// An unknown cookie is a connection that was open before tracing started.
func (b *Builder) lookup(ev *Event) *Connection {
	if ev.Cookie == 0 {
		b.orphans++
		return nil
	}
	if c, ok := b.conns[ev.Cookie]; ok {
		return c
	}
	if ev.State == StateTimeWait || ev.State == StateNewSynRecv || ev.State == StateListen {
		// A timewait sock outlives its emitted connection; request socks
		// and listeners are not connections.
		b.orphans++
		return nil
	}
	return b.preexisting(ev)
}

func (b *Builder) preexisting(ev *Event) *Connection {
	role := RoleClient
	if _, ok := b.listenerByPort[listenKey{ev.NetNS, ev.Local.Port()}]; ok {
		role = RoleServer
	}
	c := b.newConn(ev, ev.Cookie, role)
	c.setFlag(FlagPreexisting)
	if b.lossSeen {
		// It may have opened during the trace, its opening events lost:
		// a loss is noticed up to a tick late, after the record that
		// lost them was, or was not yet, followed.
		c.setFlag(FlagIncomplete)
	}
	if ev.Kind == KindState {
		c.state = ev.OldState
	} else {
		c.state = ev.State
	}
	c.established = c.state != StateSynSent && c.state != StateSynRecv
	b.indexTuple(c)
	return c
}

// discardTwin drops a server child that the kernel created and destroyed
// at once because another child already holds its tuple: when two ACKs
// validate the same SYN cookie, each builds a child, and the second one's
// inet_ehash_nolisten() fails and sets it to CLOSE straight from SYN_RECV.
// That child was never a connection.
func (b *Builder) discardTwin(c *Connection, ev *Event) bool {
	t := c.twin
	if t == nil || c.Role != RoleServer || c.established || ev.OldState != StateSynRecv || t.emitted {
		return false
	}
	t.twin = nil
	delete(b.conns, c.ID)
	k := newTupleKey(c.NetNS, c.Local, c.Remote)
	b.tuples[k] = t
	if p, ok := b.tuples[newTupleKey(c.NetNS, c.Remote, c.Local)]; ok {
		p.PeerID, t.PeerID = t.ID, p.ID
	}
	if l := c.listener; l != nil && l.Children > 0 {
		l.Children--
	}
	b.discarded++
	b.removeEnd(c)
	c.emitted = true
	b.free = append(b.free, c)
	return true
}

func (c *Connection) transition(ev *Event) {
	prev := int64(0)
	// A child socket was never in LISTEN: its LISTEN->SYN_RECV only says it
	// was cloned from the listener.
	if !c.stateAt.IsZero() && len(c.Timeline) > 0 && ev.OldState != StateListen {
		prev = ev.Time.Sub(c.stateAt).Microseconds()
	}
	c.item(ev.Time, Item{Kind: ItemState, From: ev.OldState, To: ev.NewState, PrevStateUs: prev})
	c.state = ev.NewState
	c.stateAt = ev.Time
}

func (c *Connection) setTuple(ev *Event) {
	if !ev.Local.Addr().IsValid() {
		return
	}
	c.Local, c.Remote = ev.Local, ev.Remote
	if ev.Local.Addr().Is4() {
		c.Family = FamilyIPv4
	} else {
		c.Family = FamilyIPv6
	}
}

// onError records the errno a socket error report hands its process.
func (b *Builder) onError(c *Connection, ev *Event) {
	it := Item{Kind: ItemError, State: ev.State, Errno: ErrnoOf(ev.Err)}
	if ev.State == StateClose && it.Errno == ErrnoConnReset && !c.Has(FlagResetReceived) {
		// tcp_disconnect(), the abort of close() with SO_LINGER 0 (and of
		// the unaccepted children of a closing listener), moves the socket
		// to CLOSE first, then sends its reset (from ESTABLISHED and the
		// like) and sets sk_err = ECONNRESET for itself (from SYN_SENT too),
		// and ends with sk_error_report(). A reset received never reports
		// from CLOSE (tcp_reset() returns early there). No process will read
		// this error, so it is no errno of the connection.
		it.Detail = DetailOwnAbort
		c.item(ev.Time, it)
		return
	}
	c.Errno = it.Errno
	c.item(ev.Time, it)
}

func (b *Builder) onRetransmit(ev *Event) {
	c := b.lookup(ev)
	if c == nil {
		return
	}
	what := ev.Resent()
	it := Item{Kind: ItemRetransmit, State: ev.State, Detail: resentDetail(what, ev.SegFlags)}
	if ev.HasErr && ev.Err != 0 {
		// 6.17+: the retransmit failed and nothing left the host; the
		// item's errno says so.
		it.Errno = ErrnoOf(ev.Err)
		c.item(ev.Time, it)
		return
	}
	c.item(ev.Time, it)
	switch what {
	case ResentSyn:
		c.Retransmits.Syn++
		c.setFlag(FlagSynRetransmitted)
		b.synRetransmitToward(c, ev)
	case ResentSynAck:
		c.Retransmits.SynAck++
		c.setFlag(FlagSynAckRetransmitted)
	case ResentFin:
		c.Retransmits.Fin++
		c.setFlag(FlagFinRetransmitted)
	default:
		c.Retransmits.Data++
		c.setFlag(FlagDataRetransmitted)
	}
}

// resentDetail is the detail of a retransmit of what (Event.Resent).
func resentDetail(what string, flags TCPFlags) Detail {
	switch what {
	case ResentSyn:
		return DetailResentSyn
	case ResentSynAck:
		return DetailResentSynAck
	case ResentFin:
		return DetailResentFin
	}
	if flags&TCPFin != 0 {
		return DetailResentDataFin
	}
	return DetailResentData
}

// sortTimeline restores time order after an item was added late.
func sortTimeline(items []Item) {
	for i := 1; i < len(items); i++ {
		for j := i; j > 0 && items[j].At.Before(items[j-1].At); j-- {
			items[j], items[j-1] = items[j-1], items[j]
		}
	}
}
