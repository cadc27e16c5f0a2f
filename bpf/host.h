/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Is this SYN for this host? XDP_TX answers whatever it is given, so before a SYN-ACK is written
 * the frame must be one this host would itself answer: unicast to the interface's own MAC, from
 * and to unicast addresses that are not loopback or unspecified, with a valid IPv4 header
 * checksum, and (IPv6) not on its way elsewhere along a routing header. Everything else passes
 * to the stack, which drops it or routes it as it would without xsyn. Only SYNs are judged here:
 * they are what xsyn answers; ACKs and the rest are only passed or dropped.
 */
#ifndef XSYN_HOST_H
#define XSYN_HOST_H

#include "common.h"
#include "csum.h"
#include "maps.h"
#include "parse.h"

static __always_inline bool mac_for_host(const struct packet *p)
{
	const struct ethhdr *eth = p->data;
	const struct iface_config *cfg;
	__u32 zero = 0;

	if ((void *)(eth + 1) > p->data_end || (eth->h_dest[0] & 1)) /* group: broadcast, multicast */
		return false;
	cfg = bpf_map_lookup_elem(&xsyn_iface, &zero);
	if (!cfg || !cfg->check_mac)
		return true;
	return __builtin_memcmp(eth->h_dest, cfg->mac, ETH_ALEN) == 0;
}

/* 0/8, 127/8, multicast 224/4, and class E with the limited broadcast 240/4. */
static __always_inline bool ip4_unicast(__be32 a)
{
	__u8 first = bpf_ntohl(a) >> 24;

	return first != 0 && first != 127 && first < 224;
}

/* Neither ::, ::1 nor multicast ff00::/8 (IPv4-mapped addresses never arrive on the wire). */
static __always_inline bool ip6_unicast(const __be32 *a)
{
	if ((bpf_ntohl(a[0]) >> 24) == 0xff)
		return false;
	return (a[0] | a[1] | a[2]) != 0 || (bpf_ntohl(a[3]) > 1);
}

/* The IPv4 header checksum, over ihl 32-bit words (5 to 15). */
static __always_inline bool ip4_csum_ok(const struct packet *p)
{
	const __be32 *w = (const void *)p->ip4;
	__u32 words = p->ip4->ihl;
	__u64 sum;

	if ((void *)(w + 5) > p->data_end)
		return false;
	sum = csum_words(w, 5);
#pragma unroll
	for (int i = 5; i < 15; i++) {
		const __be32 *q = w + i;

		/* Keep clang from turning the range check into arithmetic on data_end, which the
		 * verifier cannot follow. */
		barrier_var(q);
		if (i < words) {
			if ((void *)(q + 1) > p->data_end)
				return false;
			sum += *q;
		}
	}
	return csum_fold(sum) == 0;
}

static __always_inline bool syn_for_host(const struct packet *p)
{
	if (!mac_for_host(p))
		return false;
	/* The headers were checked in parse(); again here for the verifier, which may have lost
	 * the range of a pointer that went through the stack. */
	if (!p->ipv6) {
		if ((void *)(p->ip4 + 1) > p->data_end)
			return false;
		return ip4_unicast(p->ip4->saddr) && ip4_unicast(p->ip4->daddr) && ip4_csum_ok(p);
	}
	if ((void *)(p->ip6 + 1) > p->data_end)
		return false;
	return !p->rh_pending && ip6_unicast(p->ip6->saddr) && ip6_unicast(p->ip6->daddr);
}

/*
 * Is the destination one of this host's own addresses? Asked for services of input statements
 * without dst (local_only): on a router, zero-config `attach` protects port 22 of every address,
 * and a SYN to a server behind the router, or a segment of a connection the router forwards,
 * is not ours to answer or drop. The FIB says so, from the ingress interface's point of view:
 * NOT_FWDED for a local destination. Where the interface does not forward (FWD_DISABLED, every
 * plain server), a frame sent to our MAC can only be for us, and the lookup costs next to
 * nothing.
 */
static __always_inline bool fib_says_local(struct xdp_md *ctx, const struct packet *p)
{
	struct bpf_fib_lookup f = { .l4_protocol = IPPROTO_TCP, .ifindex = ctx->ingress_ifindex };
	long r;

	if (!p->ipv6) {
		if ((void *)(p->ip4 + 1) > p->data_end)
			return false;
		f.family = AF_INET;
		f.tos = p->ip4->tos;
		f.tot_len = bpf_ntohs(p->ip4->tot_len);
		f.ipv4_src = p->ip4->saddr;
		f.ipv4_dst = p->ip4->daddr;
	} else {
		if ((void *)(p->ip6 + 1) > p->data_end)
			return false;
		f.family = AF_INET6;
		f.tot_len = sizeof(*p->ip6) + bpf_ntohs(p->ip6->payload_len);
		__builtin_memcpy(f.ipv6_src, p->ip6->saddr, sizeof(f.ipv6_src));
		__builtin_memcpy(f.ipv6_dst, p->ip6->daddr, sizeof(f.ipv6_dst));
	}
	if ((void *)(p->tcp + 1) > p->data_end)
		return false;
	f.sport = p->tcp->source;
	f.dport = p->tcp->dest;
	r = bpf_fib_lookup(ctx, &f, sizeof(f), 0);
	return r == BPF_FIB_LKUP_RET_NOT_FWDED || r == BPF_FIB_LKUP_RET_FWD_DISABLED;
}

/*
 * On a router the FIB lookup nearly doubles the cost of a flood SYN (about 190 ns more on the
 * bench machine), and a flood aims at few addresses: each CPU remembers its last answers for a
 * few destinations, for LOCAL_CACHE_NS. An address added or removed meanwhile is judged the old
 * way for at most that long.
 */
#define LOCAL_CACHE_SLOTS 8
#define LOCAL_CACHE_NS (1000ULL * 1000 * 1000)

struct local_answer {
	__u64 until;    /* coarse monotonic ns; 0: empty */
	__be32 addr[4]; /* IPv6, or IPv4 as ::ffff:a.b.c.d */
	__u32 local;    /* bool */
	__u32 pad;
};

struct local_cache {
	struct local_answer slot[LOCAL_CACHE_SLOTS];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct local_cache);
} xsyn_local_cache SEC(".maps");

static __always_inline bool dst_local(struct xdp_md *ctx, const struct packet *p)
{
	struct local_cache *c;
	struct local_answer *a;
	__be32 addr[4];
	__u64 now;
	__u32 zero = 0, h;

	if (!p->ipv6) {
		if ((void *)(p->ip4 + 1) > p->data_end)
			return false;
		addr[0] = 0;
		addr[1] = 0;
		addr[2] = bpf_htonl(0xffff);
		addr[3] = p->ip4->daddr;
	} else {
		if ((void *)(p->ip6 + 1) > p->data_end)
			return false;
		__builtin_memcpy(addr, p->ip6->daddr, sizeof(addr));
	}
	h = addr[0] ^ addr[1] ^ addr[2] ^ addr[3];
	h ^= h >> 16;
	h ^= h >> 8;
	c = bpf_map_lookup_elem(&xsyn_local_cache, &zero);
	if (!c)
		return fib_says_local(ctx, p);
	a = &c->slot[h & (LOCAL_CACHE_SLOTS - 1)];
	now = bpf_ktime_get_coarse_ns();
	if (a->until > now && a->addr[0] == addr[0] && a->addr[1] == addr[1] && a->addr[2] == addr[2] &&
	    a->addr[3] == addr[3])
		return a->local;
	a->local = fib_says_local(ctx, p);
	__builtin_memcpy(a->addr, addr, sizeof(addr));
	a->until = now + LOCAL_CACHE_NS;
	return a->local;
}

#endif /* XSYN_HOST_H */
