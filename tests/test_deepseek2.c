/*
 * test_deepseek2.c: the deepseek2 architecture (model.c, forward.c's multi-head latent attention,
 * moe.c's routers; its numerics are checked against llama.cpp by tests/oracle.test.sh, this file
 * checks what an oracle cannot see).
 *
 * The forward pass: a prompt gives bit-identical logits run as one batch, token by token, and with
 * 1 to 4 threads; sequences batched together get what each gets alone; the KV cache holds one row
 * of kv_lora_rank + rope dims per token and layer (no V), and a sequence's KV written back from a
 * snapshot continues exactly as the original. The loader: MLA's keys, DeepSeek's YaRN attention
 * scale, the shared experts and the skipped next-token-prediction layer, total against active
 * parameters, and files nuri cannot run refused with a message naming what is missing.
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

/* ---- the router's group limit ---- */

/* 8 experts in 4 groups of 2; sigmoid(0) = 0.5, so the scores are 0.5 + bias. Group scores (the
 * two best added): 1.0, 1.3, 1.05, 1.2; the 2 best groups are 1 and 3, so expert 4 (score 0.9,
 * the best of all, in group 2) may not be chosen. */
TEST(the_group_limit_keeps_the_router_to_the_best_groups)
{
    const float logits[8] = {0};
    const float bias[8] = {0.0f, 0.0f, 0.1f, 0.2f, 0.4f, -0.35f, 0.1f, 0.1f};
    float probs[8], w[3], margin;
    int32_t ids[3];
    nuri_moe_route_sigmoid_grouped(logits, bias, 8, 3, 4, 2, true, 1.0f, probs, ids, w, &margin);
    CHECKF(ids[0] == 3 && ids[1] == 2 && ids[2] == 6, "%d %d %d", ids[0], ids[1], ids[2]);
    // the weights are the unbiased sigmoids, renormalised: a third each
    CHECK(w[0] == w[1] && w[1] == w[2] && fabsf(w[0] - 1.0f / 3.0f) < 1e-7f);
    // experts: 0.6 chosen last, 0.6 (expert 7) left: 0; groups: 1.2 - 1.05
    CHECKF(margin == 0.0f, "margin %g", (double)margin);
    const float bias2[8] = {0.0f, 0.0f, 0.1f, 0.2f, 0.4f, -0.35f, 0.3f, -0.2f};
    nuri_moe_route_sigmoid_grouped(logits, bias2, 8, 2, 4, 2, false, 1.0f, probs, ids, w, &margin);
    // groups 1.0, 1.3, 1.05, 1.1: groups 1 and 3 open; experts 6 (0.8) and 3 (0.7)
    CHECKF(ids[0] == 6 && ids[1] == 3, "%d %d", ids[0], ids[1]);
    CHECKF(fabsf(margin - 0.05f) < 1e-6f, "margin %g", (double)margin); // 1.1 - 1.05
}

static char tmpdir[64];

static nuri_status make_file(const char *shape, const char *type, int seed, char *path, size_t cap)
{
    snprintf(path, cap, "%s/deepseek2-%s-%s-%d.gguf", tmpdir, shape, type, seed);
    nuri_mkmodel_params p = {
        .arch = "deepseek2", .shape = shape, .type = type, .seed = (uint64_t)seed};
    return nuri_mkmodel(&p, path);
}

static nuri_model *make_model(const char *shape, const char *type, int seed)
{
    char path[160];
    nuri_model *m = NULL;
    if (make_file(shape, type, seed, path, sizeof path) != NURI_OK ||
        nuri_model_load(path, &m) != NURI_OK)
        fprintf(stderr, "  %s: %s\n", path, nuri_last_error());
    unlink(path);
    return m;
}

enum { N_PROMPT = 40 }; // more than a KV page

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
    } cases[] = {
        {"ds2-tiny", "F32"}, {"ds3-tiny", "Q8_0"},         {"ds3-tiny", "Q4_K_M"},
        {"ds2-tiny", "F16"}, {"ds3-grouped-tiny", "Q6_K"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        nuri_model *m = make_model(cases[k].shape, cases[k].type, 30 + (int)k);
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

/* Three prompts prefilled together and decoded together for a few steps, against each run alone.
 */
TEST(sequences_batched_together_match_each_run_alone)
{
    nuri_model *m = make_model("ds3-tiny", "Q8_0", 41);
    REQUIRE(m != NULL);
    fixture_batched_against_alone(m);
    nuri_model_free(m);
}

/* The cache row is the latent and the rope part, F16, once per token and layer: 96 dims for the
 * tiny shapes, where plain multi-head attention over the same heads would keep 4 heads of 80-dim
 * keys and 48-dim values. A snapshot of 35 positions written into another sequence continues
 * exactly as the original does, also past a shared (forked) page. */
TEST(the_cache_holds_the_latent_alone_and_snapshots_restore_it)
{
    nuri_model *m = make_model("ds3-tiny", "F16", 12);
    REQUIRE(m != NULL);
    const nuri_hparams *hp = &m->hp;
    nuri_ctx *c;
    nuri_ctx_params cp = {.n_ctx = 256, .n_batch = 64, .n_threads = 2, .n_seq = 3};
    REQUIRE(nuri_ctx_new(m, &cp, &c) == NURI_OK);
    CHECKF(nuri_ctx_kv_bytes(c, 1) == (size_t)hp->n_layer * (64 + 32) * 2, "%zu bytes per token",
           nuri_ctx_kv_bytes(c, 1));
    enum { N = 35 };
    int32_t toks[N + 1];
    fixture_prompt(toks, N + 1, 5);
    REQUIRE(nuri_ctx_decode(c, toks, N, 0, false) == NURI_OK);
    void *snap = malloc(nuri_ctx_kv_bytes(c, N));
    REQUIRE(snap != NULL);
    REQUIRE(nuri_ctx_seq_kv_read(c, 0, N, snap) == NURI_OK);
    const size_t nv = (size_t)hp->n_vocab;
    float *want = malloc(sizeof(float) * nv), *got = malloc(sizeof(float) * nv);
    REQUIRE(want && got);
    nuri_batch b = {.n = 1,
                    .token = &toks[N],
                    .pos = (const int32_t[]){N},
                    .seq = (const int32_t[]){0},
                    .logits = (const int8_t[]){1}};
    REQUIRE(nuri_ctx_decode_batch(c, &b) == NURI_OK);
    memcpy(want, nuri_ctx_logits(c, 0), sizeof(float) * nv);
    REQUIRE(nuri_ctx_seq_kv_write(c, 1, N, N, snap) == NURI_OK);
    b.seq = (const int32_t[]){1};
    REQUIRE(nuri_ctx_decode_batch(c, &b) == NURI_OK);
    memcpy(got, nuri_ctx_logits(c, 0), sizeof(float) * nv);
    CHECK(memcmp(want, got, sizeof(float) * nv) == 0);
    // a fork shares the pages; writing at position N copies the shared last page first
    REQUIRE(nuri_ctx_seq_fork(c, 1, 2, N) == NURI_OK);
    b.seq = (const int32_t[]){2};
    REQUIRE(nuri_ctx_decode_batch(c, &b) == NURI_OK);
    CHECK(memcmp(want, nuri_ctx_logits(c, 0), sizeof(float) * nv) == 0);
    free(snap);
    free(want);
    free(got);
    nuri_ctx_free(c);
    nuri_model_free(m);
}

TEST(the_loader_reads_mla_yarn_and_the_experts_and_counts_active_parameters)
{
    nuri_model *m = make_model("ds3-tiny", "F32", 5);
    REQUIRE(m != NULL);
    const nuri_hparams *hp = &m->hp;
    CHECK(hp->arch == NURI_ARCH_DEEPSEEK2 && hp->mla && hp->rope_type == NURI_ROPE_NORM);
    CHECK(hp->n_layer == 3 && hp->n_nextn == 1); // the 4th layer of the file is skipped
    CHECK(hp->n_lora_q == 96 && hp->n_lora_kv == 64 && hp->n_qk_nope == 48 && hp->n_rot == 32);
    CHECK(hp->n_v_mla == 48 && hp->head_dim == 96 && hp->n_head_kv == 1);
    CHECK(hp->rope_yarn && hp->rope_freq_scale == 1.0f / 40.0f && hp->n_ctx_orig == 4096);
    // mscale_all_dim 1: kq_scale = (1 + 0.1 ln 40)^2 / sqrt(80); the rope's magnitude 1
    const float g = 1.0f + 0.1f * logf(40.0f);
    CHECKF(fabsf(hp->attn_scale - g * g / sqrtf(80.0f)) < 1e-6f, "kq_scale %.9g",
           (double)hp->attn_scale);
    CHECKF(fabsf(hp->rope_mscale - 1.0f) < 1e-6f, "mscale %.9g", (double)hp->rope_mscale);
    CHECK(hp->moe_sigmoid && hp->moe_norm_w && hp->moe_scale == 2.5f);
    CHECK(hp->n_dense_lead == 1 && hp->n_ff_shexp == 2 * 128 && hp->n_ff_exp == 128);
    CHECK(!m->layers[0].ffn_gate_inp.data && m->layers[1].ffn_gate_inp.data);
    CHECK(m->layers[2].exp_probs_b.data && m->layers[1].wq_a.data && !m->layers[1].wq.data);
    uint64_t total, active;
    nuri_model_params(m, &total, &active);
    // 2 layers with experts, 16 - 4 unused in each: gate, up, down (256 x 128 each)
    CHECKF(total - active == 2ull * 12 * 3 * 256 * 128, "total %llu active %llu",
           (unsigned long long)total, (unsigned long long)active);
    nuri_model_free(m);
    // DeepSeek-V2-Lite's way: no query compression, softmax router, no YaRN here
    m = make_model("ds2-tiny", "F32", 6);
    REQUIRE(m != NULL);
    hp = &m->hp;
    CHECK(hp->n_lora_q == 0 && m->layers[1].wq.data && !m->layers[1].wq_a.data);
    CHECK(!hp->moe_sigmoid && !hp->moe_norm_w && !hp->rope_yarn && hp->n_nextn == 0);
    CHECKF(hp->attn_scale == 1.0f / sqrtf(80.0f), "kq_scale %.9g", (double)hp->attn_scale);
    nuri_model_free(m);
}

static nuri_status load_changed(const char *from, const char *drop_tensor, const char *drop_key,
                                const char *u32_key, uint32_t u32_val);
static void expect_refused(nuri_status s, const char *words);

/* llama.cpp reads q_lora_rank only outside the "lite" layer counts (26, 27): a 27-layer file
 * needs no such key, a 3-layer one does. */
TEST(q_lora_rank_is_required_except_for_the_lite_layer_counts)
{
    char path[160];
    snprintf(path, sizeof path, "%s/deepseek2-lite.gguf", tmpdir);
    nuri_mkmodel_params p = {
        .arch = "deepseek2", .shape = "ds2-tiny", .type = "Q8_0", .seed = 9, .n_layer = 27};
    REQUIRE(nuri_mkmodel(&p, path) == NURI_OK);
    CHECK(load_changed(path, NULL, "deepseek2.attention.q_lora_rank", NULL, 0) == NURI_OK);
    unlink(path);
    REQUIRE(make_file("ds2-tiny", "Q8_0", 9, path, sizeof path) == NURI_OK);
    expect_refused(load_changed(path, NULL, "deepseek2.attention.q_lora_rank", NULL, 0),
                   "deepseek2.attention.q_lora_rank");
    unlink(path);
}

/* ---- files that cannot run ---- */

static nuri_status load_changed(const char *from, const char *drop_tensor, const char *drop_key,
                                const char *u32_key, uint32_t u32_val)
{
    const fixture_change ch = {
        .drop_tensor = drop_tensor, .drop_key = drop_key, .u32_key = u32_key, .u32_val = u32_val};
    return fixture_load_changed(from, &ch, NULL);
}

static void expect_refused(nuri_status s, const char *words)
{
    fixture_expect_refused(s, words);
}

TEST(deepseek2_files_nuri_cannot_run_are_refused_by_name)
{
    char path[160];
    REQUIRE(make_file("ds3-tiny", "Q8_0", 3, path, sizeof path) == NURI_OK);
    CHECK(load_changed(path, NULL, NULL, NULL, 0) == NURI_OK); // the copy itself runs
    static const char *const tensors[] = {
        "blk.1.attn_q_a.weight",      "blk.0.attn_q_a_norm.weight",  "blk.2.attn_q_b.weight",
        "blk.1.attn_kv_a_mqa.weight", "blk.0.attn_kv_a_norm.weight", "blk.2.attn_k_b.weight",
        "blk.1.attn_v_b.weight",      "blk.2.ffn_up_shexp.weight",   "blk.0.ffn_down.weight"};
    for (size_t i = 0; i < sizeof tensors / sizeof tensors[0]; i++)
        expect_refused(load_changed(path, tensors[i], NULL, NULL, 0), tensors[i]);
    // the older layout (attn_kv_b, no key_length_mla), grouped top-k, a missing q_lora_rank
    expect_refused(load_changed(path, NULL, "deepseek2.attention.key_length_mla", NULL, 0),
                   "older layout");
    expect_refused(load_changed(path, "+blk.1.attn_kv_b.weight", NULL, NULL, 0),
                   "'blk.1.attn_kv_b.weight' (the older deepseek2 layout)");
    expect_refused(load_changed(path, NULL, NULL, "deepseek2.expert_group_count", 8),
                   "deepseek2.expert_group_used_count"); // groups need their used count
    expect_refused(load_changed(path, NULL, NULL, "deepseek2.expert_group_count", 5),
                   "'deepseek2.expert_group_count' = 5: 16 experts do not split");
    expect_refused(load_changed(path, NULL, "deepseek2.attention.q_lora_rank", NULL, 0),
                   "deepseek2.attention.q_lora_rank");
    expect_refused(load_changed(path, NULL, NULL, "deepseek2.attention.key_length", 128),
                   "MLA needs 1, kv_lora_rank + rope.dimension_count = 96");
    expect_refused(load_changed(path, NULL, NULL, "deepseek2.expert_gating_func", 3),
                   "'deepseek2.expert_gating_func' = 3");
    expect_refused(load_changed(path, "+blk.1.ffn_gate_up_exps.weight", NULL, NULL, 0),
                   "fused gate and up experts");
    unlink(path);
    // a selection bias beside a softmax router is refused, not ignored
    REQUIRE(make_file("ds2-tiny", "F32", 4, path, sizeof path) == NURI_OK);
    CHECK(load_changed(path, NULL, NULL, NULL, 0) == NURI_OK);
    expect_refused(load_changed(path, "+blk.1.exp_probs_b.bias", NULL, NULL, 0),
                   "'blk.1.exp_probs_b.bias' (expert selection bias) is not supported");
    expect_refused(load_changed(path, NULL, NULL, "deepseek2.expert_group_count", 2),
                   "grouped expert selection with a softmax router is not supported");
    unlink(path);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/nuri-test-deepseek2-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(the_group_limit_keeps_the_router_to_the_best_groups);
    RUN(logits_are_the_same_batched_or_one_at_a_time_with_1_to_4_threads);
    RUN(sequences_batched_together_match_each_run_alone);
    RUN(the_cache_holds_the_latent_alone_and_snapshots_restore_it);
    RUN(the_loader_reads_mla_yarn_and_the_experts_and_counts_active_parameters);
    RUN(q_lora_rank_is_required_except_for_the_lite_layer_counts);
    RUN(deepseek2_files_nuri_cannot_run_are_refused_by_name);
    rmdir(tmpdir);
    TEST_DONE();
}
