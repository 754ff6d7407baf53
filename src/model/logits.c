/*
 * logits.c: see logits.h. Top-k keeps a small sorted array (k is tens), one pass over the row.
 */
#include "model/logits.h"

#include <math.h>

int32_t nuri_logits_argmax(const float *logits, int32_t n_vocab)
{
    int32_t best = 0;
    for (int32_t i = 1; i < n_vocab; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
}

void nuri_logits_top(const float *logits, int32_t n_vocab, int32_t k, int32_t *ids,
                     double *logprobs)
{
    double max = -INFINITY;
    for (int32_t i = 0; i < n_vocab; i++)
        if (logits[i] > max) max = logits[i];
    double sum = 0.0;
    for (int32_t i = 0; i < n_vocab; i++) sum += exp((double)logits[i] - max);
    const double lse = max + log(sum);

    int32_t n = 0; // ids[0..n) sorted by logit descending, ties by id ascending
    for (int32_t i = 0; i < n_vocab; i++) {
        float v = logits[i];
        if (n == k && !(v > logits[ids[n - 1]])) continue; // equal loses to the lower id
        int32_t j = n < k ? n++ : n - 1;
        while (j > 0 && v > logits[ids[j - 1]]) {
            ids[j] = ids[j - 1];
            j--;
        }
        ids[j] = i;
    }
    for (int32_t i = 0; i < n; i++) logprobs[i] = (double)logits[ids[i]] - lse;
}
