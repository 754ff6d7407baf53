/*
 * json_schema_internal.h: the generator state shared by json_schema.c (schemas) and
 * json_schema_regex.c (the `pattern` regex subset). Not part of the API.
 */
#ifndef NURI_GRAMMAR_JSON_SCHEMA_INTERNAL_H
#define NURI_GRAMMAR_JSON_SCHEMA_INTERNAL_H

#include "base/strbuf.h"
#include "grammar/json_schema.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JS_MAX_PATH 512

typedef struct js_ref {
    char *ref;        // "#/$defs/x"
    const char *name; // its rule
} js_ref;

typedef struct js_gen {
    const json_t *root;
    const char *root_name; // the rule the whole schema becomes ("root", or the caller's)
    nuri_sb out;           // the rules written so far
    unsigned prims;        // shared rules written (P_* in json_schema.c)
    unsigned formats;      // format helper rules written
    char **names;          // every generated rule name (owned)
    size_t n_names, cap_names;
    js_ref *refs; // $ref targets with a rule
    size_t n_refs, cap_refs;
    int depth;              // schemas being generated inside each other
    char path[JS_MAX_PATH]; // where in the schema we are ("properties.a.items")
    size_t path_len;
    nuri_status err; // the first error
    char *err_path;
    size_t err_path_cap;
} js_gen;

void js_sb_gbnf_char(nuri_sb *b, uint32_t c); // one code point, escaped for a literal or class

/* Records the first error, at the current path plus key (may be NULL). Returns false. */
bool js_fail(js_gen *g, nuri_status st, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

const char *js_new_name(js_gen *g, const char *hint);
void js_rule(js_gen *g, const char *name, const char *body);
const char *js_need(js_gen *g, unsigned prims);
#define JS_P_CHAR (1u << 2) // the JSON string character rule "char" (json_schema.c's P_CHAR)

/* Appends to b a GBNF expression for a JSON string (quotes included) whose decoded content
 * matches the regex pattern[0..len) as Python's re.search would. */
bool js_pattern(js_gen *g, const char *pattern, size_t len, nuri_sb *b);

#endif
