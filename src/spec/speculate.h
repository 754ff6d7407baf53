/*
 * speculate.h: speculative decoding for one sequence: drafting (prompt lookup, a draft model) and
 * verification of the draft in one forward pass of the target model.
 *
 * A speculator sits between a caller's token loop and a context: the caller decodes the prompt,
 * calls nuri_spec_begin with the tokens its sequence holds, then asks nuri_spec_next for one
 * token at a time, exactly as it would sample them (the token comes back already accepted by the
 * sampler). Behind that, a step drafts up to draft_max tokens after the sequence, decodes the
 * last token and the draft in one batch, and answers from the rows of logits that batch left
 * until a draft token is rejected; the KV past the rejection is dropped (the target's sequence
 * is truncated; the draft model's cache is truncated to the common prefix at its next draft).
 *
 * The rule (sampler.h, "speculation"): a deterministic draft (prompt lookup; a draft model at
 * temperature 0 or with draft_greedy) is verified by sampling from the target's distribution p as
 * without speculation and comparing: the output is token for token the one without speculation,
 * with the same seed. A draft model sampling at temperature > 0 draws x from its own q and the
 * target accepts with probability min(1, p/q), resampling from max(0, p - q) on rejection: the
 * output is distributed as without speculation, but the same seed gives a different stream.
 *
 * p is the target sampler's full chain (penalties, grammar, temperature, top-k, top-p, min-p, with
 * the history up to that token); q is the draft sampler's chain: the same temperature, top-k,
 * top-p and min-p over the draft model's logits, without penalties or grammar (any q keeps the
 * output exact; the closer q is to p, the more is accepted).
 *
 * Not thread-safe: one speculator per sequence, used by the thread that owns the context.
 */
#ifndef NURI_SPEC_SPECULATE_H
#define NURI_SPEC_SPECULATE_H

#include "model/model.h"
#include "sample/sampler.h"

#include <stdbool.h>
#include <stdint.h>

#define NURI_SPEC_MAX_DRAFT 32 // tokens one draft may hold

/* Prompt-lookup drafting: the last n tokens of hist (n = 3, 2, 1) found earlier in hist (the latest
 * occurrence), and up to max of the tokens that followed it, into draft. Returns the count. */
int32_t nuri_spec_lookup(const int32_t *hist, int32_t len, int32_t max, int32_t *draft);

/* Whether draft can draft for target: the same token count and, token by token, the same text,
 * the same type and the same end-of-generation role, and the same BOS and EOS. Otherwise
 * NURI_ERR_INVALID_ARG naming the first difference. */
nuri_status nuri_spec_vocab_check(const nuri_model *target, const nuri_model *draft);

typedef struct nuri_spec_params {
    const nuri_model *target; // the model ctx runs (borrowed)
    int32_t draft_max;        // tokens per draft, 1..NURI_SPEC_MAX_DRAFT
    int32_t draft_min;        // a shorter draft is not checked (0: any)
    bool lookup;              // draft by prompt lookup (tried first when there is a draft model)
    const nuri_model *draft;  // a draft model (borrowed), or NULL
    int32_t draft_threads;    // the draft model's forward threads (0: 1)
    int32_t draft_n_ctx;      // the draft model's KV tokens (0: the target context's)
    bool draft_greedy;        // the draft model drafts its argmax even at temperature > 0
    float draft_p_min; // a draft stops at a token its model gives less (softmax, T 1; 0: never)
} nuri_spec_params;

typedef struct nuri_spec_counts {
    int64_t passes;   // forward passes of the target model
    int64_t drafted;  // tokens drafted and checked
    int64_t accepted; // of them accepted
} nuri_spec_counts;

typedef struct nuri_spec nuri_spec;

/* A speculator for sequence seq of ctx (borrowed; its n_logits must be >= draft_max + 1), sampling
 * with smp (borrowed). Makes the draft model's own context and sampler (from smp's parameters).
 * Caller frees with nuri_spec_free, before ctx, smp and the models. */
nuri_status nuri_spec_new(const nuri_spec_params *p, nuri_ctx *ctx, int32_t seq, nuri_sampler *smp,
                          nuri_spec **out);
void nuri_spec_free(nuri_spec *s); // NULL is fine

/* The sequence holds tokens[0..n) (n >= 1) and the context's last decode left the logits after
 * tokens[n - 1] in row 0. Counts are kept across begins. */
nuri_status nuri_spec_begin(nuri_spec *s, const int32_t *tokens, int32_t n);

/* The next token (sampled and accepted by smp). remaining: how many tokens the caller may still
 * take, this one included (>= 1); drafts never reach past it or past the context. */
nuri_status nuri_spec_next(nuri_spec *s, int32_t remaining, int32_t *token);

/* Ends a run of nuri_spec_next: drops the KV of draft tokens not taken. Returns how many tokens the
 * sequence now holds: the tokens begun with and those generated, less the last one when it was not
 * decoded yet. *tokens (may be NULL) gets them, borrowed until the next call on s. */
int32_t nuri_spec_end(nuri_spec *s, const int32_t **tokens);

nuri_spec_counts nuri_spec_get_counts(const nuri_spec *s);

#endif
