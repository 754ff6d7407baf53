/*
 * threadpool.h: a fixed team of threads that run one function together, SPMD style.
 *
 * nuri_pool_run(pool, fn, arg) calls fn(arg, ith, nth) on every thread of the team (the caller is
 * thread 0) and returns when all have returned. Inside fn, nuri_pool_barrier() synchronises the
 * team between dependent steps (a forward pass runs as one fn with a barrier after each step, so a
 * step costs a barrier, not a wake-up). Workers spin briefly, then sleep, between runs.
 */
#ifndef NURI_BASE_THREADPOOL_H
#define NURI_BASE_THREADPOOL_H

#include "nuri.h"

#include <stdatomic.h>

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

/*
 * Work shared first come, first served, so that a thread the OS pauses (this machine is shared)
 * does not hold the others up at the next barrier. A run has one ticket counter, 0 when the run
 * starts, that only grows. A shared step with n items owns tickets [base, base + n): every thread
 * passes the same steps in the same order and keeps a running total of their items as the next
 * step's base (nuri_share_step), then takes items until nuri_share_take says none is left.
 */
typedef struct nuri_share {
    _Atomic long *next; // the run's ticket counter
    long base, n;       // this step's tickets
} nuri_share;

/* The running team's ticket counter. Only from inside fn. */
_Atomic long *nuri_pool_tickets(nuri_pool *pool);

/* The next step of n items; *total is this thread's count of items of the run's earlier steps. */
static inline nuri_share nuri_share_step(nuri_pool *pool, long *total, long n)
{
    nuri_share s = {nuri_pool_tickets(pool), *total, n};
    *total += n;
    return s;
}

/* An item of the step not taken yet, in [0, n), or -1. Tickets are taken in order and never
 * beyond the step's end, so a thread still in an earlier step cannot take this one's. */
static inline long nuri_share_take(const nuri_share *s)
{
    long cur = atomic_load_explicit(s->next, memory_order_relaxed);
    while (cur < s->base + s->n)
        if (atomic_compare_exchange_weak_explicit(s->next, &cur, cur + 1, memory_order_relaxed,
                                                  memory_order_relaxed))
            return cur - s->base;
    return -1;
}

/* Splits [0, n) into nth nearly equal parts; part ith is [*begin, *end). */
static inline void nuri_split(long n, int ith, int nth, long *begin, long *end)
{
    long per = n / nth, rem = n % nth;
    *begin = ith * per + (ith < rem ? ith : rem);
    *end = *begin + per + (ith < rem ? 1 : 0);
}

#endif
