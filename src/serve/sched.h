/*
 * sched.h: the scheduler: continuous batching of many requests over one nuri_ctx.
 *
 * One thread owns the context. Each step it
 *   1. frees the sequences of cancelled requests (a client that went away) at once, and drops
 *      cancelled requests from the queue,
 *   2. admits waiting requests, first come first served, into free sequence slots, reusing the KV
 *      pages of the longest identical prefix that any slot holds (a running one is forked: pages
 *      are shared). A request is admitted only when the free pages (after dropping idle prefix
 *      caches) hold what is left to prefill of the running requests and of it, plus a watermark of
 *      one page per running sequence, so that admitting it does not force a preemption,
 *   3. plans one batch with page accounting, oldest request first: the next token of every
 *      decoding sequence, then chunks of prompts being prefilled with what is left of n_batch (so
 *      running streams never wait for a long prompt), each taking its pages out of the free ones
 *      before the batch is built. When a sequence cannot get its pages, idle prefix caches are
 *      dropped first; then the youngest running request not yet in the batch is preempted (a
 *      prompt chunk shrinks to the pages there are, and preempts only younger requests),
 *   4. runs one forward pass over it and samples one token per sequence that asks for one.
 * Tokens go to the request's bounded event ring; a request whose ring is full (a slow reader) is
 * left out of the next batches until its reader catches up.
 *
 * Preemption is by recompute, as vLLM does it: the request's pages are freed, its job keeps its
 * sampler, its unread events and the token it sampled but has not fed yet, and it goes back to the
 * head of the queue with its prompt plus every token it generated and fed as the tokens to
 * prefill again. Re-admitted, it prefills those (prefix reuse allowed), samples nothing at the end
 * of that prefill, and goes on decoding from the remembered token. Every kernel is
 * batch-invariant (DESIGN.md, "Numerics"), so the recomputed KV and every later token and logprob
 * are bit-identical to an uninterrupted run. A request is never failed for lack of space: one
 * sequence (prompt + completion <= serve_sched_seq_max) always fits the pool alone. The queue
 * keeps room for preempted requests beyond max_queue, so re-queueing one never fails.
 *
 * With a draft model (serve_sched_params.draft), before step 3 the scheduler thread, without the
 * lock, brings each decoding sequence's copy in the draft model's KV up to its tokens (what it
 * holds is kept as far as it agrees, so a slot's draft KV is a prefix cache too) and drafts up to
 * draft_max tokens by the draft model's argmax, one batched draft pass per token for all of them.
 * Step 3 places those drafts as it places lookup drafts (lookup first when both are on), and
 * verification is the deterministic rule: the output is the plain output, seed for seed.
 *
 * Requests (serve_job) are shared by the scheduler and one connection thread, each holding a
 * reference; all of a job's mutable fields are guarded by the scheduler's mutex.
 */
#ifndef NURI_SERVE_SCHED_H
#define NURI_SERVE_SCHED_H

#include "model/model.h"
#include "sample/sampler.h"
#include "serve/metrics.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define SERVE_JOB_RING 16 // tokens a job may have waiting for its reader

/* Where a job's prompt KV came from at its first admission (the memory hierarchy's tiers). */
enum { SERVE_KV_NONE, SERVE_KV_MEMORY, SERVE_KV_SNAPSHOT };

typedef struct serve_event {
    int32_t token;
    nuri_token_logprobs lp; // filled when the job wants logprobs
} serve_event;

typedef struct serve_job {
    /* set by the submitter before serve_sched_submit, then read-only */
    int32_t *prompt; // (n_prompt) token ids; owned by the job
    int32_t n_prompt;
    int32_t max_new;       // tokens to generate at most (>= 1)
    nuri_sampler *sampler; // owned by the job; used by the scheduler thread only
    bool want_logprobs;
    double t_arrival; // serve_now() when the request arrived
    // KV snapshots: a snapshot to start from (owned by the job; the scheduler uses it when it
    // covers more of the prompt than any cached sequence, then frees it) ...
    int32_t *kv_in_tokens; // (kv_in_n)
    int32_t kv_in_n;
    void *kv_in; // nuri_ctx_kv_bytes(kv_in_n) bytes, as nuri_ctx_seq_kv_read writes them
    // ... and, with want_kv, the tokens and KV of its sequence when it ends without an error
    // (kv_out_*, set by the scheduler before done; owned by the job, the reader may take them)
    bool want_kv;

    /* guarded by the scheduler's mutex */
    int refs;
    bool cancelled; // the reader is gone or needs no more tokens
    bool done;      // no more events will come
    nuri_finish_reason finish;
    int err_http; // non-zero: the job failed, err says why
    char err[256];
    int32_t n_cached; // prompt tokens whose KV was reused (at the first admission)
    int32_t n_generated;
    int32_t n_preempted; // times the job's KV was dropped to make room (recomputed later)
    int kv_source;       // where its prompt's KV came from at admission: SERVE_KV_*
    int32_t *kv_out_tokens;
    int32_t kv_out_n;
    void *kv_out;
    serve_event ring[SERVE_JOB_RING];
    int ring_head, ring_count;
    pthread_cond_t cv; // signalled on a new event and on done

    /* the scheduler's own (a preempted job's state), guarded by the mutex */
    int32_t *replay; // (n_replay) after a preemption: prompt + the generated tokens fed; owned
    int32_t n_replay;
    int32_t resume_next; // after a preemption: the sampled token not fed yet; -1: sample as usual
    double t_last;       // when its last token was produced (inter-token latency); 0: none yet
} serve_job;

typedef struct serve_sched serve_sched;

typedef struct serve_sched_params {
    int32_t n_ctx;     // KV pool, tokens for all sequences together (0: sized by kv_mem)
    double kv_mem;     // n_ctx 0: fraction (0, 0.95] of the available memory for the pool (0: 0.5)
    int32_t max_seqs;  // sequences decoded together
    int32_t max_queue; // requests accepted beyond max_seqs (waiting for a slot) before 503
    int32_t n_batch;   // tokens per forward step (decode + prefill chunks)
    int32_t n_threads;
    int32_t draft_lookup; // speculative decoding: prompt-lookup draft tokens per sequence (0: off)
    // speculative decoding with a draft model (borrowed; NULL: none): its vocabulary must be the
    // model's (nuri_spec_vocab_check); it drafts up to draft_max tokens (1..SERVE_JOB_RING - 1)
    // per decoding sequence and step, greedily, in its own paged KV (one sequence per slot)
    const nuri_model *draft;
    int32_t draft_max;
    uint32_t kv_type_k, kv_type_v; // the cache's types (nuri_ctx_params; 0: F16)
} serve_sched_params;

/* Creates the context and starts the scheduler thread. m is borrowed for the scheduler's life.
 * metrics (borrowed, may be NULL) gets the gauges and token latencies. */
nuri_status serve_sched_start(const nuri_model *m, const serve_sched_params *p,
                              serve_metrics *metrics, serve_sched **out);
/* Stops the thread and fails what is queued or running (their readers see an error). Jobs may
 * still be waited on, cancelled and released afterwards. */
void serve_sched_stop(serve_sched *s);
/* Stops (if needed) and frees the scheduler and its context; no job may be in use. */
void serve_sched_free(serve_sched *s);

/* The longest sequence one request may reach, in tokens (prompt + completion). */
int32_t serve_sched_seq_max(const serve_sched *s);
/* The KV pool's size, in tokens. */
int32_t serve_sched_n_ctx(const serve_sched *s);
/* Bytes of one token's KV in the pool (nuri_ctx_kv_bytes), and the pool's K and V types. */
size_t serve_sched_kv_bytes_per_token(const serve_sched *s);
void serve_sched_kv_types(const serve_sched *s, uint32_t *k_type, uint32_t *v_type);
/* Running requests preempted so far (also counted in the metrics' nuri_preemptions_total). */
uint64_t serve_sched_preemptions(serve_sched *s);

/* The pool size (tokens) serve_sched_start picks when n_ctx is 0: kv_mem (0: 0.5) x mem_available
 * bytes over the model's KV bytes per token (F16 K and V of every layer), at most max_seqs full
 * sequences of the model's training context, at least min(n_ctx_train, 4096) tokens (the pool of
 * one sequence that a ctx gets by default; also when mem_available is 0: unknown), in whole
 * pages. */
int32_t serve_sched_pool_tokens(const nuri_model *m, int32_t max_seqs, double kv_mem,
                                uint64_t mem_available);
/* The same for a cache of the given types (0: F16): a q8_0 token takes 17/32 of an f16 one, so
 * the same kv_mem holds about twice the tokens. */
int32_t serve_sched_pool_tokens_kv(const nuri_model *m, int32_t max_seqs, double kv_mem,
                                   uint64_t mem_available, uint32_t kv_type_k, uint32_t kv_type_v);
/* MemAvailable from /proc/meminfo, in bytes; 0 when it cannot be read. */
uint64_t serve_mem_available(void);

/* A new job with one reference (the caller's); takes ownership of prompt and sampler (also on
 * failure). NULL when out of memory. */
serve_job *serve_job_new(int32_t *prompt, int32_t n_prompt, nuri_sampler *sampler);

/* Queues the job (the scheduler takes a reference). NURI_ERR_LIMIT when max_seqs + max_queue
 * requests are running, preempted or waiting already. */
nuri_status serve_sched_submit(serve_sched *s, serve_job *j);

/* Waits (at most timeout_ms) until the job's first token is out or it is done, taking no event:
 * its prompt's KV is then in its slot, where a job with the same prompt submitted now finds it
 * (n choices of one request share their prompt's pages so). True when that has happened. */
bool serve_job_wait_first(serve_sched *s, serve_job *j, int timeout_ms);

/* Waits until the job has an event or is done (or timeout_ms passes), then moves up to cap events
 * to out. Returns the count; *done is set once the job is done and no events are left. */
int serve_job_wait(serve_sched *s, serve_job *j, serve_event *out, int cap, int timeout_ms,
                   bool *done);

/* Asks the scheduler to drop the job (its sequence is freed at the next step). */
void serve_job_cancel(serve_sched *s, serve_job *j);

/* Reads the job's outcome fields under the lock. */
void serve_job_result(serve_sched *s, serve_job *j, nuri_finish_reason *finish, int *err_http,
                      char *err, size_t err_cap, int32_t *n_cached);

/* Drops the caller's reference. */
void serve_job_release(serve_sched *s, serve_job *j);

#endif
