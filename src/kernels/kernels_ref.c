/*
 * kernels_ref.c: the scalar reference kernels: the truth every SIMD variant is tested against.
 *
 * For each computable type: to_float (dequantize), from_float (quantize), and vec_dot against the
 * type's vec_dot_type (kernels.h). Dot products are exact integer sums per block or sub-block,
 * scaled by the float block scales and accumulated in float, the way llama.cpp rounds. The
 * activation quantizers (Q8_0, Q8_1, Q8_K) are bit-exact with llama.cpp's; the weight quantizers
 * are plain round-to-nearest (valid, not optimal: they exist to make test data).
 *
 * Plain C, no intrinsics: this file runs on any x86-64 (and any other CPU).
 */
#include "kernels/fp16.h"
#include "kernels/kernels_impl.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

#define F16(h) nuri_f16_to_f32(h)

static inline int clampi(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static inline int round_int(float x) // half to even under the default rounding mode
{
    return (int)nearbyintf(x);
}

/* ======================================================================================== */
/* F32, F16, BF16                                                                            */
/* ======================================================================================== */

static void f32_to_float(const void *restrict x, float *restrict y, int64_t n)
{
    memcpy(y, x, (size_t)n * sizeof(float));
}

static void f32_from_float(const float *restrict x, void *restrict y, int64_t n)
{
    memcpy(y, x, (size_t)n * sizeof(float));
}

static void f32_vec_dot(int64_t n, float *restrict s, const void *restrict vx,
                        const void *restrict vy)
{
    const float *x = vx, *y = vy;
    float sum = 0;
    for (int64_t i = 0; i < n; i++) sum += x[i] * y[i];
    *s = sum;
}

static void f16_to_float(const void *restrict x, float *restrict y, int64_t n)
{
    nuri_f16_to_f32_row(x, y, n);
}

static void f16_from_float(const float *restrict x, void *restrict y, int64_t n)
{
    nuri_f32_to_f16_row(x, y, n);
}

static void f16_vec_dot(int64_t n, float *restrict s, const void *restrict vx,
                        const void *restrict vy)
{
    const uint16_t *x = vx, *y = vy;
    float sum = 0;
    for (int64_t i = 0; i < n; i++) sum += F16(x[i]) * F16(y[i]);
    *s = sum;
}

static void bf16_to_float(const void *restrict x, float *restrict y, int64_t n)
{
    nuri_bf16_to_f32_row(x, y, n);
}

static void bf16_from_float(const float *restrict x, void *restrict y, int64_t n)
{
    nuri_f32_to_bf16_row(x, y, n);
}

static void bf16_vec_dot(int64_t n, float *restrict s, const void *restrict vx,
                         const void *restrict vy)
{
    const uint16_t *x = vx, *y = vy;
    float sum = 0;
    for (int64_t i = 0; i < n; i++) sum += nuri_bf16_to_f32(x[i]) * nuri_bf16_to_f32(y[i]);
    *s = sum;
}

/* ======================================================================================== */
/* Activation quantizers: Q8_0, Q8_1, Q8_K (bit-exact with llama.cpp)                         */
/* ======================================================================================== */

static void q8_0_from_float(const float *restrict x, void *restrict vy, int64_t n)
{
    nuri_block_q8_0 *y = vy;
    for (int64_t i = 0; i < n / NURI_QK; i++, x += NURI_QK) {
        float amax = 0;
        for (int j = 0; j < NURI_QK; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.f;
        float id = amax != 0 ? 127.f / amax : 0.f;
        y[i].d = nuri_f32_to_f16(d);
        for (int j = 0; j < NURI_QK; j++) y[i].qs[j] = (int8_t)round_int(x[j] * id);
    }
}

static void q8_0_to_float(const void *restrict vx, float *restrict y, int64_t n)
{
    const nuri_block_q8_0 *x = vx;
    for (int64_t i = 0; i < n / NURI_QK; i++) {
        float d = F16(x[i].d);
        for (int j = 0; j < NURI_QK; j++) *y++ = d * x[i].qs[j];
    }
}

static void q8_1_from_float(const float *restrict x, void *restrict vy, int64_t n)
{
    nuri_block_q8_1 *y = vy;
    for (int64_t i = 0; i < n / NURI_QK; i++, x += NURI_QK) {
        float amax = 0;
        for (int j = 0; j < NURI_QK; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.f;
        float id = amax != 0 ? 127.f / amax : 0.f;
        int sum = 0;
        for (int j = 0; j < NURI_QK; j++) {
            y[i].qs[j] = (int8_t)round_int(x[j] * id);
            sum += y[i].qs[j];
        }
        y[i].d = nuri_f32_to_f16(d);
        y[i].s = nuri_f32_to_f16(d * (float)sum);
    }
}

static void q8_1_to_float(const void *restrict vx, float *restrict y, int64_t n)
{
    const nuri_block_q8_1 *x = vx;
    for (int64_t i = 0; i < n / NURI_QK; i++) {
        float d = F16(x[i].d);
        for (int j = 0; j < NURI_QK; j++) *y++ = d * x[i].qs[j];
    }
}

static void q8_K_from_float(const float *restrict x, void *restrict vy, int64_t n)
{
    nuri_block_q8_K *y = vy;
    for (int64_t i = 0; i < n / NURI_QK_K; i++, x += NURI_QK_K) {
        float amax = 0, max = 0;
        for (int j = 0; j < NURI_QK_K; j++) {
            float ax = fabsf(x[j]);
            if (ax > amax) {
                amax = ax;
                max = x[j];
            }
        }
        if (amax == 0) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        float iscale = -127.f / max;
        for (int j = 0; j < NURI_QK_K; j++) {
            int v = round_int(iscale * x[j]);
            y[i].qs[j] = (int8_t)(v < 127 ? v : 127);
        }
        for (int j = 0; j < NURI_QK_K / 16; j++) {
            int sum = 0;
            for (int k = 0; k < 16; k++) sum += y[i].qs[16 * j + k];
            y[i].bsums[j] = (int16_t)sum;
        }
        y[i].d = 1 / iscale;
    }
}

static void q8_K_to_float(const void *restrict vx, float *restrict y, int64_t n)
{
    const nuri_block_q8_K *x = vx;
    for (int64_t i = 0; i < n / NURI_QK_K; i++)
        for (int j = 0; j < NURI_QK_K; j++) *y++ = x[i].d * x[i].qs[j];
}

/* ======================================================================================== */
/* Simple 32-element weight types: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0                               */
/* ======================================================================================== */

/* The value with the largest magnitude (signed), and min / max of a block. */
static float signed_absmax(const float *x, int n)
{
    float amax = 0, max = 0;
    for (int j = 0; j < n; j++)
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    return max;
}

static void min_max(const float *x, int n, float *mn, float *mx)
{
    *mn = x[0];
    *mx = x[0];
    for (int j = 1; j < n; j++) {
        *mn = fminf(*mn, x[j]);
        *mx = fmaxf(*mx, x[j]);
    }
}

static void q4_0_from_float(const float *restrict x, void *restrict vy, int64_t n)
{
    nuri_block_q4_0 *y = vy;
    for (int64_t i = 0; i < n / NURI_QK; i++, x += NURI_QK) {
        float d = signed_absmax(x, NURI_QK) / -8.f; // the extreme value maps to q = -8
        float id = d != 0 ? 1.f / d : 0.f;
        y[i].d = nuri_f32_to_f16(d);
        for (int j = 0; j < NURI_QK / 2; j++) {
            int a = clampi(round_int(x[j] * id) + 8, 0, 15);
            int b = clampi(round_int(x[j + 16] * id) + 8, 0, 15);
            y[i].qs[j] = (uint8_t)(a | b << 4);
        }
    }
}

static void q4_0_to_float(const void *restrict vx, float *restrict y, int64_t n)
{
    const nuri_block_q4_0 *x = vx;
    for (int64_t i = 0; i < n / NURI_QK; i++, y += NURI_QK) {
        float d = F16(x[i].d);
        for (int j = 0; j < NURI_QK / 2; j++) {
            y[j] = d * ((x[i].qs[j] & 15) - 8);
            y[j + 16] = d * ((x[i].qs[j] >> 4) - 8);
        }
    }
}

static void q4_1_from_float(const float *restrict x, void *restrict vy, int64_t n)
{
    nuri_block_q4_1 *y = vy;
    for (int64_t i = 0; i < n / NURI_QK; i++, x += NURI_QK) {
        float mn, mx;
        min_max(x, NURI_QK, &mn, &mx);
        float d = (mx - mn) / 15.f;
        float id = d != 0 ? 1.f / d : 0.f;
        y[i].d = nuri_f32_to_f16(d);
        y[i].m = nuri_f32_to_f16(mn);
        for (int j = 0; j < NURI_QK / 2; j++) {
            int a = clampi(round_int((x[j] - mn) * id), 0, 15);
            int b = clampi(round_int((x[j + 16] - mn) * id), 0, 15);
            y[i].qs[j] = (uint8_t)(a | b << 4);
        }
    }
}

static void q4_1_to_float(const void *restrict vx, float *restrict y, int64_t n)
{
    const nuri_block_q4_1 *x = vx;
    for (int64_t i = 0; i < n / NURI_QK; i++, y += NURI_QK) {
        float d = F16(x[i].d), m = F16(x[i].m);
        for (int j = 0; j < NURI_QK / 2; j++) {
            y[j] = d * (x[i].qs[j] & 15) + m;
            y[j + 16] = d * (x[i].qs[j] >> 4) + m;
        }
    }
}

static void q5_0_from_float(const float *restrict x, void *restrict vy, int64_t n)
{
    nuri_block_q5_0 *y = vy;
    for (int64_t i = 0; i < n / NURI_QK; i++, x += NURI_QK) {
        float d = signed_absmax(x, NURI_QK) / -16.f;
        float id = d != 0 ? 1.f / d : 0.f;
        y[i].d = nuri_f32_to_f16(d);
        uint32_t qh = 0;
        for (int j = 0; j < NURI_QK / 2; j++) {
            int a = clampi(round_int(x[j] * id) + 16, 0, 31);
            int b = clampi(round_int(x[j + 16] * id) + 16, 0, 31);
            y[i].qs[j] = (uint8_t)((a & 15) | (b & 15) << 4);
            qh |= (uint32_t)(a >> 4) << j | (uint32_t)(b >> 4) << (j + 16);
        }
        memcpy(y[i].qh, &qh, 4);
    }
}

static void q5_0_to_float(const void *restrict vx, float *restrict y, int64_t n)
{
    const nuri_block_q5_0 *x = vx;
    for (int64_t i = 0; i < n / NURI_QK; i++, y += NURI_QK) {
        float d = F16(x[i].d);
        uint32_t qh;
        memcpy(&qh, x[i].qh, 4);
        for (int j = 0; j < NURI_QK / 2; j++) {
            int a = (x[i].qs[j] & 15) | ((qh >> j) & 1) << 4;
            int b = (x[i].qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4;
            y[j] = d * (a - 16);
            y[j + 16] = d * (b - 16);
        }
    }
}

static void q5_1_from_float(const float *restrict x, void *restrict vy, int64_t n)
{
    nuri_block_q5_1 *y = vy;
    for (int64_t i = 0; i < n / NURI_QK; i++, x += NURI_QK) {
        float mn, mx;
        min_max(x, NURI_QK, &mn, &mx);
        float d = (mx - mn) / 31.f;
        float id = d != 0 ? 1.f / d : 0.f;
        y[i].d = nuri_f32_to_f16(d);
        y[i].m = nuri_f32_to_f16(mn);
        uint32_t qh = 0;
        for (int j = 0; j < NURI_QK / 2; j++) {
            int a = clampi(round_int((x[j] - mn) * id), 0, 31);
            int b = clampi(round_int((x[j + 16] - mn) * id), 0, 31);
            y[i].qs[j] = (uint8_t)((a & 15) | (b & 15) << 4);
            qh |= (uint32_t)(a >> 4) << j | (uint32_t)(b >> 4) << (j + 16);
        }
        memcpy(y[i].qh, &qh, 4);
    }
}

static void q5_1_to_float(const void *restrict vx, float *restrict y, int64_t n)
{
    const nuri_block_q5_1 *x = vx;
    for (int64_t i = 0; i < n / NURI_QK; i++, y += NURI_QK) {
        float d = F16(x[i].d), m = F16(x[i].m);
        uint32_t qh;
        memcpy(&qh, x[i].qh, 4);
        for (int j = 0; j < NURI_QK / 2; j++) {
            int a = (x[i].qs[j] & 15) | ((qh >> j) & 1) << 4;
            int b = (x[i].qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4;
            y[j] = d * a + m;
            y[j + 16] = d * b + m;
        }
    }
}

/* ---- the 4-bit grid types: IQ4_NL, IQ4_XS, MXFP4 ---- */

/* The grid entry nearest to v (IQ4's grid is sorted; ties to the lower entry). */
static int iq4_nearest(float v)
{
    int lo = 0, hi = 15;
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (v < nuri_iq4_grid[mid])
            hi = mid;
        else
            lo = mid;
    }
    return v - nuri_iq4_grid[lo] <= nuri_iq4_grid[hi] - v ? lo : hi;
}

/* 32 elements of a 4-bit grid type: 16 bytes of codes (element j: qs[j] & 15, element j + 16:
 * qs[j] >> 4) looked up in grid, times d into y; and their exact integer dot with 32 int8. */
static void grid32_to_float(const int8_t *grid, float d, const uint8_t *qs, float *y)
{
    for (int j = 0; j < 16; j++) {
        y[j] = d * grid[qs[j] & 15];
        y[j + 16] = d * grid[qs[j] >> 4];
    }
}

static int grid32_dot(const int8_t *grid, const uint8_t *qs, const int8_t *q8)
{
    int sum = 0;
    for (int j = 0; j < 16; j++) sum += grid[qs[j] & 15] * q8[j] + grid[qs[j] >> 4] * q8[j + 16];
    return sum;
}

/*
 * The scale of a run of n values on the IQ4 grid, and their codes: candidates map the value of
 * largest magnitude onto grid points near either end (the grid is lopsided: -127 .. 113), each
 * candidate's codes are refit by least squares (weights x^2 + mean x^2, so large values count
 * more without zero weights), and the candidate with the smallest weighted error wins. Returns
 * the scale (0 for an all-zero run; the codes are then those of the value 0 at scale 1).
 */
static float iq4_fit(const float *x, int n, uint8_t *codes)
{
    float amax = 0, max = 0, sumx2 = 0;
    for (int j = 0; j < n; j++) {
        sumx2 += x[j] * x[j];
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    if (amax == 0) {
        for (int j = 0; j < n; j++) codes[j] = (uint8_t)iq4_nearest(0);
        return 0;
    }
    const float wbase = sumx2 / (float)n;
    float best_d = 0, best_err = INFINITY;
    uint8_t cand[NURI_QK_K];
    static const float ends[] = {-127, -120, -113, -104, 113, 106, 100};
    for (size_t c = 0; c < sizeof ends / sizeof ends[0]; c++) {
        float d = max / ends[c];
        float id = 1 / d;
        float sxq = 0, sqq = 0;
        for (int j = 0; j < n; j++) {
            cand[j] = (uint8_t)iq4_nearest(x[j] * id);
            float w = x[j] * x[j] + wbase, q = nuri_iq4_grid[cand[j]];
            sxq += w * x[j] * q;
            sqq += w * q * q;
        }
        if (sqq <= 0) continue;
        d = sxq / sqq; // the least-squares scale for these codes
        float err = 0;
        for (int j = 0; j < n; j++) {
            float e = x[j] - d * nuri_iq4_grid[cand[j]];
            err += (x[j] * x[j] + wbase) * e * e;
        }
        if (err < best_err) {
            best_err = err;
            best_d = d;
            memcpy(codes, cand, (size_t)n);
        }
    }
    return best_d;
}

static void iq4_nl_from_float(const float *restrict x, void *restrict vy, int64_t n)
{
    nuri_block_iq4_nl *y = vy;
    for (int64_t i = 0; i < n / NURI_QK; i++, x += NURI_QK) {
        uint8_t q[NURI_QK];
        float d = iq4_fit(x, NURI_QK, q);
        y[i].d = nuri_f32_to_f16(d);
        float ds = F16(y[i].d);
        if (ds != 0) // codes again for the scale as stored
            for (int j = 0; j < NURI_QK; j++) q[j] = (uint8_t)iq4_nearest(x[j] / ds);
        for (int j = 0; j < NURI_QK / 2; j++) y[i].qs[j] = (uint8_t)(q[j] | q[j + 16] << 4);
    }
}

static void iq4_nl_to_float(const void *restrict vx, float *restrict y, int64_t n)
{
    const nuri_block_iq4_nl *x = vx;
    for (int64_t i = 0; i < n / NURI_QK; i++, y += NURI_QK) {
        grid32_to_float(nuri_iq4_grid, F16(x[i].d), x[i].qs, y);
    }
}

static int iq4_xs_scale(const nuri_block_iq4_xs *b, int j)
{
    return (((b->scales_l[j / 2] >> 4 * (j % 2)) & 15) | ((b->scales_h >> 2 * j) & 3) << 4) - 32;
}

/* Each sub-block's own best scale first; the block scale d maps the one of largest magnitude
 * to -32 (the 6-bit scales are -32..31), then each sub-block's codes are chosen again for its
 * rounded scale d * ls. */
static void iq4_xs_from_float(const float *restrict x, void *restrict vy, int64_t n)
{
    nuri_block_iq4_xs *y = vy;
    for (int64_t i = 0; i < n / NURI_QK_K; i++, x += NURI_QK_K) {
        float sub[8], smax = 0;
        uint8_t q[NURI_QK_K];
        for (int j = 0; j < 8; j++) {
            sub[j] = iq4_fit(x + 32 * j, 32, q + 32 * j);
            if (fabsf(sub[j]) > fabsf(smax)) smax = sub[j];
        }
        float d = smax / -32.f;
        y[i].d = nuri_f32_to_f16(d);
        d = F16(y[i].d);
        float id = d != 0 ? 1 / d : 0;
        memset(y[i].scales_l, 0, sizeof y[i].scales_l);
        y[i].scales_h = 0;
        for (int j = 0; j < 8; j++) {
            int ls = clampi(round_int(sub[j] * id), -32, 31) + 32;
            y[i].scales_l[j / 2] |= (uint8_t)((ls & 15) << 4 * (j % 2));
            y[i].scales_h |= (uint16_t)((ls >> 4) << 2 * j);
            float dl = d * (float)(ls - 32);
            const float *xs = x + 32 * j;
            uint8_t *qs = q + 32 * j;
            if (dl != 0)
                for (int k = 0; k < 32; k++) qs[k] = (uint8_t)iq4_nearest(xs[k] / dl);
            for (int k = 0; k < 16; k++) y[i].qs[16 * j + k] = (uint8_t)(qs[k] | qs[k + 16] << 4);
        }
    }
}

static void iq4_xs_to_float(const void *restrict vx, float *restrict y, int64_t n)
{
    const nuri_block_iq4_xs *x = vx;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        float d = F16(x[i].d);
        for (int j = 0; j < 8; j++, y += 32)
            grid32_to_float(nuri_iq4_grid, d * (float)iq4_xs_scale(&x[i], j), x[i].qs + 16 * j, y);
    }
}

/* The FP4 grid entry nearest to v (first on ties). */
static int fp4_nearest(float v)
{
    int best = 0;
    float be = INFINITY;
    for (int k = 0; k < 16; k++) {
        float e = fabsf(v - nuri_fp4_grid[k]);
        if (e < be) {
            be = e;
            best = k;
        }
    }
    return best;
}

/* The exponent: the smallest that keeps the largest value inside the grid (|q| <= 12 doubled),
 * or one below it when that rounds the block more closely (clipping only the largest value). */
static void mxfp4_from_float(const float *restrict x, void *restrict vy, int64_t n)
{
    nuri_block_mxfp4 *y = vy;
    for (int64_t i = 0; i < n / NURI_QK; i++, x += NURI_QK) {
        float amax = 0;
        for (int j = 0; j < NURI_QK; j++) amax = fmaxf(amax, fabsf(x[j]));
        int e0 = 0;
        if (amax > 0) {
            e0 = (int)ceilf(log2f(amax / 12.f)) + 128;
            e0 = clampi(e0, 1, 254);
            while (e0 < 254 && amax / nuri_e8m0_half((uint8_t)e0) > 12.f) e0++; // log2f rounding
        }
        int best_e = e0;
        float best_err = INFINITY;
        for (int e = e0; e >= e0 - 1 && e >= 0; e--) {
            float d = nuri_e8m0_half((uint8_t)e), err = 0;
            for (int j = 0; j < NURI_QK; j++) {
                float r = x[j] - d * nuri_fp4_grid[fp4_nearest(x[j] / d)];
                err += r * r;
            }
            if (err < best_err) {
                best_err = err;
                best_e = e;
            }
        }
        y[i].e = (uint8_t)best_e;
        float d = nuri_e8m0_half(y[i].e);
        for (int j = 0; j < NURI_QK / 2; j++)
            y[i].qs[j] = (uint8_t)(fp4_nearest(x[j] / d) | fp4_nearest(x[j + 16] / d) << 4);
    }
}

static void mxfp4_to_float(const void *restrict vx, float *restrict y, int64_t n)
{
    const nuri_block_mxfp4 *x = vx;
    for (int64_t i = 0; i < n / NURI_QK; i++, y += NURI_QK) {
        grid32_to_float(nuri_fp4_grid, nuri_e8m0_half(x[i].e), x[i].qs, y);
    }
}

/* ---- vec_dot of the simple types ---- */

static void q4_0_vec_dot(int64_t n, float *restrict s, const void *restrict vx,
                         const void *restrict vy)
{
    const nuri_block_q4_0 *x = vx;
    const nuri_block_q8_0 *y = vy;
    float sum = 0;
    for (int64_t i = 0; i < n / NURI_QK; i++) {
        int sumi = 0;
        for (int j = 0; j < NURI_QK / 2; j++)
            sumi +=
                ((x[i].qs[j] & 15) - 8) * y[i].qs[j] + ((x[i].qs[j] >> 4) - 8) * y[i].qs[j + 16];
        sum += F16(x[i].d) * F16(y[i].d) * (float)sumi;
    }
    *s = sum;
}

static void q4_1_vec_dot(int64_t n, float *restrict s, const void *restrict vx,
                         const void *restrict vy)
{
    const nuri_block_q4_1 *x = vx;
    const nuri_block_q8_1 *y = vy;
    float sum = 0;
    for (int64_t i = 0; i < n / NURI_QK; i++) {
        int sumi = 0;
        for (int j = 0; j < NURI_QK / 2; j++)
            sumi += (x[i].qs[j] & 15) * y[i].qs[j] + (x[i].qs[j] >> 4) * y[i].qs[j + 16];
        sum += F16(x[i].d) * F16(y[i].d) * (float)sumi + F16(x[i].m) * F16(y[i].s);
    }
    *s = sum;
}

static void q5_0_vec_dot(int64_t n, float *restrict s, const void *restrict vx,
                         const void *restrict vy)
{
    const nuri_block_q5_0 *x = vx;
    const nuri_block_q8_0 *y = vy;
    float sum = 0;
    for (int64_t i = 0; i < n / NURI_QK; i++) {
        uint32_t qh;
        memcpy(&qh, x[i].qh, 4);
        int sumi = 0;
        for (int j = 0; j < NURI_QK / 2; j++) {
            int a = ((x[i].qs[j] & 15) | ((qh >> j) & 1) << 4) - 16;
            int b = ((x[i].qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4) - 16;
            sumi += a * y[i].qs[j] + b * y[i].qs[j + 16];
        }
        sum += F16(x[i].d) * F16(y[i].d) * (float)sumi;
    }
    *s = sum;
}

static void q5_1_vec_dot(int64_t n, float *restrict s, const void *restrict vx,
                         const void *restrict vy)
{
    const nuri_block_q5_1 *x = vx;
    const nuri_block_q8_1 *y = vy;
    float sum = 0;
    for (int64_t i = 0; i < n / NURI_QK; i++) {
        uint32_t qh;
        memcpy(&qh, x[i].qh, 4);
        int sumi = 0;
        for (int j = 0; j < NURI_QK / 2; j++) {
            int a = (x[i].qs[j] & 15) | ((qh >> j) & 1) << 4;
            int b = (x[i].qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4;
            sumi += a * y[i].qs[j] + b * y[i].qs[j + 16];
        }
        sum += F16(x[i].d) * F16(y[i].d) * (float)sumi + F16(x[i].m) * F16(y[i].s);
    }
    *s = sum;
}

/* IQ4_NL and MXFP4: per block an exact integer sum, one float multiply-add (as llama.cpp). */
static void iq4_nl_vec_dot(int64_t n, float *restrict s, const void *restrict vx,
                           const void *restrict vy)
{
    const nuri_block_iq4_nl *x = vx;
    const nuri_block_q8_0 *y = vy;
    float sum = 0;
    for (int64_t i = 0; i < n / NURI_QK; i++) {
        const int sumi = grid32_dot(nuri_iq4_grid, x[i].qs, y[i].qs);
        sum += F16(x[i].d) * F16(y[i].d) * (float)sumi;
    }
    *s = sum;
}

static void mxfp4_vec_dot(int64_t n, float *restrict s, const void *restrict vx,
                          const void *restrict vy)
{
    const nuri_block_mxfp4 *x = vx;
    const nuri_block_q8_0 *y = vy;
    float sum = 0;
    for (int64_t i = 0; i < n / NURI_QK; i++) {
        const int sumi = grid32_dot(nuri_fp4_grid, x[i].qs, y[i].qs);
        sum += nuri_e8m0_half(x[i].e) * F16(y[i].d) * (float)sumi;
    }
    *s = sum;
}

/* IQ4_XS: the sub-block scales inside the exact integer sum, one float step per 256 elements. */
static void iq4_xs_vec_dot(int64_t n, float *restrict s, const void *restrict vx,
                           const void *restrict vy)
{
    const nuri_block_iq4_xs *x = vx;
    const nuri_block_q8_K *y = vy;
    float sum = 0;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        int sumi = 0;
        for (int j = 0; j < 8; j++)
            sumi += iq4_xs_scale(&x[i], j) *
                    grid32_dot(nuri_iq4_grid, x[i].qs + 16 * j, y[i].qs + 32 * j);
        sum += F16(x[i].d) * y[i].d * (float)sumi;
    }
    *s = sum;
}

static void q8_0_vec_dot(int64_t n, float *restrict s, const void *restrict vx,
                         const void *restrict vy)
{
    const nuri_block_q8_0 *x = vx;
    const nuri_block_q8_0 *y = vy;
    float sum = 0;
    for (int64_t i = 0; i < n / NURI_QK; i++) {
        int sumi = 0;
        for (int j = 0; j < NURI_QK; j++) sumi += x[i].qs[j] * y[i].qs[j];
        sum += F16(x[i].d) * F16(y[i].d) * (float)sumi;
    }
    *s = sum;
}

/* ======================================================================================== */
/* K-quants: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K                                                     */
/* ======================================================================================== */

/* For an asymmetric sub-block: scale and min (min >= 0) such that x ~ scale * q - min,
 * q in 0..qmax. The range always includes 0 so that min is non-negative. */
static void sub_range(const float *x, int n, int qmax, float *scale, float *min)
{
    float mn, mx;
    min_max(x, n, &mn, &mx);
    if (mn > 0) mn = 0;
    if (mx < mn) mx = mn;
    *scale = (mx - mn) / (float)qmax;
    *min = -mn;
}

static float fmax_array(const float *v, int n)
{
    float m = 0;
    for (int i = 0; i < n; i++) m = fmaxf(m, v[i]);
    return m;
}

static void q2_K_from_float(const float *restrict x, void *restrict vy, int64_t n)
{
    nuri_block_q2_K *y = vy;
    for (int64_t i = 0; i < n / NURI_QK_K; i++, x += NURI_QK_K) {
        float sc[16], mn[16];
        for (int j = 0; j < 16; j++) sub_range(x + 16 * j, 16, 3, &sc[j], &mn[j]);
        float d = fmax_array(sc, 16) / 15.f, dmin = fmax_array(mn, 16) / 15.f;
        y[i].d = nuri_f32_to_f16(d);
        y[i].dmin = nuri_f32_to_f16(dmin);
        d = F16(y[i].d);
        dmin = F16(y[i].dmin);
        int L[NURI_QK_K];
        for (int j = 0; j < 16; j++) {
            int isc = d != 0 ? clampi(round_int(sc[j] / d), 0, 15) : 0;
            int imn = dmin != 0 ? clampi(round_int(mn[j] / dmin), 0, 15) : 0;
            y[i].scales[j] = (uint8_t)(isc | imn << 4);
            float ds = d * isc, dm = dmin * imn;
            for (int k = 0; k < 16; k++)
                L[16 * j + k] = ds != 0 ? clampi(round_int((x[16 * j + k] + dm) / ds), 0, 3) : 0;
        }
        for (int h = 0; h < 2; h++)
            for (int l = 0; l < 32; l++) {
                const int *q = L + 128 * h + l;
                y[i].qs[32 * h + l] = (uint8_t)(q[0] | q[32] << 2 | q[64] << 4 | q[96] << 6);
            }
    }
}

static void q2_K_to_float(const void *restrict vx, float *restrict y, int64_t n)
{
    const nuri_block_q2_K *x = vx;
    for (int64_t i = 0; i < n / NURI_QK_K; i++, y += NURI_QK_K) {
        float d = F16(x[i].d), dmin = F16(x[i].dmin);
        for (int e = 0; e < NURI_QK_K; e++) {
            int h = e / 128, j = (e / 32) % 4, l = e % 32;
            int q = (x[i].qs[32 * h + l] >> (2 * j)) & 3;
            uint8_t sc = x[i].scales[e / 16];
            y[e] = d * (sc & 15) * q - dmin * (sc >> 4);
        }
    }
}

static void q2_K_vec_dot(int64_t n, float *restrict s, const void *restrict vx,
                         const void *restrict vy)
{
    const nuri_block_q2_K *x = vx;
    const nuri_block_q8_K *y = vy;
    float sum = 0;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        int isum = 0, summ = 0;
        for (int e0 = 0; e0 < NURI_QK_K; e0 += 16) {
            int sumi = 0;
            for (int e = e0; e < e0 + 16; e++) {
                int q = (x[i].qs[32 * (e / 128) + e % 32] >> (2 * ((e / 32) % 4))) & 3;
                sumi += q * y[i].qs[e];
            }
            uint8_t sc = x[i].scales[e0 / 16];
            isum += (sc & 15) * sumi;
            summ += (sc >> 4) * y[i].bsums[e0 / 16];
        }
        sum += y[i].d * F16(x[i].d) * (float)isum - y[i].d * F16(x[i].dmin) * (float)summ;
    }
    *s = sum;
}

/* Q3_K: q in -4..3, symmetric. */
static void q3_K_from_float(const float *restrict x, void *restrict vy, int64_t n)
{
    nuri_block_q3_K *y = vy;
    for (int64_t i = 0; i < n / NURI_QK_K; i++, x += NURI_QK_K) {
        float sc[16];
        float amax = 0, max = 0;
        for (int j = 0; j < 16; j++) {
            sc[j] = signed_absmax(x + 16 * j, 16) / -4.f;
            if (fabsf(sc[j]) > amax) {
                amax = fabsf(sc[j]);
                max = sc[j];
            }
        }
        float d = max / -32.f;
        y[i].d = nuri_f32_to_f16(d);
        d = F16(y[i].d);
        memset(y[i].scales, 0, sizeof y[i].scales);
        memset(y[i].hmask, 0, sizeof y[i].hmask);
        memset(y[i].qs, 0, sizeof y[i].qs);
        for (int j = 0; j < 16; j++) {
            int is = d != 0 ? clampi(round_int(sc[j] / d), -32, 31) : 0;
            int u = is + 32; // 6 bits
            if (j < 8)
                y[i].scales[j] |= (uint8_t)(u & 15);
            else
                y[i].scales[j - 8] |= (uint8_t)((u & 15) << 4);
            y[i].scales[8 + j % 4] |= (uint8_t)((u >> 4) << (2 * (j / 4)));
            float ds = d * is;
            for (int k = 0; k < 16; k++) {
                int e = 16 * j + k;
                int q = ds != 0 ? clampi(round_int(x[e] / ds), -4, 3) : 0;
                int h = e / 128, jj = (e / 32) % 4, l = e % 32;
                int u2 = q + 4; // 0..7: bit 2 is the hmask bit
                y[i].qs[32 * h + l] |= (uint8_t)((u2 & 3) << (2 * jj));
                if (u2 & 4) y[i].hmask[l] |= (uint8_t)(1u << (4 * h + jj));
            }
        }
    }
}

static inline int q3_K_q(const nuri_block_q3_K *b, int e)
{
    int h = e / 128, j = (e / 32) % 4, l = e % 32;
    int q = (b->qs[32 * h + l] >> (2 * j)) & 3;
    return q - ((b->hmask[l] >> (4 * h + j)) & 1 ? 0 : 4);
}

static void q3_K_to_float(const void *restrict vx, float *restrict y, int64_t n)
{
    const nuri_block_q3_K *x = vx;
    for (int64_t i = 0; i < n / NURI_QK_K; i++, y += NURI_QK_K) {
        float d = F16(x[i].d);
        int8_t sc[16];
        kernels_scales_q3_K(x[i].scales, sc);
        for (int e = 0; e < NURI_QK_K; e++) y[e] = d * sc[e / 16] * q3_K_q(&x[i], e);
    }
}

static void q3_K_vec_dot(int64_t n, float *restrict s, const void *restrict vx,
                         const void *restrict vy)
{
    const nuri_block_q3_K *x = vx;
    const nuri_block_q8_K *y = vy;
    float sum = 0;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        int8_t sc[16];
        kernels_scales_q3_K(x[i].scales, sc);
        int isum = 0;
        for (int j = 0; j < 16; j++) {
            int sumi = 0;
            for (int e = 16 * j; e < 16 * j + 16; e++) sumi += q3_K_q(&x[i], e) * y[i].qs[e];
            isum += sc[j] * sumi;
        }
        sum += y[i].d * F16(x[i].d) * (float)isum;
    }
    *s = sum;
}

/* Packs 8 six-bit scales and mins into the 12-byte Q4_K / Q5_K layout (inverse of
 * kernels_scale_min_k4). */
static void pack_scale_min_k4(const uint8_t sc[8], const uint8_t m[8], uint8_t q[12])
{
    for (int j = 0; j < 4; j++) {
        q[j] = (uint8_t)((sc[j] & 63) | (sc[j + 4] >> 4) << 6);
        q[j + 4] = (uint8_t)((m[j] & 63) | (m[j + 4] >> 4) << 6);
        q[j + 8] = (uint8_t)((sc[j + 4] & 15) | (m[j + 4] & 15) << 4);
    }
}

/* Q4_K / Q5_K weights: 8 sub-blocks of 32, q in 0..qmax. Fills d, dmin, scales and L. */
static void k4_quantize(const float *x, int qmax, uint16_t *d16, uint16_t *dmin16,
                        uint8_t scales[12], int L[NURI_QK_K])
{
    float sc[8], mn[8];
    for (int j = 0; j < 8; j++) sub_range(x + 32 * j, 32, qmax, &sc[j], &mn[j]);
    *d16 = nuri_f32_to_f16(fmax_array(sc, 8) / 63.f);
    *dmin16 = nuri_f32_to_f16(fmax_array(mn, 8) / 63.f);
    float d = F16(*d16), dmin = F16(*dmin16);
    uint8_t isc[8], imn[8];
    for (int j = 0; j < 8; j++) {
        isc[j] = (uint8_t)(d != 0 ? clampi(round_int(sc[j] / d), 0, 63) : 0);
        imn[j] = (uint8_t)(dmin != 0 ? clampi(round_int(mn[j] / dmin), 0, 63) : 0);
        float ds = d * isc[j], dm = dmin * imn[j];
        for (int k = 0; k < 32; k++)
            L[32 * j + k] = ds != 0 ? clampi(round_int((x[32 * j + k] + dm) / ds), 0, qmax) : 0;
    }
    pack_scale_min_k4(isc, imn, scales);
}

static void q4_K_from_float(const float *restrict x, void *restrict vy, int64_t n)
{
    nuri_block_q4_K *y = vy;
    for (int64_t i = 0; i < n / NURI_QK_K; i++, x += NURI_QK_K) {
        int L[NURI_QK_K];
        k4_quantize(x, 15, &y[i].d, &y[i].dmin, y[i].scales, L);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++)
                y[i].qs[32 * c + l] = (uint8_t)(L[64 * c + l] | L[64 * c + 32 + l] << 4);
    }
}

static void q4_K_to_float(const void *restrict vx, float *restrict y, int64_t n)
{
    const nuri_block_q4_K *x = vx;
    for (int64_t i = 0; i < n / NURI_QK_K; i++, y += NURI_QK_K) {
        float d = F16(x[i].d), dmin = F16(x[i].dmin);
        for (int c = 0; c < 4; c++) {
            uint8_t sc0, m0, sc1, m1;
            kernels_scale_min_k4(2 * c, x[i].scales, &sc0, &m0);
            kernels_scale_min_k4(2 * c + 1, x[i].scales, &sc1, &m1);
            for (int l = 0; l < 32; l++) {
                y[64 * c + l] = d * sc0 * (x[i].qs[32 * c + l] & 15) - dmin * m0;
                y[64 * c + 32 + l] = d * sc1 * (x[i].qs[32 * c + l] >> 4) - dmin * m1;
            }
        }
    }
}

static void q4_K_vec_dot(int64_t n, float *restrict s, const void *restrict vx,
                         const void *restrict vy)
{
    const nuri_block_q4_K *x = vx;
    const nuri_block_q8_K *y = vy;
    float sum = 0;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        int isum = 0, summ = 0;
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            kernels_scale_min_k4(j, x[i].scales, &sc, &m);
            int c = j / 2, shift = 4 * (j % 2), sumi = 0;
            for (int l = 0; l < 32; l++)
                sumi += ((x[i].qs[32 * c + l] >> shift) & 15) * y[i].qs[32 * j + l];
            isum += sc * sumi;
            summ += m * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
        }
        sum += y[i].d * F16(x[i].d) * (float)isum - y[i].d * F16(x[i].dmin) * (float)summ;
    }
    *s = sum;
}

static void q5_K_from_float(const float *restrict x, void *restrict vy, int64_t n)
{
    nuri_block_q5_K *y = vy;
    for (int64_t i = 0; i < n / NURI_QK_K; i++, x += NURI_QK_K) {
        int L[NURI_QK_K];
        k4_quantize(x, 31, &y[i].d, &y[i].dmin, y[i].scales, L);
        memset(y[i].qh, 0, sizeof y[i].qh);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                int a = L[64 * c + l], b = L[64 * c + 32 + l];
                y[i].qs[32 * c + l] = (uint8_t)((a & 15) | (b & 15) << 4);
                y[i].qh[l] |= (uint8_t)((a >> 4) << (2 * c) | (b >> 4) << (2 * c + 1));
            }
    }
}

static inline int q5_K_q(const nuri_block_q5_K *b, int e)
{
    int c = e / 64, hi = (e / 32) % 2, l = e % 32;
    int q = (b->qs[32 * c + l] >> (4 * hi)) & 15;
    return q | ((b->qh[l] >> (2 * c + hi)) & 1) << 4;
}

static void q5_K_to_float(const void *restrict vx, float *restrict y, int64_t n)
{
    const nuri_block_q5_K *x = vx;
    for (int64_t i = 0; i < n / NURI_QK_K; i++, y += NURI_QK_K) {
        float d = F16(x[i].d), dmin = F16(x[i].dmin);
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            kernels_scale_min_k4(j, x[i].scales, &sc, &m);
            for (int e = 32 * j; e < 32 * j + 32; e++) y[e] = d * sc * q5_K_q(&x[i], e) - dmin * m;
        }
    }
}

static void q5_K_vec_dot(int64_t n, float *restrict s, const void *restrict vx,
                         const void *restrict vy)
{
    const nuri_block_q5_K *x = vx;
    const nuri_block_q8_K *y = vy;
    float sum = 0;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        int isum = 0, summ = 0;
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            kernels_scale_min_k4(j, x[i].scales, &sc, &m);
            int sumi = 0;
            for (int e = 32 * j; e < 32 * j + 32; e++) sumi += q5_K_q(&x[i], e) * y[i].qs[e];
            isum += sc * sumi;
            summ += m * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
        }
        sum += y[i].d * F16(x[i].d) * (float)isum - y[i].d * F16(x[i].dmin) * (float)summ;
    }
    *s = sum;
}

/* Q6_K: q in -32..31 with int8 sub-block scales. */
static void q6_K_from_float(const float *restrict x, void *restrict vy, int64_t n)
{
    nuri_block_q6_K *y = vy;
    for (int64_t i = 0; i < n / NURI_QK_K; i++, x += NURI_QK_K) {
        float sc[16], amax = 0, max = 0;
        for (int j = 0; j < 16; j++) {
            sc[j] = signed_absmax(x + 16 * j, 16) / -32.f;
            if (fabsf(sc[j]) > amax) {
                amax = fabsf(sc[j]);
                max = sc[j];
            }
        }
        float d = max / -128.f;
        y[i].d = nuri_f32_to_f16(d);
        d = F16(y[i].d);
        int L[NURI_QK_K];
        for (int j = 0; j < 16; j++) {
            int is = d != 0 ? clampi(round_int(sc[j] / d), -128, 127) : 0;
            y[i].scales[j] = (int8_t)is;
            float ds = d * is;
            for (int k = 0; k < 16; k++)
                L[16 * j + k] = ds != 0 ? clampi(round_int(x[16 * j + k] / ds), -32, 31) + 32 : 32;
        }
        for (int h = 0; h < 2; h++) {
            const int *q = L + 128 * h;
            uint8_t *ql = y[i].ql + 64 * h, *qh = y[i].qh + 32 * h;
            for (int l = 0; l < 32; l++) {
                ql[l] = (uint8_t)((q[l] & 15) | (q[l + 64] & 15) << 4);
                ql[l + 32] = (uint8_t)((q[l + 32] & 15) | (q[l + 96] & 15) << 4);
                qh[l] = (uint8_t)((q[l] >> 4) | (q[l + 32] >> 4) << 2 | (q[l + 64] >> 4) << 4 |
                                  (q[l + 96] >> 4) << 6);
            }
        }
    }
}

static inline int q6_K_q(const nuri_block_q6_K *b, int e)
{
    int h = e / 128, k = (e / 32) % 4, l = e % 32;
    const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
    int lo = (ql[l + 32 * (k & 1)] >> (4 * (k >> 1))) & 15;
    int hi = (qh[l] >> (2 * k)) & 3;
    return (lo | hi << 4) - 32;
}

static void q6_K_to_float(const void *restrict vx, float *restrict y, int64_t n)
{
    const nuri_block_q6_K *x = vx;
    for (int64_t i = 0; i < n / NURI_QK_K; i++, y += NURI_QK_K) {
        float d = F16(x[i].d);
        for (int e = 0; e < NURI_QK_K; e++) y[e] = d * x[i].scales[e / 16] * q6_K_q(&x[i], e);
    }
}

static void q6_K_vec_dot(int64_t n, float *restrict s, const void *restrict vx,
                         const void *restrict vy)
{
    const nuri_block_q6_K *x = vx;
    const nuri_block_q8_K *y = vy;
    float sum = 0;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        int isum = 0;
        for (int j = 0; j < 16; j++) {
            int sumi = 0;
            for (int e = 16 * j; e < 16 * j + 16; e++) sumi += q6_K_q(&x[i], e) * y[i].qs[e];
            isum += x[i].scales[j] * sumi;
        }
        sum += y[i].d * F16(x[i].d) * (float)isum;
    }
    *s = sum;
}

/* ======================================================================================== */
/* The table                                                                                  */
/* ======================================================================================== */

#define ROW(T, t, vdt)                                                                             \
    [NURI_TYPE_##T] = {.vec_dot_type = NURI_TYPE_##vdt,                                            \
                       .to_float = t##_to_float,                                                   \
                       .from_float = t##_from_float,                                               \
                       .vec_dot = t##_vec_dot}

/* Activation-only types: to_float and from_float, no vec_dot of their own. */
#define ACT(T, t)                                                                                  \
    [NURI_TYPE_##T] = {.vec_dot_type = NURI_TYPE_##T,                                              \
                       .to_float = t##_to_float,                                                   \
                       .from_float = t##_from_float,                                               \
                       .vec_dot = NULL}

const nuri_kernel_traits kernels_ref_table[NURI_TYPE_COUNT] = {
    ROW(F32, f32, F32),      ROW(F16, f16, F16),        ROW(BF16, bf16, BF16),
    ROW(Q4_0, q4_0, Q8_0),   ROW(Q4_1, q4_1, Q8_1),     ROW(Q5_0, q5_0, Q8_0),
    ROW(Q5_1, q5_1, Q8_1),   ROW(Q8_0, q8_0, Q8_0),     ROW(Q2_K, q2_K, Q8_K),
    ROW(Q3_K, q3_K, Q8_K),   ROW(Q4_K, q4_K, Q8_K),     ROW(Q5_K, q5_K, Q8_K),
    ROW(Q6_K, q6_K, Q8_K),   ROW(IQ4_NL, iq4_nl, Q8_0), ROW(IQ4_XS, iq4_xs, Q8_K),
    ROW(MXFP4, mxfp4, Q8_0), ACT(Q8_1, q8_1),           ACT(Q8_K, q8_K),
};
