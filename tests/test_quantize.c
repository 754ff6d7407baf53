/* test_quantize.c: `nuri quantize` (model/quantize.h) against llama-quantize's files of the same
 * F32 model (tests/data/models/llama-tiny-*.gguf): the same type for every tensor (the Q4_K_M mix
 * included), and an error no worse than llama.cpp's (its k-quants search scales; ours round to
 * nearest, so they may lose a little, bounded here). And the normal values `nuri mkmodel` draws
 * (model/randn.h): libm's Box-Muller values, the same bits on every instruction set. */
#include "gguf/gguf.h"
#include "kernels/kernels.h"
#include "kernels/types.h"
#include "model/mkmodel.h"
#include "model/quantize.h"
#include "model/randn.h"
#include "test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DIR "tests/data/models/"

/* Dequantized tensor i of f into a new float array of its element count. */
static float *deq(const gguf_tensor *t, int64_t *n_out)
{
    int64_t n = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) n *= t->ne[d];
    float *y = malloc(sizeof(float) * (size_t)n);
    if (y) nuri_kernels(t->type)->to_float(t->data, y, n);
    *n_out = n;
    return y;
}

/* sqrt(sum (a - ref)^2 / sum ref^2) */
static double rel_err(const float *a, const float *ref, int64_t n)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        num += ((double)a[i] - ref[i]) * ((double)a[i] - ref[i]);
        den += (double)ref[i] * ref[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

static void check_type(const char *type, bool pure, const char *ref_name, double max_ratio)
{
    char out[64], ref_path[256];
    snprintf(out, sizeof out, "/tmp/nuri-test-quantize-%d.gguf", (int)getpid());
    snprintf(ref_path, sizeof ref_path, DIR "%s", ref_name);
    nuri_quant_stats st;
    nuri_status s = nuri_quantize_file(DIR "llama-tiny-F32.gguf", out, type, pure, &st);
    CHECKF(s == NURI_OK, "%s: %s", type, nuri_last_error());
    if (s != NURI_OK) return;
    CHECK(st.n_tensors == 20 && st.n_converted == 15);
    gguf_file *q = NULL, *r = NULL, *f = NULL;
    REQUIRE(gguf_open(out, &q) == NURI_OK);
    REQUIRE(gguf_open(ref_path, &r) == NURI_OK);
    REQUIRE(gguf_open(DIR "llama-tiny-F32.gguf", &f) == NURI_OK);
    CHECK(gguf_n_tensors(q) == gguf_n_tensors(r));
    double worst = 0;
    for (uint64_t i = 0; i < gguf_n_tensors(q); i++) {
        const gguf_tensor *tq = gguf_tensor_at(q, i);
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)tq->name.len, tq->name.ptr);
        const gguf_tensor *tr = gguf_find_tensor(r, name), *tf = gguf_find_tensor(f, name);
        CHECKF(tr && tf, "%s: tensor %s missing from the reference", type, name);
        if (!tr || !tf) continue;
        CHECKF(tq->type == tr->type, "%s: %s is %s, llama-quantize made %s", type, name,
               nuri_type_get(tq->type)->name, nuri_type_get(tr->type)->name);
        if (tq->n_dims < 2) continue;
        int64_t n, n2, n3;
        float *a = deq(tq, &n), *b = deq(tr, &n2), *x = deq(tf, &n3);
        REQUIRE(a && b && x && n == n2 && n == n3);
        double ours = rel_err(a, x, n), theirs = rel_err(b, x, n);
        double ratio = ours / (theirs > 1e-9 ? theirs : 1e-9);
        if (ratio > worst) worst = ratio;
        free(a);
        free(b);
        free(x);
    }
    CHECKF(worst <= max_ratio, "%s: error up to %.2fx llama-quantize's (allowed %.2fx)", type,
           worst, max_ratio);
    printf("  %-7s worst tensor error %.3fx llama-quantize's\n", type, worst);
    gguf_close(q);
    gguf_close(r);
    gguf_close(f);
    unlink(out);
}

TEST(pure_types_match_llama_quantize)
{
    // 32-element types: llama.cpp's reference quantizers are plain rounding too
    check_type("Q8_0", true, "llama-tiny-Q8_0.gguf", 1.01);
    check_type("Q4_0", true, "llama-tiny-Q4_0.gguf", 1.05);
    check_type("Q5_0", true, "llama-tiny-Q5_0.gguf", 1.05);
    check_type("F16", true, "llama-tiny-F16.gguf", 1.0);
    // k-quants: llama.cpp searches the scales; plain rounding may be somewhat worse
    check_type("Q6_K", true, "llama-tiny-Q6_K.gguf", 1.25);
    check_type("Q4_K", true, "llama-tiny-Q4_K.gguf", 1.25);
}

TEST(q4_K_M_mix_gives_the_same_tensor_types)
{
    check_type("Q4_K_M", false, "llama-tiny-Q4_K_M.gguf", 1.25);
}

/* MXFP4_MOE, as gpt-oss ships: experts MXFP4, every other matrix Q8_0 (llama.cpp's rule); the
 * other mixes quantize an expert as the dense matrix of its kind. */
TEST(mxfp4_moe_mix_puts_experts_in_mxfp4_and_the_rest_in_q8_0)
{
    CHECK(nuri_quant_name_ok("MXFP4_MOE"));
    CHECK(nuri_quant_pick_type("MXFP4_MOE", false, "ffn_down_exps", 3, 24, 2880) ==
          NURI_TYPE_MXFP4);
    CHECK(nuri_quant_pick_type("MXFP4_MOE", false, "ffn_gate_exps", 0, 24, 2880) ==
          NURI_TYPE_MXFP4);
    const char *dense[] = {"ffn_down", "attn_v", "attn_q", "output", "token_embd"};
    for (size_t i = 0; i < sizeof dense / sizeof dense[0]; i++)
        CHECKF(nuri_quant_pick_type("MXFP4_MOE", false, dense[i], 3, 24, 2880) == NURI_TYPE_Q8_0,
               "%s", dense[i]);
    CHECK(nuri_quant_pick_type("MXFP4_MOE", true, "attn_q", 3, 24, 2880) == NURI_TYPE_MXFP4);
    // Q4_K_M: an expert of a layer that gets more bits gets them as its dense kind does
    CHECK(nuri_quant_pick_type("Q4_K_M", false, "ffn_down_exps", 0, 24, 2048) == NURI_TYPE_Q6_K);
    CHECK(nuri_quant_pick_type("Q4_K_M", false, "ffn_up_exps", 0, 24, 2048) == NURI_TYPE_Q4_K);

    // a whole file: an F32 gpt-oss model converted gets those types, tensor by tensor
    char in[64], out[64];
    snprintf(in, sizeof in, "/tmp/nuri-test-mxmoe-%d.gguf", (int)getpid());
    snprintf(out, sizeof out, "/tmp/nuri-test-mxmoe-q-%d.gguf", (int)getpid());
    nuri_mkmodel_params mp = {.arch = "gpt-oss", .shape = "gpt-oss-tiny", .type = "F32", .seed = 3};
    REQUIRE(nuri_mkmodel(&mp, in) == NURI_OK);
    REQUIRE(nuri_quantize_file(in, out, "MXFP4_MOE", false, NULL) == NURI_OK);
    gguf_file *q = NULL;
    REQUIRE(gguf_open(out, &q) == NURI_OK);
    int n_exp = 0, n_q8 = 0;
    for (uint64_t i = 0; i < gguf_n_tensors(q); i++) {
        const gguf_tensor *t = gguf_tensor_at(q, i);
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        bool router = strstr(name, "ffn_gate_inp") != NULL;
        bool bias = strstr(name, ".bias") != NULL; // the experts' biases are 2-D
        if (t->n_dims < 2 || router || bias) {
            CHECKF(t->type == NURI_TYPE_F32, "%s is %s", name, nuri_type_get(t->type)->name);
        } else if (strstr(name, "_exps.weight")) {
            CHECKF(t->type == NURI_TYPE_MXFP4, "%s is %s", name, nuri_type_get(t->type)->name);
            n_exp++;
        } else {
            CHECKF(t->type == NURI_TYPE_Q8_0, "%s is %s", name, nuri_type_get(t->type)->name);
            n_q8++;
        }
    }
    CHECKF(n_exp == 3 * 4 && n_q8 == 2 + 4 * 4, "%d expert tensors, %d in Q8_0", n_exp, n_q8);
    gguf_close(q);
    unlink(in);
    unlink(out);
}

TEST(unknown_type_is_refused)
{
    CHECK(!nuri_quant_name_ok("Q7_0"));
    CHECK(!nuri_quant_name_ok("Q8_K")); // activation-only
    CHECK(nuri_quant_name_ok("Q5_K_M"));
    CHECK(nuri_quantize_file(DIR "llama-tiny-F32.gguf", "/tmp/nuri-never.gguf", "Q7_0", false,
                             NULL) == NURI_ERR_INVALID_ARG);
    CHECK(access("/tmp/nuri-never.gguf", F_OK) != 0);
}

/* The IQ2 / IQ3 / IQ1 targets are mixes (model/quantize.h): on the golden F32 model, every ffn_*
 * matrix takes the type, the output Q6_K, the other matrices Q8_0, 1-D tensors stay as they are;
 * --pure puts every matrix in the type. The FFN matrices' error stays within the type's budget. */
TEST(iq_mixes_give_the_type_to_the_feed_forward_weights)
{
    static const struct {
        const char *name;
        uint32_t type;
        double max_err;
    } mixes[] = {{"IQ2_XXS", NURI_TYPE_IQ2_XXS, 0.40},
                 {"IQ3_S", NURI_TYPE_IQ3_S, 0.20},
                 {"IQ1_M", NURI_TYPE_IQ1_M, 0.50}};
    char out[64];
    snprintf(out, sizeof out, "/tmp/nuri-test-quantize-iq-%d.gguf", (int)getpid());
    gguf_file *f = NULL;
    REQUIRE(gguf_open(DIR "llama-tiny-F32.gguf", &f) == NURI_OK);
    for (size_t m = 0; m < sizeof mixes / sizeof mixes[0]; m++) {
        nuri_status s =
            nuri_quantize_file(DIR "llama-tiny-F32.gguf", out, mixes[m].name, false, NULL);
        CHECKF(s == NURI_OK, "%s: %s", mixes[m].name, nuri_last_error());
        gguf_file *q = NULL;
        if (s != NURI_OK || gguf_open(out, &q) != NURI_OK) continue;
        int n_ffn = 0;
        // llama-tiny ties its output to token_embd, which is then the output matrix
        const char *out_name =
            gguf_find_tensor(q, "output.weight") ? "output.weight" : "token_embd.weight";
        for (uint64_t i = 0; i < gguf_n_tensors(q); i++) {
            const gguf_tensor *t = gguf_tensor_at(q, i);
            char name[128];
            snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
            uint32_t want = t->n_dims < 2             ? NURI_TYPE_F32
                            : strstr(name, ".ffn_")   ? mixes[m].type
                            : !strcmp(name, out_name) ? NURI_TYPE_Q6_K
                                                      : NURI_TYPE_Q8_0;
            CHECKF(t->type == want, "%s: %s is %s, want %s", mixes[m].name, name,
                   nuri_type_get(t->type)->name, nuri_type_get(want)->name);
            if (t->n_dims < 2 || !strstr(name, ".ffn_")) continue;
            n_ffn++;
            int64_t n, n2;
            float *a = deq(t, &n), *x = deq(gguf_find_tensor(f, name), &n2);
            REQUIRE(a && x && n == n2);
            double e = rel_err(a, x, n);
            CHECKF(e < mixes[m].max_err, "%s: %s error %.3f", mixes[m].name, name, e);
            free(a);
            free(x);
        }
        CHECK(n_ffn == 6); // 2 layers x gate, up, down
        gguf_close(q);
        unlink(out);
    }
    gguf_close(f);
    CHECK(nuri_quant_pick_type("IQ2_XS", true, "attn_q", 0, 2, 256) == NURI_TYPE_IQ2_XS);
    CHECK(nuri_quant_pick_type("IQ2_XS", true, "output", -1, 2, 256) == NURI_TYPE_IQ2_XS);
    CHECK(nuri_quant_pick_type("IQ3_XXS", false, "ffn_down", 1, 2, 96) == NURI_TYPE_IQ4_NL);
    CHECK(nuri_quant_pick_type("IQ1_S", false, "ffn_up", 1, 2, 100) == NURI_TYPE_F16);
    CHECK(nuri_quant_name_ok("IQ1_S") && nuri_quant_name_ok("IQ2_S"));
}

/* nuri_randn against the formula it replaces, (float)(sqrt(-2 log u) * cos(2 pi v)) with glibc's
 * log and cos: equal but for a rare float one ulp apart (0 of 2 * 10^7 when measured), and the
 * same bits from every instruction set this CPU has. Uniforms as mkmodel draws them, plus the
 * extremes (u and v at 2^-54 and 1 - 2^-54) and v at and around the quadrant boundaries. */
TEST(randn_is_libms_box_muller_on_every_instruction_set)
{
    enum { N = 1 << 20 };
    double *u = malloc(sizeof(double) * N), *v = malloc(sizeof(double) * N);
    float *want = malloc(sizeof(float) * N), *got = malloc(sizeof(float) * N);
    REQUIRE(u && v && want && got);
    uint64_t st = 0x9e3779b97f4a7c15ULL;
    for (int i = 0; i < N; i++) {
        double w[2];
        for (int k = 0; k < 2; k++) {
            st ^= st << 13, st ^= st >> 7, st ^= st << 17;
            w[k] = ((double)(st >> 11) + 0.5) * (1.0 / 9007199254740992.0);
        }
        u[i] = w[0], v[i] = w[1];
    }
    const double lo = 0.5 / 9007199254740992.0, hi = 1.0 - lo;
    const double edge[] = {lo, hi, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875};
    for (int k = 0; k < 9; k++) {
        u[2 * k] = edge[k], v[2 * k + 1] = edge[k];
        v[100 + 2 * k] = nextafter(edge[k], 0), v[101 + 2 * k] = nextafter(edge[k], 1);
    }
    for (int i = 0; i < N; i++)
        want[i] = (float)(sqrt(-2.0 * log(u[i])) * cos(6.283185307179586 * v[i]));
    const int n_isa = nuri_cpu_isa() == NURI_ISA_AVX512 ? 3
                      : nuri_cpu_isa() == NURI_ISA_AVX2 ? 2
                                                        : 1;
    float *first = malloc(sizeof(float) * N);
    REQUIRE(first);
    for (int isa = 0; isa < n_isa; isa++) {
        // odd lengths: the tails of every vector width
        for (int i = 0; i < N; i += 1021)
            nuri_randn_isa(isa, u + i, v + i, got + i, N - i < 1021 ? N - i : 1021);
        int off = 0, far = 0;
        for (int i = 0; i < N; i++) {
            if (memcmp(&got[i], &want[i], sizeof(float)) == 0) continue;
            off++;
            if (fabsf(got[i] - want[i]) > fabsf(nextafterf(want[i], 2 * want[i]) - want[i])) {
                if (far++ < 3)
                    printf("  isa %d: u %a v %a: %a, libm's formula %a\n", isa, u[i], v[i], got[i],
                           want[i]);
            }
        }
        CHECKF(far == 0 && off <= 8,
               "isa %d: %d values differ from libm's formula, %d by more than an ulp", isa, off,
               far);
        if (isa == 0)
            memcpy(first, got, sizeof(float) * N);
        else
            CHECKF(memcmp(first, got, sizeof(float) * N) == 0, "isa %d differs from SSE2", isa);
    }
    free(first);
    free(u);
    free(v);
    free(want);
    free(got);
}

int main(void)
{
    RUN(pure_types_match_llama_quantize);
    RUN(q4_K_M_mix_gives_the_same_tensor_types);
    RUN(mxfp4_moe_mix_puts_experts_in_mxfp4_and_the_rest_in_q8_0);
    RUN(unknown_type_is_refused);
    RUN(iq_mixes_give_the_type_to_the_feed_forward_weights);
    RUN(randn_is_libms_box_muller_on_every_instruction_set);
    TEST_DONE();
}
