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
    return iq_signs(nuri_iq_ksigns[a & 127], nuri_iq_ksigns[a >> 7 & 127],
                    nuri_iq_ksigns[a >> 14 & 127], nuri_iq_ksigns[a >> 21 & 127]);
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
            __m256i g = _mm256_setr_epi64x(
                (long long)nuri_iq2xxs_grid[a0 & 255], (long long)nuri_iq2xxs_grid[a0 >> 8 & 255],
                (long long)nuri_iq2xxs_grid[a0 >> 16 & 255], (long long)nuri_iq2xxs_grid[a0 >> 24]);
            __m256i q = _mm256_sign_epi8(iq_load(y[i].qs + 32 * j), iq_signs7x4(a1));
            __m256i p = iq_dot_acc(_mm256_setzero_si256(), g, q);
            acc = _mm256_add_epi32(
                acc, _mm256_mullo_epi32(p, _mm256_set1_epi32((int)(2 * (a1 >> 28) + 1))));
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
            __m256i g = _mm256_setr_epi64x(
                (long long)nuri_iq2xs_grid[q2[0] & 511], (long long)nuri_iq2xs_grid[q2[1] & 511],
                (long long)nuri_iq2xs_grid[q2[2] & 511], (long long)nuri_iq2xs_grid[q2[3] & 511]);
            __m256i sg = iq_signs(nuri_iq_ksigns[q2[0] >> 9], nuri_iq_ksigns[q2[1] >> 9],
                                  nuri_iq_ksigns[q2[2] >> 9], nuri_iq_ksigns[q2[3] >> 9]);
            __m256i q = _mm256_sign_epi8(iq_load(y[i].qs + 32 * j), sg);
            __m256i p = iq_dot_acc(_mm256_setzero_si256(), g, q);
            const int sc = x[i].scales[j];
            acc = _mm256_add_epi32(
                acc, _mm256_mullo_epi32(p, iq_scales2(2 * (sc & 15) + 1, 2 * (sc >> 4) + 1)));
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
            __m256i g = _mm256_setr_epi64x((long long)nuri_iq2s_grid[qs[0] | (h & 3) << 8],
                                           (long long)nuri_iq2s_grid[qs[1] | (h >> 2 & 3) << 8],
                                           (long long)nuri_iq2s_grid[qs[2] | (h >> 4 & 3) << 8],
                                           (long long)nuri_iq2s_grid[qs[3] | (h >> 6 & 3) << 8]);
            const uint8_t *sb = x[i].qs + NURI_QK_K / 8 + 4 * j;
            __m256i q =
                _mm256_sign_epi8(iq_load(y[i].qs + 32 * j), iq_signs(sb[0], sb[1], sb[2], sb[3]));
            __m256i p = iq_dot_acc(_mm256_setzero_si256(), g, q);
            const int sc = x[i].scales[j];
            acc = _mm256_add_epi32(
                acc, _mm256_mullo_epi32(p, iq_scales2(2 * (sc & 15) + 1, 2 * (sc >> 4) + 1)));
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
            __m256i g =
                _mm256_setr_epi32((int)nuri_iq3xxs_grid[q3[0]], (int)nuri_iq3xxs_grid[q3[1]],
                                  (int)nuri_iq3xxs_grid[q3[2]], (int)nuri_iq3xxs_grid[q3[3]],
                                  (int)nuri_iq3xxs_grid[q3[4]], (int)nuri_iq3xxs_grid[q3[5]],
                                  (int)nuri_iq3xxs_grid[q3[6]], (int)nuri_iq3xxs_grid[q3[7]]);
            __m256i q = _mm256_sign_epi8(iq_load(y[i].qs + 32 * j), iq_signs7x4(a));
            __m256i p = iq_dot_acc(_mm256_setzero_si256(), g, q);
            acc = _mm256_add_epi32(
                acc, _mm256_mullo_epi32(p, _mm256_set1_epi32((int)(2 * (a >> 28) + 1))));
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
            __m256i g = _mm256_setr_epi32((int)nuri_iq3s_grid[q3[0] | (h << 8 & 256)],
                                          (int)nuri_iq3s_grid[q3[1] | (h << 7 & 256)],
                                          (int)nuri_iq3s_grid[q3[2] | (h << 6 & 256)],
                                          (int)nuri_iq3s_grid[q3[3] | (h << 5 & 256)],
                                          (int)nuri_iq3s_grid[q3[4] | (h << 4 & 256)],
                                          (int)nuri_iq3s_grid[q3[5] | (h << 3 & 256)],
                                          (int)nuri_iq3s_grid[q3[6] | (h << 2 & 256)],
                                          (int)nuri_iq3s_grid[q3[7] | (h << 1 & 256)]);
            const uint8_t *sb = x[i].signs + 4 * j;
            __m256i q =
                _mm256_sign_epi8(iq_load(y[i].qs + 32 * j), iq_signs(sb[0], sb[1], sb[2], sb[3]));
            __m256i p = iq_dot_acc(_mm256_setzero_si256(), g, q);
            const int ls = x[i].scales[j / 2] >> (4 * (j % 2)) & 15;
            acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(p, _mm256_set1_epi32(2 * ls + 1)));
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

static void kernels_iq_x86_fill(nuri_kernel_traits *tab)
{
    tab[NURI_TYPE_IQ2_XXS].vec_dot = iq2_xxs_vec_dot_x86;
    tab[NURI_TYPE_IQ2_XS].vec_dot = iq2_xs_vec_dot_x86;
    tab[NURI_TYPE_IQ2_S].vec_dot = iq2_s_vec_dot_x86;
    tab[NURI_TYPE_IQ3_XXS].vec_dot = iq3_xxs_vec_dot_x86;
    tab[NURI_TYPE_IQ3_S].vec_dot = iq3_s_vec_dot_x86;
    tab[NURI_TYPE_IQ1_S].vec_dot = iq1_s_vec_dot_x86;
    tab[NURI_TYPE_IQ1_M].vec_dot = iq1_m_vec_dot_x86;
}

#endif
