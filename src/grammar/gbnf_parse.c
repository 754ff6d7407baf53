/*
 * gbnf_parse.c: GBNF text -> nuri_grammar (grammar_internal.h).
 *
 * A recursive-descent parser over the text (bounded by NURI_GRAMMAR_MAX_NESTING), then three
 * checks over the result: every referenced rule is defined, `root` exists, and no rule is
 * left-recursive (a rule that can reach itself without consuming a character would make the
 * matcher expand forever). Groups become generated rules; repetitions are rewritten the way
 * llama.cpp rewrites them, so grammars mean the same thing in both:
 *
 *   S{m,n}  ->  S ... S (m times) R(n-m)     with R(k) ::= S R(k-1) |  and R(1) ::= S |
 *   S{m,}   ->  S ... S (m times) R          with R ::= S R |
 *   S* = S{0,}, S+ = S{1,}, S? = S{0,1}
 *
 * Every size is checked before it is spent: text length, rules, symbols (the repetition rewrite
 * is where grammars grow), nesting, repetition bounds. Errors carry the line and column.
 */
#include "base/status.h"
#include "grammar/grammar_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GE_ALT 3u // only while parsing: separates alternatives inside a rule's vector
#define NO_START UINT32_MAX

typedef struct u32vec {
    uint32_t *v;
    uint32_t n, cap;
} u32vec;

typedef struct rule_info {
    u32vec body;       // symbols with GE_ALT between alternatives, no final END
    uint32_t name_off; // named rules: offset of the name in the text; generated: the parent's
    uint32_t name_len;
    size_t first_use; // offset of the first reference (for "undefined rule" errors)
    size_t def_at;    // offset of the definition
    uint8_t defined;
    uint8_t generated;
} rule_info;

typedef struct parser {
    const char *src;
    size_t len, pos;
    rule_info *rules;
    uint32_t n_rules, cap_rules;
    uint32_t *name_tab; // open addressing: rule id + 1, 0 = empty; named rules only
    uint32_t name_cap;
    u32vec ranges;     // charset ranges, pairs
    u32vec set_off;    // charset starts (in pairs), with a final sentinel added at the end
    uint32_t *set_tab; // open addressing over charsets: id + 1
    uint32_t set_cap;
    uint64_t n_elems; // symbols in all rule bodies so far
    u32vec scratch;   // ranges of the class being read
    u32vec rep;       // the item being repeated
    int depth;
    nuri_status err;
} parser;

/* ---- errors ---- */

/* Records the first error, with line and column of offset at. Always returns false. */
static bool fail_at(parser *p, size_t at, nuri_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static bool fail_at(parser *p, size_t at, nuri_status st, const char *fmt, ...)
{
    if (p->err != NURI_OK) return false;
    if (at > p->len) at = p->len;
    size_t line = 1, col = 1;
    for (size_t i = 0; i < at; i++) {
        unsigned char c = (unsigned char)p->src[i];
        if (c == '\n') {
            line++;
            col = 1;
        } else if ((c & 0xC0) != 0x80) {
            col++;
        }
    }
    char msg[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    p->err = st;
    nuri_error(st, "grammar: line %zu, column %zu: %s", line, col, msg);
    return false;
}

#define FAIL(...) fail_at(p, p->pos, NURI_ERR_FORMAT, __VA_ARGS__)

static bool oom(parser *p)
{
    if (p->err == NURI_OK) {
        p->err = NURI_ERR_NOMEM;
        nuri_error(NURI_ERR_NOMEM, "grammar: out of memory");
    }
    return false;
}

/* ---- vectors ---- */

static bool vec_reserve(parser *p, u32vec *v, uint64_t extra)
{
    uint64_t need = (uint64_t)v->n + extra;
    if (need <= v->cap && v->v) return true; // (always allocated: no NULL + 0 arithmetic)
    if (need > UINT32_MAX / 2) return oom(p);
    uint32_t cap = v->cap ? v->cap : 16;
    while (cap < need) cap *= 2;
    uint32_t *nv = realloc(v->v, sizeof *nv * cap);
    if (!nv) return oom(p);
    v->v = nv;
    v->cap = cap;
    return true;
}

static bool vec_push(parser *p, u32vec *v, uint32_t x)
{
    if (v->n == v->cap && !vec_reserve(p, v, 1)) return false;
    v->v[v->n++] = x;
    return true;
}

/* Adds a symbol to a rule body, within the symbol budget. */
static bool emit(parser *p, u32vec *body, uint32_t sym)
{
    if (p->n_elems + 1 > NURI_GRAMMAR_MAX_ELEMS)
        return fail_at(p, p->pos, NURI_ERR_LIMIT, "the grammar has more than %u symbols",
                       NURI_GRAMMAR_MAX_ELEMS);
    if (!vec_push(p, body, sym)) return false;
    p->n_elems++;
    return true;
}

/* ---- rules and names ---- */

static uint32_t hash_bytes(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static bool new_rule(parser *p, uint32_t *id)
{
    if (p->n_rules >= NURI_GRAMMAR_MAX_RULES)
        return fail_at(p, p->pos, NURI_ERR_LIMIT, "the grammar has more than %u rules",
                       NURI_GRAMMAR_MAX_RULES);
    if (p->n_rules == p->cap_rules) {
        uint32_t cap = p->cap_rules ? 2 * p->cap_rules : 64;
        rule_info *r = realloc(p->rules, sizeof *r * cap);
        if (!r) return oom(p);
        p->rules = r;
        p->cap_rules = cap;
    }
    memset(&p->rules[p->n_rules], 0, sizeof p->rules[0]);
    *id = p->n_rules++;
    return true;
}

static bool name_eq(const parser *p, uint32_t id, const char *s, size_t n)
{
    const rule_info *r = &p->rules[id];
    return r->name_len == n && memcmp(p->src + r->name_off, s, n) == 0;
}

/* The id of the named rule at src[off..off+n), made on first mention. */
static bool rule_by_name(parser *p, size_t off, size_t n, uint32_t *id)
{
    const char *s = p->src + off;
    if ((uint64_t)p->n_rules * 2 >= p->name_cap) { // grow and rehash (named rules only)
        uint32_t cap = p->name_cap ? 2 * p->name_cap : 256;
        while ((uint64_t)p->n_rules * 2 >= cap) cap *= 2;
        uint32_t *t = calloc(cap, sizeof *t);
        if (!t) return oom(p);
        for (uint32_t i = 0; i < p->n_rules; i++) {
            if (p->rules[i].generated) continue;
            uint32_t h = hash_bytes(p->src + p->rules[i].name_off, p->rules[i].name_len);
            while (t[h & (cap - 1)]) h++;
            t[h & (cap - 1)] = i + 1;
        }
        free(p->name_tab);
        p->name_tab = t;
        p->name_cap = cap;
    }
    uint32_t h = hash_bytes(s, n);
    for (;; h++) {
        uint32_t e = p->name_tab[h & (p->name_cap - 1)];
        if (!e) break;
        if (name_eq(p, e - 1, s, n)) {
            *id = e - 1;
            return true;
        }
    }
    if (!new_rule(p, id)) return false;
    p->rules[*id].name_off = (uint32_t)off;
    p->rules[*id].name_len = (uint32_t)n;
    p->rules[*id].first_use = SIZE_MAX;
    p->name_tab[h & (p->name_cap - 1)] = *id + 1;
    return true;
}

/* A rule for a group or a repetition, named after the rule it appears in (for messages). */
static bool generated_rule(parser *p, uint32_t parent, uint32_t *id)
{
    if (!new_rule(p, id)) return false;
    rule_info *r = &p->rules[*id];
    r->name_off = p->rules[parent].name_off;
    r->name_len = p->rules[parent].name_len;
    r->def_at = p->rules[parent].def_at;
    r->generated = 1;
    r->defined = 1;
    return true;
}

/* ---- character sets ---- */

static int cmp_range(const void *a, const void *b)
{
    const uint32_t *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0];
}

/* Interns the set made of the ranges in p->scratch (pairs, any order, may overlap), complemented
 * if neg. */
static bool make_set(parser *p, bool neg, uint32_t *id)
{
    u32vec *sc = &p->scratch;
    if (!vec_reserve(p, sc, 2) || !vec_reserve(p, &p->ranges, 2)) return false;
    uint32_t n = sc->n / 2;
    qsort(sc->v, n, 2 * sizeof(uint32_t), cmp_range);
    uint32_t k = 0; // merge overlapping and adjacent ranges in place
    for (uint32_t i = 0; i < n; i++) {
        uint32_t lo = sc->v[2 * i], hi = sc->v[2 * i + 1];
        if (k > 0 && lo <= sc->v[2 * k - 1] + 1) {
            if (hi > sc->v[2 * k - 1]) sc->v[2 * k - 1] = hi;
        } else {
            sc->v[2 * k] = lo;
            sc->v[2 * k + 1] = hi;
            k++;
        }
    }
    sc->n = 2 * k;
    if (neg) { // complement within [0, MAX_CP]; at most one more range
        if (!vec_reserve(p, sc, 2)) return false;
        uint32_t m = 0, next = 0;
        uint32_t *r = sc->v;
        uint32_t tmp_lo, tmp_hi;
        // walk forwards, writing the gaps; a gap ends before range i, so writing slot m <= i is
        // safe once range i has been read
        for (uint32_t i = 0; i < k; i++) {
            tmp_lo = r[2 * i];
            tmp_hi = r[2 * i + 1];
            if (tmp_lo > next) {
                r[2 * m] = next;
                r[2 * m + 1] = tmp_lo - 1;
                m++;
            }
            next = tmp_hi + 1;
        }
        if (next <= GRAMMAR_MAX_CP) {
            r[2 * m] = next;
            r[2 * m + 1] = GRAMMAR_MAX_CP;
            m++;
        }
        sc->n = 2 * m;
    }
    // intern
    uint32_t n_sets = p->set_off.n;
    if ((uint64_t)(n_sets + 1) * 2 >= p->set_cap) {
        uint32_t cap = p->set_cap ? 2 * p->set_cap : 256;
        uint32_t *t = calloc(cap, sizeof *t);
        if (!t) return oom(p);
        for (uint32_t s = 0; s < n_sets; s++) {
            uint32_t a = p->set_off.v[s],
                     b = s + 1 < n_sets ? p->set_off.v[s + 1] : p->ranges.n / 2;
            uint32_t h = hash_bytes((const char *)(p->ranges.v + 2 * a), 8 * (size_t)(b - a));
            while (t[h & (cap - 1)]) h++;
            t[h & (cap - 1)] = s + 1;
        }
        free(p->set_tab);
        p->set_tab = t;
        p->set_cap = cap;
    }
    uint32_t h = hash_bytes((const char *)sc->v, 4 * (size_t)sc->n);
    for (;; h++) {
        uint32_t e = p->set_tab[h & (p->set_cap - 1)];
        if (!e) break;
        uint32_t s = e - 1;
        uint32_t a = p->set_off.v[s], b = s + 1 < n_sets ? p->set_off.v[s + 1] : p->ranges.n / 2;
        if (2 * (b - a) == sc->n && !memcmp(p->ranges.v + 2 * a, sc->v, 4 * (size_t)sc->n)) {
            *id = s;
            return true;
        }
    }
    if (n_sets >= (1u << 30) - 1) return oom(p);
    if (p->ranges.n + (uint64_t)sc->n > NURI_GRAMMAR_MAX_ELEMS * 4ull)
        return fail_at(p, p->pos, NURI_ERR_LIMIT, "the grammar's character classes are too large");
    if (!vec_push(p, &p->set_off, p->ranges.n / 2) || !vec_reserve(p, &p->ranges, sc->n))
        return false;
    memcpy(p->ranges.v + p->ranges.n, sc->v, 4 * (size_t)sc->n);
    p->ranges.n += sc->n;
    p->set_tab[h & (p->set_cap - 1)] = n_sets + 1;
    *id = n_sets;
    return true;
}

static bool single_set(parser *p, uint32_t lo, uint32_t hi, bool neg, uint32_t *id)
{
    p->scratch.n = 0;
    if (!vec_push(p, &p->scratch, lo) || !vec_push(p, &p->scratch, hi)) return false;
    return make_set(p, neg, id);
}

/* ---- lexing ---- */

static inline int peek(const parser *p)
{
    return p->pos < p->len ? (unsigned char)p->src[p->pos] : -1;
}

static inline int peek_at(const parser *p, size_t k)
{
    return p->pos + k < p->len ? (unsigned char)p->src[p->pos + k] : -1;
}

static inline bool is_word(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

static inline bool is_digit(int c)
{
    return c >= '0' && c <= '9';
}

/* Skips blanks and comments, and line breaks too when newline_ok. */
static void skip_space(parser *p, bool newline_ok)
{
    for (;;) {
        int c = peek(p);
        if (c == ' ' || c == '\t' || (newline_ok && (c == '\r' || c == '\n'))) {
            p->pos++;
        } else if (c == '#') {
            while (p->pos < p->len && p->src[p->pos] != '\n' && p->src[p->pos] != '\r') p->pos++;
        } else {
            return;
        }
    }
}

/* Decodes one well-formed UTF-8 character at pos. */
static bool read_utf8(parser *p, uint32_t *cp)
{
    const unsigned char *s = (const unsigned char *)p->src + p->pos;
    size_t avail = p->len - p->pos;
    unsigned c = s[0];
    uint32_t v;
    size_t n;
    unsigned lo = 0x80, hi = 0xBF; // allowed range of the second byte
    if (c < 0x80) {
        *cp = c;
        p->pos++;
        return true;
    } else if (c >= 0xC2 && c <= 0xDF) {
        n = 2, v = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3, v = c & 0x0F;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4, v = c & 0x07;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return FAIL("ill-formed UTF-8 (byte 0x%02X)", c);
    }
    if (avail < n) return FAIL("ill-formed UTF-8 (a character is cut off)");
    for (size_t i = 1; i < n; i++) {
        unsigned b = s[i];
        if (b < (i == 1 ? lo : 0x80) || b > (i == 1 ? hi : 0xBF))
            return FAIL("ill-formed UTF-8 (byte 0x%02X)", b);
        v = (v << 6) | (b & 0x3F);
    }
    p->pos += n;
    *cp = v;
    return true;
}

static bool read_hex(parser *p, int digits, uint32_t *cp)
{
    uint32_t v = 0;
    for (int i = 0; i < digits; i++) {
        int c = peek(p);
        int d = is_digit(c)              ? c - '0'
                : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                         : -1;
        if (d < 0) return FAIL("expected %d hex digits", digits);
        v = v * 16 + (uint32_t)d;
        p->pos++;
    }
    if (v > GRAMMAR_MAX_CP) return FAIL("code point U+%X is past U+10FFFF", v);
    *cp = v;
    return true;
}

/* One character of a literal or class: an escape or a UTF-8 character. */
static bool read_char(parser *p, uint32_t *cp)
{
    if (peek(p) != '\\') return read_utf8(p, cp);
    size_t at = p->pos;
    p->pos++;
    int c = peek(p);
    p->pos++;
    switch (c) {
    case 'x':
        return read_hex(p, 2, cp);
    case 'u':
        return read_hex(p, 4, cp);
    case 'U':
        return read_hex(p, 8, cp);
    case 't':
        *cp = '\t';
        return true;
    case 'r':
        *cp = '\r';
        return true;
    case 'n':
        *cp = '\n';
        return true;
    case '\\':
    case '"':
    case '[':
    case ']':
    case '-':
        *cp = (uint32_t)c;
        return true;
    case -1:
        p->pos = at;
        return FAIL("the text ends inside an escape");
    default:
        p->pos = at;
        return FAIL("unknown escape '\\%c'", c >= 0x20 && c < 0x7F ? c : '?');
    }
}

/* A decimal repetition bound. */
static bool read_count(parser *p, uint32_t *out)
{
    size_t at = p->pos;
    if (!is_digit(peek(p))) return FAIL("expected a number");
    uint64_t v = 0;
    while (is_digit(peek(p))) {
        v = v * 10 + (uint64_t)(peek(p) - '0');
        p->pos++;
        if (v > NURI_GRAMMAR_MAX_REPEAT)
            return fail_at(p, at, NURI_ERR_LIMIT, "repetition count above the limit of %u",
                           NURI_GRAMMAR_MAX_REPEAT);
    }
    *out = (uint32_t)v;
    return true;
}

/* ---- repetition ---- */

#define UNBOUNDED UINT32_MAX

/* Rewrites body[start..) (the last item) as that item repeated min..max times (see the top). */
static bool repeat(parser *p, uint32_t rule, u32vec *body, uint32_t start, uint32_t min,
                   uint32_t max, size_t at)
{
    if (start == NO_START || start == body->n)
        return fail_at(p, at, NURI_ERR_FORMAT, "the repetition has nothing before it to repeat");
    if (max != UNBOUNDED && max < min)
        return fail_at(p, at, NURI_ERR_FORMAT,
                       "repetition {%u,%u}: the maximum is below the minimum", min, max);
    uint32_t k = body->n - start; // symbols in the item
    uint64_t n_opt = max == UNBOUNDED ? 1 : max - min;
    // symbols this adds: the item min times, and per optional rule the item, a REF, ALT
    uint64_t cost = (uint64_t)k * min + n_opt * ((uint64_t)k + 2) + 1;
    if (p->n_elems - k + cost > NURI_GRAMMAR_MAX_ELEMS)
        return fail_at(p, at, NURI_ERR_LIMIT,
                       "the repetition would make the grammar larger than %u symbols",
                       NURI_GRAMMAR_MAX_ELEMS);
    if (p->n_rules + n_opt > NURI_GRAMMAR_MAX_RULES)
        return fail_at(p, at, NURI_ERR_LIMIT,
                       "the repetition would make the grammar larger than %u rules",
                       NURI_GRAMMAR_MAX_RULES);
    u32vec *item = &p->rep;
    item->n = 0;
    if (!vec_reserve(p, item, k)) return false;
    memcpy(item->v, body->v + start, 4 * (size_t)k);
    item->n = k;
    body->n = start;
    p->n_elems -= k;
    for (uint32_t i = 0; i < min; i++)
        for (uint32_t j = 0; j < k; j++)
            if (!emit(p, body, item->v[j])) return false;
    if (max == min) return true;
    uint32_t last = 0;
    for (uint64_t i = 0; i < n_opt; i++) {
        uint32_t r;
        if (!generated_rule(p, rule, &r)) return false;
        u32vec *rb = &p->rules[r].body; // R ::= item [R'] |
        for (uint32_t j = 0; j < k; j++)
            if (!emit(p, rb, item->v[j])) return false;
        if (max == UNBOUNDED) {
            if (!emit(p, rb, GE_MAKE(GE_REF, r))) return false;
        } else if (i > 0) {
            if (!emit(p, rb, GE_MAKE(GE_REF, last))) return false;
        }
        if (!vec_push(p, rb, GE_ALT)) return false;
        last = r;
    }
    return emit(p, body, GE_MAKE(GE_REF, last));
}

/* ---- rules ---- */

static bool parse_alternates(parser *p, uint32_t rule, uint32_t name_rule, bool nested);

/* One alternative: items until something that cannot start or follow one. */
static bool parse_sequence(parser *p, uint32_t name_rule, u32vec *body, bool nested)
{
    uint32_t last = NO_START; // where the last item starts in body
    for (;;) {
        int c = peek(p);
        size_t at = p->pos;
        if (c == '"') {
            p->pos++;
            last = body->n;
            while (peek(p) != '"') {
                if (peek(p) < 0)
                    return fail_at(p, at, NURI_ERR_FORMAT, "the literal is not closed with '\"'");
                if (peek(p) == '\n' || peek(p) == '\r')
                    return FAIL("a line break inside a literal (write \\n)");
                uint32_t cp, s;
                if (!read_char(p, &cp) || !single_set(p, cp, cp, false, &s) ||
                    !emit(p, body, GE_MAKE(GE_SET, s)))
                    return false;
            }
            p->pos++;
        } else if (c == '[') {
            p->pos++;
            bool neg = peek(p) == '^';
            if (neg) p->pos++;
            u32vec cls = {0};
            bool ok = true;
            while (ok && peek(p) != ']') {
                if (peek(p) < 0) {
                    ok = fail_at(p, at, NURI_ERR_FORMAT,
                                 "the character class is not closed with ']'");
                    break;
                }
                uint32_t lo, hi;
                size_t cat = p->pos;
                if (!(ok = read_char(p, &lo))) break;
                hi = lo;
                if (peek(p) == '-' && peek_at(p, 1) != ']' && peek_at(p, 1) >= 0) {
                    p->pos++;
                    if (!(ok = read_char(p, &hi))) break;
                    if (hi < lo) {
                        ok = fail_at(p, cat, NURI_ERR_FORMAT,
                                     "the range U+%04X-U+%04X is backwards", lo, hi);
                        break;
                    }
                }
                ok = vec_push(p, &cls, lo) && vec_push(p, &cls, hi);
                if (ok && cls.n > NURI_GRAMMAR_MAX_ELEMS)
                    ok = fail_at(p, at, NURI_ERR_LIMIT, "the character class is too long");
            }
            if (ok) {
                p->pos++;
                u32vec keep = p->scratch;
                p->scratch = cls;
                uint32_t s;
                ok = make_set(p, neg, &s);
                cls = p->scratch;
                p->scratch = keep;
                last = body->n;
                ok = ok && emit(p, body, GE_MAKE(GE_SET, s));
            }
            free(cls.v);
            if (!ok) return false;
        } else if (c == '.') {
            p->pos++;
            uint32_t s;
            last = body->n;
            if (!single_set(p, 0, GRAMMAR_MAX_CP, false, &s) || !emit(p, body, GE_MAKE(GE_SET, s)))
                return false;
        } else if (is_word(c)) {
            size_t n = 0;
            while (is_word(peek_at(p, n))) n++;
            uint32_t r;
            if (!rule_by_name(p, p->pos, n, &r)) return false;
            if (p->rules[r].first_use == SIZE_MAX) p->rules[r].first_use = p->pos;
            p->pos += n;
            last = body->n;
            if (!emit(p, body, GE_MAKE(GE_REF, r))) return false;
        } else if (c == '(') {
            if (p->depth >= NURI_GRAMMAR_MAX_NESTING)
                return fail_at(p, at, NURI_ERR_LIMIT, "parentheses nested deeper than %d",
                               NURI_GRAMMAR_MAX_NESTING);
            p->pos++;
            skip_space(p, true);
            uint32_t r;
            if (!generated_rule(p, name_rule, &r)) return false;
            p->depth++;
            bool ok = parse_alternates(p, r, name_rule, true);
            p->depth--;
            if (!ok) return false;
            if (peek(p) != ')')
                return fail_at(p, at, NURI_ERR_FORMAT, "the '(' here is not closed with ')'");
            p->pos++;
            last = body->n;
            if (!emit(p, body, GE_MAKE(GE_REF, r))) return false;
        } else if (c == '*' || c == '+' || c == '?') {
            p->pos++;
            uint32_t min = c == '+', max = c == '?' ? 1 : UNBOUNDED;
            if (!repeat(p, name_rule, body, last, min, max, at)) return false;
        } else if (c == '{') {
            p->pos++;
            skip_space(p, nested);
            uint32_t min, max;
            if (!read_count(p, &min)) return false;
            skip_space(p, nested);
            if (peek(p) == '}') {
                max = min;
            } else if (peek(p) == ',') {
                p->pos++;
                skip_space(p, nested);
                max = UNBOUNDED;
                if (is_digit(peek(p))) {
                    if (!read_count(p, &max)) return false;
                    skip_space(p, nested);
                }
                if (peek(p) != '}') return FAIL("expected '}' to close the repetition");
            } else {
                return FAIL("expected ',' or '}' in the repetition");
            }
            p->pos++;
            if (!repeat(p, name_rule, body, last, min, max, at)) return false;
        } else if (c == '<' || c == '!') {
            return FAIL("token references (<...>) are not supported");
        } else {
            break;
        }
        skip_space(p, nested);
    }
    return true;
}

static bool parse_alternates(parser *p, uint32_t rule, uint32_t name_rule, bool nested)
{
    u32vec body = {0};
    bool ok = parse_sequence(p, name_rule, &body, nested);
    while (ok && peek(p) == '|') {
        p->pos++;
        ok = vec_push(p, &body, GE_ALT);
        skip_space(p, true);
        ok = ok && parse_sequence(p, name_rule, &body, nested);
    }
    if (!ok) {
        free(body.v);
        return false;
    }
    free(p->rules[rule].body.v); // (empty unless the rule is defined twice, refused earlier)
    p->rules[rule].body = body;
    return true;
}

static bool parse_rule(parser *p)
{
    size_t at = p->pos, n = 0;
    while (is_word(peek_at(p, n))) n++;
    if (n == 0) {
        int c = peek(p);
        if (c >= 0x20 && c < 0x7F) return FAIL("expected a rule name, found '%c'", c);
        return FAIL("expected a rule name");
    }
    p->pos += n;
    skip_space(p, false);
    if (!(peek(p) == ':' && peek_at(p, 1) == ':' && peek_at(p, 2) == '='))
        return FAIL("expected '::=' after the rule name '%.*s'", (int)(n > 64 ? 64 : n),
                    p->src + at);
    p->pos += 3;
    skip_space(p, true);
    uint32_t r;
    if (!rule_by_name(p, at, n, &r)) return false;
    if (p->rules[r].defined) {
        size_t first = p->rules[r].def_at, line = 1;
        for (size_t i = 0; i < first; i++) line += p->src[i] == '\n';
        return fail_at(p, at, NURI_ERR_FORMAT, "rule '%.*s' is already defined on line %zu",
                       (int)(n > 64 ? 64 : n), p->src + at, line);
    }
    p->rules[r].defined = 1;
    p->rules[r].def_at = at;
    if (!parse_alternates(p, r, r, false)) return false;
    int c = peek(p);
    if (c == '\r') {
        p->pos += peek_at(p, 1) == '\n' ? 2 : 1;
    } else if (c == '\n') {
        p->pos++;
    } else if (c >= 0) {
        if (c == ')') return FAIL("')' without a '(' before it");
        if (c >= 0x20 && c < 0x7F) return FAIL("unexpected '%c'", c);
        return FAIL("unexpected byte 0x%02X", c);
    }
    skip_space(p, true);
    return true;
}

/* ---- checks over the whole grammar ---- */

/* Fills nullable[r]: rule r can match the empty string. Linear: each alternative counts the
 * symbols not yet known to be nullable; a rule that becomes nullable decrements the count of every
 * alternative that mentions it (users lists), and an alternative reaching 0 makes its rule
 * nullable. Alternatives with a character set never become nullable. */
static bool compute_nullable(parser *p, const nuri_grammar *g, uint8_t *nullable)
{
    uint32_t *left = calloc(g->n_alts ? g->n_alts : 1, sizeof *left); // per alternative
    uint32_t *alt_rule = malloc(sizeof *alt_rule * (g->n_alts ? g->n_alts : 1));
    uint32_t *use_off = calloc((size_t)g->n_rules + 1, sizeof *use_off); // users, CSR
    uint32_t *uses = malloc(sizeof *uses * (g->n_elems ? g->n_elems : 1));
    uint32_t *queue = malloc(sizeof *queue * (g->n_rules ? g->n_rules : 1));
    bool ok = left && alt_rule && use_off && uses && queue;
    if (!ok) goto done;
    for (uint32_t r = 0; r < g->n_rules; r++)
        for (uint32_t a = g->rule_alt[r]; a < g->rule_alt[r + 1]; a++) {
            alt_rule[a] = r;
            for (uint32_t i = g->alt_pos[a]; GE_TYPE(g->elems[i]) != GE_END; i++) {
                uint32_t e = g->elems[i];
                left[a] += GE_TYPE(e) == GE_SET ? (1u << 30) : 1; // a set: never reaches 0
                if (GE_TYPE(e) == GE_REF) use_off[GE_VAL(e) + 1]++;
            }
        }
    for (uint32_t r = 0; r < g->n_rules; r++) use_off[r + 1] += use_off[r];
    {
        uint32_t *fill = calloc((size_t)g->n_rules + 1, sizeof *fill);
        if (!fill) {
            ok = false;
            goto done;
        }
        for (uint32_t a = 0; a < g->n_alts; a++)
            for (uint32_t i = g->alt_pos[a]; GE_TYPE(g->elems[i]) != GE_END; i++)
                if (GE_TYPE(g->elems[i]) == GE_REF) {
                    uint32_t r = GE_VAL(g->elems[i]);
                    uses[use_off[r] + fill[r]++] = a;
                }
        free(fill);
    }
    uint32_t qn = 0;
    for (uint32_t a = 0; a < g->n_alts; a++)
        if (left[a] == 0 && !nullable[alt_rule[a]]) {
            nullable[alt_rule[a]] = 1;
            queue[qn++] = alt_rule[a];
        }
    while (qn > 0) {
        uint32_t r = queue[--qn];
        for (uint32_t u = use_off[r]; u < use_off[r + 1]; u++) {
            uint32_t a = uses[u];
            if (--left[a] == 0 && !nullable[alt_rule[a]]) {
                nullable[alt_rule[a]] = 1;
                queue[qn++] = alt_rule[a];
            }
        }
    }
done:
    free(left);
    free(alt_rule);
    free(use_off);
    free(uses);
    free(queue);
    return ok ? true : oom(p);
}

/* Refuses left recursion: a cycle in the graph "r can start with s" (s appears in an alternative
 * of r after nothing but nullable rules). Iterative depth-first search, colors 0/1/2. */
static bool check_left_recursion(parser *p, const nuri_grammar *g)
{
    uint8_t *nullable = calloc(g->n_rules ? g->n_rules : 1, 1);
    uint8_t *color = calloc(g->n_rules ? g->n_rules : 1, 1);
    uint32_t *stack_r = malloc(sizeof *stack_r * (g->n_rules ? g->n_rules : 1));
    uint32_t *stack_a = malloc(sizeof *stack_a * (g->n_rules ? g->n_rules : 1)); // alternative
    uint32_t *stack_i = malloc(sizeof *stack_i * (g->n_rules ? g->n_rules : 1)); // symbol
    bool ok = nullable && color && stack_r && stack_a && stack_i;
    if (!ok) {
        oom(p);
        goto done;
    }
    if (!(ok = compute_nullable(p, g, nullable))) goto done;
    for (uint32_t start = 0; start < g->n_rules && ok; start++) {
        if (color[start]) continue;
        uint32_t sp = 0;
        stack_r[0] = start;
        stack_a[0] = g->rule_alt[start];
        stack_i[0] =
            g->rule_alt[start] < g->rule_alt[start + 1] ? g->alt_pos[g->rule_alt[start]] : 0;
        color[start] = 1;
        sp = 1;
        while (sp > 0) {
            uint32_t r = stack_r[sp - 1];
            uint32_t a = stack_a[sp - 1];
            if (a >= g->rule_alt[r + 1]) { // done with r
                color[r] = 2;
                sp--;
                continue;
            }
            uint32_t i = stack_i[sp - 1];
            uint32_t e = g->elems[i];
            bool next_alt = GE_TYPE(e) != GE_REF || !nullable[GE_VAL(e)];
            // advance this frame's cursor before descending
            if (next_alt) {
                stack_a[sp - 1] = a + 1;
                if (a + 1 < g->rule_alt[r + 1]) stack_i[sp - 1] = g->alt_pos[a + 1];
            } else {
                stack_i[sp - 1] = i + 1;
            }
            if (GE_TYPE(e) != GE_REF) continue;
            uint32_t s = GE_VAL(e);
            if (color[s] == 1) {
                const rule_info *ri = &p->rules[s];
                ok = fail_at(p, ri->def_at, NURI_ERR_FORMAT,
                             "rule '%.*s' is left-recursive (it can reach itself before any "
                             "character)",
                             (int)(ri->name_len > 64 ? 64 : ri->name_len), p->src + ri->name_off);
                break;
            }
            if (color[s] == 0) {
                color[s] = 1;
                stack_r[sp] = s;
                stack_a[sp] = g->rule_alt[s];
                stack_i[sp] = g->rule_alt[s] < g->rule_alt[s + 1] ? g->alt_pos[g->rule_alt[s]] : 0;
                sp++;
            }
        }
    }
done:
    free(nullable);
    free(color);
    free(stack_r);
    free(stack_a);
    free(stack_i);
    return ok;
}

/* ---- assembly ---- */

static void grammar_destroy(nuri_grammar *g)
{
    if (!g) return;
    free(g->elems);
    free(g->rule_alt);
    free(g->alt_pos);
    free(g->set_off);
    free(g->ranges);
    free(g->set_ascii);
    free(g);
}

static bool assemble(parser *p, nuri_grammar **out)
{
    nuri_grammar *g = calloc(1, sizeof *g);
    if (!g) return oom(p);
    atomic_init(&g->refs, 1);
    uint64_t n_elems = 0, n_alts = 0;
    for (uint32_t r = 0; r < p->n_rules; r++) {
        const u32vec *b = &p->rules[r].body;
        n_alts++;
        n_elems++;
        for (uint32_t i = 0; i < b->n; i++) {
            if (b->v[i] == GE_ALT) n_alts++;
            n_elems++;
        }
    }
    g->n_rules = p->n_rules;
    g->n_elems = (uint32_t)n_elems;
    g->n_alts = (uint32_t)n_alts;
    g->elems = malloc(sizeof *g->elems * (size_t)(n_elems ? n_elems : 1));
    g->alt_pos = malloc(sizeof *g->alt_pos * (size_t)(n_alts ? n_alts : 1));
    g->rule_alt = malloc(sizeof *g->rule_alt * ((size_t)p->n_rules + 1));
    g->n_sets = p->set_off.n;
    g->set_off = malloc(sizeof *g->set_off * ((size_t)g->n_sets + 1));
    g->ranges = malloc(sizeof *g->ranges * (size_t)(p->ranges.n ? p->ranges.n : 1));
    g->set_ascii = calloc((size_t)g->n_sets * 2 + 2, sizeof *g->set_ascii);
    if (!g->elems || !g->alt_pos || !g->rule_alt || !g->set_off || !g->ranges || !g->set_ascii) {
        grammar_destroy(g);
        return oom(p);
    }
    uint32_t e = 0, a = 0;
    for (uint32_t r = 0; r < p->n_rules; r++) {
        const u32vec *b = &p->rules[r].body;
        g->rule_alt[r] = a;
        g->alt_pos[a++] = e;
        for (uint32_t i = 0; i < b->n; i++) {
            if (b->v[i] == GE_ALT) {
                g->elems[e++] = GE_MAKE(GE_END, 0);
                g->alt_pos[a++] = e;
            } else {
                g->elems[e++] = b->v[i];
            }
        }
        g->elems[e++] = GE_MAKE(GE_END, 0);
    }
    g->rule_alt[p->n_rules] = a;
    if (g->n_sets) memcpy(g->set_off, p->set_off.v, sizeof *g->set_off * g->n_sets);
    g->set_off[g->n_sets] = p->ranges.n / 2;
    if (p->ranges.n) memcpy(g->ranges, p->ranges.v, sizeof *g->ranges * p->ranges.n);
    for (uint32_t s = 0; s < g->n_sets; s++)
        for (uint32_t i = g->set_off[s]; i < g->set_off[s + 1]; i++)
            for (uint32_t c = g->ranges[2 * i]; c <= g->ranges[2 * i + 1] && c < 128; c++)
                g->set_ascii[2 * s + (c >> 6)] |= 1ull << (c & 63);
    *out = g;
    return true;
}

static void parser_free(parser *p)
{
    for (uint32_t r = 0; r < p->n_rules; r++) free(p->rules[r].body.v);
    free(p->rules);
    free(p->name_tab);
    free(p->ranges.v);
    free(p->set_off.v);
    free(p->set_tab);
    free(p->scratch.v);
    free(p->rep.v);
}

nuri_status nuri_grammar_parse(const char *text, size_t len, nuri_grammar **out)
{
    *out = NULL;
    if (!text && len) return nuri_error(NURI_ERR_INVALID_ARG, "grammar: no text");
    if (len > NURI_GRAMMAR_MAX_TEXT)
        return nuri_error(NURI_ERR_LIMIT, "grammar: the text is %zu bytes, above the limit of %u",
                          len, NURI_GRAMMAR_MAX_TEXT);
    parser pp = {.src = text ? text : "", .len = len}, *p = &pp;
    const void *nul = len ? memchr(text, 0, len) : NULL;
    if (nul) {
        fail_at(p, (size_t)((const char *)nul - text), NURI_ERR_FORMAT, "a NUL byte in the text");
        parser_free(p);
        return p->err;
    }
    skip_space(p, true);
    while (p->err == NURI_OK && p->pos < p->len) parse_rule(p);
    uint32_t root = UINT32_MAX;
    for (uint32_t r = 0; p->err == NURI_OK && r < p->n_rules; r++) {
        const rule_info *ri = &p->rules[r];
        if (!ri->defined) {
            fail_at(p, ri->first_use, NURI_ERR_FORMAT, "rule '%.*s' is used but never defined",
                    (int)(ri->name_len > 64 ? 64 : ri->name_len), p->src + ri->name_off);
        } else if (!ri->generated && name_eq(p, r, "root", 4)) {
            root = r;
        }
    }
    if (p->err == NURI_OK && root == UINT32_MAX)
        fail_at(p, p->len, NURI_ERR_FORMAT, "there is no rule named 'root' to start from");
    nuri_grammar *g = NULL;
    if (p->err == NURI_OK && assemble(p, &g)) {
        g->root = root;
        if (!check_left_recursion(p, g)) {
            grammar_destroy(g);
            g = NULL;
        }
    }
    parser_free(p);
    if (p->err != NURI_OK) return p->err;
    *out = g;
    return NURI_OK;
}

nuri_grammar *nuri_grammar_ref(nuri_grammar *g)
{
    atomic_fetch_add(&g->refs, 1);
    return g;
}

void nuri_grammar_free(nuri_grammar *g)
{
    if (g && atomic_fetch_sub(&g->refs, 1) == 1) grammar_destroy(g);
}

uint32_t nuri_grammar_n_rules(const nuri_grammar *g)
{
    return g->n_rules;
}

uint32_t nuri_grammar_n_elems(const nuri_grammar *g)
{
    return g->n_elems;
}
