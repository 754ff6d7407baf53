/*
 * test_moe.c: the mixture-of-experts feed-forward (model/moe.h).
 *
 * The router: softmax, the n_used largest in descending order, equal probabilities broken by the
 * lower expert id, weights renormalised to sum 1, the margin of the choice; it never returns a
 * repeated id, even for NaN logits. The grouping: every (token, choice) pair lands in exactly one
 * row of its expert's run, in token order. The forward pass: a prompt run as one batch (tokens
 * grouped by expert, each expert's matrices applied to all its rows at once) gives bit-identical
 * logits to the same tokens decoded one at a time (each token through only its own experts),
 * whatever the thread count; models are written by nuri_mkmodel (qwen3moe, qwen2moe with its
 * shared expert, and mixtral; 8 experts of which 2 are used, and 128 of which 8; several types),
 * and sequences batched together get what each gets alone. Active parameters and bytes per token
 * count only the used experts; `nuri quantize` keeps routers F32. Last, files that are not
 * runnable MoE models are refused with a message naming the key or tensor.
 */
#include "base/status.h"
#include "gguf/gguf.h"
#include "kernels/types.h"
#include "model/mkmodel.h"
#include "model/model.h"
#include "model/moe.h"
#include "model/quantize.h"
#include "model_fixture.h"
#include "test.h"

#include <unistd.h>

/* ---- the router ---- */

TEST(the_router_takes_the_largest_and_renormalises)
{
    const float logits[4] = {1.0f, 3.0f, 2.0f, 0.0f};
    float probs[4], w[2];
    int32_t ids[2];
    float margin;
    nuri_moe_route(logits, 4, 2, true, 0.0f, probs, ids, w, &margin);
    CHECKF(margin == 1.0f, "margin %g", (double)margin); // logit 2 chosen, 1 not
    CHECK(ids[0] == 1 && ids[1] == 2);
    // e^3 / (e^3 + e^2) = 1 / (1 + e^-1)
    CHECKF(fabsf(w[0] - 0.7310586f) < 1e-6f && fabsf(w[1] - 0.2689414f) < 1e-6f, "%g %g",
           (double)w[0], (double)w[1]);
    CHECKF(fabsf(w[0] + w[1] - 1.0f) < 1e-6f, "sum %g", (double)(w[0] + w[1]));
}

TEST(without_renormalising_the_weights_are_the_softmax_probabilities)
{
    const float logits[3] = {0.0f, 0.0f, 0.0f};
    float probs[3], w[1];
    int32_t ids[1];
    nuri_moe_route(logits, 3, 1, false, 0.0f, probs, ids, w, NULL);
    CHECKF(ids[0] == 0 && fabsf(w[0] - 1.0f / 3.0f) < 1e-7f, "id %d w %g", ids[0], (double)w[0]);
    // a scale of 2 doubles them; 0 and 1 mean none
    nuri_moe_route(logits, 3, 1, false, 2.0f, probs, ids, w, NULL);
    CHECKF(fabsf(w[0] - 2.0f / 3.0f) < 1e-7f, "w %g", (double)w[0]);
}

TEST(equal_probabilities_go_to_the_lower_expert_id)
{
    const float logits[8] = {0.5f, 2.0f, 0.5f, 2.0f, -1.0f, 2.0f, 0.5f, 0.5f};
    float probs[8], w[4];
    int32_t ids[4];
    float margin;
    nuri_moe_route(logits, 8, 4, true, 0.0f, probs, ids, w, &margin);
    CHECK(margin == 0.0f); // expert 0 taken, its equal 2 not
    CHECKF(ids[0] == 1 && ids[1] == 3 && ids[2] == 5 && ids[3] == 0, "%d %d %d %d", ids[0], ids[1],
           ids[2], ids[3]);
    CHECK(w[0] == w[1] && w[1] == w[2] && w[2] > w[3]);
}

TEST(nan_logits_still_give_distinct_experts)
{
    float logits[6];
    for (int i = 0; i < 6; i++) logits[i] = NAN;
    float probs[6], w[3];
    int32_t ids[3];
    nuri_moe_route(logits, 6, 3, true, 0.0f, probs, ids, w, NULL);
    for (int j = 0; j < 3; j++) {
        CHECK(ids[j] >= 0 && ids[j] < 6);
        for (int k = 0; k < j; k++) CHECK(ids[j] != ids[k]);
    }
}

TEST(the_sigmoid_router_chooses_with_the_bias_and_weighs_without_it)
{
    // sigmoid scores 0.731 (e0), 0.5 (e1), 0.269 (e2), 0.119 (e3); the bias lifts e2 over e1
    const float logits[4] = {1.0f, 0.0f, -1.0f, -2.0f};
    const float bias[4] = {0.0f, 0.0f, 0.3f, 0.0f};
    float probs[4], w[2];
    int32_t ids[2];
    float margin;
    nuri_moe_route_sigmoid(logits, bias, 4, 2, false, 0.0f, probs, ids, w, &margin);
    CHECKF(ids[0] == 0 && ids[1] == 2, "%d %d", ids[0], ids[1]);
    const float s2 = 1.f / (1.f + expf(1.0f)); // e2's weight: its score without the bias
    CHECKF(w[0] == 1.f / (1.f + expf(-1.0f)) && w[1] == s2, "%g %g", (double)w[0], (double)w[1]);
    CHECKF(fabsf(margin - ((s2 + 0.3f) - 0.5f)) < 1e-7f, "margin %g", (double)margin);
    // renormalised and scaled (K-EXAONE's routed scaling factor)
    nuri_moe_route_sigmoid(logits, bias, 4, 2, true, 2.5f, probs, ids, w, NULL);
    CHECKF(fabsf(w[0] + w[1] - 2.5f) < 1e-6f, "sum %g", (double)(w[0] + w[1]));
    // no bias: the plain ranking
    nuri_moe_route_sigmoid(logits, NULL, 4, 2, false, 0.0f, probs, ids, w, NULL);
    CHECKF(ids[0] == 0 && ids[1] == 1, "%d %d", ids[0], ids[1]);
    // NaN logits: still distinct experts
    float nan4[4] = {NAN, NAN, NAN, NAN}, w3[3];
    int32_t ids3[3];
    nuri_moe_route_sigmoid(nan4, bias, 4, 3, true, 0.0f, probs, ids3, w3, NULL);
    CHECK(ids3[0] != ids3[1] && ids3[1] != ids3[2] && ids3[0] != ids3[2]);
    for (int j = 0; j < 3; j++) CHECK(ids3[j] >= 0 && ids3[j] < 4);
}

/* ---- the grouping ---- */

TEST(grouping_puts_every_choice_in_its_experts_run_in_token_order)
{
    enum { T = 37, K = 3, E = 11 };
    int32_t ids[T * K], start[E + 1], token_of[T * K], row_of[T * K];
    uint32_t x = 12345;
    for (int t = 0; t < T; t++)
        for (int j = 0; j < K; j++) {
            int32_t e;
            bool dup;
            do { // distinct experts per token, as the router gives them
                x = x * 1103515245u + 12345u;
                e = (int32_t)((x >> 16) % (E - 2)); // experts 9 and 10 never chosen
                dup = false;
                for (int k = 0; k < j; k++) dup |= ids[t * K + k] == e;
            } while (dup);
            ids[t * K + j] = e;
        }
    nuri_moe_group(ids, T, K, E, start, token_of, row_of);
    CHECK(start[0] == 0 && start[E] == T * K);
    CHECK(start[9] == start[10] && start[10] == start[11]); // empty runs
    int seen[T * K] = {0};
    for (int i = 0; i < T * K; i++) {
        const int32_t r = row_of[i], e = ids[i];
        REQUIRE(r >= 0 && r < T * K);
        seen[r]++;
        CHECKF(r >= start[e] && r < start[e + 1], "choice %d (expert %d) in row %d", i, e, r);
        CHECK(token_of[r] == i / K);
    }
    for (int r = 0; r < T * K; r++) CHECK(seen[r] == 1);
    for (int e = 0; e < E; e++)
        for (int32_t r = start[e] + 1; r < start[e + 1]; r++) CHECK(token_of[r - 1] < token_of[r]);
}

/* ---- the forward pass ---- */

static char tmpdir[64];

static nuri_model *make_model(const char *arch, const char *shape, const char *type, int seed)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s-%s-%s.gguf", tmpdir, arch, shape, type);
    nuri_mkmodel_params p = {.arch = arch, .shape = shape, .type = type, .seed = (uint64_t)seed};
    nuri_model *m = NULL;
    if (nuri_mkmodel(&p, path) != NURI_OK || nuri_model_load(path, &m) != NURI_OK)
        fprintf(stderr, "  %s: %s\n", path, nuri_last_error());
    unlink(path);
    return m;
}

enum { N_PROMPT = 40 };

/* Logits of every position: the whole prompt as one batch, or token by token. */
static float *run(nuri_model *m, bool one_batch, int threads)
{
    int32_t toks[N_PROMPT];
    fixture_prompt(toks, N_PROMPT, 0);
    return fixture_logits(m, toks, N_PROMPT, one_batch, threads);
}

TEST(a_batch_grouped_by_expert_matches_tokens_run_one_at_a_time)
{
    static const char *const cases[][3] = {
        {"qwen3moe", "moe-tiny", "Q8_0"},   {"qwen3moe", "moe-a3b-mini", "Q4_K_M"},
        {"mixtral", "moe-tiny", "F32"},     {"mixtral", "moe-tiny", "Q4_0"},
        {"qwen3moe", "moe-tiny", "Q6_K"},   {"mixtral", "moe-a3b-mini", "F16"},
        {"qwen2moe", "moe-tiny", "Q4_K_M"}, {"qwen2moe", "moe-a3b-mini", "Q8_0"},
        {"exaone-moe", "moe-tiny", "Q8_0"}, {"exaone-moe", "moe-a3b-mini", "Q4_K_M"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        nuri_model *m = make_model(cases[k][0], cases[k][1], cases[k][2], 7 + (int)k);
        REQUIRE(m != NULL);
        const size_t bytes = sizeof(float) * (size_t)m->hp.n_vocab * N_PROMPT;
        float *batch = run(m, true, 1);
        REQUIRE(batch != NULL);
        float *single = run(m, false, 1);
        CHECKF(single && memcmp(batch, single, bytes) == 0, "%s %s %s: batched != one at a time",
               cases[k][0], cases[k][1], cases[k][2]);
        for (int threads = 2; threads <= 3; threads++) {
            float *b2 = run(m, true, threads), *s2 = run(m, false, threads);
            CHECKF(b2 && memcmp(batch, b2, bytes) == 0, "%s %s %s: batch, %d threads differ",
                   cases[k][0], cases[k][1], cases[k][2], threads);
            CHECKF(s2 && memcmp(batch, s2, bytes) == 0, "%s %s %s: decode, %d threads differ",
                   cases[k][0], cases[k][1], cases[k][2], threads);
            free(b2);
            free(s2);
        }
        free(batch);
        free(single);
        nuri_model_free(m);
    }
}

/* The server's promise: a sequence's logits do not depend on the others in its batch, though
 * they share the experts' products. Three prompts prefilled together, then decoded together for
 * a few steps, against each run alone. */
TEST(sequences_batched_together_match_each_run_alone)
{
    nuri_model *m = make_model("qwen3moe", "moe-a3b-mini", "Q4_K_M", 21);
    REQUIRE(m != NULL);
    enum { NS = 3, STEPS = 4 };
    const int32_t len[NS] = {7, 30, 19};
    const size_t nv = (size_t)m->hp.n_vocab;
    float *together = malloc(sizeof(float) * nv * NS * (STEPS + 1));
    float *alone = malloc(sizeof(float) * nv * NS * (STEPS + 1));
    REQUIRE(together && alone);
    int32_t toks[NS][40];
    for (int s = 0; s < NS; s++)
        for (int i = 0; i < 40; i++) toks[s][i] = 3 + (s * 7919 + i * 104729) % 4000;
    // together: one prefill batch of all three, then steps of three tokens
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
    // alone: each sequence in its own context, one thread
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
    nuri_model_free(m);
}

TEST(only_the_used_experts_count_as_read_per_token)
{
    nuri_model *m = make_model("qwen3moe", "moe-a3b-mini", "F32", 3);
    REQUIRE(m != NULL);
    uint64_t total, active;
    nuri_model_params(m, &total, &active);
    const uint64_t per_expert = 3ull * 256 * 256; // gate, up (256 -> 256) and down, F32
    const uint64_t n_layer = (uint64_t)m->hp.n_layer;
    CHECKF(total - active == n_layer * (128 - 8) * per_expert, "total %llu active %llu",
           (unsigned long long)total, (unsigned long long)active);
    // bytes per token: the embedding row instead of its table; F32, so 4 bytes an element
    const uint64_t embd = (uint64_t)m->hp.n_vocab * 256;
    CHECKF(nuri_model_bytes_per_token(m) == 4 * (active - embd + 256) + 4 * embd, "bytes %llu",
           (unsigned long long)nuri_model_bytes_per_token(m));
    nuri_model_free(m);
}

TEST(quantizing_keeps_the_router_f32_and_treats_experts_as_their_kind)
{
    char from[128], to[128];
    snprintf(from, sizeof from, "%s/q-from.gguf", tmpdir);
    snprintf(to, sizeof to, "%s/q-to.gguf", tmpdir);
    nuri_mkmodel_params p = {.arch = "qwen3moe", .shape = "moe-tiny", .type = "F32", .seed = 2};
    REQUIRE(nuri_mkmodel(&p, from) == NURI_OK);
    nuri_quant_stats st;
    REQUIRE(nuri_quantize_file(from, to, "Q4_K_M", false, &st) == NURI_OK);
    nuri_model *m;
    REQUIRE(nuri_model_load(to, &m) == NURI_OK);
    for (int il = 0; il < m->hp.n_layer; il++) {
        const nuri_layer *L = &m->layers[il];
        CHECK(L->ffn_gate_inp.type == NURI_TYPE_F32);
        CHECK(L->exp_gate[0].type == NURI_TYPE_Q4_K && L->exp_up[3].type == NURI_TYPE_Q4_K);
    }
    // Q4_K_M gives the last layer's ffn_down more bits, experts included
    CHECK(m->layers[m->hp.n_layer - 1].exp_down[7].type == NURI_TYPE_Q6_K);
    nuri_model_free(m);
    unlink(from);
    unlink(to);
}

/* ---- files that are not runnable ---- */

/* Copies file `from` with key drop_key left out and, if u32_key, that key set to u32_val; loads
 * the copy from memory. */
static nuri_status load_changed(const char *from, const char *drop_key, const char *u32_key,
                                uint32_t u32_val)
{
    const fixture_change ch = {.drop_key = drop_key, .u32_key = u32_key, .u32_val = u32_val};
    return fixture_load_changed(from, &ch, NULL);
}

static void expect_refused(const char *from, const char *drop_key, const char *u32_key,
                           uint32_t u32_val, const char *words)
{
    nuri_status s = load_changed(from, drop_key, u32_key, u32_val);
    CHECKF(s != NURI_OK, "loaded without %s", drop_key ? drop_key : u32_key);
    CHECKF(strstr(nuri_last_error(), words) != NULL, "message '%s' lacks '%s'", nuri_last_error(),
           words);
}

TEST(moe_files_that_cannot_run_are_refused_by_name)
{
    char mixtral[128], qwen[128];
    snprintf(mixtral, sizeof mixtral, "%s/mixtral.gguf", tmpdir);
    snprintf(qwen, sizeof qwen, "%s/qwen3moe.gguf", tmpdir);
    nuri_mkmodel_params p = {.arch = "mixtral", .shape = "moe-tiny", .type = "Q8_0", .seed = 1};
    REQUIRE(nuri_mkmodel(&p, mixtral) == NURI_OK);
    p.arch = "qwen3moe";
    REQUIRE(nuri_mkmodel(&p, qwen) == NURI_OK);
    // a Mixtral-style file without expert_count: not "ffn_gate.weight is missing"
    expect_refused(mixtral, "llama.expert_count", NULL, 0, "'llama.expert_count' is missing");
    expect_refused(mixtral, "llama.expert_used_count", NULL, 0, "llama.expert_used_count");
    expect_refused(qwen, "qwen3moe.expert_count", NULL, 0, "qwen3moe.expert_count");
    expect_refused(qwen, NULL, "qwen3moe.expert_used_count", 9, "exceeds expert_count");
    expect_refused(qwen, NULL, "qwen3moe.expert_used_count", 0, "expert_used_count");
    expect_refused(qwen, NULL, "qwen3moe.expert_count", 4, "ffn_gate_inp.weight");
    expect_refused(qwen, NULL, "qwen3moe.expert_count", 100000, "expert_count");
    expect_refused(qwen, NULL, "qwen3moe.expert_feed_forward_length", 128, "ffn_gate_exps");
    expect_refused(qwen, NULL, "qwen3moe.expert_group_count", 2, "expert_group_count");
    // qwen2moe's shared expert must match its key
    char q2[128];
    snprintf(q2, sizeof q2, "%s/qwen2moe.gguf", tmpdir);
    p.arch = "qwen2moe";
    REQUIRE(nuri_mkmodel(&p, q2) == NURI_OK);
    expect_refused(q2, NULL, "qwen2moe.expert_shared_feed_forward_length", 256,
                   "ffn_gate_shexp.weight");
    unlink(q2);
    // experts in an architecture that has none
    char dense[128];
    snprintf(dense, sizeof dense, "%s/qwen3.gguf", tmpdir);
    p.arch = "qwen3";
    p.shape = "tiny";
    REQUIRE(nuri_mkmodel(&p, dense) == NURI_OK);
    expect_refused(dense, NULL, "qwen3.expert_count", 8, "'qwen3' with experts is not supported");
    // mkmodel refuses --arch qwen3moe with a shape that has no experts
    p.arch = "qwen3moe";
    CHECK(nuri_mkmodel(&p, dense) == NURI_ERR_INVALID_ARG);
    unlink(mixtral);
    unlink(qwen);
    unlink(dense);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/nuri-test-moe-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(the_router_takes_the_largest_and_renormalises);
    RUN(without_renormalising_the_weights_are_the_softmax_probabilities);
    RUN(equal_probabilities_go_to_the_lower_expert_id);
    RUN(nan_logits_still_give_distinct_experts);
    RUN(the_sigmoid_router_chooses_with_the_bias_and_weighs_without_it);
    RUN(grouping_puts_every_choice_in_its_experts_run_in_token_order);
    RUN(a_batch_grouped_by_expert_matches_tokens_run_one_at_a_time);
    RUN(sequences_batched_together_match_each_run_alone);
    RUN(only_the_used_experts_count_as_read_per_token);
    RUN(quantizing_keeps_the_router_f32_and_treats_experts_as_their_kind);
    RUN(moe_files_that_cannot_run_are_refused_by_name);
    rmdir(tmpdir);
    TEST_DONE();
}
