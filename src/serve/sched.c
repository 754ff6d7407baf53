/*
 * sched.c: continuous batching over one nuri_ctx (see sched.h for the step and its rules).
 *
 * Slots are the context's sequence ids. A slot remembers the tokens its KV holds (toks), also
 * after its request ended: an idle slot's KV is the prefix cache. Everything per-step (the batch
 * arrays, the slots' token lists) is allocated once at start; the loop itself does not allocate.
 */
#include "serve/sched.h"

#include "base/status.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct slot {
    serve_job *job;  // NULL: idle (its KV may still serve as a prefix cache)
    int32_t *toks;   // (seq_max) the tokens whose KV the sequence holds, in position order
    int32_t n_toks;  // tokens
    int32_t next;    // decoding: the sampled token to feed next; -1 while prefilling
    uint64_t stamp;  // admission order (younger = larger); LRU order for idle slots
    double t_last;   // when the last token was produced (inter-token latency)
    int32_t b_first; // this step: index of the slot's first token in the batch, -1 if none
    int32_t b_n;     // this step: tokens of the slot in the batch
} slot;

struct serve_sched {
    const nuri_model *m;
    nuri_ctx *ctx;
    serve_metrics *metrics;
    serve_sched_params p;
    int32_t seq_max; // tokens one sequence may hold
    pthread_mutex_t mu;
    pthread_cond_t cv; // new work, a reader caught up, or stop
    pthread_t thread;
    bool started, stop;
    serve_job **queue; // ring of p.max_queue waiting jobs
    int q_head, q_count;
    slot *slots; // (max_seqs)
    uint64_t clock;
    // the step's batch: (n_batch) each
    int32_t *b_tok, *b_pos, *b_seq;
    int8_t *b_logits;
    int32_t *row_slot;           // (max_seqs) logits row -> slot
    int32_t *row_tok;            // (max_seqs) the token sampled for each row
    nuri_token_logprobs *row_lp; // (max_seqs)
};

/* ============================== jobs ============================== */

serve_job *serve_job_new(int32_t *prompt, int32_t n_prompt, nuri_sampler *sampler)
{
    serve_job *j = calloc(1, sizeof *j);
    if (!j) {
        free(prompt);
        nuri_sampler_free(sampler);
        return NULL;
    }
    j->prompt = prompt;
    j->n_prompt = n_prompt;
    j->sampler = sampler;
    j->refs = 1;
    pthread_cond_init(&j->cv, NULL);
    return j;
}

static void job_unref_locked(serve_job *j)
{
    if (--j->refs > 0) return;
    pthread_cond_destroy(&j->cv);
    free(j->prompt);
    nuri_sampler_free(j->sampler);
    free(j);
}

void serve_job_release(serve_sched *s, serve_job *j)
{
    pthread_mutex_lock(&s->mu);
    job_unref_locked(j);
    pthread_mutex_unlock(&s->mu);
}

void serve_job_cancel(serve_sched *s, serve_job *j)
{
    pthread_mutex_lock(&s->mu);
    if (!j->done) {
        j->cancelled = true;
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
}

void serve_job_result(serve_sched *s, serve_job *j, nuri_finish_reason *finish, int *err_http,
                      char *err, size_t err_cap, int32_t *n_cached)
{
    pthread_mutex_lock(&s->mu);
    if (finish) *finish = j->finish;
    if (err_http) *err_http = j->err_http;
    if (err && err_cap) snprintf(err, err_cap, "%s", j->err);
    if (n_cached) *n_cached = j->n_cached;
    pthread_mutex_unlock(&s->mu);
}

int serve_job_wait(serve_sched *s, serve_job *j, serve_event *out, int cap, int timeout_ms,
                   bool *done)
{
    pthread_mutex_lock(&s->mu);
    if (j->ring_count == 0 && !j->done && timeout_ms > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += timeout_ms / 1000;
        ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        while (j->ring_count == 0 && !j->done)
            if (pthread_cond_timedwait(&j->cv, &s->mu, &ts) == ETIMEDOUT) break;
    }
    bool was_full = j->ring_count == SERVE_JOB_RING;
    int k = 0;
    while (k < cap && j->ring_count > 0) {
        out[k++] = j->ring[j->ring_head];
        j->ring_head = (j->ring_head + 1) % SERVE_JOB_RING;
        j->ring_count--;
    }
    if (was_full && k > 0) pthread_cond_signal(&s->cv); // its sequence may run again
    *done = j->done && j->ring_count == 0;
    pthread_mutex_unlock(&s->mu);
    return k;
}

/* Ends the job of slot i (under the lock). Its KV stays as a prefix cache unless drop_kv. */
static void slot_finish_locked(serve_sched *s, int i, bool drop_kv)
{
    slot *sl = &s->slots[i];
    serve_job *j = sl->job;
    j->done = true;
    pthread_cond_signal(&j->cv);
    job_unref_locked(j);
    sl->job = NULL;
    sl->next = -1;
    sl->stamp = ++s->clock;
    if (drop_kv) {
        nuri_ctx_seq_clear(s->ctx, i);
        sl->n_toks = 0;
    }
}

static void slot_fail_locked(serve_sched *s, int i, int http, const char *msg)
{
    serve_job *j = s->slots[i].job;
    j->err_http = http;
    snprintf(j->err, sizeof j->err, "%s", msg);
    slot_finish_locked(s, i, true);
}

/* ============================== admission ============================== */

nuri_status serve_sched_submit(serve_sched *s, serve_job *j)
{
    pthread_mutex_lock(&s->mu);
    if (s->stop || s->q_count == s->p.max_queue) {
        pthread_mutex_unlock(&s->mu);
        return nuri_error(NURI_ERR_LIMIT, "the queue is full (%d requests waiting)",
                          s->p.max_queue);
    }
    j->refs++;
    s->queue[(s->q_head + s->q_count) % s->p.max_queue] = j;
    s->q_count++;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return NURI_OK;
}

static int32_t common_prefix(const int32_t *a, int32_t na, const int32_t *b, int32_t nb)
{
    int32_t n = na < nb ? na : nb, i = 0;
    while (i < n && a[i] == b[i]) i++;
    return i;
}

/* Places job j into a slot, reusing the longest cached prefix. Returns false if no slot is free. */
static bool admit_locked(serve_sched *s, serve_job *j)
{
    int n_slots = s->p.max_seqs, best = -1, target = -1;
    int32_t best_lcp = 0;
    for (int i = 0; i < n_slots; i++) {
        int32_t l = common_prefix(s->slots[i].toks, s->slots[i].n_toks, j->prompt, j->n_prompt);
        if (l > best_lcp) best_lcp = l, best = i;
    }
    int32_t reuse = best_lcp < j->n_prompt - 1 ? best_lcp : j->n_prompt - 1; // >= 1 to compute
    if (best >= 0 && !s->slots[best].job && reuse > 0) {
        target = best;
    } else {
        // a free slot: an empty one first, else the least recently used cache
        for (int i = 0; i < n_slots; i++) {
            slot *sl = &s->slots[i];
            if (sl->job) continue;
            if (target < 0 || (sl->n_toks == 0 && s->slots[target].n_toks > 0) ||
                ((sl->n_toks == 0) == (s->slots[target].n_toks == 0) &&
                 sl->stamp < s->slots[target].stamp))
                target = i;
        }
        if (target < 0) return false;
    }
    slot *t = &s->slots[target];
    if (target == best) {
        nuri_ctx_seq_truncate(s->ctx, target, reuse);
        t->n_toks = reuse;
    } else if (reuse > 0 && nuri_ctx_seq_fork(s->ctx, best, target, reuse) == NURI_OK) {
        memcpy(t->toks, j->prompt, (size_t)reuse * sizeof *t->toks);
        t->n_toks = reuse;
    } else {
        nuri_ctx_seq_clear(s->ctx, target);
        t->n_toks = 0;
        reuse = 0;
    }
    j->n_cached = reuse;
    t->job = j;
    t->next = -1;
    t->stamp = ++s->clock;
    t->t_last = 0;
    return true;
}

/* Drops the prefix cache of the least recently used idle slot. False if there is none. */
static bool evict_one_cache_locked(serve_sched *s)
{
    int victim = -1;
    for (int i = 0; i < s->p.max_seqs; i++) {
        slot *sl = &s->slots[i];
        if (sl->job || sl->n_toks == 0) continue;
        if (victim < 0 || sl->stamp < s->slots[victim].stamp) victim = i;
    }
    if (victim < 0) return false;
    nuri_ctx_seq_clear(s->ctx, victim);
    s->slots[victim].n_toks = 0;
    return true;
}

/* ============================== the step ============================== */

/* Fills the batch arrays. Returns the token count; rows of logits go to s->row_slot. */
static int32_t build_batch_locked(serve_sched *s, int32_t *n_rows)
{
    int32_t n = 0, rows = 0;
    for (int i = 0; i < s->p.max_seqs; i++) s->slots[i].b_first = -1, s->slots[i].b_n = 0;
    // decoding sequences first: one token each
    for (int i = 0; i < s->p.max_seqs; i++) {
        slot *sl = &s->slots[i];
        if (!sl->job || sl->next < 0 || sl->job->ring_count == SERVE_JOB_RING) continue;
        sl->b_first = n;
        sl->b_n = 1;
        s->b_tok[n] = sl->next;
        s->b_pos[n] = sl->n_toks;
        s->b_seq[n] = i;
        s->b_logits[n] = 1;
        s->row_slot[rows++] = i;
        n++;
    }
    // then prompt chunks, oldest request first, with what is left of the batch
    for (;;) {
        int pick = -1;
        for (int i = 0; i < s->p.max_seqs; i++) {
            slot *sl = &s->slots[i];
            if (!sl->job || sl->next >= 0 || sl->b_n > 0) continue;
            if (pick < 0 || sl->stamp < s->slots[pick].stamp) pick = i;
        }
        int32_t budget = s->p.n_batch - n;
        if (pick < 0 || budget <= 0) break;
        slot *sl = &s->slots[pick];
        serve_job *j = sl->job;
        int32_t left = j->n_prompt - sl->n_toks;
        int32_t chunk = left < budget ? left : budget;
        sl->b_first = n;
        sl->b_n = chunk;
        for (int32_t k = 0; k < chunk; k++, n++) {
            s->b_tok[n] = j->prompt[sl->n_toks + k];
            s->b_pos[n] = sl->n_toks + k;
            s->b_seq[n] = pick;
            s->b_logits[n] = 0;
        }
        if (chunk == left) {
            s->b_logits[n - 1] = 1;
            s->row_slot[rows++] = pick;
        }
    }
    *n_rows = rows;
    return n;
}

static void update_gauges_locked(serve_sched *s)
{
    if (!s->metrics) return;
    int64_t running = 0;
    for (int i = 0; i < s->p.max_seqs; i++) running += s->slots[i].job != NULL;
    int32_t total = nuri_ctx_pages_total(s->ctx);
    serve_metrics_gauges(s->metrics, s->q_count, running, total - nuri_ctx_pages_free(s->ctx),
                         total);
}

/* Handles cancellations and admissions; returns whether any slot has a job. */
static bool prepare_locked(serve_sched *s)
{
    for (int i = 0; i < s->p.max_seqs; i++)
        if (s->slots[i].job && s->slots[i].job->cancelled) slot_finish_locked(s, i, true);
    while (s->q_count > 0) {
        serve_job *j = s->queue[s->q_head];
        if (j->cancelled) {
            j->done = true;
            pthread_cond_signal(&j->cv);
            job_unref_locked(j);
        } else if (!admit_locked(s, j)) {
            break;
        }
        s->q_head = (s->q_head + 1) % s->p.max_queue;
        s->q_count--;
    }
    bool any = false;
    for (int i = 0; i < s->p.max_seqs; i++) any |= s->slots[i].job != NULL;
    return any;
}

/* The KV pool is full: drop a prefix cache, else fail the youngest running request. */
static void relieve_pool_locked(serve_sched *s)
{
    if (evict_one_cache_locked(s)) return;
    int victim = -1;
    for (int i = 0; i < s->p.max_seqs; i++)
        if (s->slots[i].job && (victim < 0 || s->slots[i].stamp > s->slots[victim].stamp))
            victim = i;
    if (victim >= 0)
        slot_fail_locked(s, victim, 503,
                         "the KV cache is full: too many long requests at once; retry later");
}

static void push_token_locked(serve_sched *s, int i, int32_t tok, const nuri_token_logprobs *lp)
{
    slot *sl = &s->slots[i];
    serve_job *j = sl->job;
    nuri_finish_reason fr = nuri_sampler_finish_reason(j->sampler, tok);
    double now = serve_now();
    if (s->metrics) {
        serve_metrics_generated(s->metrics, 1);
        if (sl->t_last == 0)
            serve_metrics_ttft(s->metrics, now - j->t_arrival);
        else
            serve_metrics_itl(s->metrics, now - sl->t_last);
    }
    sl->t_last = now;
    if (fr != NURI_FINISH_STOP) { // a stop token ends the turn and is not part of the output
        serve_event *ev = &j->ring[(j->ring_head + j->ring_count) % SERVE_JOB_RING];
        ev->token = tok;
        if (j->want_logprobs) ev->lp = *lp;
        j->ring_count++;
        j->n_generated++;
        pthread_cond_signal(&j->cv);
    }
    if (fr != NURI_FINISH_NONE || sl->n_toks + 1 >= s->seq_max) {
        j->finish = fr != NURI_FINISH_NONE ? fr : NURI_FINISH_LENGTH;
        slot_finish_locked(s, i, false);
    } else {
        sl->next = tok;
    }
}

static void step(serve_sched *s)
{
    int32_t rows;
    pthread_mutex_lock(&s->mu);
    int32_t n = build_batch_locked(s, &rows);
    pthread_mutex_unlock(&s->mu);
    if (n == 0) return; // every running request waits for its reader

    nuri_batch b = {
        .n = n, .token = s->b_tok, .pos = s->b_pos, .seq = s->b_seq, .logits = s->b_logits};
    nuri_status st = nuri_ctx_decode_batch(s->ctx, &b);
    if (st != NURI_OK) {
        char msg[256];
        snprintf(msg, sizeof msg, "the forward pass failed: %s", nuri_last_error());
        pthread_mutex_lock(&s->mu);
        if (st == NURI_ERR_LIMIT) {
            relieve_pool_locked(s);
        } else {
            for (int i = 0; i < s->p.max_seqs; i++)
                if (s->slots[i].job && s->slots[i].b_n > 0) slot_fail_locked(s, i, 500, msg);
        }
        pthread_mutex_unlock(&s->mu);
        return;
    }
    // the KV now holds the batch's tokens
    for (int i = 0; i < s->p.max_seqs; i++) {
        slot *sl = &s->slots[i];
        if (sl->b_n == 0) continue;
        memcpy(sl->toks + sl->n_toks, s->b_tok + sl->b_first, (size_t)sl->b_n * sizeof(int32_t));
        sl->n_toks += sl->b_n;
    }
    // sample outside the lock: the samplers belong to this thread
    for (int32_t r = 0; r < rows; r++) {
        serve_job *j = s->slots[s->row_slot[r]].job;
        nuri_token_logprobs *lp = j->want_logprobs ? &s->row_lp[r] : NULL;
        if (nuri_sampler_sample(j->sampler, nuri_ctx_logits(s->ctx, r), &s->row_tok[r], lp) !=
            NURI_OK) {
            s->row_tok[r] = -1;
        } else {
            nuri_sampler_accept(j->sampler, s->row_tok[r]);
        }
    }
    pthread_mutex_lock(&s->mu);
    for (int32_t r = 0; r < rows; r++) {
        int i = s->row_slot[r];
        if (s->row_tok[r] < 0)
            slot_fail_locked(s, i, 400,
                             "no token can be sampled: logit_bias bans every likely token");
        else
            push_token_locked(s, i, s->row_tok[r], &s->row_lp[r]);
    }
    pthread_mutex_unlock(&s->mu);
}

static void *sched_main(void *arg)
{
    serve_sched *s = arg;
    pthread_mutex_lock(&s->mu);
    while (!s->stop) {
        bool any = prepare_locked(s);
        update_gauges_locked(s);
        if (!any) {
            pthread_cond_wait(&s->cv, &s->mu);
            continue;
        }
        // if every running request waits for its reader, sleep until one reads (or 50 ms)
        bool runnable = false;
        for (int i = 0; i < s->p.max_seqs; i++) {
            slot *sl = &s->slots[i];
            runnable |= sl->job && (sl->next < 0 || sl->job->ring_count < SERVE_JOB_RING);
        }
        if (!runnable) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 50000000L;
            if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
            pthread_cond_timedwait(&s->cv, &s->mu, &ts);
            continue;
        }
        pthread_mutex_unlock(&s->mu);
        step(s);
        pthread_mutex_lock(&s->mu);
    }
    // shutting down: fail what is left
    for (int i = 0; i < s->p.max_seqs; i++)
        if (s->slots[i].job) slot_fail_locked(s, i, 503, "the server is shutting down");
    while (s->q_count > 0) {
        serve_job *j = s->queue[s->q_head];
        j->err_http = 503;
        snprintf(j->err, sizeof j->err, "the server is shutting down");
        j->done = true;
        pthread_cond_signal(&j->cv);
        job_unref_locked(j);
        s->q_head = (s->q_head + 1) % s->p.max_queue;
        s->q_count--;
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ============================== lifecycle ============================== */

int32_t serve_sched_seq_max(const serve_sched *s)
{
    return s->seq_max;
}

int32_t serve_sched_n_ctx(const serve_sched *s)
{
    return nuri_ctx_n_ctx(s->ctx);
}

static void sched_free(serve_sched *s)
{
    if (s->slots)
        for (int i = 0; i < s->p.max_seqs; i++) free(s->slots[i].toks);
    free(s->slots);
    free(s->queue);
    free(s->b_tok);
    free(s->b_pos);
    free(s->b_seq);
    free(s->b_logits);
    free(s->row_slot);
    free(s->row_tok);
    free(s->row_lp);
    nuri_ctx_free(s->ctx);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

nuri_status serve_sched_start(const nuri_model *m, const serve_sched_params *p,
                              serve_metrics *metrics, serve_sched **out)
{
    *out = NULL;
    if (p->max_seqs < 1 || p->max_seqs > 256)
        return nuri_error(NURI_ERR_INVALID_ARG, "max-seqs %d is not in 1..256", p->max_seqs);
    if (p->max_queue < 1)
        return nuri_error(NURI_ERR_INVALID_ARG, "queue size %d is not positive", p->max_queue);
    serve_sched *s = calloc(1, sizeof *s);
    if (!s) return nuri_error(NURI_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->m = m;
    s->metrics = metrics;
    s->p = *p;
    if (s->p.n_batch <= 0) s->p.n_batch = 256;
    if (s->p.n_batch < s->p.max_seqs) s->p.n_batch = s->p.max_seqs;
    nuri_ctx_params cp = {.n_ctx = p->n_ctx,
                          .n_batch = s->p.n_batch,
                          .n_threads = p->n_threads,
                          .n_logits = p->max_seqs,
                          .n_seq = p->max_seqs};
    nuri_status st = nuri_ctx_new(m, &cp, &s->ctx);
    if (st != NURI_OK) {
        sched_free(s);
        return st;
    }
    int32_t n_ctx = nuri_ctx_n_ctx(s->ctx);
    s->seq_max = n_ctx < m->hp.n_ctx_train ? n_ctx : m->hp.n_ctx_train;
    int32_t nb = s->p.n_batch, ns = p->max_seqs;
    s->slots = calloc((size_t)ns, sizeof *s->slots);
    s->queue = calloc((size_t)p->max_queue, sizeof *s->queue);
    s->b_tok = malloc((size_t)nb * sizeof(int32_t));
    s->b_pos = malloc((size_t)nb * sizeof(int32_t));
    s->b_seq = malloc((size_t)nb * sizeof(int32_t));
    s->b_logits = malloc((size_t)nb);
    s->row_slot = malloc((size_t)ns * sizeof(int32_t));
    s->row_tok = malloc((size_t)ns * sizeof(int32_t));
    s->row_lp = malloc((size_t)ns * sizeof *s->row_lp);
    bool ok = s->slots && s->queue && s->b_tok && s->b_pos && s->b_seq && s->b_logits &&
              s->row_slot && s->row_tok && s->row_lp;
    for (int i = 0; ok && i < ns; i++) {
        s->slots[i].next = -1;
        ok = (s->slots[i].toks = malloc((size_t)s->seq_max * sizeof(int32_t))) != NULL;
    }
    if (!ok) {
        sched_free(s);
        return nuri_error(NURI_ERR_NOMEM, "out of memory for the scheduler");
    }
    if (pthread_create(&s->thread, NULL, sched_main, s) != 0) {
        sched_free(s);
        return nuri_error(NURI_ERR_NOMEM, "cannot start the scheduler thread");
    }
    s->started = true;
    *out = s;
    return NURI_OK;
}

void serve_sched_stop(serve_sched *s)
{
    if (!s || !s->started) return;
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    s->started = false;
}

void serve_sched_free(serve_sched *s)
{
    if (!s) return;
    serve_sched_stop(s);
    sched_free(s);
}
