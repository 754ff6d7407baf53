/*
 * randn.c: nuri_randn (randn.h) on SSE2, which every x86-64 CPU has, and the dispatch to the
 * AVX2 and AVX-512 bodies (randn_avx2.c, randn_avx512.c: the same code, wider vectors).
 */
#include "model/randn.h"
#include "kernels/kernels.h"

#include <emmintrin.h>

#define RANDN_W 2
#define RANDN_SQRT(x) ((randn_vd)_mm_sqrt_pd((__m128d)(x)))
#define RANDN_NAME nuri_randn_sse2
#include "model/randn_impl.h"

void nuri_randn_isa(int isa, const double *u, const double *v, float *out, int64_t n)
{
    if (isa >= 2)
        nuri_randn_avx512(u, v, out, n);
    else if (isa == 1)
        nuri_randn_avx2(u, v, out, n);
    else
        nuri_randn_sse2(u, v, out, n);
}

void nuri_randn(const double *u, const double *v, float *out, int64_t n)
{
    const nuri_isa isa = nuri_cpu_isa();
    nuri_randn_isa(isa >= NURI_ISA_AVX512 ? 2 : isa >= NURI_ISA_AVX2 ? 1 : 0, u, v, out, n);
}
