/*
 * fp16.h: IEEE half (F16) and bfloat16 (BF16) <-> float conversions, scalar and exact.
 *
 * These are the reference conversions: float -> half / bf16 rounds to nearest, ties to even, and
 * handles subnormals, infinities and NaN (a NaN stays a quiet NaN with its sign and top payload
 * bits). They need no F16C; the SIMD row converters behind nuri_kernels() must give the same bits.
 * Half and bf16 values are carried as uint16_t bit patterns.
 */
#ifndef NURI_KERNELS_FP16_H
#define NURI_KERNELS_FP16_H

#include <stdint.h>
#include <string.h>

static inline float nuri_bits_to_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint32_t nuri_f32_to_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* Exact: every half value is a float. */
static inline float nuri_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    if (exp == 0x1f) return nuri_bits_to_f32(sign | 0x7f800000u | (man << 13)); // inf / NaN
    if (exp == 0) {
        float f = (float)man * 0x1p-24f; // zero or subnormal: man units of 2^-24 (exact)
        return sign ? -f : f;
    }
    return nuri_bits_to_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

/* Round to nearest even; overflow gives +-inf. */
static inline uint16_t nuri_f32_to_f16(float f)
{
    uint32_t x = nuri_f32_to_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return sign | 0x7e00u | (uint16_t)((ax >> 13) & 0x3ffu); // quiet NaN
    if (ax >= 0x477ff000u) return sign | 0x7c00u;     // >= 65520 (incl. inf) rounds to inf
    if (ax >= 0x38800000u) {                          // normal half (>= 2^-14)
        uint32_t r = ax + 0xfffu + ((ax >> 13) & 1u); // ties to even; carries may bump exponent
        return sign | (uint16_t)((r - 0x38000000u) >> 13);
    }
    /* Subnormal half or zero: result in units of 2^-24. value = m * 2^(e - 150). */
    uint32_t e = ax >> 23;
    if (e < 102) return sign; // < 2^-25: rounds to zero (2^-25 itself ties to even = 0)
    uint32_t m = (ax & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - e; // 14..24
    uint32_t q = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return sign | (uint16_t)q;
}

static inline float nuri_bf16_to_f32(uint16_t h)
{
    return nuri_bits_to_f32((uint32_t)h << 16);
}

/* Round to nearest even; NaN stays a (quiet) NaN. */
static inline uint16_t nuri_f32_to_bf16(float f)
{
    uint32_t x = nuri_f32_to_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u);
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

/* ---- row converters (scalar; the dispatched ones are the F16/BF16 traits in kernels.h) ---- */

static inline void nuri_f16_to_f32_row(const uint16_t *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] = nuri_f16_to_f32(x[i]);
}

static inline void nuri_f32_to_f16_row(const float *x, uint16_t *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] = nuri_f32_to_f16(x[i]);
}

static inline void nuri_bf16_to_f32_row(const uint16_t *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] = nuri_bf16_to_f32(x[i]);
}

static inline void nuri_f32_to_bf16_row(const float *x, uint16_t *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] = nuri_f32_to_bf16(x[i]);
}

/* Half the value of an E8M0 exponent byte: 2^(e - 128), exact (MXFP4's scale times its doubled
 * grid). e = 0 and 1 are the subnormals 2^-128 and 2^-127. */
static inline float nuri_e8m0_half(uint8_t e)
{
    return nuri_bits_to_f32(e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23);
}

#endif
