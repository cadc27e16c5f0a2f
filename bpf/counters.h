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

struct counters {
	/* Protected services. */
	__u64 syn_received;       /* SYNs to a protected service (whatever their verdict) */
	__u64 synack_sent;        /* answered from XDP with a cookie SYN-ACK (XDP_TX) */
	__u64 ack_cookie_valid;   /* ACK carried one of our cookies: up to SYNPROXY (XDP_PASS) */
	__u64 ack_cookie_invalid; /* ACK without a connection or a valid cookie (XDP_DROP) */
	__u64 established_passed; /* confirmed conntrack entry, or (handoff) a socket (XDP_PASS) */
	/* Handoff path, counted by the TC program. */
	__u64 handoff_assigned;   /* valid-cookie ACK handed to the listener: a connection */
	__u64 handoff_refused;    /* the kernel refused the handoff (an MPTCP listener, a sysctl
				   * turned an option off, no memory); the stack answers with a
				   * reset */
	/* Passed to the kernel untouched. */
	__u64 pass__not_ip;        /* neither IPv4 nor IPv6 */
	__u64 pass__not_tcp;       /* not TCP, or behind an IPv6 header we do not walk (AH, ESP) */
	__u64 pass__not_protected; /* TCP to an address:port without a service */
	__u64 pass__fragment;      /* IPv4 fragment or IPv6 fragment header: the kernel reassembles */
	__u64 pass__vlan_depth;    /* more than two VLAN tags */
	__u64 pass__malformed;     /* bad IP header or lengths; the kernel's checks drop it */
	__u64 pass__no_room;       /* SYN whose frame could not be resized: SYNPROXY answers */
	__u64 pass__cookie_error;  /* the kernel refused to make a cookie (no CONFIG_SYN_COOKIES) */
	__u64 pass__no_listener;   /* handoff: valid cookie but no socket on the port any more: the
				    * stack answers with a reset, as it would without xsyn */
	__u64 pass__time_wait;     /* handoff: SYN for a 4-tuple in TIME_WAIT on the server: the
				    * kernel reuses the port, as it would without xsyn */
	__u64 pass__not_for_host;  /* SYN not sent to this host: another MAC (a bridge, promiscuous
				    * mode), a broadcast or multicast frame or address, loopback, a
				    * bad IPv4 header checksum, an IPv6 routing header with segments
				    * left. Answering would reflect; the stack decides */
	__u64 pass__routed;        /* to a protected port of an address this host routes rather
				    * than owns (an input statement without dst, on a router): the
				    * stack forwards it, as it would without xsyn */
	__u64 pass__on_demand_idle; /* handoff, on-demand: SYN to a service below its threshold,
				     * or one the listener answered before the switch to cookies
				     * (sent again): the listener answers it (ondemand.h) */
	__u64 pass__kernel_cookie; /* handoff, on-demand: ACK carrying the listener's own cookie
				    * (it sent them while its SYN queue was full): the stack checks it */
	/* Dropped. */
	__u64 drop__no_conn;   /* RST, FIN, SYN+ACK or flagless segment without a connection */
	__u64 drop__malformed; /* TCP header to a protected service that cannot be valid */
	__u64 drop__fragment;  /* SYN to a protected service in a first fragment: no real client
				* sends one, and reassembled it would reach SYNPROXY at netfilter
				* cost */
	__u64 drop__ah;        /* SYN to a protected service behind an IPsec Authentication
				* Header, which the SYN-ACK could not carry */
	__u64 drop__ext_hdr_chain; /* more IPv6 extension headers than we walk (16): it could
				    * hide a SYN to a protected service, and no real stack sends
				    * one */
	__u64 drop__internal;  /* frame not the size just asked for; never expected */
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

enum reason {
	SYNACK_SENT,
	ACK_COOKIE_VALID,
	ACK_COOKIE_INVALID,
	ESTABLISHED_PASSED,
	PASS_NOT_IP,
	PASS_NOT_TCP,
	PASS_NOT_PROTECTED,
	PASS_FRAGMENT,
	PASS_VLAN_DEPTH,
	PASS_MALFORMED,
	PASS_NO_ROOM,
	PASS_COOKIE_ERROR,
	PASS_NO_LISTENER,
	PASS_TIME_WAIT,
	PASS_NOT_FOR_HOST,
	PASS_ROUTED,
	PASS_ON_DEMAND_IDLE,
	PASS_KERNEL_COOKIE,
	DROP_NO_CONN,
	DROP_MALFORMED,
	DROP_FRAGMENT,
	DROP_AH,
	DROP_EXT_HDR_CHAIN,
	DROP_INTERNAL,
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

	switch (r) {
	case SYNACK_SENT:
		c->synack_sent++;
		return XDP_TX;
	case ACK_COOKIE_VALID:
		c->ack_cookie_valid++;
		return XDP_PASS;
	case ACK_COOKIE_INVALID:
		c->ack_cookie_invalid++;
		return XDP_DROP;
	case ESTABLISHED_PASSED:
		c->established_passed++;
		return XDP_PASS;
	case PASS_NOT_IP:
		c->pass__not_ip++;
		return XDP_PASS;
	case PASS_NOT_TCP:
		c->pass__not_tcp++;
		return XDP_PASS;
	case PASS_NOT_PROTECTED:
		c->pass__not_protected++;
		return XDP_PASS;
	case PASS_FRAGMENT:
		c->pass__fragment++;
		return XDP_PASS;
	case PASS_VLAN_DEPTH:
		c->pass__vlan_depth++;
		return XDP_PASS;
	case PASS_MALFORMED:
		c->pass__malformed++;
		return XDP_PASS;
	case PASS_NO_ROOM:
		c->pass__no_room++;
		return XDP_PASS;
	case PASS_COOKIE_ERROR:
		c->pass__cookie_error++;
		return XDP_PASS;
	case PASS_NO_LISTENER:
		c->pass__no_listener++;
		return XDP_PASS;
	case PASS_TIME_WAIT:
		c->pass__time_wait++;
		return XDP_PASS;
	case PASS_NOT_FOR_HOST:
		c->pass__not_for_host++;
		return XDP_PASS;
	case PASS_ROUTED:
		c->pass__routed++;
		return XDP_PASS;
	case PASS_ON_DEMAND_IDLE:
		c->pass__on_demand_idle++;
		return XDP_PASS;
	case PASS_KERNEL_COOKIE:
		c->pass__kernel_cookie++;
		return XDP_PASS;
	case DROP_NO_CONN:
		c->drop__no_conn++;
		return XDP_DROP;
	case DROP_MALFORMED:
		c->drop__malformed++;
		return XDP_DROP;
	case DROP_FRAGMENT:
		c->drop__fragment++;
		return XDP_DROP;
	case DROP_AH:
		c->drop__ah++;
		return XDP_DROP;
	case DROP_EXT_HDR_CHAIN:
		c->drop__ext_hdr_chain++;
		return XDP_DROP;
	case DROP_INTERNAL:
	default:
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
