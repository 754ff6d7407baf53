/*
 * json_schema.c: JSON Schema -> GBNF text (json_schema.h says what is supported and where the
 * grammar is stricter than the schema).
 *
 * One walk over the schema. Each schema becomes a rule (named after where it is, plus a number);
 * its body is made from the parts of its types. Shared pieces (whitespace, string characters,
 * numbers, any value) are written once, when first needed. $ref targets become rules too,
 * remembered by their pointer, so recursive schemas make recursive grammars. The `pattern` regex
 * subset is translated in json_schema_regex.c.
 *
 * Strings in the grammar are JSON-encoded text: a schema's literal (enum, const, property name)
 * is written out compactly by jansson and then quoted for GBNF.
 */
#include "grammar/json_schema.h"

#include "base/status.h"
#include "grammar/json_schema_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the text builder (base/strbuf.h) ---- */

/* Appends one code point as it may appear inside a GBNF literal or class. */
void js_sb_gbnf_char(nuri_sb *b, uint32_t c)
{
    if (c == '"' || c == '\\' || c == '[' || c == ']' || c == '-') {
        char e[3] = {'\\', (char)c, 0};
        nuri_sb_str(b, e);
    } else if (c < 0x20 || c == 0x7F) {
        nuri_sb_fmt(b, "\\x%02X", c);
    } else if (c < 0x80) {
        char e[2] = {(char)c, 0};
        nuri_sb_str(b, e);
    } else if (c >= 0xD800 && c <= 0xDFFF) {
        nuri_sb_fmt(b, "\\u%04X", c); // not encodable in UTF-8
    } else if (c <= 0xFFFF) {
        nuri_sb_fmt(b, "\\u%04X", c);
    } else {
        nuri_sb_fmt(b, "\\U%08X", c);
    }
}

void nuri_gbnf_literal(nuri_sb *b, const char *s, size_t n)
{
    nuri_sb_str(b, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char e[3] = {'\\', (char)c, 0};
            nuri_sb_str(b, e);
        } else if (c < 0x20 || c == 0x7F) {
            nuri_sb_fmt(b, "\\x%02X", c);
        } else {
            nuri_sb_add(b, (const char *)&s[i], 1);
        }
    }
    nuri_sb_str(b, "\"");
}

/* ---- errors and paths ---- */

bool js_fail(js_gen *g, nuri_status st, const char *key, const char *fmt, ...)
{
    if (g->err != NURI_OK) return false;
    char where[JS_MAX_PATH + 80];
    size_t n = g->path_len;
    memcpy(where, g->path, n);
    if (key) n += (size_t)snprintf(where + n, sizeof where - n, "%s%s", n ? "." : "", key);
    where[n < sizeof where ? n : sizeof where - 1] = 0;
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    g->err = st;
    if (g->err_path && g->err_path_cap) {
        snprintf(g->err_path, g->err_path_cap, "%s", where);
    }
    nuri_error(st, "json schema: %s%s%s", msg, where[0] ? " (at " : "", where[0] ? where : "");
    if (where[0]) {
        char full[600];
        snprintf(full, sizeof full, "%s)", nuri_last_error());
        nuri_error(st, "%s", full);
    }
    return false;
}

/* Adds ".part" (or "part" at the top, or "[i]" when index >= 0) to the path; returns the length
 * to restore with path_pop. */
static size_t path_push(js_gen *g, const char *part, long index)
{
    size_t mark = g->path_len;
    size_t room = sizeof g->path - g->path_len;
    int n;
    if (index >= 0)
        n = snprintf(g->path + g->path_len, room, "[%ld]", index);
    else
        n = snprintf(g->path + g->path_len, room, "%s%s", g->path_len ? "." : "", part);
    if (n > 0) g->path_len += (size_t)n < room ? (size_t)n : room - 1;
    return mark;
}

static void path_pop(js_gen *g, size_t mark)
{
    g->path_len = mark;
    g->path[mark] = 0;
}

/* ---- names ---- */

/* A new rule name from a hint: letters, digits and '-', then "-<number>" (shared pieces have names
 * without a number, so they never collide). Borrowed until the generator is freed. */
const char *js_new_name(js_gen *g, const char *hint)
{
    if (g->n_names == g->cap_names) {
        size_t cap = g->cap_names ? 2 * g->cap_names : 64;
        char **p = realloc(g->names, sizeof *p * cap);
        if (!p) {
            js_fail(g, NURI_ERR_NOMEM, NULL, "out of memory");
            return NULL;
        }
        g->names = p;
        g->cap_names = cap;
    }
    char buf[64];
    size_t k = 0;
    for (const char *s = hint; *s && k < 32; s++) {
        char c = *s;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (ok)
            buf[k++] = c;
        else if (k > 0 && buf[k - 1] != '-')
            buf[k++] = '-';
    }
    while (k > 0 && buf[k - 1] == '-') k--;
    if (k == 0) buf[k++] = 'r';
    snprintf(buf + k, sizeof buf - k, "-%zu", g->n_names);
    char *name = strdup(buf);
    if (!name) {
        js_fail(g, NURI_ERR_NOMEM, NULL, "out of memory");
        return NULL;
    }
    g->names[g->n_names++] = name;
    return name;
}

void js_rule(js_gen *g, const char *name, const char *body)
{
    nuri_sb_fmt(&g->out, "%s ::= %s\n", name, body);
}

/* ---- shared pieces ---- */

enum {
    P_WS = 1 << 0,
    P_HEX = 1 << 1,
    P_CHAR = 1 << 2,
    P_STRING = 1 << 3,
    P_INT = 1 << 4,
    P_NUMBER = 1 << 5,
    P_INTEGER = 1 << 6,
    P_BOOLEAN = 1 << 7,
    P_NULL = 1 << 8,
    P_VALUE = 1 << 9,
    P_RAWCHAR = 1 << 10,
};

/* Writes the shared rules in `want` (and what they use), once. Returns the name of the last. */
const char *js_need(js_gen *g, unsigned want)
{
    static const struct {
        unsigned bit, uses;
        const char *name, *body;
    } prims[] = {
        {P_WS, 0, "ws", "( [ \\t] | \"\\n\" [ \\t]{0,16} )?"},
        {P_HEX, 0, "hex", "[0-9a-fA-F]"},
        {P_RAWCHAR, 0, "rawchar", "[^\"\\\\\\x00-\\x1F]"},
        {P_CHAR, P_HEX, "char",
         "[^\"\\\\\\x00-\\x1F] | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\" ( [0-9a-cA-Ce-fE-F] hex hex "
         "hex | [dD] [0-7] hex hex ) )"},
        {P_STRING, P_CHAR, "string", "\"\\\"\" char* \"\\\"\""},
        {P_INT, 0, "int", "\"0\" | [1-9] [0-9]{0,15}"},
        {P_NUMBER, P_INT, "number", "\"-\"? int ( \".\" [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,2} )?"},
        {P_INTEGER, P_INT, "integer", "\"-\"? int"},
        {P_BOOLEAN, 0, "boolean", "\"true\" | \"false\""},
        {P_NULL, 0, "null", "\"null\""},
        {P_VALUE, P_WS | P_STRING | P_NUMBER | P_BOOLEAN | P_NULL, "value",
         "object | array | string | number | boolean | null\n"
         "object ::= \"{\" ws ( member ( \",\" ws member )* )? \"}\"\n"
         "member ::= string ws \":\" ws value ws\n"
         "array ::= \"[\" ws ( value ws ( \",\" ws value ws )* )? \"]\""},
    };
    const char *last = NULL;
    for (size_t i = 0; i < sizeof prims / sizeof *prims; i++) {
        if (!(want & prims[i].bit)) continue;
        if (prims[i].uses) js_need(g, prims[i].uses);
        if (!(g->prims & prims[i].bit)) {
            g->prims |= prims[i].bit;
            js_rule(g, prims[i].name, prims[i].body);
        }
        last = prims[i].name;
    }
    return last;
}

/* ---- keywords ---- */

static const char *const annotation_keys[] = {
    "title",           "description",      "$schema",       "$id",       "$comment", "default",
    "examples",        "deprecated",       "readOnly",      "writeOnly", "$defs",    "definitions",
    "contentEncoding", "contentMediaType", "discriminator",
    "nullable", // OpenAPI's; JSON Schema gives it no meaning (use "type": [..., "null"])
};

static const char *const supported_keys[] = {
    "type",
    "properties",
    "required",
    "additionalProperties",
    "enum",
    "const",
    "anyOf",
    "oneOf",
    "allOf",
    "$ref",
    "items",
    "prefixItems",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
};

static bool in_list(const char *k, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(k, list[i])) return true;
    return false;
}

static bool is_annotation(const char *k)
{
    return in_list(k, annotation_keys, sizeof annotation_keys / sizeof *annotation_keys);
}

/* The first key of s, other than annotations and the ones in `allowed`, or NULL. */
static const char *other_key(const json_t *s, const char *const *allowed, size_t n)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)s, k, v)
    {
        (void)v;
        if (!is_annotation(k) && !in_list(k, allowed, n)) return k;
    }
    return NULL;
}

/* ---- literals ---- */

/* Appends the GBNF literal of a JSON value written compactly. */
static bool sb_json_literal(js_gen *g, nuri_sb *b, const json_t *v)
{
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text) return js_fail(g, NURI_ERR_NOMEM, NULL, "out of memory");
    nuri_gbnf_literal(b, text, strlen(text));
    free(text);
    return true;
}

/* Type bits: what JSON values a schema accepts (for oneOf) or a type name means. */
enum {
    T_OBJECT = 1,
    T_ARRAY = 2,
    T_STRING = 4,
    T_INT = 8,   // integral numbers
    T_FRAC = 16, // other numbers
    T_BOOL = 32,
    T_NULL = 64,
    T_ALL = 127,
};

static unsigned type_bits(const char *name)
{
    if (!strcmp(name, "object")) return T_OBJECT;
    if (!strcmp(name, "array")) return T_ARRAY;
    if (!strcmp(name, "string")) return T_STRING;
    if (!strcmp(name, "integer")) return T_INT;
    if (!strcmp(name, "number")) return T_INT | T_FRAC;
    if (!strcmp(name, "boolean")) return T_BOOL;
    if (!strcmp(name, "null")) return T_NULL;
    return 0;
}

static unsigned value_bits(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return T_OBJECT;
    case JSON_ARRAY:
        return T_ARRAY;
    case JSON_STRING:
        return T_STRING;
    case JSON_INTEGER:
        return T_INT;
    case JSON_REAL: {
        double d = json_real_value(v);
        return d == floor(d) && isfinite(d) ? T_INT : T_FRAC;
    }
    case JSON_TRUE:
    case JSON_FALSE:
        return T_BOOL;
    case JSON_NULL:
        return T_NULL;
    }
    return 0;
}

/* The types a schema's "type" allows; T_ALL when it has none. Fails on a bad value. */
static bool schema_types(js_gen *g, const json_t *s, unsigned *out)
{
    const json_t *t = json_object_get(s, "type");
    unsigned bits = 0;
    if (!t) {
        bits = T_ALL;
    } else if (json_is_string(t)) {
        bits = type_bits(json_string_value(t));
        if (!bits)
            return js_fail(g, NURI_ERR_FORMAT, "type", "unknown type '%s'", json_string_value(t));
    } else if (json_is_array(t) && json_array_size(t) > 0) {
        size_t i;
        json_t *e;
        json_array_foreach(t, i, e)
        {
            unsigned b = json_is_string(e) ? type_bits(json_string_value(e)) : 0;
            if (!b)
                return js_fail(g, NURI_ERR_FORMAT, "type",
                               "'type' must be a type name or a list of them");
            bits |= b;
        }
    } else {
        return js_fail(g, NURI_ERR_FORMAT, "type", "'type' must be a type name or a list of them");
    }
    *out = bits;
    return true;
}

/* ---- $ref ---- */

/* Resolves a local reference ("#", "#/a/b~1c/0") against the root. NULL (with the error set) if
 * it is not local or points nowhere. */
static const json_t *resolve_ref(js_gen *g, const char *ref)
{
    if (ref[0] != '#') {
        js_fail(g, NURI_ERR_UNSUPPORTED, "$ref",
                "$ref '%s' points into another document; only local references (\"#/...\") "
                "are supported",
                ref);
        return NULL;
    }
    const json_t *cur = g->root;
    const char *p = ref + 1;
    if (*p && *p != '/') {
        js_fail(g, NURI_ERR_UNSUPPORTED, "$ref",
                "$ref '%s' names an anchor; only JSON pointers (\"#/...\") are supported", ref);
        return NULL;
    }
    char tok[256];
    while (*p == '/') {
        p++;
        size_t k = 0;
        while (*p && *p != '/') {
            char c = *p++;
            if (c == '~' && (*p == '0' || *p == '1')) c = *p++ == '0' ? '~' : '/';
            if (k + 1 >= sizeof tok) break;
            tok[k++] = c;
        }
        tok[k] = 0;
        if (json_is_object(cur)) {
            cur = json_object_get(cur, tok);
        } else if (json_is_array(cur)) {
            char *end;
            unsigned long i = strtoul(tok, &end, 10);
            cur = (*tok && !*end) ? json_array_get(cur, i) : NULL;
        } else {
            cur = NULL;
        }
        if (!cur) {
            js_fail(g, NURI_ERR_FORMAT, "$ref", "$ref '%s' points to nothing in the schema", ref);
            return NULL;
        }
    }
    return cur;
}

/* ---- oneOf: which values may a schema accept? ---- */

/* The types a schema accepts at all (schema semantics, not what we generate). */
static unsigned accepted_types(js_gen *g, const json_t *s, int depth)
{
    if (depth > 16 || json_is_true(s)) return T_ALL;
    if (!json_is_object(s)) return 0; // false
    const json_t *ref = json_object_get(s, "$ref");
    if (json_is_string(ref)) {
        nuri_status keep = g->err;
        const json_t *t = resolve_ref(g, json_string_value(ref));
        g->err = keep;
        return t ? accepted_types(g, t, depth + 1) : T_ALL;
    }
    unsigned bits = T_ALL;
    const json_t *t = json_object_get(s, "type");
    if (json_is_string(t) || json_is_array(t)) {
        unsigned e = 0;
        if (json_is_string(t)) e = type_bits(json_string_value(t));
        size_t i;
        json_t *v;
        json_array_foreach(t, i, v) e |= json_is_string(v) ? type_bits(json_string_value(v)) : 0;
        bits &= e;
    }
    const json_t *c = json_object_get(s, "const");
    if (c) bits &= value_bits(c);
    const json_t *en = json_object_get(s, "enum");
    if (json_is_array(en)) {
        unsigned e = 0;
        size_t i;
        json_t *v;
        json_array_foreach(en, i, v) e |= value_bits(v);
        bits &= e;
    }
    static const char *const alts[] = {"anyOf", "oneOf", "allOf"};
    for (int a = 0; a < 3; a++) {
        const json_t *arr = json_object_get(s, alts[a]);
        if (!json_is_array(arr)) continue;
        unsigned e = a == 2 ? T_ALL : 0;
        size_t i;
        json_t *v;
        json_array_foreach(arr, i, v)
        {
            unsigned b = accepted_types(g, v, depth + 1);
            e = a == 2 ? (e & b) : (e | b);
        }
        bits &= e;
    }
    return bits;
}

/* The allowed values of a schema's required property `key`, if the schema fixes them with const
 * or enum (else NULL). */
static const json_t *fixed_values(const json_t *s, const char *key, json_t **tmp)
{
    const json_t *props = json_object_get(s, "properties");
    const json_t *req = json_object_get(s, "required");
    if (!json_is_object(props) || !json_is_array(req)) return NULL;
    bool required = false;
    size_t i;
    json_t *v;
    json_array_foreach(req, i, v) required |=
        json_is_string(v) && !strcmp(json_string_value(v), key);
    const json_t *p = json_object_get(props, key);
    if (!required || !json_is_object(p)) return NULL;
    const json_t *en = json_object_get(p, "enum");
    if (json_is_array(en)) return en;
    const json_t *c = json_object_get(p, "const");
    if (c) {
        *tmp = json_pack("[O]", c);
        return *tmp;
    }
    return NULL;
}

static bool same_value(const json_t *a, const json_t *b)
{
    if (json_is_number(a) && json_is_number(b)) return json_number_value(a) == json_number_value(b);
    return json_equal((json_t *)a, (json_t *)b);
}

static bool lists_meet(const json_t *a, const json_t *b)
{
    size_t i, j;
    json_t *x, *y;
    json_array_foreach(a, i, x) json_array_foreach(b, j, y) if (same_value(x, y)) return true;
    return false;
}

/* Whether no value can be valid against both a and b (a conservative test: false = maybe). */
static bool disjoint(js_gen *g, const json_t *a, const json_t *b)
{
    for (int r = 0; r < 16; r++) { // follow plain $refs
        const json_t *ra = json_is_object(a) ? json_object_get(a, "$ref") : NULL;
        const json_t *rb = json_is_object(b) ? json_object_get(b, "$ref") : NULL;
        nuri_status keep = g->err;
        if (json_is_string(ra)) {
            const json_t *t = resolve_ref(g, json_string_value(ra));
            g->err = keep;
            if (!t) return false;
            a = t;
        } else if (json_is_string(rb)) {
            const json_t *t = resolve_ref(g, json_string_value(rb));
            g->err = keep;
            if (!t) return false;
            b = t;
        } else {
            break;
        }
    }
    if ((accepted_types(g, a, 0) & accepted_types(g, b, 0)) == 0) return true;
    if (!json_is_object(a) || !json_is_object(b)) return false;
    const json_t *ea = json_object_get(a, "enum"), *eb = json_object_get(b, "enum");
    const json_t *ca = json_object_get(a, "const"), *cb = json_object_get(b, "const");
    json_t *la = ca ? json_pack("[O]", ca) : NULL, *lb = cb ? json_pack("[O]", cb) : NULL;
    const json_t *va = la ? la : json_is_array(ea) ? ea : NULL;
    const json_t *vb = lb ? lb : json_is_array(eb) ? eb : NULL;
    bool dis = false;
    if (va && vb) dis = !lists_meet(va, vb);
    json_decref(la);
    json_decref(lb);
    if (dis) return true;
    // objects told apart by a required property fixed to different values
    if ((accepted_types(g, a, 0) | accepted_types(g, b, 0)) != T_OBJECT) return false;
    const json_t *props = json_object_get(a, "properties");
    if (!json_is_object(props)) return false;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)props, k, v)
    {
        (void)v;
        json_t *ta = NULL, *tb = NULL;
        const json_t *fa = fixed_values(a, k, &ta), *fb = fixed_values(b, k, &tb);
        bool apart = fa && fb && !lists_meet(fa, fb);
        json_decref(ta);
        json_decref(tb);
        if (apart) return true;
    }
    return false;
}

/* ---- schemas ---- */

static const char *gen_schema(js_gen *g, const json_t *s, const char *hint);

/* Reads a non-negative integer keyword (absent: dflt). */
static bool count_key(js_gen *g, const json_t *s, const char *key, long dflt, long *out)
{
    const json_t *v = json_object_get(s, key);
    *out = dflt;
    if (!v) return true;
    double d = json_is_number(v) ? json_number_value(v) : -1;
    if (!(d >= 0) || d != floor(d))
        return js_fail(g, NURI_ERR_FORMAT, key, "'%s' must be a non-negative integer", key);
    if (d > NURI_GRAMMAR_MAX_REPEAT)
        return js_fail(g, NURI_ERR_UNSUPPORTED, key,
                       "'%s' above %u is not supported (the grammar would be too large)", key,
                       NURI_GRAMMAR_MAX_REPEAT);
    *out = (long)d;
    return true;
}

/* "{m,n}" for a repetition of min..max (max < 0: unbounded) */
static void sb_repeat(nuri_sb *b, long min, long max)
{
    if (max < 0)
        nuri_sb_fmt(b, "{%ld,}", min);
    else if (min == max)
        nuri_sb_fmt(b, "{%ld}", min);
    else
        nuri_sb_fmt(b, "{%ld,%ld}", min, max);
}

/* ---- strings ---- */

static bool gen_format(js_gen *g, nuri_sb *b, const char *fmt)
{
    static const char *date_rules =
        "date-part ::= [0-9]{4} \"-\" ( ( \"01\" | \"03\" | \"05\" | \"07\" | \"08\" | \"10\" | "
        "\"12\" ) \"-\" ( \"0\" [1-9] | [12] [0-9] | \"3\" [01] ) | ( \"04\" | \"06\" | \"09\" | "
        "\"11\" ) \"-\" ( \"0\" [1-9] | [12] [0-9] | \"30\" ) | \"02\" \"-\" ( \"0\" [1-9] | \"1\" "
        "[0-9] | \"2\" [0-8] ) )\n";
    static const char *time_rules =
        "time-part ::= ( [01] [0-9] | \"2\" [0-3] ) \":\" [0-5] [0-9] \":\" [0-5] [0-9] ( \".\" "
        "[0-9]{1,6} )? ( \"Z\" | [-+] ( [01] [0-9] | \"2\" [0-3] ) \":\" [0-5] [0-9] )\n";
    if (!strcmp(fmt, "date") || !strcmp(fmt, "date-time")) {
        if (!(g->formats & 1)) nuri_sb_str(&g->out, date_rules);
        g->formats |= 1;
    }
    if (!strcmp(fmt, "time") || !strcmp(fmt, "date-time")) {
        if (!(g->formats & 2)) nuri_sb_str(&g->out, time_rules);
        g->formats |= 2;
    }
    if (!strcmp(fmt, "date"))
        nuri_sb_str(b, "\"\\\"\" date-part \"\\\"\"");
    else if (!strcmp(fmt, "time"))
        nuri_sb_str(b, "\"\\\"\" time-part \"\\\"\"");
    else if (!strcmp(fmt, "date-time"))
        nuri_sb_str(b, "\"\\\"\" date-part \"T\" time-part \"\\\"\"");
    else if (!strcmp(fmt, "uuid")) {
        js_need(g, P_HEX);
        nuri_sb_str(
            b, "\"\\\"\" hex{8} \"-\" hex{4} \"-\" hex{4} \"-\" hex{4} \"-\" hex{12} \"\\\"\"");
    } else
        return js_fail(g, NURI_ERR_UNSUPPORTED, "format",
                       "format '%s' is not supported (date, time, date-time and uuid are)", fmt);
    return true;
}

static bool gen_string(js_gen *g, const json_t *s, nuri_sb *b)
{
    const json_t *fmt = json_object_get(s, "format");
    const json_t *pat = json_object_get(s, "pattern");
    long min, max;
    if (!count_key(g, s, "minLength", 0, &min) || !count_key(g, s, "maxLength", -1, &max))
        return false;
    bool lengths = json_object_get(s, "minLength") || json_object_get(s, "maxLength");
    if (fmt) {
        if (!json_is_string(fmt))
            return js_fail(g, NURI_ERR_FORMAT, "format", "'format' must be a string");
        if (pat || lengths)
            return js_fail(g, NURI_ERR_UNSUPPORTED, pat ? "pattern" : "minLength",
                           "'format' together with '%s' is not supported",
                           pat ? "pattern" : "minLength/maxLength");
        return gen_format(g, b, json_string_value(fmt));
    }
    if (pat) {
        if (!json_is_string(pat))
            return js_fail(g, NURI_ERR_FORMAT, "pattern", "'pattern' must be a string");
        if (lengths)
            return js_fail(g, NURI_ERR_UNSUPPORTED, "pattern",
                           "'pattern' together with minLength/maxLength is not supported");
        return js_pattern(g, json_string_value(pat), json_string_length(pat), b);
    }
    if (max >= 0 && max < min)
        return js_fail(g, NURI_ERR_UNSUPPORTED, "maxLength",
                       "maxLength %ld is below minLength %ld: no string fits", max, min);
    js_need(g, P_CHAR);
    nuri_sb_str(b, "\"\\\"\" char");
    if (min == 0 && max < 0)
        nuri_sb_str(b, "*");
    else
        sb_repeat(b, min, max);
    nuri_sb_str(b, " \"\\\"\"");
    return true;
}

/* ---- integers in a range ---- */

#define INT_LIMIT 9999999999999999LL // 16 digits, as the integer grammar allows

/* Digit strings of equal length n in [x, y] (x <= y, no sign). */
static void digits_range(nuri_sb *b, const char *x, const char *y, size_t n)
{
    if (n == 0) return;
    if (n == 1) {
        if (x[0] == y[0])
            nuri_sb_fmt(b, "\"%c\"", x[0]);
        else
            nuri_sb_fmt(b, "[%c-%c]", x[0], y[0]);
        return;
    }
    if (x[0] == y[0]) {
        nuri_sb_fmt(b, "\"%c\" ", x[0]);
        digits_range(b, x + 1, y + 1, n - 1);
        return;
    }
    bool lo_full = strspn(x + 1, "0") == n - 1, hi_full = strspn(y + 1, "9") == n - 1;
    char start = lo_full ? x[0] : (char)(x[0] + 1), end = hi_full ? y[0] : (char)(y[0] - 1);
    char nines[20], zeros[20];
    memset(nines, '9', n - 1);
    memset(zeros, '0', n - 1);
    nines[n - 1] = zeros[n - 1] = 0;
    nuri_sb_str(b, "( ");
    bool first = true;
    if (!lo_full) {
        nuri_sb_fmt(b, "\"%c\" ( ", x[0]);
        digits_range(b, x + 1, nines, n - 1);
        nuri_sb_str(b, " )");
        first = false;
    }
    if (start <= end) {
        if (!first) nuri_sb_str(b, " | ");
        if (start == end)
            nuri_sb_fmt(b, "\"%c\" [0-9]{%zu}", start, n - 1);
        else
            nuri_sb_fmt(b, "[%c-%c] [0-9]{%zu}", start, end, n - 1);
        first = false;
    }
    if (!hi_full) {
        if (!first) nuri_sb_str(b, " | ");
        nuri_sb_fmt(b, "\"%c\" ( ", y[0]);
        digits_range(b, zeros, y + 1, n - 1);
        nuri_sb_str(b, " )");
    }
    nuri_sb_str(b, " )");
}

/* Non-negative integers in [a, b], written without leading zeros. */
static void uint_range(nuri_sb *out, long long a, long long b, bool *first)
{
    long long p = 1; // 10^(digits-1)
    for (size_t n = 1; n <= 16 && (n == 1 ? 0 : p) <= b; n++, p *= 10) {
        long long lo = a > (n == 1 ? 0 : p) ? a : (n == 1 ? 0 : p);
        long long hi = b < p * 10 - 1 ? b : p * 10 - 1;
        if (lo > hi) continue;
        char x[20], y[20];
        snprintf(x, sizeof x, "%lld", lo);
        snprintf(y, sizeof y, "%lld", hi);
        if (!*first) nuri_sb_str(out, " | ");
        *first = false;
        digits_range(out, x, y, n);
    }
}

static bool bound(js_gen *g, const json_t *s, const char *key, bool upper, long long *v, bool *set)
{
    const json_t *x = json_object_get(s, key);
    if (!x) return true;
    bool excl = strstr(key, "exclusive") != NULL;
    if (json_is_boolean(x)) { // draft 4: exclusiveMinimum: true modifies minimum
        if (!json_is_true(x)) return true;
        const json_t *base = json_object_get(s, upper ? "maximum" : "minimum");
        if (!json_is_number(base))
            return js_fail(g, NURI_ERR_FORMAT, key, "'%s': true without '%s'", key,
                           upper ? "maximum" : "minimum");
        x = base;
    }
    if (!json_is_number(x)) return js_fail(g, NURI_ERR_FORMAT, key, "'%s' must be a number", key);
    double d = json_number_value(x);
    if (!(fabs(d) <= (double)INT_LIMIT))
        return js_fail(g, NURI_ERR_UNSUPPORTED, key, "'%s' beyond 16 digits is not supported", key);
    long long b = upper ? (long long)floor(d) : (long long)ceil(d);
    if (excl && (double)b == d) b += upper ? -1 : 1;
    if (!*set || (upper ? b < *v : b > *v)) *v = b;
    *set = true;
    return true;
}

static bool gen_integer(js_gen *g, const json_t *s, nuri_sb *b)
{
    long long lo = -INT_LIMIT, hi = INT_LIMIT;
    bool has_lo = false, has_hi = false;
    if (!bound(g, s, "minimum", false, &lo, &has_lo) ||
        !bound(g, s, "exclusiveMinimum", false, &lo, &has_lo) ||
        !bound(g, s, "maximum", true, &hi, &has_hi) ||
        !bound(g, s, "exclusiveMaximum", true, &hi, &has_hi))
        return false;
    if (!has_lo && !has_hi) {
        nuri_sb_str(b, js_need(g, P_INTEGER));
        return true;
    }
    if (!has_lo) lo = -INT_LIMIT;
    if (!has_hi) hi = INT_LIMIT;
    if (lo > hi)
        return js_fail(g, NURI_ERR_UNSUPPORTED, "minimum",
                       "no integer is within minimum/maximum (%lld > %lld)", lo, hi);
    bool first = true;
    nuri_sb_str(b, "( ");
    if (lo < 0) {
        long long nlo = hi < 0 ? -hi : 1, nhi = -lo; // magnitudes of the negative part
        nuri_sb_str(b, "\"-\" ( ");
        bool f2 = true;
        uint_range(b, nlo, nhi, &f2);
        nuri_sb_str(b, " )");
        first = false;
    }
    if (hi >= 0) uint_range(b, lo > 0 ? lo : 0, hi, &first);
    nuri_sb_str(b, " )");
    return true;
}

/* ---- objects ---- */

/* The first code point of a UTF-8 string and its length in bytes (names are valid UTF-8). */
static uint32_t first_cp(const unsigned char *s, size_t *len)
{
    size_t n = s[0] < 0x80 ? 1 : s[0] < 0xE0 ? 2 : s[0] < 0xF0 ? 3 : 4;
    uint32_t c = n == 1 ? s[0] : s[0] & (0x3F >> (n - 1));
    for (size_t k = 1; k < n && s[k]; k++) c = (c << 6) | (s[k] & 0x3F);
    *len = n;
    return c;
}

/* Writes the rule for "a key of plain characters (rawchar) that is none of names[0..n)", where
 * the names all share their first `depth` bytes: a trie over the names, one rule per node. Each
 * node may stop (unless a name ends there), take a character no name continues with and then
 * anything, or follow one of the names. Returns the rule's name. */
static const char *gen_other_key(js_gen *g, const char **names, size_t n, size_t depth)
{
    const char *name = js_new_name(g, "other-key");
    uint32_t *next = malloc(sizeof *next * (n ? n : 1)); // distinct next code points
    if (!name || !next) {
        free(next);
        if (name) js_fail(g, NURI_ERR_NOMEM, NULL, "out of memory");
        return NULL;
    }
    js_need(g, P_RAWCHAR);
    bool ends_here = false;
    size_t n_next = 0;
    for (size_t i = 0; i < n; i++) {
        const unsigned char *s = (const unsigned char *)names[i] + depth;
        if (!*s) {
            ends_here = true;
            continue;
        }
        size_t len;
        uint32_t c = first_cp(s, &len);
        bool seen = false;
        for (size_t k = 0; k < n_next && !seen; k++) seen = next[k] == c;
        if (!seen) next[n_next++] = c;
    }
    nuri_sb body = {0};
    nuri_sb_str(&body, "[^\"\\\\\\x00-\\x1F");
    for (size_t k = 0; k < n_next; k++) js_sb_gbnf_char(&body, next[k]);
    nuri_sb_str(&body, "] rawchar*");
    if (!ends_here) nuri_sb_str(&body, " | \"\""); // stopping here: this prefix is no name
    for (size_t k = 0; k < n_next && g->err == NURI_OK; k++) {
        const char **sub = malloc(sizeof *sub * n);
        if (!sub) {
            js_fail(g, NURI_ERR_NOMEM, NULL, "out of memory");
            break;
        }
        size_t m = 0, clen = 1;
        for (size_t i = 0; i < n; i++) {
            const unsigned char *s = (const unsigned char *)names[i] + depth;
            size_t len;
            if (*s && first_cp(s, &len) == next[k]) {
                sub[m++] = names[i];
                clen = len;
            }
        }
        const char *child = gen_other_key(g, sub, m, depth + clen);
        free(sub);
        if (!child) break;
        nuri_sb_str(&body, " | \"");
        js_sb_gbnf_char(&body, next[k]);
        nuri_sb_fmt(&body, "\" %s", child);
    }
    free(next);
    if (g->err == NURI_OK && body.oom) js_fail(g, NURI_ERR_NOMEM, NULL, "out of memory");
    if (g->err == NURI_OK) js_rule(g, name, body.p);
    free(body.p);
    return g->err == NURI_OK ? name : NULL;
}

/* Whether a name is made of plain characters only (no '"', '\' or control characters): only
 * those can equal a key of the additional-members rule. */
static bool plain_name(const char *s)
{
    for (; *s; s++)
        if (*s == '"' || *s == '\\' || (unsigned char)*s < 0x20) return false;
    return true;
}

typedef struct slot {
    const char *kv; // rule of the member
    bool required;
} slot;

static bool gen_object(js_gen *g, const json_t *s, nuri_sb *b)
{
    const json_t *props = json_object_get(s, "properties");
    const json_t *req = json_object_get(s, "required");
    const json_t *addl = json_object_get(s, "additionalProperties");
    if (props && !json_is_object(props))
        return js_fail(g, NURI_ERR_FORMAT, "properties", "'properties' must be an object");
    if (req && !json_is_array(req))
        return js_fail(g, NURI_ERR_FORMAT, "required", "'required' must be a list of names");
    size_t i;
    json_t *v;
    json_array_foreach(req, i, v) if (!json_is_string(v)) return js_fail(
        g, NURI_ERR_FORMAT, "required", "'required' must be a list of names");
    size_t n_props = props ? json_object_size(props) : 0, n_req = req ? json_array_size(req) : 0;
    slot *slots = calloc(n_props + n_req + 1, sizeof *slots);
    const char **names = calloc(n_props + n_req + 1, sizeof *names);
    if (!slots || !names) {
        free(slots);
        free(names);
        return js_fail(g, NURI_ERR_NOMEM, NULL, "out of memory");
    }
    size_t n = 0;
    bool ok = true;
    js_need(g, P_WS);
    // declared properties, then required names not declared
    const char *key;
    json_t *ps;
    for (int pass = 0; pass < 2 && ok; pass++) {
        size_t count = pass == 0 ? n_props : n_req;
        void *it = pass == 0 && props ? json_object_iter((json_t *)props) : NULL;
        for (size_t k = 0; k < count && ok; k++) {
            if (pass == 0) {
                key = json_object_iter_key(it);
                ps = json_object_iter_value(it);
                if (json_object_iter_key_len(it) != strlen(key)) {
                    ok = js_fail(g, NURI_ERR_UNSUPPORTED, "properties",
                                 "a property name with a NUL character");
                    break;
                }
                it = json_object_iter_next((json_t *)props, it);
            } else {
                key = json_string_value(json_array_get(req, k));
                ps = NULL;
                if (props && json_object_get(props, key)) continue;
                bool dup = false;
                for (size_t q = 0; q < n; q++) dup |= !strcmp(names[q], key);
                if (dup) continue;
            }
            bool required = false;
            json_array_foreach(req, i, v) required |= !strcmp(json_string_value(v), key);
            const char *val;
            if (ps) {
                size_t m1 = path_push(g, "properties", -1);
                path_push(g, key, -1);
                val = gen_schema(g, ps, key);
                path_pop(g, m1);
            } else {
                val = js_need(g, P_VALUE);
            }
            const char *kv = val ? js_new_name(g, key) : NULL;
            if (!kv) {
                ok = false;
                break;
            }
            nuri_sb body = {0};
            json_t *ks = json_string(key);
            char *kt = ks ? json_dumps(ks, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
            json_decref(ks);
            if (!kt) {
                free(body.p);
                ok = js_fail(g, NURI_ERR_NOMEM, NULL, "out of memory");
                break;
            }
            nuri_gbnf_literal(&body, kt, strlen(kt));
            free(kt);
            nuri_sb_fmt(&body, " ws \":\" ws %s ws", val);
            js_rule(g, kv, body.p ? body.p : "");
            free(body.p);
            slots[n].kv = kv;
            slots[n].required = required;
            names[n++] = key;
        }
    }
    // more members: additionalProperties true or a schema
    const char *extra = NULL;
    if (ok && addl && !json_is_false(addl)) {
        const char *val;
        if (json_is_true(addl)) {
            val = js_need(g, P_VALUE);
        } else {
            size_t m1 = path_push(g, "additionalProperties", -1);
            val = gen_schema(g, addl, "additional");
            path_pop(g, m1);
        }
        const char **plain = malloc(sizeof *plain * (n ? n : 1));
        size_t n_plain = 0;
        for (size_t q = 0; plain && q < n; q++)
            if (plain_name(names[q])) plain[n_plain++] = names[q];
        if (!plain) js_fail(g, NURI_ERR_NOMEM, NULL, "out of memory");
        const char *k = val && plain ? gen_other_key(g, plain, n_plain, 0) : NULL;
        free(plain);
        extra = k ? js_new_name(g, "additional-kv") : NULL;
        if (extra) {
            nuri_sb body = {0};
            nuri_sb_fmt(&body, "\"\\\"\" %s \"\\\"\" ws \":\" ws %s ws", k, val);
            js_rule(g, extra, body.p);
            free(body.p);
        }
        ok = extra != NULL;
    }
    // the chain: F_i = members from slot i on, nothing written yet; R_i = the same after a member
    const char **F = calloc(n + 1, sizeof *F), **R = calloc(n + 1, sizeof *R);
    if (ok && (!F || !R)) ok = js_fail(g, NURI_ERR_NOMEM, NULL, "out of memory");
    for (size_t k = 0; ok && k <= n; k++) {
        F[k] = js_new_name(g, "members");
        R[k] = F[k] ? js_new_name(g, "more-members") : NULL;
        ok = R[k] != NULL;
    }
    for (size_t k = 0; ok && k <= n; k++) {
        nuri_sb fb = {0}, rb = {0};
        if (k == n) {
            if (extra) {
                nuri_sb_fmt(&fb, "( %s ( \",\" ws %s )* )?", extra, extra);
                nuri_sb_fmt(&rb, "( \",\" ws %s )*", extra);
            } else {
                nuri_sb_str(&fb, "\"\"");
                nuri_sb_str(&rb, "\"\"");
            }
        } else if (slots[k].required) {
            nuri_sb_fmt(&fb, "%s %s", slots[k].kv, R[k + 1]);
            nuri_sb_fmt(&rb, "\",\" ws %s %s", slots[k].kv, R[k + 1]);
        } else {
            nuri_sb_fmt(&fb, "%s %s | %s", slots[k].kv, R[k + 1], F[k + 1]);
            nuri_sb_fmt(&rb, "\",\" ws %s %s | %s", slots[k].kv, R[k + 1], R[k + 1]);
        }
        if (fb.oom || rb.oom)
            ok = js_fail(g, NURI_ERR_NOMEM, NULL, "out of memory");
        else {
            js_rule(g, F[k], fb.p);
            js_rule(g, R[k], rb.p);
        }
        free(fb.p);
        free(rb.p);
    }
    if (ok) nuri_sb_fmt(b, "\"{\" ws %s \"}\"", F[0]);
    free(F);
    free(R);
    free(slots);
    free(names);
    return ok;
}

/* ---- arrays ---- */

static bool gen_array(js_gen *g, const json_t *s, nuri_sb *b)
{
    const json_t *items = json_object_get(s, "items");
    const json_t *prefix = json_object_get(s, "prefixItems");
    long min, max;
    if (!count_key(g, s, "minItems", 0, &min) || !count_key(g, s, "maxItems", -1, &max))
        return false;
    if (max >= 0 && max < min)
        return js_fail(g, NURI_ERR_UNSUPPORTED, "maxItems",
                       "maxItems %ld is below minItems %ld: no array fits", max, min);
    if (prefix && !json_is_array(prefix))
        return js_fail(g, NURI_ERR_FORMAT, "prefixItems", "'prefixItems' must be a list");
    if (items && json_is_array(items))
        return js_fail(g, NURI_ERR_UNSUPPORTED, "items",
                       "'items' as a list (draft 4 tuples) is not supported; use prefixItems");
    js_need(g, P_WS);
    size_t k = prefix ? json_array_size(prefix) : 0;
    const char *item = NULL;
    if (items && !json_is_false(items)) {
        size_t m1 = path_push(g, "items", -1);
        item = gen_schema(g, items, "item");
        path_pop(g, m1);
        if (!item) return false;
    } else if (!items && !prefix) {
        item = js_need(g, P_VALUE);
    }
    if (!item && (max < 0 || max > (long)k)) max = (long)k; // nothing past the prefix
    if (max >= 0 && (long)k > max) k = (size_t)max;         // (items past maxItems never come)
    if (k > NURI_GRAMMAR_MAX_REPEAT)
        return js_fail(g, NURI_ERR_UNSUPPORTED, "prefixItems", "more than %u prefixItems",
                       NURI_GRAMMAR_MAX_REPEAT);
    if (min > (long)k && !item)
        return js_fail(g, NURI_ERR_UNSUPPORTED, "minItems",
                       "minItems %ld needs more items than prefixItems allows", min);
    const char **pos = calloc(k + 1, sizeof *pos);
    if (!pos) return js_fail(g, NURI_ERR_NOMEM, NULL, "out of memory");
    for (size_t i = 0; i < k; i++) {
        size_t m1 = path_push(g, "prefixItems", -1);
        path_push(g, NULL, (long)i);
        pos[i] = gen_schema(g, json_array_get(prefix, i), "prefix-item");
        path_pop(g, m1);
        if (!pos[i]) {
            free(pos);
            return false;
        }
    }
    // tail after the prefix: items number k.. (as "," ws item ws), counted from the prefix's end
    nuri_sb tail = {0};
    long tmin = min > (long)k ? min - (long)k : 0, tmax = max < 0 ? -1 : max - (long)k;
    if (item && tmax != 0) {
        nuri_sb_fmt(&tail, "( \",\" ws %s ws )", item);
        sb_repeat(&tail, tmin, tmax);
    }
    nuri_sb_str(b, "\"[\" ws ");
    if (k > 0) {
        // positions 0..k-1, each optional from index `min` on: nest the optional part
        size_t opened = 0;
        for (size_t i = 0; i < k; i++) {
            bool optional = (long)i >= min;
            if (optional) {
                nuri_sb_str(b, "( ");
                opened++;
            }
            nuri_sb_fmt(b, "%s%s ws ", i ? "\",\" ws " : "", pos[i]);
        }
        if (tail.p) nuri_sb_fmt(b, "%s ", tail.p);
        for (size_t i = 0; i < opened; i++) nuri_sb_str(b, ")? ");
    } else if (item && max != 0) {
        // first item, then the rest (one fewer); optional when min is 0
        nuri_sb rest = {0};
        nuri_sb_fmt(&rest, "( \",\" ws %s ws )", item);
        sb_repeat(&rest, min > 0 ? min - 1 : 0, max < 0 ? -1 : max - 1);
        nuri_sb_fmt(b, "%s%s ws %s%s ", min == 0 ? "( " : "", item, rest.p ? rest.p : "",
                    min == 0 ? " )?" : "");
        free(rest.p);
    }
    nuri_sb_str(b, "\"]\"");
    free(tail.p);
    free(pos);
    return true;
}

/* ---- one schema ---- */

static const char *emit_named(js_gen *g, const char *name, nuri_sb *body)
{
    if (body->oom || g->err != NURI_OK) {
        free(body->p);
        if (g->err == NURI_OK) js_fail(g, NURI_ERR_NOMEM, NULL, "out of memory");
        return NULL;
    }
    js_rule(g, name, body->p ? body->p : "\"\"");
    free(body->p);
    return name;
}

static const char *gen_ref(js_gen *g, const char *ref)
{
    for (size_t i = 0; i < g->n_refs; i++)
        if (!strcmp(g->refs[i].ref, ref)) return g->refs[i].name;
    const json_t *target = resolve_ref(g, ref);
    if (!target) return NULL;
    const char *hint = strrchr(ref, '/');
    if (!strcmp(ref, "#") && !g->root_name) {
        js_fail(g, NURI_ERR_UNSUPPORTED, "$ref",
                "\"$ref\": \"#\" (the whole schema) cannot be used inside this part of it");
        return NULL;
    }
    const char *name = strcmp(ref, "#") ? js_new_name(g, hint ? hint + 1 : "ref") : g->root_name;
    if (!name) return NULL;
    if (g->n_refs == g->cap_refs) {
        size_t cap = g->cap_refs ? 2 * g->cap_refs : 8;
        js_ref *r = realloc(g->refs, sizeof *r * cap);
        if (!r) {
            js_fail(g, NURI_ERR_NOMEM, NULL, "out of memory");
            return NULL;
        }
        g->refs = r;
        g->cap_refs = cap;
    }
    char *copy = strdup(ref);
    if (!copy) {
        js_fail(g, NURI_ERR_NOMEM, NULL, "out of memory");
        return NULL;
    }
    g->refs[g->n_refs].ref = copy;
    g->refs[g->n_refs].name = name;
    g->n_refs++;
    if (!strcmp(ref, "#")) return g->root_name; // the root's rule is being written already
    // the target's own path, for messages
    char keep[JS_MAX_PATH];
    size_t keep_len = g->path_len;
    memcpy(keep, g->path, keep_len + 1);
    snprintf(g->path, sizeof g->path, "%s", ref + 2);
    for (char *p = g->path; *p; p++)
        if (*p == '/') *p = '.';
    g->path_len = strlen(g->path);
    const char *body = gen_schema(g, target, hint ? hint + 1 : "ref");
    memcpy(g->path, keep, keep_len + 1);
    g->path_len = keep_len;
    if (!body) return NULL;
    nuri_sb b = {0};
    nuri_sb_str(&b, body);
    return emit_named(g, name, &b);
}

/* The rule for schema s (named after hint), or NULL with the error set. */
static const char *gen_schema_named(js_gen *g, const json_t *s, const char *name)
{
    if (json_is_true(s)) {
        nuri_sb b = {0};
        nuri_sb_str(&b, js_need(g, P_VALUE));
        return emit_named(g, name, &b);
    }
    if (json_is_false(s)) {
        js_fail(g, NURI_ERR_UNSUPPORTED, NULL, "the schema 'false' lets no value through");
        return NULL;
    }
    if (!json_is_object(s)) {
        js_fail(g, NURI_ERR_FORMAT, NULL, "a schema must be an object or a boolean");
        return NULL;
    }
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)s, k, v)
    {
        (void)v;
        if (!is_annotation(k) &&
            !in_list(k, supported_keys, sizeof supported_keys / sizeof *supported_keys)) {
            js_fail(g, NURI_ERR_UNSUPPORTED, k, "keyword '%s' is not supported", k);
            return NULL;
        }
    }
    nuri_sb b = {0};
    const json_t *ref = json_object_get(s, "$ref");
    if (ref) {
        static const char *const only[] = {"$ref"};
        const char *o = other_key(s, only, 1);
        if (!json_is_string(ref)) {
            js_fail(g, NURI_ERR_FORMAT, "$ref", "'$ref' must be a string");
        } else if (o) {
            js_fail(g, NURI_ERR_UNSUPPORTED, o, "'%s' next to '$ref' is not supported", o);
        } else {
            const char *r = gen_ref(g, json_string_value(ref));
            if (r) nuri_sb_str(&b, r);
        }
        return emit_named(g, name, &b);
    }
    const json_t *all = json_object_get(s, "allOf");
    if (all) {
        static const char *const only[] = {"allOf"};
        const char *o = other_key(s, only, 1);
        if (!json_is_array(all) || json_array_size(all) != 1) {
            js_fail(g, NURI_ERR_UNSUPPORTED, "allOf",
                    "'allOf' is supported with exactly one schema");
        } else if (o) {
            js_fail(g, NURI_ERR_UNSUPPORTED, o, "'%s' next to 'allOf' is not supported", o);
        } else {
            size_t m1 = path_push(g, "allOf", -1);
            path_push(g, NULL, 0);
            const char *r = gen_schema(g, json_array_get(all, 0), name);
            path_pop(g, m1);
            if (r) nuri_sb_str(&b, r);
        }
        return emit_named(g, name, &b);
    }
    const char *which = json_object_get(s, "anyOf") ? "anyOf" : "oneOf";
    const json_t *alts = json_object_get(s, which);
    if (alts) {
        static const char *const only[] = {"anyOf", "oneOf"};
        const char *o = other_key(s, only, 2);
        if (!json_is_array(alts) || json_array_size(alts) == 0) {
            js_fail(g, NURI_ERR_FORMAT, which, "'%s' must be a non-empty list of schemas", which);
        } else if (json_object_get(s, "anyOf") && json_object_get(s, "oneOf")) {
            js_fail(g, NURI_ERR_UNSUPPORTED, "oneOf", "'anyOf' and 'oneOf' together");
        } else if (o) {
            js_fail(g, NURI_ERR_UNSUPPORTED, o, "'%s' next to '%s' is not supported", o, which);
        } else {
            size_t n = json_array_size(alts);
            if (which[0] == 'o')
                for (size_t i = 0; i < n && g->err == NURI_OK; i++)
                    for (size_t j = i + 1; j < n && g->err == NURI_OK; j++)
                        if (!disjoint(g, json_array_get(alts, i), json_array_get(alts, j)))
                            js_fail(g, NURI_ERR_UNSUPPORTED, "oneOf",
                                    "oneOf branches %zu and %zu may match the same value, which "
                                    "oneOf forbids and a grammar cannot rule out; use anyOf",
                                    i, j);
            for (size_t i = 0; i < n && g->err == NURI_OK; i++) {
                size_t m1 = path_push(g, which, -1);
                path_push(g, NULL, (long)i);
                const char *r = gen_schema(g, json_array_get(alts, i), name);
                path_pop(g, m1);
                if (r) nuri_sb_fmt(&b, "%s%s", i ? " | " : "", r);
            }
        }
        return emit_named(g, name, &b);
    }
    unsigned types = T_ALL;
    if (!schema_types(g, s, &types)) return emit_named(g, name, &b);
    const json_t *en = json_object_get(s, "enum"), *cn = json_object_get(s, "const");
    if (en || cn) {
        static const char *const only[] = {"enum", "const", "type"};
        const char *o = other_key(s, only, 3);
        if (o) {
            js_fail(g, NURI_ERR_UNSUPPORTED, o, "'%s' next to '%s' is not supported", o,
                    en ? "enum" : "const");
            return emit_named(g, name, &b);
        }
        if (en && (!json_is_array(en) || json_array_size(en) == 0)) {
            js_fail(g, NURI_ERR_FORMAT, "enum", "'enum' must be a non-empty list");
            return emit_named(g, name, &b);
        }
        size_t n_kept = 0, i;
        json_t *e;
        json_array_foreach(en, i, e)
        {
            if (!(value_bits(e) & types)) continue;
            if (cn && !same_value(cn, e)) continue;
            if (n_kept++) nuri_sb_str(&b, " | ");
            sb_json_literal(g, &b, e);
        }
        if (!en && cn && (value_bits(cn) & types)) {
            n_kept++;
            sb_json_literal(g, &b, cn);
        }
        if (n_kept == 0)
            js_fail(g, NURI_ERR_UNSUPPORTED, en ? "enum" : "const",
                    "no value of '%s' is allowed by the rest of the schema", en ? "enum" : "const");
        return emit_named(g, name, &b);
    }
    if (!json_object_get(s, "type")) { // infer from the keywords (stricter: json_schema.h)
        static const struct {
            const char *key;
            unsigned bits;
        } hints[] = {
            {"properties", T_OBJECT},
            {"required", T_OBJECT},
            {"additionalProperties", T_OBJECT},
            {"items", T_ARRAY},
            {"prefixItems", T_ARRAY},
            {"minItems", T_ARRAY},
            {"maxItems", T_ARRAY},
            {"minLength", T_STRING},
            {"maxLength", T_STRING},
            {"pattern", T_STRING},
            {"format", T_STRING},
            {"minimum", T_INT | T_FRAC},
            {"maximum", T_INT | T_FRAC},
            {"exclusiveMinimum", T_INT | T_FRAC},
            {"exclusiveMaximum", T_INT | T_FRAC},
        };
        unsigned inferred = 0;
        for (size_t i = 0; i < sizeof hints / sizeof *hints; i++)
            if (json_object_get(s, hints[i].key)) inferred |= hints[i].bits;
        if (inferred) types = inferred;
    }
    if (types == T_ALL) {
        nuri_sb_str(&b, js_need(g, P_VALUE));
        return emit_named(g, name, &b);
    }
    bool first = true;
#define ALT()                                                                                      \
    do {                                                                                           \
        if (!first) nuri_sb_str(&b, " | ");                                                        \
        first = false;                                                                             \
    } while (0)
    if (types & T_OBJECT) {
        ALT();
        if (!gen_object(g, s, &b)) return emit_named(g, name, &b);
    }
    if (types & T_ARRAY) {
        ALT();
        if (!gen_array(g, s, &b)) return emit_named(g, name, &b);
    }
    if (types & T_STRING) {
        ALT();
        if (!gen_string(g, s, &b)) return emit_named(g, name, &b);
    }
    if (types & T_FRAC) { // "number": integers are numbers too
        static const char *const bounds[] = {"minimum", "maximum", "exclusiveMinimum",
                                             "exclusiveMaximum"};
        for (int i = 0; i < 4; i++)
            if (json_object_get(s, bounds[i])) {
                js_fail(g, NURI_ERR_UNSUPPORTED, bounds[i],
                        "'%s' is supported for integers only, not for numbers", bounds[i]);
                return emit_named(g, name, &b);
            }
        ALT();
        nuri_sb_str(&b, js_need(g, P_NUMBER));
    } else if (types & T_INT) {
        ALT();
        if (!gen_integer(g, s, &b)) return emit_named(g, name, &b);
    }
    if (types & T_BOOL) {
        ALT();
        nuri_sb_str(&b, js_need(g, P_BOOLEAN));
    }
    if (types & T_NULL) {
        ALT();
        nuri_sb_str(&b, js_need(g, P_NULL));
    }
#undef ALT
    return emit_named(g, name, &b);
}

static const char *gen_schema(js_gen *g, const json_t *s, const char *hint)
{
    if (g->err != NURI_OK) return NULL;
    if (g->depth >= NURI_JSON_SCHEMA_MAX_DEPTH) {
        js_fail(g, NURI_ERR_LIMIT, NULL, "schemas nested deeper than %d",
                NURI_JSON_SCHEMA_MAX_DEPTH);
        return NULL;
    }
    const char *name = js_new_name(g, hint);
    if (!name) return NULL;
    g->depth++;
    const char *r = gen_schema_named(g, s, name);
    g->depth--;
    return r;
}

/* ---- API ---- */

static void gen_free(js_gen *g)
{
    for (size_t i = 0; i < g->n_names; i++) free(g->names[i]);
    free(g->names);
    for (size_t i = 0; i < g->n_refs; i++) free(g->refs[i].ref);
    free(g->refs);
}

/* Whether name can be the schema's rule: letters, digits and '-', not a shared rule's name and not
 * ending in "-<digits>" (the generated names' form). */
static bool good_rule_name(const char *name)
{
    static const char *const shared[] = {
        "ws",      "hex",  "rawchar", "char",   "string", "int",   "number",    "integer",
        "boolean", "null", "value",   "object", "member", "array", "date-part", "time-part"};
    size_t n = strlen(name);
    if (n == 0 || n > 64) return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-'))
            return false;
    }
    size_t d = n;
    while (d > 0 && name[d - 1] >= '0' && name[d - 1] <= '9') d--;
    if (d < n && d > 0 && name[d - 1] == '-') return false;
    for (size_t i = 0; i < sizeof shared / sizeof *shared; i++)
        if (!strcmp(name, shared[i])) return false;
    return true;
}

nuri_status nuri_json_schema_to_gbnf_rule(const json_t *schema, const char *rule, char **gbnf,
                                          size_t *len, char *err_path, size_t err_path_cap)
{
    nuri_json_schema_rule one = {.root = schema, .rule = rule};
    return nuri_json_schemas_to_gbnf(&one, 1, gbnf, len, NULL, err_path, err_path_cap);
}

nuri_status nuri_json_schemas_to_gbnf(const nuri_json_schema_rule *rules, size_t n, char **gbnf,
                                      size_t *len, size_t *err_index, char *err_path,
                                      size_t err_path_cap)
{
    *gbnf = NULL;
    *len = 0;
    if (err_path && err_path_cap) err_path[0] = 0;
    if (err_index) *err_index = 0;
    for (size_t i = 0; i < n; i++) {
        if (err_index) *err_index = i;
        if (!rules[i].root) return nuri_error(NURI_ERR_INVALID_ARG, "json schema: no schema");
        if (!rules[i].rule || !good_rule_name(rules[i].rule))
            return nuri_error(NURI_ERR_INVALID_ARG,
                              "json schema: '%s' cannot name a schema's rule (letters, digits and "
                              "'-', not a shared rule's name, not ending in -<digits>)",
                              rules[i].rule ? rules[i].rule : "(null)");
    }
    js_gen g = {.err_path = err_path, .err_path_cap = err_path_cap};
    for (size_t i = 0; i < n && g.err == NURI_OK; i++) {
        if (err_index) *err_index = i;
        const json_t *s = rules[i].schema ? rules[i].schema : rules[i].root;
        // $refs resolve in this schema's document: forget the previous one's
        for (size_t k = 0; k < g.n_refs; k++) free(g.refs[k].ref);
        g.n_refs = 0;
        g.root = rules[i].root;
        g.root_name = s == rules[i].root ? rules[i].rule : NULL;
        g.path_len = 0;
        g.path[0] = 0;
        const char *top = gen_schema(&g, s, "schema");
        if (top) nuri_sb_fmt(&g.out, "%s ::= %s\n", rules[i].rule, top);
    }
    if (g.err == NURI_OK && g.out.oom) js_fail(&g, NURI_ERR_NOMEM, NULL, "out of memory");
    if (g.err == NURI_OK && g.out.n > NURI_GRAMMAR_MAX_TEXT)
        js_fail(&g, NURI_ERR_LIMIT, NULL, "the grammar would be %zu bytes, above the limit of %u",
                g.out.n, NURI_GRAMMAR_MAX_TEXT);
    gen_free(&g);
    if (g.err != NURI_OK) {
        free(g.out.p);
        return g.err;
    }
    *gbnf = g.out.p;
    *len = g.out.n;
    return NURI_OK;
}

nuri_status nuri_json_schema_to_gbnf(const json_t *schema, char **gbnf, size_t *len, char *err_path,
                                     size_t err_path_cap)
{
    return nuri_json_schema_to_gbnf_rule(schema, "root", gbnf, len, err_path, err_path_cap);
}

nuri_status nuri_json_schema_grammar(const json_t *schema, nuri_grammar **out, char *err_path,
                                     size_t err_path_cap)
{
    *out = NULL;
    char *text;
    size_t len;
    nuri_status st = nuri_json_schema_to_gbnf(schema, &text, &len, err_path, err_path_cap);
    if (st != NURI_OK) return st;
    st = nuri_grammar_parse(text, len, out);
    free(text);
    if (st == NURI_ERR_FORMAT) // the generator writes valid GBNF: this is left recursion via $ref
        return nuri_error(NURI_ERR_UNSUPPORTED,
                          "json schema: the schema refers to itself before any character can be "
                          "written, which no grammar can generate (%s)",
                          nuri_last_error());
    return st;
}

nuri_status nuri_json_schema_grammar_text(const char *json, size_t len, nuri_grammar **out,
                                          char *err_path, size_t err_path_cap)
{
    *out = NULL;
    if (err_path && err_path_cap) err_path[0] = 0;
    json_error_t jerr;
    json_t *schema = json_loadb(json, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
    if (!schema)
        return nuri_error(NURI_ERR_FORMAT, "json schema: line %d, column %d: %s", jerr.line,
                          jerr.column, jerr.text);
    nuri_status st = nuri_json_schema_grammar(schema, out, err_path, err_path_cap);
    json_decref(schema);
    return st;
}

nuri_status nuri_json_object_grammar(nuri_grammar **out)
{
    json_t *schema = json_pack("{s:s, s:b}", "type", "object", "additionalProperties", 1);
    if (!schema) return nuri_error(NURI_ERR_NOMEM, "json schema: out of memory");
    nuri_status st = nuri_json_schema_grammar(schema, out, NULL, 0);
    json_decref(schema);
    return st;
}
