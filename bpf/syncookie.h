/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The kernel's SYN cookie, for the SYNPROXY path: made for a SYN (syn_cookie), checked on the
 * client's ACK (check_cookie). Netfilter's SYNPROXY shares the kernel's cookie secret, so it
 * accepts what these helpers make and checks again what they let through.
 */
#ifndef XSYN_SYNCOOKIE_H
#define XSYN_SYNCOOKIE_H

#include "common.h"
#include "counters.h"
#include "parse.h"

/*
 * The kernel cookie for this SYN. The helper parses the MSS out of the TCP header it is given and
 * needs th_len == doff * 4 bytes of it, a length the verifier can only accept from a region it
 * knows the size of. So it is given a canonical copy on the stack: the SYN's ports and sequence
 * number plus the one option that enters the cookie, the MSS read from the SYN's options
 * (synack.h). Same inputs, same cookie,
 * and no need to grow a short SYN just to make room for the helper.
 */
struct canonical_syn {
	struct tcphdr th;
	__be32 mss_option;
};

static __always_inline void canonical_syn_init(struct canonical_syn *c, const struct tcphdr *th,
					       __u16 mss)
{
	c->th.source = th->source;
	c->th.dest = th->dest;
	c->th.seq = th->seq;
	c->th.doff = sizeof(*c) / 4;
	c->th.syn = 1;
	c->mss_option = bpf_htonl((TCPOPT_MSS << 24) | (TCPOLEN_MSS << 16) | mss);
}

static __always_inline __s64 syn_cookie(const struct packet *p, __u16 mss)
{
	struct canonical_syn c = {};

	canonical_syn_init(&c, p->tcp, mss);
	if (!p->ipv6)
		return bpf_tcp_raw_gen_syncookie_ipv4(p->ip4, &c.th, sizeof(c));
	return bpf_tcp_raw_gen_syncookie_ipv6(p->ip6, &c.th, sizeof(c));
}

/* An ACK to a protected service without a connection: is it the answer to one of our cookies? */
static __always_inline enum reason check_cookie(const struct packet *p)
{
	long err;

	if (!p->ipv6)
		err = bpf_tcp_raw_check_syncookie_ipv4(p->ip4, p->tcp);
	else
		err = bpf_tcp_raw_check_syncookie_ipv6(p->ip6, p->tcp);
	/* Valid: netfilter's SYNPROXY checks it again (shared secret) and opens the connection to
	 * the server. Invalid: a forged or stale ACK that would only cost the stack work. */
	return err == 0 ? ACK_COOKIE_VALID : ACK_COOKIE_INVALID;
}

#endif /* XSYN_SYNCOOKIE_H */
