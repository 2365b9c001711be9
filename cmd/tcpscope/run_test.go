package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/output"
	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/nettest"
)

// runTcpscope runs `tcpscope run` and returns its exit code and stdout.
func runTcpscope(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr lockedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, stdout.String(), stderr.String()
}

func TestRunExitStatus(t *testing.T) {
	nettest.RequirePrivileges(t)
	for _, c := range []struct {
		args []string
		want int
	}{
		{[]string{"sh", "-c", "exit 0"}, 0},
		{[]string{"sh", "-c", "exit 3"}, 3},
		{[]string{"no-such-command-tcpscope"}, 127},
		{[]string{notExecutable(t)}, 126},
	} {
		code, _, stderr := runTcpscope(t, nil, append([]string{"run", "--linger", "0s", "--"}, c.args...)...)
		if code != c.want {
			t.Errorf("run -- %v: exit %d, want %d\n%s", c.args, code, c.want, stderr)
		}
	}
}

// TestRunForwardsSIGINT: the first Ctrl-C goes to CMD, whose exit ends the
// run; the export is complete.
func TestRunForwardsSIGINT(t *testing.T) {
	ns := nettest.New(t)
	path := filepath.Join(t.TempDir(), "run.json")
	// CMD says when its trap is set, then waits for SIGINT and exits 42.
	cmd := exec.Command(binary, "run", "--netns", fmt.Sprint(ns.Inode), "--linger", "0s", "-o", path, "--",
		"sh", "-c", `trap 'echo got-sigint; exit 42' INT; echo ready; while :; do sleep 0.05; done`)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() && sc.Text() != "ready" {
	}
	cmd.Process.Signal(os.Interrupt)
	var rest strings.Builder
	for sc.Scan() {
		rest.WriteString(sc.Text() + "\n")
	}
	err = cmd.Wait()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 42 || !strings.Contains(rest.String(), "got-sigint") {
		t.Errorf("tcpscope run: %v, output %q; want CMD's SIGINT trap to run and exit 42", err, rest.String())
	}
	if err := output.ValidateExport(path); err != nil {
		t.Errorf("export after SIGINT: %v", err)
	}
}

// TestRunAb: ab against a server in a private namespace. Every request ab
// completes is one traced connection, and none is left open.
func TestRunAb(t *testing.T) {
	ab, err := exec.LookPath("ab")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("ab is not installed (apt-get install apache2-utils)")
		}
		t.Skip("ab is not installed (apt-get install apache2-utils)")
	}
	ns := nettest.New(t)
	var ln net.Listener
	if err := ns.Do(func() (err error) { ln, err = net.Listen("tcp4", "127.0.0.1:0"); return }); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("hello\n")) })}
	go srv.Serve(ln)
	defer srv.Shutdown(context.Background())
	path := filepath.Join(t.TempDir(), "ab.jsonl")
	args, env := inNS(t, ns, ab, "-n", "2000", "-c", "50", "http://"+ln.Addr().String()+"/")
	code, stdout, stderr := runTcpscope(t, env, append([]string{"run", "--netns", fmt.Sprint(ns.Inode), "-o", path, "--"}, args...)...)
	if code != 0 {
		t.Fatalf("tcpscope run -- ab: exit %d\n%s\n%s", code, stdout, stderr)
	}
	m := regexp.MustCompile(`Complete requests:\s+(\d+)`).FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("no ab report in:\n%s", stdout)
	}
	complete, _ := strconv.Atoi(m[1])
	rec, err := output.ReadExport(path)
	if err != nil {
		t.Fatal(err)
	}
	// HTTP/1.0 without keep-alive: the server closes after each response,
	// so each request ab completed is a client connection the server closed
	// first (outcome closed). When ab reaches -n it closes its in-flight
	// connections itself (client first: time_wait), at most -c of them.
	var completed, aborted, servers, open int
	for _, c := range rec.Connections {
		switch {
		case c.Outcome == tracer.OutcomeOpen:
			open++
		case c.Role == tracer.RoleServer:
			servers++
		case c.Outcome == tracer.OutcomeClosed && c.ClosedBy == "remote" && c.BytesReceived > 0:
			completed++
		case c.Outcome == tracer.OutcomeTimeWait:
			aborted++
		}
	}
	if complete != 2000 || completed != complete || aborted > 50 || servers != completed+aborted || open != 0 {
		t.Errorf("ab completed %d requests; tcpscope: %d client connections closed by the server after a response, %d closed by ab, %d server connections, %d left open",
			complete, completed, aborted, servers, open)
	}
	if !strings.Contains(stdout, "connections from") {
		t.Errorf("no summary after ab:\n%s", stdout)
	}
}

func notExecutable(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "data.txt")
	if err := os.WriteFile(p, []byte("not a program\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRunSecondInterruptStopsTracing: CMD ignores Ctrl-C; a second one
// stops tcpscope, which still writes a complete export.
func TestRunSecondInterruptStopsTracing(t *testing.T) {
	ns := nettest.New(t)
	path := filepath.Join(t.TempDir(), "run.jsonl")
	cmd := exec.Command(binary, "run", "--netns", fmt.Sprint(ns.Inode), "-o", path, "--",
		"sh", "-c", `trap 'echo ignored' INT; echo ready; i=0; while [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done`)
	// CMD outlives tcpscope here (it ignores both interrupts) and holds the
	// pipe: stop waiting for its output once tcpscope has exited.
	cmd.WaitDelay = time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(out)
	for sc.Scan() && sc.Text() != "ready" {
	}
	cmd.Process.Signal(os.Interrupt)
	for sc.Scan() && sc.Text() != "ignored" {
	}
	cmd.Process.Signal(os.Interrupt)
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
		t.Errorf("tcpscope after two interrupts: %v, want exit status 130", err)
	}
	if err := output.ValidateExport(path); err != nil {
		t.Fatalf("export: %v", err)
	}
	if rec, err := output.ReadExport(path); err != nil || rec.Summary == nil {
		t.Errorf("export incomplete: %v", err)
	}
}
