/*
 * serve.h: nuri's OpenAI-compatible HTTP server.
 *
 * serve_server_start binds the address and answers at once (GET /health says 503 while the model
 * loads, in a background thread). Routes: POST /v1/chat/completions, POST /v1/completions,
 * GET /v1/models[/ID], GET /health, GET /metrics, and the web chat page at GET / (web.c). Every
 * answer, errors of every kind included, is JSON (OpenAI error objects), except /metrics and the
 * page. CORS for the origins in cors_origins (http.c, "CORS").
 *
 * Connections are served by one event loop (http.c), generation requests by a bounded pool of
 * workers (routes.c) over the continuous-batching scheduler (sched.c). Limits (connections in all
 * and per client address, the time to receive a request, body size, requests in progress) are
 * answered with 503 / 408 / 413 / 431 JSON, never a reset or a hang.
 *
 * Lifecycle: serve_server_shutdown stops accepting and lets running requests finish
 * (serve_server_idle says when none is left); serve_server_stop ends the rest (streams get an
 * in-stream "shutting_down" error) and frees everything.
 */
#ifndef NURI_SERVE_SERVE_H
#define NURI_SERVE_SERVE_H

#include "nuri.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef void (*serve_log_fn)(void *ud, const char *msg);

#define SERVE_REPLICA_ID_MAX 128

typedef struct serve_params {
    const char *model_path;
    const char *model_name;      // reported by /v1/models (NULL: the file name without .gguf)
    const char *host;            // numeric IPv4 address to bind (NULL: 127.0.0.1)
    int port;                    // 0: any free port (serve_server_port says which)
    const char *const *api_keys; // n_api_keys accepted bearer keys; none: no auth
    int n_api_keys;
    const char *const *allow_hosts; // Host names accepted without keys besides IPs / localhost;
    int n_allow_hosts;              // "*" accepts any
    int n_ctx;                      // KV pool, tokens for all sequences (0: sized by kv_mem)
    double kv_mem;                  // fraction of the available memory for the KV pool (0: 0.5)
    uint32_t kv_type_k, kv_type_v;  // the KV cache's types (nuri_ctx_params; 0: F16)
    int max_seqs;                   // sequences decoded together (0: 8)
    int max_queue;                  // requests waiting for a sequence before 503 (0: 4 * max_seqs)
    int n_threads;                  // forward pass threads (0: 1)
    int draft_lookup;               // prompt-lookup draft tokens per sequence and step (0: off)
    const char *draft_path;         // a draft model of the same vocabulary, or NULL (speculation)
    int draft_max;                  // its draft tokens per sequence and step (0: 8)
    const char *chat_template;      // file with a Jinja chat template, or NULL
    size_t max_body;                // bytes of request body (0: 4 MiB)
    int header_timeout_ms;          // time to receive a request head (0: 10000)
    int request_timeout_ms;         // time to receive a whole request (0: 30000)
    int idle_timeout_s;             // keep-alive idle connections closed after (0: 60)
    int max_connections;        // open connections in all (0: 8192, within the descriptor limit)
    int max_conns_per_client;   // open connections per client address (0: 256)
    bool unsafe_special_tokens; // parse special-token text in message contents (off: safe)
    // the conversation store (Responses API, conversations): an SQLite file ("sqlite:PATH" or a
    // path) or a PostgreSQL URL ("postgresql://..."), or NULL for none (then those routes answer
    // 400 store_disabled)
    const char *store_path;
    // this replica's name, sent as X-Nuri-Replica on every answer (NULL: none); letters, digits
    // and . _ : -, shorter than SERVE_REPLICA_ID_MAX
    const char *replica_id;
    // KV snapshots of stored responses' sequences (the SSD tier), or NULL; bounded by kv_dir_size
    // bytes (0: no bound)
    const char *kv_dir;
    uint64_t kv_dir_size;
    // origins whose browser pages may call the API (CORS; "*": any, only with API keys); none:
    // no CORS headers, and OPTIONS is a 405
    const char *const *cors_origins;
    int n_cors_origins;
    serve_log_fn log; // start-up notes and load failures; may be NULL
    void *log_ud;
} serve_params;

typedef struct serve_server serve_server;

/* Binds and starts serving; the model loads in the background. Caller stops with
 * serve_server_stop. Fails (NURI_ERR_IO) when the address cannot be bound. */
nuri_status serve_server_start(const serve_params *p, serve_server **out);

/* The bound port. */
int serve_server_port(const serve_server *s);

/* Waits for the model to finish loading; its status (with nuri_last_error() set on failure). */
nuri_status serve_server_wait_loaded(serve_server *s);

/* 1 when the model is loaded, 0 while it loads, -1 when it failed (err gets the reason). */
int serve_server_load_state(serve_server *s, char *err, size_t err_cap);

/* Begins a graceful stop: the listening socket closes, new requests get 503 "shutting_down",
 * running ones go on. */
void serve_server_shutdown(serve_server *s);

/* Whether no request is in progress (after serve_server_shutdown: the drain is complete). */
bool serve_server_idle(serve_server *s);

/* Stops accepting, ends every request (running streams get an in-stream error), frees
 * everything. */
void serve_server_stop(serve_server *s);

#endif
