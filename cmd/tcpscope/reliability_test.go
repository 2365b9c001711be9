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
	"github.com/tcpscope/tcpscope/tracer/netns"
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

// TestLossesAreCountedAndFlagged: a one-page ring buffer whose reader is
// stopped (SIGSTOP) while a burst of connections opens loses what does not
// fit; the export says how many (events in the per-event mode, connection
// records in the aggregated one), and the connections open while it
// happened are flagged incomplete.
func TestLossesAreCountedAndFlagged(t *testing.T) {
	for _, mode := range []string{"aggregated", "events"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			args := []string{"--ring-buffer-size", strconv.Itoa(os.Getpagesize())}
			if mode == "events" {
				args = append(args, "--events", "--format", "json")
			}
			lostBurst(t, args, mode == "events")
		})
	}
}

func lostBurst(t *testing.T, args []string, events bool) {
	ns := nettest.New(t)
	r := startRecord(t, ns, "run.jsonl", args...)
	ln := listenNS(t, ns, "tcp4", "127.0.0.1:0")
	go acceptClose(ln)
	to := netipAddrPort(t, ln.Addr().String())
	// 300 connections opened while the reader is stopped: their early
	// records (or events) overflow the one page; closed once it runs again.
	if err := r.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	fds, err := openConnections(ns, to, 300)
	r.cmd.Process.Signal(syscall.SIGCONT)
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		unix.Close(fd)
	}
	rec := r.stop(t)
	lost, what := rec.Summary.LostRecords, "connection records"
	if events {
		lost, what = rec.Summary.LostEvents, "events"
	}
	if lost == 0 {
		t.Fatalf("no %s lost with a %d-byte ring buffer and a stopped reader (summary: lost_events %d, lost_records %d)",
			what, os.Getpagesize(), rec.Summary.LostEvents, rec.Summary.LostRecords)
	}
	incomplete := 0
	for _, c := range rec.Connections {
		if c.Flags.Has(tracer.FlagIncomplete) {
			incomplete++
		}
	}
	if incomplete == 0 {
		t.Errorf("%d %s lost, no connection flagged incomplete", lost, what)
	}
	if !strings.Contains(r.stderr.String(), "connection records were lost") {
		t.Errorf("no loss warning on stderr: %s", r.stderr.String())
	}
}

// openConnections connects n sockets to to from inside ns.
func openConnections(ns *netns.NS, to netip.AddrPort, n int) ([]int, error) {
	var fds []int
	err := ns.Do(func() error {
		for i := 0; i < n; i++ {
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
	return fds, err
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
