/*
 * test_api.c: the public C API (include/nuri.h) as a library user sees it: this file includes
 * nothing of src/. The rules the header promises: parameter structs that survive ABI growth,
 * loading progress and cancellation, vocabulary-only models, errors instead of crashes for bad
 * ids, rows and sequences, grammar-constrained generation, and batch invariance through the API.
 * tests/install.test.sh checks the same API from an installed tree, against `nuri run`.
 */
#include "nuri.h"
#include "test.h"

#include <pthread.h>

#define MODEL "tests/data/models/llama-tiny-Q8_0.gguf"
#define VOCAB_BPE "tests/data/vocab/ggml-vocab-llama-bpe.gguf"

TEST(version_matches_header)
{
    CHECK(!strcmp(nuri_version(), NURI_VERSION));
    CHECK(!strcmp(nuri_status_name(NURI_ERR_CANCELLED), "cancelled"));
}

typedef struct {
    int calls;
    float last;
    int monotone;
    int cancel_at; // call number that returns false; 0: never
} progress_log;

static bool log_progress(float f, void *ud)
{
    progress_log *p = ud;
    p->calls++;
    if (f < p->last) p->monotone = 0;
    p->last = f;
    return p->cancel_at == 0 || p->calls < p->cancel_at;
}

TEST(progress_runs_from_0_to_1)
{
    progress_log log = {.monotone = 1};
    nuri_load_params lp;
    nuri_load_params_init(&lp, sizeof lp);
    lp.progress = log_progress;
    lp.progress_user_data = &log;
    nuri_model *m;
    REQUIRE(nuri_model_open(MODEL, &lp, &m) == NURI_OK);
    CHECK(log.calls >= 2 && log.monotone && log.last == 1.0f);
    nuri_model_close(m);
}

TEST(progress_callback_cancels_loading)
{
    progress_log log = {.monotone = 1, .cancel_at = 1};
    nuri_load_params lp;
    nuri_load_params_init(&lp, sizeof lp);
    lp.progress = log_progress;
    lp.progress_user_data = &log;
    nuri_model *m = (nuri_model *)&log;
    CHECK(nuri_model_open(MODEL, &lp, &m) == NURI_ERR_CANCELLED);
    CHECK(m == NULL && log.calls == 1);
    CHECK(strstr(nuri_last_error(), "cancelled") != NULL);
}

/* A caller built with a newer header: its struct is longer than ours. */
typedef struct {
    nuri_context_params known;
    int32_t newer_field;
} newer_context_params;

TEST(params_from_a_newer_header_are_refused_only_when_set)
{
    nuri_model *m;
    REQUIRE(nuri_model_open(MODEL, NULL, &m) == NURI_OK);
    newer_context_params p;
    nuri_context_params_init(&p.known, sizeof p);
    CHECK(p.known.struct_size == sizeof p && p.newer_field == 0); // init zeroes what it lacks
    p.known.n_ctx = 64;
    nuri_context *c = NULL;
    CHECK(nuri_context_new(m, &p.known, &c) == NURI_OK); // unknown but zero: fine
    nuri_context_free(c);
    p.newer_field = 1;
    c = NULL;
    CHECK(nuri_context_new(m, &p.known, &c) == NURI_ERR_UNSUPPORTED && c == NULL);
    CHECK(strstr(nuri_last_error(), "nuri_context_params") != NULL);
    nuri_context_params bad = {0}; // never initialized: struct_size 0
    CHECK(nuri_context_new(m, &bad, &c) == NURI_ERR_INVALID_ARG);
    nuri_model_close(m);
}

/* A caller built with an older header: only the first field after struct_size. */
typedef struct {
    size_t struct_size;
    float temperature;
} older_sampling_params;

TEST(params_from_an_older_header_keep_the_defaults)
{
    nuri_model *m;
    REQUIRE(nuri_model_open(MODEL, NULL, &m) == NURI_OK);
    older_sampling_params old = {.struct_size = sizeof old, .temperature = 0.0f};
    nuri_sampler_chain *s;
    REQUIRE(nuri_sampler_chain_new(m, (const nuri_sampling_params *)&old, &s) == NURI_OK);
    // greedy: the largest logit wins
    float *logits = calloc((size_t)nuri_model_n_vocab(m), sizeof *logits);
    REQUIRE(logits);
    logits[7] = 5.0f;
    int32_t tok = -1;
    CHECK(nuri_sampler_chain_sample(s, logits, &tok) == NURI_OK && tok == 7);
    free(logits);
    nuri_sampler_chain_free(s);
    nuri_model_close(m);
}

TEST(vocab_only_models_tokenize_but_do_not_run)
{
    nuri_load_params lp;
    nuri_load_params_init(&lp, sizeof lp);
    lp.vocab_only = true;
    progress_log log = {.monotone = 1};
    lp.progress = log_progress;
    lp.progress_user_data = &log;
    nuri_model *m;
    REQUIRE(nuri_model_open(VOCAB_BPE, &lp, &m) == NURI_OK);
    CHECK(log.calls == 2 && log.last == 1.0f); // its two ends
    // Llama 3's tokenizer: "Hello" and " world"
    const char *text = "Hello world";
    int32_t *ids;
    size_t n;
    REQUIRE(nuri_model_tokenize(m, text, strlen(text), 0, &ids, &n) == NURI_OK);
    CHECK(n == 2 && ids[0] == 9906 && ids[1] == 1917);
    char *back;
    size_t len;
    CHECK(nuri_model_detokenize(m, ids, n, 0, &back, &len) == NURI_OK && len == strlen(text) &&
          !strcmp(back, text));
    nuri_free(back);
    nuri_free(ids);
    nuri_context *c = NULL;
    CHECK(nuri_context_new(m, NULL, &c) == NURI_ERR_INVALID_ARG && c == NULL);
    const char *v;
    size_t vlen;
    CHECK(nuri_model_meta_string(m, "tokenizer.ggml.model", &v, &vlen) == NURI_OK && vlen == 4 &&
          !memcmp(v, "gpt2", 4));
    CHECK(nuri_model_meta_string(m, "no.such.key", &v, &vlen) == NURI_ERR_NOT_FOUND && !v);
    CHECK(nuri_model_meta_string(m, "tokenizer.ggml.tokens", &v, &vlen) == NURI_ERR_INVALID_ARG);
    nuri_model_close(m);
}

TEST(bad_ids_rows_and_sequences_are_errors)
{
    nuri_model *m;
    REQUIRE(nuri_model_open(MODEL, NULL, &m) == NURI_OK);
    const char *piece;
    size_t len;
    CHECK(nuri_model_token_piece(m, nuri_model_n_vocab(m), 0, &piece, &len) ==
          NURI_ERR_INVALID_ARG);
    int32_t bad = -3;
    char *text;
    CHECK(nuri_model_detokenize(m, &bad, 1, 0, &text, &len) == NURI_ERR_INVALID_ARG);
    nuri_context_params cp;
    nuri_context_params_init(&cp, sizeof cp);
    cp.n_ctx = 64;
    cp.n_seq = 2;
    nuri_context *c;
    REQUIRE(nuri_context_new(m, &cp, &c) == NURI_OK);
    CHECK(nuri_context_logits(c, 0) == NULL); // nothing decoded yet
    int32_t toks[3] = {1, 2, 3};
    CHECK(nuri_context_decode_seq(c, 2, toks, 3, 0, false) == NURI_ERR_INVALID_ARG);
    CHECK(nuri_context_decode_seq(c, 0, toks, 3, 0, false) == NURI_OK);
    CHECK(nuri_context_logits(c, 0) != NULL && nuri_context_logits(c, 1) == NULL);
    CHECK(nuri_context_seq_len(c, 0) == 3 && nuri_context_seq_len(c, 5) == -1);
    CHECK(nuri_context_seq_truncate(c, 0, 4) == NURI_ERR_INVALID_ARG);
    CHECK(nuri_context_seq_truncate(c, 0, 1) == NURI_OK && nuri_context_seq_len(c, 0) == 1);
    int32_t oob = nuri_model_n_vocab(m);
    CHECK(nuri_context_decode_seq(c, 0, &oob, 1, 1, false) == NURI_ERR_INVALID_ARG);
    CHECK(nuri_context_logits(c, 0) == NULL); // a failed decode leaves no rows
    // the KV cache's type: a known name runs, another is refused naming the field
    nuri_context *cq;
    cp.kv_type_k = "q8_0";
    cp.kv_type_v = "q4_0";
    REQUIRE(nuri_context_new(m, &cp, &cq) == NURI_OK);
    CHECK(nuri_context_decode_seq(cq, 0, toks, 3, 0, false) == NURI_OK);
    nuri_context_free(cq);
    cp.kv_type_v = "q8";
    CHECK(nuri_context_new(m, &cp, &cq) == NURI_ERR_INVALID_ARG);
    CHECK(strstr(nuri_last_error(), "kv_type_v") && strstr(nuri_last_error(), "'q8'"));
    const char *role = "wizard", *content = "hi";
    nuri_chat *chat;
    REQUIRE(nuri_chat_new(m, NULL, 0, &chat) == NURI_OK);
    CHECK(nuri_chat_apply(chat, &role, &content, 1, true, &text, &len) == NURI_ERR_INVALID_ARG);
    nuri_chat_free(chat);
    nuri_context_free(c);
    nuri_model_close(m);
}

TEST(one_sequence_batched_with_another_gets_the_same_logits)
{
    nuri_model *m;
    REQUIRE(nuri_model_open(MODEL, NULL, &m) == NURI_OK);
    nuri_context_params cp;
    nuri_context_params_init(&cp, sizeof cp);
    cp.n_ctx = 128;
    cp.n_seq = 2;
    cp.n_logits = 2;
    nuri_context *c;
    REQUIRE(nuri_context_new(m, &cp, &c) == NURI_OK);
    int32_t a[4] = {1, 50, 60, 70};
    REQUIRE(nuri_context_decode_seq(c, 0, a, 4, 0, false) == NURI_OK);
    int32_t n_vocab = nuri_model_n_vocab(m);
    float *alone = malloc((size_t)n_vocab * sizeof *alone);
    REQUIRE(alone);
    memcpy(alone, nuri_context_logits(c, 0), (size_t)n_vocab * sizeof *alone);
    // sequence 1 gets the same tokens, in one batch with two more tokens of sequence 0
    int32_t tok[6] = {1, 50, 60, 70, 80, 90}, pos[6] = {0, 1, 2, 3, 6, 7},
            seq[6] = {1, 1, 1, 1, 0, 0};
    int8_t lg[6] = {0, 0, 0, 1, 0, 1};
    // sequence 0 holds 4 tokens: writing at 6 would leave a gap
    CHECK(nuri_context_decode(c, 6, tok, pos, seq, lg) == NURI_ERR_INVALID_ARG);
    CHECK(nuri_context_seq_len(c, 0) == 4 && nuri_context_seq_len(c, 1) == 0);
    pos[4] = 4;
    pos[5] = 5;
    REQUIRE(nuri_context_decode(c, 6, tok, pos, seq, lg) == NURI_OK);
    CHECK(!memcmp(alone, nuri_context_logits(c, 0), (size_t)n_vocab * sizeof *alone));
    CHECK(nuri_context_logits(c, 1) != NULL && nuri_context_logits(c, 2) == NULL);
    free(alone);
    nuri_context_free(c);
    nuri_model_close(m);
}

typedef struct {
    char text[256];
    size_t len;
    int calls, stop_after;
} collect;

static bool collect_text(int32_t token, const char *text, size_t len, void *ud)
{
    collect *c = ud;
    if (c->len + len < sizeof c->text) {
        memcpy(c->text + c->len, text, len);
        c->len += len;
    }
    if (token >= 0) c->calls++;
    return c->stop_after == 0 || c->calls < c->stop_after;
}

TEST(generate_follows_a_grammar_and_ends_where_it_is_complete)
{
    nuri_model *m;
    REQUIRE(nuri_model_open(MODEL, NULL, &m) == NURI_OK);
    nuri_sampling_params sp;
    nuri_sampling_params_init(&sp, sizeof sp);
    sp.temperature = 0.0f;
    sp.grammar = "root ::= \"yes\" | \"no\"";
    sp.json_schema = "{}";
    nuri_sampler_chain *s = NULL;
    CHECK(nuri_sampler_chain_new(m, &sp, &s) == NURI_ERR_INVALID_ARG && s == NULL);
    sp.json_schema = NULL;
    REQUIRE(nuri_sampler_chain_new(m, &sp, &s) == NURI_OK);
    nuri_context_params cp;
    nuri_context_params_init(&cp, sizeof cp);
    cp.n_ctx = 64;
    nuri_context *c;
    REQUIRE(nuri_context_new(m, &cp, &c) == NURI_OK);
    int32_t *prompt;
    size_t n;
    REQUIRE(nuri_model_tokenize(m, "answer:", 7, NURI_TOKENIZE_ADD_SPECIAL, &prompt, &n) ==
            NURI_OK);
    collect got = {0};
    nuri_generate_params gp;
    nuri_generate_params_init(&gp, sizeof gp);
    gp.max_tokens = 20;
    gp.on_token = collect_text;
    gp.user_data = &got;
    int32_t n_gen = 0;
    nuri_end_reason why = NURI_END_LENGTH;
    REQUIRE(nuri_generate(c, s, prompt, n, &gp, &n_gen, &why) == NURI_OK);
    CHECK(why == NURI_END_GRAMMAR);
    got.text[got.len] = 0;
    CHECKF(!strcmp(got.text, "yes") || !strcmp(got.text, "no"), "got '%s'", got.text);
    CHECK(n_gen == got.calls && n_gen >= 1 && n_gen < 20 && nuri_sampler_chain_can_end(s));

    sp.grammar = "root ::= (";
    nuri_sampler_chain *bad = NULL;
    CHECK(nuri_sampler_chain_new(m, &sp, &bad) != NURI_OK && bad == NULL);
    CHECK(strstr(nuri_last_error(), "grammar") != NULL);

    // a callback that says stop after the first token
    nuri_sampler_chain_free(s);
    sp.grammar = NULL;
    REQUIRE(nuri_sampler_chain_new(m, &sp, &s) == NURI_OK);
    collect one = {.stop_after = 1};
    gp.user_data = &one;
    REQUIRE(nuri_generate(c, s, prompt, n, &gp, &n_gen, &why) == NURI_OK);
    CHECK(n_gen == 1 && one.calls == 1 && why == NURI_END_CALLBACK);
    // and one that lets it run to max_tokens
    collect all = {0};
    gp.user_data = &all;
    gp.max_tokens = 5;
    REQUIRE(nuri_generate(c, s, prompt, n, &gp, &n_gen, &why) == NURI_OK);
    CHECK((n_gen == 5 && why == NURI_END_LENGTH) || (n_gen < 5 && why == NURI_END_TOKEN));
    nuri_free(prompt);
    nuri_sampler_chain_free(s);
    nuri_context_free(c);
    nuri_model_close(m);
}

/* What the header promises about threads: contexts and sampler chains of one shared model run in
 * parallel, each thread with its own. */
typedef struct {
    nuri_model *m;
    collect out;
    nuri_status st;
} greedy_job;

static void *greedy_run(void *arg)
{
    greedy_job *j = arg;
    nuri_context *c = NULL;
    nuri_sampler_chain *s = NULL;
    int32_t *ids = NULL;
    size_t n;
    nuri_sampling_params sp;
    nuri_sampling_params_init(&sp, sizeof sp);
    sp.temperature = 0.0f;
    nuri_generate_params gp;
    nuri_generate_params_init(&gp, sizeof gp);
    gp.max_tokens = 24;
    gp.on_token = collect_text;
    gp.user_data = &j->out;
    if ((j->st = nuri_model_tokenize(j->m, "the cat", 7, NURI_TOKENIZE_ADD_SPECIAL, &ids, &n)) ==
            NURI_OK &&
        (j->st = nuri_context_new(j->m, NULL, &c)) == NURI_OK &&
        (j->st = nuri_sampler_chain_new(j->m, &sp, &s)) == NURI_OK)
        j->st = nuri_generate(c, s, ids, n, &gp, NULL, NULL);
    nuri_free(ids);
    nuri_sampler_chain_free(s);
    nuri_context_free(c);
    return NULL;
}

TEST(contexts_of_one_model_run_in_parallel_threads)
{
    nuri_model *m;
    REQUIRE(nuri_model_open(MODEL, NULL, &m) == NURI_OK);
    greedy_job alone = {.m = m};
    greedy_run(&alone);
    REQUIRE(alone.st == NURI_OK && alone.out.len > 0);
    greedy_job jobs[3] = {{.m = m}, {.m = m}, {.m = m}};
    pthread_t t[3];
    for (int i = 0; i < 3; i++) REQUIRE(pthread_create(&t[i], NULL, greedy_run, &jobs[i]) == 0);
    for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < 3; i++)
        CHECK(jobs[i].st == NURI_OK && jobs[i].out.len == alone.out.len &&
              !memcmp(jobs[i].out.text, alone.out.text, alone.out.len));
    nuri_model_close(m);
}

int main(void)
{
    RUN(version_matches_header);
    RUN(progress_runs_from_0_to_1);
    RUN(progress_callback_cancels_loading);
    RUN(params_from_a_newer_header_are_refused_only_when_set);
    RUN(params_from_an_older_header_keep_the_defaults);
    RUN(vocab_only_models_tokenize_but_do_not_run);
    RUN(bad_ids_rows_and_sequences_are_errors);
    RUN(one_sequence_batched_with_another_gets_the_same_logits);
    RUN(generate_follows_a_grammar_and_ends_where_it_is_complete);
    RUN(contexts_of_one_model_run_in_parallel_threads);
    TEST_DONE();
}
