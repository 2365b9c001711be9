package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// enableBPFStats turns on the kernel's run-time statistics of BPF programs
// for as long as the returned descriptor lives. It never writes the
// kernel.bpf_stats_enabled sysctl, so there is nothing to restore: the
// kernel drops the request when this process exits, by any signal.
func enableBPFStats() (func(), error) {
	fd, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return nil, fmt.Errorf("enabling BPF run-time statistics (Linux 5.8+, root): %w", err)
	}
	return func() { fd.Close() }, nil
}

// progCost is what one program (by name) cost over a leg.
type progCost struct {
	runs uint64
	ns   time.Duration
}

// programs are the BPF programs a tracer process holds, opened here too:
// they stay loaded, and their statistics readable, after the tracer exits,
// so the runs made while it drains and shuts down are counted.
type programs struct {
	progs []*ebpf.Program
	names []string
}

// programsOf opens the programs the process pid holds: every prog_id in
// the fdinfo of its descriptors (program and link descriptors).
func programsOf(pid int) (*programs, error) {
	ids, err := progIDs(pid)
	if err != nil {
		return nil, err
	}
	ps := &programs{}
	for _, id := range ids {
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			ps.close()
			return nil, fmt.Errorf("opening BPF program %d: %w", id, err)
		}
		info, err := p.Info()
		if err != nil {
			p.Close()
			ps.close()
			return nil, fmt.Errorf("reading BPF program %d: %w", id, err)
		}
		ps.progs = append(ps.progs, p)
		ps.names = append(ps.names, info.Name)
	}
	return ps, nil
}

func progIDs(pid int) ([]ebpf.ProgramID, error) {
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("listing descriptors of %d: %w", pid, err)
	}
	seen := map[ebpf.ProgramID]bool{}
	var ids []ebpf.ProgramID
	for _, e := range entries {
		id, err := fdinfoProgID(filepath.Join(dir, e.Name()))
		if err != nil && !errors.Is(err, os.ErrNotExist) { // closed meanwhile: not ours to count
			return nil, err
		}
		if id != 0 && !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	return ids, nil
}

func fdinfoProgID(path string) (ebpf.ProgramID, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "prog_id:"); ok {
			id, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
			if err != nil {
				return 0, fmt.Errorf("parsing %s: %w", path, err)
			}
			return ebpf.ProgramID(id), nil
		}
	}
	return 0, sc.Err()
}

// snapshot reads each program's cumulated run count and run time.
func (ps *programs) snapshot() ([]progCost, error) {
	out := make([]progCost, len(ps.progs))
	for i, p := range ps.progs {
		st, err := p.Stats()
		if err != nil {
			return nil, fmt.Errorf("reading statistics of BPF program %s: %w", ps.names[i], err)
		}
		out[i] = progCost{runs: st.RunCount, ns: st.Runtime}
	}
	return out, nil
}

// delta is the cost by program name between two snapshots.
func (ps *programs) delta(before, after []progCost) map[string]progCost {
	out := map[string]progCost{}
	for i, name := range ps.names {
		c := out[name]
		c.runs += after[i].runs - before[i].runs
		c.ns += after[i].ns - before[i].ns
		out[name] = c
	}
	return out
}

func (ps *programs) close() {
	for _, p := range ps.progs {
		p.Close()
	}
	ps.progs = nil
}
