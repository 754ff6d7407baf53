/*
 * kernels_iq.c: the scalar reference kernels of the grid types IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS,
 * IQ3_S, IQ1_S and IQ1_M: dequantize, the dot product with Q8_K activations, and the quantizers.
 *
 * Dot products: per sub-block an exact integer sum of grid value x sign x activation, times the
 * integer sub-block scale, summed over the block; then one float step per block of 256, in the
 * order llama.cpp's generic kernels use (so the two round alike). IQ1's +-1/8 shift enters as a
 * second integer sum over the activations' 16-sums, scaled at the end.
 *
 * Quantizers (no importance matrix; the weight of a value is x^2 plus the block's mean x^2): per
 * sub-block, seven trial scales; for each, every group takes the grid point nearest to it under the
 * weighted error (the lattice point from rounding each value, or when that point is not on the grid
 * the best of its nearest grid neighbours, precomputed once per grid); the scale is then refit by
 * least squares. The block scale maps the largest sub-block scale onto the largest integer scale
 * and every group is coded again for its sub-block's rounded scale. Deterministic; not as good as
 * llama.cpp's imatrix-guided search, documented in docs/MODELS.md with measured errors.
 *
 * Plain C, no intrinsics. The grids come from iq_grids.h (expanded by kernels_iq_init).
 */
#include "kernels/blocks_iq.h"
#include "kernels/fp16.h"
#include "kernels/iq_grids.h"
#include "kernels/kernels_impl.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define F16(h) nuri_f16_to_f32(h)

/* ======================================================================================== */
/* The grids                                                                                 */
/* ======================================================================================== */

uint64_t nuri_iq2xxs_grid[NURI_IQ2XXS_N];
uint64_t nuri_iq2xs_grid[NURI_IQ2XS_N];
uint64_t nuri_iq2s_grid[NURI_IQ2S_N];
uint32_t nuri_iq3xxs_grid[NURI_IQ3XXS_N];
uint32_t nuri_iq3s_grid[NURI_IQ3S_N];
uint64_t nuri_iq1s_grid[NURI_IQ1S_N];
uint64_t nuri_iq1s_grid8[NURI_IQ1S_N];

static const uint8_t lv_iq2[3] = {8, 25, 43};
static const uint8_t lv_iq3xxs[8] = {4, 12, 20, 28, 36, 44, 52, 62};
static const uint8_t lv_iq3s[8] = {1, 3, 5, 7, 9, 11, 13, 15};
static const uint8_t lv_iq1[3] = {0xFF, 0, 1}; // int8 -1, 0, 1

static uint64_t expand(uint16_t packed, int width, int bits, const uint8_t *levels)
{
    uint64_t v = 0;
    for (int k = 0; k < width; k++)
        v |= (uint64_t)levels[(packed >> (bits * k)) & ((1 << bits) - 1)] << (8 * k);
    return v;
}

uint8_t nuri_iq_ksigns[128];
uint64_t nuri_iq_sign64[256];
uint64_t nuri_iq_ksign64[128];

static void expand_all(void)
{
    for (uint32_t i = 0; i < 128; i++) nuri_iq_ksigns[i] = nuri_iq_signs7(i);
    for (uint32_t b = 0; b < 256; b++) {
        uint64_t v = 0;
        for (int k = 0; k < 8; k++) v |= (uint64_t)(b >> k & 1 ? 0xFF : 0x01) << (8 * k);
        nuri_iq_sign64[b] = v;
    }
    for (uint32_t i = 0; i < 128; i++) nuri_iq_ksign64[i] = nuri_iq_sign64[nuri_iq_ksigns[i]];
    for (int i = 0; i < NURI_IQ2XXS_N; i++)
        nuri_iq2xxs_grid[i] = expand(nuri_iq2xxs_packed[i], 8, 2, lv_iq2);
    for (int i = 0; i < NURI_IQ2XS_N; i++)
        nuri_iq2xs_grid[i] = expand(nuri_iq2xs_packed[i], 8, 2, lv_iq2);
    for (int i = 0; i < NURI_IQ2S_N; i++)
        nuri_iq2s_grid[i] = expand(nuri_iq2s_packed[i], 8, 2, lv_iq2);
    for (int i = 0; i < NURI_IQ3XXS_N; i++)
        nuri_iq3xxs_grid[i] = (uint32_t)expand(nuri_iq3xxs_packed[i], 4, 3, lv_iq3xxs);
    for (int i = 0; i < NURI_IQ3S_N; i++)
        nuri_iq3s_grid[i] = (uint32_t)expand(nuri_iq3s_packed[i], 4, 3, lv_iq3s);
    for (int i = 0; i < NURI_IQ1S_N; i++)
        nuri_iq1s_grid[i] = expand(nuri_iq1s_packed[i], 8, 2, lv_iq1);
    // 8 times each byte (-8, 0, 8): shifted left as one word, each byte keeps its own bits
    for (int i = 0; i < NURI_IQ1S_N; i++)
        nuri_iq1s_grid8[i] = nuri_iq1s_grid[i] << 3 & 0xF8F8F8F8F8F8F8F8ull;
}

static pthread_once_t expand_once = PTHREAD_ONCE_INIT;

void kernels_iq_init(void)
{
    pthread_once(&expand_once, expand_all);
}

/* Element k (0..7) of a point of an 8-wide grid, and of a 4-wide one. */
static inline int g8(uint64_t p, int k)
{
    return (uint8_t)(p >> (8 * k));
}
static inline int g8s(uint64_t p, int k) // IQ1: signed
{
    return (int8_t)(uint8_t)(p >> (8 * k));
}
static inline int g4(uint32_t p, int k)
{
    return (uint8_t)(p >> (8 * k));
}
static inline int sgn(uint8_t signs, int k)
{
    return signs >> k & 1 ? -1 : 1;
}

static inline uint32_t rd32(const void *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* ======================================================================================== */
/* Sub-block pieces shared by dequantize and the dot products                               */
/* ======================================================================================== */

/* IQ2_XXS sub-block j: the 4 points, 4 sign bytes, scale. */
static void iq2_xxs_sub(const nuri_block_iq2_xxs *b, int j, uint64_t pt[4], uint8_t sg[4], int *ls)
{
    uint32_t a0 = rd32(b->qs + 4 * j), a1 = rd32(b->qs + 4 * j + 2);
    for (int l = 0; l < 4; l++) {
        pt[l] = nuri_iq2xxs_grid[a0 >> (8 * l) & 255];
        sg[l] = nuri_iq_signs7(a1 >> (7 * l) & 127);
    }
    *ls = (int)(a1 >> 28);
}

static void iq2_xs_sub(const nuri_block_iq2_xs *b, int j, uint64_t pt[4], uint8_t sg[4], int ls[2])
{
    for (int l = 0; l < 4; l++) {
        uint16_t q = b->qs[4 * j + l];
        pt[l] = nuri_iq2xs_grid[q & 511];
        sg[l] = nuri_iq_signs7(q >> 9);
    }
    ls[0] = b->scales[j] & 15;
    ls[1] = b->scales[j] >> 4;
}

static void iq2_s_sub(const nuri_block_iq2_s *b, int j, uint64_t pt[4], uint8_t sg[4], int ls[2])
{
    for (int l = 0; l < 4; l++) {
        pt[l] = nuri_iq2s_grid[b->qs[4 * j + l] | (b->qh[j] >> (2 * l) & 3) << 8];
        sg[l] = b->qs[NURI_QK_K / 8 + 4 * j + l];
    }
    ls[0] = b->scales[j] & 15;
    ls[1] = b->scales[j] >> 4;
}

/* IQ3: 8 points of 4 (two per group of 8), 4 sign bytes. */
static void iq3_xxs_sub(const nuri_block_iq3_xxs *b, int j, uint32_t pt[8], uint8_t sg[4], int *ls)
{
    uint32_t a = rd32(b->qs + NURI_QK_K / 4 + 4 * j);
    for (int m = 0; m < 8; m++) pt[m] = nuri_iq3xxs_grid[b->qs[8 * j + m]];
    for (int l = 0; l < 4; l++) sg[l] = nuri_iq_signs7(a >> (7 * l) & 127);
    *ls = (int)(a >> 28);
}

static void iq3_s_sub(const nuri_block_iq3_s *b, int j, uint32_t pt[8], uint8_t sg[4], int *ls)
{
    for (int m = 0; m < 8; m++) pt[m] = nuri_iq3s_grid[b->qs[8 * j + m] | (b->qh[j] >> m & 1) << 8];
    for (int l = 0; l < 4; l++) sg[l] = b->signs[4 * j + l];
    *ls = b->scales[j / 2] >> (4 * (j % 2)) & 15;
}

/* IQ1_S sub-block j: 4 points, scale, delta sign (-1 or +1). */
static void iq1_s_sub(const nuri_block_iq1_s *b, int j, uint64_t pt[4], int *ls, int *dsign)
{
    uint16_t h = b->qh[j];
    for (int l = 0; l < 4; l++) pt[l] = nuri_iq1s_grid[b->qs[4 * j + l] | (h >> (3 * l) & 7) << 8];
    *ls = h >> 12 & 7;
    *dsign = h & 0x8000 ? -1 : 1;
}

static uint16_t iq1_m_d(const nuri_block_iq1_m *b)
{
    uint16_t sc[4];
    memcpy(sc, b->scales, 8);
    return (uint16_t)((sc[0] >> 12) | (sc[1] >> 8 & 0x00f0) | (sc[2] >> 4 & 0x0f00) |
                      (sc[3] & 0xf000));
}

/* IQ1_M sub-block j: 4 points, 4 delta signs, the scales of its two halves. */
static void iq1_m_sub(const nuri_block_iq1_m *b, int j, uint64_t pt[4], int ds[4], int ls[2])
{
    uint16_t sc[4];
    memcpy(sc, b->scales, 8);
    for (int l = 0; l < 4; l++) {
        uint8_t h = b->qh[2 * j + l / 2] >> (4 * (l % 2));
        pt[l] = nuri_iq1s_grid[b->qs[4 * j + l] | (h & 7) << 8];
        ds[l] = h & 8 ? -1 : 1;
    }
    ls[0] = sc[j / 2] >> (6 * (j % 2)) & 7;
    ls[1] = sc[j / 2] >> (6 * (j % 2) + 3) & 7;
}

/* ======================================================================================== */
/* Dequantize                                                                                */
/* ======================================================================================== */

static void out8(float *y, float db, uint64_t p, uint8_t s)
{
    for (int k = 0; k < 8; k++) y[k] = db * (float)g8(p, k) * (float)sgn(s, k);
}

static void out4x2(float *y, float db, uint32_t p1, uint32_t p2, uint8_t s)
{
    for (int k = 0; k < 4; k++) {
        y[k] = db * (float)g4(p1, k) * (float)sgn(s, k);
        y[k + 4] = db * (float)g4(p2, k) * (float)sgn(s, k + 4);
    }
}

static void iq2_xxs_to_float(const void *restrict vx, float *restrict y, int64_t n)
{
    const nuri_block_iq2_xxs *x = vx;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        float d = F16(x[i].d);
        for (int j = 0; j < 8; j++) {
            uint64_t pt[4];
            uint8_t sg[4];
            int ls;
            iq2_xxs_sub(&x[i], j, pt, sg, &ls);
            float db = d * (0.5f + (float)ls) * 0.25f;
            for (int l = 0; l < 4; l++, y += 8) out8(y, db, pt[l], sg[l]);
        }
    }
}

static void iq2_xs_to_float(const void *restrict vx, float *restrict y, int64_t n)
{
    const nuri_block_iq2_xs *x = vx;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        float d = F16(x[i].d);
        for (int j = 0; j < 8; j++) {
            uint64_t pt[4];
            uint8_t sg[4];
            int ls[2];
            iq2_xs_sub(&x[i], j, pt, sg, ls);
            for (int l = 0; l < 4; l++, y += 8)
                out8(y, d * (0.5f + (float)ls[l / 2]) * 0.25f, pt[l], sg[l]);
        }
    }
}

static void iq2_s_to_float(const void *restrict vx, float *restrict y, int64_t n)
{
    const nuri_block_iq2_s *x = vx;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        float d = F16(x[i].d);
        for (int j = 0; j < 8; j++) {
            uint64_t pt[4];
            uint8_t sg[4];
            int ls[2];
            iq2_s_sub(&x[i], j, pt, sg, ls);
            for (int l = 0; l < 4; l++, y += 8)
                out8(y, d * (0.5f + (float)ls[l / 2]) * 0.25f, pt[l], sg[l]);
        }
    }
}

static void iq3_xxs_to_float(const void *restrict vx, float *restrict y, int64_t n)
{
    const nuri_block_iq3_xxs *x = vx;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        float d = F16(x[i].d);
        for (int j = 0; j < 8; j++) {
            uint32_t pt[8];
            uint8_t sg[4];
            int ls;
            iq3_xxs_sub(&x[i], j, pt, sg, &ls);
            float db = d * (0.5f + (float)ls) * 0.5f;
            for (int l = 0; l < 4; l++, y += 8) out4x2(y, db, pt[2 * l], pt[2 * l + 1], sg[l]);
        }
    }
}

static void iq3_s_to_float(const void *restrict vx, float *restrict y, int64_t n)
{
    const nuri_block_iq3_s *x = vx;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        float d = F16(x[i].d);
        for (int j = 0; j < 8; j++) {
            uint32_t pt[8];
            uint8_t sg[4];
            int ls;
            iq3_s_sub(&x[i], j, pt, sg, &ls);
            float db = d * (float)(1 + 2 * ls);
            for (int l = 0; l < 4; l++, y += 8) out4x2(y, db, pt[2 * l], pt[2 * l + 1], sg[l]);
        }
    }
}

static void out8_iq1(float *y, float dl, uint64_t p, int dsign)
{
    float delta = dsign < 0 ? -NURI_IQ1_DELTA : NURI_IQ1_DELTA;
    for (int k = 0; k < 8; k++) y[k] = dl * ((float)g8s(p, k) + delta);
}

static void iq1_s_to_float(const void *restrict vx, float *restrict y, int64_t n)
{
    const nuri_block_iq1_s *x = vx;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        float d = F16(x[i].d);
        for (int j = 0; j < 8; j++) {
            uint64_t pt[4];
            int ls, ds;
            iq1_s_sub(&x[i], j, pt, &ls, &ds);
            float dl = d * (float)(2 * ls + 1);
            for (int l = 0; l < 4; l++, y += 8) out8_iq1(y, dl, pt[l], ds);
        }
    }
}

static void iq1_m_to_float(const void *restrict vx, float *restrict y, int64_t n)
{
    const nuri_block_iq1_m *x = vx;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        float d = F16(iq1_m_d(&x[i]));
        for (int j = 0; j < 8; j++) {
            uint64_t pt[4];
            int ds[4], ls[2];
            iq1_m_sub(&x[i], j, pt, ds, ls);
            for (int l = 0; l < 4; l++, y += 8)
                out8_iq1(y, d * (float)(2 * ls[l / 2] + 1), pt[l], ds[l]);
        }
    }
}

/* ======================================================================================== */
/* Dot products with Q8_K                                                                    */
/* ======================================================================================== */

static int dot8(uint64_t p, uint8_t s, const int8_t *q8)
{
    int sum = 0;
    for (int k = 0; k < 8; k++) sum += g8(p, k) * q8[k] * sgn(s, k);
    return sum;
}

static int dot4x2(uint32_t p1, uint32_t p2, uint8_t s, const int8_t *q8)
{
    int sum = 0;
    for (int k = 0; k < 4; k++)
        sum += g4(p1, k) * q8[k] * sgn(s, k) + g4(p2, k) * q8[k + 4] * sgn(s, k + 4);
    return sum;
}

static int dot8_iq1(uint64_t p, const int8_t *q8)
{
    int sum = 0;
    for (int k = 0; k < 8; k++) sum += g8s(p, k) * q8[k];
    return sum;
}

static void iq2_xxs_vec_dot(int64_t n, float *restrict s, const void *restrict vx,
                            const void *restrict vy)
{
    const nuri_block_iq2_xxs *x = vx;
    const nuri_block_q8_K *y = vy;
    float sumf = 0;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        const float d = F16(x[i].d) * y[i].d;
        int bsum = 0;
        for (int j = 0; j < 8; j++) {
            uint64_t pt[4];
            uint8_t sg[4];
            int ls, sumi = 0;
            iq2_xxs_sub(&x[i], j, pt, sg, &ls);
            for (int l = 0; l < 4; l++) sumi += dot8(pt[l], sg[l], y[i].qs + 32 * j + 8 * l);
            bsum += sumi * (2 * ls + 1);
        }
        sumf += d * (float)bsum;
    }
    *s = 0.125f * sumf;
}

/* IQ2_XS and IQ2_S: two scales a sub-block, otherwise as IQ2_XXS. */
static void iq2_xs_vec_dot(int64_t n, float *restrict s, const void *restrict vx,
                           const void *restrict vy)
{
    const nuri_block_iq2_xs *x = vx;
    const nuri_block_q8_K *y = vy;
    float sumf = 0;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        const float d = F16(x[i].d) * y[i].d;
        int bsum = 0;
        for (int j = 0; j < 8; j++) {
            uint64_t pt[4];
            uint8_t sg[4];
            int ls[2];
            iq2_xs_sub(&x[i], j, pt, sg, ls);
            const int8_t *q8 = y[i].qs + 32 * j;
            bsum += (dot8(pt[0], sg[0], q8) + dot8(pt[1], sg[1], q8 + 8)) * (2 * ls[0] + 1);
            bsum += (dot8(pt[2], sg[2], q8 + 16) + dot8(pt[3], sg[3], q8 + 24)) * (2 * ls[1] + 1);
        }
        sumf += d * (float)bsum;
    }
    *s = 0.125f * sumf;
}

static void iq2_s_vec_dot(int64_t n, float *restrict s, const void *restrict vx,
                          const void *restrict vy)
{
    const nuri_block_iq2_s *x = vx;
    const nuri_block_q8_K *y = vy;
    float sumf = 0;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        const float d = F16(x[i].d) * y[i].d;
        int bsum = 0;
        for (int j = 0; j < 8; j++) {
            uint64_t pt[4];
            uint8_t sg[4];
            int ls[2];
            iq2_s_sub(&x[i], j, pt, sg, ls);
            const int8_t *q8 = y[i].qs + 32 * j;
            bsum += (dot8(pt[0], sg[0], q8) + dot8(pt[1], sg[1], q8 + 8)) * (2 * ls[0] + 1);
            bsum += (dot8(pt[2], sg[2], q8 + 16) + dot8(pt[3], sg[3], q8 + 24)) * (2 * ls[1] + 1);
        }
        sumf += d * (float)bsum;
    }
    *s = 0.125f * sumf;
}

static void iq3_xxs_vec_dot(int64_t n, float *restrict s, const void *restrict vx,
                            const void *restrict vy)
{
    const nuri_block_iq3_xxs *x = vx;
    const nuri_block_q8_K *y = vy;
    float sumf = 0;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        const float d = F16(x[i].d) * y[i].d;
        int bsum = 0;
        for (int j = 0; j < 8; j++) {
            uint32_t pt[8];
            uint8_t sg[4];
            int ls, sumi = 0;
            iq3_xxs_sub(&x[i], j, pt, sg, &ls);
            for (int l = 0; l < 4; l++)
                sumi += dot4x2(pt[2 * l], pt[2 * l + 1], sg[l], y[i].qs + 32 * j + 8 * l);
            bsum += sumi * (2 * ls + 1);
        }
        sumf += d * (float)bsum;
    }
    *s = 0.25f * sumf;
}

static void iq3_s_vec_dot(int64_t n, float *restrict s, const void *restrict vx,
                          const void *restrict vy)
{
    const nuri_block_iq3_s *x = vx;
    const nuri_block_q8_K *y = vy;
    float sumf = 0;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        const float d = F16(x[i].d) * y[i].d;
        int bsum = 0;
        for (int j = 0; j < 8; j++) {
            uint32_t pt[8];
            uint8_t sg[4];
            int ls, sumi = 0;
            iq3_s_sub(&x[i], j, pt, sg, &ls);
            for (int l = 0; l < 4; l++)
                sumi += dot4x2(pt[2 * l], pt[2 * l + 1], sg[l], y[i].qs + 32 * j + 8 * l);
            bsum += sumi * (2 * ls + 1);
        }
        sumf += d * (float)bsum;
    }
    *s = sumf;
}

static void iq1_s_vec_dot(int64_t n, float *restrict s, const void *restrict vx,
                          const void *restrict vy)
{
    const nuri_block_iq1_s *x = vx;
    const nuri_block_q8_K *y = vy;
    float sumf = 0;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        int sumi = 0, sumi1 = 0;
        for (int j = 0; j < 8; j++) {
            uint64_t pt[4];
            int ls, ds, lsum = 0;
            iq1_s_sub(&x[i], j, pt, &ls, &ds);
            for (int l = 0; l < 4; l++) lsum += dot8_iq1(pt[l], y[i].qs + 32 * j + 8 * l);
            ls = 2 * ls + 1;
            sumi += ls * lsum;
            sumi1 += ls * ds * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
        }
        sumf += F16(x[i].d) * y[i].d * ((float)sumi + NURI_IQ1_DELTA * (float)sumi1);
    }
    *s = sumf;
}

static void iq1_m_vec_dot(int64_t n, float *restrict s, const void *restrict vx,
                          const void *restrict vy)
{
    const nuri_block_iq1_m *x = vx;
    const nuri_block_q8_K *y = vy;
    float sumf = 0;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        int sumi1 = 0, sumi2 = 0;
        for (int j = 0; j < 8; j++) {
            uint64_t pt[4];
            int ds[4], ls[2], sum1[2] = {0, 0}, sum2[2] = {0, 0};
            iq1_m_sub(&x[i], j, pt, ds, ls);
            for (int l = 0; l < 4; l++) {
                const int8_t *q8 = y[i].qs + 32 * j + 8 * l;
                int qsum = 0;
                for (int k = 0; k < 8; k++) qsum += q8[k];
                sum1[l / 2] += dot8_iq1(pt[l], q8);
                sum2[l / 2] += qsum * ds[l];
            }
            const int ls1 = 2 * ls[0] + 1, ls2 = 2 * ls[1] + 1;
            sumi1 += sum1[0] * ls1 + sum1[1] * ls2;
            sumi2 += sum2[0] * ls1 + sum2[1] * ls2;
        }
        sumf += F16(iq1_m_d(&x[i])) * y[i].d * ((float)sumi1 + NURI_IQ1_DELTA * (float)sumi2);
    }
    *s = sumf;
}

/* ======================================================================================== */
/* Quantizers                                                                                */
/* ======================================================================================== */

/* A grid seen as a subset of its lattice, for the nearest-point search. map[l] for lattice point
 * l (level index of element k times n_levels^k, summed) is the grid point there, or -(1 + o) where
 * neigh[o] is a count followed by that many grid points nearest to it (those at the two smallest
 * distances, at most IQ_NEIGH). */
enum { IQ_NEIGH = 32 };

typedef struct iq_lattice {
    int width, n_levels, n_points;
    float lv[8];                  // level values (IQ1: -1, 0, 1; the quantizer adds the shift)
    uint8_t idx[NURI_IQ1S_N * 8]; // (n_points, width) level indices
    int32_t *map;                 // (n_levels^width)
    uint16_t *neigh;
    bool ok; // built (false if out of memory: the quantizer then searches every point)
} iq_lattice;

static void lattice_build(iq_lattice *g, const uint16_t *packed, int bits)
{
    int n_lat = 1;
    for (int k = 0; k < g->width; k++) n_lat *= g->n_levels;
    for (int p = 0; p < g->n_points; p++)
        for (int k = 0; k < g->width; k++)
            g->idx[p * g->width + k] = (uint8_t)(packed[p] >> (bits * k) & ((1 << bits) - 1));
    g->map = malloc((size_t)n_lat * sizeof *g->map);
    g->neigh = malloc((size_t)n_lat * (IQ_NEIGH + 1) * sizeof *g->neigh);
    if (!g->map || !g->neigh) {
        free(g->map), free(g->neigh);
        g->map = NULL, g->neigh = NULL;
        g->ok = false;
        return;
    }
    for (int l = 0; l < n_lat; l++) g->map[l] = INT32_MIN;
    for (int p = 0; p < g->n_points; p++) {
        int l = 0, mul = 1;
        for (int k = 0; k < g->width; k++, mul *= g->n_levels) l += g->idx[p * g->width + k] * mul;
        g->map[l] = p;
    }
    int o = 0;
    for (int l = 0; l < n_lat; l++) {
        if (g->map[l] != INT32_MIN) continue;
        float t[8];
        for (int k = 0, r = l; k < g->width; k++, r /= g->n_levels) t[k] = g->lv[r % g->n_levels];
        float d1 = INFINITY, d2 = INFINITY;
        for (int p = 0; p < g->n_points; p++) {
            float dist = 0;
            for (int k = 0; k < g->width; k++) {
                float e = t[k] - g->lv[g->idx[p * g->width + k]];
                dist += e * e;
            }
            if (dist < d1)
                d2 = d1, d1 = dist;
            else if (dist > d1 && dist < d2)
                d2 = dist;
        }
        uint16_t *list = g->neigh + o;
        int cnt = 0;
        for (int pass = 0; pass < 2; pass++) {
            float want = pass == 0 ? d1 : d2;
            for (int p = 0; p < g->n_points && cnt < IQ_NEIGH; p++) {
                float dist = 0;
                for (int k = 0; k < g->width; k++) {
                    float e = t[k] - g->lv[g->idx[p * g->width + k]];
                    dist += e * e;
                }
                if (dist == want) list[1 + cnt++] = (uint16_t)p;
            }
        }
        list[0] = (uint16_t)cnt;
        g->map[l] = -(1 + o);
        o += cnt + 1;
    }
    g->ok = true;
}

static iq_lattice lat_iq2xxs = {8, 3, NURI_IQ2XXS_N, {8, 25, 43}, {0}, 0, 0, 0};
static iq_lattice lat_iq2xs = {8, 3, NURI_IQ2XS_N, {8, 25, 43}, {0}, 0, 0, 0};
static iq_lattice lat_iq2s = {8, 3, NURI_IQ2S_N, {8, 25, 43}, {0}, 0, 0, 0};
static iq_lattice lat_iq3xxs = {4, 8, NURI_IQ3XXS_N, {4, 12, 20, 28, 36, 44, 52, 62}, {0}, 0, 0, 0};
static iq_lattice lat_iq3s = {4, 8, NURI_IQ3S_N, {1, 3, 5, 7, 9, 11, 13, 15}, {0}, 0, 0, 0};
static iq_lattice lat_iq1s = {8, 3, NURI_IQ1S_N, {-1, 0, 1}, {0}, 0, 0, 0};
static pthread_once_t once_iq2xxs = PTHREAD_ONCE_INIT, once_iq2xs = PTHREAD_ONCE_INIT,
                      once_iq2s = PTHREAD_ONCE_INIT, once_iq3xxs = PTHREAD_ONCE_INIT,
                      once_iq3s = PTHREAD_ONCE_INIT, once_iq1s = PTHREAD_ONCE_INIT;
static void build_iq2xxs(void)
{
    lattice_build(&lat_iq2xxs, nuri_iq2xxs_packed, 2);
}
static void build_iq2xs(void)
{
    lattice_build(&lat_iq2xs, nuri_iq2xs_packed, 2);
}
static void build_iq2s(void)
{
    lattice_build(&lat_iq2s, nuri_iq2s_packed, 2);
}
static void build_iq3xxs(void)
{
    lattice_build(&lat_iq3xxs, nuri_iq3xxs_packed, 3);
}
static void build_iq3s(void)
{
    lattice_build(&lat_iq3s, nuri_iq3s_packed, 3);
}
static void build_iq1s(void)
{
    lattice_build(&lat_iq1s, nuri_iq1s_packed, 2);
}

/* Weighted error of point p against targets t with level values lv. */
static float point_err(const iq_lattice *g, const float *lv, int p, const float *t, const float *w)
{
    float err = 0;
    for (int k = 0; k < g->width; k++) {
        float e = t[k] - lv[g->idx[p * g->width + k]];
        err += w[k] * e * e;
    }
    return err;
}

/* The grid point nearest to targets t (values divided by the scale) under weights w. */
static int lattice_best(const iq_lattice *g, const float *lv, const float *t, const float *w,
                        float *err)
{
    int best = 0;
    float be = INFINITY;
    if (!g->ok) { // no lattice map: every point
        for (int p = 0; p < g->n_points; p++) {
            float e = point_err(g, lv, p, t, w);
            if (e < be) be = e, best = p;
        }
        *err = be;
        return best;
    }
    int l = 0, mul = 1;
    for (int k = 0; k < g->width; k++, mul *= g->n_levels) {
        int li = 0;
        for (int v = 1; v < g->n_levels; v++)
            if (t[k] > 0.5f * (lv[v - 1] + lv[v])) li = v;
        l += li * mul;
    }
    int32_t m = g->map[l];
    if (m >= 0) {
        *err = point_err(g, lv, m, t, w);
        return m;
    }
    const uint16_t *list = g->neigh + (-1 - m);
    for (int c = 0; c < list[0]; c++) {
        float e = point_err(g, lv, list[1 + c], t, w);
        if (e < be) be = e, best = list[1 + c];
    }
    *err = be;
    return best;
}

/* Codes the n targets a (n / width groups) at scale s into pts, with level values lv; when lv2
 * is not NULL each group also tries lv2 and keeps the better, sel[group] = 1 where lv2 won (IQ1_M's
 * per-group shift). Returns the weighted error; sxl / sll get the least-squares sums for refitting
 * the scale. */
static float code_groups(const iq_lattice *g, const float *lv, const float *lv2, int *sel,
                         const float *a, const float *w, int n, float s, int *pts, float *sxl,
                         float *sll)
{
    float t[8], err = 0, id = 1 / s;
    *sxl = 0, *sll = 0;
    for (int o = 0; o < n; o += g->width) {
        for (int k = 0; k < g->width; k++) t[k] = a[o + k] * id;
        float e;
        const float *use = lv;
        int p = lattice_best(g, lv, t, w + o, &e);
        if (lv2) {
            float e2;
            int p2 = lattice_best(g, lv2, t, w + o, &e2);
            sel[o / g->width] = e2 < e;
            if (e2 < e) p = p2, use = lv2;
        }
        pts[o / g->width] = p;
        for (int k = 0; k < g->width; k++) {
            float v = use[g->idx[p * g->width + k]];
            *sxl += w[o + k] * a[o + k] * v;
            *sll += w[o + k] * v * v;
            float r = a[o + k] - s * v;
            err += w[o + k] * r * r;
        }
    }
    return err;
}

static const float scale_tries[] = {0.55f, 0.65f, 0.75f, 0.85f, 0.95f, 1.05f, 1.15f};

/* The best scale for n targets a (n <= 32): trial scales mapping the largest onto a fraction of
 * the top level lmax, each refit by least squares. 0 for an all-zero run. *err gets the
 * weighted error at that scale; sel (with lv2) the groups' choices there. */
static float fit_scale(const iq_lattice *g, const float *lv, const float *lv2, int *sel, float lmax,
                       const float *a, const float *w, int n, float *err)
{
    float amax = 0;
    for (int k = 0; k < n; k++) amax = fmaxf(amax, fabsf(a[k]));
    *err = 0;
    if (amax == 0) return 0;
    int pts[32], tsel[32];
    float best_s = 0, best_e = INFINITY, sxl, sll;
    for (size_t c = 0; c < sizeof scale_tries / sizeof scale_tries[0]; c++) {
        float s = amax / (lmax * scale_tries[c]);
        // one least-squares refit; IQ1's coarse grid gains from a second (1-2 % less error)
        for (int it = 0; it < (g == &lat_iq1s ? 2 : 1); it++) {
            code_groups(g, lv, lv2, tsel, a, w, n, s, pts, &sxl, &sll);
            if (sll <= 0 || sxl <= 0) break;
            s = sxl / sll;
        }
        float e = code_groups(g, lv, lv2, tsel, a, w, n, s, pts, &sxl, &sll);
        if (e < best_e) {
            best_e = e, best_s = s;
            if (lv2) memcpy(sel, tsel, (size_t)(n / g->width) * sizeof *sel);
        }
    }
    *err = best_e;
    return best_s;
}

/* The importance of each weight of a block: x^2 plus the block's mean x^2. */
static void block_weights(const float *x, float *w)
{
    float s2 = 0;
    for (int k = 0; k < NURI_QK_K; k++) s2 += x[k] * x[k];
    s2 /= NURI_QK_K;
    for (int k = 0; k < NURI_QK_K; k++) w[k] = x[k] * x[k] + s2;
}

/*
 * One block of a signed grid type: magnitudes on the grid, signs beside them. Sub-blocks of sub_n
 * weights have scale d * (sa * ls + sb), ls 0..15. parity: an even number of negative signs per 8
 * (the 8th sign is not stored; the weight whose sign costs least is flipped). Out: the F16 d,
 * ls per sub-block, a point per group (width weights), a sign byte per 8 weights.
 */
static void quant_signed(const iq_lattice *g, const float *x, int sub_n, bool parity, float sa,
                         float sb, uint16_t *d16, int *ls, int *pts, uint8_t *signs)
{
    float w[NURI_QK_K], a[NURI_QK_K], sc[16], smax = 0, e, sxl, sll;
    block_weights(x, w);
    for (int o = 0; o < NURI_QK_K; o += 8) {
        uint8_t s = 0;
        for (int k = 0; k < 8; k++) {
            a[o + k] = fabsf(x[o + k]);
            if (x[o + k] < 0) s |= (uint8_t)(1 << k);
        }
        if (parity && __builtin_popcount(s) % 2) {
            int kmin = 0;
            for (int k = 1; k < 8; k++)
                if (w[o + k] * a[o + k] < w[o + kmin] * a[o + kmin]) kmin = k;
            s ^= (uint8_t)(1 << kmin);
            a[o + kmin] = -a[o + kmin];
        }
        signs[o / 8] = s;
    }
    const int n_sub = NURI_QK_K / sub_n;
    const float lmax = g->lv[g->n_levels - 1];
    for (int j = 0; j < n_sub; j++) {
        sc[j] = fit_scale(g, g->lv, NULL, NULL, lmax, a + j * sub_n, w + j * sub_n, sub_n, &e);
        smax = fmaxf(smax, sc[j]);
    }
    float d = smax / (sa * 15 + sb);
    *d16 = nuri_f32_to_f16(d);
    d = F16(*d16);
    for (int j = 0; j < n_sub; j++) {
        ls[j] = 0;
        float s = 0;
        if (d > 0) {
            float q = nearbyintf((sc[j] / d - sb) / sa); // compared as a float: NaN / inf safe
            ls[j] = q > 0 ? (q < 15 ? (int)q : 15) : 0;
            s = d * (sa * (float)ls[j] + sb);
        }
        int *pj = pts + j * sub_n / g->width;
        if (s > 0)
            code_groups(g, g->lv, NULL, NULL, a + j * sub_n, w + j * sub_n, sub_n, s, pj, &sxl,
                        &sll);
        else
            memset(pj, 0, (size_t)(sub_n / g->width) * sizeof *pj);
    }
}

static void iq2_xxs_from_float(const float *restrict x, void *restrict vy, int64_t n)
{
    pthread_once(&once_iq2xxs, build_iq2xxs);
    nuri_block_iq2_xxs *y = vy;
    for (int64_t i = 0; i < n / NURI_QK_K; i++, x += NURI_QK_K) {
        int ls[8], pts[32];
        uint8_t sg[32];
        quant_signed(&lat_iq2xxs, x, 32, true, 0.25f, 0.125f, &y[i].d, ls, pts, sg);
        for (int j = 0; j < 8; j++) {
            uint32_t a0 = 0, a1 = (uint32_t)ls[j] << 28;
            for (int l = 0; l < 4; l++) {
                a0 |= (uint32_t)pts[4 * j + l] << (8 * l);
                a1 |= (uint32_t)(sg[4 * j + l] & 127) << (7 * l);
            }
            memcpy(y[i].qs + 4 * j, &a0, 4);
            memcpy(y[i].qs + 4 * j + 2, &a1, 4);
        }
    }
}

static void iq2_xs_from_float(const float *restrict x, void *restrict vy, int64_t n)
{
    pthread_once(&once_iq2xs, build_iq2xs);
    nuri_block_iq2_xs *y = vy;
    for (int64_t i = 0; i < n / NURI_QK_K; i++, x += NURI_QK_K) {
        int ls[16], pts[32];
        uint8_t sg[32];
        quant_signed(&lat_iq2xs, x, 16, true, 0.25f, 0.125f, &y[i].d, ls, pts, sg);
        for (int j = 0; j < 8; j++) {
            y[i].scales[j] = (uint8_t)(ls[2 * j] | ls[2 * j + 1] << 4);
            for (int l = 0; l < 4; l++)
                y[i].qs[4 * j + l] = (uint16_t)(pts[4 * j + l] | (sg[4 * j + l] & 127) << 9);
        }
    }
}

static void iq2_s_from_float(const float *restrict x, void *restrict vy, int64_t n)
{
    pthread_once(&once_iq2s, build_iq2s);
    nuri_block_iq2_s *y = vy;
    for (int64_t i = 0; i < n / NURI_QK_K; i++, x += NURI_QK_K) {
        int ls[16], pts[32];
        uint8_t sg[32];
        quant_signed(&lat_iq2s, x, 16, false, 0.25f, 0.125f, &y[i].d, ls, pts, sg);
        for (int j = 0; j < 8; j++) {
            y[i].scales[j] = (uint8_t)(ls[2 * j] | ls[2 * j + 1] << 4);
            y[i].qh[j] = 0;
            for (int l = 0; l < 4; l++) {
                int p = pts[4 * j + l];
                y[i].qs[4 * j + l] = (uint8_t)(p & 255);
                y[i].qh[j] |= (uint8_t)((p >> 8) << (2 * l));
                y[i].qs[NURI_QK_K / 8 + 4 * j + l] = sg[4 * j + l];
            }
        }
    }
}

static void iq3_xxs_from_float(const float *restrict x, void *restrict vy, int64_t n)
{
    pthread_once(&once_iq3xxs, build_iq3xxs);
    nuri_block_iq3_xxs *y = vy;
    for (int64_t i = 0; i < n / NURI_QK_K; i++, x += NURI_QK_K) {
        int ls[8], pts[64];
        uint8_t sg[32];
        quant_signed(&lat_iq3xxs, x, 32, true, 0.5f, 0.25f, &y[i].d, ls, pts, sg);
        for (int j = 0; j < 8; j++) {
            uint32_t a = (uint32_t)ls[j] << 28;
            for (int l = 0; l < 4; l++) a |= (uint32_t)(sg[4 * j + l] & 127) << (7 * l);
            for (int m = 0; m < 8; m++) y[i].qs[8 * j + m] = (uint8_t)pts[8 * j + m];
            memcpy(y[i].qs + NURI_QK_K / 4 + 4 * j, &a, 4);
        }
    }
}

static void iq3_s_from_float(const float *restrict x, void *restrict vy, int64_t n)
{
    pthread_once(&once_iq3s, build_iq3s);
    nuri_block_iq3_s *y = vy;
    for (int64_t i = 0; i < n / NURI_QK_K; i++, x += NURI_QK_K) {
        int ls[8], pts[64];
        uint8_t sg[32];
        quant_signed(&lat_iq3s, x, 32, false, 2.0f, 1.0f, &y[i].d, ls, pts, sg);
        memset(y[i].scales, 0, sizeof y[i].scales);
        for (int j = 0; j < 8; j++) {
            y[i].scales[j / 2] |= (uint8_t)(ls[j] << (4 * (j % 2)));
            y[i].qh[j] = 0;
            for (int m = 0; m < 8; m++) {
                y[i].qs[8 * j + m] = (uint8_t)(pts[8 * j + m] & 255);
                y[i].qh[j] |= (uint8_t)((pts[8 * j + m] >> 8) << m);
            }
            for (int l = 0; l < 4; l++) y[i].signs[4 * j + l] = sg[4 * j + l];
        }
    }
}

/* IQ1's level values with the shift +1/8 and -1/8. */
static const float lv1_pos[3] = {-1 + NURI_IQ1_DELTA, NURI_IQ1_DELTA, 1 + NURI_IQ1_DELTA};
static const float lv1_neg[3] = {-1 - NURI_IQ1_DELTA, -NURI_IQ1_DELTA, 1 - NURI_IQ1_DELTA};

/*
 * One block of IQ1: x = d * (2 ls + 1) * (grid + delta), ls 0..7 per sub-block of sub_n, delta
 * +-1/8 per sub-block (IQ1_S, sub_n 32: both tried) or per group of 8 (IQ1_M, sub_n 16: each
 * group picks). Out: d (the caller stores it), ls, a point and a delta sign (1: negative) per
 * group of 8.
 */
static float quant_iq1(const float *x, int sub_n, bool group_delta, int *ls, int *pts, int *dneg)
{
    const iq_lattice *g = &lat_iq1s;
    const float lmax = 1 + NURI_IQ1_DELTA;
    float w[NURI_QK_K], sc[16], smax = 0, sxl, sll;
    block_weights(x, w);
    const int n_sub = NURI_QK_K / sub_n;
    memset(dneg, 0, NURI_QK_K / 8 * sizeof *dneg); // for runs no trial scale fits (zeros, NaN)
    for (int j = 0; j < n_sub; j++) {
        const float *xs = x + j * sub_n, *ws = w + j * sub_n;
        int *dj = dneg + j * sub_n / 8;
        if (group_delta) {
            float e;
            sc[j] = fit_scale(g, lv1_pos, lv1_neg, dj, lmax, xs, ws, sub_n, &e);
        } else {
            float e_pos, e_neg;
            float s_pos = fit_scale(g, lv1_pos, NULL, NULL, lmax, xs, ws, sub_n, &e_pos);
            float s_neg = fit_scale(g, lv1_neg, NULL, NULL, lmax, xs, ws, sub_n, &e_neg);
            bool neg = e_neg < e_pos;
            for (int o = 0; o < sub_n / 8; o++) dj[o] = neg;
            sc[j] = neg ? s_neg : s_pos;
        }
        smax = fmaxf(smax, sc[j]);
    }
    const float d = smax / 15, df = F16(nuri_f32_to_f16(d));
    for (int j = 0; j < n_sub; j++) {
        float q = df > 0 ? nearbyintf((sc[j] / df - 1) / 2) : 0; // NaN / inf safe below
        ls[j] = q > 0 ? (q < 7 ? (int)q : 7) : 0;
        const float s = df * (float)(2 * ls[j] + 1);
        for (int o = j * sub_n; o < (j + 1) * sub_n; o += 8) {
            if (s > 0)
                code_groups(g, dneg[o / 8] ? lv1_neg : lv1_pos, NULL, NULL, x + o, w + o, 8, s,
                            pts + o / 8, &sxl, &sll);
            else
                pts[o / 8] = 0;
        }
    }
    return d;
}

static void iq1_s_from_float(const float *restrict x, void *restrict vy, int64_t n)
{
    pthread_once(&once_iq1s, build_iq1s);
    nuri_block_iq1_s *y = vy;
    for (int64_t i = 0; i < n / NURI_QK_K; i++, x += NURI_QK_K) {
        int ls[8], pts[32], dneg[32];
        y[i].d = nuri_f32_to_f16(quant_iq1(x, 32, false, ls, pts, dneg));
        for (int j = 0; j < 8; j++) {
            uint16_t h = (uint16_t)(ls[j] << 12 | dneg[4 * j] << 15);
            for (int l = 0; l < 4; l++) {
                y[i].qs[4 * j + l] = (uint8_t)(pts[4 * j + l] & 255);
                h |= (uint16_t)((pts[4 * j + l] >> 8) << (3 * l));
            }
            y[i].qh[j] = h;
        }
    }
}

static void iq1_m_from_float(const float *restrict x, void *restrict vy, int64_t n)
{
    pthread_once(&once_iq1s, build_iq1s);
    nuri_block_iq1_m *y = vy;
    for (int64_t i = 0; i < n / NURI_QK_K; i++, x += NURI_QK_K) {
        int ls[16], pts[32], dneg[32];
        uint16_t d16 = nuri_f32_to_f16(quant_iq1(x, 16, true, ls, pts, dneg));
        uint16_t sc[4] = {0, 0, 0, 0};
        for (int j = 0; j < 8; j++) {
            sc[j / 2] |= (uint16_t)((ls[2 * j] | ls[2 * j + 1] << 3) << (6 * (j % 2)));
            for (int l = 0; l < 4; l++) {
                int p = pts[4 * j + l];
                y[i].qs[4 * j + l] = (uint8_t)(p & 255);
            }
            for (int h = 0; h < 2; h++) {
                int p0 = pts[4 * j + 2 * h], p1 = pts[4 * j + 2 * h + 1];
                y[i].qh[2 * j + h] = (uint8_t)((p0 >> 8) | dneg[4 * j + 2 * h] << 3 |
                                               (p1 >> 8) << 4 | dneg[4 * j + 2 * h + 1] << 7);
            }
        }
        for (int k = 0; k < 4; k++) sc[k] |= (uint16_t)((d16 >> (4 * k) & 15) << 12);
        memcpy(y[i].scales, sc, 8);
    }
}

/* ======================================================================================== */
/* The table rows                                                                            */
/* ======================================================================================== */

#define IQ_ROW(T, t)                                                                               \
    tab[NURI_TYPE_##T] = (nuri_kernel_traits)                                                      \
    {                                                                                              \
        .vec_dot_type = NURI_TYPE_Q8_K, .to_float = t##_to_float, .from_float = t##_from_float,    \
        .vec_dot = t##_vec_dot                                                                     \
    }

void kernels_iq_fill(nuri_kernel_traits *tab)
{
    kernels_iq_init();
    IQ_ROW(IQ2_XXS, iq2_xxs);
    IQ_ROW(IQ2_XS, iq2_xs);
    IQ_ROW(IQ2_S, iq2_s);
    IQ_ROW(IQ3_XXS, iq3_xxs);
    IQ_ROW(IQ3_S, iq3_s);
    IQ_ROW(IQ1_S, iq1_s);
    IQ_ROW(IQ1_M, iq1_m);
}
