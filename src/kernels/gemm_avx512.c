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
#include <string.h>

enum {
    GEMM_TT = 16,              // tokens per panel
    GEMM_PANEL = 256 * 1024,   // bytes of the per-thread panel buffer
};

static _Thread_local _Alignas(64) uint8_t panel_buf[GEMM_PANEL];

static inline float hsum512(__m512 v)
{
    __m256 s = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
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
        float d = nuri_f16_to_f32(x[i].d);
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
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
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
            __m512i a = _mm512_maskz_loadu_epi16(ma, wp);
            __m512i b = _mm512_maskz_loadu_epi16(mb, wp + 8);
            __m512i q = _mm512_permutex2var_epi16(a, c->idxq, b);
            lo[r] = _mm512_and_si512(q, c->m4);
            hi[r] = _mm512_and_si512(_mm512_srli_epi16(q, 4), c->m4);
            dx[r] = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(c->idxd, a)));
        }
#pragma GCC unroll 4
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
#pragma GCC unroll 4
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
        float d = nuri_f16_to_f32(x[i].d);
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
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
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
            __m512i a = _mm512_maskz_loadu_epi16(ma, wp);
            __m512i b = _mm512_maskz_loadu_epi16(mb, wp + 4);
            u[r] = _mm512_xor_si512(_mm512_permutex2var_epi16(a, c->idxq, b), c->flip);
            dx[r] = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(c->idxd, a)));
        }
#pragma GCC unroll 4
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
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) y[t * y_stride + r] = hsum512(acc[r][t]);
}

/* ======================================================================================== */
/* The driver: panels for up to GEMM_TT tokens, then rows in fours x tokens in fours.        */
/* ======================================================================================== */

#define TILE_SWITCH(FN, R, T, ...)                                                                 \
    switch ((R) * 8 + (T)) {                                                                       \
    case 8 + 1: FN(1, 1, __VA_ARGS__); break;                                                      \
    case 8 + 2: FN(1, 2, __VA_ARGS__); break;                                                      \
    case 8 + 3: FN(1, 3, __VA_ARGS__); break;                                                      \
    case 8 + 4: FN(1, 4, __VA_ARGS__); break;                                                      \
    case 16 + 1: FN(2, 1, __VA_ARGS__); break;                                                     \
    case 16 + 2: FN(2, 2, __VA_ARGS__); break;                                                     \
    case 16 + 3: FN(2, 3, __VA_ARGS__); break;                                                     \
    case 16 + 4: FN(2, 4, __VA_ARGS__); break;                                                     \
    case 24 + 1: FN(3, 1, __VA_ARGS__); break;                                                     \
    case 24 + 2: FN(3, 2, __VA_ARGS__); break;                                                     \
    case 24 + 3: FN(3, 3, __VA_ARGS__); break;                                                     \
    case 24 + 4: FN(3, 4, __VA_ARGS__); break;                                                     \
    case 32 + 1: FN(4, 1, __VA_ARGS__); break;                                                     \
    case 32 + 2: FN(4, 2, __VA_ARGS__); break;                                                     \
    case 32 + 3: FN(4, 3, __VA_ARGS__); break;                                                     \
    default: FN(4, 4, __VA_ARGS__); break;                                                         \
    }

#define DEFINE_GEMM(NAME, TILE, PANEL, CONSTS, GROUP_BLOCKS, GROUP_BYTES, VEC_DOT)                 \
    static void NAME(int64_t n, const void *restrict vw, size_t w_stride, int64_t r0, int64_t r1,  \
                     const void *restrict vx, size_t x_stride, int64_t n_t, float *restrict y,    \
                     int64_t y_stride)                                                             \
    {                                                                                              \
        const int64_t nb = n / NURI_QK;                                                            \
        const size_t p_stride = (size_t)((nb + GROUP_BLOCKS - 1) / GROUP_BLOCKS) * GROUP_BYTES;    \
        int64_t tt = (int64_t)(GEMM_PANEL / p_stride);                                             \
        if (tt > GEMM_TT) tt = GEMM_TT;                                                            \
        if (tt < 1) { /* rows too long for the panel: same path for every n_t */                   \
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
            for (int64_t r = r0; r < r1; r += 4) {                                                 \
                const int R = r1 - r < 4 ? (int)(r1 - r) : 4;                                      \
                const uint8_t *wr = (const uint8_t *)vw + (size_t)r * w_stride;                    \
                for (int64_t t = tb; t < te; t += 4) {                                             \
                    const int T = te - t < 4 ? (int)(te - t) : 4;                                  \
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



/* The vec_dot fallbacks for rows longer than a panel holds: the table's own. */
static nuri_vec_dot_fn q4_0_dot, q8_0_dot;
static void q4_0_dot_call(int64_t n, float *s, const void *x, const void *y)
{
    q4_0_dot(n, s, x, y);
}
static void q8_0_dot_call(int64_t n, float *s, const void *x, const void *y)
{
    q8_0_dot(n, s, x, y);
}

DEFINE_GEMM(avx512_q4_0_gemm, q4_0, q4_0_panel, q4_0_consts, 4, Q4_0_GROUP, q4_0_dot_call)
DEFINE_GEMM(avx512_q8_0_gemm, q8_0, q8_0_panel, q8_0_consts, 2, Q8_0_GROUP, q8_0_dot_call)

void kernels_gemm_avx512_fill(nuri_kernel_traits *tab)
{
    q4_0_dot = tab[NURI_TYPE_Q4_0].vec_dot;
    q8_0_dot = tab[NURI_TYPE_Q8_0].vec_dot;
    tab[NURI_TYPE_Q4_0].gemm = avx512_q4_0_gemm;
    tab[NURI_TYPE_Q8_0].gemm = avx512_q8_0_gemm;
}
