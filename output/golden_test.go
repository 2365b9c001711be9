package output

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/tracer"
)

// goldenScript feeds a mock of the kernel's events to a real builder.
type goldenScript struct {
	now    time.Duration
	events []tracer.Event
}

var goldenT0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

func (s *goldenScript) at(d time.Duration) *goldenScript { s.now = d; return s }

func (s *goldenScript) ev(e tracer.Event) *goldenScript {
	e.Time = goldenT0.Add(s.now)
	e.BootNs = uint64(s.now)
	if e.NetNS == 0 {
		e.NetNS = 7
	}
	s.events = append(s.events, e)
	return s
}

func gap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func gst(cookie uint64, from, to tracer.State, local, remote netip.AddrPort) tracer.Event {
	return tracer.Event{Kind: tracer.KindState, Cookie: cookie, OldState: from, NewState: to, State: from, Local: local, Remote: remote}
}

func gcomm(s string) (c tracer.Comm) { copy(c[:], s); return }

// goldenScenarios cover every kind of timeline item and every detail the
// builder writes.
func goldenScenarios() map[string]*goldenScript {
	cli, srv, cliSS := gap("10.0.0.2:40000"), gap("10.0.0.1:80"), gap("10.0.0.2:0")
	out := map[string]*goldenScript{}
	handshake := func(s *goldenScript, ck, sk uint64, srtt uint32) {
		e := gst(ck, tracer.StateClose, tracer.StateSynSent, cliSS, srv)
		e.TGID, e.Comm = 100, gcomm("wrk")
		s.at(0).ev(e)
		s.at(300 * time.Microsecond).ev(gst(ck, tracer.StateSynSent, tracer.StateEstablished, cli, srv))
		if sk == 0 {
			return
		}
		e = gst(sk, tracer.StateListen, tracer.StateSynRecv, srv, cli)
		e.HasOwner, e.OwnerTGID, e.OwnerComm, e.ListenerCookie = true, 200, gcomm("nginx"), 1
		s.at(250 * time.Microsecond).ev(e)
		est := gst(sk, tracer.StateSynRecv, tracer.StateEstablished, srv, cli)
		est.HasTCPInfo, est.SRTTUs, est.BytesReceived, est.BytesAcked = true, srtt, 10, 20
		s.at(260 * time.Microsecond).ev(est)
	}
	clientFirst := func(s *goldenScript) {
		handshake(s, 10, 11, 180)
		s.at(10 * time.Millisecond).ev(gst(10, tracer.StateEstablished, tracer.StateFinWait1, cli, srv))
		s.at(10*time.Millisecond + 10*time.Microsecond).ev(gst(11, tracer.StateEstablished, tracer.StateCloseWait, srv, cli))
		s.at(10*time.Millisecond + 20*time.Microsecond).ev(gst(10, tracer.StateFinWait1, tracer.StateFinWait2, cli, srv))
		s.at(11 * time.Millisecond).ev(gst(11, tracer.StateCloseWait, tracer.StateLastAck, srv, cli))
		s.at(11*time.Millisecond + 10*time.Microsecond).ev(gst(10, tracer.StateFinWait2, tracer.StateClose, cli, srv))
		s.at(11*time.Millisecond + 20*time.Microsecond).ev(gst(11, tracer.StateLastAck, tracer.StateClose, srv, cli))
	}

	s := &goldenScript{}
	clientFirst(s)
	out["client closes first"] = s

	s = &goldenScript{}
	clientFirst(s)
	s.at(500 * time.Millisecond).ev(tracer.Event{Kind: tracer.KindResetSent, Cookie: 1, State: tracer.StateListen, HasReason: true, Reason: 6, SegFlags: tracer.TCPAck, Local: srv, Remote: cli})
	out["time_wait killed"] = s

	s = &goldenScript{}
	s.at(0).ev(gst(20, tracer.StateClose, tracer.StateSynSent, cliSS, srv))
	s.at(10 * time.Microsecond).ev(tracer.Event{Kind: tracer.KindResetSent, NoSocket: true, HasReason: true, Reason: 1, SegFlags: tracer.TCPSyn, Local: srv, Remote: cli})
	s.at(20 * time.Microsecond).ev(tracer.Event{Kind: tracer.KindResetReceived, Cookie: 20, State: tracer.StateSynSent, Local: cli, Remote: srv})
	s.at(21 * time.Microsecond).ev(gst(20, tracer.StateSynSent, tracer.StateClose, cli, srv))
	s.at(22 * time.Microsecond).ev(tracer.Event{Kind: tracer.KindError, Cookie: 20, Err: 111, State: tracer.StateClose, Local: cli, Remote: srv})
	out["refused"] = s

	s = &goldenScript{}
	s.at(0).ev(gst(30, tracer.StateClose, tracer.StateSynSent, cliSS, srv))
	for i := 1; i <= 2; i++ {
		s.at(time.Duration(i) * time.Second).ev(tracer.Event{Kind: tracer.KindRetransmit, Cookie: 30, State: tracer.StateSynSent, HasErr: true, Local: cli, Remote: srv})
	}
	s.at(3500 * time.Millisecond).ev(tracer.Event{Kind: tracer.KindRetransmit, Cookie: 30, State: tracer.StateSynSent, HasErr: true, Err: -1, Local: cli, Remote: srv})
	s.at(7 * time.Second).ev(gst(30, tracer.StateSynSent, tracer.StateClose, cli, srv))
	s.at(7 * time.Second).ev(tracer.Event{Kind: tracer.KindError, Cookie: 30, Err: 110, State: tracer.StateClose, Local: cli, Remote: srv})
	out["syn timeout"] = s

	s = &goldenScript{}
	handshake(s, 10, 11, 100)
	at := time.Millisecond
	s.at(at).ev(gst(11, tracer.StateEstablished, tracer.StateClose, srv, cli))
	s.at(at + 2*time.Microsecond).ev(tracer.Event{Kind: tracer.KindResetReceived, Cookie: 10, State: tracer.StateEstablished, Local: cli, Remote: srv})
	s.at(at + 3*time.Microsecond).ev(gst(10, tracer.StateEstablished, tracer.StateClose, cli, srv))
	s.at(at + 4*time.Microsecond).ev(tracer.Event{Kind: tracer.KindError, Cookie: 10, Err: 104, State: tracer.StateClose, Local: cli, Remote: srv})
	s.at(at + 5*time.Microsecond).ev(tracer.Event{Kind: tracer.KindResetSent, Cookie: 11, State: tracer.StateClose, HasReason: true, Reason: 14, Local: srv, Remote: cli})
	s.at(at + 6*time.Microsecond).ev(tracer.Event{Kind: tracer.KindError, Cookie: 11, Err: 104, State: tracer.StateClose, Local: srv, Remote: cli})
	out["linger 0"] = s

	s = &goldenScript{}
	synack := func(n uint8) tracer.Event {
		return tracer.Event{Kind: tracer.KindSynAckRetransmit, Cookie: 80, ListenerCookie: 1, State: tracer.StateListen,
			SntSynAckUs: 1000, NumRetrans: n, NumTimeout: n, Local: srv, Remote: cli}
	}
	s.at(1001 * time.Millisecond).ev(synack(0))
	s.at(3001 * time.Millisecond).ev(synack(1))
	s.at(3500 * time.Millisecond).ev(gst(80, tracer.StateListen, tracer.StateSynRecv, srv, cli))
	est := gst(80, tracer.StateSynRecv, tracer.StateEstablished, srv, cli)
	est.HasTCPInfo, est.TotalRetrans, est.HasRTO, est.TotalRTO, est.TotalRTOTimeMs = true, 2, true, 2, 3499
	s.at(3500*time.Millisecond + 20*time.Microsecond).ev(est)
	out["synack retransmits"] = s

	s = &goldenScript{}
	s.at(3500 * time.Millisecond).ev(gst(81, tracer.StateListen, tracer.StateSynRecv, srv, cli))
	est = gst(81, tracer.StateSynRecv, tracer.StateEstablished, srv, cli)
	est.HasTCPInfo, est.TotalRetrans, est.HasRTO, est.TotalRTO, est.TotalRTOTimeMs, est.SRTTUs = true, 1, true, 1, 1003, 1234
	s.at(3500*time.Millisecond + 20*time.Microsecond).ev(est)
	s.at(3600 * time.Millisecond).ev(gst(82, tracer.StateListen, tracer.StateSynRecv, srv, gap("10.0.0.2:40001")))
	s.at(3600*time.Millisecond + 10*time.Microsecond).ev(tracer.Event{Kind: tracer.KindRetransmit, Cookie: 82, State: tracer.StateSynRecv, SegFlags: tracer.TCPSyn | tracer.TCPAck, HasErr: true, Local: srv, Remote: gap("10.0.0.2:40001")})
	s.at(3600*time.Millisecond + 20*time.Microsecond).ev(gst(82, tracer.StateSynRecv, tracer.StateEstablished, srv, gap("10.0.0.2:40001")))
	out["syn_recv methods"] = s

	s = &goldenScript{}
	rst := func(local, remote netip.AddrPort) tracer.Event {
		return tracer.Event{Kind: tracer.KindResetSent, Cookie: 1, State: tracer.StateListen, HasReason: true, Reason: 2, Local: local, Remote: remote}
	}
	l := gst(1, tracer.StateClose, tracer.StateListen, srv, gap("0.0.0.0:0"))
	l.TGID, l.Comm = 200, gcomm("nginx")
	s.at(0).ev(l)
	req := gap("10.0.0.3:40001")
	s.at(time.Second).ev(tracer.Event{Kind: tracer.KindSynAckRetransmit, Cookie: 90, ListenerCookie: 1, SntSynAckUs: 1, Local: srv, Remote: req})
	s.at(1500 * time.Millisecond).ev(rst(srv, req))
	s.at(1510 * time.Millisecond).ev(rst(srv, req))
	s.at(1600 * time.Millisecond).ev(rst(srv, gap("10.0.0.4:40002")))
	e := gst(11, tracer.StateListen, tracer.StateSynRecv, srv, cli)
	e.ListenerCookie = 1
	s.at(1700 * time.Millisecond).ev(e)
	s.at(1701 * time.Millisecond).ev(gst(11, tracer.StateSynRecv, tracer.StateEstablished, srv, cli))
	s.at(2 * time.Second).ev(gst(11, tracer.StateEstablished, tracer.StateCloseWait, srv, cli))
	s.at(2*time.Second + time.Millisecond).ev(gst(11, tracer.StateCloseWait, tracer.StateLastAck, srv, cli))
	s.at(2*time.Second + 2*time.Millisecond).ev(gst(11, tracer.StateLastAck, tracer.StateClose, srv, cli))
	s.at(2*time.Second + 3*time.Millisecond).ev(rst(srv, cli))
	out["listener resets"] = s

	s = &goldenScript{}
	handshake(s, 10, 0, 0)
	s.at(time.Second).ev(tracer.Event{Kind: tracer.KindResetSent, NoSocket: true, HasReason: true, Reason: 1, SegFlags: tracer.TCPAck | tracer.TCPPsh, Local: srv, Remote: cli})
	s.at(time.Second + 10*time.Microsecond).ev(tracer.Event{Kind: tracer.KindResetReceived, Cookie: 10, State: tracer.StateEstablished, Local: cli, Remote: srv})
	s.at(time.Second + 11*time.Microsecond).ev(gst(10, tracer.StateEstablished, tracer.StateClose, cli, srv))
	s.at(time.Second + 12*time.Microsecond).ev(tracer.Event{Kind: tracer.KindError, Cookie: 10, Err: 104, State: tracer.StateClose, Local: cli, Remote: srv})
	out["socketless reset"] = s

	s = &goldenScript{}
	drop := func(cookie bool) tracer.Event {
		return tracer.Event{Kind: tracer.KindListenOverflow, ListenerCookie: 1, Syncookie: cookie, Backlog: 6, MaxBacklog: 5, Local: srv, Remote: cli}
	}
	s.at(100 * time.Microsecond).ev(drop(true))
	handshake(s, 10, 11, 0)
	s.at(time.Millisecond).ev(drop(false))
	out["overflow and syncookie"] = s

	s = &goldenScript{}
	handshake(s, 10, 0, 0)
	rtx := func(d time.Duration, state tracer.State, flags tracer.TCPFlags, data bool) {
		s.at(d).ev(tracer.Event{Kind: tracer.KindRetransmit, Cookie: 10, State: state, SegFlags: flags, SegData: data, HasErr: true, Local: cli, Remote: srv})
	}
	rtx(10*time.Millisecond, tracer.StateEstablished, tracer.TCPPsh|tracer.TCPAck, true)
	rtx(20*time.Millisecond, tracer.StateFinWait1, tracer.TCPFin|tracer.TCPPsh|tracer.TCPAck, true)
	rtx(30*time.Millisecond, tracer.StateFinWait1, tracer.TCPFin|tracer.TCPAck, false)
	s.at(50 * time.Millisecond).ev(gst(10, tracer.StateEstablished, tracer.StateFinWait1, cli, srv))
	s.at(60 * time.Millisecond).ev(gst(10, tracer.StateFinWait1, tracer.StateFinWait2, cli, srv))
	s.at(70 * time.Millisecond).ev(gst(10, tracer.StateFinWait2, tracer.StateClose, cli, srv))
	out["fin retransmits"] = s

	s = &goldenScript{}
	connect := func(ck uint64) {
		e := gst(ck, tracer.StateClose, tracer.StateSynSent, cliSS, srv)
		e.TGID, e.Comm = 100, gcomm("curl")
		s.at(0).ev(e)
	}
	connect(10)
	s.at(200 * time.Millisecond).ev(gst(10, tracer.StateSynSent, tracer.StateClose, cli, srv))
	connect(12)
	s.at(time.Microsecond).ev(gst(12, tracer.StateSynSent, tracer.StateClose, cliSS, srv))
	out["abandoned and no port"] = s

	s = &goldenScript{}
	v6c, v6s := gap("[2001:db8::2]:5000"), gap("[2001:db8::1]:443")
	e = gst(70, tracer.StateEstablished, tracer.StateFinWait1, v6c, v6s)
	e.TGID, e.Comm = 300, gcomm("redis")
	s.at(0).ev(e)
	s.ev(gst(70, tracer.StateFinWait1, tracer.StateFinWait2, v6c, v6s))
	s.at(time.Millisecond).ev(gst(70, tracer.StateFinWait2, tracer.StateClose, v6c, v6s))
	s.at(20 * time.Millisecond).ev(tracer.Event{Kind: tracer.KindResetSent, Cookie: 70, State: tracer.StateTimeWait, HasReason: true, Reason: 9, Local: v6c, Remote: v6s})
	s.at(time.Second).ev(tracer.Event{Kind: tracer.KindRetransmit, Cookie: 71, State: tracer.StateEstablished, SegFlags: tracer.TCPPsh | tracer.TCPAck, SegData: true, HasErr: true, Local: gap("10.0.0.2:5000"), Remote: srv})
	out["preexisting"] = s

	s = &goldenScript{}
	s.at(time.Second).ev(tracer.Event{Kind: tracer.KindSynAckRetransmit, Cookie: 90, SntSynAckUs: 1, NumTimeout: 0, Local: srv, Remote: cli})
	s.at(3 * time.Second).ev(tracer.Event{Kind: tracer.KindSynAckRetransmit, Cookie: 90, SntSynAckUs: 1, NumTimeout: 1, NumRetrans: 1, Local: srv, Remote: cli})
	out["abandoned request"] = s
	return out
}

// TestExportGolden pins the export lines of builder scenarios byte for
// byte: the typed model must render exactly what the string model wrote.
// TCPSCOPE_UPDATE_GOLDEN=1 rewrites the file.
func TestExportGolden(t *testing.T) {
	if tracer.RSTReason(1).String() != "NO_SOCKET" || tracer.RSTReason(14).String() != "TCP_STATE" {
		t.Skip("this kernel numbers enum sk_rst_reason differently from the golden file's")
	}
	scenarios := goldenScenarios()
	names := make([]string, 0, len(scenarios))
	for name := range scenarios {
		names = append(names, name)
	}
	slices.Sort(names)
	var buf bytes.Buffer
	for _, name := range names {
		s := scenarios[name]
		var conns []tracer.Connection
		b := tracer.NewBuilder(tracer.BuilderConfig{Clock: tracer.Clock{OffsetNs: goldenT0.UnixNano()},
			Emit: func(c *tracer.Connection) {
				line := AppendConnectionJSON(nil, c)
				conns = append(conns, tracer.Connection{ID: c.ID, Comm: string(line)})
			}})
		for i := range s.events {
			b.Expire(s.events[i].Time)
			b.Add(&s.events[i])
		}
		b.Finish(goldenT0.Add(70 * time.Second))
		slices.SortFunc(conns, func(a, b tracer.Connection) int {
			if a.ID < b.ID {
				return -1
			}
			return 1
		})
		buf.WriteString("# " + name + "\n")
		for _, c := range conns {
			buf.WriteString(c.Comm + "\n")
		}
	}
	path := filepath.Join("testdata", "builder-golden.jsonl")
	if os.Getenv("TCPSCOPE_UPDATE_GOLDEN") == "1" {
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		got, wantLines := bytes.Split(buf.Bytes(), []byte("\n")), bytes.Split(want, []byte("\n"))
		for i := range min(len(got), len(wantLines)) {
			if !bytes.Equal(got[i], wantLines[i]) {
				t.Fatalf("line %d differs:\n got %s\nwant %s", i+1, got[i], wantLines[i])
			}
		}
		t.Fatalf("%d lines, want %d", len(got), len(wantLines))
	}
}
