/*
 * pack.c: the portable half of packed weights (pack.h): which types are packed on this CPU,
 * the repacking itself, AMX detection and the permission the kernel asks for, and the dispatch to
 * pack_avx512.c (AVX-512 VNNI, AMX) or pack_avx2.c (AVX2 alone, or NURI_ISA=avx2). Nothing here
 * needs more than baseline x86-64.
 */
#include "kernels/pack.h"
#include "kernels/blocks.h"
#include "kernels/fp16.h"
#include "kernels/kernels.h"
#include "kernels/kernels_impl.h"
#include "kernels/types.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__linux__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#define PACK_X86 1
#else
#define PACK_X86 0
#endif

void kernels_packed_gemm_avx512(uint32_t type, int64_t n, const void *wp, int64_t n_out, int64_t g0,
                                int64_t g1, const void *x, size_t x_stride, int64_t n_t, float *y,
                                int64_t y_stride, bool use_amx, const nuri_share *sh);
long kernels_packed_items_avx512(uint32_t type, int64_t n, int64_t n_out, int64_t n_t);
void kernels_packed_gemm_avx2(uint32_t type, int64_t n, const void *wp, int64_t n_out, int64_t g0,
                              int64_t g1, const void *x, size_t x_stride, int64_t n_t, float *y,
                              int64_t y_stride, const nuri_share *sh);
long kernels_packed_items_avx2(uint32_t type, int64_t n, int64_t n_out, int64_t n_t);

static bool amx_ok;
static pthread_once_t amx_once = PTHREAD_ONCE_INIT;

static void amx_detect(void)
{
#if PACK_X86
    const char *env = getenv("NURI_AMX");
    if (env && !strcmp(env, "0")) return;
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return;
    if (!(d & (1u << 24)) || !(d & (1u << 25))) return; // AMX-TILE, AMX-INT8
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    uint64_t xcr0 = (uint64_t)hi << 32 | lo;
    if ((xcr0 & (3u << 17)) != (3u << 17)) return; // XTILECFG + XTILEDATA enabled by the OS
    // Linux hands out the 8 KiB tile state only to processes that ask (ARCH_REQ_XCOMP_PERM for
    // XFEATURE_XTILEDATA); without it the first tile instruction is a SIGILL.
    if (syscall(SYS_arch_prctl, 0x1023, 18) != 0) return;
    amx_ok = true;
#endif
}

bool nuri_pack_amx(void)
{
    pthread_once(&amx_once, amx_detect);
    return amx_ok && nuri_cpu_isa() >= NURI_ISA_AVX512 && nuri_pack_supported(NURI_TYPE_Q8_0);
}

/* Choices measured faster on one kind of CPU only (pack.h): spread broadcasts, and the k-quants'
 * high bits by GFNI, on AMD Zen 5 (family 1Ah) and later; elsewhere the older instructions stay. */
static bool spread_cpu, gfni_cpu, gfni_has;
static _Atomic int spread_force = -1, gfni_force = -1;
static pthread_once_t tune_once = PTHREAD_ONCE_INIT;

static int env01(const char *name) // 0 or 1 from the environment, else -1
{
    const char *env = getenv(name);
    return env && (!strcmp(env, "0") || !strcmp(env, "1")) ? env[0] == '1' : -1;
}

static void tune_detect(void)
{
#if PACK_X86
    unsigned a, b, c, d;
    gfni_has = __get_cpuid_count(7, 0, &a, &b, &c, &d) && (c & (1u << 8)); // GFNI
    if (__get_cpuid(0, &a, &b, &c, &d) && b == 0x68747541 && d == 0x69746e65 && c == 0x444d4163 &&
        __get_cpuid(1, &a, &b, &c, &d)) { // "AuthenticAMD"
        const unsigned family = ((a >> 8) & 15) + ((a >> 8 & 15) == 15 ? (a >> 20) & 255 : 0);
        spread_cpu = gfni_cpu = family >= 0x1a; // Zen 5 and later
    }
#endif
    const int sp = env01("NURI_PACK_SPREAD"), gf = env01("NURI_PACK_GFNI");
    if (sp >= 0) spread_cpu = sp;
    if (gf >= 0) gfni_cpu = gf;
}

bool nuri_pack_spread(void)
{
    const int f = atomic_load_explicit(&spread_force, memory_order_relaxed);
    if (f >= 0) return f;
    pthread_once(&tune_once, tune_detect);
    return spread_cpu;
}

void nuri_pack_spread_set(int on)
{
    atomic_store(&spread_force, on < 0 ? -1 : on ? 1 : 0);
}

bool nuri_pack_gfni(void)
{
    pthread_once(&tune_once, tune_detect);
    const int f = atomic_load_explicit(&gfni_force, memory_order_relaxed);
    return gfni_has && (f >= 0 ? f : gfni_cpu);
}

void nuri_pack_gfni_set(int on)
{
    atomic_store(&gfni_force, on < 0 ? -1 : on ? 1 : 0);
}

static bool pack_off, cpu_bf16;
static pthread_once_t pack_once = PTHREAD_ONCE_INIT;

static void pack_env(void)
{
    const char *env = getenv("NURI_PACK");
    pack_off = env && !strcmp(env, "0");
#if PACK_X86
    unsigned a, b, c, d;
    cpu_bf16 = __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 5)); // AVX512_BF16
#endif
}

bool nuri_pack_supported(uint32_t type)
{
    pthread_once(&pack_once, pack_env);
    if (pack_off || nuri_cpu_isa() < NURI_ISA_AVX2) return false;
    if (nuri_cpu_isa() == NURI_ISA_AVX2) // pack_avx2.c's kernels
        return type == NURI_TYPE_Q4_0 || type == NURI_TYPE_Q8_0 || type == NURI_TYPE_Q4_K ||
               type == NURI_TYPE_Q6_K || type == NURI_TYPE_Q5_K || type == NURI_TYPE_IQ4_NL ||
               type == NURI_TYPE_IQ4_XS || type == NURI_TYPE_MXFP4 || type == NURI_TYPE_Q3_K ||
               type == NURI_TYPE_Q2_K || type == NURI_TYPE_F16 || type == NURI_TYPE_BF16;
    // AVX-512: F16 and BF16 only where vdpbf16ps runs (elsewhere today's products stay,
    // unmeasured there)
    if (type == NURI_TYPE_F16 || type == NURI_TYPE_BF16) return cpu_bf16;
    return type == NURI_TYPE_Q4_0 || type == NURI_TYPE_Q8_0 || type == NURI_TYPE_Q4_K ||
           type == NURI_TYPE_Q6_K || type == NURI_TYPE_IQ4_NL || type == NURI_TYPE_IQ4_XS ||
           type == NURI_TYPE_MXFP4 || type == NURI_TYPE_Q5_K || type == NURI_TYPE_Q3_K ||
           type == NURI_TYPE_Q2_K;
}

/* Bytes of one block of a row group (16 rows' worth). */
static int64_t block_bytes(uint32_t type)
{
    switch (type) {
    case NURI_TYPE_Q8_0:
        return 32 + 512;
    case NURI_TYPE_Q4_0:
    case NURI_TYPE_IQ4_NL: // the same block: an F16 scale and 16 bytes of nibbles
        return 32 + 256;
    case NURI_TYPE_Q4_K:
        return NURI_PACK_Q4_K_BYTES;
    case NURI_TYPE_IQ4_XS:
        return NURI_PACK_IQ4_XS_BYTES;
    case NURI_TYPE_Q5_K:
        return NURI_PACK_Q5_K_BYTES;
    case NURI_TYPE_Q3_K:
        return NURI_PACK_Q3_K_BYTES;
    case NURI_TYPE_Q2_K:
        return NURI_PACK_Q2_K_BYTES;
    case NURI_TYPE_MXFP4: // scales as F32 (an E8M0 exponent does not fit an F16)
        return 64 + 256;
    case NURI_TYPE_F16:
    case NURI_TYPE_BF16: // 16 lines of 16 rows x 2 elements
        return 16 * 64;
    default:
        return NURI_PACK_Q6_K_BYTES;
    }
}

static int64_t block_elems(uint32_t type)
{
    return type == NURI_TYPE_Q4_K || type == NURI_TYPE_Q6_K || type == NURI_TYPE_IQ4_XS ||
                   type == NURI_TYPE_Q5_K || type == NURI_TYPE_Q3_K || type == NURI_TYPE_Q2_K
               ? NURI_QK_K
               : NURI_QK;
}

/* Row r of an F16 or BF16 row group (pack.h): BF16 line k holds elements 2k, 2k + 1 of row r at
 * 4r; F16 line k holds element 2k at 2r and element 2k + 1 at 32 + 2r. */
static void pack_x16f(uint32_t type, const uint8_t *row, int r, int64_t n, uint8_t *out)
{
    for (int64_t k = 0; k < n / 2; k++) {
        if (type == NURI_TYPE_BF16) {
            memcpy(out + 64 * k + 4 * r, row + 4 * k, 4);
        } else {
            memcpy(out + 64 * k + 2 * r, row + 4 * k, 2);
            memcpy(out + 64 * k + 32 + 2 * r, row + 4 * k + 2, 2);
        }
    }
}

static void pack_q6_K(const uint8_t *row, int r, int64_t nb, uint8_t *out)
{
    for (int64_t b = 0; b < nb; b++) {
        const nuri_block_q6_K *blk = (const nuri_block_q6_K *)row + b;
        uint8_t *o = out + b * NURI_PACK_Q6_K_BYTES;
        memcpy(o + 2 * r, &blk->d, 2);
        for (int j = 0; j < 16; j++) o[32 + 16 * j + r] = (uint8_t)blk->scales[j];
        for (int k = 0; k < 32; k++) memcpy(o + 288 + 64 * k + 4 * r, blk->ql + 4 * k, 4);
        for (int k = 0; k < 16; k++) memcpy(o + 2336 + 64 * k + 4 * r, blk->qh + 4 * k, 4);
    }
}

static void pack_iq4_xs(const uint8_t *row, int r, int64_t nb, uint8_t *out)
{
    for (int64_t b = 0; b < nb; b++) {
        const nuri_block_iq4_xs *blk = (const nuri_block_iq4_xs *)row + b;
        uint8_t *o = out + b * NURI_PACK_IQ4_XS_BYTES;
        memcpy(o + 2 * r, &blk->d, 2);
        for (int j = 0; j < 8; j++) {
            int ls = (((blk->scales_l[j / 2] >> 4 * (j % 2)) & 15) | ((blk->scales_h >> 2 * j) & 3)
                                                                         << 4) -
                     32;
            o[32 + 16 * j + r] = (uint8_t)(int8_t)ls;
            for (int i = 0; i < 4; i++)
                memcpy(o + 160 + (j * 4 + i) * 64 + 4 * r, blk->qs + 16 * j + 4 * i, 4);
        }
    }
}

/* Q4_K's packed block from the fields Q4_K and Q5_K share (d, dmin, scales, the low 4 bits). */
static void pack_q4_K_fields(uint16_t d, uint16_t dmin, const uint8_t *scales, const uint8_t *qs,
                             int r, uint8_t *o)
{
    memcpy(o + 2 * r, &d, 2);
    memcpy(o + 32 + 2 * r, &dmin, 2);
    uint8_t sc[8], m[8];
    kernels_scales_mins_q4_K(scales, sc, m);
    for (int j = 0; j < 8; j++) {
        o[64 + 16 * j + r] = sc[j];
        o[192 + 16 * j + r] = m[j];
    }
    for (int c = 0; c < 4; c++)
        for (int i = 0; i < 8; i++)
            memcpy(o + 320 + (c * 8 + i) * 64 + 4 * r, qs + 32 * c + 4 * i, 4);
}

static void pack_q5_K(const uint8_t *row, int r, int64_t nb, uint8_t *out)
{
    for (int64_t b = 0; b < nb; b++) {
        const nuri_block_q5_K *blk = (const nuri_block_q5_K *)row + b;
        uint8_t *o = out + b * NURI_PACK_Q5_K_BYTES;
        pack_q4_K_fields(blk->d, blk->dmin, blk->scales, blk->qs, r, o);
        for (int i = 0; i < 8; i++)
            memcpy(o + NURI_PACK_Q4_K_BYTES + 64 * i + 4 * r, blk->qh + 4 * i, 4);
    }
}

/* Q3_K and Q2_K (pack.h): the scales by pairs of sub-blocks, the 2-bit codes (and Q3_K's hmask)
 * 4 bytes per row per line. */
static void pack_q3_K(const uint8_t *row, int r, int64_t nb, uint8_t *out)
{
    for (int64_t b = 0; b < nb; b++) {
        const nuri_block_q3_K *blk = (const nuri_block_q3_K *)row + b;
        uint8_t *o = out + b * NURI_PACK_Q3_K_BYTES;
        memcpy(o + 2 * r, &blk->d, 2);
        int8_t sc[16];
        kernels_scales_q3_K(blk->scales, sc);
        for (int j = 0; j < 16; j++) o[32 + 32 * (j / 2) + 2 * r + j % 2] = (uint8_t)sc[j];
        for (int k = 0; k < 16; k++) memcpy(o + 288 + 64 * k + 4 * r, blk->qs + 4 * k, 4);
        for (int i = 0; i < 8; i++) memcpy(o + 1312 + 64 * i + 4 * r, blk->hmask + 4 * i, 4);
    }
}

static void pack_q2_K(const uint8_t *row, int r, int64_t nb, uint8_t *out)
{
    for (int64_t b = 0; b < nb; b++) {
        const nuri_block_q2_K *blk = (const nuri_block_q2_K *)row + b;
        uint8_t *o = out + b * NURI_PACK_Q2_K_BYTES;
        memcpy(o + 2 * r, &blk->d, 2);
        memcpy(o + 32 + 2 * r, &blk->dmin, 2);
        for (int j = 0; j < 16; j++) o[64 + 32 * (j / 2) + 2 * r + j % 2] = blk->scales[j];
        for (int k = 0; k < 16; k++) memcpy(o + 320 + 64 * k + 4 * r, blk->qs + 4 * k, 4);
    }
}

static void pack_q4_K(const uint8_t *row, int r, int64_t nb, uint8_t *out)
{
    for (int64_t b = 0; b < nb; b++) {
        const nuri_block_q4_K *blk = (const nuri_block_q4_K *)row + b;
        pack_q4_K_fields(blk->d, blk->dmin, blk->scales, blk->qs, r,
                         out + b * NURI_PACK_Q4_K_BYTES);
    }
}

size_t nuri_pack_bytes(uint32_t type, int64_t n, int64_t n_out)
{
    if (!nuri_pack_supported(type) || n % block_elems(type) || n > NURI_PACK_MAX_N) return 0;
    const int64_t groups = (n_out + NURI_PACK_ROWS - 1) / NURI_PACK_ROWS;
    return (size_t)(groups * (n / block_elems(type)) * block_bytes(type));
}

void nuri_pack(uint32_t type, const void *w, size_t w_stride, int64_t n, int64_t n_out, void *dst)
{
    const int64_t nb = n / block_elems(type),
                  groups = (n_out + NURI_PACK_ROWS - 1) / NURI_PACK_ROWS;
    const int64_t qbytes = block_bytes(type) - 32; // codes per block of the group
    for (int64_t g = 0; g < groups; g++) {
        uint8_t *out = (uint8_t *)dst + g * nb * block_bytes(type);
        uint16_t *d = (uint16_t *)out;
        uint8_t *qs = out + nb * 32;
        memset(out, 0, (size_t)(nb * block_bytes(type)));
        for (int r = 0; r < NURI_PACK_ROWS && g * NURI_PACK_ROWS + r < n_out; r++) {
            const uint8_t *row = (const uint8_t *)w + (size_t)(g * NURI_PACK_ROWS + r) * w_stride;
            if (type == NURI_TYPE_Q4_K || type == NURI_TYPE_Q6_K) {
                (type == NURI_TYPE_Q4_K ? pack_q4_K : pack_q6_K)(row, r, nb, out);
                continue;
            }
            if (type == NURI_TYPE_IQ4_XS) {
                pack_iq4_xs(row, r, nb, out);
                continue;
            }
            if (type == NURI_TYPE_Q5_K) {
                pack_q5_K(row, r, nb, out);
                continue;
            }
            if (type == NURI_TYPE_F16 || type == NURI_TYPE_BF16) {
                pack_x16f(type, row, r, n, out);
                continue;
            }
            if (type == NURI_TYPE_Q3_K || type == NURI_TYPE_Q2_K) {
                (type == NURI_TYPE_Q3_K ? pack_q3_K : pack_q2_K)(row, r, nb, out);
                continue;
            }
            if (type == NURI_TYPE_MXFP4) {
                float *df = (float *)out;
                uint8_t *mq = out + nb * 64;
                for (int64_t b = 0; b < nb; b++) {
                    const nuri_block_mxfp4 *blk = (const nuri_block_mxfp4 *)row + b;
                    df[b * 16 + r] = nuri_e8m0_half(blk->e);
                    for (int64_t k = 0; k < 16; k += 4)
                        memcpy(mq + b * 256 + k * 16 + 4 * r, blk->qs + k, 4);
                }
                continue;
            }
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *src;
                if (type == NURI_TYPE_Q8_0) {
                    const nuri_block_q8_0 *blk = (const nuri_block_q8_0 *)row + b;
                    d[b * 16 + r] = blk->d;
                    src = (const uint8_t *)blk->qs;
                } else { // Q4_0, IQ4_NL: the same block layout
                    const nuri_block_q4_0 *blk = (const nuri_block_q4_0 *)row + b;
                    d[b * 16 + r] = blk->d;
                    src = blk->qs;
                }
                for (int64_t k = 0; k < qbytes / 16; k += 4) // 4 bytes of row r per 64-byte line
                    memcpy(qs + b * qbytes + k * 16 + 4 * r, src + k, 4);
            }
        }
    }
}

void nuri_gemm_packed(uint32_t type, int64_t n, const void *wp, int64_t n_out, int64_t g0,
                      int64_t g1, const void *x, size_t x_stride, int64_t n_t, float *y,
                      int64_t y_stride, bool use_amx)
{
    if (nuri_cpu_isa() < NURI_ISA_AVX512) {
        kernels_packed_gemm_avx2(type, n, wp, n_out, g0, g1, x, x_stride, n_t, y, y_stride, NULL);
        return;
    }
    kernels_packed_gemm_avx512(type, n, wp, n_out, g0, g1, x, x_stride, n_t, y, y_stride,
                               use_amx && nuri_pack_amx(), NULL);
}

long nuri_gemm_packed_items(uint32_t type, int64_t n, int64_t n_out, int64_t n_t)
{
    if (nuri_cpu_isa() < NURI_ISA_AVX512) return kernels_packed_items_avx2(type, n, n_out, n_t);
    return kernels_packed_items_avx512(type, n, n_out, n_t);
}

void nuri_gemm_packed_shared(uint32_t type, int64_t n, const void *wp, int64_t n_out, const void *x,
                             size_t x_stride, int64_t n_t, float *y, int64_t y_stride,
                             const nuri_share *sh)
{
    if (nuri_cpu_isa() < NURI_ISA_AVX512) {
        kernels_packed_gemm_avx2(type, n, wp, n_out, 0, 0, x, x_stride, n_t, y, y_stride, sh);
        return;
    }
    kernels_packed_gemm_avx512(type, n, wp, n_out, 0, 0, x, x_stride, n_t, y, y_stride,
                               nuri_pack_amx(), sh);
}
