package cgroups

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The kernel's cgroup id (what bpf_get_current_cgroup_id and the socket's
// cgroup give) is the kernfs node id, which the file handle of the cgroup's
// directory holds; the resolver takes it for the inode number. This checks
// that the two agree on this kernel, on a cgroup the test makes.
func TestKernelCgroupIDIsInode(t *testing.T) {
	mount, err := FindMount()
	if err == nil && os.Geteuid() != 0 {
		err = errors.New("making a cgroup needs root")
	}
	if err != nil {
		unavailable(t, err)
	}
	dir := filepath.Join(mount, fmt.Sprintf("tcpscope-idtest-%d", time.Now().UnixNano()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("making a cgroup: %v", err)
	}
	t.Cleanup(func() {
		if err := os.Remove(dir); err != nil {
			t.Errorf("removing %s: %v", dir, err)
		}
	})
	h, _, err := unix.NameToHandleAt(unix.AT_FDCWD, dir, 0)
	if err != nil {
		t.Fatalf("reading the file handle: %v", err)
	}
	if len(h.Bytes()) != 8 {
		t.Fatalf("handle of %d bytes, want the 8 of a kernfs id", len(h.Bytes()))
	}
	kernfsID := binary.NativeEndian.Uint64(h.Bytes())
	r := NewResolver(mount)
	p, ok := r.Path(kernfsID)
	if !ok || p != "/"+filepath.Base(dir) {
		t.Errorf("kernfs id %d resolves to %q (%v), want /%s", kernfsID, p, ok, filepath.Base(dir))
	}
}

// A cgroup made after a walk, within MinRescan, is named at once (by its
// file handle), with no walk: a short-lived container's connections keep
// its path.
func TestResolverNamesNewCgroupWithoutWalk(t *testing.T) {
	mount, err := FindMount()
	if err == nil && os.Geteuid() != 0 {
		err = errors.New("making a cgroup and opening it by handle need root")
	}
	if err != nil {
		unavailable(t, err)
	}
	r := NewResolver(mount)
	r.MinRescan = time.Hour
	r.Refresh()
	name := fmt.Sprintf("tcpscope-handle-%d", time.Now().UnixNano())
	dir := filepath.Join(mount, name, "docker-"+id64+".scope")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("making a cgroup: %v", err)
	}
	t.Cleanup(func() {
		for _, d := range []string{dir, filepath.Dir(dir)} {
			if err := os.Remove(d); err != nil {
				t.Errorf("removing %s: %v", d, err)
			}
		}
	})
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	info := r.Resolve(st.Ino)
	want := Info{Path: "/" + name + "/docker-" + id64 + ".scope", ContainerID: id64, Runtime: RuntimeDocker}
	if info != want {
		t.Errorf("Resolve = %+v, want %+v", info, want)
	}
	if r.Scans() != 1 {
		t.Errorf("%d walks, want only the first", r.Scans())
	}
}

// unavailable skips t outside CI and fails it under CI=true: CI must never
// go green by skipping.
func unavailable(t *testing.T, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("cannot run under CI: %v", err)
	}
	t.Skip(err)
}
