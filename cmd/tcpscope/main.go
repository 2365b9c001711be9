// Command tcpscope traces the life of every TCP connection on a Linux host
// with eBPF and points at the broken ones.
package main

import (
	"errors"
	"fmt"
	"os"
	"runtime/pprof"
	"strings"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

// usageError marks bad input: exit code 2, like flag parsing errors.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// exitError carries an exit status without printing anything more.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "tcpscope",
		Short:         "Trace the life of every TCP connection with eBPF and point at the broken ones",
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%w (see %s --help)", err, cmd.CommandPath())}
	})
	root.AddCommand(newRecordCmd(), newRunCmd(), newReportCmd(), newDemoCmd(), newCheckCmd(), newMergeCmd())
	return root
}

func main() {
	// TCPSCOPE_CPUPROFILE=FILE writes a Go CPU profile (for `make bench` work).
	if path := os.Getenv("TCPSCOPE_CPUPROFILE"); path != "" {
		if f, err := os.Create(path); err == nil {
			pprof.StartCPUProfile(f)
			code := run(os.Args[1:])
			pprof.StopCPUProfile()
			f.Close()
			os.Exit(code)
		}
	}
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	root := newRootCmd()
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return 0
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	var ce exitCodeError
	if errors.As(err, &ce) {
		fmt.Fprintf(os.Stderr, "tcpscope: %v\n", err)
		return ce.code
	}
	fmt.Fprintf(os.Stderr, "tcpscope: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) || isCobraUsage(err.Error()) {
		return 2
	}
	return 1
}

// isCobraUsage recognises cobra's own argument errors (unknown command,
// wrong argument count), which do not pass through the flag error hook.
func isCobraUsage(msg string) bool {
	for _, p := range []string{"unknown command", "accepts ", "requires at least", "requires at most"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}
