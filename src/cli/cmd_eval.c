/*
 * cmd_eval.c: `nuri eval -m MODEL --tokens 1,2,3 [--top 40] [-t N]`
 *
 * Runs the prompt in one batch and prints, for every position i, the log-probabilities of the most
 * likely next tokens after tokens[0..i]: one JSON line {"pos": i, "top": [[id, logprob], ...]},
 * sorted by logprob descending (ties by id). This is the form llama.cpp's numbers are compared in.
 * For a mixture of experts each line also has "router_margin": the smallest gap, over the layers,
 * between the logits of the last expert chosen and the best one not chosen.
 *
 * --logits FILE also writes every position's raw logits to FILE: (n, n_vocab) float32 in the
 * machine's byte order, for comparisons bit for bit (a pipeline against one process).
 */
#include "cli/args.h"
#include "cli/cli.h"
#include "cli/model_arg.h"
#include "model/logits.h"
#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void eval_usage(FILE *out)
{
    fprintf(out,
            "usage: nuri eval -m MODEL --tokens ID,ID,... [--top N] [-t THREADS] "
            "[--logits FILE]\n"
            "  prints one JSON line per position: {\"pos\": i, \"top\": [[id, logprob], ...]}\n"
            "  --logits FILE: also every position's raw logits, (n, n_vocab) "
            "float32\n" ARGS_KV_TYPE_HELP);
}

int cmd_eval(int argc, char **argv)
{
    const char *model_path = NULL, *tokens_arg = NULL, *logits_path = NULL, *v;
    long top = 40, threads = 1;
    const char *kv_k = "f16", *kv_v = "f16"; // --kv-type
    int kv;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            eval_usage(stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(model_path = args_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--tokens")) {
            if (!(tokens_arg = args_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--logits")) {
            if (!(logits_path = args_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--top")) {
            if (!(v = args_value(argc, argv, &i)) || !args_int(v, 1, 1000, "--top", &top)) return 2;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (!(v = args_value(argc, argv, &i)) || !args_int(v, 1, 256, "-t", &threads)) return 2;
        } else if ((kv = args_kv_type(argc, argv, &i, &kv_k, &kv_v)) != 0) {
            if (kv < 0) return 2;
        } else {
            fprintf(stderr, "nuri: eval: unknown option '%s'\n", a);
            eval_usage(stderr);
            return 2;
        }
    }
    if (!model_path || !tokens_arg) {
        eval_usage(stderr);
        return 2;
    }
    if (cli_model_arg("eval", &model_path)) return 1;
    int32_t *tokens, n;
    if (!args_token_list(tokens_arg, &tokens, &n)) return 2;

    nuri_model *m;
    if (nuri_model_load(model_path, &m) != NURI_OK) {
        free(tokens);
        return cli_fail("eval");
    }
    int rc = 0;
    nuri_ctx *c = NULL;
    nuri_ctx_params cp = {.n_ctx = n, .n_batch = n, .n_threads = (int32_t)threads, .n_logits = n};
    if (nuri_kv_type_parse(kv_k, &cp.kv_type_k) != NURI_OK ||
        nuri_kv_type_parse(kv_v, &cp.kv_type_v) != NURI_OK || nuri_ctx_new(m, &cp, &c) != NURI_OK ||
        nuri_ctx_decode(c, tokens, n, 0, true) != NURI_OK) {
        rc = cli_fail("eval");
    } else {
        int32_t k = top < m->hp.n_vocab ? (int32_t)top : m->hp.n_vocab;
        int32_t *ids = malloc(sizeof *ids * (size_t)k);
        double *lps = malloc(sizeof *lps * (size_t)k);
        for (int32_t i = 0; ids && lps && i < n; i++) {
            nuri_logits_top(nuri_ctx_logits(c, i), m->hp.n_vocab, k, ids, lps);
            printf("{\"pos\": %d, \"top\": [", i);
            for (int32_t j = 0; j < k; j++) printf("%s[%d, %.6f]", j ? ", " : "", ids[j], lps[j]);
            printf("]");
            if (m->hp.n_expert > 0) // how near an expert choice came to changing (model.h)
                printf(", \"router_margin\": %.6g", (double)nuri_ctx_router_margin(c, i));
            printf("}\n");
        }
        if (!ids || !lps) rc = (fprintf(stderr, "nuri: eval: out of memory\n"), 1);
        FILE *lf = logits_path ? fopen(logits_path, "wb") : NULL;
        if (logits_path && !lf) {
            fprintf(stderr, "nuri: eval: cannot write %s\n", logits_path);
            rc = 1;
        }
        for (int32_t i = 0; lf && i < n; i++)
            if (fwrite(nuri_ctx_logits(c, i), sizeof(float), (size_t)m->hp.n_vocab, lf) !=
                (size_t)m->hp.n_vocab)
                rc = 1;
        if (lf && fclose(lf) != 0) rc = 1;
        if (logits_path && lf && rc) fprintf(stderr, "nuri: eval: cannot write %s\n", logits_path);
        free(ids);
        free(lps);
    }
    nuri_ctx_free(c);
    nuri_model_free(m);
    free(tokens);
    return rc;
}
