/*
 * json_schema.h: JSON Schema -> GBNF grammar, for structured output (OpenAI's response_format
 * json_schema, tool-call arguments) and for "any JSON object" (response_format json_object).
 *
 * The rule: every text the grammar lets through is JSON that validates against the schema. A
 * keyword nuri cannot enforce is an error that names it, never a grammar looser than the schema;
 * the grammar may be *stricter* than the schema where that keeps generation finite or simple, and
 * each such choice is listed here:
 *
 *   - Whitespace: none, one blank, or one line break and up to 16 blanks between tokens; nothing
 *     before the value or after it (generation ends at its last character).
 *   - Objects: properties in the order of the schema's `properties`, then required names that are
 *     not in `properties` (any value), in the order of `required`. Optional properties may be left
 *     out. `additionalProperties` absent means no others (as llama.cpp; the schema itself allows
 *     them); `true` or a schema allows more members after the declared ones, whose keys are plain
 *     characters (no escapes) and never one of the declared names.
 *   - Arrays: with `prefixItems` and no `items`, no items past the prefix.
 *   - Strings: escapes \" \\ \/ \b \f \n \r \t and \uXXXX except surrogates (D800-DFFF);
 *     `minLength`/`maxLength` count characters, as Python and JavaScript do for these strings.
 *   - Numbers: at most 16 digits before and after the point and a 2-digit exponent. Integers: at
 *     most 16 digits; `minimum`/`maximum`/`exclusiveMinimum`/`exclusiveMaximum` are enforced for
 *     "integer" (not for "number": refused).
 *   - `format`: date, time, date-time (RFC 3339, 'T', seconds 00-59, day valid for its month with
 *     29 February left out), uuid. Others are refused.
 *   - `pattern`: a regex subset, matched as Python's re.search would (unanchored unless ^...$):
 *     literals and escapes, classes [..] [^..] \d \w \s \D \W \S (ASCII for \d and \w, so that
 *     their negations stay exact), `.`, groups ( ) (?: ) (?P<name> ), `|`, * + ? {m} {m,} {,n}
 *     {m,n} (lazy or not). Back-references, look-around, \b, flags and inner anchors are refused.
 *   - `oneOf` is taken when its branches cannot match the same value (different types, different
 *     constants, or objects told apart by a required property with a const/enum); otherwise it is
 *     refused (use anyOf).
 *   - `$ref`: local only ("#", "#/$defs/x", any JSON pointer into the schema); recursion is fine,
 *     a schema that refers to itself before any character is refused.
 *
 * Supported: type (one or a list), properties, required,
 * additionalProperties, enum, const, anyOf, oneOf, allOf with one schema, $ref, $defs /
 * definitions, items, prefixItems, minItems, maxItems, minLength, maxLength, pattern, format, and
 * the integer bounds above. Annotations (title, description, default, examples, $schema, $id,
 * $comment, deprecated, readOnly, writeOnly, contentEncoding, contentMediaType, discriminator,
 * and OpenAPI's nullable, which JSON Schema gives no meaning: write "type": [..., "null"]) are
 * ignored. Everything else (uniqueItems, contains, multipleOf, patternProperties, not,
 * if/then/else, minProperties, ...) is NURI_ERR_UNSUPPORTED.
 *
 * Errors: NURI_ERR_UNSUPPORTED (a keyword or value nuri does not enforce) or NURI_ERR_FORMAT (not
 * a schema: a keyword with a value of the wrong kind), with a message naming the keyword, and the
 * path to it in err_path: keywords and property names joined by '.', array indexes as [i], e.g.
 * "properties.tags.uniqueItems" or "anyOf[1].format" ("" for the schema itself). NURI_ERR_LIMIT
 * when the grammar would be too large (see grammar.h).
 */
#ifndef NURI_GRAMMAR_JSON_SCHEMA_H
#define NURI_GRAMMAR_JSON_SCHEMA_H

#include "base/strbuf.h"
#include "grammar/grammar.h"
#include "nuri.h"

#include <jansson.h>
#include <stddef.h>

#define NURI_JSON_SCHEMA_MAX_DEPTH 64 // schemas nested inside each other (refs included)

/* Translates schema to GBNF text (its start rule is `root`). On success *gbnf (caller frees with
 * free()) holds *len bytes plus a NUL. err_path (may be NULL) receives the path of the offending
 * keyword on failure, truncated to err_path_cap bytes with a NUL. */
nuri_status nuri_json_schema_to_gbnf(const json_t *schema, char **gbnf, size_t *len, char *err_path,
                                     size_t err_path_cap);

/* The same, but the schema's rule is named `rule` instead of `root`, and there is no `root`: for
 * a larger grammar around it, e.g. a tool call in the chat template's wrapper:
 *     <this text>  root ::= "<tool_call>\n" tool-call "\n</tool_call>"
 * `rule` is letters, digits and '-', not ending in "-<digits>" and none of the shared rules' names
 * (ws hex rawchar char string int number integer boolean null value object member array
 * date-part time-part), which the caller's own rules must avoid too. One schema per grammar: two
 * translations would reuse the same rule names (put several tools under one anyOf instead). */
nuri_status nuri_json_schema_to_gbnf_rule(const json_t *schema, const char *rule, char **gbnf,
                                          size_t *len, char *err_path, size_t err_path_cap);

/* Several schemas in one grammar, each as its own rule, sharing the common rules: e.g. one rule
 * per tool's parameters, or per parameter of a tool for the XML-like tool-call formats. */
typedef struct nuri_json_schema_rule {
    const json_t *root;   // the schema document: "$ref": "#/..." resolves in it
    const json_t *schema; // the part of root this rule is for, or NULL for root itself (a part
                          // cannot use "$ref": "#", which would need root's own rule)
    const char *rule;     // its name, as nuri_json_schema_to_gbnf_rule requires; all different
} nuri_json_schema_rule;

/* rules[0..n) translated into one GBNF text with no `root` rule (the caller writes it). On failure
 * *err_index is the rule at fault and err_path the path inside its schema. */
nuri_status nuri_json_schemas_to_gbnf(const nuri_json_schema_rule *rules, size_t n, char **gbnf,
                                      size_t *len, size_t *err_index, char *err_path,
                                      size_t err_path_cap);

/* The same, compiled: *out holds one reference (nuri_grammar_free). */
nuri_status nuri_json_schema_grammar(const json_t *schema, nuri_grammar **out, char *err_path,
                                     size_t err_path_cap);

/* The same from the schema's JSON text (a parse error is NURI_ERR_FORMAT with line and column). */
nuri_status nuri_json_schema_grammar_text(const char *json, size_t len, nuri_grammar **out,
                                          char *err_path, size_t err_path_cap);

/* Appends s[0..n) (UTF-8) to b as a GBNF string literal, quotes included: '"', '\\' and control
 * bytes escaped, other bytes as they are; "" for the empty text. For callers writing their own
 * rules around a translated schema (the tool-call grammars). */
void nuri_gbnf_literal(nuri_sb *b, const char *s, size_t n);

/* Any JSON object, for response_format {"type": "json_object"}. *out holds one reference. */
nuri_status nuri_json_object_grammar(nuri_grammar **out);

#endif
