/*
 * attn.h: the inner loops of attention over an F16 KV cache, chosen at run time for this CPU.
 *
 * A query group is the G query heads that share one KV head (grouped-query attention); doing them
 * together reads each cached K and V row once for all G. Rows of one call are `n` consecutive cache
 * slots (one page or part of one), stride apart in halves. q and p hold values already rounded to
 * F16 (widened to float), as llama.cpp rounds Q and the softmax probabilities.
 *
 * Every variant computes each output from its own inputs only (batch invariance), in an order that
 * does not depend on n, G or the position of the rows in the cache.
 *
 * The cache may also hold Q8_0 or Q4_0 rows (`--kv-type`), stored and multiplied as llama.cpp's
 * CPU path does with `-ctk` / `-ctv`: a row is quantized per 32-element block when it is written
 * (nuri_kv_store_row); K·Q of a quantized K takes Q quantized to Q8_0 and the type's integer dot
 * product per block (scores_tq over the cache's transposed blocks; scores_q, its row-major
 * reference, gives the same bits); a quantized V is widened to F32 row by row and weighted with
 * F32 probabilities (softmax_f32, accum_q), as llama.cpp's flash attention kernel does (llama.cpp
 * quantizes V only with flash attention on).
 */
#ifndef NURI_ATTN_H
#define NURI_ATTN_H

#include "kernels/fp16.h"
#include "kernels/kernels.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct nuri_attn_kernels {
    /* s[g * s_stride + j] = scale * dot(q[g * hd ..], k row j) for g < G, j < n. */
    void (*scores)(int32_t hd, int32_t G, const float *q, const uint16_t *k, size_t k_stride,
                   int32_t n, float scale, float *s, size_t s_stride);
    /* out[g * hd + d] += sum over j < n of p[g * p_stride + j] * v[j][d], j in increasing order;
     * a row whose G weights are all zero is skipped. */
    void (*accum)(int32_t hd, int32_t G, const float *p, size_t p_stride, const uint16_t *v,
                  size_t v_stride, int32_t n, float *out);
    /* In place over s[0, n): the softmax (max subtracted, exponentials summed in double, scaled by
     * the float of 1 / sum), each probability then rounded to F16 and widened back, as llama.cpp
     * weights V with F16 probabilities. */
    void (*softmax)(float *s, int32_t n);
    /* The feed-forward's SwiGLU, the other exponential-heavy loop of a layer:
     * g[i] = g[i] / (1 + exp(-g[i])) * u[i] for i < n. */
    void (*swiglu)(float *g, const float *u, int64_t n);
    /* K of `type` (Q8_0 or Q4_0: rows of hd elements, hd a multiple of 32, k_stride bytes apart):
     * s[g * s_stride + j] = scale * dot(k row j, q8 row g) for g < G, j < n, where q8 holds the G
     * queries as Q8_0 (hd / 32 blocks each) and dot is the type's vec_dot (an exact integer sum
     * per block, then one float step per block). The scalar reference on every ISA: the cache
     * keeps K transposed (scores_tq, which gives these bits); this row-major form checks it. */
    void (*scores_q)(uint32_t type, int32_t hd, int32_t G, const void *q8, const uint8_t *k,
                     size_t k_stride, int32_t n, float scale, float *s, size_t s_stride);
    /* V of `type` (Q8_0 or Q4_0, v_stride bytes apart): as accum, each row widened to F32 first. */
    void (*accum_q)(uint32_t type, int32_t hd, int32_t G, const float *p, size_t p_stride,
                    const uint8_t *v, size_t v_stride, int32_t n, float *out);
    /* As softmax, but the probabilities stay F32 (they weight a quantized V, as in llama.cpp's
     * flash attention). */
    void (*softmax_f32)(float *s, int32_t n);
    /* scores over a transposed block of NURI_ATTN_TROWS F16 rows (element d of row j at
     * kt[d * NURI_ATTN_TROWS + j]): s[g * s_stride + i] = scale * dot(q[g * hd ..], row j0 + i)
     * for g < G, i < n (j0 + n <= NURI_ATTN_TROWS). Each dot product is one chain of FMAs over d
     * from 0 up (lanes are rows: no horizontal sums), the same bits on every ISA and for any
     * j0, n. All NURI_ATTN_TROWS rows of the block are read. */
    void (*scores_t)(int32_t hd, int32_t G, const float *q, const uint16_t *kt, int32_t j0,
                     int32_t n, float scale, float *s, size_t s_stride);
    /* scores_q of a K of `type` (Q8_0 or Q4_0) over rows j0 .. j0 + n - 1 (j0 + n <=
     * NURI_ATTN_TROWS) of a transposed block (the layout of nuri_kv_tq_put), with q8 the G queries
     * as Q8_0 and qsum[g * (hd / 32) + b] the sum of query g's codes in block b
     * (nuri_q8_block_sums). The same arithmetic as scores_q, so the same bits: an exact integer
     * sum per block, then (d_k * d_q) * sum added block by block, times scale. All rows of the
     * block are read. */
    void (*scores_tq)(uint32_t type, int32_t hd, int32_t G, const void *q8, const int32_t *qsum,
                      const uint8_t *kt, int32_t j0, int32_t n, float scale, float *s,
                      size_t s_stride);
} nuri_attn_kernels;

/* Rows in a transposed K block (scores_t, scores_tq): a KV page's rows of one head. */
#define NURI_ATTN_TROWS 32

/* A transposed Q8_0 or Q4_0 block holds NURI_ATTN_TROWS rows of hd elements in hd / 32 slices of
 * nuri_kv_tq_slice bytes (as many as the rows take row-major), one per 32-element block: first the
 * rows' F16 scales (row i's at 2 * i), then their codes in groups of 128 bytes, 4 bytes a row (row
 * i's at 64 + 128 * t + 4 * i for group t). Q8_0: group t holds elements 4t .. 4t + 3, each code +
 * 128 as an unsigned byte (8 groups). Q4_0: group t holds elements 8t .. 8t + 3 in the low nibbles
 * and 8t + 4 .. 8t + 7 in the high ones, as stored (0..15; 4 groups). So 16 rows' codes of a group
 * are one 64-byte line that vpdpbusd multiplies, unsigned, with a broadcast of the query's 4
 * signed codes; 128 (Q8_0) or 8 (Q4_0) times the query's block sum is taken off after. */
static inline size_t nuri_kv_tq_slice(uint32_t type)
{
    return (size_t)NURI_ATTN_TROWS * (type == NURI_TYPE_Q8_0 ? 34 : 18);
}
/* Row i of a transposed block from (put) or to (get) a row-major row of the type, hd elements. */
void nuri_kv_tq_put(uint32_t type, uint8_t *kt, int32_t i, const uint8_t *row, int32_t hd);
void nuri_kv_tq_get(uint32_t type, const uint8_t *kt, int32_t i, uint8_t *row, int32_t hd);
/* sums[b] = the sum of the 32 codes of Q8_0 block b, for b < n_blocks (scores_tq's qsum). */
void nuri_q8_block_sums(const void *q8, int32_t n_blocks, int32_t *sums);

/* The orthonormal Walsh-Hadamard rotation of n floats in place (n a power of two): x scaled by
 * 1 / sqrt(n), then butterflies (u + v, u - v) over distances 1, 2, 4, ... n / 2. llama.cpp
 * rotates Q and K this way before a quantized K is stored (in blocks of the largest power of two
 * from 64 up that divides the head size), and V and the attention's output in blocks of 64 around
 * a quantized V, when the head size is a multiple of 64: outliers spread over the block quantize
 * better, and dot products are unchanged (H H = I). The same operations in the same order as
 * ggml's fast transform, so the rotated values are bit-identical. */
void nuri_kv_rotate(float *x, int32_t n);

/* The types a KV cache may hold: F16, Q8_0, Q4_0. */
bool nuri_kv_type_ok(uint32_t type);
/* Bytes of one head's cached row of hd elements (hd a multiple of 32 for the quantized types). */
size_t nuri_kv_row_bytes(uint32_t type, int32_t hd);
/* n floats (one head's row) -> one cache row of the type, rounded as llama.cpp stores it
 * (ggml_set_rows with the CPU's from_float): F16 to nearest even; Q8_0 d = amax / 127 and
 * q = x * (127 / amax) rounded half to even; Q4_0 d = (the value of largest magnitude) / -8 and
 * q = min(15, trunc(x * (1 / d) + 8.5)). */
void nuri_kv_store_row(uint32_t type, const float *x, void *row, int32_t n);

/* The kernels for nuri_cpu_isa(); static storage. */
const nuri_attn_kernels *nuri_attn(void);
/* The kernels of one instruction set (for tests); NULL if this CPU lacks it. */
const nuri_attn_kernels *nuri_attn_isa(nuri_isa isa);

/* One 32-element block of a cached Q8_0 or Q4_0 row -> 32 floats (each d * q, exact as to_float).
 */
static inline void nuri_kv_block_to_float(uint32_t type, const uint8_t *blk, float *y)
{
    uint16_t h;
    memcpy(&h, blk, sizeof h);
    const float d = nuri_f16_to_f32(h);
    const uint8_t *q = blk + 2;
    if (type == NURI_TYPE_Q8_0) {
        for (int j = 0; j < 32; j++) y[j] = d * (float)(int8_t)q[j];
    } else {
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)((q[j] & 15) - 8);
            y[j + 16] = d * (float)((q[j] >> 4) - 8);
        }
    }
}

#endif
