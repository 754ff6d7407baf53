/*
 * json_schema_regex.c: a JSON Schema `pattern` (the regex subset json_schema.h lists) -> GBNF for
 * the JSON string it describes.
 *
 * The regex speaks of the decoded string; the grammar writes the JSON text. So every character
 * set of the regex is encoded: its characters that may appear raw in a JSON string as themselves,
 * '"' and '\' as \" and \\, control characters as \n \t \r \b \f or \u00XX. Each regex character
 * is then one character of the decoded string, which keeps the meaning exact.
 *
 * Sets are computed with two bounds where Python and ECMAScript differ (\d and \w are Unicode-wide
 * in Python's re, ASCII in ECMAScript): a positive \d uses the ASCII digits (inside both), its
 * negation \D the complement of "ASCII digits and everything beyond ASCII" (outside both). The
 * grammar then never lets through a character that either engine would refuse. \s is exact: the
 * characters Python's str.isspace() accepts, which include ECMAScript's line terminators and most
 * of its white space.
 *
 * Matching is re.search's: a pattern without ^ (or \A) may be preceded by anything, one without $
 * (or \Z) followed by anything. Anchors elsewhere, look-around, back-references, \b, inline flags
 * and possessive quantifiers are refused.
 */
#include "grammar/json_schema_internal.h"

#include "base/status.h"

#include <stdlib.h>
#include <string.h>

#define MAX_CP 0x10FFFFu
#define RX_MAX_DEPTH 32

/* ---- sets of code points: sorted, merged ranges ---- */

typedef struct cpset {
    uint32_t *r; // pairs lo, hi
    size_t n, cap;
    bool oom;
} cpset;

static void cs_add(cpset *s, uint32_t lo, uint32_t hi)
{
    if (s->oom) return;
    if (s->n + 2 > s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 16;
        uint32_t *r = realloc(s->r, sizeof *r * cap);
        if (!r) {
            s->oom = true;
            return;
        }
        s->r = r;
        s->cap = cap;
    }
    s->r[s->n++] = lo;
    s->r[s->n++] = hi;
}

static int cmp_pair(const void *a, const void *b)
{
    const uint32_t *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0];
}

static void cs_normalize(cpset *s)
{
    size_t n = s->n / 2, k = 0;
    if (n == 0) return;
    qsort(s->r, n, 2 * sizeof(uint32_t), cmp_pair);
    for (size_t i = 0; i < n; i++) {
        uint32_t lo = s->r[2 * i], hi = s->r[2 * i + 1];
        if (k > 0 && lo <= s->r[2 * k - 1] + 1) {
            if (hi > s->r[2 * k - 1]) s->r[2 * k - 1] = hi;
        } else {
            s->r[2 * k] = lo;
            s->r[2 * k + 1] = hi;
            k++;
        }
    }
    s->n = 2 * k;
}

/* out = everything not in s (s normalized). */
static void cs_complement(const cpset *s, cpset *out)
{
    uint32_t next = 0;
    for (size_t i = 0; i < s->n; i += 2) {
        if (s->r[i] > next) cs_add(out, next, s->r[i] - 1);
        next = s->r[i + 1] + 1;
    }
    if (next <= MAX_CP) cs_add(out, next, MAX_CP);
}

static void cs_add_set(cpset *dst, const cpset *src)
{
    for (size_t i = 0; i < src->n; i += 2) cs_add(dst, src->r[i], src->r[i + 1]);
}

/* Python's str.isspace() characters. */
static void add_space(cpset *s)
{
    static const uint32_t sp[][2] = {
        {0x09, 0x0D},     {0x1C, 0x20},     {0x85, 0x85},     {0xA0, 0xA0},     {0x1680, 0x1680},
        {0x2000, 0x200A}, {0x2028, 0x2029}, {0x202F, 0x202F}, {0x205F, 0x205F}, {0x3000, 0x3000}};
    for (size_t i = 0; i < sizeof sp / sizeof *sp; i++) cs_add(s, sp[i][0], sp[i][1]);
}

/* A class escape (d w s D W S) as the set it surely means (lo) and the set it may mean (hi). */
static void class_escape(char c, cpset *lo, cpset *hi)
{
    cpset base_lo = {0}, base_hi = {0};
    char k = (char)(c | 0x20);
    if (k == 'd') {
        cs_add(&base_lo, '0', '9');
    } else if (k == 'w') {
        cs_add(&base_lo, '0', '9');
        cs_add(&base_lo, 'A', 'Z');
        cs_add(&base_lo, '_', '_');
        cs_add(&base_lo, 'a', 'z');
    } else {
        add_space(&base_lo);
    }
    cs_add_set(&base_hi, &base_lo);
    if (k != 's') cs_add(&base_hi, 0x80, MAX_CP); // Unicode digits and letters, in Python
    cs_normalize(&base_lo);
    cs_normalize(&base_hi);
    if (c == k) { // \d \w \s
        cs_add_set(lo, &base_lo);
        cs_add_set(hi, &base_hi);
    } else { // \D \W \S: the complement swaps the bounds
        cs_complement(&base_hi, lo);
        cs_complement(&base_lo, hi);
    }
    free(base_lo.r);
    free(base_hi.r);
}

/* ---- the parser ---- */

typedef struct rx {
    js_gen *g;
    const char *s;
    size_t n, i;
    int depth;
} rx;

static bool rx_fail(rx *x, nuri_status st, const char *what)
{
    return js_fail(x->g, st, "pattern", "pattern: %s (at offset %zu of the regex)", what, x->i);
}

/* Decodes one UTF-8 character of the pattern (jansson guarantees well-formed UTF-8). */
static uint32_t rx_utf8(rx *x)
{
    const unsigned char *s = (const unsigned char *)x->s + x->i;
    int len = s[0] < 0x80 ? 1 : s[0] < 0xE0 ? 2 : s[0] < 0xF0 ? 3 : 4;
    if (x->i + (size_t)len > x->n) len = 1;
    uint32_t c = len == 1 ? s[0] : s[0] & (0x3F >> (len - 1));
    for (int k = 1; k < len; k++) c = (c << 6) | (s[k] & 0x3F);
    x->i += (size_t)len;
    return c;
}

static bool rx_hex(rx *x, int digits, uint32_t *out)
{
    uint32_t v = 0;
    for (int k = 0; k < digits; k++) {
        if (x->i >= x->n) return rx_fail(x, NURI_ERR_FORMAT, "a cut-off hex escape");
        char c = x->s[x->i++];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0) return rx_fail(x, NURI_ERR_FORMAT, "a bad hex escape");
        v = v * 16 + (uint32_t)d;
    }
    if (v > MAX_CP) return rx_fail(x, NURI_ERR_FORMAT, "a code point past U+10FFFF");
    *out = v;
    return true;
}

/* After a backslash: one character (*is_set false) or a class escape added to lo/hi. */
static bool rx_escape(rx *x, uint32_t *c, bool *is_set, cpset *lo, cpset *hi)
{
    *is_set = false;
    if (x->i >= x->n) return rx_fail(x, NURI_ERR_FORMAT, "a trailing backslash");
    char e = x->s[x->i];
    if (strchr("dwsDWS", e)) {
        x->i++;
        class_escape(e, lo, hi);
        *is_set = true;
        return true;
    }
    x->i++;
    switch (e) {
    case 'n':
        *c = '\n';
        return true;
    case 't':
        *c = '\t';
        return true;
    case 'r':
        *c = '\r';
        return true;
    case 'f':
        *c = '\f';
        return true;
    case 'v':
        *c = '\v';
        return true;
    case 'a':
        *c = 0x07;
        return true;
    case 'x':
        return rx_hex(x, 2, c);
    case 'u':
        return rx_hex(x, 4, c);
    case 'U':
        return rx_hex(x, 8, c);
    default:
        break;
    }
    if ((e >= '0' && e <= '9'))
        return rx_fail(x, NURI_ERR_UNSUPPORTED,
                       "back-references and octal escapes are not supported");
    if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z'))
        return rx_fail(x, NURI_ERR_UNSUPPORTED,
                       "this escape (\\b, \\B, \\A, \\Z inside, \\p, ...) is not supported");
    x->i--;
    *c = rx_utf8(x); // an escaped punctuation character is itself
    return true;
}

/* Appends the GBNF for "one character of set s" in a JSON string. */
static bool emit_set(rx *x, const cpset *s, nuri_sb *out)
{
    nuri_sb raw = {0};
    int n_alt = 0;
    nuri_sb alts = {0};
    for (size_t i = 0; i < s->n; i += 2) {
        uint32_t lo = s->r[i], hi = s->r[i + 1];
        for (uint32_t c = lo; c <= hi && c < 0x20; c++) { // control characters: escapes
            static const char *names[0x20] = {[0x08] = "\\\\b",
                                              [0x09] = "\\\\t",
                                              [0x0A] = "\\\\n",
                                              [0x0C] = "\\\\f",
                                              [0x0D] = "\\\\r"};
            if (names[c])
                nuri_sb_fmt(&alts, "%s\"%s\"", n_alt++ ? " | " : "", names[c]);
            else
                nuri_sb_fmt(&alts, "%s\"\\\\u00%02X\"", n_alt++ ? " | " : "", c);
        }
        if (lo <= '"' && '"' <= hi) nuri_sb_fmt(&alts, "%s\"\\\\\\\"\"", n_alt++ ? " | " : "");
        if (lo <= '\\' && '\\' <= hi) nuri_sb_fmt(&alts, "%s\"\\\\\\\\\"", n_alt++ ? " | " : "");
        // the raw part: [lo, hi] minus controls, '"' and '\'
        uint32_t a = lo < 0x20 ? 0x20 : lo;
        while (a <= hi) {
            uint32_t b = hi;
            if (a <= '"' && '"' <= b) b = a == '"' ? a : '"' - 1;
            if (a <= '\\' && '\\' <= b) b = a == '\\' ? a : '\\' - 1;
            if (a != '"' && a != '\\') {
                js_sb_gbnf_char(&raw, a);
                if (b > a) {
                    nuri_sb_str(&raw, "-");
                    js_sb_gbnf_char(&raw, b);
                }
            }
            if (b == MAX_CP) break;
            a = b + 1;
        }
    }
    if (raw.n) {
        nuri_sb_fmt(out, "%s[%s]", n_alt ? "( " : "", raw.p);
        if (n_alt) nuri_sb_fmt(out, " | %s )", alts.p);
    } else if (n_alt) {
        nuri_sb_fmt(out, "( %s )", alts.p);
    } else {
        nuri_sb_str(out, "[^\\x00-\\U0010FFFF]"); // the empty set: nothing matches
    }
    bool oom = raw.oom || alts.oom || s->oom;
    free(raw.p);
    free(alts.p);
    if (oom) return js_fail(x->g, NURI_ERR_NOMEM, NULL, "out of memory");
    return true;
}

static bool rx_class(rx *x, nuri_sb *out)
{
    bool neg = x->i < x->n && x->s[x->i] == '^';
    if (neg) x->i++;
    cpset lo = {0}, hi = {0};
    bool first = true, ok = true;
    for (;;) {
        if (x->i >= x->n) {
            ok = rx_fail(x, NURI_ERR_FORMAT, "a character class without its ']'");
            break;
        }
        if (x->s[x->i] == ']' && !first) {
            x->i++;
            break;
        }
        first = false;
        uint32_t a;
        bool is_set = false;
        if (x->s[x->i] == '\\') {
            x->i++;
            if (!(ok = rx_escape(x, &a, &is_set, &lo, &hi))) break;
        } else {
            a = rx_utf8(x);
        }
        if (is_set) continue;
        uint32_t b = a;
        if (x->i + 1 < x->n && x->s[x->i] == '-' && x->s[x->i + 1] != ']') {
            x->i++;
            if (x->s[x->i] == '\\') {
                x->i++;
                if (!(ok = rx_escape(x, &b, &is_set, &lo, &hi))) break;
                if (is_set) {
                    ok = rx_fail(x, NURI_ERR_FORMAT, "a range that ends in a class escape");
                    break;
                }
            } else {
                b = rx_utf8(x);
            }
            if (b < a) {
                ok = rx_fail(x, NURI_ERR_FORMAT, "a backwards range in a class");
                break;
            }
        }
        cs_add(&lo, a, b);
        cs_add(&hi, a, b);
    }
    if (ok) {
        cpset res = {0};
        cs_normalize(&lo);
        cs_normalize(&hi);
        if (neg)
            cs_complement(&hi, &res);
        else
            cs_add_set(&res, &lo);
        ok = emit_set(x, &res, out);
        free(res.r);
    }
    free(lo.r);
    free(hi.r);
    return ok;
}

static bool rx_alt(rx *x, nuri_sb *out);

/* One atom: a character, a class, '.', or a group. */
static bool rx_atom(rx *x, nuri_sb *out)
{
    char c = x->s[x->i];
    if (c == '(') {
        if (x->depth >= RX_MAX_DEPTH) return rx_fail(x, NURI_ERR_LIMIT, "groups nested too deep");
        x->i++;
        if (x->i < x->n && x->s[x->i] == '?') {
            if (x->i + 1 < x->n && x->s[x->i + 1] == ':') {
                x->i += 2;
            } else if (x->i + 2 < x->n && x->s[x->i + 1] == 'P' && x->s[x->i + 2] == '<') {
                const char *end = memchr(x->s + x->i, '>', x->n - x->i);
                if (!end) return rx_fail(x, NURI_ERR_FORMAT, "a group name without its '>'");
                x->i = (size_t)(end - x->s) + 1;
            } else {
                return rx_fail(x, NURI_ERR_UNSUPPORTED,
                               "look-around, inline flags and other (?...) groups are not "
                               "supported");
            }
        }
        x->depth++;
        nuri_sb_str(out, "( ");
        bool ok = rx_alt(x, out);
        x->depth--;
        if (!ok) return false;
        if (x->i >= x->n || x->s[x->i] != ')')
            return rx_fail(x, NURI_ERR_FORMAT, "a group without its ')'");
        x->i++;
        nuri_sb_str(out, " )");
        return true;
    }
    if (c == '[') {
        x->i++;
        return rx_class(x, out);
    }
    cpset set = {0};
    bool ok = true;
    if (c == '.') {
        x->i++;
        cs_add(&set, 0, '\n' - 1);
        cs_add(&set, '\n' + 1, MAX_CP);
    } else if (c == '^' || c == '$') {
        return rx_fail(x, NURI_ERR_UNSUPPORTED, "anchors are supported only at the ends");
    } else if (c == '*' || c == '+' || c == '?') {
        return rx_fail(x, NURI_ERR_FORMAT, "a quantifier with nothing to repeat");
    } else {
        uint32_t a;
        bool is_set = false;
        cpset hi = {0};
        if (c == '\\') {
            x->i++;
            ok = rx_escape(x, &a, &is_set, &set, &hi);
        } else {
            a = rx_utf8(x);
        }
        free(hi.r);
        if (ok && !is_set) cs_add(&set, a, a);
    }
    if (ok) {
        cs_normalize(&set);
        ok = emit_set(x, &set, out);
    }
    free(set.r);
    return ok;
}

static bool rx_number(rx *x, long *v)
{
    if (x->i >= x->n || x->s[x->i] < '0' || x->s[x->i] > '9') return false;
    long n = 0;
    while (x->i < x->n && x->s[x->i] >= '0' && x->s[x->i] <= '9') {
        n = n * 10 + (x->s[x->i++] - '0');
        if (n > 1000000) n = 1000000;
    }
    *v = n;
    return true;
}

/* A quantifier after an atom: min and max (max -1 = unbounded); false if there is none (a '{'
 * that does not make one is a literal, as in Python). */
static bool rx_quantifier(rx *x, long *min, long *max)
{
    if (x->i >= x->n) return false;
    char c = x->s[x->i];
    if (c == '*' || c == '+' || c == '?') {
        x->i++;
        *min = c == '+';
        *max = c == '?' ? 1 : -1;
        return true;
    }
    if (c != '{') return false;
    size_t at = x->i;
    x->i++;
    long a = 0, b = -1;
    bool has_a = rx_number(x, &a);
    if (x->i < x->n && x->s[x->i] == '}') {
        if (!has_a) goto literal;
        b = a;
    } else if (x->i < x->n && x->s[x->i] == ',') {
        x->i++;
        if (!rx_number(x, &b)) b = -1;
        if (!has_a) a = 0;
        if (x->i >= x->n || x->s[x->i] != '}') goto literal;
    } else {
        goto literal;
    }
    x->i++;
    *min = a;
    *max = b;
    return true;
literal:
    x->i = at;
    return false;
}

/* A sequence of quantified atoms, up to '|' or ')' or the end. */
static bool rx_seq(rx *x, nuri_sb *out)
{
    bool empty = true;
    while (x->i < x->n && x->s[x->i] != '|' && x->s[x->i] != ')') {
        nuri_sb atom = {0};
        bool ok = rx_atom(x, &atom);
        long min, max;
        if (ok && rx_quantifier(x, &min, &max)) {
            if (x->i < x->n && x->s[x->i] == '?') {
                x->i++; // lazy: the same strings
            } else if (x->i < x->n && x->s[x->i] == '+') {
                ok = rx_fail(x, NURI_ERR_UNSUPPORTED, "possessive quantifiers are not supported");
            }
            if (ok && (max > (long)NURI_GRAMMAR_MAX_REPEAT || min > (long)NURI_GRAMMAR_MAX_REPEAT))
                ok = rx_fail(x, NURI_ERR_UNSUPPORTED, "a repetition count above 10000");
            if (ok && max >= 0 && max < min)
                ok = rx_fail(x, NURI_ERR_FORMAT, "a repetition {m,n} with n < m");
            if (ok) {
                nuri_sb_fmt(out, "%s( %s )", empty ? "" : " ", atom.p);
                if (min == 0 && max == -1)
                    nuri_sb_str(out, "*");
                else if (min == 1 && max == -1)
                    nuri_sb_str(out, "+");
                else if (min == 0 && max == 1)
                    nuri_sb_str(out, "?");
                else if (max == -1)
                    nuri_sb_fmt(out, "{%ld,}", min);
                else if (min == max)
                    nuri_sb_fmt(out, "{%ld}", min);
                else
                    nuri_sb_fmt(out, "{%ld,%ld}", min, max);
            }
        } else if (ok) {
            nuri_sb_fmt(out, "%s%s", empty ? "" : " ", atom.p);
        }
        free(atom.p);
        if (!ok) return false;
        empty = false;
    }
    if (empty) nuri_sb_str(out, "\"\"");
    return true;
}

static bool rx_alt(rx *x, nuri_sb *out)
{
    if (!rx_seq(x, out)) return false;
    while (x->i < x->n && x->s[x->i] == '|') {
        x->i++;
        nuri_sb_str(out, " | ");
        if (!rx_seq(x, out)) return false;
    }
    return true;
}

bool js_pattern(js_gen *g, const char *pattern, size_t len, nuri_sb *b)
{
    rx x = {.g = g, .s = pattern, .n = len};
    bool a0 = false, a1 = false;
    if (len >= 1 && pattern[0] == '^') {
        x.i = 1, a0 = true;
    } else if (len >= 2 && pattern[0] == '\\' && pattern[1] == 'A') {
        x.i = 2, a0 = true;
    }
    // a final '$' or \Z that is not itself escaped
    size_t bs = 0; // backslashes before the last character
    if (len >= 1) {
        for (size_t k = len - 1; k > x.i && pattern[k - 1] == '\\'; k--) bs++;
        if (pattern[len - 1] == '$' && bs % 2 == 0 && len - 1 >= x.i) {
            x.n = len - 1, a1 = true;
        } else if (len >= 2 && pattern[len - 1] == 'Z' && bs % 2 == 1 && len - 2 >= x.i) {
            x.n = len - 2, a1 = true;
        }
    }
    nuri_sb body = {0};
    bool ok = rx_alt(&x, &body);
    if (ok && x.i < x.n) ok = rx_fail(&x, NURI_ERR_FORMAT, "a ')' without its '('");
    if (ok) {
        const char *any = js_need(g, JS_P_CHAR);
        nuri_sb_str(b, "\"\\\"\" ");
        if (!a0) nuri_sb_fmt(b, "%s* ", any);
        nuri_sb_fmt(b, "( %s )", body.p ? body.p : "\"\"");
        if (!a1) nuri_sb_fmt(b, " %s*", any);
        nuri_sb_str(b, " \"\\\"\"");
    }
    if (ok && body.oom) ok = js_fail(g, NURI_ERR_NOMEM, NULL, "out of memory");
    free(body.p);
    return ok;
}
