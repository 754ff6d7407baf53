/*
 * test_golden.c: nuri's next-token log-probabilities against llama.cpp's, for every model in
 * tests/data/models/ (see tests/data/README.md for where the goldens come from).
 *
 * For each <model>.gguf.golden.json: the 32-token prompt runs in one batch; at every position the
 * golden top-10 tokens are compared by id with nuri's log-probabilities. Tolerances are the ones
 * the golden data's README recommends for an implementation that rounds where llama.cpp rounds: F32
 * mean |d| <= 1e-3, max |d| <= 1e-2;   F16 5e-3 / 3e-2;   BF16 1e-2 / 1e-1; quantized: KL mean <=
 * 5e-3, KL at any position <= 3e-2, top-1 agreement >= 30/32, with KL = sum over the golden top-40
 * of p_golden * (lp_golden - lp_nuri). Then greedy, teacher-forced through the KV cache one token
 * at a time: nuri's argmax at step k must be greedy[k] wherever llama.cpp's best-vs-second logit
 * gap is >= 0.05 (F32/F16), 0.2 (BF16) or 0.5 (quantized).
 */
#include "model/logits.h"
#include "model/model.h"
#include "test.h"

#include <dirent.h>
#include <jansson.h>

#define MODELS_DIR "tests/data/models"

typedef struct stats {
    double mean_abs, max_abs, kl_mean, kl_max;
    int top1_agree, n_pos, greedy_checked, greedy_bad;
} stats;

static double logsumexp(const float *l, int32_t n)
{
    double max = -INFINITY, sum = 0.0;
    for (int32_t i = 0; i < n; i++)
        if (l[i] > max) max = l[i];
    for (int32_t i = 0; i < n; i++) sum += exp((double)l[i] - max);
    return max + log(sum);
}

/* Compares one model with its golden file; fills st. Returns 0 on success, -1 if it could not run.
 */
static int compare_model(const char *golden_path, const char *model_path, int n_threads, stats *st)
{
    memset(st, 0, sizeof *st);
    json_error_t jerr;
    json_t *g = json_load_file(golden_path, 0, &jerr);
    if (!g) {
        fprintf(stderr, "  %s: %s\n", golden_path, jerr.text);
        return -1;
    }
    json_t *prompt = json_object_get(g, "prompt"), *positions = json_object_get(g, "positions");
    json_t *greedy = json_object_get(g, "greedy"), *gap = json_object_get(g, "greedy_gap");
    int32_t n_prompt = (int32_t)json_array_size(prompt),
            n_greedy = (int32_t)json_array_size(greedy);
    int32_t toks[128];
    if (n_prompt < 1 || n_prompt + n_greedy > 128) {
        json_decref(g);
        return -1;
    }
    for (int32_t i = 0; i < n_prompt; i++)
        toks[i] = (int32_t)json_integer_value(json_array_get(prompt, i));
    for (int32_t i = 0; i < n_greedy; i++)
        toks[n_prompt + i] = (int32_t)json_integer_value(json_array_get(greedy, i));

    nuri_model *m;
    if (nuri_model_load(model_path, &m) != NURI_OK) {
        fprintf(stderr, "  load %s: %s\n", model_path, nuri_last_error());
        json_decref(g);
        return -1;
    }
    nuri_ctx *c;
    nuri_ctx_params cp = {.n_ctx = 128, .n_batch = 64, .n_threads = n_threads, .n_logits = 64};
    if (nuri_ctx_new(m, &cp, &c) != NURI_OK || nuri_ctx_decode(c, toks, n_prompt, 0, true)) {
        fprintf(stderr, "  run %s: %s\n", model_path, nuri_last_error());
        nuri_model_free(m);
        json_decref(g);
        return -1;
    }
    const int32_t n_vocab = m->hp.n_vocab;
    double sum_abs = 0;
    int n_abs = 0;
    for (size_t pi = 0; pi < json_array_size(positions); pi++) {
        json_t *pe = json_array_get(positions, pi);
        int32_t pos = (int32_t)json_integer_value(json_object_get(pe, "pos"));
        json_t *top = json_object_get(pe, "top");
        const float *l = nuri_ctx_logits(c, pos);
        double lse = logsumexp(l, n_vocab), kl = 0;
        for (size_t j = 0; j < json_array_size(top); j++) {
            json_t *pair = json_array_get(top, j);
            int32_t id = (int32_t)json_integer_value(json_array_get(pair, 0));
            double lp_g = json_number_value(json_array_get(pair, 1));
            double lp_n = (double)l[id] - lse;
            kl += exp(lp_g) * (lp_g - lp_n);
            if (j < 10) {
                double d = fabs(lp_g - lp_n);
                sum_abs += d;
                n_abs++;
                if (d > st->max_abs) st->max_abs = d;
            }
        }
        int32_t g_top1 = (int32_t)json_integer_value(json_array_get(json_array_get(top, 0), 0));
        st->top1_agree += nuri_logits_argmax(l, n_vocab) == g_top1;
        st->kl_mean += kl;
        if (kl > st->kl_max) st->kl_max = kl;
        st->n_pos++;
    }
    st->mean_abs = n_abs ? sum_abs / n_abs : 0;
    st->kl_mean = st->n_pos ? st->kl_mean / st->n_pos : 0;

    // greedy, teacher-forced, one token at a time through the cache
    const char *type = strrchr(model_path, '-') + 1;
    double min_gap = !strncmp(type, "F32", 3) || !strncmp(type, "F16", 3) ? 0.05
                     : !strncmp(type, "BF16", 4)                          ? 0.2
                                                                          : 0.5;
    for (int32_t k = 0; k < n_greedy; k++) {
        if (k > 0 && nuri_ctx_decode(c, &toks[n_prompt + k - 1], 1, n_prompt + k - 1, false)) {
            st->greedy_bad++;
            break;
        }
        const float *l = nuri_ctx_logits(c, k == 0 ? n_prompt - 1 : 0);
        if (json_number_value(json_array_get(gap, k)) < min_gap) continue;
        st->greedy_checked++;
        int32_t got = nuri_logits_argmax(l, n_vocab);
        if (got != toks[n_prompt + k]) {
            st->greedy_bad++;
            fprintf(stderr, "  greedy step %d: nuri %d, llama.cpp %d\n", k, got,
                    toks[n_prompt + k]);
        }
    }
    nuri_ctx_free(c);
    nuri_model_free(m);
    json_decref(g);
    return 0;
}

static int n_models_checked;

static void check_one(const char *golden_name)
{
    char golden[512], model[512];
    snprintf(golden, sizeof golden, "%s/%s", MODELS_DIR, golden_name);
    snprintf(model, sizeof model, "%s/%.*s", MODELS_DIR,
             (int)(strlen(golden_name) - strlen(".golden.json")), golden_name);
    stats st;
    int rc = compare_model(golden, model, 1, &st);
    CHECKF(rc == 0, "%s could not be run", model);
    if (rc) return;
    n_models_checked++;
    const char *type = strrchr(model, '-') + 1;
    printf("  %-28s mean|d| %.2e max|d| %.2e KL mean %.2e max %.2e top1 %d/%d greedy %d/%d\n",
           golden_name + 0, st.mean_abs, st.max_abs, st.kl_mean, st.kl_max, st.top1_agree, st.n_pos,
           st.greedy_checked - st.greedy_bad, st.greedy_checked);
    if (!strncmp(type, "F32", 3)) {
        CHECKF(st.mean_abs <= 1e-3 && st.max_abs <= 1e-2, "%s: F32 tolerance", model);
    } else if (!strncmp(type, "F16", 3)) {
        CHECKF(st.mean_abs <= 5e-3 && st.max_abs <= 3e-2, "%s: F16 tolerance", model);
    } else if (!strncmp(type, "BF16", 4)) {
        CHECKF(st.mean_abs <= 1e-2 && st.max_abs <= 1e-1, "%s: BF16 tolerance", model);
    } else {
        CHECKF(st.kl_mean <= 5e-3 && st.kl_max <= 3e-2, "%s: KL budget", model);
        CHECKF(st.top1_agree >= 30, "%s: top-1 agreement %d/32", model, st.top1_agree);
    }
    CHECKF(st.greedy_bad == 0, "%s: %d greedy mismatches", model, st.greedy_bad);
    CHECKF(st.greedy_checked >= 10, "%s: only %d greedy steps checked", model, st.greedy_checked);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

TEST(every_model_matches_llama_cpp)
{
    DIR *d = opendir(MODELS_DIR);
    REQUIRE(d != NULL);
    char *names[64];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 64)
        if (strstr(e->d_name, ".golden.json")) names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], cmp_str);
    for (int i = 0; i < n; i++) {
        check_one(names[i]);
        free(names[i]);
    }
    CHECKF(n_models_checked == 23, "checked %d models, expected 23", n_models_checked);
}

TEST(two_threads_give_identical_logits)
{
    const char *model = MODELS_DIR "/qwen2-tiny-Q4_K.gguf";
    nuri_model *m;
    REQUIRE(nuri_model_load(model, &m) == NURI_OK);
    int32_t toks[40];
    for (int i = 0; i < 40; i++) toks[i] = 1 + (i * 97) % 4000;
    float *first = NULL;
    for (int t = 1; t <= 2; t++) {
        nuri_ctx *c;
        nuri_ctx_params cp = {.n_ctx = 64, .n_batch = 64, .n_threads = t, .n_logits = 64};
        REQUIRE(nuri_ctx_new(m, &cp, &c) == NURI_OK);
        REQUIRE(nuri_ctx_decode(c, toks, 40, 0, true) == NURI_OK);
        size_t bytes = sizeof(float) * 40 * (size_t)m->hp.n_vocab;
        if (!first) {
            first = malloc(bytes);
            memcpy(first, nuri_ctx_logits(c, 0), bytes);
        } else {
            CHECK(memcmp(first, nuri_ctx_logits(c, 0), bytes) == 0);
        }
        nuri_ctx_free(c);
    }
    free(first);
    nuri_model_free(m);
}

TEST(batched_and_one_by_one_decoding_agree)
{
    // The same tokens through one batch or one at a time give the same last logits (to rounding:
    // the same arithmetic runs, only grouped differently).
    nuri_model *m;
    REQUIRE(nuri_model_load(MODELS_DIR "/llama-tiny-Q8_0.gguf", &m) == NURI_OK);
    int32_t toks[20];
    for (int i = 0; i < 20; i++) toks[i] = 1 + (i * 131) % 4000;
    nuri_ctx *a, *b;
    nuri_ctx_params cp = {.n_ctx = 32, .n_batch = 32, .n_threads = 1};
    REQUIRE(nuri_ctx_new(m, &cp, &a) == NURI_OK && nuri_ctx_new(m, &cp, &b) == NURI_OK);
    CHECK(nuri_ctx_decode(a, toks, 20, 0, false) == NURI_OK);
    for (int i = 0; i < 20; i++) CHECK(nuri_ctx_decode(b, &toks[i], 1, i, false) == NURI_OK);
    const float *la = nuri_ctx_logits(a, 0), *lb = nuri_ctx_logits(b, 0);
    CHECK(memcmp(la, lb, sizeof(float) * (size_t)m->hp.n_vocab) == 0);
    nuri_ctx_free(a);
    nuri_ctx_free(b);
    nuri_model_free(m);
}

TEST(bad_tokens_and_positions_are_errors)
{
    nuri_model *m;
    REQUIRE(nuri_model_load(MODELS_DIR "/llama-tiny-Q8_0.gguf", &m) == NURI_OK);
    nuri_ctx *c;
    nuri_ctx_params cp = {.n_ctx = NURI_KV_PAGE, .n_batch = 8, .n_threads = 1};
    REQUIRE(nuri_ctx_new(m, &cp, &c) == NURI_OK);
    int32_t bad[2] = {1, 4096};
    CHECK(nuri_ctx_decode(c, bad, 2, 0, false) == NURI_ERR_INVALID_ARG);
    CHECK(strstr(nuri_last_error(), "4096") != NULL);
    int32_t neg = -1;
    CHECK(nuri_ctx_decode(c, &neg, 1, 0, false) == NURI_ERR_INVALID_ARG);
    int32_t ok[1] = {5};
    CHECK(nuri_ctx_decode(c, ok, 1, NURI_KV_PAGE, false) == NURI_ERR_LIMIT);
    CHECK(nuri_ctx_decode(c, ok, 1, 5, false) == NURI_ERR_INVALID_ARG); // the sequence is empty
    CHECK(strstr(nuri_last_error(), "cannot continue at position 5") != NULL);
    CHECK(nuri_ctx_decode(c, ok, 1, 0, false) == NURI_OK);
    CHECK(nuri_ctx_decode(c, ok, 1, 1, false) == NURI_OK);
    nuri_ctx_free(c);
    nuri_model_free(m);
}

int main(void)
{
    RUN(every_model_matches_llama_cpp);
    RUN(two_threads_give_identical_logits);
    RUN(batched_and_one_by_one_decoding_agree);
    RUN(bad_tokens_and_positions_are_errors);
    TEST_DONE();
}
