/*
 * hub_cache.c: the local side of hub.h: where the cache is, what a repository's directory holds,
 * finding a model there without the network, listing and removing. hub_pull.c writes into it.
 */
#include "hub/hub.h"

#include "base/status.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define WALK_DEPTH_MAX 16 // directories below a repository's own

/* ---- the cache directory -------------------------------------------------------------------- */

nuri_status hub_cache_dir(const char *dir, char **out)
{
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char *s = NULL;
    int rc = 0;
    if (dir && dir[0])
        s = strdup(dir);
    else if (xdg && xdg[0] == '/') // the XDG spec ignores relative values
        rc = asprintf(&s, "%s/nuri", xdg);
    else if (home && home[0])
        rc = asprintf(&s, "%s/.cache/nuri", home);
    else
        return nuri_error(NURI_ERR_INVALID_ARG,
                          "no cache directory: set XDG_CACHE_HOME or HOME, or pass --cache-dir");
    if (rc < 0 || !s) return nuri_error(NURI_ERR_NOMEM, "out of memory");
    *out = s;
    return NURI_OK;
}

void hub_model_free(hub_model *m)
{
    for (size_t i = 0; i < m->n_paths; i++) free(m->paths[i]);
    free(m->paths);
    memset(m, 0, sizeof *m);
}

/* ---- walking a repository's directory ------------------------------------------------------- */

typedef struct scan {
    char **rel;      // paths relative to the repository directory
    uint64_t *bytes; // their sizes
    size_t n, cap;
} scan;

static void scan_free(scan *s)
{
    for (size_t i = 0; i < s->n; i++) free(s->rel[i]);
    free(s->rel);
    free(s->bytes);
    memset(s, 0, sizeof *s);
}

static nuri_status scan_add(scan *s, const char *rel, uint64_t bytes)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 16;
        char **r = realloc(s->rel, cap * sizeof *r);
        if (!r) return nuri_error(NURI_ERR_NOMEM, "out of memory");
        s->rel = r;
        uint64_t *b = realloc(s->bytes, cap * sizeof *b);
        if (!b) return nuri_error(NURI_ERR_NOMEM, "out of memory");
        s->bytes = b;
        s->cap = cap;
    }
    if (!(s->rel[s->n] = strdup(rel))) return nuri_error(NURI_ERR_NOMEM, "out of memory");
    s->bytes[s->n++] = bytes;
    return NURI_OK;
}

/* Adds every regular file under root/rel (rel "" for root itself). A missing root is empty. */
static nuri_status walk(const char *root, const char *rel, int depth, scan *s)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s%s%s", root, rel[0] ? "/" : "", rel);
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT && !rel[0]) return NURI_OK;
        return nuri_error(NURI_ERR_IO, "%s: %s", dir, strerror(errno));
    }
    nuri_status st = NURI_OK;
    struct dirent *e;
    while (st == NURI_OK && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char sub[4096], full[8192];
        if (snprintf(sub, sizeof sub, "%s%s%s", rel, rel[0] ? "/" : "", e->d_name) >=
                (int)sizeof sub ||
            snprintf(full, sizeof full, "%s/%s", root, sub) >= (int)sizeof full)
            continue; // deeper than any path nuri writes
        struct stat sb;
        if (lstat(full, &sb)) continue; // removed meanwhile
        if (S_ISDIR(sb.st_mode) && depth < WALK_DEPTH_MAX)
            st = walk(root, sub, depth + 1, s);
        else if (S_ISREG(sb.st_mode))
            st = scan_add(s, sub, (uint64_t)sb.st_size);
    }
    closedir(d);
    return st;
}

/* Removes the empty directories under root/rel, then rel itself if empty. */
static void prune(const char *root, const char *rel)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s%s%s", root, rel[0] ? "/" : "", rel);
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char sub[4096], full[8192];
        if (snprintf(sub, sizeof sub, "%s%s%s", rel, rel[0] ? "/" : "", e->d_name) >=
                (int)sizeof sub ||
            snprintf(full, sizeof full, "%s/%s", root, sub) >= (int)sizeof full)
            continue; // deeper than any path nuri writes
        struct stat sb;
        if (!lstat(full, &sb) && S_ISDIR(sb.st_mode)) prune(root, sub);
    }
    closedir(d);
    rmdir(dir); // fails, as it should, when not empty
}

static bool has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

static bool is_gguf(const char *s)
{
    size_t n = strlen(s);
    return n >= 5 && !strcasecmp(s + n - 5, ".gguf");
}

/* ---- finding a model ------------------------------------------------------------------------ */

nuri_status hub_find_cached(const hub_opts *o, const hub_ref *ref, hub_model *out)
{
    memset(out, 0, sizeof *out);
    char *cache, *repo_dir = NULL;
    nuri_status st = hub_cache_dir(o->cache_dir, &cache);
    if (st != NURI_OK) return st;
    if (asprintf(&repo_dir, "%s/models/%s/%s", cache, ref->org, ref->repo) < 0) {
        free(cache);
        return nuri_error(NURI_ERR_NOMEM, "out of memory");
    }
    free(cache);
    scan s = {0};
    hub_file *files = NULL;
    size_t *idx = NULL, n_idx = 0, n_files = 0;
    if ((st = walk(repo_dir, "", 0, &s)) != NURI_OK) goto done;
    files = calloc(s.n ? s.n : 1, sizeof *files);
    if (!files) {
        st = nuri_error(NURI_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < s.n; i++) {
        if (!is_gguf(s.rel[i])) continue; // .part and .meta.json files are not models
        files[n_files].path = s.rel[i];
        files[n_files++].size = s.bytes[i];
    }
    if (hub_pick(ref, files, n_files, &idx, &n_idx) != NURI_OK) {
        st = nuri_error(NURI_ERR_NOT_FOUND, "%s/%s%s%s is not in the cache", ref->org, ref->repo,
                        ref->file[0]    ? "/"
                        : ref->quant[0] ? ":"
                                        : "",
                        ref->file[0] ? ref->file : ref->quant);
        goto done;
    }
    if (!(out->paths = calloc(n_idx, sizeof *out->paths))) {
        st = nuri_error(NURI_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t k = 0; k < n_idx; k++) {
        if (asprintf(&out->paths[k], "%s/%s", repo_dir, files[idx[k]].path) < 0) {
            out->paths[k] = NULL;
            hub_model_free(out);
            st = nuri_error(NURI_ERR_NOMEM, "out of memory");
            goto done;
        }
        out->n_paths = k + 1;
        out->bytes += files[idx[k]].size;
    }
done:
    free(idx);
    free(files);
    scan_free(&s);
    free(repo_dir);
    return st;
}

/* ---- listing -------------------------------------------------------------------------------- */

static int entry_cmp(const void *a, const void *b)
{
    const hub_entry *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : (int)x->partial - (int)y->partial;
}

void hub_entries_free(hub_entry *e, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(e[i].name);
        free(e[i].path);
    }
    free(e);
}

/* Adds the models of one repository directory to *e. */
static nuri_status list_repo(const char *models, const char *org, const char *repo, hub_entry **e,
                             size_t *n, size_t *cap)
{
    char root[4096];
    if (snprintf(root, sizeof root, "%s/%s/%s", models, org, repo) >= (int)sizeof root)
        return NURI_OK; // not a directory nuri made
    scan s = {0};
    nuri_status st = walk(root, "", 0, &s);
    for (size_t i = 0; st == NURI_OK && i < s.n; i++) {
        const char *rel = s.rel[i];
        bool partial = has_suffix(rel, ".gguf.part");
        int part, count;
        size_t stem;
        if (!partial && !is_gguf(rel)) continue;
        if (!partial && hub_split_parse(rel, &part, &count, &stem) && part != 1) continue;
        if (*n == *cap) {
            size_t c = *cap ? 2 * *cap : 16;
            hub_entry *ne = realloc(*e, c * sizeof *ne);
            if (!ne) {
                st = nuri_error(NURI_ERR_NOMEM, "out of memory");
                break;
            }
            *e = ne;
            *cap = c;
        }
        hub_entry *x = &(*e)[*n];
        memset(x, 0, sizeof *x);
        int len = (int)strlen(rel) - (partial ? 5 : 0);
        if (asprintf(&x->name, "%s/%s/%.*s", org, repo, len, rel) < 0) x->name = NULL;
        if (asprintf(&x->path, "%s/%s", root, rel) < 0) x->path = NULL;
        (*n)++;
        if (!x->name || !x->path) {
            st = nuri_error(NURI_ERR_NOMEM, "out of memory");
            break;
        }
        x->partial = partial;
        x->bytes = s.bytes[i];
        x->n_parts = 1;
        if (!partial && hub_split_parse(rel, &part, &count, &stem)) {
            for (size_t j = 0; j < s.n; j++)
                if (j != i && is_gguf(s.rel[j]) && hub_same_model(rel, s.rel[j])) {
                    x->bytes += s.bytes[j];
                    x->n_parts++;
                }
        }
    }
    scan_free(&s);
    return st;
}

nuri_status hub_list(const char *cache_dir, hub_entry **out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    char models[4096];
    snprintf(models, sizeof models, "%s/models", cache_dir);
    DIR *d = opendir(models);
    if (!d) {
        if (errno == ENOENT) return NURI_OK;
        return nuri_error(NURI_ERR_IO, "%s: %s", models, strerror(errno));
    }
    hub_entry *e = NULL;
    size_t n = 0, cap = 0;
    nuri_status st = NURI_OK;
    struct dirent *org;
    while (st == NURI_OK && (org = readdir(d))) {
        if (org->d_name[0] == '.') continue;
        char od[8192];
        if (snprintf(od, sizeof od, "%s/%s", models, org->d_name) >= (int)sizeof od) continue;
        DIR *r = opendir(od);
        if (!r) continue;
        struct dirent *repo;
        while (st == NURI_OK && (repo = readdir(r)))
            if (repo->d_name[0] != '.')
                st = list_repo(models, org->d_name, repo->d_name, &e, &n, &cap);
        closedir(r);
    }
    closedir(d);
    if (st != NURI_OK) {
        hub_entries_free(e, n);
        return st;
    }
    if (n) qsort(e, n, sizeof *e, entry_cmp);
    *out = e;
    *n_out = n;
    return NURI_OK;
}

/* ---- removing ------------------------------------------------------------------------------- */

nuri_status hub_remove(const char *cache_dir, const char *name, size_t *n_removed)
{
    *n_removed = 0;
    hub_ref ref;
    char buf[2048];
    const char *s = name;
    // "org/repo/path" is a file even without hf://
    const char *a = strchr(name, '/');
    if (strncmp(name, "hf://", 5) && a && strchr(a + 1, '/')) {
        snprintf(buf, sizeof buf, "hf://%s", name);
        s = buf;
    }
    nuri_status st = hub_ref_parse(s, &ref);
    if (st == NURI_ERR_NOT_FOUND)
        return nuri_error(NURI_ERR_INVALID_ARG,
                          "'%s' is not a cached model's name: use ORG/REPO, ORG/REPO:QUANT or "
                          "ORG/REPO/FILE (see nuri ls)",
                          name);
    if (st != NURI_OK) return st;
    char root[4096];
    snprintf(root, sizeof root, "%s/models/%s/%s", cache_dir, ref.org, ref.repo);
    scan sc = {0};
    if ((st = walk(root, "", 0, &sc)) != NURI_OK) return st;
    for (size_t i = 0; i < sc.n; i++) {
        char base[4096];
        snprintf(base, sizeof base, "%s", sc.rel[i]);
        bool meta = has_suffix(base, ".meta.json"), part = has_suffix(base, ".part");
        if (meta) base[strlen(base) - 10] = 0;
        if (part) base[strlen(base) - 5] = 0;
        bool match;
        if (ref.file[0])
            match = hub_same_model(base, ref.file);
        else if (ref.quant[0])
            match = is_gguf(base) && hub_quant_match(base, ref.quant);
        else
            match = true;
        if (!match) continue;
        char full[8192];
        snprintf(full, sizeof full, "%s/%s", root, sc.rel[i]);
        if (unlink(full) && errno != ENOENT) {
            st = nuri_error(NURI_ERR_IO, "cannot remove %s: %s", full, strerror(errno));
            break;
        }
        if (!meta && (part || is_gguf(base))) (*n_removed)++;
    }
    scan_free(&sc);
    prune(root, "");
    char org_dir[4096];
    snprintf(org_dir, sizeof org_dir, "%s/models/%s", cache_dir, ref.org);
    rmdir(org_dir);
    if (st == NURI_OK && *n_removed == 0)
        return nuri_error(NURI_ERR_NOT_FOUND, "nothing in the cache matches '%s' (see nuri ls)",
                          name);
    return st;
}
