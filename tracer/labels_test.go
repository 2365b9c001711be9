package tracer

import (
	"slices"
	"testing"
	"time"
)

// The end that aborts with SO_LINGER 0 goes through tcp_disconnect(): CLOSE,
// its reset, then an ECONNRESET report to itself that no process sees. Only
// the end that received the reset has an errno.
func TestLinger0SenderHasNoErrno(t *testing.T) {
	s := &script{}
	clientHandshake(s, 10)
	serverHandshake(s, 11, 100)
	at := time.Millisecond
	s.at(at).ev(st(11, StateEstablished, StateClose, srv, cli))
	s.at(at + 2*time.Microsecond).ev(Event{Kind: KindResetReceived, Cookie: 10, State: StateEstablished, Local: cli, Remote: srv})
	s.at(at + 3*time.Microsecond).ev(st(10, StateEstablished, StateClose, cli, srv))
	s.at(at + 4*time.Microsecond).ev(Event{Kind: KindError, Cookie: 10, Err: 104, State: StateClose, Local: cli, Remote: srv})
	s.at(at + 5*time.Microsecond).ev(Event{Kind: KindResetSent, Cookie: 11, State: StateClose, HasReason: true, Reason: 14, Local: srv, Remote: cli})
	s.at(at + 6*time.Microsecond).ev(Event{Kind: KindError, Cookie: 11, Err: 104, State: StateClose, Local: srv, Remote: cli})
	got := run(s, time.Second)
	cl, sv := got[10], got[11]
	check(t, cl, OutcomeReset, ClosedByRemote, FlagResetReceived)
	check(t, sv, OutcomeReset, ClosedByLocal, FlagResetSent)
	if cl.Errno != ErrnoConnReset {
		t.Errorf("receiver errno %q, want ECONNRESET", cl.Errno)
	}
	if sv.Errno != 0 {
		t.Errorf("sender errno %q, want none: its process closed the socket", sv.Errno)
	}
	last := sv.Timeline[len(sv.Timeline)-1]
	if last.Kind != ItemError || last.Errno != ErrnoConnReset || last.Detail != DetailOwnAbort {
		t.Errorf("sender's last item %+v, want the report kept with an explanation", last)
	}
}

// What a retransmit resent comes from the segment itself: a bare FIN is
// counted apart from data, a FIN riding on data counts as data.
func TestFinRetransmits(t *testing.T) {
	s := &script{}
	clientHandshake(s, 10)
	rtx := func(d time.Duration, state State, flags TCPFlags, data bool) {
		s.at(d).ev(Event{Kind: KindRetransmit, Cookie: 10, State: state, SegFlags: flags, SegData: data, HasErr: true, Local: cli, Remote: srv})
	}
	rtx(10*time.Millisecond, StateEstablished, TCPPsh|TCPAck, true)
	rtx(20*time.Millisecond, StateFinWait1, TCPFin|TCPPsh|TCPAck, true)
	rtx(30*time.Millisecond, StateFinWait1, TCPFin|TCPAck, false)
	rtx(40*time.Millisecond, StateFinWait1, TCPFin|TCPAck, false)
	s.at(50 * time.Millisecond).ev(st(10, StateEstablished, StateFinWait1, cli, srv))
	s.at(60 * time.Millisecond).ev(st(10, StateFinWait1, StateFinWait2, cli, srv))
	s.at(70 * time.Millisecond).ev(st(10, StateFinWait2, StateClose, cli, srv))
	c := run(s, time.Second)[10]
	check(t, c, OutcomeTimeWait, ClosedByLocal, FlagDataRetransmitted, FlagFinRetransmitted, FlagTimeWait)
	if c.Retransmits != (Retransmits{Data: 2, Fin: 2}) {
		t.Errorf("retransmits %+v, want 2 data (one with FIN) and 2 FIN", c.Retransmits)
	}
	var details []Detail
	for _, it := range c.Timeline {
		if it.Kind == ItemRetransmit {
			details = append(details, it.Detail)
		}
	}
	if want := []Detail{DetailResentData, DetailResentDataFin, DetailResentFin, DetailResentFin}; !slices.Equal(details, want) {
		t.Errorf("retransmit items %q, want %q", details, want)
	}

	// Only bare FINs: no data_retransmitted.
	s = &script{}
	clientHandshake(s, 10)
	rtx(10*time.Millisecond, StateFinWait1, TCPFin|TCPAck, false)
	c = run(s, time.Second)[10]
	if c.Has(FlagDataRetransmitted) || !c.Has(FlagFinRetransmitted) || c.Retransmits != (Retransmits{Fin: 1}) {
		t.Errorf("bare FIN: flags %v retransmits %+v", c.Flags, c.Retransmits)
	}
}

func TestResent(t *testing.T) {
	for _, tc := range []struct {
		ev   Event
		want string
	}{
		{Event{State: StateSynSent, SegFlags: TCPSyn}, ResentSyn},
		{Event{State: StateSynRecv, SegFlags: TCPSyn | TCPAck}, ResentSynAck},
		{Event{State: StateFinWait1, SegFlags: TCPFin | TCPAck}, ResentFin},
		{Event{State: StateLastAck, SegFlags: TCPFin | TCPPsh | TCPAck, SegData: true}, ResentData},
		{Event{State: StateEstablished, SegFlags: TCPAck, SegData: true}, ResentData},
		// No segment flags (older recordings): from the state.
		{Event{State: StateSynSent}, ResentSyn},
		{Event{State: StateSynRecv}, ResentSynAck},
		{Event{State: StateFinWait1}, ResentData},
	} {
		if got := tc.ev.Resent(); got != tc.want {
			t.Errorf("%s in %s (data %v): %s, want %s", tc.ev.SegFlags, tc.ev.State, tc.ev.SegData, got, tc.want)
		}
	}
}

// A client whose own process closes the socket in SYN_SENT gave up: no
// reset, no error, whatever SYNs were resent. A connect timeout reports
// ETIMEDOUT first; a connect() that found no port never had one.
func TestAbandonedByApp(t *testing.T) {
	connect := func(s *script, ck uint64) {
		e := st(ck, StateClose, StateSynSent, cliSS, srv)
		e.TGID, e.Comm = 100, commOf("curl")
		s.at(0).ev(e)
	}
	synRtx := func(s *script, ck uint64, d time.Duration) {
		s.at(d).ev(Event{Kind: KindRetransmit, Cookie: ck, State: StateSynSent, SegFlags: TCPSyn, HasErr: true, Local: cli, Remote: srv})
	}
	t.Run("before any retransmit", func(t *testing.T) {
		s := &script{}
		connect(s, 10)
		s.at(200 * time.Millisecond).ev(st(10, StateSynSent, StateClose, cli, srv))
		c := run(s, time.Second)[10]
		check(t, c, OutcomeAbandoned, ClosedByNone)
		if c.Errno != 0 || c.DurationUs != 200000 {
			t.Errorf("errno %q duration %d", c.Errno, c.DurationUs)
		}
	})
	t.Run("after a retransmit", func(t *testing.T) {
		s := &script{}
		connect(s, 10)
		synRtx(s, 10, time.Second)
		s.at(1500 * time.Millisecond).ev(st(10, StateSynSent, StateClose, cli, srv))
		c := run(s, 3*time.Second)[10]
		check(t, c, OutcomeAbandoned, ClosedByNone, FlagSynRetransmitted)
		if c.Errno != 0 || c.Retransmits.Syn != 1 {
			t.Errorf("errno %q syn retransmits %d", c.Errno, c.Retransmits.Syn)
		}
	})
	t.Run("SO_LINGER 0", func(t *testing.T) {
		// tcp_disconnect() from SYN_SENT: CLOSE, no reset, ECONNRESET to itself.
		s := &script{}
		connect(s, 10)
		s.at(100 * time.Millisecond).ev(st(10, StateSynSent, StateClose, cli, srv))
		s.at(100*time.Millisecond + time.Microsecond).ev(Event{Kind: KindError, Cookie: 10, Err: 104, State: StateClose, Local: cli, Remote: srv})
		c := run(s, time.Second)[10]
		check(t, c, OutcomeAbandoned, ClosedByNone)
		if c.Errno != 0 {
			t.Errorf("errno %q, want none", c.Errno)
		}
	})
	t.Run("connect timeout", func(t *testing.T) {
		s := &script{}
		connect(s, 10)
		synRtx(s, 10, time.Second)
		s.at(3 * time.Second).ev(Event{Kind: KindError, Cookie: 10, Err: 110, State: StateSynSent, Local: cli, Remote: srv})
		s.at(3 * time.Second).ev(st(10, StateSynSent, StateClose, cli, srv))
		c := run(s, 5*time.Second)[10]
		check(t, c, OutcomeTimeout, ClosedByNone, FlagSynRetransmitted, FlagHandshakeTimeout)
	})
	t.Run("no free port", func(t *testing.T) {
		s := &script{}
		connect(s, 10)
		s.at(time.Microsecond).ev(st(10, StateSynSent, StateClose, cliSS, srv))
		c := run(s, time.Second)[10]
		check(t, c, OutcomeFailed, ClosedByNone, FlagPortExhausted)
	})
}

// A connection open before tracing and still open after it: its record
// lasts from its first event to the end of tracing, a lower bound.
func TestPreexistingOpenAtEnd(t *testing.T) {
	s := &script{}
	s.at(time.Second).ev(Event{Kind: KindRetransmit, Cookie: 10, State: StateEstablished, SegFlags: TCPPsh | TCPAck, SegData: true, HasErr: true, Local: cli, Remote: srv})
	c := run(s, 5*time.Second)[10]
	check(t, c, OutcomeOpen, ClosedByNone, FlagDataRetransmitted, FlagPreexisting)
	if c.DurationUs != 4_000_000 || !c.End.Equal(t0.Add(5*time.Second)) {
		t.Errorf("duration %d us, end %s: want 4s, until tracing stopped", c.DurationUs, c.End)
	}
}
