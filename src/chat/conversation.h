/*
 * conversation.h: a chat conversation (a list of role / content messages) and how it becomes the
 * token ids a model reads.
 *
 *   nuri_conv         the messages; JSON save / load with validation; dropping the oldest turns.
 *   nuri_chat_format  the model's chat template (tokenizer.chat_template, or ChatML when the model
 *                     has none, or a template the caller gives), the bos / eos token texts from the
 *                     vocabulary, and the vocabulary to tokenize the rendered prompt with.
 *   nuri_chat_prompt  messages -> prompt text -> token ids, where what the messages say is text
 *                     even when it looks like the template's special tokens (prompt safety).
 *   nuri_chat_build   the same, fitted to a budget (dropping the oldest turns, never the system
 *                     message, when they do not).
 *   nuri_chat_reuse_prefix
 *                     how much of what a KV cache already holds the new prompt can keep, so that
 *                     each turn decodes only its new suffix.
 *
 * Library code: nothing here prints, runs the model or touches a KV cache; the caller (nuri chat,
 * nuri run --chat, a server) does that with the numbers these functions return.
 *
 * Strings: message roles and contents are valid UTF-8 without NUL bytes (checked on the way in:
 * nuri_conv_add and nuri_conv_load refuse anything else), so that every conversation can be saved.
 */
#ifndef NURI_CHAT_CONVERSATION_H
#define NURI_CHAT_CONVERSATION_H

#include "gguf/gguf.h"
#include "nuri.h"
#include "tokenizer/tokenizer.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NURI_CONV_MAX_MESSAGES 100000        // messages in one conversation (and in a saved file)
#define NURI_CONV_MAX_FILE (64u << 20)       // bytes of a saved conversation file
#define NURI_CONV_FORMAT "nuri-conversation" // the "format" field of a saved file
#define NURI_CONV_VERSION 1

/* ---- messages ---- */

typedef struct nuri_chat_message {
    char *role;    // "system", "user", "assistant" or "tool"; owned
    char *content; // UTF-8, NUL-terminated; owned
} nuri_chat_message;

typedef struct nuri_conv {
    nuri_chat_message *msgs; // (n) in order; a "system" message can only be msgs[0]
    size_t n, cap;
} nuri_conv;

void nuri_conv_init(nuri_conv *c); // empty; nothing to free until the first add
void nuri_conv_free(nuri_conv *c); // frees the messages; c is empty (and reusable) afterwards

/* Appends a copy of content[0..len). Fails with NURI_ERR_INVALID_ARG for an unknown role, a
 * "system" message anywhere but first, content that is not valid UTF-8 or holds a NUL byte;
 * NURI_ERR_LIMIT past NURI_CONV_MAX_MESSAGES. c is unchanged on failure. */
nuri_status nuri_conv_add(nuri_conv *c, const char *role, const char *content, size_t len);

/* Removes the last message (nothing when empty). */
void nuri_conv_pop(nuri_conv *c);

/* Removes every message but a leading system message. */
void nuri_conv_reset(nuri_conv *c);

/* Removes the oldest turn after the system message: the first non-system message and every
 * following message up to (not including) the next "user" message. The last user message and
 * what follows it are never removed. Returns the number of messages removed (0: nothing can go). */
size_t nuri_conv_drop_oldest_turn(nuri_conv *c);

/* ---- save / load ----
 *
 * A saved conversation is a JSON object:
 *   {"format": "nuri-conversation", "version": 1,
 *    "messages": [{"role": "system", "content": "..."}, {"role": "user", "content": "..."}, ...]}
 * Loading checks all of it (the format and version, every message's role and content as
 * nuri_conv_add does, no other keys in a message) and names what is wrong: the file, and for a
 * bad message its index ("messages[3].role: ..."). */

/* The messages as a JSON array of {"role", "content"} objects (what a template's `messages` is).
 * New reference (json_decref it), or NULL when out of memory. */
json_t *nuri_conv_to_json(const nuri_conv *c);

/* Replaces *c with the messages of a JSON array as above; on failure *c is unchanged. `where`
 * prefixes messages ("messages"). */
nuri_status nuri_conv_from_json(nuri_conv *c, const json_t *messages, const char *where);

/* Writes the conversation to path (through a temporary file renamed over it, so an existing file
 * is never left half-written). NURI_ERR_IO naming the path on failure. */
nuri_status nuri_conv_save(const nuri_conv *c, const char *path);

/* Reads a saved conversation; on success it replaces *c, on failure *c is unchanged.
 * NURI_ERR_IO (cannot read), NURI_ERR_FORMAT (not JSON, or not a conversation: the message names
 * the field), NURI_ERR_LIMIT (too large). */
nuri_status nuri_conv_load(nuri_conv *c, const char *path);

/* ---- prompt format ---- */

typedef struct nuri_chat_format nuri_chat_format;

/* Sets up the prompt format for a model. The template is, in order of preference: tpl_src (when
 * not NULL: e.g. from --chat-template FILE), the file's tokenizer.chat_template (f may be NULL),
 * or ChatML (then nuri_chat_format_is_fallback() says so, and "<|im_end|>" / "<|im_start|>" become
 * stop strings, since a vocabulary without those tokens cannot end a turn with them). bos_token /
 * eos_token are the texts of the vocabulary's BOS / EOS tokens (undefined in the template when the
 * vocabulary has none). vocab is borrowed until nuri_chat_format_free. Template syntax errors are
 * NURI_ERR_FORMAT / NURI_ERR_UNSUPPORTED with line and column. Caller frees *out. */
nuri_status nuri_chat_format_new(const gguf_file *f, const nuri_vocab *vocab, const char *tpl_src,
                                 size_t tpl_len, nuri_chat_format **out);
void nuri_chat_format_free(nuri_chat_format *fmt); // NULL is fine

/* How the template's model writes tool calls and reasoning (nuri_chat_syntax_detect on its source),
 * and whether the template writes its reasoning tag at all. Borrowed until the format is freed. */
const struct nuri_chat_syntax *nuri_chat_format_syntax(const nuri_chat_format *fmt);
bool nuri_chat_format_shows_reasoning(const nuri_chat_format *fmt);

/* Reads a template file for nuri_chat_format_new's tpl_src (e.g. --chat-template FILE). *src is
 * NUL-terminated, *len bytes; caller frees with free(). NURI_ERR_IO naming the path, or
 * NURI_ERR_LIMIT past NURI_TEMPLATE_MAX_SOURCE bytes. */
nuri_status nuri_chat_template_read(const char *path, char **src, size_t *len);

/* True when the model had no chat template and none was given, so ChatML is used. */
bool nuri_chat_format_is_fallback(const nuri_chat_format *fmt);

/* Text that ends an answer besides the vocabulary's end-of-generation tokens; *n may be 0. Borrowed
 * until nuri_chat_format_free. With the ChatML fallback: "<|im_end|>", "<|im_start|>". Otherwise
 * the end-of-turn markers of the families whose GGUF files need not flag them as end of generation,
 * those the template itself writes: "[|endofturn|]" (EXAONE), "<|endofturn|>" and "<|stop|>"
 * (HyperCLOVA X SEED). */
const char *const *nuri_chat_format_stops(const nuri_chat_format *fmt, size_t *n);

/* Whether generating token id ends the answer: one of the vocabulary's end-of-generation tokens
 * (nuri_vocab_is_eog: EOS, EOT, <|im_end|>, <|eot_id|>, ...) or a stop text above that is a single
 * token of the vocabulary (e.g. EXAONE's [|endofturn|] in a file whose EOS is another token). */
bool nuri_chat_format_ends_turn(const nuri_chat_format *fmt, int32_t id);

/* Renders the messages (with add_generation_prompt as given). *out is NUL-terminated, *out_len
 * bytes, caller frees with free(). A template's raise_exception() is NURI_ERR_INVALID_ARG with its
 * message. */
nuri_status nuri_chat_render(const nuri_chat_format *fmt, const nuri_conv *c, bool add_gen,
                             char **out, size_t *out_len);

/* nuri_chat_render that also returns which bytes of the text came from the messages (*data,
 * caller frees with nuri_text_spans_free; see nuri_template_render_spans): the contents; not the
 * template's text, bos / eos, nor the roles (each one of the known four). */
nuri_status nuri_chat_render_spans(const nuri_chat_format *fmt, const nuri_conv *c, bool add_gen,
                                   char **out, size_t *out_len, nuri_text_spans *data);

/* Tokenizes a rendered prompt: special-token text becomes the special token, and BOS is put first
 * when the vocabulary asks for it and the template did not already emit it (never twice). The
 * whole text is trusted: for a prompt with users' text in it, use nuri_chat_tokenize_spans (or
 * nuri_chat_prompt). *ids: caller frees with free(). */
nuri_status nuri_chat_tokenize(const nuri_chat_format *fmt, const char *text, size_t len,
                               int32_t **ids, size_t *n_ids);

/* nuri_chat_tokenize where special-token text inside the data spans stays ordinary text
 * (nuri_tokenize_spans); data NULL: none. */
nuri_status nuri_chat_tokenize_spans(const nuri_chat_format *fmt, const char *text, size_t len,
                                     const nuri_text_spans *data, int32_t **ids, size_t *n_ids);

/* Renders the messages (add_generation_prompt as given) and tokenizes them, a message's
 * "<|im_end|>" as text, not as the control token: nuri_chat_render_spans, then
 * nuri_chat_tokenize_spans. *ids: caller frees with free(). */
nuri_status nuri_chat_prompt(const nuri_chat_format *fmt, const nuri_conv *c, bool add_gen,
                             int32_t **ids, size_t *n_ids);

/* nuri_chat_prompt (add_generation_prompt on) for c. While the prompt is longer than max_tokens,
 * drops the oldest turn (nuri_conv_drop_oldest_turn: the system message and the last user turn
 * stay) and tries again; *n_dropped counts the messages removed from c. When even that does not
 * fit: NURI_ERR_LIMIT saying how many tokens the prompt needs and how many there are (c keeps the
 * messages it had left). On success *ids (caller frees) holds *n_ids <= max_tokens ids. */
nuri_status nuri_chat_build(const nuri_chat_format *fmt, nuri_conv *c, size_t max_tokens,
                            int32_t **ids, size_t *n_ids, size_t *n_dropped);

/* KV cache reuse: a cache holds `cached` (n_cached ids at positions 0..); a new prompt is
 * prompt[0..n_prompt). Returns how many leading positions to keep: the length of the common
 * prefix, but less than n_prompt (at least the last prompt token is decoded again, since its
 * logits are what the next token is sampled from). The caller truncates the cache to that length
 * and decodes prompt[kept..n_prompt). */
size_t nuri_chat_reuse_prefix(const int32_t *cached, size_t n_cached, const int32_t *prompt,
                              size_t n_prompt);

/* Whether s[0..len) is valid UTF-8 (no overlongs, surrogates or code points past U+10FFFF). */
bool nuri_utf8_valid(const char *s, size_t len);

#endif
