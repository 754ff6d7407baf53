/*
 * pack_amx.c: packed (x16) Q4_0 / Q8_0 / Q4_K / Q6_K matrix products on AMX tiles, 16 tokens x 16
 * rows per tile product (pack.h). Only called when nuri_pack_amx() said yes.
 *
 * Q4_0 / Q8_0 (the k-quants are described before their kernels below):
 * For each block of 32 elements: A = the 16 tokens' activation codes (512 contiguous bytes of the
 * panel pack_avx512.c makes per chunk of tokens), B = the 16 rows' codes as signed bytes (Q8_0: the
 * packed codes as they are; Q4_0: unpacked once per row group to code - 8), C = A.B (tdpbssd: exact
 * int32). C goes through memory into the same float step the VNNI kernel does, per token: acc =
 * fma(float(C row), d_w * d_x, acc), so both give identical results. Pairs of blocks go through a
 * three-stage pipeline (multiply, store, scale) so the tile unit works while the vector unit
 * scales.
 */
#include "kernels/pack_x86.h"
#include "kernels/types.h"

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

typedef struct tilecfg {
    uint8_t palette;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tilecfg;

void kernels_amx_group(uint32_t type, int64_t nb, const uint8_t *grp, const uint8_t *panel,
                       int64_t n16, const float *da, int64_t ts, uint8_t *scratch, float *y,
                       int64_t y_stride, int rows, const uint8_t *next);

/* Prefetches (into L2) the part of the next row group (64-byte lines [0, lines) at next) that is
 * due after `step` of `steps` steps of this one: spread over the group's work, so that the next
 * group's first pass does not wait on DRAM. */
static inline void prefetch_next(const uint8_t *next, int64_t lines, int64_t step, int64_t steps,
                                 int64_t *done)
{
    if (!next) return;
    const int64_t want = lines * step / steps;
    for (; *done < want; ++*done) _mm_prefetch((const char *)next + 64 * *done, _MM_HINT_T1);
}

/* Palette 1: tiles 0, 1 = A (16 tokens x k codes), 2, 3 = B (k / 4 rows of 16 rows x 4 codes),
 * 4..7 = C (16 x 16 int32): two products in flight, each with its own A, B and two C sets. */
static void tiles_config(int k)
{
    __attribute__((aligned(64))) tilecfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int i = 0; i < 2; i++) {
        cfg.rows[i] = 16;
        cfg.colsb[i] = (uint16_t)k;
        cfg.rows[2 + i] = (uint8_t)(k / 4);
        cfg.colsb[2 + i] = 64;
    }
    for (int i = 4; i < 8; i++) {
        cfg.rows[i] = 16;
        cfg.colsb[i] = 64;
    }
    // GCC 12 does not see ldtilecfg read cfg and may drop the stores above as dead (then the
    // first tile instruction faults): make the memory visible first
    __asm__ volatile("" : : "m"(cfg) : "memory");
    _tile_loadconfig(&cfg);
}

/* The float step of one block for 16 tokens: c holds the 16 x 16 int32 results. */
static inline __attribute__((always_inline)) void
scale_block(const int32_t *c, __m512 dw, const float *da, int64_t ts, __m512 acc[16])
{
#pragma GCC unroll 16
    for (int t = 0; t < 16; t++) {
        const __m512 ds = _mm512_mul_ps(dw, _mm512_set1_ps(da[t * ts]));
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(c + 16 * t)), ds, acc[t]);
    }
}

static inline __m512 scales_of(const uint16_t *dg, int64_t b)
{
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(dg + 16 * b)));
}

void kernels_amx_group(uint32_t type, int64_t nb, const uint8_t *grp, const uint8_t *panel,
                       int64_t n16, const float *da, int64_t ts, uint8_t *scratch, float *y,
                       int64_t y_stride, int rows, const uint8_t *next)
{
    const uint16_t *dg = (const uint16_t *)grp;
    const uint8_t *qg = grp + nb * 32;
    const uint8_t *bq = qg;
    // results of two pairs of blocks: the pair being computed and the one being scaled
    int32_t *cbuf[2] = {(int32_t *)scratch, (int32_t *)scratch + 512};
    if (type == NURI_TYPE_Q4_0) {
        uint8_t *u = scratch + 4096;
        const __m512i m4 = _mm512_set1_epi8(15), eight = _mm512_set1_epi8(8);
        for (int64_t b = 0; b < nb; b++)
            for (int i = 0; i < 4; i++) {
                const __m512i v = _mm512_loadu_si512(qg + b * 256 + 64 * i);
                _mm512_store_si512(u + b * 512 + 64 * i,
                                   _mm512_sub_epi8(_mm512_and_si512(v, m4), eight));
                _mm512_store_si512(
                    u + b * 512 + 256 + 64 * i,
                    _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(v, 4), m4), eight));
            }
        bq = u;
    }
    tiles_config(32);
    const __mmask16 rmask = (__mmask16)((1u << rows) - 1);
    const int64_t np = (nb + 1) / 2;
    const int64_t pf_lines = nb * (type == NURI_TYPE_Q4_0 ? 288 : 544) / 64;
    int64_t pf_done = 0;
    for (int64_t s = 0; s < n16; s++) {
        const uint8_t *xs = panel + s * nb * 512; // A tiles of this token group, 512 bytes each
        const float *das = da + 16 * s * ts;
        __m512 acc[16];
#pragma GCC unroll 16
        for (int t = 0; t < 16; t++) acc[t] = _mm512_setzero_ps();
            // A three-stage pipeline over pairs of blocks, so that no instruction waits for the one
            // just before it: iteration p multiplies pair p (C tiles 4, 5 or 6, 7 by parity),
            // stores pair p - 1's results, and scales pair p - 2's, which were stored an iteration
            // ago.
#define AMX_PAIR(C0, C1)                                                                           \
    do {                                                                                           \
        const int64_t b = 2 * p;                                                                   \
        _tile_zero(C0);                                                                            \
        _tile_loadd(0, xs + b * 512, 32);                                                          \
        _tile_loadd(2, bq + b * 512, 64);                                                          \
        _tile_dpbssd(C0, 0, 2);                                                                    \
        if (b + 1 < nb) {                                                                          \
            _tile_zero(C1);                                                                        \
            _tile_loadd(1, xs + (b + 1) * 512, 32);                                                \
            _tile_loadd(3, bq + (b + 1) * 512, 64);                                                \
            _tile_dpbssd(C1, 1, 3);                                                                \
        }                                                                                          \
    } while (0)
#define AMX_STORE(C0, C1)                                                                          \
    do {                                                                                           \
        int32_t *c = cbuf[(p - 1) & 1];                                                            \
        _tile_stored(C0, c, 64);                                                                   \
        if (2 * (p - 1) + 1 < nb) _tile_stored(C1, c + 256, 64);                                   \
    } while (0)
        for (int64_t p = 0; p <= np + 1; p++) {
            prefetch_next(next, pf_lines, s * (np + 2) + p + 1, n16 * (np + 2), &pf_done);
            if (p < np) {
                if (p & 1)
                    AMX_PAIR(6, 7);
                else
                    AMX_PAIR(4, 5);
            }
            if (p >= 1 && p <= np) {
                if ((p - 1) & 1)
                    AMX_STORE(6, 7);
                else
                    AMX_STORE(4, 5);
            }
            if (p >= 2) {
                const int64_t b = 2 * (p - 2);
                const int32_t *c = cbuf[p & 1];
                scale_block(c, scales_of(dg, b), das + b, ts, acc);
                if (b + 1 < nb) scale_block(c + 256, scales_of(dg, b + 1), das + b + 1, ts, acc);
            }
        }
#undef AMX_PAIR
#undef AMX_STORE
#pragma GCC unroll 16
        for (int t = 0; t < 16; t++)
            _mm512_mask_storeu_ps(y + (16 * s + t) * y_stride, rmask, acc[t]);
    }
    _tile_release();
}

/* ======================================================================================== */
/* The k-quants (pack.h): Q4_K blocks are 8 sub-blocks of 32 codes, Q6_K 16 of 16. Each kernel  */
/* first unpacks its row group's codes into B tiles in the scratch (Q4_K: codes times the       */
/* halves of their sub-block scales, see kernels_amx_group_q4_K; Q6_K: code - 32) and the       */
/* per-block numbers its float step needs, then runs the products and the VNNI kernels' float   */
/* steps.                                                                                       */
/* ======================================================================================== */

void kernels_amx_group_q4_K(int64_t nb, const uint8_t *grp, const uint8_t *panel, int64_t n16,
                            const float *da, const float *bsf, int64_t ts, uint8_t *scratch,
                            float *y, int64_t y_stride, int rows, const uint8_t *next);
void kernels_amx_group_q6_K(int64_t nb, const uint8_t *grp, const uint8_t *panel, int64_t n16,
                            const float *da, int64_t ts, uint8_t *scratch, float *y,
                            int64_t y_stride, int rows, const uint8_t *next);

enum {
    Q4_K_BYTES = 2368, // NURI_PACK_Q4_K_BYTES
    Q6_K_BYTES = 3360, // NURI_PACK_Q6_K_BYTES
};

/* Scratch: two C buffers (4 KiB), accumulators (1 KiB, padded to 4), then the B tiles (Q6_K:
 * 16 x n bytes, then the per-block float scales, 256 a block; Q4_K: 32 x n bytes, then the
 * mins, 128 floats a block). */
static inline uint8_t *kq_tiles(uint8_t *scratch)
{
    return scratch + 8192;
}
static inline float *kq_scales(uint8_t *scratch, int64_t nb)
{
    return (float *)(kq_tiles(scratch) + (size_t)nb * 4096);
}

/* Q6_K's products over the unpacked B tiles: 16-deep (a sub-block of 16 codes, each with its
 * float scale, the block's 256 floats in the scratch), f = sum_j float(C_j) * sc_j in sub-block
 * order, then per block acc = fma(f, d * d_x, acc). */
static void amx_q6_K(int64_t nb, const uint8_t *grp, const uint8_t *panel, int64_t n16,
                     const float *da, int64_t ts, uint8_t *scratch, float *y, int64_t y_stride,
                     int rows, const uint8_t *next)
{
    enum { SUB = 16, NSUB = 16 }; // codes per sub-block, sub-blocks per block
    const int64_t pf_lines = nb * Q6_K_BYTES / 64;
    int64_t pf_done = 0;
    int32_t *cbuf[2] = {(int32_t *)scratch, (int32_t *)scratch + 512};
    float *accbuf = (float *)(scratch + 4096);
    const uint8_t *bq = kq_tiles(scratch);
    const float *scales = kq_scales(scratch, nb);
    const int64_t tile = 16 * SUB; // bytes of an A or B tile
    tiles_config(SUB);
    const __mmask16 rmask = (__mmask16)((1u << rows) - 1);
    const int64_t nu = nb * NSUB / 2; // units: pairs of sub-blocks (2u, 2u + 1) in block order
    for (int64_t s = 0; s < n16; s++) {
        const uint8_t *xs = panel + s * nb * NSUB * tile;
        memset(accbuf, 0, 1024);
        __m512 f[16];
#pragma GCC unroll 16
        for (int t = 0; t < 16; t++) f[t] = _mm512_setzero_ps();
            // the three-stage pipeline of kernels_amx_group, over pairs of sub-blocks
#define AMX_UNIT(C0, C1)                                                                           \
    do {                                                                                           \
        _tile_zero(C0);                                                                            \
        _tile_zero(C1);                                                                            \
        _tile_loadd(0, xs + 2 * p * tile, SUB);                                                    \
        _tile_loadd(2, bq + 2 * p * tile, 64);                                                     \
        _tile_dpbssd(C0, 0, 2);                                                                    \
        _tile_loadd(1, xs + (2 * p + 1) * tile, SUB);                                              \
        _tile_loadd(3, bq + (2 * p + 1) * tile, 64);                                               \
        _tile_dpbssd(C1, 1, 3);                                                                    \
    } while (0)
#define AMX_UNIT_STORE(C0, C1)                                                                     \
    do {                                                                                           \
        _tile_stored(C0, cbuf[(p - 1) & 1], 64);                                                   \
        _tile_stored(C1, cbuf[(p - 1) & 1] + 256, 64);                                             \
    } while (0)
        for (int64_t p = 0; p <= nu + 1; p++) {
            prefetch_next(next, pf_lines, s * (nu + 2) + p + 1, n16 * (nu + 2), &pf_done);
            if (p < nu) {
                if (p & 1)
                    AMX_UNIT(6, 7);
                else
                    AMX_UNIT(4, 5);
            }
            if (p >= 1 && p <= nu) {
                if ((p - 1) & 1)
                    AMX_UNIT_STORE(6, 7);
                else
                    AMX_UNIT_STORE(4, 5);
            }
            if (p < 2) continue;
            const int64_t u = p - 2, b = u / (NSUB / 2);
            const int j = 2 * (int)(u % (NSUB / 2));
            const int32_t *c = cbuf[p & 1];
            const float *scf = scales + b * 256;
            const __m512 s0 = _mm512_load_ps(scf + 16 * j), s1 = _mm512_load_ps(scf + 16 * j + 16);
#pragma GCC unroll 16
            for (int t = 0; t < 16; t++) {
                f[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(c + 16 * t)), s0, f[t]);
                f[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(c + 256 + 16 * t)), s1,
                                       f[t]);
            }
            if (j != NSUB - 2) continue;
            // the block's last pair: its scale
            const uint8_t *kb = grp + b * Q6_K_BYTES;
            const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)kb));
#pragma GCC unroll 16
            for (int t = 0; t < 16; t++) {
                const __m512 dx = _mm512_set1_ps(da[(16 * s + t) * ts + b]);
                __m512 acc = _mm512_load_ps(accbuf + 16 * t);
                acc = _mm512_fmadd_ps(f[t], _mm512_mul_ps(dw, dx), acc);
                _mm512_store_ps(accbuf + 16 * t, acc);
                f[t] = _mm512_setzero_ps();
            }
        }
#undef AMX_UNIT
#undef AMX_UNIT_STORE
        for (int t = 0; t < 16; t++)
            _mm512_mask_storeu_ps(y + (16 * s + t) * y_stride, rmask,
                                  _mm512_load_ps(accbuf + 16 * t));
    }
    _tile_release();
}

/* 16 bytes as 16 floats (unsigned or signed). */
static inline __m512 bytes_u(const uint8_t *p)
{
    return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p)));
}
static inline __m512 bytes_s(const uint8_t *p)
{
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p)));
}

/*
 * Q4_K with its sub-block scales inside the integer products. A scale sc (6 bits) is 8 sh + sl
 * (3 bits each), and code x sh, code x sl are at most 15 x 7 = 105: bytes. So per pair c of
 * sub-blocks a block has two B tiles of 64 codes, "high" (code x sh) and "low" (code x sl), and
 * one A tile (the 16 tokens' 64 codes of the pair); over the block's 4 pairs
 *   C_hi = sum_c A_c . B_hi_c,  C_lo = sum_c A_c . B_lo_c,  8 C_hi + C_lo = sum_j sc_j isum_j
 * exactly: the integer the VNNI kernel adds up with vpmulld. 8 products (16 x 16 x 64) and two
 * tile stores per block, against 8 products of half the depth, 8 stores and 8 float steps when
 * each sub-block went through floats. Then the float step of the VNNI kernel:
 * acc = fma(float(f), d * d_x, acc), acc = acc - mins * (dmin * d_x).
 */
void kernels_amx_group_q4_K(int64_t nb, const uint8_t *grp, const uint8_t *panel, int64_t n16,
                            const float *da, const float *bsf, int64_t ts, uint8_t *scratch,
                            float *y, int64_t y_stride, int rows, const uint8_t *next)
{
    uint8_t *bq = kq_tiles(scratch); // per block and pair: B_hi, B_lo (1 KiB each)
    float *mins_f = (float *)(bq + (size_t)nb * 8192); // per block: m[8][16] as floats
    const __m512i m4 = _mm512_set1_epi8(15), m7 = _mm512_set1_epi8(7);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *kb = grp + b * Q4_K_BYTES;
        for (int c = 0; c < 4; c++) {
            // each row's 4 bytes of a line are two 16-bit lanes: scale factors per lane
            __m512i sh[2], sl[2];
            for (int h = 0; h < 2; h++) {
                const __m512i sc = _mm512_cvtepu8_epi32(
                    _mm_loadu_si128((const __m128i *)(kb + 64 + 16 * (2 * c + h))));
                const __m512i hi = _mm512_srli_epi32(sc, 3), lo = _mm512_and_si512(sc, m7);
                sh[h] = _mm512_or_si512(hi, _mm512_slli_epi32(hi, 16));
                sl[h] = _mm512_or_si512(lo, _mm512_slli_epi32(lo, 16));
            }
            uint8_t *th = bq + (b * 4 + c) * 2048, *tl = th + 1024;
            for (int i = 0; i < 8; i++) {
                const __m512i v = _mm512_loadu_si512(kb + 320 + (c * 8 + i) * 64);
                const __m512i q0 = _mm512_and_si512(v, m4); // sub-block 2c, codes 4i..4i+3
                const __m512i q1 = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4); // 2c + 1
                // bytes stay bytes: code x factor <= 105 never carries into the next byte
                _mm512_store_si512(th + 64 * i, _mm512_mullo_epi16(q0, sh[0]));
                _mm512_store_si512(th + 64 * (8 + i), _mm512_mullo_epi16(q1, sh[1]));
                _mm512_store_si512(tl + 64 * i, _mm512_mullo_epi16(q0, sl[0]));
                _mm512_store_si512(tl + 64 * (8 + i), _mm512_mullo_epi16(q1, sl[1]));
            }
        }
        for (int j = 0; j < 8; j++)
            _mm512_store_ps(mins_f + b * 128 + 16 * j, bytes_u(kb + 192 + 16 * j));
    }
    int32_t *cbuf[2] = {(int32_t *)scratch, (int32_t *)scratch + 512};
    tiles_config(64);
    const __mmask16 rmask = (__mmask16)((1u << rows) - 1);
    const int64_t ni = n16 * nb; // steps: (token group, block), blocks inner
    const int64_t pf_lines = nb * Q4_K_BYTES / 64;
    int64_t pf_done = 0;
    __m512 acc[16];
#pragma GCC unroll 16
    for (int t = 0; t < 16; t++) acc[t] = _mm512_setzero_ps();
        // the three-stage pipeline of kernels_amx_group, over (token group, block) steps
#define AMX_BLOCK(CH, CL)                                                                          \
    do {                                                                                           \
        const int64_t s = i / nb, b = i % nb;                                                      \
        const uint8_t *xa = panel + (s * nb + b) * 4096;                                           \
        const uint8_t *tb = bq + b * 8192;                                                         \
        _tile_zero(CH);                                                                            \
        _tile_zero(CL);                                                                            \
        _tile_loadd(0, xa, 64);                                                                    \
        _tile_loadd(2, tb, 64);                                                                    \
        _tile_dpbssd(CH, 0, 2);                                                                    \
        _tile_loadd(3, tb + 1024, 64);                                                             \
        _tile_dpbssd(CL, 0, 3);                                                                    \
        _tile_loadd(1, xa + 1024, 64);                                                             \
        _tile_loadd(2, tb + 2048, 64);                                                             \
        _tile_dpbssd(CH, 1, 2);                                                                    \
        _tile_loadd(3, tb + 3072, 64);                                                             \
        _tile_dpbssd(CL, 1, 3);                                                                    \
        _tile_loadd(0, xa + 2048, 64);                                                             \
        _tile_loadd(2, tb + 4096, 64);                                                             \
        _tile_dpbssd(CH, 0, 2);                                                                    \
        _tile_loadd(3, tb + 5120, 64);                                                             \
        _tile_dpbssd(CL, 0, 3);                                                                    \
        _tile_loadd(1, xa + 3072, 64);                                                             \
        _tile_loadd(2, tb + 6144, 64);                                                             \
        _tile_dpbssd(CH, 1, 2);                                                                    \
        _tile_loadd(3, tb + 7168, 64);                                                             \
        _tile_dpbssd(CL, 1, 3);                                                                    \
    } while (0)
#define AMX_BLOCK_STORE(CH, CL)                                                                    \
    do {                                                                                           \
        _tile_stored(CH, cbuf[(i - 1) & 1], 64);                                                   \
        _tile_stored(CL, cbuf[(i - 1) & 1] + 256, 64);                                             \
    } while (0)
    for (int64_t i = 0; i <= ni + 1; i++) {
        prefetch_next(next, pf_lines, i + 1, ni + 2, &pf_done);
        // the float step of step i - 2 first: it is independent of the tile work below, which
        // then runs while the vector units finish it
        if (i >= 2) {
            const int64_t s = (i - 2) / nb, b = (i - 2) % nb;
            const int32_t *c = cbuf[i & 1];
            const uint8_t *kb = grp + b * Q4_K_BYTES;
            const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)kb));
            const __m512 dm = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(kb + 32)));
            const float *mf = mins_f + b * 128;
#pragma GCC unroll 16
            for (int t = 0; t < 16; t++) {
                const __m512i f =
                    _mm512_add_epi32(_mm512_slli_epi32(_mm512_load_si512(c + 16 * t), 3),
                                     _mm512_load_si512(c + 256 + 16 * t));
                const __m512 dx = _mm512_set1_ps(da[(16 * s + t) * ts + b]);
                const float *bs = bsf + ((16 * s + t) * ts + b) * 8;
                __m512 mins = _mm512_setzero_ps();
                for (int j = 0; j < 8; j++)
                    mins =
                        _mm512_fmadd_ps(_mm512_set1_ps(bs[j]), _mm512_load_ps(mf + 16 * j), mins);
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(f), _mm512_mul_ps(dw, dx), acc[t]);
                acc[t] = _mm512_fnmadd_ps(mins, _mm512_mul_ps(dm, dx), acc[t]);
            }
            if (b == nb - 1) {
#pragma GCC unroll 16
                for (int t = 0; t < 16; t++) {
                    _mm512_mask_storeu_ps(y + (16 * s + t) * y_stride, rmask, acc[t]);
                    acc[t] = _mm512_setzero_ps();
                }
            }
        }
        if (i < ni) {
            if (i & 1)
                AMX_BLOCK(6, 7);
            else
                AMX_BLOCK(4, 5);
        }
        if (i >= 1 && i <= ni) {
            if ((i - 1) & 1)
                AMX_BLOCK_STORE(6, 7);
            else
                AMX_BLOCK_STORE(4, 5);
        }
    }
#undef AMX_BLOCK
#undef AMX_BLOCK_STORE
    _tile_release();
}

void kernels_amx_group_q6_K(int64_t nb, const uint8_t *grp, const uint8_t *panel, int64_t n16,
                            const float *da, int64_t ts, uint8_t *scratch, float *y,
                            int64_t y_stride, int rows, const uint8_t *next)
{
    uint8_t *bq = kq_tiles(scratch);
    float *scales = kq_scales(scratch, nb);
    const __m512i bias = _mm512_set1_epi8(32);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *kb = grp + b * Q6_K_BYTES;
        for (int g = 0; g < 8; g++) {
            __m512i c[8];
            q6_K_codes(kb, g / 4, g % 4, 0, c);
            for (int i = 0; i < 8; i++)
                _mm512_store_si512(bq + (b * 16 + 2 * g + i / 4) * 256 + 64 * (i % 4),
                                   _mm512_sub_epi8(c[i], bias));
        }
        for (int j = 0; j < 16; j++)
            _mm512_store_ps(scales + b * 256 + 16 * j, bytes_s(kb + 32 + 16 * j));
    }
    amx_q6_K(nb, grp, panel, n16, da, ts, scratch, y, y_stride, rows, next);
}
