/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The kernel types xsyn needs, trimmed from vmlinux.h by hand.
 *
 * Everything the program reads from kernel memory (struct nf_conn) or hands to a kfunc
 * (struct bpf_ct_opts) is marked preserve_access_index, so field offsets and sizes are relocated
 * (CO-RE) against the running kernel's BTF at load time. The structs are complete definitions on
 * purpose: cilium/ebpf checks kfunc prototypes against kernel BTF, and a forward-declared
 * struct nf_conn would not match the kernel's struct.
 *
 * UAPI types (xdp_md, bpf_sock_tuple, map types, XDP actions) are ABI and copied verbatim.
 */
#ifndef XSYN_KERNEL_H
#define XSYN_KERNEL_H

typedef unsigned char __u8;
typedef signed char __s8;
typedef unsigned short __u16;
typedef signed short __s16;
typedef unsigned int __u32;
typedef signed int __s32;
typedef unsigned long long __u64;
typedef signed long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u64 __be64;
typedef __u32 __wsum;
typedef __u16 __sum16;
typedef _Bool bool;
#define true 1
#define false 0

enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LPM_TRIE = 11,
};

enum {
	BPF_F_NO_PREALLOC = 1,
	BPF_F_RDONLY_PROG = 128,
};

enum xdp_action {
	XDP_ABORTED = 0,
	XDP_DROP,
	XDP_PASS,
	XDP_TX,
	XDP_REDIRECT,
};

struct xdp_md {
	__u32 data;
	__u32 data_end;
	__u32 data_meta;
	__u32 ingress_ifindex;
	__u32 rx_queue_index;
	__u32 egress_ifindex;
};

/* TC program context (UAPI): only the prefix xsyn reads, at the kernel's offsets. */
struct __sk_buff {
	__u32 len;
	__u32 pkt_type;
	__u32 mark;
	__u32 queue_mapping;
	__u32 protocol;
	__u32 vlan_present;
	__u32 vlan_tci;
	__u32 vlan_proto;
	__u32 priority;
	__u32 ingress_ifindex;
	__u32 ifindex;
	__u32 tc_index;
	__u32 cb[5];
	__u32 hash;
	__u32 tc_classid;
	__u32 data;
	__u32 data_end;
};

#define TC_ACT_OK 0

/* What bpf_skc_lookup_tcp returns (UAPI). */
struct bpf_sock {
	__u32 bound_dev_if;
	__u32 family;
	__u32 type;
	__u32 protocol;
	__u32 mark;
	__u32 priority;
	__u32 src_ip4;
	__u32 src_ip6[4];
	__u32 src_port;
	__be16 dst_port;
	__u32 dst_ip4;
	__u32 dst_ip6[4];
	__u32 state;
	__s32 rx_queue_mapping;
};

/* enum tcp_state values a socket lookup can return (include/net/tcp_states.h, ABI). */
enum {
	TCP_ESTABLISHED = 1,
	TCP_TIME_WAIT = 6,
	TCP_LISTEN = 10,
	TCP_NEW_SYN_RECV = 12,
};

struct bpf_sock_tuple {
	union {
		struct {
			__be32 saddr;
			__be32 daddr;
			__be16 sport;
			__be16 dport;
		} ipv4;
		struct {
			__be32 saddr[4];
			__be32 daddr[4];
			__be16 sport;
			__be16 dport;
		} ipv6;
	};
};

/* bpf_fib_lookup() parameters and results (include/uapi/linux/bpf.h, ABI). */
#define AF_INET 2
#define AF_INET6 10

struct bpf_fib_lookup {
	__u8 family;
	__u8 l4_protocol;
	__be16 sport;
	__be16 dport;
	union {
		__u16 tot_len;
		__u16 mtu_result;
	};
	__u32 ifindex;
	union {
		__u8 tos;
		__be32 flowinfo;
		__u32 rt_metric;
	};
	union {
		__be32 ipv4_src;
		__u32 ipv6_src[4];
	};
	union {
		__be32 ipv4_dst;
		__u32 ipv6_dst[4];
	};
	union {
		struct {
			__be16 h_vlan_proto;
			__be16 h_vlan_TCI;
		};
		__u32 tbid;
	};
	union {
		struct {
			__u32 mark;
		};
		struct {
			__u8 smac[6];
			__u8 dmac[6];
		};
	};
};

enum {
	BPF_FIB_LKUP_RET_SUCCESS = 0,
	BPF_FIB_LKUP_RET_NOT_FWDED = 4,    /* a local, broadcast or multicast destination */
	BPF_FIB_LKUP_RET_FWD_DISABLED = 5, /* the interface does not forward this family */
};

/* BPF_F_CURRENT_NETNS: look conntrack up in the namespace the XDP device lives in. */
#define BPF_F_CURRENT_NETNS (-1)

/*
 * Options for the conntrack kfuncs. The kernel accepts its own size (16 bytes since the zone fields
 * arrived, 12 before), so the size passed is bpf_core_type_size() of this struct, relocated.
 */
struct bpf_ct_opts {
	__s32 netns_id;
	__s32 error;
	__u8 l4proto;
	__u8 dir;
	__u16 ct_zone_id;
	__u8 ct_zone_dir;
	__u8 reserved[3];
} __attribute__((preserve_access_index));

/* Only the field xsyn reads; its offset is relocated against the kernel's struct nf_conn. */
struct nf_conn {
	unsigned long status;
} __attribute__((preserve_access_index));

/*
 * The socket handoff (Linux 6.9+). bpf_sk_assign_tcp_reqsk() takes the listener as a struct sock
 * and the connection's attributes; xsyn never reads either struct, the definitions are here so
 * the kfunc prototype matches the kernel's BTF.
 */
struct sock {
	unsigned short skc_family;
} __attribute__((preserve_access_index));

struct tcp_sock;

struct bpf_tcp_req_attrs {
	__u32 rcv_tsval;  /* the client's TSval in its ACK */
	__u32 rcv_tsecr;  /* its TSecr: our TSval of the SYN-ACK; the kernel offsets its clock to it */
	__u16 mss;        /* the client's MSS */
	__u8 rcv_wscale;  /* our window scale, as offered in the SYN-ACK */
	__u8 snd_wscale;  /* the client's */
	__u8 ecn_ok;
	__u8 wscale_ok;
	__u8 sack_ok;
	__u8 tstamp_ok;
	__u8 usec_ts_ok;
	__u8 reserved[3];
};

/* Values relocated by bpf_core_enum_value(): test the mask IPS_CONFIRMED, not the bit number. */
enum ip_conntrack_status {
	IPS_CONFIRMED = 8,
};

#endif /* XSYN_KERNEL_H */
