/*
 * bench/packed.c: micro-benchmark of the packed (x16) matrix products (kernels/pack.h), one thread,
 * CPU time: a (rows, n) matrix of each packed type times T tokens, through AMX and through VNNI
 * alone (with NURI_ISA=avx2, or on a CPU without AVX-512: through pack_avx2.c's kernels), and
 * the same matrix in the file's layout (nuri_gemm: what runs when it is not packed); prints GMAC/s
 * and CPU nanoseconds per 16 x 16 x 32 product (8192 MACs, the unit the AMX kernels work in). The
 * prompt-shaped counterpart of bench/kernels.c; tokens = 1 is decode's shape.
 *
 * Built by hand, not by make test:
 *   make && cc -O2 -Iinclude -Isrc bench/packed.c build/libnuri.a -lm -lpthread -o
 * build/bench_packed build/bench_packed [rows] [n] [tokens] [type]  (defaults 2048 x 2048, 256
 * tokens, every type; a type name such as IQ4_XS runs that one only)
 */
#include "kernels/kernels.h"
#include "kernels/pack.h"

#include <math.h>
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
    const int64_t rows = argc > 1 ? atoll(argv[1]) : 2048, n = argc > 2 ? atoll(argv[2]) : 2048;
    const int64_t nt = argc > 3 ? atoll(argv[3]) : 256;
    const char *only = argc > 4 ? argv[4] : NULL;
    int ran = 0;
    const uint32_t types[] = {NURI_TYPE_Q8_0, NURI_TYPE_Q4_0,   NURI_TYPE_Q4_K,   NURI_TYPE_Q6_K,
                              NURI_TYPE_Q5_K, NURI_TYPE_Q3_K,   NURI_TYPE_Q2_K,   NURI_TYPE_F16,
                              NURI_TYPE_BF16, NURI_TYPE_IQ4_NL, NURI_TYPE_IQ4_XS, NURI_TYPE_MXFP4};
    float *wf = malloc(sizeof(float) * (size_t)n);
    float *x = malloc(sizeof(float) * (size_t)n);
    float *y = malloc(sizeof(float) * (size_t)rows * (size_t)nt);
    // below AVX-512 (or with NURI_ISA=avx2) the products are pack_avx2.c's: the VNNI columns
    // are theirs, and there is no AMX
    const int avx2 = nuri_cpu_isa() < NURI_ISA_AVX512;
    printf("packed kernels: %s\n", avx2 ? "AVX2 (pack_avx2.c)" : "AVX-512 VNNI (pack_avx512.c)");
    printf("%-6s %6s %6s %5s %10s %10s %10s %12s %12s %12s\n", "type", "rows", "n", "tok",
           "AMX GMAC/s", avx2 ? "AVX2" : "VNNI", "file", "AMX ns/8192",
           avx2 ? "AVX2 ns/8192" : "VNNI ns/8192", "file ns/8192");
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        const uint32_t t = types[k];
        if (only && strcmp(only, nuri_type_get(t)->name) != 0) continue;
        ran++;
        if (!nuri_pack_supported(t)) {
            printf("%-6s not packed on this CPU\n", nuri_type_get(t)->name);
            continue;
        }
        const nuri_kernel_traits *ref = nuri_kernels_isa(t, NURI_ISA_SCALAR);
        uint64_t rb, ab;
        nuri_type_row_bytes(t, (uint64_t)n, &rb);
        nuri_type_row_bytes(ref->vec_dot_type, (uint64_t)n, &ab);
        uint8_t *w = malloc(rb * (size_t)rows);
        for (int64_t r = 0; r < rows; r++) {
            for (int64_t i = 0; i < n; i++)
                wf[i] = (float)(((i + r) * 2654435761u) % 2001) / 1000.f - 1.f;
            ref->from_float(wf, w + r * rb, n);
        }
        void *wp = malloc(nuri_pack_bytes(t, n, rows));
        nuri_pack(t, w, rb, n, rows, wp);
        uint8_t *a = malloc(ab * (size_t)nt);
        for (int64_t j = 0; j < nt; j++) {
            for (int64_t i = 0; i < n; i++)
                x[i] = (float)(((i + 3 * j) * 7919) % 1000) / 500.f - 1.f;
            nuri_kernels_isa(ref->vec_dot_type, NURI_ISA_SCALAR)->from_float(x, a + j * ab, n);
        }
        double best[2] = {1e9, NAN}; // [VNNI, AMX]; no AMX: its columns print nan
        for (int amx = 1; amx >= 0; amx--) {
            if (amx && !nuri_pack_amx()) continue;
            for (int rep = 0; rep < 5; rep++) {
                const double t0 = now_s();
                nuri_gemm_packed(t, n, wp, rows, 0, (rows + 15) / 16, a, ab, nt, y, rows, amx);
                const double dt = now_s() - t0;
                if (!(dt >= best[amx])) best[amx] = dt;
            }
        }
        double file = 1e9; // the file's layout, this CPU's kernels (gemm_avx512.c, or vec_dot)
        for (int rep = 0; rep < 5; rep++) {
            const double t0 = now_s();
            nuri_gemm(nuri_kernels(t), n, w, rb, 0, rows, a, ab, nt, y, rows);
            const double dt = now_s() - t0;
            if (dt < file) file = dt;
        }
        const double macs = (double)rows * (double)n * (double)nt;
        printf("%-6s %6lld %6lld %5lld %10.1f %10.1f %10.1f %12.1f %12.1f %12.1f\n",
               nuri_type_get(t)->name, (long long)rows, (long long)n, (long long)nt,
               macs / best[1] * 1e-9, macs / best[0] * 1e-9, macs / file * 1e-9,
               best[1] / macs * 8192 * 1e9, best[0] / macs * 8192 * 1e9, file / macs * 8192 * 1e9);
        free(w);
        free(wp);
        free(a);
    }
    free(wf);
    free(x);
    free(y);
    if (only && !ran) {
        fprintf(stderr, "bench_packed: no packed type named %s\n", only);
        return 1;
    }
    return 0;
}
