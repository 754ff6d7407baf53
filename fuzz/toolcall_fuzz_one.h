/*
 * toolcall_fuzz_one.h: one fuzz iteration for the reply parser (src/chat/toolcall.h), shared by
 * the libFuzzer target (fuzz_toolcall.c) and the corpus replay test
 * (tests/test_toolcall_fuzz_replay.c).
 *
 * Input: one byte of options, then the reply text. Options: bits 0-3 the format (modulo the
 * number of formats), bit 4 the prompt opened the reasoning, bit 5 <thought> tags instead of
 * <think>, bit 6 no tools (else two tools with typed parameters).
 *
 * The text is parsed whole, then fed in pieces whose sizes come from the text itself; the two
 * replies must be identical, the deltas put together must say exactly that reply (calls opened in
 * order, arguments only to the last call), every string must be as long as it says. Anything else
 * aborts. Returns the parse status (NURI_OK unless out of memory).
 */
#ifndef NURI_FUZZ_TOOLCALL_FUZZ_ONE_H
#define NURI_FUZZ_TOOLCALL_FUZZ_ONE_H

#include "chat/toolcall.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct toolcall_fuzz_acc {
    char *content, *reasoning; // concatenated deltas
    size_t nc, nr;
    size_t n_calls;
    char **name, **args, **id;
    size_t *na;
} toolcall_fuzz_acc;

static void toolcall_fuzz_append(char **dst, size_t *n, const char *s, size_t len)
{
    char *p = realloc(*dst, *n + len + 1);
    if (!p) abort();
    memcpy(p + *n, s, len);
    *n += len;
    p[*n] = 0;
    *dst = p;
}

static void toolcall_fuzz_take(toolcall_fuzz_acc *a, const nuri_reply_delta *d, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const nuri_reply_delta *e = &d[i];
        if (e->kind != NURI_DELTA_CALL && e->len == 0) abort();
        if (e->kind == NURI_DELTA_CONTENT) {
            toolcall_fuzz_append(&a->content, &a->nc, e->text, e->len);
        } else if (e->kind == NURI_DELTA_REASONING) {
            toolcall_fuzz_append(&a->reasoning, &a->nr, e->text, e->len);
        } else if (e->kind == NURI_DELTA_CALL) {
            if ((size_t)e->index != a->n_calls || !e->id || !e->len) abort();
            size_t k = a->n_calls++;
            a->name = realloc(a->name, a->n_calls * sizeof *a->name);
            a->args = realloc(a->args, a->n_calls * sizeof *a->args);
            a->id = realloc(a->id, a->n_calls * sizeof *a->id);
            a->na = realloc(a->na, a->n_calls * sizeof *a->na);
            if (!a->name || !a->args || !a->id || !a->na) abort();
            size_t z = 0;
            a->name[k] = a->args[k] = a->id[k] = NULL;
            toolcall_fuzz_append(&a->name[k], &z, e->text, e->len);
            z = 0;
            toolcall_fuzz_append(&a->id[k], &z, e->id, strlen(e->id));
            a->args[k] = NULL;
            a->na[k] = 0;
            toolcall_fuzz_append(&a->args[k], &a->na[k], "", 0);
        } else if (e->kind == NURI_DELTA_ARGS) {
            if (a->n_calls == 0 || (size_t)e->index != a->n_calls - 1) abort();
            toolcall_fuzz_append(&a->args[e->index], &a->na[e->index], e->text, e->len);
        } else {
            abort();
        }
    }
}

static void toolcall_fuzz_same(const nuri_reply *w, const nuri_reply *s, const toolcall_fuzz_acc *a)
{
    if (w->content_len != s->content_len || memcmp(w->content, s->content, w->content_len) ||
        strlen(w->content) > w->content_len || w->reasoning_len != s->reasoning_len ||
        memcmp(w->reasoning, s->reasoning, w->reasoning_len) || w->n_calls != s->n_calls ||
        (!w->error) != (!s->error) || (w->error && strcmp(w->error, s->error)))
        abort();
    if (a->nc != w->content_len || (a->nc && memcmp(a->content, w->content, a->nc)) ||
        a->nr != w->reasoning_len || (a->nr && memcmp(a->reasoning, w->reasoning, a->nr)) ||
        a->n_calls != w->n_calls)
        abort();
    for (size_t i = 0; i < w->n_calls; i++) {
        const nuri_toolcall *x = &w->calls[i], *y = &s->calls[i];
        if (strcmp(x->id, y->id) || strcmp(x->name, y->name) ||
            x->arguments_len != y->arguments_len ||
            memcmp(x->arguments, y->arguments, x->arguments_len) ||
            x->arguments[x->arguments_len] || strcmp(a->id[i], x->id) ||
            strcmp(a->name[i], x->name) || a->na[i] != x->arguments_len ||
            memcmp(a->args[i], x->arguments, a->na[i]))
            abort();
    }
}

static nuri_status toolcall_fuzz_one(const uint8_t *data, size_t size)
{
    static json_t *tools;
    if (!tools)
        tools = json_loads("[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", "
                           "\"parameters\": {\"type\": \"object\", \"properties\": {\"city\": "
                           "{\"type\": \"string\"}, \"days\": {\"type\": \"integer\"}}}}}, "
                           "{\"type\": \"function\", \"function\": {\"name\": \"f\"}}]",
                           0, NULL);
    if (size == 0) return NURI_OK;
    uint8_t opt = data[0];
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    nuri_reply_opts o = {
        .syntax = {(nuri_toolcall_format)((opt & 15) % NURI_TOOLCALL_N_FORMATS),
                   opt & 32 ? "<thought>" : "<think>", opt & 32 ? "</thought>" : "</think>"},
        .in_reasoning = (opt & 16) != 0,
        .tools = opt & 64 ? NULL : tools,
        .id_seed = size,
    };
    nuri_reply whole;
    nuri_status st = nuri_reply_parse(&o, text, len, &whole);
    if (st != NURI_OK) return st;
    nuri_reply_parser *p;
    if ((st = nuri_reply_parser_new(&o, &p)) != NURI_OK) {
        nuri_reply_free(&whole);
        return st;
    }
    toolcall_fuzz_acc acc = {0};
    const nuri_reply_delta *d;
    size_t n;
    uint32_t x = (uint32_t)size * 2654435761u;
    for (size_t at = 0; at < len && st == NURI_OK;) {
        x = x * 1103515245u + 12345u;
        size_t piece = 1 + (x >> 16) % 7;
        if (piece > len - at) piece = len - at;
        st = nuri_reply_parser_feed(p, text + at, piece, &d, &n);
        if (st == NURI_OK) toolcall_fuzz_take(&acc, d, n);
        at += piece;
    }
    if (st == NURI_OK && (st = nuri_reply_parser_finish(p, &d, &n)) == NURI_OK) {
        toolcall_fuzz_take(&acc, d, n);
        toolcall_fuzz_same(&whole, nuri_reply_parser_reply(p), &acc);
    }
    for (size_t i = 0; i < acc.n_calls; i++) {
        free(acc.name[i]);
        free(acc.args[i]);
        free(acc.id[i]);
    }
    free(acc.name);
    free(acc.args);
    free(acc.id);
    free(acc.na);
    free(acc.content);
    free(acc.reasoning);
    nuri_reply_parser_free(p);
    nuri_reply_free(&whole);
    return st;
}

#endif
