/*
 * grammar.h: constrained decoding. A GBNF grammar (llama.cpp's syntax, so the same grammar files
 * work), a matcher that follows generated text through it one byte at a time, and the per-token
 * filter that says which tokens of a vocabulary may come next.
 *
 * Three objects, three lifetimes:
 *
 *   nuri_grammar          compiled from GBNF text (or from a JSON Schema, json_schema.h); immutable
 *                         and reference-counted, so one grammar may back any number of matchers on
 *                         any threads. nuri_grammar_free drops one reference.
 *   nuri_token_trie       a byte trie over a vocabulary's token texts, built once per vocabulary
 *                         (about 0.1 s and 10 MB for 152k tokens); immutable, shared by every
 *                         matcher of every request; borrowed by them.
 *   nuri_grammar_matcher  where one generation stands in one grammar, plus its caches. One per
 *                         sequence; not thread-safe. All its memory is allocated at creation.
 *
 * GBNF, as llama.cpp reads it: rules `name ::= alternatives` (names of letters, digits and '-';
 * the start rule is `root`); alternatives separated by `|`; sequences of "literals" with the
 * escapes \t \r \n \\ \" \[ \] \- \xHH \uHHHH \UHHHHHHHH, character classes [a-z0-9_] and negated
 * ones [^"\\], `.` (any character), groups ( ), and the postfix operators * + ? {m} {m,} {m,n}
 * (on a literal they repeat the whole literal). `#` starts a comment to the end of the line. A
 * rule ends at a newline, except inside parentheses and right after `|`. Differences from
 * llama.cpp, all of them refusals rather than other meanings: token references (<[id]>, <text>,
 * !<...>) are not supported; a rule defined twice, a repetition bound above
 * NURI_GRAMMAR_MAX_REPEAT (llama.cpp quietly makes it unbounded) and ill-formed UTF-8 in the text
 * are errors. Left-recursive rules are refused, as llama.cpp does.
 *
 * Errors: nuri_grammar_parse returns NURI_ERR_FORMAT (syntax, undefined or duplicate rules, left
 * recursion) or NURI_ERR_LIMIT (a limit below), with "line L, column C: what" in the message
 * (columns count characters from 1). Nothing in the text can crash the parser or make it run long:
 * every size below is checked before it is spent.
 *
 * Matching is over Unicode code points (what the grammar's terminals are), fed as UTF-8 bytes: a
 * token may end in the middle of a character, and the matcher keeps the partial character and
 * refuses as early as possible (a lead byte whose every completion is refused is refused).
 * Ill-formed UTF-8 (overlong forms, surrogates, stray continuation bytes) is never accepted.
 *
 * The matcher is a pushdown automaton: its state is a set of stacks of grammar positions (as in
 * llama.cpp), but stacks are hash-consed and every set of stacks met is interned, so each state
 * gets a small id and the step "state, byte -> state" is computed once and then read from a table:
 * a lazily built DFA over bytes. The token filter walks the trie of token texts from the current
 * state through that table, so a prefix shared by many tokens is matched once, and a subtree whose
 * first byte is refused is skipped whole. The allowed-token masks of recent states are kept (a
 * state repeats on every token inside a free-text JSON string), so a repeated state costs a lookup.
 * When the tables fill up they are emptied and the live states are copied over (nothing is
 * allocated per token); a single step that needs more than all of the matcher's memory fails with
 * NURI_ERR_LIMIT.
 *
 * Special tokens: a token with no text (control, unknown, unused) is never allowed, except the
 * vocabulary's end-of-generation tokens (nuri_vocab_is_eog), which are allowed exactly when the
 * text so far is complete (nuri_grammar_matcher_can_end) and never advance the matcher.
 */
#ifndef NURI_GRAMMAR_GRAMMAR_H
#define NURI_GRAMMAR_GRAMMAR_H

#include "nuri.h"
#include "tokenizer/tokenizer.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NURI_GRAMMAR_MAX_TEXT (1u << 20)  // bytes of GBNF text
#define NURI_GRAMMAR_MAX_RULES (1u << 16) // rules, counting those made for groups and repetitions
#define NURI_GRAMMAR_MAX_ELEMS (1u << 20) // symbols in all rules, after repetitions are expanded
#define NURI_GRAMMAR_MAX_NESTING 64       // parentheses inside each other
#define NURI_GRAMMAR_MAX_REPEAT 10000     // m and n in {m,n}

/* ---- grammars ---- */

typedef struct nuri_grammar nuri_grammar;

/* Compiles GBNF text[0..len) (need not be NUL-terminated). On success *out holds one reference:
 * release it with nuri_grammar_free. On failure *out is NULL and the message says where and why. */
nuri_status nuri_grammar_parse(const char *text, size_t len, nuri_grammar **out);

/* Takes another reference (returns g); every reference is released with nuri_grammar_free. */
nuri_grammar *nuri_grammar_ref(nuri_grammar *g);
void nuri_grammar_free(nuri_grammar *g); // NULL is fine; frees on the last reference

/* Sizes after compilation: rules (with generated ones) and symbols. For tests and reports. */
uint32_t nuri_grammar_n_rules(const nuri_grammar *g);
uint32_t nuri_grammar_n_elems(const nuri_grammar *g);

/* ---- the vocabulary's side ---- */

typedef struct nuri_token_trie nuri_token_trie;

/* Builds the trie for a vocabulary: every token's text as nuri_token_piece_ref(v, id, false)
 * gives it (the bytes the detokenizer emits), its end-of-generation tokens as end tokens. n_vocab
 * is the length of the model's logits row (>= nuri_vocab_n_tokens(v); ids past the vocabulary are
 * never allowed). Caller frees *out with nuri_token_trie_free; it does not borrow from v. */
nuri_status nuri_token_trie_new(const nuri_vocab *v, int32_t n_vocab, nuri_token_trie **out);

/* The same from texts in memory (tests, fuzzing): token i has text texts[i] (n_vocab of them; an
 * empty text is never allowed), end tokens listed in end_tokens. Everything is copied. */
nuri_status nuri_token_trie_build(const nuri_strv *texts, int32_t n_vocab,
                                  const int32_t *end_tokens, int32_t n_end, nuri_token_trie **out);
void nuri_token_trie_free(nuri_token_trie *t); // NULL is fine

int32_t nuri_token_trie_n_vocab(const nuri_token_trie *t);
bool nuri_token_trie_is_end(const nuri_token_trie *t, int32_t token);
/* The token's text. Borrowed until nuri_token_trie_free; "" (len 0) for ids out of range. */
const char *nuri_token_trie_text(const nuri_token_trie *t, int32_t token, size_t *len);
/* Nodes in the trie (the root included), for reports. */
uint32_t nuri_token_trie_n_nodes(const nuri_token_trie *t);

/* ---- matching ---- */

typedef struct nuri_grammar_matcher nuri_grammar_matcher;

typedef struct nuri_grammar_matcher_params {
    uint32_t max_stacks; // stack nodes in the tables (0 = 32768); each costs 24 bytes
    uint32_t max_states; // DFA states kept (0 = 1024, at most 32000; at least the trie's longest
                         // token + 64); each costs 0.5 KiB
    uint32_t n_masks;    // token masks kept for repeating states (0 = 8); each n_vocab / 8 bytes
} nuri_grammar_matcher_params;

/* A matcher at the start of g. It takes its own reference to g (the caller may free g at once).
 * tokens (may be NULL for byte-only use) is borrowed until nuri_grammar_matcher_free. params may
 * be NULL (defaults). Caller frees *out with nuri_grammar_matcher_free. */
nuri_status nuri_grammar_matcher_new(nuri_grammar *g, const nuri_token_trie *tokens,
                                     const nuri_grammar_matcher_params *params,
                                     nuri_grammar_matcher **out);
void nuri_grammar_matcher_free(nuri_grammar_matcher *m); // NULL is fine

/* Back to the start of the grammar (caches are kept: they stay valid). */
void nuri_grammar_matcher_reset(nuri_grammar_matcher *m);

/* Feeds bytes[0..len), all or nothing: NURI_OK, or NURI_ERR_INVALID_ARG if the grammar refuses
 * them (the state is then unchanged), or NURI_ERR_LIMIT if one step outgrew the matcher's tables
 * (the state is then unchanged too, but further calls will likely fail the same way). */
nuri_status nuri_grammar_matcher_accept(nuri_grammar_matcher *m, const char *bytes, size_t len);

/* Whether nuri_grammar_matcher_accept would take bytes[0..len): the same results, but the state
 * never changes. */
nuri_status nuri_grammar_matcher_check(nuri_grammar_matcher *m, const char *bytes, size_t len);

/* Feeds one token of the trie: its text, or nothing for an end token (accepted only when the text
 * is complete). Same results as nuri_grammar_matcher_accept. */
nuri_status nuri_grammar_matcher_accept_token(nuri_grammar_matcher *m, int32_t token);

/* The text so far is a complete sentence of the grammar (no partial character pending). */
bool nuri_grammar_matcher_can_end(const nuri_grammar_matcher *m);

/* Some more text could follow. False once the grammar is complete and nothing more may come:
 * generation should stop there. */
bool nuri_grammar_matcher_can_continue(const nuri_grammar_matcher *m);

/* The tokens that may come next: a bit per token of the trie (bit i of word i / 32 is token i),
 * nuri_token_trie_n_vocab words' worth. Borrowed until the next call on m. NURI_ERR_LIMIT as for
 * accept; NURI_ERR_INVALID_ARG if the matcher has no trie. Allocates nothing. */
nuri_status nuri_grammar_matcher_mask(nuri_grammar_matcher *m, const uint32_t **mask);

/* Counters since creation, for benchmarks and tests. */
typedef struct nuri_grammar_matcher_stats {
    uint64_t masks;        // nuri_grammar_matcher_mask calls
    uint64_t mask_hits;    // of those, answered from the mask cache
    uint64_t nodes_walked; // trie nodes visited by the misses
    uint64_t transitions;  // DFA transitions computed (table misses)
    uint64_t flushes;      // times the tables were emptied
    uint32_t states;       // DFA states in the tables now
    uint32_t stacks;       // stack nodes in the tables now
} nuri_grammar_matcher_stats;
void nuri_grammar_matcher_get_stats(const nuri_grammar_matcher *m, nuri_grammar_matcher_stats *out);

#endif
