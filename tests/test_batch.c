/*
 * test_batch.c: many sequences over one paged KV pool.
 *
 * The contract (model/model.h): a sequence's logits do not depend on what else is in its batch;
 * a forked prefix gives the same logits as recomputing it; a shared page is copied before it is
 * written; a batch the pool cannot hold is refused and changes nothing; pages come back when a
 * sequence is truncated or cleared; nuri_ctx_pages_needed counts what a batch takes, as decoding
 * does.
 */
#include <stdlib.h>
#include <unistd.h>

#include "model/mkmodel.h"
#include "model/model.h"
#include "test.h"

#define MODEL "tests/data/models/llama-tiny-Q4_K.gguf"

static nuri_model *model;

static void prompt(int32_t seed, int32_t n, int32_t *out)
{
    for (int32_t i = 0; i < n; i++) out[i] = 3 + (seed * 7919 + i * 104729) % 4000;
}

/* The last-token logits of `n` tokens run alone in a fresh context. */
static float *alone(const int32_t *toks, int32_t n)
{
    nuri_ctx *c;
    nuri_ctx_params cp = {.n_ctx = 256, .n_batch = 64, .n_threads = 1};
    if (nuri_ctx_new(model, &cp, &c) != NURI_OK) return NULL;
    float *out = NULL;
    if (nuri_ctx_decode(c, toks, n, 0, false) == NURI_OK) {
        out = malloc(sizeof(float) * (size_t)model->hp.n_vocab);
        memcpy(out, nuri_ctx_logits(c, 0), sizeof(float) * (size_t)model->hp.n_vocab);
    }
    nuri_ctx_free(c);
    return out;
}

static bool same_logits(const float *a, const float *b)
{
    return a && b && memcmp(a, b, sizeof(float) * (size_t)model->hp.n_vocab) == 0;
}

TEST(sequences_in_one_batch_match_each_run_alone)
{
    // four sequences of different lengths, prefilled together in one batch, then decoded together
    enum { NS = 4 };
    const int32_t len[NS] = {5, 40, 17, 33};
    int32_t toks[NS][48];
    for (int s = 0; s < NS; s++) prompt(s + 1, 48, toks[s]);
    nuri_ctx *c;
    nuri_ctx_params cp = {.n_ctx = 512, .n_batch = 128, .n_threads = 2, .n_logits = 8, .n_seq = NS};
    REQUIRE(nuri_ctx_new(model, &cp, &c) == NURI_OK);
    int32_t bt[128], bp[128], bs[128];
    int8_t bl[128];
    int32_t n = 0;
    for (int s = 0; s < NS; s++)
        for (int32_t i = 0; i < len[s]; i++, n++) {
            bt[n] = toks[s][i], bp[n] = i, bs[n] = s, bl[n] = i == len[s] - 1;
        }
    nuri_batch b = {.n = n, .token = bt, .pos = bp, .seq = bs, .logits = bl};
    REQUIRE(nuri_ctx_decode_batch(c, &b) == NURI_OK);
    for (int s = 0; s < NS; s++) {
        float *ref = alone(toks[s], len[s]);
        CHECKF(same_logits(ref, nuri_ctx_logits(c, s)), "sequence %d prefill", s);
        free(ref);
    }
    // one decode step for all four at once (interleaved order on purpose)
    n = 0;
    for (int s = NS - 1; s >= 0; s--, n++)
        bt[n] = toks[s][len[s]], bp[n] = len[s], bs[n] = s, bl[n] = 1;
    b.n = n;
    REQUIRE(nuri_ctx_decode_batch(c, &b) == NURI_OK);
    for (int s = NS - 1, row = 0; s >= 0; s--, row++) {
        float *ref = alone(toks[s], len[s] + 1);
        CHECKF(same_logits(ref, nuri_ctx_logits(c, row)), "sequence %d decode", s);
        CHECK(nuri_ctx_seq_len(c, s) == len[s] + 1);
        free(ref);
    }
    nuri_ctx_free(c);
}

TEST(a_forked_prefix_gives_the_same_logits_as_recomputing_it)
{
    int32_t sys[45], a[60], bq[60];
    prompt(9, 45, sys);
    memcpy(a, sys, sizeof sys);
    memcpy(bq, sys, sizeof sys);
    prompt(10, 15, a + 45);
    prompt(11, 15, bq + 45);
    nuri_ctx *c;
    nuri_ctx_params cp = {.n_ctx = 256, .n_batch = 64, .n_threads = 1, .n_seq = 3};
    REQUIRE(nuri_ctx_new(model, &cp, &c) == NURI_OK);
    int32_t pos[60], seq[60];
    int8_t want[60] = {0};
    for (int i = 0; i < 60; i++) pos[i] = i, seq[i] = 0;
    nuri_batch b = {.n = 45, .token = sys, .pos = pos, .seq = seq, .logits = want};
    REQUIRE(nuri_ctx_decode_batch(c, &b) == NURI_OK); // the shared prefix, in sequence 0
    int32_t free_before = nuri_ctx_pages_free(c);
    REQUIRE(nuri_ctx_seq_fork(c, 0, 1, 45) == NURI_OK);
    REQUIRE(nuri_ctx_seq_fork(c, 0, 2, 45) == NURI_OK);
    CHECK(nuri_ctx_pages_free(c) == free_before); // forking copies nothing
    // each continues in its own way; 45 is inside the second page, which is shared: copy on write
    for (int s = 1; s <= 2; s++) {
        const int32_t *t = s == 1 ? a : bq;
        int32_t sq[15];
        for (int i = 0; i < 15; i++) sq[i] = s;
        want[14] = 1;
        nuri_batch bb = {.n = 15, .token = t + 45, .pos = pos + 45, .seq = sq, .logits = want};
        REQUIRE(nuri_ctx_decode_batch(c, &bb) == NURI_OK);
        want[14] = 0;
        float *ref = alone(t, 60);
        CHECKF(same_logits(ref, nuri_ctx_logits(c, 0)), "fork %d", s);
        free(ref);
    }
    // the original prefix is intact: continuing sequence 0 like `a` gives a's logits
    int32_t s0[15] = {0};
    want[14] = 1;
    nuri_batch b0 = {.n = 15, .token = a + 45, .pos = pos + 45, .seq = s0, .logits = want};
    REQUIRE(nuri_ctx_decode_batch(c, &b0) == NURI_OK);
    float *ref = alone(a, 60);
    CHECK(same_logits(ref, nuri_ctx_logits(c, 0)));
    free(ref);
    nuri_ctx_free(c);
}

TEST(a_batch_the_pool_cannot_hold_is_refused_and_changes_nothing)
{
    nuri_ctx *c;
    nuri_ctx_params cp = {.n_ctx = 2 * NURI_KV_PAGE, .n_batch = 128, .n_threads = 1, .n_seq = 2};
    REQUIRE(nuri_ctx_new(model, &cp, &c) == NURI_OK);
    int32_t t[80], pos[80], seq[80];
    prompt(3, 80, t);
    for (int i = 0; i < 80; i++) pos[i] = i % 40, seq[i] = i / 40;
    nuri_batch b = {.n = 40, .token = t, .pos = pos, .seq = seq};
    REQUIRE(nuri_ctx_decode_batch(c, &b) == NURI_OK); // sequence 0: 40 tokens, 2 pages
    CHECK(nuri_ctx_pages_free(c) == 0);
    nuri_batch b1 = {.n = 40, .token = t + 40, .pos = pos + 40, .seq = seq + 40};
    CHECK(nuri_ctx_decode_batch(c, &b1) == NURI_ERR_LIMIT);
    CHECK(strstr(nuri_last_error(), "KV cache is full") != NULL);
    CHECK(nuri_ctx_seq_len(c, 0) == 40 && nuri_ctx_seq_len(c, 1) == 0);
    nuri_ctx_seq_truncate(c, 0, 10); // gives back the second page
    CHECK(nuri_ctx_pages_free(c) == 1);
    nuri_batch b2 = {.n = 20, .token = t + 40, .pos = pos + 40, .seq = seq + 40};
    CHECK(nuri_ctx_decode_batch(c, &b2) == NURI_OK);
    nuri_ctx_seq_clear(c, 0);
    nuri_ctx_seq_clear(c, 1);
    CHECK(nuri_ctx_pages_free(c) == 2);
    nuri_ctx_free(c);
}

TEST(pages_needed_counts_what_a_batch_takes)
{
    nuri_ctx *c;
    nuri_ctx_params cp = {.n_ctx = 8 * NURI_KV_PAGE, .n_batch = 128, .n_threads = 1, .n_seq = 2};
    REQUIRE(nuri_ctx_new(model, &cp, &c) == NURI_OK);
    int32_t t[100], pos[100], seq[100] = {0};
    prompt(4, 100, t);
    for (int i = 0; i < 100; i++) pos[i] = i;
    CHECK(nuri_ctx_pages_needed(c, 0, 0, 45) == 2);
    nuri_batch b = {.n = 45, .token = t, .pos = pos, .seq = seq};
    REQUIRE(nuri_ctx_decode_batch(c, &b) == NURI_OK);
    CHECK(nuri_ctx_pages_needed(c, 0, 45, 19) == 0); // the rest of its second page
    CHECK(nuri_ctx_pages_needed(c, 0, 45, 20) == 1); // and the first token of a third
    CHECK(nuri_ctx_pages_needed(c, 0, 10, 1) == -1); // back to one page: the second is dropped
    REQUIRE(nuri_ctx_seq_fork(c, 0, 1, 45) == NURI_OK);
    // the second page is shared now: writing into it copies it first, on either side
    CHECK(nuri_ctx_pages_needed(c, 1, 45, 1) == 1);
    CHECK(nuri_ctx_pages_needed(c, 1, 45, 40) == 2);
    // back to position 10: its second page stays with sequence 1, its first, shared, is copied
    CHECK(nuri_ctx_pages_needed(c, 0, 10, 1) == 1);
    int32_t s1[40];
    for (int i = 0; i < 40; i++) s1[i] = 1;
    int32_t free_before = nuri_ctx_pages_free(c);
    nuri_batch b1 = {.n = 40, .token = t + 45, .pos = pos + 45, .seq = s1};
    REQUIRE(nuri_ctx_decode_batch(c, &b1) == NURI_OK);
    CHECK(free_before - nuri_ctx_pages_free(c) == 2);
    CHECK(nuri_ctx_pages_needed(c, 0, 45, 1) == 0); // sequence 0 holds its page alone again
    CHECK(nuri_ctx_pages_needed(c, 1, 85, 0) == 0);
    nuri_ctx_free(c);
}

TEST(bad_batches_are_errors_that_name_the_problem)
{
    nuri_ctx *c;
    nuri_ctx_params cp = {.n_ctx = 64, .n_batch = 8, .n_threads = 1, .n_seq = 2};
    REQUIRE(nuri_ctx_new(model, &cp, &c) == NURI_OK);
    int32_t t[3] = {5, 6, 7}, p[3] = {0, 2, 3}, s[3] = {0, 0, 0};
    nuri_batch b = {.n = 3, .token = t, .pos = p, .seq = s};
    CHECK(nuri_ctx_decode_batch(c, &b) == NURI_ERR_INVALID_ARG); // gap: 0 then 2
    CHECK(strstr(nuri_last_error(), "expected 1") != NULL);
    int32_t s2[3] = {0, 0, 7};
    int32_t p2[3] = {0, 1, 0};
    nuri_batch b2 = {.n = 3, .token = t, .pos = p2, .seq = s2};
    CHECK(nuri_ctx_decode_batch(c, &b2) == NURI_ERR_INVALID_ARG); // sequence 7 of 2
    CHECK(nuri_ctx_seq_len(c, 0) == 0);                           // nothing was applied
    CHECK(nuri_ctx_seq_fork(c, 0, 0, 0) == NURI_ERR_INVALID_ARG);
    CHECK(nuri_ctx_seq_fork(c, 0, 1, 5) == NURI_ERR_INVALID_ARG); // 0 holds no tokens
    nuri_ctx_free(c);
}

/* Logits of a 70-token prompt (AMX-sized groups and a remainder) and of one decoded token with
 * `threads` threads. The threads share each matrix product's work first come, first served
 * (threadpool.h), so which thread computes an output changes from run to run: the logits must not.
 */
static float *run_with_threads(nuri_model *m, int threads)
{
    int32_t toks[71];
    prompt(21, 71, toks);
    nuri_ctx *c;
    nuri_ctx_params cp = {.n_ctx = 256, .n_batch = 128, .n_threads = threads};
    if (nuri_ctx_new(m, &cp, &c) != NURI_OK) return NULL;
    const size_t nv = (size_t)m->hp.n_vocab;
    float *out = malloc(sizeof(float) * 2 * nv);
    if (nuri_ctx_decode(c, toks, 70, 0, false) != NURI_OK) goto fail;
    memcpy(out, nuri_ctx_logits(c, 0), sizeof(float) * nv);
    if (nuri_ctx_decode(c, toks + 70, 1, 70, false) != NURI_OK) goto fail;
    memcpy(out + nv, nuri_ctx_logits(c, 0), sizeof(float) * nv);
    nuri_ctx_free(c);
    return out;
fail:
    free(out);
    nuri_ctx_free(c);
    return NULL;
}

TEST(logits_do_not_depend_on_the_number_of_threads)
{
    static const char *const files[] = {
        "tests/data/models/llama-tiny-Q4_0.gguf",   "tests/data/models/llama-tiny-Q8_0.gguf",
        "tests/data/models/llama-tiny-Q4_K_M.gguf", "tests/data/models/llama-tiny-Q5_K.gguf",
        "tests/data/models/llama-tiny-Q3_K.gguf",   "tests/data/models/llama-tiny-Q2_K.gguf",
        "tests/data/models/llama-tiny-F16.gguf",    "tests/data/models/llama-tiny-BF16.gguf"};
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        nuri_model *m;
        REQUIRE(nuri_model_load(files[f], &m) == NURI_OK);
        float *one = run_with_threads(m, 1);
        REQUIRE(one != NULL);
        for (int threads = 2; threads <= 4; threads++)
            for (int rep = 0; rep < 3; rep++) {
                float *many = run_with_threads(m, threads);
                CHECKF(many && memcmp(one, many, sizeof(float) * 2 * (size_t)m->hp.n_vocab) == 0,
                       "%s: %d threads differ from one", files[f], threads);
                free(many);
            }
        free(one);
        nuri_model_free(m);
    }
}

/* The grid types (IQ1 / IQ2 / IQ3) multiply a prompt with their gemm (rows unpacked once, tiles of
 * tokens) and one token with vec_dot: the last token's logits must be the same bits whether the
 * prompt went in as one batch or one token at a time, and with 1 to 4 threads. The models are
 * made here (nuri_mkmodel: the IQ type for the ffn weights, Q8_0 for the rest). */
static float *run_token_by_token(nuri_model *m, int32_t n)
{
    int32_t toks[71];
    prompt(21, 71, toks);
    nuri_ctx *c;
    nuri_ctx_params cp = {.n_ctx = 256, .n_batch = 128, .n_threads = 2};
    if (nuri_ctx_new(m, &cp, &c) != NURI_OK) return NULL;
    float *out = malloc(sizeof(float) * (size_t)m->hp.n_vocab);
    for (int32_t i = 0; i < n; i++)
        if (nuri_ctx_decode(c, toks + i, 1, i, false) != NURI_OK) {
            free(out);
            nuri_ctx_free(c);
            return NULL;
        }
    memcpy(out, nuri_ctx_logits(c, 0), sizeof(float) * (size_t)m->hp.n_vocab);
    nuri_ctx_free(c);
    return out;
}

TEST(grid_type_prompts_match_token_by_token_and_any_thread_count)
{
    char dir[] = "/tmp/nuri-test-batch-XXXXXX";
    REQUIRE(mkdtemp(dir) != NULL);
    static const char *const types[] = {"IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS",
                                        "IQ3_S",   "IQ1_S",  "IQ1_M"};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        char path[128];
        snprintf(path, sizeof path, "%s/llama-tiny-%s.gguf", dir, types[i]);
        nuri_mkmodel_params p = {.arch = "llama", .shape = "tiny", .type = types[i], .seed = 3};
        REQUIRE(nuri_mkmodel(&p, path) == NURI_OK);
        nuri_model *m;
        REQUIRE(nuri_model_load(path, &m) == NURI_OK);
        const size_t nv = (size_t)m->hp.n_vocab;
        float *one = run_with_threads(m, 1), *step = run_token_by_token(m, 70);
        REQUIRE(one != NULL && step != NULL);
        CHECKF(memcmp(one, step, sizeof(float) * nv) == 0,
               "%s: a 70-token prompt in one batch differs from token by token", types[i]);
        for (int threads = 2; threads <= 4; threads++) {
            float *many = run_with_threads(m, threads);
            CHECKF(many && memcmp(one, many, sizeof(float) * 2 * nv) == 0,
                   "%s: %d threads differ from one", types[i], threads);
            free(many);
        }
        free(one), free(step);
        nuri_model_free(m);
        remove(path);
    }
    rmdir(dir);
}

int main(void)
{
    if (nuri_model_load(MODEL, &model) != NURI_OK) {
        fprintf(stderr, "%s\n", nuri_last_error());
        return 1;
    }
    RUN(sequences_in_one_batch_match_each_run_alone);
    RUN(a_forked_prefix_gives_the_same_logits_as_recomputing_it);
    RUN(a_batch_the_pool_cannot_hold_is_refused_and_changes_nothing);
    RUN(pages_needed_counts_what_a_batch_takes);
    RUN(bad_batches_are_errors_that_name_the_problem);
    RUN(logits_do_not_depend_on_the_number_of_threads);
    RUN(grid_type_prompts_match_token_by_token_and_any_thread_count);
    nuri_model_free(model);
    TEST_DONE();
}
