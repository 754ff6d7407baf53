/*
 * forward.c: the forward pass of the llama-family transformer over a batch of tokens, and the
 * context (KV cache, activations, scratch) it writes into.
 *
 * Numerics follow llama.cpp's CPU path, because matching its probabilities is the goal: activations
 * are converted to each weight's vec_dot_type (8-bit for quantized weights) before a matrix
 * product; K and V are cached as F16; Q is rounded to F16 for K·Q; the softmax runs in F32 and its
 * probabilities are rounded to F16 before they weight V; RMSNorm sums squares in double.
 *
 * Threads: one nuri_pool_run per decode call; all threads run forward_worker together and meet at
 * a barrier after each step. Each step splits its work (rows of a weight, tokens, heads) by thread.
 * Nothing here allocates: every buffer is sized in nuri_ctx_new.
 */
#include "base/status.h"
#include "base/threadpool.h"
#include "kernels/fp16.h"
#include "kernels/kernels.h"
#include "model/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct nuri_ctx {
    const nuri_model *m;
    int32_t n_ctx, n_batch, n_logits;
    nuri_pool *pool;

    uint16_t *k_cache; // (n_layer, n_ctx, n_kv_dim) F16
    uint16_t *v_cache; // (n_layer, n_kv_dim, n_ctx) F16, transposed: a V column is contiguous

    float *x;      // (n_batch, n_embd) residual stream
    float *xn;     // (n_batch, max(n_embd, n_q)) normalised input of the next product
    float *q;      // (n_batch, n_q)
    float *k;      // (n_batch, n_kv_dim)
    float *v;      // (n_batch, n_kv_dim)
    float *att;    // (n_batch, n_q) attention output
    float *gate;   // (n_batch, n_ff)
    float *up;     // (n_batch, n_ff)
    void *xq;      // (n_batch, xq_stride) activations converted to a vec_dot_type
    size_t xq_stride; // bytes
    float *scores; // (n_threads, n_ctx)
    uint16_t *probs16; // (n_threads, n_ctx) F16
    uint16_t *q16;     // (n_threads, head_dim) F16
    float *logits; // (n_logits, n_vocab)
};

typedef struct job {
    nuri_ctx *c;
    const int32_t *tokens;
    int32_t n, pos0;
    bool all_logits;
} job;

/* ---- small steps ---- */

static void rms_norm(const float *x, const float *w, float *y, int64_t n, float eps)
{
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)(x[i] * x[i]);
    const float mean = (float)(sum / (double)n);
    const float scale = 1.0f / sqrtf(mean + eps);
    for (int64_t i = 0; i < n; i++) y[i] = (x[i] * scale) * w[i];
}

/* Rotates one head's vector in place. NORM pairs (x[2i], x[2i+1]); NEOX pairs (x[i], x[i+n_rot/2]). */
static void rope(float *x, int32_t n_rot, nuri_rope_type type, int32_t pos, float freq_base,
                 const float *freq_factors)
{
    const float theta_scale = powf(freq_base, -2.0f / (float)n_rot);
    float theta = (float)pos;
    for (int32_t i = 0; i < n_rot / 2; i++) {
        float t = freq_factors ? theta / freq_factors[i] : theta;
        float c = cosf(t), s = sinf(t);
        int32_t a = type == NURI_ROPE_NORM ? 2 * i : i;
        int32_t b = type == NURI_ROPE_NORM ? 2 * i + 1 : i + n_rot / 2;
        float x0 = x[a], x1 = x[b];
        x[a] = x0 * c - x1 * s;
        x[b] = x0 * s + x1 * c;
        theta *= theta_scale;
    }
}

/* ---- the worker's view of one decode ---- */

typedef struct worker {
    nuri_ctx *c;
    int ith, nth;
    // what xq currently holds, identical in every thread (they run the same steps)
    const float *xq_src;
    uint32_t xq_type;
} worker;

static void barrier(worker *w)
{
    nuri_pool_barrier(w->c->pool);
}

/* Converts rows [0, T) of src (row stride n floats) to `type` into xq, unless it already holds
 * exactly that. When it does work it is bracketed by barriers: before, so that no thread still
 * reads the old xq (or writes src); after, so that all rows are ready. */
static void quantize_input(worker *w, const float *src, int64_t n, int32_t T, uint32_t type)
{
    if (w->xq_src == src && w->xq_type == type) return;
    barrier(w);
    const nuri_kernel_traits *k = nuri_kernels(type);
    long t0, t1;
    nuri_split(T, w->ith, w->nth, &t0, &t1);
    for (long t = t0; t < t1; t++)
        k->from_float(src + t * n, (char *)w->c->xq + (size_t)t * w->c->xq_stride, n);
    w->xq_src = src;
    w->xq_type = type;
    barrier(w);
}

/* y (T, W.n_out) = x (T, W.n_in) . W^T, x already converted in xq. Rows of W split by thread.
 * Tokens are taken in tiles so a tile of activations stays in cache while W streams by. */
static void matmul(worker *w, const nuri_weight *W, int32_t T, float *y, int64_t y_stride)
{
    const nuri_kernel_traits *k = nuri_kernels(W->type);
    uint64_t row_bytes;
    nuri_type_row_bytes(W->type, (uint64_t)W->n_in, &row_bytes);
    long r0, r1;
    nuri_split(W->n_out, w->ith, w->nth, &r0, &r1);
    const char *xq = w->c->xq;
    const size_t xs = w->c->xq_stride;
    enum { TILE = 16 };
    for (int32_t tb = 0; tb < T; tb += TILE) {
        int32_t te = tb + TILE < T ? tb + TILE : T;
        for (long r = r0; r < r1; r++) {
            const char *wr = (const char *)W->data + (size_t)r * row_bytes;
            for (int32_t t = tb; t < te; t++)
                k->vec_dot(W->n_in, &y[t * y_stride + r], wr, xq + (size_t)t * xs);
        }
    }
}

static void add_bias(worker *w, const nuri_weight *b, float *y, int32_t T, int64_t n)
{
    if (!b->data) return;
    const float *bias = b->data;
    long t0, t1;
    nuri_split(T, w->ith, w->nth, &t0, &t1);
    for (long t = t0; t < t1; t++)
        for (int64_t i = 0; i < n; i++) y[t * n + i] += bias[i];
}

/* ---- attention ---- */

/* One query head of one token against the cache positions [0, n_kv). */
static void attend(worker *w, int il, const float *q, int32_t n_kv, int32_t kvh, float *out)
{
    const nuri_ctx *c = w->c;
    const nuri_hparams *hp = &c->m->hp;
    const int32_t hd = hp->head_dim, kv_dim = hp->n_head_kv * hd;
    const nuri_kernel_traits *f16 = nuri_kernels(NURI_TYPE_F16);
    float *s = c->scores + (size_t)w->ith * c->n_ctx;
    uint16_t *p16 = c->probs16 + (size_t)w->ith * c->n_ctx;
    uint16_t *q16 = c->q16 + (size_t)w->ith * hd;

    for (int32_t d = 0; d < hd; d++) q16[d] = nuri_f32_to_f16(q[d]);
    const uint16_t *K = c->k_cache + (size_t)il * c->n_ctx * kv_dim + (size_t)kvh * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    float max = -INFINITY;
    for (int32_t j = 0; j < n_kv; j++) {
        float dot;
        f16->vec_dot(hd, &dot, K + (size_t)j * kv_dim, q16);
        s[j] = dot * scale;
        if (s[j] > max) max = s[j];
    }
    double sum = 0.0;
    for (int32_t j = 0; j < n_kv; j++) {
        s[j] = expf(s[j] - max);
        sum += (double)s[j];
    }
    const float inv = (float)(1.0 / sum);
    for (int32_t j = 0; j < n_kv; j++) p16[j] = nuri_f32_to_f16(s[j] * inv);
    const uint16_t *V = c->v_cache + (size_t)il * kv_dim * c->n_ctx + (size_t)kvh * hd * c->n_ctx;
    for (int32_t d = 0; d < hd; d++) f16->vec_dot(n_kv, &out[d], V + (size_t)d * c->n_ctx, p16);
}

/* ---- one layer, then the head ---- */

static void layer(worker *w, const job *jb, int il)
{
    nuri_ctx *c = w->c;
    const nuri_model *m = c->m;
    const nuri_hparams *hp = &m->hp;
    const nuri_layer *L = &m->layers[il];
    const int32_t T = jb->n, hd = hp->head_dim;
    const int64_t n_embd = hp->n_embd, n_q = (int64_t)hp->n_head * hd;
    const int64_t kv_dim = (int64_t)hp->n_head_kv * hd, n_ff = hp->n_ff;
    long t0, t1;

    // attention input
    nuri_split(T, w->ith, w->nth, &t0, &t1);
    for (long t = t0; t < t1; t++)
        rms_norm(c->x + t * n_embd, L->attn_norm.data, c->xn + t * n_embd, n_embd, hp->rms_eps);
    w->xq_src = NULL;
    barrier(w);

    quantize_input(w, c->xn, n_embd, T, nuri_kernels(L->wq.type)->vec_dot_type);
    matmul(w, &L->wq, T, c->q, n_q);
    quantize_input(w, c->xn, n_embd, T, nuri_kernels(L->wk.type)->vec_dot_type);
    matmul(w, &L->wk, T, c->k, kv_dim);
    quantize_input(w, c->xn, n_embd, T, nuri_kernels(L->wv.type)->vec_dot_type);
    matmul(w, &L->wv, T, c->v, kv_dim);
    barrier(w);
    add_bias(w, &L->bq, c->q, T, n_q);
    add_bias(w, &L->bk, c->k, T, kv_dim);
    add_bias(w, &L->bv, c->v, T, kv_dim);
    barrier(w);

    // per-head norms, rope, and the new keys and values into the cache: (token, head) pairs
    const int32_t n_pairs = T * (hp->n_head + hp->n_head_kv);
    long p0, p1;
    nuri_split(n_pairs, w->ith, w->nth, &p0, &p1);
    for (long p = p0; p < p1; p++) {
        int32_t t = (int32_t)(p / (hp->n_head + hp->n_head_kv));
        int32_t h = (int32_t)(p % (hp->n_head + hp->n_head_kv));
        int32_t pos = jb->pos0 + t;
        bool is_q = h < hp->n_head;
        float *vec = is_q ? c->q + t * n_q + (int64_t)h * hd
                          : c->k + t * kv_dim + (int64_t)(h - hp->n_head) * hd;
        const nuri_weight *nw = is_q ? &L->q_norm : &L->k_norm;
        if (nw->data) rms_norm(vec, nw->data, vec, hd, hp->rms_eps);
        rope(vec, hp->n_rot, hp->rope_type, pos, hp->rope_freq_base, m->rope_freqs);
        if (!is_q) {
            int32_t kvh = h - hp->n_head;
            uint16_t *kc = c->k_cache + ((size_t)il * c->n_ctx + pos) * kv_dim + (size_t)kvh * hd;
            for (int32_t d = 0; d < hd; d++) kc[d] = nuri_f32_to_f16(vec[d]);
            const float *vv = c->v + t * kv_dim + (int64_t)kvh * hd;
            uint16_t *vc = c->v_cache + (size_t)il * kv_dim * c->n_ctx + (size_t)kvh * hd * c->n_ctx;
            for (int32_t d = 0; d < hd; d++) vc[(size_t)d * c->n_ctx + pos] = nuri_f32_to_f16(vv[d]);
        }
    }
    barrier(w);

    // attention: (token, query head) pairs
    const int32_t group = hp->n_head / hp->n_head_kv;
    nuri_split((long)T * hp->n_head, w->ith, w->nth, &p0, &p1);
    for (long p = p0; p < p1; p++) {
        int32_t t = (int32_t)(p / hp->n_head), h = (int32_t)(p % hp->n_head);
        attend(w, il, c->q + t * n_q + (int64_t)h * hd, jb->pos0 + t + 1, h / group,
               c->att + t * n_q + (int64_t)h * hd);
    }
    barrier(w);

    // output projection, residual
    quantize_input(w, c->att, n_q, T, nuri_kernels(L->wo.type)->vec_dot_type);
    matmul(w, &L->wo, T, c->xn, n_embd);
    barrier(w);
    nuri_split(T, w->ith, w->nth, &t0, &t1);
    for (long t = t0; t < t1; t++) {
        float *x = c->x + t * n_embd;
        const float *a = c->xn + t * n_embd;
        for (int64_t i = 0; i < n_embd; i++) x[i] += a[i];
        rms_norm(x, L->ffn_norm.data, c->xn + t * n_embd, n_embd, hp->rms_eps);
    }
    w->xq_src = NULL;
    barrier(w);

    // feed-forward (SwiGLU)
    quantize_input(w, c->xn, n_embd, T, nuri_kernels(L->ffn_gate.type)->vec_dot_type);
    matmul(w, &L->ffn_gate, T, c->gate, n_ff);
    quantize_input(w, c->xn, n_embd, T, nuri_kernels(L->ffn_up.type)->vec_dot_type);
    matmul(w, &L->ffn_up, T, c->up, n_ff);
    barrier(w);
    nuri_split(T, w->ith, w->nth, &t0, &t1);
    for (long t = t0; t < t1; t++) {
        float *g = c->gate + t * n_ff;
        const float *u = c->up + t * n_ff;
        for (int64_t i = 0; i < n_ff; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
    }
    barrier(w);
    quantize_input(w, c->gate, n_ff, T, nuri_kernels(L->ffn_down.type)->vec_dot_type);
    matmul(w, &L->ffn_down, T, c->xn, n_embd);
    barrier(w);
    for (long t = t0; t < t1; t++) {
        float *x = c->x + t * n_embd;
        const float *a = c->xn + t * n_embd;
        for (int64_t i = 0; i < n_embd; i++) x[i] += a[i];
    }
    barrier(w);
}

static void forward_worker(void *arg, int ith, int nth)
{
    const job *jb = arg;
    worker w = {.c = jb->c, .ith = ith, .nth = nth};
    nuri_ctx *c = jb->c;
    const nuri_model *m = c->m;
    const nuri_hparams *hp = &m->hp;
    const int64_t n_embd = hp->n_embd;
    const int32_t T = jb->n;

    // embeddings: exact dequantization of each token's row
    const nuri_kernel_traits *ke = nuri_kernels(m->token_embd.type);
    uint64_t erow;
    nuri_type_row_bytes(m->token_embd.type, (uint64_t)n_embd, &erow);
    long t0, t1;
    nuri_split(T, ith, nth, &t0, &t1);
    for (long t = t0; t < t1; t++)
        ke->to_float((const char *)m->token_embd.data + (size_t)jb->tokens[t] * erow,
                     c->x + t * n_embd, n_embd);
    barrier(&w);

    for (int il = 0; il < hp->n_layer; il++) layer(&w, jb, il);

    // head: only the rows whose logits are wanted
    const int32_t first = jb->all_logits ? 0 : T - 1, n_out = T - first;
    nuri_split(n_out, ith, nth, &t0, &t1);
    for (long t = t0; t < t1; t++)
        rms_norm(c->x + (first + t) * n_embd, m->output_norm.data, c->xn + t * n_embd, n_embd,
                 hp->rms_eps);
    w.xq_src = NULL;
    barrier(&w);
    quantize_input(&w, c->xn, n_embd, n_out, nuri_kernels(m->output.type)->vec_dot_type);
    matmul(&w, &m->output, n_out, c->logits, hp->n_vocab);
}

/* ---- context ---- */

static void *alloc_floats(size_t n, bool *ok)
{
    void *p = calloc(n ? n : 1, sizeof(float));
    if (!p) *ok = false;
    return p;
}

nuri_status nuri_ctx_new(const nuri_model *m, const nuri_ctx_params *p, nuri_ctx **out)
{
    *out = NULL;
    const nuri_hparams *hp = &m->hp;
    nuri_ctx_params d = p ? *p : (nuri_ctx_params){0};
    if (d.n_ctx == 0) d.n_ctx = hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096;
    if (d.n_batch == 0) d.n_batch = 512;
    if (d.n_threads == 0) d.n_threads = 1;
    if (d.n_logits == 0) d.n_logits = 1;
    if (d.n_ctx < 1 || d.n_ctx > (1 << 22))
        return nuri_error(NURI_ERR_INVALID_ARG, "context size %d is not in 1..%d", d.n_ctx, 1 << 22);
    if (d.n_batch < 1 || d.n_batch > 65536)
        return nuri_error(NURI_ERR_INVALID_ARG, "batch size %d is not in 1..65536", d.n_batch);
    if (d.n_logits < 1 || d.n_logits > d.n_batch)
        return nuri_error(NURI_ERR_INVALID_ARG, "logit rows %d are not in 1..%d (batch size)",
                          d.n_logits, d.n_batch);

    nuri_ctx *c = calloc(1, sizeof *c);
    if (!c) return nuri_error(NURI_ERR_NOMEM, "out of memory for the context");
    c->m = m;
    c->n_ctx = d.n_ctx;
    c->n_batch = d.n_batch;
    c->n_logits = d.n_logits;
    nuri_status s = nuri_pool_new(d.n_threads, &c->pool);
    if (s != NURI_OK) {
        free(c);
        return s;
    }
    const size_t B = (size_t)d.n_batch, nt = (size_t)d.n_threads;
    const size_t n_q = (size_t)hp->n_head * hp->head_dim, kv = (size_t)hp->n_head_kv * hp->head_dim;
    const size_t wide = n_q > (size_t)hp->n_embd ? n_q : (size_t)hp->n_embd;
    const size_t widest = wide > (size_t)hp->n_ff ? wide : (size_t)hp->n_ff;
    bool ok = true;
    c->k_cache = calloc((size_t)hp->n_layer * d.n_ctx * kv, sizeof(uint16_t));
    c->v_cache = calloc((size_t)hp->n_layer * d.n_ctx * kv, sizeof(uint16_t));
    if (!c->k_cache || !c->v_cache) ok = false;
    c->x = alloc_floats(B * hp->n_embd, &ok);
    c->xn = alloc_floats(B * wide, &ok);
    c->q = alloc_floats(B * n_q, &ok);
    c->k = alloc_floats(B * kv, &ok);
    c->v = alloc_floats(B * kv, &ok);
    c->att = alloc_floats(B * n_q, &ok);
    c->gate = alloc_floats(B * hp->n_ff, &ok);
    c->up = alloc_floats(B * hp->n_ff, &ok);
    // the widest conversion is F32 (4 bytes per element); quantized types take less
    c->xq_stride = (widest * 4 + 63) & ~(size_t)63;
    c->xq = alloc_floats(B * c->xq_stride / 4, &ok);
    c->scores = alloc_floats(nt * d.n_ctx, &ok);
    c->probs16 = calloc(nt * d.n_ctx, sizeof(uint16_t));
    c->q16 = calloc(nt * hp->head_dim, sizeof(uint16_t));
    if (!c->probs16 || !c->q16) ok = false;
    c->logits = alloc_floats((size_t)d.n_logits * hp->n_vocab, &ok);
    if (!ok) {
        nuri_ctx_free(c);
        return nuri_error(NURI_ERR_NOMEM,
                          "out of memory for a context of %d tokens (KV cache %.1f MiB)", d.n_ctx,
                          2.0 * hp->n_layer * d.n_ctx * kv * 2 / (1024.0 * 1024.0));
    }
    *out = c;
    return NURI_OK;
}

void nuri_ctx_free(nuri_ctx *c)
{
    if (!c) return;
    nuri_pool_free(c->pool);
    free(c->k_cache);
    free(c->v_cache);
    free(c->x);
    free(c->xn);
    free(c->q);
    free(c->k);
    free(c->v);
    free(c->att);
    free(c->gate);
    free(c->up);
    free(c->xq);
    free(c->scores);
    free(c->probs16);
    free(c->q16);
    free(c->logits);
    free(c);
}

int32_t nuri_ctx_n_ctx(const nuri_ctx *c)
{
    return c->n_ctx;
}

nuri_status nuri_ctx_decode(nuri_ctx *c, const int32_t *tokens, int32_t n, int32_t pos0,
                            bool all_logits)
{
    if (n < 1) return nuri_error(NURI_ERR_INVALID_ARG, "nothing to decode (0 tokens)");
    if (pos0 < 0 || (int64_t)pos0 + n > c->n_ctx)
        return nuri_error(NURI_ERR_LIMIT, "positions %d..%lld exceed the context of %d tokens",
                          pos0, (long long)pos0 + n - 1, c->n_ctx);
    for (int32_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->m->hp.n_vocab)
            return nuri_error(NURI_ERR_INVALID_ARG, "token id %d at index %d is not in 0..%d",
                              tokens[i], i, c->m->hp.n_vocab - 1);
    for (int32_t done = 0; done < n;) {
        int32_t chunk = n - done < c->n_batch ? n - done : c->n_batch;
        bool last = done + chunk == n;
        bool all = all_logits && last;
        if (all && chunk > c->n_logits)
            return nuri_error(NURI_ERR_LIMIT, "%d logit rows wanted, the context keeps %d", chunk,
                              c->n_logits);
        job jb = {.c = c, .tokens = tokens + done, .n = chunk, .pos0 = pos0 + done,
                  .all_logits = all};
        nuri_pool_run(c->pool, forward_worker, &jb);
        done += chunk;
    }
    return NURI_OK;
}

const float *nuri_ctx_logits(const nuri_ctx *c, int32_t i)
{
    NURI_ASSERT(i >= 0 && i < c->n_logits);
    return c->logits + (size_t)i * c->m->hp.n_vocab;
}
