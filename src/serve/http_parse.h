/*
 * http_parse.h: HTTP/1.x request heads and chunked bodies, parsed without copying.
 *
 * http_parse_head keeps no state: it is called again on the whole buffer as more bytes arrive and
 * answers "incomplete", "malformed" or "complete, N bytes". The head's strings point into the
 * caller's buffer. http_head_framing then reads what the server needs from the headers (body
 * length, chunked, keep-alive, 100-continue) and refuses every ambiguous framing: a Content-Length
 * that is not a plain decimal, two that differ, Content-Length together with Transfer-Encoding,
 * any transfer coding but chunked. The chunked decoder works in place, a step at a time, with a
 * few words of state.
 *
 * Limits are the caller's: the head's length (the caller stops reading at its limit) and
 * HTTP_MAX_HEADERS header lines. Only origin-form targets ("/path?query") are accepted, and
 * HTTP/1.0 and HTTP/1.1.
 */
#ifndef NURI_SERVE_HTTP_PARSE_H
#define NURI_SERVE_HTTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_MAX_HEADERS 64

typedef struct http_header {
    const char *name, *value; // not NUL-terminated; value without surrounding blanks
    size_t name_len, value_len;
} http_header;

typedef struct http_head {
    const char *method, *target; // not NUL-terminated
    size_t method_len, target_len;
    int minor; // HTTP/1.<minor>: 0 or 1
    http_header headers[HTTP_MAX_HEADERS];
    size_t n_headers;
} http_head;

#define HTTP_INCOMPLETE (-2)
#define HTTP_MALFORMED (-1)

/* Parses the request head at the start of buf[0..len). Returns the head's length in bytes (the
 * blank line included), HTTP_INCOMPLETE when the head has not ended yet, or HTTP_MALFORMED (then
 * *why says what is wrong, a static string). */
long http_parse_head(const char *buf, size_t len, http_head *h, const char **why);

/* The header `name` (case-insensitive), or NULL. The first one when there are several. */
const http_header *http_head_find(const http_head *h, const char *name);

/* Whether the comma-separated header value contains `token` (case-insensitive). */
bool http_value_has_token(const char *value, size_t len, const char *token);

typedef struct http_framing {
    int64_t content_length; // bytes of body; -1 when chunked
    bool chunked;
    bool keep_alive;      // the client allows another request on this connection
    bool expect_continue; // "Expect: 100-continue"
} http_framing;

/* Reads the body framing from h. False when the framing is invalid or ambiguous: *status is the
 * HTTP status to answer (400, 501 for an unknown transfer coding, 417 for an unknown expectation)
 * and *why says what is wrong. */
bool http_head_framing(const http_head *h, http_framing *f, int *status, const char **why);

/* ---- chunked bodies ---- */

typedef struct http_chunked {
    int state;       // where in the chunk syntax the next byte belongs
    uint64_t left;   // bytes of chunk data still to come
    size_t in;       // bytes of raw input consumed
    size_t out;      // bytes of decoded body written (in place, out <= in)
    size_t line_len; // bytes of the current size or trailer line so far
} http_chunked;

/* Decodes buf[c->in .. len) in place (decoded bytes move to buf[c->out ..)); call again with the
 * same buffer as more bytes arrive. Returns 1 when the body is complete (c->in is the raw length,
 * c->out the body's), 0 when more is needed, HTTP_MALFORMED on a syntax error or a body over
 * max_body bytes (*why says which). */
int http_chunked_decode(http_chunked *c, char *buf, size_t len, size_t max_body, const char **why);

#endif
