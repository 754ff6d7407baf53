/*
 * http_parse.c: HTTP/1.x request heads and chunked bodies (see http_parse.h).
 *
 * Grammar (RFC 9112), strictly where leniency could let two readers disagree about where a request
 * ends: lines end in CRLF or a bare LF; the request line is METHOD SP TARGET SP HTTP/1.x; header
 * names are tokens with no blank before the colon; values hold no control bytes but tab; folded
 * lines (obs-fold) are refused.
 */
#include "serve/http_parse.h"

#include <string.h>
#include <strings.h>

/* ============================== heads ============================== */

static bool is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* The end of the line starting at p (pointing at its '\n'), or NULL when it has not ended yet. */
static const char *line_end(const char *p, const char *end)
{
    return memchr(p, '\n', (size_t)(end - p));
}

long http_parse_head(const char *buf, size_t len, http_head *h, const char **why)
{
    const char *p = buf, *end = buf + len;
    h->n_headers = 0;
    *why = "malformed request";
    // the request line (RFC 9112 2.2: a recipient may skip empty lines before it; we do not)
    const char *nl = line_end(p, end);
    if (!nl) {
        // refuse an obviously wrong start early, so garbage is not buffered up to the head limit
        for (const char *q = p; q < end && *q != ' '; q++)
            if (!is_tchar((unsigned char)*q))
                return *why = "malformed request line", HTTP_MALFORMED;
        return HTTP_INCOMPLETE;
    }
    const char *le = nl > p && nl[-1] == '\r' ? nl - 1 : nl;
    const char *q = p;
    while (q < le && is_tchar((unsigned char)*q)) q++;
    if (q == p || q >= le || *q != ' ') return *why = "malformed request line", HTTP_MALFORMED;
    h->method = p;
    h->method_len = (size_t)(q - p);
    p = ++q;
    while (q < le && (unsigned char)*q > ' ' && *q != 0x7f) q++;
    if (q == p || q >= le || *q != ' ') return *why = "malformed request target", HTTP_MALFORMED;
    h->target = p;
    h->target_len = (size_t)(q - p);
    if (h->target[0] != '/' && !(h->target_len == 1 && h->target[0] == '*'))
        return *why = "the request target must start with '/'", HTTP_MALFORMED;
    p = q + 1;
    if (le - p != 8 || memcmp(p, "HTTP/1.", 7) || (p[7] != '0' && p[7] != '1'))
        return *why = "unsupported HTTP version (HTTP/1.0 and HTTP/1.1 are served)", HTTP_MALFORMED;
    h->minor = p[7] - '0';
    p = nl + 1;
    // header lines up to the blank one
    for (;;) {
        if (p >= end) return HTTP_INCOMPLETE;
        if (*p == '\n') return (long)(p + 1 - buf);
        if (*p == '\r') {
            if (p + 1 >= end) return HTTP_INCOMPLETE;
            if (p[1] != '\n') return *why = "malformed header line", HTTP_MALFORMED;
            return (long)(p + 2 - buf);
        }
        if (*p == ' ' || *p == '\t')
            return *why = "folded header lines are not accepted", HTTP_MALFORMED;
        nl = line_end(p, end);
        if (!nl) {
            for (const char *r = p; r < end && *r != ':'; r++)
                if (!is_tchar((unsigned char)*r))
                    return *why = "malformed header name", HTTP_MALFORMED;
            return HTTP_INCOMPLETE;
        }
        le = nl > p && nl[-1] == '\r' ? nl - 1 : nl;
        q = p;
        while (q < le && is_tchar((unsigned char)*q)) q++;
        if (q == p || q >= le || *q != ':') return *why = "malformed header name", HTTP_MALFORMED;
        if (h->n_headers == HTTP_MAX_HEADERS)
            return *why = "too many header lines (at most 64)", HTTP_MALFORMED;
        http_header *hd = &h->headers[h->n_headers++];
        hd->name = p;
        hd->name_len = (size_t)(q - p);
        q++;
        while (q < le && (*q == ' ' || *q == '\t')) q++;
        const char *ve = le;
        while (ve > q && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
        for (const char *r = q; r < ve; r++) {
            unsigned char c = (unsigned char)*r;
            if ((c < ' ' && c != '\t') || c == 0x7f)
                return *why = "a control character in a header value", HTTP_MALFORMED;
        }
        hd->value = q;
        hd->value_len = (size_t)(ve - q);
        p = nl + 1;
    }
}

const http_header *http_head_find(const http_head *h, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < h->n_headers; i++)
        if (h->headers[i].name_len == n && !strncasecmp(h->headers[i].name, name, n))
            return &h->headers[i];
    return NULL;
}

bool http_value_has_token(const char *value, size_t len, const char *token)
{
    size_t tl = strlen(token), i = 0;
    while (i < len) {
        while (i < len && (value[i] == ' ' || value[i] == '\t' || value[i] == ',')) i++;
        size_t s = i;
        while (i < len && value[i] != ',') i++;
        size_t e = i;
        while (e > s && (value[e - 1] == ' ' || value[e - 1] == '\t')) e--;
        if (e - s == tl && !strncasecmp(value + s, token, tl)) return true;
    }
    return false;
}

/* A plain decimal of at most 18 digits (no sign, no blanks); -1 otherwise. */
static int64_t parse_length(const char *s, size_t n)
{
    if (n == 0 || n > 18) return -1;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

bool http_head_framing(const http_head *h, http_framing *f, int *status, const char **why)
{
    *f = (http_framing){.content_length = 0, .keep_alive = h->minor == 1};
    *status = 400;
    bool have_cl = false, have_te = false;
    for (size_t i = 0; i < h->n_headers; i++) {
        const http_header *hd = &h->headers[i];
        if (hd->name_len == 14 && !strncasecmp(hd->name, "Content-Length", 14)) {
            int64_t v = parse_length(hd->value, hd->value_len);
            if (v < 0) {
                *why = "Content-Length is not a plain decimal number of bytes";
                return false;
            }
            if (have_cl && v != f->content_length) {
                *why = "two Content-Length headers with different values";
                return false;
            }
            have_cl = true;
            f->content_length = v;
        } else if (hd->name_len == 17 && !strncasecmp(hd->name, "Transfer-Encoding", 17)) {
            if (have_te || hd->value_len != 7 || strncasecmp(hd->value, "chunked", 7)) {
                *status = 501;
                *why = "only 'Transfer-Encoding: chunked' is supported";
                return false;
            }
            have_te = true;
        } else if (hd->name_len == 10 && !strncasecmp(hd->name, "Connection", 10)) {
            if (http_value_has_token(hd->value, hd->value_len, "close")) f->keep_alive = false;
            if (http_value_has_token(hd->value, hd->value_len, "keep-alive")) f->keep_alive = true;
        } else if (hd->name_len == 6 && !strncasecmp(hd->name, "Expect", 6)) {
            if (hd->value_len != 12 || strncasecmp(hd->value, "100-continue", 12)) {
                *status = 417;
                *why = "only 'Expect: 100-continue' is supported";
                return false;
            }
            f->expect_continue = true;
        }
    }
    if (have_cl && have_te) {
        *why = "Content-Length and Transfer-Encoding together";
        return false;
    }
    if (have_te) {
        if (h->minor == 0) {
            *why = "Transfer-Encoding in an HTTP/1.0 request";
            return false;
        }
        f->chunked = true;
        f->content_length = -1;
    }
    return true;
}

/* ============================== chunked bodies ============================== */

enum {
    CH_SIZE,    // hex digits of a chunk size
    CH_EXT,     // a chunk extension, skipped to the end of the line
    CH_SIZE_LF, // after the size line's CR
    CH_DATA,    // chunk data
    CH_DATA_CR, // the CRLF after the data
    CH_DATA_LF,
    CH_TRAILER,    // start of a trailer line (or of the final blank line)
    CH_TRAILER_IN, // inside a trailer line
    CH_END_LF,     // after the final blank line's CR
    CH_DONE,
};

#define CHUNK_LINE_MAX 4096 // bytes of a size line or a trailer line

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int http_chunked_decode(http_chunked *c, char *buf, size_t len, size_t max_body, const char **why)
{
    *why = "malformed chunked body";
    while (c->in < len) {
        char ch = buf[c->in];
        switch (c->state) {
        case CH_SIZE: {
            int v = hexval(ch);
            if (v >= 0) {
                if (c->line_len >= 15) return *why = "a chunk size is too large", HTTP_MALFORMED;
                c->left = c->left * 16 + (uint64_t)v;
                c->line_len++;
                c->in++;
                break;
            }
            if (c->line_len == 0) return HTTP_MALFORMED;
            if (ch == ';' || ch == ' ' || ch == '\t') {
                c->state = CH_EXT;
            } else if (ch == '\r') {
                c->state = CH_SIZE_LF;
            } else if (ch == '\n') {
                goto size_done;
            } else {
                return HTTP_MALFORMED;
            }
            c->in++;
            break;
        }
        case CH_EXT:
            if (++c->line_len > CHUNK_LINE_MAX) return HTTP_MALFORMED;
            if (ch == '\n') goto size_done;
            if ((unsigned char)ch < ' ' && ch != '\t' && ch != '\r') return HTTP_MALFORMED;
            c->in++;
            break;
        case CH_SIZE_LF:
            if (ch != '\n') return HTTP_MALFORMED;
        size_done:
            c->in++;
            c->line_len = 0;
            if (c->left > max_body || c->out + c->left > max_body)
                return *why = "the request body is too large", HTTP_MALFORMED;
            c->state = c->left ? CH_DATA : CH_TRAILER;
            break;
        case CH_DATA: {
            size_t n = len - c->in;
            if (n > c->left) n = (size_t)c->left;
            memmove(buf + c->out, buf + c->in, n);
            c->out += n;
            c->in += n;
            c->left -= n;
            if (!c->left) c->state = CH_DATA_CR;
            break;
        }
        case CH_DATA_CR:
            if (ch == '\n') {
                c->in++;
                c->state = CH_SIZE;
                break;
            }
            if (ch != '\r') return HTTP_MALFORMED;
            c->in++;
            c->state = CH_DATA_LF;
            break;
        case CH_DATA_LF:
            if (ch != '\n') return HTTP_MALFORMED;
            c->in++;
            c->state = CH_SIZE;
            break;
        case CH_TRAILER:
            c->in++;
            if (ch == '\n') return c->state = CH_DONE, 1;
            if (ch == '\r') {
                c->state = CH_END_LF;
            } else {
                c->state = CH_TRAILER_IN;
                c->line_len = 1;
            }
            break;
        case CH_TRAILER_IN:
            c->in++;
            if (++c->line_len > CHUNK_LINE_MAX) return HTTP_MALFORMED;
            if (ch == '\n') c->state = CH_TRAILER, c->line_len = 0;
            break;
        case CH_END_LF:
            if (ch != '\n') return HTTP_MALFORMED;
            c->in++;
            return c->state = CH_DONE, 1;
        case CH_DONE:
            return 1;
        }
    }
    return c->state == CH_DONE ? 1 : 0;
}
