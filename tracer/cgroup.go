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
	inside, err := InCgroupNamespace()
	if err != nil {
		return CgroupFilter{}, err
	}
	if inside {
		return CgroupFilter{}, errors.New("inside a cgroup namespace the hierarchy's root is hidden: run tcpscope in the host's")
	}
	dir, st, err := cgroupDir(path, mount)
	if err != nil {
		return CgroupFilter{}, err
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

// cgroupDir finds the directory path names under the cgroup2 mount: it
// must stay below the mount (no ".." out of it) and be a directory of the
// cgroup2 file system (not another hierarchy reached through a symlink).
func cgroupDir(path, mount string) (string, unix.Stat_t, error) {
	var st unix.Stat_t
	dir := filepath.Clean(path)
	if !isUnder(dir, mount) {
		dir = filepath.Join(mount, dir)
	}
	if !isUnder(dir, mount) {
		return "", st, fmt.Errorf("%s is outside the cgroup v2 hierarchy at %s", path, mount)
	}
	if err := unix.Stat(dir, &st); err != nil {
		return "", st, fmt.Errorf("finding cgroup %s under %s: %w", path, mount, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return "", st, fmt.Errorf("%s is not a cgroup directory", dir)
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return "", st, fmt.Errorf("reading the file system of %s: %w", dir, err)
	}
	if fs.Type != unix.CGROUP2_SUPER_MAGIC {
		return "", st, fmt.Errorf("%s is not in the cgroup v2 file system", dir)
	}
	return dir, st, nil
}

// InCgroupNamespace tells whether this process is in a cgroup namespace
// other than the initial one (a container's): its cgroup2 mount shows the
// namespace's root, so cgroups outside it cannot be named and levels
// cannot be counted from the hierarchy's root.
func InCgroupNamespace() (bool, error) {
	var ns unix.Stat_t
	if err := unix.Stat("/proc/self/ns/cgroup", &ns); err != nil {
		return false, fmt.Errorf("reading the cgroup namespace: %w", err)
	}
	return ns.Ino != initCgroupNS, nil
}

// isUnder tells whether path is dir or below it.
func isUnder(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, strings.TrimSuffix(dir, "/")+"/")
}
