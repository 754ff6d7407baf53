/*
 * request_fuzz_one.h: one fuzz iteration for the server's request handling, shared by the
 * libFuzzer target (fuzz_request.c) and the corpus replay test (tests/test_request_fuzz_replay.c):
 * bytes -> JSON (as the server parses a body) -> validation as a chat request and as a
 * completion request -> every message's text; plus UTF-8 clean-up of the raw bytes. Returns the
 * number of the two validations that accepted the body (0..2).
 */
#ifndef NURI_FUZZ_REQUEST_FUZZ_ONE_H
#define NURI_FUZZ_REQUEST_FUZZ_ONE_H

#include "serve/openai.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int request_fuzz_one(const uint8_t *data, size_t size)
{
    size_t clean_len;
    free(serve_utf8_sanitize((const char *)data, size, &clean_len));
    json_error_t je;
    json_t *body = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &je);
    if (!body) return 0;
    int accepted = 0;
    const serve_kind kinds[2] = {SERVE_CHAT, SERVE_COMPLETION};
    for (int k = 0; k < 2; k++) {
        serve_request r;
        serve_error e;
        memset(&r, 0, sizeof r);
        memset(&e, 0, sizeof e);
        if (serve_request_parse(body, kinds[k], 4096, &r, &e)) {
            accepted++;
            for (size_t i = 0; r.messages && i < json_array_size(r.messages); i++)
                free(serve_message_text(json_array_get(r.messages, i)));
            serve_request_free(&r);
        } else {
            // a refusal must say what is wrong, as JSON a client can read
            if (e.http < 400 || e.message[0] == 0) abort();
            char *j = serve_error_json(&e);
            if (!j) abort();
            free(j);
        }
    }
    json_decref(body);
    return accepted;
}

#endif
