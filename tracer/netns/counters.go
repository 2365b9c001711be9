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

// ListenCounters are the two counters a full accept queue moves.
type ListenCounters struct {
	Overflows uint64 // TcpExt.ListenOverflows
	Drops     uint64 // TcpExt.ListenDrops
}

// readListenCounters reads only TcpExt's ListenOverflows and ListenDrops
// from /proc/thread-self/net/netstat, without the map ReadCounters builds:
// the accept-queue sampler needs them on every tick.
func readListenCounters() (ListenCounters, error) {
	b, err := os.ReadFile("/proc/thread-self/net/netstat")
	if err != nil {
		return ListenCounters{}, err
	}
	return parseListenCounters(string(b))
}

func parseListenCounters(s string) (ListenCounters, error) {
	var header string
	for line := range strings.Lines(s) {
		if !strings.HasPrefix(line, "TcpExt:") {
			continue
		}
		if header == "" {
			header = line
			continue
		}
		var lc ListenCounters
		names, values := strings.Fields(header), strings.Fields(line)
		found := 0
		for i := 1; i < len(names) && i < len(values); i++ {
			var dst *uint64
			switch names[i] {
			case "ListenOverflows":
				dst = &lc.Overflows
			case "ListenDrops":
				dst = &lc.Drops
			default:
				continue
			}
			v, err := strconv.ParseUint(values[i], 10, 64)
			if err != nil {
				return lc, fmt.Errorf("parsing netstat %s: %w", names[i], err)
			}
			*dst = v
			found++
		}
		if found != 2 {
			return lc, fmt.Errorf("netstat: no ListenOverflows and ListenDrops")
		}
		return lc, nil
	}
	return ListenCounters{}, fmt.Errorf("netstat: no TcpExt line")
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
