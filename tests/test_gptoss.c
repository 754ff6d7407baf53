/*
 * test_gptoss.c: the gpt-oss architecture (model.c, forward.c, moe.c; its numerics are checked
 * against llama.cpp by tests/oracle.test.sh, this file checks what an oracle cannot see).
 *
 * The router: top-k on the (biased) logits, then a softmax over the k chosen alone; equal logits
 * go to the lower expert id; the margin of the choice. The forward pass: a prompt that crosses the
 * sliding window gives bit-identical logits run as one batch, token by token, and with 1 to 4
 * threads; sequences batched together get what each gets alone. The loader: the alternating
 * window (the first layer sliding), YaRN read from rope.scaling.*, total against active
 * parameters, and files missing what gpt-oss needs refused with a message naming it.
 */
#include "base/status.h"
#include "gguf/gguf.h"
#include "kernels/types.h"
#include "model/mkmodel.h"
#include "model/model.h"
#include "model/moe.h"
#include "model_fixture.h"
#include "test.h"

#include <unistd.h>

/* ---- the router ---- */

TEST(the_router_takes_the_largest_logits_then_a_softmax_over_them)
{
    const float logits[5] = {1.0f, 3.0f, 2.0f, 0.0f, -7.0f};
    float w[2], margin;
    int32_t ids[2];
    nuri_moe_route_topk_softmax(logits, 5, 2, ids, w, &margin);
    CHECKF(ids[0] == 1 && ids[1] == 2, "%d %d", ids[0], ids[1]);
    CHECKF(margin == 1.0f, "margin %g", (double)margin); // logit 2 chosen, 1 not
    // e^3 / (e^3 + e^2) = 1 / (1 + e^-1): the experts not chosen take no share
    CHECKF(fabsf(w[0] - 0.7310586f) < 1e-6f && fabsf(w[1] - 0.2689414f) < 1e-6f, "%g %g",
           (double)w[0], (double)w[1]);
    // rounded as ggml: expf of (logit - max), the sum in double, times the float of 1 / sum
    const float e1 = expf(2.0f - 3.0f);
    const float inv = (float)(1.0 / (1.0 + (double)e1));
    CHECK(w[0] == 1.0f * inv && w[1] == e1 * inv);
}

TEST(equal_logits_go_to_the_lower_expert_id_and_nan_gives_distinct_ids)
{
    const float logits[6] = {0.5f, 2.0f, 0.5f, 2.0f, 2.0f, -1.0f};
    float w[6], margin;
    int32_t ids[6];
    nuri_moe_route_topk_softmax(logits, 6, 3, ids, w, &margin);
    CHECKF(ids[0] == 1 && ids[1] == 3 && ids[2] == 4, "%d %d %d", ids[0], ids[1], ids[2]);
    CHECK(margin == 1.5f && w[0] == w[1] && w[1] == w[2]);
    nuri_moe_route_topk_softmax(logits, 6, 6, ids, w, &margin);
    CHECK(isinf(margin) && ids[3] == 0 && ids[4] == 2 && ids[5] == 5);
    float nan[4] = {NAN, NAN, NAN, NAN};
    nuri_moe_route_topk_softmax(nan, 4, 3, ids, w, NULL);
    for (int j = 0; j < 3; j++) {
        CHECK(ids[j] >= 0 && ids[j] < 4);
        for (int k = 0; k < j; k++) CHECK(ids[j] != ids[k]);
    }
}

/* ---- models ---- */

static char tmpdir[64];

static nuri_status make_file(const char *shape, const char *type, int seed, int32_t n_swa,
                             char *path, size_t cap)
{
    snprintf(path, cap, "%s/gpt-oss-%s-%s-%d.gguf", tmpdir, shape, type, seed);
    nuri_mkmodel_params p = {
        .arch = "gpt-oss", .shape = shape, .type = type, .seed = (uint64_t)seed, .n_swa = n_swa};
    return nuri_mkmodel(&p, path);
}

static nuri_model *make_model(const char *shape, const char *type, int seed, int32_t n_swa)
{
    char path[160];
    nuri_model *m = NULL;
    if (make_file(shape, type, seed, n_swa, path, sizeof path) != NURI_OK ||
        nuri_model_load(path, &m) != NURI_OK)
        fprintf(stderr, "  %s: %s\n", path, nuri_last_error());
    unlink(path);
    return m;
}

enum { N_PROMPT = 40 }; // crosses every window used here

/* Logits of every position: the whole prompt as one batch, or token by token. */
static float *run(nuri_model *m, bool one_batch, int threads)
{
    int32_t toks[N_PROMPT];
    fixture_prompt(toks, N_PROMPT, 0);
    return fixture_logits(m, toks, N_PROMPT, one_batch, threads);
}

TEST(logits_are_the_same_batched_or_one_at_a_time_with_1_to_4_threads)
{
    static const struct {
        const char *shape, *type;
        int32_t n_swa;
    } cases[] = {
        {"gpt-oss-tiny", "F32", 0},
        {"gpt-oss-tiny", "Q8_0", 7},
        {"gpt-oss-tiny", "MXFP4", 0},
        {"moe-a3b-mini", "Q4_K_M", 5},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        nuri_model *m = make_model(cases[k].shape, cases[k].type, 30 + (int)k, cases[k].n_swa);
        REQUIRE(m != NULL);
        const size_t bytes = sizeof(float) * (size_t)m->hp.n_vocab * N_PROMPT;
        float *batch = run(m, true, 1);
        REQUIRE(batch != NULL);
        float *single = run(m, false, 1);
        CHECKF(single && memcmp(batch, single, bytes) == 0, "%s %s: batched != one at a time",
               cases[k].shape, cases[k].type);
        for (int threads = 2; threads <= 4; threads++) {
            float *b2 = run(m, true, threads), *s2 = run(m, false, threads);
            CHECKF(b2 && memcmp(batch, b2, bytes) == 0, "%s %s: batch, %d threads differ",
                   cases[k].shape, cases[k].type, threads);
            CHECKF(s2 && memcmp(batch, s2, bytes) == 0, "%s %s: decode, %d threads differ",
                   cases[k].shape, cases[k].type, threads);
            free(b2);
            free(s2);
        }
        free(batch);
        free(single);
        nuri_model_free(m);
    }
}

/* Three prompts (one shorter than the window, two longer) prefilled together and decoded together
 * for a few steps, against each run alone. */
TEST(sequences_batched_together_match_each_run_alone)
{
    nuri_model *m = make_model("gpt-oss-tiny", "Q8_0", 41, 0);
    REQUIRE(m != NULL);
    fixture_batched_against_alone(m);
    nuri_model_free(m);
}

TEST(the_loader_reads_the_window_yarn_and_counts_active_parameters)
{
    nuri_model *m = make_model("gpt-oss-tiny", "F32", 5, 0);
    REQUIRE(m != NULL);
    const nuri_hparams *hp = &m->hp;
    CHECK(hp->arch == NURI_ARCH_GPTOSS && hp->n_swa == 16);
    for (int il = 0; il < hp->n_layer; il++)
        CHECKF(m->layers[il].swa == (il % 2 == 0) && m->layers[il].rope, "layer %d", il);
    CHECK(hp->rope_yarn && hp->rope_freq_scale == 1.0f / 32.0f && hp->n_ctx_orig == 4096);
    // 1 + 0.1 ln 32, to float rounding
    CHECKF(fabsf(hp->rope_mscale - 1.3465736f) < 1e-6f, "mscale %.9g", (double)hp->rope_mscale);
    CHECK(hp->moe_topk_softmax && hp->swiglu_oai && !hp->moe_norm_w);
    uint64_t total, active;
    nuri_model_params(m, &total, &active);
    // per layer, 8 - 4 experts unused: gate, up, down (256 x 256 each) and their bias rows
    const uint64_t per_expert = 3ull * 256 * 256 + 256 + 256 + 256;
    CHECKF(total - active == (uint64_t)hp->n_layer * 4 * per_expert, "total %llu active %llu",
           (unsigned long long)total, (unsigned long long)active);
    nuri_model_free(m);
}

/* ---- files that cannot run ---- */

static nuri_status load_changed(const char *from, const char *drop_tensor, const char *drop_key,
                                const char *str_key, const char *str_val, const char *u32_key,
                                uint32_t u32_val)
{
    const fixture_change ch = {drop_tensor, drop_key, str_key, str_val, u32_key, u32_val};
    return fixture_load_changed(from, &ch, NULL);
}

static void expect_refused(nuri_status s, const char *words)
{
    fixture_expect_refused(s, words);
}

TEST(gpt_oss_files_missing_what_it_needs_are_refused_by_name)
{
    char path[160];
    REQUIRE(make_file("gpt-oss-tiny", "Q8_0", 3, 0, path, sizeof path) == NURI_OK);
    CHECK(load_changed(path, NULL, NULL, NULL, NULL, NULL, 0) == NURI_OK); // the copy itself runs
    static const char *const tensors[] = {
        "blk.1.attn_sinks.weight", "blk.0.ffn_gate_inp.bias",  "blk.3.ffn_gate_exps.bias",
        "blk.2.ffn_up_exps.bias",  "blk.1.ffn_down_exps.bias", "blk.0.post_attention_norm.weight"};
    for (size_t i = 0; i < sizeof tensors / sizeof tensors[0]; i++)
        expect_refused(load_changed(path, tensors[i], NULL, NULL, NULL, NULL, 0), tensors[i]);
    expect_refused(
        load_changed(path, NULL, "gpt-oss.attention.sliding_window", NULL, NULL, NULL, 0),
        "gpt-oss.attention.sliding_window");
    expect_refused(
        load_changed(path, NULL, "gpt-oss.expert_feed_forward_length", NULL, NULL, NULL, 0),
        "gpt-oss.expert_feed_forward_length");
    expect_refused(load_changed(path, NULL, NULL, "gpt-oss.rope.scaling.type", "longrope", NULL, 0),
                   "'gpt-oss.rope.scaling.type' = 'longrope'");
    // its expert width must match the tensors
    expect_refused(
        load_changed(path, NULL, NULL, NULL, NULL, "gpt-oss.expert_feed_forward_length", 128),
        "ffn_gate_exps");
    // without rope scaling it runs (plain rope), as llama.cpp would
    CHECK(load_changed(path, NULL, "gpt-oss.rope.scaling.type", NULL, NULL, NULL, 0) == NURI_OK);
    unlink(path);
    // sinks or expert biases in another architecture are refused, not ignored
    nuri_mkmodel_params p = {.arch = "qwen3moe", .shape = "moe-tiny", .type = "F32", .seed = 1};
    REQUIRE(nuri_mkmodel(&p, path) == NURI_OK);
    CHECK(load_changed(path, NULL, NULL, NULL, NULL, NULL, 0) == NURI_OK);
    expect_refused(load_changed(path, "+blk.1.attn_sinks.weight", NULL, NULL, NULL, NULL, 0),
                   "'blk.1.attn_sinks.weight' (attention sinks) is not supported");
    expect_refused(load_changed(path, "+blk.0.ffn_gate_inp.bias", NULL, NULL, NULL, NULL, 0),
                   "'blk.0.ffn_gate_inp.bias' (router bias) is not supported");
    unlink(path);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/nuri-test-gptoss-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(the_router_takes_the_largest_logits_then_a_softmax_over_them);
    RUN(equal_logits_go_to_the_lower_expert_id_and_nan_gives_distinct_ids);
    RUN(logits_are_the_same_batched_or_one_at_a_time_with_1_to_4_threads);
    RUN(sequences_batched_together_match_each_run_alone);
    RUN(the_loader_reads_the_window_yarn_and_counts_active_parameters);
    RUN(gpt_oss_files_missing_what_it_needs_are_refused_by_name);
    rmdir(tmpdir);
    TEST_DONE();
}
