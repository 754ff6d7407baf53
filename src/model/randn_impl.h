/*
 * randn_impl.h: the body of nuri_randn (randn.h) for vectors of RANDN_W doubles, written once with
 * GCC's vector extensions and included by randn.c (SSE2, 2 lanes), randn_avx2.c (4) and
 * randn_avx512.c (8), each defining RANDN_W, RANDN_SQRT (the instruction set's square root of a
 * vector) and RANDN_NAME. Only IEEE +, -, *, / and sqrt, with the file compiled in ISO C mode
 * (-std=c11: no contraction into FMAs), so the three give the same bits.
 *
 * ln u: u = 2^e m with m in [sqrt(1/2), sqrt(2)), f = m - 1, s = f / (2 + f), and
 *   ln(1 + f) = f - (f^2/2 - s (f^2/2 + R)),  R = sum_k 2 s^(2k) / (2k + 1)  (k = 1..11),
 * since ln(1 + f) = ln((1 + s) / (1 - s)) = 2 atanh(s); then e ln 2 in two parts (the first with
 * 13 trailing zero bits, so e times it is exact).
 * cos x, x = 2 pi v rounded as libm's caller rounds it: n = x / (pi/2) to the nearest integer (by
 * adding 2^52), r = x - n pi/2 with pi/2 in three parts (the first two of 33 bits: n times them
 * is exact), and
 * cos x = +-cos r or +-sin r by n mod 4, each a Taylor series to r^20 / r^19 (|r| <= pi/4 + ulps).
 */
#include <stdint.h>
#include <string.h>

typedef double randn_vd __attribute__((vector_size(8 * RANDN_W)));
typedef uint64_t randn_vu __attribute__((vector_size(8 * RANDN_W)));
typedef int64_t randn_vi __attribute__((vector_size(8 * RANDN_W)));
typedef float randn_vf __attribute__((vector_size(4 * RANDN_W)));

static inline randn_vd randn_select(randn_vi mask, randn_vd a, randn_vd b) // mask ? a : b
{
    return (randn_vd)(((randn_vu)a & (randn_vu)mask) | ((randn_vu)b & ~(randn_vu)mask));
}

/* x in every lane: a scalar operand of a vector operation is broadcast (GCC), and a register
 * operation even at -O1 (the sanitizer build), where a loop over the lanes went through memory. */
static inline randn_vd randn_lanes(double x)
{
    return (randn_vd){0} + x;
}

static inline randn_vf randn_one(randn_vd u, randn_vd v)
{
    const randn_vd two52 = randn_lanes(4503599627370496.0), one = randn_lanes(1.0);
    // ---- ln u ----
    const randn_vu ub = (randn_vu)u;
    randn_vd e = (randn_vd)((ub >> 52) | (randn_vu)two52) - two52 - randn_lanes(1023.0);
    randn_vd m = (randn_vd)((ub & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL);
    const randn_vi big = m > randn_lanes(0x1.6a09e667f3bcdp+0);
    m = randn_select(big, m * randn_lanes(0.5), m);
    e = randn_select(big, e + one, e);
    const randn_vd f = m - one, hfsq = randn_lanes(0.5) * f * f;
    const randn_vd s = f / (randn_lanes(2.0) + f), z = s * s;
    randn_vd p = randn_lanes(2.0 / 23.0);
    p = randn_lanes(2.0 / 21.0) + z * p;
    p = randn_lanes(2.0 / 19.0) + z * p;
    p = randn_lanes(2.0 / 17.0) + z * p;
    p = randn_lanes(2.0 / 15.0) + z * p;
    p = randn_lanes(2.0 / 13.0) + z * p;
    p = randn_lanes(2.0 / 11.0) + z * p;
    p = randn_lanes(2.0 / 9.0) + z * p;
    p = randn_lanes(2.0 / 7.0) + z * p;
    p = randn_lanes(2.0 / 5.0) + z * p;
    p = randn_lanes(2.0 / 3.0) + z * p;
    const randn_vd R = z * p;
    const randn_vd ln = e * randn_lanes(0x1.62e42fefa2000p-1) +
                        ((f - (hfsq - s * (hfsq + R))) + e * randn_lanes(0x1.9ef35793c7673p-41));
    // ---- cos(2 pi v) ----
    const randn_vd x = randn_lanes(0x1.921fb54442d18p+2) * v;
    const randn_vd t = x * randn_lanes(0x1.45f306dc9c883p-1) + two52;
    const randn_vu q = (randn_vu)t & 3;
    const randn_vd n = t - two52;
    const randn_vd r =
        ((x - n * randn_lanes(0x1.921fb54400000p+0)) - n * randn_lanes(0x1.0b4611a600000p-34)) -
        n * randn_lanes(0x1.3198a2e037073p-69);
    const randn_vd r2 = r * r;
    randn_vd sp = randn_lanes(-1.0 / 121645100408832000.0); // -1/19!
    sp = randn_lanes(1.0 / 355687428096000.0) + r2 * sp;
    sp = randn_lanes(-1.0 / 1307674368000.0) + r2 * sp;
    sp = randn_lanes(1.0 / 6227020800.0) + r2 * sp;
    sp = randn_lanes(-1.0 / 39916800.0) + r2 * sp;
    sp = randn_lanes(1.0 / 362880.0) + r2 * sp;
    sp = randn_lanes(-1.0 / 5040.0) + r2 * sp;
    sp = randn_lanes(1.0 / 120.0) + r2 * sp;
    sp = randn_lanes(-1.0 / 6.0) + r2 * sp;
    const randn_vd sn = r + r * (r2 * sp);
    randn_vd cp = randn_lanes(1.0 / 2432902008176640000.0); // 1/20!
    cp = randn_lanes(-1.0 / 6402373705728000.0) + r2 * cp;
    cp = randn_lanes(1.0 / 20922789888000.0) + r2 * cp;
    cp = randn_lanes(-1.0 / 87178291200.0) + r2 * cp;
    cp = randn_lanes(1.0 / 479001600.0) + r2 * cp;
    cp = randn_lanes(-1.0 / 3628800.0) + r2 * cp;
    cp = randn_lanes(1.0 / 40320.0) + r2 * cp;
    cp = randn_lanes(-1.0 / 720.0) + r2 * cp;
    cp = randn_lanes(1.0 / 24.0) + r2 * cp;
    cp = randn_lanes(-1.0 / 2.0) + r2 * cp;
    const randn_vd cs = one + r2 * cp;
    randn_vd c = randn_select((randn_vi)((q & 1) != 0), sn, cs);
    c = (randn_vd)((randn_vu)c ^ ((((q + 1) >> 1) & 1) << 63)); // n mod 4 = 1, 2: negative
    return __builtin_convertvector(RANDN_SQRT(randn_lanes(-2.0) * ln) * c, randn_vf);
}

void RANDN_NAME(const double *u, const double *v, float *out, int64_t n)
{
    int64_t i = 0;
    for (; i + RANDN_W <= n; i += RANDN_W) {
        randn_vd a, b;
        memcpy(&a, u + i, sizeof a);
        memcpy(&b, v + i, sizeof b);
        const randn_vf o = randn_one(a, b);
        memcpy(out + i, &o, sizeof o);
    }
    if (i < n) { // the tail in a vector of its own, padded with 1/2
        randn_vd a = randn_lanes(0.5), b = randn_lanes(0.5);
        memcpy(&a, u + i, sizeof(double) * (size_t)(n - i));
        memcpy(&b, v + i, sizeof(double) * (size_t)(n - i));
        const randn_vf o = randn_one(a, b);
        memcpy(out + i, &o, sizeof(float) * (size_t)(n - i));
    }
}
