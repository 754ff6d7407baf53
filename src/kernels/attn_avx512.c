/*
 * attn_avx512.c: the attention inner loops (attn_simd.h) on 16-float AVX-512 vectors.
 */
#define VF __m512
#define W 16
#define VZERO() _mm512_setzero_ps()
#define VLOAD(p) _mm512_loadu_ps(p)
#define VSTORE(p, v) _mm512_storeu_ps(p, v)
#define VSET1(x) _mm512_set1_ps(x)
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VCVTPH(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
#define VHSUM(v) _mm512_reduce_add_ps(v)
#include "kernels/attn_simd.h"

void kernels_attn_avx512_fill(nuri_attn_kernels *k);
void kernels_attn_avx512_fill(nuri_attn_kernels *k)
{
    k->scores = simd_scores;
    k->accum = simd_accum;
}
