package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"github.com/tcpscope/tcpscope/output"
	"github.com/tcpscope/tcpscope/tracer"
)

func newCheckCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check",
		Short: "Tell whether this kernel can be traced, and what degrades if not",
		Long: `Tell whether this kernel can be traced. With the privileges to trace, check
loads and attaches tcpscope's programs and detaches them at once, so "attached"
means it was tried; without them, it reports what the kernel's BTF offers and
says attaching was not tried.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := tracer.Probe()
			if err != nil {
				return err
			}
			usable := f.Usable()
			var trial output.AttachTrial
			switch {
			case usable == nil:
				trial.Tried = true
				tr, err := tracer.Open(tracer.Config{RingBufferBytes: 1 << 16})
				if err != nil {
					// Without the default mode, the per-event one may load.
					trial.AggregateErr = err
					tr, err = tracer.Open(tracer.Config{RingBufferBytes: 1 << 16, Events: true})
				}
				if err == nil {
					err = tr.Close()
				}
				if err != nil {
					trial.Err = fmt.Errorf("attaching the programs: %w", err)
					usable = trial.Err
				}
			case errors.Is(usable, tracer.ErrPrivileges):
				trial.Why = "needs root"
			default:
				trial.Why = "a check above failed"
			}
			if err := output.CheckTable(cmd.OutOrStdout(), f, trial); err != nil {
				return err
			}
			return usable
		},
	}
}
