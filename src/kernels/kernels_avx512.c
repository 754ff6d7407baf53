/*
 * kernels_avx512.c: the AVX-512 kernels (F/BW/VL/DQ + VNNI). The 256-bit code of kernels_x86.h is
 * compiled here with KERNELS_VNNI, so its int8 dot products use vpdpbusd; this file adds 512-bit
 * kernels for the most used types: Q8_0 and Q4_0 (two blocks per register, vpdpbusd), Q4_K and
 * Q6_K (64 elements per register, scales folded into vpmaddwd). Only called when nuri_cpu_isa()
 * found AVX-512 with VNNI. Each kernel is tested against its scalar twin in kernels_ref.c.
 */
#define KERNELS_VNNI 1
#include "kernels/kernels_x86.h"

/* Two 32-byte halves -> one 64-byte register. */
static inline __m512i join256(__m256i lo, __m256i hi)
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

static inline float hsum512(__m512 v)
{
    return hsum_ps(_mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1)));
}

/* Scales of 4 consecutive blocks: d[k] = F32(x[k].d) * F32(y[k].d), converted in one vcvtph2ps,
 * then spread to two registers: lanes 0..7 / 8..15 = blocks 0 / 1, and blocks 2 / 3. */
static inline void scales_4(uint16_t x0, uint16_t x1, uint16_t x2, uint16_t x3, uint16_t y0,
                            uint16_t y1, uint16_t y2, uint16_t y3, __m512 *d01, __m512 *d23)
{
    __m128i h = _mm_setr_epi16((short)x0, (short)x1, (short)x2, (short)x3, (short)y0, (short)y1,
                               (short)y2, (short)y3);
    __m256 f = _mm256_cvtph_ps(h);
    __m128 d = _mm_mul_ps(_mm256_castps256_ps128(f), _mm256_extractf128_ps(f, 1));
    __m512 d512 = _mm512_castps128_ps512(d);
    const __m512i i01 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    const __m512i i23 = _mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    *d01 = _mm512_permutexvar_ps(i01, d512);
    *d23 = _mm512_permutexvar_ps(i23, d512);
}

/* Signed x signed on 64 bytes: sum(x*y) = sum(|x| * (x < 0 ? -y : y)). */
static inline __m512i dot_ss8_512(__m512i qx, __m512i qy)
{
    const __m512i zero = _mm512_setzero_si512();
    __m512i sy = _mm512_mask_sub_epi8(qy, _mm512_movepi8_mask(qx), zero, qy);
    return _mm512_dpbusd_epi32(zero, _mm512_abs_epi8(qx), sy);
}

/* Unsigned codes 0..15 minus 8 on 64 bytes: sum(c*y) - 8 * sum(y). */
static inline __m512i dot_q4_512(__m512i c, __m512i qy)
{
    const __m512i zero = _mm512_setzero_si512();
    __m512i p = _mm512_dpbusd_epi32(zero, c, qy);
    __m512i sy = _mm512_dpbusd_epi32(zero, _mm512_set1_epi8(1), qy);
    return _mm512_sub_epi32(p, _mm512_slli_epi32(sy, 3));
}

/* ---- Q8_0 x Q8_0 and Q4_0 x Q8_0: 4 blocks per iteration, 2 per register ---- */

static void avx512_q8_0_vec_dot(int64_t n, float *restrict s, const void *restrict vx,
                                const void *restrict vy)
{
    const nuri_block_q8_0 *x = vx;
    const nuri_block_q8_0 *y = vy;
    const int64_t nb = n / NURI_QK;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 3 < nb; i += 4) {
        __m512 d01, d23;
        scales_4(x[i].d, x[i + 1].d, x[i + 2].d, x[i + 3].d, y[i].d, y[i + 1].d, y[i + 2].d,
                 y[i + 3].d, &d01, &d23);
        __m512i p01 = dot_ss8_512(join256(LOAD256(x[i].qs), LOAD256(x[i + 1].qs)),
                                  join256(LOAD256(y[i].qs), LOAD256(y[i + 1].qs)));
        __m512i p23 = dot_ss8_512(join256(LOAD256(x[i + 2].qs), LOAD256(x[i + 3].qs)),
                                  join256(LOAD256(y[i + 2].qs), LOAD256(y[i + 3].qs)));
        acc0 = _mm512_fmadd_ps(d01, _mm512_cvtepi32_ps(p01), acc0);
        acc1 = _mm512_fmadd_ps(d23, _mm512_cvtepi32_ps(p23), acc1);
    }
    float sum = hsum512(_mm512_add_ps(acc0, acc1));
    for (; i < nb; i++) {
        __m256i p = dot_ss8_acc(_mm256_setzero_si256(), LOAD256(x[i].qs), LOAD256(y[i].qs));
        sum += fp16_load(x[i].d) * fp16_load(y[i].d) * hsum_ps(_mm256_cvtepi32_ps(p));
    }
    *s = sum;
}

static void avx512_q4_0_vec_dot(int64_t n, float *restrict s, const void *restrict vx,
                                const void *restrict vy)
{
    const nuri_block_q4_0 *x = vx;
    const nuri_block_q8_0 *y = vy;
    const int64_t nb = n / NURI_QK;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 3 < nb; i += 4) {
        __m512 d01, d23;
        scales_4(x[i].d, x[i + 1].d, x[i + 2].d, x[i + 3].d, y[i].d, y[i + 1].d, y[i + 2].d,
                 y[i + 3].d, &d01, &d23);
        __m512i p01 = dot_q4_512(join256(nibbles_32(x[i].qs), nibbles_32(x[i + 1].qs)),
                                 join256(LOAD256(y[i].qs), LOAD256(y[i + 1].qs)));
        __m512i p23 = dot_q4_512(join256(nibbles_32(x[i + 2].qs), nibbles_32(x[i + 3].qs)),
                                 join256(LOAD256(y[i + 2].qs), LOAD256(y[i + 3].qs)));
        acc0 = _mm512_fmadd_ps(d01, _mm512_cvtepi32_ps(p01), acc0);
        acc1 = _mm512_fmadd_ps(d23, _mm512_cvtepi32_ps(p23), acc1);
    }
    float sum = hsum512(_mm512_add_ps(acc0, acc1));
    for (; i < nb; i++) {
        __m256i p = dot_ss8_acc(_mm256_setzero_si256(), q4_0_codes(&x[i]), LOAD256(y[i].qs));
        sum += fp16_load(x[i].d) * fp16_load(y[i].d) * hsum_ps(_mm256_cvtepi32_ps(p));
    }
    *s = sum;
}

/* ---- Q4_K x Q8_K: 64 elements (two sub-blocks of 32) per register ---- */

static void avx512_q4_K_vec_dot(int64_t n, float *restrict s, const void *restrict vx,
                                const void *restrict vy)
{
    const nuri_block_q4_K *x = vx;
    const nuri_block_q8_K *y = vy;
    const __m256i m4 = _mm256_set1_epi8(15);
    // i16 lane k of chunk c takes scale 2c + (k >= 16)
    const __m512i idx0 = join256(_mm256_set1_epi16(0), _mm256_set1_epi16(1));
    const __m512i two = _mm512_set1_epi16(2);
    __m512 acc = _mm512_setzero_ps();
    float summ_all = 0;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        uint8_t sc[8], mn[8];
        kernels_scales_mins_q4_K(x[i].scales, sc, mn);
        __m512i scv =
            _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)sc)));
        __m512i idx = idx0;
        __m512i sumi = _mm512_setzero_si512();
        for (int c = 0; c < 4; c++) {
            __m256i q4 = LOAD256(x[i].qs + 32 * c);
            __m512i q =
                join256(_mm256_and_si256(q4, m4), _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4));
            __m512i yv = _mm512_loadu_si512(y[i].qs + 64 * c);
            __m512i s16 = _mm512_permutexvar_epi16(idx, scv);
            idx = _mm512_add_epi16(idx, two);
            sumi = _mm512_add_epi32(sumi, _mm512_madd_epi16(_mm512_maddubs_epi16(q, yv), s16));
        }
        int summ = 0;
        for (int j = 0; j < 8; j++) summ += mn[j] * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
        float d = y[i].d * fp16_load(x[i].d), dmin = y[i].d * fp16_load(x[i].dmin);
        acc = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(sumi), acc);
        summ_all += dmin * (float)summ;
    }
    *s = hsum512(acc) - summ_all;
}

/* ---- Q6_K x Q8_K: 64 elements (four sub-blocks of 16) per register ---- */

static void avx512_q6_K_vec_dot(int64_t n, float *restrict s, const void *restrict vx,
                                const void *restrict vy)
{
    const nuri_block_q6_K *x = vx;
    const nuri_block_q8_K *y = vy;
    const __m512i m4 = _mm512_set1_epi8(15), m3 = _mm512_set1_epi8(3);
    // qh shifts: elements 0..31 / 32..63 of the first register use qh >> 0 / 2, the second >> 4 / 6
    const __m512i shA = join256(_mm256_set1_epi16(0), _mm256_set1_epi16(2));
    const __m512i shB = join256(_mm256_set1_epi16(4), _mm256_set1_epi16(6));
    // i16 lane k (of 32) of register r (0..3) takes scale 4r + k / 8
    __m512i idx[4];
    for (int r = 0; r < 4; r++) {
        int16_t t[32];
        for (int k = 0; k < 32; k++) t[k] = (int16_t)(4 * r + k / 8);
        idx[r] = _mm512_loadu_si512(t);
    }
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x[i].scales));
        __m512i scv = _mm512_castsi256_si512(sc16);
        // codes are q + 32: start from -32 * sum_j sc_j * bsum_j
        __m256i corr = _mm256_madd_epi16(sc16, LOAD256(y[i].bsums));
        __m512i sumi = _mm512_zextsi256_si512(_mm256_mullo_epi32(corr, _mm256_set1_epi32(-32)));
        for (int h = 0; h < 2; h++) {
            __m512i ql = _mm512_loadu_si512(x[i].ql + 64 * h);
            __m512i qh = _mm512_broadcast_i64x4(LOAD256(x[i].qh + 32 * h));
            __m512i a = _mm512_or_si512(
                _mm512_and_si512(ql, m4),
                _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, shA), m3), 4));
            __m512i b = _mm512_or_si512(
                _mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, shB), m3), 4));
            __m512i ya = _mm512_loadu_si512(y[i].qs + 128 * h);
            __m512i yb = _mm512_loadu_si512(y[i].qs + 128 * h + 64);
            __m512i sa = _mm512_permutexvar_epi16(idx[2 * h], scv);
            __m512i sb = _mm512_permutexvar_epi16(idx[2 * h + 1], scv);
            sumi = _mm512_add_epi32(sumi, _mm512_madd_epi16(_mm512_maddubs_epi16(a, ya), sa));
            sumi = _mm512_add_epi32(sumi, _mm512_madd_epi16(_mm512_maddubs_epi16(b, yb), sb));
        }
        float d = y[i].d * fp16_load(x[i].d);
        acc = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(sumi), acc);
    }
    *s = hsum512(acc);
}

void kernels_avx512_fill(nuri_kernel_traits *tab)
{
    kernels_x86_fill(tab);
    tab[NURI_TYPE_Q8_0].vec_dot = avx512_q8_0_vec_dot;
    tab[NURI_TYPE_Q4_0].vec_dot = avx512_q4_0_vec_dot;
    tab[NURI_TYPE_Q4_K].vec_dot = avx512_q4_K_vec_dot;
    tab[NURI_TYPE_Q6_K].vec_dot = avx512_q6_K_vec_dot;
    kernels_gemm_avx512_fill(tab);
}
