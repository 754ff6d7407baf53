/*
 * grammar_fuzz_one.h: one fuzz iteration for grammars, shared by the libFuzzer target
 * (fuzz_grammar.c) and the corpus replay test (tests/test_grammar_fuzz_replay.c).
 *
 * The input is GBNF text, optionally followed by a NUL byte and a text to match. The grammar is
 * compiled; the text is fed to a matcher with tiny tables (so they are emptied and refilled
 * often), one byte at a time, taking the token mask over a small fixed vocabulary after each
 * byte and checking it against a brute-force test of every token. An input that starts with '{'
 * is also tried as a JSON Schema. Broken promises (a mask that disagrees with brute force, a
 * matcher that accepts after refusing) abort(), so the fuzzer reports them as crashes. Returns
 * the grammar's parse status.
 */
#ifndef NURI_FUZZ_GRAMMAR_FUZZ_ONE_H
#define NURI_FUZZ_GRAMMAR_FUZZ_ONE_H

#include "grammar/grammar.h"
#include "grammar/json_schema.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A small vocabulary: single characters, multi-symbol tokens, and tokens that end or start in
 * the middle of a multi-byte character. Token 0 is an end token. */
static const char *const grammar_fuzz_tokens[] = {
    "",     "{",    "}",        "[",        "]",    "\"",           ",",        ":",        " ",
    "\n",   "{\"",  "\":",      "\",",      "true", "null",         "0",        "12",       "-",
    ".5",   "e+",   "a",        "ab",       "abc",  "x y",          "\\",       "\\n",      "\\u00",
    "\xc3", "\xa9", "\xc3\xa9", "\xe2\x80", "\x9c", "\xed\x95\x9c", "\xf0\x9f", "\x98\x80", "<",
};
#define GRAMMAR_FUZZ_N_TOKENS ((int32_t)(sizeof grammar_fuzz_tokens / sizeof *grammar_fuzz_tokens))

static nuri_token_trie *grammar_fuzz_trie(void)
{
    static nuri_token_trie *t;
    if (!t) {
        nuri_strv texts[GRAMMAR_FUZZ_N_TOKENS];
        for (int32_t i = 0; i < GRAMMAR_FUZZ_N_TOKENS; i++)
            texts[i] = (nuri_strv){grammar_fuzz_tokens[i], strlen(grammar_fuzz_tokens[i])};
        int32_t end = 0;
        if (nuri_token_trie_build(texts, GRAMMAR_FUZZ_N_TOKENS, &end, 1, &t) != NURI_OK) abort();
    }
    return t;
}

/* Feeds text to a matcher over g, checking every mask against brute force. */
static void grammar_fuzz_match(nuri_grammar *g, const uint8_t *text, size_t len)
{
    nuri_grammar_matcher_params small = {.max_stacks = 96, .max_states = 16, .n_masks = 2};
    nuri_grammar_matcher *m;
    if (nuri_grammar_matcher_new(g, grammar_fuzz_trie(), &small, &m) != NURI_OK) return;
    if (len > 256) len = 256;
    for (size_t i = 0; i <= len; i++) {
        const uint32_t *mask;
        nuri_status st = nuri_grammar_matcher_mask(m, &mask);
        if (st == NURI_ERR_LIMIT) break;
        if (st != NURI_OK) abort();
        uint32_t bits[2] = {mask[0], mask[1]}; // (borrowed only until the next call on m)
        for (int32_t id = 0; id < GRAMMAR_FUZZ_N_TOKENS; id++) {
            bool allowed = (bits[id >> 5] >> (id & 31)) & 1;
            bool want;
            if (id == 0) {
                want = nuri_grammar_matcher_can_end(m);
            } else {
                nuri_status c = nuri_grammar_matcher_check(m, grammar_fuzz_tokens[id],
                                                           strlen(grammar_fuzz_tokens[id]));
                if (c == NURI_ERR_LIMIT) goto done;
                want = c == NURI_OK;
            }
            if (allowed != want) abort();
        }
        if (i == len) break;
        st = nuri_grammar_matcher_accept(m, (const char *)text + i, 1);
        if (st == NURI_ERR_LIMIT) break;
        if (st != NURI_OK) {
            // refused: the same byte must be refused again, and nothing else changed
            if (nuri_grammar_matcher_check(m, (const char *)text + i, 1) == NURI_OK) abort();
            break;
        }
    }
done:
    nuri_grammar_matcher_free(m);
}

static nuri_status grammar_fuzz_one(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t glen = nul ? (size_t)(nul - data) : size;
    const uint8_t *text = nul ? nul + 1 : NULL;
    size_t tlen = nul ? size - glen - 1 : 0;
    if (glen > 0 && data[0] == '{') { // also as a JSON Schema
        json_t *schema = json_loadb((const char *)data, glen, 0, NULL);
        if (schema) {
            nuri_grammar *sg;
            char path[64];
            if (nuri_json_schema_grammar(schema, &sg, path, sizeof path) == NURI_OK) {
                grammar_fuzz_match(sg, text ? text : (const uint8_t *)"", tlen);
                nuri_grammar_free(sg);
            }
            json_decref(schema);
        }
    }
    nuri_grammar *g;
    nuri_status st = nuri_grammar_parse((const char *)data, glen, &g);
    if (st != NURI_OK) return st;
    grammar_fuzz_match(g, text ? text : (const uint8_t *)"", tlen);
    nuri_grammar_free(g);
    return NURI_OK;
}

#endif
