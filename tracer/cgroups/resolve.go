package cgroups

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNoCgroup2 says no cgroup v2 hierarchy is mounted: cgroup ids cannot
// be named.
var ErrNoCgroup2 = errors.New("no cgroup v2 hierarchy mounted")

// FindMount returns where the cgroup v2 hierarchy is mounted, from
// /proc/self/mountinfo: /sys/fs/cgroup on a unified host,
// /sys/fs/cgroup/unified on a hybrid one.
func FindMount() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("reading mounts: %w", err)
	}
	defer f.Close()
	return mountIn(f)
}

// mountIn finds the first cgroup2 mount of the hierarchy's root in a
// mountinfo listing. A mount of a subtree (root field not "/", as a bind
// mount of one cgroup shows) would give paths and levels relative to that
// subtree, not to the root the kernel counts from, so it is passed over.
func mountIn(r io.Reader) (string, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		// id parent dev root mountpoint options [optional...] - fstype source super
		fields := strings.Fields(sc.Text())
		for i, f := range fields {
			if f == "-" && i+1 < len(fields) && i >= 4 {
				if fields[i+1] == "cgroup2" && fields[3] == "/" {
					return unescape(fields[4]), nil
				}
				break
			}
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("reading mounts: %w", err)
	}
	return "", ErrNoCgroup2
}

// unescape undoes mountinfo's octal escapes of space, tab, newline and
// backslash.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1:i+4]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '7' {
			return false
		}
	}
	return true
}

// Resolver names cgroup ids. A cgroup v2 id is its directory's inode
// number in the cgroup2 file system (the kernfs node id, which on a 64-bit
// kernel is the inode number whole). On an id it does not know it walks
// the hierarchy, at most once per MinRescan; between walks it opens the id
// by file handle (see handleOpener), which names a cgroup however recent
// where that is allowed (root). It keeps the paths it has seen, so that a cgroup removed after
// it was seen (a container that exited) keeps its name; when MaxEntries
// are kept, those the latest walk did not find (or, failing that, the
// least recently named) make room. Safe for concurrent use.
type Resolver struct {
	root string
	// MinRescan is the least time between two walks of the hierarchy:
	// ids not found stay unknown until then. A walk that takes long (a
	// host with thousands of cgroups) waits scanShare times its own
	// duration, so that walking costs the caller at most 1/scanShare of
	// its time however many unknown ids it meets.
	MinRescan time.Duration
	// MaxEntries bounds the paths kept (and the walk).
	MaxEntries int

	mu sync.Mutex
	// cgroups by id, each parsed once, when first found.
	paths   map[uint64]*entry
	tick    uint64    // counts lookups and walks, for entry.used and entry.walk
	next    time.Time // no walk on a miss before then
	scans   int
	walkErr error
	evicted int
	handles handleOpener
}

// entry is a kept cgroup: its path's Info, when it was last named and
// the walk that last found it.
type entry struct {
	info       Info
	used, walk uint64
}

// scanShare bounds the time spent walking: see MinRescan.
const scanShare = 20

// NewResolver returns a resolver of the hierarchy mounted at root.
func NewResolver(root string) *Resolver {
	return &Resolver{root: root, MinRescan: 200 * time.Millisecond, MaxEntries: 1 << 16, paths: map[uint64]*entry{}}
}

// Path returns the path of cgroup id, relative to the mount ("/" for the
// mount's root); ok is false when it is not found.
func (r *Resolver) Path(id uint64) (string, bool) {
	info := r.Resolve(id)
	return info.Path, info.Path != ""
}

// Resolve returns what the cgroup id's path tells (Parse); only Path when
// the path has no known shape, nothing when the id is not found.
func (r *Resolver) Resolve(id uint64) Info {
	if r == nil || id == 0 {
		return Info{}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tick++
	if e, ok := r.paths[id]; ok {
		e.used = r.tick
		return e.info
	}
	// A walk when one is due, as without handles: it also keeps the
	// cgroups that exist now and whose ids come later, in records of
	// sockets that outlive them.
	if !time.Now().Before(r.next) {
		r.scan()
		if e, ok := r.paths[id]; ok {
			return e.info
		}
	}
	if path, ok := r.handles.path(r.root, id); ok {
		r.add(id, path)
	}
	return r.lookup(id)
}

// lookup is what is kept of id; r.mu is held.
func (r *Resolver) lookup(id uint64) Info {
	if e, ok := r.paths[id]; ok {
		return e.info
	}
	return Info{}
}

// Err is the error of the last walk that failed, if any; else, once the
// table was full, how many paths made room for others.
func (r *Resolver) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.walkErr == nil && r.evicted > 0 {
		return fmt.Errorf("%w: %d cgroup paths forgotten to keep %d", errFull, r.evicted, r.MaxEntries)
	}
	return r.walkErr
}

// Scans counts the walks of the hierarchy so far.
func (r *Resolver) Scans() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.scans
}

// Refresh walks the hierarchy now: cgroups that are about to go (a test,
// a short-lived container) are then named even if their id is first
// looked up after they are removed.
func (r *Resolver) Refresh() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.scan()
}

// errFull says the table was full.
var errFull = errors.New("cgroup table full")

// scan walks the hierarchy, adding what it finds; r.mu is held.
func (r *Resolver) scan() {
	start := time.Now()
	defer func() { r.next = start.Add(max(r.MinRescan, scanShare*time.Since(start))) }()
	r.scans++
	r.tick++
	var st unix.Stat_t
	if err := unix.Stat(r.root, &st); err != nil {
		r.walkErr = fmt.Errorf("reading %s: %w", r.root, err)
		return
	}
	r.add(st.Ino, "/")
	buf := make([]byte, 32<<10)
	if err := r.walk(r.root, "", buf); err != nil {
		r.walkErr = fmt.Errorf("walking %s: %w", r.root, err)
	}
}

// add keeps a path, found by the walk at r.tick or just named; a full
// table makes room first (evict).
func (r *Resolver) add(ino uint64, path string) {
	if e, known := r.paths[ino]; known {
		e.walk = r.tick
		return
	}
	if len(r.paths) >= r.MaxEntries {
		r.evict()
	}
	r.paths[ino] = &entry{info: Parse(path), used: r.tick, walk: r.tick}
}

// evict drops an eighth of MaxEntries (at least one), those least recently
// named or found first: a cgroup the latest walk did not find is gone, and
// kept only for the records that may still name it.
func (r *Resolver) evict() {
	type aged struct {
		id   uint64
		last uint64
	}
	all := make([]aged, 0, len(r.paths))
	for id, e := range r.paths {
		all = append(all, aged{id, max(e.used, e.walk)})
	}
	slices.SortFunc(all, func(a, b aged) int { return cmp.Compare(a.last, b.last) })
	n := max(1, r.MaxEntries/8)
	for _, a := range all[:min(n, len(all))] {
		delete(r.paths, a.id)
	}
	r.evicted += min(n, len(all))
}

// walk adds the cgroups below dir (rel below the mount). It reads the
// directory entries' inode numbers as getdents returns them, without a
// stat per cgroup: a cgroup directory holds dozens of files, and a walk of
// a thousand cgroups through filepath.WalkDir and a stat each took 31 ms
// against 17 ms (BenchmarkScanCgroupfs).
func (r *Resolver) walk(dir, rel string, buf []byte) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil // removed since it was listed
	}
	if err != nil {
		return fmt.Errorf("opening %s: %w", dir, err)
	}
	var subdirs []string
	for {
		n, err := unix.ReadDirent(fd, buf)
		if err != nil {
			unix.Close(fd)
			return fmt.Errorf("reading %s: %w", dir, err)
		}
		if n <= 0 {
			break
		}
		for b := buf[:n]; len(b) > 0; {
			ino, typ, name, reclen := dirent(b)
			if reclen == 0 || reclen > len(b) {
				break
			}
			b = b[reclen:]
			if typ != unix.DT_DIR || name == "." || name == ".." {
				continue
			}
			r.add(ino, rel+"/"+name)
			subdirs = append(subdirs, name)
		}
	}
	unix.Close(fd)
	for _, name := range subdirs {
		if err := r.walk(dir+"/"+name, rel+"/"+name, buf); err != nil {
			return err
		}
	}
	return nil
}

// dirent reads one struct linux_dirent64: d_ino, d_off, d_reclen,
// d_type, then the NUL-terminated name.
func dirent(b []byte) (ino uint64, typ uint8, name string, reclen int) {
	const nameOff = 19
	if len(b) < nameOff {
		return 0, 0, "", 0
	}
	ino = binary.NativeEndian.Uint64(b[0:8])
	reclen = int(binary.NativeEndian.Uint16(b[16:18]))
	typ = b[18]
	if reclen < nameOff || reclen > len(b) {
		return 0, 0, "", 0
	}
	nb := b[nameOff:reclen]
	if i := bytes.IndexByte(nb, 0); i >= 0 {
		nb = nb[:i]
	}
	return ino, typ, string(nb), reclen
}
