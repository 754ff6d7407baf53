/*
 * responses.c: OpenAI's Responses API (POST /v1/responses, GET / DELETE /v1/responses/{id},
 * GET /v1/responses/{id}/input_items) and Conversations API (/v1/conversations...), on the
 * conversation store (src/store/store.h).
 *
 * A Responses request is translated into a chat-completions request and run by the same pipeline
 * (gen.h): the same validation, prompt safety, grammars and tool-call parsing. The translation:
 *   - the history (the stored chain of previous_response_id, or the conversation's items), then
 *     `instructions` as a system message first, then `input` (a string: one user message; or
 *     items: messages, function_call, function_call_output; reasoning items are dropped, as the
 *     templates drop past reasoning) become `messages`;
 *   - tools {type: function, name, parameters, strict} become chat tools, tool_choice likewise,
 *     text.format becomes response_format, reasoning.effort reasoning_effort, max_output_tokens
 *     max_tokens. A key nuri does not implement is a 400 naming it.
 * The reply comes back as output items (reasoning, message, function_call), whole or as the typed
 * stream events (response.created ... response.completed). A stored response is written to the
 * store before the client hears that it is complete: what a client was told is stored is stored
 * (the store is durable on return).
 *
 * Ownership: every stored object belongs to the API key that made it (the key's SHA-256; "" on a
 * server without keys). Another key's object is a 404 exactly like a missing one.
 */
#include "serve/gen.h"
#include "serve/server.h"

#include "base/status.h"
#include "store/kv_snapshot.h"
#include "store/store.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WAIT_SLICE_MS 100
#define HISTORY_MAX_ITEMS 10000 // items of a conversation rendered into one prompt at most

/* ============================== errors ============================== */

/* A store status as the client's error. */
static bool store_fail(serve_error *e, nuri_status st, const char *what)
{
    switch (st) {
    case NURI_ERR_NOT_FOUND:
        return serve_fail(e, 404, "invalid_request_error", NULL, "not_found", "%s",
                          nuri_last_error());
    case NURI_ERR_INVALID_ARG:
    case NURI_ERR_LIMIT:
        return serve_fail(e, 400, "invalid_request_error", NULL, "invalid_value", "%s: %s", what,
                          nuri_last_error());
    case NURI_ERR_NOMEM:
        return serve_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    case NURI_ERR_UNAVAILABLE: // the shared database is down: this route waits for it, others run
        return serve_fail(e, 503, "server_error", NULL, "store_unavailable", "%s: %s", what,
                          nuri_last_error());
    default:
        return serve_fail(e, 500, "server_error", NULL, "store_error", "%s: %s", what,
                          nuri_last_error());
    }
}

static bool no_store(serve_error *e, const char *param)
{
    return serve_fail(e, 400, "invalid_request_error", param, "store_disabled",
                      "this server keeps no conversation store (it runs with --no-store)");
}

/* A chat-completions error's param as the Responses request names it. */
static void map_param(serve_error *e)
{
    static const struct {
        const char *chat, *resp;
    } map[] = {
        {"max_tokens", "max_output_tokens"},
        {"response_format.json_schema.schema", "text.format.schema"},
        {"response_format", "text.format"},
        {"reasoning_effort", "reasoning.effort"},
        {"messages", "input"},
    };
    char out[sizeof e->param];
    for (size_t i = 0; i < sizeof map / sizeof *map; i++) {
        size_t n = strlen(map[i].chat);
        if (strncmp(e->param, map[i].chat, n) ||
            (e->param[n] && e->param[n] != '.' && e->param[n] != '['))
            continue;
        snprintf(out, sizeof out, "%s%s", map[i].resp, e->param + n);
        memcpy(e->param, out, sizeof out);
        return;
    }
    // tools[i].function.x -> tools[i].x
    const char *f = strstr(e->param, "].function");
    if (!strncmp(e->param, "tools[", 6) && f) {
        size_t head = (size_t)(f - e->param) + 1;
        snprintf(out, sizeof out, "%.*s%s", (int)head, e->param, f + 10);
        memcpy(e->param, out, sizeof out);
    }
}

/* ============================== items -> chat messages ============================== */

/* The text of a message item's content: a string, or parts of type input_text / output_text
 * (refusal too), joined. False (400) for other parts. */
static bool content_text(const json_t *content, const char *param, json_t **out, serve_error *e)
{
    if (json_is_string(content)) {
        *out = json_incref((json_t *)content);
        return true;
    }
    if (!json_is_array(content))
        return serve_bad(e, param, "'%s' must be a string or an array of text parts", param);
    size_t n = 0, i;
    const json_t *part;
    json_array_foreach(content, i, part)
    {
        const char *t = json_string_value(json_object_get(part, "type"));
        char p[160];
        snprintf(p, sizeof p, "%s[%zu]", param, i);
        if (!t || (strcmp(t, "input_text") && strcmp(t, "output_text") && strcmp(t, "text") &&
                   strcmp(t, "refusal")))
            return serve_fail(e, 400, "invalid_request_error", p, "unsupported_parameter",
                              "'%s': only text parts (input_text, output_text) are supported", p);
        const json_t *text = json_object_get(part, !strcmp(t, "refusal") ? "refusal" : "text");
        if (!json_is_string(text)) return serve_bad(e, p, "'%s.text' must be a string", p);
        n += json_string_length(text);
    }
    char *s = malloc(n + 1);
    if (!s) return serve_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    size_t o = 0;
    json_array_foreach(content, i, part)
    {
        const char *t = json_string_value(json_object_get(part, "type"));
        const json_t *text = json_object_get(part, !strcmp(t, "refusal") ? "refusal" : "text");
        memcpy(s + o, json_string_value(text), json_string_length(text));
        o += json_string_length(text);
    }
    s[o] = 0;
    *out = json_stringn(s, o);
    free(s);
    return *out != NULL || serve_fail(e, 500, "server_error", NULL, NULL, "out of memory");
}

/* Checks an input item (a new request's, or one added to a conversation) as the API defines it.
 * The item kinds nuri renders: message, function_call, function_call_output; reasoning is
 * accepted and dropped from prompts. */
static bool check_item(const json_t *it, const char *param, serve_error *e)
{
    if (!json_is_object(it)) return serve_bad(e, param, "'%s' must be an object", param);
    const json_t *type = json_object_get(it, "type");
    const char *t = json_is_string(type) ? json_string_value(type) : NULL;
    char p[160];
    if (type && !t) return serve_bad(e, param, "'%s.type' must be a string", param);
    if (!t || !strcmp(t, "message")) {
        const char *role = json_string_value(json_object_get(it, "role"));
        snprintf(p, sizeof p, "%s.role", param);
        if (!role || (strcmp(role, "user") && strcmp(role, "assistant") && strcmp(role, "system") &&
                      strcmp(role, "developer")))
            return serve_bad(e, p, "'%s' must be user, assistant, system or developer", p);
        snprintf(p, sizeof p, "%s.content", param);
        json_t *text = NULL;
        if (!content_text(json_object_get(it, "content"), p, &text, e)) return false;
        json_decref(text);
        return true;
    }
    if (!strcmp(t, "function_call")) {
        const char *keys[] = {"call_id", "name", "arguments"};
        for (size_t k = 0; k < 3; k++) {
            snprintf(p, sizeof p, "%s.%s", param, keys[k]);
            if (!json_is_string(json_object_get(it, keys[k])))
                return serve_bad(e, p, "'%s' must be a string", p);
        }
        return true;
    }
    if (!strcmp(t, "function_call_output")) {
        snprintf(p, sizeof p, "%s.call_id", param);
        if (!json_is_string(json_object_get(it, "call_id")))
            return serve_bad(e, p, "'%s' must be a string", p);
        snprintf(p, sizeof p, "%s.output", param);
        const json_t *out = json_object_get(it, "output");
        json_t *text = NULL;
        if (!content_text(out, p, &text, e)) return false;
        json_decref(text);
        return true;
    }
    if (!strcmp(t, "reasoning")) return true;
    snprintf(p, sizeof p, "%s.type", param);
    return serve_fail(e, 400, "invalid_request_error", p, "unsupported_parameter",
                      "'%s' is \"%.40s\"; nuri takes message, function_call, "
                      "function_call_output and reasoning items",
                      p, t);
}

/* Appends items (checked) to messages as chat messages: consecutive function_call items become
 * one assistant message with tool_calls (joined to the assistant message before them). */
static bool items_to_messages(const json_t *items, json_t *messages, serve_error *e)
{
    size_t i;
    const json_t *it;
    json_array_foreach(items, i, it)
    {
        const char *t = json_string_value(json_object_get(it, "type"));
        if (!t || !strcmp(t, "message")) {
            json_t *text = NULL;
            if (!content_text(json_object_get(it, "content"), "input", &text, e)) return false;
            json_array_append_new(
                messages,
                json_pack("{s:O,s:o}", "role", json_object_get(it, "role"), "content", text));
        } else if (!strcmp(t, "function_call")) {
            json_t *call =
                json_pack("{s:O,s:s,s:{s:O,s:O}}", "id", json_object_get(it, "call_id"), "type",
                          "function", "function", "name", json_object_get(it, "name"), "arguments",
                          json_object_get(it, "arguments"));
            json_t *last = json_array_get(messages, json_array_size(messages) - 1);
            const char *role = json_string_value(json_object_get(last, "role"));
            if (last && role && !strcmp(role, "assistant")) {
                json_t *calls = json_object_get(last, "tool_calls");
                if (!calls) {
                    calls = json_array();
                    json_object_set_new(last, "tool_calls", calls);
                }
                json_array_append_new(calls, call);
            } else {
                json_array_append_new(messages, json_pack("{s:s,s:n,s:[o]}", "role", "assistant",
                                                          "content", "tool_calls", call));
            }
        } else if (!strcmp(t, "function_call_output")) {
            json_t *text = NULL;
            if (!content_text(json_object_get(it, "output"), "input", &text, e)) return false;
            json_array_append_new(messages,
                                  json_pack("{s:s,s:O,s:o}", "role", "tool", "tool_call_id",
                                            json_object_get(it, "call_id"), "content", text));
        } // reasoning: dropped
    }
    return true;
}

/* ============================== the request ============================== */

typedef struct resp_req {
    json_t *chat;          // the chat-completions body (gen_begin takes it)
    json_t *input_items;   // the new input as items (stored with the response)
    json_t *echo;          // the Response object's request fields (instructions, tools, ...)
    char *previous_id;     // (owned) or NULL
    char *conversation_id; // (owned) or NULL
    bool store, stream;
} resp_req;

static void resp_req_free(resp_req *r)
{
    json_decref(r->chat);
    json_decref(r->input_items);
    json_decref(r->echo);
    free(r->previous_id);
    free(r->conversation_id);
}

static const char *const response_keys[] = {"model",
                                            "input",
                                            "instructions",
                                            "previous_response_id",
                                            "conversation",
                                            "store",
                                            "stream",
                                            "max_output_tokens",
                                            "temperature",
                                            "top_p",
                                            "tools",
                                            "tool_choice",
                                            "parallel_tool_calls",
                                            "text",
                                            "reasoning",
                                            "metadata",
                                            "user",
                                            "truncation",
                                            "include",
                                            "seed",
                                            "top_k",
                                            "min_p",
                                            "chat_template_kwargs",
                                            "stream_options",
                                            NULL};

/* Validates a POST /v1/responses body and translates it. body is borrowed. */
static bool parse_response_request(serve_server *s, const char *owner, json_t *body, resp_req *r,
                                   serve_error *e)
{
    memset(r, 0, sizeof *r);
    if (!json_is_object(body)) return serve_bad(e, NULL, "the request body must be a JSON object");
    const char *key;
    json_t *v;
    json_object_foreach(body, key, v)
    {
        bool known = false;
        for (size_t i = 0; response_keys[i] && !known; i++) known = !strcmp(key, response_keys[i]);
        if (!known)
            return serve_fail(e, 400, "invalid_request_error", key, "unsupported_parameter",
                              "'%.60s' is not supported by this server (nuri %s); remove it", key,
                              NURI_VERSION);
    }
#define OPT(k)                                                                                     \
    (json_object_get(body, k) && !json_is_null(json_object_get(body, k))                           \
         ? json_object_get(body, k)                                                                \
         : NULL)
    json_t *input = OPT("input"), *instr = OPT("instructions"), *prev = OPT("previous_response_id");
    json_t *conv = OPT("conversation"), *store = OPT("store"), *stream = OPT("stream");
    if (!input) return serve_bad(e, "input", "'input' is required");
    if (instr && !json_is_string(instr))
        return serve_bad(e, "instructions", "'instructions' must be a string");
    if (prev && !json_is_string(prev))
        return serve_bad(e, "previous_response_id", "'previous_response_id' must be a string");
    if (conv && json_is_object(conv)) conv = json_object_get(conv, "id");
    if (conv && !json_is_string(conv))
        return serve_bad(e, "conversation", "'conversation' must be an id or {\"id\": ...}");
    if (prev && conv)
        return serve_bad(e, "conversation",
                         "'previous_response_id' and 'conversation' cannot be used together");
    if (store && !json_is_boolean(store)) return serve_bad(e, "store", "'store' must be a boolean");
    if (stream && !json_is_boolean(stream))
        return serve_bad(e, "stream", "'stream' must be a boolean");
    json_t *trunc = OPT("truncation");
    if (trunc && !(json_is_string(trunc) && !strcmp(json_string_value(trunc), "disabled")))
        return serve_fail(e, 400, "invalid_request_error", "truncation", "unsupported_parameter",
                          "'truncation' can only be \"disabled\": nuri does not drop context");
    json_t *inc = OPT("include");
    if (inc && !(json_is_array(inc) && json_array_size(inc) == 0))
        return serve_fail(e, 400, "invalid_request_error", "include", "unsupported_parameter",
                          "'include' is not supported (nuri returns no extra output data)");
    json_t *meta = OPT("metadata");
    if (meta && !json_is_object(meta))
        return serve_bad(e, "metadata", "'metadata' must be an object");
    r->stream = stream && json_is_true(stream);
    r->store = s->store != NULL;
    if (store) {
        if (json_is_true(store) && !s->store) return no_store(e, "store");
        r->store = json_is_true(store) && s->store;
    }
    if ((prev || conv) && !s->store)
        return no_store(e, prev ? "previous_response_id" : "conversation");
    // (copies: the body is freed before the response is made)
    if ((prev && !(r->previous_id = strdup(json_string_value(prev)))) ||
        (conv && !(r->conversation_id = strdup(json_string_value(conv)))))
        return serve_fail(e, 500, "server_error", NULL, NULL, "out of memory");

    // the new input as items
    if (json_is_string(input)) {
        r->input_items = json_pack("[{s:s,s:s,s:[{s:s,s:O}]}]", "type", "message", "role", "user",
                                   "content", "type", "input_text", "text", input);
    } else if (json_is_array(input)) {
        size_t i;
        json_t *it;
        json_array_foreach(input, i, it)
        {
            char p[48];
            snprintf(p, sizeof p, "input[%zu]", i);
            if (!check_item(it, p, e)) return false;
        }
        r->input_items = json_deep_copy(input);
        // an easy message ({role, content}) is stored as a message item
        json_array_foreach(r->input_items, i, it)
        {
            if (!json_object_get(it, "type"))
                json_object_set_new(it, "type", json_string("message"));
            json_t *c = json_object_get(it, "content");
            if (json_is_string(json_object_get(it, "role")) && json_is_string(c)) {
                const char *role = json_string_value(json_object_get(it, "role"));
                json_object_set_new(
                    it, "content",
                    json_pack("[{s:s,s:O}]", "type",
                              strcmp(role, "assistant") ? "input_text" : "output_text", "text", c));
            }
        }
    } else {
        return serve_bad(e, "input", "'input' must be a string or an array of items");
    }
    if (!r->input_items) return serve_fail(e, 500, "server_error", NULL, NULL, "out of memory");

    // the history, then the instructions, then the input
    json_t *history = NULL;
    nuri_status st = NURI_OK;
    if (r->previous_id)
        st = nuri_store_response_chain(s->store, owner, r->previous_id, NURI_STORE_CHAIN_MAX,
                                       &history);
    else if (r->conversation_id)
        st = nuri_store_conversation_history(s->store, owner, r->conversation_id, HISTORY_MAX_ITEMS,
                                             &history);
    if (st != NURI_OK) {
        store_fail(e, st, "the history");
        snprintf(e->param, sizeof e->param, "%s",
                 r->previous_id ? "previous_response_id" : "conversation");
        return false;
    }
    json_t *messages = json_array();
    if (instr)
        json_array_append_new(messages, json_pack("{s:s,s:O}", "role", "system", "content", instr));
    bool ok = (!history || items_to_messages(history, messages, e)) &&
              items_to_messages(r->input_items, messages, e);
    json_decref(history);
    if (!ok) {
        json_decref(messages);
        return false;
    }
    if (json_array_size(messages) == 0) {
        json_decref(messages);
        return serve_bad(e, "input", "'input' holds no message to answer");
    }

    // the chat request
    json_t *chat = json_pack("{s:o,s:b}", "messages", messages, "stream", 0);
    r->chat = chat;
    const char *same[] = {"temperature", "top_p", "parallel_tool_calls", "seed",
                          "top_k",       "min_p", "chat_template_kwargs"};
    for (size_t i = 0; i < sizeof same / sizeof *same; i++)
        if (OPT(same[i])) json_object_set(chat, same[i], OPT(same[i]));
    if (OPT("max_output_tokens")) json_object_set(chat, "max_tokens", OPT("max_output_tokens"));
    json_t *tools = OPT("tools");
    if (tools) {
        if (!json_is_array(tools)) return serve_bad(e, "tools", "'tools' must be an array");
        json_t *ct = json_array();
        json_object_set_new(chat, "tools", ct);
        size_t i;
        json_t *t;
        json_array_foreach(tools, i, t)
        {
            char p[48];
            snprintf(p, sizeof p, "tools[%zu].type", i);
            const char *type = json_string_value(json_object_get(t, "type"));
            if (!type || strcmp(type, "function"))
                return serve_fail(e, 400, "invalid_request_error", p, "unsupported_parameter",
                                  "'%s' must be \"function\": nuri supports function tools only",
                                  p);
            json_t *fn = json_deep_copy(t);
            json_object_del(fn, "type");
            json_array_append_new(ct, json_pack("{s:s,s:o}", "type", "function", "function", fn));
        }
    }
    json_t *tc = OPT("tool_choice");
    if (tc) {
        if (json_is_object(tc) && json_is_string(json_object_get(tc, "name")))
            json_object_set_new(chat, "tool_choice",
                                json_pack("{s:s,s:{s:O}}", "type", "function", "function", "name",
                                          json_object_get(tc, "name")));
        else
            json_object_set(chat, "tool_choice", tc);
    }
    json_t *text = OPT("text");
    if (text) {
        if (!json_is_object(text)) return serve_bad(e, "text", "'text' must be an object");
        json_object_foreach(text, key, v)
        {
            if (strcmp(key, "format"))
                return serve_fail(e, 400, "invalid_request_error", "text", "unsupported_parameter",
                                  "'text.%.40s' is not supported", key);
        }
        json_t *fmt = json_object_get(text, "format");
        if (fmt && !json_is_null(fmt)) {
            const char *ft = json_string_value(json_object_get(fmt, "type"));
            if (ft && !strcmp(ft, "json_schema")) {
                json_t *js = json_deep_copy(fmt);
                json_object_del(js, "type");
                json_object_set_new(
                    chat, "response_format",
                    json_pack("{s:s,s:o}", "type", "json_schema", "json_schema", js));
            } else {
                json_object_set(chat, "response_format", fmt);
            }
        }
    }
    json_t *reasoning = OPT("reasoning");
    if (reasoning) {
        if (!json_is_object(reasoning))
            return serve_bad(e, "reasoning", "'reasoning' must be an object");
        json_object_foreach(reasoning, key, v)
        {
            if (!strcmp(key, "effort")) {
                if (!json_is_null(v)) json_object_set(chat, "reasoning_effort", v);
            } else if (strcmp(key, "summary") || !json_is_null(v)) {
                return serve_fail(e, 400, "invalid_request_error", "reasoning",
                                  "unsupported_parameter",
                                  "'reasoning.%.40s' is not supported (nuri returns the reasoning "
                                  "itself, not a summary)",
                                  key);
            }
        }
    }
    // what the Response object repeats of the request (each value a new reference)
#define OR(k, dflt) (OPT(k) ? json_incref(OPT(k)) : (dflt))
    r->echo = json_pack(
        "{s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "instructions", OR("instructions", json_null()),
        "max_output_tokens", OR("max_output_tokens", json_null()), "temperature",
        OR("temperature", json_real(1.0)), "top_p", OR("top_p", json_real(1.0)), "tools",
        OR("tools", json_array()), "tool_choice", OR("tool_choice", json_string("auto")),
        "parallel_tool_calls", OR("parallel_tool_calls", json_true()), "metadata",
        OR("metadata", json_object()), "text",
        OR("text", json_pack("{s:{s:s}}", "format", "type", "text")));
#undef OR
    if (!r->echo) return serve_fail(e, 500, "server_error", NULL, NULL, "out of memory");
#undef OPT
    return true;
}

/* ============================== the response ============================== */

/* The output items as they grow (a reasoning item, a message, function calls), for the stream
 * events and the final object. */
typedef struct out_state {
    json_t *output;                 // the items
    int cur;                        // index of the item being written, -1: none
    nuri_reply_delta_kind cur_kind; // NURI_DELTA_REASONING / CONTENT / CALL
    buf text;                       // the current item's text (reasoning or message) or arguments
    char cur_id[NURI_STORE_ID_MAX];
} out_state;

typedef struct resp_ctx {
    serve_server *s;
    conn *c;
    gen *g;
    resp_req rq;
    char id[NURI_STORE_ID_MAX];
    long long created;
    const char *owner;
    out_state o;
    buf sse;
    long seq;    // the stream's sequence_number
    bool stored; // the response is in the store
} resp_ctx;

static json_t *response_object(resp_ctx *x, const char *status, json_t *output /* stolen */,
                               json_t *usage /* stolen */, json_t *error /* stolen */)
{
    json_t *r =
        json_pack("{s:s,s:s,s:I,s:s,s:o,s:o,s:s,s:o,s:o,s:s,s:b}", "id", x->id, "object",
                  "response", "created_at", (json_int_t)x->created, "status", status, "error",
                  error ? error : json_null(), "incomplete_details", json_null(), "model",
                  x->s->model_name, "output", output, "usage", usage ? usage : json_null(),
                  "truncation", "disabled", "store", x->rq.store);
    if (!r) return NULL;
    json_object_update(r, x->rq.echo);
    json_object_set_new(r, "previous_response_id",
                        x->rq.previous_id ? json_string(x->rq.previous_id) : json_null());
    json_object_set_new(r, "conversation",
                        x->rq.conversation_id ? json_pack("{s:s}", "id", x->rq.conversation_id)
                                              : json_null());
    json_object_set_new(r, "reasoning", json_pack("{s:n,s:n}", "effort", "summary"));
    json_object_set_new(r, "user", json_null());
    return r;
}

static json_t *usage_object(gen *g)
{
    int32_t p, c, k;
    gen_usage(g, &p, &c, &k);
    return json_pack("{s:i,s:{s:i},s:i,s:{s:i},s:i}", "input_tokens", (json_int_t)p,
                     "input_tokens_details", "cached_tokens", (json_int_t)k, "output_tokens",
                     (json_int_t)c, "output_tokens_details", "reasoning_tokens", 0, "total_tokens",
                     (json_int_t)p + c);
}

static json_t *utf8_string(const char *s, size_t n)
{
    size_t l;
    char *t = serve_utf8_sanitize(s, n, &l);
    json_t *j = t ? json_stringn(t, l) : NULL;
    free(t);
    return j;
}

static bool sse_event(resp_ctx *x, const char *type, json_t *ev /* stolen */)
{
    if (!ev) return false;
    json_object_set_new(ev, "type", json_string(type));
    json_object_set_new(ev, "sequence_number", json_integer(x->seq++));
    char *d = json_dumps(ev, JSON_COMPACT);
    json_decref(ev);
    if (!d) return false;
    bool ok = buf_add(&x->sse, "event: ", 7) && buf_add(&x->sse, type, strlen(type)) &&
              buf_add(&x->sse, "\ndata: ", 7) && buf_add(&x->sse, d, strlen(d)) &&
              buf_add(&x->sse, "\n\n", 2);
    free(d);
    return ok;
}

/* The item being written, finished: its final form goes into output (and to the stream). */
static bool item_close(resp_ctx *x, bool stream)
{
    out_state *o = &x->o;
    if (o->cur < 0) return true;
    json_t *item = json_array_get(o->output, (size_t)o->cur);
    json_t *text = utf8_string(o->text.p ? o->text.p : "", o->text.n);
    bool ok = true;
    if (o->cur_kind == NURI_DELTA_CONTENT) {
        json_t *part =
            json_pack("{s:s,s:O,s:[]}", "type", "output_text", "text", text, "annotations");
        json_object_set_new(item, "content", json_pack("[O]", part));
        json_object_set_new(item, "status", json_string("completed"));
        if (stream)
            ok = sse_event(x, "response.output_text.done",
                           json_pack("{s:s,s:i,s:i,s:O,s:[]}", "item_id", o->cur_id, "output_index",
                                     o->cur, "content_index", 0, "text", text, "logprobs")) &&
                 sse_event(x, "response.content_part.done",
                           json_pack("{s:s,s:i,s:i,s:O}", "item_id", o->cur_id, "output_index",
                                     o->cur, "content_index", 0, "part", part));
        json_decref(part);
    } else if (o->cur_kind == NURI_DELTA_REASONING) {
        json_t *part = json_pack("{s:s,s:O}", "type", "reasoning_text", "text", text);
        json_object_set_new(item, "content", json_pack("[O]", part));
        if (stream)
            ok = sse_event(x, "response.reasoning_text.done",
                           json_pack("{s:s,s:i,s:i,s:O}", "item_id", o->cur_id, "output_index",
                                     o->cur, "content_index", 0, "text", text));
        json_decref(part);
    } else {
        json_object_set(item, "arguments", text);
        json_object_set_new(item, "status", json_string("completed"));
        if (stream)
            ok = sse_event(x, "response.function_call_arguments.done",
                           json_pack("{s:s,s:i,s:O,s:O}", "item_id", o->cur_id, "output_index",
                                     o->cur, "name", json_object_get(item, "name"), "arguments",
                                     text));
    }
    json_decref(text);
    if (ok && stream)
        ok = sse_event(x, "response.output_item.done",
                       json_pack("{s:i,s:O}", "output_index", o->cur, "item", item));
    o->cur = -1;
    o->text.n = 0;
    return ok;
}

/* Opens a new output item for a delta of this kind. */
static bool item_open(resp_ctx *x, const nuri_reply_delta *d, bool stream)
{
    out_state *o = &x->o;
    const char *prefix = d->kind == NURI_DELTA_CONTENT     ? "msg"
                         : d->kind == NURI_DELTA_REASONING ? "rs"
                                                           : "fc";
    if (nuri_store_new_id(prefix, o->cur_id) != NURI_OK) return false;
    json_t *item;
    if (d->kind == NURI_DELTA_CONTENT)
        item = json_pack("{s:s,s:s,s:s,s:s,s:[]}", "id", o->cur_id, "type", "message", "status",
                         "in_progress", "role", "assistant", "content");
    else if (d->kind == NURI_DELTA_REASONING)
        item = json_pack("{s:s,s:s,s:[],s:[]}", "id", o->cur_id, "type", "reasoning", "summary",
                         "content");
    else
        item = json_pack("{s:s,s:s,s:s,s:o,s:s,s:s}", "id", o->cur_id, "type", "function_call",
                         "call_id", d->id, "name", utf8_string(d->text, d->len), "arguments", "",
                         "status", "in_progress");
    if (!item) return false;
    o->cur = (int)json_array_size(o->output);
    o->cur_kind = d->kind == NURI_DELTA_CALL ? NURI_DELTA_CALL : d->kind;
    o->text.n = 0;
    json_array_append_new(o->output, item);
    if (!stream) return true;
    bool ok = sse_event(x, "response.output_item.added",
                        json_pack("{s:i,s:O}", "output_index", o->cur, "item", item));
    if (ok && d->kind == NURI_DELTA_CONTENT)
        ok = sse_event(x, "response.content_part.added",
                       json_pack("{s:s,s:i,s:i,s:{s:s,s:s,s:[]}}", "item_id", o->cur_id,
                                 "output_index", o->cur, "content_index", 0, "part", "type",
                                 "output_text", "text", "", "annotations"));
    return ok;
}

/* Takes the parser's deltas into the output items (and the stream's events). */
static bool take_deltas(resp_ctx *x, const nuri_reply_delta *d, size_t nd, bool stream)
{
    out_state *o = &x->o;
    for (size_t i = 0; i < nd; i++) {
        bool same =
            o->cur >= 0 && ((d[i].kind == NURI_DELTA_ARGS && o->cur_kind == NURI_DELTA_CALL) ||
                            (d[i].kind == o->cur_kind && d[i].kind != NURI_DELTA_CALL));
        if (!same) {
            if (!item_close(x, stream) || !item_open(x, &d[i], stream)) return false;
            if (d[i].kind == NURI_DELTA_CALL) continue; // the name is in the item
        }
        if (!buf_add(&o->text, d[i].text, d[i].len)) return false;
        if (!stream) continue;
        json_t *delta = utf8_string(d[i].text, d[i].len);
        bool ok;
        if (d[i].kind == NURI_DELTA_CONTENT)
            ok = sse_event(x, "response.output_text.delta",
                           json_pack("{s:s,s:i,s:i,s:o,s:[]}", "item_id", o->cur_id, "output_index",
                                     o->cur, "content_index", 0, "delta", delta, "logprobs"));
        else if (d[i].kind == NURI_DELTA_REASONING)
            ok = sse_event(x, "response.reasoning_text.delta",
                           json_pack("{s:s,s:i,s:i,s:o}", "item_id", o->cur_id, "output_index",
                                     o->cur, "content_index", 0, "delta", delta));
        else
            ok = sse_event(x, "response.function_call_arguments.delta",
                           json_pack("{s:s,s:i,s:o}", "item_id", o->cur_id, "output_index", o->cur,
                                     "delta", delta));
        if (!ok) return false;
    }
    return true;
}

/* Stores the finished response (when asked to); false with e filled on failure. */
static bool store_response(resp_ctx *x, json_t *resp, serve_error *e)
{
    if (!x->rq.store) return true;
    nuri_status st = nuri_store_response_put(x->s->store, x->owner, resp, x->rq.input_items);
    x->stored = st == NURI_OK;
    return st == NURI_OK || store_fail(e, st, "storing the response");
}

/* The finished sequence's KV to the snapshot directory, under the response's id (a follow-up's
 * previous_response_id) and its conversation's. A failure only costs the next turn a recompute. */
static void save_kv(resp_ctx *x)
{
    nuri_kv_snapshot kv;
    if (!x->s->kvsnap || !gen_take_kv(x->g, &kv)) return;
    const char *keys[2] = {x->id, x->rq.conversation_id};
    for (int i = 0; i < 2; i++) {
        if (!keys[i]) continue;
        if (nuri_kvsnap_put(x->s->kvsnap, keys[i], kv.tokens, kv.n, kv.kv, kv.kv_bytes) == NURI_OK)
            serve_metrics_kv_snapshot(&x->s->metrics, true, false);
        else
            serve_log(x->s, "%s", nuri_last_error());
    }
    nuri_kv_snapshot_free(&kv);
}

/* The final object: completed, or incomplete when max_output_tokens ran out. */
static json_t *final_object(resp_ctx *x)
{
    bool cut = !strcmp(gen_finish(x->g), "length");
    json_t *r = response_object(x, cut ? "incomplete" : "completed", json_incref(x->o.output),
                                usage_object(x->g), NULL);
    if (r && cut)
        json_object_set_new(r, "incomplete_details",
                            json_pack("{s:s}", "reason", "max_output_tokens"));
    return r;
}

static bool flush_sse(resp_ctx *x)
{
    if (!x->sse.n) return true;
    bool ok = conn_stream_write(x->s, x->c, x->sse.p, x->sse.n);
    x->sse.n = 0;
    if (!ok) gen_cancel(x->g); // the client went away: stop generating for it
    return ok;
}

static void run_whole(resp_ctx *x)
{
    const nuri_reply_delta *d;
    size_t nd;
    bool done = false;
    while (!done) {
        if (!gen_step(x->g, WAIT_SLICE_MS, &d, &nd, &done)) return; // the client went
        if (!take_deltas(x, d, nd, false)) {
            serve_error e;
            serve_fail(&e, 500, "server_error", NULL, NULL, "out of memory");
            conn_reply_error(x->s, x->c, &e);
            return;
        }
    }
    serve_error e;
    if (gen_error_of(x->g, &e)) {
        conn_reply_error(x->s, x->c, &e);
        return;
    }
    const nuri_reply *rep = gen_reply(x->g);
    if (rep->error)
        serve_log(x->s, "%s: the reply's tool call is malformed (%s)", x->id, rep->error);
    item_close(x, false);
    json_t *resp = final_object(x);
    if (!resp) {
        serve_fail(&e, 500, "server_error", NULL, NULL, "out of memory");
        conn_reply_error(x->s, x->c, &e);
        return;
    }
    if (!store_response(x, resp, &e)) {
        json_decref(resp);
        conn_reply_error(x->s, x->c, &e);
        return;
    }
    conn_reply_json(x->s, x->c, 200, resp);
}

static void run_stream(resp_ctx *x)
{
    if (!conn_stream_begin(x->s, x->c, 200, "text/event-stream")) {
        gen_cancel(x->g);
        return;
    }
    json_t *r0 = response_object(x, "in_progress", json_array(), NULL, NULL);
    bool ok = sse_event(x, "response.created", json_pack("{s:O}", "response", r0)) &&
              sse_event(x, "response.in_progress", json_pack("{s:O}", "response", r0));
    json_decref(r0);
    const nuri_reply_delta *d;
    size_t nd;
    bool done = false;
    while (ok && !done) {
        if (!gen_step(x->g, WAIT_SLICE_MS, &d, &nd, &done)) return; // the client went
        ok = take_deltas(x, d, nd, true) && flush_sse(x);
    }
    if (!ok) return;
    serve_error e;
    bool failed = gen_error_of(x->g, &e);
    json_t *resp = NULL;
    if (!failed) {
        ok = item_close(x, true);
        resp = final_object(x);
        failed = !resp || !store_response(x, resp, &e);
        if (!resp) serve_fail(&e, 500, "server_error", NULL, NULL, "out of memory");
    }
    if (failed) { // the error travels in the stream
        json_decref(resp);
        json_t *err = json_pack("{s:s,s:s}", "code", e.code[0] ? e.code : "server_error", "message",
                                e.message);
        json_t *rf =
            response_object(x, "failed", json_incref(x->o.output), usage_object(x->g), err);
        ok = sse_event(x, "response.failed", json_pack("{s:o}", "response", rf));
    } else {
        bool cut = !strcmp(json_string_value(json_object_get(resp, "status")), "incomplete");
        ok = ok && sse_event(x, cut ? "response.incomplete" : "response.completed",
                             json_pack("{s:o}", "response", resp));
    }
    if (ok && flush_sse(x) && !conn_stream_end(x->s, x->c)) gen_cancel(x->g);
}

void routes_responses(serve_server *s, conn *c)
{
    const http_request *rq = conn_request(c);
    double t_arrival = serve_now();
    serve_error e;
    json_error_t je;
    json_t *body = json_loadb(rq->body, rq->body_len, JSON_REJECT_DUPLICATES, &je);
    if (!body) {
        serve_fail(&e, 400, "invalid_request_error", NULL, "invalid_json",
                   "the request body is not valid JSON: %s (line %d, column %d)", je.text, je.line,
                   je.column);
        conn_reply_error(s, c, &e);
        return;
    }
    resp_ctx x = {.s = s, .c = c, .owner = rq->owner, .o = {.cur = -1}};
    x.created = (long long)time(NULL);
    if (!parse_response_request(s, rq->owner, body, &x.rq, &e) ||
        nuri_store_new_id("resp", x.id) != NURI_OK) {
        if (!e.http) serve_fail(&e, 500, "server_error", NULL, NULL, "%s", nuri_last_error());
        json_decref(body);
        resp_req_free(&x.rq);
        conn_reply_error(s, c, &e);
        return;
    }
    json_decref(body);
    // a response to be stored needs the store now, not after its tokens were paid for (a
    // follow-up has already read its history from it)
    nuri_status ss = x.rq.store && s->store ? nuri_store_check(s->store) : NURI_OK;
    if (ss != NURI_OK) {
        store_fail(&e, ss, "the store");
        resp_req_free(&x.rq);
        conn_reply_error(s, c, &e);
        return;
    }
    json_t *chat = x.rq.chat;
    x.rq.chat = NULL;
    // the KV tiers: the pool in memory (the scheduler looks), then a snapshot on disk
    nuri_kv_snapshot snap = {0};
    const char *key = x.rq.previous_id ? x.rq.previous_id : x.rq.conversation_id;
    if (s->kvsnap && key) {
        nuri_status ks = nuri_kvsnap_get(s->kvsnap, key, serve_kv_bytes_per_token(s->sched), &snap);
        if (ks == NURI_ERR_FORMAT) {
            serve_log(s, "%s", nuri_last_error());
            serve_metrics_kv_snapshot(&s->metrics, false, true);
        }
    }
    gen_opts go = {
        .always_parse = true, .kv_in = snap.kv ? &snap : NULL, .want_kv = s->kvsnap && x.rq.store};
    x.g = gen_begin(s, c, chat, SERVE_CHAT, &go, t_arrival, &e);
    nuri_kv_snapshot_free(&snap); // (taken by the request when it started)
    if (!x.g) {
        map_param(&e);
        if (e.http) conn_reply_error(s, c, &e);
        resp_req_free(&x.rq);
        return;
    }
    x.o.output = json_array();
    if (x.rq.stream)
        run_stream(&x);
    else
        run_whole(&x);
    if (x.stored) save_kv(&x); // after the answer: the snapshot is for the next turn
    gen_end(x.g);
    json_decref(x.o.output);
    free(x.o.text.p);
    free(x.sse.p);
    resp_req_free(&x.rq);
}

/* ============================== stored objects ============================== */

/* The query's value of key (URL-decoded into out), or false when absent. */
static bool query_get(const char *q, const char *key, char *out, size_t cap)
{
    size_t kl = strlen(key);
    for (const char *p = q; p && *p;) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        if (len > kl && !strncmp(p, key, kl) && p[kl] == '=') {
            size_t o = 0;
            for (size_t i = kl + 1; i < len && o + 1 < cap; i++) {
                char ch = p[i];
                if (ch == '%' && i + 2 < len) {
                    unsigned v;
                    if (sscanf(p + i + 1, "%2x", &v) == 1) {
                        ch = (char)v;
                        i += 2;
                    }
                } else if (ch == '+') {
                    ch = ' ';
                }
                out[o++] = ch;
            }
            out[o] = 0;
            return true;
        }
        p = amp ? amp + 1 : NULL;
    }
    return false;
}

/* A page request from the query (after, limit 1..100 default 20, order asc|desc default desc). */
static bool page_from_query(const char *q, nuri_store_page *pg, char *after, size_t cap,
                            serve_error *e)
{
    char v[32];
    pg->after = query_get(q, "after", after, cap) ? after : NULL;
    pg->limit = 20;
    pg->order = NURI_STORE_DESC;
    if (query_get(q, "limit", v, sizeof v)) {
        char *end;
        long l = strtol(v, &end, 10);
        if (!*v || *end || l < 1 || l > NURI_STORE_LIST_MAX)
            return serve_bad(e, "limit", "'limit' must be an integer from 1 to %d",
                             NURI_STORE_LIST_MAX);
        pg->limit = (int)l;
    }
    if (query_get(q, "order", v, sizeof v)) {
        if (!strcmp(v, "asc"))
            pg->order = NURI_STORE_ASC;
        else if (strcmp(v, "desc"))
            return serve_bad(e, "order", "'order' must be asc or desc");
    }
    return true;
}

/* The body of a POST to a store route, as an object. */
static json_t *store_body(const http_request *rq, serve_error *e)
{
    json_error_t je;
    json_t *b = rq->body_len ? json_loadb(rq->body, rq->body_len, JSON_REJECT_DUPLICATES, &je)
                             : json_object();
    if (!b) {
        serve_fail(e, 400, "invalid_request_error", NULL, "invalid_json",
                   "the request body is not valid JSON: %s", je.text);
        return NULL;
    }
    if (!json_is_object(b)) {
        json_decref(b);
        serve_bad(e, NULL, "the request body must be a JSON object");
        return NULL;
    }
    return b;
}

static bool check_items(const json_t *items, const char *param, serve_error *e)
{
    if (!json_is_array(items)) return serve_bad(e, param, "'%s' must be an array of items", param);
    if (json_array_size(items) > 20)
        return serve_bad(e, param, "'%s' holds %zu items; at most 20 can be added at once", param,
                         json_array_size(items));
    size_t i;
    const json_t *it;
    json_array_foreach(items, i, it)
    {
        char p[64];
        snprintf(p, sizeof p, "%s[%zu]", param, i);
        if (!check_item(it, p, e)) return false;
    }
    return true;
}

static bool only_keys(const json_t *b, const char *const *keys, serve_error *e)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)b, k, v)
    {
        bool ok = false;
        for (size_t i = 0; keys[i] && !ok; i++) ok = !strcmp(k, keys[i]);
        if (!ok)
            return serve_fail(e, 400, "invalid_request_error", k, "unsupported_parameter",
                              "'%.60s' is not supported here", k);
    }
    return true;
}

/* Runs one store route; the answer in *out or an error in e. */
static bool store_route(serve_server *s, const http_request *rq, json_t **out, serve_error *e)
{
    nuri_store *st = s->store;
    const char *m = rq->method, *own = rq->owner;
    bool get = !strcmp(m, "GET"), post = !strcmp(m, "POST"), del = !strcmp(m, "DELETE");
    char path[512];
    snprintf(path, sizeof path, "%s", rq->path);
    // split into segments after /v1/
    char *seg[6] = {0};
    int ns = 0;
    for (char *p = strtok(path + 4, "/"); p && ns < 6; p = strtok(NULL, "/")) seg[ns++] = p;
    char after[NURI_STORE_ID_MAX + 8];
    nuri_store_page pg;
    nuri_status r = NURI_OK;
    json_t *b = NULL;
    bool ok = true;
#define METHOD(cond)                                                                               \
    if (!(cond))                                                                                   \
        return serve_fail(e, 405, "invalid_request_error", NULL, "method_not_allowed",             \
                          "%s does not take %s", rq->path, m);
    if (!strcmp(seg[0], "responses") && ns >= 2) {
        const char *id = seg[1];
        if (ns == 2) {
            METHOD(get || del);
            if (get) {
                r = nuri_store_response_get(st, own, id, out);
            } else if ((r = nuri_store_response_delete(st, own, id)) == NURI_OK) {
                *out = json_pack("{s:s,s:s,s:b}", "id", id, "object", "response", "deleted", 1);
            }
        } else if (ns == 3 && !strcmp(seg[2], "input_items")) {
            METHOD(get);
            if (!page_from_query(rq->query, &pg, after, sizeof after, e)) return false;
            r = nuri_store_response_input_items(st, own, id, &pg, out);
        } else {
            return serve_fail(e, 404, "invalid_request_error", NULL, "not_found",
                              "no route for %s %.200s", m, rq->path);
        }
    } else if (!strcmp(seg[0], "conversations")) {
        if (ns == 1 && get) { // the owner's conversations: a nuri extension (the web page's list)
            if (!page_from_query(rq->query, &pg, after, sizeof after, e)) return false;
            r = nuri_store_conversation_list(st, own, &pg, out);
        } else if (ns == 1) {
            METHOD(post);
            static const char *const keys[] = {"items", "metadata", NULL};
            if (!(b = store_body(rq, e))) return false;
            json_t *items = json_object_get(b, "items"), *meta = json_object_get(b, "metadata");
            if (json_is_null(items)) items = NULL;
            if (json_is_null(meta)) meta = NULL;
            ok = only_keys(b, keys, e) && (!items || check_items(items, "items", e)) &&
                 (!meta || json_is_object(meta) ||
                  serve_bad(e, "metadata", "'metadata' must be an object"));
            if (ok) r = nuri_store_conversation_create(st, own, meta, items, out);
        } else if (ns == 2) {
            const char *id = seg[1];
            METHOD(get || post || del);
            if (get) {
                r = nuri_store_conversation_get(st, own, id, out);
            } else if (del) {
                if ((r = nuri_store_conversation_delete(st, own, id)) == NURI_OK)
                    *out = json_pack("{s:s,s:s,s:b}", "id", id, "object", "conversation.deleted",
                                     "deleted", 1);
            } else {
                static const char *const keys[] = {"metadata", NULL};
                if (!(b = store_body(rq, e))) return false;
                json_t *meta = json_object_get(b, "metadata");
                ok = only_keys(b, keys, e) &&
                     (json_is_object(meta) ||
                      serve_bad(e, "metadata", "'metadata' must be an object"));
                if (ok) r = nuri_store_conversation_update(st, own, id, meta, out);
            }
        } else if (ns == 3 && !strcmp(seg[2], "items")) {
            const char *id = seg[1];
            METHOD(get || post);
            if (get) {
                if (!page_from_query(rq->query, &pg, after, sizeof after, e)) return false;
                r = nuri_store_conversation_items_list(st, own, id, &pg, out);
            } else {
                static const char *const keys[] = {"items", NULL};
                if (!(b = store_body(rq, e))) return false;
                ok = only_keys(b, keys, e) && check_items(json_object_get(b, "items"), "items", e);
                if (ok)
                    r = nuri_store_conversation_items_add(st, own, id, json_object_get(b, "items"),
                                                          out);
            }
        } else if (ns == 4 && !strcmp(seg[2], "items")) {
            METHOD(get || del);
            if (get)
                r = nuri_store_conversation_item_get(st, own, seg[1], seg[3], out);
            else
                r = nuri_store_conversation_item_delete(st, own, seg[1], seg[3], out);
        } else {
            return serve_fail(e, 404, "invalid_request_error", NULL, "not_found",
                              "no route for %s %.200s", m, rq->path);
        }
    } else {
        return serve_fail(e, 404, "invalid_request_error", NULL, "not_found",
                          "no route for %s %.200s", m, rq->path);
    }
#undef METHOD
    json_decref(b);
    if (!ok) return false;
    if (r != NURI_OK) return store_fail(e, r, "the store");
    if (!*out) return serve_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    return true;
}

void routes_store(serve_server *s, conn *c)
{
    const http_request *rq = conn_request(c);
    serve_error e;
    json_t *out = NULL;
    if (!s->store) {
        no_store(&e, NULL);
        conn_reply_error(s, c, &e);
        return;
    }
    if (store_route(s, rq, &out, &e))
        conn_reply_json(s, c, 200, out);
    else
        conn_reply_error(s, c, &e);
}
