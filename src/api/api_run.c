/*
 * api_run.c: the public API's contexts, sampler chains and the generation loop (include/nuri.h).
 *
 * Contexts wrap model.h's nuri_ctx and remember how many logits rows the last decode left, so a
 * caller asking for a row that is not there gets NULL instead of stale memory. Sampler chains
 * wrap sampler.h's nuri_sampler with the grammar compiled from text and the vocabulary's token
 * trie, which the chain owns. nuri_generate is `nuri run`'s loop without prompt lookup.
 */
#include "api/api_internal.h"
#include "base/status.h"
#include "chat/conversation.h"
#include "grammar/grammar.h"
#include "grammar/json_schema.h"
#include "model/model.h"
#include "sample/sampler.h"
#include "tokenizer/tokenizer.h"

#include <stdlib.h>
#include <string.h>

/* ============================== contexts ============================== */

struct nuri_context {
    nuri_ctx *ctx;
    const nuri_model *m;
    int32_t n_rows;   // logits rows the last decode left (0: none yet, or it failed)
    int32_t n_logits; // rows it may keep
};

void nuri_context_params_init(nuri_context_params *p, size_t struct_size)
{
    if (!p || struct_size < sizeof(size_t)) return;
    nuri_context_params d = {.struct_size = sizeof d};
    api_params_init(p, struct_size, &d, sizeof d);
}

nuri_status nuri_context_new(const nuri_model *m, const nuri_context_params *params,
                             nuri_context **out)
{
    *out = NULL;
    nuri_context_params p;
    nuri_context_params_init(&p, sizeof p);
    nuri_status s = api_params_copy(&p, sizeof p, params, "nuri_context_params");
    if (s != NURI_OK) return s;
    if (p.n_ctx < 0 || p.n_batch < 0 || p.n_threads < 0 || p.n_logits < 0 || p.n_seq < 0)
        return nuri_error(NURI_ERR_INVALID_ARG, "nuri_context_params: negative %s",
                          p.n_ctx < 0       ? "n_ctx"
                          : p.n_batch < 0   ? "n_batch"
                          : p.n_threads < 0 ? "n_threads"
                          : p.n_logits < 0  ? "n_logits"
                                            : "n_seq");
    if (!m->layers)
        return nuri_error(NURI_ERR_INVALID_ARG,
                          "nuri_context_new: the model was opened with vocab_only");
    nuri_context *c = calloc(1, sizeof *c);
    if (!c) return nuri_error(NURI_ERR_NOMEM, "out of memory");
    nuri_ctx_params cp = {.n_ctx = p.n_ctx,
                          .n_batch = p.n_batch,
                          .n_threads = p.n_threads,
                          .n_logits = p.n_logits,
                          .n_seq = p.n_seq};
    for (int i = 0; i < 2; i++) {
        const char *name = i ? p.kv_type_v : p.kv_type_k;
        if (name && nuri_kv_type_parse(name, i ? &cp.kv_type_v : &cp.kv_type_k) != NURI_OK) {
            free(c);
            return nuri_error(NURI_ERR_INVALID_ARG,
                              "nuri_context_params.%s: '%s' is not one of f16, q8_0, q4_0",
                              i ? "kv_type_v" : "kv_type_k", name);
        }
    }
    s = nuri_ctx_new(m, &cp, &c->ctx);
    if (s != NURI_OK) {
        free(c);
        return s;
    }
    c->m = m;
    c->n_logits = p.n_logits ? p.n_logits : 1;
    *out = c;
    return NURI_OK;
}

void nuri_context_free(nuri_context *c)
{
    if (!c) return;
    nuri_ctx_free(c->ctx);
    free(c);
}

int32_t nuri_context_n_ctx(const nuri_context *c)
{
    return nuri_ctx_n_ctx(c->ctx);
}

nuri_status nuri_context_decode(nuri_context *c, int32_t n, const int32_t *token,
                                const int32_t *pos, const int32_t *seq, const int8_t *logits)
{
    if (n <= 0 || !token || !pos)
        return nuri_error(NURI_ERR_INVALID_ARG, "nuri_context_decode: %s",
                          n <= 0 ? "no tokens" : "token or pos is NULL");
    int32_t *zeros = NULL;
    int8_t *last = NULL;
    if (!seq && !(seq = zeros = calloc((size_t)n, sizeof *zeros)))
        return nuri_error(NURI_ERR_NOMEM, "out of memory");
    if (!logits) {
        if (!(last = calloc((size_t)n, 1))) {
            free(zeros);
            return nuri_error(NURI_ERR_NOMEM, "out of memory");
        }
        last[n - 1] = 1;
        logits = last;
    }
    int32_t rows = 0;
    for (int32_t i = 0; i < n; i++) rows += logits[i] != 0;
    nuri_batch b = {.n = n, .token = token, .pos = pos, .seq = seq, .logits = logits};
    c->n_rows = 0;
    nuri_status s = nuri_ctx_decode_batch(c->ctx, &b);
    if (s == NURI_OK) c->n_rows = rows;
    free(zeros);
    free(last);
    return s;
}

nuri_status nuri_context_decode_seq(nuri_context *c, int32_t seq, const int32_t *tokens, int32_t n,
                                    int32_t pos0, bool all_logits)
{
    if (n <= 0 || !tokens)
        return nuri_error(NURI_ERR_INVALID_ARG, "nuri_context_decode_seq: no tokens");
    if (seq == 0) { // the module's one-sequence path: no per-token arrays
        c->n_rows = 0;
        nuri_status s = nuri_ctx_decode(c->ctx, tokens, n, pos0, all_logits);
        if (s == NURI_OK) c->n_rows = all_logits ? n : 1;
        return s;
    }
    int32_t *pos = malloc((size_t)n * sizeof *pos), *sq = malloc((size_t)n * sizeof *sq);
    int8_t *lg = calloc((size_t)n, 1);
    nuri_status s;
    if (!pos || !sq || !lg) {
        s = nuri_error(NURI_ERR_NOMEM, "out of memory");
    } else {
        for (int32_t i = 0; i < n; i++) {
            pos[i] = pos0 + i;
            sq[i] = seq;
            lg[i] = all_logits || i == n - 1;
        }
        s = nuri_context_decode(c, n, tokens, pos, sq, lg);
    }
    free(pos);
    free(sq);
    free(lg);
    return s;
}

const float *nuri_context_logits(const nuri_context *c, int32_t row)
{
    if (row < 0 || row >= c->n_rows) return NULL;
    return nuri_ctx_logits(c->ctx, row);
}

static nuri_status check_seq(const nuri_context *c, int32_t seq)
{
    if (seq < 0 || seq >= nuri_ctx_n_seq(c->ctx))
        return nuri_error(NURI_ERR_INVALID_ARG, "sequence %d does not exist (0..%d)", seq,
                          nuri_ctx_n_seq(c->ctx) - 1);
    return NURI_OK;
}

int32_t nuri_context_seq_len(const nuri_context *c, int32_t seq)
{
    if (check_seq(c, seq) != NURI_OK) return -1;
    return nuri_ctx_seq_len(c->ctx, seq);
}

nuri_status nuri_context_seq_clear(nuri_context *c, int32_t seq)
{
    nuri_status s = check_seq(c, seq);
    if (s != NURI_OK) return s;
    nuri_ctx_seq_clear(c->ctx, seq);
    return NURI_OK;
}

nuri_status nuri_context_seq_truncate(nuri_context *c, int32_t seq, int32_t n)
{
    nuri_status s = check_seq(c, seq);
    if (s != NURI_OK) return s;
    if (n < 0 || n > nuri_ctx_seq_len(c->ctx, seq))
        return nuri_error(NURI_ERR_INVALID_ARG,
                          "nuri_context_seq_truncate: %d is not within sequence %d's %d tokens", n,
                          seq, nuri_ctx_seq_len(c->ctx, seq));
    if (!nuri_ctx_seq_reusable(c->ctx, seq, n))
        return nuri_error(NURI_ERR_UNSUPPORTED,
                          "nuri_context_seq_truncate: sequence %d's recurrent state cannot go back "
                          "to %d tokens (clear it, truncating to 0, and decode again)",
                          seq, n);
    nuri_ctx_seq_truncate(c->ctx, seq, n);
    return NURI_OK;
}

nuri_status nuri_context_seq_fork(nuri_context *c, int32_t src, int32_t dst, int32_t n)
{
    nuri_status s = check_seq(c, src);
    if (s == NURI_OK) s = check_seq(c, dst);
    if (s != NURI_OK) return s;
    return nuri_ctx_seq_fork(c->ctx, src, dst, n);
}

/* ============================== sampler chains ============================== */

struct nuri_sampler_chain {
    nuri_sampler *smp;
    nuri_token_trie *trie; // the vocabulary's texts, with a grammar; borrowed by smp
    bool grammar;
};

void nuri_sampling_params_init(nuri_sampling_params *p, size_t struct_size)
{
    if (!p || struct_size < sizeof(size_t)) return;
    nuri_sampler_params n = nuri_sampler_params_default();
    nuri_sampling_params d = {.struct_size = sizeof d,
                              .temperature = n.temperature,
                              .top_k = n.top_k,
                              .top_p = n.top_p,
                              .min_p = n.min_p,
                              .repetition_penalty = n.repetition_penalty,
                              .frequency_penalty = n.frequency_penalty,
                              .presence_penalty = n.presence_penalty,
                              .penalty_last_n = n.penalty_last_n,
                              .seed = n.seed};
    api_params_init(p, struct_size, &d, sizeof d);
}

nuri_status nuri_sampler_chain_new(const nuri_model *m, const nuri_sampling_params *params,
                                   nuri_sampler_chain **out)
{
    *out = NULL;
    nuri_sampling_params p;
    nuri_sampling_params_init(&p, sizeof p);
    nuri_status s = api_params_copy(&p, sizeof p, params, "nuri_sampling_params");
    if (s != NURI_OK) return s;
    if (p.grammar && p.json_schema)
        return nuri_error(NURI_ERR_INVALID_ARG,
                          "nuri_sampling_params: grammar and json_schema are both set; give one");
    nuri_sampler_params sp = nuri_sampler_params_default();
    sp.temperature = p.temperature;
    sp.top_k = p.top_k;
    sp.top_p = p.top_p;
    sp.min_p = p.min_p;
    sp.repetition_penalty = p.repetition_penalty;
    sp.frequency_penalty = p.frequency_penalty;
    sp.presence_penalty = p.presence_penalty;
    sp.penalty_last_n = p.penalty_last_n;
    sp.seed = p.seed;
    nuri_sampler_chain *c = calloc(1, sizeof *c);
    if (!c) return nuri_error(NURI_ERR_NOMEM, "out of memory");
    nuri_grammar *g = NULL;
    if (p.grammar) {
        s = nuri_grammar_parse(p.grammar, strlen(p.grammar), &g);
        if (s != NURI_OK) s = nuri_error_wrap(s, "grammar");
    } else if (p.json_schema) {
        char path[256];
        s = nuri_json_schema_grammar_text(p.json_schema, strlen(p.json_schema), &g, path,
                                          sizeof path);
        if (s != NURI_OK) s = nuri_error_wrap(s, "json_schema");
    }
    if (s == NURI_OK && g) {
        s = nuri_token_trie_new(m->vocab, m->hp.n_vocab, &c->trie);
        sp.grammar = g;
        sp.grammar_tokens = c->trie;
        c->grammar = true;
    }
    if (s == NURI_OK) s = nuri_sampler_new(&sp, m->hp.n_vocab, &c->smp);
    nuri_grammar_free(g); // the sampler holds its own reference
    if (s != NURI_OK) {
        nuri_token_trie_free(c->trie);
        free(c);
        return s;
    }
    *out = c;
    return NURI_OK;
}

void nuri_sampler_chain_free(nuri_sampler_chain *s)
{
    if (!s) return;
    nuri_sampler_free(s->smp);
    nuri_token_trie_free(s->trie);
    free(s);
}

nuri_status nuri_sampler_chain_sample(nuri_sampler_chain *s, const float *logits, int32_t *token)
{
    if (!logits) return nuri_error(NURI_ERR_INVALID_ARG, "nuri_sampler_chain_sample: no logits");
    return nuri_sampler_sample(s->smp, logits, token, NULL);
}

nuri_status nuri_sampler_chain_accept(nuri_sampler_chain *s, int32_t token)
{
    return nuri_sampler_accept(s->smp, token);
}

void nuri_sampler_chain_reset(nuri_sampler_chain *s)
{
    nuri_sampler_reset(s->smp);
}

bool nuri_sampler_chain_must_end(const nuri_sampler_chain *s, int32_t last_token)
{
    return s->grammar && nuri_sampler_finish_reason(s->smp, last_token) == NURI_FINISH_GRAMMAR;
}

bool nuri_sampler_chain_can_end(const nuri_sampler_chain *s)
{
    return !s->grammar || nuri_sampler_grammar_can_end(s->smp);
}

/* ============================== generation ============================== */

void nuri_generate_params_init(nuri_generate_params *p, size_t struct_size)
{
    if (!p || struct_size < sizeof(size_t)) return;
    nuri_generate_params d = {.struct_size = sizeof d, .max_tokens = 128};
    api_params_init(p, struct_size, &d, sizeof d);
}

nuri_status nuri_generate(nuri_context *c, nuri_sampler_chain *s, const int32_t *prompt,
                          size_t n_prompt, const nuri_generate_params *params, int32_t *n_generated,
                          nuri_end_reason *why)
{
    if (n_generated) *n_generated = 0;
    if (why) *why = NURI_END_LENGTH;
    nuri_end_reason end = NURI_END_LENGTH;
    nuri_generate_params p;
    nuri_generate_params_init(&p, sizeof p);
    nuri_status st = api_params_copy(&p, sizeof p, params, "nuri_generate_params");
    if (st != NURI_OK) return st;
    if (p.max_tokens < 0)
        return nuri_error(NURI_ERR_INVALID_ARG, "nuri_generate_params: max_tokens is negative");
    if (!prompt || n_prompt == 0)
        return nuri_error(NURI_ERR_INVALID_ARG, "nuri_generate: the prompt is empty");
    if (n_prompt > INT32_MAX - (size_t)p.max_tokens)
        return nuri_error(NURI_ERR_LIMIT, "nuri_generate: the prompt is too long");
    if ((st = nuri_context_seq_clear(c, p.seq)) != NURI_OK) return st;
    const nuri_model *m = c->m;
    size_t n_stops = 0;
    const char *const *stops = p.chat ? nuri_chat_stop_strings(p.chat, &n_stops) : NULL;
    nuri_detokenizer *dt;
    if ((st = nuri_detokenizer_new(m, 0, &dt)) != NURI_OK) return st;
    char *answer = NULL; // with stop strings: the answer so far
    size_t answer_len = 0, answer_cap = 0, emitted = 0;
    bool go = true, stop_hit = false;
    int32_t pos = (int32_t)n_prompt, count = 0;
    st = nuri_context_decode_seq(c, p.seq, prompt, (int32_t)n_prompt, 0, false);
    for (int32_t k = 0; st == NURI_OK && go && k < p.max_tokens; k++) {
        int32_t next;
        if ((st = nuri_sampler_chain_sample(s, nuri_context_logits(c, 0), &next)) != NURI_OK ||
            (st = nuri_sampler_chain_accept(s, next)) != NURI_OK)
            break;
        bool ends = p.chat ? nuri_chat_ends_turn(p.chat, next) : nuri_model_token_is_eog(m, next);
        if (ends) {
            end = NURI_END_TOKEN;
            break;
        }
        size_t len;
        const char *piece = nuri_detokenizer_feed(dt, next, &len);
        if (n_stops) { // hold back what may be the start of a stop string
            if (answer_len + len > answer_cap) {
                answer_cap = 2 * (answer_len + len);
                char *a = realloc(answer, answer_cap);
                if (!a) {
                    st = nuri_error(NURI_ERR_NOMEM, "out of memory");
                    break;
                }
                answer = a;
            }
            memcpy(answer + answer_len, piece, len);
            answer_len += len;
            bool hit;
            size_t safe = nuri_stop_strings_scan(answer, answer_len, emitted, stops, n_stops, &hit);
            count++;
            if (p.on_token) go = p.on_token(next, answer + emitted, safe - emitted, p.user_data);
            emitted = safe;
            if (hit) {
                answer_len = emitted;
                stop_hit = true;
                end = NURI_END_STOP_STRING;
                break;
            }
        } else {
            count++;
            if (p.on_token) go = p.on_token(next, piece, len, p.user_data);
        }
        if (!go) {
            end = NURI_END_CALLBACK;
            break;
        }
        if (nuri_sampler_chain_must_end(s, next)) {
            end = NURI_END_GRAMMAR;
            break;
        }
        if (k + 1 == p.max_tokens) break;
        st = nuri_context_decode_seq(c, p.seq, &next, 1, pos++, false);
    }
    if (st == NURI_OK && go && p.on_token) {
        size_t len;
        const char *rest = nuri_detokenizer_flush(dt, &len);
        // the held text: what stop strings held back, then an incomplete character's U+FFFD
        size_t held = answer_len - emitted, tail = stop_hit ? 0 : len;
        char *all = malloc(held + tail + 1);
        if (!all) {
            st = nuri_error(NURI_ERR_NOMEM, "out of memory");
        } else {
            if (held) memcpy(all, answer + emitted, held);
            if (tail) memcpy(all + held, rest, tail);
            p.on_token(-1, all, held + tail, p.user_data);
            free(all);
        }
    }
    free(answer);
    nuri_detokenizer_free(dt);
    if (n_generated) *n_generated = count;
    if (why) *why = end;
    return st;
}

/* ======================== for the other api files (api_internal.h) ======================== */

nuri_ctx *api_context_ctx(nuri_context *c)
{
    return c->ctx;
}

const nuri_model *api_context_model(const nuri_context *c)
{
    return c->m;
}

int32_t api_context_n_logits(const nuri_context *c)
{
    return c->n_logits;
}

void api_context_forget_rows(nuri_context *c)
{
    c->n_rows = 0;
}

nuri_sampler *api_chain_sampler(nuri_sampler_chain *s)
{
    return s->smp;
}
