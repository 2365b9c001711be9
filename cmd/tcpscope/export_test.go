package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/output"
	"github.com/tcpscope/tcpscope/tracer/netns"
	"github.com/tcpscope/tcpscope/tracer/nettest"
)

// recordOnce runs `tcpscope record` on ns with -o path for a short
// --duration and returns its exit status and stderr. env is added to the
// environment.
func recordOnce(t *testing.T, ns *netns.NS, path string, env ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, binary, "record", "-o", path, "--netns", fmt.Sprint(ns.Inode), "--duration", "2s")
	cmd.Stderr = &stderr
	cmd.Env = append(os.Environ(), env...)
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("tcpscope record -o %s did not end: %s", path, stderr.String())
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), stderr.String()
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, stderr.String()
}

// wantRefused checks a refusal: exit status 2 and one line on stderr
// containing want, printed before anything was traced.
func wantRefused(t *testing.T, what string, code int, stderr, want string) {
	t.Helper()
	if code != 2 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, want) || strings.Contains(stderr, "tracing (") {
		t.Errorf("%s: exit status %d, stderr %q; want status 2 and one line containing %q, nothing traced", what, code, stderr, want)
	}
}

// TestOutputLinkIsNotFollowed: a symbolic link at the -o path (for
// instance planted in a shared directory) is refused, and the file it
// points to keeps its content and mode.
func TestOutputLinkIsNotFollowed(t *testing.T) {
	ns := nettest.New(t)
	for _, name := range []string{"link.jsonl", "link.json", "link.jsonl.zst"} {
		dir := t.TempDir()
		victim := filepath.Join(dir, "victim.txt")
		if err := os.WriteFile(victim, []byte("precious\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		link := filepath.Join(dir, name)
		if err := os.Symlink(victim, link); err != nil {
			t.Fatal(err)
		}
		code, stderr := recordOnce(t, ns, link)
		wantRefused(t, name, code, stderr, "output "+link+" is a symbolic link")
		st, _ := os.Stat(victim)
		if data, _ := os.ReadFile(victim); string(data) != "precious\n" || st.Mode().Perm() != 0o644 {
			t.Errorf("%s: the link's target now holds %d bytes, mode %v", name, len(data), st.Mode().Perm())
		}
	}
}

// TestOutputUnwritableIsRefusedFirst: an existing output that cannot be
// written (immutable) is bad input found before anything is loaded, not
// an error after tracing (.jsonl) or at the final rename (.json).
func TestOutputUnwritableIsRefusedFirst(t *testing.T) {
	ns := nettest.New(t)
	dir := t.TempDir()
	for _, name := range []string{"run.jsonl", "run.json"} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte("old\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("chattr", "+i", path).CombinedOutput(); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("chattr +i under %s: %v %s", dir, err, out)
			}
			t.Skipf("the filesystem under %s has no immutable files: %v %s", dir, err, out)
		}
		t.Cleanup(func() { exec.Command("chattr", "-i", path).Run() })
		code, stderr := recordOnce(t, ns, path)
		wantRefused(t, name, code, stderr, "opening output "+path+": operation not permitted")
	}
}

// TestOutputIsLockedWhileRecording: a second recorder given the same -o
// is refused with the first one's PID, and the first one's export stays
// whole.
func TestOutputIsLockedWhileRecording(t *testing.T) {
	ns := nettest.New(t)
	for _, name := range []string{"run.jsonl", "run.json", "run.jsonl.zst"} {
		r := startRecord(t, ns, name)
		code, stderr := recordOnce(t, ns, r.path)
		wantRefused(t, name+" recorded twice", code, stderr,
			fmt.Sprintf("output %s is locked by another tcpscope (pid %d)", r.path, r.cmd.Process.Pid))

		var ln net.Listener
		if err := ns.Do(func() (err error) { ln, err = net.Listen("tcp4", "127.0.0.1:0"); return }); err != nil {
			t.Fatal(err)
		}
		go func() {
			if c, err := ln.Accept(); err == nil {
				c.Close()
			}
		}()
		dialClose(t, ns, ln.Addr().String(), 1)
		ln.Close()
		if name != "run.json" {
			r.waitConnections(t, 2, 20*time.Second)
		}
		rec := r.stop(t) // validated against the schema
		if len(rec.Connections) < 2 {
			t.Errorf("%s: %d connections in the first recorder's export, want both ends", name, len(rec.Connections))
		}
	}
}

// TestOutputGoesToTheSudoUser: run through sudo (SUDO_UID/SUDO_GID), the
// export belongs to that user, still 0600, and that user can report it.
func TestOutputGoesToTheSudoUser(t *testing.T) {
	ns := nettest.New(t)
	dir := t.TempDir()
	// nobody must reach the files: t.TempDir's directories are 0700.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"run.jsonl", "run.json", "run.jsonl.zst"} {
		path := filepath.Join(dir, name)
		if code, stderr := recordOnce(t, ns, path, "SUDO_UID=65534", "SUDO_GID=65534"); code != 0 {
			t.Fatalf("%s: exit status %d: %s", name, code, stderr)
		}
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		sys := st.Sys().(*syscall.Stat_t)
		if sys.Uid != 65534 || sys.Gid != 65534 || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: owner %d:%d mode %v, want 65534:65534 0600", name, sys.Uid, sys.Gid, st.Mode().Perm())
		}
		var stderr bytes.Buffer
		report := exec.Command(binary, "report", path)
		report.Stderr = &stderr
		report.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		if err := report.Run(); err != nil {
			t.Errorf("tcpscope report %s as the sudo user: %v: %s", name, err, stderr.String())
		}
	}
}

// TestJSONTemporaryAfterKill: SIGKILL leaves no run.json, only the hidden
// temporary; the next recording to the same path takes it over and leaves
// nothing else behind.
func TestJSONTemporaryAfterKill(t *testing.T) {
	ns := nettest.New(t)
	r := startRecord(t, ns, "run.json")
	r.cmd.Process.Kill()
	err := <-r.done
	r.done <- err
	dir := filepath.Dir(r.path)
	temps, _ := filepath.Glob(filepath.Join(dir, ".run.json.tmp*"))
	if _, err := os.Stat(r.path); err == nil || len(temps) != 1 {
		t.Fatalf("after SIGKILL: run.json stat %v, temporaries %v; want no run.json and one temporary", err, temps)
	}
	if code, stderr := recordOnce(t, ns, r.path); code != 0 {
		t.Fatalf("recording after the kill: exit status %d: %s", code, stderr)
	}
	if err := output.ValidateExport(r.path); err != nil {
		t.Error(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("left in the directory: %v, want only run.json", entries)
	}
}

// TestReaderGoneKeepsExport: `record --events -o run.json | head` — the
// reader of standard output goes away while tracing; the next write fails
// (EPIPE, not a fatal SIGPIPE), the recording ends and the export is whole.
func TestReaderGoneKeepsExport(t *testing.T) {
	ns := nettest.New(t)
	ln := listenNS(t, ns, "tcp4", "127.0.0.1:0")
	go acceptClose(ln)
	for _, name := range []string{"run.json", "run.jsonl"} {
		path := filepath.Join(t.TempDir(), name)
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr lockedBuffer
		ready := filepath.Join(t.TempDir(), "ready")
		cmd := exec.Command(binary, "record", "--events", "--netns", fmt.Sprint(ns.Inode), "-o", path, "--ready-file", ready)
		done := startPiped(t, cmd, pw, &stderr, ready)
		pr.Close() // the reader goes away
		var werr error
		for i := 0; ; i++ {
			dialClose(t, ns, ln.Addr().String(), 1) // events to write
			select {
			case werr = <-done:
			case <-time.After(100 * time.Millisecond):
				if i < 300 {
					continue
				}
				t.Fatalf("%s: tcpscope still running 30s after its reader went away: %s", name, stderr.String())
			}
			break
		}
		if ee, ok := werr.(*exec.ExitError); ok {
			if ws := ee.Sys().(syscall.WaitStatus); ws.Signaled() {
				t.Errorf("%s: tcpscope killed by %v when its reader went away; stderr:\n%s", name, ws.Signal(), stderr.String())
			}
		}
		if err := output.ValidateExport(path); err != nil {
			t.Errorf("%s after the reader went away: %v", name, err)
		} else if rec, err := output.ReadExport(path); err != nil || rec.Summary == nil {
			t.Errorf("%s after the reader went away: %v, no summary", name, err)
		}
	}
}
