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
	__u16 id;         /* its key in xsyn_svcs and xsyn_svc_counts, < MAX_SERVICES */
	__u16 mss;        /* MSS we advertise */
	__u8 wscale;      /* our window scale shift, used when use_wscale and the client offers one */
	__u8 use_wscale;  /* bool */
	__u8 sack;        /* bool: SACK-permitted, when the client offers it */
	__u8 timestamps;  /* bool: timestamps, when the client offers them (carries wscale/SACK/ECN) */
	__u8 ecn;         /* bool: accept ECN when the client asks (ECE+CWR) */
	__u8 ttl;         /* IPv4 TTL / IPv6 hop limit of the SYN-ACK */
	__u8 handoff;     /* bool: xsyn's own cookie, ACKs handed to the listening socket (TC);
			   * else the kernel's cookie and netfilter's SYNPROXY */
	__u8 local_only;  /* bool: an input statement without dst: only this host's own addresses
			   * (host.h dst_local); a router forwards the rest untouched */
	__u16 window;     /* receive window of a handoff SYN-ACK (SYNPROXY's is 0) */
	__u16 pad2;
	__u32 on_demand;  /* handoff only: SYNs a second at which cookies start (ondemand.h);
			   * below it the listener answers. 0: cookies always */
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

/* Per port: the service covering every address of a family, when there is one, and whether
 * services for narrower prefixes exist. The common configuration (a port on every address) then
 * costs two array lookups; only ports with narrower prefixes walk the LPM trie. Traffic to
 * unprotected ports costs one array lookup. */
struct port_services {
	__u16 v4_id;       /* the IPv4 service for every address, when v4_any */
	__u16 v6_id;
	__u8 v4_any;       /* bool */
	__u8 v6_any;       /* bool */
	__u8 v4_prefixes;  /* bool: IPv4 services for narrower prefixes: ask xsyn_services4 */
	__u8 v6_prefixes;  /* bool */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct port_services);
	__uint(map_flags, BPF_F_RDONLY_PROG);
} xsyn_ports SEC(".maps");

/* Service parameters by id. Ids are stable across reconfigurations (the loader reuses a
 * service's id while its family, prefix and port stay), so an update never lends one service's
 * options or counters to another. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct service);
	__uint(map_flags, BPF_F_RDONLY_PROG);
} xsyn_svcs SEC(".maps");

/* Every service, most specific prefix first: values are service ids. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MAX_SERVICES);
	__type(key, struct service_key4);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC | BPF_F_RDONLY_PROG);
} xsyn_services4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MAX_SERVICES);
	__type(key, struct service_key6);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC | BPF_F_RDONLY_PROG);
} xsyn_services6 SEC(".maps");

/* The interface the program is attached to, as the loader saw it: a SYN is answered only when it
 * was sent to this MAC address (check_mac: false before an interface is known, as under
 * BPF_PROG_RUN in tests that do not set one). */
struct iface_config {
	__u8 mac[6];
	__u8 check_mac; /* bool */
	__u8 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct iface_config);
	__uint(map_flags, BPF_F_RDONLY_PROG);
} xsyn_iface SEC(".maps");

/*
 * The secret of the handoff path's cookies (cookie.h): a SipHash-2-4 key that nodes of a fleet
 * can share, and the key it replaced, accepted until the slot prev_until so that rotating the key
 * never fails a handshake in flight. Written by the loader only.
 */
struct cookie_secret {
	__u64 key[2];
	__u64 prev_key[2];
	__u32 prev_until; /* last time slot in which prev_key is accepted; 0: none */
	__s32 slot_shift; /* added to the clock's slot; always 0 but in tests, which move time */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cookie_secret);
	__uint(map_flags, BPF_F_RDONLY_PROG);
} xsyn_secret SEC(".maps");

#endif /* XSYN_MAPS_H */
