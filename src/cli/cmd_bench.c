/*
 * cmd_bench.c: `nuri bench -m MODEL [-p 512] [-n 128] [-t THREADS] [-r REPS] [--json]` and
 * `nuri bench --membw [-t THREADS] [--json]`
 *
 * Measures prompt processing (pp: -p tokens in one batch, from an empty cache) and generation
 * (tg: -n tokens decoded one at a time, from an empty cache), like llama-bench: tokens/s as the
 * mean and standard deviation over the repetitions, plus the bytes of weights read per generated
 * token and the GB/s that makes. Token ids are arbitrary (speed does not depend on them).
 *
 * After the model tests it measures the machine's read bandwidth with the same threads (the
 * membw probe, kernels/membw.h) and reports each test's GB/s as a fraction of it: the share of the
 * memory roof reached. `--membw` runs only the probe. Prompt tests count the weights once per
 * batch (bytes_per_token = weight bytes / prompt tokens). For a mixture of experts, a generated
 * token counts only the experts it uses, a prompt batch all of them.
 *
 * --seqs S generates for S sequences at once (one batch of S tokens per step, logits for each, as
 * the server's continuous batching runs them): tg's tokens/s counts all S, and its GB/s counts the
 * weights once per step. Under a pipeline (--pp N) such a batch is cut into micro-batches that the
 * stages work on at once.
 */
#include "cli/args.h"
#include "cli/cli.h"
#include "cli/model_arg.h"
#include "cli/progress.h"
#include "kernels/kernels.h"
#include "kernels/membw.h"
#include "model/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void bench_usage(FILE *out)
{
    fprintf(out,
            "usage: nuri bench -m MODEL [-p N_PROMPT] [-n N_GEN] [-t THREADS] [-r REPS] "
            "[--json] [--no-membw]\n"
            "       nuri bench --membw [-t THREADS] [--membw-mib MIB] [--json]\n"
            "  -p 0 or -n 0 skips that test\n"
            "  --seqs S       generate for S sequences at once (batches of S tokens)\n"
            "  -d, --depth D  the cache holds D tokens before each test (long-context speed:\n"
            "                 the prompt is processed and tokens generated after them; the\n"
            "                 D-token prompt that fills it is timed once, as \"depth\")\n"
            "  --membw        only measure the read bandwidth (streaming over MIB MiB, "
            "default 1024)\n"
            "  --no-membw     skip the bandwidth probe after the model tests\n" ARGS_REPACK_HELP
                ARGS_KV_TYPE_HELP
            "  On a terminal, a progress line on stderr shows the tokens decoded so far.\n");
}

typedef struct result {
    double mean, sd; // tokens/s
} result;

static void summarize(const double *v, int n, result *r)
{
    double s = 0, ss = 0;
    for (int i = 0; i < n; i++) s += v[i];
    r->mean = s / n;
    for (int i = 0; i < n; i++) ss += (v[i] - r->mean) * (v[i] - r->mean);
    r->sd = n > 1 ? sqrt(ss / (n - 1)) : 0;
}

int cmd_bench(int argc, char **argv)
{
    const char *model_path = NULL, *v;
    long n_prompt = 512, n_gen = 128, threads = 1, reps = 3, membw_mib = 1024, n_seqs = 1;
    long depth = 0;
    bool json = false, membw_only = false, membw = true;
    const char *kv_k = "f16", *kv_v = "f16"; // --kv-type
    int kv;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            bench_usage(stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(model_path = args_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "-p")) {
            if (!(v = args_value(argc, argv, &i)) || !args_int(v, 0, 65536, "-p", &n_prompt))
                return 2;
        } else if (!strcmp(a, "-n")) {
            if (!(v = args_value(argc, argv, &i)) || !args_int(v, 0, 65536, "-n", &n_gen)) return 2;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (!(v = args_value(argc, argv, &i)) || !args_int(v, 1, 256, "-t", &threads)) return 2;
        } else if (!strcmp(a, "--seqs")) {
            if (!(v = args_value(argc, argv, &i)) || !args_int(v, 1, 256, "--seqs", &n_seqs))
                return 2;
        } else if (!strcmp(a, "-d") || !strcmp(a, "--depth")) {
            if (!(v = args_value(argc, argv, &i)) || !args_int(v, 0, 1 << 21, "--depth", &depth))
                return 2;
        } else if ((kv = args_kv_type(argc, argv, &i, &kv_k, &kv_v)) != 0) {
            if (kv < 0) return 2;
        } else if (!strcmp(a, "-r")) {
            if (!(v = args_value(argc, argv, &i)) || !args_int(v, 1, 1000, "-r", &reps)) return 2;
        } else if (!strcmp(a, "--json")) {
            json = true;
        } else if (!strcmp(a, "--repack")) {
            if (!(v = args_value(argc, argv, &i)) || !args_repack(v)) return 2;
        } else if (!strcmp(a, "--membw")) {
            membw_only = true;
        } else if (!strcmp(a, "--no-membw")) {
            membw = false;
        } else if (!strcmp(a, "--membw-mib")) {
            if (!(v = args_value(argc, argv, &i)) ||
                !args_int(v, 64, 1 << 20, "--membw-mib", &membw_mib))
                return 2;
        } else {
            fprintf(stderr, "nuri: bench: unknown option '%s'\n", a);
            bench_usage(stderr);
            return 2;
        }
    }
    if (membw_only) {
        double gbs;
        if (nuri_membw_measure((int)threads, (size_t)membw_mib << 20, 5, &gbs) != NURI_OK)
            return cli_fail("bench --membw");
        if (json)
            printf("{\"test\": \"membw\", \"n_threads\": %ld, \"bytes\": %zu, \"gb_per_s\": "
                   "%.3f}\n",
                   threads, (size_t)membw_mib << 20, gbs);
        else
            printf("membw: %.2f GB/s read bandwidth (%ld threads, %ld MiB buffer, best of 5)\n",
                   gbs, threads, membw_mib);
        return 0;
    }
    if (!model_path) {
        bench_usage(stderr);
        return 2;
    }
    if (depth > 0 && n_seqs > 1) {
        fprintf(stderr, "nuri: bench: --depth is for one sequence (not with --seqs)\n");
        return 2;
    }
    if (cli_model_arg("bench", &model_path)) return 1;
    nuri_model *m;
    if (cli_model_load(model_path, &m) != NURI_OK) return cli_fail("bench");
    long n_max = n_prompt > n_gen ? n_prompt : n_gen;
    // the depth's tokens, then the tests' (toks + depth)
    int32_t *toks_all = malloc(sizeof *toks_all * (size_t)(depth + (n_max ? n_max : 1)));
    int32_t *toks = toks_all ? toks_all + depth : NULL;
    double *pp = calloc((size_t)reps, sizeof *pp), *tg = calloc((size_t)reps, sizeof *tg);
    for (long i = 0; toks_all && i < depth + n_max; i++)
        toks_all[i] = (int32_t)(1 + (i * 7919) % (m->hp.n_vocab - 1));
    const int32_t d0 = (int32_t)depth; // the tests' first position
    nuri_ctx *c = NULL;
    // each sequence's cache in whole pages, so that S of them fit
    const long seq_ctx = (depth + n_max + 1 + NURI_KV_PAGE - 1) / NURI_KV_PAGE * NURI_KV_PAGE;
    const int32_t S = (int32_t)n_seqs;
    // the batch: the prompt test's, S decodes, and for a depth at least 512 (as llama.cpp's peer
    // fills its cache), or the depth's prompt would be decoded token by token
    int32_t n_batch = n_prompt > S ? (int32_t)n_prompt : S;
    if (depth > 0 && n_batch < 512) n_batch = 512;
    nuri_ctx_params cp = {.n_ctx = (int32_t)(seq_ctx * n_seqs),
                          .n_batch = n_batch,
                          .n_threads = (int32_t)threads,
                          .n_logits = S,
                          .n_seq = S};
    int32_t *b_tok = malloc(sizeof *b_tok * (size_t)S), *b_pos = malloc(sizeof *b_pos * (size_t)S);
    int32_t *b_seq = malloc(sizeof *b_seq * (size_t)S);
    int8_t *b_want = malloc((size_t)S);
    int rc = 0;
    cli_bar bar = {.tty = -1};
    if (!toks || !pp || !tg || !b_tok || !b_pos || !b_seq || !b_want ||
        nuri_kv_type_parse(kv_k, &cp.kv_type_k) != NURI_OK ||
        nuri_kv_type_parse(kv_v, &cp.kv_type_v) != NURI_OK || nuri_ctx_new(m, &cp, &c) != NURI_OK) {
        rc = cli_fail("bench");
        goto done;
    }
    // progress in tokens decoded: the warm-up batch, then each repetition's prompt and tokens
    // (a redraw costs microseconds ten times a second at most: nothing next to a token)
    const uint64_t warm = n_prompt > 0 ? (uint64_t)n_prompt : 1;
    const uint64_t total = (uint64_t)depth + warm + (uint64_t)reps * (uint64_t)(n_prompt + n_gen);
    uint64_t done_toks = 0;
    cli_bar_update(&bar, "benchmarking (tokens)", 0, total);
    // the depth, computed once (timed: a long prompt's speed, attention included, as llama.cpp's
    // peer times its own fill): each test below truncates the sequence back to it
    double fill = 0; // tokens/s of the depth's prompt
    if (depth > 0) {
        const double t0 = now_s();
        if (nuri_ctx_decode(c, toks_all, d0, 0, false) != NURI_OK) {
            rc = cli_fail("bench");
            goto done;
        }
        fill = (double)depth / (now_s() - t0);
        cli_bar_update(&bar, "benchmarking (tokens)", done_toks += (uint64_t)depth, total);
    }
    // one warm-up pass, like llama-bench's: the mapped weights, the activation buffers and the
    // threads' scratch are touched before anything is timed
    if (nuri_ctx_decode(c, toks, n_prompt > 0 ? (int32_t)n_prompt : 1, d0, false) != NURI_OK) {
        rc = cli_fail("bench");
        goto done;
    }
    cli_bar_update(&bar, "benchmarking (tokens)", done_toks += warm, total);
    for (long r = 0; r < reps; r++) {
        if (n_prompt > 0) {
            nuri_ctx_seq_truncate(c, 0, d0);
            double t0 = now_s();
            if (nuri_ctx_decode(c, toks, (int32_t)n_prompt, d0, false) != NURI_OK) {
                rc = cli_fail("bench");
                goto done;
            }
            pp[r] = (double)n_prompt / (now_s() - t0);
            cli_bar_update(&bar, "benchmarking (tokens)", done_toks += (uint64_t)n_prompt, total);
        }
        if (n_gen > 0) {
            if (S == 1) nuri_ctx_seq_truncate(c, 0, d0);
            double t0 = now_s();
            for (long i = 0; i < n_gen; i++) {
                nuri_status st;
                if (S == 1) {
                    st = nuri_ctx_decode(c, &toks[i], 1, d0 + (int32_t)i, false);
                } else {
                    for (int32_t q = 0; q < S; q++) {
                        b_tok[q] = toks[(i + q) % n_max];
                        b_pos[q] = (int32_t)i;
                        b_seq[q] = q;
                        b_want[q] = 1;
                    }
                    const nuri_batch b = {
                        .n = S, .token = b_tok, .pos = b_pos, .seq = b_seq, .logits = b_want};
                    st = nuri_ctx_decode_batch(c, &b);
                }
                if (st != NURI_OK) {
                    rc = cli_fail("bench");
                    goto done;
                }
                cli_bar_update(&bar, "benchmarking (tokens)", ++done_toks, total);
            }
            tg[r] = (double)(n_gen * S) / (now_s() - t0);
        }
    }
    cli_bar_end(&bar);
    result rp, rt;
    summarize(pp, (int)reps, &rp);
    summarize(tg, (int)reps, &rt);
    const double bpt = (double)nuri_model_bytes_per_token(m);
    const char *isa = nuri_isa_name(nuri_cpu_isa());
    double bw = 0; // GB/s the probe measured with the same threads; 0 = not measured
    if (membw && nuri_membw_measure((int)threads, (size_t)membw_mib << 20, 3, &bw) != NURI_OK) {
        rc = cli_fail("bench");
        goto done;
    }
    // a prompt batch reads each matrix once; of a mixture of experts, every expert (an upper
    // bound: a short prompt may leave some unread)
    const double bpt_pp =
        n_prompt > 0 ? (double)nuri_model_bytes_per_batch(m) / (double)n_prompt : 0;
    const double gbs_pp = bpt_pp * rp.mean / 1e9, gbs_tg = bpt * rt.mean / (double)S / 1e9;
    // the cache: bytes a token's K and V take over all layers, and the pool's whole size
    const double kv_tok = (double)nuri_ctx_kv_bytes(c, 1);
    if (json) {
        printf("{\"test\": \"kv\", \"kv_type_k\": \"%s\", \"kv_type_v\": \"%s\", \"depth\": %ld, "
               "\"bytes_per_token\": %.0f, \"pool_bytes\": %.0f, \"fill_tokens_per_s\": %.3f}\n",
               kv_k, kv_v, depth, kv_tok, kv_tok * nuri_ctx_n_ctx(c), fill);
        if (n_prompt > 0)
            printf("{\"test\": \"pp%ld\", \"n_threads\": %ld, \"isa\": \"%s\", \"tokens_per_s\": "
                   "%.3f, \"stddev\": %.3f, \"bytes_per_token\": %.0f, \"gb_per_s\": %.3f, "
                   "\"bandwidth_fraction\": %.4f}\n",
                   n_prompt, threads, isa, rp.mean, rp.sd, bpt_pp, gbs_pp,
                   bw > 0 ? gbs_pp / bw : 0);
        if (n_gen > 0)
            printf("{\"test\": \"tg%ld\", \"n_threads\": %ld, \"isa\": \"%s\", \"n_seqs\": %ld, "
                   "\"tokens_per_s\": %.3f, \"stddev\": %.3f, \"bytes_per_token\": %.0f, "
                   "\"gb_per_s\": %.3f, \"bandwidth_fraction\": %.4f}\n",
                   n_gen, threads, isa, n_seqs, rt.mean, rt.sd, bpt / (double)S, gbs_tg,
                   bw > 0 ? gbs_tg / bw : 0);
        if (bw > 0)
            printf("{\"test\": \"membw\", \"n_threads\": %ld, \"bytes\": %zu, \"gb_per_s\": "
                   "%.3f}\n",
                   threads, (size_t)membw_mib << 20, bw);
    } else {
        printf("model: %s (%s, %.1f MiB of weights per token%s), threads %ld, %s kernels\n",
               model_path, m->hp.arch_name, bpt / 1048576.0,
               m->hp.n_expert > 0 ? ": active experts only" : "", threads, isa);
        char pb[32];
        printf("KV cache: K %s, V %s, %.1f KiB per token, %s for %d tokens; tests at depth %ld\n",
               kv_k, kv_v, kv_tok / 1024.0,
               cli_bytes((uint64_t)(kv_tok * nuri_ctx_n_ctx(c)), pb, sizeof pb), nuri_ctx_n_ctx(c),
               depth);
        if (depth > 0)
            printf("depth    %10.2f tok/s  (the %ld-token prompt that fills it, once)\n", fill,
                   depth);
        if (m->packed)
            printf("weights: repacked for this CPU (%s)\n",
                   cli_bytes(m->pack_bytes, pb, sizeof pb));
        else
            printf("weights: read in place from the mapped file%s\n",
                   m->pack_declined_avail ? " (the repacked copy would not fit in memory)" : "");
        if (n_prompt > 0) printf("pp%-6ld %10.2f tok/s  +- %.2f\n", n_prompt, rp.mean, rp.sd);
        if (n_gen > 0) {
            char name[32];
            snprintf(name, sizeof name, n_seqs > 1 ? "tg%ld x%ld" : "tg%ld", n_gen, n_seqs);
            printf("%-8s %10.2f tok/s  +- %.2f   %.2f GB/s of weights", name, rt.mean, rt.sd,
                   gbs_tg);
            if (bw > 0) printf(", %.0f%% of the %.2f GB/s read bandwidth", 100 * gbs_tg / bw, bw);
            printf("\n");
        }
    }
done:
    cli_bar_end(&bar);
    nuri_ctx_free(c);
    nuri_model_free(m);
    free(toks_all);
    free(b_tok);
    free(b_pos);
    free(b_seq);
    free(b_want);
    free(pp);
    free(tg);
    return rc;
}
