/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Internet checksums computed in software from values xsyn just wrote: no helper call, no reliance
 * on offloads (XDP_TX frames get none). Words are summed in network order; the one's complement
 * sum is byte-order independent (RFC 1071), so the folded result is stored as is.
 */
#ifndef XSYN_CSUM_H
#define XSYN_CSUM_H

#include "common.h"

static __always_inline __sum16 csum_fold(__u64 sum)
{
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__sum16)~sum;
}

/* Sum of n 32-bit words; n is a compile-time constant at every call site. */
static __always_inline __u64 csum_words(const __be32 *w, int n)
{
	__u64 sum = 0;

#pragma unroll
	for (int i = 0; i < n; i++)
		sum += w[i];
	return sum;
}

static __always_inline __u64 pseudo_sum4(__be32 saddr, __be32 daddr, __u32 tcp_len)
{
	return (__u64)saddr + daddr + bpf_htonl((IPPROTO_TCP << 16) | tcp_len);
}

static __always_inline __u64 pseudo_sum6(const __be32 *saddr, const __be32 *daddr, __u32 tcp_len)
{
	return csum_words(saddr, 4) + csum_words(daddr, 4) + bpf_htonl(tcp_len) +
	       bpf_htonl(IPPROTO_TCP);
}

#endif /* XSYN_CSUM_H */
