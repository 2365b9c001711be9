package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/nettest"
)

var binary string

func TestMain(m *testing.M) {
	switch os.Getenv("TCPSCOPE_TEST_HELPER") {
	case "server":
		helperServer()
	case "exec-in-ns":
		helperExecInNS()
	case "client":
		helperClient()
	case "signals":
		helperSignals()
	}
	dir, err := os.MkdirTemp("", "tcpscope-test")
	if err != nil {
		panic(err)
	}
	os.Chmod(dir, 0o755)
	binary = filepath.Join(dir, "tcpscope")
	if out, err := exec.Command(goTool(), "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building tcpscope: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// goTool finds the go command even under sudo, whose PATH lacks it.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

func TestBadInputExitsTwo(t *testing.T) {
	cases := [][]string{
		{"record", "--bogus"},
		{"record", "--events", "--port", "0"},
		{"record", "--events", "--port", "70000"},
		{"record", "--events", "--duration", "soon"},
		{"record", "--events", "--ring-buffer-size", "3000"},
		{"record", "--events", "--format", "xml"},
		{"record", "--format", "jsonl"},
		{"run", "--format", "text", "--", "true"},
		{"record", "--events", "--ring-buffer-size", "2GiB"},
		{"record", "--events", "--ring-buffer-size", "512MiB"},
		{"record", "-o", "/nonexistent/dir/run.jsonl"},
		{"record", "-o", "run.txt"},
		{"record", "--syn-recv-threshold", "-1s"},
		{"record", "--events", "-o", "-"},
		{"record", "--ready-file", "/nonexistent/dir/ready"},
		{"record", "--max-connections", "10"},
		{"record", "--status-interval", "0s"},
		{"record", "--sample-interval", "50ms"},
		{"record", "--sample-interval", "-1s"},
		{"record", "--perfetto", "t.json"},
		{"record", "-o", "-", "--perfetto", "t.json"},
		{"report", "x.jsonl", "--format", "perfetto", "--id", "1"},
		{"record", "--netns", "0"},
		{"record", "--netns", "no-such-netns"},
		{"record", "--netns", "/proc/self/ns/mnt"},
		{"run", "--pid", "0", "--", "true"},
		{"record", "--pid", "4194304"},
		{"record", "--comm", "a-name-of-sixteen"},
		{"record", "--cgroup", "/no/such/cgroup"},
		{"record", "--comm", "1", "--comm", "2", "--comm", "3", "--comm", "4", "--comm", "5", "--comm", "6", "--comm", "7", "--comm", "8", "--comm", "9"},
		{"record", "--metrics-addr", "9464"},
		{"record", "--metrics-addr", "127.0.0.1:http"},
		{"record", "--metrics-addr", "127.0.0.1:65536"},
		{"record", "--metrics-addr", "192.0.2.1:9464"}, // an address this host lacks
		{"record", "--port", "1", "--port", "2", "--port", "3", "--port", "4", "--port", "5", "--port", "6", "--port", "7", "--port", "8", "--port", "9"},
		{"run", "--linger", "-1s", "--", "true"},
		{"record", "--otlp-endpoint", "127.0.0.1:4318"},
		{"record", "--otlp-endpoint", "grpc://127.0.0.1:4317"},
		{"run", "--otlp-endpoint", "http://127.0.0.1", "--", "true"},
		{"record", "--otlp-endpoint", "http://127.0.0.1:99999"},
		{"demo", "--duration", "1s"},
		{"record", "-o", "-", "--html", "x.html"},
		{"record", "--html", "/nonexistent/dir/x.html"},
		{"run", "--html", "/nonexistent/dir/x.html", "--", "true"},
		{"demo", "--html", "/nonexistent/dir/x.html"},
		{"report", "x.jsonl", "--html", "x.html", "--flag", "refused"},
		{"report", "/nonexistent.jsonl", "--html", "x.html"},
		{"report", "x.jsonl", "--format", "xml"},
		{"report", "x.jsonl", "--port", "0"},
		{"report"},
		{"report", "/nonexistent.jsonl"},
		{"report", "x.jsonl", "--flag", "bogus"},
		{"nonsense"},
		{"check", "extra"},
		{"merge", "only-one.jsonl"},
		{"merge", "/nonexistent-a.jsonl", "/nonexistent-b.jsonl"},
	}
	for _, args := range cases {
		var stderr bytes.Buffer
		cmd := exec.Command(binary, args...)
		cmd.Stderr = &stderr
		err := cmd.Run()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 2 {
			t.Errorf("tcpscope %s: %v, want exit status 2", strings.Join(args, " "), err)
		}
		if lines := strings.Count(strings.TrimSpace(stderr.String()), "\n") + 1; stderr.Len() == 0 || lines > 2 {
			t.Errorf("tcpscope %s: stderr %q, want one actionable line", strings.Join(args, " "), stderr.String())
		}
	}
}

// TestHelpNamesFlagValues: --help shows a value name, not a word lifted
// from the description, for every flag that takes one.
func TestHelpNamesFlagValues(t *testing.T) {
	for _, sub := range []string{"record", "run"} {
		out, err := runBinary(t, sub, "--help")
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"--netns NETNS", "--pid PID", "--comm NAME", "--cgroup PATH", "--port PORT", "--ring-buffer-size SIZE", "-o, --output FILE", "--format FORMAT",
			"as printed by ls -L -i /proc/PID/ns/net", "up to 256MiB", "only with --events"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s --help lacks %q:\n%s", sub, want, out)
			}
		}
		if strings.Contains(out, "--netns ls") {
			t.Errorf("%s --help names the --netns value after a command:\n%s", sub, out)
		}
	}
	// Every command: no "(default [])" after an empty list, and a value
	// name rather than a Go type where the type says nothing.
	for sub, want := range map[string][]string{
		"record": {"--port PORT"},
		"run":    {"--port PORT"},
		"demo":   {"-o, --output FILE"},
		"report": {"--flag FLAG", "--outcome OUTCOME", "--port PORT", "--peer ADDR", "--id ID", "--format FORMAT"},
	} {
		out, err := runBinary(t, sub, "--help")
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("%s --help lacks %q:\n%s", sub, w, out)
			}
		}
		if strings.Contains(out, "(default [])") {
			t.Errorf("%s --help shows the default of an empty list:\n%s", sub, out)
		}
	}
}

// TestRingBufferCapMessage: an oversized ring buffer is refused before
// anything is loaded, with the limit and the reason on one line.
func TestRingBufferCapMessage(t *testing.T) {
	for _, size := range []string{"512MiB", "2GiB", "64GiB"} {
		var stderr bytes.Buffer
		cmd := exec.Command(binary, "record", "--ring-buffer-size", size)
		cmd.Stderr = &stderr
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
			t.Fatalf("--ring-buffer-size %s: %v, want exit status 2", size, err)
		}
		msg := strings.TrimSpace(stderr.String())
		if strings.Contains(msg, "\n") || !strings.Contains(msg, "at most 256MiB") || !strings.Contains(msg, "memory") {
			t.Errorf("--ring-buffer-size %s: stderr %q, want one line naming the 256MiB limit and why", size, msg)
		}
	}
}

func TestVersion(t *testing.T) {
	out, err := exec.Command(binary, "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), "tcpscope version ") {
		t.Errorf("--version: %q %v", out, err)
	}
}

// TestUnprivilegedIsOneClearLine runs the real binary as nobody.
func TestUnprivilegedIsOneClearLine(t *testing.T) {
	nettest.RequirePrivileges(t) // needs root to become nobody
	for _, args := range [][]string{{"record", "--events"}, {"check"}} {
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(binary, args...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		err := cmd.Run()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 1 {
			t.Errorf("%v as nobody: %v, want exit status 1", args, err)
		}
		msg := strings.TrimSpace(stderr.String())
		if strings.Count(msg, "\n") != 0 || !strings.Contains(msg, "CAP_BPF") || !strings.Contains(msg, "root") ||
			strings.HasPrefix(msg, "tcpscope: tcpscope") {
			t.Errorf("%v as nobody: stderr %q, want one line naming root and CAP_BPF", args, msg)
		}
		// check cannot attach anything without privileges: it must not
		// claim the tracepoints attach, only that they exist.
		if args[0] == "check" {
			if regexp.MustCompile(`\| attach(es|ed)\b`).MatchString(stdout.String()) {
				t.Errorf("check as nobody claims tracepoints attach:\n%s", stdout.String())
			}
			if n := strings.Count(stdout.String(), "attaching not tried: needs root"); n < 5 {
				t.Errorf("check as nobody: %d tracepoint rows say attaching was not tried:\n%s", n, stdout.String())
			}
		}
	}
}

// TestCheckAttaches: with privileges, check loads and attaches the programs
// for real, and only then says "attached".
func TestCheckAttaches(t *testing.T) {
	nettest.RequirePrivileges(t)
	out, err := runBinary(t, "check")
	if err != nil {
		t.Fatal(err)
	}
	f, err := tracer.Probe()
	if err != nil {
		t.Fatal(err)
	}
	present := 0
	for _, h := range f.Hooks {
		if h.Present {
			present++
		}
	}
	if n := regexp.MustCompile(`(?m)\| ok +\| attached\b`).FindAllStringIndex(out, -1); len(n) != present || present == 0 {
		t.Errorf("%d tracepoint rows say attached, %d tracepoints are present:\n%s", len(n), present, out)
	}
	if strings.Contains(out, "not tried") {
		t.Errorf("check as root did not try:\n%s", out)
	}
}

// TestRecordEventsJSONL runs `record --events --format jsonl` on a private
// namespace and checks the events of one connection and the closing tally.
func TestRecordEventsJSONL(t *testing.T) {
	ns := nettest.New(t)
	ready := filepath.Join(t.TempDir(), "ready")
	cmd := exec.Command(binary, "record", "--events", "--format", "jsonl", "--netns", fmt.Sprint(ns.Inode), "--duration", "20s", "--ready-file", ready)
	// An os.Pipe rather than StdoutPipe: Wait runs meanwhile and would
	// close StdoutPipe's read end under the reader.
	stdoutPipe, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdoutPipe.Close()
	var rest lockedBuffer
	done := startPiped(t, cmd, pw, &rest, ready)

	var ln net.Listener
	if err := ns.Do(func() (err error) { ln, err = net.Listen("tcp4", "127.0.0.1:0"); return }); err != nil {
		t.Fatal(err)
	}
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	var c net.Conn
	if err := ns.Do(func() (err error) { c, err = net.DialTimeout("tcp4", ln.Addr().String(), 5*time.Second); return }); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	c.Read(buf) // until the server's FIN
	c.Close()
	ln.Close()

	// Read until the listener's LISTEN->CLOSE (the last of the 12 state
	// events), then stop tcpscope with Ctrl-C as a user would.
	kinds := map[string]int{}
	var states []string
	out := bufio.NewScanner(stdoutPipe)
	for kinds["state"] < 12 && out.Scan() {
		var m map[string]any
		if err := json.Unmarshal(out.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", out.Text(), err)
		}
		if m["netns"] != float64(ns.Inode) {
			t.Errorf("event from netns %v", m["netns"])
		}
		kinds[m["kind"].(string)]++
		if m["kind"] == "state" {
			states = append(states, m["from"].(string)+"->"+m["to"].(string))
		}
	}
	cmd.Process.Signal(os.Interrupt)
	for out.Scan() {
		t.Errorf("unexpected event after the connection ended: %s", out.Text())
	}
	if err := <-done; err != nil {
		t.Fatalf("tcpscope exited with %v: %s", err, rest.String())
	}
	// Listener open and close, 5 transitions on each end.
	if kinds["state"] != 12 {
		t.Errorf("%d state events, want 12: %v", kinds["state"], states)
	}
	if !strings.Contains(rest.String(), "events: 12 (state 12,") || !strings.Contains(rest.String(), "lost 0") {
		t.Errorf("closing tally: %q", rest.String())
	}
	if !strings.Contains(rest.String(), "tcpscope: recursion misses: ") {
		t.Errorf("no recursion misses line: %q", rest.String())
	}
}

func runBinary(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(binary, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("tcpscope %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out), nil
}
