/*
 * model_arg.c: see model_arg.h.
 */
#include "cli/model_arg.h"
#include "cli/progress.h"
#include "gguf/gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char *cli_bytes(uint64_t n, char *buf, size_t cap)
{
    static const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double x = (double)n;
    int u = 0;
    while (x >= 1024 && u < 4) x /= 1024, u++;
    snprintf(buf, cap, u ? "%.1f %s" : "%.0f %s", x, unit[u]);
    return buf;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

void cli_progress_draw(void *ud, const hub_progress *p)
{
    cli_progress *c = ud;
    if (c->tty < 0 || c->tty > 1) c->tty = isatty(2);
    if (!c->tty) return;
    if (c->file != p->file || c->part != p->part) { // a new file (or a new part)
        c->file = p->file;
        c->part = p->part;
        c->t0 = now_s();
    }
    double dt = now_s() - c->t0;
    double rate = dt > 0.2 ? (double)(p->done - p->resumed_at) / dt : 0; // bytes/s, this run
    char done[32], total[32], r[32], eta[32] = "--:--", bar[26];
    int pct = p->total ? (int)(100.0 * (double)p->done / (double)p->total) : 0;
    int fill = p->total ? (int)(24.0 * (double)p->done / (double)p->total) : 0;
    for (int i = 0; i < 24; i++) bar[i] = i < fill ? '=' : i == fill ? '>' : ' ';
    bar[24] = 0;
    if (rate > 0 && p->total > p->done) {
        long s = (long)((double)(p->total - p->done) / rate);
        snprintf(eta, sizeof eta, "%ld:%02ld", s / 60, s % 60);
    } else if (p->finished) {
        snprintf(eta, sizeof eta, "done");
    }
    const char *name = strrchr(p->file, '/') ? strrchr(p->file, '/') + 1 : p->file;
    char label[64];
    if (p->n_parts > 1)
        snprintf(label, sizeof label, "[%d/%d] %.40s", p->part, p->n_parts, name);
    else
        snprintf(label, sizeof label, "%.48s", name);
    fprintf(stderr, "\r\033[K%s %3d%% [%s] %s / %s  %s/s  ETA %s", label, pct, bar,
            cli_bytes(p->done, done, sizeof done), cli_bytes(p->total, total, sizeof total),
            cli_bytes((uint64_t)rate, r, sizeof r), eta);
    if (p->finished) fputc('\n', stderr);
    fflush(stderr);
}

static char *resolved[16]; // what cli_model_arg handed out (kept until exit)

int cli_model_arg(const char *cmd, const char **model)
{
    const char *arg = *model;
    if (!access(arg, F_OK)) return 0; // a local path that exists always wins
    hub_ref ref;
    nuri_status st = hub_ref_parse(arg, &ref);
    if (st == NURI_ERR_NOT_FOUND) return 0; // a local path: the loader says it is missing
    if (st != NURI_OK) {
        fprintf(stderr, "nuri: %s: %s\n", cmd, nuri_last_error());
        return 1;
    }
    hub_opts o = {0};
    hub_model m;
    if (hub_find_cached(&o, &ref, &m) != NURI_OK) {
        cli_progress prog = {.tty = -1};
        o.progress = cli_progress_draw;
        o.progress_ud = &prog;
        if (hub_pull(&o, &ref, &m) != NURI_OK) {
            fprintf(stderr, "nuri: %s: %s: %s\n", cmd, arg, nuri_last_error());
            return 1;
        }
        if (m.n_fetched && !isatty(2)) {
            char b[32];
            fprintf(stderr, "nuri: %s: pulled %s (%s) into %s\n", cmd, arg,
                    cli_bytes(m.bytes, b, sizeof b), m.paths[0]);
        }
    }
    if (m.n_paths > 1) {
        fprintf(stderr,
                "nuri: %s: %s is split into %zu files (%s, ...); they are in the cache, but nuri "
                "cannot load a split model yet\n",
                cmd, arg, m.n_paths, m.paths[0]);
        hub_model_free(&m);
        return 1;
    }
    size_t slot = 0;
    while (slot < sizeof resolved / sizeof resolved[0] && resolved[slot]) slot++;
    if (slot == sizeof resolved / sizeof resolved[0]) {
        fprintf(stderr, "nuri: %s: too many models\n", cmd);
        hub_model_free(&m);
        return 1;
    }
    resolved[slot] = m.paths[0];
    m.paths[0] = NULL;
    hub_model_free(&m);
    *model = resolved[slot];
    return 0;
}

/* Whether the model is one of nuri's random-weight test models: what nuri mkmodel writes (named
 * "nuri mkmodel ARCH SHAPE TYPE seed N") and tests/data/models/ (named "<arch>-tiny", 256 wide). */
static bool random_weights(const nuri_model *m)
{
    gguf_str name;
    const gguf_kv *kv = gguf_find_kv(m->file, "general.name");
    if (!kv || gguf_kv_str(kv, &name) != NURI_OK) return false;
    if (name.len >= 13 && !memcmp(name.ptr, "nuri mkmodel ", 13)) return true;
    static const char *const tiny[] = {"llama-tiny", "llama3rope-tiny", "qwen2-tiny", "qwen3-tiny"};
    for (size_t i = 0; i < sizeof tiny / sizeof tiny[0]; i++)
        if (gguf_str_eq(name, tiny[i]) && m->hp.n_embd <= 256) return true;
    return false;
}

nuri_status cli_model_load(const char *path, nuri_model **out)
{
    cli_bar bar = {.tty = -1, .bytes = true};
    nuri_model_load_opts o = {.progress = cli_bar_update, .progress_ud = &bar};
    nuri_status st = nuri_model_load_with(path, &o, out);
    cli_bar_end(&bar);
    if (st != NURI_OK) return st;
    const nuri_model *m = *out;
    char a[32], b[32];
    if (m->pack_declined_avail)
        fprintf(stderr,
                "nuri: note: running from the mapped file, not repacked: the repacked weights "
                "(%s) would not fit in the available memory (%s); --repack on to repack anyway\n",
                cli_bytes(m->pack_bytes, a, sizeof a),
                cli_bytes(m->pack_declined_avail, b, sizeof b));
    if (random_weights(m))
        fprintf(stderr,
                "nuri: note: %s has random weights (a test model): its output is meaningless\n",
                path);
    return NURI_OK;
}
