// Package netns creates private network namespaces and runs code inside
// them: tcpscope's demo and tests drive traffic, drop packets and change
// sysctls there, never in the host's namespace.
package netns

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// NS is a private network namespace with its loopback up. It lives until
// the test ends and every socket made in it is closed.
type NS struct {
	fd    int
	Inode uint32
}

// Create makes a namespace with its loopback up. Close it when done.
func Create() (*NS, error) {
	ch := make(chan struct {
		ns  *NS
		err error
	}, 1)
	go func() {
		// This goroutine's thread enters the new namespace; if it cannot
		// return to the original one it stays locked, so the runtime
		// discards the thread instead of reusing it.
		runtime.LockOSThread()
		ns, restored, err := create()
		if restored {
			runtime.UnlockOSThread()
		}
		ch <- struct {
			ns  *NS
			err error
		}{ns, err}
	}()
	r := <-ch
	if r.err != nil {
		return nil, r.err
	}
	if err := r.ns.Do(loopbackUp); err != nil {
		r.ns.Close()
		return nil, fmt.Errorf("bringing lo up: %w", err)
	}
	return r.ns, nil
}

func create() (ns *NS, restored bool, err error) {
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, true, fmt.Errorf("opening current network namespace: %w", err)
	}
	defer unix.Close(orig)
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return nil, true, fmt.Errorf("unsharing network namespace: %w", err)
	}
	fd, openErr := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
		if openErr == nil {
			unix.Close(fd)
		}
		return nil, false, fmt.Errorf("returning to the original network namespace: %w", err)
	}
	if openErr != nil {
		return nil, true, fmt.Errorf("opening new network namespace: %w", openErr)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, true, fmt.Errorf("reading namespace inode: %w", err)
	}
	return &NS{fd: fd, Inode: uint32(st.Ino)}, true, nil
}

// Fd is the namespace's file descriptor (for netlink sockets).
func (n *NS) Fd() int { return n.fd }

// Close drops this handle; the kernel frees the namespace once no socket
// or process uses it.
func (n *NS) Close() error {
	if n.fd < 0 {
		return nil
	}
	err := unix.Close(n.fd)
	n.fd = -1
	return err
}

// Do runs fn on an OS thread inside the namespace. Sockets fn creates stay
// in the namespace and may be used from any goroutine afterwards.
func (n *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("opening current network namespace: %w", err)
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(n.fd, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("entering network namespace: %w", err)
			return
		}
		fnErr := fn()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: the runtime will kill it.
			errc <- errors.Join(fnErr, fmt.Errorf("leaving network namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- fnErr
	}()
	return <-errc
}

func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// Sysctl sets /proc/sys/<name> (dots or slashes) inside the namespace.
// Only per-namespace net.* settings may be set this way.
func (n *NS) Sysctl(name, value string) error {
	if !strings.HasPrefix(name, "net.") && !strings.HasPrefix(name, "net/") {
		return fmt.Errorf("sysctl %s: only net.* settings are per namespace", name)
	}
	path := "/proc/sys/" + strings.ReplaceAll(name, ".", "/")
	return n.Do(func() error {
		// /proc/sys/net resolves against the opening thread's namespace.
		return os.WriteFile(path, []byte(value), 0)
	})
}

// ReadSysctl reads a net.* sysctl inside the namespace.
func (n *NS) ReadSysctl(name string) (string, error) {
	path := "/proc/sys/" + strings.ReplaceAll(name, ".", "/")
	var out string
	err := n.Do(func() error {
		b, err := os.ReadFile(path)
		out = strings.TrimSpace(string(b))
		return err
	})
	return out, err
}
