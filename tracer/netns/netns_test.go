package netns

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseCounters(t *testing.T) {
	in := "TcpExt: SyncookiesSent ListenOverflows\nTcpExt: 3 17\nTcp: RtoAlgorithm MaxConn ActiveOpens\nTcp: 1 -1 42\n"
	c := Counters{}
	if err := ParseCounters(strings.NewReader(in), c); err != nil {
		t.Fatal(err)
	}
	if c["TcpExt.ListenOverflows"] != 17 || c["TcpExt.SyncookiesSent"] != 3 || c["Tcp.ActiveOpens"] != 42 {
		t.Errorf("parsed %v", c)
	}
	if _, ok := c["Tcp.MaxConn"]; ok {
		t.Errorf("-1 is not a counter: %v", c)
	}
	d := Delta(Counters{"a": 1, "b": 5}, Counters{"a": 4, "b": 5, "c": 2})
	if len(d) != 2 || d["a"] != 3 || d["c"] != 2 {
		t.Errorf("delta %v", d)
	}
}

func TestParseProcAddr(t *testing.T) {
	for in, want := range map[string]string{
		"0100007F:1F90":                         "127.0.0.1:8080",
		"00000000000000000000000001000000:0050": "[::1]:80",
		"0000000000000000FFFF00000100007F:0016": "127.0.0.1:22",
	} {
		got, err := parseProcAddr(in)
		if err != nil || got != netip.MustParseAddrPort(want) {
			t.Errorf("%s: %v %v, want %s", in, got, err, want)
		}
	}
}
