/* test_kernels.c: F16/BF16 conversions, block layouts, and every kernel variant against the scalar
 * reference (kernels/kernels.h). */
#include "gguf/gguf.h"
#include "kernels/attn.h"
#include "kernels/blocks.h"
#include "kernels/fp16.h"
#include "kernels/kernels.h"
#include "kernels/membw.h"
#include "kernels/pack.h"
#include "kernels/types.h"
#include "test.h"

#include <stdint.h>

/* ---- helpers ---- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint32_t rng_u32(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32);
}

static float rng_uniform(void) // [-1, 1)
{
    return (float)(rng_u32() >> 8) * 0x1p-23f - 1.0f;
}

static float rng_normal(void)
{
    float s = 0;
    for (int i = 0; i < 6; i++) s += rng_uniform();
    return s * 0.7071f; // ~ unit variance
}

static const uint32_t weight_types[] = {
    NURI_TYPE_F32,  NURI_TYPE_F16,    NURI_TYPE_BF16,   NURI_TYPE_Q4_0,
    NURI_TYPE_Q4_1, NURI_TYPE_Q5_0,   NURI_TYPE_Q5_1,   NURI_TYPE_Q8_0,
    NURI_TYPE_Q2_K, NURI_TYPE_Q3_K,   NURI_TYPE_Q4_K,   NURI_TYPE_Q5_K,
    NURI_TYPE_Q6_K, NURI_TYPE_IQ4_NL, NURI_TYPE_IQ4_XS, NURI_TYPE_MXFP4,
};
#define N_WEIGHT_TYPES (sizeof weight_types / sizeof weight_types[0])

static const char *tname(uint32_t t)
{
    return nuri_type_get(t)->name;
}

static size_t row_bytes(uint32_t t, int64_t n)
{
    uint64_t b = 0;
    if (!nuri_type_row_bytes(t, (uint64_t)n, &b)) return 0;
    return (size_t)b;
}

/* sqrt(sum (a-b)^2 / sum b^2) */
static double rel_rms(const float *a, const float *b, int64_t n)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

TEST(f16_every_half_round_trips_exactly)
{
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = nuri_f16_to_f32((uint16_t)h);
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) { // NaN stays NaN (quieted)
            if (f == f || (nuri_f32_to_f16(f) & 0x7e00) != 0x7e00) bad++;
            continue;
        }
        if (nuri_f32_to_f16(f) != h) bad++;
    }
    CHECKF(bad == 0, "%d halves do not round-trip", bad);
}

TEST(f16_rounds_to_nearest_even)
{
    CHECK(nuri_f16_to_f32(0x3c00) == 1.0f);
    CHECK(nuri_f16_to_f32(0x0001) == 0x1p-24f);                   // smallest subnormal
    CHECK(nuri_f16_to_f32(0x7bff) == 65504.0f);                   // largest finite
    CHECK(nuri_f32_to_f16(1.0f + 0x1p-11f) == 0x3c00);            // tie -> even (down)
    CHECK(nuri_f32_to_f16(1.0f + 3 * 0x1p-11f) == 0x3c02);        // tie -> even (up)
    CHECK(nuri_f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f) == 0x3c01); // above tie
    CHECK(nuri_f32_to_f16(65519.0f) == 0x7bff);
    CHECK(nuri_f32_to_f16(65520.0f) == 0x7c00); // rounds to inf
    CHECK(nuri_f32_to_f16(-1e10f) == 0xfc00);
    CHECK(nuri_f32_to_f16(0x1p-25f) == 0x0000);            // tie between 0 and 2^-24 -> 0
    CHECK(nuri_f32_to_f16(0x1p-25f + 0x1p-35f) == 0x0001); // just above the tie
    CHECK(nuri_f32_to_f16(3 * 0x1p-25f) == 0x0002);        // tie 1.5 units -> 2
    CHECK(nuri_f32_to_f16(0x1p-14f - 0x1p-25f) == 0x0400); // rounds up into the normals
    CHECK(nuri_f32_to_f16(-0.0f) == 0x8000);
    CHECK(nuri_f32_to_f16(1e-30f) == 0x0000);
}

TEST(bf16_rounds_to_nearest_even_and_keeps_nan)
{
    CHECK(nuri_f32_to_bf16(1.0f) == 0x3f80);
    CHECK(nuri_f32_to_bf16(nuri_bits_to_f32(0x3f808000)) == 0x3f80); // tie -> even (down)
    CHECK(nuri_f32_to_bf16(nuri_bits_to_f32(0x3f818000)) == 0x3f82); // tie -> even (up)
    CHECK(nuri_f32_to_bf16(nuri_bits_to_f32(0x3f808001)) == 0x3f81);
    CHECK(nuri_f32_to_bf16(nuri_bits_to_f32(0x7f7fffff)) == 0x7f80); // max float -> inf
    uint16_t n = nuri_f32_to_bf16(nuri_bits_to_f32(0x7f800001));     // NaN with a low payload
    CHECK((n & 0x7f80) == 0x7f80 && (n & 0x7f) != 0);
    CHECK(nuri_bf16_to_f32(0xc000) == -2.0f);
}

TEST(block_sizes_match_the_type_table)
{
    CHECK(nuri_type_get(NURI_TYPE_Q4_0)->type_size == sizeof(nuri_block_q4_0));
    CHECK(nuri_type_get(NURI_TYPE_Q4_1)->type_size == sizeof(nuri_block_q4_1));
    CHECK(nuri_type_get(NURI_TYPE_Q5_0)->type_size == sizeof(nuri_block_q5_0));
    CHECK(nuri_type_get(NURI_TYPE_Q5_1)->type_size == sizeof(nuri_block_q5_1));
    CHECK(nuri_type_get(NURI_TYPE_Q8_0)->type_size == sizeof(nuri_block_q8_0));
    CHECK(nuri_type_get(NURI_TYPE_Q8_1)->type_size == sizeof(nuri_block_q8_1));
    CHECK(nuri_type_get(NURI_TYPE_Q2_K)->type_size == sizeof(nuri_block_q2_K));
    CHECK(nuri_type_get(NURI_TYPE_Q3_K)->type_size == sizeof(nuri_block_q3_K));
    CHECK(nuri_type_get(NURI_TYPE_Q4_K)->type_size == sizeof(nuri_block_q4_K));
    CHECK(nuri_type_get(NURI_TYPE_Q5_K)->type_size == sizeof(nuri_block_q5_K));
    CHECK(nuri_type_get(NURI_TYPE_Q6_K)->type_size == sizeof(nuri_block_q6_K));
    CHECK(nuri_type_get(NURI_TYPE_Q8_K)->type_size == sizeof(nuri_block_q8_K));
    CHECK(nuri_type_get(NURI_TYPE_IQ4_NL)->type_size == sizeof(nuri_block_iq4_nl));
    CHECK(nuri_type_get(NURI_TYPE_IQ4_XS)->type_size == sizeof(nuri_block_iq4_xs));
    CHECK(nuri_type_get(NURI_TYPE_MXFP4)->type_size == sizeof(nuri_block_mxfp4));
}

/* ---- kernels: scalar reference ---- */

/* Expected relative RMS error of from_float -> to_float on Gaussian data (generous bounds). */
static double roundtrip_bound(uint32_t t)
{
    switch (t) {
    case NURI_TYPE_F32:
        return 0;
    case NURI_TYPE_F16:
        return 1e-3;
    case NURI_TYPE_BF16:
        return 5e-3;
    case NURI_TYPE_Q8_0:
        return 0.01;
    case NURI_TYPE_Q6_K:
        return 0.03;
    case NURI_TYPE_Q5_0:
    case NURI_TYPE_Q5_1:
    case NURI_TYPE_Q5_K:
        return 0.06;
    case NURI_TYPE_Q4_0:
    case NURI_TYPE_Q4_1:
    case NURI_TYPE_Q4_K:
        return 0.12;
    case NURI_TYPE_IQ4_NL:
    case NURI_TYPE_IQ4_XS:
        return 0.09; // measured 0.074: better than Q4_0's 0.083 at the same size
    case NURI_TYPE_MXFP4:
        return 0.14; // measured 0.110
    case NURI_TYPE_Q3_K:
        return 0.25;
    case NURI_TYPE_Q2_K:
        return 0.5;
    }
    return 0;
}

TEST(every_computable_type_has_kernels)
{
    for (size_t k = 0; k < N_WEIGHT_TYPES; k++) {
        const nuri_kernel_traits *kt = nuri_kernels(weight_types[k]);
        REQUIRE(kt != NULL);
        CHECKF(kt->to_float && kt->from_float && kt->vec_dot, "%s", tname(weight_types[k]));
        CHECK(nuri_type_get(weight_types[k])->computable);
        CHECK(nuri_kernels(kt->vec_dot_type) && nuri_kernels(kt->vec_dot_type)->from_float);
    }
    CHECK(nuri_kernels(NURI_TYPE_TQ1_0) == NULL);
    CHECK(nuri_kernels(NURI_TYPE_COUNT) == NULL);
    CHECK(nuri_kernels(NURI_TYPE_Q8_K)->vec_dot == NULL);
    CHECK(nuri_kernels_isa(NURI_TYPE_Q4_0, NURI_ISA_SCALAR) != NULL);
}

TEST(from_float_to_float_round_trips_within_type_error)
{
    enum { N = 4096 };
    static float x[N], y[N];
    static uint8_t q[N * 4];
    for (int i = 0; i < N; i++) x[i] = rng_normal();
    for (size_t k = 0; k < N_WEIGHT_TYPES; k++) {
        uint32_t t = weight_types[k];
        const nuri_kernel_traits *kt = nuri_kernels_isa(t, NURI_ISA_SCALAR);
        kt->from_float(x, q, N);
        kt->to_float(q, y, N);
        double e = rel_rms(y, x, N);
        if (getenv("NURI_TEST_VERBOSE")) printf("  %s: relative rms %.4f\n", tname(t), e);
        CHECKF(e <= roundtrip_bound(t), "%s: relative rms %.4g > %.4g", tname(t), e,
               roundtrip_bound(t));
    }
}

TEST(all_zero_rows_give_zeros_everywhere)
{
    enum { N = 512 };
    static float x[N], y[N];
    static uint8_t q[N * 4], a[N * 4];
    for (size_t k = 0; k < N_WEIGHT_TYPES; k++) {
        uint32_t t = weight_types[k];
        for (int isa = 0; isa <= NURI_ISA_AVX512; isa++) {
            const nuri_kernel_traits *kt = nuri_kernels_isa(t, (nuri_isa)isa);
            if (!kt) continue;
            const nuri_kernel_traits *ka = nuri_kernels_isa(kt->vec_dot_type, (nuri_isa)isa);
            memset(x, 0, sizeof x);
            kt->from_float(x, q, N);
            ka->from_float(x, a, N);
            for (int i = 0; i < N; i++) y[i] = 1;
            kt->to_float(q, y, N);
            int bad = 0;
            for (int i = 0; i < N; i++) bad += y[i] != 0;
            float s = -1;
            kt->vec_dot(N, &s, q, a);
            CHECKF(bad == 0 && s == 0, "%s/%s: %d non-zero, dot %g", tname(t),
                   nuri_isa_name((nuri_isa)isa), bad, s);
        }
    }
}

TEST(one_huge_value_survives_quantization)
{
    enum { N = 256 };
    static float x[N], y[N];
    static uint8_t q[N * 4];
    for (size_t k = 0; k < N_WEIGHT_TYPES; k++) {
        uint32_t t = weight_types[k];
        for (int i = 0; i < N; i++) x[i] = 1e-3f * rng_uniform();
        x[37] = 1e4f;
        const nuri_kernel_traits *kt = nuri_kernels_isa(t, NURI_ISA_SCALAR);
        kt->from_float(x, q, N);
        kt->to_float(q, y, N);
        int finite = 1;
        for (int i = 0; i < N; i++) finite &= isfinite(y[i]);
        CHECKF(finite && fabsf(y[37] - 1e4f) < 1e4f * 0.2f, "%s: huge value became %g", tname(t),
               y[37]);
    }
}

/* The dot product of the reference vec_dot equals the float dot of the dequantized rows, which
 * ties vec_dot's bit layout to to_float's. Returns sum |x_i y_i| through *norm. */
static double dequant_dot(uint32_t t, const void *q, const void *a, int64_t n, double *norm)
{
    static float xf[1 << 14], yf[1 << 14];
    nuri_kernels_isa(t, NURI_ISA_SCALAR)->to_float(q, xf, n);
    uint32_t at = nuri_kernels_isa(t, NURI_ISA_SCALAR)->vec_dot_type;
    nuri_kernels_isa(at, NURI_ISA_SCALAR)->to_float(a, yf, n);
    double s = 0, m = 0;
    for (int64_t i = 0; i < n; i++) {
        s += (double)xf[i] * yf[i];
        m += fabs((double)xf[i] * yf[i]);
    }
    *norm = m;
    return s;
}

static const int64_t dot_lengths[] = {256, 768, 4096, 256 * 17};

TEST(vec_dot_matches_dequantized_dot)
{
    static float x[1 << 14], y[1 << 14];
    static uint8_t q[1 << 16], a[1 << 16];
    for (size_t k = 0; k < N_WEIGHT_TYPES; k++) {
        uint32_t t = weight_types[k];
        const nuri_kernel_traits *kt = nuri_kernels_isa(t, NURI_ISA_SCALAR);
        const nuri_kernel_traits *ka = nuri_kernels_isa(kt->vec_dot_type, NURI_ISA_SCALAR);
        for (size_t li = 0; li < sizeof dot_lengths / sizeof dot_lengths[0]; li++) {
            int64_t n = dot_lengths[li];
            for (int64_t i = 0; i < n; i++) {
                x[i] = rng_normal();
                y[i] = rng_normal() * 3;
            }
            kt->from_float(x, q, n);
            ka->from_float(y, a, n);
            float s;
            kt->vec_dot(n, &s, q, a);
            double norm, want = dequant_dot(t, q, a, n, &norm);
            double err = fabs(s - want) / norm;
            /* Q8_1's s = F16(d * sum q) is rounded to F16 (as llama.cpp does), so the min term of
             * Q4_1 / Q5_1 is only good to ~2^-11 of the block's sum. */
            double tol = kt->vec_dot_type == NURI_TYPE_Q8_1 ? 1e-3 : 1e-5;
            CHECKF(err < tol, "%s n=%lld: %g vs %g (normalized error %.3g)", tname(t), (long long)n,
                   s, want, err);
        }
    }
}

/* ---- kernels: every ISA against the scalar reference ---- */

TEST(simd_vec_dot_matches_scalar)
{
    static float x[1 << 14], y[1 << 14];
    static uint8_t q[1 << 16], a[1 << 16];
    for (int isa = NURI_ISA_AVX2; isa <= NURI_ISA_AVX512; isa++) {
        if (!nuri_kernels_isa(NURI_TYPE_F32, (nuri_isa)isa)) {
            printf("  (this CPU lacks %s: skipped)\n", nuri_isa_name((nuri_isa)isa));
            continue;
        }
        for (size_t k = 0; k < N_WEIGHT_TYPES; k++) {
            uint32_t t = weight_types[k];
            const nuri_kernel_traits *ref = nuri_kernels_isa(t, NURI_ISA_SCALAR);
            const nuri_kernel_traits *ka = nuri_kernels_isa(ref->vec_dot_type, NURI_ISA_SCALAR);
            const nuri_kernel_traits *kv = nuri_kernels_isa(t, (nuri_isa)isa);
            // one block, odd block counts (SIMD tails), many blocks; F32/F16/BF16 odd lengths
            const int64_t bs = nuri_type_get(t)->block_size;
            const int64_t lens[] = {
                bs == 1 ? 37 : bs, bs == 1 ? 1001 : 3 * bs, 5 * bs, 7 * bs, 256 * 17, 8192};
            for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
                int64_t n = lens[li];
                for (int64_t i = 0; i < n; i++) {
                    x[i] = rng_normal() * (i % 97 == 0 ? 20.f : 1.f);
                    y[i] = rng_normal();
                }
                ref->from_float(x, q, n);
                ka->from_float(y, a, n);
                float s_ref, s;
                ref->vec_dot(n, &s_ref, q, a);
                kv->vec_dot(n, &s, q, a);
                double norm;
                dequant_dot(t, q, a, n, &norm);
                double err = fabs((double)s - s_ref) / (norm > 0 ? norm : 1);
                CHECKF(err < 1e-5, "%s/%s n=%lld: %.7g vs scalar %.7g (normalized %.3g)", tname(t),
                       nuri_isa_name((nuri_isa)isa), (long long)n, s, s_ref, err);
            }
        }
    }
}

/* Rows that exercise the activation quantizers' rounding: exact ties, zeros, sign of the max. */
static void fill_activation_row(float *x, int64_t n, int kind)
{
    for (int64_t i = 0; i < n; i++) {
        switch (kind) {
        case 0:
            x[i] = rng_normal();
            break;
        case 1:
            x[i] = (float)((int)(rng_u32() % 255) - 127) * 0.5f;
            break; // many .5 ties
        case 2:
            x[i] = (i % 32 == 0) ? 127.f : (float)(i % 7) - 3.5f;
            break; // id == 1: ties
        case 3:
            x[i] = (i % 64 < 32) ? 0.f : rng_uniform() * 1e-30f;
            break; // zero / tiny
        default:
            x[i] = (i % 256 == 5) ? -8.f : ((i % 256 == 9) ? 8.f : rng_uniform());
            break;
        }
    }
}

TEST(activation_quantizers_are_bit_identical_across_isas)
{
    static float x[4096];
    static uint8_t a_ref[4096 * 2], a[4096 * 2];
    const uint32_t acts[] = {NURI_TYPE_Q8_0, NURI_TYPE_Q8_1, NURI_TYPE_Q8_K, NURI_TYPE_F16,
                             NURI_TYPE_BF16};
    for (int isa = NURI_ISA_AVX2; isa <= NURI_ISA_AVX512; isa++) {
        if (!nuri_kernels_isa(NURI_TYPE_F32, (nuri_isa)isa)) continue;
        for (size_t k = 0; k < sizeof acts / sizeof acts[0]; k++)
            for (int kind = 0; kind < 5; kind++) {
                int64_t n = 4096;
                fill_activation_row(x, n, kind);
                size_t nb = row_bytes(acts[k], n);
                memset(a_ref, 0xAA, nb);
                memset(a, 0x55, nb);
                nuri_kernels_isa(acts[k], NURI_ISA_SCALAR)->from_float(x, a_ref, n);
                nuri_kernels_isa(acts[k], (nuri_isa)isa)->from_float(x, a, n);
                CHECKF(!memcmp(a, a_ref, nb), "%s/%s, row kind %d differs", tname(acts[k]),
                       nuri_isa_name((nuri_isa)isa), kind);
                float f_ref[4096], f[4096];
                nuri_kernels_isa(acts[k], NURI_ISA_SCALAR)->to_float(a_ref, f_ref, n);
                nuri_kernels_isa(acts[k], (nuri_isa)isa)->to_float(a_ref, f, n);
                CHECKF(!memcmp(f, f_ref, sizeof f), "%s/%s to_float differs", tname(acts[k]),
                       nuri_isa_name((nuri_isa)isa));
            }
    }
}

TEST(q8_0_rounds_half_to_even)
{
    float x[32] = {127.f, 0.5f, 1.5f, -2.5f, 2.5f, -0.5f, 3.49f};
    nuri_block_q8_0 b;
    nuri_kernels_isa(NURI_TYPE_Q8_0, NURI_ISA_SCALAR)->from_float(x, &b, 32);
    CHECK(b.qs[0] == 127 && b.qs[1] == 0 && b.qs[2] == 2 && b.qs[3] == -2 && b.qs[4] == 2);
    CHECK(b.qs[5] == 0 && b.qs[6] == 3 && b.qs[7] == 0);
    CHECK(b.d == nuri_f32_to_f16(1.0f));
}

TEST(q8_1_sum_is_d_times_sum_of_quants)
{
    float x[32];
    for (int i = 0; i < 32; i++) x[i] = (float)i - 10.f;
    nuri_block_q8_1 b;
    nuri_kernels_isa(NURI_TYPE_Q8_1, NURI_ISA_SCALAR)->from_float(x, &b, 32);
    int sum = 0;
    for (int i = 0; i < 32; i++) sum += b.qs[i];
    CHECK(b.qs[31] == 127);
    CHECK(b.s == nuri_f32_to_f16((21.f / 127.f) * (float)sum));
}

TEST(q8_K_takes_the_first_largest_magnitude_with_its_sign)
{
    float x[256];
    for (int i = 0; i < 256; i++) x[i] = 0.25f * (float)(i % 5);
    x[10] = -3.f;
    x[200] = 3.f; // same magnitude, later: ignored
    nuri_block_q8_K b;
    nuri_kernels_isa(NURI_TYPE_Q8_K, NURI_ISA_SCALAR)->from_float(x, &b, 256);
    float iscale = -127.f / -3.f;
    CHECK(b.d == 1 / iscale);
    CHECK(b.qs[10] == -127 && b.qs[200] == 127);
    CHECK(b.qs[1] == (int8_t)nearbyintf(iscale * 0.25f));
    int sum = 0;
    for (int i = 16; i < 32; i++) sum += b.qs[i];
    CHECK(b.bsums[1] == sum);
}

/* ---- layouts against llama.cpp-quantized files ---- */

/* Dequantizes every 2-D tensor of llama-tiny-<type>.gguf and compares it with the same tensor of
 * llama-tiny-F32.gguf. A wrong bit order gives a relative RMS error near 1. */
static void check_model_layout(uint32_t type, const char *file, double bound)
{
    gguf_file *ref = NULL, *f = NULL;
    nuri_status st = gguf_open("tests/data/models/llama-tiny-F32.gguf", &ref);
    CHECKF(st == NURI_OK, "%s", nuri_last_error());
    st = gguf_open(file, &f);
    CHECKF(st == NURI_OK, "%s: %s", file, nuri_last_error());
    if (!ref || !f) goto done;
    int checked = 0;
    double worst = 0;
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        if (t->type != type) continue;
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        const gguf_tensor *r = gguf_find_tensor(ref, name);
        REQUIRE(r && r->type == NURI_TYPE_F32);
        int64_t n = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) n *= t->ne[d];
        REQUIRE(n == (int64_t)(r->size / 4));
        float *y = malloc((size_t)n * sizeof(float));
        REQUIRE(y);
        for (int isa = 0; isa <= NURI_ISA_AVX512; isa++) {
            const nuri_kernel_traits *kt = nuri_kernels_isa(type, (nuri_isa)isa);
            if (!kt) continue;
            kt->to_float(t->data, y, n);
            double e = rel_rms(y, r->data, n);
            if (e > worst) worst = e;
            CHECKF(e < bound, "%s %s/%s: relative rms %.4f >= %.4f", file, name,
                   nuri_isa_name((nuri_isa)isa), e, bound);
        }
        free(y);
        checked++;
    }
    CHECKF(checked > 0, "%s has no %s tensor", file, tname(type));
    if (getenv("NURI_TEST_VERBOSE"))
        printf("  %s: %d tensors, worst relative rms %.4f\n", tname(type), checked, worst);
done:
    gguf_close(f);
    gguf_close(ref);
}

TEST(dequantized_llama_cpp_tensors_match_f32_weights)
{
    static const struct {
        uint32_t type;
        double bound;
    } cases[] = {
        {NURI_TYPE_F16, 1e-3},  {NURI_TYPE_BF16, 5e-3}, {NURI_TYPE_Q8_0, 0.02},
        {NURI_TYPE_Q6_K, 0.03}, {NURI_TYPE_Q5_0, 0.06}, {NURI_TYPE_Q5_1, 0.06},
        {NURI_TYPE_Q5_K, 0.06}, {NURI_TYPE_Q4_0, 0.12}, {NURI_TYPE_Q4_1, 0.12},
        {NURI_TYPE_Q4_K, 0.12}, {NURI_TYPE_Q3_K, 0.2},  {NURI_TYPE_Q2_K, 0.35},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char file[256];
        snprintf(file, sizeof file, "tests/data/models/llama-tiny-%s.gguf", tname(cases[k].type));
        check_model_layout(cases[k].type, file, cases[k].bound);
    }
}

/* A quantized model file's rows times quantized activations: every ISA's vec_dot equals the
 * scalar one on real llama.cpp data (not only on data our own quantizers made). */
TEST(vec_dot_on_llama_cpp_rows_matches_scalar)
{
    static const uint32_t types[] = {NURI_TYPE_Q4_0, NURI_TYPE_Q4_1, NURI_TYPE_Q5_0,
                                     NURI_TYPE_Q5_1, NURI_TYPE_Q8_0, NURI_TYPE_Q2_K,
                                     NURI_TYPE_Q3_K, NURI_TYPE_Q4_K, NURI_TYPE_Q5_K,
                                     NURI_TYPE_Q6_K, NURI_TYPE_F16,  NURI_TYPE_BF16};
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        char file[256];
        snprintf(file, sizeof file, "tests/data/models/llama-tiny-%s.gguf", tname(types[k]));
        gguf_file *f = NULL;
        if (gguf_open(file, &f) != NURI_OK) {
            CHECKF(0, "%s: %s", file, nuri_last_error());
            continue;
        }
        const gguf_tensor *t = gguf_find_tensor(f, "blk.0.ffn_down.weight");
        if (!t || t->type != types[k]) {
            CHECKF(0, "%s: blk.0.ffn_down.weight missing or of another type", file);
            gguf_close(f);
            continue;
        }
        int64_t n = t->ne[0];
        size_t rb = row_bytes(t->type, n);
        const nuri_kernel_traits *ref = nuri_kernels_isa(t->type, NURI_ISA_SCALAR);
        static float x[1 << 14];
        static uint8_t a[1 << 16];
        for (int64_t i = 0; i < n; i++) x[i] = rng_normal();
        nuri_kernels_isa(ref->vec_dot_type, NURI_ISA_SCALAR)->from_float(x, a, n);
        for (int isa = NURI_ISA_AVX2; isa <= NURI_ISA_AVX512; isa++) {
            const nuri_kernel_traits *kv = nuri_kernels_isa(t->type, (nuri_isa)isa);
            if (!kv) continue;
            double worst = 0;
            for (int64_t r = 0; r < 16 && r < t->ne[1]; r++) {
                const uint8_t *row = (const uint8_t *)t->data + r * rb;
                float s_ref, s;
                ref->vec_dot(n, &s_ref, row, a);
                kv->vec_dot(n, &s, row, a);
                double norm;
                dequant_dot(t->type, row, a, n, &norm);
                double e = fabs((double)s - s_ref) / norm;
                if (e > worst) worst = e;
            }
            CHECKF(worst < 1e-5, "%s/%s: normalized error %.3g", tname(t->type),
                   nuri_isa_name((nuri_isa)isa), worst);
        }
        gguf_close(f);
    }
}

TEST(f16_bf16_row_converters_agree_on_special_values)
{
    const float sp[] = {INFINITY,
                        -INFINITY,
                        NAN,
                        -NAN,
                        65504.f,
                        65519.f,
                        65520.f,
                        -65520.f,
                        0x1p-24f,
                        0x1p-25f,
                        3 * 0x1p-25f,
                        0x1p-14f - 0x1p-25f,
                        -0.0f,
                        1e-40f,
                        3.4e38f,
                        1.0f + 0x1p-11f,
                        nuri_bits_to_f32(0x3f808000)};
    enum { N = 64 };
    float x[N], back_ref[N], back[N];
    for (int i = 0; i < N; i++) x[i] = sp[i % (sizeof sp / sizeof sp[0])];
    const uint32_t types[] = {NURI_TYPE_F16, NURI_TYPE_BF16};
    for (int isa = NURI_ISA_AVX2; isa <= NURI_ISA_AVX512; isa++)
        for (int k = 0; k < 2; k++) {
            const nuri_kernel_traits *kv = nuri_kernels_isa(types[k], (nuri_isa)isa);
            if (!kv) continue;
            const nuri_kernel_traits *kr = nuri_kernels_isa(types[k], NURI_ISA_SCALAR);
            uint16_t h_ref[N], h[N];
            kr->from_float(x, h_ref, N);
            kv->from_float(x, h, N);
            CHECKF(!memcmp(h, h_ref, sizeof h), "%s/%s from_float", tname(types[k]),
                   nuri_isa_name((nuri_isa)isa));
            kr->to_float(h_ref, back_ref, N);
            kv->to_float(h_ref, back, N);
            CHECKF(!memcmp(back, back_ref, sizeof back), "%s/%s to_float", tname(types[k]),
                   nuri_isa_name((nuri_isa)isa));
        }
}

/* ---- gemm: every ISA's block matmul against scalar vec_dot, and batch invariance ---- */

/* For each type and ISA: a (rows x n) weight block times n_t activation rows through nuri_gemm,
 * compared with the scalar vec_dot of each (row, token); then every output recomputed alone
 * (r0 = r, r1 = r + 1, n_t = 1) and in odd sub-blocks must be bit-identical (batch invariance). */
TEST(gemm_matches_scalar_and_is_batch_invariant)
{
    enum { ROWS = 11, NT = 21, NMAX = 8192 + 96 };
    static float xf[NMAX], y_all[NT * ROWS], y_one[NT * ROWS], y_sub[NT * ROWS];
    static uint8_t w[ROWS * (NMAX * 4 + 64)], a[NT * (NMAX * 4 + 64)];
    const int64_t lens[] = {32, 96, 160, 256, 768, 2048 + 256, 8192};
    for (int isa = NURI_ISA_SCALAR; isa <= NURI_ISA_AVX512; isa++) {
        if (!nuri_kernels_isa(NURI_TYPE_F32, (nuri_isa)isa)) continue;
        for (size_t k = 0; k < N_WEIGHT_TYPES; k++) {
            uint32_t t = weight_types[k];
            const nuri_kernel_traits *ref = nuri_kernels_isa(t, NURI_ISA_SCALAR);
            const nuri_kernel_traits *ka = nuri_kernels_isa(ref->vec_dot_type, NURI_ISA_SCALAR);
            const nuri_kernel_traits *kv = nuri_kernels_isa(t, (nuri_isa)isa);
            const int64_t bs = nuri_type_get(t)->block_size;
            for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
                const int64_t n = lens[li];
                if (n % bs) continue;
                const size_t wb = row_bytes(t, n), ab = row_bytes(ref->vec_dot_type, n);
                for (int r = 0; r < ROWS; r++) {
                    for (int64_t i = 0; i < n; i++) xf[i] = rng_normal();
                    ref->from_float(xf, w + (size_t)r * wb, n);
                }
                for (int j = 0; j < NT; j++) {
                    for (int64_t i = 0; i < n; i++) xf[i] = rng_normal() * (j + 1);
                    ka->from_float(xf, a + (size_t)j * ab, n);
                }
                nuri_gemm(kv, n, w, wb, 0, ROWS, a, ab, NT, y_all, ROWS);
                double worst = 0;
                for (int j = 0; j < NT; j++)
                    for (int r = 0; r < ROWS; r++) {
                        float s_ref;
                        ref->vec_dot(n, &s_ref, w + (size_t)r * wb, a + (size_t)j * ab);
                        double norm;
                        dequant_dot(t, w + (size_t)r * wb, a + (size_t)j * ab, n, &norm);
                        double err =
                            fabs((double)y_all[j * ROWS + r] - s_ref) / (norm > 0 ? norm : 1);
                        if (err > worst) worst = err;
                        // y is indexed by absolute row: this writes y_one[j * ROWS + r]
                        nuri_gemm(kv, n, w, wb, r, r + 1, a + (size_t)j * ab, ab, 1,
                                  y_one + j * ROWS, ROWS);
                    }
                CHECKF(worst < 1e-5, "%s/%s n=%lld: gemm vs scalar normalized error %.3g", tname(t),
                       nuri_isa_name((nuri_isa)isa), (long long)n, worst);
                CHECKF(!memcmp(y_all, y_one, sizeof(float) * NT * ROWS),
                       "%s/%s n=%lld: gemm of the whole block differs from one output at a time",
                       tname(t), nuri_isa_name((nuri_isa)isa), (long long)n);
                // an odd sub-block: rows [3, 10), tokens [5, 18)
                nuri_gemm(kv, n, w, wb, 3, 10, a + 5 * ab, ab, 13, y_sub, ROWS);
                bool same = true;
                for (int j = 0; j < 13; j++)
                    for (int r = 3; r < 10; r++)
                        same &= y_sub[j * ROWS + r] == y_all[(j + 5) * ROWS + r];
                CHECKF(same, "%s/%s n=%lld: gemm of a sub-block differs", tname(t),
                       nuri_isa_name((nuri_isa)isa), (long long)n);
            }
        }
    }
}

/* Attention inner loops: every ISA against a float64 computation, for head sizes with and without
 * a SIMD tail and group sizes 1..6; a run split in pieces gives bit-identical results. */
TEST(attention_kernels_match_reference_and_split_runs)
{
    enum { N = 45, MAXHD = 136, MAXG = 6, KS = MAXHD * 2 + 8 };
    static uint16_t k[N * KS], v[N * KS];
    static float q[MAXG * MAXHD], p[MAXG * N], s[MAXG * N], s2[MAXG * N], out[MAXG * MAXHD],
        out2[MAXG * MAXHD];
    for (int i = 0; i < N * KS; i++) {
        k[i] = nuri_f32_to_f16(rng_normal());
        v[i] = nuri_f32_to_f16(rng_normal());
    }
    const int32_t hds[] = {64, 128, 136, 40, 8};
    for (int isa = NURI_ISA_SCALAR; isa <= NURI_ISA_AVX512; isa++) {
        const nuri_attn_kernels *ak = nuri_attn_isa((nuri_isa)isa);
        if (!ak) continue;
        for (size_t h = 0; h < sizeof hds / sizeof hds[0]; h++)
            for (int32_t G = 1; G <= MAXG; G++) {
                const int32_t hd = hds[h];
                for (int i = 0; i < G * hd; i++)
                    q[i] = nuri_f16_to_f32(nuri_f32_to_f16(rng_normal()));
                for (int i = 0; i < G * N; i++) // some exact zeros, as F16 rounding makes them
                    p[i] = rng_u32() % 5 == 0 ? 0.0f : fabsf(rng_uniform());
                ak->scores(hd, G, q, k, KS, N, 0.125f, s, N);
                ak->scores(hd, G, q, k, KS, 17, 0.125f, s2, N);
                ak->scores(hd, G, q, k + 17 * KS, KS, N - 17, 0.125f, s2 + 17, N);
                memset(out, 0, sizeof out);
                memset(out2, 0, sizeof out2);
                ak->accum(hd, G, p, N, v, KS, N, out);
                ak->accum(hd, G, p, N, v, KS, 30, out2);
                ak->accum(hd, G, p + 30, N, v + 30 * KS, KS, N - 30, out2);
                double worst = 0.0;
                for (int32_t g = 0; g < G; g++) {
                    for (int32_t j = 0; j < N; j++) {
                        double ref = 0.0;
                        for (int32_t d = 0; d < hd; d++)
                            ref += (double)q[g * hd + d] * nuri_f16_to_f32(k[j * KS + d]);
                        ref *= 0.125;
                        double e = fabs(s[g * N + j] - ref) / (1.0 + fabs(ref));
                        if (e > worst) worst = e;
                    }
                    for (int32_t d = 0; d < hd; d++) {
                        double ref = 0.0;
                        for (int32_t j = 0; j < N; j++)
                            ref += (double)p[g * N + j] * nuri_f16_to_f32(v[j * KS + d]);
                        double e = fabs(out[g * hd + d] - ref) / (1.0 + fabs(ref));
                        if (e > worst) worst = e;
                    }
                }
                CHECKF(worst < 1e-5, "isa %d hd %d G %d: relative error %g", isa, hd, G, worst);
                CHECKF(!memcmp(s, s2, sizeof(float) * (size_t)G * N),
                       "isa %d hd %d G %d: split "
                       "scores differ",
                       isa, hd, G);
                CHECKF(!memcmp(out, out2, sizeof(float) * (size_t)G * hd),
                       "isa %d hd %d G %d: split accumulation differs", isa, hd, G);
            }
    }
}

/* scores_t over a transposed block: every ISA gives the scalar reference's bits (one FMA chain per
 * row), within float rounding of a double computation, and any split of the block's rows gives
 * the same scores. */
TEST(transposed_scores_match_reference_on_every_isa)
{
    enum { R = NURI_ATTN_TROWS, MAXHD = 136, MAXG = 9 };
    static uint16_t kt[MAXHD * R];
    static float q[MAXG * MAXHD], s[MAXG * R], s2[MAXG * R], ref[MAXG * R];
    const int32_t hds[] = {64, 128, 136, 40, 8};
    const nuri_attn_kernels *sc = nuri_attn_isa(NURI_ISA_SCALAR);
    for (size_t h = 0; h < sizeof hds / sizeof hds[0]; h++)
        for (int32_t G = 1; G <= MAXG; G++) {
            const int32_t hd = hds[h];
            for (int i = 0; i < hd * R; i++) kt[i] = nuri_f32_to_f16(rng_normal());
            for (int i = 0; i < G * hd; i++) q[i] = nuri_f16_to_f32(nuri_f32_to_f16(rng_normal()));
            sc->scores_t(hd, G, q, kt, 0, R, 0.125f, ref, R);
            double worst = 0.0;
            for (int32_t g = 0; g < G; g++)
                for (int32_t j = 0; j < R; j++) {
                    double d64 = 0.0;
                    for (int32_t d = 0; d < hd; d++)
                        d64 += (double)q[g * hd + d] * nuri_f16_to_f32(kt[d * R + j]);
                    d64 *= 0.125;
                    const double e = fabs(ref[g * R + j] - d64) / (1.0 + fabs(d64));
                    if (e > worst) worst = e;
                }
            CHECKF(worst < 1e-5, "hd %d G %d: relative error %g", hd, G, worst);
            for (int isa = NURI_ISA_SCALAR; isa <= NURI_ISA_AVX512; isa++) {
                const nuri_attn_kernels *ak = nuri_attn_isa((nuri_isa)isa);
                if (!ak) continue;
                memset(s, 0, sizeof s);
                memset(s2, 0, sizeof s2);
                ak->scores_t(hd, G, q, kt, 0, R, 0.125f, s, R);
                ak->scores_t(hd, G, q, kt, 0, 5, 0.125f, s2, R);
                ak->scores_t(hd, G, q, kt, 5, 14, 0.125f, s2 + 5, R);
                ak->scores_t(hd, G, q, kt, 19, R - 19, 0.125f, s2 + 19, R);
                CHECKF(!memcmp(s, ref, sizeof(float) * (size_t)G * R),
                       "isa %d hd %d G %d: scores differ from the scalar reference", isa, hd, G);
                CHECKF(!memcmp(s, s2, sizeof(float) * (size_t)G * R),
                       "isa %d hd %d G %d: split scores differ", isa, hd, G);
            }
        }
}

/* scores_tq over a transposed Q8_0 or Q4_0 block: every ISA gives the bits of the row-major
 * scores_q reference on the same rows (exact integer sums, the same float steps), for any split
 * of the block's rows; the block gives back the rows it was given. */
TEST(transposed_quantized_scores_match_row_major_reference_on_every_isa)
{
    enum { R = NURI_ATTN_TROWS, MAXHD = 256, MAXG = 9, ROW = MAXHD / 32 * 34 };
    static uint8_t rows[R * ROW], kt[R * ROW], back[ROW], q8[MAXG * ROW];
    static float x[MAXHD], q[MAXG * MAXHD], s[MAXG * R], s2[MAXG * R], ref[MAXG * R];
    static int32_t qsum[MAXG * MAXHD / 32];
    const int32_t hds[] = {64, 128, 256, 96, 32};
    const uint32_t types[] = {NURI_TYPE_Q8_0, NURI_TYPE_Q4_0};
    const nuri_attn_kernels *sc = nuri_attn_isa(NURI_ISA_SCALAR);
    for (int ti = 0; ti < 2; ti++)
        for (size_t h = 0; h < sizeof hds / sizeof hds[0]; h++)
            for (int32_t G = 1; G <= MAXG; G++) {
                const uint32_t type = types[ti];
                const int32_t hd = hds[h], nb = hd / 32;
                const size_t row = nuri_kv_row_bytes(type, hd);
                memset(kt, 0xa5, sizeof kt);
                for (int i = 0; i < R; i++) {
                    for (int d = 0; d < hd; d++) x[d] = rng_normal() * (i % 3 ? 1.0f : 30.0f);
                    nuri_kv_store_row(type, x, rows + i * row, hd);
                    nuri_kv_tq_put(type, kt, i, rows + i * row, hd);
                }
                for (int i = 0; i < R; i++) {
                    memset(back, 0x5a, sizeof back);
                    nuri_kv_tq_get(type, kt, i, back, hd);
                    CHECKF(!memcmp(back, rows + i * row, row), "type %u hd %d: row %d changed",
                           type, hd, i);
                }
                for (int i = 0; i < G * hd; i++) q[i] = rng_normal();
                nuri_kernels(NURI_TYPE_Q8_0)->from_float(q, q8, (int64_t)G * hd);
                nuri_q8_block_sums(q8, G * nb, qsum);
                sc->scores_q(type, hd, G, q8, rows, row, R, 0.125f, ref, R);
                for (int isa = NURI_ISA_SCALAR; isa <= NURI_ISA_AVX512; isa++) {
                    const nuri_attn_kernels *ak = nuri_attn_isa((nuri_isa)isa);
                    if (!ak) continue;
                    memset(s, 0, sizeof s);
                    memset(s2, 0, sizeof s2);
                    ak->scores_tq(type, hd, G, q8, qsum, kt, 0, R, 0.125f, s, R);
                    ak->scores_tq(type, hd, G, q8, qsum, kt, 0, 7, 0.125f, s2, R);
                    ak->scores_tq(type, hd, G, q8, qsum, kt, 7, 20, 0.125f, s2 + 7, R);
                    ak->scores_tq(type, hd, G, q8, qsum, kt, 27, R - 27, 0.125f, s2 + 27, R);
                    CHECKF(!memcmp(s, ref, sizeof(float) * (size_t)G * R),
                           "type %u isa %d hd %d G %d: scores differ from the row-major reference",
                           type, isa, hd, G);
                    CHECKF(!memcmp(s, s2, sizeof(float) * (size_t)G * R),
                           "type %u isa %d hd %d G %d: split scores differ", type, isa, hd, G);
                }
            }
}

/* Softmax (with its F16 rounding) and SwiGLU: every ISA within an F16 step / 2 ulp-ish of a
 * double computation, over lengths with and without a SIMD tail and wide score ranges. */
TEST(softmax_and_swiglu_match_double)
{
    static float s[1000], s0[1000], g[1000], u[1000];
    const int32_t lens[] = {1, 7, 16, 33, 1000};
    for (int isa = NURI_ISA_SCALAR; isa <= NURI_ISA_AVX512; isa++) {
        const nuri_attn_kernels *ak = nuri_attn_isa((nuri_isa)isa);
        if (!ak) continue;
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            const int32_t n = lens[li];
            for (int32_t j = 0; j < n; j++) s[j] = s0[j] = rng_normal() * 8.0f;
            ak->softmax(s, n);
            double max = -INFINITY, sum = 0, worst = 0;
            for (int32_t j = 0; j < n; j++) max = s0[j] > max ? s0[j] : max;
            for (int32_t j = 0; j < n; j++) sum += exp((double)s0[j] - max);
            for (int32_t j = 0; j < n; j++) {
                const double p = exp((double)s0[j] - max) / sum;
                const double e = fabs(s[j] - p) / (p > 6.1e-5 ? p : 6.1e-5);
                worst = e > worst ? e : worst;
                CHECKF(s[j] == nuri_f16_to_f32(nuri_f32_to_f16(s[j])), "isa %d: p not an F16", isa);
            }
            CHECKF(worst < 1.1e-3, "isa %d n %d: softmax error %g (F16 steps)", isa, n, worst);
            for (int32_t j = 0; j < n; j++) {
                g[j] = s0[j] * (j % 3 ? 1.0f : 12.0f);
                u[j] = rng_normal();
            }
            memcpy(s, g, sizeof(float) * (size_t)n);
            ak->swiglu(g, u, n);
            worst = 0;
            for (int32_t j = 0; j < n; j++) {
                const double x = s[j], y = x / (1.0 + exp(-x)) * u[j];
                const double e = fabs(g[j] - y) / (fabs(y) > 1e-30 ? fabs(y) : 1e-30);
                worst = e > worst ? e : worst;
            }
            CHECKF(worst < 1e-6, "isa %d n %d: swiglu relative error %g", isa, n, worst);
        }
    }
}

/* AVX2's softmax (both roundings) and SwiGLU take AVX-512's steps (exp without vscalefps): on a
 * CPU with both, the same bits, over tails of every length and inputs whose e^x underflows to
 * subnormals and 0 or overflows. */
TEST(avx2_softmax_and_swiglu_equal_avx512)
{
    const nuri_attn_kernels *a2 = nuri_attn_isa(NURI_ISA_AVX2),
                            *a5 = nuri_attn_isa(NURI_ISA_AVX512);
    if (!a2 || !a5) return; // this CPU lacks one of them
    static float s[1100], t[1100], g[1100], h[1100], u[1100];
    for (int32_t n = 1; n <= 1100; n += n < 40 ? 1 : 97) {
        for (int round = 0; round < 2; round++) {
            for (int32_t j = 0; j < n; j++) // spreads from 1 to 200: e^(x - max) down to 0
                s[j] = t[j] = rng_normal() * (float)(1 + (j * 7 + n) % 200);
            (round ? a2->softmax : a2->softmax_f32)(s, n);
            (round ? a5->softmax : a5->softmax_f32)(t, n);
            CHECKF(!memcmp(s, t, sizeof(float) * (size_t)n), "n %d round %d: softmax differs", n,
                   round);
        }
        for (int32_t j = 0; j < n; j++) {
            g[j] = h[j] = rng_normal() * (float)(1 + (j * 5 + n) % 120); // e^-x to inf and 0
            u[j] = rng_normal();
        }
        a2->swiglu(g, u, n);
        a5->swiglu(h, u, n);
        CHECKF(!memcmp(g, h, sizeof(float) * (size_t)n), "n %d: swiglu differs", n);
    }
}

/* pack_avx2.c's kernels, called directly: on an AVX-512 CPU they must give the VNNI kernels'
 * outputs bit for bit. */
void kernels_packed_gemm_avx2(uint32_t type, int64_t n, const void *wp, int64_t n_out, int64_t g0,
                              int64_t g1, const void *x, size_t x_stride, int64_t n_t, float *y,
                              int64_t y_stride, const nuri_share *sh);

/* Packed (x16) weights: the product matches the scalar vec_dot, and every output is bit-identical
 * whether computed with all 40 tokens, one token at a time, a sub-range of row groups, with AMX
 * tiles instead of VNNI (when this CPU has AMX), with the activations broadcast the other way
 * (nuri_pack_spread), with the high bits of Q3_K / Q5_K / Q6_K codes taken the other way
 * (nuri_pack_gfni, when this CPU has GFNI), or with the AVX2 kernels instead of VNNI (when
 * this CPU has AVX-512; with NURI_ISA=avx2 the AVX2 kernels are the ones checked throughout). F16
 * and BF16 (packed on AVX-512 only where the CPU has AVX512_BF16) are held to the same bound: F16
 * keeps its weights exact, and BF16's vdpbf16ps multiplies BF16 values exactly, so only the F32
 * sums' order differs; the AVX2 BF16 kernel adds its FMAs in vdpbf16ps's order (bit-identical). */
TEST(packed_gemm_matches_scalar_is_batch_invariant_and_amx_equals_vnni)
{
    enum { NT = 40, RMAX = 100, NMAX = 4096 };
    static float xf[NMAX], y_all[NT * RMAX], y_one[NT * RMAX], y_amx[NT * RMAX], y_sub[NT * RMAX];
    static uint8_t w[RMAX * (2 * NMAX + 256)], a[NT * (2 * NMAX + 256)],
        packed[(RMAX + 16) * (2 * NMAX + 256)];
    const uint32_t types[] = {NURI_TYPE_Q4_0,   NURI_TYPE_Q8_0,   NURI_TYPE_Q4_K,  NURI_TYPE_Q6_K,
                              NURI_TYPE_IQ4_NL, NURI_TYPE_IQ4_XS, NURI_TYPE_MXFP4, NURI_TYPE_Q5_K,
                              NURI_TYPE_Q3_K,   NURI_TYPE_Q2_K,   NURI_TYPE_F16,   NURI_TYPE_BF16};
    const int64_t lens[] = {32, 96, 256, 768, 2048, 4096};
    const int64_t outs[] = {5, 16, 40, 100};
    if (!nuri_pack_supported(NURI_TYPE_Q8_0)) {
        printf("  (nothing is packed on this CPU)\n");
        return;
    }
    nuri_pack_gfni_set(1);
    const bool gfni = nuri_pack_gfni();
    nuri_pack_gfni_set(-1);
    printf("  packed kernels: %s, AMX %s, GFNI %s\n",
           nuri_cpu_isa() >= NURI_ISA_AVX512 ? "AVX-512 VNNI" : "AVX2",
           nuri_pack_amx() ? "used" : "not available", gfni ? "both ways" : "not available");
    static float y_avx2[NT * RMAX];
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++)
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++)
            for (size_t oi = 0; oi < sizeof outs / sizeof outs[0]; oi++) {
                const uint32_t t = types[k];
                const int64_t n = lens[li], n_out = outs[oi], groups = (n_out + 15) / 16;
                const nuri_kernel_traits *ref = nuri_kernels_isa(t, NURI_ISA_SCALAR);
                if (n % nuri_type_get(t)->block_size || !nuri_pack_supported(t)) continue;
                const nuri_kernel_traits *ka = nuri_kernels_isa(ref->vec_dot_type, NURI_ISA_SCALAR);
                const size_t wb = row_bytes(t, n), ab = row_bytes(ref->vec_dot_type, n);
                for (int64_t r = 0; r < n_out; r++) {
                    for (int64_t i = 0; i < n; i++) xf[i] = rng_normal();
                    ref->from_float(xf, w + (size_t)r * wb, n);
                }
                for (int j = 0; j < NT; j++) {
                    for (int64_t i = 0; i < n; i++) xf[i] = rng_normal() * (j % 5 + 1);
                    ka->from_float(xf, a + (size_t)j * ab, n);
                }
                REQUIRE(nuri_pack_bytes(t, n, n_out) <= sizeof packed);
                REQUIRE(ab * NT <= sizeof a && wb * (size_t)n_out <= sizeof w);
                nuri_pack(t, w, wb, n, n_out, packed);
                nuri_gemm_packed(t, n, packed, n_out, 0, groups, a, ab, NT, y_all, n_out, false);
                nuri_gemm_packed(t, n, packed, n_out, 0, groups, a, ab, NT, y_amx, n_out, true);
                double worst = 0;
                for (int j = 0; j < NT; j++) {
                    nuri_gemm_packed(t, n, packed, n_out, 0, groups, a + (size_t)j * ab, ab, 1,
                                     y_one + j * n_out, n_out, true);
                    for (int64_t r = 0; r < n_out; r++) {
                        float s_ref;
                        ref->vec_dot(n, &s_ref, w + (size_t)r * wb, a + (size_t)j * ab);
                        double norm;
                        dequant_dot(t, w + (size_t)r * wb, a + (size_t)j * ab, n, &norm);
                        double err =
                            fabs((double)y_all[j * n_out + r] - s_ref) / (norm > 0 ? norm : 1);
                        if (err > worst) worst = err;
                    }
                }
                bool finite = true;
                for (int64_t i = 0; i < NT * n_out; i++) finite &= isfinite(y_all[i]);
                CHECKF(finite, "%s n=%lld rows=%lld: non-finite output", tname(t), (long long)n,
                       (long long)n_out);
                CHECKF(worst < 1e-5, "%s n=%lld rows=%lld: packed vs scalar normalized error %.3g",
                       tname(t), (long long)n, (long long)n_out, worst);
                CHECKF(!memcmp(y_all, y_one, sizeof(float) * NT * (size_t)n_out),
                       "%s n=%lld rows=%lld: 40 tokens at once differ from one at a time", tname(t),
                       (long long)n, (long long)n_out);
                CHECKF(!memcmp(y_all, y_amx, sizeof(float) * NT * (size_t)n_out),
                       "%s n=%lld rows=%lld: AMX differs from VNNI", tname(t), (long long)n,
                       (long long)n_out);
                // the other way of broadcasting activations (nuri_pack_spread) than this CPU's
                nuri_pack_spread_set(!nuri_pack_spread());
                nuri_gemm_packed(t, n, packed, n_out, 0, groups, a, ab, NT, y_sub, n_out, false);
                nuri_pack_spread_set(-1);
                CHECKF(!memcmp(y_all, y_sub, sizeof(float) * NT * (size_t)n_out),
                       "%s n=%lld rows=%lld: spread broadcasts differ from loaded ones", tname(t),
                       (long long)n, (long long)n_out);
                // the high bits of Q3_K / Q5_K / Q6_K codes the other way (nuri_pack_gfni)
                const bool gf = nuri_pack_gfni();
                nuri_pack_gfni_set(!gf);
                const bool flipped = nuri_pack_gfni() != gf;
                nuri_gemm_packed(t, n, packed, n_out, 0, groups, a, ab, NT, y_sub, n_out, false);
                nuri_pack_gfni_set(-1);
                CHECKF(!flipped || !memcmp(y_all, y_sub, sizeof(float) * NT * (size_t)n_out),
                       "%s n=%lld rows=%lld: GFNI bits differ from shifted ones", tname(t),
                       (long long)n, (long long)n_out);
                if (nuri_cpu_isa() >= NURI_ISA_AVX512 &&
                    (t == NURI_TYPE_Q4_0 || t == NURI_TYPE_Q8_0 || t == NURI_TYPE_Q4_K ||
                     t == NURI_TYPE_Q6_K || t == NURI_TYPE_Q5_K || t == NURI_TYPE_IQ4_NL ||
                     t == NURI_TYPE_IQ4_XS || t == NURI_TYPE_MXFP4 || t == NURI_TYPE_Q3_K ||
                     t == NURI_TYPE_Q2_K || t == NURI_TYPE_F16 || t == NURI_TYPE_BF16)) {
                    kernels_packed_gemm_avx2(t, n, packed, n_out, 0, groups, a, ab, NT, y_avx2,
                                             n_out, NULL);
                    CHECKF(!memcmp(y_all, y_avx2, sizeof(float) * NT * (size_t)n_out),
                           "%s n=%lld rows=%lld: AVX2 differs from VNNI", tname(t), (long long)n,
                           (long long)n_out);
                }
                // the last row group alone, tokens [7, 40)
                memset(y_sub, 0, sizeof y_sub);
                nuri_gemm_packed(t, n, packed, n_out, groups - 1, groups, a + 7 * ab, ab, NT - 7,
                                 y_sub, n_out, true);
                bool same = true;
                for (int j = 0; j < NT - 7; j++)
                    for (int64_t r = 16 * (groups - 1); r < n_out; r++)
                        same &= y_sub[j * n_out + r] == y_all[(j + 7) * n_out + r];
                CHECKF(same, "%s n=%lld rows=%lld: a sub-range differs", tname(t), (long long)n,
                       (long long)n_out);
            }
}

/* The bandwidth probe reads the whole buffer (it checks the sum it read) with 1 and 2 threads. */
TEST(membw_probe_reads_every_word)
{
    for (int th = 1; th <= 2; th++) {
        double g = 0;
        nuri_status s = nuri_membw_measure(th, (size_t)64 << 20, 1, &g);
        CHECKF(s == NURI_OK, "%d threads: %s", th, nuri_last_error());
        CHECK(g > 0);
    }
    double g;
    CHECK(nuri_membw_measure(0, (size_t)64 << 20, 1, &g) == NURI_ERR_INVALID_ARG);
}

int main(void)
{
    RUN(f16_every_half_round_trips_exactly);
    RUN(f16_rounds_to_nearest_even);
    RUN(bf16_rounds_to_nearest_even_and_keeps_nan);
    RUN(block_sizes_match_the_type_table);
    printf("  kernels for this CPU: %s\n", nuri_isa_name(nuri_cpu_isa()));
    RUN(every_computable_type_has_kernels);
    RUN(from_float_to_float_round_trips_within_type_error);
    RUN(all_zero_rows_give_zeros_everywhere);
    RUN(one_huge_value_survives_quantization);
    RUN(vec_dot_matches_dequantized_dot);
    RUN(simd_vec_dot_matches_scalar);
    RUN(gemm_matches_scalar_and_is_batch_invariant);
    RUN(membw_probe_reads_every_word);
    RUN(attention_kernels_match_reference_and_split_runs);
    RUN(transposed_scores_match_reference_on_every_isa);
    RUN(transposed_quantized_scores_match_row_major_reference_on_every_isa);
    RUN(softmax_and_swiglu_match_double);
    RUN(avx2_softmax_and_swiglu_equal_avx512);
    RUN(packed_gemm_matches_scalar_is_batch_invariant_and_amx_equals_vnni);
    RUN(activation_quantizers_are_bit_identical_across_isas);
    RUN(f16_bf16_row_converters_agree_on_special_values);
    RUN(q8_0_rounds_half_to_even);
    RUN(q8_1_sum_is_d_times_sum_of_quants);
    RUN(q8_K_takes_the_first_largest_magnitude_with_its_sign);
    RUN(dequantized_llama_cpp_tensors_match_f32_weights);
    RUN(vec_dot_on_llama_cpp_rows_matches_scalar);
    TEST_DONE();
}
