/*
 * model.c: binds a GGUF file to a transformer: hyperparameters from metadata, weights by tensor
 * name, every shape and type checked, so that the forward pass can trust what it is given.
 */
#include "model/model.h"
#include "base/status.h"
#include "kernels/kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Explicit limits on hyperparameters (far above any real model; they keep size arithmetic safe). */
#define MAX_LAYERS 1024
#define MAX_WIDTH (1 << 20)  // n_embd, n_ff, n_head * head_dim
#define MAX_HEADS 4096
#define MAX_VOCAB (1 << 24)

static const struct {
    const char *name;
    nuri_arch arch;
    nuri_rope_type rope;
} known_archs[] = {
    {"llama", NURI_ARCH_LLAMA, NURI_ROPE_NORM},
    {"qwen2", NURI_ARCH_QWEN2, NURI_ROPE_NEOX},
    {"qwen3", NURI_ARCH_QWEN3, NURI_ROPE_NEOX},
};

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
                          "architecture '%.*s' is not supported (nuri runs llama, qwen2, qwen3)",
                          (int)(arch.len > 64 ? 64 : arch.len), arch.ptr);
    hp->arch_name = name;
    if ((s = get_dim(f, name, "embedding_length", true, 0, MAX_WIDTH, &hp->n_embd)) ||
        (s = get_dim(f, name, "block_count", true, 0, MAX_LAYERS, &hp->n_layer)) ||
        (s = get_dim(f, name, "feed_forward_length", true, 0, MAX_WIDTH, &hp->n_ff)) ||
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
        (s = get_float(f, name, "attention.layer_norm_rms_epsilon", 1e-5f, &hp->rms_eps)))
        return s;
    return NURI_OK;
}

/* ---- tensors ---- */

typedef struct binder {
    const gguf_file *f;
    char *names;     // name storage
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

static nuri_status bind_weights(nuri_model *m)
{
    const nuri_hparams *hp = &m->hp;
    binder b = {.f = m->file, .names_cap = (size_t)(hp->n_layer + 1) * 16 * 48};
    b.names = m->names = malloc(b.names_cap);
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!b.names || !m->layers) return nuri_error(NURI_ERR_NOMEM, "out of memory for the model");

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

    for (int il = 0; il < hp->n_layer; il++) {
        nuri_layer *L = &m->layers[il];
        char nm[96];
#define BIND(field, suffix, n_in, n_out, req, f32)                                                 \
    do {                                                                                           \
        snprintf(nm, sizeof nm, "blk.%d.%s", il, suffix);                                          \
        if ((s = bind(&b, nm, n_in, n_out, req, f32, &L->field))) return s;                        \
    } while (0)
        BIND(attn_norm, "attn_norm.weight", n_embd, 0, true, true);
        BIND(wq, "attn_q.weight", n_embd, n_q, true, false);
        BIND(wk, "attn_k.weight", n_embd, n_kv, true, false);
        BIND(wv, "attn_v.weight", n_embd, n_kv, true, false);
        BIND(wo, "attn_output.weight", n_q, n_embd, true, false);
        BIND(ffn_norm, "ffn_norm.weight", n_embd, 0, true, true);
        BIND(ffn_gate, "ffn_gate.weight", n_embd, n_ff, true, false);
        BIND(ffn_up, "ffn_up.weight", n_embd, n_ff, true, false);
        BIND(ffn_down, "ffn_down.weight", n_ff, n_embd, true, false);
        bool qwen2 = hp->arch == NURI_ARCH_QWEN2, qwen3 = hp->arch == NURI_ARCH_QWEN3;
        BIND(bq, "attn_q.bias", n_q, 0, qwen2, true);
        BIND(bk, "attn_k.bias", n_kv, 0, qwen2, true);
        BIND(bv, "attn_v.bias", n_kv, 0, qwen2, true);
        BIND(q_norm, "attn_q_norm.weight", hp->head_dim, 0, qwen3, true);
        BIND(k_norm, "attn_k_norm.weight", hp->head_dim, 0, qwen3, true);
#undef BIND
    }
    return NURI_OK;
}

nuri_status nuri_model_from_gguf(gguf_file *f, nuri_model **out)
{
    *out = NULL;
    nuri_model *m = calloc(1, sizeof *m);
    if (!m) {
        gguf_close(f);
        return nuri_error(NURI_ERR_NOMEM, "out of memory for the model");
    }
    m->file = f;
    nuri_status s = read_hparams(f, &m->hp);
    if (s == NURI_OK) s = bind_weights(m);
    if (s != NURI_OK) {
        nuri_model_free(m);
        return s;
    }
    *out = m;
    return NURI_OK;
}

nuri_status nuri_model_load(const char *path, nuri_model **out)
{
    *out = NULL;
    gguf_file *f;
    nuri_status s = gguf_open(path, &f);
    if (s != NURI_OK) return nuri_error_wrap(s, "%s", path);
    s = nuri_model_from_gguf(f, out);
    if (s != NURI_OK) return nuri_error_wrap(s, "%s", path);
    return NURI_OK;
}

void nuri_model_free(nuri_model *m)
{
    if (!m) return;
    gguf_close(m->file);
    free(m->layers);
    free(m->names);
    free(m);
}

static uint64_t weight_bytes(const nuri_weight *w)
{
    uint64_t row = 0;
    if (!w->data || !nuri_type_row_bytes(w->type, (uint64_t)w->n_in, &row)) return 0;
    return row * (uint64_t)w->n_out;
}

uint64_t nuri_model_bytes_per_token(const nuri_model *m)
{
    uint64_t row = 0;
    nuri_type_row_bytes(m->token_embd.type, (uint64_t)m->token_embd.n_in, &row);
    uint64_t total = row + weight_bytes(&m->output_norm) + weight_bytes(&m->output);
    for (int il = 0; il < m->hp.n_layer; il++) {
        const nuri_layer *L = &m->layers[il];
        const nuri_weight *ws[] = {&L->attn_norm, &L->wq, &L->wk,       &L->wv,
                                   &L->bq,        &L->bk, &L->bv,       &L->q_norm,
                                   &L->k_norm,    &L->wo, &L->ffn_norm, &L->ffn_gate,
                                   &L->ffn_up,    &L->ffn_down};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) total += weight_bytes(ws[i]);
    }
    return total;
}
