/*
 * openai.c: validation of OpenAI chat and completion request bodies, and OpenAI error objects.
 * See openai.h for the rules. Every check names the parameter it is about.
 */
#include "serve/openai.h"

#include "grammar/json_schema.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ============================== errors ============================== */

bool serve_fail(serve_error *e, int http, const char *type, const char *param, const char *code,
                const char *fmt, ...)
{
    e->http = http;
    e->type = type;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    snprintf(e->code, sizeof e->code, "%s", code ? code : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return false;
}

char *serve_error_json(const serve_error *e)
{
    size_t n;
    char *msg = serve_utf8_sanitize(e->message, strlen(e->message), &n);
    if (!msg) return NULL;
    json_t *err = json_pack("{s:s%,s:s,s:o,s:o}", "message", msg, n, "type",
                            e->type ? e->type : "invalid_request_error", "param",
                            e->param[0] ? json_string(e->param) : json_null(), "code",
                            e->code[0] ? json_string(e->code) : json_null());
    free(msg);
    json_t *root = err ? json_pack("{s:o}", "error", err) : NULL;
    char *s = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    return s;
}

/* ============================== UTF-8 ============================== */

/* Length of the well-formed UTF-8 sequence at s[0..n), or 0 if it is ill-formed (RFC 3629:
 * no overlongs, no surrogates, nothing above U+10FFFF). */
static size_t utf8_valid_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return 0;
    }
    if (n < len) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    return len;
}

char *serve_utf8_sanitize(const char *s, size_t n, size_t *out_len)
{
    char *out = malloc(n * 3 + 1); // each bad byte becomes 3 bytes at most
    if (!out) return NULL;
    const unsigned char *u = (const unsigned char *)s;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t l = utf8_valid_len(u + i, n - i);
        if (l && !(l == 1 && u[i] == 0)) {
            memcpy(out + o, s + i, l);
            o += l;
            i += l;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3); // U+FFFD (also for NUL, which JSON strings
            o += 3;                             // from jansson cannot carry unescaped)
            i++;
        }
    }
    out[o] = 0;
    if (out_len) *out_len = o;
    return out;
}

/* ============================== request parsing ============================== */

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "a value";
}

bool serve_bad(serve_error *e, const char *param, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return serve_fail(e, 400, "invalid_request_error", param, "invalid_value", "%s", msg);
}

/* Optional key: NULL when absent or null. */
static json_t *opt(json_t *body, const char *key)
{
    json_t *v = json_object_get(body, key);
    return v && !json_is_null(v) ? v : NULL;
}

static bool get_bool(json_t *body, const char *key, bool *out, serve_error *e)
{
    json_t *v = opt(body, key);
    if (!v) return true;
    if (!json_is_boolean(v))
        return serve_bad(e, key, "'%s' must be a boolean, not %s", key, type_name(v));
    *out = json_is_true(v);
    return true;
}

/* A number in [lo, hi]; integers are numbers too. */
static bool get_num(json_t *body, const char *key, double lo, double hi, float *out, serve_error *e)
{
    json_t *v = opt(body, key);
    if (!v) return true;
    if (!json_is_number(v))
        return serve_bad(e, key, "'%s' must be a number, not %s", key, type_name(v));
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi))
        return serve_bad(e, key, "'%s' is %g; it must be between %g and %g", key, d, lo, hi);
    *out = (float)d;
    return true;
}

static bool get_int(json_t *body, const char *key, long long lo, long long hi, long long *out,
                    bool *given, serve_error *e)
{
    json_t *v = opt(body, key);
    if (!v) return true;
    if (!json_is_integer(v))
        return serve_bad(e, key, "'%s' must be an integer, not %s", key, type_name(v));
    long long x = json_integer_value(v);
    if (x < lo || x > hi)
        return serve_bad(e, key, "'%s' is %lld; it must be between %lld and %lld", key, x, lo, hi);
    *out = x;
    if (given) *given = true;
    return true;
}

static bool parse_stop(json_t *body, serve_request *r, serve_error *e)
{
    json_t *v = opt(body, "stop");
    if (!v) return true;
    json_t *one[1] = {v};
    json_t **items = one;
    size_t n = 1;
    if (json_is_array(v)) {
        n = json_array_size(v);
        if (n > SERVE_MAX_STOP)
            return serve_bad(e, "stop", "'stop' has %zu strings; at most %d are allowed", n,
                             SERVE_MAX_STOP);
    } else if (!json_is_string(v)) {
        return serve_bad(e, "stop", "'stop' must be a string or an array of strings, not %s",
                         type_name(v));
    }
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_is_array(v) ? json_array_get(v, i) : items[i];
        char param[32];
        snprintf(param, sizeof param, json_is_array(v) ? "stop[%zu]" : "stop", i);
        if (!json_is_string(s))
            return serve_bad(e, param, "'%s' must be a string, not %s", param, type_name(s));
        size_t len = json_string_length(s);
        if (len > SERVE_MAX_STOP_LEN)
            return serve_bad(e, param, "'%s' is %zu bytes long; at most %d are allowed", param, len,
                             SERVE_MAX_STOP_LEN);
        if (len == 0 || memchr(json_string_value(s), 0, len)) continue; // empty: never matches
        if (!(r->stop[r->n_stop] = strdup(json_string_value(s))))
            return serve_fail(e, 500, "server_error", NULL, NULL, "out of memory");
        r->n_stop++;
    }
    return true;
}

static bool parse_logit_bias(json_t *body, int32_t n_vocab, serve_request *r, serve_error *e)
{
    json_t *v = opt(body, "logit_bias");
    if (!v) return true;
    if (!json_is_object(v))
        return serve_bad(e, "logit_bias",
                         "'logit_bias' must be an object mapping token ids to biases, "
                         "not %s",
                         type_name(v));
    size_t n = json_object_size(v);
    if (n > SERVE_MAX_LOGIT_BIAS)
        return serve_bad(e, "logit_bias", "'logit_bias' has %zu entries; at most %d are allowed", n,
                         SERVE_MAX_LOGIT_BIAS);
    if (n == 0) return true;
    if (!(r->bias = calloc(n, sizeof *r->bias)))
        return serve_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    const char *key;
    json_t *val;
    size_t i = 0;
    json_object_foreach(v, key, val)
    {
        char *end;
        long id = strtol(key, &end, 10);
        if (!*key || *end || end == key || id < 0 || id >= n_vocab)
            return serve_bad(e, "logit_bias",
                             "'logit_bias' key \"%.40s\" is not a token id in 0..%d", key,
                             n_vocab - 1);
        if (!json_is_number(val))
            return serve_bad(e, "logit_bias",
                             "'logit_bias' value for token %ld must be a number, not %s", id,
                             type_name(val));
        double b = json_number_value(val);
        if (!(b >= -100 && b <= 100))
            return serve_bad(
                e, "logit_bias",
                "'logit_bias' value for token %ld is %g; it must be between -100 and 100", id, b);
        r->bias[i].token = (int32_t)id;
        r->bias[i].bias = (float)b;
        i++;
    }
    r->sp.logit_bias = r->bias;
    r->sp.n_logit_bias = (int32_t)i;
    return true;
}

static bool is_text_parts(json_t *content, const char *param, serve_error *e)
{
    size_t i;
    json_t *part;
    json_array_foreach(content, i, part)
    {
        char p[128];
        snprintf(p, sizeof p, "%s[%zu]", param, i);
        if (!json_is_object(part)) return serve_bad(e, p, "'%s' must be an object", p);
        json_t *type = json_object_get(part, "type");
        if (!json_is_string(type) || strcmp(json_string_value(type), "text"))
            return serve_bad(e, p, "'%s': only parts of type \"text\" are supported", p);
        json_t *text = json_object_get(part, "text");
        if (!json_is_string(text)) return serve_bad(e, p, "'%s.text' must be a string", p);
    }
    return true;
}

/* A function name as OpenAI allows it: 1 to 64 of a-z, A-Z, 0-9, '_' and '-'. */
static bool good_function_name(const char *s, size_t n)
{
    if (n == 0 || n > 64) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* An optional string member: absent / null is fine. */
static bool opt_string(json_t *obj, const char *key, const char *param, serve_error *e)
{
    json_t *v = opt(obj, key);
    if (v && !json_is_string(v))
        return serve_bad(e, param, "'%s' must be a string, not %s", param, type_name(v));
    return true;
}

/* The tool-calling parts of message i: an assistant's tool_calls (and its reasoning_content), a
 * tool result's tool_call_id. They go to the chat template as data. */
static bool check_message_tools(json_t *msg, size_t i, const char *role, serve_error *e)
{
    char p[96];
    snprintf(p, sizeof p, "messages[%zu].name", i);
    if (!opt_string(msg, "name", p, e)) return false;
    if (!strcmp(role, "tool")) {
        snprintf(p, sizeof p, "messages[%zu].tool_call_id", i);
        json_t *id = json_object_get(msg, "tool_call_id");
        if (!json_is_string(id))
            return serve_bad(e, p, "'%s' is required: the id of the tool call this message answers",
                             p);
    }
    if (strcmp(role, "assistant")) {
        snprintf(p, sizeof p, "messages[%zu].tool_calls", i);
        if (opt(msg, "tool_calls"))
            return serve_bad(e, p, "'%s': only assistant messages carry tool calls", p);
        return true;
    }
    snprintf(p, sizeof p, "messages[%zu].reasoning_content", i);
    if (!opt_string(msg, "reasoning_content", p, e)) return false;
    json_t *calls = opt(msg, "tool_calls");
    if (!calls) return true;
    snprintf(p, sizeof p, "messages[%zu].tool_calls", i);
    if (!json_is_array(calls))
        return serve_bad(e, p, "'%s' must be an array, not %s", p, type_name(calls));
    size_t k;
    json_t *c;
    json_array_foreach(calls, k, c)
    {
        snprintf(p, sizeof p, "messages[%zu].tool_calls[%zu]", i, k);
        if (!json_is_object(c))
            return serve_bad(e, p, "'%s' must be an object, not %s", p, type_name(c));
        json_t *type = opt(c, "type");
        if (type && (!json_is_string(type) || strcmp(json_string_value(type), "function")))
            return serve_bad(e, p, "'%s.type' must be \"function\"", p);
        if (!opt_string(c, "id", p, e)) return false;
        json_t *f = json_object_get(c, "function");
        snprintf(p, sizeof p, "messages[%zu].tool_calls[%zu].function", i, k);
        if (!json_is_object(f))
            return serve_bad(e, p, "'%s' must be an object with name and arguments", p);
        json_t *name = json_object_get(f, "name");
        snprintf(p, sizeof p, "messages[%zu].tool_calls[%zu].function.name", i, k);
        if (!json_is_string(name)) return serve_bad(e, p, "'%s' must be a string", p);
        json_t *args = json_object_get(f, "arguments");
        snprintf(p, sizeof p, "messages[%zu].tool_calls[%zu].function.arguments", i, k);
        if (args && !json_is_string(args) && !json_is_object(args))
            return serve_bad(e, p, "'%s' must be a string (the arguments as JSON text), not %s", p,
                             type_name(args));
    }
    return true;
}

static bool parse_messages(json_t *body, serve_request *r, serve_error *e)
{
    json_t *m = json_object_get(body, "messages");
    if (!m) return serve_bad(e, "messages", "'messages' is required");
    if (!json_is_array(m))
        return serve_bad(e, "messages", "'messages' must be an array, not %s", type_name(m));
    size_t n = json_array_size(m);
    if (n == 0) return serve_bad(e, "messages", "'messages' must contain at least one message");
    if (n > SERVE_MAX_MESSAGES)
        return serve_bad(e, "messages", "'messages' has %zu messages; at most %d are allowed", n,
                         SERVE_MAX_MESSAGES);
    static const char *roles[] = {"system", "developer", "user", "assistant", "tool"};
    for (size_t i = 0; i < n; i++) {
        json_t *msg = json_array_get(m, i);
        char p[64];
        snprintf(p, sizeof p, "messages[%zu]", i);
        if (!json_is_object(msg))
            return serve_bad(e, p, "'%s' must be an object, not %s", p, type_name(msg));
        json_t *role = json_object_get(msg, "role");
        snprintf(p, sizeof p, "messages[%zu].role", i);
        if (!json_is_string(role)) return serve_bad(e, p, "'%s' must be a string", p);
        bool known = false;
        for (size_t k = 0; k < sizeof roles / sizeof roles[0]; k++)
            known |= !strcmp(json_string_value(role), roles[k]);
        if (!known)
            return serve_bad(e, p,
                             "'%s' is \"%.40s\"; it must be one of system, developer, user, "
                             "assistant, tool",
                             p, json_string_value(role));
        json_t *content = json_object_get(msg, "content");
        snprintf(p, sizeof p, "messages[%zu].content", i);
        bool assistant = !strcmp(json_string_value(role), "assistant");
        if (!content || json_is_null(content)) {
            if (!assistant) return serve_bad(e, p, "'%s' is required", p);
        } else if (json_is_array(content)) {
            if (!is_text_parts(content, p, e)) return false;
        } else if (!json_is_string(content)) {
            return serve_bad(e, p, "'%s' must be a string or an array of text parts, not %s", p,
                             type_name(content));
        }
        if (!check_message_tools(msg, i, json_string_value(role), e)) return false;
    }
    r->messages = m;
    return true;
}

static bool parse_prompt(json_t *body, int32_t n_vocab, serve_request *r, serve_error *e)
{
    json_t *p = json_object_get(body, "prompt");
    if (!p || json_is_null(p)) return serve_bad(e, "prompt", "'prompt' is required");
    if (json_is_array(p) && json_array_size(p) == 1 && json_is_string(json_array_get(p, 0)))
        p = json_array_get(p, 0);
    if (json_is_string(p)) {
        r->prompt_text = json_string_value(p);
        r->prompt_len = json_string_length(p);
        return true;
    }
    if (!json_is_array(p) || json_array_size(p) == 0)
        return serve_bad(e, "prompt",
                         "'prompt' must be a string, or a non-empty array of token ids");
    size_t n = json_array_size(p);
    if (n > (1u << 24)) return serve_bad(e, "prompt", "'prompt' has too many tokens (%zu)", n);
    if (!(r->prompt_tokens = malloc(n * sizeof *r->prompt_tokens)))
        return serve_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(p, i);
        if (!json_is_integer(t)) {
            if (json_is_string(t) || json_is_array(t))
                return serve_bad(e, "prompt", "'prompt': only one prompt per request is supported");
            return serve_bad(e, "prompt", "'prompt[%zu]' must be a token id, not %s", i,
                             type_name(t));
        }
        json_int_t id = json_integer_value(t);
        if (id < 0 || id >= n_vocab)
            return serve_bad(e, "prompt", "'prompt[%zu]' is %lld, not a token id in 0..%d", i,
                             (long long)id, n_vocab - 1);
        r->prompt_tokens[i] = (int32_t)id;
    }
    r->n_prompt_tokens = (int32_t)n;
    return true;
}

/* Every key a request may carry. A key that is not here is refused by name: a client that asks
 * for something nuri does not do must learn it, not get an answer that silently ignored it.
 * `user`, `metadata` and `store` are accepted and have no effect (README, "Serving"). */
static const char *const chat_keys[] = {"model",
                                        "messages",
                                        "n",
                                        "stream",
                                        "stream_options",
                                        "max_tokens",
                                        "max_completion_tokens",
                                        "temperature",
                                        "top_p",
                                        "frequency_penalty",
                                        "presence_penalty",
                                        "seed",
                                        "stop",
                                        "logit_bias",
                                        "logprobs",
                                        "top_logprobs",
                                        "user",
                                        "metadata",
                                        "store",
                                        "top_k",
                                        "min_p",
                                        "repeat_penalty",
                                        "repeat_last_n",
                                        "response_format",
                                        "grammar",
                                        "tools",
                                        "tool_choice",
                                        "parallel_tool_calls",
                                        "reasoning_effort",
                                        "chat_template_kwargs",
                                        NULL};
static const char *const completion_keys[] = {"model",
                                              "prompt",
                                              "n",
                                              "best_of",
                                              "echo",
                                              "suffix",
                                              "stream",
                                              "stream_options",
                                              "max_tokens",
                                              "temperature",
                                              "top_p",
                                              "frequency_penalty",
                                              "presence_penalty",
                                              "seed",
                                              "stop",
                                              "logit_bias",
                                              "logprobs",
                                              "user",
                                              "top_k",
                                              "min_p",
                                              "repeat_penalty",
                                              "repeat_last_n",
                                              "response_format",
                                              "grammar",
                                              NULL};

static bool known_keys_only(json_t *body, serve_kind kind, serve_error *e)
{
    const char *const *keys = kind == SERVE_CHAT ? chat_keys : completion_keys;
    const char *key;
    json_t *val;
    json_object_foreach(body, key, val)
    {
        bool known = false;
        for (size_t i = 0; keys[i] && !known; i++) known = !strcmp(key, keys[i]);
        if (!known)
            return serve_fail(e, 400, "invalid_request_error", key, "unsupported_parameter",
                              "'%.60s' is not supported by this server (nuri %s); remove it", key,
                              NURI_VERSION);
    }
    return true;
}

/* A grammar failed to compile: 400 naming where (500 when out of memory). */
static bool grammar_fail(serve_error *e, nuri_status st, const char *param)
{
    if (st == NURI_ERR_NOMEM)
        return serve_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    return serve_fail(e, 400, "invalid_request_error", param,
                      st == NURI_ERR_UNSUPPORTED ? "unsupported_schema" : "invalid_value", "%s",
                      nuri_last_error());
}

static bool parse_structured(json_t *body, serve_request *r, serve_error *e)
{
    json_t *rf = opt(body, "response_format"), *gr = opt(body, "grammar");
    if (rf && gr)
        return serve_bad(e, "grammar", "'grammar' and 'response_format' cannot be used together");
    if (gr) {
        if (!json_is_string(gr))
            return serve_bad(e, "grammar", "'grammar' must be a string (GBNF), not %s",
                             type_name(gr));
        nuri_status st =
            nuri_grammar_parse(json_string_value(gr), json_string_length(gr), &r->grammar);
        return st == NURI_OK || grammar_fail(e, st, "grammar");
    }
    if (!rf) return true;
    if (!json_is_object(rf))
        return serve_bad(e, "response_format", "'response_format' must be an object, not %s",
                         type_name(rf));
    json_t *type = json_object_get(rf, "type");
    if (!json_is_string(type))
        return serve_bad(
            e, "response_format.type",
            "'response_format.type' must be \"text\", \"json_object\" or \"json_schema\"");
    const char *t = json_string_value(type);
    const char *key;
    json_t *val;
    json_object_foreach(rf, key, val)
    {
        if (strcmp(key, "type") && strcmp(key, "json_schema"))
            return serve_fail(e, 400, "invalid_request_error", "response_format",
                              "unsupported_parameter", "'response_format.%.40s' is not supported",
                              key);
    }
    if (!strcmp(t, "text")) return true;
    if (!strcmp(t, "json_object")) {
        r->answer_schema = json_pack("{s:s}", "type", "object");
        nuri_status st = nuri_json_object_grammar(&r->grammar);
        return st == NURI_OK || grammar_fail(e, st, "response_format");
    }
    if (strcmp(t, "json_schema"))
        return serve_bad(
            e, "response_format.type",
            "'response_format.type' is \"%.40s\"; it must be \"text\", \"json_object\" or "
            "\"json_schema\"",
            t);
    json_t *js = json_object_get(rf, "json_schema");
    if (!json_is_object(js))
        return serve_bad(e, "response_format.json_schema",
                         "'response_format.json_schema' must be an object with a 'schema'");
    json_object_foreach(js, key, val)
    {
        if (strcmp(key, "name") && strcmp(key, "schema") && strcmp(key, "strict") &&
            strcmp(key, "description"))
            return serve_fail(e, 400, "invalid_request_error", "response_format.json_schema",
                              "unsupported_parameter",
                              "'response_format.json_schema.%.40s' is not supported", key);
    }
    json_t *schema = json_object_get(js, "schema");
    if (!json_is_object(schema) && !json_is_boolean(schema))
        return serve_bad(e, "response_format.json_schema.schema",
                         "'response_format.json_schema.schema' must be a JSON Schema object");
    char path[64];
    path[0] = 0;
    nuri_status st = nuri_json_schema_grammar(schema, &r->grammar, path, sizeof path);
    if (st == NURI_OK) {
        r->answer_schema = json_incref(schema);
        return true;
    }
    char param[96];
    snprintf(param, sizeof param, "response_format.json_schema.schema%s%.60s", path[0] ? "." : "",
             path);
    return grammar_fail(e, st, param);
}

/* tools, tool_choice, parallel_tool_calls; reasoning_effort and chat_template_kwargs. */
static bool parse_tools(json_t *body, serve_request *r, serve_error *e)
{
    r->parallel_tool_calls = true;
    if (!get_bool(body, "parallel_tool_calls", &r->parallel_tool_calls, e)) return false;
    json_t *tools = opt(body, "tools");
    if (tools) {
        if (!json_is_array(tools))
            return serve_bad(e, "tools", "'tools' must be an array of tools, not %s",
                             type_name(tools));
        if (json_array_size(tools) > SERVE_MAX_TOOLS)
            return serve_bad(e, "tools", "'tools' has %zu tools; at most %d are allowed",
                             json_array_size(tools), SERVE_MAX_TOOLS);
        size_t i;
        json_t *t;
        json_array_foreach(tools, i, t)
        {
            char p[96];
            snprintf(p, sizeof p, "tools[%zu]", i);
            if (!json_is_object(t))
                return serve_bad(e, p, "'%s' must be an object, not %s", p, type_name(t));
            json_t *type = json_object_get(t, "type");
            snprintf(p, sizeof p, "tools[%zu].type", i);
            if (!json_is_string(type) || strcmp(json_string_value(type), "function"))
                return serve_fail(e, 400, "invalid_request_error", p, "unsupported_parameter",
                                  "'%s' must be \"function\": nuri supports function tools only",
                                  p);
            json_t *f = json_object_get(t, "function");
            snprintf(p, sizeof p, "tools[%zu].function", i);
            if (!json_is_object(f)) return serve_bad(e, p, "'%s' must be an object with a name", p);
            const char *key;
            json_t *val;
            json_object_foreach(f, key, val)
            {
                if (strcmp(key, "name") && strcmp(key, "description") &&
                    strcmp(key, "parameters") && strcmp(key, "strict"))
                    return serve_fail(e, 400, "invalid_request_error", p, "unsupported_parameter",
                                      "'%s.%.40s' is not supported", p, key);
            }
            json_t *name = json_object_get(f, "name");
            snprintf(p, sizeof p, "tools[%zu].function.name", i);
            if (!json_is_string(name) ||
                !good_function_name(json_string_value(name), json_string_length(name)))
                return serve_bad(e, p, "'%s' must be 1 to 64 letters, digits, '_' or '-'", p);
            for (size_t k = 0; k < i; k++)
                if (json_equal(
                        name, json_object_get(json_object_get(json_array_get(tools, k), "function"),
                                              "name")))
                    return serve_bad(e, p, "'%s': two tools are named \"%s\"", p,
                                     json_string_value(name));
            snprintf(p, sizeof p, "tools[%zu].function.description", i);
            if (!opt_string(f, "description", p, e)) return false;
            json_t *params = opt(f, "parameters");
            snprintf(p, sizeof p, "tools[%zu].function.parameters", i);
            if (params && !json_is_object(params))
                return serve_bad(e, p, "'%s' must be a JSON Schema object, not %s", p,
                                 type_name(params));
            json_t *strict = opt(f, "strict");
            snprintf(p, sizeof p, "tools[%zu].function.strict", i);
            if (strict && !json_is_boolean(strict))
                return serve_bad(e, p, "'%s' must be a boolean, not %s", p, type_name(strict));
        }
        if (json_array_size(tools) > 0) r->tools = tools;
    }
    r->tool_choice = r->tools ? SERVE_TOOLS_AUTO : SERVE_TOOLS_NONE;
    json_t *tc = opt(body, "tool_choice");
    if (tc) {
        if (json_is_string(tc)) {
            const char *v = json_string_value(tc);
            if (!strcmp(v, "none"))
                r->tool_choice = SERVE_TOOLS_NONE;
            else if (!strcmp(v, "auto"))
                r->tool_choice = SERVE_TOOLS_AUTO;
            else if (!strcmp(v, "required"))
                r->tool_choice = SERVE_TOOLS_REQUIRED;
            else
                return serve_bad(e, "tool_choice",
                                 "'tool_choice' is \"%.40s\"; it must be \"none\", \"auto\", "
                                 "\"required\" or {\"type\": \"function\", \"function\": "
                                 "{\"name\": ...}}",
                                 v);
        } else if (json_is_object(tc)) {
            json_t *type = json_object_get(tc, "type");
            json_t *name = json_object_get(json_object_get(tc, "function"), "name");
            if (!json_is_string(type) || strcmp(json_string_value(type), "function") ||
                !json_is_string(name))
                return serve_bad(e, "tool_choice",
                                 "'tool_choice' as an object must be {\"type\": \"function\", "
                                 "\"function\": {\"name\": ...}}");
            r->tool_choice = SERVE_TOOLS_NAMED;
            r->tool_name = json_string_value(name);
        } else {
            return serve_bad(e, "tool_choice",
                             "'tool_choice' must be a string or an object, not %s", type_name(tc));
        }
        if (r->tool_choice != SERVE_TOOLS_NONE && !r->tools)
            return serve_bad(e, "tool_choice", "'tool_choice' needs 'tools' to choose from");
        if (r->tool_choice == SERVE_TOOLS_NAMED) {
            bool found = false;
            size_t i;
            json_t *t;
            json_array_foreach(r->tools, i, t) found |=
                !strcmp(json_string_value(json_object_get(json_object_get(t, "function"), "name")),
                        r->tool_name);
            if (!found)
                return serve_bad(e, "tool_choice",
                                 "'tool_choice' names \"%.64s\", which is not in 'tools'",
                                 r->tool_name);
        }
    }
    // what reaches the template besides messages and tools
    json_t *kw = opt(body, "chat_template_kwargs");
    json_t *effort = opt(body, "reasoning_effort");
    if (kw && !json_is_object(kw))
        return serve_bad(e, "chat_template_kwargs",
                         "'chat_template_kwargs' must be an object, not %s", type_name(kw));
    if (effort) {
        static const char *const efforts[] = {"none", "minimal", "low", "medium", "high"};
        bool ok = false;
        for (size_t i = 0; json_is_string(effort) && i < sizeof efforts / sizeof *efforts; i++)
            ok |= !strcmp(json_string_value(effort), efforts[i]);
        if (!ok)
            return serve_bad(
                e, "reasoning_effort",
                "'reasoning_effort' must be \"none\", \"minimal\", \"low\", \"medium\" "
                "or \"high\"");
    }
    if (kw || effort) {
        if (!(r->template_kwargs = kw ? json_copy(kw) : json_object()))
            return serve_fail(e, 500, "server_error", NULL, NULL, "out of memory");
        static const char *const reserved[] = {"messages",  "tools",     "documents",
                                               "bos_token", "eos_token", "add_generation_prompt"};
        for (size_t i = 0; i < sizeof reserved / sizeof *reserved; i++)
            if (json_object_get(r->template_kwargs, reserved[i])) {
                char p[64];
                snprintf(p, sizeof p, "chat_template_kwargs.%s", reserved[i]);
                return serve_bad(e, p, "'%s' is set by the server and cannot be passed", p);
            }
        if (effort) json_object_set(r->template_kwargs, "reasoning_effort", effort);
    }
    return true;
}

static bool parse_all(json_t *body, serve_kind kind, int32_t n_vocab, serve_request *r,
                      serve_error *e)
{
    if (!json_is_object(body))
        return serve_bad(e, NULL, "the request body must be a JSON object, not %s",
                         type_name(body));
    if (!known_keys_only(body, kind, e)) return false;
    json_t *model = opt(body, "model");
    if (model && !json_is_string(model))
        return serve_bad(e, "model", "'model' must be a string, not %s", type_name(model));
    if (model) snprintf(r->model, sizeof r->model, "%s", json_string_value(model));

    if (kind == SERVE_CHAT ? !parse_messages(body, r, e) : !parse_prompt(body, n_vocab, r, e))
        return false;

    long long n = 1;
    if (!get_int(body, "n", 1, SERVE_MAX_CHOICES, &n, NULL, e)) return false;
    r->n_choices = (int32_t)n;
    if (kind == SERVE_COMPLETION) {
        long long best_of = 1;
        if (!get_int(body, "best_of", 1, 1, &best_of, NULL, e)) return false;
        bool echo = false;
        if (!get_bool(body, "echo", &echo, e)) return false;
        if (echo) return serve_bad(e, "echo", "'echo' is not supported");
        if (opt(body, "suffix")) return serve_bad(e, "suffix", "'suffix' is not supported");
    }

    if (!get_bool(body, "stream", &r->stream, e)) return false;
    json_t *so = opt(body, "stream_options");
    if (so) {
        if (!r->stream)
            return serve_bad(e, "stream_options",
                             "'stream_options' is only allowed when 'stream' is true");
        if (!json_is_object(so))
            return serve_bad(e, "stream_options", "'stream_options' must be an object, not %s",
                             type_name(so));
        json_t *iu = opt(so, "include_usage");
        if (iu && !json_is_boolean(iu))
            return serve_bad(e, "stream_options.include_usage",
                             "'stream_options.include_usage' must be a boolean, not %s",
                             type_name(iu));
        r->include_usage = iu && json_is_true(iu);
    }

    long long mt = 0;
    bool mt_given = false;
    const char *mt_key =
        opt(body, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
    if (!get_int(body, mt_key, 1, 1 << 24, &mt, &mt_given, e)) return false;
    r->max_tokens = (int32_t)mt;

    r->sp = nuri_sampler_params_default();
    r->sp.penalty_last_n = 0; // OpenAI's penalties look at the whole completion: set per request
    if (!get_num(body, "temperature", 0, 2, &r->sp.temperature, e)) return false;
    if (!get_num(body, "top_p", 0, 1, &r->sp.top_p, e)) return false;
    if (r->sp.top_p == 0) { // "only the most likely token": greedy
        r->sp.top_p = 1;
        r->sp.temperature = 0;
    }
    long long top_k = 0;
    if (!get_int(body, "top_k", 0, 1 << 30, &top_k, NULL, e)) return false;
    r->sp.top_k = (int32_t)top_k;
    if (!get_num(body, "min_p", 0, 1, &r->sp.min_p, e)) return false;
    if (!get_num(body, "repeat_penalty", 0.01, 100, &r->sp.repetition_penalty, e)) return false;
    long long rln = 64; // llama-server's default window
    if (!get_int(body, "repeat_last_n", -1, NURI_SAMPLER_MAX_LAST_N, &rln, NULL, e)) return false;
    r->repeat_last_n = (int32_t)rln;
    if (!get_num(body, "frequency_penalty", -2, 2, &r->sp.frequency_penalty, e)) return false;
    if (!get_num(body, "presence_penalty", -2, 2, &r->sp.presence_penalty, e)) return false;
    long long seed = 0;
    if (!get_int(body, "seed", INT64_MIN, INT64_MAX, &seed, &r->seed_given, e)) return false;
    r->sp.seed = (uint64_t)seed;
    if (!parse_stop(body, r, e)) return false;
    if (!parse_logit_bias(body, n_vocab, r, e)) return false;

    if (kind == SERVE_CHAT) {
        if (!get_bool(body, "logprobs", &r->logprobs, e)) return false;
        long long tl = 0;
        bool tl_given = false;
        if (!get_int(body, "top_logprobs", 0, NURI_MAX_TOP_LOGPROBS, &tl, &tl_given, e))
            return false;
        if (tl_given && !r->logprobs)
            return serve_bad(e, "top_logprobs", "'top_logprobs' requires 'logprobs' to be true");
        r->top_logprobs = (int32_t)tl;
    } else {
        long long lp = 0;
        bool lp_given = false;
        if (!get_int(body, "logprobs", 0, 5, &lp, &lp_given, e)) return false;
        r->logprobs = lp_given;
        r->top_logprobs = (int32_t)lp;
    }
    r->sp.n_top_logprobs = r->top_logprobs;
    if (!parse_structured(body, r, e)) return false;
    if (kind == SERVE_CHAT && !parse_tools(body, r, e)) return false;
    if (r->tool_choice != SERVE_TOOLS_NONE && opt(body, "grammar"))
        return serve_bad(
            e, "grammar",
            "'grammar' cannot be combined with tools (use response_format for the answer)");
    return true;
}

bool serve_request_parse(json_t *body, serve_kind kind, int32_t n_vocab, serve_request *r,
                         serve_error *e)
{
    memset(r, 0, sizeof *r);
    r->kind = kind;
    if (parse_all(body, kind, n_vocab, r, e)) return true;
    serve_request_free(r);
    return false;
}

void serve_request_free(serve_request *r)
{
    free(r->prompt_tokens);
    free(r->bias);
    nuri_grammar_free(r->grammar);
    json_decref(r->answer_schema);
    json_decref(r->template_kwargs);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    memset(r, 0, sizeof *r);
}

char *serve_message_text(json_t *message)
{
    json_t *content = json_object_get(message, "content");
    if (json_is_string(content)) return strdup(json_string_value(content));
    size_t total = 0, i;
    json_t *part;
    json_array_foreach(content, i, part) total += json_string_length(json_object_get(part, "text"));
    char *s = malloc(total + 1);
    if (!s) return NULL;
    size_t o = 0;
    json_array_foreach(content, i, part)
    {
        json_t *t = json_object_get(part, "text");
        memcpy(s + o, json_string_value(t), json_string_length(t));
        o += json_string_length(t);
    }
    s[o] = 0;
    return s;
}
