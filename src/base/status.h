/*
 * status.h: how nuri reports failure.
 *
 * Library code never prints and never exits. A function that can fail returns a nuri_status and,
 * on failure, leaves a message a user can act on in a thread-local buffer (nuri_last_error()).
 * A broken internal invariant (a bug, never bad input) hits NURI_ASSERT, which is always on and
 * names file:line.
 */
#ifndef NURI_BASE_STATUS_H
#define NURI_BASE_STATUS_H

#include "nuri.h"

#include <stddef.h>
#include <stdint.h>

/* Sets the thread's error message (printf-style) and returns s, so that callers can write
 * `return nuri_error(NURI_ERR_FORMAT, "tensor '%s': ...", name);`. */
nuri_status nuri_error(nuri_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prepends "context: " to the current message (for adding a file name or key at an outer level).
 * Returns s unchanged. */
nuri_status nuri_error_wrap(nuri_status s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void nuri_assert_fail(const char *expr, const char *file, int line) __attribute__((noreturn));
#define NURI_ASSERT(x) ((x) ? (void)0 : nuri_assert_fail(#x, __FILE__, __LINE__))

/* Overflow-checked arithmetic for sizes read from untrusted input: return 1 on overflow. */
static inline int nuri_mul_overflow(uint64_t a, uint64_t b, uint64_t *out)
{
    return __builtin_mul_overflow(a, b, out);
}
static inline int nuri_add_overflow(uint64_t a, uint64_t b, uint64_t *out)
{
    return __builtin_add_overflow(a, b, out);
}

#endif
