/*
 * kernels_impl.h: internal to src/kernels/: the scalar reference kernels by name, the per-ISA
 * table fillers, and small helpers shared by the reference and the SIMD files.
 *
 * kernels.c builds one traits table per ISA: it starts from the scalar table and lets
 * kernels_avx2_fill / kernels_avx512_fill override the entries they implement.
 */
#ifndef NURI_KERNELS_IMPL_H
#define NURI_KERNELS_IMPL_H

#include "kernels/blocks.h"
#include "kernels/kernels.h"

#include <stdint.h>
#include <string.h>

/* Unpacks the 6-bit scale and min of sub-block j (0..7) of Q4_K / Q5_K from their 12 bytes. */
static inline void kernels_scale_min_k4(int j, const uint8_t *q, uint8_t *sc, uint8_t *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* All 8 scales and mins of a Q4_K / Q5_K block at once (same result as kernels_scale_min_k4). */
static inline void kernels_scales_mins_q4_K(const uint8_t *q, uint8_t sc[8], uint8_t m[8])
{
    uint32_t a[3], s[2], mm[2];
    memcpy(a, q, 12);
    s[0] = a[0] & 0x3f3f3f3fu;
    s[1] = (a[2] & 0x0f0f0f0fu) | ((a[0] >> 6) & 0x03030303u) << 4;
    mm[0] = a[1] & 0x3f3f3f3fu;
    mm[1] = ((a[2] >> 4) & 0x0f0f0f0fu) | ((a[1] >> 6) & 0x03030303u) << 4;
    memcpy(sc, s, 8);
    memcpy(m, mm, 8);
}

/* Unpacks the 16 signed scales of a Q3_K block (bias 32 removed: -32..31). */
static inline void kernels_scales_q3_K(const uint8_t *s, int8_t out[16])
{
    for (int i = 0; i < 16; i++) {
        int lo = i < 8 ? (s[i] & 15) : (s[i - 8] >> 4);
        int hi = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
        out[i] = (int8_t)((lo | (hi << 4)) - 32);
    }
}

/* Per-thread scratch of the SIMD kernels, one buffer per user, allocated (64-byte aligned) on a
 * thread's first call and freed when the thread exits: a static _Thread_local array would cost
 * every thread of the process its size, kernel user or not. A user always asks for the same
 * size. NULL if the allocation failed (callers then take a path without scratch). */
enum { KERNELS_SCRATCH_GEMM, KERNELS_SCRATCH_PACK, KERNELS_SCRATCH_IQ, KERNELS_SCRATCH_COUNT };
uint8_t *kernels_thread_scratch(int which, size_t bytes);

/* The scalar table, indexed by type id (entries of non-computable types are zero). */
extern const nuri_kernel_traits kernels_ref_table[NURI_TYPE_COUNT];

/* Adds the scalar kernels of the IQ2 / IQ3 / IQ1 grid types (kernels_iq.c) to a table, after
 * expanding their grids; kernels.c calls it on every table before the ISA fillers. */
void kernels_iq_fill(nuri_kernel_traits *tab);
/* Their AVX2 / AVX-512 dot products (kernels_iq_avx2.c, kernels_iq_avx512.c). */
void kernels_iq_avx2_fill(nuri_kernel_traits *tab);
void kernels_iq_avx512_fill(nuri_kernel_traits *tab);

/* Override the entries an ISA implements (tab starts as a copy of kernels_ref_table). */
void kernels_avx2_fill(nuri_kernel_traits *tab);
void kernels_avx512_fill(nuri_kernel_traits *tab);
/* Adds the register-tiled AVX-512 gemm entries (gemm_avx512.c); called by kernels_avx512_fill
 * after the vec_dot entries are set. */
void kernels_gemm_avx512_fill(nuri_kernel_traits *tab);

#endif
