package netns

import (
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// ListeningSocket is a TCP listener of the namespace.
type ListeningSocket struct {
	Local   netip.AddrPort
	Backlog uint32 // sk_max_ack_backlog
	Queue   uint32 // sk_ack_backlog: connections waiting for accept()
	Inode   uint64
	PID     uint32 // a process holding it, 0 if none found
	Comm    string
}

// tcpListen is 1 << TCP_LISTEN, the sock_diag state mask of listeners.
const tcpListen = 1 << 10

// Listeners lists the namespace's listening TCP sockets (sock_diag, as
// ss -ltn) and, when a process holds one, that process. /proc/net/tcp is
// no use here: its tx_queue column is not the backlog for a listener.
func (n *NS) Listeners() ([]ListeningSocket, error) {
	socks, err := n.TCPSockets(tcpListen)
	if err != nil {
		return nil, err
	}
	owners := socketOwners()
	out := make([]ListeningSocket, 0, len(socks))
	for _, s := range socks {
		l := ListeningSocket{Local: s.Local, Backlog: s.WQueue, Queue: s.RQueue, Inode: s.Inode}
		if o, ok := owners[s.Inode]; ok {
			l.PID, l.Comm = o.pid, o.comm
		}
		out = append(out, l)
	}
	return out, nil
}

type owner struct {
	pid  uint32
	comm string
}

// socketOwners maps socket inodes to a process holding them.
func socketOwners() map[uint64]owner {
	out := map[uint64]owner{}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		fds, _ := os.ReadDir("/proc/" + p.Name() + "/fd")
		var comm string
		for _, fd := range fds {
			l, err := os.Readlink("/proc/" + p.Name() + "/fd/" + fd.Name())
			if err != nil || !strings.HasPrefix(l, "socket:[") {
				continue
			}
			ino, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]"), 10, 64)
			if err != nil {
				continue
			}
			if _, seen := out[ino]; seen {
				continue
			}
			if comm == "" {
				b, _ := os.ReadFile("/proc/" + p.Name() + "/comm")
				comm = strings.TrimSpace(string(b))
			}
			out[ino] = owner{pid: uint32(pid), comm: comm}
		}
	}
	return out
}
