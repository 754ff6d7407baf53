/*
 * model_arg.h: what the CLI does with a model argument (-m MODEL, or info's MODEL): a local path
 * that exists is used as it is; "hf://ORG/REPO/FILE.gguf" and "ORG/REPO[:QUANT]" come from the
 * cache, pulled on first use (see hub/hub.h); anything else is left to the loader to report.
 */
#ifndef NURI_CLI_MODEL_ARG_H
#define NURI_CLI_MODEL_ARG_H

#include "hub/hub.h"
#include "model/model.h"

/* Replaces *model with the local path to load. Returns 0, or 1 after printing
 * "nuri: <cmd>: <message>". The new string is owned by this module and lives until exit. */
int cli_model_arg(const char *cmd, const char **model);

/* A hub_progress_fn that draws a progress bar (bytes, rate, ETA) on stderr when stderr is a
 * terminal, and does nothing otherwise. ud: a cli_progress, zeroed before the first call. */
typedef struct cli_progress {
    const char *file; // the file the bar is drawing (borrowed from the hub's progress)
    int part;
    double t0; // seconds (monotonic) when this file's transfer started
    int tty;   // -1 unknown, 0 no, 1 yes
} cli_progress;
void cli_progress_draw(void *ud, const hub_progress *p);

/* "1.5 MiB" into buf (cap bytes). */
const char *cli_bytes(uint64_t n, char *buf, size_t cap);
/* nuri_model_load with the --repack choice, a progress line while repacking, and the notes a
 * person should see: a model with random weights (nuri mkmodel's), and auto declining to repack
 * for want of memory. */
nuri_status cli_model_load(const char *path, nuri_model **out);

#endif
