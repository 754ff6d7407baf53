/*
 * pack_q23_avx512.c: the VNNI kernels of packed (x16) Q3_K and Q2_K weights (layouts in pack.h)
 * against Q8_K activations. The driver (work items, row groups) is pack_avx512.c's.
 *
 * A block of 256 elements is 8 slices of 32 (slice s: elements 32 s .. 32 s + 31, the
 * sub-blocks 2 s and 2 s + 1 of 16); a slice's codes are 8 registers of 4 codes x 16 rows, made
 * from the packed lines with shifts and masks (Q2_K: 2 bits, 0..3; Q3_K: 2 bits and the hmask bit,
 * 0..7 = q + 4). Per token the two sub-blocks' exact sums (at most 7 * 128 * 16 in magnitude: they
 * fit 16 bits) are put side by side in each lane and one vpdpwssd against the scale pair adds
 * sum_j sc_j * isum_j as an exact integer, as llama.cpp does. The mins (Q2_K) and Q3_K's - 4 are
 * sum_j m_j * bsum_j, again exact, 8 vpdpwssd against the activation's 16-element sums, which Q8_K
 * stores as int16 pairs already. Per block then, in this order:
 *   Q2_K: acc = fma(float(f), d * d_x, acc); acc = acc - float(mins) * (dmin * d_x)
 *   Q3_K: acc = fma(float(f - 4 * bsc), d * d_x, acc)
 * No tables, no scratch: everything a token needs is in its Q8_K row. The result of an output
 * depends only on its row and its token, whichever T the tokens are taken in.
 *
 * Q3_K's third bit: bit 4h + j of an hmask line moved to bit 2 of each byte is a shift and a
 * mask, or, where the CPU has GFNI and nuri_pack_gfni (pack.h) says so, one vgf2p8affineqb (a
 * bit matrix per byte that keeps that bit alone, at bit 2), merged with the low two bits by one
 * vpternlogd: three instructions per 64 codes instead of four. On Zen 5 a row group's decode from
 * L2 is 17-35% faster that way, prompts 3-9% (bench/packed.c); the 1B model's decode waits on
 * memory at two threads (level), its prompts +2-4% (docs/PERFORMANCE.md). The same codes, so
 * the same sums.
 */
#include "kernels/blocks.h"
#include "kernels/pack.h"
#include "kernels/pack_x86.h"
#include "kernels/types.h"

#include <immintrin.h>
#include <string.h>

// prefetch distance in blocks (a block of a row group is 21 or 29 lines: 8-11 KiB; see
// pack_avx512.c's vnni_group; from memory, one thread: Q3_K 12 -> 18 GB/s, Q2_K 18 -> 25-30),
// into L1: with each thread reading its own lane in decode (threadpool.h), L1 beat L2 on Zen 4,
// two threads, the 1B files: Q3_K 65-71 -> 77-86 tok/s, Q2_K 123-129 -> 135-142 (3 of 3 pairs
// each; 3 or 4 blocks ahead were slower than 6), prompts level
enum { Q23_PF = 6 };

static inline int32_t load32(const void *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* T tokens x one row group, all nb blocks (q3: Q3_K, else Q2_K; gf: Q3_K's third bit by GFNI). */
static inline __attribute__((always_inline)) void
q23_group(const int T, const int q3, const int gf, int64_t nb, const uint8_t *grp, const uint8_t *x,
          size_t x_stride, float *y, int64_t y_stride, __mmask16 rows)
{
    const int64_t kbytes = q3 ? NURI_PACK_Q3_K_BYTES : NURI_PACK_Q2_K_BYTES;
    const int sc_off = q3 ? 32 : 64, ql_off = sc_off + 256, qh_off = ql_off + 1024;
    const __m512i m3 = _mm512_set1_epi8(3), b2 = _mm512_set1_epi8(4);
    const __m512i m15 = _mm512_set1_epi16(15);
    const __mmask32 odd = 0xAAAAAAAAu;
    __m512 acc[8];
#pragma GCC unroll 16
    for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *kb = grp + b * kbytes;
        __m512i f[8];
#pragma GCC unroll 16
        for (int t = 0; t < T; t++) f[t] = _mm512_setzero_si512();
#pragma GCC unroll 16
        for (int s = 0; s < 8; s++) {
            const int h = s / 4, j = s % 4;
            // the block Q23_PF ahead, 4 of its lines per slice (8 x 4 >= 29)
#pragma GCC unroll 16
            for (int l = 4 * s; l < 4 * s + 4; l++)
                if (64 * l < kbytes)
                    _mm_prefetch((const char *)kb + Q23_PF * kbytes + 64 * l, _MM_HINT_T0);
            __m512i c[8];
#pragma GCC unroll 16
            for (int i = 0; i < 8; i++) {
                const __m512i v = _mm512_loadu_si512(kb + ql_off + 64 * (8 * h + i));
                const __m512i lo = j ? _mm512_srli_epi16(v, 2 * j) : v;
                const int sh = 4 * h + j; // Q3_K: bit sh of hmask line i, moved to bit 2
                if (q3 && gf)             // (lo & 3) | bit
                    c[i] = _mm512_ternarylogic_epi32(
                        lo, gfni_bits(_mm512_loadu_si512(kb + qh_off + 64 * i), sh, 2, 1), m3,
                        0xEC);
                else if (q3) {
                    const __m512i hm = _mm512_loadu_si512(kb + qh_off + 64 * i);
                    const __m512i hb = sh >= 2   ? _mm512_srli_epi16(hm, sh - 2)
                                       : sh == 1 ? _mm512_slli_epi16(hm, 1)
                                                 : _mm512_slli_epi16(hm, 2);
                    c[i] = _mm512_or_si512(_mm512_and_si512(lo, m3), _mm512_and_si512(hb, b2));
                } else
                    c[i] = _mm512_and_si512(lo, m3);
            }
            // the scale pair of sub-blocks 2s, 2s + 1 as int16 (Q2_K: the low nibbles)
            const __m256i sb = _mm256_loadu_si256((const __m256i *)(kb + sc_off + 32 * s));
            const __m512i sp =
                q3 ? _mm512_cvtepi8_epi16(sb) : _mm512_and_si512(_mm512_cvtepu8_epi16(sb), m15);
#pragma GCC unroll 16
            for (int t = 0; t < T; t++) {
                const nuri_block_q8_K *xb = (const nuri_block_q8_K *)(x + (size_t)t * x_stride) + b;
                const int8_t *a = xb->qs + 32 * s;
                __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
#pragma GCC unroll 16
                for (int i = 0; i < 4; i++) {
                    s0 = _mm512_dpbusd_epi32(s0, c[i], _mm512_set1_epi32(load32(a + 4 * i)));
                    s1 = _mm512_dpbusd_epi32(s1, c[4 + i],
                                             _mm512_set1_epi32(load32(a + 16 + 4 * i)));
                }
                // lane r: (isum_2s, isum_2s+1) as an int16 pair, then + the scaled pair
                const __m512i pair = _mm512_mask_blend_epi16(odd, s0, _mm512_slli_epi32(s1, 16));
                f[t] = _mm512_dpwssd_epi32(f[t], pair, sp);
            }
        }
        // sum_j m_j * bsum_j (Q2_K: the mins, the high nibbles; Q3_K: the scales, for the - 4)
        __m512i mp[8];
#pragma GCC unroll 16
        for (int p = 0; p < 8; p++) {
            const __m512i v =
                q3 ? _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(kb + 32 + 32 * p)))
                   : _mm512_srli_epi16(_mm512_cvtepu8_epi16(
                                           _mm256_loadu_si256((const __m256i *)(kb + 64 + 32 * p))),
                                       4);
            mp[p] = v;
        }
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)kb));
#pragma GCC unroll 16
        for (int t = 0; t < T; t++) {
            const nuri_block_q8_K *xb = (const nuri_block_q8_K *)(x + (size_t)t * x_stride) + b;
            __m512i m = _mm512_setzero_si512();
#pragma GCC unroll 16
            for (int p = 0; p < 8; p++)
                m = _mm512_dpwssd_epi32(m, mp[p], _mm512_set1_epi32(load32(xb->bsums + 2 * p)));
            const __m512 dx = _mm512_set1_ps(xb->d);
            if (q3) {
                const __m512i fi = _mm512_sub_epi32(f[t], _mm512_slli_epi32(m, 2));
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(fi), _mm512_mul_ps(dw, dx), acc[t]);
            } else {
                const __m512 dm = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(kb + 32)));
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(f[t]), _mm512_mul_ps(dw, dx), acc[t]);
                acc[t] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(m), _mm512_mul_ps(dm, dx), acc[t]);
            }
        }
    }
#pragma GCC unroll 16
    for (int t = 0; t < T; t++) _mm512_mask_storeu_ps(y + t * y_stride, rows, acc[t]);
}

#define Q23(T)                                                                                     \
    (!q3  ? q23_group(T, 0, 0, nb, grp, xt, x_stride, yt, y_stride, rows)                          \
     : gf ? q23_group(T, 1, 1, nb, grp, xt, x_stride, yt, y_stride, rows)                          \
          : q23_group(T, 1, 0, nb, grp, xt, x_stride, yt, y_stride, rows))

/* n_t tokens (x: Q8_K rows x_stride bytes apart) x one packed row group of Q3_K or Q2_K with nb
 * blocks; y[t * y_stride + r] for the group's first rr rows; gf: Q3_K's third bit by GFNI (the
 * caller checked nuri_pack_gfni). */
void kernels_packed_q23_group(uint32_t type, int64_t nb, const uint8_t *grp, const uint8_t *x,
                              size_t x_stride, int64_t n_t, float *y, int64_t y_stride, int rr,
                              int gf);
void kernels_packed_q23_group(uint32_t type, int64_t nb, const uint8_t *grp, const uint8_t *x,
                              size_t x_stride, int64_t n_t, float *y, int64_t y_stride, int rr,
                              int gf)
{
    const int q3 = type == NURI_TYPE_Q3_K;
    const __mmask16 rows = (__mmask16)((1u << rr) - 1);
    for (int64_t t = 0; t < n_t;) {
        const int64_t left = n_t - t;
        const uint8_t *xt = x + (size_t)t * x_stride;
        float *yt = y + t * y_stride;
        if (left >= 8) {
            Q23(8);
            t += 8;
        } else if (left >= 4) {
            Q23(4);
            t += 4;
        } else if (left >= 2) {
            Q23(2);
            t += 2;
        } else {
            Q23(1);
            t += 1;
        }
    }
}
