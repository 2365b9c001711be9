package main

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/tcpscope/tcpscope/output"
	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/nettest"
	"golang.org/x/sys/unix"
)

// programIDs lists the BPF programs a process holds, from its fdinfo.
func programIDs(t *testing.T, pid int) []ebpf.ProgramID {
	t.Helper()
	var ids []ebpf.ProgramID
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fdinfo", pid))
	for _, fd := range fds {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, fd.Name()))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "prog_id:"); ok {
				if id, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && !slices.Contains(ids, ebpf.ProgramID(id)) {
					ids = append(ids, ebpf.ProgramID(id))
				}
			}
		}
	}
	return ids
}

// waitGone waits (bounded) until none of the programs exists any more: the
// kernel frees a program once its last link and descriptor are closed.
func waitGone(t *testing.T, ids []ebpf.ProgramID) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var left []ebpf.ProgramID
		for _, id := range ids {
			if p, err := ebpf.NewProgramFromID(id); err == nil {
				p.Close()
				left = append(left, id)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("programs %v still loaded after tcpscope exited", left)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestEveryExitWritesAValidExport: SIGINT, SIGTERM (both forms) and SIGHUP
// leave a complete export and exit status 0; SIGKILL leaves a JSONL whose every line parses. In every
// case no program of tcpscope stays in the kernel.
func TestEveryExitWritesAValidExport(t *testing.T) {
	for _, tc := range []struct {
		sig  syscall.Signal
		name string
	}{{syscall.SIGINT, "run.jsonl"}, {syscall.SIGTERM, "run.json"}, {syscall.SIGTERM, "run.jsonl"}, {syscall.SIGHUP, "run.jsonl"}, {syscall.SIGKILL, "run.jsonl"}} {
		t.Run(tc.sig.String()+"/"+tc.name, func(t *testing.T) {
			t.Parallel()
			ns := nettest.New(t)
			r := startRecord(t, ns, tc.name)
			ids := programIDs(t, r.cmd.Process.Pid)
			if len(ids) == 0 {
				t.Fatalf("tcpscope holds no BPF program")
			}
			addr, _ := startServer(t, ns, "tcp4", "127.0.0.1:0", "client-closes", 3)
			dialClose(t, ns, addr, 3)
			if strings.HasSuffix(tc.name, ".jsonl") {
				r.waitConnections(t, 6, 15*time.Second)
			}
			r.cmd.Process.Signal(tc.sig)
			exitErr := <-r.done
			r.done <- nil
			waitGone(t, ids)
			rec, err := output.ReadExport(r.path)
			if err != nil {
				t.Fatalf("export after %s: %v", tc.sig, err)
			}
			if tc.sig == syscall.SIGKILL {
				if len(rec.Connections) != 6 || rec.TornLine != 0 {
					t.Errorf("%d connections survived SIGKILL, want the 6 written; torn line %d, want none", len(rec.Connections), rec.TornLine)
				}
				return
			}
			if exitErr != nil {
				t.Errorf("tcpscope record after %s: %v, want exit status 0\n%s", tc.sig, exitErr, r.stderr.String())
			}
			if err := output.ValidateExport(r.path); err != nil || rec.Summary == nil || len(rec.Connections) != 6 {
				t.Errorf("export after %s: %v, summary %v, %d connections", tc.sig, err, rec.Summary != nil, len(rec.Connections))
			}
		})
	}
}

// TestDurationEndWritesAValidExport: --duration ends the recording by itself.
func TestDurationEndWritesAValidExport(t *testing.T) {
	t.Parallel()
	ns := nettest.New(t)
	path := filepath.Join(t.TempDir(), "run.json")
	var stderr strings.Builder
	cmd := exec.Command(binary, "record", "--netns", fmt.Sprint(ns.Inode), "--duration", "1s", "-o", path)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("record --duration 1s: %v\n%s", err, stderr.String())
	}
	if err := output.ValidateExport(path); err != nil {
		t.Fatal(err)
	}
	if rec, err := output.ReadExport(path); err != nil || rec.Summary == nil {
		t.Errorf("export: %v", err)
	}
}

// TestLossesAreCountedAndFlagged: a one-page ring buffer and a burst of
// connections lose events; the export says how many, and connections open
// while it happened are flagged incomplete.
func TestLossesAreCountedAndFlagged(t *testing.T) {
	t.Parallel()
	ns := nettest.New(t)
	r := startRecord(t, ns, "run.jsonl", "--ring-buffer-size", strconv.Itoa(os.Getpagesize()))
	ln := listenNS(t, ns, "tcp4", "127.0.0.1:0")
	go acceptClose(ln)
	to := netipAddrPort(t, ln.Addr().String())
	// Many connections held open at once, then closed: a burst of events
	// far larger than one page, while connections are open.
	var fds []int
	ns.Do(func() error {
		for i := 0; i < 300; i++ {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			if err := unix.Connect(fd, &unix.SockaddrInet4{Port: int(to.Port()), Addr: to.Addr().As4()}); err != nil {
				unix.Close(fd)
				return err
			}
			fds = append(fds, fd)
		}
		return nil
	})
	for _, fd := range fds {
		unix.Close(fd)
	}
	rec := r.stop(t)
	if rec.Summary.LostEvents == 0 {
		t.Fatalf("no events lost with a %d-byte ring buffer", os.Getpagesize())
	}
	incomplete := 0
	for _, c := range rec.Connections {
		if c.Flags.Has(tracer.FlagIncomplete) {
			incomplete++
		}
	}
	if incomplete == 0 {
		t.Errorf("%d events lost, no connection flagged incomplete", rec.Summary.LostEvents)
	}
	if !strings.Contains(r.stderr.String(), "events were lost") {
		t.Errorf("no loss warning on stderr: %s", r.stderr.String())
	}
}

// TestReportRejectsBadFiles: the CLI names the file and line, exit 2.
func TestReportRejectsBadFiles(t *testing.T) {
	dir := t.TempDir()
	meta := `{"type":"meta","format_version":1,"tcpscope":"x","kernel":"y","start":"2026-11-21T12:00:00Z"}`
	for name, content := range map[string]string{
		"empty.jsonl":     "",
		"garbage.jsonl":   "hello\n",
		"torn-line.jsonl": meta + "\n{\"type\":\"connection\",\"id\":1\n{\"type\":\"summary\"}\n",
		"future.jsonl":    strings.Replace(meta, `"format_version":1`, `"format_version":7`, 1) + "\n",
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), 0o600)
		var stderr strings.Builder
		cmd := exec.Command(binary, "report", p)
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(stderr.String(), p) {
			t.Errorf("report %s: %v, stderr %q; want exit 2 naming the file", name, err, stderr.String())
		}
	}
}

func TestMissingNamespaceIsUsageError(t *testing.T) {
	nettest.RequirePrivileges(t)
	var stderr strings.Builder
	cmd := exec.Command(binary, "record", "--netns", "4294967295", "--duration", "1s")
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(stderr.String(), "--netns 4294967295") {
		t.Errorf("record --netns missing: %v, %q", err, stderr.String())
	}
}

func netipAddrPort(t *testing.T, s string) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

// TestRecordSurvivesTerminalHangup: closing the terminal tcpscope runs in
// (the kernel's hangup sends SIGHUP to the session leader) ends the
// recording with a whole export, though nothing can be printed any more.
func TestRecordSurvivesTerminalHangup(t *testing.T) {
	ns := nettest.New(t)
	master, slave := openPTY(t)
	path := filepath.Join(t.TempDir(), "run.jsonl")
	ready := filepath.Join(t.TempDir(), "ready")
	cmd := exec.Command(binary, "record", "--netns", fmt.Sprint(ns.Inode), "--duration", "60s", "-o", path, "--ready-file", ready)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	slave.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var screen lockedBuffer
	go io.Copy(&screen, master)
	waitReady(t, ready, cmd.Process.Pid, done, &screen)
	master.Close()
	select {
	case err := <-done:
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			t.Fatalf("tcpscope record killed by the hangup: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("tcpscope record did not stop when its terminal was closed")
	}
	if err := output.ValidateExport(path); err != nil {
		t.Fatalf("export after the hangup: %v", err)
	}
	if rec, err := output.ReadExport(path); err != nil || rec.Summary == nil {
		t.Errorf("export after the hangup has no summary: %v", err)
	}
}
