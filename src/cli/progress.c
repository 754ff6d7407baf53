/*
 * progress.c: see progress.h.
 */
#include "cli/progress.h"
#include "cli/model_arg.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

void cli_bar_update(void *ud, const char *what, uint64_t done, uint64_t total)
{
    cli_bar *b = ud;
    if (b->tty < 0 || b->tty > 1) b->tty = isatty(2);
    if (!b->tty) return;
    const double t = now_s();
    if (b->what != what) { // a new step
        b->what = what;
        b->t0 = t;
        b->last = 0;
    }
    const bool end = done >= total;
    if (end) {
        cli_bar_end(b);
        return;
    }
    if (t - b->last < 0.1) return; // ten redraws a second are plenty
    b->last = t;
    char bar[26], d[32], n[32], el[48];
    const double frac = total ? (double)done / (double)total : 0;
    const int fill = (int)(24 * frac);
    for (int i = 0; i < 24; i++) bar[i] = i < fill ? '=' : i == fill ? '>' : ' ';
    bar[24] = 0;
    const long s = (long)(t - b->t0);
    snprintf(el, sizeof el, "%ld:%02ld", s / 60, s % 60);
    if (b->bytes) {
        cli_bytes(done, d, sizeof d);
        cli_bytes(total, n, sizeof n);
    } else {
        snprintf(d, sizeof d, "%llu", (unsigned long long)done);
        snprintf(n, sizeof n, "%llu", (unsigned long long)total);
    }
    fprintf(stderr, "\r\033[K%s %3d%% [%s] %s / %s  %s", what, (int)(100 * frac), bar, d, n, el);
    fflush(stderr);
    b->shown = true;
}

void cli_bar_end(cli_bar *b)
{
    if (b->shown) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
    }
    b->shown = false;
}
