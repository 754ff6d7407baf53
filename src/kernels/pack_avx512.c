/*
 * pack_avx512.c: matrix products over packed (x16) Q4_0 / Q8_0 / Q4_K / Q6_K weights with AVX-512
 * VNNI, and the drivers that hand batches of 16 tokens to the AMX kernels (pack_amx.c) when they
 * are available.
 *
 * One 512-bit register holds 4 codes of each of 16 rows (pack.h), so a vpdpbusd against 4
 * activation bytes broadcast to every lane advances all 16 rows' dot products at once, and each
 * lane ends a block holding one row's exact integer sum: no horizontal sums. vpdpbusd multiplies
 * unsigned by signed bytes, so the weights are used unsigned (Q4_0 codes 0..15, Q8_0 codes + 128)
 * and a per-token, per-block correction (-8 or -128 times the sum of the activation's codes)
 * starts each sum; AMX multiplies signed by signed and needs none. Both give the same integers.
 *
 * Per call, tokens are taken in chunks; for each chunk two small tables are made first: the
 * activations' block scales as floats and the corrections.
 */
#include "kernels/blocks.h"
#include "kernels/kernels_impl.h"
#include "kernels/pack.h"
#include "kernels/pack_tables.h"
#include "kernels/pack_x86.h"
#include "kernels/types.h"

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

enum {
    // per-thread scratch: [tables + AMX activation panel | AMX weight tiles | AMX results]
    PACK_CHUNK = 2 * 1024 * 1024, // tables (8 bytes) + panel (32) per block
    // + one row group's B tiles (Q4_K: 32 bytes per element, Q6_K 16) and scales as floats
    PACK_BUF = PACK_CHUNK + 36 * NURI_PACK_MAX_N + 8192,
    PACK_TT_MAX = 256, // tokens per chunk at most
    // prefetch distances, in blocks of 32 (see vnni_group), into L1: the 4-bit kinds 24 (7 KiB),
    // Q8_0 16 (8 KiB)
    PACK_PF4 = 24,
    PACK_PF8 = 16,
    // decode (one token) reads this many row groups side by side (vnni_dec)
    PACK_DEC_G = 4,
};

void kernels_amx_group(uint32_t type, int64_t nb, const uint8_t *grp, const uint8_t *panel,
                       int64_t n16, const float *da, int64_t ts, uint8_t *scratch, float *y,
                       int64_t y_stride, int rows, const uint8_t *next);

/* The calling thread's scratch (kernels_thread_scratch), or NULL. */
static uint8_t *buf_get(void)
{
    return kernels_thread_scratch(KERNELS_SCRATCH_PACK, PACK_BUF);
}

/* Keeps v as computed (a compiler would fold a shuffle of a broadcast back into loads). */
static inline __m512i hold512(__m512i v)
{
    __asm__("" : "+v"(v));
    return v;
}

static inline int32_t load32(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/*
 * The four dwords of a[0..15], each broadcast to every lane: one 16-byte load spread by vpshufd,
 * where the prompt tiles (T = 8) would otherwise broadcast each from memory. On Zen 5 those
 * broadcasts (with the tables' and the weights' loads) are more than its two vector loads a cycle
 * take in the time the two multiply pipes need, while vpshufd runs on the other two pipes beside
 * vpdpbusd; a tile spreads one 16-byte group per chain (all of them would put the shuffles over
 * their pipes' budget). Same integers either way. nuri_pack_spread (pack.h) says where.
 */
static inline __attribute__((always_inline)) void spread4(const int8_t *a, __m512i o[4])
{
    const __m512i v = hold512(_mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)a)));
    o[0] = _mm512_shuffle_epi32(v, 0x00);
    o[1] = _mm512_shuffle_epi32(v, 0x55);
    o[2] = _mm512_shuffle_epi32(v, 0xaa);
    o[3] = _mm512_shuffle_epi32(v, 0xff);
}

/* The 32-element packed kinds (same layout: F16 scales, then codes; see pack.h): Q8_0's codes
 * are used as unsigned with the sign bit flipped (corr = -128 * sum x), Q4_0's nibbles as they
 * are (corr = -8 * sum x), IQ4_NL's nibbles looked up as grid value + 128 (corr = -128 * sum x),
 * so every kind's integer sum is exact. */
enum { PK_Q8_0 = 0, PK_Q4_0 = 1, PK_IQ4_NL = 2, PK_MXFP4 = 3 };

static inline int pk_kind(uint32_t type)
{
    return type == NURI_TYPE_Q4_0     ? PK_Q4_0
           : type == NURI_TYPE_IQ4_NL ? PK_IQ4_NL
           : type == NURI_TYPE_MXFP4  ? PK_MXFP4
                                      : PK_Q8_0;
}

static inline int32_t pk_bias(int kind)
{
    return kind == PK_Q4_0 ? 8 : 128;
}

/* A 16-entry grid plus 128 as bytes, in every 128-bit lane (vpshufb looks up within lanes). */
static inline __m512i grid_table_u8(const int8_t *grid)
{
    const __m128i g =
        _mm_add_epi8(_mm_loadu_si128((const __m128i *)grid), _mm_set1_epi8((char)0x80));
    return _mm512_broadcast_i32x4(g);
}

static inline __m512i iq4_table_u8(void)
{
    return grid_table_u8(nuri_iq4_grid);
}

/* T tokens x one row group, all blocks. x: the first token's row; da, corr: its tables. */
static inline __attribute__((always_inline)) void
vnni_group(const int T, const int kind, const int sp, int64_t nb, const uint8_t *grp,
           const uint8_t *x, size_t x_stride, const float *da, const int32_t *corr, int64_t ts,
           float *y, int64_t y_stride, __mmask16 rows)
{
    const int q4 = kind != PK_Q8_0, grid = kind == PK_IQ4_NL || kind == PK_MXFP4;
    const uint16_t *dg = (const uint16_t *)grp;
    const float *dfg = (const float *)grp; // MXFP4: the scales as floats (E8M0 is not an F16)
    const uint8_t *qg = grp + nb * (kind == PK_MXFP4 ? 64 : 32);
    const int64_t qb = q4 ? 256 : 512;
    const __m512i m4 = _mm512_set1_epi8(15), flip = _mm512_set1_epi8((char)0x80);
    const __m512i tbl = grid_table_u8(kind == PK_MXFP4 ? nuri_fp4_grid : nuri_iq4_grid);
    __m512 acc[8];
#pragma GCC unroll 16
    for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const __m512 dw = kind == PK_MXFP4
                              ? _mm512_loadu_ps(dfg + 16 * b)
                              : _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(dg + 16 * b)));
        const uint8_t *q = qg + b * qb;
        // the hardware prefetcher alone leaves a single stream latency-bound: fetch every line
        // of the block PF blocks ahead (and its scales), into L1. (The 4-bit kinds went into L2
        // while the threads took alternate items; since decode reads in lanes (threadpool.h),
        // into L1 is 12-16% faster on Zen 4, the 1B Q4_0 model's decode with two threads, 3 of
        // 3 pairs; one thread and prompts level.)
        const int64_t pf = q4 ? PACK_PF4 : PACK_PF8;
        for (int64_t off = 0; off < qb; off += 64) {
            _mm_prefetch((const char *)q + pf * qb + off, _MM_HINT_T0);
        }
        _mm_prefetch(kind == PK_MXFP4 ? (const char *)(dfg + 16 * (b + pf))
                                      : (const char *)(dg + 16 * (b + pf)),
                     _MM_HINT_T0);
        __m512i w[8];
        if (q4) {
#pragma GCC unroll 16
            for (int i = 0; i < 4; i++) {
                const __m512i v = _mm512_loadu_si512(q + 64 * i);
                w[i] = _mm512_and_si512(v, m4);
                w[4 + i] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
                if (grid) { // codes -> grid value + 128 (unsigned)
                    w[i] = _mm512_shuffle_epi8(tbl, w[i]);
                    w[4 + i] = _mm512_shuffle_epi8(tbl, w[4 + i]);
                }
            }
        } else {
#pragma GCC unroll 16
            for (int i = 0; i < 8; i++)
                w[i] = _mm512_xor_si512(_mm512_loadu_si512(q + 64 * i), flip);
        }
#pragma GCC unroll 16
        for (int t = 0; t < T; t++) {
            const int8_t *a = (const int8_t *)(x + (size_t)t * x_stride) + b * 34 + 2;
            __m512i s0 = _mm512_set1_epi32(corr[t * ts + b]), s1 = _mm512_setzero_si512();
            __m512i ab[4];
            if (sp) spread4(a, ab); // codes 0-15 (16-31 are loaded: see spread4)
#pragma GCC unroll 16
            for (int i = 0; i < 4; i++) {
                s0 = _mm512_dpbusd_epi32(s0, w[i],
                                         sp ? ab[i] : _mm512_set1_epi32(load32(a + 4 * i)));
                s1 = _mm512_dpbusd_epi32(s1, w[4 + i], _mm512_set1_epi32(load32(a + 16 + 4 * i)));
            }
            const __m512 ds = _mm512_mul_ps(dw, _mm512_set1_ps(da[t * ts + b]));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)), ds, acc[t]);
        }
    }
#pragma GCC unroll 16
    for (int t = 0; t < T; t++) _mm512_mask_storeu_ps(y + t * y_stride, rows, acc[t]);
}

/* One token x G (1..4) row groups side by side, all blocks: decode. vnni_group(1, ...) per group
 * read one stream of 288 (Q8_0: 544) bytes a block, one block's 8 products in two chains, and
 * stalled on its prefetches: the 1B model's Q4_0 decode ran at 0.6 of its Q4_K_M's GB/s (Zen 5,
 * two threads; Q4_K's 2.3 KiB blocks give more work per line fetched). G streams, each fetched
 * PACK_PF4 / PACK_PF8 blocks ahead and, past its group's end, in the group G on (the same
 * layout, where this call's caller goes next), and G independent chains: Q4_0 28 -> 40 GB/s,
 * Q8_0 32 -> 40 (G = 2: 35; 8: 36). The same integers and float steps as vnni_group: the result
 * does not depend on G. rows_last: the last group's rows (1..16). */
static inline __attribute__((always_inline)) void
vnni_dec(const int G, const int kind, int64_t nb, const uint8_t *grp, int64_t gbytes,
         const uint8_t *x, const float *da, const int32_t *corr, float *y, int rows_last)
{
    const int q4 = kind != PK_Q8_0, grid = kind == PK_IQ4_NL || kind == PK_MXFP4;
    const int64_t sb = kind == PK_MXFP4 ? 64 : 32;
    const int64_t qb = q4 ? 256 : 512;
    const __m512i m4 = _mm512_set1_epi8(15), flip = _mm512_set1_epi8((char)0x80);
    const __m512i tbl = grid_table_u8(kind == PK_MXFP4 ? nuri_fp4_grid : nuri_iq4_grid);
    __m512 acc[4];
#pragma GCC unroll 4
    for (int g = 0; g < G; g++) acc[g] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const int8_t *a = (const int8_t *)x + b * 34 + 2;
        const __m512 dx = _mm512_set1_ps(da[b]);
        const __m512i c0 = _mm512_set1_epi32(corr[b]);
        const int64_t pf = q4 ? PACK_PF4 : PACK_PF8, j = b + pf, nx = j >= nb;
        const int64_t jj = nx ? j - nb : j;
#pragma GCC unroll 4
        for (int g = 0; g < G; g++) {
            const uint8_t *gg = grp + g * gbytes;
            const uint8_t *pg = gg + (nx ? G * gbytes : 0);
#pragma GCC unroll 8
            for (int64_t off = 0; off < qb; off += 64)
                _mm_prefetch((const char *)pg + nb * sb + jj * qb + off, _MM_HINT_T0);
            _mm_prefetch((const char *)pg + jj * sb, _MM_HINT_T0);
            const __m512 dw =
                kind == PK_MXFP4
                    ? _mm512_loadu_ps((const float *)gg + 16 * b)
                    : _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(gg + 32 * b)));
            const uint8_t *q = gg + nb * sb + b * qb;
            __m512i s0 = c0, s1 = _mm512_setzero_si512();
            if (q4) {
#pragma GCC unroll 4
                for (int i = 0; i < 4; i++) {
                    const __m512i v = _mm512_loadu_si512(q + 64 * i);
                    __m512i lo = _mm512_and_si512(v, m4);
                    __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
                    if (grid) {
                        lo = _mm512_shuffle_epi8(tbl, lo);
                        hi = _mm512_shuffle_epi8(tbl, hi);
                    }
                    s0 = _mm512_dpbusd_epi32(s0, lo, _mm512_set1_epi32(load32(a + 4 * i)));
                    s1 = _mm512_dpbusd_epi32(s1, hi, _mm512_set1_epi32(load32(a + 16 + 4 * i)));
                }
            } else {
#pragma GCC unroll 4
                for (int i = 0; i < 4; i++) {
                    s0 = _mm512_dpbusd_epi32(s0,
                                             _mm512_xor_si512(_mm512_loadu_si512(q + 64 * i), flip),
                                             _mm512_set1_epi32(load32(a + 4 * i)));
                    s1 = _mm512_dpbusd_epi32(
                        s1, _mm512_xor_si512(_mm512_loadu_si512(q + 256 + 64 * i), flip),
                        _mm512_set1_epi32(load32(a + 16 + 4 * i)));
                }
            }
            acc[g] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)),
                                     _mm512_mul_ps(dw, dx), acc[g]);
        }
    }
#pragma GCC unroll 4
    for (int g = 0; g < G; g++)
        _mm512_mask_storeu_ps(y + 16 * g, g == G - 1 ? (__mmask16)((1u << rows_last) - 1) : 0xffff,
                              acc[g]);
}

#define VNNI_T(KIND, T, SP)                                                                        \
    vnni_group(T, KIND, SP, nb, grp, xt, x_stride, da + t * ts, corr + t * ts, ts, yt, y_stride,   \
               rows)
#define VNNI_KIND(T, SP)                                                                           \
    (kind == PK_Q4_0     ? VNNI_T(PK_Q4_0, T, SP)                                                  \
     : kind == PK_IQ4_NL ? VNNI_T(PK_IQ4_NL, T, SP)                                                \
     : kind == PK_MXFP4  ? VNNI_T(PK_MXFP4, T, SP)                                                 \
                         : VNNI_T(PK_Q8_0, T, SP))

static void vnni_tokens(int kind, int64_t nb, const uint8_t *grp, const uint8_t *x, size_t x_stride,
                        int64_t n_t, const float *da, const int32_t *corr, int64_t ts, float *y,
                        int64_t y_stride, __mmask16 rows)
{
    const int sp = nuri_pack_spread();
    for (int64_t t = 0; t < n_t;) {
        const int64_t left = n_t - t;
        const uint8_t *xt = x + (size_t)t * x_stride;
        float *yt = y + t * y_stride;
        if (left >= 8) {
            if (sp)
                VNNI_KIND(8, 1);
            else
                VNNI_KIND(8, 0);
            t += 8;
        } else if (left >= 4) {
            VNNI_KIND(4, 0);
            t += 4;
        } else if (left >= 2) {
            VNNI_KIND(2, 0);
            t += 2;
        } else {
            VNNI_KIND(1, 0);
            t += 1;
        }
    }
}

/* The AMX A tiles of 16-token groups: panel[(s * nb + b) * 512 + 32 * t] = the 32 codes of token
 * 16 s + t, block b, so that each tile is 512 contiguous bytes. */
static void make_panel(const uint8_t *x, size_t x_stride, int64_t n16, int64_t nb, uint8_t *panel)
{
    for (int64_t s = 0; s < n16; s++)
#pragma GCC unroll 16
        for (int t = 0; t < 16; t++) {
            const nuri_block_q8_0 *blk =
                (const nuri_block_q8_0 *)(x + (size_t)(16 * s + t) * x_stride);
            for (int64_t b = 0; b < nb; b++)
                _mm256_store_si256((__m256i *)(panel + (s * nb + b) * 512 + 32 * t),
                                   _mm256_loadu_si256((const __m256i *)blk[b].qs));
        }
}

/* da[t][b] = F32(x[t].d[b]); corr[t][b] = -bias * sum of x[t]'s codes in block b. The rows were
 * just quantized, half of them by the other thread: the next row is fetched while this one is
 * summed (the hardware prefetcher restarts on each 2-9 KiB row). A block's sum is vpsadbw's
 * over its codes + 128. */
static void make_tables(const uint8_t *x, size_t x_stride, int64_t n_t, int64_t nb, int32_t bias,
                        float *da, int32_t *corr)
{
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    for (int64_t t = 0; t < n_t; t++) {
        const nuri_block_q8_0 *blk = (const nuri_block_q8_0 *)(x + (size_t)t * x_stride);
        if (t + 1 < n_t)
            for (int64_t off = 0; off < nb * (int64_t)sizeof *blk; off += 64)
                _mm_prefetch((const char *)(blk) + x_stride + off, _MM_HINT_T0);
        for (int64_t b = 0; b < nb; b++) {
            da[t * nb + b] = _cvtsh_ss(blk[b].d);
            const __m256i q = _mm256_loadu_si256((const __m256i *)blk[b].qs);
            const __m256i s = _mm256_sad_epu8(_mm256_xor_si256(q, flip), _mm256_setzero_si256());
            const __m128i v =
                _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
            const int32_t sum =
                (int32_t)(_mm_cvtsi128_si64(v) + _mm_extract_epi64(v, 1)) - 32 * 128;
            corr[t * nb + b] = -bias * sum;
        }
    }
}

/* ======================================================================================== */
/* Q4_K (pack.h): activations are Q8_K rows (d, 256 codes, 16 sums of 16).                   */
/* ======================================================================================== */

void kernels_amx_group_q4_K(int64_t nb, const uint8_t *grp, const uint8_t *panel, int64_t n16,
                            const float *da, const float *bsf, int64_t ts, uint8_t *scratch,
                            float *y, int64_t y_stride, int rows, const uint8_t *next);

/* One block's scales as int32 and mins as floats, 8 x 16 each (lane = row). */
static inline void q4_K_scales(const uint8_t *kb, int32_t *sci, float *mf)
{
#pragma GCC unroll 16
    for (int j = 0; j < 8; j++) {
        _mm512_store_si512(sci + 16 * j, _mm512_cvtepu8_epi32(
                                             _mm_loadu_si128((const __m128i *)(kb + 64 + 16 * j))));
        _mm512_store_ps(mf + 16 * j, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(
                                         _mm_loadu_si128((const __m128i *)(kb + 192 + 16 * j)))));
    }
}

/* T tokens x one row group, all blocks. bsf[t * ts + b][j]: the 32-element sums of x as floats.
 * Per block, the sub-block sums times their 6-bit scales are added as integers (exact, as
 * llama.cpp does), then converted once. */
static inline __attribute__((always_inline)) void
vnni_q4_K(const int T, const int q5, const int sp, int64_t nb, const uint8_t *grp, const uint8_t *x,
          size_t x_stride, const float *da, const float *bsf, int64_t ts, float *y,
          int64_t y_stride, __mmask16 rows)
{
    const __m512i m4 = _mm512_set1_epi8(15), one = _mm512_set1_epi8(1);
    const int64_t kbytes = q5 ? NURI_PACK_Q5_K_BYTES : NURI_PACK_Q4_K_BYTES;
    __attribute__((aligned(64))) int32_t sci[128];
    __attribute__((aligned(64))) float mf[128];
    __m512 acc[8];
#pragma GCC unroll 16
    for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *kb = grp + b * kbytes;
        q4_K_scales(kb, sci, mf);
        __m512i f[8];
#pragma GCC unroll 16
        for (int t = 0; t < T; t++) f[t] = _mm512_setzero_si512();
#pragma GCC unroll 16
        for (int c = 0; c < 4; c++) {
            // the block 3 ahead (7-9 KiB; 4 was 5-10% slower from memory), a quarter of it per
            // step (see vnni_group), into L1 (since decode reads in lanes: 2-5% faster than L2)
            const int64_t qtr = q5 ? 768 : 640; // a quarter of the block, in whole lines
            for (int64_t off = c * qtr; off < (c + 1) * qtr && off < kbytes; off += 64)
                _mm_prefetch((const char *)kb + 3 * kbytes + off, _MM_HINT_T0);
            __m512i lo[8], hi[8];
#pragma GCC unroll 16
            for (int i = 0; i < 8; i++) {
                const __m512i v = _mm512_loadu_si512(kb + 320 + (c * 8 + i) * 64);
                const __m512i vh = _mm512_srli_epi16(v, 4);
                if (q5 == 2) { // the 5th bits by gfni_bits, merged by one vpternlogd each
                    const __m512i h = _mm512_loadu_si512(kb + NURI_PACK_Q4_K_BYTES + 64 * i);
                    lo[i] = _mm512_ternarylogic_epi32(v, gfni_bits(h, 2 * c, 4, 1), m4, 0xEC);
                    hi[i] = _mm512_ternarylogic_epi32(vh, gfni_bits(h, 2 * c + 1, 4, 1), m4, 0xEC);
                    continue;
                }
                lo[i] = _mm512_and_si512(v, m4);
                hi[i] = _mm512_and_si512(vh, m4);
                if (q5) { // the 5th bits: bit 2c (low nibbles) and 2c + 1 (high) of qh line i
                    const __m512i h = _mm512_loadu_si512(kb + NURI_PACK_Q4_K_BYTES + 64 * i);
                    lo[i] = _mm512_or_si512(
                        lo[i],
                        _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(h, 2 * c), one), 4));
                    hi[i] = _mm512_or_si512(
                        hi[i], _mm512_slli_epi16(
                                   _mm512_and_si512(_mm512_srli_epi16(h, 2 * c + 1), one), 4));
                }
            }
#pragma GCC unroll 16
            for (int t = 0; t < T; t++) {
                const nuri_block_q8_K *xb = (const nuri_block_q8_K *)(x + (size_t)t * x_stride) + b;
                const int8_t *a = xb->qs + 64 * c;
                __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
                __m512i ab[4];
                if (sp) spread4(a, ab);
#pragma GCC unroll 16
                for (int i = 0; i < 8; i++) {
                    s0 = _mm512_dpbusd_epi32(
                        s0, lo[i], sp && i < 4 ? ab[i] : _mm512_set1_epi32(load32(a + 4 * i)));
                    s1 = _mm512_dpbusd_epi32(s1, hi[i], _mm512_set1_epi32(load32(a + 32 + 4 * i)));
                }
                f[t] =
                    _mm512_add_epi32(f[t], _mm512_mullo_epi32(s0, _mm512_load_si512(sci + 32 * c)));
                f[t] = _mm512_add_epi32(
                    f[t], _mm512_mullo_epi32(s1, _mm512_load_si512(sci + 32 * c + 16)));
            }
        }
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)kb));
        const __m512 dm = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(kb + 32)));
#pragma GCC unroll 16
        for (int t = 0; t < T; t++) {
            const float *bs = bsf + (t * ts + b) * 8;
            __m512 mins = _mm512_setzero_ps();
#pragma GCC unroll 16
            for (int j = 0; j < 8; j++)
                mins = _mm512_fmadd_ps(_mm512_set1_ps(bs[j]), _mm512_load_ps(mf + 16 * j), mins);
            const __m512 dx = _mm512_set1_ps(da[t * ts + b]);
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(f[t]), _mm512_mul_ps(dw, dx), acc[t]);
            acc[t] = _mm512_fnmadd_ps(mins, _mm512_mul_ps(dm, dx), acc[t]);
        }
    }
#pragma GCC unroll 16
    for (int t = 0; t < T; t++) _mm512_mask_storeu_ps(y + t * y_stride, rows, acc[t]);
}

#define VNNI_Q4_K(T, Q5, SP)                                                                       \
    vnni_q4_K(T, Q5, SP, nb, grp, xt, x_stride, da + t * ts, bsf + t * ts * 8, ts,                 \
              y + t * y_stride, y_stride, rows)

/* CALL(T, SP) with a constant tile of T tokens (8, 4, 2, 1) and SP (spread4 in 8-token tiles). */
#define BY_TOKENS(T, sp, CALL)                                                                     \
    ((T) == 8 && (sp) ? CALL(8, 1)                                                                 \
     : (T) == 8       ? CALL(8, 0)                                                                 \
     : (T) == 4       ? CALL(4, 0)                                                                 \
     : (T) == 2       ? CALL(2, 0)                                                                 \
                      : CALL(1, 0))

#define VNNI_Q45_K(T, SP)                                                                          \
    (q5 == 2 ? VNNI_Q4_K(T, 2, SP) : q5 ? VNNI_Q4_K(T, 1, SP) : VNNI_Q4_K(T, 0, SP))

/* Q4_K, or Q5_K (q5: the same packed block followed by its 5th bits, see pack.h; gf: those bits
 * by GFNI, nuri_pack_gfni as the driver read it). */
static void vnni_q4_K_tokens(int q5, int gf, int64_t nb, const uint8_t *grp, const uint8_t *x,
                             size_t x_stride, int64_t n_t, const float *da, const float *bsf,
                             int64_t ts, float *y, int64_t y_stride, __mmask16 rows)
{
    const int sp = nuri_pack_spread();
    if (q5 && gf) q5 = 2;
    for (int64_t t = 0; t < n_t;) {
        const int64_t left = n_t - t;
        const uint8_t *xt = x + (size_t)t * x_stride;
        const int T = left >= 8 ? 8 : left >= 4 ? 4 : left >= 2 ? 2 : 1;
        BY_TOKENS(T, sp, VNNI_Q45_K);
        t += T;
    }
}

/* ======================================================================================== */
/* Q6_K (pack.h): activations are Q8_K rows; codes 0..63 are used unsigned with a per-token,  */
/* per-sub-block correction -32 * sum (VNNI), or as code - 32 (AMX): the same integers.       */
/* ======================================================================================== */

void kernels_amx_group_q6_K(int64_t nb, const uint8_t *grp, const uint8_t *panel, int64_t n16,
                            const float *da, int64_t ts, uint8_t *scratch, float *y,
                            int64_t y_stride, int rows, const uint8_t *next);

static inline void q6_K_scales(const uint8_t *kb, float *scf)
{
#pragma GCC unroll 16
    for (int j = 0; j < 16; j++)
        _mm512_store_ps(scf + 16 * j, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
                                          _mm_loadu_si128((const __m128i *)(kb + 32 + 16 * j)))));
}

/* T tokens x one row group. corr[(t * ts + b) * 16 + j] = -32 * (sum of x's codes in sub-block j).
 */
static inline __attribute__((always_inline)) void
vnni_q6_K(const int T, const int sp, const int gf, int64_t nb, const uint8_t *grp, const uint8_t *x,
          size_t x_stride, const float *da, const int32_t *corr, int64_t ts, float *y,
          int64_t y_stride, __mmask16 rows)
{
    __attribute__((aligned(64))) float scf[256];
    __m512 acc[8];
#pragma GCC unroll 16
    for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *kb = grp + b * NURI_PACK_Q6_K_BYTES;
        q6_K_scales(kb, scf);
        __m512 f[8];
#pragma GCC unroll 16
        for (int t = 0; t < T; t++) f[t] = _mm512_setzero_ps();
#pragma GCC unroll 16
        for (int g = 0; g < 8; g++) { // 32 elements: sub-blocks 2g, 2g + 1
            // the block 2 ahead (7 KiB; 3 was 5% slower from memory), an eighth of it per step,
            // into L1 (as Q4_K)
            for (int off = g * 448; off < (g + 1) * 448 && off < NURI_PACK_Q6_K_BYTES; off += 64)
                _mm_prefetch((const char *)kb + 2 * NURI_PACK_Q6_K_BYTES + off, _MM_HINT_T0);
            __m512i c[8];
            q6_K_codes(kb, g / 4, g % 4, gf, c);
#pragma GCC unroll 16
            for (int t = 0; t < T; t++) {
                const nuri_block_q8_K *xb = (const nuri_block_q8_K *)(x + (size_t)t * x_stride) + b;
                const int8_t *a = xb->qs + 32 * g;
                const int32_t *cr = corr + (t * ts + b) * 16 + 2 * g;
                __m512i s0 = _mm512_set1_epi32(cr[0]), s1 = _mm512_set1_epi32(cr[1]);
                __m512i ab[4];
                if (sp) spread4(a, ab);
#pragma GCC unroll 16
                for (int i = 0; i < 4; i++) {
                    s0 = _mm512_dpbusd_epi32(s0, c[i],
                                             sp ? ab[i] : _mm512_set1_epi32(load32(a + 4 * i)));
                    s1 = _mm512_dpbusd_epi32(s1, c[4 + i],
                                             _mm512_set1_epi32(load32(a + 16 + 4 * i)));
                }
                f[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s0), _mm512_load_ps(scf + 32 * g), f[t]);
                f[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s1), _mm512_load_ps(scf + 32 * g + 16),
                                       f[t]);
            }
        }
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)kb));
#pragma GCC unroll 16
        for (int t = 0; t < T; t++)
            acc[t] =
                _mm512_fmadd_ps(f[t], _mm512_mul_ps(dw, _mm512_set1_ps(da[t * ts + b])), acc[t]);
    }
#pragma GCC unroll 16
    for (int t = 0; t < T; t++) _mm512_mask_storeu_ps(y + t * y_stride, rows, acc[t]);
}

#define VNNI_Q6_K(T, SP)                                                                           \
    (gf ? vnni_q6_K(T, SP, 1, nb, grp, xt, x_stride, da + t * ts, corr + t * ts * 16, ts,          \
                    y + t * y_stride, y_stride, rows)                                              \
        : vnni_q6_K(T, SP, 0, nb, grp, xt, x_stride, da + t * ts, corr + t * ts * 16, ts,          \
                    y + t * y_stride, y_stride, rows))

static void vnni_q6_K_tokens(int gf, int64_t nb, const uint8_t *grp, const uint8_t *x,
                             size_t x_stride, int64_t n_t, const float *da, const int32_t *corr,
                             int64_t ts, float *y, int64_t y_stride, __mmask16 rows)
{
    const int sp = nuri_pack_spread();
    for (int64_t t = 0; t < n_t;) {
        const int64_t left = n_t - t;
        const uint8_t *xt = x + (size_t)t * x_stride;
        const int T = left >= 8 ? 8 : left >= 4 ? 4 : left >= 2 ? 2 : 1;
        BY_TOKENS(T, sp, VNNI_Q6_K);
        t += T;
    }
}

/* ======================================================================================== */
/* The k-quant driver: per chunk of tokens, the activation tables (d, and Q4_K's 32-element   */
/* sums as floats or Q6_K's -32 * 16-element sums) and, for AMX, the panel of A tiles; then    */
/* row group by row group, 16-token groups on AMX and the rest on VNNI.                        */
/* ======================================================================================== */

/* The AMX A tiles of 16-token groups, SUB codes per tile (Q6_K: 16, a sub-block; Q4_K: 64, two
 * sub-blocks): panel[((s * nb + b) * (256 / SUB) + j) * 16 * SUB + SUB * t] = codes
 * SUB j .. SUB (j + 1) - 1 of token 16 s + t, block b (each tile 16 * SUB contiguous bytes). */
static void kq_panel(const uint8_t *x, size_t x_stride, int64_t n16, int64_t nb, int sub,
                     uint8_t *panel)
{
    const int nsub = NURI_QK_K / sub;
    for (int64_t s = 0; s < n16; s++)
#pragma GCC unroll 16
        for (int t = 0; t < 16; t++) {
            const nuri_block_q8_K *blk =
                (const nuri_block_q8_K *)(x + (size_t)(16 * s + t) * x_stride);
            for (int64_t b = 0; b < nb; b++) {
                uint8_t *dst = panel + (s * nb + b) * nsub * 16 * sub + sub * t;
                if (sub == 64) // one line per tile (a library memcpy of 64 bytes was rep movsq)
                    for (int j = 0; j < nsub; j++)
                        _mm512_store_si512(dst + j * 1024, _mm512_loadu_si512(blk[b].qs + 64 * j));
                else
                    for (int j = 0; j < nsub; j++)
                        _mm_store_si128((__m128i *)(dst + j * 256),
                                        _mm_loadu_si128((const __m128i *)(blk[b].qs + 16 * j)));
            }
        }
}

/* The tables of n_t tokens: da, and aux (Q4_K: 8 floats, Q6_K: 16 int32 per token and block). */
static void kq_tables(int q6, const uint8_t *x, size_t x_stride, int64_t n_t, int64_t nb, float *da,
                      void *aux)
{
    if (q6)
        pack_q6_K_tables(x, x_stride, n_t, nb, da, aux);
    else
        pack_q4_K_tables(x, x_stride, n_t, nb, da, aux);
}

static void kq_vnni(int q6, int q5, int gf, int64_t nb, const uint8_t *grp, const uint8_t *x,
                    size_t x_stride, int64_t n_t, const float *da, const void *aux, float *y,
                    int64_t y_stride, int64_t rr)
{
    const __mmask16 rows = (__mmask16)((1u << rr) - 1);
    if (q6)
        vnni_q6_K_tokens(gf, nb, grp, x, x_stride, n_t, da, aux, nb, y, y_stride, rows);
    else
        vnni_q4_K_tokens(q5, gf, nb, grp, x, x_stride, n_t, da, aux, nb, y, y_stride, rows);
}

/* ---- the drivers: work items, tables, then row groups ---- */

/*
 * A product's work is items: (chunk of tokens, run of row groups), chunk by chunk. A thread makes
 * the tables (and the AMX panel) of a chunk of tokens once, when it first takes an item of that
 * chunk, then runs the item's row groups. With a nuri_share the threads take items first come,
 * first served; without one, a thread's items are its row groups [g0, g1) for every chunk.
 */
enum { PACK_RUN_MANY = 2, PACK_RUN_FEW = 8 }; // row groups per item, 16+ tokens or fewer

typedef struct items {
    const nuri_share *sh;
    int64_t g0, g1;         // without sh: this thread's row groups
    int64_t ng, run, n_run; // row groups, per item, items per chunk of tokens
    int64_t n_tc, tc;       // chunks of tokens; without sh: the next one
} items;

/* Tokens per chunk: as many as the tables and the panel (per token and block: `per` bytes) hold. */
static int64_t chunk_tokens(uint32_t type, int64_t nb)
{
    int64_t per = 40;                               // Q4_0 / Q8_0: d, corr, panel
    if (type == NURI_TYPE_Q4_K) per = 4 + 32 + 256; // d, mins sums, panel
    if (type == NURI_TYPE_Q6_K) per = 4 + 64 + 256; // d, code sums, panel
    if (type == NURI_TYPE_IQ4_XS) per = 4 + 32;     // d, sub-block sums
    if (type == NURI_TYPE_Q5_K) per = 4 + 32;       // d, mins sums (no AMX panel)
    if (type == NURI_TYPE_Q3_K || type == NURI_TYPE_Q2_K) per = 4 + 32; // no tables: as Q5_K's
    if (type == NURI_TYPE_F16 || type == NURI_TYPE_BF16) per = 128;     // F16: x widened to F32
    int64_t tt = PACK_CHUNK / (nb * per);
    if (tt > PACK_TT_MAX) tt = PACK_TT_MAX;
    if (tt > 16) tt &= ~(int64_t)15;
    return tt;
}

static items items_make(const nuri_share *sh, int64_t g0, int64_t g1, int64_t n_out, int64_t n_t,
                        int64_t tt)
{
    items it = {.sh = sh, .g0 = g0, .g1 = g1, .ng = (n_out + 15) / 16};
    it.run = n_t >= 16 ? PACK_RUN_MANY : PACK_RUN_FEW;
    it.n_run = (it.ng + it.run - 1) / it.run;
    it.n_tc = (n_t + tt - 1) / tt;
    return it;
}

/* The next item: chunk *tc, row groups [*ga, *gb); false when there is none. */
static bool items_next(items *it, int64_t *tc, int64_t *ga, int64_t *gb)
{
    if (it->sh) {
        const long k = nuri_share_take(it->sh);
        if (k < 0) return false;
        *tc = k / it->n_run;
        *ga = k % it->n_run * it->run;
        *gb = *ga + it->run < it->ng ? *ga + it->run : it->ng;
        return true;
    }
    if (it->tc >= it->n_tc || it->g0 >= it->g1) return false;
    *tc = it->tc++;
    *ga = it->g0;
    *gb = it->g1;
    return true;
}

static void packed_kq(uint32_t type, int64_t n, const void *wp, int64_t n_out, items *it,
                      const uint8_t *x, size_t x_stride, int64_t n_t, float *y, int64_t y_stride,
                      bool use_amx, uint8_t *buf, int64_t tt)
{
    const int q6 = type == NURI_TYPE_Q6_K, q5 = type == NURI_TYPE_Q5_K, gf = nuri_pack_gfni();
    const int64_t nb = n / NURI_QK_K;
    const int64_t gbytes = nb * (q6   ? NURI_PACK_Q6_K_BYTES
                                 : q5 ? NURI_PACK_Q5_K_BYTES
                                      : NURI_PACK_Q4_K_BYTES);
    if (q5) use_amx = false;                // the AMX tiles take Q4_K's 4-bit codes only
    const int64_t aux_bytes = q6 ? 64 : 32; // per token and block
    int64_t tc, ga, gb, have = -1;
    if (!buf) { // no scratch: one token at a time, tables on the stack, the same arithmetic
        float da1[NURI_PACK_MAX_N / NURI_QK_K];
        int32_t aux1[NURI_PACK_MAX_N / NURI_QK_K * 16];
        while (items_next(it, &tc, &ga, &gb))
            for (int64_t t = tc * tt; t < n_t && t < (tc + 1) * tt; t++) {
                const uint8_t *xt = x + (size_t)t * x_stride;
                kq_tables(q6, xt, x_stride, 1, nb, da1, aux1);
                for (int64_t g = ga; g < gb; g++)
                    kq_vnni(q6, q5, gf, nb, (const uint8_t *)wp + g * gbytes, xt, x_stride, 1, da1,
                            aux1, y + t * y_stride + 16 * g, y_stride,
                            n_out - 16 * g < 16 ? n_out - 16 * g : 16);
            }
        return;
    }
    float *da = (float *)buf;
    uint8_t *aux = buf + (size_t)(tt * nb * 4);
    uint8_t *panel = aux + (size_t)(tt * nb * aux_bytes);
    uint8_t *scratch = buf + PACK_CHUNK;
    while (items_next(it, &tc, &ga, &gb)) {
        pack_item_warm((const uint8_t *)wp + ga * gbytes, (gb - ga) * gbytes);
        const int64_t t0 = tc * tt, nt = n_t - t0 < tt ? n_t - t0 : tt;
        const uint8_t *xc = x + (size_t)t0 * x_stride;
        const int64_t n16 = use_amx ? nt / 16 : 0;
        if (tc != have) {
            kq_tables(q6, xc, x_stride, nt, nb, da, aux);
            if (n16) kq_panel(xc, x_stride, n16, nb, q6 ? 16 : 64, panel);
            have = tc;
        }
        for (int64_t g = ga; g < gb; g++) {
            const uint8_t *grp = (const uint8_t *)wp + g * gbytes;
            const int64_t rr = n_out - 16 * g < 16 ? n_out - 16 * g : 16;
            float *yg = y + t0 * y_stride + 16 * g;
            const uint8_t *next = g + 1 < gb ? grp + gbytes : NULL; // prefetched meanwhile
            if (n16 && q6)
                kernels_amx_group_q6_K(nb, grp, panel, n16, da, nb, scratch, yg, y_stride, (int)rr,
                                       next);
            else if (n16)
                kernels_amx_group_q4_K(nb, grp, panel, n16, da, (const float *)aux, nb, scratch, yg,
                                       y_stride, (int)rr, next);
            kq_vnni(q6, q5, gf, nb, grp, xc + (size_t)(16 * n16) * x_stride, x_stride,
                    nt - 16 * n16, da + 16 * n16 * nb, aux + (size_t)(16 * n16 * nb * aux_bytes),
                    yg + 16 * n16 * y_stride, y_stride, rr);
        }
    }
}

static void packed_q(uint32_t type, int64_t n, const void *wp, int64_t n_out, items *it,
                     const uint8_t *x, size_t x_stride, int64_t n_t, float *y, int64_t y_stride,
                     bool use_amx, uint8_t *buf, int64_t tt)
{
    const int kind = pk_kind(type), q4 = kind != PK_Q8_0;
    const int64_t nb = n / NURI_QK, gbytes = nb * (kind == PK_MXFP4 ? 320 : q4 ? 288 : 544);
    if (kind == PK_IQ4_NL || kind == PK_MXFP4) use_amx = false; // AMX takes Q4_0 / Q8_0 only
    int64_t tc, ga, gb, have = -1;
    if (!buf) {
        // no scratch (out of memory): one token at a time with its tables on the stack (rows are
        // at most NURI_PACK_MAX_N elements), the same arithmetic
        float da1[NURI_PACK_MAX_N / NURI_QK];
        int32_t corr1[NURI_PACK_MAX_N / NURI_QK];
        while (items_next(it, &tc, &ga, &gb))
            for (int64_t t = tc * tt; t < n_t && t < (tc + 1) * tt; t++) {
                make_tables(x + (size_t)t * x_stride, x_stride, 1, nb, pk_bias(kind), da1, corr1);
                for (int64_t g = ga; g < gb; g++) {
                    const int64_t rr = n_out - 16 * g < 16 ? n_out - 16 * g : 16;
                    vnni_tokens(kind, nb, (const uint8_t *)wp + g * gbytes,
                                x + (size_t)t * x_stride, x_stride, 1, da1, corr1, nb,
                                y + t * y_stride + 16 * g, y_stride, (__mmask16)((1u << rr) - 1));
                }
            }
        return;
    }
    float *da = (float *)buf;
    int32_t *corr = (int32_t *)(buf + (size_t)(tt * nb * 4));
    uint8_t *panel = buf + (size_t)(tt * nb * 8);
    uint8_t *scratch = buf + PACK_CHUNK;
    while (items_next(it, &tc, &ga, &gb)) {
        pack_item_warm((const uint8_t *)wp + ga * gbytes, (gb - ga) * gbytes);
        const int64_t t0 = tc * tt, nt = n_t - t0 < tt ? n_t - t0 : tt;
        const uint8_t *xc = x + (size_t)t0 * x_stride;
        const int64_t n16 = use_amx ? nt / 16 : 0;
        if (tc != have) {
            make_tables(xc, x_stride, nt, nb, pk_bias(kind), da, corr);
            if (n16) make_panel(xc, x_stride, n16, nb, panel);
            have = tc;
        }
        if (nt == 1 && !n16) { // decode: row groups side by side
            for (int64_t g = ga; g < gb;) {
                const uint8_t *grp = (const uint8_t *)wp + g * gbytes;
                const int G = gb - g >= PACK_DEC_G ? PACK_DEC_G : gb - g >= 2 ? 2 : 1;
                const int64_t rl = n_out - 16 * (g + G - 1);
                const int rr = rl < 16 ? (int)rl : 16;
                float *yg = y + t0 * y_stride + 16 * g;
#define DEC_K(G_)                                                                                  \
    (kind == PK_Q4_0     ? vnni_dec(G_, PK_Q4_0, nb, grp, gbytes, xc, da, corr, yg, rr)            \
     : kind == PK_IQ4_NL ? vnni_dec(G_, PK_IQ4_NL, nb, grp, gbytes, xc, da, corr, yg, rr)          \
     : kind == PK_MXFP4  ? vnni_dec(G_, PK_MXFP4, nb, grp, gbytes, xc, da, corr, yg, rr)           \
                         : vnni_dec(G_, PK_Q8_0, nb, grp, gbytes, xc, da, corr, yg, rr))
                if (G == 4)
                    DEC_K(4);
                else if (G == 2)
                    DEC_K(2);
                else
                    DEC_K(1);
#undef DEC_K
                g += G;
            }
            continue;
        }
        for (int64_t g = ga; g < gb; g++) {
            const uint8_t *grp = (const uint8_t *)wp + g * gbytes;
            const int64_t rr = n_out - 16 * g < 16 ? n_out - 16 * g : 16;
            const __mmask16 rows = (__mmask16)((1u << rr) - 1);
            float *yg = y + t0 * y_stride + 16 * g;
            if (n16)
                kernels_amx_group(type, nb, grp, panel, n16, da, nb, scratch, yg, y_stride, (int)rr,
                                  g + 1 < gb ? grp + gbytes : NULL);
            vnni_tokens(kind, nb, grp, xc + (size_t)(16 * n16) * x_stride, x_stride, nt - 16 * n16,
                        da + 16 * n16 * nb, corr + 16 * n16 * nb, nb, yg + 16 * n16 * y_stride,
                        y_stride, rows);
        }
    }
}

/* ======================================================================================== */
/* IQ4_XS (pack.h): activations are Q8_K rows; VNNI only.                                    */
/* ======================================================================================== */

/* T tokens x one row group, all blocks. corr[(t * ts + b) * 8 + j] = -128 * the 32-element sum
 * of token t's sub-block j. */
static inline __attribute__((always_inline)) void
vnni_iq4_xs(const int T, const int sp, int64_t nb, const uint8_t *grp, const uint8_t *x,
            size_t x_stride, const float *da, const int32_t *corr, int64_t ts, float *y,
            int64_t y_stride, __mmask16 rows)
{
    const __m512i m4 = _mm512_set1_epi8(15), tbl = iq4_table_u8();
    __m512 acc[8];
#pragma GCC unroll 16
    for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *kb = grp + b * NURI_PACK_IQ4_XS_BYTES;
        __m512i f[8];
#pragma GCC unroll 16
        for (int t = 0; t < T; t++) f[t] = _mm512_setzero_si512();
#pragma GCC unroll 16
        for (int j = 0; j < 8; j++) {
            if (j % 2 == 0) // the block 4 ahead, a quarter of it per two sub-blocks
                for (int off = j * 552; off < (j + 2) * 552 && off < NURI_PACK_IQ4_XS_BYTES;
                     off += 64)
                    _mm_prefetch((const char *)kb + 4 * NURI_PACK_IQ4_XS_BYTES + off, _MM_HINT_T1);
            const __m512i ls =
                _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(kb + 32 + 16 * j)));
            __m512i lo[4], hi[4];
#pragma GCC unroll 16
            for (int i = 0; i < 4; i++) {
                const __m512i v = _mm512_loadu_si512(kb + 160 + (j * 4 + i) * 64);
                lo[i] = _mm512_shuffle_epi8(tbl, _mm512_and_si512(v, m4));
                hi[i] = _mm512_shuffle_epi8(tbl, _mm512_and_si512(_mm512_srli_epi16(v, 4), m4));
            }
#pragma GCC unroll 16
            for (int t = 0; t < T; t++) {
                const nuri_block_q8_K *xb = (const nuri_block_q8_K *)(x + (size_t)t * x_stride) + b;
                const int8_t *a = xb->qs + 32 * j;
                __m512i s0 = _mm512_set1_epi32(corr[(t * ts + b) * 8 + j]);
                __m512i ab[4];
                if (sp) spread4(a, ab);
#pragma GCC unroll 16
                for (int i = 0; i < 4; i++) {
                    s0 = _mm512_dpbusd_epi32(s0, lo[i],
                                             sp ? ab[i] : _mm512_set1_epi32(load32(a + 4 * i)));
                    s0 = _mm512_dpbusd_epi32(s0, hi[i], _mm512_set1_epi32(load32(a + 16 + 4 * i)));
                }
                f[t] = _mm512_add_epi32(f[t], _mm512_mullo_epi32(s0, ls));
            }
        }
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)kb));
#pragma GCC unroll 16
        for (int t = 0; t < T; t++) {
            const __m512 dx = _mm512_set1_ps(da[t * ts + b]);
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(f[t]), _mm512_mul_ps(dw, dx), acc[t]);
        }
    }
#pragma GCC unroll 16
    for (int t = 0; t < T; t++) _mm512_mask_storeu_ps(y + t * y_stride, rows, acc[t]);
}

#define VNNI_IQ4_XS(T, SP)                                                                         \
    vnni_iq4_xs(T, SP, nb, grp, xt, x_stride, da + t * ts, corr + t * ts * 8, ts,                  \
                y + t * y_stride, y_stride, rows)

static void vnni_iq4_xs_tokens(int64_t nb, const uint8_t *grp, const uint8_t *x, size_t x_stride,
                               int64_t n_t, const float *da, const int32_t *corr, int64_t ts,
                               float *y, int64_t y_stride, __mmask16 rows)
{
    const int sp = nuri_pack_spread();
    for (int64_t t = 0; t < n_t;) {
        const int64_t left = n_t - t;
        const int T = left >= 8 ? 8 : left >= 4 ? 4 : left >= 2 ? 2 : 1;
        const uint8_t *xt = x + (size_t)t * x_stride;
        BY_TOKENS(T, sp, VNNI_IQ4_XS);
        t += T;
    }
}

static void iq4_xs_tables(const uint8_t *x, size_t x_stride, int64_t n_t, int64_t nb, float *da,
                          int32_t *corr)
{
    for (int64_t t = 0; t < n_t; t++) {
        const nuri_block_q8_K *blk = (const nuri_block_q8_K *)(x + (size_t)t * x_stride);
        for (int64_t b = 0; b < nb; b++) {
            da[t * nb + b] = blk[b].d;
#pragma GCC unroll 16
            for (int j = 0; j < 8; j++)
                corr[(t * nb + b) * 8 + j] = -128 * (blk[b].bsums[2 * j] + blk[b].bsums[2 * j + 1]);
        }
    }
}

static void packed_xs(int64_t n, const void *wp, int64_t n_out, items *it, const uint8_t *x,
                      size_t x_stride, int64_t n_t, float *y, int64_t y_stride, uint8_t *buf,
                      int64_t tt)
{
    const int64_t nb = n / NURI_QK_K, gbytes = nb * NURI_PACK_IQ4_XS_BYTES;
    int64_t tc, ga, gb, have = -1;
    float da1[NURI_PACK_MAX_N / NURI_QK_K];
    int32_t corr1[NURI_PACK_MAX_N / NURI_QK_K * 8];
    float *da = buf ? (float *)buf : da1;
    int32_t *corr = buf ? (int32_t *)(buf + (size_t)(tt * nb * 4)) : corr1;
    const int64_t step = buf ? tt : 1; // no scratch: one token at a time, the same arithmetic
    while (items_next(it, &tc, &ga, &gb)) {
        pack_item_warm((const uint8_t *)wp + ga * gbytes, (gb - ga) * gbytes);
        for (int64_t t0 = tc * tt; t0 < n_t && t0 < (tc + 1) * tt; t0 += step) {
            const int64_t left = (tc + 1) * tt < n_t ? (tc + 1) * tt - t0 : n_t - t0;
            const int64_t nt = left < step ? left : step;
            const uint8_t *xc = x + (size_t)t0 * x_stride;
            if (!buf || tc != have) {
                iq4_xs_tables(xc, x_stride, nt, nb, da, corr);
                have = tc;
            }
            for (int64_t g = ga; g < gb; g++) {
                const int64_t rr = n_out - 16 * g < 16 ? n_out - 16 * g : 16;
                vnni_iq4_xs_tokens(nb, (const uint8_t *)wp + g * gbytes, xc, x_stride, nt, da, corr,
                                   nb, y + t0 * y_stride + 16 * g, y_stride,
                                   (__mmask16)((1u << rr) - 1));
            }
        }
    }
}

/* ======================================================================================== */
/* Q3_K, Q2_K (pack.h): the kernels are pack_q23_avx512.c's; they need no tables.            */
/* ======================================================================================== */

void kernels_packed_q23_group(uint32_t type, int64_t nb, const uint8_t *grp, const uint8_t *x,
                              size_t x_stride, int64_t n_t, float *y, int64_t y_stride, int rr,
                              int gf);

static void packed_q23(uint32_t type, int64_t n, const void *wp, int64_t n_out, items *it,
                       const uint8_t *x, size_t x_stride, int64_t n_t, float *y, int64_t y_stride,
                       int64_t tt)
{
    const int64_t nb = n / NURI_QK_K;
    const int64_t gbytes =
        nb * (type == NURI_TYPE_Q3_K ? NURI_PACK_Q3_K_BYTES : NURI_PACK_Q2_K_BYTES);
    const int gf = nuri_pack_gfni();
    int64_t tc, ga, gb;
    while (items_next(it, &tc, &ga, &gb)) {
        pack_item_warm((const uint8_t *)wp + ga * gbytes, (gb - ga) * gbytes);
        const int64_t t0 = tc * tt, nt = n_t - t0 < tt ? n_t - t0 : tt;
        for (int64_t g = ga; g < gb; g++) {
            const int64_t rr = n_out - 16 * g < 16 ? n_out - 16 * g : 16;
            kernels_packed_q23_group(type, nb, (const uint8_t *)wp + g * gbytes,
                                     x + (size_t)t0 * x_stride, x_stride, nt,
                                     y + t0 * y_stride + 16 * g, y_stride, (int)rr, gf);
        }
    }
}

static bool is_q23(uint32_t type)
{
    return type == NURI_TYPE_Q3_K || type == NURI_TYPE_Q2_K;
}

/* F16 and BF16 (pack.h, pack_bf16_avx512.c): F16 activations are widened to F32 once per     */
/* chunk; BF16 ones are read in place.                                                        */
/* ======================================================================================== */

void kernels_x16f_groups(uint32_t type, int64_t n, const void *wp, int64_t n_out, int64_t ga,
                         int64_t gb, const void *vx, size_t x_stride, int64_t n_t, bool f32,
                         float *y, int64_t y_stride);
void kernels_x16f_widen(const void *x, size_t x_stride, int64_t n_t, int64_t n, float *out);

static void packed_x16f(uint32_t type, int64_t n, const void *wp, int64_t n_out, items *it,
                        const uint8_t *x, size_t x_stride, int64_t n_t, float *y, int64_t y_stride,
                        uint8_t *buf, int64_t tt)
{
    const bool widen = type == NURI_TYPE_F16 && buf; // no scratch: widened in place, same bits
    int64_t tc, ga, gb, have = -1;
    while (items_next(it, &tc, &ga, &gb)) {
        const int64_t t0 = tc * tt, nt = n_t - t0 < tt ? n_t - t0 : tt;
        const uint8_t *xc = x + (size_t)t0 * x_stride;
        if (widen && tc != have) {
            kernels_x16f_widen(xc, x_stride, nt, n, (float *)buf);
            have = tc;
        }
        kernels_x16f_groups(type, n, wp, n_out, ga, gb, widen ? buf : xc,
                            widen ? (size_t)n * 4 : x_stride, nt, widen, y + t0 * y_stride,
                            y_stride);
    }
}

long kernels_packed_items_avx512(uint32_t type, int64_t n, int64_t n_out, int64_t n_t);
long kernels_packed_items_avx512(uint32_t type, int64_t n, int64_t n_out, int64_t n_t)
{
    const int64_t nb =
        n / (type == NURI_TYPE_Q4_K || type == NURI_TYPE_Q6_K || type == NURI_TYPE_IQ4_XS ||
                     type == NURI_TYPE_Q5_K || is_q23(type)
                 ? NURI_QK_K
                 : NURI_QK);
    const items it = items_make(NULL, 0, 0, n_out, n_t, chunk_tokens(type, nb));
    return (long)(it.n_tc * it.n_run);
}

/* Row groups [g0, g1) for all tokens, or the items of sh (then g0, g1 are unused). */
void kernels_packed_gemm_avx512(uint32_t type, int64_t n, const void *wp, int64_t n_out, int64_t g0,
                                int64_t g1, const void *vx, size_t x_stride, int64_t n_t, float *y,
                                int64_t y_stride, bool use_amx, const nuri_share *sh);
void kernels_packed_gemm_avx512(uint32_t type, int64_t n, const void *wp, int64_t n_out, int64_t g0,
                                int64_t g1, const void *vx, size_t x_stride, int64_t n_t, float *y,
                                int64_t y_stride, bool use_amx, const nuri_share *sh)
{
    const int kq = type == NURI_TYPE_Q4_K || type == NURI_TYPE_Q6_K || type == NURI_TYPE_Q5_K;
    const int xs = type == NURI_TYPE_IQ4_XS;
    const int64_t tt = chunk_tokens(type, n / (kq || xs || is_q23(type) ? NURI_QK_K : NURI_QK));
    items it = items_make(sh, g0, g1, n_out, n_t, tt);
    if (type == NURI_TYPE_F16 || type == NURI_TYPE_BF16) {
        packed_x16f(type, n, wp, n_out, &it, vx, x_stride, n_t, y, y_stride, buf_get(), tt);
        return;
    }
    if (is_q23(type)) {
        packed_q23(type, n, wp, n_out, &it, vx, x_stride, n_t, y, y_stride, tt);
        return;
    }
    if (xs) {
        packed_xs(n, wp, n_out, &it, vx, x_stride, n_t, y, y_stride, buf_get(), tt);
        return;
    }
    (kq ? packed_kq : packed_q)(type, n, wp, n_out, &it, vx, x_stride, n_t, y, y_stride, use_amx,
                                buf_get(), tt);
}
