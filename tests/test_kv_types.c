/*
 * test_kv_types.c: a KV cache of Q8_0 or Q4_0 rows (nuri_ctx_params.kv_type_k / _v, --kv-type).
 *
 * The contract: rows are stored as llama.cpp stores them (its Q4_0 rounding, not the weight
 * quantizer's); every instruction set's quantized attention loops agree with the scalar reference;
 * the rotation around a quantized cache is orthonormal; a sequence's logits do not depend on its
 * batch or the thread count, with any cache type; the pool and snapshots count the type's bytes
 * and a snapshot of one type is refused by name in a directory of another; the server's pool
 * holds about twice the tokens in q8_0 for the same memory. (llama.cpp itself, run with the same
 * -ctk / -ctv, is tests/oracle.test.sh.)
 */
#include "kernels/attn.h"
#include "kernels/types.h"
#include "model/model.h"
#include "serve/sched.h"
#include "store/kv_snapshot.h"
#include "test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MODEL "tests/data/models/llama-tiny-Q8_0.gguf"

static nuri_model *model;

static const uint32_t kv_types[][2] = {
    {NURI_TYPE_Q8_0, NURI_TYPE_Q8_0},
    {NURI_TYPE_Q4_0, NURI_TYPE_Q4_0},
    {NURI_TYPE_Q8_0, NURI_TYPE_F16},
    {NURI_TYPE_F16, NURI_TYPE_Q4_0},
};
#define N_KV_TYPES (sizeof kv_types / sizeof kv_types[0])

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static float rnd(void) // [-1, 1)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)(rng >> 40) * 0x1p-23f - 1.0f;
}

static void prompt(int32_t seed, int32_t n, int32_t *out)
{
    for (int32_t i = 0; i < n; i++) out[i] = 3 + (seed * 7919 + i * 104729) % 4000;
}

/* ---- storing rows ---- */

TEST(q4_0_rows_round_as_llama_cpp_stores_them)
{
    // x = j - 16: the first value of largest magnitude is -16, so d = 2 and codes are
    // trunc(x / 2 + 8.5), capped at 15: ties go up (-15 -> 1), where the weight quantizer's
    // round-half-to-even would give 0
    float x[32];
    for (int j = 0; j < 32; j++) x[j] = (float)(j - 16);
    uint8_t row[18];
    nuri_kv_store_row(NURI_TYPE_Q4_0, x, row, 32);
    uint16_t d;
    memcpy(&d, row, 2);
    CHECK(nuri_f16_to_f32(d) == 2.0f);
    CHECK((row[2 + 0] & 15) == 0);   // x = -16
    CHECK((row[2 + 1] & 15) == 1);   // x = -15: -7.5 + 8.5
    CHECK((row[2 + 2] & 15) == 1);   // x = -14: -7 + 8.5 = 1.5
    CHECK((row[2 + 3] & 15) == 2);   // x = -13
    CHECK((row[2 + 15] >> 4) == 15); // x = 15: 16, capped
    CHECK((row[2 + 0] >> 4) == 8);   // x = 0
    float y[32];
    nuri_kv_block_to_float(NURI_TYPE_Q4_0, row, y);
    CHECK(y[0] == -16.0f && y[16] == 0.0f && y[31] == 14.0f);
    // Q8_0: d = amax / 127, codes round half to even (the activation quantizer)
    uint8_t r8[34];
    nuri_kv_store_row(NURI_TYPE_Q8_0, x, r8, 32);
    nuri_kv_block_to_float(NURI_TYPE_Q8_0, r8, y);
    for (int j = 0; j < 32; j++) CHECKF(fabsf(y[j] - x[j]) <= 16.0f / 254 + 1e-3f, "q8_0 %d", j);
    CHECK(nuri_kv_row_bytes(NURI_TYPE_Q8_0, 128) == 136 &&
          nuri_kv_row_bytes(NURI_TYPE_Q4_0, 128) == 72);
    CHECK(nuri_kv_row_bytes(NURI_TYPE_F16, 128) == 256);
}

TEST(the_rotation_is_orthonormal_and_its_own_inverse)
{
    for (int32_t n = 64; n <= 256; n *= 2) {
        float x[256], y[256], e[256] = {1.0f};
        for (int32_t i = 0; i < n; i++) x[i] = y[i] = rnd();
        nuri_kv_rotate(y, n);
        double nx = 0, ny = 0;
        for (int32_t i = 0; i < n; i++) nx += (double)x[i] * x[i], ny += (double)y[i] * y[i];
        CHECKF(fabs(nx - ny) < 1e-5 * nx, "n=%d: norm %g -> %g", n, nx, ny);
        nuri_kv_rotate(y, n);
        for (int32_t i = 0; i < n; i++) CHECKF(fabsf(y[i] - x[i]) < 1e-5f, "n=%d [%d]", n, i);
        // the first column of the Walsh-Hadamard matrix: every entry 1 / sqrt(n)
        nuri_kv_rotate(e, n);
        for (int32_t i = 0; i < n; i++) CHECK(e[i] == 1.0f / sqrtf((float)n));
    }
}

/* ---- the kernels of every instruction set ---- */

TEST(every_isa_matches_the_scalar_reference_on_quantized_rows)
{
    enum { HD = 128, G = 4, N = 37 };
    const nuri_attn_kernels *ref = nuri_attn_isa(NURI_ISA_SCALAR);
    for (uint32_t t = 0; t < 2; t++) {
        const uint32_t type = t ? NURI_TYPE_Q4_0 : NURI_TYPE_Q8_0;
        const size_t row = nuri_kv_row_bytes(type, HD), stride = 3 * row; // three heads a slot
        uint8_t *k = malloc(N * stride), q8[G * HD / 32 * 34];
        float q[G * HD], x[HD];
        for (int32_t j = 0; j < N; j++) {
            for (int d = 0; d < HD; d++) x[d] = rnd() * (1 + j % 5);
            nuri_kv_store_row(type, x, k + (size_t)j * stride, HD);
        }
        for (int i = 0; i < G * HD; i++) q[i] = rnd();
        nuri_kv_store_row(NURI_TYPE_Q8_0, q, q8, G * HD);
        // the reference's scores against a double-precision dot of the dequantized rows
        float s_ref[G * N], p[G * N], o_ref[G * HD], o[G * HD];
        ref->scores_q(type, HD, G, q8, k, stride, N, 0.125f, s_ref, N);
        for (int g = 0; g < G; g++)
            for (int32_t j = 0; j < N; j++) {
                double acc = 0;
                float kf[32], qf[32];
                for (int b = 0; b < HD / 32; b++) {
                    nuri_kv_block_to_float(
                        type, k + (size_t)j * stride + (size_t)b * row / (HD / 32), kf);
                    nuri_kv_block_to_float(NURI_TYPE_Q8_0, q8 + (size_t)(g * HD / 32 + b) * 34, qf);
                    for (int d = 0; d < 32; d++) acc += (double)kf[d] * qf[d];
                }
                CHECKF(fabs(acc * 0.125 - s_ref[g * N + j]) < 1e-4 * (1 + fabs(acc)),
                       "%s score %d,%d", nuri_type_get(type)->name, g, j);
            }
        for (int i = 0; i < G * N; i++) p[i] = rnd() > 0.5f ? 0.0f : fabsf(rnd());
        memset(o_ref, 0, sizeof o_ref);
        ref->accum_q(type, HD, G, p, N, k, stride, N, o_ref);
        for (int isa = NURI_ISA_AVX2; isa <= NURI_ISA_AVX512; isa++) {
            const nuri_attn_kernels *ak = nuri_attn_isa((nuri_isa)isa);
            if (!ak) continue;
            memset(o, 0, sizeof o);
            ak->accum_q(type, HD, G, p, N, k, stride, N, o);
            for (int i = 0; i < G * HD; i++)
                CHECKF(fabsf(o[i] - o_ref[i]) <= 1e-5f * (1 + fabsf(o_ref[i])), "%s %s out %d",
                       nuri_isa_name((nuri_isa)isa), nuri_type_get(type)->name, i);
            // softmax_f32: the reference's, without the F16 rounding
            float a[N], b[N];
            for (int32_t j = 0; j < N; j++) a[j] = b[j] = rnd() * 8;
            ref->softmax_f32(a, N);
            ak->softmax_f32(b, N);
            double sum = 0;
            for (int32_t j = 0; j < N; j++) {
                sum += b[j];
                CHECKF(fabsf(a[j] - b[j]) <= 1e-6f, "%s softmax_f32 %d",
                       nuri_isa_name((nuri_isa)isa), j);
            }
            CHECK(fabs(sum - 1) < 1e-5);
        }
        free(k);
    }
}

/* ---- the forward pass ---- */

/* Last-token logits of toks[0..n) run alone in a fresh context of the given types and threads. */
static float *alone(const uint32_t kv[2], int32_t threads, const int32_t *toks, int32_t n)
{
    nuri_ctx *c;
    nuri_ctx_params cp = {
        .n_ctx = 256, .n_batch = 64, .n_threads = threads, .kv_type_k = kv[0], .kv_type_v = kv[1]};
    if (nuri_ctx_new(model, &cp, &c) != NURI_OK) return NULL;
    float *out = NULL;
    if (nuri_ctx_decode(c, toks, n, 0, false) == NURI_OK) {
        out = malloc(sizeof(float) * (size_t)model->hp.n_vocab);
        memcpy(out, nuri_ctx_logits(c, 0), sizeof(float) * (size_t)model->hp.n_vocab);
    }
    nuri_ctx_free(c);
    return out;
}

static bool same(const float *a, const float *b)
{
    return a && b && !memcmp(a, b, sizeof(float) * (size_t)model->hp.n_vocab);
}

TEST(a_sequence_gives_the_same_logits_alone_or_batched_with_any_cache_type)
{
    enum { NS = 3 };
    const int32_t len[NS] = {9, 45, 30}; // pages crossed
    int32_t toks[NS][48];
    for (int s = 0; s < NS; s++) prompt(s + 11, 48, toks[s]);
    for (size_t ti = 0; ti < N_KV_TYPES; ti++) {
        nuri_ctx *c;
        nuri_ctx_params cp = {.n_ctx = 512,
                              .n_batch = 128,
                              .n_threads = 2,
                              .n_logits = 4,
                              .n_seq = NS,
                              .kv_type_k = kv_types[ti][0],
                              .kv_type_v = kv_types[ti][1]};
        REQUIRE(nuri_ctx_new(model, &cp, &c) == NURI_OK);
        int32_t bt[128], bp[128], bs[128], n = 0;
        int8_t bl[128];
        for (int s = 0; s < NS; s++)
            for (int32_t i = 0; i < len[s]; i++, n++)
                bt[n] = toks[s][i], bp[n] = i, bs[n] = s, bl[n] = i == len[s] - 1;
        nuri_batch b = {.n = n, .token = bt, .pos = bp, .seq = bs, .logits = bl};
        REQUIRE(nuri_ctx_decode_batch(c, &b) == NURI_OK);
        for (int s = 0; s < NS; s++) {
            float *ref = alone(kv_types[ti], 1, toks[s], len[s]);
            CHECKF(same(ref, nuri_ctx_logits(c, s)), "types %zu: sequence %d prefill", ti, s);
            free(ref);
        }
        // one decode step of all three together
        for (int s = 0; s < NS; s++) bt[s] = toks[s][len[s]], bp[s] = len[s], bs[s] = s, bl[s] = 1;
        b.n = NS;
        REQUIRE(nuri_ctx_decode_batch(c, &b) == NURI_OK);
        for (int s = 0; s < NS; s++) {
            float *ref = alone(kv_types[ti], 1, toks[s], len[s] + 1);
            CHECKF(same(ref, nuri_ctx_logits(c, s)), "types %zu: sequence %d decode", ti, s);
            free(ref);
        }
        nuri_ctx_free(c);
    }
}

TEST(logits_do_not_depend_on_the_thread_count_with_a_q8_0_cache)
{
    int32_t toks[40];
    prompt(5, 40, toks);
    const uint32_t kv[2] = {NURI_TYPE_Q8_0, NURI_TYPE_Q8_0};
    float *one = alone(kv, 1, toks, 40);
    REQUIRE(one != NULL);
    for (int32_t t = 2; t <= 4; t++) {
        float *many = alone(kv, t, toks, 40);
        CHECKF(same(one, many), "%d threads", t);
        free(many);
    }
    // and the cache's type matters: q8_0's logits are not f16's (the option is not ignored)
    const uint32_t f16[2] = {NURI_TYPE_F16, NURI_TYPE_F16};
    float *h = alone(f16, 1, toks, 40);
    CHECK(h && !same(one, h));
    free(h);
    free(one);
}

TEST(a_quantized_cache_takes_the_bytes_of_its_type)
{
    const nuri_hparams *hp = &model->hp;
    for (size_t ti = 0; ti < N_KV_TYPES; ti++) {
        nuri_ctx *c;
        nuri_ctx_params cp = {
            .n_ctx = 64, .kv_type_k = kv_types[ti][0], .kv_type_v = kv_types[ti][1]};
        REQUIRE(nuri_ctx_new(model, &cp, &c) == NURI_OK);
        const size_t want = (size_t)hp->n_layer * hp->n_head_kv *
                            (nuri_kv_row_bytes(kv_types[ti][0], hp->head_dim) +
                             nuri_kv_row_bytes(kv_types[ti][1], hp->head_dim));
        CHECK(nuri_ctx_kv_bytes(c, 1) == want);
        CHECK(nuri_kv_bytes_per_token(model, kv_types[ti][0], kv_types[ti][1]) == want);
        uint32_t k, v;
        nuri_ctx_kv_types(c, &k, &v);
        CHECK(k == kv_types[ti][0] && v == kv_types[ti][1]);
        nuri_ctx_free(c);
    }
    // q8_0 is 17/32 of f16 (34 bytes per 32 elements against 64)
    CHECK(nuri_kv_bytes_per_token(model, NURI_TYPE_Q8_0, NURI_TYPE_Q8_0) * 32 ==
          nuri_kv_bytes_per_token(model, 0, 0) * 17);
}

TEST(bad_cache_types_are_errors_that_name_them)
{
    uint32_t t;
    CHECK(nuri_kv_type_parse("q8_0", &t) == NURI_OK && t == NURI_TYPE_Q8_0);
    CHECK(nuri_kv_type_parse("q4_0", &t) == NURI_OK && t == NURI_TYPE_Q4_0);
    CHECK(nuri_kv_type_parse("f16", &t) == NURI_OK && t == NURI_TYPE_F16);
    CHECK(nuri_kv_type_parse("q5_1", &t) == NURI_ERR_INVALID_ARG);
    CHECK(strstr(nuri_last_error(), "q5_1") != NULL);
    nuri_ctx *c;
    nuri_ctx_params cp = {.n_ctx = 64, .kv_type_k = NURI_TYPE_Q4_1};
    CHECK(nuri_ctx_new(model, &cp, &c) == NURI_ERR_INVALID_ARG);
    CHECK(strstr(nuri_last_error(), "KV cache type") != NULL);
    // a head size that is not a multiple of the 32-element block: refused, naming the type
    const int32_t hd = model->hp.head_dim;
    model->hp.head_dim = 48; // (checked before anything is allocated from it)
    cp.kv_type_k = NURI_TYPE_F16;
    cp.kv_type_v = NURI_TYPE_Q8_0;
    CHECK(nuri_ctx_new(model, &cp, &c) == NURI_ERR_UNSUPPORTED);
    CHECK(strstr(nuri_last_error(), "q8_0") != NULL && strstr(nuri_last_error(), "48") != NULL);
    model->hp.head_dim = hd;
}

/* ---- snapshots ---- */

/* A snapshot holds K as row-major rows of its type whatever the pool's layout (its pages keep a
 * quantized K transposed): layer 0's K rows, which do not depend on the cache type, dequantize to
 * the F16 cache's rows (rotated as llama.cpp rotates them around a quantized K) within the type's
 * rounding, position by position and head by head. */
TEST(a_snapshot_holds_quantized_k_as_row_major_rows)
{
    const int32_t hd = model->hp.head_dim, hk = model->hp.n_head_kv, n = 40;
    int32_t rot = 0;
    if (hd % 64 == 0)
        for (rot = 64; hd % (2 * rot) == 0;) rot *= 2;
    int32_t toks[40];
    prompt(3, n, toks);
    uint8_t *kv[2] = {NULL, NULL};
    const uint32_t types[3] = {NURI_TYPE_F16, NURI_TYPE_Q8_0, NURI_TYPE_Q4_0};
    for (int ti = 1; ti < 3; ti++) {
        for (int k = 0; k < 2; k++) {
            nuri_ctx *c;
            nuri_ctx_params cp = {.n_ctx = 256,
                                  .n_threads = 2,
                                  .kv_type_k = types[k ? ti : 0],
                                  .kv_type_v = NURI_TYPE_F16};
            REQUIRE(nuri_ctx_new(model, &cp, &c) == NURI_OK);
            REQUIRE(nuri_ctx_decode(c, toks, n, 0, false) == NURI_OK);
            free(kv[k]);
            kv[k] = malloc(nuri_ctx_kv_bytes(c, n));
            REQUIRE(kv[k] != NULL && nuri_ctx_seq_kv_read(c, 0, n, kv[k]) == NURI_OK);
            nuri_ctx_free(c);
        }
        const size_t qrow = nuri_kv_row_bytes(types[ti], hd), qblk = qrow / (size_t)(hd / 32);
        double worst = 0.0, scale = 0.0;
        for (int32_t p = 0; p < n; p++)
            for (int32_t h = 0; h < hk; h++) {
                float ref[512], got[512];
                REQUIRE(hd <= 512);
                const uint16_t *f = (const uint16_t *)kv[0] + ((size_t)p * hk + h) * hd;
                for (int32_t d = 0; d < hd; d++) ref[d] = nuri_f16_to_f32(f[d]);
                for (int32_t d = 0; rot && d < hd; d += rot) nuri_kv_rotate(ref + d, rot);
                const uint8_t *q = kv[1] + ((size_t)p * hk + h) * qrow;
                for (int32_t b = 0; b < hd / 32; b++)
                    nuri_kv_block_to_float(types[ti], q + b * qblk, got + 32 * b);
                for (int32_t d = 0; d < hd; d++) {
                    worst = fmax(worst, fabs(ref[d] - got[d]));
                    scale = fmax(scale, fabs(ref[d]));
                }
            }
        // a Q8_0 step is amax / 127 of a block, Q4_0's amax / 8 (and F16's rounding on top)
        CHECKF(scale > 0 && worst <= scale * (ti == 1 ? 0.01 : 0.1),
               "%s: layer 0's K off by %g (largest |K| %g)", ti == 1 ? "q8_0" : "q4_0", worst,
               scale);
    }
    free(kv[0]);
    free(kv[1]);
}

TEST(a_q8_0_sequence_rebuilt_from_its_bytes_continues_as_the_original)
{
    nuri_ctx *c;
    nuri_ctx_params cp = {.n_ctx = 512,
                          .n_threads = 1,
                          .n_seq = 2,
                          .kv_type_k = NURI_TYPE_Q8_0,
                          .kv_type_v = NURI_TYPE_Q8_0};
    REQUIRE(nuri_ctx_new(model, &cp, &c) == NURI_OK);
    int32_t toks[60];
    prompt(7, 60, toks);
    REQUIRE(nuri_ctx_decode(c, toks, 50, 0, false) == NURI_OK);
    const size_t bytes = nuri_ctx_kv_bytes(c, 50);
    uint8_t *kv = malloc(bytes);
    REQUIRE(kv != NULL);
    REQUIRE(nuri_ctx_seq_kv_read(c, 0, 50, kv) == NURI_OK);
    REQUIRE(nuri_ctx_seq_kv_write(c, 1, 50, 50, kv) == NURI_OK);
    const size_t nv = (size_t)model->hp.n_vocab;
    float *a = malloc(nv * sizeof *a);
    REQUIRE(a != NULL);
    int32_t pos = 50, s0 = 0, s1 = 1;
    int8_t want = 1;
    nuri_batch b = {.n = 1, .token = &toks[50], .pos = &pos, .seq = &s0, .logits = &want};
    REQUIRE(nuri_ctx_decode_batch(c, &b) == NURI_OK);
    memcpy(a, nuri_ctx_logits(c, 0), nv * sizeof *a);
    b.seq = &s1;
    REQUIRE(nuri_ctx_decode_batch(c, &b) == NURI_OK);
    CHECK(!memcmp(a, nuri_ctx_logits(c, 0), nv * sizeof *a));

    // on disk: a snapshot of this cache loads in a q8_0 directory and is refused, by name, in an
    // f16 one (and removed)
    char dir[] = "/tmp/nuri-kvtypes-XXXXXX";
    REQUIRE(mkdtemp(dir) != NULL);
    uint8_t id[32] = {1, 2, 3};
    nuri_kvsnap_dir *dq, *dh;
    REQUIRE(nuri_kvsnap_open_typed(dir, 0, id, NURI_TYPE_Q8_0, NURI_TYPE_Q8_0, &dq) == NURI_OK);
    REQUIRE(nuri_kvsnap_open(dir, 0, id, &dh) == NURI_OK);
    REQUIRE(nuri_kvsnap_put(dq, "resp_1", toks, 50, kv, bytes) == NURI_OK);
    nuri_kv_snapshot snap;
    REQUIRE(nuri_kvsnap_get(dq, "resp_1", nuri_ctx_kv_bytes(c, 1), &snap) == NURI_OK);
    CHECK(snap.n == 50 && snap.kv_bytes == bytes && !memcmp(snap.kv, kv, bytes));
    nuri_kv_snapshot_free(&snap);
    CHECK(nuri_kvsnap_get(dh, "resp_1", nuri_kv_bytes_per_token(model, 0, 0), &snap) ==
          NURI_ERR_FORMAT);
    CHECKF(strstr(nuri_last_error(), "q8_0/q8_0") && strstr(nuri_last_error(), "f16/f16"), "%s",
           nuri_last_error());
    CHECK(nuri_kvsnap_get(dq, "resp_1", nuri_ctx_kv_bytes(c, 1), &snap) == NURI_ERR_NOT_FOUND);
    nuri_kvsnap_close(dq);
    nuri_kvsnap_close(dh);
    rmdir(dir);
    free(a);
    free(kv);
    nuri_ctx_free(c);
}

/* ---- the server's pool ---- */

TEST(the_servers_pool_holds_about_twice_the_tokens_in_q8_0)
{
    // memory for well under max_seqs full sequences, so the fraction decides
    const uint64_t mem = 64u << 20;
    const int32_t f16 = serve_sched_pool_tokens_kv(model, 256, 0.25, mem, 0, 0);
    const int32_t q8 =
        serve_sched_pool_tokens_kv(model, 256, 0.25, mem, NURI_TYPE_Q8_0, NURI_TYPE_Q8_0);
    const int32_t q4 =
        serve_sched_pool_tokens_kv(model, 256, 0.25, mem, NURI_TYPE_Q4_0, NURI_TYPE_Q4_0);
    CHECK(f16 == serve_sched_pool_tokens(model, 256, 0.25, mem));
    const double per = (double)nuri_kv_bytes_per_token(model, NURI_TYPE_Q8_0, NURI_TYPE_Q8_0);
    CHECK(q8 == (int32_t)(0.25 * (double)mem / per / NURI_KV_PAGE) * NURI_KV_PAGE);
    CHECKF(q8 > 1.85 * f16 && q8 < 1.9 * f16, "f16 %d, q8_0 %d", f16, q8);
    CHECKF(q4 > 3.5 * f16 && q4 < 3.6 * f16, "f16 %d, q4_0 %d", f16, q4);
}

int main(void)
{
    if (nuri_model_load(MODEL, &model) != NURI_OK) {
        fprintf(stderr, "%s\n", nuri_last_error());
        return 1;
    }
    RUN(q4_0_rows_round_as_llama_cpp_stores_them);
    RUN(the_rotation_is_orthonormal_and_its_own_inverse);
    RUN(every_isa_matches_the_scalar_reference_on_quantized_rows);
    RUN(a_sequence_gives_the_same_logits_alone_or_batched_with_any_cache_type);
    RUN(logits_do_not_depend_on_the_thread_count_with_a_q8_0_cache);
    RUN(a_quantized_cache_takes_the_bytes_of_its_type);
    RUN(bad_cache_types_are_errors_that_name_them);
    RUN(a_snapshot_holds_quantized_k_as_row_major_rows);
    RUN(a_q8_0_sequence_rebuilt_from_its_bytes_continues_as_the_original);
    RUN(the_servers_pool_holds_about_twice_the_tokens_in_q8_0);
    nuri_model_free(model);
    TEST_DONE();
}
