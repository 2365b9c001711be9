package output

import (
	"net/netip"
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/tracer"
)

// largeConnection is the i-th connection of a generated busy recording:
// mostly short client and server connections with their whole timelines,
// as a load test leaves them, and one in 25 flagged (resets, retransmits).
func largeConnection(i int, t0 time.Time) tracer.Connection {
	start := t0.Add(time.Duration(i) * 37 * time.Microsecond)
	port := uint16(32768 + i%28000)
	c := tracer.Connection{
		ID: uint64(i + 1), Family: tracer.FamilyIPv4, NetNS: 4026531840,
		PID: uint32(1000 + i%7), Comm: "wrk", Start: start, HandshakeUs: int64(40 + i%90), SynRecvUs: -1,
		BytesReceived: uint64(200 + i%4000), BytesAcked: uint64(80 + i%300),
	}
	st := func(us int64, from, to tracer.State) tracer.Item {
		return tracer.Item{At: start.Add(time.Duration(us) * time.Microsecond), OffsetUs: us, Kind: tracer.ItemState, From: from, To: to}
	}
	if i%2 == 0 {
		c.Role, c.ClosedBy, c.Outcome = tracer.RoleClient, tracer.ClosedByLocal, tracer.OutcomeTimeWait
		c.PeerID = c.ID + 1
		c.Local = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, 2}), port)
		c.Remote = netip.MustParseAddrPort("10.0.0.1:8080")
		c.Flags = tracer.FlagsOf(tracer.FlagTimeWait)
		c.Timeline = []tracer.Item{
			st(0, tracer.StateClose, tracer.StateSynSent), st(c.HandshakeUs, tracer.StateSynSent, tracer.StateEstablished),
			st(900, tracer.StateEstablished, tracer.StateFinWait1), st(950, tracer.StateFinWait1, tracer.StateFinWait2),
			{At: start.Add(990 * time.Microsecond), OffsetUs: 990, Kind: tracer.ItemTimeWait, State: tracer.StateTimeWait, Detail: tracer.DetailTimeWaitHolds},
		}
	} else {
		c.Role, c.ClosedBy, c.Outcome = tracer.RoleServer, tracer.ClosedByRemote, tracer.OutcomeClosed
		c.PeerID, c.ListenerID, c.SynRecvUs, c.SynRecvHow = c.ID-1, 3, c.HandshakeUs, tracer.SynRecvFromSynAck
		c.Comm = "nginx"
		c.Local = netip.MustParseAddrPort("10.0.0.1:8080")
		c.Remote = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, 2}), port)
		c.Timeline = []tracer.Item{
			{At: start, Kind: tracer.ItemSynAck, State: tracer.StateSynRecv},
			st(c.HandshakeUs, tracer.StateSynRecv, tracer.StateEstablished), st(950, tracer.StateEstablished, tracer.StateCloseWait),
			st(980, tracer.StateCloseWait, tracer.StateLastAck), st(1010, tracer.StateLastAck, tracer.StateClose),
		}
	}
	c.End = start.Add(1010 * time.Microsecond)
	c.DurationUs = 1010
	if i%25 == 7 {
		c.Outcome, c.ClosedBy = tracer.OutcomeReset, tracer.ClosedByRemote
		c.Flags = tracer.FlagsOf(tracer.FlagResetReceived)
		c.Retransmits.Data = 2
		c.Timeline = append(c.Timeline[:2:2],
			tracer.Item{At: start.Add(500 * time.Microsecond), OffsetUs: 500, Kind: tracer.ItemRetransmit, State: tracer.StateEstablished},
			tracer.Item{At: c.End, OffsetUs: 1010, Kind: tracer.ItemResetReceived, State: tracer.StateEstablished})
	}
	return c
}

// writeLargeExport writes a recording of n generated connections to path
// (.jsonl or .jsonl.zst) with the recorder's writer, flushing as its ticks
// do every 2,000 connections, and returns the statistics it wrote.
func writeLargeExport(tb testing.TB, path string, n int) *tracer.Stats {
	tb.Helper()
	t0 := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	e, err := CreateExport(path, nil, Meta{Tcpscope: "bench", Kernel: "6.18", Hostname: "bench", Start: t0})
	if err != nil {
		tb.Fatal(err)
	}
	s := tracer.NewStats()
	for i := 0; i < n; i++ {
		c := largeConnection(i, t0)
		s.Add(&c)
		if err := e.WriteConnection(&c); err != nil {
			tb.Fatal(err)
		}
		if i%2000 == 1999 {
			if err := e.Flush(); err != nil {
				tb.Fatal(err)
			}
		}
	}
	if err := e.Close(s, Extra{End: t0.Add(time.Duration(n) * 37 * time.Microsecond)}); err != nil {
		tb.Fatal(err)
	}
	return s
}
