/*
 * model.h: a transformer bound to the tensors of a GGUF file, and the state to run it.
 *
 * nuri_model holds the hyperparameters (from the file's metadata) and pointers to the weights,
 * which stay in the mapped file (borrowed, never copied). nuri_ctx holds everything a forward pass
 * writes: the KV cache (F16, as llama.cpp keeps it), activations and scratch, all sized once at
 * creation, so the forward pass itself never allocates.
 *
 * Architectures: llama (Llama 2 / 3.x, GQA, tied or separate output, Llama-3 rope scaling through
 * rope_freqs), qwen2 (q/k/v biases), qwen3 (per-head q/k RMS norms). Dimension names: see DESIGN.md.
 */
#ifndef NURI_MODEL_H
#define NURI_MODEL_H

#include "gguf/gguf.h"
#include "nuri.h"

#include <stdbool.h>
#include <stdint.h>

typedef enum nuri_arch {
    NURI_ARCH_LLAMA,
    NURI_ARCH_QWEN2,
    NURI_ARCH_QWEN3,
} nuri_arch;

typedef enum nuri_rope_type {
    NURI_ROPE_NORM, // rotate adjacent pairs (x[2i], x[2i+1])
    NURI_ROPE_NEOX, // rotate halves (x[i], x[i + n_rot/2])
} nuri_rope_type;

typedef struct nuri_hparams {
    nuri_arch arch;
    const char *arch_name; // "llama", static storage
    int32_t n_vocab;
    int32_t n_embd;
    int32_t n_layer;
    int32_t n_head;
    int32_t n_head_kv;
    int32_t head_dim; // key/value length per head
    int32_t n_ff;
    int32_t n_ctx_train;
    int32_t n_rot; // rotated dimensions per head (rope.dimension_count)
    nuri_rope_type rope_type;
    float rope_freq_base;
    float rms_eps;
} nuri_hparams;

/* A weight: a borrowed view of a tensor in the mapped file. */
typedef struct nuri_weight {
    const void *data;
    uint32_t type;
    int64_t n_in;  // elements per row (ne[0])
    int64_t n_out; // rows (ne[1])
    const char *name; // for messages; NUL-terminated copy owned by the model
} nuri_weight;

typedef struct nuri_layer {
    nuri_weight attn_norm; // (n_embd) F32
    nuri_weight wq;        // (n_embd -> n_head * head_dim)
    nuri_weight wk;        // (n_embd -> n_head_kv * head_dim)
    nuri_weight wv;        // (n_embd -> n_head_kv * head_dim)
    nuri_weight bq, bk, bv; // qwen2: biases (F32), else data == NULL
    nuri_weight q_norm, k_norm; // qwen3: (head_dim) F32, else data == NULL
    nuri_weight wo;        // (n_head * head_dim -> n_embd)
    nuri_weight ffn_norm;  // (n_embd) F32
    nuri_weight ffn_gate;  // (n_embd -> n_ff)
    nuri_weight ffn_up;    // (n_embd -> n_ff)
    nuri_weight ffn_down;  // (n_ff -> n_embd)
} nuri_layer;

typedef struct nuri_model {
    gguf_file *file; // owned
    nuri_hparams hp;
    nuri_weight token_embd;  // (n_vocab, n_embd): row t is token t's embedding
    nuri_weight output_norm; // (n_embd) F32
    nuri_weight output;      // (n_embd -> n_vocab); token_embd when tied
    const float *rope_freqs; // (n_rot / 2) frequency divisors, or NULL
    nuri_layer *layers;      // (n_layer)
    char *names;             // storage for the weights' names
} nuri_model;

/* Opens a GGUF file and binds the model in it. Caller frees with nuri_model_free. Errors name the
 * key or tensor at fault (an unsupported architecture, a missing tensor, a wrong shape or type). */
nuri_status nuri_model_load(const char *path, nuri_model **out);
/* The same over an already opened file, which the model then owns (also on failure). */
nuri_status nuri_model_from_gguf(gguf_file *f, nuri_model **out);
void nuri_model_free(nuri_model *m);

/* Bytes of weights read to decode one token (every matrix once; the embedding row only). */
uint64_t nuri_model_bytes_per_token(const nuri_model *m);

/* ---- running ---- */

typedef struct nuri_ctx nuri_ctx;

typedef struct nuri_ctx_params {
    int32_t n_ctx;     // tokens of KV cache (0: min(n_ctx_train, 4096))
    int32_t n_batch;   // most tokens per forward call (0: 512)
    int32_t n_threads; // (0: 1)
    int32_t n_logits;  // rows of logits kept per decode (0: 1); up to n_batch
} nuri_ctx_params;

/* Caller frees with nuri_ctx_free (before freeing the model). */
nuri_status nuri_ctx_new(const nuri_model *m, const nuri_ctx_params *p, nuri_ctx **out);
void nuri_ctx_free(nuri_ctx *c);
int32_t nuri_ctx_n_ctx(const nuri_ctx *c);

/*
 * Runs tokens[0..n) at positions pos0.., appending their keys and values to the cache (whatever
 * the cache held at positions >= pos0 is forgotten). n may exceed n_batch (it is split).
 * If all_logits, logits for every token are written to the ctx's logits buffer (row i for token i,
 * only for the last chunk of n_batch tokens, so pass n <= n_batch when you need all of them);
 * otherwise only the last token's row (row 0). Errors: a token id out of range, positions past
 * n_ctx.
 */
nuri_status nuri_ctx_decode(nuri_ctx *c, const int32_t *tokens, int32_t n, int32_t pos0,
                            bool all_logits);

/* The logits of row i of the last decode: (n_vocab) floats, borrowed until the next decode. */
const float *nuri_ctx_logits(const nuri_ctx *c, int32_t i);

#endif
