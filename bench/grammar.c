/*
 * grammar.c: what constrained decoding costs per token. Built and run by bench/grammar.sh.
 *
 *   grammar_bench VOCAB.gguf GRAMMAR.gbnf [N_VOCAB]
 *
 * With a vocabulary (the trie over all its token texts) and a grammar (grammars/json.gbnf):
 *   - setup: building the trie, making a matcher;
 *   - per state: the token mask computed from scratch ("cold": the trie walk, as on the first
 *     visit of a state) and read from the matcher's cache ("warm": a state seen before, as on
 *     every token inside a free-text string), with the number of tokens allowed;
 *   - the sampler's whole step (mask, applying it to the logits, then top-k 40 / temperature 0.8)
 *     against the same step without a grammar;
 *   - a real document: a JSON answer tokenized by the vocabulary and fed token by token, the
 *     mask taken before each token, from a fresh matcher (cold and warm steps as they come);
 *   - a JSON Schema string with maxLength, where every character count is a state of its own,
 *     so every token's mask is a cold walk.
 * Times are medians over repetitions (min for the document), on one thread.
 */
#include "grammar/grammar.h"
#include "grammar/json_schema.h"
#include "sample/sampler.h"
#include "tokenizer/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    *len = p ? fread(p, 1, (size_t)n, f) : 0;
    fclose(f);
    return p;
}

static int popcount_mask(const uint32_t *mask, int32_t n_vocab)
{
    int n = 0;
    for (int32_t i = 0; i < (n_vocab + 31) / 32; i++) n += __builtin_popcount(mask[i]);
    return n;
}

/* A long answer in the shape structured output produces: English and Korean text, numbers,
 * nesting. Written for this benchmark. */
static const char document[] =
    "{\"title\": \"Weekly report: the grammar filter on a 152k-token vocabulary\",\n"
    " \"author\": {\"name\": \"\xea\xb9\x80\xeb\xaf\xbc\xec\xa4\x80\", \"team\": \"inference\", "
    "\"id\": 4821},\n"
    " \"summary\": \"Constrained decoding keeps every answer valid JSON. This week we measured the "
    "per-token cost of the filter in the states that matter: the start of an object, inside a "
    "long free-text string, and inside a number. \xed\x95\x9c\xea\xb5\xad\xec\x96\xb4 "
    "\xeb\xac\xb8\xec\x9e\xa5\xeb\x8f\x84 \xec\x9e\x98 \xeb\x90\xa9\xeb\x8b\x88\xeb\x8b\xa4. The "
    "answer: a few microseconds for most states, a millisecond for the first token of a string, "
    "almost nothing after that.\",\n"
    " \"measurements\": [\n"
    "  {\"state\": \"object start\", \"ns\": 41250, \"allowed\": 394, \"ok\": true},\n"
    "  {\"state\": \"string\", \"ns\": 1321000, \"allowed\": 147381, \"ok\": true},\n"
    "  {\"state\": \"number\", \"ns\": 24000, \"allowed\": 28, \"ok\": false, \"note\": null}\n"
    " ],\n"
    " \"ratio\": 0.0264, \"scale\": -1.5e-3, \"tags\": [\"grammar\", \"json\", "
    "\"\xec\x84\xb1\xeb\x8a\xa5\"],\n"
    " \"details\": {\"trie_nodes\": 333628, \"states\": [1, 2, 3, 5, 8, 13, 21, 34], "
    "\"nested\": [[1, [2, [3, [4]]]], {\"a\": {\"b\": {\"c\": \"d\"}}}]}}";

typedef struct state_case {
    const char *label;
    const char *prefix;
} state_case;

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: grammar_bench VOCAB.gguf GRAMMAR.gbnf [N_VOCAB]\n");
        return 2;
    }
    int32_t n_vocab = argc > 3 ? atoi(argv[3]) : 0;
    gguf_file *f;
    nuri_vocab *v;
    if (gguf_open(argv[1], &f) != NURI_OK || nuri_vocab_load(f, &v) != NURI_OK) {
        fprintf(stderr, "%s: %s\n", argv[1], nuri_last_error());
        return 1;
    }
    gguf_close(f);
    if (n_vocab < (int32_t)nuri_vocab_n_tokens(v)) n_vocab = (int32_t)nuri_vocab_n_tokens(v);
    size_t glen;
    char *gtext = read_file(argv[2], &glen);
    nuri_grammar *g;
    if (!gtext || nuri_grammar_parse(gtext, glen, &g) != NURI_OK) {
        fprintf(stderr, "%s: %s\n", argv[2], gtext ? nuri_last_error() : "cannot read");
        return 1;
    }
    free(gtext);

    // ---- setup
    double t0 = now();
    nuri_token_trie *t;
    if (nuri_token_trie_new(v, n_vocab, &t) != NURI_OK) {
        fprintf(stderr, "trie: %s\n", nuri_last_error());
        return 1;
    }
    double t_trie = now() - t0;
    double mk[21];
    for (int r = 0; r < 21; r++) {
        nuri_grammar_matcher *m;
        t0 = now();
        nuri_grammar_matcher_new(g, t, NULL, &m);
        mk[r] = now() - t0;
        nuri_grammar_matcher_free(m);
    }
    printf("vocabulary %s: %u tokens, n_vocab %d; trie of %u nodes built in %.1f ms\n", argv[1],
           nuri_vocab_n_tokens(v), n_vocab, nuri_token_trie_n_nodes(t), t_trie * 1e3);
    printf("grammar %s: %u rules, %u symbols; a matcher is made in %.0f us\n\n", argv[2],
           nuri_grammar_n_rules(g), nuri_grammar_n_elems(g), median(mk, 21) * 1e6);

    // ---- states
    static char long_string[4096];
    snprintf(long_string, sizeof long_string, "{\"text\": \"%s",
             "The filter walks a byte trie of every token text; inside a string almost every "
             "token is allowed, so the walk visits nearly the whole trie. \xed\x95\x9c\xea\xb5\xad"
             "\xec\x96\xb4\xeb\x8f\x84 \xec\x9e\x88\xec\x8a\xb5\xeb\x8b\x88\xeb\x8b\xa4. ");
    const state_case cases[] = {
        {"start (a value may begin)", ""},
        {"start of an object (after '{')", "{"},
        {"after a key (before the value)", "{\"name\": "},
        {"inside a long free-text string", long_string},
        {"inside a number", "{\"n\": 12345"},
        {"inside nested arrays", "[[[[[[1, 2], ["},
        {"a split character (2 of 3 bytes)", "[\"\xed\x95"},
    };
    printf("%-36s %9s %12s %12s %9s\n", "state", "allowed", "cold (us)", "warm (us)", "walked");
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        enum { REPS = 15 };
        double cold[REPS], warm[REPS];
        int allowed = 0;
        unsigned long long walked = 0;
        for (int r = 0; r < REPS; r++) {
            nuri_grammar_matcher *m;
            nuri_grammar_matcher_new(g, t, NULL, &m);
            if (nuri_grammar_matcher_accept(m, cases[c].prefix, strlen(cases[c].prefix)) !=
                NURI_OK) {
                fprintf(stderr, "prefix refused: %s\n", nuri_last_error());
                return 1;
            }
            const uint32_t *mask;
            t0 = now();
            nuri_grammar_matcher_mask(m, &mask);
            cold[r] = now() - t0;
            allowed = popcount_mask(mask, n_vocab);
            t0 = now();
            for (int k = 0; k < 100; k++) nuri_grammar_matcher_mask(m, &mask);
            warm[r] = (now() - t0) / 100;
            nuri_grammar_matcher_stats st;
            nuri_grammar_matcher_get_stats(m, &st);
            walked = st.nodes_walked;
            nuri_grammar_matcher_free(m);
        }
        printf("%-36s %9d %12.1f %12.3f %9llu\n", cases[c].label, allowed, median(cold, REPS) * 1e6,
               median(warm, REPS) * 1e6, walked);
    }

    // ---- the sampler's whole step, with and without a grammar
    float *logits = malloc(sizeof *logits * (size_t)n_vocab);
    uint64_t x = 88172645463325252ull;
    for (int32_t i = 0; i < n_vocab; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        logits[i] = (float)(x % 2000) / 100.0f;
    }
    nuri_sampler_params sp = nuri_sampler_params_default();
    sp.temperature = 0.8f;
    sp.top_k = 40;
    int32_t *prefix_ids;
    size_t n_prefix;
    nuri_tokenize(v, long_string, strlen(long_string), 0, &prefix_ids, &n_prefix);
    printf("\nsampler step, top-k 40 and temperature 0.8 (median of 50):\n");
    for (int with = 0; with < 2; with++) {
        sp.grammar = with ? g : NULL;
        sp.grammar_tokens = with ? t : NULL;
        nuri_sampler *s;
        nuri_sampler_new(&sp, n_vocab, &s);
        for (size_t i = 0; with && i < n_prefix; i++) nuri_sampler_accept(s, prefix_ids[i]);
        double step[50];
        for (int r = 0; r < 50; r++) { // sampling without accepting: the state stays
            int32_t tok;
            t0 = now();
            nuri_sampler_sample(s, logits, &tok, NULL);
            step[r] = now() - t0;
        }
        printf("  %-44s %9.1f us\n", with ? "JSON grammar, inside a string (warm)" : "no grammar",
               median(step, 50) * 1e6);
        nuri_sampler_free(s);
    }
    free(prefix_ids);

    // ---- a whole document, token by token
    int32_t *ids;
    size_t n_ids;
    nuri_tokenize(v, document, strlen(document), 0, &ids, &n_ids);
    double best_total = 1e9, worst_step = 0;
    double *steps = malloc(sizeof *steps * n_ids);
    size_t n_cold = 0;
    for (int r = 0; r < 5; r++) {
        nuri_grammar_matcher *m;
        nuri_grammar_matcher_new(g, t, NULL, &m);
        double total = 0, worst = 0;
        for (size_t i = 0; i < n_ids; i++) {
            const uint32_t *mask;
            t0 = now();
            nuri_grammar_matcher_mask(m, &mask);
            nuri_status st = nuri_grammar_matcher_accept_token(m, ids[i]);
            double dt = now() - t0;
            if (st != NURI_OK) {
                fprintf(stderr, "document token %zu refused: %s\n", i, nuri_last_error());
                return 1;
            }
            if (!((mask[ids[i] >> 5] >> (ids[i] & 31)) & 1)) {
                fprintf(stderr, "document token %zu was not in the mask\n", i);
                return 1;
            }
            steps[i] = dt;
            total += dt;
            if (dt > worst) worst = dt;
        }
        nuri_grammar_matcher_stats st;
        nuri_grammar_matcher_get_stats(m, &st);
        n_cold = (size_t)(st.masks - st.mask_hits);
        if (total < best_total) best_total = total, worst_step = worst;
        nuri_grammar_matcher_free(m);
    }
    qsort(steps, n_ids, sizeof *steps, cmp_double);
    printf("\ndocument of %zu bytes, %zu tokens (mask + accept per token, fresh matcher, best of "
           "5):\n  total %.2f ms, mean %.1f us, median %.1f us, p90 %.1f us, max %.1f us; %zu "
           "masks computed, %zu from the cache\n",
           strlen(document), n_ids, best_total * 1e3, best_total / (double)n_ids * 1e6,
           steps[n_ids / 2] * 1e6, steps[n_ids * 9 / 10] * 1e6, worst_step * 1e6, n_cold,
           n_ids - n_cold);
    free(steps);
    free(ids);

    // ---- a counted string: {"type": "string", "maxLength": 300}
    const char *schema = "{\"type\": \"object\", \"properties\": {\"note\": {\"type\": "
                         "\"string\", \"maxLength\": 300}}, \"required\": [\"note\"]}";
    nuri_grammar *sg;
    char path[64];
    if (nuri_json_schema_grammar_text(schema, strlen(schema), &sg, path, sizeof path) != NURI_OK) {
        fprintf(stderr, "schema: %s\n", nuri_last_error());
        return 1;
    }
    const char *note = "{\"note\": \"A string with a maximum length is counted character by "
                       "character, so each token starts from a state never seen before and its "
                       "mask is a walk of the trie. \xed\x95\x9c\xea\xb5\xad\xec\x96\xb4 "
                       "\xeb\xac\xb8\xec\x9e\xa5\xeb\x8f\x84.\"}";
    nuri_tokenize(v, note, strlen(note), 0, &ids, &n_ids);
    double best = 1e9;
    for (int r = 0; r < 5; r++) {
        nuri_grammar_matcher *m;
        nuri_grammar_matcher_new(sg, t, NULL, &m);
        double total = 0;
        for (size_t i = 0; i < n_ids; i++) {
            const uint32_t *mask;
            t0 = now();
            nuri_grammar_matcher_mask(m, &mask);
            if (nuri_grammar_matcher_accept_token(m, ids[i]) != NURI_OK) {
                fprintf(stderr, "note token %zu refused: %s\n", i, nuri_last_error());
                return 1;
            }
            total += now() - t0;
        }
        if (total < best) best = total;
        nuri_grammar_matcher_free(m);
    }
    printf("\nJSON Schema string with maxLength 300, %zu tokens (a new state every token): mean "
           "%.1f us per token\n",
           n_ids, best / (double)n_ids * 1e6);
    free(ids);
    nuri_grammar_free(sg);
    free(logits);
    nuri_token_trie_free(t);
    nuri_grammar_free(g);
    nuri_vocab_free(v);
    return 0;
}
