package netns

import (
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Listen opens a listener inside the namespace.
func (n *NS) Listen(network, address string) (net.Listener, error) {
	var ln net.Listener
	err := n.Do(func() (err error) {
		ln, err = net.Listen(network, address)
		return err
	})
	return ln, err
}

// ListenBacklog listens on 127.0.0.1:port (0 for any) with an explicit
// backlog: net.Listen always asks for somaxconn.
func (n *NS) ListenBacklog(port, backlog int) (net.Listener, error) {
	return n.ListenBacklogAt(netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(port)), backlog)
}

// ListenBacklogAt is ListenBacklog on any IPv4 or IPv6 address.
func (n *NS) ListenBacklogAt(at netip.AddrPort, backlog int) (net.Listener, error) {
	family := unix.AF_INET6
	var sa unix.Sockaddr = &unix.SockaddrInet6{Port: int(at.Port()), Addr: at.Addr().As16()}
	if at.Addr().Is4() {
		family = unix.AF_INET
		sa = &unix.SockaddrInet4{Port: int(at.Port()), Addr: at.Addr().As4()}
	}
	var ln net.Listener
	err := n.Do(func() error {
		fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
		if err := unix.Bind(fd, sa); err != nil {
			unix.Close(fd)
			return err
		}
		if err := unix.Listen(fd, backlog); err != nil {
			unix.Close(fd)
			return err
		}
		f := os.NewFile(uintptr(fd), "listener")
		defer f.Close()
		ln, err = net.FileListener(f)
		return err
	})
	return ln, err
}

// Dial connects from inside the namespace.
func (n *NS) Dial(network, address string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() (err error) {
		c, err = net.DialTimeout(network, address, timeout)
		return err
	})
	return c, err
}

// AddrPort is a listener's address.
func AddrPort(ln net.Listener) netip.AddrPort {
	ap, _ := netip.ParseAddrPort(ln.Addr().String())
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
