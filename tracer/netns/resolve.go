package netns

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// firstInode is the lowest inode the kernel gives a namespace: they come
// from proc_alloc_inum(), from PROC_DYNAMIC_FIRST (fs/proc/generic.c) up.
// A number below it is a process id: pid_max is at most 2^22.
const firstInode = 0xF0000000

// Resolve finds the inode of the network namespace s names: an inode
// (as ls -L -i /proc/PID/ns/net prints), a process id (the namespace
// that process is in), a namespace file (/proc/PID/ns/net, a bind mount
// such as /run/netns/NAME) or the NAME of one that ip netns made.
func Resolve(s string) (uint32, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseUint(s, 10, 64); err == nil {
		switch {
		case n == 0 || n > 1<<32-1:
			return 0, errors.New("not a namespace inode or a process id")
		case n >= firstInode:
			return uint32(n), nil
		}
		return inodeOf(fmt.Sprintf("/proc/%d/ns/net", n), "process "+s)
	}
	if strings.Contains(s, "/") {
		return inodeOf(s, s)
	}
	if s == "" || s == "." || s == ".." {
		return 0, errors.New("not a namespace name, file, inode or process id")
	}
	return inodeOf(filepath.Join("/run/netns", s), "ip netns "+s)
}

// inodeOf opens a namespace file and checks it is a network namespace.
func inodeOf(path, what string) (uint32, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	defer unix.Close(fd)
	typ, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE)
	switch {
	case errors.Is(err, unix.ENOTTY):
		return 0, fmt.Errorf("%s: %s is not a namespace file", what, path)
	case err != nil:
		return 0, fmt.Errorf("%s: reading the namespace type of %s: %w", what, path, err)
	case typ != unix.CLONE_NEWNET:
		return 0, fmt.Errorf("%s: %s is not a network namespace", what, path)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	return uint32(st.Ino), nil
}
