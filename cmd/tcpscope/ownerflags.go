package main

import (
	"math"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/cgroups"
)

// ownerFlags are report's filters on who owns a connection's socket.
type ownerFlags struct {
	pids       []uint32
	comms      []string
	cgroups    []string
	containers []string
}

// commLen is the most a comm holds (TASK_COMM_LEN without its NUL): a
// longer name never matches.
const commLen = 15

func (o *ownerFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.Var(uintsValue[uint32]{vals: &o.pids, hi: math.MaxUint32, bad: "a PID is a positive number", noun: "PIDs", typ: "pids"},
		"pid", "only connections whose socket this `PID` owns (the connect() caller, or the listener's owner for a server end; repeatable)")
	hideEmptyDefault(cmd, "pid")
	fl.StringSliceVar(&o.comms, "comm", nil, "only connections whose owner's command is this `NAME` (repeatable)")
	fl.StringSliceVar(&o.cgroups, "cgroup", nil, "only connections whose owner is in this cgroup v2 `PATH` or below it: the path the export names (/system.slice/nginx.service) or its directory (/sys/fs/cgroup/system.slice/nginx.service; repeatable)")
	fl.StringSliceVar(&o.containers, "container", nil, "only connections whose owner runs in the container whose id starts with `ID` (4 hex digits or more), or RUNTIME:ID (docker, containerd, cri-o, podman, cri; repeatable)")
}

func (o *ownerFlags) set() bool {
	return len(o.pids)+len(o.comms)+len(o.cgroups)+len(o.containers) > 0
}

// filters checks the values and returns a filter per flag given.
func (o *ownerFlags) filters() ([]func(*tracer.Connection) bool, error) {
	var keep []func(*tracer.Connection) bool
	if len(o.pids) > 0 {
		keep = append(keep, func(c *tracer.Connection) bool { return slices.Contains(o.pids, c.PID) })
	}
	for _, s := range o.comms {
		if s == "" || len(s) > commLen {
			return nil, usagef("--comm %q: a command name is 1 to %d bytes, as the kernel keeps it (see ps -o comm)", s, commLen)
		}
	}
	if len(o.comms) > 0 {
		keep = append(keep, func(c *tracer.Connection) bool { return slices.Contains(o.comms, c.Comm) })
	}
	var dirs []string
	for _, s := range o.cgroups {
		if strings.Trim(s, "/") == "" && s != "/" {
			return nil, usagef("--cgroup %q: a cgroup path below the cgroup2 mount, such as /system.slice", s)
		}
		dirs = append(dirs, belowMount(s))
	}
	if len(dirs) > 0 {
		keep = append(keep, func(c *tracer.Connection) bool {
			return slices.ContainsFunc(dirs, func(dir string) bool { return c.Cgroup.Under(dir) })
		})
	}
	var queries []cgroups.ContainerQuery
	for _, s := range o.containers {
		q, err := cgroups.ParseContainerQuery(s)
		if err != nil {
			return nil, usagef("--container: %v", err)
		}
		queries = append(queries, q)
	}
	if len(queries) > 0 {
		keep = append(keep, func(c *tracer.Connection) bool {
			return slices.ContainsFunc(queries, func(q cgroups.ContainerQuery) bool { return q.Match(c.Cgroup) })
		})
	}
	return keep, nil
}

// cgroupMounts are where cgroup v2 is mounted on most hosts, the hybrid
// one first: a --cgroup given as a directory there is read as the path
// below it, as record --cgroup takes it and the export writes it.
var cgroupMounts = []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup"}

func belowMount(p string) string {
	for _, m := range cgroupMounts {
		if rest, ok := strings.CutPrefix(p, m); ok && (rest == "" || rest[0] == '/') {
			return "/" + strings.Trim(rest, "/")
		}
	}
	return p
}
