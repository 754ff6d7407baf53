/*
 * serve.h: nuri's OpenAI-compatible HTTP server.
 *
 * serve_server_start binds the address and answers at once (GET /health says 503 while the model
 * loads, in a background thread). Routes: POST /v1/chat/completions, POST /v1/completions,
 * GET /v1/models[/ID], GET /health, GET /metrics. Every error is an OpenAI error object.
 *
 * Connections: a gate thread accepts them and hands each to libmicrohttpd (one thread per
 * connection) only once its request headers are complete; a client that has not sent them within
 * header_timeout_ms gets 408. Generation runs on the scheduler thread (sched.h); connection threads
 * turn its tokens into text, stop-string cuts, JSON and server-sent events.
 */
#ifndef NURI_SERVE_SERVE_H
#define NURI_SERVE_SERVE_H

#include "nuri.h"

#include <stddef.h>
#include <stdint.h>

typedef void (*serve_log_fn)(void *ud, const char *msg);

typedef struct serve_params {
    const char *model_path;
    const char *model_name;      // reported by /v1/models (NULL: the file name without .gguf)
    const char *host;            // numeric IPv4 address to bind (NULL: 127.0.0.1)
    int port;                    // 0: any free port (serve_server_port says which)
    const char *const *api_keys; // n_api_keys accepted bearer keys; none: no auth
    int n_api_keys;
    int n_ctx;                 // KV pool, tokens for all sequences (0: the model's default)
    int max_seqs;              // sequences decoded together (0: 8)
    int max_queue;             // requests waiting for a sequence before 503 (0: 4 * max_seqs)
    int n_threads;             // forward pass threads (0: 1)
    const char *chat_template; // file with a Jinja chat template, or NULL
    size_t max_body;           // bytes of request body (0: 4 MiB)
    int header_timeout_ms;     // (0: 10000)
    int idle_timeout_s;        // keep-alive idle connections closed after (0: 60)
    int max_connections;       // (0: 256)
    serve_log_fn log;          // start-up notes and load failures; may be NULL
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

/* Stops accepting, ends every request, frees everything. */
void serve_server_stop(serve_server *s);

#endif
