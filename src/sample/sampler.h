/*
 * sampler.h: the sampler chain: one row of logits (n_vocab floats) in, one token id out.
 *
 * Pure C over a logits array; it never sees the model. A sampler is created once per request from
 * a params struct (validated; every scratch buffer is sized to n_vocab there), and then
 * nuri_sampler_sample() runs per token without allocating.
 *
 * The chain, in this order (each stage is skipped when its parameter is "off"):
 *
 *   1. sanitize     copy the logits: NaN -> -inf (never chosen), +inf -> FLT_MAX (so several +inf
 *                   logits share the mass equally instead of producing NaN).
 *   1b. grammar     with params.grammar: logit = -inf for every token the grammar does not allow
 *                   next (grammar/grammar.h), so every later stage sees only allowed tokens.
 *   2. logit bias   logit += bias; a bias of -inf or <= -100 bans the token (logit = -inf).
 *   3. penalties    over the distinct tokens among the last penalty_last_n accepted tokens:
 *                   repetition (CTRL / llama.cpp): logit > 0 ? logit / r : logit * r, then
 *                   frequency / presence (OpenAI): logit -= count * freq + (count > 0) * presence.
 *   4. greedy       temperature == 0: argmax, ties to the lowest token id (as llama.cpp's argmax
 *                   over the vocabulary). Stops here.
 *   5. top_k        keep the k highest logits (ties to the lowest id, so the set is well defined).
 *   6. temperature  p_i = exp((l_i - l_max) / T) / Z over the kept tokens (softmax).
 *   7. top_p        keep the smallest highest-probability prefix whose mass reaches top_p.
 *   8. min_p        keep tokens with p_i >= min_p * p_max.
 *   9. draw         renormalize, draw one token with the sampler's RNG.
 *
 * Why this order (the one of HF transformers and vLLM rather than llama.cpp's default, which
 * applies temperature last): OpenAI-style clients set temperature and top_p together and expect
 * top_p to cut the distribution they asked for, i.e. the tempered one; and with min_p after the
 * temperature, min_p's threshold is relative to the distribution the token is really drawn from.
 * top_k does not depend on the temperature, so its place among 5-6 does not matter. top_p and min_p
 * both keep a prefix of the tokens sorted by probability, and min_p's threshold is relative to
 * p_max (unchanged by top_p), so 7 and 8 keep the shorter of the two prefixes.
 *
 * Float rounding at the boundaries: top_p counts a prefix as "reaching" p when its mass is
 * >= p - 1e-6, and min_p keeps p_i / p_max >= min_p * (1 - 1e-5), so that hand-made boundary
 * cases (a set of mass exactly p, a token exactly at min_p * p_max) are kept.
 *
 * RNG: xoshiro256** (Blackman & Vigna), its 256-bit state filled from the 64-bit seed by
 * splitmix64; a draw uses the top 53 bits of one output as a double in [0, 1). Same seed, same
 * logits and same accepted history -> the same tokens, on every machine. Only stages 5-9 consume
 * randomness (one output per sampled token); greedy sampling consumes none.
 *
 * History: nuri_sampler_accept() appends a token to the penalty window (and advances the grammar);
 * nuri_sampler_sample() does not (the caller samples, then accepts, as llama.cpp's common sampler
 * does). Whether prompt tokens count toward penalties is the caller's choice: pass them to
 * nuri_sampler_accept_history() if they should (it leaves the grammar alone).
 *
 * Logprobs: reported from the *raw* logits (after stage 1 only, before grammar, bias, penalties
 * and temperature), as OpenAI's API reports them: the model's log-softmax, not the sampler's. The
 * chosen token's logprob plus the top n_top_logprobs alternatives, sorted descending, ties by id.
 * (So under a grammar the top alternatives may include tokens the grammar did not allow.)
 *
 * Grammar: the sampler makes its own matcher (taking a reference to params.grammar, so the caller
 * may free the grammar right after nuri_sampler_new) over params.grammar_tokens (borrowed until
 * nuri_sampler_free; built once per vocabulary with nuri_token_trie_new for the same n_vocab).
 * nuri_sampler_accept advances it by the token's text; an end-of-generation token is allowed only
 * where the grammar may end, and then ends generation (NURI_FINISH_STOP, not part of the output);
 * a token after which the grammar can take nothing more ends it too (NURI_FINISH_GRAMMAR, the token
 * is the last of the output). The grammar only masks logits, so it keeps batch invariance: the
 * logits are the model's whatever the batch. Sampling stays allocation-free (the matcher's tables
 * are sized at creation; see grammar.h for the one per-step limit).
 *
 * A sampler is not thread-safe; use one per sequence.
 */
#ifndef NURI_SAMPLE_SAMPLER_H
#define NURI_SAMPLE_SAMPLER_H

#include "grammar/grammar.h"
#include "nuri.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NURI_MAX_TOP_LOGPROBS 20          // OpenAI's limit on top_logprobs
#define NURI_SAMPLER_MAX_LAST_N (1 << 20) // tokens; the penalty window's upper bound

typedef struct nuri_logit_bias {
    int32_t token;
    float bias; // added to the logit; -inf or <= -100 bans the token
} nuri_logit_bias;

typedef struct nuri_sampler_params {
    float temperature;        // >= 0; 0 = greedy
    int32_t top_k;            // >= 0; 0 = off
    float top_p;              // (0, 1]; 1 = off
    float min_p;              // [0, 1]; 0 = off
    float repetition_penalty; // > 0; 1 = off
    float frequency_penalty;  // finite; 0 = off
    float presence_penalty;   // finite; 0 = off
    int32_t penalty_last_n;   // tokens of history the penalties look at, [0, MAX_LAST_N]; 0 = off
    const nuri_logit_bias *logit_bias; // n_logit_bias entries, copied at creation; may repeat ids
    int32_t n_logit_bias;
    const int32_t *stop_tokens; // n_stop_tokens ids, copied at creation
    int32_t n_stop_tokens;
    uint64_t seed;
    int32_t max_tokens;     // >= 0; tokens nuri_sampler_sample() may produce; 0 = no limit
    int32_t n_top_logprobs; // [0, NURI_MAX_TOP_LOGPROBS] alternatives reported per token
    // constrained decoding (see "Grammar" above); both NULL = none
    nuri_grammar *grammar;                 // the sampler takes its own reference
    const nuri_token_trie *grammar_tokens; // borrowed until nuri_sampler_free; same n_vocab
} nuri_sampler_params;

typedef struct nuri_token_logprob {
    int32_t token;
    float logprob; // natural log; -inf for a token with a -inf or NaN logit
} nuri_token_logprob;

typedef struct nuri_token_logprobs {
    nuri_token_logprob chosen;
    int32_t n_top;                                 // min(n_top_logprobs, n_vocab)
    nuri_token_logprob top[NURI_MAX_TOP_LOGPROBS]; // descending logprob, ties by lower id
} nuri_token_logprobs;

typedef enum nuri_finish_reason {
    NURI_FINISH_NONE = 0, // go on
    NURI_FINISH_STOP,     // the token is one of the stop tokens
    NURI_FINISH_LENGTH,   // max_tokens tokens have been sampled
    NURI_FINISH_GRAMMAR,  // the grammar is complete: nothing more may follow this token, which is
                          // part of the output (OpenAI's finish_reason "stop")
} nuri_finish_reason;

typedef struct nuri_sampler nuri_sampler;

/* Neutral parameters: temperature 1, every filter and penalty off, penalty_last_n 64, seed 0,
 * no bias, no stop tokens, no limit, no logprobs. Callers choose their own defaults on top. */
nuri_sampler_params nuri_sampler_params_default(void);

/* Validates p (NURI_ERR_INVALID_ARG naming the parameter) and creates a sampler for a vocabulary
 * of n_vocab tokens. p's arrays are copied. Caller frees *out with nuri_sampler_free. */
nuri_status nuri_sampler_new(const nuri_sampler_params *p, int32_t n_vocab, nuri_sampler **out);
void nuri_sampler_free(nuri_sampler *s); // NULL is fine

/* Forgets the history and the count of sampled tokens and reseeds the RNG from params.seed: the
 * sampler behaves as if just created. */
void nuri_sampler_reset(nuri_sampler *s);

/* Takes token as generated: appends it to the penalty history (the oldest falls out past
 * penalty_last_n) and advances the grammar, if any. NURI_ERR_INVALID_ARG if the token is outside
 * the vocabulary or the grammar refuses it (nothing changes then); NURI_ERR_LIMIT if the grammar's
 * step does not fit in its tables. */
nuri_status nuri_sampler_accept(nuri_sampler *s, int32_t token);

/* Appends token to the penalty history only: for prompt and earlier-turn tokens. */
nuri_status nuri_sampler_accept_history(nuri_sampler *s, int32_t token);

/* Runs the chain over logits (n_vocab floats, not modified) and writes the token to *token_out.
 * If lp_out is not NULL, also fills it (see "Logprobs" above). Fails with NURI_ERR_INVALID_ARG
 * when no token can be drawn (every logit -inf or NaN after grammar, bias and penalties), with
 * NURI_ERR_LIMIT when the grammar's step does not fit in its tables. Does not allocate. Counts
 * toward max_tokens. */
nuri_status nuri_sampler_sample(nuri_sampler *s, const float *logits, int32_t *token_out,
                                nuri_token_logprobs *lp_out);

/* The distribution stage 9 would draw from: after stages 1-8, the kept tokens sorted by
 * probability descending (ties by lower id) with their renormalized probabilities. ids and probs
 * hold n_vocab entries each; *n_out is the number kept. Greedy gives one token of probability 1.
 * Draws nothing, counts nothing: for tests, debugging and "post-sampling probabilities" reports. */
nuri_status nuri_sampler_distribution(nuri_sampler *s, const float *logits, int32_t *ids,
                                      float *probs, int32_t *n_out);

/* With a grammar: whether the text accepted so far is complete (the grammar may end there). True
 * without a grammar. */
bool nuri_sampler_grammar_can_end(const nuri_sampler *s);

/* Whether generation ends after token was sampled (and accepted): a stop token, or an
 * end-of-generation token the grammar allowed (STOP); the grammar complete (GRAMMAR); or
 * max_tokens reached (LENGTH), in that order. */
nuri_finish_reason nuri_sampler_finish_reason(const nuri_sampler *s, int32_t token);

/* ---- speculation (src/spec/speculate.h drives these) ----
 *
 * A drafted token x is checked against the target's distribution p: the distribution stage 9
 * draws from (stages 1-8, with this sampler's history: penalties and grammar included).
 *
 * - A deterministic draft (prompt lookup, a greedy draft model; q = NULL): the token is sampled
 *   from p exactly as nuri_sampler_sample does, with the same RNG output, and x is accepted when
 *   the two are equal. The token stream is the one plain sampling gives with the same seed.
 * - A draft drawn from q (q: n_vocab probabilities, the distribution x was drawn from): x is
 *   accepted with probability min(1, p(x) / q(x)); on rejection the token is drawn from
 *   max(0, p - q) renormalized (from p if rounding leaves nothing there). The token is then
 *   distributed as p whatever q is (Leviathan et al. 2023, Chen et al. 2023), but the RNG outputs
 *   used differ from plain sampling, so the same seed gives another (equally likely) stream.
 *
 * Neither accepts the token: the caller accepts what comes out, as after nuri_sampler_sample.
 * Both count toward max_tokens. Neither allocates. */

/* The parameters the sampler runs with (borrowed until nuri_sampler_free). */
const nuri_sampler_params *nuri_sampler_get_params(const nuri_sampler *s);

/* Draws a draft token from logits with this sampler's chain (a draft model's sampler) and, when q
 * is not NULL, writes the distribution it was drawn from to q[0..n_vocab). Greedy at temperature
 * 0 (q one-hot). Does not count toward max_tokens. */
nuri_status nuri_sampler_draft(nuri_sampler *s, const float *logits, float *q, int32_t *token_out);

/* Verifies draft against logits (see above): *token_out is the token generated here, *accepted
 * whether it is the draft. */
nuri_status nuri_sampler_verify(nuri_sampler *s, const float *logits, int32_t draft, const float *q,
                                int32_t *token_out, bool *accepted);

/* ---- stop strings (streaming) ----
 *
 * Given all the text generated so far (bytes, text[0..len)) of which n_emitted bytes have already
 * been sent, says how much may be sent now without ever sending part of a stop string:
 *   - a stop string occurs at or after n_emitted: hit = 1, stop_index = which one (the earliest
 *     occurrence; on a tie, the first in the list), n_safe = where it starts (cut the text there;
 *     the stop string itself is not part of the output);
 *   - otherwise: hit = 0, n_safe = len minus the longest suffix that is a proper prefix of some
 *     stop string (held back until the next bytes decide), also stepping back over an incomplete
 *     UTF-8 character at the end, so emitted text never ends inside a character.
 * n_safe >= n_emitted always (emitted bytes are never taken back). Empty stop strings are ignored.
 * Searching from n_emitted keeps a whole generation linear: every occurrence of a stop string
 * starts at or after the bytes held back earlier, so nothing before n_emitted needs a second look.
 */
typedef struct nuri_stop_result {
    size_t n_safe;      // bytes from the start of text that may be emitted (a total, not a delta)
    int hit;            // 1 if a stop string was found: generation ends, output is text[0..n_safe)
    int32_t stop_index; // index into stops of the string found, -1 if none
} nuri_stop_result;

void nuri_stop_strings_check(const char *text, size_t len, size_t n_emitted,
                             const char *const *stops, size_t n_stops, nuri_stop_result *out);

#endif
