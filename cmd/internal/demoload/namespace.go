package demoload

import (
	"context"
	"fmt"
	"time"

	"github.com/tcpscope/tcpscope/tracer/netns"
)

// Namespace is the demo's private network namespace, prepared for the load.
type Namespace struct {
	ns    *netns.NS
	Inode uint32
}

// NewNamespace creates the demo's namespace and applies Setup to it.
func NewNamespace() (*Namespace, error) {
	ns, err := netns.Create()
	if err != nil {
		return nil, fmt.Errorf("creating the demo's network namespace: %w", err)
	}
	if err := Setup(ns); err != nil {
		ns.Close()
		return nil, err
	}
	return &Namespace{ns: ns, Inode: ns.Inode}, nil
}

// Run drives the load in the namespace (see Run).
func (n *Namespace) Run(ctx context.Context, d time.Duration) (Injected, error) {
	return Run(ctx, n.ns, d)
}

// Close removes the namespace once nothing in it is left.
func (n *Namespace) Close() error { return n.ns.Close() }
