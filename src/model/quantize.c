/*
 * quantize.c: `nuri quantize` (see quantize.h): tensors of a GGUF file converted row by row through
 * F32 into a target type or mix, metadata copied.
 */
#include "model/quantize.h"

#include "base/status.h"
#include "gguf/gguf.h"
#include "kernels/blocks.h"
#include "kernels/kernels.h"
#include "kernels/types.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int type_by_name(const char *name)
{
    for (uint32_t t = 0; t < NURI_TYPE_COUNT; t++) {
        const nuri_type_info *ti = nuri_type_get(t);
        if (ti && ti->name && ti->computable && !strcmp(ti->name, name) && t != NURI_TYPE_Q8_1 &&
            t != NURI_TYPE_Q8_K)
            return (int)t;
    }
    return -1;
}

static bool is_mix(const char *name)
{
    return !strcmp(name, "Q4_K_M") || !strcmp(name, "Q5_K_M") || !strcmp(name, "MXFP4_MOE");
}

bool nuri_quant_name_ok(const char *name)
{
    return is_mix(name) || type_by_name(name) >= 0;
}

/* The grid types below 4 bits a weight (IQ2_*, IQ3_*, IQ1_*). */
static bool is_low_grid(uint32_t t)
{
    return t == NURI_TYPE_IQ2_XXS || t == NURI_TYPE_IQ2_XS || t == NURI_TYPE_IQ2_S ||
           t == NURI_TYPE_IQ3_XXS || t == NURI_TYPE_IQ3_S || t == NURI_TYPE_IQ1_S ||
           t == NURI_TYPE_IQ1_M;
}

uint32_t nuri_quant_pick_type(const char *name, bool pure, const char *kind, int il, int n_layer,
                              int64_t n_in)
{
    uint32_t t;
    // experts ("ffn_down_exps") are quantized as the dense matrix of their kind ("ffn_down"),
    // except in MXFP4_MOE, which is about them
    char base[64];
    size_t kl = strlen(kind);
    bool expert = kl > 5 && !strcmp(kind + kl - 5, "_exps");
    snprintf(base, sizeof base, "%.*s", (int)(expert ? kl - 5 : kl), kind);
    kind = base;
    if (!strcmp(name, "MXFP4_MOE")) {
        // gpt-oss's own files: the experts in MXFP4, every other matrix in Q8_0
        t = expert || pure ? NURI_TYPE_MXFP4 : NURI_TYPE_Q8_0;
    } else if (is_mix(name)) {
        t = !strcmp(name, "Q4_K_M") ? NURI_TYPE_Q4_K : NURI_TYPE_Q5_K;
        bool more = il < n_layer / 8 || il >= 7 * n_layer / 8 || (il - n_layer / 8) % 3 == 2;
        if (!pure && (!strcmp(kind, "output") ||
                      (il >= 0 && more && (!strcmp(kind, "attn_v") || !strcmp(kind, "ffn_down")))))
            t = NURI_TYPE_Q6_K;
    } else {
        t = (uint32_t)type_by_name(name);
        // the low-bit grid types as the files shipped in them use them: the feed-forward
        // matrices (experts included; not the router) take the type, the output Q6_K and the
        // rest (attention, embeddings: a small part of an MoE file) Q8_0 (routers never get
        // here: they stay F32)
        if (!pure && is_low_grid(t) && strncmp(kind, "ffn_", 4) != 0)
            t = !strcmp(kind, "output") ? NURI_TYPE_Q6_K : NURI_TYPE_Q8_0;
    }
    const nuri_type_info *ti = nuri_type_get(t);
    if (n_in % ti->block_size != 0) {
        switch (t) {
        case NURI_TYPE_Q2_K:
        case NURI_TYPE_Q3_K:
        case NURI_TYPE_Q4_K:
            t = NURI_TYPE_Q5_0;
            break;
        case NURI_TYPE_Q5_K:
            t = NURI_TYPE_Q5_1;
            break;
        case NURI_TYPE_IQ4_XS: // as llama.cpp: rows that are not whole 256-blocks take IQ4_NL
        case NURI_TYPE_IQ2_XXS:
        case NURI_TYPE_IQ2_XS:
        case NURI_TYPE_IQ2_S:
        case NURI_TYPE_IQ3_XXS:
        case NURI_TYPE_IQ3_S:
        case NURI_TYPE_IQ1_S:
        case NURI_TYPE_IQ1_M:
            t = NURI_TYPE_IQ4_NL;
            break;
        default:
            t = NURI_TYPE_Q8_0;
            break;
        }
        if (n_in % NURI_QK != 0) t = NURI_TYPE_F16;
    }
    return t;
}

/* llama.cpp's general.file_type for a target (its LLAMA_FTYPE_* numbers). */
static uint32_t file_type(const char *name)
{
    static const struct {
        const char *name;
        uint32_t ft;
    } map[] = {{"F32", 0},     {"F16", 1},      {"Q4_0", 2},   {"Q4_1", 3},       {"Q8_0", 7},
               {"Q5_0", 8},    {"Q5_1", 9},     {"Q2_K", 10},  {"Q3_K", 12},      {"Q4_K", 15},
               {"Q5_K", 17},   {"Q6_K", 18},    {"BF16", 32},  {"Q4_K_M", 15},    {"Q5_K_M", 17},
               {"IQ4_NL", 25}, {"IQ4_XS", 30},  {"MXFP4", 38}, {"MXFP4_MOE", 38}, {"IQ2_XXS", 19},
               {"IQ2_XS", 20}, {"IQ3_XXS", 23}, {"IQ1_S", 24}, {"IQ3_S", 26},     {"IQ2_S", 28},
               {"IQ1_M", 31}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(map[i].name, name)) return map[i].ft;
    return 0;
}

/* "blk.12.attn_v.weight" -> kind "attn_v", il 12; "output.weight" -> "output", -1;
 * "blk.3.ffn_down_exps.weight" -> "ffn_down_exps", 3. */
static void tensor_role(gguf_str name, char *kind, size_t cap, int *il)
{
    char buf[256];
    size_t n = name.len < sizeof buf - 1 ? name.len : sizeof buf - 1;
    memcpy(buf, name.ptr, n);
    buf[n] = 0;
    *il = -1;
    const char *k = buf;
    if (!strncmp(buf, "blk.", 4)) {
        char *end;
        long v = strtol(buf + 4, &end, 10);
        if (end != buf + 4 && *end == '.') {
            *il = (int)v;
            k = end + 1;
        }
    }
    snprintf(kind, cap, "%s", k);
    char *dot = strrchr(kind, '.');
    if (dot && !strcmp(dot, ".weight")) *dot = 0;
}

/* Whether a tensor is a weight (its name ends in ".weight"), not a bias or another parameter. */
static bool is_weight(gguf_str name)
{
    return name.len >= 7 && !memcmp(name.ptr + name.len - 7, ".weight", 7);
}

nuri_status nuri_quantize_file(const char *in_path, const char *out_path, const char *name,
                               bool pure, nuri_quant_stats *stats)
{
    const nuri_quant_opts o = {.pure = pure};
    return nuri_quantize_file_with(in_path, out_path, name, &o, stats);
}

/* The first matrix of f that is already quantized (NULL if none): a 2-D or larger tensor that is
 * converted (not a router), of a type other than F32, F16, BF16. */
static const gguf_tensor *quantized_matrix(const gguf_file *f)
{
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        char kind[256];
        int il;
        tensor_role(t->name, kind, sizeof kind, &il);
        if (t->n_dims < 2 || !nuri_kernels(t->type) || !strcmp(kind, "ffn_gate_inp") ||
            !is_weight(t->name) || !strcmp(kind, "ssm_conv1d"))
            continue;
        if (t->type != NURI_TYPE_F32 && t->type != NURI_TYPE_F16 && t->type != NURI_TYPE_BF16)
            return t;
    }
    return NULL;
}

nuri_status nuri_quantize_file_with(const char *in_path, const char *out_path, const char *name,
                                    const nuri_quant_opts *opts, nuri_quant_stats *stats)
{
    const nuri_quant_opts o = opts ? *opts : (nuri_quant_opts){0};
    const bool pure = o.pure;
    if (!nuri_quant_name_ok(name))
        return nuri_error(NURI_ERR_INVALID_ARG, "quantize: unknown type or mix '%s'", name);
    gguf_file *f = NULL;
    gguf_writer *w = NULL;
    float *buf = NULL;
    void *qbuf = NULL;
    nuri_quant_stats st = {0};
    nuri_status s = gguf_open(in_path, &f);
    const gguf_tensor *q = s == NURI_OK && !o.allow_requantize ? quantized_matrix(f) : NULL;
    st.already_quantized = q != NULL;
    if (q)
        s = nuri_error(NURI_ERR_INVALID_ARG,
                       "%s is already quantized (tensor '%.*s' is %s): quantizing it again adds "
                       "the rounding error of both types; quantize the F32/F16/BF16 original",
                       in_path, (int)q->name.len, q->name.ptr, nuri_type_get(q->type)->name);
    if (s == NURI_OK) s = gguf_writer_new(&w);
    if (s != NURI_OK) goto done;
    uint64_t total_in = 0, done_in = 0;
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) total_in += gguf_tensor_at(f, i)->size;

    // metadata: everything but general.file_type, which gets the target's number
    uint32_t n_layer = 0;
    for (uint64_t i = 0; i < gguf_n_kv(f) && s == NURI_OK; i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        gguf_str key = gguf_kv_key(kv);
        if (gguf_str_eq(key, "general.file_type")) continue;
        if (key.len > 11 && !memcmp(key.ptr + key.len - 11, "block_count", 11)) {
            uint64_t v;
            if (gguf_kv_u64(kv, &v) == NURI_OK && v < 100000) n_layer = (uint32_t)v;
        }
        s = gguf_writer_add_kv(w, kv);
    }
    if (s == NURI_OK) s = gguf_writer_add_u32(w, "general.file_type", file_type(name));
    // a tied model's token_embd is also its output layer: it gets the output's type
    const bool tied = !gguf_find_tensor(f, "output.weight");

    for (uint64_t i = 0; i < gguf_n_tensors(f) && s == NURI_OK; i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        char tname[256], kind[256];
        size_t nl = t->name.len < sizeof tname - 1 ? t->name.len : sizeof tname - 1;
        memcpy(tname, t->name.ptr, nl);
        tname[nl] = 0;
        st.n_tensors++;
        st.bytes_in += t->size;
        if (o.progress) o.progress(o.progress_ud, "quantizing", done_in, total_in + 1);
        done_in += t->size;
        int64_t n_in = t->ne[0], n_rows = 1;
        for (uint32_t d = 1; d < t->n_dims; d++) n_rows *= t->ne[d];
        int il;
        tensor_role(t->name, kind, sizeof kind, &il);
        if (tied && !strcmp(kind, "token_embd")) snprintf(kind, sizeof kind, "output");
        const nuri_kernel_traits *kin = nuri_kernels(t->type);
        // norms, biases (gpt-oss's expert biases are 2-D: only ".weight" tensors are matrices),
        // types nuri cannot read, MoE routers (llama.cpp keeps them F32: a rounded router picks
        // other experts) and qwen35's convolution kernels (llama.cpp's convolution reads only
        // F32): as they are
        if (t->n_dims < 2 || !kin || !strcmp(kind, "ffn_gate_inp") || !is_weight(t->name) ||
            !strcmp(kind, "ssm_conv1d")) {
            st.bytes_out += t->size;
            s = gguf_writer_add_tensor(w, tname, t->type, t->n_dims, t->ne, t->data);
            continue;
        }
        uint32_t to = nuri_quant_pick_type(name, pure, kind, il, (int)n_layer, n_in);
        const nuri_kernel_traits *kout = nuri_kernels(to);
        uint64_t rb_in, rb_out;
        if (!kout || !nuri_type_row_bytes(t->type, (uint64_t)n_in, &rb_in) ||
            !nuri_type_row_bytes(to, (uint64_t)n_in, &rb_out)) {
            s = nuri_error(NURI_ERR_UNSUPPORTED, "quantize: tensor '%s': cannot convert %s to %s",
                           tname, nuri_type_get(t->type)->name, nuri_type_get(to)->name);
            break;
        }
        float *nb = realloc(buf, sizeof(float) * (size_t)n_in);
        void *nq = realloc(qbuf, (size_t)(rb_out * (uint64_t)n_rows));
        if (nb) buf = nb;
        if (nq) qbuf = nq;
        if (!nb || !nq) {
            s = nuri_error(NURI_ERR_NOMEM, "quantize: tensor '%s': out of memory", tname);
            break;
        }
        for (int64_t r = 0; r < n_rows; r++) {
            kin->to_float((const char *)t->data + (size_t)(rb_in * (uint64_t)r), buf, n_in);
            kout->from_float(buf, (char *)qbuf + (size_t)(rb_out * (uint64_t)r), n_in);
        }
        st.n_converted++;
        st.bytes_out += rb_out * (uint64_t)n_rows;
        s = gguf_writer_add_tensor(w, tname, to, t->n_dims, t->ne, qbuf);
    }
    if (s == NURI_OK && o.progress) o.progress(o.progress_ud, "quantizing", done_in, total_in + 1);
    if (s == NURI_OK) s = gguf_writer_write(w, out_path);
    if (o.progress) o.progress(o.progress_ud, "quantizing", 1, 1);
done:
    if (stats) *stats = st;
    free(buf);
    free(qbuf);
    gguf_writer_free(w);
    gguf_close(f);
    return s;
}
