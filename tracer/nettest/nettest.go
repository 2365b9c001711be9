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

// RequireKernelFeature skips t, naming what is missing, when the running
// kernel lacks k. Unlike RequirePrivileges it skips under CI=true too:
// tcpscope works without k, only the part of its records that k gives is
// missing, and a CI kernel may be older than the one the test was written
// on.
func RequireKernelFeature(t testing.TB, k tracer.KernelFeature) {
	t.Helper()
	RequirePrivileges(t)
	f, err := tracer.Probe()
	if err != nil {
		t.Fatalf("probing the kernel: %v", err)
	}
	if !f.Has(k) {
		t.Skipf("needs %s; this kernel (%s) lacks it", k, f.Kernel)
	}
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
