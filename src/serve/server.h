/*
 * server.h: what the HTTP front (http.c) and the OpenAI routes (routes.c) share; private to
 * src/serve/.
 *
 * A connection (conn) belongs to one thread at a time: the event loop while it reads a request or
 * writes a short answer, a worker while a generation request runs on it. Ownership moves through
 * the server's mutex-guarded queues, never by two threads touching a conn at once. Only the event
 * loop (or serve_server_stop after the loop has ended) closes a socket, once.
 */
#ifndef NURI_SERVE_SERVER_H
#define NURI_SERVE_SERVER_H

#include "base/strbuf.h"
#include "serve/metrics.h"
#include "serve/openai.h"
#include "serve/prompt.h"
#include "serve/sched.h"
#include "serve/serve.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A growing byte buffer (base/strbuf.h). */
typedef nuri_sb buf;

/* Appends s[0..n) and keeps a NUL after the bytes; false when out of memory. */
static inline bool buf_add(buf *b, const char *s, size_t n)
{
    return nuri_sb_add(b, s, n);
}

typedef struct conn conn;

enum load_state { LOAD_LOADING, LOAD_READY, LOAD_FAILED };

struct serve_server {
    serve_params p;
    char model_name[128];
    char **api_keys;
    int n_api_keys;
    char **allow_hosts;
    int n_allow_hosts;
    char replica_id[SERVE_REPLICA_ID_MAX]; // X-Nuri-Replica on every answer ("" for none)
    char **cors_origins;                   // CORS (http.c); "*" only with API keys
    int n_cors_origins;
    int listen_fd, port;
    int ep;       // epoll
    int wake_fd;  // eventfd: wakes the loop (returned connections, shutdown, stop)
    int spare_fd; // held open so that a connection can be refused with a status at EMFILE
    pthread_t loop_thread, load_thread;
    pthread_t *workers;
    int n_workers, n_workers_started;
    bool loop_started, load_started;
    _Atomic bool draining; // SIGTERM: no new work; running requests go on
    _Atomic bool stopping; // everything ends now
    serve_metrics metrics;
    struct front *front; // the loop's connection table (http.c)
    // hand-offs between the loop and the workers (guarded by q_mu)
    pthread_mutex_t q_mu;
    pthread_cond_t q_cv;
    conn **work; // ring of n_workers requests for the workers
    int work_head, work_count;
    conn *returned; // list (conn.next) of connections the workers are done with
    int busy;       // requests handed to workers and not yet returned
    // set by the loader
    pthread_mutex_t load_mu;
    pthread_cond_t load_cv;
    enum load_state state;
    nuri_status load_status;
    char load_error[512];
    nuri_model *model;
    nuri_model *draft; // --draft, or NULL
    serve_prompt *prompt;
    serve_sched *sched;
    nuri_token_trie *grammar_trie; // the vocabulary's token texts, for grammar-constrained requests
    int32_t n_vocab;
    struct nuri_store *store;       // the conversation store, or NULL (--no-store)
    struct nuri_kvsnap_dir *kvsnap; // KV snapshots (--kv-dir), or NULL; set by the loader
    atomic_uint_fast64_t id_counter;
};

/* A complete request handed to a worker. Strings are NUL-terminated and live until the conn is
 * returned to the loop. */
typedef struct http_request {
    const char *method; // "GET", "POST", ...
    const char *path;   // without the query
    const char *query;  // after '?', without it ("" for none)
    const char *owner;  // whose stored objects these are: the API key's SHA-256 in hex, "" when
                        // the server has no keys
    const char *body;   // the decoded body (NUL-terminated)
    size_t body_len;    // bytes
    bool head_only;     // HEAD
    bool keep_alive;    // the client allows another request (the route may still close)
    int minor;          // HTTP/1.<minor>
} http_request;

/* The request a worker runs on c. */
/* A line for the operator's log (the server's log callback), if there is one. */
void serve_log(serve_server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

const http_request *conn_request(conn *c);

/* Sends one whole answer on c from a worker (blocking, bounded by the write-stall timeout).
 * extra_headers: "" or lines each ending in "\r\n". False when the client is gone. */
bool conn_reply(serve_server *s, conn *c, int status, const char *content_type,
                const char *extra_headers, const char *body, size_t body_len);
bool conn_reply_error(serve_server *s, conn *c, const serve_error *e);
bool conn_reply_json(serve_server *s, conn *c, int status, json_t *v /* stolen */);

/* Streams: the head (chunked on HTTP/1.1, close-delimited on 1.0), then pieces, then the end. */
bool conn_stream_begin(serve_server *s, conn *c, int status, const char *content_type);
bool conn_stream_write(serve_server *s, conn *c, const char *p, size_t n);
bool conn_stream_end(serve_server *s, conn *c);

/* Whether the client has gone away (a reset, or an error on the socket). A client that only
 * closed its sending side (half-close) is not gone: it may still read the answer. */
bool conn_gone(serve_server *s, conn *c);
/* The client closed its sending side: whether the answer should be started early (to learn from
 * the reply to our bytes whether it is still there). */
bool conn_half_closed(conn *c);
/* The head of a whole answer, sent early (see routes.c): close-delimited, status 200. */
bool conn_reply_early_head(serve_server *s, conn *c, const char *content_type);
bool conn_reply_body_rest(serve_server *s, conn *c, const char *body, size_t n);
bool conn_head_sent(conn *c);

/* The generation routes (routes.c), run by a worker. */
/* Bytes of one token's KV (K and V of every layer, rows of the cache's types), as
 * nuri_ctx_kv_bytes counts them. */
static inline size_t serve_kv_bytes_per_token(const serve_sched *sched)
{
    return serve_sched_kv_bytes_per_token(sched);
}

void routes_generate(serve_server *s, conn *c, serve_kind kind);
/* POST /v1/responses, and the stored objects' routes (/v1/responses/{id}..., /v1/conversations...):
 * responses.c. */
void routes_responses(serve_server *s, conn *c);
void routes_store(serve_server *s, conn *c);

/* Small answers built by the loop (routes.c): /health, /metrics, /v1/models. The body is returned
 * (caller frees) with its status and content type. */
char *routes_health(serve_server *s, int *status);
char *routes_models(serve_server *s, const char *id, int *status);

enum load_state server_state(serve_server *s);

#endif
