package netns

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Socket is one TCP socket as sock_diag reports it.
type Socket struct {
	State  uint8
	Local  netip.AddrPort
	Remote netip.AddrPort
	// For a listener (inet_diag_get_info / tcp_diag_get_info): RQueue is
	// sk_ack_backlog, the accept queue, and WQueue sk_max_ack_backlog, the
	// backlog (ss's Recv-Q and Send-Q).
	RQueue uint32
	WQueue uint32
	Inode  uint64
	Cookie uint64 // the socket's cookie, as bpf_get_socket_cookie() gives it
}

// TCPSockets dumps the namespace's TCP sockets in the given states (a mask
// of 1<<state) through NETLINK_SOCK_DIAG, as ss does.
func (n *NS) TCPSockets(states uint32) ([]Socket, error) {
	var out []Socket
	err := n.Do(func() error {
		for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
			s, err := dumpTCP(family, states)
			if err != nil {
				return err
			}
			out = append(out, s...)
		}
		return nil
	})
	return out, err
}

const (
	sockDiagByFamily = 20 // SOCK_DIAG_BY_FAMILY
	inetDiagReqV2Len = 56 // struct inet_diag_req_v2
	inetDiagMsgLen   = 72 // struct inet_diag_msg
)

func dumpTCP(family uint8, states uint32) ([]Socket, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("opening sock_diag: %w", err)
	}
	defer unix.Close(fd)
	req := make([]byte, unix.NLMSG_HDRLEN+inetDiagReqV2Len)
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], sockDiagByFamily)
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	body := req[unix.NLMSG_HDRLEN:]
	body[0] = family
	body[1] = unix.IPPROTO_TCP
	binary.NativeEndian.PutUint32(body[4:], states)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("sending sock_diag request: %w", err)
	}
	var out []Socket
	buf := make([]byte, 1<<16)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return nil, fmt.Errorf("reading sock_diag: %w", err)
		}
		for b := buf[:n]; len(b) >= unix.NLMSG_HDRLEN; {
			l := int(binary.NativeEndian.Uint32(b[0:]))
			typ := binary.NativeEndian.Uint16(b[4:])
			if l < unix.NLMSG_HDRLEN || l > len(b) {
				return nil, fmt.Errorf("sock_diag: malformed message")
			}
			data := b[unix.NLMSG_HDRLEN:l]
			switch typ {
			case unix.NLMSG_DONE:
				return out, nil
			case unix.NLMSG_ERROR:
				if len(data) >= 4 {
					if e := int32(binary.NativeEndian.Uint32(data)); e != 0 {
						return nil, fmt.Errorf("sock_diag: %w", unix.Errno(-e))
					}
				}
				return out, nil
			}
			if len(data) >= inetDiagMsgLen {
				out = append(out, parseDiag(data))
			}
			b = b[min((l+unix.NLMSG_ALIGNTO-1)&^(unix.NLMSG_ALIGNTO-1), len(b)):]
		}
	}
}

// parseDiag reads struct inet_diag_msg: family, state, timer, retrans, then
// struct inet_diag_sockid (ports big-endian, 16-byte addresses, interface,
// cookie) at 4, then expires, rqueue, wqueue, uid and inode at 52. The
// cookie is two native u32 halves, low first (inet_diag_msg_common_fill).
func parseDiag(d []byte) Socket {
	fam, state := d[0], d[1]
	sport := binary.BigEndian.Uint16(d[4:])
	dport := binary.BigEndian.Uint16(d[6:])
	addr := func(b []byte) netip.Addr {
		if fam == unix.AF_INET {
			return netip.AddrFrom4([4]byte(b[:4]))
		}
		return netip.AddrFrom16([16]byte(b[:16])).Unmap()
	}
	return Socket{State: state, Local: netip.AddrPortFrom(addr(d[8:24]), sport), Remote: netip.AddrPortFrom(addr(d[24:40]), dport),
		RQueue: binary.NativeEndian.Uint32(d[56:]), WQueue: binary.NativeEndian.Uint32(d[60:]),
		Inode:  uint64(binary.NativeEndian.Uint32(d[68:])),
		Cookie: uint64(binary.NativeEndian.Uint32(d[44:])) | uint64(binary.NativeEndian.Uint32(d[48:]))<<32}
}
