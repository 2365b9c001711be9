package tracer

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/tcpscope/tcpscope/tracer/cgroups"
)

// The builder names the owner's cgroup of what it emits. A cgroup removed
// after its events were seen and before the records were emitted (a
// container that exited) keeps its name.
func TestBuilderNamesCgroups(t *testing.T) {
	root := t.TempDir()
	unit := filepath.Join(root, "system.slice", "nginx.service")
	if err := os.MkdirAll(unit, 0o755); err != nil {
		t.Fatal(err)
	}
	var st1 syscall.Stat_t
	if err := syscall.Stat(unit, &st1); err != nil {
		t.Fatal(err)
	}
	id := st1.Ino
	conns := map[uint64]Connection{}
	var ls []*Listener
	b := NewBuilder(BuilderConfig{Cgroups: cgroups.NewResolver(root),
		Emit:         func(c *Connection) { conns[c.ID] = *c },
		EmitListener: func(l *Listener) { ls = append(ls, l) }})
	lst := st(10, StateClose, StateListen, srv, ap("0.0.0.0:0"))
	child := st(11, StateListen, StateSynRecv, srv, cli)
	child.ListenerCookie = 10
	lst.CgroupID, child.CgroupID = id, id
	stranger := st(12, StateClose, StateSynSent, cliSS, srv)
	stranger.CgroupID = id + 1<<40 // no such cgroup
	for _, e := range []*Event{&lst, &child, &stranger} {
		b.Add(e)
	}
	if err := os.Remove(unit); err != nil {
		t.Fatal(err)
	}
	b.Finish(t0)
	want := cgroups.Info{Path: "/system.slice/nginx.service", Unit: "nginx.service"}
	if got := conns[11].Cgroup; got != want {
		t.Errorf("server child's cgroup %+v, want %+v", got, want)
	}
	if got := conns[12]; got.Cgroup != (cgroups.Info{}) || got.CgroupID != stranger.CgroupID {
		t.Errorf("unnamed cgroup: %+v id %d, want only its id", got.Cgroup, got.CgroupID)
	}
	if len(ls) != 1 || ls[0].Cgroup != want {
		t.Errorf("listeners %v, want one in %+v", ls, want)
	}
}

// --cgroup takes only directories of the cgroup v2 hierarchy: no ".."
// out of the mount, nothing of another file system.
func TestResolveCgroupStaysInTheHierarchy(t *testing.T) {
	mount, err := CgroupMount()
	if err != nil {
		t.Skipf("no cgroup v2: %v", err)
	}
	if cg, err := ResolveCgroup("/"); err != nil || cg.Path != mount || cg.Level != 0 {
		t.Errorf("the root: %+v, %v", cg, err)
	}
	for _, p := range []string{"../cpu", "system.slice/../../cpu", filepath.Join(mount, ".."), t.TempDir()} {
		if cg, err := ResolveCgroup(p); err == nil {
			t.Errorf("ResolveCgroup(%q) = %+v, want an error", p, cg)
		}
	}
}
