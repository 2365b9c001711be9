package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// processCPU is the CPU time (user + system, every thread) process pid has
// used so far, in nanoseconds: its process CPU clock, as
// clock_getcpuclockid(3) makes it. /proc/PID/stat counts in 10 ms ticks,
// too coarse for a leg of a few seconds.
func processCPU(pid int) (time.Duration, error) {
	clock := int32(^uint32(pid))<<3 | 2 // CPUCLOCK_SCHED of the whole process
	var ts unix.Timespec
	if err := unix.ClockGettime(clock, &ts); err != nil {
		return 0, fmt.Errorf("reading CPU clock of %d: %w", pid, err)
	}
	return time.Duration(ts.Nano()), nil
}

// machineTicks are the busy and all ticks of every CPU from /proc/stat.
// Steal is neither: it is the host's, not this machine's work.
type machineTicks struct{ busy, all uint64 }

func readMachineTicks() (machineTicks, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machineTicks{}, fmt.Errorf("reading /proc/stat: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return machineTicks{}, fmt.Errorf("parsing /proc/stat: %q", line)
	}
	var t machineTicks
	for i, s := range f[1:9] { // user nice system idle iowait irq softirq steal
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return machineTicks{}, fmt.Errorf("parsing /proc/stat: %w", err)
		}
		switch i {
		case 3, 4:
			t.all += v
		case 7:
		default:
			t.busy += v
			t.all += v
		}
	}
	return t, nil
}

// ticks per second in /proc/stat (USER_HZ, 100 on Linux everywhere).
const userHZ = 100

// rssBytes is process pid's resident memory (VmRSS).
func rssBytes(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("reading memory of %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parsing VmRSS of %d: %w", pid, err)
			}
			return kib * 1024, nil
		}
	}
	return 0, fmt.Errorf("reading memory of %d: no VmRSS", pid)
}

// waitingInPoll tells whether process pid's main thread is blocked in
// epoll_wait, epoll_pwait(2), poll or ppoll: a libbpf tool gets there
// once its programs are attached and its buffers are open.
func waitingInPoll(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/syscall", pid))
	if err != nil {
		return false
	}
	nr, _, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
	n, err := strconv.Atoi(nr) // "running" while it runs
	return err == nil && pollSyscalls[n]
}

// pollSyscalls are the waits of every architecture; amd64 adds its own.
var pollSyscalls = map[int]bool{unix.SYS_EPOLL_PWAIT: true, unix.SYS_EPOLL_PWAIT2: true, unix.SYS_PPOLL: true}
