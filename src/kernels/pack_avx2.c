/*
 * pack_avx2.c: matrix products over packed (x16) Q4_0 / Q8_0 / Q4_K / Q5_K / Q6_K / IQ4_NL /
 * IQ4_XS / MXFP4 / Q3_K / Q2_K / F16 / BF16 weights with AVX2 alone
 * (no VNNI), for CPUs without AVX-512 or with NURI_ISA=avx2. Same layouts as pack_avx512.c
 * (pack.h), same integers, same float steps in the same order: the outputs are bit-identical to
 * the VNNI kernels', and do not depend on the batch.
 *
 * A 64-byte line holds 4 codes of 16 rows; its two 32-byte halves are rows 0-7 and 8-15, one ymm
 * each. A kernel runs one half (8 rows) for a tile of tokens, so that its accumulators and the
 * weights being decoded fit the 16 ymm registers; the group's lines are read again for the
 * second half, from cache. Without vpdpbusd the int8 product is vpmaddubsw (unsigned x signed
 * bytes -> pairs summed as int16, saturating) then vpmaddwd (pairs of int16 -> int32). Nothing
 * saturates: Q4_0 / Q4_K codes are 0..15, so eight vpmaddubsw results (16 products of at most
 * 15 x 128 each per int16 lane) add up to at most 30720; Q6_K codes 0..63 allow two (32256).
 * Q8_0's codes are signed: they are used as |w| (0..128) against x with w's sign (activations
 * are -127..127, so x * sign(w) is exact), one vpmaddubsw per vpmaddwd; so are IQ4_NL's,
 * IQ4_XS's and MXFP4's grid values (the VNNI kernels' grid + 128 would overflow an int16 pair).
 * Q5_K's codes (0..31) fill an int16 lane in four lines, so its sums widen every four.
 */
#include "kernels/blocks.h"
#include "kernels/fp16.h"
#include "kernels/kernels_impl.h"
#include "kernels/pack.h"
#include "kernels/pack_tables.h"
#include "kernels/types.h"

#include <immintrin.h>
#include <string.h>

enum {
    // the same scratch (kernels_thread_scratch's KERNELS_SCRATCH_PACK) and size as pack_avx512.c
    A2_CHUNK = 2 * 1024 * 1024,
    A2_BUF = A2_CHUNK + 36 * NURI_PACK_MAX_N + 8192,
    A2_TT_MAX = 256, // tokens per chunk at most
    // prefetch distance, in blocks of 32, into L1: the 4-bit kinds 24 (7 KiB; from memory, one
    // thread: Q4_0 13 -> 16 GB/s), Q8_0 8 (4 KiB)
    A2_PF4 = 24,
    A2_PF8 = 8,
    A2_F16_PF = 64, // F16 / BF16: in 64-byte lines of a row group (4 KiB; see f16_tile)
    A2_DEC_G = 2,   // decode: row groups side by side (q_dec)
};

static inline int32_t load32(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline __m256i bcast32(const int8_t *p)
{
    return _mm256_set1_epi32(load32(p));
}

/* Keeps v in a register as it is at this point: GCC would otherwise reorder a token's chain of
 * integer additions into a tree computed after all the products, which needs more than the 16 ymm
 * registers and sends the partial products to the stack. No instruction. */
static inline __m256i hold(__m256i v)
{
    __asm__("" : "+x"(v));
    return v;
}

/* Stores the first `rows` (1..8) lanes of v. */
static inline void store_rows(float *y, __m256 v, int rows)
{
    if (rows >= 8) {
        _mm256_storeu_ps(y, v);
        return;
    }
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_maskstore_ps(y, _mm256_cmpgt_epi32(_mm256_set1_epi32(rows), lane), v);
}

/* ======================================================================================== */
/* Q4_0 / Q8_0 / IQ4_NL / MXFP4: per block, float(isum) * (d_w * d_x) added by one FMA        */
/* (pack.h).                                                                                 */
/* ======================================================================================== */

enum { A2_Q4_0, A2_Q8_0, A2_IQ4_NL, A2_MXFP4 }; // the 32-element kinds

static inline int a2_kind(uint32_t type)
{
    return type == NURI_TYPE_Q8_0     ? A2_Q8_0
           : type == NURI_TYPE_IQ4_NL ? A2_IQ4_NL
           : type == NURI_TYPE_MXFP4  ? A2_MXFP4
                                      : A2_Q4_0;
}

/* A 16-entry signed grid in both 128-bit lanes (vpshufb looks up within lanes). */
static inline __m256i grid_table(const int8_t *grid)
{
    return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)grid));
}

/* A line's low and high nibbles looked up in a 16-entry table (grid_table). */
static inline __m256i grid_lo(__m256i tbl, __m256i v, __m256i m4)
{
    return _mm256_shuffle_epi8(tbl, _mm256_and_si256(v, m4));
}

static inline __m256i grid_hi(__m256i tbl, __m256i v, __m256i m4)
{
    return _mm256_shuffle_epi8(tbl, _mm256_and_si256(_mm256_srli_epi16(v, 4), m4));
}

/* The signed products of codes w (-127..127) with x's 4-byte groups (bcast32), one int32 per row:
 * |w| x (x with w's sign), exact in int16 pairs since |w|, |x| <= 127 (pack_avx2.c's comment). */
static inline __m256i signed_dot4(__m256i w, __m256i xb, __m256i ones)
{
    return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(xb, w)),
                             ones);
}

/* T tokens x rows 8h .. 8h + 7 of one row group, all blocks. corr (Q4_0): -8 * sum of x's codes
 * per block; the others need none: Q8_0's codes, and IQ4_NL's and MXFP4's grid values (the VNNI
 * kernel's grid + 128 less 128 * sum x), are multiplied signed. */
static inline __attribute__((always_inline)) void
q_half(const int T, const int kind, int64_t nb, const uint8_t *grp, int h, const uint8_t *x,
       size_t x_stride, const float *da, const int32_t *corr, int64_t ts, float *y,
       int64_t y_stride, int rows)
{
    const int q8 = kind == A2_Q8_0, grid = kind == A2_IQ4_NL || kind == A2_MXFP4;
    const uint16_t *dg = (const uint16_t *)grp;
    const float *dfg = (const float *)grp; // MXFP4: F32 scales
    const uint8_t *qg = grp + nb * (kind == A2_MXFP4 ? 64 : 32) + 32 * h;
    const int64_t qb = q8 ? 512 : 256;
    const __m256i m4 = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1);
    const __m256i tbl = grid_table(kind == A2_MXFP4 ? nuri_fp4_grid : nuri_iq4_grid);
    __m256 acc[4];
#pragma GCC unroll 16
    for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *q = qg + b * qb;
        for (int64_t off = 0; off < qb; off += 64) {
            // into L1 (not L2 as before decode read in lanes: 1B Q4_0 decode +10%, Zen 4)
            _mm_prefetch((const char *)q + (q8 ? A2_PF8 : A2_PF4) * qb + off, _MM_HINT_T0);
        }
        __m256i s[4];
        if (grid) {
#pragma GCC unroll 16
            for (int t = 0; t < T; t++) s[t] = _mm256_setzero_si256();
#pragma GCC unroll 16
            for (int i = 0; i < 4; i++) {
                const __m256i v = _mm256_loadu_si256((const __m256i *)(q + 64 * i));
                const __m256i lo = grid_lo(tbl, v, m4), hi = grid_hi(tbl, v, m4);
#pragma GCC unroll 16
                for (int t = 0; t < T; t++) {
                    const int8_t *a = (const int8_t *)(x + (size_t)t * x_stride) + b * 34 + 2;
                    s[t] = hold(_mm256_add_epi32(s[t], signed_dot4(lo, bcast32(a + 4 * i), ones)));
                    s[t] = hold(
                        _mm256_add_epi32(s[t], signed_dot4(hi, bcast32(a + 16 + 4 * i), ones)));
                }
            }
        } else if (q8) {
#pragma GCC unroll 16
            for (int t = 0; t < T; t++) s[t] = _mm256_setzero_si256();
#pragma GCC unroll 16
            for (int i = 0; i < 8; i++) {
                const __m256i w = _mm256_loadu_si256((const __m256i *)(q + 64 * i));
                const __m256i aw = _mm256_abs_epi8(w);
#pragma GCC unroll 16
                for (int t = 0; t < T; t++) {
                    const int8_t *a = (const int8_t *)(x + (size_t)t * x_stride) + b * 34 + 2;
                    const __m256i p =
                        _mm256_maddubs_epi16(aw, _mm256_sign_epi8(bcast32(a + 4 * i), w));
                    s[t] = hold(_mm256_add_epi32(s[t], _mm256_madd_epi16(p, ones)));
                }
            }
        } else {
#pragma GCC unroll 16
            for (int t = 0; t < T; t++) s[t] = _mm256_setzero_si256();
#pragma GCC unroll 16
            for (int i = 0; i < 4; i++) {
                const __m256i v = _mm256_loadu_si256((const __m256i *)(q + 64 * i));
                const __m256i lo = _mm256_and_si256(v, m4);
                const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
#pragma GCC unroll 16
                for (int t = 0; t < T; t++) {
                    const int8_t *a = (const int8_t *)(x + (size_t)t * x_stride) + b * 34 + 2;
                    s[t] =
                        hold(_mm256_add_epi16(s[t], _mm256_maddubs_epi16(lo, bcast32(a + 4 * i))));
                    s[t] =
                        _mm256_add_epi16(s[t], _mm256_maddubs_epi16(hi, bcast32(a + 16 + 4 * i)));
                }
            }
#pragma GCC unroll 16
            for (int t = 0; t < T; t++)
                s[t] = _mm256_add_epi32(_mm256_madd_epi16(s[t], ones),
                                        _mm256_set1_epi32(corr[t * ts + b]));
        }
        const __m256 dw =
            kind == A2_MXFP4
                ? _mm256_loadu_ps(dfg + 16 * b + 8 * h)
                : _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(dg + 16 * b + 8 * h)));
#pragma GCC unroll 16
        for (int t = 0; t < T; t++) {
            const __m256 ds = _mm256_mul_ps(dw, _mm256_set1_ps(da[t * ts + b]));
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[t]), ds, acc[t]);
        }
    }
#pragma GCC unroll 16
    for (int t = 0; t < T; t++) store_rows(y + t * y_stride + 8 * h, acc[t], rows);
}

/* One token's exact integer sum over one block of rows 8h .. 8h + 7 (q: the block's codes), as
 * q_half computes it for each of its tokens. */
static inline __attribute__((always_inline)) __m256i
q_sum1(const int kind, const uint8_t *q, int h, const int8_t *a, int32_t corr, __m256i tbl)
{
    const __m256i m4 = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1);
    q += 32 * h;
    __m256i s = _mm256_setzero_si256();
    if (kind == A2_IQ4_NL || kind == A2_MXFP4) {
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)(q + 64 * i));
            const __m256i lo = grid_lo(tbl, v, m4), hi = grid_hi(tbl, v, m4);
            s = _mm256_add_epi32(s, signed_dot4(lo, bcast32(a + 4 * i), ones));
            s = _mm256_add_epi32(s, signed_dot4(hi, bcast32(a + 16 + 4 * i), ones));
        }
        return s;
    }
    if (kind == A2_Q8_0) {
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) {
            const __m256i w = _mm256_loadu_si256((const __m256i *)(q + 64 * i));
            const __m256i p =
                _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(bcast32(a + 4 * i), w));
            s = _mm256_add_epi32(s, _mm256_madd_epi16(p, ones));
        }
        return s;
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(q + 64 * i));
        s = _mm256_add_epi16(s, _mm256_maddubs_epi16(_mm256_and_si256(v, m4), bcast32(a + 4 * i)));
        s = _mm256_add_epi16(s, _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v, 4), m4),
                                                     bcast32(a + 16 + 4 * i)));
    }
    return _mm256_add_epi32(_mm256_madd_epi16(s, ones), _mm256_set1_epi32(corr));
}

/* One token x G (1 or 2) row groups, both halves of each, side by side: decode. As vnni_dec in
 * pack_avx512.c: q_half, one group and one half at a time, stalled on its fetches (with
 * NURI_ISA=avx2 the 1B Q4_0 file read 28-31 GB/s where its Q4_K_M read 33); here 2G chains of
 * sums, and each group's prefetch going on into the group G on: Q4_0 31.4 -> 45.5 GB/s, Q8_0
 * 34.1 -> 48.2 (Zen 5, two threads; G = 4 was level). The same integers and float steps as
 * q_half. rows_last: the last group's rows (1..16). */
static inline __attribute__((always_inline)) void
q_dec(const int G, const int kind, int64_t nb, const uint8_t *grp, int64_t gbytes, const uint8_t *x,
      const float *da, const int32_t *corr, float *y, int rows_last)
{
    const int64_t sb = kind == A2_MXFP4 ? 64 : 32, qb = kind == A2_Q8_0 ? 512 : 256;
    const __m256i tbl = grid_table(kind == A2_MXFP4 ? nuri_fp4_grid : nuri_iq4_grid);
    __m256 acc[4];
#pragma GCC unroll 4
    for (int u = 0; u < 2 * G; u++) acc[u] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const int8_t *a = (const int8_t *)x + b * 34 + 2;
        const __m256 dx = _mm256_set1_ps(da[b]);
        const int64_t j = b + (kind == A2_Q8_0 ? A2_PF8 : A2_PF4), nx = j >= nb;
        const int64_t jj = nx ? j - nb : j;
#pragma GCC unroll 2
        for (int g = 0; g < G; g++) {
            const uint8_t *gg = grp + g * gbytes, *pg = gg + (nx ? G * gbytes : 0);
#pragma GCC unroll 8
            for (int64_t off = 0; off < qb; off += 64)
                _mm_prefetch((const char *)pg + nb * sb + jj * qb + off, _MM_HINT_T0);
            _mm_prefetch((const char *)pg + jj * sb, _MM_HINT_T0);
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++) {
                const __m256i s = q_sum1(kind, gg + nb * sb + b * qb, h, a, corr[b], tbl);
                const __m256 dw =
                    kind == A2_MXFP4
                        ? _mm256_loadu_ps((const float *)gg + 16 * b + 8 * h)
                        : _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(gg + 32 * b + 16 * h)));
                acc[2 * g + h] =
                    _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dw, dx), acc[2 * g + h]);
            }
        }
    }
#pragma GCC unroll 2
    for (int g = 0; g < G; g++)
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const int rows = g < G - 1 ? 16 : rows_last;
            if (8 * h < rows)
                store_rows(y + 16 * g + 8 * h, acc[2 * g + h], rows - 8 * h < 8 ? rows - 8 * h : 8);
        }
}

#define Q_T(KIND, T)                                                                               \
    q_half(T, KIND, nb, grp, h, xt, x_stride, da + t * ts, corr + t * ts, ts, yt, y_stride, rows)
#define Q_KIND(T)                                                                                  \
    (kind == A2_Q8_0     ? Q_T(A2_Q8_0, T)                                                         \
     : kind == A2_IQ4_NL ? Q_T(A2_IQ4_NL, T)                                                       \
     : kind == A2_MXFP4  ? Q_T(A2_MXFP4, T)                                                        \
                         : Q_T(A2_Q4_0, T))

static __attribute__((noinline)) void q_tokens(int kind, int64_t nb, const uint8_t *grp, int h,
                                               const uint8_t *x, size_t x_stride, int64_t n_t,
                                               const float *da, const int32_t *corr, int64_t ts,
                                               float *y, int64_t y_stride, int rows)
{
    for (int64_t t = 0; t < n_t;) {
        const int64_t left = n_t - t;
        const uint8_t *xt = x + (size_t)t * x_stride;
        float *yt = y + t * y_stride;
        const int T = left >= 4 ? 4 : left >= 2 ? 2 : 1;
        if (T == 4)
            Q_KIND(4);
        else if (T == 2)
            Q_KIND(2);
        else
            Q_KIND(1);
        t += T;
    }
}

/* da[t][b] = F32(x[t].d[b]); Q4_0 (no_corr false): corr[t][b] = -8 * sum of x[t]'s codes in
 * block b. */
static void q_tables(int no_corr, const uint8_t *x, size_t x_stride, int64_t n_t, int64_t nb,
                     float *da, int32_t *corr)
{
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    for (int64_t t = 0; t < n_t; t++) {
        const nuri_block_q8_0 *blk = (const nuri_block_q8_0 *)(x + (size_t)t * x_stride);
        if (t + 1 < n_t) // the next row while this one is read (as pack_avx512.c's make_tables)
            for (int64_t off = 0; off < nb * (int64_t)sizeof *blk; off += 64)
                _mm_prefetch((const char *)blk + x_stride + off, _MM_HINT_T0);
        for (int64_t b = 0; b < nb; b++) {
            da[t * nb + b] = _cvtsh_ss(blk[b].d);
            if (no_corr) continue;
            // the codes + 128 summed by vpsadbw, less 32 x 128
            const __m256i q = _mm256_loadu_si256((const __m256i *)blk[b].qs);
            const __m256i s = _mm256_sad_epu8(_mm256_xor_si256(q, flip), _mm256_setzero_si256());
            const __m128i v =
                _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
            corr[t * nb + b] =
                -8 * ((int32_t)(_mm_cvtsi128_si64(v) + _mm_extract_epi64(v, 1)) - 32 * 128);
        }
    }
}

/* ======================================================================================== */
/* Q4_K: per block f = sum_j isum_j * sc_j (exact integers), mins = sum_j float(bsum_j) * m_j,  */
/* acc = fma(float(f), d * d_x, acc), acc = acc - mins * (dmin * d_x) (pack.h).                */
/* ======================================================================================== */

/* T tokens x rows 8h .. 8h + 7. bsf[(t * ts + b) * 8 + j]: token t's 32-element sums as floats.
 * Each sub-block's int16 sums are multiplied by its scale by vpmaddwd against the scale in both
 * int16 halves of the row's lane: the row's exact isum_j * sc_j as int32. Q5_K (q5): the same
 * block followed by its 5th bits (pack.h), bit j of qh line i for sub-block j; codes up to 31
 * fill an int16 lane in four lines (4 x 2 x 31 x 127), so its sums go to int32 every four. */
static inline __attribute__((always_inline)) void
q4_K_half(const int T, const int q5, int64_t nb, const uint8_t *grp, int h, const uint8_t *x,
          size_t x_stride, const float *da, const float *bsf, int64_t ts, float *y,
          int64_t y_stride, int rows)
{
    const __m256i m4 = _mm256_set1_epi8(15), one = _mm256_set1_epi8(1);
    const int64_t kbytes = q5 ? NURI_PACK_Q5_K_BYTES : NURI_PACK_Q4_K_BYTES;
    __m256 acc[4];
#pragma GCC unroll 16
    for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *kb = grp + b * kbytes;
        for (int off = 0; off < kbytes; off += 64)
            _mm_prefetch((const char *)kb + 4 * kbytes + off, _MM_HINT_T1);
        __m256i f[4];
#pragma GCC unroll 16
        for (int t = 0; t < T; t++) f[t] = _mm256_setzero_si256();
#pragma GCC unroll 16
        for (int j = 0; j < 8; j++) { // sub-block j: nibble j % 2 of lines (j / 2, i)
            const int c = j / 2;
            const __m256i sc =
                _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(kb + 64 + 16 * j + 8 * h)));
            const __m256i sc2 = _mm256_or_si256(sc, _mm256_slli_epi32(sc, 16));
            __m256i s[4];
#pragma GCC unroll 16
            for (int t = 0; t < T; t++) s[t] = _mm256_setzero_si256();
#pragma GCC unroll 16
            for (int i = 0; i < 8; i++) {
                const __m256i v =
                    _mm256_loadu_si256((const __m256i *)(kb + 320 + (c * 8 + i) * 64 + 32 * h));
                __m256i w =
                    j % 2 ? _mm256_and_si256(_mm256_srli_epi16(v, 4), m4) : _mm256_and_si256(v, m4);
                if (q5) {
                    const __m256i hb = _mm256_loadu_si256(
                        (const __m256i *)(kb + NURI_PACK_Q4_K_BYTES + 64 * i + 32 * h));
                    w = _mm256_or_si256(
                        w, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, j), one), 4));
                    if (i == 4) { // the first four lines' sums, before an int16 lane could fill
#pragma GCC unroll 16
                        for (int t = 0; t < T; t++) {
                            f[t] = hold(_mm256_add_epi32(f[t], _mm256_madd_epi16(s[t], sc2)));
                            s[t] = _mm256_setzero_si256();
                        }
                    }
                }
#pragma GCC unroll 16
                for (int t = 0; t < T; t++) {
                    const nuri_block_q8_K *xb =
                        (const nuri_block_q8_K *)(x + (size_t)t * x_stride) + b;
                    s[t] = hold(_mm256_add_epi16(
                        s[t], _mm256_maddubs_epi16(w, bcast32(xb->qs + 32 * j + 4 * i))));
                }
            }
#pragma GCC unroll 16
            for (int t = 0; t < T; t++)
                f[t] = hold(_mm256_add_epi32(f[t], _mm256_madd_epi16(s[t], sc2)));
        }
        const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(kb + 16 * h)));
        const __m256 dm = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(kb + 32 + 16 * h)));
#pragma GCC unroll 16
        for (int t = 0; t < T; t++) {
            const float *bs = bsf + (t * ts + b) * 8;
            __m256 mins = _mm256_setzero_ps();
#pragma GCC unroll 16
            for (int j = 0; j < 8; j++) {
                const __m256 mf = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(
                    _mm_loadl_epi64((const __m128i *)(kb + 192 + 16 * j + 8 * h))));
                mins = _mm256_fmadd_ps(_mm256_set1_ps(bs[j]), mf, mins);
            }
            const __m256 dx = _mm256_set1_ps(da[t * ts + b]);
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(f[t]), _mm256_mul_ps(dw, dx), acc[t]);
            acc[t] = _mm256_fnmadd_ps(mins, _mm256_mul_ps(dm, dx), acc[t]);
        }
    }
#pragma GCC unroll 16
    for (int t = 0; t < T; t++) store_rows(y + t * y_stride + 8 * h, acc[t], rows);
}

/* ======================================================================================== */
/* IQ4_XS: per sub-block j the signed grid products (no +128: |w| x sign trick) times ls_j,    */
/* added as integers; acc = fma(float(f), d * d_x, acc) once per block (pack.h).              */
/* ======================================================================================== */

/* Sub-block j's scales ls_j of rows 8h .. 8h + 7 (block kb), row r's in both int16 halves of lane
 * r: vpmaddwd multiplies each pair of products by it and adds them, the row's exact isum_j * ls_j
 * as int32. */
static inline __m256i iq4_xs_ls(const uint8_t *kb, int j, int h)
{
    const __m256i l32 = _mm256_cvtepu16_epi32(
        _mm_cvtepi8_epi16(_mm_loadl_epi64((const __m128i *)(kb + 32 + 16 * j + 8 * h))));
    return _mm256_or_si256(l32, _mm256_slli_epi32(l32, 16));
}

/* Half h (rows 8h .. 8h + 7) of line i of sub-block j's codes (pack.h's qs[8][4][16][4], after
 * d and ls). */
static inline __m256i iq4_xs_line(const uint8_t *kb, int j, int i, int h)
{
    return _mm256_loadu_si256((const __m256i *)(kb + 160 + (j * 4 + i) * 64 + 32 * h));
}

static inline __attribute__((always_inline)) void
iq4_xs_half(const int T, int64_t nb, const uint8_t *grp, int h, const uint8_t *x, size_t x_stride,
            const float *da, int64_t ts, float *y, int64_t y_stride, int rows)
{
    const __m256i m4 = _mm256_set1_epi8(15);
    const __m256i tbl = grid_table(nuri_iq4_grid);
    __m256 acc[4];
#pragma GCC unroll 16
    for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *kb = grp + b * NURI_PACK_IQ4_XS_BYTES;
        for (int off = 0; off < NURI_PACK_IQ4_XS_BYTES; off += 64)
            _mm_prefetch((const char *)kb + 4 * NURI_PACK_IQ4_XS_BYTES + off, _MM_HINT_T1);
        __m256i f[4];
#pragma GCC unroll 16
        for (int t = 0; t < T; t++) f[t] = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            const __m256i ls = iq4_xs_ls(kb, j, h);
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++) {
                const __m256i v = iq4_xs_line(kb, j, i, h);
                const __m256i lo = grid_lo(tbl, v, m4), hi = grid_hi(tbl, v, m4);
                const __m256i alo = _mm256_abs_epi8(lo), ahi = _mm256_abs_epi8(hi);
#pragma GCC unroll 16
                for (int t = 0; t < T; t++) {
                    const nuri_block_q8_K *xb =
                        (const nuri_block_q8_K *)(x + (size_t)t * x_stride) + b;
                    const int8_t *a = xb->qs + 32 * j;
                    f[t] = hold(_mm256_add_epi32(
                        f[t], _mm256_madd_epi16(_mm256_maddubs_epi16(
                                                    alo, _mm256_sign_epi8(bcast32(a + 4 * i), lo)),
                                                ls)));
                    f[t] = hold(_mm256_add_epi32(
                        f[t],
                        _mm256_madd_epi16(_mm256_maddubs_epi16(
                                              ahi, _mm256_sign_epi8(bcast32(a + 16 + 4 * i), hi)),
                                          ls)));
                }
            }
        }
        const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(kb + 16 * h)));
#pragma GCC unroll 16
        for (int t = 0; t < T; t++) {
            const __m256 dx = _mm256_set1_ps(da[t * ts + b]);
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(f[t]), _mm256_mul_ps(dw, dx), acc[t]);
        }
    }
#pragma GCC unroll 16
    for (int t = 0; t < T; t++) store_rows(y + t * y_stride + 8 * h, acc[t], rows);
}

/* The same products for 8 tokens a pass, with vpxor where iq4_xs_half has vpsignb. The grid
 * has no 0, so per product g * a = -(|g| * (a ^ m) + [g > 0] |g|) with m = 0xFF where g > 0
 * (~a = -a - 1) and m = 0 where g < 0: vpmaddubsw multiplies |g| (<= 127) by a ^ m (-128..127),
 * exact in int16 pairs (2 * 127 * 128 < 32768). The second term depends on the weights alone:
 * iq4_xs_pos gives it per row and block, times the sub-blocks' scales, and it starts each
 * block's sums, which are then -isum exactly (the float step subtracts). On Zen 5 vpsignb
 * competes with the two multiply pipes and vpxor does not: a step of the four ops runs in 1.10
 * cycles against 1.20 (a loop of independent steps, CPU time).
 *
 * A line's lookup (|g| and the mask m, 7 vector ops) is spread over the 8 tokens; per token and
 * 32 products the work is a broadcast (a load), vpxor, vpmaddubsw, vpmaddwd and vpaddd. The 8
 * sums, the scale, the table, a looked-up half line (|g| and m) need 14 of the 16 ymm, so a
 * line's low codes go through all 8 tokens before its high codes (the line is loaded again, from
 * L1), and the float sums stay in memory between blocks. The nibble mask and the 7s are memory
 * operands (as registers, GCC's schedule ran 3% slower). pf: the first tile of the call, which
 * prefetches the blocks ahead; the later tiles find the row group in L1 or L2 (skipping their
 * prefetches: 1.5-2% faster at every 1B shape, from memory too). */
static inline __attribute__((always_inline)) void
iq4_xs_half8(const int pf, int64_t nb, const uint8_t *grp, int h, const uint8_t *x, size_t x_stride,
             const float *da, int64_t ts, const int32_t *pos, float *y, int64_t y_stride, int rows)
{
    static const uint8_t m4b[32] __attribute__((aligned(32))) = {
        15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15,
        15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15};
    static const uint8_t m7b[32]
        __attribute__((aligned(32))) = {7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
                                        7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7};
    const __m256i tbl = _mm256_abs_epi8(grid_table(nuri_iq4_grid)); // |g|
    __m256 acc[8];
#pragma GCC unroll 16
    for (int t = 0; t < 8; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *kb = grp + b * NURI_PACK_IQ4_XS_BYTES;
        if (pf)
            for (int off = 0; off < NURI_PACK_IQ4_XS_BYTES; off += 64)
                _mm_prefetch((const char *)kb + 4 * NURI_PACK_IQ4_XS_BYTES + off, _MM_HINT_T1);
        const __m256i p = _mm256_loadu_si256((const __m256i *)(pos + 8 * b));
        __m256i f[8];
#pragma GCC unroll 16
        for (int t = 0; t < 8; t++) f[t] = p;
        for (int j = 0; j < 8; j++) {
            const __m256i ls = iq4_xs_ls(kb, j, h);
#pragma GCC unroll 8
            for (int k = 0; k < 8; k++) { // line i = k / 2, low codes (k even) then high
                const int i = k / 2, hi = k % 2;
                const __m256i v = iq4_xs_line(kb, j, i, h);
                __m256i c = hi ? _mm256_srli_epi16(v, 4) : v, m;
                __asm__("vpand %1, %0, %0"
                        : "+x"(c)
                        : "m"(*(const __m256i *)m4b)); // mask in memory
                __asm__("vpcmpgtb %1, %2, %0"
                        : "=x"(m)
                        : "m"(*(const __m256i *)m7b), "x"(c)); // 0xFF where the code is > 7
                const __m256i ag = _mm256_shuffle_epi8(tbl, c);
#pragma GCC unroll 16
                for (int t = 0; t < 8; t++) {
                    const nuri_block_q8_K *xb =
                        (const nuri_block_q8_K *)(x + (size_t)t * x_stride) + b;
                    const int8_t *a = xb->qs + 32 * j + 16 * hi + 4 * i;
                    f[t] = hold(_mm256_add_epi32(
                        f[t], _mm256_madd_epi16(
                                  _mm256_maddubs_epi16(ag, _mm256_xor_si256(bcast32(a), m)), ls)));
                }
            }
        }
        const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(kb + 16 * h)));
#pragma GCC unroll 16
        for (int t = 0; t < 8; t++) {
            const __m256 dx = _mm256_set1_ps(da[t * ts + b]);
            acc[t] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(f[t]), _mm256_mul_ps(dw, dx), acc[t]);
        }
    }
#pragma GCC unroll 16
    for (int t = 0; t < 8; t++) store_rows(y + t * y_stride + 8 * h, acc[t], rows);
}

/* Per block of rows 8h .. 8h + 7 of a row group: sum_j ls_j * (the sum of sub-block j's positive
 * grid values), iq4_xs_half8's weight-only term. */
static void iq4_xs_pos(int64_t nb, const uint8_t *grp, int h, int32_t *pos)
{
    const __m256i tbl = _mm256_max_epi8(grid_table(nuri_iq4_grid), _mm256_setzero_si256()); // g > 0
    const __m256i m4 = _mm256_set1_epi8(15), ones = _mm256_set1_epi8(1);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *kb = grp + b * NURI_PACK_IQ4_XS_BYTES;
        __m256i s = _mm256_setzero_si256();
        for (int j = 0; j < 8; j++) {
            const __m256i ls = iq4_xs_ls(kb, j, h);
            __m256i p16 = _mm256_setzero_si256(); // at most 8 x 2 x 113 per int16
            for (int i = 0; i < 4; i++) {
                const __m256i v = iq4_xs_line(kb, j, i, h);
                const __m256i lo = grid_lo(tbl, v, m4), hi = grid_hi(tbl, v, m4);
                p16 = _mm256_add_epi16(p16, _mm256_maddubs_epi16(lo, ones));
                p16 = _mm256_add_epi16(p16, _mm256_maddubs_epi16(hi, ones));
            }
            s = _mm256_add_epi32(s, _mm256_madd_epi16(p16, ls));
        }
        _mm256_storeu_si256((__m256i *)(pos + 8 * b), s);
    }
}

static void iq4_xs_tables(const uint8_t *x, size_t x_stride, int64_t n_t, int64_t nb, float *da)
{
    for (int64_t t = 0; t < n_t; t++) {
        const nuri_block_q8_K *blk = (const nuri_block_q8_K *)(x + (size_t)t * x_stride);
        for (int64_t b = 0; b < nb; b++) da[t * nb + b] = blk[b].d;
    }
}

/* ======================================================================================== */
/* Q3_K / Q2_K: per 32-element slice s, the exact sums of sub-blocks 2s and 2s + 1 times their */
/* scales as integers, then the mins (Q2_K) or Q3_K's - 4 as sum_j m_j * bsum_j; the float    */
/* steps of pack_q23_avx512.c, whose comment gives them. No tables.                          */
/* ======================================================================================== */

static inline __attribute__((always_inline)) void q23_half(const int T, const int q3, int64_t nb,
                                                           const uint8_t *grp, int hr,
                                                           const uint8_t *x, size_t x_stride,
                                                           float *y, int64_t y_stride, int rows)
{
    const int64_t kbytes = q3 ? NURI_PACK_Q3_K_BYTES : NURI_PACK_Q2_K_BYTES;
    const int sc_off = q3 ? 32 : 64, ql_off = sc_off + 256, qh_off = ql_off + 1024;
    const __m256i m3 = _mm256_set1_epi8(3), b2 = _mm256_set1_epi8(4);
    const __m256i m15 = _mm256_set1_epi16(15), lo16 = _mm256_set1_epi32(0xffff);
    __m256 acc[4];
#pragma GCC unroll 16
    for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *kb = grp + b * kbytes;
        for (int off = 0; off < kbytes; off += 64) // 6 blocks ahead into L2: Q3_K 8 -> 15 GB/s
            _mm_prefetch((const char *)kb + 6 * kbytes + off, _MM_HINT_T1);
        __m256i f[4];
#pragma GCC unroll 16
        for (int t = 0; t < T; t++) f[t] = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int s = 0; s < 8; s++) {
            const int h = s / 4, j = s % 4;
            // the scale pair of sub-blocks 2s, 2s + 1 of the 8 rows, each in both int16 halves
            const __m256i sp =
                q3 ? _mm256_cvtepi8_epi16(
                         _mm_loadu_si128((const __m128i *)(kb + sc_off + 32 * s + 16 * hr)))
                   : _mm256_and_si256(_mm256_cvtepu8_epi16(_mm_loadu_si128(
                                          (const __m128i *)(kb + sc_off + 32 * s + 16 * hr))),
                                      m15);
            const __m256i sc_lo = _mm256_and_si256(sp, lo16);
#pragma GCC unroll 2
            for (int e = 0; e < 2; e++) { // sub-block 2s + e: code lines 4e .. 4e + 3
                const __m256i sc2 =
                    e ? _mm256_or_si256(_mm256_srli_epi32(sp, 16), _mm256_andnot_si256(lo16, sp))
                      : _mm256_or_si256(sc_lo, _mm256_slli_epi32(sc_lo, 16));
                __m256i c[4];
#pragma GCC unroll 4
                for (int k = 0; k < 4; k++) {
                    const int i = 4 * e + k;
                    const __m256i v = _mm256_loadu_si256(
                        (const __m256i *)(kb + ql_off + 64 * (8 * h + i) + 32 * hr));
                    c[k] = _mm256_and_si256(j ? _mm256_srli_epi16(v, 2 * j) : v, m3);
                    if (q3) { // bit 4h + j of hmask line i, moved to bit 2
                        const __m256i hm =
                            _mm256_loadu_si256((const __m256i *)(kb + qh_off + 64 * i + 32 * hr));
                        const int sh = 4 * h + j;
                        const __m256i hb = sh >= 2   ? _mm256_srli_epi16(hm, sh - 2)
                                           : sh == 1 ? _mm256_slli_epi16(hm, 1)
                                                     : _mm256_slli_epi16(hm, 2);
                        c[k] = _mm256_or_si256(c[k], _mm256_and_si256(hb, b2));
                    }
                }
#pragma GCC unroll 16
                for (int t = 0; t < T; t++) {
                    const nuri_block_q8_K *xb =
                        (const nuri_block_q8_K *)(x + (size_t)t * x_stride) + b;
                    const int8_t *a = xb->qs + 32 * s + 16 * e;
                    __m256i sum = _mm256_maddubs_epi16(c[0], bcast32(a));
#pragma GCC unroll 4
                    for (int k = 1; k < 4; k++)
                        sum = hold(
                            _mm256_add_epi16(sum, _mm256_maddubs_epi16(c[k], bcast32(a + 4 * k))));
                    f[t] = hold(_mm256_add_epi32(f[t], _mm256_madd_epi16(sum, sc2)));
                }
            }
        }
        const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(kb + 16 * hr)));
#pragma GCC unroll 16
        for (int t = 0; t < T; t++) {
            const nuri_block_q8_K *xb = (const nuri_block_q8_K *)(x + (size_t)t * x_stride) + b;
            // sum_j m_j * bsum_j (Q2_K: the mins, the high nibbles; Q3_K: the scales, for the - 4)
            __m256i m = _mm256_setzero_si256();
#pragma GCC unroll 8
            for (int p = 0; p < 8; p++) {
                const __m128i raw =
                    _mm_loadu_si128((const __m128i *)(kb + sc_off + 32 * p + 16 * hr));
                const __m256i mp = q3 ? _mm256_cvtepi8_epi16(raw)
                                      : _mm256_srli_epi16(_mm256_cvtepu8_epi16(raw), 4);
                m = _mm256_add_epi32(
                    m, _mm256_madd_epi16(
                           mp, _mm256_set1_epi32(load32((const int8_t *)(xb->bsums + 2 * p)))));
            }
            const __m256 dx = _mm256_set1_ps(xb->d);
            if (q3) {
                const __m256i fi = _mm256_sub_epi32(f[t], _mm256_slli_epi32(m, 2));
                acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(fi), _mm256_mul_ps(dw, dx), acc[t]);
            } else {
                const __m256 dm =
                    _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(kb + 32 + 16 * hr)));
                acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(f[t]), _mm256_mul_ps(dw, dx), acc[t]);
                acc[t] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(m), _mm256_mul_ps(dm, dx), acc[t]);
            }
        }
    }
#pragma GCC unroll 16
    for (int t = 0; t < T; t++) store_rows(y + t * y_stride + 8 * hr, acc[t], rows);
}

/* ======================================================================================== */
/* Q6_K: per block f = sum over the 16 sub-blocks of float(isum_j) * sc_j in order, isum_j    */
/* over the codes minus 32 (corr = -32 * the sub-block's sum of x), acc = fma(f, d * d_x).     */
/* ======================================================================================== */

/* The code line i (4 codes of 8 rows, 0..63) of elements 128hh + 32q + 4i .. (i < 8) of a packed
 * Q6_K block, rows 8h .. 8h + 7 (pack.h). */
static inline __m256i q6_K_code(const uint8_t *kb, int h, int hh, int q, int i)
{
    const __m256i m4 = _mm256_set1_epi8(15), m3 = _mm256_set1_epi8(3);
    const __m256i l =
        _mm256_loadu_si256((const __m256i *)(kb + 288 + 64 * (16 * hh + 8 * (q & 1) + i) + 32 * h));
    const __m256i hb =
        _mm256_loadu_si256((const __m256i *)(kb + 2336 + 64 * (8 * hh + i) + 32 * h));
    const __m256i nib =
        q < 2 ? _mm256_and_si256(l, m4) : _mm256_and_si256(_mm256_srli_epi16(l, 4), m4);
    const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(hb, 2 * q), m3);
    return _mm256_or_si256(nib, _mm256_slli_epi16(hi, 4));
}

static inline __attribute__((always_inline)) void
q6_K_half(const int T, int64_t nb, const uint8_t *grp, int h, const uint8_t *x, size_t x_stride,
          const float *da, const int32_t *corr, int64_t ts, float *y, int64_t y_stride, int rows)
{
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[4];
#pragma GCC unroll 16
    for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *kb = grp + b * NURI_PACK_Q6_K_BYTES;
        for (int off = 0; off < NURI_PACK_Q6_K_BYTES; off += 64)
            _mm_prefetch((const char *)kb + 3 * NURI_PACK_Q6_K_BYTES + off, _MM_HINT_T1);
        __m256 f[4];
#pragma GCC unroll 16
        for (int t = 0; t < T; t++) f[t] = _mm256_setzero_ps();
#pragma GCC unroll 16
        for (int j = 0; j < 16; j++) { // sub-block j: code lines 4 (j % 2) + k of (g = j / 2)
            const int g = j / 2;
            const __m256 scf = _mm256_cvtepi32_ps(
                _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(kb + 32 + 16 * j + 8 * h))));
            __m256i s[4];
#pragma GCC unroll 16
            for (int t = 0; t < T; t++) s[t] = _mm256_set1_epi32(corr[(t * ts + b) * 16 + j]);
#pragma GCC unroll 16
            for (int k = 0; k < 4; k += 2) {
                const int i = 4 * (j % 2) + k;
                const __m256i c0 = q6_K_code(kb, h, g / 4, g % 4, i);
                const __m256i c1 = q6_K_code(kb, h, g / 4, g % 4, i + 1);
#pragma GCC unroll 16
                for (int t = 0; t < T; t++) {
                    const nuri_block_q8_K *xb =
                        (const nuri_block_q8_K *)(x + (size_t)t * x_stride) + b;
                    const int8_t *a = xb->qs + 32 * g + 4 * i;
                    const __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(c0, bcast32(a)),
                                                       _mm256_maddubs_epi16(c1, bcast32(a + 4)));
                    s[t] = hold(_mm256_add_epi32(s[t], _mm256_madd_epi16(p, ones)));
                }
            }
#pragma GCC unroll 16
            for (int t = 0; t < T; t++) f[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[t]), scf, f[t]);
        }
        const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(kb + 16 * h)));
#pragma GCC unroll 16
        for (int t = 0; t < T; t++)
            acc[t] =
                _mm256_fmadd_ps(f[t], _mm256_mul_ps(dw, _mm256_set1_ps(da[t * ts + b])), acc[t]);
    }
#pragma GCC unroll 16
    for (int t = 0; t < T; t++) store_rows(y + t * y_stride + 8 * h, acc[t], rows);
}

enum { A2_Q4_K, A2_Q5_K, A2_Q6_K, A2_IQ4_XS, A2_Q3_K, A2_Q2_K }; // the 256-element kinds

static inline int a2_kq_kind(uint32_t type)
{
    return type == NURI_TYPE_Q5_K     ? A2_Q5_K
           : type == NURI_TYPE_Q6_K   ? A2_Q6_K
           : type == NURI_TYPE_IQ4_XS ? A2_IQ4_XS
           : type == NURI_TYPE_Q3_K   ? A2_Q3_K
           : type == NURI_TYPE_Q2_K   ? A2_Q2_K
                                      : A2_Q4_K;
}

#define KQ_T(T)                                                                                    \
    (kind == A2_Q6_K ? q6_K_half(T, nb, grp, h, xt, x_stride, da + t * ts,                         \
                                 (const int32_t *)aux + t * ts * 16, ts, yt, y_stride, rows)       \
     : kind == A2_IQ4_XS                                                                           \
         ? iq4_xs_half(T, nb, grp, h, xt, x_stride, da + t * ts, ts, yt, y_stride, rows)           \
     : kind == A2_Q3_K ? q23_half(T, 1, nb, grp, h, xt, x_stride, yt, y_stride, rows)              \
     : kind == A2_Q2_K ? q23_half(T, 0, nb, grp, h, xt, x_stride, yt, y_stride, rows)              \
     : kind == A2_Q5_K ? q4_K_half(T, 1, nb, grp, h, xt, x_stride, da + t * ts,                    \
                                   (const float *)aux + t * ts * 8, ts, yt, y_stride, rows)        \
                       : q4_K_half(T, 0, nb, grp, h, xt, x_stride, da + t * ts,                    \
                                   (const float *)aux + t * ts * 8, ts, yt, y_stride, rows))

static __attribute__((noinline)) void kq_tokens(int kind, int64_t nb, const uint8_t *grp, int h,
                                                const uint8_t *x, size_t x_stride, int64_t n_t,
                                                const float *da, const void *aux, int64_t ts,
                                                float *y, int64_t y_stride, int rows)
{
    int32_t pos[NURI_PACK_MAX_N / NURI_QK_K * 8]; // iq4_xs_half8's weight-only term
    if (kind == A2_IQ4_XS && n_t >= 8) iq4_xs_pos(nb, grp, h, pos);
    for (int64_t t = 0; t < n_t;) {
        const int64_t left = n_t - t;
        const uint8_t *xt = x + (size_t)t * x_stride;
        float *yt = y + t * y_stride;
        // Q4_K's tile is 4 tokens (acc, f, s: 12 registers), IQ4_XS's 8 (iq4_xs_half8); Q5_K's
        // 5th bits and Q6_K's two codes and the scale leave room for 2
        const int T = left >= 8 && kind == A2_IQ4_XS                        ? 8
                      : left >= 4 && (kind == A2_Q4_K || kind == A2_IQ4_XS) ? 4
                      : left >= 2                                           ? 2
                                                                            : 1;
        if (T == 8 && t == 0)
            iq4_xs_half8(1, nb, grp, h, xt, x_stride, da + t * ts, ts, pos, yt, y_stride, rows);
        else if (T == 8)
            iq4_xs_half8(0, nb, grp, h, xt, x_stride, da + t * ts, ts, pos, yt, y_stride, rows);
        else if (T == 4 && kind == A2_Q4_K)
            q4_K_half(4, 0, nb, grp, h, xt, x_stride, da + t * ts, (const float *)aux + t * ts * 8,
                      ts, yt, y_stride, rows);
        else if (T == 4)
            iq4_xs_half(4, nb, grp, h, xt, x_stride, da + t * ts, ts, yt, y_stride, rows);
        else if (T == 2)
            KQ_T(2);
        else
            KQ_T(1);
        t += T;
    }
}

/* ======================================================================================== */
/* F16: line k holds element 2k of the 16 rows as F16, then element 2k + 1 (pack.h); each     */
/* output is one F32 chain of FMAs over the elements in order, as pack_bf16_avx512.c's F16.   */
/* BF16: line k holds elements 2k, 2k + 1 of row r at bytes 4r .. 4r + 3; both widen exactly  */
/* (a BF16 is the top half of its F32), and each output is one chain of FMAs, 2k + 1 before  */
/* 2k as vdpbf16ps adds them (every product of two BF16 values is exact in F32).              */
/* ======================================================================================== */

/* G row groups (both halves; gbytes apart; rr[g] rows in group g) x T tokens over all n
 * elements. x: F32 rows (x_stride bytes apart) when f32, else the type's own rows (F16 or BF16),
 * widened element by element (exact: the same bits). Two groups only for a single token: there
 * each output's chain (two dependent FMAs per line) waits on the FMA latency, and four chains
 * side by side keep the loads coming; every output's chain is the same whatever the tile. With
 * the prefetch 4 KiB ahead (16 lines before), on Zen 4 with two threads: the 1B F16 file decodes
 * 13.5-14.0 -> 21-22 tok/s, BF16 14.8 -> 22, F16 prompts +10% (32 and 96 lines were slower). */
static inline __attribute__((always_inline)) void
f16_tile(const int G, const int T, const int bf16, const int f32, int64_t n, const uint8_t *grp,
         int64_t gbytes, const uint8_t *x, size_t x_stride, float *y, int64_t y_stride,
         const int *rr)
{
    const __m256i top = _mm256_set1_epi32((int)0xFFFF0000u);
    __m256 acc[2][2][4];
#pragma GCC unroll 16
    for (int g = 0; g < G; g++)
#pragma GCC unroll 16
        for (int t = 0; t < T; t++) acc[g][0][t] = acc[g][1][t] = _mm256_setzero_ps();
    for (int64_t k = 0; k < n / 2; k++) {
        __m256 lo[2][2], hi[2][2];
#pragma GCC unroll 2
        for (int g = 0; g < G; g++) {
            const uint8_t *line = grp + g * gbytes + 64 * k;
            _mm_prefetch((const char *)line + 64 * A2_F16_PF, _MM_HINT_T0);
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++) {
                if (bf16) { // rows 8h .. 8h + 7: each 32-bit lane is a row's (2k, 2k + 1) pair
                    const __m256i v = _mm256_loadu_si256((const __m256i *)(line + 32 * h));
                    lo[g][h] = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
                    hi[g][h] = _mm256_castsi256_ps(_mm256_and_si256(v, top));
                } else {
                    lo[g][h] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(line + 16 * h)));
                    hi[g][h] =
                        _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(line + 32 + 16 * h)));
                }
            }
        }
#pragma GCC unroll 16
        for (int t = 0; t < T; t++) {
            __m256 b0, b1;
            if (f32) {
                const float *xf = (const float *)(x + (size_t)t * x_stride) + 2 * k;
                b0 = _mm256_set1_ps(xf[0]);
                b1 = _mm256_set1_ps(xf[1]);
            } else if (bf16) {
                const uint16_t *xh = (const uint16_t *)(x + (size_t)t * x_stride) + 2 * k;
                b0 = _mm256_castsi256_ps(_mm256_set1_epi32((int)((uint32_t)xh[0] << 16)));
                b1 = _mm256_castsi256_ps(_mm256_set1_epi32((int)((uint32_t)xh[1] << 16)));
            } else {
                const uint16_t *xh = (const uint16_t *)(x + (size_t)t * x_stride) + 2 * k;
                b0 = _mm256_set1_ps(_cvtsh_ss(xh[0]));
                b1 = _mm256_set1_ps(_cvtsh_ss(xh[1]));
            }
#pragma GCC unroll 2
            for (int g = 0; g < G; g++)
#pragma GCC unroll 2
                for (int h = 0; h < 2; h++) {
                    if (bf16) {
                        acc[g][h][t] = _mm256_fmadd_ps(hi[g][h], b1, acc[g][h][t]);
                        acc[g][h][t] = _mm256_fmadd_ps(lo[g][h], b0, acc[g][h][t]);
                    } else {
                        acc[g][h][t] = _mm256_fmadd_ps(lo[g][h], b0, acc[g][h][t]);
                        acc[g][h][t] = _mm256_fmadd_ps(hi[g][h], b1, acc[g][h][t]);
                    }
                }
        }
    }
#pragma GCC unroll 2
    for (int g = 0; g < G; g++)
#pragma GCC unroll 16
        for (int t = 0; t < T; t++)
            for (int h = 0; h < 2 && 8 * h < rr[g]; h++)
                store_rows(y + t * y_stride + 16 * g + 8 * h, acc[g][h][t],
                           rr[g] - 8 * h < 8 ? rr[g] - 8 * h : 8);
}

#define F16_T(G, T, BF16)                                                                          \
    (f32 ? f16_tile(G, T, BF16, 1, n, grp, gbytes, xt, x_stride, yt, y_stride, rr)                 \
         : f16_tile(G, T, BF16, 0, n, grp, gbytes, xt, x_stride, yt, y_stride, rr))

/* G (1, or 2 for a single token) row groups from grp, gbytes apart, x T tokens. */
static __attribute__((noinline)) void f16_tokens(int bf16, int f32, int G, int64_t n,
                                                 const uint8_t *grp, int64_t gbytes,
                                                 const uint8_t *x, size_t x_stride, int64_t n_t,
                                                 float *y, int64_t y_stride, const int *rr)
{
    if (G == 2) { // n_t == 1
        const uint8_t *xt = x;
        float *yt = y;
        bf16 ? F16_T(2, 1, 1) : F16_T(2, 1, 0);
        return;
    }
    for (int64_t t = 0; t < n_t;) {
        const int64_t left = n_t - t;
        const uint8_t *xt = x + (size_t)t * x_stride;
        float *yt = y + t * y_stride;
        const int T = left >= 4 ? 4 : left >= 2 ? 2 : 1;
        if (T == 4)
            bf16 ? F16_T(1, 4, 1) : F16_T(1, 4, 0);
        else if (T == 2)
            bf16 ? F16_T(1, 2, 1) : F16_T(1, 2, 0);
        else
            bf16 ? F16_T(1, 1, 1) : F16_T(1, 1, 0);
        t += T;
    }
}

/* F16 or BF16 rows [0, n_t) of x widened to F32 rows of n floats (exact). */
static void f16_widen(int bf16, const uint8_t *x, size_t x_stride, int64_t n_t, int64_t n,
                      float *out)
{
    for (int64_t t = 0; t < n_t; t++) {
        const uint16_t *h = (const uint16_t *)(x + (size_t)t * x_stride);
        float *o = out + t * n;
        int64_t i = 0;
        for (; i + 8 <= n; i += 8) {
            const __m128i v = _mm_loadu_si128((const __m128i *)(h + i));
            _mm256_storeu_ps(
                o + i, bf16 ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16))
                            : _mm256_cvtph_ps(v));
        }
        for (; i < n; i++) o[i] = bf16 ? nuri_bf16_to_f32(h[i]) : _cvtsh_ss(h[i]);
    }
}

/* ======================================================================================== */
/* The driver: the work items of pack_avx512.c (the same chunks of tokens and runs of row     */
/* groups, so nuri_gemm_packed_items counts the same), the tables of a chunk, then row groups. */
/* ======================================================================================== */

enum { A2_RUN_MANY = 2, A2_RUN_FEW = 8 }; // row groups per item, 16+ tokens or fewer

static int is_kq(uint32_t type)
{
    return type == NURI_TYPE_Q4_K || type == NURI_TYPE_Q6_K || type == NURI_TYPE_Q5_K ||
           type == NURI_TYPE_IQ4_XS || type == NURI_TYPE_Q3_K || type == NURI_TYPE_Q2_K;
}

/* Tokens per chunk: as pack_avx512.c's chunk_tokens (which also budgets for the AMX panel). */
static int64_t chunk_tokens(uint32_t type, int64_t nb)
{
    int64_t per = 40;
    if (type == NURI_TYPE_Q4_K) per = 4 + 32 + 256;
    if (type == NURI_TYPE_Q6_K) per = 4 + 64 + 256;
    if (type == NURI_TYPE_IQ4_XS || type == NURI_TYPE_Q5_K || type == NURI_TYPE_Q3_K ||
        type == NURI_TYPE_Q2_K)
        per = 4 + 32;
    if (type == NURI_TYPE_F16 || type == NURI_TYPE_BF16) per = 128; // x widened to F32
    int64_t tt = A2_CHUNK / (nb * per);
    if (tt > A2_TT_MAX) tt = A2_TT_MAX;
    if (tt > 16) tt &= ~(int64_t)15;
    return tt;
}

long kernels_packed_items_avx2(uint32_t type, int64_t n, int64_t n_out, int64_t n_t);
long kernels_packed_items_avx2(uint32_t type, int64_t n, int64_t n_out, int64_t n_t)
{
    const int64_t tt = chunk_tokens(type, n / (is_kq(type) ? NURI_QK_K : NURI_QK));
    const int64_t ng = (n_out + 15) / 16, run = n_t >= 16 ? A2_RUN_MANY : A2_RUN_FEW;
    return (long)(((n_t + tt - 1) / tt) * ((ng + run - 1) / run));
}

/* Row groups [g0, g1) for all tokens, or the items of sh (then g0, g1 are unused). */
void kernels_packed_gemm_avx2(uint32_t type, int64_t n, const void *wp, int64_t n_out, int64_t g0,
                              int64_t g1, const void *vx, size_t x_stride, int64_t n_t, float *y,
                              int64_t y_stride, const nuri_share *sh);
void kernels_packed_gemm_avx2(uint32_t type, int64_t n, const void *wp, int64_t n_out, int64_t g0,
                              int64_t g1, const void *vx, size_t x_stride, int64_t n_t, float *y,
                              int64_t y_stride, const nuri_share *sh)
{
    const uint8_t *x = vx;
    const int kq = is_kq(type), kqk = a2_kq_kind(type), kind = a2_kind(type);
    const int bf16 = type == NURI_TYPE_BF16, f16 = type == NURI_TYPE_F16 || bf16;
    const int64_t nb = n / (kq ? NURI_QK_K : NURI_QK);
    const int64_t gbytes = nb * (type == NURI_TYPE_Q4_K     ? NURI_PACK_Q4_K_BYTES
                                 : type == NURI_TYPE_Q5_K   ? NURI_PACK_Q5_K_BYTES
                                 : type == NURI_TYPE_Q6_K   ? NURI_PACK_Q6_K_BYTES
                                 : type == NURI_TYPE_IQ4_XS ? NURI_PACK_IQ4_XS_BYTES
                                 : type == NURI_TYPE_Q3_K   ? NURI_PACK_Q3_K_BYTES
                                 : type == NURI_TYPE_Q2_K   ? NURI_PACK_Q2_K_BYTES
                                 : type == NURI_TYPE_Q8_0   ? 544
                                 : type == NURI_TYPE_MXFP4  ? 320
                                 : f16                      ? 1024
                                                            : 288);
    const int64_t tt = chunk_tokens(type, nb), ng = (n_out + 15) / 16;
    const int64_t run = n_t >= 16 ? A2_RUN_MANY : A2_RUN_FEW, n_run = (ng + run - 1) / run;
    const int64_t n_tc = (n_t + tt - 1) / tt;
    uint8_t *buf = kernels_thread_scratch(KERNELS_SCRATCH_PACK, A2_BUF);
    // no scratch (out of memory): one token at a time with its tables on the stack, the same
    // arithmetic
    float da1[NURI_PACK_MAX_N / NURI_QK];
    int32_t aux1[NURI_PACK_MAX_N / NURI_QK_K * 16];
    // per token and block: d as a float, then Q4_0's correction, Q4_K's 8 sums as floats or
    // Q6_K's 16 corrections
    float *da = buf ? (float *)buf : da1;
    int32_t *aux = buf ? (int32_t *)(buf + (size_t)(tt * nb * 4)) : aux1;
    const int64_t step = buf ? tt : 1;
    int64_t have = -1, next_tc = 0;
    for (;;) {
        int64_t tc, ga, gb;
        if (sh) {
            const long k = nuri_share_take(sh);
            if (k < 0) break;
            tc = k / n_run;
            ga = k % n_run * run;
            gb = ga + run < ng ? ga + run : ng;
        } else {
            if (next_tc >= n_tc || g0 >= g1) break;
            tc = next_tc++;
            ga = g0;
            gb = g1;
        }
        pack_item_warm((const uint8_t *)wp + ga * gbytes, (gb - ga) * gbytes);
        for (int64_t t0 = tc * tt; t0 < n_t && t0 < (tc + 1) * tt; t0 += step) {
            const int64_t left = (tc + 1) * tt < n_t ? (tc + 1) * tt - t0 : n_t - t0;
            const int64_t nt = left < step ? left : step;
            const uint8_t *xc = x + (size_t)t0 * x_stride;
            if (f16) { // x widened once per chunk (exact); without scratch, element by element
                if (buf && tc != have) f16_widen(bf16, xc, x_stride, nt, n, (float *)buf);
                have = tc;
                for (int64_t g = ga; g < gb;) {
                    const int G = nt == 1 && gb - g >= 2 ? 2 : 1;
                    int rr[2];
                    for (int i = 0; i < G; i++)
                        rr[i] = (int)(n_out - 16 * (g + i) < 16 ? n_out - 16 * (g + i) : 16);
                    f16_tokens(bf16, buf != NULL, G, n, (const uint8_t *)wp + g * gbytes, gbytes,
                               buf ? buf : xc, buf ? (size_t)n * 4 : x_stride, nt,
                               y + t0 * y_stride + 16 * g, y_stride, rr);
                    g += G;
                }
                continue;
            }
            if (!buf || tc != have) {
                if (!kq)
                    q_tables(kind != A2_Q4_0, xc, x_stride, nt, nb, da, aux);
                else if (kqk == A2_Q6_K)
                    pack_q6_K_tables(xc, x_stride, nt, nb, da, aux);
                else if (kqk == A2_IQ4_XS)
                    iq4_xs_tables(xc, x_stride, nt, nb, da);
                else if (kqk == A2_Q4_K || kqk == A2_Q5_K)
                    pack_q4_K_tables(xc, x_stride, nt, nb, da, (float *)aux);
                // Q3_K, Q2_K: no tables, a token's Q8_K row has all they need
                have = tc;
            }
            if (nt == 1 && !kq) { // decode: row groups side by side
                for (int64_t g = ga; g < gb;) {
                    const uint8_t *grp = (const uint8_t *)wp + g * gbytes;
                    const int G = gb - g >= A2_DEC_G ? A2_DEC_G : 1;
                    const int64_t rl = n_out - 16 * (g + G - 1);
                    const int rr = rl < 16 ? (int)rl : 16;
                    float *yg = y + t0 * y_stride + 16 * g;
#define DEC_K(G_)                                                                                  \
    (kind == A2_Q4_0     ? q_dec(G_, A2_Q4_0, nb, grp, gbytes, xc, da, aux, yg, rr)                \
     : kind == A2_IQ4_NL ? q_dec(G_, A2_IQ4_NL, nb, grp, gbytes, xc, da, aux, yg, rr)              \
     : kind == A2_MXFP4  ? q_dec(G_, A2_MXFP4, nb, grp, gbytes, xc, da, aux, yg, rr)               \
                         : q_dec(G_, A2_Q8_0, nb, grp, gbytes, xc, da, aux, yg, rr))
                    if (G == 2)
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
                float *yg = y + t0 * y_stride + 16 * g;
                for (int h = 0; h < 2 && 8 * h < rr; h++) {
                    const int rows = (int)(rr - 8 * h < 8 ? rr - 8 * h : 8);
                    if (kq)
                        kq_tokens(kqk, nb, grp, h, xc, x_stride, nt, da, aux, nb, yg, y_stride,
                                  rows);
                    else
                        q_tokens(kind, nb, grp, h, xc, x_stride, nt, da, aux, nb, yg, y_stride,
                                 rows);
                }
            }
        }
    }
}
