/*
 * toolcall.c: tool-call formats: telling them from a template, their ids, their shape for
 * grammars, and messages prepared for templates (see toolcall.h). The reply parser is in
 * toolcall_parse.c.
 */
#include "chat/toolcall.h"

#include "base/status.h"
#include "chat/template.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- names ---- */

static const char *const format_names[NURI_TOOLCALL_N_FORMATS] = {
    [NURI_TOOLCALL_NONE] = "none",
    [NURI_TOOLCALL_GENERIC] = "generic",
    [NURI_TOOLCALL_HERMES] = "hermes",
    [NURI_TOOLCALL_EXAONE4] = "exaone4",
    [NURI_TOOLCALL_QWEN_XML] = "qwen-xml",
    [NURI_TOOLCALL_ARG_KEY] = "arg-key",
    [NURI_TOOLCALL_LLAMA3] = "llama3",
    [NURI_TOOLCALL_MISTRAL] = "mistral",
    [NURI_TOOLCALL_MISTRAL_ARGS] = "mistral-args",
    [NURI_TOOLCALL_DEEPSEEK_R1] = "deepseek-r1",
    [NURI_TOOLCALL_HARMONY] = "harmony",
};

const char *nuri_toolcall_format_name(nuri_toolcall_format f)
{
    return (unsigned)f < NURI_TOOLCALL_N_FORMATS ? format_names[f] : "none";
}

int nuri_toolcall_format_from_name(const char *name)
{
    for (int i = 0; name && i < NURI_TOOLCALL_N_FORMATS; i++)
        if (!strcmp(name, format_names[i])) return i;
    return -1;
}

/* ---- detection ---- */

static bool has(const char *src, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    if (!src || n > len) return false;
    for (size_t i = 0; i + n <= len; i++)
        if (src[i] == needle[0] && !memcmp(src + i, needle, n)) return true;
    return false;
}

nuri_chat_syntax nuri_chat_syntax_detect(const char *src, size_t len)
{
    nuri_chat_syntax s = {.format = NURI_TOOLCALL_GENERIC};
    if (has(src, len, "<|channel|>") && has(src, len, "<|message|>")) {
        s.format = NURI_TOOLCALL_HARMONY;
        s.harmony = true;
        s.think_open = NURI_HARMONY_ANALYSIS;
        s.think_close = NURI_HARMONY_NEXT;
        return s;
    }
    // the most specific markers first: Mistral Small 3.2's [TOOL_CALLS]NAME[ARGS] before
    // Nemo's [TOOL_CALLS][...]; Qwen3.5's <function=...> and HyperCLOVA X's <arg_key> inside
    // <tool_call> before the JSON of Hermes
    if (has(src, len, "[TOOL_CALLS]"))
        s.format = has(src, len, "[ARGS]") ? NURI_TOOLCALL_MISTRAL_ARGS : NURI_TOOLCALL_MISTRAL;
    else if (has(src, len, NURI_DEEPSEEK_CALLS_BEGIN))
        s.format = NURI_TOOLCALL_DEEPSEEK_R1;
    else if (has(src, len, "<arg_key>"))
        s.format = NURI_TOOLCALL_ARG_KEY;
    else if (has(src, len, "<tool_call>") && has(src, len, "<function="))
        s.format = NURI_TOOLCALL_QWEN_XML;
    else if (has(src, len, "<tool_call>"))
        s.format = has(src, len, "[|endofturn|]") ? NURI_TOOLCALL_EXAONE4 : NURI_TOOLCALL_HERMES;
    else if (has(src, len, "<|python_tag|>") ||
             (has(src, len, "<|start_header_id|>") && has(src, len, "\"parameters\"")))
        s.format = NURI_TOOLCALL_LLAMA3;
    if (has(src, len, "<thought>")) {
        s.think_open = "<thought>";
        s.think_close = "</thought>";
    } else {
        s.think_open = "<think>";
        s.think_close = "</think>";
    }
    return s;
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

bool nuri_chat_syntax_prompt_opens_reasoning(const nuri_chat_syntax *s, const char *prompt,
                                             size_t len)
{
    if (!s->think_open || !prompt) return false;
    while (len && is_ws(prompt[len - 1])) len--;
    size_t n = strlen(s->think_open);
    return len >= n && !memcmp(prompt + len - n, s->think_open, n);
}

/* ---- ids ---- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

char *nuri_toolcall_id(nuri_toolcall_format f, uint64_t seed, uint32_t index, char *buf)
{
    uint64_t x = seed ^ ((uint64_t)index * 0xd1342543de82ef95ull);
    uint64_t a = splitmix64(&x), b = splitmix64(&x);
    if (f == NURI_TOOLCALL_MISTRAL || f == NURI_TOOLCALL_MISTRAL_ARGS) {
        static const char al[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        for (int i = 0; i < 9; i++) {
            buf[i] = al[a % 62];
            a /= 62;
        }
        buf[9] = 0;
    } else {
        snprintf(buf, 32, "call_%016llx%08llx", (unsigned long long)a,
                 (unsigned long long)(b >> 32));
    }
    return buf;
}

/* ---- messages for templates ---- */

/* The last 9 characters (code points) of a UTF-8 string, as Python's s[-9:]. */
static json_t *last9(const char *s, size_t n)
{
    size_t i = n, count = 0;
    while (i > 0 && count < 9) {
        i--;
        if (((unsigned char)s[i] & 0xc0) != 0x80) count++;
    }
    return json_stringn(s + i, n - i);
}

static bool mistral(nuri_toolcall_format f)
{
    return f == NURI_TOOLCALL_MISTRAL || f == NURI_TOOLCALL_MISTRAL_ARGS;
}

/* Replaces obj[key] (a string id) by its last 9 characters when it is longer. */
static int shorten_id(json_t *obj, const char *key)
{
    json_t *id = json_object_get(obj, key);
    if (!json_is_string(id)) return 0;
    const char *s = json_string_value(id);
    size_t n = json_string_length(id), cps = 0;
    for (size_t i = 0; i < n; i++) cps += ((unsigned char)s[i] & 0xc0) != 0x80;
    if (cps <= 9) return 0;
    json_t *v = last9(s, n);
    return v ? json_object_set_new(obj, key, v) : -1;
}

static json_t *prepare_call(json_t *tc, nuri_toolcall_format f, bool objects)
{
    if (!json_is_object(tc)) return json_incref(tc);
    json_t *copy = json_copy(tc);
    if (!copy) return NULL;
    json_t *fn = json_object_get(copy, "function");
    json_t *args = json_object_get(fn, "arguments");
    if (objects && json_is_object(fn) && json_is_string(args)) {
        json_t *obj = json_loadb(json_string_value(args), json_string_length(args), 0, NULL);
        if (json_is_object(obj)) {
            json_t *fn2 = json_copy(fn);
            if (!fn2 || json_object_set_new(fn2, "arguments", obj) ||
                json_object_set_new(copy, "function", fn2)) {
                json_decref(copy);
                return NULL;
            }
        } else {
            json_decref(obj);
        }
    }
    if (mistral(f) && shorten_id(copy, "id")) {
        json_decref(copy);
        return NULL;
    }
    return copy;
}

json_t *nuri_toolcall_messages(const json_t *messages, nuri_toolcall_format f,
                               const nuri_toolcall_caps *caps)
{
    bool objects = !caps || caps->object_arguments;
    bool null_content_as_empty = caps && caps->string_content;
    if (!json_is_array(messages)) return NULL;
    json_t *out = json_array();
    if (!out) return NULL;
    size_t i;
    json_t *m;
    json_array_foreach(messages, i, m)
    {
        json_t *role = json_object_get(m, "role");
        json_t *calls = json_object_get(m, "tool_calls");
        json_t *copy = NULL;
        if (json_is_string(role) && !strcmp(json_string_value(role), "assistant") &&
            json_is_array(calls)) {
            json_t *nc = json_array();
            size_t k;
            json_t *tc;
            bool bad = !nc;
            json_array_foreach(calls, k, tc)
            {
                if (bad) break;
                json_t *c = prepare_call(tc, f, objects);
                bad = !c || json_array_append_new(nc, c);
            }
            // json_object_set_new takes nc even when it fails
            if (bad) {
                json_decref(nc);
            } else if (!(copy = json_copy(m))) {
                json_decref(nc);
            } else if (json_object_set_new(copy, "tool_calls", nc)) {
                json_decref(copy);
                copy = NULL;
            }
        } else if (mistral(f) && json_is_string(role) && !strcmp(json_string_value(role), "tool") &&
                   json_is_string(json_object_get(m, "tool_call_id"))) {
            if ((copy = json_copy(m)) && shorten_id(copy, "tool_call_id")) {
                json_decref(copy);
                copy = NULL;
            }
        } else {
            copy = json_incref(m);
        }
        json_t *content = json_object_get(m, "content");
        if (copy && null_content_as_empty && json_is_string(role) &&
            !strcmp(json_string_value(role), "assistant") && (!content || json_is_null(content))) {
            json_t *c2 = copy == m ? json_copy(m) : copy;
            if (copy == m) json_decref(copy);
            copy = c2;
            if (copy && json_object_set_new(copy, "content", json_string(""))) {
                json_decref(copy);
                copy = NULL;
            }
        }
        // harmony templates read an assistant's reasoning as `thinking` (OpenAI's API and
        // nuri's replies call it reasoning_content)
        json_t *rc = json_object_get(m, "reasoning_content");
        if (copy && f == NURI_TOOLCALL_HARMONY && json_is_string(role) &&
            !strcmp(json_string_value(role), "assistant") && json_is_string(rc) &&
            !json_object_get(m, "thinking")) {
            json_t *c2 = copy == m ? json_copy(m) : copy;
            if (copy == m) json_decref(copy);
            copy = c2;
            if (copy && json_object_set(copy, "thinking", rc)) {
                json_decref(copy);
                copy = NULL;
            }
        }
        if (!copy || json_array_append_new(out, copy)) {
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

/* The probe: a user turn, one call (arguments as an object or a string; content null or ""), its
 * result. It passes when the render succeeds and shows the needle. */
static bool probe(const nuri_template *t, bool object_args, bool null_content)
{
    const char *args =
        object_args ? "{\"argument_needle\": \"x\"}" : "\"{\\\"argument_needle\\\": \\\"x\\\"}\"";
    char text[1024];
    snprintf(
        text, sizeof text,
        "[{\"role\": \"user\", \"content\": \"x\"}, {\"role\": \"assistant\", \"content\": %s, "
        "\"tool_calls\": [{\"id\": \"call00001\", \"type\": \"function\", \"function\": "
        "{\"name\": \"tool_needle\", \"arguments\": %s}}]}, {\"role\": \"tool\", "
        "\"tool_call_id\": \"call00001\", \"name\": \"tool_needle\", \"content\": \"1\"}]",
        null_content ? "null" : "\"\"", args);
    json_t *m = json_loads(text, 0, NULL);
    json_t *vars = m ? nuri_template_vars(m, NULL, 1, NULL, NULL, NULL) : NULL;
    struct tm now = {.tm_year = 125, .tm_mday = 1};
    char *out = NULL;
    size_t n = 0;
    nuri_template_limits lim = {.max_output = 1 << 20, .max_memory = 64 << 20};
    bool ok = vars && nuri_template_render_limited(t, vars, &now, &lim, &out, &n) == NURI_OK;
    // an object must show up at all; a string must show up unescaped (not double-encoded)
    ok = ok && has(out, n, object_args ? "argument_needle" : "\"argument_needle\":");
    free(out);
    json_decref(vars);
    json_decref(m);
    return ok;
}

nuri_toolcall_caps nuri_toolcall_template_caps(const nuri_template *t)
{
    nuri_toolcall_caps c = {.object_arguments = true};
    bool obj_null = probe(t, true, true), str_null = probe(t, false, true);
    bool null_ok = obj_null || str_null;
    if (!null_ok && (probe(t, true, false) || probe(t, false, false))) c.string_content = true;
    bool obj = c.string_content ? probe(t, true, false) : obj_null;
    bool str = c.string_content ? probe(t, false, false) : str_null;
    c.object_arguments = obj || !str;
    return c;
}

/* ---- shapes ---- */

/* name as the body of a JSON string (json.dumps(ensure_ascii=False) escaping); caller frees. */
static char *json_escape(const char *s)
{
    size_t n = strlen(s);
    char *o = malloc(6 * n + 1);
    if (!o) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            o[k++] = '\\';
            o[k++] = (char)c;
        } else if (c == '\n') {
            o[k++] = '\\';
            o[k++] = 'n';
        } else if (c == '\t') {
            o[k++] = '\\';
            o[k++] = 't';
        } else if (c == '\r') {
            o[k++] = '\\';
            o[k++] = 'r';
        } else if (c < 0x20) {
            k += (size_t)sprintf(o + k, "\\u%04x", c);
        } else {
            o[k++] = (char)c;
        }
    }
    o[k] = 0;
    return o;
}

static char *cat3(const char *a, const char *b, const char *c)
{
    size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
    char *s = malloc(la + lb + lc + 1);
    if (!s) return NULL;
    memcpy(s, a, la);
    memcpy(s + la, b, lb);
    memcpy(s + la + lb, c, lc + 1);
    return s;
}

void nuri_toolcall_shape_free(nuri_toolcall_shape *s)
{
    if (!s) return;
    char **f[] = {&s->begin, &s->prefix,       &s->suffix,       &s->separator,
                  &s->end,   &s->param_open_a, &s->param_open_b, &s->param_close};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) free(*f[i]);
    memset(s, 0, sizeof *s);
}

nuri_status nuri_toolcall_shape_get(nuri_toolcall_format f, const char *name,
                                    nuri_toolcall_shape *out)
{
    memset(out, 0, sizeof *out);
    if (f <= NURI_TOOLCALL_NONE || f >= NURI_TOOLCALL_N_FORMATS)
        return nuri_error(NURI_ERR_INVALID_ARG, "tool-call format %d has no call shape", (int)f);
    char *esc = json_escape(name);
    if (!esc) return nuri_error(NURI_ERR_NOMEM, "out of memory");
    // (begin, prefix before the name, prefix after it, suffix, separator, end, param_open_a,
    // param_open_b, param_close)
    const char *b = "", *pa = "", *pb = "", *su = "", *se = "\n", *en = "", *oa = "", *ob = "",
               *cl = "";
    const char *nm = name; // the name as written: escaped inside JSON
    bool json = true, par = true;
    switch (f) {
    case NURI_TOOLCALL_GENERIC:
        pa = "{\"name\": \"", pb = "\", \"arguments\": ", su = "}", nm = esc;
        break;
    case NURI_TOOLCALL_HERMES:
        pa = "<tool_call>\n{\"name\": \"", pb = "\", \"arguments\": ", su = "}\n</tool_call>";
        nm = esc;
        break;
    case NURI_TOOLCALL_EXAONE4:
        pa = "<tool_call>{\"name\": \"", pb = "\", \"arguments\": ", su = "}</tool_call>";
        nm = esc;
        break;
    case NURI_TOOLCALL_QWEN_XML:
        pa = "<tool_call>\n<function=", pb = ">\n", su = "</function>\n</tool_call>";
        oa = "<parameter=", ob = ">\n", cl = "\n</parameter>\n", json = false;
        break;
    case NURI_TOOLCALL_ARG_KEY:
        pa = "<tool_call>", pb = "\n", su = "</tool_call>";
        oa = "<arg_key>", ob = "</arg_key>\n<arg_value>", cl = "</arg_value>\n", json = false;
        break;
    case NURI_TOOLCALL_LLAMA3:
        pa = "{\"name\": \"", pb = "\", \"parameters\": ", su = "}", nm = esc, se = "";
        par = false;
        break;
    case NURI_TOOLCALL_MISTRAL:
        b = "[TOOL_CALLS][", pa = "{\"name\": \"", pb = "\", \"arguments\": ", su = "}";
        se = ", ", en = "]", nm = esc;
        break;
    case NURI_TOOLCALL_MISTRAL_ARGS:
        pa = "[TOOL_CALLS]", pb = "[ARGS]", se = "";
        break;
    case NURI_TOOLCALL_HARMONY: // one call per turn: <|call|> ends the turn
        pa = "<|channel|>commentary to=functions.", pb = " <|constrain|>json<|message|>", se = "";
        par = false;
        break;
    case NURI_TOOLCALL_DEEPSEEK_R1:
        b = NURI_DEEPSEEK_CALLS_BEGIN;
        pa = NURI_DEEPSEEK_CALL_BEGIN "function" NURI_DEEPSEEK_SEP;
        pb = "\n```json\n";
        su = "\n```" NURI_DEEPSEEK_CALL_END;
        en = NURI_DEEPSEEK_CALLS_END;
        break;
    default:
        break;
    }
    out->json_arguments = json;
    out->parallel = par;
    out->begin = strdup(b);
    out->prefix = cat3(pa, nm, pb);
    out->suffix = strdup(su);
    out->separator = strdup(se);
    out->end = strdup(en);
    out->param_open_a = strdup(oa);
    out->param_open_b = strdup(ob);
    out->param_close = strdup(cl);
    free(esc);
    if (!out->begin || !out->prefix || !out->suffix || !out->separator || !out->end ||
        !out->param_open_a || !out->param_open_b || !out->param_close) {
        nuri_toolcall_shape_free(out);
        return nuri_error(NURI_ERR_NOMEM, "out of memory");
    }
    return NURI_OK;
}
