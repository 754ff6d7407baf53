/*
 * kernels_x86.h: the 256-bit x86 kernels, written once and compiled twice: by kernels_avx2.c
 * (AVX2 + FMA + F16C) and by kernels_avx512.c with KERNELS_VNNI defined, where the int8 dot
 * products use AVX-512 VNNI (vpdpbusd on 256-bit registers) instead of vpmaddubsw + vpmaddwd.
 *
 * Only included by those two files: every function is static, so each file gets its own copy.
 * Every kernel here has a scalar twin in kernels_ref.c and is tested against it. The activation
 * quantizers give the same bytes as the scalar ones (same float operations, same rounding).
 *
 * Integer dot products (the "unsigned x signed" trick): x86 multiplies bytes only as u8 * s8. For
 * signed x, sum(x*y) = sum(|x| * sign(y, x)). Unsigned weight codes (0..63) are used directly and
 * their zero point is subtracted afterwards with the Q8_K block sums (bsums) or per-block sums.
 * vpmaddubsw saturates at +-32767, so a u8 operand never exceeds 127 here (|x| <= 127, codes <=
 * 63).
 */
#ifndef NURI_KERNELS_X86_H
#define NURI_KERNELS_X86_H

#include "kernels/fp16.h"
#include "kernels/kernels_impl.h"

#include <immintrin.h>
#include <math.h>

static inline float fp16_load(uint16_t h)
{
    return _cvtsh_ss(h);
}

/* ---- int8 dot primitives: 32 bytes -> 8 x i32, each the sum of 4 adjacent products ---- */

/* acc + sum(u * s) with u unsigned (<= 127 without VNNI), s signed. */
static inline __m256i dot_us8_acc(__m256i acc, __m256i u, __m256i s)
{
#ifdef KERNELS_VNNI
    return _mm256_dpbusd_epi32(acc, u, s);
#else
    __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
    return _mm256_add_epi32(acc, p);
#endif
}

/* acc + sum(x * y), both signed (x, y in -127..127). */
static inline __m256i dot_ss8_acc(__m256i acc, __m256i x, __m256i y)
{
    return dot_us8_acc(acc, _mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
}

/* 16 x i16 products summed in pairs and multiplied by per-pair i16 scales -> 8 x i32. u <= 127.
 * (vpmaddubsw + vpmaddwd folds the scale in for free; this is faster than dpbusd + vpmulld.) */
static inline __m256i dot_us8_scaled(__m256i u, __m256i s, __m256i scale16)
{
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), scale16);
}

static inline float hsum_ps(__m256 v)
{
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
}

static inline int hsum_epi32(__m256i v)
{
    __m128i x = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    x = _mm_add_epi32(x, _mm_shuffle_epi32(x, 0x4e));
    x = _mm_add_epi32(x, _mm_shuffle_epi32(x, 0xb1));
    return _mm_cvtsi128_si32(x);
}

static inline __m256 hmax_abs_ps(__m256 v) // max |v| in every lane
{
    v = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v);
    v = _mm256_max_ps(v, _mm256_permute2f128_ps(v, v, 1));
    v = _mm256_max_ps(v, _mm256_shuffle_ps(v, v, 0x4e));
    v = _mm256_max_ps(v, _mm256_shuffle_ps(v, v, 0xb1));
    return v;
}

/* 16 bytes of nibbles -> 32 bytes: low nibbles in bytes 0..15, high nibbles in bytes 16..31. */
static inline __m256i nibbles_32(const uint8_t *p)
{
    __m128i q = _mm_loadu_si128((const __m128i *)p);
    __m256i v = _mm256_set_m128i(_mm_srli_epi16(q, 4), q);
    return _mm256_and_si256(v, _mm256_set1_epi8(15));
}

/* bit j of a 32-bit mask -> byte j = 0xFF (set) or 0x00. */
static inline __m256i bits_to_bytes(uint32_t bits)
{
    __m256i v = _mm256_set1_epi32((int)bits);
    const __m256i shuf = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2,
                                          2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    v = _mm256_shuffle_epi8(v, shuf); // each 128-bit lane holds the same 4 bytes
    const __m256i bit = _mm256_set1_epi64x(0x8040201008040201ll);
    return _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
}

/* 8 floats -> 8 int32, round half to even (same as nearbyintf under the default mode). */
static inline __m256i round_epi32(__m256 v)
{
    return _mm256_cvtps_epi32(_mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

/* 4 x (8 x i32) -> 32 x i8 in order (saturating; values are already in -127..127). */
static inline __m256i pack_32_i8(__m256i a, __m256i b, __m256i c, __m256i d)
{
    __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
    __m256i abcd = _mm256_packs_epi16(ab, cd);
    return _mm256_permutevar8x32_epi32(abcd, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* ======================================================================================== */
/* F32, F16, BF16                                                                            */
/* ======================================================================================== */

static void x86_f32_vec_dot(int64_t n, float *restrict s, const void *restrict vx,
                            const void *restrict vy)
{
    const float *x = vx, *y = vy;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), _mm256_loadu_ps(y + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), _mm256_loadu_ps(y + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
    float sum = hsum_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) sum += x[i] * y[i];
    *s = sum;
}

static inline __m256 load_f16x8(const uint16_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

static void x86_f16_vec_dot(int64_t n, float *restrict s, const void *restrict vx,
                            const void *restrict vy)
{
    const uint16_t *x = vx, *y = vy;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(load_f16x8(x + i), load_f16x8(y + i), a0);
        a1 = _mm256_fmadd_ps(load_f16x8(x + i + 8), load_f16x8(y + i + 8), a1);
        a2 = _mm256_fmadd_ps(load_f16x8(x + i + 16), load_f16x8(y + i + 16), a2);
        a3 = _mm256_fmadd_ps(load_f16x8(x + i + 24), load_f16x8(y + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(load_f16x8(x + i), load_f16x8(y + i), a0);
    float sum = hsum_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) sum += nuri_f16_to_f32(x[i]) * nuri_f16_to_f32(y[i]);
    *s = sum;
}

static void x86_f16_to_float(const void *restrict vx, float *restrict y, int64_t n)
{
    const uint16_t *x = vx;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, load_f16x8(x + i));
    for (; i < n; i++) y[i] = nuri_f16_to_f32(x[i]);
}

static void x86_f16_from_float(const float *restrict x, void *restrict vy, int64_t n)
{
    uint16_t *y = vy;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) y[i] = nuri_f32_to_f16(x[i]);
}

static inline __m256 load_bf16x8(const uint16_t *p)
{
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

static void x86_bf16_vec_dot(int64_t n, float *restrict s, const void *restrict vx,
                             const void *restrict vy)
{
    const uint16_t *x = vx, *y = vy;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(load_bf16x8(x + i), load_bf16x8(y + i), a0);
        a1 = _mm256_fmadd_ps(load_bf16x8(x + i + 8), load_bf16x8(y + i + 8), a1);
        a2 = _mm256_fmadd_ps(load_bf16x8(x + i + 16), load_bf16x8(y + i + 16), a2);
        a3 = _mm256_fmadd_ps(load_bf16x8(x + i + 24), load_bf16x8(y + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(load_bf16x8(x + i), load_bf16x8(y + i), a0);
    float sum = hsum_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) sum += nuri_bf16_to_f32(x[i]) * nuri_bf16_to_f32(y[i]);
    *s = sum;
}

static void x86_bf16_to_float(const void *restrict vx, float *restrict y, int64_t n)
{
    const uint16_t *x = vx;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, load_bf16x8(x + i));
    for (; i < n; i++) y[i] = nuri_bf16_to_f32(x[i]);
}

/* 8 floats -> 8 bf16 (round to nearest even; NaN -> quiet NaN), as nuri_f32_to_bf16. */
static inline __m128i f32x8_to_bf16(__m256 v)
{
    __m256i x = _mm256_castps_si256(v);
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_srli_epi32(
        _mm256_add_epi32(_mm256_add_epi32(x, _mm256_set1_epi32(0x7fff)), lsb), 16);
    __m256i nan = _mm256_or_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(0x40));
    __m256i is_nan = _mm256_cmpgt_epi32(_mm256_and_si256(x, _mm256_set1_epi32(0x7fffffff)),
                                        _mm256_set1_epi32(0x7f800000));
    r = _mm256_blendv_epi8(r, nan, is_nan);
    __m256i p = _mm256_packus_epi32(r, r); // lanes: r0..3 r0..3 | r4..7 r4..7
    p = _mm256_permute4x64_epi64(p, 0x08); // r0..3 r4..7 in the low 128 bits
    return _mm256_castsi256_si128(p);
}

static void x86_bf16_from_float(const float *restrict x, void *restrict vy, int64_t n)
{
    uint16_t *y = vy;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i), f32x8_to_bf16(_mm256_loadu_ps(x + i)));
    for (; i < n; i++) y[i] = nuri_f32_to_bf16(x[i]);
}

/* ======================================================================================== */
/* Activation quantizers (bit-identical with kernels_ref.c)                                   */
/* ======================================================================================== */

/* Quantizes 32 floats with multiplier id; returns the 32 int8 and (through *sum) their sum. */
static inline __m256i quant_32(const float *x, __m256 id, int *sum)
{
    __m256i q0 = round_epi32(_mm256_mul_ps(_mm256_loadu_ps(x), id));
    __m256i q1 = round_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 8), id));
    __m256i q2 = round_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 16), id));
    __m256i q3 = round_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 24), id));
    if (sum)
        *sum = hsum_epi32(_mm256_add_epi32(_mm256_add_epi32(q0, q1), _mm256_add_epi32(q2, q3)));
    return pack_32_i8(q0, q1, q2, q3);
}

static inline float amax_32(const float *x)
{
    __m256 m = _mm256_max_ps(
        _mm256_max_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_loadu_ps(x)),
                      _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_loadu_ps(x + 8))),
        _mm256_max_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_loadu_ps(x + 16)),
                      _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_loadu_ps(x + 24))));
    return _mm256_cvtss_f32(hmax_abs_ps(m));
}

static void x86_q8_0_from_float(const float *restrict x, void *restrict vy, int64_t n)
{
    nuri_block_q8_0 *y = vy;
    for (int64_t i = 0; i < n / NURI_QK; i++, x += NURI_QK) {
        float amax = amax_32(x);
        float d = amax / 127.f;
        float id = amax != 0 ? 127.f / amax : 0.f;
        y[i].d = nuri_f32_to_f16(d);
        _mm256_storeu_si256((__m256i *)y[i].qs, quant_32(x, _mm256_set1_ps(id), NULL));
    }
}

static void x86_q8_1_from_float(const float *restrict x, void *restrict vy, int64_t n)
{
    nuri_block_q8_1 *y = vy;
    for (int64_t i = 0; i < n / NURI_QK; i++, x += NURI_QK) {
        float amax = amax_32(x);
        float d = amax / 127.f;
        float id = amax != 0 ? 127.f / amax : 0.f;
        int sum;
        _mm256_storeu_si256((__m256i *)y[i].qs, quant_32(x, _mm256_set1_ps(id), &sum));
        y[i].d = nuri_f32_to_f16(d);
        y[i].s = nuri_f32_to_f16(d * (float)sum);
    }
}

static void x86_q8_K_from_float(const float *restrict x, void *restrict vy, int64_t n)
{
    nuri_block_q8_K *y = vy;
    const __m256 absmask = _mm256_set1_ps(-0.0f);
    for (int64_t i = 0; i < n / NURI_QK_K; i++, x += NURI_QK_K) {
        __m256 m = _mm256_setzero_ps();
        for (int j = 0; j < NURI_QK_K; j += 8)
            m = _mm256_max_ps(m, _mm256_andnot_ps(absmask, _mm256_loadu_ps(x + j)));
        m = hmax_abs_ps(m);
        float amax = _mm256_cvtss_f32(m);
        if (amax == 0) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        int first = 0; // the first element with |x| == amax
        for (int j = 0; j < NURI_QK_K; j += 8) {
            __m256 a = _mm256_andnot_ps(absmask, _mm256_loadu_ps(x + j));
            int mask = _mm256_movemask_ps(_mm256_cmp_ps(a, m, _CMP_EQ_OQ));
            if (mask) {
                first = j + __builtin_ctz((unsigned)mask);
                break;
            }
        }
        float iscale = -127.f / x[first];
        __m256 is = _mm256_set1_ps(iscale);
        for (int j = 0; j < NURI_QK_K; j += 32) {
            __m256i q0 = round_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + j), is));
            __m256i q1 = round_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + j + 8), is));
            __m256i q2 = round_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + j + 16), is));
            __m256i q3 = round_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + j + 24), is));
            y[i].bsums[j / 16] = (int16_t)hsum_epi32(_mm256_add_epi32(q0, q1));
            y[i].bsums[j / 16 + 1] = (int16_t)hsum_epi32(_mm256_add_epi32(q2, q3));
            _mm256_storeu_si256((__m256i *)(y[i].qs + j), pack_32_i8(q0, q1, q2, q3));
        }
        y[i].d = 1 / iscale;
    }
}

/* ======================================================================================== */
/* vec_dot of the 32-element types (2 blocks per iteration, no horizontal sums in the loop)  */
/* ======================================================================================== */

#define LOAD256(p) _mm256_loadu_si256((const __m256i *)(p))

static inline __m256i q4_0_codes(const nuri_block_q4_0 *b) // -8..7
{
    return _mm256_sub_epi8(nibbles_32(b->qs), _mm256_set1_epi8(8));
}

static inline __m256i q5_codes(const uint8_t *qs, const uint8_t *qh) // 0..31
{
    uint32_t bits;
    memcpy(&bits, qh, 4);
    __m256i hi = _mm256_and_si256(bits_to_bytes(bits), _mm256_set1_epi8(16));
    return _mm256_or_si256(nibbles_32(qs), hi);
}

/* One weight-type family: BODY(i, acc) adds block i's contribution to the float vector acc. */
#define SIMPLE_VEC_DOT(name, XT, YT, BODY, EXTRA_INIT, EXTRA_RESULT)                               \
    static void name(int64_t n, float *restrict s, const void *restrict vx,                        \
                     const void *restrict vy)                                                      \
    {                                                                                              \
        const XT *x = vx;                                                                          \
        const YT *y = vy;                                                                          \
        const int64_t nb = n / NURI_QK;                                                            \
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();                             \
        EXTRA_INIT;                                                                                \
        int64_t i = 0;                                                                             \
        for (; i + 1 < nb; i += 2) {                                                               \
            BODY(i, acc0);                                                                         \
            BODY(i + 1, acc1);                                                                     \
        }                                                                                          \
        if (i < nb) BODY(i, acc0);                                                                 \
        *s = hsum_ps(_mm256_add_ps(acc0, acc1)) EXTRA_RESULT;                                      \
    }

#define Q8_0_BODY(i, acc)                                                                          \
    do {                                                                                           \
        __m256i p = dot_ss8_acc(_mm256_setzero_si256(), LOAD256(x[i].qs), LOAD256(y[i].qs));       \
        __m256 d = _mm256_set1_ps(fp16_load(x[i].d) * fp16_load(y[i].d));                          \
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);                                      \
    } while (0)
SIMPLE_VEC_DOT(x86_q8_0_vec_dot, nuri_block_q8_0, nuri_block_q8_0, Q8_0_BODY, , )

#define Q4_0_BODY(i, acc)                                                                          \
    do {                                                                                           \
        __m256i p = dot_ss8_acc(_mm256_setzero_si256(), q4_0_codes(&x[i]), LOAD256(y[i].qs));      \
        __m256 d = _mm256_set1_ps(fp16_load(x[i].d) * fp16_load(y[i].d));                          \
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);                                      \
    } while (0)
SIMPLE_VEC_DOT(x86_q4_0_vec_dot, nuri_block_q4_0, nuri_block_q8_0, Q4_0_BODY, , )

#define Q4_1_BODY(i, acc)                                                                          \
    do {                                                                                           \
        __m256i p = dot_us8_acc(_mm256_setzero_si256(), nibbles_32(x[i].qs), LOAD256(y[i].qs));    \
        __m256 d = _mm256_set1_ps(fp16_load(x[i].d) * fp16_load(y[i].d));                          \
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);                                      \
        summ += fp16_load(x[i].m) * fp16_load(y[i].s);                                             \
    } while (0)
SIMPLE_VEC_DOT(x86_q4_1_vec_dot, nuri_block_q4_1, nuri_block_q8_1, Q4_1_BODY, float summ = 0, +summ)

#define Q5_0_BODY(i, acc)                                                                          \
    do {                                                                                           \
        __m256i c = _mm256_sub_epi8(q5_codes(x[i].qs, x[i].qh), _mm256_set1_epi8(16));             \
        __m256i p = dot_ss8_acc(_mm256_setzero_si256(), c, LOAD256(y[i].qs));                      \
        __m256 d = _mm256_set1_ps(fp16_load(x[i].d) * fp16_load(y[i].d));                          \
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);                                      \
    } while (0)
SIMPLE_VEC_DOT(x86_q5_0_vec_dot, nuri_block_q5_0, nuri_block_q8_0, Q5_0_BODY, , )

#define Q5_1_BODY(i, acc)                                                                          \
    do {                                                                                           \
        __m256i c = q5_codes(x[i].qs, x[i].qh);                                                    \
        __m256i p = dot_us8_acc(_mm256_setzero_si256(), c, LOAD256(y[i].qs));                      \
        __m256 d = _mm256_set1_ps(fp16_load(x[i].d) * fp16_load(y[i].d));                          \
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);                                      \
        summ += fp16_load(x[i].m) * fp16_load(y[i].s);                                             \
    } while (0)
SIMPLE_VEC_DOT(x86_q5_1_vec_dot, nuri_block_q5_1, nuri_block_q8_1, Q5_1_BODY, float summ = 0, +summ)

/* The 4-bit grid types: codes looked up in a 16-byte table (vpshufb), signed products. */
static inline __m256i grid_table(const int8_t *grid)
{
    return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)grid));
}

#define IQ4_NL_BODY(i, acc)                                                                        \
    do {                                                                                           \
        __m256i c = _mm256_shuffle_epi8(tbl, nibbles_32(x[i].qs));                                 \
        __m256i p = dot_ss8_acc(_mm256_setzero_si256(), c, LOAD256(y[i].qs));                      \
        __m256 d = _mm256_set1_ps(fp16_load(x[i].d) * fp16_load(y[i].d));                          \
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);                                      \
    } while (0)
SIMPLE_VEC_DOT(x86_iq4_nl_vec_dot, nuri_block_iq4_nl, nuri_block_q8_0, IQ4_NL_BODY,
               const __m256i tbl = grid_table(nuri_iq4_grid), )

#define MXFP4_BODY(i, acc)                                                                         \
    do {                                                                                           \
        __m256i c = _mm256_shuffle_epi8(tbl, nibbles_32(x[i].qs));                                 \
        __m256i p = dot_ss8_acc(_mm256_setzero_si256(), c, LOAD256(y[i].qs));                      \
        __m256 d = _mm256_set1_ps(nuri_e8m0_half(x[i].e) * fp16_load(y[i].d));                     \
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);                                      \
    } while (0)
SIMPLE_VEC_DOT(x86_mxfp4_vec_dot, nuri_block_mxfp4, nuri_block_q8_0, MXFP4_BODY,
               const __m256i tbl = grid_table(nuri_fp4_grid), )

/* IQ4_XS: sub-block scales folded into the integer sums (vpmaddwd), exact per 256 elements. */
static void x86_iq4_xs_vec_dot(int64_t n, float *restrict s, const void *restrict vx,
                               const void *restrict vy)
{
    const nuri_block_iq4_xs *x = vx;
    const nuri_block_q8_K *y = vy;
    const __m256i tbl = grid_table(nuri_iq4_grid);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        __m256i sumi = _mm256_setzero_si256();
        uint32_t sh = x[i].scales_h;
        for (int j = 0; j < 8; j += 2) {
            const int ls0 = ((x[i].scales_l[j / 2] & 15) | (int)((sh << 4) & 0x30)) - 32;
            const int ls1 = ((x[i].scales_l[j / 2] >> 4) | (int)((sh << 2) & 0x30)) - 32;
            sh >>= 4;
            __m256i c0 = _mm256_shuffle_epi8(tbl, nibbles_32(x[i].qs + 16 * j));
            __m256i c1 = _mm256_shuffle_epi8(tbl, nibbles_32(x[i].qs + 16 * j + 16));
            __m256i y0 = LOAD256(y[i].qs + 32 * j), y1 = LOAD256(y[i].qs + 32 * j + 32);
            sumi = _mm256_add_epi32(sumi, dot_us8_scaled(_mm256_sign_epi8(c0, c0),
                                                         _mm256_sign_epi8(y0, c0),
                                                         _mm256_set1_epi16((short)ls0)));
            sumi = _mm256_add_epi32(sumi, dot_us8_scaled(_mm256_sign_epi8(c1, c1),
                                                         _mm256_sign_epi8(y1, c1),
                                                         _mm256_set1_epi16((short)ls1)));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16_load(x[i].d) * y[i].d), _mm256_cvtepi32_ps(sumi),
                              acc);
    }
    *s = hsum_ps(acc);
}

/* ======================================================================================== */
/* vec_dot of the k-quants against Q8_K                                                      */
/* ======================================================================================== */

/* i16 scale vector: a for the low 16 bytes (one 16-element sub-block), b for the high 16. */
static inline __m256i scale_pair(int a, int b)
{
    return _mm256_set_m128i(_mm_set1_epi16((short)b), _mm_set1_epi16((short)a));
}

static void x86_q2_K_vec_dot(int64_t n, float *restrict s, const void *restrict vx,
                             const void *restrict vy)
{
    const nuri_block_q2_K *x = vx;
    const nuri_block_q8_K *y = vy;
    const __m256i m3 = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps();
    float summ_all = 0;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        const uint8_t *sc = x[i].scales;
        __m256i sumi = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            __m256i q2 = LOAD256(x[i].qs + 32 * h);
            for (int j = 0; j < 4; j++) {
                __m256i q = _mm256_and_si256(q2, m3);
                q2 = _mm256_srli_epi16(q2, 2);
                __m256i scv = scale_pair(sc[8 * h + 2 * j] & 15, sc[8 * h + 2 * j + 1] & 15);
                sumi = _mm256_add_epi32(
                    sumi, dot_us8_scaled(q, LOAD256(y[i].qs + 128 * h + 32 * j), scv));
            }
        }
        int summ = 0;
        for (int j = 0; j < 16; j++) summ += (sc[j] >> 4) * y[i].bsums[j];
        float d = y[i].d * fp16_load(x[i].d), dmin = y[i].d * fp16_load(x[i].dmin);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
        summ_all += dmin * (float)summ;
    }
    *s = hsum_ps(acc) - summ_all;
}

static void x86_q3_K_vec_dot(int64_t n, float *restrict s, const void *restrict vx,
                             const void *restrict vy)
{
    const nuri_block_q3_K *x = vx;
    const nuri_block_q8_K *y = vy;
    const __m256i m3 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
    __m256 acc = _mm256_setzero_ps();
    float corr_all = 0;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        int8_t sc[16];
        kernels_scales_q3_K(x[i].scales, sc);
        __m256i hm = LOAD256(x[i].hmask);
        __m256i sumi = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            __m256i q3 = LOAD256(x[i].qs + 32 * h);
            for (int j = 0; j < 4; j++) {
                // code = q + 4 in 0..7: 2 low bits | hmask bit << 2
                __m256i hb = _mm256_slli_epi16(_mm256_and_si256(hm, one), 2);
                __m256i q = _mm256_or_si256(_mm256_and_si256(q3, m3), hb);
                q3 = _mm256_srli_epi16(q3, 2);
                hm = _mm256_srli_epi16(hm, 1);
                __m256i scv = scale_pair(sc[8 * h + 2 * j], sc[8 * h + 2 * j + 1]);
                sumi = _mm256_add_epi32(
                    sumi, dot_us8_scaled(q, LOAD256(y[i].qs + 128 * h + 32 * j), scv));
            }
        }
        int corr = 0; // the +4 of the codes: 4 * sum_j sc_j * bsum_j
        for (int j = 0; j < 16; j++) corr += sc[j] * y[i].bsums[j];
        float d = y[i].d * fp16_load(x[i].d);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
        corr_all += d * (float)(4 * corr);
    }
    *s = hsum_ps(acc) - corr_all;
}

static void x86_q4_K_vec_dot(int64_t n, float *restrict s, const void *restrict vx,
                             const void *restrict vy)
{
    const nuri_block_q4_K *x = vx;
    const nuri_block_q8_K *y = vy;
    const __m256i m4 = _mm256_set1_epi8(15);
    __m256 acc = _mm256_setzero_ps();
    float summ_all = 0;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        uint8_t sc[8], mn[8];
        kernels_scales_mins_q4_K(x[i].scales, sc, mn);
        __m256i sumi = _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
            __m256i q4 = LOAD256(x[i].qs + 32 * c);
            __m256i lo = _mm256_and_si256(q4, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4);
            sumi = _mm256_add_epi32(
                sumi, dot_us8_scaled(lo, LOAD256(y[i].qs + 64 * c), _mm256_set1_epi16(sc[2 * c])));
            sumi = _mm256_add_epi32(sumi, dot_us8_scaled(hi, LOAD256(y[i].qs + 64 * c + 32),
                                                         _mm256_set1_epi16(sc[2 * c + 1])));
        }
        int summ = 0;
        for (int j = 0; j < 8; j++) summ += mn[j] * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
        float d = y[i].d * fp16_load(x[i].d), dmin = y[i].d * fp16_load(x[i].dmin);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
        summ_all += dmin * (float)summ;
    }
    *s = hsum_ps(acc) - summ_all;
}

static void x86_q5_K_vec_dot(int64_t n, float *restrict s, const void *restrict vx,
                             const void *restrict vy)
{
    const nuri_block_q5_K *x = vx;
    const nuri_block_q8_K *y = vy;
    const __m256i m4 = _mm256_set1_epi8(15), one = _mm256_set1_epi8(1);
    __m256 acc = _mm256_setzero_ps();
    float summ_all = 0;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        uint8_t sc[8], mn[8];
        kernels_scales_mins_q4_K(x[i].scales, sc, mn);
        __m256i hb = LOAD256(x[i].qh);
        __m256i sumi = _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
            __m256i q4 = LOAD256(x[i].qs + 32 * c);
            __m256i h0 = _mm256_slli_epi16(_mm256_and_si256(hb, one), 4);
            __m256i h1 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 1), one), 4);
            hb = _mm256_srli_epi16(hb, 2);
            __m256i lo = _mm256_or_si256(_mm256_and_si256(q4, m4), h0);
            __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q4, 4), m4), h1);
            sumi = _mm256_add_epi32(
                sumi, dot_us8_scaled(lo, LOAD256(y[i].qs + 64 * c), _mm256_set1_epi16(sc[2 * c])));
            sumi = _mm256_add_epi32(sumi, dot_us8_scaled(hi, LOAD256(y[i].qs + 64 * c + 32),
                                                         _mm256_set1_epi16(sc[2 * c + 1])));
        }
        int summ = 0;
        for (int j = 0; j < 8; j++) summ += mn[j] * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
        float d = y[i].d * fp16_load(x[i].d), dmin = y[i].d * fp16_load(x[i].dmin);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
        summ_all += dmin * (float)summ;
    }
    *s = hsum_ps(acc) - summ_all;
}

static void x86_q6_K_vec_dot(int64_t n, float *restrict s, const void *restrict vx,
                             const void *restrict vy)
{
    const nuri_block_q6_K *x = vx;
    const nuri_block_q8_K *y = vy;
    const __m256i m4 = _mm256_set1_epi8(15), m3 = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps();
    float corr_all = 0;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        const int8_t *sc = x[i].scales;
        __m256i sumi = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            __m256i ql0 = LOAD256(x[i].ql + 64 * h), ql1 = LOAD256(x[i].ql + 64 * h + 32);
            __m256i qh = LOAD256(x[i].qh + 32 * h);
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(ql0, m4),
                                   _mm256_slli_epi16(_mm256_and_si256(qh, m3), 4));
            q[1] = _mm256_or_si256(
                _mm256_and_si256(ql1, m4),
                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m3), 4));
            q[2] = _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m3), 4));
            q[3] = _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m3), 4));
            for (int k = 0; k < 4; k++) {
                __m256i scv = scale_pair(sc[8 * h + 2 * k], sc[8 * h + 2 * k + 1]);
                sumi = _mm256_add_epi32(
                    sumi, dot_us8_scaled(q[k], LOAD256(y[i].qs + 128 * h + 32 * k), scv));
            }
        }
        int corr = 0; // codes are q + 32: subtract 32 * sum_j sc_j * bsum_j
        for (int j = 0; j < 16; j++) corr += sc[j] * y[i].bsums[j];
        float d = y[i].d * fp16_load(x[i].d);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
        corr_all += d * (float)(32 * corr);
    }
    *s = hsum_ps(acc) - corr_all;
}

/* ======================================================================================== */
/* The table entries                                                                          */
/* ======================================================================================== */

static void kernels_x86_fill(nuri_kernel_traits *tab)
{
    tab[NURI_TYPE_F32].vec_dot = x86_f32_vec_dot;
    tab[NURI_TYPE_F16].vec_dot = x86_f16_vec_dot;
    tab[NURI_TYPE_F16].to_float = x86_f16_to_float;
    tab[NURI_TYPE_F16].from_float = x86_f16_from_float;
    tab[NURI_TYPE_BF16].vec_dot = x86_bf16_vec_dot;
    tab[NURI_TYPE_BF16].to_float = x86_bf16_to_float;
    tab[NURI_TYPE_BF16].from_float = x86_bf16_from_float;
    tab[NURI_TYPE_Q8_0].from_float = x86_q8_0_from_float;
    tab[NURI_TYPE_Q8_1].from_float = x86_q8_1_from_float;
    tab[NURI_TYPE_Q8_K].from_float = x86_q8_K_from_float;
    tab[NURI_TYPE_Q8_0].vec_dot = x86_q8_0_vec_dot;
    tab[NURI_TYPE_Q4_0].vec_dot = x86_q4_0_vec_dot;
    tab[NURI_TYPE_Q4_1].vec_dot = x86_q4_1_vec_dot;
    tab[NURI_TYPE_Q5_0].vec_dot = x86_q5_0_vec_dot;
    tab[NURI_TYPE_Q5_1].vec_dot = x86_q5_1_vec_dot;
    tab[NURI_TYPE_Q2_K].vec_dot = x86_q2_K_vec_dot;
    tab[NURI_TYPE_Q3_K].vec_dot = x86_q3_K_vec_dot;
    tab[NURI_TYPE_Q4_K].vec_dot = x86_q4_K_vec_dot;
    tab[NURI_TYPE_Q5_K].vec_dot = x86_q5_K_vec_dot;
    tab[NURI_TYPE_Q6_K].vec_dot = x86_q6_K_vec_dot;
    tab[NURI_TYPE_IQ4_NL].vec_dot = x86_iq4_nl_vec_dot;
    tab[NURI_TYPE_IQ4_XS].vec_dot = x86_iq4_xs_vec_dot;
    tab[NURI_TYPE_MXFP4].vec_dot = x86_mxfp4_vec_dot;
}

#endif
