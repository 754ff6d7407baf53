/*
 * attn.c: the scalar reference of the attention inner loops (attn.h) and the per-ISA choice.
 */
#include "kernels/attn.h"
#include "kernels/fp16.h"

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

void kernels_attn_avx2_fill(nuri_attn_kernels *k);
void kernels_attn_avx512_fill(nuri_attn_kernels *k);

static void ref_scores(int32_t hd, int32_t G, const float *q, const uint16_t *k, size_t k_stride,
                       int32_t n, float scale, float *s, size_t s_stride)
{
    for (int32_t j = 0; j < n; j++) {
        const uint16_t *kr = k + (size_t)j * k_stride;
        for (int32_t g = 0; g < G; g++) {
            float acc = 0.0f;
            for (int32_t d = 0; d < hd; d++) acc += q[(size_t)g * hd + d] * nuri_f16_to_f32(kr[d]);
            s[(size_t)g * s_stride + j] = acc * scale;
        }
    }
}

static void ref_scores_t(int32_t hd, int32_t G, const float *q, const uint16_t *kt, int32_t j0,
                         int32_t n, float scale, float *s, size_t s_stride)
{
    for (int32_t i = 0; i < n; i++)
        for (int32_t g = 0; g < G; g++) {
            float acc = 0.0f;
            for (int32_t d = 0; d < hd; d++)
                acc = fmaf(q[(size_t)g * hd + d],
                           nuri_f16_to_f32(kt[(size_t)d * NURI_ATTN_TROWS + j0 + i]), acc);
            s[(size_t)g * s_stride + i] = acc * scale;
        }
}

/* Where element d (< 32) of row i lies in a transposed slice (attn.h), and how it is held: Q8_0's
 * code + 128 a byte; Q4_0's code (0..15) the low nibble for d % 8 < 4, else the high one. */
static size_t tq_at(uint32_t type, int32_t i, int d)
{
    return type == NURI_TYPE_Q8_0 ? 64 + 128 * (size_t)(d / 4) + 4 * (size_t)i + (size_t)(d % 4)
                                  : 64 + 128 * (size_t)(d / 8) + 4 * (size_t)i + (size_t)(d % 4);
}

/* Code d (< 32) of a row-major block's codes q: Q8_0 as its int8 + 128, Q4_0 as 0..15. */
static unsigned tq_code(uint32_t type, const uint8_t *q, int d)
{
    if (type == NURI_TYPE_Q8_0) return (uint8_t)(q[d] ^ 0x80);
    return d < 16 ? q[d] & 15u : (unsigned)q[d - 16] >> 4;
}

/* Code d (< 32) of row i as a transposed slice sl holds it: tq_code's value. */
static unsigned tq_load(uint32_t type, const uint8_t *sl, int32_t i, int d)
{
    const unsigned at = sl[tq_at(type, i, d)];
    return type == NURI_TYPE_Q8_0 ? at : d % 8 < 4 ? at & 15 : at >> 4;
}

void nuri_kv_tq_put(uint32_t type, uint8_t *kt, int32_t i, const uint8_t *row, int32_t hd)
{
    const size_t blk = nuri_kv_row_bytes(type, 32);
    for (int32_t b = 0; b < hd / 32; b++, row += blk) {
        uint8_t *sl = kt + (size_t)b * nuri_kv_tq_slice(type);
        memcpy(sl + 2 * i, row, 2);
        for (int d = 0; d < 32; d++) {
            uint8_t *at = sl + tq_at(type, i, d);
            const unsigned c = tq_code(type, row + 2, d);
            if (type == NURI_TYPE_Q8_0)
                *at = (uint8_t)c;
            else if (d % 8 < 4)
                *at = (uint8_t)((*at & 0xf0) | c);
            else
                *at = (uint8_t)((*at & 0x0f) | c << 4);
        }
    }
}

void nuri_kv_tq_get(uint32_t type, const uint8_t *kt, int32_t i, uint8_t *row, int32_t hd)
{
    const size_t blk = nuri_kv_row_bytes(type, 32);
    for (int32_t b = 0; b < hd / 32; b++, row += blk) {
        const uint8_t *sl = kt + (size_t)b * nuri_kv_tq_slice(type);
        memcpy(row, sl + 2 * i, 2);
        for (int d = 0; d < 32; d++) {
            const unsigned c = tq_load(type, sl, i, d);
            if (type == NURI_TYPE_Q8_0)
                row[2 + d] = (uint8_t)(c ^ 0x80);
            else if (d < 16) // element d the low nibble of byte d, element d + 16 the high one
                row[2 + d] = (uint8_t)((row[2 + d] & 0xf0) | c);
            else
                row[2 + d - 16] = (uint8_t)((row[2 + d - 16] & 0x0f) | c << 4);
        }
    }
}

void nuri_q8_block_sums(const void *q8, int32_t n_blocks, int32_t *sums)
{
    for (int32_t b = 0; b < n_blocks; b++) {
        const int8_t *q = (const int8_t *)q8 + (size_t)b * 34 + 2;
        int32_t sum = 0;
        for (int d = 0; d < 32; d++) sum += q[d];
        sums[b] = sum;
    }
}

static void ref_scores_tq(uint32_t type, int32_t hd, int32_t G, const void *q8, const int32_t *qsum,
                          const uint8_t *kt, int32_t j0, int32_t n, float scale, float *s,
                          size_t s_stride)
{
    const int32_t nb = hd / 32, bias = type == NURI_TYPE_Q8_0 ? 128 : 8;
    for (int32_t i = j0; i < j0 + n; i++)
        for (int32_t g = 0; g < G; g++) {
            const uint8_t *qr = (const uint8_t *)q8 + (size_t)g * nb * 34;
            float acc = 0.0f;
            for (int32_t b = 0; b < nb; b++, qr += 34) {
                const uint8_t *sl = kt + (size_t)b * nuri_kv_tq_slice(type);
                int32_t sumi = -bias * qsum[g * nb + b];
                for (int d = 0; d < 32; d++)
                    sumi += (int32_t)tq_load(type, sl, i, d) * (int8_t)qr[2 + d];
                uint16_t hk, hq;
                memcpy(&hk, sl + 2 * i, 2);
                memcpy(&hq, qr, 2);
                acc += nuri_f16_to_f32(hk) * nuri_f16_to_f32(hq) * (float)sumi;
            }
            s[(size_t)g * s_stride + i - j0] = acc * scale;
        }
}

static void ref_accum(int32_t hd, int32_t G, const float *p, size_t p_stride, const uint16_t *v,
                      size_t v_stride, int32_t n, float *out)
{
    for (int32_t j = 0; j < n; j++) {
        bool any = false;
        for (int32_t g = 0; g < G; g++) any |= p[(size_t)g * p_stride + j] != 0.0f;
        if (!any) continue;
        const uint16_t *vr = v + (size_t)j * v_stride;
        for (int32_t g = 0; g < G; g++) {
            const float pg = p[(size_t)g * p_stride + j];
            for (int32_t d = 0; d < hd; d++) out[(size_t)g * hd + d] += pg * nuri_f16_to_f32(vr[d]);
        }
    }
}

/* Softmax in place; round: each probability rounded to F16 (the non-flash path's weights of an F16
 * V), else kept F32. */
static void softmax_impl(float *s, int32_t n, bool round)
{
    float max = -INFINITY;
    for (int32_t j = 0; j < n; j++)
        if (s[j] > max) max = s[j];
    double sum = 0.0;
    for (int32_t j = 0; j < n; j++) {
        s[j] = expf(s[j] - max);
        sum += (double)s[j];
    }
    const float inv = (float)(1.0 / sum);
    if (!round) {
        for (int32_t j = 0; j < n; j++) s[j] *= inv;
        return;
    }
    for (int32_t j = 0; j < n; j++) s[j] = nuri_f16_to_f32(nuri_f32_to_f16(s[j] * inv));
}

static void ref_softmax(float *s, int32_t n)
{
    softmax_impl(s, n, true);
}

static void ref_softmax_f32(float *s, int32_t n)
{
    softmax_impl(s, n, false);
}

/* ---- quantized caches ---- */

void nuri_kv_rotate(float *x, int32_t n)
{
    const float scale = 1.0f / sqrtf((float)n);
    for (int32_t j = 0; j < n; j++) x[j] *= scale;
    for (int32_t len = 1; len < n; len <<= 1)
        for (int32_t i = 0; i < n; i += 2 * len)
            for (int32_t j = 0; j < len; j++) {
                const float u = x[i + j], v = x[i + len + j];
                x[i + j] = u + v;
                x[i + len + j] = u - v;
            }
}

bool nuri_kv_type_ok(uint32_t type)
{
    return type == NURI_TYPE_F16 || type == NURI_TYPE_Q8_0 || type == NURI_TYPE_Q4_0;
}

size_t nuri_kv_row_bytes(uint32_t type, int32_t hd)
{
    switch (type) {
    case NURI_TYPE_Q8_0:
        return (size_t)hd / 32 * 34;
    case NURI_TYPE_Q4_0:
        return (size_t)hd / 32 * 18;
    default:
        return (size_t)hd * 2;
    }
}

/* llama.cpp's reference Q4_0 quantizer (quantize_row_q4_0_ref), which its CPU backend also uses
 * for the cache: the first value of largest magnitude maps to -8, the codes are truncated. */
static void kv_q4_0_row(const float *x, uint8_t *y, int32_t n)
{
    for (int32_t b = 0; b < n / 32; b++, x += 32, y += 18) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < 32; j++)
            if (amax < fabsf(x[j])) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        const float d = max / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        const uint16_t h = nuri_f32_to_f16(d);
        memcpy(y, &h, sizeof h);
        for (int j = 0; j < 16; j++) {
            const int8_t a = (int8_t)(x[j] * id + 8.5f), c = (int8_t)(x[j + 16] * id + 8.5f);
            y[2 + j] = (uint8_t)((a < 15 ? a : 15) | (c < 15 ? c : 15) << 4);
        }
    }
}

void nuri_kv_store_row(uint32_t type, const float *x, void *row, int32_t n)
{
    if (type == NURI_TYPE_Q4_0)
        kv_q4_0_row(x, row, n);
    else // F16 and Q8_0: the same conversions as activations (bit-exact with llama.cpp)
        nuri_kernels(type)->from_float(x, row, n);
}

/* The row-major reference for scores_tq: each row's dot with each query through the type's
 * scalar vec_dot (an exact integer sum per block, then one float step per block). No cache keeps K
 * row-major any more (outside MLA, which refuses quantized caches, every K page is transposed), so
 * this runs only as the reference in tests, the same function on every ISA. */
static void ref_scores_q(uint32_t type, int32_t hd, int32_t G, const void *q8, const uint8_t *k,
                         size_t k_stride, int32_t n, float scale, float *s, size_t s_stride)
{
    const nuri_vec_dot_fn dot = nuri_kernels_isa(type, NURI_ISA_SCALAR)->vec_dot;
    const size_t q_row = nuri_kv_row_bytes(NURI_TYPE_Q8_0, hd);
    for (int32_t j = 0; j < n; j++) {
        const uint8_t *kr = k + (size_t)j * k_stride;
        for (int32_t g = 0; g < G; g++) {
            float acc;
            dot(hd, &acc, kr, (const uint8_t *)q8 + (size_t)g * q_row);
            s[(size_t)g * s_stride + j] = acc * scale;
        }
    }
}

static void ref_accum_q(uint32_t type, int32_t hd, int32_t G, const float *p, size_t p_stride,
                        const uint8_t *v, size_t v_stride, int32_t n, float *out)
{
    const size_t blk = nuri_kv_row_bytes(type, 32);
    float x[32];
    for (int32_t j = 0; j < n; j++) {
        bool any = false;
        for (int32_t g = 0; g < G; g++) any |= p[(size_t)g * p_stride + j] != 0.0f;
        if (!any) continue;
        for (int32_t b = 0; b < hd / 32; b++) {
            nuri_kv_block_to_float(type, v + (size_t)j * v_stride + (size_t)b * blk, x);
            for (int32_t g = 0; g < G; g++) {
                const float pg = p[(size_t)g * p_stride + j];
                float *o = out + (size_t)g * hd + (size_t)b * 32;
                for (int d = 0; d < 32; d++) o[d] += pg * x[d];
            }
        }
    }
}

static void ref_swiglu(float *g, const float *u, int64_t n)
{
    for (int64_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static nuri_attn_kernels tables[3];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void init(void)
{
    for (int i = 0; i < 3; i++)
        tables[i] = (nuri_attn_kernels){ref_scores,      ref_accum,    ref_softmax,
                                        ref_swiglu,      ref_scores_q, ref_accum_q,
                                        ref_softmax_f32, ref_scores_t, ref_scores_tq};
    kernels_attn_avx2_fill(&tables[NURI_ISA_AVX2]);
    tables[NURI_ISA_AVX512] = tables[NURI_ISA_AVX2];
    kernels_attn_avx512_fill(&tables[NURI_ISA_AVX512]);
}

const nuri_attn_kernels *nuri_attn_isa(nuri_isa isa)
{
    // the CPU has the set when its F32 kernels are handed out
    if ((unsigned)isa > NURI_ISA_AVX512 || !nuri_kernels_isa(NURI_TYPE_F32, isa)) return NULL;
    pthread_once(&once, init);
    return &tables[isa];
}

const nuri_attn_kernels *nuri_attn(void)
{
    return nuri_attn_isa(nuri_cpu_isa());
}
