package tracer

import (
	"strings"
	"testing"

	"github.com/cilium/ebpf"
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

// The BPF object's filter arrays and ring buffer have the sizes the Go
// side assumes: both come from bpf/event.h.
func TestLimitsMatchTheBPFObject(t *testing.T) {
	_, s := objectSpecs(t)
	if got := s.FilterPorts.Size(); got != uint32(MaxFilter*2) {
		t.Errorf("filter_ports holds %d bytes, want %d ports", got, MaxFilter)
	}
	if got := s.FilterNetns.Size(); got != uint32(MaxFilter*4) {
		t.Errorf("filter_netns holds %d bytes, want %d namespaces", got, MaxFilter)
	}
	if got := s.Events.MaxEntries; got != uint32(DefaultRingBufferBytes) {
		t.Errorf("events ring buffer %d bytes in the object, DefaultRingBufferBytes %d", got, DefaultRingBufferBytes)
	}
}

// Every program in the BPF object serves a tracepoint in hookTable on some
// kernel, each exactly once, and a kernel gets one main program and one
// twin per tracepoint it has.
func TestHookTableCoversEveryProgram(t *testing.T) {
	spec, s := objectSpecs(t)
	served := map[string]int{}
	for _, variant := range []Features{{}, {retransmitHasErr: true, sendResetReason: true}} {
		for range hookTable {
			variant.Hooks = append(variant.Hooks, Hook{Present: true})
		}
		chosen := variant.choosePrograms(&s.bpfProgramSpecs)
		if len(chosen) != 2*len(hookTable) {
			t.Fatalf("%d programs chosen for %d tracepoints", len(chosen), len(hookTable))
		}
		for i, a := range chosen {
			if a.spec == nil {
				t.Fatalf("%s: no program", a.tracepoint)
			}
			if a.nested != (i%2 == 1) || (a.nested && a.name() != chosen[i-1].name()+"_nested") {
				t.Errorf("%s: program %d %s (nested %v) out of main/twin order", a.tracepoint, i, a.name(), a.nested)
			}
			if want := hookTable[i/2].event(); a.spec.AttachTo != want {
				t.Errorf("%s attaches to %s, listed for %s", a.name(), a.spec.AttachTo, want)
			}
			served[a.name()]++
		}
	}
	for name := range spec.Programs {
		if served[name] == 0 && name != walkProgram {
			t.Errorf("program %s serves no tracepoint in hookTable", name)
		}
	}
}

// objectSpecs reads the committed BPF object and its typed specs.
func objectSpecs(t *testing.T) (*ebpf.CollectionSpec, bpfSpecs) {
	t.Helper()
	spec, err := loadBpf()
	if err != nil {
		t.Fatal(err)
	}
	var s bpfSpecs
	if err := spec.Assign(&s); err != nil {
		t.Fatal(err)
	}
	return spec, s
}
