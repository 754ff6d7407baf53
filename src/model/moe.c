/*
 * moe.c: see moe.h. Plain C on purpose: a router handles n_expert floats per token and layer,
 * next to matrix products of millions of weights; what matters here is the exact rounding.
 */
#include "model/moe.h"
#include "base/status.h"

#include <math.h>

/* The chosen weights renormalised and scaled as llama.cpp does after any gating. */
static void norm_scale(float *weights, int32_t n_used, bool norm, float scale)
{
    if (norm) {
        double s = 0.0;
        for (int32_t j = 0; j < n_used; j++) s += (double)weights[j];
        float sf = (float)s;
        if (!(sf >= 6.103515625e-5f)) sf = 6.103515625e-5f; // the smallest normal F16, as llama.cpp
        for (int32_t j = 0; j < n_used; j++) weights[j] = weights[j] / sf;
    }
    if (scale != 0.0f && scale != 1.0f)
        for (int32_t j = 0; j < n_used; j++) weights[j] *= scale;
}

void nuri_moe_route(const float *logits, int32_t n_expert, int32_t n_used, bool norm, float scale,
                    float *probs, int32_t *ids, float *weights, float *margin)
{
    NURI_ASSERT(n_used >= 1 && n_used <= n_expert);
    float max = -INFINITY;
    for (int32_t e = 0; e < n_expert; e++) max = logits[e] > max ? logits[e] : max;
    double sum = 0.0;
    for (int32_t e = 0; e < n_expert; e++) {
        probs[e] = expf(logits[e] - max);
        sum += (double)probs[e];
    }
    const float inv = (float)(1.0 / sum);
    for (int32_t e = 0; e < n_expert; e++) probs[e] *= inv;

    // top n_used by selection: n_used is small (2 to 8 in real models). A chosen expert's
    // probability is replaced by -1, below every probability; NaN never wins a comparison, so a
    // row of NaN logits still yields n_used distinct ids (the lowest not yet taken).
    for (int32_t j = 0; j < n_used; j++) {
        int32_t best = -1;
        for (int32_t e = 0; e < n_expert; e++)
            if (probs[e] != -1.0f && (best < 0 || probs[e] > probs[best])) best = e;
        ids[j] = best;
        weights[j] = probs[best];
        probs[best] = -1.0f;
    }
    if (margin) {
        float next = -INFINITY; // the best expert not chosen (probs of chosen ones are -1 now)
        for (int32_t e = 0; e < n_expert; e++)
            if (probs[e] != -1.0f && logits[e] > next) next = logits[e];
        *margin = n_used == n_expert ? INFINITY : logits[ids[n_used - 1]] - next;
    }
    norm_scale(weights, n_used, norm, scale);
}

/* The sigmoid router's choice from the selection scores in probs (p + bias, or -INFINITY for an
 * expert that may not be chosen): see nuri_moe_route_sigmoid. */
static void sigmoid_choose(const float *logits, int32_t n_expert, int32_t n_used, bool norm,
                           float scale, float *probs, int32_t *ids, float *weights, float *margin)
{
    // a chosen one becomes -INFINITY (NaN scores never win a comparison, so a row of NaN logits
    // still yields n_used distinct ids)
    for (int32_t j = 0; j < n_used; j++) {
        int32_t best = -1;
        for (int32_t e = 0; e < n_expert; e++)
            if (probs[e] != -INFINITY && (best < 0 || probs[e] > probs[best])) best = e;
        NURI_ASSERT(best >= 0); // callers leave at least n_used experts allowed
        ids[j] = best;
        weights[j] = 1.f / (1.f + expf(-logits[best]));
        if (margin && j == n_used - 1) *margin = probs[best];
        probs[best] = -INFINITY;
    }
    if (margin) {
        float next = -INFINITY;
        for (int32_t e = 0; e < n_expert; e++)
            if (probs[e] != -INFINITY && probs[e] > next) next = probs[e];
        *margin = n_used == n_expert ? INFINITY : *margin - next;
    }
    norm_scale(weights, n_used, norm, scale);
}

static void sigmoid_scores(const float *logits, const float *bias, int32_t n_expert, float *probs)
{
    for (int32_t e = 0; e < n_expert; e++) {
        const float p = 1.f / (1.f + expf(-logits[e]));
        probs[e] = bias ? p + bias[e] : p;
    }
}

void nuri_moe_route_sigmoid(const float *logits, const float *bias, int32_t n_expert,
                            int32_t n_used, bool norm, float scale, float *probs, int32_t *ids,
                            float *weights, float *margin)
{
    NURI_ASSERT(n_used >= 1 && n_used <= n_expert);
    sigmoid_scores(logits, bias, n_expert, probs);
    sigmoid_choose(logits, n_expert, n_used, norm, scale, probs, ids, weights, margin);
}

void nuri_moe_route_sigmoid_grouped(const float *logits, const float *bias, int32_t n_expert,
                                    int32_t n_used, int32_t n_groups, int32_t n_groups_used,
                                    bool norm, float scale, float *probs, int32_t *ids,
                                    float *weights, float *margin)
{
    const int32_t per = n_expert / n_groups;
    NURI_ASSERT(n_groups > 1 && n_expert % n_groups == 0 && per >= 2);
    NURI_ASSERT(n_groups_used >= 1 && n_groups_used < n_groups && n_used <= n_groups_used * per);
    NURI_ASSERT(n_groups <= NURI_MOE_MAX_GROUPS);
    sigmoid_scores(logits, bias, n_expert, probs);
    // each group's score: its two best scores added (the larger first); NaN never wins
    float gs[NURI_MOE_MAX_GROUPS];
    bool taken[NURI_MOE_MAX_GROUPS] = {false};
    for (int32_t g = 0; g < n_groups; g++) {
        const float *p = probs + g * per;
        int32_t a = 0;
        for (int32_t i = 1; i < per; i++)
            if (p[i] > p[a]) a = i;
        int32_t b = a == 0 ? 1 : 0;
        for (int32_t i = 0; i < per; i++)
            if (i != a && p[i] > p[b]) b = i;
        gs[g] = p[a] + p[b];
    }
    // the n_groups_used best groups (equal: the lower group first)
    float last = 0.0f;
    for (int32_t j = 0; j < n_groups_used; j++) {
        int32_t best = -1;
        for (int32_t g = 0; g < n_groups; g++)
            if (!taken[g] && (best < 0 || gs[g] > gs[best])) best = g;
        taken[best] = true;
        last = gs[best];
    }
    float next = -INFINITY; // the best group left out
    for (int32_t g = 0; g < n_groups; g++) {
        if (taken[g]) continue;
        if (gs[g] > next) next = gs[g];
        for (int32_t i = 0; i < per; i++) probs[g * per + i] = -INFINITY;
    }
    sigmoid_choose(logits, n_expert, n_used, norm, scale, probs, ids, weights, margin);
    if (margin && last - next < *margin) *margin = last - next;
}

void nuri_moe_route_topk_softmax(const float *logits, int32_t n_expert, int32_t n_used,
                                 int32_t *ids, float *weights, float *margin)
{
    NURI_ASSERT(n_used >= 1 && n_used <= n_expert);
    // top n_used by selection over the logits; taken[] is implied by scanning the ids so far
    // (n_used is 4 in gpt-oss). NaN never wins a comparison, as in nuri_moe_route.
    for (int32_t j = 0; j < n_used; j++) {
        int32_t best = -1;
        for (int32_t e = 0; e < n_expert; e++) {
            bool taken = false;
            for (int32_t i = 0; i < j && !taken; i++) taken = ids[i] == e;
            if (!taken && (best < 0 || logits[e] > logits[best])) best = e;
        }
        ids[j] = best;
    }
    if (margin) {
        float next = -INFINITY;
        for (int32_t e = 0; e < n_expert; e++) {
            bool taken = false;
            for (int32_t i = 0; i < n_used && !taken; i++) taken = ids[i] == e;
            if (!taken && logits[e] > next) next = logits[e];
        }
        *margin = n_used == n_expert ? INFINITY : logits[ids[n_used - 1]] - next;
    }
    float max = -INFINITY;
    for (int32_t j = 0; j < n_used; j++) max = logits[ids[j]] > max ? logits[ids[j]] : max;
    double sum = 0.0;
    for (int32_t j = 0; j < n_used; j++) {
        weights[j] = expf(logits[ids[j]] - max);
        sum += (double)weights[j];
    }
    const float inv = (float)(1.0 / sum);
    for (int32_t j = 0; j < n_used; j++) weights[j] *= inv;
}

void nuri_moe_group(const int32_t *ids, int32_t n_tokens, int32_t n_used, int32_t n_expert,
                    int32_t *start, int32_t *token_of, int32_t *row_of)
{
    // a counting sort: counts, then prefix sums, then each pair in token order
    for (int32_t e = 0; e <= n_expert; e++) start[e] = 0;
    const int32_t n = n_tokens * n_used;
    for (int32_t i = 0; i < n; i++) {
        NURI_ASSERT(ids[i] >= 0 && ids[i] < n_expert);
        start[ids[i] + 1]++;
    }
    for (int32_t e = 0; e < n_expert; e++) start[e + 1] += start[e];
    // start[e] is used as the fill cursor of expert e, then restored
    for (int32_t i = 0; i < n; i++) {
        const int32_t r = start[ids[i]]++;
        token_of[r] = i / n_used;
        row_of[i] = r;
    }
    for (int32_t e = n_expert; e > 0; e--) start[e] = start[e - 1];
    start[0] = 0;
}
