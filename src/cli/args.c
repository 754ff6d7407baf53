/*
 * args.c: see args.h.
 */
#include "cli/args.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *args_value(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        fprintf(stderr, "nuri: option %s needs a value\n", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

bool args_int(const char *s, long lo, long hi, const char *what, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "nuri: %s must be an integer in %ld..%ld (got '%s')\n", what, lo, hi, s);
        return false;
    }
    *out = v;
    return true;
}

bool args_float(const char *s, double lo, double hi, const char *what, float *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "nuri: %s must be a number in %g..%g (got '%s')\n", what, lo, hi, s);
        return false;
    }
    *out = (float)v;
    return true;
}

bool args_token_list(const char *s, int32_t **ids, int32_t *n)
{
    size_t cap = 1;
    for (const char *p = s; *p; p++) cap += *p == ',';
    int32_t *v = malloc(cap * sizeof *v);
    if (!v) {
        fprintf(stderr, "nuri: out of memory\n");
        return false;
    }
    size_t k = 0;
    const char *p = s;
    for (;;) {
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (errno || end == p || x < 0 || x > INT32_MAX || (*end && *end != ',')) {
            fprintf(stderr, "nuri: --tokens wants comma-separated token ids, bad at '%s'\n", p);
            free(v);
            return false;
        }
        v[k++] = (int32_t)x;
        if (!*end) break;
        p = end + 1;
    }
    *ids = v;
    *n = (int32_t)k;
    return true;
}
