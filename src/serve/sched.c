/*
 * sched.c: continuous batching over one nuri_ctx (see sched.h for the step and its rules).
 *
 * Slots are the context's sequence ids. A slot remembers the tokens its KV holds (toks), also
 * after its request ended: an idle slot's KV is the prefix cache. Pages are counted before a batch
 * is built (nuri_ctx_pages_needed), so a forward pass never meets a full pool: making room
 * (dropping caches, preempting) happens while planning, when nothing is half done. Everything
 * per-step (the batch arrays, the slots' token lists) is allocated once at start; the loop itself
 * does not allocate, except a preempted request's token list (its replay) when it is preempted.
 *
 * Speculation (draft_lookup > 0): a decoding sequence brings its sampled token and up to
 * draft_lookup tokens drafted by prompt lookup over its own tokens (src/spec/speculate.h), with a
 * row of logits each; after the pass its rows are verified in order by its sampler
 * (nuri_sampler_verify, the same draws as plain sampling), its KV is truncated after the last
 * draft token accepted, and the tokens produced are pushed one by one. Drafts only use pages that
 * are free (they never evict or preempt), room in the job's ring and the batch, and are skipped
 * for jobs that want logprobs. With a draft model (p.draft) the drafts come from it when lookup
 * finds none: draft_model_run makes them before the batch is planned (sched.h).
 *
 * The queue is a ring of max_queue + max_seqs jobs: submit refuses a job when that many are
 * running, preempted or waiting, and a preempted job moves from its slot to the head of the queue
 * (a fresh job is admitted only when none waits: they are ahead of it), so it always fits back in.
 */
#include "serve/sched.h"

#include "base/status.h"
#include "spec/speculate.h"

#include <errno.h>
#include <math.h>
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
    int32_t b_first; // this step: index of the slot's first token in the batch, -1 if none
    int32_t b_n;     // this step: tokens of the slot in the batch
    int32_t b_row;   // this step: its first row of logits
    int32_t n_draft; // this step: draft tokens behind `next` (speculation)
    int32_t n_out;   // this step: tokens its rows produced (speculation)
    // a draft model: the tokens its sequence i holds, and this step's draft (greedy)
    int32_t *dtoks; // (dseq_max)
    int32_t dn;
    bool d_want; // this step: draft for it (decoding, room for a draft)
    int32_t dk;  // this step: draft tokens in ddraft
    int32_t ddraft[SERVE_JOB_RING - 1];
} slot;

struct serve_sched {
    const nuri_model *m;
    nuri_ctx *ctx;
    serve_metrics *metrics;
    serve_sched_params p;
    int32_t seq_max; // tokens one sequence may hold
    pthread_mutex_t mu;
    pthread_cond_t cv; // new work, a reader caught up, a cancellation, or stop
    pthread_t thread;
    bool started, stop;
    serve_job **queue; // ring of q_cap waiting jobs, preempted ones first
    int q_cap;         // max_queue + max_seqs
    int q_head, q_count;
    bool q_cancelled;   // a queued job may have been cancelled
    uint64_t n_preempt; // preemptions so far
    slot *slots;        // (max_seqs)
    int32_t *order;     // (max_seqs) this step's running slots, oldest first
    uint64_t clock;
    // the step's batch: (n_batch) each
    int32_t *b_tok, *b_pos, *b_seq;
    int8_t *b_logits;
    int32_t n_rows_max;          // rows of logits a step may ask for
    int32_t *row_slot;           // (n_rows_max) logits row -> slot
    int32_t *row_tok;            // (n_rows_max) the token sampled for each row
    int8_t *row_fr;              // (n_rows_max) its nuri_finish_reason, taken when it was accepted
    nuri_token_logprobs *row_lp; // (n_rows_max)
    // a draft model (speculation): its context (one sequence per slot), the tokens one sequence
    // may hold, its batch (n_batch) and the slot of each row (max_seqs)
    nuri_ctx *dctx;
    int32_t dseq_max;
    int32_t *d_tok, *d_pos, *d_seq, *d_row_slot;
    int8_t *d_logits;
};

static int32_t pages_for(int32_t n_tokens)
{
    return (n_tokens + NURI_KV_PAGE - 1) / NURI_KV_PAGE;
}

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
    j->resume_next = -1;
    pthread_cond_init(&j->cv, NULL);
    return j;
}

static void job_unref_locked(serve_job *j)
{
    if (--j->refs > 0) return;
    pthread_cond_destroy(&j->cv);
    free(j->prompt);
    free(j->replay);
    free(j->kv_in_tokens);
    free(j->kv_in);
    free(j->kv_out_tokens);
    free(j->kv_out);
    nuri_sampler_free(j->sampler);
    free(j);
}

/* The tokens a job's sequence must hold before it decodes: its prompt, or after a preemption the
 * prompt and the tokens it had generated and fed. */
static const int32_t *job_feed(const serve_job *j, int32_t *n)
{
    *n = j->replay ? j->n_replay : j->n_prompt;
    return j->replay ? j->replay : j->prompt;
}

/* Ends a job that holds no slot (under the lock), with an error if http is not 0. */
static void job_end_locked(serve_job *j, int http, const char *msg)
{
    if (http) {
        j->err_http = http;
        snprintf(j->err, sizeof j->err, "%s", msg);
    }
    j->done = true;
    pthread_cond_signal(&j->cv);
    job_unref_locked(j);
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
        s->q_cancelled = true;
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

bool serve_job_wait_first(serve_sched *s, serve_job *j, int timeout_ms)
{
    pthread_mutex_lock(&s->mu);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    while (j->ring_count == 0 && j->n_generated == 0 && !j->done)
        if (pthread_cond_timedwait(&j->cv, &s->mu, &ts) == ETIMEDOUT) break;
    bool out = j->ring_count > 0 || j->n_generated > 0 || j->done;
    pthread_mutex_unlock(&s->mu);
    return out;
}

/* Ends the job of slot i (under the lock). Its KV stays as a prefix cache unless drop_kv. */
static void slot_finish_locked(serve_sched *s, int i, bool drop_kv)
{
    slot *sl = &s->slots[i];
    serve_job *j = sl->job;
    if (j->want_kv && !drop_kv && !j->err_http && sl->n_toks > 0 && !j->kv_out) {
        // a snapshot of what the sequence holds, for the reader to write to disk
        size_t bytes = nuri_ctx_kv_bytes(s->ctx, sl->n_toks);
        j->kv_out = malloc(bytes);
        j->kv_out_tokens = malloc((size_t)sl->n_toks * sizeof *j->kv_out_tokens);
        if (j->kv_out && j->kv_out_tokens &&
            nuri_ctx_seq_kv_read(s->ctx, i, sl->n_toks, j->kv_out) == NURI_OK) {
            memcpy(j->kv_out_tokens, sl->toks, (size_t)sl->n_toks * sizeof *sl->toks);
            j->kv_out_n = sl->n_toks;
        } else {
            free(j->kv_out);
            free(j->kv_out_tokens);
            j->kv_out = NULL;
            j->kv_out_tokens = NULL;
        }
    }
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

/* ============================== the queue ============================== */

static serve_job **q_at(serve_sched *s, int k)
{
    return &s->queue[(s->q_head + k) % s->q_cap];
}

/* Slots holding a job (running: prefilling or decoding). */
static int slots_busy_locked(const serve_sched *s)
{
    int n = 0;
    for (int i = 0; i < s->p.max_seqs; i++) n += s->slots[i].job != NULL;
    return n;
}

static void q_push_tail(serve_sched *s, serve_job *j)
{
    NURI_ASSERT(s->q_count < s->q_cap);
    *q_at(s, s->q_count) = j;
    s->q_count++;
}

static void q_push_head(serve_sched *s, serve_job *j)
{
    NURI_ASSERT(s->q_count < s->q_cap);
    s->q_head = (s->q_head + s->q_cap - 1) % s->q_cap;
    s->queue[s->q_head] = j;
    s->q_count++;
}

static serve_job *q_pop_head(serve_sched *s)
{
    serve_job *j = s->queue[s->q_head];
    s->q_head = (s->q_head + 1) % s->q_cap;
    s->q_count--;
    return j;
}

/* Ends the queued jobs whose readers are gone, keeping the others in order. */
static void q_drop_cancelled_locked(serve_sched *s)
{
    int kept = 0;
    for (int k = 0; k < s->q_count; k++) {
        serve_job *j = *q_at(s, k);
        if (!j->cancelled) {
            *q_at(s, kept++) = j;
            continue;
        }
        job_end_locked(j, 0, NULL);
    }
    s->q_count = kept;
    s->q_cancelled = false;
}

nuri_status serve_sched_submit(serve_sched *s, serve_job *j)
{
    pthread_mutex_lock(&s->mu);
    // the limit is on requests accepted and not finished: running, preempted or waiting. (Counting
    // only the queue refused the second of two requests sent at once to an idle slot when the
    // scheduler had not taken the first yet.) The ring (max_queue + max_seqs) so always has room.
    if (s->stop || slots_busy_locked(s) + s->q_count >= s->p.max_seqs + s->p.max_queue) {
        pthread_mutex_unlock(&s->mu);
        return nuri_error(NURI_ERR_LIMIT, "the queue is full (%d requests running or waiting)",
                          s->p.max_seqs + s->p.max_queue);
    }
    j->refs++;
    q_push_tail(s, j);
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return NURI_OK;
}

/* ============================== admission ============================== */

static int32_t common_prefix(const int32_t *a, int32_t na, const int32_t *b, int32_t nb)
{
    int32_t n = na < nb ? na : nb, i = 0;
    while (i < n && a[i] == b[i]) i++;
    return i;
}

/* Drops the prefix cache of the least recently used idle slot other than keep. False if there is
 * none. */
static bool evict_one_cache_locked(serve_sched *s, int keep)
{
    int victim = -1;
    for (int i = 0; i < s->p.max_seqs; i++) {
        slot *sl = &s->slots[i];
        if (sl->job || sl->n_toks == 0 || i == keep) continue;
        if (victim < 0 || sl->stamp < s->slots[victim].stamp) victim = i;
    }
    if (victim < 0) return false;
    nuri_ctx_seq_clear(s->ctx, victim);
    s->slots[victim].n_toks = 0;
    return true;
}

/* Pages running slot i still takes to prefill what is left of its tokens. */
static int32_t prefill_pages_left(serve_sched *s, int i)
{
    slot *sl = &s->slots[i];
    int32_t n_feed;
    job_feed(sl->job, &n_feed);
    if (sl->next >= 0 || n_feed <= sl->n_toks) return 0;
    return nuri_ctx_pages_needed(s->ctx, i, sl->n_toks, n_feed - sl->n_toks);
}

typedef enum admit_result { ADMIT_WAIT, ADMIT_DONE, ADMIT_NEVER } admit_result;

/* Places job j into a slot, reusing the longest cached prefix, if a slot is free and the pool has
 * room for its prefill beside what the running sequences are about to take. */
static admit_result admit_locked(serve_sched *s, serve_job *j)
{
    int32_t n_feed;
    const int32_t *feed = job_feed(j, &n_feed);
    int n_slots = s->p.max_seqs, best = -1, target = -1, running = 0;
    int32_t best_lcp = 0, pending = 0;
    for (int i = 0; i < n_slots; i++) {
        slot *sl = &s->slots[i];
        if (sl->job) {
            running++;
            pending += prefill_pages_left(s, i);
        }
        int32_t l = common_prefix(sl->toks, sl->n_toks, feed, n_feed);
        if (l > best_lcp) best_lcp = l, best = i;
    }
    // a fresh prompt computes at least its last token (its logits give the first token out); a
    // preempted request has that token already and may find all of its tokens cached
    int32_t max_reuse = j->resume_next >= 0 ? n_feed : n_feed - 1;
    int32_t reuse = best_lcp < max_reuse ? best_lcp : max_reuse;
    // a recurrent model's state is reusable only whole (nuri_ctx_seq_reusable): a shorter common
    // prefix is recomputed, never approximated
    if (reuse > 0 && !nuri_ctx_seq_reusable(s->ctx, best, reuse)) reuse = 0;
    if (reuse <= 0) best = -1, reuse = 0;
    // a snapshot from disk, when it covers more of the prompt than memory does: loaded into a free
    // slot's fresh pages (counted below as pages to take, like a prompt computed)
    int32_t snap = 0;
    if (j->kv_in && j->n_preempted == 0) {
        snap = common_prefix(j->kv_in_tokens, j->kv_in_n, feed, n_feed);
        if (snap > max_reuse) snap = max_reuse;
        if (snap <= reuse) snap = 0;
        if (snap > 0) best = -1, reuse = 0;
    }
    if (best >= 0 && !s->slots[best].job) {
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
        if (target < 0) return ADMIT_WAIT;
    }

    // room: its pages past the reused ones, the prefills under way, and a watermark of one page
    // per sequence (each decoding one may start a page at the next step). Alone, it always fits.
    int32_t need = pages_for(n_feed) - reuse / NURI_KV_PAGE;
    if (running > 0) need += pending + running + 1;
    if (nuri_ctx_pages_free(s->ctx) < need) {
        int32_t cached = 0; // pages of idle caches (fewer are freed if some are shared)
        for (int i = 0; i < n_slots; i++)
            if (!s->slots[i].job && i != best) cached += pages_for(s->slots[i].n_toks);
        if (running > 0 && nuri_ctx_pages_free(s->ctx) + cached < need) return ADMIT_WAIT;
        while (nuri_ctx_pages_free(s->ctx) < need && evict_one_cache_locked(s, best)) {
        }
        if (nuri_ctx_pages_free(s->ctx) < need) {
            if (running > 0) return ADMIT_WAIT;
            // alone and still short: drop the reused cache too, and recompute everything
            while (evict_one_cache_locked(s, -1)) {
            }
            if (pages_for(n_feed) > nuri_ctx_pages_free(s->ctx)) return ADMIT_NEVER;
            reuse = 0;
            snap = 0;
        }
    }

    slot *t = &s->slots[target];
    if (snap > 0) {
        if (nuri_ctx_seq_kv_write(s->ctx, target, snap, j->kv_in_n, j->kv_in) == NURI_OK) {
            memcpy(t->toks, feed, (size_t)snap * sizeof *t->toks);
            t->n_toks = snap;
            reuse = snap;
        } else {
            nuri_ctx_seq_clear(s->ctx, target);
            t->n_toks = 0;
        }
        free(j->kv_in);
        free(j->kv_in_tokens);
        j->kv_in = NULL;
        j->kv_in_tokens = NULL;
    } else if (reuse > 0 && target == best) {
        nuri_ctx_seq_truncate(s->ctx, target, reuse);
        t->n_toks = reuse;
    } else if (reuse > 0 && nuri_ctx_seq_fork(s->ctx, best, target, reuse) == NURI_OK) {
        memcpy(t->toks, feed, (size_t)reuse * sizeof *t->toks);
        t->n_toks = reuse;
    } else {
        nuri_ctx_seq_clear(s->ctx, target);
        t->n_toks = 0;
        reuse = 0;
    }
    if (j->n_preempted == 0) {
        j->n_cached = reuse;
        j->kv_source = reuse == 0 ? SERVE_KV_NONE : snap > 0 ? SERVE_KV_SNAPSHOT : SERVE_KV_MEMORY;
        if (s->metrics) serve_metrics_kv_source(s->metrics, j->kv_source);
    }
    t->job = j;
    t->next = -1;
    t->stamp = ++s->clock;
    if (reuse == n_feed) { // a preempted request whose tokens were all cached: decode at once
        t->next = j->resume_next;
        j->resume_next = -1;
    }
    return ADMIT_DONE;
}

/* ============================== preemption ============================== */

/* Frees slot i's pages and puts its job back at the head of the queue; it resumes from there
 * with the same output (see sched.h). */
static void preempt_locked(serve_sched *s, int i)
{
    slot *sl = &s->slots[i];
    serve_job *j = sl->job;
    if (sl->next >= 0) {
        // decoding: the tokens its KV holds are recomputed, then the one sampled last is fed
        int32_t *r = realloc(j->replay, (size_t)sl->n_toks * sizeof *r);
        if (!r) {
            slot_fail_locked(s, i, 503, "out of memory while making room in the KV cache");
            return;
        }
        memcpy(r, sl->toks, (size_t)sl->n_toks * sizeof *r);
        j->replay = r;
        j->n_replay = sl->n_toks;
        j->resume_next = sl->next;
    } // prefilling: its feed and resume_next are still what it has to do
    nuri_ctx_seq_clear(s->ctx, i);
    sl->job = NULL;
    sl->n_toks = 0;
    sl->next = -1;
    sl->stamp = ++s->clock;
    j->n_preempted++;
    q_push_head(s, j);
    s->n_preempt++;
    if (s->metrics) serve_metrics_preemption(s->metrics);
}

/* The youngest running slot with nothing in this step's batch and younger than `than` (stamp),
 * or -1. */
static int youngest_unbatched(const serve_sched *s, uint64_t than)
{
    int victim = -1;
    for (int i = 0; i < s->p.max_seqs; i++) {
        const slot *sl = &s->slots[i];
        if (!sl->job || sl->b_n > 0 || sl->stamp < than) continue;
        if (victim < 0 || sl->stamp > s->slots[victim].stamp) victim = i;
    }
    return victim;
}

/* Makes `need` pages free for slot i beside the `reserved` ones this step's batch already takes:
 * drops idle prefix caches, then preempts the youngest running request not in the batch. False
 * when that was slot i itself (or slot i failed: alone, it cannot get its pages). */
static bool make_room_locked(serve_sched *s, int i, int32_t need, int32_t reserved)
{
    while (nuri_ctx_pages_free(s->ctx) - reserved < need) {
        if (evict_one_cache_locked(s, -1)) continue;
        int victim = youngest_unbatched(s, 0);
        NURI_ASSERT(victim >= 0); // slot i is one
        bool alone = true;
        for (int k = 0; k < s->p.max_seqs; k++) alone &= k == victim || !s->slots[k].job;
        if (alone) { // cannot happen: one sequence of seq_max tokens fits the pool
            char msg[160];
            snprintf(msg, sizeof msg,
                     "the KV cache (%d tokens) cannot hold this request's %d tokens even alone",
                     nuri_ctx_n_ctx(s->ctx), s->slots[victim].n_toks + 1);
            slot_fail_locked(s, victim, 503, msg);
        } else {
            preempt_locked(s, victim);
        }
        if (victim == i) return false;
    }
    return true;
}

/* Tokens slot i can prefill with `avail` free pages: the rest of its last page (if it needs no
 * copy), then whole pages. */
static int32_t tokens_fitting(const serve_sched *s, int i, int32_t avail)
{
    int32_t pos = s->slots[i].n_toks;
    int32_t in_page = pos % NURI_KV_PAGE ? NURI_KV_PAGE - pos % NURI_KV_PAGE : 0;
    int32_t cow = in_page > 0 && nuri_ctx_pages_needed(s->ctx, i, pos, 1) > 0;
    return avail < cow ? 0 : in_page + (avail - cow) * NURI_KV_PAGE;
}

/* ============================== the step ============================== */

/* Speculation: drafts by prompt lookup behind slot i's next token into s->b_tok[n..), as far as
 * the batch (n tokens so far), the rows, the free pages, the job's ring and length allow, keeping
 * a token and a row for each of the n_dec decoding sequences still to place. Returns the count
 * and adds the draft's pages to *reserved. */
static int32_t draft_locked(serve_sched *s, int i, int32_t n, int32_t rows, int32_t n_dec,
                            int32_t *reserved)
{
    slot *sl = &s->slots[i];
    serve_job *j = sl->job;
    int32_t lim = s->p.draft_lookup > sl->dk ? s->p.draft_lookup : sl->dk;
    if (lim <= 0 || j->want_logprobs) return 0;
    int32_t cap[] = {SERVE_JOB_RING - j->ring_count - 1, s->seq_max - sl->n_toks - 2,
                     s->p.n_batch - n - n_dec, s->n_rows_max - rows - n_dec,
                     j->max_new - j->n_generated - 1};
    for (size_t c = 0; c < sizeof cap / sizeof *cap; c++)
        if (cap[c] < lim) lim = cap[c];
    if (lim <= 0) return 0;
    sl->toks[sl->n_toks] = sl->next; // the history ends with the token fed now (scratch past it)
    int32_t kd = 0;
    if (s->p.draft_lookup > 0)
        kd = nuri_spec_lookup(sl->toks, sl->n_toks + 1,
                              lim < s->p.draft_lookup ? lim : s->p.draft_lookup, s->b_tok + n);
    if (kd == 0 && sl->dk > 0) { // the draft model's, made for this step
        kd = sl->dk < lim ? sl->dk : lim;
        memcpy(s->b_tok + n, sl->ddraft, (size_t)kd * sizeof *sl->ddraft);
    }
    while (kd > 0) { // only pages that are free: a draft never makes room
        int32_t more = nuri_ctx_pages_needed(s->ctx, i, sl->n_toks, 1 + kd) -
                       nuri_ctx_pages_needed(s->ctx, i, sl->n_toks, 1);
        if (*reserved + more <= nuri_ctx_pages_free(s->ctx)) {
            *reserved += more;
            break;
        }
        kd--;
    }
    return kd;
}

/* A draft model, under the lock: marks the slots to draft for this step (decoding, not asking for
 * logprobs, with room for a draft in their ring and length) and clears every slot's last draft.
 * Returns whether any is marked. */
static bool plan_drafts_locked(serve_sched *s)
{
    bool any = false;
    for (int i = 0; i < s->p.max_seqs; i++) {
        slot *sl = &s->slots[i];
        const serve_job *j = sl->job;
        sl->dk = 0;
        sl->d_want = j && sl->next >= 0 && !j->want_logprobs &&
                     j->ring_count < SERVE_JOB_RING - 1 && j->max_new - j->n_generated > 1 &&
                     sl->n_toks + 1 + s->p.draft_max <= s->dseq_max;
        any |= sl->d_want;
    }
    return any;
}

static int32_t argmax(const float *x, int32_t n)
{
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* A draft model: drops the draft KV of a slot not drafting this step (an idle slot's first, the
 * least recently used). False if there is none. */
static bool evict_one_draft(serve_sched *s)
{
    int victim = -1;
    for (int i = 0; i < s->p.max_seqs; i++) {
        const slot *sl = &s->slots[i];
        if (sl->d_want || sl->dn == 0) continue;
        if (victim < 0 || (!sl->job && s->slots[victim].job) ||
            (!sl->job == !s->slots[victim].job && sl->stamp < s->slots[victim].stamp))
            victim = i;
    }
    if (victim < 0) return false;
    nuri_ctx_seq_clear(s->dctx, victim);
    s->slots[victim].dn = 0;
    return true;
}

/* A draft model, without the lock (the slots belong to this thread; the jobs' fields are not
 * read): for each slot marked by plan_drafts_locked, feeds the draft model what its sequence
 * lacks of the slot's tokens and `next` (after truncating it to the prefix they share), in one
 * batch within n_batch, then drafts greedily: one batched pass per draft token for all of them.
 * A slot whose catch-up does not fit this step's batch feeds a chunk and drafts at a later step;
 * one whose pages the draft pool cannot give (after dropping drafts of slots not drafting) does
 * not draft. A failed draft pass drops the drafts and the draft KV of the slots in it. */
static void draft_model_run(serve_sched *s)
{
    const int32_t k = s->p.draft_max, n_vocab = s->m->hp.n_vocab;
    int32_t n = 0, rows = 0, reserved = 0, n_want = 0;
    for (int i = 0; i < s->p.max_seqs; i++) n_want += s->slots[i].d_want;
    for (int i = 0; i < s->p.max_seqs && n < s->p.n_batch; i++) {
        slot *sl = &s->slots[i];
        if (!sl->d_want) continue;
        n_want--; // slots after this one: a long catch-up leaves them 2 tokens each (a step's)
        const int32_t len = sl->n_toks + 1; // the history: its tokens and the one fed next
        sl->toks[sl->n_toks] = sl->next;
        int32_t common = common_prefix(sl->dtoks, sl->dn, sl->toks, len);
        if (common > len - 1) common = len - 1; // the last token is fed again for its logits
        if (common < sl->dn) {
            nuri_ctx_seq_truncate(s->dctx, i, common);
            sl->dn = common;
        }
        int32_t feed = len - common, budget = s->p.n_batch - n - 2 * n_want;
        if (budget < 1) budget = 1;
        int32_t chunk = feed < budget ? feed : budget;
        bool drafts = chunk == feed;
        int32_t need = nuri_ctx_pages_needed(s->dctx, i, common, chunk + (drafts ? k - 1 : 0));
        while (reserved + need > nuri_ctx_pages_free(s->dctx) && evict_one_draft(s)) {
        }
        if (reserved + need > nuri_ctx_pages_free(s->dctx)) continue;
        reserved += need;
        for (int32_t t = 0; t < chunk; t++, n++) {
            s->d_tok[n] = sl->toks[common + t];
            s->d_pos[n] = common + t;
            s->d_seq[n] = i;
            s->d_logits[n] = 0;
        }
        memcpy(sl->dtoks + common, sl->toks + common, (size_t)chunk * sizeof *sl->toks);
        sl->dn = common + chunk;
        if (drafts) {
            s->d_logits[n - 1] = 1;
            s->d_row_slot[rows++] = i;
        }
    }
    while (n > 0) {
        nuri_batch b = {
            .n = n, .token = s->d_tok, .pos = s->d_pos, .seq = s->d_seq, .logits = s->d_logits};
        if (nuri_ctx_decode_batch(s->dctx, &b) != NURI_OK) {
            for (int32_t t = 0; t < n; t++) {
                slot *sl = &s->slots[s->d_seq[t]];
                nuri_ctx_seq_clear(s->dctx, s->d_seq[t]);
                sl->dn = 0;
                sl->dk = 0;
            }
            return;
        }
        // each row's argmax is a draft token; it is fed at the next pass unless it ends the draft
        int32_t n_next = 0;
        for (int32_t r = 0; r < rows; r++) {
            int i = s->d_row_slot[r];
            slot *sl = &s->slots[i];
            int32_t tok = argmax(nuri_ctx_logits(s->dctx, r), n_vocab);
            sl->ddraft[sl->dk++] = tok;
            if (sl->dk == k || nuri_model_token_is_eog(s->m, tok)) continue;
            s->d_tok[n_next] = tok;
            s->d_pos[n_next] = sl->dn;
            s->d_seq[n_next] = i;
            s->d_logits[n_next] = 1;
            s->d_row_slot[n_next++] = i;
            sl->dtoks[sl->dn++] = tok;
        }
        n = rows = n_next;
    }
}

/* Plans and fills the batch (see sched.h, step 3). Returns the token count; rows of logits go to
 * s->row_slot. */
static int32_t build_batch_locked(serve_sched *s, int32_t *n_rows)
{
    int32_t n = 0, rows = 0, reserved = 0; // reserved: pages the batch takes
    int n_run = 0;
    for (int i = 0; i < s->p.max_seqs; i++) {
        slot *sl = &s->slots[i];
        sl->b_first = -1;
        sl->b_n = 0;
        sl->n_draft = 0;
        sl->n_out = 0;
        if (!sl->job) continue;
        int k = n_run++;
        for (; k > 0 && s->slots[s->order[k - 1]].stamp > sl->stamp; k--)
            s->order[k] = s->order[k - 1];
        s->order[k] = i;
    }
    // decoding sequences first, oldest first: one token each (and a draft, speculating)
    int32_t n_dec = 0; // decoding sequences not placed yet: each needs a token and a row
    for (int k = 0; k < n_run; k++) {
        const slot *sl = &s->slots[s->order[k]];
        n_dec += sl->job && sl->next >= 0 && sl->job->ring_count < SERVE_JOB_RING;
    }
    for (int k = 0; k < n_run; k++) {
        int i = s->order[k];
        slot *sl = &s->slots[i];
        sl->n_draft = 0;
        if (!sl->job || sl->next < 0 || sl->job->ring_count == SERVE_JOB_RING) continue;
        n_dec--;
        int32_t need = nuri_ctx_pages_needed(s->ctx, i, sl->n_toks, 1);
        if (!make_room_locked(s, i, need, reserved)) continue;
        reserved += need;
        sl->b_first = n;
        sl->b_row = rows;
        sl->b_n = 1;
        s->b_tok[n] = sl->next;
        s->b_pos[n] = sl->n_toks;
        s->b_seq[n] = i;
        s->b_logits[n] = 1;
        s->row_slot[rows++] = i;
        n++;
        int32_t kd = draft_locked(s, i, n, rows, n_dec, &reserved);
        for (int32_t t = 0; t < kd; t++, n++) { // the draft, s->b_tok[n..n + kd) already
            s->b_pos[n] = sl->n_toks + 1 + t;
            s->b_seq[n] = i;
            s->b_logits[n] = 1;
            s->row_slot[rows++] = i;
        }
        sl->b_n += kd;
        sl->n_draft = kd;
    }
    // then prompt chunks, oldest first, with what is left of the batch and of the pool
    for (int k = 0; k < n_run && n < s->p.n_batch; k++) {
        int i = s->order[k];
        slot *sl = &s->slots[i];
        if (!sl->job || sl->next >= 0) continue;
        serve_job *j = sl->job;
        int32_t n_feed;
        const int32_t *feed = job_feed(j, &n_feed);
        int32_t left = n_feed - sl->n_toks, budget = s->p.n_batch - n;
        int32_t chunk = left < budget ? left : budget, fit;
        // a chunk preempts only younger requests; with none left it shrinks to the pages there are
        while ((fit = tokens_fitting(s, i, nuri_ctx_pages_free(s->ctx) - reserved)) < chunk) {
            if (evict_one_cache_locked(s, -1)) continue;
            int victim = youngest_unbatched(s, sl->stamp + 1);
            if (victim < 0) break;
            preempt_locked(s, victim);
        }
        if (fit < chunk) chunk = fit;
        if (chunk <= 0) continue; // it waits for pages
        reserved += nuri_ctx_pages_needed(s->ctx, i, sl->n_toks, chunk);
        sl->b_first = n;
        sl->b_n = chunk;
        for (int32_t t = 0; t < chunk; t++, n++) {
            s->b_tok[n] = feed[sl->n_toks + t];
            s->b_pos[n] = sl->n_toks + t;
            s->b_seq[n] = i;
            s->b_logits[n] = 0;
        }
        // the last prompt token's logits give the first token; a resumed request has it already
        if (chunk == left && j->resume_next < 0) {
            s->b_logits[n - 1] = 1;
            s->row_slot[rows++] = i;
        }
    }
    NURI_ASSERT(reserved <= nuri_ctx_pages_free(s->ctx));
    *n_rows = rows;
    return n;
}

static void update_gauges_locked(serve_sched *s)
{
    if (!s->metrics) return;
    int32_t total = nuri_ctx_pages_total(s->ctx);
    serve_metrics_gauges(s->metrics, s->q_count, slots_busy_locked(s),
                         total - nuri_ctx_pages_free(s->ctx), total);
}

/* Handles cancellations and admissions; returns whether any slot has a job. */
static bool prepare_locked(serve_sched *s)
{
    for (int i = 0; i < s->p.max_seqs; i++)
        if (s->slots[i].job && s->slots[i].job->cancelled) slot_finish_locked(s, i, true);
    if (s->q_cancelled) q_drop_cancelled_locked(s);
    while (s->q_count > 0) {
        admit_result r = admit_locked(s, s->queue[s->q_head]);
        if (r == ADMIT_WAIT) break;
        serve_job *j = q_pop_head(s);
        if (r == ADMIT_NEVER)
            job_end_locked(j, 503, "the KV cache cannot hold this request even alone");
    }
    bool any = false;
    for (int i = 0; i < s->p.max_seqs; i++) any |= s->slots[i].job != NULL;
    return any;
}

/* Pushes token tok of slot i with its finish reason fr (nuri_sampler_finish_reason right after the
 * sampler accepted it: a verified draft has its sampler past later tokens by the time they are
 * pushed). */
static void push_token_locked(serve_sched *s, int i, int32_t tok, nuri_finish_reason fr,
                              const nuri_token_logprobs *lp)
{
    slot *sl = &s->slots[i];
    serve_job *j = sl->job;
    double now = serve_now();
    if (s->metrics) {
        serve_metrics_generated(s->metrics, 1);
        if (j->t_last == 0)
            serve_metrics_ttft(s->metrics, now - j->t_arrival);
        else
            serve_metrics_itl(s->metrics, now - j->t_last);
    }
    j->t_last = now;
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

/* Speculation, without the lock: verifies slot sl's rows in order (row b_row + m checks draft
 * token m), each token accepted by its sampler, up to the first token that is not the draft's (or
 * the last row's). Leaves the tokens in row_tok[b_row..b_row + n_out) (-1 on a sampling failure,
 * which ends them) and returns the slot's last row. */
static int32_t verify_draft(serve_sched *s, slot *sl)
{
    serve_job *j = sl->job;
    const int32_t *draft = s->b_tok + sl->b_first + 1;
    sl->n_out = 0;
    for (int32_t m = 0; m <= sl->n_draft; m++) {
        int32_t r = sl->b_row + m, tok;
        bool acc = false;
        nuri_status st =
            m < sl->n_draft
                ? nuri_sampler_verify(j->sampler, nuri_ctx_logits(s->ctx, r), draft[m], NULL, &tok,
                                      &acc)
                : nuri_sampler_sample(j->sampler, nuri_ctx_logits(s->ctx, r), &tok, NULL);
        if (st == NURI_OK) st = nuri_sampler_accept(j->sampler, tok);
        s->row_tok[r] = st == NURI_OK ? tok : -1;
        s->row_fr[r] = (int8_t)(st == NURI_OK ? nuri_sampler_finish_reason(j->sampler, tok)
                                              : NURI_FINISH_NONE);
        sl->n_out++;
        if (st != NURI_OK || !acc || s->row_fr[r] != NURI_FINISH_NONE) break; // it ends here
    }
    return sl->b_row + sl->n_draft;
}

/* Speculation, under the lock: keeps slot i's KV up to its last accepted draft token and pushes
 * the tokens its rows produced, as if each had come from its own step. */
static void push_draft_locked(serve_sched *s, int i)
{
    slot *sl = &s->slots[i];
    serve_job *j = sl->job;
    const int32_t n_acc = sl->n_out - 1; // draft tokens accepted (the last out is not, or ends it)
    const int32_t base = sl->n_toks - sl->b_n + 1; // the KV length with `next` fed, no draft
    if (s->metrics) serve_metrics_spec(s->metrics, sl->n_draft, n_acc);
    nuri_ctx_seq_truncate(s->ctx, i, base + n_acc);
    for (int32_t m = 0; m < sl->n_out; m++) {
        int32_t tok = s->row_tok[sl->b_row + m];
        sl->n_toks = base + m; // what the sequence holds when this token comes out
        if (tok < 0) {
            slot_fail_locked(s, i, 400,
                             "no token can be sampled: logit_bias or the requested format bans "
                             "every likely token");
            return;
        }
        push_token_locked(s, i, tok, (nuri_finish_reason)s->row_fr[sl->b_row + m],
                          &s->row_lp[sl->b_row + m]);
        if (sl->job != j) { // it ended here: its KV (kept as a prefix cache) ends here too
            if (sl->n_toks > 0) nuri_ctx_seq_truncate(s->ctx, i, sl->n_toks);
            return;
        }
    }
}

/* Runs the planned batch of n tokens and hands out its tokens (called without the lock). */
static void run_batch(serve_sched *s, int32_t n, int32_t rows)
{
    nuri_batch b = {
        .n = n, .token = s->b_tok, .pos = s->b_pos, .seq = s->b_seq, .logits = s->b_logits};
    nuri_status st = nuri_ctx_decode_batch(s->ctx, &b);
    if (st != NURI_OK) {
        char msg[256];
        snprintf(msg, sizeof msg, "the forward pass failed: %s", nuri_last_error());
        pthread_mutex_lock(&s->mu);
        if (st == NURI_ERR_LIMIT) { // the planning counts pages as the pass does: not expected
            int victim = -1;
            for (int i = 0; i < s->p.max_seqs; i++)
                if (s->slots[i].job && (victim < 0 || s->slots[i].stamp > s->slots[victim].stamp))
                    victim = i;
            if (victim >= 0) preempt_locked(s, victim);
        } else {
            for (int i = 0; i < s->p.max_seqs; i++)
                if (s->slots[i].job && s->slots[i].b_n > 0) slot_fail_locked(s, i, 500, msg);
        }
        pthread_mutex_unlock(&s->mu);
        return;
    }
    // the KV now holds the batch's tokens; a resumed request whose prefill ended decodes on
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->p.max_seqs; i++) {
        slot *sl = &s->slots[i];
        if (sl->b_n == 0) continue;
        memcpy(sl->toks + sl->n_toks, s->b_tok + sl->b_first, (size_t)sl->b_n * sizeof(int32_t));
        sl->n_toks += sl->b_n;
        int32_t n_feed;
        job_feed(sl->job, &n_feed);
        if (sl->next < 0 && sl->n_toks == n_feed && sl->job->resume_next >= 0) {
            sl->next = sl->job->resume_next;
            sl->job->resume_next = -1;
        }
    }
    pthread_mutex_unlock(&s->mu);
    // sample outside the lock: the samplers belong to this thread
    for (int32_t r = 0; r < rows; r++) {
        slot *sl = &s->slots[s->row_slot[r]];
        serve_job *j = sl->job;
        if (sl->n_draft > 0 && r == sl->b_row) { // a draft: its rows in order, to a rejection
            r = verify_draft(s, sl);
            continue;
        }
        nuri_token_logprobs *lp = j->want_logprobs ? &s->row_lp[r] : NULL;
        if (nuri_sampler_sample(j->sampler, nuri_ctx_logits(s->ctx, r), &s->row_tok[r], lp) !=
            NURI_OK) {
            s->row_tok[r] = -1;
        } else {
            nuri_sampler_accept(j->sampler, s->row_tok[r]);
            s->row_fr[r] = (int8_t)nuri_sampler_finish_reason(j->sampler, s->row_tok[r]);
        }
    }
    pthread_mutex_lock(&s->mu);
    for (int32_t r = 0; r < rows; r++) {
        int i = s->row_slot[r];
        if (s->slots[i].n_draft > 0) {
            if (r == s->slots[i].b_row) push_draft_locked(s, i);
            continue;
        }
        if (s->row_tok[r] < 0)
            slot_fail_locked(
                s, i, 400,
                "no token can be sampled: logit_bias or the requested format bans every "
                "likely token");
        else
            push_token_locked(s, i, s->row_tok[r], (nuri_finish_reason)s->row_fr[r], &s->row_lp[r]);
    }
    pthread_mutex_unlock(&s->mu);
}

/* Waits on the scheduler's condition for up to ms milliseconds (under the lock). */
static void wait_ms_locked(serve_sched *s, long ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += ms * 1000000L;
    if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    pthread_cond_timedwait(&s->cv, &s->mu, &ts);
}

static void *sched_main(void *arg)
{
    serve_sched *s = arg;
    pthread_mutex_lock(&s->mu);
    while (!s->stop) {
        bool any = prepare_locked(s);
        if (!any) {
            update_gauges_locked(s);
            pthread_cond_wait(&s->cv, &s->mu);
            continue;
        }
        if (s->dctx && plan_drafts_locked(s)) {
            pthread_mutex_unlock(&s->mu);
            draft_model_run(s);
            pthread_mutex_lock(&s->mu);
        }
        int32_t rows, n = build_batch_locked(s, &rows);
        update_gauges_locked(s);
        if (n == 0) {
            // every running request waits for its reader (or for pages a reader holds up): sleep
            // until one reads (or 50 ms)
            wait_ms_locked(s, 50);
            continue;
        }
        pthread_mutex_unlock(&s->mu);
        run_batch(s, n, rows);
        pthread_mutex_lock(&s->mu);
    }
    // shutting down: fail what is left
    for (int i = 0; i < s->p.max_seqs; i++)
        if (s->slots[i].job) slot_fail_locked(s, i, 503, "the server is shutting down");
    while (s->q_count > 0) job_end_locked(q_pop_head(s), 503, "the server is shutting down");
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ============================== lifecycle ============================== */

int32_t serve_sched_seq_max(const serve_sched *s)
{
    return s->seq_max;
}

size_t serve_sched_kv_bytes_per_token(const serve_sched *s)
{
    return nuri_ctx_kv_bytes(s->ctx, 1);
}

void serve_sched_kv_types(const serve_sched *s, uint32_t *k_type, uint32_t *v_type)
{
    nuri_ctx_kv_types(s->ctx, k_type, v_type);
}

int32_t serve_sched_n_ctx(const serve_sched *s)
{
    return nuri_ctx_n_ctx(s->ctx);
}

uint64_t serve_sched_preemptions(serve_sched *s)
{
    pthread_mutex_lock(&s->mu);
    uint64_t n = s->n_preempt;
    pthread_mutex_unlock(&s->mu);
    return n;
}

uint64_t serve_mem_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    unsigned long long kb = 0;
    bool found = false;
    while (!found && fgets(line, sizeof line, f))
        found = sscanf(line, "MemAvailable: %llu kB", &kb) == 1;
    fclose(f);
    return found ? (uint64_t)kb * 1024 : 0;
}

int32_t serve_sched_pool_tokens(const nuri_model *m, int32_t max_seqs, double kv_mem,
                                uint64_t mem_available)
{
    return serve_sched_pool_tokens_kv(m, max_seqs, kv_mem, mem_available, 0, 0);
}

int32_t serve_sched_pool_tokens_kv(const nuri_model *m, int32_t max_seqs, double kv_mem,
                                   uint64_t mem_available, uint32_t kv_type_k, uint32_t kv_type_v)
{
    const nuri_hparams *hp = &m->hp;
    const double ctx_limit = 1 << 22; // nuri_ctx_new's
    double train = hp->n_ctx_train > 0 ? hp->n_ctx_train : 4096;
    double lo = train < 4096 ? train : 4096;
    double hi = (max_seqs > 0 ? max_seqs : 1) * train;
    if (hi > ctx_limit) hi = ctx_limit;
    if (kv_mem <= 0) kv_mem = 0.5;
    // bytes per token: K and V of every layer, rows of the cache's types (q8_0 about half of
    // f16; multi-head latent attention: K alone)
    double per_token = (double)nuri_kv_bytes_per_token(m, kv_type_k, kv_type_v);
    double n = mem_available ? kv_mem * (double)mem_available / per_token : lo;
    if (n > hi) n = hi;
    int64_t pages = (int64_t)(n / NURI_KV_PAGE), lo_pages = (int64_t)ceil(lo / NURI_KV_PAGE);
    if (pages < lo_pages) pages = lo_pages;
    if (pages < 1) pages = 1;
    return (int32_t)(pages * NURI_KV_PAGE);
}

static void sched_free(serve_sched *s)
{
    if (s->slots)
        for (int i = 0; i < s->p.max_seqs; i++) {
            free(s->slots[i].toks);
            free(s->slots[i].dtoks);
        }
    free(s->slots);
    free(s->order);
    free(s->queue);
    free(s->b_tok);
    free(s->b_pos);
    free(s->b_seq);
    free(s->b_logits);
    free(s->row_slot);
    free(s->row_tok);
    free(s->row_fr);
    free(s->row_lp);
    nuri_ctx_free(s->ctx);
    free(s->d_tok);
    free(s->d_pos);
    free(s->d_seq);
    free(s->d_row_slot);
    free(s->d_logits);
    nuri_ctx_free(s->dctx);
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
    if (p->max_queue < 1 || p->max_queue > (1 << 24))
        return nuri_error(NURI_ERR_INVALID_ARG, "queue size %d is not in 1..%d", p->max_queue,
                          1 << 24);
    if (p->draft_lookup < 0 || p->draft_lookup >= SERVE_JOB_RING)
        return nuri_error(NURI_ERR_INVALID_ARG, "draft-lookup %d is not in 0..%d", p->draft_lookup,
                          SERVE_JOB_RING - 1);
    if (p->draft_lookup > 0 &&
        m->hp.n_recurrent > 0) // a rejected draft is taken back by truncation
        return nuri_error(NURI_ERR_UNSUPPORTED,
                          "--draft-lookup is not supported for %s: its recurrent state cannot "
                          "take back a rejected draft",
                          m->hp.arch_name);
    if (p->draft) {
        if (p->draft_max < 1 || p->draft_max >= SERVE_JOB_RING)
            return nuri_error(NURI_ERR_INVALID_ARG, "draft-max %d is not in 1..%d", p->draft_max,
                              SERVE_JOB_RING - 1);
        const nuri_model *rec = m->hp.n_recurrent > 0 ? m : p->draft;
        if (rec->hp.n_recurrent > 0)
            return nuri_error(NURI_ERR_UNSUPPORTED,
                              "--draft is not supported for %s%s: its recurrent state cannot take "
                              "back a rejected draft",
                              rec == m ? "" : "a draft model of ", rec->hp.arch_name);
        nuri_status st = nuri_spec_vocab_check(m, p->draft);
        if (st != NURI_OK) return st;
    }
    if (!(p->kv_mem >= 0 && p->kv_mem <= 0.95))
        return nuri_error(NURI_ERR_INVALID_ARG,
                          "the KV cache's share of memory %g is not in (0, 0.95]", p->kv_mem);
    serve_sched *s = calloc(1, sizeof *s);
    if (!s) return nuri_error(NURI_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->m = m;
    s->metrics = metrics;
    s->p = *p;
    if (s->p.n_batch <= 0) s->p.n_batch = 256;
    if (s->p.n_batch < s->p.max_seqs) s->p.n_batch = s->p.max_seqs;
    // rows of logits: one per sequence, and one per draft token when speculating
    int32_t per_seq = p->draft && p->draft_max > p->draft_lookup ? p->draft_max : p->draft_lookup;
    int64_t rows_max = (int64_t)p->max_seqs * (1 + per_seq);
    s->n_rows_max = rows_max < s->p.n_batch ? (int32_t)rows_max : s->p.n_batch;
    // a pool sized from memory is allocated untouched (calloc): pages cost memory once written
    nuri_ctx_params cp = {.n_ctx = p->n_ctx ? p->n_ctx
                                            : serve_sched_pool_tokens_kv(
                                                  m, p->max_seqs, p->kv_mem, serve_mem_available(),
                                                  p->kv_type_k, p->kv_type_v),
                          .n_batch = s->p.n_batch,
                          .n_threads = p->n_threads,
                          .n_logits = s->n_rows_max,
                          .n_seq = p->max_seqs,
                          .kv_type_k = p->kv_type_k,
                          .kv_type_v = p->kv_type_v};
    nuri_status st = nuri_ctx_new(m, &cp, &s->ctx);
    if (st != NURI_OK) {
        sched_free(s);
        return st;
    }
    int32_t n_ctx = nuri_ctx_n_ctx(s->ctx);
    s->seq_max = n_ctx < m->hp.n_ctx_train ? n_ctx : m->hp.n_ctx_train;
    int32_t nb = s->p.n_batch, ns = p->max_seqs;
    s->q_cap = p->max_queue + ns;
    s->slots = calloc((size_t)ns, sizeof *s->slots);
    s->order = malloc((size_t)ns * sizeof *s->order);
    s->queue = calloc((size_t)s->q_cap, sizeof *s->queue);
    s->b_tok = malloc((size_t)nb * sizeof(int32_t));
    s->b_pos = malloc((size_t)nb * sizeof(int32_t));
    s->b_seq = malloc((size_t)nb * sizeof(int32_t));
    s->b_logits = malloc((size_t)nb);
    s->row_slot = malloc((size_t)s->n_rows_max * sizeof(int32_t));
    s->row_tok = malloc((size_t)s->n_rows_max * sizeof(int32_t));
    s->row_fr = malloc((size_t)s->n_rows_max);
    s->row_lp = malloc((size_t)s->n_rows_max * sizeof *s->row_lp);
    bool ok = s->slots && s->order && s->queue && s->b_tok && s->b_pos && s->b_seq && s->b_logits &&
              s->row_slot && s->row_tok && s->row_fr && s->row_lp;
    for (int i = 0; ok && i < ns; i++) {
        s->slots[i].next = -1;
        ok = (s->slots[i].toks = malloc((size_t)s->seq_max * sizeof(int32_t))) != NULL;
    }
    if (!ok) {
        sched_free(s);
        return nuri_error(NURI_ERR_NOMEM, "out of memory for the scheduler");
    }
    if (p->draft) { // the draft model's pool: as many tokens as the model's, one sequence a slot
        nuri_ctx_params dp = {
            .n_ctx = n_ctx, .n_batch = nb, .n_threads = p->n_threads, .n_logits = ns, .n_seq = ns};
        st = nuri_ctx_new(p->draft, &dp, &s->dctx);
        if (st != NURI_OK) {
            sched_free(s);
            return st;
        }
        int32_t dn_ctx = nuri_ctx_n_ctx(s->dctx);
        s->dseq_max = dn_ctx < p->draft->hp.n_ctx_train ? dn_ctx : p->draft->hp.n_ctx_train;
        s->d_tok = malloc((size_t)nb * sizeof(int32_t));
        s->d_pos = malloc((size_t)nb * sizeof(int32_t));
        s->d_seq = malloc((size_t)nb * sizeof(int32_t));
        s->d_logits = malloc((size_t)nb);
        s->d_row_slot = malloc((size_t)ns * sizeof(int32_t));
        ok = s->d_tok && s->d_pos && s->d_seq && s->d_logits && s->d_row_slot;
        for (int i = 0; ok && i < ns; i++)
            ok = (s->slots[i].dtoks = malloc((size_t)s->dseq_max * sizeof(int32_t))) != NULL;
        if (!ok) {
            sched_free(s);
            return nuri_error(NURI_ERR_NOMEM, "out of memory for the draft model's scheduler");
        }
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
