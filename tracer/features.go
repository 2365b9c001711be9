package tracer

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"

	"github.com/tcpscope/tcpscope/tracer/cgroups"
)

// Hook is one kernel tracepoint tcpscope can attach to.
type Hook struct {
	Tracepoint string // "sock/inet_sock_set_state"
	Required   bool   // without it tcpscope cannot work at all
	Present    bool   // its BTF prototype exists on this kernel
	Degrades   string // what is lost when it is absent
	Variant    string // which prototype this kernel has, when it changed over time
}

// Features is what the running kernel offers tcpscope.
type Features struct {
	Kernel        string
	Root          bool
	CapBPF        bool
	CapPerfmon    bool
	CapSysAdmin   bool
	BTF           bool
	BTFErr        error
	Tracefs       bool
	RingBuffer    bool
	SocketStorage bool
	Hooks         []Hook
	// Cgroup2 is where the cgroup v2 hierarchy is mounted, which names the
	// owners' cgroups; "" with Cgroup2Err when it is not.
	Cgroup2    string
	Cgroup2Err error
	// CgroupNamespace: tcpscope runs inside a cgroup namespace, where
	// the mount shows only the namespace's part of the hierarchy.
	CgroupNamespace bool

	retransmitHasErr bool
	sendResetReason  bool
	// closeResetReasons: enum sk_rst_reason names the active resets.
	closeResetReasons bool
	// listenOverflowReason is enum skb_drop_reason's TCP_LISTEN_OVERFLOW,
	// 0 when kfree_skb cannot identify accept-queue overflows here.
	listenOverflowReason uint32
	// noSocketReason is enum skb_drop_reason's NO_SOCKET: with a full
	// listener as rx_sk, a final ACK carrying a SYN cookie that found the
	// accept queue full (see handle_kfree_skb).
	noSocketReason uint32
	// socketCgroups: struct sock_cgroup_data holds a cgroup pointer
	// (5.15+), which the owner's cgroup id and filter read.
	socketCgroups bool
}

// ErrPrivileges means the process may not load tracing programs.
var ErrPrivileges = errors.New("needs root, or CAP_BPF and CAP_PERFMON (CAP_SYS_ADMIN on kernels before 5.8)")

// Probe inspects the running kernel without loading anything.
func Probe() (Features, error) {
	var f Features
	var uts unix.Utsname
	if err := unix.Uname(&uts); err == nil {
		f.Kernel = unix.ByteSliceToString(uts.Release[:])
	}
	f.Root = os.Geteuid() == 0
	f.CapBPF, f.CapPerfmon, f.CapSysAdmin = capabilities()
	f.Cgroup2, f.Cgroup2Err = cgroups.FindMount()
	// Unreadable (no cgroup namespaces in this kernel): the initial one.
	f.CgroupNamespace, _ = InCgroupNamespace()
	if _, err := os.Stat("/sys/kernel/tracing/events"); err == nil {
		f.Tracefs = true
	} else if _, err := os.Stat("/sys/kernel/debug/tracing/events"); err == nil {
		f.Tracefs = true
	}

	spec, err := btf.LoadKernelSpec()
	if err != nil {
		f.BTFErr = err
	} else {
		f.BTF = true
	}
	if f.privileged() {
		f.RingBuffer = features.HaveMapType(ebpf.RingBuf) == nil
		f.SocketStorage = features.HaveMapType(ebpf.SkStorage) == nil
	}
	if spec != nil {
		var cd *btf.Struct
		if spec.TypeByName("sock_cgroup_data", &cd) == nil {
			for _, m := range cd.Members {
				f.socketCgroups = f.socketCgroups || m.Name == "cgroup"
			}
		}
	}
	for _, h := range hookTable {
		hook := Hook{Tracepoint: h.tracepoint, Required: h.required, Degrades: h.degrades}
		if spec != nil {
			var proto *btf.Typedef
			if err := spec.TypeByName("btf_trace_"+h.event(), &proto); err == nil {
				hook.Present = true
				params := paramCount(proto)
				switch h.event() {
				case "tcp_retransmit_skb":
					f.retransmitHasErr = params >= 4
					hook.Variant = map[bool]string{true: "with err (6.17+)", false: "without err"}[f.retransmitHasErr]
				case "tcp_send_reset":
					f.sendResetReason = params >= 4
					f.closeResetReasons = hasEnumValue(spec, "sk_rst_reason", "SK_RST_REASON_TCP_ABORT_ON_CLOSE")
					hook.Variant = map[bool]string{true: "with reason (6.10+)", false: "without reason, full sockets only"}[f.sendResetReason]
				case "kfree_skb":
					hook.Present, hook.Variant = f.probeOverflowReason(spec, params)
				}
			}
		}
		f.Hooks = append(f.Hooks, hook)
	}
	return f, nil
}

// probeOverflowReason: kfree_skb names the listener of a dropped final ACK
// only with rx_sk (6.11+) and the TCP_LISTEN_OVERFLOW reason (used on this
// path since 6.15).
func (f *Features) probeOverflowReason(spec *btf.Spec, params int) (bool, string) {
	if params < 5 {
		return false, "no rx_sk argument (needs 6.11+)"
	}
	var e *btf.Enum
	if err := spec.TypeByName("skb_drop_reason", &e); err == nil {
		for _, v := range e.Values {
			if v.Name == "SKB_DROP_REASON_NO_SOCKET" {
				f.noSocketReason = uint32(v.Value)
			}
		}
		for _, v := range e.Values {
			if v.Name == "SKB_DROP_REASON_TCP_LISTEN_OVERFLOW" {
				f.listenOverflowReason = uint32(v.Value)
				return true, fmt.Sprintf("accept-queue overflow drops (reason %d)", v.Value)
			}
		}
	}
	return false, "no TCP_LISTEN_OVERFLOW drop reason (needs 6.15+)"
}

// hasEnumValue: the kernel's enum `name` has the value `value`.
func hasEnumValue(spec *btf.Spec, name, value string) bool {
	var e *btf.Enum
	if err := spec.TypeByName(name, &e); err != nil {
		return false
	}
	for _, v := range e.Values {
		if v.Name == value {
			return true
		}
	}
	return false
}

// KernelFeature is something only some kernels offer, on which a part of
// what tcpscope records depends. Without it tcpscope still works; that
// part is missing.
type KernelFeature int

// The kernel features Features.Has knows.
const (
	// ResetReasons: tcp_send_reset carries an enum sk_rst_reason and also
	// fires without a full socket: a refused connect (NO_SOCKET), a reset
	// from a listener, request or timewait sock (6.10+).
	ResetReasons KernelFeature = iota + 1
	// CloseResetReasons: the active resets have reasons of their own,
	// TCP_ABORT_ON_CLOSE, TCP_STATE, ... instead of NOT_SPECIFIED (6.12+).
	CloseResetReasons
	// ListenOverflowDrops: kfree_skb names the listener (rx_sk) of a final
	// ACK dropped with reason TCP_LISTEN_OVERFLOW (6.15+): per-connection
	// accept-queue overflows.
	ListenOverflowDrops
	// RetransmitResult: tcp_retransmit_skb reports whether the resend
	// left the host (6.17+).
	RetransmitResult
	// SocketCgroups: a socket points to its creator's cgroup v2 (5.15+):
	// events carry the owner's cgroup id, and Config.Cgroups works.
	SocketCgroups
)

var kernelFeatureNames = map[KernelFeature]string{
	ResetReasons:        "tcp_send_reset with a reset reason, also without a full socket (Linux 6.10+)",
	CloseResetReasons:   "reset reasons for active resets such as TCP_ABORT_ON_CLOSE (Linux 6.12+)",
	ListenOverflowDrops: "kfree_skb with rx_sk and the TCP_LISTEN_OVERFLOW drop reason (Linux 6.15+)",
	RetransmitResult:    "tcp_retransmit_skb with its result (Linux 6.17+)",
	SocketCgroups:       "sockets that point to their cgroup v2 (Linux 5.15+)",
}

// String says what the feature is and which kernels have it.
func (k KernelFeature) String() string {
	if n, ok := kernelFeatureNames[k]; ok {
		return n
	}
	return fmt.Sprintf("kernel feature %d", int(k))
}

// Has reports whether the running kernel offers k.
func (f Features) Has(k KernelFeature) bool {
	switch k {
	case ResetReasons:
		return f.sendResetReason
	case CloseResetReasons:
		return f.sendResetReason && f.closeResetReasons
	case ListenOverflowDrops:
		return f.listenOverflowReason != 0
	case RetransmitResult:
		return f.retransmitHasErr
	case SocketCgroups:
		return f.socketCgroups
	}
	return false
}

// paramCount counts a tracepoint prototype's parameters, the leading
// void *__data included: "btf_trace_X" is a typedef to a pointer to it.
func paramCount(td *btf.Typedef) int {
	ptr, ok := td.Type.(*btf.Pointer)
	if !ok {
		return 0
	}
	fp, ok := ptr.Target.(*btf.FuncProto)
	if !ok {
		return 0
	}
	return len(fp.Params)
}

func (f Features) privileged() bool {
	return f.Root || f.CapSysAdmin || (f.CapBPF && f.CapPerfmon)
}

// Usable says, in one actionable error, why tracing cannot start.
func (f Features) Usable() error {
	if !f.privileged() {
		return ErrPrivileges
	}
	if !f.BTF {
		return fmt.Errorf("kernel BTF is missing (/sys/kernel/btf/vmlinux): tcpscope needs a kernel built with CONFIG_DEBUG_INFO_BTF=y: %w", f.BTFErr)
	}
	if !f.RingBuffer {
		return errors.New("this kernel has no BPF ring buffer (needs Linux 5.8 or later)")
	}
	if !f.SocketStorage {
		return errors.New("this kernel has no BPF socket storage (needs Linux 5.2 or later)")
	}
	for _, h := range f.Hooks {
		if h.Required && !h.Present {
			return fmt.Errorf("tracepoint %s is missing from this kernel's BTF: tcpscope cannot trace connections without it", h.Tracepoint)
		}
	}
	return nil
}

// Missing lists the optional hooks this kernel lacks, with what each costs.
func (f Features) Missing() []Hook {
	var out []Hook
	for _, h := range f.Hooks {
		if !h.Present {
			out = append(out, h)
		}
	}
	return out
}

type hookDef struct {
	tracepoint string
	required   bool
	degrades   string
	hook       bpfHook // its index among the BPF side's per-hook counters
	programs   pickPrograms
}

// pickPrograms chooses, among bpf2go's program specs, the pair serving a
// tracepoint on this kernel: its main program and the _nested twin that
// serves it while the main one is busy on the same CPU (see the running
// map in bpf/tcpscope.bpf.c).
type pickPrograms func(f Features, s *bpfProgramSpecs) (main, nested *ebpf.ProgramSpec)

func (h hookDef) event() string { return h.tracepoint[strings.IndexByte(h.tracepoint, '/')+1:] }

var hookTable = []hookDef{
	{"sock/inet_sock_set_state", true, "no connection tracking at all", bpfHookHOOK_SET_STATE,
		func(_ Features, s *bpfProgramSpecs) (*ebpf.ProgramSpec, *ebpf.ProgramSpec) {
			return s.HandleSetState, s.HandleSetStateNested
		}},
	{"tcp/tcp_retransmit_skb", false, "no SYN or data retransmits", bpfHookHOOK_RETRANSMIT,
		func(f Features, s *bpfProgramSpecs) (*ebpf.ProgramSpec, *ebpf.ProgramSpec) {
			if f.retransmitHasErr {
				return s.HandleRetransmitErr, s.HandleRetransmitErrNested
			}
			return s.HandleRetransmit, s.HandleRetransmitNested
		}},
	{"tcp/tcp_retransmit_synack", false, "no SYN-ACK retransmits", bpfHookHOOK_SYNACK_RETRANSMIT,
		func(_ Features, s *bpfProgramSpecs) (*ebpf.ProgramSpec, *ebpf.ProgramSpec) {
			return s.HandleSynackRetransmit, s.HandleSynackRetransmitNested
		}},
	{"tcp/tcp_send_reset", false, "no resets sent", bpfHookHOOK_SEND_RESET,
		func(f Features, s *bpfProgramSpecs) (*ebpf.ProgramSpec, *ebpf.ProgramSpec) {
			if f.sendResetReason {
				return s.HandleSendResetReason, s.HandleSendResetReasonNested
			}
			return s.HandleSendReset, s.HandleSendResetNested
		}},
	{"tcp/tcp_receive_reset", false, "no resets received", bpfHookHOOK_RECEIVE_RESET,
		func(_ Features, s *bpfProgramSpecs) (*ebpf.ProgramSpec, *ebpf.ProgramSpec) {
			return s.HandleReceiveReset, s.HandleReceiveResetNested
		}},
	{"sock/inet_sk_error_report", false, "no socket errors (ECONNREFUSED, ETIMEDOUT...)", bpfHookHOOK_SOCK_ERROR,
		func(_ Features, s *bpfProgramSpecs) (*ebpf.ProgramSpec, *ebpf.ProgramSpec) {
			return s.HandleSockError, s.HandleSockErrorNested
		}},
	{"skb/kfree_skb", false, "no per-connection accept-queue overflow (kernel counters still count it)", bpfHookHOOK_KFREE_SKB,
		func(_ Features, s *bpfProgramSpecs) (*ebpf.ProgramSpec, *ebpf.ProgramSpec) {
			return s.HandleKfreeSkb, s.HandleKfreeSkbNested
		}},
}

// attachment is one program Open loads and attaches.
type attachment struct {
	tracepoint string
	hook       bpfHook
	// nested marks the twin that serves the hook while its main program is
	// busy on the same CPU (see the running map in bpf/tcpscope.bpf.c).
	nested bool
	spec   *ebpf.ProgramSpec
	prog   *ebpf.Program // once loaded
}

// name is the program's name in the BPF object: "handle_set_state".
func (a attachment) name() string { return a.spec.Name }

// choosePrograms lists the programs this kernel takes, in attach order:
// for every tracepoint present, its main program and then its twin, so
// the twin's check finds the main one done.
func (f Features) choosePrograms(s *bpfProgramSpecs) []attachment {
	var out []attachment
	for i, h := range hookTable {
		if !f.Hooks[i].Present {
			continue
		}
		main, nested := h.programs(f, s)
		out = append(out,
			attachment{tracepoint: h.tracepoint, hook: h.hook, spec: main},
			attachment{tracepoint: h.tracepoint, hook: h.hook, spec: nested, nested: true})
	}
	return out
}

// keepOnly removes from spec every program not chosen: one for an absent
// tracepoint, or for the prototype variant this kernel lacks, would fail
// to load.
func keepOnly(spec *ebpf.CollectionSpec, chosen []attachment) {
	keep := make(map[*ebpf.ProgramSpec]bool, len(chosen))
	for _, a := range chosen {
		keep[a.spec] = true
	}
	for name, ps := range spec.Programs {
		if !keep[ps] {
			delete(spec.Programs, name)
		}
	}
}

// capabilities reads the effective capability set of this process.
func capabilities() (bpf, perfmon, sysAdmin bool) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false, false, false
	}
	has := func(c uint) bool { return data[c/32].Effective&(1<<(c%32)) != 0 }
	return has(unix.CAP_BPF), has(unix.CAP_PERFMON), has(unix.CAP_SYS_ADMIN)
}
