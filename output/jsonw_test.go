package output

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestAppendRFC3339Nano: the cached formatter writes what
// time.RFC3339Nano writes, for any time, in any order.
func TestAppendRFC3339Nano(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	base := time.Date(2026, 12, 2, 11, 34, 8, 0, time.UTC)
	for i := 0; i < 100000; i++ {
		var ts time.Time
		switch i % 4 {
		case 0:
			ts = base.Add(time.Duration(rng.Int64N(int64(time.Hour))))
		case 1:
			ts = base.Add(time.Duration(rng.Int64N(1000)) * time.Second) // whole seconds
		case 2:
			ts = time.Unix(rng.Int64N(1<<34), rng.Int64N(1e9)).In(time.FixedZone("x", 3600))
		case 3:
			ts = base.Add(time.Duration(rng.Int64N(1e6)) * time.Microsecond)
		}
		got := string(appendRFC3339Nano(nil, ts))
		if want := ts.UTC().Format(time.RFC3339Nano); got != want {
			t.Fatalf("%v: %q, want %q", ts, got, want)
		}
	}
}
