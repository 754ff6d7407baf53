/*
 * quantize.h: converting a GGUF model's weights to another type or to a mix (`nuri quantize`).
 *
 * Every 2-D tensor is converted (dequantized to F32 with its type's to_float, then quantized with
 * the target type's from_float, kernels/kernels.h); 1-D tensors (norms, biases) are copied as they
 * are; metadata is copied, with general.file_type set to llama.cpp's number for the target. In a
 * model without output.weight, token_embd is the output layer and is picked as "output".
 */
#ifndef NURI_MODEL_QUANTIZE_H
#define NURI_MODEL_QUANTIZE_H

#include "base/progress.h"
#include "nuri.h"

#include <stdbool.h>
#include <stdint.h>

/* The names `nuri quantize` accepts: the computable weight types (F32 F16 BF16 Q8_0 Q4_0 Q4_1
 * Q5_0 Q5_1 Q2_K Q3_K Q4_K Q5_K Q6_K IQ4_NL IQ4_XS MXFP4) and the mixes Q4_K_M, Q5_K_M and
 * MXFP4_MOE. */
bool nuri_quant_name_ok(const char *name);

/* The type a 2-D tensor gets under `name` (a type or a mix). `kind` is the tensor's role without
 * the block prefix and ".weight" ("attn_v", "ffn_down", "output", "token_embd", ...), il its layer
 * (-1 outside the blocks; an expert tensor's kind ends in "_exps"), n_layer the model's layer
 * count, n_in its row length. Q4_K_M / Q5_K_M follow the usual recipe: Q6_K for the output and for
 * attn_v / ffn_down in the first and last eighth of the layers and every third layer between;
 * experts as the dense matrix of their kind. MXFP4_MOE (gpt-oss's files): experts MXFP4, every
 * other matrix (output and embeddings included) Q8_0. pure: every tensor gets the named type
 * (mixes are not pure). The grid types below 4 bits (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S,
 * IQ1_S, IQ1_M) are mixes too unless pure: the feed-forward matrices (ffn_*, experts included;
 * routers are never converted) take the type, the output Q6_K, everything else Q8_0. Rows that are
 * not a whole number of blocks fall back to a 32-element type of similar size (Q2_K..Q4_K -> Q5_0,
 * Q5_K -> Q5_1, IQ4_XS and the grid types above -> IQ4_NL, else Q8_0; F16/BF16/F32 always fit). */
uint32_t nuri_quant_pick_type(const char *name, bool pure, const char *kind, int il, int n_layer,
                              int64_t n_in);

typedef struct nuri_quant_stats {
    uint64_t n_tensors, n_converted; // tensors in the file, 2-D tensors converted
    uint64_t bytes_in, bytes_out;    // tensor data
    bool already_quantized;          // refused: the source is quantized (no allow_requantize)
} nuri_quant_stats;

/* Reads in_path, writes out_path (via a temporary file and a rename). stats may be NULL. A source
 * whose matrices are already quantized (a 2-D tensor of a type other than F32, F16 or BF16) is
 * refused with NURI_ERR_INVALID_ARG naming the tensor: requantizing compounds the rounding. */
nuri_status nuri_quantize_file(const char *in_path, const char *out_path, const char *name,
                               bool pure, nuri_quant_stats *stats);

typedef struct nuri_quant_opts {
    bool pure;                      // every 2-D tensor gets the one type (a mix: its base type)
    bool allow_requantize;          // convert a source that is already quantized all the same
    nuri_work_progress_fn progress; // per tensor (bytes of the source's tensor data), or NULL
    void *progress_ud;
} nuri_quant_opts;

/* nuri_quantize_file with options (NULL: none set). */
nuri_status nuri_quantize_file_with(const char *in_path, const char *out_path, const char *name,
                                    const nuri_quant_opts *o, nuri_quant_stats *stats);

#endif
