/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The one record the BPF side sends to user space. bpf2go turns it into the
 * Go type tracer.bpfEvent; nothing mirrors it by hand. Fields are ordered
 * largest first so the layout has no holes, and units are in the names.
 */
#ifndef TCPSCOPE_EVENT_H
#define TCPSCOPE_EVENT_H

/*
 * Sizes both sides must agree on. bpf2go turns this enum into Go constants
 * (tracer.MaxFilter, tracer.DefaultRingBufferBytes come from here).
 */
enum limits {
	MAX_FILTER = 8,                   /* ports, or namespaces, a kernel-side filter holds */
	DEFAULT_RINGBUF_BYTES = 1 << 24,  /* events ring buffer when user space asks no size */
	CONN_SLOTS = 13,                  /* timeline entries a socket's storage holds (struct conn) */
};

enum event_kind {
	EVENT_STATE = 1,              /* sock:inet_sock_set_state */
	EVENT_RETRANSMIT = 2,         /* tcp:tcp_retransmit_skb */
	EVENT_SYNACK_RETRANSMIT = 3,  /* tcp:tcp_retransmit_synack */
	EVENT_RESET_SENT = 4,         /* tcp:tcp_send_reset */
	EVENT_RESET_RECEIVED = 5,     /* tcp:tcp_receive_reset */
	EVENT_SOCK_ERROR = 6,         /* sock:inet_sk_error_report */
	EVENT_LISTEN_OVERFLOW = 7,    /* skb:kfree_skb: a final ACK dropped, accept queue full */
};

/* Bits of event.flags. */
enum event_flag {
	EVENT_F_NO_SOCKET = 1 << 0,   /* the kernel passed no socket (addresses come from the packet) */
	EVENT_F_OWNER = 1 << 1,       /* owner_tgid/owner_comm come from the listener's socket storage */
	EVENT_F_TCP_INFO = 1 << 2,    /* total_retrans, srtt_us, bytes_* (and total_rto* where the kernel has them) are set */
	EVENT_F_HAS_ERR = 1 << 3,     /* err is the kernel's retransmit result (6.17+) */
	EVENT_F_HAS_REASON = 1 << 4,  /* reason is an enum sk_rst_reason value (6.10+) */
	EVENT_F_HAS_RTO = 1 << 5,     /* total_rto/total_rto_time_ms exist on this kernel (6.7+) */
	EVENT_F_SYNCOOKIE = 1 << 6,   /* listen overflow: the dropped final ACK carried a SYN cookie */
	EVENT_F_SEG_DATA = 1 << 7,    /* retransmit: the segment carries payload bytes */
};

/* The tracepoints, each served by a program and its _nested twin. */
enum hook {
	HOOK_SET_STATE = 0,           /* sock:inet_sock_set_state */
	HOOK_RETRANSMIT = 1,          /* tcp:tcp_retransmit_skb */
	HOOK_SYNACK_RETRANSMIT = 2,   /* tcp:tcp_retransmit_synack */
	HOOK_SEND_RESET = 3,          /* tcp:tcp_send_reset */
	HOOK_RECEIVE_RESET = 4,       /* tcp:tcp_receive_reset */
	HOOK_SOCK_ERROR = 5,          /* sock:inet_sk_error_report */
	HOOK_KFREE_SKB = 6,           /* skb:kfree_skb */
	HOOK_MAX = 7,
};

/* Indexes of the per-CPU counters map. */
enum counter {
	COUNTER_LOST = 0,             /* bpf_ringbuf_reserve failed: the event was dropped */
	COUNTER_STORAGE_FAIL = 1,     /* socket storage could not be created: a listener's children
				       * lack their owner; a connection's events stream one by one */
	COUNTER_UNREADABLE = 2,       /* the packet behind an event could not be read: the event was dropped */
	COUNTER_LOST_RECORDS = 3,     /* bpf_ringbuf_reserve failed for a connection record: its entries were dropped */
	COUNTER_RECORDS_FULL = 4,     /* records sent before the close because a socket's slots were full */
	COUNTER_NESTED = 5,           /* first of HOOK_MAX: events a _nested program handled for its busy twin */
	COUNTER_MAX = COUNTER_NESTED + HOOK_MAX,
};

struct event {
	__u64 ts_ns;             /* bpf_ktime_get_boot_ns() */
	__u64 cookie;            /* bpf_get_socket_cookie(); 0 when there is no socket */
	__u64 listener_cookie;   /* the listening socket a server-side socket belongs to */
	__u64 snt_synack_us;     /* request socket: first SYN-ACK sent, CLOCK_MONOTONIC us */
	__u64 bytes_received;    /* tcp_sock.bytes_received (EVENT_F_TCP_INFO) */
	__u64 bytes_acked;       /* tcp_sock.bytes_acked: bytes sent and acknowledged */
	__u64 cgroup_id;         /* cgroup v2 id of the socket's owner; 0 unknown (see owner_sk()) */
	__u32 netns;             /* network namespace inode */
	__u32 pid;               /* current thread; often a softirq's, never the owner */
	__u32 tgid;              /* current process */
	__u32 owner_tgid;        /* listener's owner (EVENT_F_OWNER) */
	__u32 cpu;
	__s32 err;               /* retransmit result, or socket error (errno) */
	__u32 reason;            /* enum sk_rst_reason */
	__u32 total_retrans;     /* tcp_sock.total_retrans */
	__u32 srtt_us;           /* tcp_sock.srtt_us >> 3 */
	__u32 total_rto_time_ms; /* tcp_sock.total_rto_time */
	__u32 backlog;           /* listener: sk_ack_backlog */
	__u32 max_backlog;       /* listener: sk_max_ack_backlog */
	__u16 sport;             /* local port, host order */
	__u16 dport;             /* remote port, host order */
	__u16 family;            /* AF_INET or AF_INET6 */
	__u16 total_rto;         /* tcp_sock.total_rto */
	__u8 saddr[16];          /* local address; AF_INET uses the first 4 bytes */
	__u8 daddr[16];          /* remote address */
	char comm[16];           /* current task */
	char owner_comm[16];     /* listener's owner (EVENT_F_OWNER) */
	__u8 kind;               /* enum event_kind */
	__u8 old_state;
	__u8 new_state;
	__u8 state;              /* socket state when the event fired */
	__u8 num_retrans;        /* request socket: SYN-ACKs retransmitted before this one */
	__u8 num_timeout;        /* request socket: timer expiries before this one */
	__u8 flags;              /* enum event_flag */
	__u8 seg_flags;          /* reset sent: TCP flags of the segment answered, 0 if none;
				  * retransmit: TCP flags of the segment resent */
};

/*
 * The aggregated mode (the default; `record --events` is the per-event
 * mode): each connection socket's timeline is kept in its socket storage
 * (struct conn, the value of the conns map) and crosses to user space as
 * one struct conn_record when the socket closes. What storage cannot hold
 * still streams as struct event: see keep_state() in tcpscope.bpf.c.
 */

/* One timeline entry, an event kept in storage instead of sent. */
struct slot {
	__u64 ts_ns;             /* bpf_ktime_get_boot_ns() */
	__u32 arg;               /* reset sent: enum sk_rst_reason; error: errno;
				  * retransmit: the kernel's result (signed) */
	__u8 kind;               /* enum event_kind */
	__u8 state;              /* socket state when it fired; EVENT_STATE: the old state */
	__u8 aux;                /* EVENT_STATE: the new state; retransmit, reset sent:
				  * the segment's TCP flags */
	__u8 flags;              /* enum event_flag bits of the event */
};

/* Bits of conn.flags. */
enum conn_flag {
	CONN_F_LISTENER = 1 << 0,  /* a listening socket's storage: owner and cookie only */
	CONN_F_OWNER = 1 << 1,     /* tgid/comm are the listener's owner, inherited at clone */
	CONN_F_MIDLIFE = 1 << 2,   /* storage made after the connection began (it predates the trace) */
	CONN_F_PROCESS = 1 << 3,   /* tgid/comm were retaken at close() (CONN_F_MIDLIFE) */
	CONN_F_EST_INFO = 1 << 4,  /* est_* were read when the socket became ESTABLISHED */
	CONN_F_EST_RTO = 1 << 5,   /* est_total_rto* exist on this kernel (6.7+) */
};

/* A socket's storage: 256 bytes per live connection. */
struct conn {
	__u64 listener_cookie;         /* the listener a server-side socket came from */
	__u32 tgid;                    /* owner: connect() caller, or the listener's (CONN_F_OWNER) */
	__u32 sent;                    /* 0; 1: its record was sent at the close; 2: read by the walk */
	__u32 est_total_retrans;       /* tcp_sock.total_retrans at ESTABLISHED (SYN-ACKs resent) */
	__u32 est_srtt_us;             /* tcp_sock.srtt_us >> 3 at ESTABLISHED */
	__u32 est_total_rto_time_ms;   /* tcp_sock.total_rto_time at ESTABLISHED */
	__u16 est_total_rto;           /* tcp_sock.total_rto at ESTABLISHED */
	__u8 nslots;                   /* slots in use */
	__u8 flags;                    /* enum conn_flag */
	char comm[16];                 /* owner's task name */
	struct slot slots[CONN_SLOTS];
};

/* Bits of conn_record.flags: why the record was sent. */
enum record_flag {
	RECORD_F_CLOSED = 1 << 0,      /* at the socket's X->CLOSE: the last record */
	RECORD_F_EARLY = 1 << 1,       /* at ESTABLISHED, or slots full: more follow */
	RECORD_F_OPEN = 1 << 2,        /* by the end-of-recording walk: the socket is still open */
	RECORD_F_TCP_INFO = 1 << 3,    /* the tcp_sock counters below are set */
	RECORD_F_HAS_RTO = 1 << 4,     /* total_rto* exist on this kernel (6.7+) */
};

/* What crosses to user space for a connection: its storage, and what
 * the socket says when the record is sent. */
struct conn_record {
	struct conn conn;
	__u64 cookie;            /* bpf_get_socket_cookie() */
	__u64 bytes_received;    /* tcp_sock.bytes_received (RECORD_F_TCP_INFO) */
	__u64 bytes_acked;       /* tcp_sock.bytes_acked */
	__u64 cgroup_id;         /* cgroup v2 id of the socket's owner (sk_cgroup_id()) */
	__u32 netns;
	__u32 total_retrans;     /* tcp_sock.total_retrans */
	__u32 srtt_us;           /* tcp_sock.srtt_us >> 3 */
	__u32 total_rto_time_ms; /* tcp_sock.total_rto_time */
	__u16 sport;
	__u16 dport;
	__u16 family;
	__u16 total_rto;         /* tcp_sock.total_rto */
	__u8 saddr[16];
	__u8 daddr[16];
	__u8 flags;              /* enum record_flag */
	__u8 pad[7];
};

#endif /* TCPSCOPE_EVENT_H */
