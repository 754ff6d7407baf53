/*
 * progress.h: one line of progress on stderr for the CLI's long steps (loading and repacking a
 * model, mkmodel, quantize, bench): "what  42% [=========>      ] 1.2 GiB / 2.9 GiB  0:07", redrawn
 * in place with '\r' at most ten times a second and cleared when the step ends. Only when stderr is
 * a terminal; silent otherwise, so that logs and pipes get no control characters. Downloads have
 * their own bar (cli_progress_draw in model_arg.h), in the same style.
 */
#ifndef NURI_CLI_PROGRESS_H
#define NURI_CLI_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

typedef struct cli_bar {
    bool bytes;      // done/total are bytes (shown as MiB, GiB); else counts
    int tty;         // -1 not yet known, 0 no, 1 yes
    bool shown;      // a line is on the screen
    double t0, last; // seconds (monotonic): the step's start, the last redraw
    const char *what;
} cli_bar;

/* A nuri_work_progress_fn drawing into the cli_bar ud (zeroed, with .tty = -1 and .bytes set). */
void cli_bar_update(void *ud, const char *what, uint64_t done, uint64_t total);
/* Clears the line, if one is shown. */
void cli_bar_end(cli_bar *b);

#endif
