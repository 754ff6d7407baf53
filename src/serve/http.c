/*
 * http.c: the HTTP front of `nuri serve`: one event loop that accepts connections and reads
 * requests, a bounded pool of workers that run generation requests, the limits, and the server's
 * lifecycle (loading, draining, stopping).
 *
 * Threads and ownership:
 *   - the loop thread (epoll, level-triggered) owns every connection that is reading a request,
 *     writing a short answer, idle between kept-alive requests, or lingering before its close.
 *     It answers /health, /metrics, /v1/models, the web page (web.c), CORS preflights and every
 *     refusal itself, so those stay reachable
 *     however many other connections are open or trickling. It alone closes sockets (once).
 *   - a worker owns a connection while a generation request runs on it (routes.c), and hands it
 *     back through s->returned (and the eventfd) when the answer is done.
 *   - the loader thread loads the model at start-up; the scheduler thread (sched.c) generates.
 *
 * Limits, each answered with an OpenAI JSON error, never a reset or a hang: the request head
 * (16 KiB, HTTP_MAX_HEADERS lines, --header-timeout), the whole request (--max-body,
 * --request-timeout), connections (--max-conns, --max-conns-per-client: 503 with Retry-After at
 * once), requests in progress (the workers: 503 when all are busy), kept-alive idle connections
 * (--idle-timeout, closed silently) and clients that do not read what we write (30 s without
 * progress). Closing after an answer shuts our side first and reads what the client still sends
 * for up to 2 s (a "lingering close"), so that unread request bytes cannot turn the close into a
 * reset that destroys the answer before the client reads it; a lingering connection no longer
 * counts against the connection caps.
 */
#include "serve/server.h"

#include "base/sha256.h"
#include "store/kv_snapshot.h"
#include "store/store.h"

#include "base/status.h"
#include "kernels/kernels.h"
#include "serve/http_parse.h"
#include "serve/web.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define HEAD_MAX 16384     // bytes of request head (431 past it)
#define LINGER_S 2.0       // longest a closing connection is read from after our answer
#define WRITE_STALL_S 30.0 // a client that takes nothing of our answer for this long is gone
#define SWEEP_S 0.1        // how often the loop looks at deadlines
#define MAX_LINGERING                                                                              \
    1024               // lingering connections not counted (beyond: refused ones are closed at
                       // once, answered ones stay counted until they close)
#define FD_RESERVE 64  // descriptors kept for everything but connections
#define ORIGIN_MAX 256 // bytes of an Origin header that CORS can allow
#define ANSWER_HEAD_MAX 4096 // bytes of an answer's head (a preflight's echoed headers)

typedef enum conn_state {
    C_HEAD,   // reading a request head (or idle before one)
    C_BODY,   // reading its body
    C_WRITE,  // the loop writes an answer
    C_WORKER, // a worker runs the request
    C_LINGER, // our side is shut; reading until the client closes, then close
} conn_state;

enum route {
    R_NONE,
    R_CHAT,
    R_COMPLETION,
    R_HEALTH,
    R_METRICS,
    R_MODELS,
    R_RESPONSES, // POST /v1/responses: a generation
    R_STORE,     // stored objects: /v1/responses/{id}..., /v1/conversations...
    R_PAGE,      // GET / and /index.html: the web chat page
};

struct conn {
    int fd;
    uint32_t ip;    // client IPv4 address (network order)
    int idx;        // position in the front's table
    bool lingering; // answered (or refused) and lingering: not counted against the limits
    bool closed;    // closed; freed at the end of the loop's round (events may still name it)
    int minor;      // HTTP/1.<minor> of the current request
    conn_state st;
    uint32_t ev; // the epoll events asked for now
    buf in;      // bytes received: this request, and any the client sent after it
    long head_len;
    http_framing fr;
    http_chunked ch;
    size_t body_len; // decoded body bytes (at in.p + head_len)
    size_t raw_len;  // bytes of the request on the wire (head + body as sent)
    double t_start;  // the request's first byte (the accept for a new connection)
    double t_active; // last progress of our writing / lingering
    int n_requests;  // answered on this connection
    bool eof;        // the client closed its sending side
    bool keep_alive; // another request may follow the current answer
    enum route route;
    char path[512];
    char query[512];
    char method[16];
    char owner[65];
    // headers of every answer to this request: X-Nuri-Replica, and CORS's ("" for none)
    char cors[ORIGIN_MAX + 64 + SERVE_REPLICA_ID_MAX + 24];
    char *model_id; // GET /v1/models/{id}
    http_request req;
    buf out; // an answer the loop is writing
    size_t out_off;
    bool head_sent, chunked_out, gone; // worker side
    conn *next;
};

/* Per-client connection counts: open addressing over IPv4 addresses. */
typedef struct ip_slot {
    uint32_t ip;
    int32_t n; // 0: free
} ip_slot;

typedef struct front {
    conn **conns; // (max_conns + MAX_LINGERING) the open connections, in no order
    int n_conns;
    int n_lingering; // of those, answered connections lingering (not counted against the caps)
    conn *dead;      // closed this round, freed at its end
    ip_slot *ips;    // (ip_cap)
    size_t ip_cap;
    bool listening;
    double next_sweep;
    uint64_t refused_total;
} front;

static char ev_listen, ev_wake; // epoll tags for the two descriptors that are not connections

/* ============================== small helpers ============================== */

enum load_state server_state(serve_server *s)
{
    pthread_mutex_lock(&s->load_mu);
    enum load_state st = s->state;
    pthread_mutex_unlock(&s->load_mu);
    return st;
}

void serve_log(serve_server *s, const char *fmt, ...)
{
    if (!s->p.log) return;
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    s->p.log(s->p.log_ud, msg);
}

static const char *status_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 413:
        return "Content Too Large";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    default:
        return "Unknown";
    }
}

/* The head of an answer with a known length (a 204 has neither type nor length), with the
 * request's CORS headers. Returns its length, or -1 when it does not fit cap bytes. */
static int answer_head(char *dst, size_t cap, int status, const char *content_type,
                       const char *extra, const char *cors, size_t body_len, bool keep_alive,
                       int minor)
{
    char type_len[160] = "";
    if (status != 204)
        snprintf(type_len, sizeof type_len, "Content-Type: %s\r\nContent-Length: %zu\r\n",
                 content_type, body_len);
    int n = snprintf(dst, cap, "HTTP/1.1 %d %s\r\n%s%s%s%s%s%s", status, status_reason(status),
                     type_len, status == 503 ? "Retry-After: 1\r\n" : "",
                     status == 401 ? "WWW-Authenticate: Bearer\r\n" : "", extra ? extra : "", cors,
                     !keep_alive  ? "Connection: close\r\n\r\n"
                     : minor == 0 ? "Connection: keep-alive\r\n\r\n"
                                  : "\r\n");
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

static char *error_body(int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static char *error_body(int status, const char *code, const char *fmt, ...)
{
    serve_error e;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    serve_fail(&e, status,
               status == 401   ? "authentication_error"
               : status >= 500 ? "server_error"
                               : "invalid_request_error",
               NULL, code, "%s", msg);
    return serve_error_json(&e);
}

/* ============================== per-client counts ============================== */

static size_t ip_hash(uint32_t ip, size_t cap)
{
    return (size_t)((ip * 2654435761u) ^ (ip >> 16)) & (cap - 1);
}

static int32_t *ip_count(front *f, uint32_t ip, bool create)
{
    size_t i = ip_hash(ip, f->ip_cap);
    while (f->ips[i].n) {
        if (f->ips[i].ip == ip) return &f->ips[i].n;
        i = (i + 1) & (f->ip_cap - 1);
    }
    if (!create) return NULL;
    f->ips[i].ip = ip;
    return &f->ips[i].n;
}

/* One connection of ip closed; frees its slot at zero (backward-shift deletion). */
static void ip_release(front *f, uint32_t ip)
{
    size_t i = ip_hash(ip, f->ip_cap), m = f->ip_cap - 1;
    while (f->ips[i].n && f->ips[i].ip != ip) i = (i + 1) & m;
    if (!f->ips[i].n || --f->ips[i].n > 0) return;
    size_t hole = i;
    for (size_t j = (i + 1) & m; f->ips[j].n; j = (j + 1) & m) {
        size_t home = ip_hash(f->ips[j].ip, f->ip_cap);
        // move j into the hole unless its home lies cyclically in (hole, j]
        bool stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (stays) continue;
        f->ips[hole] = f->ips[j];
        f->ips[j].n = 0;
        hole = j;
    }
    f->ips[hole].n = 0;
}

/* ============================== connections: the loop's side ============================== */

static void conn_events(serve_server *s, conn *c, uint32_t ev)
{
    if (c->ev == ev) return;
    struct epoll_event e = {.events = ev, .data.ptr = c};
    epoll_ctl(s->ep, c->ev ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &e);
    c->ev = ev;
}

static void conn_free(conn *c)
{
    free(c->in.p);
    free(c->out.p);
    free(c->model_id);
    free(c);
}

/* The only place a connection's socket is closed (once: c->closed). */
static void conn_close(serve_server *s, front *f, conn *c)
{
    if (c->closed) return;
    if (c->ev) epoll_ctl(s->ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->closed = true;
    f->conns[c->idx] = f->conns[--f->n_conns];
    f->conns[c->idx]->idx = c->idx;
    if (c->lingering) {
        f->n_lingering--;
    } else {
        ip_release(f, c->ip);
        serve_metrics_connections(&s->metrics, f->n_conns - f->n_lingering);
    }
    c->next = f->dead;
    f->dead = c;
}

/* Shuts our side and reads until the client closes (or LINGER_S), then closes. */
static void conn_linger(serve_server *s, front *f, conn *c)
{
    if (c->eof) return conn_close(s, f, c);
    // its answer is out: it no longer holds a place under --max-conns or the per-client cap (a
    // client slow to close must not turn the next one away), up to MAX_LINGERING of them
    if (!c->lingering && f->n_lingering < MAX_LINGERING) {
        c->lingering = true;
        f->n_lingering++;
        ip_release(f, c->ip);
        serve_metrics_connections(&s->metrics, f->n_conns - f->n_lingering);
    }
    shutdown(c->fd, SHUT_WR);
    c->st = C_LINGER;
    c->t_active = serve_now();
    conn_events(s, c, EPOLLIN | EPOLLRDHUP);
}

static void conn_after_answer(serve_server *s, front *f, conn *c);

/* Writes what is left of c->out; when all of it is out, the answer is over. */
static void conn_flush(serve_server *s, front *f, conn *c)
{
    while (c->out_off < c->out.n) {
        ssize_t k =
            send(c->fd, c->out.p + c->out_off, c->out.n - c->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k > 0) {
            c->out_off += (size_t)k;
            c->t_active = serve_now();
            continue;
        }
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            conn_events(s, c, EPOLLOUT);
            return;
        }
        return conn_close(s, f, c); // the client is gone
    }
    c->out.n = c->out_off = 0;
    conn_after_answer(s, f, c);
}

/* Starts writing a whole answer from the loop. body may be NULL (out of memory: close). */
static void loop_answer(serve_server *s, front *f, conn *c, int status, const char *content_type,
                        const char *extra, char *body /* freed here */)
{
    if (!body) return conn_close(s, f, c);
    size_t bn = strlen(body);
    char head[ANSWER_HEAD_MAX];
    if (atomic_load(&s->draining) && c->idx >= 0) c->keep_alive = false;
    int hn = answer_head(head, sizeof head, status, content_type, extra, c->cors, bn, c->keep_alive,
                         c->minor);
    bool ok = hn >= 0 && buf_add(&c->out, head, (size_t)hn) &&
              (c->req.head_only || buf_add(&c->out, body, bn));
    free(body);
    serve_metrics_request(&s->metrics, status);
    if (!ok) return conn_close(s, f, c);
    c->st = C_WRITE;
    c->t_active = serve_now();
    conn_flush(s, f, c);
}

static void loop_error(serve_server *s, front *f, conn *c, int status, const char *code,
                       const char *extra, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
static void loop_error(serve_server *s, front *f, conn *c, int status, const char *code,
                       const char *extra, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    // an error before the whole request was read: the rest of it is not read, so close after
    // (a request without a body has been read whole once its head has)
    bool bodyless = c->head_len > 0 && !c->fr.chunked && c->fr.content_length == 0;
    if ((c->st == C_HEAD || c->st == C_BODY) && !bodyless) c->keep_alive = false;
    loop_answer(s, f, c, status, "application/json", extra, error_body(status, code, "%s", msg));
}

static void conn_advance(serve_server *s, front *f, conn *c);

/* After an answer: the next request on this connection, or the close. */
static void conn_after_answer(serve_server *s, front *f, conn *c)
{
    c->n_requests++;
    // keep what the client sent after this request: a client that half-closed after pipelining
    // several requests is owed every answer
    size_t rest = c->in.n > c->raw_len ? c->in.n - c->raw_len : 0;
    if (!c->keep_alive || (c->eof && rest == 0) || atomic_load(&s->draining))
        return conn_linger(s, f, c);
    memmove(c->in.p, c->in.p + c->raw_len, rest);
    c->in.n = rest;
    if (c->in.p) c->in.p[rest] = 0;
    c->head_len = 0;
    c->body_len = c->raw_len = 0;
    c->ch = (http_chunked){0};
    c->fr = (http_framing){0};
    c->route = R_NONE;
    c->cors[0] = 0;
    free(c->model_id);
    c->model_id = NULL;
    c->head_sent = c->chunked_out = c->gone = false;
    c->req = (http_request){0};
    c->st = C_HEAD;
    c->t_start = serve_now();
    conn_events(s, c, EPOLLIN | EPOLLRDHUP);
    if (rest) conn_advance(s, f, c);
}

/* ============================== requests: checks before the body ============================== */

static bool key_equal(const char *a, size_t la, const char *b)
{
    size_t lb = strlen(b);
    unsigned char d = la != lb;
    for (size_t i = 0; i < la; i++) d |= (unsigned char)(a[i] ^ b[i % (lb ? lb : 1)]);
    return d == 0;
}

static bool authorized(serve_server *s, const http_head *h)
{
    if (s->n_api_keys == 0) return true;
    const http_header *a = http_head_find(h, "Authorization");
    if (!a || a->value_len < 7 || strncasecmp(a->value, "Bearer ", 7)) return false;
    const char *k = a->value + 7;
    size_t n = a->value_len - 7;
    while (n && *k == ' ') k++, n--;
    bool ok = false;
    for (int i = 0; i < s->n_api_keys; i++) ok |= key_equal(k, n, s->api_keys[i]);
    return ok;
}

/* DNS rebinding: without API keys, a browser page must not reach the server through a name it
 * controls. IP literals and localhost cannot be rebound; other names must be allowed by name. */
static bool host_allowed(serve_server *s, const http_head *h)
{
    if (s->n_api_keys > 0) return true;
    for (int i = 0; i < s->n_allow_hosts; i++)
        if (!strcmp(s->allow_hosts[i], "*")) return true;
    const http_header *hd = http_head_find(h, "Host");
    if (!hd) return h->minor == 0; // HTTP/1.1 requires Host
    char host[256];
    size_t n = hd->value_len;
    if (n == 0 || n >= sizeof host) return false;
    memcpy(host, hd->value, n);
    host[n] = 0;
    if (host[0] == '[') { // an IPv6 literal
        char *e = strchr(host, ']');
        if (!e) return false;
        *e = 0;
        struct in6_addr a6;
        return inet_pton(AF_INET6, host + 1, &a6) == 1;
    }
    char *colon = strrchr(host, ':');
    if (colon) {
        for (const char *p = colon + 1; *p; p++)
            if (*p < '0' || *p > '9') return false;
        *colon = 0;
    }
    size_t hl = strlen(host);
    if (hl && host[hl - 1] == '.') host[--hl] = 0;
    struct in_addr a4;
    if (inet_pton(AF_INET, host, &a4) == 1) return true;
    if (!strcasecmp(host, "localhost")) return true;
    if (hl > 10 && !strcasecmp(host + hl - 10, ".localhost")) return true;
    for (int i = 0; i < s->n_allow_hosts; i++)
        if (!strcasecmp(s->allow_hosts[i], host)) return true;
    return false;
}

/* Whose stored objects a request may see: the SHA-256 of its API key (hex), or "" without keys.
 * The key itself is never stored. */
static void request_owner(serve_server *s, const http_head *h, char owner[65])
{
    owner[0] = 0;
    if (s->n_api_keys == 0) return;
    const http_header *a = http_head_find(h, "Authorization");
    if (!a || a->value_len < 7) return;
    const char *k = a->value + 7;
    size_t n = a->value_len - 7;
    while (n && *k == ' ') k++, n--;
    nuri_sha256 sh;
    uint8_t d[32];
    nuri_sha256_init(&sh);
    nuri_sha256_update(&sh, k, n);
    nuri_sha256_final(&sh, d);
    nuri_sha256_hex(d, owner);
}

/* ============================== CORS ==============================
 *
 * Browser pages from the origins named with --cors may call the API. Every answer to a request
 * whose Origin is allowed (errors, 401s and streams included) carries Access-Control-Allow-Origin
 * with that origin, and every answer carries Vary: Origin, so no cache hands one origin's answer to
 * another. A preflight (OPTIONS, answered by the loop before authentication: browsers never send
 * credentials with it) gets a 204 with the methods, the request headers it asked for (the openai
 * client's x-stainless-* among them) and Max-Age. A preflight from an origin that is not allowed
 * gets a 403 JSON error: browsers fail a preflight on any non-2xx answer just as on a 2xx without
 * the headers, proxies pass a 403 through unchanged, and its message (in the browser's network
 * panel, or to curl) says how to allow the origin, where a bare 204 would leave its developer
 * guessing. Without --cors there are no CORS headers and OPTIONS stays a 405.
 *
 * Why this is safe without API keys: the browser enforces the policy, and every request that could
 * change something needs a preflight, because POST bodies must be application/json (415 otherwise)
 * and DELETE is not a "simple" method. A wildcard origin without keys would let any page the user
 * visits drive the server, so serve_server_start refuses "*" unless keys are set. */

/* The request's Origin, when it has one that could be allowed (printable, no spaces or commas,
 * under ORIGIN_MAX bytes), into origin[ORIGIN_MAX]. */
static bool request_origin(const http_head *h, char *origin)
{
    const http_header *o = http_head_find(h, "Origin");
    if (!o || o->value_len == 0 || o->value_len >= ORIGIN_MAX) return false;
    for (size_t i = 0; i < o->value_len; i++) {
        unsigned char ch = (unsigned char)o->value[i];
        if (ch <= ' ' || ch >= 127 || ch == ',') return false;
    }
    memcpy(origin, o->value, o->value_len);
    origin[o->value_len] = 0;
    return true;
}

static bool origin_allowed(serve_server *s, const char *origin)
{
    for (int i = 0; i < s->n_cors_origins; i++)
        if (!strcmp(s->cors_origins[i], "*") || !strcasecmp(s->cors_origins[i], origin))
            return true;
    return false;
}

/* Sets the CORS headers of every answer to this request (c->cors). */
static void cors_prepare(serve_server *s, conn *c, const http_head *h)
{
    // the replica's name first: a balancer (or a client) learns where this answer was made, and
    // so where the pages of its sequence are (docs/SCALING.md)
    int n = 0;
    if (s->replica_id[0])
        n = snprintf(c->cors, sizeof c->cors, "X-Nuri-Replica: %s\r\n", s->replica_id);
    else
        c->cors[0] = 0;
    if (s->n_cors_origins == 0) return;
    char origin[ORIGIN_MAX];
    if (request_origin(h, origin) && origin_allowed(s, origin))
        snprintf(c->cors + n, sizeof c->cors - (size_t)n,
                 "Access-Control-Allow-Origin: %s\r\nVary: Origin\r\n", origin);
    else
        snprintf(c->cors + n, sizeof c->cors - (size_t)n, "Vary: Origin\r\n");
}

/* True when every byte of v[0..n) may appear in a list of header names. */
static bool header_name_list(const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)v[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              strchr("!#$%&'*+-.^_`|~, \t", ch)))
            return false;
    }
    return true;
}

/* OPTIONS while CORS is on: answers the preflight from the loop. */
static void cors_preflight(serve_server *s, front *f, conn *c, const http_head *h)
{
    // a preflight with a body is odd but legal: its body is not read, so close after the answer
    if (c->fr.chunked || c->fr.content_length > 0) c->keep_alive = false;
    const char *methods = "GET, POST, DELETE, OPTIONS";
    char extra[2560];
    if (!http_head_find(h, "Origin")) { // not a preflight (curl -X OPTIONS): what is allowed
        snprintf(extra, sizeof extra, "Allow: %s\r\n", methods);
        return loop_answer(s, f, c, 204, "", extra, strdup(""));
    }
    char origin[ORIGIN_MAX];
    bool valid = request_origin(h, origin);
    if (!valid || !origin_allowed(s, origin))
        return loop_error(s, f, c, 403, "origin_not_allowed", NULL,
                          "the origin %s may not call this server from a browser; start nuri "
                          "serve with --cors %s to allow it",
                          valid ? origin : "(malformed)", valid ? origin : "ORIGIN");
    const http_header *rh = http_head_find(h, "Access-Control-Request-Headers");
    char names[2048] = "Authorization, Content-Type";
    if (rh && rh->value_len > 0 && rh->value_len < sizeof names &&
        header_name_list(rh->value, rh->value_len)) {
        memcpy(names, rh->value, rh->value_len);
        names[rh->value_len] = 0;
    }
    snprintf(extra, sizeof extra,
             "Access-Control-Allow-Methods: %s\r\nAccess-Control-Allow-Headers: %s\r\n"
             "Access-Control-Max-Age: 7200\r\nVary: Access-Control-Request-Headers\r\n",
             methods, names);
    loop_answer(s, f, c, 204, "", extra, strdup(""));
}

static bool is_json(const http_head *h)
{
    const http_header *ct = http_head_find(h, "Content-Type");
    if (!ct) return false;
    size_t n = 0;
    while (n < ct->value_len && ct->value[n] != ';') n++;
    while (n && (ct->value[n - 1] == ' ' || ct->value[n - 1] == '\t')) n--;
    return n == 16 && !strncasecmp(ct->value, "application/json", 16);
}

/* The head is complete and well-formed: decide everything that does not need the body. Returns
 * false when an answer was started (the request ends there). */
static bool check_head(serve_server *s, front *f, conn *c, const http_head *h)
{
    int status;
    const char *why;
    cors_prepare(s, c, h);
    if (!http_head_framing(h, &c->fr, &status, &why)) {
        c->head_len = 0; // where the request ends is unknown: answer, then close
        loop_error(s, f, c, status,
                   status == 400   ? "invalid_content_length"
                   : status == 417 ? "expectation_failed"
                                   : "unsupported_transfer_encoding",
                   NULL, "%s", why);
        return false;
    }
    c->keep_alive = c->fr.keep_alive;
    c->req.keep_alive = c->fr.keep_alive;
    c->req.minor = h->minor;
    // the path, without the query
    size_t pn = 0;
    while (pn < h->target_len && h->target[pn] != '?' && h->target[pn] != '#') pn++;
    if (pn >= sizeof c->path) {
        loop_error(s, f, c, 404, "not_found", NULL, "no route for a path of %zu bytes", pn);
        return false;
    }
    memcpy(c->path, h->target, pn);
    c->path[pn] = 0;
    c->req.path = c->path;
    size_t qn = 0;
    if (pn < h->target_len && h->target[pn] == '?') {
        const char *q = h->target + pn + 1;
        while (qn < h->target_len - pn - 1 && q[qn] != '#' && qn < sizeof c->query - 1) qn++;
        memcpy(c->query, q, qn);
    }
    c->query[qn] = 0;
    c->req.query = c->query;
    char method[16];
    size_t mn = h->method_len < sizeof method - 1 ? h->method_len : sizeof method - 1;
    memcpy(method, h->method, mn);
    method[mn] = 0;
    snprintf(c->method, sizeof c->method, "%s", method);
    c->req.method = c->method;
    if (!host_allowed(s, h)) {
        loop_error(s, f, c, 403, "host_not_allowed", NULL,
                   "the Host header does not name this server (an IP address or localhost); "
                   "start nuri serve with --allow-host NAME to accept NAME");
        return false;
    }
    if (!strcmp(method, "OPTIONS") && s->n_cors_origins > 0) {
        cors_preflight(s, f, c, h);
        return false;
    }
    bool is_health = !strcmp(c->path, "/health");
    // the page has no secrets (it asks the user for the key itself)
    bool is_page = !strcmp(c->path, "/") || !strcmp(c->path, "/index.html");
    if (!is_health && !is_page && !authorized(s, h)) {
        loop_error(s, f, c, 401, "invalid_api_key", NULL,
                   "missing or wrong API key: send 'Authorization: Bearer KEY'");
        return false;
    }
    request_owner(s, h, c->owner);
    c->req.owner = c->owner;
    const char *p = c->path;
    bool gen = false, store = false;
    if (!strcmp(p, "/v1/responses") || !strcmp(p, "/responses")) {
        c->route = R_RESPONSES, gen = true;
    } else if (!strncmp(p, "/v1/responses/", 14) || !strcmp(p, "/v1/conversations") ||
               !strncmp(p, "/v1/conversations/", 18)) {
        c->route = R_STORE, store = true;
    } else if (!strcmp(p, "/v1/chat/completions") || !strcmp(p, "/chat/completions")) {
        c->route = R_CHAT, gen = true;
    } else if (!strcmp(p, "/v1/completions") || !strcmp(p, "/completions")) {
        c->route = R_COMPLETION, gen = true;
    } else if (is_health) {
        c->route = R_HEALTH;
    } else if (is_page) {
        c->route = R_PAGE;
    } else if (!strcmp(p, "/metrics")) {
        c->route = R_METRICS;
    } else if (!strcmp(p, "/v1/models") || !strncmp(p, "/v1/models/", 11)) {
        c->route = R_MODELS;
        if (p[10] == '/' && !(c->model_id = strdup(p + 11))) {
            loop_error(s, f, c, 500, NULL, NULL, "out of memory");
            return false;
        }
    } else {
        loop_error(s, f, c, 404, "not_found", NULL, "no route for %s %.200s", method, p);
        return false;
    }
    bool post = !strcmp(method, "POST");
    bool get = !strcmp(method, "GET"), head = !strcmp(method, "HEAD");
    if (store && !(post || get || !strcmp(method, "DELETE"))) {
        loop_error(s, f, c, 405, "method_not_allowed", "Allow: GET, POST, DELETE\r\n",
                   "%.200s does not take %s", p, method);
        return false;
    }
    if (!store && (gen ? !post : !(get || head))) {
        loop_error(s, f, c, 405, "method_not_allowed",
                   gen ? "Allow: POST\r\n" : "Allow: GET, HEAD\r\n",
                   "%.200s does not take %s (use %s)", p, method, gen ? "POST" : "GET");
        return false;
    }
    c->req.head_only = head;
    if (post && !is_json(h)) {
        loop_error(s, f, c, 415, "unsupported_media_type", NULL,
                   "the request body must be JSON, sent with 'Content-Type: application/json'");
        return false;
    }
    if (c->fr.content_length > 0 && (uint64_t)c->fr.content_length > s->p.max_body) {
        loop_error(s, f, c, 413, "request_too_large", NULL,
                   "the request body is %lld bytes; at most %zu are accepted",
                   (long long)c->fr.content_length, s->p.max_body);
        return false;
    }
    if (gen && c->fr.expect_continue) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        (void)!send(c->fd, cont, sizeof cont - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    return true;
}

/* ============================== requests: dispatch ============================== */

static void dispatch(serve_server *s, front *f, conn *c)
{
    c->req.body = c->in.p ? c->in.p + c->head_len : "";
    c->req.body_len = c->body_len;
    int status = 200;
    char *body;
    switch (c->route) {
    case R_HEALTH:
        body = routes_health(s, &status);
        return loop_answer(s, f, c, status, "application/json", NULL, body);
    case R_METRICS:
        body = serve_metrics_text(&s->metrics, s->model_name);
        return loop_answer(s, f, c, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, body);
    case R_MODELS:
        body = routes_models(s, c->model_id, &status);
        return loop_answer(s, f, c, status, "application/json", NULL, body);
    case R_PAGE: {
        size_t n;
        return loop_answer(s, f, c, 200, "text/html; charset=utf-8", serve_web_headers(),
                           strdup(serve_web_page(&n)));
    }
    default:
        break;
    }
    if (atomic_load(&s->draining))
        return loop_error(s, f, c, 503, "shutting_down", NULL, "the server is shutting down");
    // stored responses and conversations need only the store, opened before the model loads:
    // a returning user reads them back while the model (re)loads
    enum load_state ls = c->route == R_STORE ? LOAD_READY : server_state(s);
    if (ls == LOAD_FAILED)
        return loop_error(s, f, c, 503, "model_load_failed", NULL, "the model failed to load: %s",
                          s->load_error);
    if (ls != LOAD_READY)
        return loop_error(s, f, c, 503, "model_loading", NULL,
                          "the model is still loading; retry after a moment");
    pthread_mutex_lock(&s->q_mu);
    bool room = s->busy < s->n_workers;
    if (room) s->busy++;
    pthread_mutex_unlock(&s->q_mu);
    if (!room)
        return loop_error(s, f, c, 503, "server_busy", NULL,
                          "the server is busy: every request slot is in use; retry after a "
                          "moment");
    if (c->ev) epoll_ctl(s->ep, EPOLL_CTL_DEL, c->fd, NULL);
    c->ev = 0;
    c->st = C_WORKER;
    pthread_mutex_lock(&s->q_mu); // the worker owns c from here
    s->work[(s->work_head + s->work_count) % s->n_workers] = c;
    s->work_count++;
    pthread_cond_signal(&s->q_cv);
    pthread_mutex_unlock(&s->q_mu);
}

/* Parses what has arrived; dispatches a complete request. */
static void conn_advance(serve_server *s, front *f, conn *c)
{
    if (c->st == C_HEAD) {
        http_head h;
        const char *why;
        long r = http_parse_head(c->in.p, c->in.n, &h, &why);
        if (r == HTTP_INCOMPLETE) {
            if (c->in.n >= HEAD_MAX)
                loop_error(s, f, c, 431, "headers_too_large", NULL,
                           "the request head is larger than %d bytes", HEAD_MAX);
            return;
        }
        if (r == HTTP_MALFORMED || r > HEAD_MAX) {
            if (r > HEAD_MAX)
                loop_error(s, f, c, 431, "headers_too_large", NULL,
                           "the request head is larger than %d bytes", HEAD_MAX);
            else
                loop_error(s, f, c, 400, "bad_request", NULL, "%s", why);
            return;
        }
        c->head_len = r;
        c->raw_len = (size_t)r;
        c->minor = h.minor;
        if (!check_head(s, f, c, &h)) return;
        c->st = C_BODY;
        c->ch = (http_chunked){.in = (size_t)r, .out = (size_t)r};
    }
    if (c->st != C_BODY) return;
    size_t have = c->in.n - (size_t)c->head_len;
    if (c->fr.chunked) {
        const char *why;
        int r = http_chunked_decode(&c->ch, c->in.p, c->in.n, (size_t)c->head_len + s->p.max_body,
                                    &why);
        if (r == HTTP_MALFORMED) {
            bool big = !strcmp(why, "the request body is too large");
            return loop_error(s, f, c, big ? 413 : 400, big ? "request_too_large" : "bad_request",
                              NULL, "%s", why);
        }
        if (r == 0) {
            // decoded bytes moved down: what is left undecoded sits at ch.in, keep it compact
            size_t pending = c->in.n - c->ch.in;
            memmove(c->in.p + c->ch.out, c->in.p + c->ch.in, pending);
            c->in.n = c->ch.out + pending;
            c->in.p[c->in.n] = 0;
            c->ch.in = c->ch.out;
            return;
        }
        // complete: the raw request ends at ch.in; the decoded body ends at ch.out
        size_t rest = c->in.n - c->ch.in;
        memmove(c->in.p + c->ch.out, c->in.p + c->ch.in, rest);
        c->in.n = c->ch.out + rest;
        c->in.p[c->in.n] = 0;
        c->body_len = c->ch.out - (size_t)c->head_len;
        c->raw_len = c->ch.out;
    } else {
        if (have < (uint64_t)c->fr.content_length) return;
        c->body_len = (size_t)c->fr.content_length;
        c->raw_len = (size_t)c->head_len + c->body_len;
    }
    // the body (which ends at raw_len) must end in a NUL: when a pipelined request follows it,
    // that request moves up one byte to make room
    if (c->in.n > c->raw_len) {
        size_t rest = c->in.n - c->raw_len;
        if (!buf_add(&c->in, "", 1)) return conn_close(s, f, c);
        memmove(c->in.p + c->raw_len + 1, c->in.p + c->raw_len, rest);
        c->in.p[c->raw_len++] = 0; // the NUL now belongs to this request's bytes
    } else if (!c->in.p && !buf_add(&c->in, "", 0)) {
        return conn_close(s, f, c);
    }
    dispatch(s, f, c);
}

static void conn_read(serve_server *s, front *f, conn *c)
{
    size_t cap = c->st == C_HEAD ? HEAD_MAX + 1
                 : c->fr.chunked ? (size_t)c->head_len + s->p.max_body + 8192
                                 : (size_t)c->head_len + (size_t)c->fr.content_length;
    for (;;) {
        if (c->in.n >= cap) break;
        size_t want = cap - c->in.n;
        if (want > 65536) want = 65536;
        if (c->in.cap < c->in.n + want + 1) {
            size_t nc = c->in.cap ? c->in.cap : 1024;
            while (nc < c->in.n + want + 1) nc *= 2;
            char *q = realloc(c->in.p, nc);
            if (!q) return conn_close(s, f, c);
            c->in.p = q;
            c->in.cap = nc;
        }
        ssize_t k = recv(c->fd, c->in.p + c->in.n, want, MSG_DONTWAIT);
        if (k > 0) {
            if (c->in.n == 0 && c->st == C_HEAD) c->t_start = serve_now();
            c->in.n += (size_t)k;
            c->in.p[c->in.n] = 0;
            if ((size_t)k < want) break;
            continue;
        }
        if (k == 0) {
            c->eof = true;
            break;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        return conn_close(s, f, c); // reset
    }
    conn_advance(s, f, c);
    // read to its end without a complete request: it can never complete
    if (!c->closed && c->eof && (c->st == C_HEAD || c->st == C_BODY)) conn_close(s, f, c);
}

/* ============================== the loop ============================== */

static void refuse(serve_server *s, front *f, int fd, const char *code, const char *msg)
{
    char *body = error_body(503, code, "%s", msg);
    char head[256];
    int hn = answer_head(head, sizeof head, 503, "application/json", NULL, "",
                         body ? strlen(body) : 0, false, 1);
    struct iovec iv[2] = {{head, hn > 0 ? (size_t)hn : 0}, {body, body ? strlen(body) : 0}};
    struct msghdr mh = {.msg_iov = iv, .msg_iovlen = 2};
    (void)!sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    free(body);
    serve_metrics_request(&s->metrics, 503);
    f->refused_total++;
    serve_metrics_refused(&s->metrics);
    conn *c = f->n_lingering < MAX_LINGERING ? calloc(1, sizeof *c) : NULL;
    if (!c) { // too many lingering already: read what came, close
        char sink[4096];
        shutdown(fd, SHUT_WR);
        (void)!recv(fd, sink, sizeof sink, MSG_DONTWAIT);
        close(fd);
        return;
    }
    c->fd = fd;
    c->lingering = true;
    c->idx = f->n_conns;
    f->conns[f->n_conns++] = c;
    f->n_lingering++;
    conn_linger(s, f, c);
}

static void loop_accept(serve_server *s, front *f)
{
    for (int k = 0; k < 256; k++) {
        struct sockaddr_in a;
        socklen_t al = sizeof a;
        int fd = accept4(s->listen_fd, (struct sockaddr *)&a, &al, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if ((errno == EMFILE || errno == ENFILE) && s->spare_fd >= 0) {
                // out of descriptors: free the spare one to answer this client, then take it back
                close(s->spare_fd);
                fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
                if (fd >= 0)
                    refuse(s, f, fd, "too_many_connections",
                           "the server has no descriptors left; retry after a moment");
                s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                continue;
            }
            return; // EAGAIN: all taken
        }
        uint32_t ip = a.sin_family == AF_INET ? a.sin_addr.s_addr : 0;
        if (f->n_conns - f->n_lingering >= s->p.max_connections) {
            // full: a kept-alive connection that waits for nothing makes room first
            conn *idle = NULL;
            for (int i = 0; i < f->n_conns; i++) {
                conn *x = f->conns[i];
                if (x->st == C_HEAD && x->in.n == 0 && x->n_requests > 0 &&
                    (!idle || x->t_start < idle->t_start))
                    idle = x;
            }
            if (idle) conn_close(s, f, idle);
        }
        if (f->n_conns - f->n_lingering >= s->p.max_connections) {
            refuse(s, f, fd, "too_many_connections",
                   "the server has too many open connections; retry after a moment");
            continue;
        }
        int32_t *n = ip_count(f, ip, false);
        if (n && *n >= s->p.max_conns_per_client) {
            refuse(s, f, fd, "too_many_connections",
                   "this client has too many open connections; retry after a moment");
            continue;
        }
        conn *c = calloc(1, sizeof *c);
        if (!c) {
            refuse(s, f, fd, "out_of_memory", "the server is out of memory");
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c->fd = fd;
        c->ip = ip;
        c->st = C_HEAD;
        c->t_start = serve_now();
        c->minor = 1;
        c->idx = f->n_conns;
        f->conns[f->n_conns++] = c;
        (*ip_count(f, ip, true))++;
        serve_metrics_connections(&s->metrics, f->n_conns - f->n_lingering);
        conn_events(s, c, EPOLLIN | EPOLLRDHUP);
    }
}

static void loop_stop_listening(serve_server *s, front *f)
{
    if (!f->listening) return;
    epoll_ctl(s->ep, EPOLL_CTL_DEL, s->listen_fd, NULL);
    close(s->listen_fd);
    s->listen_fd = -1;
    f->listening = false;
}

/* Connections the workers are done with. */
static void loop_returned(serve_server *s, front *f)
{
    pthread_mutex_lock(&s->q_mu);
    conn *list = s->returned;
    s->returned = NULL;
    pthread_mutex_unlock(&s->q_mu);
    while (list) {
        conn *c = list;
        list = c->next;
        c->next = NULL;
        if (c->gone) {
            conn_close(s, f, c);
            continue;
        }
        c->st = C_WRITE;
        conn_after_answer(s, f, c);
    }
}

static void loop_sweep(serve_server *s, front *f, double now)
{
    double hdr = s->p.header_timeout_ms * 1e-3, req = s->p.request_timeout_ms * 1e-3;
    for (int i = f->n_conns - 1; i >= 0; i--) {
        conn *c = f->conns[i];
        switch (c->st) {
        case C_HEAD:
            // idle between requests (while draining too: a request that comes is answered 503
            // shutting_down, so the client learns why, rather than finding the socket closed)
            if (c->in.n == 0 && c->n_requests > 0) {
                if (now - c->t_start > s->p.idle_timeout_s) conn_close(s, f, c);
            } else if (now - c->t_start > hdr) {
                loop_error(s, f, c, 408, "request_timeout", NULL,
                           "the request head did not arrive within %d ms", s->p.header_timeout_ms);
            }
            break;
        case C_BODY:
            if (now - c->t_start > req)
                loop_error(s, f, c, 408, "request_timeout", NULL,
                           "the request did not arrive within %d ms", s->p.request_timeout_ms);
            break;
        case C_WRITE:
            if (now - c->t_active > WRITE_STALL_S) conn_close(s, f, c);
            break;
        case C_LINGER:
            if (now - c->t_active > LINGER_S) conn_close(s, f, c);
            break;
        case C_WORKER:
            break;
        }
    }
}

static void *loop_main(void *arg)
{
    serve_server *s = arg;
    front *f = s->front;
    struct epoll_event evs[256];
    while (!atomic_load(&s->stopping)) {
        int n = epoll_wait(s->ep, evs, 256, (int)(SWEEP_S * 1000));
        if (n < 0 && errno != EINTR) break;
        if (atomic_load(&s->stopping)) break;
        if (atomic_load(&s->draining)) loop_stop_listening(s, f);
        for (int i = 0; i < n; i++) {
            void *tag = evs[i].data.ptr;
            if (tag == &ev_listen) {
                if (f->listening) loop_accept(s, f);
                continue;
            }
            if (tag == &ev_wake) {
                uint64_t x;
                (void)!read(s->wake_fd, &x, sizeof x);
                loop_returned(s, f);
                continue;
            }
            conn *c = tag;
            uint32_t e = evs[i].events;
            if (c->closed) continue;
            switch (c->st) {
            case C_HEAD:
            case C_BODY:
                if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) conn_read(s, f, c);
                break;
            case C_WRITE:
                if (e & (EPOLLERR | EPOLLHUP))
                    conn_close(s, f, c);
                else if (e & EPOLLOUT)
                    conn_flush(s, f, c);
                break;
            case C_LINGER: {
                char sink[4096];
                ssize_t k;
                while ((k = recv(c->fd, sink, sizeof sink, MSG_DONTWAIT)) > 0) {
                }
                if (k == 0 || (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
                    conn_close(s, f, c);
                break;
            }
            case C_WORKER:
                break;
            }
        }
        double now = serve_now();
        if (now >= f->next_sweep) {
            loop_sweep(s, f, now);
            f->next_sweep = now + SWEEP_S;
        }
        while (f->dead) {
            conn *c = f->dead;
            f->dead = c->next;
            conn_free(c);
        }
    }
    // stopping: close what the loop owns; the workers' connections are closed by serve_server_stop
    loop_stop_listening(s, f);
    for (int i = f->n_conns - 1; i >= 0; i--)
        if (f->conns[i]->st != C_WORKER) conn_close(s, f, f->conns[i]);
    while (f->dead) {
        conn *c = f->dead;
        f->dead = c->next;
        conn_free(c);
    }
    return NULL;
}

/* ============================== connections: a worker's side ============================== */

const http_request *conn_request(conn *c)
{
    return &c->req;
}

bool conn_head_sent(conn *c)
{
    return c->head_sent;
}

bool conn_half_closed(conn *c)
{
    if (c->eof) return true;
    struct pollfd pf = {.fd = c->fd, .events = POLLRDHUP};
    if (poll(&pf, 1, 0) > 0 && (pf.revents & POLLRDHUP)) c->eof = true;
    return c->eof;
}

bool conn_gone(serve_server *s, conn *c)
{
    (void)s;
    if (c->gone) return true;
    struct pollfd pf = {.fd = c->fd, .events = POLLRDHUP};
    if (poll(&pf, 1, 0) <= 0) return false;
    if (pf.revents & POLLRDHUP) c->eof = true; // half-closed: it may still read
    if (pf.revents & (POLLERR | POLLHUP | POLLNVAL)) c->gone = true;
    return c->gone;
}

/* Writes all of p[0..n), waiting for the client as long as it takes something within
 * WRITE_STALL_S (1 s once the server stops). */
static bool conn_write_all(serve_server *s, conn *c, const char *p, size_t n)
{
    double last = serve_now();
    while (n > 0) {
        if (c->gone) return false;
        ssize_t k = send(c->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k > 0) {
            p += k;
            n -= (size_t)k;
            last = serve_now();
            continue;
        }
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            double limit = atomic_load(&s->stopping) ? 1.0 : WRITE_STALL_S;
            if (serve_now() - last > limit) break;
            struct pollfd pf = {.fd = c->fd, .events = POLLOUT};
            poll(&pf, 1, 100);
            continue;
        }
        break;
    }
    if (n > 0) c->gone = true;
    return n == 0;
}

bool conn_reply(serve_server *s, conn *c, int status, const char *content_type,
                const char *extra_headers, const char *body, size_t body_len)
{
    char head[ANSWER_HEAD_MAX];
    if (atomic_load(&s->draining)) c->keep_alive = false;
    int hn = answer_head(head, sizeof head, status, content_type, extra_headers, c->cors, body_len,
                         c->keep_alive, c->minor);
    serve_metrics_request(&s->metrics, status);
    c->head_sent = true;
    return hn >= 0 && conn_write_all(s, c, head, (size_t)hn) &&
           (c->req.head_only || conn_write_all(s, c, body, body_len));
}

bool conn_reply_error(serve_server *s, conn *c, const serve_error *e)
{
    char *body = serve_error_json(e);
    if (!body) return false;
    bool ok = conn_reply(s, c, e->http, "application/json", NULL, body, strlen(body));
    free(body);
    return ok;
}

bool conn_reply_json(serve_server *s, conn *c, int status, json_t *v)
{
    char *body = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    if (!body) return false;
    bool ok = conn_reply(s, c, status, "application/json", NULL, body, strlen(body));
    free(body);
    return ok;
}

bool conn_reply_early_head(serve_server *s, conn *c, const char *content_type)
{
    char head[1024];
    int hn = snprintf(head, sizeof head,
                      "HTTP/1.1 200 OK\r\nContent-Type: %s\r\n%sConnection: close\r\n\r\n",
                      content_type, c->cors);
    serve_metrics_request(&s->metrics, 200);
    c->head_sent = true;
    c->keep_alive = false;
    return conn_write_all(s, c, head, (size_t)hn);
}

bool conn_reply_body_rest(serve_server *s, conn *c, const char *body, size_t n)
{
    return conn_write_all(s, c, body, n);
}

bool conn_stream_begin(serve_server *s, conn *c, int status, const char *content_type)
{
    char head[1024];
    if (atomic_load(&s->draining)) c->keep_alive = false;
    c->chunked_out = c->minor == 1;
    if (!c->chunked_out) c->keep_alive = false;
    int hn = snprintf(head, sizeof head,
                      "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nCache-Control: no-cache\r\n%s%s%s",
                      status, status_reason(status), content_type, c->cors,
                      c->chunked_out ? "Transfer-Encoding: chunked\r\n" : "",
                      c->keep_alive ? "\r\n" : "Connection: close\r\n\r\n");
    serve_metrics_request(&s->metrics, status);
    c->head_sent = true;
    return conn_write_all(s, c, head, (size_t)hn);
}

bool conn_stream_write(serve_server *s, conn *c, const char *p, size_t n)
{
    if (!c->chunked_out) return conn_write_all(s, c, p, n);
    char size[24];
    int k = snprintf(size, sizeof size, "%zx\r\n", n);
    return conn_write_all(s, c, size, (size_t)k) && conn_write_all(s, c, p, n) &&
           conn_write_all(s, c, "\r\n", 2);
}

bool conn_stream_end(serve_server *s, conn *c)
{
    return !c->chunked_out || conn_write_all(s, c, "0\r\n\r\n", 5);
}

/* ============================== workers ============================== */

static void *worker_main(void *arg)
{
    serve_server *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->q_mu);
        while (s->work_count == 0 && !atomic_load(&s->stopping))
            pthread_cond_wait(&s->q_cv, &s->q_mu);
        if (s->work_count == 0) {
            pthread_mutex_unlock(&s->q_mu);
            return NULL;
        }
        conn *c = s->work[s->work_head];
        s->work_head = (s->work_head + 1) % s->n_workers;
        s->work_count--;
        pthread_mutex_unlock(&s->q_mu);

        if (atomic_load(&s->stopping)) {
            serve_error e;
            serve_fail(&e, 503, "server_error", NULL, "shutting_down",
                       "the server is shutting down");
            conn_reply_error(s, c, &e);
        } else {
            if (c->route == R_RESPONSES)
                routes_responses(s, c);
            else if (c->route == R_STORE)
                routes_store(s, c);
            else
                routes_generate(s, c, c->route == R_CHAT ? SERVE_CHAT : SERVE_COMPLETION);
        }

        pthread_mutex_lock(&s->q_mu);
        c->next = s->returned;
        s->returned = c;
        s->busy--;
        pthread_cond_broadcast(&s->q_cv); // serve_server_idle waiters
        pthread_mutex_unlock(&s->q_mu);
        uint64_t one = 1;
        (void)!write(s->wake_fd, &one, sizeof one);
    }
}

/* ============================== loading ============================== */

/* What a KV snapshot must match to be loaded into this server: the model file (its size, its
 * header, samples of its weights), the kernels that computed the KV (the CPU's ISA and the
 * NURI_ISA / NURI_PACK / NURI_AMX choices) and the KV layout; SHA-256 of all of it. */
static nuri_status model_identity(serve_server *s, uint8_t id[32])
{
    nuri_sha256 h;
    nuri_sha256_init(&h);
    const nuri_hparams *hp = &s->model->hp;
    char line[512];
    const char *isa = getenv("NURI_ISA"), *pack = getenv("NURI_PACK"), *amx = getenv("NURI_AMX");
    int n = snprintf(line, sizeof line, "nuri-kv-1 %s isa=%s/%s pack=%s amx=%s layers=%d kv=%dx%d",
                     NURI_VERSION, nuri_isa_name(nuri_cpu_isa()), isa ? isa : "", pack ? pack : "",
                     amx ? amx : "", (int)hp->n_layer, (int)hp->n_head_kv, (int)hp->head_dim);
    nuri_sha256_update(&h, line, (size_t)n);
    int fd = open(s->p.model_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return nuri_error(NURI_ERR_IO, "cannot read the model for its identity: %s",
                          strerror(errno));
    struct stat st;
    uint64_t size = fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
    nuri_sha256_update(&h, &size, sizeof size);
    uint64_t head = gguf_data_offset(s->model->file);
    if (head > (64u << 20)) head = 64u << 20;
    static uint8_t chunk[1 << 16];
    bool ok = true;
    for (uint64_t at = 0; ok && at < head;) { // the header: metadata and tensor table
        size_t want = head - at < sizeof chunk ? (size_t)(head - at) : sizeof chunk;
        ssize_t r = pread(fd, chunk, want, (off_t)at);
        ok = r > 0;
        if (ok) nuri_sha256_update(&h, chunk, (size_t)r), at += (uint64_t)r;
    }
    uint64_t data = gguf_data_offset(s->model->file);
    for (int i = 0; ok && i < 16 && size > data; i++) { // 16 samples of the weights
        uint64_t at = data + (size - data) / 16 * (uint64_t)i;
        ssize_t r = pread(fd, chunk, 4096, (off_t)at);
        ok = r >= 0;
        if (r > 0) nuri_sha256_update(&h, chunk, (size_t)r);
    }
    close(fd);
    if (!ok) return nuri_error(NURI_ERR_IO, "cannot read the model for its identity");
    nuri_sha256_final(&h, id);
    return NURI_OK;
}

static void *load_main(void *arg)
{
    serve_server *s = arg;
    nuri_status st = nuri_model_load(s->p.model_path, &s->model);
    if (st == NURI_OK) st = serve_prompt_load(s->model, s->p.chat_template, &s->prompt);
    if (st == NURI_OK) {
        serve_prompt_set_unsafe_special(s->prompt, s->p.unsafe_special_tokens);
        s->n_vocab = s->model->hp.n_vocab; // nuri_model_load checked the vocabulary against it
    }
    if (st == NURI_OK)
        st = nuri_token_trie_new(serve_prompt_vocab(s->prompt), s->n_vocab, &s->grammar_trie);
    if (st == NURI_OK && s->p.draft_path) {
        st = nuri_model_load(s->p.draft_path, &s->draft);
        if (st != NURI_OK) nuri_error_wrap(st, "the draft model %s", s->p.draft_path);
    }
    if (st == NURI_OK) {
        serve_sched_params sp = {.n_ctx = s->p.n_ctx,
                                 .kv_mem = s->p.kv_mem,
                                 .max_seqs = s->p.max_seqs,
                                 .max_queue = s->p.max_queue,
                                 .n_batch = 256,
                                 .n_threads = s->p.n_threads,
                                 .draft_lookup = s->p.draft_lookup,
                                 .draft = s->draft,
                                 .draft_max = s->p.draft_max > 0 ? s->p.draft_max : 8,
                                 .kv_type_k = s->p.kv_type_k,
                                 .kv_type_v = s->p.kv_type_v};
        st = serve_sched_start(s->model, &sp, &s->metrics, &s->sched);
    }
    if (st == NURI_OK && s->p.kv_dir) {
        uint8_t id[32];
        st = model_identity(s, id);
        uint32_t kt, vt;
        serve_sched_kv_types(s->sched, &kt, &vt);
        if (st == NURI_OK)
            st = nuri_kvsnap_open_typed(s->p.kv_dir, s->p.kv_dir_size, id, kt, vt, &s->kvsnap);
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
        if (note[0]) serve_log(s, "%s", note);
        uint32_t kt, vt;
        serve_sched_kv_types(s->sched, &kt, &vt);
        serve_log(s,
                  "model %s loaded: %d sequences, %d tokens of KV cache (K %s, V %s, %.1f MiB), at "
                  "most %d per request",
                  s->model_name, s->p.max_seqs, serve_sched_n_ctx(s->sched), nuri_kv_type_name(kt),
                  nuri_kv_type_name(vt),
                  (double)serve_sched_kv_bytes_per_token(s->sched) * serve_sched_n_ctx(s->sched) /
                      1048576.0,
                  serve_sched_seq_max(s->sched));
        if (s->draft)
            serve_log(s, "draft model %s: up to %d tokens drafted per sequence and step",
                      s->p.draft_path, s->p.draft_max > 0 ? s->p.draft_max : 8);
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

int serve_server_load_state(serve_server *s, char *err, size_t err_cap)
{
    enum load_state st = server_state(s);
    if (st == LOAD_FAILED && err && err_cap) snprintf(err, err_cap, "%s", s->load_error);
    return st == LOAD_READY ? 1 : st == LOAD_FAILED ? -1 : 0;
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

static char **strings_dup(const char *const *v, int n)
{
    char **d = calloc((size_t)(n > 0 ? n : 1), sizeof *d);
    for (int i = 0; d && i < n; i++)
        if (!(d[i] = strdup(v[i]))) {
            while (i--) free(d[i]);
            free(d);
            return NULL;
        }
    return d;
}

static void strings_free(char **v, int n)
{
    for (int i = 0; v && i < n; i++) free(v[i]);
    free(v);
}

nuri_status serve_server_start(const serve_params *p, serve_server **out)
{
    *out = NULL;
    serve_server *s = calloc(1, sizeof *s);
    if (!s) return nuri_error(NURI_ERR_NOMEM, "out of memory");
    s->p = *p;
    s->listen_fd = s->ep = s->wake_fd = s->spare_fd = -1;
    if (!s->p.host) s->p.host = "127.0.0.1";
    if (s->p.max_seqs <= 0) s->p.max_seqs = 8;
    if (s->p.max_queue <= 0) s->p.max_queue = 4 * s->p.max_seqs;
    if (s->p.n_threads <= 0) s->p.n_threads = 1;
    if (!s->p.max_body) s->p.max_body = 4u << 20;
    if (s->p.header_timeout_ms <= 0) s->p.header_timeout_ms = 10000;
    if (s->p.request_timeout_ms <= 0) s->p.request_timeout_ms = 30000;
    if (s->p.request_timeout_ms < s->p.header_timeout_ms)
        s->p.request_timeout_ms = s->p.header_timeout_ms;
    if (s->p.idle_timeout_s <= 0) s->p.idle_timeout_s = 60;
    if (s->p.max_connections <= 0) s->p.max_connections = 8192;
    if (s->p.max_conns_per_client <= 0) s->p.max_conns_per_client = 256;
    if (p->model_name)
        snprintf(s->model_name, sizeof s->model_name, "%s", p->model_name);
    else
        model_name_from_path(s->model_name, sizeof s->model_name, p->model_path);
    serve_metrics_init(&s->metrics);
    pthread_mutex_init(&s->load_mu, NULL);
    pthread_cond_init(&s->load_cv, NULL);
    pthread_mutex_init(&s->q_mu, NULL);
    pthread_cond_init(&s->q_cv, NULL);
    s->state = LOAD_LOADING;
    nuri_status st = NURI_OK;
    s->n_api_keys = p->n_api_keys;
    s->n_allow_hosts = p->n_allow_hosts;
    s->api_keys = strings_dup(p->api_keys, p->n_api_keys);
    s->allow_hosts = strings_dup(p->allow_hosts, p->n_allow_hosts);
    s->n_cors_origins = p->n_cors_origins;
    s->cors_origins = strings_dup(p->cors_origins, p->n_cors_origins);
    for (int i = 0; s->cors_origins && i < s->n_cors_origins; i++) {
        char *o = s->cors_origins[i]; // an origin has no path: "http://host:3000/" is the same
        size_t n = strlen(o);
        while (n > 1 && o[n - 1] == '/') o[--n] = 0;
        if (!strcmp(o, "*") && s->n_api_keys == 0) {
            st = nuri_error(NURI_ERR_INVALID_ARG,
                            "CORS for any origin ('*') needs API keys: without them any web page "
                            "a user opens could drive this server; name the allowed origins, or "
                            "set --api-key");
            goto fail;
        }
    }
    // descriptors: as many as the hard limit allows; connections get what is left of them
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        long room = (long)rl.rlim_cur - FD_RESERVE - MAX_LINGERING;
        if (room < 16) room = 16;
        if (s->p.max_connections > room) {
            serve_log(s, "at most %ld connections: the descriptor limit is %ld", room,
                      (long)rl.rlim_cur);
            s->p.max_connections = (int)room;
        }
    }
    if (p->replica_id) {
        size_t n = strlen(p->replica_id);
        bool ok = n > 0 && n < SERVE_REPLICA_ID_MAX;
        for (size_t i = 0; ok && i < n; i++)
            ok = isalnum((unsigned char)p->replica_id[i]) || strchr("._:-", p->replica_id[i]);
        if (!ok) {
            st = nuri_error(NURI_ERR_INVALID_ARG,
                            "--replica-id: 1 to %d letters, digits and . _ : - (it travels in a "
                            "header)",
                            SERVE_REPLICA_ID_MAX - 1);
            goto fail;
        }
        memcpy(s->replica_id, p->replica_id, n + 1);
    }
    if (p->store_path) {
        if ((st = nuri_store_open(p->store_path, NULL, &s->store)) != NURI_OK) goto fail;
        serve_log(s, "conversation store: %s", nuri_store_name(s->store));
    }
    s->n_workers = s->p.max_seqs + s->p.max_queue + 4;
    front *f = calloc(1, sizeof *f);
    s->front = f;
    if (f) {
        f->conns = calloc((size_t)s->p.max_connections + MAX_LINGERING, sizeof *f->conns);
        f->ip_cap = 64;
        while (f->ip_cap < 2 * (size_t)s->p.max_connections) f->ip_cap *= 2;
        f->ips = calloc(f->ip_cap, sizeof *f->ips);
    }
    s->work = calloc((size_t)s->n_workers, sizeof *s->work);
    s->workers = calloc((size_t)s->n_workers, sizeof *s->workers);
    if (!s->api_keys || !s->allow_hosts || !s->cors_origins || !f || !f->conns || !f->ips ||
        !s->work || !s->workers) {
        st = nuri_error(NURI_ERR_NOMEM, "out of memory");
        goto fail;
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
        listen(s->listen_fd, 4096) != 0) {
        st = nuri_error(NURI_ERR_IO, "cannot listen on %s:%d: %s", s->p.host, s->p.port,
                        strerror(errno));
        goto fail;
    }
    socklen_t al = sizeof a;
    getsockname(s->listen_fd, (struct sockaddr *)&a, &al);
    s->port = ntohs(a.sin_port);
    if (!s->replica_id[0]) { // HOSTNAME:PORT names this process among replicas
        char host[64] = "";
        gethostname(host, sizeof host - 1);
        for (char *h = host; *h; h++)
            if (!isalnum((unsigned char)*h) && !strchr("._-", *h)) *h = '_';
        snprintf(s->replica_id, sizeof s->replica_id, "%s:%d", host[0] ? host : "nuri", s->port);
    }
    s->ep = epoll_create1(EPOLL_CLOEXEC);
    s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (s->ep < 0 || s->wake_fd < 0) {
        st = nuri_error(NURI_ERR_IO, "epoll / eventfd: %s", strerror(errno));
        goto fail;
    }
    struct epoll_event el = {.events = EPOLLIN, .data.ptr = &ev_listen};
    struct epoll_event ew = {.events = EPOLLIN, .data.ptr = &ev_wake};
    if (epoll_ctl(s->ep, EPOLL_CTL_ADD, s->listen_fd, &el) != 0 ||
        epoll_ctl(s->ep, EPOLL_CTL_ADD, s->wake_fd, &ew) != 0) {
        st = nuri_error(NURI_ERR_IO, "epoll_ctl: %s", strerror(errno));
        goto fail;
    }
    f->listening = true;
    if (pthread_create(&s->load_thread, NULL, load_main, s) != 0) {
        st = nuri_error(NURI_ERR_NOMEM, "cannot start the loader thread");
        goto fail;
    }
    s->load_started = true;
    pthread_attr_t wa;
    pthread_attr_init(&wa);
    pthread_attr_setstacksize(&wa, 1u << 20); // a worker's frames are small
    for (int i = 0; i < s->n_workers; i++) {
        if (pthread_create(&s->workers[i], &wa, worker_main, s) != 0) break;
        s->n_workers_started++;
    }
    pthread_attr_destroy(&wa);
    if (s->n_workers_started < s->n_workers) {
        st = nuri_error(NURI_ERR_NOMEM, "cannot start the worker threads");
        goto fail;
    }
    if (pthread_create(&s->loop_thread, NULL, loop_main, s) != 0) {
        st = nuri_error(NURI_ERR_NOMEM, "cannot start the connection thread");
        goto fail;
    }
    s->loop_started = true;
    *out = s;
    return NURI_OK;
fail:
    serve_server_stop(s);
    return st;
}

static void wake_loop(serve_server *s)
{
    uint64_t one = 1;
    if (s->wake_fd >= 0) (void)!write(s->wake_fd, &one, sizeof one);
}

void serve_server_shutdown(serve_server *s)
{
    atomic_store(&s->draining, true);
    wake_loop(s);
}

bool serve_server_idle(serve_server *s)
{
    pthread_mutex_lock(&s->q_mu);
    bool idle = s->busy == 0;
    pthread_mutex_unlock(&s->q_mu);
    return idle;
}

void serve_server_stop(serve_server *s)
{
    if (!s) return;
    atomic_store(&s->draining, true);
    atomic_store(&s->stopping, true);
    wake_loop(s);
    if (s->loop_started) pthread_join(s->loop_thread, NULL);
    if (s->load_started) pthread_join(s->load_thread, NULL);
    // the scheduler fails what runs, so the workers finish their answers
    serve_sched_stop(s->sched);
    pthread_mutex_lock(&s->q_mu);
    pthread_cond_broadcast(&s->q_cv);
    pthread_mutex_unlock(&s->q_mu);
    for (int i = 0; i < s->n_workers_started; i++) pthread_join(s->workers[i], NULL);
    front *f = s->front;
    if (f && f->conns) { // the loop has ended: close what the workers handed back
        while (f->n_conns > 0) conn_close(s, f, f->conns[f->n_conns - 1]);
        while (f->dead) {
            conn *c = f->dead;
            f->dead = c->next;
            conn_free(c);
        }
    }
    nuri_store_close(s->store);
    nuri_kvsnap_close(s->kvsnap);
    serve_sched_free(s->sched); // the samplers go with their jobs, before the trie they borrow
    nuri_token_trie_free(s->grammar_trie);
    serve_prompt_free(s->prompt);
    nuri_model_free(s->model);
    nuri_model_free(s->draft);
    if (s->listen_fd >= 0) close(s->listen_fd);
    if (s->ep >= 0) close(s->ep);
    if (s->wake_fd >= 0) close(s->wake_fd);
    if (s->spare_fd >= 0) close(s->spare_fd);
    strings_free(s->api_keys, s->n_api_keys);
    strings_free(s->allow_hosts, s->n_allow_hosts);
    strings_free(s->cors_origins, s->n_cors_origins);
    if (f) {
        free(f->conns);
        free(f->ips);
        free(f);
    }
    free(s->work);
    free(s->workers);
    serve_metrics_destroy(&s->metrics);
    pthread_cond_destroy(&s->q_cv);
    pthread_mutex_destroy(&s->q_mu);
    pthread_cond_destroy(&s->load_cv);
    pthread_mutex_destroy(&s->load_mu);
    free(s);
}
