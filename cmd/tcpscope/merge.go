package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/tcpscope/tcpscope/output"
	"github.com/tcpscope/tcpscope/tracer/merge"
)

func newMergeCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "merge A.jsonl B.jsonl [...]",
		Short: "Join the client and server halves of connections recorded by separate recorders (hosts or namespaces); no root needed",
		Example: `  tcpscope merge client-host.jsonl server-host.jsonl -o both.jsonl
  tcpscope report both.jsonl`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			hosts, inputs, err := readHosts(args)
			if err != nil {
				return err
			}
			m := output.MergedFrom(merge.Join(hosts), inputs, version, time.Now())
			if out != "" {
				if err := writeMergedFile(out, m); err != nil {
					return err
				}
			}
			return output.MergedTables(cmd.OutOrStdout(), m)
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "write the joined pairs and unmatched halves to `FILE` (JSONL; tcpscope report reads it)")
	return cmd
}

// readHosts reads each export as one host, named by its file.
func readHosts(paths []string) ([]merge.Host, []output.MergeInput, error) {
	var hosts []merge.Host
	var inputs []output.MergeInput
	names := map[string]bool{}
	for _, p := range paths {
		rec, err := output.ReadExport(p)
		if err != nil {
			return nil, nil, usageError{fmt.Errorf("reading export: %w", err)}
		}
		for _, w := range rec.Warnings(p) {
			fmt.Fprintf(os.Stderr, "tcpscope: warning: %s\n", w)
		}
		name := hostName(p, names)
		h := merge.Host{Name: name, Connections: rec.Connections}
		for _, l := range rec.Listeners {
			// ListenDrops counts every ListenOverflows too: the larger is all.
			h.Listeners = append(h.Listeners, merge.Listener{Local: l.Local, Drops: max(l.DropsAttributed, l.OverflowsAttributed)})
		}
		hosts = append(hosts, h)
		inputs = append(inputs, output.MergeInput{Host: name, File: p, Hostname: rec.Meta.Hostname, Connections: len(rec.Connections)})
	}
	return hosts, inputs, nil
}

// hostName is the file's base name without its extensions, made unique.
func hostName(path string, taken map[string]bool) string {
	base := filepath.Base(path)
	for _, ext := range []string{".zst", ".jsonl", ".json"} {
		base = strings.TrimSuffix(base, ext)
	}
	name := base
	for i := 2; taken[name]; i++ {
		name = fmt.Sprintf("%s#%d", base, i)
	}
	taken[name] = true
	return name
}

func writeMergedFile(path string, m *output.Merged) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("creating the merged file: %w", err)
	}
	if err := output.WriteMerged(f, m); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("closing the merged file: %w", err)
	}
	return nil
}
