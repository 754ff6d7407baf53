/*
 * blocks_iq.h: the block layouts of the grid types IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S
 * and IQ1_M, byte for byte as in GGUF files (little-endian). Every block holds 256 weights in 8
 * sub-blocks of 32; each group of 8 (IQ2, IQ1) or 4 (IQ3) weights is one point of the type's grid
 * (iq_grids.h), times a sign per weight for IQ2 / IQ3, times a scale. The formulas below are the
 * dequantization (kernels_iq.c follows them); "grid[p][k]" is element k of point p, "s_k" is -1
 * where sign bit k is set, else 1.
 */
#ifndef NURI_KERNELS_BLOCKS_IQ_H
#define NURI_KERNELS_BLOCKS_IQ_H

#include "kernels/blocks.h"

#include <stdint.h>

/* 2.0625 bits a weight. Sub-block j is qs[4j .. 4j + 3] read as two little-endian u32 a0, a1:
 * group l (0..3) is point byte l of a0, signs nuri_iq_signs7(a1 >> 7l & 127); scale
 * ls = a1 >> 28; x = d * (0.5 + ls) * 0.25 * grid[p][k] * s_k. */
typedef struct nuri_block_iq2_xxs {
    uint16_t d;
    uint16_t qs[NURI_QK_K / 8];
} nuri_block_iq2_xxs;

/* 2.3125 bits. Group l of sub-block j is qs[4j + l]: point (9 bits) | 7 sign bits << 9; groups 0-1
 * take scale scales[j] & 15, groups 2-3 scales[j] >> 4; x = d * (0.5 + ls) * 0.25 * grid * s. */
typedef struct nuri_block_iq2_xs {
    uint16_t d;
    uint16_t qs[NURI_QK_K / 8];
    uint8_t scales[NURI_QK_K / 32];
} nuri_block_iq2_xs;

/* 2.5625 bits. Group l of sub-block j: point qs[4j + l] | ((qh[j] >> 2l) & 3) << 8, signs (all
 * 8 stored) qs[32 + 4j + l]; scales as IQ2_XS. */
typedef struct nuri_block_iq2_s {
    uint16_t d;
    uint8_t qs[NURI_QK_K / 4];
    uint8_t qh[NURI_QK_K / 32];
    uint8_t scales[NURI_QK_K / 32];
} nuri_block_iq2_s;

/* 3.0625 bits. qs[0 .. 63]: points of 4 weights, 8 a sub-block; qs[64 + 4j ..] a little-endian
 * u32 a: group l (8 weights = points qs[8j + 2l], qs[8j + 2l + 1]) has signs
 * nuri_iq_signs7(a >> 7l & 127); ls = a >> 28; x = d * (0.5 + ls) * 0.5 * grid * s. */
typedef struct nuri_block_iq3_xxs {
    uint16_t d;
    uint8_t qs[3 * NURI_QK_K / 8];
} nuri_block_iq3_xxs;

/* 3.4375 bits. Sub-block j, group l: points qs[8j + 2l] | (qh[j] >> 2l & 1) << 8 and
 * qs[8j + 2l + 1] | (qh[j] >> (2l + 1) & 1) << 8, signs signs[4j + l] (all 8 stored); scale
 * ls = scales[j / 2] >> 4 (j % 2) & 15; x = d * (1 + 2 ls) * grid * s. */
typedef struct nuri_block_iq3_s {
    uint16_t d;
    uint8_t qs[NURI_QK_K / 4];
    uint8_t qh[NURI_QK_K / 32];
    uint8_t signs[NURI_QK_K / 8];
    uint8_t scales[NURI_QK_K / 64];
} nuri_block_iq3_s;

/* 1.5625 bits. Sub-block j, group l: point qs[4j + l] | (qh[j] >> 3l & 7) << 8; ls = qh[j] >> 12
 * & 7; delta = -1/8 if qh[j] bit 15 else +1/8; x = d * (2 ls + 1) * (grid[p][k] + delta). */
typedef struct nuri_block_iq1_s {
    uint16_t d;
    uint8_t qs[NURI_QK_K / 8];
    uint16_t qh[NURI_QK_K / 32];
} nuri_block_iq1_s;

/* 1.75 bits. No d field: the F16 block scale is the top nibbles of the four little-endian u16
 * sc[i] of scales (sc[0] >> 12 lowest). Sub-block j, group l: point qs[4j + l] |
 * (qh[2j + l / 2] >> 4 (l % 2) & 7) << 8, delta sign bit 3 + 4 (l % 2) of that byte; groups 0-1
 * take ls = sc[j / 2] >> 6 (j % 2) & 7, groups 2-3 sc[j / 2] >> (6 (j % 2) + 3) & 7;
 * x = d * (2 ls + 1) * (grid + delta). */
typedef struct nuri_block_iq1_m {
    uint8_t qs[NURI_QK_K / 8];
    uint8_t qh[NURI_QK_K / 16];
    uint8_t scales[NURI_QK_K / 32];
} nuri_block_iq1_m;

_Static_assert(sizeof(nuri_block_iq2_xxs) == 66, "IQ2_XXS block size");
_Static_assert(sizeof(nuri_block_iq2_xs) == 74, "IQ2_XS block size");
_Static_assert(sizeof(nuri_block_iq2_s) == 82, "IQ2_S block size");
_Static_assert(sizeof(nuri_block_iq3_xxs) == 98, "IQ3_XXS block size");
_Static_assert(sizeof(nuri_block_iq3_s) == 110, "IQ3_S block size");
_Static_assert(sizeof(nuri_block_iq1_s) == 50, "IQ1_S block size");
_Static_assert(sizeof(nuri_block_iq1_m) == 56, "IQ1_M block size");

#endif
