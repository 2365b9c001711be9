package tracer

import (
	"strings"
	"testing"
)

// Has answers from what Probe found, each feature from its own evidence,
// and every feature names the kernel that brought it.
func TestKernelFeatures(t *testing.T) {
	all := []KernelFeature{ResetReasons, CloseResetReasons, ListenOverflowDrops, RetransmitResult}
	for _, tc := range []struct {
		name string
		f    Features
		has  []KernelFeature
	}{
		{"6.1", Features{}, nil},
		{"6.10", Features{sendResetReason: true}, []KernelFeature{ResetReasons}},
		{"reason names without the prototype", Features{closeResetReasons: true}, nil},
		{"6.12", Features{sendResetReason: true, closeResetReasons: true}, []KernelFeature{ResetReasons, CloseResetReasons}},
		{"6.15", Features{sendResetReason: true, closeResetReasons: true, listenOverflowReason: 40},
			[]KernelFeature{ResetReasons, CloseResetReasons, ListenOverflowDrops}},
		{"6.17", Features{sendResetReason: true, closeResetReasons: true, listenOverflowReason: 40, retransmitHasErr: true}, all},
	} {
		for _, k := range all {
			want := false
			for _, h := range tc.has {
				want = want || h == k
			}
			if got := tc.f.Has(k); got != want {
				t.Errorf("%s: Has(%s) = %v, want %v", tc.name, k, got, want)
			}
		}
	}
	for _, k := range all {
		if !strings.Contains(k.String(), "(Linux 6.") {
			t.Errorf("feature %d: %q names no kernel", k, k)
		}
	}
	if (Features{}).Has(KernelFeature(99)) || KernelFeature(99).String() != "kernel feature 99" {
		t.Errorf("unknown feature: %v %q", (Features{}).Has(KernelFeature(99)), KernelFeature(99))
	}
}
