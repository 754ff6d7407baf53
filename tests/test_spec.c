/*
 * test_spec.c: speculative decoding (src/spec/speculate.h, sampler.h "speculation").
 *
 * The verification rule is checked statistically: over many draws of a draft token x from q, the
 * token nuri_sampler_verify returns must be distributed as the target's p (the distribution the
 * sampler's chain gives, with its temperature and cuts), by a chi-square test at a bound that a
 * wrong rule (accepting too often, or resampling from p instead of max(0, p - q)) exceeds many
 * times over; and end to end, the second token of a real model's generation with a draft model
 * (sampled drafts, so the rejection rule runs) against its exact distribution, computed by
 * decoding every first token. Greedy speculation gives the plain tokens, with a good draft model,
 * an unrelated one and prompt lookup. The draws use fixed seeds, so every run is the same run.
 */
#include "model/mkmodel.h"
#include "model/model.h"
#include "model/quantize.h"
#include "sample/sampler.h"
#include "spec/speculate.h"
#include "test.h"

#include <unistd.h>

/* ---- a test RNG (splitmix64), independent of the sampler's ---- */

static uint64_t rng_state = 0x1234567;
static double uniform(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1.0p-53;
}

static int32_t draw(const float *q, int32_t n)
{
    double u = uniform(), cum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        cum += q[i];
        if (u < cum) return i;
    }
    return n - 1;
}

/* Chi-square of counts[0..n) against probabilities p over total draws (cells of p < 1e-9 must be
 * empty: a count there is a failure, returned as infinity). */
static double chi_square(const long *counts, const double *p, int32_t n, long total)
{
    double x2 = 0.0;
    for (int32_t i = 0; i < n; i++) {
        double e = p[i] * (double)total;
        if (p[i] < 1e-9) {
            if (counts[i]) return INFINITY;
            continue;
        }
        x2 += ((double)counts[i] - e) * ((double)counts[i] - e) / e;
    }
    return x2;
}

/* ---- the rule, on hand-made distributions ---- */

#define V 8

/* target logits, draft distribution q, sampler params: the verified tokens against p */
static void rule_case(const float *logits, const float *q, nuri_sampler_params sp, long n_draws,
                      double *x2_out, double *acc_out, double *acc_expected)
{
    nuri_sampler *s = NULL;
    REQUIRE(nuri_sampler_new(&sp, V, &s) == NURI_OK);
    int32_t ids[V], n;
    float probs[V];
    double p[V] = {0};
    REQUIRE(nuri_sampler_distribution(s, logits, ids, probs, &n) == NURI_OK);
    for (int32_t i = 0; i < n; i++) p[ids[i]] = probs[i];
    long counts[V] = {0}, acc = 0;
    for (long t = 0; t < n_draws; t++) {
        int32_t x = draw(q, V), tok;
        bool a;
        if (nuri_sampler_verify(s, logits, x, q, &tok, &a) != NURI_OK) {
            CHECK(0);
            break;
        }
        CHECK(!a || tok == x);
        counts[tok]++;
        acc += a;
    }
    double e = 0.0;
    for (int32_t i = 0; i < V; i++) e += fmin(p[i], q[i]);
    *x2_out = chi_square(counts, p, V, n_draws);
    *acc_out = (double)acc / (double)n_draws;
    *acc_expected = e;
    nuri_sampler_free(s);
}

// chi-square, 7 degrees of freedom: P(X2 > 40) is about 1e-6
#define X2_BOUND 40.0

TEST(rejection_sampling_keeps_the_target_distribution)
{
    const float logits[V] = {2.0f, 1.5f, 1.0f, 0.5f, 0.0f, -0.5f, -1.0f, -3.0f};
    const float q[V] = {0.05f, 0.30f, 0.05f, 0.30f, 0.10f, 0.10f, 0.05f, 0.05f};
    nuri_sampler_params sp = nuri_sampler_params_default();
    sp.seed = 5;
    double x2, acc, acc_e;
    rule_case(logits, q, sp, 200000, &x2, &acc, &acc_e);
    CHECKF(x2 < X2_BOUND, "chi-square %.1f", x2);
    // the acceptance rate is sum min(p, q)
    CHECKF(fabs(acc - acc_e) < 0.005, "accepted %.4f, expected %.4f", acc, acc_e);
}

TEST(rejection_sampling_applies_the_samplers_cuts_to_p)
{
    // p after temperature 0.7, top-k 5 and min-p 0.05; q puts mass where p has none
    const float logits[V] = {1.0f, 2.0f, 0.2f, 1.7f, -1.0f, 0.9f, 0.1f, 1.2f};
    const float q[V] = {0.10f, 0.10f, 0.20f, 0.05f, 0.20f, 0.05f, 0.10f, 0.20f};
    nuri_sampler_params sp = nuri_sampler_params_default();
    sp.temperature = 0.7f;
    sp.top_k = 5;
    sp.min_p = 0.05f;
    sp.seed = 9;
    double x2, acc, acc_e;
    rule_case(logits, q, sp, 200000, &x2, &acc, &acc_e);
    CHECKF(x2 < X2_BOUND, "chi-square %.1f", x2);
    CHECKF(fabs(acc - acc_e) < 0.005, "accepted %.4f, expected %.4f", acc, acc_e);
}

TEST(greedy_verification_is_the_argmax)
{
    const float logits[V] = {0.1f, 0.3f, 2.5f, 0.4f, 2.5f, 0.0f, 0.0f, 0.0f};
    const float q[V] = {0.5f, 0.5f, 0, 0, 0, 0, 0, 0};
    nuri_sampler_params sp = nuri_sampler_params_default();
    sp.temperature = 0.0f;
    nuri_sampler *s = NULL;
    REQUIRE(nuri_sampler_new(&sp, V, &s) == NURI_OK);
    int32_t tok;
    bool a;
    for (int32_t x = 0; x < V; x++) {
        CHECK(nuri_sampler_verify(s, logits, x, NULL, &tok, &a) == NURI_OK);
        CHECK(tok == 2 && a == (x == 2)); // ties to the lower id, as plain greedy
    }
    CHECK(nuri_sampler_verify(s, logits, 0, q, &tok, &a) == NURI_OK && tok == 2 && !a);
    nuri_sampler_free(s);
}

TEST(a_deterministic_draft_is_checked_with_the_plain_samplers_draws)
{
    // q = NULL: the same tokens as nuri_sampler_sample with the same seed, draft or not
    const float logits[V] = {1.0f, 0.9f, 0.8f, 0.7f, 0.6f, 0.5f, 0.4f, 0.3f};
    nuri_sampler_params sp = nuri_sampler_params_default();
    sp.seed = 77;
    nuri_sampler *a = NULL, *b = NULL;
    REQUIRE(nuri_sampler_new(&sp, V, &a) == NURI_OK);
    REQUIRE(nuri_sampler_new(&sp, V, &b) == NURI_OK);
    for (int i = 0; i < 1000; i++) {
        int32_t ta, tb;
        bool acc;
        CHECK(nuri_sampler_sample(a, logits, &ta, NULL) == NURI_OK);
        CHECK(nuri_sampler_verify(b, logits, i % V, NULL, &tb, &acc) == NURI_OK);
        CHECK(ta == tb && acc == (tb == i % V));
    }
    nuri_sampler_free(a);
    nuri_sampler_free(b);
}

TEST(prompt_lookup_drafts_what_followed_the_latest_match)
{
    const int32_t h[] = {1, 2, 3, 9, 1, 2, 3, 7, 8, 5, 2, 3};
    int32_t d[8];
    // "2 3" was last followed by "7 8 5 2 3"; three tokens asked
    CHECK(nuri_spec_lookup(h, 12, 3, d) == 3 && d[0] == 7 && d[1] == 8 && d[2] == 5);
    const int32_t u[] = {1, 2, 3, 4};
    CHECK(nuri_spec_lookup(u, 4, 3, d) == 0);
}

/* ---- end to end, with models ---- */

static char dir[64];
static char target_path[128], draft_path[128], rough_path[128], other_path[128];

static bool make_models(void)
{
    snprintf(dir, sizeof dir, "/tmp/nuri-test-spec.XXXXXX");
    if (!mkdtemp(dir)) return false;
    snprintf(target_path, sizeof target_path, "%s/target.gguf", dir);
    snprintf(draft_path, sizeof draft_path, "%s/draft.gguf", dir);
    snprintf(rough_path, sizeof rough_path, "%s/rough.gguf", dir);
    snprintf(other_path, sizeof other_path, "%s/other.gguf", dir);
    nuri_mkmodel_params p = {.arch = "llama", .shape = "tiny", .type = "F32", .seed = 3};
    if (nuri_mkmodel(&p, target_path) != NURI_OK) return false;
    // drafts: the same weights at 8 bits (mostly right), and at 4 (often wrong); a random model's
    // near-uniform distributions make the argmax fragile, so fewer bits drop below 10%
    if (nuri_quantize_file(target_path, draft_path, "Q8_0", false, NULL) != NURI_OK ||
        nuri_quantize_file(target_path, rough_path, "Q4_0", false, NULL) != NURI_OK)
        return false;
    nuri_mkmodel_params o = p;
    o.seed = 99;
    o.type = "Q8_0";
    return nuri_mkmodel(&o, other_path) == NURI_OK;
}

static void remove_models(void)
{
    unlink(target_path);
    unlink(draft_path);
    unlink(rough_path);
    unlink(other_path);
    rmdir(dir);
}

/* n tokens after prompt, with speculation sp (or plain when sp is NULL) */
static bool generate(nuri_model *m, const nuri_spec_params *spp, nuri_sampler_params smp_p,
                     const int32_t *prompt, int32_t n_prompt, int32_t n, int32_t *out,
                     nuri_spec_counts *counts)
{
    nuri_ctx_params cp = {.n_ctx = 256, .n_logits = NURI_SPEC_MAX_DRAFT + 1};
    nuri_ctx *c = NULL;
    nuri_sampler *s = NULL;
    nuri_spec *sp = NULL;
    bool ok = nuri_ctx_new(m, &cp, &c) == NURI_OK &&
              nuri_sampler_new(&smp_p, m->hp.n_vocab, &s) == NURI_OK &&
              nuri_ctx_decode(c, prompt, n_prompt, 0, false) == NURI_OK;
    if (ok && spp)
        ok = nuri_spec_new(spp, c, 0, s, &sp) == NURI_OK &&
             nuri_spec_begin(sp, prompt, n_prompt) == NURI_OK;
    for (int32_t i = 0; ok && i < n; i++) {
        if (sp) {
            ok = nuri_spec_next(sp, n - i, &out[i]) == NURI_OK;
        } else {
            ok = nuri_sampler_sample(s, nuri_ctx_logits(c, 0), &out[i], NULL) == NURI_OK &&
                 nuri_sampler_accept(s, out[i]) == NURI_OK &&
                 nuri_ctx_decode(c, &out[i], 1, n_prompt + i, false) == NURI_OK;
        }
    }
    if (ok && sp) {
        // the KV holds what was generated, and the speculator says so
        const int32_t *held;
        int32_t nh = nuri_spec_end(sp, &held);
        ok = nh == nuri_ctx_seq_len(c, 0) && nh >= n_prompt + n - 1 &&
             !memcmp(held + n_prompt, out, (size_t)(nh - n_prompt) * sizeof *out);
        if (counts) *counts = nuri_spec_get_counts(sp);
    }
    nuri_spec_free(sp);
    nuri_sampler_free(s);
    nuri_ctx_free(c);
    return ok;
}

TEST(greedy_speculation_gives_the_plain_tokens)
{
    nuri_model *m = NULL, *d = NULL, *o = NULL;
    REQUIRE(nuri_model_load(target_path, &m) == NURI_OK);
    REQUIRE(nuri_model_load(draft_path, &d) == NURI_OK);
    REQUIRE(nuri_model_load(other_path, &o) == NURI_OK);
    nuri_sampler_params g = nuri_sampler_params_default();
    g.temperature = 0.0f;
    const int32_t prompts[3][6] = {
        {1, 17, 33, 17, 33, 17}, {1, 5, 6, 7, 8, 9}, {1, 400, 401, 402, 400, 401}};
    long accepted_good = 0, drafted_good = 0, accepted_other = 0;
    for (int pi = 0; pi < 3; pi++) {
        int32_t plain[40], spec[40];
        REQUIRE(generate(m, NULL, g, prompts[pi], 6, 40, plain, NULL));
        const nuri_spec_params cases[] = {
            {.target = m, .draft_max = 5, .draft = d},
            {.target = m, .draft_max = 4, .draft = o},
            {.target = m, .draft_max = 8, .lookup = true},
            {.target = m, .draft_max = 3, .lookup = true, .draft = d, .draft_min = 2},
        };
        for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
            nuri_spec_counts k;
            CHECK(generate(m, &cases[ci], g, prompts[pi], 6, 40, spec, &k));
            CHECKF(!memcmp(plain, spec, sizeof plain), "prompt %d, case %zu", pi, ci);
            if (ci == 0) accepted_good += k.accepted, drafted_good += k.drafted;
            if (ci == 1) accepted_other += k.accepted;
            CHECK(k.passes < 40 || k.accepted == 0);
        }
    }
    // the harder-quantized draft is mostly right, the unrelated model rarely
    CHECKF(accepted_good * 2 > drafted_good, "accepted %ld of %ld", accepted_good, drafted_good);
    CHECKF(accepted_other * 4 < accepted_good, "other %ld, good %ld", accepted_other,
           accepted_good);
    nuri_model_free(o);
    nuri_model_free(d);
    nuri_model_free(m);
}

// The 16 outcomes' probabilities here are 0.0028 to 0.40: 4000 draws expect 11 or more of each,
// 2000 (the sanitizer run, which checks memory, not statistics: half its time here) 5.6 or more,
// still enough for the chi-square test's approximation.
#if defined(__SANITIZE_ADDRESS__)
#define SPEC_TRIALS 2000
#else
#define SPEC_TRIALS 4000
#endif

TEST(sampled_speculation_keeps_the_distribution_of_the_output)
{
    // the first two tokens after a prompt at temperature 1, top-k 4: their exact distribution is
    // p(t1) p(t2 | t1), 16 cells; with sampled drafts, t2 is where the rejection rule decides
    nuri_model *m = NULL, *d = NULL;
    REQUIRE(nuri_model_load(target_path, &m) == NURI_OK);
    REQUIRE(nuri_model_load(rough_path, &d) == NURI_OK);
    const int32_t prompt[4] = {1, 40, 41, 42};
    nuri_sampler_params sp = nuri_sampler_params_default();
    sp.top_k = 4;
    int32_t id1[4], id2[4][4], n;
    float pr[4];
    double p[16];
    nuri_ctx_params cp = {.n_ctx = 64};
    nuri_ctx *c = NULL;
    nuri_sampler *s = NULL;
    REQUIRE(nuri_ctx_new(m, &cp, &c) == NURI_OK);
    REQUIRE(nuri_sampler_new(&sp, m->hp.n_vocab, &s) == NURI_OK);
    REQUIRE(nuri_ctx_decode(c, prompt, 4, 0, false) == NURI_OK);
    REQUIRE(nuri_sampler_distribution(s, nuri_ctx_logits(c, 0), id1, pr, &n) == NURI_OK && n == 4);
    float p1[4];
    memcpy(p1, pr, sizeof pr);
    for (int a = 0; a < 4; a++) {
        REQUIRE(nuri_ctx_decode(c, &id1[a], 1, 4, false) == NURI_OK);
        REQUIRE(nuri_sampler_distribution(s, nuri_ctx_logits(c, 0), id2[a], pr, &n) == NURI_OK &&
                n == 4);
        for (int b = 0; b < 4; b++) p[a * 4 + b] = (double)p1[a] * pr[b];
    }
    nuri_sampler_free(s);
    nuri_ctx_free(c);

    long counts[16] = {0}, total = 0, accepted = 0, drafted = 0;
    nuri_spec_params spp = {.target = m, .draft_max = 3, .draft = d};
    for (int trial = 0; trial < SPEC_TRIALS; trial++) {
        sp.seed = 1000 + (uint64_t)trial;
        int32_t out[3]; // t2 comes from the pass that checks a draft behind t1
        nuri_spec_counts k;
        if (!generate(m, &spp, sp, prompt, 4, 3, out, &k)) {
            CHECK(0);
            break;
        }
        accepted += k.accepted;
        drafted += k.drafted;
        int a = -1, b = -1;
        for (int i = 0; i < 4; i++) {
            if (id1[i] == out[0]) a = i;
        }
        for (int i = 0; a >= 0 && i < 4; i++) {
            if (id2[a][i] == out[1]) b = i;
        }
        CHECKF(a >= 0 && b >= 0, "tokens %d %d outside top-k", out[0], out[1]);
        if (a < 0 || b < 0) break;
        counts[a * 4 + b]++;
        total++;
    }
    // 15 degrees of freedom: P(X2 > 50) is about 1e-5
    double x2 = chi_square(counts, p, 16, total);
    CHECKF(x2 < 50.0, "chi-square %.1f over %ld draws", x2, total);
    // the draft is checked, and both outcomes happen
    CHECKF(drafted > 0 && accepted > 0 && accepted < drafted, "drafted %ld, accepted %ld", drafted,
           accepted);
    nuri_model_free(d);
    nuri_model_free(m);
}

TEST(a_draft_with_another_vocabulary_is_refused_by_name)
{
    nuri_model *m = NULL, *q = NULL;
    REQUIRE(nuri_model_load(target_path, &m) == NURI_OK);
    REQUIRE(nuri_model_load("tests/data/models/qwen2-tiny-Q8_0.gguf", &q) == NURI_OK);
    nuri_status st = nuri_spec_vocab_check(m, q);
    if (st == NURI_OK) { // the same token count: the texts must differ somewhere
        CHECK(0);
    } else {
        CHECKF(strstr(nuri_last_error(), "draft model's") != NULL, "%s", nuri_last_error());
    }
    CHECK(nuri_spec_vocab_check(m, m) == NURI_OK);
    nuri_model_free(q);
    nuri_model_free(m);
}

int main(void)
{
    RUN(rejection_sampling_keeps_the_target_distribution);
    RUN(rejection_sampling_applies_the_samplers_cuts_to_p);
    RUN(greedy_verification_is_the_argmax);
    RUN(a_deterministic_draft_is_checked_with_the_plain_samplers_draws);
    RUN(prompt_lookup_drafts_what_followed_the_latest_match);
    if (!make_models()) {
        printf("FAIL making the test models: %s\n", nuri_last_error());
        test_failed++;
        TEST_DONE();
    }
    RUN(greedy_speculation_gives_the_plain_tokens);
    RUN(sampled_speculation_keeps_the_distribution_of_the_output);
    RUN(a_draft_with_another_vocabulary_is_refused_by_name);
    remove_models();
    TEST_DONE();
}
