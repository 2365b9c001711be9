package tracer

import (
	"slices"
	"testing"
)

// Every name of every table reads back to its value, and the public names
// are the contract's.
func TestNamesReadBack(t *testing.T) {
	for _, o := range AllOutcomes {
		if got, ok := ParseOutcome(o.String()); !ok || got != o {
			t.Errorf("outcome %s reads back as %d", o, got)
		}
	}
	var flags []string
	for _, f := range AllFlags {
		flags = append(flags, f.String())
		if got, ok := ParseFlag(f.String()); !ok || got != f {
			t.Errorf("flag %s reads back as %d", f, got)
		}
	}
	// Report order, and the names other tools depend on.
	want := []string{"syn_retransmitted", "synack_retransmitted", "long_syn_recv", "reset_sent", "reset_received",
		"refused", "handshake_timeout", "data_retransmitted", "fin_retransmitted", "time_wait", "preexisting",
		"incomplete", "listen_overflow", "syncookie", "port_exhausted", "time_wait_killed"}
	if !slices.Equal(flags, want) {
		t.Errorf("flags %q, want %q", flags, want)
	}
	for _, r := range []Role{RoleUnknown, RoleClient, RoleServer} {
		if got, ok := ParseRole(r.String()); !ok || got != r {
			t.Errorf("role %q reads back as %d", r, got)
		}
	}
	for _, f := range []Family{FamilyUnknown, FamilyIPv4, FamilyIPv6} {
		if got, ok := ParseFamily(f.String()); !ok || got != f {
			t.Errorf("family %q reads back as %d", f, got)
		}
	}
	for _, c := range []ClosedBy{ClosedByNone, ClosedByLocal, ClosedByRemote} {
		if got, ok := ParseClosedBy(c.String()); !ok || got != c {
			t.Errorf("closed_by %q reads back as %d", c, got)
		}
	}
	for h := SynRecvUnknown; h <= SynRecvFromChildAge; h++ {
		if got, ok := ParseSynRecvHow(h.String()); !ok || got != h {
			t.Errorf("syn_recv_method %q reads back as %d", h, got)
		}
	}
	for _, k := range []ItemKind{ItemState, ItemRetransmit, ItemSynAckRetransmit, ItemResetSent, ItemResetReceived,
		ItemError, ItemListenOverflow, ItemSynAck, ItemTimeWait, ItemTimeWaitKilled} {
		if got, ok := ParseItemKind(k.String()); !ok || got != k || k.String() == "" {
			t.Errorf("item kind %q reads back as %d", k, got)
		}
	}
	for s := StateEstablished; s <= StateNewSynRecv; s++ {
		if got, ok := ParseState(s.String()); !ok || got != s {
			t.Errorf("state %s reads back as %d", s, got)
		}
	}
	for _, e := range []Errno{ErrnoConnRefused, ErrnoConnReset, ErrnoPipe, ErrnoTimedOut, ErrnoAddrNotAvail, 4000} {
		if got, ok := ParseErrno(e.String()); !ok || got != e {
			t.Errorf("errno %s reads back as %d", e, got)
		}
	}
	if r, ok := ParseRSTReason(RSTReason(1).String()); !ok || r != 1 {
		t.Errorf("reset reason %s reads back as %d", RSTReason(1), r)
	}
}

// A name the running kernel or this build does not know (an export from
// another machine, or a newer tcpscope) gets a value of its own that
// renders as the name, the same value each time, and never a kernel's.
func TestUnknownNamesSurvive(t *testing.T) {
	r, ok := ParseRSTReason("TCP_FROM_A_FUTURE_KERNEL")
	if r2, _ := ParseRSTReason("TCP_FROM_A_FUTURE_KERNEL"); !ok || r != r2 || r < unknownReasonBase || r.String() != "TCP_FROM_A_FUTURE_KERNEL" {
		t.Errorf("unknown reset reason: %d (%d) %q", r, r2, r)
	}
	// A number this kernel has no name for is no name either.
	if r, ok := ParseRSTReason("REASON_7"); !ok || r.String() != "REASON_7" || r < unknownReasonBase {
		t.Errorf("REASON_7 reads as %d, renders %q", r, r)
	}
	d, ok := ParseDropReason("SOME_DROP")
	if !ok || d.String() != "SOME_DROP" || d < unknownReasonBase {
		t.Errorf("unknown drop reason: %d %q", d, d)
	}
	if d, ok := ParseDropReason(DropReason(2).String()); ok && d >= unknownReasonBase && kernelNames().dropReasons[2] != "" {
		t.Errorf("known drop reason %s read as an unknown one", DropReason(2))
	}
	f, ok := ParseFlag("a_newer_flag")
	if !ok || f < flagCount || f.String() != "a_newer_flag" || !FlagsOf(f).Has(f) || FlagsOf(f).String() != "a_newer_flag" {
		t.Errorf("unknown flag: %d %q", f, f)
	}
	k, ok := ParseItemKind("a_newer_kind")
	if !ok || k < itemInferredEnd || k.String() != "a_newer_kind" {
		t.Errorf("unknown item kind: %d %q", k, k)
	}
	e, ok := ParseErrno("EFROMELSEWHERE")
	if !ok || e.String() != "EFROMELSEWHERE" {
		t.Errorf("unknown errno: %d %q", e, e)
	}
	if s, ok := ParseState("TCP_NEW_STATE"); !ok || s.String() != "TCP_NEW_STATE" || s <= StateNewSynRecv {
		t.Errorf("unknown state: %d %q", s, s)
	}
	if _, ok := ParseOutcome("exploded"); ok {
		t.Error("an unknown outcome was read")
	}
}

func TestFlagSet(t *testing.T) {
	s := FlagsOf(FlagTimeWaitKilled, FlagSynRetransmitted, FlagTimeWait)
	if got := s.List(); !slices.Equal(got, []Flag{FlagSynRetransmitted, FlagTimeWait, FlagTimeWaitKilled}) {
		t.Errorf("list %v, want report order", got)
	}
	if s.Len() != 3 || !s.Has(FlagTimeWait) || s.Without(FlagTimeWait).Has(FlagTimeWait) || s.String() != "syn_retransmitted,time_wait,time_wait_killed" {
		t.Errorf("set %s", s)
	}
	c := Connection{Flags: FlagsOf(FlagTimeWait, FlagPreexisting)}
	if c.Flagged() {
		t.Error("time_wait and preexisting alone are not worth a line")
	}
	c.setFlag(FlagIncomplete)
	if !c.Flagged() || !c.Has(FlagIncomplete) {
		t.Error("incomplete is worth a line")
	}
}
