package main

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/tcpscope/tcpscope/tracer"
	"golang.org/x/sys/unix"
)

// These tests need no root: they parse command lines.

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int{
		"4096": 4096, "64KiB": 64 << 10, "16MiB": 16 << 20, "1GiB": 1 << 30, "16mib": 16 << 20,
		"4K": 4 << 10, "4KB": 4 << 10, "2M": 2 << 20, "2MB": 2 << 20, "1G": 1 << 30, "1GB": 1 << 30, " 8 MiB ": 8 << 20,
	} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-4KiB", "0", "1.5MiB", "lots", "4TiB", "99999999999999999999GiB"} {
		if got, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) = %d; want an error", in, got)
		}
	}
}

// parse runs a flag set with one value on args and returns pflag's error.
func parse(v pflag.Value, args ...string) error {
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	fs.SetOutput(new(strings.Builder))
	fs.Var(v, "x", "")
	return fs.Parse(args)
}

func TestPortsValue(t *testing.T) {
	var ports []uint16
	if err := parse(portsValue(&ports, 3), "--x", "80", "--x", "443,8080"); err != nil || len(ports) != 3 || ports[2] != 8080 {
		t.Errorf("ports %v, %v", ports, err)
	}
	for _, bad := range [][]string{{"--x", "0"}, {"--x", "65536"}, {"--x", "http"}, {"--x", "-1"}, {"--x", "1,2,3,4"}} {
		ports = nil
		err := parse(portsValue(&ports, 3), bad...)
		if err == nil {
			t.Errorf("%v accepted: %v", bad, ports)
		} else if !strings.Contains(err.Error(), "1-65535") && !strings.Contains(err.Error(), "at most 3") {
			t.Errorf("%v: %v, want the reason", bad, err)
		}
	}
	ports = nil
	if err := parse(portsValue(&ports, 0), "--x", "1,2,3,4,5,6,7,8,9"); err != nil || len(ports) != 9 {
		t.Errorf("unbounded ports: %v, %v", ports, err)
	}
}

func TestNetNSValue(t *testing.T) {
	var ns []uint32
	if err := parse(netnsValue(&ns, 3), "--x", "4026531840", "--x", "4026531841,4026531842"); err != nil || len(ns) != 3 || ns[0] != 4026531840 || ns[1] != 4026531841 {
		t.Errorf("netns %v, %v", ns, err)
	}
	// A process id and a file name the namespace the process is in.
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &st); err != nil {
		t.Fatalf("reading this namespace: %v", err)
	}
	ns = nil
	if err := parse(netnsValue(&ns, 2), "--x", strconv.Itoa(os.Getpid()), "--x", "/proc/self/ns/net"); err != nil || len(ns) != 2 || ns[0] != uint32(st.Ino) || ns[1] != uint32(st.Ino) {
		t.Errorf("netns %v, %v; want %d twice", ns, err, st.Ino)
	}
	for _, bad := range [][]string{{"--x", "0"}, {"--x", "4294967296"}, {"--x", "net:[4026531840]"}, {"--x", "4026531840,4026531841,4026531842"},
		{"--x", "no-such-netns"}, {"--x", "/proc/self/ns/mnt"}, {"--x", "4194305"}} {
		ns = nil
		if err := parse(netnsValue(&ns, 2), bad...); err == nil {
			t.Errorf("%v accepted: %v", bad, ns)
		}
	}
	// Each refusal says why: another namespace's type, or no namespace file.
	for path, why := range map[string]string{"/proc/self/ns/mnt": "not a network namespace", "/proc/self/status": "not a namespace file"} {
		ns = nil
		if err := parse(netnsValue(&ns, 2), "--x", path); err == nil || !strings.Contains(err.Error(), why) {
			t.Errorf("%s: %v, want %q", path, err, why)
		}
	}
}

func TestRingSizeValue(t *testing.T) {
	n := 0
	v := &ringSizeValue{bytes: &n, text: "16MiB"}
	if err := parse(v, "--x", "64MiB"); err != nil || n != 64<<20 || v.String() != "64MiB" {
		t.Errorf("64MiB: %d %q %v", n, v.String(), err)
	}
	page := strconv.Itoa(os.Getpagesize())
	if err := parse(v, "--x", page); err != nil || n != os.Getpagesize() {
		t.Errorf("a page: %d %v", n, err)
	}
	for _, bad := range []string{"3000", "48MiB", "512MiB", "2GiB", "1K", "soon"} {
		n = 0
		if err := parse(v, "--x", bad); err == nil {
			t.Errorf("ring buffer %q accepted: %d", bad, n)
		}
	}
}

func TestDurationValue(t *testing.T) {
	d := time.Duration(0)
	for _, c := range []struct {
		check func(time.Duration) error
		in    string
		ok    bool
	}{
		{notNegative, "0s", true}, {notNegative, "30s", true}, {notNegative, "-1s", false}, {notNegative, "soon", false},
		{positive, "1ms", true}, {positive, "0s", false}, {positive, "-1s", false},
		{sampleInterval, "0s", true}, {sampleInterval, "200ms", true}, {sampleInterval, "199ms", false}, {sampleInterval, "100ms", false}, {sampleInterval, "-1s", false},
		{between(8*time.Second, 10*time.Minute, "runs"), "8s", true}, {between(8*time.Second, 10*time.Minute, "runs"), "10m", true},
		{between(8*time.Second, 10*time.Minute, "runs"), "7s", false}, {between(8*time.Second, 10*time.Minute, "runs"), "11m", false},
	} {
		err := parse(durationValue{&d, c.check}, "--x", c.in)
		if (err == nil) != c.ok {
			t.Errorf("%s: %v, want ok %v", c.in, err, c.ok)
		}
	}
	if err := between(8*time.Second, 10*time.Minute, "the demo runs")(time.Hour); err == nil || err.Error() != "the demo runs from 8s to 10m" {
		t.Errorf("between: %v", err)
	}
}

func TestFormatValue(t *testing.T) {
	for in, want := range map[string]string{"text": "text", "json": "json", "jsonl": "json", "table": "text"} {
		f := ""
		if err := parse(formatValue{&f}, "--x", in); err != nil || f != want {
			t.Errorf("--format %s: %q, %v; want %q", in, f, err, want)
		}
	}
	f := "text"
	if err := parse(formatValue{&f}, "--x", "xml"); err == nil || !strings.Contains(err.Error(), "use text or json") {
		t.Errorf("--format xml: %v", err)
	}
}

func TestReportFormatValue(t *testing.T) {
	for in, want := range map[string]string{"text": "text", "jsonl": "json", "perfetto": "perfetto"} {
		f := ""
		if err := parse(reportFormatValue{&f}, "--x", in); err != nil || f != want {
			t.Errorf("--format %s: %q, %v; want %q", in, f, err, want)
		}
	}
	f := "text"
	if err := parse(reportFormatValue{&f}, "--x", "xml"); err == nil || !strings.Contains(err.Error(), "use text, json or perfetto") {
		t.Errorf("--format xml: %v", err)
	}
}

func TestAtLeastValue(t *testing.T) {
	n := 0
	if err := parse(atLeastValue{&n, 1000}, "--x", "5000"); err != nil || n != 5000 {
		t.Errorf("5000: %d %v", n, err)
	}
	for _, bad := range []string{"999", "-1", "many"} {
		if err := parse(atLeastValue{&n, 1000}, "--x", bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

// TestWriteReadyFile: the ready file holds the pid and a line end, and no
// temporary file is left beside it.
func TestWriteReadyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ready")
	if err := writeReadyFile(path, 4242); err != nil {
		t.Fatal(err)
	}
	if err := writeReadyFile(path, 4243); err != nil { // replaces a stale one
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil || string(b) != "4243\n" {
		t.Errorf("ready file %q, %v", b, err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("%d files in the directory, want only the ready file", len(ents))
	}
	if err := writeReadyFile(filepath.Join(dir, "nodir", "ready"), 1); err == nil {
		t.Error("ready file in a missing directory written")
	}
	if err := checkReadyFile(filepath.Join(dir, "nodir", "ready")); err == nil {
		t.Error("ready file in a missing directory accepted")
	}
	// A ready file a previous recording left is gone before this one
	// traces: a script must not take it for this recording's.
	if err := checkReadyFile(path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale ready file still there: %v", err)
	}
}

func TestPIDsValue(t *testing.T) {
	var pids []uint32
	self := strconv.Itoa(os.Getpid())
	if err := parse(pidsValue(&pids, 2), "--x", self+",1"); err != nil || len(pids) != 2 || pids[0] != uint32(os.Getpid()) || pids[1] != 1 {
		t.Errorf("pids %v, %v", pids, err)
	}
	// A thread that is not its process's main thread is refused, naming the process.
	tid := make(chan int)
	go func() {
		runtime.LockOSThread() // exits with the goroutine: a thread of its own
		tid <- unix.Gettid()
		<-tid
	}()
	thread := <-tid
	defer func() { tid <- 0 }()
	pids = nil
	if err := parse(pidsValue(&pids, 2), "--x", strconv.Itoa(thread)); thread != os.Getpid() && (err == nil || !strings.Contains(err.Error(), "give "+self)) {
		t.Errorf("thread %d: %v, want it refused for %s", thread, err, self)
	}
	for _, bad := range [][]string{{"--x", "0"}, {"--x", "x"}, {"--x", "4194305"}, {"--x", "1,1,1"}} {
		pids = nil
		if err := parse(pidsValue(&pids, 2), bad...); err == nil {
			t.Errorf("%v accepted: %v", bad, pids)
		}
	}
}

func TestCommsValue(t *testing.T) {
	var names []string
	if err := parse(commsValue(&names, 2), "--x", "nginx", "--x", "a,b"); err != nil || len(names) != 2 || names[1] != "a,b" {
		t.Errorf("names %q, %v", names, err)
	}
	for _, bad := range []string{"", "a-sixteen-bytes!", "x\x00y"} {
		names = nil
		if err := parse(commsValue(&names, 2), "--x", bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	names = nil
	if err := parse(commsValue(&names, 1), "--x", "a", "--x", "b"); err == nil || !strings.Contains(err.Error(), "at most 1") {
		t.Errorf("two names past a limit of one: %v", err)
	}
}

func TestCgroupsValue(t *testing.T) {
	mount, err := tracer.CgroupMount()
	if err != nil {
		t.Skipf("no cgroup v2: %v", err)
	}
	var cgs []tracer.CgroupFilter
	// The root, by its mount and by its path in the hierarchy.
	if err := parse(cgroupsValue(&cgs, 2), "--x", mount, "--x", "/"); err != nil || len(cgs) != 2 {
		t.Fatalf("cgroups %v, %v", cgs, err)
	}
	for _, cg := range cgs {
		if cg.Path != mount || cg.Level != 0 || cg.ID != 1 {
			t.Errorf("root cgroup: %+v, want %s, level 0, id 1", cg, mount)
		}
	}
	for _, bad := range []string{"/no/such/cgroup", filepath.Join(mount, "cgroup.procs")} {
		cgs = nil
		if err := parse(cgroupsValue(&cgs, 2), "--x", bad); err == nil {
			t.Errorf("%q accepted: %+v", bad, cgs)
		}
	}
}
