/*
 * store.h: the conversation store. Responses (OpenAI's Responses API) and conversations (its
 * Conversations API) kept in one SQLite file, or in a PostgreSQL database that several server
 * replicas share, so that a follow-up turn can name its predecessor (`previous_response_id`) or
 * its conversation and the server can rebuild the history, across restarts, crashes and replicas.
 *
 * What it is: objects as JSON (jansson) in, the same JSON out, with the columns the routes query
 * (id, owner, order, links) kept beside the JSON. What it is not: a validator of requests (the
 * server checks shapes and sizes first), nor a renderer of prompts (it hands back items in order).
 *
 * Invariants the server relies on:
 *   - Durable on return. A call that writes returns NURI_OK only after its transaction is
 *     committed with synchronous=FULL in WAL mode (SQLite) or flushed to PostgreSQL's WAL: the
 *     write survives kill -9 of the process and a power loss. Acknowledge to the client after the
 *     call returns, never before.
 *   - Two backends, one behaviour: the same calls, schema, migrations and errors on SQLite and
 *     PostgreSQL (tests/test_store.c runs on both). With PostgreSQL, a call made while the
 *     database cannot be reached fails with NURI_ERR_UNAVAILABLE, and the next call reconnects.
 *   - Owned. Every object has an owner string (the server passes a hash of the caller's API key, or
 *     "" when it has no keys). Every call takes the caller's owner; an object of another owner
 *     behaves exactly as a missing one: NURI_ERR_NOT_FOUND with the same message, in lists too.
 *   - Thread-safe. One nuri_store is shared by all worker threads: each call borrows one of a
 *     small pool of connections (readers run side by side, also beside a writer, thanks to WAL);
 *     writers take turns on a mutex, so threads of one process never wait in SQLite's busy loop
 *     (on PostgreSQL, writers of every replica take turns on an advisory lock).
 *     The busy timeout is for another process on the same file (`nuri chat` beside `nuri serve`).
 *     Calls block on disk (a commit is an fsync): call them from request workers, never from the
 *     scheduler's decode loop.
 *
 * Every JSON pointer handed back is a new reference: the caller frees it with json_decref(). JSON
 * passed in is borrowed and never changed.
 */
#ifndef NURI_STORE_H
#define NURI_STORE_H

#include "nuri.h"

#include <jansson.h>
#include <stdint.h>

typedef struct nuri_store nuri_store;

#define NURI_STORE_ID_MAX 96      // bytes with the NUL: the longest id the store makes or accepts
#define NURI_STORE_LIST_MAX 100   // most objects in one page of a list (OpenAI's limit)
#define NURI_STORE_CHAIN_MAX 1000 // responses: a sensible max_depth for nuri_store_response_chain

/* ======================================================================== lifecycle */

typedef struct nuri_store_params {
    int n_conns;         // pooled SQLite connections (readers in parallel); 0: 4
    int busy_timeout_ms; // how long to wait for another process's write lock; 0: 5000
} nuri_store_params;

/* Opens the store `name`: "postgresql://..." (or "postgres://...": a libpq URL) is a PostgreSQL
 * database, reached by n_conns connections; "sqlite:PATH" or a plain PATH an SQLite file, created
 * if needed (mode 0600), whose directory must exist. A database at an older schema version is
 * migrated, one transaction per step (on PostgreSQL under a lock, so replicas starting together
 * migrate once); one written by a newer nuri is refused (NURI_ERR_UNSUPPORTED), and a file or
 * database that is not a nuri store or is corrupt is NURI_ERR_FORMAT, each with a message that
 * names the store (a URL without its password). A PostgreSQL server that cannot be reached is
 * NURI_ERR_UNAVAILABLE. params may be NULL. Caller frees the store with nuri_store_close. */
nuri_status nuri_store_open(const char *name, const nuri_store_params *params, nuri_store **out);

/* The store's name for messages and logs: the SQLite file, or the URL without its password.
 * Borrowed until nuri_store_close. */
const char *nuri_store_name(const nuri_store *s);

/* NURI_OK when the store can be used now (a PostgreSQL connection is up, or was re-established);
 * NURI_ERR_UNAVAILABLE otherwise. Costs no round trip when the connection is up. */
nuri_status nuri_store_check(nuri_store *s);

/* Closes every connection (the last close checkpoints the WAL). NULL is allowed. No call may be
 * running in another thread. */
void nuri_store_close(nuri_store *s);

/* The default store file: $XDG_DATA_HOME/nuri/nuri.db, or ~/.local/share/nuri/nuri.db when
 * XDG_DATA_HOME is unset or not absolute. Creates the missing directories (mode 0700). Caller frees
 * *out with free(). */
nuri_status nuri_store_default_path(char **out);

/* A new random id: prefix, '_', 48 hex digits (192 bits from getrandom), e.g. "resp_3f9c...".
 * The server makes a response's id with it before generating (the stream announces it first), and
 * the ids of the output items it streams ("msg", "fc", "rs"). prefix: at most 16 characters. */
nuri_status nuri_store_new_id(const char *prefix, char out[NURI_STORE_ID_MAX]);

/* ======================================================================== lists */

typedef enum nuri_store_order {
    NURI_STORE_DESC = 0, // newest (or last) first: OpenAI's default for these lists
    NURI_STORE_ASC,
} nuri_store_order;

/* A page request, as OpenAI's list endpoints take it. after: the id of the last object of the
 * previous page (NULL: from the start), an id not in the list is NURI_ERR_INVALID_ARG; limit:
 * 1..NURI_STORE_LIST_MAX. Pages come back as the endpoint's JSON:
 * {"object":"list","data":[...],"first_id":...,"last_id":...,"has_more":bool} (ids null when
 * data is empty). */
typedef struct nuri_store_page {
    const char *after;
    int limit;
    nuri_store_order order;
} nuri_store_page;

/* ======================================================================== responses */

/* Stores a finished Response object and the input items it was made from, in one transaction.
 * response: the object exactly as the server returned it to the client ("id", "created_at",
 * "model", "status", "output" required; "previous_response_id" and "conversation": {"id"} are
 * read when present). input: an array of item objects (OpenAI input items, e.g. a message
 * {"type":"message","role":"user","content":[...]}, a function_call_output); NULL for none.
 * Input items without an "id" get one ("msg_...", "fc_...", ...); output items must have theirs
 * (the server made them with nuri_store_new_id, to stream them). The previous response and the
 * conversation must exist and belong to owner (else NURI_ERR_NOT_FOUND, nothing stored); with a
 * conversation, the input items and then the output items are appended to it in the same
 * transaction (an item id the conversation already holds is NURI_ERR_INVALID_ARG, as in
 * nuri_store_conversation_items_add). An id already stored is NURI_ERR_INVALID_ARG. */
nuri_status nuri_store_response_put(nuri_store *s, const char *owner, const json_t *response,
                                    const json_t *input);

/* GET /v1/responses/{id}: the Response object as stored. */
nuri_status nuri_store_response_get(nuri_store *s, const char *owner, const char *id,
                                    json_t **response);

/* DELETE /v1/responses/{id}: removes the response and its input items. Items it added to a
 * conversation stay there (they are the conversation's). A later response that named this one
 * as previous keeps working; its chain now starts after the gap. */
nuri_status nuri_store_response_delete(nuri_store *s, const char *owner, const char *id);

/* GET /v1/responses/{id}/input_items: one page of the input items, in request order (ASC) or
 * reverse (DESC). */
nuri_status nuri_store_response_input_items(nuri_store *s, const char *owner, const char *id,
                                            const nuri_store_page *page, json_t **list);

/* POST /v1/responses with previous_response_id = id: the history to render before the new
 * input, as one array of items in conversation order: for each response from the oldest to id,
 * its input items, then its output items. Instructions are not part of it (OpenAI does not carry
 * them over). The walk follows previous_response_id through responses of this owner only, and
 * stops at a deleted one; more than max_depth responses is NURI_ERR_LIMIT, a loop (only a corrupt
 * file can hold one) NURI_ERR_FORMAT. id itself missing: NURI_ERR_NOT_FOUND. */
nuri_status nuri_store_response_chain(nuri_store *s, const char *owner, const char *id,
                                      int max_depth, json_t **items);

/* ======================================================================== conversations */

/* POST /v1/conversations: a new conversation with metadata (an object, NULL for {}) and initial
 * items (an array, NULL for none; ids assigned as for responses). *conversation (may be NULL):
 * {"id":"conv_...","object":"conversation","created_at":...,"metadata":{...}}. */
nuri_status nuri_store_conversation_create(nuri_store *s, const char *owner, const json_t *metadata,
                                           const json_t *items, json_t **conversation);

/* GET /v1/conversations/{id}. */
nuri_status nuri_store_conversation_get(nuri_store *s, const char *owner, const char *id,
                                        json_t **conversation);

/* POST /v1/conversations/{id}: replaces the metadata (an object; NULL for {}). *conversation
 * (may be NULL): the updated conversation. */
nuri_status nuri_store_conversation_update(nuri_store *s, const char *owner, const char *id,
                                           const json_t *metadata, json_t **conversation);

/* DELETE /v1/conversations/{id}: removes it and its items. */
nuri_status nuri_store_conversation_delete(nuri_store *s, const char *owner, const char *id);

/* The owner's conversations, newest first with DESC (the web page's list; OpenAI has no such
 * route). */
nuri_status nuri_store_conversation_list(nuri_store *s, const char *owner,
                                         const nuri_store_page *page, json_t **list);

/* POST /v1/conversations/{id}/items: appends items (an array of objects, ids assigned where
 * missing). An id already in the conversation is NURI_ERR_INVALID_ARG and nothing is added.
 * *list (may be NULL): the added items as a list object (has_more false). */
nuri_status nuri_store_conversation_items_add(nuri_store *s, const char *owner, const char *id,
                                              const json_t *items, json_t **list);

/* GET /v1/conversations/{id}/items: one page, in the order the items were added (ASC) or
 * reverse (DESC). */
nuri_status nuri_store_conversation_items_list(nuri_store *s, const char *owner, const char *id,
                                               const nuri_store_page *page, json_t **list);

/* GET /v1/conversations/{id}/items/{item_id}. */
nuri_status nuri_store_conversation_item_get(nuri_store *s, const char *owner, const char *id,
                                             const char *item_id, json_t **item);

/* DELETE /v1/conversations/{id}/items/{item_id}. *conversation (may be NULL): the conversation,
 * which is what OpenAI answers. */
nuri_status nuri_store_conversation_item_delete(nuri_store *s, const char *owner, const char *id,
                                                const char *item_id, json_t **conversation);

/* POST /v1/responses with conversation = id: every item of the conversation in order, to render
 * before the new input. More than max_items items is NURI_ERR_LIMIT. */
nuri_status nuri_store_conversation_history(nuri_store *s, const char *owner, const char *id,
                                            int max_items, json_t **items);

#endif
