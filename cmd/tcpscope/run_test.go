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
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/output"
	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/netns"
	"github.com/tcpscope/tcpscope/tracer/nettest"
	"golang.org/x/sys/unix"
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
		{[]string{t.TempDir()}, 126},
		{[]string{executable(t, "garbage", "\x00\x01\x02garbage\xff")}, 126},
		{[]string{executable(t, "script", "#!/nonexistent/interpreter\n")}, 126},
	} {
		dir := t.TempDir()
		path := filepath.Join(dir, "run.jsonl")
		code, _, stderr := runTcpscope(t, nil, append([]string{"run", "--linger", "0s", "-o", path, "--"}, c.args...)...)
		if code != c.want {
			t.Errorf("run -- %v: exit %d, want %d\n%s", c.args, code, c.want, stderr)
		}
		// A command that ran leaves a whole export; one that could not
		// start, none (not a file holding only its header).
		if c.want < 126 {
			if err := output.ValidateExport(path); err != nil {
				t.Errorf("run -- %v: %v", c.args, err)
			}
		} else if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("run -- %v (exit %d) left %v", c.args, code, entries)
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
	// No controlling terminal (even when the tests run in one): a SIGINT
	// from kill is then passed on.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
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
	ab := requireTool(t, "ab", "apache2-utils")
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
		case c.Outcome == tracer.OutcomeClosed && c.ClosedBy == tracer.ClosedByRemote && c.BytesReceived > 0:
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

// executable writes content to a file with the execute bit set.
func executable(t *testing.T, name, content string) string {
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func notExecutable(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "data.txt")
	if err := os.WriteFile(p, []byte("not a program\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// runningRun is `tcpscope run -- <signals helper>` (see helperSignals)
// with its stdout readable line by line.
type runningRun struct {
	cmd    *exec.Cmd
	path   string
	lines  chan string
	stderr *lockedBuffer
	pid    int // the helper's
}

// startRunSignals starts tcpscope run with the signals helper as CMD, in
// mode (see helperSignals), and returns once the helper is ready. setup
// may set the process attributes; by default tcpscope runs in a new session
// without a controlling terminal, so that a terminal the tests may run in
// plays no part.
func startRunSignals(t *testing.T, ns *netns.NS, mode string, setup func(*exec.Cmd), args ...string) *runningRun {
	t.Helper()
	r := &runningRun{path: filepath.Join(t.TempDir(), "run.jsonl"), lines: make(chan string, 100), stderr: &lockedBuffer{}}
	args = append(append([]string{"run", "--netns", fmt.Sprint(ns.Inode), "--linger", "0s", "-o", r.path}, args...), "--", os.Args[0])
	r.cmd = exec.Command(binary, args...)
	r.cmd.Env = append(os.Environ(), "TCPSCOPE_TEST_HELPER=signals", "TCPSCOPE_SIGNALS="+mode)
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if setup != nil {
		setup(r.cmd)
	}
	// A pipe of our own: Wait returns when tcpscope exits even if CMD
	// outlives it and holds the write end.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.cmd.Stdout, r.cmd.Stderr = pw, r.stderr
	// CMD inherits tcpscope's stderr: should it outlive tcpscope, Wait
	// still returns.
	r.cmd.WaitDelay = time.Second
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	t.Cleanup(func() {
		r.cmd.Process.Kill()
		if r.pid > 0 {
			unix.Kill(r.pid, unix.SIGKILL)
		}
		pr.Close()
	})
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			r.lines <- sc.Text()
		}
		close(r.lines)
	}()
	line := r.expect(t, "pid ")
	r.pid, _ = strconv.Atoi(strings.TrimPrefix(line, "pid "))
	r.expect(t, "ready")
	return r
}

// expect reads CMD's lines until one starts with prefix.
func (r *runningRun) expect(t *testing.T, prefix string) string {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case line, ok := <-r.lines:
			if !ok {
				t.Fatalf("no line %q before the end of the output; stderr:\n%s", prefix, r.stderr.String())
			}
			if strings.HasPrefix(line, prefix) {
				return line
			}
		case <-timeout:
			t.Fatalf("no line %q after 30s; stderr:\n%s", prefix, r.stderr.String())
		}
	}
}

// waitStderr waits until tcpscope has said what on stderr: it has then
// handled the signals sent so far (a second signal of the same kind sent
// before that could merge with the first one, still pending).
func (r *runningRun) waitStderr(t *testing.T, what string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(r.stderr.String(), what) {
		if time.Now().After(deadline) {
			t.Fatalf("tcpscope did not say %q in 30s; stderr:\n%s", what, r.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// finish waits for tcpscope, checks that CMD did not outlive it and that
// the export is whole, and returns tcpscope's exit status and the lines
// printed after those already read.
func (r *runningRun) finish(t *testing.T) (int, []string) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- r.cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("tcpscope run did not exit; stderr:\n%s", r.stderr.String())
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if err := unix.Kill(r.pid, 0); err != unix.ESRCH {
		t.Errorf("CMD (pid %d) outlived tcpscope run (kill(pid, 0): %v)", r.pid, err)
	}
	var rest []string
	timeout := time.After(10 * time.Second)
	for collecting := true; collecting; {
		select {
		case line, ok := <-r.lines:
			if !ok {
				collecting = false
				break
			}
			rest = append(rest, line)
		case <-timeout:
			t.Errorf("CMD's output still open 10s after tcpscope exited")
			collecting = false
		}
	}
	if err := output.ValidateExport(r.path); err != nil {
		t.Errorf("export: %v", err)
	} else if rec, err := output.ReadExport(r.path); err != nil || rec.Summary == nil {
		t.Errorf("export incomplete: %v", err)
	}
	return code, rest
}

// interrupts counts CMD's "interrupt N" lines.
func interrupts(lines []string) int {
	n := 0
	for _, l := range lines {
		if strings.HasPrefix(l, "interrupt ") {
			n++
		}
	}
	return n
}

// openPTY opens a pseudo-terminal and returns its master and slave ends.
func openPTY(t *testing.T) (*os.File, *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { master.Close() })
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlocking the pty: %v", err)
	}
	n, err := unix.IoctlGetUint32(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("naming the pty: %v", err)
	}
	slave, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { slave.Close() })
	return master, slave
}

// onTerminal makes tcpscope a session leader whose controlling terminal is
// the pty's slave (its stdin, which CMD shares): tcpscope and CMD are then
// the terminal's foreground process group, as when typed at a shell.
func onTerminal(slave *os.File) func(*exec.Cmd) {
	return func(c *exec.Cmd) {
		c.Stdin = slave
		c.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	}
}

// ctrlC types Ctrl-C on the pty: its line discipline sends SIGINT to the
// terminal's foreground process group.
func ctrlC(t *testing.T, master *os.File) {
	t.Helper()
	if _, err := master.Write([]byte{0x03}); err != nil {
		t.Fatal(err)
	}
}

// TestRunCtrlCReachesCommandOnce: at a terminal, one Ctrl-C is one SIGINT
// for CMD (the terminal sends it to CMD; tcpscope does not pass it on
// again), while a SIGTERM sent to tcpscope with kill is passed on.
func TestRunCtrlCReachesCommandOnce(t *testing.T) {
	ns := nettest.New(t)
	master, slave := openPTY(t)
	r := startRunSignals(t, ns, "count", onTerminal(slave))
	ctrlC(t, master)
	r.expect(t, "interrupt 1")
	r.waitStderr(t, "another one stops")
	// Signals reach CMD in order: anything tcpscope passes on for the
	// Ctrl-C reaches CMD before this SIGTERM does.
	r.cmd.Process.Signal(syscall.SIGTERM)
	code, rest := r.finish(t)
	// The helper exits on SIGTERM with the number of SIGINTs it got.
	if code != 1 || interrupts(rest) != 0 || !slices.Contains(rest, "terminate") {
		t.Errorf("one Ctrl-C then kill -TERM: exit %d, CMD then printed %q; want exit 1 after exactly one SIGINT and the SIGTERM\n%s", code, rest, r.stderr.String())
	}
}

// TestRunSecondCtrlCStopsCommand: a second Ctrl-C at a terminal stops CMD
// too, even one that ignores it: SIGKILL after the grace period; tcpscope
// waits for it and exits with its status.
func TestRunSecondCtrlCStopsCommand(t *testing.T) {
	ns := nettest.New(t)
	master, slave := openPTY(t)
	r := startRunSignals(t, ns, "count", onTerminal(slave))
	ctrlC(t, master)
	r.expect(t, "interrupt 1")
	r.waitStderr(t, "another one stops")
	ctrlC(t, master)
	r.expect(t, "interrupt 2")
	code, rest := r.finish(t)
	if code != 128+int(syscall.SIGKILL) || interrupts(rest) != 0 {
		t.Errorf("two Ctrl-C: exit %d, CMD then printed %q; want 137 (CMD killed) after exactly two SIGINTs\n%s", code, rest, r.stderr.String())
	}
}

// TestRunSecondInterruptStopsTracing: without a terminal both interrupts
// are passed on; CMD ignores them, so tcpscope kills it after the grace
// period, waits for it and exits with its status; the export is complete.
func TestRunSecondInterruptStopsTracing(t *testing.T) {
	ns := nettest.New(t)
	r := startRunSignals(t, ns, "count", nil)
	r.cmd.Process.Signal(os.Interrupt)
	r.expect(t, "interrupt 1")
	r.waitStderr(t, "another one stops")
	// Timed from before the second interrupt is sent: the grace period
	// starts after it arrives, so however loaded the machine, CMD cannot
	// be killed sooner than stopGrace after this.
	start := time.Now()
	r.cmd.Process.Signal(os.Interrupt)
	r.expect(t, "interrupt 2")
	code, rest := r.finish(t)
	if code != 128+int(syscall.SIGKILL) || interrupts(rest) != 0 {
		t.Errorf("two interrupts: exit %d, CMD then printed %q; want 137 (CMD killed)\n%s", code, rest, r.stderr.String())
	}
	if d := time.Since(start); d < stopGrace {
		t.Errorf("CMD killed %v after the second interrupt, want a grace period of %v", d, stopGrace)
	}
}

// TestRunPassesHangup: SIGHUP (a closed terminal, a dropped ssh session)
// is passed to CMD and does not kill tcpscope: CMD's exit ends the run with
// a whole export.
func TestRunPassesHangup(t *testing.T) {
	ns := nettest.New(t)
	r := startRunSignals(t, ns, "count", nil)
	r.cmd.Process.Signal(syscall.SIGHUP)
	r.expect(t, "hangup")
	r.waitStderr(t, "another one stops")
	r.cmd.Process.Signal(syscall.SIGTERM)
	code, rest := r.finish(t)
	if code != 0 || !slices.Contains(rest, "terminate") {
		t.Errorf("kill -HUP then -TERM: exit %d, CMD then printed %q; want CMD to get both and exit 0\n%s", code, rest, r.stderr.String())
	}
}

// TestRunDurationStopsCommand: --duration interrupts CMD; one that exits on
// SIGINT sets the status, one that ignores it is killed after the grace
// period. tcpscope never exits before its command.
func TestRunDurationStopsCommand(t *testing.T) {
	for _, c := range []struct {
		mode string
		want int
	}{{"int-exits", 3}, {"ignore", 128 + int(syscall.SIGKILL)}} {
		t.Run(c.mode, func(t *testing.T) {
			ns := nettest.New(t)
			r := startRunSignals(t, ns, c.mode, nil, "--duration", "2s")
			code, _ := r.finish(t)
			if code != c.want {
				t.Errorf("run --duration 2s -- CMD (%s): exit %d, want %d\n%s", c.mode, code, c.want, r.stderr.String())
			}
		})
	}
}

// backgroundChild runs `tcpscope run ARGS -- sh -c SCRIPT`, where SCRIPT
// writes the pid of a `sleep 30` it starts in the background to $PIDFILE,
// and returns tcpscope's exit status, stderr and that pid. The sleep's
// output goes to /dev/null: it does not hold tcpscope's.
func backgroundChild(t *testing.T, script string, args ...string) (int, string, int) {
	t.Helper()
	ns := nettest.New(t)
	pidfile := filepath.Join(t.TempDir(), "pid")
	args = append(append([]string{"run", "--netns", fmt.Sprint(ns.Inode), "--linger", "0s", "-o", filepath.Join(t.TempDir(), "run.jsonl")}, args...), "--", "sh", "-c", script)
	code, _, stderr := runTcpscope(t, []string{"PIDFILE=" + pidfile}, args...)
	b, err := os.ReadFile(pidfile)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		t.Fatalf("no pid from the command (%v, %q); exit %d\n%s", err, b, code, stderr)
	}
	return code, stderr, pid
}

const sleepInBackground = `sleep 30 </dev/null >/dev/null 2>&1 & echo $! > "$PIDFILE"`

// TestRunStopsCommandTree: when tcpscope stops CMD it stops CMD's whole
// tree before exiting. A sleep that ignores SIGINT and SIGTERM, started by
// a shell that ignores them too, is killed with the shell after the grace
// period (ignores); one whose shell dies of the SIGINT is reparented to
// tcpscope, killed and reaped (orphaned). Either way it is gone, not even a
// zombie, when tcpscope has exited.
func TestRunStopsCommandTree(t *testing.T) {
	for _, c := range []struct {
		name, script string
		want         int
	}{
		{"ignores", `trap "" INT TERM; ` + sleepInBackground + `; wait`, 128 + int(syscall.SIGKILL)},
		// A non-interactive shell starts background jobs with SIGINT
		// ignored: only SIGKILL stops this sleep.
		{"orphaned", sleepInBackground + `; wait`, 128 + int(syscall.SIGINT)},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, stderr, pid := backgroundChild(t, c.script, "--duration", "2s")
			t.Cleanup(func() { unix.Kill(pid, unix.SIGKILL) })
			if err := unix.Kill(pid, 0); err != unix.ESRCH {
				t.Errorf("the command's background sleep (pid %d) outlived tcpscope run (kill(pid, 0): %v)\n%s", pid, err, stderr)
			}
			if code != c.want {
				t.Errorf("exit %d, want %d\n%s", code, c.want, stderr)
			}
		})
	}
}

// TestRunLeavesDaemonOfExitedCommand: a command that exits by itself may
// leave a process behind on purpose; tcpscope does not touch it.
func TestRunLeavesDaemonOfExitedCommand(t *testing.T) {
	code, stderr, pid := backgroundChild(t, sleepInBackground)
	t.Cleanup(func() { unix.Kill(pid, unix.SIGKILL) })
	if err := unix.Kill(pid, 0); err != nil {
		t.Errorf("the background sleep (pid %d) left by a command that exited by itself is gone after tcpscope run (kill(pid, 0): %v)\n%s", pid, err, stderr)
	}
	if code != 0 {
		t.Errorf("exit %d, want 0\n%s", code, stderr)
	}
}
