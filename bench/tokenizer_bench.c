/*
 * tokenizer_bench.c: tokenizer throughput. Repeats a text file to the requested size, tokenizes it
 * (best of 3), then detokenizes the ids through the streaming detokenizer, and prints one line:
 *   <vocab> tokenize <MB/s> MB/s <tokens/s> tok/s  detok <MB/s> MB/s  (<bytes> bytes, <n> tokens)
 * Built and run by bench/tokenizer.sh.
 */
#include "tokenizer/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: tokenizer_bench MODEL.gguf TEXT [MB]\n");
        return 2;
    }
    double mb = argc > 3 ? atof(argv[3]) : 4;
    FILE *f = fopen(argv[2], "rb");
    if (!f) {
        fprintf(stderr, "cannot read %s\n", argv[2]);
        return 1;
    }
    static char unit[1 << 20];
    size_t ul = fread(unit, 1, sizeof unit, f);
    fclose(f);
    size_t want = (size_t)(mb * 1024 * 1024), len = 0;
    char *text = malloc(want + ul);
    while (len + ul <= want) {
        memcpy(text + len, unit, ul);
        len += ul;
    }
    gguf_file *g;
    nuri_vocab *v;
    if (gguf_open(argv[1], &g) || nuri_vocab_load(g, &v)) {
        fprintf(stderr, "%s: %s\n", argv[1], nuri_last_error());
        return 1;
    }
    double best = 1e9;
    int32_t *ids = NULL;
    size_t n = 0;
    for (int rep = 0; rep < 3; rep++) {
        free(ids);
        double t0 = now();
        if (nuri_tokenize(v, text, len, 0, &ids, &n)) {
            fprintf(stderr, "tokenize: %s\n", nuri_last_error());
            return 1;
        }
        double dt = now() - t0;
        if (dt < best) best = dt;
    }
    nuri_detok d;
    nuri_detok_init(&d, v, NURI_DETOK_STRIP_PREFIX_SPACE);
    double t0 = now();
    size_t out = 0, m;
    for (size_t i = 0; i < n; i++) {
        nuri_detok_feed(&d, ids[i], &m);
        out += m;
    }
    nuri_detok_flush(&d, &m);
    out += m;
    double dt_detok = now() - t0;
    const char *name = strrchr(argv[1], '/');
    printf(
        "%-28s tokenize %7.2f MB/s %10.0f tok/s   detok %8.1f MB/s   (%zu bytes, %zu tokens%s)\n",
        name ? name + 1 : argv[1], len / 1e6 / best, n / best, out / 1e6 / dt_detok, len, n,
        out == len ? "" : ", round trip differs");
    nuri_detok_free(&d);
    free(ids);
    free(text);
    nuri_vocab_free(v);
    gguf_close(g);
    return 0;
}
