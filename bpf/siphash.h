/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * SipHash-2-4 (Aumasson and Bernstein, 2012) over whole 64-bit words: the keyed hash of the
 * handoff path's cookies. The words are hashed as their little-endian bytes, so the result is the
 * reference SipHash of that byte string (internal/cookie checks it against the paper's vector).
 */
#ifndef XSYN_SIPHASH_H
#define XSYN_SIPHASH_H

#include "common.h"

#define SIPHASH_MAX_WORDS 6

/* What one hash takes: the key and up to SIPHASH_MAX_WORDS words of message. */
struct sip_msg {
	__u64 key[2];
	__u64 w[SIPHASH_MAX_WORDS];
	__u32 n; /* words of w in use */
};

static __always_inline __u64 rotl64(__u64 x, int b)
{
	return (x << b) | (x >> (64 - b));
}

#define SIPROUND                                                                                   \
	do {                                                                                       \
		v0 += v1;                                                                          \
		v1 = rotl64(v1, 13);                                                               \
		v1 ^= v0;                                                                          \
		v0 = rotl64(v0, 32);                                                               \
		v2 += v3;                                                                          \
		v3 = rotl64(v3, 16);                                                               \
		v3 ^= v2;                                                                          \
		v0 += v3;                                                                          \
		v3 = rotl64(v3, 21);                                                               \
		v3 ^= v0;                                                                          \
		v2 += v1;                                                                          \
		v1 = rotl64(v1, 17);                                                               \
		v1 ^= v2;                                                                          \
		v2 = rotl64(v2, 32);                                                               \
	} while (0)

/*
 * A global function: the verifier checks it once, not at every place a cookie is made or checked
 * (each frame shape reaches those separately).
 */
__noinline __u64 siphash24(const struct sip_msg *m)
{
	__u64 v0, v1, v2, v3, b;

	if (!m)
		return 0;
	v0 = m->key[0] ^ 0x736f6d6570736575ULL;
	v1 = m->key[1] ^ 0x646f72616e646f6dULL;
	v2 = m->key[0] ^ 0x6c7967656e657261ULL;
	v3 = m->key[1] ^ 0x7465646279746573ULL;

#pragma unroll
	for (int i = 0; i < SIPHASH_MAX_WORDS; i++) {
		if (i >= m->n)
			break;
		v3 ^= m->w[i];
		SIPROUND;
		SIPROUND;
		v0 ^= m->w[i];
	}
	b = (__u64)(m->n * 8) << 56;
	v3 ^= b;
	SIPROUND;
	SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

#endif /* XSYN_SIPHASH_H */
