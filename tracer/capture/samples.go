package capture

import "time"

// takeSample ends a sample interval at now and hands the sample to
// Sinks.Sample. The kernel's loss counters are read again here (once per
// interval): a failed read keeps the last one, so that its losses count in
// the next sample rather than vanish.
func (r *recording) takeSample(now time.Time) error {
	if c, err := r.tr.Counters(); err == nil {
		r.counters = c
	}
	s := r.sampler.Take(now, r.rec.Builder, r.counters, r.timeWait)
	return r.sinks.Sample(&s)
}
