package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a started tracer process, in its own process group so that a
// Ctrl-C at the terminal reaches only this program, which stops it.
type proc struct {
	cmd     *exec.Cmd
	stderr  lockedBuffer
	dir     string // its ready file, export and stdout
	export  string
	stdout  string // "" when discarded
	exited  chan struct{}
	waitErr error
}

// errRefused is a tracer that exited before it was ready.
var errRefused = errors.New("exited before it was ready")

func (b *bench) start(t *tracer) (*proc, error) {
	dir, err := os.MkdirTemp("", "tcpscope-overhead-")
	if err != nil {
		return nil, fmt.Errorf("making a directory for the tracer's files: %w", err)
	}
	p := &proc{dir: dir, exited: make(chan struct{})}
	if t.export != "" {
		p.export = filepath.Join(dir, "x"+t.export)
	}
	args := t.args(b, p.export, filepath.Join(dir, "ready"))
	p.cmd = exec.Command(t.bin, args...)
	if t.inNS {
		self, err := os.Executable()
		if err != nil {
			p.cleanup()
			return nil, fmt.Errorf("finding this program: %w", err)
		}
		nsPath := fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), b.ns.Fd())
		p.cmd = exec.Command(self, append([]string{"exec-in-ns", nsPath, t.bin}, args...)...)
	}
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p.cmd.Stderr = &p.stderr
	if err := p.setStdout(t); err != nil {
		p.cleanup()
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		p.cleanup()
		return nil, fmt.Errorf("starting %s: %w", t.bin, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// setStdout keeps the lines of a tool whose lines are its report, and
// discards the rest (tcpscope's summary, or its line per event with
// --events): rendering them is part of the cost, reading them is not.
func (p *proc) setStdout(t *tracer) error {
	if !t.lines {
		return nil // exec's default: /dev/null
	}
	p.stdout = filepath.Join(p.dir, "stdout")
	f, err := os.Create(p.stdout)
	if err != nil {
		return fmt.Errorf("creating the tracer's stdout file: %w", err)
	}
	p.cmd.Stdout = f // the child keeps its own descriptor
	return nil
}

// waitReady polls until the tracer sees every new connection. There is no
// event to wait on for a foreign process, hence the polling.
func (p *proc) waitReady(ctx context.Context, t *tracer) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case <-p.exited:
			return fmt.Errorf("%s %w: %v: %s", t.label, errRefused, p.waitErr, firstLine(p.stderr.String()))
		case <-ctx.Done():
			return ctx.Err()
		case <-timeout:
			return fmt.Errorf("waiting for %s to be ready: timed out; stderr: %s", t.label, p.stderr.String())
		case <-tick.C:
			if p.isReady(t) {
				return nil
			}
		}
	}
}

func (p *proc) isReady(t *tracer) bool {
	switch t.ready {
	case readyFile:
		st, err := os.Stat(filepath.Join(p.dir, "ready"))
		return err == nil && st.Size() > 0
	case readyStderr:
		return strings.Contains(p.stderr.String(), t.readyLine)
	default:
		ids, err := progIDs(p.cmd.Process.Pid)
		return err == nil && len(ids) > 0 && waitingInPoll(p.cmd.Process.Pid)
	}
}

// stop interrupts the tracer's process group, as Ctrl-C would, and waits
// for it to finish writing; one that hangs is killed.
func (p *proc) stop() error {
	if err := syscall.Kill(-p.cmd.Process.Pid, syscall.SIGINT); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("interrupting tracer: %w", err)
	}
	select {
	case <-p.exited:
	case <-time.After(2 * time.Minute):
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
		return fmt.Errorf("stopping tracer: killed after 2 minutes; stderr: %s", p.stderr.String())
	}
	if p.waitErr != nil {
		return fmt.Errorf("tracer failed: %w; stderr: %s", p.waitErr, p.stderr.String())
	}
	return nil
}

// kill ends a tracer that is not measured (not ready, or interrupted).
func (p *proc) kill() {
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.exited
}

// cpu is the CPU time of the exited tracer and the children it waited for.
func (p *proc) cpu() time.Duration {
	if ru, ok := p.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return 0
}

func (p *proc) cleanup() {
	if p.cmd != nil {
		if f, ok := p.cmd.Stdout.(*os.File); ok {
			f.Close()
		}
	}
	if err := os.RemoveAll(p.dir); err != nil {
		fmt.Fprintln(os.Stderr, "overhead: removing tracer files:", err)
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

// lockedBuffer collects a child's stderr, written by exec's copying
// goroutine and read while the child runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
