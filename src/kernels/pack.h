/*
 * pack.h: weights repacked at load time for this CPU's matrix products ("x16" layouts).
 *
 * A packed matrix stores its rows in groups of 16: for each block of 32 elements, the 16 rows'
 * F16 scales side by side, then their codes interleaved 4 bytes per row, so that one 64-byte load
 * holds 4 consecutive codes of each of the 16 rows. That is the operand order of both
 * AVX-512 VNNI (vpdpbusd: 16 int32 lanes, one per row, 4 products each) and AMX (a B tile of
 * 8 rows x 16 columns x 4 bytes), so the two compute each output the same way:
 *
 *   y[t, r] = sum over blocks b in order of  float(isum(t, r, b)) * (d_w[r, b] * d_x[t, b])
 *
 * with isum the exact integer dot product of the block's codes, accumulated by one FMA per block.
 * Integer sums are exact whichever unit computes them and the float steps are the same, so the
 * result never depends on the batch (nuri_gemm_fn's contract) nor on whether AMX ran it.
 * AVX2 without VNNI (pack_avx2.c: Q4_0, Q8_0, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS, MXFP4, Q3_K,
 * Q2_K, and F16 as pack_bf16_avx512.c's F16) reads
 * each 64-byte line as two ymm halves of 8 rows and makes the same integers with vpmaddubsw +
 * vpmaddwd (signed codes and grid values as |w| times x with w's sign, so no +128 offset; IQ4_XS's
 * 8-token tiles as |w| times x ^ m and a weight-only term, pack_avx2.c), then the same float
 * steps: its outputs are bit-identical to the VNNI kernels'.
 *
 * Layouts (row group of 16 rows, nb = n / 32 blocks; rows past the matrix are zero):
 *   Q8_0: d[nb][16] F16, then qs[nb][8][16][4] int8    (544 bytes per block: the file's size)
 *   Q4_0: d[nb][16] F16, then qs[nb][4][16][4] bytes   (288 bytes per block), where byte
 *         (i, r, e) is the file's qs[4i + e] of row r: low nibble code 4i + e, high 16 + 4i + e.
 *   IQ4_NL: as Q4_0 (the same block); the VNNI kernel looks the nibbles up as grid value + 128
 *         and subtracts 128 * sum(x), an exact integer as for Q4_0's - 8. VNNI only (no AMX).
 *   MXFP4: d[nb][16] F32 (2^(e - 128): an E8M0 scale does not fit an F16), then codes as Q4_0's
 *         (320 bytes per block), looked up as FP4 grid (doubled) + 128. VNNI only.
 *   Q4_K: per 256-element block: d[16] F16, dmin[16] F16, sc[8][16] and m[8][16] (the 6-bit
 *         scales and mins unpacked to bytes), qs[4][8][16][4] where byte (c, i, r, e) is the file's
 *         qs[32c + 4i + e] of row r (low nibble: sub-block 2c, high: 2c + 1): 2368 bytes, 2.8%
 *         more than the file's 16 x 144.
 *   Q6_K: per 256-element block: d[16] F16, sc[16][16] int8, ql[32][16][4] where byte (k, r, e) is
 *         the file's ql[4k + e] of row r, qh[16][16][4] likewise: 3360 bytes, the file's size.
 *         Codes of the 32 elements 128h + 32q + 4i + (0..3), i < 8: ql line 16h + 8(q & 1) + i
 *         (low nibble for q < 2, high for q >= 2) and bits 2q, 2q + 1 of qh line 8h + i.
 *   Q5_K: Q4_K's 2368 bytes (scales, mins, low 4 bits), then qh[8][16][4] where byte (i, r, e)
 *         is the file's qh[4i + e] of row r: bit 2c of it is the 5th bit of the code in the
 *         low nibble of line (c, i), bit 2c + 1 of the high one: 2880 bytes, 2.3% more than
 *         the file's 16 x 176. Products as Q4_K's (codes 0..31). VNNI only (no AMX).
 *   IQ4_XS: per 256-element block: d[16] F16, ls[8][16] int8 (the 6-bit sub-block scales minus
 *         32), qs[8][4][16][4] where byte (j, i, r, e) is the file's qs[16j + 4i + e] of row r
 *         (sub-block j; low nibble element 4i + e, high 16 + 4i + e): 2208 bytes, 1.5% more
 *         than the file's 16 x 136. Per sub-block the codes are looked up as grid + 128, the
 *         exact sum minus 128 * (the token's 32-element sum) times ls_j is added as an integer,
 *         then acc = fma(float(f), d * d_x, acc) once per block. VNNI only (no AMX).
 *   Q3_K: per 256-element block: d[16] F16, sc[8][16][2] int8 where byte (p, r, e) is the signed
 *         scale (bias 32 removed) of sub-block 2p + e of row r, ql[16][16][4] where byte
 *         (k, r, e) is the file's qs[4k + e] of row r, qh[8][16][4] likewise the file's
 *         hmask[4i + e]: 1824 bytes, 3.6% more than the file's 16 x 110. Code (0..7 = q + 4) of
 *         element 128h + 32j + 4i + e (i < 8): bits 2j, 2j + 1 of ql line 8h + i and bit 4h + j
 *         of qh line i (as the 3rd bit).
 *   Q2_K: per 256-element block: d[16] F16, dmin[16] F16, sc[8][16][2] where byte (p, r, e) is
 *         the file's scales[2p + e] of row r (scale in the low nibble, min in the high), then ql
 *         as Q3_K's: 1344 bytes, the file's size. VNNI only for both (no AMX); their products
 *         are in pack_q23_avx512.c's comment: exact integer sums per block as Q4_K's, Q3_K's
 *         - 4 folded in as - 4 * sum_j sc_j * bsum_j.
 *   BF16: per 32 elements, 16 lines of 64 bytes; line k holds elements 2k and 2k + 1 of row r as
 *         BF16 at bytes 4r..4r + 3 (1024 bytes per 32 elements: the file's size). One
 *         vdpbf16ps against the activation's BF16 pair broadcast adds both products to row r's
 *         lane. On AVX-512 packed only where the CPU has AVX512_BF16 (F16 too); on AVX2 both
 *         are packed (BF16 widened to F32 and multiplied by FMA, 2k + 1 then 2k, as vdpbf16ps
 *         adds them).
 *   F16: the same size; line k holds element 2k of the 16 rows as F16 (bytes 2r), then element
 *         2k + 1 (bytes 32 + 2r): the weights stay F16 (BF16 would drop 3 mantissa bits), are
 *         widened by vcvtph2ps and multiplied by FMA against the F16 activation widened to F32.
 *   For both, each output is one F32 chain over k in order (a vdpbf16ps, or an FMA for element
 *         2k then one for 2k + 1), whatever tile computes it: batch-invariant. No AMX path.
 * Q4_K's products follow the same rule one level down: per block, f = sum over the 8 sub-blocks j
 * of isum_j * sc_j as an exact integer (as llama.cpp does; AMX folds sc_j into its B tiles as
 * 8 sh + sl), mins = sum_j float(bsum_j) * m_j (exact), then acc = fma(float(f), d * d_x, acc),
 * acc = acc - mins * (dmin * d_x). Q6_K's: f = sum over the 16
 * sub-blocks of float(isum_j) * sc_j, isum_j over the codes minus 32, then acc = fma(f, d * d_x).
 */
#ifndef NURI_PACK_H
#define NURI_PACK_H

#include "base/threadpool.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    NURI_PACK_ROWS = 16,           // rows per group
    NURI_PACK_MAX_N = 65536,       // longest row that is packed
    NURI_PACK_Q4_K_BYTES = 2368,   // one Q4_K block of a row group
    NURI_PACK_Q6_K_BYTES = 3360,   // one Q6_K block of a row group (16 x 210, as the file)
    NURI_PACK_IQ4_XS_BYTES = 2208, // one IQ4_XS block of a row group
    NURI_PACK_Q5_K_BYTES = 2880,   // one Q5_K block: Q4_K's packed block, then its 5th bits
    NURI_PACK_Q3_K_BYTES = 1824,   // one Q3_K block of a row group
    NURI_PACK_Q2_K_BYTES = 1344,   // one Q2_K block of a row group (16 x 84, as the file)
};

/* Whether matrices of this type are packed on this CPU for the ISA the kernels run (nuri_cpu_isa:
 * AVX-512 VNNI, all the types below (F16 and BF16 where the CPU has AVX512_BF16); AVX2, all of
 * them; NURI_ISA caps it, and
 * NURI_PACK=0 turns packing off, for comparisons). */
bool nuri_pack_supported(uint32_t type);
/* Whether AMX tiles run the larger batches (the CPU has AMX-INT8, the OS granted the tile state,
 * and NURI_AMX is not 0). */
bool nuri_pack_amx(void);
/* Whether pack_avx512.c's prompt tiles take one 16-byte activation load and spread its four dwords
 * by vpshufd instead of four broadcast loads (see spread4 there): on AMD Zen 5 (family 1Ah), where
 * it was measured faster; elsewhere not. NURI_PACK_SPREAD=0 or 1 overrides; the outputs are the
 * same either way. nuri_pack_spread_set(0 or 1) overrides too, -1 restores the default (tests). */
bool nuri_pack_spread(void);
void nuri_pack_spread_set(int on);
/* Whether the VNNI kernels take the high bits of Q3_K, Q5_K and Q6_K codes (the 3rd, 5th, 5th
 * and 6th) with one GFNI instruction instead of shifts and masks (gfni_bits in pack_x86.h): where
 * the CPU has GFNI and is an AMD Zen 5 or later, where it was measured faster. NURI_PACK_GFNI=0
 * or 1 overrides, nuri_pack_gfni_set as nuri_pack_spread_set; never on a CPU without GFNI. The
 * outputs are the same either way. */
bool nuri_pack_gfni(void);
void nuri_pack_gfni_set(int on);
/* Bytes of the packed form of n_out rows of n elements (0 if the type is not packed). */
size_t nuri_pack_bytes(uint32_t type, int64_t n, int64_t n_out);
/* Packs n_out rows of n elements (w_stride bytes apart, the file's layout) into dst. */
void nuri_pack(uint32_t type, const void *w, size_t w_stride, int64_t n, int64_t n_out, void *dst);

/*
 * The matrix product over row groups [g0, g1) of a packed matrix with n_out rows:
 * y[t * y_stride + r] for rows r in [16 g0, min(16 g1, n_out)) and tokens t in [0, n_t); x holds
 * n_t rows of the type's vec_dot_type (Q8_0, Q8_K, F16 or BF16), x_stride bytes apart. use_amx =
 * false forces the VNNI path (tests; results are identical). Below AVX-512 (nuri_cpu_isa) the AVX2
 * kernels run.
 */
void nuri_gemm_packed(uint32_t type, int64_t n, const void *wp, int64_t n_out, int64_t g0,
                      int64_t g1, const void *x, size_t x_stride, int64_t n_t, float *y,
                      int64_t y_stride, bool use_amx);

/*
 * The same product with its work shared by a team of threads (nuri_share, threadpool.h): the
 * step has nuri_gemm_packed_items() items (runs of row groups for a chunk of tokens), each thread
 * runs the ones it takes. Every output is computed exactly as by nuri_gemm_packed, by whichever
 * thread takes it.
 */
long nuri_gemm_packed_items(uint32_t type, int64_t n, int64_t n_out, int64_t n_t);
void nuri_gemm_packed_shared(uint32_t type, int64_t n, const void *wp, int64_t n_out, const void *x,
                             size_t x_stride, int64_t n_t, float *y, int64_t y_stride,
                             const nuri_share *sh);

#endif
