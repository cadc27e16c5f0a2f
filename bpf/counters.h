/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Verdict accounting. Every path of the program ends in finish(), which bumps exactly one verdict
 * field for the packet's reason and returns the XDP action that reason implies. Field names are
 * metric names: `pass__X` and `drop__X` become xsyn_passed_total{reason="X"} and
 * xsyn_dropped_total{reason="X"}; the others become xsyn_<name>_total.
 */
#ifndef XSYN_COUNTERS_H
#define XSYN_COUNTERS_H

#include "common.h"
#include "maps.h"

/* Slots of xsyn_counters: traffic that is not IP has no family. */
enum family {
	FAMILY_OTHER = 0,
	FAMILY_IPV4 = 1,
	FAMILY_IPV6 = 2,
	FAMILY_MAX,
};
/* Never read: puts enum family in the program's BTF, for bpf2go -type to make the loader's Go
 * constants of it. In a section of its own, which no map is made of (a .bss variable would be). */
const enum family *unused_family __attribute__((section(".btf_only"), unused));

/*
 * Every field of struct counters, in its order, which is also the order of the Go struct bpf2go
 * generates from it; the field names are metric names. Two kinds of entry:
 *   COUNT(field)                    bumped on its own: syn_received beside a verdict, and the TC
 *                                   program's handoffs (finish_handoff)
 *   VERDICT(REASON, field, action)  a verdict: REASON in enum reason, and finish() bumps field and
 *                                   returns action for it
 * A new verdict is one VERDICT line here.
 */
#define XSYN_COUNTERS(COUNT, VERDICT)                                                              \
	/* Protected services. */                                                                  \
	COUNT(syn_received)                                                                        \
		/* SYNs to a protected service (whatever their verdict) */                         \
	VERDICT(SYNACK_SENT, synack_sent, XDP_TX)                                                  \
		/* answered from XDP with a cookie SYN-ACK */                                      \
	VERDICT(ACK_COOKIE_VALID, ack_cookie_valid, XDP_PASS)                                      \
		/* ACK carried one of our cookies: up to SYNPROXY */                               \
	VERDICT(ACK_COOKIE_INVALID, ack_cookie_invalid, XDP_DROP)                                  \
		/* ACK without a connection or a valid cookie */                                   \
	VERDICT(ESTABLISHED_PASSED, established_passed, XDP_PASS)                                  \
		/* confirmed conntrack entry, or (handoff) a socket */                             \
	/* Handoff path, counted by the TC program. */                                             \
	COUNT(handoff_assigned)                                                                    \
		/* valid-cookie ACK handed to the listener: a connection */                        \
	COUNT(handoff_refused)                                                                     \
		/* the kernel refused the handoff (an MPTCP listener, a sysctl turned an option    \
		 * off, no memory); the stack answers with a reset */                              \
	/* Passed to the kernel untouched. */                                                      \
	VERDICT(PASS_NOT_IP, pass__not_ip, XDP_PASS)                                               \
		/* neither IPv4 nor IPv6 */                                                        \
	VERDICT(PASS_NOT_TCP, pass__not_tcp, XDP_PASS)                                             \
		/* not TCP, or behind an IPv6 header we do not walk (AH, ESP) */                   \
	VERDICT(PASS_NOT_PROTECTED, pass__not_protected, XDP_PASS)                                 \
		/* TCP to an address:port without a service */                                     \
	VERDICT(PASS_FRAGMENT, pass__fragment, XDP_PASS)                                           \
		/* IPv4 fragment or IPv6 fragment header: the kernel reassembles */                \
	VERDICT(PASS_VLAN_DEPTH, pass__vlan_depth, XDP_PASS)                                       \
		/* more than two VLAN tags */                                                      \
	VERDICT(PASS_MALFORMED, pass__malformed, XDP_PASS)                                         \
		/* bad IP header or lengths; the kernel's checks drop it */                        \
	VERDICT(PASS_NO_ROOM, pass__no_room, XDP_PASS)                                             \
		/* SYN whose frame could not be resized: SYNPROXY answers */                       \
	VERDICT(PASS_COOKIE_ERROR, pass__cookie_error, XDP_PASS)                                   \
		/* the kernel refused to make a cookie (no CONFIG_SYN_COOKIES) */                  \
	VERDICT(PASS_NO_LISTENER, pass__no_listener, XDP_PASS)                                     \
		/* handoff: valid cookie but no socket on the port any more: the stack answers     \
		 * with a reset, as it would without xsyn */                                       \
	VERDICT(PASS_TIME_WAIT, pass__time_wait, XDP_PASS)                                         \
		/* handoff: SYN for a 4-tuple in TIME_WAIT on the server: the kernel reuses the    \
		 * port, as it would without xsyn */                                               \
	VERDICT(PASS_NOT_FOR_HOST, pass__not_for_host, XDP_PASS)                                   \
		/* SYN not sent to this host: another MAC (a bridge, promiscuous mode), a          \
		 * broadcast or multicast frame or address, loopback, a bad IPv4 header            \
		 * checksum, an IPv6 routing header with segments left. Answering would            \
		 * reflect; the stack decides */                                                   \
	VERDICT(PASS_ROUTED, pass__routed, XDP_PASS)                                               \
		/* to a protected port of an address this host routes rather than owns (an         \
		 * input statement without dst, on a router): the stack forwards it, as it         \
		 * would without xsyn */                                                           \
	VERDICT(PASS_ON_DEMAND_IDLE, pass__on_demand_idle, XDP_PASS)                               \
		/* handoff, on-demand: SYN to a service below its threshold, or one the            \
		 * listener answered before the switch to cookies (sent again): the listener       \
		 * answers it (ondemand.h) */                                                      \
	VERDICT(PASS_KERNEL_COOKIE, pass__kernel_cookie, XDP_PASS)                                 \
		/* handoff, on-demand: ACK carrying the listener's own cookie (it sent them        \
		 * while its SYN queue was full): the stack checks it */                           \
	/* Dropped. */                                                                             \
	VERDICT(DROP_NO_CONN, drop__no_conn, XDP_DROP)                                             \
		/* RST, FIN, SYN+ACK or flagless segment without a connection */                   \
	VERDICT(DROP_MALFORMED, drop__malformed, XDP_DROP)                                         \
		/* TCP header to a protected service that cannot be valid */                       \
	VERDICT(DROP_FRAGMENT, drop__fragment, XDP_DROP)                                           \
		/* SYN to a protected service in a first fragment: no real client sends one,       \
		 * and reassembled it would reach SYNPROXY at netfilter cost */                    \
	VERDICT(DROP_AH, drop__ah, XDP_DROP)                                                       \
		/* SYN to a protected service behind an IPsec Authentication Header, which the     \
		 * SYN-ACK could not carry */                                                      \
	VERDICT(DROP_EXT_HDR_CHAIN, drop__ext_hdr_chain, XDP_DROP)                                 \
		/* more IPv6 extension headers than we walk (16): it could hide a SYN to a         \
		 * protected service, and no real stack sends one */                               \
	VERDICT(DROP_INTERNAL, drop__internal, XDP_DROP)                                           \
		/* frame not the size just asked for; never expected */

/* What the list makes: struct counters here, enum reason and finish()'s cases below. */
#define XSYN_NOTHING(...)
#define XSYN_FIELD(field) __u64 field;
#define XSYN_VERDICT_FIELD(reason, field, action) __u64 field;

struct counters {
	XSYN_COUNTERS(XSYN_FIELD, XSYN_VERDICT_FIELD)
};

/* The same story per service (slot = service.id), for the protected-service fields. */
struct service_counters {
	__u64 syn_received;
	__u64 synack_sent;
	__u64 ack_cookie_valid;
	__u64 ack_cookie_invalid;
	__u64 established_passed;
	__u64 handoff_assigned;
	__u64 on_demand_switches; /* on-demand: switches between the listener and cookies */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FAMILY_MAX);
	__type(key, __u32);
	__type(value, struct counters);
} xsyn_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct service_counters);
} xsyn_svc_counts SEC(".maps");

#define XSYN_REASON(reason, field, action) reason,

enum reason {
	XSYN_COUNTERS(XSYN_NOTHING, XSYN_REASON)
	CONTINUE, /* not a verdict: the stage wants the next stage to decide */
};

/* What finish() needs to know about the packet besides the reason. */
struct verdict_ctx {
	__u32 family;                /* enum family */
	const struct service *svc;   /* set once the packet is known to be for a service */
	bool syn;                    /* a SYN to that service */
};

static __always_inline void count_service(const struct verdict_ctx *v, enum reason r)
{
	struct service_counters *s;
	__u32 id;

	if (!v->svc)
		return;
	id = v->svc->id;
	s = bpf_map_lookup_elem(&xsyn_svc_counts, &id);
	if (!s)
		return;
	if (v->syn)
		s->syn_received++;
	switch (r) {
	case SYNACK_SENT:
		s->synack_sent++;
		break;
	case ACK_COOKIE_VALID:
		s->ack_cookie_valid++;
		break;
	case ACK_COOKIE_INVALID:
		s->ack_cookie_invalid++;
		break;
	case ESTABLISHED_PASSED:
		s->established_passed++;
		break;
	default:
		break;
	}
}

/* The one exit: count the verdict under its reason and return the action it stands for. */
static __always_inline int finish(const struct verdict_ctx *v, enum reason r)
{
	struct counters *c = bpf_map_lookup_elem(&xsyn_counters, &v->family);

	count_service(v, r);
	if (!c)
		return XDP_PASS; /* cannot happen: family < FAMILY_MAX */
	if (v->syn)
		c->syn_received++;

#define XSYN_VERDICT_CASE(reason, field, action)                                                   \
	case reason:                                                                               \
		c->field++;                                                                        \
		return action;
	switch (r) {
		XSYN_COUNTERS(XSYN_NOTHING, XSYN_VERDICT_CASE)
	default: /* CONTINUE, which a stage never returns to the exit */
		c->drop__internal++;
		return XDP_DROP;
	}
}

/* The TC program's exit: a handoff tried for a valid-cookie ACK to a listener. */
static __always_inline int finish_handoff(__u32 family, const struct service *svc, bool assigned)
{
	struct counters *c = bpf_map_lookup_elem(&xsyn_counters, &family);
	struct service_counters *s;
	__u32 id = svc->id;

	if (c) {
		if (assigned)
			c->handoff_assigned++;
		else
			c->handoff_refused++;
	}
	s = bpf_map_lookup_elem(&xsyn_svc_counts, &id);
	if (s && assigned)
		s->handoff_assigned++;
	/* Either way the ACK goes on: with the new connection attached, or to the stack, which
	 * answers an ACK for no connection with a reset. */
	return TC_ACT_OK;
}

#endif /* XSYN_COUNTERS_H */
