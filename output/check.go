package output

import (
	"fmt"
	"io"

	"github.com/tcpscope/tcpscope/tracer"
)

// AttachTrial is whether `tcpscope check` loaded and attached the programs
// (and detached them at once), and how that went.
type AttachTrial struct {
	Tried bool
	Err   error  // the loading or attaching error, when Tried
	Why   string // why it was not tried, when not Tried
	// AggregateErr: loading the default mode (connection records kept in
	// the kernel) failed with it, and the trial fell back on the
	// per-event mode (record --events).
	AggregateErr error
}

// CheckTable renders what `tcpscope check` found. A tracepoint is said to
// attach only when the trial attached it; otherwise its row says it was
// found in the kernel's BTF and why attaching was not tried.
func CheckTable(w io.Writer, f tracer.Features, trial AttachTrial) error {
	yes := func(ok bool, good, bad string) []string {
		if ok {
			return []string{"ok", good}
		}
		return []string{"MISSING", bad}
	}
	row := func(name string, r []string) []string { return append([]string{name}, r...) }
	privs := "root"
	if !f.Root {
		privs = fmt.Sprintf("CAP_BPF=%v CAP_PERFMON=%v CAP_SYS_ADMIN=%v", f.CapBPF, f.CapPerfmon, f.CapSysAdmin)
	}
	btfDetail := "cannot load programs: no BTF at /sys/kernel/btf/vmlinux (needs CONFIG_DEBUG_INFO_BTF=y)"
	rows := [][]string{
		{"kernel", "ok", f.Kernel},
		row("privileges", yes(f.Root || f.CapSysAdmin || (f.CapBPF && f.CapPerfmon), privs,
			privs+": run as root, or grant CAP_BPF and CAP_PERFMON")),
		row("kernel BTF", yes(f.BTF, "/sys/kernel/btf/vmlinux", btfDetail)),
		tracefsRow(f.Tracefs),
	}
	if f.Root || f.CapSysAdmin || (f.CapBPF && f.CapPerfmon) {
		rows = append(rows,
			row("BPF ring buffer", yes(f.RingBuffer, "available", "cannot trace: needs Linux 5.8+")),
			row("BPF socket storage", yes(f.SocketStorage, "available", "cannot trace: needs Linux 5.2+")))
	} else {
		rows = append(rows, []string{"BPF features", "unknown", "probing needs the privileges above"})
	}
	if trial.Tried && trial.Err != nil {
		rows = append(rows, []string{"attaching", "FAILED", trial.Err.Error()})
	}
	for _, h := range f.Hooks {
		status, detail := "ok", "attached"
		if !trial.Tried || trial.Err != nil {
			status, detail = "found", "in kernel BTF"
		}
		if h.Variant != "" {
			detail += ", " + h.Variant
		}
		switch {
		case !trial.Tried:
			detail += "; attaching not tried: " + trial.Why
		case trial.Err != nil:
			detail += "; attaching failed (above)"
		}
		if !h.Present {
			status, detail = "MISSING", "lost: "+h.Degrades
			if h.Required {
				detail = "cannot trace: " + h.Degrades
			}
		}
		rows = append(rows, []string{"tracepoint " + h.Tracepoint, status, detail})
	}
	rows = append(rows, aggregationRow(trial), cgroupRow(f))
	return renderTable(w, []string{"CHECK", "STATUS", "DETAIL"}, rows)
}

// aggregationRow: the default mode keeps each connection's timeline in
// socket storage and reads the connections still open at the end with a
// TCP socket iterator; the trial loaded both.
func aggregationRow(trial AttachTrial) []string {
	name := "connection records in the kernel"
	switch {
	case !trial.Tried:
		return []string{name, "unknown", "loading not tried: " + trial.Why}
	case trial.AggregateErr != nil && trial.Err == nil:
		return []string{name, "FAILED", trial.AggregateErr.Error() + "; record --events works (every event sent)"}
	case trial.Err != nil:
		return []string{name, "FAILED", "loading failed (above)"}
	}
	return []string{name, "ok", "timelines in socket storage, end-of-recording walk (iter/tcp) loaded"}
}

// tracefsRow: tp_btf programs attach by BTF id, so tracefs is informational.
func tracefsRow(mounted bool) []string {
	if mounted {
		return []string{"tracefs", "ok", "mounted (not needed: tcpscope attaches BTF-typed tracepoints)"}
	}
	return []string{"tracefs", "unused", "not mounted; not needed: tcpscope attaches BTF-typed tracepoints"}
}

// cgroupRow says whether owners' cgroups can be named: without a cgroup v2
// hierarchy, or on a kernel whose sockets do not point to their cgroup
// (told by its BTF), records carry no cgroup, container or unit.
func cgroupRow(f tracer.Features) []string {
	if f.BTF && !f.Has(tracer.SocketCgroups) {
		return []string{"cgroup v2", "MISSING", "lost: the owner's cgroup, container and unit of each record, and --cgroup: this kernel lacks " + tracer.SocketCgroups.String()}
	}
	if f.Cgroup2 == "" {
		why := "not found"
		if f.Cgroup2Err != nil {
			why = f.Cgroup2Err.Error()
		}
		return []string{"cgroup v2", "MISSING", "lost: the owner's cgroup, container and unit of each record (" + why + "; mount one with: mount -t cgroup2 none /sys/fs/cgroup/unified)"}
	}
	if f.CgroupNamespace {
		return []string{"cgroup v2", "partial", "mounted at " + f.Cgroup2 + ", inside a cgroup namespace: records name only cgroups within it (their paths relative to its root), and --cgroup is refused"}
	}
	return []string{"cgroup v2", "ok", "mounted at " + f.Cgroup2 + ": records name the owner's cgroup, container and unit"}
}
