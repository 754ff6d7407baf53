/*
 * test_sched.c: the scheduler (src/serve/sched.h) with a real model, driven through its API.
 *
 * The contract: a request is never failed for lack of KV space; when the pool runs short the
 * youngest running request is preempted and later recomputed, and because every kernel is
 * batch-invariant its output (tokens and logprobs) is bit-identical to the same request run alone.
 * The reference here is independent of the scheduler: one nuri_ctx and one sampler, prompt then
 * token by token. The limit (slots + queue) counts running, preempted and waiting requests, also
 * those the scheduler has not taken yet; a preempted request can be cancelled; stopping fails what
 * is left. With n_ctx 0 the pool is sized from memory.
 */
#include "model/mkmodel.h"
#include "model/model.h"
#include "sample/sampler.h"
#include "serve/metrics.h"
#include "serve/sched.h"
#include "test.h"

#include <pthread.h>
#include <stdbool.h>
#include <unistd.h>

#define MODEL "tests/data/models/llama-tiny-Q4_K.gguf" // n_ctx_train 512, 4096 tokens
#define MAX_OUT 256

static nuri_model *model;

/* One request: its prompt and sampling. */
typedef struct spec {
    int32_t prompt[64];
    int32_t n_prompt;
    float temperature; // 0: greedy
    uint64_t seed;
    float repetition_penalty; // 0: off
    int32_t max_tokens;
    int32_t stop_token; // -1: none
    int n_top;          // > 0: logprobs with this many alternatives
} spec;

/* What came out of it. */
typedef struct result {
    int32_t toks[MAX_OUT];
    nuri_token_logprobs lp[MAX_OUT];
    int32_t n;
    nuri_finish_reason finish;
    int err_http;
    char err[256];
    int32_t n_preempted;
} result;

static void fill_prompt(spec *sp, int32_t seed, int32_t from, int32_t n)
{
    for (int32_t i = 0; i < n; i++) sp->prompt[from + i] = 3 + (seed * 7919 + i * 104729) % 4000;
    if (from + n > sp->n_prompt) sp->n_prompt = from + n;
}

static nuri_sampler *make_sampler(const spec *sp)
{
    nuri_sampler_params p = nuri_sampler_params_default();
    p.temperature = sp->temperature;
    p.seed = sp->seed;
    p.max_tokens = sp->max_tokens;
    p.n_top_logprobs = sp->n_top;
    if (sp->repetition_penalty > 0) p.repetition_penalty = sp->repetition_penalty;
    if (sp->stop_token >= 0) {
        p.stop_tokens = &sp->stop_token;
        p.n_stop_tokens = 1;
    }
    nuri_sampler *smp = NULL;
    return nuri_sampler_new(&p, model->hp.n_vocab, &smp) == NURI_OK ? smp : NULL;
}

/* The request run alone, without the scheduler: prompt, then sample, accept, feed, one by one. */
static bool reference(const spec *sp, result *out)
{
    memset(out, 0, sizeof *out);
    nuri_ctx *c;
    nuri_ctx_params cp = {.n_ctx = 512, .n_batch = 64, .n_threads = 1};
    if (nuri_ctx_new(model, &cp, &c) != NURI_OK) return false;
    nuri_sampler *smp = make_sampler(sp);
    bool ok = smp && nuri_ctx_decode(c, sp->prompt, sp->n_prompt, 0, false) == NURI_OK;
    for (int32_t pos = sp->n_prompt; ok; pos++) {
        int32_t tok;
        nuri_token_logprobs lp;
        ok = nuri_sampler_sample(smp, nuri_ctx_logits(c, 0), &tok, sp->n_top ? &lp : NULL) ==
             NURI_OK;
        if (!ok) break;
        nuri_sampler_accept(smp, tok);
        nuri_finish_reason fr = nuri_sampler_finish_reason(smp, tok);
        if (fr != NURI_FINISH_STOP && out->n < MAX_OUT) {
            out->toks[out->n] = tok;
            if (sp->n_top) out->lp[out->n] = lp;
            out->n++;
        }
        if (fr != NURI_FINISH_NONE) {
            out->finish = fr;
            break;
        }
        ok = nuri_ctx_decode(c, &tok, 1, pos, false) == NURI_OK;
    }
    nuri_sampler_free(smp);
    nuri_ctx_free(c);
    return ok;
}

static serve_job *make_job(const spec *sp)
{
    int32_t *prompt = malloc(sizeof(int32_t) * (size_t)sp->n_prompt);
    if (!prompt) return NULL;
    memcpy(prompt, sp->prompt, sizeof(int32_t) * (size_t)sp->n_prompt);
    serve_job *j = serve_job_new(prompt, sp->n_prompt, make_sampler(sp));
    if (!j) return NULL;
    if (!j->sampler) {
        free(j->prompt);
        free(j);
        return NULL;
    }
    j->max_new = sp->max_tokens;
    j->want_logprobs = sp->n_top > 0;
    j->t_arrival = serve_now();
    return j;
}

/* Moves the job's waiting events into r; true once the job is done (r then holds its outcome). */
static bool drain(serve_sched *s, serve_job *j, result *r, int timeout_ms)
{
    serve_event ev[SERVE_JOB_RING];
    bool done;
    int k = serve_job_wait(s, j, ev, SERVE_JOB_RING, timeout_ms, &done);
    for (int i = 0; i < k && r->n < MAX_OUT; i++, r->n++) {
        r->toks[r->n] = ev[i].token;
        r->lp[r->n] = ev[i].lp;
    }
    if (done) {
        serve_job_result(s, j, &r->finish, &r->err_http, r->err, sizeof r->err, NULL);
        r->n_preempted = j->n_preempted; // final once done
    }
    return done;
}

typedef struct reader {
    serve_sched *s;
    serve_job *j;
    result *r;
} reader;

static void *read_all(void *arg)
{
    reader *rd = arg;
    while (!drain(rd->s, rd->j, rd->r, 1000)) {
    }
    return NULL;
}

/* A request whose prompt fills every page of a pool of n_ctx <= 512 tokens and which then stalls,
 * unread, before it needs another: while it runs nothing else is admitted. NULL on failure. */
static serve_job *hold_the_pool(serve_sched *s, int32_t n_ctx)
{
    int32_t n = n_ctx - 26; // the last page, plus room for the 16 events of its ring
    int32_t *prompt = malloc(sizeof(int32_t) * (size_t)n);
    if (!prompt) return NULL;
    for (int32_t i = 0; i < n; i++) prompt[i] = 3 + (i * 104729) % 4000;
    nuri_sampler_params sp = nuri_sampler_params_default();
    sp.temperature = 0;
    nuri_sampler *smp = NULL;
    if (nuri_sampler_new(&sp, model->hp.n_vocab, &smp) != NURI_OK) {
        free(prompt);
        return NULL;
    }
    serve_job *j = serve_job_new(prompt, n, smp); // frees both on failure
    if (!j) return NULL;
    result r = {0};
    if (serve_sched_submit(s, j) == NURI_OK)
        while (r.n == 0 && !drain(s, j, &r, 1000)) { // its prefill is done: it holds every page
        }
    if (r.n == 0) {
        serve_job_release(s, j);
        return NULL;
    }
    return j;
}

/* Runs the requests together through a scheduler with params p, one reader thread each. On a
 * small pool they are all queued while a request holds the pool, which is then cancelled: the
 * scheduler admits them as it does a crowd arriving at once, whatever the timing of this thread.
 */
static serve_metrics *together_metrics; // run_together's metrics (NULL: none)

static bool run_together(const serve_sched_params *p, const spec *sp, int n, result *out,
                         uint64_t *preemptions)
{
    serve_sched *s;
    if (serve_sched_start(model, p, together_metrics, &s) != NURI_OK) return false;
    serve_job *jobs[16], *holder = NULL;
    pthread_t th[16];
    reader rd[16];
    bool ok = n <= 16;
    if (ok && p->n_ctx <= 512) ok = (holder = hold_the_pool(s, p->n_ctx)) != NULL;
    for (int i = 0; ok && i < n; i++) {
        memset(&out[i], 0, sizeof out[i]);
        ok = (jobs[i] = make_job(&sp[i])) != NULL;
        if (ok && serve_sched_submit(s, jobs[i]) != NURI_OK) {
            serve_job_release(s, jobs[i]);
            ok = false;
        }
        if (!ok) n = i;
    }
    if (holder) {
        serve_job_cancel(s, holder);
        serve_job_release(s, holder);
    }
    for (int i = 0; i < n; i++) {
        rd[i] = (reader){s, jobs[i], &out[i]};
        pthread_create(&th[i], NULL, read_all, &rd[i]);
    }
    for (int i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        serve_job_release(s, jobs[i]);
    }
    *preemptions = serve_sched_preemptions(s);
    serve_sched_free(s);
    return ok;
}

static bool same_lp(const nuri_token_logprobs *a, const nuri_token_logprobs *b)
{
    if (a->chosen.token != b->chosen.token || a->n_top != b->n_top ||
        memcmp(&a->chosen.logprob, &b->chosen.logprob, sizeof(float)))
        return false;
    for (int k = 0; k < a->n_top; k++)
        if (a->top[k].token != b->top[k].token ||
            memcmp(&a->top[k].logprob, &b->top[k].logprob, sizeof(float)))
            return false;
    return true;
}

/* Checks every result against its request run alone; returns the preemptions the jobs saw. */
static int check_against_reference(const spec *sp, const result *got, int n)
{
    int preempted = 0;
    for (int i = 0; i < n; i++) {
        result ref;
        CHECKF(reference(&sp[i], &ref), "request %d: the reference run failed", i);
        const result *g = &got[i];
        CHECKF(g->err_http == 0, "request %d failed: %d %s", i, g->err_http, g->err);
        CHECKF(g->finish == ref.finish && g->finish != NURI_FINISH_NONE,
               "request %d: finish %d, alone %d", i, g->finish, ref.finish);
        CHECKF(g->n == ref.n, "request %d: %d tokens, alone %d", i, g->n, ref.n);
        int32_t first_diff = -1;
        for (int32_t t = 0; t < g->n && t < ref.n && first_diff < 0; t++)
            if (g->toks[t] != ref.toks[t] || (sp[i].n_top && !same_lp(&g->lp[t], &ref.lp[t])))
                first_diff = t;
        CHECKF(first_diff < 0, "request %d (preempted %d times): token %d differs from alone", i,
               g->n_preempted, first_diff);
        preempted += g->n_preempted;
    }
    return preempted;
}

/* Eight requests over four slots and a 4-page pool: each needs 3 of the 4 pages by its end, four
 * of them share a 24-token prefix (forked pages, copy on write), half sample at temperature 0.8
 * with a seed (and a repetition penalty, so the sampler's history matters), some report logprobs,
 * one ends on a stop token. */
static int make_small_pool_specs(spec *sp)
{
    enum { N = 8 };
    memset(sp, 0, sizeof(spec) * N);
    for (int i = 0; i < N; i++) {
        spec *x = &sp[i];
        x->stop_token = -1;
        if (i < 4) {
            fill_prompt(x, 100, 0, 24); // the shared prefix
            fill_prompt(x, 200 + i, 24, 4);
        } else {
            fill_prompt(x, 300 + i, 0, 5 + 3 * i);
        }
        x->max_tokens = 60 + 8 * i; // prompt + completion < 128 = seq_max
        if (x->n_prompt + x->max_tokens > 120) x->max_tokens = 120 - x->n_prompt;
        if (i % 2) {
            x->temperature = 0.8f;
            x->seed = 1000 + (uint64_t)i;
            x->repetition_penalty = 1.1f;
        }
        if (i % 3 == 0) x->n_top = 3;
    }
    // request 5 stops on a token it would produce (the 30th of its run without a stop token)
    result ref;
    if (!reference(&sp[5], &ref) || ref.n < 31) return -1;
    sp[5].stop_token = ref.toks[30];
    return N;
}

TEST(preempted_requests_finish_with_the_output_they_have_alone)
{
    spec sp[8];
    int n = make_small_pool_specs(sp);
    REQUIRE(n == 8);
    result got[8];
    uint64_t preemptions = 0;
    serve_sched_params p = {
        .n_ctx = 4 * NURI_KV_PAGE, .max_seqs = 4, .max_queue = 16, .n_batch = 64, .n_threads = 1};
    REQUIRE(run_together(&p, sp, n, got, &preemptions));
    int seen = check_against_reference(sp, got, n), victims = 0;
    for (int i = 0; i < n; i++) victims += got[i].n_preempted > 0;
    CHECK(got[5].finish == NURI_FINISH_STOP);
    // the pool holds one finished request and a bit: two requests that grow together do not fit
    // (how many preemptions it takes depends on how the reader threads keep up)
    CHECKF(preemptions >= 1, "%llu preemptions", (unsigned long long)preemptions);
    CHECK((uint64_t)seen == preemptions);
    printf("  4-page pool, 8 requests over 4 slots: %llu preemptions of %d requests\n",
           (unsigned long long)preemptions, victims);
}

/* Speculation inside the batch: drafts by a draft model (the model itself, whose greedy drafts
 * hold for greedy requests up to their stop token and their length; and a model of other weights,
 * whose drafts mostly fail), by prompt lookup, and both, on the 4-page pool with its preemptions:
 * each request says what it says alone, token for token, sampled ones included (the deterministic
 * rule), and ends for the same reason at the same token. */
TEST(drafts_keep_every_output_its_stop_and_its_length)
{
    spec sp[8];
    int n = make_small_pool_specs(sp);
    REQUIRE(n == 8);
    nuri_model *other = NULL;
    REQUIRE(nuri_model_load("tests/data/models/llama-tiny-Q8_0.gguf", &other) == NURI_OK);
    const struct {
        const nuri_model *draft;
        int32_t draft_max, lookup;
        const char *what;
    } runs[] = {{model, 8, 0, "the model itself"},
                {other, 5, 0, "another model"},
                {NULL, 0, 6, "lookup"},
                {model, 3, 4, "lookup, then the model itself"}};
    for (size_t r = 0; r < sizeof runs / sizeof *runs; r++) {
        serve_metrics m;
        serve_metrics_init(&m);
        together_metrics = &m;
        result got[8];
        uint64_t preemptions = 0;
        serve_sched_params p = {.n_ctx = 4 * NURI_KV_PAGE,
                                .max_seqs = 4,
                                .max_queue = 16,
                                .n_batch = 64,
                                .n_threads = 1,
                                .draft_lookup = runs[r].lookup,
                                .draft = runs[r].draft,
                                .draft_max = runs[r].draft_max};
        bool ok = run_together(&p, sp, n, got, &preemptions);
        together_metrics = NULL;
        CHECKF(ok, "%s: the run failed", runs[r].what);
        if (ok) {
            check_against_reference(sp, got, n);
            CHECK(got[5].finish == NURI_FINISH_STOP);
            CHECKF(m.spec_drafted > 0 && m.spec_accepted > 0 && m.spec_accepted <= m.spec_drafted,
                   "%s: %llu drafted, %llu accepted", runs[r].what,
                   (unsigned long long)m.spec_drafted, (unsigned long long)m.spec_accepted);
        }
        printf("  %s: %llu preemptions, %llu drafted, %llu accepted\n", runs[r].what,
               (unsigned long long)preemptions, (unsigned long long)m.spec_drafted,
               (unsigned long long)m.spec_accepted);
        serve_metrics_destroy(&m);
    }
    nuri_model_free(other);
}

/* A draft model of another vocabulary, or with a draft size out of range, is refused by name. */
TEST(a_draft_model_must_share_the_vocabulary)
{
    // a tiny model with the vocabulary of Qwen2 (the model's is a synthetic 4096-token one)
    char path[] = "/tmp/nuri-test-sched-XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    close(fd);
    nuri_mkmodel_params mp = {.arch = "qwen2",
                              .shape = "tiny",
                              .type = "Q8_0",
                              .vocab = "tests/data/vocab/ggml-vocab-qwen2.gguf",
                              .seed = 1};
    nuri_model *qwen = NULL;
    bool made = nuri_mkmodel(&mp, path) == NURI_OK && nuri_model_load(path, &qwen) == NURI_OK;
    unlink(path);
    REQUIRE(made);
    serve_sched_params p = {
        .n_ctx = 4 * NURI_KV_PAGE, .max_seqs = 2, .max_queue = 4, .n_batch = 64, .n_threads = 1};
    p.draft = qwen;
    p.draft_max = 4;
    serve_sched *s = NULL;
    CHECK(serve_sched_start(model, &p, NULL, &s) == NURI_ERR_INVALID_ARG);
    CHECK(strstr(nuri_last_error(), "draft model's") != NULL);
    p.draft = model;
    p.draft_max = SERVE_JOB_RING;
    CHECK(serve_sched_start(model, &p, NULL, &s) == NURI_ERR_INVALID_ARG);
    CHECK(strstr(nuri_last_error(), "draft-max") != NULL);
    CHECK(s == NULL);
    nuri_model_free(qwen);
}

/* An 8-page pool: A (the oldest) grows to all 8 pages, C to 4, B to 5. When the pool is full, B,
 * the youngest, is preempted; C ends and makes room for B to come back; A grows on and preempts B
 * again. B resumes twice and still says what it says alone. (If C falls behind B, because its
 * reader thread did not keep up, B is preempted holding 3 pages and cannot come back before A
 * ends: once only. So up to five tries, each checked token for token.) */
TEST(a_request_preempted_twice_still_has_its_own_output)
{
    spec sp[3];
    memset(sp, 0, sizeof sp);
    const int32_t max_tokens[3] = {235, 100, 130}; // A, C, B: in the order they are admitted
    for (int i = 0; i < 3; i++) {
        fill_prompt(&sp[i], 60 + i, 0, 10);
        sp[i].max_tokens = max_tokens[i];
        sp[i].stop_token = -1;
        sp[i].temperature = i == 2 ? 0.9f : 0.0f;
        sp[i].seed = 5;
        sp[i].n_top = i == 2 ? 5 : 0;
    }
    result got[3];
    int most = 0;
    for (int attempt = 0; attempt < 5 && most < 2; attempt++) {
        uint64_t preemptions = 0;
        serve_sched_params p = {.n_ctx = 8 * NURI_KV_PAGE,
                                .max_seqs = 3,
                                .max_queue = 4,
                                .n_batch = 64,
                                .n_threads = 1};
        REQUIRE(run_together(&p, sp, 3, got, &preemptions));
        check_against_reference(sp, got, 3);
        if (got[2].n_preempted > most) most = got[2].n_preempted;
        printf("  8-page pool: A, C, B preempted %d, %d, %d times\n", got[0].n_preempted,
               got[1].n_preempted, got[2].n_preempted);
    }
    CHECKF(most >= 2, "B was preempted %d times at most", most);
}

/* Eight streams of 200 tokens each at once: on the pool of the old default (4096 tokens) and on a
 * pool that holds little more than two of them. None fails; each says what it says alone. */
TEST(eight_streams_of_200_tokens_all_finish)
{
    spec sp[8];
    memset(sp, 0, sizeof sp);
    for (int i = 0; i < 8; i++) {
        fill_prompt(&sp[i], 500 + i, 0, 8 + i);
        sp[i].max_tokens = 200;
        sp[i].stop_token = -1;
        sp[i].temperature = i % 2 ? 0.7f : 0.0f;
        sp[i].seed = 77 + (uint64_t)i;
        sp[i].n_top = i % 4 == 0 ? 2 : 0;
    }
    const int32_t pools[2] = {4096, 512};
    for (int k = 0; k < 2; k++) {
        result got[8];
        uint64_t preemptions = 0;
        serve_sched_params p = {
            .n_ctx = pools[k], .max_seqs = 8, .max_queue = 32, .n_batch = 256, .n_threads = 1};
        REQUIRE(run_together(&p, sp, 8, got, &preemptions));
        check_against_reference(sp, got, 8);
        if (pools[k] == 512) CHECKF(preemptions > 0, "no preemption on a %d-token pool", 512);
        printf("  8 x 200 tokens on a %d-token pool: %llu preemptions, none failed\n", pools[k],
               (unsigned long long)preemptions);
    }
}

/* A 4-page pool and two slots: A and B (10-token prompts, 100 tokens each) grow together until the
 * pool is full at 64 tokens each, and B, the younger, is preempted. From then on A is not read, so
 * it stops at its full event ring still holding 3 pages, and B waits at the head of the queue. */
typedef struct stalled {
    serve_sched *s;
    serve_job *a, *b;
    result ra, rb;
    spec sa, sb;
} stalled;

static bool stall_with_one_preempted(stalled *st, int max_queue, serve_metrics *metrics)
{
    memset(st, 0, sizeof *st);
    serve_sched_params p = {.n_ctx = 4 * NURI_KV_PAGE,
                            .max_seqs = 2,
                            .max_queue = max_queue,
                            .n_batch = 64,
                            .n_threads = 1};
    if (serve_sched_start(model, &p, metrics, &st->s) != NURI_OK) return false;
    spec *x[2] = {&st->sa, &st->sb};
    for (int i = 0; i < 2; i++) {
        fill_prompt(x[i], 40 + i, 0, 10);
        x[i]->max_tokens = 100;
        x[i]->stop_token = -1;
    }
    st->a = make_job(&st->sa);
    st->b = make_job(&st->sb);
    if (!st->a || !st->b || serve_sched_submit(st->s, st->a) != NURI_OK) return false;
    while (st->ra.n == 0) // A runs (the queue may hold one request only)
        if (drain(st->s, st->a, &st->ra, 1000)) return false;
    if (serve_sched_submit(st->s, st->b) != NURI_OK) return false;
    for (int i = 0; i < 5000 && serve_sched_preemptions(st->s) == 0; i++) {
        drain(st->s, st->a, &st->ra, 1);
        drain(st->s, st->b, &st->rb, 1);
    }
    return serve_sched_preemptions(st->s) == 1 && st->b->n_preempted == 1;
}

TEST(the_limit_counts_preempted_requests_and_they_can_be_cancelled)
{
    stalled st;
    bool ok = stall_with_one_preempted(&st, 1, NULL);
    CHECKF(ok, "B was not preempted");
    if (ok) {
        // two slots and a queue of 1: A runs and B, preempted, keeps its place; one new request
        // still fits, a second does not
        spec sc = st.sb;
        sc.max_tokens = 4;
        serve_job *c = make_job(&sc), *d = make_job(&sc);
        REQUIRE(c && d);
        CHECK(serve_sched_submit(st.s, c) == NURI_OK);
        CHECK(serve_sched_submit(st.s, d) == NURI_ERR_LIMIT);
        CHECK(strstr(nuri_last_error(), "queue is full") != NULL);
        // B, waiting after its preemption, is cancelled: it ends without an error
        serve_job_cancel(st.s, st.b);
        result rb = st.rb;
        int i = 0;
        while (!drain(st.s, st.b, &rb, 100) && i++ < 50) {
        }
        CHECK(i <= 50 && rb.err_http == 0 && rb.finish == NURI_FINISH_NONE);
        CHECK(serve_sched_submit(st.s, d) == NURI_OK); // B's place is free
        // A, read again, finishes as it would alone; then C and D run
        while (!drain(st.s, st.a, &st.ra, 1000)) {
        }
        result rc = {0}, rd = {0};
        while (!drain(st.s, c, &rc, 1000)) {
        }
        while (!drain(st.s, d, &rd, 1000)) {
        }
        check_against_reference(&st.sa, &st.ra, 1);
        check_against_reference(&sc, &rc, 1);
        check_against_reference(&sc, &rd, 1);
        serve_job_release(st.s, c);
        serve_job_release(st.s, d);
    }
    if (st.a) serve_job_release(st.s, st.a);
    if (st.b) serve_job_release(st.s, st.b);
    serve_sched_free(st.s);
}

/* Requests submitted together, before the scheduler's thread has taken any of them, are not
 * refused while slots are idle: two slots and a queue of 1 take three at once, and the fourth is
 * refused whether or not the scheduler has started the first ones. (Counting every job not yet in
 * a slot refused the second of two requests sent to one idle slot, now and then.) */
TEST(requests_sent_together_fill_the_idle_slots_before_the_queue)
{
    for (int round = 0; round < 20; round++) {
        serve_sched *s;
        serve_sched_params p = {.n_ctx = 16 * NURI_KV_PAGE,
                                .max_seqs = 2,
                                .max_queue = 1,
                                .n_batch = 64,
                                .n_threads = 1};
        REQUIRE(serve_sched_start(model, &p, NULL, &s) == NURI_OK);
        spec sp = {.stop_token = -1, .max_tokens = 100};
        fill_prompt(&sp, 60 + round, 0, 10);
        serve_job *j[4];
        for (int i = 0; i < 4; i++) REQUIRE((j[i] = make_job(&sp)) != NULL);
        for (int i = 0; i < 3; i++)
            CHECKF(serve_sched_submit(s, j[i]) == NURI_OK, "round %d: request %d of 3 refused: %s",
                   round, i + 1, nuri_last_error());
        CHECK(serve_sched_submit(s, j[3]) == NURI_ERR_LIMIT); // unread, none of the 3 can finish
        for (int i = 0; i < 4; i++) serve_job_release(s, j[i]);
        serve_sched_free(s);
    }
}

TEST(stopping_fails_running_and_preempted_requests)
{
    stalled st;
    bool ok = stall_with_one_preempted(&st, 4, NULL);
    CHECKF(ok, "B was not preempted");
    serve_sched_stop(st.s);
    if (ok) {
        result ra = st.ra, rb = st.rb;
        CHECK(drain(st.s, st.b, &rb, 0) && rb.err_http == 503 && strstr(rb.err, "shutting down"));
        while (!drain(st.s, st.a, &ra, 0)) { // A's unread events come first
        }
        CHECK(ra.err_http == 503);
    }
    if (st.a) serve_job_release(st.s, st.a);
    if (st.b) serve_job_release(st.s, st.b);
    serve_sched_free(st.s); // under ASan: B's recompute list is not leaked
}

static int64_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long long size = 0, resident = 0;
    if (!f) return -1;
    if (fscanf(f, "%lld %lld", &size, &resident) != 2) resident = -1;
    fclose(f);
    return resident * sysconf(_SC_PAGESIZE);
}

TEST(without_n_ctx_the_pool_is_sized_from_memory_within_bounds)
{
    // the rule, on made-up amounts of memory (this model: 1024 bytes of K and V per token)
    const int32_t train = model->hp.n_ctx_train;                                   // 512
    CHECK(serve_sched_pool_tokens(model, 4, 0.5, (uint64_t)1 << 40) == 4 * train); // capped
    CHECK(serve_sched_pool_tokens(model, 4, 0.25, 4 << 20) == 1024);
    CHECK(serve_sched_pool_tokens(model, 4, 0, 4 << 20) == 2048);      // 0: one half
    CHECK(serve_sched_pool_tokens(model, 4, 0.5, 100 << 10) == train); // one sequence at least
    CHECK(serve_sched_pool_tokens(model, 4, 0.5, 0) == train);         // unknown memory
    CHECK(serve_sched_pool_tokens(model, 3, 0.5, 1000 * 1024 + 77) % NURI_KV_PAGE == 0);
    CHECK(serve_mem_available() > 0);

    // and a real scheduler
    serve_sched *s;
    serve_sched_params p = {.max_seqs = 4, .max_queue = 4, .n_threads = 1};
    REQUIRE(serve_sched_start(model, &p, NULL, &s) == NURI_OK);
    CHECK(serve_sched_n_ctx(s) >= serve_sched_seq_max(s));
    CHECK(serve_sched_n_ctx(s) <= 4 * train);
    CHECK(serve_sched_seq_max(s) == train);
    serve_sched_free(s);

    p.kv_mem = 0.96;
    CHECK(serve_sched_start(model, &p, NULL, &s) == NURI_ERR_INVALID_ARG);
    p.kv_mem = -0.1;
    CHECK(serve_sched_start(model, &p, NULL, &s) == NURI_ERR_INVALID_ARG);
}

/* A pool is memory only once written: a 1-GiB pool (a million tokens of this model) costs the
 * pages a request really uses, so a pool sized from a large machine's memory does not take it. */
TEST(a_large_pool_takes_memory_only_as_it_is_used)
{
    int64_t before = rss_bytes();
    serve_sched *s;
    serve_sched_params p = {.n_ctx = 1 << 20, .max_seqs = 4, .max_queue = 4, .n_threads = 1};
    REQUIRE(serve_sched_start(model, &p, NULL, &s) == NURI_OK);
    spec sp = {.stop_token = -1, .max_tokens = 20};
    fill_prompt(&sp, 9, 0, 30);
    serve_job *j = make_job(&sp);
    REQUIRE(j && serve_sched_submit(s, j) == NURI_OK);
    result r = {0};
    while (!drain(s, j, &r, 1000)) {
    }
    CHECK(r.n == 20 && r.err_http == 0);
    int64_t grown = rss_bytes() - before;
    CHECKF(grown < (64 << 20), "RSS grew by %lld bytes", (long long)grown);
    printf("  a %d-token pool (%d MiB of KV): RSS grew by %.1f MiB\n", serve_sched_n_ctx(s),
           serve_sched_n_ctx(s) / 1024, (double)grown / (1 << 20));
    serve_job_release(s, j);
    serve_sched_free(s);
}

/* The counter and the KV gauges reach the metrics, as /metrics shows them: in the stalled state
 * above, one preemption, B waiting, and A holding 3 of the 4 pages. */
TEST(preemptions_and_pages_are_in_the_metrics)
{
    serve_metrics m;
    serve_metrics_init(&m);
    stalled st;
    bool ok = stall_with_one_preempted(&st, 4, &m);
    CHECKF(ok, "B was not preempted");
    char *t = NULL;
    for (int i = 0; ok && i < 100; i++) { // the gauges follow at the scheduler's next loop
        free(t);
        t = serve_metrics_text(&m, "tiny");
        if (!t || strstr(t, "\nnuri_kv_pages_used 3\n")) break;
        usleep(10000);
    }
    if (ok) {
        REQUIRE(t != NULL);
        CHECK(strstr(t, "\nnuri_preemptions_total 1\n") != NULL);
        CHECK(strstr(t, "\nnuri_kv_pages_used 3\n") != NULL);
        CHECK(strstr(t, "\nnuri_kv_pages_total 4\n") != NULL);
        CHECK(strstr(t, "\nnuri_queue_depth 1\n") != NULL);
        CHECK(strstr(t, "\nnuri_running_sequences 1\n") != NULL);
    }
    free(t);
    if (st.a) serve_job_release(st.s, st.a);
    if (st.b) serve_job_release(st.s, st.b);
    serve_sched_free(st.s);
    serve_metrics_destroy(&m);
}

int main(void)
{
    if (nuri_model_load(MODEL, &model) != NURI_OK) {
        fprintf(stderr, "%s\n", nuri_last_error());
        return 1;
    }
    RUN(preempted_requests_finish_with_the_output_they_have_alone);
    RUN(drafts_keep_every_output_its_stop_and_its_length);
    RUN(a_draft_model_must_share_the_vocabulary);
    RUN(a_request_preempted_twice_still_has_its_own_output);
    RUN(eight_streams_of_200_tokens_all_finish);
    RUN(the_limit_counts_preempted_requests_and_they_can_be_cancelled);
    RUN(requests_sent_together_fill_the_idle_slots_before_the_queue);
    RUN(stopping_fails_running_and_preempted_requests);
    RUN(without_n_ctx_the_pool_is_sized_from_memory_within_bounds);
    RUN(a_large_pool_takes_memory_only_as_it_is_used);
    RUN(preemptions_and_pages_are_in_the_metrics);
    nuri_model_free(model);
    TEST_DONE();
}
