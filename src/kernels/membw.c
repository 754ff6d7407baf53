/*
 * membw.c: the read-bandwidth probe of membw.h. Each thread sums its contiguous slice of the
 * buffer with eight independent 64-bit accumulators (plain loads are enough to saturate DRAM).
 * Pages are written once first (word i holds i), so the probe measures reads from memory, not page
 * faults, and every pass checks that the sum it read is the sum of 0..n-1: a probe that skipped
 * part of the buffer would report an impossible bandwidth, so it fails instead.
 */
#include "kernels/membw.h"

#include "base/status.h"
#include "base/threadpool.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { PROBE_PF = 8 * 64 }; // software prefetch distance in words (4 KiB), as the kernels prefetch

typedef struct probe {
    uint64_t *buf;
    size_t words;      // total 64-bit words
    bool fill;         // first pass: write the pages
    uint64_t sum[256]; // one per thread: the sum of its slice
} probe;

static void probe_worker(void *arg, int ith, int nth)
{
    probe *p = arg;
    long b, e;
    nuri_split((long)(p->words / 8), ith, nth, &b, &e); // in cache lines of 8 words
    uint64_t *w = p->buf + (size_t)b * 8;
    const size_t n = (size_t)(e - b) * 8;
    if (p->fill) {
        for (size_t i = 0; i < n; i++) w[i] = (uint64_t)b * 8 + i;
        return;
    }
    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
    for (size_t i = 0; i < n; i += 8) {
        __builtin_prefetch(w + i + PROBE_PF); // past the end is harmless: prefetches never fault
        a0 += w[i];
        a1 += w[i + 1];
        a2 += w[i + 2];
        a3 += w[i + 3];
        a4 += w[i + 4];
        a5 += w[i + 5];
        a6 += w[i + 6];
        a7 += w[i + 7];
    }
    p->sum[ith] = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

nuri_status nuri_membw_measure(int n_threads, size_t bytes, int reps, double *gb_per_s)
{
    if (n_threads < 1 || n_threads > 256 || reps < 1)
        return nuri_error(NURI_ERR_INVALID_ARG, "membw: n_threads %d (1..256) or reps %d (>= 1)",
                          n_threads, reps);
    const size_t min_bytes = (size_t)64 << 20;
    if (bytes < min_bytes) bytes = min_bytes;
    bytes &= ~(size_t)4095;
    probe *p = calloc(1, sizeof *p);
    void *buf = NULL;
    if (!p || posix_memalign(&buf, 4096, bytes) != 0) {
        free(p);
        return nuri_error(NURI_ERR_NOMEM, "membw: cannot allocate a %zu-byte probe buffer", bytes);
    }
    nuri_pool *pool;
    nuri_status st = nuri_pool_new(n_threads, &pool);
    if (st != NURI_OK) {
        free(buf);
        free(p);
        return st;
    }
    p->buf = buf;
    p->words = bytes / 8;
    p->fill = true;
    nuri_pool_run(pool, probe_worker, p);
    p->fill = false;
    double best = 0;
    const uint64_t words = p->words;
    // sum of 0..words-1, mod 2^64 (words is even, so halve it before multiplying)
    const uint64_t want = (words / 2) * (words - 1);
    for (int r = 0; r <= reps && st == NURI_OK; r++) {
        double t0 = now_s();
        nuri_pool_run(pool, probe_worker, p);
        double dt = now_s() - t0;
        uint64_t got = 0;
        for (int i = 0; i < n_threads; i++) got += p->sum[i];
        if (got != want)
            st = nuri_error(NURI_ERR_IO, "membw: the probe read back a wrong sum "
                                         "(internal error)");
        double gbs = (double)bytes / dt * 1e-9;
        if (r > 0 && gbs > best) best = gbs; // pass 0 is the warm-up
    }
    *gb_per_s = best;
    nuri_pool_free(pool);
    free(buf);
    free(p);
    return st;
}
