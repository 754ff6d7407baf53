/*
 * kernels_iq_x86.h: the 256-bit dot products of the grid types IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS,
 * IQ3_S, IQ1_S and IQ1_M with Q8_K, written once and compiled twice: by kernels_iq_avx2.c and by
 * kernels_iq_avx512.c with KERNELS_VNNI defined (vpdpbusd instead of vpmaddubsw + vpmaddwd).
 *
 * Each sub-block of 32 weights becomes one 32-byte register of grid values (table lookups), the
 * signs are moved onto the activations (vpsignb), and the unsigned-x-signed byte products are
 * summed into 8 int32 lanes, multiplied by the lanes' integer sub-block scales and accumulated:
 * exactly the scalar kernel's integers (kernels_iq.c), lane by lane. The float steps then follow
 * llama.cpp's AVX2 kernels rather than its generic ones: each block's 8 lanes times its scale are
 * added into 8 float lanes with one FMA, and the lanes summed at the end in hsum_float_8's order,
 * so on x86 nuri rounds as the llama.cpp it is compared with does. The scalar kernel sums the
 * same integers in another float order: they agree to float rounding (tested).
 *
 * Every function is static: each including file gets its own copy.
 */
#ifndef NURI_KERNELS_IQ_X86_H
#define NURI_KERNELS_IQ_X86_H

#include "kernels/blocks_iq.h"
#include "kernels/fp16.h"
#include "kernels/iq_grids.h"
#include "kernels/kernels_impl.h"

#include <immintrin.h>

/* acc + 8 lanes of sums of 4 adjacent u8 * s8 products (u <= 127 without VNNI). */
static inline __m256i iq_dot_acc(__m256i acc, __m256i u, __m256i s)
{
#ifdef KERNELS_VNNI
    return _mm256_dpbusd_epi32(acc, u, s);
#else
    return _mm256_add_epi32(acc,
                            _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
#endif
}

/* acc + 8 lanes of (sums of 4 adjacent u8 * s8 products) * scale: vpmaddubsw's 16-bit pairs
 * (|u * s| pairs <= 2 * 62 * 127, no saturation) times 16-bit scales by vpmaddwd, exactly the
 * integers of a 32-bit product by the scale, in two fast instructions. sc16: int16 lanes 0-7
 * (bytes 0-15) and 8-15 (bytes 16-31). */
static inline __m256i iq_dot_scaled(__m256i acc, __m256i u, __m256i s, __m256i sc16)
{
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), sc16));
}

static inline __m256i iq_scales16(int a, int b)
{
    return _mm256_setr_m128i(_mm_set1_epi16((short)a), _mm_set1_epi16((short)b));
}

/* The 8 floats summed as llama.cpp's hsum_float_8 does: (v0 + v4) + (v2 + v6) + ((v1 + v5) + (v3 +
 * v7)), pairwise across the halves first. */
static inline float iq_hsum_ps(__m256 v)
{
    __m128 x = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
}

/* 4 sign bytes (byte l for weights 8l .. 8l + 7) -> 32 bytes of -1 (sign set) or +1. */
static inline __m256i iq_signs(uint8_t s0, uint8_t s1, uint8_t s2, uint8_t s3)
{
    return _mm256_setr_epi64x((long long)nuri_iq_sign64[s0], (long long)nuri_iq_sign64[s1],
                              (long long)nuri_iq_sign64[s2], (long long)nuri_iq_sign64[s3]);
}

/* The same for 4 groups of 7 stored sign bits (the 8th from parity) at bits 0, 7, 14, 21. */
static inline __m256i iq_signs7x4(uint32_t a)
{
    return _mm256_setr_epi64x(
        (long long)nuri_iq_ksign64[a & 127], (long long)nuri_iq_ksign64[a >> 7 & 127],
        (long long)nuri_iq_ksign64[a >> 14 & 127], (long long)nuri_iq_ksign64[a >> 21 & 127]);
}

static inline __m256i iq_load(const int8_t *p)
{
    return _mm256_loadu_si256((const __m256i *)p);
}

/* Lanes 0-3 (weights 0-15) get scale a, lanes 4-7 scale b. */
static inline __m256i iq_scales2(int a, int b)
{
    return _mm256_setr_epi32(a, a, a, a, b, b, b, b);
}

static inline uint32_t iq_rd32(const void *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* 4 sign bytes (bit k of byte l: weight 8l + k) -> 32 bytes of -1 / +1, without tables: each
 * byte gets its sign byte (vpshufb), its bit tested by a compare. */
static inline __m256i iq_signs_bits(const uint8_t *sb)
{
    const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2,
                                            2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x(0x8040201008040201ll);
    const __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)iq_rd32(sb)), spread);
    return _mm256_or_si256(_mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit), _mm256_set1_epi8(1));
}

/* The grid points of a sub-block, looked up one by one (vpgather was slower on Zen 5).
 * IQ3_S: indices q3[k] | bit k of h as bit 8. */
static inline __m256i iq3s_points(const uint8_t *q3, int h)
{
    // the 9-bit indices made 8 at a time in a register, then looked up one by one
    const __m256i lo = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)q3));
    const __m256i hi = _mm256_and_si256(
        _mm256_sllv_epi32(_mm256_set1_epi32(h), _mm256_setr_epi32(8, 7, 6, 5, 4, 3, 2, 1)),
        _mm256_set1_epi32(256));
    uint32_t ix[8];
    _mm256_storeu_si256((__m256i *)ix, _mm256_or_si256(lo, hi));
    return _mm256_setr_epi32((int)nuri_iq3s_grid[ix[0]], (int)nuri_iq3s_grid[ix[1]],
                             (int)nuri_iq3s_grid[ix[2]], (int)nuri_iq3s_grid[ix[3]],
                             (int)nuri_iq3s_grid[ix[4]], (int)nuri_iq3s_grid[ix[5]],
                             (int)nuri_iq3s_grid[ix[6]], (int)nuri_iq3s_grid[ix[7]]);
}

/* IQ3_XXS: 8 byte indices. */
static inline __m256i iq3xxs_points(const uint8_t *q3)
{
    return _mm256_setr_epi32((int)nuri_iq3xxs_grid[q3[0]], (int)nuri_iq3xxs_grid[q3[1]],
                             (int)nuri_iq3xxs_grid[q3[2]], (int)nuri_iq3xxs_grid[q3[3]],
                             (int)nuri_iq3xxs_grid[q3[4]], (int)nuri_iq3xxs_grid[q3[5]],
                             (int)nuri_iq3xxs_grid[q3[6]], (int)nuri_iq3xxs_grid[q3[7]]);
}

/* IQ2_S: 4 groups of 8, indices qs[k] | bits 2k, 2k + 1 of h as bits 8, 9. */
static inline __m256i iq2s_points(const uint8_t *qs, int h)
{
    return _mm256_setr_epi64x((long long)nuri_iq2s_grid[qs[0] | (h & 3) << 8],
                              (long long)nuri_iq2s_grid[qs[1] | (h >> 2 & 3) << 8],
                              (long long)nuri_iq2s_grid[qs[2] | (h >> 4 & 3) << 8],
                              (long long)nuri_iq2s_grid[qs[3] | (h >> 6 & 3) << 8]);
}

/* IQ2_XXS: 4 groups of 8, the 4 bytes of a0 as indices. */
static inline __m256i iq2xxs_points(uint32_t a0)
{
    return _mm256_setr_epi64x(
        (long long)nuri_iq2xxs_grid[a0 & 255], (long long)nuri_iq2xxs_grid[a0 >> 8 & 255],
        (long long)nuri_iq2xxs_grid[a0 >> 16 & 255], (long long)nuri_iq2xxs_grid[a0 >> 24]);
}

/* IQ2_XS: 4 groups, the low 9 bits of 4 uint16 as indices. */
static inline __m256i iq2xs_points(const uint16_t *q2)
{
    return _mm256_setr_epi64x(
        (long long)nuri_iq2xs_grid[q2[0] & 511], (long long)nuri_iq2xs_grid[q2[1] & 511],
        (long long)nuri_iq2xs_grid[q2[2] & 511], (long long)nuri_iq2xs_grid[q2[3] & 511]);
}

/* ---- IQ2 ---- */

static void iq2_xxs_vec_dot_x86(int64_t n, float *restrict s, const void *restrict vx,
                                const void *restrict vy)
{
    const nuri_block_iq2_xxs *x = vx;
    const nuri_block_q8_K *y = vy;
    __m256 accf = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        const float d = nuri_f16_to_f32(x[i].d) * y[i].d;
        __m256i acc = _mm256_setzero_si256();
        for (int j = 0; j < 8; j++) {
            uint32_t a0 = iq_rd32(x[i].qs + 4 * j), a1 = iq_rd32(x[i].qs + 4 * j + 2);
            __m256i g = iq2xxs_points(a0);
            __m256i q = _mm256_sign_epi8(iq_load(y[i].qs + 32 * j), iq_signs7x4(a1));
            acc = iq_dot_scaled(acc, g, q, _mm256_set1_epi16((short)(2 * (a1 >> 28) + 1)));
        }
        accf = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(acc), accf);
    }
    *s = 0.125f * iq_hsum_ps(accf);
}

static void iq2_xs_vec_dot_x86(int64_t n, float *restrict s, const void *restrict vx,
                               const void *restrict vy)
{
    const nuri_block_iq2_xs *x = vx;
    const nuri_block_q8_K *y = vy;
    __m256 accf = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        const float d = nuri_f16_to_f32(x[i].d) * y[i].d;
        __m256i acc = _mm256_setzero_si256();
        for (int j = 0; j < 8; j++) {
            const uint16_t *q2 = x[i].qs + 4 * j;
            __m256i g = iq2xs_points(q2);
            __m256i sg = iq_signs(nuri_iq_ksigns[q2[0] >> 9], nuri_iq_ksigns[q2[1] >> 9],
                                  nuri_iq_ksigns[q2[2] >> 9], nuri_iq_ksigns[q2[3] >> 9]);
            __m256i q = _mm256_sign_epi8(iq_load(y[i].qs + 32 * j), sg);
            const int sc = x[i].scales[j];
            acc = iq_dot_scaled(acc, g, q, iq_scales16(2 * (sc & 15) + 1, 2 * (sc >> 4) + 1));
        }
        accf = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(acc), accf);
    }
    *s = 0.125f * iq_hsum_ps(accf);
}

static void iq2_s_vec_dot_x86(int64_t n, float *restrict s, const void *restrict vx,
                              const void *restrict vy)
{
    const nuri_block_iq2_s *x = vx;
    const nuri_block_q8_K *y = vy;
    __m256 accf = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        const float d = nuri_f16_to_f32(x[i].d) * y[i].d;
        __m256i acc = _mm256_setzero_si256();
        for (int j = 0; j < 8; j++) {
            const uint8_t *qs = x[i].qs + 4 * j;
            const int h = x[i].qh[j];
            __m256i g = iq2s_points(qs, h);
            const uint8_t *sb = x[i].qs + NURI_QK_K / 8 + 4 * j;
            __m256i q = _mm256_sign_epi8(iq_load(y[i].qs + 32 * j), iq_signs_bits(sb));
            const int sc = x[i].scales[j];
            acc = iq_dot_scaled(acc, g, q, iq_scales16(2 * (sc & 15) + 1, 2 * (sc >> 4) + 1));
        }
        accf = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(acc), accf);
    }
    *s = 0.125f * iq_hsum_ps(accf);
}

/* ---- IQ3 ---- */

static void iq3_xxs_vec_dot_x86(int64_t n, float *restrict s, const void *restrict vx,
                                const void *restrict vy)
{
    const nuri_block_iq3_xxs *x = vx;
    const nuri_block_q8_K *y = vy;
    __m256 accf = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        const float d = nuri_f16_to_f32(x[i].d) * y[i].d;
        __m256i acc = _mm256_setzero_si256();
        for (int j = 0; j < 8; j++) {
            const uint8_t *q3 = x[i].qs + 8 * j;
            uint32_t a = iq_rd32(x[i].qs + NURI_QK_K / 4 + 4 * j);
            __m256i g = iq3xxs_points(q3);
            __m256i q = _mm256_sign_epi8(iq_load(y[i].qs + 32 * j), iq_signs7x4(a));
            acc = iq_dot_scaled(acc, g, q, _mm256_set1_epi16((short)(2 * (a >> 28) + 1)));
        }
        accf = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(acc), accf);
    }
    *s = 0.25f * iq_hsum_ps(accf);
}

static void iq3_s_vec_dot_x86(int64_t n, float *restrict s, const void *restrict vx,
                              const void *restrict vy)
{
    const nuri_block_iq3_s *x = vx;
    const nuri_block_q8_K *y = vy;
    __m256 accf = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        const float d = nuri_f16_to_f32(x[i].d) * y[i].d;
        __m256i acc = _mm256_setzero_si256();
        for (int j = 0; j < 8; j++) {
            const uint8_t *q3 = x[i].qs + 8 * j;
            const int h = x[i].qh[j];
            __m256i g = iq3s_points(q3, h);
            const uint8_t *sb = x[i].signs + 4 * j;
            __m256i q = _mm256_sign_epi8(iq_load(y[i].qs + 32 * j), iq_signs_bits(sb));
            const int ls = x[i].scales[j / 2] >> (4 * (j % 2)) & 15;
            acc = iq_dot_scaled(acc, g, q, _mm256_set1_epi16((short)(2 * ls + 1)));
        }
        accf = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(acc), accf);
    }
    *s = iq_hsum_ps(accf);
}

/* ---- IQ1: signed grid values (-1, 0, 1): |g| against q8 with g's sign ---- */

static inline __m256i iq1_dot(__m256i g, __m256i q8)
{
    return iq_dot_acc(_mm256_setzero_si256(), _mm256_sign_epi8(g, g), _mm256_sign_epi8(q8, g));
}

static void iq1_s_vec_dot_x86(int64_t n, float *restrict s, const void *restrict vx,
                              const void *restrict vy)
{
    const nuri_block_iq1_s *x = vx;
    const nuri_block_q8_K *y = vy;
    __m256 accf = _mm256_setzero_ps();
    float accd = 0;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        __m256i acc = _mm256_setzero_si256();
        int sumi1 = 0;
        for (int j = 0; j < 8; j++) {
            const uint8_t *qs = x[i].qs + 4 * j;
            const int h = x[i].qh[j];
            __m256i g = _mm256_setr_epi64x((long long)nuri_iq1s_grid[qs[0] | (h & 7) << 8],
                                           (long long)nuri_iq1s_grid[qs[1] | (h >> 3 & 7) << 8],
                                           (long long)nuri_iq1s_grid[qs[2] | (h >> 6 & 7) << 8],
                                           (long long)nuri_iq1s_grid[qs[3] | (h >> 9 & 7) << 8]);
            const int ls = 2 * (h >> 12 & 7) + 1;
            __m256i p = iq1_dot(g, iq_load(y[i].qs + 32 * j));
            acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(p, _mm256_set1_epi32(ls)));
            sumi1 += ls * (h & 0x8000 ? -1 : 1) * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
        }
        const float d = y[i].d * nuri_f16_to_f32(x[i].d);
        accf = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(acc), accf);
        accd += d * (float)sumi1;
    }
    *s = iq_hsum_ps(accf) + NURI_IQ1_DELTA * accd;
}

static void iq1_m_vec_dot_x86(int64_t n, float *restrict s, const void *restrict vx,
                              const void *restrict vy)
{
    const nuri_block_iq1_m *x = vx;
    const nuri_block_q8_K *y = vy;
    __m256 accf1 = _mm256_setzero_ps(), accf2 = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        uint16_t sc[4];
        memcpy(sc, x[i].scales, 8);
        const uint16_t d16 = (uint16_t)((sc[0] >> 12) | (sc[1] >> 8 & 0x00f0) |
                                        (sc[2] >> 4 & 0x0f00) | (sc[3] & 0xf000));
        __m256i acc1 = _mm256_setzero_si256(), acc2 = _mm256_setzero_si256();
        for (int j = 0; j < 8; j++) {
            const uint8_t *qs = x[i].qs + 4 * j, *qh = x[i].qh + 2 * j;
            __m256i g =
                _mm256_setr_epi64x((long long)nuri_iq1s_grid[qs[0] | (qh[0] & 7) << 8],
                                   (long long)nuri_iq1s_grid[qs[1] | (qh[0] >> 4 & 7) << 8],
                                   (long long)nuri_iq1s_grid[qs[2] | (qh[1] & 7) << 8],
                                   (long long)nuri_iq1s_grid[qs[3] | (qh[1] >> 4 & 7) << 8]);
            // the shift's sign per group of 8, as bytes -1 / +1
            __m256i dl = _mm256_setr_epi64x(qh[0] & 0x08 ? -1ll : 0x0101010101010101ll,
                                            qh[0] & 0x80 ? -1ll : 0x0101010101010101ll,
                                            qh[1] & 0x08 ? -1ll : 0x0101010101010101ll,
                                            qh[1] & 0x80 ? -1ll : 0x0101010101010101ll);
            __m256i q8 = iq_load(y[i].qs + 32 * j);
            const int ls1 = 2 * (sc[j / 2] >> (6 * (j % 2)) & 7) + 1;
            const int ls2 = 2 * (sc[j / 2] >> (6 * (j % 2) + 3) & 7) + 1;
            const __m256i ls = iq_scales2(ls1, ls2);
            acc1 = _mm256_add_epi32(acc1, _mm256_mullo_epi32(iq1_dot(g, q8), ls));
            __m256i q = _mm256_sign_epi8(q8, dl);
            __m256i p2 = iq_dot_acc(_mm256_setzero_si256(), _mm256_set1_epi8(1), q);
            acc2 = _mm256_add_epi32(acc2, _mm256_mullo_epi32(p2, ls));
        }
        const __m256 d = _mm256_set1_ps(y[i].d * nuri_f16_to_f32(d16));
        accf1 = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(acc1), accf1);
        accf2 = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(acc2), accf2);
    }
    *s = iq_hsum_ps(accf1) + NURI_IQ1_DELTA * iq_hsum_ps(accf2);
}

/* ---- prompts: rows unpacked once, every token of a tile against them ----
 *
 * Row by row (vec_dot), each (row, token) pair decodes the row's grid points again: a prompt
 * of T tokens decodes every weight T times, and the lookups, not the products, set the speed.
 * The gemm decodes each group of IQG_R rows once per tile of tokens into 16-bit integers that
 * carry the sign and the sub-block scale (|grid| * scale <= 62 * 31 fits), so the products are
 * plain 16-bit dot products (vpdpwssd; AVX2: vpmaddwd + vpaddd) against the activations
 * widened to 16 bits.
 *
 * Each output is computed exactly as vec_dot computes it, so a token's result does not depend
 * on its batch: per block, the 8 integer lane sums are those of vec_dot (lane l holds bytes
 * 4l .. 4l + 3 of every sub-block times its scale: the same integers, summed in another order,
 * which integers allow), then the same float steps (d = dw * da, one FMA per lane, the lanes
 * summed by iq_hsum_ps, times the type's factor). For that, weights and activations are both
 * stored with each sub-block's bytes reordered (iq_perm_bytes) so that the first 16 products
 * of a lane pair are bytes (4l, 4l + 1) and the next 16 bytes (4l + 2, 4l + 3): two 16-bit dot
 * products put lane l's 4 products in 32-bit lane l. */

#ifdef KERNELS_VNNI
#ifndef IQG_R
#define IQG_R 4 // rows per pass
#endif
#ifndef IQG_TP
#define IQG_TP 4 // token pairs per pass
#endif
#ifndef IQG_KB
#define IQG_KB 8 // blocks per chunk
#endif
#define IQG_PR 32    // rows per panel
#define IQG_TILE 256 // tokens per tile at most
#define iq_dp16(acc, a, b) _mm256_dpwssd_epi32(acc, a, b)
#else
#define IQG_R 2
#define IQG_PR 2
#define IQG_TILE 128
#define iq_dp16(acc, a, b) _mm256_add_epi32(acc, _mm256_madd_epi16(a, b))
#endif
#define IQG_TC 2                 // tokens per pass
#define IQG_W_BYTES (256 * 1024) // unpacked weights (AVX-512: a panel's chunk; AVX2: IQG_R rows)
#define IQG_ACT_BYTES (4u << 20) // a tile of reordered (AVX-512: widened) activations
#define IQG_F_BYTES (256 * 1024) // their block scales and the rows' (floats)
#define IQG_ACC_BYTES (IQG_TILE / 2 * IQG_PR * 64) // AVX-512: a panel's accumulators
#define IQG_MIN_TOKENS 2                           // fewer: vec_dot row by row

/* 32 bytes reordered: bytes 4l, 4l + 1 (l = 0 .. 7), then bytes 4l + 2, 4l + 3. */
static inline __m256i iq_perm_bytes(__m256i v)
{
    const __m256i ctl = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15, 0, 1,
                                         4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15);
    return _mm256_permute4x64_epi64(_mm256_shuffle_epi8(v, ctl), 0xD8);
}

/* A sub-block's 32 signed grid values (bytes, natural order) times its scales (a for bytes 0 -
 * 15, b for 16 - 31), stored as 32 reordered int16. */
static inline void iq_store_w(int16_t *w, __m256i g, int a, int b)
{
    const __m256i p = iq_perm_bytes(g);
    // after the reordering, elements 0-7 of each half come from bytes 0-15, 8-15 from 16-31
    const __m256i sc = _mm256_setr_epi16((short)a, (short)a, (short)a, (short)a, (short)a, (short)a,
                                         (short)a, (short)a, (short)b, (short)b, (short)b, (short)b,
                                         (short)b, (short)b, (short)b, (short)b);
    const __m256i w0 = _mm256_mullo_epi16(_mm256_cvtepi8_epi16(_mm256_castsi256_si128(p)), sc);
    const __m256i w1 = _mm256_mullo_epi16(_mm256_cvtepi8_epi16(_mm256_extracti128_si256(p, 1)), sc);
    _mm256_storeu_si256((__m256i *)w, w0);
    _mm256_storeu_si256((__m256i *)(w + 16), w1);
}

/* One block of each type -> 256 reordered int16 and its scale as a float (what vec_dot
 * multiplies by y.d). */
static void iq2_xxs_unpack(const void *vx, int16_t *w, float *dw)
{
    const nuri_block_iq2_xxs *x = vx;
    *dw = nuri_f16_to_f32(x->d);
    for (int j = 0; j < 8; j++) {
        uint32_t a0 = iq_rd32(x->qs + 4 * j), a1 = iq_rd32(x->qs + 4 * j + 2);
        __m256i g = iq2xxs_points(a0);
        const int sc = (int)(2 * (a1 >> 28) + 1);
        iq_store_w(w + 32 * j, _mm256_sign_epi8(g, iq_signs7x4(a1)), sc, sc);
    }
}

static void iq2_xs_unpack(const void *vx, int16_t *w, float *dw)
{
    const nuri_block_iq2_xs *x = vx;
    *dw = nuri_f16_to_f32(x->d);
    for (int j = 0; j < 8; j++) {
        const uint16_t *q2 = x->qs + 4 * j;
        __m256i g = iq2xs_points(q2);
        __m256i sg = iq_signs(nuri_iq_ksigns[q2[0] >> 9], nuri_iq_ksigns[q2[1] >> 9],
                              nuri_iq_ksigns[q2[2] >> 9], nuri_iq_ksigns[q2[3] >> 9]);
        const int sc = x->scales[j];
        iq_store_w(w + 32 * j, _mm256_sign_epi8(g, sg), 2 * (sc & 15) + 1, 2 * (sc >> 4) + 1);
    }
}

static void iq2_s_unpack(const void *vx, int16_t *w, float *dw)
{
    const nuri_block_iq2_s *x = vx;
    *dw = nuri_f16_to_f32(x->d);
    for (int j = 0; j < 8; j++) {
        const uint8_t *qs = x->qs + 4 * j;
        const int h = x->qh[j];
        __m256i g = iq2s_points(qs, h);
        const uint8_t *sb = x->qs + NURI_QK_K / 8 + 4 * j;
        const int sc = x->scales[j];
        iq_store_w(w + 32 * j, _mm256_sign_epi8(g, iq_signs_bits(sb)), 2 * (sc & 15) + 1,
                   2 * (sc >> 4) + 1);
    }
}

static void iq3_xxs_unpack(const void *vx, int16_t *w, float *dw)
{
    const nuri_block_iq3_xxs *x = vx;
    *dw = nuri_f16_to_f32(x->d);
    for (int j = 0; j < 8; j++) {
        const uint8_t *q3 = x->qs + 8 * j;
        uint32_t a = iq_rd32(x->qs + NURI_QK_K / 4 + 4 * j);
        __m256i g = iq3xxs_points(q3);
        const int sc = (int)(2 * (a >> 28) + 1);
        iq_store_w(w + 32 * j, _mm256_sign_epi8(g, iq_signs7x4(a)), sc, sc);
    }
}

static void iq3_s_unpack(const void *vx, int16_t *w, float *dw)
{
    const nuri_block_iq3_s *x = vx;
    *dw = nuri_f16_to_f32(x->d);
    for (int j = 0; j < 8; j++) {
        const uint8_t *q3 = x->qs + 8 * j;
        const int h = x->qh[j];
        __m256i g = iq3s_points(q3, h);
        const uint8_t *sb = x->signs + 4 * j;
        const int sc = 2 * (x->scales[j / 2] >> (4 * (j % 2)) & 15) + 1;
        iq_store_w(w + 32 * j, _mm256_sign_epi8(g, iq_signs_bits(sb)), sc, sc);
    }
}

typedef void (*iq_unpack_fn)(const void *x, int16_t *w, float *dw);

/* R rows x TC tokens, all nb blocks: w (R rows of nb * 256 int16, w_stride apart), dw (R rows of
 * nb floats), act (TC tokens of nb * 256 reordered bytes, act_stride apart), da (TC rows of nb). */
static inline __attribute__((always_inline)) void
iq_gemm_tile(const int R, const int TC, int64_t nb, const int16_t *w, int64_t w_stride,
             const float *dw, const int8_t *act, int64_t act_stride, const float *da, float fac,
             float *y, int64_t y_stride)
{
    __m256 accf[IQG_R][IQG_TC];
#pragma GCC unroll 16
    for (int r = 0; r < R; r++)
#pragma GCC unroll 16
        for (int t = 0; t < TC; t++) accf[r][t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        __m256i acc[IQG_R][IQG_TC];
#pragma GCC unroll 16
        for (int r = 0; r < R; r++)
#pragma GCC unroll 16
            for (int t = 0; t < TC; t++) acc[r][t] = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            __m256i x0[IQG_TC], x1[IQG_TC];
#pragma GCC unroll 16
            for (int t = 0; t < TC; t++) {
                const int8_t *a = act + t * act_stride + b * 256 + 32 * j;
                x0[t] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)a));
                x1[t] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(a + 16)));
            }
#pragma GCC unroll 16
            for (int r = 0; r < R; r++) {
                const int16_t *wr = w + r * w_stride + b * 256 + 32 * j;
                const __m256i w0 = _mm256_loadu_si256((const __m256i *)wr);
                const __m256i w1 = _mm256_loadu_si256((const __m256i *)(wr + 16));
#pragma GCC unroll 16
                for (int t = 0; t < TC; t++)
                    acc[r][t] = iq_dp16(iq_dp16(acc[r][t], w0, x0[t]), w1, x1[t]);
            }
        }
#pragma GCC unroll 16
        for (int r = 0; r < R; r++)
#pragma GCC unroll 16
            for (int t = 0; t < TC; t++) {
                const float d = dw[r * nb + b] * da[t * nb + b]; // as vec_dot rounds it
                accf[r][t] =
                    _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(acc[r][t]), accf[r][t]);
            }
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; r++)
#pragma GCC unroll 16
        for (int t = 0; t < TC; t++) y[t * y_stride + r] = fac * iq_hsum_ps(accf[r][t]);
}

#ifdef KERNELS_VNNI
/* AVX-512: a 512-bit register holds one row's 8 lanes for two tokens (lanes 0-7: the pair's first
 * token, 8-15: its second), so each vpdpwssd does 32 products. The activations of a pair are
 * stored widened and interleaved by iq_prep_pairs: per sub-block, [first 16 reordered values of
 * token 0, of token 1, last 16 of token 0, of token 1]. The loads, not the products, bound this
 * loop: IQG_R rows share each activation load, and the blocks go in chunks of IQG_KB so that the
 * chunk's rows stay in L1 while every pair of the tile passes. */

/* Blocks [b0, b1) of R rows against TP pairs (act: the first pair's, ps apart; da: the first
 * pair's first token's scales), into accf[p * IQG_R + r]. */
static inline __attribute__((always_inline)) void
iq_chunk512(const int R, const int TP, int64_t b0, int64_t b1, int64_t nb, const int16_t *w,
            int64_t w_stride, const float *dw, const int16_t *act, int64_t ps, const float *da,
            __m512 *accf)
{
    __m512 f[IQG_R][IQG_TP];
#pragma GCC unroll 16
    for (int r = 0; r < R; r++)
#pragma GCC unroll 16
        for (int p = 0; p < TP; p++) f[r][p] = accf[p * IQG_R + r];
    for (int64_t b = b0; b < b1; b++) {
        __m512i acc[IQG_R][IQG_TP];
#pragma GCC unroll 16
        for (int r = 0; r < R; r++)
#pragma GCC unroll 16
            for (int p = 0; p < TP; p++) acc[r][p] = _mm512_setzero_si512();
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            __m512i w0[IQG_R], w1[IQG_R];
#pragma GCC unroll 16
            for (int r = 0; r < R; r++) {
                const int16_t *wr = w + r * w_stride + (b - b0) * 256 + 32 * j;
                w0[r] = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)wr));
                w1[r] = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(wr + 16)));
            }
#pragma GCC unroll 16
            for (int p = 0; p < TP; p++) {
                const int16_t *a = act + p * ps + b * 512 + 64 * j;
                const __m512i x0 = _mm512_loadu_si512(a), x1 = _mm512_loadu_si512(a + 32);
#pragma GCC unroll 16
                for (int r = 0; r < R; r++)
                    acc[r][p] =
                        _mm512_dpwssd_epi32(_mm512_dpwssd_epi32(acc[r][p], w0[r], x0), w1[r], x1);
            }
        }
#pragma GCC unroll 16
        for (int p = 0; p < TP; p++) {
            const __m512 dap = _mm512_insertf32x8(_mm512_set1_ps(da[2 * p * nb + b]),
                                                  _mm256_set1_ps(da[(2 * p + 1) * nb + b]), 1);
#pragma GCC unroll 16
            for (int r = 0; r < R; r++) // d = dw * da per lane, as vec_dot rounds it
                f[r][p] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(dw[r * nb + b]), dap),
                                          _mm512_cvtepi32_ps(acc[r][p]), f[r][p]);
        }
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; r++)
#pragma GCC unroll 16
        for (int p = 0; p < TP; p++) accf[p * IQG_R + r] = f[r][p];
}

/* The tile's tokens as pairs (an odd last token paired with itself; its twin's outputs are not
 * written), widened to 16 bits, and each token's block scales in da. */
static void iq_prep_pairs(const void *x, size_t x_stride, int64_t nt, int64_t nb, int16_t *act,
                          float *da)
{
    for (int64_t t = 0; t < nt + (nt & 1); t++) {
        const int64_t ts = t < nt ? t : nt - 1;
        const nuri_block_q8_K *xb =
            (const nuri_block_q8_K *)((const char *)x + (size_t)ts * x_stride);
        int16_t *a = act + (t / 2) * nb * 512 + (t & 1) * 16;
        for (int64_t b = 0; b < nb; b++) {
            da[t * nb + b] = xb[b].d;
            for (int j = 0; j < 8; j++) {
                const __m256i v =
                    iq_perm_bytes(_mm256_loadu_si256((const __m256i *)(xb[b].qs + 32 * j)));
                int16_t *d = a + b * 512 + 64 * j;
                _mm256_storeu_si256((__m256i *)d, _mm256_cvtepi8_epi16(_mm256_castsi256_si128(v)));
                _mm256_storeu_si256((__m256i *)(d + 32),
                                    _mm256_cvtepi8_epi16(_mm256_extracti128_si256(v, 1)));
            }
        }
    }
}

/* Blocks [b0, b1) of R rows (w: their unpacked blocks from b0, w_stride apart) against the
 * tile's np pairs, into accf[p * IQG_R + r]. */
static void iq_chunk_pairs(int R, int64_t b0, int64_t b1, int64_t nb, const int16_t *w,
                           int64_t w_stride, const float *dw, const int16_t *act, const float *da,
                           int64_t np, __m512 *accf)
{
    const int64_t ps = nb * 512;
    int64_t p = 0;
    for (; R == IQG_R && p + IQG_TP <= np; p += IQG_TP)
        iq_chunk512(IQG_R, IQG_TP, b0, b1, nb, w, w_stride, dw, act + p * ps, ps, da + 2 * p * nb,
                    accf + p * IQG_R);
    for (; p < np; p++)
        for (int r = 0; r < R; r++)
            iq_chunk512(1, 1, b0, b1, nb, w + r * w_stride, w_stride, dw + r * nb, act + p * ps, ps,
                        da + 2 * p * nb, accf + p * IQG_R + r);
}

/* Rows [r0, r1) against the tile's n_t tokens (prepared by iq_prep_pairs), in panels of IQG_PR
 * rows: each panel's rows are unpacked one chunk of IQG_KB blocks at a time, exactly once per
 * tile, and every pair of the tile passes over the chunk while it is in cache. */
static void iq_gemm_panels512(iq_unpack_fn unpack, size_t block_bytes, int64_t nb, const void *w,
                              size_t w_stride, int64_t r0, int64_t r1, int16_t *wu, float *dw,
                              const int16_t *act, const float *da, int64_t n_t, float fac,
                              __m512 *accf, float *y, int64_t y_stride)
{
    const int64_t np = (n_t + 1) / 2, ws = IQG_KB * 256;
    for (int64_t r = r0; r < r1; r += IQG_PR) {
        const int pr = r1 - r < IQG_PR ? (int)(r1 - r) : IQG_PR;
        const int ng = (pr + IQG_R - 1) / IQG_R;
        for (int64_t i = 0; i < ng * np * IQG_R; i++) accf[i] = _mm512_setzero_ps();
        for (int64_t b0 = 0; b0 < nb; b0 += IQG_KB) {
            const int64_t b1 = nb - b0 < IQG_KB ? nb : b0 + IQG_KB;
            for (int i = 0; i < pr; i++) {
                const uint8_t *row = (const uint8_t *)w + (size_t)(r + i) * w_stride;
                for (int64_t b = b0; b < b1; b++)
                    unpack(row + (size_t)b * block_bytes, wu + i * ws + (b - b0) * 256,
                           dw + i * nb + b);
            }
            for (int g = 0; g < ng; g++) {
                const int R = pr - g * IQG_R < IQG_R ? pr - g * IQG_R : IQG_R;
                iq_chunk_pairs(R, b0, b1, nb, wu + g * IQG_R * ws, ws, dw + g * IQG_R * nb, act, da,
                               np, accf + g * np * IQG_R);
            }
        }
        for (int64_t p = 0; p < np; p++) // row by row of y: a token's outputs are contiguous
            for (int i = 0; i < pr; i++) {
                const __m512 f = accf[(i / IQG_R) * np * IQG_R + p * IQG_R + i % IQG_R];
                y[2 * p * y_stride + r + i] = fac * iq_hsum_ps(_mm512_castps512_ps256(f));
                if (2 * p + 1 < n_t)
                    y[(2 * p + 1) * y_stride + r + i] =
                        fac * iq_hsum_ps(_mm512_extractf32x8_ps(f, 1));
            }
    }
}
#else
static void iq_gemm_rows(int R, int64_t nb, const int16_t *w, int64_t w_stride, const float *dw,
                         const int8_t *act, int64_t act_stride, const float *da, int64_t n_t,
                         float fac, float *y, int64_t y_stride)
{
    int64_t t = 0;
    for (; t + IQG_TC <= n_t; t += IQG_TC) {
        const int8_t *at = act + t * act_stride;
        const float *dt = da + t * nb;
        float *yt = y + t * y_stride;
        if (R == IQG_R)
            iq_gemm_tile(IQG_R, IQG_TC, nb, w, w_stride, dw, at, act_stride, dt, fac, yt, y_stride);
        else
            for (int r = 0; r < R; r++)
                iq_gemm_tile(1, IQG_TC, nb, w + r * w_stride, w_stride, dw + r * nb, at, act_stride,
                             dt, fac, yt + r, y_stride);
    }
    for (; t < n_t; t++)
        for (int r = 0; r < R; r++)
            iq_gemm_tile(1, 1, nb, w + r * w_stride, w_stride, dw + r * nb, act + t * act_stride,
                         act_stride, da + t * nb, fac, y + t * y_stride + r, y_stride);
}

#endif

/* nuri_gemm_fn for the grid types: vec_dot row by row for fewer than IQG_MIN_TOKENS tokens (or
 * rows too long for the scratch), else tiles of tokens against groups of unpacked rows. */
static void iq_gemm_x86(iq_unpack_fn unpack, nuri_vec_dot_fn vec_dot, size_t block_bytes, float fac,
                        int64_t n, const void *w, size_t w_stride, int64_t r0, int64_t r1,
                        const void *x, size_t x_stride, int64_t n_t, float *y, int64_t y_stride)
{
    const int64_t nb = n / NURI_QK_K;
    uint8_t *buf = NULL;
#ifdef KERNELS_VNNI
    const size_t w_need = (size_t)IQG_PR * IQG_KB * 512;
#else
    const size_t w_need = (size_t)IQG_R * n * 2;
#endif
    if (n_t >= IQG_MIN_TOKENS && w_need <= IQG_W_BYTES && (size_t)n * 2 * IQG_TC <= IQG_ACT_BYTES)
        buf = kernels_thread_scratch(KERNELS_SCRATCH_IQ,
                                     IQG_W_BYTES + IQG_ACT_BYTES + IQG_F_BYTES + IQG_ACC_BYTES);
    if (!buf) {
        for (int64_t r = r0; r < r1; r++)
            for (int64_t t = 0; t < n_t; t++)
                vec_dot(n, &y[t * y_stride + r], (const char *)w + (size_t)r * w_stride,
                        (const char *)x + (size_t)t * x_stride);
        return;
    }
    int16_t *wu = (int16_t *)buf;
    int8_t *act = (int8_t *)(buf + IQG_W_BYTES);
    float *dw = (float *)(buf + IQG_W_BYTES + IQG_ACT_BYTES);
    float *da = dw + IQG_PR * nb;
#ifdef KERNELS_VNNI
    __m512 *accf = (__m512 *)(buf + IQG_W_BYTES + IQG_ACT_BYTES + IQG_F_BYTES);
#endif
    // tokens per tile: as many as the activation scratch and the float scratch hold
#ifdef KERNELS_VNNI
    int64_t tile = IQG_ACT_BYTES / (2 * (size_t)n); // widened to 16 bits
#else
    int64_t tile = IQG_ACT_BYTES / (size_t)n;
#endif
    const int64_t tile_f = (int64_t)(IQG_F_BYTES / sizeof(float)) / nb - IQG_PR - 1;
    if (tile > tile_f) tile = tile_f;
    if (tile > IQG_TILE) tile = IQG_TILE;
    tile -= tile % IQG_TC;
    if (tile < IQG_TC) { // n too long for even one pass (not reached for n <= 32768)
        for (int64_t r = r0; r < r1; r++)
            for (int64_t t = 0; t < n_t; t++)
                vec_dot(n, &y[t * y_stride + r], (const char *)w + (size_t)r * w_stride,
                        (const char *)x + (size_t)t * x_stride);
        return;
    }
    for (int64_t t0 = 0; t0 < n_t; t0 += tile) {
        const int64_t nt = n_t - t0 < tile ? n_t - t0 : tile;
#ifdef KERNELS_VNNI
        iq_prep_pairs((const char *)x + (size_t)t0 * x_stride, x_stride, nt, nb, (int16_t *)act,
                      da);
#else
        for (int64_t t = 0; t < nt; t++) {
            const nuri_block_q8_K *xb =
                (const nuri_block_q8_K *)((const char *)x + (size_t)(t0 + t) * x_stride);
            for (int64_t b = 0; b < nb; b++) {
                da[t * nb + b] = xb[b].d;
                for (int j = 0; j < 8; j++)
                    _mm256_storeu_si256(
                        (__m256i *)(act + t * n + b * 256 + 32 * j),
                        iq_perm_bytes(_mm256_loadu_si256((const __m256i *)(xb[b].qs + 32 * j))));
            }
        }
#endif
#ifdef KERNELS_VNNI
        iq_gemm_panels512(unpack, block_bytes, nb, w, w_stride, r0, r1, wu, dw,
                          (const int16_t *)act, da, nt, fac, accf, y + t0 * y_stride, y_stride);
#else
        for (int64_t r = r0; r < r1; r += IQG_R) {
            const int R = r1 - r < IQG_R ? (int)(r1 - r) : IQG_R;
            for (int i = 0; i < R; i++) {
                const uint8_t *row = (const uint8_t *)w + (size_t)(r + i) * w_stride;
                for (int64_t b = 0; b < nb; b++)
                    unpack(row + (size_t)b * block_bytes, wu + i * n + b * 256, dw + i * nb + b);
            }
            iq_gemm_rows(R, nb, wu, n, dw, act, n, da, nt, fac, y + t0 * y_stride + r, y_stride);
        }
#endif
    }
}

#define IQ_GEMM(NAME, BLOCK, FAC)                                                                  \
    static void NAME##_gemm_x86(int64_t n, const void *restrict w, size_t w_stride, int64_t r0,    \
                                int64_t r1, const void *restrict x, size_t x_stride, int64_t n_t,  \
                                float *restrict y, int64_t y_stride)                               \
    {                                                                                              \
        iq_gemm_x86(NAME##_unpack, NAME##_vec_dot_x86, sizeof(BLOCK), FAC, n, w, w_stride, r0, r1, \
                    x, x_stride, n_t, y, y_stride);                                                \
    }
IQ_GEMM(iq2_xxs, nuri_block_iq2_xxs, 0.125f)
IQ_GEMM(iq2_xs, nuri_block_iq2_xs, 0.125f)
IQ_GEMM(iq2_s, nuri_block_iq2_s, 0.125f)
IQ_GEMM(iq3_xxs, nuri_block_iq3_xxs, 0.25f)
IQ_GEMM(iq3_s, nuri_block_iq3_s, 1.0f)

static void kernels_iq_x86_fill(nuri_kernel_traits *tab)
{
    tab[NURI_TYPE_IQ2_XXS].gemm = iq2_xxs_gemm_x86;
    tab[NURI_TYPE_IQ2_XS].gemm = iq2_xs_gemm_x86;
    tab[NURI_TYPE_IQ2_S].gemm = iq2_s_gemm_x86;
    tab[NURI_TYPE_IQ3_XXS].gemm = iq3_xxs_gemm_x86;
    tab[NURI_TYPE_IQ3_S].gemm = iq3_s_gemm_x86;
    tab[NURI_TYPE_IQ2_XXS].vec_dot = iq2_xxs_vec_dot_x86;
    tab[NURI_TYPE_IQ2_XS].vec_dot = iq2_xs_vec_dot_x86;
    tab[NURI_TYPE_IQ2_S].vec_dot = iq2_s_vec_dot_x86;
    tab[NURI_TYPE_IQ3_XXS].vec_dot = iq3_xxs_vec_dot_x86;
    tab[NURI_TYPE_IQ3_S].vec_dot = iq3_s_vec_dot_x86;
    tab[NURI_TYPE_IQ1_S].vec_dot = iq1_s_vec_dot_x86;
    tab[NURI_TYPE_IQ1_M].vec_dot = iq1_m_vec_dot_x86;
}

#endif
