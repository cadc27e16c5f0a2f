/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Which protected service a parsed packet is for: the per-port array first, the LPM tries of
 * maps.h only for ports with services on narrower prefixes.
 */
#ifndef XSYN_SERVICES_H
#define XSYN_SERVICES_H

#include "common.h"
#include "maps.h"
#include "parse.h"

/* Finds the service protecting this destination, if any. */
static __always_inline const struct service *lookup_service(const struct packet *p)
{
	__u32 port = bpf_ntohs(p->tcp->dest), id;
	struct port_services *ps = bpf_map_lookup_elem(&xsyn_ports, &port);
	__u32 *found;

	if (!ps)
		return NULL;
	if (!p->ipv6) {
		if (ps->v4_prefixes) {
			struct service_key4 k = { .prefixlen = 16 + 32, .port = p->tcp->dest };

			__builtin_memcpy(k.addr, &p->ip4->daddr, sizeof(k.addr));
			found = bpf_map_lookup_elem(&xsyn_services4, &k);
			if (!found)
				return NULL;
			id = *found;
		} else if (ps->v4_any) {
			id = ps->v4_id;
		} else {
			return NULL;
		}
	} else {
		if (ps->v6_prefixes) {
			struct service_key6 k = { .prefixlen = 16 + 128, .port = p->tcp->dest };

			__builtin_memcpy(k.addr, p->ip6->daddr, sizeof(k.addr));
			found = bpf_map_lookup_elem(&xsyn_services6, &k);
			if (!found)
				return NULL;
			id = *found;
		} else if (ps->v6_any) {
			id = ps->v6_id;
		} else {
			return NULL;
		}
	}
	return bpf_map_lookup_elem(&xsyn_svcs, &id);
}

#endif /* XSYN_SERVICES_H */
