package tracer

import (
	"fmt"

	"github.com/cilium/ebpf"
)

// ServeNestedOnly makes t trace as if each main program were busy on every
// CPU whenever its tracepoint fires, the state in which the kernel skips it
// for recursion: the main programs are detached and their running flags
// raised, so every event comes from the _nested programs.
func ServeNestedOnly(t *Tracer) error {
	for i, a := range t.attached {
		if !a.nested {
			if err := t.links[i].Close(); err != nil {
				return fmt.Errorf("detaching %s: %w", a.name(), err)
			}
		}
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return fmt.Errorf("counting CPUs: %w", err)
	}
	busy := make([]uint32, cpus)
	for i := range busy {
		busy[i] = 1
	}
	for h := range uint32(bpfHookHOOK_MAX) {
		if err := t.maps.Running.Put(h, busy); err != nil {
			return fmt.Errorf("raising the running flag of hook %d: %w", h, err)
		}
	}
	return nil
}

// DetachNested closes the _nested programs' links, leaving the main ones.
func DetachNested(t *Tracer) error {
	for i, a := range t.attached {
		if a.nested {
			if err := t.links[i].Close(); err != nil {
				return fmt.Errorf("detaching %s: %w", a.name(), err)
			}
		}
	}
	return nil
}
