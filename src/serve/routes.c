/*
 * routes.c: the OpenAI routes of `nuri serve`: chat and text completions (whole JSON or
 * server-sent events), /v1/models and /health. The HTTP front (http.c) hands a complete request to
 * a worker thread, which runs routes_generate: parse, validate, tokenize, submit to the scheduler
 * (sched.h), then turn its tokens into text, stop-string cuts, JSON and events, blocking in short
 * waits. Between waits it looks whether the client is still there and cancels the request at once
 * when it is not.
 *
 * A client that half-closes its socket after its request is still answered. For a whole (not
 * streamed) answer nuri cannot tell such a client from one that has gone until it writes to it, so
 * on a half-close the answer's head (200, close-delimited) is sent at once: a client that has gone
 * answers that with a reset and its request is cancelled; an error after that point travels in
 * the 200's body as an OpenAI error object.
 */
#include "serve/gen.h"
#include "serve/server.h"

#include "base/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WAIT_SLICE_MS 100 // longest a worker waits for tokens before checking its client
#define EVENTS_PER_WAKE 16

/* ============================== generation ============================== */

/* One choice of a request being generated, owned by its connection. A request with n choices has
 * n of them in an array: the first owns the request (req, body) and the output buffer; the others
 * share them (owner false) and have their own job, text, parser and outcome. */
struct gen {
    serve_server *s;
    int index;       // the choice's index
    bool owner;      // owns req, body and out
    struct gen *all; // the request's choices (all[0] is the owner)
    int n_all;
    serve_job *job;
    serve_request req; // stop strings and flags (messages / prompt are no longer used)
    // the request's stop strings, then (chat) the template's end-of-turn texts; borrowed
    const char *stops[SERVE_MAX_STOP + SERVE_MAX_FORMAT_STOPS];
    size_t n_stops;
    json_t *body; // the parsed request body (req borrows from it)
    conn *c;      // the client's connection, looked at for hang-ups
    char id[48];
    long long created;
    int32_t n_prompt;
    nuri_detok detok;
    bool detok_ok;
    buf text;         // everything generated so far
    size_t n_emitted; // bytes of text already sent (streaming) / kept
    int32_t n_tokens; // completion tokens
    json_t *lp_all;   // non-streaming: every token's logprobs entry (chat) / parts (completion)
    json_t *lp_new;   // streaming: entries since the last chunk
    size_t text_offset;
    // outcome
    bool stop_hit, done, gone;
    nuri_finish_reason finish;
    int err_http;
    char err[256];
    int32_t n_cached;
    // chat replies split into content, reasoning_content and tool calls (tools in the request, or
    // a template that shows reasoning); NULL: the text is the content
    nuri_reply_parser *rp;
    nuri_reply_opts ropts; // what rp was made with, for the other choices
    // streaming state
    bool sent_role, sent_end;
    buf out; // the owner's: the stream's next bytes, for every choice
    size_t out_off;
    bool parsed_end; // gen_step: the parser's end has been handed over
};

static json_t *bytes_array(const char *s, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++) json_array_append_new(a, json_integer((unsigned char)s[i]));
    return a;
}

static json_t *token_string(const nuri_vocab *v, int32_t id, char *piece, size_t cap, size_t *plen)
{
    size_t n = nuri_token_piece(v, id, piece, cap, false);
    if (n > cap) n = cap;
    *plen = n;
    size_t sl;
    char *t = serve_utf8_sanitize(piece, n, &sl);
    json_t *j = t ? json_stringn(t, sl) : NULL;
    free(t);
    return j;
}

/* Adds one token's logprobs in the request's format. */
static void gen_add_logprobs(gen *g, const serve_event *ev)
{
    const nuri_vocab *v = serve_prompt_vocab(g->s->prompt);
    char piece[512];
    size_t plen;
    json_t *dst = g->req.stream ? g->lp_new : g->lp_all;
    if (g->req.kind == SERVE_CHAT) {
        json_t *e = json_object();
        json_object_set_new(e, "token", token_string(v, ev->token, piece, sizeof piece, &plen));
        json_object_set_new(e, "logprob", json_real(ev->lp.chosen.logprob));
        json_object_set_new(e, "bytes", bytes_array(piece, plen));
        json_t *top = json_array();
        for (int k = 0; k < ev->lp.n_top && k < g->req.top_logprobs; k++) {
            json_t *t = json_object();
            json_object_set_new(t, "token",
                                token_string(v, ev->lp.top[k].token, piece, sizeof piece, &plen));
            json_object_set_new(t, "logprob", json_real(ev->lp.top[k].logprob));
            json_object_set_new(t, "bytes", bytes_array(piece, plen));
            json_array_append_new(top, t);
        }
        json_object_set_new(e, "top_logprobs", top);
        json_array_append_new(dst, e);
    } else {
        // completions: parallel arrays; collected as objects here, split when written
        json_t *e = json_object();
        json_t *tok = token_string(v, ev->token, piece, sizeof piece, &plen);
        json_object_set_new(e, "token", tok);
        json_object_set_new(e, "logprob", json_real(ev->lp.chosen.logprob));
        json_t *top = json_object();
        for (int k = 0; k < ev->lp.n_top && k < g->req.top_logprobs; k++) {
            char p2[512];
            size_t l2;
            json_t *ts = token_string(v, ev->lp.top[k].token, p2, sizeof p2, &l2);
            if (ts)
                json_object_set_new(top, json_string_value(ts), json_real(ev->lp.top[k].logprob));
            json_decref(ts);
        }
        json_object_set_new(e, "top", top);
        json_object_set_new(e, "offset", json_integer((json_int_t)g->text_offset));
        g->text_offset += plen;
        json_array_append_new(dst, e);
    }
}

/* Completion-style logprobs from the collected entries. */
static json_t *completion_logprobs(json_t *entries, bool with_top)
{
    json_t *tokens = json_array(), *lps = json_array(), *tops = json_array(), *offs = json_array();
    size_t i;
    json_t *e;
    json_array_foreach(entries, i, e)
    {
        json_array_append(tokens, json_object_get(e, "token"));
        json_array_append(lps, json_object_get(e, "logprob"));
        json_array_append(tops, json_object_get(e, "top"));
        json_array_append(offs, json_object_get(e, "offset"));
    }
    return json_pack("{s:o,s:o,s:o,s:o}", "tokens", tokens, "token_logprobs", lps, "top_logprobs",
                     with_top ? tops : (json_decref(tops), json_null()), "text_offset", offs);
}

/* The client went away: count it once and stop generating for it. */
static void gen_gone(gen *g)
{
    if (g->all[0].gone) return;
    serve_metrics_disconnect(&g->s->metrics);
    for (int i = 0; i < g->n_all; i++) {
        g->all[i].gone = true;
        if (g->all[i].job) serve_job_cancel(g->s->sched, g->all[i].job);
    }
}

/* Waits for tokens (at most timeout_ms), turns them into text, applies stop strings. Returns the
 * number of new text bytes that may be sent (g->text[g->n_emitted - new .. g->n_emitted)). */
static size_t gen_pump(gen *g, int timeout_ms, size_t *from)
{
    serve_event ev[EVENTS_PER_WAKE];
    bool done = false;
    // streams take one token at a time, so that every token leaves in its own event
    int k = serve_job_wait(g->s->sched, g->job, ev, g->req.stream ? 1 : EVENTS_PER_WAKE, timeout_ms,
                           &done);
    for (int i = 0; i < k && !g->stop_hit; i++) {
        size_t len;
        const char *piece = nuri_detok_feed(&g->detok, ev[i].token, &len);
        buf_add(&g->text, piece, len);
        g->n_tokens++;
        if (g->req.logprobs) gen_add_logprobs(g, &ev[i]);
    }
    if (done && !g->stop_hit) {
        size_t len;
        const char *tail = nuri_detok_flush(&g->detok, &len);
        buf_add(&g->text, tail, len);
    }
    *from = g->n_emitted;
    if (g->stop_hit) return 0;
    nuri_stop_result res;
    nuri_stop_strings_check(g->text.p ? g->text.p : "", g->text.n, g->n_emitted, g->stops,
                            g->n_stops, &res);
    size_t safe = res.n_safe;
    if (res.hit) {
        g->stop_hit = true;
        g->finish = NURI_FINISH_STOP;
        serve_job_cancel(g->s->sched, g->job);
        g->done = true;
    } else if (done) {
        safe = g->text.n; // nothing more will come: what was held back is plain text
    }
    if (done && !g->done) {
        g->done = true;
        serve_job_result(g->s->sched, g->job, &g->finish, &g->err_http, g->err, sizeof g->err,
                         &g->n_cached);
    }
    if (g->done && g->stop_hit)
        serve_job_result(g->s->sched, g->job, NULL, NULL, NULL, 0, &g->n_cached);
    size_t n = safe - g->n_emitted;
    g->n_emitted = safe;
    if (!g->done && conn_gone(g->s, g->c)) {
        gen_gone(g);
    }
    return n;
}

static const char *finish_name(const gen *g)
{
    if (g->finish == NURI_FINISH_LENGTH) return "length";
    if (g->rp) {
        const nuri_reply *rep = nuri_reply_parser_reply(g->rp);
        if (rep->n_calls > 0 && !rep->error) return "tool_calls";
    }
    return "stop";
}

/* Usage of the whole request: the prompt once, the completion tokens of every choice. */
static json_t *usage_json(const gen *g)
{
    json_int_t completion = 0;
    for (int i = 0; i < g->n_all; i++) completion += g->all[i].n_tokens;
    return json_pack("{s:i,s:i,s:i,s:{s:i}}", "prompt_tokens", (json_int_t)g->n_prompt,
                     "completion_tokens", completion, "total_tokens",
                     (json_int_t)g->n_prompt + completion, "prompt_tokens_details", "cached_tokens",
                     (json_int_t)g->all[0].n_cached);
}

static json_t *text_json(const char *s, size_t n)
{
    size_t sl;
    char *t = serve_utf8_sanitize(s, n, &sl);
    json_t *j = t ? json_stringn(t, sl) : NULL;
    free(t);
    return j;
}

/* Frees a request's choices (g is all[0]). */
static void gen_free(gen *g)
{
    if (!g) return;
    for (int i = g->n_all - 1; i >= 0; i--) {
        gen *x = &g[i];
        if (x->job) {
            serve_job_cancel(x->s->sched, x->job);
            serve_job_release(x->s->sched, x->job);
        }
        if (x->detok_ok) nuri_detok_free(&x->detok);
        nuri_reply_parser_free(x->rp);
        json_decref(x->lp_all);
        json_decref(x->lp_new);
        free(x->text.p);
        if (x->owner) {
            serve_request_free(&x->req);
            json_decref(x->body);
            free(x->out.p);
        }
    }
    free(g);
}

/* Metrics count each choice's sequence: its prompt, its tokens, its reused KV (a choice after
 * the first reuses the first's prompt pages). */
static void gen_account(gen *g)
{
    serve_metrics_tokens(&g->s->metrics, g->n_prompt, g->n_tokens, g->n_cached);
}

/* ---- whole responses ---- */

/* The error the generation ended with, for the client. */
static void gen_error(gen *g, serve_error *e)
{
    bool shutting = g->err_http == 503 && atomic_load(&g->s->stopping);
    serve_fail(e, g->err_http, g->err_http >= 500 ? "server_error" : "invalid_request_error", NULL,
               shutting ? "shutting_down" : NULL, "%s", g->err);
}

static json_t *call_json(const nuri_toolcall *c)
{
    return json_pack("{s:s,s:s,s:{s:s,s:o}}", "id", c->id, "type", "function", "function", "name",
                     c->name, "arguments", text_json(c->arguments, c->arguments_len));
}

/* A whole chat reply parsed: reasoning_content and tool_calls go into msg, the content is
 * returned (null when the reply is only tool calls). A malformed call makes the whole raw text
 * the content, so that nothing the model wrote is lost. */
static json_t *reply_message(gen *g, json_t *msg)
{
    const nuri_reply_delta *d;
    size_t nd;
    if (nuri_reply_parser_feed(g->rp, g->text.p ? g->text.p : "", g->n_emitted, &d, &nd) !=
            NURI_OK ||
        nuri_reply_parser_finish(g->rp, &d, &nd) != NURI_OK)
        return text_json(g->text.p ? g->text.p : "", g->n_emitted);
    const nuri_reply *rep = nuri_reply_parser_reply(g->rp);
    if (rep->error) {
        serve_log(g->s, "%s: the reply's tool call is malformed (%s): answered as text", g->id,
                  rep->error);
        return text_json(g->text.p ? g->text.p : "", g->n_emitted);
    }
    if (rep->reasoning_len)
        json_object_set_new(msg, "reasoning_content",
                            text_json(rep->reasoning, rep->reasoning_len));
    if (rep->n_calls) {
        json_t *calls = json_array();
        for (size_t i = 0; i < rep->n_calls; i++)
            json_array_append_new(calls, call_json(&rep->calls[i]));
        json_object_set_new(msg, "tool_calls", calls);
        if (!rep->content_len) return json_null();
    }
    return text_json(rep->content, rep->content_len);
}

/* The JSON of one finished choice. */
static json_t *choice_json(gen *g)
{
    json_t *text = text_json(g->text.p ? g->text.p : "", g->n_emitted);
    json_t *choice;
    if (g->req.kind == SERVE_CHAT) {
        json_t *lp = g->req.logprobs ? json_pack("{s:O}", "content", g->lp_all) : json_null();
        json_t *msg = json_pack("{s:s}", "role", "assistant");
        if (g->rp) {
            json_decref(text);
            text = reply_message(g, msg);
        }
        json_object_set_new(msg, "content", text);
        choice = json_pack("{s:i,s:o,s:o,s:s}", "index", g->index, "message", msg, "logprobs", lp,
                           "finish_reason", finish_name(g));
    } else {
        json_t *lp =
            g->req.logprobs ? completion_logprobs(g->lp_all, g->req.top_logprobs > 0) : json_null();
        choice = json_pack("{s:o,s:i,s:o,s:s}", "text", text, "index", g->index, "logprobs", lp,
                           "finish_reason", finish_name(g));
    }
    return choice;
}

static void respond_whole(serve_server *s, conn *c, gen *all)
{
    size_t from;
    int n = all[0].n_all;
    // each choice waits a share of the slice, so that the client is looked at as often as with one
    int slice = WAIT_SLICE_MS / n > 5 ? WAIT_SLICE_MS / n : 5;
    for (;;) {
        bool running = false;
        for (int i = 0; i < n && !all[0].gone; i++) {
            if (all[i].done) continue;
            running = true;
            gen_pump(&all[i], slice, &from);
        }
        if (!running || all[0].gone) break;
        // a half-closed client: start the answer, so that a client that has gone shows itself
        if (!conn_head_sent(c) && conn_half_closed(c))
            if (!conn_reply_early_head(s, c, "application/json")) gen_gone(all);
    }
    for (int i = 0; i < n; i++) gen_account(&all[i]);
    if (all[0].gone) return; // nobody to answer
    json_t *resp = NULL;
    serve_error e;
    gen *failed = NULL;
    for (int i = 0; i < n && !failed; i++)
        if (all[i].err_http) failed = &all[i];
    if (failed) {
        gen_error(failed, &e);
    } else {
        json_t *choices = json_array();
        for (int i = 0; i < n; i++) json_array_append_new(choices, choice_json(&all[i]));
        gen *g = all;
        resp =
            json_pack("{s:s,s:s,s:I,s:s,s:s,s:o,s:o}", "id", g->id, "object",
                      g->req.kind == SERVE_CHAT ? "chat.completion" : "text_completion", "created",
                      (json_int_t)g->created, "model", s->model_name, "system_fingerprint",
                      "nuri-" NURI_VERSION, "choices", choices, "usage", usage_json(g));
        if (!resp) serve_fail(&e, 500, "server_error", NULL, NULL, "out of memory");
    }
    if (conn_head_sent(c)) { // the head went early: the body is all that is left
        char *body = resp ? json_dumps(resp, JSON_COMPACT) : serve_error_json(&e);
        json_decref(resp);
        if (body) conn_reply_body_rest(s, c, body, strlen(body));
        free(body);
        return;
    }
    if (resp)
        conn_reply_json(s, c, 200, resp);
    else
        conn_reply_error(s, c, &e);
}

/* ---- streamed responses ---- */

static bool sse_add(gen *g, json_t *v /* stolen */)
{
    char *s = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    if (!s) return false;
    buf *out = &g->all[0].out;
    bool ok = buf_add(out, "data: ", 6) && buf_add(out, s, strlen(s)) && buf_add(out, "\n\n", 2);
    free(s);
    return ok;
}

static json_t *chunk_base(gen *g)
{
    return json_pack("{s:s,s:s,s:I,s:s,s:s}", "id", g->id, "object",
                     g->req.kind == SERVE_CHAT ? "chat.completion.chunk" : "text_completion",
                     "created", (json_int_t)g->created, "model", g->s->model_name,
                     "system_fingerprint", "nuri-" NURI_VERSION);
}

/* A chunk with one choice: delta text (may be empty), logprobs since the last one, finish. */
static bool sse_choice(gen *g, const char *text, size_t n, const char *finish, bool role)
{
    json_t *ch = chunk_base(g);
    json_t *choice = json_object();
    json_object_set_new(choice, "index", json_integer(g->index));
    json_t *lp = json_null();
    if (g->req.logprobs && json_array_size(g->lp_new) > 0) {
        if (g->req.kind == SERVE_CHAT) { // hand the entries over and start a new list
            lp = json_pack("{s:o}", "content", g->lp_new);
            g->lp_new = json_array();
        } else {
            lp = completion_logprobs(g->lp_new, g->req.top_logprobs > 0);
            json_array_clear(g->lp_new);
        }
    }
    if (g->req.kind == SERVE_CHAT) {
        json_t *delta = json_object();
        if (role) json_object_set_new(delta, "role", json_string("assistant"));
        if (n || role) json_object_set_new(delta, "content", text_json(text, n));
        json_object_set_new(choice, "delta", delta);
    } else {
        json_object_set_new(choice, "text", text_json(text, n));
    }
    json_object_set_new(choice, "logprobs", lp);
    json_object_set_new(choice, "finish_reason", finish ? json_string(finish) : json_null());
    json_object_set_new(ch, "choices", json_pack("[o]", choice));
    if (g->req.include_usage) json_object_set_new(ch, "usage", json_null());
    return sse_add(g, ch);
}

/* One chunk per parsed delta (content, reasoning_content, or a tool call's start or argument
 * fragment), as OpenAI streams them; logprobs since the last chunk go with the first. */
static bool sse_deltas(gen *g, const nuri_reply_delta *d, size_t nd, bool *sent)
{
    for (size_t i = 0; i < nd; i++) {
        json_t *delta = json_object();
        if (d[i].kind == NURI_DELTA_CONTENT) {
            json_object_set_new(delta, "content", text_json(d[i].text, d[i].len));
        } else if (d[i].kind == NURI_DELTA_REASONING) {
            json_object_set_new(delta, "reasoning_content", text_json(d[i].text, d[i].len));
        } else if (d[i].kind == NURI_DELTA_CALL) {
            json_object_set_new(delta, "tool_calls",
                                json_pack("[{s:i,s:s,s:s,s:{s:o,s:s}}]", "index", d[i].index, "id",
                                          d[i].id, "type", "function", "function", "name",
                                          text_json(d[i].text, d[i].len), "arguments", ""));
        } else {
            json_object_set_new(delta, "tool_calls",
                                json_pack("[{s:i,s:{s:o}}]", "index", d[i].index, "function",
                                          "arguments", text_json(d[i].text, d[i].len)));
        }
        json_t *ch = chunk_base(g);
        json_t *lp = json_null();
        if (g->req.logprobs && json_array_size(g->lp_new) > 0) {
            lp = json_pack("{s:o}", "content", g->lp_new);
            g->lp_new = json_array();
        }
        json_object_set_new(ch, "choices",
                            json_pack("[{s:i,s:o,s:o,s:n}]", "index", g->index, "delta", delta,
                                      "logprobs", lp, "finish_reason"));
        if (g->req.include_usage) json_object_set_new(ch, "usage", json_null());
        if (!sse_add(g, ch)) return false;
        *sent = true;
    }
    return true;
}

/* Streams what the parser makes of text[from, from + n) (and its end, when the reply is done). */
static bool stream_parsed(gen *g, size_t from, size_t n)
{
    const nuri_reply_delta *d;
    size_t nd = 0;
    bool sent = false;
    if (n > 0) {
        if (nuri_reply_parser_feed(g->rp, g->text.p + from, n, &d, &nd) != NURI_OK) return false;
        if (!sse_deltas(g, d, nd, &sent)) return false;
    }
    if (g->done && !g->err_http) {
        if (nuri_reply_parser_finish(g->rp, &d, &nd) != NURI_OK) return false;
        if (!sse_deltas(g, d, nd, &sent)) return false;
        const nuri_reply *rep = nuri_reply_parser_reply(g->rp);
        if (rep->error)
            serve_log(g->s, "%s: the streamed reply's tool call is malformed (%s)", g->id,
                      rep->error);
    }
    if (!sent && g->req.logprobs && json_array_size(g->lp_new) > 0)
        return sse_choice(g, "", 0, NULL, false);
    return true;
}

/* Produces choice g's next piece of the event stream into the owner's out, waiting at most
 * timeout_ms for tokens. False: the choice has ended (or failed: *failed), or the client went. */
static bool stream_fill(gen *g, int timeout_ms, bool *failed)
{
    if (g->sent_end) return false;
    if (!g->sent_role) {
        g->sent_role = true;
        if (g->req.kind == SERVE_CHAT) return sse_choice(g, "", 0, NULL, true);
    }
    size_t from, n = gen_pump(g, timeout_ms, &from);
    if (g->gone) return false;
    if (g->rp) {
        if (!stream_parsed(g, from, n)) return false;
    } else if (n > 0 || (g->req.logprobs && json_array_size(g->lp_new) > 0)) {
        if (!sse_choice(g, g->text.p + from, n, NULL, false)) return false;
    }
    if (!g->done) return true;
    g->sent_end = true;
    gen_account(g);
    if (g->err_http) {
        *failed = true;
        return false;
    }
    sse_choice(g, "", 0, finish_name(g), false);
    return false;
}

/* The stream's end: an error that came after the stream began travels inside it; else the usage
 * (when asked for) and [DONE]. */
static bool stream_end(gen *all, gen *failed)
{
    buf *out = &all[0].out;
    if (failed) {
        serve_error e;
        gen_error(failed, &e);
        char *body = serve_error_json(&e);
        bool ok = body && buf_add(out, "data: ", 6) && buf_add(out, body, strlen(body)) &&
                  buf_add(out, "\n\ndata: [DONE]\n\n", 16);
        free(body);
        return ok;
    }
    if (all[0].req.include_usage) {
        json_t *ch = chunk_base(all);
        json_object_set_new(ch, "choices", json_array());
        json_object_set_new(ch, "usage", usage_json(all));
        if (!sse_add(all, ch)) return false;
    }
    return buf_add(out, "data: [DONE]\n\n", 14);
}

/* Sends the event stream until every choice has ended or the client goes. Choices take turns;
 * each chunk names its choice's index. */
static void respond_stream(serve_server *s, conn *c, gen *all)
{
    if (!conn_stream_begin(s, c, 200, "text/event-stream")) {
        gen_gone(all);
        return;
    }
    int n = all[0].n_all;
    int slice = WAIT_SLICE_MS / n > 5 ? WAIT_SLICE_MS / n : 5;
    gen *failed = NULL;
    buf *out = &all[0].out;
    for (;;) {
        bool running = false;
        for (int i = 0; i < n && !failed && !all[0].gone; i++) {
            out->n = 0;
            bool f = false;
            bool more = stream_fill(&all[i], slice, &f);
            if (f) failed = &all[i];
            running |= more;
            if (all[0].gone) return;
            if (out->n && !conn_stream_write(s, c, out->p, out->n)) {
                gen_gone(all);
                return;
            }
        }
        if (!running || failed) break;
    }
    if (failed) // the others stop: the stream ends with the error
        for (int i = 0; i < n; i++)
            if (all[i].job) serve_job_cancel(s->sched, all[i].job);
    out->n = 0;
    if (!stream_end(all, failed) || (out->n && !conn_stream_write(s, c, out->p, out->n)) ||
        !conn_stream_end(s, c))
        gen_gone(all);
}

/* ============================== the completion routes ============================== */

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Fills e for gen_begin's caller; returns NULL. */
static gen *fail_gen(serve_error *e, int http, const char *param, const char *code, const char *fmt,
                     ...) __attribute__((format(printf, 5, 6)));
static gen *fail_gen(serve_error *e, int http, const char *param, const char *code, const char *fmt,
                     ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    serve_fail(e, http, http >= 500 ? "server_error" : "invalid_request_error", param, code, "%s",
               msg);
    return NULL;
}

/* Answers an error from a worker; always "done" for the caller. */
static void fail_request(serve_server *s, conn *c, int http, const char *param, const char *code,
                         const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void fail_request(serve_server *s, conn *c, int http, const char *param, const char *code,
                         const char *fmt, ...)
{
    serve_error e;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    serve_fail(&e, http, http >= 500 ? "server_error" : "invalid_request_error", param, code, "%s",
               msg);
    conn_reply_error(s, c, &e);
}

/* Whether the model writes its tool calls with control tokens ([TOOL_CALLS], <|python_tag|>,
 * DeepSeek's markers), which the reply parser must see as text. */
static unsigned detok_flags(const gen *g)
{
    if (!g->rp || g->req.tool_choice == SERVE_TOOLS_NONE) return 0;
    switch (serve_prompt_syntax(g->s->prompt)->format) {
    case NURI_TOOLCALL_LLAMA3:
    case NURI_TOOLCALL_MISTRAL:
    case NURI_TOOLCALL_MISTRAL_ARGS:
    case NURI_TOOLCALL_DEEPSEEK_R1:
        return NURI_DETOK_SPECIAL;
    default:
        return 0;
    }
}

/* Chat: the reply parser (tools, or a template that shows reasoning), and for tool_choice
 * "required" / a named function (or "auto" with a response_format) the grammar that makes the
 * reply valid calls. False with a 400 in e when a tool's schema cannot be enforced. */
static bool setup_reply(gen *g, const serve_prompt_info *info, bool always_parse, serve_error *e)
{
    bool in_reasoning = info->opens_reasoning;
    serve_request *r = &g->req;
    const serve_prompt *p = g->s->prompt;
    if (r->kind != SERVE_CHAT) return true;
    const nuri_chat_syntax *syn = serve_prompt_syntax(p);
    bool tools = r->tool_choice != SERVE_TOOLS_NONE;
    if (!tools && !serve_prompt_shows_reasoning(p) && !in_reasoning && !always_parse) return true;
    nuri_reply_opts o = {.syntax = *syn, .in_reasoning = in_reasoning, .tools = r->tools};
    if (!tools) o.syntax.format = NURI_TOOLCALL_NONE;
    if (!serve_prompt_shows_reasoning(p) && !in_reasoning) o.syntax.think_open = NULL;
    uint64_t x = (uint64_t)atomic_fetch_add(&g->s->id_counter, 1) ^ (uint64_t)time(NULL) << 20;
    o.id_seed = splitmix(&x);
    if (nuri_reply_parser_new(&o, &g->rp) != NURI_OK)
        return serve_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    g->ropts = o;
    bool forced = r->tool_choice == SERVE_TOOLS_REQUIRED || r->tool_choice == SERVE_TOOLS_NAMED;
    if (!forced && !(r->tool_choice == SERVE_TOOLS_AUTO && r->answer_schema)) return true;
    nuri_toolcall_grammar_opts go = {
        .format = syn->format,
        .syntax = o.syntax.think_open ? &o.syntax : NULL,
        .tools = r->tools,
        .only = r->tool_choice == SERVE_TOOLS_NAMED ? r->tool_name : NULL,
        .parallel = r->parallel_tool_calls,
        .in_reasoning = in_reasoning,
        // reasoning before the calls, unless the prompt turned thinking off
        .reasoning_allowed = serve_prompt_shows_reasoning(p) && !info->skips_reasoning,
        .answer_schema = forced ? NULL : r->answer_schema,
    };
    char *text = NULL, param[160];
    size_t len = 0;
    nuri_status st = nuri_toolcall_grammar(&go, &text, &len, param, sizeof param);
    nuri_grammar *gr = NULL;
    if (st == NURI_OK) {
        st = nuri_grammar_parse(text, len, &gr);
        if (st == NURI_ERR_FORMAT) { // the generator writes valid GBNF: left recursion via $ref
            snprintf(param, sizeof param, "tools");
            st = NURI_ERR_UNSUPPORTED;
        }
    }
    free(text);
    if (st == NURI_ERR_NOMEM)
        return serve_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    if (st != NURI_OK)
        return serve_fail(e, 400, "invalid_request_error", param[0] ? param : "tools",
                          st == NURI_ERR_UNSUPPORTED ? "unsupported_schema" : "invalid_value", "%s",
                          nuri_last_error());
    nuri_grammar_free(r->grammar);
    r->grammar = gr;
    return true;
}

gen *gen_begin(serve_server *s, conn *c, json_t *root, serve_kind kind, const gen_opts *o,
               double t_arrival, serve_error *e)
{
    bool always_parse = o && o->always_parse;
    gen *g = calloc(1, sizeof *g);
    if (!g) {
        json_decref(root);
        return fail_gen(e, 500, NULL, NULL, "out of memory");
    }
    g->s = s;
    g->body = root;
    g->c = c;
    g->owner = true;
    g->all = g;
    g->n_all = 1;
    if (!serve_request_parse(root, kind, s->n_vocab, &g->req, e)) {
        gen_free(g);
        return NULL;
    }
    int32_t *ids = NULL, n_ids = 0;
    serve_prompt_info info;
    if (!serve_prompt_tokens(s->prompt, &g->req, &ids, &n_ids, &info, e) ||
        !setup_reply(g, &info, always_parse, e)) {
        free(ids);
        gen_free(g);
        return NULL;
    }
    const char *pparam = kind == SERVE_CHAT ? "messages" : "prompt";
    int32_t seq_max = serve_sched_seq_max(s->sched);
    if (n_ids == 0) {
        free(ids);
        gen_free(g);
        return fail_gen(e, 400, pparam, "invalid_value", "the prompt is empty (0 tokens)");
    }
    if (n_ids >= seq_max) {
        free(ids);
        gen_free(g);
        return fail_gen(e, 400, pparam, "context_length_exceeded",
                        "the prompt is %d tokens long, but a sequence holds at most %d tokens "
                        "(prompt and completion together)",
                        n_ids, seq_max);
    }
    if (g->req.max_tokens > 0 && (int64_t)n_ids + g->req.max_tokens > seq_max) {
        int32_t mt = g->req.max_tokens;
        free(ids);
        gen_free(g);
        return fail_gen(e, 400, "max_tokens", "context_length_exceeded",
                        "the prompt (%d tokens) and max_tokens (%d) come to %lld tokens, but "
                        "a sequence holds at most %d tokens; ask for at most %d new tokens",
                        n_ids, mt, (long long)n_ids + mt, seq_max, seq_max - n_ids);
    }
    int32_t max_new = seq_max - n_ids;
    if (g->req.max_tokens > 0) max_new = g->req.max_tokens;

    // a chat answer ends as in `nuri chat`: on the template family's end-of-turn marker too
    size_t n_fmt_stops;
    const char *const *fmt_stops = serve_prompt_stop_texts(s->prompt, kind, &n_fmt_stops);
    for (int i = 0; i < g->req.n_stop; i++) g->stops[g->n_stops++] = g->req.stop[i];
    for (size_t i = 0; i < n_fmt_stops && i < SERVE_MAX_FORMAT_STOPS; i++)
        g->stops[g->n_stops++] = fmt_stops[i];
    // n choices: one job each, the same prompt (the scheduler shares its KV pages between them)
    int n_choices = g->req.n_choices > 1 ? g->req.n_choices : 1;
    if (n_choices > 1) {
        gen *more = realloc(g, (size_t)n_choices * sizeof *g);
        if (!more) {
            free(ids);
            gen_free(g);
            return fail_gen(e, 500, NULL, NULL, "out of memory");
        }
        g = more;
        memset(g + 1, 0, (size_t)(n_choices - 1) * sizeof *g);
        g->all = g;
    }
    nuri_sampler_params sp = g->req.sp;
    int32_t n_stop_tok;
    sp.stop_tokens = serve_prompt_stop_tokens(s->prompt, kind, &n_stop_tok);
    sp.n_stop_tokens = n_stop_tok;
    sp.max_tokens = max_new;
    int32_t whole = max_new < NURI_SAMPLER_MAX_LAST_N ? max_new : NURI_SAMPLER_MAX_LAST_N;
    if (sp.frequency_penalty != 0 || sp.presence_penalty != 0) sp.penalty_last_n = whole;
    if (sp.repetition_penalty != 1 && sp.penalty_last_n == 0)
        sp.penalty_last_n = g->req.repeat_last_n < 0 ? whole : g->req.repeat_last_n;
    if (!g->req.seed_given) {
        uint64_t x = (uint64_t)time(NULL) ^ ((uint64_t)atomic_fetch_add(&s->id_counter, 1) << 32);
        sp.seed = splitmix(&x);
    }
    sp.grammar = g->req.grammar; // the sampler takes its own reference
    sp.grammar_tokens = s->grammar_trie;
    g->n_prompt = n_ids;
    g->created = (long long)time(NULL);
    uint64_t x = (uint64_t)atomic_fetch_add(&s->id_counter, 1) * 0x9E3779B97F4A7C15ull ^
                 (uint64_t)time(NULL);
    snprintf(g->id, sizeof g->id, "%s%016llx", kind == SERVE_CHAT ? "chatcmpl-" : "cmpl-",
             (unsigned long long)splitmix(&x));
    for (int i = 0; i < n_choices; i++) {
        gen *ch = &g[i];
        if (i > 0) { // the request's shared parts, borrowed from the first choice
            ch->s = s;
            ch->c = c;
            ch->req = g->req;
            ch->body = g->body;
            memcpy(ch->stops, g->stops, sizeof ch->stops);
            ch->n_stops = g->n_stops;
            memcpy(ch->id, g->id, sizeof ch->id);
            ch->created = g->created;
            ch->n_prompt = g->n_prompt;
            ch->ropts = g->ropts;
            if (g->rp && nuri_reply_parser_new(&ch->ropts, &ch->rp) != NURI_OK) ch->rp = NULL;
        }
        ch->index = i;
        ch->all = g;
        ch->n_all = i + 1; // (gen_free frees what was made so far)
        g->n_all = i + 1;
        nuri_sampler_params spi = sp;
        spi.seed = sp.seed + (uint64_t)i; // choices sample apart (all equal when greedy)
        nuri_sampler *smp = NULL;
        if (nuri_sampler_new(&spi, s->n_vocab, &smp) != NURI_OK) {
            free(ids);
            gen_free(g);
            return fail_gen(e, 400, NULL, "invalid_value", "%s", nuri_last_error());
        }
        int32_t *pids = i == n_choices - 1 ? ids : malloc((size_t)n_ids * sizeof *ids);
        if (pids && pids != ids) memcpy(pids, ids, (size_t)n_ids * sizeof *ids);
        if (pids)
            ch->job = serve_job_new(pids, n_ids, smp); // (which frees both when it fails)
        else
            nuri_sampler_free(smp);
        if (!ch->job || (g->rp && !ch->rp) || !(ch->lp_all = json_array()) ||
            !(ch->lp_new = json_array()) ||
            nuri_detok_init(&ch->detok, serve_prompt_vocab(s->prompt), detok_flags(g)) != NURI_OK) {
            if (i < n_choices - 1) free(ids);
            gen_free(g);
            return fail_gen(e, 500, NULL, NULL, "out of memory");
        }
        ch->detok_ok = true;
        if (i == 0 && o && o->kv_in && o->kv_in->kv) { // the job owns the snapshot now
            ch->job->kv_in = o->kv_in->kv;
            ch->job->kv_in_tokens = o->kv_in->tokens;
            ch->job->kv_in_n = o->kv_in->n;
            memset(o->kv_in, 0, sizeof *o->kv_in);
        }
        if (i == 0 && o) ch->job->want_kv = o->want_kv;
        ch->job->max_new = max_new;
        ch->job->want_logprobs = g->req.logprobs;
        ch->job->t_arrival = t_arrival;
    }
    for (int i = 0; i < n_choices; i++) g[i].n_all = n_choices;
    // the other choices go in once the first has its prompt in the KV cache, so that they fork
    // its pages instead of computing the prompt again
    nuri_status sub = NURI_OK;
    for (int i = 0; i < n_choices && sub == NURI_OK && !atomic_load(&s->draining); i++) {
        sub = serve_sched_submit(s->sched, g[i].job);
        if (i == 0 && n_choices > 1)
            while (sub == NURI_OK && !serve_job_wait_first(s->sched, g[0].job, WAIT_SLICE_MS))
                if (conn_gone(s, c)) {
                    gen_gone(g);
                    gen_free(g);
                    e->http = 0; // nobody to answer
                    return NULL;
                }
    }
    if (atomic_load(&s->draining) || sub != NURI_OK) {
        bool shutting = atomic_load(&s->draining);
        gen_free(g);
        if (shutting) return fail_gen(e, 503, NULL, "shutting_down", "the server is shutting down");
        return fail_gen(e, 503, NULL, "queue_full",
                        "the server is busy: every sequence is in use and the queue is full; "
                        "retry after a moment");
    }
    return g;
}

void routes_generate(serve_server *s, conn *c, serve_kind kind)
{
    const http_request *rq = conn_request(c);
    double t_arrival = serve_now();
    json_error_t je;
    json_t *root = json_loadb(rq->body, rq->body_len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return fail_request(s, c, 400, NULL, "invalid_json",
                            "the request body is not valid JSON: %s (line %d, column %d)", je.text,
                            je.line, je.column);
    serve_error e;
    gen *g = gen_begin(s, c, root, kind, NULL, t_arrival, &e);
    if (!g) {
        if (e.http) conn_reply_error(s, c, &e);
        return;
    }
    if (g->req.stream)
        respond_stream(s, c, g);
    else
        respond_whole(s, c, g);
    gen_free(g);
}

/* ============================== the gen API (gen.h) ============================== */

bool gen_step(gen *g, int timeout_ms, const nuri_reply_delta **d, size_t *nd, bool *done)
{
    *d = NULL;
    *nd = 0;
    *done = false;
    if (g->gone) return false;
    if (g->done) { // the text is all in: the parser's end, once
        if (!g->parsed_end) {
            g->parsed_end = true;
            gen_account(g);
            if (!g->err_http && nuri_reply_parser_finish(g->rp, d, nd) != NURI_OK) {
                g->err_http = 500;
                snprintf(g->err, sizeof g->err, "out of memory");
            }
            if (*nd) return true;
        }
        *done = true;
        return true;
    }
    size_t from, n = gen_pump(g, timeout_ms, &from);
    if (g->gone) return false;
    if (n > 0 && nuri_reply_parser_feed(g->rp, g->text.p + from, n, d, nd) != NURI_OK) {
        serve_job_cancel(g->s->sched, g->job);
        g->done = true;
        g->err_http = 500;
        snprintf(g->err, sizeof g->err, "out of memory");
    }
    return true;
}

const nuri_reply *gen_reply(const gen *g)
{
    return nuri_reply_parser_reply(g->rp);
}

const char *gen_finish(const gen *g)
{
    return finish_name(g);
}

void gen_usage(const gen *g, int32_t *prompt, int32_t *completion, int32_t *cached)
{
    *prompt = g->n_prompt;
    *completion = g->n_tokens;
    *cached = g->n_cached;
}

bool gen_error_of(const gen *g, serve_error *e)
{
    if (!g->err_http) return false;
    gen_error((gen *)g, e);
    return true;
}

const serve_request *gen_request(const gen *g)
{
    return &g->req;
}

bool gen_take_kv(gen *g, nuri_kv_snapshot *out)
{
    memset(out, 0, sizeof *out);
    serve_job *j = g->job;
    // done: the reader saw the job end, after the scheduler set kv_out (under its lock)
    if (!j || !g->done || !j->kv_out) return false;
    out->tokens = j->kv_out_tokens;
    out->n = j->kv_out_n;
    out->kv = j->kv_out;
    out->kv_bytes = (size_t)j->kv_out_n * serve_kv_bytes_per_token(g->s->sched);
    j->kv_out = NULL;
    j->kv_out_tokens = NULL;
    return true;
}

int gen_kv_source(const gen *g)
{
    return g->job ? g->job->kv_source : SERVE_KV_NONE;
}

void gen_cancel(gen *g)
{
    gen_gone(g);
}

void gen_end(gen *g)
{
    gen_free(g);
}

/* ============================== small routes ============================== */

char *routes_health(serve_server *s, int *status)
{
    serve_error e;
    enum load_state st = server_state(s);
    if (atomic_load(&s->draining))
        serve_fail(&e, 503, "server_error", NULL, "shutting_down", "the server is shutting down");
    else if (st == LOAD_FAILED)
        serve_fail(&e, 503, "server_error", NULL, "model_load_failed",
                   "the model failed to load: %s", s->load_error);
    else if (st == LOAD_LOADING)
        serve_fail(&e, 503, "server_error", NULL, "model_loading",
                   "the model is still loading; retry after a moment");
    else {
        *status = 200;
        return strdup("{\"status\":\"ok\"}");
    }
    *status = 503;
    return serve_error_json(&e);
}

char *routes_models(serve_server *s, const char *id, int *status)
{
    // context_length (a nuri extension): the most tokens one request's prompt and output may hold
    json_t *m = json_pack("{s:s,s:s,s:I,s:s,s:i}", "id", s->model_name, "object", "model",
                          "created", (json_int_t)s->metrics.started, "owned_by", "nuri",
                          "context_length", (int)serve_sched_seq_max(s->sched));
    if (!m) return NULL;
    json_t *out = m;
    *status = 200;
    if (id && strcmp(id, s->model_name)) {
        json_decref(m);
        serve_error e;
        serve_fail(&e, 404, "invalid_request_error", "model", "model_not_found",
                   "the model '%.100s' does not exist; this server has '%s'", id, s->model_name);
        *status = 404;
        return serve_error_json(&e);
    }
    if (!id) out = json_pack("{s:s,s:[o]}", "object", "list", "data", m);
    char *text = out ? json_dumps(out, JSON_COMPACT) : NULL;
    json_decref(out);
    return text;
}
