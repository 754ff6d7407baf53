/*
 * pack_bf16_avx512.c: matrix products over packed (x16) BF16 and F16 weights (pack.h).
 *
 * BF16 weights: one 64-byte line holds elements 2k and 2k + 1 of each of 16 rows, so a vdpbf16ps
 * against the activation's pair (x[2k], x[2k + 1]) broadcast to every lane advances the 16 rows'
 * dot products by two elements: one lane per row, no horizontal sums. The activations are the
 * BF16 rows the caller converted (BF16 is the type's vec_dot_type), read in place.
 *
 * F16 weights keep their F16 values (BF16 would drop 3 of their mantissa bits): a line holds
 * element 2k of the 16 rows, then element 2k + 1, each widened by vcvtph2ps and multiplied into
 * F32 lanes by FMA against the activation (its F16 row, widened once per chunk of tokens into
 * scratch; the widening is exact, so the no-scratch path that widens in place gives the same
 * bits).
 *
 * Every output is one chain over k in order (one vdpbf16ps, or two FMAs, per pair of elements),
 * whichever tile of row groups and tokens computes it: the results never depend on the batch.
 * Tiles are up to 2 row groups x 8 tokens (16 accumulators, weights and activation broadcasts in
 * registers), and 4 row groups x 1 token for a single token: there each output's chain (two
 * dependent FMAs per line for F16) waits on the FMA latency, and four chains side by side keep
 * the loads coming (1B F16 decode from memory 1.3x, BF16 1.03-1.13x, on Zen 4).
 */
#include "kernels/kernels_impl.h"
#include "kernels/pack.h"
#include "kernels/types.h"

#include <immintrin.h>
#include <string.h>

enum {
    // prefetch distance, in lines (2 KiB): one-token products from memory read F16 at 1.3x the
    // speed of 16 lines (1 KiB) with four row groups at once, and slower again at 64
    X16F_PF = 32,
};

/* How the tile reads its operands: BF16 pairs (vdpbf16ps), F16 weights with activations as F32
 * (scratch) or as F16 widened in place (no scratch). */
enum { XK_BF16 = 0, XK_F16_F32 = 1, XK_F16_F16 = 2 };

static inline __attribute__((always_inline)) uint32_t load_u32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* G row groups (gbytes apart) x T tokens, over all n elements; rows[g]: the rows of group g. */
static inline __attribute__((always_inline)) void
x16f_tile(const int kind, const int G, const int T, int64_t n, const uint8_t *grp, int64_t gbytes,
          const uint8_t *x, size_t x_stride, float *y, int64_t y_stride, const __mmask16 *rows)
{
    __m512 acc[4][8];
#pragma GCC unroll 16
    for (int g = 0; g < G; g++)
#pragma GCC unroll 16
        for (int t = 0; t < T; t++) acc[g][t] = _mm512_setzero_ps();
    const int64_t lines = n / 2;
    for (int64_t k = 0; k < lines; k++) {
        __m512i w[4];
#pragma GCC unroll 16
        for (int g = 0; g < G; g++) {
            const uint8_t *line = grp + g * gbytes + 64 * k;
            _mm_prefetch((const char *)line + 64 * X16F_PF, _MM_HINT_T0);
            w[g] = _mm512_loadu_si512(line);
        }
        if (kind == XK_BF16) {
#pragma GCC unroll 16
            for (int t = 0; t < T; t++) {
                const __m512i b =
                    _mm512_set1_epi32((int)load_u32(x + (size_t)t * x_stride + 4 * k));
#pragma GCC unroll 16
                for (int g = 0; g < G; g++)
                    acc[g][t] = _mm512_dpbf16_ps(acc[g][t], (__m512bh)w[g], (__m512bh)b);
            }
        } else {
            __m512 lo[4], hi[4];
#pragma GCC unroll 16
            for (int g = 0; g < G; g++) {
                lo[g] = _mm512_cvtph_ps(_mm512_castsi512_si256(w[g]));
                hi[g] = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(w[g], 1));
            }
#pragma GCC unroll 16
            for (int t = 0; t < T; t++) {
                __m512 b0, b1;
                if (kind == XK_F16_F32) {
                    const float *xf = (const float *)(x + (size_t)t * x_stride) + 2 * k;
                    b0 = _mm512_set1_ps(xf[0]);
                    b1 = _mm512_set1_ps(xf[1]);
                } else {
                    const uint16_t *xh = (const uint16_t *)(x + (size_t)t * x_stride) + 2 * k;
                    b0 = _mm512_set1_ps(_cvtsh_ss(xh[0]));
                    b1 = _mm512_set1_ps(_cvtsh_ss(xh[1]));
                }
#pragma GCC unroll 16
                for (int g = 0; g < G; g++) {
                    acc[g][t] = _mm512_fmadd_ps(lo[g], b0, acc[g][t]);
                    acc[g][t] = _mm512_fmadd_ps(hi[g], b1, acc[g][t]);
                }
            }
        }
    }
#pragma GCC unroll 16
    for (int g = 0; g < G; g++)
#pragma GCC unroll 16
        for (int t = 0; t < T; t++)
            _mm512_mask_storeu_ps(y + t * y_stride + 16 * g, rows[g], acc[g][t]);
}

#define X16F_T(K, G, T) x16f_tile(K, G, T, n, grp, gbytes, xt, x_stride, yt, y_stride, rows)
#define X16F_TOKENS(K, G)                                                                          \
    (left >= 8   ? (X16F_T(K, G, 8), 8)                                                            \
     : left >= 4 ? (X16F_T(K, G, 4), 4)                                                            \
     : left >= 2 ? (X16F_T(K, G, 2), 2)                                                            \
                 : (X16F_T(K, G, 1), 1))

/* Row groups [ga, gb) of a packed matrix with n_out rows, tokens [0, n_t) of x (BF16 rows for
 * BF16 weights; for F16 weights F32 rows when f32, else F16 rows). */
void kernels_x16f_groups(uint32_t type, int64_t n, const void *wp, int64_t n_out, int64_t ga,
                         int64_t gb, const void *vx, size_t x_stride, int64_t n_t, bool f32,
                         float *y, int64_t y_stride);
void kernels_x16f_groups(uint32_t type, int64_t n, const void *wp, int64_t n_out, int64_t ga,
                         int64_t gb, const void *vx, size_t x_stride, int64_t n_t, bool f32,
                         float *y, int64_t y_stride)
{
    const int kind = type == NURI_TYPE_BF16 ? XK_BF16 : f32 ? XK_F16_F32 : XK_F16_F16;
    const int64_t gbytes = 32 * n; // 16 rows x n elements x 2 bytes
    for (int64_t g = ga; g < gb;) {
        // one token (decode): 4 row groups, so that 4 chains of FMAs wait on their latency
        // side by side (each output's chain is the same, whatever the tile: the same bits)
        const int G = n_t == 1 && gb - g >= 4 ? 4 : gb - g >= 2 ? 2 : 1;
        const uint8_t *grp = (const uint8_t *)wp + g * gbytes;
        __mmask16 rows[4];
        for (int i = 0; i < G; i++) {
            const int64_t rr = n_out - 16 * (g + i) < 16 ? n_out - 16 * (g + i) : 16;
            rows[i] = (__mmask16)((1u << rr) - 1);
        }
        for (int64_t t = 0; t < n_t;) {
            const int64_t left = n_t - t;
            const uint8_t *xt = (const uint8_t *)vx + (size_t)t * x_stride;
            float *yt = y + t * y_stride + 16 * g;
            int step;
            if (G == 4)
                step = kind == XK_BF16      ? (X16F_T(XK_BF16, 4, 1), 1)
                       : kind == XK_F16_F32 ? (X16F_T(XK_F16_F32, 4, 1), 1)
                                            : (X16F_T(XK_F16_F16, 4, 1), 1);
            else if (kind == XK_BF16)
                step = G == 2 ? X16F_TOKENS(XK_BF16, 2) : X16F_TOKENS(XK_BF16, 1);
            else if (kind == XK_F16_F32)
                step = G == 2 ? X16F_TOKENS(XK_F16_F32, 2) : X16F_TOKENS(XK_F16_F32, 1);
            else // no scratch: a token at a time, widened in place
                step = G == 2 ? (X16F_T(XK_F16_F16, 2, 1), 1) : (X16F_T(XK_F16_F16, 1, 1), 1);
            t += step;
        }
        g += G;
    }
}

/* F16 rows [0, n_t) of x widened to F32 rows of n floats (exact). */
void kernels_x16f_widen(const void *x, size_t x_stride, int64_t n_t, int64_t n, float *out);
void kernels_x16f_widen(const void *x, size_t x_stride, int64_t n_t, int64_t n, float *out)
{
    for (int64_t t = 0; t < n_t; t++) {
        const uint16_t *h = (const uint16_t *)((const uint8_t *)x + (size_t)t * x_stride);
        float *o = out + t * n;
        int64_t i = 0;
        for (; i + 16 <= n; i += 16)
            _mm512_storeu_ps(o + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(h + i))));
        for (; i < n; i++) o[i] = _cvtsh_ss(h[i]);
    }
}
