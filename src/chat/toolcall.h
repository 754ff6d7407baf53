/*
 * toolcall.h: tool calling and reasoning, the library half (issue 18).
 *
 * Each model family writes tool calls and its reasoning in its own text format, which its chat
 * template shows. This module
 *   - tells the format from the template's source (nuri_chat_syntax_detect),
 *   - splits what the model generated into content, reasoning_content and tool calls, whole or
 *     incrementally as the text streams in (nuri_reply_parser), in OpenAI's streaming order,
 *   - prepares a request's messages for the template the way vLLM does (tool-call arguments as
 *     objects, nuri_toolcall_messages), and
 *   - says what a call looks like in each format (nuri_toolcall_shape), so that a grammar can force
 *     "prefix + arguments JSON + suffix" for tool_choice "required" or a named function.
 *
 * It does not run the model, render templates, tokenize or build grammars. Untrusted input: the
 * generated text (any bytes) and the request's messages / tools. Malformed tool calls end as plain
 * content or as an error message in the reply (nuri_reply.error), never as a failure of the call;
 * the functions fail only when out of memory.
 *
 * Formats (what the model prints; the template writes the same in the history):
 *   hermes        <tool_call>\n{"name": N, "arguments": {...}}\n</tool_call>     Qwen2.5, Qwen3,
 * QwQ exaone4       <tool_call>{"name": N, "arguments": {...}}</tool_call>          EXAONE 4.0
 *   qwen-xml <tool_call>\n<function=N>\n<parameter=K>\nV\n</parameter>\n</function>\n</tool_call>
 *                                                                  Qwen3.5, Qwen3-Coder
 *   arg-key       <tool_call>N\n<arg_key>K</arg_key>\n<arg_value>V</arg_value>\n</tool_call>
 *                                                                  HyperCLOVA X SEED (and GLM-4.5)
 *   llama3        [<|python_tag|>]{"name": N, "parameters": {...}}                Llama 3.1 - 3.3
 *   mistral       [TOOL_CALLS][{"name": N, "arguments": {...}}, ...]              Mistral Nemo
 *   mistral-args  [TOOL_CALLS]N[ARGS]{...}  (also N[CALL_ID]ID[ARGS]{...})       Mistral Small 3.2
 *   deepseek-r1
 * <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>N\n```json\n{...}\n```
 *                 <｜tool▁call▁end｜><｜tool▁calls▁end｜>                         DeepSeek R1
 * distills generic       {"name": N, "arguments": {...}} as the answer       templates that show no
 * format
 *   harmony       <|channel|>commentary to=functions.N <|constrain|>json<|message|>{...}<|call|>
 *                                                                  gpt-oss (OpenAI's harmony)
 * In the XML-like formats (qwen-xml, arg-key) values are text: a value becomes a JSON string
 * when the tool's schema says the parameter is a string or when it is not valid JSON, and stays
 * JSON (a number, true, an object) otherwise, as vLLM and llama.cpp convert them. Reasoning is
 * <think>...</think> (Qwen3, QwQ, DeepSeek R1 distills, HyperCLOVA X, EXAONE 4.0, SmolLM3) or
 * <thought>...</thought> (EXAONE Deep).
 *
 * The parser sees text, so control tokens must be rendered as text ([TOOL_CALLS], <|python_tag|>
 * and DeepSeek's markers are control tokens: detokenize with NURI_DETOK_SPECIAL).
 */
#ifndef NURI_CHAT_TOOLCALL_H
#define NURI_CHAT_TOOLCALL_H

#include "nuri.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* DeepSeek R1's markers (written with U+FF5C FULLWIDTH VERTICAL LINE and U+2581 LOWER ONE EIGHTH
 * BLOCK; single control tokens of its vocabulary). */
#define NURI_DEEPSEEK_CALLS_BEGIN "<｜tool▁calls▁begin｜>"
#define NURI_DEEPSEEK_CALLS_END "<｜tool▁calls▁end｜>"
#define NURI_DEEPSEEK_CALL_BEGIN "<｜tool▁call▁begin｜>"
#define NURI_DEEPSEEK_CALL_END "<｜tool▁call▁end｜>"
#define NURI_DEEPSEEK_SEP "<｜tool▁sep｜>"

/* harmony's reasoning block as a forced call's grammar allows it before the call */
#define NURI_HARMONY_ANALYSIS "<|channel|>analysis<|message|>"
#define NURI_HARMONY_NEXT "<|end|><|start|>assistant"

#define NURI_TOOLCALL_MAX_CALLS 1024 // tool calls in one reply; more are an error
#define NURI_TOOLCALL_MAX_NAME 256   // bytes of a function or parameter name

/* ---- formats ---- */

typedef enum nuri_toolcall_format {
    NURI_TOOLCALL_NONE = 0, // no tool calls are parsed (a request without tools): only reasoning
    NURI_TOOLCALL_GENERIC,
    NURI_TOOLCALL_HERMES,
    NURI_TOOLCALL_EXAONE4,
    NURI_TOOLCALL_QWEN_XML,
    NURI_TOOLCALL_ARG_KEY,
    NURI_TOOLCALL_LLAMA3,
    NURI_TOOLCALL_MISTRAL,
    NURI_TOOLCALL_MISTRAL_ARGS,
    NURI_TOOLCALL_DEEPSEEK_R1,
    NURI_TOOLCALL_HARMONY,
    NURI_TOOLCALL_N_FORMATS
} nuri_toolcall_format;

/* The format's name as in the list above ("hermes"); static storage. Out of range: "none". */
const char *nuri_toolcall_format_name(nuri_toolcall_format f);

/* The format of a name (as nuri_toolcall_format_name gives it, or "none"); -1 when unknown. */
int nuri_toolcall_format_from_name(const char *name);

/* What a model's replies look like: its tool-call format and its reasoning tags. */
typedef struct nuri_chat_syntax {
    nuri_toolcall_format format;
    const char *think_open;  // "<think>" or "<thought>"; NULL: reasoning is not split out
    const char *think_close; // "</think>" or "</thought>" (static storage)
    // OpenAI's harmony (gpt-oss): a reply is messages, each a header (<|channel|>analysis,
    // final or commentary, maybe " to=functions.NAME") then <|message|>, the text, and <|end|>
    // (<|call|> / <|return|> end the turn). Analysis is reasoning, final and commentary without
    // a recipient are content, a message to functions.NAME is a call (when the format is
    // NURI_TOOLCALL_HARMONY; else its text is content). Set whatever the format (a request
    // without tools still gets its channels split). think_open / think_close are then
    // "<|channel|>analysis<|message|>" / "<|end|><|start|>assistant": the reasoning block a
    // forced call's grammar lets come first.
    bool harmony;
} nuri_chat_syntax;

/* Tells the syntax from a chat template's source (tokenizer.chat_template): the markers it writes
 * for tool calls in the history or shows in its tool instructions, and its reasoning tags.
 * A template that shows no tool-call format gets NURI_TOOLCALL_GENERIC; reasoning tags default to
 * <think>. Any bytes (src may be NULL when len is 0). */
nuri_chat_syntax nuri_chat_syntax_detect(const char *src, size_t len);

/* Whether a rendered prompt leaves a reasoning block open, so that the model's reply starts inside
 * the reasoning: the prompt ends with think_open and whitespace (Qwen3.5, DeepSeek R1 distills,
 * EXAONE 4.0 and HyperCLOVA X with thinking on). Pass the result as
 * nuri_reply_opts.in_reasoning. */
bool nuri_chat_syntax_prompt_opens_reasoning(const nuri_chat_syntax *s, const char *prompt,
                                             size_t len);

/* ---- parsing a reply ---- */

typedef struct nuri_toolcall {
    char *id;        // "call_" + 24 hex digits (mistral formats: 9 letters and digits, as their
                     // templates require); NUL-terminated
    char *name;      // NUL-terminated
    char *arguments; // a JSON object as text (the model's own bytes for JSON formats); NUL-term.
    size_t arguments_len;
} nuri_toolcall;

/* A parsed reply. Every string is NUL-terminated UTF-8 as the model wrote it (content and
 * reasoning lose the whitespace next to markers and at their ends). */
typedef struct nuri_reply {
    char *content; // "" when there is none
    size_t content_len;
    char *reasoning; // reasoning_content; "" when there is none
    size_t reasoning_len;
    nuri_toolcall *calls; // (n_calls) in order; call i has index i in the stream
    size_t n_calls;
    // NULL, or why the reply is not well formed: a tool call that started (its name was seen) but
    // then broke (unterminated, arguments that are not a JSON object, garbage inside it). The
    // call stays in calls with the arguments seen; the text after the break is content. A server
    // may answer such a reply as plain text (the raw output) instead of the broken call.
    char *error;
} nuri_reply;

void nuri_reply_free(nuri_reply *r); // frees the strings and calls; r is zeroed (NULL is fine)

typedef struct nuri_reply_opts {
    nuri_chat_syntax syntax; // its strings are borrowed until the parser is freed
    bool in_reasoning; // the prompt opened the reasoning block (nuri_chat_syntax_prompt_opens_...)
    const json_t *tools; // the request's tools ([{"type": "function", "function": {...}}]), or
                         // NULL: parameter types for the XML-like formats. Borrowed until the
                         // parser is freed.
    uint64_t id_seed;    // tool call ids are derived from it and the call's index
} nuri_reply_opts;

/* Streaming: what a piece of text added to the reply, in OpenAI's order. */
typedef enum nuri_reply_delta_kind {
    NURI_DELTA_CONTENT,   // text: more content
    NURI_DELTA_REASONING, // text: more reasoning_content
    NURI_DELTA_CALL,      // a new tool call: index, id, and its name in text
    NURI_DELTA_ARGS,      // text: more of tool call `index`'s arguments
} nuri_reply_delta_kind;

typedef struct nuri_reply_delta {
    nuri_reply_delta_kind kind;
    int index;        // CALL / ARGS: the call (0, 1, ...)
    const char *id;   // CALL: the call's id; else NULL
    const char *text; // the piece (CALL: the name); not NUL-terminated
    size_t len;
} nuri_reply_delta;

typedef struct nuri_reply_parser nuri_reply_parser;

/* A parser for one reply. opts is copied (tools stays borrowed). Caller frees with
 * nuri_reply_parser_free. NURI_ERR_NOMEM only. */
nuri_status nuri_reply_parser_new(const nuri_reply_opts *opts, nuri_reply_parser **out);
void nuri_reply_parser_free(nuri_reply_parser *p); // NULL is fine

/* Feeds the next piece of generated text (any split: mid-marker, mid-character). *deltas gets what
 * can be said now, *n of them, consecutive pieces of one kind merged; text that may still be the
 * start of a marker (or whitespace next to one) is held back until it is known. Deltas are cut only
 * where the pieces were cut or next to (ASCII) markers, so pieces of whole UTF-8 characters (what
 * nuri_detok gives) make deltas of whole characters. Borrowed until the next call on p. Fails only
 * when out of memory (then p can only be freed). */
nuri_status nuri_reply_parser_feed(nuri_reply_parser *p, const char *text, size_t len,
                                   const nuri_reply_delta **deltas, size_t *n);

/* The end of the reply: releases what was held (a marker that never completed is text) and closes
 * an open tool call (or records why it is broken). Feeding after it is an error. */
nuri_status nuri_reply_parser_finish(nuri_reply_parser *p, const nuri_reply_delta **deltas,
                                     size_t *n);

/* The reply so far: everything the deltas said until now. Borrowed until the next call on p. */
const nuri_reply *nuri_reply_parser_reply(const nuri_reply_parser *p);

/* The whole reply at once: the same as feeding text in one piece and finishing (and the same as
 * feeding it in any pieces). *out is the caller's: free with nuri_reply_free. */
nuri_status nuri_reply_parse(const nuri_reply_opts *opts, const char *text, size_t len,
                             nuri_reply *out);

/* The id of call `index` for a seed: "call_" + 24 hex digits, or for the mistral formats 9 letters
 * and digits. buf holds at least 32 bytes; returns buf. */
char *nuri_toolcall_id(nuri_toolcall_format f, uint64_t seed, uint32_t index, char *buf);

/* ---- prompts ---- */

struct nuri_template;

/* What a chat template can render, probed once per template as llama.cpp probes them. */
typedef struct nuri_toolcall_caps {
    // tool-call arguments go to the template as objects (vLLM always does; most templates write
    // `arguments | tojson` or iterate `arguments | items`); false only for templates that render
    // the arguments string but fail on an object (an old DeepSeek R1 Llama template concatenates
    // it)
    bool object_arguments;
    // an assistant message's null (or missing) content goes as "": the template fails on null
    // (Qwen3, QwQ test `'</think>' in content`); templates that test `content is none` keep null
    bool string_content;
} nuri_toolcall_caps;

/* Probes template t with a small fixed conversation (one tool call, its result), rendered up to
 * four times: arguments as an object or a string, content null or "". */
nuri_toolcall_caps nuri_toolcall_template_caps(const struct nuri_template *t);

/* A request's messages as chat templates expect them, prepared as vLLM and llama.cpp prepare
 * them (the template then renders what transformers renders from the prepared messages):
 *   - with caps->object_arguments, an assistant message's tool_calls[i].function.arguments given
 *     as a string (OpenAI's format) that holds a JSON object becomes that object; a string that
 *     is not a JSON object stays as it is;
 *   - with caps->string_content, an assistant message whose content is null or missing gets "";
 *   - for the mistral formats, tool call ids (tool_calls[i].id, tool messages' tool_call_id)
 *     longer than 9 characters keep their last 9, as vLLM does: Mistral's templates accept 9.
 * caps NULL: objects, null content kept. Anything else is shared unchanged (the caller's messages
 * are not modified). Returns a new array (json_decref it), or NULL when out of memory or messages
 * is not an array. */
json_t *nuri_toolcall_messages(const json_t *messages, nuri_toolcall_format f,
                               const nuri_toolcall_caps *caps);

/* ---- the shape of a call, for grammars ----
 *
 * A reply of tool calls in format f is
 *     begin  call  (separator call)*  end
 * and one call of function NAME is
 *     prefix  ARGUMENTS  suffix
 * where ARGUMENTS is, when json_arguments, the arguments as one JSON object; otherwise (qwen-xml,
 * arg-key) each parameter as
 *     param_open_a  KEY  param_open_b  VALUE  param_close
 * with VALUE the raw text for string parameters and JSON for others. A grammar for tool_choice
 * "required" (or a named function) is that with the arguments' JSON-schema grammar in the middle;
 * where the prompt opened a reasoning block, the reply reaches the first call only after
 * syntax.think_close. */
typedef struct nuri_toolcall_shape {
    bool json_arguments;
    bool parallel; // the format can carry several calls in one reply (llama3: one only)
    char *begin, *prefix, *suffix, *separator, *end;
    char *param_open_a, *param_open_b, *param_close; // "" when json_arguments
} nuri_toolcall_shape;

/* Fills *out for function `name` (NUL-terminated; JSON-escaped where the format writes it inside
 * JSON). Strings are the caller's: free with nuri_toolcall_shape_free. NURI_ERR_INVALID_ARG for
 * NURI_TOOLCALL_NONE; NURI_ERR_NOMEM. */
nuri_status nuri_toolcall_shape_get(nuri_toolcall_format f, const char *name,
                                    nuri_toolcall_shape *out);
void nuri_toolcall_shape_free(nuri_toolcall_shape *s);

/* ---- the grammar for a forced call ---- */

typedef struct nuri_toolcall_grammar_opts {
    nuri_toolcall_format format;    // not NURI_TOOLCALL_NONE
    const nuri_chat_syntax *syntax; // reasoning tags (may be NULL: no reasoning)
    const json_t *tools;            // the request's tools, validated (names unique)
    const char *only;               // NULL, or the one function that may be called
    bool parallel;                  // up to 8 calls when the format can carry several, else one
    bool in_reasoning;              // the prompt opened the reasoning block: the reply is reasoning
                                    // text (no '<'), think_close, then the calls
    bool reasoning_allowed;         // else: an optional reasoning block before the calls (for
                                    // templates that show reasoning)
    const json_t *answer_schema;    // NULL, or a schema: the reply may instead be JSON valid
                                    // against it (tool_choice "auto" with response_format)
} nuri_toolcall_grammar_opts;

/* GBNF for a reply that is tool calls in the format's shape (nuri_toolcall_shape), each with
 * arguments valid against its tool's parameters schema (none: {}), as the reply parser reads them
 * back. *gbnf (free()) holds *len bytes and a NUL; its start rule is root. A schema nuri cannot
 * enforce is NURI_ERR_UNSUPPORTED / NURI_ERR_FORMAT with err_param naming where, as a request
 * parameter: "tools[1].function.parameters.properties.tags.uniqueItems" or
 * "response_format.json_schema.schema...". In the XML-like formats a string parameter's value is
 * raw text without '<' (with its minLength / maxLength, or one of its enum / const strings;
 * pattern and format are NURI_ERR_UNSUPPORTED there), parameters are written in the schema's order,
 * required ones always. */
nuri_status nuri_toolcall_grammar(const nuri_toolcall_grammar_opts *o, char **gbnf, size_t *len,
                                  char *err_param, size_t err_param_cap);

#endif
