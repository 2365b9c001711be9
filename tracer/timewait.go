package tracer

import (
	"cmp"
	"net/netip"
	"slices"
	"sort"
	"time"
)

// TimeWaitKey is a destination as port exhaustion sees it: every TIME_WAIT
// socket from one local address to one remote address and port holds one
// local port that connect() cannot reuse for that destination.
type TimeWaitKey struct {
	NetNS  uint32
	Local  netip.Addr
	Remote netip.AddrPort
}

// TimeWaitDest is the TIME_WAIT load toward one destination.
type TimeWaitDest struct {
	Key      TimeWaitKey
	Now      int       // live TIME_WAIT sockets (entered less than 60 s ago)
	Peak     int       // the most seen at once
	PeakAt   time.Time //
	Total    uint64    // TIME_WAIT entries seen
	Killed   uint64    // of which a reset ended early
	Ports    int       // usable local ports (ip_local_port_range), 0 if unknown
	RatePerS float64   // new TIME_WAIT entries per second, last 5 s
	Warned   bool      // crossed the warning threshold at least once
	live     []twEntry // entries less than 60 s old, by entry time
	recent   []time.Time
	alerting bool
	// The peak among entries already expired or killed; the live ones'
	// counts may still change (Undo, Release).
	pastPeak   int
	pastPeakAt time.Time
}

// twEntry is one live TIME_WAIT of a destination and how many of the
// destination's entries, itself included, were live when it entered. The
// count only rises at an entry, so the peak is the largest of these counts.
type twEntry struct {
	at    time.Time
	count int
}

// TimeWaitAlert is raised when a destination's TIME_WAIT sockets pass the
// warning share of its usable ports.
type TimeWaitAlert struct {
	At       time.Time // when the share was crossed
	Dest     TimeWaitDest
	TimeLeft time.Duration // until connects fail at the current rate; 0 if unknown
}

// TimeWaitTracker counts live TIME_WAIT sockets per destination from the
// inferred entries and their fixed 60 s life (TCP_TIMEWAIT_LEN).
type TimeWaitTracker struct {
	// Ports returns the usable local ports in a namespace
	// (ip_local_port_range); ok false when unknown.
	Ports func(netns uint32) (int, bool)
	// Threshold is the share of usable ports that raises an alert (0.8).
	Threshold float64
	// OnAlert is called once each time a destination crosses Threshold.
	OnAlert func(TimeWaitAlert)
	dests   map[TimeWaitKey]*TimeWaitDest
	ports   map[uint32]int
	past    []TimeWaitDest // warned destinations whose TIME_WAIT drained
}

// NewTimeWaitTracker returns an empty tracker.
func NewTimeWaitTracker() *TimeWaitTracker {
	return &TimeWaitTracker{Threshold: 0.8, dests: map[TimeWaitKey]*TimeWaitDest{}, ports: map[uint32]int{}}
}

const rateWindow = 5 * time.Second

// Enter records one socket entering TIME_WAIT at the given time.
func (t *TimeWaitTracker) Enter(netns uint32, local, remote netip.AddrPort, at time.Time) {
	k := TimeWaitKey{NetNS: netns, Local: local.Addr(), Remote: remote}
	d, ok := t.dests[k]
	if !ok {
		d = &TimeWaitDest{Key: k, Ports: t.portsOf(netns)}
		t.dests[k] = d
	}
	d.expire(at)
	// Entries come in close order but not strictly (a record concluded
	// later is told late): keep them sorted. Every entry before it is live
	// at `at`; every one after entered while it was.
	i := len(d.live)
	for i > 0 && d.live[i-1].at.After(at) {
		i--
		d.live[i].count++
	}
	d.live = slices.Insert(d.live, i, twEntry{at: at, count: i + 1})
	d.recent = append(d.recent, at)
	d.Total++
	d.Now = len(d.live)
	if i == len(d.live)-1 {
		// In order, the usual case: only the new count can be the peak.
		if i+1 > d.Peak {
			d.Peak, d.PeakAt = i+1, at
		}
	} else {
		d.settlePeak()
	}
	t.check(d, at)
}

// Release ends early the TIME_WAIT entered at `entered`: a reset killed
// its timewait sock at `at` and the port is free again.
func (t *TimeWaitTracker) Release(netns uint32, local, remote netip.AddrPort, entered, at time.Time) {
	d, ok := t.dests[TimeWaitKey{NetNS: netns, Local: local.Addr(), Remote: remote}]
	if !ok {
		return
	}
	if e, ok := d.remove(entered, at); ok {
		// It was live at its entry: that count stands.
		d.pastPeakAbove(e)
		d.settlePeak()
		d.Killed++
	}
	d.expire(at)
	t.check(d, at)
}

// Undo takes back the entry made at `entered`: that socket entered no
// TIME_WAIT after all, so it counts neither now nor in the peak.
func (t *TimeWaitTracker) Undo(netns uint32, local, remote netip.AddrPort, entered time.Time) {
	d, ok := t.dests[TimeWaitKey{NetNS: netns, Local: local.Addr(), Remote: remote}]
	if !ok {
		return
	}
	if _, ok := d.remove(entered, entered); ok {
		d.settlePeak()
		d.Total--
		if j := slices.IndexFunc(d.recent, func(r time.Time) bool { return r.Equal(entered) }); j >= 0 {
			d.recent = slices.Delete(d.recent, j, j+1)
		}
	}
}

// remove drops the live entry made at `entered`, which ended at `end`:
// the entries made from `end` on no longer count it. The caller settles
// the peak.
func (d *TimeWaitDest) remove(entered, end time.Time) (twEntry, bool) {
	i := slices.IndexFunc(d.live, func(e twEntry) bool { return e.at.Equal(entered) })
	if i < 0 {
		return twEntry{}, false
	}
	e := d.live[i]
	d.live = slices.Delete(d.live, i, i+1)
	for j := i; j < len(d.live); j++ {
		if !d.live[j].at.Before(end) {
			d.live[j].count--
		}
	}
	d.Now = len(d.live)
	return e, true
}

// pastPeakAbove keeps an entry that leaves the live list in the peak.
func (d *TimeWaitDest) pastPeakAbove(e twEntry) {
	if e.count > d.pastPeak || (e.count == d.pastPeak && e.at.Before(d.pastPeakAt)) {
		d.pastPeak, d.pastPeakAt = e.count, e.at
	}
}

// settlePeak sets Peak and PeakAt, the first time it was reached.
func (d *TimeWaitDest) settlePeak() {
	d.Peak, d.PeakAt = d.pastPeak, d.pastPeakAt
	for _, e := range d.live {
		if e.count > d.Peak {
			d.Peak, d.PeakAt = e.count, e.at
		}
	}
}

func (t *TimeWaitTracker) portsOf(netns uint32) int {
	if n, ok := t.ports[netns]; ok {
		return n
	}
	n := 0
	if t.Ports != nil {
		if p, ok := t.Ports(netns); ok {
			n = p
		}
	}
	t.ports[netns] = n
	return n
}

func (d *TimeWaitDest) expire(now time.Time) {
	i := 0
	for i < len(d.live) && !d.live[i].at.Add(TimeWaitLen).After(now) {
		d.pastPeakAbove(d.live[i])
		i++
	}
	d.live = d.live[i:]
	j := 0
	for j < len(d.recent) && now.Sub(d.recent[j]) > rateWindow {
		j++
	}
	d.recent = d.recent[j:]
	d.Now = len(d.live)
	span := rateWindow
	if len(d.recent) > 1 {
		if s := now.Sub(d.recent[0]); s < span && s > 0 {
			span = s
		}
	}
	d.RatePerS = float64(len(d.recent)) / span.Seconds()
}

func (t *TimeWaitTracker) check(d *TimeWaitDest, now time.Time) {
	if d.Ports == 0 {
		return
	}
	share := float64(d.Now) / float64(d.Ports)
	switch {
	case share >= t.Threshold && !d.alerting:
		d.alerting, d.Warned = true, true
		var left time.Duration
		if d.RatePerS > 0 {
			left = time.Duration(float64(d.Ports-d.Now) / d.RatePerS * float64(time.Second))
		}
		if t.OnAlert != nil {
			t.OnAlert(TimeWaitAlert{At: now, Dest: d.snapshot(), TimeLeft: left})
		}
	case share < t.Threshold*0.875 && d.alerting:
		d.alerting = false
	}
}

func (d *TimeWaitDest) snapshot() TimeWaitDest {
	c := *d
	c.live, c.recent = nil, nil
	return c
}

// Expire drops entries older than 60 s everywhere.
func (t *TimeWaitTracker) Expire(now time.Time) {
	for k, d := range t.dests {
		d.expire(now)
		t.check(d, now)
		if d.Now == 0 && now.Sub(d.PeakAt) > TimeWaitLen {
			delete(t.dests, k)
			if d.Warned {
				t.keep(d)
			}
		}
	}
}

// Live is the number of live TIME_WAIT sockets in all destinations.
func (t *TimeWaitTracker) Live() int {
	n := 0
	for _, d := range t.dests {
		n += d.Now
	}
	return n
}

func (t *TimeWaitTracker) keep(d *TimeWaitDest) {
	t.past = append(t.past, d.snapshot())
}

// Top returns destinations by peak, the warned ones first, at most n.
func (t *TimeWaitTracker) Top(n int, now time.Time) []TimeWaitDest {
	out := append([]TimeWaitDest(nil), t.past...)
	for _, d := range t.dests {
		d.expire(now)
		out = append(out, d.snapshot())
	}
	sortDests(out)
	if len(out) > n {
		out = out[:n]
	}
	return out
}

// Busiest returns at most n destinations with live TIME_WAIT sockets,
// the most first.
func (t *TimeWaitTracker) Busiest(n int, now time.Time) []TimeWaitDest {
	var out []TimeWaitDest
	for _, d := range t.dests {
		d.expire(now)
		if d.Now > 0 {
			out = append(out, d.snapshot())
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Now > out[j].Now })
	if len(out) > n {
		out = out[:n]
	}
	return out
}

func sortDests(ds []TimeWaitDest) {
	sort.Slice(ds, func(i, j int) bool {
		if ds[i].Warned != ds[j].Warned {
			return ds[i].Warned
		}
		return ds[i].Peak > ds[j].Peak
	})
}

// LiveCounts returns the live TIME_WAIT sockets per destination address
// and port (summed over local addresses), the most first, at most n.
func (t *TimeWaitTracker) LiveCounts(now time.Time, n int) []TimeWaitCount {
	by := map[TimeWaitCount]int{} // keyed with Count 0
	for _, d := range t.dests {
		d.expire(now)
		if d.Now > 0 {
			by[TimeWaitCount{NetNS: d.Key.NetNS, Remote: d.Key.Remote}] += d.Now
		}
	}
	if len(by) == 0 {
		return nil
	}
	out := make([]TimeWaitCount, 0, len(by))
	for k, c := range by {
		k.Count = c
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b TimeWaitCount) int {
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		if c := cmp.Compare(a.NetNS, b.NetNS); c != 0 {
			return c
		}
		return a.Remote.Compare(b.Remote)
	})
	return out[:min(n, len(out))]
}
