package cgroups

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestMountIn(t *testing.T) {
	hybrid := `30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
39 30 0:36 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`
	unified := `25 22 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
`
	escaped := `40 30 0:37 / /mnt/cg\040two rw - cgroup2 none rw
`
	// A bind mount of one cgroup first, then the hierarchy's root.
	subtree := `41 30 0:37 /system.slice /mnt/slice rw - cgroup2 cgroup2 rw
` + unified
	for in, want := range map[string]string{hybrid: "/sys/fs/cgroup/unified", unified: "/sys/fs/cgroup", escaped: "/mnt/cg two", subtree: "/sys/fs/cgroup"} {
		got, err := mountIn(strings.NewReader(in))
		if err != nil || got != want {
			t.Errorf("mountIn = %q, %v; want %q", got, err, want)
		}
	}
	v1 := `39 30 0:36 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
`
	if _, err := mountIn(strings.NewReader(v1)); !errors.Is(err, ErrNoCgroup2) {
		t.Errorf("a cgroup v1 only host: err %v, want ErrNoCgroup2", err)
	}
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// A temporary tree stands for the hierarchy: its inodes are the ids.
func TestResolverKeepsRemovedPaths(t *testing.T) {
	root := t.TempDir()
	scope := filepath.Join(root, "system.slice", "docker-"+id64+".scope")
	if err := os.MkdirAll(scope, 0o755); err != nil {
		t.Fatal(err)
	}
	r := NewResolver(root)
	id := inode(t, scope)
	info := r.Resolve(id)
	want := Info{Path: "/system.slice/docker-" + id64 + ".scope", ContainerID: id64, Runtime: RuntimeDocker}
	if info != want {
		t.Fatalf("Resolve = %+v, want %+v", info, want)
	}
	if p, ok := r.Path(inode(t, root)); !ok || p != "/" {
		t.Errorf("root: %q %v, want /", p, ok)
	}
	if err := os.Remove(scope); err != nil {
		t.Fatal(err)
	}
	r.Refresh()
	if got := r.Resolve(id); got != want {
		t.Errorf("after removal: %+v, want %+v", got, want)
	}
}

func TestResolverRescansOnMissAtMostOncePerInterval(t *testing.T) {
	root := t.TempDir()
	r := NewResolver(root)
	r.MinRescan = time.Hour
	if _, ok := r.Path(1 << 40); ok {
		t.Fatal("an unknown id was found")
	}
	late := filepath.Join(root, "late")
	if err := os.Mkdir(late, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Path(inode(t, late)); ok {
		t.Error("a miss walked again within MinRescan")
	}
	if r.Scans() != 1 {
		t.Errorf("%d walks, want 1", r.Scans())
	}
	r.next = time.Now() // the interval has passed
	if p, ok := r.Path(inode(t, late)); !ok || p != "/late" {
		t.Errorf("after the interval: %q %v, want /late", p, ok)
	}
	if _, ok := r.Path(0); ok {
		t.Error("id 0 (unknown) was found")
	}
}

// A full table makes room, first by forgetting the cgroups the latest
// walk no longer found, and says so in Err.
func TestResolverBounded(t *testing.T) {
	root := t.TempDir()
	mkdir := func(d string) uint64 {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
		return inode(t, filepath.Join(root, d))
	}
	a, gone := mkdir("a"), mkdir("gone")
	r := NewResolver(root)
	r.MaxEntries = 3
	r.Refresh()
	if len(r.paths) != 3 {
		t.Fatalf("%d paths kept, want 3", len(r.paths))
	}
	if err := r.Err(); err != nil {
		t.Errorf("a table not yet past full: %v", err)
	}
	c := mkdir("c") // first: a file system may reuse the inode (kernfs ids are never reused)
	if err := os.Remove(filepath.Join(root, "gone")); err != nil {
		t.Fatal(err)
	}
	r.Refresh()
	if _, ok := r.paths[gone]; ok {
		t.Error("the cgroup the latest walk did not find was kept, another forgotten")
	}
	for id, want := range map[uint64]string{a: "/a", c: "/c"} {
		if e, ok := r.paths[id]; !ok || e.info.Path != want {
			t.Errorf("%s not kept", want)
		}
	}
	if err := r.Err(); err == nil || !errors.Is(err, errFull) {
		t.Errorf("Err() = %v, want the table full", err)
	}
}

// A hierarchy that cannot be walked is an error the caller can report,
// not a silent miss.
func TestResolverReportsWalkErrors(t *testing.T) {
	r := NewResolver(filepath.Join(t.TempDir(), "gone"))
	if _, ok := r.Path(1); ok {
		t.Fatal("found an id in a hierarchy that does not exist")
	}
	if err := r.Err(); err == nil || !strings.Contains(err.Error(), "gone") {
		t.Errorf("Err() = %v, want the walk's error naming the directory", err)
	}
}
