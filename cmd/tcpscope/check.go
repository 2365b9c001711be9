package main

import (
	"github.com/spf13/cobra"
	"github.com/tcpscope/tcpscope/output"
	"github.com/tcpscope/tcpscope/tracer"
)

func newCheckCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check",
		Short: "Tell whether this kernel can be traced, and what degrades if not",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := tracer.Probe()
			if err != nil {
				return err
			}
			if err := output.CheckTable(cmd.OutOrStdout(), f); err != nil {
				return err
			}
			return f.Usable()
		},
	}
}
