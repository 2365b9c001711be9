package netns

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Veth joins n and peer with a veth pair: the end in n is named name and
// has address addr, the end in peer peerName and peerAddr (IPv4 prefixes,
// whose subnet route the kernel adds). Both ends are up; the pair goes
// away with either namespace.
func (n *NS) Veth(name string, addr netip.Prefix, peer *NS, peerName string, peerAddr netip.Prefix) error {
	if err := n.Do(func() error { return newVeth(name, peerName, peer.fd) }); err != nil {
		return fmt.Errorf("creating veth pair %s/%s: %w", name, peerName, err)
	}
	if err := n.Do(func() error { return ifUp(name, addr) }); err != nil {
		return fmt.Errorf("configuring %s: %w", name, err)
	}
	if err := peer.Do(func() error { return ifUp(peerName, peerAddr) }); err != nil {
		return fmt.Errorf("configuring %s: %w", peerName, err)
	}
	return nil
}

// nlAttr encodes one rtnetlink attribute, padded to 4 bytes.
func nlAttr(typ uint16, data ...[]byte) []byte {
	n := 4
	for _, d := range data {
		n += len(d)
	}
	b := make([]byte, 4, (n+3)&^3)
	binary.NativeEndian.PutUint16(b[0:], uint16(n))
	binary.NativeEndian.PutUint16(b[2:], typ)
	for _, d := range data {
		b = append(b, d...)
	}
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func cstr(s string) []byte { return append([]byte(s), 0) }

// newVeth sends RTM_NEWLINK for a veth whose peer is created directly in
// the namespace peerFd (VETH_INFO_PEER carries the peer's ifinfomsg and
// IFLA_NET_NS_FD).
func newVeth(name, peerName string, peerFd int) error {
	const vethInfoPeer = 1 // VETH_INFO_PEER, include/uapi/linux/veth.h
	ifinfo := make([]byte, unix.SizeofIfInfomsg)
	fd := binary.NativeEndian.AppendUint32(nil, uint32(peerFd))
	peer := nlAttr(vethInfoPeer, ifinfo, nlAttr(unix.IFLA_IFNAME, cstr(peerName)), nlAttr(unix.IFLA_NET_NS_FD, fd))
	linkinfo := nlAttr(unix.IFLA_LINKINFO, nlAttr(unix.IFLA_INFO_KIND, cstr("veth")), nlAttr(unix.IFLA_INFO_DATA, peer))
	body := append(append(ifinfo, nlAttr(unix.IFLA_IFNAME, cstr(name))...), linkinfo...)
	msg := make([]byte, unix.NLMSG_HDRLEN, unix.NLMSG_HDRLEN+len(body))
	binary.NativeEndian.PutUint32(msg[0:], uint32(unix.NLMSG_HDRLEN+len(body)))
	binary.NativeEndian.PutUint16(msg[4:], unix.RTM_NEWLINK)
	binary.NativeEndian.PutUint16(msg[6:], unix.NLM_F_REQUEST|unix.NLM_F_ACK|unix.NLM_F_CREATE|unix.NLM_F_EXCL)
	binary.NativeEndian.PutUint32(msg[8:], 1)
	msg = append(msg, body...)
	s, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("opening rtnetlink: %w", err)
	}
	defer unix.Close(s)
	if err := unix.Sendto(s, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("sending RTM_NEWLINK: %w", err)
	}
	buf := make([]byte, 4096)
	n, _, err := unix.Recvfrom(s, buf, 0)
	if err != nil {
		return fmt.Errorf("reading RTM_NEWLINK answer: %w", err)
	}
	if n < unix.NLMSG_HDRLEN+4 || binary.NativeEndian.Uint16(buf[4:]) != unix.NLMSG_ERROR {
		return fmt.Errorf("unexpected RTM_NEWLINK answer")
	}
	if e := int32(binary.NativeEndian.Uint32(buf[unix.NLMSG_HDRLEN:])); e != 0 {
		return unix.Errno(-e)
	}
	return nil
}

// ifUp gives an interface an IPv4 address and netmask and brings it up.
func ifUp(name string, addr netip.Prefix) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if !addr.Addr().Is4() {
		return fmt.Errorf("%s: only IPv4 addresses", addr)
	}
	if err := ifr.SetInet4Addr(addr.Addr().AsSlice()); err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFADDR, ifr); err != nil {
		return fmt.Errorf("setting address: %w", err)
	}
	m := [4]byte{}
	for i := 0; i < addr.Bits(); i++ {
		m[i/8] |= 0x80 >> (i % 8)
	}
	if err := ifr.SetInet4Addr(m[:]); err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFNETMASK, ifr); err != nil {
		return fmt.Errorf("setting netmask: %w", err)
	}
	ifr, _ = unix.NewIfreq(name)
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}
