/*
 * template_parse.c: template source -> tokens -> AST, as jinja2 3.1 reads it with
 * trim_blocks=True, lstrip_blocks=True and the loopcontrols extension.
 *
 * Lexing follows jinja2's rules exactly, since they decide the whitespace of the output:
 * newlines are normalized to \n and one trailing newline is dropped; `{%-`/`{{-`/`{#-` strip all
 * whitespace before the tag and `-%}`/`-}}`/`-#}` all after it; with lstrip_blocks, spaces and tabs
 * between the start of a line and a `{%` or `{#` are removed (not before `{{`, not with `{%+`);
 * with trim_blocks, one newline right after `%}` or `#}` is removed (not after `+%}`). Inside tags
 * the end marker only counts when brackets are balanced.
 *
 * The parser is recursive descent with jinja2's precedence (lowest first): `x if c else y`, or,
 * and, not, comparisons / in / not in, + -, ~, * / // %, **, unary - +, then postfix (.attr,
 * [index or slice], call) with filters `|f` and tests `is t` binding tighter than any binary
 * operator. Nesting depth is bounded (NURI_TEMPLATE_MAX_NESTING). Every error names line and
 * column.
 */
#include "base/utf8.h"
#include "chat/tpl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- tokens ---- */

typedef enum {
    TK_EOF,
    TK_DATA,
    TK_VAR_BEGIN,
    TK_VAR_END,
    TK_BLOCK_BEGIN,
    TK_BLOCK_END,
    TK_NAME,
    TK_STRING,
    TK_INT,
    TK_FLOAT,
    TK_OP,
} tk_type;

typedef struct tok {
    tk_type type;
    int line, col;
    const char *p; // text (TK_STRING: decoded value), NUL-terminated, in the arena
    size_t n;      // bytes
    int64_t i;
    double f;
} tok;

typedef struct parser {
    nuri_template *t;
    tpl_arena *a;
    const char *src; // normalized source
    size_t len;
    // position tracking (monotonic)
    size_t lc_off;
    int lc_line;
    size_t lc_linestart;
    size_t lc_col_off, lc_col; // a position on the current line and its code-point column
    tok *toks;
    size_t n_toks, cap_toks, pos;
    int depth;
    size_t caller_refs; // names `caller` read so far (a macro that reads one accepts caller=)
    jmp_buf jb;
} parser;

static void pos_at(parser *p, size_t off, int *line, int *col)
{
    if (off < p->lc_off) { // not expected, but stay correct
        p->lc_off = 0;
        p->lc_line = 1;
        p->lc_linestart = 0;
        p->lc_col_off = 0;
        p->lc_col = 0;
    }
    for (; p->lc_off < off && p->lc_off < p->len; p->lc_off++)
        if (p->src[p->lc_off] == '\n') {
            p->lc_line++;
            p->lc_linestart = p->lc_off + 1;
        }
    if (p->lc_col_off < p->lc_linestart || p->lc_col_off > off) {
        p->lc_col_off = p->lc_linestart;
        p->lc_col = 0;
    }
    // code points from the line start, counted on from the last position asked for
    p->lc_col += tpl_utf8_count(p->src + p->lc_col_off, off - p->lc_col_off);
    p->lc_col_off = off;
    *line = p->lc_line;
    *col = (int)p->lc_col + 1;
}

__attribute__((noreturn, format(printf, 5, 6))) static void
fail_at(parser *p, nuri_status s, int line, int col, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    nuri_error(s, "template line %d col %d: %s", line, col, msg);
    longjmp(p->jb, (int)s);
}

#define FAIL_OFF(p, off, ...)                                                                      \
    do {                                                                                           \
        int l_, c_;                                                                                \
        pos_at(p, off, &l_, &c_);                                                                  \
        fail_at(p, NURI_ERR_FORMAT, l_, c_, __VA_ARGS__);                                          \
    } while (0)

static void *palloc(parser *p, size_t n)
{
    void *m = tpl_arena_alloc(p->a, n);
    if (!m) {
        nuri_error(NURI_ERR_NOMEM, "template: out of memory while parsing");
        longjmp(p->jb, NURI_ERR_NOMEM);
    }
    return m;
}

static char *pstrdup(parser *p, const char *s, size_t n)
{
    char *d = palloc(p, n + 1);
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

static tok *push_tok(parser *p, tk_type type, size_t off)
{
    if (p->n_toks == p->cap_toks) {
        size_t cap = p->cap_toks ? p->cap_toks * 2 : 256;
        tok *t = realloc(p->toks, cap * sizeof *t);
        if (!t) {
            nuri_error(NURI_ERR_NOMEM, "template: out of memory while parsing");
            longjmp(p->jb, NURI_ERR_NOMEM);
        }
        p->toks = t;
        p->cap_toks = cap;
    }
    tok *t = &p->toks[p->n_toks++];
    memset(t, 0, sizeof *t);
    t->type = type;
    pos_at(p, off, &t->line, &t->col);
    return t;
}

/* ---- lexer ---- */

/* Length of s[0..n) without trailing whitespace (Python str.rstrip()). */
static size_t rstrip_len(const char *s, size_t n)
{
    while (n > 0) {
        size_t start = n - 1;
        while (start > 0 && ((unsigned char)s[start] & 0xc0) == 0x80 && n - start < 4) start--;
        uint32_t cp;
        size_t l = tpl_utf8_decode(s + start, n - start, &cp);
        if (start + l != n || !tpl_is_space(cp)) break;
        n = start;
    }
    return n;
}

/* Skips whitespace (Python \s) from off; returns the new offset. */
static size_t skip_space(parser *p, size_t off)
{
    while (off < p->len) {
        uint32_t cp;
        size_t l = tpl_utf8_decode(p->src + off, p->len - off, &cp);
        if (!tpl_is_space(cp)) break;
        off += l;
    }
    return off;
}

static void emit_data(parser *p, size_t off, size_t n)
{
    if (n == 0) return;
    tok *t = push_tok(p, TK_DATA, off);
    t->p = p->src + off;
    t->n = n;
}

static const char *const operators[] = {"//", "**", "==", "!=", ">=", "<=", "+", "-", "/",
                                        "*",  "%",  "~",  "[",  "]",  "(",  ")", "{", "}",
                                        ">",  "<",  "=",  ".",  ":",  "|",  ",", ";"};

static bool digit(char c)
{
    return c >= '0' && c <= '9';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* A string literal at off (quote at src[off]); decodes Python escapes. Returns the end offset. */
static size_t lex_string(parser *p, size_t off, tok *t)
{
    char q = p->src[off];
    size_t i = off + 1;
    while (i < p->len && p->src[i] != q) {
        if (p->src[i] == '\\') i++;
        i++;
    }
    if (i >= p->len) FAIL_OFF(p, off, "unterminated string literal");
    const char *s = p->src + off + 1;
    size_t n = i - off - 1;
    char *o = palloc(p, n + 1), *w = o;
    for (size_t k = 0; k < n; k++) {
        if (s[k] != '\\' || k + 1 >= n) {
            *w++ = s[k];
            continue;
        }
        char c = s[++k];
        switch (c) {
        case 'n':
            *w++ = '\n';
            break;
        case 't':
            *w++ = '\t';
            break;
        case 'r':
            *w++ = '\r';
            break;
        case '\\':
            *w++ = '\\';
            break;
        case '\'':
            *w++ = '\'';
            break;
        case '"':
            *w++ = '"';
            break;
        case 'a':
            *w++ = '\a';
            break;
        case 'b':
            *w++ = '\b';
            break;
        case 'f':
            *w++ = '\f';
            break;
        case 'v':
            *w++ = '\v';
            break;
        case '\n':
            break; // line continuation
        case 'N':
            fail_at(p, NURI_ERR_UNSUPPORTED, t->line, t->col,
                    "\\N{...} escapes in string literals are not supported");
        case 'x':
        case 'u':
        case 'U': {
            int nd = c == 'x' ? 2 : c == 'u' ? 4 : 8;
            uint32_t cp = 0;
            if (k + (size_t)nd >= n) FAIL_OFF(p, off, "truncated \\%c escape in string literal", c);
            for (int d = 0; d < nd; d++) {
                int h = hexval(s[k + 1 + (size_t)d]);
                if (h < 0) FAIL_OFF(p, off, "bad \\%c escape in string literal", c);
                cp = cp * 16 + (uint32_t)h;
            }
            if (cp > 0x10ffff || (cp >= 0xd800 && cp < 0xe000))
                FAIL_OFF(p, off, "escape \\%c names no Unicode character", c);
            k += (size_t)nd;
            // \u escapes can be longer than their source text only for \x (2 -> up to 2 bytes)
            w += nuri_utf8_encode(cp, w);
            break;
        }
        default:
            if (c >= '0' && c <= '7') {
                uint32_t cp = 0;
                int d = 0;
                while (d < 3 && k < n && s[k] >= '0' && s[k] <= '7')
                    cp = cp * 8 + (uint32_t)(s[k++] - '0'), d++;
                k--;
                w += nuri_utf8_encode(cp, w);
            } else {
                *w++ = '\\';
                *w++ = c;
            }
        }
    }
    *w = 0;
    t->p = o;
    t->n = (size_t)(w - o);
    return i + 1;
}

/* Lexes the inside of a tag from off until its end marker; returns the offset after the marker
 * (and after what it strips). */
static size_t lex_tag(parser *p, size_t off, bool block, size_t tag_off)
{
    int brackets = 0;
    char stack[NURI_TEMPLATE_MAX_NESTING];
    for (;;) {
        off = skip_space(p, off);
        if (off >= p->len)
            FAIL_OFF(p, tag_off, "unexpected end of template: missing '%s'", block ? "%}" : "}}");
        const char *s = p->src + off;
        size_t left = p->len - off;
        if (brackets == 0) {
            if (block) {
                if (left >= 3 && s[0] == '-' && s[1] == '%' && s[2] == '}') {
                    push_tok(p, TK_BLOCK_END, off);
                    return skip_space(p, off + 3);
                }
                if (left >= 3 && s[0] == '+' && s[1] == '%' && s[2] == '}') {
                    push_tok(p, TK_BLOCK_END, off);
                    return off + 3;
                }
                if (left >= 2 && s[0] == '%' && s[1] == '}') {
                    push_tok(p, TK_BLOCK_END, off);
                    off += 2;
                    if (off < p->len && p->src[off] == '\n') off++; // trim_blocks
                    return off;
                }
            } else {
                if (left >= 3 && s[0] == '-' && s[1] == '}' && s[2] == '}') {
                    push_tok(p, TK_VAR_END, off);
                    return skip_space(p, off + 3);
                }
                if (left >= 2 && s[0] == '}' && s[1] == '}') {
                    push_tok(p, TK_VAR_END, off);
                    return off + 2;
                }
            }
        }
        char c = s[0];
        if (c == '0' && left > 2 && strchr("xXoObB", s[1])) {
            // 0x / 0o / 0b integers (digits may be separated by '_')
            int base = (s[1] | 32) == 'x' ? 16 : (s[1] | 32) == 'o' ? 8 : 2;
            size_t i = 2;
            uint64_t v = 0;
            bool any = false, over = false;
            while (i < left) {
                int d = s[i] == '_' ? -2 : hexval(s[i]);
                if (d == -2) {
                    i++;
                    continue;
                }
                if (d < 0 || d >= base) break;
                if (v > (UINT64_MAX - (uint64_t)d) / (uint64_t)base) over = true;
                v = v * (uint64_t)base + (uint64_t)d;
                any = true;
                i++;
            }
            if (any) {
                tok *t = push_tok(p, TK_INT, off);
                if (over || v > INT64_MAX)
                    fail_at(p, NURI_ERR_UNSUPPORTED, t->line, t->col,
                            "integer literal over 64 bits");
                t->i = (int64_t)v;
                off += i;
                continue;
            }
        }
        if (digit(c)) {
            // number: digits [_digits] [.digits] [e[+-]digits]
            size_t i = 0;
            bool is_float = false;
            while (i < left && (digit(s[i]) || (s[i] == '_' && i + 1 < left && digit(s[i + 1]))))
                i++;
            if (i + 1 < left && s[i] == '.' && digit(s[i + 1])) {
                is_float = true;
                i++;
                while (i < left &&
                       (digit(s[i]) || (s[i] == '_' && i + 1 < left && digit(s[i + 1]))))
                    i++;
            }
            if (i < left && (s[i] == 'e' || s[i] == 'E')) {
                size_t j = i + 1;
                if (j < left && (s[j] == '+' || s[j] == '-')) j++;
                if (j < left && digit(s[j])) {
                    is_float = true;
                    i = j;
                    while (i < left &&
                           (digit(s[i]) || (s[i] == '_' && i + 1 < left && digit(s[i + 1]))))
                        i++;
                }
            }
            char *num = palloc(p, i + 1); // the digits without '_'
            size_t nn = 0;
            for (size_t k = 0; k < i; k++)
                if (s[k] != '_') num[nn++] = s[k];
            num[nn] = 0;
            tok *t = push_tok(p, is_float ? TK_FLOAT : TK_INT, off);
            if (is_float) {
                t->f = strtod(num, NULL);
            } else {
                if (nn > 1 && num[0] == '0') {
                    for (size_t k = 0; k < nn; k++)
                        if (num[k] != '0') FAIL_OFF(p, off, "integer with a leading zero");
                }
                errno = 0;
                unsigned long long v = nn > 19 ? 0 : strtoull(num, NULL, 10);
                if (nn > 19 || errno || v > INT64_MAX)
                    fail_at(p, NURI_ERR_UNSUPPORTED, t->line, t->col,
                            "integer literal over 64 bits");
                t->i = (int64_t)v;
            }
            off += i;
            continue;
        }
        if (c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
            size_t i = 1;
            while (i < left && (s[i] == '_' || digit(s[i]) || (s[i] >= 'a' && s[i] <= 'z') ||
                                (s[i] >= 'A' && s[i] <= 'Z')))
                i++;
            tok *t = push_tok(p, TK_NAME, off);
            t->p = pstrdup(p, s, i);
            t->n = i;
            off += i;
            continue;
        }
        if (c == '\'' || c == '"') {
            tok *t = push_tok(p, TK_STRING, off);
            off = lex_string(p, off, t);
            continue;
        }
        size_t k;
        for (k = 0; k < sizeof operators / sizeof operators[0]; k++) {
            size_t ol = strlen(operators[k]);
            if (left >= ol && !memcmp(s, operators[k], ol)) break;
        }
        if (k == sizeof operators / sizeof operators[0]) {
            uint32_t cp;
            tpl_utf8_decode(s, left, &cp);
            FAIL_OFF(p, off, "unexpected character U+%04X", (unsigned)cp);
        }
        const char *op = operators[k];
        if (op[1] == 0 && strchr("([{", op[0])) {
            if (brackets >= NURI_TEMPLATE_MAX_NESTING)
                fail_at(p, NURI_ERR_LIMIT, 0, 0, "brackets nested deeper than %d",
                        NURI_TEMPLATE_MAX_NESTING);
            stack[brackets++] = op[0];
        } else if (op[1] == 0 && strchr(")]}", op[0])) {
            char want = op[0] == ')' ? '(' : op[0] == ']' ? '[' : '{';
            if (brackets == 0 || stack[brackets - 1] != want)
                FAIL_OFF(p, off, "unexpected '%c'", op[0]);
            brackets--;
        }
        tok *t = push_tok(p, TK_OP, off);
        t->p = op;
        t->n = strlen(op);
        off += t->n;
    }
}

/* The length of the text at [pos, pos + n) that is kept before a tag: with `-` all trailing
 * whitespace goes; otherwise, for block and comment tags (lstrip) unless `+`, the spaces between
 * the start of the line and the tag go when nothing else is on that line. */
static size_t strip_before_tag(parser *p, size_t pos, size_t n, char sign, bool lstrip)
{
    const char *src = p->src;
    if (sign == '-') return rstrip_len(src + pos, n);
    if (sign == '+' || !lstrip) return n;
    bool line_starting = pos == 0 || src[pos - 1] == '\n';
    size_t l_pos = 0;
    for (size_t i = n; i > 0; i--)
        if (src[pos + i - 1] == '\n') {
            l_pos = i;
            break;
        }
    if (l_pos == 0 && !line_starting) return n;
    for (size_t i = l_pos; i < n;) {
        uint32_t cp;
        size_t l = tpl_utf8_decode(src + pos + i, n - i, &cp);
        if (!tpl_is_space(cp)) return n;
        i += l;
    }
    return l_pos;
}

static void lex(parser *p)
{
    size_t pos = 0;
    const char *src = p->src;
    while (pos < p->len) {
        size_t k = pos;
        const char *hit = NULL;
        while (k + 1 < p->len) {
            hit = memchr(src + k, '{', p->len - 1 - k);
            if (!hit) break;
            k = (size_t)(hit - src);
            char c = src[k + 1];
            if (c == '{' || c == '%' || c == '#') break;
            k++;
            hit = NULL;
        }
        if (!hit) {
            emit_data(p, pos, p->len - pos);
            break;
        }
        char kind = src[k + 1];
        size_t after = k + 2;
        char sign = after < p->len && (src[after] == '-' || src[after] == '+') ? src[after] : 0;
        if (sign) after++;
        emit_data(p, pos, strip_before_tag(p, pos, k - pos, sign, kind != '{'));
        if (kind == '#') {
            const char *e = NULL;
            size_t i = after;
            while (i + 1 < p->len) {
                e = memchr(src + i, '#', p->len - 1 - i);
                if (!e) break;
                i = (size_t)(e - src);
                if (src[i + 1] == '}') break;
                i++;
                e = NULL;
            }
            if (!e) FAIL_OFF(p, k, "missing end of comment tag");
            size_t end = i + 2;
            if (i > after && src[i - 1] == '-')
                end = skip_space(p, end);
            else if (i > after && src[i - 1] == '+') {
            } else if (end < p->len && src[end] == '\n')
                end++;
            pos = end;
            continue;
        }
        if (kind == '%') {
            // {% raw %} ... {% endraw %}: the text in between is data, untouched
            size_t j = skip_space(p, after);
            if (p->len - j >= 3 && !memcmp(src + j, "raw", 3)) {
                size_t m = skip_space(p, j + 3);
                bool minus = m < p->len && src[m] == '-';
                if (minus) m++;
                if (p->len - m >= 2 && src[m] == '%' && src[m + 1] == '}') {
                    size_t body = m + 2;
                    if (minus) body = skip_space(p, body);
                    size_t q = body;
                    for (;;) {
                        const char *h = q < p->len ? memchr(src + q, '{', p->len - q) : NULL;
                        if (!h) FAIL_OFF(p, k, "missing end of raw directive");
                        q = (size_t)(h - src);
                        size_t r = q + 1;
                        if (r < p->len && src[r] == '%') {
                            r++;
                            char s2 = r < p->len && (src[r] == '-' || src[r] == '+') ? src[r] : 0;
                            if (s2) r++;
                            r = skip_space(p, r);
                            if (p->len - r >= 6 && !memcmp(src + r, "endraw", 6)) {
                                size_t e = skip_space(p, r + 6);
                                size_t data_n = strip_before_tag(p, body, q - body, s2, true);
                                if (p->len - e >= 3 && src[e] == '-' && src[e + 1] == '%' &&
                                    src[e + 2] == '}') {
                                    emit_data(p, body, data_n);
                                    pos = skip_space(p, e + 3);
                                    break;
                                }
                                if (p->len - e >= 3 && src[e] == '+' && src[e + 1] == '%' &&
                                    src[e + 2] == '}') {
                                    emit_data(p, body, data_n);
                                    pos = e + 3;
                                    break;
                                }
                                if (p->len - e >= 2 && src[e] == '%' && src[e + 1] == '}') {
                                    emit_data(p, body, data_n);
                                    pos = e + 2;
                                    if (pos < p->len && src[pos] == '\n') pos++;
                                    break;
                                }
                            }
                        }
                        q++;
                    }
                    continue;
                }
            }
        }
        push_tok(p, kind == '%' ? TK_BLOCK_BEGIN : TK_VAR_BEGIN, k);
        pos = lex_tag(p, after, kind == '%', k);
    }
    push_tok(p, TK_EOF, p->len);
}

/* ---- parser helpers ---- */

static tok *cur(parser *p)
{
    return &p->toks[p->pos];
}
static tok *peek(parser *p, size_t ahead)
{
    size_t i = p->pos + ahead;
    return &p->toks[i < p->n_toks ? i : p->n_toks - 1];
}
static tok *next(parser *p)
{
    tok *t = &p->toks[p->pos];
    if (p->pos + 1 < p->n_toks) p->pos++;
    return t;
}

static bool is_op(const tok *t, const char *op)
{
    return t->type == TK_OP && !strcmp(t->p, op);
}
static bool is_name(const tok *t, const char *name)
{
    return t->type == TK_NAME && !strcmp(t->p, name);
}

static const char *tok_desc(const tok *t)
{
    switch (t->type) {
    case TK_EOF:
        return "end of template";
    case TK_DATA:
        return "text";
    case TK_VAR_BEGIN:
        return "'{{'";
    case TK_VAR_END:
        return "'}}'";
    case TK_BLOCK_BEGIN:
        return "'{%'";
    case TK_BLOCK_END:
        return "'%}'";
    case TK_STRING:
        return "a string";
    case TK_INT:
        return "an integer";
    case TK_FLOAT:
        return "a float";
    default:
        return t->p;
    }
}

__attribute__((noreturn, format(printf, 3, 4))) static void fail_tok(parser *p, const tok *t,
                                                                     const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fail_at(p, NURI_ERR_FORMAT, t->line, t->col, "%s", msg);
}

static void expect_op(parser *p, const char *op)
{
    tok *t = cur(p);
    if (!is_op(t, op)) fail_tok(p, t, "expected '%s', got %s", op, tok_desc(t));
    next(p);
}

static void expect_block_end(parser *p, const char *stmt)
{
    tok *t = cur(p);
    if (t->type != TK_BLOCK_END)
        fail_tok(p, t, "expected '%%}' to end '%s', got %s", stmt, tok_desc(t));
    next(p);
}

static const char *expect_name(parser *p)
{
    tok *t = cur(p);
    if (t->type != TK_NAME) fail_tok(p, t, "expected a name, got %s", tok_desc(t));
    next(p);
    return t->p;
}

static tpl_node *mk(parser *p, tpl_kind kind, const tok *at)
{
    tpl_node *n = palloc(p, sizeof *n);
    n->kind = (uint8_t)kind;
    n->line = at->line;
    n->col = at->col;
    return n;
}

/* A growable node list; finished lists live in the arena. */
typedef struct nvec {
    tpl_node **v;
    const char **names;
    tpl_node **vals;
    size_t n, cap;
} nvec;

static void nvec_push(parser *p, nvec *v, tpl_node *n, const char *name, tpl_node *val)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 4;
        tpl_node **nv = palloc(p, cap * sizeof *nv);
        const char **nn = palloc(p, cap * sizeof *nn);
        tpl_node **nvals = palloc(p, cap * sizeof *nvals);
        if (v->n) {
            memcpy(nv, v->v, v->n * sizeof *nv);
            memcpy(nn, v->names, v->n * sizeof *nn);
            memcpy(nvals, v->vals, v->n * sizeof *nvals);
        }
        v->v = nv;
        v->names = nn;
        v->vals = nvals;
        v->cap = cap;
    }
    v->v[v->n] = n;
    v->names[v->n] = name;
    v->vals[v->n] = val;
    v->n++;
}

#define ENTER(p, t)                                                                                \
    do {                                                                                           \
        if (++(p)->depth > NURI_TEMPLATE_MAX_NESTING)                                              \
            fail_at(p, NURI_ERR_LIMIT, (t)->line, (t)->col, "nested deeper than %d",               \
                    NURI_TEMPLATE_MAX_NESTING);                                                    \
    } while (0)
#define LEAVE(p) ((p)->depth--)

/* ---- expressions ---- */

static tpl_node *parse_expression(parser *p, bool with_condexpr);
static tpl_node *parse_tuple(parser *p, bool with_condexpr, bool explicit_parens);
static tpl_node *parse_unary(parser *p, bool with_filter);
static tpl_node *parse_or(parser *p);

static void parse_call_args(parser *p, tpl_node *n)
{
    expect_op(p, "(");
    nvec v = {0};
    bool kw_seen = false;
    while (!is_op(cur(p), ")")) {
        if (v.n) expect_op(p, ",");
        if (is_op(cur(p), ")")) break; // trailing comma
        tok *t = cur(p);
        if (is_op(t, "*") || is_op(t, "**"))
            fail_at(p, NURI_ERR_UNSUPPORTED, t->line, t->col, "*args / **kwargs in calls");
        if (t->type == TK_NAME && is_op(peek(p, 1), "=")) {
            next(p);
            next(p);
            nvec_push(p, &v, parse_expression(p, true), t->p, NULL);
            kw_seen = true;
        } else {
            if (kw_seen) fail_tok(p, t, "positional argument after a keyword argument");
            nvec_push(p, &v, parse_expression(p, true), NULL, NULL);
        }
    }
    next(p);
    n->args = v.v;
    n->kwnames = v.names;
    n->n_args = v.n;
}

static tpl_node *parse_primary(parser *p)
{
    tok *t = cur(p);
    tpl_node *n;
    switch (t->type) {
    case TK_NAME:
        next(p);
        n = mk(p, E_CONST, t);
        if (!strcmp(t->p, "true") || !strcmp(t->p, "True"))
            n->val = tv_bool(true);
        else if (!strcmp(t->p, "false") || !strcmp(t->p, "False"))
            n->val = tv_bool(false);
        else if (!strcmp(t->p, "none") || !strcmp(t->p, "None"))
            n->val = tv_none();
        else {
            n->kind = E_NAME;
            n->name = t->p;
            if (!strcmp(t->p, "caller")) p->caller_refs++;
        }
        return n;
    case TK_STRING: {
        next(p);
        n = mk(p, E_CONST, t);
        size_t total = t->n;
        size_t k = 0;
        while (peek(p, k)->type == TK_STRING) total += peek(p, k++)->n;
        if (k == 0) {
            n->val = tv_strn(t->p, t->n);
            return n;
        }
        char *s = palloc(p, total + 1);
        memcpy(s, t->p, t->n);
        size_t off = t->n;
        while (cur(p)->type == TK_STRING) {
            tok *u = next(p);
            memcpy(s + off, u->p, u->n);
            off += u->n;
        }
        n->val = tv_strn(s, total);
        return n;
    }
    case TK_INT:
        next(p);
        n = mk(p, E_CONST, t);
        n->val = tv_int(t->i);
        return n;
    case TK_FLOAT:
        next(p);
        n = mk(p, E_CONST, t);
        n->val = tv_float(t->f);
        return n;
    case TK_OP:
        if (is_op(t, "(")) {
            next(p);
            n = parse_tuple(p, true, true);
            expect_op(p, ")");
            return n;
        }
        if (is_op(t, "[")) {
            next(p);
            n = mk(p, E_LIST, t);
            nvec v = {0};
            while (!is_op(cur(p), "]")) {
                if (v.n) expect_op(p, ",");
                if (is_op(cur(p), "]")) break;
                nvec_push(p, &v, parse_expression(p, true), NULL, NULL);
            }
            next(p);
            n->args = v.v;
            n->n_args = v.n;
            return n;
        }
        if (is_op(t, "{")) {
            next(p);
            n = mk(p, E_DICT, t);
            nvec v = {0};
            while (!is_op(cur(p), "}")) {
                if (v.n) expect_op(p, ",");
                if (is_op(cur(p), "}")) break;
                tpl_node *k = parse_expression(p, true);
                expect_op(p, ":");
                nvec_push(p, &v, k, NULL, parse_expression(p, true));
            }
            next(p);
            n->args = v.v;
            n->kwv = v.vals;
            n->n_args = v.n;
            return n;
        }
        break;
    default:
        break;
    }
    fail_tok(p, t, "unexpected %s", tok_desc(t));
}

static tpl_node *parse_subscript(parser *p, tpl_node *obj)
{
    tok *t = next(p);
    if (is_op(t, ".")) {
        tok *a = next(p);
        if (a->type == TK_NAME) {
            tpl_node *n = mk(p, E_ATTR, t);
            n->a = obj;
            n->name = a->p;
            return n;
        }
        if (a->type == TK_INT) {
            tpl_node *n = mk(p, E_ITEM, t);
            n->a = obj;
            n->b = mk(p, E_CONST, a);
            n->b->val = tv_int(a->i);
            return n;
        }
        fail_tok(p, a, "expected a name after '.', got %s", tok_desc(a));
    }
    // '[': an index or a slice
    tpl_node *parts[3] = {NULL, NULL, NULL};
    bool slice = false;
    if (!is_op(cur(p), ":")) parts[0] = parse_expression(p, true);
    if (is_op(cur(p), ",")) fail_at(p, NURI_ERR_UNSUPPORTED, t->line, t->col, "tuple subscripts");
    if (is_op(cur(p), ":")) {
        slice = true;
        next(p);
        if (!is_op(cur(p), "]") && !is_op(cur(p), ":")) parts[1] = parse_expression(p, true);
        if (is_op(cur(p), ":")) {
            next(p);
            if (!is_op(cur(p), "]")) parts[2] = parse_expression(p, true);
        }
    }
    expect_op(p, "]");
    tpl_node *n = mk(p, slice ? E_SLICE : E_ITEM, t);
    n->a = obj;
    n->b = parts[0];
    n->c = parts[1];
    n->d = parts[2];
    return n;
}

static tpl_node *parse_postfix(parser *p, tpl_node *n)
{
    for (;;) {
        tok *t = cur(p);
        if (is_op(t, ".") || is_op(t, "["))
            n = parse_subscript(p, n);
        else if (is_op(t, "(")) {
            tpl_node *c = mk(p, E_CALL, t);
            c->a = n;
            parse_call_args(p, c);
            n = c;
        } else
            return n;
    }
}

static const char *parse_dotted_name(parser *p)
{
    const char *name = expect_name(p);
    while (is_op(cur(p), ".") && peek(p, 1)->type == TK_NAME) {
        next(p);
        const char *more = expect_name(p);
        size_t l1 = strlen(name), l2 = strlen(more);
        char *s = palloc(p, l1 + l2 + 2);
        memcpy(s, name, l1);
        s[l1] = '.';
        memcpy(s + l1 + 1, more, l2 + 1);
        name = s;
    }
    return name;
}

/* One `|name(args)`; obj may be NULL (filter blocks fill it in when they run). */
static tpl_node *parse_filter(parser *p, tpl_node *obj)
{
    tok *t = cur(p);
    tpl_node *n = mk(p, E_FILTER, t);
    n->a = obj;
    n->name = parse_dotted_name(p);
    if (is_op(cur(p), "(")) parse_call_args(p, n);
    return n;
}

static tpl_node *parse_filter_expr(parser *p, tpl_node *n)
{
    for (;;) {
        tok *t = cur(p);
        if (is_op(t, "|")) {
            next(p);
            n = parse_filter(p, n);
        } else if (is_name(t, "is")) {
            next(p);
            tpl_node *x = mk(p, E_TEST, t);
            x->a = n;
            if (is_name(cur(p), "not")) {
                next(p);
                x->op = 1;
            }
            x->name = parse_dotted_name(p);
            tok *u = cur(p);
            if (is_op(u, "(")) {
                parse_call_args(p, x);
            } else if ((u->type == TK_NAME || u->type == TK_STRING || u->type == TK_INT ||
                        u->type == TK_FLOAT || is_op(u, "(") || is_op(u, "[") || is_op(u, "{")) &&
                       !is_name(u, "else") && !is_name(u, "or") && !is_name(u, "and")) {
                if (is_name(u, "is")) fail_tok(p, u, "you cannot chain multiple tests with 'is'");
                tpl_node *arg = parse_postfix(p, parse_primary(p));
                x->args = palloc(p, sizeof *x->args);
                x->kwnames = palloc(p, sizeof *x->kwnames);
                x->args[0] = arg;
                x->n_args = 1;
            }
            n = x;
        } else if (is_op(t, "(")) {
            tpl_node *c = mk(p, E_CALL, t);
            c->a = n;
            parse_call_args(p, c);
            n = c;
        } else
            return n;
    }
}

static tpl_node *parse_unary(parser *p, bool with_filter)
{
    tok *t = cur(p);
    ENTER(p, t);
    tpl_node *n;
    if (is_op(t, "-") || is_op(t, "+")) {
        next(p);
        n = mk(p, is_op(t, "-") ? E_NEG : E_POS, t);
        n->a = parse_unary(p, false);
    } else {
        n = parse_primary(p);
    }
    n = parse_postfix(p, n);
    if (with_filter) n = parse_filter_expr(p, n);
    LEAVE(p);
    return n;
}

static tpl_node *binop(parser *p, const tok *t, int op, tpl_node *a, tpl_node *b)
{
    tpl_node *n = mk(p, E_BINOP, t);
    n->op = (uint8_t)op;
    n->a = a;
    n->b = b;
    return n;
}

static tpl_node *parse_pow(parser *p)
{
    tpl_node *n = parse_unary(p, true);
    while (is_op(cur(p), "**")) {
        tok *t = next(p);
        n = binop(p, t, OP_POW, n, parse_unary(p, true));
    }
    return n;
}

static tpl_node *parse_math2(parser *p)
{
    tpl_node *n = parse_pow(p);
    for (;;) {
        tok *t = cur(p);
        int op = is_op(t, "*")    ? OP_MUL
                 : is_op(t, "/")  ? OP_DIV
                 : is_op(t, "//") ? OP_FLOORDIV
                 : is_op(t, "%")  ? OP_MOD
                                  : 0;
        if (!op) return n;
        next(p);
        n = binop(p, t, op, n, parse_pow(p));
    }
}

static tpl_node *parse_concat(parser *p)
{
    tpl_node *first = parse_math2(p);
    if (!is_op(cur(p), "~")) return first;
    tpl_node *n = mk(p, E_CONCAT, cur(p));
    nvec v = {0};
    nvec_push(p, &v, first, NULL, NULL);
    while (is_op(cur(p), "~")) {
        next(p);
        nvec_push(p, &v, parse_math2(p), NULL, NULL);
    }
    n->args = v.v;
    n->n_args = v.n;
    return n;
}

static tpl_node *parse_math1(parser *p)
{
    tpl_node *n = parse_concat(p);
    for (;;) {
        tok *t = cur(p);
        int op = is_op(t, "+") ? OP_ADD : is_op(t, "-") ? OP_SUB : 0;
        if (!op) return n;
        next(p);
        n = binop(p, t, op, n, parse_concat(p));
    }
}

static tpl_node *parse_compare(parser *p)
{
    tok *t0 = cur(p);
    tpl_node *first = parse_math1(p);
    nvec v = {0};
    uint8_t ops[64];
    size_t n_ops = 0;
    for (;;) {
        tok *t = cur(p);
        int op = 0;
        if (is_op(t, "=="))
            op = OP_EQ;
        else if (is_op(t, "!="))
            op = OP_NE;
        else if (is_op(t, "<"))
            op = OP_LT;
        else if (is_op(t, "<="))
            op = OP_LE;
        else if (is_op(t, ">"))
            op = OP_GT;
        else if (is_op(t, ">="))
            op = OP_GE;
        else if (is_name(t, "in"))
            op = OP_IN;
        else if (is_name(t, "not") && is_name(peek(p, 1), "in")) {
            op = OP_NOTIN;
            next(p);
        }
        if (!op) break;
        next(p);
        if (n_ops == sizeof ops) fail_tok(p, t, "too many chained comparisons");
        if (!v.n) nvec_push(p, &v, first, NULL, NULL);
        ops[n_ops++] = (uint8_t)op;
        nvec_push(p, &v, parse_math1(p), NULL, NULL);
    }
    if (!n_ops) return first;
    tpl_node *n = mk(p, E_CMP, t0);
    n->args = v.v;
    n->n_args = v.n;
    n->ops = palloc(p, n_ops);
    memcpy(n->ops, ops, n_ops);
    return n;
}

static tpl_node *parse_not(parser *p)
{
    tok *t = cur(p);
    if (is_name(t, "not")) {
        ENTER(p, t);
        next(p);
        tpl_node *n = mk(p, E_NOT, t);
        n->a = parse_not(p);
        LEAVE(p);
        return n;
    }
    return parse_compare(p);
}

static tpl_node *parse_and(parser *p)
{
    tpl_node *n = parse_not(p);
    while (is_name(cur(p), "and")) {
        tok *t = next(p);
        tpl_node *x = mk(p, E_AND, t);
        x->a = n;
        x->b = parse_not(p);
        n = x;
    }
    return n;
}

static tpl_node *parse_or(parser *p)
{
    tpl_node *n = parse_and(p);
    while (is_name(cur(p), "or")) {
        tok *t = next(p);
        tpl_node *x = mk(p, E_OR, t);
        x->a = n;
        x->b = parse_and(p);
        n = x;
    }
    return n;
}

static tpl_node *parse_condexpr(parser *p)
{
    tok *t0 = cur(p);
    ENTER(p, t0);
    tpl_node *n = parse_or(p);
    while (is_name(cur(p), "if")) {
        tok *t = next(p);
        tpl_node *c = mk(p, E_COND, t);
        c->b = n;
        c->a = parse_or(p);
        if (is_name(cur(p), "else")) {
            next(p);
            c->c = parse_condexpr(p);
        }
        n = c;
    }
    LEAVE(p);
    return n;
}

static tpl_node *parse_expression(parser *p, bool with_condexpr)
{
    return with_condexpr ? parse_condexpr(p) : parse_or(p);
}

static bool tuple_ends(parser *p, bool explicit_parens)
{
    tok *t = cur(p);
    if (t->type == TK_VAR_END || t->type == TK_BLOCK_END || t->type == TK_EOF) return true;
    if (explicit_parens && is_op(t, ")")) return true;
    return false;
}

static tpl_node *parse_tuple(parser *p, bool with_condexpr, bool explicit_parens)
{
    tok *t0 = cur(p);
    nvec v = {0};
    bool comma = false;
    for (;;) {
        if (v.n) expect_op(p, ",");
        if (tuple_ends(p, explicit_parens)) break;
        nvec_push(p, &v, parse_expression(p, with_condexpr), NULL, NULL);
        if (is_op(cur(p), ","))
            comma = true;
        else
            break;
    }
    if (!comma) {
        if (v.n) return v.v[0];
        if (!explicit_parens) fail_tok(p, t0, "expected an expression, got %s", tok_desc(t0));
    }
    tpl_node *n = mk(p, E_TUPLE, t0);
    n->args = v.v;
    n->n_args = v.n;
    return n;
}

/* for / set targets: a name, `ns.attr` (set only), or names separated by commas. */
static tpl_node *parse_assign_target(parser *p, bool with_namespace)
{
    tok *t0 = cur(p);
    bool parens = is_op(t0, "(");
    if (parens) next(p);
    nvec v = {0};
    for (;;) {
        tok *t = cur(p);
        if (t->type != TK_NAME) fail_tok(p, t, "expected a variable name, got %s", tok_desc(t));
        next(p);
        if (with_namespace && !v.n && !parens && is_op(cur(p), ".")) {
            next(p);
            tpl_node *n = mk(p, E_ATTR, t);
            n->a = mk(p, E_NAME, t);
            n->a->name = t->p;
            n->name = expect_name(p);
            return n;
        }
        if (!strcmp(t->p, "true") || !strcmp(t->p, "false") || !strcmp(t->p, "none") ||
            !strcmp(t->p, "loop") || !strcmp(t->p, "True") || !strcmp(t->p, "False") ||
            !strcmp(t->p, "None"))
            fail_tok(p, t, "cannot assign to '%s'", t->p);
        tpl_node *n = mk(p, E_NAME, t);
        n->name = t->p;
        nvec_push(p, &v, n, NULL, NULL);
        if (!is_op(cur(p), ",")) break;
        next(p);
        if (parens && is_op(cur(p), ")")) break;
    }
    if (parens) expect_op(p, ")");
    if (v.n == 1 && !parens) return v.v[0];
    tpl_node *n = mk(p, E_TUPLE, t0);
    n->args = v.v;
    n->n_args = v.n;
    return n;
}

/* ---- statements ---- */

/* Parses statements until a `{% name %}` whose name is in ends (NULL-terminated) and returns them;
 * the parser is left on that name. */
static void parse_body(parser *p, const char *const *ends, tpl_node ***out, size_t *n_out,
                       const tok *opener);

static tpl_node *parse_statement(parser *p);

static const char *at_end_name(parser *p, const char *const *ends)
{
    tok *t = cur(p);
    if (t->type != TK_BLOCK_BEGIN) return NULL;
    tok *u = peek(p, 1);
    if (u->type != TK_NAME) return NULL;
    for (size_t i = 0; ends && ends[i]; i++)
        if (!strcmp(u->p, ends[i])) return ends[i];
    return NULL;
}

static void parse_body(parser *p, const char *const *ends, tpl_node ***out, size_t *n_out,
                       const tok *opener)
{
    ENTER(p, opener);
    nvec v = {0};
    for (;;) {
        tok *t = cur(p);
        if (t->type == TK_EOF) {
            if (ends) {
                fail_at(p, NURI_ERR_FORMAT, opener->line, opener->col,
                        "unexpected end of template: '%s' is never closed (expected '%s')",
                        opener->p ? opener->p : "block", ends[0]);
            }
            break;
        }
        if (t->type == TK_DATA) {
            next(p);
            tpl_node *n = mk(p, N_TEXT, t);
            n->name = t->p;
            n->len = t->n;
            nvec_push(p, &v, n, NULL, NULL);
        } else if (t->type == TK_VAR_BEGIN) {
            next(p);
            tpl_node *n = mk(p, N_OUTPUT, t);
            n->a = parse_tuple(p, true, false);
            tok *e = cur(p);
            if (e->type != TK_VAR_END) fail_tok(p, e, "expected '}}', got %s", tok_desc(e));
            next(p);
            nvec_push(p, &v, n, NULL, NULL);
        } else if (t->type == TK_BLOCK_BEGIN) {
            if (at_end_name(p, ends)) {
                next(p); // leave the parser on the name
                break;
            }
            tpl_node *n = parse_statement(p);
            if (n) nvec_push(p, &v, n, NULL, NULL);
        } else {
            fail_tok(p, t, "unexpected %s", tok_desc(t));
        }
    }
    *out = v.v;
    *n_out = v.n;
    LEAVE(p);
}

static tpl_node *parse_if(parser *p, tok *t)
{
    static const char *const ends[] = {"elif", "else", "endif", NULL};
    tpl_node *n = mk(p, N_IF, t);
    n->a = parse_tuple(p, true, false);
    expect_block_end(p, "if");
    parse_body(p, ends, &n->body, &n->n_body, t);
    tok *e = next(p);
    if (!strcmp(e->p, "elif")) {
        tpl_node *sub = parse_if(p, e);
        n->alt = palloc(p, sizeof *n->alt);
        n->alt[0] = sub;
        n->n_alt = 1;
        return n;
    }
    if (!strcmp(e->p, "else")) {
        static const char *const ends2[] = {"endif", NULL};
        expect_block_end(p, "else");
        parse_body(p, ends2, &n->alt, &n->n_alt, t);
        next(p);
    }
    expect_block_end(p, "endif");
    return n;
}

static tpl_node *parse_for(parser *p, tok *t)
{
    static const char *const ends[] = {"else", "endfor", NULL};
    static const char *const ends2[] = {"endfor", NULL};
    tpl_node *n = mk(p, N_FOR, t);
    n->a = parse_assign_target(p, false);
    tok *in = cur(p);
    if (!is_name(in, "in")) fail_tok(p, in, "expected 'in' in for loop, got %s", tok_desc(in));
    next(p);
    n->b = parse_tuple(p, false, false);
    if (is_name(cur(p), "if")) {
        next(p);
        n->c = parse_expression(p, true);
    }
    if (is_name(cur(p), "recursive"))
        fail_at(p, NURI_ERR_UNSUPPORTED, cur(p)->line, cur(p)->col, "recursive for loops");
    expect_block_end(p, "for");
    parse_body(p, ends, &n->body, &n->n_body, t);
    tok *e = next(p);
    if (!strcmp(e->p, "else")) {
        expect_block_end(p, "else");
        parse_body(p, ends2, &n->alt, &n->n_alt, t);
        next(p);
    }
    expect_block_end(p, "endfor");
    return n;
}

static tpl_node *parse_filter_chain(parser *p)
{
    tpl_node *f = parse_filter(p, NULL);
    while (is_op(cur(p), "|")) {
        next(p);
        f = parse_filter(p, f);
    }
    return f;
}

static tpl_node *parse_set(parser *p, tok *t)
{
    tpl_node *target = parse_assign_target(p, true);
    if (is_op(cur(p), "=")) {
        next(p);
        tpl_node *n = mk(p, N_SET, t);
        n->a = target;
        n->b = parse_tuple(p, true, false);
        expect_block_end(p, "set");
        return n;
    }
    static const char *const ends[] = {"endset", NULL};
    tpl_node *n = mk(p, N_SETBLK, t);
    n->a = target;
    if (is_op(cur(p), "|")) {
        next(p);
        n->c = parse_filter_chain(p);
    }
    expect_block_end(p, "set");
    parse_body(p, ends, &n->body, &n->n_body, t);
    next(p);
    expect_block_end(p, "endset");
    return n;
}

/* A parameter list "(a, b=default, ...)" into n->args / kwv / n_args (after the '('). */
static void parse_params(parser *p, tpl_node *n)
{
    nvec v = {0};
    while (!is_op(cur(p), ")")) {
        if (v.n) expect_op(p, ",");
        if (is_op(cur(p), ")")) break;
        tok *a = cur(p);
        tpl_node *arg = mk(p, E_NAME, a);
        arg->name = expect_name(p);
        tpl_node *def = NULL;
        if (is_op(cur(p), "=")) {
            next(p);
            def = parse_expression(p, true);
        } else if (v.n && v.vals[v.n - 1]) {
            fail_tok(p, a, "non-default argument follows default argument");
        }
        nvec_push(p, &v, arg, NULL, def);
    }
    next(p);
    n->args = v.v;
    n->kwv = v.vals;
    n->n_args = v.n;
}

static tpl_node *parse_macro(parser *p, tok *t)
{
    static const char *const ends[] = {"endmacro", NULL};
    tpl_node *n = mk(p, N_MACRO, t);
    n->name = expect_name(p);
    expect_op(p, "(");
    parse_params(p, n);
    expect_block_end(p, "macro");
    size_t refs = p->caller_refs;
    parse_body(p, ends, &n->body, &n->n_body, t);
    n->op = p->caller_refs != refs; // reads caller: a {% call %} block may call it
    next(p);
    if (cur(p)->type == TK_NAME) next(p); // {% endmacro name %}
    expect_block_end(p, "endmacro");
    return n;
}

/* {% call[(params)] macro(args) %}body{% endcall %}: the body is a macro named caller, passed to
 * the called macro as the keyword argument caller. */
static tpl_node *parse_call(parser *p, tok *t)
{
    static const char *const ends[] = {"endcall", NULL};
    tpl_node *n = mk(p, N_CALLBLK, t);
    n->name = "caller";
    if (is_op(cur(p), "(")) {
        next(p);
        parse_params(p, n);
    }
    tok *at = cur(p);
    n->a = parse_expression(p, true);
    if (n->a->kind != E_CALL) fail_tok(p, at, "expected a call after 'call'");
    expect_block_end(p, "call");
    parse_body(p, ends, &n->body, &n->n_body, t);
    next(p);
    expect_block_end(p, "endcall");
    return n;
}

static tpl_node *parse_statement(parser *p)
{
    next(p); // '{%'
    tok *t = cur(p);
    if (t->type != TK_NAME) fail_tok(p, t, "expected a statement name, got %s", tok_desc(t));
    next(p);
    const char *s = t->p;
    if (!strcmp(s, "if")) return parse_if(p, t);
    if (!strcmp(s, "for")) return parse_for(p, t);
    if (!strcmp(s, "set")) return parse_set(p, t);
    if (!strcmp(s, "macro")) return parse_macro(p, t);
    if (!strcmp(s, "call")) return parse_call(p, t);
    if (!strcmp(s, "generation")) {
        // transformers' AssistantTracker extension: the body renders as it is (the tag only
        // marks the assistant's tokens for training masks)
        static const char *const ends[] = {"endgeneration", NULL};
        tpl_node *n = mk(p, N_IF, t);
        n->a = mk(p, E_CONST, t);
        n->a->val.t = TV_BOOL;
        n->a->val.b = true;
        expect_block_end(p, "generation");
        parse_body(p, ends, &n->body, &n->n_body, t);
        next(p);
        expect_block_end(p, "endgeneration");
        return n;
    }
    if (!strcmp(s, "break") || !strcmp(s, "continue")) {
        tpl_node *n = mk(p, s[0] == 'b' ? N_BREAK : N_CONTINUE, t);
        expect_block_end(p, s);
        return n;
    }
    if (!strcmp(s, "filter")) {
        static const char *const ends[] = {"endfilter", NULL};
        tpl_node *n = mk(p, N_FILTBLK, t);
        n->c = parse_filter_chain(p);
        expect_block_end(p, "filter");
        parse_body(p, ends, &n->body, &n->n_body, t);
        next(p);
        expect_block_end(p, "endfilter");
        return n;
    }
    static const char *const unsupported[] = {"include",    "import",   "from", "extends",
                                              "block",      "with",     "do",   "trans",
                                              "autoescape", "pluralize"};
    for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++)
        if (!strcmp(s, unsupported[i]))
            fail_at(p, NURI_ERR_UNSUPPORTED, t->line, t->col, "the '%s' statement is not supported",
                    s);
    fail_tok(p, t, "unknown statement '%s' (or a closing tag without its opening one)", s);
}

/* ---- entry ---- */

nuri_status tpl_parse(nuri_template *t, const char *src, size_t len)
{
    parser p = {0};
    p.t = t;
    p.a = &t->arena;
    p.lc_line = 1;
    int rc = setjmp(p.jb);
    if (rc) {
        free(p.toks);
        return (nuri_status)rc;
    }
    if (len > NURI_TEMPLATE_MAX_SOURCE)
        fail_at(&p, NURI_ERR_LIMIT, 1, 1, "template is %zu bytes, over the limit of %u", len,
                NURI_TEMPLATE_MAX_SOURCE);
    // check UTF-8 and normalize newlines (\r\n and \r -> \n), drop one trailing newline
    char *s = palloc(&p, len + 1);
    size_t n = 0;
    int line = 1, col = 1;
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)src[i];
        if (c < 0x80) {
            if (c == 0) fail_at(&p, NURI_ERR_FORMAT, line, col, "NUL byte in template");
            if (c == '\r') {
                s[n++] = '\n';
                i += (i + 1 < len && src[i + 1] == '\n') ? 2 : 1;
            } else {
                s[n++] = (char)c;
                i++;
            }
            if (s[n - 1] == '\n') {
                line++;
                col = 0;
            }
        } else {
            uint32_t cp;
            size_t l = tpl_utf8_decode(src + i, len - i, &cp);
            bool bad = cp == 0xfffd && !(l == 3 && (unsigned char)src[i] == 0xef);
            bad = bad || (l == 2 && cp < 0x80) || (l == 3 && cp < 0x800) ||
                  (l == 4 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp < 0xe000);
            if (bad) fail_at(&p, NURI_ERR_FORMAT, line, col, "invalid UTF-8 byte 0x%02x", c);
            memcpy(s + n, src + i, l);
            n += l;
            i += l;
        }
        col++;
    }
    if (n && s[n - 1] == '\n') n--;
    s[n] = 0;
    p.src = s;
    p.len = n;
    lex(&p);
    p.pos = 0;
    parse_body(&p, NULL, &t->body, &t->n_body, cur(&p));
    tok *e = cur(&p);
    if (e->type != TK_EOF) fail_tok(&p, e, "unexpected %s", tok_desc(e));
    free(p.toks);
    return NURI_OK;
}
