/*
 * deltanet.h: the arithmetic of a gated delta-net layer (Qwen3.5's linear attention) for one
 * token of one sequence, on plain float arrays: the causal convolution with its window, the L2
 * norm of a query or key head, the gated delta rule on one value head's state, and the gated
 * RMSNorm of its output. forward.c runs them over a batch (the projections, the threads, which
 * sequence's state); nothing here allocates or knows about batches.
 *
 * Rounding follows llama.cpp's CPU path (ggml's ssm_conv, rms_norm and gated_delta_net ops), one
 * token at a time: llama.cpp runs prompts and decode steps through the same recurrent form, so a
 * token's result never depends on how its sequence was cut into batches.
 *
 * The state of one value head is an (S, S) matrix kept transposed, as ggml keeps it: M[j * S + i]
 * is S[i][j], row j the column of the value dimension j over the key dimensions i.
 */
#ifndef NURI_MODEL_DELTANET_H
#define NURI_MODEL_DELTANET_H

#include <stdint.h>

/* Channels [c0, c1) of one token through the causal convolution of width d_conv: each channel's
 * window is its d_conv - 1 previous inputs (state, oldest first, (C, d_conv - 1)) and x[c]; out[c]
 * = silu(window . kernel[c]) (kernel (C, d_conv)); the window then moves on by x. */
void nuri_dn_conv(const float *kernel, int32_t d_conv, float *state, const float *x, float *out,
                  int64_t c0, int64_t c1);

/* x (n) scaled to unit length as llama.cpp does it: an RMS norm with eps / n, times 1/sqrt(n). */
void nuri_dn_l2norm(float *x, int64_t n, float eps);

/* One token through one value head: M *= exp(g); delta = (v - M k) * beta; M += k delta^T;
 * out = M q / sqrt(S). q and k are already L2-normed. */
void nuri_dn_step(float *M, int64_t S, const float *q, const float *k, const float *v, float g,
                  float beta, float *out);

/* The head's output o (S) normed (RMSNorm with weight w, eps) and gated: o = norm(o) * silu(z). */
void nuri_dn_gated_norm(float *o, const float *z, const float *w, int64_t S, float eps);

/* beta = sigmoid(b); g = softplus(a + dt_bias) * ssm_a, for the n value heads of one token. */
void nuri_dn_gates(float *b, float *a, const float *dt_bias, const float *ssm_a, int64_t n);

#endif
