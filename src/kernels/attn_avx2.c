/*
 * attn_avx2.c: the attention inner loops (attn_simd.h) on 8-float AVX2 vectors (+ FMA, F16C).
 */
#include <immintrin.h>

static inline float hsum256(__m256 v)
{
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

#define VF __m256
#define W 8
#define VZERO() _mm256_setzero_ps()
#define VLOAD(p) _mm256_loadu_ps(p)
#define VSTORE(p, v) _mm256_storeu_ps(p, v)
#define VSET1(x) _mm256_set1_ps(x)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VCVTPH(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
#define VCVTI8(p) _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(p))))
#define VMUL(a, b) _mm256_mul_ps(a, b)
#define VHSUM(v) hsum256(v)
#define VNONZERO(p)                                                                                \
    (uint32_t)                                                                                     \
        _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(p), _mm256_setzero_ps(), _CMP_NEQ_UQ))
#define VNIB(p, hi)                                                                                \
    _mm256_cvtepi32_ps(_mm256_sub_epi32(                                                           \
        _mm256_and_si256(                                                                          \
            _mm256_srli_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(p))),         \
                              4 * (hi)),                                                           \
            _mm256_set1_epi32(15)),                                                                \
        _mm256_set1_epi32(8)))
#include "kernels/attn_simd.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

/* scores_tq, NG queries at a time against all 32 rows of a transposed Q8_0 (Q4 = 0) or Q4_0
 * (Q4 = 1) block, into tile (NG x 32). Per group, a quarter of the rows' codes is one 32-byte
 * line. Q8_0: back to signed (xor 128), given the query code's sign and multiplied with its
 * magnitude (vpmaddubsw, whose pairs stay below 2 * 127 * 127: no saturation); Q4_0: the nibbles
 * (0..15) times the query's codes, less 8 times its block sum after. Summed per row (vpmaddwd):
 * exact integer sums, then the reference's float step, so the reference's bits. */
static inline __attribute__((always_inline)) void scores_tq_tile(const int Q4, const int NG,
                                                                 int32_t nb, const uint8_t *q8,
                                                                 const int32_t *qsum,
                                                                 const uint8_t *kt, float *tile)
{
    const size_t slice = (size_t)NURI_ATTN_TROWS * (Q4 ? 18 : 34);
    const __m256i bias = _mm256_set1_epi8((char)0x80), lo4 = _mm256_set1_epi8(15),
                  ones = _mm256_set1_epi16(1);
    __m256 sc[2][4];
#pragma GCC unroll 2
    for (int g = 0; g < NG; g++)
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) sc[g][r] = _mm256_setzero_ps();
    for (int32_t b = 0; b < nb; b++) {
        const uint8_t *sl = kt + (size_t)b * slice;
        __m256i acc[2][4];
#pragma GCC unroll 2
        for (int g = 0; g < NG; g++)
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++)
                acc[g][r] = _mm256_set1_epi32(Q4 ? -8 * qsum[g * nb + b] : 0);
        for (int t = 0; t < (Q4 ? 4 : 8); t++) {
            __m256i k[4], kh[4];
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++) {
                const __m256i l = _mm256_loadu_si256((const __m256i *)(sl + 64 + 128 * t + 32 * r));
                if (Q4) {
                    k[r] = _mm256_and_si256(l, lo4);
                    kh[r] = _mm256_and_si256(_mm256_srli_epi16(l, 4), lo4);
                } else {
                    k[r] = _mm256_xor_si256(l, bias);
                }
            }
#pragma GCC unroll 2
            for (int g = 0; g < NG; g++) {
                const uint8_t *qb = q8 + ((size_t)g * nb + b) * 34 + 2;
                int32_t q4;
                memcpy(&q4, qb + (Q4 ? 8 : 4) * t, 4);
                const __m256i qq = _mm256_set1_epi32(q4);
                if (Q4) {
                    memcpy(&q4, qb + 8 * t + 4, 4);
                    const __m256i qh = _mm256_set1_epi32(q4);
#pragma GCC unroll 4
                    for (int r = 0; r < 4; r++) // each pair at most 2 * 15 * 127: the sum fits too
                        acc[g][r] = _mm256_add_epi32(
                            acc[g][r],
                            _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(k[r], qq),
                                                               _mm256_maddubs_epi16(kh[r], qh)),
                                              ones));
                } else {
                    const __m256i qa = _mm256_abs_epi8(qq);
#pragma GCC unroll 4
                    for (int r = 0; r < 4; r++)
                        acc[g][r] = _mm256_add_epi32(
                            acc[g][r],
                            _mm256_madd_epi16(_mm256_maddubs_epi16(qa, _mm256_sign_epi8(k[r], qq)),
                                              ones));
                }
            }
        }
#pragma GCC unroll 2
        for (int g = 0; g < NG; g++) {
            uint16_t hq;
            memcpy(&hq, q8 + ((size_t)g * nb + b) * 34, 2);
            const __m256 dq = _mm256_set1_ps(nuri_f16_to_f32(hq));
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++) {
                const __m256 dk = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(sl + 16 * r)));
                sc[g][r] = _mm256_add_ps(
                    sc[g][r], _mm256_mul_ps(_mm256_mul_ps(dk, dq), _mm256_cvtepi32_ps(acc[g][r])));
            }
        }
    }
#pragma GCC unroll 2
    for (int g = 0; g < NG; g++)
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) _mm256_storeu_ps(tile + g * NURI_ATTN_TROWS + 8 * r, sc[g][r]);
}

static void avx2_scores_tq(uint32_t type, int32_t hd, int32_t G, const void *q8,
                           const int32_t *qsum, const uint8_t *kt, int32_t j0, int32_t n,
                           float scale, float *s, size_t s_stride)
{
    const int32_t nb = hd / 32;
    const bool q4 = type == NURI_TYPE_Q4_0;
    float tile[2 * NURI_ATTN_TROWS];
    for (int32_t g0 = 0; g0 < G; g0 += 2) {
        const int ng = G - g0 < 2 ? G - g0 : 2;
        const uint8_t *qg = (const uint8_t *)q8 + (size_t)g0 * nb * 34;
        const int32_t *sg = qsum + (size_t)g0 * nb;
        if (q4 && ng == 2)
            scores_tq_tile(1, 2, nb, qg, sg, kt, tile);
        else if (q4)
            scores_tq_tile(1, 1, nb, qg, sg, kt, tile);
        else if (ng == 2)
            scores_tq_tile(0, 2, nb, qg, sg, kt, tile);
        else
            scores_tq_tile(0, 1, nb, qg, sg, kt, tile);
        for (int g = 0; g < ng; g++)
            for (int32_t i = 0; i < n; i++)
                s[(size_t)(g0 + g) * s_stride + i] = tile[g * NURI_ATTN_TROWS + j0 + i] * scale;
    }
}

/* e^x for 8 floats: attn_avx512.c's exp512 step for step, so that softmax and SwiGLU give its
 * results bit for bit. Only its last step differs: without vscalefps, p * 2^n is p * 2^(n/2)
 * (exact: p is in [0.7, 1.42] and n / 2 in [-75, 64], so the product stays a normal float) times
 * 2^(n - n/2), one rounding of the same exact product, to a subnormal, 0 or inf as vscalefps
 * rounds it. */
static inline __m256 exp256(__m256 x)
{
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-104.0f)), _mm256_set1_ps(89.0f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187e-06f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256i ni = _mm256_cvtps_epi32(n); // -150 .. 128
    const __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
    const __m256i bias = _mm256_set1_epi32(127);
    const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

/* Lanes 0 .. k - 1 set (k may be <= 0 or >= 8), as a mask for maskload / maskstore / and. */
static inline __m256i lanes8(int32_t k)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* attn_avx512.c's softmax512 on two 8-float halves of each 16: the same maximum, the same double
 * sums lane for lane (lanes 0-7 and 8-15 of each 16, in four 4-double accumulators) reduced in
 * the order _mm512_reduce_add_pd takes, the same scaling and F16 rounding. */
static inline __attribute__((always_inline)) void softmax256(float *s, int32_t n, bool round)
{
    __m256 vmax = _mm256_set1_ps(-INFINITY);
    int32_t j = 0;
    for (; j + 8 <= n; j += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(s + j));
    float max = -INFINITY;
    for (; j < n; j++) max = s[j] > max ? s[j] : max;
    float lanes[8];
    _mm256_storeu_ps(lanes, vmax);
    for (int i = 0; i < 8; i++) max = lanes[i] > max ? lanes[i] : max;
    const __m256 vm = _mm256_set1_ps(max);
    __m256d sa = _mm256_setzero_pd(), sb = sa, sc = sa, sd = sa;
    for (j = 0; j < n; j += 16) {
        const __m256i m0 = lanes8(n - j), m1 = lanes8(n - j - 8);
        const __m256 e0 = _mm256_and_ps(_mm256_castsi256_ps(m0),
                                        exp256(_mm256_sub_ps(_mm256_maskload_ps(s + j, m0), vm)));
        const __m256 e1 = _mm256_and_ps(
            _mm256_castsi256_ps(m1), exp256(_mm256_sub_ps(_mm256_maskload_ps(s + j + 8, m1), vm)));
        _mm256_maskstore_ps(s + j, m0, e0);
        _mm256_maskstore_ps(s + j + 8, m1, e1);
        sa = _mm256_add_pd(sa, _mm256_cvtps_pd(_mm256_castps256_ps128(e0)));
        sb = _mm256_add_pd(sb, _mm256_cvtps_pd(_mm256_extractf128_ps(e0, 1)));
        sc = _mm256_add_pd(sc, _mm256_cvtps_pd(_mm256_castps256_ps128(e1)));
        sd = _mm256_add_pd(sd, _mm256_cvtps_pd(_mm256_extractf128_ps(e1, 1)));
    }
    const __m256d t = _mm256_add_pd(_mm256_add_pd(sb, sd), _mm256_add_pd(sa, sc));
    const __m128d h = _mm_add_pd(_mm256_extractf128_pd(t, 1), _mm256_castpd256_pd128(t));
    const __m256 inv =
        _mm256_set1_ps((float)(1.0 / (_mm_cvtsd_f64(h) + _mm_cvtsd_f64(_mm_unpackhi_pd(h, h)))));
    for (j = 0; j < n; j += 8) {
        const __m256i m = lanes8(n - j);
        const __m256 p = _mm256_mul_ps(_mm256_maskload_ps(s + j, m), inv);
        _mm256_maskstore_ps(
            s + j, m, round ? _mm256_cvtph_ps(_mm256_cvtps_ph(p, _MM_FROUND_TO_NEAREST_INT)) : p);
    }
}

static void avx2_softmax(float *s, int32_t n)
{
    softmax256(s, n, true);
}

static void avx2_softmax_f32(float *s, int32_t n)
{
    softmax256(s, n, false);
}

static void avx2_swiglu(float *g, const float *u, int64_t n)
{
    for (int64_t i = 0; i < n; i += 8) {
        const __m256i m = lanes8(n - i < 8 ? (int32_t)(n - i) : 8);
        const __m256 x = _mm256_maskload_ps(g + i, m);
        const __m256 e = exp256(_mm256_sub_ps(_mm256_setzero_ps(), x));
        const __m256 y = _mm256_mul_ps(_mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e)),
                                       _mm256_maskload_ps(u + i, m));
        _mm256_maskstore_ps(g + i, m, y);
    }
}

void kernels_attn_avx2_fill(nuri_attn_kernels *k);
void kernels_attn_avx2_fill(nuri_attn_kernels *k)
{
    k->softmax = avx2_softmax;
    k->swiglu = avx2_swiglu;
    k->softmax_f32 = avx2_softmax_f32;
    k->scores = simd_scores;
    k->scores_t = simd_scores_t;
    k->scores_tq = avx2_scores_tq;
    k->accum = simd_accum;
    k->accum_q = simd_accum_q;
}
