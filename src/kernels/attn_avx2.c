/*
 * attn_avx2.c: the attention inner loops (attn_simd.h) on 8-float AVX2 vectors (+ FMA, F16C).
 */
#include <immintrin.h>

static inline float hsum256(__m256 v)
{
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

#define VF __m256
#define W 8
#define VZERO() _mm256_setzero_ps()
#define VLOAD(p) _mm256_loadu_ps(p)
#define VSTORE(p, v) _mm256_storeu_ps(p, v)
#define VSET1(x) _mm256_set1_ps(x)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VCVTPH(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
#define VCVTI8(p) _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(p))))
#define VMUL(a, b) _mm256_mul_ps(a, b)
#define VHSUM(v) hsum256(v)
#include "kernels/attn_simd.h"

void kernels_attn_avx2_fill(nuri_attn_kernels *k);
void kernels_attn_avx2_fill(nuri_attn_kernels *k)
{
    k->scores = simd_scores;
    k->scores_t = simd_scores_t;
    k->accum = simd_accum;
    k->accum_q = simd_accum_q;
}
