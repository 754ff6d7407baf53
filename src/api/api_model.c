/*
 * api_model.c: the public API's models, tokens and text, and chat formats (include/nuri.h).
 *
 * A thin layer: the public nuri_model is model.h's, tokenizing is tokenizer.h's, chat formats are
 * conversation.h's. What is added here is only what a library caller needs and the modules do not
 * do: parameter structs that survive ABI growth, loading progress with cancellation, and memory
 * that the caller frees with nuri_free.
 */
#include "api/api_internal.h"
#include "base/status.h"
#include "chat/conversation.h"
#include "gguf/gguf.h"
#include "model/model.h"
#include "sample/sampler.h"
#include "tokenizer/tokenizer.h"

#include <stdlib.h>
#include <string.h>

/* ============================== basics ============================== */

const char *nuri_version(void)
{
    return NURI_VERSION;
}

void nuri_free(void *p)
{
    free(p);
}

nuri_status api_params_copy(void *ours, size_t our_size, const void *in, const char *what)
{
    if (!in) return NURI_OK;
    size_t size;
    memcpy(&size, in, sizeof size);
    if (size < sizeof(size_t) || size > (1u << 16))
        return nuri_error(NURI_ERR_INVALID_ARG,
                          "%s: struct_size is %zu (fill it with %s_init(&p, sizeof p))", what, size,
                          what);
    const unsigned char *b = in;
    for (size_t i = our_size; i < size; i++)
        if (b[i])
            return nuri_error(NURI_ERR_UNSUPPORTED,
                              "%s: a field at byte %zu is set, which this libnuri %s does not "
                              "have (the program was built with a newer nuri.h)",
                              what, i, NURI_VERSION);
    size_t n = size < our_size ? size : our_size;
    memcpy((char *)ours + sizeof(size_t), b + sizeof(size_t), n - sizeof(size_t));
    return NURI_OK;
}

void api_params_init(void *p, size_t struct_size, const void *d, size_t d_size)
{
    if (!p || struct_size < sizeof(size_t)) return;
    size_t n = struct_size < d_size ? struct_size : d_size;
    memcpy(p, d, n);
    if (struct_size > d_size) memset((char *)p + d_size, 0, struct_size - d_size);
    memcpy(p, &struct_size, sizeof struct_size);
}

/* ============================== models ============================== */

void nuri_load_params_init(nuri_load_params *p, size_t struct_size)
{
    nuri_load_params d = {.struct_size = sizeof d};
    api_params_init(p, struct_size, &d, sizeof d);
}

#define PROGRESS_STEP (16u << 20) // bytes read between progress calls

/* Reads every tensor's pages in (one load per 4 KiB page), reporting the fraction read as 0..0.9
 * (binding the model is the rest). False when the callback cancels. */
static bool read_in(const gguf_file *f, const nuri_load_params *lp)
{
    uint64_t total = 0, done = 0, next = PROGRESS_STEP;
    uint64_t n = gguf_n_tensors(f);
    for (uint64_t i = 0; i < n; i++) total += gguf_tensor_at(f, i)->size;
    if (!lp->progress(0.0f, lp->progress_user_data)) return false;
    volatile unsigned char sink = 0;
    for (uint64_t i = 0; i < n; i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        const unsigned char *d = t->data;
        for (uint64_t off = 0; off < t->size; off += 4096) {
            sink ^= d[off];
            if (done + off >= next) {
                next += PROGRESS_STEP;
                float fr = total ? 0.9f * (float)((double)(done + off) / (double)total) : 0.9f;
                if (!lp->progress(fr, lp->progress_user_data)) return false;
            }
        }
        done += t->size;
    }
    (void)sink;
    return lp->progress(0.9f, lp->progress_user_data);
}

/* A model with only its file and vocabulary (no layers: nuri_context_new refuses it). */
static nuri_status open_vocab_only(const char *path, nuri_model **out)
{
    gguf_file *f;
    nuri_status s = gguf_open(path, &f);
    if (s != NURI_OK) return nuri_error_wrap(s, "%s", path);
    nuri_model *m = calloc(1, sizeof *m);
    if (!m) {
        gguf_close(f);
        return nuri_error(NURI_ERR_NOMEM, "out of memory");
    }
    m->file = f;
    s = nuri_vocab_load(f, &m->vocab);
    if (s != NURI_OK) {
        nuri_model_free(m);
        return nuri_error_wrap(s, "%s", path);
    }
    m->hp.arch_name = "";
    m->hp.n_vocab = (int32_t)nuri_vocab_n_tokens(m->vocab);
    *out = m;
    return NURI_OK;
}

nuri_status nuri_model_open(const char *path, const nuri_load_params *params, nuri_model **out)
{
    if (!out) return nuri_error(NURI_ERR_INVALID_ARG, "nuri_model_open: out is NULL");
    *out = NULL;
    if (!path) return nuri_error(NURI_ERR_INVALID_ARG, "nuri_model_open: path is NULL");
    nuri_load_params lp;
    nuri_load_params_init(&lp, sizeof lp);
    nuri_status s = api_params_copy(&lp, sizeof lp, params, "nuri_load_params");
    if (s != NURI_OK) return s;
    if (lp.vocab_only) { // nothing worth reporting between the ends
        if (lp.progress && !lp.progress(0.0f, lp.progress_user_data))
            return nuri_error(NURI_ERR_CANCELLED, "%s: loading cancelled by the progress callback",
                              path);
        s = open_vocab_only(path, out);
        if (s == NURI_OK && lp.progress && !lp.progress(1.0f, lp.progress_user_data)) {
            nuri_model_free(*out);
            *out = NULL;
            return nuri_error(NURI_ERR_CANCELLED, "%s: loading cancelled by the progress callback",
                              path);
        }
        return s;
    }
    if (!lp.progress) return nuri_model_load(path, out);
    gguf_file *f;
    s = gguf_open(path, &f);
    if (s != NURI_OK) return nuri_error_wrap(s, "%s", path);
    if (!read_in(f, &lp)) {
        gguf_close(f);
        return nuri_error(NURI_ERR_CANCELLED, "%s: loading cancelled by the progress callback",
                          path);
    }
    s = nuri_model_from_gguf(f, out); // owns f from here, also on failure
    if (s != NURI_OK) return nuri_error_wrap(s, "%s", path);
    if (!lp.progress(1.0f, lp.progress_user_data)) {
        nuri_model_free(*out);
        *out = NULL;
        return nuri_error(NURI_ERR_CANCELLED, "%s: loading cancelled by the progress callback",
                          path);
    }
    return NURI_OK;
}

void nuri_model_close(nuri_model *m)
{
    nuri_model_free(m);
}

const char *nuri_model_arch(const nuri_model *m)
{
    return m->hp.arch_name;
}

int32_t nuri_model_n_vocab(const nuri_model *m)
{
    return m->hp.n_vocab;
}

int32_t nuri_model_n_ctx_train(const nuri_model *m)
{
    return m->hp.n_ctx_train;
}

int32_t nuri_model_n_embd(const nuri_model *m)
{
    return m->hp.n_embd;
}

int32_t nuri_model_n_layer(const nuri_model *m)
{
    return m->hp.n_layer;
}

const char *nuri_model_warnings(const nuri_model *m)
{
    return nuri_vocab_warnings(m->vocab);
}

uint64_t nuri_model_n_params(const nuri_model *m)
{
    if (!m->layers) return 0; // vocabulary only
    uint64_t total, active;
    nuri_model_params(m, &total, &active);
    return total;
}

int32_t nuri_model_token_bos(const nuri_model *m)
{
    return nuri_vocab_bos(m->vocab);
}

int32_t nuri_model_token_eos(const nuri_model *m)
{
    return nuri_vocab_eos(m->vocab);
}

nuri_status nuri_model_meta_string(const nuri_model *m, const char *key, const char **value,
                                   size_t *len)
{
    *value = NULL;
    *len = 0;
    if (!key) return nuri_error(NURI_ERR_INVALID_ARG, "nuri_model_meta_string: key is NULL");
    const gguf_kv *kv = gguf_find_kv(m->file, key);
    if (!kv) return nuri_error(NURI_ERR_NOT_FOUND, "the model has no metadata key '%s'", key);
    gguf_str v;
    if (gguf_kv_str(kv, &v) != NURI_OK)
        return nuri_error(NURI_ERR_INVALID_ARG, "metadata key '%s' is a %s, not a string", key,
                          gguf_type_name(gguf_kv_type(kv)));
    *value = v.ptr;
    *len = (size_t)v.len;
    return NURI_OK;
}

bool nuri_model_token_is_eog(const nuri_model *m, int32_t id)
{
    return id >= 0 && id < m->hp.n_vocab && nuri_vocab_is_eog(m->vocab, id);
}

/* ============================== tokens and text ============================== */

nuri_status nuri_model_tokenize(const nuri_model *m, const char *text, size_t len, unsigned flags,
                                int32_t **ids, size_t *n_ids)
{
    if (!ids || !n_ids) return nuri_error(NURI_ERR_INVALID_ARG, "nuri_model_tokenize: out is NULL");
    *ids = NULL;
    *n_ids = 0;
    if (!text && len) return nuri_error(NURI_ERR_INVALID_ARG, "nuri_model_tokenize: text is NULL");
    if (flags & ~(NURI_TOKENIZE_ADD_SPECIAL | NURI_TOKENIZE_PARSE_SPECIAL))
        return nuri_error(NURI_ERR_INVALID_ARG, "nuri_model_tokenize: unknown flags 0x%x", flags);
    unsigned f = (flags & NURI_TOKENIZE_ADD_SPECIAL ? NURI_TOK_ADD_SPECIAL : 0) |
                 (flags & NURI_TOKENIZE_PARSE_SPECIAL ? NURI_TOK_PARSE_SPECIAL : 0);
    return nuri_tokenize(m->vocab, text ? text : "", len, f, ids, n_ids);
}

static nuri_status check_token(const nuri_model *m, int32_t id)
{
    if (id < 0 || id >= m->hp.n_vocab)
        return nuri_error(NURI_ERR_INVALID_ARG, "token id %d is outside the vocabulary (0..%d)", id,
                          m->hp.n_vocab - 1);
    return NURI_OK;
}

nuri_status nuri_model_token_piece(const nuri_model *m, int32_t id, unsigned flags,
                                   const char **piece, size_t *len)
{
    *piece = NULL;
    *len = 0;
    nuri_status s = check_token(m, id);
    if (s != NURI_OK) return s;
    *piece = nuri_token_piece_ref(m->vocab, id, flags & NURI_DETOKENIZE_SPECIAL, len);
    return NURI_OK;
}

static unsigned detok_flags(unsigned flags)
{
    return (flags & NURI_DETOKENIZE_SPECIAL ? NURI_DETOK_SPECIAL : 0) |
           (flags & NURI_DETOKENIZE_STRIP_SPACE ? NURI_DETOK_STRIP_PREFIX_SPACE : 0);
}

struct nuri_detokenizer {
    const nuri_model *m;
    nuri_detok dt;
};

nuri_status nuri_detokenizer_new(const nuri_model *m, unsigned flags, nuri_detokenizer **out)
{
    *out = NULL;
    if (flags & ~(NURI_DETOKENIZE_SPECIAL | NURI_DETOKENIZE_STRIP_SPACE))
        return nuri_error(NURI_ERR_INVALID_ARG, "nuri_detokenizer_new: unknown flags 0x%x", flags);
    nuri_detokenizer *d = calloc(1, sizeof *d);
    if (!d) return nuri_error(NURI_ERR_NOMEM, "out of memory");
    d->m = m;
    nuri_status s = nuri_detok_init(&d->dt, m->vocab, detok_flags(flags));
    if (s != NURI_OK) {
        free(d);
        return s;
    }
    *out = d;
    return NURI_OK;
}

const char *nuri_detokenizer_feed(nuri_detokenizer *d, int32_t id, size_t *len)
{
    *len = 0;
    if (check_token(d->m, id) != NURI_OK) return NULL;
    return nuri_detok_feed(&d->dt, id, len);
}

const char *nuri_detokenizer_flush(nuri_detokenizer *d, size_t *len)
{
    return nuri_detok_flush(&d->dt, len);
}

void nuri_detokenizer_free(nuri_detokenizer *d)
{
    if (!d) return;
    nuri_detok_free(&d->dt);
    free(d);
}

nuri_status nuri_model_detokenize(const nuri_model *m, const int32_t *ids, size_t n, unsigned flags,
                                  char **text, size_t *len)
{
    *text = NULL;
    *len = 0;
    for (size_t i = 0; i < n; i++) {
        nuri_status s = check_token(m, ids[i]);
        if (s != NURI_OK) return nuri_error_wrap(s, "ids[%zu]", i);
    }
    nuri_detokenizer *d;
    nuri_status s = nuri_detokenizer_new(m, flags, &d);
    if (s != NURI_OK) return s;
    size_t cap = 64, used = 0;
    char *buf = malloc(cap);
    for (size_t i = 0; buf && i <= n; i++) {
        size_t k;
        const char *p = i < n ? nuri_detok_feed(&d->dt, ids[i], &k) : nuri_detok_flush(&d->dt, &k);
        if (used + k + 1 > cap) {
            while (used + k + 1 > cap) cap *= 2;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
        }
        memcpy(buf + used, p, k);
        used += k;
    }
    nuri_detokenizer_free(d);
    if (!buf) return nuri_error(NURI_ERR_NOMEM, "out of memory");
    buf[used] = 0;
    *text = buf;
    *len = used;
    return NURI_OK;
}

/* ============================== chat formats ============================== */

struct nuri_chat {
    nuri_chat_format *fmt;
};

nuri_status nuri_chat_new(const nuri_model *m, const char *template_src, size_t len,
                          nuri_chat **out)
{
    *out = NULL;
    nuri_chat *c = calloc(1, sizeof *c);
    if (!c) return nuri_error(NURI_ERR_NOMEM, "out of memory");
    nuri_status s = nuri_chat_format_new(m->file, m->vocab, template_src, len, &c->fmt);
    if (s != NURI_OK) {
        free(c);
        return s;
    }
    *out = c;
    return NURI_OK;
}

void nuri_chat_free(nuri_chat *c)
{
    if (!c) return;
    nuri_chat_format_free(c->fmt);
    free(c);
}

nuri_status nuri_chat_template_load(const char *path, char **src, size_t *len)
{
    return nuri_chat_template_read(path, src, len);
}

bool nuri_chat_is_fallback(const nuri_chat *c)
{
    return nuri_chat_format_is_fallback(c->fmt);
}

static nuri_status chat_conv(const char *const *roles, const char *const *contents, size_t n,
                             nuri_conv *conv)
{
    nuri_conv_init(conv);
    for (size_t i = 0; i < n; i++) {
        if (!roles[i] || !contents[i]) {
            nuri_conv_free(conv);
            return nuri_error(NURI_ERR_INVALID_ARG, "message %zu: %s is NULL", i,
                              roles[i] ? "content" : "role");
        }
        nuri_status s = nuri_conv_add(conv, roles[i], contents[i], strlen(contents[i]));
        if (s != NURI_OK) {
            nuri_conv_free(conv);
            return nuri_error_wrap(s, "message %zu", i);
        }
    }
    return NURI_OK;
}

nuri_status nuri_chat_apply(const nuri_chat *c, const char *const *roles,
                            const char *const *contents, size_t n, bool add_generation_prompt,
                            char **text, size_t *len)
{
    *text = NULL;
    *len = 0;
    nuri_conv conv;
    nuri_status s = chat_conv(roles, contents, n, &conv);
    if (s != NURI_OK) return s;
    s = nuri_chat_render(c->fmt, &conv, add_generation_prompt, text, len);
    nuri_conv_free(&conv);
    return s;
}

nuri_status nuri_chat_tokens(const nuri_chat *c, const char *const *roles,
                             const char *const *contents, size_t n, bool add_generation_prompt,
                             int32_t **ids, size_t *n_ids)
{
    *ids = NULL;
    *n_ids = 0;
    nuri_conv conv;
    nuri_status s = chat_conv(roles, contents, n, &conv);
    if (s != NURI_OK) return s;
    s = nuri_chat_prompt(c->fmt, &conv, add_generation_prompt, ids, n_ids);
    nuri_conv_free(&conv);
    return s;
}

bool nuri_chat_ends_turn(const nuri_chat *c, int32_t id)
{
    return nuri_chat_format_ends_turn(c->fmt, id);
}

const char *const *nuri_chat_stop_strings(const nuri_chat *c, size_t *n)
{
    return nuri_chat_format_stops(c->fmt, n);
}

size_t nuri_stop_strings_scan(const char *text, size_t len, size_t n_emitted,
                              const char *const *stops, size_t n_stops, bool *hit)
{
    nuri_stop_result r;
    nuri_stop_strings_check(text, len, n_emitted, stops, n_stops, &r);
    if (hit) *hit = r.hit != 0;
    return r.n_safe;
}
