/*
 * attn.c: the scalar reference of the attention inner loops (attn.h) and the per-ISA choice.
 */
#include "kernels/attn.h"
#include "kernels/fp16.h"

#include <math.h>
#include <pthread.h>
#include <stdbool.h>

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

static void ref_softmax(float *s, int32_t n)
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
    for (int32_t j = 0; j < n; j++) s[j] = nuri_f16_to_f32(nuri_f32_to_f16(s[j] * inv));
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
        tables[i] = (nuri_attn_kernels){ref_scores, ref_accum, ref_softmax, ref_swiglu};
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
