/*
 * randn.h: standard normal floats for `nuri mkmodel`'s random weights, by Box-Muller:
 * out[i] = (float)(sqrt(-2 ln u[i]) * cos(2 pi v[i])) for uniform doubles u, v in (0, 1).
 *
 * The logarithm and cosine are this file's own double-precision polynomials (randn_impl.h),
 * within an ulp of glibc's log and cos: the floats are libm's formula's but where the double
 * product falls on a float rounding tie (none of 2.2 * 10^8 values tried; one float, an ulp apart,
 * in the 114 oracle test models). They use only IEEE additions, multiplications, a division and a
 * square root, never fused, so every instruction set gives the same bits (AVX-512 8 lanes, AVX2 4,
 * SSE2 2; test_quantize compares them), at an eighth of libm's cost (AVX-512, Zen 5: 2.5 ns).
 */
#ifndef NURI_MODEL_RANDN_H
#define NURI_MODEL_RANDN_H

#include <stdint.h>

/* out[0..n) from u[0..n) and v[0..n), on the best instruction set of this CPU (NURI_ISA caps it).
 */
void nuri_randn(const double *u, const double *v, float *out, int64_t n);

/* The same on one instruction set (0 SSE2, 1 AVX2, 2 AVX-512; the CPU must have it): tests. */
void nuri_randn_isa(int isa, const double *u, const double *v, float *out, int64_t n);

/* The per-ISA bodies (randn_avx2.c, randn_avx512.c; randn.c holds the SSE2 one). */
void nuri_randn_sse2(const double *u, const double *v, float *out, int64_t n);
void nuri_randn_avx2(const double *u, const double *v, float *out, int64_t n);
void nuri_randn_avx512(const double *u, const double *v, float *out, int64_t n);

#endif
