package tracer

import (
	"fmt"
	"net/netip"
	"testing"
)

func show(l *Listener) string {
	return fmt.Sprintf("peak %d/%d, samples %d full %d, overflows %d attributed %d (SYN %d) drops %d",
		l.PeakQueue, l.Backlog, l.QueueSamples, l.FullSamples, l.Overflows, l.OverflowsAttributed, l.SynDropsAttributed(), l.DropsAttributed)
}

// TestSampleQueuesAttribution: the namespace's ListenOverflows and
// ListenDrops increments of an interval go to a listener only when it is
// the one listener of the namespace that was full, at either end of the
// interval or by an observed final-ACK drop.
func TestSampleQueuesAttribution(t *testing.T) {
	b, got, _, c := twoListeners()
	b.SeedListener(7, ap("0.0.0.0:82"), 1, "old", 4, 0, t0) // known by port only
	q := func(cookie uint64, local string, queue, backlog uint32) QueueSample {
		return QueueSample{Cookie: cookie, Local: ap(local), Queue: queue, Backlog: backlog}
	}
	untraced := q(99, "127.0.0.1:9999", 0, 1)

	// 1. Only :80 full now: its interval's increments are its own.
	b.SampleQueues(7, []QueueSample{q(10, "127.0.0.1:80", 3, 2), q(11, "127.0.0.1:81", 0, 2), untraced}, 5, 6)
	// 2. :80 full before, :81 full now: two candidates, nothing attributed.
	b.SampleQueues(7, []QueueSample{q(10, "127.0.0.1:80", 0, 2), q(11, "127.0.0.1:81", 3, 2), untraced}, 4, 4)
	// 3. Nobody full at either end, an untraced listener full now: not ours.
	b.SampleQueues(7, []QueueSample{q(10, "127.0.0.1:80", 0, 2), q(11, "127.0.0.1:81", 0, 2)}, 0, 0)
	b.SampleQueues(7, []QueueSample{q(10, "127.0.0.1:80", 0, 2), q(11, "127.0.0.1:81", 0, 2), q(99, "127.0.0.1:9999", 2, 1)}, 1, 1)
	// 4. Empty at both ends, but a final-ACK overflow drop of :81 was
	// observed meanwhile: it was full.
	b.SampleQueues(7, []QueueSample{q(10, "127.0.0.1:80", 0, 2), q(11, "127.0.0.1:81", 0, 2), q(99, "127.0.0.1:9999", 0, 1)}, 0, 0)
	ov := Event{Kind: KindListenOverflow, NetNS: 7, ListenerCookie: 11, Local: c, Remote: ap("127.0.0.1:5000"), Backlog: 3, MaxBacklog: 2}
	b.Add(&ov)
	b.SampleQueues(7, []QueueSample{q(10, "127.0.0.1:80", 0, 2), q(11, "127.0.0.1:81", 0, 2)}, 3, 3)
	// 5. The listener known by port, full: matched by its port.
	b.SampleQueues(7, []QueueSample{q(10, "127.0.0.1:80", 0, 2), q(11, "127.0.0.1:81", 0, 2), q(12, "0.0.0.0:82", 5, 4)}, 2, 2)
	// 6. Another namespace's sample does not touch these.
	b.SampleQueues(8, []QueueSample{q(10, "127.0.0.1:80", 3, 2)}, 9, 9)
	b.Finish(t0)

	by := map[uint16]*Listener{}
	for _, l := range *got {
		by[l.Local.Port()] = l
	}
	l80, l81, l82 := by[80], by[81], by[82]
	if l80.OverflowsAttributed != 5 || l80.DropsAttributed != 6 || l80.PeakQueue != 3 || l80.FullSamples != 1 || l80.QueueSamples != 7 {
		t.Errorf(":80 %s", show(l80))
	}
	if l81.OverflowsAttributed != 3 || l81.Overflows != 1 || l81.SynDropsAttributed() != 2 || l81.FullSamples != 1 {
		t.Errorf(":81 %s", show(l81))
	}
	if l82.OverflowsAttributed != 2 || l82.PeakQueue != 5 || l82.QueueSamples != 1 {
		t.Errorf(":82 %s", show(l82))
	}
	if o, d, ok := b.Unattributed(7); o != 4+1 || d != 4+1 || !ok {
		t.Errorf("unattributed in 7: %d overflows, %d drops", o, d)
	}
	if o, _, ok := b.Unattributed(8); o != 9 || !ok {
		t.Errorf("unattributed in 8: %d overflows", o)
	}
	if _, _, ok := b.Unattributed(9); ok {
		t.Errorf("namespace 9 was never sampled")
	}
}

// TestClientSynRetransmitsLinkedToListener: a client's SYN retransmits
// toward a traced listener of its namespace count on that listener and
// give the client record its id; other ports, namespaces and a remote
// host's port do not.
func TestClientSynRetransmitsLinkedToListener(t *testing.T) {
	var ls []*Listener
	conns := map[uint64]Connection{}
	b := NewBuilder(BuilderConfig{EmitListener: func(l *Listener) { ls = append(ls, l) },
		Emit: func(c *Connection) { conns[c.ID] = *c }})
	lst := st(10, StateClose, StateListen, ap("0.0.0.0:80"), ap("0.0.0.0:0"))
	lst.NetNS = 7
	b.Add(&lst)
	for i, to := range []struct {
		netns  uint32
		remote string
	}{{7, "127.0.0.1:80"}, {7, "127.0.0.1:81"}, {8, "127.0.0.1:80"}, {7, "10.1.1.1:80"}} {
		ck := uint64(20 + i)
		e := st(ck, StateClose, StateSynSent, ap("127.0.0.1:0"), ap(to.remote))
		e.NetNS = to.netns
		b.Add(&e)
		for j := 0; j < 2; j++ {
			r := Event{Kind: KindRetransmit, Cookie: ck, State: StateSynSent, NetNS: to.netns, Local: ap("127.0.0.1:40000"), Remote: ap(to.remote)}
			b.Add(&r)
		}
	}
	b.Finish(t0)
	if len(ls) != 1 || ls[0].SynRetransmitClients != 1 || ls[0].ClientSynRetransmits != 2 {
		t.Fatalf("listeners %+v", ls)
	}
	if conns[20].ListenerID != 10 || conns[21].ListenerID != 0 || conns[22].ListenerID != 0 || conns[23].ListenerID != 0 {
		t.Errorf("listener ids: %d %d %d %d", conns[20].ListenerID, conns[21].ListenerID, conns[22].ListenerID, conns[23].ListenerID)
	}
}

// TestSampleQueuesLateEvent: the counters moved in an interval whose ends
// found no queue full, and the final-ACK drop that explains them reached
// the builder only after that interval's sample (events trail the counters
// by up to a ring-buffer poll): the interval still goes to that listener.
func TestSampleQueuesLateEvent(t *testing.T) {
	b, got, a, c := twoListeners()
	empty := []QueueSample{{Cookie: 10, Local: a, Backlog: 2}, {Cookie: 11, Local: c, Backlog: 2}}
	b.SampleQueues(7, empty, 0, 0)
	b.SampleQueues(7, empty, 4, 4) // the drops happened here...
	ov := Event{Kind: KindListenOverflow, NetNS: 7, ListenerCookie: 10, Local: a, Remote: ap("127.0.0.1:5000"), Backlog: 3, MaxBacklog: 2}
	b.Add(&ov) // ...and their event arrives now
	b.SampleQueues(7, empty, 0, 0)
	b.Finish(t0)
	for _, l := range *got {
		want := uint64(0)
		if l.ID == 10 {
			want = 4
		}
		if l.OverflowsAttributed != want {
			t.Errorf("listener %d: %s, want %d attributed", l.ID, show(l), want)
		}
	}
	if o, _, _ := b.Unattributed(7); o != 0 {
		t.Errorf("%d unattributed", o)
	}
}

// twoListeners is a builder that follows two listeners of namespace 7
// (cookies 10 and 11, backlog 2) and collects the listeners it emits.
func twoListeners() (b *Builder, got *[]*Listener, a, c netip.AddrPort) {
	got = new([]*Listener)
	b = NewBuilder(BuilderConfig{EmitListener: func(l *Listener) { *got = append(*got, l) }})
	a, c = ap("127.0.0.1:80"), ap("127.0.0.1:81")
	for _, e := range []Event{st(10, StateClose, StateListen, a, ap("0.0.0.0:0")), st(11, StateClose, StateListen, c, ap("0.0.0.0:0"))} {
		e.NetNS, e.MaxBacklog = 7, 2
		b.Add(&e)
	}
	return b, got, a, c
}

// TestCgroupIDs: a listener takes the cgroup of its CLOSE->LISTEN, a
// listener that predates the trace (first known by a child, or seeded
// from sock_diag) the one of its first child's event, a connection the
// one of its first event with a full socket.
func TestCgroupIDs(t *testing.T) {
	var ls []*Listener
	conns := map[uint64]Connection{}
	b := NewBuilder(BuilderConfig{EmitListener: func(l *Listener) { ls = append(ls, l) },
		Emit: func(c *Connection) { conns[c.ID] = *c }})
	lst := st(10, StateClose, StateListen, srv, ap("0.0.0.0:0"))
	lst.CgroupID = 4001
	child := st(11, StateListen, StateSynRecv, srv, cli)
	child.ListenerCookie, child.CgroupID = 10, 4001
	client := st(12, StateClose, StateSynSent, cliSS, srv)
	client.CgroupID = 5002
	old := st(13, StateListen, StateSynRecv, ap("10.0.0.1:81"), cli)
	old.CgroupID = 6003 // its listener predates the trace
	b.SeedListener(7, ap("10.0.0.1:82"), 300, "redis", 128, 0, t0)
	seeded := st(14, StateListen, StateSynRecv, ap("10.0.0.1:82"), cli)
	seeded.CgroupID = 7004
	for _, e := range []*Event{&lst, &child, &client, &old, &seeded} {
		e.NetNS = 7
		b.Add(e)
	}
	b.Finish(t0)
	if conns[11].CgroupID != 4001 || conns[12].CgroupID != 5002 || conns[13].CgroupID != 6003 {
		t.Errorf("connection cgroups %d %d %d, want 4001 5002 6003", conns[11].CgroupID, conns[12].CgroupID, conns[13].CgroupID)
	}
	got := map[uint16]uint64{}
	for _, l := range ls {
		got[l.Local.Port()] = l.CgroupID
	}
	if got[80] != 4001 || got[81] != 6003 || got[82] != 7004 {
		t.Errorf("listener cgroups by port %v, want 80:4001 81:6003 82:7004", got)
	}
}
