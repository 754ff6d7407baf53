/*
 * kernels_iq_x86.h: the 256-bit dot products of the grid types IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS,
 * IQ3_S, IQ1_S and IQ1_M with Q8_K, and their prompt gemm, written once and compiled twice: by
 * kernels_iq_avx2.c and by kernels_iq_avx512.c with KERNELS_VNNI defined (the dot products are
 * the same; the gemm then takes 16-bit vpdpwssd in 512-bit registers, see "prompts" below).
 *
 * Each sub-block of 32 weights becomes one 32-byte register of grid values (table lookups), the
 * signs are moved onto the activations (vpsignb), and the unsigned-x-signed byte products
 * (vpmaddubsw) are summed into 8 int32 lanes times the lanes' integer sub-block scales (vpmaddwd)
 * and accumulated:
 * exactly the scalar kernel's integers (kernels_iq.c), lane by lane. The float steps then follow
 * llama.cpp's AVX2 kernels rather than its generic ones: each block's 8 lanes times its scale are
 * added into 8 float lanes with one FMA, and the lanes summed at the end in hsum_float_8's order,
 * so on x86 nuri rounds as the llama.cpp it is compared with does (IQ1 apart: its shift is
 * folded into the integers, below). The scalar kernel sums the same integers in another float
 * order: they agree to float rounding (tested).
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

/* 4 groups of 7 stored sign bits (the 8th from parity) at bits 0, 7, 14, 21 -> 32 bytes of -1
 * (sign set) or +1. */
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
    // the 9-bit indices as 8 words in a register (bit k of h tested by a compare), then read
    // back 4 to a 64-bit register
    const __m128i bits = _mm_setr_epi16(1, 2, 4, 8, 16, 32, 64, 128);
    const __m128i hi = _mm_and_si128(
        _mm_cmpeq_epi16(_mm_and_si128(_mm_set1_epi16((short)h), bits), bits), _mm_set1_epi16(256));
    const __m128i ix = _mm_or_si128(_mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)q3)), hi);
    const uint64_t a = (uint64_t)_mm_cvtsi128_si64(ix), b = (uint64_t)_mm_extract_epi64(ix, 1);
    return _mm256_setr_epi32((int)nuri_iq3s_grid[a & 0xffff], (int)nuri_iq3s_grid[a >> 16 & 0xffff],
                             (int)nuri_iq3s_grid[a >> 32 & 0xffff], (int)nuri_iq3s_grid[a >> 48],
                             (int)nuri_iq3s_grid[b & 0xffff], (int)nuri_iq3s_grid[b >> 16 & 0xffff],
                             (int)nuri_iq3s_grid[b >> 32 & 0xffff], (int)nuri_iq3s_grid[b >> 48]);
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

/* IQ2_S's block: its 32 grid indices (qs[4j + k] | bits 2k, 2k + 1 of qh[j] as bits 8, 9) at
 * ix[4j + k], made 16 at a time in registers (the bits moved into place by a multiplication). */
static inline void iq2_s_block_ix(const nuri_block_iq2_s *x, uint16_t *ix)
{
    const __m256i h = _mm256_broadcastsi128_si256(_mm_loadl_epi64((const __m128i *)x->qh));
    const __m256i mul =
        _mm256_setr_epi16(256, 64, 16, 4, 256, 64, 16, 4, 256, 64, 16, 4, 256, 64, 16, 4);
    for (int half = 0; half < 2; half++) {
        const char b = (char)(4 * half),
                   z = (char)0x80; // word w: qh[4 half + w / 4], zero-extended
        const __m256i idx = _mm256_setr_epi8(b, z, b, z, b, z, b, z, b + 1, z, b + 1, z, b + 1, z,
                                             b + 1, z, b + 2, z, b + 2, z, b + 2, z, b + 2, z,
                                             b + 3, z, b + 3, z, b + 3, z, b + 3, z);
        const __m256i hi = _mm256_and_si256(_mm256_mullo_epi16(_mm256_shuffle_epi8(h, idx), mul),
                                            _mm256_set1_epi16(0x300));
        const __m256i q =
            _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(x->qs + 16 * half)));
        _mm256_storeu_si256((__m256i *)(ix + 16 * half), _mm256_or_si256(q, hi));
    }
}

/* IQ2_XXS: 4 groups of 8, the 4 bytes of a0 as indices. */
static inline __m256i iq2xxs_points(uint32_t a0)
{
    return _mm256_setr_epi64x(
        (long long)nuri_iq2xxs_grid[a0 & 255], (long long)nuri_iq2xxs_grid[a0 >> 8 & 255],
        (long long)nuri_iq2xxs_grid[a0 >> 16 & 255], (long long)nuri_iq2xxs_grid[a0 >> 24]);
}

/* IQ2_XS's signs: 4 groups, the top 7 bits of 4 uint16. */
static inline __m256i iq2xs_signs(const uint16_t *q2)
{
    return _mm256_setr_epi64x(
        (long long)nuri_iq_ksign64[q2[0] >> 9], (long long)nuri_iq_ksign64[q2[1] >> 9],
        (long long)nuri_iq_ksign64[q2[2] >> 9], (long long)nuri_iq_ksign64[q2[3] >> 9]);
}

/* IQ2_XS: 4 groups, the low 9 bits of 4 uint16 as indices. */
static inline __m256i iq2xs_points(const uint16_t *q2)
{
    return _mm256_setr_epi64x(
        (long long)nuri_iq2xs_grid[q2[0] & 511], (long long)nuri_iq2xs_grid[q2[1] & 511],
        (long long)nuri_iq2xs_grid[q2[2] & 511], (long long)nuri_iq2xs_grid[q2[3] & 511]);
}

/* IQ2_XS's and IQ2_S's 8 scale bytes (sub-block j: 2 * low nibble + 1 for its bytes 0-15, 2 *
 * high nibble + 1 for 16-31) as int16: lane 0 word j the first, lane 1 word j the second;
 * iq_ls_pair(S, j) spreads sub-block j's pair over its 32 bytes' products. */
static inline __m256i iq_scales_nibbles(const uint8_t *sc)
{
    const __m128i z = _mm_loadl_epi64((const __m128i *)sc), m4 = _mm_set1_epi8(15);
    const __m256i w = _mm256_setr_m128i(_mm_cvtepu8_epi16(_mm_and_si128(z, m4)),
                                        _mm_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(z, 4), m4)));
    return _mm256_add_epi16(_mm256_slli_epi16(w, 1), _mm256_set1_epi16(1));
}

static inline __m256i iq_ls_pair(__m256i sv, int j)
{
    return _mm256_shuffle_epi8(sv, _mm256_set1_epi16((short)(2 * j | (2 * j + 1) << 8)));
}

/* Sub-block scales 2 * (a_j >> 28) + 1 (IQ2_XXS, IQ3_XXS), a_j in dword j of v, as both 16-bit
 * halves of dword j; iq_ls_dword(L, j) spreads sub-block j's over every pair of products. */
static inline __m256i iq_scales_top4(__m256i v)
{
    const __m256i l =
        _mm256_or_si256(_mm256_slli_epi32(_mm256_srli_epi32(v, 28), 1), _mm256_set1_epi32(1));
    return _mm256_or_si256(l, _mm256_slli_epi32(l, 16));
}

static inline __m256i iq_ls_dword(__m256i lv, int j)
{
    return _mm256_permutevar8x32_epi32(lv, _mm256_set1_epi32(j));
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
        // the sub-blocks' second dwords (signs, scale): sub-block j at dword {0,1,4,5,2,3,6,7}[j]
        const __m256i lo = _mm256_loadu_si256((const __m256i *)x[i].qs);
        const __m256i hi = _mm256_loadu_si256((const __m256i *)(x[i].qs + 16));
        const __m256i lv = iq_scales_top4(_mm256_castps_si256(_mm256_shuffle_ps(
            _mm256_castsi256_ps(lo), _mm256_castsi256_ps(hi), _MM_SHUFFLE(3, 1, 3, 1))));
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            uint32_t a0 = iq_rd32(x[i].qs + 4 * j), a1 = iq_rd32(x[i].qs + 4 * j + 2);
            __m256i g = iq2xxs_points(a0);
            __m256i q = _mm256_sign_epi8(iq_load(y[i].qs + 32 * j), iq_signs7x4(a1));
            acc = iq_dot_scaled(acc, g, q, iq_ls_dword(lv, (j & 1) | (j & 2) << 1 | (j & 4) >> 1));
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
        const __m256i sv = iq_scales_nibbles(x[i].scales);
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            const uint16_t *q2 = x[i].qs + 4 * j;
            __m256i g = iq2xs_points(q2);
            __m256i q = _mm256_sign_epi8(iq_load(y[i].qs + 32 * j), iq2xs_signs(q2));
            acc = iq_dot_scaled(acc, g, q, iq_ls_pair(sv, j));
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
        const __m256i sv = iq_scales_nibbles(x[i].scales);
        uint16_t ix[32];
        iq2_s_block_ix(&x[i], ix);
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            const uint16_t *k = ix + 4 * j;
            __m256i g = _mm256_setr_epi64x(
                (long long)nuri_iq2s_grid[k[0]], (long long)nuri_iq2s_grid[k[1]],
                (long long)nuri_iq2s_grid[k[2]], (long long)nuri_iq2s_grid[k[3]]);
            const uint8_t *sb = x[i].qs + NURI_QK_K / 8 + 4 * j;
            __m256i q = _mm256_sign_epi8(iq_load(y[i].qs + 32 * j), iq_signs_bits(sb));
            acc = iq_dot_scaled(acc, g, q, iq_ls_pair(sv, j));
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
        const __m256i lv = iq_scales_top4(iq_load((const int8_t *)x[i].qs + NURI_QK_K / 4));
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            const uint8_t *q3 = x[i].qs + 8 * j;
            uint32_t a = iq_rd32(x[i].qs + NURI_QK_K / 4 + 4 * j);
            __m256i g = iq3xxs_points(q3);
            __m256i q = _mm256_sign_epi8(iq_load(y[i].qs + 32 * j), iq_signs7x4(a));
            acc = iq_dot_scaled(acc, g, q, iq_ls_dword(lv, j));
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
        // the 8 scales (nibble j of the 4 bytes) as words, in both lanes
        const __m128i z = _mm_cvtsi32_si128((int)iq_rd32(x[i].scales)), m4 = _mm_set1_epi8(15);
        const __m128i ls8 =
            _mm_unpacklo_epi8(_mm_and_si128(z, m4), _mm_and_si128(_mm_srli_epi16(z, 4), m4));
        const __m256i sv = _mm256_broadcastsi128_si256(
            _mm_or_si128(_mm_slli_epi16(_mm_cvtepu8_epi16(ls8), 1), _mm_set1_epi16(1)));
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            const uint8_t *q3 = x[i].qs + 8 * j;
            const int h = x[i].qh[j];
            __m256i g = iq3s_points(q3, h);
            const uint8_t *sb = x[i].signs + 4 * j;
            __m256i q = _mm256_sign_epi8(iq_load(y[i].qs + 32 * j), iq_signs_bits(sb));
            acc = iq_dot_scaled(acc, g, q, iq_ls_pair(sv, j));
        }
        accf = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(acc), accf);
    }
    *s = iq_hsum_ps(accf);
}

/* ---- IQ1: grid values -1, 0, 1 shifted by +-1/8 (NURI_IQ1_DELTA) per group ----
 *
 * A weight is d * ls * (g +- 1/8) = d * ls * (8 g +- 1) / 8, so each weight is one integer v = 8 g
 * +- 1 (-9 .. 9, never 0; nuri_iq1s_grid8 holds 8 g) and the shift costs one byte add, not a
 * second product: |v| against q8 with v's sign, times the scale, as the other grid types. The
 * integers are exact; the float steps are one FMA per block and the factor 1/8 at the end
 * (llama.cpp keeps the shift's sum apart and adds it in floats: the two agree to float rounding).
 */

/* v = 8 g + s for 4 groups of 8 (indices k[0..3]), s: +-1 bytes. */
static inline __m256i iq1_points8(uint32_t k0, uint32_t k1, uint32_t k2, uint32_t k3, __m256i s)
{
    return _mm256_add_epi8(
        _mm256_setr_epi64x((long long)nuri_iq1s_grid8[k0], (long long)nuri_iq1s_grid8[k1],
                           (long long)nuri_iq1s_grid8[k2], (long long)nuri_iq1s_grid8[k3]),
        s);
}

/* IQ1_S's block: grid index k of sub-block j (qs[4j + k] | bits 3k .. 3k + 2 of qh[j] as bits
 * 8-10) at ix[8k + j], made 8 at a time in registers. */
static inline void iq1_s_block_ix(const nuri_block_iq1_s *x, uint32_t *ix)
{
    const __m256i q = _mm256_loadu_si256((const __m256i *)x->qs); // lane j: qs[4j .. 4j + 3]
    const __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)x->qh));
    const __m256i m8 = _mm256_set1_epi32(255), m3 = _mm256_set1_epi32(7);
    for (int k = 0; k < 4; k++)
        _mm256_storeu_si256(
            (__m256i *)(ix + 8 * k),
            _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi32(q, 8 * k), m8),
                _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(h, 3 * k), m3), 8)));
}

static void iq1_s_vec_dot_x86(int64_t n, float *restrict s, const void *restrict vx,
                              const void *restrict vy)
{
    const nuri_block_iq1_s *x = vx;
    const nuri_block_q8_K *y = vy;
    __m256 accf = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        __m256i acc = _mm256_setzero_si256();
        uint32_t ix[32];
        iq1_s_block_ix(&x[i], ix);
        // per sub-block (word j of both lanes): its scale, and its shift's sign in the low byte
        const __m256i h = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)x[i].qh));
        const __m256i ls =
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(h, 11), _mm256_set1_epi16(14)),
                            _mm256_set1_epi16(1));
        const __m256i sg = _mm256_or_si256(_mm256_srai_epi16(h, 15), _mm256_set1_epi16(1));
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            const __m256i v = iq1_points8(ix[j], ix[8 + j], ix[16 + j], ix[24 + j],
                                          _mm256_shuffle_epi8(sg, _mm256_set1_epi8((char)(2 * j))));
            acc = iq_dot_scaled(acc, _mm256_sign_epi8(v, v),
                                _mm256_sign_epi8(iq_load(y[i].qs + 32 * j), v), iq_ls_pair(ls, j));
        }
        const float d = y[i].d * nuri_f16_to_f32(x[i].d);
        accf = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(acc), accf);
    }
    *s = 0.125f * iq_hsum_ps(accf);
}

/* IQ1_M's block scale (an F16 in the top 4 bits of its 4 scale words). */
static inline uint16_t iq1_m_d16(const nuri_block_iq1_m *x)
{
    uint16_t sc[4];
    memcpy(sc, x->scales, 8);
    return (uint16_t)((sc[0] >> 12) | (sc[1] >> 8 & 0x00f0) | (sc[2] >> 4 & 0x0f00) |
                      (sc[3] & 0xf000));
}

/* IQ1_M's block: the 32 grid indices (qs | 3 bits of qh as bits 8-10) and the 32 signs of the
 * shift (bit 3 of each qh nibble, as bytes -1 / +1), made 16 at a time in registers. */
static inline void iq1_m_block_ix(const nuri_block_iq1_m *x, uint16_t *ix, int8_t *dls)
{
    const __m128i h = _mm_loadu_si128((const __m128i *)x->qh);
    const __m128i m7 = _mm_set1_epi8(7), m8 = _mm_set1_epi8(8);
    const __m128i hs = _mm_srli_epi16(h, 4);
    const __m128i lo = _mm_and_si128(h, m7), hi = _mm_and_si128(hs, m7);
    const __m128i n0 = _mm_unpacklo_epi8(lo, hi), n1 = _mm_unpackhi_epi8(lo, hi);
    const __m256i q0 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)x->qs));
    const __m256i q1 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(x->qs + 16)));
    _mm256_storeu_si256((__m256i *)ix,
                        _mm256_or_si256(q0, _mm256_slli_epi16(_mm256_cvtepu8_epi16(n0), 8)));
    _mm256_storeu_si256((__m256i *)(ix + 16),
                        _mm256_or_si256(q1, _mm256_slli_epi16(_mm256_cvtepu8_epi16(n1), 8)));
    const __m128i slo = _mm_and_si128(h, m8), shi = _mm_and_si128(hs, m8);
    const __m128i one = _mm_set1_epi8(1);
    _mm_storeu_si128((__m128i *)dls,
                     _mm_or_si128(_mm_cmpeq_epi8(_mm_unpacklo_epi8(slo, shi), m8), one));
    _mm_storeu_si128((__m128i *)(dls + 16),
                     _mm_or_si128(_mm_cmpeq_epi8(_mm_unpackhi_epi8(slo, shi), m8), one));
}

/* IQ1_M's 16 scales (2 ls + 1) as int16: lane 0 holds the first scale of sub-blocks 0, 2, 4, 6,
 * 1, 3, 5, 7 (word order), lane 1 their second; iq1_m_ls(S, j) spreads sub-block j's pair over
 * its 32 bytes' products (the first to bytes 0-15, the second to 16-31). */
static inline __m256i iq1_m_scales_vec(const nuri_block_iq1_m *x)
{
    uint64_t z;
    memcpy(&z, x->scales, 8);
    const __m256i f = _mm256_and_si256(
        _mm256_srlv_epi64(_mm256_set1_epi64x((long long)z), _mm256_setr_epi64x(0, 6, 3, 9)),
        _mm256_set1_epi16(7));
    return _mm256_add_epi16(_mm256_slli_epi16(f, 1), _mm256_set1_epi16(1));
}

static inline __m256i iq1_m_ls(__m256i sv, int j)
{
    return iq_ls_pair(sv, (j % 2) * 4 + j / 2); // the word that holds sub-block j's scales
}

/* The shift's signs of sub-block j's 4 groups, spread over its 32 bytes: dl (both lanes) holds
 * the signs of groups 16 (j / 4) .. 16 (j / 4) + 15. */
static inline __m256i iq1_m_dl(__m256i dl, int j)
{
    const int g = 4 * (j % 4);
    return _mm256_shuffle_epi8(
        dl, _mm256_setr_epi8(g, g, g, g, g, g, g, g, g + 1, g + 1, g + 1, g + 1, g + 1, g + 1,
                             g + 1, g + 1, g + 2, g + 2, g + 2, g + 2, g + 2, g + 2, g + 2, g + 2,
                             g + 3, g + 3, g + 3, g + 3, g + 3, g + 3, g + 3, g + 3));
}

static void iq1_m_vec_dot_x86(int64_t n, float *restrict s, const void *restrict vx,
                              const void *restrict vy)
{
    const nuri_block_iq1_m *x = vx;
    const nuri_block_q8_K *y = vy;
    __m256 accf = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        uint16_t ix[32];
        int8_t dls[32];
        iq1_m_block_ix(&x[i], ix, dls);
        const __m256i sv = iq1_m_scales_vec(&x[i]);
        const __m256i dl0 = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)dls));
        const __m256i dl1 =
            _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(dls + 16)));
        __m256i acc = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            const uint16_t *k = ix + 4 * j;
            const __m256i v = iq1_points8(k[0], k[1], k[2], k[3], iq1_m_dl(j < 4 ? dl0 : dl1, j));
            acc = iq_dot_scaled(acc, _mm256_sign_epi8(v, v),
                                _mm256_sign_epi8(iq_load(y[i].qs + 32 * j), v), iq1_m_ls(sv, j));
        }
        const float d = y[i].d * nuri_f16_to_f32(iq1_m_d16(&x[i]));
        accf = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(acc), accf);
    }
    *s = 0.125f * iq_hsum_ps(accf);
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

/* A vector holds IQG_NT tokens' 8 lanes for one row: AVX-512, two tokens in a 512-bit register
 * (lanes 0-7 the first, 8-15 the second; each vpdpwssd does 32 products); AVX2, one token in a
 * 256-bit register (vpmaddwd + vpaddd). The loads, not the products, bound the loop: IQG_R rows
 * share each activation load and IQG_TG groups of tokens each weight load, and the blocks go
 * in chunks of IQG_KB so that a chunk of a panel's rows stays in L2 while every token of the
 * tile passes, IQG_TG groups at a time over all of the chunk's rows while they are in L1
 * (iq_chunk_panel). */
#if defined(KERNELS_VNNI) && !defined(IQG_BYTES)
#define IQG_ZMM 1 // 16-bit products in 512-bit registers
#else
#define IQG_ZMM                                                                                    \
    0 // 8-bit products (vpmaddubsw, vpmaddwd) in 256-bit registers (AVX2; with
      // -DIQG_BYTES on AVX-512 too, for measuring: 10-25% slower there)
#endif
#if IQG_ZMM
#define IQG_NT 2 // tokens per vector
#ifndef IQG_R
#define IQG_R 4 // rows per pass
#endif
#ifndef IQG_TG
#define IQG_TG 4 // token groups per pass
#endif
typedef __m512i iqv_i;
typedef __m512 iqv_f;
#define iqv_zero_i() _mm512_setzero_si512()
#define iqv_zero_f() _mm512_setzero_ps()
#define iqv_dp(acc, a, b) _mm512_dpwssd_epi32(acc, a, b)
#define iqv_load_w(p) _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(p)))
#define iqv_load_x(p) _mm512_loadu_si512(p)
#define IQG_UNROLL_J _Pragma("GCC unroll 8")
#define IQG_BS 256        // int16 per unpacked block
#define IQG_XB 128        // activation bytes per sub-block and group (2 tokens x 32 int16)
#define iqv_da(da, nb, b) /* the group's tokens' block scales, lane by lane */                     \
    _mm512_insertf32x8(_mm512_set1_ps((da)[b]), _mm256_set1_ps((da)[(nb) + (b)]), 1)
#define iqv_fma(a, b, c) _mm512_fmadd_ps(a, b, c)
#define iqv_mul(a, b) _mm512_mul_ps(a, b)
#define iqv_set1(x) _mm512_set1_ps(x)
#define iqv_cvt(x) _mm512_cvtepi32_ps(x)
static inline __m256 iqv_half(__m512 f, int k)
{
    return k ? _mm512_extractf32x8_ps(f, 1) : _mm512_castps512_ps256(f);
}
#else
#define IQG_NT 1
#ifndef IQG_R
#define IQG_R 2 // 2 rows x 4 tokens: the fastest of 1-6 x 1-6 tried on Zen 5 (16 registers)
#endif
#ifndef IQG_TG
#define IQG_TG 4
#endif
typedef __m256i iqv_i;
typedef __m256 iqv_f;
#define iqv_zero_i() _mm256_setzero_si256()
#define iqv_zero_f() _mm256_setzero_ps()
#define iqv_dp(acc, a, b) _mm256_add_epi32(acc, _mm256_madd_epi16(a, b))
#define iqv_load_w(p) _mm256_loadu_si256((const __m256i *)(p))
#define iqv_load_x(p) _mm256_loadu_si256((const __m256i *)(p))
// not unrolled: unrolled, the compiler hoisted loads and spilled the sums (16 registers)
#define IQG_UNROLL_J _Pragma("GCC unroll 1")
#define IQG_BS 272 // int16 per unpacked block: 8 x (32 bytes, 16 scales), 8 int32 start sums
#define IQG_XB 32  // activation bytes per sub-block and group (32 unsigned bytes)
#define iqv_da(da, nb, b) _mm256_set1_ps((da)[b])
#define iqv_fma(a, b, c) _mm256_fmadd_ps(a, b, c)
#define iqv_mul(a, b) _mm256_mul_ps(a, b)
#define iqv_set1(x) _mm256_set1_ps(x)
#define iqv_cvt(x) _mm256_cvtepi32_ps(x)
static inline __m256 iqv_half(__m256 f, int k)
{
    (void)k;
    return f;
}
#endif
#ifndef IQG_KB
#define IQG_KB 8 // blocks per chunk
#endif
#define IQG_PR 32                                  // rows per panel
#define IQG_TILE 256                               // tokens per tile at most
#define IQG_W_BYTES (IQG_PR * IQG_KB * IQG_BS * 2) // a panel's chunk of unpacked rows
#define IQG_ACT_BYTES (4u << 20)               // a tile of reordered activations widened to 16 bits
#define IQG_F_BYTES (256 * 1024)               // their block scales and the rows' (floats)
#define IQG_ACC_BYTES (IQG_TILE * IQG_PR * 32) // a panel's float accumulators
#define IQG_MIN_TOKENS 2                       // fewer: vec_dot row by row

/* 32 bytes reordered: bytes 4l, 4l + 1 (l = 0 .. 7), then bytes 4l + 2, 4l + 3. */
static inline __m256i iq_perm_bytes(__m256i v)
{
    const __m256i ctl = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15, 0, 1,
                                         4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15);
    return _mm256_permute4x64_epi64(_mm256_shuffle_epi8(v, ctl), 0xD8);
}

/* A sub-block's 32 signed grid values (bytes, natural order) times its scales (a for bytes 0 -
 * 15, b for 16 - 31), stored as 32 reordered int16. */
#if IQG_ZMM
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

static inline void iq_store_end(int16_t *w)
{
    (void)w;
}
#else
/* AVX2 has no 16-bit dot product that adds (vpdpwssd), so the products stay 8-bit: a
 * sub-block is its 32 signed grid values as bytes, then its scales as 16 int16 (a for the
 * products of bytes 0-15, b for 16-31: vpmaddubsw's pairs times vpmaddwd's scales give lane l
 * bytes 4l .. 4l + 3 times the scale, vec_dot's lanes in their natural order). The activations
 * are made unsigned (+128, vpmaddubsw's first operand; pairs <= 2 * 255 * 62, no saturation);
 * iq_store_end puts the block's -128 * sum of w * scale per lane after its 8 sub-blocks, where
 * each block's integer sums start. */
static inline void iq_store_w(int16_t *w, __m256i g, int a, int b)
{
    _mm256_storeu_si256((__m256i *)w, g);
    _mm256_storeu_si256((__m256i *)(w + 16), iq_scales16(a, b));
}

static inline void iq_store_end(int16_t *w)
{
    __m256i c = _mm256_setzero_si256();
    for (int j = 0; j < 8; j++) {
        const __m256i g = _mm256_loadu_si256((const __m256i *)(w + 32 * j));
        const __m256i sc = _mm256_loadu_si256((const __m256i *)(w + 32 * j + 16));
        c = _mm256_add_epi32(
            c, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(-128), g), sc));
    }
    _mm256_storeu_si256((__m256i *)(w + 256), _mm256_sub_epi32(_mm256_setzero_si256(), c));
}
#endif

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
    iq_store_end(w);
}

static void iq2_xs_unpack(const void *vx, int16_t *w, float *dw)
{
    const nuri_block_iq2_xs *x = vx;
    *dw = nuri_f16_to_f32(x->d);
    for (int j = 0; j < 8; j++) {
        const uint16_t *q2 = x->qs + 4 * j;
        __m256i g = iq2xs_points(q2);
        const int sc = x->scales[j];
        iq_store_w(w + 32 * j, _mm256_sign_epi8(g, iq2xs_signs(q2)), 2 * (sc & 15) + 1,
                   2 * (sc >> 4) + 1);
    }
    iq_store_end(w);
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
    iq_store_end(w);
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
    iq_store_end(w);
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
    iq_store_end(w);
}

/* IQ1_S and IQ1_M: v = 8 g +- 1 (see the vec_dots), times the scales; the gemm's factor 1/8. */
static void iq1_s_unpack(const void *vx, int16_t *w, float *dw)
{
    const nuri_block_iq1_s *x = vx;
    *dw = nuri_f16_to_f32(x->d);
    for (int j = 0; j < 8; j++) {
        const uint8_t *qs = x->qs + 4 * j;
        const int h = x->qh[j];
        const __m256i v =
            iq1_points8(qs[0] | (h & 7) << 8, qs[1] | (h >> 3 & 7) << 8, qs[2] | (h >> 6 & 7) << 8,
                        qs[3] | (h >> 9 & 7) << 8, _mm256_set1_epi8(h & 0x8000 ? -1 : 1));
        const int ls = 2 * (h >> 12 & 7) + 1;
        iq_store_w(w + 32 * j, v, ls, ls);
    }
    iq_store_end(w);
}

static void iq1_m_unpack(const void *vx, int16_t *w, float *dw)
{
    const nuri_block_iq1_m *x = vx;
    *dw = nuri_f16_to_f32(iq1_m_d16(x));
    uint16_t sc[4];
    memcpy(sc, x->scales, 8);
    for (int j = 0; j < 8; j++) {
        const uint8_t *qs = x->qs + 4 * j, *qh = x->qh + 2 * j;
        const __m256i dl = _mm256_setr_epi64x(
            qh[0] & 0x08 ? -1ll : 0x0101010101010101ll, qh[0] & 0x80 ? -1ll : 0x0101010101010101ll,
            qh[1] & 0x08 ? -1ll : 0x0101010101010101ll, qh[1] & 0x80 ? -1ll : 0x0101010101010101ll);
        const __m256i v = iq1_points8(qs[0] | (qh[0] & 7) << 8, qs[1] | (qh[0] >> 4 & 7) << 8,
                                      qs[2] | (qh[1] & 7) << 8, qs[3] | (qh[1] >> 4 & 7) << 8, dl);
        iq_store_w(w + 32 * j, v, 2 * (sc[j / 2] >> (6 * (j % 2)) & 7) + 1,
                   2 * (sc[j / 2] >> (6 * (j % 2) + 3) & 7) + 1);
    }
    iq_store_end(w);
}

typedef void (*iq_unpack_fn)(const void *x, int16_t *w, float *dw);

/* Blocks [b0, b1) of R rows (w: their unpacked blocks from b0, w_stride apart) against TG groups
 * of tokens (act: the first group's, gs apart; da: the first group's first token's scales), into
 * accf[g * IQG_R + r]. */
static inline __attribute__((always_inline)) void iq_chunk(const int R, const int TG, int64_t b0,
                                                           int64_t b1, int64_t nb, const int16_t *w,
                                                           int64_t w_stride, const float *dw,
                                                           const uint8_t *act, int64_t gs,
                                                           const float *da, iqv_f *accf)
{
    for (int64_t b = b0; b < b1; b++) {
        iqv_i acc[IQG_R][IQG_TG];
#pragma GCC unroll 16
        for (int r = 0; r < R; r++)
#pragma GCC unroll 16
            for (int g = 0; g < TG; g++)
#if IQG_ZMM
                acc[r][g] = iqv_zero_i();
#else
                acc[r][g] = _mm256_loadu_si256(
                    (const __m256i *)(w + r * w_stride + (b - b0) * IQG_BS + 256));
#endif
        IQG_UNROLL_J
        for (int j = 0; j < 8; j++) {
            iqv_i w0[IQG_R], w1[IQG_R];
#pragma GCC unroll 16
            for (int r = 0; r < R; r++) {
                const int16_t *wr = w + r * w_stride + (b - b0) * IQG_BS + 32 * j;
                w0[r] = iqv_load_w(wr);      // AVX2: the 32 signed bytes
                w1[r] = iqv_load_w(wr + 16); // AVX2: their scales
            }
#pragma GCC unroll 16
            for (int g = 0; g < TG; g++) {
                const uint8_t *a = act + g * gs + (b * 8 + j) * IQG_XB;
#if IQG_ZMM
                const iqv_i x0 = iqv_load_x(a), x1 = iqv_load_x(a + IQG_XB / 2);
#pragma GCC unroll 16
                for (int r = 0; r < R; r++)
                    acc[r][g] = iqv_dp(iqv_dp(acc[r][g], w0[r], x0), w1[r], x1);
#else
                const iqv_i x = iqv_load_x(a);
#pragma GCC unroll 16
                for (int r = 0; r < R; r++)
                    acc[r][g] = _mm256_add_epi32(
                        acc[r][g], _mm256_madd_epi16(_mm256_maddubs_epi16(x, w0[r]), w1[r]));
#endif
            }
        }
#pragma GCC unroll 16
        for (int g = 0; g < TG; g++) {
            const iqv_f dag = iqv_da(da + g * IQG_NT * nb, nb, b);
#pragma GCC unroll 16
            for (int r = 0; r < R; r++) // d = dw * da per lane, as vec_dot rounds it
                accf[g * IQG_R + r] = iqv_fma(iqv_mul(iqv_set1(dw[r * nb + b]), dag),
                                              iqv_cvt(acc[r][g]), accf[g * IQG_R + r]);
        }
        // the float sums stay in memory (once per block): held in registers across the loop
        // they left too few for the integer sums, which the compiler then spilled to the stack
        __asm__ volatile("" ::: "memory");
    }
}

/* The tile's nt tokens, reordered (iq_perm_bytes) and widened to 16 bits, in groups of IQG_NT:
 * per sub-block, the first 16 values of each token of the group, then the last 16 of each (a
 * short last group repeats its last token; those outputs are not written). da: each token's
 * block scales. */
static void iq_prep(const void *x, size_t x_stride, int64_t nt, int64_t nb, uint8_t *act, float *da)
{
    const int64_t ng = (nt + IQG_NT - 1) / IQG_NT;
    for (int64_t t = 0; t < ng * IQG_NT; t++) {
        const int64_t ts = t < nt ? t : nt - 1;
        const nuri_block_q8_K *xb =
            (const nuri_block_q8_K *)((const char *)x + (size_t)ts * x_stride);
        uint8_t *a = act + (t / IQG_NT) * nb * 8 * IQG_XB;
        for (int64_t b = 0; b < nb; b++) {
            da[t * nb + b] = xb[b].d;
            for (int j = 0; j < 8; j++) {
                const __m256i q = _mm256_loadu_si256((const __m256i *)(xb[b].qs + 32 * j));
                uint8_t *d = a + (b * 8 + j) * IQG_XB;
#if IQG_ZMM
                const __m256i v = iq_perm_bytes(q);
                int16_t *d16 = (int16_t *)d + (t % IQG_NT) * 16;
                _mm256_storeu_si256((__m256i *)d16,
                                    _mm256_cvtepi8_epi16(_mm256_castsi256_si128(v)));
                _mm256_storeu_si256((__m256i *)(d16 + 16 * IQG_NT),
                                    _mm256_cvtepi8_epi16(_mm256_extracti128_si256(v, 1)));
#else
                _mm256_storeu_si256((__m256i *)d, _mm256_xor_si256(q, _mm256_set1_epi8(-128)));
#endif
            }
        }
    }
}

/* Blocks [b0, b1) of a panel's pr rows (unpacked in w, row i at w + i * w_stride) against the
 * tile's ng groups, into accf[(k * ng + g) * IQG_R + r] for row k * IQG_R + r. IQG_TG groups'
 * activations pass over every row of the panel while they are in L1 (the rows, read in order,
 * stream from L2). */
static void iq_chunk_panel(int pr, int64_t b0, int64_t b1, int64_t nb, const int16_t *w,
                           int64_t w_stride, const float *dw, const uint8_t *act, const float *da,
                           int64_t ng, iqv_f *accf)
{
    const int64_t gs = nb * 8 * IQG_XB;
    const int nrg = (pr + IQG_R - 1) / IQG_R;
    for (int64_t g = 0; g < ng;) {
        const int tg = ng - g >= IQG_TG ? IQG_TG : 1;
        for (int k = 0; k < nrg; k++) {
            const int R = pr - k * IQG_R < IQG_R ? pr - k * IQG_R : IQG_R;
            const int16_t *wk = w + k * IQG_R * w_stride;
            const float *dwk = dw + k * IQG_R * nb;
            iqv_f *acck = accf + (k * ng + g) * IQG_R;
            if (R == IQG_R && tg == IQG_TG) {
                iq_chunk(IQG_R, IQG_TG, b0, b1, nb, wk, w_stride, dwk, act + g * gs, gs,
                         da + g * IQG_NT * nb, acck);
                continue;
            }
            for (int u = 0; u < tg; u++) // a short row group, or the groups left over
                for (int r = 0; r < R; r++)
                    iq_chunk(1, 1, b0, b1, nb, wk + r * w_stride, w_stride, dwk + r * nb,
                             act + (g + u) * gs, gs, da + (g + u) * IQG_NT * nb,
                             acck + u * IQG_R + r);
        }
        g += tg;
    }
}

/* A type's gemm: its unpacker and vec_dot's final factor. */
typedef struct iq_gemm_type {
    iq_unpack_fn unpack;
    nuri_vec_dot_fn vec_dot;
    size_t block_bytes;
    float fac;
} iq_gemm_type;

/* Rows [r0, r1) against the tile's n_t tokens (prepared by iq_prep), in panels of IQG_PR rows:
 * each panel's rows are unpacked one chunk of IQG_KB blocks at a time, exactly once per tile,
 * and every token of the tile passes over the chunk while it is in cache. */
static void iq_gemm_panels(const iq_gemm_type *ty, int64_t nb, const void *w, size_t w_stride,
                           int64_t r0, int64_t r1, int16_t *wu, float *dw, const uint8_t *act,
                           const float *da, int64_t n_t, iqv_f *accf, float *y, int64_t y_stride)
{
    const int64_t ng = (n_t + IQG_NT - 1) / IQG_NT, ws = IQG_KB * IQG_BS;
    for (int64_t r = r0; r < r1; r += IQG_PR) {
        const int pr = r1 - r < IQG_PR ? (int)(r1 - r) : IQG_PR;
        const int nrg = (pr + IQG_R - 1) / IQG_R;
        for (int64_t i = 0; i < nrg * ng * IQG_R; i++) accf[i] = iqv_zero_f();
        for (int64_t b0 = 0; b0 < nb; b0 += IQG_KB) {
            const int64_t b1 = nb - b0 < IQG_KB ? nb : b0 + IQG_KB;
            for (int i = 0; i < pr; i++) {
                const uint8_t *row = (const uint8_t *)w + (size_t)(r + i) * w_stride;
                for (int64_t b = b0; b < b1; b++)
                    ty->unpack(row + (size_t)b * ty->block_bytes, wu + i * ws + (b - b0) * IQG_BS,
                               dw + i * nb + b);
            }
            iq_chunk_panel(pr, b0, b1, nb, wu, ws, dw, act, da, ng, accf);
        }
        for (int64_t t = 0; t < n_t; t++) // row by row of y: a token's outputs are contiguous
            for (int i = 0; i < pr; i++) {
                const int64_t at = (i / IQG_R) * ng * IQG_R + (t / IQG_NT) * IQG_R + i % IQG_R;
                y[t * y_stride + r + i] =
                    ty->fac * iq_hsum_ps(iqv_half(accf[at], (int)(t % IQG_NT)));
            }
    }
}

/* nuri_gemm_fn for the grid types: vec_dot row by row for fewer than IQG_MIN_TOKENS tokens (or
 * rows too long for the scratch), else tiles of tokens against panels of unpacked rows. */
static void iq_gemm_x86(const iq_gemm_type *ty, int64_t n, const void *w, size_t w_stride,
                        int64_t r0, int64_t r1, const void *x, size_t x_stride, int64_t n_t,
                        float *y, int64_t y_stride)
{
    const int64_t nb = n / NURI_QK_K;
    // tokens per tile: as many as the activation and float scratch hold (IQG_NT at least)
    int64_t tile = IQG_ACT_BYTES / ((size_t)n / 32 * IQG_XB / IQG_NT);
    const int64_t tile_f = (int64_t)(IQG_F_BYTES / sizeof(float)) / nb - IQG_PR - IQG_NT;
    if (tile > tile_f) tile = tile_f;
    if (tile > IQG_TILE) tile = IQG_TILE;
    tile -= tile % IQG_NT;
    uint8_t *buf = NULL;
    if (n_t >= IQG_MIN_TOKENS && tile >= IQG_NT)
        buf = kernels_thread_scratch(KERNELS_SCRATCH_IQ,
                                     IQG_W_BYTES + IQG_ACT_BYTES + IQG_F_BYTES + IQG_ACC_BYTES);
    if (!buf) {
        for (int64_t r = r0; r < r1; r++)
            for (int64_t t = 0; t < n_t; t++)
                ty->vec_dot(n, &y[t * y_stride + r], (const char *)w + (size_t)r * w_stride,
                            (const char *)x + (size_t)t * x_stride);
        return;
    }
    int16_t *wu = (int16_t *)buf;
    uint8_t *act = buf + IQG_W_BYTES;
    float *dw = (float *)(act + IQG_ACT_BYTES), *da = dw + IQG_PR * nb;
    iqv_f *accf = (iqv_f *)((uint8_t *)dw + IQG_F_BYTES);
    for (int64_t t0 = 0; t0 < n_t; t0 += tile) {
        const int64_t nt = n_t - t0 < tile ? n_t - t0 : tile;
        iq_prep((const char *)x + (size_t)t0 * x_stride, x_stride, nt, nb, act, da);
        iq_gemm_panels(ty, nb, w, w_stride, r0, r1, wu, dw, act, da, nt, accf, y + t0 * y_stride,
                       y_stride);
    }
}

#define IQ_GEMM(NAME, BLOCK, FAC)                                                                  \
    static void NAME##_gemm_x86(int64_t n, const void *restrict w, size_t w_stride, int64_t r0,    \
                                int64_t r1, const void *restrict x, size_t x_stride, int64_t n_t,  \
                                float *restrict y, int64_t y_stride)                               \
    {                                                                                              \
        static const iq_gemm_type ty = {NAME##_unpack, NAME##_vec_dot_x86, sizeof(BLOCK), FAC};    \
        iq_gemm_x86(&ty, n, w, w_stride, r0, r1, x, x_stride, n_t, y, y_stride);                   \
    }
IQ_GEMM(iq2_xxs, nuri_block_iq2_xxs, 0.125f)
IQ_GEMM(iq2_xs, nuri_block_iq2_xs, 0.125f)
IQ_GEMM(iq2_s, nuri_block_iq2_s, 0.125f)
IQ_GEMM(iq3_xxs, nuri_block_iq3_xxs, 0.25f)
IQ_GEMM(iq3_s, nuri_block_iq3_s, 1.0f)
IQ_GEMM(iq1_s, nuri_block_iq1_s, 0.125f)
IQ_GEMM(iq1_m, nuri_block_iq1_m, 0.125f)

static void kernels_iq_x86_fill(nuri_kernel_traits *tab)
{
    tab[NURI_TYPE_IQ2_XXS].gemm = iq2_xxs_gemm_x86;
    tab[NURI_TYPE_IQ2_XS].gemm = iq2_xs_gemm_x86;
    tab[NURI_TYPE_IQ2_S].gemm = iq2_s_gemm_x86;
    tab[NURI_TYPE_IQ3_XXS].gemm = iq3_xxs_gemm_x86;
    tab[NURI_TYPE_IQ3_S].gemm = iq3_s_gemm_x86;
    tab[NURI_TYPE_IQ1_S].gemm = iq1_s_gemm_x86;
    tab[NURI_TYPE_IQ1_M].gemm = iq1_m_gemm_x86;
    tab[NURI_TYPE_IQ2_XXS].vec_dot = iq2_xxs_vec_dot_x86;
    tab[NURI_TYPE_IQ2_XS].vec_dot = iq2_xs_vec_dot_x86;
    tab[NURI_TYPE_IQ2_S].vec_dot = iq2_s_vec_dot_x86;
    tab[NURI_TYPE_IQ3_XXS].vec_dot = iq3_xxs_vec_dot_x86;
    tab[NURI_TYPE_IQ3_S].vec_dot = iq3_s_vec_dot_x86;
    tab[NURI_TYPE_IQ1_S].vec_dot = iq1_s_vec_dot_x86;
    tab[NURI_TYPE_IQ1_M].vec_dot = iq1_m_vec_dot_x86;
}

#endif
