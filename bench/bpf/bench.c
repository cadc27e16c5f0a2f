// SPDX-License-Identifier: GPL-2.0-only
/*
 * The benchmark's own XDP programs (not part of xsyn):
 *
 *   bench_gen      the flood generator, run by BPF_PROG_RUN in live-frame mode "on" the attacker's
 *                  veth: every run turns its page into a SYN or a forged ACK from a fresh random
 *                  source and sends it to the DUT (XDP_TX becomes a redirect out of that veth),
 *                  as fast as it can or paced to a target rate.
 *   bench_sink     on the attacker's veth: counts what comes back to the flood's sources (SYN-ACKs,
 *                  RSTs) and drops it, so the attacker's stack does no work (and, on a veth, makes
 *                  XDP_TX from the DUT arrive at all); passes everything else (the legit client's
 *                  traffic, which the attacker's namespace routes).
 *   bench_reflect  a ceiling for the DUT: the least work that still answers a SYN (swap MACs,
 *                  addresses and ports, set ACK, XDP_TX). No cookie, no options.
 *   bench_drop     a ceiling for the DUT: XDP_DROP, the least work at all.
 *
 * The header files are xsyn's own (types, helpers, checksum folding); nothing here is compiled into
 * xsyn.
 */
#include "common.h"
#include "csum.h"

char LICENSE[] SEC("license") = "GPL";

#define MAX_FRAME 128

/* The frames the generator sends, with correct checksums; written by Go before each run. */
struct gen_config {
	__u8 frame[MAX_FRAME];     /* the SYN */
	__u8 ack_frame[MAX_FRAME]; /* the forged ACK, as long as the SYN */
	__u32 len;                 /* 54 or 74 (IPv4), 74 or 94 (IPv6) */
	__u32 ipv6;                /* bool */
	__u32 ack_permille;        /* share of forged ACKs: 0 a SYN flood, 1000 an ACK flood */
	__u32 _pad;
	/* Pacing, in 1/1024 ns: the gap between two frames (0: as fast as possible), and how far
	 * behind its schedule the generator may fall and still catch up (a burst). */
	__u64 gap;
	__u64 burst;
};

/* One run of the generator; Go zeroes it before every run. The flood's own clock: the time of its
 * first frame and of every 64th after it, so that its rate excludes BPF_PROG_RUN's setup and
 * teardown (tens of milliseconds of synchronize_rcu) at a clock read per 64 frames. */
struct gen_state {
	__u64 next;     /* pacing: when the next frame may go (1/1024 ns; 0: at once) */
	__u64 sent;     /* frames sent in this run */
	__u64 first_ns; /* clock at the first one */
	__u64 last_ns;  /* clock at the last one stamped */
	__u64 stamped;  /* frames sent after the first, up to the last one stamped */
};

struct gen_counters {
	__u64 sent;  /* frames handed to XDP_TX */
	__u64 acks;  /* of which forged ACKs */
	__u64 idle;  /* runs that sent nothing: ahead of the target rate */
};

struct sink_counters {
	__u64 synack; /* to a flood source, SYN and ACK set: answers to the flood's SYNs */
	__u64 rst;    /* to a flood source, RST set: the stack's answer to a forged ACK */
	__u64 other;  /* to a flood source, anything else */
	__u64 passed; /* not to a flood source (the legit client's traffic): passed to the stack */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gen_config);
} bench_gen_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gen_state);
} bench_gen_state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gen_counters);
} bench_gen_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sink_counters);
} bench_sink_counters SEC(".maps");

#define ETH_HLEN 14
#define IP4_SADDR_OFF (ETH_HLEN + 12)
#define IP4_CHECK_OFF (ETH_HLEN + 10)
#define IP6_SADDR_OFF (ETH_HLEN + 8)
#define TCP_CHECK_OFF 16

/* 198.18.0.0/15 (RFC 2544 benchmarking) and 2001:2::/48 (RFC 5180 benchmarking). */
#define SRC4_NET 0xc6120000
#define SRC4_HOSTMASK 0x1ffff

static __always_inline __u32 load32(const __u8 *p)
{
	__u32 v;

	__builtin_memcpy(&v, p, sizeof(v));
	return v;
}

static __always_inline __u16 load16(const __u8 *p)
{
	__u16 v;

	__builtin_memcpy(&v, p, sizeof(v));
	return v;
}

/* RFC 1624 incremental update, HC' = ~(~HC + ~m + m'), over raw (network order) words. All words
 * start at even offsets, so 32-bit and 16-bit words fall on the same 16-bit lanes. */
static __always_inline __u64 csum_replace32(__u32 old, __u32 new)
{
	return (__u64)(__u32)~old + new;
}

static __always_inline __u64 csum_replace16(__u16 old, __u16 new)
{
	return (__u64)(__u16)~old + new;
}

/* Source port, sequence and acknowledgement numbers, for both families. A SYN keeps the
 * template's acknowledgement number (0); a forged ACK gets a random one, so it carries no valid
 * cookie but for the odd chance of 1 in 2^24 or so. */
struct tcp_rand {
	__be16 sport;
	__be32 seq;
	__be32 ack_seq;
};

static __always_inline void tcp_rand(struct tcp_rand *r, const __u8 *tmpl, __u32 l4off, bool ack)
{
	r->sport = bpf_htons(1024 + bpf_get_prandom_u32() % (65536 - 1024));
	r->seq = bpf_get_prandom_u32();
	r->ack_seq = ack ? bpf_get_prandom_u32() : load32(tmpl + l4off + 8);
}

/* The old values are read from the template in the map, never back from the packet just written:
 * the checksums are computed from values. */
static __always_inline __u64 tcp_delta(const __u8 *tmpl, __u32 l4off, const struct tcp_rand *r)
{
	const __u8 *t = tmpl + l4off;

	return csum_replace16(load16(t), r->sport) + csum_replace32(load32(t + 4), r->seq) +
	       csum_replace32(load32(t + 8), r->ack_seq) + (__u16)~load16(t + TCP_CHECK_OFF);
}

static __always_inline int gen4(void *data, void *data_end, const __u8 *tmpl, bool ack)
{
	const __u32 l4off = ETH_HLEN + sizeof(struct iphdr);
	struct iphdr *ip = data + ETH_HLEN;
	struct tcphdr *th = data + l4off;
	__be32 old_saddr = load32(tmpl + IP4_SADDR_OFF);
	__be32 saddr = bpf_htonl(SRC4_NET | (bpf_get_prandom_u32() & SRC4_HOSTMASK));
	struct tcp_rand r;
	__u64 sum;

	if ((void *)(th + 1) > data_end)
		return XDP_ABORTED;
	tcp_rand(&r, tmpl, l4off, ack);

	sum = (__u16)~load16(tmpl + IP4_CHECK_OFF) + csum_replace32(old_saddr, saddr);
	ip->saddr = saddr;
	ip->check = csum_fold(sum);

	sum = tcp_delta(tmpl, l4off, &r) + csum_replace32(old_saddr, saddr);
	th->source = r.sport;
	th->seq = r.seq;
	th->ack_seq = r.ack_seq;
	th->check = csum_fold(sum);
	return XDP_TX;
}

static __always_inline int gen6(void *data, void *data_end, const __u8 *tmpl, bool ack)
{
	const __u32 l4off = ETH_HLEN + sizeof(struct ipv6hdr);
	struct ipv6hdr *ip6 = data + ETH_HLEN;
	struct tcphdr *th = data + l4off;
	const __u8 *old = tmpl + IP6_SADDR_OFF;
	/* 2001:2:0:ssss:iiii:iiii:iiii:iiii, the first 48 bits from the template. */
	__be32 w1 = bpf_htonl(bpf_get_prandom_u32() & 0xffff);
	__be32 w2 = bpf_get_prandom_u32(), w3 = bpf_get_prandom_u32();
	struct tcp_rand r;
	__u64 sum;

	if ((void *)(th + 1) > data_end)
		return XDP_ABORTED;
	tcp_rand(&r, tmpl, l4off, ack);

	sum = tcp_delta(tmpl, l4off, &r) + csum_replace32(load32(old + 4), w1) +
	      csum_replace32(load32(old + 8), w2) + csum_replace32(load32(old + 12), w3);
	ip6->saddr[1] = w1;
	ip6->saddr[2] = w2;
	ip6->saddr[3] = w3;
	th->source = r.sport;
	th->seq = r.seq;
	th->ack_seq = r.ack_seq;
	th->check = csum_fold(sum);
	return XDP_TX;
}

/* pace says whether a frame may go now. It keeps a schedule, not a count per interval: a frame
 * goes when the clock has reached the next slot, and the slot moves one gap on. A generator that
 * fell behind (preempted by the sink on its CPU) sends the frames it owes back to back, but
 * never more than burst's worth: beyond that the debt is forgotten, and the measured offered rate
 * falls short of the target instead of the flood turning into one long burst. Reading the clock
 * costs every run, so an unpaced generator does not. */
static __always_inline bool pace(const struct gen_config *cfg, struct gen_state *st, __u64 *now_ns)
{
	__u64 now, next;

	if (!cfg->gap)
		return true;
	*now_ns = bpf_ktime_get_ns();
	now = *now_ns << 10;
	next = st->next;
	if (now < next)
		return false;
	if (next + cfg->burst < now)
		next = now - cfg->burst;
	st->next = next + cfg->gap;
	return true;
}

/* stamp keeps the run's clock (struct gen_state) for one frame sent. */
static __always_inline void stamp(struct gen_state *st, __u64 now_ns)
{
	st->sent++;
	if (st->sent == 1) {
		st->first_ns = now_ns ?: bpf_ktime_get_ns();
	} else if ((st->sent & 63) == 0) {
		st->last_ns = now_ns ?: bpf_ktime_get_ns();
		st->stamped = st->sent - 1;
	}
}

SEC("xdp")
int bench_gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	struct gen_counters *c;
	struct gen_config *cfg;
	struct gen_state *st;
	const __u8 *tmpl;
	__u64 now_ns = 0;
	__u32 zero = 0;
	bool ack;
	int act;

	cfg = bpf_map_lookup_elem(&bench_gen_config, &zero);
	c = bpf_map_lookup_elem(&bench_gen_counters, &zero);
	st = bpf_map_lookup_elem(&bench_gen_state, &zero);
	if (!cfg || !c || !st)
		return XDP_ABORTED;
	/* Ahead of the target rate: the page goes back to the pool unsent. */
	if (!pace(cfg, st, &now_ns)) {
		c->idle++;
		return XDP_DROP;
	}
	ack = cfg->ack_permille >= 1000 ||
	      (cfg->ack_permille && bpf_get_prandom_u32() % 1000 < cfg->ack_permille);
	tmpl = ack ? cfg->ack_frame : cfg->frame;

	/* Live-frame pages are recycled as they come back, with whatever the DUT wrote into them
	 * (a SYN-ACK, a reflected SYN): write the whole template every time. Both templates have
	 * the length of the context's frame: a program cannot change it for good in live-frame mode
	 * (the kernel restores data_end only when the frame's start moved). */
	switch (cfg->len) {
	case 54:
		if (data + 54 > data_end)
			return XDP_ABORTED;
		__builtin_memcpy(data, tmpl, 54);
		break;
	case 74:
		if (data + 74 > data_end)
			return XDP_ABORTED;
		__builtin_memcpy(data, tmpl, 74);
		break;
	case 94:
		if (data + 94 > data_end)
			return XDP_ABORTED;
		__builtin_memcpy(data, tmpl, 94);
		break;
	default:
		return XDP_ABORTED;
	}

	act = cfg->ipv6 ? gen6(data, data_end, tmpl, ack) : gen4(data, data_end, tmpl, ack);
	if (act == XDP_TX) {
		c->sent++;
		if (ack)
			c->acks++;
		stamp(st, now_ns);
	}
	return act;
}

/* Finds the TCP header of an untagged IPv4 or IPv6 frame; NULL for anything else. */
static __always_inline struct tcphdr *find_tcp(void *data, void *data_end, bool *ipv6)
{
	struct ethhdr *eth = data;
	struct tcphdr *th;

	if ((void *)(eth + 1) > data_end)
		return NULL;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);

		if ((void *)(ip + 1) > data_end || ip->protocol != IPPROTO_TCP || ip->ihl != 5)
			return NULL;
		th = (void *)(ip + 1);
		*ipv6 = false;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > data_end || ip6->nexthdr != IPPROTO_TCP)
			return NULL;
		th = (void *)(ip6 + 1);
		*ipv6 = true;
	} else {
		return NULL;
	}
	if ((void *)(th + 1) > data_end)
		return NULL;
	return th;
}

/* Whether a TCP segment found by find_tcp is addressed to one of the flood's sources. */
static __always_inline bool to_flood(void *data, bool ipv6)
{
	if (!ipv6) {
		struct iphdr *ip = data + ETH_HLEN;

		return (bpf_ntohl(ip->daddr) & ~SRC4_HOSTMASK) == SRC4_NET;
	}
	struct ipv6hdr *ip6 = data + ETH_HLEN;

	/* 2001:2::/48 */
	return ip6->daddr[0] == bpf_htonl(0x20010002) && (ip6->daddr[1] & bpf_htonl(0xffff0000)) == 0;
}

SEC("xdp")
int bench_sink(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	struct sink_counters *c;
	struct tcphdr *th;
	__u32 zero = 0;
	bool ipv6;
	__u8 flags;

	c = bpf_map_lookup_elem(&bench_sink_counters, &zero);
	if (!c)
		return XDP_PASS;
	th = find_tcp(data, data_end, &ipv6);
	if (!th || !to_flood(data, ipv6)) {
		c->passed++;
		return XDP_PASS;
	}
	flags = tcp_flags(th);
	if ((flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == (TCP_FLAG_SYN | TCP_FLAG_ACK))
		c->synack++;
	else if (flags & TCP_FLAG_RST)
		c->rst++;
	else
		c->other++;
	return XDP_DROP;
}

static __always_inline void swap32(__be32 *a, __be32 *b)
{
	__be32 t = *a;

	*a = *b;
	*b = t;
}

SEC("xdp")
int bench_reflect(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct tcphdr *th;
	__u8 mac[ETH_ALEN];
	__u16 old, new, check;
	__be16 port;
	bool ipv6;

	th = find_tcp(data, data_end, &ipv6);
	if (!th)
		return XDP_PASS;

	/* Swapping fields moves words around inside the checksummed data and leaves both sums as
	 * they are; only the ACK flag changes one word (it makes the answer a SYN-ACK the sink
	 * counts). */
	if (!ipv6) {
		struct iphdr *ip = (void *)(eth + 1);

		swap32(&ip->saddr, &ip->daddr);
	} else {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

#pragma unroll
		for (int i = 0; i < 4; i++)
			swap32(&ip6->saddr[i], &ip6->daddr[i]);
	}
	port = th->source;
	th->source = th->dest;
	th->dest = port;

	old = load16((__u8 *)th + 12);
	check = th->check;
	new = old | bpf_htons(TCP_FLAG_ACK);
	*(__u16 *)((__u8 *)th + 12) = new;
	th->check = csum_fold((__u16)~check + csum_replace16(old, new));

	__builtin_memcpy(mac, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, mac, ETH_ALEN);
	return XDP_TX;
}

SEC("xdp")
int bench_drop(struct xdp_md *ctx)
{
	return XDP_DROP;
}
