/*
 * gelu.h: the GELU-gated feed-forward (GeGLU) of the Gemma models, rounded as llama.cpp's CPU path
 * rounds it.
 *
 * GELU here is the tanh form, 0.5 x (1 + tanh(sqrt(2/pi) x (1 + 0.044715 x^2))). llama.cpp's CPU
 * backend does not evaluate it per element: it rounds x to F16 and looks the result up in a table
 * of the F16-rounded GELU of every F16 value, except for x <= -10 (0) and x >= 10 (x itself).
 * nuri does the same, so that its feed-forward outputs are those of llama.cpp bit for bit in the
 * gate; the differences would otherwise be up to an F16 rounding step (about 1e-3 relative) per
 * element, which the golden tolerances would mostly, not always, absorb.
 */
#ifndef NURI_KERNELS_GELU_H
#define NURI_KERNELS_GELU_H

#include <stdint.h>

/* The tanh-form GELU of x in float, unrounded (the table's source; also for tests). */
float nuri_gelu_f32(float x);

/* GELU of x as the table gives it: F16(gelu(F16(x))) widened, 0 for x <= -10, x for x >= 10. */
float nuri_gelu_table(float x);

/* In place: g[i] = gelu_table(g[i]) * u[i] for i < n. The table (128 KiB) is built on first use,
 * once, thread-safely. */
void nuri_geglu(float *g, const float *u, int64_t n);

#endif
