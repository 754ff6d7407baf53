/*
 * gen.h: one generation request as the routes run it (routes.c), for routes built on the chat
 * pipeline with their own output format: the Responses API (responses.c). Private to src/serve/.
 *
 * gen_begin takes a chat-completions body (validated by serve_request_parse: the same limits,
 * errors and prompt safety), renders and tokenizes its prompt, builds its grammar, and submits it
 * to the scheduler. gen_step then hands over the reply as it grows, split by the reply parser into
 * content, reasoning and tool-call deltas (nuri_reply_parser), until it is done.
 */
#ifndef NURI_SERVE_GEN_H
#define NURI_SERVE_GEN_H

#include "chat/toolcall.h"
#include "serve/server.h"
#include "store/kv_snapshot.h"

typedef struct gen gen;

typedef struct gen_opts {
    bool always_parse; // split the reply with the reply parser even without tools or reasoning
                       // (so gen_step always gives deltas)
    nuri_kv_snapshot *kv_in; // a KV snapshot to start from (taken: zeroed), or NULL
    bool want_kv;            // keep the finished sequence's tokens and KV for gen_take_kv
} gen_opts;

/* Starts a request from body (stolen); o may be NULL. NULL on failure with e filled; e->http is 0
 * when the client went away and nothing is to be answered. */
gen *gen_begin(serve_server *s, conn *c, json_t *body, serve_kind kind, const gen_opts *o,
               double t_arrival, serve_error *e);

/* After done, with want_kv: the sequence's tokens and KV (moved to *out). False when there are
 * none (the request failed or was cut short). */
bool gen_take_kv(gen *g, nuri_kv_snapshot *out);
/* Where the prompt's KV came from (SERVE_KV_*), once the request was admitted. */
int gen_kv_source(const gen *g);

/* Waits at most timeout_ms for more of the reply. *d / *nd: what it added (borrowed until the next
 * call). *done: the reply is complete and every delta has been handed over (or it failed:
 * gen_error). False when the client went away (the request is cancelled). */
bool gen_step(gen *g, int timeout_ms, const nuri_reply_delta **d, size_t *nd, bool *done);

/* After done: the parsed reply, why it ended ("stop", "length", "tool_calls"), the usage. */
const nuri_reply *gen_reply(const gen *g);
const char *gen_finish(const gen *g);
void gen_usage(const gen *g, int32_t *prompt, int32_t *completion, int32_t *cached);
/* After done: whether it failed, and then the error to send (e). */
bool gen_error_of(const gen *g, serve_error *e);
/* The validated request. */
const serve_request *gen_request(const gen *g);

/* The client went away (a write failed): the request is cancelled and counted as a disconnect. */
void gen_cancel(gen *g);

void gen_end(gen *g); // frees (cancelling the request if it still runs)

#endif
