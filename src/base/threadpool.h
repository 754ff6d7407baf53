/*
 * threadpool.h: a fixed team of threads that run one function together, SPMD style.
 *
 * nuri_pool_run(pool, fn, arg) calls fn(arg, ith, nth) on every thread of the team (the caller is
 * thread 0) and returns when all have returned. Inside fn, nuri_pool_barrier() synchronises the team
 * between dependent steps (a forward pass runs as one fn with a barrier after each step, so a step
 * costs a barrier, not a wake-up). Workers spin briefly, then sleep, between runs.
 */
#ifndef NURI_BASE_THREADPOOL_H
#define NURI_BASE_THREADPOOL_H

#include "nuri.h"

typedef struct nuri_pool nuri_pool;
typedef void (*nuri_pool_fn)(void *arg, int ith, int nth);

/* n_threads >= 1 (1 = the caller alone, no threads are made). Caller frees with nuri_pool_free. */
nuri_status nuri_pool_new(int n_threads, nuri_pool **out);
void nuri_pool_free(nuri_pool *pool);
int nuri_pool_size(const nuri_pool *pool);

/* Runs fn on all threads; not reentrant (one run at a time per pool). */
void nuri_pool_run(nuri_pool *pool, nuri_pool_fn fn, void *arg);

/* Waits until every thread of the running team has reached this barrier. Only from inside fn. */
void nuri_pool_barrier(nuri_pool *pool);

/* Splits [0, n) into nth nearly equal parts; part ith is [*begin, *end). */
static inline void nuri_split(long n, int ith, int nth, long *begin, long *end)
{
    long per = n / nth, rem = n % nth;
    *begin = ith * per + (ith < rem ? ith : rem);
    *end = *begin + per + (ith < rem ? 1 : 0);
}

#endif
