/*
 * hub_ref.c: see hub_ref.h. Pure string work: no I/O, no allocation except hub_pick's result.
 */
#include "hub/hub_ref.h"

#include "base/status.h"
#include "hub/hub_parse.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- names ---------------------------------------------------------------------------------- */

static bool name_char(char c)
{
    return isalnum((unsigned char)c) || c == '-' || c == '_' || c == '.';
}

/* Copies s[0..n) into out if it is a valid ORG or REPO. */
static bool take_name(const char *s, size_t n, char out[HUB_NAME_MAX + 1])
{
    if (n == 0 || n > HUB_NAME_MAX || s[0] == '.' || s[0] == '-') return false;
    for (size_t i = 0; i < n; i++) {
        if (!name_char(s[i])) return false;
        if (i && s[i] == '.' && s[i - 1] == '.') return false;
    }
    memcpy(out, s, n);
    out[n] = 0;
    return true;
}

static bool take_quant(const char *s, char *out, size_t cap)
{
    size_t n = strlen(s);
    if (n == 0 || n >= cap) return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_') return false;
    memcpy(out, s, n + 1);
    return true;
}

static bool ends_with_ci(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcasecmp(s + n - m, suffix);
}

/* Parses "ORG/REPO[:QUANT]" (the whole of s). */
static bool parse_repo_quant(const char *s, hub_ref *out)
{
    const char *slash = strchr(s, '/');
    if (!slash) return false;
    const char *colon = strchr(slash + 1, ':');
    size_t repo_len = colon ? (size_t)(colon - slash - 1) : strlen(slash + 1);
    if (!take_name(s, (size_t)(slash - s), out->org)) return false;
    if (!take_name(slash + 1, repo_len, out->repo)) return false;
    if (colon && !take_quant(colon + 1, out->quant, sizeof out->quant)) return false;
    return true;
}

nuri_status hub_ref_parse(const char *s, hub_ref *out)
{
    memset(out, 0, sizeof *out);
    if (!strncmp(s, "hf://", 5)) {
        const char *p = s + 5;
        const char *slash = strchr(p, '/');
        const char *file = slash ? strchr(slash + 1, '/') : NULL;
        if (!file) {
            if (parse_repo_quant(p, out)) return NURI_OK;
        } else {
            size_t flen = strlen(file + 1);
            bool ok = take_name(p, (size_t)(slash - p), out->org) &&
                      take_name(slash + 1, (size_t)(file - slash - 1), out->repo) &&
                      flen < sizeof out->file && hub_path_safe(file + 1);
            if (ok) {
                memcpy(out->file, file + 1, flen + 1);
                return NURI_OK;
            }
        }
        memset(out, 0, sizeof *out);
        return nuri_error(NURI_ERR_INVALID_ARG,
                          "'%s' is not a hub name: use hf://ORG/REPO/FILE.gguf or "
                          "hf://ORG/REPO[:QUANT]",
                          s);
    }
    if (ends_with_ci(s, ".gguf") || !parse_repo_quant(s, out)) {
        memset(out, 0, sizeof *out);
        return NURI_ERR_NOT_FOUND;
    }
    return NURI_OK;
}

/* ---- file names ----------------------------------------------------------------------------- */

bool hub_quant_match(const char *name, const char *quant)
{
    size_t n = strlen(name), q = strlen(quant);
    if (q == 0 || q > n) return false;
    for (size_t i = 0; i + q <= n; i++) {
        if (strncasecmp(name + i, quant, q)) continue;
        char before = i ? name[i - 1] : '/';
        char after = name[i + q];
        if (strchr("/-._", before) && (after == 0 || after == '-' || after == '.' || after == '/'))
            return true;
    }
    return false;
}

bool hub_split_parse(const char *name, int *part, int *count, size_t *stem_len)
{
    // "-NNNNN-of-NNNNN.gguf": 5 digits each, as llama.cpp's gguf-split writes them
    static const char tail[] = "-00000-of-00000.gguf";
    size_t n = strlen(name), t = sizeof tail - 1;
    if (n < t) return false;
    const char *p = name + n - t;
    int a = 0, b = 0;
    for (size_t i = 0; i < t; i++) {
        if (tail[i] == '0') {
            if (!isdigit((unsigned char)p[i])) return false;
            if (i < 6)
                a = a * 10 + (p[i] - '0');
            else
                b = b * 10 + (p[i] - '0');
        } else if (tolower((unsigned char)p[i]) != tail[i]) {
            return false;
        }
    }
    if (a < 1 || b < 1 || a > b) return false;
    *part = a;
    *count = b;
    *stem_len = n - t;
    return true;
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

bool hub_quant_of(const char *name, char *out, size_t cap)
{
    const char *b = base_name(name);
    size_t n = strlen(b), stem;
    int part, count;
    if (hub_split_parse(b, &part, &count, &stem))
        n = stem;
    else if (ends_with_ci(b, ".gguf"))
        n -= 5;
    bool found = false;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && b[j] != '-' && b[j] != '.') j++;
        const char *c = b + i;
        size_t k = (toupper((unsigned char)c[0]) == 'I' || toupper((unsigned char)c[0]) == 'B');
        char lead = (char)toupper((unsigned char)c[k]);
        if (j - i > k + 1 && (lead == 'Q' || lead == 'F') && isdigit((unsigned char)c[k + 1]) &&
            (k == 0 || (toupper((unsigned char)c[0]) == 'I') == (lead == 'Q')) && j - i < cap) {
            for (size_t m = 0; m < j - i; m++) out[m] = (char)toupper((unsigned char)c[m]);
            out[j - i] = 0;
            found = true;
        }
        i = j + 1;
    }
    return found;
}

/* ---- choosing files ------------------------------------------------------------------------- */

static bool is_model_file(const char *path)
{
    return ends_with_ci(path, ".gguf") && strncasecmp(base_name(path), "mmproj", 6);
}

bool hub_same_model(const char *a, const char *b)
{
    int pa, ca, pb, cb;
    size_t sa, sb;
    if (!hub_split_parse(a, &pa, &ca, &sa) || !hub_split_parse(b, &pb, &cb, &sb))
        return !strcmp(a, b);
    return ca == cb && sa == sb && !strncmp(a, b, sa);
}

/* Appends s to buf (cap bytes) as a ", "-separated list item, unless it is already there. */
static void list_add(char *buf, size_t cap, const char *s)
{
    size_t n = strlen(buf), m = strlen(s);
    for (const char *p = buf; (p = strstr(p, s)); p++)
        if ((p == buf || p[-1] == ' ') && (p[m] == ',' || p[m] == 0)) return;
    snprintf(buf + n, cap - n, "%s%s", n ? ", " : "", s);
}

/* The list of model files (or their quants) for an error message. */
static void describe(const hub_file *files, size_t n, bool quants, char *buf, size_t cap)
{
    buf[0] = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_model_file(files[i].path)) continue;
        char q[64];
        int part, count;
        size_t stem;
        if (hub_split_parse(files[i].path, &part, &count, &stem) && part != 1) continue;
        if (quants && hub_quant_of(files[i].path, q, sizeof q))
            list_add(buf, cap, q);
        else
            list_add(buf, cap, files[i].path);
    }
    if (!buf[0]) snprintf(buf, cap, "none");
}

/* Looks for the model files carrying quant (any model file when quant is NULL): returns how many
 * distinct models (a split set counts once) it found, capped at 2, and sets *first to a file of
 * the first one. */
static int find_models(const hub_file *files, size_t n, const char *quant, size_t *first)
{
    int found = 0;
    for (size_t i = 0; i < n && found < 2; i++) {
        if (!is_model_file(files[i].path)) continue;
        if (quant && !hub_quant_match(files[i].path, quant)) continue;
        if (!found)
            *first = i, found = 1;
        else if (!hub_same_model(files[*first].path, files[i].path))
            found = 2;
    }
    return found;
}

/* The first parts of the model files carrying quant, for an ambiguity message. */
static void list_matching(const hub_file *files, size_t n, const char *quant, char *buf, size_t cap)
{
    buf[0] = 0;
    for (size_t i = 0; i < n; i++) {
        int part, count;
        size_t stem;
        if (!is_model_file(files[i].path) || !hub_quant_match(files[i].path, quant)) continue;
        if (hub_split_parse(files[i].path, &part, &count, &stem) && part != 1) continue;
        list_add(buf, cap, files[i].path);
    }
}

nuri_status hub_pick(const hub_ref *ref, const hub_file *files, size_t n, size_t **idx,
                     size_t *n_idx)
{
    *idx = NULL;
    *n_idx = 0;
    char list[640];
    size_t first = n; // one file of the chosen model
    if (ref->file[0]) {
        for (size_t i = 0; i < n && first == n; i++)
            if (!strcmp(files[i].path, ref->file)) first = i;
        if (first == n) {
            describe(files, n, false, list, sizeof list);
            return nuri_error(NURI_ERR_NOT_FOUND, "%s/%s has no file '%s' (its .gguf files: %s)",
                              ref->org, ref->repo, ref->file, list);
        }
    } else {
        // a quant asked for is never replaced by another; without one, Q4_K_M, else the only one
        const char *want = ref->quant[0] ? ref->quant : "Q4_K_M";
        int found = find_models(files, n, want, &first);
        if (found == 0 && !ref->quant[0]) {
            found = find_models(files, n, NULL, &first);
            if (found == 0)
                return nuri_error(NURI_ERR_NOT_FOUND, "%s/%s has no .gguf files", ref->org,
                                  ref->repo);
            if (found == 2) {
                describe(files, n, true, list, sizeof list);
                return nuri_error(NURI_ERR_INVALID_ARG,
                                  "%s/%s has several models: choose one as %s/%s:QUANT (quants "
                                  "there: %s)",
                                  ref->org, ref->repo, ref->org, ref->repo, list);
            }
        } else if (found == 0) {
            describe(files, n, true, list, sizeof list);
            return nuri_error(NURI_ERR_NOT_FOUND, "%s/%s has no %s file (quants there: %s)",
                              ref->org, ref->repo, want, list);
        } else if (found == 2) {
            list_matching(files, n, want, list, sizeof list);
            return nuri_error(NURI_ERR_INVALID_ARG,
                              "%s/%s has several %s models (%s): name one as hf://%s/%s/FILE",
                              ref->org, ref->repo, want, list, ref->org, ref->repo);
        }
    }

    int part, count;
    size_t stem;
    if (!hub_split_parse(files[first].path, &part, &count, &stem)) {
        *idx = malloc(sizeof **idx);
        if (!*idx) return nuri_error(NURI_ERR_NOMEM, "out of memory");
        (*idx)[0] = first;
        *n_idx = 1;
        return NURI_OK;
    }
    size_t *out = calloc((size_t)count, sizeof *out);
    if (!out) return nuri_error(NURI_ERR_NOMEM, "out of memory");
    for (int k = 1; k <= count; k++) {
        size_t found = n;
        for (size_t i = 0; i < n && found == n; i++) {
            int pi, ci;
            size_t si;
            if (hub_split_parse(files[i].path, &pi, &ci, &si) && pi == k && ci == count &&
                si == stem && !strncmp(files[i].path, files[first].path, stem))
                found = i;
        }
        if (found == n) {
            free(out);
            return nuri_error(NURI_ERR_NOT_FOUND,
                              "%s/%s: the split model %.*s is incomplete: part %d of %d is missing",
                              ref->org, ref->repo, (int)stem, files[first].path, k, count);
        }
        out[k - 1] = found;
    }
    *idx = out;
    *n_idx = (size_t)count;
    return NURI_OK;
}
