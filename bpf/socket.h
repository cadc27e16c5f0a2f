/* SPDX-License-Identifier: GPL-2.0-only */
/* Socket lookups from XDP and TC (the handoff path): which socket a segment belongs to. */
#ifndef XSYN_SOCKET_H
#define XSYN_SOCKET_H

#include "common.h"
#include "parse.h"

static __always_inline __u32 sock_tuple(const struct packet *p, struct bpf_sock_tuple *t)
{
	if (!p->ipv6) {
		t->ipv4.saddr = p->ip4->saddr;
		t->ipv4.daddr = p->ip4->daddr;
		t->ipv4.sport = p->tcp->source;
		t->ipv4.dport = p->tcp->dest;
		return sizeof(t->ipv4);
	}
	__builtin_memcpy(t->ipv6.saddr, p->ip6->saddr, sizeof(t->ipv6.saddr));
	__builtin_memcpy(t->ipv6.daddr, p->ip6->daddr, sizeof(t->ipv6.daddr));
	t->ipv6.sport = p->tcp->source;
	t->ipv6.dport = p->tcp->dest;
	return sizeof(t->ipv6);
}

#define NO_SOCKET (-1)

/* The state of the socket this segment belongs to (TCP_LISTEN when only a listener matches),
 * NO_SOCKET when none does. */
static __always_inline int socket_state(struct xdp_md *ctx, const struct packet *p)
{
	struct bpf_sock_tuple t = {};
	__u32 size = sock_tuple(p, &t);
	struct bpf_sock *sk;
	int state;

	sk = bpf_skc_lookup_tcp(ctx, &t, size, (__u64)BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return NO_SOCKET;
	state = sk->state;
	bpf_sk_release(sk);
	return state;
}

#endif /* XSYN_SOCKET_H */
