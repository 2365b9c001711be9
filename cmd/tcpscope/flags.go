package main

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/netns"
)

// Flag values that check themselves while the command line is parsed: a
// bad value is reported by pflag as `invalid argument "V" for "--flag"
// flag: why`, which the root command turns into exit status 2 before
// anything is loaded.

// uintsValue is a repeatable flag of numbers from 1 to hi, at most max of
// them (0: any number): --port. Like pflag's lists, a value may
// hold several, comma separated.
type uintsValue[T uint16 | uint32] struct {
	vals *[]T
	hi   uint64
	max  int
	bad  string // why a value is refused
	noun string // what is counted against max
	typ  string
}

// portsValue is --port: 1-65535.
func portsValue(ports *[]uint16, max int) uintsValue[uint16] {
	return uintsValue[uint16]{vals: ports, hi: 65535, max: max, bad: "a port is 1-65535", noun: "ports", typ: "ports"}
}

// pidsValue is --pid: process ids (thread group ids) of running
// processes, 1 to PID_MAX_LIMIT (2^22).
func pidsValue(pids *[]uint32, max int) listValue[uint32] {
	return listValue[uint32]{vals: pids, max: max, noun: "processes", typ: "pid", parse: parsePID, commas: true}
}

// parsePID takes the id of a running process, not of one of its other
// threads: a socket belongs to the whole process (its tgid).
func parsePID(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 0 || n > 1<<22 {
		return 0, errors.New("not a process id")
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", n))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("no process %d is running", n)
	}
	if err != nil {
		return 0, fmt.Errorf("reading process %d: %w", n, err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if tgid, ok := strings.CutPrefix(line, "Tgid:"); ok && strings.TrimSpace(tgid) != s {
			return 0, fmt.Errorf("%d is a thread of process %s: give %s", n, strings.TrimSpace(tgid), strings.TrimSpace(tgid))
		}
	}
	return uint32(n), nil
}

// commsValue is --comm: task names, as /proc/PID/comm shows them.
func commsValue(names *[]string, max int) listValue[string] {
	return listValue[string]{vals: names, max: max, noun: "task names", typ: "name",
		parse: func(s string) (string, error) { return s, tracer.CheckComm(s) }}
}

// cgroupsValue is --cgroup: cgroup v2 directories, found when parsed.
func cgroupsValue(cgroups *[]tracer.CgroupFilter, max int) listValue[tracer.CgroupFilter] {
	return listValue[tracer.CgroupFilter]{vals: cgroups, max: max, noun: "cgroups", typ: "path",
		parse: tracer.ResolveCgroup, show: func(c tracer.CgroupFilter) string { return c.Path }}
}

// netnsValue is --netns: network namespaces, by inode, process id, file
// or ip netns name, kept as inodes.
func netnsValue(inodes *[]uint32, max int) listValue[uint32] {
	return listValue[uint32]{vals: inodes, max: max, noun: "namespaces", typ: "netns", parse: netns.Resolve, commas: true}
}

// listValue is a repeatable flag whose values parse checks one by one:
// --pid, --comm, --cgroup, --netns. With commas, a value may hold several,
// comma separated, as pflag's lists, except a path (a name or a path may
// hold a comma).
type listValue[T any] struct {
	vals   *[]T
	max    int
	noun   string
	typ    string
	parse  func(string) (T, error)
	show   func(T) string // default: fmt's
	commas bool
}

func (v listValue[T]) String() string {
	s := make([]string, len(*v.vals))
	for i, x := range *v.vals {
		if v.show != nil {
			s[i] = v.show(x)
		} else {
			s[i] = fmt.Sprint(x)
		}
	}
	return strings.Join(s, ",")
}

func (v listValue[T]) Set(s string) error {
	parts := []string{s}
	if v.commas && !strings.Contains(s, "/") {
		parts = strings.Split(s, ",")
	}
	for _, p := range parts {
		if len(*v.vals) >= v.max {
			return fmt.Errorf("at most %d %s can be filtered", v.max, v.noun)
		}
		x, err := v.parse(strings.TrimSpace(p))
		if err != nil {
			return err
		}
		*v.vals = append(*v.vals, x)
	}
	return nil
}

func (v listValue[T]) Type() string { return v.typ }

func (v uintsValue[T]) String() string {
	s := make([]string, len(*v.vals))
	for i, n := range *v.vals {
		s[i] = strconv.FormatUint(uint64(n), 10)
	}
	return strings.Join(s, ",")
}

func (v uintsValue[T]) Set(s string) error {
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.ParseUint(strings.TrimSpace(f), 10, 64)
		if err != nil || n == 0 || n > v.hi {
			return errors.New(v.bad)
		}
		if v.max > 0 && len(*v.vals) >= v.max {
			return fmt.Errorf("at most %d %s can be filtered", v.max, v.noun)
		}
		*v.vals = append(*v.vals, T(n))
	}
	return nil
}

func (v uintsValue[T]) Type() string { return v.typ }

// ringSizeValue is --ring-buffer-size: a power of two from a page to
// maxRingBuffer, written like 16MiB.
type ringSizeValue struct {
	bytes *int
	text  string
}

func (v *ringSizeValue) String() string { return v.text }

func (v *ringSizeValue) Set(s string) error {
	size, err := parseSize(s)
	if err != nil {
		return err
	}
	if size < os.Getpagesize() || size&(size-1) != 0 {
		return fmt.Errorf("must be a power of two of at least %d bytes", os.Getpagesize())
	}
	if size > maxRingBuffer {
		return errors.New("at most 256MiB, which holds 1.4 million events, over 10 s of the busiest load measured; the kernel keeps the whole buffer in memory")
	}
	*v.bytes, v.text = size, s
	return nil
}

func (*ringSizeValue) Type() string { return "size" }

// maxRingBuffer caps --ring-buffer-size. The kernel's own bound is looser:
// ringbuf_map_alloc() (kernel/bpf/ringbuf.c) takes any page-aligned power of
// two in the 32-bit max_entries, so 2 GiB is accepted, and
// bpf_ringbuf_area_alloc() allocates every page at once, charged to the
// memory cgroup and never swapped. A buffer only absorbs bursts the reader
// catches up with: 256 MiB holds about 1.4 million of our 192-byte records
// (184 bytes of event plus the 8-byte record header), more than ten seconds
// of the 120,000 events/s of the busiest load measured (README,
// Performance), while the reader drains 3.7 million events/s. A reader that
// is behind for longer than that is behind for good; a bigger buffer only
// takes memory from the host under test.
const maxRingBuffer = 256 << 20

// parseSize reads "4096", "64KiB", "16MiB", "1GiB" (K/M/G and KB/MB/GB
// are taken as powers of 1024 too).
func parseSize(s string) (int, error) {
	t := strings.TrimSpace(s)
	mult := 1
	for _, u := range []struct {
		suffix string
		mult   int
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}} {
		if strings.HasSuffix(strings.ToUpper(t), strings.ToUpper(u.suffix)) {
			t, mult = strings.TrimSpace(t[:len(t)-len(u.suffix)]), u.mult
			break
		}
	}
	n, err := strconv.Atoi(t)
	if err != nil || n <= 0 {
		return 0, errors.New("not a size (e.g. 16MiB)")
	}
	if n > math.MaxInt/mult {
		return 0, errors.New("too large")
	}
	return n * mult, nil
}

// durationValue is a duration flag whose value check accepts.
type durationValue struct {
	d     *time.Duration
	check func(time.Duration) error
}

func (v durationValue) String() string { return v.d.String() }

func (v durationValue) Set(s string) error {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return errors.New("not a duration (e.g. 30s, 5m)")
	}
	if err := v.check(d); err != nil {
		return err
	}
	*v.d = d
	return nil
}

func (durationValue) Type() string { return "duration" }

func notNegative(d time.Duration) error {
	if d < 0 {
		return errors.New("must not be negative")
	}
	return nil
}

func positive(d time.Duration) error {
	if d <= 0 {
		return errors.New("must be positive")
	}
	return nil
}

// sampleInterval accepts 0 (no samples) or the recorder's tick (200ms)
// and more: samples are cut on its ticks, so a shorter interval would
// still last a tick.
func sampleInterval(d time.Duration) error {
	if d != 0 && d < tracer.DefaultTickInterval {
		return fmt.Errorf("must be at least %s, or 0 for no samples", tracer.DefaultTickInterval)
	}
	return nil
}

// between accepts lo to hi, saying what for.
func between(lo, hi time.Duration, what string) func(time.Duration) error {
	return func(d time.Duration) error {
		if d < lo || d > hi {
			return fmt.Errorf("%s from %s to %s", what, shortDuration(lo), shortDuration(hi))
		}
		return nil
	}
}

// shortDuration writes 10m rather than 10m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	return s
}

// atLeastValue is an int flag with a lower bound.
type atLeastValue struct {
	n   *int
	min int
}

func (v atLeastValue) String() string { return strconv.Itoa(*v.n) }

func (v atLeastValue) Set(s string) error {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return errors.New("not a number")
	}
	if n < v.min {
		return fmt.Errorf("at least %d", v.min)
	}
	*v.n = n
	return nil
}

func (atLeastValue) Type() string { return "int" }

// Output formats, the same words in every command: text is for people
// (aligned columns, tables), json for programs (one JSON object per line,
// like the JSONL export). The words each command took before are accepted
// as aliases: jsonl (record --events) and table (report).
var formatAliases = map[string]string{"text": "text", "json": "json", "jsonl": "json", "table": "text"}

// formatValue is --format: text or json, or an alias of one.
type formatValue struct{ f *string }

func (v formatValue) String() string { return *v.f }

func (v formatValue) Set(s string) error {
	f, ok := formatAliases[strings.TrimSpace(s)]
	if !ok {
		return errors.New("use text or json")
	}
	*v.f = f
	return nil
}

func (formatValue) Type() string { return "format" }

// checkReadyFile reports a --ready-file that cannot be written because its
// directory is missing or unreadable, before anything is traced, and
// removes one a previous recording left: a script waiting for the file
// must not find it before this recording is attached.
func checkReadyFile(path string) error {
	if path == "" {
		return nil
	}
	dir := filepath.Dir(path)
	st, err := os.Stat(dir)
	if err != nil {
		return usageError{fmt.Errorf("--ready-file %s: %w", path, err)}
	}
	if !st.IsDir() {
		return usagef("--ready-file %s: %s is not a directory", path, dir)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return usageError{fmt.Errorf("--ready-file %s: removing the previous one: %w", path, err)}
	}
	return nil
}

// writeReadyFile writes tcpscope's pid to path, atomically: a reader sees
// no file or the whole line. Through a temporary file in the same
// directory renamed over path.
func writeReadyFile(path string, pid int) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tcpscope-ready-*")
	if err != nil {
		return fmt.Errorf("writing the ready file: %w", err)
	}
	_, err = fmt.Fprintf(tmp, "%d\n", pid)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing the ready file: %w", err)
	}
	return nil
}

// hostPortValue is --metrics-addr: HOST:PORT with a port from 0 to 65535
// (HOST may be empty: every address; port 0: one the kernel picks, which
// tcpscope prints). Whether it can be bound is checked once flags are
// parsed, before anything is loaded.
type hostPortValue struct{ addr *string }

func (v hostPortValue) String() string { return *v.addr }

func (v hostPortValue) Set(s string) error {
	_, port, err := net.SplitHostPort(strings.TrimSpace(s))
	if err != nil {
		return errors.New("not HOST:PORT (e.g. 127.0.0.1:9464, :9464)")
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return errors.New("a port is 0-65535 (0: any free port)")
	}
	*v.addr = strings.TrimSpace(s)
	return nil
}

func (hostPortValue) Type() string { return "host:port" }
