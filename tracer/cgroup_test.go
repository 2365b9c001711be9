package tracer

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/tcpscope/tcpscope/tracer/cgroups"
)

// The builder names the owner's cgroup of what it emits, once, and keeps
// the name of a cgroup removed before the record was emitted if the
// resolver saw it.
func TestBuilderNamesCgroups(t *testing.T) {
	root := t.TempDir()
	unit := filepath.Join(root, "system.slice", "nginx.service")
	if err := os.MkdirAll(unit, 0o755); err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(unit, &st); err != nil {
		t.Fatal(err)
	}
	r := cgroups.NewResolver(root)
	r.Refresh()
	if err := os.Remove(unit); err != nil {
		t.Fatal(err)
	}
	var got []cgroups.Info
	b := NewBuilder(BuilderConfig{Cgroups: r,
		Emit:         func(c *Connection) { got = append(got, c.Cgroup) },
		EmitListener: func(l *Listener) { got = append(got, l.Cgroup) }})
	b.cfg.Emit(&Connection{CgroupID: st.Ino})
	b.cfg.Emit(&Connection{})                       // unknown id: nothing
	b.cfg.Emit(&Connection{CgroupID: st.Ino + 1e9}) // not found: nothing
	b.cfg.EmitListener(&Listener{CgroupID: st.Ino})
	want := cgroups.Info{Path: "/system.slice/nginx.service", Unit: "nginx.service"}
	if len(got) != 4 || got[0] != want || got[1] != (cgroups.Info{}) || got[2] != (cgroups.Info{}) || got[3] != want {
		t.Errorf("emitted cgroups %+v; want %+v, none, none, %+v", got, want, want)
	}
}
