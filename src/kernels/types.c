/*
 * types.c: the type table (names, block sizes, bytes per block) for every ggml type id.
 * Block sizes and byte counts are the GGUF format's; see the block structs in kernels/blocks.h.
 */
#include "kernels/types.h"

#include <stddef.h>

static const nuri_type_info type_table[NURI_TYPE_COUNT] = {
    [NURI_TYPE_F32] = {"F32", 1, 4, true},
    [NURI_TYPE_F16] = {"F16", 1, 2, true},
    [NURI_TYPE_Q4_0] = {"Q4_0", 32, 18, true},
    [NURI_TYPE_Q4_1] = {"Q4_1", 32, 20, true},
    [NURI_TYPE_Q5_0] = {"Q5_0", 32, 22, true},
    [NURI_TYPE_Q5_1] = {"Q5_1", 32, 24, true},
    [NURI_TYPE_Q8_0] = {"Q8_0", 32, 34, true},
    [NURI_TYPE_Q8_1] = {"Q8_1", 32, 36, false},
    [NURI_TYPE_Q2_K] = {"Q2_K", 256, 84, true},
    [NURI_TYPE_Q3_K] = {"Q3_K", 256, 110, true},
    [NURI_TYPE_Q4_K] = {"Q4_K", 256, 144, true},
    [NURI_TYPE_Q5_K] = {"Q5_K", 256, 176, true},
    [NURI_TYPE_Q6_K] = {"Q6_K", 256, 210, true},
    [NURI_TYPE_Q8_K] = {"Q8_K", 256, 292, false},
    [NURI_TYPE_IQ2_XXS] = {"IQ2_XXS", 256, 66, true},
    [NURI_TYPE_IQ2_XS] = {"IQ2_XS", 256, 74, true},
    [NURI_TYPE_IQ3_XXS] = {"IQ3_XXS", 256, 98, true},
    [NURI_TYPE_IQ1_S] = {"IQ1_S", 256, 50, true},
    [NURI_TYPE_IQ4_NL] = {"IQ4_NL", 32, 18, true},
    [NURI_TYPE_IQ3_S] = {"IQ3_S", 256, 110, true},
    [NURI_TYPE_IQ2_S] = {"IQ2_S", 256, 82, true},
    [NURI_TYPE_IQ4_XS] = {"IQ4_XS", 256, 136, true},
    [NURI_TYPE_I8] = {"I8", 1, 1, false},
    [NURI_TYPE_I16] = {"I16", 1, 2, false},
    [NURI_TYPE_I32] = {"I32", 1, 4, false},
    [NURI_TYPE_I64] = {"I64", 1, 8, false},
    [NURI_TYPE_F64] = {"F64", 1, 8, false},
    [NURI_TYPE_IQ1_M] = {"IQ1_M", 256, 56, true},
    [NURI_TYPE_BF16] = {"BF16", 1, 2, true},
    [NURI_TYPE_TQ1_0] = {"TQ1_0", 256, 54, false},
    [NURI_TYPE_TQ2_0] = {"TQ2_0", 256, 66, false},
    [NURI_TYPE_MXFP4] = {"MXFP4", 32, 17, true},
};

const nuri_type_info *nuri_type_get(uint32_t type_id)
{
    if (type_id >= NURI_TYPE_COUNT || type_table[type_id].name == NULL) return NULL;
    return &type_table[type_id];
}

bool nuri_type_row_bytes(uint32_t type_id, uint64_t n, uint64_t *bytes)
{
    const nuri_type_info *t = nuri_type_get(type_id);
    if (!t || n % t->block_size != 0) return false;
    return !__builtin_mul_overflow(n / t->block_size, (uint64_t)t->type_size, bytes);
}
