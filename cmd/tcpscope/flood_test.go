package main

import (
	be "encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/netns"
	"github.com/tcpscope/tcpscope/tracer/nettest"
	"golang.org/x/sys/unix"
)

// rssBoundMiB is the documented bound on tcpscope's resident memory under
// the flood below (README, Guarantees).
const rssBoundMiB = 400

func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// synFlood sends n SYNs to 127.0.0.1:port from many 127/8 addresses and
// ports, through a raw socket inside ns.
func synFlood(t *testing.T, ns *netns.NS, port uint16, n int) {
	t.Helper()
	err := ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		pkt := make([]byte, 40)
		for i := 0; i < n; i++ {
			src := [4]byte{127, byte(1 + i>>16&0x3f), byte(i >> 8), byte(i)}
			sport := uint16(1024 + i%60000)
			// IPv4 header
			pkt[0], pkt[1] = 0x45, 0
			be.BigEndian.PutUint16(pkt[2:], 40)
			be.BigEndian.PutUint16(pkt[4:], uint16(i))
			pkt[6], pkt[7], pkt[8], pkt[9] = 0x40, 0, 64, unix.IPPROTO_TCP
			pkt[10], pkt[11] = 0, 0
			copy(pkt[12:16], src[:])
			copy(pkt[16:20], []byte{127, 0, 0, 1})
			be.BigEndian.PutUint16(pkt[10:], checksum(pkt[:20]))
			// TCP header: SYN, no options
			tcp := pkt[20:]
			be.BigEndian.PutUint16(tcp[0:], sport)
			be.BigEndian.PutUint16(tcp[2:], port)
			be.BigEndian.PutUint32(tcp[4:], uint32(i)*7919)
			be.BigEndian.PutUint32(tcp[8:], 0)
			tcp[12], tcp[13] = 5<<4, 0x02
			be.BigEndian.PutUint16(tcp[14:], 65535)
			tcp[16], tcp[17], tcp[18], tcp[19] = 0, 0, 0, 0
			pseudo := append(append(append([]byte{}, pkt[12:20]...), 0, unix.IPPROTO_TCP, 0, 20), tcp...)
			be.BigEndian.PutUint16(tcp[16:], checksum(pseudo))
			if err := unix.Sendto(fd, pkt, 0, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
				return fmt.Errorf("sending SYN %d: %w", i, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func vmHWM(pid int) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return kb / 1024
		}
	}
	return -1
}

// TestFloodAndStorm: 50,000 handshakes that never complete (SYN-ACKs
// dropped), then a 30 s connection storm. tcpscope keeps up or counts what
// it lost, stays under its memory bound, and its export stays valid.
func TestFloodAndStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("long: 50k SYNs and a 30 s storm")
	}
	ns := nettest.New(t)
	for k, v := range map[string]string{
		"net.core.somaxconn":           "65535",
		"net.ipv4.tcp_max_syn_backlog": "65535",
		"net.ipv4.tcp_syncookies":      "0", // keep every request socket
		"net.ipv4.tcp_synack_retries":  "1",
	} {
		if err := ns.Sysctl(k, v); err != nil {
			t.Fatal(err)
		}
	}
	to := listenBacklog(t, ns, 65535)
	// The SYN-ACKs would reach 127/8 and be answered with RSTs: drop them
	// on the way in. (Dropped on the way out, tcp_rtx_synack() would fail
	// with -EPERM: no retransmit counted, none traced.)
	if _, err := ns.AddDrop(netns.Drop{SrcPort: to.Port(), FlagMask: netns.FlagSYN | netns.FlagACK, Flags: netns.FlagSYN | netns.FlagACK, Input: true}); err != nil {
		t.Fatal(err)
	}
	r := startRecord(t, ns, "flood.jsonl")
	before, _ := ns.Counters()
	syns, _ := strconv.Atoi(os.Getenv("FLOOD_SYNS"))
	if syns == 0 {
		syns = 50000
	}
	start := time.Now()
	synFlood(t, ns, to.Port(), syns)
	mid, _ := ns.Counters()
	t.Logf("flood sent in %v: %v", time.Since(start), netns.Delta(before, mid))
	// Requests retransmit once (1 s) and die (3 s); then the storm.
	srvAddr, _ := startServer(t, ns, "tcp4", "127.0.0.1:0", "client-closes", 1<<30)
	target := netipAddrPort(t, srvAddr)
	deadline := time.Now().Add(30 * time.Second)
	var stormConns int
	for time.Now().Before(deadline) {
		ns.Do(func() error {
			for i := 0; i < 200; i++ {
				if connectClose(target) == nil {
					stormConns++
				}
			}
			return nil
		})
	}
	t.Logf("storm done at %v", time.Since(start))
	after, _ := ns.Counters()
	hwm := vmHWM(r.cmd.Process.Pid)
	rec := r.stopSample(t, 5000)
	t.Logf("stopped at %v", time.Since(start))
	d := netns.Delta(before, after)
	var abandoned int
	var recorded uint64
	for _, c := range rec.Connections {
		if c.Role == tracer.RoleServer && c.Outcome == tracer.OutcomeTimeout && c.Local.Port() == to.Port() {
			abandoned++
		}
		recorded += uint64(c.Retransmits.Syn + c.Retransmits.SynAck)
	}
	t.Logf("SYNs %d, SYN-ACK retransmits %d (kernel), abandoned records %d, storm %d connections, lost %d, peak RSS %d MiB",
		syns, d["TcpExt.TCPSynRetrans"], abandoned, stormConns, rec.Summary.LostEvents, hwm)
	if hwm <= 0 || hwm > rssBoundMiB {
		t.Errorf("peak RSS %d MiB, bound %d MiB", hwm, rssBoundMiB)
	}
	// Every SYN and SYN-ACK retransmit the kernel counted is in a record
	// (the flood's abandoned requests, and any of the storm), unless its
	// event was lost, and then the loss is counted.
	if recorded+rec.Summary.LostEvents < d["TcpExt.TCPSynRetrans"] || abandoned == 0 {
		t.Errorf("%d SYN/SYN-ACK retransmits recorded (%d abandoned requests) and %d lost events, kernel counted %d",
			recorded, abandoned, rec.Summary.LostEvents, d["TcpExt.TCPSynRetrans"])
	}
	if stormConns == 0 {
		t.Errorf("no storm connection completed")
	}
}
