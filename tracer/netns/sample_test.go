package netns_test

import (
	"testing"

	"github.com/tcpscope/tcpscope/tracer/netns"
	"github.com/tcpscope/tcpscope/tracer/nettest"
)

// BenchmarkSample is what a recording pays per tick for a namespace with
// traced listeners: its counters and one sock_diag dump of its listeners
// (here 20, IPv4 and IPv6), in one entry into the namespace.
func BenchmarkSample(b *testing.B) {
	ns := nettest.New(b)
	for i := 0; i < 10; i++ {
		for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
			ln, err := ns.Listen("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
		}
	}
	for b.Loop() {
		s, err := ns.Sample(false, true)
		if err != nil || len(s.Listeners) != 20 {
			b.Fatalf("%d listeners, %v", len(s.Listeners), err)
		}
	}
}

// BenchmarkSampleCounters: every counter of a namespace, read once a
// second.
func BenchmarkSampleCounters(b *testing.B) {
	ns := nettest.New(b)
	for b.Loop() {
		if _, err := ns.Sample(true, false); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCensus: the one pass over /proc a recording of every namespace
// makes at the start.
func BenchmarkCensus(b *testing.B) {
	for b.Loop() {
		if len(netns.Census()) == 0 {
			b.Fatal("no namespace found")
		}
	}
}
