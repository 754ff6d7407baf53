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
 */
#ifndef NURI_ATTN_H
#define NURI_ATTN_H

#include "kernels/kernels.h"

#include <stddef.h>
#include <stdint.h>

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
} nuri_attn_kernels;

/* The kernels for nuri_cpu_isa(); static storage. */
const nuri_attn_kernels *nuri_attn(void);
/* The kernels of one instruction set (for tests); NULL if this CPU lacks it. */
const nuri_attn_kernels *nuri_attn_isa(nuri_isa isa);

#endif
