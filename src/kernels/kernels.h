/*
 * kernels.h: what each tensor type computes with, chosen at run time for this CPU.
 *
 * For every computable type there is a scalar reference (the truth) and, where it pays, AVX2 and
 * AVX-512 variants. A variant that is missing falls back to the reference. Tests compare every
 * variant with the reference.
 *
 * Matrix products follow llama.cpp's rounding, because matching its numbers is the goal and the
 * 8-bit path is also the fast one: a weight row of type T is multiplied with an activation row that
 * was first converted to T's vec_dot_type:
 *   F32 -> F32;  F16 -> F16;  BF16 -> BF16;  Q4_0, Q5_0, Q8_0 -> Q8_0;  Q4_1, Q5_1 -> Q8_1;
 *   Q2_K .. Q6_K -> Q8_K.
 * The Q8_* activation quantizers round exactly as llama.cpp does (see kernels/blocks.h).
 */
#ifndef NURI_KERNELS_H
#define NURI_KERNELS_H

#include "kernels/types.h"

#include <stddef.h>
#include <stdint.h>

typedef enum nuri_isa {
    NURI_ISA_SCALAR = 0,
    NURI_ISA_AVX2 = 1,   // AVX2 + FMA + F16C
    NURI_ISA_AVX512 = 2, // AVX-512 F/BW/VL/DQ + VNNI (+ BF16 where present)
} nuri_isa;

/* The best instruction set this CPU has, capped by the environment variable NURI_ISA
 * (scalar | avx2 | avx512) when it is set. */
nuri_isa nuri_cpu_isa(void);
const char *nuri_isa_name(nuri_isa isa);

/* n elements of the type at x -> n floats. n is a multiple of the block size. */
typedef void (*nuri_to_float_fn)(const void *restrict x, float *restrict y, int64_t n);
/* n floats -> n elements of the type. For Q8_0 / Q8_1 / Q8_K (activations) this is bit-exact with
 * llama.cpp; for weight types it is a plain round-to-nearest quantizer (valid, not optimal). */
typedef void (*nuri_from_float_fn)(const float *restrict x, void *restrict y, int64_t n);
/* *s = dot(x, y) over n elements: x of the type, y of its vec_dot_type. */
typedef void (*nuri_vec_dot_fn)(int64_t n, float *restrict s, const void *restrict x,
                                const void *restrict y);

/*
 * A block of a matrix product: y[t * y_stride + r] = dot(row r of W, row t of x) for rows r in
 * [r0, r1) and tokens t in [0, n_t). W holds rows of n elements of the type, w_stride bytes apart;
 * x holds n_t rows of the vec_dot_type, x_stride bytes apart.
 *
 * Batch invariance (the server promises it): y[t, r] may depend only on row r of W and row t of x,
 * never on r0, r1, n_t or the other rows, so a user's result does not depend on who else is in the
 * batch. A kernel that works on several rows or tokens at once must give each output exactly the
 * arithmetic it would get alone.
 */
typedef void (*nuri_gemm_fn)(int64_t n, const void *restrict w, size_t w_stride, int64_t r0,
                             int64_t r1, const void *restrict x, size_t x_stride, int64_t n_t,
                             float *restrict y, int64_t y_stride);

typedef struct nuri_kernel_traits {
    uint32_t vec_dot_type;
    nuri_to_float_fn to_float;
    nuri_from_float_fn from_float;
    nuri_vec_dot_fn vec_dot;
    nuri_gemm_fn gemm; // NULL: nuri_gemm loops over vec_dot
} nuri_kernel_traits;

/* Runs k's gemm, or vec_dot row by row when the type has none (same contract as nuri_gemm_fn). */
void nuri_gemm(const nuri_kernel_traits *k, int64_t n, const void *w, size_t w_stride, int64_t r0,
               int64_t r1, const void *x, size_t x_stride, int64_t n_t, float *y, int64_t y_stride);

/* The kernels for a type on this CPU (nuri_cpu_isa()), or NULL if nuri cannot compute with it.
 * Static storage. The activation-only types Q8_1 and Q8_K also have traits (to_float, from_float;
 * vec_dot is NULL and vec_dot_type is the type itself); Q8_0 is both a weight and an activation
 * type. */
const nuri_kernel_traits *nuri_kernels(uint32_t type);

/* The kernels of one instruction set (for tests and benchmarks); functions that set lacks are the
 * scalar ones. Returns NULL if the type is not computable or this CPU lacks the set. */
const nuri_kernel_traits *nuri_kernels_isa(uint32_t type, nuri_isa isa);

#endif
