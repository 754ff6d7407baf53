/*
 * grammar_gen.c: a generation loop with and without a grammar, to see what the grammar adds per
 * token next to the forward pass and the rest of the sampler. Built and run by bench/grammar.sh.
 *
 *   grammar_gen MODEL.gguf (GRAMMAR.gbnf | none) N
 *
 * Generates N tokens at temperature 1 with top-k 40 (seed 1, 2, ... per restart: a generation
 * that completes the grammar or ends with an end-of-generation token starts over from the
 * prompt), one thread, and prints one line: ms per token in all, and in the sampler (grammar
 * mask and accept included) apart from the forward pass.
 */
#include "grammar/grammar.h"
#include "model/model.h"
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

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: grammar_gen MODEL.gguf (GRAMMAR.gbnf | none) N\n");
        return 2;
    }
    int n_total = atoi(argv[3]);
    nuri_model *m;
    nuri_vocab *v;
    if (nuri_model_load(argv[1], &m) != NURI_OK || nuri_vocab_load(m->file, &v) != NURI_OK) {
        fprintf(stderr, "%s: %s\n", argv[1], nuri_last_error());
        return 1;
    }
    nuri_grammar *g = NULL;
    nuri_token_trie *t = NULL;
    if (strcmp(argv[2], "none")) {
        FILE *f = fopen(argv[2], "rb");
        static char text[1 << 16];
        size_t n = f ? fread(text, 1, sizeof text, f) : 0;
        if (f) fclose(f);
        if (!n || nuri_grammar_parse(text, n, &g) != NURI_OK ||
            nuri_token_trie_new(v, m->hp.n_vocab, &t) != NURI_OK) {
            fprintf(stderr, "%s: %s\n", argv[2], nuri_last_error());
            return 1;
        }
    }
    nuri_ctx *c;
    nuri_ctx_params cp = {.n_ctx = n_total + 64, .n_threads = 1};
    int32_t prompt = nuri_vocab_bos(v) >= 0 ? nuri_vocab_bos(v) : 0;
    if (nuri_ctx_new(m, &cp, &c) != NURI_OK) return 1;
    double t_all = 0, t_sample = 0;
    int made = 0, restarts = 0;
    while (made < n_total) {
        nuri_sampler_params sp = nuri_sampler_params_default();
        sp.temperature = 1.0f;
        sp.top_k = 40;
        sp.seed = (uint64_t)++restarts;
        sp.grammar = g;
        sp.grammar_tokens = t;
        nuri_sampler *s;
        if (nuri_sampler_new(&sp, m->hp.n_vocab, &s) != NURI_OK) return 1;
        nuri_ctx_seq_truncate(c, 0, 0);
        int32_t pos = 0, tok = prompt;
        for (; made < n_total; made++) {
            double t0 = now();
            if (nuri_ctx_decode(c, &tok, 1, pos++, false) != NURI_OK) return 1;
            double t1 = now();
            if (nuri_sampler_sample(s, nuri_ctx_logits(c, 0), &tok, NULL) != NURI_OK ||
                nuri_sampler_accept(s, tok) != NURI_OK) {
                fprintf(stderr, "sampling: %s\n", nuri_last_error());
                return 1;
            }
            nuri_finish_reason fr = nuri_sampler_finish_reason(s, tok);
            double t2 = now();
            t_all += t2 - t0;
            t_sample += t2 - t1;
            if (fr == NURI_FINISH_STOP || fr == NURI_FINISH_GRAMMAR) {
                made++;
                break;
            }
        }
        nuri_sampler_free(s);
    }
    printf("nuri       %-26s %7.3f ms/token, of which sampler %6.3f ms (%d tokens, %d runs)\n",
           argv[2], t_all / made * 1e3, t_sample / made * 1e3, made, restarts);
    nuri_ctx_free(c);
    nuri_token_trie_free(t);
    nuri_grammar_free(g);
    nuri_vocab_free(v);
    nuri_model_free(m);
    return 0;
}
