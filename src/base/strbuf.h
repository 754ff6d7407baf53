/*
 * strbuf.h: a growing NUL-terminated text (or byte) buffer, the one builder the grammar,
 * tool-call and metrics code write into. Out of memory is sticky: after a failed append `oom` is
 * set, later appends do nothing, and the caller checks `oom` once at the end.
 */
#ifndef NURI_BASE_STRBUF_H
#define NURI_BASE_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

typedef struct nuri_sb {
    char *p;       // NULL until the first append, then always NUL-terminated
    size_t n, cap; // bytes held (without the NUL), bytes allocated
    bool oom;      // an append failed: the text is incomplete
} nuri_sb;

/* Appends s[0..n) (any bytes, NULs included); false when out of memory (then oom is set). */
bool nuri_sb_add(nuri_sb *b, const void *s, size_t n);
bool nuri_sb_str(nuri_sb *b, const char *s);
bool nuri_sb_fmt(nuri_sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Whether the text ends with / is exactly the NUL-terminated lit. */
bool nuri_sb_ends(const nuri_sb *b, const char *lit);
bool nuri_sb_is(const nuri_sb *b, const char *lit);
/* Frees the text and empties b (oom cleared). */
void nuri_sb_free(nuri_sb *b);

#endif
