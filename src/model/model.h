/*
 * model.h: a transformer bound to the tensors of a GGUF file, and the state to run it.
 *
 * nuri_model holds the hyperparameters (from the file's metadata) and pointers to the weights,
 * which stay in the mapped file (borrowed, never copied). nuri_ctx holds everything a forward pass
 * writes: the KV cache (F16, as llama.cpp keeps it), activations and scratch, all sized once at
 * creation, so the forward pass itself never allocates.
 *
 * Architectures: llama (Llama 2 / 3.x, GQA, tied or separate output, Llama-3 rope scaling through
 * rope_freqs; Mixtral when it has experts), qwen2 (q/k/v biases), qwen3 (per-head q/k RMS norms),
 * qwen3moe, qwen2moe, exaone, exaone4, exaone-moe, granite, hyperclovax, gemma2, gemma3, gpt-oss,
 * deepseek2 (see docs/MODELS.md). Dimension names: see DESIGN.md.
 */
#ifndef NURI_MODEL_H
#define NURI_MODEL_H

#include "base/progress.h"
#include "gguf/gguf.h"
#include "nuri.h"
#include "tokenizer/tokenizer.h"

#include <stdbool.h>
#include <stdint.h>

typedef enum nuri_arch {
    NURI_ARCH_LLAMA,   // Llama 2 / 3.x, Kanana
    NURI_ARCH_QWEN2,   // Qwen2 / 2.5, A.X 4.0
    NURI_ARCH_QWEN3,   // Qwen3
    NURI_ARCH_EXAONE,  // EXAONE 3.5: Llama-like, NEOX rope
    NURI_ARCH_EXAONE4, // EXAONE 4.0: no pre-norms, post-norms, q/k norms, sliding window
    NURI_ARCH_GRANITE, // Granite, HyperCLOVA X SEED Text: embedding/residual/attention/logit scales
    NURI_ARCH_HYPERCLOVAX, // HyperCLOVA X SEED Think: Granite's scales + Peri-LN (pre- and
                           // post-norms)
    NURI_ARCH_QWEN3MOE,   // Qwen3 MoE (Qwen3-30B-A3B, 235B-A22B): qwen3 attention, MoE feed-forward
    NURI_ARCH_QWEN2MOE,   // Qwen1.5-MoE, Qwen2-57B-A14B: qwen2 attention, experts + a shared expert
    NURI_ARCH_GEMMA2,     // Gemma 2: pre- and post-norms, GeGLU, sliding window on every other
                          // layer, attention and final logit soft-capping
    NURI_ARCH_GEMMA3,     // Gemma 3 (text): gemma2 without attention soft-capping, with q/k norms
                          // and 5 sliding layers of every 6, which have their own rope base
    NURI_ARCH_EXAONE_MOE, // K-EXAONE: pre-norms, q/k norms, sliding window (RoPE on the sliding
                          // layers only), sigmoid router with a selection bias, a shared expert,
                          // leading dense layers; its next-token-prediction layers are skipped
    NURI_ARCH_GPTOSS, // gpt-oss (OpenAI): attention sinks and biases, alternating sliding window,
                      // YaRN, experts with biases, top-k-then-softmax gating, clamped SwiGLU
    NURI_ARCH_DEEPSEEK2, // DeepSeek-V2 / V3, Kanana-2, Kimi: multi-head latent attention
                         // (MLA, absorbed form), experts with shared experts, leading dense layers
    NURI_ARCH_QWEN35,    // Qwen3.5: gated delta-net layers (a recurrent state per sequence) and,
                         // every full_attention_interval-th layer, attention with an output gate
    NURI_ARCH_QWEN35MOE, // Qwen3.5 MoE: qwen35's layers with experts and a sigmoid-gated shared one
} nuri_arch;

/* qwen35 and qwen35moe: the architectures with gated delta-net layers. */
#define NURI_ARCH_IS_QWEN35(a) ((a) == NURI_ARCH_QWEN35 || (a) == NURI_ARCH_QWEN35MOE)

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
    float rope_freq_base_swa;  // for sliding-window layers
    float rope_freq_scale;     // positions are multiplied by it (linear rope scaling; else 1)
    float rope_freq_scale_swa; // the same on sliding-window layers
    float rms_eps;
    bool pre_norm;        // RMSNorm before attention and FFN (all but exaone4)
    bool post_norm;       // RMSNorm on the attention and FFN outputs (exaone4, hyperclovax)
    float embd_scale;     // embeddings are multiplied by it (granite; else 1)
    float residual_scale; // branch outputs are multiplied by it before the residual add (else 1)
    float attn_scale;     // K.Q scale (default 1/sqrt(head_dim))
    bool attn_scale_q;    // attn_scale multiplies Q before it is rounded to F16 (gemma), not K.Q
    float attn_softcap;   // K.Q becomes c * tanh(K.Q / c) before the softmax (gemma2; 0: none)
    float final_softcap;  // logits become c * tanh(logits / c) (gemma2, gemma3 if set; 0: none)
    bool ffn_geglu;       // the feed-forward gates with GELU (tanh form, F16 table), not SiLU
    float logit_scale;    // logits are divided by it (granite; else 1)
    int32_t n_swa;        // sliding window in tokens for the layers marked swa (0: none)
    // mixture of experts (0 experts: a dense feed-forward): every layer's FFN is n_expert SwiGLU
    // experts of width n_ff_exp, of which a router picks n_expert_used per token
    int32_t n_expert;      // <arch>.expert_count
    int32_t n_expert_used; // <arch>.expert_used_count, 1..n_expert
    int32_t n_ff_exp;      // <arch>.expert_feed_forward_length (qwen3moe) or n_ff (llama/Mixtral)
    bool moe_norm_w;       // renormalise the chosen experts' weights (all but qwen2moe)
    int32_t n_ff_shexp;    // shared expert's width (qwen2moe, exaone-moe), else 0
    bool moe_sigmoid;      // router gates with sigmoid (selection bias added for the choice only)
    float moe_scale;       // chosen weights multiplied by it (expert_weights_scale; 0: none)
    int32_t n_dense_lead;  // the first layers have a dense feed-forward (exaone-moe), else 0
    int32_t n_nextn;       // next-token-prediction layers after n_layer in the file, skipped
    // gpt-oss: the router picks the n_expert_used largest logits (after its bias), then weighs
    // them by a softmax over those alone; the experts' activation is the clamped SwiGLU
    bool moe_topk_softmax;
    bool swiglu_oai;
    // YaRN rope scaling (rope.scaling.type "yarn"; gpt-oss), as ggml's rope computes it: rotation
    // angles theta_interp = freq_scale * theta blended with theta by a ramp over the dimensions
    // [yarn_low, yarn_high], cos and sin multiplied by rope_mscale. rope_yarn false: plain rope.
    bool rope_yarn;
    // (rope_freq_scale above is YaRN's freq_scale too: 1 / rope.scaling.factor)
    float rope_mscale;  // attn_factor * (1 + 0.1 ln(1 / freq_scale)), see model.c
    int32_t n_ctx_orig; // rope.scaling.original_context_length
    // multi-head latent attention (deepseek2), computed as llama.cpp computes it without flash
    // attention: the absorbed form, one KV "head" of head_dim = n_lora_kv + n_rot (n_head_kv 1),
    // whose cached row is the normed latent then the roped key part; V is its first n_lora_kv
    bool mla;
    int32_t n_lora_q;  // attention.q_lora_rank (0: attn_q.weight straight from the input)
    int32_t n_lora_kv; // attention.kv_lora_rank
    int32_t n_qk_nope; // per-head query / key dims without rope: key_length_mla - n_rot
    int32_t n_v_mla;   // attention.value_length_mla: per-head value width after attn_v_b
    // DeepSeek-V3's group limit on the router (moe.h): experts in n_expert_groups groups, of
    // which the n_group_used best may be chosen from; 0: none
    int32_t n_expert_groups, n_group_used;
    // qwen35: the gated delta-net layers (see deltanet.h). Key heads ssm_n_group of ssm_d_state,
    // value heads ssm_n_v of ssm_d_state (ssm.inner_size = ssm_n_v * ssm_d_state); value head h
    // reads key head h % ssm_n_group (llama.cpp's tiled order, which its converter writes)
    int32_t ssm_d_conv;  // ssm.conv_kernel: the causal convolution's width in tokens
    int32_t ssm_d_state; // ssm.state_size: a head's width (keys and values)
    int32_t ssm_n_group; // ssm.group_count: key heads
    int32_t ssm_n_v;     // ssm.time_step_rank: value heads
    int32_t n_recurrent; // layers that are delta-net layers
    bool shexp_sigmoid;  // qwen35moe: the shared expert's gate is ggml's sigmoid, 1 / (1 + e^-x)
} nuri_hparams;

/* A weight: a borrowed view of a tensor in the mapped file. */
typedef struct nuri_weight {
    const void *data;
    uint32_t type;
    int64_t n_in;     // elements per row (ne[0])
    int64_t n_out;    // rows (ne[1])
    const char *name; // for messages; NUL-terminated copy owned by the model
    void *packed; // the rows repacked for this CPU (kernels/pack.h), in the model's block; or NULL
} nuri_weight;

typedef struct nuri_layer {
    nuri_weight attn_norm;                     // (n_embd) F32; pre_norm archs
    nuri_weight wq;                            // (n_embd -> n_head * head_dim)
    nuri_weight wk;                            // (n_embd -> n_head_kv * head_dim)
    nuri_weight wv;                            // (n_embd -> n_head_kv * head_dim)
    nuri_weight bq, bk, bv;                    // qwen2: biases (F32), else data == NULL
    nuri_weight q_norm, k_norm;                // qwen3: (head_dim) F32, else data == NULL
    nuri_weight wo;                            // (n_head * head_dim -> n_embd)
    nuri_weight bo;                            // (n_embd) F32 attention output bias, optional
    nuri_weight attn_post_norm, ffn_post_norm; // (n_embd) F32, post_norm archs
    bool swa;                                  // attends to the last n_swa positions only
    bool rope;            // applies RoPE (exaone4's global layers do not, when it has swa layers)
    nuri_weight ffn_norm; // (n_embd) F32
    nuri_weight ffn_gate; // (n_embd -> n_ff)
    nuri_weight ffn_up;   // (n_embd -> n_ff)
    nuri_weight ffn_down; // (n_ff -> n_embd)
    // MoE layers (hp.n_expert > 0) instead of ffn_gate/up/down:
    nuri_weight ffn_gate_inp; // router (n_embd -> n_expert); NULL data: a dense layer
    nuri_weight exp_probs_b;  // (n_expert) F32 selection bias (exaone-moe), else NULL data
    nuri_weight *exp_gate;    // (n_expert) views of ffn_gate_exps: (n_embd -> n_ff_exp) each
    nuri_weight *exp_up;      // (n_expert) views of ffn_up_exps: (n_embd -> n_ff_exp) each
    nuri_weight *exp_down;    // (n_expert) views of ffn_down_exps: (n_ff_exp -> n_embd) each
    // the shared expert, which every token goes through: qwen2moe's weighted by
    // sigmoid(x . gate_inp), exaone-moe's as it is (shexp_gate_inp NULL)
    nuri_weight shexp_gate_inp;                   // (n_embd) F32
    nuri_weight shexp_gate, shexp_up, shexp_down; // (n_embd -> n_ff_shexp), (n_ff_shexp -> n_embd)
    // gpt-oss
    nuri_weight sinks; // (n_head) F32: one extra logit per head in the softmax (attn_sinks)
    nuri_weight ffn_gate_inp_b; // (n_expert) F32 router bias
    nuri_weight exp_gate_b;     // (n_expert, n_ff_exp) F32: row e is expert e's gate bias
    nuri_weight exp_up_b;       // (n_expert, n_ff_exp) F32
    nuri_weight exp_down_b;     // (n_expert, n_embd) F32
    // deepseek2 (multi-head latent attention); wq is (n_embd -> n_head * (n_qk_nope + n_rot))
    // when n_lora_q is 0
    nuri_weight wq_a;      // (n_embd -> n_lora_q)
    nuri_weight q_a_norm;  // (n_lora_q) F32
    nuri_weight wq_b;      // (n_lora_q -> n_head * (n_qk_nope + n_rot))
    nuri_weight wkv_a;     // attn_kv_a_mqa: (n_embd -> n_lora_kv + n_rot)
    nuri_weight kv_a_norm; // (n_lora_kv) F32
    nuri_weight *wk_b;     // (n_head) views of attn_k_b: (n_qk_nope -> n_lora_kv) each
    nuri_weight *wv_b;     // (n_head) views of attn_v_b: (n_lora_kv -> n_v_mla) each
    // qwen35 delta-net layers (recurrent; rec is the layer's index among them, else -1). With
    // K = ssm_n_group * ssm_d_state, V = ssm_n_v * ssm_d_state, C = 2K + V channels:
    int32_t rec;
    nuri_weight ssm_qkv;   // attn_qkv (n_embd -> C): q, k, v before the convolution
    nuri_weight ssm_z;     // attn_gate (n_embd -> V): the output norm's gate
    nuri_weight ssm_beta;  // (n_embd -> ssm_n_v)
    nuri_weight ssm_alpha; // (n_embd -> ssm_n_v)
    nuri_weight ssm_conv;  // ssm_conv1d (C, ssm_d_conv) F32: row c is channel c's kernel
    nuri_weight ssm_dt;    // ssm_dt.bias (ssm_n_v) F32
    nuri_weight ssm_a;     // ssm_a (ssm_n_v) F32: -exp(A_log)
    nuri_weight ssm_norm;  // (ssm_d_state) F32
    nuri_weight ssm_out;   // (V -> n_embd)
} nuri_layer;

typedef struct nuri_model {
    gguf_file *file; // owned
    nuri_hparams hp;
    nuri_weight token_embd;  // (n_vocab, n_embd): row t is token t's embedding
    nuri_weight output_norm; // (n_embd) F32
    nuri_weight output;      // (n_embd -> n_vocab); token_embd when tied
    const float *rope_freqs; // (n_rot / 2) frequency divisors, or NULL
    nuri_layer *layers;      // (n_layer)
    nuri_weight *experts;    // storage of the layers' expert views (n_layer, 3, n_expert), or NULL
    nuri_weight *mla_heads;  // storage of the layers' wk_b / wv_b views (n_layer, 2, n_head)
    char *names;             // storage for the weights' names
    void *packed;            // one block holding every packed matrix (weights' .packed), or NULL
    // the repacking decision: bytes the packed copy takes (or would take), and, when --repack auto
    // declined for want of memory, the bytes that were available (0 otherwise)
    uint64_t pack_bytes, pack_declined_avail;
    nuri_vocab *vocab; // owned: the file's vocabulary; every token id < n_vocab
    // a pipeline over MPI (src/dist/dist.h): this process is stage `stage` of n_stages and runs
    // layers [layer_first, layer_end), the first stage the embedding, the last one the head; only
    // those weights are packed or read, so only they become resident. 0, 1, 0, n_layer alone.
    int32_t stage, n_stages, layer_first, layer_end;
} nuri_model;

/* Opens a GGUF file and binds the model in it (in a pipeline, nuri_dist_init, this process's
 * stage of it; every tensor is still checked), checked whole: hyperparameters, every weight, and
 * the vocabulary (loaded: refused where nuri_vocab_load refuses it, or where it has more tokens
 * than token_embd.weight and the output matrix have rows), so that whoever holds a model can use
 * m->vocab and feed any of its token ids to the forward pass. Caller frees with nuri_model_free.
 * Errors name the key or tensor at fault (an unsupported architecture, a missing tensor, a wrong
 * shape or type, a broken tokenizer.ggml.* key). */
nuri_status nuri_model_load(const char *path, nuri_model **out);
/* The same over an already opened file, which the model then owns (also on failure). */
nuri_status nuri_model_from_gguf(gguf_file *f, nuri_model **out);

/* Whether the weights are repacked into the layout this CPU multiplies fastest (kernels/pack.h):
 * the repacked copy is process memory (fast, not shared through the page cache, must fit in RAM);
 * without it the weights are read in place from the mapped file (shared by every process that
 * maps it, and a model larger than RAM still runs, paged in from the file). */
typedef enum nuri_repack {
    NURI_REPACK_DEFAULT = 0, // what NURI_PACK says (auto|on|off, 1 = on, 0 = off), else auto
    NURI_REPACK_AUTO,        // repack when the copy fits in MemAvailable with a margin
    NURI_REPACK_ON,          // always (where the CPU has a packed kernel for the type)
    NURI_REPACK_OFF,         // never: run from the mapped file
} nuri_repack;

/* "auto", "on", "off" (and NURI_PACK's "1" / "0") -> *out; false for anything else. */
bool nuri_repack_parse(const char *s, nuri_repack *out);

typedef struct nuri_model_load_opts {
    nuri_repack repack;
    nuri_work_progress_fn progress; // the repacking's progress (bytes), or NULL
    void *progress_ud;
} nuri_model_load_opts;

/* nuri_model_load with options (NULL: the defaults). A bad NURI_PACK is an error naming it. */
nuri_status nuri_model_load_with(const char *path, const nuri_model_load_opts *o, nuri_model **out);
void nuri_model_free(nuri_model *m);

/* The model family in words ("EXAONE 4.0", "A.X 4.0 (SK Telecom, qwen2)"), from the architecture,
 * the pre-tokenizer and general.name. Static storage. */
const char *nuri_model_family(const nuri_model *m);

/* Bytes of weights read to decode one token (every matrix once; the embedding row only; of a
 * mixture of experts only the n_expert_used experts a token is routed to, since decode reads no
 * other). */
uint64_t nuri_model_bytes_per_token(const nuri_model *m);

/* Bytes of weights a long prompt batch reads: as nuri_model_bytes_per_token, but every expert (a
 * batch of many tokens routes to all of them, each read once). Equal for dense models. */
uint64_t nuri_model_bytes_per_batch(const nuri_model *m);

/* Parameters (weight elements) of the model: all of them, and those one token uses (the
 * embedding table counted whole in both, as llama.cpp and model cards count it; of a mixture of
 * experts, n_expert_used experts per layer). Equal for dense models. */
void nuri_model_params(const nuri_model *m, uint64_t *total, uint64_t *active);

/* ---- running ---- */

/*
 * A context runs many sequences over one paged KV pool: n_ctx token slots in pages of
 * NURI_KV_PAGE tokens, shared by all sequences (no fixed per-sequence split). A sequence owns a
 * list of pages; nuri_ctx_seq_fork lets a sequence start from another's prefix by sharing its
 * pages (a shared page is copied before it is written: copy on write).
 *
 * Every token's arithmetic is independent of the other tokens in its batch (rows of a batch are
 * never mixed in a reduction), so a sequence's logits do not depend on what else is batched with
 * it.
 */
#define NURI_KV_PAGE 32 // tokens per KV page

typedef struct nuri_ctx nuri_ctx;

typedef struct nuri_ctx_params {
    int32_t n_ctx; // token slots in the KV pool, all sequences together (0: min(n_ctx_train, 4096))
    int32_t n_batch;   // most tokens per forward call (0: 512)
    int32_t n_threads; // (0: 1)
    int32_t n_logits;  // rows of logits kept per decode (0: 1); up to n_batch
    int32_t n_seq;     // sequences (ids 0..n_seq-1) (0: 1)
    // the cache's types (kernels/types.h): NURI_TYPE_F16 (0 also means F16), NURI_TYPE_Q8_0 or
    // NURI_TYPE_Q4_0 (head_dim a multiple of 32); numerics in kernels/attn.h
    uint32_t kv_type_k, kv_type_v;
} nuri_ctx_params;

/* Caller frees with nuri_ctx_free (before freeing the model). */
nuri_status nuri_ctx_new(const nuri_model *m, const nuri_ctx_params *p, nuri_ctx **out);
void nuri_ctx_free(nuri_ctx *c);
int32_t nuri_ctx_n_ctx(const nuri_ctx *c);
int32_t nuri_ctx_n_seq(const nuri_ctx *c);

/* One forward step over tokens of one or more sequences. */
typedef struct nuri_batch {
    int32_t n;            // tokens
    const int32_t *token; // (n) token ids
    const int32_t *pos;   // (n) position of each token in its sequence
    const int32_t *seq;   // (n) sequence id of each token
    const int8_t *logits; // (n) non-zero: compute this token's logits
} nuri_batch;

/*
 * Runs a batch. Within it, each sequence's tokens must have consecutive ascending positions, the
 * first no greater than the sequence's current length: writing at position p forgets whatever the
 * sequence held at positions >= p. Logits of the flagged tokens go to rows 0, 1, ... in batch order
 * (at most n_logits). n may exceed n_batch only if no token but the last asks for logits.
 * Errors leave the KV pool as it was: NURI_ERR_INVALID_ARG (bad id, position, sequence),
 * NURI_ERR_LIMIT (the pool has no free page: the caller must shrink or drop a sequence).
 */
nuri_status nuri_ctx_decode_batch(nuri_ctx *c, const nuri_batch *b);

/* One sequence (0) convenience: tokens[0..n) at positions pos0..; logits for all tokens (n must be
 * <= n_logits) or only the last one (row 0). */
nuri_status nuri_ctx_decode(nuri_ctx *c, const int32_t *tokens, int32_t n, int32_t pos0,
                            bool all_logits);

/* The logits of row i of the last decode: (n_vocab) floats, borrowed until the next decode. */
const float *nuri_ctx_logits(const nuri_ctx *c, int32_t i);

/* Mixtures of experts: the smallest router margin (moe.h) over the layers for token i of the last
 * forward pass (a batch of at most n_batch tokens: the last chunk of a larger one): how close its
 * expert choice came to changing. INFINITY for dense models. For tests against llama.cpp, where a
 * different choice is a large error. */
float nuri_ctx_router_margin(const nuri_ctx *c, int32_t i);

/* Sequence management. */
int32_t nuri_ctx_seq_len(const nuri_ctx *c, int32_t seq); // tokens held
void nuri_ctx_seq_clear(nuri_ctx *c, int32_t seq);        // frees its pages
/* dst (cleared first) starts with src's first n tokens, sharing their pages. n <= len(src). */
nuri_status nuri_ctx_seq_fork(nuri_ctx *c, int32_t src, int32_t dst, int32_t n);
/* Drops positions >= n of seq (n <= its length). */
void nuri_ctx_seq_truncate(nuri_ctx *c, int32_t seq, int32_t n);
/* Whether seq's first n tokens can be kept (truncated to, or forked) with everything the next
 * decode needs exact: always for a transformer's KV cache; for a model with a recurrent state
 * (qwen35) only n == 0 or n == the tokens its state has taken in, since a state cannot be rewound.
 * A prefix cache must recompute instead where this is false. */
bool nuri_ctx_seq_reusable(const nuri_ctx *c, int32_t seq, int32_t n);

/* A sequence's KV cache as bytes, for snapshots on disk: nuri_ctx_kv_bytes(c, n) bytes for n
 * positions, rows of the cache's types (nuri_ctx_kv_types) laid out layer by layer (K of layer 0
 * for every position, then its V, then layer 1, ...). seq_kv_read copies positions [0, n) of seq
 * out; seq_kv_write replaces seq's KV with the first n positions of such a buffer of `stride`
 * positions per block (taking fresh pages: NURI_ERR_LIMIT when too few are free). A sequence
 * rebuilt so holds exactly what computing those tokens would have written (the forward pass is
 * batch-invariant). */
size_t nuri_ctx_kv_bytes(const nuri_ctx *c, int32_t n);
/* Bytes one token's K and V take over all layers in a cache of these types (0: F16). */
size_t nuri_kv_bytes_per_token(const nuri_model *m, uint32_t k_type, uint32_t v_type);
/* The cache's K and V types (NURI_TYPE_F16, _Q8_0 or _Q4_0). */
void nuri_ctx_kv_types(const nuri_ctx *c, uint32_t *k_type, uint32_t *v_type);
/* "f16", "q8_0" or "q4_0" -> *type (NURI_ERR_INVALID_ARG naming the text otherwise). */
nuri_status nuri_kv_type_parse(const char *name, uint32_t *type);
const char *nuri_kv_type_name(uint32_t type);
nuri_status nuri_ctx_seq_kv_read(const nuri_ctx *c, int32_t seq, int32_t n, void *out);
nuri_status nuri_ctx_seq_kv_write(nuri_ctx *c, int32_t seq, int32_t n, int32_t stride,
                                  const void *in);

/* Pool accounting, in pages of NURI_KV_PAGE tokens. */
int32_t nuri_ctx_pages_total(const nuri_ctx *c);
int32_t nuri_ctx_pages_free(const nuri_ctx *c);
/* The pages that writing n tokens of seq at positions pos, pos + 1, ... (pos <= its length) takes
 * from the pool, counted as nuri_ctx_decode_batch counts them: one where a page starts, one for a
 * copy of a shared page written into, less the pages dropped past pos. The sum over the sequences
 * of a batch is what the batch needs free, so a scheduler can make room before it builds one. */
int32_t nuri_ctx_pages_needed(const nuri_ctx *c, int32_t seq, int32_t pos, int32_t n);

/* ---- a pipeline over MPI (src/dist/dist.h) ----
 *
 * With a pipeline started, stage 0 uses its model and context as above (one context at a time;
 * KV snapshots are refused), and every other stage, having loaded its part of the same model,
 * calls nuri_pipeline_work, which mirrors stage 0's contexts (their sequences, their decodes)
 * until stage 0 calls nuri_pipeline_stop. It returns NURI_OK then, or an error when it could not
 * create a context (out of memory): the pipeline cannot go on, and the caller ends the job. */
nuri_status nuri_pipeline_work(const nuri_model *m);
void nuri_pipeline_stop(void); // stage 0, at the end; nothing outside a pipeline

#endif
