/* test_iq.c: the grid types IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S and IQ1_M: their grids
 * against the format's published values, dequantization of hand-built blocks against the formulas
 * of kernels/blocks_iq.h, the quantizers' error, and every dot product against the dot of the
 * dequantized rows, every ISA against the scalar reference. */
#include "kernels/blocks_iq.h"
#include "kernels/fp16.h"
#include "kernels/iq_grids.h"
#include "kernels/kernels.h"
#include "kernels/types.h"
#include "test.h"

#include <stdint.h>

static const uint32_t iq_types[] = {NURI_TYPE_IQ2_XXS, NURI_TYPE_IQ2_XS, NURI_TYPE_IQ2_S,
                                    NURI_TYPE_IQ3_XXS, NURI_TYPE_IQ3_S,  NURI_TYPE_IQ1_S,
                                    NURI_TYPE_IQ1_M};
#define N_IQ (sizeof iq_types / sizeof iq_types[0])

static uint64_t rng_state = 0x243F6A8885A308D3ull;
static uint32_t rng_u32(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32);
}
static float rng_normal(void) // ~ unit variance
{
    float s = 0;
    for (int i = 0; i < 6; i++) s += (float)(rng_u32() >> 8) * 0x1p-23f - 1.0f;
    return s * 0.7071f;
}

static size_t row_bytes(uint32_t t, int64_t n)
{
    uint64_t b = 0;
    return nuri_type_row_bytes(t, (uint64_t)n, &b) ? (size_t)b : 0;
}

static double rel_rms(const float *a, const float *b, int64_t n)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static uint64_t fnv(const void *p, size_t n, size_t stride, size_t width)
{
    uint64_t h = 0xcbf29ce484222325ull;
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < width; k++) h = (h ^ b[i * stride + k]) * 0x100000001b3ull;
    return h;
}

TEST(block_sizes_match_the_type_table)
{
    CHECK(nuri_type_get(NURI_TYPE_IQ2_XXS)->type_size == sizeof(nuri_block_iq2_xxs));
    CHECK(nuri_type_get(NURI_TYPE_IQ2_XS)->type_size == sizeof(nuri_block_iq2_xs));
    CHECK(nuri_type_get(NURI_TYPE_IQ2_S)->type_size == sizeof(nuri_block_iq2_s));
    CHECK(nuri_type_get(NURI_TYPE_IQ3_XXS)->type_size == sizeof(nuri_block_iq3_xxs));
    CHECK(nuri_type_get(NURI_TYPE_IQ3_S)->type_size == sizeof(nuri_block_iq3_s));
    CHECK(nuri_type_get(NURI_TYPE_IQ1_S)->type_size == sizeof(nuri_block_iq1_s));
    CHECK(nuri_type_get(NURI_TYPE_IQ1_M)->type_size == sizeof(nuri_block_iq1_m));
    for (size_t i = 0; i < N_IQ; i++) {
        CHECK(nuri_type_get(iq_types[i])->computable);
        CHECK(nuri_kernels(iq_types[i]) != NULL);
        CHECK(nuri_kernels(iq_types[i])->vec_dot_type == NURI_TYPE_Q8_K);
    }
}

/* The FNV-1a hashes of the element bytes of ggml's iq*_grid tables (ggml-common.h at llama.cpp
 * de3ff81, hashed point by point, element 0 first), and a few points written out. */
TEST(grids_hold_the_published_points)
{
    REQUIRE(nuri_kernels(NURI_TYPE_IQ2_XXS) != NULL); // expands the grids
    CHECK(fnv(nuri_iq2xxs_grid, NURI_IQ2XXS_N, 8, 8) == 0xbb4ee025b5ac6e8eull);
    CHECK(fnv(nuri_iq2xs_grid, NURI_IQ2XS_N, 8, 8) == 0xc9b1ee61e79909bdull);
    CHECK(fnv(nuri_iq2s_grid, NURI_IQ2S_N, 8, 8) == 0x123edd38a3b62b90ull);
    CHECK(fnv(nuri_iq3xxs_grid, NURI_IQ3XXS_N, 4, 4) == 0xdfa5dc83d6a155d5ull);
    CHECK(fnv(nuri_iq3s_grid, NURI_IQ3S_N, 4, 4) == 0xfa37020c25b44829ull);
    CHECK(fnv(nuri_iq1s_grid, NURI_IQ1S_N, 8, 8) == 0x6703ed863501ae2eull);
    CHECK(nuri_iq2xxs_grid[1] == 0x080808080808082bull);
    CHECK(nuri_iq2xxs_grid[255] == 0x2b2b2b1908081908ull);
    CHECK(nuri_iq3xxs_grid[255] == 0x3e341c04u);
    CHECK(nuri_iq3s_grid[1] == 0x01010103u);
    CHECK(nuri_iq1s_grid[1] == 0xffffffffffffff01ull);
    CHECK(nuri_iq1s_grid[2047] == 0x0101010101010101ull);
}

/* ---- hand-built blocks: d = 1 (F16 0x3C00), values from blocks_iq.h's formulas ---- */

static void dequant(uint32_t t, const void *b, float *y)
{
    nuri_kernels(t)->to_float(b, y, NURI_QK_K);
}

TEST(iq2_xxs_block_dequantizes_by_the_formula)
{
    nuri_block_iq2_xxs b;
    memset(&b, 0, sizeof b);
    b.d = 0x3C00;
    // sub-block 1: points 1 (element 0 is 43) and 0 (all 8); signs of group 0 = bits 1 -> 0x81
    // (element 0 and, for parity, element 7 negative); ls = 3 -> db = 3.5 / 4
    uint32_t a0 = 1u, a1 = 1u | 3u << 28;
    memcpy(b.qs + 4, &a0, 4);
    memcpy(b.qs + 6, &a1, 4);
    float y[256];
    dequant(NURI_TYPE_IQ2_XXS, &b, y);
    CHECK(y[0] == 0.125f * 8); // sub-block 0: ls 0 -> 0.5 / 4, point 0, no signs
    CHECK(y[32] == -0.875f * 43);
    CHECK(y[33] == 0.875f * 8);
    CHECK(y[39] == -0.875f * 8);
    CHECK(y[40] == 0.875f * 8); // group 1: point 0, no signs
}

TEST(iq2_xs_and_iq2_s_blocks_dequantize_by_the_formula)
{
    nuri_block_iq2_xs b;
    memset(&b, 0, sizeof b);
    b.d = 0x3C00;
    b.qs[2] = (uint16_t)(511 | 3u << 9); // group 2 of sub-block 0: the last point, signs 0b11
    b.scales[0] = 0x51;                  // groups 0-1: ls 1, groups 2-3: ls 5
    float y[256];
    dequant(NURI_TYPE_IQ2_XS, &b, y);
    CHECK(y[0] == 1.5f * 0.25f * 8);
    CHECK(y[16] == -5.5f * 0.25f * 43); // iq2xs_grid[511] is all 43
    CHECK(y[17] == -5.5f * 0.25f * 43);
    CHECK(y[18] == 5.5f * 0.25f * 43);

    nuri_block_iq2_s c;
    memset(&c, 0, sizeof c);
    c.d = 0x3C00;
    c.qs[4 + 3] = 255; // sub-block 1, group 3: point 1023 (all 43) with the high bits below
    c.qh[1] = 3 << 6;
    c.qs[32 + 4 + 3] = 0x80; // its signs: only element 7 negative (all 8 bits stored)
    c.scales[1] = 0x20;
    dequant(NURI_TYPE_IQ2_S, &c, y);
    CHECK(y[56] == 2.5f * 0.25f * 43);
    CHECK(y[63] == -2.5f * 0.25f * 43);
    CHECK(y[32] == 0.5f * 0.25f * 8);
}

TEST(iq3_blocks_dequantize_by_the_formula)
{
    nuri_block_iq3_xxs b;
    memset(&b, 0, sizeof b);
    b.d = 0x3C00;
    b.qs[1] = 1; // second point of group 0 of sub-block 0: 0x04040414 -> element 0 is 20
    uint32_t a = 2u | 7u << 28; // group 0 signs 0b10 -> 0x82: elements 1 and 7 negative; ls 7
    memcpy(b.qs + 64, &a, 4);
    float y[256];
    dequant(NURI_TYPE_IQ3_XXS, &b, y);
    CHECK(y[0] == 7.5f * 0.5f * 4);
    CHECK(y[1] == -7.5f * 0.5f * 4);
    CHECK(y[4] == 7.5f * 0.5f * 20);
    CHECK(y[7] == -7.5f * 0.5f * 4);

    nuri_block_iq3_s c;
    memset(&c, 0, sizeof c);
    c.d = 0x3C00;
    c.qs[8 + 1] = 1; // sub-block 1, point 1 with high bit: 256 + 1
    c.qh[1] = 2;
    c.signs[4] = 0x10;  // sub-block 1, group 0: element 4 negative
    c.scales[0] = 0x30; // sub-block 0: ls 0 (x1), sub-block 1: ls 3 (x7)
    dequant(NURI_TYPE_IQ3_S, &c, y);
    uint32_t p = nuri_iq3s_grid[257];
    CHECK(y[0] == 1.0f);
    CHECK(y[32 + 4] == -7.0f * (float)(p & 255));
    CHECK(y[32 + 5] == 7.0f * (float)(p >> 8 & 255));
}

TEST(iq1_blocks_dequantize_by_the_formula)
{
    nuri_block_iq1_s b;
    memset(&b, 0, sizeof b);
    b.d = 0x3C00;
    b.qs[4] = 1;                             // sub-block 1, group 0: point 1 (-1 x7, then +1)
    b.qh[1] = (uint16_t)(2u << 12 | 0x8000); // ls 2 -> x5, delta -1/8
    float y[256];
    dequant(NURI_TYPE_IQ1_S, &b, y);
    CHECK(y[0] == 1.0f * (-1 + 0.125f)); // sub-block 0: point 0 (all -1), ls 0, delta +1/8
    CHECK(y[32] == 5.0f * (1 - 0.125f));
    CHECK(y[33] == 5.0f * (-1 - 0.125f));

    nuri_block_iq1_m c;
    memset(&c, 0, sizeof c);
    uint16_t sc[4] = {0, 0, 0, 0};
    const uint16_t d = 0x3800; // 0.5, spread over the top nibbles
    for (int k = 0; k < 4; k++) sc[k] = (uint16_t)((d >> (4 * k) & 15) << 12);
    sc[0] |= 1u << 6 | 3u << 9; // sub-block 1: first half ls 1 (x3), second half ls 3 (x7)
    memcpy(c.scales, sc, 8);
    c.qs[4 + 2] = 1;    // sub-block 1, group 2 (second half): point 1
    c.qh[2 + 1] = 0x08; // its delta negative (low nibble of the byte: group 2)
    dequant(NURI_TYPE_IQ1_M, &c, y);
    CHECK(y[0] == 0.5f * (-1 + 0.125f));
    CHECK(y[32] == 0.5f * 3 * (-1 + 0.125f));
    CHECK(y[48] == 0.5f * 7 * (1 - 0.125f));
    CHECK(y[49] == 0.5f * 7 * (-1 - 0.125f));
    CHECK(y[56] == 0.5f * 7 * (-1 + 0.125f));
}

/* ---- the quantizers ---- */

/* Relative RMS error of quantize -> dequantize on Gaussian rows, with an upper bound per type a
 * little above what nuri's quantizers measure (docs/MODELS.md has the numbers). */
TEST(quantizers_error_is_within_the_types_budget)
{
    static const double bound[] = {0.37, 0.32, 0.27, 0.20, 0.15, 0.50, 0.47};
    enum { N = 256 * 64 };
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    uint8_t *q = malloc(row_bytes(NURI_TYPE_IQ3_S, N));
    REQUIRE(x && y && q);
    for (int i = 0; i < N; i++) x[i] = rng_normal();
    for (size_t t = 0; t < N_IQ; t++) {
        const nuri_kernel_traits *k = nuri_kernels(iq_types[t]);
        k->from_float(x, q, N);
        k->to_float(q, y, N);
        double e = rel_rms(y, x, N);
        printf("  %-8s rel. RMS error %.4f\n", nuri_type_get(iq_types[t])->name, e);
        CHECKF(e < bound[t], "%s: %.4f", nuri_type_get(iq_types[t])->name, e);
    }
    free(x), free(y), free(q);
}

TEST(quantizers_are_deterministic_and_zero_rows_stay_zero)
{
    enum { N = 512 };
    float x[N], y[N];
    uint8_t q1[N], q2[N];
    for (int i = 0; i < N; i++) x[i] = rng_normal() * (i < 256 ? 0.01f : 3.0f);
    for (size_t t = 0; t < N_IQ; t++) {
        const nuri_kernel_traits *k = nuri_kernels(iq_types[t]);
        size_t rb = row_bytes(iq_types[t], N);
        k->from_float(x, q1, N);
        k->from_float(x, q2, N);
        CHECK(memcmp(q1, q2, rb) == 0);
        float z[N];
        memset(z, 0, sizeof z);
        k->from_float(z, q1, N);
        k->to_float(q1, y, N);
        int nonzero = 0;
        for (int i = 0; i < N; i++) nonzero += y[i] != 0;
        CHECKF(nonzero == 0, "%s", nuri_type_get(iq_types[t])->name);
    }
}

/* A block holding NaN or infinity (a broken source file) must not crash a quantizer or spoil the
 * next block of the row. */
TEST(non_finite_values_stay_in_their_block)
{
    enum { N = 512 };
    float x[N], y[N];
    uint8_t q[N];
    for (int i = 0; i < N; i++) x[i] = rng_normal();
    x[3] = NAN;
    x[100] = INFINITY;
    x[200] = -INFINITY;
    for (size_t t = 0; t < N_IQ; t++) {
        const nuri_kernel_traits *k = nuri_kernels(iq_types[t]);
        k->from_float(x, q, N);
        k->to_float(q, y, N);
        double e = rel_rms(y + 256, x + 256, 256);
        CHECKF(e < 0.6, "%s: %.3f", nuri_type_get(iq_types[t])->name, e);
    }
}

/* ---- dot products ---- */

/* Random bits in every field but the block scale (kept a normal F16): any pattern a file may hold.
 */
static void random_blocks(uint32_t t, uint8_t *q, int64_t n)
{
    const size_t bs = nuri_type_get(t)->type_size;
    for (int64_t b = 0; b < n / 256; b++) {
        uint8_t *p = q + (size_t)b * bs;
        for (size_t i = 0; i < bs; i++) p[i] = (uint8_t)rng_u32();
        uint16_t d = nuri_f32_to_f16(0.001f * (float)(1 + rng_u32() % 100));
        if (t == NURI_TYPE_IQ1_M) {
            uint16_t sc[4];
            memcpy(sc, p + 48, 8);
            for (int k = 0; k < 4; k++)
                sc[k] = (uint16_t)((sc[k] & 0x0fff) | (d >> 4 * k & 15) << 12);
            memcpy(p + 48, sc, 8);
        } else {
            memcpy(p, &d, 2);
        }
    }
}

static double dot_dequantized(uint32_t t, const void *wq, const void *aq, int64_t n)
{
    float *w = malloc((size_t)n * sizeof *w), *a = malloc((size_t)n * sizeof *a);
    nuri_kernels(t)->to_float(wq, w, n);
    nuri_kernels(NURI_TYPE_Q8_K)->to_float(aq, a, n);
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)w[i] * a[i];
    free(w), free(a);
    return s;
}

/* vec_dot(w, q8(x)) == sum(dequant(w) * dequant(q8(x))) up to float rounding, on random bits and
 * on quantized rows. */
TEST(vec_dot_matches_dequantized_dot)
{
    enum { N = 256 * 8 };
    static float x[N], xw[N];
    static uint8_t act[sizeof(nuri_block_q8_K) * (N / 256)], q[N];
    for (int i = 0; i < N; i++) x[i] = rng_normal(), xw[i] = rng_normal();
    nuri_kernels(NURI_TYPE_Q8_K)->from_float(x, act, N);
    for (size_t t = 0; t < N_IQ; t++) {
        const nuri_kernel_traits *k = nuri_kernels_isa(iq_types[t], NURI_ISA_SCALAR);
        for (int rep = 0; rep < 2; rep++) {
            if (rep == 0)
                random_blocks(iq_types[t], q, N);
            else
                k->from_float(xw, q, N);
            float s;
            k->vec_dot(N, &s, q, act);
            double ref = dot_dequantized(iq_types[t], q, act, N);
            double mag = 0;
            float w[N];
            k->to_float(q, w, N);
            for (int i = 0; i < N; i++) mag += fabs((double)w[i] * x[i]);
            CHECKF(fabs(s - ref) <= 1e-5 * mag + 1e-6, "%s rep %d: %g vs %g",
                   nuri_type_get(iq_types[t])->name, rep, s, ref);
        }
    }
}

/* Every ISA's dot product against the scalar one, on random bits: the same integers, summed in
 * llama.cpp's AVX2 float order rather than the scalar one, so equal to float rounding (relative to
 * the sum of the magnitudes of the products); AVX2 and AVX-512 bit-identical. */
TEST(simd_vec_dot_matches_scalar)
{
    enum { N = 256 * 16 };
    static float x[N], a[N], w[N];
    static uint8_t act[sizeof(nuri_block_q8_K) * (N / 256)], q[N];
    for (int i = 0; i < N; i++) x[i] = rng_normal();
    nuri_kernels(NURI_TYPE_Q8_K)->from_float(x, act, N);
    nuri_kernels(NURI_TYPE_Q8_K)->to_float(act, a, N);
    for (size_t t = 0; t < N_IQ; t++) {
        for (int rep = 0; rep < 4; rep++) {
            random_blocks(iq_types[t], q, N);
            const nuri_kernel_traits *ref_k = nuri_kernels_isa(iq_types[t], NURI_ISA_SCALAR);
            float ref;
            ref_k->vec_dot(N, &ref, q, act);
            ref_k->to_float(q, w, N);
            double mag = 0;
            for (int i = 0; i < N; i++) mag += fabs((double)w[i] * a[i]);
            float prev = NAN;
            for (int isa = NURI_ISA_AVX2; isa <= NURI_ISA_AVX512; isa++) {
                const nuri_kernel_traits *k = nuri_kernels_isa(iq_types[t], (nuri_isa)isa);
                if (!k) continue; // this CPU lacks the set
                float s;
                k->vec_dot(N, &s, q, act);
                CHECKF(fabs((double)s - ref) <= 1e-6 * mag, "%s %s: %.9g vs %.9g",
                       nuri_type_get(iq_types[t])->name, nuri_isa_name((nuri_isa)isa), s, ref);
                if (isa == NURI_ISA_AVX512 && prev == prev)
                    CHECKF(s == prev, "%s: avx512 %.9g vs avx2 %.9g",
                           nuri_type_get(iq_types[t])->name, s, prev);
                prev = s;
            }
        }
    }
}

/* The prompt path (the traits' gemm: rows unpacked once, tiles of tokens against them) gives every
 * output bit for bit what vec_dot gives it, whatever the batch: a token's result must not depend
 * on who shares its batch. Token counts cross the pass widths and the tile (64), row ranges start
 * and end off the row groups. */
TEST(gemm_matches_vec_dot_bit_for_bit)
{
    enum { N = 256 * 6, ROWS = 11, TOK = 70 };
    static float x[TOK * N];
    static uint8_t act[TOK][sizeof(nuri_block_q8_K) * (N / 256)];
    static uint8_t q[ROWS][N];
    static float y[TOK * ROWS], ref[TOK * ROWS];
    for (int i = 0; i < TOK * N; i++) x[i] = rng_normal();
    for (int t = 0; t < TOK; t++) nuri_kernels(NURI_TYPE_Q8_K)->from_float(x + t * N, act[t], N);
    const int64_t counts[] = {1, 2, 3, 5, 8, 65, TOK};
    for (size_t ti = 0; ti < N_IQ; ti++) {
        const uint32_t type = iq_types[ti];
        for (int r = 0; r < ROWS; r++) random_blocks(type, q[r], N);
        for (int isa = NURI_ISA_SCALAR; isa <= NURI_ISA_AVX512; isa++) {
            const nuri_kernel_traits *k = nuri_kernels_isa(type, (nuri_isa)isa);
            if (!k) continue;
            for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
                const int64_t nt = counts[c], r0 = c % 2, r1 = ROWS - (int64_t)(c % 3);
                for (int64_t t = 0; t < nt; t++)
                    for (int64_t r = r0; r < r1; r++)
                        k->vec_dot(N, &ref[t * ROWS + r], q[r], act[t]);
                memset(y, 0, sizeof y);
                nuri_gemm(k, N, q, sizeof q[0], r0, r1, act, sizeof act[0], nt, y, ROWS);
                int bad = 0;
                for (int64_t t = 0; t < nt; t++)
                    for (int64_t r = r0; r < r1; r++)
                        if (memcmp(&y[t * ROWS + r], &ref[t * ROWS + r], sizeof(float)) != 0 &&
                            bad++ == 0)
                            CHECKF(0, "%s %s, %lld tokens: y[%lld][%lld] %.9g vs vec_dot %.9g",
                                   nuri_type_get(type)->name, nuri_isa_name((nuri_isa)isa),
                                   (long long)nt, (long long)t, (long long)r, y[t * ROWS + r],
                                   ref[t * ROWS + r]);
            }
        }
    }
}

int main(void)
{
    RUN(block_sizes_match_the_type_table);
    RUN(grids_hold_the_published_points);
    RUN(iq2_xxs_block_dequantizes_by_the_formula);
    RUN(iq2_xs_and_iq2_s_blocks_dequantize_by_the_formula);
    RUN(iq3_blocks_dequantize_by_the_formula);
    RUN(iq1_blocks_dequantize_by_the_formula);
    RUN(quantizers_error_is_within_the_types_budget);
    RUN(quantizers_are_deterministic_and_zero_rows_stay_zero);
    RUN(non_finite_values_stay_in_their_block);
    RUN(vec_dot_matches_dequantized_dot);
    RUN(simd_vec_dot_matches_scalar);
    RUN(gemm_matches_vec_dot_bit_for_bit);
    TEST_DONE();
}
