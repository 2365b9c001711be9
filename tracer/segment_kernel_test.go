package tracer_test

import (
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/netns"
)

// TestRetransmittedSegment: a retransmit event names the segment resent,
// read from TCP_SKB_CB(skb). The client's data is dropped on its way in
// until it is resent; then its FIN is dropped once. The data retransmit
// carries payload (PSH|ACK, maybe with the FIN collapsed into it); the
// FIN's is a bare FIN|ACK without payload.
func TestRetransmittedSegment(t *testing.T) { modes(t, retransmittedSegment) }

func retransmittedSegment(t *testing.T, events bool) {
	ns := newNS(t)
	col := traceNS(t, ns, tracer.Config{Events: events})
	ln := listen(t, ns, "tcp4", "127.0.0.1:0")
	server := addrPort(t, ln.Addr())
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 16)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
	}()
	c, err := dial(ns, "tcp4", server.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	client := addrPort(t, c.LocalAddr())
	rtx := func(evs []tracer.Event, pred func(tracer.Event) bool) (tracer.Event, bool) {
		return find(evs, func(e tracer.Event) bool {
			return e.Kind == tracer.KindRetransmit && e.Local == client && (!e.HasErr || e.Err == 0) && pred(e)
		})
	}

	removeData, err := ns.AddDrop(netns.Drop{SrcPort: client.Port(), FlagMask: netns.FlagPSH, Flags: netns.FlagPSH, Input: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	isData := func(e tracer.Event) bool {
		return e.Kind == tracer.KindRetransmit && e.Local == client && (!e.HasErr || e.Err == 0)
	}
	col.waitFor(t, "a data retransmit", 10*time.Second, retransmitted(t, ns, events, 1, isData))
	if err := removeData(); err != nil {
		t.Fatal(err)
	}

	// The data got through once the rule went: wait for its ACK (the
	// socket's write queue empties), then drop the FIN once.
	removeFin, err := ns.AddDrop(netns.Drop{SrcPort: client.Port(), FlagMask: netns.FlagFIN, Flags: netns.FlagFIN, Input: true})
	if err != nil {
		t.Fatal(err)
	}
	defer removeFin()
	col.waitFor(t, "the data retransmit to be acknowledged", 10*time.Second, func(evs []tracer.Event) bool {
		socks, err := ns.TCPSockets(1 << tracer.StateEstablished)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range socks {
			if s.Local == client && s.WQueue == 0 {
				return true
			}
		}
		return false
	})
	c.Close()
	col.waitFor(t, "a FIN retransmit", 10*time.Second, retransmitted(t, ns, events, 2, func(e tracer.Event) bool {
		return isData(e) && e.SegFlags&tracer.TCPFin != 0
	}))
	if err := removeFin(); err != nil {
		t.Fatal(err)
	}
	// Both retransmits are on the record once the client socket closed.
	evs := col.waitFor(t, "the client to close", 10*time.Second, func(evs []tracer.Event) bool {
		_, ok := find(evs, func(e tracer.Event) bool {
			return e.Kind == tracer.KindState && e.NewState == tracer.StateClose && e.Local == client
		})
		return ok
	})
	data, _ := rtx(evs, func(e tracer.Event) bool { return e.SegFlags&tracer.TCPFin == 0 })
	if !data.SegData || data.SegFlags&(tracer.TCPPsh|tracer.TCPAck) != tracer.TCPPsh|tracer.TCPAck || data.Resent() != tracer.ResentData {
		t.Errorf("data retransmit: flags %s, payload %v, named %s; want PSH|ACK with payload, data", data.SegFlags, data.SegData, data.Resent())
	}
	fin, _ := rtx(evs, func(e tracer.Event) bool { return e.SegFlags&tracer.TCPFin != 0 })
	if fin.SegData || fin.SegFlags != tracer.TCPFin|tracer.TCPAck || fin.State != tracer.StateFinWait1 || fin.Resent() != tracer.ResentFin {
		t.Errorf("FIN retransmit: flags %s, payload %v, in %s, named %s; want a bare FIN|ACK in FIN_WAIT1, FIN", fin.SegFlags, fin.SegData, fin.State, fin.Resent())
	}
	<-accepted
}
