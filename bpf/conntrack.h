/* SPDX-License-Identifier: GPL-2.0-only */
/* Conntrack lookup from XDP (kfuncs, Linux 5.18+): is this segment part of a known connection? */
#ifndef XSYN_CONNTRACK_H
#define XSYN_CONNTRACK_H

#include "common.h"
#include "parse.h"

/* Weak: the handoff path needs no conntrack, so the program must load where conntrack (or the
 * module holding these kfuncs) is absent. The SYNPROXY path's loader probe requires them. */
extern struct nf_conn *bpf_xdp_ct_lookup(struct xdp_md *xdp_ctx, struct bpf_sock_tuple *bpf_tuple,
					 __u32 tuple__sz, struct bpf_ct_opts *opts,
					 __u32 opts__sz) __ksym __weak;
extern void bpf_ct_release(struct nf_conn *ct) __ksym __weak;

/* libbpf's bpf_ksym_exists(), which the vendored headers predate: a weak kfunc the kernel lacks
 * resolves to address 0. */
#define ksym_exists(sym)                                                                           \
	({                                                                                         \
		_Static_assert(!__builtin_constant_p(!!sym), #sym " should be marked as __weak"); \
		!!sym;                                                                             \
	})

/* A confirmed entry is one the stack has committed to the table, i.e. a flow that passed the
 * netfilter rules (for SYNPROXY flows: whose handshake SYNPROXY completed). Unconfirmed entries
 * belong to packets still in flight and prove nothing. */
static __always_inline bool ct_confirmed(struct xdp_md *ctx, const struct packet *p)
{
	struct bpf_ct_opts opts = { .netns_id = BPF_F_CURRENT_NETNS, .l4proto = IPPROTO_TCP };
	struct bpf_sock_tuple t = {};
	struct nf_conn *ct;
	__u32 tuple_size;
	bool confirmed;

	if (!ksym_exists(bpf_xdp_ct_lookup) || !ksym_exists(bpf_ct_release))
		return false;

	if (!p->ipv6) {
		t.ipv4.saddr = p->ip4->saddr;
		t.ipv4.daddr = p->ip4->daddr;
		t.ipv4.sport = p->tcp->source;
		t.ipv4.dport = p->tcp->dest;
		tuple_size = sizeof(t.ipv4);
	} else {
		__builtin_memcpy(t.ipv6.saddr, p->ip6->saddr, sizeof(t.ipv6.saddr));
		__builtin_memcpy(t.ipv6.daddr, p->ip6->daddr, sizeof(t.ipv6.daddr));
		t.ipv6.sport = p->tcp->source;
		t.ipv6.dport = p->tcp->dest;
		tuple_size = sizeof(t.ipv6);
	}

	ct = bpf_xdp_ct_lookup(ctx, &t, tuple_size, &opts, bpf_core_type_size(struct bpf_ct_opts));
	if (!ct)
		return false;
	confirmed = ct->status & bpf_core_enum_value(enum ip_conntrack_status, IPS_CONFIRMED);
	bpf_ct_release(ct);
	return confirmed;
}

#endif /* XSYN_CONNTRACK_H */
