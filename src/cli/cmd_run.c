/*
 * cmd_run.c: `nuri run -m MODEL (-p TEXT | --tokens 1,2,3) [-n N] [-t THREADS] [--ctx N]
 *                   [--temp T] [--top-k K] [--top-p P] [--min-p P] [--seed S]`
 *
 * Raw completion: the prompt in one batch, then one token at a time over the KV cache, until N
 * tokens or an end-of-generation token. With -p the prompt is text (tokenized with the model's
 * vocabulary, BOS added as the vocabulary asks) and the output is text, streamed as whole UTF-8
 * characters. With --tokens the output is the new token ids on one line. Greedy unless --temp > 0.
 */
#include "cli/args.h"
#include "cli/cli.h"
#include "model/logits.h"
#include "model/model.h"
#include "sample/sampler.h"
#include "tokenizer/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void run_usage(FILE *out)
{
    fprintf(out, "usage: nuri run -m MODEL (-p TEXT | --tokens ID,ID,...) [-n N] [-t THREADS]\n"
                 "                [--ctx N] [--temp T] [--top-k K] [--top-p P] [--min-p P] "
                 "[--seed S]\n"
                 "  continues the prompt (greedy unless --temp > 0): text with -p, token ids with "
                 "--tokens\n");
}

int cmd_run(int argc, char **argv)
{
    const char *model_path = NULL, *tokens_arg = NULL, *text = NULL, *v;
    long n_predict = 32, threads = 1, n_ctx = 0, n;
    nuri_sampler_params sp = nuri_sampler_params_default();
    sp.temperature = 0.0f;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            run_usage(stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(model_path = args_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--tokens")) {
            if (!(tokens_arg = args_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "-n")) {
            if (!(v = args_value(argc, argv, &i)) || !args_int(v, 0, 1 << 22, "-n", &n_predict))
                return 2;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (!(v = args_value(argc, argv, &i)) || !args_int(v, 1, 256, "-t", &threads))
                return 2;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            if (!(text = args_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--temp")) {
            if (!(v = args_value(argc, argv, &i)) || !args_float(v, 0, 100, "--temp", &sp.temperature))
                return 2;
        } else if (!strcmp(a, "--top-p")) {
            if (!(v = args_value(argc, argv, &i)) || !args_float(v, 0, 1, "--top-p", &sp.top_p))
                return 2;
        } else if (!strcmp(a, "--min-p")) {
            if (!(v = args_value(argc, argv, &i)) || !args_float(v, 0, 1, "--min-p", &sp.min_p))
                return 2;
        } else if (!strcmp(a, "--top-k")) {
            if (!(v = args_value(argc, argv, &i)) || !args_int(v, 0, 1 << 24, "--top-k", &n))
                return 2;
            sp.top_k = (int32_t)n;
        } else if (!strcmp(a, "--seed")) {
            if (!(v = args_value(argc, argv, &i)) || !args_int(v, 0, 0x7fffffffL, "--seed", &n))
                return 2;
            sp.seed = (uint64_t)n;
        } else if (!strcmp(a, "--ctx")) {
            if (!(v = args_value(argc, argv, &i)) || !args_int(v, 1, 1 << 22, "--ctx", &n_ctx))
                return 2;
        } else {
            fprintf(stderr, "nuri: run: unknown option '%s'\n", a);
            run_usage(stderr);
            return 2;
        }
    }
    if (!model_path || !tokens_arg == !text) {
        run_usage(stderr);
        return 2;
    }
    nuri_model *m;
    if (nuri_model_load(model_path, &m) != NURI_OK) return cli_fail("run");
    int rc = 0;
    int32_t *tokens = NULL, n_tokens = 0;
    nuri_vocab *vocab = NULL;
    nuri_ctx *c = NULL;
    nuri_sampler *smp = NULL;
    nuri_detok dt = {0};
    bool have_dt = false;
    if (tokens_arg) {
        if (!args_token_list(tokens_arg, &tokens, &n_tokens)) {
            nuri_model_free(m);
            return 2;
        }
    } else {
        size_t nt;
        if (nuri_vocab_load(m->file, &vocab) != NURI_OK ||
            nuri_tokenize(vocab, text, strlen(text), NURI_TOK_ADD_SPECIAL, &tokens, &nt) != NURI_OK ||
            nuri_detok_init(&dt, vocab, NURI_DETOK_STRIP_PREFIX_SPACE) != NURI_OK) {
            rc = cli_fail("run");
            goto done;
        }
        have_dt = true;
        // the prompt's own text is printed as given; only the continuation is detokenized
        dt.at_start = false;
        n_tokens = (int32_t)nt;
        if (nt == 0) {
            fprintf(stderr, "nuri: run: the prompt is empty after tokenization\n");
            rc = 2;
            goto done;
        }
    }
    if (n_ctx == 0) n_ctx = n_tokens + n_predict;
    nuri_ctx_params cp = {.n_ctx = (int32_t)n_ctx, .n_threads = (int32_t)threads};
    if (nuri_ctx_new(m, &cp, &c) != NURI_OK || nuri_sampler_new(&sp, m->hp.n_vocab, &smp) ||
        nuri_ctx_decode(c, tokens, n_tokens, 0, false) != NURI_OK) {
        rc = cli_fail("run");
        goto done;
    }
    if (text) fputs(text, stdout);
    int32_t pos = n_tokens;
    for (long k = 0; k < n_predict; k++) {
        int32_t next;
        if (nuri_sampler_sample(smp, nuri_ctx_logits(c, 0), &next, NULL) != NURI_OK) {
            rc = cli_fail("run");
            break;
        }
        nuri_sampler_accept(smp, next);
        if (have_dt) {
            if (nuri_vocab_is_eog(vocab, next)) break;
            size_t len;
            const char *piece = nuri_detok_feed(&dt, next, &len);
            fwrite(piece, 1, len, stdout);
        } else {
            printf(k ? " %d" : "%d", next);
        }
        fflush(stdout);
        if (k + 1 == n_predict) break;
        if (nuri_ctx_decode(c, &next, 1, pos++, false) != NURI_OK) {
            printf("\n");
            rc = cli_fail("run");
            break;
        }
    }
    if (have_dt) {
        size_t len;
        const char *rest = nuri_detok_flush(&dt, &len);
        fwrite(rest, 1, len, stdout);
    }
    if (rc == 0) printf("\n");
done:
    if (have_dt) nuri_detok_free(&dt);
    nuri_sampler_free(smp);
    nuri_ctx_free(c);
    nuri_vocab_free(vocab);
    nuri_model_free(m);
    free(tokens);
    return rc;
}
