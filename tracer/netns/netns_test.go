package netns

import (
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

func TestParseListenCounters(t *testing.T) {
	in := "TcpExt: SyncookiesSent ListenOverflows ListenDrops TW\nTcpExt: 3 17 19 4\nIpExt: InNoRoutes\nIpExt: 0\n"
	lc, err := parseListenCounters(in)
	if err != nil || lc.Overflows != 17 || lc.Drops != 19 {
		t.Errorf("parsed %+v, %v", lc, err)
	}
	if _, err := parseListenCounters("IpExt: A\nIpExt: 1\n"); err == nil {
		t.Errorf("no TcpExt line, no error")
	}
}
