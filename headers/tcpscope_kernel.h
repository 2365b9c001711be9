/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The few kernel types tcpscope's BPF programs read, written by hand.
 *
 * Every struct is marked preserve_access_index, so each field access
 * becomes a CO-RE relocation that libbpf-style loaders (cilium/ebpf here)
 * resolve against the running kernel's BTF at load time. Only the fields
 * we read are declared; their order and offsets here do not matter.
 */
#ifndef TCPSCOPE_KERNEL_H
#define TCPSCOPE_KERNEL_H

#include <linux/types.h>

typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __u64 u64;
typedef _Bool bool;
#define true 1
#define false 0

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6

/* TCP header flags as struct tcp_skb_cb stores them (include/net/tcp.h). */
#define TCPHDR_FIN 0x01
#define TCPHDR_SYN 0x02

/* include/net/tcp_states.h */
enum {
	TCP_ESTABLISHED = 1,
	TCP_SYN_SENT = 2,
	TCP_SYN_RECV = 3,
	TCP_FIN_WAIT1 = 4,
	TCP_FIN_WAIT2 = 5,
	TCP_TIME_WAIT = 6,
	TCP_CLOSE = 7,
	TCP_CLOSE_WAIT = 8,
	TCP_LAST_ACK = 9,
	TCP_LISTEN = 10,
	TCP_CLOSING = 11,
	TCP_NEW_SYN_RECV = 12,
};

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct in6_addr {
	union {
		__u8 u6_addr8[16];
	} in6_u;
};

struct ns_common {
	unsigned int inum;
};

struct net {
	struct ns_common ns;
};

typedef struct {
	struct net *net;
} possible_net_t;

struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	volatile unsigned char skc_state;
	possible_net_t skc_net;
	struct sock *skc_listener; /* request socks: rsk_listener (include/net/request_sock.h) */
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
};

/* include/linux/kernfs.h: a cgroup directory's node; id is its inode
 * number and what bpf_get_current_cgroup_id() returns (cgroup_id()). */
struct kernfs_node {
	u64 id;
};

/* include/linux/cgroup-defs.h */
struct cgroup {
	struct kernfs_node *kn;
	int level;
	struct cgroup *ancestors[]; /* 5.19+ (ancestors[0] is the root) */
};

/* Before 5.19 cgroup kept its ancestors' ids instead (see cgroup_ancestor()). */
struct cgroup___ids {
	int level;
	u64 ancestor_ids[];
};

/* include/linux/sched.h: a thread, its process's first thread and its
 * name (TASK_COMM_LEN bytes), see current_process_comm(). */
struct task_struct {
	struct task_struct *group_leader;
	char comm[16];
};

struct sock_cgroup_data {
	struct cgroup *cgroup; /* 5.15+; a tagged union before */
};

struct sock {
	struct sock_common __sk_common;
	struct sock_cgroup_data sk_cgrp_data;
	int sk_err;
	u16 sk_protocol;
	u32 sk_ack_backlog;
	u32 sk_max_ack_backlog;
};

struct inet_sock {
	struct sock sk;
	__be16 inet_sport;
};

struct inet_connection_sock {
	struct inet_sock icsk_inet;
};

struct tcp_sock {
	struct inet_connection_sock inet_conn;
	u64 bytes_received;
	u64 bytes_acked;
	u32 srtt_us;
	u32 total_retrans;
	u16 total_rto;      /* 6.7+ */
	u32 total_rto_time; /* 6.7+, ms */
};

struct request_sock {
	struct sock_common __req_common;
	u8 num_retrans;
	u8 syncookie : 1;
	u8 num_timeout : 7;
};

struct inet_request_sock {
	struct request_sock req;
};

struct tcp_request_sock {
	struct inet_request_sock req;
	u64 snt_synack;
};

struct net_device {
	possible_net_t nd_net;
};

struct sk_buff {
	struct net_device *dev;
	unsigned char *head;
	__u16 transport_header;
	__u16 network_header;
	char cb[48];
};

/* TCP's view of skb->cb (TCP_SKB_CB()), include/net/tcp.h. */
struct tcp_skb_cb {
	__u32 seq;
	__u32 end_seq;
	__u8 tcp_flags;
};

/* The context of an iter/tcp program (net/ipv4/tcp_ipv4.c). */
struct seq_file;

struct bpf_iter_meta {
	struct seq_file *seq;
	__u64 session_id;
	__u64 seq_num;
};

struct bpf_iter__tcp {
	union {
		struct bpf_iter_meta *meta;
	} __attribute__((aligned(8)));
	union {
		struct sock_common *sk_common;
	} __attribute__((aligned(8)));
	__u32 uid __attribute__((aligned(8)));
};

#pragma clang attribute pop

/* Wire headers, read from skb->head with bpf_probe_read_kernel. */
struct tcpscope_iphdr {
	__u8 ver_ihl;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__sum16 check;
	__be32 saddr;
	__be32 daddr;
};

struct tcpscope_ipv6hdr {
	__u8 ver_tc;
	__u8 flow_lbl[3];
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u8 saddr[16];
	__u8 daddr[16];
};

struct tcpscope_tcp_ports {
	__be16 source;
	__be16 dest;
};

#endif /* TCPSCOPE_KERNEL_H */
