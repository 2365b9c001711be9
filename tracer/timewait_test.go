package tracer

import (
	"net/netip"
	"testing"
	"time"
)

// The peak of a destination counts only TIME_WAITs that were: an entry
// taken back (Undo) leaves no trace in it, even when the same count was
// reached earlier without it or when entries expired in between; a killed
// one (Release) counted while it lived.
func TestTimeWaitPeakAfterUndo(t *testing.T) {
	local := netip.MustParseAddrPort("10.0.0.2:40000")
	remote := netip.MustParseAddrPort("10.0.0.1:80")
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	const x = -59_900 // expires at 100 ms
	for _, tc := range []struct {
		name     string
		enter    []int // ms, in the order told
		undo     []int
		release  [][2]int // entered, killed at
		peak     int
		peakAtMs int
	}{
		{"undone alone", []int{0}, []int{0}, nil, 0, 0},
		{"undo the last", []int{x, 0, 200, 300}, []int{300}, nil, 2, 0},
		// x and 0 live together at 0 ms; x expires at 100 ms.
		{"earlier equal peak", []int{x, 0, 200, 300}, []int{300, 200}, nil, 2, 0},
		{"undo both late", []int{x, 0, 200, 300}, []int{300, 0}, nil, 1, x},
		{"told out of order", []int{0, 300, 200}, []int{300}, nil, 2, 200},
		{"killed counts while it lived", []int{0, 200, 300}, nil, [][2]int{{200, 250}}, 2, 200},
		{"killed before a later entry", []int{0, 200}, nil, [][2]int{{0, 100}}, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := NewTimeWaitTracker()
			for _, ms := range tc.enter {
				tr.Enter(7, local, remote, at(ms))
			}
			for _, ms := range tc.undo {
				tr.Undo(7, local, remote, at(ms))
			}
			for _, r := range tc.release {
				tr.Release(7, local, remote, at(r[0]), at(r[1]))
			}
			d := tr.Top(1, at(400))
			if len(d) != 1 {
				t.Fatalf("destinations %+v", d)
			}
			if d[0].Peak != tc.peak || (tc.peak > 0 && !d[0].PeakAt.Equal(at(tc.peakAtMs))) {
				t.Errorf("peak %d at %v, want %d at %v", d[0].Peak, d[0].PeakAt, tc.peak, at(tc.peakAtMs))
			}
		})
	}
}
