/* test_sample.c: the sampler chain (src/sample/sampler.h) and the stop-string helper, one behaviour
 * per test. Distributions are hand-made; expected values are written in the tests. */
#include "sample/sampler.h"
#include "test.h"

#include <float.h>
#include <stdint.h>

#define MAXV 1024

static nuri_sampler *make(nuri_sampler_params p, int32_t n_vocab)
{
    nuri_sampler *s = NULL;
    nuri_status st = nuri_sampler_new(&p, n_vocab, &s);
    if (st != NURI_OK) fprintf(stderr, "  nuri_sampler_new: %s\n", nuri_last_error());
    return s;
}

/* logits[i] = log(probs[i]): softmax at temperature 1 gives probs back. */
static void logits_from_probs(const double *probs, int n, float *logits)
{
    for (int i = 0; i < n; i++) logits[i] = (float)log(probs[i]);
}

/* The kept set of s's distribution for logits as a sorted-by-probability id list. */
static int32_t kept(nuri_sampler *s, const float *logits, int32_t *ids, float *probs)
{
    int32_t n = -1;
    nuri_status st = nuri_sampler_distribution(s, logits, ids, probs, &n);
    if (st != NURI_OK) return -1;
    return n;
}

/* A fixed pseudo-random logit row in [-4, 4) (an LCG, so the test needs nothing else). */
static void random_logits(float *l, int n, uint32_t seed)
{
    for (int i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        l[i] = (float)(seed >> 8) / (float)(1u << 24) * 8.0f - 4.0f;
    }
}

/* ---- parameters ---- */

static int rejected(nuri_sampler_params p, int32_t n_vocab, const char *name)
{
    nuri_sampler *s = NULL;
    nuri_status st = nuri_sampler_new(&p, n_vocab, &s);
    int ok = st == NURI_ERR_INVALID_ARG && s == NULL && strstr(nuri_last_error(), name) != NULL;
    if (!ok) fprintf(stderr, "  %s: status %d, message '%s'\n", name, st, nuri_last_error());
    nuri_sampler_free(s);
    return ok;
}

TEST(bad_params_are_rejected_naming_the_parameter)
{
    nuri_sampler_params d = nuri_sampler_params_default(), p;
    nuri_logit_bias bad_tok = {10, 1.0f}, nan_bias = {1, NAN}, pinf_bias = {1, INFINITY};
    int32_t bad_stop = -1;
    p = d, p.temperature = -0.5f;
    CHECK(rejected(p, 10, "temperature"));
    p = d, p.temperature = NAN;
    CHECK(rejected(p, 10, "temperature"));
    p = d, p.temperature = INFINITY;
    CHECK(rejected(p, 10, "temperature"));
    p = d, p.top_k = -1;
    CHECK(rejected(p, 10, "top_k"));
    p = d, p.top_p = 0.0f;
    CHECK(rejected(p, 10, "top_p"));
    p = d, p.top_p = 1.01f;
    CHECK(rejected(p, 10, "top_p"));
    p = d, p.top_p = NAN;
    CHECK(rejected(p, 10, "top_p"));
    p = d, p.min_p = -0.1f;
    CHECK(rejected(p, 10, "min_p"));
    p = d, p.min_p = NAN;
    CHECK(rejected(p, 10, "min_p"));
    p = d, p.repetition_penalty = 0.0f;
    CHECK(rejected(p, 10, "repetition_penalty"));
    p = d, p.frequency_penalty = NAN;
    CHECK(rejected(p, 10, "frequency_penalty"));
    p = d, p.presence_penalty = -INFINITY;
    CHECK(rejected(p, 10, "presence_penalty"));
    p = d, p.penalty_last_n = -1;
    CHECK(rejected(p, 10, "penalty_last_n"));
    p = d, p.logit_bias = &bad_tok, p.n_logit_bias = 1;
    CHECK(rejected(p, 10, "logit_bias[0]"));
    p = d, p.logit_bias = &nan_bias, p.n_logit_bias = 1;
    CHECK(rejected(p, 10, "logit_bias[0]"));
    p = d, p.logit_bias = &pinf_bias, p.n_logit_bias = 1;
    CHECK(rejected(p, 10, "logit_bias[0]"));
    p = d, p.stop_tokens = &bad_stop, p.n_stop_tokens = 1;
    CHECK(rejected(p, 10, "stop_tokens[0]"));
    p = d, p.max_tokens = -1;
    CHECK(rejected(p, 10, "max_tokens"));
    p = d, p.n_top_logprobs = NURI_MAX_TOP_LOGPROBS + 1;
    CHECK(rejected(p, 10, "n_top_logprobs"));
    CHECK(rejected(d, 0, "n_vocab"));
}

/* ---- greedy ---- */

TEST(greedy_is_argmax_with_ties_to_lowest_id)
{
    nuri_sampler_params p = nuri_sampler_params_default();
    p.temperature = 0.0f;
    nuri_sampler *s = make(p, 6);
    REQUIRE(s);
    const float l[6] = {1.0f, 3.0f, -2.0f, 3.0f, 2.9f, 3.0f};
    int32_t tok = -1;
    CHECK(nuri_sampler_sample(s, l, &tok, NULL) == NURI_OK && tok == 1);
    const float all_equal[6] = {0, 0, 0, 0, 0, 0};
    CHECK(nuri_sampler_sample(s, all_equal, &tok, NULL) == NURI_OK && tok == 0);
    nuri_sampler_free(s);
}

/* ---- top-k ---- */

TEST(top_k_never_leaves_the_top_k)
{
    enum { V = 500, K = 7, DRAWS = 5000 };
    float l[V];
    random_logits(l, V, 1234);
    // the top K by hand: repeated argmax
    int in_top[V] = {0};
    for (int k = 0; k < K; k++) {
        int best = -1;
        for (int i = 0; i < V; i++)
            if (!in_top[i] && (best < 0 || l[i] > l[best])) best = i;
        in_top[best] = 1;
    }
    nuri_sampler_params p = nuri_sampler_params_default();
    p.top_k = K;
    p.temperature = 3.0f; // flatten, so every one of the K is drawn often
    p.seed = 7;
    nuri_sampler *s = make(p, V);
    REQUIRE(s);
    int hits[V] = {0}, outside = 0;
    for (int d = 0; d < DRAWS; d++) {
        int32_t tok;
        REQUIRE(nuri_sampler_sample(s, l, &tok, NULL) == NURI_OK);
        hits[tok]++;
        outside += !in_top[tok];
    }
    CHECK(outside == 0);
    for (int i = 0; i < V; i++)
        if (in_top[i]) CHECKF(hits[i] > 0, "top-k token %d never drawn", i);
    nuri_sampler_free(s);
}

TEST(top_k_ties_keep_the_lowest_ids)
{
    nuri_sampler_params p = nuri_sampler_params_default();
    p.top_k = 2;
    nuri_sampler *s = make(p, 5);
    REQUIRE(s);
    const float l[5] = {1.0f, 5.0f, 5.0f, 0.0f, 5.0f};
    int32_t ids[5];
    float pr[5];
    CHECK(kept(s, l, ids, pr) == 2 && ids[0] == 1 && ids[1] == 2);
    nuri_sampler_free(s);
}

/* ---- top-p ---- */

TEST(top_p_keeps_the_smallest_set_whose_mass_reaches_p)
{
    // ids deliberately not in probability order: token 2 is the most likely
    const double probs[5] = {0.15, 0.05, 0.5, 0.3, 0.0};
    float l[5];
    logits_from_probs(probs, 4, l);
    l[4] = -INFINITY; // a banned token is never kept
    const struct {
        float top_p;
        int32_t n;
    } cases[] = {
        {0.3f, 1},  {0.5f, 1},  // reaching exactly 0.5 with the first token
        {0.51f, 2}, {0.8f, 2},  // exactly 0.8 = 0.5 + 0.3
        {0.81f, 3}, {0.95f, 3}, // exactly 0.95
        {0.96f, 4}, {1.0f, 4},  // off
    };
    const int32_t order[4] = {2, 3, 0, 1};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        nuri_sampler_params p = nuri_sampler_params_default();
        p.top_p = cases[c].top_p;
        nuri_sampler *s = make(p, 5);
        REQUIRE(s);
        int32_t ids[5];
        float pr[5];
        int32_t n = kept(s, l, ids, pr);
        CHECKF(n == cases[c].n, "top_p %.2f kept %d, want %d", cases[c].top_p, n, cases[c].n);
        double mass = 0;
        for (int32_t i = 0; i < cases[c].n; i++) mass += probs[order[i]];
        for (int32_t i = 0; i < n && i < cases[c].n; i++) {
            CHECK(ids[i] == order[i]);
            CHECKF(fabs(pr[i] - probs[order[i]] / mass) < 1e-6, "renormalized p %g", pr[i]);
        }
        nuri_sampler_free(s);
    }
}

/* ---- min-p ---- */

TEST(min_p_keeps_exactly_tokens_at_or_above_min_p_times_p_max)
{
    // p_max = 0.4; min_p 0.25 -> threshold 0.1: 0.1 stays, 0.099 goes
    const double probs[6] = {0.099, 0.4, 0.1, 0.2, 0.151, 0.05};
    float l[6];
    logits_from_probs(probs, 6, l);
    nuri_sampler_params p = nuri_sampler_params_default();
    p.min_p = 0.25f;
    nuri_sampler *s = make(p, 6);
    REQUIRE(s);
    int32_t ids[6];
    float pr[6];
    int32_t n = kept(s, l, ids, pr);
    CHECK(n == 4);
    const int32_t want[4] = {1, 3, 4, 2};
    for (int32_t i = 0; i < n && i < 4; i++) CHECK(ids[i] == want[i]);
    nuri_sampler_free(s);

    p.min_p = 1.0f; // only tokens tied with the best
    s = make(p, 6);
    REQUIRE(s);
    CHECK(kept(s, l, ids, pr) == 1 && ids[0] == 1 && pr[0] == 1.0f);
    nuri_sampler_free(s);
}

/* ---- penalties ---- */

/* The logits after bias and penalties, up to a constant: log p_i at temperature 1, shifted so that
 * token `ref` (untouched) reads its raw logit. */
static void effective_logits(nuri_sampler *s, const float *l, int32_t nv, int32_t ref, float *eff)
{
    int32_t ids[MAXV], n;
    float pr[MAXV];
    for (int32_t i = 0; i < nv; i++) eff[i] = -INFINITY;
    if (nuri_sampler_distribution(s, l, ids, pr, &n) != NURI_OK) return;
    double ref_logp = 0;
    for (int32_t i = 0; i < n; i++)
        if (ids[i] == ref) ref_logp = log(pr[i]);
    for (int32_t i = 0; i < n; i++) eff[ids[i]] = (float)(log(pr[i]) - ref_logp + l[ref]);
}

TEST(penalties_change_exactly_the_recent_tokens_by_the_expected_amount)
{
    enum { V = 8 };
    const float l[V] = {2.0f, -2.0f, 1.0f, 0.5f, -1.0f, 3.0f, 0.0f, 4.0f};
    const int32_t history[6] = {0, 1, 1, 4, 0, 0};
    nuri_sampler_params p = nuri_sampler_params_default();
    p.repetition_penalty = 2.0f;
    p.frequency_penalty = 0.5f;
    p.presence_penalty = 0.25f;
    p.penalty_last_n = 64;
    nuri_sampler *s = make(p, V);
    REQUIRE(s);
    for (int i = 0; i < 6; i++) REQUIRE(nuri_sampler_accept(s, history[i]) == NURI_OK);
    float eff[V];
    effective_logits(s, l, V, 7, eff);
    // token 0: count 3, positive: 2/2 - 3*0.5 - 0.25; token 1: count 2, negative: -2*2 - 1 - 0.25;
    // token 4: count 1: -1*2 - 0.5 - 0.25; every other token unchanged
    const float want[V] = {-0.75f, -5.25f, 1.0f, 0.5f, -2.75f, 3.0f, 0.0f, 4.0f};
    for (int i = 0; i < V; i++) CHECKF(fabsf(eff[i] - want[i]) < 1e-4f, "token %d: %g", i, eff[i]);

    // the window: with penalty_last_n 3 only {4, 0, 0} count (token 1 fell out)
    nuri_sampler_free(s);
    p.penalty_last_n = 3;
    s = make(p, V);
    REQUIRE(s);
    for (int i = 0; i < 6; i++) REQUIRE(nuri_sampler_accept(s, history[i]) == NURI_OK);
    effective_logits(s, l, V, 7, eff);
    const float want3[V] = {2.0f / 2 - 1.0f - 0.25f, -2.0f, 1.0f, 0.5f, -2.75f, 3.0f, 0.0f, 4.0f};
    for (int i = 0; i < V; i++) CHECKF(fabsf(eff[i] - want3[i]) < 1e-4f, "token %d", i);

    // reset forgets the history
    nuri_sampler_reset(s);
    effective_logits(s, l, V, 7, eff);
    for (int i = 0; i < V; i++) CHECKF(fabsf(eff[i] - l[i]) < 1e-4f, "token %d after reset", i);
    CHECK(nuri_sampler_accept(s, V) == NURI_ERR_INVALID_ARG);
    nuri_sampler_free(s);
}

/* ---- logit bias ---- */

TEST(logit_bias_bans_and_shifts)
{
    enum { V = 4 };
    const float l[V] = {1.0f, 3.0f, 2.0f, 0.0f};
    const nuri_logit_bias bias[3] = {{1, -100.0f}, {3, 1.5f}, {3, 0.5f}}; // repeated ids add up
    nuri_sampler_params p = nuri_sampler_params_default();
    p.logit_bias = bias;
    p.n_logit_bias = 3;
    nuri_sampler *s = make(p, V);
    REQUIRE(s);
    float eff[V];
    effective_logits(s, l, V, 0, eff);
    CHECK(eff[1] == -INFINITY); // banned: not in the distribution at all
    CHECK(fabsf(eff[2] - 2.0f) < 1e-4f);
    CHECK(fabsf(eff[3] - 2.0f) < 1e-4f);
    nuri_sampler_free(s);

    p.temperature = 0.0f; // greedy goes to the next best
    const nuri_logit_bias ban_inf = {1, -INFINITY};
    p.logit_bias = &ban_inf;
    p.n_logit_bias = 1;
    s = make(p, V);
    REQUIRE(s);
    int32_t tok;
    CHECK(nuri_sampler_sample(s, l, &tok, NULL) == NURI_OK && tok == 2);
    nuri_sampler_free(s);

    const nuri_logit_bias ban_all[V] = {{0, -100}, {1, -100}, {2, -100}, {3, -1000}};
    p.logit_bias = ban_all;
    p.n_logit_bias = V;
    for (int greedy = 0; greedy < 2; greedy++) {
        p.temperature = greedy ? 0.0f : 1.0f;
        s = make(p, V);
        REQUIRE(s);
        CHECK(nuri_sampler_sample(s, l, &tok, NULL) == NURI_ERR_INVALID_ARG);
        CHECK(strstr(nuri_last_error(), "no token") != NULL);
        nuri_sampler_free(s);
    }
}

/* ---- seeds ---- */

static void draw_sequence(uint64_t seed, const float *l, int32_t nv, int32_t *out, int n)
{
    nuri_sampler_params p = nuri_sampler_params_default();
    p.seed = seed;
    p.top_k = 50;
    p.top_p = 0.9f;
    nuri_sampler *s = make(p, nv);
    for (int i = 0; i < n; i++) {
        out[i] = -1;
        if (s) nuri_sampler_sample(s, l, &out[i], NULL);
    }
    nuri_sampler_free(s);
}

TEST(same_seed_gives_identical_sequences_and_different_seeds_differ)
{
    enum { V = 1000, N = 200 };
    float l[V];
    random_logits(l, V, 99);
    int32_t a[N], b[N], c[N];
    draw_sequence(42, l, V, a, N);
    draw_sequence(42, l, V, b, N);
    draw_sequence(43, l, V, c, N);
    CHECK(!memcmp(a, b, sizeof a));
    int differ = 0;
    for (int i = 0; i < N; i++) differ += a[i] != c[i];
    CHECKF(differ > N / 2, "only %d of %d draws differ", differ, N);

    // reset reseeds: the sequence starts over
    nuri_sampler_params p = nuri_sampler_params_default();
    p.seed = 42, p.top_k = 50, p.top_p = 0.9f;
    nuri_sampler *s = make(p, V);
    REQUIRE(s);
    int32_t t;
    for (int i = 0; i < 10; i++) nuri_sampler_sample(s, l, &t, NULL);
    nuri_sampler_reset(s);
    int same = 1;
    for (int i = 0; i < N; i++) same &= nuri_sampler_sample(s, l, &t, NULL) == NURI_OK && t == a[i];
    CHECK(same);
    nuri_sampler_free(s);
}

/* ---- statistics ---- */

TEST(draw_frequencies_match_the_distribution_chi_square)
{
    enum { V = 6, DRAWS = 20000 };
    const double probs[V] = {0.06, 0.4, 0.04, 0.25, 0.15, 0.1};
    float l[V];
    logits_from_probs(probs, V, l);
    nuri_sampler_params p = nuri_sampler_params_default();
    p.seed = 2024;
    nuri_sampler *s = make(p, V);
    REQUIRE(s);
    int counts[V] = {0};
    for (int d = 0; d < DRAWS; d++) {
        int32_t tok;
        REQUIRE(nuri_sampler_sample(s, l, &tok, NULL) == NURI_OK);
        counts[tok]++;
    }
    double chi2 = 0;
    for (int i = 0; i < V; i++) {
        double e = probs[i] * DRAWS;
        chi2 += (counts[i] - e) * (counts[i] - e) / e;
    }
    // 5 degrees of freedom: P(chi2 > 20.52) = 0.001
    CHECKF(chi2 < 20.52, "chi-square %.2f", chi2);
    nuri_sampler_free(s);
}

TEST(temperature_divides_the_log_probability_gaps)
{
    enum { V = 4 };
    const float l[V] = {0.0f, 1.0f, -1.5f, 2.0f};
    const float temps[3] = {0.5f, 1.0f, 2.0f};
    for (int t = 0; t < 3; t++) {
        nuri_sampler_params p = nuri_sampler_params_default();
        p.temperature = temps[t];
        nuri_sampler *s = make(p, V);
        REQUIRE(s);
        int32_t ids[V], n;
        float pr[V];
        REQUIRE(nuri_sampler_distribution(s, l, ids, pr, &n) == NURI_OK && n == V);
        double logp[V];
        for (int i = 0; i < n; i++) logp[ids[i]] = log(pr[i]);
        for (int i = 0; i < V; i++)
            CHECKF(fabs((logp[i] - logp[3]) - (l[i] - l[3]) / temps[t]) < 1e-4, "T %g token %d",
                   temps[t], i);
        nuri_sampler_free(s);
    }
}

/* ---- logprobs ---- */

TEST(logprobs_are_the_raw_log_softmax_with_sorted_alternatives)
{
    enum { V = 5 };
    const float l[V] = {1.0f, 3.0f, 3.0f, NAN, 2.0f};
    const nuri_logit_bias bias = {0, 50.0f}; // forces token 0; logprobs must not see the bias
    nuri_sampler_params p = nuri_sampler_params_default();
    p.temperature = 0.0f;
    p.logit_bias = &bias;
    p.n_logit_bias = 1;
    p.n_top_logprobs = 3;
    nuri_sampler *s = make(p, V);
    REQUIRE(s);
    nuri_token_logprobs lp;
    int32_t tok;
    REQUIRE(nuri_sampler_sample(s, l, &tok, &lp) == NURI_OK);
    CHECK(tok == 0);
    const double lse = log(exp(1.0) + 2 * exp(3.0) + exp(2.0)); // NaN counts as -inf
    CHECK(lp.chosen.token == 0 && fabs(lp.chosen.logprob - (1.0 - lse)) < 1e-5);
    REQUIRE(lp.n_top == 3);
    CHECK(lp.top[0].token == 1 && lp.top[1].token == 2 && lp.top[2].token == 4);
    CHECK(fabs(lp.top[0].logprob - (3.0 - lse)) < 1e-5);
    CHECK(lp.top[0].logprob == lp.top[1].logprob);
    CHECK(fabs(lp.top[2].logprob - (2.0 - lse)) < 1e-5);
    nuri_sampler_free(s);

    p.n_top_logprobs = NURI_MAX_TOP_LOGPROBS; // more than the vocabulary: all of it
    s = make(p, V);
    REQUIRE(s);
    REQUIRE(nuri_sampler_sample(s, l, &tok, &lp) == NURI_OK);
    CHECK(lp.n_top == V && lp.top[3].token == 0 && lp.top[4].token == 3);
    CHECK(lp.top[4].logprob == -INFINITY);
    nuri_sampler_free(s);
}

/* ---- NaN / inf ---- */

TEST(nan_logits_are_never_drawn_and_inf_logits_share_the_mass)
{
    enum { V = 6, DRAWS = 2000 };
    const float l[V] = {NAN, INFINITY, 5.0f, INFINITY, -INFINITY, NAN};
    nuri_sampler_params p = nuri_sampler_params_default();
    p.temperature = 0.7f;
    p.seed = 5;
    nuri_sampler *s = make(p, V);
    REQUIRE(s);
    int counts[V] = {0};
    for (int d = 0; d < DRAWS; d++) {
        int32_t tok;
        REQUIRE(nuri_sampler_sample(s, l, &tok, NULL) == NURI_OK);
        counts[tok]++;
    }
    CHECK(counts[1] + counts[3] == DRAWS);
    CHECKF(counts[1] > 900 && counts[3] > 900, "%d / %d", counts[1], counts[3]);
    nuri_sampler_free(s);

    p.temperature = 0.0f;
    s = make(p, V);
    REQUIRE(s);
    int32_t tok;
    CHECK(nuri_sampler_sample(s, l, &tok, NULL) == NURI_OK && tok == 1);
    const float all_bad[V] = {NAN, NAN, -INFINITY, NAN, NAN, -INFINITY};
    CHECK(nuri_sampler_sample(s, all_bad, &tok, NULL) == NURI_ERR_INVALID_ARG);
    nuri_sampler_free(s);
}

/* ---- finishing ---- */

TEST(finish_reason_reports_stop_tokens_and_max_tokens)
{
    const int32_t stops[2] = {2, 3};
    nuri_sampler_params p = nuri_sampler_params_default();
    p.temperature = 0.0f;
    p.stop_tokens = stops;
    p.n_stop_tokens = 2;
    p.max_tokens = 2;
    nuri_sampler *s = make(p, 4);
    REQUIRE(s);
    const float l[4] = {1, 0, 0, 0};
    int32_t tok;
    CHECK(nuri_sampler_finish_reason(s, 3) == NURI_FINISH_STOP);
    CHECK(nuri_sampler_sample(s, l, &tok, NULL) == NURI_OK);
    CHECK(nuri_sampler_finish_reason(s, tok) == NURI_FINISH_NONE);
    CHECK(nuri_sampler_sample(s, l, &tok, NULL) == NURI_OK);
    CHECK(nuri_sampler_finish_reason(s, tok) == NURI_FINISH_LENGTH);
    CHECK(nuri_sampler_finish_reason(s, 2) == NURI_FINISH_STOP); // a stop token wins
    nuri_sampler_reset(s);
    CHECK(nuri_sampler_finish_reason(s, 0) == NURI_FINISH_NONE);
    nuri_sampler_free(s);
}

/* ---- stop strings ---- */

/* Streams pieces one after another through the helper; returns what was emitted, "|STOP<k>" on a
 * hit, and the final flush otherwise. */
static const char *stream(const char *const *pieces, int n_pieces, const char *const *stops,
                          size_t n_stops, char *out)
{
    char text[256] = "";
    size_t len = 0, emitted = 0;
    out[0] = 0;
    for (int i = 0; i < n_pieces; i++) {
        size_t pl = strlen(pieces[i]);
        memcpy(text + len, pieces[i], pl);
        len += pl;
        nuri_stop_result r;
        nuri_stop_strings_check(text, len, emitted, stops, n_stops, &r);
        if (r.n_safe < emitted) return "went backwards";
        strncat(out, text + emitted, r.n_safe - emitted);
        emitted = r.n_safe;
        if (r.hit) {
            sprintf(out + strlen(out), "|STOP%d", r.stop_index);
            return out;
        }
    }
    strncat(out, text + emitted, len - emitted); // generation ended another way: flush
    return out;
}

static size_t safe_now(const char *text, size_t emitted, const char *const *stops, size_t n)
{
    nuri_stop_result r;
    nuri_stop_strings_check(text, strlen(text), emitted, stops, n, &r);
    return r.hit ? (size_t)-1 : r.n_safe;
}

TEST(stop_string_split_across_tokens_is_held_back_then_cut)
{
    const char *stops[1] = {"world"};
    CHECK(safe_now("Hello wor", 0, stops, 1) == 6);
    CHECK(safe_now("Hello wo!", 0, stops, 1) == 9); // not a prefix any more
    const char *pieces[4] = {"Hel", "lo wo", "rl", "d and more"};
    char out[256];
    CHECK(!strcmp(stream(pieces, 4, stops, 1, out), "Hello |STOP0"));
    const char *near[3] = {"Hello wo", "rl", "!"};
    CHECK(!strcmp(stream(near, 3, stops, 1, out), "Hello worl!"));
}

TEST(stop_string_hold_back_respects_multi_byte_utf8)
{
    const char *stops[1] = {"\xE2\x86\x92"
                            "end"};                     // "→end"
    CHECK(safe_now("a\xE2\x86\x92", 0, stops, 1) == 1); // a whole "→" may start the stop
    CHECK(safe_now("a\xE2\x86", 0, stops, 1) == 1);     // half of it too
    CHECK(safe_now("a\xE2\x86\x92"
                   "e!",
                   0, stops, 1) == 6); // decided: all of it
    const char *none[1] = {"zzz"};
    CHECK(safe_now("caf\xC3", 0, none, 1) == 3);     // never end inside a character
    CHECK(safe_now("caf\xC3\xA9", 0, none, 1) == 5); // complete "é"
    CHECK(safe_now("\xF0\x9F\x98", 0, none, 1) == 0);
    const char *pieces[4] = {"x\xE2", "\x86",
                             "\x92"
                             "en",
                             "d"};
    char out[256];
    CHECK(!strcmp(stream(pieces, 4, stops, 1, out), "x|STOP0"));
}

TEST(stop_strings_with_overlapping_prefixes)
{
    const char *stops[2] = {"abcd", "bcx"};
    CHECK(safe_now("xabc", 0, stops, 2) == 1); // "abc" (of abcd) is longer than "bc" (of bcx)
    nuri_stop_result r;
    nuri_stop_strings_check("xabcx", 5, 1, stops, 2, &r);
    CHECK(r.hit && r.stop_index == 1 && r.n_safe == 2); // "bcx" completes inside "abc" + "x"
    // a stop string that overlaps itself: "aab" inside "aaab"
    const char *self[1] = {"aab"};
    const char *pieces[4] = {"a", "a", "a", "b"};
    char out[256];
    CHECK(!strcmp(stream(pieces, 4, self, 1, out), "a|STOP0"));
    // two stops found: the earliest occurrence wins; at the same place, the first listed
    const char *two[3] = {"cd", "bc", "b"};
    nuri_stop_strings_check("abcd", 4, 0, two, 3, &r);
    CHECK(r.hit && r.stop_index == 1 && r.n_safe == 1);
    // empty stop strings are ignored; emitted bytes are never taken back
    const char *empty[2] = {"", "yz"};
    CHECK(safe_now("xy", 0, empty, 2) == 1);
    CHECK(safe_now("xy", 2, empty, 2) == 2);
}

int main(void)
{
    RUN(bad_params_are_rejected_naming_the_parameter);
    RUN(greedy_is_argmax_with_ties_to_lowest_id);
    RUN(top_k_never_leaves_the_top_k);
    RUN(top_k_ties_keep_the_lowest_ids);
    RUN(top_p_keeps_the_smallest_set_whose_mass_reaches_p);
    RUN(min_p_keeps_exactly_tokens_at_or_above_min_p_times_p_max);
    RUN(penalties_change_exactly_the_recent_tokens_by_the_expected_amount);
    RUN(logit_bias_bans_and_shifts);
    RUN(same_seed_gives_identical_sequences_and_different_seeds_differ);
    RUN(draw_frequencies_match_the_distribution_chi_square);
    RUN(temperature_divides_the_log_probability_gaps);
    RUN(logprobs_are_the_raw_log_softmax_with_sorted_alternatives);
    RUN(nan_logits_are_never_drawn_and_inf_logits_share_the_mass);
    RUN(finish_reason_reports_stop_tokens_and_max_tokens);
    RUN(stop_string_split_across_tokens_is_held_back_then_cut);
    RUN(stop_string_hold_back_respects_multi_byte_utf8);
    RUN(stop_strings_with_overlapping_prefixes);
    TEST_DONE();
}
