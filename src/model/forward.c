/*
 * forward.c: the forward pass of the llama-family transformer over a batch of tokens, and the
 * context (KV cache, activations, scratch) it writes into.
 *
 * Numerics follow llama.cpp's CPU path, because matching its probabilities is the goal: activations
 * are converted to each weight's vec_dot_type (8-bit for quantized weights) before a matrix
 * product; K and V are cached as F16; Q is rounded to F16 for K·Q; the softmax runs in F32 and its
 * probabilities are rounded to F16 before they weight V; RMSNorm sums squares in double. A cache of
 * Q8_0 / Q4_0 rows (nuri_ctx_params.kv_type_k / _v) follows llama.cpp's -ctk / -ctv instead: Q is
 * quantized to Q8_0 for a quantized K, and a quantized V is weighted with F32 probabilities
 * (kernels/attn.h).
 *
 * Threads: one nuri_pool_run per decode call; all threads run forward_worker together and meet at
 * a barrier after each step. The long steps (packed matrix products, attention) share their work
 * as items taken first come, first served (nuri_share), so that a thread the OS pauses on a busy
 * machine does not hold the others up; the short ones split it evenly by thread.
 * Nothing here allocates: every buffer is sized in nuri_ctx_new.
 */
#include "base/status.h"
#include "base/threadpool.h"
#include "dist/dist.h"
#include "kernels/attn.h"
#include "kernels/fp16.h"
#include "kernels/gelu.h"
#include "kernels/kernels.h"
#include "kernels/pack.h"
#include "model/deltanet.h"
#include "model/model.h"
#include "model/moe.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

struct nuri_ctx {
    const nuri_model *m;
    int32_t n_ctx, n_batch, n_logits, n_seq;
    nuri_pool *pool;

    // the paged KV pool
    int32_t n_pages;
    uint8_t *k_pages;    // (n_layer, n_pages, n_head_kv, NURI_KV_PAGE) rows of k_type (or k_t)
    uint8_t *v_pages;    // (n_layer, n_pages, n_head_kv, NURI_KV_PAGE) rows of v_type
    bool k_t;            // K pages transposed (not MLA): scores_t (F16) / scores_tq
    void *k_map, *v_map; // the pools' mappings (kv_pool_new), and their lengths
    size_t k_map_len, v_map_len;
    uint32_t k_type, v_type; // NURI_TYPE_F16, _Q8_0 or _Q4_0
    size_t k_row, v_row;     // bytes of one head's row of head_dim elements
    // llama.cpp's rotations around a quantized cache (nuri_kv_rotate), in blocks of this many
    // elements (0: none): Q and K before K is stored; V before it is stored, the output after
    int32_t k_rot, v_rot;
    int32_t *page_ref;  // (n_pages) sequences holding each page; 0 = free
    int32_t *free_list; // (n_pages) stack of free pages
    int32_t n_free;
    int32_t *seq_len;   // (n_seq) tokens each sequence holds
    int32_t *seq_pages; // (n_seq, n_pages) page table: position p lives in page [p / NURI_KV_PAGE]

    // the current batch, as the workers see it
    const int32_t *b_token, *b_pos, *b_seq; // (n) borrowed from the caller's batch
    int32_t *b_slot;        // (n_batch) pool slot (page * NURI_KV_PAGE + offset) each token writes
    int32_t *b_row;         // (n_batch) logits row of each token, -1 if none
    int32_t *b_next;        // (n_seq) scratch for validation, -1 between calls
    int32_t *d_pos, *d_seq; // (n_batch) nuri_ctx_decode's batch
    int8_t *d_want;         // (n_batch)

    float *x;    // (n_batch, n_embd) residual stream
    float *xn;   // (n_batch, max(n_embd, n_q)) normalised input of the next product
    float *q;    // (n_batch, n_q)
    float *k;    // (n_batch, n_kv_dim)
    float *v;    // (n_batch, n_kv_dim)
    float *att;  // (n_batch, n_q) attention output
    float *gate; // (n_batch, n_ff)
    float *up;   // (n_batch, n_ff)
    // mixture of experts (n_expert > 0); K = n_expert_used, "rows" = a batch's (token, expert)
    // pairs grouped by expert, n_batch * K of them; gate and up then hold (rows, n_ff_exp)
    float *moe_logits;  // (n_batch, n_expert) router logits
    float *moe_probs;   // (n_threads, n_expert) router scratch
    int32_t *moe_ids;   // (n_batch, K) experts chosen, in order
    float *moe_w;       // (n_batch, K) their weights
    int32_t *moe_start; // (n_expert + 1) each expert's first row
    int32_t *moe_token; // (n_batch * K) each row's token
    int32_t *moe_row;   // (n_batch, K) each choice's row
    float *moe_x;       // (n_batch * K, n_embd) the rows' inputs, then the experts' outputs
    float *moe_margin;  // (n_batch) each token's smallest router margin over the layers
    float *moe_shared;  // (n_batch, n_embd) the shared expert's output (qwen2moe)
    float *moe_shgate;  // (n_batch) the shared expert's gate logit
    void *xq;           // (n_batch, xq_stride) activations converted to a vec_dot_type
    size_t xq_stride;   // bytes
    float *scores;      // (n_threads, G, n_ctx + 1) G = query heads per KV head; + a sink
    uint16_t *q16;      // (n_threads, G, head_dim) the queries as F16, on their way to qf
    float *qf;          // (n_threads, G, head_dim) the queries rounded to F16
    int32_t *qsum;      // (n_threads, G, head_dim / 32) a Q8_0 query's block sums (scores_tq)
    float *logits;      // (n_logits, n_vocab)
    float *mla_qa;      // (n_batch, n_lora_q) deepseek2's compressed query, or NULL

    // a pipeline (the model is one stage of several, src/dist/dist.h): the KV pool holds only the
    // stage's layers; micro-batches leave for the next stage from these buffers
    int32_t *pipe_meta;      // (2, n_batch, 4) token, pos, seq, logits flag per token
    float *pipe_x;           // (2, n_batch, n_embd) activations on their way out
    float *pipe_margin;      // (2, n_batch) their router margins so far (experts)
    nuri_dist_req *pipe_req; // (2 * n_stages, 4) sends (or, stage 0, receives) in flight
    int32_t pipe_slot;       // which half of the buffers a stage > 0 fills next
    bool pipe_open;          // stage 0: the other stages hold this context

    // qwen35: the recurrent state of the delta-net layers, beside the KV pool, one per sequence
    // (C = the convolution's channels, W = d_conv - 1, S = ssm_d_state, R = n_recurrent)
    float *rs_conv;   // (n_seq, R, C, W) each channel's last W inputs, oldest first
    float *rs_ssm;    // (n_seq, R, ssm_n_v, S, S) each value head's state (deltanet.h's layout)
    int32_t *rs_len;  // (n_seq) tokens the state has taken in; -1: it holds more than the sequence
                      // (truncated), so the sequence can only restart at position 0
    float *dn_qkv;    // (n_batch, C) the projection before the convolution
    float *dn_conv;   // (n_batch, C) after it: q, k, v
    float *dn_z;      // (n_batch, ssm_n_v * S) the output gate
    float *dn_beta;   // (n_batch, ssm_n_v)
    float *dn_alpha;  // (n_batch, ssm_n_v) then the decay g
    float *dn_out;    // (n_batch, ssm_n_v * S)
    float *dn_qg;     // (n_batch, 2 * n_q) gated attention's (query, gate) per head
    int32_t *dn_seqs; // (n_batch) the sequences of the current batch, in order of appearance
    int32_t dn_nseq;
};

typedef struct job {
    nuri_ctx *c;
    int32_t n;      // tokens in this step
    int32_t n_rows; // tokens that want logits
} job;

/* The pipeline's half of the context (the end of this file). */
enum { PIPE_NEW = 1, PIPE_FREE, PIPE_DECODE, PIPE_TRUNCATE, PIPE_FORK, PIPE_QUIT };
static nuri_status pipe_new(nuri_ctx *c, const nuri_ctx_params *p);
static void pipe_free(nuri_ctx *c);
static void pipe_op(nuri_ctx *c, int32_t op, int32_t a, int32_t b, int32_t n);
static void pipe_decode(nuri_ctx *c, const nuri_batch *b, int32_t rows);
static nuri_status pipe_refuse_kv(void);
static void forward_worker(void *arg, int ith, int nth);
static nuri_status plan_batch(nuri_ctx *c, const nuri_batch *b, int32_t n, int32_t *n_rows);

/* ---- small steps ---- */

/* RMS norm with the squares summed in double, as ggml does. Eight partial sums, added in a fixed
 * order at the end, instead of one chain: a single chain of dependent double additions was 5% of a
 * 1B model's prompt time (4 cycles per element). The float result differs from one chain's only
 * when the double sum lies within its own rounding error of a float rounding boundary. */
static void rms_norm(const float *x, const float *w, float *y, int64_t n, float eps)
{
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
    int64_t i8 = 0;
    for (; i8 + 8 <= n; i8 += 8) {
        const float *v = x + i8;
        s0 += (double)(v[0] * v[0]), s1 += (double)(v[1] * v[1]);
        s2 += (double)(v[2] * v[2]), s3 += (double)(v[3] * v[3]);
        s4 += (double)(v[4] * v[4]), s5 += (double)(v[5] * v[5]);
        s6 += (double)(v[6] * v[6]), s7 += (double)(v[7] * v[7]);
    }
    double sum = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7));
    for (int64_t i = i8; i < n; i++) sum += (double)(x[i] * x[i]);
    const float mean = (float)(sum / (double)n);
    const float scale = 1.0f / sqrtf(mean + eps);
    for (int64_t i = 0; i < n; i++) y[i] = (x[i] * scale) * w[i];
}

/* Rope: one head's vector turned in place, NORM pairs (x[2i], x[2i+1]), NEOX pairs
 * (x[i], x[i + n_rot/2]). Pair i turns by theta_i = pos * base^(-2i / n_rot) (divided by the
 * pair's frequency factor, if any), times scale (linear rope scaling; 1: none). With YaRN
 * (hp->rope_yarn), rounded step by step as ggml's rope: the correction range [low, high] from the
 * original context and beta_fast 32 / beta_slow 1, then per pair a blend of the interpolated angle
 * (scale * theta) and the original one by a ramp (ext_factor 1), cos / sin times the magnitude
 * factor. Every head of a token turns by the same angles, so the loops over (token, head) pairs
 * keep them in a rope_cache and compute them once per token and layer (the Llama-3.2-1B shape:
 * 1280 cosines and sines per token and layer had been computed 40 times over, 2% of a prompt). */
typedef struct {
    int32_t n_rot, pos;
    float base, scale;    // freq_base; freq_scale (YaRN: the interpolation's)
    const float *factors; // per-pair frequency factors, or NULL
    bool yarn;
} rope_key;

enum { ROPE_CACHED = 256 }; // pairs kept (n_rot up to 512); longer rotations go in runs

typedef struct {
    rope_key key;
    bool valid; // key's angles are in cs / sn
    float cs[ROPE_CACHED], sn[ROPE_CACHED];
} rope_cache;

static float yarn_corr_dim(int32_t n_rot, int32_t n_ctx_orig, float beta, float base)
{
    return (float)n_rot * logf((float)n_ctx_orig / (beta * 2 * (float)M_PI)) / (2 * logf(base));
}

static bool rope_same(const rope_key *a, const rope_key *b)
{
    return a->n_rot == b->n_rot && a->pos == b->pos && a->base == b->base && a->scale == b->scale &&
           a->factors == b->factors && a->yarn == b->yarn;
}

static void rope_apply(float *x, int32_t n_rot, nuri_rope_type type, const float *cs,
                       const float *sn, int32_t i0, int32_t i1)
{
    for (int32_t i = i0; i < i1; i++) {
        const int32_t a = type == NURI_ROPE_NORM ? 2 * i : i;
        const int32_t b = type == NURI_ROPE_NORM ? 2 * i + 1 : i + n_rot / 2;
        const float c = cs[i - i0], s = sn[i - i0], x0 = x[a], x1 = x[b];
        x[a] = x0 * c - x1 * s;
        x[b] = x0 * s + x1 * c;
    }
}

static void rope(rope_cache *rc, float *x, const nuri_hparams *hp, nuri_rope_type type, rope_key k)
{
    const int32_t n_rot = k.n_rot, half = n_rot / 2;
    if (rc->valid && rope_same(&rc->key, &k)) {
        rope_apply(x, n_rot, type, rc->cs, rc->sn, 0, half);
        return;
    }
    const float theta_scale = powf(k.base, -2.0f / (float)n_rot);
    float low = 0, high = 0;
    if (k.yarn) {
        low = floorf(yarn_corr_dim(n_rot, hp->n_ctx_orig, 32.0f, k.base));
        high = ceilf(yarn_corr_dim(n_rot, hp->n_ctx_orig, 1.0f, k.base));
        low = low > 0.0f ? low : 0.0f;
        high = high < (float)(n_rot - 1) ? high : (float)(n_rot - 1);
    }
    float theta = (float)k.pos;
    for (int32_t i0 = 0; i0 < half; i0 += ROPE_CACHED) {
        const int32_t i1 = half - i0 < ROPE_CACHED ? half : i0 + ROPE_CACHED;
        for (int32_t i = i0; i < i1; i++) {
            const float extrap = k.factors ? theta / k.factors[i] : theta;
            if (k.yarn) {
                const float interp = k.scale * extrap;
                const float span = high - low > 0.001f ? high - low : 0.001f;
                const float y = ((float)i - low) / span; // i is ggml's i0 / 2
                const float ramp = (1 - (y < 0 ? 0 : y > 1 ? 1 : y)) * 1.0f;
                const float t = interp * (1 - ramp) + extrap * ramp;
                rc->cs[i - i0] = cosf(t) * hp->rope_mscale;
                rc->sn[i - i0] = sinf(t) * hp->rope_mscale;
            } else {
                const float t = k.scale * extrap;
                rc->cs[i - i0] = cosf(t);
                rc->sn[i - i0] = sinf(t);
            }
            theta *= theta_scale;
        }
        rope_apply(x, n_rot, type, rc->cs, rc->sn, i0, i1);
    }
    rc->key = k;
    rc->valid = half <= ROPE_CACHED;
}

/* ---- the worker's view of one decode ---- */

typedef struct worker {
    nuri_ctx *c;
    int ith, nth;
    // what xq currently holds, identical in every thread (they run the same steps)
    const float *xq_src;
    uint32_t xq_type;
    long tickets;           // items of the shared steps so far (nuri_share_step)
    nuri_lane_totals lanes; // and of the steps in lanes (nuri_share_lanes)
} worker;

enum { ATTN_UNITS = 4 }; // attention units per shared item

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

/* y (T, W.n_out) = x (T, W.n_in) . W^T, x already converted in xq. Packed: items shared by the
 * threads; file layout: for one token, runs of 16 rows shared the same way (a thread the OS
 * pauses no longer holds the others at the next barrier), for more, rows split evenly. For one
 * token the items go in lanes: each thread reads its own part of the matrix front to back. */
static void matmul_at(worker *w, const nuri_weight *W, const void *x, int32_t T, float *y,
                      int64_t y_stride)
{
    nuri_lanes lanes;
    if (W->packed) { // items (runs of row groups) taken first come, first served; in decode each
                     // thread first takes its own lane of them, in order (threadpool.h)
        const long n_items = nuri_gemm_packed_items(W->type, W->n_in, W->n_out, T);
        const nuri_share sh = T == 1 ? nuri_share_lanes(w->c->pool, &w->tickets, &w->lanes, &lanes,
                                                        n_items, w->ith, w->nth)
                                     : nuri_share_step(w->c->pool, &w->tickets, n_items);
        nuri_gemm_packed_shared(W->type, W->n_in, W->packed, W->n_out, x, w->c->xq_stride, T, y,
                                y_stride, &sh);
        return;
    }
    uint64_t row_bytes;
    nuri_type_row_bytes(W->type, (uint64_t)W->n_in, &row_bytes);
    if (T == 1) { // one token (decode): runs of rows first come, first served, as packed items are
        enum { RUN = 16 };
        const nuri_share sh = nuri_share_lanes(w->c->pool, &w->tickets, &w->lanes, &lanes,
                                               (W->n_out + RUN - 1) / RUN, w->ith, w->nth);
        for (long k; (k = nuri_share_take(&sh)) >= 0;) {
            const int64_t r0 = k * RUN, r1 = r0 + RUN < W->n_out ? r0 + RUN : W->n_out;
            nuri_gemm(nuri_kernels(W->type), W->n_in, W->data, row_bytes, r0, r1, x,
                      w->c->xq_stride, T, y, y_stride);
        }
        return;
    }
    // a prompt: an even split (the grid types' gemm prepares the tokens once per call)
    long r0, r1;
    nuri_split(W->n_out, w->ith, w->nth, &r0, &r1);
    nuri_gemm(nuri_kernels(W->type), W->n_in, W->data, row_bytes, r0, r1, x, w->c->xq_stride, T, y,
              y_stride);
}

static void matmul(worker *w, const nuri_weight *W, int32_t T, float *y, int64_t y_stride)
{
    matmul_at(w, W, w->c->xq, T, y, y_stride);
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

/* Byte offset of KV head kvh's row at pool slot `slot` of layer il, in a pool of rows `row` bytes
 * per head. A page holds each head's NURI_KV_PAGE rows together (head-major inside the page), so
 * one head's walk over the cache reads whole runs of memory, not one row in every n_head_kv. */
static size_t kv_at(const nuri_ctx *c, int il, int32_t slot, int32_t kvh, size_t row)
{
    const size_t n_head_kv = (size_t)c->m->hp.n_head_kv;
    il -= c->m->layer_first; // the pool holds this stage's layers
    const size_t page = (size_t)il * c->n_pages + (size_t)(slot / NURI_KV_PAGE);
    return ((page * n_head_kv + (size_t)kvh) * NURI_KV_PAGE + (size_t)(slot % NURI_KV_PAGE)) * row;
}

/* Where cache position j of a sequence (page table `pages`) starts for KV head kvh of layer il
 * (bytes, rows of `row` bytes), and in *run how many positions before n_kv follow it contiguously
 * (to the end of its page). */
static size_t page_run(const nuri_ctx *c, int il, const int32_t *pages, int32_t kvh, int32_t j,
                       int32_t n_kv, size_t row, int32_t *run)
{
    const int32_t off = j % NURI_KV_PAGE;
    *run = NURI_KV_PAGE - off < n_kv - j ? NURI_KV_PAGE - off : n_kv - j;
    return kv_at(c, il, pages[j / NURI_KV_PAGE] * NURI_KV_PAGE + off, kvh, row);
}

_Static_assert(NURI_KV_PAGE == NURI_ATTN_TROWS, "a transposed K block is one head's page");
/* With k_t: the transposed block of head kvh's rows in the page of pool slot `slot`, layer il. */
static uint8_t *k_block(const nuri_ctx *c, int il, int32_t slot, int32_t kvh)
{
    return c->k_pages + kv_at(c, il, slot - slot % NURI_KV_PAGE, kvh, c->k_row);
}

/* With k_t and F16 K: where K row `slot` of head kvh in layer il starts in its page's block (its
 * element d lies d * NURI_KV_PAGE halves further on). */
static uint16_t *k_column(const nuri_ctx *c, int il, int32_t slot, int32_t kvh)
{
    return (uint16_t *)k_block(c, il, slot, kvh) + slot % NURI_KV_PAGE;
}

/* Stores head kvh's K row x (head_dim floats) at pool slot `slot` of layer il: a row of k_type, or
 * with k_t into the page's transposed block: F16 each element down its column (element d of the
 * page's row i at d * NURI_KV_PAGE + i), where scores_t reads K·Q with one row a lane; Q8_0 and
 * Q4_0 the quantized row spread as nuri_kv_tq_put lays it out for scores_tq. */
static void kv_store_k(const nuri_ctx *c, int il, int32_t slot, int32_t kvh, const float *x)
{
    const int32_t hd = c->m->hp.head_dim;
    if (!c->k_t) {
        nuri_kv_store_row(c->k_type, x, c->k_pages + kv_at(c, il, slot, kvh, c->k_row), hd);
    } else if (c->k_type != NURI_TYPE_F16) {
        uint8_t *kt = k_block(c, il, slot, kvh);
        for (int32_t b = 0; b < hd / 32; b++) { // a block at a time: each is quantized alone
            uint8_t blk[34];
            nuri_kv_store_row(c->k_type, x + 32 * b, blk, 32);
            nuri_kv_tq_put(c->k_type, kt + (size_t)b * nuri_kv_tq_slice(c->k_type),
                           slot % NURI_KV_PAGE, blk, 32);
        }
    } else {
        uint16_t *col = k_column(c, il, slot, kvh);
        for (int32_t d = 0; d < hd; d++) col[(size_t)d * NURI_KV_PAGE] = nuri_f32_to_f16(x[d]);
    }
}

/* The G query heads of KV head kvh (q: G x head_dim, contiguous) of token t against its sequence's
 * cache positions [first, n_kv) (first > 0 for a sliding-window layer), into out (G x head_dim).
 * The cache is walked page run by page run; each run is contiguous in the pool. */
static void attend(worker *w, int il, int32_t t, int32_t kvh, const float *q, int32_t first,
                   int32_t n_kv, float *out)
{
    const nuri_ctx *c = w->c;
    const nuri_hparams *hp = &c->m->hp;
    const int32_t hd = hp->head_dim, G = hp->n_head / hp->n_head_kv;
    // a row of scores: n_ctx positions and, after the last one attended, the head's sink
    const size_t n_ctx = (size_t)c->n_ctx + 1;
    const nuri_kernel_traits *f16 = nuri_kernels(NURI_TYPE_F16);
    const nuri_attn_kernels *ak = nuri_attn();
    float *s = c->scores + (size_t)w->ith * G * n_ctx;
    uint16_t *h16 = c->q16 + (size_t)w->ith * G * hd;
    float *qf = c->qf + (size_t)w->ith * G * hd;
    const int32_t *pages = c->seq_pages + (size_t)c->b_seq[t] * c->n_pages;

    int32_t run;
    // gemma scales Q before its rounding (below, in layer()), so K.Q is taken as it is
    const float scale = hp->attn_scale_q ? 1.0f : hp->attn_scale;
    if (c->k_type == NURI_TYPE_F16) {
        f16->from_float(q, h16, (int64_t)G * hd); // Q rounded to F16, as llama.cpp multiplies it
        f16->to_float(h16, qf, (int64_t)G * hd);
        for (int32_t j = first; j < n_kv; j += run) { // transposed blocks (k_t)
            const size_t at = page_run(c, il, pages, kvh, j, n_kv, c->k_row, &run);
            const int32_t off = j % NURI_KV_PAGE;
            ak->scores_t(hd, G, qf, (const uint16_t *)(c->k_pages + at - (size_t)off * c->k_row),
                         off, run, scale, s + j, n_ctx);
        }
    } else {
        // Q as Q8_0, K's vec_dot_type, as llama.cpp converts it (h16 holds 2 bytes an element,
        // more than Q8_0's 34 per 32)
        nuri_kernels(NURI_TYPE_Q8_0)->from_float(q, h16, (int64_t)G * hd);
        // Q8_0 or Q4_0 in transposed blocks (k_t: only MLA keeps rows, and it refuses these types)
        int32_t *qsum = c->qsum + (size_t)w->ith * G * (hd / 32);
        nuri_q8_block_sums(h16, G * (hd / 32), qsum);
        for (int32_t j = first; j < n_kv; j += run) {
            const size_t at = page_run(c, il, pages, kvh, j, n_kv, c->k_row, &run);
            const int32_t off = j % NURI_KV_PAGE;
            ak->scores_tq(c->k_type, hd, G, h16, qsum, c->k_pages + at - (size_t)off * c->k_row,
                          off, run, scale, s + j, n_ctx);
        }
    }
    // a quantized V is weighted with F32 probabilities, an F16 one with F16 probabilities
    void (*softmax)(float *, int32_t) = c->v_type == NURI_TYPE_F16 ? ak->softmax : ak->softmax_f32;
    if (hp->attn_softcap > 0.0f) { // gemma2: c * tanh(K.Q / c), as llama.cpp scales and tanh's
        const float cap = hp->attn_softcap, inv = 1.0f / cap;
        for (int32_t g = 0; g < G; g++)
            for (int32_t j = first; j < n_kv; j++) {
                float *v = s + (size_t)g * n_ctx + j;
                *v = tanhf(*v * inv) * cap;
            }
    }
    const nuri_layer *L = &c->m->layers[il];
    if (L->sinks.data) {
        // gpt-oss: each head's sink joins its softmax as one more logit (not scaled), whose
        // probability weighs nothing, as ggml's softmax with sinks computes it: the max and the
        // sum include it
        const float *sink = (const float *)L->sinks.data + (size_t)kvh * G;
        for (int32_t g = 0; g < G; g++) {
            float *row = s + (size_t)g * n_ctx + first;
            row[n_kv - first] = sink[g];
            softmax(row, n_kv - first + 1);
        }
    } else {
        for (int32_t g = 0; g < G; g++) softmax(s + (size_t)g * n_ctx + first, n_kv - first);
    }
    memset(out, 0, sizeof(float) * (size_t)G * hd);
    for (int32_t j = first; j < n_kv; j += run) {
        const size_t at = page_run(c, il, pages, kvh, j, n_kv, c->v_row, &run);
        if (c->v_type == NURI_TYPE_F16)
            ak->accum(hd, G, s + j, n_ctx, (const uint16_t *)(c->v_pages + at), (size_t)hd, run,
                      out);
        else
            ak->accum_q(c->v_type, hd, G, s + j, n_ctx, c->v_pages + at, c->v_row, run, out);
    }
}

/* ---- one layer, then the head ---- */

/* x += branch output a, after its bias, its post-norm (post_norm archs) and the residual scale.
 * a is overwritten. */
static void branch_into_residual(const nuri_hparams *hp, float *a, const nuri_weight *bias,
                                 const nuri_weight *post_norm, float *x)
{
    const int64_t n = hp->n_embd;
    if (bias->data)
        for (int64_t i = 0; i < n; i++) a[i] += ((const float *)bias->data)[i];
    if (hp->post_norm) rms_norm(a, post_norm->data, a, n, hp->rms_eps);
    if (hp->residual_scale != 1.0f)
        for (int64_t i = 0; i < n; i++) a[i] *= hp->residual_scale;
    for (int64_t i = 0; i < n; i++) x[i] += a[i];
}

/* The feed-forward (SwiGLU) of tokens [0, T): input in xn, added into the residual x. */
static void ffn_dense(worker *w, const nuri_layer *L, int32_t T)
{
    nuri_ctx *c = w->c;
    const nuri_hparams *hp = &c->m->hp;
    const int64_t n_embd = hp->n_embd, n_ff = hp->n_ff;
    long t0, t1;
    quantize_input(w, c->xn, n_embd, T, nuri_kernels(L->ffn_gate.type)->vec_dot_type);
    matmul(w, &L->ffn_gate, T, c->gate, n_ff);
    quantize_input(w, c->xn, n_embd, T, nuri_kernels(L->ffn_up.type)->vec_dot_type);
    matmul(w, &L->ffn_up, T, c->up, n_ff);
    barrier(w);
    nuri_split(T, w->ith, w->nth, &t0, &t1);
    const nuri_attn_kernels *ak = nuri_attn();
    for (long t = t0; t < t1; t++) {
        if (hp->ffn_geglu)
            nuri_geglu(c->gate + t * n_ff, c->up + t * n_ff, n_ff);
        else
            ak->swiglu(c->gate + t * n_ff, c->up + t * n_ff, n_ff);
    }
    barrier(w);
    quantize_input(w, c->gate, n_ff, T, nuri_kernels(L->ffn_down.type)->vec_dot_type);
    matmul(w, &L->ffn_down, T, c->xn, n_embd);
    barrier(w);
    static const nuri_weight no_bias = {0};
    for (long t = t0; t < t1; t++)
        branch_into_residual(hp, c->xn + t * n_embd, &no_bias, &L->ffn_post_norm,
                             c->x + t * n_embd);
    barrier(w);
}

/* The expert of grouped row r (moe.h's layout: expert e's rows are [start[e], start[e + 1])). */
static int32_t row_expert(const nuri_ctx *c, int32_t E, long r)
{
    int32_t lo = 0, hi = E - 1; // the last e with start[e] <= r
    while (lo < hi) {
        const int32_t mid = (lo + hi + 1) / 2;
        if (c->moe_start[mid] <= r)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* gpt-oss's activation of grouped row r, in place in gate: the row's expert's gate and up biases
 * added, then the clamped SwiGLU as ggml's swiglu_oai computes it (alpha 1.702, limit 7):
 * x = min(gate, 7), y = clamp(up, -7, 7), x / (1 + exp(-1.702 x)) * (y + 1). */
static void swiglu_oai_row(const nuri_ctx *c, const nuri_layer *L, long r, int64_t F)
{
    const int32_t e = row_expert(c, c->m->hp.n_expert, r);
    float *g = c->gate + r * F;
    const float *u = c->up + r * F;
    const float *gb =
        L->exp_gate_b.data ? (const float *)L->exp_gate_b.data + (int64_t)e * F : NULL;
    const float *ub = L->exp_up_b.data ? (const float *)L->exp_up_b.data + (int64_t)e * F : NULL;
    const float alpha = 1.702f, limit = 7.0f;
    for (int64_t i = 0; i < F; i++) {
        float gi = gb ? g[i] + gb[i] : g[i];
        float ui = ub ? u[i] + ub[i] : u[i];
        const float x = limit < gi ? limit : gi; // as std::min(gate, limit)
        const float y = ui < -limit ? -limit : (limit < ui ? limit : ui);
        const float glu = x / (1.f + expf(alpha * (-x)));
        g[i] = glu * (y + 1.f);
    }
}

/*
 * The mixture-of-experts feed-forward (moe.h) of tokens [0, T): input in xn, added into the
 * residual x. The router runs per token; then the batch's (token, expert) pairs are grouped by
 * expert, their inputs gathered into consecutive rows, and each chosen expert's three matrices
 * multiply all of its rows at once, so a prompt reads each expert once and a decode step reads
 * only the K experts it chose. Every row's arithmetic depends only on its own token and expert,
 * and each token sums its K outputs in its own choice order: batch invariance holds.
 */
static void ffn_moe(worker *w, const nuri_layer *L, int32_t T)
{
    nuri_ctx *c = w->c;
    const nuri_hparams *hp = &c->m->hp;
    const int64_t n_embd = hp->n_embd, F = hp->n_ff_exp;
    const int32_t E = hp->n_expert, K = hp->n_expert_used, R = T * K;
    long t0, t1;

    quantize_input(w, c->xn, n_embd, T, nuri_kernels(L->ffn_gate_inp.type)->vec_dot_type);
    matmul(w, &L->ffn_gate_inp, T, c->moe_logits, E);
    barrier(w);
    nuri_split(T, w->ith, w->nth, &t0, &t1);
    for (long t = t0; t < t1; t++) {
        float margin;
        if (hp->moe_topk_softmax) { // gpt-oss: logits + bias, top-k, softmax over the k
            float *lg = c->moe_logits + t * E;
            if (L->ffn_gate_inp_b.data)
                for (int32_t e = 0; e < E; e++) lg[e] += ((const float *)L->ffn_gate_inp_b.data)[e];
            nuri_moe_route_topk_softmax(lg, E, K, c->moe_ids + t * K, c->moe_w + t * K, &margin);
        } else if (hp->moe_sigmoid && hp->n_expert_groups > 1) { // DeepSeek-V3's group limit
            nuri_moe_route_sigmoid_grouped(c->moe_logits + t * E, L->exp_probs_b.data, E, K,
                                           hp->n_expert_groups, hp->n_group_used, hp->moe_norm_w,
                                           hp->moe_scale, c->moe_probs + (size_t)w->ith * E,
                                           c->moe_ids + t * K, c->moe_w + t * K, &margin);
        } else if (hp->moe_sigmoid) { // exaone-moe, deepseek2
            nuri_moe_route_sigmoid(c->moe_logits + t * E, L->exp_probs_b.data, E, K, hp->moe_norm_w,
                                   hp->moe_scale, c->moe_probs + (size_t)w->ith * E,
                                   c->moe_ids + t * K, c->moe_w + t * K, &margin);
        } else {
            nuri_moe_route(c->moe_logits + t * E, E, K, hp->moe_norm_w, hp->moe_scale,
                           c->moe_probs + (size_t)w->ith * E, c->moe_ids + t * K, c->moe_w + t * K,
                           &margin);
        }
        if (margin < c->moe_margin[t]) c->moe_margin[t] = margin;
    }
    barrier(w);
    if (w->ith == 0) nuri_moe_group(c->moe_ids, T, K, E, c->moe_start, c->moe_token, c->moe_row);
    barrier(w);
    long r0, r1;
    nuri_split(R, w->ith, w->nth, &r0, &r1);
    for (long r = r0; r < r1; r++)
        memcpy(c->moe_x + r * n_embd, c->xn + (int64_t)c->moe_token[r] * n_embd,
               sizeof(float) * (size_t)n_embd);
    w->xq_src = NULL;
    barrier(w);

    // the shared expert (qwen2moe, exaone-moe): a dense SwiGLU over every token, and qwen2moe's
    // gate's logit
    const int64_t n_sh = hp->n_ff_shexp;
    const bool sh_gated = L->shexp_gate_inp.data != NULL;
    if (n_sh > 0) {
        if (sh_gated) {
            quantize_input(w, c->xn, n_embd, T, nuri_kernels(L->shexp_gate_inp.type)->vec_dot_type);
            matmul(w, &L->shexp_gate_inp, T, c->moe_shgate, 1);
        }
        quantize_input(w, c->xn, n_embd, T, nuri_kernels(L->shexp_gate.type)->vec_dot_type);
        matmul(w, &L->shexp_gate, T, c->gate, n_sh);
        quantize_input(w, c->xn, n_embd, T, nuri_kernels(L->shexp_up.type)->vec_dot_type);
        matmul(w, &L->shexp_up, T, c->up, n_sh);
        barrier(w);
        const nuri_attn_kernels *ak = nuri_attn();
        for (long t = t0; t < t1; t++) ak->swiglu(c->gate + t * n_sh, c->up + t * n_sh, n_sh);
        barrier(w);
        quantize_input(w, c->gate, n_sh, T, nuri_kernels(L->shexp_down.type)->vec_dot_type);
        matmul(w, &L->shexp_down, T, c->moe_shared, n_embd);
        barrier(w);
    }

    // gate and up: each expert over its rows; the experts write disjoint rows, so their products
    // follow one another without a barrier
    const nuri_weight *mats[2] = {L->exp_gate, L->exp_up};
    float *outs[2] = {c->gate, c->up};
    for (int k = 0; k < 2; k++) {
        quantize_input(w, c->moe_x, n_embd, R, nuri_kernels(mats[k][0].type)->vec_dot_type);
        for (int32_t e = 0; e < E; e++) {
            const int32_t n = c->moe_start[e + 1] - c->moe_start[e];
            if (n == 0) continue;
            const size_t r = (size_t)c->moe_start[e];
            matmul_at(w, &mats[k][e], (const char *)c->xq + r * c->xq_stride, n, outs[k] + r * F,
                      F);
        }
    }
    barrier(w);
    const nuri_attn_kernels *ak = nuri_attn();
    if (hp->swiglu_oai)
        for (long r = r0; r < r1; r++) swiglu_oai_row(c, L, r, F);
    else
        for (long r = r0; r < r1; r++) ak->swiglu(c->gate + r * F, c->up + r * F, F);
    barrier(w);
    quantize_input(w, c->gate, F, R, nuri_kernels(L->exp_down[0].type)->vec_dot_type);
    for (int32_t e = 0; e < E; e++) {
        const int32_t n = c->moe_start[e + 1] - c->moe_start[e];
        if (n == 0) continue;
        const size_t r = (size_t)c->moe_start[e];
        matmul_at(w, &L->exp_down[e], (const char *)c->xq + r * c->xq_stride, n,
                  c->moe_x + r * n_embd, n_embd);
    }
    barrier(w);
    if (L->exp_down_b.data) { // gpt-oss: each row's expert's bias
        for (long r = r0; r < r1; r++) {
            const int32_t e = row_expert(c, E, r);
            const float *b = (const float *)L->exp_down_b.data + (int64_t)e * n_embd;
            float *y = c->moe_x + r * n_embd;
            for (int64_t i = 0; i < n_embd; i++) y[i] += b[i];
        }
        barrier(w);
    }

    // each token: its experts' outputs times their weights, summed in choice order (each product
    // rounded before the sum, as llama.cpp multiplies, then adds)
    static const nuri_weight no_bias = {0};
    for (long t = t0; t < t1; t++) {
        float *a = c->xn + t * n_embd;
        const float *e0 = c->moe_x + (int64_t)c->moe_row[t * K] * n_embd;
        const float w0 = c->moe_w[t * K];
        for (int64_t i = 0; i < n_embd; i++) a[i] = e0[i] * w0;
        for (int32_t j = 1; j < K; j++) {
            const float *ej = c->moe_x + (int64_t)c->moe_row[t * K + j] * n_embd;
            const float wj = c->moe_w[t * K + j];
            for (int64_t i = 0; i < n_embd; i++) {
                const float p = ej[i] * wj;
                a[i] = a[i] + p;
            }
        }
        if (n_sh > 0 && sh_gated) {
            // the gate's sigmoid as llama.cpp computes it: qwen2moe's as silu(x) / x, qwen35moe's
            // as ggml's sigmoid
            const float x = c->moe_shgate[t];
            const float g =
                hp->shexp_sigmoid ? 1.0f / (1.0f + expf(-x)) : (x / (1.0f + expf(-x))) / x;
            const float *sh = c->moe_shared + t * n_embd;
            for (int64_t i = 0; i < n_embd; i++) {
                const float p = sh[i] * g;
                a[i] = a[i] + p;
            }
        } else if (n_sh > 0) { // exaone-moe: the experts' sum plus the shared expert
            const float *sh = c->moe_shared + t * n_embd;
            for (int64_t i = 0; i < n_embd; i++) a[i] = a[i] + sh[i];
        }
        branch_into_residual(hp, a, &no_bias, &L->ffn_post_norm, c->x + t * n_embd);
    }
    barrier(w);
}

static void attention_mla(worker *w, const job *jb, int il);
/* Attention of the batch's T tokens, queries in c->q, outputs into c->att: (KV head, token)
 * units, ATTN_UNITS per item (one when there are few), items taken first come, first served (a
 * causal prompt's late rows are long, its early ones short). n_swa > 0: a token sees its last n_swa
 * positions only. */
static void attend_batch(worker *w, int il, int32_t T, int32_t n_swa)
{
    const nuri_ctx *c = w->c;
    const nuri_hparams *hp = &c->m->hp;
    const int32_t hd = hp->head_dim, G = hp->n_head / hp->n_head_kv;
    const int64_t n_q = (int64_t)hp->n_head * hd;
    const long n_units = (long)T * hp->n_head_kv;
    // few units (one token's decode: one per KV head, often 2-8) go one per item, else a 4-head
    // model's whole attention was one item, on one thread, however long its context
    const long per = n_units >= (long)ATTN_UNITS * w->nth * 2 ? ATTN_UNITS : 1;
    const nuri_share sh = nuri_share_step(c->pool, &w->tickets, (n_units + per - 1) / per);
    for (long k; (k = nuri_share_take(&sh)) >= 0;)
        for (long u = k * per; u < n_units && u < (k + 1) * per; u++) {
            // head-major: consecutive units read the same head's K and V (a few MiB at long
            // contexts), so a layer's whole cache does not cycle through the L3 for every token
            int32_t t = (int32_t)(u % T), kvh = (int32_t)(u / T);
            int32_t first = n_swa > 0 && c->b_pos[t] >= n_swa ? c->b_pos[t] - n_swa + 1 : 0;
            const int64_t at = t * n_q + (int64_t)kvh * G * hd;
            attend(w, il, t, kvh, c->q + at, first, c->b_pos[t] + 1, c->att + at);
            // the output of a rotated V, rotated back (G heads, whole blocks)
            for (int32_t d = 0; c->v_rot && d < G * hd; d += c->v_rot)
                nuri_kv_rotate(c->att + at + d, c->v_rot);
        }
}

/* ---- qwen35: gated delta-net layers and gated attention ---- */

static float *rs_conv_at(const nuri_ctx *c, int32_t seq, int32_t rec)
{
    const nuri_hparams *hp = &c->m->hp;
    const size_t C = (size_t)(2 * hp->ssm_n_group + hp->ssm_n_v) * hp->ssm_d_state;
    return c->rs_conv + ((size_t)seq * hp->n_recurrent + rec) * C * (hp->ssm_d_conv - 1);
}

static float *rs_ssm_at(const nuri_ctx *c, int32_t seq, int32_t rec)
{
    const nuri_hparams *hp = &c->m->hp;
    const size_t S = (size_t)hp->ssm_d_state;
    return c->rs_ssm + ((size_t)seq * hp->n_recurrent + rec) * hp->ssm_n_v * S * S;
}

/* The delta-net mixer of tokens [0, T), input in xn, output added into x. The projections run
 * over the whole batch; the convolution and the delta rule run per sequence (its tokens in batch
 * order, which is position order) and per channel block or value head, each unit by one thread
 * from the sequence's own state: a token's numbers depend on its sequence alone. */
enum { DN_CONV_BLOCK = 64 }; // channels per unit of the convolution

static void qwen35_deltanet(worker *w, const nuri_layer *L, int32_t T)
{
    nuri_ctx *c = w->c;
    const nuri_hparams *hp = &c->m->hp;
    const int64_t n_embd = hp->n_embd, S = hp->ssm_d_state, NV = hp->ssm_n_v;
    const int64_t NK = hp->ssm_n_group, K = NK * S, V = NV * S, C = 2 * K + V;
    long t0, t1, u0, u1;

    quantize_input(w, c->xn, n_embd, T, nuri_kernels(L->ssm_qkv.type)->vec_dot_type);
    matmul(w, &L->ssm_qkv, T, c->dn_qkv, C);
    quantize_input(w, c->xn, n_embd, T, nuri_kernels(L->ssm_z.type)->vec_dot_type);
    matmul(w, &L->ssm_z, T, c->dn_z, V);
    quantize_input(w, c->xn, n_embd, T, nuri_kernels(L->ssm_beta.type)->vec_dot_type);
    matmul(w, &L->ssm_beta, T, c->dn_beta, NV);
    quantize_input(w, c->xn, n_embd, T, nuri_kernels(L->ssm_alpha.type)->vec_dot_type);
    matmul(w, &L->ssm_alpha, T, c->dn_alpha, NV);
    barrier(w);
    nuri_split(T, w->ith, w->nth, &t0, &t1);
    for (long t = t0; t < t1; t++)
        nuri_dn_gates(c->dn_beta + t * NV, c->dn_alpha + t * NV, L->ssm_dt.data, L->ssm_a.data, NV);

    // the convolution: (sequence, channel block) units, each over the sequence's tokens in order
    const int64_t n_blocks = (C + DN_CONV_BLOCK - 1) / DN_CONV_BLOCK;
    nuri_split((long)(c->dn_nseq * n_blocks), w->ith, w->nth, &u0, &u1);
    for (long u = u0; u < u1; u++) {
        const int32_t seq = c->dn_seqs[u / n_blocks];
        const int64_t ch0 = (u % n_blocks) * DN_CONV_BLOCK;
        const int64_t ch1 = ch0 + DN_CONV_BLOCK < C ? ch0 + DN_CONV_BLOCK : C;
        float *st = rs_conv_at(c, seq, L->rec);
        for (int32_t t = 0; t < T; t++)
            if (c->b_seq[t] == seq)
                nuri_dn_conv(L->ssm_conv.data, hp->ssm_d_conv, st, c->dn_qkv + t * C,
                             c->dn_conv + t * C, ch0, ch1);
    }
    barrier(w);
    // q and k heads to unit length: (token, head) pairs
    nuri_split((long)T * 2 * NK, w->ith, w->nth, &u0, &u1);
    for (long u = u0; u < u1; u++)
        nuri_dn_l2norm(c->dn_conv + (u / (2 * NK)) * C + (u % (2 * NK)) * S, S, hp->rms_eps);
    barrier(w);
    // the delta rule: (sequence, value head) units; value head h reads key head h % NK
    nuri_split((long)(c->dn_nseq * NV), w->ith, w->nth, &u0, &u1);
    for (long u = u0; u < u1; u++) {
        const int32_t seq = c->dn_seqs[u / NV];
        const int64_t h = u % NV, kh = h % NK;
        float *M = rs_ssm_at(c, seq, L->rec) + h * S * S;
        for (int32_t t = 0; t < T; t++) {
            if (c->b_seq[t] != seq) continue;
            const float *row = c->dn_conv + (int64_t)t * C;
            nuri_dn_step(M, S, row + kh * S, row + K + kh * S, row + 2 * K + h * S,
                         c->dn_alpha[t * NV + h], c->dn_beta[t * NV + h],
                         c->dn_out + t * V + h * S);
        }
    }
    barrier(w);
    nuri_split((long)T * NV, w->ith, w->nth, &u0, &u1);
    for (long u = u0; u < u1; u++)
        nuri_dn_gated_norm(c->dn_out + u * S, c->dn_z + u * S, L->ssm_norm.data, S, hp->rms_eps);
    w->xq_src = NULL;
    barrier(w);
    quantize_input(w, c->dn_out, V, T, nuri_kernels(L->ssm_out.type)->vec_dot_type);
    matmul(w, &L->ssm_out, T, c->xn, n_embd);
    barrier(w);
}

/* Attention whose attn_q yields, per head, the query and then a gate: the output of each head is
 * multiplied by sigmoid(gate) before attn_output. q/k norms and NEOX rope on the first n_rot
 * dimensions (Qwen3.5's multi-section rope, every section at the token's position). Input in xn,
 * output (before the residual) in xn. */
static void qwen35_attention(worker *w, const nuri_layer *L, int il, int32_t T)
{
    nuri_ctx *c = w->c;
    const nuri_model *m = c->m;
    const nuri_hparams *hp = &m->hp;
    const int32_t hd = hp->head_dim;
    const int64_t n_embd = hp->n_embd, n_q = (int64_t)hp->n_head * hd;
    const int64_t kv_dim = (int64_t)hp->n_head_kv * hd;
    long t0, t1;

    quantize_input(w, c->xn, n_embd, T, nuri_kernels(L->wq.type)->vec_dot_type);
    matmul(w, &L->wq, T, c->dn_qg, 2 * n_q);
    quantize_input(w, c->xn, n_embd, T, nuri_kernels(L->wk.type)->vec_dot_type);
    matmul(w, &L->wk, T, c->k, kv_dim);
    quantize_input(w, c->xn, n_embd, T, nuri_kernels(L->wv.type)->vec_dot_type);
    matmul(w, &L->wv, T, c->v, kv_dim);
    barrier(w);

    const int32_t n_pairs = T * (hp->n_head + hp->n_head_kv);
    long p0, p1;
    nuri_split(n_pairs, w->ith, w->nth, &p0, &p1);
    rope_cache rc = {.valid = false}; // this thread's angles, per token
    for (long p = p0; p < p1; p++) {
        const int32_t t = (int32_t)(p / (hp->n_head + hp->n_head_kv));
        const int32_t h = (int32_t)(p % (hp->n_head + hp->n_head_kv));
        const bool is_q = h < hp->n_head;
        float *vec = c->k + t * kv_dim + (int64_t)(h - hp->n_head) * hd;
        if (is_q) {
            vec = c->q + t * n_q + (int64_t)h * hd;
            memcpy(vec, c->dn_qg + t * 2 * n_q + (int64_t)h * 2 * hd, sizeof(float) * (size_t)hd);
        }
        rms_norm(vec, (is_q ? L->q_norm : L->k_norm).data, vec, hd, hp->rms_eps);
        rope(&rc, vec, hp, NURI_ROPE_NEOX,
             (rope_key){hp->n_rot, c->b_pos[t], hp->rope_freq_base, hp->rope_freq_scale, NULL,
                        false});
        if (!is_q) {
            const nuri_kernel_traits *f16 = nuri_kernels(NURI_TYPE_F16);
            const int32_t kvh = h - hp->n_head;
            // f16 rows (nuri_ctx_new refuses other cache types for qwen35)
            kv_store_k(c, il, c->b_slot[t], kvh, vec);
            const size_t at = kv_at(c, il, c->b_slot[t], kvh, c->v_row);
            f16->from_float(c->v + t * kv_dim + (int64_t)kvh * hd, (uint16_t *)(c->v_pages + at),
                            hd);
        }
    }
    barrier(w);

    attend_batch(w, il, T, 0);
    barrier(w);
    nuri_split(T, w->ith, w->nth, &t0, &t1);
    for (long t = t0; t < t1; t++)
        for (int32_t h = 0; h < hp->n_head; h++) {
            float *a = c->att + t * n_q + (int64_t)h * hd;
            const float *g = c->dn_qg + t * 2 * n_q + (int64_t)h * 2 * hd + hd;
            for (int32_t d = 0; d < hd; d++) a[d] *= 1.0f / (1.0f + expf(-g[d]));
        }
    w->xq_src = NULL;
    barrier(w);
    quantize_input(w, c->att, n_q, T, nuri_kernels(L->wo.type)->vec_dot_type);
    matmul(w, &L->wo, T, c->xn, n_embd);
    barrier(w);
}

/* One qwen35 layer: h = x + mixer(attn_norm(x)); y = h + ffn(post_attention_norm(h)). */
static void qwen35_layer(worker *w, const job *jb, int il)
{
    nuri_ctx *c = w->c;
    const nuri_hparams *hp = &c->m->hp;
    const nuri_layer *L = &c->m->layers[il];
    const int32_t T = jb->n;
    const int64_t n_embd = hp->n_embd;
    long t0, t1;
    if (w->ith == 0 && L->rec >= 0) { // the batch's sequences, in order of appearance
        c->dn_nseq = 0;
        for (int32_t t = 0; t < T; t++) {
            int32_t k = 0;
            while (k < c->dn_nseq && c->dn_seqs[k] != c->b_seq[t]) k++;
            if (k == c->dn_nseq) c->dn_seqs[c->dn_nseq++] = c->b_seq[t];
        }
    }
    nuri_split(T, w->ith, w->nth, &t0, &t1);
    for (long t = t0; t < t1; t++)
        rms_norm(c->x + t * n_embd, L->attn_norm.data, c->xn + t * n_embd, n_embd, hp->rms_eps);
    w->xq_src = NULL;
    barrier(w);
    if (L->rec >= 0)
        qwen35_deltanet(w, L, T);
    else
        qwen35_attention(w, L, il, T);
    for (long t = t0; t < t1; t++) {
        float *x = c->x + t * n_embd, *a = c->xn + t * n_embd;
        for (int64_t i = 0; i < n_embd; i++) x[i] += a[i];
        rms_norm(x, L->ffn_norm.data, a, n_embd, hp->rms_eps);
    }
    w->xq_src = NULL;
    barrier(w);
    if (L->ffn_gate_inp.data)
        ffn_moe(w, L, T);
    else
        ffn_dense(w, L, T);
}

static void layer(worker *w, const job *jb, int il)
{
    nuri_ctx *c = w->c;
    const nuri_model *m = c->m;
    const nuri_hparams *hp = &m->hp;
    const nuri_layer *L = &m->layers[il];
    if (hp->mla) { // deepseek2: its own attention, then the feed-forward as below
        attention_mla(w, jb, il);
        if (L->ffn_gate_inp.data)
            ffn_moe(w, L, jb->n);
        else
            ffn_dense(w, L, jb->n);
        return;
    }
    const int32_t T = jb->n, hd = hp->head_dim;
    const int64_t n_embd = hp->n_embd, n_q = (int64_t)hp->n_head * hd;
    const int64_t kv_dim = (int64_t)hp->n_head_kv * hd;
    long t0, t1;
    if (NURI_ARCH_IS_QWEN35(hp->arch)) {
        qwen35_layer(w, jb, il);
        return;
    }

    // attention input: normed (pre-norm archs) or the residual stream itself
    nuri_split(T, w->ith, w->nth, &t0, &t1);
    for (long t = t0; t < t1; t++) {
        if (hp->pre_norm)
            rms_norm(c->x + t * n_embd, L->attn_norm.data, c->xn + t * n_embd, n_embd, hp->rms_eps);
        else
            memcpy(c->xn + t * n_embd, c->x + t * n_embd, sizeof(float) * (size_t)n_embd);
    }
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
    rope_cache rc = {.valid = false}; // this thread's angles, per token
    for (long p = p0; p < p1; p++) {
        int32_t t = (int32_t)(p / (hp->n_head + hp->n_head_kv));
        int32_t h = (int32_t)(p % (hp->n_head + hp->n_head_kv));
        int32_t pos = c->b_pos[t];
        bool is_q = h < hp->n_head;
        float *vec = is_q ? c->q + t * n_q + (int64_t)h * hd
                          : c->k + t * kv_dim + (int64_t)(h - hp->n_head) * hd;
        const nuri_weight *nw = is_q ? &L->q_norm : &L->k_norm;
        if (nw->data) rms_norm(vec, nw->data, vec, hd, hp->rms_eps);
        if (L->rope)
            rope(&rc, vec, hp, hp->rope_type,
                 (rope_key){hp->n_rot, pos, L->swa ? hp->rope_freq_base_swa : hp->rope_freq_base,
                            hp->rope_yarn ? hp->rope_freq_scale
                            : L->swa      ? hp->rope_freq_scale_swa
                                          : hp->rope_freq_scale,
                            m->rope_freqs, hp->rope_yarn});
        if (is_q && hp->attn_scale_q)
            for (int32_t d = 0; d < hd; d++) vec[d] *= hp->attn_scale;
        for (int32_t d = 0; c->k_rot && d < hd; d += c->k_rot) nuri_kv_rotate(vec + d, c->k_rot);
        if (!is_q) {
            int32_t kvh = h - hp->n_head;
            float *vrow = c->v + t * kv_dim + (int64_t)kvh * hd;
            for (int32_t d = 0; c->v_rot && d < hd; d += c->v_rot)
                nuri_kv_rotate(vrow + d, c->v_rot);
            kv_store_k(c, il, c->b_slot[t], kvh, vec);
            nuri_kv_store_row(c->v_type, vrow,
                              c->v_pages + kv_at(c, il, c->b_slot[t], kvh, c->v_row), hd);
        }
    }
    barrier(w);

    attend_batch(w, il, T, L->swa ? hp->n_swa : 0);
    barrier(w);

    // output projection, residual
    quantize_input(w, c->att, n_q, T, nuri_kernels(L->wo.type)->vec_dot_type);
    matmul(w, &L->wo, T, c->xn, n_embd);
    barrier(w);
    nuri_split(T, w->ith, w->nth, &t0, &t1);
    for (long t = t0; t < t1; t++) {
        float *x = c->x + t * n_embd, *a = c->xn + t * n_embd;
        branch_into_residual(hp, a, &L->bo, &L->attn_post_norm, x);
        if (hp->pre_norm)
            rms_norm(x, L->ffn_norm.data, a, n_embd, hp->rms_eps);
        else
            memcpy(a, x, sizeof(float) * (size_t)n_embd);
    }
    w->xq_src = NULL;
    barrier(w);

    if (L->ffn_gate_inp.data)
        ffn_moe(w, L, T);
    else
        ffn_dense(w, L, T);
}

/* ---- multi-head latent attention (deepseek2) ----
 *
 * llama.cpp's absorbed form without flash attention, step for step: q (through q_a, its norm and
 * q_b, or attn_q) splits per head into q_nope and q_pe; kv_a_mqa gives the latent and k_pe; the
 * latent is RMS-normed, k_pe and q_pe roped; each head's q_nope goes through its attn_k_b into the
 * latent's space. Then one KV head of D = n_lora_kv + n_rot dims: K = (latent, k_pe) cached in F16,
 * Q = (q_nope . k_b, q_pe) rounded to F16, scores scaled by kq_scale, the softmax, and V = the
 * cached latent (K's first n_lora_kv dims) weighted by F16 probabilities; each head's result goes
 * through its attn_v_b, then attn_output. The cache holds D halves per token and layer, no V.
 */

/* Rows [0, T) x heads [0, H) of src (token t, head h at src + t * t_stride + h * h_stride, n
 * floats) converted to `type` into xq, row h * T + t, rows `stride` bytes apart. */
static void mla_gather(worker *w, const float *src, int64_t t_stride, int64_t h_stride, int64_t n,
                       int32_t T, int32_t H, uint32_t type, size_t stride)
{
    const nuri_kernel_traits *k = nuri_kernels(type);
    long p0, p1;
    nuri_split((long)T * H, w->ith, w->nth, &p0, &p1);
    for (long p = p0; p < p1; p++) {
        const int32_t h = (int32_t)(p / T), t = (int32_t)(p % T);
        k->from_float(src + t * t_stride + h * h_stride, (char *)w->c->xq + (size_t)p * stride, n);
    }
    w->xq_src = NULL; // xq holds the gathered rows
    barrier(w);
}

/* y[t * y_stride + h * h_out + r] = row r of Ws[h] . gathered row (h, t), for every head h: the
 * heads' matrices one after another, each one's rows split by thread. */
static void mla_heads_matmul(worker *w, const nuri_weight *Ws, int32_t H, int32_t T, size_t stride,
                             float *y, int64_t y_stride, int64_t h_out)
{
    uint64_t row_bytes;
    nuri_type_row_bytes(Ws[0].type, (uint64_t)Ws[0].n_in, &row_bytes);
    const nuri_kernel_traits *k = nuri_kernels(Ws[0].type);
    long r0, r1;
    nuri_split(Ws[0].n_out, w->ith, w->nth, &r0, &r1);
    for (int32_t h = 0; h < H; h++)
        nuri_gemm(k, Ws[h].n_in, Ws[h].data, row_bytes, r0, r1,
                  (const char *)w->c->xq + (size_t)h * T * stride, stride, T, y + h * h_out,
                  y_stride);
    barrier(w);
}

/* Token t's H query heads (q: H x D) against its sequence's cached rows [0, n_kv) of layer il,
 * into out (H x n_lora_kv). */
static void attend_mla(worker *w, int il, int32_t t, const float *q, int32_t n_kv, float *out)
{
    const nuri_ctx *c = w->c;
    const nuri_hparams *hp = &c->m->hp;
    const int32_t D = hp->head_dim, G = hp->n_head, kvl = hp->n_lora_kv;
    const size_t n_ctx = (size_t)c->n_ctx + 1;
    const nuri_kernel_traits *f16 = nuri_kernels(NURI_TYPE_F16);
    const nuri_attn_kernels *ak = nuri_attn();
    float *s = c->scores + (size_t)w->ith * G * n_ctx;
    uint16_t *h16 = c->q16 + (size_t)w->ith * G * D;
    float *qf = c->qf + (size_t)w->ith * G * D;
    const int32_t *pages = c->seq_pages + (size_t)c->b_seq[t] * c->n_pages;
    f16->from_float(q, h16, (int64_t)G * D); // Q rounded to F16, as llama.cpp multiplies it
    f16->to_float(h16, qf, (int64_t)G * D);
    int32_t run;
    for (int32_t j = 0; j < n_kv; j += run) {
        const size_t at = page_run(c, il, pages, 0, j, n_kv, c->k_row, &run);
        ak->scores(D, G, qf, (const uint16_t *)(c->k_pages + at), (size_t)D, run, hp->attn_scale,
                   s + j, n_ctx);
    }
    for (int32_t g = 0; g < G; g++) ak->softmax(s + (size_t)g * n_ctx, n_kv);
    memset(out, 0, sizeof(float) * (size_t)G * kvl);
    for (int32_t j = 0; j < n_kv; j += run) {
        const size_t at = page_run(c, il, pages, 0, j, n_kv, c->k_row, &run);
        ak->accum(kvl, G, s + j, n_ctx, (const uint16_t *)(c->k_pages + at), (size_t)D, run, out);
    }
}

/* The attention half of a deepseek2 layer: input normed into xn, output added to x, and the
 * feed-forward's normed input left in xn. */
static void attention_mla(worker *w, const job *jb, int il)
{
    nuri_ctx *c = w->c;
    const nuri_model *m = c->m;
    const nuri_hparams *hp = &m->hp;
    const nuri_layer *L = &m->layers[il];
    const int32_t T = jb->n, H = hp->n_head, r = hp->n_rot, kvl = hp->n_lora_kv;
    const int32_t D = hp->head_dim, nope = hp->n_qk_nope, dq = nope + r, nv = hp->n_v_mla;
    const int64_t n_embd = hp->n_embd, nq = (int64_t)H * dq;
    float *qraw = c->att; // (T, H, dq) until the attention writes its output there
    long t0, t1;

    nuri_split(T, w->ith, w->nth, &t0, &t1);
    for (long t = t0; t < t1; t++)
        rms_norm(c->x + t * n_embd, L->attn_norm.data, c->xn + t * n_embd, n_embd, hp->rms_eps);
    w->xq_src = NULL;
    barrier(w);

    // the query, and the latent with its rope part
    if (hp->n_lora_q > 0) {
        const int64_t nl = hp->n_lora_q;
        quantize_input(w, c->xn, n_embd, T, nuri_kernels(L->wq_a.type)->vec_dot_type);
        matmul(w, &L->wq_a, T, c->mla_qa, nl);
        barrier(w);
        for (long t = t0; t < t1; t++)
            rms_norm(c->mla_qa + t * nl, L->q_a_norm.data, c->mla_qa + t * nl, nl, hp->rms_eps);
        w->xq_src = NULL;
        quantize_input(w, c->mla_qa, nl, T, nuri_kernels(L->wq_b.type)->vec_dot_type);
        matmul(w, &L->wq_b, T, qraw, nq);
    } else {
        quantize_input(w, c->xn, n_embd, T, nuri_kernels(L->wq.type)->vec_dot_type);
        matmul(w, &L->wq, T, qraw, nq);
    }
    quantize_input(w, c->xn, n_embd, T, nuri_kernels(L->wkv_a.type)->vec_dot_type);
    matmul(w, &L->wkv_a, T, c->k, D);
    barrier(w);

    // per (token, head): q_pe roped into Q; per token (head H): the latent normed, k_pe roped,
    // the row cached
    const nuri_kernel_traits *f16 = nuri_kernels(NURI_TYPE_F16);
    long p0, p1;
    nuri_split((long)T * (H + 1), w->ith, w->nth, &p0, &p1);
    rope_cache rc = {.valid = false}; // this thread's angles, per token
    for (long p = p0; p < p1; p++) {
        const int32_t t = (int32_t)(p / (H + 1)), h = (int32_t)(p % (H + 1)), pos = c->b_pos[t];
        float *vec = h < H ? qraw + t * nq + (int64_t)h * dq + nope : c->k + (int64_t)t * D + kvl;
        rope(&rc, vec, hp, hp->rope_type,
             (rope_key){r, pos, hp->rope_freq_base, hp->rope_freq_scale, NULL, hp->rope_yarn});
        if (h < H) {
            memcpy(c->q + ((int64_t)t * H + h) * D + kvl, vec, sizeof(float) * (size_t)r);
        } else {
            float *kv = c->k + (int64_t)t * D;
            rms_norm(kv, L->kv_a_norm.data, kv, kvl, hp->rms_eps);
            f16->from_float(kv, (uint16_t *)(c->k_pages + kv_at(c, il, c->b_slot[t], 0, c->k_row)),
                            D);
        }
    }
    barrier(w);

    // each head's q_nope through its k_b, into Q's first n_lora_kv dims
    uint64_t rb;
    uint32_t vt = nuri_kernels(L->wk_b[0].type)->vec_dot_type;
    nuri_type_row_bytes(vt, (uint64_t)nope, &rb);
    mla_gather(w, qraw, nq, dq, nope, T, H, vt, (size_t)rb);
    mla_heads_matmul(w, L->wk_b, H, T, (size_t)rb, c->q, (int64_t)H * D, D);

    // attention: one unit per token, all heads at once (they share the one KV head)
    const nuri_share sh = nuri_share_step(c->pool, &w->tickets, T);
    for (long t; (t = nuri_share_take(&sh)) >= 0;)
        attend_mla(w, il, (int32_t)t, c->q + t * H * D, c->b_pos[t] + 1,
                   c->att + t * (int64_t)H * kvl);
    barrier(w);

    // each head's result through its v_b, then the output projection
    vt = nuri_kernels(L->wv_b[0].type)->vec_dot_type;
    nuri_type_row_bytes(vt, (uint64_t)kvl, &rb);
    mla_gather(w, c->att, (int64_t)H * kvl, kvl, kvl, T, H, vt, (size_t)rb);
    mla_heads_matmul(w, L->wv_b, H, T, (size_t)rb, c->xn, (int64_t)H * nv, nv);
    quantize_input(w, c->xn, (int64_t)H * nv, T, nuri_kernels(L->wo.type)->vec_dot_type);
    matmul(w, &L->wo, T, c->xn, n_embd);
    barrier(w);
    for (long t = t0; t < t1; t++) {
        float *x = c->x + t * n_embd, *a = c->xn + t * n_embd;
        for (int64_t i = 0; i < n_embd; i++) x[i] += a[i];
        rms_norm(x, L->ffn_norm.data, a, n_embd, hp->rms_eps);
    }
    w->xq_src = NULL;
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

    // embeddings: exact dequantization of each token's row (a later pipeline stage receives x)
    const nuri_kernel_traits *ke = nuri_kernels(m->token_embd.type);
    uint64_t erow;
    nuri_type_row_bytes(m->token_embd.type, (uint64_t)n_embd, &erow);
    long t0, t1;
    nuri_split(T, ith, nth, &t0, &t1);
    for (long t = m->layer_first == 0 ? t0 : t1; t < t1; t++) {
        float *x = c->x + t * n_embd;
        ke->to_float((const char *)m->token_embd.data + (size_t)c->b_token[t] * erow, x, n_embd);
        if (hp->embd_scale != 1.0f)
            for (int64_t i = 0; i < n_embd; i++) x[i] *= hp->embd_scale;
        if (c->moe_margin) c->moe_margin[t] = INFINITY;
    }
    barrier(&w);

    for (int il = m->layer_first; il < m->layer_end; il++) layer(&w, jb, il);

    // head: only the rows whose logits are wanted, gathered in batch order (the last stage's)
    const int32_t n_out = jb->n_rows;
    if (n_out == 0 || m->layer_end < hp->n_layer) return;
    nuri_split(T, ith, nth, &t0, &t1);
    for (long t = t0; t < t1; t++)
        if (c->b_row[t] >= 0)
            rms_norm(c->x + t * n_embd, m->output_norm.data, c->xn + c->b_row[t] * n_embd, n_embd,
                     hp->rms_eps);
    w.xq_src = NULL;
    barrier(&w);
    quantize_input(&w, c->xn, n_embd, n_out, nuri_kernels(m->output.type)->vec_dot_type);
    matmul(&w, &m->output, n_out, c->logits, hp->n_vocab);
    if (hp->logit_scale != 1.0f) {
        barrier(&w);
        const float inv = 1.0f / hp->logit_scale;
        long i0, i1;
        nuri_split((long)n_out * hp->n_vocab, ith, nth, &i0, &i1);
        for (long i = i0; i < i1; i++) c->logits[i] *= inv;
    }
    if (hp->final_softcap > 0.0f) { // gemma: c * tanh(logits / c)
        barrier(&w);
        const float cap = hp->final_softcap, inv = 1.0f / cap;
        long i0, i1;
        nuri_split((long)n_out * hp->n_vocab, ith, nth, &i0, &i1);
        for (long i = i0; i < i1; i++) c->logits[i] = tanhf(c->logits[i] * inv) * cap;
    }
}

/* ---- context ---- */

static void *alloc_floats(size_t n, bool *ok)
{
    void *p = calloc(n ? n : 1, sizeof(float));
    if (!p) *ok = false;
    return p;
}

static void *alloc_ints(size_t n, bool *ok)
{
    void *p = calloc(n ? n : 1, sizeof(int32_t));
    if (!p) *ok = false;
    return p;
}

/* The context's recurrent state and scratch for qwen35 (nothing for other models). */
static nuri_status rs_new(nuri_ctx *c)
{
    const nuri_model *m = c->m;
    const nuri_hparams *hp = &m->hp;
    if (!NURI_ARCH_IS_QWEN35(hp->arch)) return NURI_OK;
    if (m->n_stages > 1)
        return nuri_error(NURI_ERR_UNSUPPORTED,
                          "a pipeline of %s (recurrent delta-net layers) is not supported",
                          hp->arch_name);
    const size_t B = (size_t)c->n_batch, S = (size_t)hp->ssm_d_state, NV = (size_t)hp->ssm_n_v;
    const size_t C = (2 * (size_t)hp->ssm_n_group + NV) * S, R = (size_t)hp->n_recurrent;
    const size_t n_q = (size_t)hp->n_head * hp->head_dim;
    bool ok = true;
    c->rs_conv = alloc_floats((size_t)c->n_seq * R * C * (size_t)(hp->ssm_d_conv - 1), &ok);
    c->rs_ssm = alloc_floats((size_t)c->n_seq * R * NV * S * S, &ok);
    c->rs_len = alloc_ints((size_t)c->n_seq, &ok);
    c->dn_qkv = alloc_floats(B * C, &ok);
    c->dn_conv = alloc_floats(B * C, &ok);
    c->dn_z = alloc_floats(B * NV * S, &ok);
    c->dn_beta = alloc_floats(B * NV, &ok);
    c->dn_alpha = alloc_floats(B * NV, &ok);
    c->dn_out = alloc_floats(B * NV * S, &ok);
    c->dn_qg = alloc_floats(B * 2 * n_q, &ok);
    c->dn_seqs = alloc_ints(B, &ok);
    if (!ok)
        return nuri_error(
            NURI_ERR_NOMEM, "out of memory for the recurrent state of %d sequences (%.1f MiB each)",
            c->n_seq,
            (double)(R * (C * (size_t)(hp->ssm_d_conv - 1) + NV * S * S)) * 4 / (1024.0 * 1024.0));
    return NURI_OK;
}

static void rs_free(nuri_ctx *c)
{
    void *bufs[] = {c->rs_conv, c->rs_ssm,   c->rs_len, c->dn_qkv, c->dn_conv, c->dn_z,
                    c->dn_beta, c->dn_alpha, c->dn_out, c->dn_qg,  c->dn_seqs};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
}

/* seq's recurrent state: emptied (n == 0) or, when truncated below what it has taken in, marked
 * as no longer the sequence's (a state cannot be rewound). */
static void rs_truncate(nuri_ctx *c, int32_t seq, int32_t n)
{
    if (!c->rs_len) return;
    if (n == 0) {
        const nuri_hparams *hp = &c->m->hp;
        const size_t S = (size_t)hp->ssm_d_state, NV = (size_t)hp->ssm_n_v;
        const size_t C = (2 * (size_t)hp->ssm_n_group + NV) * S, R = (size_t)hp->n_recurrent;
        memset(rs_conv_at(c, seq, 0), 0, sizeof(float) * R * C * (size_t)(hp->ssm_d_conv - 1));
        memset(rs_ssm_at(c, seq, 0), 0, sizeof(float) * R * NV * S * S);
        c->rs_len[seq] = 0;
    } else if (n < c->rs_len[seq]) {
        c->rs_len[seq] = -1;
    }
}

/* A KV snapshot holds the attention layers' cache only; without the recurrent state it could not
 * restore a sequence exactly, so a model with one has none. */
static nuri_status rs_refuse_kv(const nuri_ctx *c)
{
    return nuri_error(NURI_ERR_UNSUPPORTED,
                      "KV snapshots of %s (its delta-net layers' recurrent state is not in them) "
                      "are not supported",
                      c->m->hp.arch_name);
}

/* dst takes src's state when it forks src's whole length; a shorter fork cannot have it. */
static void rs_fork(nuri_ctx *c, int32_t src, int32_t dst, int32_t n)
{
    if (!c->rs_len) return;
    if (n == 0 || n != c->rs_len[src]) {
        rs_truncate(c, dst, 0);
        if (n > 0) c->rs_len[dst] = -1;
        return;
    }
    const nuri_hparams *hp = &c->m->hp;
    const size_t S = (size_t)hp->ssm_d_state, NV = (size_t)hp->ssm_n_v;
    const size_t C = (2 * (size_t)hp->ssm_n_group + NV) * S, R = (size_t)hp->n_recurrent;
    memcpy(rs_conv_at(c, dst, 0), rs_conv_at(c, src, 0),
           sizeof(float) * R * C * (size_t)(hp->ssm_d_conv - 1));
    memcpy(rs_ssm_at(c, dst, 0), rs_ssm_at(c, src, 0), sizeof(float) * R * NV * S * S);
    c->rs_len[dst] = n;
}

/* The KV pool: zeroed pages mapped on first touch, aligned to 2 MiB and advised to be huge
 * pages, so that a long context's walk does not cost a page walk every few KiB. */
static uint8_t *kv_pool_new(size_t bytes, void **map, size_t *map_len)
{
    const size_t huge = (size_t)2 << 20;
    if (bytes == 0) bytes = 1;
    const size_t len = (bytes + huge - 1) / huge * huge + huge; // room to align the start
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    *map = p;
    *map_len = len;
    uint8_t *at = (uint8_t *)(((uintptr_t)p + huge - 1) & ~(uintptr_t)(huge - 1));
#ifdef MADV_HUGEPAGE
    madvise(at, len - (size_t)(at - (uint8_t *)p), MADV_HUGEPAGE); // advice: without THP, 4 KiB
#endif
    return at;
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
    if (d.n_seq == 0) d.n_seq = 1;
    if (d.n_ctx < 1 || d.n_ctx > (1 << 22))
        return nuri_error(NURI_ERR_INVALID_ARG, "context size %d is not in 1..%d", d.n_ctx,
                          1 << 22);
    if (d.n_batch < 1 || d.n_batch > 65536)
        return nuri_error(NURI_ERR_INVALID_ARG, "batch size %d is not in 1..65536", d.n_batch);
    if (d.n_logits < 1 || d.n_logits > d.n_batch)
        return nuri_error(NURI_ERR_INVALID_ARG, "logit rows %d are not in 1..%d (batch size)",
                          d.n_logits, d.n_batch);
    if (d.n_seq < 1 || d.n_seq > 4096)
        return nuri_error(NURI_ERR_INVALID_ARG, "sequence count %d is not in 1..4096", d.n_seq);
    if (d.kv_type_k == 0) d.kv_type_k = NURI_TYPE_F16;
    if (d.kv_type_v == 0) d.kv_type_v = NURI_TYPE_F16;
    for (int i = 0; i < 2; i++) {
        const uint32_t t = i ? d.kv_type_v : d.kv_type_k;
        if (!nuri_kv_type_ok(t))
            return nuri_error(NURI_ERR_INVALID_ARG,
                              "KV cache type %u (%s) is not one of f16, q8_0, q4_0", t,
                              i ? "V" : "K");
        if (t != NURI_TYPE_F16 && hp->head_dim % 32 != 0)
            return nuri_error(NURI_ERR_UNSUPPORTED,
                              "a %s KV cache needs a head size that is a multiple of 32; this "
                              "model's is %d",
                              nuri_kv_type_name(t), hp->head_dim);
        if (t != NURI_TYPE_F16 && hp->mla)
            return nuri_error(NURI_ERR_UNSUPPORTED,
                              "a %s KV cache is not supported for %s: multi-head latent attention "
                              "keeps its latent rows in f16",
                              nuri_kv_type_name(t), hp->arch_name);
        if (t != NURI_TYPE_F16 && NURI_ARCH_IS_QWEN35(hp->arch))
            return nuri_error(NURI_ERR_UNSUPPORTED,
                              "a %s KV cache is not supported for %s yet (its gated attention "
                              "stores f16 rows)",
                              nuri_kv_type_name(t), hp->arch_name);
    }

    nuri_ctx *c = calloc(1, sizeof *c);
    if (!c) return nuri_error(NURI_ERR_NOMEM, "out of memory for the context");
    c->m = m;
    c->n_pages = (d.n_ctx + NURI_KV_PAGE - 1) / NURI_KV_PAGE;
    c->n_ctx = c->n_pages * NURI_KV_PAGE;
    c->n_batch = d.n_batch;
    c->n_logits = d.n_logits;
    c->n_seq = d.n_seq;
    c->k_type = d.kv_type_k;
    c->v_type = d.kv_type_v;
    c->k_row = nuri_kv_row_bytes(c->k_type, hp->head_dim);
    c->v_row = hp->mla ? 0 : nuri_kv_row_bytes(c->v_type, hp->head_dim); // MLA: no V
    c->k_t = !hp->mla; // MLA's K rows are its V rows too
    // as llama.cpp: K in blocks of the largest power of two (>= 64) dividing the head size, V in
    // blocks of 64, each only when its cache is quantized and the head size a multiple of 64
    if (c->k_type != NURI_TYPE_F16 && hp->head_dim % 64 == 0)
        for (c->k_rot = 64; hp->head_dim % (2 * c->k_rot) == 0;) c->k_rot *= 2;
    if (c->v_type != NURI_TYPE_F16 && hp->head_dim % 64 == 0) c->v_rot = 64;
    nuri_status s = nuri_pool_new(d.n_threads, &c->pool);
    if (s != NURI_OK) {
        free(c);
        return s;
    }
    const size_t B = (size_t)d.n_batch, nt = (size_t)d.n_threads;
    const size_t n_q = (size_t)hp->n_head * hp->head_dim, kv = (size_t)hp->n_head_kv * hp->head_dim;
    const size_t wide = n_q > (size_t)hp->n_embd ? n_q : (size_t)hp->n_embd;
    // a model with experts has no dense feed-forward: its n_ff (qwen3moe's feed_forward_length)
    // sizes nothing
    // (exaone-moe's leading dense layers excepted)
    const size_t n_ff = hp->n_expert > 0 && hp->n_dense_lead == 0 ? 0 : (size_t)hp->n_ff;
    size_t widest = wide > n_ff ? wide : n_ff;
    if ((size_t)hp->n_ff_exp > widest) widest = (size_t)hp->n_ff_exp;
    if ((size_t)hp->n_ff_shexp > widest) widest = (size_t)hp->n_ff_shexp;
    if ((size_t)hp->n_lora_q > widest) widest = (size_t)hp->n_lora_q; // deepseek2
    if ((size_t)hp->ssm_n_v * hp->ssm_d_state > widest)               // qwen35: ssm_out's input
        widest = (size_t)hp->ssm_n_v * hp->ssm_d_state;
    // rows of xq, gate and up: a token each, or with experts a (token, expert) pair each
    const size_t K = hp->n_expert > 0 ? (size_t)hp->n_expert_used : 1, E = (size_t)hp->n_expert;
    size_t ff_row = n_ff; // floats of gate and up per token
    if (K * (size_t)hp->n_ff_exp > ff_row) ff_row = K * (size_t)hp->n_ff_exp;
    if ((size_t)hp->n_ff_shexp > ff_row) ff_row = (size_t)hp->n_ff_shexp;
    const size_t kv_slots = (size_t)(m->layer_end - m->layer_first) * c->n_ctx * hp->n_head_kv;
    bool ok = true;
    c->k_pages = kv_pool_new(kv_slots * c->k_row, &c->k_map, &c->k_map_len);
    if (!hp->mla) // MLA: V is K's latent
        c->v_pages = kv_pool_new(kv_slots * c->v_row, &c->v_map, &c->v_map_len);
    if (!c->k_pages || (!hp->mla && !c->v_pages)) ok = false;
    if (hp->n_lora_q > 0) c->mla_qa = alloc_floats(B * (size_t)hp->n_lora_q, &ok);
    c->page_ref = alloc_ints((size_t)c->n_pages, &ok);
    c->free_list = alloc_ints((size_t)c->n_pages, &ok);
    c->seq_len = alloc_ints((size_t)c->n_seq, &ok);
    c->seq_pages = alloc_ints((size_t)c->n_seq * c->n_pages, &ok);
    c->b_slot = alloc_ints(B, &ok);
    c->b_row = alloc_ints(B, &ok);
    c->b_next = alloc_ints((size_t)c->n_seq, &ok);
    c->d_pos = alloc_ints(B, &ok);
    c->d_seq = alloc_ints(B, &ok);
    c->d_want = alloc_ints(B, &ok); // int32-sized slots; only the first B bytes are used
    c->x = alloc_floats(B * hp->n_embd, &ok);
    c->xn = alloc_floats(B * wide, &ok);
    c->q = alloc_floats(B * n_q, &ok);
    c->k = alloc_floats(B * kv, &ok);
    c->v = alloc_floats(B * kv, &ok);
    c->att = alloc_floats(B * n_q, &ok);
    c->gate = alloc_floats(B * ff_row, &ok);
    c->up = alloc_floats(B * ff_row, &ok);
    if (E > 0) {
        c->moe_logits = alloc_floats(B * E, &ok);
        c->moe_probs = alloc_floats(nt * E, &ok);
        c->moe_ids = alloc_ints(B * K, &ok);
        c->moe_w = alloc_floats(B * K, &ok);
        c->moe_start = alloc_ints(E + 1, &ok);
        c->moe_token = alloc_ints(B * K, &ok);
        c->moe_row = alloc_ints(B * K, &ok);
        c->moe_x = alloc_floats(B * K * hp->n_embd, &ok);
        c->moe_margin = alloc_floats(B, &ok);
        if (hp->n_ff_shexp > 0) {
            c->moe_shared = alloc_floats(B * hp->n_embd, &ok);
            c->moe_shgate = alloc_floats(B, &ok);
        }
    }
    // the widest conversion is F32 (4 bytes per element); quantized types take less
    c->xq_stride = (widest * 4 + 63) & ~(size_t)63;
    c->xq = alloc_floats(B * K * c->xq_stride / 4, &ok);
    const size_t G = (size_t)(hp->n_head / hp->n_head_kv);
    c->scores = alloc_floats(nt * G * ((size_t)c->n_ctx + 1), &ok);
    c->q16 = calloc(nt * G * hp->head_dim, sizeof(uint16_t));
    c->qf = alloc_floats(nt * G * hp->head_dim, &ok);
    c->qsum = alloc_ints(nt * G * (size_t)(hp->head_dim / 32 + 1), &ok);
    if (!c->q16) ok = false;
    c->logits = alloc_floats((size_t)d.n_logits * hp->n_vocab, &ok);
    if (m->n_stages > 1) {
        c->pipe_meta = alloc_ints(2 * B * 4, &ok);
        c->pipe_x = alloc_floats(2 * B * hp->n_embd, &ok);
        c->pipe_margin = alloc_floats(2 * B, &ok);
        c->pipe_req = calloc((size_t)m->n_stages * 2 * 4, sizeof *c->pipe_req);
        if (!c->pipe_req) ok = false;
    }
    if (!ok) {
        nuri_ctx_free(c);
        return nuri_error(NURI_ERR_NOMEM,
                          "out of memory for a context of %d tokens (KV cache %.1f MiB)", d.n_ctx,
                          (double)kv_slots * (double)(c->k_row + c->v_row) / (1024.0 * 1024.0));
    }
    for (int32_t i = 0; i < c->n_pages; i++) c->free_list[i] = c->n_pages - 1 - i;
    c->n_free = c->n_pages;
    for (int32_t i = 0; i < c->n_seq; i++) c->b_next[i] = -1;
    if ((s = rs_new(c)) != NURI_OK) {
        nuri_ctx_free(c);
        return s;
    }
    if (m->n_stages > 1 && m->stage == 0) {
        s = pipe_new(c, &d);
        if (s != NURI_OK) {
            nuri_ctx_free(c);
            return s;
        }
    }
    *out = c;
    return NURI_OK;
}

void nuri_ctx_free(nuri_ctx *c)
{
    if (!c) return;
    pipe_free(c);
    rs_free(c);
    nuri_pool_free(c->pool);
    if (c->k_map) munmap(c->k_map, c->k_map_len);
    if (c->v_map) munmap(c->v_map, c->v_map_len);
    void *bufs[] = {c->page_ref,  c->free_list, c->seq_len,    c->seq_pages,  c->b_slot,
                    c->b_row,     c->b_next,    c->x,          c->xn,         c->q,
                    c->k,         c->v,         c->att,        c->gate,       c->up,
                    c->xq,        c->scores,    c->q16,        c->qf,         c->qsum,
                    c->logits,    c->d_pos,     c->d_seq,      c->d_want,     c->moe_logits,
                    c->moe_probs, c->moe_ids,   c->moe_w,      c->moe_start,  c->moe_token,
                    c->moe_row,   c->moe_x,     c->moe_margin, c->moe_shared, c->moe_shgate};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(c->mla_qa);
    void *pipe_bufs[] = {c->pipe_meta, c->pipe_x, c->pipe_margin, c->pipe_req};
    for (size_t i = 0; i < sizeof pipe_bufs / sizeof pipe_bufs[0]; i++) free(pipe_bufs[i]);
    free(c);
}

int32_t nuri_ctx_n_ctx(const nuri_ctx *c)
{
    return c->n_ctx;
}

int32_t nuri_ctx_n_seq(const nuri_ctx *c)
{
    return c->n_seq;
}

/* ---- the page pool ---- */

static int32_t pages_for(int32_t n_tokens)
{
    return (n_tokens + NURI_KV_PAGE - 1) / NURI_KV_PAGE;
}

static void page_release(nuri_ctx *c, int32_t page)
{
    NURI_ASSERT(c->page_ref[page] > 0);
    if (--c->page_ref[page] == 0) c->free_list[c->n_free++] = page;
}

static int32_t page_take(nuri_ctx *c)
{
    NURI_ASSERT(c->n_free > 0);
    int32_t page = c->free_list[--c->n_free];
    c->page_ref[page] = 1;
    return page;
}

int32_t nuri_ctx_seq_len(const nuri_ctx *c, int32_t seq)
{
    return seq >= 0 && seq < c->n_seq ? c->seq_len[seq] : 0;
}

/* Drops positions >= n of seq here only (a pipeline's other stages do the same on their own). */
static void seq_truncate(nuri_ctx *c, int32_t seq, int32_t n)
{
    if (seq < 0 || seq >= c->n_seq || n < 0 || n >= c->seq_len[seq]) return;
    rs_truncate(c, seq, n);
    int32_t *pages = c->seq_pages + (size_t)seq * c->n_pages;
    for (int32_t i = pages_for(n); i < pages_for(c->seq_len[seq]); i++) page_release(c, pages[i]);
    c->seq_len[seq] = n;
}

void nuri_ctx_seq_truncate(nuri_ctx *c, int32_t seq, int32_t n)
{
    pipe_op(c, PIPE_TRUNCATE, seq, n, 0);
    seq_truncate(c, seq, n);
}

bool nuri_ctx_seq_reusable(const nuri_ctx *c, int32_t seq, int32_t n)
{
    if (seq < 0 || seq >= c->n_seq || n < 0 || n > c->seq_len[seq]) return false;
    return !c->rs_len || n == 0 || n == c->rs_len[seq];
}

void nuri_ctx_seq_clear(nuri_ctx *c, int32_t seq)
{
    nuri_ctx_seq_truncate(c, seq, 0);
}

nuri_status nuri_ctx_seq_fork(nuri_ctx *c, int32_t src, int32_t dst, int32_t n)
{
    if (src < 0 || src >= c->n_seq || dst < 0 || dst >= c->n_seq || src == dst)
        return nuri_error(NURI_ERR_INVALID_ARG, "cannot fork sequence %d into %d (%d sequences)",
                          src, dst, c->n_seq);
    if (n < 0 || n > c->seq_len[src])
        return nuri_error(NURI_ERR_INVALID_ARG, "sequence %d holds %d tokens, not %d", src,
                          c->seq_len[src], n);
    pipe_op(c, PIPE_FORK, src, dst, n);
    seq_truncate(c, dst, 0);
    const int32_t *sp = c->seq_pages + (size_t)src * c->n_pages;
    int32_t *dp = c->seq_pages + (size_t)dst * c->n_pages;
    for (int32_t i = 0; i < pages_for(n); i++) {
        dp[i] = sp[i];
        c->page_ref[sp[i]]++;
    }
    c->seq_len[dst] = n;
    rs_fork(c, src, dst, n);
    return NURI_OK;
}

int32_t nuri_ctx_pages_total(const nuri_ctx *c)
{
    return c->n_pages;
}

int32_t nuri_ctx_pages_free(const nuri_ctx *c)
{
    return c->n_free;
}

/* ---- a sequence's KV as bytes (snapshots) ---- */

size_t nuri_ctx_kv_bytes(const nuri_ctx *c, int32_t n)
{
    return n <= 0 ? 0
                  : (size_t)c->m->hp.n_layer * (size_t)n * (size_t)c->m->hp.n_head_kv *
                        (c->k_row + c->v_row);
}

size_t nuri_kv_bytes_per_token(const nuri_model *m, uint32_t k_type, uint32_t v_type)
{
    const int32_t hd = m->hp.head_dim;
    return (size_t)m->hp.n_layer * (size_t)m->hp.n_head_kv *
           (nuri_kv_row_bytes(k_type ? k_type : NURI_TYPE_F16, hd) +
            (m->hp.mla ? 0 : nuri_kv_row_bytes(v_type ? v_type : NURI_TYPE_F16, hd))); // MLA: K
}

void nuri_ctx_kv_types(const nuri_ctx *c, uint32_t *k_type, uint32_t *v_type)
{
    *k_type = c->k_type;
    *v_type = c->v_type;
}

nuri_status nuri_kv_type_parse(const char *name, uint32_t *type)
{
    static const uint32_t types[] = {NURI_TYPE_F16, NURI_TYPE_Q8_0, NURI_TYPE_Q4_0};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (strcmp(name, nuri_kv_type_name(types[i])) == 0) {
            *type = types[i];
            return NURI_OK;
        }
    return nuri_error(NURI_ERR_INVALID_ARG, "KV cache type '%s' is not one of f16, q8_0, q4_0",
                      name);
}

const char *nuri_kv_type_name(uint32_t type)
{
    return type == NURI_TYPE_Q8_0 ? "q8_0" : type == NURI_TYPE_Q4_0 ? "q4_0" : "f16";
}

/* Copies head kvh's row of K (kv 0) or V (kv 1) at pool slot `slot` of layer il to (dir 0) or
 * from (dir 1) the row-major bytes at b; a transposed K row (k_t) is gathered from or scattered
 * into its page's block. */
static void kv_row_copy(nuri_ctx *c, int il, int kv, int32_t slot, int32_t kvh, uint8_t *b, int dir)
{
    if (!kv && c->k_t && c->k_type != NURI_TYPE_F16) {
        const int32_t hd = c->m->hp.head_dim, off = slot % NURI_KV_PAGE;
        if (dir == 0)
            nuri_kv_tq_get(c->k_type, k_block(c, il, slot, kvh), off, b, hd);
        else
            nuri_kv_tq_put(c->k_type, k_block(c, il, slot, kvh), off, b, hd);
        return;
    }
    if (!kv && c->k_t) {
        uint16_t *col = k_column(c, il, slot, kvh);
        for (int32_t d = 0; d < c->m->hp.head_dim; d++, b += 2) {
            uint16_t *e = col + (size_t)d * NURI_KV_PAGE;
            if (dir == 0)
                memcpy(b, e, 2);
            else
                memcpy(e, b, 2);
        }
        return;
    }
    const size_t row = kv ? c->v_row : c->k_row;
    uint8_t *at = (kv ? c->v_pages : c->k_pages) + kv_at(c, il, slot, kvh, row);
    if (dir == 0)
        memcpy(b, at, row);
    else
        memcpy(at, b, row);
}

/* Copies rows [0, n) of seq's K or V of every layer to (dir 0) or from (dir 1) a buffer laid out
 * as layer-major blocks of `stride` positions each: K of layer 0, V of layer 0, K of layer 1, ...
 * (a position's K row is n_head_kv * k_row bytes, its V row n_head_kv * v_row). */
static void kv_copy(nuri_ctx *c, int32_t seq, int32_t n, int32_t stride, uint8_t *buf, int dir)
{
    const size_t hk = (size_t)c->m->hp.n_head_kv;
    const size_t layer = (size_t)stride * hk * (c->k_row + c->v_row);
    const int32_t *pages = c->seq_pages + (size_t)seq * c->n_pages;
    for (int il = c->m->layer_first; il < c->m->layer_end; il++)
        for (int kv = 0; kv < 2; kv++) {
            if (kv && !c->v_pages) continue; // MLA keeps no V
            const size_t hrow = kv ? c->v_row : c->k_row, row = hk * hrow;
            uint8_t *b = buf + (size_t)il * layer + (kv ? (size_t)stride * hk * c->k_row : 0);
            for (int32_t p = 0; p < n; p++)
                for (size_t h = 0; h < hk; h++)
                    kv_row_copy(c, il, kv,
                                pages[p / NURI_KV_PAGE] * NURI_KV_PAGE + p % NURI_KV_PAGE,
                                (int32_t)h, b + (size_t)p * row + h * hrow, dir);
        }
}

nuri_status nuri_ctx_seq_kv_read(const nuri_ctx *c, int32_t seq, int32_t n, void *out)
{
    if (seq < 0 || seq >= c->n_seq || n < 0 || n > c->seq_len[seq])
        return nuri_error(NURI_ERR_INVALID_ARG, "sequence %d does not hold %d tokens", seq, n);
    if (c->m->n_stages > 1) return pipe_refuse_kv();
    if (c->rs_len) return rs_refuse_kv(c);
    kv_copy((nuri_ctx *)c, seq, n, n, out, 0);
    return NURI_OK;
}

nuri_status nuri_ctx_seq_kv_write(nuri_ctx *c, int32_t seq, int32_t n, int32_t stride,
                                  const void *in)
{
    if (seq < 0 || seq >= c->n_seq || n < 0 || n > stride || n > c->n_ctx)
        return nuri_error(NURI_ERR_INVALID_ARG, "cannot write %d tokens of KV into sequence %d", n,
                          seq);
    if (c->m->n_stages > 1) return pipe_refuse_kv();
    if (c->rs_len) return rs_refuse_kv(c);
    nuri_ctx_seq_clear(c, seq);
    if (pages_for(n) > c->n_free)
        return nuri_error(NURI_ERR_LIMIT, "%d tokens of KV need %d pages; %d are free", n,
                          pages_for(n), c->n_free);
    int32_t *pages = c->seq_pages + (size_t)seq * c->n_pages;
    for (int32_t i = 0; i < pages_for(n); i++) pages[i] = page_take(c);
    c->seq_len[seq] = n;
    kv_copy(c, seq, n, stride, (uint8_t *)in, 1);
    return NURI_OK;
}

/* Copies one page (every layer's K and V) into a fresh page; returns the new page. */
static int32_t page_copy(nuri_ctx *c, int32_t from)
{
    int32_t to = page_take(c);
    const size_t slots = (size_t)NURI_KV_PAGE * c->m->hp.n_head_kv;
    for (int il = c->m->layer_first; il < c->m->layer_end; il++) {
        memcpy(c->k_pages + kv_at(c, il, to * NURI_KV_PAGE, 0, c->k_row),
               c->k_pages + kv_at(c, il, from * NURI_KV_PAGE, 0, c->k_row), slots * c->k_row);
        if (c->v_pages) // MLA keeps no V
            memcpy(c->v_pages + kv_at(c, il, to * NURI_KV_PAGE, 0, c->v_row),
                   c->v_pages + kv_at(c, il, from * NURI_KV_PAGE, 0, c->v_row), slots * c->v_row);
    }
    page_release(c, from);
    return to;
}

/* ---- decoding ---- */

/* Pages a sequence takes (or, negative, gives back) when a batch writes it from position pos
 * (<= its length) on, before counting the pages its tokens start: the pages past pos are released
 * (a shared one is not really freed), and a shared page written into is copied. */
static int32_t seq_restart_pages(const nuri_ctx *c, int32_t seq, int32_t pos)
{
    int32_t need = -(pages_for(c->seq_len[seq]) - pages_for(pos)); // released (if not shared)
    const int32_t *pages = c->seq_pages + (size_t)seq * c->n_pages;
    for (int32_t k = pages_for(pos); k < pages_for(c->seq_len[seq]); k++)
        if (c->page_ref[pages[k]] > 1) need++; // shared: not really freed
    if (pos % NURI_KV_PAGE && c->page_ref[pages[pos / NURI_KV_PAGE]] > 1) need++; // copy on write
    return need;
}

int32_t nuri_ctx_pages_needed(const nuri_ctx *c, int32_t seq, int32_t pos, int32_t n)
{
    NURI_ASSERT(seq >= 0 && seq < c->n_seq && pos >= 0 && pos <= c->seq_len[seq] && n >= 0);
    if (n == 0) return 0;
    return seq_restart_pages(c, seq, pos) + pages_for(pos + n) - pages_for(pos);
}

/* Checks a batch of n <= n_batch tokens and makes room for it in the pool: first all checks and
 * the page count (so a refused batch changes nothing), then truncation, copy-on-write of a shared
 * page that gets written, and new pages. Fills b_slot and b_row; returns the logit row count. */
static nuri_status plan_batch(nuri_ctx *c, const nuri_batch *b, int32_t n, int32_t *n_rows)
{
    nuri_status s = NURI_OK;
    int32_t need = 0, rows = 0;
    for (int32_t i = 0; i < n && s == NURI_OK; i++) {
        int32_t seq = b->seq[i], pos = b->pos[i], tok = b->token[i];
        if (tok < 0 || tok >= c->m->hp.n_vocab)
            s = nuri_error(NURI_ERR_INVALID_ARG, "token id %d at index %d is not in 0..%d", tok, i,
                           c->m->hp.n_vocab - 1);
        else if (seq < 0 || seq >= c->n_seq)
            s = nuri_error(NURI_ERR_INVALID_ARG, "sequence id %d at index %d is not in 0..%d", seq,
                           i, c->n_seq - 1);
        else if (pos < 0 || pos >= c->n_ctx)
            s = nuri_error(NURI_ERR_LIMIT, "position %d at index %d is outside the context of %d",
                           pos, i, c->n_ctx);
        else if (c->b_next[seq] >= 0 && pos != c->b_next[seq])
            s = nuri_error(NURI_ERR_INVALID_ARG,
                           "sequence %d: position %d at index %d, expected %d (consecutive)", seq,
                           pos, i, c->b_next[seq]);
        else if (c->b_next[seq] < 0 && pos > c->seq_len[seq])
            s = nuri_error(NURI_ERR_INVALID_ARG,
                           "sequence %d holds %d tokens; it cannot continue at position %d", seq,
                           c->seq_len[seq], pos);
        else if (c->rs_len && c->b_next[seq] < 0 && pos != 0 && pos != c->rs_len[seq])
            s = nuri_error(NURI_ERR_INVALID_ARG,
                           "sequence %d: %s's recurrent state cannot go back to position %d; "
                           "the sequence continues at %d or restarts at 0",
                           seq, c->m->hp.arch_name, pos, c->seq_len[seq]);
        if (s != NURI_OK) break;
        if (c->b_next[seq] < 0) need += seq_restart_pages(c, seq, pos);
        if (pos % NURI_KV_PAGE == 0) need++; // a new page starts here
        c->b_next[seq] = pos + 1;
        if (b->logits && b->logits[i]) rows++;
    }
    for (int32_t i = 0; i < n; i++)
        if (b->seq[i] >= 0 && b->seq[i] < c->n_seq) c->b_next[b->seq[i]] = -1;
    if (s != NURI_OK) return s;
    if (rows > c->n_logits)
        return nuri_error(NURI_ERR_LIMIT, "%d logit rows wanted, the context keeps %d", rows,
                          c->n_logits);
    if (need > c->n_free)
        return nuri_error(NURI_ERR_LIMIT,
                          "the KV cache is full: %d more pages of %d tokens needed, "
                          "%d free of %d",
                          need, NURI_KV_PAGE, c->n_free, c->n_pages);

    rows = 0;
    for (int32_t i = 0; i < n; i++) {
        int32_t seq = b->seq[i], pos = b->pos[i];
        int32_t *pages = c->seq_pages + (size_t)seq * c->n_pages;
        if (pos < c->seq_len[seq]) seq_truncate(c, seq, pos);
        if (pos % NURI_KV_PAGE == 0)
            pages[pos / NURI_KV_PAGE] = page_take(c);
        else if (c->page_ref[pages[pos / NURI_KV_PAGE]] > 1)
            pages[pos / NURI_KV_PAGE] = page_copy(c, pages[pos / NURI_KV_PAGE]);
        c->seq_len[seq] = pos + 1;
        if (c->rs_len) c->rs_len[seq] = pos + 1;
        c->b_slot[i] = pages[pos / NURI_KV_PAGE] * NURI_KV_PAGE + pos % NURI_KV_PAGE;
        c->b_row[i] = b->logits && b->logits[i] ? rows++ : -1;
    }
    *n_rows = rows;
    return NURI_OK;
}

nuri_status nuri_ctx_decode_batch(nuri_ctx *c, const nuri_batch *b)
{
    if (b->n < 1) return nuri_error(NURI_ERR_INVALID_ARG, "nothing to decode (0 tokens)");
    for (int32_t done = 0; done < b->n;) {
        int32_t n = b->n - done < c->n_batch ? b->n - done : c->n_batch;
        nuri_batch part = {.n = n,
                           .token = b->token + done,
                           .pos = b->pos + done,
                           .seq = b->seq + done,
                           .logits = b->logits ? b->logits + done : NULL};
        if (done + n < b->n && part.logits) {
            for (int32_t i = 0; i < n; i++)
                if (part.logits[i])
                    return nuri_error(NURI_ERR_INVALID_ARG,
                                      "logits wanted for token %d of a batch larger than %d; only "
                                      "the last %d tokens may ask for logits",
                                      done + i, c->n_batch, c->n_batch);
        }
        int32_t rows = 0;
        nuri_status s = plan_batch(c, &part, n, &rows);
        if (s != NURI_OK) return s;
        if (c->m->n_stages > 1) {
            pipe_decode(c, &part, rows);
            done += n;
            continue;
        }
        c->b_token = part.token;
        c->b_pos = part.pos;
        c->b_seq = part.seq;
        job jb = {.c = c, .n = n, .n_rows = rows};
        nuri_pool_run(c->pool, forward_worker, &jb);
        done += n;
    }
    return NURI_OK;
}

nuri_status nuri_ctx_decode(nuri_ctx *c, const int32_t *tokens, int32_t n, int32_t pos0,
                            bool all_logits)
{
    if (n < 1) return nuri_error(NURI_ERR_INVALID_ARG, "nothing to decode (0 tokens)");
    if (all_logits && n > c->n_logits)
        return nuri_error(NURI_ERR_LIMIT, "%d logit rows wanted, the context keeps %d", n,
                          c->n_logits);
    if (pos0 < 0 || (int64_t)pos0 + n > c->n_ctx)
        return nuri_error(NURI_ERR_LIMIT, "positions %d..%lld exceed the context of %d tokens",
                          pos0, (long long)pos0 + n - 1, c->n_ctx);
    // chunks of n_batch through the ctx's own batch arrays: no allocation per call
    for (int32_t done = 0; done < n;) {
        int32_t k = n - done < c->n_batch ? n - done : c->n_batch;
        for (int32_t i = 0; i < k; i++) {
            c->d_pos[i] = pos0 + done + i;
            c->d_seq[i] = 0;
            c->d_want[i] = all_logits || done + i == n - 1;
        }
        nuri_batch b = {
            .n = k, .token = tokens + done, .pos = c->d_pos, .seq = c->d_seq, .logits = c->d_want};
        nuri_status s = nuri_ctx_decode_batch(c, &b);
        if (s != NURI_OK) return s;
        done += k;
    }
    return NURI_OK;
}

float nuri_ctx_router_margin(const nuri_ctx *c, int32_t i)
{
    NURI_ASSERT(i >= 0 && i < c->n_batch);
    return c->moe_margin ? c->moe_margin[i] : INFINITY;
}

const float *nuri_ctx_logits(const nuri_ctx *c, int32_t i)
{
    NURI_ASSERT(i >= 0 && i < c->n_logits);
    return c->logits + (size_t)i * c->m->hp.n_vocab;
}

/* ---- the pipeline: this context as one stage of several processes ---- */

/*
 * Stage 0 (the driver) owns the context as callers see it; every other stage runs
 * nuri_pipeline_work, a loop that mirrors it. Every command goes down the pipeline, stage s to
 * s + 1, as a header of 6 int32 (and, for a decode, its payload): the same commands in the same
 * order, so every stage's page pool holds the same sequences page for page and stage 0's
 * accounting (pages free, lengths) holds for all. A decode's chunk of n tokens is cut into
 * micro-batches (as many as there are stages, at most n): stage 0 computes the first, sends it on
 * without waiting and computes the next while stage 1 works on the first, and so on, so that all
 * stages work at once. Per micro-batch the message is (token, pos, seq, logits flag) per token,
 * then the residual rows x (n, n_embd) exactly as floats, then (experts) the router margins so
 * far; the last stage sends the logits rows and margins back to stage 0, which posted their
 * receives first. Every token's arithmetic is its own (the batch-invariance of this file), so the
 * cut changes no bit of the logits.
 */

static bool pipe_driver(const nuri_ctx *c)
{
    return c->m->n_stages > 1 && c->m->stage == 0;
}

static bool pipe_last(const nuri_model *m)
{
    return m->stage == m->n_stages - 1;
}

static void pipe_send_header(const nuri_model *m, int32_t op, int32_t a, int32_t b, int32_t n,
                             int32_t d, int32_t e)
{
    const int32_t hdr[6] = {op, a, b, n, d, e};
    nuri_dist_send(m->stage + 1, NURI_DIST_TAG_FWD, hdr, sizeof hdr);
}

static nuri_status pipe_refuse_kv(void)
{
    return nuri_error(NURI_ERR_UNSUPPORTED,
                      "KV snapshots of a pipeline (each process holds its own layers' cache) are "
                      "not supported");
}

static int g_pipe_ctxs; // contexts stage 0 has open: the other stages mirror one

static nuri_status pipe_new(nuri_ctx *c, const nuri_ctx_params *p)
{
    const nuri_hparams *hp = &c->m->hp;
    if (g_pipe_ctxs > 0)
        return nuri_error(NURI_ERR_UNSUPPORTED,
                          "a pipeline runs one context at a time; one is already open");
    // messages are counted in int bytes
    if ((int64_t)p->n_batch * hp->n_embd * 4 >= INT32_MAX ||
        (int64_t)p->n_logits * hp->n_vocab * 4 >= INT32_MAX)
        return nuri_error(NURI_ERR_LIMIT,
                          "a pipeline's batch of %d tokens (%d logit rows) is too large for one "
                          "message; use a smaller batch",
                          p->n_batch, p->n_logits);
    g_pipe_ctxs++;
    c->pipe_open = true;
    // the cache's types travel in the thread count's high bits (both types are below 256)
    pipe_send_header(c->m, PIPE_NEW, p->n_ctx, p->n_batch,
                     p->n_threads | (int32_t)(p->kv_type_k << 16 | p->kv_type_v << 24), p->n_logits,
                     p->n_seq);
    return NURI_OK;
}

/* Waits for every message of the context in flight. */
static void pipe_drain(nuri_ctx *c)
{
    for (int32_t i = 0; i < c->m->n_stages * 2 * 4; i++) nuri_dist_wait(&c->pipe_req[i]);
}

static void pipe_free(nuri_ctx *c)
{
    if (!c->pipe_req) return;
    pipe_drain(c);
    if (c->pipe_open) {
        g_pipe_ctxs--;
        pipe_send_header(c->m, PIPE_FREE, 0, 0, 0, 0, 0);
    }
}

static void pipe_op(nuri_ctx *c, int32_t op, int32_t a, int32_t b, int32_t n)
{
    if (pipe_driver(c)) pipe_send_header(c->m, op, a, b, n, 0, 0);
}

/* Stage 0: the chunk b (planned: b_slot, b_row filled), in micro-batches down the pipeline. */
static void pipe_decode(nuri_ctx *c, const nuri_batch *b, int32_t rows)
{
    const nuri_model *m = c->m;
    const int64_t n_embd = m->hp.n_embd, n_vocab = m->hp.n_vocab;
    const int32_t n = b->n, last = m->n_stages - 1;
    const int32_t n_mb = n < m->n_stages ? n : m->n_stages;
    nuri_dist_req *req = c->pipe_req; // per micro-batch: logits, margins back; meta, x, margins out
    int32_t row0 = 0;
    for (int32_t k = 0; k < n_mb; k++) { // the receives first: the last stage never waits on us
        const int32_t lo = (int32_t)((int64_t)n * k / n_mb),
                      hi = (int32_t)((int64_t)n * (k + 1) / n_mb);
        int32_t rk = 0;
        for (int32_t i = lo; i < hi; i++) rk += b->logits && b->logits[i];
        if (rk > 0)
            nuri_dist_irecv(last, NURI_DIST_TAG_BACK, c->logits + (size_t)row0 * n_vocab,
                            sizeof(float) * (size_t)rk * n_vocab, &req[k * 8]);
        if (c->moe_margin)
            nuri_dist_irecv(last, NURI_DIST_TAG_BACK, c->pipe_margin + n + lo,
                            sizeof(float) * (size_t)(hi - lo), &req[k * 8 + 1]);
        row0 += rk;
    }
    NURI_ASSERT(row0 == rows);
    int32_t *const slot0 = c->b_slot, *const row_base = c->b_row;
    for (int32_t k = 0; k < n_mb; k++) {
        const int32_t lo = (int32_t)((int64_t)n * k / n_mb),
                      hi = (int32_t)((int64_t)n * (k + 1) / n_mb);
        const int32_t T = hi - lo;
        int32_t rk = 0;
        int32_t *meta = c->pipe_meta + (size_t)lo * 4;
        for (int32_t i = 0; i < T; i++) {
            meta[i] = b->token[lo + i];
            meta[T + i] = b->pos[lo + i];
            meta[2 * T + i] = b->seq[lo + i];
            meta[3 * T + i] = b->logits && b->logits[lo + i];
            rk += meta[3 * T + i];
        }
        c->b_token = b->token + lo;
        c->b_pos = b->pos + lo;
        c->b_seq = b->seq + lo;
        c->b_slot = slot0 + lo;
        c->b_row = row_base + lo;
        job jb = {.c = c, .n = T, .n_rows = 0};
        nuri_pool_run(c->pool, forward_worker, &jb);
        float *x = c->pipe_x + (size_t)lo * n_embd;
        memcpy(x, c->x, sizeof(float) * (size_t)T * n_embd);
        pipe_send_header(m, PIPE_DECODE, T, rk, 0, 0, 0);
        nuri_dist_isend(1, NURI_DIST_TAG_FWD, meta, sizeof(int32_t) * 4 * (size_t)T,
                        &req[k * 8 + 4]);
        nuri_dist_isend(1, NURI_DIST_TAG_FWD, x, sizeof(float) * (size_t)T * n_embd,
                        &req[k * 8 + 5]);
        if (c->moe_margin) {
            memcpy(c->pipe_margin + lo, c->moe_margin, sizeof(float) * (size_t)T);
            nuri_dist_isend(1, NURI_DIST_TAG_FWD, c->pipe_margin + lo, sizeof(float) * (size_t)T,
                            &req[k * 8 + 6]);
        }
    }
    c->b_slot = slot0;
    c->b_row = row_base;
    pipe_drain(c);
    if (c->moe_margin) memcpy(c->moe_margin, c->pipe_margin + n, sizeof(float) * (size_t)n);
}

/* Stage s > 0: one micro-batch from stage s - 1 (header hdr), computed and passed on. */
static void pipe_stage_decode(nuri_ctx *c, const int32_t hdr[6])
{
    const nuri_model *m = c->m;
    const int64_t n_embd = m->hp.n_embd, n_vocab = m->hp.n_vocab;
    const int32_t T = hdr[1], from = m->stage - 1;
    NURI_ASSERT(T >= 1 && T <= c->n_batch && hdr[2] <= c->n_logits);
    const int32_t sl = c->pipe_slot;
    c->pipe_slot ^= 1;
    nuri_dist_req *req = c->pipe_req + sl * 4;
    for (int i = 0; i < 3; i++) nuri_dist_wait(&req[i]); // this half's last sends
    int32_t *meta = c->pipe_meta + (size_t)sl * c->n_batch * 4;
    float *out = c->pipe_x + (size_t)sl * c->n_batch * n_embd;
    float *margin = c->pipe_margin + (size_t)sl * c->n_batch;
    nuri_dist_recv(from, NURI_DIST_TAG_FWD, meta, sizeof(int32_t) * 4 * (size_t)T);
    nuri_dist_recv(from, NURI_DIST_TAG_FWD, c->x, sizeof(float) * (size_t)T * n_embd);
    if (c->moe_margin)
        nuri_dist_recv(from, NURI_DIST_TAG_FWD, c->moe_margin, sizeof(float) * (size_t)T);
    for (int32_t i = 0; i < T; i++) c->d_want[i] = (int8_t)meta[3 * T + i];
    const nuri_batch b = {
        .n = T, .token = meta, .pos = meta + T, .seq = meta + 2 * T, .logits = c->d_want};
    int32_t rows = 0;
    nuri_status s = plan_batch(c, &b, T, &rows);
    NURI_ASSERT(s == NURI_OK && rows == hdr[2]); // stage 0 planned the same batch on the same pool
    c->b_token = b.token;
    c->b_pos = b.pos;
    c->b_seq = b.seq;
    job jb = {.c = c, .n = T, .n_rows = rows};
    nuri_pool_run(c->pool, forward_worker, &jb);
    if (pipe_last(m)) {
        if (rows > 0)
            nuri_dist_send(0, NURI_DIST_TAG_BACK, c->logits,
                           sizeof(float) * (size_t)rows * n_vocab);
        if (c->moe_margin)
            nuri_dist_send(0, NURI_DIST_TAG_BACK, c->moe_margin, sizeof(float) * (size_t)T);
        return;
    }
    memcpy(out, c->x, sizeof(float) * (size_t)T * n_embd);
    pipe_send_header(m, PIPE_DECODE, T, rows, 0, 0, 0);
    nuri_dist_isend(m->stage + 1, NURI_DIST_TAG_FWD, meta, sizeof(int32_t) * 4 * (size_t)T,
                    &req[0]);
    nuri_dist_isend(m->stage + 1, NURI_DIST_TAG_FWD, out, sizeof(float) * (size_t)T * n_embd,
                    &req[1]);
    if (c->moe_margin) {
        memcpy(margin, c->moe_margin, sizeof(float) * (size_t)T);
        nuri_dist_isend(m->stage + 1, NURI_DIST_TAG_FWD, margin, sizeof(float) * (size_t)T,
                        &req[2]);
    }
}

nuri_status nuri_pipeline_work(const nuri_model *m)
{
    NURI_ASSERT(m->n_stages > 1 && m->stage > 0);
    nuri_ctx *c = NULL;
    for (;;) {
        int32_t hdr[6];
        nuri_dist_recv(m->stage - 1, NURI_DIST_TAG_FWD, hdr, sizeof hdr);
        const int32_t op = hdr[0];
        // everything but a decode goes on before it is applied here (a decode, once computed)
        if (op != PIPE_DECODE && !pipe_last(m))
            pipe_send_header(m, op, hdr[1], hdr[2], hdr[3], hdr[4], hdr[5]);
        if (op == PIPE_QUIT) break;
        NURI_ASSERT(op == PIPE_NEW ? c == NULL : c != NULL);
        switch (op) {
        case PIPE_NEW: {
            const nuri_ctx_params p = {.n_ctx = hdr[1],
                                       .n_batch = hdr[2],
                                       .n_threads = hdr[3] & 0xffff,
                                       .kv_type_k = (uint32_t)hdr[3] >> 16 & 0xff,
                                       .kv_type_v = (uint32_t)hdr[3] >> 24 & 0xff,
                                       .n_logits = hdr[4],
                                       .n_seq = hdr[5]};
            nuri_status s = nuri_ctx_new(m, &p, &c);
            if (s != NURI_OK) return s; // the caller ends the job: the pipeline cannot go on
            break;
        }
        case PIPE_FREE:
            nuri_ctx_free(c);
            c = NULL;
            break;
        case PIPE_DECODE:
            pipe_stage_decode(c, hdr);
            break;
        case PIPE_TRUNCATE:
            nuri_ctx_seq_truncate(c, hdr[1], hdr[2]);
            break;
        case PIPE_FORK: {
            nuri_status s = nuri_ctx_seq_fork(c, hdr[1], hdr[2], hdr[3]);
            NURI_ASSERT(s == NURI_OK); // stage 0 checked the same fork on the same pool
            break;
        }
        default:
            NURI_ASSERT(!"unknown pipeline command");
        }
    }
    nuri_ctx_free(c);
    return NURI_OK;
}

void nuri_pipeline_stop(void)
{
    if (nuri_dist_size() < 2 || nuri_dist_rank() != 0) return;
    const int32_t hdr[6] = {PIPE_QUIT, 0, 0, 0, 0, 0};
    nuri_dist_send(1, NURI_DIST_TAG_FWD, hdr, sizeof hdr);
}
