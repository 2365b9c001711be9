package output

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/tracer"
)

func testMeta() Meta {
	return Meta{Tcpscope: "test", Kernel: "6.18", Start: time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)}
}

// finish writes one connection and the summary.
func finish(t *testing.T, e *Export) {
	t.Helper()
	conns := sampleConnections()
	s := tracer.NewStats()
	s.Add(&conns[0])
	if err := e.WriteConnection(&conns[0]); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(s, Extra{End: conns[0].End}); err != nil {
		t.Fatal(err)
	}
}

// TestOpenExportRefusesSymlinks: a link at the output path (or at a
// .json's temporary) is never followed; the file it points to keeps its
// content and mode.
func TestOpenExportRefusesSymlinks(t *testing.T) {
	for _, c := range []struct{ name, link string }{
		{"run.jsonl", "run.jsonl"},
		{"run.json", "run.json"},
		{"run.json", ".run.json.tmp"},
	} {
		dir := t.TempDir()
		victim := filepath.Join(dir, "victim.txt")
		if err := os.WriteFile(victim, []byte("precious\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("victim.txt", filepath.Join(dir, c.link)); err != nil {
			t.Fatal(err)
		}
		e, err := CreateExport(filepath.Join(dir, c.name), nil, testMeta())
		if err == nil {
			finish(t, e)
			t.Errorf("%s with a link at %s: accepted", c.name, c.link)
		} else if !strings.Contains(err.Error(), "symbolic link") {
			t.Errorf("%s with a link at %s: %v, want one saying it is a symbolic link", c.name, c.link, err)
		}
		st, _ := os.Stat(victim)
		if data, _ := os.ReadFile(victim); string(data) != "precious\n" || st.Mode().Perm() != 0o644 {
			t.Errorf("%s with a link at %s: the link's target became %q, mode %v", c.name, c.link, data, st.Mode().Perm())
		}
	}
}

// TestOpenExportRefusesOddFiles: a FIFO (which would block the open), a
// file with other hard links and another user's file are not written.
func TestOpenExportRefusesOddFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.jsonl")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenExport(fifo, nil, Owner{}); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("FIFO: %v", err)
	}
	other := filepath.Join(dir, "other.txt")
	os.WriteFile(other, []byte("keep\n"), 0o600)
	linked := filepath.Join(dir, "linked.jsonl")
	if err := os.Link(other, linked); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenExport(linked, nil, Owner{}); err == nil || !strings.Contains(err.Error(), "hard links") {
		t.Errorf("hard link: %v", err)
	}
	if data, _ := os.ReadFile(other); string(data) != "keep\n" {
		t.Errorf("the other name of a hard link became %q", data)
	}
	if os.Geteuid() != 0 {
		t.Skip("another user's file needs root to make")
	}
	for _, name := range []string{"theirs.jsonl", "theirs.json"} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte("theirs\n"), 0o644)
		os.Chown(p, 65534, 65534)
		if _, err := OpenExport(p, nil, Owner{}); err == nil || !strings.Contains(err.Error(), "belongs to uid 65534") {
			t.Errorf("%s of another user: %v", name, err)
		}
		// ... unless that user is the one tcpscope was run for.
		e, err := OpenExport(p, nil, Owner{UID: 65534, GID: 65534, Set: true})
		if err != nil {
			t.Errorf("%s of the sudo user: %v", name, err)
			continue
		}
		e.Abort()
	}
}

// TestOpenExportLocks: a second open of the same output fails naming the
// holder's PID (here this process), until the first is closed.
func TestOpenExportLocks(t *testing.T) {
	for _, name := range []string{"run.jsonl", "run.json"} {
		path := filepath.Join(t.TempDir(), name)
		first, err := CreateExport(path, nil, testMeta())
		if err != nil {
			t.Fatal(err)
		}
		second, err := CreateExport(path, nil, testMeta())
		if err == nil {
			finish(t, second)
		}
		want := fmt.Sprintf("output %s is locked by another tcpscope (pid %d)", path, os.Getpid())
		if err == nil || err.Error() != want {
			t.Errorf("%s opened twice: %v, want %q", name, err, want)
		}
		finish(t, first)
		if err := ValidateExport(path); err != nil {
			t.Errorf("%s after a refused second open: %v", name, err)
		}
		third, err := CreateExport(path, nil, testMeta())
		if err != nil {
			t.Fatalf("%s after the first closed: %v", name, err)
		}
		finish(t, third)
	}
}

// TestOpenExportTouchesNothingBeforeStart: a recording that fails to start
// leaves an existing file as it was and removes a file it created.
func TestOpenExportTouchesNothingBeforeStart(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"old.jsonl", "old.json"} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte("old recording\n"), 0o644)
		e, err := OpenExport(p, nil, Owner{})
		if err != nil {
			t.Fatal(err)
		}
		e.Abort()
		st, _ := os.Stat(p)
		if data, _ := os.ReadFile(p); string(data) != "old recording\n" || st.Mode().Perm() != 0o644 {
			t.Errorf("%s after an aborted start: %q, mode %v", name, data, st.Mode().Perm())
		}
		os.Remove(p)
	}
	// A file it created goes, also once its header is written (run's
	// command could not start): a header alone is no recording.
	for _, name := range []string{"new.jsonl", "new.json"} {
		for _, started := range []bool{false, true} {
			e, err := OpenExport(filepath.Join(dir, name), nil, Owner{})
			if err != nil {
				t.Fatal(err)
			}
			if started {
				if err := e.Start(testMeta()); err != nil {
					t.Fatal(err)
				}
			}
			e.Abort()
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("%s aborted (header written: %v) left %v", name, started, entries)
			}
		}
	}
	// One whole record written: kept (a recording that failed midway).
	e, err := CreateExport(filepath.Join(dir, "midway.jsonl"), nil, testMeta())
	if err != nil {
		t.Fatal(err)
	}
	conns := sampleConnections()
	if err := e.WriteConnection(&conns[0]); err != nil {
		t.Fatal(err)
	}
	e.Flush()
	e.Abort()
	if rec, err := ReadExport(filepath.Join(dir, "midway.jsonl")); err != nil || len(rec.Connections) != 1 {
		t.Errorf("a .jsonl aborted after a record: %v", err)
	}
	os.Remove(filepath.Join(dir, "midway.jsonl"))
	// An existing .jsonl is overwritten once the recording starts.
	p := filepath.Join(dir, "old.jsonl")
	os.WriteFile(p, []byte(strings.Repeat("old recording\n", 10000)), 0o644)
	e, err = OpenExport(p, nil, Owner{})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(testMeta()); err != nil {
		t.Fatal(err)
	}
	finish(t, e)
	if err := ValidateExport(p); err != nil {
		t.Errorf("overwritten .jsonl: %v", err)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 {
		t.Errorf("overwritten .jsonl has mode %v, want 0600", st.Mode().Perm())
	}
}

// TestJSONTakesOverACrashedTemporary: a temporary left by a killed
// recording is reused by the next recording to the same path and nothing
// is left once it ends.
func TestJSONTakesOverACrashedTemporary(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "run.json")
	// What SIGKILL leaves: an unfinished document under the temporary name.
	os.WriteFile(filepath.Join(dir, ".run.json.tmp"), []byte(`{"meta":{"format_version":1},"connections":[`+strings.Repeat(" ", 100000)), 0o600)
	e, err := CreateExport(path, nil, testMeta())
	if err != nil {
		t.Fatal(err)
	}
	finish(t, e)
	if err := ValidateExport(path); err != nil {
		t.Error(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("left in the directory: %v, want only run.json", entries)
	}
}

// TestOpenExportHandsTheFileToOwner: through sudo, the export and a
// .json's temporary belong to the sudo user, still 0600.
func TestOpenExportHandsTheFileToOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("handing a file to another user needs root")
	}
	for _, name := range []string{"run.jsonl", "run.json"} {
		path := filepath.Join(t.TempDir(), name)
		e, err := OpenExport(path, nil, Owner{UID: 65534, GID: 65533, Set: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Start(testMeta()); err != nil {
			t.Fatal(err)
		}
		finish(t, e)
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		sys := st.Sys().(*syscall.Stat_t)
		if sys.Uid != 65534 || sys.Gid != 65533 || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: owner %d:%d mode %v, want 65534:65533 0600", name, sys.Uid, sys.Gid, st.Mode().Perm())
		}
	}
}

func TestSudoOwner(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	got := SudoOwner(env(map[string]string{"SUDO_UID": "1000", "SUDO_GID": "1001"}))
	want := Owner{UID: 1000, GID: 1001, Set: true}
	if os.Geteuid() != 0 {
		want = Owner{} // only root can hand files over
	}
	if got != want {
		t.Errorf("SudoOwner = %+v, want %+v", got, want)
	}
	for _, m := range []map[string]string{{}, {"SUDO_UID": "1000"}, {"SUDO_UID": "x", "SUDO_GID": "1"}, {"SUDO_UID": "-1", "SUDO_GID": "1"}} {
		if got := SudoOwner(env(m)); got.Set {
			t.Errorf("SudoOwner(%v) = %+v, want none", m, got)
		}
	}
}

// TestOpenExportStdoutIsNotLocked: "-" opens no file and takes no lock.
func TestOpenExportStdoutIsNotLocked(t *testing.T) {
	var out strings.Builder
	for i := 0; i < 2; i++ {
		e, err := OpenExport("-", &out, Owner{})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Start(testMeta()); err != nil {
			t.Fatal(err)
		}
		defer finish(t, e)
	}
}

// TestOpenExportNamesWhatFailed: errors are one line naming the output.
func TestOpenExportNamesWhatFailed(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"run.jsonl", "run.json"} {
		path := filepath.Join(dir, "missing", name)
		_, err := OpenExport(path, nil, Owner{})
		if err == nil || err.Error() != "opening output "+path+": no such file or directory (its directory must exist)" {
			t.Errorf("%s in a missing directory: %v", name, err)
		}
	}
	if _, err := OpenExport(filepath.Join(dir, "run.txt"), nil, Owner{}); err == nil || !strings.Contains(err.Error(), "name it .jsonl") {
		t.Errorf("run.txt: %v", err)
	}
	for _, name := range []string{"d.jsonl", "d.json"} {
		os.Mkdir(filepath.Join(dir, name), 0o755)
		if _, err := OpenExport(filepath.Join(dir, name), nil, Owner{}); err == nil || !strings.Contains(err.Error(), "is a directory") {
			t.Errorf("directory %s: %v", name, err)
		}
	}
}
