/* ccrc32.c: CRC-32 (zlib's) by folding with carry-less multiplication.
 *
 * The method is the one of Gopal et al., "Fast CRC Computation for Generic
 * Polynomials Using PCLMULQDQ Instruction" (Intel, 2009), in the bit-reflected
 * domain that zlib's CRC-32 uses:
 *
 *   1. Four 128-bit lanes take the first 64 bytes (the running CRC xored into
 *      the first lane). Each further 64 bytes, a lane L becomes
 *      clmul(L.lo, K1) ^ clmul(L.hi, K2) ^ next 16 bytes: multiplying by
 *      x^(512±32) mod P moves the lane 512 bits on without changing the CRC.
 *   2. The four lanes fold into one (K3, K4: 128 bits on), then 16 bytes at
 *      a time.
 *   3. 128 bits fold to 64 (K4), then to 32 + 32 (K5), and a Barrett
 *      reduction (P and its quotient MU) leaves the 32-bit remainder.
 *
 * The constants are x^n mod P for the n each step moves over, bit-reflected
 * and shifted left by one (the reflected product of two 64-bit values is 127
 * bits long). The bytes after the last full 16 go to zlib. The result is
 * checked against zlib's for every length from 0 to 4 KiB at every alignment
 * (Tests/CowTraceFormatTests/TraceChecksumTests.swift). */
#include "ccrc32.h"

#include <zlib.h>

uint32_t ccrc32_zlib(uint32_t crc, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	/* crc32_z takes a z_size_t; call it in pieces anyway, for old zlibs. */
	while (len > 0) {
		unsigned chunk = len > (1u << 30) ? (1u << 30) : (unsigned)len;
		crc = (uint32_t)crc32(crc, p, chunk);
		p += chunk;
		len -= chunk;
	}
	return crc;
}

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#include <immintrin.h>

#define CLMUL_TARGET __attribute__((target("pclmul,sse4.1")))

/* K1 = x^(4*128+32), K2 = x^(4*128-32), K3 = x^(128+32), K4 = x^(128-32),
 * K5 = x^64 (mod P); P = 0x104C11DB7 and MU = floor(x^64 / P), all reflected. */
static const uint64_t k1k2[2] __attribute__((aligned(16))) = { 0x0154442bd4, 0x01c6e41596 };
static const uint64_t k3k4[2] __attribute__((aligned(16))) = { 0x01751997d0, 0x00ccaa009e };
static const uint64_t k5[2] __attribute__((aligned(16))) = { 0x0163cd6124, 0 };
static const uint64_t p_mu[2] __attribute__((aligned(16))) = { 0x01db710641, 0x01f7011641 };

/* lane * x^n mod P, plus `data`: the low half times the first constant,
 * the high half times the second. */
CLMUL_TARGET static inline __m128i fold(__m128i lane, __m128i k, __m128i data)
{
	__m128i lo = _mm_clmulepi64_si128(lane, k, 0x00);
	__m128i hi = _mm_clmulepi64_si128(lane, k, 0x11);
	return _mm_xor_si128(_mm_xor_si128(lo, hi), data);
}

/* The CRC register (not inverted) after `len` bytes: len >= 64, a multiple of 16. */
CLMUL_TARGET static uint32_t crc32_clmul(uint32_t reg, const unsigned char *p, size_t len)
{
	__m128i a = _mm_loadu_si128((const __m128i *)(p + 0));
	__m128i b = _mm_loadu_si128((const __m128i *)(p + 16));
	__m128i c = _mm_loadu_si128((const __m128i *)(p + 32));
	__m128i d = _mm_loadu_si128((const __m128i *)(p + 48));
	a = _mm_xor_si128(a, _mm_cvtsi32_si128((int)reg));
	p += 64;
	len -= 64;

	const __m128i k12 = _mm_load_si128((const __m128i *)k1k2);
	while (len >= 64) {
		a = fold(a, k12, _mm_loadu_si128((const __m128i *)(p + 0)));
		b = fold(b, k12, _mm_loadu_si128((const __m128i *)(p + 16)));
		c = fold(c, k12, _mm_loadu_si128((const __m128i *)(p + 32)));
		d = fold(d, k12, _mm_loadu_si128((const __m128i *)(p + 48)));
		p += 64;
		len -= 64;
	}

	const __m128i k34 = _mm_load_si128((const __m128i *)k3k4);
	a = fold(a, k34, b);
	a = fold(a, k34, c);
	a = fold(a, k34, d);
	while (len >= 16) {
		a = fold(a, k34, _mm_loadu_si128((const __m128i *)p));
		p += 16;
		len -= 16;
	}

	/* 128 -> 64 bits: the low half times K4 into the high half. */
	const __m128i low32 = _mm_setr_epi32(-1, 0, -1, 0);
	__m128i t = _mm_clmulepi64_si128(a, k34, 0x10);
	a = _mm_xor_si128(_mm_srli_si128(a, 8), t);
	/* 64 -> 32 + 32: the low 32 bits times K5 into the rest. */
	t = _mm_srli_si128(a, 4);
	a = _mm_and_si128(a, low32);
	a = _mm_clmulepi64_si128(a, _mm_loadl_epi64((const __m128i *)k5), 0x00);
	a = _mm_xor_si128(a, t);
	/* Barrett: q = (a mod x^32) * MU mod x^32, then a ^ q * P leaves the remainder in bits 32..63. */
	const __m128i pm = _mm_load_si128((const __m128i *)p_mu);
	t = _mm_and_si128(a, low32);
	t = _mm_clmulepi64_si128(t, pm, 0x10);
	t = _mm_and_si128(t, low32);
	t = _mm_clmulepi64_si128(t, pm, 0x00);
	a = _mm_xor_si128(a, t);
	return (uint32_t)_mm_extract_epi32(a, 1);
}

static int clmul_state = -1; /* -1: not asked yet */

int ccrc32_uses_clmul(void)
{
	int s = __atomic_load_n(&clmul_state, __ATOMIC_RELAXED);
	if (s < 0) {
		__builtin_cpu_init();
		s = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
		__atomic_store_n(&clmul_state, s, __ATOMIC_RELAXED);
	}
	return s;
}

uint32_t ccrc32(uint32_t crc, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	if (len >= 64 && ccrc32_uses_clmul()) {
		size_t folded = len & ~(size_t)15;
		crc = ~crc32_clmul(~crc, p, folded);
		p += folded;
		len -= folded;
	}
	return len > 0 ? ccrc32_zlib(crc, p, len) : crc;
}

#else

int ccrc32_uses_clmul(void) { return 0; }

uint32_t ccrc32(uint32_t crc, const void *buf, size_t len)
{
	return ccrc32_zlib(crc, buf, len);
}

#endif
