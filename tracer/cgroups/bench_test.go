package cgroups

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkParse: one Kubernetes path, the longest shape.
func BenchmarkParse(b *testing.B) {
	p := "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + podU + ".slice/cri-containerd-" + id64 + ".scope"
	for b.Loop() {
		Parse(p)
	}
}

// BenchmarkScan walks a hierarchy of 1,000 cgroups (100 pods of 9
// containers, on tmpfs): what a miss costs at most once per MinRescan.
func BenchmarkScan(b *testing.B) {
	root := b.TempDir()
	for p := 0; p < 100; p++ {
		for c := 0; c < 9; c++ {
			dir := filepath.Join(root, fmt.Sprintf("pod%d", p), fmt.Sprintf("c%d", c))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				b.Fatal(err)
			}
		}
	}
	r := NewResolver(root)
	for b.Loop() {
		r.Refresh()
	}
	b.ReportMetric(float64(len(r.paths)), "cgroups")
}

// BenchmarkHit is the cost of an id already known.
func BenchmarkHit(b *testing.B) {
	root := b.TempDir()
	r := NewResolver(root)
	r.Refresh()
	var id uint64
	for k := range r.paths {
		id = k
	}
	for b.Loop() {
		r.Path(id)
	}
}

// BenchmarkScanCgroupfs is BenchmarkScan on the real cgroup2 file system
// (root: it makes 1,000 cgroups below one of its own and removes them).
func BenchmarkScanCgroupfs(b *testing.B) {
	mount, err := FindMount()
	if err != nil || os.Geteuid() != 0 {
		b.Skip("needs root and cgroup v2")
	}
	top := filepath.Join(mount, fmt.Sprintf("tcpscope-bench-%d", os.Getpid()))
	var dirs []string
	b.Cleanup(func() {
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := os.Remove(dirs[i]); err != nil {
				b.Errorf("removing %s: %v", dirs[i], err)
			}
		}
	})
	mk := func(dir string) {
		if err := os.Mkdir(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		dirs = append(dirs, dir)
	}
	mk(top)
	for p := 0; p < 100; p++ {
		pod := filepath.Join(top, fmt.Sprintf("pod%d", p))
		mk(pod)
		for c := 0; c < 9; c++ {
			mk(filepath.Join(pod, fmt.Sprintf("c%d", c)))
		}
	}
	r := NewResolver(top)
	for b.Loop() {
		r.Refresh()
	}
	b.ReportMetric(float64(len(r.paths)), "cgroups")
}

// BenchmarkOpenByHandle names one cgroup (the mount's root) by its file
// handle: what a miss costs where handles are allowed (root).
func BenchmarkOpenByHandle(b *testing.B) {
	mount, err := FindMount()
	if err != nil {
		b.Skipf("no cgroup v2: %v", err)
	}
	f, err := os.Open(mount)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := openByID(f, st.Ino); err != nil {
			b.Fatal(err)
		}
	}
}
