package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

func newRunCmd() *cobra.Command {
	var f recordFlags
	var linger time.Duration
	cmd := &cobra.Command{
		Use:   "run [flags] -- CMD [ARGS...]",
		Short: "Trace TCP while CMD runs (a load test), then summarise; exits with CMD's status",
		Long: `Start tracing, wait until every program is attached, run CMD with this
terminal's stdin, stdout and stderr, and stop tracing --linger after CMD exits
so the last closes and TIME_WAIT entries land. Then print the summary, write
the export (-o) and exit with CMD's exit status.

Ctrl-C is passed to CMD; a second Ctrl-C stops tracing too (the export is
still written whole).`,
		Example: `  sudo tcpscope run -o ab.jsonl -- ab -n 2000 -c 50 http://10.0.0.5:8080/
  sudo tcpscope run --port 8080 -- wrk -t2 -c100 -d30s http://10.0.0.5:8080/`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 0 {
				return usagef("put the command after --: tcpscope run [flags] -- CMD [ARGS...]")
			}
			if linger < 0 {
				return usagef("--linger %s: must not be negative", linger)
			}
			opts, err := f.options()
			if err != nil {
				return err
			}
			opts.command = args
			opts.sharedTerminal = true
			path, err := exec.LookPath(args[0])
			if err != nil {
				return commandError(args[0], err)
			}
			// Catch Ctrl-C before saying "tracing" (see runCommand).
			sigs := make(chan os.Signal, 2)
			signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
			defer signal.Stop(sigs)
			s, err := openSession(opts, cmd.OutOrStdout(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			return runCommand(cmd.Context(), s, path, args, linger, f.duration, sigs)
		},
	}
	f.registerRecord(cmd)
	cmd.Flags().DurationVar(&linger, "linger", 2*time.Second, "keep tracing this long after CMD exits")
	return cmd
}

// commandError maps a command that cannot start to the shell's codes:
// 127 not found, 126 found but not executable.
func commandError(name string, err error) error {
	code := 127
	if errors.Is(err, os.ErrPermission) || errors.Is(err, exec.ErrDot) {
		code = 126
	}
	var ee *exec.Error
	if errors.As(err, &ee) && errors.Is(ee.Err, os.ErrPermission) {
		code = 126
	}
	return exitCodeError{code: code, err: fmt.Errorf("cannot run %s: %w", name, err)}
}

// exitCodeError prints its message and exits with code.
type exitCodeError struct {
	code int
	err  error
}

func (e exitCodeError) Error() string { return e.err.Error() }
func (e exitCodeError) Unwrap() error { return e.err }

func runCommand(parent context.Context, s *session, path string, args []string, linger, limit time.Duration, sigs chan os.Signal) error {
	child := exec.Command(path, args[1:]...)
	child.Stdin, child.Stdout, child.Stderr = os.Stdin, s.cmdStdout(), os.Stderr
	if err := child.Start(); err != nil {
		s.abort()
		return commandError(args[0], err)
	}
	if parent == nil {
		parent = context.Background()
	}
	ctx, stop := context.WithCancel(parent)
	defer stop()
	exited := make(chan struct{})
	go func() {
		interrupts := 0
		var timeout <-chan time.Time
		if limit > 0 {
			timeout = time.After(limit)
		}
		for {
			select {
			case sig := <-sigs:
				// The first Ctrl-C is CMD's to handle; a second one stops
				// tracing as well.
				child.Process.Signal(sig)
				if interrupts++; interrupts >= 2 {
					stop()
					return
				}
			case <-timeout:
				stop()
				return
			case <-exited:
				select {
				case <-time.After(linger):
				case <-ctx.Done():
				}
				stop()
				return
			}
		}
	}()
	waitErr := make(chan error, 1)
	go func() { waitErr <- child.Wait(); close(exited) }()
	runErr := s.run(ctx)
	select {
	case err := <-waitErr:
		code := exitStatus(err)
		if runErr != nil {
			return runErr
		}
		if code != 0 {
			return exitError{code: code}
		}
		return nil
	default:
		// Tracing stopped (second Ctrl-C or --duration) before CMD ended.
		if runErr != nil {
			return runErr
		}
		return exitError{code: 130}
	}
}

// exitStatus is a finished command's status as a shell reports it.
func exitStatus(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return 1
}
