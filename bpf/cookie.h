/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * xsyn's own SYN cookie, for the socket-handoff path (services with handoff set).
 *
 * The ISN of our SYN-ACK carries the client's options in its low byte and 24 bits of a keyed hash
 * in the rest; our TSval (when the client asked for timestamps) carries 8 more bits of it:
 *
 *        31                      8 7   6   5      4      3    0
 *   ISN | SipHash bits 8-31        | MSS | ECN | SACK | WScale |   WScale 0xf: no window scaling
 *   TSval | milliseconds, low byte cleared | SipHash bits 32-39 |
 *
 * The hash covers the 4-tuple, the client's ISN, the option byte and a time slot of one minute on
 * the TAI clock, so nodes whose clocks agree (PTP, NTP) and that share the key validate each
 * other's cookies. An ACK is checked against the current and the previous slot: a cookie lives
 * one to two minutes, about as long as the kernel's own. Everything the option byte says is
 * authenticated with it, so an ACK cannot ask for options its SYN did not.
 */
#ifndef XSYN_COOKIE_H
#define XSYN_COOKIE_H

#include "common.h"
#include "maps.h"
#include "parse.h"
#include "siphash.h"

#define COOKIE_WSCALE_NONE 0xf
#define COOKIE_SACK (1 << 4)
#define COOKIE_ECN (1 << 5)
#define COOKIE_MSS_SHIFT 6
#define COOKIE_OPT_MASK 0xffu
#define COOKIE_SLOT_NS (60ULL * 1000000000ULL)

/*
 * The kernel's MSS tables (syncookies.c): the client's MSS is rounded down to one of four values.
 * A client below the smallest gets the smallest, as the kernel does.
 */
static __always_inline __u32 mss_index(__u16 mss, bool ipv6)
{
	if (!ipv6)
		return mss >= 1460 ? 3 : mss >= 1440 ? 2 : mss >= 1300 ? 1 : 0;
	return mss >= 8940 ? 3 : mss >= 1440 ? 2 : mss >= 1420 ? 1 : 0;
}

static __always_inline __u16 mss_value(__u32 idx, bool ipv6)
{
	switch (idx & 3) {
	case 3:
		return ipv6 ? 8940 : 1460;
	case 2:
		return 1440;
	case 1:
		return ipv6 ? 1420 : 1300;
	}
	return ipv6 ? 1220 : 536;
}

static __always_inline const struct cookie_secret *cookie_secret(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&xsyn_secret, &zero);
}

static __always_inline __u32 cookie_slot(const struct cookie_secret *sec, __u64 now_ns)
{
	return (__u32)(now_ns / COOKIE_SLOT_NS) + sec->slot_shift;
}

/* The words hashed for this connection; the caller sets the key. */
static __always_inline void cookie_msg(struct sip_msg *m, const struct packet *p, __u32 client_isn,
				       __u32 slot, __u32 optbits)
{
	__u64 ports = ((__u64)p->tcp->source << 48) | ((__u64)p->tcp->dest << 32) | client_isn;
	__u64 tail = ((__u64)slot << 8) | (optbits & COOKIE_OPT_MASK);

	if (!p->ipv6) {
		m->w[0] = ((__u64)p->ip4->saddr << 32) | p->ip4->daddr;
		m->w[1] = ports;
		m->w[2] = tail;
		m->n = 3;
		return;
	}
	m->w[0] = ((__u64)p->ip6->saddr[0] << 32) | p->ip6->saddr[1];
	m->w[1] = ((__u64)p->ip6->saddr[2] << 32) | p->ip6->saddr[3];
	m->w[2] = ((__u64)p->ip6->daddr[0] << 32) | p->ip6->daddr[1];
	m->w[3] = ((__u64)p->ip6->daddr[2] << 32) | p->ip6->daddr[3];
	m->w[4] = ports;
	m->w[5] = tail;
	m->n = 6;
}

/* The cookie for a SYN: *isn is our sequence number, *ts_bits the low byte of our TSval. */
static __always_inline void cookie_make(const struct packet *p, const struct cookie_secret *sec,
					__u64 now_ns, __u32 optbits, __u32 *isn, __u32 *ts_bits)
{
	struct sip_msg m = {};
	__u64 h;

	m.key[0] = sec->key[0];
	m.key[1] = sec->key[1];
	cookie_msg(&m, p, bpf_ntohl(p->tcp->seq), cookie_slot(sec, now_ns), optbits);
	h = siphash24(&m);
	*isn = ((__u32)h & ~COOKIE_OPT_MASK) | (optbits & COOKIE_OPT_MASK);
	*ts_bits = (h >> 32) & 0xff;
}

/* Does the hash of (key, slot) match the ACK's cookie and, when it echoes a TSval, that too? */
static __always_inline bool cookie_matches(struct sip_msg *m, const __u64 *key, __u32 slot,
					   __u32 cookie, bool has_ts, __u32 tsecr)
{
	__u64 h;

	__u64 tail = ((__u64)slot << 8) | (cookie & COOKIE_OPT_MASK);

	m->key[0] = key[0];
	m->key[1] = key[1];
	if (m->n == 3)
		m->w[2] = tail;
	else
		m->w[5] = tail;
	h = siphash24(m);
	if (((__u32)h & ~COOKIE_OPT_MASK) != (cookie & ~COOKIE_OPT_MASK))
		return false;
	return !has_ts || (tsecr & 0xff) == ((h >> 32) & 0xff);
}

/*
 * Is this ACK the answer to one of our SYN-ACKs? The current key first, in this slot and the last;
 * then, while a rotation is recent, the key before it. A forged ACK costs two hashes (four during
 * a rotation). A blind guess succeeds once in 2^23 tries (24 bits, two slots), during a rotation
 * once in 2^22: an ACK without timestamps is checked on the ISN alone, and a forger leaves them
 * out. The TSval bits only narrow what a client that sent timestamps can be mistaken for.
 * XXX: the kernel's own cookie has the same strength; a guess buys one connection to a listener,
 * which the host's firewall still judges.
 */
static __always_inline bool cookie_check(const struct packet *p, const struct cookie_secret *sec,
					 __u64 now_ns, bool has_ts, __u32 tsecr)
{
	__u32 cookie = bpf_ntohl(p->tcp->ack_seq) - 1;
	__u32 slot = cookie_slot(sec, now_ns);
	struct sip_msg m = {};

	cookie_msg(&m, p, bpf_ntohl(p->tcp->seq) - 1, slot, cookie);
	if (cookie_matches(&m, sec->key, slot, cookie, has_ts, tsecr) ||
	    cookie_matches(&m, sec->key, slot - 1, cookie, has_ts, tsecr))
		return true;
	if (sec->prev_until == 0 || slot > sec->prev_until)
		return false;
	return cookie_matches(&m, sec->prev_key, slot, cookie, has_ts, tsecr) ||
	       cookie_matches(&m, sec->prev_key, slot - 1, cookie, has_ts, tsecr);
}

/* What the cookie says of the connection, for bpf_sk_assign_tcp_reqsk(). */
static __always_inline void cookie_attrs(__u32 cookie, bool ipv6, const struct service *svc,
					 bool has_ts, __u32 tsval, __u32 tsecr,
					 struct bpf_tcp_req_attrs *a)
{
	__u32 ws = cookie & COOKIE_WSCALE_NONE;

	a->mss = mss_value(cookie >> COOKIE_MSS_SHIFT, ipv6);
	if (ws != COOKIE_WSCALE_NONE) {
		a->wscale_ok = 1;
		a->snd_wscale = ws;
		a->rcv_wscale = svc->wscale; /* what the SYN-ACK offered */
	}
	a->sack_ok = !!(cookie & COOKIE_SACK);
	a->ecn_ok = !!(cookie & COOKIE_ECN);
	if (has_ts && svc->timestamps) {
		a->tstamp_ok = 1;
		a->rcv_tsval = tsval;
		a->rcv_tsecr = tsecr;
	}
}

#endif /* XSYN_COOKIE_H */
