/*
 * threadpool.c: see threadpool.h. A run is published by bumping `generation`; workers spin on it
 * for a while (runs come back to back during generation), then sleep on a condition variable. The
 * barrier is a sense-counting spin barrier: with one thread per core, a step's synchronisation
 * costs well under a microsecond.
 */
#include "base/threadpool.h"
#include "base/status.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

#define SPIN_BEFORE_SLEEP 200000 // pause iterations a worker spins before sleeping

struct nuri_pool {
    int n_threads;
    pthread_t *threads; // n_threads - 1 workers
    nuri_pool_fn fn;
    void *arg;
    _Atomic unsigned generation; // bumped for each run
    _Atomic int n_done;          // workers finished with the current run
    _Atomic int stop;
    // barrier
    _Atomic int barrier_count;
    _Atomic unsigned barrier_phase;
    // sleeping
    pthread_mutex_t mu;
    pthread_cond_t cv;
    _Atomic int n_sleeping;
    _Atomic long tickets; // shared work (threadpool.h), reset for each run
    // lanes (threadpool.h): a counter per thread, 64 bytes apart (so never two on one cache
    // line; the pool comes from calloc, so no stricter alignment is asked), reset for each run
    _Atomic long lanes[NURI_LANES_MAX * NURI_LANE_STRIDE];
};

typedef struct worker_arg {
    nuri_pool *pool;
    int ith;
} worker_arg;

static void *worker_main(void *p)
{
    worker_arg wa = *(worker_arg *)p;
    free(p);
    nuri_pool *pool = wa.pool;
    unsigned seen = 0;
    for (;;) {
        unsigned gen;
        int spins = 0;
        while ((gen = atomic_load_explicit(&pool->generation, memory_order_acquire)) == seen &&
               !atomic_load(&pool->stop)) {
            if (++spins < SPIN_BEFORE_SLEEP) {
                cpu_relax();
                continue;
            }
            pthread_mutex_lock(&pool->mu);
            atomic_fetch_add(&pool->n_sleeping, 1);
            while (atomic_load(&pool->generation) == seen && !atomic_load(&pool->stop))
                pthread_cond_wait(&pool->cv, &pool->mu);
            atomic_fetch_sub(&pool->n_sleeping, 1);
            pthread_mutex_unlock(&pool->mu);
            spins = 0;
        }
        if (atomic_load(&pool->stop)) break;
        seen = gen;
        pool->fn(pool->arg, wa.ith, pool->n_threads);
        atomic_fetch_add_explicit(&pool->n_done, 1, memory_order_release);
    }
    return NULL;
}

nuri_status nuri_pool_new(int n_threads, nuri_pool **out)
{
    *out = NULL;
    if (n_threads < 1 || n_threads > 1024)
        return nuri_error(NURI_ERR_INVALID_ARG, "thread count %d is not in 1..1024", n_threads);
    nuri_pool *pool = calloc(1, sizeof *pool);
    if (!pool) return nuri_error(NURI_ERR_NOMEM, "out of memory for the thread pool");
    pool->n_threads = n_threads;
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->cv, NULL);
    if (n_threads > 1) {
        pool->threads = calloc((size_t)n_threads - 1, sizeof *pool->threads);
        if (!pool->threads) {
            nuri_pool_free(pool);
            return nuri_error(NURI_ERR_NOMEM, "out of memory for the thread pool");
        }
        for (int i = 1; i < n_threads; i++) {
            worker_arg *wa = malloc(sizeof *wa);
            if (wa) *wa = (worker_arg){.pool = pool, .ith = i};
            if (!wa || pthread_create(&pool->threads[i - 1], NULL, worker_main, wa) != 0) {
                free(wa);
                pool->n_threads = i; // only i-1 workers exist
                nuri_pool_free(pool);
                return nuri_error(NURI_ERR_NOMEM, "could not start thread %d of %d", i, n_threads);
            }
        }
    }
    *out = pool;
    return NURI_OK;
}

void nuri_pool_free(nuri_pool *pool)
{
    if (!pool) return;
    pthread_mutex_lock(&pool->mu);
    atomic_store(&pool->stop, 1);
    pthread_cond_broadcast(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
    if (pool->threads)
        for (int i = 1; i < pool->n_threads; i++) pthread_join(pool->threads[i - 1], NULL);
    pthread_mutex_destroy(&pool->mu);
    pthread_cond_destroy(&pool->cv);
    free(pool->threads);
    free(pool);
}

int nuri_pool_size(const nuri_pool *pool)
{
    return pool->n_threads;
}

_Atomic long *nuri_pool_tickets(nuri_pool *pool)
{
    return &pool->tickets;
}

_Atomic long *nuri_pool_lanes(nuri_pool *pool)
{
    return pool->lanes;
}

void nuri_pool_run(nuri_pool *pool, nuri_pool_fn fn, void *arg)
{
    atomic_store_explicit(&pool->tickets, 0, memory_order_relaxed); // published with the run
    for (int i = 0; i < pool->n_threads && i < NURI_LANES_MAX; i++)
        atomic_store_explicit(&pool->lanes[i * NURI_LANE_STRIDE], 0, memory_order_relaxed);
    if (pool->n_threads == 1) {
        fn(arg, 0, 1);
        return;
    }
    pool->fn = fn;
    pool->arg = arg;
    atomic_store(&pool->n_done, 0);
    atomic_fetch_add_explicit(&pool->generation, 1, memory_order_release);
    if (atomic_load(&pool->n_sleeping) > 0) {
        pthread_mutex_lock(&pool->mu);
        pthread_cond_broadcast(&pool->cv);
        pthread_mutex_unlock(&pool->mu);
    }
    fn(arg, 0, pool->n_threads);
    long spins = 0;
    while (atomic_load_explicit(&pool->n_done, memory_order_acquire) < pool->n_threads - 1) {
        if (++spins % 1024 == 0)
            sched_yield();
        else
            cpu_relax();
    }
}

void nuri_pool_barrier(nuri_pool *pool)
{
    int n = pool->n_threads;
    if (n == 1) return;
    unsigned phase = atomic_load_explicit(&pool->barrier_phase, memory_order_acquire);
    if (atomic_fetch_add_explicit(&pool->barrier_count, 1, memory_order_acq_rel) == n - 1) {
        atomic_store_explicit(&pool->barrier_count, 0, memory_order_relaxed);
        atomic_fetch_add_explicit(&pool->barrier_phase, 1, memory_order_release);
        return;
    }
    long spins = 0;
    while (atomic_load_explicit(&pool->barrier_phase, memory_order_acquire) == phase) {
        if (++spins % 1024 == 0)
            sched_yield();
        else
            cpu_relax();
    }
}
