/*
 * test_toolcall.c: tool calls and reasoning in model replies (src/chat/toolcall.h).
 *
 * The replies are written as the models print them: the call formats their own chat templates
 * show (tests/data/templates*, the HyperCLOVA X SEED and EXAONE Deep templates in
 * tests/data/templates-korean/) and their model cards describe. Every reply is also streamed: split
 * at every byte boundary and fed one byte at a time, it must give the same reply as whole parsing,
 * and its deltas, put together, must say exactly that reply.
 */
#include "chat/toolcall.h"
#include "test.h"

#include <jansson.h>
#include <stdarg.h>

#define DS_CALLS_BEGIN NURI_DEEPSEEK_CALLS_BEGIN
#define DS_CALLS_END NURI_DEEPSEEK_CALLS_END
#define DS_CALL_BEGIN NURI_DEEPSEEK_CALL_BEGIN
#define DS_CALL_END NURI_DEEPSEEK_CALL_END
#define DS_SEP NURI_DEEPSEEK_SEP

static const char weather_tools[] =
    "[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Get "
    "the "
    "current weather for a city\", \"parameters\": {\"type\": \"object\", \"properties\": "
    "{\"city\": {\"type\": \"string\"}, \"unit\": {\"type\": \"string\", \"enum\": [\"celsius\", "
    "\"fahrenheit\"]}, \"days\": {\"type\": \"integer\"}, \"zip\": {\"type\": [\"string\", "
    "\"null\"]}}, \"required\": [\"city\"]}}},"
    " {\"type\": \"function\", \"function\": {\"name\": \"get_time\", \"parameters\": {\"type\": "
    "\"object\", \"properties\": {\"tz\": {\"type\": \"string\"}}}}}]";

static json_t *tools(void)
{
    static json_t *t;
    if (!t) t = json_loads(weather_tools, 0, NULL);
    return t;
}

static nuri_reply_opts opts(nuri_toolcall_format f, bool in_reasoning)
{
    nuri_reply_opts o = {.syntax = {f, "<think>", "</think>"},
                         .in_reasoning = in_reasoning,
                         .tools = tools(),
                         .id_seed = 42};
    return o;
}

/* ---- streaming == whole ---- */

static bool same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && !strcmp(a, b));
}

static bool same_reply(const nuri_reply *a, const nuri_reply *b)
{
    if (a->content_len != b->content_len || memcmp(a->content, b->content, a->content_len) ||
        a->reasoning_len != b->reasoning_len ||
        memcmp(a->reasoning, b->reasoning, a->reasoning_len) || a->n_calls != b->n_calls ||
        !same_str(a->error, b->error))
        return false;
    for (size_t i = 0; i < a->n_calls; i++)
        if (strcmp(a->calls[i].id, b->calls[i].id) || strcmp(a->calls[i].name, b->calls[i].name) ||
            a->calls[i].arguments_len != b->calls[i].arguments_len ||
            memcmp(a->calls[i].arguments, b->calls[i].arguments, a->calls[i].arguments_len))
            return false;
    return true;
}

/* What the deltas say, put together. */
typedef struct rebuilt {
    char content[8192], reasoning[8192];
    size_t nc, nr;
    int n_calls;
    char id[16][32], name[16][64], args[16][2048];
    size_t na[16];
    bool bad; // a delta out of order
} rebuilt;

static void take(rebuilt *r, const nuri_reply_delta *d, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const nuri_reply_delta *e = &d[i];
        if (e->kind != NURI_DELTA_CALL && e->len == 0) r->bad = true; // no empty pieces
        switch (e->kind) {
        case NURI_DELTA_CONTENT:
            if (r->nc + e->len >= sizeof r->content) break;
            memcpy(r->content + r->nc, e->text, e->len);
            r->nc += e->len;
            break;
        case NURI_DELTA_REASONING:
            if (r->nr + e->len >= sizeof r->reasoning) break;
            memcpy(r->reasoning + r->nr, e->text, e->len);
            r->nr += e->len;
            break;
        case NURI_DELTA_CALL:
            if (e->index != r->n_calls || e->index >= 16) {
                r->bad = true;
                break;
            }
            snprintf(r->id[e->index], 32, "%s", e->id);
            snprintf(r->name[e->index], 64, "%.*s", (int)e->len, e->text);
            r->n_calls++;
            break;
        case NURI_DELTA_ARGS:
            if (e->index != r->n_calls - 1 || e->index < 0) { // only the last call grows
                r->bad = true;
                break;
            }
            if (r->na[e->index] + e->len >= sizeof r->args[0]) break;
            memcpy(r->args[e->index] + r->na[e->index], e->text, e->len);
            r->na[e->index] += e->len;
            break;
        }
    }
}

static bool rebuilt_is(const rebuilt *r, const nuri_reply *w)
{
    if (r->bad || r->nc != w->content_len || memcmp(r->content, w->content, r->nc) ||
        r->nr != w->reasoning_len || memcmp(r->reasoning, w->reasoning, r->nr) ||
        (size_t)r->n_calls != w->n_calls)
        return false;
    for (int i = 0; i < r->n_calls; i++)
        if (strcmp(r->id[i], w->calls[i].id) || strcmp(r->name[i], w->calls[i].name) ||
            r->na[i] != w->calls[i].arguments_len ||
            memcmp(r->args[i], w->calls[i].arguments, r->na[i]))
            return false;
    return true;
}

/* Feeds text in pieces ending at cuts[0..n_cuts) (then the rest), finishes, and checks the reply
 * and its deltas against whole. */
static bool stream_matches(const nuri_reply_opts *o, const char *text, size_t len,
                           const size_t *cuts, size_t n_cuts, const nuri_reply *whole)
{
    nuri_reply_parser *p;
    if (nuri_reply_parser_new(o, &p) != NURI_OK) return false;
    static rebuilt r;
    memset(&r, 0, sizeof r);
    const nuri_reply_delta *d;
    size_t n, at = 0;
    bool ok = true;
    for (size_t i = 0; i <= n_cuts && ok; i++) {
        size_t end = i < n_cuts ? cuts[i] : len;
        ok = nuri_reply_parser_feed(p, text + at, end - at, &d, &n) == NURI_OK;
        take(&r, d, n);
        at = end;
    }
    ok = ok && nuri_reply_parser_finish(p, &d, &n) == NURI_OK;
    if (ok) take(&r, d, n);
    ok = ok && same_reply(nuri_reply_parser_reply(p), whole) && rebuilt_is(&r, whole);
    nuri_reply_parser_free(p);
    return ok;
}

/* Whole parse, then every two-piece split and one byte at a time must agree with it. */
static void parse_checked(const nuri_reply_opts *o, const char *text, nuri_reply *out)
{
    size_t len = strlen(text);
    REQUIRE(nuri_reply_parse(o, text, len, out) == NURI_OK);
    for (size_t k = 0; k <= len; k++)
        CHECKF(stream_matches(o, text, len, &k, 1, out), "split at byte %zu of %.60s...", k, text);
    size_t *cuts = malloc((len + 1) * sizeof *cuts);
    for (size_t k = 0; k < len; k++) cuts[k] = k + 1;
    CHECKF(stream_matches(o, text, len, cuts, len, out), "byte by byte: %.60s...", text);
    free(cuts);
}

/* expected: content, reasoning, then n calls as name / arguments pairs */
static void expect(const nuri_reply_opts *o, const char *text, const char *content,
                   const char *reasoning, int n_calls, ...)
{
    nuri_reply r;
    parse_checked(o, text, &r);
    CHECKF(!strcmp(r.content, content), "content '%s', want '%s'", r.content, content);
    CHECKF(!strcmp(r.reasoning, reasoning), "reasoning '%s', want '%s'", r.reasoning, reasoning);
    CHECKF(r.n_calls == (size_t)n_calls, "%zu calls, want %d", r.n_calls, n_calls);
    CHECKF(r.error == NULL, "error: %s", r.error);
    va_list ap;
    va_start(ap, n_calls);
    for (int i = 0; i < n_calls; i++) {
        const char *name = va_arg(ap, const char *), *args = va_arg(ap, const char *);
        if ((size_t)i >= r.n_calls) continue;
        CHECKF(!strcmp(r.calls[i].name, name), "call %d name '%s', want '%s'", i, r.calls[i].name,
               name);
        CHECKF(!strcmp(r.calls[i].arguments, args), "call %d arguments '%s', want '%s'", i,
               r.calls[i].arguments, args);
        CHECKF(strlen(r.calls[i].arguments) == r.calls[i].arguments_len, "arguments_len");
    }
    va_end(ap);
    nuri_reply_free(&r);
}

/* A reply whose call broke: the error names why (want_error is a part of the message). */
static void expect_error(const nuri_reply_opts *o, const char *text, const char *want_error,
                         size_t n_calls, const char *content)
{
    nuri_reply r;
    parse_checked(o, text, &r);
    CHECKF(r.error && strstr(r.error, want_error), "error '%s', want '%s'", r.error, want_error);
    CHECKF(r.n_calls == n_calls, "%zu calls, want %zu", r.n_calls, n_calls);
    CHECKF(!strcmp(r.content, content), "content '%s', want '%s'", r.content, content);
    nuri_reply_free(&r);
}

/* ---- hermes: Qwen2.5, Qwen3, QwQ ---- */

TEST(hermes_single_call_as_qwen_prints_it)
{
    nuri_reply_opts o = opts(NURI_TOOLCALL_HERMES, NULL);
    expect(&o,
           "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Seoul\", "
           "\"unit\": \"celsius\"}}\n</tool_call>",
           "", "", 1, "get_weather", "{\"city\": \"Seoul\", \"unit\": \"celsius\"}");
}

TEST(hermes_parallel_calls_with_content_before)
{
    nuri_reply_opts o = opts(NURI_TOOLCALL_HERMES, NULL);
    expect(&o,
           "I'll check both for you.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
           "{\"city\": \"Seoul\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", "
           "\"arguments\": {\"tz\": \"Asia/Seoul\"}}\n</tool_call>",
           "I'll check both for you.", "", 2, "get_weather", "{\"city\": \"Seoul\"}", "get_time",
           "{\"tz\": \"Asia/Seoul\"}");
}

TEST(qwen3_thinks_then_calls)
{
    nuri_reply_opts o = opts(NURI_TOOLCALL_HERMES, NULL);
    expect(&o,
           "<think>\nThe user wants the weather in Seoul, so I call get_weather.\n</think>\n\n"
           "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"서울\"}}\n"
           "</tool_call>",
           "", "The user wants the weather in Seoul, so I call get_weather.", 1, "get_weather",
           "{\"city\": \"서울\"}");
}

TEST(qwq_reply_starts_inside_the_reasoning_the_prompt_opened)
{
    nuri_reply_opts o = opts(NURI_TOOLCALL_HERMES, true);
    expect(&o,
           "Okay, the user asks about Seoul. <tool_call> tags come after thinking.\n</think>\n\n"
           "It is sunny.",
           "It is sunny.", "Okay, the user asks about Seoul. <tool_call> tags come after thinking.",
           0);
}

TEST(a_call_inside_unclosed_reasoning_is_still_a_call)
{
    nuri_reply_opts o = opts(NURI_TOOLCALL_HERMES, true);
    expect(&o,
           "I need the weather.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
           "{\"city\": \"Seoul\"}}\n</tool_call>",
           "", "I need the weather.", 1, "get_weather", "{\"city\": \"Seoul\"}");
}

TEST(hermes_arguments_given_as_a_string_are_decoded)
{
    nuri_reply_opts o = opts(NURI_TOOLCALL_HERMES, NULL);
    expect(&o,
           "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": \"{\\\"city\\\": "
           "\\\"Seoul\\\"}\"}\n</tool_call>",
           "", "", 1, "get_weather", "{\"city\": \"Seoul\"}");
}

TEST(hermes_arguments_before_the_name_and_no_arguments)
{
    nuri_reply_opts o = opts(NURI_TOOLCALL_HERMES, NULL);
    expect(&o,
           "<tool_call>{\"arguments\": {\"tz\": \"UTC\"}, \"name\": \"get_time\"}</tool_call>"
           "<tool_call>{\"name\": \"get_time\"}</tool_call>",
           "", "", 2, "get_time", "{\"tz\": \"UTC\"}", "get_time", "{}");
}

TEST(hermes_text_that_only_looks_like_a_marker_is_content)
{
    nuri_reply_opts o = opts(NURI_TOOLCALL_HERMES, NULL);
    expect(&o, "Use <tool_call> tags, <b>bold</b> and <tool_ca",
           "Use <tool_call> tags, <b>bold</b> and <tool_ca", "", 0);
    expect(&o, "<tool_call>I cannot call tools.</tool_call> Sorry.",
           "<tool_call>I cannot call tools.</tool_call> Sorry.", "", 0);
    expect(&o, "<tool_call>\n{\"weather\": 1}\n</tool_call>",
           "<tool_call>\n{\"weather\": 1}\n</tool_call>", "", 0);
}

TEST(hermes_malformed_calls_are_errors_once_named)
{
    nuri_reply_opts o = opts(NURI_TOOLCALL_HERMES, NULL);
    expect_error(&o, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Seo",
                 "the reply ended inside it", 1, "");
    expect_error(&o,
                 "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": }}\n"
                 "</tool_call>",
                 "not a JSON object", 1, "}\n</tool_call>"); // the text after the break
    expect_error(&o,
                 "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"X\"}}\n"
                 "oops</tool_call>",
                 "closing tag", 1, "oops</tool_call>");
    expect_error(&o, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": [1, 2]}",
                 "not a JSON object", 1, "[1, 2]}");
}

TEST(hermes_unterminated_tag_after_complete_call_is_forgiven)
{
    nuri_reply_opts o = opts(NURI_TOOLCALL_HERMES, NULL);
    expect(&o, "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool", "", "", 1,
           "get_time", "{}");
    expect(&o, "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}", "", "", 1, "get_time",
           "{}");
}

TEST(whitespace_next_to_markers_is_dropped_inside_text_kept)
{
    nuri_reply_opts o = opts(NURI_TOOLCALL_HERMES, NULL);
    expect(&o, "  \n<think>\n\n</think>\n\n  Hello,   world!  \n\n", "Hello,   world!", "", 0);
    expect(&o, "<think>a\n\nb</think>", "", "a\n\nb", 0);
}

/* ---- exaone 4.0 ---- */

TEST(exaone4_reasoning_then_compact_call)
{
    nuri_reply_opts o = opts(NURI_TOOLCALL_EXAONE4, true);
    expect(&o,
           "사용자가 서울 날씨를 물었다.\n</think>\n\n<tool_call>{\"name\": \"get_weather\", "
           "\"arguments\": {\"city\": \"서울\", \"unit\": \"celsius\"}}</tool_call>\n"
           "<tool_call>{\"name\": \"get_time\", \"arguments\": {\"tz\": \"Asia/Seoul\"}}"
           "</tool_call>",
           "", "사용자가 서울 날씨를 물었다.", 2, "get_weather",
           "{\"city\": \"서울\", \"unit\": \"celsius\"}", "get_time", "{\"tz\": \"Asia/Seoul\"}");
}

/* ---- qwen-xml: Qwen3.5 ---- */

TEST(qwen35_xml_call_after_reasoning_typed_by_the_schema)
{
    nuri_reply_opts o = opts(NURI_TOOLCALL_QWEN_XML, true);
    expect(&o,
           "The user wants Seoul's weather.\n</think>\n\n<tool_call>\n<function=get_weather>\n"
           "<parameter=city>\nSeoul\n</parameter>\n<parameter=days>\n3\n</parameter>\n"
           "<parameter=zip>\n04524\n</parameter>\n</function>\n</tool_call>",
           "", "The user wants Seoul's weather.", 1, "get_weather",
           "{\"city\": \"Seoul\", \"days\": 3, \"zip\": \"04524\"}");
}

TEST(qwen35_xml_values_multiline_json_and_parallel)
{
    nuri_reply_opts o = opts(NURI_TOOLCALL_QWEN_XML, false);
    expect(&o,
           "Checking.\n\n<tool_call>\n<function=get_weather>\n<parameter=city>\nSan \"Jose\"\n"
           "line 2\n</parameter>\n<parameter=extra>\n{\"a\": [1, 2]}\n</parameter>\n"
           "<parameter=flag>\ntrue\n</parameter>\n</function>\n</tool_call>\n<tool_call>\n"
           "<function=get_time>\n</function>\n</tool_call>",
           "Checking.", "", 2, "get_weather",
           "{\"city\": \"San \\\"Jose\\\"\\nline 2\", \"extra\": {\"a\": [1, 2]}, \"flag\": true}",
           "get_time", "{}");
}

TEST(qwen35_xml_missing_parameter_close_is_forgiven)
{
    nuri_reply_opts o = opts(NURI_TOOLCALL_QWEN_XML, false);
    expect(&o,
           "<tool_call>\n<function=get_weather>\n<parameter=city>\nSeoul\n<parameter=unit>\n"
           "celsius\n</function>\n</tool_call>",
           "", "", 1, "get_weather", "{\"city\": \"Seoul\", \"unit\": \"celsius\"}");
}

TEST(qwen35_xml_broken_calls)
{
    nuri_reply_opts o = opts(NURI_TOOLCALL_QWEN_XML, false);
    expect(&o, "<tool_call>\nno function here\n</tool_call>",
           "<tool_call>\nno function here\n</tool_call>", "", 0);
    expect_error(&o, "<tool_call>\n<function=get_weather>\n<parameter=city>\nSeou", "ended inside",
                 1, "");
}

/* ---- arg-key: HyperCLOVA X SEED ---- */

TEST(hyperclova_x_arg_key_calls)
{
    nuri_reply_opts o = opts(NURI_TOOLCALL_ARG_KEY, false);
    expect(&o,
           "서울 날씨를 확인해 볼게요.\n<tool_call>get_weather\n<arg_key>city</arg_key>\n"
           "<arg_value>서울</arg_value>\n<arg_key>days</arg_key>\n<arg_value>3</arg_value>\n"
           "</tool_call>\n<tool_call>get_time\n<arg_key>tz</arg_key>\n<arg_value>Asia/Seoul"
           "</arg_value>\n</tool_call>",
           "서울 날씨를 확인해 볼게요.", "", 2, "get_weather", "{\"city\": \"서울\", \"days\": 3}",
           "get_time", "{\"tz\": \"Asia/Seoul\"}");
}

TEST(hyperclova_x_thinking_and_json_arguments_block)
{
    nuri_reply_opts o = opts(NURI_TOOLCALL_ARG_KEY, true);
    expect(&o,
           "날씨 도구가 필요하다.\n</think>\n\n<tool_call>get_weather\n<arguments>{\"city\": "
           "\"부산\"}</arguments>\n</tool_call>",
           "", "날씨 도구가 필요하다.", 1, "get_weather", "{\"city\": \"부산\"}");
    expect(&o, "</think>\n\n<tool_call>get_time</tool_call>", "", "", 1, "get_time", "{}");
}

TEST(hyperclova_x_broken_calls)
{
    nuri_reply_opts o = opts(NURI_TOOLCALL_ARG_KEY, false);
    expect(&o, "<tool_call>not a name\n</tool_call>", "<tool_call>not a name\n</tool_call>", "", 0);
    expect_error(&o, "<tool_call>get_weather\n<arg_key>city</arg_key>\n<bogus>", "arg_value", 1,
                 ">");
}

/* ---- llama3 ---- */

TEST(llama3_json_call_with_and_without_python_tag)
{
    nuri_reply_opts o = opts(NURI_TOOLCALL_LLAMA3, false);
    expect(&o, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Seoul\"}}", "", "", 1,
           "get_weather", "{\"city\": \"Seoul\"}");
    expect(&o, "<|python_tag|>{\"name\": \"get_time\", \"parameters\": {\"tz\": \"UTC\"}}", "", "",
           1, "get_time", "{\"tz\": \"UTC\"}");
    expect(&o,
           "{\"type\": \"function\", \"name\": \"get_weather\", \"parameters\": {\"city\": "
           "\"Paris\"}}; {\"name\": \"get_time\", \"parameters\": {}}",
           "", "", 2, "get_weather", "{\"city\": \"Paris\"}", "get_time", "{}");
}

TEST(llama3_json_that_is_not_a_call_stays_content)
{
    nuri_reply_opts o = opts(NURI_TOOLCALL_LLAMA3, false);
    expect(&o, "{\"name\": \"Bob\", \"age\": 3}", "{\"name\": \"Bob\", \"age\": 3}", "", 0);
    expect(&o, "{\"answer\": 42}", "{\"answer\": 42}", "", 0);
    expect(&o, "The weather: {\"name\": \"get_weather\", \"parameters\": {}}",
           "The weather: {\"name\": \"get_weather\", \"parameters\": {}}", "", 0);
    expect(&o, "{\"name\": \"unknown_tool\", \"parameters\": {}}",
           "{\"name\": \"unknown_tool\", \"parameters\": {}}", "", 0);
}

/* ---- mistral ---- */

TEST(mistral_nemo_list_of_calls)
{
    nuri_reply_opts o = opts(NURI_TOOLCALL_MISTRAL, false);
    expect(&o,
           "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}, "
           "\"id\": \"a1b2c3d4e\"}, {\"name\": \"get_time\", \"arguments\": {\"tz\": "
           "\"Europe/Paris\"}}]",
           "", "", 2, "get_weather", "{\"city\": \"Paris\"}", "get_time",
           "{\"tz\": \"Europe/Paris\"}");
    nuri_reply r;
    const char *t = "[TOOL_CALLS][{\"name\": \"get_time\", \"arguments\": {}}]";
    REQUIRE(nuri_reply_parse(&o, t, strlen(t), &r) == NURI_OK);
    REQUIRE(r.n_calls == 1);
    CHECKF(strlen(r.calls[0].id) == 9, "mistral ids are 9 characters: %s", r.calls[0].id);
    nuri_reply_free(&r);
}

TEST(mistral_small_args_form_and_call_ids)
{
    nuri_reply_opts o = opts(NURI_TOOLCALL_MISTRAL_ARGS, NULL);
    expect(&o,
           "[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Paris\"}[TOOL_CALLS]get_time[ARGS]{\"tz\": "
           "\"UTC\"}",
           "", "", 2, "get_weather", "{\"city\": \"Paris\"}", "get_time", "{\"tz\": \"UTC\"}");
    nuri_reply r;
    const char *t = "[TOOL_CALLS]get_time[CALL_ID]Xy12345ab[ARGS]{}";
    REQUIRE(nuri_reply_parse(&o, t, strlen(t), &r) == NURI_OK);
    REQUIRE(r.n_calls == 1);
    CHECKF(!strcmp(r.calls[0].id, "Xy12345ab"), "the model's call id is kept: %s", r.calls[0].id);
    nuri_reply_free(&r);
}

/* ---- deepseek r1 ---- */

TEST(deepseek_r1_distill_calls_after_forced_reasoning)
{
    nuri_reply_opts o = opts(NURI_TOOLCALL_DEEPSEEK_R1, true);
    expect(&o,
           "I should look up the weather.\n</think>\n\n" DS_CALLS_BEGIN DS_CALL_BEGIN
           "function" DS_SEP "get_weather\n```json\n{\"city\": \"Seoul\"}\n```" DS_CALL_END
           "\n" DS_CALL_BEGIN "function" DS_SEP
           "get_time\n```json\n{}\n```" DS_CALL_END DS_CALLS_END,
           "", "I should look up the weather.", 2, "get_weather", "{\"city\": \"Seoul\"}",
           "get_time", "{}");
}

/* ---- generic and none ---- */

TEST(generic_json_object_call)
{
    nuri_reply_opts o = opts(NURI_TOOLCALL_GENERIC, false);
    expect(&o, "{\"name\": \"get_time\", \"arguments\": {\"tz\": \"UTC\"}}", "", "", 1, "get_time",
           "{\"tz\": \"UTC\"}");
    expect(&o, "Here: {\"name\": \"get_time\"}", "Here: {\"name\": \"get_time\"}", "", 0);
}

TEST(format_none_splits_only_reasoning)
{
    nuri_reply_opts o = opts(NURI_TOOLCALL_NONE, false);
    expect(&o, "<think>hm</think><tool_call>{\"name\": \"get_time\"}</tool_call>",
           "<tool_call>{\"name\": \"get_time\"}</tool_call>", "hm", 0);
}

TEST(exaone_deep_thought_tags)
{
    nuri_reply_opts o = opts(NURI_TOOLCALL_NONE, true);
    o.syntax.think_open = "<thought>";
    o.syntax.think_close = "</thought>";
    expect(&o, "2 더하기 2는 4.\n</thought>\n\n답은 4입니다.", "답은 4입니다.", "2 더하기 2는 4.",
           0);
}

/* ---- streaming order ---- */

/* ---- harmony: gpt-oss ---- */

static nuri_reply_opts harmony_opts(nuri_toolcall_format f)
{
    nuri_reply_opts o = opts(f, false);
    o.syntax = (nuri_chat_syntax){f, NURI_HARMONY_ANALYSIS, NURI_HARMONY_NEXT, true};
    return o;
}

TEST(gpt_oss_analysis_then_final_answer)
{
    nuri_reply_opts o = harmony_opts(NURI_TOOLCALL_HARMONY);
    expect(&o,
           "<|channel|>analysis<|message|>The user greets. Answer briefly.<|end|>"
           "<|start|>assistant<|channel|>final<|message|>Hello! How can I help?",
           "Hello! How can I help?", "The user greets. Answer briefly.", 0);
    // the commentary channel without a recipient (a preamble) is content too
    expect(&o,
           "<|channel|>analysis<|message|>Plan.<|end|><|start|>assistant<|channel|>commentary"
           "<|message|>Checking now.<|end|>",
           "Checking now.", "Plan.", 0);
    // a model that ignores the format: plain text is content
    expect(&o, "Just text, no channels.", "Just text, no channels.", "", 0);
    // a prompt that ended in an analysis header: the reply starts inside the reasoning
    nuri_reply_opts r = o;
    r.in_reasoning = true;
    expect(&r, "thinking...<|end|><|start|>assistant<|channel|>final<|message|>42", "42",
           "thinking...", 0);
}

TEST(gpt_oss_calls_in_both_header_orders)
{
    nuri_reply_opts o = harmony_opts(NURI_TOOLCALL_HARMONY);
    // as the model prints it after reasoning (the recipient after the channel)
    expect(&o,
           "<|channel|>analysis<|message|>Need the weather tool.<|end|><|start|>assistant"
           "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>"
           "{\"city\": \"Seoul\"}",
           "", "Need the weather tool.", 1, "get_weather", "{\"city\": \"Seoul\"}");
    // as the template writes it in the history (the recipient first), ended by <|call|>
    expect(&o,
           "<|start|>assistant to=functions.get_time<|channel|>commentary json<|message|>"
           "{\"tz\": \"Asia/Seoul\"}<|call|>",
           "", "", 1, "get_time", "{\"tz\": \"Asia/Seoul\"}");
    // a request without tools: the message's text is content, never a call
    nuri_reply_opts none = harmony_opts(NURI_TOOLCALL_NONE);
    expect(&none, "<|channel|>commentary to=functions.get_time <|constrain|>json<|message|>{}",
           "{}", "", 0);
    // a built-in tool's input (python, browser) is not a function call: by its channel
    expect(&o, "<|channel|>analysis to=python code<|message|>print(1)<|end|>", "", "print(1)", 0);
}

TEST(gpt_oss_broken_replies_lose_no_text)
{
    nuri_reply_opts o = harmony_opts(NURI_TOOLCALL_HARMONY);
    expect_error(&o,
                 "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>"
                 "{\"city\": ",
                 "not a JSON object", 1, "");
    // a header that never reaches <|message|> within its bound is text
    char text[900];
    snprintf(text, sizeof text, "<|channel|>%0600d<|message|>x", 0);
    nuri_reply r;
    parse_checked(&o, text, &r);
    CHECKF(r.content_len == strlen(text), "content %zu bytes of %zu", r.content_len, strlen(text));
    nuri_reply_free(&r);
    // the reply cut (max_tokens) inside the next header: the header is dropped, the rest kept
    expect(&o, "<|channel|>analysis<|message|>x<|end|><|start|>assistant<|channel|>fin", "", "x",
           0);
    // markers that are not harmony's stay text
    expect(&o, "<|channel|>final<|message|>a <|foo|> b <|end c", "a <|foo|> b <|end c", "", 0);
}

TEST(streaming_sends_name_first_then_argument_pieces)
{
    nuri_reply_opts o = opts(NURI_TOOLCALL_HERMES, NULL);
    nuri_reply_parser *p;
    REQUIRE(nuri_reply_parser_new(&o, &p) == NURI_OK);
    const nuri_reply_delta *d;
    size_t n;
    REQUIRE(nuri_reply_parser_feed(p, "Sure. <tool", 11, &d, &n) == NURI_OK);
    CHECK(n == 1 && d[0].kind == NURI_DELTA_CONTENT && d[0].len == 5); // "Sure." (space held)
    REQUIRE(nuri_reply_parser_feed(p, "_call>\n{\"name\": \"get_weather\", \"argu", 36, &d, &n) ==
            NURI_OK);
    CHECK(n == 1 && d[0].kind == NURI_DELTA_CALL && d[0].index == 0 &&
          !strncmp(d[0].text, "get_weather", d[0].len) && !strncmp(d[0].id, "call_", 5));
    REQUIRE(nuri_reply_parser_feed(p, "ments\": {\"city\": \"Se", 20, &d, &n) == NURI_OK);
    CHECK(n == 1 && d[0].kind == NURI_DELTA_ARGS && d[0].len == 12 &&
          !memcmp(d[0].text, "{\"city\": \"Se", 12));
    REQUIRE(nuri_reply_parser_feed(p, "oul\"}}\n</tool_call>", 19, &d, &n) == NURI_OK);
    CHECK(n == 1 && d[0].kind == NURI_DELTA_ARGS && !memcmp(d[0].text, "oul\"}", 5));
    REQUIRE(nuri_reply_parser_finish(p, &d, &n) == NURI_OK);
    CHECK(n == 0);
    const nuri_reply *r = nuri_reply_parser_reply(p);
    CHECK(r->n_calls == 1 && !strcmp(r->content, "Sure.") && !r->error);
    CHECK(nuri_reply_parser_feed(p, "x", 1, &d, &n) == NURI_ERR_INVALID_ARG);
    nuri_reply_parser_free(p);
}

TEST(ids_are_deterministic_per_seed_and_index)
{
    char a[32], b[32], c[32];
    nuri_toolcall_id(NURI_TOOLCALL_HERMES, 7, 0, a);
    nuri_toolcall_id(NURI_TOOLCALL_HERMES, 7, 0, b);
    nuri_toolcall_id(NURI_TOOLCALL_HERMES, 7, 1, c);
    CHECK(!strcmp(a, b) && strcmp(a, c) && strlen(a) == 29 && !strncmp(a, "call_", 5));
    nuri_toolcall_id(NURI_TOOLCALL_MISTRAL_ARGS, 7, 0, a);
    CHECK(strlen(a) == 9);
}

/* ---- detection from the real templates ---- */

static nuri_chat_syntax detect_file(const char *path)
{
    size_t n = 0;
    uint8_t *src = test_read_file(path, &n);
    CHECKF(src != NULL, "cannot read %s", path);
    nuri_chat_syntax s = nuri_chat_syntax_detect((const char *)src, n);
    free(src);
    return s;
}

TEST(formats_are_told_from_the_real_templates)
{
    static const struct {
        const char *file;
        nuri_toolcall_format f;
        const char *think;
    } t[] = {
        {"templates/Qwen-Qwen2.5-7B-Instruct.jinja", NURI_TOOLCALL_HERMES, "<think>"},
        {"templates/Qwen-Qwen3-0.6B.jinja", NURI_TOOLCALL_HERMES, "<think>"},
        {"templates/Qwen-QwQ-32B.jinja", NURI_TOOLCALL_HERMES, "<think>"},
        {"templates/Qwen3.5-4B.jinja", NURI_TOOLCALL_QWEN_XML, "<think>"},
        {"templates/meta-llama-Llama-3.1-8B-Instruct.jinja", NURI_TOOLCALL_LLAMA3, "<think>"},
        {"templates/meta-llama-Llama-3.2-3B-Instruct.jinja", NURI_TOOLCALL_LLAMA3, "<think>"},
        {"templates/meta-llama-Llama-3.3-70B-Instruct.jinja", NURI_TOOLCALL_LLAMA3, "<think>"},
        {"templates/mistralai-Mistral-Nemo-Instruct-2407.jinja", NURI_TOOLCALL_MISTRAL, "<think>"},
        {"templates/Mistral-Small-3.2-24B-Instruct-2506.jinja", NURI_TOOLCALL_MISTRAL_ARGS,
         "<think>"},
        {"templates/deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", NURI_TOOLCALL_DEEPSEEK_R1,
         "<think>"},
        {"templates/deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja", NURI_TOOLCALL_DEEPSEEK_R1,
         "<think>"},
        {"templates/HuggingFaceTB-SmolLM3-3B.jinja", NURI_TOOLCALL_GENERIC, "<think>"},
        {"templates/google-gemma-2-2b-it.jinja", NURI_TOOLCALL_GENERIC, "<think>"},
        {"templates-korean/LGAI-EXAONE-EXAONE-4.0-1.2B.jinja", NURI_TOOLCALL_EXAONE4, "<think>"},
        {"templates-korean/HyperCLOVAX-SEED-Think-32B.jinja", NURI_TOOLCALL_ARG_KEY, "<think>"},
        {"templates-korean/HyperCLOVAX-SEED-Omni-8B.jinja", NURI_TOOLCALL_ARG_KEY, "<think>"},
        {"templates-korean/EXAONE-Deep-2.4B.jinja", NURI_TOOLCALL_GENERIC, "<thought>"},
        {"templates/openai-gpt-oss-120b.jinja", NURI_TOOLCALL_HARMONY, NURI_HARMONY_ANALYSIS},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        char path[256];
        snprintf(path, sizeof path, "tests/data/%s", t[i].file);
        nuri_chat_syntax s = detect_file(path);
        CHECKF(s.format == t[i].f, "%s: %s, want %s", t[i].file,
               nuri_toolcall_format_name(s.format), nuri_toolcall_format_name(t[i].f));
        CHECKF(s.think_open && !strcmp(s.think_open, t[i].think), "%s: think tag %s", t[i].file,
               s.think_open);
    }
    nuri_chat_syntax none = nuri_chat_syntax_detect(NULL, 0);
    CHECK(none.format == NURI_TOOLCALL_GENERIC);
}

TEST(format_names_round_trip)
{
    for (int f = 0; f < NURI_TOOLCALL_N_FORMATS; f++)
        CHECK(nuri_toolcall_format_from_name(nuri_toolcall_format_name(f)) == f);
    CHECK(nuri_toolcall_format_from_name("nope") == -1);
}

TEST(prompts_that_open_reasoning_are_recognized)
{
    nuri_chat_syntax s = {NURI_TOOLCALL_HERMES, "<think>", "</think>", false};
    const char *open = "<|im_start|>assistant\n<think>\n";
    const char *closed = "<|im_start|>assistant\n<think>\n\n</think>\n\n";
    CHECK(nuri_chat_syntax_prompt_opens_reasoning(&s, open, strlen(open)));
    CHECK(!nuri_chat_syntax_prompt_opens_reasoning(&s, closed, strlen(closed)));
    CHECK(!nuri_chat_syntax_prompt_opens_reasoning(&s, "", 0));
}

/* ---- messages for templates ---- */

TEST(string_arguments_become_objects_for_templates)
{
    json_t *m = json_loads(
        "[{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": null, "
        "\"tool_calls\": [{\"id\": \"call_0123456789abcdef\", \"type\": \"function\", "
        "\"function\": {\"name\": \"f\", \"arguments\": \"{\\\"a\\\": 1, \\\"b\\\": [true]}\"}},"
        " {\"id\": \"x\", \"type\": \"function\", \"function\": {\"name\": \"g\", \"arguments\": "
        "\"not json\"}}]}, {\"role\": \"tool\", \"tool_call_id\": \"call_0123456789abcdef\", "
        "\"content\": \"1\"}]",
        0, NULL);
    REQUIRE(m != NULL);
    json_t *h = nuri_toolcall_messages(m, NURI_TOOLCALL_HERMES, NULL);
    REQUIRE(h != NULL);
    char *s = json_dumps(json_array_get(h, 1), JSON_PRESERVE_ORDER | JSON_COMPACT);
    CHECKF(!strcmp(s, "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":"
                      "\"call_0123456789abcdef\",\"type\":\"function\",\"function\":{\"name\":"
                      "\"f\",\"arguments\":{\"a\":1,\"b\":[true]}}},{\"id\":\"x\",\"type\":"
                      "\"function\",\"function\":{\"name\":\"g\",\"arguments\":\"not json\"}}]}"),
           "%s", s);
    free(s);
    // the caller's messages are unchanged
    CHECK(json_is_string(json_object_get(
        json_object_get(json_array_get(json_object_get(json_array_get(m, 1), "tool_calls"), 0),
                        "function"),
        "arguments")));
    json_t *mi = nuri_toolcall_messages(m, NURI_TOOLCALL_MISTRAL_ARGS, NULL);
    REQUIRE(mi != NULL);
    CHECK(
        !strcmp(json_string_value(json_object_get(
                    json_array_get(json_object_get(json_array_get(mi, 1), "tool_calls"), 0), "id")),
                "789abcdef"));
    CHECK(!strcmp(json_string_value(json_object_get(json_array_get(mi, 2), "tool_call_id")),
                  "789abcdef"));
    CHECK(nuri_toolcall_messages(json_object_get(json_array_get(m, 0), "role"),
                                 NURI_TOOLCALL_HERMES, NULL) == NULL);
    json_decref(mi);
    json_decref(h);
    json_decref(m);
}

/* ---- shapes: the text a forced call must be, parsed back ---- */

TEST(every_shape_parses_back_to_its_call)
{
    for (int f = NURI_TOOLCALL_GENERIC; f < NURI_TOOLCALL_N_FORMATS; f++) {
        nuri_toolcall_shape a, b;
        REQUIRE(nuri_toolcall_shape_get(f, "get_weather", &a) == NURI_OK);
        REQUIRE(nuri_toolcall_shape_get(f, "get_time", &b) == NURI_OK);
        char text[1024];
        if (a.json_arguments && a.parallel)
            snprintf(text, sizeof text, "%s%s{\"city\": \"Seoul\"}%s%s%s{}%s%s", a.begin, a.prefix,
                     a.suffix, a.separator, b.prefix, b.suffix, a.end);
        else if (a.json_arguments)
            snprintf(text, sizeof text, "%s%s{\"city\": \"Seoul\"}%s%s", a.begin, a.prefix,
                     a.suffix, a.end);
        else
            snprintf(text, sizeof text, "%s%s%scity%sSeoul%s%s%s%s%s", a.begin, a.prefix,
                     a.param_open_a, a.param_open_b, a.param_close, a.suffix, a.separator, b.prefix,
                     b.suffix);
        nuri_reply_opts o = opts(f, false);
        nuri_reply r;
        REQUIRE(nuri_reply_parse(&o, text, strlen(text), &r) == NURI_OK);
        size_t want = a.parallel ? 2 : 1;
        CHECKF(r.n_calls == want && !r.error && !r.content_len, "%s: %zu calls, error %s: %s",
               nuri_toolcall_format_name(f), r.n_calls, r.error, text);
        if (r.n_calls == want) {
            CHECKF(!strcmp(r.calls[0].name, "get_weather") &&
                       !strcmp(r.calls[0].arguments, "{\"city\": \"Seoul\"}"),
                   "%s: %s %s", nuri_toolcall_format_name(f), r.calls[0].name,
                   r.calls[0].arguments);
            if (want == 2)
                CHECK(!strcmp(r.calls[1].name, "get_time") && !strcmp(r.calls[1].arguments, "{}"));
        }
        nuri_reply_free(&r);
        nuri_toolcall_shape_free(&a);
        nuri_toolcall_shape_free(&b);
    }
    nuri_toolcall_shape s;
    CHECK(nuri_toolcall_shape_get(NURI_TOOLCALL_NONE, "f", &s) == NURI_ERR_INVALID_ARG);
    REQUIRE(nuri_toolcall_shape_get(NURI_TOOLCALL_HERMES, "a\"b", &s) == NURI_OK);
    CHECK(!strcmp(s.prefix, "<tool_call>\n{\"name\": \"a\\\"b\", \"arguments\": "));
    nuri_toolcall_shape_free(&s);
}

int main(void)
{
    RUN(hermes_single_call_as_qwen_prints_it);
    RUN(hermes_parallel_calls_with_content_before);
    RUN(qwen3_thinks_then_calls);
    RUN(qwq_reply_starts_inside_the_reasoning_the_prompt_opened);
    RUN(a_call_inside_unclosed_reasoning_is_still_a_call);
    RUN(hermes_arguments_given_as_a_string_are_decoded);
    RUN(hermes_arguments_before_the_name_and_no_arguments);
    RUN(hermes_text_that_only_looks_like_a_marker_is_content);
    RUN(hermes_malformed_calls_are_errors_once_named);
    RUN(hermes_unterminated_tag_after_complete_call_is_forgiven);
    RUN(whitespace_next_to_markers_is_dropped_inside_text_kept);
    RUN(exaone4_reasoning_then_compact_call);
    RUN(qwen35_xml_call_after_reasoning_typed_by_the_schema);
    RUN(qwen35_xml_values_multiline_json_and_parallel);
    RUN(qwen35_xml_missing_parameter_close_is_forgiven);
    RUN(qwen35_xml_broken_calls);
    RUN(hyperclova_x_arg_key_calls);
    RUN(hyperclova_x_thinking_and_json_arguments_block);
    RUN(hyperclova_x_broken_calls);
    RUN(llama3_json_call_with_and_without_python_tag);
    RUN(llama3_json_that_is_not_a_call_stays_content);
    RUN(mistral_nemo_list_of_calls);
    RUN(mistral_small_args_form_and_call_ids);
    RUN(deepseek_r1_distill_calls_after_forced_reasoning);
    RUN(generic_json_object_call);
    RUN(format_none_splits_only_reasoning);
    RUN(exaone_deep_thought_tags);
    RUN(gpt_oss_analysis_then_final_answer);
    RUN(gpt_oss_calls_in_both_header_orders);
    RUN(gpt_oss_broken_replies_lose_no_text);
    RUN(streaming_sends_name_first_then_argument_pieces);
    RUN(ids_are_deterministic_per_seed_and_index);
    RUN(formats_are_told_from_the_real_templates);
    RUN(format_names_round_trip);
    RUN(prompts_that_open_reasoning_are_recognized);
    RUN(string_arguments_become_objects_for_templates);
    RUN(every_shape_parses_back_to_its_call);
    TEST_DONE();
}
