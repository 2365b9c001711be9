package netns

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseCounters(t *testing.T) {
	in := "TcpExt: SyncookiesSent ListenOverflows\nTcpExt: 3 17\nTcp: RtoAlgorithm MaxConn ActiveOpens\nTcp: 1 -1 42\n"
	c := Counters{}
	if err := ParseCounters(strings.NewReader(in), c); err != nil {
		t.Fatal(err)
	}
	if c["TcpExt.ListenOverflows"] != 17 || c["TcpExt.SyncookiesSent"] != 3 || c["Tcp.ActiveOpens"] != 42 {
		t.Errorf("parsed %v", c)
	}
	if _, ok := c["Tcp.MaxConn"]; ok {
		t.Errorf("-1 is not a counter: %v", c)
	}
	d := Delta(Counters{"a": 1, "b": 5}, Counters{"a": 4, "b": 5, "c": 2})
	if len(d) != 2 || d["a"] != 3 || d["c"] != 2 {
		t.Errorf("delta %v", d)
	}
}

func TestParseListenCounters(t *testing.T) {
	in := "TcpExt: SyncookiesSent ListenOverflows ListenDrops TW\nTcpExt: 3 17 19 4\nIpExt: InNoRoutes\nIpExt: 0\n"
	lc, err := parseListenCounters(in)
	if err != nil || lc.Overflows != 17 || lc.Drops != 19 {
		t.Errorf("parsed %+v, %v", lc, err)
	}
	if _, err := parseListenCounters("IpExt: A\nIpExt: 1\n"); err == nil {
		t.Errorf("no TcpExt line, no error")
	}
}

// TestResolve: every way of naming a namespace gives its inode.
func TestResolve(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("cannot run under CI: needs root to create a namespace")
		}
		t.Skip("needs root to create a namespace")
	}
	ns, err := Create()
	if err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	defer ns.Close()
	name := fmt.Sprintf("tcpscope-test-%d", os.Getpid())
	mount := filepath.Join("/run/netns", name)
	if err := os.MkdirAll("/run/netns", 0o755); err != nil {
		t.Fatalf("making /run/netns: %v", err)
	}
	if err := os.WriteFile(mount, nil, 0o444); err != nil {
		t.Fatalf("making the mount point: %v", err)
	}
	defer os.Remove(mount)
	if err := unix.Mount(fmt.Sprintf("/proc/self/fd/%d", ns.Fd()), mount, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind-mounting the namespace: %v", err)
	}
	defer unix.Unmount(mount, unix.MNT_DETACH)
	self, err := Self()
	if err != nil {
		t.Fatalf("opening this namespace: %v", err)
	}
	defer self.Close()
	for in, want := range map[string]uint32{
		fmt.Sprint(ns.Inode):                     ns.Inode,
		name:                                     ns.Inode,
		mount:                                    ns.Inode,
		fmt.Sprintf("/proc/self/fd/%d", ns.Fd()): ns.Inode,
		fmt.Sprint(os.Getpid()):                  self.Inode,
		"/proc/self/ns/net":                      self.Inode,
	} {
		if got, err := Resolve(in); err != nil || got != want {
			t.Errorf("Resolve(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"0", "4294967296", "no-such-netns-here", "/proc/self/ns/mnt", "/nonexistent", ".."} {
		if got, err := Resolve(bad); err == nil {
			t.Errorf("Resolve(%q) = %d, want an error", bad, got)
		}
	}
}
