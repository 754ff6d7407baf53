/*
 * test_noalloc.c: the forward pass does not allocate, nor does sampling under a grammar. Every
 * buffer a decode or sampling step needs is sized when the context or sampler is made (STYLE.md,
 * habit 8), so generating a token calls no allocator.
 *
 * The test counts calls to malloc / calloc / realloc by defining them here (the program's own
 * definitions win over the C library's, which they forward to). Under AddressSanitizer, which
 * replaces the allocator itself, the counting is left out and the test only runs the steps.
 */
#include "grammar/grammar.h"
#include "model/mkmodel.h"
#include "model/model.h"
#include "sample/sampler.h"
#include "test.h"
#include "tokenizer/tokenizer.h"

#include <stdatomic.h>
#include <unistd.h>

static atomic_long n_allocs;
static atomic_int counting;

#if !defined(__SANITIZE_ADDRESS__)
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t n);

void *malloc(size_t n)
{
    if (atomic_load(&counting)) atomic_fetch_add(&n_allocs, 1);
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t size)
{
    if (atomic_load(&counting)) atomic_fetch_add(&n_allocs, 1);
    return __libc_calloc(n, size);
}

void *realloc(void *p, size_t n)
{
    if (atomic_load(&counting)) atomic_fetch_add(&n_allocs, 1);
    return __libc_realloc(p, n);
}
#endif

/* Decodes two sequences together, then one, counting allocations; returns them (-1: an error). */
static long decode_allocs(const nuri_model *m)
{
    nuri_ctx *c;
    nuri_ctx_params cp = {.n_ctx = 256, .n_batch = 32, .n_threads = 2, .n_seq = 2, .n_logits = 4};
    if (nuri_ctx_new(m, &cp, &c) != NURI_OK) return -1;
    int32_t prompt[20];
    for (int i = 0; i < 20; i++) prompt[i] = 3 + i * 37;
    if (nuri_ctx_decode(c, prompt, 20, 0, false) != NURI_OK ||
        nuri_ctx_seq_fork(c, 0, 1, 20) != NURI_OK) {
        nuri_ctx_free(c);
        return -1;
    }

    atomic_store(&counting, 1);
    int32_t tok[2] = {5, 6}, pos[2] = {20, 20}, seq[2] = {0, 1};
    int8_t want[2] = {1, 1};
    for (int step = 0; step < 40; step++) { // two sequences decoding together, 40 steps
        nuri_batch b = {.n = 2, .token = tok, .pos = pos, .seq = seq, .logits = want};
        if (nuri_ctx_decode_batch(c, &b) != NURI_OK) break;
        pos[0]++, pos[1]++;
        tok[0] = (tok[0] * 31 + 7) % 4000 + 3, tok[1] = (tok[1] * 17 + 3) % 4000 + 3;
    }
    for (int i = 0; i < 10; i++) { // and the one-sequence path
        int32_t t = 9;
        if (nuri_ctx_decode(c, &t, 1, 60 + i, false) != NURI_OK) break;
    }
    atomic_store(&counting, 0);
    const bool ran = nuri_ctx_seq_len(c, 0) == 70 && nuri_ctx_seq_len(c, 1) == 60;
    nuri_ctx_free(c);
    return ran ? atomic_exchange(&n_allocs, 0) : -1;
}

TEST(decoding_tokens_allocates_nothing)
{
    nuri_model *m;
    REQUIRE(nuri_model_load("tests/data/models/qwen3-tiny-Q4_K.gguf", &m) == NURI_OK);
    const long n = decode_allocs(m);
    CHECKF(n == 0, "%ld allocations while decoding (-1: decoding failed)", n);
    nuri_model_free(m);
}

/* A mixture of experts (qwen2moe: router, grouping, experts and the shared expert) too. */
TEST(decoding_through_experts_allocates_nothing)
{
    char path[] = "/tmp/nuri-test-noalloc-XXXXXX";
    const int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    close(fd);
    nuri_mkmodel_params p = {.arch = "qwen2moe", .shape = "moe-tiny", .type = "Q4_K_M", .seed = 1};
    nuri_model *m = NULL;
    const bool made = nuri_mkmodel(&p, path) == NURI_OK && nuri_model_load(path, &m) == NURI_OK;
    unlink(path);
    REQUIRE(made);
    const long n = decode_allocs(m);
    CHECKF(n == 0, "%ld allocations while decoding (-1: decoding failed)", n);
    nuri_model_free(m);
}

/* Sampling under a grammar: the matcher's tables, its masks and the sampler's buffers are all
 * sized at creation. Small tables make the matcher empty and refill them while sampling, which
 * must not allocate either. The tokens walk through JSON (objects, strings, numbers). */
TEST(sampling_under_a_grammar_allocates_nothing)
{
    gguf_file *f;
    nuri_vocab *v;
    REQUIRE(gguf_open("tests/data/vocab/ggml-vocab-qwen2.gguf", &f) == NURI_OK);
    REQUIRE(nuri_vocab_load(f, &v) == NURI_OK);
    gguf_close(f);
    const int32_t n_vocab = 152064;
    nuri_token_trie *t;
    REQUIRE(nuri_token_trie_new(v, n_vocab, &t) == NURI_OK);
    size_t len;
    uint8_t *text = test_read_file("grammars/json.gbnf", &len);
    nuri_grammar *g;
    REQUIRE(text && nuri_grammar_parse((const char *)text, len, &g) == NURI_OK);
    free(text);
    nuri_sampler_params sp = nuri_sampler_params_default();
    sp.grammar = g;
    sp.grammar_tokens = t;
    sp.top_k = 40;
    nuri_sampler *s;
    REQUIRE(nuri_sampler_new(&sp, n_vocab, &s) == NURI_OK);
    float *logits = malloc(sizeof *logits * (size_t)n_vocab);
    REQUIRE(logits != NULL);
    // structure first: prefer short tokens without letters, so objects and numbers come up
    for (int32_t i = 0; i < n_vocab; i++) {
        size_t k;
        const char *p = nuri_token_trie_text(t, i, &k);
        bool letters = false;
        for (size_t j = 0; j < k; j++) letters |= (p[j] | 0x20) >= 'a' && (p[j] | 0x20) <= 'z';
        logits[i] = k > 0 && k <= 2 && !letters ? 5.0f : 0.0f;
    }
    atomic_store(&counting, 1);
    int sampled = 0, restarts = 0;
    for (int step = 0; step < 300; step++) {
        int32_t tok;
        if (nuri_sampler_sample(s, logits, &tok, NULL) != NURI_OK) break;
        if (nuri_sampler_accept(s, tok) != NURI_OK) break;
        sampled++;
        nuri_finish_reason fr = nuri_sampler_finish_reason(s, tok);
        if (fr == NURI_FINISH_STOP || fr == NURI_FINISH_GRAMMAR) {
            nuri_sampler_reset(s);
            restarts++;
        }
    }
    atomic_store(&counting, 0);
    CHECK(sampled == 300);
    CHECKF(atomic_load(&n_allocs) == 0, "%ld allocations while sampling", atomic_load(&n_allocs));
    printf("  300 tokens sampled under the JSON grammar, %d complete values\n", restarts);

    // a matcher with tiny tables, emptied and refilled as it goes: still no allocation
    nuri_grammar_matcher_params small = {.max_stacks = 128, .max_states = 16, .n_masks = 1};
    nuri_grammar_matcher *m;
    REQUIRE(nuri_grammar_matcher_new(g, t, &small, &m) == NURI_OK);
    const char *doc = "{\"a\": [1, 2.5, {\"b\": \"text \xed\x95\x9c\"}], \"c\": null}";
    int32_t *ids;
    size_t n_ids;
    REQUIRE(nuri_tokenize(v, doc, strlen(doc), 0, &ids, &n_ids) == NURI_OK);
    atomic_store(&n_allocs, 0);
    atomic_store(&counting, 1);
    bool ok = true;
    for (size_t i = 0; i < n_ids && ok; i++) {
        const uint32_t *mask;
        ok = nuri_grammar_matcher_mask(m, &mask) == NURI_OK &&
             nuri_grammar_matcher_accept_token(m, ids[i]) == NURI_OK;
    }
    atomic_store(&counting, 0);
    CHECK(ok && nuri_grammar_matcher_can_end(m));
    nuri_grammar_matcher_stats st;
    nuri_grammar_matcher_get_stats(m, &st);
    CHECK(st.flushes > 0);
    CHECKF(atomic_load(&n_allocs) == 0, "%ld allocations in the small matcher",
           atomic_load(&n_allocs));
    free(ids);
    nuri_grammar_matcher_free(m);
    nuri_sampler_free(s);
    nuri_grammar_free(g);
    nuri_token_trie_free(t);
    nuri_vocab_free(v);
    free(logits);
}

int main(void)
{
    RUN(decoding_tokens_allocates_nothing);
    RUN(decoding_through_experts_allocates_nothing);
    RUN(sampling_under_a_grammar_allocates_nothing);
    TEST_DONE();
}
