/*
 * model.c: binds a GGUF file to a transformer: hyperparameters from metadata, weights by tensor
 * name, every shape and type checked, and the file's vocabulary loaded and checked against the
 * embedding rows, so that the forward pass and its callers can trust what they are given.
 */
#include "model/model.h"
#include "base/status.h"
#include "kernels/kernels.h"
#include "kernels/pack.h"

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
    hp->moe_norm_w = hp->arch != NURI_ARCH_QWEN2MOE;
    if (hp->arch == NURI_ARCH_QWEN2MOE) {
        // one shared expert, of expert_shared_feed_forward_length (else feed_forward_length)
        if ((s = get_dim(f, name, "expert_shared_feed_forward_length", hp->n_ff == 0, hp->n_ff,
                         MAX_WIDTH, &hp->n_ff_shexp)))
            return s;
    }
    if (hp->arch == NURI_ARCH_QWEN3MOE || hp->arch == NURI_ARCH_QWEN2MOE) {
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
    const size_t n_unsupported = hp->arch == NURI_ARCH_QWEN2MOE ? 1 : 3;
    for (size_t i = 0; i < n_unsupported; i++) {
        snprintf(key, sizeof key, "%s.%s", name, unsupported[i]);
        uint32_t v;
        if (gguf_get_u32(f, key, &v) == NURI_OK && v > 0)
            return nuri_error(NURI_ERR_UNSUPPORTED, "metadata '%s' = %u: not supported", key, v);
    }
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
                          "qwen2moe, qwen3moe, exaone, exaone4, granite, hyperclovax)",
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
    int32_t def_head_dim = hp->n_embd / hp->n_head;
    if ((s = get_dim(f, name, "attention.key_length", false, def_head_dim, MAX_WIDTH,
                     &hp->head_dim)))
        return s;
    int32_t v_len;
    if ((s = get_dim(f, name, "attention.value_length", false, hp->head_dim, MAX_WIDTH, &v_len)))
        return s;
    if (v_len != hp->head_dim)
        return nuri_error(NURI_ERR_UNSUPPORTED,
                          "%s.attention.value_length %d differs from key_length %d", name, v_len,
                          hp->head_dim);
    if ((s = get_dim(f, name, "rope.dimension_count", false, hp->head_dim, MAX_WIDTH, &hp->n_rot)))
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
    hp->attn_scale = 1.0f / sqrtf((float)hp->head_dim);
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
        } else if (s != NURI_ERR_NOT_FOUND) {
            return s;
        }
    }
    return read_moe_hparams(f, ai, hp);
}

/* Which layers use the sliding window: `<arch>.attention.sliding_window_pattern`, either one bool
 * per layer or a period n (the last layer of every n is global). No window, or no pattern: none. */
static nuri_status read_swa_layers(const gguf_file *f, nuri_model *m)
{
    const nuri_hparams *hp = &m->hp;
    char key[128];
    snprintf(key, sizeof key, "%s.attention.sliding_window_pattern", hp->arch_name);
    const gguf_kv *kv = gguf_find_kv(f, key);
    bool any = false;
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
    }
    // exaone4: with sliding-window layers, only they use RoPE (the global ones have none)
    for (int il = 0; il < hp->n_layer; il++)
        m->layers[il].rope = hp->arch != NURI_ARCH_EXAONE4 || !any || m->layers[il].swa;
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
    if (!m->output.data) m->output = m->token_embd; // tied

    nuri_weight rf;
    if ((s = bind(&b, "rope_freqs.weight", hp->n_rot / 2, 0, false, true, &rf))) return s;
    m->rope_freqs = rf.data;

    const struct arch_info *ai = arch_of(hp->arch);
    for (int il = 0; il < hp->n_layer; il++) {
        nuri_layer *L = &m->layers[il];
        char nm[96];
#define BIND(field, suffix, n_in, n_out, req, f32)                                                 \
    do {                                                                                           \
        snprintf(nm, sizeof nm, "blk.%d.%s", il, suffix);                                          \
        if ((s = bind(&b, nm, n_in, n_out, req, f32, &L->field))) return s;                        \
    } while (0)
        BIND(attn_norm, "attn_norm.weight", n_embd, 0, ai->pre_norm, true);
        BIND(wq, "attn_q.weight", n_embd, n_q, true, false);
        BIND(wk, "attn_k.weight", n_embd, n_kv, true, false);
        BIND(wv, "attn_v.weight", n_embd, n_kv, true, false);
        BIND(wo, "attn_output.weight", n_q, n_embd, true, false);
        BIND(ffn_norm, "ffn_norm.weight", n_embd, 0, ai->pre_norm, true);
        BIND(attn_post_norm, "post_attention_norm.weight", n_embd, 0, ai->post_norm, true);
        BIND(ffn_post_norm, "post_ffw_norm.weight", n_embd, 0, ai->post_norm, true);
        BIND(bo, "attn_output.bias", n_embd, 0, false, true);
        if (n_expert == 0) {
            // a llama file with expert tensors but no expert_count: say that, not that the dense
            // ffn_gate is missing
            snprintf(nm, sizeof nm, "blk.%d.ffn_up_exps.weight", il);
            if (gguf_find_tensor(b.f, nm))
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
            nuri_weight *ex = m->experts + (size_t)il * 3 * (size_t)n_expert;
            L->exp_gate = ex;
            L->exp_up = ex + n_expert;
            L->exp_down = ex + 2 * n_expert;
            BIND(ffn_gate_inp, "ffn_gate_inp.weight", n_embd, n_expert, true, false);
            snprintf(nm, sizeof nm, "blk.%d.ffn_gate_exps.weight", il);
            if ((s = bind_experts(&b, nm, n_embd, n_ff_exp, n_expert, L->exp_gate))) return s;
            snprintf(nm, sizeof nm, "blk.%d.ffn_up_exps.weight", il);
            if ((s = bind_experts(&b, nm, n_embd, n_ff_exp, n_expert, L->exp_up))) return s;
            snprintf(nm, sizeof nm, "blk.%d.ffn_down_exps.weight", il);
            if ((s = bind_experts(&b, nm, n_ff_exp, n_embd, n_expert, L->exp_down))) return s;
            if (hp->n_ff_shexp > 0) {
                const int64_t n_sh = hp->n_ff_shexp;
                BIND(shexp_gate_inp, "ffn_gate_inp_shexp.weight", n_embd, 0, true, true);
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
            {"ffn_gate_exps.bias", "expert bias", false, true},
            {"ffn_up_exps.bias", "expert bias", false, true},
            {"ffn_down_exps.bias", "expert bias", false, true},
            {"exp_probs_b.bias", "expert selection bias", false, true},
            {"ffn_up_shexp.weight", "shared expert", true, hp->n_ff_shexp == 0},
            {"ffn_gate_inp_shexp.weight", "shared expert gate", true, hp->n_ff_shexp == 0},
        };
        for (size_t u = 0; u < sizeof unused / sizeof unused[0]; u++) {
            if (!(n_expert ? unused[u].in_moe : unused[u].in_dense)) continue;
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

/* The matrices of every layer (and a separate output matrix), in a fixed order. */
static int layer_matrices(nuri_model *m, nuri_weight **list, int cap)
{
    int n = 0;
    for (int il = 0; il < m->hp.n_layer; il++) {
        nuri_layer *L = &m->layers[il];
        nuri_weight *ws[] = {&L->wq,         &L->wk,       &L->wv,        &L->wo,
                             &L->ffn_gate,   &L->ffn_up,   &L->ffn_down,  &L->ffn_gate_inp,
                             &L->shexp_gate, &L->shexp_up, &L->shexp_down};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0] && n < cap; i++)
            if (ws[i]->data) list[n++] = ws[i];
        for (int32_t e = 0; e < m->hp.n_expert && n + 3 <= cap; e++) {
            list[n++] = &L->exp_gate[e];
            list[n++] = &L->exp_up[e];
            list[n++] = &L->exp_down[e];
        }
    }
    // the output matrix too when it is the embedding (tied): the packed copy serves the head and
    // the embedding lookup reads its few rows per step from the file's pages, which come back
    // from the page cache on demand after the range is released
    if (n < cap) list[n++] = &m->output;
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
    const int cap = m->hp.n_layer * (11 + 3 * m->hp.n_expert) + 1;
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
        const nuri_weight *ws[] = {&L->attn_norm,
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
                                   &L->shexp_down};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) total += weight_size(ws[i], bytes);
        if (m->hp.n_expert > 0)
            total +=
                n_exp * (weight_size(&L->exp_gate[0], bytes) + weight_size(&L->exp_up[0], bytes) +
                         weight_size(&L->exp_down[0], bytes));
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
