package capture

import (
	"net/netip"
	"testing"

	"github.com/tcpscope/tcpscope/tracer/netns"
)

// A port whose listeners have different owners is not adopted: the
// kernel would give all their children one owner. One owner listening on
// both families is adopted.
func TestSharedPorts(t *testing.T) {
	l := func(addr string, pid uint32, comm string) netns.ListeningSocket {
		return netns.ListeningSocket{Local: netip.MustParseAddrPort(addr), PID: pid, Comm: comm}
	}
	ls := []netns.ListeningSocket{
		l("0.0.0.0:80", 10, "nginx"), l("[::]:80", 10, "nginx"),
		l("127.0.0.1:8080", 10, "nginx"), l("127.0.0.2:8080", 11, "nginx"),
		l("0.0.0.0:9090", 12, "prom"), l("[::]:9090", 0, ""),
		l("0.0.0.0:5432", 13, "postgres"), l("[::]:5432", 13, "postmaster"),
	}
	got := sharedPorts(ls)
	for port, want := range map[uint16]bool{80: false, 8080: true, 9090: true, 5432: true} {
		if got[port] != want {
			t.Errorf("port %d shared: %v, want %v", port, got[port], want)
		}
	}
}
