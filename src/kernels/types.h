/*
 * types.h: the tensor element types nuri knows, with their GGUF/ggml type ids and block layouts.
 *
 * This is the one table that says how many bytes a row of n elements of a type takes. The GGUF
 * reader uses it to check tensor sizes; the kernels (kernels.h) add what each type computes with.
 * Ids are the on-disk ggml type ids and must never be renumbered.
 */
#ifndef NURI_KERNELS_TYPES_H
#define NURI_KERNELS_TYPES_H

#include <stdbool.h>
#include <stdint.h>

typedef enum nuri_type {
    NURI_TYPE_F32 = 0,
    NURI_TYPE_F16 = 1,
    NURI_TYPE_Q4_0 = 2,
    NURI_TYPE_Q4_1 = 3,
    NURI_TYPE_Q5_0 = 6,
    NURI_TYPE_Q5_1 = 7,
    NURI_TYPE_Q8_0 = 8,
    NURI_TYPE_Q8_1 = 9,
    NURI_TYPE_Q2_K = 10,
    NURI_TYPE_Q3_K = 11,
    NURI_TYPE_Q4_K = 12,
    NURI_TYPE_Q5_K = 13,
    NURI_TYPE_Q6_K = 14,
    NURI_TYPE_Q8_K = 15,
    NURI_TYPE_IQ2_XXS = 16,
    NURI_TYPE_IQ2_XS = 17,
    NURI_TYPE_IQ3_XXS = 18,
    NURI_TYPE_IQ1_S = 19,
    NURI_TYPE_IQ4_NL = 20,
    NURI_TYPE_IQ3_S = 21,
    NURI_TYPE_IQ2_S = 22,
    NURI_TYPE_IQ4_XS = 23,
    NURI_TYPE_I8 = 24,
    NURI_TYPE_I16 = 25,
    NURI_TYPE_I32 = 26,
    NURI_TYPE_I64 = 27,
    NURI_TYPE_F64 = 28,
    NURI_TYPE_IQ1_M = 29,
    NURI_TYPE_BF16 = 30,
    NURI_TYPE_TQ1_0 = 34,
    NURI_TYPE_TQ2_0 = 35,
    NURI_TYPE_MXFP4 = 39,
    NURI_TYPE_COUNT = 40, // one past the largest id; not every id below it is a type
} nuri_type;

typedef struct nuri_type_info {
    const char *name;    // "Q4_K"; NULL for ids that are not (or no longer) types
    uint32_t block_size; // elements per block
    uint32_t type_size;  // bytes per block
    bool computable;     // nuri has kernels for it (dequantize + dot product)
} nuri_type_info;

/* The row of the table for a type id read from a file, or NULL if the id names no type. */
const nuri_type_info *nuri_type_get(uint32_t type_id);

/* Bytes taken by n elements of the type. Returns false if n is not a whole number of blocks or the
 * size overflows. */
bool nuri_type_row_bytes(uint32_t type_id, uint64_t n, uint64_t *bytes);

#endif
