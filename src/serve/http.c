/*
 * http.c: the HTTP side of `nuri serve`: the header gate, libmicrohttpd routes, auth and limits,
 * and the generation of chat / completion responses (whole JSON or server-sent events).
 *
 * Threads: the gate thread (accepts, waits for complete headers, 408s the slow ones), one
 * libmicrohttpd thread per connection (parses, validates, tokenizes, submits, then turns the
 * scheduler's tokens into text and JSON, blocking in short waits), the loader thread at start-up,
 * and the scheduler thread (sched.c). A connection thread notices that its client went away by
 * polling the socket between waits, and cancels its request at once.
 */
#include "serve/serve.h"

#include "base/status.h"
#include "serve/metrics.h"
#include "serve/openai.h"
#include "serve/prompt.h"
#include "serve/sched.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define GATE_MAX 256       // connections waiting for their headers
#define GATE_PEEK 16384    // bytes of request head accepted (else 431)
#define GATE_RECHECK_MS 10 // how often a partial head is looked at again
#define WAIT_SLICE_MS 100  // longest a connection thread waits before checking its client
#define EVENTS_PER_WAKE 16

enum load_state { LOAD_LOADING, LOAD_READY, LOAD_FAILED };

typedef struct gate_conn {
    int fd;
    struct sockaddr_in addr;
    double deadline; // serve_now() seconds
    double next_check;
} gate_conn;

struct serve_server {
    serve_params p;
    char model_name[128];
    char **api_keys;
    int listen_fd, port;
    int wake[2]; // pipe: wakes the gate thread to stop
    pthread_t gate_thread, load_thread;
    bool gate_started, load_started;
    _Atomic bool stopping;
    struct MHD_Daemon *mhd;
    serve_metrics metrics;
    // set by the loader
    pthread_mutex_t load_mu;
    pthread_cond_t load_cv;
    enum load_state state;
    nuri_status load_status;
    char load_error[512];
    nuri_model *model;
    serve_prompt *prompt;
    serve_sched *sched;
    int32_t n_vocab;
    atomic_uint_fast64_t id_counter;
    gate_conn gate[GATE_MAX];
    int n_gate;
};

static enum load_state server_state(serve_server *s)
{
    pthread_mutex_lock(&s->load_mu);
    enum load_state st = s->state;
    pthread_mutex_unlock(&s->load_mu);
    return st;
}

static void server_log(serve_server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void server_log(serve_server *s, const char *fmt, ...)
{
    if (!s->p.log) return;
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    s->p.log(s->p.log_ud, msg);
}

/* ============================== responses ============================== */

static enum MHD_Result reply(serve_server *s, struct MHD_Connection *c, unsigned status,
                             const char *content_type, char *body /* freed here */)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(body ? strlen(body) : 0, body ? body : (char *)"",
                                        body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", content_type);
    if (status == 503) MHD_add_response_header(r, "Retry-After", "1");
    if (status == 401) MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    serve_metrics_request(&s->metrics, (int)status);
    return ret;
}

static enum MHD_Result reply_json(serve_server *s, struct MHD_Connection *c, unsigned status,
                                  json_t *v /* stolen */)
{
    char *body = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    if (!body) return MHD_NO;
    return reply(s, c, status, "application/json", body);
}

static enum MHD_Result reply_error(serve_server *s, struct MHD_Connection *c, const serve_error *e)
{
    char *body = serve_error_json(e);
    if (!body) return MHD_NO;
    return reply(s, c, (unsigned)e->http, "application/json", body);
}

static enum MHD_Result reply_errorf(serve_server *s, struct MHD_Connection *c, int http,
                                    const char *type, const char *param, const char *code,
                                    const char *fmt, ...) __attribute__((format(printf, 7, 8)));
static enum MHD_Result reply_errorf(serve_server *s, struct MHD_Connection *c, int http,
                                    const char *type, const char *param, const char *code,
                                    const char *fmt, ...)
{
    serve_error e;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    serve_fail(&e, http, type, param, code, "%s", msg);
    return reply_error(s, c, &e);
}

/* A raw error response written by the gate (before libmicrohttpd owns the socket). */
static void gate_reply(serve_server *s, int fd, int status, const char *reason, const char *code,
                       const char *msg)
{
    serve_error e;
    serve_fail(&e, status, "invalid_request_error", NULL, code, "%s", msg);
    char *body = serve_error_json(&e);
    if (!body) return;
    char head[256];
    int hn = snprintf(head, sizeof head,
                      "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                      "%sConnection: close\r\n\r\n",
                      status, reason, strlen(body), status == 503 ? "Retry-After: 1\r\n" : "");
    (void)!send(fd, head, (size_t)hn, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)!send(fd, body, strlen(body), MSG_NOSIGNAL | MSG_DONTWAIT);
    free(body);
    serve_metrics_request(&s->metrics, status);
}

/* ============================== generation ============================== */

/* A growing byte buffer. */
typedef struct buf {
    char *p;
    size_t n, cap;
} buf;

static bool buf_add(buf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) return false;
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return true;
}

/* One request being generated, owned by its connection. */
typedef struct gen {
    serve_server *s;
    serve_job *job;
    serve_request req; // stop strings and flags (messages / prompt are no longer used)
    // the request's stop strings, then (chat) the template's end-of-turn texts; borrowed
    const char *stops[SERVE_MAX_STOP + SERVE_MAX_FORMAT_STOPS];
    size_t n_stops;
    json_t *body; // the parsed request body (req borrows from it)
    int fd;       // the client's socket, polled for hang-ups
    char id[48];
    long long created;
    int32_t n_prompt;
    nuri_detok detok;
    bool detok_ok;
    buf text;         // everything generated so far
    size_t n_emitted; // bytes of text already sent (streaming) / kept
    int32_t n_tokens; // completion tokens
    json_t *lp_all;   // non-streaming: every token's logprobs entry (chat) / parts (completion)
    json_t *lp_new;   // streaming: entries since the last chunk
    size_t text_offset;
    // outcome
    bool stop_hit, done, gone;
    nuri_finish_reason finish;
    int err_http;
    char err[256];
    int32_t n_cached;
    // streaming state
    bool sent_role, sent_end;
    buf out;
    size_t out_off;
} gen;

static bool client_gone(int fd)
{
    if (fd < 0) return false;
    struct pollfd pf = {.fd = fd, .events = POLLRDHUP};
    if (poll(&pf, 1, 0) <= 0) return false;
    return (pf.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

static json_t *bytes_array(const char *s, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++) json_array_append_new(a, json_integer((unsigned char)s[i]));
    return a;
}

static json_t *token_string(const nuri_vocab *v, int32_t id, char *piece, size_t cap, size_t *plen)
{
    size_t n = nuri_token_piece(v, id, piece, cap, false);
    if (n > cap) n = cap;
    *plen = n;
    size_t sl;
    char *t = serve_utf8_sanitize(piece, n, &sl);
    json_t *j = t ? json_stringn(t, sl) : NULL;
    free(t);
    return j;
}

/* Adds one token's logprobs in the request's format. */
static void gen_add_logprobs(gen *g, const serve_event *ev)
{
    const nuri_vocab *v = serve_prompt_vocab(g->s->prompt);
    char piece[512];
    size_t plen;
    json_t *dst = g->req.stream ? g->lp_new : g->lp_all;
    if (g->req.kind == SERVE_CHAT) {
        json_t *e = json_object();
        json_object_set_new(e, "token", token_string(v, ev->token, piece, sizeof piece, &plen));
        json_object_set_new(e, "logprob", json_real(ev->lp.chosen.logprob));
        json_object_set_new(e, "bytes", bytes_array(piece, plen));
        json_t *top = json_array();
        for (int k = 0; k < ev->lp.n_top && k < g->req.top_logprobs; k++) {
            json_t *t = json_object();
            json_object_set_new(t, "token",
                                token_string(v, ev->lp.top[k].token, piece, sizeof piece, &plen));
            json_object_set_new(t, "logprob", json_real(ev->lp.top[k].logprob));
            json_object_set_new(t, "bytes", bytes_array(piece, plen));
            json_array_append_new(top, t);
        }
        json_object_set_new(e, "top_logprobs", top);
        json_array_append_new(dst, e);
    } else {
        // completions: parallel arrays; collected as objects here, split when written
        json_t *e = json_object();
        json_t *tok = token_string(v, ev->token, piece, sizeof piece, &plen);
        json_object_set_new(e, "token", tok);
        json_object_set_new(e, "logprob", json_real(ev->lp.chosen.logprob));
        json_t *top = json_object();
        for (int k = 0; k < ev->lp.n_top && k < g->req.top_logprobs; k++) {
            char p2[512];
            size_t l2;
            json_t *ts = token_string(v, ev->lp.top[k].token, p2, sizeof p2, &l2);
            if (ts)
                json_object_set_new(top, json_string_value(ts), json_real(ev->lp.top[k].logprob));
            json_decref(ts);
        }
        json_object_set_new(e, "top", top);
        json_object_set_new(e, "offset", json_integer((json_int_t)g->text_offset));
        g->text_offset += plen;
        json_array_append_new(dst, e);
    }
}

/* Completion-style logprobs from the collected entries. */
static json_t *completion_logprobs(json_t *entries, bool with_top)
{
    json_t *tokens = json_array(), *lps = json_array(), *tops = json_array(), *offs = json_array();
    size_t i;
    json_t *e;
    json_array_foreach(entries, i, e)
    {
        json_array_append(tokens, json_object_get(e, "token"));
        json_array_append(lps, json_object_get(e, "logprob"));
        json_array_append(tops, json_object_get(e, "top"));
        json_array_append(offs, json_object_get(e, "offset"));
    }
    return json_pack("{s:o,s:o,s:o,s:o}", "tokens", tokens, "token_logprobs", lps, "top_logprobs",
                     with_top ? tops : (json_decref(tops), json_null()), "text_offset", offs);
}

/* Waits for tokens (at most timeout_ms), turns them into text, applies stop strings. Returns the
 * number of new text bytes that may be sent (g->text[g->n_emitted - new .. g->n_emitted)). */
static size_t gen_pump(gen *g, int timeout_ms, size_t *from)
{
    serve_event ev[EVENTS_PER_WAKE];
    bool done = false;
    // streams take one token at a time, so that every token leaves in its own event
    int k = serve_job_wait(g->s->sched, g->job, ev, g->req.stream ? 1 : EVENTS_PER_WAKE, timeout_ms,
                           &done);
    for (int i = 0; i < k && !g->stop_hit; i++) {
        size_t len;
        const char *piece = nuri_detok_feed(&g->detok, ev[i].token, &len);
        buf_add(&g->text, piece, len);
        g->n_tokens++;
        if (g->req.logprobs) gen_add_logprobs(g, &ev[i]);
    }
    if (done && !g->stop_hit) {
        size_t len;
        const char *tail = nuri_detok_flush(&g->detok, &len);
        buf_add(&g->text, tail, len);
    }
    *from = g->n_emitted;
    if (g->stop_hit) return 0;
    nuri_stop_result res;
    nuri_stop_strings_check(g->text.p ? g->text.p : "", g->text.n, g->n_emitted, g->stops,
                            g->n_stops, &res);
    size_t safe = res.n_safe;
    if (res.hit) {
        g->stop_hit = true;
        g->finish = NURI_FINISH_STOP;
        serve_job_cancel(g->s->sched, g->job);
        g->done = true;
    } else if (done) {
        safe = g->text.n; // nothing more will come: what was held back is plain text
    }
    if (done && !g->done) {
        g->done = true;
        serve_job_result(g->s->sched, g->job, &g->finish, &g->err_http, g->err, sizeof g->err,
                         &g->n_cached);
    }
    if (g->done && g->stop_hit)
        serve_job_result(g->s->sched, g->job, NULL, NULL, NULL, 0, &g->n_cached);
    size_t n = safe - g->n_emitted;
    g->n_emitted = safe;
    if (!g->done && client_gone(g->fd)) {
        g->gone = true;
        serve_metrics_disconnect(&g->s->metrics);
        serve_job_cancel(g->s->sched, g->job);
    }
    return n;
}

static const char *finish_name(nuri_finish_reason f)
{
    return f == NURI_FINISH_LENGTH ? "length" : "stop";
}

static json_t *usage_json(const gen *g)
{
    return json_pack("{s:i,s:i,s:i,s:{s:i}}", "prompt_tokens", (json_int_t)g->n_prompt,
                     "completion_tokens", (json_int_t)g->n_tokens, "total_tokens",
                     (json_int_t)(g->n_prompt + g->n_tokens), "prompt_tokens_details",
                     "cached_tokens", (json_int_t)g->n_cached);
}

static json_t *text_json(const char *s, size_t n)
{
    size_t sl;
    char *t = serve_utf8_sanitize(s, n, &sl);
    json_t *j = t ? json_stringn(t, sl) : NULL;
    free(t);
    return j;
}

static void gen_free(gen *g)
{
    if (!g) return;
    if (g->job) {
        serve_job_cancel(g->s->sched, g->job);
        serve_job_release(g->s->sched, g->job);
    }
    if (g->detok_ok) nuri_detok_free(&g->detok);
    serve_request_free(&g->req);
    json_decref(g->body);
    json_decref(g->lp_all);
    json_decref(g->lp_new);
    free(g->text.p);
    free(g->out.p);
    free(g);
}

static void gen_account(gen *g)
{
    serve_metrics_tokens(&g->s->metrics, g->n_prompt, g->n_tokens, g->n_cached);
}

/* ---- whole responses ---- */

static enum MHD_Result respond_whole(serve_server *s, struct MHD_Connection *c, gen *g)
{
    size_t from;
    while (!g->done && !g->gone) gen_pump(g, WAIT_SLICE_MS, &from);
    gen_account(g);
    if (g->gone) return MHD_NO; // nobody to answer: close
    if (g->err_http) {
        serve_error e;
        serve_fail(&e, g->err_http, g->err_http >= 500 ? "server_error" : "invalid_request_error",
                   NULL, NULL, "%s", g->err);
        return reply_error(s, c, &e);
    }
    json_t *text = text_json(g->text.p ? g->text.p : "", g->n_emitted);
    json_t *choice;
    if (g->req.kind == SERVE_CHAT) {
        json_t *lp = g->req.logprobs ? json_pack("{s:O}", "content", g->lp_all) : json_null();
        choice =
            json_pack("{s:i,s:{s:s,s:o},s:o,s:s}", "index", 0, "message", "role", "assistant",
                      "content", text, "logprobs", lp, "finish_reason", finish_name(g->finish));
    } else {
        json_t *lp =
            g->req.logprobs ? completion_logprobs(g->lp_all, g->req.top_logprobs > 0) : json_null();
        choice = json_pack("{s:o,s:i,s:o,s:s}", "text", text, "index", 0, "logprobs", lp,
                           "finish_reason", finish_name(g->finish));
    }
    json_t *resp =
        json_pack("{s:s,s:s,s:I,s:s,s:s,s:[o],s:o}", "id", g->id, "object",
                  g->req.kind == SERVE_CHAT ? "chat.completion" : "text_completion", "created",
                  (json_int_t)g->created, "model", s->model_name, "system_fingerprint",
                  "nuri-" NURI_VERSION, "choices", choice, "usage", usage_json(g));
    if (!resp) return MHD_NO;
    return reply_json(s, c, 200, resp);
}

/* ---- streamed responses ---- */

static bool sse_add(gen *g, json_t *v /* stolen */)
{
    char *s = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    if (!s) return false;
    bool ok = buf_add(&g->out, "data: ", 6) && buf_add(&g->out, s, strlen(s)) &&
              buf_add(&g->out, "\n\n", 2);
    free(s);
    return ok;
}

static json_t *chunk_base(gen *g)
{
    return json_pack("{s:s,s:s,s:I,s:s,s:s}", "id", g->id, "object",
                     g->req.kind == SERVE_CHAT ? "chat.completion.chunk" : "text_completion",
                     "created", (json_int_t)g->created, "model", g->s->model_name,
                     "system_fingerprint", "nuri-" NURI_VERSION);
}

/* A chunk with one choice: delta text (may be empty), logprobs since the last one, finish. */
static bool sse_choice(gen *g, const char *text, size_t n, const char *finish, bool role)
{
    json_t *ch = chunk_base(g);
    json_t *choice = json_object();
    json_object_set_new(choice, "index", json_integer(0));
    json_t *lp = json_null();
    if (g->req.logprobs && json_array_size(g->lp_new) > 0) {
        if (g->req.kind == SERVE_CHAT) { // hand the entries over and start a new list
            lp = json_pack("{s:o}", "content", g->lp_new);
            g->lp_new = json_array();
        } else {
            lp = completion_logprobs(g->lp_new, g->req.top_logprobs > 0);
            json_array_clear(g->lp_new);
        }
    }
    if (g->req.kind == SERVE_CHAT) {
        json_t *delta = json_object();
        if (role) json_object_set_new(delta, "role", json_string("assistant"));
        if (n || role) json_object_set_new(delta, "content", text_json(text, n));
        json_object_set_new(choice, "delta", delta);
    } else {
        json_object_set_new(choice, "text", text_json(text, n));
    }
    json_object_set_new(choice, "logprobs", lp);
    json_object_set_new(choice, "finish_reason", finish ? json_string(finish) : json_null());
    json_object_set_new(ch, "choices", json_pack("[o]", choice));
    if (g->req.include_usage) json_object_set_new(ch, "usage", json_null());
    return sse_add(g, ch);
}

/* Produces the next piece of the event stream into g->out. False: the stream is over. */
static bool stream_fill(gen *g)
{
    if (g->sent_end) return false;
    if (!g->sent_role) {
        g->sent_role = true;
        if (g->req.kind == SERVE_CHAT) return sse_choice(g, "", 0, NULL, true);
    }
    size_t from, n;
    do {
        n = gen_pump(g, WAIT_SLICE_MS, &from);
        if (g->gone) return false;
    } while (n == 0 && !g->done && !(g->req.logprobs && json_array_size(g->lp_new) > 0));
    if (n > 0 || (g->req.logprobs && json_array_size(g->lp_new) > 0))
        if (!sse_choice(g, g->text.p + from, n, NULL, false)) return false;
    if (!g->done) return true;
    g->sent_end = true;
    gen_account(g);
    if (g->err_http) { // an error after the stream began travels inside it
        serve_error e;
        serve_fail(&e, g->err_http, g->err_http >= 500 ? "server_error" : "invalid_request_error",
                   NULL, NULL, "%s", g->err);
        char *body = serve_error_json(&e);
        bool ok = body && buf_add(&g->out, "data: ", 6) && buf_add(&g->out, body, strlen(body)) &&
                  buf_add(&g->out, "\n\n", 2);
        free(body);
        return ok;
    }
    if (!sse_choice(g, "", 0, finish_name(g->finish), false)) return false;
    if (g->req.include_usage) {
        json_t *ch = chunk_base(g);
        json_object_set_new(ch, "choices", json_array());
        json_object_set_new(ch, "usage", usage_json(g));
        if (!sse_add(g, ch)) return false;
    }
    return buf_add(&g->out, "data: [DONE]\n\n", 14);
}

static ssize_t stream_read(void *cls, uint64_t pos, char *dst, size_t max)
{
    gen *g = cls;
    (void)pos;
    while (g->out_off == g->out.n) {
        g->out.n = g->out_off = 0;
        if (!stream_fill(g)) {
            if (g->out.n > 0) break;
            return g->gone ? MHD_CONTENT_READER_END_WITH_ERROR : MHD_CONTENT_READER_END_OF_STREAM;
        }
    }
    size_t n = g->out.n - g->out_off;
    if (n > max) n = max;
    memcpy(dst, g->out.p + g->out_off, n);
    g->out_off += n;
    return (ssize_t)n;
}

static void stream_free(void *cls)
{
    gen *g = cls;
    if (!g->sent_end && !g->gone) serve_metrics_disconnect(&g->s->metrics); // a failed write
    gen_free(cls);
}

/* ============================== the completion routes ============================== */

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static enum MHD_Result handle_generate(serve_server *s, struct MHD_Connection *c, serve_kind kind,
                                       const char *body, size_t body_len)
{
    double t_arrival = serve_now();
    json_error_t je;
    json_t *root = json_loadb(body, body_len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return reply_errorf(s, c, 400, "invalid_request_error", NULL, "invalid_json",
                            "the request body is not valid JSON: %s (line %d, column %d)", je.text,
                            je.line, je.column);
    gen *g = calloc(1, sizeof *g);
    if (!g) {
        json_decref(root);
        return MHD_NO;
    }
    g->s = s;
    g->body = root;
    g->fd = -1;
    serve_error e;
    if (!serve_request_parse(root, kind, s->n_vocab, &g->req, &e)) {
        gen_free(g);
        return reply_error(s, c, &e);
    }
    int32_t *ids = NULL, n_ids = 0;
    if (!serve_prompt_tokens(s->prompt, &g->req, &ids, &n_ids, &e)) {
        gen_free(g);
        return reply_error(s, c, &e);
    }
    const char *pparam = kind == SERVE_CHAT ? "messages" : "prompt";
    int32_t seq_max = serve_sched_seq_max(s->sched);
    if (n_ids == 0) {
        free(ids);
        gen_free(g);
        return reply_errorf(s, c, 400, "invalid_request_error", pparam, "invalid_value",
                            "the prompt is empty (0 tokens)");
    }
    if (n_ids >= seq_max) {
        free(ids);
        gen_free(g);
        return reply_errorf(s, c, 400, "invalid_request_error", pparam, "context_length_exceeded",
                            "the prompt is %d tokens long, but the context holds %d tokens "
                            "(prompt and completion together)",
                            n_ids, seq_max);
    }
    int32_t max_new = seq_max - n_ids;
    if (g->req.max_tokens > 0 && g->req.max_tokens < max_new) max_new = g->req.max_tokens;

    // a chat answer ends as in `nuri chat`: on the template family's end-of-turn marker too
    size_t n_fmt_stops;
    const char *const *fmt_stops = serve_prompt_stop_texts(s->prompt, kind, &n_fmt_stops);
    for (int i = 0; i < g->req.n_stop; i++) g->stops[g->n_stops++] = g->req.stop[i];
    for (size_t i = 0; i < n_fmt_stops && i < SERVE_MAX_FORMAT_STOPS; i++)
        g->stops[g->n_stops++] = fmt_stops[i];
    nuri_sampler_params sp = g->req.sp;
    int32_t n_stop_tok;
    sp.stop_tokens = serve_prompt_stop_tokens(s->prompt, kind, &n_stop_tok);
    sp.n_stop_tokens = n_stop_tok;
    sp.max_tokens = max_new;
    if (sp.frequency_penalty != 0 || sp.presence_penalty != 0)
        sp.penalty_last_n = max_new < NURI_SAMPLER_MAX_LAST_N ? max_new : NURI_SAMPLER_MAX_LAST_N;
    if (!g->req.seed_given) {
        uint64_t x = (uint64_t)time(NULL) ^ ((uint64_t)atomic_fetch_add(&s->id_counter, 1) << 32);
        sp.seed = splitmix(&x);
    }
    nuri_sampler *smp = NULL;
    if (nuri_sampler_new(&sp, s->n_vocab, &smp) != NURI_OK) {
        free(ids);
        gen_free(g);
        return reply_errorf(s, c, 400, "invalid_request_error", NULL, "invalid_value", "%s",
                            nuri_last_error());
    }
    g->job = serve_job_new(ids, n_ids, smp);
    if (!g->job || nuri_detok_init(&g->detok, serve_prompt_vocab(s->prompt), 0) != NURI_OK) {
        gen_free(g);
        return MHD_NO;
    }
    g->detok_ok = true;
    g->job->max_new = max_new;
    g->job->want_logprobs = g->req.logprobs;
    g->job->t_arrival = t_arrival;
    g->n_prompt = n_ids;
    g->created = (long long)time(NULL);
    uint64_t x = (uint64_t)atomic_fetch_add(&s->id_counter, 1) * 0x9E3779B97F4A7C15ull ^
                 (uint64_t)time(NULL);
    snprintf(g->id, sizeof g->id, "%s%016llx", kind == SERVE_CHAT ? "chatcmpl-" : "cmpl-",
             (unsigned long long)splitmix(&x));
    g->lp_all = json_array();
    g->lp_new = json_array();
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci) g->fd = ci->connect_fd;
    if (serve_sched_submit(s->sched, g->job) != NURI_OK) {
        gen_free(g);
        return reply_errorf(s, c, 503, "server_error", NULL, "queue_full",
                            "the server is busy: every sequence is in use and the queue is full; "
                            "retry after a moment");
    }
    if (!g->req.stream) {
        enum MHD_Result r = respond_whole(s, c, g);
        gen_free(g);
        return r;
    }
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, g, stream_free);
    if (!resp) {
        gen_free(g);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "text/event-stream");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    enum MHD_Result r = MHD_queue_response(c, 200, resp);
    MHD_destroy_response(resp);
    serve_metrics_request(&s->metrics, 200);
    return r;
}

/* ============================== routing ============================== */

typedef struct req_state {
    buf body;
    bool too_large;
} req_state;

static bool key_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char d = la != lb;
    for (size_t i = 0; i < la; i++) d |= (unsigned char)(a[i] ^ b[i % (lb ? lb : 1)]);
    return d == 0;
}

static bool authorized(serve_server *s, struct MHD_Connection *c)
{
    if (s->p.n_api_keys == 0) return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7)) return false;
    h += 7;
    while (*h == ' ') h++;
    bool ok = false;
    for (int i = 0; i < s->p.n_api_keys; i++) ok |= key_equal(h, s->api_keys[i]);
    return ok;
}

static enum MHD_Result not_ready(serve_server *s, struct MHD_Connection *c)
{
    if (server_state(s) == LOAD_FAILED)
        return reply_errorf(s, c, 503, "server_error", NULL, "model_load_failed",
                            "the model failed to load: %s", s->load_error);
    return reply_errorf(s, c, 503, "server_error", NULL, "model_loading",
                        "the model is still loading; retry after a moment");
}

static enum MHD_Result handle_models(serve_server *s, struct MHD_Connection *c, const char *id)
{
    json_t *m = json_pack("{s:s,s:s,s:I,s:s}", "id", s->model_name, "object", "model", "created",
                          (json_int_t)s->metrics.started, "owned_by", "nuri");
    if (!m) return MHD_NO;
    if (id) {
        if (strcmp(id, s->model_name)) {
            json_decref(m);
            return reply_errorf(s, c, 404, "invalid_request_error", "model", "model_not_found",
                                "the model '%.100s' does not exist; this server has '%s'", id,
                                s->model_name);
        }
        return reply_json(s, c, 200, m);
    }
    return reply_json(s, c, 200, json_pack("{s:s,s:[o]}", "object", "list", "data", m));
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    serve_server *s = cls;
    (void)version;
    bool post = !strcmp(method, "POST"), get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    bool gen_route = !strcmp(url, "/v1/chat/completions") || !strcmp(url, "/v1/completions") ||
                     !strcmp(url, "/chat/completions") || !strcmp(url, "/completions");
    req_state *rs = *con_cls;
    if (!rs) { // the headers are in: decide what can be decided before the body
        if (!(rs = calloc(1, sizeof *rs))) return MHD_NO;
        *con_cls = rs;
        bool known = gen_route || !strcmp(url, "/health") || !strcmp(url, "/metrics") ||
                     !strcmp(url, "/v1/models") || !strncmp(url, "/v1/models/", 11);
        if (!known)
            return reply_errorf(s, c, 404, "invalid_request_error", NULL, "not_found",
                                "no route for %.16s %.200s", method, url);
        if (gen_route ? !post : !get)
            return reply_errorf(s, c, 405, "invalid_request_error", NULL, "method_not_allowed",
                                "%.200s does not take %.16s (use %s)", url, method,
                                gen_route ? "POST" : "GET");
        if (strcmp(url, "/health") && !authorized(s, c))
            return reply_errorf(s, c, 401, "authentication_error", NULL, "invalid_api_key",
                                "missing or wrong API key: send 'Authorization: Bearer KEY'");
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > s->p.max_body)
            return reply_errorf(s, c, 413, "invalid_request_error", NULL, "request_too_large",
                                "the request body is %s bytes; at most %zu are accepted", cl,
                                s->p.max_body);
        return MHD_YES;
    }
    if (*upload_size) { // a piece of the body
        if (!rs->too_large && rs->body.n + *upload_size <= s->p.max_body) {
            if (!buf_add(&rs->body, upload, *upload_size)) return MHD_NO;
        } else {
            rs->too_large = true;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (rs->too_large)
        return reply_errorf(s, c, 413, "invalid_request_error", NULL, "request_too_large",
                            "the request body is larger than %zu bytes", s->p.max_body);
    if (!strcmp(url, "/health")) {
        enum load_state st = server_state(s);
        if (st != LOAD_READY) return not_ready(s, c);
        return reply_json(s, c, 200, json_pack("{s:s}", "status", "ok"));
    }
    if (!strcmp(url, "/metrics")) {
        char *t = serve_metrics_text(&s->metrics, s->model_name);
        if (!t) return MHD_NO;
        return reply(s, c, 200, "text/plain; version=0.0.4; charset=utf-8", t);
    }
    if (!strcmp(url, "/v1/models")) return handle_models(s, c, NULL);
    if (!strncmp(url, "/v1/models/", 11)) return handle_models(s, c, url + 11);
    if (server_state(s) != LOAD_READY) return not_ready(s, c);
    serve_kind kind = strstr(url, "chat/") ? SERVE_CHAT : SERVE_COMPLETION;
    return handle_generate(s, c, kind, rs->body.p ? rs->body.p : "", rs->body.n);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls, (void)c, (void)toe;
    req_state *rs = *con_cls;
    if (!rs) return;
    free(rs->body.p);
    free(rs);
    *con_cls = NULL;
}

/* ============================== the gate ============================== */

/* Closes a socket the gate answered itself: unread request bytes would make the kernel send a
 * reset, which can destroy the answer before the client reads it, so drain them first. */
static void gate_close(int fd)
{
    char sink[4096];
    shutdown(fd, SHUT_WR);
    for (int k = 0; k < 16 && recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0; k++) {
    }
    close(fd);
}

static void gate_drop(serve_server *s, int i)
{
    s->gate[i] = s->gate[--s->n_gate];
}

static void *gate_main(void *arg)
{
    serve_server *s = arg;
    struct pollfd pf[GATE_MAX + 2];
    int idx[GATE_MAX + 2];
    char peek[GATE_PEEK];
    while (!atomic_load(&s->stopping)) {
        double now = serve_now();
        int np = 0;
        pf[np++] = (struct pollfd){.fd = s->wake[0], .events = POLLIN};
        pf[np++] = (struct pollfd){.fd = s->listen_fd, .events = POLLIN};
        double wait = 0.2;
        for (int i = 0; i < s->n_gate; i++) {
            gate_conn *g = &s->gate[i];
            double until = g->deadline - now;
            if (g->next_check > now) {
                if (g->next_check - now < until) until = g->next_check - now;
            } else {
                idx[np] = i;
                pf[np++] = (struct pollfd){.fd = g->fd, .events = POLLIN};
            }
            if (until < wait) wait = until;
        }
        if (wait < 0) wait = 0;
        int r = poll(pf, (nfds_t)np, (int)(wait * 1000) + 1);
        if (r < 0 && errno != EINTR) break;
        if (atomic_load(&s->stopping)) break;
        now = serve_now();
        // headers of waiting connections (walk backwards: gate_drop moves the last entry)
        for (int p = np - 1; p >= 2; p--) {
            if (!pf[p].revents) continue;
            int i = idx[p];
            gate_conn *g = &s->gate[i];
            ssize_t n = recv(g->fd, peek, sizeof peek, MSG_PEEK | MSG_DONTWAIT);
            if (n <= 0) {
                if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
                close(g->fd);
                gate_drop(s, i);
            } else if (memmem(peek, (size_t)n, "\r\n\r\n", 4)) {
                int fd = g->fd;
                struct sockaddr_in a = g->addr;
                gate_drop(s, i);
                if (MHD_add_connection(s->mhd, fd, (struct sockaddr *)&a, sizeof a) != MHD_YES)
                    close(fd); // libmicrohttpd refused it (at its connection limit)
            } else if ((size_t)n == sizeof peek) {
                gate_reply(s, g->fd, 431, "Request Header Fields Too Large", "headers_too_large",
                           "the request head is larger than 16384 bytes");
                gate_close(g->fd);
                gate_drop(s, i);
            } else {
                g->next_check = now + GATE_RECHECK_MS * 1e-3; // partial: look again soon
            }
        }
        // slow headers
        for (int i = s->n_gate - 1; i >= 0; i--) {
            if (s->gate[i].deadline > now) continue;
            gate_reply(s, s->gate[i].fd, 408, "Request Timeout", "request_timeout",
                       "the request headers did not arrive in time");
            gate_close(s->gate[i].fd);
            gate_drop(s, i);
        }
        // new connections
        if (pf[1].revents & POLLIN) {
            for (;;) {
                struct sockaddr_in a;
                socklen_t al = sizeof a;
                int fd =
                    accept4(s->listen_fd, (struct sockaddr *)&a, &al, SOCK_CLOEXEC | SOCK_NONBLOCK);
                if (fd < 0) break;
                if (s->n_gate == GATE_MAX) {
                    gate_reply(s, fd, 503, "Service Unavailable", "too_many_connections",
                               "too many connections are waiting; retry after a moment");
                    gate_close(fd);
                    continue;
                }
                int one = 1;
                setsockopt(fd, IPPROTO_TCP, 1 /* TCP_NODELAY */, &one, sizeof one);
                s->gate[s->n_gate++] = (gate_conn){
                    .fd = fd, .addr = a, .deadline = now + s->p.header_timeout_ms * 1e-3};
            }
        }
    }
    for (int i = 0; i < s->n_gate; i++) close(s->gate[i].fd);
    s->n_gate = 0;
    return NULL;
}

/* ============================== loading ============================== */

static void *load_main(void *arg)
{
    serve_server *s = arg;
    nuri_status st = nuri_model_load(s->p.model_path, &s->model);
    if (st == NURI_OK) st = serve_prompt_load(s->model, s->p.chat_template, &s->prompt);
    if (st == NURI_OK) {
        s->n_vocab = s->model->hp.n_vocab;
        if (nuri_vocab_n_tokens(serve_prompt_vocab(s->prompt)) > (uint32_t)s->n_vocab)
            st = nuri_error(NURI_ERR_FORMAT,
                            "the vocabulary has more tokens (%u) than the model "
                            "has logits (%d)",
                            nuri_vocab_n_tokens(serve_prompt_vocab(s->prompt)), s->n_vocab);
    }
    if (st == NURI_OK) {
        serve_sched_params sp = {.n_ctx = s->p.n_ctx,
                                 .max_seqs = s->p.max_seqs,
                                 .max_queue = s->p.max_queue,
                                 .n_batch = 256,
                                 .n_threads = s->p.n_threads};
        st = serve_sched_start(s->model, &sp, &s->metrics, &s->sched);
    }
    pthread_mutex_lock(&s->load_mu);
    s->load_status = st;
    if (st == NURI_OK) {
        s->state = LOAD_READY;
    } else {
        s->state = LOAD_FAILED;
        snprintf(s->load_error, sizeof s->load_error, "%s", nuri_last_error());
    }
    pthread_cond_broadcast(&s->load_cv);
    pthread_mutex_unlock(&s->load_mu);
    if (st == NURI_OK) {
        const char *note = serve_prompt_note(s->prompt);
        if (note[0]) server_log(s, "%s", note);
        server_log(s,
                   "model %s loaded: %d sequences, %d tokens of KV cache, at most %d per request",
                   s->model_name, s->p.max_seqs, serve_sched_n_ctx(s->sched),
                   serve_sched_seq_max(s->sched));
    } else {
        server_log(s, "cannot load the model: %s", s->load_error);
    }
    return NULL;
}

nuri_status serve_server_wait_loaded(serve_server *s)
{
    pthread_mutex_lock(&s->load_mu);
    while (s->state == LOAD_LOADING) pthread_cond_wait(&s->load_cv, &s->load_mu);
    nuri_status st = s->load_status;
    pthread_mutex_unlock(&s->load_mu);
    if (st != NURI_OK) nuri_error(st, "%s", s->load_error);
    return st;
}

/* ============================== lifecycle ============================== */

int serve_server_port(const serve_server *s)
{
    return s->port;
}

static void model_name_from_path(char *dst, size_t cap, const char *path)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    size_t n = strlen(b);
    if (n > 5 && !strcmp(b + n - 5, ".gguf")) n -= 5;
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < cap; i++) {
        char ch = b[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.';
        dst[o++] = ok ? ch : '_';
    }
    dst[o] = 0;
}

nuri_status serve_server_start(const serve_params *p, serve_server **out)
{
    *out = NULL;
    serve_server *s = calloc(1, sizeof *s);
    if (!s) return nuri_error(NURI_ERR_NOMEM, "out of memory");
    s->p = *p;
    s->listen_fd = -1;
    s->wake[0] = s->wake[1] = -1;
    if (!s->p.host) s->p.host = "127.0.0.1";
    if (s->p.max_seqs <= 0) s->p.max_seqs = 8;
    if (s->p.max_queue <= 0) s->p.max_queue = 4 * s->p.max_seqs;
    if (s->p.n_threads <= 0) s->p.n_threads = 1;
    if (!s->p.max_body) s->p.max_body = 4u << 20;
    if (s->p.header_timeout_ms <= 0) s->p.header_timeout_ms = 10000;
    if (s->p.idle_timeout_s <= 0) s->p.idle_timeout_s = 60;
    if (s->p.max_connections <= 0) s->p.max_connections = 256;
    if (p->model_name)
        snprintf(s->model_name, sizeof s->model_name, "%s", p->model_name);
    else
        model_name_from_path(s->model_name, sizeof s->model_name, p->model_path);
    serve_metrics_init(&s->metrics);
    pthread_mutex_init(&s->load_mu, NULL);
    pthread_cond_init(&s->load_cv, NULL);
    s->state = LOAD_LOADING;
    nuri_status st = NURI_OK;
    if (p->n_api_keys > 0) {
        s->api_keys = calloc((size_t)p->n_api_keys, sizeof *s->api_keys);
        for (int i = 0; s->api_keys && i < p->n_api_keys; i++)
            s->api_keys[i] = strdup(p->api_keys[i]);
    }

    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->p.port)};
    if (inet_pton(AF_INET, s->p.host, &a.sin_addr) != 1) {
        st = nuri_error(NURI_ERR_INVALID_ARG, "host '%s' is not a numeric IPv4 address", s->p.host);
        goto fail;
    }
    s->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int one = 1;
    if (s->listen_fd < 0 ||
        setsockopt(s->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(s->listen_fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(s->listen_fd, 128) != 0) {
        st = nuri_error(NURI_ERR_IO, "cannot listen on %s:%d: %s", s->p.host, s->p.port,
                        strerror(errno));
        goto fail;
    }
    socklen_t al = sizeof a;
    getsockname(s->listen_fd, (struct sockaddr *)&a, &al);
    s->port = ntohs(a.sin_port);
    if (pipe2(s->wake, O_CLOEXEC) != 0) {
        st = nuri_error(NURI_ERR_IO, "pipe: %s", strerror(errno));
        goto fail;
    }
    s->mhd =
        MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                             MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ITC,
                         0, NULL, NULL, on_request, s, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                         MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)s->p.idle_timeout_s,
                         MHD_OPTION_CONNECTION_LIMIT, (unsigned)s->p.max_connections,
                         MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)64 * 1024, MHD_OPTION_END);
    if (!s->mhd) {
        st = nuri_error(NURI_ERR_IO, "cannot start the HTTP daemon");
        goto fail;
    }
    if (pthread_create(&s->load_thread, NULL, load_main, s) != 0) {
        st = nuri_error(NURI_ERR_NOMEM, "cannot start the loader thread");
        goto fail;
    }
    s->load_started = true;
    if (pthread_create(&s->gate_thread, NULL, gate_main, s) != 0) {
        st = nuri_error(NURI_ERR_NOMEM, "cannot start the accept thread");
        goto fail;
    }
    s->gate_started = true;
    *out = s;
    return NURI_OK;
fail:
    serve_server_stop(s);
    return st;
}

void serve_server_stop(serve_server *s)
{
    if (!s) return;
    atomic_store(&s->stopping, true);
    if (s->wake[1] >= 0) (void)!write(s->wake[1], "x", 1);
    if (s->gate_started) pthread_join(s->gate_thread, NULL);
    if (s->load_started) pthread_join(s->load_thread, NULL);
    // stop the scheduler first: it fails running requests, so connection threads finish
    serve_sched_stop(s->sched);
    if (s->mhd) MHD_stop_daemon(s->mhd);
    serve_sched_free(s->sched);
    serve_prompt_free(s->prompt);
    nuri_model_free(s->model);
    if (s->listen_fd >= 0) close(s->listen_fd);
    if (s->wake[0] >= 0) close(s->wake[0]);
    if (s->wake[1] >= 0) close(s->wake[1]);
    for (int i = 0; s->api_keys && i < s->p.n_api_keys; i++) free(s->api_keys[i]);
    free(s->api_keys);
    serve_metrics_destroy(&s->metrics);
    pthread_cond_destroy(&s->load_cv);
    pthread_mutex_destroy(&s->load_mu);
    free(s);
}
