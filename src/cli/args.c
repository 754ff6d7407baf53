/*
 * args.c: see args.h.
 */
#include "cli/args.h"

#include "base/status.h"
#include "grammar/grammar.h"
#include "grammar/json_schema.h"
#include "sample/sampler.h"
#include "model/model.h"

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

int args_sampling(int argc, char **argv, int *i, nuri_sampler_params *sp, bool *seed_given)
{
    const char *a = argv[*i], *v;
    long n;
    if (!strcmp(a, "--temp"))
        return (v = args_value(argc, argv, i)) && args_float(v, 0, 100, a, &sp->temperature) ? 1
                                                                                             : -1;
    if (!strcmp(a, "--top-p"))
        return (v = args_value(argc, argv, i)) && args_float(v, 0, 1, a, &sp->top_p) ? 1 : -1;
    if (!strcmp(a, "--min-p"))
        return (v = args_value(argc, argv, i)) && args_float(v, 0, 1, a, &sp->min_p) ? 1 : -1;
    if (!strcmp(a, "--repeat-penalty"))
        return (v = args_value(argc, argv, i)) &&
                       args_float(v, 0.01, 100, a, &sp->repetition_penalty)
                   ? 1
                   : -1;
    if (!strcmp(a, "--top-k")) {
        if (!(v = args_value(argc, argv, i)) || !args_int(v, 0, 1 << 24, a, &n)) return -1;
        sp->top_k = (int32_t)n;
        return 1;
    }
    if (!strcmp(a, "--repeat-last-n")) {
        if (!(v = args_value(argc, argv, i)) || !args_int(v, 0, NURI_SAMPLER_MAX_LAST_N, a, &n))
            return -1;
        sp->penalty_last_n = (int32_t)n;
        return 1;
    }
    if (!strcmp(a, "--repack")) return (v = args_value(argc, argv, i)) && args_repack(v) ? 1 : -1;
    if (!strcmp(a, "--seed")) {
        if (!(v = args_value(argc, argv, i)) || !args_int(v, 0, 0x7fffffffL, a, &n)) return -1;
        sp->seed = (uint64_t)n;
        if (seed_given) *seed_given = true;
        return 1;
    }
    return 0;
}

int args_sampling_api(int argc, char **argv, int *i, nuri_sampling_params *sp)
{
    nuri_sampler_params p = nuri_sampler_params_default();
    p.temperature = sp->temperature;
    p.top_p = sp->top_p;
    p.min_p = sp->min_p;
    p.repetition_penalty = sp->repetition_penalty;
    p.top_k = sp->top_k;
    p.penalty_last_n = sp->penalty_last_n;
    p.seed = sp->seed;
    int r = args_sampling(argc, argv, i, &p, NULL);
    sp->temperature = p.temperature;
    sp->top_p = p.top_p;
    sp->min_p = p.min_p;
    sp->repetition_penalty = p.repetition_penalty;
    sp->top_k = p.top_k;
    sp->penalty_last_n = p.penalty_last_n;
    sp->seed = p.seed;
    return r;
}

int args_kv_type(int argc, char **argv, int *i, const char **k, const char **v)
{
    static const char *const names[] = {"f16", "q8_0", "q4_0"};
    const char *a = argv[*i];
    const bool both = !strcmp(a, "--kv-type"), ko = !strcmp(a, "--kv-type-k"),
               vo = !strcmp(a, "--kv-type-v");
    if (!both && !ko && !vo) return 0;
    const char *val = args_value(argc, argv, i);
    if (!val) return -1;
    for (size_t n = 0; n < sizeof names / sizeof names[0]; n++)
        if (!strcmp(val, names[n])) {
            if (both || ko) *k = names[n];
            if (both || vo) *v = names[n];
            return 1;
        }
    fprintf(stderr, "nuri: %s must be f16, q8_0 or q4_0 (got '%s')\n", a, val);
    return -1;
}

bool args_repack(const char *value)
{
    nuri_repack r;
    if (!nuri_repack_parse(value, &r) || !strcmp(value, "0") || !strcmp(value, "1")) {
        fprintf(stderr, "nuri: --repack must be auto, on or off (got '%s')\n", value);
        return false;
    }
    setenv("NURI_PACK", value, 1);
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

/* Reads a whole file (caller frees); NULL with errno set. */
static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        if (cap > (64u << 20)) { // far past any grammar limit: stop reading
            free(buf);
            buf = NULL;
            errno = EFBIG;
            break;
        }
        char *b = realloc(buf, cap *= 2);
        if (!b) free(buf);
        buf = b;
    }
    if (buf && ferror(f)) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = n;
    return buf;
}

/* Reads and compiles the one file given: into *out when out is not NULL, into *text (kept) when
 * text is not NULL. */
static bool grammar_file_read(const char *grammar_file, const char *schema_file,
                              struct nuri_grammar **out, char **text_out)
{
    if (out) *out = NULL;
    if (text_out) *text_out = NULL;
    if (grammar_file && schema_file) {
        fprintf(stderr, "nuri: give --grammar or --json-schema, not both\n");
        return false;
    }
    const char *file = grammar_file ? grammar_file : schema_file;
    if (!file) return true;
    const char *opt = grammar_file ? "--grammar" : "--json-schema";
    size_t len;
    char *text = read_all(file, &len);
    if (!text) {
        fprintf(stderr, "nuri: %s %s: %s\n", opt, file, strerror(errno));
        return false;
    }
    char path[256];
    nuri_grammar *g = NULL;
    nuri_status st = grammar_file ? nuri_grammar_parse(text, len, &g)
                                  : nuri_json_schema_grammar_text(text, len, &g, path, sizeof path);
    if (st == NURI_OK && text_out && memchr(text, 0, len))
        st = nuri_error(NURI_ERR_FORMAT, "the file holds a NUL byte");
    if (st != NURI_OK) {
        fprintf(stderr, "nuri: %s %s: %s\n", opt, file, nuri_last_error());
        nuri_grammar_free(g);
        free(text);
        return false;
    }
    if (out)
        *out = g;
    else
        nuri_grammar_free(g);
    if (text_out) {
        char *t = realloc(text, len + 1); // NUL-terminated for the API
        if (!t) {
            fprintf(stderr, "nuri: out of memory\n");
            free(text);
            if (out) nuri_grammar_free(*out);
            return false;
        }
        t[len] = 0;
        *text_out = t;
    } else {
        free(text);
    }
    return true;
}

bool args_grammar(const char *grammar_file, const char *schema_file, nuri_grammar **out)
{
    return grammar_file_read(grammar_file, schema_file, out, NULL);
}

bool args_grammar_text(const char *grammar_file, const char *schema_file, char **text)
{
    return grammar_file_read(grammar_file, schema_file, NULL, text);
}
