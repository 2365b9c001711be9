package output

import (
	"fmt"
	"io"

	"github.com/tcpscope/tcpscope/tracer"
)

// CheckTable renders what `tcpscope check` found.
func CheckTable(w io.Writer, f tracer.Features) error {
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
	for _, h := range f.Hooks {
		detail := "attaches"
		if h.Variant != "" {
			detail += ", " + h.Variant
		}
		status := "ok"
		if !h.Present {
			status, detail = "MISSING", "lost: "+h.Degrades
			if h.Required {
				detail = "cannot trace: " + h.Degrades
			}
		}
		rows = append(rows, []string{"tracepoint " + h.Tracepoint, status, detail})
	}
	return renderTable(w, []string{"CHECK", "STATUS", "DETAIL"}, rows)
}

// tracefsRow: tp_btf programs attach by BTF id, so tracefs is informational.
func tracefsRow(mounted bool) []string {
	if mounted {
		return []string{"tracefs", "ok", "mounted (not needed: tcpscope attaches BTF-typed tracepoints)"}
	}
	return []string{"tracefs", "unused", "not mounted; not needed: tcpscope attaches BTF-typed tracepoints"}
}
