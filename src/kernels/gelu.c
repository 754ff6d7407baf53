/*
 * gelu.c: GeGLU through a table of F16 GELU values (gelu.h). One table for the process, built on
 * first use under pthread_once; after that, reads only.
 */
#include "kernels/gelu.h"
#include "kernels/fp16.h"

#include <math.h>
#include <pthread.h>

static uint16_t gelu_f16[1 << 16]; // F16(gelu(h)) for every F16 bit pattern h
static pthread_once_t gelu_once = PTHREAD_ONCE_INIT;

float nuri_gelu_f32(float x)
{
    const float sqrt_2_over_pi = 0.79788456080286535587989211986876f;
    const float a = 0.044715f;
    return 0.5f * x * (1.0f + tanhf(sqrt_2_over_pi * x * (1.0f + a * x * x)));
}

static void gelu_init(void)
{
    for (uint32_t h = 0; h < (1u << 16); h++)
        gelu_f16[h] = nuri_f32_to_f16(nuri_gelu_f32(nuri_f16_to_f32((uint16_t)h)));
}

static inline float gelu_lookup(float x)
{
    if (x <= -10.0f) return 0.0f;
    if (x >= 10.0f) return x;
    return nuri_f16_to_f32(gelu_f16[nuri_f32_to_f16(x)]);
}

float nuri_gelu_table(float x)
{
    pthread_once(&gelu_once, gelu_init);
    return gelu_lookup(x);
}

void nuri_geglu(float *g, const float *u, int64_t n)
{
    pthread_once(&gelu_once, gelu_init);
    for (int64_t i = 0; i < n; i++) g[i] = gelu_lookup(g[i]) * u[i];
}
