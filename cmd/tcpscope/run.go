package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/tcpscope/tcpscope/output/html"
	"golang.org/x/sys/unix"
)

// runLong is run's help.
const runLong = `Start tracing, wait until every program is attached, run CMD with this
terminal's stdin, stdout and stderr, and stop tracing --linger after CMD exits
so the last closes and TIME_WAIT entries land. Then print the summary, write
the export (-o) and exit with CMD's exit status.

Ctrl-C reaches CMD once (from the terminal; a SIGINT, SIGTERM or SIGHUP sent
to tcpscope with kill is passed on). A second one stops CMD: tcpscope waits
2s for it to exit, then kills it (SIGKILL); a third kills it at once.
--duration D interrupts CMD after D the same way (SIGINT, SIGKILL 2s later).
Stopping CMD stops the processes it started too: they get the same signals,
and those still running once CMD is gone get SIGKILL at the end of the 2s.
In every case tracing ends once CMD is gone, the export is written whole and
tcpscope exits with CMD's status (128+9 = 137 when it had to be killed).
A CMD that exits by itself may leave processes running; tcpscope lets them be.`

func newRunCmd() *cobra.Command {
	var f recordFlags
	var linger time.Duration
	cmd := &cobra.Command{
		Use:   "run [flags] -- CMD [ARGS...]",
		Short: "Trace TCP while CMD runs (a load test), then summarise; exits with CMD's status",
		Long:  runLong,
		Example: `  sudo tcpscope run -o ab.jsonl -- ab -n 2000 -c 50 http://10.0.0.5:8080/
  sudo tcpscope run --port 8080 -- wrk -t2 -c100 -d30s http://10.0.0.5:8080/`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 0 {
				return usagef("put the command after --: tcpscope run [flags] -- CMD [ARGS...]")
			}
			opts, err := f.options()
			if err != nil {
				return err
			}
			opts.command = args
			opts.sharedTerminal = true
			cleanup, err := htmlExport(&opts, f.html)
			if err != nil {
				return err
			}
			defer cleanup()
			path, err := exec.LookPath(args[0])
			if err != nil {
				return commandError(args[0], err)
			}
			// Catch Ctrl-C before saying "tracing" (see runCommand).
			sigs := make(chan os.Signal, 2)
			signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
			defer signal.Stop(sigs)
			catchSIGPIPE()
			s, err := newSession(opts, cmd.OutOrStdout(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			err = runCommand(cmd.Context(), s, path, args, linger, f.duration, sigs)
			return htmlAfterRun(cmd.ErrOrStderr(), err, opts.output, f.html, args)
		},
	}
	f.registerRecord(cmd)
	cmd.Flags().Lookup("duration").Usage = "interrupt CMD after this long (SIGINT, SIGKILL 2s later); tracing ends once it is gone"
	linger = 2 * time.Second
	cmd.Flags().Var(durationValue{&linger, notNegative}, "linger", "keep tracing this long after CMD exits")
	return cmd
}

// htmlAfterRun writes run's --html page (page "" for none) from the
// export once CMD is gone; runErr is how the run ended. CMD's status stays
// tcpscope's: a page that could not be written is said on stderr (and is
// the error when CMD succeeded). Without CMD's status (tracing failed)
// there is no page.
func htmlAfterRun(stderr io.Writer, runErr error, export, page string, args []string) error {
	code, ok := commandStatus(runErr)
	if page == "" || !ok {
		return runErr
	}
	if herr := writeHTML(stderr, export, page, html.Options{Command: args, ExitStatus: &code}); herr != nil {
		if runErr == nil {
			return herr
		}
		fmt.Fprintf(stderr, "tcpscope: %v\n", herr)
	}
	return runErr
}

// commandError maps a command that cannot start to the shell's codes: 127
// when it is not found, 126 when it is found but cannot be executed (no
// execute permission, a directory, a file of an unknown format, a missing
// script interpreter).
func commandError(name string, err error) error {
	code := 127
	if errors.Is(err, os.ErrPermission) || errors.Is(err, exec.ErrDot) || errors.Is(err, syscall.EISDIR) {
		code = 126
	}
	return exitCodeError{code: code, err: fmt.Errorf("cannot run %s: %w", name, err)}
}

// startError is commandError for a command exec.LookPath found but that
// failed to start: execve refused it (ENOEXEC for a file that is neither
// ELF nor a script, EACCES, ENOENT for a missing #! interpreter), which a
// shell reports as 126.
func startError(name string, err error) error {
	return exitCodeError{code: 126, err: fmt.Errorf("cannot run %s: %w", name, err)}
}

// exitCodeError prints its message and exits with code.
type exitCodeError struct {
	code int
	err  error
}

func (e exitCodeError) Error() string { return e.err.Error() }
func (e exitCodeError) Unwrap() error { return e.err }

// stopGrace is how long run waits, once it has decided to stop CMD, for the
// signal that stops it (SIGINT, or the second interrupt) to work before it
// sends SIGKILL.
const stopGrace = 2 * time.Second

// runCommand runs CMD and traces until it has exited (plus linger). When
// tcpscope stops first (--duration, a second interrupt, a failed recording)
// it stops CMD and its whole process tree: the signal, then SIGKILL after
// stopGrace, and it kills and reaps what is left of the tree once CMD is
// gone (see proctree.go). It always waits for CMD and exits with CMD's
// status.
func runCommand(parent context.Context, s *session, path string, args []string, linger, limit time.Duration, sigs chan os.Signal) error {
	if parent == nil {
		parent = context.Background()
	}
	ctx, stop := context.WithCancel(parent)
	defer stop()
	c := commandRun{s: s, path: path, args: args, sigs: sigs, stop: stop, linger: linger, limit: limit,
		waitErr: make(chan error, 1), exited: make(chan struct{}), traced: make(chan struct{}), stopped: make(chan time.Time, 1)}
	runErr := s.record(ctx, c.start)
	if c.child == nil {
		if runErr == nil && c.interrupted != nil {
			return exitError{code: 128 + int(c.interrupted.(syscall.Signal))}
		}
		return runErr
	}
	close(c.traced)
	code := exitStatus(<-c.waitErr)
	if killAt := <-c.stopped; !killAt.IsZero() {
		reapOrphans(c.child.Process.Pid, c.sv.name, killAt, func(format string, args ...any) {
			fmt.Fprintf(s.stderr, "tcpscope: "+format+"\n", args...)
		})
	}
	if runErr != nil {
		return runErr
	}
	if code != 0 {
		return exitError{code: code}
	}
	return nil
}

// commandRun is CMD while it runs under a recording.
type commandRun struct {
	s           *session
	path        string
	args        []string
	sigs        chan os.Signal
	stop        func() // ends tracing
	linger      time.Duration
	limit       time.Duration
	child       *exec.Cmd // nil until CMD started
	sv          supervisor
	interrupted os.Signal // an interrupt came before CMD started
	waitErr     chan error
	exited      chan struct{}
	traced      chan struct{}
	stopped     chan time.Time
}

// start runs once tracing is attached: it starts CMD and its supervisor.
func (c *commandRun) start() error {
	// An interrupt before CMD starts (while the programs were being
	// attached) ends the run: CMD is not started, the export is written.
	select {
	case sig := <-c.sigs:
		c.interrupted = sig
		c.stop()
		return nil
	default:
	}
	child := exec.Command(c.path, c.args[1:]...)
	child.Stdin, child.Stdout, child.Stderr = os.Stdin, c.s.cmdStdout(), os.Stderr
	if err := becomeSubreaper(); err != nil {
		// Only orphans escape then: the stop still signals CMD's tree.
		fmt.Fprintf(c.s.stderr, "tcpscope: %v\n", err)
	}
	if err := child.Start(); err != nil {
		return startError(c.args[0], err)
	}
	c.child = child
	go func() { c.waitErr <- child.Wait(); close(c.exited) }()
	c.sv = supervisor{p: child.Process, name: filepath.Base(c.args[0]), stderr: c.s.stderr, stop: c.stop}
	go func() { c.stopped <- c.sv.run(c.sigs, c.exited, c.traced, c.linger, c.limit) }()
	return nil
}

// supervisor passes signals to CMD and decides when tracing stops (stop):
// --linger after CMD exited by itself, or as soon as CMD is gone once
// tcpscope has stopped it. It says on stderr what it does with each
// interrupt. run returns, once CMD is gone, when the processes left from
// CMD's tree are to be killed: zero when tcpscope did not stop CMD.
type supervisor struct {
	p      *os.Process
	name   string
	stderr io.Writer
	stop   func()
}

// run is one select loop, longer than most functions here: its cases share
// the state of one stop (stopping, killAt, the timers), and split apart each
// piece would need all of it.
func (sv supervisor) run(sigs <-chan os.Signal, exited, traced <-chan struct{}, linger, limit time.Duration) time.Time {
	p, stop := sv.p, sv.stop
	var timeout, kill, lingered <-chan time.Time
	if limit > 0 {
		timeout = time.After(limit)
	}
	stopping := false
	var killAt time.Time
	stopCommand := func(why string) {
		if !stopping {
			stopping = true
			killAt = time.Now().Add(stopGrace)
			kill = time.After(stopGrace)
			fmt.Fprintf(sv.stderr, "tcpscope: %s: stopping %s (killed in %s if still running)\n", why, sv.name, stopGrace)
		}
	}
	// killTree sends SIGKILL to CMD and its descendants.
	killTree := func() {
		p.Kill()
		signalTree(p.Pid, unix.SIGKILL, 0)
	}
	// interrupt stops CMD and its tree as Ctrl-C would, once; when CMD is
	// already gone it ends tracing instead and reports true.
	interrupt := func(why string) bool {
		if exited == nil {
			stop()
			return true
		}
		if !stopping {
			p.Signal(os.Interrupt)
			signalTree(p.Pid, unix.SIGINT, 0)
			stopCommand(why)
		}
		return false
	}
	interrupts := 0
	for {
		select {
		case sig := <-sigs:
			if exited == nil {
				// Lingering after CMD's exit: an interrupt ends tracing.
				stop()
				return time.Time{}
			}
			delivered := terminalDelivered(sig, p.Pid)
			if !delivered {
				p.Signal(sig)
			}
			// The first interrupt is CMD's to handle; a second one stops
			// CMD (it has just received that one), a third kills it.
			switch interrupts++; {
			case interrupts == 1:
				fmt.Fprintf(sv.stderr, "tcpscope: %s: %s has it; another one stops %s and tracing\n", signalName(sig), sv.name, sv.name)
			case interrupts == 2:
				// The stop is for CMD's whole tree; processes in
				// tcpscope's group got a Ctrl-C from the terminal already.
				skip := 0
				if delivered {
					skip = unix.Getpgrp()
				}
				signalTree(p.Pid, sig.(syscall.Signal), skip)
				stopCommand("second " + signalName(sig))
			default:
				fmt.Fprintf(sv.stderr, "tcpscope: %s: killing %s\n", signalName(sig), sv.name)
				killAt = time.Now()
				killTree()
			}
		case <-timeout:
			// --duration: interrupt CMD as Ctrl-C would; load tools print
			// their report and exit.
			timeout = nil
			if interrupt(fmt.Sprintf("--duration %s reached", limit)) {
				return time.Time{}
			}
		case <-traced:
			// Recording failed: stop CMD as --duration would.
			traced = nil
			if interrupt("tracing ended") {
				return time.Time{}
			}
		case <-kill:
			kill = nil
			fmt.Fprintf(sv.stderr, "tcpscope: %s still running %s after the stop: killing it\n", sv.name, stopGrace)
			killTree()
		case <-exited:
			exited = nil
			if stopping || traced == nil {
				stop()
				return killAt
			}
			lingered = time.After(linger)
		case <-lingered:
			stop()
			return time.Time{}
		}
	}
}

// signalName names an interrupt as users know it.
func signalName(sig os.Signal) string {
	switch sig {
	case os.Interrupt:
		return "interrupt"
	case syscall.SIGHUP:
		return "hangup"
	case syscall.SIGTERM:
		return "SIGTERM"
	}
	return sig.String()
}

// terminalDelivered tells whether sig already reached CMD from the terminal,
// so that passing it on would deliver it twice (load tools take a second
// Ctrl-C as "abort now"). Ctrl-C makes the line discipline signal the
// terminal's whole foreground process group (n_tty's isig() calls
// kill_pgrp()), and CMD runs in tcpscope's group. Go's os/signal does not
// say who sent a signal (no si_code or si_pid), so this is a heuristic: a
// SIGINT is taken as the terminal's when tcpscope has a controlling terminal
// (/dev/tty, whatever stdin is) whose foreground group is tcpscope's own and
// CMD's. Otherwise (no terminal, tcpscope in the background, a script's
// `kill -INT` under a service manager) it is passed on. Limit: `kill -INT`
// aimed at tcpscope alone while it runs in the foreground of a terminal is
// taken for Ctrl-C and not passed on. SIGTERM and SIGHUP are always passed
// on: a terminal does not send SIGTERM, and on a hangup
// (tty_signal_session_leader()) the kernel signals only the session leader,
// whose shell then signals its jobs and CMD may get SIGHUP twice.
func terminalDelivered(sig os.Signal, child int) bool {
	if sig != os.Interrupt {
		return false
	}
	fd, err := unix.Open("/dev/tty", unix.O_RDONLY|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	fg, err := unix.IoctlGetInt(fd, unix.TIOCGPGRP)
	if err != nil {
		return false
	}
	own := unix.Getpgrp()
	cpg, err := unix.Getpgid(child)
	return err == nil && fg == own && cpg == own
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
