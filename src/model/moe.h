/*
 * moe.h: the two pure steps of a mixture-of-experts feed-forward: the router (which experts a
 * token goes to, with what weights) and the grouping of a batch's (token, expert) pairs by expert,
 * so that each expert's weights are read once per batch. forward.c runs the experts themselves.
 *
 * The router rounds as llama.cpp's CPU path does for softmax gating (qwen3moe, Mixtral), because
 * a different choice of expert is a large error, not a small one:
 *   p = softmax(logits) in float: max subtracted, expf, the exponentials summed in double, each
 *       multiplied by the float of 1 / sum;
 *   the n_used largest p, in descending order (equal p: the lower expert id first);
 *   norm: w_j = p_j / max(sum of the chosen p in double then rounded to float, 2^-14);
 *   scale (when not 0 or 1): w_j *= scale.
 * The expert outputs are then summed in the order of the choice: ((e_0 w_0 + e_1 w_1) + ...).
 * One known difference: llama.cpp's AVX2 / AVX-512 builds take the exponentials of each full
 * vector of 8 / 16 logits with a vectorised exp (within about an ulp of expf) and add each
 * vector's sum as a float; nuri uses expf and adds each one in double. With 8 experts on AVX-512
 * the two agree exactly; otherwise a probability may differ in its last bit, which changes a
 * choice only between logits an ulp apart, and a weight by an ulp or two.
 */
#ifndef NURI_MODEL_MOE_H
#define NURI_MODEL_MOE_H

#include <stdbool.h>
#include <stdint.h>

/* Routes one token: logits (n_expert) -> ids (n_used) expert ids in the order chosen, and their
 * weights (n_used). probs (n_expert) is scratch. 1 <= n_used <= n_expert. If margin is not NULL,
 * *margin is how far the choice was from changing: the logit of the last expert chosen minus the
 * largest logit not chosen (INFINITY when every expert is used). A rounding difference smaller
 * than it cannot change the choice. */
void nuri_moe_route(const float *logits, int32_t n_expert, int32_t n_used, bool norm, float scale,
                    float *probs, int32_t *ids, float *weights, float *margin);

/* Routes one token with sigmoid gating (exaone-moe; DeepSeek-V3 style): p_e = 1 / (1 + expf(-l_e))
 * in float; the choice is the n_used largest p_e + bias_e (bias (n_expert) F32, or NULL for none;
 * the sum rounded to float; equal: the lower id first), the weights the chosen p_e without the
 * bias, then norm and scale as in nuri_moe_route. probs (n_expert) is scratch. *margin: the
 * biased score of the last expert chosen minus the best one not chosen, in the scores' units. */
void nuri_moe_route_sigmoid(const float *logits, const float *bias, int32_t n_expert,
                            int32_t n_used, bool norm, float scale, float *probs, int32_t *ids,
                            float *weights, float *margin);

/* The same with DeepSeek-V3's group limit, as llama.cpp computes it: the n_expert experts form
 * n_groups groups of consecutive ids; each group's score is the sum of its two best selection
 * scores (p + bias); only the experts of the n_groups_used best groups (equal: the lower group
 * first) may be chosen, the n_used best of them as above. *margin: the smaller of the experts'
 * margin within the allowed groups and the groups' (the last group chosen minus the best left
 * out). 1 < n_groups <= NURI_MOE_MAX_GROUPS, n_expert a multiple with at least 2 per group,
 * n_groups_used < n_groups, n_used <= n_groups_used * (n_expert / n_groups). */
#define NURI_MOE_MAX_GROUPS 64
void nuri_moe_route_sigmoid_grouped(const float *logits, const float *bias, int32_t n_expert,
                                    int32_t n_used, int32_t n_groups, int32_t n_groups_used,
                                    bool norm, float scale, float *probs, int32_t *ids,
                                    float *weights, float *margin);

/* Routes one token the gpt-oss way (llama.cpp's SOFTMAX_WEIGHT gating): the n_used largest
 * logits (already including the router's bias), in descending order (equal logits: the lower
 * expert id first), then their weights a softmax over those n_used logits alone, rounded as
 * ggml's softmax rounds a short row: max subtracted, expf, the exponentials summed in double,
 * each multiplied by the float of 1 / sum. margin as in nuri_moe_route. */
void nuri_moe_route_topk_softmax(const float *logits, int32_t n_expert, int32_t n_used,
                                 int32_t *ids, float *weights, float *margin);

/* Groups a batch's choices by expert. ids (n_tokens, n_used) are the router's choices. After it,
 * expert e's pairs are rows [start[e], start[e + 1]) of the grouped layout, in token order;
 * token_of[r] is the token of grouped row r and row_of[t * n_used + j] the grouped row of token
 * t's j-th choice. start has n_expert + 1 entries; token_of and row_of n_tokens * n_used. */
void nuri_moe_group(const int32_t *ids, int32_t n_tokens, int32_t n_used, int32_t n_expert,
                    int32_t *start, int32_t *token_of, int32_t *row_of);

#endif
