/*
 * speculate.c: the speculator of speculate.h: drafting by prompt lookup and by a draft model, one
 * batched forward pass of the target over the draft, verification row by row, KV rollback.
 *
 * State between calls: batch[0..n_batch) was decoded last, batch[0] at position pos - n_batch;
 * logits row r follows batch[r]. Row `row` is the one the next token comes from. When that token
 * is the draft's batch[row + 1], the draft holds and row + 1 serves the token after it without a
 * forward pass; otherwise the KV past the token is wrong, it is dropped, and the next call decodes
 * the token with a new draft behind it (`pending`). Nothing is decoded until a token is asked for,
 * so a caller that stops never pays for a pass it does not use.
 */
#include "spec/speculate.h"

#include "base/status.h"
#include "tokenizer/tokenizer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct nuri_spec {
    nuri_spec_params p;
    nuri_ctx *ctx; // the target's (borrowed)
    int32_t seq;
    nuri_sampler *smp; // the target's (borrowed)
    int32_t n_vocab;

    int32_t *hist; // (cap) the sequence: begun-with tokens, then the generated ones
    int32_t n_hist, cap;
    int32_t batch[NURI_SPEC_MAX_DRAFT + 1]; // the last decoded batch
    int32_t n_batch, row, pos;
    bool pending; // hist[n_hist - 1] is not in the KV yet: the next call decodes it

    // a draft model: its own context (sequence 0) and sampler
    nuri_ctx *dctx;
    nuri_sampler *dsmp;
    int32_t *dcache; // (dcap) the tokens its KV holds
    int32_t n_dcache, dcap;
    float *q;     // (draft_max, n_vocab) the distributions the draft was drawn from; NULL: off
    bool q_used;  // the last draft's q is to be used (the draft model drew it, sampling)
    bool samples; // the draft model samples (temperature > 0, not draft_greedy)

    nuri_spec_counts counts;
};

/* ============================== drafting ============================== */

int32_t nuri_spec_lookup(const int32_t *hist, int32_t len, int32_t max, int32_t *draft)
{
    for (int32_t n = 3; n >= 1; n--) {
        if (len <= n) continue;
        const int32_t *suffix = hist + len - n;
        for (int32_t i = len - n - 1; i >= 0; i--) {
            if (memcmp(hist + i, suffix, (size_t)n * sizeof *hist)) continue;
            int32_t k = 0;
            while (k < max && i + n + k < len) {
                draft[k] = hist[i + n + k];
                k++;
            }
            if (k > 0) return k;
        }
    }
    return 0;
}

/* The probability the model gives token t by its raw logits (softmax at temperature 1): the
 * draft model's confidence, for draft_p_min. */
static double softmax_at(const float *logits, int32_t n, int32_t t)
{
    float mx = logits[0];
    for (int32_t i = 1; i < n; i++)
        if (logits[i] > mx) mx = logits[i];
    double z = 0.0;
    for (int32_t i = 0; i < n; i++) z += exp((double)(logits[i] - mx));
    return exp((double)(logits[t] - mx)) / z;
}

/* The draft model's draft of up to max tokens after hist: its cache keeps the prefix it shares
 * with hist, decodes the rest, then one token at a time. */
static nuri_status model_draft(nuri_spec *s, int32_t max, int32_t *draft, int32_t *n_out)
{
    *n_out = 0;
    const int32_t n = s->n_hist;
    if (n + max > nuri_ctx_n_ctx(s->dctx)) return NURI_OK; // no room: no draft
    int32_t common = 0;
    while (common < s->n_dcache && common < n - 1 && s->dcache[common] == s->hist[common]) common++;
    nuri_ctx_seq_truncate(s->dctx, 0, common);
    s->n_dcache = common;
    nuri_status st = nuri_ctx_decode(s->dctx, s->hist + common, n - common, common, false);
    if (st != NURI_OK) return st;
    memcpy(s->dcache + common, s->hist + common, (size_t)(n - common) * sizeof *s->dcache);
    s->n_dcache = n;
    for (int32_t i = 0; i < max; i++) {
        float *q = s->q ? s->q + (size_t)i * (size_t)s->n_vocab : NULL;
        int32_t tok;
        st = nuri_sampler_draft(s->dsmp, nuri_ctx_logits(s->dctx, 0), q, &tok);
        if (st != NURI_OK) return st;
        // a token the draft itself doubts is not worth a row of the target's batch
        if (s->p.draft_p_min > 0.0f &&
            softmax_at(nuri_ctx_logits(s->dctx, 0), s->n_vocab, tok) < s->p.draft_p_min)
            break;
        draft[(*n_out)++] = tok;
        if (i + 1 == max) break;
        if ((st = nuri_ctx_decode(s->dctx, &tok, 1, n + i, false)) != NURI_OK) return st;
        s->dcache[s->n_dcache++] = tok;
    }
    s->q_used = s->samples; // else the draft is its argmax: deterministic
    return NURI_OK;
}

/* Up to max tokens after the sequence: prompt lookup first (free), else the draft model. */
static nuri_status make_draft(nuri_spec *s, int32_t max, int32_t *draft, int32_t *n_out)
{
    *n_out = 0;
    s->q_used = false;
    if (max <= 0) return NURI_OK;
    if (s->p.lookup) *n_out = nuri_spec_lookup(s->hist, s->n_hist, max, draft);
    if (*n_out == 0 && s->dctx) {
        nuri_status st = model_draft(s, max, draft, n_out);
        if (st != NURI_OK) return st;
    }
    if (*n_out < s->p.draft_min) *n_out = 0;
    return NURI_OK;
}

/* ============================== lifecycle ============================== */

nuri_status nuri_spec_vocab_check(const nuri_model *target, const nuri_model *draft)
{
    const nuri_vocab *a = target->vocab, *b = draft->vocab;
    if (target->hp.n_vocab != draft->hp.n_vocab || nuri_vocab_n_tokens(a) != nuri_vocab_n_tokens(b))
        return nuri_error(NURI_ERR_INVALID_ARG,
                          "the draft model's vocabulary has %u tokens (%d logits), the model's %u "
                          "(%d logits): a draft must share the model's vocabulary",
                          nuri_vocab_n_tokens(b), draft->hp.n_vocab, nuri_vocab_n_tokens(a),
                          target->hp.n_vocab);
    if (nuri_vocab_bos(a) != nuri_vocab_bos(b) || nuri_vocab_eos(a) != nuri_vocab_eos(b))
        return nuri_error(NURI_ERR_INVALID_ARG,
                          "the draft model's BOS / EOS tokens are %d / %d, the model's %d / %d",
                          nuri_vocab_bos(b), nuri_vocab_eos(b), nuri_vocab_bos(a),
                          nuri_vocab_eos(a));
    for (int32_t i = 0; i < (int32_t)nuri_vocab_n_tokens(a); i++) {
        size_t la, lb;
        const char *ta = nuri_vocab_token_text(a, i, &la), *tb = nuri_vocab_token_text(b, i, &lb);
        if (la != lb || memcmp(ta, tb, la))
            return nuri_error(NURI_ERR_INVALID_ARG,
                              "the draft model's token %d is '%.*s', the model's '%.*s': a draft "
                              "must share the model's vocabulary",
                              i, (int)(lb > 40 ? 40 : lb), tb, (int)(la > 40 ? 40 : la), ta);
        if (nuri_vocab_token_type(a, i) != nuri_vocab_token_type(b, i) ||
            nuri_vocab_is_eog(a, i) != nuri_vocab_is_eog(b, i))
            return nuri_error(NURI_ERR_INVALID_ARG,
                              "the draft model's token %d ('%.*s') is of another type or "
                              "end-of-generation role than the model's",
                              i, (int)(la > 40 ? 40 : la), ta);
    }
    return NURI_OK;
}

nuri_status nuri_spec_new(const nuri_spec_params *p, nuri_ctx *ctx, int32_t seq, nuri_sampler *smp,
                          nuri_spec **out)
{
    *out = NULL;
    if (p->draft_max < 1 || p->draft_max > NURI_SPEC_MAX_DRAFT)
        return nuri_error(NURI_ERR_INVALID_ARG, "draft size %d is outside 1..%d", p->draft_max,
                          NURI_SPEC_MAX_DRAFT);
    if (p->draft_min < 0 || p->draft_min > p->draft_max)
        return nuri_error(NURI_ERR_INVALID_ARG, "the least draft size %d is outside 0..%d",
                          p->draft_min, p->draft_max);
    if (!(p->draft_p_min >= 0.0f && p->draft_p_min <= 1.0f))
        return nuri_error(NURI_ERR_INVALID_ARG, "draft p-min %g is outside [0, 1]",
                          (double)p->draft_p_min);
    if (!p->lookup && !p->draft)
        return nuri_error(NURI_ERR_INVALID_ARG, "speculation needs prompt lookup or a draft model");
    const nuri_model *m = p->target;
    if (m->hp.n_recurrent > 0) // a rejected draft is taken back by truncating the sequence
        return nuri_error(NURI_ERR_UNSUPPORTED,
                          "speculative decoding is not supported for %s: its recurrent state "
                          "cannot take back a rejected draft",
                          m->hp.arch_name);
    if (p->draft) {
        nuri_status st = nuri_spec_vocab_check(m, p->draft);
        if (st != NURI_OK) return st;
    }
    nuri_spec *s = calloc(1, sizeof *s);
    if (!s) return nuri_error(NURI_ERR_NOMEM, "out of memory");
    s->p = *p;
    s->ctx = ctx;
    s->seq = seq;
    s->smp = smp;
    s->n_vocab = m->hp.n_vocab;
    nuri_status st = NURI_OK;
    if (p->draft) {
        nuri_ctx_params cp = {.n_ctx = p->draft_n_ctx ? p->draft_n_ctx : nuri_ctx_n_ctx(ctx),
                              .n_threads = p->draft_threads};
        nuri_sampler_params sp = *nuri_sampler_get_params(smp);
        // q: the target's temperature and cuts, no penalties (they need the history) or grammar
        nuri_sampler_params dp = nuri_sampler_params_default();
        dp.temperature = p->draft_greedy ? 0.0f : sp.temperature;
        s->samples = dp.temperature > 0.0f;
        dp.top_k = sp.top_k;
        dp.top_p = sp.top_p;
        dp.min_p = sp.min_p;
        dp.seed = sp.seed ^ 0x9e3779b97f4a7c15ull; // its own stream
        st = nuri_ctx_new(p->draft, &cp, &s->dctx);
        if (st == NURI_OK) st = nuri_sampler_new(&dp, s->n_vocab, &s->dsmp);
        if (st == NURI_OK) {
            s->dcap = nuri_ctx_n_ctx(s->dctx);
            if (!(s->dcache = malloc((size_t)s->dcap * sizeof *s->dcache))) st = NURI_ERR_NOMEM;
        }
        // q is kept when the draft samples: the rejection rule needs it
        if (st == NURI_OK && s->samples &&
            !(s->q = malloc((size_t)p->draft_max * (size_t)s->n_vocab * sizeof *s->q)))
            st = NURI_ERR_NOMEM;
        if (st == NURI_ERR_NOMEM) nuri_error(st, "out of memory");
    }
    if (st != NURI_OK) {
        nuri_spec_free(s);
        return st == NURI_ERR_NOMEM ? st : nuri_error_wrap(st, "the draft model");
    }
    *out = s;
    return NURI_OK;
}

void nuri_spec_free(nuri_spec *s)
{
    if (!s) return;
    free(s->hist);
    free(s->dcache);
    free(s->q);
    nuri_sampler_free(s->dsmp);
    nuri_ctx_free(s->dctx);
    free(s);
}

static bool hist_reserve(nuri_spec *s, int32_t n)
{
    if (n <= s->cap) return true;
    int32_t cap = s->cap ? s->cap : 256;
    while (cap < n) cap *= 2;
    int32_t *h = realloc(s->hist, (size_t)cap * sizeof *h);
    if (!h) return false;
    s->hist = h;
    s->cap = cap;
    return true;
}

nuri_status nuri_spec_begin(nuri_spec *s, const int32_t *tokens, int32_t n)
{
    if (n < 1) return nuri_error(NURI_ERR_INVALID_ARG, "speculation: the sequence is empty");
    if (!hist_reserve(s, n + 64)) return nuri_error(NURI_ERR_NOMEM, "out of memory");
    memcpy(s->hist, tokens, (size_t)n * sizeof *tokens);
    s->n_hist = n;
    s->batch[0] = tokens[n - 1];
    s->n_batch = 1;
    s->row = 0;
    s->pos = n;
    s->pending = false;
    s->q_used = false;
    return NURI_OK;
}

/* ============================== one token ============================== */

/* Decodes the pending last token with a new draft behind it. */
static nuri_status step(nuri_spec *s, int32_t remaining)
{
    int32_t room = remaining - 1; // tokens after this pass's first output the caller may take
    const int32_t ctx_room = nuri_ctx_n_ctx(s->ctx) - s->pos - 1;
    if (room > ctx_room) room = ctx_room;
    if (room > s->p.draft_max) room = s->p.draft_max;
    int32_t nd;
    nuri_status st = make_draft(s, room, s->batch + 1, &nd);
    if (st != NURI_OK) return st;
    s->batch[0] = s->hist[s->n_hist - 1];
    s->n_batch = 1 + nd;
    int32_t pos[NURI_SPEC_MAX_DRAFT + 1], seq[NURI_SPEC_MAX_DRAFT + 1];
    int8_t lg[NURI_SPEC_MAX_DRAFT + 1];
    for (int32_t i = 0; i < s->n_batch; i++) {
        pos[i] = s->pos + i;
        seq[i] = s->seq;
        lg[i] = 1;
    }
    nuri_batch b = {.n = s->n_batch, .token = s->batch, .pos = pos, .seq = seq, .logits = lg};
    if ((st = nuri_ctx_decode_batch(s->ctx, &b)) != NURI_OK) return st;
    s->pos += s->n_batch;
    s->row = 0;
    s->pending = false;
    s->counts.passes++;
    s->counts.drafted += nd;
    return NURI_OK;
}

nuri_status nuri_spec_next(nuri_spec *s, int32_t remaining, int32_t *token)
{
    nuri_status st;
    if (s->pending && (st = step(s, remaining < 1 ? 1 : remaining)) != NURI_OK) return st;
    const float *logits = nuri_ctx_logits(s->ctx, s->row);
    int32_t t;
    bool acc = false;
    if (s->row + 1 < s->n_batch) {
        const float *q = s->q_used ? s->q + (size_t)s->row * (size_t)s->n_vocab : NULL;
        st = nuri_sampler_verify(s->smp, logits, s->batch[s->row + 1], q, &t, &acc);
    } else {
        st = nuri_sampler_sample(s->smp, logits, &t, NULL);
    }
    if (st != NURI_OK) return st;
    if ((st = nuri_sampler_accept(s->smp, t)) != NURI_OK) return st;
    if (!hist_reserve(s, s->n_hist + 1)) return nuri_error(NURI_ERR_NOMEM, "out of memory");
    s->hist[s->n_hist++] = t;
    if (acc) {
        s->row++;
        s->counts.accepted++;
    } else { // the rest of the batch was drafted wrong: its KV goes
        s->pos -= s->n_batch - 1 - s->row;
        nuri_ctx_seq_truncate(s->ctx, s->seq, s->pos);
        s->n_batch = 1;
        s->row = 0;
        s->pending = true;
    }
    *token = t;
    return NURI_OK;
}

int32_t nuri_spec_end(nuri_spec *s, const int32_t **tokens)
{
    if (!s->pending && s->pos > s->n_hist) { // draft tokens past the last one taken
        s->pos = s->n_hist;
        nuri_ctx_seq_truncate(s->ctx, s->seq, s->pos);
        s->n_batch = 1;
        s->row = 0;
        s->batch[0] = s->hist[s->n_hist - 1];
    }
    if (tokens) *tokens = s->hist;
    return s->pos;
}

nuri_spec_counts nuri_spec_get_counts(const nuri_spec *s)
{
    return s->counts;
}
