/*
 * cmd_run.c: `nuri run -m MODEL (-p TEXT | --tokens 1,2,3) [-n N] [-t THREADS] [--ctx N]
 *                   [--temp T] [--top-k K] [--top-p P] [--min-p P] [--seed S]
 *                   [--chat [--chat-template FILE]] [--grammar FILE | --json-schema FILE]`
 *
 * With --chat the text is one user message, wrapped with the model's chat template (ChatML if it
 * has none; --chat-template FILE overrides), and only the answer is printed; it ends at the end of
 * the model's turn.
 *
 * Raw completion: the prompt in one batch, then one token at a time over the KV cache, until N
 * tokens or an end-of-generation token. With -p the prompt is text (tokenized with the model's
 * vocabulary, BOS added as the vocabulary asks) and the output is text, streamed as whole UTF-8
 * characters. With --tokens the output is the new token ids on one line. Greedy unless --temp > 0.
 *
 * With --grammar (GBNF) or --json-schema, only text the grammar allows is generated, only the
 * generated text is printed (not the prompt), and generation ends where the grammar is complete.
 * If -n tokens run out first, what was generated is printed and the exit status is 1.
 *
 * With --draft-lookup K or --draft FILE the tokens come from a speculator (include/nuri.h,
 * "speculative decoding"; src/spec/speculate.h): drafts checked in one forward pass each.
 *
 * When the text reaches past the context the model was trained on, a warning says so on stderr,
 * once: the model has never seen positions there, and its output usually degrades.
 *
 * It uses only the public API (include/nuri.h), besides the CLI's own helpers.
 */
#include "cli/args.h"
#include "cli/args_spec.h"
#include "cli/cli.h"
#include "cli/model_arg.h"
#include "dist/dist.h"
#include "nuri.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void run_usage(FILE *out)
{
    fprintf(out, "usage: nuri run -m MODEL (-p TEXT | --tokens ID,ID,...) [-n N] [-t THREADS]\n"
                 "                [--ctx N] [sampling options]\n"
                 "                [--chat [--chat-template FILE]]\n"
                 "  continues the prompt (greedy unless --temp > 0): text with -p, token ids with "
                 "--tokens\n"
                 "  --chat: the text is one user message, wrapped with the model's chat template\n"
                 "  (ChatML if it has none); only the answer is printed\n"
                 "  -v: timing and speculation counts\n" ARGS_SPEC_HELP ARGS_SAMPLING_HELP
                     ARGS_GRAMMAR_HELP ARGS_KV_TYPE_HELP);
}

int cmd_run(int argc, char **argv)
{
    const char *model_path = NULL, *tokens_arg = NULL, *text = NULL, *tpl_path = NULL, *v;
    const char *grammar_file = NULL, *schema_file = NULL;
    bool chat = false;
    long n_predict = 32, threads = 1, n_ctx = 0;
    args_spec spec_args = {0};
    bool verbose = false;
    nuri_sampling_params sp;
    nuri_sampling_params_init(&sp, sizeof sp);
    sp.temperature = 0.0f;
    int sampling, kv;
    const char *kv_k = NULL, *kv_v = NULL; // --kv-type
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
            if (!(v = args_value(argc, argv, &i)) || !args_int(v, 1, 256, "-t", &threads)) return 2;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            if (!(text = args_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--chat")) {
            chat = true;
        } else if (!strcmp(a, "--chat-template")) {
            if (!(tpl_path = args_value(argc, argv, &i))) return 2;
            chat = true;
        } else if (!strcmp(a, "--ctx")) {
            if (!(v = args_value(argc, argv, &i)) || !args_int(v, 1, 1 << 22, "--ctx", &n_ctx))
                return 2;
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            verbose = true;
        } else if (!strcmp(a, "--grammar")) {
            if (!(grammar_file = args_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--json-schema")) {
            if (!(schema_file = args_value(argc, argv, &i))) return 2;
        } else if ((sampling = args_sampling_api(argc, argv, &i, &sp)) != 0 ||
                   (sampling = args_spec_option(argc, argv, &i, &spec_args)) != 0) {
            if (sampling < 0) return 2;
        } else if ((kv = args_kv_type(argc, argv, &i, &kv_k, &kv_v)) != 0) {
            if (kv < 0) return 2;
        } else {
            fprintf(stderr, "nuri: run: unknown option '%s'\n", a);
            run_usage(stderr);
            return 2;
        }
    }
    if (!model_path || !tokens_arg == !text || (chat && !text)) {
        run_usage(stderr);
        return 2;
    }
    if (!args_spec_check(&spec_args, "run")) return 2;
    if (spec_args.draft_path && nuri_dist_size() > 1) {
        // every model a stage loads is split across the pipeline: the draft's passes would be too
        fprintf(stderr, "nuri: run: --draft is not supported with --pp (a draft model in a "
                        "pipeline)\n");
        return 2;
    }
    if (cli_model_arg("run", &model_path)) return 1;
    if (spec_args.draft_path && cli_model_arg("run --draft", &spec_args.draft_path)) return 1;
    char *grammar = NULL; // the --grammar or --json-schema file's text, checked
    if (!args_grammar_text(grammar_file, schema_file, &grammar)) return 2;
    if (grammar && tokens_arg) {
        fprintf(stderr, "nuri: run: --grammar and --json-schema need a text prompt (-p)\n");
        free(grammar);
        return 2;
    }
    nuri_model *m, *dm = NULL;
    if (cli_model_load(model_path, &m) != NURI_OK) {
        free(grammar);
        return cli_fail("run");
    }
    if (spec_args.draft_path && cli_model_load(spec_args.draft_path, &dm) != NURI_OK) {
        nuri_model_close(m);
        free(grammar);
        return cli_fail("run --draft");
    }
    int rc = 0;
    int32_t *tokens = NULL, n_tokens = 0;
    nuri_context *c = NULL;
    nuri_sampler_chain *smp = NULL;
    nuri_speculator *spec = NULL;
    nuri_detokenizer *dt = NULL;
    nuri_chat *fmt = NULL;
    char *tpl_src = NULL, *answer = NULL; // --chat: the template, the answer so far
    size_t tpl_len = 0, answer_len = 0, answer_cap = 0, emitted = 0, n_stops = 0;
    bool stop_hit = false;
    const char *const *stops = NULL;
    if (tokens_arg) {
        if (!args_token_list(tokens_arg, &tokens, &n_tokens)) {
            nuri_model_close(m);
            free(grammar);
            return 2;
        }
    } else {
        size_t nt;
        // the prompt's own text is printed as given; only the continuation is detokenized
        if (chat) {
            const char *role = "user";
            // the prompt is the user's text: special-token text in it stays text
            if ((tpl_path && nuri_chat_template_load(tpl_path, &tpl_src, &tpl_len) != NURI_OK) ||
                nuri_chat_new(m, tpl_src, tpl_len, &fmt) != NURI_OK ||
                nuri_chat_tokens(fmt, &role, &text, 1, true, &tokens, &nt) != NURI_OK ||
                nuri_detokenizer_new(m, 0, &dt) != NURI_OK) {
                rc = cli_fail("run --chat");
                goto done;
            }
            if (nuri_chat_is_fallback(fmt))
                fprintf(stderr, "nuri: run: the model has no chat template; using ChatML\n");
            stops = nuri_chat_stop_strings(fmt, &n_stops);
        } else if (nuri_model_tokenize(m, text, strlen(text), NURI_TOKENIZE_ADD_SPECIAL, &tokens,
                                       &nt) != NURI_OK ||
                   nuri_detokenizer_new(m, 0, &dt) != NURI_OK) {
            rc = cli_fail("run");
            goto done;
        }
        n_tokens = (int32_t)nt;
        if (nt == 0) {
            fprintf(stderr, "nuri: run: the prompt is empty after tokenization\n");
            rc = 2;
            goto done;
        }
    }
    if (grammar) {
        if (grammar_file)
            sp.grammar = grammar;
        else
            sp.json_schema = grammar;
    }
    if (n_ctx == 0) n_ctx = n_tokens + n_predict;
    nuri_context_params cp;
    nuri_context_params_init(&cp, sizeof cp);
    cp.n_ctx = (int32_t)n_ctx;
    cp.n_threads = (int32_t)threads;
    cp.kv_type_k = kv_k;
    cp.kv_type_v = kv_v;
    cp.n_logits = spec_args.draft_max > 0 ? (int32_t)spec_args.draft_max + 1 : 0;
    // past the trained context the model has never seen the positions: say so, once
    int32_t n_train = nuri_model_n_ctx_train(m);
    bool warned = false;
    if (n_tokens > n_train) {
        fprintf(stderr,
                "nuri: run: warning: the prompt (%d tokens) is longer than the context the model "
                "was trained on (%d tokens); expect poor output\n",
                n_tokens, n_train);
        warned = true;
    }
    if (nuri_context_new(m, &cp, &c) != NURI_OK || nuri_sampler_chain_new(m, &sp, &smp) ||
        nuri_context_decode_seq(c, 0, tokens, n_tokens, 0, false) != NURI_OK) {
        rc = cli_fail("run");
        goto done;
    }
    if (spec_args.draft_max > 0) {
        nuri_speculate_params qp;
        nuri_speculate_params_init(&qp, sizeof qp);
        qp.draft_max = (int32_t)spec_args.draft_max;
        qp.draft_min = (int32_t)spec_args.draft_min;
        qp.lookup = spec_args.lookup;
        qp.draft = dm;
        qp.draft_threads = (int32_t)threads;
        qp.draft_greedy = spec_args.greedy;
        qp.draft_p_min = spec_args.p_min;
        if (nuri_speculator_new(c, 0, smp, &qp, &spec) != NURI_OK ||
            nuri_speculator_begin(spec, tokens, n_tokens) != NURI_OK) {
            rc = cli_fail(dm ? "run --draft" : "run");
            goto done;
        }
    }
    if (text && !chat && !grammar) fputs(text, stdout);
    bool grammar_done = false;

    // without speculation: sample from the last decode's logits, accept, decode the token
    int32_t n_hist = n_tokens, pos = n_tokens;
    struct timespec t0 = {0}, t1; // -v: from the first token out to the last
    for (long k = 0; k < n_predict; k++) {
        int32_t next;
        if (spec) {
            if (nuri_speculator_next(spec, (int32_t)(n_predict - k), &next) != NURI_OK) {
                rc = cli_fail("run");
                break;
            }
        } else if (nuri_sampler_chain_sample(smp, nuri_context_logits(c, 0), &next) != NURI_OK ||
                   nuri_sampler_chain_accept(smp, next) != NURI_OK) {
            rc = cli_fail("run");
            break;
        }
        grammar_done = nuri_sampler_chain_must_end(smp, next);
        if (!warned && n_hist >= n_train) {
            fprintf(stderr,
                    "\nnuri: run: warning: generation passed the context the model was trained "
                    "on (%d tokens); expect poor output from here\n",
                    n_train);
            warned = true;
        }
        if (dt) {
            bool ends = fmt ? nuri_chat_ends_turn(fmt, next) : nuri_model_token_is_eog(m, next);
            if (ends) break;
            size_t len;
            const char *piece = nuri_detokenizer_feed(dt, next, &len);
            if (n_stops) { // hold back what may be the start of a stop string
                if (answer_len + len > answer_cap) {
                    answer_cap = 2 * (answer_len + len);
                    char *a = realloc(answer, answer_cap);
                    if (!a) {
                        fprintf(stderr, "\nnuri: run: out of memory\n");
                        rc = 1;
                        break;
                    }
                    answer = a;
                }
                memcpy(answer + answer_len, piece, len);
                answer_len += len;
                bool hit;
                size_t n_safe =
                    nuri_stop_strings_scan(answer, answer_len, emitted, stops, n_stops, &hit);
                fwrite(answer + emitted, 1, n_safe - emitted, stdout);
                emitted = n_safe;
                if (hit) {
                    answer_len = emitted;
                    stop_hit = true;
                    break;
                }
            } else {
                fwrite(piece, 1, len, stdout);
            }
        } else {
            printf(k ? " %d" : "%d", next);
        }
        fflush(stdout);
        n_hist++;
        if (k == 0) clock_gettime(CLOCK_MONOTONIC, &t0);
        if (grammar_done || k + 1 == n_predict) break;
        if (spec) continue;
        if (nuri_context_decode_seq(c, 0, &next, 1, pos, false) != NURI_OK) {
            printf("\n");
            rc = cli_fail("run");
            break;
        }
        pos++;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (verbose) {
        double dt_s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        long n_after = n_hist - n_tokens - 1; // the first comes from the prompt's pass
        if (n_after > 0)
            fprintf(stderr, "\nnuri: run: %ld tokens after the first in %.3f s (%.2f tokens/s)\n",
                    n_after, dt_s, dt_s > 0 ? (double)n_after / dt_s : 0.0);
    }
    if (verbose && spec) {
        int64_t passes, drafted, accepted;
        nuri_speculator_counts(spec, &passes, &drafted, &accepted);
        fprintf(stderr,
                "nuri: run: %lld forward passes; acceptance %.1f%%; drafted %lld tokens, %lld "
                "accepted\n",
                (long long)passes, drafted ? 100.0 * (double)accepted / (double)drafted : 0.0,
                (long long)drafted, (long long)accepted);
    }
    if (dt) {
        size_t len;
        const char *rest = nuri_detokenizer_flush(dt, &len);
        if (emitted < answer_len) fwrite(answer + emitted, 1, answer_len - emitted, stdout);
        if (!stop_hit) fwrite(rest, 1, len, stdout);
    }
    if (rc == 0) printf("\n");
    if (rc == 0 && grammar && !grammar_done && !nuri_sampler_chain_can_end(smp)) {
        fprintf(stderr,
                "nuri: run: %ld tokens generated and the grammar is not complete yet "
                "(raise -n)\n",
                n_predict);
        rc = 1;
    }
done:
    nuri_speculator_free(spec);
    nuri_detokenizer_free(dt);
    nuri_chat_free(fmt);
    nuri_free(tpl_src);
    free(answer);
    nuri_sampler_chain_free(smp);
    free(grammar);
    nuri_context_free(c);
    nuri_model_close(dm);
    nuri_model_close(m);
    if (tokens_arg)
        free(tokens); // args_token_list's
    else
        nuri_free(tokens);
    return rc;
}
