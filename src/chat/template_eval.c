/*
 * template_eval.c: runs a parsed template: statements, expressions, and the filters, tests,
 * methods and globals that chat templates use, each with jinja2's (Python's) semantics, including
 * its default Undefined: printing it gives '', testing it gives false, iterating it gives nothing,
 * but arithmetic, comparison or attribute access on it is an error.
 *
 * Scoping as in jinja2: `set` writes the innermost scope; each for-loop iteration and each macro
 * call gets a fresh scope (so nothing set inside leaks out); `if` has no scope; namespace()
 * objects are the way to carry values out. Values are immutable except namespaces (jinja2's
 * ImmutableSandboxedEnvironment forbids list.append, dict.update, ...).
 *
 * Limits (template.h): steps (statements, loop iterations, calls), macro call depth, output size,
 * memory (all values live in one arena per render), range() size.
 */
#include "base/utf8.h"
#include "chat/tpl.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- render state ---- */

typedef struct scope scope;
struct scope {
    scope *parent;
    size_t n, cap;
    const char **names;
    tv *vals;
};

enum { F_MACRO = 1, F_BUILTIN, F_METHOD };
enum { B_RANGE = 1, B_NAMESPACE, B_DICT, B_RAISE, B_STRFTIME };

struct tfunc {
    int kind;
    int builtin;
    const tpl_node *macro; // F_MACRO
    scope *closure;        // F_MACRO
    tv self;               // F_METHOD
    const char *name;
};

struct tloop {
    size_t index0, length;
    const tv *items;
    int depth;
};

typedef struct ctx {
    tpl_arena *a;
    tpl_prov *prov; // provenance records, or NULL when the render does not track provenance
    tpl_buf *out;
    const struct tm *now;
    uint64_t steps;
    int call_depth;
    int loop_depth;
    nuri_template_limits lim;
    jmp_buf jb;
} ctx;

#define MAX_ARGS 16

typedef struct targs {
    size_t n;
    tv v[MAX_ARGS];
    const char *kw[MAX_ARGS]; // NULL: positional
} targs;

__attribute__((noreturn, format(printf, 4, 5))) static void
rfail(ctx *c, const tpl_node *at, nuri_status s, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (at)
        nuri_error(s, "template line %d col %d: %s", at->line, at->col, msg);
    else
        nuri_error(s, "template: %s", msg);
    longjmp(c->jb, (int)s);
}

#define FAIL(c, at, ...) rfail(c, at, NURI_ERR_FORMAT, __VA_ARGS__)

static void *ralloc(ctx *c, const tpl_node *at, size_t n)
{
    void *p = tpl_arena_alloc(c->a, n);
    if (!p)
        rfail(c, at, NURI_ERR_LIMIT, "render memory limit reached (%zu bytes)", c->lim.max_memory);
    return p;
}

static void *ralloc_n(ctx *c, const tpl_node *at, size_t count, size_t size)
{
    uint64_t bytes;
    if (nuri_mul_overflow(count, size, &bytes) || bytes > c->lim.max_memory)
        rfail(c, at, NURI_ERR_LIMIT, "render memory limit reached (%zu bytes)", c->lim.max_memory);
    return ralloc(c, at, (size_t)bytes);
}

static void step(ctx *c, const tpl_node *at)
{
    if (++c->steps > c->lim.max_steps)
        rfail(c, at, NURI_ERR_LIMIT, "render took more than %llu steps (loop iterations, calls)",
              (unsigned long long)c->lim.max_steps);
}

static void buf_init(ctx *c, tpl_buf *b)
{
    memset(b, 0, sizeof *b);
    b->limit = c->lim.max_output;
    b->arena = c->a;
    b->prov = c->prov;
}

/* Appends p[0..n) with provenance prov: TPL_DATA / TPL_MARKUP, or the code of the string that p
 * points into (then each byte keeps its own). */
static void put(ctx *c, const tpl_node *at, tpl_buf *b, const void *p, size_t n, uint32_t prov)
{
    if (!tpl_buf_put_from(b, p, n, prov))
        rfail(c, at, NURI_ERR_LIMIT, "output or string over %zu bytes, or render memory over %zu",
              c->lim.max_output, c->lim.max_memory);
}

static void put_value(ctx *c, const tpl_node *at, tpl_buf *b, tv v)
{
    if (!tv_print(b, v))
        rfail(c, at, NURI_ERR_LIMIT, "output or string over %zu bytes, or render memory over %zu",
              c->lim.max_output, c->lim.max_memory);
}

static void fail_memory(ctx *c, const tpl_node *at)
{
    rfail(c, at, NURI_ERR_LIMIT, "render memory limit reached (%zu bytes)", c->lim.max_memory);
}

/* The string a buffer holds, with the provenance of its bytes. */
static tv buf_str(ctx *c, const tpl_node *at, tpl_buf *b)
{
    tv v = tv_strn(b->p, b->n);
    bool ok;
    v.prov = tpl_buf_prov(b, &ok);
    if (!ok) fail_memory(c, at);
    return v;
}

/* A string made of base[0..n) with per-byte flags d[] (1 = data). */
static tv str_flags(ctx *c, const tpl_node *at, const char *base, size_t n, const uint8_t *d)
{
    tpl_buf b = {.p = (char *)base, .n = n, .cap = n + 1, .prov = c->prov, .d = (uint8_t *)d};
    return buf_str(c, at, &b);
}

/* s[p - s.p .. + n): a slice of s keeps its bytes' provenance. */
static tv sub(tv s, const char *p, size_t n)
{
    tv v = tv_strn(p, n);
    v.prov = s.prov;
    return v;
}

/* TPL_DATA if any of p[0..n) (inside s) is data, else TPL_MARKUP. */
static uint32_t prov_of(ctx *c, tv s, const char *p, size_t n)
{
    return tpl_prov_any_data(c->prov, s.prov, p, n) ? TPL_DATA : TPL_MARKUP;
}

/* TPL_DATA if anything in v is data (what a result derived from all of v counts as). */
static uint32_t prov_all(ctx *c, tv v)
{
    return tv_any_data(c->prov, v) ? TPL_DATA : TPL_MARKUP;
}

static tv str_of(ctx *c, const tpl_node *at, tv v)
{
    if (v.t == TV_STR) return v;
    tpl_buf b;
    buf_init(c, &b);
    put_value(c, at, &b, v);
    return buf_str(c, at, &b);
}

static tv cstr(const char *s)
{
    return tv_strn(s, strlen(s));
}

static char *cstr_dup(ctx *c, const tpl_node *at, const char *p, size_t n)
{
    char *s = ralloc(c, at, n + 1);
    memcpy(s, p, n);
    s[n] = 0;
    return s;
}

/* An undefined value that remembers why (for the error when it is used). */
static tv undef_fmt(ctx *c, const tpl_node *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static tv undef_fmt(ctx *c, const tpl_node *at, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return tv_undef(cstr_dup(c, at, msg, strlen(msg)));
}

__attribute__((noreturn)) static void fail_undef(ctx *c, const tpl_node *at, tv u)
{
    if (u.s.p && u.s.p[0] == '\'' && strstr(u.s.p, "has no attribute")) FAIL(c, at, "%s", u.s.p);
    FAIL(c, at, "'%s' is undefined", u.s.p ? u.s.p : "value");
}

/* ---- containers ---- */

static tv mk_list(ctx *c, const tpl_node *at, size_t n, bool tuple)
{
    tv v = {.t = TV_LIST, .tuple = tuple};
    v.l = ralloc(c, at, sizeof *v.l);
    v.l->n = n;
    v.l->v = n ? ralloc_n(c, at, n, sizeof(tv)) : NULL;
    return v;
}

static tv mk_dict(ctx *c, const tpl_node *at, size_t cap)
{
    tv v = {.t = TV_DICT};
    v.d = ralloc(c, at, sizeof *v.d);
    v.d->cap = cap;
    if (cap) {
        v.d->k = ralloc_n(c, at, cap, sizeof(tv));
        v.d->v = ralloc_n(c, at, cap, sizeof(tv));
    }
    return v;
}

static long dict_find(const tdict *d, tv key)
{
    for (size_t i = 0; i < d->n; i++)
        if (tv_equal(d->k[i], key)) return (long)i;
    return -1;
}

static long dict_find_str(const tdict *d, const char *s, size_t n)
{
    for (size_t i = 0; i < d->n; i++)
        if (d->k[i].t == TV_STR && d->k[i].s.n == n && !memcmp(d->k[i].s.p, s, n)) return (long)i;
    return -1;
}

/* Sets key (replacing an equal key's value in place, as Python dicts do). */
static void dict_set(ctx *c, const tpl_node *at, tdict *d, tv key, tv val)
{
    long i = dict_find(d, key);
    if (i >= 0) {
        d->v[i] = val;
        return;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 4;
        tv *k = ralloc_n(c, at, cap, sizeof(tv)), *v = ralloc_n(c, at, cap, sizeof(tv));
        if (d->n) {
            memcpy(k, d->k, d->n * sizeof(tv));
            memcpy(v, d->v, d->n * sizeof(tv));
        }
        d->k = k;
        d->v = v;
        d->cap = cap;
    }
    d->k[d->n] = key;
    d->v[d->n] = val;
    d->n++;
}

/* ---- scopes ---- */

static scope *scope_new(ctx *c, scope *parent)
{
    scope *s = ralloc(c, NULL, sizeof *s);
    s->parent = parent;
    return s;
}

static bool scope_get(const scope *s, const char *name, tv *out)
{
    for (; s; s = s->parent)
        for (size_t i = s->n; i-- > 0;)
            if (!strcmp(s->names[i], name)) {
                *out = s->vals[i];
                return true;
            }
    return false;
}

static void scope_set(ctx *c, scope *s, const char *name, tv v)
{
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->names[i], name)) {
            s->vals[i] = v;
            return;
        }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        const char **nn = ralloc_n(c, NULL, cap, sizeof *nn);
        tv *nv = ralloc_n(c, NULL, cap, sizeof *nv);
        if (s->n) {
            memcpy(nn, s->names, s->n * sizeof *nn);
            memcpy(nv, s->vals, s->n * sizeof *nv);
        }
        s->names = nn;
        s->vals = nv;
        s->cap = cap;
    }
    s->names[s->n] = name;
    s->vals[s->n] = v;
    s->n++;
}

/* ---- strings ---- */

static uint32_t cp_upper(uint32_t c)
{
    if (c >= 'a' && c <= 'z') return c - 32;
    if (c >= 0xe0 && c <= 0xfe && c != 0xf7) return c - 32;
    if (c == 0xff) return 0x178;
    if (c >= 0x3b1 && c <= 0x3c9 && c != 0x3c2) return c - 32;
    if (c >= 0x430 && c <= 0x44f) return c - 32;
    if (c >= 0x450 && c <= 0x45f) return c - 80;
    return c;
}

static uint32_t cp_lower(uint32_t c)
{
    if (c >= 'A' && c <= 'Z') return c + 32;
    if (c >= 0xc0 && c <= 0xde && c != 0xd7) return c + 32;
    if (c == 0x178) return 0xff;
    if (c >= 0x391 && c <= 0x3a9 && c != 0x3a2) return c + 32;
    if (c >= 0x410 && c <= 0x42f) return c + 32;
    if (c >= 0x400 && c <= 0x40f) return c + 80;
    return c;
}

static bool cp_cased(uint32_t c)
{
    return cp_upper(c) != c || cp_lower(c) != c;
}

enum { CASE_UPPER, CASE_LOWER, CASE_CAPITALIZE, CASE_PYTITLE, CASE_JTITLE };

/* Case mappings keep the byte length for the characters handled (all 1:1 within their block),
 * except U+00FF <-> U+0178; the output is sized for the worst case. Each output character has
 * the provenance of the input character it maps. */
static tv str_case(ctx *c, const tpl_node *at, tv s, int mode)
{
    char *o = ralloc_n(c, at, s.s.n + 1, 2);
    bool mixed = c->prov && s.prov >= TPL_PROV_MIXED;
    uint8_t *in = NULL, *od = NULL; // mixed: the input's and the output's per-byte flags
    if (mixed) {
        in = ralloc(c, at, s.s.n);
        od = ralloc_n(c, at, s.s.n + 1, 2);
        tpl_prov_flags(c->prov, s.prov, s.s.p, s.s.n, in);
    }
    size_t w = 0;
    bool prev_cased = false, first = true;
    for (size_t i = 0; i < s.s.n;) {
        uint32_t cp;
        size_t l = tpl_utf8_decode(s.s.p + i, s.s.n - i, &cp);
        uint32_t r = cp;
        switch (mode) {
        case CASE_UPPER:
            r = cp_upper(cp);
            break;
        case CASE_LOWER:
            r = cp_lower(cp);
            break;
        case CASE_CAPITALIZE:
            r = first ? cp_upper(cp) : cp_lower(cp);
            break;
        case CASE_PYTITLE:
            r = prev_cased ? cp_lower(cp) : cp_upper(cp);
            break;
        case CASE_JTITLE: {
            // jinja2's title filter: words start after runs of - ( { [ < and whitespace
            bool sep =
                cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<' || tpl_is_space(cp);
            r = sep ? cp : (first ? cp_upper(cp) : cp_lower(cp));
            first = sep;
            break;
        }
        }
        if (mode != CASE_JTITLE) first = false;
        prev_cased = cp_cased(cp);
        size_t w0 = w;
        if (r == cp) {
            memcpy(o + w, s.s.p + i, l);
            w += l;
        } else {
            w += nuri_utf8_encode(r, o + w);
        }
        if (mixed) memset(od + w0, memchr(in + i, 1, l) != NULL, w - w0);
        i += l;
    }
    if (mixed) return str_flags(c, at, o, w, od);
    return sub(s, o, w);
}

static bool in_chars(uint32_t cp, const tv *chars)
{
    if (!chars) return tpl_is_space(cp);
    for (size_t i = 0; i < chars->s.n;) {
        uint32_t x;
        i += tpl_utf8_decode(chars->s.p + i, chars->s.n - i, &x);
        if (x == cp) return true;
    }
    return false;
}

/* str.strip / lstrip / rstrip; chars NULL = whitespace. */
static tv str_strip(tv s, const tv *chars, bool left, bool right)
{
    size_t b = 0, e = s.s.n;
    if (left)
        while (b < e) {
            uint32_t cp;
            size_t l = tpl_utf8_decode(s.s.p + b, e - b, &cp);
            if (!in_chars(cp, chars)) break;
            b += l;
        }
    if (right)
        while (e > b) {
            size_t st = e - 1;
            while (st > b && ((unsigned char)s.s.p[st] & 0xc0) == 0x80) st--;
            uint32_t cp;
            tpl_utf8_decode(s.s.p + st, e - st, &cp);
            if (!in_chars(cp, chars)) break;
            e = st;
        }
    return sub(s, s.s.p + b, e - b);
}

static const char *memmem_(const char *h, size_t hn, const char *n, size_t nn)
{
    if (nn == 0) return h;
    if (nn > hn) return NULL;
    for (size_t i = 0; i + nn <= hn; i++)
        if (h[i] == n[0] && !memcmp(h + i, n, nn)) return h + i;
    return NULL;
}

/* Kept bytes of s keep their provenance; an inserted rep keeps its own, unless what it replaces
 * holds data (then it is data: data decided it is there). */
static tv str_replace(ctx *c, const tpl_node *at, tv s, tv old, tv rep, int64_t count)
{
    tpl_buf b;
    buf_init(c, &b);
    size_t i = 0;
    int64_t done = 0;
    if (old.s.n == 0) {
        // Python inserts rep between every character (and at both ends)
        uint32_t rp = prov_of(c, s, s.s.p, s.s.n) == TPL_DATA ? TPL_DATA : rep.prov;
        while (count < 0 || done < count) {
            put(c, at, &b, rep.s.p, rep.s.n, rp);
            done++;
            if (i >= s.s.n) break;
            uint32_t cp;
            size_t l = tpl_utf8_decode(s.s.p + i, s.s.n - i, &cp);
            put(c, at, &b, s.s.p + i, l, s.prov);
            i += l;
        }
        put(c, at, &b, s.s.p + i, s.s.n - i, s.prov);
        return buf_str(c, at, &b);
    }
    while (count < 0 || done < count) {
        const char *h = memmem_(s.s.p + i, s.s.n - i, old.s.p, old.s.n);
        if (!h) break;
        size_t k = (size_t)(h - s.s.p);
        put(c, at, &b, s.s.p + i, k - i, s.prov);
        put(c, at, &b, rep.s.p, rep.s.n,
            prov_of(c, s, h, old.s.n) == TPL_DATA ? TPL_DATA : rep.prov);
        i = k + old.s.n;
        done++;
    }
    put(c, at, &b, s.s.p + i, s.s.n - i, s.prov);
    return buf_str(c, at, &b);
}

/* str.split(sep=None, maxsplit=-1) */
static tv str_split(ctx *c, const tpl_node *at, tv s, const tv *sep, int64_t maxsplit)
{
    size_t cap = 8, n = 0;
    tv *items = ralloc_n(c, at, cap, sizeof(tv));
#define PUSH(v)                                                                                    \
    do {                                                                                           \
        if (n == cap) {                                                                            \
            tv *ni = ralloc_n(c, at, cap * 2, sizeof(tv));                                         \
            memcpy(ni, items, n * sizeof(tv));                                                     \
            items = ni;                                                                            \
            cap *= 2;                                                                              \
        }                                                                                          \
        items[n++] = (v);                                                                          \
    } while (0)
    if (!sep) {
        size_t i = 0;
        int64_t splits = 0;
        for (;;) {
            while (i < s.s.n) { // skip whitespace
                uint32_t cp;
                size_t l = tpl_utf8_decode(s.s.p + i, s.s.n - i, &cp);
                if (!tpl_is_space(cp)) break;
                i += l;
            }
            if (i >= s.s.n) break;
            if (maxsplit >= 0 && splits >= maxsplit) {
                PUSH(sub(s, s.s.p + i, s.s.n - i)); // the rest, trailing whitespace kept
                break;
            }
            size_t b = i;
            while (i < s.s.n) {
                uint32_t cp;
                size_t l = tpl_utf8_decode(s.s.p + i, s.s.n - i, &cp);
                if (tpl_is_space(cp)) break;
                i += l;
            }
            PUSH(sub(s, s.s.p + b, i - b));
            splits++;
        }
    } else {
        if (sep->s.n == 0) FAIL(c, at, "empty separator");
        size_t i = 0;
        int64_t splits = 0;
        for (;;) {
            const char *h = (maxsplit < 0 || splits < maxsplit)
                                ? memmem_(s.s.p + i, s.s.n - i, sep->s.p, sep->s.n)
                                : NULL;
            if (!h) {
                PUSH(sub(s, s.s.p + i, s.s.n - i));
                break;
            }
            size_t k = (size_t)(h - s.s.p);
            PUSH(sub(s, s.s.p + i, k - i));
            i = k + sep->s.n;
            splits++;
        }
    }
#undef PUSH
    tv l = mk_list(c, at, 0, false);
    l.l->n = n;
    l.l->v = items;
    return l;
}

static tv html_escape(ctx *c, const tpl_node *at, tv s)
{
    tpl_buf b;
    buf_init(c, &b);
    for (size_t i = 0; i < s.s.n; i++) {
        const char *r = NULL;
        switch (s.s.p[i]) {
        case '&':
            r = "&amp;";
            break;
        case '<':
            r = "&lt;";
            break;
        case '>':
            r = "&gt;";
            break;
        case '"':
            r = "&#34;";
            break;
        case '\'':
            r = "&#39;";
            break;
        }
        if (r)
            put(c, at, &b, r, strlen(r), prov_of(c, s, s.s.p + i, 1));
        else
            put(c, at, &b, s.s.p + i, 1, s.prov);
    }
    tv v = buf_str(c, at, &b);
    v.safe = 1;
    return v;
}

/* ---- sequences ---- */

/* The items a for loop (or list()) sees: list items, dict keys, string characters. */
static void iter_items(ctx *c, const tpl_node *at, tv v, const tv **items, size_t *n)
{
    switch (v.t) {
    case TV_UNDEF:
        *items = NULL;
        *n = 0;
        return;
    case TV_LIST:
        *items = v.l->v;
        *n = v.l->n;
        return;
    case TV_DICT:
        *items = v.d->k;
        *n = v.d->n;
        return;
    case TV_STR: {
        size_t cnt = tpl_utf8_count(v.s.p, v.s.n);
        tv *it = cnt ? ralloc_n(c, at, cnt, sizeof(tv)) : NULL;
        size_t i = 0;
        for (size_t k = 0; k < cnt; k++) {
            uint32_t cp;
            size_t l = tpl_utf8_decode(v.s.p + i, v.s.n - i, &cp);
            it[k] = sub(v, v.s.p + i, l);
            i += l;
        }
        *items = it;
        *n = cnt;
        return;
    }
    default:
        FAIL(c, at, "'%s' object is not iterable", tv_type_name(v));
    }
}

static tv list_from(ctx *c, const tpl_node *at, const tv *items, size_t n)
{
    tv l = mk_list(c, at, n, false);
    if (n) memcpy(l.l->v, items, n * sizeof(tv));
    return l;
}

static int64_t length_of(ctx *c, const tpl_node *at, tv v)
{
    switch (v.t) {
    case TV_UNDEF:
        return 0;
    case TV_STR:
        return (int64_t)tpl_utf8_count(v.s.p, v.s.n);
    case TV_LIST:
        if (v.gen) break;
        return (int64_t)v.l->n;
    case TV_DICT:
        return (int64_t)v.d->n;
    default:
        break;
    }
    FAIL(c, at, "object of type '%s' has no len()", tv_type_name(v));
}

/* ---- comparisons ---- */

static bool is_num(tv v)
{
    return v.t == TV_BOOL || v.t == TV_INT || v.t == TV_FLOAT;
}

static bool digit_char(char ch)
{
    return ch >= '0' && ch <= '9';
}

static double num_f(tv v)
{
    return v.t == TV_FLOAT ? v.f : (double)(v.t == TV_BOOL ? v.b : v.i);
}

static int64_t num_i(tv v)
{
    return v.t == TV_BOOL ? v.b : v.i;
}

static const char *op_text(int op)
{
    static const char *const t[] = {"",   "+",  "-", "*",  "/", "//", "%",  "**",
                                    "==", "!=", "<", "<=", ">", ">=", "in", "not in"};
    return op >= 0 && op < (int)(sizeof t / sizeof t[0]) ? t[op] : "?";
}

/* Python's ordering: <0, 0, >0; fails for types that do not order. */
static int compare(ctx *c, const tpl_node *at, tv a, tv b, int op)
{
    if (a.t == TV_UNDEF) fail_undef(c, at, a);
    if (b.t == TV_UNDEF) fail_undef(c, at, b);
    if (is_num(a) && is_num(b)) {
        if (a.t != TV_FLOAT && b.t != TV_FLOAT) {
            int64_t x = num_i(a), y = num_i(b);
            return x < y ? -1 : x > y;
        }
        double x = num_f(a), y = num_f(b);
        return x < y ? -1 : x > y;
    }
    if (a.t == TV_STR && b.t == TV_STR) {
        size_t n = a.s.n < b.s.n ? a.s.n : b.s.n;
        int r = memcmp(a.s.p, b.s.p, n);
        if (r) return r < 0 ? -1 : 1;
        return a.s.n < b.s.n ? -1 : a.s.n > b.s.n;
    }
    if (a.t == TV_LIST && b.t == TV_LIST && a.tuple == b.tuple) {
        for (size_t i = 0; i < a.l->n && i < b.l->n; i++) {
            if (tv_equal(a.l->v[i], b.l->v[i])) continue;
            return compare(c, at, a.l->v[i], b.l->v[i], op);
        }
        return a.l->n < b.l->n ? -1 : a.l->n > b.l->n;
    }
    FAIL(c, at, "'%s' not supported between instances of '%s' and '%s'", op_text(op),
         tv_type_name(a), tv_type_name(b));
}

static bool contains(ctx *c, const tpl_node *at, tv needle, tv hay)
{
    switch (hay.t) {
    case TV_UNDEF:
        return false;
    case TV_STR:
        if (needle.t != TV_STR)
            FAIL(c, at, "'in <string>' requires string as left operand, not %s",
                 tv_type_name(needle));
        return memmem_(hay.s.p, hay.s.n, needle.s.p, needle.s.n) != NULL;
    case TV_LIST:
        for (size_t i = 0; i < hay.l->n; i++)
            if (tv_equal(hay.l->v[i], needle)) return true;
        return false;
    case TV_DICT:
        return dict_find(hay.d, needle) >= 0;
    default:
        FAIL(c, at, "argument of type '%s' is not iterable", tv_type_name(hay));
    }
}

/* ---- arithmetic ---- */

static tv percent_format(ctx *c, const tpl_node *at, tv fmt, tv args);

static tv arith_values(ctx *c, const tpl_node *at, int op, tv a, tv b)
{
    if (a.t == TV_UNDEF) fail_undef(c, at, a);
    if (b.t == TV_UNDEF) fail_undef(c, at, b);
    if (is_num(a) && is_num(b)) {
        bool fl = a.t == TV_FLOAT || b.t == TV_FLOAT;
        if (op == OP_DIV) {
            if (num_f(b) == 0) FAIL(c, at, "division by zero");
            return tv_float(num_f(a) / num_f(b));
        }
        if (fl) {
            double x = num_f(a), y = num_f(b);
            switch (op) {
            case OP_ADD:
                return tv_float(x + y);
            case OP_SUB:
                return tv_float(x - y);
            case OP_MUL:
                return tv_float(x * y);
            case OP_FLOORDIV:
                if (y == 0) FAIL(c, at, "float floor division by zero");
                return tv_float(floor(x / y));
            case OP_MOD: {
                if (y == 0) FAIL(c, at, "float modulo");
                double r = fmod(x, y);
                if (r != 0 && ((r < 0) != (y < 0))) r += y;
                return tv_float(r);
            }
            case OP_POW:
                return tv_float(pow(x, y));
            }
        }
        int64_t x = num_i(a), y = num_i(b), r;
        switch (op) {
        case OP_ADD:
            if (__builtin_add_overflow(x, y, &r)) break;
            return tv_int(r);
        case OP_SUB:
            if (__builtin_sub_overflow(x, y, &r)) break;
            return tv_int(r);
        case OP_MUL:
            if (__builtin_mul_overflow(x, y, &r)) break;
            return tv_int(r);
        case OP_FLOORDIV:
        case OP_MOD: {
            if (y == 0) FAIL(c, at, "integer division or modulo by zero");
            if (x == INT64_MIN && y == -1) break;
            int64_t q = x / y, m = x % y;
            if (m != 0 && ((m < 0) != (y < 0))) {
                q--;
                m += y;
            }
            return tv_int(op == OP_MOD ? m : q);
        }
        case OP_POW: {
            if (y < 0) return tv_float(pow((double)x, (double)y));
            int64_t acc = 1;
            for (int64_t k = 0; k < y; k++) {
                if (__builtin_mul_overflow(acc, x, &acc))
                    FAIL(c, at, "integer overflow in '**' (nuri's integers are 64-bit)");
                if (acc == 0 || acc == 1) break;
                if (acc == -1) {
                    acc = ((y - k - 1) % 2) ? -acc : acc;
                    break;
                }
            }
            return tv_int(acc);
        }
        }
        FAIL(c, at, "integer overflow in '%s' (nuri's integers are 64-bit)", op_text(op));
    }
    if (op == OP_ADD && a.t == TV_STR && b.t == TV_STR) {
        if (a.safe != b.safe) { // Markup + str escapes the str
            if (a.safe)
                b = html_escape(c, at, b);
            else
                a = html_escape(c, at, a);
        }
        tpl_buf buf;
        buf_init(c, &buf);
        put(c, at, &buf, a.s.p, a.s.n, a.prov);
        put(c, at, &buf, b.s.p, b.s.n, b.prov);
        tv v = buf_str(c, at, &buf);
        v.safe = a.safe || b.safe;
        return v;
    }
    if (op == OP_ADD && a.t == TV_LIST && b.t == TV_LIST && a.tuple == b.tuple && !a.gen &&
        !b.gen) {
        tv l = mk_list(c, at, a.l->n + b.l->n, a.tuple);
        if (a.l->n) memcpy(l.l->v, a.l->v, a.l->n * sizeof(tv));
        if (b.l->n) memcpy(l.l->v + a.l->n, b.l->v, b.l->n * sizeof(tv));
        return l;
    }
    if (op == OP_MUL && (a.t == TV_INT || a.t == TV_BOOL) && (b.t == TV_STR || b.t == TV_LIST)) {
        tv t = a;
        a = b;
        b = t;
    }
    if (op == OP_MUL && (a.t == TV_STR || (a.t == TV_LIST && !a.gen)) &&
        (b.t == TV_INT || b.t == TV_BOOL)) {
        int64_t k = num_i(b);
        if (k < 0) k = 0;
        if ((a.t == TV_STR ? a.s.n : a.l->n) == 0) k = 0; // nothing to repeat: no loop either
        if (a.t == TV_STR) {
            uint64_t total;
            if (nuri_mul_overflow(a.s.n, (uint64_t)k, &total) || total > c->lim.max_output)
                rfail(c, at, NURI_ERR_LIMIT, "string repetition over %zu bytes", c->lim.max_output);
            char *s = ralloc(c, at, (size_t)total + 1);
            for (int64_t i = 0; i < k; i++) memcpy(s + (size_t)i * a.s.n, a.s.p, a.s.n);
            if (!c->prov || a.prov < TPL_PROV_MIXED) return sub(a, s, (size_t)total);
            uint8_t *d = ralloc(c, at, (size_t)total + 1); // each copy keeps its bytes' provenance
            for (int64_t i = 0; i < k; i++)
                tpl_prov_flags(c->prov, a.prov, a.s.p, a.s.n, d + (size_t)i * a.s.n);
            return str_flags(c, at, s, (size_t)total, d);
        }
        uint64_t total;
        if (nuri_mul_overflow(a.l->n, (uint64_t)k, &total) || total > c->lim.max_memory)
            rfail(c, at, NURI_ERR_LIMIT, "list repetition too large");
        tv l = mk_list(c, at, (size_t)total, a.tuple);
        for (int64_t i = 0; i < k; i++)
            if (a.l->n) memcpy(l.l->v + (size_t)i * a.l->n, a.l->v, a.l->n * sizeof(tv));
        return l;
    }
    if (op == OP_MOD && a.t == TV_STR) return percent_format(c, at, a, b);
    FAIL(c, at, "unsupported operand type(s) for %s: '%s' and '%s'", op_text(op), tv_type_name(a),
         tv_type_name(b));
}

/* a op b. Strings carry their bytes' provenance; any other result (a number, a list) is markup
 * only when both operands are. */
static tv arith(ctx *c, const tpl_node *at, int op, tv a, tv b)
{
    tv r = arith_values(c, at, op, a, b);
    if (r.t != TV_STR)
        r.prov = a.prov == TPL_MARKUP && b.prov == TPL_MARKUP ? TPL_MARKUP : TPL_DATA;
    return r;
}

/* Python's printf-style `fmt % args`: %[(key)][flags][width][.precision]type for the types
 * s r d i u f F e E g G x X o c %. args: a tuple (positional), a dict (%(key)s), or one value.
 * Provenance: fmt's text keeps its own, %s a string's its own; a number, and padding, are data if
 * the value or the conversion's spec is. */
static tv percent_format(ctx *c, const tpl_node *at, tv fmt, tv args)
{
    const tv *pos = &args;
    size_t n_pos = 1, used = 0;
    if (args.t == TV_LIST && args.tuple) {
        pos = args.l->v;
        n_pos = args.l->n;
    }
    tpl_buf b;
    buf_init(c, &b);
    const char *p = fmt.s.p, *end = fmt.s.p + fmt.s.n;
    while (p < end) {
        const char *q = memchr(p, '%', (size_t)(end - p));
        if (!q) {
            put(c, at, &b, p, (size_t)(end - p), fmt.prov);
            break;
        }
        put(c, at, &b, p, (size_t)(q - p), fmt.prov);
        p = q + 1;
        if (p < end && *p == '%') {
            put(c, at, &b, q, 1, fmt.prov);
            p++;
            continue;
        }
        tv val;
        bool have = false;
        if (p < end && *p == '(') {
            const char *k = memchr(p, ')', (size_t)(end - p));
            if (!k) FAIL(c, at, "incomplete format key");
            if (args.t != TV_DICT) FAIL(c, at, "format requires a mapping");
            long i = dict_find_str(args.d, p + 1, (size_t)(k - p - 1));
            if (i < 0) FAIL(c, at, "format key '%.*s' not found", (int)(k - p - 1), p + 1);
            val = args.d->v[i];
            have = true;
            p = k + 1;
        }
        char spec[32] = "%";
        size_t sl = 1;
        while (p < end && strchr("-0 +#", *p) && sl < 8) spec[sl++] = *p++;
        int width = -1, prec = -1;
        if (p < end && *p == '*') FAIL(c, at, "'*' widths are not supported");
        // digits saturate past the limit checked below, so a long run of them cannot overflow
        while (p < end && digit_char(*p)) {
            width = (width < 0 ? 0 : width) * 10 + (*p++ - '0');
            if (width > 1000) width = 1001;
        }
        if (p < end && *p == '.') {
            p++;
            prec = 0;
            while (p < end && digit_char(*p)) {
                prec = prec * 10 + (*p++ - '0');
                if (prec > 1000) prec = 1001;
            }
        }
        if (width > 1000 || prec > 1000) FAIL(c, at, "format width or precision over 1000");
        if (p >= end) FAIL(c, at, "incomplete format");
        char type = *p++;
        if (!have) {
            if (used >= n_pos) FAIL(c, at, "not enough arguments for format string");
            val = pos[used++];
        }
        if (val.t == TV_UNDEF && type != 's') fail_undef(c, at, val);
        char num[1100];
        const char *text = NULL;
        size_t text_n = 0;
        tv sv;
        uint32_t pad_prov =
            prov_of(c, fmt, q, (size_t)(p - q)) == TPL_DATA ? TPL_DATA : prov_all(c, val);
        uint32_t text_prov = pad_prov; // numbers; a string keeps its own
        switch (type) {
        case 's':
        case 'r': {
            tpl_buf vb;
            buf_init(c, &vb);
            if (type == 's' ? !tv_print(&vb, val) : !tv_repr(&vb, val))
                rfail(c, at, NURI_ERR_LIMIT, "formatted string too long");
            sv = buf_str(c, at, &vb);
            if (prec >= 0) sv.s.n = tpl_utf8_offset(sv.s.p, sv.s.n, (size_t)prec);
            text = sv.s.p;
            text_n = sv.s.n;
            text_prov = sv.prov;
            break;
        }
        case 'd':
        case 'i':
        case 'u':
        case 'x':
        case 'X':
        case 'o':
        case 'c': {
            if (!is_num(val))
                FAIL(c, at, "%%%c format: a number is required, not %s", type, tv_type_name(val));
            if (val.t == TV_FLOAT && !(fabs(val.f) < 9.2e18))
                FAIL(c, at, "%%%c format: %g is outside the 64-bit integer range", type, val.f);
            long long v = val.t == TV_FLOAT ? (long long)val.f : (long long)num_i(val);
            if (type == 'c') {
                if (v < 0 || v > 0x10ffff) FAIL(c, at, "%%c arg not in range");
                text_n = nuri_utf8_encode((uint32_t)v, num);
                text = num;
                break;
            }
            memcpy(spec + sl, "ll", 2);
            spec[sl + 2] = type == 'i' || type == 'u' ? 'd' : type;
            spec[sl + 3] = 0;
            snprintf(num, sizeof num, spec, v);
            text = num;
            text_n = strlen(num);
            break;
        }
        case 'f':
        case 'F':
        case 'e':
        case 'E':
        case 'g':
        case 'G': {
            if (!is_num(val))
                FAIL(c, at, "%%%c format: a number is required, not %s", type, tv_type_name(val));
            sl += (size_t)snprintf(spec + sl, sizeof spec - sl, ".%d%c", prec < 0 ? 6 : prec, type);
            snprintf(num, sizeof num, spec, num_f(val));
            text = num;
            text_n = strlen(num);
            break;
        }
        default:
            FAIL(c, at, "unsupported format character '%c'", type);
        }
        // width: pad (left-justified with '-'; '0' pads numbers after their sign)
        size_t len = tpl_utf8_count(text, text_n);
        int w = width < 0 ? 0 : width; // padding is ours: the C spec carries flags only
        bool left = strchr(spec, '-') != NULL;
        bool zero = strchr(spec, '0') != NULL && type != 's' && type != 'r' && !left;
        if ((int)len < w && !left) {
            if (zero && (text[0] == '-' || text[0] == '+')) {
                put(c, at, &b, text, 1, text_prov);
                text++;
                text_n--;
            }
            for (size_t k = len; (int)k < w; k++) put(c, at, &b, zero ? "0" : " ", 1, pad_prov);
        }
        put(c, at, &b, text, text_n, text_prov);
        if ((int)len < w && left)
            for (size_t k = len; (int)k < w; k++) put(c, at, &b, " ", 1, pad_prov);
    }
    if (args.t != TV_DICT && !(args.t == TV_LIST && !args.tuple) && used < n_pos)
        FAIL(c, at, "not all arguments converted during string formatting");
    return buf_str(c, at, &b);
}

/* ---- attribute and item access ---- */

static const char *const dict_methods[] = {"items",  "keys", "values",  "get",
                                           "update", "pop",  "popitem", "setdefault",
                                           "clear",  "copy", NULL};
static const char *const str_methods[] = {
    "strip",   "lstrip",  "rstrip",     "split",      "rsplit",  "startswith", "endswith",
    "upper",   "lower",   "title",      "capitalize", "replace", "find",       "rfind",
    "count",   "join",    "format",     "isdigit",    "isalpha", "isalnum",    "isspace",
    "isupper", "islower", "splitlines", "index",      "center",  "zfill",      NULL};
static const char *const list_methods[] = {"append",  "extend", "pop",   "insert", "remove", "sort",
                                           "reverse", "clear",  "index", "count",  "copy",   NULL};

static bool in_names(const char *const *names, const char *s)
{
    for (; *names; names++)
        if (!strcmp(*names, s)) return true;
    return false;
}

static tv bound_method(ctx *c, const tpl_node *at, tv self, const char *name)
{
    tfunc *f = ralloc(c, at, sizeof *f);
    f->kind = F_METHOD;
    f->self = self;
    f->name = name;
    tv v = {.t = TV_FUNC};
    v.fn = f;
    return v;
}

static tv loop_attr(ctx *c, const tpl_node *at, const tloop *l, const char *name)
{
    if (!strcmp(name, "index")) return tv_int((int64_t)l->index0 + 1);
    if (!strcmp(name, "index0")) return tv_int((int64_t)l->index0);
    if (!strcmp(name, "revindex")) return tv_int((int64_t)(l->length - l->index0));
    if (!strcmp(name, "revindex0")) return tv_int((int64_t)(l->length - l->index0 - 1));
    if (!strcmp(name, "first")) return tv_bool(l->index0 == 0);
    if (!strcmp(name, "last")) return tv_bool(l->index0 + 1 == l->length);
    if (!strcmp(name, "length")) return tv_int((int64_t)l->length);
    if (!strcmp(name, "depth")) return tv_int(l->depth);
    if (!strcmp(name, "depth0")) return tv_int(l->depth - 1);
    if (!strcmp(name, "previtem"))
        return l->index0 > 0 ? l->items[l->index0 - 1]
                             : undef_fmt(c, at, "there is no previous item");
    if (!strcmp(name, "nextitem"))
        return l->index0 + 1 < l->length ? l->items[l->index0 + 1]
                                         : undef_fmt(c, at, "there is no next item");
    if (!strcmp(name, "cycle")) {
        tv self = {.t = TV_LOOP};
        self.loop = (tloop *)l;
        return bound_method(c, at, self, "cycle");
    }
    return undef_fmt(c, at, "'LoopContext' object has no attribute '%s'", name);
}

static tv getattr_(ctx *c, const tpl_node *at, tv obj, const char *name)
{
    switch (obj.t) {
    case TV_UNDEF:
        fail_undef(c, at, obj);
    case TV_DICT:
        if (in_names(dict_methods, name)) return bound_method(c, at, obj, name);
        /* fall through */
    case TV_NS: {
        long i = dict_find_str(obj.d, name, strlen(name));
        if (i >= 0) return obj.d->v[i];
        return undef_fmt(c, at, "'%s object' has no attribute '%s'",
                         obj.t == TV_NS ? "Namespace" : "dict", name);
    }
    case TV_STR:
        if (in_names(str_methods, name)) return bound_method(c, at, obj, name);
        break;
    case TV_LIST:
        if (in_names(list_methods, name)) return bound_method(c, at, obj, name);
        break;
    case TV_LOOP:
        return loop_attr(c, at, obj.loop, name);
    default:
        break;
    }
    return undef_fmt(c, at, "'%s object' has no attribute '%s'", tv_type_name(obj), name);
}

static tv getitem(ctx *c, const tpl_node *at, tv obj, tv key)
{
    switch (obj.t) {
    case TV_UNDEF:
        fail_undef(c, at, obj);
    case TV_DICT:
    case TV_NS: {
        long i = dict_find(obj.d, key);
        if (i >= 0) return obj.d->v[i];
        break;
    }
    case TV_LIST:
        if (obj.gen) return undef_fmt(c, at, "'generator' object is not subscriptable");
        if (key.t == TV_INT || key.t == TV_BOOL) {
            int64_t i = num_i(key), n = (int64_t)obj.l->n;
            if (i < 0) i += n;
            if (i >= 0 && i < n) return obj.l->v[i];
            return undef_fmt(c, at, "list index out of range");
        }
        break;
    case TV_STR:
        if (key.t == TV_INT || key.t == TV_BOOL) {
            int64_t i = num_i(key), n = (int64_t)tpl_utf8_count(obj.s.p, obj.s.n);
            if (i < 0) i += n;
            if (i >= 0 && i < n) {
                size_t b = tpl_utf8_offset(obj.s.p, obj.s.n, (size_t)i);
                uint32_t cp;
                size_t l = tpl_utf8_decode(obj.s.p + b, obj.s.n - b, &cp);
                return sub(obj, obj.s.p + b, l);
            }
            return undef_fmt(c, at, "string index out of range");
        }
        break;
    default:
        break;
    }
    if (key.t == TV_STR) {
        char *name = cstr_dup(c, at, key.s.p, key.s.n);
        return getattr_(c, at, obj, name);
    }
    return undef_fmt(c, at, "'%s object' has no item of that key", tv_type_name(obj));
}

/* Python slice index normalization. */
static int64_t slice_index(ctx *c, const tpl_node *at, tv v, int64_t def, int64_t n, int64_t step)
{
    if (v.t == TV_NONE || v.t == TV_UNDEF) return def;
    if (v.t != TV_INT && v.t != TV_BOOL)
        FAIL(c, at, "slice indices must be integers or None, not %s", tv_type_name(v));
    int64_t i = num_i(v);
    if (i < 0) {
        i += n;
        if (i < 0) i = step < 0 ? -1 : 0;
    } else if (i >= n) {
        i = step < 0 ? n - 1 : n;
    }
    return i;
}

static tv do_slice(ctx *c, const tpl_node *at, tv obj, tv vb, tv ve, tv vs)
{
    if (obj.t == TV_UNDEF) fail_undef(c, at, obj);
    int64_t step = 1;
    if (vs.t != TV_NONE && vs.t != TV_UNDEF) {
        if (vs.t != TV_INT && vs.t != TV_BOOL) FAIL(c, at, "slice step must be an integer");
        step = num_i(vs);
        if (step == 0) FAIL(c, at, "slice step cannot be zero");
    }
    const tv *items;
    size_t n_items;
    if (obj.t == TV_STR || (obj.t == TV_LIST && !obj.gen)) {
        iter_items(c, at, obj, &items, &n_items);
    } else if (obj.t == TV_DICT || obj.t == TV_NS) {
        FAIL(c, at, "unhashable type: 'slice'");
    } else { // jinja2 turns a failed subscript into undefined
        return undef_fmt(c, at, "'%s' object is not subscriptable", tv_type_name(obj));
    }
    int64_t n = (int64_t)n_items;
    int64_t b = slice_index(c, at, vb, step < 0 ? n - 1 : 0, n, step);
    int64_t e = slice_index(c, at, ve, step < 0 ? -1 : n, n, step);
    size_t cnt = 0;
    if (step > 0 && e > b) cnt = (size_t)((e - b + step - 1) / step);
    if (step < 0 && b > e) cnt = (size_t)((b - e + (-step) - 1) / (-step));
    if (obj.t == TV_STR) {
        tpl_buf buf;
        buf_init(c, &buf);
        for (size_t k = 0; k < cnt; k++) {
            tv ch = items[b + (int64_t)k * step];
            put(c, at, &buf, ch.s.p, ch.s.n, ch.prov);
        }
        return buf_str(c, at, &buf);
    }
    tv l = mk_list(c, at, cnt, obj.tuple);
    for (size_t k = 0; k < cnt; k++) l.l->v[k] = items[b + (int64_t)k * step];
    return l;
}

/* ---- evaluation ---- */

static tv eval(ctx *c, scope *s, const tpl_node *n);
static int exec_body(ctx *c, scope *s, tpl_node *const *body, size_t n);
static tv call_value(ctx *c, scope *s, const tpl_node *at, tv fn, targs *a);
static tv apply_filter(ctx *c, scope *s, const tpl_node *at, const char *name, tv x, targs *a);
static bool apply_test(ctx *c, scope *s, const tpl_node *at, const char *name, tv x, targs *a);

static void eval_args(ctx *c, scope *s, const tpl_node *n, targs *a, size_t first)
{
    a->n = first;
    if (n->n_args + first > MAX_ARGS)
        rfail(c, n, NURI_ERR_UNSUPPORTED, "more than %d arguments", MAX_ARGS - 1);
    for (size_t i = 0; i < n->n_args; i++) {
        a->v[a->n] = eval(c, s, n->args[i]);
        a->kw[a->n] = n->kwnames ? n->kwnames[i] : NULL;
        a->n++;
    }
}

/* Argument `idx` (positional) or `name` (keyword) of a filter / function, else def. */
static tv arg(const targs *a, size_t idx, const char *name, tv def)
{
    size_t pos = 0;
    for (size_t i = 0; i < a->n; i++) {
        if (a->kw[i]) {
            if (name && !strcmp(a->kw[i], name)) return a->v[i];
        } else if (pos++ == idx) {
            return a->v[i];
        }
    }
    return def;
}

static size_t n_positional(const targs *a)
{
    size_t k = 0;
    for (size_t i = 0; i < a->n; i++) k += !a->kw[i];
    return k;
}

static tv want_str(ctx *c, const tpl_node *at, tv v, const char *what)
{
    if (v.t != TV_STR) FAIL(c, at, "%s must be a string, not %s", what, tv_type_name(v));
    return v;
}

static int64_t want_int(ctx *c, const tpl_node *at, tv v, const char *what)
{
    if (v.t != TV_INT && v.t != TV_BOOL)
        FAIL(c, at, "%s must be an integer, not %s", what, tv_type_name(v));
    return num_i(v);
}

/* ---- str.format() ---- */

/* A format spec: [[fill]align][sign][z][#][0][width][grouping][.precision][type]. */
typedef struct fspec {
    const char *fill; // one code point (NULL: a space)
    size_t fill_n;
    char align; // 0 (the type's default), '<', '>', '=', '^'
    char sign;  // '-', '+', ' '
    bool alt, zero;
    int width, prec; // -1: none
    char group;      // 0, ',', '_'
    char type;       // 0: none
} fspec;

static void parse_fspec(ctx *c, const tpl_node *at, const char *p, size_t n, fspec *f)
{
    *f = (fspec){.sign = '-', .width = -1, .prec = -1};
    size_t i = 0;
    uint32_t cp;
    size_t l = n ? tpl_utf8_decode(p, n, &cp) : 0;
    if (l < n && memchr("<>=^", p[l], 4)) {
        f->fill = p;
        f->fill_n = l;
        f->align = p[l];
        i = l + 1;
    } else if (n && memchr("<>=^", p[0], 4)) {
        f->align = p[i++];
    }
    if (i < n && memchr("+- ", p[i], 3)) f->sign = p[i++];
    if (i < n && p[i] == 'z') i++;
    if (i < n && p[i] == '#') f->alt = true, i++;
    if (i < n && p[i] == '0') f->zero = true, i++;
    while (i < n && digit_char(p[i])) {
        f->width = (f->width < 0 ? 0 : f->width) * 10 + (p[i++] - '0');
        if (f->width > 1000) FAIL(c, at, "format width over 1000");
    }
    if (i < n && (p[i] == ',' || p[i] == '_')) f->group = p[i++];
    if (i < n && p[i] == '.') {
        i++;
        if (i >= n || !digit_char(p[i])) FAIL(c, at, "Format specifier missing precision");
        f->prec = 0;
        while (i < n && digit_char(p[i])) {
            f->prec = f->prec * 10 + (p[i++] - '0');
            if (f->prec > 1000) FAIL(c, at, "format precision over 1000");
        }
    }
    if (i < n) f->type = p[i++];
    if (i != n) FAIL(c, at, "Invalid format specifier '%.*s'", (int)n, p);
}

/* Inserts `sep` every `every` digits into the integer digits d[0..n) (into out, NUL-terminated). */
static void group_digits(const char *d, size_t n, char sep, int every, char *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (i && (n - i) % (size_t)every == 0) out[k++] = sep;
        out[k++] = d[i];
    }
    out[k] = 0;
}

/* Python's float formatting of |x| for the types e E f F g G % and none (precision given). */
static void format_float(double x, const fspec *f, char *out, size_t cap)
{
    char t = f->type;
    int p = f->prec;
    if (isinf(x) || isnan(x)) {
        bool up = t == 'E' || t == 'F' || t == 'G';
        snprintf(out, cap, "%s%s", isnan(x) ? (up ? "NAN" : "nan") : (up ? "INF" : "inf"),
                 t == '%' ? "%" : "");
        return;
    }
    if (t == '%') {
        snprintf(out, cap, "%.*f%%", p < 0 ? 6 : p, x * 100);
    } else if (t == 'e' || t == 'E' || t == 'f' || t == 'F') {
        char spec[16];
        snprintf(spec, sizeof spec, "%%%s.*%c", f->alt ? "#" : "", t);
        snprintf(out, cap, spec, p < 0 ? 6 : p, x);
    } else if (t == 'g' || t == 'G' || t == 'n') {
        char spec[16];
        snprintf(spec, sizeof spec, "%%%s.*%c", f->alt ? "#" : "", t == 'n' ? 'g' : t);
        snprintf(out, cap, spec, p < 0 ? 6 : p == 0 ? 1 : p, x);
    } else { // no type, a precision: like g, but exponent from p - 1 on, and a digit after '.'
        int pp = p == 0 ? 1 : p;
        char e[64];
        snprintf(e, sizeof e, "%.*e", pp - 1, x);
        int ex = atoi(strchr(e, 'e') + 1);
        if (ex < -4 || ex >= pp - 1) {
            char *ep = strchr(e, 'e'), *q = ep;
            if (memchr(e, '.', (size_t)(ep - e))) {
                while (q[-1] == '0') q--;
                if (q[-1] == '.') q--;
            }
            snprintf(out, cap, "%.*s%s", (int)(q - e), e, ep);
        } else {
            snprintf(out, cap, "%.*f", pp - 1 - ex, x);
            char *dot = strchr(out, '.');
            if (dot) {
                char *q = out + strlen(out);
                while (q > dot + 2 && q[-1] == '0') q--;
                *q = 0;
            } else {
                strncat(out, ".0", cap - strlen(out) - 1);
            }
        }
    }
}

/* format(val, spec) appended to b. field_data: the replacement field ({...}) is data, so what
 * it puts there is data whole (as with % formatting: who placed the value decides). */
static void format_field(ctx *c, const tpl_node *at, tpl_buf *b, tv val, const char *sp, size_t sn,
                         bool field_data)
{
    if (sn == 0 && !field_data) { // format(x, '') is str(x)
        put_value(c, at, b, val);
        return;
    }
    if (sn == 0) {
        tpl_buf vb;
        buf_init(c, &vb);
        put_value(c, at, &vb, val);
        put(c, at, b, vb.p, vb.n, TPL_DATA);
        return;
    }
    fspec f;
    parse_fspec(c, at, sp, sn, &f);
    uint32_t pad_prov = field_data ? TPL_DATA : prov_all(c, val);
    char num[2048]; // the longest: 1e308 with precision 1000 and grouping (1412 bytes)
    const char *sign = "", *prefix = "", *text = num;
    size_t text_n = 0;
    uint32_t text_prov = pad_prov;
    bool number = true;
    if (val.t == TV_STR) {
        if (f.type && f.type != 's')
            FAIL(c, at, "Unknown format code '%c' for object of type 'str'", f.type);
        if (f.sign != '-' || f.alt || f.group)
            FAIL(c, at, "this format specifier is not allowed with a string");
        text = val.s.p;
        text_n = f.prec >= 0 ? tpl_utf8_offset(val.s.p, val.s.n, (size_t)f.prec) : val.s.n;
        text_prov = field_data ? TPL_DATA : val.prov;
        number = false;
    } else if (val.t == TV_INT || val.t == TV_BOOL) {
        int64_t v = num_i(val);
        uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
        char t = f.type;
        if (t == 'e' || t == 'E' || t == 'f' || t == 'F' || t == 'g' || t == 'G' || t == '%') {
            format_float((double)u, &f, num, sizeof num);
        } else if (t == 'c') {
            if (v < 0 || v > 0x10ffff) FAIL(c, at, "%%c arg not in range(0x110000)");
            num[nuri_utf8_encode((uint32_t)v, num)] = 0;
            u = 0;
        } else if (!t || t == 'd' || t == 'n' || t == 'b' || t == 'o' || t == 'x' || t == 'X') {
            int base = t == 'b' ? 2 : t == 'o' ? 8 : t == 'x' || t == 'X' ? 16 : 10;
            char d[72];
            size_t k = sizeof d;
            d[--k] = 0;
            do {
                d[--k] = "0123456789abcdef0123456789ABCDEF"[u % (uint64_t)base + (t == 'X') * 16];
                u /= (uint64_t)base;
            } while (u);
            if (f.group && (base == 10 || f.group == '_'))
                group_digits(d + k, sizeof d - 1 - k, f.group, base == 10 ? 3 : 4, num);
            else if (f.group)
                FAIL(c, at, "Cannot specify ',' with '%c'.", t);
            else
                memcpy(num, d + k, sizeof d - k);
            if (f.alt && base != 10)
                prefix = base == 2 ? "0b" : base == 8 ? "0o" : t == 'X' ? "0X" : "0x";
        } else {
            FAIL(c, at, "Unknown format code '%c' for object of type 'int'", t);
        }
        sign = v < 0 ? "-" : f.sign == '+' ? "+" : f.sign == ' ' ? " " : "";
    } else if (val.t == TV_FLOAT) {
        char t = f.type;
        if (t && !strchr("eEfFgGn%", t))
            FAIL(c, at, "Unknown format code '%c' for object of type 'float'", t);
        double x = val.f;
        if (!t && f.prec < 0) { // repr
            tpl_buf rb;
            buf_init(c, &rb);
            tv_print(&rb, tv_float(fabs(x)));
            snprintf(num, sizeof num, "%.*s", (int)rb.n, rb.p);
        } else {
            format_float(fabs(x), &f, num, sizeof num);
        }
        if (f.group) { // group the integer digits (at most 309 of them)
            size_t id = strspn(num, "0123456789");
            char g[sizeof num + 128];
            group_digits(num, id, f.group, 3, g);
            strncat(g, num + id, sizeof g - strlen(g) - 1);
            size_t gl = strlen(g);
            if (gl >= sizeof num) gl = sizeof num - 1;
            memcpy(num, g, gl);
            num[gl] = 0;
        }
        sign = signbit(x) && !isnan(x) ? "-" : f.sign == '+' ? "+" : f.sign == ' ' ? " " : "";
    } else {
        FAIL(c, at, "unsupported format string passed to %s.__format__", tv_type_name(val));
    }
    if (number) text_n = strlen(num);
    // padding to the width, in code points
    size_t len = strlen(sign) + strlen(prefix) + tpl_utf8_count(text, text_n);
    char align = f.align ? f.align : f.zero && !f.fill ? (number ? '=' : '<') : number ? '>' : '<';
    const char *fill = f.fill ? f.fill : f.zero && !f.align ? "0" : " ";
    size_t fill_n = f.fill ? f.fill_n : 1;
    size_t pad = f.width > 0 && (size_t)f.width > len ? (size_t)f.width - len : 0;
    size_t before = align == '<' ? 0 : align == '^' ? pad / 2 : pad;
    // padding counts as the value's (as with % formatting): data when the value is
    if (align != '=')
        for (size_t k = 0; k < before; k++) put(c, at, b, fill, fill_n, pad_prov);
    put(c, at, b, sign, strlen(sign), pad_prov);
    put(c, at, b, prefix, strlen(prefix), pad_prov);
    if (align == '=')
        for (size_t k = 0; k < pad; k++) put(c, at, b, fill, fill_n, pad_prov);
    put(c, at, b, text, text_n, text_prov);
    for (size_t k = before; align != '=' && k < pad; k++) put(c, at, b, fill, fill_n, pad_prov);
}

/* Python's str.format as jinja2's sandboxed formatter runs it: {} {0} {name}, .attr and [key]
 * lookups, !s / !r conversions, format specs (with nested {} fields in them). */
typedef struct fmt_state {
    const targs *a;
    int auto_next; // -1 once a field was numbered by hand
    bool manual;
} fmt_state;

static tv format_arg(ctx *c, const tpl_node *at, fmt_state *st, const char *p, size_t n)
{
    size_t i = 0;
    while (i < n && p[i] != '.' && p[i] != '[') i++;
    tv v;
    if (i == 0) {
        if (st->manual)
            FAIL(c, at,
                 "cannot switch from manual field specification to automatic field "
                 "numbering");
        size_t k = (size_t)st->auto_next++;
        if (k >= n_positional(st->a))
            FAIL(c, at, "Replacement index %zu out of range for positional args tuple", k);
        v = arg(st->a, k, NULL, tv_none());
    } else if (digit_char(p[0])) {
        if (st->auto_next > 0)
            FAIL(c, at,
                 "cannot switch from automatic field numbering to manual field "
                 "specification");
        st->manual = true;
        size_t k = 0;
        for (size_t j = 0; j < i; j++) {
            if (!digit_char(p[j]) || k > 100000) FAIL(c, at, "bad format field '%.*s'", (int)n, p);
            k = k * 10 + (size_t)(p[j] - '0');
        }
        if (k >= n_positional(st->a))
            FAIL(c, at, "Replacement index %zu out of range for positional args tuple", k);
        v = arg(st->a, k, NULL, tv_none());
    } else {
        char *name = cstr_dup(c, at, p, i);
        bool found = false;
        for (size_t j = 0; j < st->a->n; j++)
            if (st->a->kw[j] && !strcmp(st->a->kw[j], name)) {
                v = st->a->v[j];
                found = true;
            }
        if (!found) FAIL(c, at, "KeyError: '%s'", name);
    }
    while (i < n) { // .attr and [key]
        if (p[i] == '.') {
            size_t j = ++i;
            while (i < n && p[i] != '.' && p[i] != '[') i++;
            if (i == j) FAIL(c, at, "Empty attribute in format string");
            v = getattr_(c, at, v, cstr_dup(c, at, p + j, i - j));
        } else {
            size_t j = ++i;
            while (i < n && p[i] != ']') i++;
            if (i >= n || i == j) FAIL(c, at, "Missing ']' in format string");
            bool digits = true;
            for (size_t k = j; k < i; k++) digits = digits && digit_char(p[k]);
            tv key = tv_strn(p + j, i - j);
            if (digits && i - j < 18)
                key = tv_int(strtoll(cstr_dup(c, at, p + j, i - j), NULL, 10));
            v = getitem(c, at, v, key);
            i++;
            if (i < n && p[i] != '.' && p[i] != '[')
                FAIL(c, at, "Only '.' or '[' may follow ']' in format field specifier");
        }
    }
    return v;
}

static tv str_format(ctx *c, const tpl_node *at, tv fmt, fmt_state *st, int depth)
{
    tpl_buf b;
    buf_init(c, &b);
    const char *p = fmt.s.p, *end = fmt.s.p + fmt.s.n;
    while (p < end) {
        const char *q = p;
        while (q < end && *q != '{' && *q != '}') q++;
        put(c, at, &b, p, (size_t)(q - p), fmt.prov);
        if (q >= end) break;
        if (q + 1 < end && q[1] == *q) { // {{ or }}
            put(c, at, &b, q, 1, fmt.prov);
            p = q + 2;
            continue;
        }
        if (*q == '}') FAIL(c, at, "Single '}' encountered in format string");
        // the field up to its matching '}' (a spec may hold one level of {...})
        const char *f = q + 1, *e = f;
        int nest = 1;
        bool in_key = false;
        for (; e < end; e++) {
            if (in_key) {
                in_key = *e != ']';
                continue;
            }
            if (*e == '[' && nest == 1) in_key = true;
            if (*e == '{') nest++;
            if (*e == '}' && --nest == 0) break;
        }
        if (e >= end) FAIL(c, at, "expected '}' before end of string");
        const char *name_end = f;
        in_key = false;
        while (name_end < e && (in_key || (*name_end != '!' && *name_end != ':'))) {
            if (*name_end == '[') in_key = true;
            if (*name_end == ']') in_key = false;
            name_end++;
        }
        tv v = format_arg(c, at, st, f, (size_t)(name_end - f));
        const char *sp = name_end;
        if (sp < e && *sp == '!') {
            if (sp + 1 >= e || (sp + 2 < e && sp[2] != ':'))
                FAIL(c, at, "expected ':' after conversion specifier");
            char conv = sp[1];
            tpl_buf vb;
            buf_init(c, &vb);
            if (conv == 's')
                put_value(c, at, &vb, v);
            else if (conv == 'r') {
                if (!tv_repr(&vb, v)) rfail(c, at, NURI_ERR_LIMIT, "formatted string too long");
            } else
                FAIL(c, at, "Unknown conversion specifier %c", conv);
            v = buf_str(c, at, &vb);
            sp += 2;
        }
        tv spec = tv_strn("", 0);
        if (sp < e) { // ':' spec, itself formatted for nested fields
            spec = sub(fmt, sp + 1, (size_t)(e - sp - 1));
            if (memchr(spec.s.p, '{', spec.s.n)) {
                if (depth > 0) FAIL(c, at, "Max string recursion exceeded");
                spec = str_format(c, at, spec, st, depth + 1); // numbering goes on inside
            }
        }
        format_field(c, at, &b, v, spec.s.p, spec.s.n,
                     prov_of(c, fmt, q, (size_t)(e + 1 - q)) == TPL_DATA);
        p = e + 1;
    }
    return buf_str(c, at, &b);
}

static tv call_method(ctx *c, const tpl_node *at, tv self, const char *name, targs *a)
{
    tv none = tv_none();
    if (self.t == TV_STR) {
        if (!strcmp(name, "strip") || !strcmp(name, "lstrip") || !strcmp(name, "rstrip")) {
            tv ch = arg(a, 0, "chars", none);
            tv *chp = NULL;
            if (ch.t != TV_NONE) {
                want_str(c, at, ch, "strip argument");
                chp = &ch;
            }
            tv r = str_strip(self, chp, name[0] != 'r', name[0] != 'l');
            r.safe = self.safe;
            return r;
        }
        if (!strcmp(name, "split")) {
            tv sep = arg(a, 0, "sep", none);
            int64_t maxs = want_int(c, at, arg(a, 1, "maxsplit", tv_int(-1)), "maxsplit");
            if (sep.t != TV_NONE) want_str(c, at, sep, "separator");
            return str_split(c, at, self, sep.t == TV_NONE ? NULL : &sep, maxs);
        }
        if (!strcmp(name, "startswith") || !strcmp(name, "endswith")) {
            tv x = arg(a, 0, NULL, none);
            const tv *opts = &x;
            size_t n_opts = 1;
            if (x.t == TV_LIST && x.tuple) {
                opts = x.l->v;
                n_opts = x.l->n;
            }
            for (size_t i = 0; i < n_opts; i++) {
                tv o = want_str(c, at, opts[i], name);
                if (o.s.n > self.s.n) continue;
                const char *p = name[0] == 's' ? self.s.p : self.s.p + self.s.n - o.s.n;
                if (!memcmp(p, o.s.p, o.s.n)) return tv_bool(true);
            }
            return tv_bool(false);
        }
        if (!strcmp(name, "upper")) return str_case(c, at, self, CASE_UPPER);
        if (!strcmp(name, "lower")) return str_case(c, at, self, CASE_LOWER);
        if (!strcmp(name, "title")) return str_case(c, at, self, CASE_PYTITLE);
        if (!strcmp(name, "capitalize")) return str_case(c, at, self, CASE_CAPITALIZE);
        if (!strcmp(name, "replace")) {
            tv o = want_str(c, at, arg(a, 0, NULL, none), "replace argument");
            tv r = want_str(c, at, arg(a, 1, NULL, none), "replace argument");
            int64_t cnt = want_int(c, at, arg(a, 2, "count", tv_int(-1)), "count");
            return str_replace(c, at, self, o, r, cnt);
        }
        if (!strcmp(name, "find") || !strcmp(name, "rfind") || !strcmp(name, "index") ||
            !strcmp(name, "count")) {
            tv sub = want_str(c, at, arg(a, 0, NULL, none), name);
            if (!strcmp(name, "count")) {
                if (sub.s.n == 0) return tv_int((int64_t)tpl_utf8_count(self.s.p, self.s.n) + 1);
                int64_t k = 0;
                size_t i = 0;
                const char *h;
                while ((h = memmem_(self.s.p + i, self.s.n - i, sub.s.p, sub.s.n))) {
                    k++;
                    i = (size_t)(h - self.s.p) + sub.s.n;
                }
                return tv_int(k);
            }
            const char *h = NULL;
            if (name[0] == 'r') {
                for (size_t i = self.s.n - (sub.s.n <= self.s.n ? sub.s.n : self.s.n) + 1; i-- > 0;)
                    if (sub.s.n <= self.s.n - i && !memcmp(self.s.p + i, sub.s.p, sub.s.n)) {
                        h = self.s.p + i;
                        break;
                    }
            } else {
                h = memmem_(self.s.p, self.s.n, sub.s.p, sub.s.n);
            }
            if (!h) {
                if (name[0] == 'i') FAIL(c, at, "substring not found");
                return tv_int(-1);
            }
            return tv_int((int64_t)tpl_utf8_count(self.s.p, (size_t)(h - self.s.p)));
        }
        if (!strcmp(name, "join")) {
            tv seq = arg(a, 0, NULL, none);
            const tv *items;
            size_t n;
            iter_items(c, at, seq, &items, &n);
            tpl_buf b;
            buf_init(c, &b);
            for (size_t i = 0; i < n; i++) {
                if (i) put(c, at, &b, self.s.p, self.s.n, self.prov);
                tv it = want_str(c, at, items[i], "join item");
                put(c, at, &b, it.s.p, it.s.n, it.prov);
            }
            return buf_str(c, at, &b);
        }
        if (!strcmp(name, "isdigit") || !strcmp(name, "isalpha") || !strcmp(name, "isalnum") ||
            !strcmp(name, "isspace") || !strcmp(name, "isupper") || !strcmp(name, "islower")) {
            if (self.s.n == 0) return tv_bool(false);
            bool any_cased = false;
            for (size_t i = 0; i < self.s.n;) {
                uint32_t cp;
                i += tpl_utf8_decode(self.s.p + i, self.s.n - i, &cp);
                bool dg = cp >= '0' && cp <= '9';
                bool al = cp_cased(cp) || cp >= 0xac00; // Hangul and other scripts count as alpha
                switch (name[2]) {
                case 'd':
                    if (!dg) return tv_bool(false);
                    break;
                case 'a':
                    if (name[3] == 'p' ? !al : !(al || dg)) return tv_bool(false);
                    break;
                case 's':
                    if (!tpl_is_space(cp)) return tv_bool(false);
                    break;
                case 'u':
                    if (cp_lower(cp) != cp) any_cased = true;
                    if (cp_upper(cp) != cp) return tv_bool(false);
                    break;
                case 'l':
                    if (cp_upper(cp) != cp) any_cased = true;
                    if (cp_lower(cp) != cp) return tv_bool(false);
                    break;
                }
            }
            return tv_bool(name[2] == 'u' || name[2] == 'l' ? any_cased : true);
        }
        if (!strcmp(name, "format")) {
            fmt_state st = {.a = a};
            return str_format(c, at, self, &st, 0);
        }
        rfail(c, at, NURI_ERR_UNSUPPORTED, "str.%s() is not supported", name);
    }
    if (self.t == TV_DICT) {
        if (!strcmp(name, "items")) {
            tv l = mk_list(c, at, self.d->n, false);
            for (size_t i = 0; i < self.d->n; i++) {
                tv t = mk_list(c, at, 2, true);
                t.l->v[0] = self.d->k[i];
                t.l->v[1] = self.d->v[i];
                l.l->v[i] = t;
            }
            return l;
        }
        if (!strcmp(name, "keys")) return list_from(c, at, self.d->k, self.d->n);
        if (!strcmp(name, "values")) return list_from(c, at, self.d->v, self.d->n);
        if (!strcmp(name, "get")) {
            long i = dict_find(self.d, arg(a, 0, NULL, none));
            return i >= 0 ? self.d->v[i] : arg(a, 1, NULL, none);
        }
        if (!strcmp(name, "copy")) {
            tv d = mk_dict(c, at, self.d->n);
            for (size_t i = 0; i < self.d->n; i++) dict_set(c, at, d.d, self.d->k[i], self.d->v[i]);
            return d;
        }
        FAIL(c, at, "access to attribute '%s' of 'dict' object is unsafe", name);
    }
    if (self.t == TV_LIST) {
        if (!strcmp(name, "count")) {
            tv x = arg(a, 0, NULL, none);
            int64_t k = 0;
            for (size_t i = 0; i < self.l->n; i++) k += tv_equal(self.l->v[i], x);
            return tv_int(k);
        }
        if (!strcmp(name, "index")) {
            tv x = arg(a, 0, NULL, none);
            for (size_t i = 0; i < self.l->n; i++)
                if (tv_equal(self.l->v[i], x)) return tv_int((int64_t)i);
            FAIL(c, at, "value is not in list");
        }
        if (!strcmp(name, "copy")) return list_from(c, at, self.l->v, self.l->n);
        FAIL(c, at, "access to attribute '%s' of 'list' object is unsafe", name);
    }
    if (self.t == TV_LOOP && !strcmp(name, "cycle")) {
        size_t np = n_positional(a);
        if (!np) FAIL(c, at, "no items for cycling given");
        return arg(a, self.loop->index0 % np, NULL, none);
    }
    FAIL(c, at, "'%s' object has no method '%s'", tv_type_name(self), name);
}

static tv call_macro(ctx *c, const tpl_node *at, tfunc *f, targs *a)
{
    const tpl_node *m = f->macro;
    if (c->call_depth >= c->lim.max_call_depth)
        rfail(c, at, NURI_ERR_LIMIT, "macro calls nested deeper than %d", c->lim.max_call_depth);
    scope *s = scope_new(c, f->closure);
    size_t np = n_positional(a);
    if (np > m->n_args)
        FAIL(c, at, "macro '%s' takes not more than %zu argument(s)", m->name, m->n_args);
    bool *set = ralloc(c, at, m->n_args + 1);
    size_t pos = 0;
    for (size_t i = 0; i < a->n; i++) {
        size_t k;
        if (a->kw[i]) {
            for (k = 0; k < m->n_args; k++)
                if (!strcmp(m->args[k]->name, a->kw[i])) break;
            if (k == m->n_args && m->op && !strcmp(a->kw[i], "caller")) { // {% call %}
                scope_set(c, s, "caller", a->v[i]);
                continue;
            }
            if (k == m->n_args)
                FAIL(c, at, "macro '%s' takes no keyword argument '%s'", m->name, a->kw[i]);
        } else {
            k = pos++;
        }
        scope_set(c, s, m->args[k]->name, a->v[i]);
        set[k] = true;
    }
    for (size_t k = 0; k < m->n_args; k++) {
        if (set[k]) continue;
        tv v = m->kwv[k] ? eval(c, s, m->kwv[k])
                         : undef_fmt(c, at, "parameter '%s' was not provided", m->args[k]->name);
        scope_set(c, s, m->args[k]->name, v);
    }
    tpl_buf b;
    buf_init(c, &b);
    tpl_buf *saved = c->out;
    int saved_loops = c->loop_depth;
    c->out = &b;
    c->loop_depth = 0;
    c->call_depth++;
    exec_body(c, s, m->body, m->n_body);
    c->call_depth--;
    c->out = saved;
    c->loop_depth = saved_loops;
    return buf_str(c, at, &b);
}

static tv call_builtin(ctx *c, const tpl_node *at, int which, targs *a)
{
    tv none = tv_none();
    switch (which) {
    case B_RANGE: {
        size_t np = n_positional(a);
        if (np < 1 || np > 3 || np != a->n) FAIL(c, at, "range expected 1 to 3 arguments");
        int64_t start = 0, stop, stp = 1;
        if (np == 1)
            stop = want_int(c, at, a->v[0], "range argument");
        else {
            start = want_int(c, at, a->v[0], "range argument");
            stop = want_int(c, at, a->v[1], "range argument");
            if (np == 3) stp = want_int(c, at, a->v[2], "range argument");
        }
        if (stp == 0) FAIL(c, at, "range() arg 3 must not be zero");
        double cnt_d = 0;
        if (stp > 0 && stop > start) cnt_d = ceil(((double)stop - (double)start) / (double)stp);
        if (stp < 0 && start > stop) cnt_d = ceil(((double)start - (double)stop) / (double)-stp);
        if (cnt_d > NURI_TEMPLATE_MAX_RANGE)
            rfail(c, at, NURI_ERR_LIMIT,
                  "range too big: the sandbox blocks ranges larger than %d items",
                  NURI_TEMPLATE_MAX_RANGE);
        size_t cnt = (size_t)cnt_d;
        tv l = mk_list(c, at, cnt, false);
        for (size_t i = 0; i < cnt; i++) l.l->v[i] = tv_int(start + (int64_t)i * stp);
        return l;
    }
    case B_NAMESPACE:
    case B_DICT: {
        tv d = mk_dict(c, at, 4);
        for (size_t i = 0; i < a->n; i++) {
            if (a->kw[i]) {
                tv key = cstr(a->kw[i]);
                key.prov = TPL_MARKUP; // a keyword in the template's source
                dict_set(c, at, d.d, key, a->v[i]);
            } else if (a->v[i].t == TV_DICT || a->v[i].t == TV_NS) {
                for (size_t k = 0; k < a->v[i].d->n; k++)
                    dict_set(c, at, d.d, a->v[i].d->k[k], a->v[i].d->v[k]);
            } else {
                FAIL(c, at, "%s() takes keyword arguments or one mapping",
                     which == B_DICT ? "dict" : "namespace");
            }
        }
        if (which == B_NAMESPACE) d.t = TV_NS;
        d.prov = TPL_MARKUP; // the template's own container (its items keep their provenance)
        return d;
    }
    case B_RAISE: {
        tv m = arg(a, 0, NULL, none);
        tpl_buf b;
        buf_init(c, &b);
        put_value(c, at, &b, m);
        // the template's message as it is; an empty one would leave the caller nothing to show
        nuri_error(NURI_ERR_INVALID_ARG, "%s",
                   b.n && b.p[0] ? b.p : "raise_exception() with an empty message");
        longjmp(c->jb, NURI_ERR_INVALID_ARG);
    }
    case B_STRFTIME: {
        tv fmt = want_str(c, at, arg(a, 0, NULL, none), "strftime_now format");
        struct tm tmv;
        if (c->now) {
            tmv = *c->now;
        } else {
            time_t t = time(NULL);
            localtime_r(&t, &tmv);
        }
        char *f = cstr_dup(c, at, fmt.s.p, fmt.s.n);
        char out[512];
        size_t n = fmt.s.n ? strftime(out, sizeof out, f, &tmv) : 0;
        if (fmt.s.n && n == 0 && fmt.s.n < 200) out[0] = 0;
        tv r = tv_strn(cstr_dup(c, at, out, n), n);
        r.prov = prov_of(c, fmt, fmt.s.p, fmt.s.n); // the time is ours; the format may not be
        return r;
    }
    }
    FAIL(c, at, "unknown function");
}

static tv call_value(ctx *c, scope *s, const tpl_node *at, tv fn, targs *a)
{
    (void)s;
    step(c, at);
    if (fn.t == TV_UNDEF) fail_undef(c, at, fn);
    if (fn.t != TV_FUNC) FAIL(c, at, "'%s' object is not callable", tv_type_name(fn));
    switch (fn.fn->kind) {
    case F_MACRO:
        return call_macro(c, at, fn.fn, a);
    case F_BUILTIN:
        return call_builtin(c, at, fn.fn->builtin, a);
    case F_METHOD:
        return call_method(c, at, fn.fn->self, fn.fn->name, a);
    }
    FAIL(c, at, "not callable");
}

static tv eval_call(ctx *c, scope *s, const tpl_node *n)
{
    targs a;
    const tpl_node *callee = n->a;
    if (callee->kind == E_ATTR) {
        tv obj = eval(c, s, callee->a);
        if ((obj.t == TV_STR && in_names(str_methods, callee->name)) ||
            (obj.t == TV_DICT && in_names(dict_methods, callee->name)) ||
            (obj.t == TV_LIST && in_names(list_methods, callee->name))) {
            eval_args(c, s, n, &a, 0);
            step(c, n);
            return call_method(c, n, obj, callee->name, &a);
        }
        tv fn = getattr_(c, callee, obj, callee->name);
        eval_args(c, s, n, &a, 0);
        return call_value(c, s, n, fn, &a);
    }
    tv fn = eval(c, s, callee);
    eval_args(c, s, n, &a, 0);
    return call_value(c, s, n, fn, &a);
}

static tv eval(ctx *c, scope *s, const tpl_node *n)
{
    switch (n->kind) {
    case E_CONST: {
        tv v = n->val;
        v.prov = TPL_MARKUP;
        return v;
    }
    case E_NAME: {
        tv v;
        if (scope_get(s, n->name, &v)) return v;
        return tv_undef(n->name);
    }
    case E_ATTR:
        return getattr_(c, n, eval(c, s, n->a), n->name);
    case E_ITEM: {
        tv obj = eval(c, s, n->a);
        return getitem(c, n, obj, eval(c, s, n->b));
    }
    case E_SLICE: {
        tv obj = eval(c, s, n->a);
        tv none = tv_none();
        tv b = n->b ? eval(c, s, n->b) : none, e = n->c ? eval(c, s, n->c) : none,
           st = n->d ? eval(c, s, n->d) : none;
        return do_slice(c, n, obj, b, e, st);
    }
    case E_CALL:
        return eval_call(c, s, n);
    case E_FILTER: {
        tv x = eval(c, s, n->a);
        targs a;
        eval_args(c, s, n, &a, 0);
        return apply_filter(c, s, n, n->name, x, &a);
    }
    case E_TEST: {
        tv x;
        // `x is defined` must not fail on x.y where x is undefined? jinja2 does fail there too,
        // except for plain names and attribute misses, which evaluate to undefined anyway.
        x = eval(c, s, n->a);
        targs a;
        eval_args(c, s, n, &a, 0);
        bool r = apply_test(c, s, n, n->name, x, &a);
        return tv_bool(n->op ? !r : r);
    }
    case E_BINOP: {
        tv a = eval(c, s, n->a);
        tv b = eval(c, s, n->b);
        return arith(c, n, n->op, a, b);
    }
    case E_NEG:
    case E_POS: {
        tv a = eval(c, s, n->a);
        if (a.t == TV_UNDEF) fail_undef(c, n, a);
        if (!is_num(a))
            FAIL(c, n, "bad operand type for unary %s: '%s'", n->kind == E_NEG ? "-" : "+",
                 tv_type_name(a));
        tv r;
        if (n->kind == E_POS)
            r = a.t == TV_BOOL ? tv_int(a.b) : a;
        else if (a.t == TV_FLOAT)
            r = tv_float(-a.f);
        else if (num_i(a) == INT64_MIN)
            FAIL(c, n, "integer overflow");
        else
            r = tv_int(-num_i(a));
        r.prov = a.prov;
        return r;
    }
    case E_NOT:
        return tv_bool(!tv_truthy(eval(c, s, n->a)));
    case E_AND: {
        tv a = eval(c, s, n->a);
        return tv_truthy(a) ? eval(c, s, n->b) : a;
    }
    case E_OR: {
        tv a = eval(c, s, n->a);
        return tv_truthy(a) ? a : eval(c, s, n->b);
    }
    case E_CMP: {
        tv left = eval(c, s, n->args[0]);
        for (size_t i = 1; i < n->n_args; i++) {
            tv right = eval(c, s, n->args[i]);
            int op = n->ops[i - 1];
            bool r;
            switch (op) {
            case OP_EQ:
                r = tv_equal(left, right);
                break;
            case OP_NE:
                r = !tv_equal(left, right);
                break;
            case OP_IN:
                r = contains(c, n, left, right);
                break;
            case OP_NOTIN:
                r = !contains(c, n, left, right);
                break;
            default: {
                int k = compare(c, n, left, right, op);
                r = op == OP_LT ? k < 0 : op == OP_LE ? k <= 0 : op == OP_GT ? k > 0 : k >= 0;
            }
            }
            if (!r) return tv_bool(false);
            left = right;
        }
        return tv_bool(true);
    }
    case E_COND:
        if (tv_truthy(eval(c, s, n->a))) return eval(c, s, n->b);
        return n->c ? eval(c, s, n->c) : tv_undef("conditional expression without else");
    case E_LIST:
    case E_TUPLE: {
        tv l = mk_list(c, n, n->n_args, n->kind == E_TUPLE);
        l.prov = TPL_MARKUP; // the template's own container (its items keep their provenance)
        for (size_t i = 0; i < n->n_args; i++) l.l->v[i] = eval(c, s, n->args[i]);
        return l;
    }
    case E_DICT: {
        tv d = mk_dict(c, n, n->n_args);
        d.prov = TPL_MARKUP;
        for (size_t i = 0; i < n->n_args; i++) {
            tv k = eval(c, s, n->args[i]);
            if (k.t == TV_LIST && !k.tuple) FAIL(c, n, "unhashable type: 'list'");
            if (k.t == TV_DICT || k.t == TV_NS) FAIL(c, n, "unhashable type: 'dict'");
            dict_set(c, n, d.d, k, eval(c, s, n->kwv[i]));
        }
        return d;
    }
    case E_CONCAT: {
        tpl_buf b;
        buf_init(c, &b);
        for (size_t i = 0; i < n->n_args; i++) put_value(c, n, &b, eval(c, s, n->args[i]));
        return buf_str(c, n, &b);
    }
    }
    FAIL(c, n, "cannot evaluate this node (kind %d)", n->kind);
}

/* ---- filters ---- */

/* transformers' tojson: json.dumps(x, ensure_ascii=False, indent=None, separators=None,
 * sort_keys=False) with those keyword arguments (positionally: indent only). */
static tv tojson(ctx *c, const tpl_node *at, tv x, targs *a)
{
    tv none = tv_none();
    tv ind = arg(a, 0, "indent", none);
    tpl_json_opts o = {.indent = -1};
    if (ind.t != TV_NONE) o.indent = (int)want_int(c, at, ind, "tojson indent");
    if (o.indent > 64) o.indent = 64;
    if (ind.t != TV_NONE && o.indent < 0) o.indent = 0; // Python: ' ' * -1 == ''
    o.ensure_ascii = tv_truthy(arg(a, 99, "ensure_ascii", tv_bool(false)));
    o.sort_keys = tv_truthy(arg(a, 99, "sort_keys", tv_bool(false)));
    tv sp = arg(a, 99, "separators", none);
    o.item_sep = ind.t == TV_NONE ? ", " : ",";
    o.key_sep = ": ";
    if (sp.t != TV_NONE) {
        if (sp.t != TV_LIST || sp.gen || sp.l->n != 2)
            FAIL(c, at, "tojson separators must be a pair of strings");
        tv is = want_str(c, at, sp.l->v[0], "tojson separator");
        tv ks = want_str(c, at, sp.l->v[1], "tojson separator");
        o.item_sep = cstr_dup(c, at, is.s.p, is.s.n);
        o.key_sep = cstr_dup(c, at, ks.s.p, ks.s.n);
    }
    o.item_sep_n = strlen(o.item_sep);
    o.key_sep_n = strlen(o.key_sep);
    for (size_t i = 0; i < a->n; i++) {
        const char *k = a->kw[i];
        if (k && strcmp(k, "indent") && strcmp(k, "ensure_ascii") && strcmp(k, "sort_keys") &&
            strcmp(k, "separators"))
            FAIL(c, at, "tojson() got an unexpected keyword argument '%s'", k);
    }
    tpl_buf b;
    buf_init(c, &b);
    const char *bad = NULL;
    int r = tv_json_opts(&b, x, &o, &bad);
    if (r == -1) rfail(c, at, NURI_ERR_LIMIT, "output or string over %zu bytes", c->lim.max_output);
    if (r == -2) FAIL(c, at, "Object of type %s is not JSON serializable", bad);
    if (r == -3) FAIL(c, at, "tojson(sort_keys=True): %s", bad);
    return buf_str(c, at, &b);
}

/* Looks up a dotted attribute path ("a.b.0") as jinja2's make_attrgetter does. */
static tv attr_path(ctx *c, const tpl_node *at, tv x, tv path)
{
    if (path.t == TV_INT) return getitem(c, at, x, path);
    want_str(c, at, path, "attribute");
    size_t i = 0;
    while (i <= path.s.n) {
        const char *dot = memchr(path.s.p + i, '.', path.s.n - i);
        size_t e = dot ? (size_t)(dot - path.s.p) : path.s.n;
        tv part = tv_strn(path.s.p + i, e - i);
        bool digits = e > i;
        for (size_t k = i; k < e; k++) digits = digits && path.s.p[k] >= '0' && path.s.p[k] <= '9';
        if (digits) part = tv_int(strtoll(cstr_dup(c, at, path.s.p + i, e - i), NULL, 10));
        x = getitem(c, at, x, part);
        if (!dot) break;
        i = e + 1;
    }
    return x;
}

/* Sort key for sort/unique/min/max: case-folded strings unless case_sensitive. */
static tv sort_key(ctx *c, const tpl_node *at, tv x, tv attribute, bool case_sensitive)
{
    if (attribute.t != TV_NONE) x = attr_path(c, at, x, attribute);
    if (!case_sensitive && x.t == TV_STR) x = str_case(c, at, x, CASE_LOWER);
    return x;
}

static void merge_sort(ctx *c, const tpl_node *at, tv *v, tv *keys, size_t n, bool reverse,
                       tv *tmpv, tv *tmpk)
{
    if (n < 2) return;
    size_t h = n / 2;
    merge_sort(c, at, v, keys, h, reverse, tmpv, tmpk);
    merge_sort(c, at, v + h, keys + h, n - h, reverse, tmpv, tmpk);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n) {
        int r = compare(c, at, keys[j], keys[i], OP_LT);
        bool take_right = reverse ? r > 0 : r < 0;
        if (take_right) {
            tmpv[k] = v[j];
            tmpk[k++] = keys[j++];
        } else {
            tmpv[k] = v[i];
            tmpk[k++] = keys[i++];
        }
    }
    while (i < h) {
        tmpv[k] = v[i];
        tmpk[k++] = keys[i++];
    }
    while (j < n) {
        tmpv[k] = v[j];
        tmpk[k++] = keys[j++];
    }
    memcpy(v, tmpv, n * sizeof(tv));
    memcpy(keys, tmpk, n * sizeof(tv));
}

static tv py_round(double x, int64_t prec, const char *method)
{
    double m = pow(10.0, (double)prec);
    double y = x * m;
    double r;
    if (!strcmp(method, "ceil"))
        r = ceil(y);
    else if (!strcmp(method, "floor"))
        r = floor(y);
    else {
        // Python's round(): half to even on the exact decimal value
        r = nearbyint(y);
        if (prec == 0) r = nearbyint(x);
    }
    return tv_float(prec == 0 ? r : r / m);
}

/* Selects items by a test (select/reject/selectattr/rejectattr). */
static tv select_items(ctx *c, scope *s, const tpl_node *at, tv x, targs *a, bool by_attr,
                       bool keep)
{
    const tv *items = NULL;
    size_t n = 0;
    if (tv_truthy(x)) iter_items(c, at, x, &items, &n); // jinja2: `if seq:` before iterating
    size_t first = by_attr ? 1 : 0;
    tv attribute = by_attr ? arg(a, 0, NULL, tv_none()) : tv_none();
    tv test = arg(a, first, NULL, tv_none());
    targs ta;
    ta.n = 0;
    size_t pos = 0;
    for (size_t i = 0; i < a->n; i++) {
        if (!a->kw[i] && pos++ <= first) continue;
        ta.v[ta.n] = a->v[i];
        ta.kw[ta.n] = a->kw[i];
        ta.n++;
    }
    tv out = mk_list(c, at, n, false);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        step(c, at);
        tv v = by_attr ? attr_path(c, at, items[i], attribute) : items[i];
        bool r;
        if (test.t == TV_NONE)
            r = tv_truthy(v);
        else {
            char *tn = cstr_dup(c, at, want_str(c, at, test, "test name").s.p, test.s.n);
            r = apply_test(c, s, at, tn, v, &ta);
        }
        if (r == keep) out.l->v[k++] = items[i];
    }
    out.l->n = k;
    out.gen = 1;
    return out;
}

static void check_indent_lines(const char *p, size_t n, size_t *i, size_t *line_end, size_t *next)
{
    // one line of str.splitlines(): ends at \n, \r, \r\n, \v, \f, \x1c-\x1e, U+0085/2028/2029
    size_t k = *i;
    while (k < n) {
        unsigned char ch = (unsigned char)p[k];
        if (ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f' || (ch >= 0x1c && ch <= 0x1e)) {
            *line_end = k;
            *next = k + 1 + (ch == '\r' && k + 1 < n && p[k + 1] == '\n');
            return;
        }
        if (ch >= 0x80) {
            uint32_t cp;
            size_t l = tpl_utf8_decode(p + k, n - k, &cp);
            if (cp == 0x85 || cp == 0x2028 || cp == 0x2029) {
                *line_end = k;
                *next = k + l;
                return;
            }
            k += l;
            continue;
        }
        k++;
    }
    *line_end = n;
    *next = n;
}

static tv indent_filter(ctx *c, const tpl_node *at, tv x, targs *a)
{
    tv w = arg(a, 0, "width", tv_int(4));
    bool first = tv_truthy(arg(a, 1, "first", tv_bool(false)));
    bool blank = tv_truthy(arg(a, 2, "blank", tv_bool(false)));
    tv ind;
    if (w.t == TV_STR)
        ind = w;
    else {
        int64_t k = want_int(c, at, w, "indent width");
        if (k < 0) k = 0;
        if (k > 4096) rfail(c, at, NURI_ERR_LIMIT, "indent width over 4096");
        char *sp = ralloc(c, at, (size_t)k + 1);
        memset(sp, ' ', (size_t)k);
        ind = tv_strn(sp, (size_t)k);
        ind.prov = w.prov == TPL_MARKUP ? TPL_MARKUP : TPL_DATA;
    }
    if (x.t != TV_STR) // jinja2 does s += "\n" on the value itself
        FAIL(c, at, "unsupported operand type(s) for +=: '%s' and 'str'", tv_type_name(x));
    // s += "\n"; lines = s.splitlines()
    tpl_buf sb;
    buf_init(c, &sb);
    put(c, at, &sb, x.s.p, x.s.n, x.prov);
    put(c, at, &sb, "\n", 1, TPL_MARKUP);
    tv src = buf_str(c, at, &sb);
    tpl_buf b;
    buf_init(c, &b);
    if (first) put(c, at, &b, ind.s.p, ind.s.n, ind.prov);
    size_t i = 0, le, nx, prev_le = 0, prev_nx = 0;
    while (i < src.s.n) {
        check_indent_lines(src.s.p, src.s.n, &i, &le, &nx);
        if (prev_nx) { // the "\n" that joins lines stands for the line break it replaces
            put(c, at, &b, "\n", 1, prov_of(c, src, src.s.p + prev_le, prev_nx - prev_le));
            if (blank || le > i) put(c, at, &b, ind.s.p, ind.s.n, ind.prov);
        }
        put(c, at, &b, src.s.p + i, le - i, src.prov);
        prev_le = le;
        prev_nx = nx;
        i = nx;
    }
    return buf_str(c, at, &b);
}

static tv apply_filter(ctx *c, scope *s, const tpl_node *at, const char *name, tv x, targs *a)
{
    tv none = tv_none();
    step(c, at);
#define IS(n) (!strcmp(name, n))
    if (IS("safe")) {
        x = str_of(c, at, x);
        x.safe = 1;
        return x;
    }
    if (IS("tojson")) return tojson(c, at, x, a);
    if (IS("trim")) {
        tv ch = arg(a, 0, "chars", none);
        tv sx = str_of(c, at, x);
        if (ch.t != TV_NONE) {
            want_str(c, at, ch, "trim chars");
            return str_strip(sx, &ch, true, true);
        }
        return str_strip(sx, NULL, true, true);
    }
    if (IS("length") || IS("count")) return tv_int(length_of(c, at, x));
    if (IS("string")) return str_of(c, at, x);
    if (IS("upper")) return str_case(c, at, str_of(c, at, x), CASE_UPPER);
    if (IS("lower")) return str_case(c, at, str_of(c, at, x), CASE_LOWER);
    if (IS("capitalize")) return str_case(c, at, str_of(c, at, x), CASE_CAPITALIZE);
    if (IS("title")) return str_case(c, at, str_of(c, at, x), CASE_JTITLE);
    if (IS("escape") || IS("e"))
        return x.t == TV_STR && x.safe ? x : html_escape(c, at, str_of(c, at, x));
    if (IS("items")) {
        if (x.t == TV_UNDEF) return mk_list(c, at, 0, false);
        if (x.t != TV_DICT) FAIL(c, at, "Can only get item pairs from a mapping.");
        tv it = call_method(c, at, x, "items", a);
        it.gen = 1;
        return it;
    }
    if (IS("list")) {
        const tv *items;
        size_t n;
        iter_items(c, at, x, &items, &n);
        return list_from(c, at, items, n);
    }
    if (IS("first") || IS("last")) {
        const tv *items;
        size_t n;
        iter_items(c, at, x, &items, &n);
        if (IS("last") && x.t == TV_LIST && x.gen)
            FAIL(c, at, "'generator' object is not reversible");
        if (!n) return undef_fmt(c, at, "No %s item, sequence was empty.", name);
        return IS("first") ? items[0] : items[n - 1];
    }
    if (IS("join")) {
        tv d = arg(a, 0, "d", cstr(""));
        tv attribute = arg(a, 1, "attribute", none);
        const tv *items;
        size_t n;
        iter_items(c, at, x, &items, &n);
        d = str_of(c, at, d);
        tpl_buf b;
        buf_init(c, &b);
        for (size_t i = 0; i < n; i++) {
            if (i) put(c, at, &b, d.s.p, d.s.n, d.prov);
            tv it = attribute.t != TV_NONE ? attr_path(c, at, items[i], attribute) : items[i];
            put_value(c, at, &b, it);
        }
        return buf_str(c, at, &b);
    }
    if (IS("default") || IS("d")) {
        tv def = arg(a, 0, "default_value", cstr(""));
        bool boolean = tv_truthy(arg(a, 1, "boolean", tv_bool(false)));
        if (x.t == TV_UNDEF || (boolean && !tv_truthy(x))) return def;
        return x;
    }
    if (IS("replace")) {
        tv sx = str_of(c, at, x);
        tv o = str_of(c, at, arg(a, 0, "old", none));
        tv r = str_of(c, at, arg(a, 1, "new", none));
        tv cnt = arg(a, 2, "count", none);
        return str_replace(c, at, sx, o, r, cnt.t == TV_NONE ? -1 : want_int(c, at, cnt, "count"));
    }
    if (IS("int")) {
        tv def = arg(a, 0, "default", tv_int(0));
        if (x.t == TV_INT) return x;
        if (x.t == TV_BOOL) return tv_int(x.b);
        if (x.t == TV_FLOAT) {
            if (!isfinite(x.f) || fabs(x.f) >= 9.2e18) return def;
            return tv_int((int64_t)x.f);
        }
        if (x.t == TV_STR) {
            char *sv = cstr_dup(c, at, x.s.p, x.s.n);
            char *e;
            errno = 0;
            long long v = strtoll(sv, &e, 10);
            while (*e == ' ' || *e == '\t' || *e == '\n') e++;
            if (!errno && e != sv && !*e) return tv_int(v);
            double f = strpbrk(sv, "xXpP") ? NAN : strtod(sv, &e); // no C hex floats
            while (*e == ' ' || *e == '\t' || *e == '\n') e++;
            if (e != sv && !*e && isfinite(f) && fabs(f) < 9.2e18) return tv_int((int64_t)f);
        }
        return def;
    }
    if (IS("float")) {
        tv def = arg(a, 0, "default", tv_float(0.0));
        if (x.t == TV_FLOAT) return x;
        if (x.t == TV_INT || x.t == TV_BOOL) return tv_float(num_f(x));
        if (x.t == TV_STR) {
            char *sv = cstr_dup(c, at, x.s.p, x.s.n);
            char *e = sv;
            double f = strpbrk(sv, "xXpP") ? 0 : strtod(sv, &e); // no C hex floats
            while (*e == ' ' || *e == '\t' || *e == '\n') e++;
            if (e != sv && !*e) return tv_float(f);
        }
        return def;
    }
    if (IS("round")) {
        int64_t prec = want_int(c, at, arg(a, 0, "precision", tv_int(0)), "precision");
        tv mv = arg(a, 1, "method", cstr("common"));
        if (!is_num(x)) FAIL(c, at, "round needs a number, not %s", tv_type_name(x));
        char *meth = cstr_dup(c, at, want_str(c, at, mv, "method").s.p, mv.s.n);
        if (strcmp(meth, "common") && strcmp(meth, "ceil") && strcmp(meth, "floor"))
            FAIL(c, at, "method must be common, ceil or floor");
        if (!strcmp(meth, "common") && x.t != TV_FLOAT) { // Python's round(int) stays an int
            if (prec >= 0) return tv_int(num_i(x));
            if (prec < -18) return tv_int(0);
            int64_t m = 1, v = num_i(x);
            for (int64_t k = 0; k < -prec; k++) m *= 10;
            int64_t q = v / m, r = v % m;
            if (r < 0) {
                q--;
                r += m;
            }
            if (2 * r > m || (2 * r == m && (q & 1))) q++; // half to even
            int64_t res;
            if (__builtin_mul_overflow(q, m, &res)) FAIL(c, at, "integer overflow");
            return tv_int(res);
        }
        if (!strcmp(meth, "common")) {
            double v = num_f(x), mul = pow(10.0, (double)prec);
            // Python round() is correctly rounded half-even on the decimal expansion; this is
            // exact for the values templates meet (prices, scores) and half-even on ties.
            char buf[64];
            snprintf(buf, sizeof buf, "%.*f", (int)(prec < 0 ? 0 : prec > 30 ? 30 : prec), v);
            if (prec >= 0) return tv_float(strtod(buf, NULL));
            return tv_float(nearbyint(v * mul) / mul);
        }
        return py_round(num_f(x), prec, meth);
    }
    if (IS("abs")) {
        if (x.t == TV_FLOAT) return tv_float(fabs(x.f));
        if (x.t == TV_INT || x.t == TV_BOOL) {
            if (num_i(x) == INT64_MIN) FAIL(c, at, "integer overflow");
            return tv_int(num_i(x) < 0 ? -num_i(x) : num_i(x));
        }
        FAIL(c, at, "bad operand type for abs(): '%s'", tv_type_name(x));
    }
    if (IS("map")) {
        const tv *items = NULL;
        size_t n = 0;
        if (tv_truthy(x)) iter_items(c, at, x, &items, &n); // jinja2: `if value:` first
        tv attribute = arg(a, 99, "attribute", none);
        tv out = mk_list(c, at, n, false);
        if (attribute.t != TV_NONE) {
            tv def = arg(a, 99, "default", tv_undef(NULL));
            for (size_t i = 0; i < n; i++) {
                step(c, at);
                tv v = attr_path(c, at, items[i], attribute);
                out.l->v[i] = v.t == TV_UNDEF && def.t != TV_UNDEF ? def : v;
            }
            out.gen = 1;
            return out;
        }
        tv fname = want_str(c, at, arg(a, 0, NULL, none), "map filter name");
        char *fn = cstr_dup(c, at, fname.s.p, fname.s.n);
        targs fa;
        fa.n = 0;
        size_t pos = 0;
        for (size_t i = 0; i < a->n; i++) {
            if (!a->kw[i] && pos++ == 0) continue;
            fa.v[fa.n] = a->v[i];
            fa.kw[fa.n] = a->kw[i];
            fa.n++;
        }
        for (size_t i = 0; i < n; i++) out.l->v[i] = apply_filter(c, s, at, fn, items[i], &fa);
        out.gen = 1;
        return out;
    }
    if (IS("select")) return select_items(c, s, at, x, a, false, true);
    if (IS("reject")) return select_items(c, s, at, x, a, false, false);
    if (IS("selectattr")) return select_items(c, s, at, x, a, true, true);
    if (IS("rejectattr")) return select_items(c, s, at, x, a, true, false);
    if (IS("unique") || IS("sort") || IS("min") || IS("max")) {
        bool is_sort = IS("sort");
        tv reverse = is_sort ? arg(a, 0, "reverse", tv_bool(false)) : tv_bool(false);
        bool cs = tv_truthy(arg(a, is_sort ? 1 : 0, "case_sensitive", tv_bool(false)));
        tv attribute = arg(a, is_sort ? 2 : 1, "attribute", none);
        const tv *items;
        size_t n;
        iter_items(c, at, x, &items, &n);
        tv *keys = n ? ralloc_n(c, at, n, sizeof(tv)) : NULL;
        for (size_t i = 0; i < n; i++) keys[i] = sort_key(c, at, items[i], attribute, cs);
        if (IS("unique")) {
            tv out = mk_list(c, at, n, false);
            size_t k = 0;
            for (size_t i = 0; i < n; i++) {
                step(c, at);
                bool seen = false;
                for (size_t j = 0; j < i && !seen; j++) seen = tv_equal(keys[j], keys[i]);
                if (!seen) out.l->v[k++] = items[i];
            }
            out.l->n = k;
            out.gen = 1;
            return out;
        }
        if (!is_sort) {
            if (!n) return undef_fmt(c, at, "No aggregated item, sequence was empty.");
            size_t best = 0;
            for (size_t i = 1; i < n; i++) {
                int r = compare(c, at, keys[i], keys[best], OP_LT);
                if (IS("min") ? r < 0 : r > 0) best = i;
            }
            return items[best];
        }
        tv out = list_from(c, at, items, n);
        if (n > 1) {
            tv *tv_ = ralloc_n(c, at, n, sizeof(tv)), *tk = ralloc_n(c, at, n, sizeof(tv));
            merge_sort(c, at, out.l->v, keys, n, tv_truthy(reverse), tv_, tk);
        }
        return out;
    }
    if (IS("reverse")) {
        if (x.t == TV_STR) {
            tv none2 = tv_none();
            return do_slice(c, at, x, none2, none2, tv_int(-1));
        }
        const tv *items;
        size_t n;
        iter_items(c, at, x, &items, &n);
        if (x.t == TV_LIST && x.gen) FAIL(c, at, "argument to reversed() must be a sequence");
        tv out = mk_list(c, at, n, false);
        for (size_t i = 0; i < n; i++) out.l->v[i] = items[n - 1 - i];
        out.gen = 1; // a reversed iterator
        return out;
    }
    if (IS("indent")) return indent_filter(c, at, x, a);
    if (IS("wordcount")) {
        tv sx = str_of(c, at, x);
        int64_t words = 0;
        bool in_word = false;
        for (size_t i = 0; i < sx.s.n;) {
            uint32_t cp;
            i += tpl_utf8_decode(sx.s.p + i, sx.s.n - i, &cp);
            bool w = (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') ||
                     (cp >= 'A' && cp <= 'Z') || cp == '_' ||
                     (cp >= 0x80 && !tpl_is_space(cp) && !(cp >= 0x2000 && cp <= 0x206f) &&
                      !(cp >= 0x3000 && cp <= 0x303f));
            if (w && !in_word) words++;
            in_word = w;
        }
        return tv_int(words);
    }
    if (IS("sum")) {
        tv attribute = arg(a, 0, "attribute", none);
        tv acc = arg(a, 1, "start", tv_int(0));
        const tv *items;
        size_t n;
        iter_items(c, at, x, &items, &n);
        for (size_t i = 0; i < n; i++) {
            tv v = attribute.t != TV_NONE ? attr_path(c, at, items[i], attribute) : items[i];
            acc = arith(c, at, OP_ADD, acc, v);
        }
        return acc;
    }
    if (IS("attr")) {
        // jinja2's attr filter uses Python getattr only: dict keys are not attributes
        tv nm = want_str(c, at, arg(a, 0, NULL, none), "attribute name");
        const char *an = cstr_dup(c, at, nm.s.p, nm.s.n);
        if (x.t == TV_DICT && !in_names(dict_methods, an))
            return undef_fmt(c, at, "'dict object' has no attribute '%s'", an);
        return getattr_(c, at, x, an);
    }
    if (IS("dictsort")) {
        if (x.t != TV_DICT) FAIL(c, at, "dictsort needs a mapping");
        bool cs = tv_truthy(arg(a, 0, "case_sensitive", tv_bool(false)));
        tv by = arg(a, 1, "by", cstr("key"));
        bool rev = tv_truthy(arg(a, 2, "reverse", tv_bool(false)));
        int pos = by.t == TV_STR && by.s.n == 5 && !memcmp(by.s.p, "value", 5) ? 1 : 0;
        tv items = call_method(c, at, x, "items", a);
        size_t n = items.l->n;
        tv *keys = n ? ralloc_n(c, at, n, sizeof(tv)) : NULL;
        for (size_t i = 0; i < n; i++) keys[i] = sort_key(c, at, items.l->v[i].l->v[pos], none, cs);
        if (n > 1) {
            tv *tv_ = ralloc_n(c, at, n, sizeof(tv)), *tk = ralloc_n(c, at, n, sizeof(tv));
            merge_sort(c, at, items.l->v, keys, n, rev, tv_, tk);
        }
        return items;
    }
    if (IS("format")) {
        tv fmt = str_of(c, at, x);
        bool kw = false;
        for (size_t i = 0; i < a->n; i++) kw = kw || a->kw[i];
        if (kw) {
            tv d = mk_dict(c, at, a->n);
            for (size_t i = 0; i < a->n; i++)
                if (a->kw[i]) dict_set(c, at, d.d, cstr(a->kw[i]), a->v[i]);
            return percent_format(c, at, fmt, d);
        }
        tv t = mk_list(c, at, a->n, true);
        for (size_t i = 0; i < a->n; i++) t.l->v[i] = a->v[i];
        return percent_format(c, at, fmt, t);
    }
    if (IS("batch")) {
        int64_t k = want_int(c, at, arg(a, 0, "linecount", none), "batch size");
        tv fill = arg(a, 1, "fill_with", none);
        bool do_fill = fill.t != TV_NONE;
        if (k <= 0) FAIL(c, at, "batch size must be positive");
        const tv *items;
        size_t n;
        iter_items(c, at, x, &items, &n);
        size_t nb = (n + (size_t)k - 1) / (size_t)k;
        tv out = mk_list(c, at, nb, false);
        for (size_t i = 0; i < nb; i++) {
            size_t start = i * (size_t)k, cnt = n - start < (size_t)k ? n - start : (size_t)k;
            tv row = mk_list(c, at, do_fill ? (size_t)k : cnt, false);
            for (size_t j = 0; j < row.l->n; j++) row.l->v[j] = j < cnt ? items[start + j] : fill;
            out.l->v[i] = row;
        }
        out.gen = 1;
        return out;
    }
    if (IS("center")) {
        int64_t w = want_int(c, at, arg(a, 0, "width", tv_int(80)), "width");
        tv sx = str_of(c, at, x);
        int64_t len = (int64_t)tpl_utf8_count(sx.s.p, sx.s.n);
        if (w > 4096) w = 4096;
        if (w <= len) return sx;
        int64_t total = w - len, left = total / 2 + (total & w & 1);
        uint32_t pad = prov_of(c, sx, sx.s.p, sx.s.n); // how much depends on sx
        tpl_buf b;
        buf_init(c, &b);
        for (int64_t i = 0; i < left; i++) put(c, at, &b, " ", 1, pad);
        put(c, at, &b, sx.s.p, sx.s.n, sx.prov);
        for (int64_t i = 0; i < total - left; i++) put(c, at, &b, " ", 1, pad);
        return buf_str(c, at, &b);
    }
#undef IS
    rfail(c, at, NURI_ERR_UNSUPPORTED, "unknown filter '%s'", name);
}

/* ---- tests ---- */

static bool apply_test(ctx *c, scope *s, const tpl_node *at, const char *name, tv x, targs *a)
{
    (void)s;
    tv none = tv_none();
#define IS(n) (!strcmp(name, n))
    if (IS("defined")) return x.t != TV_UNDEF;
    if (IS("undefined")) return x.t == TV_UNDEF;
    if (IS("none")) return x.t == TV_NONE;
    if (IS("boolean")) return x.t == TV_BOOL;
    if (IS("false")) return x.t == TV_BOOL && !x.b;
    if (IS("true")) return x.t == TV_BOOL && x.b;
    if (IS("integer")) return x.t == TV_INT;
    if (IS("float")) return x.t == TV_FLOAT;
    if (IS("number")) return is_num(x);
    if (IS("string")) return x.t == TV_STR;
    if (IS("mapping")) return x.t == TV_DICT;
    if (IS("iterable")) return x.t == TV_STR || x.t == TV_LIST || x.t == TV_DICT || x.t == TV_UNDEF;
    if (IS("sequence"))
        return x.t == TV_STR || (x.t == TV_LIST && !x.gen) || x.t == TV_DICT || x.t == TV_UNDEF;
    if (IS("callable")) return x.t == TV_FUNC || x.t == TV_UNDEF; // Undefined has __call__
    if (IS("escaped")) return x.t == TV_STR && x.safe;
    if (IS("sameas")) {
        tv o = arg(a, 0, "other", none);
        if (x.t != o.t) return false;
        switch (x.t) {
        case TV_LIST:
            return x.l == o.l;
        case TV_DICT:
        case TV_NS:
            return x.d == o.d;
        case TV_STR:
            return x.s.p == o.s.p && x.s.n == o.s.n;
        default:
            return tv_equal(x, o);
        }
    }
    if (IS("equalto") || IS("eq") || IS("==")) return tv_equal(x, arg(a, 0, NULL, none));
    if (IS("ne") || IS("!=")) return !tv_equal(x, arg(a, 0, NULL, none));
    if (IS("lt") || IS("lessthan") || IS("<"))
        return compare(c, at, x, arg(a, 0, NULL, none), OP_LT) < 0;
    if (IS("le") || IS("<=")) return compare(c, at, x, arg(a, 0, NULL, none), OP_LE) <= 0;
    if (IS("gt") || IS("greaterthan") || IS(">"))
        return compare(c, at, x, arg(a, 0, NULL, none), OP_GT) > 0;
    if (IS("ge") || IS(">=")) return compare(c, at, x, arg(a, 0, NULL, none), OP_GE) >= 0;
    if (IS("in")) return contains(c, at, x, arg(a, 0, NULL, none));
    if (IS("odd") || IS("even")) {
        int64_t v = want_int(c, at, x, "odd/even test value");
        return IS("odd") ? (v % 2 != 0) : (v % 2 == 0);
    }
    if (IS("divisibleby")) {
        int64_t d = want_int(c, at, arg(a, 0, "num", none), "divisibleby argument");
        if (d == 0) FAIL(c, at, "integer division or modulo by zero");
        return num_i(x) % d == 0;
    }
    if (IS("lower") || IS("upper")) {
        tv sx = str_of(c, at, x);
        targs none_args = {0};
        return tv_truthy(call_method(c, at, sx, IS("lower") ? "islower" : "isupper", &none_args));
    }
#undef IS
    rfail(c, at, NURI_ERR_UNSUPPORTED, "unknown test '%s'", name);
}

/* ---- statements ---- */

enum { FLOW_NEXT = 0, FLOW_BREAK, FLOW_CONTINUE };

static void assign(ctx *c, scope *s, const tpl_node *target, tv v)
{
    if (target->kind == E_NAME) {
        scope_set(c, s, target->name, v);
        return;
    }
    if (target->kind == E_TUPLE) {
        if (v.t == TV_UNDEF) fail_undef(c, target, v);
        const tv *items;
        size_t n;
        iter_items(c, target, v, &items, &n);
        if (n != target->n_args)
            FAIL(c, target, "%s values to unpack (expected %zu, got %zu)",
                 n > target->n_args ? "too many" : "not enough", target->n_args, n);
        for (size_t i = 0; i < n; i++) assign(c, s, target->args[i], items[i]);
        return;
    }
    if (target->kind == E_ATTR) {
        tv ns;
        if (!scope_get(s, target->a->name, &ns) || ns.t != TV_NS)
            FAIL(c, target, "cannot assign attribute on non-namespace object '%s'",
                 target->a->name);
        dict_set(c, target, ns.d, cstr(target->name), v);
        return;
    }
    FAIL(c, target, "cannot assign to this");
}

static tv apply_chain(ctx *c, scope *s, const tpl_node *f, tv input)
{
    tv x = f->a ? apply_chain(c, s, f->a, input) : input;
    targs a;
    eval_args(c, s, f, &a, 0);
    return apply_filter(c, s, f, f->name, x, &a);
}

static tv render_to_string(ctx *c, scope *s, tpl_node *const *body, size_t n)
{
    tpl_buf b;
    buf_init(c, &b);
    tpl_buf *saved = c->out;
    c->out = &b;
    int flow = exec_body(c, s, body, n);
    c->out = saved;
    (void)flow;
    return buf_str(c, NULL, &b);
}

static int exec_for(ctx *c, scope *s, const tpl_node *n)
{
    tv seq = eval(c, s, n->b);
    if (seq.t == TV_NONE) FAIL(c, n->b, "'NoneType' object is not iterable");
    const tv *items;
    size_t cnt;
    iter_items(c, n->b, seq, &items, &cnt);
    scope *ls = scope_new(c, s);
    if (n->c) { // for x in xs if cond: filter first, then loop over what passed
        tv *kept = cnt ? ralloc_n(c, n, cnt, sizeof(tv)) : NULL;
        size_t k = 0;
        for (size_t i = 0; i < cnt; i++) {
            step(c, n);
            ls->n = 0;
            assign(c, ls, n->a, items[i]);
            if (tv_truthy(eval(c, ls, n->c))) kept[k++] = items[i];
        }
        items = kept;
        cnt = k;
    }
    tloop *lp = ralloc(c, n, sizeof *lp);
    lp->items = items;
    lp->length = cnt;
    lp->depth = 1; // depth counts recursive loop() calls only, which nuri does not support
    tv lv = {.t = TV_LOOP};
    lv.loop = lp;
    c->loop_depth++;
    for (size_t i = 0; i < cnt; i++) {
        step(c, n);
        ls->n = 0; // a fresh scope each iteration
        lp->index0 = i;
        assign(c, ls, n->a, items[i]);
        scope_set(c, ls, "loop", lv);
        int flow = exec_body(c, ls, n->body, n->n_body);
        if (flow == FLOW_BREAK) break;
    }
    c->loop_depth--;
    if (cnt == 0 && n->n_alt) return exec_body(c, s, n->alt, n->n_alt);
    return FLOW_NEXT;
}

static int exec_node(ctx *c, scope *s, const tpl_node *n)
{
    step(c, n);
    switch (n->kind) {
    case N_TEXT:
        put(c, n, c->out, n->name, n->len, TPL_MARKUP);
        return FLOW_NEXT;
    case N_OUTPUT:
        put_value(c, n, c->out, eval(c, s, n->a));
        return FLOW_NEXT;
    case N_IF:
        if (tv_truthy(eval(c, s, n->a))) return exec_body(c, s, n->body, n->n_body);
        return exec_body(c, s, n->alt, n->n_alt);
    case N_FOR:
        return exec_for(c, s, n);
    case N_SET:
        assign(c, s, n->a, eval(c, s, n->b));
        return FLOW_NEXT;
    case N_SETBLK: {
        tv v = render_to_string(c, s, n->body, n->n_body);
        if (n->c) v = apply_chain(c, s, n->c, v);
        assign(c, s, n->a, v);
        return FLOW_NEXT;
    }
    case N_FILTBLK: {
        tv v = render_to_string(c, s, n->body, n->n_body);
        put_value(c, n, c->out, apply_chain(c, s, n->c, v));
        return FLOW_NEXT;
    }
    case N_CALLBLK: {
        // the body as a macro named caller, passed to the call as caller=
        tfunc *f = ralloc(c, n, sizeof *f);
        f->kind = F_MACRO;
        f->macro = n;
        f->closure = s;
        f->name = n->name;
        tv caller = {.t = TV_FUNC};
        caller.fn = f;
        const tpl_node *call = n->a;
        tv fn = eval(c, s, call->a);
        targs a;
        eval_args(c, s, call, &a, 0);
        if (a.n >= MAX_ARGS) rfail(c, n, NURI_ERR_UNSUPPORTED, "too many arguments");
        a.v[a.n] = caller;
        a.kw[a.n++] = "caller";
        put_value(c, n, c->out, call_value(c, s, call, fn, &a));
        return FLOW_NEXT;
    }
    case N_MACRO: {
        tfunc *f = ralloc(c, n, sizeof *f);
        f->kind = F_MACRO;
        f->macro = n;
        f->closure = s;
        f->name = n->name;
        tv v = {.t = TV_FUNC};
        v.fn = f;
        scope_set(c, s, n->name, v);
        return FLOW_NEXT;
    }
    case N_BREAK:
    case N_CONTINUE:
        if (c->loop_depth == 0)
            FAIL(c, n, "'%s' outside of a loop", n->kind == N_BREAK ? "break" : "continue");
        return n->kind == N_BREAK ? FLOW_BREAK : FLOW_CONTINUE;
    }
    FAIL(c, n, "cannot execute this node (kind %d)", n->kind);
}

static int exec_body(ctx *c, scope *s, tpl_node *const *body, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int flow = exec_node(c, s, body[i]);
        if (flow != FLOW_NEXT) return flow;
    }
    return FLOW_NEXT;
}

/* ---- variables from JSON ---- */

/* Every value made has provenance prov (TPL_DATA or TPL_MARKUP). */
static tv from_json(ctx *c, const json_t *j, int depth, uint32_t prov)
{
    if (depth > 1000) rfail(c, NULL, NURI_ERR_LIMIT, "variables nested deeper than 1000");
    tv r;
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        r = mk_dict(c, NULL, json_object_size(j));
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v)
        {
            tv key = tv_strn(k, strlen(k));
            key.prov = prov;
            r.d->k[r.d->n] = key;
            r.d->v[r.d->n] = from_json(c, v, depth + 1, prov);
            r.d->n++;
        }
        break;
    }
    case JSON_ARRAY:
        r = mk_list(c, NULL, json_array_size(j), false);
        for (size_t i = 0; i < r.l->n; i++)
            r.l->v[i] = from_json(c, json_array_get(j, i), depth + 1, prov);
        break;
    case JSON_STRING:
        r = tv_strn(json_string_value(j), json_string_length(j));
        break;
    case JSON_INTEGER:
        r = tv_int((int64_t)json_integer_value(j));
        break;
    case JSON_REAL:
        r = tv_float(json_real_value(j));
        break;
    case JSON_TRUE:
        r = tv_bool(true);
        break;
    case JSON_FALSE:
        r = tv_bool(false);
        break;
    default:
        r = tv_none();
        break;
    }
    r.prov = prov;
    return r;
}

/* messages[i].role is markup when it is one of roles (NULL-terminated). */
static void mark_roles(scope *top, const char *const *roles)
{
    tv msgs;
    if (!scope_get(top, "messages", &msgs) || msgs.t != TV_LIST) return;
    for (size_t i = 0; i < msgs.l->n; i++) {
        tv m = msgs.l->v[i];
        if (m.t != TV_DICT) continue;
        long k = dict_find_str(m.d, "role", 4);
        if (k < 0 || m.d->v[k].t != TV_STR) continue;
        tv *role = &m.d->v[k];
        for (const char *const *r = roles; *r; r++)
            if (role->s.n == strlen(*r) && !memcmp(role->s.p, *r, role->s.n)) {
                role->prov = TPL_MARKUP;
                break;
            }
    }
}

static void add_builtin(ctx *c, scope *s, const char *name, int which)
{
    tfunc *f = ralloc(c, NULL, sizeof *f);
    f->kind = F_BUILTIN;
    f->builtin = which;
    f->name = name;
    tv v = {.t = TV_FUNC};
    v.fn = f;
    scope_set(c, s, name, v);
}

/* ---- entry points ---- */

nuri_status nuri_template_parse(const char *src, size_t len, nuri_template **out)
{
    *out = NULL;
    if (!src && len) return nuri_error(NURI_ERR_INVALID_ARG, "template: NULL source");
    nuri_template *t = calloc(1, sizeof *t);
    if (!t) return nuri_error(NURI_ERR_NOMEM, "template: out of memory");
    t->arena.limit = (size_t)NURI_TEMPLATE_MAX_SOURCE * 64;
    nuri_status st = tpl_parse(t, src ? src : "", len);
    if (st != NURI_OK) {
        nuri_template_free(t);
        return st;
    }
    *out = t;
    return NURI_OK;
}

void nuri_template_free(nuri_template *t)
{
    if (!t) return;
    tpl_arena_free(&t->arena);
    free(t);
}

nuri_status nuri_template_render(const nuri_template *t, const json_t *vars, const struct tm *now,
                                 char **out, size_t *out_len)
{
    return nuri_template_render_limited(t, vars, now, NULL, out, out_len);
}

/* The data bytes of b (runs of flags, or all of it) as spans; false when out of memory. */
static bool data_spans(const tpl_buf *b, nuri_text_spans *data)
{
    if (!b->d) {
        if (b->n == 0 || b->uni != TPL_DATA) return true;
        if (!(data->v = malloc(sizeof *data->v))) return false;
        data->v[0] = (nuri_text_span){0, b->n};
        data->n = 1;
        return true;
    }
    size_t n = 0;
    for (size_t i = 0; i < b->n; i++) n += b->d[i] && (i == 0 || !b->d[i - 1]);
    if (n == 0) return true;
    if (!(data->v = malloc(n * sizeof *data->v))) return false;
    for (size_t i = 0; i < b->n;) {
        if (!b->d[i]) {
            i++;
            continue;
        }
        size_t e = i;
        while (e < b->n && b->d[e]) e++;
        data->v[data->n++] = (nuri_text_span){i, e - i};
        i = e;
    }
    return true;
}

/* Both entry points: with data != NULL, provenance is tracked and its spans returned. */
static nuri_status render(const nuri_template *t, const json_t *vars,
                          const nuri_template_markup *markup, const struct tm *now,
                          const nuri_template_limits *limits, char **out, size_t *out_len,
                          nuri_text_spans *data)
{
    *out = NULL;
    if (out_len) *out_len = 0;
    if (data) *data = (nuri_text_spans){0};
    if (!t) return nuri_error(NURI_ERR_INVALID_ARG, "template: NULL template");
    if (vars && !json_is_object(vars))
        return nuri_error(NURI_ERR_INVALID_ARG, "template: variables must be a JSON object");
    if (markup && markup->vars && !json_is_object(markup->vars))
        return nuri_error(NURI_ERR_INVALID_ARG, "template: markup variables must be a JSON object");
    ctx c;
    memset(&c, 0, sizeof c);
    c.lim = (nuri_template_limits){NURI_TEMPLATE_MAX_OUTPUT, NURI_TEMPLATE_MAX_STEPS,
                                   (size_t)NURI_TEMPLATE_MAX_MEMORY, NURI_TEMPLATE_MAX_CALL_DEPTH};
    if (limits) {
        if (limits->max_output && limits->max_output < c.lim.max_output)
            c.lim.max_output = limits->max_output;
        if (limits->max_steps && limits->max_steps < c.lim.max_steps)
            c.lim.max_steps = limits->max_steps;
        if (limits->max_memory && limits->max_memory < c.lim.max_memory)
            c.lim.max_memory = limits->max_memory;
        if (limits->max_call_depth > 0 && limits->max_call_depth < c.lim.max_call_depth)
            c.lim.max_call_depth = limits->max_call_depth;
    }
    tpl_arena arena = {.limit = c.lim.max_memory};
    tpl_prov prov = {.arena = &arena};
    c.a = &arena;
    c.prov = data ? &prov : NULL;
    c.now = now;
    int rc = setjmp(c.jb);
    if (rc) {
        tpl_arena_free(&arena);
        return (nuri_status)rc;
    }
    scope *globals = scope_new(&c, NULL);
    add_builtin(&c, globals, "range", B_RANGE);
    add_builtin(&c, globals, "namespace", B_NAMESPACE);
    add_builtin(&c, globals, "dict", B_DICT);
    add_builtin(&c, globals, "raise_exception", B_RAISE);
    add_builtin(&c, globals, "strftime_now", B_STRFTIME);
    scope *top = scope_new(&c, globals);
    const char *k;
    json_t *v;
    if (markup && markup->vars) json_object_foreach((json_t *)markup->vars, k, v)
        {
            scope_set(&c, top, k, from_json(&c, v, 0, TPL_MARKUP));
        }
    if (vars) json_object_foreach((json_t *)vars, k, v)
        {
            scope_set(&c, top, k, from_json(&c, v, 0, TPL_DATA));
        }
    if (markup && markup->roles) mark_roles(top, markup->roles);
    tpl_buf b;
    buf_init(&c, &b);
    c.out = &b;
    exec_body(&c, top, t->body, t->n_body);
    char *res = malloc(b.n + 1);
    if (!res || (data && !data_spans(&b, data))) {
        free(res);
        tpl_arena_free(&arena);
        return nuri_error(NURI_ERR_NOMEM, "template: out of memory for the output");
    }
    if (b.n) memcpy(res, b.p, b.n);
    res[b.n] = 0;
    *out = res;
    if (out_len) *out_len = b.n;
    tpl_arena_free(&arena);
    return NURI_OK;
}

nuri_status nuri_template_render_limited(const nuri_template *t, const json_t *vars,
                                         const struct tm *now, const nuri_template_limits *limits,
                                         char **out, size_t *out_len)
{
    return render(t, vars, NULL, now, limits, out, out_len, NULL);
}

nuri_status nuri_template_render_spans(const nuri_template *t, const json_t *vars,
                                       const nuri_template_markup *markup, const struct tm *now,
                                       const nuri_template_limits *limits, char **out,
                                       size_t *out_len, nuri_text_spans *data)
{
    if (!data) {
        *out = NULL;
        if (out_len) *out_len = 0;
        return nuri_error(NURI_ERR_INVALID_ARG, "template: no place for the data spans");
    }
    return render(t, vars, markup, now, limits, out, out_len, data);
}
