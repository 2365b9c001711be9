package tracer

import (
	"testing"
	"time"
)

// record is a finished record as the builder leaves it before conclude:
// its state items, its closing time, its flags.
func record(role Role, established bool, states ...State) *Connection {
	c := &Connection{Role: role, established: established, Start: t0, HandshakeUs: -1, SynRecvUs: -1,
		Local: cli, Remote: srv}
	at := t0
	for i := 0; i+1 < len(states); i++ {
		at = at.Add(time.Millisecond)
		c.item(at, Item{Kind: ItemState, From: states[i], To: states[i+1]})
		c.stateAt = at
	}
	if n := len(states); n > 0 && states[n-1] == StateClose {
		c.closedAt = at
	}
	return c
}

// The outcome and closed_by decisions are functions of the record alone.
func TestOutcomeDecisions(t *testing.T) {
	withErrno := func(c *Connection, e Errno) *Connection { c.Errno = e; return c }
	withFlags := func(c *Connection, fs ...Flag) *Connection { c.Flags = FlagsOf(fs...); return c }
	pending := func(closed bool) *Connection {
		c := &Connection{Role: RoleServer, pending: true, Start: t0}
		if closed {
			c.closedAt = t0.Add(time.Second)
		}
		return c
	}
	synRtx := record(RoleClient, false, StateClose, StateSynSent, StateClose)
	synRtx.Retransmits.Syn = 2
	for _, tc := range []struct {
		name     string
		c        *Connection
		want     Outcome
		closedBy ClosedBy
	}{
		{"request open", pending(false), OutcomeOpen, ClosedByNone},
		{"request died", pending(true), OutcomeTimeout, ClosedByNone},
		{"request reset by the listener", withFlags(pending(true), FlagResetSent), OutcomeReset, ClosedByNone},
		{"still open", record(RoleClient, true, StateClose, StateSynSent, StateEstablished), OutcomeOpen, ClosedByNone},
		{"refused by errno", withErrno(record(RoleClient, false, StateClose, StateSynSent, StateClose), ErrnoConnRefused), OutcomeRefused, ClosedByNone},
		{"refused by a reset", withFlags(record(RoleClient, false, StateClose, StateSynSent, StateClose), FlagResetReceived), OutcomeRefused, ClosedByNone},
		{"abandoned", record(RoleClient, false, StateClose, StateSynSent, StateClose), OutcomeAbandoned, ClosedByNone},
		{"connect timeout", withErrno(record(RoleClient, false, StateClose, StateSynSent, StateClose), ErrnoTimedOut), OutcomeTimeout, ClosedByNone},
		{"SYNs resent, then closed by the app", synRtx, OutcomeAbandoned, ClosedByNone},
		{"server child reset", withFlags(record(RoleServer, false, StateListen, StateSynRecv, StateClose), FlagResetSent), OutcomeReset, ClosedByNone},
		{"server child failed", record(RoleServer, false, StateListen, StateSynRecv, StateClose), OutcomeFailed, ClosedByNone},
		{"time_wait from FIN_WAIT2", record(RoleClient, true, StateEstablished, StateFinWait1, StateFinWait2, StateClose), OutcomeTimeWait, ClosedByLocal},
		{"time_wait from CLOSING", record(RoleClient, true, StateEstablished, StateFinWait1, StateClosing, StateClose), OutcomeTimeWait, ClosedByLocal},
		{"passive close", record(RoleServer, true, StateEstablished, StateCloseWait, StateLastAck, StateClose), OutcomeClosed, ClosedByRemote},
		{"FIN_WAIT2 with an error", withErrno(record(RoleClient, true, StateEstablished, StateFinWait1, StateFinWait2, StateClose), ErrnoTimedOut), OutcomeTimeout, ClosedByLocal},
		{"reset by errno", withErrno(record(RoleClient, true, StateEstablished, StateClose), ErrnoConnReset), OutcomeReset, ClosedByNone},
		{"broken pipe", withErrno(record(RoleClient, true, StateEstablished, StateClose), ErrnoPipe), OutcomeReset, ClosedByNone},
	} {
		if got := tc.c.outcome(); got != tc.want {
			t.Errorf("%s: outcome %s, want %s", tc.name, got, tc.want)
		}
		if got := tc.c.closedBy(); got != tc.closedBy {
			t.Errorf("%s: closed by %q, want %q", tc.name, got, tc.closedBy)
		}
	}
}

// The first FIN or RST decides who closed; a reset item counts like a FIN.
func TestClosedByResets(t *testing.T) {
	c := record(RoleClient, true, StateClose, StateSynSent, StateEstablished)
	c.item(t0.Add(time.Second), Item{Kind: ItemResetReceived})
	c.item(t0.Add(2*time.Second), Item{Kind: ItemState, From: StateEstablished, To: StateClose})
	if got := c.closedBy(); got != ClosedByRemote {
		t.Errorf("closed by %s, want remote", got)
	}
	c = record(RoleServer, true, StateEstablished)
	c.item(t0.Add(time.Second), Item{Kind: ItemResetSent})
	if got := c.closedBy(); got != ClosedByLocal {
		t.Errorf("closed by %s, want local", got)
	}
}

// conclude: no free port sets errno and flag; TIME_WAIT adds its steps,
// and a kill only counts with outcome time_wait; an open record ends when
// tracing stopped.
func TestConclude(t *testing.T) {
	c := record(RoleClient, false, StateClose, StateSynSent, StateClose)
	c.Local = cliSS
	c.conclude()
	if c.Outcome != OutcomeFailed || c.Errno != ErrnoAddrNotAvail || c.Flags != FlagsOf(FlagPortExhausted) {
		t.Errorf("no free port: outcome %s errno %s flags %s", c.Outcome, c.Errno, c.Flags)
	}

	c = record(RoleClient, true, StateEstablished, StateFinWait1, StateFinWait2, StateClose)
	c.conclude()
	last := c.Timeline[len(c.Timeline)-1]
	if c.Flags != FlagsOf(FlagTimeWait) || last.Kind != ItemTimeWait || last.Detail != DetailTimeWaitHolds || !last.At.Equal(c.closedAt) {
		t.Errorf("time_wait: flags %s, last item %+v", c.Flags, last)
	}

	c = record(RoleClient, true, StateEstablished, StateFinWait1, StateFinWait2, StateClose)
	c.timeWaitKilled(&Event{Time: c.closedAt.Add(time.Second), Reason: 6, HasReason: true})
	c.conclude()
	n := len(c.Timeline)
	tw, kill := c.Timeline[n-2], c.Timeline[n-1]
	if c.Flags != FlagsOf(FlagTimeWait, FlagTimeWaitKilled) || tw.Detail != DetailTimeWaitHanded ||
		kill.Kind != ItemTimeWaitKilled || kill.Reason != 6 || !kill.HasReason || kill.Detail != DetailTimeWaitKill {
		t.Errorf("killed time_wait: flags %s, items %+v %+v", c.Flags, tw, kill)
	}

	c = record(RoleClient, true, StateEstablished, StateClose)
	c.timeWaitKilled(&Event{Time: c.closedAt.Add(time.Second)})
	c.conclude()
	if c.Outcome != OutcomeClosed || c.Flags != 0 {
		t.Errorf("a kill without TIME_WAIT: outcome %s flags %s", c.Outcome, c.Flags)
	}

	c = record(RoleClient, true, StateClose, StateSynSent, StateEstablished)
	c.seenUntil = t0.Add(time.Minute)
	c.conclude()
	if c.Outcome != OutcomeOpen || !c.End.Equal(c.seenUntil) || c.DurationUs != time.Minute.Microseconds() {
		t.Errorf("open: outcome %s end %s duration %d", c.Outcome, c.End, c.DurationUs)
	}
}
