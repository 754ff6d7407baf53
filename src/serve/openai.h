/*
 * openai.h: the OpenAI API's request bodies in, validated C structs out; and the error objects.
 *
 * Parsing keeps no global state and never prints. A bad request fails with a serve_error that names
 * the parameter at fault ("messages[2].content", "top_logprobs") and says what is wrong with it;
 * the HTTP layer sends it as {"error": {"message", "type", "param", "code"}} with its status.
 * A top-level key nuri does not implement is refused by name (code "unsupported_parameter"), never
 * silently ignored; `user`, `metadata` and `store` are accepted without effect. Known keys with a
 * wrong type or range are errors, never silently clamped. JSON null means "the default" for every
 * optional key. llama-server's sampling keys are taken too: top_k, min_p, repeat_penalty,
 * repeat_last_n (-1: the whole completion; penalties look at the generated tokens).
 * Structured output: response_format {"type": "text" | "json_object" | "json_schema",
 * "json_schema": {"name", "schema", "strict", "description"}} and llama-server's "grammar" (GBNF
 * text) compile to r->grammar; a schema keyword nuri cannot enforce is a 400 whose param is its
 * path ("response_format.json_schema.schema.properties.tags.uniqueItems").
 * Chat tool calling: tools (function tools only), tool_choice, parallel_tool_calls; assistant
 * messages' tool_calls and tool messages' tool_call_id are checked; reasoning_effort and
 * chat_template_kwargs go to the template as variables (data, like the messages). The grammar for
 * a forced call depends on the template, so the route builds it (nuri_toolcall_grammar).
 */
#ifndef NURI_SERVE_OPENAI_H
#define NURI_SERVE_OPENAI_H

#include "grammar/grammar.h"
#include "sample/sampler.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SERVE_MAX_STOP 4          // stop strings per request (OpenAI's limit)
#define SERVE_MAX_STOP_LEN 256    // bytes per stop string
#define SERVE_MAX_LOGIT_BIAS 1024 // entries in logit_bias
#define SERVE_MAX_MESSAGES 4096   // messages in one chat request
#define SERVE_MAX_TOOLS 128       // tools in one chat request (OpenAI's limit)
#define SERVE_MAX_CHOICES 16      // n: choices per request

/* An error to send: an HTTP status and OpenAI's error object fields. */
typedef struct serve_error {
    int http;          // 400, 401, 404, 405, 408, 413, 500, 503
    const char *type;  // "invalid_request_error", "authentication_error", "server_error", ...
    char param[96];    // the parameter at fault, "" for none (sent as null)
    char code[48];     // a machine-readable code, "" for none (sent as null)
    char message[512]; // for people: what is wrong, and where
} serve_error;

/* Fills e (param and code may be NULL) and returns false, for `return serve_fail(...)`. */
bool serve_fail(serve_error *e, int http, const char *type, const char *param, const char *code,
                const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* A 400 invalid_request_error with code "invalid_value" naming param; returns false. */
bool serve_bad(serve_error *e, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* {"error": {...}} for e. Caller frees with free(). NULL only when out of memory. */
char *serve_error_json(const serve_error *e);

/* tool_choice. NONE: tools (if any) are not shown to the model and replies are not parsed for
 * calls; AUTO: the model chooses; REQUIRED / NAMED: a grammar makes the reply one or more calls
 * (NAMED: of that function), with arguments valid against its parameters schema. */
typedef enum serve_tool_choice {
    SERVE_TOOLS_NONE,
    SERVE_TOOLS_AUTO,
    SERVE_TOOLS_REQUIRED,
    SERVE_TOOLS_NAMED,
} serve_tool_choice;

typedef enum serve_kind {
    SERVE_CHAT,       // POST /v1/chat/completions
    SERVE_COMPLETION, // POST /v1/completions
} serve_kind;

/* A validated request. Strings and arrays it points to are owned by it (serve_request_free), except
 * `messages` and `prompt_text`, borrowed from the parsed body (keep the body alive). */
typedef struct serve_request {
    serve_kind kind;
    json_t *messages;        // chat: the array, each message checked (role, content)
    const char *prompt_text; // completion with a text prompt (NUL-terminated), else NULL
    size_t prompt_len;       // bytes
    int32_t *prompt_tokens;  // completion with a token-id prompt, else NULL
    int32_t n_prompt_tokens;
    int32_t n_choices; // n: choices to generate from the one prompt (1..SERVE_MAX_CHOICES)
    bool stream;
    bool include_usage;   // stream_options.include_usage
    int32_t max_tokens;   // tokens to generate at most; 0 = until the context is full
    bool logprobs;        // report the chosen tokens' logprobs
    int32_t top_logprobs; // alternatives per token, [0, NURI_MAX_TOP_LOGPROBS]
    bool seed_given;
    int32_t repeat_last_n; // repeat_penalty's window, tokens (-1: the whole completion)
    nuri_sampler_params
        sp;                // temperature, top_p, penalties, seed, bias (no stop tokens / limit yet)
    nuri_logit_bias *bias; // sp.logit_bias's storage
    char *stop[SERVE_MAX_STOP];
    int32_t n_stop;
    char model[128];       // the model name the client asked for ("" when absent)
    nuri_grammar *grammar; // response_format json_object / json_schema, or llama-server's
                           // "grammar" (GBNF); NULL: unconstrained. Owned (one reference)
    json_t *answer_schema; // response_format's schema ({"type": "object"} for json_object), for
                           // a grammar that also allows tool calls; NULL. Owned
    // chat: tool calling (see serve_tool_choice). tools is the request's validated array
    // (borrowed from the body; NULL when absent or empty); tool_name is the NAMED function.
    json_t *tools;
    serve_tool_choice tool_choice;
    const char *tool_name;
    bool parallel_tool_calls; // default true
    json_t *template_kwargs;  // chat_template_kwargs plus reasoning_effort, for the template
                              // (data, as messages are); NULL when neither. Owned
} serve_request;

/* Validates body (a parsed JSON value of any kind) as a request of `kind` for a vocabulary of
 * n_vocab tokens (logit_bias and token prompts are checked against it). On failure, e is filled
 * (status 400) and r needs no free. */
bool serve_request_parse(json_t *body, serve_kind kind, int32_t n_vocab, serve_request *r,
                         serve_error *e);
void serve_request_free(serve_request *r);

/* The text of a chat message's content: a string, or an array of {"type":"text","text":...} parts
 * joined. Only for messages that serve_request_parse accepted. Caller frees with free(). */
char *serve_message_text(json_t *message);

/* ---- responses ---- */

/* Replaces invalid UTF-8 in s[0..n) with U+FFFD so that the result is valid JSON text.
 * Caller frees with free(). */
char *serve_utf8_sanitize(const char *s, size_t n, size_t *out_len);

#endif
