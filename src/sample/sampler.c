/*
 * sampler.c: the sampler chain of sampler.h: parameter validation, the penalty history, the stages
 * in their documented order, the RNG and per-token logprobs.
 *
 * Every buffer is allocated in nuri_sampler_new and sized to n_vocab (or to penalty_last_n for the
 * history ring); sampling a token allocates nothing. Work is proportional to n_vocab for the copy
 * and the candidate list, and otherwise to the number of candidates still in play: top_k selects
 * with a quickselect (expected linear), top_p sorts only as long a prefix as it needs.
 */
#include "sample/sampler.h"

#include "base/status.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TOP_P_EPS 1e-6   // a prefix of mass >= top_p - TOP_P_EPS reaches top_p
#define MIN_P_EPS 1e-5   // relative slack on min_p * p_max
#define BAN_BIAS -100.0f // a logit bias at or below this bans the token (OpenAI's convention)

/* One token still in play. `v` is its logit until the temperature stage, then its weight
 * exp((logit - max) / T), which is p_i / p_max; both orders rank tokens the same way. */
typedef struct cand {
    float v;
    int32_t id;
} cand;

struct nuri_sampler {
    nuri_sampler_params p; // validated; the arrays below replace the caller's pointers
    int32_t n_vocab;

    nuri_logit_bias *bias; // (p.n_logit_bias) owned copy
    uint8_t *is_stop;      // (n_vocab) 1 for a stop token

    int32_t *ring;     // (p.penalty_last_n) the penalty window, in no particular order
    int32_t ring_len;  // tokens in the window, <= p.penalty_last_n
    int32_t ring_next; // where the next token goes once the ring is full (the oldest entry)
    int32_t *counts;   // (n_vocab) occurrences of each token in the window
    uint8_t *seen;     // (n_vocab) all 0 between calls; marks distinct tokens while penalizing

    float *work; // (n_vocab) logits after sanitize, grammar, bias and penalties
    cand *cand;  // (n_vocab) tokens in play

    nuri_grammar_matcher *gm; // with a grammar: where the generation stands in it

    uint64_t rng[4];   // xoshiro256** state
    int32_t n_sampled; // tokens sampled since creation / reset (for max_tokens)
};

/* ---- RNG: xoshiro256**, seeded by splitmix64 ---- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(uint64_t st[4])
{
    uint64_t result = rotl(st[1] * 5, 7) * 9;
    uint64_t t = st[1] << 17;
    st[2] ^= st[0];
    st[3] ^= st[1];
    st[1] ^= st[2];
    st[0] ^= st[3];
    st[2] ^= t;
    st[3] = rotl(st[3], 45);
    return result;
}

static void rng_seed(uint64_t st[4], uint64_t seed)
{
    for (int i = 0; i < 4; i++) st[i] = splitmix64(&seed);
}

/* A double in [0, 1) from the top 53 bits of one output. */
static double rng_uniform(uint64_t st[4])
{
    return (double)(rng_next(st) >> 11) * 0x1.0p-53;
}

/* ---- parameters ---- */

nuri_sampler_params nuri_sampler_params_default(void)
{
    nuri_sampler_params p = {
        .temperature = 1.0f,
        .top_k = 0,
        .top_p = 1.0f,
        .min_p = 0.0f,
        .repetition_penalty = 1.0f,
        .frequency_penalty = 0.0f,
        .presence_penalty = 0.0f,
        .penalty_last_n = 64,
        .seed = 0,
    };
    return p;
}

static nuri_status params_check(const nuri_sampler_params *p, int32_t n_vocab)
{
    if (n_vocab <= 0) return nuri_error(NURI_ERR_INVALID_ARG, "sampler: n_vocab %d", n_vocab);
    if (!(p->temperature >= 0.0f) || isinf(p->temperature))
        return nuri_error(NURI_ERR_INVALID_ARG,
                          "sampler: temperature must be finite and >= 0, got %g", p->temperature);
    if (p->top_k < 0)
        return nuri_error(NURI_ERR_INVALID_ARG, "sampler: top_k must be >= 0 (0 = off), got %d",
                          p->top_k);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return nuri_error(NURI_ERR_INVALID_ARG, "sampler: top_p must be in (0, 1], got %g",
                          p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return nuri_error(NURI_ERR_INVALID_ARG, "sampler: min_p must be in [0, 1], got %g",
                          p->min_p);
    if (!(p->repetition_penalty > 0.0f) || isinf(p->repetition_penalty))
        return nuri_error(NURI_ERR_INVALID_ARG,
                          "sampler: repetition_penalty must be finite and > 0, got %g",
                          p->repetition_penalty);
    if (!isfinite(p->frequency_penalty))
        return nuri_error(NURI_ERR_INVALID_ARG, "sampler: frequency_penalty must be finite, got %g",
                          p->frequency_penalty);
    if (!isfinite(p->presence_penalty))
        return nuri_error(NURI_ERR_INVALID_ARG, "sampler: presence_penalty must be finite, got %g",
                          p->presence_penalty);
    if (p->penalty_last_n < 0 || p->penalty_last_n > NURI_SAMPLER_MAX_LAST_N)
        return nuri_error(NURI_ERR_INVALID_ARG,
                          "sampler: penalty_last_n must be in [0, %d], got %d",
                          NURI_SAMPLER_MAX_LAST_N, p->penalty_last_n);
    if (p->n_logit_bias < 0 || (p->n_logit_bias > 0 && !p->logit_bias))
        return nuri_error(NURI_ERR_INVALID_ARG, "sampler: logit_bias: %d entries at %p",
                          p->n_logit_bias, (const void *)p->logit_bias);
    for (int32_t i = 0; i < p->n_logit_bias; i++) {
        const nuri_logit_bias *b = &p->logit_bias[i];
        if (b->token < 0 || b->token >= n_vocab)
            return nuri_error(NURI_ERR_INVALID_ARG,
                              "sampler: logit_bias[%d]: token %d is outside the vocabulary [0, %d)",
                              i, b->token, n_vocab);
        if (isnan(b->bias) || (isinf(b->bias) && b->bias > 0))
            return nuri_error(NURI_ERR_INVALID_ARG,
                              "sampler: logit_bias[%d]: bias must be finite or -inf, got %g", i,
                              b->bias);
    }
    if (p->n_stop_tokens < 0 || (p->n_stop_tokens > 0 && !p->stop_tokens))
        return nuri_error(NURI_ERR_INVALID_ARG, "sampler: stop_tokens: %d entries at %p",
                          p->n_stop_tokens, (const void *)p->stop_tokens);
    for (int32_t i = 0; i < p->n_stop_tokens; i++)
        if (p->stop_tokens[i] < 0 || p->stop_tokens[i] >= n_vocab)
            return nuri_error(
                NURI_ERR_INVALID_ARG,
                "sampler: stop_tokens[%d]: token %d is outside the vocabulary [0, %d)", i,
                p->stop_tokens[i], n_vocab);
    if (p->max_tokens < 0)
        return nuri_error(NURI_ERR_INVALID_ARG,
                          "sampler: max_tokens must be >= 0 (0 = no limit), "
                          "got %d",
                          p->max_tokens);
    if (p->n_top_logprobs < 0 || p->n_top_logprobs > NURI_MAX_TOP_LOGPROBS)
        return nuri_error(NURI_ERR_INVALID_ARG,
                          "sampler: n_top_logprobs must be in [0, %d], got %d",
                          NURI_MAX_TOP_LOGPROBS, p->n_top_logprobs);
    if (p->grammar && !p->grammar_tokens)
        return nuri_error(NURI_ERR_INVALID_ARG,
                          "sampler: a grammar needs the vocabulary's token trie (grammar_tokens)");
    if (p->grammar && nuri_token_trie_n_vocab(p->grammar_tokens) != n_vocab)
        return nuri_error(NURI_ERR_INVALID_ARG,
                          "sampler: the grammar's token trie has %d tokens, the logits %d",
                          nuri_token_trie_n_vocab(p->grammar_tokens), n_vocab);
    return NURI_OK;
}

/* ---- lifecycle ---- */

nuri_status nuri_sampler_new(const nuri_sampler_params *p, int32_t n_vocab, nuri_sampler **out)
{
    *out = NULL;
    if (!p) return nuri_error(NURI_ERR_INVALID_ARG, "sampler: no params");
    nuri_status st = params_check(p, n_vocab);
    if (st != NURI_OK) return st;

    nuri_sampler *s = calloc(1, sizeof *s);
    if (!s) return nuri_error(NURI_ERR_NOMEM, "sampler: out of memory");
    s->p = *p;
    s->n_vocab = n_vocab;
    size_t nv = (size_t)n_vocab;
    s->bias = malloc(sizeof *s->bias * (size_t)(p->n_logit_bias ? p->n_logit_bias : 1));
    s->is_stop = calloc(nv, 1);
    s->ring = malloc(sizeof *s->ring * (size_t)(p->penalty_last_n ? p->penalty_last_n : 1));
    s->counts = calloc(nv, sizeof *s->counts);
    s->seen = calloc(nv, 1);
    s->work = malloc(sizeof *s->work * nv);
    s->cand = malloc(sizeof *s->cand * nv);
    if (!s->bias || !s->is_stop || !s->ring || !s->counts || !s->seen || !s->work || !s->cand) {
        nuri_sampler_free(s);
        return nuri_error(NURI_ERR_NOMEM, "sampler: out of memory for n_vocab %d", n_vocab);
    }
    if (p->grammar) {
        st = nuri_grammar_matcher_new(p->grammar, p->grammar_tokens, NULL, &s->gm);
        if (st != NURI_OK) {
            nuri_sampler_free(s);
            return st;
        }
    }
    s->p.grammar = NULL; // the matcher holds the reference
    if (p->n_logit_bias) memcpy(s->bias, p->logit_bias, sizeof *s->bias * (size_t)p->n_logit_bias);
    s->p.logit_bias = s->bias;
    for (int32_t i = 0; i < p->n_stop_tokens; i++) s->is_stop[p->stop_tokens[i]] = 1;
    s->p.stop_tokens = NULL; // is_stop holds them
    nuri_sampler_reset(s);
    *out = s;
    return NURI_OK;
}

void nuri_sampler_free(nuri_sampler *s)
{
    if (!s) return;
    free(s->bias);
    free(s->is_stop);
    free(s->ring);
    free(s->counts);
    free(s->seen);
    free(s->work);
    free(s->cand);
    nuri_grammar_matcher_free(s->gm);
    free(s);
}

void nuri_sampler_reset(nuri_sampler *s)
{
    for (int32_t i = 0; i < s->ring_len; i++) s->counts[s->ring[i]] = 0;
    s->ring_len = 0;
    s->ring_next = 0;
    s->n_sampled = 0;
    rng_seed(s->rng, s->p.seed);
    if (s->gm) nuri_grammar_matcher_reset(s->gm);
}

nuri_status nuri_sampler_accept(nuri_sampler *s, int32_t token)
{
    if (token < 0 || token >= s->n_vocab)
        return nuri_error(NURI_ERR_INVALID_ARG,
                          "sampler: accepted token %d is outside the vocabulary [0, %d)", token,
                          s->n_vocab);
    if (s->gm) {
        nuri_status st = nuri_grammar_matcher_accept_token(s->gm, token);
        if (st != NURI_OK) return st;
    }
    return nuri_sampler_accept_history(s, token);
}

nuri_status nuri_sampler_accept_history(nuri_sampler *s, int32_t token)
{
    if (token < 0 || token >= s->n_vocab)
        return nuri_error(NURI_ERR_INVALID_ARG,
                          "sampler: accepted token %d is outside the vocabulary [0, %d)", token,
                          s->n_vocab);
    int32_t cap = s->p.penalty_last_n;
    if (cap == 0) return NURI_OK;
    if (s->ring_len < cap) {
        s->ring[s->ring_len++] = token;
    } else {
        s->counts[s->ring[s->ring_next]]--;
        s->ring[s->ring_next] = token;
        s->ring_next = (s->ring_next + 1) % cap;
    }
    s->counts[token]++;
    return NURI_OK;
}

bool nuri_sampler_grammar_can_end(const nuri_sampler *s)
{
    return !s->gm || nuri_grammar_matcher_can_end(s->gm);
}

nuri_finish_reason nuri_sampler_finish_reason(const nuri_sampler *s, int32_t token)
{
    if (token >= 0 && token < s->n_vocab && s->is_stop[token]) return NURI_FINISH_STOP;
    if (s->gm) {
        if (nuri_token_trie_is_end(s->p.grammar_tokens, token)) return NURI_FINISH_STOP;
        if (!nuri_grammar_matcher_can_continue(s->gm)) return NURI_FINISH_GRAMMAR;
    }
    if (s->p.max_tokens > 0 && s->n_sampled >= s->p.max_tokens) return NURI_FINISH_LENGTH;
    return NURI_FINISH_NONE;
}

/* ---- ordering helpers: "better" = higher v, ties to the lower id (so all keys are distinct) ----
 */

static inline int better(cand a, cand b)
{
    return a.v > b.v || (a.v == b.v && a.id < b.id);
}

static inline void cand_swap(cand *a, cand *b)
{
    cand t = *a;
    *a = *b;
    *b = t;
}

/* Partitions c[lo..hi] around a pseudo-random pivot; returns its final index, with every better
 * element before it. */
static int32_t partition(cand *c, int32_t lo, int32_t hi, uint64_t *prng)
{
    int32_t pi = lo + (int32_t)(splitmix64(prng) % (uint64_t)(hi - lo + 1));
    cand_swap(&c[pi], &c[hi]);
    cand pivot = c[hi];
    int32_t store = lo;
    for (int32_t i = lo; i < hi; i++)
        if (better(c[i], pivot)) cand_swap(&c[i], &c[store++]);
    cand_swap(&c[store], &c[hi]);
    return store;
}

/* Moves the m best of c[0..n) into c[0..m), in no particular order. Expected O(n). */
static void select_top(cand *c, int32_t n, int32_t m, uint64_t *prng)
{
    if (m <= 0 || m >= n) return;
    int32_t lo = 0, hi = n - 1, k = m - 1; // place the m-th best at index k
    while (lo < hi) {
        int32_t at = partition(c, lo, hi, prng);
        if (at == k) return;
        if (at > k)
            hi = at - 1;
        else
            lo = at + 1;
    }
}

/* Sorts c[0..n) best first. Quicksort (pseudo-random pivots) over insertion sort; no allocation. */
static void sort_best_first(cand *c, int32_t n, uint64_t *prng)
{
    while (n > 16) {
        int32_t at = partition(c, 0, n - 1, prng);
        // recurse into the smaller side, loop on the larger: O(log n) stack
        if (at < n - 1 - at) {
            sort_best_first(c, at, prng);
            c += at + 1;
            n -= at + 1;
        } else {
            sort_best_first(c + at + 1, n - at - 1, prng);
            n = at;
        }
    }
    for (int32_t i = 1; i < n; i++) {
        cand x = c[i];
        int32_t j = i;
        while (j > 0 && better(x, c[j - 1])) {
            c[j] = c[j - 1];
            j--;
        }
        c[j] = x;
    }
}

/* ---- the chain ---- */

/* NaN -> -inf, +inf -> FLT_MAX; everything else unchanged. */
static inline float sanitize(float x)
{
    if (x != x) return -INFINITY;
    return x > FLT_MAX ? FLT_MAX : x;
}

/* Stage 1b: -inf for every token the grammar does not allow. */
static nuri_status apply_grammar(nuri_sampler *s)
{
    const uint32_t *mask;
    nuri_status st = nuri_grammar_matcher_mask(s->gm, &mask);
    if (st != NURI_OK) return st;
    float *w = s->work;
    int32_t n = s->n_vocab, words = (n + 31) / 32;
    for (int32_t k = 0; k < words; k++) {
        uint32_t m = mask[k];
        if (m == 0xFFFFFFFFu) continue;
        int32_t base = 32 * k, end = base + 32 < n ? base + 32 : n;
        if (m == 0) {
            for (int32_t i = base; i < end; i++) w[i] = -INFINITY;
            continue;
        }
        for (int32_t i = base; i < end; i++)
            if (!((m >> (i - base)) & 1)) w[i] = -INFINITY;
    }
    return NURI_OK;
}

/* Stages 1-3: work = sanitized logits with grammar, bias and penalties applied. */
static nuri_status prepare_logits(nuri_sampler *s, const float *logits)
{
    float *w = s->work;
    for (int32_t i = 0; i < s->n_vocab; i++) w[i] = sanitize(logits[i]);
    if (s->gm) {
        nuri_status st = apply_grammar(s);
        if (st != NURI_OK) return st;
    }

    for (int32_t i = 0; i < s->p.n_logit_bias; i++) {
        const nuri_logit_bias *b = &s->bias[i];
        if (b->bias <= BAN_BIAS) // includes -inf
            w[b->token] = -INFINITY;
        else
            w[b->token] = sanitize(w[b->token] + b->bias);
    }

    const float rp = s->p.repetition_penalty;
    const float fp = s->p.frequency_penalty;
    const float pp = s->p.presence_penalty;
    if (s->ring_len == 0 || (rp == 1.0f && fp == 0.0f && pp == 0.0f)) return NURI_OK;
    for (int32_t i = 0; i < s->ring_len; i++) {
        int32_t t = s->ring[i];
        if (s->seen[t]) continue; // each distinct token once
        s->seen[t] = 1;
        float l = w[t];
        if (l == -INFINITY) continue; // banned stays banned
        if (rp != 1.0f) l = l > 0.0f ? l / rp : l * rp;
        l -= (float)s->counts[t] * fp + pp; // counts[t] > 0: t is in the window
        w[t] = sanitize(l);
    }
    for (int32_t i = 0; i < s->ring_len; i++) s->seen[s->ring[i]] = 0;
    return NURI_OK;
}

/* Stages 1-8. Leaves the kept tokens in s->cand[0..*n_out) with v = weight (p_i / p_max, the best
 * has weight 1); *sorted says whether they are in best-first order. */
static nuri_status run_chain(nuri_sampler *s, const float *logits, int32_t *n_out, int *sorted)
{
    nuri_status st = prepare_logits(s, logits);
    if (st != NURI_OK) return st;
    const float *w = s->work;
    cand *c = s->cand;
    uint64_t prng = 0x5eed; // pivots only: deterministic, independent of the sampler's RNG
    *sorted = 0;

    if (s->p.temperature == 0.0f) { // stage 4: greedy, ties to the lowest id
        int32_t best = 0;
        for (int32_t i = 1; i < s->n_vocab; i++)
            if (w[i] > w[best]) best = i;
        if (w[best] == -INFINITY) goto none;
        c[0] = (cand){1.0f, best};
        *n_out = 1;
        *sorted = 1;
        return NURI_OK;
    }

    int32_t n = 0;
    for (int32_t i = 0; i < s->n_vocab; i++)
        if (w[i] != -INFINITY) c[n++] = (cand){w[i], i};
    if (n == 0) goto none;

    if (s->p.top_k > 0 && s->p.top_k < n) { // stage 5
        select_top(c, n, s->p.top_k, &prng);
        n = s->p.top_k;
    }

    // stage 6: weights exp((l - l_max) / T); the sum Z in double
    float lmax = c[0].v;
    for (int32_t i = 1; i < n; i++)
        if (c[i].v > lmax) lmax = c[i].v;
    const float inv_t = 1.0f / s->p.temperature;
    double z = 0.0;
    for (int32_t i = 0; i < n; i++) {
        c[i].v = expf((c[i].v - lmax) * inv_t);
        z += c[i].v;
    }

    // stage 8 first, as a filter (the kept set is the same; see sampler.h): fewer tokens to sort
    if (s->p.min_p > 0.0f) {
        const float thr = (float)(s->p.min_p * (1.0 - MIN_P_EPS));
        int32_t k = 0;
        for (int32_t i = 0; i < n; i++)
            if (c[i].v >= thr) c[k++] = c[i];
        n = k; // never 0: the best token has weight 1 >= min_p
    }

    // stage 7: sort just enough of a prefix to reach top_p of the mass Z of stage 6's tokens
    if (s->p.top_p < 1.0f && n > 1) {
        const double target = ((double)s->p.top_p - TOP_P_EPS) * z;
        double cum = 0.0;
        int32_t done = 0, m = n < 64 ? n : 64;
        for (;;) {
            select_top(c + done, n - done, m - done, &prng);
            sort_best_first(c + done, m - done, &prng);
            int32_t i = done;
            for (; i < m; i++) {
                cum += c[i].v;
                if (cum >= target) break;
            }
            if (i < m) {
                n = i + 1;
                break;
            }
            done = m;
            if (m == n) break; // min_p already kept the shorter prefix
            m = m > n / 2 ? n : 2 * m;
        }
        *sorted = 1;
    }
    *n_out = n;
    return NURI_OK;

none:
    if (s->gm)
        return nuri_error(NURI_ERR_INVALID_ARG,
                          "sampler: no token can be sampled: the grammar allows none of the %d "
                          "tokens that logit bias and penalties leave",
                          s->n_vocab);
    return nuri_error(NURI_ERR_INVALID_ARG,
                      "sampler: no token can be sampled: all %d logits are "
                      "-inf or NaN after logit bias and penalties",
                      s->n_vocab);
}

/* Fills lp from the raw logits: log-softmax of the sanitized values (see sampler.h). */
static void fill_logprobs(const nuri_sampler *s, const float *logits, int32_t token,
                          nuri_token_logprobs *lp)
{
    const int32_t nv = s->n_vocab;
    int32_t ntop = s->p.n_top_logprobs < nv ? s->p.n_top_logprobs : nv;
    float mx = -INFINITY;
    int32_t cnt = 0;
    for (int32_t i = 0; i < nv; i++) {
        float l = sanitize(logits[i]);
        if (l > mx) mx = l;
        if (ntop == 0 || (cnt == ntop && !(l > lp->top[cnt - 1].logprob))) continue;
        int32_t j = cnt < ntop ? cnt++ : ntop - 1; // ties keep the earlier (lower) id first
        while (j > 0 && l > lp->top[j - 1].logprob) {
            lp->top[j] = lp->top[j - 1];
            j--;
        }
        lp->top[j] = (nuri_token_logprob){i, l};
    }
    double sum = 0.0;
    if (mx != -INFINITY)
        for (int32_t i = 0; i < nv; i++) sum += exp((double)sanitize(logits[i]) - mx);
    const double log_sum = log(sum); // -inf if every logit is -inf: every logprob is then -inf
    lp->n_top = cnt;
    for (int32_t i = 0; i < cnt; i++)
        lp->top[i].logprob = (float)(((double)lp->top[i].logprob - mx) - log_sum);
    float l = sanitize(logits[token]);
    lp->chosen.token = token;
    lp->chosen.logprob = mx == -INFINITY ? -INFINITY : (float)(((double)l - mx) - log_sum);
}

nuri_status nuri_sampler_sample(nuri_sampler *s, const float *logits, int32_t *token_out,
                                nuri_token_logprobs *lp_out)
{
    int32_t n;
    int sorted;
    nuri_status st = run_chain(s, logits, &n, &sorted);
    if (st != NURI_OK) return st;
    const cand *c = s->cand;
    int32_t tok = c[0].id;
    if (s->p.temperature != 0.0f && n > 1) { // stage 9: one RNG output per token
        double total = 0.0;
        for (int32_t i = 0; i < n; i++) total += c[i].v;
        double u = rng_uniform(s->rng) * total, cum = 0.0;
        int32_t i = 0;
        for (; i < n - 1; i++) {
            cum += c[i].v;
            if (u < cum) break;
        }
        while (i > 0 && c[i].v == 0.0f) i--; // rounding past the end: never draw weight 0
        tok = c[i].id;
    } else if (s->p.temperature != 0.0f) {
        (void)rng_next(s->rng); // keep one output per sampled token, whatever survived
    }
    if (lp_out) fill_logprobs(s, logits, tok, lp_out);
    s->n_sampled++;
    *token_out = tok;
    return NURI_OK;
}

nuri_status nuri_sampler_distribution(nuri_sampler *s, const float *logits, int32_t *ids,
                                      float *probs, int32_t *n_out)
{
    int32_t n;
    int sorted;
    nuri_status st = run_chain(s, logits, &n, &sorted);
    if (st != NURI_OK) return st;
    uint64_t prng = 0x5eed;
    if (!sorted) sort_best_first(s->cand, n, &prng);
    double total = 0.0;
    for (int32_t i = 0; i < n; i++) total += s->cand[i].v;
    for (int32_t i = 0; i < n; i++) {
        ids[i] = s->cand[i].id;
        probs[i] = (float)(s->cand[i].v / total);
    }
    *n_out = n;
    return NURI_OK;
}

/* ---- speculative decoding (sampler.h, "Speculation") ---- */

const nuri_sampler_params *nuri_sampler_get_params(const nuri_sampler *s)
{
    return &s->p;
}

nuri_status nuri_sampler_draft(nuri_sampler *s, const float *logits, float *q, int32_t *token_out)
{
    int32_t n;
    int sorted;
    nuri_status st = run_chain(s, logits, &n, &sorted);
    if (st != NURI_OK) return st;
    const cand *c = s->cand;
    double total = 0.0;
    for (int32_t i = 0; i < n; i++) total += c[i].v;
    int32_t tok = c[0].id;
    if (s->p.temperature != 0.0f && n > 1) {
        double u = rng_uniform(s->rng) * total, cum = 0.0;
        int32_t i = 0;
        for (; i < n - 1; i++) {
            cum += c[i].v;
            if (u < cum) break;
        }
        while (i > 0 && c[i].v == 0.0f) i--;
        tok = c[i].id;
    }
    if (q) {
        memset(q, 0, (size_t)s->n_vocab * sizeof *q);
        for (int32_t i = 0; i < n; i++) q[c[i].id] = (float)(c[i].v / total);
    }
    *token_out = tok;
    return NURI_OK;
}

nuri_status nuri_sampler_verify(nuri_sampler *s, const float *logits, int32_t draft, const float *q,
                                int32_t *token_out, bool *accepted)
{
    if (!q) { // a deterministic draft: sample as without speculation, and compare
        nuri_status st = nuri_sampler_sample(s, logits, token_out, NULL);
        *accepted = st == NURI_OK && *token_out == draft;
        return st;
    }
    int32_t n;
    int sorted;
    nuri_status st = run_chain(s, logits, &n, &sorted);
    if (st != NURI_OK) return st;
    const cand *c = s->cand;
    double total = 0.0, px = 0.0;
    for (int32_t i = 0; i < n; i++) {
        total += c[i].v;
        if (c[i].id == draft) px = c[i].v;
    }
    px /= total;
    const double qx = draft >= 0 && draft < s->n_vocab ? (double)q[draft] : 0.0;
    s->n_sampled++;
    // accept x with probability min(1, p(x) / q(x)); a draw only when the ratio is below 1
    if (qx > 0.0 && px > 0.0 && (px >= qx || rng_uniform(s->rng) * qx < px)) {
        *token_out = draft;
        *accepted = true;
        return NURI_OK;
    }
    // rejected: draw from max(0, p - q), renormalized (p itself if rounding left nothing)
    double rest = 0.0;
    for (int32_t i = 0; i < n; i++) {
        double r = c[i].v / total - (double)q[c[i].id];
        if (r > 0.0) rest += r;
    }
    const bool from_p = !(rest > 1e-12);
    double u = rng_uniform(s->rng) * (from_p ? 1.0 : rest), cum = 0.0;
    int32_t pick = -1, last = -1;
    for (int32_t i = 0; i < n; i++) {
        double w = from_p ? c[i].v / total : c[i].v / total - (double)q[c[i].id];
        if (!(w > 0.0)) continue;
        last = i;
        cum += w;
        if (u < cum) {
            pick = i;
            break;
        }
    }
    if (pick < 0) pick = last >= 0 ? last : 0; // rounding past the end
    *token_out = c[pick].id;
    *accepted = false;
    return NURI_OK;
}
