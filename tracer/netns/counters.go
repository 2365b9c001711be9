package netns

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Counters are a namespace's SNMP counters keyed "TcpExt.ListenOverflows",
// "Tcp.RetransSegs", as nstat names them.
type Counters map[string]uint64

// ReadCounters reads /proc/net/netstat and /proc/net/snmp as the calling
// thread sees them. Inside Do that is the namespace's own: the files are
// opened through /proc/thread-self, since /proc/self (and /proc/net) follow
// the thread-group leader's namespace, not the current thread's.
func ReadCounters() (Counters, error) {
	out := Counters{}
	for _, f := range []string{"/proc/thread-self/net/netstat", "/proc/thread-self/net/snmp"} {
		fh, err := os.Open(f)
		if err != nil {
			return nil, err
		}
		err = ParseCounters(fh, out)
		fh.Close()
		if err != nil {
			return nil, fmt.Errorf("parsing %s: %w", f, err)
		}
	}
	return out, nil
}

// Counters reads the namespace's SNMP counters.
func (n *NS) Counters() (Counters, error) {
	var c Counters
	err := n.Do(func() (err error) {
		c, err = ReadCounters()
		return err
	})
	return c, err
}

// ParseCounters reads the two-line "Prefix: names" / "Prefix: values"
// format of /proc/net/netstat and /proc/net/snmp into out.
func ParseCounters(r io.Reader, out Counters) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var header []string
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		if header == nil || header[0] != fields[0] {
			header = fields
			continue
		}
		prefix := strings.TrimSuffix(fields[0], ":")
		for i := 1; i < len(fields) && i < len(header); i++ {
			// Some snmp values (Tcp MaxConn) are -1; those are not counters.
			if v, err := strconv.ParseUint(fields[i], 10, 64); err == nil {
				out[prefix+"."+header[i]] = v
			}
		}
		header = nil
	}
	return sc.Err()
}

// Delta returns after minus before for every counter that grew.
func Delta(before, after Counters) Counters {
	d := Counters{}
	for k, v := range after {
		if v > before[k] {
			d[k] = v - before[k]
		}
	}
	return d
}
