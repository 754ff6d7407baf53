/*
 * bench/kernels.c: micro-benchmark of the kernels: a (rows, n) weight matrix of each type times
 * one activation row, per ISA, by vec_dot row by row and by nuri_gemm (decode shape), and by
 * nuri_gemm with 64 tokens, or `tokens` (prompt shape); prints GB/s of weights read (decode) and
 * GMAC/s (prompt).
 *
 * Built by hand, not by make test:
 *   make && cc -O2 -Iinclude -Isrc bench/kernels.c build/libnuri.a -lm -lpthread -o
 * build/bench_kernels build/bench_kernels [rows] [n] [tokens]   (defaults 2048 x 4096, 64)
 */
#include "kernels/kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts); // CPU time: robust on a shared machine
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    int64_t rows = argc > 1 ? atoll(argv[1]) : 2048, n = argc > 2 ? atoll(argv[2]) : 4096;
    const int PT = argc > 3 ? atoi(argv[3]) : 64;
    const uint32_t types[] = {
        NURI_TYPE_Q8_0,   NURI_TYPE_Q4_0,  NURI_TYPE_Q4_K,    NURI_TYPE_Q6_K,   NURI_TYPE_Q5_K,
        NURI_TYPE_Q3_K,   NURI_TYPE_Q2_K,  NURI_TYPE_Q4_1,    NURI_TYPE_Q5_0,   NURI_TYPE_Q5_1,
        NURI_TYPE_F16,    NURI_TYPE_BF16,  NURI_TYPE_F32,     NURI_TYPE_IQ4_XS, NURI_TYPE_IQ2_XXS,
        NURI_TYPE_IQ2_XS, NURI_TYPE_IQ2_S, NURI_TYPE_IQ3_XXS, NURI_TYPE_IQ3_S,  NURI_TYPE_IQ1_S,
        NURI_TYPE_IQ1_M};
    float *x = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) x[i] = (float)((i * 7919) % 1000) / 500.f - 1.f;
    printf("%-6s %-7s %10s %10s %10s %9s%-3d\n", "type", "isa", "GB/s", "ns/row", "gemm GB/s",
           "GMAC/s pp", PT);
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        uint32_t t = types[k];
        uint64_t rb;
        nuri_type_row_bytes(t, (uint64_t)n, &rb);
        uint8_t *w = malloc(rb * (size_t)rows);
        const nuri_kernel_traits *ref = nuri_kernels_isa(t, NURI_ISA_SCALAR);
        float *wf = malloc(sizeof(float) * (size_t)n);
        for (int64_t r = 0; r < rows; r++) {
            for (int64_t i = 0; i < n; i++)
                wf[i] = (float)(((i + r) * 2654435761u) % 2001) / 1000.f - 1.f;
            ref->from_float(wf, w + r * rb, n);
        }
        uint64_t ab;
        nuri_type_row_bytes(ref->vec_dot_type, (uint64_t)n, &ab);
        uint8_t *a = malloc(ab * PT);
        for (int j = 0; j < PT; j++)
            nuri_kernels_isa(ref->vec_dot_type, NURI_ISA_SCALAR)->from_float(x, a + j * ab, n);
        float *yy = malloc(sizeof(float) * (size_t)rows * PT);
        for (int isa = 0; isa <= NURI_ISA_AVX512; isa++) {
            const nuri_kernel_traits *kt = nuri_kernels_isa(t, (nuri_isa)isa);
            if (!kt) continue;
            float sink = 0, s;
            int reps = isa == 0 ? 1 : 50;
            double best = 1e9;
            for (int rep = 0; rep < reps; rep++) {
                double t0 = now_s();
                for (int64_t r = 0; r < rows; r++) {
                    kt->vec_dot(n, &s, w + r * rb, a);
                    sink += s;
                }
                double dt = now_s() - t0;
                if (dt < best) best = dt;
            }
            double best_g = 1e9, best_p = 1e9;
            for (int rep = 0; rep < reps; rep++) {
                double t0 = now_s();
                nuri_gemm(kt, n, w, rb, 0, rows, a, ab, 1, yy, rows);
                double dt = now_s() - t0;
                if (dt < best_g) best_g = dt;
            }
            for (int rep = 0; rep < (isa == 0 ? 1 : 3); rep++) {
                double t0 = now_s();
                nuri_gemm(kt, n, w, rb, 0, rows, a, ab, PT, yy, rows);
                double dt = now_s() - t0;
                if (dt < best_p) best_p = dt;
            }
            printf("%-6s %-7s %10.2f %10.1f %10.2f %12.2f %s\n", nuri_type_get(t)->name,
                   nuri_isa_name((nuri_isa)isa), (double)rb * rows / best * 1e-9, best / rows * 1e9,
                   (double)rb * rows / best_g * 1e-9, (double)rows * n * PT / best_p * 1e-9,
                   sink == 12345.f ? "!" : "");
        }
        free(w);
        free(wf);
        free(a);
        free(yy);
    }
    free(x);
    return 0;
}
