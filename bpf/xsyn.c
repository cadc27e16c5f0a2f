// SPDX-License-Identifier: GPL-2.0-only
/*
 * xsyn: SYN-flood defence at XDP.
 *
 * For TCP to a protected service (xsyn_services4/6):
 *   SYN                         -> cookie SYN-ACK written over it, XDP_TX
 * and, on the SYNPROXY path (the kernel's cookie):
 *   confirmed conntrack entry   -> XDP_PASS (established flows)
 *   ACK with a valid cookie     -> XDP_PASS: netfilter's SYNPROXY completes the handshake
 *   ACK with an invalid cookie  -> XDP_DROP
 *   RST/FIN/SYN+ACK, no entry   -> XDP_DROP: nothing to reset or close; the stack would call them
 *                                  INVALID and the netfilter rules drop INVALID anyway
 * or, on the socket-handoff path (xsyn's cookie), what handoff.h says: a socket lookup decides,
 * and the TC program xsyn_handoff hands valid ACKs to the listener. A handoff service with
 * on-demand protection passes its SYNs to the listener until a flood starts (ondemand.h).
 * Everything else passes untouched. Every path ends in finish(), which counts it.
 */
#include "common.h"
#include "maps.h"
#include "counters.h"
#include "parse.h"
#include "services.h"
#include "syncookie.h"
#include "conntrack.h"
#include "synack.h"
#include "handoff.h"
#include "host.h"
#include "ondemand.h"

char LICENSE[] SEC("license") = "GPL";

static __always_inline enum reason protect(struct xdp_md *ctx, const struct packet *p,
					   struct verdict_ctx *v)
{
	const struct tcphdr *th = p->tcp;
	__u32 hdr_len = th->doff * 4;
	__u8 flags;

	/* Ours to judge: a header that cannot be valid is dropped rather than handed to the stack. */
	if (hdr_len < sizeof(*th) || hdr_len > p->tcp_len)
		return DROP_MALFORMED;

	flags = tcp_flags(th) & (TCP_FLAG_SYN | TCP_FLAG_ACK | TCP_FLAG_RST | TCP_FLAG_FIN);
	/* The rest of a fragmented datagram is the kernel's to reassemble. */
	if (p->fragment && flags != TCP_FLAG_SYN)
		return PASS_FRAGMENT;
	if (flags == TCP_FLAG_SYN) {
		v->syn = true;
		if (p->fragment)
			return DROP_FRAGMENT;
		if (p->ah)
			return DROP_AH;
		if (!syn_for_host(p))
			return PASS_NOT_FOR_HOST;
		if (v->svc->local_only && !dst_local(ctx, p))
			return PASS_ROUTED;
		/* On-demand (ondemand.h): the listener answers while the service is not flooded. */
		if (have_handoff && v->svc->handoff && v->svc->on_demand &&
		    !on_demand_cookies(v->svc))
			return PASS_ON_DEMAND_IDLE;
		return answer_syn(ctx, p, v->svc, hdr_len - sizeof(*th));
	}
	if (have_handoff && v->svc->handoff)
		return judge_handoff(ctx, p, v->svc, flags);
	if (ct_confirmed(ctx, p))
		return ESTABLISHED_PASSED;
	/* A connection this host forwards, tracked before xsyn came, or whose SYN went by. */
	if (v->svc->local_only && !dst_local(ctx, p))
		return PASS_ROUTED;
	if (flags == TCP_FLAG_ACK)
		return check_cookie(p);
	return DROP_NO_CONN;
}

/* Ethernet to TCP, and the family for the counters. */
static __always_inline enum reason parse(struct packet *p, __u32 *family, struct xdp_md *xdp,
					 struct __sk_buff *skb)
{
	enum reason r;
	__be16 proto;

	r = parse_l2(p, &proto);
	if (r != CONTINUE)
		return r;
	if (proto == bpf_htons(ETH_P_IP)) {
		*family = FAMILY_IPV4;
		return parse_ipv4(p);
	}
	if (proto == bpf_htons(ETH_P_IPV6)) {
		*family = FAMILY_IPV6;
		return parse_ipv6(p, xdp, skb);
	}
	return PASS_NOT_IP;
}

static __always_inline enum reason classify(struct xdp_md *ctx, struct packet *p,
					    struct verdict_ctx *v)
{
	enum reason r = parse(p, &v->family, ctx, NULL);

	if (r != CONTINUE)
		return r;

	v->svc = lookup_service(p);
	if (!v->svc)
		return p->fragment ? PASS_FRAGMENT : PASS_NOT_PROTECTED;
	return protect(ctx, p, v);
}

SEC("xdp")
int xsyn(struct xdp_md *ctx)
{
	struct packet p = {
		.data = (void *)(long)ctx->data,
		.data_end = (void *)(long)ctx->data_end,
	};
	struct verdict_ctx v = { .family = FAMILY_OTHER };

	return finish(&v, classify(ctx, &p, &v));
}

/* TC ingress, beside the XDP program: the handoff of valid-cookie ACKs (handoff.h). Loaded only
 * where the kernel has bpf_sk_assign_tcp_reqsk(). */
SEC("tc")
int xsyn_handoff(struct __sk_buff *skb)
{
	struct packet p = {
		.data = (void *)(long)skb->data,
		.data_end = (void *)(long)skb->data_end,
	};
	const struct service *svc;
	__u32 family = FAMILY_OTHER;

	/* A fragment's ACK is the kernel's to reassemble first; XDP drops SYNs in fragments, so no
	 * cookie of ours can be in one. */
	if (!have_handoff || parse(&p, &family, NULL, skb) != CONTINUE || p.fragment)
		return TC_ACT_OK;
	svc = lookup_service(&p);
	if (!svc || !svc->handoff)
		return TC_ACT_OK;
	return handoff(skb, &p, family, svc);
}
