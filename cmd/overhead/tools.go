package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// readiness is how a started tracer shows it sees every connection from
// then on.
type readiness int

const (
	readyFile     readiness = iota // tcpscope writes its pid to --ready-file
	readyStderr                    // a line on stderr (tcpdump's "listening on")
	readyAttached                  // a BPF link held and the process waiting in poll (libbpf-tools)
)

type tracer struct {
	key       string // for -tracers
	label     string // row of the tables
	bin       string
	pkg       string // the Debian package that installs bin
	inNS      bool   // run inside the load's namespace
	ready     readiness
	readyLine string
	export    string // tcpscope's export suffix: its size is the bytes on disk
	optional  bool   // a refusal (an older binary) is n/a, not an error
	lines     bool   // its stdout lines are what it reports (events per connection)
	args      func(b *bench, export, readyFile string) []string
}

func allTracers(o options) []*tracer {
	return []*tracer{
		tcpscopeTracer(o, "tcpscope", "tcpscope", ".jsonl", false),
		tcpscopeTracer(o, "tcpscope-zst", "tcpscope -o .jsonl.zst", ".jsonl.zst", false),
		tcpscopeTracer(o, "tcpscope-events", "tcpscope --events", ".jsonl", true),
		{key: "tcpdump", label: "tcpdump -i any -w /dev/null", bin: "tcpdump", pkg: "tcpdump",
			inNS: true, ready: readyStderr, readyLine: "listening on",
			args: func(*bench, string, string) []string { return []string{"-i", "any", "-w", "/dev/null"} }},
		libbpfTool("tcplife"),
		libbpfTool("tcpstates"),
	}
}

func tracerNames() []string {
	var names []string
	for _, t := range allTracers(options{}) {
		names = append(names, t.key)
	}
	return names
}

func tcpscopeTracer(o options, key, label, export string, events bool) *tracer {
	return &tracer{key: key, label: label, bin: o.tcpscope, ready: readyFile, export: export,
		optional: strings.HasSuffix(export, ".zst"),
		args: func(b *bench, out, ready string) []string {
			args := []string{"record", "--netns", strconv.FormatUint(uint64(b.ns.Inode), 10),
				"-o", out, "--ready-file", ready}
			if events {
				args = append(args, "--events")
			}
			return append(args, o.extra...)
		}}
}

// libbpfTool is a tool of Debian's libbpf-tools, run without arguments:
// it prints a line per connection (tcplife) or per state change
// (tcpstates), system-wide.
func libbpfTool(name string) *tracer {
	return &tracer{key: name, label: "libbpf-tools " + name, bin: name, pkg: "libbpf-tools",
		ready: readyAttached, lines: true,
		args: func(*bench, string, string) []string { return nil }}
}

// selectTracers resolves each wanted tracer's binary. One that is not
// installed is skipped with the package to install, or is an error with
// -require-all.
func selectTracers(o options) ([]*tracer, []string, error) {
	var run []*tracer
	var skipped []string
	for _, t := range allTracers(o) {
		if o.only != nil && !o.only[t.key] {
			continue
		}
		if t.pkg == "" { // tcpscope: the binary under test is never optional
			if _, err := os.Stat(t.bin); err != nil {
				return nil, nil, fmt.Errorf("finding tcpscope (make build): %w", err)
			}
			run = append(run, t)
			continue
		}
		bin, err := findBinary(t.bin)
		if err != nil {
			msg := fmt.Sprintf("%s: not installed: apt-get install %s", t.label, t.pkg)
			if o.requireAll {
				return nil, nil, errors.New(msg)
			}
			fmt.Fprintln(os.Stderr, msg+" (skipped)")
			skipped = append(skipped, msg)
			continue
		}
		t.bin = bin
		run = append(run, t)
	}
	return run, skipped, nil
}

// findBinary looks in PATH, then in the sbin directories a user's PATH
// often lacks.
func findBinary(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		if st, err := os.Stat(dir + "/" + name); err == nil && st.Mode().IsRegular() {
			return dir + "/" + name, nil
		}
	}
	return "", fmt.Errorf("finding %s: not in PATH nor sbin", name)
}

const tracefs = "/sys/kernel/tracing"

// tracefsFor mounts tracefs when a tool attaches to classic tracepoints
// (libbpf finds their ids there) and it is not mounted. The returned
// function unmounts only what was mounted here.
func tracefsFor(tracers []*tracer) (func(), error) {
	need := false
	for _, t := range tracers {
		need = need || t.ready == readyAttached
	}
	if !need {
		return func() {}, nil
	}
	mounted, err := isMountPoint(tracefs)
	if err != nil || mounted {
		return func() {}, err
	}
	if err := unix.Mount("nodev", tracefs, "tracefs", 0, ""); err != nil {
		return nil, fmt.Errorf("mounting tracefs at %s: %w", tracefs, err)
	}
	fmt.Fprintln(os.Stderr, "mounted tracefs at "+tracefs+" (unmounted at the end)")
	return func() {
		if err := unix.Unmount(tracefs, 0); err != nil {
			fmt.Fprintf(os.Stderr, "overhead: unmounting %s: %v\n", tracefs, err)
		}
	}, nil
}

func isMountPoint(dir string) (bool, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, fmt.Errorf("reading mounts: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 && fields[4] == dir {
			return true, nil
		}
	}
	if err := sc.Err(); err != nil {
		return false, fmt.Errorf("reading mounts: %w", err)
	}
	return false, nil
}
