package main

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// TestChildPIDs: /proc/PID/task/TID/children and the /proc/*/stat scan
// used without CONFIG_PROC_CHILDREN find the same children, and descendants
// goes below them.
func TestChildPIDs(t *testing.T) {
	if !procChildren() {
		t.Skip("no /proc/PID/task/TID/children (CONFIG_PROC_CHILDREN)")
	}
	// sh's child sleep: a grandchild of the test.
	cmd := exec.Command("sh", "-c", "sleep 30 & echo $!; wait")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var grandchild int
	if _, err := fmt.Fscan(out, &grandchild); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Kill(grandchild, unix.SIGKILL) })
	self := os.Getpid()
	if kids, scanned := childPIDs(self), scanChildren(self); !slices.Contains(kids, cmd.Process.Pid) || !slices.Contains(scanned, cmd.Process.Pid) {
		t.Errorf("children of the test: %v from task/*/children, %v from the stat scan; want both to hold %d", kids, scanned, cmd.Process.Pid)
	}
	if got := scanChildren(cmd.Process.Pid); !slices.Equal(got, []int{grandchild}) {
		t.Errorf("stat scan: children of sh %v, want [%d]", got, grandchild)
	}
	if got := descendants(self); !slices.Contains(got, cmd.Process.Pid) || !slices.Contains(got, grandchild) {
		t.Errorf("descendants of the test %v, want sh %d and its sleep %d", got, cmd.Process.Pid, grandchild)
	}
}
