/*
 * test_noalloc.c: the forward pass does not allocate. Every buffer a decode step needs is sized
 * when the context is made (STYLE.md, habit 8), so generating a token calls no allocator.
 *
 * The test counts calls to malloc / calloc / realloc by defining them here (the program's own
 * definitions win over the C library's, which they forward to). Under AddressSanitizer, which
 * replaces the allocator itself, the counting is left out and the test only runs the steps.
 */
#include "model/model.h"
#include "test.h"

#include <stdatomic.h>

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

TEST(decoding_tokens_allocates_nothing)
{
    nuri_model *m;
    REQUIRE(nuri_model_load("tests/data/models/qwen3-tiny-Q4_K.gguf", &m) == NURI_OK);
    nuri_ctx *c;
    nuri_ctx_params cp = {.n_ctx = 256, .n_batch = 32, .n_threads = 2, .n_seq = 2, .n_logits = 4};
    REQUIRE(nuri_ctx_new(m, &cp, &c) == NURI_OK);
    int32_t prompt[20];
    for (int i = 0; i < 20; i++) prompt[i] = 3 + i * 37;
    REQUIRE(nuri_ctx_decode(c, prompt, 20, 0, false) == NURI_OK);
    REQUIRE(nuri_ctx_seq_fork(c, 0, 1, 20) == NURI_OK);

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
    CHECK(nuri_ctx_seq_len(c, 0) == 70 && nuri_ctx_seq_len(c, 1) == 60);
    CHECKF(atomic_load(&n_allocs) == 0, "%ld allocations while decoding", atomic_load(&n_allocs));
    nuri_ctx_free(c);
    nuri_model_free(m);
}

int main(void)
{
    RUN(decoding_tokens_allocates_nothing);
    TEST_DONE();
}
