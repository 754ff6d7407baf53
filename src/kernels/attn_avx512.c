/*
 * attn_avx512.c: the attention inner loops (attn_simd.h) on 16-float AVX-512 vectors.
 */
#define VF __m512
#define W 16
#define VZERO() _mm512_setzero_ps()
#define VLOAD(p) _mm512_loadu_ps(p)
#define VSTORE(p, v) _mm512_storeu_ps(p, v)
#define VSET1(x) _mm512_set1_ps(x)
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VCVTPH(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
#define VCVTI8(p) _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(p))))
#define VMUL(a, b) _mm512_mul_ps(a, b)
#define VHSUM(v) _mm512_reduce_add_ps(v)
#define VNONZERO(p)                                                                                \
    (uint32_t) _mm512_cmp_ps_mask(_mm512_loadu_ps(p), _mm512_setzero_ps(), _CMP_NEQ_UQ)
#define VNIB(p, hi)                                                                                \
    _mm512_cvtepi32_ps(_mm512_sub_epi32(                                                           \
        _mm512_and_si512(                                                                          \
            _mm512_srli_epi32(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p))),         \
                              4 * (hi)),                                                           \
            _mm512_set1_epi32(15)),                                                                \
        _mm512_set1_epi32(8)))
#include "kernels/attn_simd.h"

#include <math.h>
#include <string.h>

/* 16 vectors -> one vector of their 16 lane sums, by four levels of pairwise shuffles and adds
 * (every vector's lanes meet in the same tree, whatever its slot). The sums come out in
 * bit-reversed slot order: lane L holds the sum of v[bitrev4(L)]. */
static inline __m512 reduce16(__m512 v[16])
{
    static const int32_t idx[4][2][16] = {
        {{0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23},
         {8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31}},
        {{0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27},
         {4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31}},
        {{0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29},
         {2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31}},
        {{0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30},
         {1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31}},
    };
    int m = 16;
#pragma GCC unroll 4
    for (int l = 0; l < 4; l++) {
        const __m512i a = _mm512_loadu_si512(idx[l][0]), b = _mm512_loadu_si512(idx[l][1]);
        m /= 2;
#pragma GCC unroll 8
        for (int i = 0; i < m; i++)
            v[i] = _mm512_add_ps(_mm512_permutex2var_ps(v[2 * i], a, v[2 * i + 1]),
                                 _mm512_permutex2var_ps(v[2 * i], b, v[2 * i + 1]));
    }
    return v[0];
}

/* Scores 16 rows at a time: the rows are widened to F32 once (for all G queries), each query's 16
 * dot products stay as vectors of partial sums, and one reduce16 sums them into 16 lanes. NC is
 * the head size in vectors of 16 (a constant, so the query stays in registers). */
static inline __attribute__((always_inline)) void scores16(const int NC, int32_t G, const float *q,
                                                           const uint16_t *k, size_t k_stride,
                                                           int32_t n, float scale, float *s,
                                                           size_t s_stride)
{
    static const int rev[16] = {0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15};
    __attribute__((aligned(64))) float kf[16 * 16 * 8];
    const int hd = 16 * NC;
    for (int32_t j0 = 0; j0 < n; j0 += 16) {
        const int jn = n - j0 < 16 ? n - j0 : 16;
        for (int jj = 0; jj < 16; jj++)
            for (int c = 0; c < NC; c++)
                _mm512_store_ps(
                    kf + jj * hd + 16 * c,
                    jj < jn ? _mm512_cvtph_ps(_mm256_loadu_si256(
                                  (const __m256i *)(k + (size_t)(j0 + jj) * k_stride + 16 * c)))
                            : _mm512_setzero_ps());
        for (int32_t g = 0; g < G; g++) {
            __m512 qv[8];
#pragma GCC unroll 8
            for (int c = 0; c < NC; c++) qv[c] = _mm512_loadu_ps(q + (size_t)g * hd + 16 * c);
            __m512 v[16];
#pragma GCC unroll 16
            for (int jj = 0; jj < 16; jj++) {
                __m512 acc = _mm512_mul_ps(qv[0], _mm512_load_ps(kf + jj * hd));
#pragma GCC unroll 8
                for (int c = 1; c < NC; c++)
                    acc = _mm512_fmadd_ps(qv[c], _mm512_load_ps(kf + jj * hd + 16 * c), acc);
                v[rev[jj]] = acc;
            }
            const __m512 r = _mm512_mul_ps(reduce16(v), _mm512_set1_ps(scale));
            _mm512_mask_storeu_ps(s + (size_t)g * s_stride + j0, (__mmask16)((1u << jn) - 1), r);
        }
    }
}

static void avx512_scores(int32_t hd, int32_t G, const float *q, const uint16_t *k, size_t k_stride,
                          int32_t n, float scale, float *s, size_t s_stride)
{
    switch (hd) {
    case 64:
        scores16(4, G, q, k, k_stride, n, scale, s, s_stride);
        break;
    case 128:
        scores16(8, G, q, k, k_stride, n, scale, s, s_stride);
        break;
    default:
        simd_scores(hd, G, q, k, k_stride, n, scale, s, s_stride);
        break;
    }
}

/* scores_tq, NG queries at a time against all 32 rows of a transposed Q8_0 (Q4 = 0) or Q4_0
 * (Q4 = 1) block, into tile (NG x 32): per slice and group, each half of the rows' codes is one
 * 64-byte line (Q4_0: two, its low and high nibbles) that vpdpbusd multiplies with a broadcast of
 * each query's 4 codes; the integer sums start at -128 (Q4_0: -8) times the query's block sum,
 * then take the reference's float step. The integer sums are exact, so the bits are the
 * reference's. */
static inline __attribute__((always_inline)) void scores_tq_tile(const int Q4, const int NG,
                                                                 int32_t nb, const uint8_t *q8,
                                                                 const int32_t *qsum,
                                                                 const uint8_t *kt, float *tile)
{
    const size_t slice = (size_t)NURI_ATTN_TROWS * (Q4 ? 18 : 34);
    const __m512i lo4 = _mm512_set1_epi8(15);
    __m512 sc[4][2];
#pragma GCC unroll 4
    for (int g = 0; g < NG; g++) sc[g][0] = sc[g][1] = _mm512_setzero_ps();
    for (int32_t b = 0; b < nb; b++) {
        const uint8_t *sl = kt + (size_t)b * slice;
        __m512i acc[4][2];
#pragma GCC unroll 4
        for (int g = 0; g < NG; g++)
            acc[g][0] = acc[g][1] = _mm512_set1_epi32((Q4 ? -8 : -128) * qsum[g * nb + b]);
        for (int t = 0; t < (Q4 ? 4 : 8); t++) {
            __m512i k[2][2]; // [half of the rows][low / high nibbles]
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++) {
                const __m512i l = _mm512_loadu_si512(sl + 64 + 128 * t + 64 * h);
                if (Q4) {
                    k[h][0] = _mm512_and_si512(l, lo4);
                    k[h][1] = _mm512_and_si512(_mm512_srli_epi16(l, 4), lo4);
                } else {
                    k[h][0] = l;
                }
            }
#pragma GCC unroll 4
            for (int g = 0; g < NG; g++) {
                const uint8_t *qb = q8 + ((size_t)g * nb + b) * 34 + 2;
                int32_t q4;
                memcpy(&q4, qb + (Q4 ? 8 : 4) * t, 4);
                const __m512i qa = _mm512_set1_epi32(q4);
#pragma GCC unroll 2
                for (int h = 0; h < 2; h++) acc[g][h] = _mm512_dpbusd_epi32(acc[g][h], k[h][0], qa);
                if (Q4) {
                    memcpy(&q4, qb + 8 * t + 4, 4);
                    const __m512i qh = _mm512_set1_epi32(q4);
#pragma GCC unroll 2
                    for (int h = 0; h < 2; h++)
                        acc[g][h] = _mm512_dpbusd_epi32(acc[g][h], k[h][1], qh);
                }
            }
        }
        const __m512 dk0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)sl));
        const __m512 dk1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(sl + 32)));
#pragma GCC unroll 4
        for (int g = 0; g < NG; g++) {
            uint16_t hq;
            memcpy(&hq, q8 + ((size_t)g * nb + b) * 34, 2);
            const __m512 dq = _mm512_set1_ps(nuri_f16_to_f32(hq));
            sc[g][0] = _mm512_add_ps(
                sc[g][0], _mm512_mul_ps(_mm512_mul_ps(dk0, dq), _mm512_cvtepi32_ps(acc[g][0])));
            sc[g][1] = _mm512_add_ps(
                sc[g][1], _mm512_mul_ps(_mm512_mul_ps(dk1, dq), _mm512_cvtepi32_ps(acc[g][1])));
        }
    }
#pragma GCC unroll 4
    for (int g = 0; g < NG; g++) {
        _mm512_storeu_ps(tile + g * NURI_ATTN_TROWS, sc[g][0]);
        _mm512_storeu_ps(tile + g * NURI_ATTN_TROWS + 16, sc[g][1]);
    }
}

#define TQ_CASE(Q4, N)                                                                             \
    case N:                                                                                        \
        scores_tq_tile(Q4, N, nb, qg, sg, kt, tile);                                               \
        break
static void avx512_scores_tq(uint32_t type, int32_t hd, int32_t G, const void *q8,
                             const int32_t *qsum, const uint8_t *kt, int32_t j0, int32_t n,
                             float scale, float *s, size_t s_stride)
{
    const int32_t nb = hd / 32;
    float tile[4 * NURI_ATTN_TROWS];
    for (int32_t g0 = 0; g0 < G; g0 += 4) {
        const int ng = G - g0 < 4 ? G - g0 : 4;
        const uint8_t *qg = (const uint8_t *)q8 + (size_t)g0 * nb * 34;
        const int32_t *sg = qsum + (size_t)g0 * nb;
        if (type == NURI_TYPE_Q4_0)
            switch (ng) { // NG a constant in each case: the sums stay in registers
                TQ_CASE(1, 4);
                TQ_CASE(1, 3);
                TQ_CASE(1, 2);
                TQ_CASE(1, 1);
            }
        else
            switch (ng) {
                TQ_CASE(0, 4);
                TQ_CASE(0, 3);
                TQ_CASE(0, 2);
                TQ_CASE(0, 1);
            }
        for (int g = 0; g < ng; g++)
            for (int32_t i = 0; i < n; i++)
                s[(size_t)(g0 + g) * s_stride + i] = tile[g * NURI_ATTN_TROWS + j0 + i] * scale;
    }
}

/* e^x for 16 floats, within about 1 ulp of expf over the range softmax and SwiGLU use: x = n ln2 +
 * r with |r| <= ln2 / 2 (ln2 in two parts), e^r by its Taylor series to degree 7 (truncation below
 * 5e-9 relative), times 2^n by vscalefps (which underflows to 0 and overflows to inf cleanly). */
static inline __m512 exp512(__m512 x)
{
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-104.0f)), _mm512_set1_ps(89.0f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-06f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

static inline __attribute__((always_inline)) void softmax512(float *s, int32_t n, bool round)
{
    __m512 vmax = _mm512_set1_ps(-INFINITY);
    int32_t j = 0;
    for (; j + 16 <= n; j += 16) vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(s + j));
    if (j < n)
        vmax = _mm512_mask_max_ps(vmax, (__mmask16)((1u << (n - j)) - 1), vmax,
                                  _mm512_maskz_loadu_ps((__mmask16)((1u << (n - j)) - 1), s + j));
    const float max = _mm512_reduce_max_ps(vmax);
    const __m512 vm = _mm512_set1_ps(max);
    __m512d sum0 = _mm512_setzero_pd(), sum1 = _mm512_setzero_pd();
    for (j = 0; j < n; j += 16) {
        const __mmask16 m = n - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - j)) - 1);
        const __m512 e =
            _mm512_maskz_mov_ps(m, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, s + j), vm)));
        _mm512_mask_storeu_ps(s + j, m, e);
        sum0 = _mm512_add_pd(sum0, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
        sum1 = _mm512_add_pd(sum1, _mm512_cvtps_pd(_mm512_extractf32x8_ps(e, 1)));
    }
    const __m512 inv =
        _mm512_set1_ps((float)(1.0 / _mm512_reduce_add_pd(_mm512_add_pd(sum0, sum1))));
    for (j = 0; j < n; j += 16) {
        const __mmask16 m = n - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - j)) - 1);
        const __m512 p = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, s + j), inv);
        _mm512_mask_storeu_ps(
            s + j, m, round ? _mm512_cvtph_ps(_mm512_cvtps_ph(p, _MM_FROUND_TO_NEAREST_INT)) : p);
    }
}

static void avx512_softmax(float *s, int32_t n)
{
    softmax512(s, n, true);
}

static void avx512_softmax_f32(float *s, int32_t n)
{
    softmax512(s, n, false);
}

static void avx512_swiglu(float *g, const float *u, int64_t n)
{
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        const __m512 x = _mm512_maskz_loadu_ps(m, g + i);
        const __m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), x));
        const __m512 y = _mm512_mul_ps(_mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), e)),
                                       _mm512_maskz_loadu_ps(m, u + i));
        _mm512_mask_storeu_ps(g + i, m, y);
    }
}

void kernels_attn_avx512_fill(nuri_attn_kernels *k);
void kernels_attn_avx512_fill(nuri_attn_kernels *k)
{
    k->softmax = avx512_softmax;
    k->swiglu = avx512_swiglu;
    k->scores = avx512_scores;
    k->scores_t = simd_scores_t;
    k->scores_tq = avx512_scores_tq;
    k->accum = simd_accum;
    k->accum_q = simd_accum_q;
    k->softmax_f32 = avx512_softmax_f32;
}
