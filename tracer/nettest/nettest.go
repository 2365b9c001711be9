// Package nettest gives tests private network namespaces to drive real TCP
// traffic in, with packet drops and sysctls that never touch the host.
package nettest

import (
	"fmt"
	"os"
	"testing"

	"github.com/cilium/ebpf/btf"
	"github.com/tcpscope/tcpscope/tracer/netns"
)

// RequirePrivileges skips t when it cannot load BPF programs and create
// namespaces (not root, no BTF), naming the reason. Under CI=true it fails
// instead: CI must never go green by skipping.
func RequirePrivileges(t testing.TB) {
	t.Helper()
	reason := ""
	if os.Geteuid() != 0 {
		reason = "needs root (run: sudo make test)"
	} else if _, err := btf.LoadKernelSpec(); err != nil {
		reason = fmt.Sprintf("needs kernel BTF: %v", err)
	}
	if reason == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("privileged test cannot run under CI: %s", reason)
	}
	t.Skip(reason)
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
