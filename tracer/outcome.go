package tracer

import "time"

// The conclusion of a finished record: its outcome, who closed it, its
// inferred TIME_WAIT steps, its end and its final flags. These are
// functions of the record alone, with no Builder.

// conclude settles outcome, closed_by, TIME_WAIT and the exported flags.
func (c *Connection) conclude() {
	if c.Outcome == OutcomeUnknown {
		noPort := c.noFreePort()
		c.Outcome = c.outcome()
		if noPort {
			c.Errno = ErrnoAddrNotAvail
			c.setFlag(FlagPortExhausted)
		}
	}
	if c.ClosedBy == ClosedByNone {
		c.ClosedBy = c.closedBy()
	}
	if c.Outcome == OutcomeTimeWait {
		c.setFlag(FlagTimeWait)
		c.timeWaitItems()
	} else if !c.twKilledAt.IsZero() {
		c.Flags = c.Flags.Without(FlagTimeWaitKilled)
	}
	for i := range c.Timeline {
		c.Timeline[i].OffsetUs = c.Timeline[i].At.Sub(c.Start).Microseconds()
	}
	switch c.Outcome {
	case OutcomeRefused:
		c.setFlag(FlagRefused)
	case OutcomeTimeout:
		if !c.established {
			c.setFlag(FlagHandshakeTimeout)
		}
	}
	c.End = c.end()
	c.DurationUs = c.End.Sub(c.Start).Microseconds()
}

// timeWaitItems adds the inferred TIME_WAIT steps: entered at the close,
// and killed by a reset when one was seen.
func (c *Connection) timeWaitItems() {
	if c.twKilledAt.IsZero() {
		c.item(c.closedAt, Item{Kind: ItemTimeWait, State: StateTimeWait, Detail: DetailTimeWaitHolds})
		return
	}
	c.item(c.closedAt, Item{Kind: ItemTimeWait, State: StateTimeWait, Detail: DetailTimeWaitHanded})
	c.item(c.twKilledAt, Item{Kind: ItemTimeWaitKilled, State: StateTimeWait, Reason: c.twKillReason, HasReason: c.twKillHasRsn,
		Detail: DetailTimeWaitKill})
	sortTimeline(c.Timeline)
}

// end is when the record ended: its close, or for one still open its last
// sign of life.
func (c *Connection) end() time.Time {
	end := c.closedAt
	if c.Outcome == OutcomeOpen || end.IsZero() {
		end = c.stateAt
		if n := len(c.Timeline); n > 0 && c.Timeline[n-1].At.After(end) {
			end = c.Timeline[n-1].At
		}
		// Still open when tracing stopped: it lived at least until then.
		if c.Outcome == OutcomeOpen && c.seenUntil.After(end) {
			end = c.seenUntil
		}
	}
	return end
}

// noFreePort: CLOSE->SYN_SENT->CLOSE without a local port: tcp_v4_connect()
// set SYN_SENT, then inet_hash_connect() found no free port and connect()
// failed with EADDRNOTAVAIL. No packet was sent.
func (c *Connection) noFreePort() bool {
	return !c.pending && !c.closedAt.IsZero() && !c.established && c.Role == RoleClient && c.Local.Port() == 0 &&
		!c.Has(FlagResetSent) && !c.Has(FlagResetReceived) && c.Retransmits.Syn == 0 && c.Errno == 0
}

// outcome decides how the record ended. It changes nothing.
func (c *Connection) outcome() Outcome {
	closed := !c.closedAt.IsZero()
	switch {
	case c.pending && closed && c.Has(FlagResetSent):
		return OutcomeReset // the listener reset the request (onListenerReset)
	case c.pending && closed:
		return OutcomeTimeout // the request died without a child
	case !closed:
		return OutcomeOpen
	}
	reset := c.Has(FlagResetSent) || c.Has(FlagResetReceived)
	if !c.established {
		switch {
		case c.noFreePort():
			return OutcomeFailed // conclude sets EADDRNOTAVAIL and port_exhausted
		case c.Errno == ErrnoConnRefused || c.Has(FlagResetReceived):
			return OutcomeRefused
		case c.Role == RoleClient && !reset && c.Errno == 0 && c.closedFrom(StateSynSent):
			// SYN_SENT->CLOSE with no reset and no error: the owner closed
			// the socket mid-connect (__tcp_close() -> tcp_close_state()),
			// whatever SYNs were resent. A connect that times out reports
			// ETIMEDOUT first (tcp_write_err()).
			return OutcomeAbandoned
		case c.Errno == ErrnoTimedOut || c.Retransmits.Syn > 0:
			return OutcomeTimeout
		case reset:
			return OutcomeReset
		}
		return OutcomeFailed
	}
	switch {
	case reset || c.Errno == ErrnoConnReset || c.Errno == ErrnoPipe:
		return OutcomeReset
	case c.Errno == ErrnoTimedOut:
		return OutcomeTimeout
	}
	// tcp_time_wait() hands the connection to a timewait sock and closes the
	// full socket from FIN_WAIT2 or CLOSING; no tracepoint names TIME_WAIT.
	if n := c.lastStateItem(); n != nil && n.To == StateClose &&
		(n.From == StateFinWait2 || n.From == StateClosing) && c.Errno == 0 {
		return OutcomeTimeWait
	}
	return OutcomeClosed
}

// closedFrom reports whether the last state change went from `from` to CLOSE.
func (c *Connection) closedFrom(from State) bool {
	n := c.lastStateItem()
	return n != nil && n.To == StateClose && n.From == from
}

func (c *Connection) lastStateItem() *Item {
	for i := len(c.Timeline) - 1; i >= 0; i-- {
		if c.Timeline[i].Kind == ItemState {
			return &c.Timeline[i]
		}
	}
	return nil
}

// closedBy: who sent the first FIN or RST. A local FIN is the move to
// FIN_WAIT1, a remote one the move to CLOSE_WAIT.
func (c *Connection) closedBy() ClosedBy {
	for _, it := range c.Timeline {
		switch {
		case it.Kind == ItemState && it.To == StateFinWait1:
			return ClosedByLocal
		case it.Kind == ItemState && it.To == StateCloseWait:
			return ClosedByRemote
		case it.Kind == ItemResetSent:
			return ClosedByLocal
		case it.Kind == ItemResetReceived:
			return ClosedByRemote
		}
	}
	return ClosedByNone
}
