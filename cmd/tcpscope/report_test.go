package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/output"
	"github.com/tcpscope/tcpscope/tracer"
)

// report runs tcpscope report with stdin (nil: none) and returns its
// output and exit status.
func report(t *testing.T, stdin []byte, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command(binary, append([]string{"report"}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// writeTestExport writes n connections, every third one refused, with the
// export writer record uses.
func writeTestExport(t *testing.T, path string, n int) {
	t.Helper()
	t0 := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	e, err := output.CreateExport(path, nil, output.Meta{Tcpscope: "test", Kernel: "6.18", Start: t0})
	if err != nil {
		t.Fatal(err)
	}
	s := tracer.NewStats()
	for i := 0; i < n; i++ {
		c := tracer.Connection{
			ID: uint64(i + 1), Role: tracer.RoleClient, Family: tracer.FamilyIPv4,
			Local:  netip.AddrPortFrom(netip.MustParseAddr("10.0.0.2"), uint16(40000+i)),
			Remote: netip.MustParseAddrPort("10.0.0.1:8080"), Comm: "client", PID: 42,
			Start: t0.Add(time.Duration(i) * time.Millisecond), HandshakeUs: 100 + int64(i), SynRecvUs: -1,
			ClosedBy: tracer.ClosedByLocal, Outcome: tracer.OutcomeTimeWait, Flags: tracer.FlagsOf(tracer.FlagTimeWait),
			Timeline: []tracer.Item{{At: t0, Kind: tracer.ItemState, From: tracer.StateClose, To: tracer.StateSynSent}},
		}
		if i%3 == 0 {
			c.HandshakeUs, c.ClosedBy, c.Outcome, c.Errno = -1, tracer.ClosedByRemote, tracer.OutcomeRefused, tracer.ErrnoConnRefused
			c.Flags = tracer.FlagsOf(tracer.FlagResetReceived, tracer.FlagRefused)
		}
		c.End = c.Start.Add(time.Millisecond)
		s.Add(&c)
		if err := e.WriteConnection(&c); err != nil {
			t.Fatal(err)
		}
	}
	// As record's last tick does: the summary comes in a write (a zstd
	// frame) of its own.
	if err := e.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(s, output.Extra{End: t0.Add(time.Minute), LostEvents: 2}); err != nil {
		t.Fatal(err)
	}
}

// refusedLine is in the line printed for each refused connection.
const refusedLine = " refused (ECONNREFUSED) ["

// indentJSON reformats every JSON value of data the way jq . does.
func indentJSON(t *testing.T, data []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	dec := json.NewDecoder(bytes.NewReader(data))
	for dec.More() {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			t.Fatal(err)
		}
		if err := json.Indent(&out, raw, "", "  "); err != nil {
			t.Fatal(err)
		}
		out.WriteByte('\n')
	}
	return out.Bytes()
}

// TestReportReadsWhatAUserHas: a .json reformatted by jq, standard input,
// a .jsonl without its last newline read as the file record wrote; a
// .jsonl whose last record was cut short is read up to it with one warning
// naming the line (an error with --strict).
func TestReportReadsWhatAUserHas(t *testing.T) {
	dir := t.TempDir()
	jsonl, doc := filepath.Join(dir, "run.jsonl"), filepath.Join(dir, "run.json")
	writeTestExport(t, jsonl, 7)
	writeTestExport(t, doc, 7)
	want, stderr, code := report(t, nil, jsonl)
	if code != 0 || stderr != "" || strings.Count(want, refusedLine) != 3 || !strings.Contains(want, "+") {
		t.Fatalf("report run.jsonl: exit %d, stderr %q, stdout:\n%s", code, stderr, want)
	}
	jsonlData, _ := os.ReadFile(jsonl)
	docData, _ := os.ReadFile(doc)
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	// The same recording, laid out otherwise: the same report, no warning.
	for name, data := range map[string][]byte{
		"run.json":         docData,
		"p.json":           indentJSON(t, docData), // jq . run.json > p.json
		"p.jsonl":          indentJSON(t, jsonlData),
		"no-newline.jsonl": bytes.TrimSuffix(jsonlData, []byte("\n")),
	} {
		p := write(name, data)
		for _, args := range [][]string{{p}, {"-"}} {
			got, stderr, code := report(t, data, args...)
			if code != 0 || stderr != "" || got != want {
				t.Errorf("report %s (%s): exit %d, stderr %q, stdout:\n%s\nwant:\n%s", args[0], name, code, stderr, got, want)
			}
		}
	}

	// Cut short inside the summary (line 9) and inside the last connection
	// (line 8): every whole record is reported, with one warning naming
	// the torn line and one for the missing summary.
	lines := bytes.SplitAfter(jsonlData, []byte("\n"))
	for _, tc := range []struct {
		torn, conns, refused int
	}{{9, 7, 3}, {8, 6, 2}} {
		cut := append(bytes.Join(lines[:tc.torn-1], nil), lines[tc.torn-1][:25]...)
		p := write(fmt.Sprintf("torn%d.jsonl", tc.torn), cut)
		got, stderr, code := report(t, nil, p)
		warn := fmt.Sprintf("tcpscope: warning: %s:%d: the last record is cut short", p, tc.torn)
		if code != 0 || strings.Count(stderr, "\n") != 2 || !strings.HasPrefix(stderr, warn) || !strings.Contains(stderr, "no summary") ||
			strings.Count(got, refusedLine) != tc.refused || !strings.Contains(got, fmt.Sprintf("\n%d connections from", tc.conns)) {
			t.Errorf("report %s: exit %d, stderr %q, stdout:\n%s", p, code, stderr, got)
		}
		_, stderr, code = report(t, nil, "--strict", p)
		if code != 2 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, fmt.Sprintf("%s:%d: truncated record", p, tc.torn)) {
			t.Errorf("report --strict %s: exit %d, stderr %q; want exit 2 naming line %d", p, code, stderr, tc.torn)
		}
	}

	// Cut at a line boundary, as SIGKILL leaves it: reported with a warning
	// that it has no summary; --strict refuses it.
	killed := write("killed.jsonl", bytes.Join(lines[:8], nil))
	if got, stderr, code := report(t, nil, killed); code != 0 || strings.Count(got, refusedLine) != 3 ||
		stderr != fmt.Sprintf("tcpscope: warning: %s has no summary record: the recording did not finish (lost events unknown)\n", killed) {
		t.Errorf("report %s: exit %d, stderr %q", killed, code, stderr)
	}
	if _, stderr, code := report(t, nil, "--strict", killed); code != 2 || !strings.Contains(stderr, killed+": no summary") {
		t.Errorf("report --strict %s: exit %d, stderr %q", killed, code, stderr)
	}
}

// TestReportRefusesWhatIsNotAnExport: exit 2, one line naming the file (and
// line): another program's JSON is not a tcpscope export, whole or cut
// short; a broken record before the last is damage, not a torn end.
func TestReportRefusesWhatIsNotAnExport(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "run.jsonl")
	writeTestExport(t, good, 3)
	data, _ := os.ReadFile(good)
	lines := strings.SplitAfter(string(data), "\n")
	for _, tc := range []struct{ name, content, want string }{
		{"other.json", `{"foo":1}`, ":1: not a tcpscope export"},
		{"other-pretty.json", "{\n  \"name\": \"x\",\n  \"items\": [1, 2]\n}\n", ":1: not a tcpscope export"},
		{"other-cut.jsonl", "{\"level\":\"info\"}\n{\"level\":\"in", ":1: not a tcpscope export"},
		{"broken-middle.jsonl", lines[0] + lines[1][:30] + "\n" + lines[2], ":2: invalid connection record"},
		{"broken-last-line.jsonl", lines[0] + lines[1] + "}garbage\n", ":3: invalid JSON"},
	} {
		p := filepath.Join(dir, tc.name)
		os.WriteFile(p, []byte(tc.content), 0o600)
		for _, args := range [][]string{{p}, {"-"}} {
			_, stderr, code := report(t, []byte(tc.content), args...)
			where := p
			if args[0] == "-" {
				where = "standard input"
			}
			if code != 2 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, where+tc.want) || strings.Contains(stderr, "truncated") {
				t.Errorf("report %s (%s): exit %d, stderr %q; want exit 2 and %q", args[0], tc.name, code, stderr, where+tc.want)
			}
		}
	}
	if _, stderr, code := report(t, nil, "-"); code != 2 || !strings.Contains(stderr, "standard input: empty file") {
		t.Errorf("report - with nothing on standard input: exit %d, stderr %q", code, stderr)
	}
}

// TestReportWriteErrorIsAnError: a report that cannot be written (a full
// disk: /dev/full) fails with the error, not exit status 0 and nothing.
func TestReportWriteErrorIsAnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run.jsonl")
	writeTestExport(t, path, 4)
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("no /dev/full: %v", err)
	}
	defer full.Close()
	for _, args := range [][]string{{}, {"--format", "json"}, {"--id", "1"}, {"--id", "1", "--format", "json"}} {
		var stderr bytes.Buffer
		cmd := exec.Command(binary, append([]string{"report", path}, args...)...)
		cmd.Stdout, cmd.Stderr = full, &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(stderr.String(), "writing the report: ") ||
			!strings.Contains(stderr.String(), "no space left on device") {
			t.Errorf("report %v > /dev/full: %v, stderr %q; want exit status 1 and the write error", args, err, stderr.String())
		}
	}
}

// TestReportPerfettoWriteError: a trace that cannot be written is exit
// status 1 with the write error; only an export that cannot be read is 2.
func TestReportPerfettoWriteError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run.jsonl")
	writeTestExport(t, path, 200) // a trace larger than the write buffer
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("no /dev/full: %v", err)
	}
	defer full.Close()
	var stderr bytes.Buffer
	cmd := exec.Command(binary, "report", path, "--format", "perfetto")
	cmd.Stdout, cmd.Stderr = full, &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(stderr.String(), "writing the trace: ") ||
		!strings.Contains(stderr.String(), "no space left on device") {
		t.Errorf("report --format perfetto > /dev/full: %v, stderr %q; want exit status 1 and the write error", err, stderr.String())
	}
	if _, stderr, code := report(t, nil, filepath.Join(t.TempDir(), "none.jsonl"), "--format", "perfetto"); code != 2 {
		t.Errorf("report --format perfetto of a missing export: exit %d, stderr %q; want 2", code, stderr)
	}
}

// TestReportPerfettoFileGoesToTheSudoUser: --perfetto FILE under sudo is
// the sudo user's, 0600, and replaces a trace already there rather than
// writing into it.
func TestReportPerfettoFileGoesToTheSudoUser(t *testing.T) {
	dir := t.TempDir()
	export, trace := filepath.Join(dir, "run.jsonl"), filepath.Join(dir, "trace.json")
	writeTestExport(t, export, 4)
	if err := os.WriteFile(trace, []byte("an older trace"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(binary, "report", export, "--perfetto", trace)
	cmd.Env = append(os.Environ(), "SUDO_UID=65534", "SUDO_GID=65534")
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("report --perfetto: %v: %s", err, stderr.String())
	}
	st, err := os.Stat(trace)
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	if sys.Uid != 65534 || sys.Gid != 65534 || st.Mode().Perm() != 0o600 {
		t.Errorf("trace: owner %d:%d mode %v, want 65534:65534 0600", sys.Uid, sys.Gid, st.Mode().Perm())
	}
	data, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	if err := output.ValidateTrace(data); err != nil {
		t.Errorf("trace: %v", err)
	}
	if temps, _ := filepath.Glob(filepath.Join(dir, ".trace.json.*")); len(temps) != 0 {
		t.Errorf("temporaries left: %v", temps)
	}
}

// TestReportCompressed: a .jsonl.zst is reported as the .jsonl, from a
// file or standard input; cut inside a frame (a full disk, a machine that
// died) it is reported up to its last whole frame with a warning that says
// so, and refused by --strict.
func TestReportCompressed(t *testing.T) {
	dir := t.TempDir()
	plain, zst := filepath.Join(dir, "run.jsonl"), filepath.Join(dir, "run.jsonl.zst")
	writeTestExport(t, plain, 30)
	writeTestExport(t, zst, 30)
	want, _, _ := report(t, nil, plain)
	data, err := os.ReadFile(zst)
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{zst}, {"-"}} {
		got, stderr, code := report(t, data, args...)
		if code != 0 || stderr != "" || got != want {
			t.Errorf("report %s: exit %d, stderr %q, stdout:\n%s\nwant:\n%s", args[0], code, stderr, got, want)
		}
	}
	// The summary is the last frame: cut inside it, every connection is
	// still there.
	cut := filepath.Join(dir, "cut.jsonl.zst")
	if err := os.WriteFile(cut, data[:len(data)-3], 0o600); err != nil {
		t.Fatal(err)
	}
	got, stderr, code := report(t, nil, cut)
	warn := "tcpscope: warning: " + cut + ": the compressed file is cut short inside its last zstd frame"
	if code != 0 || !strings.HasPrefix(stderr, warn) || !strings.Contains(stderr, "no summary") || strings.Count(got, refusedLine) != 10 {
		t.Errorf("report %s: exit %d, stderr %q, stdout:\n%s", cut, code, stderr, got)
	}
	if got, stderr, code := report(t, nil, "--strict", cut); code != 2 || got != "" || !strings.Contains(stderr, cut+": the compressed file is cut short") {
		t.Errorf("report --strict %s: exit %d, stderr %q, stdout %q", cut, code, stderr, got)
	}
}
