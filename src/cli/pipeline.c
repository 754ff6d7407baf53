/*
 * pipeline.c: `--pp N` for run, eval, bench and serve: the command as a pipeline of N processes
 * started by mpirun (`mpirun -np N nuri-mpi serve -m MODEL --pp N`; see dist/dist.h).
 *
 * Every rank parses the same command line. Rank 0 runs the command itself: its model holds the
 * first layers and the embedding, and its context sends each batch down the pipeline. Every other
 * rank loads its own layers of the same model (-m) and mirrors rank 0's context until rank 0's
 * command is over. Ranks other than 0 ignore SIGINT and SIGTERM (mpirun passes them to every
 * rank): they end when rank 0 ends, which tells them to. At the end each rank prints its peak
 * resident memory, the number a pipeline is for.
 */
#include "cli/cli.h"
#include "cli/model_arg.h"
#include "dist/dist.h"
#include "model/model.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_pp_take(int *argc, char **argv, long *n)
{
    *n = 0;
    for (int i = 1; i < *argc; i++) {
        if (strcmp(argv[i], "--pp")) continue;
        char *end = NULL;
        long v = i + 1 < *argc ? strtol(argv[i + 1], &end, 10) : 0;
        if (i + 1 >= *argc || !end || *end || end == argv[i + 1] || v < 1 || v > 256) {
            fprintf(stderr, "nuri: --pp needs a number of pipeline stages in 1..256\n");
            return -1;
        }
        *n = v;
        memmove(&argv[i], &argv[i + 2], sizeof *argv * (size_t)(*argc - i - 2));
        *argc -= 2;
        argv[*argc] = NULL;
        return 0;
    }
    return 0;
}

/* Peak resident memory of this process (VmHWM), in bytes; 0 if unknown. */
static double peak_rss(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    double kib = 0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) kib = atof(line + 6);
    fclose(f);
    return kib * 1024;
}

static void report(const char *layers)
{
    fprintf(stderr, "nuri: pipeline stage %d of %d%s: peak resident %.1f MiB\n", nuri_dist_rank(),
            nuri_dist_size(), layers, peak_rss() / 1048576.0);
}

/* A stage > 0: its layers of the model named by -m, mirroring rank 0 until it is done. */
static int stage_main(const char *cmd, int argc, char **argv)
{
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    const char *model_path = NULL;
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) model_path = argv[i + 1];
    if (!model_path) {
        // rank 0 finds the same command line wanting (or asked for --help), says so and ends the
        // pipeline at once: pass that on
        int32_t hdr[6];
        nuri_dist_recv(nuri_dist_rank() - 1, NURI_DIST_TAG_FWD, hdr, sizeof hdr);
        if (nuri_dist_rank() + 1 < nuri_dist_size())
            nuri_dist_send(nuri_dist_rank() + 1, NURI_DIST_TAG_FWD, hdr, sizeof hdr);
        return 2;
    }
    nuri_model *m = NULL;
    if (cli_model_arg(cmd, &model_path) || nuri_model_load(model_path, &m) != NURI_OK) {
        if (!m)
            fprintf(stderr, "nuri: %s: stage %d: %s\n", cmd, nuri_dist_rank(), nuri_last_error());
        nuri_dist_abort(1); // the other stages would wait for this one forever
    }
    if (nuri_pipeline_work(m) != NURI_OK) {
        fprintf(stderr, "nuri: %s: stage %d: %s\n", cmd, nuri_dist_rank(), nuri_last_error());
        nuri_dist_abort(1);
    }
    char layers[64];
    snprintf(layers, sizeof layers, " (layers %d..%d)", m->layer_first, m->layer_end - 1);
    nuri_model_free(m);
    report(layers);
    return 0;
}

int cli_pp_run(cli_cmd_fn fn, const char *cmd, int argc, char **argv, long n)
{
    if (strcmp(cmd, "run") && strcmp(cmd, "eval") && strcmp(cmd, "bench") && strcmp(cmd, "serve")) {
        fprintf(stderr, "nuri: %s: --pp applies to run, eval, bench and serve\n", cmd);
        return 2;
    }
    if (nuri_dist_init((int32_t)n) != NURI_OK) {
        int rc = cli_fail(cmd);
        nuri_dist_finish();
        return rc;
    }
    int rc;
    if (nuri_dist_rank() > 0) {
        rc = stage_main(cmd, argc, argv);
    } else {
        rc = fn(argc, argv);
        nuri_pipeline_stop();
        report("");
    }
    nuri_dist_finish();
    return rc;
}
