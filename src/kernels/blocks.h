/*
 * blocks.h: the block layouts of the quantized types, byte for byte as in GGUF files.
 *
 * A row of a quantized type is an array of blocks; each block holds QK (32) or QK_K (256) elements.
 * All multi-byte fields are little-endian; half-precision scales are F16 bit patterns (fp16.h).
 * Sizes are checked against the type table (types.c) at compile time here and in the tests.
 *
 * Activation types (what a weight row is multiplied with, see kernels.h):
 *   Q8_0  (32):  d = amax/127, q = round_half_even(x * 127/amax), d stored as F16.
 *   Q8_1  (32):  as Q8_0, plus s = F16(d * sum(q)).
 *   Q8_K (256):  max = the x with the largest |x| (first on ties), iscale = -127/max,
 *                q = min(127, round_half_even(iscale * x)), d = 1/iscale (F32),
 *                bsums[j] = sum of q[16j .. 16j+15].
 */
#ifndef NURI_KERNELS_BLOCKS_H
#define NURI_KERNELS_BLOCKS_H

#include <stdint.h>

#define NURI_QK 32           // elements per block of the simple types
#define NURI_QK_K 256        // elements per block of the k-quants
#define NURI_K_SCALE_SIZE 12 // bytes of packed 6-bit scales/mins in Q3_K..Q5_K

/* x = d * (q - 8); element j (0..15) is qs[j] & 15, element j + 16 is qs[j] >> 4. */
typedef struct nuri_block_q4_0 {
    uint16_t d;
    uint8_t qs[NURI_QK / 2];
} nuri_block_q4_0;

/* x = d * q + m, q 0..15, same nibble order as Q4_0. */
typedef struct nuri_block_q4_1 {
    uint16_t d;
    uint16_t m;
    uint8_t qs[NURI_QK / 2];
} nuri_block_q4_1;

/* x = d * (q - 16); q = nibble | (bit j of the little-endian u32 qh) << 4. */
typedef struct nuri_block_q5_0 {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[NURI_QK / 2];
} nuri_block_q5_0;

/* x = d * q + m; q = nibble | bit << 4 (0..31). */
typedef struct nuri_block_q5_1 {
    uint16_t d;
    uint16_t m;
    uint8_t qh[4];
    uint8_t qs[NURI_QK / 2];
} nuri_block_q5_1;

/* x = d * q. */
typedef struct nuri_block_q8_0 {
    uint16_t d;
    int8_t qs[NURI_QK];
} nuri_block_q8_0;

/* x = d * q; s = d * sum(q) (multiplies the min of Q4_1 / Q5_1 blocks). */
typedef struct nuri_block_q8_1 {
    uint16_t d;
    uint16_t s;
    int8_t qs[NURI_QK];
} nuri_block_q8_1;

/* 16 sub-blocks of 16. scales[i]: low nibble scale, high nibble min; q 2-bit;
 * x = d * scale * q - dmin * min. Element 128h + 32j + l (h 0..1, j 0..3, l 0..31) is
 * (qs[32h + l] >> 2j) & 3; sub-block = element / 16. */
typedef struct nuri_block_q2_K {
    uint8_t scales[NURI_QK_K / 16];
    uint8_t qs[NURI_QK_K / 4];
    uint16_t d;
    uint16_t dmin;
} nuri_block_q2_K;

/* 16 sub-blocks of 16, 6-bit scales biased by 32: scale i has low 4 bits in scales[i] (i < 8) or
 * scales[i - 8] >> 4, high 2 bits in (scales[8 + i % 4] >> 2 * (i / 4)) & 3. Element
 * 128h + 32j + l: q = ((qs[32h + l] >> 2j) & 3) - (hmask[l] bit (4h + j) ? 0 : 4);
 * x = d * (scale - 32) * q. */
typedef struct nuri_block_q3_K {
    uint8_t hmask[NURI_QK_K / 8];
    uint8_t qs[NURI_QK_K / 4];
    uint8_t scales[NURI_K_SCALE_SIZE];
    uint16_t d;
} nuri_block_q3_K;

/* 8 sub-blocks of 32, 6-bit scale sc and min m each (packing: kernels_ref.c, unpack_scale_min_k4).
 * Element 64c + l (l < 32) is qs[32c + l] & 15 (sub-block 2c); element 64c + 32 + l is
 * qs[32c + l] >> 4 (sub-block 2c + 1); x = d * sc * q - dmin * m. */
typedef struct nuri_block_q4_K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[NURI_K_SCALE_SIZE];
    uint8_t qs[NURI_QK_K / 2];
} nuri_block_q4_K;

/* As Q4_K with a 5th bit: element 64c + l takes bit 2c of qh[l], element 64c + 32 + l bit 2c + 1.
 */
typedef struct nuri_block_q5_K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[NURI_K_SCALE_SIZE];
    uint8_t qh[NURI_QK_K / 8];
    uint8_t qs[NURI_QK_K / 2];
} nuri_block_q5_K;

/* 16 sub-blocks of 16 with int8 scales; x = d * scale * (q - 32), q 6-bit. In half h (128 elements,
 * ql + 64h, qh + 32h), for l < 32: element l = ql[l] & 15 | (qh[l] & 3) << 4, element 32 + l =
 * ql[32 + l] & 15 | (qh[l] >> 2 & 3) << 4, element 64 + l = ql[l] >> 4 | (qh[l] >> 4 & 3) << 4,
 * element 96 + l = ql[32 + l] >> 4 | (qh[l] >> 6) << 4. Sub-block = element / 16. */
typedef struct nuri_block_q6_K {
    uint8_t ql[NURI_QK_K / 2];
    uint8_t qh[NURI_QK_K / 4];
    int8_t scales[NURI_QK_K / 16];
    uint16_t d;
} nuri_block_q6_K;

/* The non-linear 4-bit grid of IQ4_NL and IQ4_XS (sorted), and MXFP4's E2M1 values doubled
 * (0, 0.5, 1, 1.5, 2, 3, 4, 6 and their negatives, times 2). Facts of the formats. */
static const int8_t nuri_iq4_grid[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                         1,    13,   25,  38,  53,  69,  89,  113};
static const int8_t nuri_fp4_grid[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

/* x = d * iq4_grid[q]; element j (0..15) is qs[j] & 15, element j + 16 is qs[j] >> 4. */
typedef struct nuri_block_iq4_nl {
    uint16_t d;
    uint8_t qs[NURI_QK / 2];
} nuri_block_iq4_nl;

/* 8 sub-blocks of 32, each with a 6-bit scale ls_j = ((scales_l[j / 2] >> 4 (j % 2)) & 15) |
 * ((scales_h >> 2j) & 3) << 4; sub-block j's codes are qs[16j .. 16j + 15] in IQ4_NL's nibble
 * order, x = d * (ls_j - 32) * iq4_grid[q]. */
typedef struct nuri_block_iq4_xs {
    uint16_t d;
    uint16_t scales_h;
    uint8_t scales_l[NURI_QK_K / 64];
    uint8_t qs[NURI_QK_K / 2];
} nuri_block_iq4_xs;

/* x = 2^(e - 128) * fp4_grid[q] (e is an E8M0 exponent, the grid doubled; so 2^(e - 127) times
 * the E2M1 value), nibble order as IQ4_NL. */
typedef struct nuri_block_mxfp4 {
    uint8_t e;
    uint8_t qs[NURI_QK / 2];
} nuri_block_mxfp4;

/* Activations for the k-quants (see the file comment). */
typedef struct nuri_block_q8_K {
    float d;
    int8_t qs[NURI_QK_K];
    int16_t bsums[NURI_QK_K / 16];
} nuri_block_q8_K;

_Static_assert(sizeof(nuri_block_q4_0) == 18, "Q4_0 block size");
_Static_assert(sizeof(nuri_block_q4_1) == 20, "Q4_1 block size");
_Static_assert(sizeof(nuri_block_q5_0) == 22, "Q5_0 block size");
_Static_assert(sizeof(nuri_block_q5_1) == 24, "Q5_1 block size");
_Static_assert(sizeof(nuri_block_q8_0) == 34, "Q8_0 block size");
_Static_assert(sizeof(nuri_block_q8_1) == 36, "Q8_1 block size");
_Static_assert(sizeof(nuri_block_q2_K) == 84, "Q2_K block size");
_Static_assert(sizeof(nuri_block_q3_K) == 110, "Q3_K block size");
_Static_assert(sizeof(nuri_block_q4_K) == 144, "Q4_K block size");
_Static_assert(sizeof(nuri_block_q5_K) == 176, "Q5_K block size");
_Static_assert(sizeof(nuri_block_q6_K) == 210, "Q6_K block size");
_Static_assert(sizeof(nuri_block_q8_K) == 292, "Q8_K block size");
_Static_assert(sizeof(nuri_block_iq4_nl) == 18, "IQ4_NL block size");
_Static_assert(sizeof(nuri_block_iq4_xs) == 136, "IQ4_XS block size");
_Static_assert(sizeof(nuri_block_mxfp4) == 17, "MXFP4 block size");

#endif
