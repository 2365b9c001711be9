// SPDX-License-Identifier: GPL-2.0
/*
 * tcpscope's kernel side: BTF-typed tracepoint programs that follow the TCP
 * lifecycle. In the aggregated mode (the default) each connection socket
 * keeps its own timeline in socket storage and sends it as one struct
 * conn_record when it closes; listeners, request and timewait sockets and
 * socketless events still send one struct event each (keep_state() says
 * which and why). In the per-event mode (record --events) every event is
 * a struct event. Both go to one ring buffer, told apart by their size.
 *
 * Every program is tp_btf, not a classic tracepoint: only BTF-typed programs
 * may call bpf_get_socket_cookie() (classic ones are refused "helper #46"),
 * they read the socket with CO-RE instead of the tracepoint's copied fields,
 * and they skip the trace-buffer copy.
 */
#include "tcpscope_kernel.h"
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "event.h"

char LICENSE[] SEC("license") = "GPL";

/* Filters, set by user space before load. Zero counts mean "no filter". */
const volatile __u32 filter_port_count = 0;
const volatile __u16 filter_ports[MAX_FILTER] = {};
const volatile __u32 filter_netns_count = 0;
const volatile __u32 filter_netns[MAX_FILTER] = {};
/*
 * Owner filters (owner_wanted()): the process that owns a socket, by tgid
 * and by process name (16 bytes, NUL-padded as current_process_comm() writes
 * it, compared as two words), and its cgroup v2: an id and its level, which
 * keep the cgroup and everything below it.
 */
const volatile __u32 filter_pid_count = 0;
const volatile __u32 filter_pids[MAX_FILTER] = {};
const volatile __u32 filter_comm_count = 0;
const volatile __u64 filter_comms[MAX_FILTER][2] = {};
const volatile __u32 filter_cgroup_count = 0;
const volatile __u64 filter_cgroups[MAX_FILTER] = {};
const volatile __u32 filter_cgroup_levels[MAX_FILTER] = {};
/*
 * Ring-buffer wakeups: 0 wakes the reader on every event. Otherwise events
 * are submitted with BPF_RB_NO_WAKEUP until this many bytes are waiting,
 * and the reader also polls on a timer.
 */
const volatile __u64 wakeup_bytes = 0;
/* The aggregated mode (conn records); false is the per-event mode. */
const volatile bool aggregate = false;
/* Aggregated mode: also send a connection's record so far when it becomes
 * ESTABLISHED, so user space sees it begin while it lives (see keep_state()). */
const volatile bool early_established = false;
/* The running kernel's enum skb_drop_reason values for TCP_LISTEN_OVERFLOW
 * and NO_SOCKET (their numbers differ between kernels). */
const volatile __u32 listen_overflow_reason = 0;
const volatile __u32 no_socket_reason = 0;

/* Make bpf2go emit Go declarations for the record and its enums. */
const struct event *unused_event __attribute__((unused));
const enum event_kind *unused_kind __attribute__((unused));
const enum event_flag *unused_flag __attribute__((unused));
const enum counter *unused_counter __attribute__((unused));
const enum hook *unused_hook __attribute__((unused));
const enum limits *unused_limits __attribute__((unused));
const struct conn_record *unused_record __attribute__((unused));
const enum conn_flag *unused_conn_flag __attribute__((unused));
const enum record_flag *unused_record_flag __attribute__((unused));

_Static_assert(sizeof(struct conn) <= 256, "socket storage must stay within 256 bytes");
_Static_assert(sizeof(struct conn_record) != sizeof(struct event),
	       "user space tells records from events by their size");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, DEFAULT_RINGBUF_BYTES); /* resized by user space */
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/*
 * Socket storage. A listening socket gets it at CLOSE->LISTEN, which runs
 * in the listen() caller's context: its owner and cookie (CONN_F_LISTENER).
 * BPF_F_CLONE makes sk_clone_lock() copy it into every child socket before
 * inet_csk_clone_lock() fires the child's LISTEN->SYN_RECV event, so a
 * server-side connection knows its listener and owner although that event
 * runs in softirq context. In the aggregated mode a connection socket keeps
 * its timeline here too (struct conn); the storage goes with the socket
 * (bpf_sk_storage_free() at __sk_destruct()), so nothing needs deleting.
 * Request sockets (TCP_NEW_SYN_RECV) and timewait sockets are not full
 * sockets and can have no storage: their events always stream.
 */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC | BPF_F_CLONE);
	__type(key, int);
	__type(value, struct conn);
} conns SEC(".maps");

/* A listener that predates the trace, by namespace and port (host order). */
struct listen_key {
	__u32 netns;
	__u32 port;
};

/* Its owner, as user space found it: the process holding its socket. */
struct listen_owner {
	__u32 tgid;
	char comm[16];
};

/*
 * Listeners open before the trace began whose owner the pid and comm
 * filters want. Such a listener has no storage (its CLOSE->LISTEN was not
 * seen), so its children would have no owner; user space finds the
 * process holding each listening socket (sock_diag, /proc/PID/fd) once
 * every program is attached and puts the wanted ones here. A child of one
 * is then given storage with that owner when it appears (adopt_child()).
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct listen_key);
	__type(value, struct listen_owner);
} preexisting SEC(".maps");

/*
 * The network namespaces that have a socket with storage: the
 * end-of-recording walk (iter/tcp) reads one namespace per iterator, so
 * user space walks these, including namespaces nothing streamed from.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u8);
} storage_netns SEC(".maps");

/* The end-of-recording walk builds each record here: too big for the stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct conn_record);
} scratch SEC(".maps");

/* Atomic although per-CPU: a _nested program may count while the program
 * it interrupted, on the same CPU, is between its load and its store. */
static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);

	if (v)
		__sync_fetch_and_add(v, 1);
}

/*
 * Per CPU and per hook: 1 while the hook's main program runs on this CPU.
 *
 * The kernel runs a tracing program at most once per CPU at a time:
 * __bpf_trace_run() (kernel/trace/bpf_trace.c) skips a program whose
 * per-CPU prog->active is already set and counts the skip only in the
 * program's recursion_misses. That happens when a softirq runs on the exit
 * of an interrupt that came while the program ran in process context
 * (tracepoints disable preemption, not interrupts). On loopback that
 * softirq can carry whole handshakes, both ends' SYN_RECV and ESTABLISHED
 * at once, or a SYN retransmit from the timer: they vanished with no
 * counter but that one. So every hook has two programs: the main one sets
 * this flag while it runs; its _nested twin does nothing unless the flag
 * says the main one is busy on this CPU, that is, was just skipped, and
 * then handles the event. The twin is itself skipped only when it is busy
 * too, which a softirq within a softirq cannot cause. A skip of the main
 * program the twin did not handle is a lost event: user space reports the
 * main program's recursion misses minus COUNTER_NESTED of its hook.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, HOOK_MAX);
	__type(key, __u32);
	__type(value, __u32);
} running SEC(".maps");

static __always_inline __u32 *running_flag(__u32 hook)
{
	return bpf_map_lookup_elem(&running, &hook);
}

/* The main program of a tracepoint and its _nested twin (see running). */
#define HOOK_PROGRAMS(name, tp, hook, body)				\
SEC("tp_btf/" tp)							\
int name(__u64 *ctx)							\
{									\
	__u32 *busy = running_flag(hook);				\
									\
	if (busy)							\
		*busy = 1;						\
	body(ctx);							\
	if (busy)							\
		*busy = 0;						\
	return 0;							\
}									\
SEC("tp_btf/" tp)							\
int name##_nested(__u64 *ctx)						\
{									\
	__u32 *busy = running_flag(hook);				\
									\
	if (!busy || !*busy)						\
		return 0;						\
	count(COUNTER_NESTED + hook);					\
	body(ctx);							\
	return 0;							\
}

static __always_inline bool netns_wanted(__u32 netns)
{
	if (filter_netns_count == 0)
		return true;
	for (int i = 0; i < MAX_FILTER; i++) {
		if (i >= filter_netns_count)
			break;
		if (filter_netns[i] == netns)
			return true;
	}
	return false;
}

static __always_inline bool ports_wanted(__u16 sport, __u16 dport)
{
	if (filter_port_count == 0)
		return true;
	for (int i = 0; i < MAX_FILTER; i++) {
		if (i >= filter_port_count)
			break;
		if (filter_ports[i] == sport || filter_ports[i] == dport)
			return true;
	}
	return false;
}

/*
 * The name of the current process, as /proc/PID/comm shows it: its thread
 * group leader's comm. bpf_get_current_comm() copies current->comm, the
 * calling thread's (bpf_get_current_comm, kernel/bpf/helpers.c), which a
 * thread renames with prctl(PR_SET_NAME) (thread pools of the JVM, tokio,
 * glibc's pthread_setname_np); /proc/PID/comm reads the comm of the task
 * PID names (comm_show(), fs/proc/base.c), the leader.
 * Every comm taken here goes with a tgid (an owner, an event's process),
 * so it is the process's everywhere: --comm, the records and the events
 * agree with /proc/PID/comm and with the owners user space reads from
 * /proc for listeners that predate the trace. Zero-padded, as the filter
 * compares all 16 bytes.
 */
static __always_inline void current_process_comm(char *comm)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct task_struct *leader = BPF_CORE_READ(task, group_leader);

	__builtin_memset(comm, 0, 16);
	bpf_probe_read_kernel_str(comm, 16, &leader->comm);
}

/* Whether the pid or comm filters are set: they need the owner's task. */
static __always_inline bool task_filters(void)
{
	return filter_pid_count || filter_comm_count;
}

/* Whether the pid and comm filters keep a socket owned by this task. */
static __always_inline bool task_wanted(__u32 tgid, const char *comm)
{
	__u64 name[2];
	bool found;

	if (filter_pid_count) {
		found = false;
		for (int i = 0; i < MAX_FILTER; i++) {
			if (i >= filter_pid_count)
				break;
			if (filter_pids[i] == tgid) {
				found = true;
				break;
			}
		}
		if (!found)
			return false;
	}
	if (!filter_comm_count)
		return true;
	__builtin_memcpy(name, comm, sizeof(name));
	for (int i = 0; i < MAX_FILTER; i++) {
		if (i >= filter_comm_count)
			break;
		if (filter_comms[i][0] == name[0] && filter_comms[i][1] == name[1])
			return true;
	}
	return false;
}

/* The pid and comm filters for the current task: connect() and listen()
 * run in the context of the process that owns the socket. */
static __always_inline bool current_wanted(void)
{
	char comm[16];

	if (!task_filters())
		return true;
	current_process_comm(comm);
	return task_wanted(bpf_get_current_pid_tgid() >> 32, comm);
}

/*
 * The id of cg's ancestor at level (cg itself at its own level): since
 * 5.19 cgroup.ancestors[] points to them, before it cgroup.ancestor_ids[]
 * held their ids (cgroup_ancestor(), include/linux/cgroup.h). cg was read
 * with probes, so is it.
 */
static __always_inline __u64 cgroup_ancestor_id(struct cgroup *cg, __u32 level)
{
	struct cgroup___ids *old = (void *)cg;
	struct cgroup *a = NULL;
	__u64 id = 0;

	/* Offsets, not &cg->ancestors[level]: a relocation that indexes a
	 * flexible array is refused by the loader. */
	if (bpf_core_field_exists(cg->ancestors)) {
		__u64 at = (__u64)cg + bpf_core_field_offset(cg->ancestors) + level * sizeof(a);

		if (bpf_probe_read_kernel(&a, sizeof(a), (void *)at) || !a)
			return 0;
		return BPF_CORE_READ(a, kn, id);
	}
	if (bpf_core_field_exists(old->ancestor_ids)) {
		__u64 at = (__u64)cg + bpf_core_field_offset(old->ancestor_ids) + level * sizeof(id);

		bpf_probe_read_kernel(&id, sizeof(id), (void *)at);
	}
	return id;
}

/*
 * Whether the cgroup filter keeps the sockets of owner, a full socket: its
 * cgroup (see sk_cgroup_id()) is one of the filter's or below one of them,
 * that is, its ancestor at the filter's level is the filter's cgroup.
 */
static __always_inline bool cgroup_wanted(const struct sock *owner)
{
	struct cgroup *cg;
	__u32 level;

	if (filter_cgroup_count == 0)
		return true;
	if (!owner || !bpf_core_field_exists(owner->sk_cgrp_data.cgroup))
		return false;
	cg = BPF_CORE_READ(owner, sk_cgrp_data.cgroup);
	if (!cg)
		return false;
	level = BPF_CORE_READ(cg, level);
	for (int i = 0; i < MAX_FILTER; i++) {
		if (i >= filter_cgroup_count)
			break;
		if (filter_cgroup_levels[i] <= level &&
		    cgroup_ancestor_id(cg, filter_cgroup_levels[i]) == filter_cgroups[i])
			return true;
	}
	return false;
}

/*
 * The key of a full socket in preexisting: its namespace and local port,
 * read from inet_sport as sk_tuple() does (inet_put_port() has cleared
 * skc_num by a listener's LISTEN->CLOSE).
 */
static __always_inline struct listen_key preexisting_key(const struct sock *sk)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock((void *)sk);
	struct listen_key k = {
		.netns = sk->__sk_common.skc_net.net->ns.inum,
		.port = sk->__sk_common.skc_num,
	};

	if (tp)
		k.port = bpf_ntohs(tp->inet_conn.icsk_inet.inet_sport);
	return k;
}

/* The owner user space found for the listener sk is, or came from, when
 * that listener predates the trace (see preexisting). */
static __always_inline struct listen_owner *preexisting_owner(const struct sock *sk)
{
	struct listen_key k = preexisting_key(sk);

	return bpf_map_lookup_elem(&preexisting, &k);
}


/*
 * An entry of preexisting names the listener user space found on (netns,
 * port), not whatever listens there later: it goes when a listener on that
 * port starts (CLOSE->LISTEN: the new one has storage if the filters want
 * its owner, and no children to adopt if they do not) and when one without
 * storage stops (LISTEN->CLOSE: the listener found, or one the filters did
 * not want, which started after it). Two listeners sharing the port
 * (SO_REUSEPORT) cannot be told apart by a child, so a new one makes the
 * older one's children unowned rather than misnamed.
 */
static __always_inline void forget_preexisting(struct sock *sk, int oldstate, int newstate)
{
	struct listen_key k;

	if (!task_filters())
		return;
	if (newstate != TCP_LISTEN && !(oldstate == TCP_LISTEN && newstate == TCP_CLOSE))
		return;
	if (newstate == TCP_CLOSE && bpf_sk_storage_get(&conns, sk, 0, 0))
		return;
	k = preexisting_key(sk);
	bpf_map_delete_elem(&preexisting, &k);
}

/*
 * Reads go straight through the BTF-typed pointers a tp_btf program gets:
 * the verifier turns each load into a fault-safe one (BPF_PROBE_MEM), far
 * cheaper than a bpf_probe_read_kernel() call per field.
 */
static __always_inline __u32 sk_netns(const struct sock_common *skc)
{
	return skc->skc_net.net->ns.inum;
}

/*
 * The cgroup v2 id of a full socket's owner. cgroup_sk_alloc()
 * (kernel/cgroup/cgroup.c) sets sk_cgrp_data.cgroup when the socket is
 * made, in the creating task's context, to that task's cgroup on the
 * default (v2) hierarchy, whatever v1 hierarchies are mounted besides (the
 * v1 net_cls/net_prio data has had its own fields since 5.15); a socket
 * made in interrupt context gets the root cgroup. sk_clone_lock() copies
 * it into a listener's children (cgroup_sk_clone()), so a server-side
 * connection is in its listener's cgroup, the one of the process that made
 * the listening socket, even when that predates the trace. It never
 * changes: a process moved to another cgroup keeps its sockets' cgroup.
 * The id is the cgroup directory's kernfs id, its inode number, the value
 * bpf_get_current_cgroup_id() gives for a task in it.
 */
static __always_inline __u64 sk_cgroup_id(const struct sock *sk)
{
	/* Read with probes: sk may be a request's listener, which the
	 * verifier only knows as a scalar (see owner_sk()). Before 5.15 the
	 * pointer was packed in a tagged word: 0, unknown. */
	if (!sk || !bpf_core_field_exists(sk->sk_cgrp_data.cgroup))
		return 0;
	return BPF_CORE_READ(sk, sk_cgrp_data.cgroup, kn, id);
}

static __always_inline struct event *reserve(__u8 kind)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	__u64 id;

	if (!e) {
		count(COUNTER_LOST);
		return NULL;
	}
	__builtin_memset(e, 0, sizeof(*e));
	id = bpf_get_current_pid_tgid();
	e->ts_ns = bpf_ktime_get_boot_ns();
	e->pid = (__u32)id;
	e->tgid = id >> 32;
	e->cpu = bpf_get_smp_processor_id();
	e->kind = kind;
	current_process_comm(e->comm);
	return e;
}

static __always_inline void submit(void *e)
{
	__u64 flags = 0;

	if (wakeup_bytes) {
		if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes)
			flags = BPF_RB_FORCE_WAKEUP;
		else
			flags = BPF_RB_NO_WAKEUP;
	}
	bpf_ringbuf_submit(e, flags);
}

/* The tuple of a socket: full, request (ir_* live in sock_common) or timewait. */
struct tuple {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u16 family;
};

static __always_inline void sk_tuple(const struct sock_common *skc, bool full, struct tuple *t)
{
	t->family = skc->skc_family;
	if (t->family == AF_INET6) {
		__builtin_memcpy(t->saddr, skc->skc_v6_rcv_saddr.in6_u.u6_addr8, 16);
		__builtin_memcpy(t->daddr, skc->skc_v6_daddr.in6_u.u6_addr8, 16);
	} else {
		__be32 s = skc->skc_rcv_saddr, d = skc->skc_daddr;

		__builtin_memcpy(t->saddr, &s, 4);
		__builtin_memcpy(t->daddr, &d, 4);
	}
	/*
	 * inet_sport, not skc_num: inet_put_port() clears inet_num before the
	 * X->CLOSE transition, while inet_sport survives to the end. Request
	 * and timewait socks have no inet_sport; their skc_num is ir_num/tw_num.
	 */
	if (full) {
		/* inet_sport lies past struct sock: reach it through the
		 * tcp_sock type the helper vouches for. */
		struct tcp_sock *tp = bpf_skc_to_tcp_sock((void *)skc);

		t->sport = tp ? bpf_ntohs(tp->inet_conn.icsk_inet.inet_sport) : skc->skc_num;
	} else
		t->sport = skc->skc_num;
	t->dport = bpf_ntohs(skc->skc_dport);
}

/*
 * The tuple of a packet this host answers or drops: its addresses,
 * reversed, so saddr is the local side. A reset sent takes it whenever
 * there is a packet, because the socket may be absent (no listener: reason
 * NO_SOCKET), a listener (no remote address) or a request/timewait sock.
 */
static __always_inline bool skb_reply_tuple(const struct sk_buff *skb, struct tuple *t)
{
	unsigned char *head = skb->head;
	__u16 nh = skb->network_header, th = skb->transport_header;
	struct tcpscope_tcp_ports ports;
	__u8 ver;

	if (bpf_probe_read_kernel(&ver, 1, head + nh))
		return false;
	if ((ver >> 4) == 4) {
		struct tcpscope_iphdr ip;

		if (bpf_probe_read_kernel(&ip, sizeof(ip), head + nh))
			return false;
		t->family = AF_INET;
		__builtin_memcpy(t->saddr, &ip.daddr, 4);
		__builtin_memcpy(t->daddr, &ip.saddr, 4);
	} else if ((ver >> 4) == 6) {
		struct tcpscope_ipv6hdr ip6;

		if (bpf_probe_read_kernel(&ip6, sizeof(ip6), head + nh))
			return false;
		t->family = AF_INET6;
		__builtin_memcpy(t->saddr, ip6.daddr, 16);
		__builtin_memcpy(t->daddr, ip6.saddr, 16);
	} else {
		return false;
	}
	if (bpf_probe_read_kernel(&ports, sizeof(ports), head + th))
		return false;
	t->sport = bpf_ntohs(ports.dest);
	t->dport = bpf_ntohs(ports.source);
	return true;
}

/* The flags byte of the TCP header (offset 13: CWR ECE URG ACK PSH RST SYN
 * FIN) of the segment a reset answers: a SYN means a refused connect, any
 * other segment a connection the peer still believes in. */
static __always_inline __u8 skb_tcp_flags(const struct sk_buff *skb)
{
	__u8 flags = 0;

	bpf_probe_read_kernel(&flags, 1, skb->head + skb->transport_header + 13);
	return flags;
}

static __always_inline bool is_full(__u8 state)
{
	return state != TCP_NEW_SYN_RECV && state != TCP_TIME_WAIT;
}

/*
 * Who owns an event's socket, by its state: a full socket says itself. A
 * request socket has no sk_cgrp_data and no storage; its listener has
 * (its child will be cloned from it), but rsk_listener shares a union with
 * skc_flags in sock_common, so the verifier types it as the scalar and it
 * can only be read with probes: its cgroup is known, its storage is not.
 * A timewait sock keeps neither: the owner is unknown.
 */
static __always_inline void owner_sk(struct sock *sk, __u8 state, const struct sock **owner,
				     const struct sock **req_listener)
{
	if (state == TCP_TIME_WAIT)
		return;
	if (state != TCP_NEW_SYN_RECV) {
		*owner = sk;
		return;
	}
	*req_listener = BPF_CORE_READ((struct request_sock *)sk, __req_common.skc_listener);
}

/* What an event is about, as its handler tells begin_event(). */
struct source {
	__u32 netns;                   /* namespace, for the filter and the record */
	const struct sock_common *skc; /* tuple from this socket... */
	bool full;                     /* ...a full socket (see sk_tuple()) */
	const struct sk_buff *skb;     /* or, when set, from this packet, reversed */
	const void *cookie_of;         /* the socket whose cookie the event carries, or NULL */
	const struct sock *owner;      /* the full socket whose owner the event has, or NULL
					* (a timewait sock, no socket): see owner_sk() */
	const struct sock *req_listener; /* a request socket's listener: its cgroup only */
	bool task_owner;               /* the current task owns the socket (connect(), listen()) */
	__u8 state;                    /* socket state when the event fired */
};

/*
 * Whether the owner filters keep an event, by the owner of its socket.
 *
 * The owner is decided where it is known for sure, in the owning task's
 * context: the connect() caller of a client socket (CLOSE->SYN_SENT), the
 * listen() caller of a listener (CLOSE->LISTEN). Socket storage carries it
 * to later events, which often run in softirq context on behalf of some
 * other task: a listener's storage is remembered only when the filters keep
 * it, and its children inherit it (see conns), so a server-side child is
 * kept when its listener's owner is, never by the task its handshake runs
 * on. A socket without storage has no known owner (it predates the trace,
 * or its owner was not wanted) and the pid and comm filters drop it.
 * The cgroup needs no storage: every full socket carries its own (see
 * sk_cgroup_id()), a request socket its listener's. Events whose socket
 * keeps no owner (a timewait sock's reset, a reset sent with no socket)
 * are dropped by every owner filter.
 */
static __always_inline bool owner_wanted(const struct source *src)
{
	struct conn *o;

	if (!filter_cgroup_count && !task_filters())
		return true;
	if (!cgroup_wanted(src->owner ? src->owner : src->req_listener))
		return false;
	if (!task_filters())
		return true;
	if (src->task_owner)
		return current_wanted();
	if (!src->owner)
		return false;
	o = bpf_sk_storage_get(&conns, (struct sock *)src->owner, 0, 0);
	if (!o) {
		/* A listener that predates the trace, or its child's first
		 * event (LISTEN->SYN_RECV), before adopt_child(). */
		struct listen_owner *p = src->state == TCP_LISTEN ? preexisting_owner(src->owner) : NULL;

		return p && task_wanted(p->tgid, p->comm);
	}
	/* Storage made midway through a connection holds a guess (see
	 * conn_of()); the task filters never make it. */
	if ((o->flags & (CONN_F_MIDLIFE | CONN_F_PROCESS)) == CONN_F_MIDLIFE)
		return false;
	return task_wanted(o->tgid, o->comm);
}

/*
 * The prologue every handler shares: the namespace and owner filters, then the tuple
 * (from the packet when there is one, else from the socket; a packet that
 * cannot be read counts COUNTER_UNREADABLE), the port filter, the
 * ring-buffer reservation (a full buffer counts COUNTER_LOST) and the fields
 * every kind carries. Returns NULL when the event is not wanted or could not
 * be reserved; *wanted, when asked for, tells the two apart.
 */
static __always_inline struct event *begin_event(__u8 kind, const struct source *src, bool *wanted)
{
	struct tuple t = {};
	struct event *e;

	if (wanted)
		*wanted = false;
	if (!netns_wanted(src->netns) || !owner_wanted(src))
		return NULL;
	if (src->skb) {
		if (!skb_reply_tuple(src->skb, &t)) {
			count(COUNTER_UNREADABLE);
			return NULL;
		}
	} else {
		sk_tuple(src->skc, src->full, &t);
	}
	if (!ports_wanted(t.sport, t.dport))
		return NULL;
	if (wanted)
		*wanted = true;
	e = reserve(kind);
	if (!e)
		return NULL;
	e->netns = src->netns;
	e->state = src->state;
	if (src->cookie_of)
		e->cookie = bpf_get_socket_cookie((void *)src->cookie_of);
	e->cgroup_id = sk_cgroup_id(src->owner ? src->owner : src->req_listener);
	__builtin_memcpy(e->saddr, t.saddr, 16);
	__builtin_memcpy(e->daddr, t.daddr, 16);
	e->sport = t.sport;
	e->dport = t.dport;
	e->family = t.family;
	return e;
}

/* begin_event() for an event about a full socket in its own namespace. */
static __always_inline struct event *begin_sk_event(__u8 kind, struct sock *sk)
{
	struct source src = {
		.netns = sk_netns(&sk->__sk_common),
		.skc = &sk->__sk_common,
		.full = true,
		.cookie_of = sk,
		.owner = sk,
		.state = sk->__sk_common.skc_state,
	};

	return begin_event(kind, &src, NULL);
}

/* The tcp_sock counters (EVENT_F_TCP_INFO), total_rto* where the kernel has them. */
static __always_inline void fill_tcp_info(struct event *e, const struct sock *sk)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock((void *)sk);

	if (!tp)
		return;
	e->total_retrans = tp->total_retrans;
	e->srtt_us = tp->srtt_us >> 3;
	e->bytes_received = tp->bytes_received;
	e->bytes_acked = tp->bytes_acked;
	e->flags |= EVENT_F_TCP_INFO;
	if (bpf_core_field_exists(tp->total_rto)) {
		e->total_rto = tp->total_rto;
		e->total_rto_time_ms = tp->total_rto_time;
		e->flags |= EVENT_F_HAS_RTO;
	}
}

/* The owner of the listener sk came from, if its socket storage says (see conns). */
static __always_inline void fill_owner(struct event *e, struct sock *sk)
{
	struct conn *o = bpf_sk_storage_get(&conns, sk, 0, 0);

	if (!o || !(o->flags & (CONN_F_LISTENER | CONN_F_OWNER)))
		return;
	e->listener_cookie = o->listener_cookie;
	e->owner_tgid = o->tgid;
	__builtin_memcpy(e->owner_comm, o->comm, sizeof(e->owner_comm));
	e->flags |= EVENT_F_OWNER;
}

/* Notes sk's namespace in storage_netns (see there). */
static __always_inline void note_netns(const struct sock *sk)
{
	__u32 ns = sk_netns(&sk->__sk_common);
	__u8 one = 1;

	if (!bpf_map_lookup_elem(&storage_netns, &ns))
		bpf_map_update_elem(&storage_netns, &ns, &one, BPF_NOEXIST);
}

/* sk's storage, made when missing (a new one is zeroed: bpf_selem_alloc()),
 * its namespace noted for the walk; a failure to make it is counted. */
static __always_inline struct conn *make_conn(struct sock *sk)
{
	struct conn *c = bpf_sk_storage_get(&conns, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);

	if (!c) {
		count(COUNTER_STORAGE_FAIL);
		return NULL;
	}
	note_netns(sk);
	return c;
}

static __always_inline void remember_listener(struct sock *sk, __u64 cookie)
{
	struct conn *o = make_conn(sk);

	if (!o)
		return;
	__builtin_memset(o, 0, sizeof(*o));
	o->flags = CONN_F_LISTENER;
	o->listener_cookie = cookie;
	o->tgid = bpf_get_current_pid_tgid() >> 32;
	current_process_comm(o->comm);
}

/*
 * The per-event mode keeps no storage for a client socket, except for the
 * pid and comm filters, which must know its owner when its later events run
 * in softirq context: the connect() caller, when wanted (see owner_wanted()).
 * A socket connected again by another task drops what it had.
 */
static __always_inline void remember_client(struct sock *sk, bool wanted)
{
	struct conn *o;

	if (!wanted) {
		bpf_sk_storage_delete(&conns, sk);
		return;
	}
	o = bpf_sk_storage_get(&conns, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!o) {
		count(COUNTER_STORAGE_FAIL);
		return;
	}
	__builtin_memset(o, 0, sizeof(*o));
	o->tgid = bpf_get_current_pid_tgid() >> 32;
	current_process_comm(o->comm);
}

/* A listener's accept queue: connections waiting for accept() and the limit. */
static __always_inline void fill_accept_queue(struct event *e, const struct sock *sk)
{
	e->backlog = sk->sk_ack_backlog;
	e->max_backlog = sk->sk_max_ack_backlog;
}

/*
 * What a retransmitted segment was: TCP_SKB_CB(skb) (struct tcp_skb_cb in
 * skb->cb) holds its flags and sequence range, as __tcp_retransmit_skb()
 * sent it (after any split or trim). end_seq - seq counts the payload plus
 * one for a SYN and one for a FIN, so what is left beyond those is data. A
 * FIN may ride on a data segment (tcp_send_fin() tacks it onto an unsent
 * tail, tcp_retrans_try_collapse() merges a lone FIN into the segment
 * before it): the flags alone cannot tell a bare FIN from data.
 */
static __always_inline void retransmitted_segment(const struct sk_buff *skb, __u8 *seg_flags, __u8 *flags)
{
	const struct tcp_skb_cb *tcb = (const struct tcp_skb_cb *)&skb->cb[0];
	__u32 seq = 0, end_seq = 0, len;
	__u8 tcp_flags = 0;

	if (bpf_core_read(&tcp_flags, sizeof(tcp_flags), &tcb->tcp_flags) ||
	    bpf_core_read(&seq, sizeof(seq), &tcb->seq) ||
	    bpf_core_read(&end_seq, sizeof(end_seq), &tcb->end_seq))
		return;
	*seg_flags = tcp_flags;
	len = end_seq - seq;
	if (tcp_flags & TCPHDR_SYN)
		len--;
	if (tcp_flags & TCPHDR_FIN)
		len--;
	if (len > 0 && len < 0x80000000)
		*flags |= EVENT_F_SEG_DATA;
}

/* ------------------------------------------------------------------------
 * The aggregated mode: a connection's timeline in its socket storage.
 */

/* Whether the filters keep sk, for a socket seen the first time; owner_ok:
 * its owner is known and the pid and comm filters want it (see
 * owner_wanted()). */
static __always_inline bool sk_wanted(struct sock *sk, bool owner_ok)
{
	struct tuple t = {};

	if (!netns_wanted(sk_netns(&sk->__sk_common)) || !cgroup_wanted(sk))
		return false;
	if (task_filters() && !owner_ok)
		return false;
	if (filter_port_count == 0)
		return true;
	sk_tuple(&sk->__sk_common, true, &t);
	return ports_wanted(t.sport, t.dport);
}

/* The owner is the current task (connect() caller, or whoever is on the CPU). */
static __always_inline void take_owner(struct conn *c)
{
	c->tgid = bpf_get_current_pid_tgid() >> 32;
	current_process_comm(c->comm);
}

/* Where an event of a connection socket goes: into storage (KEEP), sent
 * one by one as in the per-event mode (STREAM), or nowhere (DROP: the
 * filters do not want the socket). */
enum place { KEEP, STREAM, DROP };

/*
 * The storage of a connection socket for an event, made when missing. A
 * socket whose storage is missing was not seen opening: it predates the
 * trace, or its storage could not be made, in which case it streams.
 * After its record was sent at the close, a socket's late events (the
 * reset tcp_send_active_reset() traces after tcp_set_state(TCP_CLOSE), the
 * error report of tcp_done()) stream too and user space joins them.
 */
static __always_inline struct conn *conn_of(struct sock *sk, enum place *where)
{
	struct conn *c = bpf_sk_storage_get(&conns, sk, 0, 0);

	*where = STREAM;
	if (c) {
		if (c->sent || (c->flags & CONN_F_LISTENER))
			return NULL;
		*where = KEEP;
		return c;
	}
	if (!sk_wanted(sk, false)) {
		*where = DROP;
		return NULL;
	}
	c = make_conn(sk);
	if (!c)
		return NULL;
	c->flags = CONN_F_MIDLIFE;
	take_owner(c);
	*where = KEEP;
	return c;
}

/* CLOSE->SYN_SENT: connect() runs in the caller's context, which owns the
 * socket (in_task). A socket connected again after a failed connect()
 * starts over. */
static __always_inline struct conn *start_client(struct sock *sk, enum place *where, bool in_task)
{
	struct conn *c = bpf_sk_storage_get(&conns, sk, 0, 0);

	*where = STREAM;
	/* The filters decide anew: a socket connected again may go elsewhere,
	 * and a child whose listener was not wanted may carry its storage. */
	if (!sk_wanted(sk, in_task && current_wanted())) {
		if (c)
			bpf_sk_storage_delete(&conns, sk);
		*where = DROP;
		return NULL;
	}
	if (c)
		__builtin_memset(c, 0, sizeof(*c));
	else if (!(c = make_conn(sk)))
		return NULL;
	take_owner(c);
	*where = KEEP;
	return c;
}

/*
 * A child of a listener that predates the trace, which user space found
 * the owner of (see preexisting): storage made with that owner, as the
 * listener's would have been copied (CONN_F_OWNER), when the filters keep
 * it. Only under the pid and comm filters, which fill preexisting.
 */
static __always_inline struct conn *adopt_child(struct sock *sk)
{
	struct listen_owner *p;
	struct conn *c;

	if (!task_filters())
		return NULL;
	p = preexisting_owner(sk);
	if (!p || !sk_wanted(sk, task_wanted(p->tgid, p->comm)))
		return NULL;
	c = make_conn(sk);
	if (!c)
		return NULL;
	c->flags = CONN_F_OWNER;
	c->tgid = p->tgid;
	__builtin_memcpy(c->comm, p->comm, sizeof(c->comm));
	return c;
}

/*
 * LISTEN->SYN_RECV: a child socket, whose storage is its listener's, copied
 * by sk_clone_lock() (BPF_F_CLONE) just before: keep the listener's owner
 * and cookie, reset everything else. A child of a listener that predates
 * the trace has no storage yet; the event runs in softirq context, so the
 * owner taken is whatever task is on the CPU (user space prefers the
 * listener's owner it learned from sock_diag). The pid and comm filters,
 * which cannot tell, drop it, unless user space found its listener's
 * owner (adopt_child()).
 */
static __always_inline struct conn *start_child(struct sock *sk, enum place *where)
{
	struct conn *c = bpf_sk_storage_get(&conns, sk, 0, 0);

	*where = STREAM;
	if (c && (c->flags & CONN_F_LISTENER)) {
		c->flags = CONN_F_OWNER;
		c->sent = 0;
		c->nslots = 0;
		c->est_total_retrans = 0;
		c->est_srtt_us = 0;
		c->est_total_rto = 0;
		c->est_total_rto_time_ms = 0;
		*where = KEEP;
		return c;
	}
	c = adopt_child(sk);
	if (c) {
		*where = KEEP;
		return c;
	}
	return start_client(sk, where, false);
}

/*
 * The record of sk as storage holds it now, with what the socket says at
 * this moment: cookie, namespace, tuple (read as the per-event mode reads
 * it, see sk_tuple()) and the tcp_sock counters.
 */
static __always_inline void fill_record(struct conn_record *r, struct sock *sk,
					const struct conn *c, __u8 flags)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	struct tuple t = {};

	/* The header, then only the slots in use: a record is written into
	 * ring-buffer memory no CPU has touched lately, and every 64-byte line
	 * written costs a cache miss; most records use 2 or 3 of the 13 slots.
	 * User space reads conn.nslots slots and nothing past them. */
	__builtin_memcpy(&r->conn, c, offsetof(struct conn, slots));
	for (int i = 0; i < CONN_SLOTS; i++) {
		if (i >= c->nslots)
			break;
		r->conn.slots[i] = c->slots[i];
	}
	r->cookie = bpf_get_socket_cookie(sk);
	r->netns = sk_netns(&sk->__sk_common);
	r->cgroup_id = sk_cgroup_id(sk);
	sk_tuple(&sk->__sk_common, true, &t);
	__builtin_memcpy(r->saddr, t.saddr, 16);
	__builtin_memcpy(r->daddr, t.daddr, 16);
	r->sport = t.sport;
	r->dport = t.dport;
	r->family = t.family;
	r->bytes_received = 0;
	r->bytes_acked = 0;
	r->total_retrans = 0;
	r->srtt_us = 0;
	r->total_rto = 0;
	r->total_rto_time_ms = 0;
	__builtin_memset(r->pad, 0, sizeof(r->pad));
	if (tp) {
		r->bytes_received = tp->bytes_received;
		r->bytes_acked = tp->bytes_acked;
		r->total_retrans = tp->total_retrans;
		r->srtt_us = tp->srtt_us >> 3;
		flags |= RECORD_F_TCP_INFO;
		if (bpf_core_field_exists(tp->total_rto)) {
			r->total_rto = tp->total_rto;
			r->total_rto_time_ms = tp->total_rto_time;
			flags |= RECORD_F_HAS_RTO;
		}
	}
	r->flags = flags;
}

/* Sends the slots in use and empties them. A full ring buffer loses
 * them: COUNTER_LOST_RECORDS, which user space reports as lost events. */
static __always_inline void send_record(struct sock *sk, struct conn *c, __u8 flags)
{
	struct conn_record *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);

	if (r) {
		fill_record(r, sk, c, flags);
		submit(r);
	} else {
		count(COUNTER_LOST_RECORDS);
	}
	c->nslots = 0;
}

/* The next free slot, stamped now. When all CONN_SLOTS are taken, they are
 * sent first as an early record: a busy connection costs more records, never
 * lost entries. */
static __always_inline struct slot *add_slot(struct sock *sk, struct conn *c, __u8 kind, __u8 state)
{
	__u32 n = c->nslots;
	struct slot *s;

	if (n >= CONN_SLOTS) {
		count(COUNTER_RECORDS_FULL);
		send_record(sk, c, RECORD_F_EARLY);
		n = 0;
	}
	if (n >= CONN_SLOTS)
		return NULL;
	s = &c->slots[n];
	c->nslots = n + 1;
	s->ts_ns = bpf_ktime_get_boot_ns();
	s->arg = 0;
	s->kind = kind;
	s->state = state;
	s->aux = 0;
	s->flags = 0;
	return s;
}

/* The tcp_sock counters at ESTABLISHED that the SYN_RECV measurement needs
 * (srtt, SYN-ACKs resent, RTOs); the byte counters are read at the close. */
static __always_inline void keep_established_info(struct sock *sk, struct conn *c)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);

	if (!tp)
		return;
	c->est_total_retrans = tp->total_retrans;
	c->est_srtt_us = tp->srtt_us >> 3;
	c->flags |= CONN_F_EST_INFO;
	if (bpf_core_field_exists(tp->total_rto)) {
		c->est_total_rto = tp->total_rto;
		c->est_total_rto_time_ms = tp->total_rto_time;
		c->flags |= CONN_F_EST_RTO;
	}
}

/*
 * A state change in the aggregated mode; false sends it as an event.
 *
 * Listeners stream: they are few, and user space must learn of them (and
 * of their accept queues) while they live. So do request and timewait
 * sockets' events, which have no storage (no state change fires for them
 * anyway: see on_set_state()). A connection socket's changes are kept, and
 * its record is sent when it closes. With early_established the record so
 * far is also sent at ESTABLISHED: user space then knows the connection
 * while it lives, which joins what streamed about its handshake (SYN-ACK
 * retransmits of its request socket, accept-queue drops) and its other end
 * as soon as the handshake is done, as in the per-event mode.
 */
static __always_inline bool keep_state(struct sock *sk, int oldstate, int newstate)
{
	enum place where;
	struct conn *c;
	struct slot *s;

	if (newstate == TCP_LISTEN || (oldstate == TCP_LISTEN && newstate == TCP_CLOSE))
		return false;
	if (oldstate == TCP_LISTEN)
		c = start_child(sk, &where);
	else if (oldstate == TCP_CLOSE && newstate == TCP_SYN_SENT)
		c = start_client(sk, &where, true);
	else
		c = conn_of(sk, &where);
	if (!c)
		return where == DROP;
	s = add_slot(sk, c, EVENT_STATE, oldstate);
	if (!s)
		return true;
	s->aux = newstate;
	switch (newstate) {
	case TCP_ESTABLISHED:
		keep_established_info(sk, c);
		if (early_established)
			send_record(sk, c, RECORD_F_EARLY);
		break;
	case TCP_FIN_WAIT1:
	case TCP_LAST_ACK:
		/* close() in process context: for a connection that predates
		 * the trace, the best owner there is. */
		if ((c->flags & (CONN_F_MIDLIFE | CONN_F_PROCESS)) == CONN_F_MIDLIFE) {
			take_owner(c);
			c->flags |= CONN_F_PROCESS;
		}
		break;
	case TCP_CLOSE:
		/* The end-of-recording walk may race for it: one of the two sends. */
		if (__sync_lock_test_and_set(&c->sent, 1) == 0)
			send_record(sk, c, RECORD_F_CLOSED);
		break;
	}
	return true;
}

/* Another event of a connection socket in the aggregated mode: its slot,
 * or NULL when it must stream (*stream) or be dropped. */
static __always_inline struct slot *keep_event(struct sock *sk, __u8 kind, __u8 state, bool *stream)
{
	enum place where;
	struct conn *c = conn_of(sk, &where);

	*stream = where == STREAM;
	if (!c)
		return NULL;
	return add_slot(sk, c, kind, state);
}

/*
 * sock:inet_sock_set_state (sk, oldstate, newstate). It also fires for SCTP,
 * MPTCP msk and DCCP sockets, hence the sk_protocol filter; it never fires
 * for request sockets (TCP_NEW_SYN_RECV is set directly by
 * inet_reqsk_alloc()) nor for TIME_WAIT (tcp_time_wait() hands over to a
 * timewait sock silently, then the full socket goes FIN_WAIT2/CLOSING->CLOSE).
 */
static __always_inline int on_set_state(__u64 *ctx)
{
	struct sock *sk = (struct sock *)ctx[0];
	int oldstate = (int)ctx[1], newstate = (int)ctx[2];
	struct source src = {
		.skc = &sk->__sk_common,
		.full = true,
		.cookie_of = sk,
		.owner = sk,
		.state = oldstate,
	};
	struct event *e;
	bool wanted;

	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	/* MPTCP and re-listen produce X->X; nothing changed. */
	if (oldstate == newstate)
		return 0;
	if (aggregate && keep_state(sk, oldstate, newstate))
		return 0;
	src.netns = sk_netns(&sk->__sk_common);
	src.task_owner = newstate == TCP_LISTEN || (oldstate == TCP_CLOSE && newstate == TCP_SYN_SENT);
	e = begin_event(EVENT_STATE, &src, &wanted);
	/* After begin_event(): a found listener's close is still its owner's. */
	forget_preexisting(sk, oldstate, newstate);
	if (!aggregate && task_filters() && oldstate == TCP_CLOSE && newstate == TCP_SYN_SENT)
		remember_client(sk, wanted);
	/* Before fill_owner(), which then names the owner. */
	if (task_filters() && !aggregate && wanted && oldstate == TCP_LISTEN && newstate == TCP_SYN_RECV &&
	    !bpf_sk_storage_get(&conns, sk, 0, 0))
		adopt_child(sk);
	/* A wanted listener is remembered even when its event found the ring
	 * buffer full: its children still name their owner. */
	if (wanted && newstate == TCP_LISTEN)
		remember_listener(sk, e ? e->cookie : bpf_get_socket_cookie(sk));
	if (!e)
		return 0;
	e->old_state = oldstate;
	e->new_state = newstate;
	/*
	 * The child of a listener appears as LISTEN->SYN_RECV, not CLOSE->SYN_RECV:
	 * sk_clone_lock() copied the listener's sk_state. Its cookie is the
	 * request socket's (inet_csk_clone_lock() copies ir_cookie), which is how
	 * SYN-ACK retransmits seen on the request join the connection.
	 */
	if (oldstate == TCP_LISTEN && newstate == TCP_SYN_RECV)
		fill_owner(e, sk);
	if (newstate == TCP_LISTEN) {
		e->max_backlog = sk->sk_max_ack_backlog;
		e->listener_cookie = e->cookie;
	}
	if (newstate == TCP_ESTABLISHED || newstate == TCP_CLOSE)
		fill_tcp_info(e, sk);
	submit(e);
	return 0;
}
HOOK_PROGRAMS(handle_set_state, "inet_sock_set_state", HOOK_SET_STATE, on_set_state)

static __always_inline int on_retransmit(struct sock *sk, const struct sk_buff *skb, int err, bool has_err)
{
	struct event *e;

	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	if (aggregate) {
		bool stream;
		struct slot *s = keep_event(sk, EVENT_RETRANSMIT, sk->__sk_common.skc_state, &stream);

		if (s) {
			s->arg = err;
			if (has_err)
				s->flags |= EVENT_F_HAS_ERR;
			if (skb)
				retransmitted_segment(skb, &s->aux, &s->flags);
		}
		if (!stream)
			return 0;
	}
	e = begin_sk_event(EVENT_RETRANSMIT, sk);
	if (!e)
		return 0;
	e->err = err;
	if (has_err)
		e->flags |= EVENT_F_HAS_ERR;
	/*
	 * Every resend passes here: the RTO timer (tcp_retransmit_timer), fast
	 * recovery (tcp_xmit_retransmit_queue) and the tail loss probe:
	 * tcp_send_loss_probe(), when it has no new data to send, resends the
	 * last segment sent, which after a close() is often the bare FIN. Such
	 * a probe fires two RTTs after the last send without an ACK, plus
	 * TCP_RTO_MIN (200 ms) when that segment is the only one in flight
	 * (tcp_schedule_loss_probe(); 207 ms measured on loopback). On a
	 * healthy connection the ACK was merely late.
	 */
	if (skb)
		retransmitted_segment(skb, &e->seg_flags, &e->flags);
	fill_tcp_info(e, sk);
	submit(e);
	return 0;
}

/* tcp:tcp_retransmit_skb (sk, skb) before 6.17. */
static __always_inline int on_retransmit_noerr(__u64 *ctx)
{
	return on_retransmit((struct sock *)ctx[0], (const struct sk_buff *)ctx[1], 0, false);
}
HOOK_PROGRAMS(handle_retransmit, "tcp_retransmit_skb", HOOK_RETRANSMIT, on_retransmit_noerr)

/*
 * tcp:tcp_retransmit_skb (sk, skb, err) since 6.17 (ad892e912b84): it now
 * also fires when __tcp_retransmit_skb() failed (-EBUSY, -ENOMEM,
 * -EHOSTUNREACH, a netfilter -EPERM); only err == 0 left the host. User space
 * loads this program or the one above, after reading the prototype from BTF.
 */
static __always_inline int on_retransmit_err(__u64 *ctx)
{
	return on_retransmit((struct sock *)ctx[0], (const struct sk_buff *)ctx[1], (int)ctx[2], true);
}
HOOK_PROGRAMS(handle_retransmit_err, "tcp_retransmit_skb", HOOK_RETRANSMIT, on_retransmit_err)

/*
 * tcp:tcp_retransmit_synack (sk, req), from tcp_rtx_synack() after a SYN-ACK
 * was resent for a request socket (timer or duplicate SYN). SYN-ACKs never go
 * through tcp_retransmit_skb: a request socket has no retransmit queue. sk is
 * the listener (or, with TCP Fast Open, the child in SYN_RECV).
 */
static __always_inline int on_synack_retransmit(__u64 *ctx)
{
	struct sock *sk = (struct sock *)ctx[0];
	const struct request_sock *req = (const struct request_sock *)ctx[1];
	const struct tcp_request_sock *treq = (const struct tcp_request_sock *)req;
	struct event *e;

	if (!req)
		return 0;
	/* The tuple and cookie are the request's; the child socket inherits
	 * the cookie. The state is the listener's. */
	struct source src = {
		.netns = sk_netns(&sk->__sk_common),
		.skc = &req->__req_common,
		.full = false,
		.cookie_of = req,
		.owner = sk,
		.state = sk->__sk_common.skc_state,
	};
	e = begin_event(EVENT_SYNACK_RETRANSMIT, &src, NULL);
	if (!e)
		return 0;
	e->listener_cookie = bpf_get_socket_cookie(sk);
	/*
	 * snt_synack is set by tcp_make_synack() for the first SYN-ACK only, from
	 * tcp_skb_timestamp_us(): CLOCK_MONOTONIC in us. num_retrans and
	 * num_timeout are read before inet_rtx_syn_ack() increments them.
	 */
	e->snt_synack_us = BPF_CORE_READ(treq, snt_synack);
	e->num_retrans = BPF_CORE_READ(req, num_retrans);
	e->num_timeout = BPF_CORE_READ_BITFIELD_PROBED(req, num_timeout);
	fill_accept_queue(e, sk);
	if (e->state == TCP_LISTEN)
		fill_owner(e, sk);
	submit(e);
	return 0;
}
HOOK_PROGRAMS(handle_synack_retransmit, "tcp_retransmit_synack", HOOK_SYNACK_RETRANSMIT, on_synack_retransmit)

static __always_inline int on_send_reset(struct sock *sk, const struct sk_buff *skb,
					 __u32 reason, bool has_reason)
{
	/* The tuple is the packet's whenever there is one (skb_reply_tuple()). */
	struct source src = {.skc = sk ? &sk->__sk_common : NULL, .skb = skb, .cookie_of = sk};
	struct event *e;

	if (!sk && !skb) {
		/* Nothing to take a tuple from (no caller of the tracepoint does this). */
		count(COUNTER_UNREADABLE);
		return 0;
	}
	if (sk) {
		src.state = sk->__sk_common.skc_state;
		src.full = is_full(src.state);
		owner_sk(sk, src.state, &src.owner, &src.req_listener);
		/* A connection socket's reset is kept with it; a listener's,
		 * a request's or a timewait's streams. */
		if (aggregate && src.full && src.state != TCP_LISTEN) {
			bool stream;
			struct slot *s = keep_event(sk, EVENT_RESET_SENT, src.state, &stream);

			if (s) {
				s->arg = reason;
				if (has_reason)
					s->flags |= EVENT_F_HAS_REASON;
				if (skb)
					s->aux = skb_tcp_flags(skb);
			}
			if (!stream)
				return 0;
		}
		/* tcp_send_reset is TCP-only, but a full MPTCP msk never gets here. */
		src.netns = sk_netns(&sk->__sk_common);
	} else if (skb) {
		/* No socket: the namespace of the device the packet came in on. */
		src.netns = BPF_CORE_READ(skb, dev, nd_net.net, ns.inum);
	}
	e = begin_event(EVENT_RESET_SENT, &src, NULL);
	if (!e)
		return 0;
	if (!sk)
		e->flags |= EVENT_F_NO_SOCKET;
	e->reason = reason;
	if (skb)
		e->seg_flags = skb_tcp_flags(skb);
	if (has_reason)
		e->flags |= EVENT_F_HAS_REASON;
	submit(e);
	return 0;
}

/*
 * tcp:tcp_send_reset (sk, skb, reason) since 6.10: fires from
 * tcp_v4/v6_send_reset() even when sk is NULL (a SYN to a closed port,
 * reason NO_SOCKET), and from tcp_send_active_reset() with skb NULL. Note
 * that tcp_send_active_reset() traces after transmitting, so on loopback the
 * peer's tcp_receive_reset is often seen first.
 */
static __always_inline int on_send_reset_reason(__u64 *ctx)
{
	return on_send_reset((struct sock *)ctx[0], (const struct sk_buff *)ctx[1], (__u32)ctx[2], true);
}
HOOK_PROGRAMS(handle_send_reset_reason, "tcp_send_reset", HOOK_SEND_RESET, on_send_reset_reason)

/* tcp:tcp_send_reset (sk, skb) before 6.10: full sockets only, no reason. */
static __always_inline int on_send_reset_noreason(__u64 *ctx)
{
	return on_send_reset((struct sock *)ctx[0], (const struct sk_buff *)ctx[1], 0, false);
}
HOOK_PROGRAMS(handle_send_reset, "tcp_send_reset", HOOK_SEND_RESET, on_send_reset_noreason)

/*
 * tcp:tcp_receive_reset (sk), from tcp_reset() on full sockets only, before
 * the socket moves to CLOSE. The classic event has no state field; here the
 * state is read from the socket.
 */
static __always_inline int on_receive_reset(__u64 *ctx)
{
	struct sock *sk = (struct sock *)ctx[0];
	struct event *e;

	if (aggregate) {
		bool stream;

		keep_event(sk, EVENT_RESET_RECEIVED, sk->__sk_common.skc_state, &stream);
		if (!stream)
			return 0;
	}
	e = begin_sk_event(EVENT_RESET_RECEIVED, sk);
	if (e)
		submit(e);
	return 0;
}
HOOK_PROGRAMS(handle_receive_reset, "tcp_receive_reset", HOOK_RECEIVE_RESET, on_receive_reset)

/*
 * sock:inet_sk_error_report (sk), from sk_error_report() for every inet
 * protocol (UDP included): sk_err is the errno the owning process will see
 * (ECONNREFUSED, ECONNRESET, ETIMEDOUT, EPIPE...). The classic event has no
 * socket pointer, so no cookie; the BTF-typed one has.
 */
static __always_inline int on_sock_error(__u64 *ctx)
{
	struct sock *sk = (struct sock *)ctx[0];
	struct event *e;

	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	/*
	 * tcp_disconnect() ends with sk_error_report() only to wake waiters,
	 * after the error was already consumed (a failed connect() calls it
	 * through __inet_stream_connect()): sk_err is 0 and the tuple is half
	 * cleared. No error to report.
	 */
	if (!sk->sk_err)
		return 0;
	if (aggregate) {
		bool stream;
		struct slot *s = keep_event(sk, EVENT_SOCK_ERROR, sk->__sk_common.skc_state, &stream);

		if (s)
			s->arg = sk->sk_err;
		if (!stream)
			return 0;
	}
	e = begin_sk_event(EVENT_SOCK_ERROR, sk);
	if (!e)
		return 0;
	e->err = sk->sk_err;
	submit(e);
	return 0;
}
HOOK_PROGRAMS(handle_sock_error, "inet_sk_error_report", HOOK_SOCK_ERROR, on_sock_error)

/*
 * skb:kfree_skb (skb, location, reason, rx_sk), rx_sk since 6.11. Since 6.15
 * (a11a791ca81e) tcp_v4/v6_syn_recv_sock() frees a final ACK that finds the
 * accept queue full with reason TCP_LISTEN_OVERFLOW and rx_sk = the
 * listener; the request socket stays and retransmits its SYN-ACK later.
 * A final ACK that carries a valid SYN cookie has no request socket: when
 * the same check fails for it, cookie_v4_check()/cookie_v6_check() free it
 * with reason NO_SOCKET and rx_sk = the listener, and the client, which
 * believes it is connected, resends until a later copy finds room. NO_SOCKET
 * with a listening rx_sk has other causes (no memory for the child), so it
 * counts as an overflow only while the queue is full (sk_acceptq_is_full():
 * sk_ack_backlog > sk_max_ack_backlog).
 * These are the only per-connection traces of an accept-queue overflow: a
 * SYN arriving while the queue is full is freed with consume_skb() and only
 * the ListenOverflows/ListenDrops counters move. kfree_skb fires for every
 * dropped packet on the host, so the reason is compared first.
 */
static __always_inline int on_kfree_skb(__u64 *ctx)
{
	const struct sk_buff *skb = (const struct sk_buff *)ctx[0];
	__u32 reason = (__u32)ctx[2];
	struct sock *sk = (struct sock *)ctx[3];
	struct event *e;
	bool cookie = false;

	if (!sk || !skb)
		return 0;
	if (reason != listen_overflow_reason) {
		if (reason != no_socket_reason || !no_socket_reason)
			return 0;
		if (sk->__sk_common.skc_state != TCP_LISTEN || sk->sk_ack_backlog <= sk->sk_max_ack_backlog)
			return 0;
		cookie = true;
	}
	/* The dropped ACK came from the client: reversed, local is the listener.
	 * The event has no socket of its own, only its listener's cookie. */
	struct source src = {
		.netns = sk_netns(&sk->__sk_common),
		.skb = skb,
		.owner = sk,
		.state = sk->__sk_common.skc_state,
	};
	e = begin_event(EVENT_LISTEN_OVERFLOW, &src, NULL);
	if (!e)
		return 0;
	e->listener_cookie = bpf_get_socket_cookie(sk);
	if (cookie)
		e->flags |= EVENT_F_SYNCOOKIE;
	fill_accept_queue(e, sk);
	submit(e);
	return 0;
}
HOOK_PROGRAMS(handle_kfree_skb, "kfree_skb", HOOK_KFREE_SKB, on_kfree_skb)

/*
 * The end-of-recording walk (iter/tcp, 5.9+): every TCP socket of the
 * network namespace that opened the iterator; user space opens one in each
 * namespace it saw. (iter/bpf_sk_storage_map would reach every namespace at
 * once, but this kernel refuses map-element iterators with EPERM.) User
 * space runs it after detaching every program but the state-change pair,
 * so a connection closing meanwhile still sends its record; the two race
 * for conn.sent and one of them sends. A connection still open gets its
 * record here, marked RECORD_F_OPEN (conn.sent 2). When the output buffer
 * fills up during a socket, bpf_seq_write() fails (-EOVERFLOW) and
 * bpf_seq_read() drops that socket's output and shows it again on the next
 * read: the walk then gives the socket back (conn.sent 0) for that second
 * look. A socket the walk read once is not read again (another namespace's
 * iterator, an iterator that repeats a socket). bpf_iter_tcp_seq_show()
 * holds the socket's lock (lock_sock_fast()) while the program runs, which
 * orders it with the close.
 */
SEC("iter/tcp")
int walk_conns(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	struct conn_record *r;
	struct tcp_sock *tp;
	struct conn *c;
	__u32 zero = 0;

	if (!skc)
		return 0;
	/* Request and timewait sockets have no storage. */
	tp = bpf_skc_to_tcp_sock(skc);
	if (!tp)
		return 0;
	c = bpf_sk_storage_get(&conns, tp, 0, 0);
	if (!c || (c->flags & CONN_F_LISTENER) || c->nslots == 0)
		return 0;
	r = bpf_map_lookup_elem(&scratch, &zero);
	if (!r)
		return 0;
	if (__sync_val_compare_and_swap(&c->sent, 0, 2) != 0)
		return 0;
	fill_record(r, &tp->inet_conn.icsk_inet.sk, c, RECORD_F_OPEN);
	if (bpf_seq_write(ctx->meta->seq, r, sizeof(*r)))
		c->sent = 0;
	return 0;
}
