/*
 * model_fixture.h: what the architecture tests (test_moe, test_gemma, test_gptoss, test_deepseek2,
 * test_qwen35) share: a changed copy of a model file loaded from memory, to check that nuri refuses
 * what is missing by name; a prompt; and a prompt's logits run as one batch or token by token, for
 * the batch- and thread-invariance checks. Static inline functions, included by each test.
 */
#ifndef NURI_TESTS_MODEL_FIXTURE_H
#define NURI_TESTS_MODEL_FIXTURE_H

#include "gguf/gguf.h"
#include "kernels/types.h"
#include "model/model.h"
#include "test.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct fixture_change {
    const char *drop_tensor;       // left out; "+NAME": NAME added instead (8 F32 zeros)
    const char *drop_key;          // left out
    const char *str_key, *str_val; // set, replacing the file's value
    const char *u32_key;           // set, replacing the file's value
    uint32_t u32_val;
} fixture_change;

/* Loads a copy of `from` with ch's changes (NULL: none) from memory. With m_out, the model is the
 * caller's when it loads (NULL otherwise); without, it is freed. */
static inline nuri_status fixture_load_changed(const char *from, const fixture_change *ch,
                                               nuri_model **m_out)
{
    static const float zeros[8];
    const fixture_change none = {0}, *c = ch ? ch : &none;
    gguf_file *f;
    NURI_ASSERT(gguf_open(from, &f) == NURI_OK);
    gguf_writer *w;
    NURI_ASSERT(gguf_writer_new(&w) == NURI_OK);
    for (uint64_t i = 0; i < gguf_n_kv(f); i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        gguf_str k = gguf_kv_key(kv);
        if ((c->drop_key && gguf_str_eq(k, c->drop_key)) ||
            (c->str_key && gguf_str_eq(k, c->str_key)) ||
            (c->u32_key && gguf_str_eq(k, c->u32_key)))
            continue;
        gguf_writer_add_kv(w, kv);
    }
    if (c->str_key) NURI_ASSERT(gguf_writer_add_str(w, c->str_key, c->str_val) == NURI_OK);
    if (c->u32_key) NURI_ASSERT(gguf_writer_add_u32(w, c->u32_key, c->u32_val) == NURI_OK);
    if (c->drop_tensor && c->drop_tensor[0] == '+') {
        const int64_t ne[1] = {8};
        NURI_ASSERT(gguf_writer_add_tensor(w, c->drop_tensor + 1, NURI_TYPE_F32, 1, ne, zeros) ==
                    NURI_OK);
    }
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        if (c->drop_tensor && !strcmp(name, c->drop_tensor)) continue;
        int64_t ne[4] = {t->ne[0], t->ne[1], t->ne[2], t->ne[3]};
        gguf_writer_add_tensor(w, name, t->type, t->n_dims, ne, t->data);
    }
    void *bytes;
    size_t size;
    NURI_ASSERT(gguf_writer_write_memory(w, &bytes, &size) == NURI_OK);
    gguf_writer_free(w);
    gguf_close(f);
    gguf_file *g;
    nuri_status s = gguf_open_memory(bytes, size, &g);
    nuri_model *m = NULL;
    if (s == NURI_OK) s = nuri_model_from_gguf(g, &m);
    if (m_out)
        *m_out = m;
    else
        nuri_model_free(m);
    free(bytes);
    return s;
}

/* s is an error whose message names `words`. */
static inline void fixture_expect_refused(nuri_status s, const char *words)
{
    CHECKF(s != NURI_OK, "loaded; expected an error naming '%s'", words);
    CHECKF(strstr(nuri_last_error(), words) != NULL, "message '%s' lacks '%s'", nuri_last_error(),
           words);
}

/* n token ids in 3..4002, a different sequence per salt. */
static inline void fixture_prompt(int32_t *toks, int n, int salt)
{
    for (int32_t i = 0; i < n; i++) toks[i] = 3 + (salt * 7919 + i * 104729 + 17) % 4000;
}

/* The logits of every position of toks[0..n) (n <= 64): the whole prompt as one batch, or token by
 * token; a new array of n x n_vocab floats (free()), NULL on an error. */
static inline float *fixture_logits(nuri_model *m, const int32_t *toks, int32_t n, bool one_batch,
                                    int threads)
{
    const size_t nv = (size_t)m->hp.n_vocab;
    nuri_ctx *c;
    nuri_ctx_params cp = {.n_ctx = 64, .n_batch = 64, .n_threads = threads, .n_logits = n};
    if (n > 64 || nuri_ctx_new(m, &cp, &c) != NURI_OK) return NULL;
    float *out = malloc(sizeof(float) * nv * (size_t)n);
    bool ok = out != NULL;
    if (one_batch) {
        ok = ok && nuri_ctx_decode(c, toks, n, 0, true) == NURI_OK;
        for (int32_t i = 0; ok && i < n; i++)
            memcpy(out + i * nv, nuri_ctx_logits(c, i), sizeof(float) * nv);
    } else {
        for (int32_t i = 0; ok && i < n; i++) {
            ok = nuri_ctx_decode(c, toks + i, 1, i, false) == NURI_OK;
            if (ok) memcpy(out + i * nv, nuri_ctx_logits(c, 0), sizeof(float) * nv);
        }
    }
    nuri_ctx_free(c);
    if (!ok) {
        free(out);
        return NULL;
    }
    return out;
}

/* Three prompts (7, 30 and 19 tokens) prefilled together in one batch and decoded together for 4
 * steps, against each run alone: the logits must be the same, bit for bit. */
static inline void fixture_batched_against_alone(nuri_model *m)
{
    enum { NS = 3, STEPS = 4 };
    const int32_t len[NS] = {7, 30, 19};
    const size_t nv = (size_t)m->hp.n_vocab;
    float *together = malloc(sizeof(float) * nv * NS * (STEPS + 1));
    float *alone = malloc(sizeof(float) * nv * NS * (STEPS + 1));
    REQUIRE(together && alone);
    int32_t toks[NS][40];
    for (int s = 0; s < NS; s++) fixture_prompt(toks[s], 40, s + 1);
    nuri_ctx *c;
    nuri_ctx_params cp = {.n_ctx = 256, .n_batch = 64, .n_threads = 2, .n_logits = NS, .n_seq = NS};
    REQUIRE(nuri_ctx_new(m, &cp, &c) == NURI_OK);
    int32_t bt[64], bp[64], bs[64];
    int8_t bl[64];
    int32_t n = 0;
    for (int s = 0; s < NS; s++)
        for (int32_t i = 0; i < len[s]; i++, n++)
            bt[n] = toks[s][i], bp[n] = i, bs[n] = s, bl[n] = i == len[s] - 1;
    for (int step = 0; step <= STEPS; step++) {
        nuri_batch b = {.n = n, .token = bt, .pos = bp, .seq = bs, .logits = bl};
        REQUIRE(nuri_ctx_decode_batch(c, &b) == NURI_OK);
        for (int s = 0; s < NS; s++)
            memcpy(together + ((size_t)step * NS + s) * nv, nuri_ctx_logits(c, s),
                   sizeof(float) * nv);
        n = 0;
        for (int s = 0; s < NS; s++, n++)
            bt[n] = toks[s][len[s] + step], bp[n] = len[s] + step, bs[n] = s, bl[n] = 1;
    }
    nuri_ctx_free(c);
    for (int s = 0; s < NS; s++) {
        nuri_ctx_params cp1 = {.n_ctx = 256, .n_batch = 64, .n_threads = 1};
        REQUIRE(nuri_ctx_new(m, &cp1, &c) == NURI_OK);
        REQUIRE(nuri_ctx_decode(c, toks[s], len[s], 0, false) == NURI_OK);
        memcpy(alone + (size_t)s * nv, nuri_ctx_logits(c, 0), sizeof(float) * nv);
        for (int step = 1; step <= STEPS; step++) {
            REQUIRE(nuri_ctx_decode(c, &toks[s][len[s] + step - 1], 1, len[s] + step - 1, false) ==
                    NURI_OK);
            memcpy(alone + ((size_t)step * NS + s) * nv, nuri_ctx_logits(c, 0), sizeof(float) * nv);
        }
        nuri_ctx_free(c);
    }
    CHECK(memcmp(together, alone, sizeof(float) * nv * NS * (STEPS + 1)) == 0);
    free(together);
    free(alone);
}

#endif
