package netns

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Existing is a namespace that was alive when a census was taken.
type Existing struct {
	// Cookie is the namespace's SO_NETNS_COOKIE, 0 if it could not be
	// read. Unlike the inode, which the kernel hands out again once a
	// namespace is freed (proc_alloc_inum), a cookie is never reused.
	Cookie   uint64
	Counters Counters
}

// Census reads the cookie and counters of every network namespace that a
// bind mount in /run/netns, a task or a task's open descriptor holds now
// (one pass over /proc, as Find makes for one namespace). A namespace
// held only by sockets is not found. Each namespace found costs one entry
// into it.
func Census() map[uint32]Existing {
	paths := namespacePaths()
	mounts, _ := filepath.Glob("/run/netns/*")
	out := make(map[uint32]Existing, len(paths)+len(mounts))
	for _, m := range mounts {
		censusOf(out, m, 0)
	}
	for ino, path := range paths {
		censusOf(out, path, ino)
	}
	return out
}

// namespacePaths finds a path to every network namespace a task is in or a
// file descriptor holds, by inode.
func namespacePaths() map[uint32]string {
	paths := map[uint32]string{}
	add := func(path string) {
		l, err := os.Readlink(path)
		if err != nil {
			return
		}
		ino, ok := strings.CutPrefix(l, "net:[")
		if !ok {
			return
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(ino, "]"), 10, 32)
		if err != nil {
			return
		}
		if _, seen := paths[uint32(n)]; !seen {
			paths[uint32(n)] = path
		}
	}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		if _, err := strconv.Atoi(p.Name()); err != nil {
			continue
		}
		base := "/proc/" + p.Name()
		tasks, _ := os.ReadDir(base + "/task")
		for _, t := range tasks {
			add(base + "/task/" + t.Name() + "/ns/net")
		}
		fds, _ := os.ReadDir(base + "/fd")
		for _, f := range fds {
			add(base + "/fd/" + f.Name())
		}
	}
	return paths
}

// censusOf reads the namespace at path into out, unless it is known
// already or is no longer the one wanted (want 0: any).
func censusOf(out map[uint32]Existing, path string, want uint32) {
	ns, err := open(path)
	if err != nil {
		return
	}
	defer ns.Close()
	if want != 0 && ns.Inode != want {
		return // the task moved or exited meanwhile
	}
	if _, done := out[ns.Inode]; done {
		return
	}
	var e Existing
	if ns.Do(func() (err error) {
		e.Cookie, _ = cookieHere()
		e.Counters, err = ReadCounters()
		return err
	}) == nil {
		out[ns.Inode] = e
	}
}

// OpenPID opens the network namespace of process pid if it is the one
// with this inode.
func OpenPID(pid, inode uint32) (*NS, error) {
	ns, err := open(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		return nil, err
	}
	if ns.Inode != inode {
		ns.Close()
		return nil, fmt.Errorf("process %d is in network namespace %d, not %d", pid, ns.Inode, inode)
	}
	return ns, nil
}

// Cookie returns the namespace's SO_NETNS_COOKIE (Linux 5.14+).
func (n *NS) Cookie() (uint64, error) {
	var c uint64
	err := n.Do(func() (err error) {
		c, err = cookieHere()
		return err
	})
	return c, err
}

func cookieHere() (uint64, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("opening a socket: %w", err)
	}
	defer unix.Close(fd)
	v, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	if err != nil {
		return 0, fmt.Errorf("reading SO_NETNS_COOKIE: %w", err)
	}
	return v, nil
}

// Sample is one reading of a namespace.
type Sample struct {
	Counters  Counters // all of them, when asked for
	Listen    ListenCounters
	Listeners []Socket // when asked for
}

// Sample reads, in one entry into the namespace, its ListenOverflows and
// ListenDrops, and when asked for, all its counters and its listening
// sockets with their accept queues (one sock_diag dump per family).
func (n *NS) Sample(counters, listeners bool) (Sample, error) {
	var s Sample
	err := n.Do(func() (err error) {
		if counters {
			if s.Counters, err = ReadCounters(); err != nil {
				return err
			}
			s.Listen = ListenCounters{Overflows: s.Counters["TcpExt.ListenOverflows"], Drops: s.Counters["TcpExt.ListenDrops"]}
		} else if s.Listen, err = readListenCounters(); err != nil {
			return err
		}
		if !listeners {
			return nil
		}
		for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
			l, err := dumpTCP(family, tcpListen)
			if err != nil {
				return err
			}
			s.Listeners = append(s.Listeners, l...)
		}
		return nil
	})
	return s, err
}
