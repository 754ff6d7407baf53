/*
 * conversation.c: messages, their JSON save / load, and messages -> prompt token ids (see
 * conversation.h). The template engine renders; the tokenizer tokenizes; this file only puts them
 * in order and decides what to drop and what a KV cache can keep.
 */
#include "chat/conversation.h"

#include "chat/toolcall.h"

#include "base/status.h"
#include "chat/template.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ======================================================================== UTF-8 */

bool nuri_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        unsigned c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        unsigned lo = 0x80, hi = 0xBF; // allowed range of the second byte
        if (c >= 0xC2 && c <= 0xDF) {
            n = 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 3;
            if (c == 0xE0)
                lo = 0xA0; // no overlongs
            else if (c == 0xED)
                hi = 0x9F; // no surrogates
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 4;
            if (c == 0xF0)
                lo = 0x90; // no overlongs
            else if (c == 0xF4)
                hi = 0x8F; // <= U+10FFFF
        } else {
            return false;
        }
        if (len - i < n) return false;
        if (p[i + 1] < lo || p[i + 1] > hi) return false;
        for (size_t k = 2; k < n; k++)
            if ((p[i + k] & 0xC0) != 0x80) return false;
        i += n;
    }
    return true;
}

/* ======================================================================== messages */

static const char *const known_roles[] = {"system", "user", "assistant", "tool"};

static bool role_known(const char *role)
{
    for (size_t i = 0; i < sizeof known_roles / sizeof known_roles[0]; i++)
        if (!strcmp(role, known_roles[i])) return true;
    return false;
}

void nuri_conv_init(nuri_conv *c)
{
    memset(c, 0, sizeof *c);
}

void nuri_conv_free(nuri_conv *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free(c->msgs[i].role);
        free(c->msgs[i].content);
    }
    free(c->msgs);
    memset(c, 0, sizeof *c);
}

/* Checks one message as nuri_conv_add would place it at index `at`; the message names `where`. */
static nuri_status check_message(const char *role, const char *content, size_t len, size_t at,
                                 const char *where)
{
    if (!role_known(role))
        return nuri_error(NURI_ERR_INVALID_ARG,
                          "%s: unknown role '%.40s' (expected system, user, assistant or tool)",
                          where, role);
    if (!strcmp(role, "system") && at != 0)
        return nuri_error(
            NURI_ERR_INVALID_ARG,
            "%s: a system message can only be the first message (this is message %zu)", where, at);
    if (memchr(content, 0, len))
        return nuri_error(NURI_ERR_INVALID_ARG, "%s: content holds a NUL byte", where);
    if (!nuri_utf8_valid(content, len))
        return nuri_error(NURI_ERR_INVALID_ARG, "%s: content is not valid UTF-8", where);
    return NURI_OK;
}

static nuri_status conv_push(nuri_conv *c, const char *role, const char *content, size_t len)
{
    if (c->n >= NURI_CONV_MAX_MESSAGES)
        return nuri_error(NURI_ERR_LIMIT, "conversation: more than %d messages",
                          NURI_CONV_MAX_MESSAGES);
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        nuri_chat_message *m = realloc(c->msgs, cap * sizeof *m);
        if (!m) return nuri_error(NURI_ERR_NOMEM, "conversation: out of memory");
        c->msgs = m;
        c->cap = cap;
    }
    char *r = strdup(role), *t = malloc(len + 1);
    if (!r || !t) {
        free(r);
        free(t);
        return nuri_error(NURI_ERR_NOMEM, "conversation: out of memory");
    }
    memcpy(t, content, len);
    t[len] = 0;
    c->msgs[c->n].role = r;
    c->msgs[c->n].content = t;
    c->n++;
    return NURI_OK;
}

nuri_status nuri_conv_add(nuri_conv *c, const char *role, const char *content, size_t len)
{
    nuri_status st = check_message(role, content, len, c->n, "message");
    if (st != NURI_OK) return st;
    return conv_push(c, role, content, len);
}

static void conv_remove(nuri_conv *c, size_t at, size_t count)
{
    for (size_t i = at; i < at + count; i++) {
        free(c->msgs[i].role);
        free(c->msgs[i].content);
    }
    if (c->n > at + count) // (an empty conversation has no array to move within)
        memmove(c->msgs + at, c->msgs + at + count, (c->n - at - count) * sizeof *c->msgs);
    c->n -= count;
}

void nuri_conv_pop(nuri_conv *c)
{
    if (c->n) conv_remove(c, c->n - 1, 1);
}

static size_t conv_first_turn(const nuri_conv *c)
{
    return c->n && !strcmp(c->msgs[0].role, "system") ? 1 : 0;
}

void nuri_conv_reset(nuri_conv *c)
{
    size_t keep = conv_first_turn(c);
    conv_remove(c, keep, c->n - keep);
}

size_t nuri_conv_drop_oldest_turn(nuri_conv *c)
{
    size_t start = conv_first_turn(c);
    // the last user message starts the turn that always stays
    size_t last_user = c->n;
    for (size_t i = c->n; i > start; i--)
        if (!strcmp(c->msgs[i - 1].role, "user")) {
            last_user = i - 1;
            break;
        }
    if (last_user == c->n) return 0; // no user message: no turn to tell apart from the rest
    size_t end = start + 1;
    while (end < c->n && strcmp(c->msgs[end].role, "user")) end++;
    if (start >= c->n || end > last_user) return 0;
    conv_remove(c, start, end - start);
    return end - start;
}

/* ======================================================================== JSON */

json_t *nuri_conv_to_json(const nuri_conv *c)
{
    json_t *arr = json_array();
    if (!arr) return NULL;
    for (size_t i = 0; i < c->n; i++) {
        json_t *m = json_object();
        if (!m || json_array_append_new(arr, m) ||
            json_object_set_new(m, "role", json_string(c->msgs[i].role)) ||
            json_object_set_new(m, "content", json_string(c->msgs[i].content))) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

nuri_status nuri_conv_from_json(nuri_conv *c, const json_t *messages, const char *where)
{
    if (!json_is_array(messages))
        return nuri_error(NURI_ERR_FORMAT, "%s: expected an array of messages", where);
    if (json_array_size(messages) > NURI_CONV_MAX_MESSAGES)
        return nuri_error(NURI_ERR_LIMIT, "%s: %zu messages, more than the limit of %d", where,
                          json_array_size(messages), NURI_CONV_MAX_MESSAGES);
    nuri_conv tmp;
    nuri_conv_init(&tmp);
    nuri_status st = NURI_OK;
    size_t i;
    json_t *m;
    json_array_foreach(messages, i, m)
    {
        char at[64];
        snprintf(at, sizeof at, "%s[%zu]", where, i);
        if (!json_is_object(m)) {
            st = nuri_error(NURI_ERR_FORMAT, "%s: expected an object with role and content", at);
            break;
        }
        const char *key;
        json_t *v;
        json_object_foreach((json_t *)m, key, v)
        {
            if (strcmp(key, "role") && strcmp(key, "content")) {
                st = nuri_error(NURI_ERR_FORMAT, "%s: unexpected key '%.40s'", at, key);
                break;
            }
        }
        if (st != NURI_OK) break;
        json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
        if (!json_is_string(role)) {
            st = nuri_error(NURI_ERR_FORMAT, "%s.role: %s", at,
                            role ? "expected a string" : "missing");
            break;
        }
        if (!json_is_string(content)) {
            st = nuri_error(NURI_ERR_FORMAT, "%s.content: %s", at,
                            content ? "expected a string" : "missing");
            break;
        }
        const char *text = json_string_value(content);
        size_t len = json_string_length(content);
        if ((st = check_message(json_string_value(role), text, len, i, at)) != NURI_OK) {
            st = NURI_ERR_FORMAT;
            break;
        }
        if ((st = conv_push(&tmp, json_string_value(role), text, len)) != NURI_OK) break;
    }
    if (st != NURI_OK) {
        nuri_conv_free(&tmp);
        return st;
    }
    nuri_conv_free(c);
    *c = tmp;
    return NURI_OK;
}

nuri_status nuri_conv_save(const nuri_conv *c, const char *path)
{
    json_t *root = json_object(), *msgs = nuri_conv_to_json(c);
    if (!root || !msgs || json_object_set_new(root, "format", json_string(NURI_CONV_FORMAT)) ||
        json_object_set_new(root, "version", json_integer(NURI_CONV_VERSION)) ||
        json_object_set(root, "messages", msgs)) {
        json_decref(root);
        json_decref(msgs);
        return nuri_error(NURI_ERR_NOMEM, "save %s: out of memory", path);
    }
    json_decref(msgs);
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!text) return nuri_error(NURI_ERR_NOMEM, "save %s: out of memory", path);
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    if (!tmp) {
        free(text);
        return nuri_error(NURI_ERR_NOMEM, "save %s: out of memory", path);
    }
    snprintf(tmp, plen + 16, "%s.tmp%ld", path, (long)getpid() % 100000);
    nuri_status st = NURI_OK;
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        st = nuri_error(NURI_ERR_IO, "save %s: %s", path, strerror(errno));
    } else {
        size_t len = strlen(text);
        bool ok = fwrite(text, 1, len, f) == len && fputc('\n', f) != EOF;
        ok = (fclose(f) == 0) && ok;
        if (!ok) {
            st = nuri_error(NURI_ERR_IO, "save %s: write failed: %s", path, strerror(errno));
            remove(tmp);
        } else if (rename(tmp, path) != 0) {
            st = nuri_error(NURI_ERR_IO, "save %s: %s", path, strerror(errno));
            remove(tmp);
        }
    }
    free(tmp);
    free(text);
    return st;
}

nuri_status nuri_conv_load(nuri_conv *c, const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0) return nuri_error(NURI_ERR_IO, "load %s: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode)) return nuri_error(NURI_ERR_IO, "load %s: not a regular file", path);
    if ((uint64_t)sb.st_size > NURI_CONV_MAX_FILE)
        return nuri_error(NURI_ERR_LIMIT, "load %s: %lld bytes, more than the limit of %u", path,
                          (long long)sb.st_size, NURI_CONV_MAX_FILE);
    json_error_t e;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &e);
    if (!root) {
        if (e.line < 0 && e.position == 0 && access(path, R_OK) != 0)
            return nuri_error(NURI_ERR_IO, "load %s: %s", path, strerror(errno));
        return nuri_error(NURI_ERR_FORMAT, "load %s: not valid JSON: line %d column %d: %s", path,
                          e.line, e.column, e.text);
    }
    nuri_status st = NURI_OK;
    json_t *fmt = json_object_get(root, "format"), *ver = json_object_get(root, "version");
    if (!json_is_object(root)) {
        st = nuri_error(NURI_ERR_FORMAT, "load %s: expected a JSON object with \"format\": \"%s\"",
                        path, NURI_CONV_FORMAT);
    } else if (!json_is_string(fmt) || strcmp(json_string_value(fmt), NURI_CONV_FORMAT)) {
        st = nuri_error(NURI_ERR_FORMAT,
                        "load %s: not a saved conversation (\"format\" is not \"%s\")", path,
                        NURI_CONV_FORMAT);
    } else if (!json_is_integer(ver) || json_integer_value(ver) != NURI_CONV_VERSION) {
        st =
            nuri_error(NURI_ERR_FORMAT, "load %s: \"version\" must be %d", path, NURI_CONV_VERSION);
    } else if (!json_object_get(root, "messages")) {
        st = nuri_error(NURI_ERR_FORMAT, "load %s: missing \"messages\"", path);
    } else {
        st = nuri_conv_from_json(c, json_object_get(root, "messages"), "messages");
        if (st != NURI_OK) nuri_error_wrap(st, "load %s", path);
    }
    json_decref(root);
    return st;
}

/* ======================================================================== prompt format */

/* ChatML: what the model gets when it has no template of its own. */
static const char chatml_src[] =
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}";

static const char *const chatml_stops[] = {"<|im_end|>", "<|im_start|>"};

/* End-of-turn markers that some families' templates write after an answer but whose GGUF files
 * need not flag as end of generation (llama.cpp recognizes neither by its text): when a template
 * uses one, generating it ends the answer, as the token or, in a vocabulary without such a token,
 * as text. */
static const char *const turn_end_markers[] = {
    "[|endofturn|]", // EXAONE 3.x / 4.0: ends every turn ([|user|]...[|endofturn|])
    "<|endofturn|>", // HyperCLOVA X SEED: ends an answer, after its <|im_end|>
    "<|stop|>",      // HyperCLOVA X SEED: ends an answer that calls a tool
};
#define N_MARKERS (sizeof turn_end_markers / sizeof turn_end_markers[0])

struct nuri_chat_format {
    nuri_template *tpl;
    const nuri_vocab *vocab;
    char *bos, *eos; // token texts, or NULL (undefined in the template)
    bool fallback;
    const char *stops[N_MARKERS]; // turn_end_markers the template uses (static strings)
    size_t n_stops;
    int32_t stop_ids[N_MARKERS]; // those of them that are one token of the vocabulary
    size_t n_stop_ids;
    nuri_chat_syntax syntax; // how the template's model writes tool calls and reasoning
    bool shows_reasoning;    // the template writes syntax.think_open
};

/* Whether hay[0..n) contains the NUL-terminated needle. */
static bool contains(const char *hay, size_t n, const char *needle)
{
    size_t m = strlen(needle);
    for (size_t i = 0; m <= n && i <= n - m; i++)
        if (!memcmp(hay + i, needle, m)) return true;
    return false;
}

static char *token_text_dup(const nuri_vocab *v, int32_t id)
{
    if (id < 0) return NULL;
    size_t len;
    const char *p = nuri_token_piece_ref(v, id, true, &len);
    char *s = malloc(len + 1);
    if (!s) return NULL;
    memcpy(s, p, len);
    s[len] = 0;
    return s;
}

nuri_status nuri_chat_format_new(const gguf_file *f, const nuri_vocab *vocab, const char *tpl_src,
                                 size_t tpl_len, nuri_chat_format **out)
{
    *out = NULL;
    nuri_chat_format *fmt = calloc(1, sizeof *fmt);
    if (!fmt) return nuri_error(NURI_ERR_NOMEM, "chat format: out of memory");
    fmt->vocab = vocab;
    const char *what = "the chat template";
    gguf_str s;
    if (!tpl_src && f && gguf_get_str(f, "tokenizer.chat_template", &s) == NURI_OK && s.len) {
        tpl_src = s.ptr;
        tpl_len = (size_t)s.len;
        what = "the model's tokenizer.chat_template";
    }
    if (!tpl_src) {
        tpl_src = chatml_src;
        tpl_len = sizeof chatml_src - 1;
        fmt->fallback = true;
    }
    nuri_status st = nuri_template_parse(tpl_src, tpl_len, &fmt->tpl);
    if (st != NURI_OK) {
        nuri_error_wrap(st, "%s", what);
        nuri_chat_format_free(fmt);
        return st;
    }
    fmt->syntax = nuri_chat_syntax_detect(tpl_src, tpl_len);
    fmt->shows_reasoning =
        fmt->syntax.think_open && contains(tpl_src, tpl_len, fmt->syntax.think_open);
    for (size_t i = 0; !fmt->fallback && i < N_MARKERS; i++) {
        const char *m = turn_end_markers[i];
        if (!contains(tpl_src, tpl_len, m)) continue;
        fmt->stops[fmt->n_stops++] = m;
        int32_t id = nuri_vocab_find(vocab, m, strlen(m));
        if (id >= 0) fmt->stop_ids[fmt->n_stop_ids++] = id;
    }
    int32_t bos = nuri_vocab_bos(vocab), eos = nuri_vocab_eos(vocab);
    if ((bos >= 0 && !(fmt->bos = token_text_dup(vocab, bos))) ||
        (eos >= 0 && !(fmt->eos = token_text_dup(vocab, eos)))) {
        nuri_chat_format_free(fmt);
        return nuri_error(NURI_ERR_NOMEM, "chat format: out of memory");
    }
    *out = fmt;
    return NURI_OK;
}

const nuri_chat_syntax *nuri_chat_format_syntax(const nuri_chat_format *fmt)
{
    return &fmt->syntax;
}

bool nuri_chat_format_shows_reasoning(const nuri_chat_format *fmt)
{
    return fmt->shows_reasoning;
}

nuri_status nuri_chat_template_read(const char *path, char **src, size_t *len)
{
    *src = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return nuri_error(NURI_ERR_IO, "chat template %s: %s", path, strerror(errno));
    size_t cap = 1 << 14, n = 0;
    char *buf = malloc(cap + 1);
    nuri_status st = NURI_OK;
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        if (cap >= NURI_TEMPLATE_MAX_SOURCE) {
            st = nuri_error(NURI_ERR_LIMIT, "chat template %s: more than %u bytes", path,
                            NURI_TEMPLATE_MAX_SOURCE);
            break;
        }
        cap *= 2;
        char *nb = realloc(buf, cap + 1);
        if (!nb) free(buf);
        buf = nb;
    }
    if (st == NURI_OK && !buf)
        st = nuri_error(NURI_ERR_NOMEM, "chat template %s: out of memory", path);
    if (st == NURI_OK && ferror(f))
        st = nuri_error(NURI_ERR_IO, "chat template %s: read failed", path);
    fclose(f);
    if (st != NURI_OK) {
        free(buf);
        return st;
    }
    buf[n] = 0;
    *src = buf;
    *len = n;
    return NURI_OK;
}

void nuri_chat_format_free(nuri_chat_format *fmt)
{
    if (!fmt) return;
    nuri_template_free(fmt->tpl);
    free(fmt->bos);
    free(fmt->eos);
    free(fmt);
}

bool nuri_chat_format_is_fallback(const nuri_chat_format *fmt)
{
    return fmt->fallback;
}

const char *const *nuri_chat_format_stops(const nuri_chat_format *fmt, size_t *n)
{
    if (fmt->fallback) {
        *n = sizeof chatml_stops / sizeof chatml_stops[0];
        return chatml_stops;
    }
    *n = fmt->n_stops;
    return fmt->n_stops ? fmt->stops : NULL;
}

bool nuri_chat_format_ends_turn(const nuri_chat_format *fmt, int32_t id)
{
    if (nuri_vocab_is_eog(fmt->vocab, id)) return true;
    for (size_t i = 0; i < fmt->n_stop_ids; i++)
        if (fmt->stop_ids[i] == id) return true;
    return false;
}

nuri_status nuri_chat_render(const nuri_chat_format *fmt, const nuri_conv *c, bool add_gen,
                             char **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    json_t *msgs = nuri_conv_to_json(c);
    json_t *vars = msgs ? nuri_template_vars(msgs, NULL, add_gen, fmt->bos, fmt->eos, NULL) : NULL;
    json_decref(msgs);
    if (!vars) return nuri_error(NURI_ERR_NOMEM, "chat: out of memory");
    nuri_status st = nuri_template_render(fmt->tpl, vars, NULL, out, out_len);
    json_decref(vars);
    if (st != NURI_OK && st != NURI_ERR_INVALID_ARG) nuri_error_wrap(st, "chat template");
    return st;
}

nuri_status nuri_chat_render_spans(const nuri_chat_format *fmt, const nuri_conv *c, bool add_gen,
                                   char **out, size_t *out_len, nuri_text_spans *data)
{
    *out = NULL;
    *out_len = 0;
    *data = (nuri_text_spans){0};
    json_t *msgs = nuri_conv_to_json(c);
    json_t *vars = msgs ? nuri_template_vars(msgs, NULL, add_gen, NULL, NULL, NULL) : NULL;
    json_t *markup = json_object(); // the vocabulary's own token texts
    json_decref(msgs);
    if (!vars || !markup ||
        (fmt->bos && json_object_set_new(markup, "bos_token", json_string(fmt->bos))) ||
        (fmt->eos && json_object_set_new(markup, "eos_token", json_string(fmt->eos)))) {
        json_decref(vars);
        json_decref(markup);
        return nuri_error(NURI_ERR_NOMEM, "chat: out of memory");
    }
    // conversations hold only known roles (nuri_conv_add checks), all of them OpenAI roles
    nuri_template_markup mk = {.vars = markup, .roles = nuri_template_roles};
    nuri_status st =
        nuri_template_render_spans(fmt->tpl, vars, &mk, NULL, NULL, out, out_len, data);
    json_decref(vars);
    json_decref(markup);
    if (st != NURI_OK && st != NURI_ERR_INVALID_ARG) nuri_error_wrap(st, "chat template");
    return st;
}

nuri_status nuri_chat_tokenize(const nuri_chat_format *fmt, const char *text, size_t len,
                               int32_t **ids, size_t *n_ids)
{
    return nuri_chat_tokenize_spans(fmt, text, len, NULL, ids, n_ids);
}

nuri_status nuri_chat_tokenize_spans(const nuri_chat_format *fmt, const char *text, size_t len,
                                     const nuri_text_spans *data, int32_t **ids, size_t *n_ids)
{
    *ids = NULL;
    *n_ids = 0;
    int32_t *t;
    size_t n;
    nuri_status st =
        nuri_tokenize_spans(fmt->vocab, text, len, NURI_TOK_PARSE_SPECIAL, data, &t, &n);
    if (st != NURI_OK) return st;
    int32_t bos = nuri_vocab_bos(fmt->vocab);
    if (nuri_vocab_add_bos(fmt->vocab) && bos >= 0 && (n == 0 || t[0] != bos)) {
        int32_t *nt = realloc(t, (n + 1) * sizeof *nt);
        if (!nt) {
            free(t);
            return nuri_error(NURI_ERR_NOMEM, "chat: out of memory");
        }
        memmove(nt + 1, nt, n * sizeof *nt);
        nt[0] = bos;
        t = nt;
        n++;
    }
    *ids = t;
    *n_ids = n;
    return NURI_OK;
}

nuri_status nuri_chat_prompt(const nuri_chat_format *fmt, const nuri_conv *c, bool add_gen,
                             int32_t **ids, size_t *n_ids)
{
    *ids = NULL;
    *n_ids = 0;
    char *text;
    size_t len;
    nuri_text_spans data;
    nuri_status st = nuri_chat_render_spans(fmt, c, add_gen, &text, &len, &data);
    if (st != NURI_OK) return st;
    st = nuri_chat_tokenize_spans(fmt, text, len, &data, ids, n_ids);
    nuri_text_spans_free(&data);
    free(text);
    return st;
}

nuri_status nuri_chat_build(const nuri_chat_format *fmt, nuri_conv *c, size_t max_tokens,
                            int32_t **ids, size_t *n_ids, size_t *n_dropped)
{
    *ids = NULL;
    *n_ids = 0;
    *n_dropped = 0;
    for (;;) {
        size_t n;
        int32_t *t;
        nuri_status st = nuri_chat_prompt(fmt, c, true, &t, &n);
        if (st != NURI_OK) return st;
        if (n <= max_tokens) {
            *ids = t;
            *n_ids = n;
            return NURI_OK;
        }
        free(t);
        size_t dropped = nuri_conv_drop_oldest_turn(c);
        if (!dropped)
            return nuri_error(NURI_ERR_LIMIT,
                              "the prompt needs %zu tokens even with only the system message and "
                              "the last message, and the context has room for %zu",
                              n, max_tokens);
        *n_dropped += dropped;
    }
}

size_t nuri_chat_reuse_prefix(const int32_t *cached, size_t n_cached, const int32_t *prompt,
                              size_t n_prompt)
{
    size_t k = 0;
    while (k < n_cached && k < n_prompt && cached[k] == prompt[k]) k++;
    if (k >= n_prompt) k = n_prompt ? n_prompt - 1 : 0;
    return k;
}
