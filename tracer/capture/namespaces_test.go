package capture

import (
	"testing"

	"github.com/tcpscope/tcpscope/tracer/netns"
)

// TestNamespaceHoldCap: a recording holds at most maxHeldNamespaces
// namespaces open (each one held lives on, devices and all, until the
// recording ends). The TIME_WAIT tracker's port-range and tcp_rfc1337
// look-ups must not open one more past the cap; they still read the
// namespace, through a handle closed at once.
func TestNamespaceHoldCap(t *testing.T) {
	self, err := netns.Self()
	if err != nil {
		t.Skipf("opening this namespace: %v", err)
	}
	defer self.Close()
	r := &recording{namespaces: map[uint32]*netns.NS{}, book: newCounterBook(map[uint32]netns.Existing{})}
	for i := uint32(1); len(r.namespaces) < maxHeldNamespaces; i++ {
		if i != self.Inode {
			r.namespaces[i] = nil
		}
	}
	ports, ok := r.portRange(self.Inode)
	if !ok || ports <= 0 {
		t.Errorf("port range of this namespace past the cap: %d, %v; want it read", ports, ok)
	}
	r.rfc1337(self.Inode)
	if n := len(r.namespaces); n != maxHeldNamespaces {
		t.Errorf("%d namespaces held, cap %d", n, maxHeldNamespaces)
	}
}
