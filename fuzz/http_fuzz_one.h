/*
 * http_fuzz_one.h: one fuzz iteration for the HTTP request parser (src/serve/http_parse.c),
 * shared by the libFuzzer target (fuzz_http.c) and the corpus replay test
 * (tests/test_http_fuzz_replay.c): bytes -> request head -> framing -> a chunked body after the
 * head, decoded in place in pieces of every size the input suggests. Checks the parser's own
 * promises (a head length inside the input, headers inside the head, decoded bytes never past
 * the raw ones) with abort(), so the fuzzer reports a broken promise as a crash. Returns 1 when a
 * complete, well-framed request was found.
 */
#ifndef NURI_FUZZ_HTTP_FUZZ_ONE_H
#define NURI_FUZZ_HTTP_FUZZ_ONE_H

#include "serve/http_parse.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int http_fuzz_one(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    buf[size] = 0;
    http_head h;
    const char *why;
    long r = http_parse_head(buf, size, &h, &why);
    int ok = 0;
    if (r > 0) {
        if ((size_t)r > size) abort();
        for (size_t i = 0; i < h.n_headers; i++)
            if (h.headers[i].name < buf || h.headers[i].value + h.headers[i].value_len > buf + r)
                abort();
        // the parser must give the same answer on every prefix that holds the head
        http_head h2;
        if (http_parse_head(buf, (size_t)r, &h2, &why) != r) abort();
        http_framing f;
        int status;
        if (http_head_framing(&h, &f, &status, &why)) {
            ok = 1;
            if (f.chunked) {
                // feed the body in growing pieces, as a socket would deliver it
                http_chunked c = {.in = (size_t)r, .out = (size_t)r};
                size_t step = size > 0 ? (size_t)data[0] % 7 + 1 : 1;
                int res = 0;
                for (size_t end = (size_t)r; res == 0 && end <= size; end += step) {
                    res = http_chunked_decode(&c, buf, end < size ? end : size, 1u << 20, &why);
                    if (c.out > c.in || c.in > size) abort();
                    if (end >= size) break;
                }
            } else if (f.content_length < 0) {
                abort();
            }
        }
    } else if (r != HTTP_INCOMPLETE && r != HTTP_MALFORMED) {
        abort();
    }
    free(buf);
    return ok;
}

#endif
