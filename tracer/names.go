package tracer

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"
)

// State is a TCP socket state as the kernel numbers it (include/net/tcp_states.h).
type State uint8

// The states the timeline builder reasons about. Their numbers are part of
// the kernel ABI (/proc/net/tcp and sock_diag report them); their names are
// read from the running kernel's BTF at start.
const (
	StateEstablished State = 1
	StateSynSent     State = 2
	StateSynRecv     State = 3
	StateFinWait1    State = 4
	StateFinWait2    State = 5
	StateTimeWait    State = 6
	StateClose       State = 7
	StateCloseWait   State = 8
	StateLastAck     State = 9
	StateListen      State = 10
	StateClosing     State = 11
	StateNewSynRecv  State = 12
)

// String spells the state as the kernel does, without the TCP_ prefix:
// "SYN_SENT", "FIN_WAIT2".
func (s State) String() string {
	// Through the pointer: the table is an array, and a copy of it per call
	// was the builder's largest cost.
	if t := &kernelNames().stateTable; t[s] != "" {
		return t[s]
	}
	return unknownStateName(s)
}

func unknownStateName(s State) string {
	if name, ok := unknownStates.name(uint32(s)); ok {
		return name
	}
	return fmt.Sprintf("STATE_%d", uint8(s))
}

// ParseState reads a state name as String spells it. The states are
// kernel ABI, the same on every kernel; a name this kernel does not have
// gets a process-local value from the top of the range.
func ParseState(name string) (State, bool) {
	if name == "" {
		return 0, false
	}
	for v, n := range &kernelNames().stateTable {
		if n == name {
			return State(v), true
		}
	}
	if v, ok := unknownStates.value(name); ok {
		return State(v), true
	}
	return 0, false
}

var unknownStates = newRegistry(200, 256)

// RSTReason is an enum sk_rst_reason value (6.10+).
type RSTReason uint32

// String is the kernel's name for the reason, without the SK_RST_REASON_
// prefix: "NO_SOCKET", "TCP_ABORT_ON_CLOSE".
func (r RSTReason) String() string {
	n := kernelNames()
	if r < RSTReason(len(n.rstTable)) && n.rstTable[r] != "" {
		return n.rstTable[r]
	}
	if name, ok := n.rstReasons[uint32(r)]; ok {
		return name
	}
	if name, ok := unknownRSTReasons.name(uint32(r)); ok {
		return name
	}
	return fmt.Sprintf("REASON_%d", uint32(r))
}

// Reason names that the running kernel does not have (an export recorded
// on another kernel, whose enum numbers differ) get process-local values
// far above any enum value, so that a read export renders them unchanged.
const unknownReasonBase = 1 << 24

var (
	unknownRSTReasons  = newRegistry(unknownReasonBase, 1<<31)
	unknownDropReasons = newRegistry(unknownReasonBase, 1<<31)
)

// ParseRSTReason finds the running kernel's number for a reset reason
// name as String spells it; an unknown name gets a process-local value.
func ParseRSTReason(name string) (RSTReason, bool) {
	v, ok := parseReason(kernelNames().rstReasons, unknownRSTReasons, name)
	return RSTReason(v), ok
}

func parseReason(known map[uint32]string, unknown *registry, name string) (uint32, bool) {
	if name == "" {
		return 0, false
	}
	for v, n := range known {
		if n == name {
			return v, true
		}
	}
	return unknown.value(name)
}

// DropReason is an enum skb_drop_reason value; its numbers differ between
// kernels (NO_SOCKET is 2 on 6.1 and 3 on 6.18), so only names are exported.
type DropReason uint32

// String is the kernel's name for the drop reason, without SKB_DROP_REASON_.
func (r DropReason) String() string {
	n := kernelNames()
	if name, ok := n.dropReasons[uint32(r)]; ok {
		return name
	}
	if name, ok := unknownDropReasons.name(uint32(r)); ok {
		return name
	}
	return fmt.Sprintf("DROP_%d", uint32(r))
}

// DropReasonValue finds the running kernel's number for a drop reason name.
func DropReasonValue(name string) (DropReason, bool) {
	for v, n := range kernelNames().dropReasons {
		if n == name {
			return DropReason(v), true
		}
	}
	return 0, false
}

// ParseDropReason is DropReasonValue for a name read back: an unknown name
// gets a process-local value.
func ParseDropReason(name string) (DropReason, bool) {
	v, ok := parseReason(kernelNames().dropReasons, unknownDropReasons, name)
	return DropReason(v), ok
}

// Errno is a positive errno value; 0 is none.
type Errno int32

// Errnos the builder reasons about.
const (
	ErrnoConnRefused  = Errno(unix.ECONNREFUSED)
	ErrnoConnReset    = Errno(unix.ECONNRESET)
	ErrnoPipe         = Errno(unix.EPIPE)
	ErrnoTimedOut     = Errno(unix.ETIMEDOUT)
	ErrnoAddrNotAvail = Errno(unix.EADDRNOTAVAIL)
)

// Errnos from unknownErrnoBase up are names read back that this system
// does not have; ParseErrno looks for known names below maxErrno.
const (
	unknownErrnoBase = 1 << 20
	maxErrno         = 4096
)

// ErrnoOf is the errno of a kernel value: negative return codes are taken
// by magnitude.
func ErrnoOf(v int32) Errno {
	if v < 0 {
		v = -v
	}
	return Errno(v)
}

// String spells the errno as ErrnoName does; "" for none.
func (e Errno) String() string {
	if e >= unknownErrnoBase {
		if name, ok := unknownErrnos.name(uint32(e)); ok {
			return name
		}
	}
	return ErrnoName(int32(e))
}

var (
	unknownErrnos  = newRegistry(unknownErrnoBase, 1<<30)
	errnoByNameMap map[string]Errno
	errnoByNameSet sync.Once
)

// ParseErrno reads an errno as String spells it; a name unknown here
// gets a process-local value.
func ParseErrno(name string) (Errno, bool) {
	if name == "" {
		return 0, false
	}
	errnoByNameSet.Do(func() {
		errnoByNameMap = map[string]Errno{}
		for e := Errno(1); e < maxErrno; e++ {
			errnoByNameMap[e.String()] = e
		}
	})
	if e, ok := errnoByNameMap[name]; ok {
		return e, true
	}
	v, ok := unknownErrnos.value(name)
	return Errno(v), ok
}

// ErrnoName spells an errno as in <errno.h>: 111 -> "ECONNREFUSED". Negative
// values (kernel return codes) are taken by magnitude.
func ErrnoName(errno int32) string {
	if errno < 0 {
		errno = -errno
	}
	if errno == 0 {
		return ""
	}
	if name := unix.ErrnoName(unix.Errno(errno)); name != "" {
		return name
	}
	return fmt.Sprintf("errno %d", errno)
}

type names struct {
	stateTable  [256]string // states by number, for the hot path
	rstTable    [64]string  // the first reset reasons, for the export writer
	states      map[uint32]string
	rstReasons  map[uint32]string
	dropReasons map[uint32]string
	fromBTF     bool
}

var (
	namesOnce sync.Once
	namesVal  *names
)

// kernelNames reads enum names from the running kernel's BTF once. Without
// BTF it falls back to the names every kernel since 6.12 uses. Small
// enough to inline: the export writer asks for every state it writes.
func kernelNames() *names {
	namesOnce.Do(loadNames)
	return namesVal
}

func loadNames() {
	spec, err := btf.LoadKernelSpec()
	if err == nil {
		namesVal = namesFromBTF(spec)
	}
	if namesVal == nil {
		namesVal = fallbackNames()
	}
	for v, name := range namesVal.states {
		if v < uint32(len(namesVal.stateTable)) {
			namesVal.stateTable[v] = name
		}
	}
	for v, name := range namesVal.rstReasons {
		if v < uint32(len(namesVal.rstTable)) {
			namesVal.rstTable[v] = name
		}
	}
}

func namesFromBTF(spec *btf.Spec) *names {
	n := &names{
		states:      map[uint32]string{},
		rstReasons:  enumValues(spec, "sk_rst_reason", "SK_RST_REASON_"),
		dropReasons: enumValues(spec, "skb_drop_reason", "SKB_DROP_REASON_"),
		fromBTF:     true,
	}
	// The TCP states are an anonymous enum; find it by its first member.
	for typ, err := range spec.All() {
		if err != nil {
			break
		}
		e, ok := typ.(*btf.Enum)
		if !ok || e.Name != "" || len(e.Values) == 0 || e.Values[0].Name != "TCP_ESTABLISHED" {
			continue
		}
		for _, v := range e.Values {
			if strings.HasPrefix(v.Name, "TCP_") && v.Name != "TCP_MAX_STATES" {
				n.states[uint32(v.Value)] = strings.TrimPrefix(v.Name, "TCP_")
			}
		}
		break
	}
	fb := fallbackNames()
	if len(n.states) == 0 {
		n.states = fb.states
	}
	if len(n.rstReasons) == 0 {
		n.rstReasons = fb.rstReasons
	}
	return n
}

func enumValues(spec *btf.Spec, name, prefix string) map[uint32]string {
	out := map[uint32]string{}
	var e *btf.Enum
	if err := spec.TypeByName(name, &e); err != nil {
		return out
	}
	for _, v := range e.Values {
		out[uint32(v.Value)] = strings.TrimPrefix(v.Name, prefix)
	}
	return out
}

func fallbackNames() *names {
	states := []string{"", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2",
		"TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV"}
	rst := []string{"NOT_SPECIFIED", "NO_SOCKET", "TCP_INVALID_ACK_SEQUENCE", "TCP_RFC7323_PAWS",
		"TCP_TOO_OLD_ACK", "TCP_ACK_UNSENT_DATA", "TCP_FLAGS", "TCP_OLD_ACK", "TCP_ABORT_ON_DATA",
		"TCP_TIMEWAIT_SOCKET", "INVALID_SYN", "TCP_ABORT_ON_CLOSE", "TCP_ABORT_ON_LINGER",
		"TCP_ABORT_ON_MEMORY", "TCP_STATE", "TCP_KEEPALIVE_TIMEOUT", "TCP_DISCONNECT_WITH_DATA"}
	n := &names{states: map[uint32]string{}, rstReasons: map[uint32]string{}, dropReasons: map[uint32]string{}}
	for i, s := range states[1:] {
		n.states[uint32(i+1)] = s
	}
	for i, s := range rst {
		n.rstReasons[uint32(i)] = s
	}
	return n
}

// ParseTCPFlags reads flags as TCPFlags.String spells them: "PSH|ACK".
func ParseTCPFlags(s string) (TCPFlags, bool) {
	var f TCPFlags
	for _, name := range strings.Split(s, "|") {
		i := slices.Index(tcpFlagNames[:], name)
		if i < 0 {
			return 0, false
		}
		f |= 1 << i
	}
	return f, true
}
