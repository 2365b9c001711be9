package netns

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Self returns the calling thread's network namespace.
func Self() (*NS, error) {
	return open("/proc/thread-self/ns/net")
}

func open(path string) (*NS, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &NS{fd: fd, Inode: uint32(st.Ino)}, nil
}

// Find opens the network namespace with this inode through anything that
// holds it: a bind mount in /run/netns, a process or thread in it, or an
// open namespace file descriptor.
func Find(inode uint32) (*NS, error) {
	want := fmt.Sprintf("net:[%d]", inode)
	try := func(path string) *NS {
		if l, err := os.Readlink(path); err != nil || l != want {
			return nil
		}
		ns, err := open(path)
		if err != nil || ns.Inode != inode {
			if ns != nil {
				ns.Close()
			}
			return nil
		}
		return ns
	}
	if mounts, _ := filepath.Glob("/run/netns/*"); len(mounts) > 0 {
		for _, m := range mounts {
			if ns, err := open(m); err == nil {
				if ns.Inode == inode {
					return ns, nil
				}
				ns.Close()
			}
		}
	}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		if _, err := strconv.Atoi(p.Name()); err != nil {
			continue
		}
		base := "/proc/" + p.Name()
		if ns := try(base + "/ns/net"); ns != nil {
			return ns, nil
		}
		tasks, _ := os.ReadDir(base + "/task")
		for _, t := range tasks {
			if ns := try(base + "/task/" + t.Name() + "/ns/net"); ns != nil {
				return ns, nil
			}
		}
		fds, _ := os.ReadDir(base + "/fd")
		for _, f := range fds {
			if ns := try(base + "/fd/" + f.Name()); ns != nil {
				return ns, nil
			}
		}
	}
	return nil, fmt.Errorf("network namespace %d: no process, mount or descriptor holds it", inode)
}

// PortRange returns the namespace's ip_local_port_range.
func (n *NS) PortRange() (lo, hi int, err error) {
	v, err := n.ReadSysctl("net.ipv4.ip_local_port_range")
	if err != nil {
		return 0, 0, err
	}
	f := strings.Fields(v)
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("ip_local_port_range %q", v)
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || hi < lo {
		return 0, 0, fmt.Errorf("ip_local_port_range %q", v)
	}
	return lo, hi, nil
}
