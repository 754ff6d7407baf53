/*
 * toolcall_grammar.c: the GBNF grammar that makes a reply a tool call (tool_choice "required" or
 * a named function), in the template's own format, with arguments valid against each tool's
 * parameters schema. See toolcall.h (nuri_toolcall_grammar).
 *
 * The reply is   [reasoning]  begin call (separator call){0,7} end   (one call when not parallel),
 * a call of tool i is   prefix_i ARGS_i suffix_i   (nuri_toolcall_shape), and ARGS_i is the rule
 * that nuri_json_schemas_to_gbnf makes from the tool's parameters. In the XML-like formats
 * (qwen-xml, arg-key) the arguments are one block per parameter; a string parameter's value is raw
 * text (no '<', so that it cannot close its block early), other values JSON by their schema.
 */
#include "chat/toolcall.h"

#include "base/status.h"
#include "base/strbuf.h"
#include "grammar/json_schema.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PARALLEL 8 // calls in one reply under a grammar: a bound keeps every reply finite

/* A GBNF string literal for s (quotes included; "" for the empty text, which GBNF allows). */
static void sb_literal(nuri_sb *b, const char *s)
{
    nuri_gbnf_literal(b, s, strlen(s));
}

static nuri_status fail(char *err_param, size_t cap, nuri_status st, const char *param,
                        const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static nuri_status fail(char *err_param, size_t cap, nuri_status st, const char *param,
                        const char *fmt, ...)
{
    if (err_param && cap) snprintf(err_param, cap, "%s", param);
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return nuri_error(st, "%s", msg);
}

static const json_t *tool_function(const json_t *tools, size_t i)
{
    return json_object_get(json_array_get(tools, i), "function");
}

/* Whether a parameter schema says "a string" the way the reply parser reads it (type "string", or
 * types whose only non-null one is "string"): its value is then raw text. */
static bool string_param(const json_t *s)
{
    const json_t *type = json_object_get(s, "type");
    if (json_is_string(type)) return !strcmp(json_string_value(type), "string");
    if (!json_is_array(type)) return false;
    bool str = false;
    size_t i;
    const json_t *t;
    json_array_foreach(type, i, t)
    {
        if (!json_is_string(t)) return false;
        if (!strcmp(json_string_value(t), "string"))
            str = true;
        else if (strcmp(json_string_value(t), "null"))
            return false;
    }
    return str;
}

/* A raw string parameter's value: any text without '<', or one of its enum / const strings. */
static nuri_status raw_value(nuri_sb *b, const json_t *s, const char *param, char *err_param,
                             size_t cap)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)s, key, v)
    {
        if (!strcmp(key, "type") || !strcmp(key, "enum") || !strcmp(key, "const") ||
            !strcmp(key, "description") || !strcmp(key, "title") || !strcmp(key, "default") ||
            !strcmp(key, "examples") || !strcmp(key, "minLength") || !strcmp(key, "maxLength"))
            continue;
        char p[1024];
        snprintf(p, sizeof p, "%s.%s", param, key);
        return fail(err_param, cap, NURI_ERR_UNSUPPORTED, p,
                    "'%s': in this model's tool-call format a string parameter is raw text, and "
                    "nuri cannot enforce '%s' on it",
                    p, key);
    }
    const json_t *one = json_object_get(s, "const"), *list = json_object_get(s, "enum");
    if (!one && !list) {
        // lengths count code points, as a character class matches them
        const json_t *lo = json_object_get(s, "minLength"), *hi = json_object_get(s, "maxLength");
        json_int_t min = json_is_integer(lo) ? json_integer_value(lo) : 0;
        json_int_t max = json_is_integer(hi) ? json_integer_value(hi) : -1;
        if ((lo && !json_is_integer(lo)) || (hi && !json_is_integer(hi)) || min < 0 ||
            min > NURI_GRAMMAR_MAX_REPEAT || max > NURI_GRAMMAR_MAX_REPEAT ||
            (max >= 0 && max < min))
            return fail(err_param, cap, NURI_ERR_UNSUPPORTED, param,
                        "'%s': minLength / maxLength must be integers with 0 <= minLength <= "
                        "maxLength <= %u",
                        param, NURI_GRAMMAR_MAX_REPEAT);
        if (!lo && !hi)
            nuri_sb_str(b, "[^<]*");
        else if (max < 0)
            nuri_sb_fmt(b, "[^<]{%lld,}", (long long)min);
        else
            nuri_sb_fmt(b, "[^<]{%lld,%lld}", (long long)min, (long long)max);
        return NURI_OK;
    }
    nuri_sb_str(b, "(");
    bool first = true;
    size_t n = one ? 1 : json_array_size(list);
    for (size_t i = 0; i < n; i++) {
        const json_t *x = one ? one : json_array_get(list, i);
        if (!json_is_string(x)) continue; // null and the like: a raw value is always a string
        if (!first) nuri_sb_str(b, " | ");
        first = false;
        sb_literal(b, json_string_value(x));
    }
    nuri_sb_str(b, ")");
    if (first)
        return fail(err_param, cap, NURI_ERR_UNSUPPORTED, param,
                    "'%s' allows no string, but a raw parameter value is one", param);
    return NURI_OK;
}

/* The parameters schema of tool i, or the empty object's when it has none. */
static const json_t *params_of(const json_t *tools, size_t i, const json_t *none)
{
    const json_t *p = json_object_get(tool_function(tools, i), "parameters");
    return json_is_object(p) ? p : none;
}

nuri_status nuri_toolcall_grammar(const nuri_toolcall_grammar_opts *o, char **gbnf, size_t *len,
                                  char *err_param, size_t err_param_cap)
{
    *gbnf = NULL;
    *len = 0;
    if (err_param && err_param_cap) err_param[0] = 0;
    nuri_toolcall_format f = o->format;
    size_t n_tools = json_array_size(o->tools);
    if (f <= NURI_TOOLCALL_NONE || f >= NURI_TOOLCALL_N_FORMATS || n_tools == 0)
        return nuri_error(NURI_ERR_INVALID_ARG, "tool-call grammar: no format or no tools");
    json_t *none =
        json_pack("{s:s,s:{},s:b}", "type", "object", "properties", "additionalProperties", 0);
    if (!none) return nuri_error(NURI_ERR_NOMEM, "out of memory");
    nuri_toolcall_shape shape0;
    nuri_status st = nuri_toolcall_shape_get(f, "x", &shape0);
    if (st != NURI_OK) {
        json_decref(none);
        return st;
    }
    bool json_args = shape0.json_arguments;

    // the schema rules: per tool (JSON formats) or per non-string parameter (XML-like), and the
    // answer's schema
    size_t cap_rules = 1 + n_tools * (json_args ? 1 : 64);
    nuri_json_schema_rule *rules = calloc(cap_rules, sizeof *rules);
    char(*names)[48] = calloc(cap_rules, sizeof *names);
    // XML-like: for each tool, its parameter blocks as GBNF (built before the rules are known)
    nuri_sb *blocks = calloc(n_tools, sizeof *blocks);
    nuri_sb out = {0};
    char *schema_text = NULL;
    size_t nr = 0;
    if (!rules || !names || !blocks) {
        st = nuri_error(NURI_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n_tools; i++) {
        const json_t *fn = tool_function(o->tools, i);
        const char *name = json_string_value(json_object_get(fn, "name"));
        if (o->only && strcmp(o->only, name)) continue;
        const json_t *params = params_of(o->tools, i, none);
        if (json_args) {
            snprintf(names[nr], sizeof names[nr], "tool%zu-args", i);
            rules[nr] = (nuri_json_schema_rule){.root = params, .rule = names[nr]};
            nr++;
            continue;
        }
        char param[128];
        snprintf(param, sizeof param, "tools[%zu].function.parameters", i);
        const char *key;
        json_t *v;
        json_object_foreach((json_t *)params, key, v)
        {
            if (!strcmp(key, "type") || !strcmp(key, "properties") || !strcmp(key, "required") ||
                !strcmp(key, "additionalProperties") || !strcmp(key, "description") ||
                !strcmp(key, "title") || !strcmp(key, "$defs") || !strcmp(key, "definitions") ||
                !strcmp(key, "$schema") || !strcmp(key, "strict"))
                continue;
            char p[512];
            snprintf(p, sizeof p, "%s.%s", param, key);
            st = fail(err_param, err_param_cap, NURI_ERR_UNSUPPORTED, p,
                      "'%s': in this model's tool-call format the arguments are one block per "
                      "parameter, and nuri cannot enforce '%s' on them",
                      p, key);
            goto done;
        }
        const json_t *props = json_object_get(params, "properties");
        const json_t *req = json_object_get(params, "required");
        size_t k = 0;
        json_object_foreach((json_t *)props, key, v)
        {
            bool required = false;
            size_t ri;
            json_t *rv;
            json_array_foreach(req, ri, rv) required |=
                json_is_string(rv) && !strcmp(json_string_value(rv), key);
            nuri_sb *b = &blocks[i];
            nuri_sb_str(b, required ? " " : " ( ");
            sb_literal(b, shape0.param_open_a);
            nuri_sb_str(b, " ");
            sb_literal(b, key);
            nuri_sb_str(b, " ");
            sb_literal(b, shape0.param_open_b);
            nuri_sb_str(b, " ");
            char p[512];
            snprintf(p, sizeof p, "%s.properties.%s", param, key);
            if (!json_is_object(v) && !json_is_boolean(v)) {
                st = fail(err_param, err_param_cap, NURI_ERR_FORMAT, p,
                          "'%s' must be a JSON Schema object", p);
                goto done;
            }
            if (json_is_object(v) && string_param(v)) {
                if ((st = raw_value(b, v, p, err_param, err_param_cap)) != NURI_OK) goto done;
            } else {
                if (nr == cap_rules) {
                    st = fail(err_param, err_param_cap, NURI_ERR_LIMIT, param,
                              "'%s' has too many parameters for a grammar", param);
                    goto done;
                }
                snprintf(names[nr], sizeof names[nr], "tool%zu-p%zu", i, k);
                rules[nr] = (nuri_json_schema_rule){.root = params, .schema = v, .rule = names[nr]};
                nuri_sb_str(b, names[nr]);
                nr++;
            }
            nuri_sb_str(b, " ");
            sb_literal(b, shape0.param_close);
            if (!required) nuri_sb_str(b, " )?");
            k++;
        }
        if (json_array_size(req) > 0 && k == 0) {
            st = fail(err_param, err_param_cap, NURI_ERR_UNSUPPORTED, param,
                      "'%s' requires parameters but lists no properties", param);
            goto done;
        }
    }
    size_t n_tool_rules = nr;
    if (o->answer_schema) {
        snprintf(names[nr], sizeof names[nr], "answer");
        rules[nr] = (nuri_json_schema_rule){.root = o->answer_schema, .rule = names[nr]};
        nr++;
    }
    size_t err_i = 0;
    char path[160];
    size_t text_len = 0;
    st = nuri_json_schemas_to_gbnf(rules, nr, &schema_text, &text_len, &err_i, path, sizeof path);
    if (st != NURI_OK) {
        if (err_param && err_param_cap) {
            if (o->answer_schema && err_i == n_tool_rules) {
                snprintf(err_param, err_param_cap, "response_format.json_schema.schema%s%s",
                         path[0] ? "." : "", path);
            } else {
                // which tool: the rule's name says (tool<i>-...)
                size_t ti = (size_t)strtoul(names[err_i] + 4, NULL, 10);
                if (json_args || !rules[err_i].schema) {
                    snprintf(err_param, err_param_cap, "tools[%zu].function.parameters%s%s", ti,
                             path[0] ? "." : "", path);
                } else {
                    // a parameter's own schema: find its key
                    const char *key = "";
                    const char *k2;
                    json_t *v2;
                    json_object_foreach(json_object_get(rules[err_i].root, "properties"), k2, v2)
                    {
                        if (v2 == rules[err_i].schema) key = k2;
                    }
                    snprintf(err_param, err_param_cap,
                             "tools[%zu].function.parameters.properties.%s%s%s", ti, key,
                             path[0] ? "." : "", path);
                }
            }
        }
        goto done;
    }
    nuri_sb_add(&out, schema_text, text_len);

    // one rule per allowed tool: prefix ARGS suffix
    size_t ri = 0;
    nuri_sb_str(&out, "call ::=");
    bool first = true;
    for (size_t i = 0; i < n_tools; i++) {
        const char *name = json_string_value(json_object_get(tool_function(o->tools, i), "name"));
        if (o->only && strcmp(o->only, name)) continue;
        nuri_sb_fmt(&out, "%s tool%zu-call", first ? "" : " |", i);
        first = false;
    }
    nuri_sb_str(&out, "\n");
    for (size_t i = 0; i < n_tools; i++) {
        const char *name = json_string_value(json_object_get(tool_function(o->tools, i), "name"));
        if (o->only && strcmp(o->only, name)) continue;
        nuri_toolcall_shape sh;
        if ((st = nuri_toolcall_shape_get(f, name, &sh)) != NURI_OK) goto done;
        nuri_sb_fmt(&out, "tool%zu-call ::= ", i);
        sb_literal(&out, sh.prefix);
        if (json_args) {
            nuri_sb_fmt(&out, " %s ", names[ri++]);
        } else {
            nuri_sb_add(&out, blocks[i].p ? blocks[i].p : "", blocks[i].n);
            nuri_sb_str(&out, " ");
        }
        sb_literal(&out, sh.suffix);
        nuri_sb_str(&out, "\n");
        nuri_toolcall_shape_free(&sh);
    }
    // the calls
    nuri_sb_str(&out, "calls ::= ");
    sb_literal(&out, shape0.begin);
    nuri_sb_str(&out, " call");
    if (o->parallel && shape0.parallel) {
        nuri_sb_str(&out, " ( ");
        sb_literal(&out, shape0.separator);
        nuri_sb_fmt(&out, " call ){0,%d}", MAX_PARALLEL - 1);
    }
    nuri_sb_str(&out, " ");
    sb_literal(&out, shape0.end);
    nuri_sb_str(&out, "\n");
    // the reply
    const char *reply = o->answer_schema ? "( calls | answer )" : "calls";
    const nuri_chat_syntax *syn = o->syntax;
    bool think = syn && syn->think_open && syn->think_close;
    if (think && o->in_reasoning) {
        // the prompt opened the reasoning: the reply closes it first
        nuri_sb_str(&out, "root ::= [^<]* ");
        sb_literal(&out, syn->think_close);
        nuri_sb_fmt(&out, " [\\n]{0,2} %s\n", reply);
    } else if (think && o->reasoning_allowed) {
        nuri_sb_str(&out, "root ::= ( ");
        sb_literal(&out, syn->think_open);
        nuri_sb_str(&out, " [^<]* ");
        sb_literal(&out, syn->think_close);
        nuri_sb_fmt(&out, " [\\n]{0,2} )? %s\n", reply);
    } else {
        nuri_sb_fmt(&out, "root ::= %s\n", reply);
    }
    if (out.oom) {
        st = nuri_error(NURI_ERR_NOMEM, "out of memory");
        goto done;
    }
    *gbnf = out.p;
    *len = out.n;
    out.p = NULL;
    st = NURI_OK;
done:
    nuri_toolcall_shape_free(&shape0);
    for (size_t i = 0; blocks && i < n_tools; i++) free(blocks[i].p);
    free(blocks);
    free(rules);
    free(names);
    free(schema_text);
    free(out.p);
    json_decref(none);
    return st;
}
