/*
 * logits.h: reading a row of logits: argmax and the top-k log-probabilities (log-softmax computed
 * in double over the whole vocabulary), the way `nuri eval` and the golden tests compare with
 * llama.cpp.
 */
#ifndef NURI_MODEL_LOGITS_H
#define NURI_MODEL_LOGITS_H

#include <stdint.h>

/* The id of the largest logit; ties go to the lowest id. */
int32_t nuri_logits_argmax(const float *logits, int32_t n_vocab);

/* The k most likely tokens (k <= n_vocab), sorted by logprob descending, ties by id ascending:
 * ids[i] and logprobs[i] = logit - logsumexp(logits). */
void nuri_logits_top(const float *logits, int32_t n_vocab, int32_t k, int32_t *ids,
                     double *logprobs);

#endif
