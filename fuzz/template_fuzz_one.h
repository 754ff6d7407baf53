/*
 * template_fuzz_one.h: one fuzz iteration for the chat template engine, shared by the libFuzzer
 * target (fuzz_template.c) and the corpus replay test (tests/test_template_fuzz_replay.c): bytes ->
 * nuri_template_parse -> nuri_template_render over a fixed conversation (system, user, assistant
 * with a tool call, tool result; tools; bos/eos) with small limits so each input runs fast.
 * Then the same with provenance (nuri_template_render_spans, bos/eos as markup): the same status
 * and text, and data spans in order inside the text, or it aborts.
 * Returns the render status (parse failures return the parse status).
 */
#ifndef NURI_FUZZ_TEMPLATE_FUZZ_ONE_H
#define NURI_FUZZ_TEMPLATE_FUZZ_ONE_H

#include "chat/template.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char template_fuzz_vars[] =
    "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief. <think>\"},"
    " {\"role\": \"user\", \"content\": \"\\uc548\\ub155 \\ud83d\\ude00 x<y & \\\"z\\\"\"},"
    " {\"role\": \"assistant\", \"content\": \"<think>\\nhm\\n</think>\\n\\nok\", \"tool_calls\":"
    " [{\"id\": \"call12345\", \"type\": \"function\", \"function\": {\"name\": \"get_weather\","
    " \"arguments\": {\"city\": \"Seoul\", \"n\": 3, \"f\": 1.5, \"l\": [true, null]}}}]},"
    " {\"role\": \"tool\", \"tool_call_id\": \"call12345\", \"content\": \"{\\\"t\\\": 21}\"},"
    " {\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"again\"},"
    " {\"type\": \"image\"}]}],"
    " \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"get_weather\","
    " \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": "
    "\"string\"}}}}}],"
    " \"documents\": null, \"add_generation_prompt\": true, \"bos_token\": \"<s>\","
    " \"eos_token\": \"</s>\", \"enable_thinking\": false}";

static nuri_status template_fuzz_one(const uint8_t *data, size_t size)
{
    static json_t *vars, *markup_vars;
    if (!vars) {
        vars = json_loads(template_fuzz_vars, 0, NULL);
        markup_vars = json_object();
        json_object_set_new(markup_vars, "bos_token", json_string("<s>"));
        json_object_set_new(markup_vars, "eos_token", json_string("</s>"));
    }
    nuri_template *t = NULL;
    nuri_status st = nuri_template_parse((const char *)data, size, &t);
    if (st != NURI_OK) return st;
    nuri_template_limits lim = {
        .max_output = 1 << 20, .max_steps = 20000, .max_memory = 32 << 20, .max_call_depth = 16};
    struct tm now = {.tm_year = 126, .tm_mon = 10, .tm_mday = 26, .tm_hour = 9};
    char *out = NULL;
    size_t n = 0;
    st = nuri_template_render_limited(t, vars, &now, &lim, &out, &n);
    if (st == NURI_OK && out[n] != 0) abort(); // the output is NUL-terminated
    // with provenance: the data variables without bos/eos, which come as markup
    json_t *data_vars = json_copy(vars);
    json_object_del(data_vars, "bos_token");
    json_object_del(data_vars, "eos_token");
    nuri_template_markup mk = {.vars = markup_vars, .roles = nuri_template_roles};
    char *out2 = NULL;
    size_t n2 = 0;
    nuri_text_spans sp;
    nuri_status st2 = nuri_template_render_spans(t, data_vars, &mk, &now, &lim, &out2, &n2, &sp);
    // the same text (or the same failure; the tracked render needs more memory, so it may hit the
    // memory limit where the plain one did not)
    if (st2 != st && !(st2 == NURI_ERR_LIMIT && st == NURI_OK)) abort();
    if (st2 == NURI_OK && (n2 != n || memcmp(out, out2, n))) abort();
    for (size_t i = 0, end = 0; i < sp.n; i++) {
        if (!sp.v[i].len || (i && sp.v[i].off <= end) || sp.v[i].off + sp.v[i].len > n2) abort();
        end = sp.v[i].off + sp.v[i].len;
    }
    nuri_text_spans_free(&sp);
    free(out2);
    json_decref(data_vars);
    free(out);
    nuri_template_free(t);
    return st;
}

#endif
