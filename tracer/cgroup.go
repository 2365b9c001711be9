package tracer

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/tcpscope/tcpscope/tracer/cgroups"
)

// ErrNoCgroup2 is returned when no cgroup v2 hierarchy is mounted.
var ErrNoCgroup2 = cgroups.ErrNoCgroup2

// CgroupMount is where the cgroup v2 hierarchy is mounted: /sys/fs/cgroup
// on a unified host, /sys/fs/cgroup/unified on a hybrid one.
func CgroupMount() (string, error) { return cgroups.FindMount() }

// initCgroupNS is the inode of the initial cgroup namespace
// (PROC_CGROUP_INIT_INO, include/linux/proc_ns.h).
const initCgroupNS = 0xEFFFFFFB

// CgroupFilter keeps the sockets whose owner's cgroup is ID or below it:
// the kernel compares the socket's cgroup's ancestor at Level with ID.
type CgroupFilter struct {
	Path  string // the directory, under the cgroup2 mount
	ID    uint64 // its inode number: the cgroup id
	Level uint32 // its depth below the hierarchy's root (the root is 0)
}

// ResolveCgroup finds the cgroup v2 directory a --cgroup value names: a
// directory under the cgroup2 mount (/sys/fs/cgroup/unified/system.slice),
// or a path within the hierarchy as /proc/PID/cgroup shows it
// (/system.slice/nginx.service).
//
// The kernel counts a cgroup's level from the hierarchy's true root, and
// the mount shows that root only in the initial cgroup namespace: inside
// another one (a container) the levels cannot be known, and this fails.
func ResolveCgroup(path string) (CgroupFilter, error) {
	mount, err := CgroupMount()
	if err != nil {
		return CgroupFilter{}, err
	}
	var ns unix.Stat_t
	if err := unix.Stat("/proc/self/ns/cgroup", &ns); err != nil {
		return CgroupFilter{}, fmt.Errorf("reading the cgroup namespace: %w", err)
	}
	if ns.Ino != initCgroupNS {
		return CgroupFilter{}, errors.New("inside a cgroup namespace the hierarchy's root is hidden: run tcpscope in the host's")
	}
	dir := filepath.Clean(path)
	if !isUnder(dir, mount) {
		dir = filepath.Join(mount, dir)
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return CgroupFilter{}, fmt.Errorf("finding cgroup %s under %s: %w", path, mount, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return CgroupFilter{}, fmt.Errorf("%s is not a cgroup directory", dir)
	}
	rel, err := filepath.Rel(mount, dir)
	if err != nil {
		return CgroupFilter{}, fmt.Errorf("placing %s under %s: %w", dir, mount, err)
	}
	level := uint32(0)
	if rel != "." {
		level = uint32(strings.Count(rel, "/") + 1)
	}
	return CgroupFilter{Path: dir, ID: st.Ino, Level: level}, nil
}

// isUnder tells whether path is dir or below it.
func isUnder(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, strings.TrimSuffix(dir, "/")+"/")
}
