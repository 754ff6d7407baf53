/*
 * prompt.h: requests to token ids: the model's vocabulary and chat template, bundled for the
 * server. Loaded once; afterwards immutable, so any connection thread may use it at once.
 *
 * Chat prompts are rendered with the template from --chat-template, else the model file's
 * tokenizer.chat_template, else ChatML (and serve_prompt_note says so), with
 * add_generation_prompt = true, then tokenized with special-token parsing in the template's own
 * markup only: text that came from the request (message contents, names, tool calls) is ordinary
 * text even where it reads "<|im_end|>" (nuri_template_render_spans, nuri_tokenize_spans), so a
 * client cannot forge turns. BOS is added as the vocabulary asks unless the template already
 * wrote it. Raw /v1/completions prompts are the client's own formatting: special tokens parsed.
 */
#ifndef NURI_SERVE_PROMPT_H
#define NURI_SERVE_PROMPT_H

#include "chat/template.h"
#include "chat/toolcall.h"
#include "model/model.h"
#include "serve/openai.h"
#include "tokenizer/tokenizer.h"

typedef struct serve_prompt serve_prompt;

#define SERVE_MAX_FORMAT_STOPS 4 // at most this many texts from serve_prompt_stop_texts

/* template_path may be NULL. The prompt borrows the model's vocabulary (m->vocab): free it with
 * serve_prompt_free before the model. */
nuri_status serve_prompt_load(const nuri_model *m, const char *template_path, serve_prompt **out);
void serve_prompt_free(serve_prompt *p);

/* on: special-token text in the messages becomes special tokens too (the behaviour before prompt
 * safety; for an operator whose clients are trusted and send markup on purpose, e.g. through a
 * --unsafe-special-tokens flag). Default off. Call before the prompt is shared between threads. */
void serve_prompt_set_unsafe_special(serve_prompt *p, bool on);

/* What start-up should tell the operator ("no chat template in the model: using ChatML"), or "". */
const char *serve_prompt_note(const serve_prompt *p);
const nuri_vocab *serve_prompt_vocab(const serve_prompt *p);
/* The sampler's stop tokens for a request of this kind. Completions: the end-of-generation ids
 * (EOS, EOT, <|im_end|>, ...). Chat: those and the end-of-turn markers of the template's family
 * that are single tokens (nuri_chat_format_ends_turn: EXAONE's [|endofturn|], HyperCLOVA X's
 * <|endofturn|> / <|stop|>), as `nuri chat` stops, even when the file's EOS is another token.
 * Borrowed until serve_prompt_free. */
const int32_t *serve_prompt_stop_tokens(const serve_prompt *p, serve_kind kind, int32_t *n);

/* Text that ends a chat answer besides the request's own "stop" strings: the markers above as text
 * (for a vocabulary without them as tokens) and, with the ChatML fallback, "<|im_end|>" /
 * "<|im_start|>" (nuri_chat_format_stops). None (NULL, *n = 0) for completions. Borrowed until
 * serve_prompt_free. */
const char *const *serve_prompt_stop_texts(const serve_prompt *p, serve_kind kind, size_t *n);

/* How the template's model writes tool calls and reasoning (nuri_chat_syntax_detect on its
 * source), and whether the template shows reasoning at all (writes the think_open tag). */
const nuri_chat_syntax *serve_prompt_syntax(const serve_prompt *p);
bool serve_prompt_shows_reasoning(const serve_prompt *p);

/* What the rendered chat prompt says about reasoning. */
typedef struct serve_prompt_info {
    bool opens_reasoning; // it ends inside an open reasoning block: the reply starts inside it
    bool skips_reasoning; // it ends with a closed one (an empty <think></think>: thinking off)
} serve_prompt_info;

/* The request's prompt as token ids (caller frees *ids with free()). Chat: the messages prepared
 * for the template (nuri_toolcall_messages), the request's tools unless tool_choice is "none",
 * and its template_kwargs go to the template as data. info (may be NULL) is filled for chat. A
 * template error or a raise_exception() in the template is the client's fault: false with a 400
 * in e. */
bool serve_prompt_tokens(const serve_prompt *p, const serve_request *r, int32_t **ids,
                         int32_t *n_ids, serve_prompt_info *info, serve_error *e);

#endif
