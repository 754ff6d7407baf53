/*
 * request_fuzz_one.h: one fuzz iteration for the server's request handling, shared by the
 * libFuzzer target (fuzz_request.c) and the corpus replay test (tests/test_request_fuzz_replay.c):
 * bytes -> JSON (as the server parses a body) -> validation as a chat request and as a
 * completion request -> every message's text; plus UTF-8 clean-up of the raw bytes. A chat request
 * with tools also gets its forced-call grammar (nuri_toolcall_grammar, as tool_choice "required"
 * or the named function asks) in every tool-call format: it must either be refused with a reason
 * or compile (left recursion through $ref aside, which the server refuses as unsupported).
 * Returns the number of the two validations that accepted the body (0..2).
 */
#ifndef NURI_FUZZ_REQUEST_FUZZ_ONE_H
#define NURI_FUZZ_REQUEST_FUZZ_ONE_H

#include "chat/toolcall.h"
#include "serve/openai.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void request_fuzz_tools(const serve_request *r)
{
    nuri_chat_syntax syn = {NURI_TOOLCALL_HERMES, "<think>", "</think>", false};
    for (int f = NURI_TOOLCALL_GENERIC; f < NURI_TOOLCALL_N_FORMATS; f++) {
        syn.format = (nuri_toolcall_format)f;
        nuri_toolcall_grammar_opts o = {.format = syn.format,
                                        .syntax = &syn,
                                        .tools = r->tools,
                                        .only = r->tool_choice == SERVE_TOOLS_NAMED ? r->tool_name
                                                                                    : NULL,
                                        .parallel = r->parallel_tool_calls,
                                        .in_reasoning = f & 1,
                                        .reasoning_allowed = f & 2,
                                        .answer_schema = r->answer_schema};
        char *text = NULL, param[160];
        size_t len = 0;
        nuri_status st = nuri_toolcall_grammar(&o, &text, &len, param, sizeof param);
        if (st == NURI_OK) {
            nuri_grammar *g = NULL;
            st = nuri_grammar_parse(text, len, &g);
            if (st != NURI_OK && st != NURI_ERR_FORMAT && st != NURI_ERR_LIMIT &&
                st != NURI_ERR_NOMEM)
                abort();
            nuri_grammar_free(g);
        } else if (st != NURI_ERR_UNSUPPORTED && st != NURI_ERR_FORMAT && st != NURI_ERR_LIMIT &&
                   st != NURI_ERR_NOMEM) {
            abort();
        } else if (st != NURI_ERR_NOMEM && !param[0]) {
            abort(); // a refusal names the parameter at fault
        }
        free(text);
    }
}

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
            if (r.tools && r.tool_choice != SERVE_TOOLS_NONE) request_fuzz_tools(&r);
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
