// Package nettest gives tests private network namespaces to drive real TCP
// traffic in, with packet drops and sysctls that never touch the host.
package nettest

import (
	"fmt"
	"os"
	"testing"

	"github.com/cilium/ebpf/btf"
	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/netns"
)

// RequirePrivileges skips t when it cannot load BPF programs and create
// namespaces (not root, no BTF), or when the kernel lacks what tcpscope
// cannot work without, naming the reason. Under CI=true it fails instead:
// CI must never go green by skipping.
func RequirePrivileges(t testing.TB) {
	t.Helper()
	reason := ""
	if os.Geteuid() != 0 {
		reason = "needs root (run: sudo make test)"
	} else if _, err := btf.LoadKernelSpec(); err != nil {
		reason = fmt.Sprintf("needs kernel BTF: %v", err)
	} else if f, err := tracer.Probe(); err != nil {
		reason = fmt.Sprintf("probing the kernel: %v", err)
	} else if err := f.Usable(); err != nil {
		reason = err.Error()
	}
	if reason == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("privileged test cannot run under CI: %s", reason)
	}
	t.Skip(reason)
}

// Unavailable skips t for a reason the machine gives (no cgroup v2, say),
// outside CI; under CI=true it fails, like RequirePrivileges.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("cannot run under CI: "+format, args...)
	}
	t.Skipf(format, args...)
}

// RequireKernelFeature skips t, naming what is missing, when the running
// kernel lacks k; under CI=true it fails instead, like RequirePrivileges:
// CI runs on a kernel that has every feature, and must never go green by
// skipping. tcpscope itself works without k (only the part of its records
// that k gives is missing), which is why a developer's older kernel skips.
func RequireKernelFeature(t testing.TB, k tracer.KernelFeature) {
	t.Helper()
	RequirePrivileges(t)
	if !HasKernelFeature(t, k) {
		t.Skipf("needs %s; this kernel lacks it", k)
	}
}

// HasKernelFeature says whether the running kernel offers k, for a test
// that checks what k gives only where the kernel has it. Under CI=true a
// missing k fails t: a check left out would pass unseen.
func HasKernelFeature(t testing.TB, k tracer.KernelFeature) bool {
	t.Helper()
	f, err := tracer.Probe()
	if err != nil {
		t.Fatalf("probing the kernel: %v", err)
	}
	if f.Has(k) {
		return true
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("needs %s; this kernel (%s) lacks it (CI=true: leaving the check out would hide it)", k, f.Kernel)
	}
	return false
}

// New creates a network namespace for t and removes it at cleanup.
func New(t testing.TB) *netns.NS {
	t.Helper()
	RequirePrivileges(t)
	ns, err := netns.Create()
	if err != nil {
		t.Fatalf("creating network namespace: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}
