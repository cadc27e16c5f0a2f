/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Header parsing: Ethernet (up to two VLAN tags), IPv4 (with options) or IPv6 (with a bounded
 * walk over extension headers), then the TCP header. Parsing only reads; whatever does not parse
 * is passed to the kernel, whose own checks and netfilter rules then apply, except TCP to a
 * protected service, which xsyn owns.
 */
#ifndef XSYN_PARSE_H
#define XSYN_PARSE_H

#include "common.h"
#include "counters.h"

/* VLAN tags we look through (802.1Q, and 802.1ad + 802.1Q for QinQ). */
#define MAX_VLAN_TAGS 2
/* IPv6 extension headers we walk (hop-by-hop, routing, destination options, AH): twice what
 * RFC 8200's recommended order can hold. A longer chain is dropped (parse_ipv6). */
#define MAX_IPV6_EXT_HDRS 16

struct packet {
	void *data;
	void *data_end;
	__u32 l3off;            /* bytes of Ethernet + VLAN headers */
	bool ipv6;              /* which of ip4 / ip6 is set; branch on this, not on the pointers
				 * (the verifier cannot tell a packet pointer from NULL) */
	struct iphdr *ip4;
	struct ipv6hdr *ip6;
	struct tcphdr *tcp;     /* at least sizeof(struct tcphdr) bytes are in the frame */
	__u32 tcp_len;          /* TCP header + payload, as the IP header says */
	bool rh_pending;        /* IPv6 routing header with segments left: this host is not the
				 * packet's final destination */
	bool fragment;          /* the first fragment of a datagram (the TCP header is in it) */
	bool ah;                /* behind an IPsec Authentication Header */
};

static __always_inline bool is_vlan(__be16 proto)
{
	return proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD);
}

/* Finds the network protocol and where its header starts. VLAN tags stay where they are: the
 * SYN-ACK goes back on the same VLAN. */
static __always_inline enum reason parse_l2(struct packet *p, __be16 *proto)
{
	struct ethhdr *eth = p->data;
	__u32 off = sizeof(*eth);
	__be16 h;

	if ((void *)(eth + 1) > p->data_end)
		return PASS_MALFORMED;
	h = eth->h_proto;

#pragma unroll
	for (int i = 0; i < MAX_VLAN_TAGS; i++) {
		struct vlan_hdr *vh = p->data + off;

		if (!is_vlan(h))
			break;
		if ((void *)(vh + 1) > p->data_end)
			return PASS_MALFORMED;
		h = vh->encapsulated_proto;
		off += sizeof(*vh);
	}
	if (is_vlan(h))
		return PASS_VLAN_DEPTH;

	p->l3off = off;
	*proto = h;
	return CONTINUE;
}

static __always_inline enum reason parse_ipv4(struct packet *p)
{
	struct iphdr *ip = p->data + p->l3off;
	__u32 ihl, tot, l4;
	__u8 proto;

	if ((void *)(ip + 1) > p->data_end)
		return PASS_MALFORMED;
	if (ip->version != 4 || ip->ihl < 5)
		return PASS_MALFORMED;
	/* Fragments go to the kernel, which reassembles before conntrack and SYNPROXY see them. A
	 * later fragment has no TCP header to judge; a first one has, and a SYN in one (which no
	 * real client sends) is dropped for a protected service rather than reach SYNPROXY at
	 * netfilter cost. Only the IP_DF bit is ignored: real sites send TCP without it. */
	if (ip->frag_off & bpf_htons(IP_OFFSET))
		return PASS_FRAGMENT;
	if (ip->frag_off & bpf_htons(IP_MF))
		p->fragment = true;

	ihl = ip->ihl * 4;
	l4 = ihl;
	proto = ip->protocol;
	if (proto == IPPROTO_AH) {
		struct ip_auth_hdr *ah = (void *)ip + ihl;

		if ((void *)(ah + 1) > p->data_end)
			return PASS_MALFORMED;
		proto = ah->nexthdr;
		l4 += (ah->hdrlen + 2) * 4;
		p->ah = true;
	}
	if (proto != IPPROTO_TCP)
		return p->fragment ? PASS_FRAGMENT : PASS_NOT_TCP;
	tot = bpf_ntohs(ip->tot_len);
	/* Options are parsed over (ihl), never copied: the SYN-ACK carries none, as SYNPROXY's. */
	if (tot < l4 + sizeof(struct tcphdr) || (void *)ip + tot > p->data_end)
		return PASS_MALFORMED;

	p->ip4 = ip;
	p->tcp = (void *)ip + l4;
	p->tcp_len = tot - l4;
	if ((void *)(p->tcp + 1) > p->data_end)
		return PASS_MALFORMED;
	return CONTINUE;
}

static __always_inline bool is_walked_ext_hdr(__u8 nh)
{
	return nh == IPPROTO_HOPOPTS || nh == IPPROTO_ROUTING || nh == IPPROTO_DSTOPTS ||
	       nh == IPPROTO_AH;
}

/* Where an IPv6 extension-header chain ends. Filled by the walk's global functions, so a plain
 * stack struct: the caller re-checks every offset against the frame. */
struct ext_walk {
	__u32 off;              /* from the IPv6 header to the header after the chain */
	__u8 nh;                /* that header's protocol */
	__u8 rh_pending;
	__u8 ah;
	__u8 pad;
};

/* Walks hop-by-hop, routing, destination options and AH headers. Every one of them is at least 8
 * bytes long, so the first 8 are checked once and the routing header's segments-left byte (the
 * fourth of every type) needs no check of its own. 0, or -1 for a chain cut short by the frame. */
static __always_inline int ext_walk(void *data, void *data_end, __u32 l3off, struct ext_walk *w)
{
	struct ipv6hdr *ip6 = data + l3off;
	__u32 off = sizeof(*ip6);
	__u8 nh;

	if (l3off > 64 || (void *)(ip6 + 1) > data_end)
		return -1;
	nh = ip6->nexthdr;
	for (int i = 0; i < MAX_IPV6_EXT_HDRS; i++) {
		__u8 *eh = (void *)ip6 + off;

		if (!is_walked_ext_hdr(nh))
			break;
		if ((void *)(eh + 8) > data_end)
			return -1;
		if (nh == IPPROTO_ROUTING && eh[3])
			w->rh_pending = 1;
		if (nh == IPPROTO_AH) {
			w->ah = 1;
			off += (eh[1] + 2) * 4;
		} else {
			off += (eh[1] + 1) * 8;
		}
		nh = eh[0];
	}
	w->off = off;
	w->nh = nh;
	return 0;
}

/*
 * The walk as global functions, one per program type: the verifier checks each once, on its
 * own, instead of once for every path through the rest of the program (an inline walk of 8
 * headers made loading 3.4x slower). Offsets come back as plain numbers, re-checked by the caller;
 * the result is 0 or -1, never a reason, whose value the verifier could not follow back.
 */
__noinline int ipv6_ext_walk_xdp(struct xdp_md *ctx, __u32 l3off, struct ext_walk *w)
{
	if (!ctx || !w)
		return -1;
	return ext_walk((void *)(long)ctx->data, (void *)(long)ctx->data_end, l3off, w);
}

__noinline int ipv6_ext_walk_tc(struct __sk_buff *skb, __u32 l3off, struct ext_walk *w)
{
	if (!skb || !w)
		return -1;
	return ext_walk((void *)(long)skb->data, (void *)(long)skb->data_end, l3off, w);
}

/* The end of the chain walked; a longer chain is dropped (see MAX_IPV6_EXT_HDRS). */
#define IPV6_EXT_MAX_OFF (sizeof(struct ipv6hdr) + MAX_IPV6_EXT_HDRS * 2048)

/* xdp or skb: exactly one is set, a constant at each (inlined) call site. */
static __always_inline enum reason parse_ipv6(struct packet *p, struct xdp_md *xdp,
					      struct __sk_buff *skb)
{
	struct ipv6hdr *ip6 = p->data + p->l3off;
	struct ext_walk w = {};
	__u32 off, end;
	__u8 nh;
	int r;

	if ((void *)(ip6 + 1) > p->data_end)
		return PASS_MALFORMED;
	if (ip6->version != 6)
		return PASS_MALFORMED;
	nh = ip6->nexthdr;
	off = sizeof(*ip6);
	if (is_walked_ext_hdr(nh)) {
		r = xdp ? ipv6_ext_walk_xdp(xdp, p->l3off, &w) : ipv6_ext_walk_tc(skb, p->l3off, &w);
		if (r)
			return PASS_MALFORMED;
		off = w.off;
		nh = w.nh;
		p->rh_pending = w.rh_pending;
		p->ah = w.ah;
		/* Still an extension header after MAX_IPV6_EXT_HDRS of them: it may hide a SYN to a
		 * protected service that the walk cannot reach, and no real stack sends such a chain
		 * (RFC 8200's order has at most 8 headers; RFC 9098). Dropped, not passed to netfilter
		 * at netfilter cost. */
		if (is_walked_ext_hdr(nh))
			return DROP_EXT_HDR_CHAIN;
		if (off > IPV6_EXT_MAX_OFF)
			return PASS_MALFORMED;
	}
	if (nh == IPPROTO_FRAGMENT) {
		/* As for IPv4: a later fragment passes, a first one is judged by its TCP header. */
		struct frag_hdr *fh = (void *)ip6 + off;

		if ((void *)(fh + 1) > p->data_end)
			return PASS_MALFORMED;
		if (fh->frag_off & bpf_htons(0xfff8))
			return PASS_FRAGMENT;
		p->fragment = true;
		nh = fh->nexthdr;
		off += sizeof(*fh);
		if (nh != IPPROTO_TCP)
			return PASS_FRAGMENT;
	}
	if (nh != IPPROTO_TCP)
		return PASS_NOT_TCP;

	/* A zero payload length (jumbogram) fails this check too: passed to the kernel. */
	end = sizeof(*ip6) + bpf_ntohs(ip6->payload_len);
	if (end < off + sizeof(struct tcphdr) || (void *)ip6 + end > p->data_end)
		return PASS_MALFORMED;

	p->ipv6 = true;
	p->ip6 = ip6;
	p->tcp = (void *)ip6 + off;
	p->tcp_len = end - off;
	if ((void *)(p->tcp + 1) > p->data_end)
		return PASS_MALFORMED;
	return CONTINUE;
}

#endif /* XSYN_PARSE_H */
