/*
 * deltanet.c: see deltanet.h. Every sum runs in a fixed order over its own token's numbers only,
 * so the results are the same whatever the batch and the thread that computes them.
 */
#include "model/deltanet.h"

#include <math.h>

static float silu(float x)
{
    return x / (1.0f + expf(-x));
}

void nuri_dn_conv(const float *kernel, int32_t d_conv, float *state, const float *x, float *out,
                  int64_t c0, int64_t c1)
{
    const int32_t w = d_conv - 1;
    for (int64_t c = c0; c < c1; c++) {
        float *st = state + c * w;
        const float *k = kernel + c * d_conv;
        float sum = 0.0f; // in float, window order, as ggml's ssm_conv
        for (int32_t i = 0; i < w; i++) sum += st[i] * k[i];
        sum += x[c] * k[w];
        out[c] = silu(sum);
        for (int32_t i = 0; i + 1 < w; i++) st[i] = st[i + 1];
        if (w > 0) st[w - 1] = x[c];
    }
}

void nuri_dn_l2norm(float *x, int64_t n, float eps)
{
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)(x[i] * x[i]);
    const float mean = (float)(sum / (double)n);
    const float scale = 1.0f / sqrtf(mean + eps / (float)n);
    const float unit = 1.0f / sqrtf((float)n);
    for (int64_t i = 0; i < n; i++) x[i] = (x[i] * scale) * unit;
}

void nuri_dn_step(float *M, int64_t S, const float *q, const float *k, const float *v, float g,
                  float beta, float *out)
{
    const float decay = expf(g);
    for (int64_t i = 0; i < S * S; i++) M[i] *= decay;
    const float scale = 1.0f / sqrtf((float)S);
    for (int64_t j = 0; j < S; j++) { // rows are independent: each done whole in turn
        float *row = M + j * S;
        float mk = 0.0f;
        for (int64_t i = 0; i < S; i++) mk += row[i] * k[i];
        const float delta = (v[j] - mk) * beta;
        float o = 0.0f;
        for (int64_t i = 0; i < S; i++) {
            row[i] += k[i] * delta;
            o += row[i] * q[i];
        }
        out[j] = o * scale;
    }
}

void nuri_dn_gated_norm(float *o, const float *z, const float *w, int64_t S, float eps)
{
    double sum = 0.0;
    for (int64_t i = 0; i < S; i++) sum += (double)(o[i] * o[i]);
    const float mean = (float)(sum / (double)S);
    const float scale = 1.0f / sqrtf(mean + eps);
    for (int64_t i = 0; i < S; i++) o[i] = ((o[i] * scale) * w[i]) * silu(z[i]);
}

void nuri_dn_gates(float *b, float *a, const float *dt_bias, const float *ssm_a, int64_t n)
{
    for (int64_t h = 0; h < n; h++) {
        b[h] = 1.0f / (1.0f + expf(-b[h]));
        const float x = a[h] + dt_bias[h];
        const float sp = x > 20.0f ? x : logf(1.0f + expf(x));
        a[h] = sp * ssm_a[h];
    }
}
