/*
 * mkmodel.h: writes random-weight GGUF models with the real shapes of known models, so anyone can
 * test and benchmark nuri (and compare it with llama.cpp) without downloading weights.
 *
 * The tokenizer comes from another GGUF file (any vocab-only file, e.g. tests/data/vocab/) or, when
 * none is given, is a synthetic SentencePiece vocabulary (<unk>, <s>, </s>, 256 byte tokens, then
 * letter n-grams) of the shape's vocabulary size.
 */
#ifndef NURI_MODEL_MKMODEL_H
#define NURI_MODEL_MKMODEL_H

#include "base/progress.h"
#include "nuri.h"

#include <stddef.h>
#include <stdint.h>

typedef struct nuri_mkmodel_params {
    // "llama", "qwen2", "qwen3", "exaone", "exaone4", "granite", "hyperclovax", "qwen3moe",
    // "qwen2moe" (with a shared expert of the shape's n_ff), "mixtral" (general.architecture
    // llama, with experts), "gemma2", "gemma3", "exaone-moe", "gpt-oss"; the MoE archs need a
    // MoE shape
    const char *arch;
    const char *shape; // "tiny", "small", "llama-3.2-1b", "qwen2.5-0.5b", "qwen3-0.6b" (see --help)
    const char *type;  // "F32", "F16", "BF16", "Q8_0", ..., "Q6_K", or a mix "Q4_K_M", "Q5_K_M"
    const char *vocab; // GGUF file to copy tokenizer.* metadata from, or NULL (synthetic vocab)
    // control tokens appended to vocab's (e.g. gpt-oss's harmony markers on another vocabulary,
    // to try its chat format); each must be new to it
    const char *const *add_control;
    int n_add_control;
    uint64_t seed;
    int32_t n_layer; // overrides the shape's layer count when > 0
    int32_t n_swa;   // exaone4: sliding window (tokens) on 3 of every 4 layers; 0 = none;
                     // gemma2 / gemma3: the window of their sliding layers (0: the shape's);
                     // gpt-oss: the window of its every other layer; 0 = 16 (gpt-oss-20b: 128)
    int32_t n_ctx;   // overrides the shape's training context (context_length) when > 0
    // stored as tokenizer.chat_template (replacing one copied from vocab), or NULL
    const char *chat_template;
    size_t chat_template_len; // bytes of chat_template
    nuri_work_progress_fn
        progress; // called per layer made (of n_layer + 1: the file's writing), or NULL
    void *progress_ud;
} nuri_mkmodel_params;

/* Writes the model to path. */
nuri_status nuri_mkmodel(const nuri_mkmodel_params *p, const char *path);

/* A line per known shape, for help texts. Static storage. */
const char *nuri_mkmodel_shapes(void);

#endif
