/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Answering a SYN: the client's options, the cookie (syncookie.h for the kernel's, cookie.h for
 * the handoff's), and the SYN-ACK written over the SYN.
 *
 * The SYN-ACK is the one netfilter's SYNPROXY target would send (nf_synproxy_core.c:
 * synproxy_send_client_synack / synproxy_build_options), so SYNPROXY, which shares the kernel's
 * cookie secret, accepts the client's ACK as if it had answered the SYN itself:
 *   - sequence number: the kernel's SYN cookie (bpf_tcp_raw_gen_syncookie_ipv4/6), which encodes
 *     the client's MSS;
 *   - when the client sent timestamps and the service allows them, our tsval carries the client's
 *     window scale (bits 0-3, 0xf = none), SACK-permitted (bit 4) and ECN (bit 5), exactly as
 *     synproxy_init_timestamp_cookie() encodes and synproxy_check_timestamp_cookie() decodes;
 *     without timestamps neither window scaling nor SACK can be carried, so neither is offered;
 *   - option layout MSS, [SACK_PERM|NOP NOP] TS, [NOP WS]; window 0; IP header without options,
 *     DF set, id 0; IPv6 without extension headers, traffic class and flow label 0.
 * One deliberate difference: the MSS option is always sent (SYNPROXY sends it only when the client
 * did), as the kernel's own listener does; the cookie still encodes the client's MSS.
 */
#ifndef XSYN_SYNACK_H
#define XSYN_SYNACK_H

#include "common.h"
#include "cookie.h"
#include "csum.h"
#include "maps.h"
#include "parse.h"
#include "socket.h"
#include "syncookie.h"

#define MAX_TCP_OPTION_BYTES 40

/* What the client offered in its SYN. */
struct syn_options {
	__u16 mss;       /* the last non-zero MSS, as the kernel's tcp_parse_mss_option(); 0: none */
	__u8 wscale;     /* the client's shift, clamped to TCP_MAX_WSCALE as SYNPROXY does */
	bool has_wscale;
	bool sack;
	bool ts;
	__be32 tsval;
	__be32 tsecr;
};

/*
 * Walks the options the way the kernel does (stop at EOL, on a "silly" size < 2 or on a partial
 * option) and keeps the last of each. opt_off: where the options start in the frame; len: their
 * length, <= 40.
 *
 * Called through global functions on purpose (one per program type, whose contexts differ): the
 * verifier checks each once, on its own, instead of once for every way of reaching it (each VLAN
 * depth, IPv4 header length, IPv6 extension chain), which inlined took 700k of the 1M
 * instructions it may examine. The loop is bounded by the offset alone, which grows every round,
 * so states at the loop head differ only in offset and findings and prune well.
 */
static __always_inline int walk_tcp_options(void *data, void *data_end, __u32 opt_off, __u32 len,
					    struct syn_options *o)
{
	__u8 *opt;
	__u32 off = 0;

	if (!o || opt_off > 0x3fff) /* far beyond any header chain we walk */
		return 0;
	opt = data + opt_off;

	while (off < len && off < MAX_TCP_OPTION_BYTES) {
		__u8 *q = opt + off, kind, size;

		/* Keep clang from folding the bound check into opt + (off + 2), a pointer the
		 * verifier would not connect to q. */
		barrier_var(q);
		if ((void *)(q + 2) > data_end) {
			/* Only a trailing one-byte EOL/NOP can end here. */
			break;
		}
		kind = q[0];
		if (kind == TCPOPT_EOL)
			break;
		if (kind == TCPOPT_NOP) {
			off++;
			continue;
		}
		size = q[1];
		if (size < 2 || off + size > len)
			break;

		switch (kind) {
		case TCPOPT_MSS:
			if (size == TCPOLEN_MSS && (void *)(q + TCPOLEN_MSS) <= data_end) {
				__u16 mss = (q[2] << 8) | q[3];

				if (mss)
					o->mss = mss;
			}
			break;
		case TCPOPT_WINDOW:
			if (size == TCPOLEN_WINDOW && (void *)(q + TCPOLEN_WINDOW) <= data_end) {
				o->wscale = q[2] > TCP_MAX_WSCALE ? TCP_MAX_WSCALE : q[2];
				o->has_wscale = true;
			}
			break;
		case TCPOPT_SACK_PERM:
			if (size == TCPOLEN_SACK_PERM)
				o->sack = true;
			break;
		case TCPOPT_TIMESTAMP:
			if (size == TCPOLEN_TIMESTAMP && (void *)(q + TCPOLEN_TIMESTAMP) <= data_end) {
				__builtin_memcpy(&o->tsval, q + 2, sizeof(o->tsval));
				__builtin_memcpy(&o->tsecr, q + 6, sizeof(o->tsecr));
				o->ts = true;
			}
			break;
		}
		off += size;
	}
	return 0;
}

__noinline int parse_syn_options(struct xdp_md *ctx, __u32 opt_off, __u32 len,
				 struct syn_options *o)
{
	return walk_tcp_options((void *)(long)ctx->data, (void *)(long)ctx->data_end, opt_off, len, o);
}

__noinline int parse_skb_options(struct __sk_buff *skb, __u32 opt_off, __u32 len,
				 struct syn_options *o)
{
	return walk_tcp_options((void *)(long)skb->data, (void *)(long)skb->data_end, opt_off, len, o);
}

/* The options of a segment that is not a SYN; Linux's ACKs carry NOP NOP TS, read without the
 * walk. Used for the timestamps only. */
static __always_inline void parse_ack_options(const struct packet *p, __u32 len, void *ctx,
					      bool skb, struct syn_options *o)
{
	__u8 *opt = (void *)(p->tcp + 1);

	if (len == 0)
		return;
	if (len == 12 && (void *)(opt + 12) <= p->data_end && opt[0] == TCPOPT_NOP &&
	    opt[1] == TCPOPT_NOP && opt[2] == TCPOPT_TIMESTAMP && opt[3] == TCPOLEN_TIMESTAMP) {
		__builtin_memcpy(&o->tsval, opt + 4, sizeof(o->tsval));
		__builtin_memcpy(&o->tsecr, opt + 8, sizeof(o->tsecr));
		o->ts = true;
		return;
	}
	if (skb)
		parse_skb_options(ctx, (void *)opt - p->data, len, o);
	else
		parse_syn_options(ctx, (void *)opt - p->data, len, o);
}

/* The layout Linux sends (MSS, SACK_PERM, TS, NOP, WS: 20 bytes), read without the generic
 * walk; most SYNs carry it. Same results as parse_syn_options would give. */
static __always_inline bool parse_linux_syn_options(const struct packet *p, __u32 len,
						    struct syn_options *o)
{
	__u8 *opt = (void *)(p->tcp + 1);
	__u16 mss;

	if (len != 20 || (void *)(opt + 20) > p->data_end)
		return false;
	if (opt[0] != TCPOPT_MSS || opt[1] != TCPOLEN_MSS || opt[4] != TCPOPT_SACK_PERM ||
	    opt[5] != TCPOLEN_SACK_PERM || opt[6] != TCPOPT_TIMESTAMP ||
	    opt[7] != TCPOLEN_TIMESTAMP || opt[16] != TCPOPT_NOP || opt[17] != TCPOPT_WINDOW ||
	    opt[18] != TCPOLEN_WINDOW)
		return false;
	mss = (opt[2] << 8) | opt[3];
	if (mss)
		o->mss = mss;
	o->sack = true;
	__builtin_memcpy(&o->tsval, opt + 8, sizeof(o->tsval));
	__builtin_memcpy(&o->tsecr, opt + 12, sizeof(o->tsecr));
	o->ts = true;
	o->wscale = opt[19] > TCP_MAX_WSCALE ? TCP_MAX_WSCALE : opt[19];
	o->has_wscale = true;
	return true;
}

/* Everything the SYN-ACK needs, gathered before the frame is resized (which invalidates every
 * packet pointer). */
struct synack {
	__be32 seq;      /* the cookie */
	__be32 ack_seq;  /* client's seq + 1 */
	__be16 sport;    /* our port: the SYN's destination */
	__be16 dport;    /* the client's port */
	__u8 flags;
	__be16 window;   /* 0 for SYNPROXY's cookie, as SYNPROXY sends; the service's for handoff */
	__u32 optlen;    /* 4 to 20 bytes, in words: MSS, [SACK|TS|TSval|TSecr], [SACK], [WS] */
	__be32 opt[5];
};

/* The options after the MSS when timestamps are on, in the order Linux writes them:
 * [SACK_PERM|NOP NOP] TS tsval tsecr, [NOP WS]. tsecr is the client's TSval, as it came. */
static __always_inline void ts_options(struct synack *sa, bool sack, __u32 tsval, __be32 tsecr,
				       bool ws, __u8 wscale)
{
	sa->opt[1] = bpf_htonl(((sack ? (TCPOPT_SACK_PERM << 8) | TCPOLEN_SACK_PERM
				      : (TCPOPT_NOP << 8) | TCPOPT_NOP) << 16) |
			       (TCPOPT_TIMESTAMP << 8) | TCPOLEN_TIMESTAMP);
	sa->opt[2] = bpf_htonl(tsval);
	sa->opt[3] = tsecr;
	sa->optlen = 16;
	if (ws) {
		sa->opt[4] = bpf_htonl((TCPOPT_NOP << 24) | (TCPOPT_WINDOW << 16) |
				       (TCPOLEN_WINDOW << 8) | wscale);
		sa->optlen = 20;
	}
}

static __always_inline void synack_options(const struct service *svc, const struct syn_options *o,
					   bool ecn_requested, struct synack *sa)
{
	bool ws, sack, ecn;
	__u32 tsval;

	sa->opt[0] = bpf_htonl((TCPOPT_MSS << 24) | (TCPOLEN_MSS << 16) | svc->mss);
	sa->optlen = 4;
	if (!o->ts || !svc->timestamps)
		return;

	ws = o->has_wscale && svc->use_wscale;
	sack = o->sack && svc->sack;
	ecn = ecn_requested && svc->ecn;

	/* SYNPROXY's timestamp cookie: a clock with the low 6 bits replaced. SYNPROXY uses
	 * tcp_clock_ms(); any clock ticking every 1 ms to 1 s will do (RFC 7323), since only the
	 * low bits are decoded and each connection's timestamps only need to grow. jiffies costs a
	 * memory read where a clock read costs ~25 ns in a VM. */
	tsval = bpf_jiffies64() & ~0x3fULL;
	tsval |= ws ? o->wscale : 0xf;
	if (sack)
		tsval |= 1 << 4;
	if (ecn) {
		tsval |= 1 << 5;
		sa->flags |= TCP_FLAG_ECE;
	}

	ts_options(sa, sack, tsval, o->tsval, ws, svc->wscale);
}

/*
 * The handoff SYN-ACK (cookie.h): what the listening socket itself would send (tcp_options_write:
 * MSS, then SACK_PERM with TS or SACK_PERM alone, then WS) and a real receive window. The options
 * ride in the ISN, not in the TSval, so a client without timestamps still gets SACK and window
 * scaling. False only without a secret, which the loader always writes.
 */
static __always_inline bool handoff_synack(const struct packet *p, const struct service *svc,
					   const struct syn_options *o, bool ecn_requested,
					   struct synack *sa)
{
	const struct cookie_secret *sec = cookie_secret();
	bool ts, ws, sack;
	__u32 optbits, isn, ts_bits;
	__u64 now;

	if (!sec)
		return false;
	ts = o->ts && svc->timestamps;
	ws = o->has_wscale && svc->use_wscale;
	sack = o->sack && svc->sack;
	optbits = (mss_index(o->mss, p->ipv6) << COOKIE_MSS_SHIFT) |
		  (ws ? o->wscale : COOKIE_WSCALE_NONE);
	if (sack)
		optbits |= COOKIE_SACK;
	if (ecn_requested && svc->ecn) {
		optbits |= COOKIE_ECN;
		sa->flags |= TCP_FLAG_ECE;
	}
	now = bpf_ktime_get_tai_ns();
	cookie_make(p, sec, now, optbits, &isn, &ts_bits);
	sa->seq = bpf_htonl(isn);
	sa->window = bpf_htons(svc->window);

	sa->opt[0] = bpf_htonl((TCPOPT_MSS << 24) | (TCPOLEN_MSS << 16) | svc->mss);
	sa->optlen = 4;
	if (ts) {
		__u32 tsval = ((__u32)(now / 1000000) & ~0xffu) | ts_bits;

		ts_options(sa, sack, tsval, o->tsval, ws, svc->wscale);
		return true;
	}
	if (sack) {
		sa->opt[1] = bpf_htonl((TCPOPT_NOP << 24) | (TCPOPT_NOP << 16) |
				       (TCPOPT_SACK_PERM << 8) | TCPOLEN_SACK_PERM);
		sa->optlen = 8;
	}
	if (ws) {
		__be32 w = bpf_htonl((TCPOPT_NOP << 24) | (TCPOPT_WINDOW << 16) |
				     (TCPOLEN_WINDOW << 8) | svc->wscale);

		if (sack) {
			sa->opt[2] = w;
			sa->optlen = 12;
		} else {
			sa->opt[1] = w;
			sa->optlen = 8;
		}
	}
	return true;
}

/* Writes the TCP header and options at th and returns the checksum sum of what it wrote (without
 * the pseudo header). The sum is made from the values, never by reading the frame back: loads
 * through a wider type may legally be ordered before the narrower stores they depend on.
 * Fails only if the frame is shorter than the size just set, which cannot happen. */
static __always_inline bool write_tcp(struct tcphdr *th, void *data_end, const struct synack *sa,
				      __u64 *sum)
{
	__be32 *o = (void *)(th + 1);
	__be16 doff_flags = bpf_htons((((sizeof(*th) + sa->optlen) / 4) << 12) | sa->flags);

	/* One constant-offset range check per option word, so the verifier sees each write. */
	if ((void *)(o + 1) > data_end)
		return false;
	th->source = sa->sport;
	th->dest = sa->dport;
	th->seq = sa->seq;
	th->ack_seq = sa->ack_seq;
	*(__be16 *)((__u8 *)th + 12) = doff_flags;
	th->window = sa->window;
	th->check = 0;
	th->urg_ptr = 0;

	o[0] = sa->opt[0];
	if (sa->optlen >= 8) {
		if ((void *)(o + 2) > data_end)
			return false;
		o[1] = sa->opt[1];
	}
	if (sa->optlen >= 12) {
		if ((void *)(o + 3) > data_end)
			return false;
		o[2] = sa->opt[2];
	}
	if (sa->optlen >= 16) {
		if ((void *)(o + 4) > data_end)
			return false;
		o[3] = sa->opt[3];
	}
	if (sa->optlen >= 20) {
		if ((void *)(o + 5) > data_end)
			return false;
		o[4] = sa->opt[4];
	}

	*sum = (__u64)sa->sport + sa->dport + sa->seq + sa->ack_seq + doff_flags + sa->window +
	       csum_words(sa->opt, sizeof(sa->opt) / 4); /* unused option words are zero */
	return true;
}

static __always_inline void swap_macs(struct ethhdr *eth)
{
	__u8 tmp[ETH_ALEN];

	__builtin_memcpy(tmp, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, tmp, ETH_ALEN);
}

/* Sets the frame to exactly the SYN-ACK's length: grows an option-less SYN by the 4 bytes of our
 * MSS option, trims longer SYNs, Ethernet padding and any payload. */
static __always_inline bool resize(struct xdp_md *ctx, const struct packet *p, __u32 iphlen,
				   __u32 optlen)
{
	int want = p->l3off + iphlen + sizeof(struct tcphdr) + optlen;
	int delta = want - (int)(p->data_end - p->data);

	return delta == 0 || bpf_xdp_adjust_tail(ctx, delta) == 0;
}

static __always_inline enum reason transmit_ipv4(struct xdp_md *ctx, __u32 l3off,
						 const struct service *svc, __be32 saddr,
						 __be32 daddr, const struct synack *sa)
{
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + l3off;
	struct tcphdr *th = (void *)(ip + 1);
	__u32 tcp_len = sizeof(*th) + sa->optlen;
	__u64 sum;

	if ((void *)(eth + 1) > data_end || (void *)(th + 1) > data_end)
		return DROP_INTERNAL;
	if (!write_tcp(th, data_end, sa, &sum))
		return DROP_INTERNAL;
	th->check = csum_fold(sum + pseudo_sum4(daddr, saddr, tcp_len));

	/* Version 4, IHL 5, TOS 0 | id 0, DF | TTL, TCP, checksum | addresses swapped. */
	{
		__be32 *w = (__be32 *)ip;
		__be32 w0 = bpf_htonl((0x45 << 24) | (sizeof(*ip) + tcp_len));
		__be32 w1 = bpf_htonl(IP_DF);
		__be32 w2 = bpf_htonl((svc->ttl << 24) | (IPPROTO_TCP << 16));

		w[0] = w0;
		w[1] = w1;
		w[2] = w2;
		w[3] = daddr;
		w[4] = saddr;
		ip->check = csum_fold((__u64)w0 + w1 + w2 + saddr + daddr);
	}

	swap_macs(eth);
	return SYNACK_SENT;
}

static __always_inline enum reason transmit_ipv6(struct xdp_md *ctx, __u32 l3off,
						 const struct service *svc, const struct synack *sa)
{
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct ipv6hdr *ip6 = data + l3off;
	struct tcphdr *th = (void *)(ip6 + 1);
	__u32 tcp_len = sizeof(*th) + sa->optlen;
	__be32 saddr[4], daddr[4];
	__u64 sum;

	if ((void *)(eth + 1) > data_end || (void *)(th + 1) > data_end)
		return DROP_INTERNAL;
	if (!write_tcp(th, data_end, sa, &sum))
		return DROP_INTERNAL;

	/* The addresses are still where the SYN had them (resizing only moves the tail). */
	__builtin_memcpy(saddr, ip6->saddr, sizeof(saddr));
	__builtin_memcpy(daddr, ip6->daddr, sizeof(daddr));
	*(__be32 *)ip6 = bpf_htonl(6 << 28); /* traffic class and flow label 0 */
	ip6->payload_len = bpf_htons(tcp_len);
	ip6->nexthdr = IPPROTO_TCP;
	ip6->hop_limit = svc->ttl;
	__builtin_memcpy(ip6->saddr, daddr, sizeof(daddr));
	__builtin_memcpy(ip6->daddr, saddr, sizeof(saddr));
	th->check = csum_fold(sum + pseudo_sum6(daddr, saddr, tcp_len));

	swap_macs(eth);
	return SYNACK_SENT;
}

#define TW_CHECKS_PER_SECOND 20000

/* Per CPU: the second the TIME_WAIT checks are counted in, and how many were made in it. */
struct tw_budget {
	__u64 second;
	__u32 used;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tw_budget);
} xsyn_tw_budget SEC(".maps");

static __always_inline bool tw_check_allowed(void)
{
	__u32 zero = 0;
	struct tw_budget *b = bpf_map_lookup_elem(&xsyn_tw_budget, &zero);
	__u64 second = bpf_ktime_get_coarse_ns() >> 30; /* ~1.07 s; coarse: a tick's resolution */

	if (!b)
		return true;
	if (b->second != second) {
		b->second = second;
		b->used = 0;
	}
	if (b->used >= TW_CHECKS_PER_SECOND)
		return false;
	b->used++;
	return true;
}

/* Set by the loader before loading (a read-only global): the kernel has the socket handoff
 * (Linux 6.9+). When clear, the verifier never sees the handoff code, whose helpers (TAI clock,
 * socket lookup) older kernels may lack, and every service uses the kernel's cookie. */
volatile const __u8 have_handoff = 0;

/* A SYN to a protected service: answer it from here with a cookie SYN-ACK.
 * Conntrack is not consulted: the netfilter rules NOTRACK every protected SYN, so SYNPROXY answers
 * a SYN with a cookie whatever the table holds, and looking it up would cost every flood packet a
 * hash walk without changing any verdict. Nor is a socket, on the handoff path: the kernel's own
 * listener answers a SYN for a connection it has with a challenge ACK, which the cookie SYN-ACK
 * stands in for (the client answers it with an ACK the socket lookup then passes). */
static __always_inline enum reason answer_syn(struct xdp_md *ctx, const struct packet *p,
					      const struct service *svc, __u32 opt_len)
{
	struct syn_options o = {};
	struct synack sa = {};
	__u8 flags = tcp_flags(p->tcp);
	bool ecn = (flags & (TCP_FLAG_ECE | TCP_FLAG_CWR)) == (TCP_FLAG_ECE | TCP_FLAG_CWR);

	if (!parse_linux_syn_options(p, opt_len, &o))
		parse_syn_options(ctx, (void *)(p->tcp + 1) - p->data, opt_len, &o);

	sa.ack_seq = bpf_htonl(bpf_ntohl(p->tcp->seq) + 1);
	sa.sport = p->tcp->dest;
	sa.dport = p->tcp->source;
	sa.flags = TCP_FLAG_SYN | TCP_FLAG_ACK;
	if (have_handoff && svc->handoff) {
		/* A new SYN for a 4-tuple whose server side is in TIME_WAIT: the kernel reuses the
		 * port (tcp_timewait_state_process, TCP_TW_SYN), where a cookie's ACK would only meet
		 * the TIME_WAIT socket and stall until it expires. Such SYNs come from real clients
		 * reconnecting from the same port. The lookup misses the cache for every spoofed
		 * tuple and would double the cost of a flood's SYN, so each CPU makes at most
		 * TW_CHECKS_PER_SECOND of them: all of them in peacetime, few during a flood.
		 * XXX: a client reconnecting from the same port in the middle of a flood may still
		 * stall until the TIME_WAIT socket expires. */
		if (tw_check_allowed()) {
			int state = socket_state(ctx, p);

			if (state == TCP_TIME_WAIT)
				return PASS_TIME_WAIT;
			/* On-demand (ondemand.h): the listener answered this client before the
			 * switch to cookies, and the client sends its SYN again (the SYN-ACK was
			 * lost). The request socket would refuse the ACK of a cookie; the listener
			 * answers it again instead. */
			if (svc->on_demand && state == TCP_NEW_SYN_RECV)
				return PASS_ON_DEMAND_IDLE;
		}
		if (!handoff_synack(p, svc, &o, ecn, &sa))
			return PASS_COOKIE_ERROR;
	} else {
		__s64 cookie = syn_cookie(p, o.mss);

		if (cookie < 0)
			return PASS_COOKIE_ERROR;
		sa.seq = bpf_htonl((__u32)cookie);
		synack_options(svc, &o, ecn, &sa);
	}

	if (!p->ipv6) {
		__be32 saddr = p->ip4->saddr, daddr = p->ip4->daddr;

		/* XXX: a frame that cannot grow by 4 bytes (a driver without tailroom) is left to
		 * the stack: SYNPROXY answers it, or on the handoff path the listener (with the
		 * kernel's cookie when its queue is full). */
		if (!resize(ctx, p, sizeof(struct iphdr), sa.optlen))
			return PASS_NO_ROOM;
		return transmit_ipv4(ctx, p->l3off, svc, saddr, daddr, &sa);
	}
	if (!resize(ctx, p, sizeof(struct ipv6hdr), sa.optlen))
		return PASS_NO_ROOM;
	return transmit_ipv6(ctx, p->l3off, svc, &sa);
}

#endif /* XSYN_SYNACK_H */
