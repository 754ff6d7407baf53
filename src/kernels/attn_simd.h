/*
 * attn_simd.h: the SIMD attention inner loops (attn.h), written once for a vector of W floats and
 * included by attn_avx2.c (W = 8) and attn_avx512.c (W = 16), which define the vector macros:
 * VF (vector type), W, VZERO(), VLOAD(p), VSTORE(p, v), VSET1(x), VFMA(a, b, c) = a * b + c,
 * VCVTPH(p) (W halves at p -> floats), VCVTI8(p) (W int8 at p -> floats), VMUL(a, b), VHSUM(v),
 * VNONZERO(p) (a bit per float at p that is not 0: x != 0.0f, so NaN too), VNIB(p, hi) (the low
 * (hi 0) or high (hi 1) nibbles of W bytes at p, each - 8, -> floats).
 *
 * scores: per row, K is widened once and multiplied with each of the G queries; accum: up to 4
 * heads x 4 vectors of one V row chunk are kept in registers across all n rows.
 */
#include "kernels/attn.h"
#include "kernels/fp16.h"

#include <immintrin.h>
#include <stdbool.h>
#include <string.h>

#define NURI_KV_MAX_HD 512 // head sizes simd_accum_qv takes (larger ones: the generic loop)

static void simd_scores(int32_t hd, int32_t G, const float *q, const uint16_t *k, size_t k_stride,
                        int32_t n, float scale, float *s, size_t s_stride)
{
    const int32_t hv = hd - hd % W;
    for (int32_t j = 0; j < n; j++) {
        const uint16_t *kr = k + (size_t)j * k_stride;
        for (int32_t g = 0; g < G; g++) {
            const float *qg = q + (size_t)g * hd;
            VF acc = VZERO();
            for (int32_t d = 0; d < hv; d += W) acc = VFMA(VLOAD(qg + d), VCVTPH(kr + d), acc);
            float sum = VHSUM(acc);
            for (int32_t d = hv; d < hd; d++) sum += qg[d] * nuri_f16_to_f32(kr[d]);
            s[(size_t)g * s_stride + j] = sum * scale;
        }
    }
}

/* scores_t: NG queries against all NURI_ATTN_TROWS rows of a transposed block, into tile
 * (NG x NURI_ATTN_TROWS). Per d, the rows' elements are one contiguous line of halves: widened
 * once, then one FMA per query and vector of rows. */
#define T_RV (NURI_ATTN_TROWS / W)
#define T_NG (W == 16 ? 8 : 2) // queries at a time: accumulators within the register file
static inline __attribute__((always_inline)) void scores_t_tile(const int NG, int32_t hd,
                                                                const float *q, const uint16_t *kt,
                                                                float scale, float *tile)
{
    VF acc[T_NG][T_RV];
#pragma GCC unroll 8
    for (int g = 0; g < NG; g++)
#pragma GCC unroll 4
        for (int r = 0; r < T_RV; r++) acc[g][r] = VZERO();
    for (int32_t d = 0; d < hd; d++) {
        VF x[T_RV];
#pragma GCC unroll 4
        for (int r = 0; r < T_RV; r++) x[r] = VCVTPH(kt + (size_t)d * NURI_ATTN_TROWS + r * W);
#pragma GCC unroll 8
        for (int g = 0; g < NG; g++) {
            const VF b = VSET1(q[(size_t)g * hd + d]);
#pragma GCC unroll 4
            for (int r = 0; r < T_RV; r++) acc[g][r] = VFMA(b, x[r], acc[g][r]);
        }
    }
    const VF sc = VSET1(scale);
#pragma GCC unroll 8
    for (int g = 0; g < NG; g++)
#pragma GCC unroll 4
        for (int r = 0; r < T_RV; r++)
            VSTORE(tile + g * NURI_ATTN_TROWS + r * W, VMUL(acc[g][r], sc));
}

#define T_CASE(N)                                                                                  \
    case N:                                                                                        \
        scores_t_tile(N, hd, qg, kt, scale, tile);                                                 \
        break
static void simd_scores_t(int32_t hd, int32_t G, const float *q, const uint16_t *kt, int32_t j0,
                          int32_t n, float scale, float *s, size_t s_stride)
{
    float tile[T_NG * NURI_ATTN_TROWS];
    for (int32_t g0 = 0; g0 < G; g0 += T_NG) {
        const int ng = G - g0 < T_NG ? G - g0 : T_NG;
        const float *qg = q + (size_t)g0 * hd;
        switch (ng) { // NG a constant in each case: the accumulators stay in registers
#if T_NG > 2
            T_CASE(8);
            T_CASE(7);
            T_CASE(6);
            T_CASE(5);
            T_CASE(4);
            T_CASE(3);
#endif
            T_CASE(2);
        default:
            scores_t_tile(1, hd, qg, kt, scale, tile);
            break;
        }
        for (int g = 0; g < ng; g++)
            memcpy(s + (size_t)(g0 + g) * s_stride, tile + g * NURI_ATTN_TROWS + j0,
                   sizeof(float) * (size_t)n);
    }
}

/* A bit for each row j < m (m <= 32) where one of the ng heads' weights p[g * p_stride + j] is not
 * 0: the rows accum and accum_q add in. */
static inline uint32_t live_rows(const float *p, size_t p_stride, int ng, int m)
{
    uint32_t live = 0;
    for (int g = 0; g < ng; g++)
        if (m == 32)
            for (int j = 0; j < 32; j += W) live |= VNONZERO(p + (size_t)g * p_stride + j) << j;
        else
            for (int j = 0; j < m; j++)
                live |= (uint32_t)(p[(size_t)g * p_stride + j] != 0.0f) << j;
    return live;
}

/* NG heads x NC vectors starting at head g0, element d0, over the rows (< 32) set in live. */
static inline __attribute__((always_inline)) void
accum_tile(const int NG, const int NC, int32_t hd, int32_t g0, int32_t d0, const float *p,
           size_t p_stride, const uint16_t *v, size_t v_stride, uint32_t live, float *out)
{
    VF acc[4][4];
#pragma GCC unroll 4
    for (int g = 0; g < NG; g++)
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) acc[g][c] = VLOAD(out + (size_t)(g0 + g) * hd + d0 + c * W);
    const uint16_t *vr = v + d0;
    const int end = 32 - __builtin_clz(live); // live is not 0
    for (int j = 0; j < end; j++, vr += v_stride) {
        if (!(live >> j & 1)) continue;
        VF x[4];
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) x[c] = VCVTPH(vr + c * W);
#pragma GCC unroll 4
        for (int g = 0; g < NG; g++) {
            const VF b = VSET1(p[(size_t)(g0 + g) * p_stride + j]);
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++) acc[g][c] = VFMA(x[c], b, acc[g][c]);
        }
    }
#pragma GCC unroll 4
    for (int g = 0; g < NG; g++)
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) VSTORE(out + (size_t)(g0 + g) * hd + d0 + c * W, acc[g][c]);
}

#define ACCUM_NC(NG)                                                                               \
    switch (nc) {                                                                                  \
    case 1:                                                                                        \
        accum_tile(NG, 1, hd, g0, d0, p, p_stride, v, v_stride, live, out);                        \
        break;                                                                                     \
    case 2:                                                                                        \
        accum_tile(NG, 2, hd, g0, d0, p, p_stride, v, v_stride, live, out);                        \
        break;                                                                                     \
    case 3:                                                                                        \
        accum_tile(NG, 3, hd, g0, d0, p, p_stride, v, v_stride, live, out);                        \
        break;                                                                                     \
    default:                                                                                       \
        accum_tile(NG, 4, hd, g0, d0, p, p_stride, v, v_stride, live, out);                        \
        break;                                                                                     \
    }

static void simd_accum(int32_t hd, int32_t G, const float *p, size_t p_stride, const uint16_t *v,
                       size_t v_stride, int32_t n, float *out)
{
    const int32_t hv = hd - hd % W;
    for (int32_t j0 = 0; j0 < n; j0 += 32, p += 32, v += 32 * v_stride)
        for (int32_t g0 = 0; g0 < G; g0 += 4) {
            const int ng = G - g0 < 4 ? G - g0 : 4, m = n - j0 < 32 ? n - j0 : 32;
            const uint32_t live = live_rows(p + (size_t)g0 * p_stride, p_stride, ng, m);
            if (!live) continue;
            for (int32_t d0 = 0; d0 < hv; d0 += 4 * W) {
                const int nc = (hv - d0) / W < 4 ? (hv - d0) / W : 4;
                switch (ng) {
                case 1:
                    ACCUM_NC(1) break;
                case 2:
                    ACCUM_NC(2) break;
                case 3:
                    ACCUM_NC(3) break;
                default:
                    ACCUM_NC(4) break;
                }
            }
            if (hv == hd) continue;
            for (int32_t j = 0; j < m;
                 j++) // the tail elements of a head size that is not a multiple of W
                for (int32_t g = g0; g < g0 + ng; g++) {
                    const float pg = p[(size_t)g * p_stride + j];
                    if (pg == 0.0f) continue;
                    for (int32_t d = hv; d < hd; d++)
                        out[(size_t)g * hd + d] +=
                            pg * nuri_f16_to_f32(v[(size_t)j * v_stride + d]);
                }
        }
}

/* accum_q of a Q8_0 (Q4 = 0) or Q4_0 (Q4 = 1) V, NG heads from g0, over the rows (< 32) whose
 * bits are set in live: dv[b * 32 + j] holds row j's scale of block b. Per block, the NG heads'
 * 32 sums stay in registers across the rows. */
static inline __attribute__((always_inline)) void
accum_qv_tile(const int Q4, const int NG, int32_t hd, int32_t g0, const float *p, size_t p_stride,
              const uint8_t *v, size_t v_stride, uint32_t live, const float *dv, float *out)
{
    enum { NC = 32 / W };
    for (int32_t b = 0; b < hd / 32; b++) {
        VF acc[4][NC];
#pragma GCC unroll 4
        for (int g = 0; g < NG; g++)
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++)
                acc[g][c] = VLOAD(out + (size_t)(g0 + g) * hd + (size_t)b * 32 + c * W);
        const uint8_t *vb = v + (size_t)b * (Q4 ? 18 : 34) + 2;
        const int end = 32 - __builtin_clz(live); // live is not 0
        for (int j = 0; j < end; j++, vb += v_stride) {
            if (!(live >> j & 1)) continue;
            const VF d = VSET1(dv[b * 32 + j]);
            VF x[NC];
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++) // Q4_0: element e < 16 the low nibble of byte e
                x[c] = VMUL(Q4 ? VNIB(vb + c * W % 16, c * W >= 16) : VCVTI8(vb + c * W), d);
#pragma GCC unroll 4
            for (int g = 0; g < NG; g++) {
                const VF pg = VSET1(p[(size_t)(g0 + g) * p_stride + j]);
#pragma GCC unroll 4
                for (int c = 0; c < NC; c++) acc[g][c] = VFMA(x[c], pg, acc[g][c]);
            }
        }
#pragma GCC unroll 4
        for (int g = 0; g < NG; g++)
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++)
                VSTORE(out + (size_t)(g0 + g) * hd + (size_t)b * 32 + c * W, acc[g][c]);
    }
}

#define QV_CASE(Q4, N)                                                                             \
    case N:                                                                                        \
        accum_qv_tile(Q4, N, hd, g0, p, p_stride, v, v_stride, live, dv, out);                     \
        break
/* accum_q of a Q8_0 or Q4_0 V, 32 rows at a time: the rows' block scales are widened together
 * (F16C) and the rows whose weights are all zero found once per group of heads (live_rows), before
 * the heads' sums (accum_qv_tile). The arithmetic is the reference's: x = d * q (exact), then one
 * FMA into each head's sum, rows in order. */
static void simd_accum_qv(uint32_t type, int32_t hd, int32_t G, const float *p, size_t p_stride,
                          const uint8_t *v, size_t v_stride, int32_t n, float *out)
{
    const int32_t nb = hd / 32;
    const size_t blk = nuri_kv_row_bytes(type, 32);
    for (int32_t j0 = 0; j0 < n; j0 += 32, p += 32, v += 32 * v_stride) {
        const int m = n - j0 < 32 ? n - j0 : 32;
        float dv[(NURI_KV_MAX_HD / 32) * 32] __attribute__((aligned(64)));
        uint16_t h[32] __attribute__((aligned(64)));
        for (int32_t b = 0; b < nb; b++) {
            for (int j = 0; j < m; j++)
                memcpy(&h[j], v + (size_t)j * v_stride + (size_t)b * blk, 2);
            for (int j = m; j < 32; j++) h[j] = 0;
            for (int c = 0; c < 32; c += W) VSTORE(dv + b * 32 + c, VCVTPH(h + c));
        }
        for (int32_t g0 = 0; g0 < G; g0 += 4) {
            const int ng = G - g0 < 4 ? G - g0 : 4;
            const uint32_t live = live_rows(p + (size_t)g0 * p_stride, p_stride, ng, m);
            if (!live) continue;
            if (type == NURI_TYPE_Q4_0) switch (ng) {
                    QV_CASE(1, 4);
                    QV_CASE(1, 3);
                    QV_CASE(1, 2);
                    QV_CASE(1, 1);
                }
            else
                switch (ng) {
                    QV_CASE(0, 4);
                    QV_CASE(0, 3);
                    QV_CASE(0, 2);
                    QV_CASE(0, 1);
                }
        }
    }
}

/* accum_q: per 32-element block of V and group of up to 4 heads, the outputs stay in registers
 * across all n rows; each row's block is widened to floats (d * q, the scalar's products) and
 * added in, rows in increasing order (as accum and the reference). */
static void simd_accum_q(uint32_t type, int32_t hd, int32_t G, const float *p, size_t p_stride,
                         const uint8_t *v, size_t v_stride, int32_t n, float *out)
{
    if (hd <= NURI_KV_MAX_HD) {
        simd_accum_qv(type, hd, G, p, p_stride, v, v_stride, n, out);
        return;
    }
    enum { NC = 32 / W };
    const size_t blk = nuri_kv_row_bytes(type, 32);
    float x[32] __attribute__((aligned(64)));
    for (int32_t b = 0; b < hd / 32; b++)
        for (int32_t g0 = 0; g0 < G; g0 += 4) {
            const int ng = G - g0 < 4 ? G - g0 : 4;
            VF acc[4][NC];
            for (int g = 0; g < ng; g++)
                for (int c = 0; c < NC; c++)
                    acc[g][c] = VLOAD(out + (size_t)(g0 + g) * hd + (size_t)b * 32 + c * W);
            for (int32_t j = 0; j < n; j++) {
                bool any = false;
                for (int g = 0; g < ng; g++) any |= p[(size_t)(g0 + g) * p_stride + j] != 0.0f;
                if (!any) continue;
                const uint8_t *vb = v + (size_t)j * v_stride + (size_t)b * blk;
                VF xv[NC];
                if (type == NURI_TYPE_Q8_0) {
                    uint16_t h;
                    memcpy(&h, vb, sizeof h);
                    const VF d = VSET1(nuri_f16_to_f32(h));
                    for (int c = 0; c < NC; c++) xv[c] = VMUL(VCVTI8(vb + 2 + c * W), d);
                } else {
                    nuri_kv_block_to_float(type, vb, x);
                    for (int c = 0; c < NC; c++) xv[c] = VLOAD(x + c * W);
                }
                for (int g = 0; g < ng; g++) {
                    const VF pg = VSET1(p[(size_t)(g0 + g) * p_stride + j]);
                    for (int c = 0; c < NC; c++) acc[g][c] = VFMA(xv[c], pg, acc[g][c]);
                }
            }
            for (int g = 0; g < ng; g++)
                for (int c = 0; c < NC; c++)
                    VSTORE(out + (size_t)(g0 + g) * hd + (size_t)b * 32 + c * W, acc[g][c]);
        }
}
