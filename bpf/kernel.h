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

/* Values relocated by bpf_core_enum_value(): test the mask IPS_CONFIRMED, not the bit number. */
enum ip_conntrack_status {
	IPS_CONFIRMED = 8,
};

#endif /* XSYN_KERNEL_H */
