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

// twAt is t0 plus ms milliseconds.
func twAt(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

var (
	twLocal  = netip.MustParseAddrPort("10.0.0.2:40000")
	twRemote = netip.MustParseAddrPort("10.0.0.1:80")
)

// A TIME_WAIT counts for exactly TCP_TIMEWAIT_LEN after its entry, in
// Live, in its destination's Now and in Top.
func TestTimeWaitExpiresAfterSixtySeconds(t *testing.T) {
	tr := NewTimeWaitTracker()
	tr.Enter(1, twLocal, twRemote, twAt(0))
	tr.Enter(1, twLocal, twRemote, twAt(1000))
	const life = int(TimeWaitLen / time.Millisecond)
	for _, tc := range []struct {
		ms   int
		live int
	}{{0, 2}, {life - 1, 2}, {life, 1}, {life + 999, 1}, {life + 1000, 0}} {
		tr.Expire(twAt(tc.ms))
		if got := tr.Live(); got != tc.live {
			t.Errorf("at %d ms: Live %d, want %d", tc.ms, got, tc.live)
		}
	}
	tr = NewTimeWaitTracker()
	tr.Enter(1, twLocal, twRemote, twAt(0))
	if d := tr.Top(5, twAt(life-1)); len(d) != 1 || d[0].Now != 1 || d[0].Peak != 1 || d[0].Total != 1 {
		t.Errorf("Top before expiry: %+v", d)
	}
	if d := tr.Top(5, twAt(life)); len(d) != 1 || d[0].Now != 0 || d[0].Peak != 1 {
		t.Errorf("Top after expiry: %+v", d)
	}
}

// A destination is the namespace, the local address and the remote
// address and port: the local port does not split it.
func TestTimeWaitDestinations(t *testing.T) {
	tr := NewTimeWaitTracker()
	enter := func(netns uint32, local, remote string) {
		tr.Enter(netns, netip.MustParseAddrPort(local), netip.MustParseAddrPort(remote), twAt(0))
	}
	enter(1, "10.0.0.2:40000", "10.0.0.1:80")
	enter(1, "10.0.0.2:40001", "10.0.0.1:80") // same destination, another port
	enter(2, "10.0.0.2:40000", "10.0.0.1:80") // another namespace
	enter(1, "10.0.0.3:40000", "10.0.0.1:80") // another local address
	enter(1, "10.0.0.2:40000", "10.0.0.1:81") // another remote port
	enter(1, "[fd00::2]:40000", "[fd00::1]:80")
	if tr.Live() != 6 {
		t.Errorf("Live %d, want 6", tr.Live())
	}
	ds := tr.Top(10, twAt(0))
	if len(ds) != 5 {
		t.Fatalf("%d destinations, want 5: %+v", len(ds), ds)
	}
	if ds[0].Now != 2 || ds[0].Key != (TimeWaitKey{NetNS: 1, Local: twLocal.Addr(), Remote: twRemote}) {
		t.Errorf("busiest destination %+v, want 2 TIME_WAITs to %s from %s", ds[0], twRemote, twLocal.Addr())
	}
	if got := tr.Top(2, twAt(0)); len(got) != 2 {
		t.Errorf("Top(2) returned %d destinations", len(got))
	}
}

// The warning fires once when live TIME_WAITs reach the threshold share
// (80 %) of the usable ports, with the time left at the current rate; it
// fires again only after the share fell below 7/8 of the threshold (70 %).
func TestTimeWaitAlertAtEightyPercent(t *testing.T) {
	var alerts []TimeWaitAlert
	calls := 0
	tr := NewTimeWaitTracker()
	tr.Ports = func(netns uint32) (int, bool) {
		calls++
		return 20, netns == 1
	}
	tr.OnAlert = func(a TimeWaitAlert) { alerts = append(alerts, a) }
	for i := 0; i < 15; i++ {
		tr.Enter(1, twLocal, twRemote, twAt(100*i))
	}
	if len(alerts) != 0 {
		t.Fatalf("alert at 15 of 20 ports: %+v", alerts)
	}
	tr.Enter(1, twLocal, twRemote, twAt(1500)) // 16 of 20: 80 %
	if len(alerts) != 1 {
		t.Fatalf("%d alerts at 16 of 20 ports, want 1", len(alerts))
	}
	a := alerts[0]
	if !a.At.Equal(twAt(1500)) || a.Dest.Now != 16 || a.Dest.Ports != 20 || !a.Dest.Warned || a.Dest.Key.Remote != twRemote {
		t.Errorf("alert %+v", a)
	}
	// The rate is the entries before this one, 15 in the 1.5 s since the
	// first: 10/s, so the 4 ports left last 400 ms.
	if a.TimeLeft != 400*time.Millisecond {
		t.Errorf("time left %s, want 400ms", a.TimeLeft)
	}
	tr.Enter(1, twLocal, twRemote, twAt(1600))
	if len(alerts) != 1 {
		t.Errorf("alerted again while still above the threshold: %d alerts", len(alerts))
	}
	// Down to 15 of 20 (75 %) and back to 16: still the same warning.
	tr.Release(1, twLocal, twRemote, twAt(1600), twAt(1700))
	tr.Release(1, twLocal, twRemote, twAt(1500), twAt(1700))
	tr.Enter(1, twLocal, twRemote, twAt(1800))
	if len(alerts) != 1 {
		t.Errorf("alerted again without falling below 70 %%: %d alerts", len(alerts))
	}
	// Down to 13 of 20 (65 %), then back to 16: a second warning.
	for _, ms := range []int{1800, 1400, 1300} {
		tr.Release(1, twLocal, twRemote, twAt(ms), twAt(1900))
	}
	for _, ms := range []int{2000, 2100, 2200} {
		tr.Enter(1, twLocal, twRemote, twAt(ms))
	}
	if len(alerts) != 2 || !alerts[1].At.Equal(twAt(2200)) || alerts[1].Dest.Now != 16 {
		t.Errorf("after falling to 65 %% and climbing back: %+v", alerts)
	}
	// Namespace 2's port range is unknown: no warning however many.
	for i := 0; i < 40; i++ {
		tr.Enter(2, twLocal, twRemote, twAt(100*i))
	}
	if len(alerts) != 2 {
		t.Errorf("alert without a known port range: %+v", alerts[2:])
	}
	if calls != 2 {
		t.Errorf("Ports asked %d times, want once per namespace", calls)
	}
	// No Ports function at all: no warning either.
	tr = NewTimeWaitTracker()
	tr.OnAlert = func(a TimeWaitAlert) { t.Errorf("alert without Ports: %+v", a) }
	for i := 0; i < 40; i++ {
		tr.Enter(1, twLocal, twRemote, twAt(i))
	}
}

// Release ends one live TIME_WAIT early and counts it killed; Undo takes
// an entry back as if never made. Neither touches what is unknown.
func TestTimeWaitReleaseAndUndo(t *testing.T) {
	tr := NewTimeWaitTracker()
	for _, ms := range []int{0, 100, 200} {
		tr.Enter(1, twLocal, twRemote, twAt(ms))
	}
	tr.Release(1, twLocal, twRemote, twAt(100), twAt(150))
	tr.Release(1, twLocal, twRemote, twAt(50), twAt(150))                // no such entry
	tr.Release(2, twLocal, twRemote, twAt(0), twAt(150))                 // no such destination
	tr.Undo(1, twLocal, netip.MustParseAddrPort("10.0.0.1:81"), twAt(0)) // no such destination
	tr.Release(1, twLocal, twRemote, twAt(100), twAt(160))               // already released
	tr.Undo(1, twLocal, twRemote, twAt(100))                             // released, not live
	d := tr.Top(1, twAt(200))[0]
	// The entry at 200 ms came after the one at 100 ms was killed: the
	// peak is 2, not 3.
	if d.Now != 2 || d.Killed != 1 || d.Total != 3 || d.Peak != 2 {
		t.Errorf("after one release: now %d killed %d total %d peak %d, want 2 1 3 2", d.Now, d.Killed, d.Total, d.Peak)
	}
	tr.Undo(1, twLocal, twRemote, twAt(200))
	d = tr.Top(1, twAt(200))[0]
	if d.Now != 1 || d.Total != 2 || d.Killed != 1 || d.Peak != 2 || !d.PeakAt.Equal(twAt(100)) {
		t.Errorf("after an undo: now %d total %d killed %d peak %d at %v, want 1 2 1 2 at 100ms", d.Now, d.Total, d.Killed, d.Peak, d.PeakAt)
	}
	// The undone entry no longer counts in the rate either: 2 entries in 5 s.
	if d.RatePerS <= 0 || d.RatePerS > 2/0.2+0.01 {
		t.Errorf("rate %.2f/s", d.RatePerS)
	}
	if tr.Live() != 1 {
		t.Errorf("Live %d, want 1", tr.Live())
	}
}

// RatePerS counts the entries of the last 5 s, over the time they span.
func TestTimeWaitRate(t *testing.T) {
	tr := NewTimeWaitTracker()
	for i := 0; i < 10; i++ { // 10 entries, one every 100 ms
		tr.Enter(1, twLocal, twRemote, twAt(100*i))
	}
	if d := tr.Top(1, twAt(1000))[0]; d.RatePerS < 9.99 || d.RatePerS > 10.01 {
		t.Errorf("10 entries over 1 s: %.2f/s", d.RatePerS)
	}
	// At 5.05 s the first entry left the window; the 9 left span 4.95 s.
	if d := tr.Top(1, twAt(5050))[0]; d.RatePerS < 9/4.95-0.01 || d.RatePerS > 9/4.95+0.01 {
		t.Errorf("9 entries in the last 4.95 s: %.2f/s", d.RatePerS)
	}
	if d := tr.Top(1, twAt(20000))[0]; d.RatePerS != 0 || d.Now != 10 {
		t.Errorf("no entry in the last 5 s: rate %.2f/s, now %d", d.RatePerS, d.Now)
	}
}

// Expire forgets a drained destination once its peak is a TIME_WAIT
// length old; a warned one stays in Top, ahead of unwarned ones with
// higher peaks.
func TestTimeWaitExpireKeepsWarnedDestinations(t *testing.T) {
	tr := NewTimeWaitTracker()
	tr.Ports = func(uint32) (int, bool) { return 2, true }
	tr.OnAlert = func(TimeWaitAlert) {}
	warned := netip.MustParseAddrPort("10.0.0.9:443")
	tr.Enter(1, twLocal, warned, twAt(0)) // 1 of 2 ports: 50 %
	tr.Enter(1, twLocal, warned, twAt(1)) // 2 of 2: warned
	quiet := netip.MustParseAddrPort("10.0.0.1:80")
	tr.Ports = func(uint32) (int, bool) { return 100, true }
	// Drained at once by a reset: the peak is recent.
	tr.Enter(2, twLocal, quiet, twAt(0))
	tr.Release(2, twLocal, quiet, twAt(0), twAt(10))
	tr.Expire(twAt(100))
	if ds := tr.Top(10, twAt(100)); len(ds) != 2 {
		t.Fatalf("%d destinations while the peaks are recent, want 2: %+v", len(ds), ds)
	}
	const life = int(TimeWaitLen / time.Millisecond)
	tr.Expire(twAt(life + 10))
	ds := tr.Top(10, twAt(life+10))
	if len(ds) != 1 || ds[0].Key.Remote != warned || !ds[0].Warned || ds[0].Peak != 2 || ds[0].Now != 0 {
		t.Fatalf("a TIME_WAIT length after the peaks: %+v, want the warned destination only", ds)
	}
	// Back with a higher peak than the warned one had: the warned one still leads.
	for i := 0; i < 5; i++ {
		tr.Enter(2, twLocal, quiet, twAt(life+20+i))
	}
	ds = tr.Top(10, twAt(life+30))
	if len(ds) != 2 || ds[0].Key.Remote != warned || ds[1].Peak != 5 || ds[1].Warned {
		t.Errorf("order %+v, want the warned destination first", ds)
	}
	if got := tr.Top(1, twAt(life+30)); len(got) != 1 || got[0].Key.Remote != warned {
		t.Errorf("Top(1) %+v", got)
	}
}
