/*
 * pack_x86.h: decoding helpers shared by the packed-weight kernels (pack_avx512.c, pack_amx.c,
 * pack_q23_avx512.c); include only from files compiled with AVX-512.
 */
#ifndef NURI_PACK_X86_H
#define NURI_PACK_X86_H

#include <immintrin.h>
#include <stdint.h>

/* Bits from .. from + n - 1 of each byte of v at bits to .. to + n - 1, the other bits 0: one
 * GF(2) affine map per byte, vgf2p8affineqb, whose matrix row i (byte 7 - i of each qword) picks
 * the input bit that result bit i copies. GFNI: call only where nuri_pack_gfni (pack.h) says so.
 * Inline asm, so the files stay built without -mgfni (nothing else in them can start using it). */
static inline __attribute__((always_inline)) __m512i gfni_bits(__m512i v, int from, int to, int n)
{
    uint64_t rows = 0;
    for (int k = 0; k < n; k++) rows |= (uint64_t)(1u << (from + k)) << (8 * (7 - (to + k)));
    const __m512i m = _mm512_set1_epi64((long long)rows);
    __m512i r;
    __asm__("vgf2p8affineqb $0, %2, %1, %0" : "=v"(r) : "v"(v), "vm"(m));
    return r;
}

/* The 8 k-quad registers (4 codes of each of 16 rows) of elements 128h + 32q + [0, 32) of a
 * packed Q6_K block: unsigned codes 0..63, the nibble | the 2 high bits << 4 (gf: those bits by
 * gfni_bits, merged by one vpternlogd; the same codes). */
static inline __attribute__((always_inline)) void q6_K_codes(const uint8_t *kb, int h, int q,
                                                             const int gf, __m512i c[8])
{
    const __m512i m4 = _mm512_set1_epi8(15), m3 = _mm512_set1_epi8(3);
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        const __m512i l = _mm512_loadu_si512(kb + 288 + 64 * (16 * h + 8 * (q & 1) + i));
        const __m512i hb = _mm512_loadu_si512(kb + 2336 + 64 * (8 * h + i));
        const __m512i ls = q < 2 ? l : _mm512_srli_epi16(l, 4);
        if (gf) { // (ls & 15) | bits
            c[i] = _mm512_ternarylogic_epi32(ls, gfni_bits(hb, 2 * q, 4, 2), m4, 0xEC);
            continue;
        }
        const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(hb, 2 * q), m3);
        c[i] = _mm512_or_si512(_mm512_and_si512(ls, m4), _mm512_slli_epi16(hi, 4));
    }
}

#endif
