/*
 * pack_tables.h: the per-token tables of the packed k-quant kernels (pack.h), built from Q8_K
 * activation rows, and the drivers' prefetch of a work item's start; plain C, shared by
 * pack_avx2.c and pack_avx512.c, whose kernels read them the same way.
 */
#ifndef NURI_PACK_TABLES_H
#define NURI_PACK_TABLES_H

#include "kernels/blocks.h"

#include <stddef.h>
#include <stdint.h>

/* Starts the fetch (into L2) of an item's first 8 KiB, or of its `bytes` if fewer, all at once.
 * The kernels prefetch a few KiB ahead of where they read, so without this the start of every
 * work item (whose rows lie apart from the thread's last item when threads share the work) is
 * read line by line at memory latency: in a 64-expert MoE model's decode, where items are short
 * and many, this gained 3-4% (and a dense Q4_K_M model's 0-3%). */
static inline void pack_item_warm(const uint8_t *p, int64_t bytes)
{
    const int64_t n = bytes < 8192 ? bytes : 8192;
    for (int64_t off = 0; off < n; off += 64) __builtin_prefetch(p + off, 0, 2);
}

/* Q4_K / Q5_K: da[t][b] = d of token t's block b; bsf[t][b][j] = its 32-element sums as floats. */
static inline void pack_q4_K_tables(const uint8_t *x, size_t x_stride, int64_t n_t, int64_t nb,
                                    float *da, float *bsf)
{
    for (int64_t t = 0; t < n_t; t++) {
        const nuri_block_q8_K *blk = (const nuri_block_q8_K *)(x + (size_t)t * x_stride);
        for (int64_t b = 0; b < nb; b++) {
            da[t * nb + b] = blk[b].d;
#pragma GCC unroll 16
            for (int j = 0; j < 8; j++)
                bsf[(t * nb + b) * 8 + j] = (float)(blk[b].bsums[2 * j] + blk[b].bsums[2 * j + 1]);
        }
    }
}

/* Q6_K: da as Q4_K's; corr[t][b][j] = -32 * token t's 16-element sum j of block b. */
static inline void pack_q6_K_tables(const uint8_t *x, size_t x_stride, int64_t n_t, int64_t nb,
                                    float *da, int32_t *corr)
{
    for (int64_t t = 0; t < n_t; t++) {
        const nuri_block_q8_K *blk = (const nuri_block_q8_K *)(x + (size_t)t * x_stride);
        for (int64_t b = 0; b < nb; b++) {
            da[t * nb + b] = blk[b].d;
#pragma GCC unroll 16
            for (int j = 0; j < 16; j++) corr[(t * nb + b) * 16 + j] = -32 * blk[b].bsums[j];
        }
    }
}

#endif
