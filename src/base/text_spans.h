/*
 * text_spans.h: byte ranges of a text. The chat template engine returns the ranges of a rendered
 * prompt that came from the caller's data (message contents, names, tools), and the tokenizer
 * takes them so that special-token text inside them stays ordinary text.
 */
#ifndef NURI_BASE_TEXT_SPANS_H
#define NURI_BASE_TEXT_SPANS_H

#include <stddef.h>
#include <stdlib.h>

typedef struct nuri_text_span {
    size_t off, len; // bytes
} nuri_text_span;

/* In order of offset, none empty, none overlapping. v is malloc'd (NULL when n is 0). */
typedef struct nuri_text_spans {
    nuri_text_span *v;
    size_t n;
} nuri_text_spans;

static inline void nuri_text_spans_free(nuri_text_spans *s)
{
    free(s->v);
    s->v = NULL;
    s->n = 0;
}

#endif
