package tracer

import (
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
	expiries []time.Time
	recent   []time.Time
	alerting bool
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
	// Entries come when records are concluded, in close order but not
	// strictly (an evicted record is concluded early): keep them sorted.
	exp := at.Add(TimeWaitLen)
	i := len(d.expiries)
	for i > 0 && d.expiries[i-1].After(exp) {
		i--
	}
	d.expiries = slices.Insert(d.expiries, i, exp)
	d.recent = append(d.recent, at)
	d.Total++
	d.Now = len(d.expiries)
	if d.Now > d.Peak {
		d.Peak, d.PeakAt = d.Now, at
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
	exp := entered.Add(TimeWaitLen)
	if i := slices.IndexFunc(d.expiries, func(e time.Time) bool { return e.Equal(exp) }); i >= 0 {
		d.expiries = slices.Delete(d.expiries, i, i+1)
		d.Killed++
	}
	d.expire(at)
	t.check(d, at)
}

// Undo takes back the entry made at `entered`: that socket entered no
// TIME_WAIT after all.
func (t *TimeWaitTracker) Undo(netns uint32, local, remote netip.AddrPort, entered time.Time) {
	d, ok := t.dests[TimeWaitKey{NetNS: netns, Local: local.Addr(), Remote: remote}]
	if !ok {
		return
	}
	exp := entered.Add(TimeWaitLen)
	if i := slices.IndexFunc(d.expiries, func(e time.Time) bool { return e.Equal(exp) }); i >= 0 {
		d.expiries = slices.Delete(d.expiries, i, i+1)
		d.Total--
		if j := slices.IndexFunc(d.recent, func(r time.Time) bool { return r.Equal(entered) }); j >= 0 {
			d.recent = slices.Delete(d.recent, j, j+1)
		}
		d.Now = len(d.expiries)
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
	for i < len(d.expiries) && !d.expiries[i].After(now) {
		i++
	}
	d.expiries = d.expiries[i:]
	j := 0
	for j < len(d.recent) && now.Sub(d.recent[j]) > rateWindow {
		j++
	}
	d.recent = d.recent[j:]
	d.Now = len(d.expiries)
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
	c.expiries, c.recent = nil, nil
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

func sortDests(ds []TimeWaitDest) {
	sort.Slice(ds, func(i, j int) bool {
		if ds[i].Warned != ds[j].Warned {
			return ds[i].Warned
		}
		return ds[i].Peak > ds[j].Peak
	})
}
