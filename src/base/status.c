/*
 * status.c: the thread-local error message behind nuri_last_error(), and the always-on assert.
 */
#include "base/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NURI_ERROR_MAX 1024 // bytes, including the terminating NUL

static _Thread_local char error_msg[NURI_ERROR_MAX];

nuri_status nuri_error(nuri_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error_msg, sizeof error_msg, fmt, ap);
    va_end(ap);
    return s;
}

nuri_status nuri_error_wrap(nuri_status s, const char *fmt, ...)
{
    char prefix[NURI_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(prefix, sizeof prefix - 2, fmt, ap);
    va_end(ap);
    if (n < 0) return s;
    size_t plen = strlen(prefix);
    memcpy(prefix + plen, ": ", 3);
    plen += 2;
    // move the old message right by plen (truncating its end), then put the prefix in front
    size_t olen = strnlen(error_msg, sizeof error_msg - 1);
    if (plen + olen > sizeof error_msg - 1) olen = sizeof error_msg - 1 - plen;
    memmove(error_msg + plen, error_msg, olen);
    memcpy(error_msg, prefix, plen);
    error_msg[plen + olen] = 0;
    return s;
}

const char *nuri_last_error(void)
{
    return error_msg;
}

const char *nuri_status_name(nuri_status s)
{
    switch (s) {
    case NURI_OK:
        return "ok";
    case NURI_ERR_INVALID_ARG:
        return "invalid argument";
    case NURI_ERR_IO:
        return "i/o error";
    case NURI_ERR_NOMEM:
        return "out of memory";
    case NURI_ERR_FORMAT:
        return "malformed input";
    case NURI_ERR_UNSUPPORTED:
        return "unsupported";
    case NURI_ERR_LIMIT:
        return "limit exceeded";
    case NURI_ERR_NOT_FOUND:
        return "not found";
    case NURI_ERR_UNAVAILABLE:
        return "unavailable";
    case NURI_ERR_CANCELLED:
        return "cancelled";
    }
    return "unknown status";
}

void nuri_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "nuri: internal error: assertion '%s' failed at %s:%d\n", expr, file, line);
    abort();
}
