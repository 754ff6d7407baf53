/*
 * prompt.c: chat template rendering and tokenization for the server (see prompt.h).
 *
 * Prompt safety: everything a request carries is data to the template (contents, names, tool
 * calls, and whatever else the messages hold); only the template's own text, bos / eos and the
 * checked roles are markup, and the prompt is tokenized with special tokens parsed in the markup
 * only. serve_prompt_set_unsafe_special turns that off for operators who need the old behaviour.
 */
#include "serve/prompt.h"

#include "base/status.h"
#include "chat/conversation.h"
#include "chat/toolcall.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ChatML, for models that ship no template. */
static const char chatml_src[] =
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

struct serve_prompt {
    const nuri_vocab *vocab; // the model's (borrowed)
    nuri_template *tpl;
    char *bos, *eos;     // token texts for the template, or NULL
    json_t *markup_vars; // {bos_token, eos_token} as far as they exist: the template's markup
    bool unsafe_special; // parse special tokens in the messages' text too (the old behaviour)
    // the same template as `nuri chat` sees it: its family's end-of-turn markers
    nuri_chat_format *fmt;
    int32_t *stop; // end-of-generation ids: what ends a completion
    int32_t n_stop;
    int32_t *chat_stop; // those and what nuri_chat_format_ends_turn adds: what ends a chat answer
    int32_t n_chat_stop;
    // tool calls and reasoning, told from the template's source
    nuri_chat_syntax syntax;
    bool shows_reasoning; // the template writes syntax.think_open somewhere
    nuri_toolcall_caps caps;
    char note[256];
};

static char *token_text_dup(const nuri_vocab *v, int32_t id)
{
    if (id < 0) return NULL;
    size_t len;
    const char *t = nuri_token_piece_ref(v, id, true, &len);
    if (!t) return NULL;
    char *s = malloc(len + 1);
    if (!s) return NULL;
    memcpy(s, t, len);
    s[len] = 0;
    return s;
}

nuri_status serve_prompt_load(const nuri_model *m, const char *template_path, serve_prompt **out)
{
    *out = NULL;
    char *src = NULL; // the --chat-template file, kept for the chat format below
    size_t len = 0;
    serve_prompt *p = calloc(1, sizeof *p);
    if (!p) return nuri_error(NURI_ERR_NOMEM, "out of memory");
    p->vocab = m->vocab; // checked against the model's rows when the model was loaded
    nuri_status st;
    gguf_str gs;
    if (template_path) {
        if ((st = nuri_chat_template_read(template_path, &src, &len)) != NURI_OK) goto fail;
        st = nuri_template_parse(src, len, &p->tpl);
        if (st != NURI_OK) {
            nuri_error_wrap(st, "chat template '%s'", template_path);
            goto fail;
        }
        p->syntax = nuri_chat_syntax_detect(src, len);
        p->shows_reasoning = p->syntax.think_open &&
                             memmem(src, len, p->syntax.think_open, strlen(p->syntax.think_open));
    } else if (gguf_get_str(m->file, "tokenizer.chat_template", &gs) == NURI_OK) {
        if ((st = nuri_template_parse(gs.ptr, gs.len, &p->tpl)) != NURI_OK) {
            nuri_error_wrap(st, "the model's tokenizer.chat_template");
            goto fail;
        }
        p->syntax = nuri_chat_syntax_detect(gs.ptr, gs.len);
        p->shows_reasoning = p->syntax.think_open && memmem(gs.ptr, gs.len, p->syntax.think_open,
                                                            strlen(p->syntax.think_open));
    } else {
        snprintf(p->note, sizeof p->note,
                 "the model has no chat template (tokenizer.chat_template): using ChatML");
        if ((st = nuri_template_parse(chatml_src, strlen(chatml_src), &p->tpl)) != NURI_OK)
            goto fail;
        p->syntax = nuri_chat_syntax_detect(chatml_src, strlen(chatml_src));
    }
    p->caps = nuri_toolcall_template_caps(p->tpl);
    // The same template as nuri chat sees it: which family end-of-turn markers end an answer
    // ([|endofturn|], <|endofturn|>, <|stop|>) even where the file's EOS is another token.
    st = nuri_chat_format_new(m->file, p->vocab, src, len, &p->fmt);
    free(src);
    src = NULL;
    if (st != NURI_OK) goto fail;
    p->bos = token_text_dup(p->vocab, nuri_vocab_bos(p->vocab));
    p->eos = token_text_dup(p->vocab, nuri_vocab_eos(p->vocab));
    if (!(p->markup_vars = json_object()) ||
        (p->bos && json_object_set_new(p->markup_vars, "bos_token", json_string(p->bos))) ||
        (p->eos && json_object_set_new(p->markup_vars, "eos_token", json_string(p->eos)))) {
        st = nuri_error(NURI_ERR_NOMEM, "out of memory");
        goto fail;
    }
    uint32_t nv = nuri_vocab_n_tokens(p->vocab);
    int32_t n = 0, n_chat = 0;
    for (uint32_t id = 0; id < nv; id++) {
        n += nuri_vocab_is_eog(p->vocab, (int32_t)id);
        n_chat += nuri_chat_format_ends_turn(p->fmt, (int32_t)id);
    }
    p->stop = malloc(((size_t)n + 1) * sizeof *p->stop);
    p->chat_stop = malloc(((size_t)n_chat + 1) * sizeof *p->chat_stop);
    if (!p->stop || !p->chat_stop) {
        st = nuri_error(NURI_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (uint32_t id = 0; id < nv; id++) {
        if (nuri_vocab_is_eog(p->vocab, (int32_t)id)) p->stop[p->n_stop++] = (int32_t)id;
        if (nuri_chat_format_ends_turn(p->fmt, (int32_t)id))
            p->chat_stop[p->n_chat_stop++] = (int32_t)id;
    }
    *out = p;
    return NURI_OK;
fail:
    free(src);
    serve_prompt_free(p);
    return st;
}

void serve_prompt_free(serve_prompt *p)
{
    if (!p) return;
    nuri_template_free(p->tpl);
    free(p->bos);
    free(p->eos);
    json_decref(p->markup_vars);
    nuri_chat_format_free(p->fmt);
    free(p->stop);
    free(p->chat_stop);
    free(p);
}

void serve_prompt_set_unsafe_special(serve_prompt *p, bool on)
{
    p->unsafe_special = on;
}

const char *serve_prompt_note(const serve_prompt *p)
{
    return p->note;
}

const nuri_vocab *serve_prompt_vocab(const serve_prompt *p)
{
    return p->vocab;
}

const int32_t *serve_prompt_stop_tokens(const serve_prompt *p, serve_kind kind, int32_t *n)
{
    if (kind == SERVE_CHAT) {
        *n = p->n_chat_stop;
        return p->chat_stop;
    }
    *n = p->n_stop;
    return p->stop;
}

const nuri_chat_syntax *serve_prompt_syntax(const serve_prompt *p)
{
    return &p->syntax;
}

bool serve_prompt_shows_reasoning(const serve_prompt *p)
{
    return p->shows_reasoning;
}

const char *const *serve_prompt_stop_texts(const serve_prompt *p, serve_kind kind, size_t *n)
{
    *n = 0;
    return kind == SERVE_CHAT ? nuri_chat_format_stops(p->fmt, n) : NULL;
}

/* The messages with every content as one string (templates expect strings), other keys kept. */
static json_t *normalize_messages(json_t *messages)
{
    json_t *out = json_array();
    size_t i;
    json_t *msg;
    json_array_foreach(messages, i, msg)
    {
        json_t *copy = json_copy(msg); // shallow: shares values
        json_t *content = json_object_get(msg, "content");
        if (copy && json_is_array(content)) {
            char *text = serve_message_text(msg);
            if (!text || json_object_set_new(copy, "content", json_string(text)) != 0) {
                free(text);
                json_decref(copy);
                json_decref(out);
                return NULL;
            }
            free(text);
        } else if (copy && !content) {
            json_object_set_new(copy, "content", json_null());
        }
        if (!copy || json_array_append_new(out, copy) != 0) {
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

/* Special tokens are parsed outside the data spans (NULL: everywhere). */
static bool tokenize(const serve_prompt *p, const char *text, size_t len,
                     const nuri_text_spans *data, int32_t **ids, int32_t *n_ids, serve_error *e)
{
    unsigned flags = NURI_TOK_PARSE_SPECIAL;
    size_t bl = p->bos ? strlen(p->bos) : 0;
    // the text starts with BOS only if that is the template's (a message's "<s>" is text)
    bool has_bos =
        bl && len >= bl && !memcmp(text, p->bos, bl) && !(data && data->n && data->v[0].off < bl);
    if (!has_bos) flags |= NURI_TOK_ADD_SPECIAL;
    size_t n = 0;
    nuri_status st = nuri_tokenize_spans(p->vocab, text, len, flags, data, ids, &n);
    if (st != NURI_OK)
        return serve_fail(e, st == NURI_ERR_LIMIT ? 400 : 500,
                          st == NURI_ERR_LIMIT ? "invalid_request_error" : "server_error", NULL,
                          NULL, "cannot tokenize the prompt: %s", nuri_last_error());
    if (n > INT32_MAX / 2) {
        free(*ids);
        return serve_fail(e, 400, "invalid_request_error", NULL, "context_length_exceeded",
                          "the prompt is too long (%zu tokens)", n);
    }
    *n_ids = (int32_t)n;
    return true;
}

bool serve_prompt_tokens(const serve_prompt *p, const serve_request *r, int32_t **ids,
                         int32_t *n_ids, serve_prompt_info *info, serve_error *e)
{
    *ids = NULL;
    *n_ids = 0;
    if (info) memset(info, 0, sizeof *info);
    if (r->kind == SERVE_COMPLETION) {
        if (r->prompt_tokens) {
            *ids = malloc((size_t)r->n_prompt_tokens * sizeof **ids);
            if (!*ids) return serve_fail(e, 500, "server_error", NULL, NULL, "out of memory");
            memcpy(*ids, r->prompt_tokens, (size_t)r->n_prompt_tokens * sizeof **ids);
            *n_ids = r->n_prompt_tokens;
            return true;
        }
        // a raw prompt is the client's to format, special tokens and all
        return tokenize(p, r->prompt_text, r->prompt_len, NULL, ids, n_ids, e);
    }
    json_t *plain = normalize_messages(r->messages);
    // tool-call arguments as objects, null contents as "" where the template needs it (probed at
    // load), Mistral's 9-character ids
    json_t *messages = plain ? nuri_toolcall_messages(plain, p->syntax.format, &p->caps) : NULL;
    json_decref(plain);
    // everything from the request goes into vars, which are data (tools and template arguments
    // too); only markup_vars and the checked roles are markup. With tool_choice "none" the tools
    // are not shown to the model.
    json_t *tools = r->tool_choice != SERVE_TOOLS_NONE ? r->tools : NULL;
    json_t *vars = NULL;
    if (messages)
        vars = p->unsafe_special
                   ? nuri_template_vars(messages, tools, 1, p->bos, p->eos, r->template_kwargs)
                   : nuri_template_vars(messages, tools, 1, NULL, NULL, r->template_kwargs);
    json_decref(messages);
    if (!vars) return serve_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    char *text = NULL;
    size_t len = 0;
    nuri_text_spans data = {0};
    nuri_template_limits lim = {.max_output = 16u << 20, .max_memory = 256u << 20};
    nuri_template_markup markup = {.vars = p->markup_vars, .roles = nuri_template_roles};
    nuri_status st =
        p->unsafe_special
            ? nuri_template_render_limited(p->tpl, vars, NULL, &lim, &text, &len)
            : nuri_template_render_spans(p->tpl, vars, &markup, NULL, &lim, &text, &len, &data);
    json_decref(vars);
    if (st != NURI_OK) {
        if (st == NURI_ERR_NOMEM)
            return serve_fail(e, 500, "server_error", NULL, NULL, "out of memory");
        return serve_fail(e, 400, "invalid_request_error", "messages", "invalid_value",
                          "the chat template cannot render these messages: %s", nuri_last_error());
    }
    if (info) {
        info->opens_reasoning = nuri_chat_syntax_prompt_opens_reasoning(&p->syntax, text, len);
        const char *close = p->syntax.think_close;
        size_t end = len, cl = close ? strlen(close) : 0;
        while (end > 0 && (text[end - 1] == '\n' || text[end - 1] == ' ')) end--;
        // (a harmony prompt always ends as its reasoning block would: <|end|><|start|>assistant)
        info->skips_reasoning =
            cl && !p->syntax.harmony && end >= cl && !memcmp(text + end - cl, close, cl);
    }
    bool ok = tokenize(p, text, len, p->unsafe_special ? NULL : &data, ids, n_ids, e);
    nuri_text_spans_free(&data);
    free(text);
    return ok;
}
