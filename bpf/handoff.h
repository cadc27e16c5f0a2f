/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The socket-handoff path (services with handoff set, Linux 6.9+): no conntrack, no SYNPROXY.
 *
 *   XDP, non-SYN segment: a socket lookup decides.
 *     established, time-wait or request socket  -> XDP_PASS: the connection exists
 *     the listener only, ACK, valid cookie      -> XDP_PASS: TC hands it to the listener
 *     the listener only, ACK with the listener's own cookie (on-demand services only)
 *                                               -> XDP_PASS: the stack checks it
 *     the listener only, anything else          -> XDP_DROP
 *     no socket at all, ACK, valid cookie       -> XDP_PASS: the server went away since the SYN;
 *                                                  the stack resets, as it would without xsyn
 *     no socket at all, anything else           -> XDP_DROP: forged; nothing to reset
 *   TC ingress, ACK with a valid cookie to a listener: bpf_sk_assign_tcp_reqsk() attaches a
 *     request socket built from the cookie; the kernel then creates the connection as if the
 *     listener had sent the SYN-ACK. The ACK still meets PREROUTING and INPUT on the way: the
 *     host's firewall decides who gets in.
 *
 * TC checks the cookie again rather than trust a mark from XDP: nothing a sender puts in a frame
 * can make TC hand a connection over.
 */
#ifndef XSYN_HANDOFF_H
#define XSYN_HANDOFF_H

#include "common.h"
#include "conntrack.h"
#include "cookie.h"
#include "counters.h"
#include "host.h"
#include "parse.h"
#include "socket.h"
#include "synack.h"
#include "syncookie.h"

extern int bpf_sk_assign_tcp_reqsk(struct __sk_buff *skb, struct sock *sk,
				   struct bpf_tcp_req_attrs *attrs, int attrs__sz) __ksym;

/* The ACK's cookie checked against the secret (cookie.h), timestamps read from its options. */
static __always_inline bool ack_cookie_valid(const struct packet *p, void *ctx, bool skb,
					     struct syn_options *o)
{
	const struct cookie_secret *sec = cookie_secret();

	if (!sec)
		return false;
	parse_ack_options(p, p->tcp->doff * 4 - sizeof(struct tcphdr), ctx, skb, o);
	return cookie_check(p, sec, bpf_ktime_get_tai_ns(), o->ts, bpf_ntohl(o->tsecr));
}

/* XDP: a segment other than a SYN to a handoff service. flags: SYN, ACK, RST and FIN only. */
static __always_inline enum reason judge_handoff(struct xdp_md *ctx, const struct packet *p,
						 const struct service *svc, __u8 flags)
{
	struct syn_options o = {};
	int state = socket_state(ctx, p);

	if (state != NO_SOCKET && state != TCP_LISTEN)
		return ESTABLISHED_PASSED;
	/* No connection here: on a router, maybe one it forwards. The lookup cannot tell (a
	 * listener on every address matches any destination), the FIB can. */
	if (svc->local_only && !dst_local(ctx, p))
		return PASS_ROUTED;
	if (flags != TCP_FLAG_ACK)
		return DROP_NO_CONN;
	if (!ack_cookie_valid(p, ctx, false, &o)) {
		/* On-demand: the listener answers SYNs itself while the service is quiet, and with
		 * its own cookie when its SYN queue overflows (at a switch, or below a threshold set
		 * too high). The stack checks that cookie again; the kernel's check here keeps
		 * forged ACKs out of it. */
		if (svc->on_demand && state == TCP_LISTEN && check_cookie(p) == ACK_COOKIE_VALID)
			return PASS_KERNEL_COOKIE;
		return ACK_COOKIE_INVALID;
	}
	return state == TCP_LISTEN ? ACK_COOKIE_VALID : PASS_NO_LISTENER;
}

/* TC: hand a valid-cookie ACK to its listener. Everything else passes untouched: XDP has judged
 * it already. */
static __always_inline int handoff(struct __sk_buff *skb, const struct packet *p, __u32 family,
				   const struct service *svc)
{
	struct bpf_tcp_req_attrs attrs = {};
	struct syn_options o = {};
	struct bpf_sock_tuple t = {};
	struct bpf_sock *skc;
	struct tcp_sock *tp;
	__u32 size;
	int err;

	if ((tcp_flags(p->tcp) & (TCP_FLAG_SYN | TCP_FLAG_ACK | TCP_FLAG_RST | TCP_FLAG_FIN)) !=
	    TCP_FLAG_ACK)
		return TC_ACT_OK;
	if (p->tcp->doff * 4 < sizeof(struct tcphdr))
		return TC_ACT_OK;
	if (!ack_cookie_valid(p, skb, true, &o))
		return TC_ACT_OK;

	size = sock_tuple(p, &t);
	skc = bpf_skc_lookup_tcp(skb, &t, size, (__u64)BPF_F_CURRENT_NETNS, 0);
	if (!skc)
		return TC_ACT_OK;
	if (skc->state != TCP_LISTEN) {
		bpf_sk_release(skc);
		return TC_ACT_OK;
	}
	tp = bpf_skc_to_tcp_sock(skc);
	if (!tp) {
		bpf_sk_release(skc);
		return TC_ACT_OK;
	}
	cookie_attrs(bpf_ntohl(p->tcp->ack_seq) - 1, p->ipv6, svc, o.ts, bpf_ntohl(o.tsval),
		     bpf_ntohl(o.tsecr), &attrs);
	err = bpf_sk_assign_tcp_reqsk(skb, (struct sock *)tp, &attrs, sizeof(attrs));
	bpf_sk_release(skc);
	return finish_handoff(family, svc, err == 0);
}

#endif /* XSYN_HANDOFF_H */
