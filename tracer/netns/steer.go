package netns

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// SteerLoopback sets receive packet steering on the namespace's loopback
// to the CPUs of mask (hex, as in rps_cpus): a packet sent on one CPU is
// then received in a softirq on another, raised there by an
// inter-processor interrupt that can land in the middle of whatever runs
// on it. The device's queues are only visible in a sysfs mounted from
// inside the namespace, so one is mounted in a private mount namespace, on
// a thread the runtime discards afterwards; the host's mounts are untouched.
func (n *NS) SteerLoopback(mask string) error {
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread ends with the goroutine, and its
		// namespaces with it.
		runtime.LockOSThread()
		errc <- n.steer(mask)
	}()
	return <-errc
}

func (n *NS) steer(mask string) error {
	if err := unix.Unshare(unix.CLONE_FS | unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("unsharing mount namespace: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return fmt.Errorf("making mounts private: %w", err)
	}
	if err := unix.Setns(n.fd, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("entering network namespace: %w", err)
	}
	dir, err := os.MkdirTemp("", "tcpscope-sysfs-")
	if err != nil {
		return fmt.Errorf("creating mount point: %w", err)
	}
	defer os.Remove(dir)
	if err := unix.Mount("sysfs", dir, "sysfs", 0, ""); err != nil {
		return fmt.Errorf("mounting sysfs: %w", err)
	}
	defer unix.Unmount(dir, unix.MNT_DETACH)
	if err := os.WriteFile(filepath.Join(dir, "class/net/lo/queues/rx-0/rps_cpus"), []byte(mask), 0); err != nil {
		return fmt.Errorf("setting loopback steering: %w", err)
	}
	return nil
}
