package output

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/cgroups"
)

func sampleEvent() tracer.Event {
	ev := tracer.Event{
		Kind: tracer.KindResetSent, Time: time.Date(2026, 11, 21, 23, 45, 3, 846829000, time.UTC),
		NetNS: 4026531833, CPU: 1, TGID: 7150, PID: 7150,
		Local: netip.MustParseAddrPort("127.0.0.1:1"), Remote: netip.MustParseAddrPort("127.0.0.1:33712"),
		NoSocket: true, HasReason: true, Reason: 1,
	}
	copy(ev.Comm[:], `py"th\on`)
	return ev
}

func TestEventTextLine(t *testing.T) {
	ev := sampleEvent()
	cg := cgroups.Parse("/system.slice/docker-" + strings.Repeat("3f2a", 16) + ".scope")
	line := string(AppendEventText(nil, &ev, &cg))
	for _, want := range []string{"reset_sent", "127.0.0.1:1 ", "127.0.0.1:33712", "no socket, reason NO_SOCKET (in docker:3f2a3f2a3f2a)", "4026531833"} {
		if !strings.Contains(line, want) {
			t.Errorf("line %q lacks %q", line, want)
		}
	}
	if !strings.HasSuffix(line, "\n") || strings.Count(line, "\n") != 1 {
		t.Errorf("not one line: %q", line)
	}
	hdr := strings.Index(EventHeader, "LOCAL")
	if got := strings.Index(line, "127.0.0.1:1 "); got != hdr {
		t.Errorf("LOCAL column at %d, header says %d", got, hdr)
	}
}

func TestEventDetails(t *testing.T) {
	cases := []struct {
		ev   tracer.Event
		want string
	}{
		{tracer.Event{Kind: tracer.KindState, OldState: tracer.StateSynSent, NewState: tracer.StateEstablished}, "SYN_SENT -> ESTABLISHED"},
		{tracer.Event{Kind: tracer.KindRetransmit, State: tracer.StateSynSent, HasErr: true, Err: -1}, "SYN in SYN_SENT, not sent: EPERM"},
		{tracer.Event{Kind: tracer.KindRetransmit, State: tracer.StateEstablished, HasErr: true}, "data in ESTABLISHED"},
		{tracer.Event{Kind: tracer.KindRetransmit, State: tracer.StateFinWait1, SegFlags: tracer.TCPFin | tracer.TCPAck}, "FIN in FIN_WAIT1 (FIN|ACK)"},
		{tracer.Event{Kind: tracer.KindRetransmit, State: tracer.StateLastAck, SegFlags: tracer.TCPFin | tracer.TCPPsh | tracer.TCPAck, SegData: true}, "data in LAST_ACK (FIN|PSH|ACK)"},
		{tracer.Event{Kind: tracer.KindResetReceived, State: tracer.StateSynSent}, "in SYN_SENT"},
		{tracer.Event{Kind: tracer.KindError, State: tracer.StateClose, Err: 111}, "ECONNREFUSED in CLOSE"},
		{tracer.Event{Kind: tracer.KindResetSent, State: tracer.StateClose, HasReason: true, Reason: 11}, "in CLOSE, reason TCP_ABORT_ON_CLOSE"},
	}
	for _, c := range cases {
		if got := EventDetail(&c.ev); got != c.want {
			t.Errorf("%s: %q, want %q", c.ev.Kind, got, c.want)
		}
	}
}

func TestEventJSONIsValidAndSnakeCase(t *testing.T) {
	ev := sampleEvent()
	ev.CgroupID = 4242
	cg := cgroups.Parse("/kubepods/burstable/pod0a1b2c3d-0000-4000-8000-00000000abcd/" + strings.Repeat("3f2a", 16))
	line := AppendEventJSON(nil, &ev, &cg)
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatalf("invalid JSON %s: %v", line, err)
	}
	want := map[string]any{
		"type": "event", "kind": "reset_sent", "reason": "NO_SOCKET", "no_socket": true,
		"local_addr": "127.0.0.1", "local_port": 1.0, "remote_port": 33712.0, "comm": `py"th\on`,
		"time": "2026-11-21T23:45:03.846829Z", "family": "ipv4", "cgroup_id": 4242.0,
		"cgroup": cg.Path, "container_id": strings.Repeat("3f2a", 16), "container_runtime": "cri",
		"pod_uid": "0a1b2c3d-0000-4000-8000-00000000abcd",
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %#v, want %#v", k, m[k], v)
		}
	}
	for k := range m {
		if strings.ToLower(k) != k || strings.Contains(k, "-") {
			t.Errorf("field %q is not snake_case", k)
		}
	}
}

func TestAppendStringEscapesAndRepairs(t *testing.T) {
	got := string(appendString(nil, "a\x01\"\\\xffé"))
	var s string
	if err := json.Unmarshal([]byte(got), &s); err != nil {
		t.Fatalf("%s: %v", got, err)
	}
	if s != "a\x01\"\\\uFFFDé" {
		t.Errorf("round trip %q", s)
	}
}

func TestTallyLine(t *testing.T) {
	got := TallyLine(Tally{ByKind: map[tracer.Kind]uint64{tracer.KindState: 14, tracer.KindError: 1}, Lost: 3})
	if !strings.HasPrefix(got, "events: 15 (state 14, retransmit 0") || !strings.HasSuffix(got, "error 1, listen_overflow 0); lost 3") {
		t.Errorf("tally %q", got)
	}
}
