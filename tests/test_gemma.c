/*
 * test_gemma.c: the Gemma 2 and Gemma 3 architectures (model.c's read_gemma, forward.c).
 *
 * GeGLU: GELU is looked up as llama.cpp's CPU path looks it up, F16(gelu(F16(x))), 0 below -10 and
 * x itself above 10. Loading: the hyperparameters that the files do not spell out (embedding scale
 * sqrt(n_embd), attention scale on Q, the sliding layers' pattern, gemma3's own rope base and its
 * global layers' linear rope scaling, gemma2's soft-caps) come out as llama.cpp derives them, and
 * what nuri does not run (other rope scaling, gemma2 with an output matrix, Gemma 3's vision
 * tensors) is refused by name. Running: the sliding window reaches exactly n_swa positions back;
 * a prompt run as one batch gives bit-identical logits to the same tokens decoded one at a time,
 * with 1 to 4 threads; sequences batched together get what each gets alone. Chat: Gemma's template
 * (tests/data/templates/google-gemma-2-2b-it.jinja) renders from a model file's metadata. Models
 * are written by nuri_mkmodel; tests/oracle.test.sh holds the same shapes to llama.cpp.
 */
#include "base/status.h"
#include "chat/conversation.h"
#include "gguf/gguf.h"
#include "kernels/fp16.h"
#include "kernels/gelu.h"
#include "model/mkmodel.h"
#include "model/model.h"
#include "model_fixture.h"
#include "test.h"

#include <unistd.h>

static char tmpdir[64];

/* ---- GeGLU ---- */

TEST(gelu_is_the_f16_table_of_the_tanh_form)
{
    // the tanh form itself: gelu(1) = 0.5 (1 + tanh(sqrt(2/pi) 1.044715)) = 0.841192
    CHECKF(fabsf(nuri_gelu_f32(1.0f) - 0.841192f) < 1e-6f, "%.7f", (double)nuri_gelu_f32(1.0f));
    CHECK(nuri_gelu_f32(0.0f) == 0.0f);
    // the table: the input and the result rounded to F16
    for (float x = -9.9f; x < 9.9f; x += 0.0137f) {
        const float want =
            nuri_f16_to_f32(nuri_f32_to_f16(nuri_gelu_f32(nuri_f16_to_f32(nuri_f32_to_f16(x)))));
        CHECKF(nuri_gelu_table(x) == want, "x %g: %g, want %g", (double)x,
               (double)nuri_gelu_table(x), (double)want);
    }
    // 1.0001 rounds to the F16 1.0: the same entry as 1
    CHECK(nuri_gelu_table(1.0001f) == nuri_gelu_table(1.0f));
    CHECK(nuri_gelu_table(1.0f) != nuri_gelu_f32(1.0f)); // 0.841192 is no F16 value
    // the ends: no lookup
    CHECK(nuri_gelu_table(-10.0f) == 0.0f && nuri_gelu_table(-1e30f) == 0.0f);
    CHECK(nuri_gelu_table(10.0f) == 10.0f && nuri_gelu_table(12.3456789f) == 12.3456789f);
}

TEST(geglu_gates_the_up_projection)
{
    float g[5] = {-11.0f, -1.0f, 0.5f, 2.0f, 11.0f};
    const float u[5] = {3.0f, 2.0f, -4.0f, 0.25f, 0.5f};
    float want[5];
    for (int i = 0; i < 5; i++) want[i] = nuri_gelu_table(g[i]) * u[i];
    nuri_geglu(g, u, 5);
    for (int i = 0; i < 5; i++)
        CHECKF(g[i] == want[i], "%d: %g != %g", i, (double)g[i], (double)want[i]);
    CHECK(g[0] == 0.0f && g[4] == 5.5f);
}

/* ---- loading ---- */

static nuri_model *make_model(const char *arch, const char *shape, const char *type, int seed,
                              int n_swa)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s-%s-%s-%d.gguf", tmpdir, arch, shape, type, n_swa);
    nuri_mkmodel_params p = {
        .arch = arch, .shape = shape, .type = type, .seed = (uint64_t)seed, .n_swa = n_swa};
    nuri_model *m = NULL;
    if (nuri_mkmodel(&p, path) != NURI_OK || nuri_model_load(path, &m) != NURI_OK)
        fprintf(stderr, "  %s: %s\n", path, nuri_last_error());
    unlink(path);
    return m;
}

TEST(gemma3_hyperparameters_are_derived_as_llama_cpp_derives_them)
{
    nuri_model *m = make_model("gemma3", "gemma3-tiny", "F32", 1, 0);
    REQUIRE(m != NULL);
    const nuri_hparams *hp = &m->hp;
    CHECK(hp->arch == NURI_ARCH_GEMMA3 && hp->rope_type == NURI_ROPE_NEOX);
    CHECK(hp->pre_norm && hp->post_norm && hp->ffn_geglu);
    CHECK(hp->embd_scale == 16.0f);                                    // sqrt(256)
    CHECK(hp->attn_scale_q && hp->attn_scale == 1.0f / sqrtf(128.0f)); // key_length, not 256 / 4
    CHECK(hp->attn_softcap == 0.0f && hp->final_softcap == 0.0f);
    CHECK(hp->n_swa == 16);
    // 5 sliding layers of every 6 (no pattern key in the file): only layer 5 is global
    for (int il = 0; il < hp->n_layer; il++) {
        CHECKF(m->layers[il].swa == (il != 5), "layer %d", il);
        CHECK(m->layers[il].rope && m->layers[il].q_norm.data && m->layers[il].k_norm.data);
    }
    // global layers: base 1e6, positions / 8 (rope.scaling.factor); sliding: base 10000, unscaled
    CHECK(hp->rope_freq_base == 1e6f && hp->rope_freq_scale == 0.125f);
    CHECK(hp->rope_freq_base_swa == 10000.0f && hp->rope_freq_scale_swa == 1.0f);
    CHECK(m->output.data == m->token_embd.data); // tied
    CHECK(strstr(nuri_model_family(m), "Gemma 3") != NULL);
    nuri_model_free(m);
}

TEST(gemma2_hyperparameters_are_derived_as_llama_cpp_derives_them)
{
    nuri_model *m = make_model("gemma2", "gemma2-tiny", "Q8_0", 2, 0);
    REQUIRE(m != NULL);
    const nuri_hparams *hp = &m->hp;
    CHECK(hp->arch == NURI_ARCH_GEMMA2 && hp->ffn_geglu && hp->post_norm);
    CHECK(hp->attn_softcap == 4.0f && hp->final_softcap == 10.0f); // gemma2-tiny's caps
    CHECK(!m->layers[0].q_norm.data);
    for (int il = 0; il < hp->n_layer; il++)
        CHECKF(m->layers[il].swa == (il % 2 == 0), "layer %d", il);
    CHECK(hp->rope_freq_base_swa == hp->rope_freq_base && hp->rope_freq_scale == 1.0f);
    nuri_model_free(m);
    // the real shape's caps, 50 and 30
    m = make_model("gemma2", "tiny", "F32", 2, 0);
    REQUIRE(m != NULL);
    CHECK(m->hp.attn_softcap == 50.0f && m->hp.final_softcap == 30.0f && m->hp.n_swa == 4096);
    nuri_model_free(m);
}

/* Loads a copy of a gemma model with one key set to a string, one u32 key added, or one tensor
 * added (a copy of token_embd.weight under another name); the status, message in
 * nuri_last_error(). */
static nuri_status load_changed(const char *arch, const char *str_key, const char *str_val,
                                const char *u32_key, uint32_t u32_val, const char *extra_tensor)
{
    char path[128];
    snprintf(path, sizeof path, "%s/changed.gguf", tmpdir);
    const char *shape = !strcmp(arch, "gemma2") ? "gemma2-tiny" : "gemma3-tiny";
    nuri_mkmodel_params p = {.arch = arch, .shape = shape, .type = "Q8_0", .seed = 3};
    NURI_ASSERT(nuri_mkmodel(&p, path) == NURI_OK);
    gguf_file *f;
    NURI_ASSERT(gguf_open(path, &f) == NURI_OK);
    gguf_writer *w;
    NURI_ASSERT(gguf_writer_new(&w) == NURI_OK);
    for (uint64_t i = 0; i < gguf_n_kv(f); i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        gguf_str k = gguf_kv_key(kv);
        if ((str_key && gguf_str_eq(k, str_key)) || (u32_key && gguf_str_eq(k, u32_key))) continue;
        NURI_ASSERT(gguf_writer_add_kv(w, kv) == NURI_OK);
    }
    if (str_key) NURI_ASSERT(gguf_writer_add_str(w, str_key, str_val) == NURI_OK);
    if (u32_key) NURI_ASSERT(gguf_writer_add_u32(w, u32_key, u32_val) == NURI_OK);
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        int64_t ne[4] = {t->ne[0], t->ne[1], t->ne[2], t->ne[3]};
        NURI_ASSERT(gguf_writer_add_tensor(w, name, t->type, t->n_dims, ne, t->data) == NURI_OK);
        if (extra_tensor && !strcmp(name, "token_embd.weight"))
            NURI_ASSERT(gguf_writer_add_tensor(w, extra_tensor, t->type, t->n_dims, ne, t->data) ==
                        NURI_OK);
    }
    void *bytes;
    size_t size;
    NURI_ASSERT(gguf_writer_write_memory(w, &bytes, &size) == NURI_OK);
    gguf_writer_free(w);
    gguf_close(f);
    unlink(path);
    gguf_file *g;
    nuri_status s = gguf_open_memory(bytes, size, &g);
    nuri_model *m = NULL;
    if (s == NURI_OK) s = nuri_model_from_gguf(g, &m);
    nuri_model_free(m);
    free(bytes);
    return s;
}

#define EXPECT_REFUSED(call, words)                                                                \
    do {                                                                                           \
        nuri_status s_ = (call);                                                                   \
        CHECKF(s_ != NURI_OK && strstr(nuri_last_error(), words), "status %d: '%s' lacks '%s'",    \
               s_, nuri_last_error(), words);                                                      \
    } while (0)

TEST(what_nuri_does_not_run_is_refused_by_name)
{
    // the copies load unchanged, and with the keys nuri does understand
    CHECK(load_changed("gemma3", NULL, NULL, NULL, 0, NULL) == NURI_OK);
    CHECK(load_changed("gemma3", "gemma3.rope.scaling.type", "none", NULL, 0, NULL) == NURI_OK);
    CHECK(load_changed("gemma2", NULL, NULL, "gemma2.attention.sliding_window_pattern", 2, NULL) ==
          NURI_OK);
    EXPECT_REFUSED(load_changed("gemma3", "gemma3.rope.scaling.type", "yarn", NULL, 0, NULL),
                   "gemma3.rope.scaling.type");
    EXPECT_REFUSED(load_changed("gemma2", NULL, NULL, NULL, 0, "output.weight"), "output.weight");
    EXPECT_REFUSED(load_changed("gemma3", NULL, NULL, NULL, 0, "v.patch_embd.weight"),
                   "v.patch_embd.weight");
    EXPECT_REFUSED(
        load_changed("gemma3", NULL, NULL, "gemma3.attention.sliding_window_pattern", 0, NULL),
        "sliding_window_pattern");
}

/* ---- running ---- */

enum { N_PROMPT = 40 };

/* Logits of every position of toks (N_PROMPT of them): as one batch, or token by token. Caller
 * frees. */
static float *run_tokens(nuri_model *m, const int32_t *toks, bool one_batch, int threads)
{
    return fixture_logits(m, toks, N_PROMPT, one_batch, threads);
}

static float *run(nuri_model *m, bool one_batch, int threads)
{
    int32_t toks[N_PROMPT];
    fixture_prompt(toks, N_PROMPT, 0);
    return run_tokens(m, toks, one_batch, threads);
}

TEST(the_window_is_in_play_past_n_swa_positions)
{
    // one model with a window of 8 and the same weights with one of 64 (more than the prompt):
    // positions 0..7 see all they would see anyway, bit for bit; from 8 on, the window drops
    // tokens, and the logits change
    const char *archs[] = {"gemma3", "gemma2"}, *shapes[] = {"gemma3-tiny", "gemma2-tiny"};
    for (int a = 0; a < 2; a++) {
        nuri_model *m8 = make_model(archs[a], shapes[a], "Q8_0", 4, 8);
        nuri_model *m64 = make_model(archs[a], shapes[a], "Q8_0", 4, 64);
        REQUIRE(m8 && m64);
        float *l8 = run(m8, true, 2), *l64 = run(m64, true, 2);
        REQUIRE(l8 && l64);
        const size_t nv = (size_t)m8->hp.n_vocab;
        CHECKF(memcmp(l8, l64, sizeof(float) * nv * 8) == 0, "%s: positions 0..7 differ", archs[a]);
        for (int pos = 8; pos < N_PROMPT; pos++)
            CHECKF(memcmp(l8 + pos * nv, l64 + pos * nv, sizeof(float) * nv) != 0,
                   "%s: position %d ignores the window", archs[a], pos);
        free(l8);
        free(l64);
        nuri_model_free(m8);
        nuri_model_free(m64);
    }
}

TEST(a_token_reaches_exactly_n_layer_windows_ahead)
{
    // gemma3 in the 4-layer shape "small": every layer slides (5 of every 6). With a window of 8,
    // position p attends to p-7..p, so through 4 layers token 0 reaches positions up to 4 * 7 =
    // 28 and no further: two prompts that differ in token 0 only give different logits at 28 and
    // bit-identical ones from 29 on. A window one token wider or narrower moves that edge.
    nuri_model *m = make_model("gemma3", "small", "Q8_0", 5, 8);
    REQUIRE(m != NULL);
    for (int il = 0; il < m->hp.n_layer; il++) REQUIRE(m->layers[il].swa);
    int32_t a[N_PROMPT], b[N_PROMPT];
    fixture_prompt(a, N_PROMPT, 1);
    memcpy(b, a, sizeof a);
    b[0] = a[0] + 1;
    float *la = run_tokens(m, a, true, 2), *lb = run_tokens(m, b, true, 2);
    REQUIRE(la && lb);
    const size_t nv = (size_t)m->hp.n_vocab;
    for (int pos = 0; pos <= 28; pos++)
        CHECKF(memcmp(la + pos * nv, lb + pos * nv, sizeof(float) * nv) != 0,
               "position %d does not see token 0", pos);
    for (int pos = 29; pos < N_PROMPT; pos++)
        CHECKF(memcmp(la + pos * nv, lb + pos * nv, sizeof(float) * nv) == 0,
               "position %d sees token 0", pos);
    free(la);
    free(lb);
    nuri_model_free(m);
}

TEST(a_batch_matches_tokens_run_one_at_a_time_with_1_to_4_threads)
{
    // windows of 8 and 5 positions: a 40-token prompt crosses them, so the window is in play
    static const struct {
        const char *arch, *shape, *type;
        int n_swa;
    } cases[] = {
        {"gemma3", "gemma3-tiny", "Q4_K", 8},
        {"gemma3", "gemma3-tiny", "F16", 5},
        {"gemma2", "gemma2-tiny", "Q8_0", 8},
        {"gemma2", "gemma2-tiny", "Q4_K_M", 5},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        nuri_model *m =
            make_model(cases[k].arch, cases[k].shape, cases[k].type, 7 + (int)k, cases[k].n_swa);
        REQUIRE(m != NULL);
        const size_t bytes = sizeof(float) * (size_t)m->hp.n_vocab * N_PROMPT;
        float *batch = run(m, true, 1);
        REQUIRE(batch != NULL);
        for (int threads = 1; threads <= 4; threads++) {
            float *b = threads > 1 ? run(m, true, threads) : NULL, *s = run(m, false, threads);
            if (threads > 1)
                CHECKF(b && memcmp(batch, b, bytes) == 0, "%s %s: batch, %d threads differ",
                       cases[k].arch, cases[k].type, threads);
            CHECKF(s && memcmp(batch, s, bytes) == 0, "%s %s: one at a time, %d threads differ",
                   cases[k].arch, cases[k].type, threads);
            free(b);
            free(s);
        }
        free(batch);
        nuri_model_free(m);
    }
}

TEST(sequences_batched_together_match_each_run_alone)
{
    const char *archs[] = {"gemma3", "gemma2"}, *shapes[] = {"gemma3-tiny", "gemma2-tiny"};
    for (int a = 0; a < 2; a++) {
        nuri_model *m = make_model(archs[a], shapes[a], "Q4_K_M", 21, 8);
        REQUIRE(m != NULL);
        enum { NS = 3, STEPS = 4 };
        const int32_t len[NS] = {7, 30, 19};
        const size_t nv = (size_t)m->hp.n_vocab;
        float *together = malloc(sizeof(float) * nv * NS * (STEPS + 1));
        float *alone = malloc(sizeof(float) * nv * NS * (STEPS + 1));
        REQUIRE(together && alone);
        int32_t toks[NS][40];
        for (int s = 0; s < NS; s++) fixture_prompt(toks[s], 40, s + 1);
        nuri_ctx *c;
        nuri_ctx_params cp = {
            .n_ctx = 256, .n_batch = 64, .n_threads = 2, .n_logits = NS, .n_seq = NS};
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
        for (int s = 0; s < NS; s++) {
            nuri_ctx_params cp1 = {.n_ctx = 256, .n_batch = 64, .n_threads = 1};
            REQUIRE(nuri_ctx_new(m, &cp1, &c) == NURI_OK);
            REQUIRE(nuri_ctx_decode(c, toks[s], len[s], 0, false) == NURI_OK);
            memcpy(alone + (size_t)s * nv, nuri_ctx_logits(c, 0), sizeof(float) * nv);
            for (int step = 1; step <= STEPS; step++) {
                REQUIRE(nuri_ctx_decode(c, &toks[s][len[s] + step - 1], 1, len[s] + step - 1,
                                        false) == NURI_OK);
                memcpy(alone + ((size_t)step * NS + s) * nv, nuri_ctx_logits(c, 0),
                       sizeof(float) * nv);
            }
            nuri_ctx_free(c);
        }
        CHECKF(memcmp(together, alone, sizeof(float) * nv * NS * (STEPS + 1)) == 0, "%s", archs[a]);
        free(together);
        free(alone);
        nuri_model_free(m);
    }
}

/* ---- chat ---- */

TEST(gemmas_chat_template_renders_from_the_model_file)
{
    char path[128];
    snprintf(path, sizeof path, "%s/chat.gguf", tmpdir);
    char *tpl = NULL;
    size_t tlen = 0;
    REQUIRE(nuri_chat_template_read("tests/data/templates/google-gemma-2-2b-it.jinja", &tpl,
                                    &tlen) == NURI_OK);
    nuri_mkmodel_params p = {.arch = "gemma3",
                             .shape = "gemma3-tiny",
                             .type = "Q8_0",
                             .seed = 9,
                             .chat_template = tpl,
                             .chat_template_len = tlen};
    nuri_model *m = NULL;
    nuri_chat_format *fmt = NULL;
    bool ok = nuri_mkmodel(&p, path) == NURI_OK && nuri_model_load(path, &m) == NURI_OK &&
              nuri_chat_format_new(m->file, m->vocab, NULL, 0, &fmt) == NURI_OK;
    free(tpl);
    unlink(path);
    CHECKF(ok, "%s", nuri_last_error());
    if (ok) {
        CHECK(!nuri_chat_format_is_fallback(fmt));
        nuri_conv conv;
        nuri_conv_init(&conv);
        const char *turns[][2] = {
            {"user", "What is 2+2?"}, {"assistant", "4."}, {"user", "And 3+3?"}};
        for (int i = 0; i < 3; i++)
            nuri_conv_add(&conv, turns[i][0], turns[i][1], strlen(turns[i][1]));
        char *text = NULL;
        size_t len = 0;
        CHECK(nuri_chat_render(fmt, &conv, true, &text, &len) == NURI_OK);
        // bos_token is the vocabulary's (mkmodel's synthetic one: <s>)
        const char *want = "<s><start_of_turn>user\nWhat is 2+2?<end_of_turn>\n"
                           "<start_of_turn>model\n4.<end_of_turn>\n"
                           "<start_of_turn>user\nAnd 3+3?<end_of_turn>\n<start_of_turn>model\n";
        CHECKF(text && !strcmp(text, want), "rendered:\n%s", text ? text : "(null)");
        free(text);
        nuri_conv_free(&conv);
        // Gemma's template has no system role: its own error, not a prompt without the system text
        nuri_conv_init(&conv);
        nuri_conv_add(&conv, "system", "Be brief.", 9);
        nuri_conv_add(&conv, "user", "Hi", 2);
        text = NULL;
        nuri_status st = nuri_chat_render(fmt, &conv, true, &text, &len);
        CHECKF(st == NURI_ERR_INVALID_ARG && strstr(nuri_last_error(), "System role not supported"),
               "status %d: %s", st, nuri_last_error());
        free(text);
        nuri_conv_free(&conv);
    }
    nuri_chat_format_free(fmt);
    nuri_model_free(m);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/nuri-gemma-XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    RUN(gelu_is_the_f16_table_of_the_tanh_form);
    RUN(geglu_gates_the_up_projection);
    RUN(gemma3_hyperparameters_are_derived_as_llama_cpp_derives_them);
    RUN(gemma2_hyperparameters_are_derived_as_llama_cpp_derives_them);
    RUN(what_nuri_does_not_run_is_refused_by_name);
    RUN(the_window_is_in_play_past_n_swa_positions);
    RUN(a_token_reaches_exactly_n_layer_windows_ahead);
    RUN(a_batch_matches_tokens_run_one_at_a_time_with_1_to_4_threads);
    RUN(sequences_batched_together_match_each_run_alone);
    RUN(gemmas_chat_template_renders_from_the_model_file);
    rmdir(tmpdir);
    TEST_DONE();
}
