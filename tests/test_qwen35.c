/*
 * test_qwen35.c: the qwen35 architecture (model.c, forward.c, deltanet.c; its numerics are
 * checked against llama.cpp by tests/oracle.test.sh, this file checks what an oracle cannot see).
 *
 * The forward pass (qwen35, and qwen35moe with its experts): a prompt gives bit-identical logits
 * run as one batch, in chunks, token by token, and with 1 to 4 threads; sequences batched together
 * (one after another or interleaved) get what each gets alone. The recurrent state beside the KV
 * pool: emptied with its sequence, taken along by a fork of the whole sequence, never rewound (a
 * decode that would need an older state is refused by name, a restart at 0 works), and left out of
 * KV snapshots, which are refused. The loader: which layers are delta-net layers (from
 * attention.recurrent_layers or full_attention_interval), and files missing what qwen35 needs
 * refused with a message naming it.
 */
#include "base/status.h"
#include "gguf/gguf.h"
#include "kernels/types.h"
#include "model/mkmodel.h"
#include "model/quantize.h"
#include "model/model.h"
#include "model_fixture.h"
#include "test.h"

#include <unistd.h>

static char tmpdir[64];

/* qwen35 files; a shape with experts makes a qwen35moe file of 4 layers (3 delta-net, 1 attention)
 */
static nuri_status make_file(const char *shape, const char *type, int seed, char *path, size_t cap)
{
    snprintf(path, cap, "%s/qwen35-%s-%s-%d.gguf", tmpdir, shape, type, seed);
    const bool moe = !strncmp(shape, "moe-", 4);
    nuri_mkmodel_params p = {.arch = moe ? "qwen35moe" : "qwen35",
                             .shape = shape,
                             .type = type,
                             .seed = (uint64_t)seed,
                             .n_layer = moe ? 4 : 0};
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

enum { N_PROMPT = 40 };

/* Logits of every position: the prompt in chunks of `chunk` tokens (N_PROMPT: one batch; 1:
 * token by token). */
static float *run(nuri_model *m, int chunk, int threads)
{
    const size_t nv = (size_t)m->hp.n_vocab;
    nuri_ctx *c;
    nuri_ctx_params cp = {.n_ctx = 64, .n_batch = 64, .n_threads = threads, .n_logits = N_PROMPT};
    if (nuri_ctx_new(m, &cp, &c) != NURI_OK) return NULL;
    int32_t toks[N_PROMPT];
    fixture_prompt(toks, N_PROMPT, 0);
    float *out = malloc(sizeof(float) * nv * N_PROMPT);
    bool ok = out != NULL;
    for (int32_t i = 0; ok && i < N_PROMPT; i += chunk) {
        const int32_t n = N_PROMPT - i < chunk ? N_PROMPT - i : chunk;
        ok = nuri_ctx_decode(c, toks + i, n, i, true) == NURI_OK;
        for (int32_t j = 0; ok && j < n; j++)
            memcpy(out + (i + j) * nv, nuri_ctx_logits(c, j), sizeof(float) * nv);
    }
    nuri_ctx_free(c);
    if (!ok) {
        free(out);
        return NULL;
    }
    return out;
}

TEST(logits_are_the_same_batched_in_chunks_or_one_at_a_time_with_1_to_4_threads)
{
    static const struct {
        const char *shape, *type;
    } cases[] = {
        {"qwen35-tiny", "F32"}, {"qwen35-tiny", "Q8_0"}, {"small", "Q4_K_M"}, {"moe-tiny", "Q8_0"}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        nuri_model *m = make_model(cases[k].shape, cases[k].type, 30 + (int)k);
        REQUIRE(m != NULL);
        const size_t bytes = sizeof(float) * (size_t)m->hp.n_vocab * N_PROMPT;
        float *batch = run(m, N_PROMPT, 1);
        REQUIRE(batch != NULL);
        float *single = run(m, 1, 1), *chunks = run(m, 7, 1);
        CHECKF(single && memcmp(batch, single, bytes) == 0, "%s %s: batched != one at a time",
               cases[k].shape, cases[k].type);
        CHECKF(chunks && memcmp(batch, chunks, bytes) == 0, "%s %s: batched != in chunks of 7",
               cases[k].shape, cases[k].type);
        for (int threads = 2; threads <= 4; threads++) {
            float *b2 = run(m, N_PROMPT, threads), *s2 = run(m, 1, threads);
            CHECKF(b2 && memcmp(batch, b2, bytes) == 0, "%s %s: batch, %d threads differ",
                   cases[k].shape, cases[k].type, threads);
            CHECKF(s2 && memcmp(batch, s2, bytes) == 0, "%s %s: decode, %d threads differ",
                   cases[k].shape, cases[k].type, threads);
            free(b2);
            free(s2);
        }
        free(batch);
        free(single);
        free(chunks);
        nuri_model_free(m);
    }
}

/* Three sequences' prompts in one batch (one after another, or interleaved token by token), then
 * decode steps of all three together, against each run alone. */
static void batched_against_alone(nuri_model *m, bool interleave)
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
    int32_t bt[64], bp[64], bs[64], row[NS];
    int8_t bl[64];
    int32_t n = 0;
    if (interleave) { // position i of every sequence that has one, then i + 1, ...
        for (int32_t i = 0; i < 30; i++)
            for (int s = 0; s < NS; s++)
                if (i < len[s])
                    bt[n] = toks[s][i], bp[n] = i, bs[n] = s, bl[n] = i == len[s] - 1, n++;
    } else { // sequence by sequence
        for (int s = 0; s < NS; s++)
            for (int32_t i = 0; i < len[s]; i++, n++)
                bt[n] = toks[s][i], bp[n] = i, bs[n] = s, bl[n] = i == len[s] - 1;
    }
    for (int step = 0; step <= STEPS; step++) {
        nuri_batch b = {.n = n, .token = bt, .pos = bp, .seq = bs, .logits = bl};
        REQUIRE(nuri_ctx_decode_batch(c, &b) == NURI_OK);
        int32_t r = 0; // logit rows come in batch order
        for (int32_t i = 0; i < n; i++)
            if (bl[i]) row[bs[i]] = r++;
        for (int s = 0; s < NS; s++)
            memcpy(together + ((size_t)step * NS + s) * nv, nuri_ctx_logits(c, row[s]),
                   sizeof(float) * nv);
        n = 0;
        for (int s = NS - 1; s >= 0; s--, n++) // the other order this time
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
    CHECKF(memcmp(together, alone, sizeof(float) * nv * NS * (STEPS + 1)) == 0,
           "%s batch differs from each sequence alone", interleave ? "an interleaved" : "a");
    free(together);
    free(alone);
}

TEST(sequences_batched_together_match_each_run_alone)
{
    nuri_model *m = make_model("qwen35-tiny", "Q8_0", 41);
    REQUIRE(m != NULL);
    batched_against_alone(m, false);
    batched_against_alone(m, true);
    nuri_model_free(m);
    m = make_model("moe-tiny", "Q4_K_M", 42); // qwen35moe
    REQUIRE(m != NULL && m->hp.arch == NURI_ARCH_QWEN35MOE && m->hp.n_expert == 8);
    batched_against_alone(m, true);
    nuri_model_free(m);
}

/* ---- the recurrent state ---- */

static void last_logits(nuri_ctx *c, float *out, size_t nv)
{
    memcpy(out, nuri_ctx_logits(c, 0), sizeof(float) * nv);
}

TEST(the_state_is_emptied_forked_whole_and_never_rewound)
{
    nuri_model *m = make_model("qwen35-tiny", "F32", 7);
    REQUIRE(m != NULL);
    const size_t nv = (size_t)m->hp.n_vocab;
    float *a = malloc(sizeof(float) * nv), *b = malloc(sizeof(float) * nv);
    REQUIRE(a && b);
    int32_t toks[24];
    fixture_prompt(toks, 24, 3);
    nuri_ctx *c;
    nuri_ctx_params cp = {.n_ctx = 128, .n_batch = 32, .n_threads = 2, .n_seq = 3};
    REQUIRE(nuri_ctx_new(m, &cp, &c) == NURI_OK);

    // a cleared sequence starts from an empty state: the same prompt gives the same logits
    REQUIRE(nuri_ctx_decode(c, toks, 20, 0, false) == NURI_OK);
    last_logits(c, a, nv);
    nuri_ctx_seq_clear(c, 0);
    CHECK(nuri_ctx_seq_len(c, 0) == 0);
    REQUIRE(nuri_ctx_decode(c, toks, 20, 0, false) == NURI_OK);
    last_logits(c, b, nv);
    CHECK(memcmp(a, b, sizeof(float) * nv) == 0);
    // and restarting at position 0 without a clear does the same
    REQUIRE(nuri_ctx_decode(c, toks, 20, 0, false) == NURI_OK);
    last_logits(c, b, nv);
    CHECK(memcmp(a, b, sizeof(float) * nv) == 0);

    // a fork of the whole sequence continues exactly as the sequence itself
    REQUIRE(nuri_ctx_seq_fork(c, 0, 1, 20) == NURI_OK);
    int32_t t = toks[20], p = 20, s1 = 1;
    int8_t want = 1;
    nuri_batch one = {.n = 1, .token = &t, .pos = &p, .seq = &s1, .logits = &want};
    REQUIRE(nuri_ctx_decode_batch(c, &one) == NURI_OK);
    last_logits(c, b, nv);
    REQUIRE(nuri_ctx_decode(c, toks + 20, 1, 20, false) == NURI_OK); // sequence 0 itself
    last_logits(c, a, nv);
    CHECK(memcmp(a, b, sizeof(float) * nv) == 0);

    // a fork of a shorter prefix has no state for it: continuing is refused, restarting works
    REQUIRE(nuri_ctx_seq_fork(c, 0, 2, 12) == NURI_OK);
    int32_t s2 = 2;
    p = 12;
    nuri_batch cont = {.n = 1, .token = &t, .pos = &p, .seq = &s2, .logits = &want};
    CHECK(nuri_ctx_decode_batch(c, &cont) == NURI_ERR_INVALID_ARG);
    CHECKF(strstr(nuri_last_error(), "recurrent state") != NULL, "%s", nuri_last_error());
    CHECK(nuri_ctx_seq_len(c, 2) == 12); // the refused batch changed nothing
    REQUIRE(nuri_ctx_decode_batch(
                c, &(nuri_batch){.n = 12,
                                 .token = toks,
                                 .pos = (int32_t[12]){0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11},
                                 .seq = (int32_t[12]){2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2},
                                 .logits = NULL}) == NURI_OK);
    REQUIRE(nuri_ctx_decode_batch(c, &cont) == NURI_OK);

    // truncating below the state's length: the sequence can only restart
    nuri_ctx_seq_truncate(c, 0, 10);
    p = 10;
    int32_t s0 = 0;
    nuri_batch back = {.n = 1, .token = &t, .pos = &p, .seq = &s0, .logits = &want};
    CHECK(nuri_ctx_decode_batch(c, &back) == NURI_ERR_INVALID_ARG);

    // KV snapshots would leave the state behind: refused by name
    void *buf = malloc(nuri_ctx_kv_bytes(c, 10));
    REQUIRE(buf != NULL);
    CHECK(nuri_ctx_seq_kv_read(c, 0, 10, buf) == NURI_ERR_UNSUPPORTED);
    CHECKF(strstr(nuri_last_error(), "qwen35") != NULL, "%s", nuri_last_error());
    CHECK(nuri_ctx_seq_kv_write(c, 1, 10, 10, buf) == NURI_ERR_UNSUPPORTED);
    free(buf);
    nuri_ctx_free(c);
    free(a);
    free(b);
    nuri_model_free(m);
}

/* ---- loading ---- */

/* Loads a copy of `from` without tensor drop_tensor or key drop_key, and with key u32_key set to
 * u32_val; *rec_out (n_layer flags) gets which layers are delta-net layers when it loads. */
static nuri_status load_changed(const char *from, const char *drop_tensor, const char *drop_key,
                                const char *u32_key, uint32_t u32_val, bool *rec_out, int n)
{
    const fixture_change ch = {
        .drop_tensor = drop_tensor, .drop_key = drop_key, .u32_key = u32_key, .u32_val = u32_val};
    nuri_model *m = NULL;
    nuri_status s = fixture_load_changed(from, &ch, &m);
    if (s == NURI_OK && rec_out)
        for (int il = 0; il < n && il < m->hp.n_layer; il++) rec_out[il] = m->layers[il].rec >= 0;
    nuri_model_free(m);
    return s;
}

static void expect_refused(nuri_status s, const char *words)
{
    fixture_expect_refused(s, words);
}

TEST(the_loader_finds_the_delta_net_layers_and_skips_the_prediction_block)
{
    nuri_model *m = make_model("qwen35-tiny", "F32", 5);
    REQUIRE(m != NULL);
    const nuri_hparams *hp = &m->hp;
    CHECK(hp->arch == NURI_ARCH_QWEN35 && hp->n_layer == 8 && hp->n_nextn == 1);
    CHECK(hp->n_recurrent == 6 && hp->ssm_d_conv == 4 && hp->ssm_d_state == 32);
    CHECK(hp->ssm_n_group == 2 && hp->ssm_n_v == 4 && hp->n_rot == 16 && hp->head_dim == 64);
    for (int il = 0; il < hp->n_layer; il++)
        CHECKF((m->layers[il].rec >= 0) == ((il + 1) % 4 != 0), "layer %d", il);
    CHECK(m->layers[2].rec == 2 && m->layers[4].rec == 3 && m->layers[7].rec == -1);
    CHECK(m->output.data == m->token_embd.data); // tied
    nuri_model_free(m);

    char path[160];
    REQUIRE(make_file("qwen35-tiny", "F32", 6, path, sizeof path) == NURI_OK);
    bool rec[8];
    // without the per-layer flags, full_attention_interval says the same
    REQUIRE(load_changed(path, NULL, "qwen35.attention.recurrent_layers", NULL, 0, rec, 8) ==
            NURI_OK);
    for (int il = 0; il < 8; il++) CHECK(rec[il] == ((il + 1) % 4 != 0));
    unlink(path);
}

TEST(qwen35_files_missing_what_it_needs_are_refused_by_name)
{
    char path[160];
    REQUIRE(make_file("qwen35-tiny", "Q8_0", 3, path, sizeof path) == NURI_OK);
    CHECK(load_changed(path, NULL, NULL, NULL, 0, NULL, 0) == NURI_OK); // the copy itself runs
    static const char *const tensors[] = {
        "blk.0.ssm_a",           "blk.1.ssm_conv1d.weight",         "blk.2.ssm_dt.bias",
        "blk.0.ssm_norm.weight", "blk.1.attn_gate.weight",          "blk.3.attn_q_norm.weight",
        "blk.5.ssm_beta.weight", "blk.7.post_attention_norm.weight"};
    for (size_t i = 0; i < sizeof tensors / sizeof tensors[0]; i++)
        expect_refused(load_changed(path, tensors[i], NULL, NULL, 0, NULL, 0), tensors[i]);
    static const char *const keys[] = {"qwen35.ssm.conv_kernel", "qwen35.ssm.state_size",
                                       "qwen35.ssm.group_count", "qwen35.ssm.time_step_rank",
                                       "qwen35.ssm.inner_size",  "qwen35.rope.dimension_sections"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        expect_refused(load_changed(path, NULL, keys[i], NULL, 0, NULL, 0), keys[i]);
    // value heads narrower than key heads (inner_size not time_step_rank x state_size)
    expect_refused(load_changed(path, NULL, NULL, "qwen35.ssm.inner_size", 64, NULL, 0),
                   "inner_size");
    // without the flags, an interval of 2 makes layer 1 an attention layer, which it is not
    expect_refused(load_changed(path, NULL, "qwen35.attention.recurrent_layers",
                                "qwen35.full_attention_interval", 2, NULL, 0),
                   "blk.1.attn_q.weight");
    unlink(path);
}

TEST(quantizing_keeps_the_convolution_kernels_f32_and_the_result_runs)
{
    char path[160], out[192];
    REQUIRE(make_file("qwen35-tiny", "F32", 8, path, sizeof path) == NURI_OK);
    snprintf(out, sizeof out, "%s.q4km.gguf", path);
    CHECKF(nuri_quantize_file(path, out, "Q4_K_M", false, NULL) == NURI_OK, "%s",
           nuri_last_error());
    nuri_model *m = NULL;
    CHECKF(nuri_model_load(out, &m) == NURI_OK, "%s", nuri_last_error());
    if (m) {
        CHECK(m->layers[0].ssm_conv.type == NURI_TYPE_F32);
        CHECK(m->layers[0].ssm_qkv.type != NURI_TYPE_F32);
        nuri_model_free(m);
    }
    unlink(out);
    unlink(path);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/nuri-test-qwen35-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(logits_are_the_same_batched_in_chunks_or_one_at_a_time_with_1_to_4_threads);
    RUN(sequences_batched_together_match_each_run_alone);
    RUN(the_state_is_emptied_forked_whole_and_never_rewound);
    RUN(the_loader_finds_the_delta_net_layers_and_skips_the_prediction_block);
    RUN(qwen35_files_missing_what_it_needs_are_refused_by_name);
    RUN(quantizing_keeps_the_convolution_kernels_f32_and_the_result_runs);
    rmdir(tmpdir);
    TEST_DONE();
}
