/*
 * cmd_pull.c: `nuri pull MODEL...`, `nuri ls` and `nuri rm NAME...`: the model cache from the
 * command line (hub/hub.h does the work). pull prints each model's local path on stdout; the
 * progress bar goes to stderr, only when it is a terminal.
 */
#include "cli/cli.h"
#include "cli/model_arg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void pull_usage(FILE *out)
{
    fprintf(out, "usage: nuri pull [--cache-dir DIR] MODEL...\n"
                 "  MODEL: ORG/REPO[:QUANT]           e.g. Qwen/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M\n"
                 "         hf://ORG/REPO/FILE.gguf    one file (all parts of a split model)\n"
                 "  Without QUANT: Q4_K_M if the repository has it, else its only model.\n"
                 "  Cache: --cache-dir, else $XDG_CACHE_HOME/nuri, else ~/.cache/nuri.\n"
                 "  Environment: HF_ENDPOINT (default https://huggingface.co), HF_TOKEN (gated or\n"
                 "  private repositories). An interrupted download resumes where it stopped.\n");
}

static void ls_usage(FILE *out)
{
    fprintf(out, "usage: nuri ls [--cache-dir DIR]\n"
                 "  the models in the cache: name, size, path (partial downloads marked)\n");
}

static void rm_usage(FILE *out)
{
    fprintf(out, "usage: nuri rm [--cache-dir DIR] NAME...\n"
                 "  NAME: ORG/REPO (all of it), ORG/REPO:QUANT, or ORG/REPO/FILE as nuri ls "
                 "shows it\n");
}

/* Reads [--cache-dir DIR] and the positional arguments into pos (argc entries). Returns the
 * number of positionals, or -1 on a usage error (message printed). */
static int cache_args(const char *cmd, int argc, char **argv, const char **dir, const char **pos,
                      void (*usage)(FILE *), int *help)
{
    int n = 0;
    *help = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            *help = 1;
            return 0;
        } else if (!strcmp(a, "--cache-dir")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "nuri: %s: --cache-dir needs a value\n", cmd);
                return -1;
            }
            *dir = argv[++i];
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "nuri: %s: unknown option '%s'\n", cmd, a);
            usage(stderr);
            return -1;
        } else {
            pos[n++] = a;
        }
    }
    return n;
}

int cmd_pull(int argc, char **argv)
{
    const char *dir = NULL, **pos = calloc((size_t)argc, sizeof *pos);
    int help = 0, n = pos ? cache_args("pull", argc, argv, &dir, pos, pull_usage, &help) : -1;
    if (n <= 0) {
        if (n == 0 && !help) pull_usage(stderr);
        free(pos);
        return help ? 0 : 2;
    }
    int rc = 0;
    for (int i = 0; i < n; i++) {
        hub_ref ref;
        nuri_status st = hub_ref_parse(pos[i], &ref);
        if (st == NURI_ERR_NOT_FOUND) {
            fprintf(stderr,
                    "nuri: pull: '%s' is not a hub model: use ORG/REPO[:QUANT] or "
                    "hf://ORG/REPO/FILE.gguf\n",
                    pos[i]);
            rc = 1;
            continue;
        }
        if (st != NURI_OK) {
            rc = cli_fail("pull");
            continue;
        }
        cli_progress prog = {.tty = -1};
        hub_opts o = {.cache_dir = dir, .progress = cli_progress_draw, .progress_ud = &prog};
        hub_model m;
        if (hub_pull(&o, &ref, &m) != NURI_OK) {
            fprintf(stderr, "nuri: pull: %s: %s\n", pos[i], nuri_last_error());
            rc = 1;
            continue;
        }
        char b[32];
        if (!isatty(2) || !m.n_fetched)
            fprintf(stderr, "nuri: pull: %s: %s (%s%s)\n", pos[i],
                    m.n_fetched ? "pulled" : "already in the cache",
                    cli_bytes(m.bytes, b, sizeof b), m.n_paths > 1 ? ", split" : "");
        if (m.n_unchecked)
            fprintf(stderr,
                    "nuri: pull: %s: warning: the hub publishes no sha256 for %zu of its "
                    "files; they were not verified\n",
                    pos[i], m.n_unchecked);
        for (size_t k = 0; k < m.n_paths; k++) printf("%s\n", m.paths[k]);
        hub_model_free(&m);
    }
    free(pos);
    return rc;
}

int cmd_ls(int argc, char **argv)
{
    const char *dir = NULL, **pos = calloc((size_t)argc, sizeof *pos);
    int help = 0, n = pos ? cache_args("ls", argc, argv, &dir, pos, ls_usage, &help) : -1;
    free(pos);
    if (help) return 0;
    if (n != 0) {
        if (n > 0) ls_usage(stderr);
        return 2;
    }
    char *cache;
    if (hub_cache_dir(dir, &cache) != NURI_OK) return cli_fail("ls");
    hub_entry *e;
    size_t ne;
    if (hub_list(cache, &e, &ne) != NURI_OK) {
        free(cache);
        return cli_fail("ls");
    }
    if (!ne) fprintf(stderr, "nuri: ls: no models in %s (get one with nuri pull)\n", cache);
    for (size_t i = 0; i < ne; i++) {
        char b[32], note[64] = "";
        if (e[i].partial)
            snprintf(note, sizeof note, "  (partial download)");
        else if (e[i].n_parts > 1)
            snprintf(note, sizeof note, "  (%d parts)", e[i].n_parts);
        printf("%-60s %10s  %s%s\n", e[i].name, cli_bytes(e[i].bytes, b, sizeof b), e[i].path,
               note);
    }
    hub_entries_free(e, ne);
    free(cache);
    return 0;
}

int cmd_rm(int argc, char **argv)
{
    const char *dir = NULL, **pos = calloc((size_t)argc, sizeof *pos);
    int help = 0, n = pos ? cache_args("rm", argc, argv, &dir, pos, rm_usage, &help) : -1;
    if (n <= 0) {
        if (n == 0 && !help) rm_usage(stderr);
        free(pos);
        return help ? 0 : 2;
    }
    char *cache;
    if (hub_cache_dir(dir, &cache) != NURI_OK) {
        free(pos);
        return cli_fail("rm");
    }
    int rc = 0;
    for (int i = 0; i < n; i++) {
        size_t removed;
        if (hub_remove(cache, pos[i], &removed) != NURI_OK) {
            rc = cli_fail("rm");
            continue;
        }
        fprintf(stderr, "nuri: rm: %s: removed %zu file%s\n", pos[i], removed,
                removed == 1 ? "" : "s");
    }
    free(cache);
    free(pos);
    return rc;
}
