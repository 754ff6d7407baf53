/*
 * cmd_run.c: `nuri run -m MODEL --tokens 1,2,3 -n N [-t THREADS] [--ctx N]`
 *
 * Greedy continuation: the prompt in one batch, then one token at a time over the KV cache.
 * Prints the generated token ids, space separated, on one line.
 */
#include "cli/args.h"
#include "cli/cli.h"
#include "model/logits.h"
#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void run_usage(FILE *out)
{
    fprintf(out, "usage: nuri run -m MODEL --tokens ID,ID,... [-n N] [-t THREADS] [--ctx N]\n"
                 "  greedy continuation of the prompt; prints the new token ids\n");
}

int cmd_run(int argc, char **argv)
{
    const char *model_path = NULL, *tokens_arg = NULL, *v;
    long n_predict = 32, threads = 1, n_ctx = 0;
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
        } else if (!strcmp(a, "--ctx")) {
            if (!(v = args_value(argc, argv, &i)) || !args_int(v, 1, 1 << 22, "--ctx", &n_ctx))
                return 2;
        } else {
            fprintf(stderr, "nuri: run: unknown option '%s'\n", a);
            run_usage(stderr);
            return 2;
        }
    }
    if (!model_path || !tokens_arg) {
        run_usage(stderr);
        return 2;
    }
    int32_t *tokens, n;
    if (!args_token_list(tokens_arg, &tokens, &n)) return 2;
    nuri_model *m;
    if (nuri_model_load(model_path, &m) != NURI_OK) {
        free(tokens);
        return cli_fail("run");
    }
    if (n_ctx == 0) n_ctx = n + n_predict;
    int rc = 0;
    nuri_ctx *c = NULL;
    nuri_ctx_params cp = {.n_ctx = (int32_t)n_ctx, .n_threads = (int32_t)threads};
    if (nuri_ctx_new(m, &cp, &c) != NURI_OK || nuri_ctx_decode(c, tokens, n, 0, false) != NURI_OK) {
        rc = cli_fail("run");
    } else {
        int32_t pos = n;
        for (long k = 0; k < n_predict; k++) {
            int32_t next = nuri_logits_argmax(nuri_ctx_logits(c, 0), m->hp.n_vocab);
            printf(k ? " %d" : "%d", next);
            fflush(stdout);
            if (k + 1 == n_predict) break;
            if (nuri_ctx_decode(c, &next, 1, pos++, false) != NURI_OK) {
                printf("\n");
                rc = cli_fail("run");
                break;
            }
        }
        if (rc == 0) printf("\n");
    }
    nuri_ctx_free(c);
    nuri_model_free(m);
    free(tokens);
    return rc;
}
