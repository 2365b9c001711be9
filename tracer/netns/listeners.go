package netns

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// ListeningSocket is a TCP listener found in /proc/net/tcp{,6}.
type ListeningSocket struct {
	Local   netip.AddrPort
	Backlog uint32 // sk_max_ack_backlog (the tx_queue column of a listener)
	Queue   uint32 // sk_ack_backlog (rx_queue)
	Inode   uint64
	PID     uint32 // a process holding it, 0 if none found
	Comm    string
}

// Listeners lists the namespace's listening TCP sockets and, when a process
// holds one, that process.
func (n *NS) Listeners() ([]ListeningSocket, error) {
	var out []ListeningSocket
	err := n.Do(func() error {
		for _, f := range []string{"/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"} {
			ls, err := parseListeners(f)
			if err != nil {
				return err
			}
			out = append(out, ls...)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	owners := socketOwners()
	for i := range out {
		if o, ok := owners[out[i].Inode]; ok {
			out[i].PID, out[i].Comm = o.pid, o.comm
		}
	}
	return out, nil
}

func parseListeners(path string) ([]ListeningSocket, error) {
	f, err := os.Open(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil // no IPv6
		}
		return nil, err
	}
	defer f.Close()
	var out []ListeningSocket
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
		fl := strings.Fields(sc.Text())
		if len(fl) < 10 || fl[3] != "0A" {
			continue
		}
		ap, err := parseProcAddr(fl[1])
		if err != nil {
			continue
		}
		q := strings.SplitN(fl[4], ":", 2)
		tx, _ := strconv.ParseUint(q[0], 16, 32)
		rx, _ := strconv.ParseUint(q[1], 16, 32)
		ino, _ := strconv.ParseUint(fl[9], 10, 64)
		out = append(out, ListeningSocket{Local: ap, Backlog: uint32(tx), Queue: uint32(rx), Inode: ino})
	}
	return out, sc.Err()
}

// parseProcAddr reads "0100007F:1F90": the address as the kernel's 32-bit
// words in host byte order (little-endian here), then the port in hex.
func parseProcAddr(s string) (netip.AddrPort, error) {
	hp := strings.SplitN(s, ":", 2)
	if len(hp) != 2 {
		return netip.AddrPort{}, fmt.Errorf("address %q", s)
	}
	raw, err := hex.DecodeString(hp[0])
	if err != nil {
		return netip.AddrPort{}, err
	}
	port, err := strconv.ParseUint(hp[1], 16, 16)
	if err != nil {
		return netip.AddrPort{}, err
	}
	for i := 0; i+4 <= len(raw); i += 4 {
		raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	var a netip.Addr
	switch len(raw) {
	case 4:
		a = netip.AddrFrom4([4]byte(raw))
	case 16:
		a = netip.AddrFrom16([16]byte(raw)).Unmap()
	default:
		return netip.AddrPort{}, fmt.Errorf("address %q", s)
	}
	return netip.AddrPortFrom(a, uint16(port)), nil
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
