/*
 * template.h: chat templates, the Jinja subset that models ship in tokenizer.chat_template.
 *
 * The engine renders what Python's jinja2 3.1 renders with transformers' settings
 * (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols, a json.dumps-style
 * `tojson`), byte for byte. It is a sandbox: no I/O, no access to anything but the variables given,
 * and explicit limits (below) on work, recursion, memory and output. Anything it does not support
 * is an error that names line and column, never a guess.
 *
 * Variables, as transformers' apply_chat_template passes them: messages, tools (null when absent),
 * documents (null), add_generation_prompt, bos_token / eos_token (leave the key out when there is
 * none: then they are undefined, as in transformers), plus any extra keyword arguments
 * (enable_thinking, ...). JSON null is Python None. Object key order is kept (tojson output).
 */
#ifndef NURI_CHAT_TEMPLATE_H
#define NURI_CHAT_TEMPLATE_H

#include "base/text_spans.h"
#include "nuri.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Limits. Hitting one fails the render (or parse) with NURI_ERR_LIMIT. */
#define NURI_TEMPLATE_MAX_SOURCE (1u << 20)     // bytes of template source
#define NURI_TEMPLATE_MAX_NESTING 128           // nested blocks / brackets while parsing
#define NURI_TEMPLATE_MAX_CALL_DEPTH 64         // nested macro calls
#define NURI_TEMPLATE_MAX_STEPS 2000000         // statements + loop iterations + calls per render
#define NURI_TEMPLATE_MAX_RANGE 100000          // items in one range() (as jinja2's sandbox)
#define NURI_TEMPLATE_MAX_OUTPUT (64u << 20)    // bytes of rendered output (and of any one string)
#define NURI_TEMPLATE_MAX_MEMORY (512ull << 20) // bytes allocated by one render

typedef struct nuri_template nuri_template;

/* Parses a template (UTF-8, not NUL-terminated; len bytes). On success *out is owned by the
 * caller: free with nuri_template_free(). Syntax errors: NURI_ERR_FORMAT, "line L col C: ...";
 * constructs outside the subset: NURI_ERR_UNSUPPORTED, also with line and column. */
nuri_status nuri_template_parse(const char *src, size_t len, nuri_template **out);

void nuri_template_free(nuri_template *t);

/* Renders with the variables of `vars` (a JSON object; see the top of this file). `now` is what
 * strftime_now() formats (NULL: the current local time). On success *out is a NUL-terminated
 * string of *out_len bytes (it may contain NUL bytes if the messages do), owned by the caller:
 * free() it. The template is not modified: one template may be rendered from several threads.
 *
 * Failures: raise_exception(msg) in the template gives NURI_ERR_INVALID_ARG with exactly msg as
 * the message; errors in evaluation (undefined values used, wrong types) NURI_ERR_FORMAT with the
 * line; limits NURI_ERR_LIMIT. */
nuri_status nuri_template_render(const nuri_template *t, const json_t *vars, const struct tm *now,
                                 char **out, size_t *out_len);

/* Per-render limits; a field left 0 takes the default above (values above the defaults are
 * clamped to them). */
typedef struct nuri_template_limits {
    size_t max_output;  // bytes (also the longest string); default NURI_TEMPLATE_MAX_OUTPUT
    uint64_t max_steps; // default NURI_TEMPLATE_MAX_STEPS
    size_t max_memory;  // bytes; default NURI_TEMPLATE_MAX_MEMORY
    int max_call_depth; // default NURI_TEMPLATE_MAX_CALL_DEPTH
} nuri_template_limits;

/* nuri_template_render with explicit limits (NULL: the defaults). */
nuri_status nuri_template_render_limited(const nuri_template *t, const json_t *vars,
                                         const struct tm *now, const nuri_template_limits *limits,
                                         char **out, size_t *out_len);

/* ---- prompt safety: which bytes of the output came from the caller's data ----
 *
 * A prompt is tokenized with special-token parsing so that the template's <|im_start|> becomes
 * that one control token; a user who types "<|im_end|>\n<|im_start|>system" must not get the
 * same. So the render can also say, per byte, where the output came from. Markup: text in the
 * template's source and strings it builds from its own constants, plus the variables the caller
 * declares markup below. Data: every other variable (message contents, names, tool calls, tools,
 * extra keyword arguments), and anything derived from it: slices, trim / strip / split pieces and
 * concatenations keep each byte's provenance; a rewritten character (upper, replace, escape) has
 * the provenance of what it rewrites; tojson, printed lists and dicts, and formatted numbers are
 * data whole if anything in them is. Provenance follows bytes, not control flow: a role chosen by
 * `if message.role == 'user'` is markup, as are the loop's turn markers. */

/* What counts as markup besides the template's own text. */
typedef struct nuri_template_markup {
    // A JSON object of variables, or NULL: the caller's own strings (bos_token, eos_token), bound
    // before the data variables, which replace any of the same name (and are data then).
    const json_t *vars;
    // NULL-terminated, or NULL: messages[i].role is markup when it is exactly one of these (the
    // fixed set the caller checked roles against); any other role is data.
    const char *const *roles;
} nuri_template_markup;

/* The roles of OpenAI's chat API: system, developer, user, assistant, tool (NULL-terminated). */
extern const char *const nuri_template_roles[];

/* nuri_template_render_limited (limits may be NULL) that also returns, in *data, the byte ranges
 * of the output that are data (see above; caller frees with nuri_text_spans_free, also set on
 * failure: empty). `vars` are data; markup (or NULL) says what is not. The text is exactly
 * nuri_template_render's. */
nuri_status nuri_template_render_spans(const nuri_template *t, const json_t *vars,
                                       const nuri_template_markup *markup, const struct tm *now,
                                       const nuri_template_limits *limits, char **out,
                                       size_t *out_len, nuri_text_spans *data);

/* Builds the variables object as transformers' apply_chat_template passes them: messages,
 * tools (null when NULL), documents (null), add_generation_prompt, bos_token / eos_token (left out
 * when NULL), then every key of extra (a JSON object, or NULL), which may override the others.
 * messages / tools / extra are borrowed (their values are shared, not copied). Returns a new
 * reference (json_decref it), or NULL when out of memory or extra is not an object. */
json_t *nuri_template_vars(json_t *messages, json_t *tools, int add_generation_prompt,
                           const char *bos_token, const char *eos_token, json_t *extra);

#endif
