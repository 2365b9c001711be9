package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// When tcpscope stops CMD it stops CMD's whole process tree, not just CMD:
// a wrapper script killed with SIGKILL would otherwise leave the tool it
// started running, reparented to init. The mechanism:
//
//   - `run` makes tcpscope a child subreaper (prctl(2) PR_SET_CHILD_SUBREAPER,
//     set before CMD starts): a process orphaned anywhere below CMD is
//     reparented to tcpscope instead of init (the kernel's find_new_reaper()
//     picks the nearest ancestor marked is_child_subreaper), so it stays
//     findable once CMD is gone.
//   - Each stopping signal (the SIGINT of --duration, the second interrupt,
//     the SIGKILL after the grace period) goes to CMD and to its descendants
//     as they are at that moment, found by walking down from tcpscope
//     through /proc/PID/task/TID/children (one file per thread: a child
//     belongs to the thread that forked it, and an orphan to whichever
//     thread of the subreaper find_new_reaper() chose). That file exists
//     only with CONFIG_PROC_CHILDREN (set on this kernel: /proc/thread-self/
//     children is there); without it the tree is rebuilt from the ppid field
//     of every /proc/PID/stat.
//   - Once CMD is gone, processes still reparented to tcpscope (its own
//     children other than CMD, from /proc/self/task/*/children) have what is
//     left of the grace period to exit, then get SIGKILL, and tcpscope reaps
//     them with wait4 on their own pids (never wait4(-1), which could reap
//     CMD before os/exec's Wait does), for a bounded time, before it exits.
//
// None of this happens when CMD exits by itself: a script may leave a daemon
// behind on purpose, and tcpscope leaves it alone (still reparented to
// tcpscope, it passes on to init when tcpscope exits).

// becomeSubreaper makes tcpscope the reaper of CMD's orphans (see above).
func becomeSubreaper() error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("becoming a child subreaper: %w", err)
	}
	return nil
}

// procChildren tells whether /proc/PID/task/TID/children exists here.
var procChildren = sync.OnceValue(func() bool {
	_, err := os.Stat("/proc/thread-self/children")
	return err == nil
})

// childPIDs lists pid's children (all of its threads').
func childPIDs(pid int) []int {
	if !procChildren() {
		return scanChildren(pid)
	}
	files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var kids []int
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // the thread or the process is gone
		}
		for _, field := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(field); err == nil {
				kids = append(kids, n)
			}
		}
	}
	return kids
}

// scanChildren is childPIDs without CONFIG_PROC_CHILDREN: every process
// whose /proc/PID/stat names pid as its parent.
func scanChildren(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var kids []int
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// "pid (comm) state ppid ...": comm may hold spaces and parentheses.
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i >= 0 {
			f := strings.Fields(s[i+1:])
			if len(f) > 1 && f[1] == strconv.Itoa(pid) {
				kids = append(kids, n)
			}
		}
	}
	return kids
}

// descendants lists the processes below each of roots (not roots), parents
// before their children; bounded, should pids be reused in a loop.
func descendants(roots ...int) []int {
	seen := map[int]bool{}
	for _, r := range roots {
		seen[r] = true
	}
	var out []int
	queue := append([]int(nil), roots...)
	for len(queue) > 0 && len(out) < 100000 {
		pid := queue[0]
		queue = queue[1:]
		for _, c := range childPIDs(pid) {
			if !seen[c] {
				seen[c] = true
				out = append(out, c)
				queue = append(queue, c)
			}
		}
	}
	return out
}

// signalTree sends sig to every process in CMD's tree but CMD itself (that
// one is signalled through os.Process, whose pidfd cannot hit a reused
// pid), except those in process group skipGroup (when not 0), which
// already got it. The tree is taken from tcpscope down: CMD is tcpscope's
// only child, the others are orphans from CMD's tree, and a walk from
// tcpscope's pid cannot stray into another process's tree should CMD's pid
// be reaped and reused meanwhile.
func signalTree(cmd int, sig unix.Signal, skipGroup int) {
	for _, d := range descendants(os.Getpid()) {
		if d == cmd {
			continue
		}
		if skipGroup != 0 {
			if g, err := unix.Getpgid(d); err == nil && g == skipGroup {
				continue
			}
		}
		unix.Kill(d, sig)
	}
}

// orphans lists tcpscope's children other than CMD: processes from CMD's
// tree reparented to tcpscope.
func orphans(cmd int) []int {
	var out []int
	for _, c := range childPIDs(os.Getpid()) {
		if c != cmd {
			out = append(out, c)
		}
	}
	return out
}

// reapOrphans runs once CMD (called name) is gone after tcpscope stopped
// it: the orphans left from CMD's tree have until killAt to exit, then they (and their own
// children) get SIGKILL; it reaps them all, for at most reapBound after
// killAt, and reports on stderr any it could not.
func reapOrphans(cmd int, name string, killAt time.Time, report func(format string, args ...any)) {
	const reapBound = 2 * time.Second
	if now := time.Now(); killAt.Before(now) {
		killAt = now
	}
	killed := false
	for {
		left := orphans(cmd)
		for _, pid := range left {
			var ws unix.WaitStatus
			// On this pid only: WNOHANG, so one stuck in the kernel does
			// not hold tcpscope.
			unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		}
		left = orphans(cmd) // the reaped ones, and any newly reparented
		if len(left) == 0 {
			return
		}
		now := time.Now()
		if !now.Before(killAt) {
			if !killed {
				killed = true
				report("%s left %d process(es) running after the stop: killing them (pids %v)", name, len(left), left)
			}
			for _, pid := range append(left, descendants(left...)...) {
				unix.Kill(pid, unix.SIGKILL)
			}
		}
		if now.After(killAt.Add(reapBound)) {
			report("processes %s left are still not gone: pids %v", name, left)
			return
		}
		// Polled: a subreaper gets no notice other than SIGCHLD, which
		// os/exec's own Wait does not need and Go does not deliver unless
		// asked for.
		time.Sleep(10 * time.Millisecond)
	}
}
