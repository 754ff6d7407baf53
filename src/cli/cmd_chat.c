/*
 * cmd_chat.c: `nuri chat -m MODEL [options]`, an interactive conversation with a model.
 *
 * One line of input is one user message (a line ending in '\' continues on the next line); the
 * answer streams out as whole UTF-8 characters until the model ends its turn (an end-of-generation
 * token, or a ChatML stop string when the model has no template of its own), -n tokens, Ctrl-C,
 * or a full context. Every turn renders the whole conversation with the model's chat template and
 * decodes only what the KV cache does not already hold (src/chat/conversation.h).
 *
 * Keys (documented in --help and /help):
 *   Ctrl-C during an answer  stops the answer; the part already shown is kept as the answer.
 *   Ctrl-C at the prompt     discards the line being typed; twice in a row exits.
 *   Ctrl-D (end of input)    exits. Input that is not a terminal (a pipe, a file) works the same,
 *                            without the "> " prompt.
 *
 * Answers go to stdout; notices (context full, messages dropped, commands' replies, errors) to
 * stderr, in brackets, so a script can keep the two apart.
 *
 * With --grammar FILE (GBNF) or --json-schema FILE every answer is constrained to it, from its
 * start, and ends where the grammar is complete.
 *
 * With --draft FILE or --draft-lookup K an answer's tokens come from a speculator
 * (src/spec/speculate.h), begun afresh each turn over what the KV cache holds; at its end the
 * cache's record (s->cache) is what the speculator says the sequence holds.
 */
#include "chat/conversation.h"
#include "chat/toolcall.h"
#include "base/sha256.h"
#include "store/store.h"
#include "cli/args.h"
#include "cli/args_spec.h"
#include "cli/cli.h"
#include "cli/line_edit.h"
#include "cli/model_arg.h"
#include "model/model.h"
#include "sample/sampler.h"
#include "spec/speculate.h"
#include "tokenizer/tokenizer.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t g_interrupted; // Ctrl-C presses not yet handled

static void on_sigint(int sig)
{
    (void)sig;
    g_interrupted = g_interrupted + 1; // SIGINT is masked while this runs: no lost update
}

static void chat_usage(FILE *out)
{
    fprintf(
        out,
        "usage: nuri chat -m MODEL [--system TEXT] [--chat-template FILE] [-t THREADS]\n"
        "                 [--ctx N] [-n MAX_TOKENS] [--temp T] [--top-k K] [--top-p P]\n"
        "                 [--min-p P] [--seed S] [--repeat-penalty R] [--repeat-last-n N] [-v]\n"
        "                 [--grammar FILE | --json-schema FILE]\n"
        "                 [--store PATH | --no-store] [--resume ID] [--api-key KEY]\n"
        "                 [--repack auto|on|off] [--draft FILE | --draft-lookup K ...]\n"
        "                 [--kv-type f16|q8_0|q4_0]\n"
        "\n"
        "Talks with a model, one line per message (end a line with '\\' to continue it).\n"
        "The prompt is built with the model's chat template (ChatML if it has none;\n"
        "--chat-template FILE overrides). -n caps each answer (default: until the model\n"
        "ends its turn or the context is full). When the context is full, the oldest turns\n"
        "are dropped (never the system message) and a notice says so.\n"
        "Sampling defaults: --temp 0.8 --top-k 40 --top-p 0.95 --min-p 0.05, seed from the\n"
        "clock (--temp 0 is greedy). -v prints, per turn, how much of the prompt the KV\n"
        "cache already held, and the speed.\n"
        "--grammar FILE (GBNF) or --json-schema FILE: every answer is made to match it and\n"
        "ends where it is complete.\n"
        "\n"
        "Conversations are saved to the store nuri serve keeps (--store PATH, default\n"
        "$XDG_DATA_HOME/nuri/nuri.db; --no-store to keep none; --api-key KEY or NURI_API_KEY\n"
        "for a server's key's conversations). --resume ID continues one.\n"
        "\n"
        "A message too long for the context even on its own is refused; the conversation\n"
        "stays as it was.\n"
        "\n"
        "Commands: /reset  /list  /resume ID  /delete ID  /save FILE  /load FILE  /help  /quit\n"
        "Keys: Ctrl-C stops an answer (the part shown is kept); at the prompt it discards\n"
        "the line, and twice in a row exits. Ctrl-D exits.\n"
        "At a terminal the line is edited in place (libedit, emacs keys; Up/Down walk the\n"
        "history, kept in $XDG_DATA_HOME/nuri/chat_history with the default store).\n"
        "\n" ARGS_SPEC_HELP ARGS_REPACK_HELP);
}

static void chat_help(void)
{
    fprintf(stderr, "[commands]\n"
                    "  /reset       forget the conversation (the system message stays); the next\n"
                    "               message starts a new stored one\n"
                    "  /list        the stored conversations (newest first)\n"
                    "  /resume ID   continue a stored conversation\n"
                    "  /delete ID   delete a stored conversation\n"
                    "  /save FILE   write the conversation to FILE (JSON)\n"
                    "  /load FILE   replace the conversation with the one saved in FILE\n"
                    "  /help        this list\n"
                    "  /quit        exit (also /exit, or Ctrl-D)\n"
                    "  //text       send \"/text\" as a message\n"
                    "[keys] Ctrl-C stops an answer; at the prompt it discards the line, and twice "
                    "in a row exits. A line ending in '\\' continues on the next.\n");
}

/* ======================================================================== input */

/* Reads lines from fd 0 with ppoll() + read(), so that Ctrl-C interrupts a wait for input, which
 * stdio's getline would hide. */
typedef struct line_reader {
    char *buf;
    size_t len, cap;
    bool eof;
} line_reader;

enum {
    LINE_OK = LINE_EDIT_OK,
    LINE_EOF = LINE_EDIT_EOF,
    LINE_INTERRUPTED = LINE_EDIT_INTERRUPTED,
    LINE_ERROR = LINE_EDIT_ERROR,
};

/* On LINE_OK, *line (borrowed until the next call) holds one line without its '\n'. */
static int read_line(line_reader *r, char **line, size_t *line_len, size_t *consumed)
{
    // drop the line handed out last time
    if (*consumed) {
        memmove(r->buf, r->buf + *consumed, r->len - *consumed);
        r->len -= *consumed;
        *consumed = 0;
    }
    for (;;) {
        char *nl = r->len ? memchr(r->buf, '\n', r->len) : NULL;
        if (nl || (r->eof && r->len)) {
            size_t n = nl ? (size_t)(nl - r->buf) : r->len;
            r->buf[n] = 0; // the '\n' or the spare byte kept below
            *line = r->buf;
            *line_len = n;
            *consumed = nl ? n + 1 : n;
            return LINE_OK;
        }
        if (r->eof) return LINE_EOF;
        if (r->cap - r->len < 4096 + 1) {
            size_t cap = r->cap ? r->cap * 2 : 8192;
            char *b = realloc(r->buf, cap);
            if (!b) return LINE_ERROR;
            r->buf = b;
            r->cap = cap;
        }
        // Wait with SIGINT blocked except inside ppoll, which unblocks it atomically: a Ctrl-C
        // that lands between the check of the flag and the wait still ends the wait.
        sigset_t block, old;
        sigemptyset(&block);
        sigaddset(&block, SIGINT);
        pthread_sigmask(SIG_BLOCK, &block, &old);
        if (g_interrupted) {
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            return LINE_INTERRUPTED;
        }
        struct pollfd pfd = {.fd = 0, .events = POLLIN};
        int pr = ppoll(&pfd, 1, NULL, &old);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (pr < 0) {
            if (errno != EINTR) return LINE_ERROR;
            if (g_interrupted) return LINE_INTERRUPTED;
            continue;
        }
        ssize_t got = read(0, r->buf + r->len, r->cap - r->len - 1);
        if (got < 0) {
            if (errno == EINTR) {
                if (g_interrupted) return LINE_INTERRUPTED;
                continue;
            }
            return LINE_ERROR;
        }
        if (got == 0) r->eof = true;
        r->len += (size_t)got;
    }
}

/* ======================================================================== session */

typedef struct chat_session {
    nuri_model *model;
    const nuri_vocab *vocab; // the model's (borrowed)
    nuri_chat_format *fmt;
    nuri_ctx *ctx;
    nuri_sampler *smp;
    nuri_spec *spec;       // with --draft or --draft-lookup
    nuri_model *draft;     // with --draft
    nuri_token_trie *trie; // with a grammar
    nuri_detok dt;
    nuri_conv conv;
    int32_t *cache; // (n_ctx) the token ids the KV cache holds at positions 0..n_cache
    int32_t n_cache, n_ctx;
    long n_predict; // tokens per answer; < 0: no limit
    bool verbose;   // a line of numbers per turn
    char *answer;   // the answer's text so far (bytes)
    size_t answer_len, answer_cap;
    // the answer shown split into reasoning, content and tool calls (where the template shows
    // reasoning or a tool-call format); NULL: shown as generated
    nuri_reply_parser *rp;
    bool split; // make rp for each answer
    // the conversation store (what nuri serve keeps): this chat saved as a conversation there
    nuri_store *store; // NULL: --no-store
    char owner[65];    // the API key's SHA-256 ("" without a key), as the server names owners
    char conv_id[NURI_STORE_ID_MAX]; // "" until the first turn is saved
    bool color;                      // stdout is a terminal: reasoning dim, calls bold
    int shown; // what was shown last: 0 nothing, 1 reasoning, 2 content, 3 a call's arguments
} chat_session;

/* Ends what is being shown (reasoning, a call) before something else starts. */
static void view_close(chat_session *s, int next)
{
    if (s->shown == next) return;
    if (s->shown == 1) fputs(s->color ? "\x1b[0m\n" : "\n[/thinking]\n", stdout);
    if (s->shown == 3) fputs(s->color ? ")\x1b[0m\n" : ")\n", stdout);
    s->shown = next;
}

static void view_deltas(chat_session *s, const nuri_reply_delta *d, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        switch (d[i].kind) {
        case NURI_DELTA_REASONING:
            if (s->shown != 1) {
                view_close(s, 1);
                fputs(s->color ? "\x1b[2m" : "[thinking]\n", stdout);
            }
            break;
        case NURI_DELTA_CONTENT:
            view_close(s, 2);
            break;
        case NURI_DELTA_CALL:
            view_close(s, 0);
            fputs(s->color ? "\x1b[1m[tool call] " : "[tool call] ", stdout);
            s->shown = 3;
            fwrite(d[i].text, 1, d[i].len, stdout);
            fputs("(", stdout);
            continue;
        case NURI_DELTA_ARGS:
            break;
        }
        fwrite(d[i].text, 1, d[i].len, stdout);
    }
}

/* Shows text the answer just added: as it is, or through the reply parser. */
static bool view_text(chat_session *s, const char *text, size_t n)
{
    if (!s->rp) {
        fwrite(text, 1, n, stdout);
        return true;
    }
    const nuri_reply_delta *d;
    size_t nd;
    if (nuri_reply_parser_feed(s->rp, text, n, &d, &nd) != NURI_OK) return false;
    view_deltas(s, d, nd);
    return true;
}

/* Whether the prompt's last tokens leave a reasoning block open (the answer starts inside it). */
static bool prompt_opens_reasoning(const chat_session *s, const int32_t *ids, size_t n)
{
    char tail[256];
    size_t len = 0;
    for (size_t i = n > 8 ? n - 8 : 0; i < n; i++) {
        size_t k;
        const char *p = nuri_token_piece_ref(s->vocab, ids[i], true, &k);
        if (len + k >= sizeof tail) len = 0;
        if (k < sizeof tail) {
            memcpy(tail + len, p, k);
            len += k;
        }
    }
    return nuri_chat_syntax_prompt_opens_reasoning(nuri_chat_format_syntax(s->fmt), tail, len);
}

static bool answer_append(chat_session *s, const char *p, size_t n)
{
    if (s->answer_len + n + 1 > s->answer_cap) {
        size_t cap = s->answer_cap ? s->answer_cap : 4096;
        while (cap < s->answer_len + n + 1) cap *= 2;
        char *a = realloc(s->answer, cap);
        if (!a) return false;
        s->answer = a;
        s->answer_cap = cap;
    }
    memcpy(s->answer + s->answer_len, p, n);
    s->answer_len += n;
    s->answer[s->answer_len] = 0;
    return true;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Tokens kept free for the answer when the prompt is fitted into the context. */
static int32_t answer_reserve(const chat_session *s)
{
    int32_t quarter = s->n_ctx / 4 > 0 ? s->n_ctx / 4 : 1;
    if (s->n_predict >= 0 && s->n_predict < quarter)
        return s->n_predict > 0 ? (int32_t)s->n_predict : 1;
    return quarter;
}

/* ======================================================================== the store */

/* A message as a conversation item of the Responses API. */
static json_t *message_item(const char *role, const char *text)
{
    return json_pack("{s:s,s:s,s:[{s:s,s:s}]}", "type", "message", "role", role, "content", "type",
                     strcmp(role, "assistant") ? "input_text" : "output_text", "text", text);
}

/* The last turn (the user's message and the answer) into the store: the conversation is made at
 * the first turn (titled with its first words). A failure is reported, never fatal. */
static void store_turn(chat_session *s)
{
    if (!s->store || s->conv.n < 2) return;
    const nuri_chat_message *q = &s->conv.msgs[s->conv.n - 2], *a = &s->conv.msgs[s->conv.n - 1];
    json_t *items =
        json_pack("[o,o]", message_item(q->role, q->content), message_item(a->role, a->content));
    nuri_status st = items ? NURI_OK : NURI_ERR_NOMEM;
    if (st == NURI_OK && !s->conv_id[0]) {
        char title[64];
        size_t n = strlen(q->content) < 48 ? strlen(q->content) : 48;
        while (n > 0 && ((unsigned char)q->content[n] & 0xC0) == 0x80) n--; // whole characters
        snprintf(title, sizeof title, "%.*s", (int)n, q->content);
        json_t *meta = json_pack("{s:s}", "title", title), *conv = NULL;
        st = nuri_store_conversation_create(s->store, s->owner, meta, items, &conv);
        if (st == NURI_OK)
            snprintf(s->conv_id, sizeof s->conv_id, "%s",
                     json_string_value(json_object_get(conv, "id")));
        json_decref(meta);
        json_decref(conv);
    } else if (st == NURI_OK) {
        st = nuri_store_conversation_items_add(s->store, s->owner, s->conv_id, items, NULL);
    }
    json_decref(items);
    if (st != NURI_OK) fprintf(stderr, "[not saved to the store: %s]\n", nuri_last_error());
}

/* Replaces the conversation with stored conversation id (its messages; a system message given
 * on the command line stays first). */
static bool store_resume(chat_session *s, const char *id)
{
    json_t *items = NULL;
    if (nuri_store_conversation_history(s->store, s->owner, id, NURI_CONV_MAX_MESSAGES, &items) !=
        NURI_OK) {
        fprintf(stderr, "[%s]\n", nuri_last_error());
        return false;
    }
    nuri_conv_reset(&s->conv);
    size_t i, n = 0;
    json_t *it;
    json_array_foreach(items, i, it)
    {
        const char *role = json_string_value(json_object_get(it, "role"));
        const char *type = json_string_value(json_object_get(it, "type"));
        if ((type && strcmp(type, "message")) || !role ||
            (strcmp(role, "user") && strcmp(role, "assistant")))
            continue; // tool calls and the like: not part of a plain chat
        json_t *content = json_object_get(it, "content");
        size_t k;
        json_t *part;
        char *text = NULL;
        size_t len = 0;
        FILE *mf = open_memstream(&text, &len);
        if (!mf) continue;
        if (json_is_string(content)) fputs(json_string_value(content), mf);
        json_array_foreach(content, k, part)
        {
            const char *t = json_string_value(json_object_get(part, "text"));
            if (t) fputs(t, mf);
        }
        fclose(mf);
        if (nuri_conv_add(&s->conv, role, text, len) == NURI_OK) n++;
        free(text);
    }
    json_decref(items);
    snprintf(s->conv_id, sizeof s->conv_id, "%s", id);
    fprintf(stderr, "[resumed %s: %zu messages]\n", id, n);
    return true;
}

static void store_list(chat_session *s)
{
    nuri_store_page pg = {.limit = NURI_STORE_LIST_MAX, .order = NURI_STORE_DESC};
    json_t *list = NULL;
    if (nuri_store_conversation_list(s->store, s->owner, &pg, &list) != NURI_OK) {
        fprintf(stderr, "[%s]\n", nuri_last_error());
        return;
    }
    json_t *data = json_object_get(list, "data");
    if (json_array_size(data) == 0) fprintf(stderr, "[no stored conversations]\n");
    size_t i;
    json_t *c;
    json_array_foreach(data, i, c)
    {
        time_t t = (time_t)json_integer_value(json_object_get(c, "created_at"));
        struct tm tm;
        char when[32];
        strftime(when, sizeof when, "%Y-%m-%d %H:%M", localtime_r(&t, &tm));
        const char *id = json_string_value(json_object_get(c, "id"));
        const char *title =
            json_string_value(json_object_get(json_object_get(c, "metadata"), "title"));
        fprintf(stderr, "  %s  %s  %s%s\n", id, when, title ? title : "",
                !strcmp(id, s->conv_id) ? "  (this one)" : "");
    }
    json_decref(list);
}

/* Sends the user's message, streams the answer, and keeps both in the conversation. Returns false
 * only on a failure that ends the program (out of memory, a broken model). */
static bool chat_turn(chat_session *s, const char *text, size_t len)
{
    // a message that cannot fit even with every earlier turn dropped is refused before anything
    // is dropped: the conversation stays as it was (and the line stays in the history, to shorten)
    size_t budget = (size_t)(s->n_ctx - answer_reserve(s));
    nuri_conv alone;
    nuri_conv_init(&alone);
    nuri_status st = NURI_OK;
    const bool has_system = s->conv.n && !strcmp(s->conv.msgs[0].role, "system");
    if (has_system)
        st = nuri_conv_add(&alone, "system", s->conv.msgs[0].content,
                           strlen(s->conv.msgs[0].content));
    if (st == NURI_OK) st = nuri_conv_add(&alone, "user", text, len);
    int32_t *ids = NULL;
    size_t n_ids, dropped;
    if (st == NURI_OK) st = nuri_chat_prompt(s->fmt, &alone, true, &ids, &n_ids);
    nuri_conv_free(&alone);
    free(ids);
    ids = NULL;
    if (st != NURI_OK) {
        fprintf(stderr, "[not sent: %s]\n", nuri_last_error());
        return st != NURI_ERR_NOMEM;
    }
    if (n_ids > budget) {
        fprintf(stderr,
                "[not sent: the prompt needs %zu tokens with %s, and the context (%d tokens, %d "
                "kept for the answer) has room for %zu; the conversation is unchanged]\n",
                n_ids,
                has_system ? "only the system message and this message" : "this message alone",
                s->n_ctx, answer_reserve(s), budget);
        return true;
    }
    if (nuri_conv_add(&s->conv, "user", text, len) != NURI_OK) {
        fprintf(stderr, "[not sent: %s]\n", nuri_last_error());
        return true;
    }
    st = nuri_chat_build(s->fmt, &s->conv, budget, &ids, &n_ids, &dropped);
    if (dropped)
        fprintf(stderr, "[context full: dropped the %zu oldest message%s%s]\n", dropped,
                dropped == 1 ? "" : "s",
                s->conv.n && !strcmp(s->conv.msgs[0].role, "system") ? ", kept the system message"
                                                                     : "");
    if (st != NURI_OK) {
        fprintf(stderr, "[not sent: %s]\n", nuri_last_error());
        nuri_conv_pop(&s->conv);
        return st != NURI_ERR_NOMEM;
    }

    // decode only what the cache does not hold yet
    size_t keep = nuri_chat_reuse_prefix(s->cache, (size_t)s->n_cache, ids, n_ids);
    if (!nuri_ctx_seq_reusable(s->ctx, 0, (int32_t)keep)) keep = 0; // a recurrent state: whole
    nuri_ctx_seq_truncate(s->ctx, 0, (int32_t)keep);
    s->n_cache = (int32_t)keep;
    double t0 = now_s();
    st = nuri_ctx_decode(s->ctx, ids + keep, (int32_t)(n_ids - keep), (int32_t)keep, false);
    if (st != NURI_OK) {
        fprintf(stderr, "[model failed: %s]\n", nuri_last_error());
        free(ids);
        nuri_ctx_seq_truncate(s->ctx, 0, 0);
        s->n_cache = 0;
        nuri_conv_pop(&s->conv);
        return false;
    }
    double t_prompt = now_s();
    memcpy(s->cache + keep, ids + keep, (n_ids - keep) * sizeof *ids);
    s->n_cache = (int32_t)n_ids;
    nuri_sampler_reset(s->smp);
    for (size_t i = 0; i < n_ids; i++) nuri_sampler_accept_history(s->smp, ids[i]);
    if (s->split) {
        nuri_reply_opts o = {.syntax = *nuri_chat_format_syntax(s->fmt),
                             .in_reasoning = prompt_opens_reasoning(s, ids, n_ids)};
        // the generic format reads any JSON answer as a call: only a format the template shows
        if (o.syntax.format == NURI_TOOLCALL_GENERIC) o.syntax.format = NURI_TOOLCALL_NONE;
        if (!nuri_chat_format_shows_reasoning(s->fmt) && !o.in_reasoning)
            o.syntax.think_open = NULL;
        nuri_reply_parser_free(s->rp);
        s->rp = NULL;
        if (nuri_reply_parser_new(&o, &s->rp) != NURI_OK) {
            free(ids);
            return false;
        }
        s->shown = 0;
    }
    free(ids);
    nuri_spec_counts spec0 = {0};
    if (s->spec) {
        spec0 = nuri_spec_get_counts(s->spec);
        if (nuri_spec_begin(s->spec, s->cache, s->n_cache) != NURI_OK) {
            fprintf(stderr, "[model failed: %s]\n", nuri_last_error());
            return false;
        }
    }

    size_t n_stops;
    const char *const *stops = nuri_chat_format_stops(s->fmt, &n_stops);
    size_t emitted = 0;
    s->answer_len = 0;
    const char *why = NULL; // why the answer ended early, for the notice
    bool stopped = false;
    long n_gen = 0;
    for (long k = 0; s->n_predict < 0 || k < s->n_predict; k++) {
        if (g_interrupted) {
            why = "answer stopped";
            break;
        }
        int32_t next;
        // the token's position: the KV cache holds everything before it
        const int32_t at = (int32_t)n_ids + (int32_t)k;
        if (s->spec) {
            int32_t left = s->n_predict < 0 ? s->n_ctx : (int32_t)(s->n_predict - k);
            if (nuri_spec_next(s->spec, left, &next) != NURI_OK) {
                fprintf(stderr, "\n[model failed: %s]\n", nuri_last_error());
                nuri_spec_end(s->spec, NULL);
                nuri_ctx_seq_truncate(s->ctx, 0, 0);
                s->n_cache = 0;
                return false;
            }
        } else if (nuri_sampler_sample(s->smp, nuri_ctx_logits(s->ctx, 0), &next, NULL) !=
                   NURI_OK) {
            fprintf(stderr, "\n[sampling failed: %s]\n", nuri_last_error());
            break;
        } else if (nuri_sampler_accept(s->smp, next) != NURI_OK) {
            fprintf(stderr, "\n[sampling failed: %s]\n", nuri_last_error());
            break;
        }
        if (nuri_chat_format_ends_turn(s->fmt, next)) break;
        bool complete = nuri_sampler_finish_reason(s->smp, next) == NURI_FINISH_GRAMMAR;
        n_gen++;
        size_t plen;
        const char *piece = nuri_detok_feed(&s->dt, next, &plen);
        if (!answer_append(s, piece, plen)) return false;
        nuri_stop_result r = {.n_safe = s->answer_len};
        if (n_stops) nuri_stop_strings_check(s->answer, s->answer_len, emitted, stops, n_stops, &r);
        if (!view_text(s, s->answer + emitted, r.n_safe - emitted)) return false;
        fflush(stdout);
        emitted = r.n_safe;
        if (r.hit) {
            s->answer_len = r.n_safe;
            stopped = true;
            break;
        }
        if (complete) break; // the grammar allows nothing more
        if (at >= s->n_ctx) {
            why = "context full: answer cut off; the oldest turns will be dropped next time";
            break;
        }
        if (s->n_predict >= 0 && k + 1 >= s->n_predict) break;
        if (s->spec) continue;
        if (nuri_ctx_decode(s->ctx, &next, 1, s->n_cache, false) != NURI_OK) {
            fprintf(stderr, "\n[model failed: %s]\n", nuri_last_error());
            return false;
        }
        s->cache[s->n_cache++] = next;
    }
    nuri_spec_counts spec1 = spec0;
    if (s->spec) { // the cache's record is what the sequence holds, drafts not taken dropped
        const int32_t *held;
        s->n_cache = nuri_spec_end(s->spec, &held);
        memcpy(s->cache, held, (size_t)s->n_cache * sizeof *held);
        spec1 = nuri_spec_get_counts(s->spec);
    }
    size_t rlen;
    const char *rest = nuri_detok_flush(&s->dt, &rlen);
    if (!stopped) {
        if (!answer_append(s, rest, rlen)) return false;
        if (!view_text(s, s->answer + emitted, s->answer_len - emitted)) return false;
    }
    if (s->rp) {
        const nuri_reply_delta *d;
        size_t nd;
        if (nuri_reply_parser_finish(s->rp, &d, &nd) != NURI_OK) return false;
        view_deltas(s, d, nd);
        view_close(s, 0);
        const nuri_reply *rep = nuri_reply_parser_reply(s->rp);
        if (rep->error) fprintf(stderr, "[the tool call is malformed: %s]\n", rep->error);
        // harmony's template refuses channel markup in a turn's content (and drops earlier
        // turns' reasoning): the turn kept is the final answer (never longer than the raw one)
        if (nuri_chat_format_syntax(s->fmt)->harmony && rep->content_len <= s->answer_len) {
            memcpy(s->answer, rep->content, rep->content_len);
            s->answer_len = rep->content_len;
        }
    }
    printf("\n");
    fflush(stdout);
    if (why) fprintf(stderr, "[%s]\n", why);
    if (s->verbose) {
        double t_end = now_s();
        fprintf(stderr,
                "[prompt %zu tokens: %zu reused from the KV cache, %zu decoded in %.3f s; "
                "answer %ld tokens in %.3f s (%.1f tokens/s)]\n",
                n_ids, keep, n_ids - keep, t_prompt - t0, n_gen, t_end - t_prompt,
                t_end > t_prompt ? (double)n_gen / (t_end - t_prompt) : 0.0);
        if (s->spec) {
            long long drafted = (long long)(spec1.drafted - spec0.drafted);
            long long accepted = (long long)(spec1.accepted - spec0.accepted);
            fprintf(stderr,
                    "[speculation: %lld forward passes; acceptance %.1f%%; drafted %lld tokens, "
                    "%lld accepted]\n",
                    (long long)(spec1.passes - spec0.passes),
                    drafted ? 100.0 * (double)accepted / (double)drafted : 0.0, drafted, accepted);
        }
    }
    g_interrupted = 0;

    // the answer as shown is the assistant's turn (NUL bytes, which a <0x00> token can produce,
    // are left out: a conversation holds text)
    size_t w = 0;
    for (size_t i = 0; i < s->answer_len; i++)
        if (s->answer[i]) s->answer[w++] = s->answer[i];
    s->answer_len = w;
    if (nuri_conv_add(&s->conv, "assistant", s->answer ? s->answer : "", s->answer_len) !=
        NURI_OK) {
        fprintf(stderr, "[answer not kept: %s]\n", nuri_last_error());
        nuri_conv_pop(&s->conv); // and its question, so that roles still alternate
    } else {
        store_turn(s);
    }
    return true;
}

/* A line that starts with '/': runs the command. Returns 0 to go on, 1 to quit. */
static int chat_command(chat_session *s, char *line)
{
    char *arg = line + strcspn(line, " \t");
    if (*arg) *arg++ = 0;
    arg += strspn(arg, " \t");
    size_t alen = strlen(arg);
    while (alen && (arg[alen - 1] == ' ' || arg[alen - 1] == '\t' || arg[alen - 1] == '\r'))
        arg[--alen] = 0;
    if (!strcmp(line, "/quit") || !strcmp(line, "/exit")) return 1;
    if (!strcmp(line, "/help")) {
        chat_help();
    } else if (!strcmp(line, "/reset")) {
        nuri_conv_reset(&s->conv);
        s->conv_id[0] = 0; // the next turn starts a new stored conversation
        fprintf(stderr, "[conversation cleared%s]\n",
                s->conv.n ? "; the system message stays" : "");
    } else if (!strcmp(line, "/list") || !strcmp(line, "/resume") || !strcmp(line, "/delete")) {
        if (!s->store) {
            fprintf(stderr, "[%s needs the store (started with --no-store)]\n", line);
        } else if (line[1] == 'l') {
            store_list(s);
        } else if (!*arg) {
            fprintf(stderr, "[%s needs a conversation id (/list shows them)]\n", line);
        } else if (line[1] == 'r') {
            store_resume(s, arg);
        } else if (nuri_store_conversation_delete(s->store, s->owner, arg) != NURI_OK) {
            fprintf(stderr, "[%s]\n", nuri_last_error());
        } else {
            fprintf(stderr, "[deleted %s]\n", arg);
            if (!strcmp(arg, s->conv_id)) s->conv_id[0] = 0; // what follows starts a new one
        }
    } else if (!strcmp(line, "/save") || !strcmp(line, "/load")) {
        if (!*arg) {
            fprintf(stderr, "[%s needs a file name]\n", line);
        } else if (line[1] == 's') {
            if (nuri_conv_save(&s->conv, arg) == NURI_OK)
                fprintf(stderr, "[saved %zu messages to %s]\n", s->conv.n, arg);
            else
                fprintf(stderr, "[%s]\n", nuri_last_error());
        } else {
            if (nuri_conv_load(&s->conv, arg) == NURI_OK)
                fprintf(stderr, "[loaded %zu messages from %s]\n", s->conv.n, arg);
            else
                fprintf(stderr, "[%s; the conversation is unchanged]\n", nuri_last_error());
        }
    } else {
        fprintf(stderr, "[unknown command %s; /help lists them]\n", line);
    }
    return 0;
}

/* ======================================================================== the command */

int cmd_chat(int argc, char **argv)
{
    const char *model_path = NULL, *system = NULL, *tpl_path = NULL, *v;
    const char *grammar_file = NULL, *schema_file = NULL;
    const char *store_path = NULL, *resume_id = NULL, *api_key = getenv("NURI_API_KEY");
    bool no_store = false;
    char *store_default = NULL;
    long n_predict = -1, threads = 1, n_ctx = 0;
    bool seed_given = false, verbose = false;
    args_spec spec_args = {0};
    nuri_sampler_params sp = nuri_sampler_params_default();
    sp.temperature = 0.8f;
    sp.top_k = 40;
    sp.top_p = 0.95f;
    sp.min_p = 0.05f;
    int sampling, kv;
    const char *kv_k = "f16", *kv_v = "f16"; // --kv-type
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            chat_usage(stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(model_path = args_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            verbose = true;
        } else if (!strcmp(a, "--system")) {
            if (!(system = args_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--chat-template")) {
            if (!(tpl_path = args_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "-n")) {
            if (!(v = args_value(argc, argv, &i)) || !args_int(v, -1, 1 << 22, "-n", &n_predict))
                return 2;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (!(v = args_value(argc, argv, &i)) || !args_int(v, 1, 256, "-t", &threads)) return 2;
        } else if (!strcmp(a, "--ctx")) {
            if (!(v = args_value(argc, argv, &i)) || !args_int(v, 1, 1 << 22, "--ctx", &n_ctx))
                return 2;
        } else if (!strcmp(a, "--store")) {
            if (!(store_path = args_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--no-store")) {
            no_store = true;
        } else if (!strcmp(a, "--resume")) {
            if (!(resume_id = args_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--api-key")) {
            if (!(api_key = args_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--grammar")) {
            if (!(grammar_file = args_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--json-schema")) {
            if (!(schema_file = args_value(argc, argv, &i))) return 2;
        } else if ((sampling = args_sampling(argc, argv, &i, &sp, &seed_given)) != 0 ||
                   (sampling = args_spec_option(argc, argv, &i, &spec_args)) != 0) {
            if (sampling < 0) return 2;
        } else if ((kv = args_kv_type(argc, argv, &i, &kv_k, &kv_v)) != 0) {
            if (kv < 0) return 2;
        } else {
            fprintf(stderr, "nuri: chat: unknown option '%s'\n", a);
            chat_usage(stderr);
            return 2;
        }
    }
    if (!model_path) {
        chat_usage(stderr);
        return 2;
    }
    if (!args_spec_check(&spec_args, "chat")) return 2;
    if (cli_model_arg("chat", &model_path)) return 1;
    if (spec_args.draft_path && cli_model_arg("chat --draft", &spec_args.draft_path)) return 1;
    if (!seed_given) sp.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    nuri_grammar *grammar = NULL;
    if (!args_grammar(grammar_file, schema_file, &grammar)) return 2;

    char *tpl_src = NULL;
    size_t tpl_len = 0;
    if (tpl_path && nuri_chat_template_read(tpl_path, &tpl_src, &tpl_len) != NURI_OK) {
        nuri_grammar_free(grammar);
        return cli_fail("chat: --chat-template");
    }

    chat_session s = {.n_predict = n_predict, .verbose = verbose};
    nuri_conv_init(&s.conv);
    bool have_dt = false;
    int rc = 0;
    line_reader lr = {0};
    if (cli_model_load(model_path, &s.model) != NURI_OK) {
        free(tpl_src);
        nuri_grammar_free(grammar);
        return cli_fail("chat");
    }
    if (spec_args.draft_path && cli_model_load(spec_args.draft_path, &s.draft) != NURI_OK) {
        rc = cli_fail("chat --draft");
        goto done;
    }
    s.vocab = s.model->vocab;
    if (nuri_chat_format_new(s.model->file, s.vocab, tpl_src, tpl_len, &s.fmt) != NURI_OK ||
        nuri_detok_init(&s.dt, s.vocab, 0) != NURI_OK) {
        rc = cli_fail("chat");
        goto done;
    }
    have_dt = true;
    if (system && nuri_conv_add(&s.conv, "system", system, strlen(system)) != NURI_OK) {
        rc = cli_fail("chat: --system");
        goto done;
    }
    if (no_store && resume_id) {
        fprintf(stderr, "nuri: chat: --resume needs the store (not --no-store)\n");
        rc = 2;
        goto done;
    }
    if (!no_store) {
        if (!store_path && nuri_store_default_path(&store_default) != NURI_OK) {
            rc = cli_fail("chat: the default store (--store PATH or --no-store to choose)");
            goto done;
        }
        if (nuri_store_open(store_path ? store_path : store_default, NULL, &s.store) != NURI_OK) {
            rc = cli_fail("chat: --store");
            goto done;
        }
        if (api_key && *api_key) {
            nuri_sha256 h;
            uint8_t d[32];
            nuri_sha256_init(&h);
            nuri_sha256_update(&h, api_key, strlen(api_key));
            nuri_sha256_final(&h, d);
            nuri_sha256_hex(d, s.owner);
        }
        if (resume_id && !store_resume(&s, resume_id)) {
            rc = 1;
            goto done;
        }
    }

    // The worker threads that nuri_ctx_new starts inherit a blocked SIGINT, so that Ctrl-C always
    // lands on this thread and interrupts its read().
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    nuri_ctx_params cp = {.n_ctx = (int32_t)n_ctx,
                          .n_threads = (int32_t)threads,
                          .n_logits = (int32_t)spec_args.draft_max + 1};
    nuri_status st = nuri_kv_type_parse(kv_k, &cp.kv_type_k);
    if (st == NURI_OK) st = nuri_kv_type_parse(kv_v, &cp.kv_type_v);
    if (st == NURI_OK) st = nuri_ctx_new(s.model, &cp, &s.ctx);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (grammar && st == NURI_OK) {
        st = nuri_token_trie_new(s.vocab, s.model->hp.n_vocab, &s.trie);
        sp.grammar = grammar;
        sp.grammar_tokens = s.trie;
    }
    if (st != NURI_OK || nuri_sampler_new(&sp, s.model->hp.n_vocab, &s.smp) != NURI_OK) {
        rc = cli_fail("chat");
        goto done;
    }
    if (spec_args.draft_max > 0) {
        nuri_spec_params qp = {.target = s.model,
                               .draft_max = (int32_t)spec_args.draft_max,
                               .draft_min = (int32_t)spec_args.draft_min,
                               .lookup = spec_args.lookup,
                               .draft = s.draft,
                               .draft_threads = (int32_t)threads,
                               .draft_greedy = spec_args.greedy,
                               .draft_p_min = spec_args.p_min};
        pthread_sigmask(SIG_BLOCK, &block, &old); // the draft context's workers, as above
        st = nuri_spec_new(&qp, s.ctx, 0, s.smp, &s.spec);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (st != NURI_OK) {
            rc = cli_fail(s.draft ? "chat --draft" : "chat");
            goto done;
        }
    }
    s.n_ctx = nuri_ctx_n_ctx(s.ctx);
    // a grammar's output is shown exactly as generated
    s.split = !grammar && (nuri_chat_format_shows_reasoning(s.fmt) ||
                           nuri_chat_format_syntax(s.fmt)->format != NURI_TOOLCALL_GENERIC);
    s.color = isatty(1);
    if (!(s.cache = malloc((size_t)s.n_ctx * sizeof *s.cache))) {
        fprintf(stderr, "nuri: chat: out of memory\n");
        rc = 1;
        goto done;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART; // ppoll() is interrupted all the same (it is never restarted)
    sigaction(SIGINT, &sa, NULL);

    bool tty = isatty(0);
    // IUTF8: the terminal's line editing erases a whole Hangul syllable per backspace, not a byte
    struct termios tio_saved;
    bool tio_set = false;
    if (tty && tcgetattr(0, &tio_saved) == 0 && !(tio_saved.c_iflag & IUTF8)) {
        struct termios tio = tio_saved;
        tio.c_iflag |= IUTF8;
        tio_set = tcsetattr(0, TCSANOW, &tio) == 0;
    }
    fprintf(stderr, "[nuri chat: %s (%s), context %d tokens; template: %s]\n", model_path,
            s.model->hp.arch_name, s.n_ctx,
            tpl_path                              ? tpl_path
            : nuri_chat_format_is_fallback(s.fmt) ? "ChatML (the model has no chat template)"
                                                  : "the model's");
    if (tty) fprintf(stderr, "[/help for commands; Ctrl-C stops an answer; Ctrl-D exits]\n");

    // at a terminal, libedit edits the line (history on Up/Down, Hangul by display width); its
    // history is kept next to the default store
    line_edit *le = NULL;
    if (tty) {
        char *hist = NULL;
        if (!no_store && !store_path && store_default) {
            const char *slash = strrchr(store_default, '/');
            if (slash && asprintf(&hist, "%.*s/chat_history", (int)(slash - store_default),
                                  store_default) < 0)
                hist = NULL;
        }
        if (!(le = line_edit_new(&g_interrupted, hist)))
            fprintf(stderr, "[no line editing: %s]\n", strerror(errno));
        free(hist);
    }
    char *msg = NULL; // a message being continued over lines ending in '\'
    size_t msg_len = 0, consumed = 0;
    int interrupts = 0; // Ctrl-C presses at the prompt in a row
    for (;;) {
        if (tty && !le) {
            fputs(msg_len ? "... " : "> ", stdout);
            fflush(stdout);
        }
        char *line;
        size_t len;
        int r = le ? line_edit_read(le, msg_len ? "... " : "> ", &line, &len)
                   : read_line(&lr, &line, &len, &consumed);
        if (r == LINE_INTERRUPTED) {
            interrupts += g_interrupted;
            g_interrupted = 0;
            lr.len = 0; // whatever was typed is gone (a terminal discards it too)
            consumed = 0;
            msg_len = 0;
            if (interrupts >= 2) {
                fputs("\n", stdout);
                break;
            }
            fputs("\n", stdout);
            fprintf(stderr, "[Ctrl-C again, Ctrl-D or /quit to exit]\n");
            continue;
        }
        if (r == LINE_ERROR) {
            fprintf(stderr, "nuri: chat: reading input: %s\n", strerror(errno));
            rc = 1;
            break;
        }
        if (r == LINE_EOF) {
            if (tty) fputs("\n", stdout);
            break;
        }
        interrupts = 0;
        if (len && line[len - 1] == '\r') line[--len] = 0;
        bool more = len && line[len - 1] == '\\';
        if (more) line[--len] = 0;
        char *m = realloc(msg, msg_len + len + 2);
        if (!m) {
            fprintf(stderr, "nuri: chat: out of memory\n");
            rc = 1;
            break;
        }
        msg = m;
        memcpy(msg + msg_len, line, len);
        msg_len += len;
        if (more) {
            msg[msg_len++] = '\n';
            continue;
        }
        msg[msg_len] = 0;
        size_t mlen = msg_len;
        msg_len = 0;
        if (mlen == 0) continue;
        if (msg[0] == '/' && msg[1] != '/') {
            if (chat_command(&s, msg)) break;
            continue;
        }
        const char *text = msg[0] == '/' ? msg + 1 : msg;
        if (!chat_turn(&s, text, mlen - (size_t)(text - msg))) {
            rc = 1;
            break;
        }
    }
    free(msg);
    line_edit_free(le);
    if (tio_set) tcsetattr(0, TCSANOW, &tio_saved);
done:
    nuri_store_close(s.store);
    free(store_default);
    free(lr.buf);
    free(s.cache);
    free(s.answer);
    free(tpl_src);
    if (have_dt) nuri_detok_free(&s.dt);
    nuri_reply_parser_free(s.rp);
    nuri_conv_free(&s.conv);
    nuri_spec_free(s.spec);
    nuri_sampler_free(s.smp);
    nuri_token_trie_free(s.trie);
    nuri_grammar_free(grammar);
    nuri_ctx_free(s.ctx);
    nuri_chat_format_free(s.fmt);
    nuri_model_free(s.draft);
    nuri_model_free(s.model);
    return rc;
}
