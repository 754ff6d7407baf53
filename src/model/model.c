/*
 * model.c: binds a GGUF file to a transformer: hyperparameters from metadata, weights by tensor
 * name, every shape and type checked, and the file's vocabulary loaded and checked against the
 * embedding rows, so that the forward pass and its callers can trust what they are given.
 */
#include "model/model.h"
#include "base/status.h"
#include "dist/dist.h"
#include "kernels/kernels.h"
#include "kernels/pack.h"
#include "model/moe.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>

/* Explicit limits on hyperparameters (far above any real model; they keep size arithmetic safe). */
#define MAX_LAYERS 1024
#define MAX_WIDTH (1 << 20) // n_embd, n_ff, n_head * head_dim
#define MAX_HEADS 4096
#define MAX_VOCAB (1 << 24)
#define MAX_EXPERTS 512 // llama.cpp's limit too

/* What distinguishes the architectures nuri runs: all are decoder-only transformers with RMSNorm,
 * RoPE, GQA attention and a SwiGLU feed-forward network. */
static const struct arch_info {
    const char *name;
    nuri_arch arch;
    nuri_rope_type rope;
    bool pre_norm, post_norm; // norms before / after attention and FFN
    bool qkv_bias;            // attn_q/k/v.bias required
    bool qk_norm;             // attn_q_norm / attn_k_norm required
    bool scales;              // embedding / residual / attention / logit scales from metadata
    bool swa;                 // sliding-window layers from metadata
    char moe;                 // experts: 'n' never, 'y' always (expert_count required),
                              // 'k' when <arch>.expert_count says so (llama: Mixtral)
} known_archs[] = {
    {"llama", NURI_ARCH_LLAMA, NURI_ROPE_NORM, true, false, false, false, false, false, 'k'},
    {"qwen2", NURI_ARCH_QWEN2, NURI_ROPE_NEOX, true, false, true, false, false, false, 'n'},
    {"qwen3", NURI_ARCH_QWEN3, NURI_ROPE_NEOX, true, false, false, true, false, false, 'n'},
    {"exaone", NURI_ARCH_EXAONE, NURI_ROPE_NEOX, true, false, false, false, false, false, 'n'},
    {"exaone4", NURI_ARCH_EXAONE4, NURI_ROPE_NEOX, false, true, false, true, false, true, 'n'},
    {"granite", NURI_ARCH_GRANITE, NURI_ROPE_NORM, true, false, false, false, true, false, 'n'},
    {"hyperclovax", NURI_ARCH_HYPERCLOVAX, NURI_ROPE_NORM, true, true, false, false, true, false,
     'n'},
    {"qwen3moe", NURI_ARCH_QWEN3MOE, NURI_ROPE_NEOX, true, false, false, true, false, false, 'y'},
    // qwen2moe's q/k/v biases are optional in llama.cpp (real files have them)
    {"qwen2moe", NURI_ARCH_QWEN2MOE, NURI_ROPE_NEOX, true, false, false, false, false, false, 'y'},
    // gemma's own parts (embedding scale, GeGLU, soft-capping, its window) are in read_gemma
    {"gemma2", NURI_ARCH_GEMMA2, NURI_ROPE_NEOX, true, true, false, false, false, true, 'n'},
    {"gemma3", NURI_ARCH_GEMMA3, NURI_ROPE_NEOX, true, true, false, true, false, true, 'n'},
    {"exaone-moe", NURI_ARCH_EXAONE_MOE, NURI_ROPE_NEOX, true, false, false, true, false, true,
     'y'},
    // gpt-oss: q/k/v biases optional as in llama.cpp (real files have them); its pre-FFN norm is
    // named post_attention_norm; sliding window required
    {"gpt-oss", NURI_ARCH_GPTOSS, NURI_ROPE_NEOX, true, false, false, false, false, true, 'y'},
    // deepseek2: its attention (MLA) and router keys are read by read_deepseek2_hparams
    {"deepseek2", NURI_ARCH_DEEPSEEK2, NURI_ROPE_NORM, true, false, false, false, false, false,
     'y'},
    // qwen35: its layers are bound by bind_qwen35_layer (q/k norms on the attention layers only)
    {"qwen35", NURI_ARCH_QWEN35, NURI_ROPE_NEOX, true, false, false, false, false, false, 'n'},
    {"qwen35moe", NURI_ARCH_QWEN35MOE, NURI_ROPE_NEOX, true, false, false, false, false, false,
     'y'},
};

static const struct arch_info *arch_of(nuri_arch a)
{
    for (size_t i = 0; i < sizeof known_archs / sizeof known_archs[0]; i++)
        if (known_archs[i].arch == a) return &known_archs[i];
    NURI_ASSERT(!"unknown arch");
    return NULL;
}

/* ---- metadata ---- */

static nuri_status get_dim(const gguf_file *f, const char *arch, const char *suffix, bool required,
                           int32_t def, int32_t max, int32_t *out)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    uint32_t v;
    nuri_status s = gguf_get_u32(f, key, &v);
    if (s == NURI_ERR_NOT_FOUND && !required) {
        *out = def;
        return NURI_OK;
    }
    if (s != NURI_OK) return s;
    if (v == 0 || v > (uint32_t)max)
        return nuri_error(NURI_ERR_FORMAT, "metadata '%s' = %u is outside 1..%d", key, v, max);
    *out = (int32_t)v;
    return NURI_OK;
}

static nuri_status get_float(const gguf_file *f, const char *arch, const char *suffix, float def,
                             float *out)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    nuri_status s = gguf_get_f32(f, key, out);
    if (s == NURI_ERR_NOT_FOUND) {
        *out = def;
        return NURI_OK;
    }
    if (s != NURI_OK) return s;
    if (!(*out > 0.0f) || *out > 1e30f)
        return nuri_error(NURI_ERR_FORMAT, "metadata '%s' = %g is not a positive number", key,
                          (double)*out);
    return NURI_OK;
}

/* The keys exaone-moe and deepseek2 share after their gating function: expert_weights_norm
 * (renormalise the chosen weights; absent: no), expert_weights_scale (absent: 0, none) and
 * leading_dense_block_count (absent: 0; those layers need feed_forward_length). */
static nuri_status read_moe_weighting(const gguf_file *f, nuri_hparams *hp)
{
    const char *name = hp->arch_name;
    char key[128];
    nuri_status s;
    uint32_t v = 0;
    snprintf(key, sizeof key, "%s.expert_weights_norm", name);
    bool norm = false;
    s = gguf_get_bool(f, key, &norm);
    if (s != NURI_OK && s != NURI_ERR_NOT_FOUND) return s;
    hp->moe_norm_w = norm;
    snprintf(key, sizeof key, "%s.expert_weights_scale", name);
    s = gguf_get_f32(f, key, &hp->moe_scale);
    if (s == NURI_ERR_NOT_FOUND)
        hp->moe_scale = 0.0f;
    else if (s != NURI_OK)
        return s;
    else if (!(hp->moe_scale >= 0.0f) || hp->moe_scale > 1e6f)
        return nuri_error(NURI_ERR_FORMAT, "metadata '%s' = %g is not a scale", key,
                          (double)hp->moe_scale);
    snprintf(key, sizeof key, "%s.leading_dense_block_count", name);
    s = gguf_get_u32(f, key, &v);
    if (s == NURI_ERR_NOT_FOUND)
        v = 0;
    else if (s != NURI_OK)
        return s;
    if (v > (uint32_t)hp->n_layer)
        return nuri_error(NURI_ERR_FORMAT, "metadata '%s' = %u exceeds the %d layers", key, v,
                          hp->n_layer);
    hp->n_dense_lead = (int32_t)v;
    if (hp->n_dense_lead > 0 && hp->n_ff == 0)
        return nuri_error(NURI_ERR_FORMAT,
                          "metadata '%s.feed_forward_length' is missing (the "
                          "leading dense layers need it)",
                          name);
    return NURI_OK;
}

/* exaone-moe (K-EXAONE) reads what the file says, as llama.cpp does for it: the gating function
 * (softmax or sigmoid; others refused by name), expert_weights_norm and expert_weights_scale, the
 * experts' and the shared expert's widths, and the leading dense layers. */
static nuri_status read_exaone_moe_hparams(const gguf_file *f, nuri_hparams *hp)
{
    const char *name = hp->arch_name;
    char key[128];
    nuri_status s;
    if ((s = get_dim(f, name, "expert_feed_forward_length", true, 0, MAX_WIDTH, &hp->n_ff_exp)) ||
        (s = get_dim(f, name, "expert_shared_feed_forward_length", false, hp->n_ff_exp, MAX_WIDTH,
                     &hp->n_ff_shexp)))
        return s;
    uint32_t v = 0;
    snprintf(key, sizeof key, "%s.expert_gating_func", name);
    if ((s = gguf_get_u32(f, key, &v))) return s;
    if (v != 1 && v != 2)
        return nuri_error(NURI_ERR_UNSUPPORTED,
                          "metadata '%s' = %u: nuri gates experts with softmax (1) or sigmoid (2)",
                          key, v);
    hp->moe_sigmoid = v == 2;
    if ((s = read_moe_weighting(f, hp))) return s;
    snprintf(key, sizeof key, "%s.expert_group_count", name);
    if (gguf_get_u32(f, key, &v) == NURI_OK && v > 1)
        return nuri_error(NURI_ERR_UNSUPPORTED, "metadata '%s' = %u: not supported", key, v);
    return NURI_OK;
}

/* deepseek2's experts, as llama.cpp reads them: expert_feed_forward_length (required), the shared
 * experts (expert_shared_count of that width, run as one expert n times as wide), the gating
 * function (softmax or sigmoid; absent: softmax, as DeepSeek-V2 files have none, but sigmoid for
 * GLM 4.7 Lite's shape, as llama.cpp guesses it), expert_weights_norm / _scale, the leading dense
 * layers. Grouped top-k (expert_group_count > 1, DeepSeek-V3 / Kimi) is refused by name. */
static nuri_status read_deepseek2_moe(const gguf_file *f, nuri_hparams *hp)
{
    const char *name = hp->arch_name;
    char key[128];
    nuri_status s;
    uint32_t v = 0;
    if ((s = get_dim(f, name, "expert_feed_forward_length", true, 0, MAX_WIDTH, &hp->n_ff_exp)))
        return s;
    snprintf(key, sizeof key, "%s.expert_shared_count", name);
    if ((s = gguf_get_u32(f, key, &v))) return s;
    if ((uint64_t)v * (uint64_t)hp->n_ff_exp > MAX_WIDTH)
        return nuri_error(NURI_ERR_FORMAT, "metadata '%s' = %u is too many shared experts", key, v);
    hp->n_ff_shexp = (int32_t)v * hp->n_ff_exp;
    snprintf(key, sizeof key, "%s.expert_gating_func", name);
    s = gguf_get_u32(f, key, &v);
    if (s == NURI_ERR_NOT_FOUND || (s == NURI_OK && v == 0))
        v = (hp->n_layer == 47 || hp->n_layer == 48) && hp->n_vocab == 154880 ? 2 : 1;
    else if (s != NURI_OK)
        return s;
    if (v != 1 && v != 2)
        return nuri_error(NURI_ERR_UNSUPPORTED,
                          "metadata '%s' = %u: nuri gates experts with softmax (1) or sigmoid (2)",
                          key, v);
    hp->moe_sigmoid = v == 2;
    if ((s = read_moe_weighting(f, hp))) return s;
    // DeepSeek-V3's group limit: expert_group_count groups, the expert_group_used_count best
    snprintf(key, sizeof key, "%s.expert_group_count", name);
    s = gguf_get_u32(f, key, &v);
    if (s != NURI_OK && s != NURI_ERR_NOT_FOUND) return s;
    if (s == NURI_ERR_NOT_FOUND || v <= 1) return NURI_OK;
    const uint32_t groups = v;
    if (!hp->moe_sigmoid)
        return nuri_error(NURI_ERR_UNSUPPORTED,
                          "metadata '%s' = %u: grouped expert selection with a softmax router is "
                          "not supported (nuri limits groups for sigmoid routers, as DeepSeek-V3)",
                          key, v);
    if (groups > NURI_MOE_MAX_GROUPS || hp->n_expert % (int32_t)groups != 0 ||
        hp->n_expert / (int32_t)groups < 2)
        return nuri_error(NURI_ERR_FORMAT,
                          "metadata '%s' = %u: %d experts do not split into such groups (at "
                          "most %d groups of at least 2)",
                          key, v, hp->n_expert, NURI_MOE_MAX_GROUPS);
    snprintf(key, sizeof key, "%s.expert_group_used_count", name);
    if ((s = gguf_get_u32(f, key, &v))) return s;
    if (v < 1 || v >= groups || (int64_t)v * (hp->n_expert / (int32_t)groups) < hp->n_expert_used)
        return nuri_error(NURI_ERR_FORMAT,
                          "metadata '%s' = %u: must be in 1..%u and leave %d experts to choose",
                          key, v, groups - 1, hp->n_expert_used);
    hp->n_expert_groups = (int32_t)groups;
    hp->n_group_used = (int32_t)v;
    return NURI_OK;
}

/* The mixture-of-experts keys: expert_count, expert_used_count (1..expert_count) and the experts'
 * width: qwen3moe's expert_feed_forward_length (else, as llama.cpp, feed_forward_length /
 * expert_used_count), llama's (Mixtral's) feed_forward_length. As in llama.cpp, these two
 * architectures always gate with a softmax and renormalise the chosen weights, whatever
 * expert_gating_func / expert_weights_norm / expert_weights_scale say. Expert groups and shared
 * experts, which would change the result, are refused by name rather than ignored. */
static nuri_status read_moe_hparams(const gguf_file *f, const struct arch_info *ai,
                                    nuri_hparams *hp)
{
    const char *name = hp->arch_name;
    nuri_status s;
    char key[128];
    snprintf(key, sizeof key, "%s.expert_count", name);
    uint32_t n_expert = 0;
    s = gguf_get_u32(f, key, &n_expert);
    if (s != NURI_OK && !(s == NURI_ERR_NOT_FOUND && ai->moe != 'y')) return s;
    if (n_expert == 0 && ai->moe != 'y') return NURI_OK; // 0 or absent: a dense model
    if ((s = get_dim(f, name, "expert_count", true, 0, MAX_EXPERTS, &hp->n_expert))) return s;
    if (ai->moe == 'n')
        return nuri_error(NURI_ERR_UNSUPPORTED,
                          "%s.expert_count is %d: architecture '%s' with experts is not supported "
                          "(nuri runs experts in qwen3moe and llama/Mixtral files)",
                          name, hp->n_expert, name);
    if ((s = get_dim(f, name, "expert_used_count", true, 0, MAX_EXPERTS, &hp->n_expert_used)))
        return s;
    if (hp->n_expert_used > hp->n_expert)
        return nuri_error(NURI_ERR_FORMAT, "%s.expert_used_count %d exceeds expert_count %d", name,
                          hp->n_expert_used, hp->n_expert);
    hp->moe_norm_w = hp->arch != NURI_ARCH_QWEN2MOE && hp->arch != NURI_ARCH_GPTOSS;
    hp->moe_topk_softmax = hp->swiglu_oai = hp->arch == NURI_ARCH_GPTOSS;
    if (hp->arch == NURI_ARCH_EXAONE_MOE) return read_exaone_moe_hparams(f, hp);
    if (hp->arch == NURI_ARCH_DEEPSEEK2) return read_deepseek2_moe(f, hp);
    if (hp->arch == NURI_ARCH_QWEN35MOE) {
        // one shared expert, gated by ggml's sigmoid; llama.cpp creates its tensors always
        if ((s = get_dim(f, name, "expert_shared_feed_forward_length", true, 0, MAX_WIDTH,
                         &hp->n_ff_shexp)))
            return s;
        hp->shexp_sigmoid = true;
    }
    if (hp->arch == NURI_ARCH_QWEN2MOE) {
        // one shared expert, of expert_shared_feed_forward_length (else feed_forward_length)
        if ((s = get_dim(f, name, "expert_shared_feed_forward_length", hp->n_ff == 0, hp->n_ff,
                         MAX_WIDTH, &hp->n_ff_shexp)))
            return s;
    }
    if (hp->arch == NURI_ARCH_GPTOSS) { // required, as llama.cpp reads it
        if ((s = get_dim(f, name, "expert_feed_forward_length", true, 0, MAX_WIDTH, &hp->n_ff_exp)))
            return s;
    } else if (hp->arch == NURI_ARCH_QWEN3MOE || hp->arch == NURI_ARCH_QWEN2MOE ||
               hp->arch == NURI_ARCH_QWEN35MOE) {
        int32_t def = hp->n_ff / hp->n_expert_used;
        if ((s = get_dim(f, name, "expert_feed_forward_length", def == 0, def, MAX_WIDTH,
                         &hp->n_ff_exp)))
            return s;
    } else {
        hp->n_ff_exp = hp->n_ff;
    }
    static const char *unsupported[] = {"expert_group_count", "expert_shared_count",
                                        "expert_shared_feed_forward_length"};
    // qwen2moe has its one shared expert whatever expert_shared_count says, as in llama.cpp
    // (qwen35moe too: llama.cpp reads neither count)
    const size_t n_unsupported =
        hp->arch == NURI_ARCH_QWEN2MOE || hp->arch == NURI_ARCH_QWEN35MOE ? 1 : 3;
    for (size_t i = 0; i < n_unsupported; i++) {
        snprintf(key, sizeof key, "%s.%s", name, unsupported[i]);
        uint32_t v;
        if (gguf_get_u32(f, key, &v) == NURI_OK && v > 0)
            return nuri_error(NURI_ERR_UNSUPPORTED, "metadata '%s' = %u: not supported", key, v);
    }
    return NURI_OK;
}

/* Gemma 2 and 3, as llama.cpp reads them: embeddings times sqrt(n_embd); the attention scale
 * 1/sqrt(key_length), but 1/sqrt(n_embd / n_head) for the 27B models (their
 * query_pre_attn_scalar, which the files do not carry: llama.cpp tells them by their layer count,
 * 46 for gemma2, 62 for gemma3), applied to Q before K.Q; GeGLU; the final logit soft-cap
 * (gemma2: final_logit_softcapping, default 30; gemma3: only when the key is there) and gemma2's
 * attention soft-cap (attn_logit_softcapping, default 50). The sliding window: gemma2 4096 tokens
 * unless attention.sliding_window says otherwise; gemma3 only with that key. Rope: linear scaling
 * by rope.scaling.factor (Gemma 3 4B-27B: 8) on gemma3's global layers only, on all of gemma2's;
 * gemma3's sliding layers turn at rope.freq_base_swa, default 10000. Other scaling types are
 * refused. RMSNorm weights are used as stored: the converter has already added Gemma's 1. */
static nuri_status read_gemma(const gguf_file *f, nuri_hparams *hp)
{
    const char *name = hp->arch_name;
    const bool g2 = hp->arch == NURI_ARCH_GEMMA2;
    nuri_status s;
    char key[128];
    hp->embd_scale = sqrtf((float)hp->n_embd);
    const bool big = hp->n_layer == (g2 ? 46 : 62);
    hp->attn_scale = 1.0f / sqrtf((float)(big ? hp->n_embd / hp->n_head : hp->head_dim));
    hp->attn_scale_q = true;
    hp->ffn_geglu = true;
    if ((s = get_float(f, name, "final_logit_softcapping", g2 ? 30.0f : 0.0f, &hp->final_softcap)))
        return s;
    if (g2 && (s = get_float(f, name, "attn_logit_softcapping", 50.0f, &hp->attn_softcap)))
        return s;
    if (g2) {
        hp->n_swa = 4096;
    } else {
        snprintf(key, sizeof key, "%s.rope.freq_base_swa", name);
        if (!gguf_find_kv(f, key)) hp->rope_freq_base_swa = 10000.0f;
    }
    // the scaling type: linear (also when absent) or none (then global layers never scale)
    bool none = false;
    snprintf(key, sizeof key, "%s.rope.scaling.type", name);
    gguf_str type;
    s = gguf_get_str(f, key, &type);
    if (s != NURI_OK && s != NURI_ERR_NOT_FOUND) return s;
    if (s == NURI_OK) {
        none = gguf_str_eq(type, "none");
        if (!none && !gguf_str_eq(type, "linear"))
            return nuri_error(
                NURI_ERR_UNSUPPORTED,
                "metadata '%s' = '%.*s': only linear rope scaling is supported for %s", key,
                (int)(type.len > 32 ? 32 : type.len), type.ptr, name);
    }
    float factor = 0.0f;
    snprintf(key, sizeof key, "%s.rope.scaling.factor", name);
    s = gguf_get_f32(f, key, &factor);
    if (s != NURI_OK && s != NURI_ERR_NOT_FOUND) return s;
    if (!(factor >= 0.0f) || factor > 1e6f)
        return nuri_error(NURI_ERR_FORMAT, "metadata '%s' = %g is not a positive number", key,
                          (double)factor);
    const float train_scale =
        factor == 0.0f ? 1.0f : 1.0f / factor; // 0 means none, as in llama.cpp
    hp->rope_freq_scale = none ? 1.0f : train_scale;
    hp->rope_freq_scale_swa = g2 ? train_scale : 1.0f;
    return NURI_OK;
}

/* rope.scaling.* (gpt-oss): "none" or absent, or "yarn" with factor and original_context_length
 * (default: context_length), as llama.cpp reads them for gpt-oss: ext_factor 1, beta_fast 32,
 * beta_slow 1 (it reads no yarn_* key for this architecture), and the magnitude factor
 * attn_factor = mscale(f) / (1 + 0.1 ln f) * rope.scaling.attn_factor, mscale(f) = 0.1 ln f + 1,
 * which the rope then multiplies by (1 + 0.1 ln f) again; each step rounded in float as there.
 * Another scaling type would rotate otherwise: refused by name. */
static nuri_status read_rope_scaling(const gguf_file *f, nuri_hparams *hp)
{
    const char *name = hp->arch_name;
    char key[128];
    hp->rope_freq_scale = 1.0f;
    hp->rope_mscale = 1.0f;
    snprintf(key, sizeof key, "%s.rope.scaling.type", name);
    gguf_str type;
    nuri_status s = gguf_get_str(f, key, &type);
    if (s == NURI_ERR_NOT_FOUND || (s == NURI_OK && gguf_str_eq(type, "none"))) return NURI_OK;
    if (s != NURI_OK) return s;
    if (!gguf_str_eq(type, "yarn"))
        return nuri_error(NURI_ERR_UNSUPPORTED,
                          "metadata '%s' = '%.*s': only \"yarn\" and \"none\" are supported for %s",
                          key, (int)(type.len > 32 ? 32 : type.len), type.ptr, name);
    float factor, attn_factor;
    if ((s = get_float(f, name, "rope.scaling.factor", 1.0f, &factor)) ||
        (s = get_float(f, name, "rope.scaling.attn_factor", 1.0f, &attn_factor)) ||
        (s = get_dim(f, name, "rope.scaling.original_context_length", false, hp->n_ctx_train,
                     1 << 24, &hp->n_ctx_orig)))
        return s;
    hp->rope_yarn = true;
    hp->rope_freq_scale = 1.0f / factor;
    const float fct = 1.0f / hp->rope_freq_scale;
    float a = fct <= 1.0f ? 1.0f : 0.1f * 1.0f * logf(fct) + 1.0f;
    a *= 1.0f / (1.0f + 0.1f * logf(fct));
    a *= attn_factor;
    hp->rope_mscale = a * (1.0f + 0.1f * logf(1.0f / hp->rope_freq_scale));
    return NURI_OK;
}

/* deepseek2's multi-head latent attention, in the form current converters write it (llama.cpp's
 * MLA with absorption): head_count_kv 1, key_length = kv_lora_rank + rope.dimension_count (the
 * cached row: latent, then the roped part), value_length = kv_lora_rank, and the per-head sizes
 * key_length_mla (nope + rope) and value_length_mla. q_lora_rank, as llama.cpp reads it: ignored
 * (0, attn_q.weight) for the "lite" layer counts 26 and 27 (and 48 with a 128256-token
 * vocabulary), required otherwise. The rope: none, or YaRN with DeepSeek's attention scale:
 * kq_scale = mscale^2 / sqrt(key_length_mla), mscale = attn_factor * (1 + 0.1 ln s)
 * * (1 + 0.1 yarn_log_multiplier / 0.1 * ln s), s = rope.scaling.factor, each step rounded in float
 * as llama.cpp rounds it, and the rope's own magnitude factor 1 / (1 + 0.1 ln s) * attn_factor
 * before ggml's rope multiplies it by (1 + 0.1 ln s) again. Files without key_length_mla hold the
 * older attn_kv_b layout (MHA over decompressed keys): refused by name. */
static nuri_status read_mla_hparams(const gguf_file *f, nuri_hparams *hp)
{
    const char *name = hp->arch_name;
    char key[128];
    nuri_status s;
    int32_t k_mla = 0, v_len = 0;
    snprintf(key, sizeof key, "%s.attention.key_length_mla", name);
    if (!gguf_find_kv(f, key))
        return nuri_error(NURI_ERR_UNSUPPORTED,
                          "metadata '%s' is missing: a deepseek2 file of the older layout "
                          "(attn_kv_b, keys decompressed per head) is not supported; convert the "
                          "model again (current converters write attn_k_b / attn_v_b)",
                          key);
    if ((s = get_dim(f, name, "attention.key_length_mla", true, 0, MAX_WIDTH, &k_mla)) ||
        (s = get_dim(f, name, "attention.value_length_mla", true, 0, MAX_WIDTH, &hp->n_v_mla)) ||
        (s = get_dim(f, name, "attention.kv_lora_rank", true, 0, MAX_WIDTH, &hp->n_lora_kv)) ||
        (s = get_dim(f, name, "attention.value_length", true, 0, MAX_WIDTH, &v_len)) ||
        (s = get_dim(f, name, "rope.dimension_count", true, 0, MAX_WIDTH, &hp->n_rot)))
        return s;
    const bool lite =
        hp->n_layer == 27 || hp->n_layer == 26 || (hp->n_layer == 48 && hp->n_vocab == 128256);
    snprintf(key, sizeof key, "%s.attention.q_lora_rank", name);
    uint32_t q = 0;
    s = gguf_get_u32(f, key, &q);
    if (s != NURI_OK && !(s == NURI_ERR_NOT_FOUND && lite)) return s;
    if (q > MAX_WIDTH)
        return nuri_error(NURI_ERR_FORMAT, "metadata '%s' = %u is too large", key, q);
    hp->n_lora_q = lite ? 0 : (int32_t)q;
    if (hp->n_head_kv != 1 || hp->head_dim != hp->n_lora_kv + hp->n_rot || v_len != hp->n_lora_kv)
        return nuri_error(NURI_ERR_FORMAT,
                          "%s attention: head_count_kv %d, key_length %d, value_length %d; MLA "
                          "needs 1, kv_lora_rank + rope.dimension_count = %d, kv_lora_rank = %d",
                          name, hp->n_head_kv, hp->head_dim, v_len, hp->n_lora_kv + hp->n_rot,
                          hp->n_lora_kv);
    if (hp->n_rot % 2 != 0 || k_mla <= hp->n_rot)
        return nuri_error(NURI_ERR_FORMAT,
                          "%s.attention.key_length_mla %d must exceed the even "
                          "rope.dimension_count %d",
                          name, k_mla, hp->n_rot);
    hp->n_qk_nope = k_mla - hp->n_rot;
    hp->mla = true;
    snprintf(key, sizeof key, "%s.attention.temperature_scale", name);
    float tf = 0.0f;
    if (gguf_get_f32(f, key, &tf) == NURI_OK && tf != 0.0f)
        return nuri_error(NURI_ERR_UNSUPPORTED, "metadata '%s' = %g: not supported", key,
                          (double)tf);
    // the rope scaling: none, or yarn (linear with a factor would change kq_scale as well)
    float attn_factor, log_mul = 0.0f;
    if ((s = get_float(f, name, "rope.scaling.attn_factor", 1.0f, &attn_factor))) return s;
    snprintf(key, sizeof key, "%s.rope.scaling.yarn_log_multiplier", name);
    s = gguf_get_f32(f, key, &log_mul);
    if (s == NURI_OK && !(log_mul >= 0.0f && log_mul < 1e6f))
        return nuri_error(NURI_ERR_FORMAT, "metadata '%s' = %g is not a multiplier", key,
                          (double)log_mul);
    if (s != NURI_OK && s != NURI_ERR_NOT_FOUND) return s;
    log_mul /= 0.1f; // the converter wrote 0.1 * mscale_all_dim
    snprintf(key, sizeof key, "%s.rope.scaling.type", name);
    gguf_str type = {0};
    s = gguf_get_str(f, key, &type);
    if (s != NURI_OK && s != NURI_ERR_NOT_FOUND) return s;
    if (s == NURI_ERR_NOT_FOUND) type.ptr = NULL;
    float factor = 0.0f;
    snprintf(key, sizeof key, "%s.rope.scaling.factor", name);
    s = gguf_get_f32(f, key, &factor);
    if (s != NURI_OK && s != NURI_ERR_NOT_FOUND) return s;
    if (!(factor >= 0.0f) || factor > 1e6f)
        return nuri_error(NURI_ERR_FORMAT, "metadata '%s' = %g is not a positive number", key,
                          (double)factor);
    snprintf(key, sizeof key, "%s.rope.scaling.type", name);
    const bool yarn = type.ptr && gguf_str_eq(type, "yarn");
    if (type.ptr && !yarn && !gguf_str_eq(type, "none") &&
        !(gguf_str_eq(type, "linear") && (factor == 0.0f || factor == 1.0f)))
        return nuri_error(NURI_ERR_UNSUPPORTED,
                          "metadata '%s' = '%.*s': only \"yarn\" and \"none\" are supported for "
                          "%s",
                          key, (int)(type.len > 32 ? 32 : type.len), type.ptr, name);
    float fs = 1.0f; // freq_scale
    hp->rope_mscale = attn_factor;
    if (yarn) {
        if ((s = get_dim(f, name, "rope.scaling.original_context_length", false, hp->n_ctx_train,
                         1 << 24, &hp->n_ctx_orig)))
            return s;
        fs = factor == 0.0f ? 1.0f : 1.0f / factor;
        const float fct = 1.0f / fs;
        // llama.cpp: mscale and mscale_all_dim equal, so their ratio is exactly 1
        float a = 1.0f;
        a *= 1.0f / (1.0f + 0.1f * logf(fct));
        a *= attn_factor;
        hp->rope_yarn = true;
        hp->rope_freq_scale = fs;
        hp->rope_mscale = a * (1.0f + 0.1f * logf(1.0f / fs));
        attn_factor = a;
    }
    if (!yarn && attn_factor != 1.0f)
        return nuri_error(NURI_ERR_UNSUPPORTED,
                          "metadata '%s.rope.scaling.attn_factor' = %g without YaRN: not supported",
                          name, (double)attn_factor);
    hp->rope_freq_scale = fs;
    const float org = attn_factor * (1.0f + 0.1f * logf(1.0f / fs));
    const float mscale = org * (1.0f + 0.1f * log_mul * logf(1.0f / fs));
    hp->attn_scale = 1.0f * mscale * mscale / sqrtf((float)k_mla);
    return NURI_OK;
}

/* qwen35: the delta-net's sizes (all required, as llama.cpp reads them) and the rope sections.
 * Text positions are the same in every section (llama.cpp gives a text token its position four
 * times), so multi-section rope is plain NEOX rope over rope.dimension_count dimensions; the
 * sections must be there all the same, as llama.cpp requires them. */
static nuri_status read_qwen35_hparams(const gguf_file *f, nuri_hparams *hp)
{
    const char *a = hp->arch_name;
    int32_t d_inner;
    nuri_status s;
    if ((s = get_dim(f, a, "ssm.conv_kernel", true, 0, 64, &hp->ssm_d_conv)) ||
        (s = get_dim(f, a, "ssm.inner_size", true, 0, MAX_WIDTH, &d_inner)) ||
        (s = get_dim(f, a, "ssm.state_size", true, 0, 4096, &hp->ssm_d_state)) ||
        (s = get_dim(f, a, "ssm.group_count", true, 0, MAX_HEADS, &hp->ssm_n_group)) ||
        (s = get_dim(f, a, "ssm.time_step_rank", true, 0, MAX_HEADS, &hp->ssm_n_v)))
        return s;
    if ((int64_t)hp->ssm_n_v * hp->ssm_d_state != d_inner)
        return nuri_error(NURI_ERR_UNSUPPORTED,
                          "%s.ssm.inner_size %d is not time_step_rank %d x state_size %d (value "
                          "heads as wide as key heads, as llama.cpp requires)",
                          a, d_inner, hp->ssm_n_v, hp->ssm_d_state);
    if (hp->ssm_n_v % hp->ssm_n_group != 0)
        return nuri_error(NURI_ERR_FORMAT,
                          "%s.ssm.time_step_rank %d is not a multiple of ssm.group_count %d", a,
                          hp->ssm_n_v, hp->ssm_n_group);
    if ((int64_t)hp->ssm_n_group * hp->ssm_d_state * 2 + d_inner > MAX_WIDTH)
        return nuri_error(NURI_ERR_FORMAT, "%s: the delta-net's %d + %d channels exceed %d", a,
                          2 * hp->ssm_n_group * hp->ssm_d_state, d_inner, MAX_WIDTH);
    char key[128];
    snprintf(key, sizeof key, "%s.rope.dimension_sections", a);
    gguf_arr sec;
    s = gguf_get_arr(f, key, &sec);
    if (s == NURI_ERR_NOT_FOUND)
        return nuri_error(NURI_ERR_FORMAT, "metadata '%s' is missing", key);
    if (s != NURI_OK) return s;
    if (sec.n != 4 || (sec.type != GGUF_TYPE_INT32 && sec.type != GGUF_TYPE_UINT32))
        return nuri_error(NURI_ERR_FORMAT, "metadata '%s' must hold 4 integers", key);
    int32_t sv[4];
    memcpy(sv, sec.data, sizeof sv); // the file's bytes need not be aligned
    if (sv[0] <= 0 && sv[1] <= 0 && sv[2] <= 0)
        return nuri_error(NURI_ERR_FORMAT, "metadata '%s' has no section", key);
    return NURI_OK;
}

static nuri_status read_hparams(const gguf_file *f, nuri_hparams *hp)
{
    gguf_str arch;
    nuri_status s = gguf_get_str(f, "general.architecture", &arch);
    if (s != NURI_OK) return s;
    const char *name = NULL;
    for (size_t i = 0; i < sizeof known_archs / sizeof known_archs[0]; i++) {
        if (gguf_str_eq(arch, known_archs[i].name)) {
            name = known_archs[i].name;
            hp->arch = known_archs[i].arch;
            hp->rope_type = known_archs[i].rope;
        }
    }
    if (!name)
        return nuri_error(NURI_ERR_UNSUPPORTED,
                          "architecture '%.*s' is not supported (nuri runs llama, qwen2, qwen3, "
                          "qwen2moe, qwen3moe, exaone, exaone4, exaone-moe, granite, hyperclovax, "
                          "gemma2, gemma3, gpt-oss, deepseek2, qwen35, qwen35moe)",
                          (int)(arch.len > 64 ? 64 : arch.len), arch.ptr);
    const struct arch_info *ai = arch_of(hp->arch);
    hp->pre_norm = ai->pre_norm;
    hp->post_norm = ai->post_norm;
    hp->arch_name = name;
    if ((s = get_dim(f, name, "embedding_length", true, 0, MAX_WIDTH, &hp->n_embd)) ||
        (s = get_dim(f, name, "block_count", true, 0, MAX_LAYERS, &hp->n_layer)) ||
        // a qwen3moe file may give only the experts' width (llama.cpp reads neither as required)
        (s = get_dim(f, name, "feed_forward_length", ai->moe != 'y', 0, MAX_WIDTH, &hp->n_ff)) ||
        (s = get_dim(f, name, "attention.head_count", true, 0, MAX_HEADS, &hp->n_head)) ||
        (s = get_dim(f, name, "attention.head_count_kv", false, hp->n_head, MAX_HEADS,
                     &hp->n_head_kv)) ||
        (s = get_dim(f, name, "context_length", false, 4096, 1 << 24, &hp->n_ctx_train)))
        return s;
    // their next-token-prediction layers come last (loaded by llama.cpp, run by neither)
    if (hp->arch == NURI_ARCH_EXAONE_MOE || hp->arch == NURI_ARCH_DEEPSEEK2 ||
        NURI_ARCH_IS_QWEN35(hp->arch)) {
        char key[128];
        snprintf(key, sizeof key, "%s.nextn_predict_layers", name);
        uint32_t nn = 0;
        s = gguf_get_u32(f, key, &nn);
        if (s != NURI_OK && s != NURI_ERR_NOT_FOUND) return s;
        if (nn >= (uint32_t)hp->n_layer)
            return nuri_error(NURI_ERR_FORMAT, "metadata '%s' = %u leaves none of the %d layers",
                              key, nn, hp->n_layer);
        hp->n_nextn = (int32_t)nn;
        hp->n_layer -= hp->n_nextn;
    }
    int32_t def_head_dim = hp->n_embd / hp->n_head;
    if ((s = get_dim(f, name, "attention.key_length", false, def_head_dim, MAX_WIDTH,
                     &hp->head_dim)))
        return s;
    int32_t v_len;
    if ((s = get_dim(f, name, "attention.value_length", false, hp->head_dim, MAX_WIDTH, &v_len)))
        return s;
    if (hp->arch == NURI_ARCH_DEEPSEEK2) { // the vocabulary size decides "lite" and the gating
        uint32_t nv = 0;
        char key[128];
        snprintf(key, sizeof key, "%s.vocab_size", name);
        if (gguf_get_u32(f, key, &nv) != NURI_OK) {
            gguf_arr toks;
            if (gguf_get_arr(f, "tokenizer.ggml.tokens", &toks) == NURI_OK) nv = (uint32_t)toks.n;
        }
        hp->n_vocab = nv <= MAX_VOCAB ? (int32_t)nv : 0; // token_embd.weight's rows replace it
        if ((s = read_mla_hparams(f, hp))) return s;
        v_len = hp->head_dim; // value_length is the latent's width, checked there
    }
    if (v_len != hp->head_dim)
        return nuri_error(NURI_ERR_UNSUPPORTED,
                          "%s.attention.value_length %d differs from key_length %d", name, v_len,
                          hp->head_dim);
    if (!hp->mla &&
        (s = get_dim(f, name, "rope.dimension_count", false, hp->head_dim, MAX_WIDTH, &hp->n_rot)))
        return s;
    if (hp->n_rot > hp->head_dim || hp->n_rot % 2 != 0)
        return nuri_error(NURI_ERR_FORMAT, "%s.rope.dimension_count %d must be even and <= %d",
                          name, hp->n_rot, hp->head_dim);
    if (hp->n_head % hp->n_head_kv != 0)
        return nuri_error(NURI_ERR_FORMAT,
                          "%s.attention.head_count %d is not a multiple of head_count_kv %d", name,
                          hp->n_head, hp->n_head_kv);
    if ((int64_t)hp->n_head * hp->head_dim > MAX_WIDTH)
        return nuri_error(NURI_ERR_FORMAT, "%d heads x %d dims exceed the limit %d", hp->n_head,
                          hp->head_dim, MAX_WIDTH);
    if ((s = get_float(f, name, "rope.freq_base", 10000.0f, &hp->rope_freq_base)) ||
        (s = get_float(f, name, "rope.freq_base_swa", hp->rope_freq_base,
                       &hp->rope_freq_base_swa)) ||
        (s = get_float(f, name, "attention.layer_norm_rms_epsilon", 1e-5f, &hp->rms_eps)))
        return s;
    hp->embd_scale = hp->residual_scale = hp->logit_scale = 1.0f;
    hp->rope_freq_scale_swa = 1.0f;
    if (!hp->mla) { // deepseek2's were set by read_mla_hparams
        hp->rope_freq_scale = 1.0f;
        hp->attn_scale = 1.0f / sqrtf((float)hp->head_dim);
    }
    if (ai->scales) {
        if ((s = get_float(f, name, "embedding_scale", 1.0f, &hp->embd_scale)) ||
            (s = get_float(f, name, "residual_scale", 1.0f, &hp->residual_scale)) ||
            (s = get_float(f, name, "logit_scale", 1.0f, &hp->logit_scale)))
            return s;
        char key[128];
        snprintf(key, sizeof key, "%s.attention.scale", name);
        float a;
        s = gguf_get_f32(f, key, &a);
        if (s != NURI_OK && s != NURI_ERR_NOT_FOUND) return s;
        if (s == NURI_OK && a != 0.0f) { // 0 means the default, as in llama.cpp's files
            if (!(a > 0.0f) || a > 1e6f)
                return nuri_error(NURI_ERR_FORMAT, "metadata '%s' = %g is not a positive number",
                                  key, (double)a);
            hp->attn_scale = a;
        }
    }
    if (hp->arch == NURI_ARCH_GEMMA2 || hp->arch == NURI_ARCH_GEMMA3) {
        if ((s = read_gemma(f, hp))) return s;
    }
    if (ai->swa) {
        char key[128];
        snprintf(key, sizeof key, "%s.attention.sliding_window", name);
        uint32_t w;
        s = gguf_get_u32(f, key, &w);
        if (s == NURI_OK) {
            if (w == 0 || w > (1u << 24))
                return nuri_error(NURI_ERR_FORMAT, "metadata '%s' = %u is outside 1..%u", key, w,
                                  1u << 24);
            hp->n_swa = (int32_t)w;
        } else if (s != NURI_ERR_NOT_FOUND || hp->arch == NURI_ARCH_GPTOSS) {
            return s;                                  // gpt-oss: required, as llama.cpp reads it
        } else if (hp->arch == NURI_ARCH_EXAONE_MOE) { // required for it, as in llama.cpp
            return nuri_error(NURI_ERR_FORMAT, "metadata '%s' is missing", key);
        }
    }
    if (hp->arch == NURI_ARCH_GPTOSS && (s = read_rope_scaling(f, hp))) return s;
    if (NURI_ARCH_IS_QWEN35(hp->arch) && (s = read_qwen35_hparams(f, hp))) return s;
    return read_moe_hparams(f, ai, hp);
}

/* Which layers use the sliding window: `<arch>.attention.sliding_window_pattern`, either one bool
 * per layer or a period n (the last layer of every n is global). No window: none. No pattern: none,
 * but for gemma2 (period 2), gemma3 (period 6) and exaone-moe (period 4), as llama.cpp reads them.
 */
static nuri_status read_swa_layers(const gguf_file *f, nuri_model *m)
{
    const nuri_hparams *hp = &m->hp;
    char key[128];
    snprintf(key, sizeof key, "%s.attention.sliding_window_pattern", hp->arch_name);
    const gguf_kv *kv = gguf_find_kv(f, key);
    bool any = false;
    if (hp->n_swa > 0 && !kv && hp->arch == NURI_ARCH_EXAONE_MOE) {
        for (int il = 0; il < hp->n_layer; il++) m->layers[il].swa = il % 4 < 3;
        any = hp->n_layer > 0;
    }
    // gpt-oss without the key: every other layer, the first sliding (llama.cpp's period 2)
    if (hp->arch == NURI_ARCH_GPTOSS && !kv)
        for (int il = 0; il < hp->n_layer; il++) any |= m->layers[il].swa = il % 2 == 0;
    if (hp->n_swa > 0 && kv) {
        if (gguf_kv_type(kv) == GGUF_TYPE_ARRAY) {
            gguf_arr a;
            nuri_status s = gguf_kv_arr(kv, &a);
            if (s != NURI_OK) return s;
            if (a.n != (uint64_t)hp->n_layer ||
                (a.type != GGUF_TYPE_BOOL && a.type != GGUF_TYPE_UINT8 && a.type != GGUF_TYPE_INT8))
                return nuri_error(NURI_ERR_FORMAT,
                                  "metadata '%s' must hold one bool per layer (%d), not %llu of %s",
                                  key, hp->n_layer, (unsigned long long)a.n,
                                  gguf_type_name(a.type));
            for (int il = 0; il < hp->n_layer; il++)
                m->layers[il].swa = ((const uint8_t *)a.data)[il] != 0;
        } else {
            uint64_t n;
            nuri_status s = gguf_kv_u64(kv, &n);
            if (s != NURI_OK) return s;
            if (n == 0 || n > (uint64_t)hp->n_layer)
                return nuri_error(NURI_ERR_FORMAT, "metadata '%s' = %llu is outside 1..%d", key,
                                  (unsigned long long)n, hp->n_layer);
            for (int il = 0; il < hp->n_layer; il++) m->layers[il].swa = (uint64_t)il % n < n - 1;
        }
        for (int il = 0; il < hp->n_layer; il++) any |= m->layers[il].swa;
    } else if (hp->n_swa > 0 && (hp->arch == NURI_ARCH_GEMMA2 || hp->arch == NURI_ARCH_GEMMA3)) {
        // no pattern key: llama.cpp's defaults, the last layer of every 2 (gemma2) or 6 global
        const int period = hp->arch == NURI_ARCH_GEMMA2 ? 2 : 6;
        for (int il = 0; il < hp->n_layer; il++) m->layers[il].swa = il % period < period - 1;
    }
    // exaone4: with sliding-window layers, only they use RoPE (the global ones have none)
    // exaone-moe: only the sliding-window layers use RoPE, whatever the others
    for (int il = 0; il < hp->n_layer; il++)
        m->layers[il].rope = hp->arch == NURI_ARCH_EXAONE_MOE
                                 ? m->layers[il].swa
                                 : hp->arch != NURI_ARCH_EXAONE4 || !any || m->layers[il].swa;
    return NURI_OK;
}

/* ---- tensors ---- */

typedef struct binder {
    const gguf_file *f;
    char *names; // name storage
    size_t names_len, names_cap;
} binder;

static const char *keep_name(binder *b, const char *name)
{
    size_t n = strlen(name) + 1;
    NURI_ASSERT(b->names_len + n <= b->names_cap);
    char *p = b->names + b->names_len;
    memcpy(p, name, n);
    b->names_len += n;
    return p;
}

/* Binds tensor `name` with shape (n_in) for 1-D (n_out == 0) or (n_in, n_out) for 2-D. */
static nuri_status bind(binder *b, const char *name, int64_t n_in, int64_t n_out, bool required,
                        bool want_f32, nuri_weight *w)
{
    memset(w, 0, sizeof *w);
    const gguf_tensor *t = gguf_find_tensor(b->f, name);
    if (!t) {
        if (!required) return NURI_OK;
        return nuri_error(NURI_ERR_FORMAT, "tensor '%s' is missing", name);
    }
    int64_t want1 = n_out ? n_out : 1;
    if (t->ne[0] != n_in || t->ne[1] != want1 || t->ne[2] != 1 || t->ne[3] != 1) {
        return nuri_error(NURI_ERR_FORMAT,
                          "tensor '%s' has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld]",
                          name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                          (long long)t->ne[3], (long long)n_in, (long long)want1);
    }
    const nuri_type_info *ti = nuri_type_get(t->type);
    if (want_f32 && t->type != NURI_TYPE_F32)
        return nuri_error(NURI_ERR_UNSUPPORTED, "tensor '%s' has type %s; nuri expects F32 here",
                          name, ti ? ti->name : "?");
    if (!nuri_kernels(t->type))
        return nuri_error(NURI_ERR_UNSUPPORTED, "tensor '%s' has type %s, which nuri cannot run",
                          name, ti ? ti->name : "?");
    w->data = t->data;
    w->type = t->type;
    w->n_in = n_in;
    w->n_out = want1;
    w->name = keep_name(b, name);
    return NURI_OK;
}

/* Binds the 3-D tensor `name` of n_expert matrices (n_in, n_out) as n_expert views ws[e], each
 * a matrix of its own (row-major, the experts one after another, as llama.cpp stores them). */
static nuri_status bind_experts(binder *b, const char *name, int64_t n_in, int64_t n_out,
                                int64_t n_expert, nuri_weight *ws)
{
    const gguf_tensor *t = gguf_find_tensor(b->f, name);
    if (!t) return nuri_error(NURI_ERR_FORMAT, "tensor '%s' is missing", name);
    if (t->ne[0] != n_in || t->ne[1] != n_out || t->ne[2] != n_expert || t->ne[3] != 1)
        return nuri_error(NURI_ERR_FORMAT,
                          "tensor '%s' has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld, "
                          "%lld] (n_in, n_out, experts)",
                          name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                          (long long)t->ne[3], (long long)n_in, (long long)n_out,
                          (long long)n_expert);
    const nuri_type_info *ti = nuri_type_get(t->type);
    if (!nuri_kernels(t->type))
        return nuri_error(NURI_ERR_UNSUPPORTED, "tensor '%s' has type %s, which nuri cannot run",
                          name, ti ? ti->name : "?");
    uint64_t row;
    nuri_type_row_bytes(t->type, (uint64_t)n_in, &row); // the reader checked the whole size
    const char *kept = keep_name(b, name);
    for (int64_t e = 0; e < n_expert; e++)
        ws[e] = (nuri_weight){.data = (const char *)t->data + (size_t)(row * (uint64_t)(e * n_out)),
                              .type = t->type,
                              .n_in = n_in,
                              .n_out = n_out,
                              .name = kept};
    return NURI_OK;
}

/* deepseek2's attention weights of layer il (model.h): the query (through its low-rank
 * compression when n_lora_q > 0), the compressed KV with its rope part, and the per-head k_b / v_b
 * of the absorbed form, bound as n_head views each. */
static nuri_status bind_mla(binder *b, nuri_model *m, int il)
{
    const nuri_hparams *hp = &m->hp;
    nuri_layer *L = &m->layers[il];
    const int64_t n_embd = hp->n_embd, H = hp->n_head, r = hp->n_rot;
    const int64_t n_q = H * (hp->n_qk_nope + r), kvl = hp->n_lora_kv;
    char nm[96];
    nuri_status s;
#define MLA(field, suffix, n_in, n_out, f32)                                                       \
    do {                                                                                           \
        snprintf(nm, sizeof nm, "blk.%d.%s", il, suffix);                                          \
        if ((s = bind(b, nm, n_in, n_out, true, f32, &L->field))) return s;                        \
    } while (0)
    if (hp->n_lora_q > 0) {
        MLA(wq_a, "attn_q_a.weight", n_embd, hp->n_lora_q, false);
        MLA(q_a_norm, "attn_q_a_norm.weight", hp->n_lora_q, 0, true);
        MLA(wq_b, "attn_q_b.weight", hp->n_lora_q, n_q, false);
    } else {
        MLA(wq, "attn_q.weight", n_embd, n_q, false);
    }
    MLA(wkv_a, "attn_kv_a_mqa.weight", n_embd, kvl + r, false);
    MLA(kv_a_norm, "attn_kv_a_norm.weight", kvl, 0, true);
    MLA(wo, "attn_output.weight", H * hp->n_v_mla, n_embd, false);
#undef MLA
    L->wk_b = m->mla_heads + (size_t)il * 2 * (size_t)H;
    L->wv_b = L->wk_b + H;
    snprintf(nm, sizeof nm, "blk.%d.attn_k_b.weight", il);
    if ((s = bind_experts(b, nm, hp->n_qk_nope, kvl, H, L->wk_b))) return s;
    snprintf(nm, sizeof nm, "blk.%d.attn_v_b.weight", il);
    return bind_experts(b, nm, kvl, hp->n_v_mla, H, L->wv_b);
}

/* qwen35: which layers are delta-net layers (L->rec >= 0, numbered in order): the bools of
 * `attention.recurrent_layers` (one per layer of the file, next-token-prediction layers included),
 * else all but every `full_attention_interval`-th (default 4), as llama.cpp reads them. */
static nuri_status qwen35_recurrent_layers(nuri_model *m)
{
    nuri_hparams *hp = &m->hp;
    const int32_t n_all = hp->n_layer + hp->n_nextn;
    char key[128];
    snprintf(key, sizeof key, "%s.attention.recurrent_layers", hp->arch_name);
    const gguf_kv *kv = gguf_find_kv(m->file, key);
    gguf_arr a = {0};
    if (kv) {
        nuri_status s = gguf_kv_arr(kv, &a);
        if (s != NURI_OK) return s;
        if (a.n != (uint64_t)n_all ||
            (a.type != GGUF_TYPE_BOOL && a.type != GGUF_TYPE_UINT8 && a.type != GGUF_TYPE_INT8))
            return nuri_error(NURI_ERR_FORMAT, "metadata '%s' must hold one bool per layer (%d)",
                              key, n_all);
    }
    uint32_t interval = 4;
    snprintf(key, sizeof key, "%s.full_attention_interval", hp->arch_name);
    nuri_status s = gguf_get_u32(m->file, key, &interval);
    if (s != NURI_OK && s != NURI_ERR_NOT_FOUND) return s;
    if (interval == 0 || interval > (uint32_t)MAX_LAYERS)
        return nuri_error(NURI_ERR_FORMAT, "metadata '%s' = %u is outside 1..%d", key, interval,
                          MAX_LAYERS);
    hp->n_recurrent = 0;
    for (int il = 0; il < hp->n_layer; il++) {
        const bool rec = kv ? ((const uint8_t *)a.data)[il] != 0 : (il + 1) % interval != 0;
        m->layers[il].rec = rec ? hp->n_recurrent++ : -1;
    }
    return NURI_OK;
}

/* One qwen35 layer: pre-norm, then a delta-net mixer (L->rec >= 0) or attention whose attn_q
 * yields a query and an output gate per head, with q/k norms; post_attention_norm before the
 * SwiGLU feed-forward. */
static nuri_status bind_qwen35_layer(binder *b, nuri_model *m, int il)
{
    const nuri_hparams *hp = &m->hp;
    nuri_layer *L = &m->layers[il];
    const int64_t E = hp->n_embd, n_q = (int64_t)hp->n_head * hp->head_dim;
    const int64_t n_kv = (int64_t)hp->n_head_kv * hp->head_dim, F = hp->n_ff;
    const int64_t S = hp->ssm_d_state, K = (int64_t)hp->ssm_n_group * S;
    const int64_t V = (int64_t)hp->ssm_n_v * S, C = 2 * K + V;
    char nm[96];
    nuri_status s;
#define BIND(field, suffix, n_in, n_out, f32)                                                      \
    do {                                                                                           \
        snprintf(nm, sizeof nm, "blk.%d.%s", il, suffix);                                          \
        if ((s = bind(b, nm, n_in, n_out, true, f32, &L->field))) return s;                        \
    } while (0)
    BIND(attn_norm, "attn_norm.weight", E, 0, true);
    BIND(ffn_norm, "post_attention_norm.weight", E, 0, true);
    if (L->rec >= 0) {
        BIND(ssm_qkv, "attn_qkv.weight", E, C, false);
        BIND(ssm_z, "attn_gate.weight", E, V, false);
        BIND(ssm_beta, "ssm_beta.weight", E, hp->ssm_n_v, false);
        BIND(ssm_alpha, "ssm_alpha.weight", E, hp->ssm_n_v, false);
        BIND(ssm_conv, "ssm_conv1d.weight", hp->ssm_d_conv, C, true);
        BIND(ssm_dt, "ssm_dt.bias", hp->ssm_n_v, 0, true);
        BIND(ssm_a, "ssm_a", hp->ssm_n_v, 0, true);
        BIND(ssm_norm, "ssm_norm.weight", S, 0, true);
        BIND(ssm_out, "ssm_out.weight", V, E, false);
    } else {
        BIND(wq, "attn_q.weight", E, 2 * n_q, false); // (query, gate) per head
        BIND(wk, "attn_k.weight", E, n_kv, false);
        BIND(wv, "attn_v.weight", E, n_kv, false);
        BIND(wo, "attn_output.weight", n_q, E, false);
        BIND(q_norm, "attn_q_norm.weight", hp->head_dim, 0, true);
        BIND(k_norm, "attn_k_norm.weight", hp->head_dim, 0, true);
    }
    if (hp->n_expert > 0) { // qwen35moe: experts and a shared expert gated by sigmoid(x . inp)
        const int64_t X = hp->n_expert, FX = hp->n_ff_exp, SH = hp->n_ff_shexp;
        nuri_weight *ex = m->experts + (size_t)il * 3 * (size_t)X;
        L->exp_gate = ex;
        L->exp_up = ex + X;
        L->exp_down = ex + 2 * X;
        BIND(ffn_gate_inp, "ffn_gate_inp.weight", E, X, false);
        snprintf(nm, sizeof nm, "blk.%d.ffn_gate_exps.weight", il);
        if ((s = bind_experts(b, nm, E, FX, X, L->exp_gate))) return s;
        snprintf(nm, sizeof nm, "blk.%d.ffn_up_exps.weight", il);
        if ((s = bind_experts(b, nm, E, FX, X, L->exp_up))) return s;
        snprintf(nm, sizeof nm, "blk.%d.ffn_down_exps.weight", il);
        if ((s = bind_experts(b, nm, FX, E, X, L->exp_down))) return s;
        BIND(shexp_gate_inp, "ffn_gate_inp_shexp.weight", E, 0, true);
        BIND(shexp_gate, "ffn_gate_shexp.weight", E, SH, false);
        BIND(shexp_up, "ffn_up_shexp.weight", E, SH, false);
        BIND(shexp_down, "ffn_down_shexp.weight", SH, E, false);
    } else {
        BIND(ffn_gate, "ffn_gate.weight", E, F, false);
        BIND(ffn_up, "ffn_up.weight", E, F, false);
        BIND(ffn_down, "ffn_down.weight", F, E, false);
    }
#undef BIND
    L->rope = true;
    // tensors qwen35 does not have: refused rather than left out of the computation
    const char *const unused[] = {"attn_q.bias",
                                  "attn_k.bias",
                                  "attn_v.bias",
                                  "attn_output.bias",
                                  "ffn_norm.weight",
                                  "exp_probs_b.bias",
                                  hp->n_expert > 0 ? "ffn_up.weight" : "ffn_gate_inp.weight",
                                  hp->n_expert > 0 ? "ffn_gate_inp.bias" : "ffn_up_exps.weight"};
    for (size_t u = 0; u < sizeof unused / sizeof unused[0]; u++) {
        snprintf(nm, sizeof nm, "blk.%d.%s", il, unused[u]);
        if (gguf_find_tensor(b->f, nm))
            return nuri_error(NURI_ERR_UNSUPPORTED, "tensor '%s' is not supported in %s", nm,
                              hp->arch_name);
    }
    return NURI_OK;
}

static nuri_status bind_weights(nuri_model *m)
{
    const nuri_hparams *hp = &m->hp;
    binder b = {.f = m->file, .names_cap = (size_t)(hp->n_layer + 1) * 24 * 48};
    b.names = m->names = malloc(b.names_cap);
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!b.names || !m->layers) return nuri_error(NURI_ERR_NOMEM, "out of memory for the model");
    const int64_t n_expert = hp->n_expert;
    if (n_expert > 0) {
        m->experts = calloc((size_t)hp->n_layer * 3 * (size_t)n_expert, sizeof *m->experts);
        if (!m->experts) return nuri_error(NURI_ERR_NOMEM, "out of memory for the model");
    }
    if (hp->mla) {
        m->mla_heads = calloc((size_t)hp->n_layer * 2 * (size_t)hp->n_head, sizeof *m->mla_heads);
        if (!m->mla_heads) return nuri_error(NURI_ERR_NOMEM, "out of memory for the model");
    }

    int64_t n_embd = hp->n_embd, n_q = (int64_t)hp->n_head * hp->head_dim;
    int64_t n_kv = (int64_t)hp->n_head_kv * hp->head_dim, n_ff = hp->n_ff;
    nuri_status s;

    /* The vocabulary size is token_embd's second dimension. */
    const gguf_tensor *te = gguf_find_tensor(m->file, "token_embd.weight");
    if (!te) return nuri_error(NURI_ERR_FORMAT, "tensor 'token_embd.weight' is missing");
    if (te->ne[1] < 1 || te->ne[1] > MAX_VOCAB)
        return nuri_error(NURI_ERR_FORMAT, "tensor 'token_embd.weight' has %lld rows (vocabulary)",
                          (long long)te->ne[1]);
    m->hp.n_vocab = (int32_t)te->ne[1];
    int64_t n_vocab = m->hp.n_vocab;

    if ((s = bind(&b, "token_embd.weight", n_embd, n_vocab, true, false, &m->token_embd)) ||
        (s = bind(&b, "output_norm.weight", n_embd, 0, true, true, &m->output_norm)) ||
        (s = bind(&b, "output.weight", n_embd, n_vocab, false, false, &m->output)))
        return s;
    if (hp->arch == NURI_ARCH_GEMMA2 && m->output.data)
        return nuri_error(NURI_ERR_FORMAT,
                          "tensor 'output.weight': gemma2 ties its output to token_embd.weight and "
                          "has no output matrix (llama.cpp refuses such a file too)");
    if (!m->output.data) m->output = m->token_embd; // tied
    if (hp->arch == NURI_ARCH_GEMMA3) {
        // Gemma 3's vision tower lives in a separate mmproj file; a file with it inside is not a
        // text model nuri can run as it is
        for (uint64_t i = 0; i < gguf_n_tensors(m->file); i++) {
            const gguf_str tn = gguf_tensor_at(m->file, i)->name;
            if ((tn.len > 2 && !memcmp(tn.ptr, "v.", 2)) ||
                (tn.len > 3 && !memcmp(tn.ptr, "mm.", 3)))
                return nuri_error(NURI_ERR_UNSUPPORTED,
                                  "tensor '%.*s': Gemma 3's vision encoder is not supported (nuri "
                                  "runs the text model; the vision part belongs in an mmproj "
                                  "file)",
                                  (int)(tn.len > 64 ? 64 : tn.len), tn.ptr);
        }
    }

    nuri_weight rf;
    if ((s = bind(&b, "rope_freqs.weight", hp->n_rot / 2, 0, false, true, &rf))) return s;
    m->rope_freqs = rf.data;

    const struct arch_info *ai = arch_of(hp->arch);
    for (int il = 0; il < hp->n_layer; il++) m->layers[il].rec = -1;
    if (NURI_ARCH_IS_QWEN35(hp->arch)) {
        if ((s = qwen35_recurrent_layers(m))) return s;
        for (int il = 0; il < hp->n_layer; il++)
            if ((s = bind_qwen35_layer(&b, m, il))) return s;
        return NURI_OK;
    }
    for (int il = 0; il < hp->n_layer; il++) {
        nuri_layer *L = &m->layers[il];
        char nm[96];
#define BIND(field, suffix, n_in, n_out, req, f32)                                                 \
    do {                                                                                           \
        snprintf(nm, sizeof nm, "blk.%d.%s", il, suffix);                                          \
        if ((s = bind(&b, nm, n_in, n_out, req, f32, &L->field))) return s;                        \
    } while (0)
        BIND(attn_norm, "attn_norm.weight", n_embd, 0, ai->pre_norm, true);
        if (hp->mla) {
            if ((s = bind_mla(&b, m, il))) return s;
        } else {
            BIND(wq, "attn_q.weight", n_embd, n_q, true, false);
            BIND(wk, "attn_k.weight", n_embd, n_kv, true, false);
            BIND(wv, "attn_v.weight", n_embd, n_kv, true, false);
            BIND(wo, "attn_output.weight", n_q, n_embd, true, false);
        }
        const bool gptoss = hp->arch == NURI_ARCH_GPTOSS;
        // gpt-oss's norm before the feed-forward is named post_attention_norm
        BIND(ffn_norm, gptoss ? "post_attention_norm.weight" : "ffn_norm.weight", n_embd, 0,
             ai->pre_norm, true);
        if (!gptoss)
            BIND(attn_post_norm, "post_attention_norm.weight", n_embd, 0, ai->post_norm, true);
        BIND(ffn_post_norm, "post_ffw_norm.weight", n_embd, 0, ai->post_norm, true);
        BIND(bo, "attn_output.bias", n_embd, 0, false, true);
        const bool layer_moe = n_expert > 0 && il >= hp->n_dense_lead;
        if (n_expert > 0) { // a dense layer of a MoE model keeps empty views (data NULL)
            nuri_weight *ex = m->experts + (size_t)il * 3 * (size_t)n_expert;
            L->exp_gate = ex;
            L->exp_up = ex + n_expert;
            L->exp_down = ex + 2 * n_expert;
        }
        if (!layer_moe) {
            // a llama file with expert tensors but no expert_count: say that, not that the dense
            // ffn_gate is missing
            snprintf(nm, sizeof nm, "blk.%d.ffn_up_exps.weight", il);
            if (n_expert == 0 && gguf_find_tensor(b.f, nm))
                return nuri_error(NURI_ERR_FORMAT,
                                  "tensor '%s' holds experts, but metadata '%s.expert_count' is "
                                  "missing (a Mixtral-style file needs expert_count and "
                                  "expert_used_count)",
                                  nm, hp->arch_name);
            snprintf(nm, sizeof nm, "blk.%d.ffn_gate.0.weight", il);
            if (gguf_find_tensor(b.f, nm))
                return nuri_error(NURI_ERR_UNSUPPORTED,
                                  "tensor '%s': experts stored one tensor each (the old Mixtral "
                                  "GGUF layout) are not supported; convert the model again "
                                  "(current files hold blk.N.ffn_{gate,up,down}_exps.weight)",
                                  nm);
            BIND(ffn_gate, "ffn_gate.weight", n_embd, n_ff, true, false);
            BIND(ffn_up, "ffn_up.weight", n_embd, n_ff, true, false);
            BIND(ffn_down, "ffn_down.weight", n_ff, n_embd, true, false);
        } else {
            const int64_t n_ff_exp = hp->n_ff_exp;
            BIND(ffn_gate_inp, "ffn_gate_inp.weight", n_embd, n_expert, true, false);
            snprintf(nm, sizeof nm, "blk.%d.ffn_gate_exps.weight", il);
            if ((s = bind_experts(&b, nm, n_embd, n_ff_exp, n_expert, L->exp_gate))) return s;
            snprintf(nm, sizeof nm, "blk.%d.ffn_up_exps.weight", il);
            if ((s = bind_experts(&b, nm, n_embd, n_ff_exp, n_expert, L->exp_up))) return s;
            snprintf(nm, sizeof nm, "blk.%d.ffn_down_exps.weight", il);
            if ((s = bind_experts(&b, nm, n_ff_exp, n_embd, n_expert, L->exp_down))) return s;
            if (hp->moe_sigmoid || hp->arch == NURI_ARCH_EXAONE_MOE)
                BIND(exp_probs_b, "exp_probs_b.bias", n_expert, 0, false, true);
            snprintf(nm, sizeof nm, "blk.%d.ffn_gate_up_exps.weight", il);
            if (gguf_find_tensor(b.f, nm))
                return nuri_error(NURI_ERR_UNSUPPORTED,
                                  "tensor '%s': fused gate and up experts are not supported", nm);
            if (hp->n_ff_shexp > 0) {
                const int64_t n_sh = hp->n_ff_shexp;
                // qwen2moe gates its shared expert; exaone-moe's has no gate
                BIND(shexp_gate_inp, "ffn_gate_inp_shexp.weight", n_embd, 0,
                     hp->arch == NURI_ARCH_QWEN2MOE, true);
                BIND(shexp_gate, "ffn_gate_shexp.weight", n_embd, n_sh, true, false);
                BIND(shexp_up, "ffn_up_shexp.weight", n_embd, n_sh, true, false);
                BIND(shexp_down, "ffn_down_shexp.weight", n_sh, n_embd, true, false);
            }
        }
        BIND(bq, "attn_q.bias", n_q, 0, ai->qkv_bias, true);
        BIND(bk, "attn_k.bias", n_kv, 0, ai->qkv_bias, true);
        BIND(bv, "attn_v.bias", n_kv, 0, ai->qkv_bias, true);
        BIND(q_norm, "attn_q_norm.weight", hp->head_dim, 0, ai->qk_norm, true);
        BIND(k_norm, "attn_k_norm.weight", hp->head_dim, 0, ai->qk_norm, true);
        if (gptoss) {
            BIND(sinks, "attn_sinks.weight", hp->n_head, 0, true, true);
            BIND(ffn_gate_inp_b, "ffn_gate_inp.bias", n_expert, 0, true, true);
            BIND(exp_gate_b, "ffn_gate_exps.bias", hp->n_ff_exp, n_expert, true, true);
            BIND(exp_up_b, "ffn_up_exps.bias", hp->n_ff_exp, n_expert, true, true);
            BIND(exp_down_b, "ffn_down_exps.bias", n_embd, n_expert, true, true);
        }
        // tensors nuri would have to use but does not: refuse rather than compute something else
        const struct {
            const char *suffix, *what;
            bool in_dense, in_moe; // refused in a dense layer / a layer with experts
        } unused[] = {
            {"ffn_gate.bias", "feed-forward bias", true, true},
            {"ffn_up.bias", "feed-forward bias", true, true},
            {"ffn_down.bias", "feed-forward bias", true, true},
            {"ffn_gate_inp.weight", "a router without experts", true, false},
            {"ffn_up.weight", "a dense feed-forward beside the experts", false, true},
            {"ffn_gate_exps.bias", "expert bias", false, !gptoss},
            {"ffn_up_exps.bias", "expert bias", false, !gptoss},
            {"ffn_down_exps.bias", "expert bias", false, !gptoss},
            {"ffn_gate_inp.bias", "router bias", false, !gptoss},
            {"attn_sinks.weight", "attention sinks", true, !gptoss},
            {"exp_probs_b.bias", "expert selection bias", true,
             hp->arch != NURI_ARCH_EXAONE_MOE && !(hp->mla && hp->moe_sigmoid)},
            {"ffn_up_shexp.weight", "shared expert", true, hp->n_ff_shexp == 0},
            {"ffn_gate_inp_shexp.weight", "shared expert gate", true,
             hp->n_ff_shexp == 0 || hp->arch == NURI_ARCH_EXAONE_MOE || hp->mla},
            {"attn_kv_b.weight", "the older deepseek2 layout", hp->mla, hp->mla},
            {"attn_q.weight", "a query matrix beside q_lora_rank", hp->mla && hp->n_lora_q > 0,
             hp->mla && hp->n_lora_q > 0},
        };
        for (size_t u = 0; u < sizeof unused / sizeof unused[0]; u++) {
            if (!(layer_moe ? unused[u].in_moe : unused[u].in_dense)) continue;
            snprintf(nm, sizeof nm, "blk.%d.%s", il, unused[u].suffix);
            if (gguf_find_tensor(b.f, nm))
                return nuri_error(NURI_ERR_UNSUPPORTED, "tensor '%s' (%s) is not supported", nm,
                                  unused[u].what);
        }
#undef BIND
    }
    return NURI_OK;
}

/* The vocabulary, loaded whole (nuri_vocab_load refuses a broken one, naming the key), and
 * checked against the weights: every token id needs an embedding row and a logit. n_vocab is
 * token_embd's row count and a separate output matrix was bound with exactly that many rows, so
 * one comparison covers both. More rows than tokens is fine (padded vocabularies). */
static nuri_status load_vocab(nuri_model *m)
{
    nuri_status s = nuri_vocab_load(m->file, &m->vocab);
    if (s != NURI_OK) return s;
    const uint32_t n_tokens = nuri_vocab_n_tokens(m->vocab);
    if (n_tokens > (uint32_t)m->hp.n_vocab)
        return nuri_error(NURI_ERR_FORMAT, "tokenizer.ggml.tokens has %u entries but %s %d rows",
                          n_tokens,
                          m->output.data != m->token_embd.data
                              ? "tensors 'token_embd.weight' and 'output.weight' have"
                              : "tensor 'token_embd.weight' has",
                          m->hp.n_vocab);
    return NURI_OK;
}

/* The matrices of every layer of this stage (and the output matrix on the last), in a fixed
 * order. */
static int layer_matrices(nuri_model *m, nuri_weight **list, int cap)
{
    int n = 0;
    for (int il = m->layer_first; il < m->layer_end; il++) {
        nuri_layer *L = &m->layers[il];
        nuri_weight *ws[] = {&L->wq,         &L->wk,       &L->wv,         &L->wo,
                             &L->ffn_gate,   &L->ffn_up,   &L->ffn_down,   &L->ffn_gate_inp,
                             &L->shexp_gate, &L->shexp_up, &L->shexp_down, &L->wq_a,
                             &L->wq_b,       &L->wkv_a,    &L->ssm_qkv,    &L->ssm_z,
                             &L->ssm_out};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0] && n < cap; i++)
            if (ws[i]->data) list[n++] = ws[i];
        for (int32_t e = 0; L->ffn_gate_inp.data && e < m->hp.n_expert && n + 3 <= cap; e++) {
            list[n++] = &L->exp_gate[e];
            list[n++] = &L->exp_up[e];
            list[n++] = &L->exp_down[e];
        }
    }
    // the output matrix too when it is the embedding (tied): the packed copy serves the head and
    // the embedding lookup reads its few rows per step from the file's pages, which come back
    // from the page cache on demand after the range is released
    if (n < cap && m->layer_end == m->hp.n_layer) list[n++] = &m->output;
    return n;
}

/* MemAvailable from /proc/meminfo (bytes), or NURI_MEMAVAILABLE_TEST (bytes: the tests' way to
 * make --repack auto decide both ways). false when neither can be read. */
static bool mem_available(uint64_t *out)
{
    const char *test = getenv("NURI_MEMAVAILABLE_TEST");
    if (test && *test) {
        char *end;
        unsigned long long v = strtoull(test, &end, 10);
        *out = v;
        return !*end;
    }
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return false;
    char line[128];
    bool found = false;
    unsigned long long kib;
    while (!found && fgets(line, sizeof line, f))
        found = sscanf(line, "MemAvailable: %llu kB", &kib) == 1;
    fclose(f);
    if (found) *out = (uint64_t)kib * 1024;
    return found;
}

/* Whether a packed copy of `bytes` fits in `avail`, leaving an eighth of it and 256 MiB for the
 * KV cache, the activations and everyone else. */
static bool pack_fits(uint64_t bytes, uint64_t avail)
{
    const uint64_t margin = avail / 8 + ((uint64_t)256 << 20);
    return avail > margin && bytes <= avail - margin;
}

/* Repacks the matrices whose type this CPU multiplies faster in the x16 layout (kernels/pack.h)
 * into one block of memory of their own, and gives the file's pages of those tensors back, so
 * that resident memory stays about one copy of the weights. The block asks for transparent huge
 * pages: decode streams every packed byte once per token, and 2 MiB pages spare it most TLB
 * misses (1B Q4_K_M tg64, 2 threads, alternating runs: +9%); being one block, it rounds up to a
 * huge page once, not once per matrix. Without the memory, nothing is packed (the file's layout:
 * slower, same results' tolerance). The embedding table itself (read by rows) is never packed; a
 * tied output matrix gets its own packed copy. */
static void pack_weights(nuri_model *m, const nuri_model_load_opts *o)
{
    const int cap = m->hp.n_layer * (14 + 3 * m->hp.n_expert) + 1;
    nuri_weight **list = malloc(sizeof *list * (size_t)cap);
    if (!list) return;
    const int n = layer_matrices(m, list, cap);
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += (nuri_pack_bytes(list[i]->type, list[i]->n_in, list[i]->n_out) + 63) & ~(size_t)63;
    const size_t huge = (size_t)2 << 20;
    total = (total + huge - 1) & ~(huge - 1);
    m->pack_bytes = total;
    uint64_t avail;
    if (total && o->repack == NURI_REPACK_AUTO && mem_available(&avail) &&
        !pack_fits(total, avail)) {
        m->pack_declined_avail = avail;
        total = 0; // the copy would push the machine into swapping: run from the mapped file
    }
    uint8_t *block = total ? aligned_alloc(huge, total) : NULL;
    if (!block) {
        free(list);
        return;
    }
#ifdef MADV_HUGEPAGE
    madvise(block, total, MADV_HUGEPAGE); // advice only: without THP, ordinary pages
#endif
    m->packed = block;
    size_t at = 0;
    if (o->progress) o->progress(o->progress_ud, "repacking the weights", 0, total);
    for (int i = 0; i < n; i++) {
        nuri_weight *w = list[i];
        const size_t bytes = nuri_pack_bytes(w->type, w->n_in, w->n_out);
        if (!bytes) continue;
        uint8_t *p = block + at;
        at += (bytes + 63) & ~(size_t)63;
        uint64_t row;
        nuri_type_row_bytes(w->type, (uint64_t)w->n_in, &row);
        // in slabs of 1024 rows, each slab's file pages given back as soon as it is copied, so
        // that the peak stays near one copy of the weights (a whole tied output matrix at once
        // would add its size)
        const int64_t slab = 64 * NURI_PACK_ROWS;
        const size_t group_bytes = nuri_pack_bytes(w->type, w->n_in, NURI_PACK_ROWS);
        for (int64_t r0 = 0; r0 < w->n_out; r0 += slab) {
            const int64_t nr = w->n_out - r0 < slab ? w->n_out - r0 : slab;
            const uint8_t *src = (const uint8_t *)w->data + (size_t)(row * (uint64_t)r0);
            nuri_pack(w->type, src, row, w->n_in, nr,
                      p + (size_t)(r0 / NURI_PACK_ROWS) * group_bytes);
            gguf_release_range(m->file, src, (size_t)(row * (uint64_t)nr));
        }
        w->packed = p;
        if (o->progress) o->progress(o->progress_ud, "repacking the weights", at, total);
    }
    if (o->progress) o->progress(o->progress_ud, "repacking the weights", total, total);
    free(list);
}

static uint64_t weight_bytes(const nuri_weight *w);

/* A layer's weights other than its experts' matrices and their biases (absent ones have NULL
 * data): every list of a layer's bytes or parameters starts here. Returns how many. */
enum { LAYER_WEIGHTS_MAX = 40 };
static int layer_weights(const nuri_layer *L, const nuri_weight **ws)
{
    const nuri_weight *all[] = {
        &L->attn_norm,
        &L->wq,
        &L->wk,
        &L->wv,
        &L->bq,
        &L->bk,
        &L->bv,
        &L->q_norm,
        &L->k_norm,
        &L->wo,
        &L->bo,
        &L->ffn_norm,
        &L->ffn_gate,
        &L->ffn_up,
        &L->ffn_down,
        &L->attn_post_norm,
        &L->ffn_post_norm,
        &L->ffn_gate_inp,
        &L->shexp_gate_inp,
        &L->shexp_gate,
        &L->shexp_up,
        &L->shexp_down,
        &L->sinks,
        &L->ffn_gate_inp_b,
        &L->exp_probs_b,
        &L->wq_a,
        &L->q_a_norm,
        &L->wq_b,
        &L->wkv_a,
        &L->kv_a_norm,
        &L->ssm_qkv,
        &L->ssm_z,
        &L->ssm_beta,
        &L->ssm_alpha,
        &L->ssm_conv,
        &L->ssm_dt,
        &L->ssm_a,
        &L->ssm_norm,
        &L->ssm_out,
    };
    _Static_assert(sizeof all / sizeof all[0] <= LAYER_WEIGHTS_MAX, "LAYER_WEIGHTS_MAX");
    memcpy(ws, all, sizeof all);
    return (int)(sizeof all / sizeof all[0]);
}

/* Bytes of layer il's weights, every expert (and expert bias) counted. */
static double layer_bytes(const nuri_model *m, int il)
{
    const nuri_layer *L = &m->layers[il];
    const nuri_weight *ws[LAYER_WEIGHTS_MAX];
    const int n = layer_weights(L, ws);
    double b = 0;
    for (int i = 0; i < n; i++) b += (double)weight_bytes(ws[i]);
    for (int32_t e = 0; e < m->hp.n_expert; e++)
        b += (double)(weight_bytes(&L->exp_gate[e]) + weight_bytes(&L->exp_up[e]) +
                      weight_bytes(&L->exp_down[e]));
    b += (double)(weight_bytes(&L->exp_gate_b) + weight_bytes(&L->exp_up_b) +
                  weight_bytes(&L->exp_down_b));
    if (L->wk_b) // deepseek2's per-head k_b / v_b
        b += (double)m->hp.n_head * (double)(weight_bytes(&L->wk_b[0]) + weight_bytes(&L->wv_b[0]));
    return b;
}

/* This process's stage of a pipeline (dist.h): a contiguous run of layers, the runs cut so that
 * every stage holds about the same bytes of weights, the last stage's output matrix counted with
 * it (its packed copy is resident there, and its product is as long as its bytes; stage 0 reads
 * only the embedding rows of its tokens). A 1B Llama's head weighs about six of its layers: cut
 * by layer count, 3 stages held 220, 208 and 456 MiB. Every stage gets at least one layer. */
static nuri_status set_stage(nuri_model *m)
{
    m->stage = nuri_dist_rank();
    m->n_stages = nuri_dist_size();
    const int32_t n_layer = m->hp.n_layer, N = m->n_stages;
    if (N > n_layer)
        return nuri_error(NURI_ERR_INVALID_ARG,
                          "a pipeline of %d stages needs at least one layer each; the model has %d",
                          N, n_layer);
    m->layer_first = 0;
    m->layer_end = n_layer;
    if (N == 1) return NURI_OK;
    double total = (double)weight_bytes(&m->output);
    for (int il = 0; il < n_layer; il++) total += layer_bytes(m, il);
    const double target = total / N;
    double acc = 0; // bytes of layers [0, end)
    for (int32_t s = 0, first = 0; s < N; s++) {
        int32_t end = n_layer;
        if (s < N - 1) { // one layer, then more while that brings the cut nearer (s + 1) * target
            acc += layer_bytes(m, first);
            end = first + 1;
            const double cut = (s + 1) * target;
            while (end < n_layer - (N - 1 - s)) {
                const double next = layer_bytes(m, end);
                if (fabs(acc + next - cut) > fabs(acc - cut)) break;
                acc += next;
                end++;
            }
        }
        if (s == m->stage) {
            m->layer_first = first;
            m->layer_end = end;
        }
        first = end;
    }
    return NURI_OK;
}

bool nuri_repack_parse(const char *s, nuri_repack *out)
{
    if (!strcmp(s, "auto"))
        *out = NURI_REPACK_AUTO;
    else if (!strcmp(s, "on") || !strcmp(s, "1"))
        *out = NURI_REPACK_ON;
    else if (!strcmp(s, "off") || !strcmp(s, "0"))
        *out = NURI_REPACK_OFF;
    else
        return false;
    return true;
}

static nuri_status model_from_gguf(gguf_file *f, const nuri_model_load_opts *opts,
                                   nuri_model **out);

nuri_status nuri_model_from_gguf(gguf_file *f, nuri_model **out)
{
    return model_from_gguf(f, NULL, out);
}

static nuri_status model_from_gguf(gguf_file *f, const nuri_model_load_opts *opts, nuri_model **out)
{
    *out = NULL;
    nuri_model_load_opts o = opts ? *opts : (nuri_model_load_opts){0};
    const char *env = getenv("NURI_PACK");
    if (o.repack == NURI_REPACK_DEFAULT && env && *env && !nuri_repack_parse(env, &o.repack)) {
        gguf_close(f);
        return nuri_error(NURI_ERR_INVALID_ARG, "NURI_PACK must be auto, on or off (got '%s')",
                          env);
    }
    if (o.repack == NURI_REPACK_DEFAULT) o.repack = NURI_REPACK_AUTO;
    nuri_model *m = calloc(1, sizeof *m);
    if (!m) {
        gguf_close(f);
        return nuri_error(NURI_ERR_NOMEM, "out of memory for the model");
    }
    m->file = f;
    nuri_status s = read_hparams(f, &m->hp);
    if (s == NURI_OK) s = bind_weights(m);
    if (s == NURI_OK) s = read_swa_layers(f, m);
    if (s == NURI_OK) s = set_stage(m);
    if (s == NURI_OK) s = load_vocab(m); // before the packing, which takes time
    if (s == NURI_OK && o.repack != NURI_REPACK_OFF) pack_weights(m, &o);
    if (s != NURI_OK) {
        nuri_model_free(m);
        return s;
    }
    *out = m;
    return NURI_OK;
}

nuri_status nuri_model_load(const char *path, nuri_model **out)
{
    return nuri_model_load_with(path, NULL, out);
}

nuri_status nuri_model_load_with(const char *path, const nuri_model_load_opts *o, nuri_model **out)
{
    *out = NULL;
    gguf_file *f;
    nuri_status s = gguf_open(path, &f);
    if (s != NURI_OK) return s; // gguf_open's messages name the path
    s = model_from_gguf(f, o, out);
    if (s != NURI_OK) return nuri_error_wrap(s, "%s", path);
    return NURI_OK;
}

void nuri_model_free(nuri_model *m)
{
    if (!m) return;
    free(m->packed); // every packed matrix lives in it
    nuri_vocab_free(m->vocab);
    gguf_close(m->file);
    free(m->layers);
    free(m->experts);
    free(m->mla_heads);
    free(m->names);
    free(m);
}

static uint64_t weight_bytes(const nuri_weight *w)
{
    uint64_t row = 0;
    if (!w->data || !nuri_type_row_bytes(w->type, (uint64_t)w->n_in, &row)) return 0;
    return row * (uint64_t)w->n_out;
}

/* Elements (params) or bytes of one weight. */
static uint64_t weight_size(const nuri_weight *w, bool bytes)
{
    if (!w->data) return 0;
    if (!bytes) return (uint64_t)w->n_in * (uint64_t)w->n_out;
    return weight_bytes(w);
}

/* The weights one token reads, as elements or bytes: the embedding table whole or one row of it,
 * the experts all (total) or n_expert_used of each layer's (active; experts of a layer have the
 * same type and shape, so any n_expert_used of them weigh the same). */
static uint64_t model_size(const nuri_model *m, bool bytes, bool embd_whole, bool all_experts)
{
    uint64_t total;
    if (embd_whole) {
        total = weight_size(&m->token_embd, bytes);
    } else {
        uint64_t row = 0;
        nuri_type_row_bytes(m->token_embd.type, (uint64_t)m->token_embd.n_in, &row);
        total = bytes ? row : (uint64_t)m->token_embd.n_in;
    }
    total += weight_size(&m->output_norm, bytes);
    if (m->output.data != m->token_embd.data || !embd_whole)
        total += weight_size(&m->output, bytes);
    const uint64_t n_exp = (uint64_t)(all_experts ? m->hp.n_expert : m->hp.n_expert_used);
    for (int il = 0; il < m->hp.n_layer; il++) {
        const nuri_layer *L = &m->layers[il];
        const nuri_weight *ws[LAYER_WEIGHTS_MAX];
        const int nw = layer_weights(L, ws);
        for (int i = 0; i < nw; i++) total += weight_size(ws[i], bytes);
        if (L->ffn_gate_inp.data)
            total +=
                n_exp * (weight_size(&L->exp_gate[0], bytes) + weight_size(&L->exp_up[0], bytes) +
                         weight_size(&L->exp_down[0], bytes));
        // expert biases (gpt-oss): one row per expert, of which a token reads its experts' rows
        const nuri_weight *eb[] = {&L->exp_gate_b, &L->exp_up_b, &L->exp_down_b};
        for (size_t i = 0; i < 3; i++)
            if (eb[i]->data) total += weight_size(eb[i], bytes) / (uint64_t)eb[i]->n_out * n_exp;
        if (L->wk_b) // deepseek2: every head's k_b and v_b
            total += (uint64_t)m->hp.n_head *
                     (weight_size(&L->wk_b[0], bytes) + weight_size(&L->wv_b[0], bytes));
    }
    return total;
}

uint64_t nuri_model_bytes_per_token(const nuri_model *m)
{
    return model_size(m, true, false, false);
}

uint64_t nuri_model_bytes_per_batch(const nuri_model *m)
{
    return model_size(m, true, false, true);
}

void nuri_model_params(const nuri_model *m, uint64_t *total, uint64_t *active)
{
    *total = model_size(m, false, true, true);
    *active = model_size(m, false, true, false);
}

/* True if the string value of key contains needle, ignoring ASCII case. */
static bool meta_contains(const gguf_file *f, const char *key, const char *needle)
{
    gguf_str v;
    if (gguf_get_str(f, key, &v) != NURI_OK) return false;
    size_t n = strlen(needle);
    for (uint64_t i = 0; i + n <= v.len; i++)
        if (!strncasecmp(v.ptr + i, needle, n)) return true;
    return false;
}

const char *nuri_model_family(const nuri_model *m)
{
    const gguf_file *f = m->file;
    bool named_hcx = meta_contains(f, "general.name", "hyperclova") ||
                     meta_contains(f, "general.basename", "hyperclova");
    switch (m->hp.arch) {
    case NURI_ARCH_EXAONE:
        return "EXAONE 3.5 (LG AI Research)";
    case NURI_ARCH_EXAONE4:
        return "EXAONE 4.0 (LG AI Research)";
    case NURI_ARCH_EXAONE_MOE:
        return "K-EXAONE (LG AI Research, exaone-moe)";
    case NURI_ARCH_HYPERCLOVAX:
        return "HyperCLOVA X SEED Think (NAVER)";
    case NURI_ARCH_GRANITE:
        return named_hcx ? "HyperCLOVA X SEED Text (NAVER, granite)" : "Granite";
    case NURI_ARCH_QWEN2:
        if (meta_contains(f, "tokenizer.ggml.pre", "a.x") ||
            meta_contains(f, "general.name", "a.x-"))
            return "A.X 4.0 (SK Telecom, qwen2)";
        return "Qwen2 / Qwen2.5";
    case NURI_ARCH_QWEN3:
        return "Qwen3";
    case NURI_ARCH_QWEN3MOE:
        return "Qwen3 MoE";
    case NURI_ARCH_QWEN2MOE:
        return "Qwen2 MoE / Qwen1.5-MoE";
    case NURI_ARCH_GEMMA2:
        return "Gemma 2 (Google)";
    case NURI_ARCH_GEMMA3:
        return "Gemma 3 (Google)";
    case NURI_ARCH_DEEPSEEK2:
        if (meta_contains(f, "general.name", "kanana") ||
            meta_contains(f, "general.basename", "kanana"))
            return "Kanana-2 (Kakao, deepseek2)";
        return m->hp.moe_sigmoid ? "DeepSeek-V3 style (deepseek2, sigmoid router)"
                                 : "DeepSeek-V2 (deepseek2)";
    case NURI_ARCH_GPTOSS:
        return "gpt-oss (OpenAI)";
    case NURI_ARCH_QWEN35:
        return "Qwen3.5";
    case NURI_ARCH_QWEN35MOE:
        return "Qwen3.5 MoE";
    case NURI_ARCH_LLAMA:
        if (meta_contains(f, "general.name", "kanana") ||
            meta_contains(f, "general.basename", "kanana"))
            return "Kanana (Kakao, llama)";
        if (meta_contains(f, "general.name", "a.x")) return "A.X (SK Telecom, llama)";
        if (m->hp.n_expert > 0) return "Mixtral (llama with experts)";
        return "Llama";
    }
    return "unknown";
}
