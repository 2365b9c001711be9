package cgroups

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
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

// mountIn finds the first cgroup2 mount in a mountinfo listing.
func mountIn(r io.Reader) (string, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		// id parent dev root mountpoint options [optional...] - fstype source super
		fields := strings.Fields(sc.Text())
		for i, f := range fields {
			if f == "-" && i+1 < len(fields) && i >= 4 {
				if fields[i+1] == "cgroup2" {
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
// kernel is the inode number whole). The resolver walks the hierarchy
// when it meets an id it does not know, at most once per MinRescan, and
// keeps every path it has seen, so that a cgroup removed after it was seen
// (a container that exited) keeps its name. Safe for concurrent use.
type Resolver struct {
	root string
	// MinRescan is the least time between two walks of the hierarchy:
	// ids not found stay unknown until then.
	MinRescan time.Duration
	// MaxEntries bounds the paths kept (and the walk).
	MaxEntries int

	mu      sync.Mutex
	paths   map[uint64]string
	scanned time.Time
	scans   int
	walkErr error
}

// NewResolver returns a resolver of the hierarchy mounted at root.
func NewResolver(root string) *Resolver {
	return &Resolver{root: root, MinRescan: 200 * time.Millisecond, MaxEntries: 1 << 16, paths: map[uint64]string{}}
}

// Root is the mount the resolver walks.
func (r *Resolver) Root() string { return r.root }

// Path returns the path of cgroup id, relative to the mount ("/" for the
// mount's root); ok is false when it is not found.
func (r *Resolver) Path(id uint64) (string, bool) {
	if r == nil || id == 0 {
		return "", false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.paths[id]; ok {
		return p, true
	}
	if !r.scanned.IsZero() && time.Since(r.scanned) < r.MinRescan {
		return "", false
	}
	r.scan()
	p, ok := r.paths[id]
	return p, ok
}

// Resolve returns what the cgroup id's path tells; only Path when the
// path has no known shape, nothing when the id is not found.
func (r *Resolver) Resolve(id uint64) Info {
	p, ok := r.Path(id)
	if !ok {
		return Info{}
	}
	return Parse(p)
}

// Err is the error of the last walk that failed, if any.
func (r *Resolver) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
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

// errFull stops a walk once MaxEntries paths are kept.
var errFull = errors.New("cgroup table full")

// scan walks the hierarchy, adding what it finds; r.mu is held.
func (r *Resolver) scan() {
	r.scanned = time.Now()
	r.scans++
	err := filepath.WalkDir(r.root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			// A cgroup removed during the walk: skip it.
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil // removed since it was listed
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("reading the inode of %s: no stat data", path)
		}
		if _, known := r.paths[st.Ino]; !known {
			if len(r.paths) >= r.MaxEntries {
				return errFull
			}
			r.paths[st.Ino] = relPath(r.root, path)
		}
		return nil
	})
	if err != nil && !errors.Is(err, errFull) {
		r.walkErr = fmt.Errorf("walking %s: %w", r.root, err)
	}
}

// relPath is path below root, with a leading "/".
func relPath(root, path string) string {
	rel, err := filepath.Rel(root, path)
	if err != nil || rel == "." {
		return "/"
	}
	return "/" + filepath.ToSlash(rel)
}
