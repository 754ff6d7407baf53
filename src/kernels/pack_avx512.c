/*
 * pack_avx512.c: matrix products over packed (x16) Q4_0 / Q8_0 weights with AVX-512 VNNI, and the
 * driver that hands batches of 16 tokens to the AMX kernels (pack_amx.c) when they are available.
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
#include "kernels/pack.h"
#include "kernels/types.h"

#include <immintrin.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

enum {
    // per-thread scratch: [tables + AMX activation panel | AMX weight tiles | AMX results]
    PACK_CHUNK = 2 * 1024 * 1024,                        // tables (8 bytes) + panel (32) per block
    PACK_BUF = PACK_CHUNK + 16 * NURI_PACK_MAX_N + 4096, // + one row group's unpacked codes
    PACK_TT_MAX = 256,                                   // tokens per chunk at most
};

void kernels_amx_group(uint32_t type, int64_t nb, const uint8_t *grp, const uint8_t *panel,
                       int64_t n16, const float *da, int64_t ts, uint8_t *scratch, float *y,
                       int64_t y_stride, int rows);

static pthread_key_t buf_key;
static pthread_once_t buf_once = PTHREAD_ONCE_INIT;
static bool buf_key_ok;

static void buf_key_make(void)
{
    buf_key_ok = pthread_key_create(&buf_key, free) == 0;
}

/* The calling thread's scratch (allocated on its first call, freed when it exits), or NULL. */
static uint8_t *buf_get(void)
{
    pthread_once(&buf_once, buf_key_make);
    if (!buf_key_ok) return NULL;
    uint8_t *p = pthread_getspecific(buf_key);
    if (!p && (p = aligned_alloc(64, PACK_BUF)) && pthread_setspecific(buf_key, p) != 0) {
        free(p);
        p = NULL;
    }
    return p;
}

static inline int32_t load32(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* T tokens x one row group, all blocks. x: the first token's row; da, corr: its tables. */
static inline __attribute__((always_inline)) void
vnni_group(const int T, const int q4, int64_t nb, const uint8_t *grp, const uint8_t *x,
           size_t x_stride, const float *da, const int32_t *corr, int64_t ts, float *y,
           int64_t y_stride, __mmask16 rows)
{
    const uint16_t *dg = (const uint16_t *)grp;
    const uint8_t *qg = grp + nb * 32;
    const int64_t qb = q4 ? 256 : 512;
    const __m512i m4 = _mm512_set1_epi8(15), flip = _mm512_set1_epi8((char)0x80);
    __m512 acc[8];
    for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(dg + 16 * b)));
        const uint8_t *q = qg + b * qb;
        _mm_prefetch((const char *)q + 8 * qb, _MM_HINT_T0);
        _mm_prefetch((const char *)q + 8 * qb + 64, _MM_HINT_T0);
        __m512i w[8];
        if (q4) {
            for (int i = 0; i < 4; i++) {
                const __m512i v = _mm512_loadu_si512(q + 64 * i);
                w[i] = _mm512_and_si512(v, m4);
                w[4 + i] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
            }
        } else {
            for (int i = 0; i < 8; i++)
                w[i] = _mm512_xor_si512(_mm512_loadu_si512(q + 64 * i), flip);
        }
        for (int t = 0; t < T; t++) {
            const int8_t *a = (const int8_t *)(x + (size_t)t * x_stride) + b * 34 + 2;
            __m512i s0 = _mm512_set1_epi32(corr[t * ts + b]), s1 = _mm512_setzero_si512();
            for (int i = 0; i < 4; i++) {
                s0 = _mm512_dpbusd_epi32(s0, w[i], _mm512_set1_epi32(load32(a + 4 * i)));
                s1 = _mm512_dpbusd_epi32(s1, w[4 + i], _mm512_set1_epi32(load32(a + 16 + 4 * i)));
            }
            const __m512 ds = _mm512_mul_ps(dw, _mm512_set1_ps(da[t * ts + b]));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)), ds, acc[t]);
        }
    }
    for (int t = 0; t < T; t++) _mm512_mask_storeu_ps(y + t * y_stride, rows, acc[t]);
}

#define VNNI_T(Q4, T)                                                                              \
    vnni_group(T, Q4, nb, grp, xt, x_stride, da + t * ts, corr + t * ts, ts, yt, y_stride, rows)

static void vnni_tokens(int q4, int64_t nb, const uint8_t *grp, const uint8_t *x, size_t x_stride,
                        int64_t n_t, const float *da, const int32_t *corr, int64_t ts, float *y,
                        int64_t y_stride, __mmask16 rows)
{
    for (int64_t t = 0; t < n_t;) {
        const int64_t left = n_t - t;
        const uint8_t *xt = x + (size_t)t * x_stride;
        float *yt = y + t * y_stride;
        if (left >= 8) {
            q4 ? VNNI_T(1, 8) : VNNI_T(0, 8);
            t += 8;
        } else if (left >= 4) {
            q4 ? VNNI_T(1, 4) : VNNI_T(0, 4);
            t += 4;
        } else if (left >= 2) {
            q4 ? VNNI_T(1, 2) : VNNI_T(0, 2);
            t += 2;
        } else {
            q4 ? VNNI_T(1, 1) : VNNI_T(0, 1);
            t += 1;
        }
    }
}

/* The AMX A tiles of 16-token groups: panel[(s * nb + b) * 512 + 32 * t] = the 32 codes of token
 * 16 s + t, block b, so that each tile is 512 contiguous bytes. */
static void make_panel(const uint8_t *x, size_t x_stride, int64_t n16, int64_t nb, uint8_t *panel)
{
    for (int64_t s = 0; s < n16; s++)
        for (int t = 0; t < 16; t++) {
            const nuri_block_q8_0 *blk =
                (const nuri_block_q8_0 *)(x + (size_t)(16 * s + t) * x_stride);
            for (int64_t b = 0; b < nb; b++)
                _mm256_store_si256((__m256i *)(panel + (s * nb + b) * 512 + 32 * t),
                                   _mm256_loadu_si256((const __m256i *)blk[b].qs));
        }
}

/* da[t][b] = F32(x[t].d[b]); corr[t][b] = -bias * sum of x[t]'s codes in block b. */
static void make_tables(const uint8_t *x, size_t x_stride, int64_t n_t, int64_t nb, int32_t bias,
                        float *da, int32_t *corr)
{
    for (int64_t t = 0; t < n_t; t++) {
        const nuri_block_q8_0 *blk = (const nuri_block_q8_0 *)(x + (size_t)t * x_stride);
        for (int64_t b = 0; b < nb; b++) {
            da[t * nb + b] = _cvtsh_ss(blk[b].d);
            const __m256i q = _mm256_loadu_si256((const __m256i *)blk[b].qs);
            const __m512i w = _mm512_cvtepi8_epi16(q);
            corr[t * nb + b] =
                -bias * _mm512_reduce_add_epi32(_mm512_madd_epi16(w, _mm512_set1_epi16(1)));
        }
    }
}

void kernels_packed_gemm_avx512(uint32_t type, int64_t n, const void *wp, int64_t n_out, int64_t g0,
                                int64_t g1, const void *vx, size_t x_stride, int64_t n_t, float *y,
                                int64_t y_stride, bool use_amx);
void kernels_packed_gemm_avx512(uint32_t type, int64_t n, const void *wp, int64_t n_out, int64_t g0,
                                int64_t g1, const void *vx, size_t x_stride, int64_t n_t, float *y,
                                int64_t y_stride, bool use_amx)
{
    const int q4 = type == NURI_TYPE_Q4_0;
    const int64_t nb = n / NURI_QK, gbytes = nb * (q4 ? 288 : 544);
    const uint8_t *x = vx;
    uint8_t *buf = buf_get();
    // tokens per chunk: as many as the tables hold (at least 32: rows are at most
    // NURI_PACK_MAX_N elements)
    int64_t tt = PACK_CHUNK / (nb * 40);
    if (tt > PACK_TT_MAX) tt = PACK_TT_MAX;
    if (tt > 16) tt &= ~(int64_t)15;
    if (!buf) {
        // no scratch (out of memory): one token at a time with its tables on the stack (rows are
        // at most NURI_PACK_MAX_N elements), the same arithmetic
        float da1[NURI_PACK_MAX_N / NURI_QK];
        int32_t corr1[NURI_PACK_MAX_N / NURI_QK];
        for (int64_t t = 0; t < n_t; t++) {
            make_tables(x + (size_t)t * x_stride, x_stride, 1, nb, q4 ? 8 : 128, da1, corr1);
            for (int64_t g = g0; g < g1; g++) {
                const int64_t rr = n_out - 16 * g < 16 ? n_out - 16 * g : 16;
                vnni_tokens(q4, nb, (const uint8_t *)wp + g * gbytes, x + (size_t)t * x_stride,
                            x_stride, 1, da1, corr1, nb, y + t * y_stride + 16 * g, y_stride,
                            (__mmask16)((1u << rr) - 1));
            }
        }
        return;
    }
    float *da = (float *)buf;
    int32_t *corr = (int32_t *)(buf + (size_t)(tt * nb * 4));
    uint8_t *panel = buf + (size_t)(tt * nb * 8);
    uint8_t *scratch = buf + PACK_CHUNK;
    for (int64_t t0 = 0; t0 < n_t; t0 += tt) {
        const int64_t nt = n_t - t0 < tt ? n_t - t0 : tt;
        const uint8_t *xc = x + (size_t)t0 * x_stride;
        make_tables(xc, x_stride, nt, nb, q4 ? 8 : 128, da, corr);
        const int64_t n16 = use_amx ? nt / 16 : 0;
        if (n16) make_panel(xc, x_stride, n16, nb, panel);
        for (int64_t g = g0; g < g1; g++) {
            const uint8_t *grp = (const uint8_t *)wp + g * gbytes;
            const int64_t rr = n_out - 16 * g < 16 ? n_out - 16 * g : 16;
            const __mmask16 rows = (__mmask16)((1u << rr) - 1);
            float *yg = y + t0 * y_stride + 16 * g;
            if (n16)
                kernels_amx_group(type, nb, grp, panel, n16, da, nb, scratch, yg, y_stride,
                                  (int)rr);
            vnni_tokens(q4, nb, grp, xc + (size_t)(16 * n16) * x_stride, x_stride, nt - 16 * n16,
                        da + 16 * n16 * nb, corr + 16 * n16 * nb, nb, yg + 16 * n16 * y_stride,
                        y_stride, rows);
        }
    }
}
