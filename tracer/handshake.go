package tracer

import "time"

// The handshake of a server-side connection: request sockets known from
// their SYN-ACK retransmits, the child a final ACK creates, and how long
// the connection really spent in SYN_RECV.

// serverChild starts a server-side connection. The child socket was cloned
// from its listener (hence LISTEN->SYN_RECV) when the final ACK arrived,
// and carries its request socket's cookie, so SYN-ACK retransmits already
// seen for that request join it here.
func (b *Builder) serverChild(ev *Event) *Connection {
	c, pending := b.requests[ev.Cookie]
	if pending {
		delete(b.requests, ev.Cookie)
		c.pending = false
		c.setTuple(ev)
	} else {
		if old, ok := b.conns[ev.Cookie]; ok {
			b.finish(old, ev.Time)
		}
		c = b.newConn(ev, ev.Cookie, RoleServer)
	}
	l := b.listener(ev, ev.ListenerCookie)
	switch {
	case ev.HasOwner:
		c.PID, c.Comm = ev.OwnerTGID, b.comm(ev.OwnerComm)
	case l != nil && c.PID == 0:
		c.PID, c.Comm = l.PID, l.Comm
	}
	if l != nil {
		c.listener = l
		l.Children++
	}
	b.indexTuple(c)
	b.joinOverflow(c)
	return c
}

func (b *Builder) onEstablished(c *Connection, ev *Event) {
	if c.established {
		return
	}
	c.established = true
	switch c.Role {
	case RoleClient:
		if !c.synSentAt.IsZero() {
			c.HandshakeUs = ev.Time.Sub(c.synSentAt).Microseconds()
		}
	case RoleServer:
		b.measureSynRecv(c, ev)
		if l := c.listener; l != nil && c.SynRecvUs >= 0 {
			l.SynRecv.Add(c.SynRecvUs)
		}
	}
}

// measureSynRecv sets the real SYN_RECV stay: from the first SYN-ACK to the
// final ACK, which is the request socket's life, not the child socket's few
// microseconds between LISTEN->SYN_RECV and SYN_RECV->ESTABLISHED.
func (b *Builder) measureSynRecv(c *Connection, ev *Event) {
	switch {
	case c.sntSynAckNs == 0 && ev.HasTCPInfo && ev.TotalRetrans == 0 && (ev.SRTTUs == 0 || ev.SRTTUs%1000 == 0):
		// A SYN cookie child. The kernel keeps no cookie mark on it (the
		// request socket behind it lived only to send the SYN-ACK), but its
		// RTT tells: tcp_get_cookie_sock() never calls tcp_synack_rtt_meas()
		// with a request, so the first RTT sample comes from the timestamp
		// echo, in whole milliseconds (tcp_rtt_tsopt_us), or not at all
		// (srtt 0 without timestamps). A normal child's first sample is
		// now - snt_synack in microseconds, a whole millisecond only by
		// chance (1 in 1000). The SYN-ACK time is unknown.
		c.setFlag(FlagSyncookie)
		if l := c.listener; l != nil {
			l.Syncookies++
		}
		c.SynRecvUs = -1
		return
	case c.sntSynAckNs != 0:
		// tcp_make_synack() stamped the first SYN-ACK (snt_synack, seen on the
		// SYN-ACK retransmit events) with tcp_clock_us(): CLOCK_MONOTONIC.
		c.SynRecvUs = (int64(ev.BootNs) - c.sntSynAckNs) / 1000
		c.SynRecvHow = SynRecvFromSynAck
	case ev.HasTCPInfo && ev.TotalRetrans == 0 && ev.SRTTUs > 0:
		// tcp_synack_rtt_meas() seeds srtt with now - snt_synack only when the
		// request never retransmitted (total_retrans = req->num_retrans).
		c.SynRecvUs = int64(ev.SRTTUs)
		c.SynRecvHow = SynRecvFromSRTT
	case ev.HasRTO && ev.TotalRTO > 0:
		// tcp_create_openreq_child() sets total_rto_time = now - snt_synack
		// in ms when the request's timer fired (6.7+).
		c.SynRecvUs = int64(ev.TotalRTOTimeMs) * 1000
		c.SynRecvHow = SynRecvFromRTOTime
	default:
		c.SynRecvUs = ev.Time.Sub(c.Start).Microseconds()
		c.SynRecvHow = SynRecvFromChildAge
	}
	if c.SynRecvHow != SynRecvFromChildAge {
		c.requestStarted(ev.Time.Add(-time.Duration(c.SynRecvUs) * time.Microsecond))
	}
	if ev.HasTCPInfo && ev.TotalRetrans > c.Retransmits.SynAck {
		// SYN-ACK retransmits whose events were filtered or lost still show
		// in the child's total_retrans, inherited from req->num_retrans.
		c.Retransmits.SynAck = ev.TotalRetrans
	}
	if c.Retransmits.SynAck > 0 {
		c.setFlag(FlagSynAckRetransmitted)
	}
	if time.Duration(c.SynRecvUs)*time.Microsecond >= b.cfg.SynRecvThreshold {
		c.setFlag(FlagLongSynRecv)
	}
}

// requestStarted moves a server connection's start back to its first
// SYN-ACK and marks it in the timeline.
func (c *Connection) requestStarted(at time.Time) {
	if len(c.Timeline) > 0 && c.Timeline[0].Kind == ItemSynAck {
		return
	}
	if at.Before(c.Start) {
		c.Start = at
	}
	c.Timeline = append(c.Timeline, Item{})
	copy(c.Timeline[1:], c.Timeline)
	c.Timeline[0] = Item{At: at, Kind: ItemSynAck, State: StateSynRecv, Detail: DetailFirstSynAck}
}

// onSynAck records a SYN-ACK retransmit of a request socket. No state
// tracepoint sees request sockets, so the first one seen starts a pending
// server record that its child (same cookie) takes over.
func (b *Builder) onSynAck(ev *Event) {
	l := b.listener(ev, ev.ListenerCookie)
	if l != nil {
		l.SynAcks++
		l.sawQueue(ev.Backlog, ev.MaxBacklog)
	}
	c, ok := b.conns[ev.Cookie]
	if !ok {
		c = b.newConn(ev, ev.Cookie, RoleServer)
		c.pending = true
		c.state = StateNewSynRecv
		if ev.HasOwner {
			c.PID, c.Comm = ev.OwnerTGID, b.comm(ev.OwnerComm)
		} else if l != nil {
			c.PID, c.Comm = l.PID, l.Comm
		}
		c.listener = l
		b.requests[ev.Cookie] = c
		b.indexTuple(c)
		b.joinOverflow(c)
	}
	if ev.SntSynAckUs != 0 && c.sntSynAckNs == 0 {
		c.sntSynAckNs = int64(ev.SntSynAckUs)*1000 + b.cfg.Clock.MonoToBootNs
		c.requestStarted(time.Unix(0, b.cfg.Clock.OffsetNs+c.sntSynAckNs))
	}
	c.Retransmits.SynAck++
	c.setFlag(FlagSynAckRetransmitted)
	c.lastSynAckAt = ev.Time
	c.numTimeout = ev.NumTimeout
	c.item(ev.Time, Item{Kind: ItemSynAckRetransmit, State: StateSynRecv, Detail: DetailSynAckNo, SynAckNo: ev.NumRetrans + 1})
}

type abandonedRequest struct {
	id uint64
	at time.Time
}

// maxAbandoned bounds the abandoned requests remembered for linking.
const maxAbandoned = 65536

// linkAbandoned: a handshake the server gave up on leaves a client that
// believes it is connected; when that client ends (typically reset by the
// listener once it sends data), its peer is the abandoned request record.
func (b *Builder) linkAbandoned(c *Connection) {
	switch {
	case c.pending && c.Outcome == OutcomeTimeout && c.tupleKnown:
		if len(b.abandoned) < maxAbandoned {
			b.abandoned[newTupleKey(c.NetNS, c.Local, c.Remote)] = abandonedRequest{c.ID, c.closedAt}
		}
	case c.Role == RoleClient && c.PeerID == 0 && c.tupleKnown:
		if a, ok := b.abandoned[newTupleKey(c.NetNS, c.Remote, c.Local)]; ok {
			c.PeerID = a.id
		}
	}
}

// requestDeadline is when the request's next SYN-ACK would have gone out:
// reqsk_timer_handler() re-arms with TCP_TIMEOUT_INIT << num_timeout.
func requestDeadline(c *Connection) time.Time {
	shift := min(int(c.numTimeout)+1, 7)
	backoff := min(time.Second<<shift, 120*time.Second) // TCP_RTO_MAX
	return c.lastSynAckAt.Add(backoff)
}
