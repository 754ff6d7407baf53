/*
 * strbuf.c: the growing text buffer (strbuf.h).
 */
#include "base/strbuf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool nuri_sb_add(nuri_sb *b, const void *s, size_t n)
{
    if (b->oom) return false;
    if (n > SIZE_MAX / 4 - b->n) {
        b->oom = true;
        return false;
    }
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return false;
        }
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return true;
}

bool nuri_sb_str(nuri_sb *b, const char *s)
{
    return nuri_sb_add(b, s, strlen(s));
}

bool nuri_sb_fmt(nuri_sb *b, const char *fmt, ...)
{
    if (b->oom) return false;
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = true;
        return false;
    }
    if ((size_t)n < sizeof small) return nuri_sb_add(b, small, (size_t)n);
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->oom = true;
        return false;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    bool ok = nuri_sb_add(b, big, (size_t)n);
    free(big);
    return ok;
}

bool nuri_sb_ends(const nuri_sb *b, const char *lit)
{
    size_t n = strlen(lit);
    return n == 0 || (b->n >= n && !memcmp(b->p + b->n - n, lit, n));
}

bool nuri_sb_is(const nuri_sb *b, const char *lit)
{
    size_t n = strlen(lit);
    return b->n == n && (n == 0 || !memcmp(b->p, lit, n));
}

void nuri_sb_free(nuri_sb *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}
