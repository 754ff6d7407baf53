/*
 * gemm_avx512.c: register-tiled matrix products (the `gemm` of nuri_kernel_traits) for Q4_0 and
 * Q8_0 weights with AVX-512 VNNI: up to 4 weight rows x 4 tokens per pass, so each weight byte,
 * once decoded, feeds up to 4 tokens, and each activation load feeds up to 4 rows.
 *
 * Activations (Q8_0 rows) are first rearranged, per tile of up to GEMM_TT tokens, into a "panel" in
 * a per-thread buffer: for each group of weight blocks that fills one 512-bit register, the
 * activation quants in the matching lane order, the per-block correction for the weights' unsigned
 * codes (-8 * sum(q) for Q4_0, -128 * sum(q) for Q8_0, which makes vpdpbusd's unsigned x signed
 * product exact), and the per-block activation scale spread over the lanes. The weight blocks are
 * read in place (18 / 34 bytes, unaligned): two overlapping 64-byte loads and one vpermt2w gather a
 * group's quants, one vpermw its F16 scales.
 *
 * Batch invariance: every output y[t, r] gets the same instruction sequence whatever tile it is
 * computed in (the tile shapes 1..4 x 1..4 are one inlined function; the panel layout depends only
 * on n), so results never depend on r0, r1, n_t or the neighbours.
 */
#include "kernels/kernels_impl.h"
#include "kernels/fp16.h"

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

enum {
    GEMM_TT = 16,            // tokens per panel
    GEMM_PANEL = 256 * 1024, // bytes of the per-thread panel buffer
    GEMM_PF = 4,             // software prefetch distance, in rows
    GEMM_R1 = 4,             // rows per pass when there is one token (1 measured about the same)
};

/* The per-thread panel buffer (kernels_thread_scratch), or NULL. */
static uint8_t *panel_get(void)
{
    return kernels_thread_scratch(KERNELS_SCRATCH_GEMM, GEMM_PANEL);
}

static inline float hsum512(__m512 v)
{
    __m256 s = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

/* F16 -> F32 with F16C (the scalar nuri_f16_to_f32 is a portable bit-by-bit conversion). */
static inline float f16c(uint16_t h)
{
    return _cvtsh_ss(h);
}

static inline __m512i idx16(const int16_t *t)
{
    return _mm512_loadu_si512(t);
}

/* ======================================================================================== */
/* Q4_0: a group is 4 blocks (128 elements, 72 bytes = 36 words); 128-bit lane b = block b.   */
/* Panel per group: ylo[64] (lane b = y[b].qs[0..15]), yhi[64] (y[b].qs[16..31]),             */
/* corr[16 x i32] (lane 4b = -8 * sum(y[b].qs)), dy[16 x f32] (lanes 4b..4b+3 = y[b].d).       */
/* ======================================================================================== */

enum { Q4_0_GROUP = 256 };

static void q4_0_panel(const nuri_block_q8_0 *x, int64_t nb, uint8_t *p)
{
    const int64_t ng = (nb + 3) / 4;
    memset(p, 0, (size_t)ng * Q4_0_GROUP);
    for (int64_t i = 0; i < nb; i++) {
        uint8_t *g = p + (i / 4) * Q4_0_GROUP;
        const int b = (int)(i % 4);
        memcpy(g + 16 * b, x[i].qs, 16);
        memcpy(g + 64 + 16 * b, x[i].qs + 16, 16);
        int32_t sum = 0;
        for (int j = 0; j < NURI_QK; j++) sum += x[i].qs[j];
        int32_t corr = -8 * sum;
        memcpy(g + 128 + 16 * b, &corr, 4);
        float d = f16c(x[i].d);
        for (int k = 0; k < 4; k++) memcpy(g + 192 + 16 * b + 4 * k, &d, 4);
    }
}

typedef struct q4_0_consts {
    __m512i idxq, idxd, m4;
} q4_0_consts;

static inline q4_0_consts q4_0_consts_make(void)
{
    int16_t q[32], d[32];
    for (int k = 0; k < 32; k++) {
        int src = 9 * (k / 8) + 1 + k % 8; // word of the 4-block group
        q[k] = (int16_t)(src < 32 ? src : 32 + src - 4);
        d[k] = (int16_t)(k < 16 ? 9 * (k / 4) : 0);
    }
    q4_0_consts c = {idx16(q), idx16(d), _mm512_set1_epi8(15)};
    return c;
}

/* R rows x T tokens over all groups. w: first row; p: panel of the first token. */
static inline __attribute__((always_inline)) void
q4_0_tile(const int R, const int T, const q4_0_consts *c, int64_t nb, const uint8_t *w,
          size_t w_stride, const uint8_t *p, size_t p_stride, float *y, int64_t y_stride)
{
    __m512 acc[4][8];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_ps();
    const int64_t ng = (nb + 3) / 4;
    for (int64_t g = 0; g < ng; g++) {
        int64_t nbl = nb - 4 * g;
        __mmask32 ma = ~0u, mb = ~0u;
        if (nbl < 4) {
            ma = (1u << (9 * nbl)) - 1;
            mb = (1u << (9 * nbl - 4)) - 1;
        }
        __m512i lo[4], hi[4];
        __m512 dx[4];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const uint8_t *wp = w + (size_t)r * w_stride + (size_t)g * 72;
            _mm_prefetch((const char *)wp + GEMM_PF * w_stride, _MM_HINT_T0);
            __m512i a = _mm512_maskz_loadu_epi16(ma, wp);
            __m512i b = _mm512_maskz_loadu_epi16(mb, wp + 8);
            __m512i q = _mm512_permutex2var_epi16(a, c->idxq, b);
            lo[r] = _mm512_and_si512(q, c->m4);
            hi[r] = _mm512_and_si512(_mm512_srli_epi16(q, 4), c->m4);
            dx[r] = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(c->idxd, a)));
        }
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) {
            const uint8_t *pg = p + (size_t)t * p_stride + (size_t)g * Q4_0_GROUP;
            const __m512i ylo = _mm512_load_si512(pg), yhi = _mm512_load_si512(pg + 64);
            const __m512i corr = _mm512_load_si512(pg + 128);
            const __m512 dy = _mm512_load_ps(pg + 192);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                __m512i s = _mm512_dpbusd_epi32(corr, lo[r], ylo);
                s = _mm512_dpbusd_epi32(s, hi[r], yhi);
                acc[r][t] =
                    _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dx[r], dy), acc[r][t]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) y[t * y_stride + r] = hsum512(acc[r][t]);
}

/* ======================================================================================== */
/* Q8_0: a group is 2 blocks (64 elements, 68 bytes = 34 words); 256-bit half h = block h.    */
/* Panel per group: yq[64], corr[16 x i32] (lanes 0, 8 = -128 * sum), dy[16 x f32].          */
/* ======================================================================================== */

enum { Q8_0_GROUP = 192 };

static void q8_0_panel(const nuri_block_q8_0 *x, int64_t nb, uint8_t *p)
{
    const int64_t ng = (nb + 1) / 2;
    memset(p, 0, (size_t)ng * Q8_0_GROUP);
    for (int64_t i = 0; i < nb; i++) {
        uint8_t *g = p + (i / 2) * Q8_0_GROUP;
        const int h = (int)(i % 2);
        memcpy(g + 32 * h, x[i].qs, 32);
        int32_t sum = 0;
        for (int j = 0; j < NURI_QK; j++) sum += x[i].qs[j];
        int32_t corr = -128 * sum;
        memcpy(g + 64 + 32 * h, &corr, 4);
        float d = f16c(x[i].d);
        for (int k = 0; k < 8; k++) memcpy(g + 128 + 32 * h + 4 * k, &d, 4);
    }
}

typedef struct q8_0_consts {
    __m512i idxq, idxd, flip;
} q8_0_consts;

static inline q8_0_consts q8_0_consts_make(void)
{
    int16_t q[32], d[32];
    for (int k = 0; k < 32; k++) {
        int src = 17 * (k / 16) + 1 + k % 16;
        q[k] = (int16_t)(src < 32 ? src : 32 + src - 2);
        d[k] = (int16_t)(k < 16 ? 17 * (k / 8) : 0);
    }
    q8_0_consts c = {idx16(q), idx16(d), _mm512_set1_epi8((char)0x80)};
    return c;
}

static inline __attribute__((always_inline)) void
q8_0_tile(const int R, const int T, const q8_0_consts *c, int64_t nb, const uint8_t *w,
          size_t w_stride, const uint8_t *p, size_t p_stride, float *y, int64_t y_stride)
{
    __m512 acc[4][8];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_ps();
    const int64_t ng = (nb + 1) / 2;
    for (int64_t g = 0; g < ng; g++) {
        __mmask32 ma = ~0u, mb = ~0u;
        if (nb - 2 * g < 2) {
            ma = (1u << 17) - 1;
            mb = (1u << 15) - 1;
        }
        __m512i u[4];
        __m512 dx[4];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const uint8_t *wp = w + (size_t)r * w_stride + (size_t)g * 68;
            _mm_prefetch((const char *)wp + GEMM_PF * w_stride, _MM_HINT_T0);
            __m512i a = _mm512_maskz_loadu_epi16(ma, wp);
            __m512i b = _mm512_maskz_loadu_epi16(mb, wp + 4);
            u[r] = _mm512_xor_si512(_mm512_permutex2var_epi16(a, c->idxq, b), c->flip);
            dx[r] = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(c->idxd, a)));
        }
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) {
            const uint8_t *pg = p + (size_t)t * p_stride + (size_t)g * Q8_0_GROUP;
            const __m512i yq = _mm512_load_si512(pg), corr = _mm512_load_si512(pg + 64);
            const __m512 dy = _mm512_load_ps(pg + 128);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                __m512i s = _mm512_dpbusd_epi32(corr, u[r], yq);
                acc[r][t] =
                    _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dx[r], dy), acc[r][t]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) y[t * y_stride + r] = hsum512(acc[r][t]);
}

/* ======================================================================================== */
/* Q4_K and Q6_K: one 256-element block per step, as four 64-byte registers of unsigned codes. */
/* Per output and block: sum_k float(dpbusd(q_k, y_k)) * dsc_k + corr . bs, times y.d, where   */
/* dsc_k holds d * scale per int32 lane, corr (per row) and bs (per token) carry the mins      */
/* (Q4_K: -dmin * m_j against the 32-element sums) or the +32 code bias (Q6_K: -32 * d * sc_j   */
/* against the 16-element sums).                                                             */
/* Panel per block: y[256] in the weights' register order, bs[16 x f32], dy[16 x f32].          */
/* ======================================================================================== */

enum { KQ_GROUP = 384 };

typedef struct kq_row {
    __m512i q[4];
    __m512 dsc[4], corr;
} kq_row;

/* Q4_K register k: 64 bytes of qs (c = 2 * (k / 2)... see below); register 2h holds the low
 * nibbles of qs[64h .. 64h + 63] = elements [128h + 0..31 | 128h + 64..95] (sub-blocks 4h, 4h + 2),
 * register 2h + 1 the high nibbles = elements [128h + 32..63 | 128h + 96..127] (4h + 1, 4h + 3). */
static void q4_K_panel(const nuri_block_q8_K *x, int64_t nb, uint8_t *p)
{
    static const int chunk[8] = {0, 2, 1, 3, 4, 6, 5, 7}; // 32-element chunk at register position
    for (int64_t i = 0; i < nb; i++) {
        uint8_t *g = p + i * KQ_GROUP;
        for (int c = 0; c < 8; c++) memcpy(g + 32 * c, x[i].qs + 32 * chunk[c], 32);
        float bs[16] = {0}, dy[16];
        for (int j = 0; j < 8; j++) bs[j] = (float)(x[i].bsums[2 * j] + x[i].bsums[2 * j + 1]);
        for (int j = 0; j < 16; j++) dy[j] = x[i].d;
        memcpy(g + 256, bs, 64);
        memcpy(g + 320, dy, 64);
    }
}

/* d * scale per int32 lane and -dmin * min (lanes 0..7) of a Q4_K / Q5_K block. */
static inline __attribute__((always_inline)) void k4_scales(uint16_t d16, uint16_t dmin16,
                                                            const uint8_t *scales, kq_row *o)
{
    uint8_t sc[8], mn[8];
    kernels_scales_mins_q4_K(scales, sc, mn);
    const float d = f16c(d16), dmin = f16c(dmin16);
    __m512 fsc = _mm512_castps256_ps512(_mm256_mul_ps(
        _mm256_set1_ps(d),
        _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)sc)))));
    __m256 fm = _mm256_mul_ps(_mm256_set1_ps(-dmin), _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(
                                                         _mm_loadl_epi64((const __m128i *)mn))));
    o->corr = _mm512_insertf32x8(_mm512_castps256_ps512(fm), _mm256_setzero_ps(), 1);
    // register k covers sub-blocks (a, b): 0 (0, 2), 1 (1, 3), 2 (4, 6), 3 (5, 7)
    static const int sub[4][2] = {{0, 2}, {1, 3}, {4, 6}, {5, 7}};
    for (int k = 0; k < 4; k++) {
        __m512i idx =
            _mm512_inserti32x8(_mm512_set1_epi32(sub[k][0]), _mm256_set1_epi32(sub[k][1]), 1);
        o->dsc[k] = _mm512_permutexvar_ps(idx, fsc);
    }
}

static inline __attribute__((always_inline)) void q4_K_row(const nuri_block_q4_K *b, kq_row *o)
{
    const __m512i m4 = _mm512_set1_epi8(15);
    for (int h = 0; h < 2; h++) {
        __m512i v = _mm512_loadu_si512(b->qs + 64 * h);
        o->q[2 * h] = _mm512_and_si512(v, m4);
        o->q[2 * h + 1] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
    }
    k4_scales(b->d, b->dmin, b->scales, o);
}

/* Q5_K: Q4_K's registers and panel, plus the 5th bit: element 64c + l takes bit 2c of qh[l],
 * element 64c + 32 + l bit 2c + 1. Register 2h (low nibbles, c = 2h | 2h + 1 in its two halves)
 * takes bits 4h | 4h + 2, register 2h + 1 bits 4h + 1 | 4h + 3. */
static inline __attribute__((always_inline)) void q5_K_row(const nuri_block_q5_K *b, kq_row *o)
{
    k4_scales(b->d, b->dmin, b->scales, o);
    const __m512i m4 = _mm512_set1_epi8(15), one = _mm512_set1_epi8(1);
    const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)b->qh));
    for (int h = 0; h < 2; h++) {
        __m512i v = _mm512_loadu_si512(b->qs + 64 * h);
        for (int j = 0; j < 2; j++) {
            const __m512i sh = _mm512_inserti64x4(_mm512_set1_epi16((short)(4 * h + j)),
                                                  _mm256_set1_epi16((short)(4 * h + j + 2)), 1);
            __m512i hb = _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, sh), one), 4);
            __m512i nib =
                j ? _mm512_and_si512(_mm512_srli_epi16(v, 4), m4) : _mm512_and_si512(v, m4);
            o->q[2 * h + j] = _mm512_or_si512(nib, hb);
        }
    }
}

static void q6_K_panel(const nuri_block_q8_K *x, int64_t nb, uint8_t *p)
{
    for (int64_t i = 0; i < nb; i++) {
        uint8_t *g = p + i * KQ_GROUP;
        memcpy(g, x[i].qs, 256);
        float bs[16], dy[16];
        for (int j = 0; j < 16; j++) {
            bs[j] = (float)x[i].bsums[j];
            dy[j] = x[i].d;
        }
        memcpy(g + 256, bs, 64);
        memcpy(g + 320, dy, 64);
    }
}

/* Q6_K register 2h holds elements 128h + [0..63], register 2h + 1 elements 128h + [64..127]
 * (natural order); int32 lane l of register k is sub-block 4k + l / 4. */
static inline __attribute__((always_inline)) void q6_K_row(const nuri_block_q6_K *b, kq_row *o)
{
    const __m512i m4 = _mm512_set1_epi8(15), m3 = _mm512_set1_epi8(3);
    const __m512i shA = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
    const __m512i shB = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(6), 1);
    for (int h = 0; h < 2; h++) {
        __m512i ql = _mm512_loadu_si512(b->ql + 64 * h);
        __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(b->qh + 32 * h)));
        o->q[2 * h] =
            _mm512_or_si512(_mm512_and_si512(ql, m4),
                            _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, shA), m3), 4));
        o->q[2 * h + 1] =
            _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                            _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, shB), m3), 4));
    }
    const float d = f16c(b->d);
    __m512 fsc = _mm512_mul_ps(
        _mm512_set1_ps(d),
        _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)b->scales))));
    o->corr = _mm512_mul_ps(_mm512_set1_ps(-32.0f), fsc);
    for (int k = 0; k < 4; k++) {
        const __m512i idx =
            _mm512_srli_epi32(_mm512_add_epi32(_mm512_set1_epi32(16 * k),
                                               _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
                                                                 11, 12, 13, 14, 15)),
                              2);
        o->dsc[k] = _mm512_permutexvar_ps(idx, fsc);
    }
}

#define DEFINE_KQ_TILE(NAME, BT, ROWFN)                                                            \
    static inline __attribute__((always_inline)) void NAME(                                        \
        const int R, const int T, const void *unused, int64_t nb, const uint8_t *w,                \
        size_t w_stride, const uint8_t *p, size_t p_stride, float *y, int64_t y_stride)            \
    {                                                                                              \
        (void)unused;                                                                              \
        __m512 acc[4][8];                                                                          \
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)                                        \
            _Pragma("GCC unroll 8") for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_ps();   \
        for (int64_t i = 0; i < nb; i++) {                                                         \
            _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)                                    \
            {                                                                                      \
                kq_row o;                                                                          \
                const BT *blk = (const BT *)(w + (size_t)r * w_stride) + i;                        \
                for (size_t off = 0; off < sizeof(BT); off += 64)                                  \
                    _mm_prefetch((const char *)blk + GEMM_PF * w_stride + off, _MM_HINT_T0);       \
                ROWFN(blk, &o);                                                                    \
                _Pragma("GCC unroll 8") for (int t = 0; t < T; t++)                                \
                {                                                                                  \
                    const uint8_t *pg = p + (size_t)t * p_stride + (size_t)i * KQ_GROUP;           \
                    const __m512i z = _mm512_setzero_si512();                                      \
                    __m512 s = _mm512_mul_ps(                                                      \
                        _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(z, o.q[0], _mm512_load_si512(pg))), \
                        o.dsc[0]);                                                                 \
                    _Pragma("GCC unroll 4") for (int k = 1; k < 4; k++) s =                        \
                        _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(                    \
                                            z, o.q[k], _mm512_load_si512(pg + 64 * k))),           \
                                        o.dsc[k], s);                                              \
                    s = _mm512_fmadd_ps(o.corr, _mm512_load_ps(pg + 256), s);                      \
                    acc[r][t] = _mm512_fmadd_ps(s, _mm512_load_ps(pg + 320), acc[r][t]);           \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)                                        \
            _Pragma("GCC unroll 8") for (int t = 0; t < T; t++) y[t * y_stride + r] =              \
                hsum512(acc[r][t]);                                                                \
    }

DEFINE_KQ_TILE(q4_K_tile, nuri_block_q4_K, q4_K_row)
DEFINE_KQ_TILE(q6_K_tile, nuri_block_q6_K, q6_K_row)
DEFINE_KQ_TILE(q5_K_tile, nuri_block_q5_K, q5_K_row)

typedef int kq_consts;
static inline kq_consts kq_consts_make(void)
{
    return 0;
}

/* ======================================================================================== */
/* The driver: panels for up to GEMM_TT tokens, then rows in fours x tokens in fours.        */
/* ======================================================================================== */

// clang-format off
#define TILE_T8(FN, R, T, ...)                                                                     \
    switch (T) {                                                                                   \
    case 1: FN(R, 1, __VA_ARGS__); break;                                                          \
    case 2: FN(R, 2, __VA_ARGS__); break;                                                          \
    case 3: FN(R, 3, __VA_ARGS__); break;                                                          \
    case 4: FN(R, 4, __VA_ARGS__); break;                                                          \
    case 5: FN(R, 5, __VA_ARGS__); break;                                                          \
    case 6: FN(R, 6, __VA_ARGS__); break;                                                          \
    case 7: FN(R, 7, __VA_ARGS__); break;                                                          \
    default: FN(R, 8, __VA_ARGS__); break;                                                         \
    }
#define TILE_T4(FN, R, T, ...)                                                                     \
    switch (T) {                                                                                   \
    case 1: FN(R, 1, __VA_ARGS__); break;                                                          \
    case 2: FN(R, 2, __VA_ARGS__); break;                                                          \
    case 3: FN(R, 3, __VA_ARGS__); break;                                                          \
    default: FN(R, 4, __VA_ARGS__); break;                                                         \
    }
/* Tile shapes: 1..2 rows x 1..8 tokens, 3..4 rows x 1..4 tokens (at most 16 accumulators). */
#define TILE_SWITCH(FN, R, T, ...)                                                                 \
    switch (R) {                                                                                   \
    case 1: TILE_T8(FN, 1, T, __VA_ARGS__) break;                                                  \
    case 2: TILE_T8(FN, 2, T, __VA_ARGS__) break;                                                  \
    case 3: TILE_T4(FN, 3, T, __VA_ARGS__) break;                                                  \
    default: TILE_T4(FN, 4, T, __VA_ARGS__) break;                                                 \
    }

// clang-format on

#define DEFINE_GEMM(NAME, TILE, PANEL, CONSTS, QK, GROUP_BLOCKS, GROUP_BYTES, VEC_DOT)             \
    static void NAME(int64_t n, const void *restrict vw, size_t w_stride, int64_t r0, int64_t r1,  \
                     const void *restrict vx, size_t x_stride, int64_t n_t, float *restrict y,     \
                     int64_t y_stride)                                                             \
    {                                                                                              \
        const int64_t nb = n / QK;                                                                 \
        const size_t p_stride = (size_t)((nb + GROUP_BLOCKS - 1) / GROUP_BLOCKS) * GROUP_BYTES;    \
        int64_t tt = (int64_t)(GEMM_PANEL / p_stride);                                             \
        if (tt > GEMM_TT) tt = GEMM_TT;                                                            \
        uint8_t *panel_buf = tt >= 1 ? panel_get() : NULL;                                         \
        /* rows too long for the panel (same path for every n_t), or no panel memory */            \
        if (!panel_buf) {                                                                          \
            for (int64_t t = 0; t < n_t; t++)                                                      \
                for (int64_t r = r0; r < r1; r++)                                                  \
                    VEC_DOT(n, &y[t * y_stride + r], (const uint8_t *)vw + (size_t)r * w_stride,   \
                            (const uint8_t *)vx + (size_t)t * x_stride);                           \
            return;                                                                                \
        }                                                                                          \
        const CONSTS c = CONSTS##_make();                                                          \
        for (int64_t tb = 0; tb < n_t; tb += tt) {                                                 \
            const int64_t te = tb + tt < n_t ? tb + tt : n_t;                                      \
            for (int64_t t = tb; t < te; t++)                                                      \
                PANEL((const void *)((const uint8_t *)vx + (size_t)t * x_stride), nb,              \
                      panel_buf + (size_t)(t - tb) * p_stride);                                    \
            /* many tokens: 2 rows x 8 tokens; few: 4 x 4; one: GEMM_R1 x 1 */                     \
            const int wide = te - tb >= 8;                                                         \
            const int rmax = wide ? 2 : te - tb == 1 ? GEMM_R1 : 4, tmax = wide ? 8 : 4;           \
            for (int64_t r = r0; r < r1; r += rmax) {                                              \
                const int R = r1 - r < rmax ? (int)(r1 - r) : rmax;                                \
                const uint8_t *wr = (const uint8_t *)vw + (size_t)r * w_stride;                    \
                for (int64_t t = tb; t < te; t += tmax) {                                          \
                    int T = te - t < tmax ? (int)(te - t) : tmax;                                  \
                    if (R > 2 && T > 4) T = 4; /* not reached: R > 2 only when tmax = 4 */         \
                    const uint8_t *pt = panel_buf + (size_t)(t - tb) * p_stride;                   \
                    float *yt = y + t * y_stride + r;                                              \
                    TILE_SWITCH(CALL_TILE_##TILE, R, T, &c, nb, wr, w_stride, pt, p_stride, yt,    \
                                y_stride)                                                          \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }

#define CALL_TILE_q4_0(R, T, ...) q4_0_tile(R, T, __VA_ARGS__)
#define CALL_TILE_q8_0(R, T, ...) q8_0_tile(R, T, __VA_ARGS__)
#define CALL_TILE_q4_K(R, T, ...) q4_K_tile(R, T, __VA_ARGS__)
#define CALL_TILE_q6_K(R, T, ...) q6_K_tile(R, T, __VA_ARGS__)
#define CALL_TILE_q5_K(R, T, ...) q5_K_tile(R, T, __VA_ARGS__)

/* The vec_dot fallbacks for rows longer than a panel holds: the table's own. */
static nuri_vec_dot_fn q4_0_dot, q8_0_dot, q4_K_dot, q5_K_dot, q6_K_dot;
static void q4_0_dot_call(int64_t n, float *s, const void *x, const void *y)
{
    q4_0_dot(n, s, x, y);
}
static void q8_0_dot_call(int64_t n, float *s, const void *x, const void *y)
{
    q8_0_dot(n, s, x, y);
}
static void q4_K_dot_call(int64_t n, float *s, const void *x, const void *y)
{
    q4_K_dot(n, s, x, y);
}
static void q6_K_dot_call(int64_t n, float *s, const void *x, const void *y)
{
    q6_K_dot(n, s, x, y);
}
static void q5_K_dot_call(int64_t n, float *s, const void *x, const void *y)
{
    q5_K_dot(n, s, x, y);
}

DEFINE_GEMM(avx512_q4_0_gemm, q4_0, q4_0_panel, q4_0_consts, NURI_QK, 4, Q4_0_GROUP, q4_0_dot_call)
DEFINE_GEMM(avx512_q8_0_gemm, q8_0, q8_0_panel, q8_0_consts, NURI_QK, 2, Q8_0_GROUP, q8_0_dot_call)
DEFINE_GEMM(avx512_q4_K_gemm, q4_K, q4_K_panel, kq_consts, NURI_QK_K, 1, KQ_GROUP, q4_K_dot_call)
DEFINE_GEMM(avx512_q6_K_gemm, q6_K, q6_K_panel, kq_consts, NURI_QK_K, 1, KQ_GROUP, q6_K_dot_call)
DEFINE_GEMM(avx512_q5_K_gemm, q5_K, q4_K_panel, kq_consts, NURI_QK_K, 1, KQ_GROUP, q5_K_dot_call)

void kernels_gemm_avx512_fill(nuri_kernel_traits *tab)
{
    q4_0_dot = tab[NURI_TYPE_Q4_0].vec_dot;
    q8_0_dot = tab[NURI_TYPE_Q8_0].vec_dot;
    q4_K_dot = tab[NURI_TYPE_Q4_K].vec_dot;
    q6_K_dot = tab[NURI_TYPE_Q6_K].vec_dot;
    q5_K_dot = tab[NURI_TYPE_Q5_K].vec_dot;
    tab[NURI_TYPE_Q5_K].gemm = avx512_q5_K_gemm;
    tab[NURI_TYPE_Q4_K].gemm = avx512_q4_K_gemm;
    tab[NURI_TYPE_Q6_K].gemm = avx512_q6_K_gemm;
    tab[NURI_TYPE_Q4_0].gemm = avx512_q4_0_gemm;
    tab[NURI_TYPE_Q8_0].gemm = avx512_q8_0_gemm;
}
