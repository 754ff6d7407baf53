/*
 * hub_parse.c: see hub_parse.h.
 */
#include "hub/hub_parse.h"

#include "base/status.h"

#include <ctype.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- header lines --------------------------------------------------------------------------- */

/* Copies v[0..n) without surrounding white space into dst (cap bytes, truncating). */
static void copy_trimmed(char *dst, size_t cap, const char *v, size_t n)
{
    while (n && isspace((unsigned char)*v)) v++, n--;
    while (n && isspace((unsigned char)v[n - 1])) n--;
    if (n >= cap) n = cap - 1;
    memcpy(dst, v, n);
    dst[n] = 0;
}

/* A decimal number at the start of s (after spaces), saturating; 0 when there is none. */
static uint64_t leading_u64(const char *s)
{
    while (*s == ' ') s++;
    uint64_t v = 0;
    for (; isdigit((unsigned char)*s); s++) {
        if (v > (UINT64_MAX - 9) / 10) return UINT64_MAX;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    return v;
}

void hub_head_line(hub_head *h, const char *line, size_t n)
{
    char buf[4096];
    if (n > 5 && !strncmp(line, "HTTP/", 5)) { // a new response: a redirect or the final one
        copy_trimmed(buf, sizeof buf, line, n);
        const char *sp = strchr(buf, ' ');
        uint64_t code = sp ? leading_u64(sp + 1) : 0;
        h->status = code < 1000 ? (long)code : 0;
        h->error_code[0] = h->error_message[0] = h->next[0] = 0;
        h->has_range = false;
        return;
    }
    const char *colon = memchr(line, ':', n);
    if (!colon) return;
    size_t k = (size_t)(colon - line);
    copy_trimmed(buf, sizeof buf, colon + 1, n - k - 1);
#define IS(name) (k == sizeof name - 1 && !strncasecmp(line, name, k))
    if (IS("X-Error-Code"))
        copy_trimmed(h->error_code, sizeof h->error_code, buf, strlen(buf));
    else if (IS("X-Error-Message"))
        copy_trimmed(h->error_message, sizeof h->error_message, buf, strlen(buf));
    else if (IS("X-Linked-Etag") && !h->linked_etag[0])
        copy_trimmed(h->linked_etag, sizeof h->linked_etag, buf, strlen(buf));
    else if (IS("X-Linked-Size") && !h->linked_size)
        h->linked_size = leading_u64(buf);
    else if (IS("X-Repo-Commit") && !h->commit[0])
        copy_trimmed(h->commit, sizeof h->commit, buf, strlen(buf));
    else if (IS("Content-Range")) {
        // "bytes START-END/TOTAL" (or "bytes */TOTAL" on a 416)
        h->has_range = !strncmp(buf, "bytes ", 6) && isdigit((unsigned char)buf[6]);
        h->range_start = h->has_range ? leading_u64(buf + 6) : 0;
    } else if (IS("Link")) {
        // <url>; rel="next"[, <url>; rel="prev"]
        for (char *p = buf; (p = strchr(p, '<'));) {
            char *end = strchr(p, '>');
            if (!end) break;
            char *sep = strchr(end, ',');
            char *rel = strstr(end, "rel=\"next\"");
            if (rel && (!sep || rel < sep)) {
                copy_trimmed(h->next, sizeof h->next, p + 1, (size_t)(end - p - 1));
                break;
            }
            p = end;
        }
    }
#undef IS
}

bool hub_is_hex64(const char *s)
{
    for (int i = 0; i < 64; i++)
        if (!isxdigit((unsigned char)s[i])) return false; // stops at a NUL too
    return s[64] == 0;
}

bool hub_etag_sha256(const char *etag, char out[65])
{
    out[0] = 0;
    const char *q = etag;
    if (!strncmp(q, "W/", 2)) q += 2;
    bool quoted = *q == '"';
    q += quoted;
    char hex[65];
    size_t n = strnlen(q, 66);
    if (n != 64 + (size_t)quoted || (quoted && q[64] != '"')) return false;
    memcpy(hex, q, 64);
    hex[64] = 0;
    if (!hub_is_hex64(hex)) return false;
    for (int k = 0; k < 65; k++) out[k] = (char)tolower((unsigned char)hex[k]);
    return true;
}

bool hub_path_safe(const char *path)
{
    size_t n = strlen(path);
    if (n == 0 || n > 1023 || path[0] == '/') return false;
    for (const char *c = path; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f || *c == '\\') return false;
    for (const char *p = path;;) { // each component: not empty, ".", ".."
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == 0 || (len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
            return false;
        if (!e) return true;
        p = e + 1;
    }
}

/* ---- the file list -------------------------------------------------------------------------- */

void hub_file_list_free(hub_file_list *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->f[i].path);
    free(l->f);
    memset(l, 0, sizeof *l);
}

/* A JSON integer that is a size in bytes, or 0. */
static uint64_t json_size(json_t *v)
{
    return json_is_integer(v) && json_integer_value(v) >= 0 ? (uint64_t)json_integer_value(v) : 0;
}

nuri_status hub_tree_parse(const char *body, size_t n, const char *url, hub_file_list *l)
{
    json_error_t jerr;
    json_t *root = json_loadb(body, n, 0, &jerr);
    if (!root || !json_is_array(root)) {
        json_decref(root);
        return nuri_error(NURI_ERR_FORMAT, "%s: not a file list (a JSON array): %s", url,
                          root ? "another JSON value" : jerr.text);
    }
    nuri_status st = NURI_OK;
    size_t i;
    json_t *e;
    json_array_foreach(root, i, e)
    {
        const char *type = json_string_value(json_object_get(e, "type"));
        const char *path = json_string_value(json_object_get(e, "path"));
        json_t *lfs = json_object_get(e, "lfs");
        if (!type || strcmp(type, "file") || !path || !hub_path_safe(path)) continue;
        if (l->n == l->cap) {
            size_t cap = l->cap ? 2 * l->cap : 64;
            hub_file *f = realloc(l->f, cap * sizeof *f);
            if (!f) {
                st = nuri_error(NURI_ERR_NOMEM, "out of memory");
                break;
            }
            l->f = f;
            l->cap = cap;
        }
        hub_file *f = &l->f[l->n];
        memset(f, 0, sizeof *f);
        if (!(f->path = strdup(path))) {
            st = nuri_error(NURI_ERR_NOMEM, "out of memory");
            break;
        }
        l->n++;
        f->size = json_size(json_object_get(e, "size"));
        if (json_is_object(lfs)) { // an LFS file: its oid is the sha256 of the content
            const char *oid = json_string_value(json_object_get(lfs, "oid"));
            if (oid && hub_is_hex64(oid))
                for (int k = 0; k < 65; k++) f->sha256[k] = (char)tolower((unsigned char)oid[k]);
            if (json_size(json_object_get(lfs, "size")))
                f->size = json_size(json_object_get(lfs, "size"));
        }
    }
    json_decref(root);
    return st;
}
