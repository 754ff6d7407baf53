/*
 * pack_x86.h: decoding helpers shared by the packed-weight kernels (pack_avx512.c, pack_amx.c);
 * include only from files compiled with AVX-512.
 */
#ifndef NURI_PACK_X86_H
#define NURI_PACK_X86_H

#include <immintrin.h>
#include <stdint.h>

/* The 8 k-quad registers (4 codes of each of 16 rows) of elements 128h + 32q + [0, 32) of a
 * packed Q6_K block: unsigned codes 0..63. */
static inline __attribute__((always_inline)) void q6_K_codes(const uint8_t *kb, int h, int q,
                                                             __m512i c[8])
{
    const __m512i m4 = _mm512_set1_epi8(15), m3 = _mm512_set1_epi8(3);
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        const __m512i l = _mm512_loadu_si512(kb + 288 + 64 * (16 * h + 8 * (q & 1) + i));
        const __m512i hb = _mm512_loadu_si512(kb + 2336 + 64 * (8 * h + i));
        const __m512i nib =
            q < 2 ? _mm512_and_si512(l, m4) : _mm512_and_si512(_mm512_srli_epi16(l, 4), m4);
        const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(hb, 2 * q), m3);
        c[i] = _mm512_or_si512(nib, _mm512_slli_epi16(hi, 4));
    }
}

#endif
