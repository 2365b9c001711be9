package output

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/tracer"
)

func sampleConnections() []tracer.Connection {
	t0 := time.Date(2026, 11, 21, 12, 0, 0, 123456789, time.UTC)
	return []tracer.Connection{
		{
			ID: 4834, PeerID: 4835, Role: tracer.RoleClient, Family: tracer.FamilyIPv4,
			Local: netip.MustParseAddrPort("10.0.0.2:40000"), Remote: netip.MustParseAddrPort("10.0.0.1:80"),
			NetNS: 4026531833, PID: 100, Comm: "wrk", Start: t0, End: t0.Add(279 * time.Microsecond), DurationUs: 279,
			HandshakeUs: 122, SynRecvUs: -1, ClosedBy: tracer.ClosedByLocal, Outcome: tracer.OutcomeTimeWait,
			BytesReceived: 43, BytesAcked: 18,
			Flags: tracer.FlagsOf(tracer.FlagTimeWait),
			Timeline: []tracer.Item{
				{At: t0, Kind: tracer.ItemState, From: tracer.StateClose, To: tracer.StateSynSent},
				{At: t0.Add(122 * time.Microsecond), OffsetUs: 122, Kind: tracer.ItemState, From: tracer.StateSynSent, To: tracer.StateEstablished, PrevStateUs: 122},
				{At: t0.Add(279 * time.Microsecond), OffsetUs: 279, Kind: tracer.ItemTimeWait, State: tracer.StateTimeWait, Detail: tracer.DetailTimeWaitHolds},
			},
		},
		{
			ID: 1<<52 + 1, Role: tracer.RoleServer, Family: tracer.FamilyIPv6,
			Local: netip.MustParseAddrPort("[2001:db8::1]:1"), Remote: netip.MustParseAddrPort("[2001:db8::2]:5000"),
			NetNS: 1, Start: t0, End: t0, HandshakeUs: -1, SynRecvUs: -1, ClosedBy: tracer.ClosedByLocal, Outcome: tracer.OutcomeRefused,
			Flags:    tracer.FlagsOf(tracer.FlagResetSent, tracer.FlagRefused),
			Timeline: []tracer.Item{{At: t0, Kind: tracer.ItemResetSent, Reason: rstReason("NO_SOCKET"), HasReason: true, Detail: tracer.DetailNoSocket}},
		},
		{
			ID: 77, Role: tracer.RoleServer, Family: tracer.FamilyIPv4, ListenerID: 5,
			Local: netip.MustParseAddrPort("10.0.0.1:80"), Remote: netip.MustParseAddrPort("10.0.0.3:41000"),
			Comm: "we\"ird\x01", Start: t0, End: t0.Add(3 * time.Second), DurationUs: 3_000_000,
			HandshakeUs: -1, SynRecvUs: 3_000_000, SynRecvHow: tracer.SynRecvFromSynAck,
			Retransmits: tracer.Retransmits{SynAck: 2}, Outcome: tracer.OutcomeOpen,
			Flags:    tracer.FlagsOf(tracer.FlagSynAckRetransmitted, tracer.FlagLongSynRecv),
			Timeline: []tracer.Item{{At: t0, Kind: tracer.ItemSynAck, State: tracer.StateSynRecv}},
		},
	}
}

// rstReason is the running kernel's value of a reset reason name.
func rstReason(name string) tracer.RSTReason {
	r, _ := tracer.ParseRSTReason(name)
	return r
}

func writeExport(t *testing.T, name string, conns []tracer.Connection) (string, *tracer.Stats) {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	meta := Meta{Tcpscope: "test", Kernel: "6.18", Start: conns[0].Start}
	e, err := CreateExport(path, nil, meta)
	if err != nil {
		t.Fatal(err)
	}
	s := tracer.NewStats()
	for i := range conns {
		s.Add(&conns[i])
		if err := e.WriteConnection(&conns[i]); err != nil {
			t.Fatal(err)
		}
	}
	x := Extra{End: conns[0].Start.Add(time.Minute), LostEvents: 3, Unreadable: 1, Undecoded: 2, Discarded: 4, Gaps: 5,
		Recursion: []tracer.RecursionMisses{{Tracepoint: "sock/inet_sock_set_state", Program: "handle_set_state", Misses: 5, Nested: 4, NestedMisses: 1}}}
	if err := e.Close(s, x); err != nil {
		t.Fatal(err)
	}
	return path, s
}

func TestExportRoundTripAndSchema(t *testing.T) {
	for _, name := range []string{"run.jsonl", "run.json"} {
		t.Run(name, func(t *testing.T) {
			conns := sampleConnections()
			path, _ := writeExport(t, name, conns)
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o600 {
				t.Errorf("export mode %v, want 0600", st.Mode().Perm())
			}
			if err := ValidateExport(path); err != nil {
				t.Errorf("schema: %v", err)
			}
			rec, err := ReadExport(path)
			if err != nil {
				t.Fatal(err)
			}
			if rec.Summary == nil || rec.Summary.LostEvents != 3 || rec.Summary.Connections != 3 || rec.Meta.Kernel != "6.18" {
				t.Errorf("summary %+v meta %+v", rec.Summary, rec.Meta)
			}
			if x := rec.Summary.Extra(); x.Unreadable != 1 || x.Undecoded != 2 || x.Discarded != 4 || x.Gaps != 5 || len(x.Recursion) != 1 || x.Recursion[0].Lost() != 1 ||
				x.Recursion[0].Program != "handle_set_state" || x.Recursion[0].NestedMisses != 1 {
				t.Errorf("dropped events read back: %+v", x)
			}
			if len(rec.Connections) != len(conns) {
				t.Fatalf("%d connections read back, want %d", len(rec.Connections), len(conns))
			}
			for i := range conns {
				want, got := conns[i], rec.Connections[i]
				want.Comm = strings.ToValidUTF8(want.Comm, "\uFFFD")
				for j := range want.Timeline {
					want.Timeline[j].At = want.Timeline[j].At.UTC()
				}
				got.Start, got.End = got.Start.UTC(), got.End.UTC()
				for j := range got.Timeline {
					got.Timeline[j].At = got.Timeline[j].At.UTC()
				}
				if !reflect.DeepEqual(exported(want), exported(got)) {
					t.Errorf("connection %d round trip:\n got %+v\nwant %+v", i, exported(got), exported(want))
				}
			}
		})
	}
}

// exported keeps the fields an export carries.
func exported(c tracer.Connection) tracer.Connection {
	return tracer.Connection{
		ID: c.ID, PeerID: c.PeerID, ListenerID: c.ListenerID, Role: c.Role, Family: c.Family, Local: c.Local, Remote: c.Remote,
		NetNS: c.NetNS, PID: c.PID, Comm: c.Comm, Start: c.Start, End: c.End, DurationUs: c.DurationUs,
		HandshakeUs: c.HandshakeUs, SynRecvUs: c.SynRecvUs, SynRecvHow: c.SynRecvHow, Retransmits: c.Retransmits,
		BytesReceived: c.BytesReceived, BytesAcked: c.BytesAcked,
		ClosedBy: c.ClosedBy, Outcome: c.Outcome, Errno: c.Errno, Flags: c.Flags, Timeline: c.Timeline,
	}
}

func TestReadExportRejectsBadFiles(t *testing.T) {
	good, _ := writeExport(t, "good.jsonl", sampleConnections())
	data, _ := os.ReadFile(good)
	lines := strings.SplitAfter(string(data), "\n")
	dir := t.TempDir()
	cases := []struct {
		name, content, want string
	}{
		{"empty.jsonl", "", "empty file"},
		{"garbage.jsonl", "hello world\n", ":1: not a tcpscope export"},
		{"torn-middle.jsonl", lines[0] + lines[1][:40] + "\n" + lines[2], ":2: invalid connection record"},
		{"bad-line.jsonl", lines[0] + "{\"type\":\"connection\",\"id\":\n" + lines[1], ":2: invalid connection record"},
		{"no-meta.jsonl", lines[1], ":1: not a tcpscope export"},
		{"future.jsonl", strings.Replace(lines[0], `"format_version":1`, `"format_version":2`, 1), ":1: export format version 2 is newer"},
		{"unknown.jsonl", lines[0] + "{\"type\":\"gossip\"}\n", ":2: unknown record type"},
		{"bad-outcome.jsonl", lines[0] + strings.Replace(lines[1], `"outcome":"time_wait"`, `"outcome":"exploded"`, 1), ":2: connection 4834: unknown outcome"},
		{"truncated.json", `{"meta":{"format_version":1,"tcpscope":"x","kernel":"y","start":"2026-11-21T12:00:00Z"},"connections":[` + "\n{\"id\":1,", ":2: truncated document"},
	}
	for _, c := range cases {
		p := filepath.Join(dir, c.name)
		os.WriteFile(p, []byte(c.content), 0o600)
		_, err := ReadExport(p)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.name) {
			t.Errorf("%s: error %v, want one naming the file and %q", c.name, err, c.want)
		}
	}
	// A JSONL cut at a line boundary (SIGKILL) still reads, without summary.
	p := filepath.Join(dir, "killed.jsonl")
	os.WriteFile(p, []byte(lines[0]+lines[1]), 0o600)
	rec, err := ReadExport(p)
	if err != nil || rec.Summary != nil || len(rec.Connections) != 1 {
		t.Errorf("killed.jsonl: %v, summary %v, %d connections", err, rec != nil && rec.Summary != nil, len(rec.Connections))
	}
}
