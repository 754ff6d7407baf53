/*
 * mkmodel.c: see mkmodel.h. Weights are N(0, scale^2) from a seeded xoshiro256** generator, with
 * the scales chosen so that activations stay in a realistic range through the layers (the same
 * recipe as the golden test models: attention and FFN inputs 1/sqrt(width), outputs
 * gain/sqrt(width)).
 */
#include "model/mkmodel.h"
#include "base/status.h"
#include "gguf/gguf.h"
#include "kernels/kernels.h"
#include "model/quantize.h"
#include "model/randn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct shape {
    const char *name;
    int32_t n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_vocab, n_ctx;
    float rope_base;
    const char *about;
    // mixture of experts (qwen3moe, mixtral; a dense architecture uses n_ff): n_expert experts of
    // width n_ff_exp, n_expert_used per token
    int32_t n_expert, n_expert_used, n_ff_exp;
} shape;

static const shape shapes[] = {
    {"tiny", 256, 2, 4, 2, 64, 768, 4096, 512, 10000.0f, "the golden test models' shape", 0, 0, 0},
    {"small", 512, 4, 8, 4, 64, 1536, 8192, 2048, 10000.0f, "a little larger, 4 layers", 0, 0, 0},
    {"llama-3.2-1b", 2048, 16, 32, 8, 64, 8192, 128256, 131072, 500000.0f, "Llama-3.2-1B", 0, 0, 0},
    {"qwen2.5-0.5b", 896, 24, 14, 2, 64, 4864, 151936, 32768, 1000000.0f, "Qwen2.5-0.5B", 0, 0, 0},
    {"qwen3-0.6b", 1024, 28, 16, 8, 128, 3072, 151936, 40960, 1000000.0f, "Qwen3-0.6B", 0, 0, 0},
    {"exaone-3.5-2.4b", 2560, 30, 32, 8, 80, 7168, 102400, 32768, 1000000.0f, "EXAONE-3.5-2.4B", 0,
     0, 0},
    {"exaone-4.0-1.2b", 2048, 30, 32, 8, 64, 4096, 102400, 65536, 1000000.0f, "EXAONE-4.0-1.2B", 0,
     0, 0},
    {"deep-narrow", 128, 64, 2, 1, 64, 256, 4096, 512, 10000.0f,
     "64 thin layers (sliding-window tests)", 0, 0, 0},
    // mixture-of-experts shapes; n_ff is what a dense architecture gets (the same active width)
    {"moe-tiny", 256, 2, 4, 2, 64, 512, 4096, 512, 10000.0f, "8 experts, 2 used", 8, 2, 256},
    {"moe-a3b-mini", 256, 3, 4, 2, 64, 2048, 4096, 1024, 1000000.0f,
     "Qwen3-30B-A3B's router (128 experts, 8 used) in a tiny model", 128, 8, 256},
    {"moe-bench", 1024, 16, 16, 4, 64, 4096, 32000, 4096, 1000000.0f,
     "64 experts of 512, 8 used (1.7B total, 0.3B active; dense: n_ff 4096)", 64, 8, 512},
    {"qwen3-30b-a3b", 2048, 48, 32, 4, 128, 6144, 151936, 40960, 1000000.0f,
     "Qwen3-30B-A3B (30.5B total, 3.3B active; the file waits on disk while it is written: "
     "memory holds two copies of the largest tensor)",
     128, 8, 768},
    {"mixtral-8x7b", 4096, 32, 32, 8, 128, 14336, 32000, 32768, 1000000.0f, "Mixtral-8x7B", 8, 2,
     14336},
    // K-EXAONE-236B-A23B (LG AI Research), by its model card: 6144 wide, 48 layers (+ 1
    // next-token-prediction layer, which exaone-moe files always get), 64 query / 8 KV heads of
    // 128, a 128-token window on 3 of every 4 layers, 128 experts of 2048 with 8 used and 1
    // shared, vocabulary 153600, context 262144. Not on the card: the leading dense layer's width
    // (18432, 3x the model's, assumed) and the rope base (1e6, EXAONE 4.0's, assumed).
    {"k-exaone-236b-a23b", 6144, 48, 64, 8, 128, 18432, 153600, 262144, 1000000.0f,
     "K-EXAONE-236B-A23B (236B total, 23B active: a 140 GB Q4_K_M file; "
     "--layers N writes the first N)",
     128, 8, 2048},
    // Gemma shapes (any architecture takes them; gemma2 / gemma3 get the metadata in gemma_extras)
    {"gemma3-tiny", 256, 6, 4, 2, 128, 768, 4096, 512, 1000000.0f,
     "Gemma 3's layout in small: 5 sliding layers and 1 global, head_dim 128 > n_embd / n_head", 0,
     0, 0},
    {"gemma2-tiny", 256, 4, 4, 2, 128, 768, 4096, 512, 10000.0f,
     "Gemma 2's layout in small: sliding and global layers in turn, strong soft-caps", 0, 0, 0},
    {"gemma3-1b", 1152, 26, 4, 1, 256, 6912, 262144, 32768, 1000000.0f, "Gemma-3-1B", 0, 0, 0},
    {"gemma3-4b", 2560, 34, 8, 4, 256, 10240, 262144, 131072, 1000000.0f, "Gemma-3-4B (text)", 0, 0,
     0},
    {"gemma2-2b", 2304, 26, 8, 4, 256, 9216, 256000, 8192, 10000.0f, "Gemma-2-2B", 0, 0, 0},
    // gpt-oss: more query width than model width, as the real ones; rope base 150000, YaRN 32x
    // over 4096 positions; a 16-token window (gpt-oss-20b: 128)
    {"gpt-oss-tiny", 256, 4, 8, 2, 64, 1024, 4096, 131072, 150000.0f,
     "gpt-oss in small: 4 layers, 8 heads of 64 over 2 KV heads, 8 experts, 4 used", 8, 4, 256},
    {"gpt-oss-20b", 2880, 24, 64, 8, 64, 11520, 201088, 131072, 150000.0f,
     "gpt-oss-20b (20.9B total, 3.6B active besides the embeddings)", 32, 4, 2880},
    // deepseek2 (their attention in deepseek2_extras; head_dim is the MLA cache row: kv_lora_rank
    // + rope dims; n_ff the leading dense layer's width)
    {"ds2-tiny", 256, 3, 4, 1, 96, 768, 4096, 512, 10000.0f,
     "DeepSeek-V2-Lite's layout in small: no query compression, softmax router, 8 experts of "
     "128, 2 used, 1 shared, 1 leading dense layer",
     8, 2, 128},
    {"ds3-tiny", 256, 3, 4, 1, 96, 768, 4096, 163840, 10000.0f,
     "DeepSeek-V3 / Kanana-2's layout in small: query compression, sigmoid router with a "
     "selection bias, 16 experts of 128, 4 used, 2 shared, YaRN x40, a next-token-prediction "
     "layer",
     16, 4, 128},
    {"ds3-grouped-tiny", 256, 3, 4, 1, 96, 768, 4096, 163840, 10000.0f,
     "ds3-tiny with DeepSeek-V3's group limit: 32 experts of 128 in 8 groups, the best 3 groups "
     "open, 6 experts used",
     32, 6, 128},
    {"deepseek-v2-lite", 2048, 27, 16, 1, 576, 10944, 102400, 163840, 10000.0f,
     "DeepSeek-V2-Lite (15.7B total, 2.7B active; writing it takes about twice the file's size "
     "in memory)",
     64, 6, 1408},
    // Qwen3.5 (qwen35_extras below): 3 delta-net layers of every 4, then gated attention
    {"qwen35-tiny", 256, 8, 4, 2, 64, 768, 4096, 4096, 10000.0f,
     "Qwen3.5's layout in small: 6 delta-net and 2 attention layers, 4 value heads over 2 key "
     "heads of 32",
     0, 0, 0},
    {"qwen3.5-0.8b", 1024, 24, 8, 2, 256, 3584, 248320, 262144, 10000000.0f,
     "Qwen3.5-0.8B (18 delta-net layers of 16 heads of 128, 6 attention layers)", 0, 0, 0},
};

/* deepseek2 shapes' attention and router (real values for deepseek-v2-lite: its config.json) */
static const struct deepseek2_extra {
    const char *shape;
    int32_t q_lora, kv_lora, nope, rope, v_head, n_shared, n_dense_lead, n_nextn;
    bool sigmoid, norm;
    float scale, yarn_factor, mscale_all_dim;
    int32_t n_groups, n_groups_used; // the router's group limit (0: none)
} deepseek2_extras[] = {
    {"ds2-tiny", 0, 64, 48, 32, 48, 1, 1, 0, false, false, 1.0f, 0, 0, 0, 0},
    {"ds3-tiny", 96, 64, 48, 32, 48, 2, 1, 1, true, true, 2.5f, 40.0f, 1.0f, 0, 0},
    {"ds3-grouped-tiny", 96, 64, 48, 32, 48, 1, 1, 0, true, true, 2.5f, 40.0f, 1.0f, 8, 3},
    {"deepseek-v2-lite", 0, 512, 128, 64, 128, 2, 1, 0, false, false, 1.0f, 40.0f, 0.707f, 0, 0},
};

/* What qwen35 files of a shape carry besides it: rotated dimensions per head (of head_dim), the
 * convolution's width, the delta-net's head width, key heads and value heads. Qwen3.5-0.8B's are
 * from its config.json (partial_rotary_factor 0.25, linear_conv_kernel_dim 4, 16 key and 16
 * value heads of 128); shapes not listed get head_dim / 4 rotated, width 4, n_head_kv key heads
 * and n_head value heads of head_dim. */
static const struct qwen35_extra {
    const char *shape;
    int32_t n_rot, d_conv, d_state, n_group, n_v;
} qwen35_extras[] = {
    {"qwen35-tiny", 16, 4, 32, 2, 4},
    {"qwen3.5-0.8b", 64, 4, 128, 16, 16},
};

/* What gemma2 / gemma3 files of a shape carry besides it: the sliding window (tokens), the linear
 * rope scaling factor of gemma3's global layers (0: none) and gemma2's soft-caps. The real shapes
 * have their models' values; the tiny ones a window that 48 tokens cross, Gemma 3 4B's rope
 * scaling, and soft-caps low enough to change the results (the real ones, 50 and 30, hardly touch
 * random-weight scores). Shapes not listed: window 1024 (gemma3) or 4096 (gemma2), the real caps.
 */
static const struct gemma_extra {
    const char *shape;
    int32_t n_swa;
    float rope_scale, attn_softcap, final_softcap;
} gemma_extras[] = {
    {"gemma3-tiny", 16, 8.0f, 0, 0},      {"gemma2-tiny", 16, 0, 4.0f, 10.0f},
    {"gemma3-1b", 512, 0, 0, 0},          {"gemma3-4b", 1024, 8.0f, 0, 0},
    {"gemma2-2b", 4096, 0, 50.0f, 30.0f},
};

const char *nuri_mkmodel_shapes(void)
{
    return "tiny (256 wide, 2 layers), small (512, 4), deep-narrow (128, 64), llama-3.2-1b, "
           "qwen2.5-0.5b, qwen3-0.6b, exaone-3.5-2.4b, exaone-4.0-1.2b, gemma3-tiny (256, 6), "
           "gemma2-tiny (256, 4), gemma3-1b, gemma3-4b, gemma2-2b; with experts (for "
           "qwen3moe, qwen2moe, mixtral, exaone-moe, gpt-oss): moe-tiny (8 experts, 2 used), "
           "moe-a3b-mini (128, 8 used), "
           "moe-bench (1024 wide, 16 layers, 64 experts, 8 used), qwen3-30b-a3b, mixtral-8x7b, "
           "k-exaone-236b-a23b, "
           "gpt-oss-tiny (256 wide, 4 layers, 8 experts, 4 used), gpt-oss-20b; for deepseek2 "
           "only: ds2-tiny, ds3-tiny, ds3-grouped-tiny, deepseek-v2-lite; for qwen35: "
           "qwen35-tiny (256 wide, 8 layers), qwen3.5-0.8b (any other shape works too)";
}

/* ---- random numbers ---- */

typedef struct rng {
    uint64_t s[4];
} rng;

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void rng_seed(rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(rng *r)
{
    uint64_t *s = r->s, result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

static double rng_uniform(rng *r) // (0, 1)
{
    return ((double)(rng_next(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

/* n standard normal floats, Box-Muller's (float)(sqrt(-2 ln u) cos(2 pi v)) for uniform pairs
 * (u, v) drawn in turn: the uniforms a chunk at a time, their normals by nuri_randn, whose own
 * log and cos are libm's but for a rare float an ulp apart (randn.h), eight times faster. */
static void rng_normals(rng *r, float *out, int64_t n)
{
    enum { CHUNK = 256 };
    double u[CHUNK], v[CHUNK];
    for (int64_t i = 0; i < n; i += CHUNK) {
        const int64_t k = n - i < CHUNK ? n - i : CHUNK;
        for (int64_t j = 0; j < k; j++) {
            u[j] = rng_uniform(r);
            v[j] = rng_uniform(r);
        }
        nuri_randn(u, v, out + i, k);
    }
}

/* ---- types and mixes: model/quantize.h's rules, shared with `nuri quantize` ---- */

/* ---- writing ---- */

typedef struct maker {
    gguf_writer *w;
    rng r;
    const char *mix;
    int n_layer;
    float *buf; // scratch floats, largest tensor
    void *qbuf; // scratch quantized bytes
} maker;

static nuri_status add_random(maker *mk, const char *name, const char *kind, int il, int64_t n_in,
                              int64_t n_out, float scale, float offset)
{
    int64_t n = n_in * n_out;
    rng_normals(&mk->r, mk->buf, n);
    for (int64_t i = 0; i < n; i++) mk->buf[i] = offset + scale * mk->buf[i];
    int64_t ne[2] = {n_in, n_out};
    if (n_out == 1) // 1-D tensors (norms, biases) stay F32
        return gguf_writer_add_tensor(mk->w, name, NURI_TYPE_F32, 1, ne, mk->buf);
    uint32_t t = nuri_quant_pick_type(mk->mix, false, kind, il, mk->n_layer, n_in);
    const nuri_kernel_traits *k = nuri_kernels(t);
    uint64_t row;
    nuri_type_row_bytes(t, (uint64_t)n_in, &row);
    for (int64_t r = 0; r < n_out; r++)
        k->from_float(mk->buf + r * n_in, (char *)mk->qbuf + (size_t)r * row, n_in);
    return gguf_writer_add_tensor(mk->w, name, t, 2, ne, mk->qbuf);
}

/* A 3-D tensor of n_exp matrices (n_in, n_out): the experts of one layer, quantized as one
 * matrix of that kind would be. */
static nuri_status add_random_experts(maker *mk, const char *name, const char *kind, int il,
                                      int64_t n_in, int64_t n_out, int64_t n_exp, float scale)
{
    const int64_t n = n_in * n_out * n_exp;
    rng_normals(&mk->r, mk->buf, n);
    for (int64_t i = 0; i < n; i++) mk->buf[i] = scale * mk->buf[i];
    const int64_t ne[3] = {n_in, n_out, n_exp};
    char xkind[64];
    snprintf(xkind, sizeof xkind, "%s_exps", kind);
    uint32_t t = nuri_quant_pick_type(mk->mix, false, xkind, il, mk->n_layer, n_in);
    const nuri_kernel_traits *k = nuri_kernels(t);
    uint64_t row;
    nuri_type_row_bytes(t, (uint64_t)n_in, &row);
    for (int64_t r = 0; r < n_out * n_exp; r++)
        k->from_float(mk->buf + r * n_in, (char *)mk->qbuf + (size_t)r * row, n_in);
    return gguf_writer_add_tensor(mk->w, name, t, 3, ne, mk->qbuf);
}

/* Copies kv to w. With add[0..n_add), the vocabulary's arrays (tokenizer.ggml.tokens, .token_type,
 * .scores) get those tokens at their end, as control tokens with score 0. */
static nuri_status copy_kv(gguf_writer *w, const gguf_file *f, const gguf_kv *kv,
                           const char *const *add, int n_add)
{
    gguf_str key = gguf_kv_key(kv);
    char k[256];
    if (key.len >= sizeof k) return NURI_OK;
    memcpy(k, key.ptr, key.len);
    k[key.len] = 0;
    nuri_status s = NURI_OK;
    switch (gguf_kv_type(kv)) {
    case GGUF_TYPE_STRING: {
        gguf_str v;
        if ((s = gguf_kv_str(kv, &v))) return s;
        char *c = strndup(v.ptr, v.len);
        if (!c) return nuri_error(NURI_ERR_NOMEM, "out of memory");
        s = gguf_writer_add_str(w, k, c);
        free(c);
        return s;
    }
    case GGUF_TYPE_ARRAY: {
        gguf_arr a;
        if ((s = gguf_kv_arr(kv, &a))) return s;
        bool tokens = !strcmp(k, "tokenizer.ggml.tokens") && a.type == GGUF_TYPE_STRING;
        bool types = !strcmp(k, "tokenizer.ggml.token_type") && a.type == GGUF_TYPE_INT32;
        bool scores = !strcmp(k, "tokenizer.ggml.scores") && a.type == GGUF_TYPE_FLOAT32;
        uint64_t extra = n_add > 0 && (tokens || types || scores) ? (uint64_t)n_add : 0;
        if (a.type != GGUF_TYPE_STRING && !extra)
            return gguf_writer_add_arr(w, k, a.type, a.data, a.n);
        if (a.type != GGUF_TYPE_STRING) { // 4-byte elements: control type 3, score 0
            uint32_t *d = malloc((a.n + extra) * 4);
            if (!d) return nuri_error(NURI_ERR_NOMEM, "out of memory");
            if (a.n) memcpy(d, a.data, a.n * 4);
            for (uint64_t i = 0; i < extra; i++) {
                float zero = 0.0f;
                int32_t control = 3;
                memcpy(&d[a.n + i], types ? (const void *)&control : (const void *)&zero, 4);
            }
            s = gguf_writer_add_arr(w, k, a.type, d, a.n + extra);
            free(d);
            return s;
        }
        char **v = calloc(a.n + extra ? a.n + extra : 1, sizeof *v);
        if (!v) return nuri_error(NURI_ERR_NOMEM, "out of memory");
        for (uint64_t i = 0; i < a.n && s == NURI_OK; i++) {
            gguf_str e;
            if ((s = gguf_arr_str(&a, i, &e)) == NURI_OK && !(v[i] = strndup(e.ptr, e.len)))
                s = nuri_error(NURI_ERR_NOMEM, "out of memory");
        }
        for (uint64_t i = 0; i < extra && s == NURI_OK; i++)
            if (!(v[a.n + i] = strdup(add[i]))) s = nuri_error(NURI_ERR_NOMEM, "out of memory");
        if (s == NURI_OK) s = gguf_writer_add_str_arr(w, k, (const char *const *)v, a.n + extra);
        for (uint64_t i = 0; i < a.n + extra; i++) free(v[i]);
        free(v);
        return s;
    }
    case GGUF_TYPE_BOOL: {
        bool b;
        if ((s = gguf_get_bool(f, k, &b))) return s;
        return gguf_writer_add_bool(w, k, b);
    }
    case GGUF_TYPE_FLOAT32:
    case GGUF_TYPE_FLOAT64: {
        double d;
        if ((s = gguf_kv_f64(kv, &d))) return s;
        return gguf_writer_add_f32(w, k, (float)d);
    }
    default: {
        int64_t i;
        if ((s = gguf_kv_i64(kv, &i))) return s;
        if (i >= 0 && i <= UINT32_MAX) return gguf_writer_add_u32(w, k, (uint32_t)i);
        return gguf_writer_add_u64(w, k, (uint64_t)i);
    }
    }
}

/* A synthetic SentencePiece vocabulary of n tokens. */
static nuri_status add_synthetic_vocab(gguf_writer *w, int32_t n)
{
    char **tok = calloc((size_t)n, sizeof *tok);
    float *score = calloc((size_t)n, sizeof *score);
    int32_t *type = calloc((size_t)n, sizeof *type);
    nuri_status s = NURI_OK;
    if (!tok || !score || !type) s = nuri_error(NURI_ERR_NOMEM, "out of memory for the vocab");
    for (int32_t i = 0; s == NURI_OK && i < n; i++) {
        char b[64];
        if (i == 0)
            snprintf(b, sizeof b, "<unk>"), type[i] = 2;
        else if (i == 1)
            snprintf(b, sizeof b, "<s>"), type[i] = 3;
        else if (i == 2)
            snprintf(b, sizeof b, "</s>"), type[i] = 3;
        else if (i < 259)
            snprintf(b, sizeof b, "<0x%02X>", i - 3), type[i] = 6;
        else {
            // letter n-grams, with and without the word-start mark, all distinct
            int32_t k = i - 259;
            char *p = b;
            if (k % 2) p += sprintf(p, "\xe2\x96\x81");
            k /= 2;
            do {
                *p++ = (char)('a' + k % 26);
                k /= 26;
            } while (k > 0);
            *p = 0;
            type[i] = 1;
            score[i] = -(float)(i - 259);
        }
        if (!(tok[i] = strdup(b))) s = nuri_error(NURI_ERR_NOMEM, "out of memory for the vocab");
    }
    if (s == NURI_OK) s = gguf_writer_add_str(w, "tokenizer.ggml.model", "llama");
    if (s == NURI_OK) s = gguf_writer_add_str(w, "tokenizer.ggml.pre", "default");
    if (s == NURI_OK)
        s = gguf_writer_add_str_arr(w, "tokenizer.ggml.tokens", (const char *const *)tok,
                                    (uint64_t)n);
    if (s == NURI_OK)
        s = gguf_writer_add_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, score, (uint64_t)n);
    if (s == NURI_OK)
        s = gguf_writer_add_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, type, (uint64_t)n);
    if (s == NURI_OK) s = gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", 1);
    if (s == NURI_OK) s = gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", 2);
    if (s == NURI_OK) s = gguf_writer_add_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    if (s == NURI_OK) s = gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", true);
    if (s == NURI_OK) s = gguf_writer_add_bool(w, "tokenizer.ggml.add_eos_token", false);
    for (int32_t i = 0; tok && i < n; i++) free(tok[i]);
    free(tok);
    free(score);
    free(type);
    return s;
}

static nuri_status write_qwen35(maker *mk, const nuri_mkmodel_params *p, const shape *sh,
                                int32_t n_vocab, const char *path);

static nuri_status write_model(maker *mk, const nuri_mkmodel_params *p, const shape *sh,
                               int32_t n_vocab, const char *path)
{
    if (!strncmp(p->arch, "qwen35", 6)) return write_qwen35(mk, p, sh, n_vocab, path);
    gguf_writer *w = mk->w;
    // mixtral is a llama file with experts; qwen3moe is qwen3 attention with experts
    const bool mixtral = !strcmp(p->arch, "mixtral"), qwen3moe = !strcmp(p->arch, "qwen3moe");
    const bool qwen2moe = !strcmp(p->arch, "qwen2moe"); // + a shared expert of width n_ff
    // exaone-moe (K-EXAONE): exaone4's attention with pre-norms, a sigmoid router with a selection
    // bias, an ungated shared expert of the experts' width, one leading dense layer and one
    // next-token-prediction layer at the end (which runners skip)
    const bool exmoe = !strcmp(p->arch, "exaone-moe");
    // gpt-oss: attention biases and sinks, a window on every other layer, YaRN, expert biases
    const bool gptoss = !strcmp(p->arch, "gpt-oss");
    const bool moe = mixtral || qwen3moe || qwen2moe || exmoe || gptoss;
    const char *a = mixtral ? "llama" : p->arch;
    bool qwen2 = !strcmp(a, "qwen2") || qwen2moe, qwen3 = !strcmp(a, "qwen3") || qwen3moe;
    bool llama = !strcmp(a, "llama");
    bool exaone4 = !strcmp(a, "exaone4"), hcx = !strcmp(a, "hyperclovax");
    bool gemma2 = !strcmp(a, "gemma2"), gemma3 = !strcmp(a, "gemma3"), gemma = gemma2 || gemma3;
    bool granite_like = !strcmp(a, "granite") || hcx;
    bool pre_norm = !exaone4, post_norm = exaone4 || hcx || gemma;
    bool qk_norm = qwen3 || exaone4 || gemma3 || exmoe;
    const int n_file_layers = mk->n_layer + (exmoe ? 1 : 0);
    char key[128];
    nuri_status s;
#define KV_U32(suffix, v)                                                                          \
    do {                                                                                           \
        snprintf(key, sizeof key, "%s.%s", a, suffix);                                             \
        if ((s = gguf_writer_add_u32(w, key, (uint32_t)(v)))) return s;                            \
    } while (0)
    if ((s = gguf_writer_add_str(w, "general.architecture", a))) return s;
    snprintf(key, sizeof key, "nuri mkmodel %s %s %s seed %llu", p->arch, sh->name, p->type,
             (unsigned long long)p->seed);
    if ((s = gguf_writer_add_str(w, "general.name", key))) return s;
    KV_U32("context_length", p->n_ctx > 0 ? p->n_ctx : sh->n_ctx);
    KV_U32("embedding_length", sh->n_embd);
    KV_U32("block_count", n_file_layers);
    // Mixtral's experts are feed_forward_length wide; qwen3moe names their width on its own
    KV_U32("feed_forward_length", mixtral ? sh->n_ff_exp : sh->n_ff);
    if (moe) {
        KV_U32("expert_count", sh->n_expert);
        KV_U32("expert_used_count", sh->n_expert_used);
        if (!mixtral) KV_U32("expert_feed_forward_length", sh->n_ff_exp);
        if (gptoss) {
            KV_U32("attention.sliding_window", p->n_swa > 0                      ? p->n_swa
                                               : strcmp(sh->name, "gpt-oss-20b") ? 16
                                                                                 : 128);
            snprintf(key, sizeof key, "%s.rope.scaling.type", a);
            if ((s = gguf_writer_add_str(w, key, "yarn"))) return s;
            snprintf(key, sizeof key, "%s.rope.scaling.factor", a);
            if ((s = gguf_writer_add_f32(w, key, 32.0f))) return s;
            KV_U32("rope.scaling.original_context_length", 4096);
        }
        if (qwen2moe) KV_U32("expert_shared_feed_forward_length", sh->n_ff);
        if (exmoe) {
            KV_U32("expert_shared_count", 1);
            KV_U32("expert_shared_feed_forward_length", sh->n_ff_exp);
            KV_U32("expert_gating_func", 2); // sigmoid
            KV_U32("leading_dense_block_count", 1);
            KV_U32("nextn_predict_layers", 1);
            snprintf(key, sizeof key, "%s.expert_weights_norm", a);
            if ((s = gguf_writer_add_bool(w, key, true))) return s;
            snprintf(key, sizeof key, "%s.expert_weights_scale", a);
            if ((s = gguf_writer_add_f32(w, key, 2.5f))) return s;
        }
    }
    KV_U32("attention.head_count", sh->n_head);
    KV_U32("attention.head_count_kv", sh->n_head_kv);
    KV_U32("attention.key_length", sh->head_dim);
    KV_U32("attention.value_length", sh->head_dim);
    KV_U32("rope.dimension_count", sh->head_dim);
    KV_U32("vocab_size", n_vocab);
    snprintf(key, sizeof key, "%s.rope.freq_base", a);
    if ((s = gguf_writer_add_f32(w, key, sh->rope_base))) return s;
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", a);
    if ((s = gguf_writer_add_f32(w, key, llama || gptoss ? 1e-5f : 1e-6f))) return s;
    if (granite_like) { // muP-style multipliers, of the size such models use
        static const struct {
            const char *suffix;
            float v;
        } scales[] = {{"embedding_scale", 6.0f},
                      {"residual_scale", 0.5f},
                      {"attention.scale", 0.02f},
                      {"logit_scale", 2.0f}};
        for (size_t i = 0; i < sizeof scales / sizeof scales[0]; i++) {
            snprintf(key, sizeof key, "%s.%s", a, scales[i].suffix);
            if ((s = gguf_writer_add_f32(w, key, scales[i].v))) return s;
        }
    }
    if (exmoe && p->n_swa <= 0) { // the window is required; without --swa, the default pattern
        snprintf(key, sizeof key, "%s.attention.sliding_window", a);
        if ((s = gguf_writer_add_u32(w, key, 128))) return s;
    }
    if ((exaone4 || exmoe) && p->n_swa > 0) { // sliding window on 3 of every 4 layers
        snprintf(key, sizeof key, "%s.attention.sliding_window", a);
        if ((s = gguf_writer_add_u32(w, key, (uint32_t)p->n_swa))) return s;
        bool *pat = calloc((size_t)mk->n_layer, sizeof *pat);
        if (!pat) return nuri_error(NURI_ERR_NOMEM, "out of memory");
        for (int il = 0; il < mk->n_layer; il++) pat[il] = il % 4 < 3;
        snprintf(key, sizeof key, "%s.attention.sliding_window_pattern", a);
        s = gguf_writer_add_arr(w, key, GGUF_TYPE_BOOL, pat, (uint64_t)mk->n_layer);
        free(pat);
        if (s) return s;
    }
    if (gemma) { // window, rope scaling, soft-caps (gemma_extras); the layer pattern is the default
        struct gemma_extra ex = {sh->name, gemma3 ? 1024 : 4096, 0, 50.0f, 30.0f};
        for (size_t i = 0; i < sizeof gemma_extras / sizeof gemma_extras[0]; i++)
            if (!strcmp(gemma_extras[i].shape, sh->name)) ex = gemma_extras[i];
        KV_U32("attention.sliding_window", p->n_swa > 0 ? p->n_swa : ex.n_swa);
        if (ex.rope_scale > 0) {
            snprintf(key, sizeof key, "%s.rope.scaling.type", a);
            if ((s = gguf_writer_add_str(w, key, "linear"))) return s;
            snprintf(key, sizeof key, "%s.rope.scaling.factor", a);
            if ((s = gguf_writer_add_f32(w, key, ex.rope_scale))) return s;
        }
        if (gemma2) {
            snprintf(key, sizeof key, "%s.attn_logit_softcapping", a);
            if ((s = gguf_writer_add_f32(w, key, ex.attn_softcap))) return s;
            snprintf(key, sizeof key, "%s.final_logit_softcapping", a);
            if ((s = gguf_writer_add_f32(w, key, ex.final_softcap))) return s;
        }
    }
#undef KV_U32

    const int64_t E = sh->n_embd, Q = (int64_t)sh->n_head * sh->head_dim;
    const int64_t KV = (int64_t)sh->n_head_kv * sh->head_dim, F = sh->n_ff;
    // qwen2 files get a separate output matrix, like the golden ones; exaone-moe and gpt-oss
    // always have one
    const bool tied = !qwen2 && !exmoe && !gptoss;
    // The golden models' recipe: tied tiny models get output gain 10 (else they copy the input
    // token). Deeper models with that gain turn chaotic (rounding differences grow layer by
    // layer), which no trained model is, so every other shape uses gain 1.
    const bool golden_recipe = !strcmp(sh->name, "tiny");
    const float gain = tied && golden_recipe ? 10.0f : 1.0f;
    // Output scale: the tiny recipe's logits span about +-25; other shapes aim at the few-nats
    // spread of trained models (logit std about 2.5).
    const float out_scale = golden_recipe ? 0.4f : 2.5f / sqrtf((float)E);
    // Gemma multiplies the (tied) embeddings by sqrt(n_embd): a token's own row would then
    // dominate the residual stream to the end and the model would only copy its input. Its
    // post-norms are given 4x that row's size instead, so the layers decide the logits (the
    // input token keeps an edge of one or two standard deviations, like a repetition habit).
    const float post_gain = gemma ? 4.0f * sqrtf((float)E) * out_scale : 1.0f;
    if ((s = add_random(mk, "token_embd.weight", tied ? "output" : "token_embd", -1, E, n_vocab,
                        tied ? out_scale : 1.0f, 0)))
        return s;
    if ((s = add_random(mk, "output_norm.weight", "norm", -1, E, 1, 0.05f, 1.0f))) return s;
    if (!tied && (s = add_random(mk, "output.weight", "output", -1, E, n_vocab, out_scale, 0)))
        return s;
    for (int il = 0; il < n_file_layers; il++) {
        if (p->progress)
            p->progress(p->progress_ud, "making random weights", (uint64_t)il,
                        (uint64_t)n_file_layers + 1);
        char nm[96];
        // exaone-moe: layer 0 dense, the last (next-token prediction) dense with its extra parts
        const bool layer_moe = moe && !(exmoe && (il == 0 || il >= mk->n_layer));
#define T(suffix, kind, n_in, n_out, scale, off)                                                   \
    do {                                                                                           \
        snprintf(nm, sizeof nm, "blk.%d.%s", il, suffix);                                          \
        if ((s = add_random(mk, nm, kind, il, n_in, n_out, scale, off))) return s;                 \
    } while (0)
        if (pre_norm) T("attn_norm.weight", "norm", E, 1, 0.05f, 1.0f);
        T("attn_q.weight", "attn_q", E, Q, 1.0f / sqrtf((float)E), 0);
        T("attn_k.weight", "attn_k", E, KV, 1.0f / sqrtf((float)E), 0);
        T("attn_v.weight", "attn_v", E, KV, 1.0f / sqrtf((float)E), 0);
        if (qwen2 || gptoss) {
            T("attn_q.bias", "bias", Q, 1, 0.3f, 0);
            T("attn_k.bias", "bias", KV, 1, 0.3f, 0);
            T("attn_v.bias", "bias", KV, 1, 0.3f, 0);
        }
        if (qk_norm) {
            T("attn_q_norm.weight", "norm", sh->head_dim, 1, 0.05f, 1.0f);
            T("attn_k_norm.weight", "norm", sh->head_dim, 1, 0.05f, 1.0f);
        }
        T("attn_output.weight", "attn_output", Q, E, gain / sqrtf((float)Q), 0);
        if (gptoss) {
            T("attn_output.bias", "bias", E, 1, 0.1f, 0);
            T("attn_sinks.weight", "bias", sh->n_head, 1, 1.0f, 0);     // about as large as scores
            T("post_attention_norm.weight", "norm", E, 1, 0.05f, 1.0f); // the pre-FFN norm
        } else if (pre_norm) {
            T("ffn_norm.weight", "norm", E, 1, 0.05f, 1.0f);
        }
        if (post_norm) {
            T("post_attention_norm.weight", "norm", E, 1, 0.05f * post_gain, post_gain);
            T("post_ffw_norm.weight", "norm", E, 1, 0.05f * post_gain, post_gain);
        }
        if (layer_moe) {
            // the router stays F32, as llama.cpp's quantizer leaves it; logits of unit spread
            const int64_t X = sh->n_expert, FX = sh->n_ff_exp;
            snprintf(nm, sizeof nm, "blk.%d.ffn_gate_inp.weight", il);
            rng_normals(&mk->r, mk->buf, E * X);
            for (int64_t i = 0; i < E * X; i++) mk->buf[i] = mk->buf[i] / sqrtf((float)E);
            const int64_t ne[2] = {E, X};
            if ((s = gguf_writer_add_tensor(w, nm, NURI_TYPE_F32, 2, ne, mk->buf))) return s;
#define TX(suffix, kind, n_in, n_out, scale)                                                       \
    do {                                                                                           \
        snprintf(nm, sizeof nm, "blk.%d.%s", il, suffix);                                          \
        if ((s = add_random_experts(mk, nm, kind, il, n_in, n_out, X, scale))) return s;           \
    } while (0)
            // gpt-oss: gate and up three times wider, so that its clamp at 7 acts on some values
            const float gu = gptoss ? 3.0f : 1.0f;
            TX("ffn_gate_exps.weight", "ffn_gate", E, FX, gu / sqrtf((float)E));
            TX("ffn_up_exps.weight", "ffn_up", E, FX, gu / sqrtf((float)E));
            TX("ffn_down_exps.weight", "ffn_down", FX, E, gain / gu / sqrtf((float)FX));
#undef TX
            if (gptoss) { // biases: the router's, and a row per expert (F32, as llama.cpp's)
                T("ffn_gate_inp.bias", "bias", X, 1, 0.5f, 0);
                const struct {
                    const char *suffix;
                    int64_t n;
                } eb[] = {{"ffn_gate_exps.bias", FX},
                          {"ffn_up_exps.bias", FX},
                          {"ffn_down_exps.bias", E}};
                for (size_t i = 0; i < 3; i++) {
                    snprintf(nm, sizeof nm, "blk.%d.%s", il, eb[i].suffix);
                    rng_normals(&mk->r, mk->buf, eb[i].n * X);
                    for (int64_t k = 0; k < eb[i].n * X; k++) mk->buf[k] = 0.3f * mk->buf[k];
                    const int64_t bne[2] = {eb[i].n, X};
                    if ((s = gguf_writer_add_tensor(w, nm, NURI_TYPE_F32, 2, bne, mk->buf)))
                        return s;
                }
            }
            if (qwen2moe) {
                T("ffn_gate_inp_shexp.weight", "norm", E, 1, 1.0f / sqrtf((float)E), 0);
                T("ffn_gate_shexp.weight", "ffn_gate", E, F, 1.0f / sqrtf((float)E), 0);
                T("ffn_up_shexp.weight", "ffn_up", E, F, 1.0f / sqrtf((float)E), 0);
                T("ffn_down_shexp.weight", "ffn_down", F, E, gain / sqrtf((float)F), 0);
            }
            if (exmoe) {
                // a selection bias of the sigmoid scores' size, so that it changes choices
                T("exp_probs_b.bias", "bias", X, 1, 0.05f, 0);
                T("ffn_gate_shexp.weight", "ffn_gate", E, FX, 1.0f / sqrtf((float)E), 0);
                T("ffn_up_shexp.weight", "ffn_up", E, FX, 1.0f / sqrtf((float)E), 0);
                T("ffn_down_shexp.weight", "ffn_down", FX, E, gain / sqrtf((float)FX), 0);
            }
        } else {
            T("ffn_gate.weight", "ffn_gate", E, F, 1.0f / sqrtf((float)E), 0);
            T("ffn_up.weight", "ffn_up", E, F, 1.0f / sqrtf((float)E), 0);
            T("ffn_down.weight", "ffn_down", F, E, gain / sqrtf((float)F), 0);
        }
        if (exmoe && il >= mk->n_layer) { // the next-token-prediction parts
            T("nextn.eh_proj.weight", "attn_output", 2 * E, E, 1.0f / sqrtf((float)(2 * E)), 0);
            T("nextn.enorm.weight", "norm", E, 1, 0.05f, 1.0f);
            T("nextn.hnorm.weight", "norm", E, 1, 0.05f, 1.0f);
            T("nextn.shared_head_norm.weight", "norm", E, 1, 0.05f, 1.0f);
        }
#undef T
    }
    // the last step of n_file_layers + 1: writing the file
    if (p->progress)
        p->progress(p->progress_ud, "writing the file", (uint64_t)n_file_layers,
                    (uint64_t)n_file_layers + 1);
    s = gguf_writer_write(w, path);
    if (p->progress) p->progress(p->progress_ud, "writing the file", 1, 1);
    return s;
}

/* A deepseek2 file (multi-head latent attention as current converters write it, experts with
 * shared experts, leading dense layers, next-token-prediction layers after the others). */
static nuri_status write_deepseek2(maker *mk, const nuri_mkmodel_params *p, const shape *sh,
                                   int32_t n_vocab, const char *path)
{
    const struct deepseek2_extra *dx = NULL;
    for (size_t i = 0; i < sizeof deepseek2_extras / sizeof deepseek2_extras[0]; i++)
        if (!strcmp(deepseek2_extras[i].shape, sh->name)) dx = &deepseek2_extras[i];
    if (!dx)
        return nuri_error(NURI_ERR_INVALID_ARG,
                          "shape '%s' is not a deepseek2 shape (ds2-tiny, ds3-tiny, "
                          "ds3-grouped-tiny, deepseek-v2-lite)",
                          sh->name);
    gguf_writer *w = mk->w;
    const char *a = "deepseek2";
    const int n_file_layers = mk->n_layer + dx->n_nextn;
    char key[128];
    nuri_status s;
#define KV_U32(suffix, v)                                                                          \
    do {                                                                                           \
        snprintf(key, sizeof key, "%s.%s", a, suffix);                                             \
        if ((s = gguf_writer_add_u32(w, key, (uint32_t)(v)))) return s;                            \
    } while (0)
#define KV_F32(suffix, v)                                                                          \
    do {                                                                                           \
        snprintf(key, sizeof key, "%s.%s", a, suffix);                                             \
        if ((s = gguf_writer_add_f32(w, key, (v)))) return s;                                      \
    } while (0)
    if ((s = gguf_writer_add_str(w, "general.architecture", a))) return s;
    snprintf(key, sizeof key, "nuri mkmodel %s %s %s seed %llu", p->arch, sh->name, p->type,
             (unsigned long long)p->seed);
    if ((s = gguf_writer_add_str(w, "general.name", key))) return s;
    const int32_t H = sh->n_head, r = dx->rope, kvl = dx->kv_lora, nope = dx->nope;
    const int32_t dq = nope + r, nv = dx->v_head, X = sh->n_expert, FX = sh->n_ff_exp;
    const int32_t E = sh->n_embd, F = sh->n_ff, nsh = FX * dx->n_shared;
    KV_U32("context_length", p->n_ctx > 0 ? p->n_ctx : sh->n_ctx);
    KV_U32("embedding_length", E);
    KV_U32("block_count", n_file_layers);
    KV_U32("feed_forward_length", F);
    KV_U32("expert_count", X);
    KV_U32("expert_used_count", sh->n_expert_used);
    KV_U32("expert_feed_forward_length", FX);
    KV_U32("expert_shared_count", dx->n_shared);
    KV_U32("leading_dense_block_count", dx->n_dense_lead);
    KV_U32("expert_gating_func", dx->sigmoid ? 2 : 1);
    KV_F32("expert_weights_scale", dx->scale);
    if (dx->norm) {
        snprintf(key, sizeof key, "%s.expert_weights_norm", a);
        if ((s = gguf_writer_add_bool(w, key, true))) return s;
    }
    if (dx->n_nextn) KV_U32("nextn_predict_layers", dx->n_nextn);
    if (dx->n_groups) {
        KV_U32("expert_group_count", dx->n_groups);
        KV_U32("expert_group_used_count", dx->n_groups_used);
    }
    KV_U32("attention.head_count", H);
    KV_U32("attention.head_count_kv", 1);
    KV_U32("attention.q_lora_rank", dx->q_lora);
    KV_U32("attention.kv_lora_rank", kvl);
    KV_U32("attention.key_length", kvl + r);
    KV_U32("attention.value_length", kvl);
    KV_U32("attention.key_length_mla", dq);
    KV_U32("attention.value_length_mla", nv);
    KV_U32("rope.dimension_count", r);
    KV_U32("vocab_size", n_vocab);
    KV_F32("rope.freq_base", sh->rope_base);
    KV_F32("attention.layer_norm_rms_epsilon", 1e-6f);
    if (dx->yarn_factor > 0) {
        snprintf(key, sizeof key, "%s.rope.scaling.type", a);
        if ((s = gguf_writer_add_str(w, key, "yarn"))) return s;
        KV_F32("rope.scaling.factor", dx->yarn_factor);
        KV_U32("rope.scaling.original_context_length", 4096);
        if (dx->mscale_all_dim > 0)
            KV_F32("rope.scaling.yarn_log_multiplier", 0.1f * dx->mscale_all_dim);
    }
#undef KV_U32
#undef KV_F32
    const float out_scale = 2.5f / sqrtf((float)E);
    if ((s = add_random(mk, "token_embd.weight", "token_embd", -1, E, n_vocab, 1.0f, 0)) ||
        (s = add_random(mk, "output_norm.weight", "norm", -1, E, 1, 0.05f, 1.0f)) ||
        (s = add_random(mk, "output.weight", "output", -1, E, n_vocab, out_scale, 0)))
        return s;
    for (int il = 0; il < n_file_layers; il++) {
        if (p->progress)
            p->progress(p->progress_ud, "making random weights", (uint64_t)il,
                        (uint64_t)n_file_layers + 1);
        char nm[96];
#define T(suffix, kind, n_in, n_out, scale, off)                                                   \
    do {                                                                                           \
        snprintf(nm, sizeof nm, "blk.%d.%s", il, suffix);                                          \
        if ((s = add_random(mk, nm, kind, il, n_in, n_out, scale, off))) return s;                 \
    } while (0)
#define TX(suffix, kind, n_in, n_out, n, scale)                                                    \
    do {                                                                                           \
        snprintf(nm, sizeof nm, "blk.%d.%s", il, suffix);                                          \
        if ((s = add_random_experts(mk, nm, kind, il, n_in, n_out, n, scale))) return s;           \
    } while (0)
        T("attn_norm.weight", "norm", E, 1, 0.05f, 1.0f);
        if (dx->q_lora > 0) {
            T("attn_q_a.weight", "attn_q", E, dx->q_lora, 1.0f / sqrtf((float)E), 0);
            T("attn_q_a_norm.weight", "norm", dx->q_lora, 1, 0.05f, 1.0f);
            T("attn_q_b.weight", "attn_q", dx->q_lora, H * dq, 1.0f / sqrtf((float)dx->q_lora), 0);
        } else {
            T("attn_q.weight", "attn_q", E, H * dq, 1.0f / sqrtf((float)E), 0);
        }
        T("attn_kv_a_mqa.weight", "attn_k", E, kvl + r, 1.0f / sqrtf((float)E), 0);
        T("attn_kv_a_norm.weight", "norm", kvl, 1, 0.05f, 1.0f);
        // k_b: (nope -> kv_lora) per head; v_b: (kv_lora -> v_head) per head. Q . K then has the
        // spread of a plain head's: q_nope . k_b of unit-size rows over the normed latent
        TX("attn_k_b.weight", "attn_k", nope, kvl, H, 1.0f / sqrtf((float)nope));
        TX("attn_v_b.weight", "attn_v", kvl, nv, H, 1.0f / sqrtf((float)kvl));
        T("attn_output.weight", "attn_output", H * nv, E, 1.0f / sqrtf((float)(H * nv)), 0);
        T("ffn_norm.weight", "norm", E, 1, 0.05f, 1.0f);
        if (il < dx->n_dense_lead) {
            T("ffn_gate.weight", "ffn_gate", E, F, 1.0f / sqrtf((float)E), 0);
            T("ffn_up.weight", "ffn_up", E, F, 1.0f / sqrtf((float)E), 0);
            T("ffn_down.weight", "ffn_down", F, E, 1.0f / sqrtf((float)F), 0);
        } else {
            // the router F32, as llama.cpp's quantizer leaves it; logits of unit spread
            snprintf(nm, sizeof nm, "blk.%d.ffn_gate_inp.weight", il);
            rng_normals(&mk->r, mk->buf, (int64_t)E * X);
            for (int64_t i = 0; i < (int64_t)E * X; i++) mk->buf[i] = mk->buf[i] / sqrtf((float)E);
            const int64_t ne[2] = {E, X};
            if ((s = gguf_writer_add_tensor(w, nm, NURI_TYPE_F32, 2, ne, mk->buf))) return s;
            if (dx->sigmoid) T("exp_probs_b.bias", "bias", X, 1, 0.05f, 0);
            TX("ffn_gate_exps.weight", "ffn_gate", E, FX, X, 1.0f / sqrtf((float)E));
            TX("ffn_up_exps.weight", "ffn_up", E, FX, X, 1.0f / sqrtf((float)E));
            TX("ffn_down_exps.weight", "ffn_down", FX, E, X, 1.0f / sqrtf((float)FX));
            T("ffn_gate_shexp.weight", "ffn_gate", E, nsh, 1.0f / sqrtf((float)E), 0);
            T("ffn_up_shexp.weight", "ffn_up", E, nsh, 1.0f / sqrtf((float)E), 0);
            T("ffn_down_shexp.weight", "ffn_down", nsh, E, 1.0f / sqrtf((float)nsh), 0);
        }
        if (il >= mk->n_layer) { // the next-token-prediction parts, which runners skip
            T("nextn.eh_proj.weight", "attn_output", 2 * E, E, 1.0f / sqrtf((float)(2 * E)), 0);
            T("nextn.enorm.weight", "norm", E, 1, 0.05f, 1.0f);
            T("nextn.hnorm.weight", "norm", E, 1, 0.05f, 1.0f);
            T("nextn.shared_head_norm.weight", "norm", E, 1, 0.05f, 1.0f);
        }
#undef T
#undef TX
    }
    if (p->progress)
        p->progress(p->progress_ud, "writing the file", (uint64_t)n_file_layers,
                    (uint64_t)n_file_layers + 1);
    s = gguf_writer_write(w, path);
    if (p->progress) p->progress(p->progress_ud, "writing the file", 1, 1);
    return s;
}

/* A 2-D F32 tensor of N(offset, scale^2) values (kept F32 whatever the type: the convolution's
 * kernel, which llama.cpp reads only as F32). */
static nuri_status add_random_f32(maker *mk, const char *name, int64_t n_in, int64_t n_out,
                                  float scale, float offset)
{
    rng_normals(&mk->r, mk->buf, n_in * n_out);
    for (int64_t i = 0; i < n_in * n_out; i++) mk->buf[i] = offset + scale * mk->buf[i];
    const int64_t ne[2] = {n_in, n_out};
    return gguf_writer_add_tensor(mk->w, name, NURI_TYPE_F32, 2, ne, mk->buf);
}

static struct qwen35_extra qwen35_extra_of(const shape *sh)
{
    for (size_t i = 0; i < sizeof qwen35_extras / sizeof qwen35_extras[0]; i++)
        if (!strcmp(qwen35_extras[i].shape, sh->name)) return qwen35_extras[i];
    return (struct qwen35_extra){sh->name,     (sh->head_dim / 4) & ~1, 4,
                                 sh->head_dim, sh->n_head_kv,           sh->n_head};
}

/*
 * qwen35 (Qwen3.5): every 4th layer attention whose attn_q yields a query and a gate per head,
 * with q/k norms and rope on n_rot of head_dim; the others gated delta-net layers (attn_qkv, the
 * convolution, ssm_a = -exp(A_log), ssm_dt.bias, ssm_beta / ssm_alpha, ssm_norm, the output gate
 * attn_gate, ssm_out); post_attention_norm before the SwiGLU feed-forward; output tied; one
 * next-token-prediction block after the layers (which runners skip). The decay comes out near
 * the real models' range (exp(g) about 0.8 to 1): ssm_a about -4, ssm_dt.bias about -3.
 */
static nuri_status write_qwen35(maker *mk, const nuri_mkmodel_params *p, const shape *sh,
                                int32_t n_vocab, const char *path)
{
    gguf_writer *w = mk->w;
    const char *a = p->arch;                  // qwen35 or qwen35moe
    const bool moe = !strcmp(a, "qwen35moe"); // experts of n_ff_exp, a shared one as wide
    const struct qwen35_extra ex = qwen35_extra_of(sh);
    const int n_layer = mk->n_layer, n_file_layers = n_layer + 1;
    const int64_t E = sh->n_embd, Q = (int64_t)sh->n_head * sh->head_dim;
    const int64_t KV = (int64_t)sh->n_head_kv * sh->head_dim, F = sh->n_ff;
    const int64_t S = ex.d_state, K = (int64_t)ex.n_group * S, V = (int64_t)ex.n_v * S;
    const int64_t C = 2 * K + V;
    char key[128], nm[96];
    nuri_status s;
#define KV_U32(suffix, v)                                                                          \
    do {                                                                                           \
        snprintf(key, sizeof key, "%s.%s", a, suffix);                                             \
        if ((s = gguf_writer_add_u32(w, key, (uint32_t)(v)))) return s;                            \
    } while (0)
    if ((s = gguf_writer_add_str(w, "general.architecture", a))) return s;
    snprintf(key, sizeof key, "nuri mkmodel %s %s %s seed %llu", p->arch, sh->name, p->type,
             (unsigned long long)p->seed);
    if ((s = gguf_writer_add_str(w, "general.name", key))) return s;
    KV_U32("context_length", p->n_ctx > 0 ? p->n_ctx : sh->n_ctx);
    KV_U32("embedding_length", E);
    KV_U32("block_count", n_file_layers);
    KV_U32("nextn_predict_layers", 1);
    KV_U32("feed_forward_length", F);
    KV_U32("attention.head_count", sh->n_head);
    KV_U32("attention.head_count_kv", sh->n_head_kv);
    KV_U32("attention.key_length", sh->head_dim);
    KV_U32("attention.value_length", sh->head_dim);
    KV_U32("rope.dimension_count", ex.n_rot);
    KV_U32("vocab_size", n_vocab);
    KV_U32("ssm.conv_kernel", ex.d_conv);
    KV_U32("ssm.state_size", S);
    KV_U32("ssm.group_count", ex.n_group);
    KV_U32("ssm.time_step_rank", ex.n_v);
    KV_U32("ssm.inner_size", V);
    KV_U32("full_attention_interval", 4);
    if (moe) {
        KV_U32("expert_count", sh->n_expert);
        KV_U32("expert_used_count", sh->n_expert_used);
        KV_U32("expert_feed_forward_length", sh->n_ff_exp);
        KV_U32("expert_shared_feed_forward_length", sh->n_ff_exp);
    }
#undef KV_U32
    const int32_t half = ex.n_rot / 2;
    const int32_t sections[4] = {(half + 2) / 3, (half + 1) / 3, half / 3, 0};
    snprintf(key, sizeof key, "%s.rope.dimension_sections", a);
    if ((s = gguf_writer_add_arr(w, key, GGUF_TYPE_INT32, sections, 4))) return s;
    bool *rec = calloc((size_t)n_file_layers, sizeof *rec);
    if (!rec) return nuri_error(NURI_ERR_NOMEM, "out of memory");
    for (int il = 0; il < n_layer; il++) rec[il] = (il + 1) % 4 != 0;
    snprintf(key, sizeof key, "%s.attention.recurrent_layers", a);
    s = gguf_writer_add_arr(w, key, GGUF_TYPE_BOOL, rec, (uint64_t)n_file_layers);
    free(rec);
    if (s) return s;
    snprintf(key, sizeof key, "%s.rope.freq_base", a);
    if ((s = gguf_writer_add_f32(w, key, sh->rope_base))) return s;
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", a);
    if ((s = gguf_writer_add_f32(w, key, 1e-6f))) return s;

    const float out_scale = 2.5f / sqrtf((float)E); // tied: the embedding is the output matrix
    if ((s = add_random(mk, "token_embd.weight", "output", -1, E, n_vocab, out_scale, 0)) ||
        (s = add_random(mk, "output_norm.weight", "norm", -1, E, 1, 0.05f, 1.0f)))
        return s;
    for (int il = 0; il < n_file_layers; il++) {
        if (p->progress)
            p->progress(p->progress_ud, "making random weights", (uint64_t)il,
                        (uint64_t)n_file_layers + 1);
        const bool mtp = il >= n_layer, delta = !mtp && (il + 1) % 4 != 0;
#define T(suffix, kind, n_in, n_out, scale, off)                                                   \
    do {                                                                                           \
        snprintf(nm, sizeof nm, "blk.%d.%s", il, suffix);                                          \
        if ((s = add_random(mk, nm, kind, il, n_in, n_out, scale, off))) return s;                 \
    } while (0)
        T("attn_norm.weight", "norm", E, 1, 0.05f, 1.0f);
        if (delta) {
            T("attn_qkv.weight", "attn_qkv", E, C, 1.0f / sqrtf((float)E), 0);
            T("attn_gate.weight", "attn_gate", E, V, 1.0f / sqrtf((float)E), 0);
            T("ssm_beta.weight", "ssm_beta", E, ex.n_v, 1.0f / sqrtf((float)E), 0);
            T("ssm_alpha.weight", "ssm_alpha", E, ex.n_v, 1.0f / sqrtf((float)E), 0);
            snprintf(nm, sizeof nm, "blk.%d.ssm_conv1d.weight", il);
            if ((s = add_random_f32(mk, nm, ex.d_conv, C, 1.0f / sqrtf((float)ex.d_conv), 0)))
                return s;
            T("ssm_dt.bias", "bias", ex.n_v, 1, 1.0f, -3.0f);
            T("ssm_a", "bias", ex.n_v, 1, 1.0f, -4.0f);
            T("ssm_norm.weight", "norm", S, 1, 0.05f, 1.0f);
            T("ssm_out.weight", "ssm_out", V, E, 1.0f / sqrtf((float)V), 0);
        } else {
            T("attn_q.weight", "attn_q", E, 2 * Q, 1.0f / sqrtf((float)E), 0);
            T("attn_k.weight", "attn_k", E, KV, 1.0f / sqrtf((float)E), 0);
            T("attn_v.weight", "attn_v", E, KV, 1.0f / sqrtf((float)E), 0);
            T("attn_q_norm.weight", "norm", sh->head_dim, 1, 0.05f, 1.0f);
            T("attn_k_norm.weight", "norm", sh->head_dim, 1, 0.05f, 1.0f);
            T("attn_output.weight", "attn_output", Q, E, 1.0f / sqrtf((float)Q), 0);
        }
        T("post_attention_norm.weight", "norm", E, 1, 0.05f, 1.0f);
        if (moe) { // the router F32 (as llama.cpp's quantizer leaves it), logits of unit spread
            const int64_t X = sh->n_expert, FX = sh->n_ff_exp;
            snprintf(nm, sizeof nm, "blk.%d.ffn_gate_inp.weight", il);
            if ((s = add_random_f32(mk, nm, E, X, 1.0f / sqrtf((float)E), 0))) return s;
            const struct {
                const char *suffix, *kind;
                int64_t n_in, n_out;
            } xs[] = {{"ffn_gate_exps.weight", "ffn_gate", E, FX},
                      {"ffn_up_exps.weight", "ffn_up", E, FX},
                      {"ffn_down_exps.weight", "ffn_down", FX, E}};
            for (int k = 0; k < 3; k++) {
                snprintf(nm, sizeof nm, "blk.%d.%s", il, xs[k].suffix);
                if ((s = add_random_experts(mk, nm, xs[k].kind, il, xs[k].n_in, xs[k].n_out, X,
                                            1.0f / sqrtf((float)xs[k].n_in))))
                    return s;
            }
            T("ffn_gate_inp_shexp.weight", "norm", E, 1, 1.0f / sqrtf((float)E), 0);
            T("ffn_gate_shexp.weight", "ffn_gate", E, FX, 1.0f / sqrtf((float)E), 0);
            T("ffn_up_shexp.weight", "ffn_up", E, FX, 1.0f / sqrtf((float)E), 0);
            T("ffn_down_shexp.weight", "ffn_down", FX, E, 1.0f / sqrtf((float)FX), 0);
        } else {
            T("ffn_gate.weight", "ffn_gate", E, F, 1.0f / sqrtf((float)E), 0);
            T("ffn_up.weight", "ffn_up", E, F, 1.0f / sqrtf((float)E), 0);
            T("ffn_down.weight", "ffn_down", F, E, 1.0f / sqrtf((float)F), 0);
        }
        if (mtp) {
            T("nextn.eh_proj.weight", "attn_output", 2 * E, E, 1.0f / sqrtf((float)(2 * E)), 0);
            T("nextn.enorm.weight", "norm", E, 1, 0.05f, 1.0f);
            T("nextn.hnorm.weight", "norm", E, 1, 0.05f, 1.0f);
            T("nextn.shared_head_norm.weight", "norm", E, 1, 0.05f, 1.0f);
        }
#undef T
    }
    if (p->progress)
        p->progress(p->progress_ud, "writing the file", (uint64_t)n_file_layers,
                    (uint64_t)n_file_layers + 1);
    s = gguf_writer_write(w, path);
    if (p->progress) p->progress(p->progress_ud, "writing the file", 1, 1);
    return s;
}

nuri_status nuri_mkmodel(const nuri_mkmodel_params *p, const char *path)
{
    static const char *archs[] = {"llama",   "qwen2",       "qwen3",      "exaone",  "exaone4",
                                  "granite", "hyperclovax", "qwen3moe",   "mixtral", "qwen2moe",
                                  "gemma2",  "gemma3",      "exaone-moe", "gpt-oss", "deepseek2",
                                  "qwen35",  "qwen35moe"};
    bool known = false;
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++) known |= !strcmp(p->arch, archs[i]);
    if (!known)
        return nuri_error(NURI_ERR_INVALID_ARG,
                          "unknown architecture '%s' (llama, qwen2, qwen3, exaone, exaone4, "
                          "granite, hyperclovax, qwen3moe, mixtral, qwen2moe, gemma2, gemma3, "
                          "exaone-moe, gpt-oss, deepseek2, qwen35, qwen35moe)",
                          p->arch);
    const shape *sh = NULL;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        if (!strcmp(shapes[i].name, p->shape)) sh = &shapes[i];
    if (!sh)
        return nuri_error(NURI_ERR_INVALID_ARG, "unknown shape '%s' (%s)", p->shape,
                          nuri_mkmodel_shapes());
    const bool moe = !strcmp(p->arch, "qwen3moe") || !strcmp(p->arch, "mixtral") ||
                     !strcmp(p->arch, "qwen2moe") || !strcmp(p->arch, "exaone-moe") ||
                     !strcmp(p->arch, "gpt-oss") || !strcmp(p->arch, "deepseek2") ||
                     !strcmp(p->arch, "qwen35moe");
    if (moe && sh->n_expert == 0)
        return nuri_error(
            NURI_ERR_INVALID_ARG,
            "shape '%s' has no experts; --arch %s needs one that has (moe-tiny, "
            "moe-a3b-mini, moe-bench, qwen3-30b-a3b, mixtral-8x7b, k-exaone-236b-a23b, "
            "gpt-oss-tiny, gpt-oss-20b)",
            sh->name, p->arch);
    if (!nuri_quant_name_ok(p->type))
        return nuri_error(NURI_ERR_INVALID_ARG,
                          "unknown type '%s' (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, "
                          "Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS, MXFP4, IQ2_XXS, IQ2_XS, IQ2_S, "
                          "IQ3_XXS, IQ3_S, IQ1_S, IQ1_M, Q4_K_M, Q5_K_M, MXFP4_MOE)",
                          p->type);

    maker mk = {.mix = p->type, .n_layer = p->n_layer > 0 ? p->n_layer : sh->n_layer};
    rng_seed(&mk.r, p->seed);
    nuri_status s = gguf_writer_new(&mk.w);
    if (s) return s;
    // the tensors wait in a scratch file beside the output, not in memory: a 30B shape is
    // larger than many machines' memory
    char *spill = malloc(strlen(path) + 16);
    if (!spill) s = nuri_error(NURI_ERR_NOMEM, "out of memory");
    if (!s) {
        sprintf(spill, "%s.tensors.tmp", path);
        s = gguf_writer_spill(mk.w, spill);
        free(spill);
    }
    if (s) {
        gguf_writer_free(mk.w);
        return s;
    }
    int32_t n_vocab = sh->n_vocab;
    gguf_file *vf = NULL;
    if (p->vocab) {
        if ((s = gguf_open(p->vocab, &vf))) {
            gguf_writer_free(mk.w);
            return nuri_error_wrap(s, "vocab %s", p->vocab);
        }
        gguf_arr toks;
        if ((s = gguf_get_arr(vf, "tokenizer.ggml.tokens", &toks)) == NURI_OK)
            n_vocab = (int32_t)toks.n + p->n_add_control;
        for (uint64_t i = 0; s == NURI_OK && i < toks.n && p->n_add_control; i++) {
            gguf_str e;
            if ((s = gguf_arr_str(&toks, i, &e))) break;
            for (int j = 0; j < p->n_add_control; j++)
                if (e.len == strlen(p->add_control[j]) && !memcmp(e.ptr, p->add_control[j], e.len))
                    s = nuri_error(NURI_ERR_INVALID_ARG, "vocab %s already has the token '%s'",
                                   p->vocab, p->add_control[j]);
        }
        for (uint64_t i = 0; s == NURI_OK && i < gguf_n_kv(vf); i++) {
            const gguf_kv *kv = gguf_kv_at(vf, i);
            gguf_str k = gguf_kv_key(kv);
            static const char ct[] = "tokenizer.chat_template";
            bool replaced = p->chat_template && k.len == sizeof ct - 1 && !memcmp(k.ptr, ct, k.len);
            if (k.len > 10 && !memcmp(k.ptr, "tokenizer.", 10) && !replaced)
                s = copy_kv(mk.w, vf, kv, p->add_control, p->n_add_control);
        }
    } else if (p->n_add_control) {
        s = nuri_error(NURI_ERR_INVALID_ARG, "control tokens are added to a --vocab file only");
    } else {
        s = add_synthetic_vocab(mk.w, n_vocab);
    }
    if (s == NURI_OK && p->chat_template)
        s = gguf_writer_add_strn(mk.w, "tokenizer.chat_template", p->chat_template,
                                 p->chat_template_len);
    int64_t widest = sh->n_embd > sh->n_ff ? sh->n_embd : sh->n_ff;
    if ((int64_t)sh->n_head * sh->head_dim > widest) widest = (int64_t)sh->n_head * sh->head_dim;
    int64_t biggest = (int64_t)n_vocab * sh->n_embd;
    if (widest * widest > biggest) biggest = widest * widest;
    if ((int64_t)sh->n_embd * sh->n_ff > biggest) biggest = (int64_t)sh->n_embd * sh->n_ff;
    const int64_t experts = (int64_t)sh->n_embd * sh->n_ff_exp * sh->n_expert;
    if (moe && experts > biggest) biggest = experts;
    if (!strncmp(p->arch, "qwen35", 6)) { // attn_q is twice as wide; attn_qkv's channels
        const struct qwen35_extra ex = qwen35_extra_of(sh);
        const int64_t ch = (int64_t)(2 * ex.n_group + ex.n_v) * ex.d_state;
        if (2 * (int64_t)sh->n_head * sh->head_dim * sh->n_embd > biggest)
            biggest = 2 * (int64_t)sh->n_head * sh->head_dim * sh->n_embd;
        if (ch * sh->n_embd > biggest) biggest = ch * sh->n_embd;
    }
    mk.buf = malloc((size_t)biggest * sizeof(float));
    mk.qbuf = malloc((size_t)biggest * sizeof(float));
    if (s == NURI_OK && (!mk.buf || !mk.qbuf))
        s = nuri_error(NURI_ERR_NOMEM, "out of memory for a %lld-element tensor",
                       (long long)biggest);
    if (s == NURI_OK)
        s = !strcmp(p->arch, "deepseek2") ? write_deepseek2(&mk, p, sh, n_vocab, path)
                                          : write_model(&mk, p, sh, n_vocab, path);
    free(mk.buf);
    free(mk.qbuf);
    gguf_close(vf);
    gguf_writer_free(mk.w);
    return s;
}
