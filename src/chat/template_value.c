/*
 * template_value.c: the template engine's value type and what every part of it needs: the arena,
 * the output buffer, truthiness and equality with Python's rules, str() / repr() as Python prints
 * them (floats in shortest round-trip form), json.dumps, and UTF-8 helpers (Python strings are
 * indexed by code point).
 */
#include "base/status.h"
#include "chat/tpl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- arena ---- */

struct tpl_chunk {
    tpl_chunk *next;
    size_t used, cap; // bytes of data[]
    _Alignas(16) unsigned char data[];
};

#define TPL_CHUNK_MIN (64u << 10) // bytes

void *tpl_arena_alloc(tpl_arena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (n == 0) n = 16;
    if (a->limit && (n > a->limit || a->used > a->limit - n)) return NULL;
    tpl_chunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > TPL_CHUNK_MIN ? n : TPL_CHUNK_MIN;
        c = malloc(sizeof *c + cap);
        if (!c) return NULL;
        c->used = 0;
        c->cap = cap;
        if (a->head && n > TPL_CHUNK_MIN) {
            // a big block: keep the current chunk in front so its free space is still used
            c->next = a->head->next;
            a->head->next = c;
        } else {
            c->next = a->head;
            a->head = c;
        }
    }
    void *p = c->data + c->used;
    c->used += n;
    a->used += n;
    memset(p, 0, n);
    return p;
}

void tpl_arena_free(tpl_arena *a)
{
    tpl_chunk *c = a->head;
    while (c) {
        tpl_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
    a->used = 0;
}

/* ---- provenance ---- */

uint32_t tpl_prov_add(tpl_prov *pt, const char *base, const uint8_t *data, bool *ok)
{
    *ok = true;
    if (pt->n == pt->cap) {
        if (pt->cap >= UINT32_MAX / 2 - TPL_PROV_MIXED) return TPL_DATA; // data: always safe
        uint32_t cap = pt->cap ? pt->cap * 2 : 64;
        tpl_prov_rec *r = tpl_arena_alloc(pt->arena, (size_t)cap * sizeof *r);
        if (!r) {
            *ok = false;
            return TPL_DATA;
        }
        if (pt->n) memcpy(r, pt->rec, pt->n * sizeof *r);
        pt->rec = r;
        pt->cap = cap;
    }
    pt->rec[pt->n] = (tpl_prov_rec){base, data};
    return TPL_PROV_MIXED + pt->n++;
}

static const tpl_prov_rec *prov_rec(const tpl_prov *pt, uint32_t prov)
{
    NURI_ASSERT(pt && prov >= TPL_PROV_MIXED && prov - TPL_PROV_MIXED < pt->n);
    return &pt->rec[prov - TPL_PROV_MIXED];
}

bool tpl_prov_any_data(const tpl_prov *pt, uint32_t prov, const char *p, size_t n)
{
    if (!pt) return false;
    if (prov < TPL_PROV_MIXED || n == 0) return prov == TPL_DATA;
    const tpl_prov_rec *r = prov_rec(pt, prov);
    return memchr(r->data + (p - r->base), 1, n) != NULL;
}

void tpl_prov_flags(const tpl_prov *pt, uint32_t prov, const char *p, size_t n, uint8_t *out)
{
    if (n == 0) return;
    if (prov < TPL_PROV_MIXED) {
        memset(out, prov == TPL_DATA, n);
        return;
    }
    const tpl_prov_rec *r = prov_rec(pt, prov);
    memcpy(out, r->data + (p - r->base), n);
}

/* Deeper than this, a value counts as data without a look inside (no unbounded recursion). */
#define ANY_DATA_DEPTH 512

static bool any_data(const tpl_prov *pt, tv v, int depth)
{
    if (depth > ANY_DATA_DEPTH) return true;
    switch (v.t) {
    case TV_UNDEF:
        return false; // prints nothing
    case TV_STR:
        return tpl_prov_any_data(pt, v.prov, v.s.p, v.s.n);
    case TV_LIST:
        if (v.prov != TPL_MARKUP) return true;
        for (size_t i = 0; i < v.l->n; i++)
            if (any_data(pt, v.l->v[i], depth + 1)) return true;
        return false;
    case TV_DICT:
    case TV_NS:
        if (v.prov != TPL_MARKUP) return true;
        for (size_t i = 0; i < v.d->n; i++)
            if (any_data(pt, v.d->k[i], depth + 1) || any_data(pt, v.d->v[i], depth + 1))
                return true;
        return false;
    default:
        return v.prov != TPL_MARKUP;
    }
}

bool tv_any_data(const tpl_prov *pt, tv v)
{
    return pt && any_data(pt, v, 0);
}

/* ---- output buffer ---- */

/* Makes room for n more bytes and the NUL (the per-byte flags grow along). */
static bool buf_grow(tpl_buf *b, size_t n)
{
    if (b->limit && (n > b->limit || b->n > b->limit - n)) return false;
    if (b->n + n + 1 <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + n + 1) cap *= 2;
    char *q;
    uint8_t *d = NULL;
    if (b->arena) {
        q = tpl_arena_alloc(b->arena, cap);
        if (q && b->n) memcpy(q, b->p, b->n);
        if (q && b->d) {
            if (!(d = tpl_arena_alloc(b->arena, cap))) return false;
            memcpy(d, b->d, b->n);
        }
    } else {
        q = realloc(b->p, cap);
    }
    if (!q) return false;
    b->p = q;
    b->d = d;
    b->cap = cap;
    return true;
}

/* Per-byte flags for the n bytes so far, when they stop being uniform. */
static bool buf_flags(tpl_buf *b)
{
    if (b->d) return true;
    if (!(b->d = tpl_arena_alloc(b->arena, b->cap))) return false;
    if (b->n) memset(b->d, b->uni == TPL_DATA, b->n);
    return true;
}

bool tpl_buf_put_from(tpl_buf *b, const void *p, size_t n, uint32_t prov)
{
    if (n == 0) return true;
    if (!buf_grow(b, n)) return false;
    if (b->prov) {
        if (!b->d && prov < TPL_PROV_MIXED && (b->n == 0 || b->uni == prov)) {
            b->uni = (uint8_t)prov;
        } else {
            if (!buf_flags(b)) return false;
            tpl_prov_flags(b->prov, prov, p, n, b->d + b->n);
        }
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
    b->p[b->n] = 0;
    return true;
}

bool tpl_buf_put(tpl_buf *b, const void *p, size_t n)
{
    return tpl_buf_put_from(b, p, n, b->cur);
}

uint32_t tpl_buf_prov(tpl_buf *b, bool *ok)
{
    *ok = true;
    if (!b->prov || b->n == 0) return TPL_DATA;
    if (!b->d) return b->uni;
    if (!memchr(b->d, !b->d[0], b->n)) return b->d[0] ? TPL_DATA : TPL_MARKUP;
    return tpl_prov_add(b->prov, b->p, b->d, ok);
}

static bool buf_puts(tpl_buf *b, const char *s)
{
    return tpl_buf_put(b, s, strlen(s));
}

/* ---- constructors ---- */

tv tv_undef(const char *name)
{
    tv v = {.t = TV_UNDEF};
    v.s.p = name;
    return v;
}
tv tv_none(void)
{
    return (tv){.t = TV_NONE};
}
tv tv_bool(bool b)
{
    tv v = {.t = TV_BOOL};
    v.b = b;
    return v;
}
tv tv_int(int64_t i)
{
    tv v = {.t = TV_INT};
    v.i = i;
    return v;
}
tv tv_float(double f)
{
    tv v = {.t = TV_FLOAT};
    v.f = f;
    return v;
}
tv tv_strn(const char *p, size_t n)
{
    tv v = {.t = TV_STR};
    v.s.p = n ? p : "";
    v.s.n = n;
    return v;
}

bool tv_truthy(tv v)
{
    switch (v.t) {
    case TV_UNDEF:
    case TV_NONE:
        return false;
    case TV_BOOL:
        return v.b;
    case TV_INT:
        return v.i != 0;
    case TV_FLOAT:
        return v.f != 0.0;
    case TV_STR:
        return v.s.n != 0;
    case TV_LIST:
        return v.gen || v.l->n != 0;
    case TV_DICT:
        return v.d->n != 0;
    default:
        return true;
    }
}

const char *tv_type_name(tv v)
{
    switch (v.t) {
    case TV_UNDEF:
        return "Undefined";
    case TV_NONE:
        return "NoneType";
    case TV_BOOL:
        return "bool";
    case TV_INT:
        return "int";
    case TV_FLOAT:
        return "float";
    case TV_STR:
        return "str";
    case TV_LIST:
        return v.gen ? "generator" : v.tuple ? "tuple" : "list";
    case TV_DICT:
        return "dict";
    case TV_NS:
        return "Namespace";
    case TV_FUNC:
        return "function";
    case TV_LOOP:
        return "LoopContext";
    }
    return "?";
}

static bool is_num(tv v)
{
    return v.t == TV_BOOL || v.t == TV_INT || v.t == TV_FLOAT;
}

bool tv_equal(tv a, tv b)
{
    if (is_num(a) && is_num(b)) {
        if (a.t == TV_FLOAT || b.t == TV_FLOAT) {
            double x = a.t == TV_FLOAT ? a.f : (double)(a.t == TV_BOOL ? a.b : a.i);
            double y = b.t == TV_FLOAT ? b.f : (double)(b.t == TV_BOOL ? b.b : b.i);
            return x == y;
        }
        int64_t x = a.t == TV_BOOL ? a.b : a.i, y = b.t == TV_BOOL ? b.b : b.i;
        return x == y;
    }
    if (a.t != b.t) return false;
    switch (a.t) {
    case TV_UNDEF:
    case TV_NONE:
        return true;
    case TV_STR:
        return a.s.n == b.s.n && !memcmp(a.s.p, b.s.p, a.s.n);
    case TV_LIST:
        if (a.gen || b.gen) return a.l == b.l;
        if (a.tuple != b.tuple || a.l->n != b.l->n) return false;
        for (size_t i = 0; i < a.l->n; i++)
            if (!tv_equal(a.l->v[i], b.l->v[i])) return false;
        return true;
    case TV_DICT:
        if (a.d->n != b.d->n) return false;
        for (size_t i = 0; i < a.d->n; i++) {
            size_t j = 0;
            while (j < b.d->n && !tv_equal(a.d->k[i], b.d->k[j])) j++;
            if (j == b.d->n || !tv_equal(a.d->v[i], b.d->v[j])) return false;
        }
        return true;
    case TV_NS:
        return a.d == b.d;
    case TV_FUNC:
        return a.fn == b.fn;
    case TV_LOOP:
        return a.loop == b.loop;
    }
    return false;
}

/* ---- UTF-8 ---- */

size_t tpl_utf8_decode(const char *p, size_t n, uint32_t *cp)
{
    const unsigned char *s = (const unsigned char *)p;
    unsigned c = s[0];
    size_t len;
    uint32_t v;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if ((c & 0xe0) == 0xc0) {
        len = 2;
        v = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
        len = 3;
        v = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
        len = 4;
        v = c & 0x07;
    } else {
        *cp = 0xfffd;
        return 1;
    }
    if (len > n) {
        *cp = 0xfffd;
        return 1;
    }
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            *cp = 0xfffd;
            return 1;
        }
        v = (v << 6) | (s[i] & 0x3f);
    }
    *cp = v;
    return len;
}

size_t tpl_utf8_count(const char *p, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += tpl_utf8_decode(p + i, n - i, &cp);
        c++;
    }
    return c;
}

size_t tpl_utf8_offset(const char *p, size_t n, size_t idx)
{
    size_t i = 0;
    for (size_t c = 0; c < idx && i < n; c++) {
        uint32_t cp;
        i += tpl_utf8_decode(p + i, n - i, &cp);
    }
    return i;
}

bool tpl_is_space(uint32_t c)
{
    return (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
           c == 0x202f || c == 0x205f || c == 0x3000;
}

/* ---- printing ---- */

/* Python's repr(float): the shortest digits that read back to the same double; fixed notation
 * when the decimal exponent is in [-4, 16), else d.ddde+XX. */
static bool print_float(tpl_buf *b, double f, bool json)
{
    char out[64];
    if (isnan(f)) return buf_puts(b, json ? "NaN" : "nan");
    if (isinf(f))
        return buf_puts(b, f > 0 ? (json ? "Infinity" : "inf") : (json ? "-Infinity" : "-inf"));
    char tmp[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, f);
        if (strtod(tmp, NULL) == f) break;
    }
    // tmp: [-]d[.ddd]e[+-]XX
    const char *s = tmp;
    char *o = out;
    if (*s == '-') *o++ = *s++;
    char digits[24];
    int nd = 0;
    for (; *s && *s != 'e'; s++)
        if (*s != '.') digits[nd++] = *s;
    int exp = atoi(s + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    if (exp >= -4 && exp < 16) {
        if (exp < 0) {
            *o++ = '0';
            *o++ = '.';
            for (int i = 0; i < -exp - 1; i++) *o++ = '0';
            for (int i = 0; i < nd; i++) *o++ = digits[i];
        } else {
            for (int i = 0; i <= exp; i++) *o++ = i < nd ? digits[i] : '0';
            *o++ = '.';
            if (nd > exp + 1)
                for (int i = exp + 1; i < nd; i++) *o++ = digits[i];
            else
                *o++ = '0';
        }
        *o = 0;
    } else {
        *o++ = digits[0];
        if (nd > 1) {
            *o++ = '.';
            for (int i = 1; i < nd; i++) *o++ = digits[i];
        }
        snprintf(o, sizeof out - (size_t)(o - out), "e%c%02d", exp < 0 ? '-' : '+', abs(exp));
    }
    return buf_puts(b, out);
}

static bool print_int(tpl_buf *b, int64_t i)
{
    char tmp[32];
    snprintf(tmp, sizeof tmp, "%lld", (long long)i);
    return buf_puts(b, tmp);
}

static bool repr_str(tpl_buf *b, const char *p, size_t n)
{
    bool has_sq = memchr(p, '\'', n) != NULL, has_dq = memchr(p, '"', n) != NULL;
    char q = has_sq && !has_dq ? '"' : '\'';
    if (!tpl_buf_put(b, &q, 1)) return false;
    size_t run = 0; // start of the pending run of bytes copied as they are
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = tpl_utf8_decode(p + i, n - i, &cp);
        char esc[12] = {0};
        if (cp == '\\')
            strcpy(esc, "\\\\");
        else if (cp == (uint32_t)q)
            snprintf(esc, sizeof esc, "\\%c", q);
        else if (cp == '\n')
            strcpy(esc, "\\n");
        else if (cp == '\r')
            strcpy(esc, "\\r");
        else if (cp == '\t')
            strcpy(esc, "\\t");
        else if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0))
            snprintf(esc, sizeof esc, "\\x%02x", cp);
        if (esc[0]) {
            if (!tpl_buf_put(b, p + run, i - run) || !buf_puts(b, esc)) return false;
            run = i + l;
        }
        i += l;
    }
    return tpl_buf_put(b, p + run, n - run) && tpl_buf_put(b, &q, 1);
}

static bool repr_value(tpl_buf *b, tv v);

static bool print_seq(tpl_buf *b, tv v)
{
    if (v.t == TV_LIST && v.gen) return buf_puts(b, "<generator object>");
    if (v.t == TV_LIST) {
        if (!buf_puts(b, v.tuple ? "(" : "[")) return false;
        for (size_t i = 0; i < v.l->n; i++)
            if ((i && !buf_puts(b, ", ")) || !repr_value(b, v.l->v[i])) return false;
        if (v.tuple && v.l->n == 1 && !buf_puts(b, ",")) return false;
        return buf_puts(b, v.tuple ? ")" : "]");
    }
    if (!buf_puts(b, "{")) return false;
    for (size_t i = 0; i < v.d->n; i++)
        if ((i && !buf_puts(b, ", ")) || !repr_value(b, v.d->k[i]) || !buf_puts(b, ": ") ||
            !repr_value(b, v.d->v[i]))
            return false;
    return buf_puts(b, "}");
}

/* str(v), every byte with the provenance b->cur. */
static bool print_value(tpl_buf *b, tv v)
{
    switch (v.t) {
    case TV_UNDEF:
        return true;
    case TV_NONE:
        return buf_puts(b, "None");
    case TV_BOOL:
        return buf_puts(b, v.b ? "True" : "False");
    case TV_INT:
        return print_int(b, v.i);
    case TV_FLOAT:
        return print_float(b, v.f, false);
    case TV_STR:
        return tpl_buf_put(b, v.s.p, v.s.n);
    case TV_LIST:
    case TV_DICT:
        return print_seq(b, v);
    case TV_NS: {
        tv d = v;
        d.t = TV_DICT;
        return buf_puts(b, "<Namespace ") && print_seq(b, d) && buf_puts(b, ">");
    }
    case TV_FUNC:
        return buf_puts(b, "<function>");
    case TV_LOOP:
        return buf_puts(b, "<LoopContext>");
    }
    return true;
}

static bool repr_value(tpl_buf *b, tv v)
{
    if (v.t == TV_STR) return repr_str(b, v.s.p, v.s.n);
    if (v.t == TV_UNDEF) return buf_puts(b, "Undefined");
    return print_value(b, v);
}

/* Runs fn(b, v) with b->cur set to what all of v's output counts as. */
static bool with_prov(tpl_buf *b, tv v, bool (*fn)(tpl_buf *, tv))
{
    uint8_t saved = b->cur;
    if (b->prov) b->cur = tv_any_data(b->prov, v) ? TPL_DATA : TPL_MARKUP;
    bool ok = fn(b, v);
    b->cur = saved;
    return ok;
}

bool tv_print(tpl_buf *b, tv v)
{
    if (v.t == TV_STR) return tpl_buf_put_from(b, v.s.p, v.s.n, v.prov);
    return with_prov(b, v, print_value);
}

bool tv_repr(tpl_buf *b, tv v)
{
    return with_prov(b, v, repr_value);
}

/* ---- JSON ---- */

/* A string as json.dumps writes it: ensure_ascii escapes everything outside ' '..'~' (code points
 * past U+FFFF as surrogate pairs), otherwise only quotes, backslashes and control characters. */
static bool json_str(tpl_buf *b, const char *p, size_t n, bool ascii)
{
    if (!tpl_buf_put(b, "\"", 1)) return false;
    size_t run = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)p[i];
        char esc[16] = {0};
        size_t len = 1;
        switch (c) {
        case '"':
            strcpy(esc, "\\\"");
            break;
        case '\\':
            strcpy(esc, "\\\\");
            break;
        case '\n':
            strcpy(esc, "\\n");
            break;
        case '\r':
            strcpy(esc, "\\r");
            break;
        case '\t':
            strcpy(esc, "\\t");
            break;
        case '\b':
            strcpy(esc, "\\b");
            break;
        case '\f':
            strcpy(esc, "\\f");
            break;
        default:
            if (c < 0x20 || (ascii && c == 0x7f)) {
                snprintf(esc, sizeof esc, "\\u%04x", c);
            } else if (ascii && c >= 0x80) {
                uint32_t cp;
                len = tpl_utf8_decode(p + i, n - i, &cp);
                if (cp >= 0x10000) {
                    cp -= 0x10000;
                    snprintf(esc, sizeof esc, "\\u%04x\\u%04x", 0xd800 + (cp >> 10),
                             0xdc00 + (cp & 0x3ff));
                } else {
                    snprintf(esc, sizeof esc, "\\u%04x", cp);
                }
            }
        }
        if (esc[0]) {
            if (!tpl_buf_put(b, p + run, i - run) || !buf_puts(b, esc)) return false;
            run = i + len;
        }
        i += len;
    }
    return tpl_buf_put(b, p + run, n - run) && tpl_buf_put(b, "\"", 1);
}

static bool json_newline(tpl_buf *b, const tpl_json_opts *o, int depth)
{
    if (!tpl_buf_put(b, "\n", 1)) return false;
    for (int i = 0; i < o->indent * depth; i++)
        if (!tpl_buf_put(b, " ", 1)) return false;
    return true;
}

static bool is_number(tv v)
{
    return v.t == TV_INT || v.t == TV_FLOAT || v.t == TV_BOOL;
}

static double number_of(tv v)
{
    return v.t == TV_FLOAT ? v.f : v.t == TV_INT ? (double)v.i : (double)v.b;
}

/* Python's a < b for two dict keys of json.dumps(sort_keys=True): strings by code point (UTF-8
 * byte order is the same), numbers by value; -2 when Python would raise. */
static int key_cmp(tv a, tv b)
{
    if (a.t == TV_STR && b.t == TV_STR) {
        size_t n = a.s.n < b.s.n ? a.s.n : b.s.n;
        int r = memcmp(a.s.p, b.s.p, n);
        return r < 0 ? -1 : r > 0 ? 1 : a.s.n < b.s.n ? -1 : a.s.n > b.s.n;
    }
    if (is_number(a) && is_number(b)) {
        if (a.t == TV_INT && b.t == TV_INT) return a.i < b.i ? -1 : a.i > b.i;
        double x = number_of(a), y = number_of(b);
        return x < y ? -1 : x > y;
    }
    return -2;
}

typedef struct key_sort {
    const tv *keys;
    bool bad; // two keys Python cannot compare
} key_sort;

static int key_order(const void *a, const void *b, void *ctx)
{
    key_sort *ks = ctx;
    int c = key_cmp(ks->keys[*(const size_t *)a], ks->keys[*(const size_t *)b]);
    if (c == -2) {
        ks->bad = true;
        return 0;
    }
    return c;
}

static int json_value(tpl_buf *b, tv v, const tpl_json_opts *o, int depth, const char **bad);

static int json_key(tpl_buf *b, tv k, const tpl_json_opts *o, const char **bad)
{
    // json.dumps turns non-string keys into strings: None -> "null", True -> "true"
    bool ok;
    if (k.t == TV_STR)
        ok = json_str(b, k.s.p, k.s.n, o->ensure_ascii);
    else if (k.t == TV_NONE)
        ok = buf_puts(b, "\"null\"");
    else if (k.t == TV_BOOL)
        ok = buf_puts(b, k.b ? "\"true\"" : "\"false\"");
    else if (k.t == TV_INT)
        ok = buf_puts(b, "\"") && print_int(b, k.i) && buf_puts(b, "\"");
    else if (k.t == TV_FLOAT)
        ok = buf_puts(b, "\"") && print_float(b, k.f, true) && buf_puts(b, "\"");
    else {
        *bad = "a key of that type";
        return -2;
    }
    return ok ? 0 : -1;
}

static int json_value(tpl_buf *b, tv v, const tpl_json_opts *o, int depth, const char **bad)
{
    if (depth > 512) {
        *bad = "nesting deeper than 512";
        return -2;
    }
    bool pretty = o->indent >= 0;
    switch (v.t) {
    case TV_NONE:
        return buf_puts(b, "null") ? 0 : -1;
    case TV_BOOL:
        return buf_puts(b, v.b ? "true" : "false") ? 0 : -1;
    case TV_INT:
        return print_int(b, v.i) ? 0 : -1;
    case TV_FLOAT:
        return print_float(b, v.f, true) ? 0 : -1;
    case TV_STR:
        return json_str(b, v.s.p, v.s.n, o->ensure_ascii) ? 0 : -1;
    case TV_LIST: {
        if (v.gen) {
            *bad = "generator";
            return -2;
        }
        if (v.l->n == 0) return buf_puts(b, "[]") ? 0 : -1;
        if (!buf_puts(b, "[")) return -1;
        for (size_t i = 0; i < v.l->n; i++) {
            if (i && !tpl_buf_put(b, o->item_sep, o->item_sep_n)) return -1;
            if (pretty && !json_newline(b, o, depth + 1)) return -1;
            int r = json_value(b, v.l->v[i], o, depth + 1, bad);
            if (r) return r;
        }
        if (pretty && !json_newline(b, o, depth)) return -1;
        return buf_puts(b, "]") ? 0 : -1;
    }
    case TV_DICT:
    case TV_NS: {
        if (v.t == TV_NS) {
            *bad = "Namespace";
            return -2;
        }
        size_t n = v.d->n;
        if (n == 0) return buf_puts(b, "{}") ? 0 : -1;
        // the order of the items: as inserted, or sorted by key
        size_t small[64], *ord = small;
        if (n > 64 && !(ord = malloc(n * sizeof *ord))) return -1;
        for (size_t i = 0; i < n; i++) ord[i] = i;
        if (o->sort_keys) {
            key_sort ks = {v.d->k, false};
            qsort_r(ord, n, sizeof *ord, key_order, &ks);
            if (ks.bad) {
                if (ord != small) free(ord);
                *bad = "keys that cannot be compared";
                return -3;
            }
        }
        int r = 0;
        if (!buf_puts(b, "{")) r = -1;
        for (size_t i = 0; i < n && !r; i++) {
            size_t x = ord[i];
            if (i && !tpl_buf_put(b, o->item_sep, o->item_sep_n)) r = -1;
            if (!r && pretty && !json_newline(b, o, depth + 1)) r = -1;
            if (!r) r = json_key(b, v.d->k[x], o, bad);
            if (!r && !tpl_buf_put(b, o->key_sep, o->key_sep_n)) r = -1;
            if (!r) r = json_value(b, v.d->v[x], o, depth + 1, bad);
        }
        if (ord != small) free(ord);
        if (r) return r;
        if (pretty && !json_newline(b, o, depth)) return -1;
        return buf_puts(b, "}") ? 0 : -1;
    }
    default:
        *bad = tv_type_name(v);
        return -2;
    }
}

int tv_json_opts(tpl_buf *b, tv v, const tpl_json_opts *o, const char **bad)
{
    uint8_t saved = b->cur;
    if (b->prov) b->cur = tv_any_data(b->prov, v) ? TPL_DATA : TPL_MARKUP;
    int r = json_value(b, v, o, 0, bad);
    b->cur = saved;
    return r;
}

int tv_json(tpl_buf *b, tv v, int indent, int depth, const char **bad)
{
    (void)depth;
    tpl_json_opts o = {.indent = indent,
                       .item_sep = indent >= 0 ? "," : ", ",
                       .item_sep_n = indent >= 0 ? 1 : 2,
                       .key_sep = ": ",
                       .key_sep_n = 2};
    return tv_json_opts(b, v, &o, bad);
}
