/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Run-time configuration: which (family, destination prefix, destination port) are protected and
 * with which SYN-ACK options. Written by the Go loader from the validated spec; the program only
 * reads them (BPF_F_RDONLY_PROG), so a reconfiguration is a map update, never a reload.
 */
#ifndef XSYN_MAPS_H
#define XSYN_MAPS_H

#include "common.h"

#define MAX_SERVICES 4096

/* SYN-ACK parameters of one protected service. The TCP options mirror netfilter's SYNPROXY target
 * (--mss, --wscale, --sack-perm, --timestamp, --ecn) so both answer a SYN the same way. */
struct service {
	__u16 id;         /* slot in xsyn_svc_counts, < MAX_SERVICES */
	__u16 mss;        /* MSS we advertise */
	__u8 wscale;      /* our window scale shift, used when use_wscale and the client offers one */
	__u8 use_wscale;  /* bool */
	__u8 sack;        /* bool: SACK-permitted, when the client offers it */
	__u8 timestamps;  /* bool: timestamps, when the client offers them (carries wscale/SACK/ECN) */
	__u8 ecn;         /* bool: accept ECN when the client asks (ECE+CWR) */
	__u8 ttl;         /* IPv4 TTL / IPv6 hop limit of the SYN-ACK */
	__u8 pad[2];
};

/* LPM keys: the prefix covers the port (16 bits) and then the destination address, so one lookup
 * finds the most specific service for an address:port. */
struct service_key4 {
	__u32 prefixlen; /* 16 + address prefix length */
	__be16 port;
	__u8 addr[4];
} __attribute__((packed));

struct service_key6 {
	__u32 prefixlen;
	__be16 port;
	__u8 addr[16];
} __attribute__((packed));

/* Which families have at least one service on a port: an O(1) test that keeps the cost for
 * traffic to unprotected ports to one array lookup, before any LPM walk. */
struct port_families {
	__u8 v4;
	__u8 v6;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct port_families);
	__uint(map_flags, BPF_F_RDONLY_PROG);
} xsyn_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MAX_SERVICES);
	__type(key, struct service_key4);
	__type(value, struct service);
	__uint(map_flags, BPF_F_NO_PREALLOC | BPF_F_RDONLY_PROG);
} xsyn_services4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MAX_SERVICES);
	__type(key, struct service_key6);
	__type(value, struct service);
	__uint(map_flags, BPF_F_NO_PREALLOC | BPF_F_RDONLY_PROG);
} xsyn_services6 SEC(".maps");

#endif /* XSYN_MAPS_H */
