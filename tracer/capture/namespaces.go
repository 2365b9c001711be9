package capture

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/findings"
	"github.com/tcpscope/tcpscope/tracer/netns"
)

// openNamespaces opens the namespaces whose kernel counters a recording
// reports: those given with --netns (each must exist), else tcpscope's own.
func openNamespaces(inodes []uint32) (map[uint32]*netns.NS, error) {
	out := map[uint32]*netns.NS{}
	if len(inodes) == 0 {
		self, err := netns.Self()
		if err != nil {
			return nil, fmt.Errorf("opening this network namespace: %w", err)
		}
		out[self.Inode] = self
		return out, nil
	}
	for _, ino := range inodes {
		ns, err := netns.Find(ino)
		if err != nil {
			closeNamespaces(out)
			return nil, UsageError{fmt.Errorf("--netns %d: %w (list them with: lsns -t net)", ino, err)}
		}
		out[ino] = ns
	}
	return out, nil
}

func closeNamespaces(m map[uint32]*netns.NS) {
	for _, ns := range m {
		ns.Close()
	}
}

// portRange is the number of usable local ports in a namespace; unknown
// when the namespace is gone.
func (r *recording) portRange(netnsIno uint32) (n int, ok bool) {
	r.inNamespace(netnsIno, func(ns *netns.NS) {
		if lo, hi, err := ns.PortRange(); err == nil {
			n, ok = hi-lo+1, true
		}
	})
	return n, ok
}

// inNamespace runs fn with a handle of a namespace, opening it on first
// use and holding it while fewer than maxHeldNamespaces are held (past
// that, the handle is closed after fn); fn does not run when the
// namespace is gone.
func (r *recording) inNamespace(netnsIno uint32, fn func(*netns.NS)) {
	if ns, ok := r.namespaces[netnsIno]; ok {
		fn(ns)
		return
	}
	found, err := netns.Find(netnsIno)
	if err != nil {
		return
	}
	if len(r.namespaces) >= maxHeldNamespaces {
		defer found.Close()
	} else {
		r.adopt(netnsIno, found)
	}
	fn(found)
}

// rfc1337 reads net.ipv4.tcp_rfc1337 in a namespace (0, the default, when
// it cannot be read).
func (r *recording) rfc1337(netnsIno uint32) (on bool) {
	r.inNamespace(netnsIno, func(ns *netns.NS) {
		v, err := ns.ReadSysctl("net.ipv4.tcp_rfc1337")
		on = err == nil && v != "0"
	})
	return on
}

// kernelEnd reads what the kernel itself says at the end: counter deltas
// and the TIME_WAIT sockets sock_diag lists, per destination.
func (r *recording) kernelEnd(now time.Time) ([]CounterDelta, []TimeWaitPressure) {
	deltas := r.counterDeltas()
	var tw []TimeWaitPressure
	kernel := map[tracer.TimeWaitKey]int{}
	read := map[uint32]bool{}
	for _, d := range r.timeWait.Top(10, now) {
		if ns, ok := r.namespaces[d.Key.NetNS]; ok && !read[d.Key.NetNS] {
			read[d.Key.NetNS] = true
			if socks, err := ns.TCPSockets(1 << uint(tracer.StateTimeWait)); err == nil {
				for _, sk := range socks {
					kernel[tracer.TimeWaitKey{NetNS: d.Key.NetNS, Local: sk.Local.Addr(), Remote: sk.Remote}]++
				}
			}
		}
		p := TimeWaitPressure{TimeWaitDest: d, KernelCount: -1}
		if read[d.Key.NetNS] {
			p.KernelCount = kernel[d.Key]
		}
		tw = append(tw, p)
	}
	return deltas, tw
}

// sysctls reads findings.SysctlNames in the namespaces settingsOf holds,
// by namespace; a setting that cannot be read is left out.
func (r *recording) sysctls() []findings.Sysctl {
	var out []findings.Sysctl
	for _, ino := range slices.Sorted(maps.Keys(r.settingsOf)) {
		r.inNamespace(ino, func(ns *netns.NS) {
			for _, name := range findings.SysctlNames {
				if v, err := ns.ReadSysctl(name); err == nil {
					out = append(out, findings.Sysctl{NetNS: ino, Name: name, Value: strings.Join(strings.Fields(v), " ")})
				}
			}
		})
	}
	return out
}
