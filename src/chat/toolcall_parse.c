/*
 * toolcall_parse.c: splits a model's reply into content, reasoning and tool calls, whole or as it
 * streams in (see toolcall.h for the formats and the API).
 *
 * One machine serves both: the whole reply is the streamed reply fed in one piece, so the two
 * cannot disagree. Input is appended to `buf`; the parser is in one of three modes:
 *
 *   text (content or reasoning)  scans for markers (think tags, the format's call openers, and a
 *                                bare '{' at the start of the answer for llama3 / generic). Text
 *                                before a marker goes out; a possible start of a marker at the
 *                                end of buf is held, and so is trailing whitespace (whitespace next
 *                                to markers and at the ends is dropped).
 *   call                         a byte-at-a-time machine per format. Until a call's name is
 *                                known the block is tentative: buf keeps its bytes, and if it
 *                                breaks they go out as text (a `<tool_call>` followed by prose is
 *                                prose). Once the name is known the call is committed: its
 *                                CALL delta goes out, its arguments stream as they are scanned,
 *                                and a break is an error in the reply, with the rest as text.
 *
 * Nothing here trusts the text: every name, tag and key is bounded, arguments are checked with
 * jansson when they end, and no input makes the machine loop without consuming a byte.
 */
#include "base/status.h"
#include "base/strbuf.h"
#include "chat/toolcall.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* ---- the parser ---- */

enum { M_CONTENT, M_REASONING, M_CALL };

/* what call_byte says about one byte */
enum { C_MORE, C_AGAIN, C_DONE, C_DONE_AGAIN, C_FAIL };

/* a JSON value being skipped or streamed: only its extent is tracked (jansson checks it after) */
typedef struct jscan {
    int depth;
    char kind; // 'o': object or array, 's': string, 'a': number / true / false / null
    bool in_str, esc;
} jscan;

enum { JS_MORE, JS_END, JS_END_AGAIN };

/* the JSON object of a call: {"name": N, "arguments": {...}} (also "parameters", "id", "type") */
enum {
    OB_OPEN,
    OB_KEY_OR_END,
    OB_KEY_START,
    OB_KEY,
    OB_KEY_ESC,
    OB_COLON,
    OB_VALUE,
    OB_NAME,
    OB_NAME_ESC,
    OB_ARGS,
    OB_SKIP,
    OB_AFTER
};
enum { K_NAME, K_ARGS, K_KNOWN, K_OTHER };

/* the states of the per-format machines */
enum {
    H_OBJ,   // hermes / exaone4: the object
    H_CLOSE, // then </tool_call>
    L_OBJ,   // llama3 / generic: the object
    L_AFTER, // then an optional ';'
    MN_OPEN, // mistral: '[' (or a name: the [ARGS] form)
    MN_OBJ,
    MN_NEXT, // ',' or ']'
    MA_NAME, // mistral-args: NAME up to [ARGS] or [CALL_ID]
    MA_ID,
    MA_ARGS_START,
    MA_ARGS,
    X_OPEN, // qwen-xml: <function=NAME>
    X_FTAG,
    X_BODY, // <parameter=K> or </function>
    X_BTAG,
    X_VALUE,
    X_END,  // </tool_call>
    A_NAME, // arg-key: NAME\n
    A_BODY, // <arg_key>, <arguments> or </tool_call>
    A_TAG,
    A_KEY,
    A_VWS,
    A_VTAG,
    A_VALUE,
    A_ARGS,
    D_TYPE, // deepseek-r1: TYPE<｜tool▁sep｜>NAME\n```json\n{...}\n```<｜tool▁call▁end｜>
    D_NAME,
    D_FENCE,
    D_FENCE_LINE,
    D_ARGS_START,
    D_ARGS,
    D_AFTER,
    D_ETAG,
    D_NEXT,
    D_NTAG,
};

#define DS_CALLS_BEGIN NURI_DEEPSEEK_CALLS_BEGIN
#define DS_CALLS_END NURI_DEEPSEEK_CALLS_END
#define DS_CALL_BEGIN NURI_DEEPSEEK_CALL_BEGIN
#define DS_CALL_END NURI_DEEPSEEK_CALL_END
#define DS_SEP NURI_DEEPSEEK_SEP

#define MAX_TAG (NURI_TOOLCALL_MAX_NAME + 32) // bytes of a <...> tag
// bytes a block may run before its first call starts; past it, it is text. This bounds the work of
// re-scanning when tentative blocks break late (each break gives back only its marker).
#define MAX_TENTATIVE 16384

/* a marker that text mode looks for */
typedef struct marker {
    const char *s; // NULL: a bare '{' at the start of the answer
    size_t n;
    int kind;  // MK_*
    int state; // MK_CALL: the machine's first state
} marker;
enum { MK_THINK_OPEN, MK_THINK_CLOSE, MK_CALL };

typedef struct pcall {
    char id[32];
    nuri_sb name;
    nuri_sb args;
} pcall;

typedef struct pev {
    int kind, index;
    size_t off, len; // text in evtext
    size_t id_off;   // CALL: the id in evtext
} pev;

struct nuri_reply_parser {
    nuri_reply_opts o;
    bool harmony; // the harmony machine runs instead of text / call modes
    struct {
        int st;     // HM_*
        int target; // HM_BODY: M_CONTENT, M_REASONING or M_CALL
    } hm;
    marker mk[6];
    int n_mk;
    bool first_byte[256]; // bytes that can start a marker

    int mode;
    bool skip_ws;  // dropping the whitespace that opens a text section
    bool finished; // nuri_reply_parser_finish was called
    bool nomem;
    nuri_sb buf; // input not yet consumed
    nuri_sb ws;  // trailing whitespace held back in text mode

    // the call machine
    struct {
        int st;
        int from;         // M_CONTENT / M_REASONING: where the block returns
        size_t pos;       // next byte of buf to look at
        size_t revert;    // bytes of buf given back as text if the block breaks before a call
        bool committed;   // a call of this block started
        bool open;        // the last call is still open
        bool single;      // mistral: one object without the list
        bool outer;       // deepseek: inside <｜tool▁calls▁begin｜>
        bool args_whole;  // arg-key: arguments came as one <arguments> JSON
        int ost, keykind; // the object machine
        char key[16];
        size_t key_n;
        bool have_name, have_args, args_str;
        jscan js;
        size_t lit_i; // bytes of "</tool_call>" matched
        int nparams;
        bool ate_fail;   // the byte that broke the block is already part of the arguments
        bool bare;       // llama3 / generic: a '{' without a marker (see begin_call)
        const char *why; // why the block broke
    } c;
    struct {              // the call machine's buffers (kept across blocks)
        nuri_sb name, id; // the function name; the model's call id (mistral-args)
        nuri_sb pre;      // arguments seen before the name
        nuri_sb val;      // a value, a quoted name, or string-encoded arguments being collected
        nuri_sb tag;      // a <...> tag being collected
        nuri_sb pkey;     // the parameter a value belongs to (qwen-xml, arg-key)
    } cb;

    // the reply
    nuri_sb content, reasoning, error;
    pcall *calls;
    size_t n_calls, cap_calls;
    nuri_reply view;
    nuri_toolcall *view_calls;

    // this call's deltas
    pev *ev;
    size_t n_ev, cap_ev;
    nuri_sb evtext;
    nuri_reply_delta *deltas;
    size_t cap_deltas;
};

/* ---- output ---- */

static void put(nuri_reply_parser *p, nuri_sb *b, const void *s, size_t n)
{
    if (!nuri_sb_add(b, s, n)) p->nomem = true;
}

static void ev_add(nuri_reply_parser *p, int kind, int index, const char *s, size_t n,
                   const char *id)
{
    if (p->nomem) return;
    if (kind != NURI_DELTA_CALL && p->n_ev && p->ev[p->n_ev - 1].kind == kind &&
        p->ev[p->n_ev - 1].index == index) {
        put(p, &p->evtext, s, n);
        p->ev[p->n_ev - 1].len += n;
        return;
    }
    if (p->n_ev == p->cap_ev) {
        size_t cap = p->cap_ev ? 2 * p->cap_ev : 16;
        pev *e = realloc(p->ev, cap * sizeof *e);
        if (!e) {
            p->nomem = true;
            return;
        }
        p->ev = e;
        p->cap_ev = cap;
    }
    pev *e = &p->ev[p->n_ev++];
    *e = (pev){.kind = kind, .index = index};
    if (id) {
        e->id_off = p->evtext.n;
        put(p, &p->evtext, id, strlen(id) + 1);
    }
    e->off = p->evtext.n;
    e->len = n;
    put(p, &p->evtext, s, n);
}

static void emit_text(nuri_reply_parser *p, int mode, const char *s, size_t n)
{
    if (!n) return;
    if (mode == M_REASONING) {
        put(p, &p->reasoning, s, n);
        ev_add(p, NURI_DELTA_REASONING, 0, s, n, NULL);
    } else {
        put(p, &p->content, s, n);
        ev_add(p, NURI_DELTA_CONTENT, 0, s, n, NULL);
    }
}

/* Text of a section: the whitespace that opens it is dropped, the whitespace that ends it held. */
static void text_out(nuri_reply_parser *p, int mode, const char *s, size_t n)
{
    if (p->skip_ws) {
        while (n && is_ws(*s)) s++, n--;
        if (!n) return;
        p->skip_ws = false;
    }
    size_t e = n;
    while (e && is_ws(s[e - 1])) e--;
    if (e) {
        emit_text(p, mode, p->ws.p, p->ws.n);
        p->ws.n = 0;
        emit_text(p, mode, s, e);
    }
    put(p, &p->ws, s + e, n - e);
}

/* Text that is known to be text, whatever it looks like (a marker that broke). */
static void text_raw(nuri_reply_parser *p, int mode, const char *s, size_t n)
{
    emit_text(p, mode, p->ws.p, p->ws.n);
    p->ws.n = 0;
    emit_text(p, mode, s, n);
    p->skip_ws = false;
}

static void consume(nuri_reply_parser *p, size_t n)
{
    if (!n) return;
    memmove(p->buf.p, p->buf.p + n, p->buf.n - n);
    p->buf.n -= n;
    if (p->buf.p) p->buf.p[p->buf.n] = 0;
}

/* ---- calls ---- */

static pcall *cur_call(nuri_reply_parser *p)
{
    return &p->calls[p->n_calls - 1];
}

/* Opens call n_calls with the name in c.name (and the model's id in c.id, if any): the CALL
 * delta; the block is committed from here. False (with c.why) when there are too many. */
static bool open_call(nuri_reply_parser *p)
{
    if (p->n_calls >= NURI_TOOLCALL_MAX_CALLS) {
        p->c.why = "more tool calls than nuri accepts in one reply ("
                   "1024"
                   ")";
        return false;
    }
    if (p->n_calls == p->cap_calls) {
        size_t cap = p->cap_calls ? 2 * p->cap_calls : 4;
        pcall *c = realloc(p->calls, cap * sizeof *c);
        if (!c) {
            p->nomem = true;
            return false;
        }
        p->calls = c;
        p->cap_calls = cap;
    }
    pcall *c = &p->calls[p->n_calls++];
    memset(c, 0, sizeof *c);
    if (p->cb.id.n)
        snprintf(c->id, sizeof c->id, "%s", p->cb.id.p);
    else
        nuri_toolcall_id(p->o.syntax.format, p->o.id_seed, (uint32_t)(p->n_calls - 1), c->id);
    put(p, &c->name, p->cb.name.p ? p->cb.name.p : "", p->cb.name.n);
    p->ws.n = 0; // whitespace before a call is not content
    p->c.committed = p->c.open = true;
    ev_add(p, NURI_DELTA_CALL, (int)p->n_calls - 1, c->name.p ? c->name.p : "", c->name.n, c->id);
    return true;
}

static void args_put(nuri_reply_parser *p, const char *s, size_t n)
{
    if (!p->c.open) {
        put(p, &p->cb.pre, s, n);
        return;
    }
    put(p, &cur_call(p)->args, s, n);
    ev_add(p, NURI_DELTA_ARGS, (int)p->n_calls - 1, s, n, NULL);
}

static void close_call(nuri_reply_parser *p)
{
    p->c.open = false;
}

/* Whether s[0..n) is one JSON value (object_only: an object). */
static bool valid_json(const char *s, size_t n, bool object_only)
{
    json_t *j = json_loadb(s, n, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL | JSON_ALLOW_NUL, NULL);
    bool ok = j && (!object_only || json_is_object(j));
    json_decref(j);
    return ok;
}

/* s[0..n) as a JSON string (json.dumps escaping) appended to b. */
static void json_str(nuri_reply_parser *p, nuri_sb *b, const char *s, size_t n)
{
    put(p, b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        char esc[8] = {0};
        if (ch == '"' || ch == '\\')
            esc[0] = '\\', esc[1] = (char)ch;
        else if (ch == '\n')
            strcpy(esc, "\\n");
        else if (ch == '\r')
            strcpy(esc, "\\r");
        else if (ch == '\t')
            strcpy(esc, "\\t");
        else if (ch == '\b')
            strcpy(esc, "\\b");
        else if (ch == '\f')
            strcpy(esc, "\\f");
        else if (ch < 0x20)
            snprintf(esc, sizeof esc, "\\u%04x", ch);
        if (esc[0]) {
            put(p, b, s + run, i - run);
            put(p, b, esc, strlen(esc));
            run = i + 1;
        }
    }
    put(p, b, s + run, n - run);
    put(p, b, "\"", 1);
}

/* Whether the request's schema says parameter `key` of the current call's function is a string
 * (type "string", or a list of types whose only non-null one is "string"). */
static bool param_is_string(nuri_reply_parser *p, const char *key)
{
    if (!json_is_array(p->o.tools)) return false;
    const char *name = cur_call(p)->name.p ? cur_call(p)->name.p : "";
    size_t i;
    json_t *t;
    json_array_foreach(p->o.tools, i, t)
    {
        json_t *fn = json_object_get(t, "function");
        if (!fn) fn = t;
        json_t *nm = json_object_get(fn, "name");
        if (!json_is_string(nm) || strcmp(json_string_value(nm), name)) continue;
        json_t *type = json_object_get(
            json_object_get(json_object_get(json_object_get(fn, "parameters"), "properties"), key),
            "type");
        if (json_is_string(type)) return !strcmp(json_string_value(type), "string");
        if (!json_is_array(type)) return false;
        bool str = false;
        size_t k;
        json_t *ty;
        json_array_foreach(type, k, ty)
        {
            if (!json_is_string(ty)) return false;
            if (!strcmp(json_string_value(ty), "string"))
                str = true;
            else if (strcmp(json_string_value(ty), "null"))
                return false;
        }
        return str;
    }
    return false;
}

/* One parameter of the XML-like formats: {"key": value, ... */
static void param_emit(nuri_reply_parser *p, const char *key, size_t kn, const char *v, size_t vn)
{
    nuri_sb f = {0};
    put(p, &f, p->c.nparams ? ", " : "{", p->c.nparams ? 2 : 1);
    json_str(p, &f, key, kn);
    put(p, &f, ": ", 2);
    char *k = strndup(key, kn);
    if (!k) p->nomem = true;
    size_t a = 0, e = vn;
    while (a < e && is_ws(v[a])) a++;
    while (e > a && is_ws(v[e - 1])) e--;
    if (k && !param_is_string(p, k) && e > a && valid_json(v + a, e - a, false))
        put(p, &f, v + a, e - a);
    else
        json_str(p, &f, v, vn);
    free(k);
    if (f.p) args_put(p, f.p, f.n);
    nuri_sb_free(&f);
    p->c.nparams++;
}

static void close_params(nuri_reply_parser *p)
{
    if (!p->c.args_whole) {
        if (p->c.nparams)
            args_put(p, "}", 1);
        else
            args_put(p, "{}", 2);
    }
    close_call(p);
}

/* A name of a function or parameter: non-empty, bounded, no whitespace, quotes or angle
 * brackets. */
static bool good_name(const char *s, size_t n)
{
    if (n == 0 || n > NURI_TOOLCALL_MAX_NAME) return false;
    for (size_t i = 0; i < n; i++)
        if (is_ws(s[i]) || s[i] == '<' || s[i] == '>' || s[i] == '"' || s[i] == 0) return false;
    return true;
}

static void set_name(nuri_reply_parser *p, const char *s, size_t n)
{
    p->cb.name.n = 0;
    put(p, &p->cb.name, s, n);
}

/* ---- JSON extent ---- */

static bool js_start(jscan *j, char c)
{
    memset(j, 0, sizeof *j);
    if (c == '{' || c == '[') {
        j->kind = 'o';
        j->depth = 1;
    } else if (c == '"') {
        j->kind = 's';
        j->in_str = true;
    } else if (c == '-' || (c >= '0' && c <= '9') || c == 't' || c == 'f' || c == 'n') {
        j->kind = 'a';
    } else {
        return false;
    }
    return true;
}

static int js_byte(jscan *j, char c)
{
    if (j->kind == 'a') {
        bool atom = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                    c == '.' || c == '+' || c == '-';
        return atom ? JS_MORE : JS_END_AGAIN;
    }
    if (j->in_str) {
        if (j->esc)
            j->esc = false;
        else if (c == '\\')
            j->esc = true;
        else if (c == '"') {
            j->in_str = false;
            if (j->kind == 's') return JS_END;
        }
        return JS_MORE;
    }
    if (c == '"') {
        j->in_str = true;
    } else if (c == '{' || c == '[') {
        if (j->depth < 1 << 20) j->depth++;
    } else if (c == '}' || c == ']') {
        if (--j->depth == 0) return JS_END;
    }
    return JS_MORE;
}

/* ---- the call object ---- */

enum { R_MORE, R_AGAIN, R_END, R_FAIL };

static void obj_reset(nuri_reply_parser *p)
{
    p->c.ost = OB_OPEN;
    p->c.have_name = p->c.have_args = p->c.args_str = false;
    p->cb.pre.n = 0;
    p->cb.name.n = 0;
    p->cb.id.n = 0;
}

static int fail(nuri_reply_parser *p, const char *why)
{
    p->c.why = why;
    return R_FAIL;
}

/* Whether the name in cb.name is one of the request's tools (true without tools). */
static bool tool_known(nuri_reply_parser *p)
{
    if (!json_is_array(p->o.tools)) return true;
    size_t i;
    json_t *t;
    json_array_foreach(p->o.tools, i, t)
    {
        json_t *fn = json_object_get(t, "function");
        json_t *nm = json_object_get(fn ? fn : t, "name");
        if (json_is_string(nm) && json_string_length(nm) == p->cb.name.n &&
            !memcmp(json_string_value(nm), p->cb.name.p, p->cb.name.n))
            return true;
    }
    return false;
}

/* The object's call starts (its name is known): the CALL delta, then any arguments that came
 * before the name. */
static int start_call(nuri_reply_parser *p)
{
    if (!open_call(p)) return R_FAIL;
    if (p->cb.pre.n) {
        nuri_sb pre = p->cb.pre;
        p->cb.pre = (nuri_sb){0};
        args_put(p, pre.p, pre.n);
        nuri_sb_free(&pre);
    }
    return R_MORE;
}

/* The arguments value ended with the byte just taken: check it (and decode string-encoded
 * arguments). */
static int args_done(nuri_reply_parser *p)
{
    p->c.have_args = true;
    p->c.ate_fail = true; // if they are bad, the text after them is what follows

    if (p->c.args_str) {
        json_t *s = json_loadb(p->cb.val.p, p->cb.val.n, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        bool ok =
            json_is_string(s) && valid_json(json_string_value(s), json_string_length(s), true);
        if (ok) args_put(p, json_string_value(s), json_string_length(s));
        json_decref(s);
        if (!ok) return fail(p, "its arguments are not a JSON object");
        p->c.ate_fail = false;
        return R_MORE;
    }
    const nuri_sb *a = p->c.open ? &cur_call(p)->args : &p->cb.pre;
    if (!valid_json(a->p, a->n, true)) return fail(p, "its arguments are not a JSON object");
    p->c.ate_fail = false;
    return R_MORE;
}

static int obj_end(nuri_reply_parser *p)
{
    if (!p->c.have_name) return fail(p, "a tool call without a name");
    if (!p->c.open && start_call(p) == R_FAIL) return R_FAIL;
    if (!p->c.have_args) args_put(p, "{}", 2);
    close_call(p);
    return R_END;
}

static int key_kind(const nuri_reply_parser *p)
{
    const char *k = p->c.key;
    if (!strcmp(k, "name")) return K_NAME;
    if (!strcmp(k, "arguments") || !strcmp(k, "parameters")) return K_ARGS;
    if (!strcmp(k, "id") || !strcmp(k, "type")) return K_KNOWN;
    return K_OTHER;
}

static int obj_byte(nuri_reply_parser *p, char c)
{
    switch (p->c.ost) {
    case OB_OPEN:
        if (is_ws(c)) return R_MORE;
        if (c != '{') return fail(p, "expected '{'");
        p->c.ost = OB_KEY_OR_END;
        return R_MORE;
    case OB_KEY_OR_END:
    case OB_KEY_START:
        if (is_ws(c)) return R_MORE;
        if (c == '}' && p->c.ost == OB_KEY_OR_END) return obj_end(p);
        if (c != '"') return fail(p, "expected a key");
        p->c.key_n = 0;
        p->c.key[0] = 0;
        p->c.ost = OB_KEY;
        return R_MORE;
    case OB_KEY:
    case OB_KEY_ESC:
        if (p->c.ost == OB_KEY && c == '"') {
            p->c.ost = OB_COLON;
            return R_MORE;
        }
        p->c.ost = p->c.ost == OB_KEY && c == '\\' ? OB_KEY_ESC : OB_KEY;
        if (p->c.key_n < sizeof p->c.key - 1) {
            p->c.key[p->c.key_n++] = c;
            p->c.key[p->c.key_n] = 0;
        } else {
            p->c.key[0] = '\\'; // too long: matches no known key
        }
        return R_MORE;
    case OB_COLON:
        if (is_ws(c)) return R_MORE;
        if (c != ':') return fail(p, "expected ':'");
        p->c.keykind = key_kind(p);
        if (p->c.keykind == K_OTHER && !p->c.committed)
            return fail(p, "an object that is not a tool call");
        p->c.ost = OB_VALUE;
        return R_MORE;
    case OB_VALUE:
        if (is_ws(c)) return R_MORE;
        if (p->c.keykind == K_NAME) {
            if (p->c.have_name || c != '"') return fail(p, "a bad function name");
            p->cb.val.n = 0;
            put(p, &p->cb.val, "\"", 1);
            p->c.ost = OB_NAME;
            return R_MORE;
        }
        if (p->c.keykind == K_ARGS) {
            if (p->c.have_args || (c != '{' && c != '"'))
                return fail(p, "its arguments are not a JSON object");
            if (p->c.bare && p->c.have_name && !p->c.open && start_call(p) == R_FAIL) return R_FAIL;
            js_start(&p->c.js, c);
            p->c.args_str = c == '"';
            p->cb.val.n = 0;
            if (p->c.args_str)
                put(p, &p->cb.val, &c, 1);
            else
                args_put(p, &c, 1);
            p->c.ost = OB_ARGS;
            return R_MORE;
        }
        if (!js_start(&p->c.js, c)) return fail(p, "a value that is not JSON");
        p->c.ost = OB_SKIP;
        return R_MORE;
    case OB_NAME:
    case OB_NAME_ESC:
        put(p, &p->cb.val, &c, 1);
        if (p->c.ost == OB_NAME && c == '"') {
            json_t *s = json_loadb(p->cb.val.p, p->cb.val.n, JSON_DECODE_ANY, NULL);
            bool ok = json_is_string(s) && good_name(json_string_value(s), json_string_length(s));
            if (ok) set_name(p, json_string_value(s), json_string_length(s));
            json_decref(s);
            if (!ok) return fail(p, "a bad function name");
            p->c.have_name = true;
            if (p->c.bare && !tool_known(p)) return fail(p, "not one of the request's tools");
            p->c.ost = OB_AFTER;
            if (p->c.open || (p->c.bare && !p->c.have_args)) return R_MORE;
            return start_call(p);
        }
        if (p->cb.val.n > 6 * NURI_TOOLCALL_MAX_NAME) return fail(p, "a bad function name");
        p->c.ost = p->c.ost == OB_NAME && c == '\\' ? OB_NAME_ESC : OB_NAME;
        return R_MORE;
    case OB_ARGS: {
        int r = js_byte(&p->c.js, c);
        if (p->c.args_str)
            put(p, &p->cb.val, &c, 1);
        else
            args_put(p, &c, 1);
        if (r == JS_MORE) return R_MORE;
        p->c.ost = OB_AFTER;
        return args_done(p);
    }
    case OB_SKIP: {
        int r = js_byte(&p->c.js, c);
        if (r == JS_MORE) return R_MORE;
        p->c.ost = OB_AFTER;
        return r == JS_END ? R_MORE : R_AGAIN;
    }
    case OB_AFTER:
        if (is_ws(c)) return R_MORE;
        if (c == ',') {
            p->c.ost = OB_KEY_START;
            return R_MORE;
        }
        if (c == '}') return obj_end(p);
        return fail(p, "expected ',' or '}'");
    }
    return fail(p, "bad state");
}

/* At the end of the reply inside an object: a call whose name and arguments are complete stands
 * (a missing '}' or closing tag is forgiven). */
static bool obj_eof_ok(nuri_reply_parser *p)
{
    if (!(p->c.open && p->c.have_name && p->c.have_args)) return false;
    close_call(p);
    return true;
}

/* ---- the per-format machines ---- */

static int map_obj(int r)
{
    return r == R_MORE ? C_MORE : r == R_AGAIN ? C_AGAIN : C_FAIL;
}

/* Matches the literal `lit` after optional whitespace; C_DONE when complete. */
static int expect_lit(nuri_reply_parser *p, char c, const char *lit)
{
    if (p->c.lit_i == 0 && is_ws(c)) return C_MORE;
    if (c != lit[p->c.lit_i]) {
        p->c.why = "text after the call where its closing tag belongs";
        return C_FAIL;
    }
    return lit[++p->c.lit_i] ? C_MORE : C_DONE;
}

/* Collects a <...> tag into c.tag; 1 when it is complete, 0 for more, -1 when too long. */
static int tag_byte(nuri_reply_parser *p, char c)
{
    put(p, &p->cb.tag, &c, 1);
    if (c == '>') return 1;
    if (p->cb.tag.n > MAX_TAG) {
        p->c.why = "a tag that is too long";
        return -1;
    }
    return 0;
}

static int tag_start(nuri_reply_parser *p, char c, int next)
{
    if (is_ws(c)) return C_MORE;
    if (c != '<') {
        p->c.why = "text where a tag belongs";
        return C_FAIL;
    }
    p->cb.tag.n = 0;
    put(p, &p->cb.tag, "<", 1);
    p->c.st = next;
    return C_MORE;
}

static bool tag_prefix(const nuri_reply_parser *p, const char *pre, const char **rest, size_t *n)
{
    size_t k = strlen(pre);
    if (p->cb.tag.n < k + 1 || memcmp(p->cb.tag.p, pre, k)) return false;
    *rest = p->cb.tag.p + k;
    *n = p->cb.tag.n - k - 1; // without the '>'
    return true;
}

static int fail_c(nuri_reply_parser *p, const char *why)
{
    p->c.why = why;
    return C_FAIL;
}

static int json_call_byte(nuri_reply_parser *p, char c)
{
    int r;
    switch (p->c.st) {
    case H_OBJ:
        r = obj_byte(p, c);
        if (r != R_END) return map_obj(r);
        p->c.st = H_CLOSE;
        p->c.lit_i = 0;
        return C_MORE;
    case H_CLOSE:
        return expect_lit(p, c, "</tool_call>");
    case L_OBJ:
        r = obj_byte(p, c);
        if (r != R_END) return map_obj(r);
        p->c.st = L_AFTER;
        return C_MORE;
    case L_AFTER:
        if (is_ws(c)) return C_MORE;
        return c == ';' ? C_DONE : C_DONE_AGAIN;
    case MN_OPEN:
        if (is_ws(c)) return C_MORE;
        if (c == '[') {
            obj_reset(p);
            p->c.st = MN_OBJ;
            return C_MORE;
        }
        if (c == '{') { // a single object without the list
            obj_reset(p);
            p->c.single = true;
            p->c.st = MN_OBJ;
            return C_AGAIN;
        }
        p->cb.name.n = p->cb.val.n = 0; // the [TOOL_CALLS]NAME[ARGS] form
        p->c.st = MA_NAME;
        return C_AGAIN;
    case MN_OBJ:
        r = obj_byte(p, c);
        if (r != R_END) return map_obj(r);
        if (p->c.single) return C_DONE;
        p->c.st = MN_NEXT;
        return C_MORE;
    case MN_NEXT:
        if (is_ws(c)) return C_MORE;
        if (c == ']') return C_DONE;
        if (c != ',') return fail_c(p, "expected ',' or ']' between calls");
        obj_reset(p);
        p->c.st = MN_OBJ;
        return C_MORE;
    }
    return fail_c(p, "bad state");
}

static int mistral_args_byte(nuri_reply_parser *p, char c)
{
    switch (p->c.st) {
    case MA_NAME:
    case MA_ID:
        if (p->c.st == MA_NAME && p->cb.val.n == 0 && c == '[') { // the [TOOL_CALLS][{...}] form
            p->c.st = MN_OPEN;
            return C_AGAIN;
        }
        put(p, &p->cb.val, &c, 1);
        if (nuri_sb_ends(&p->cb.val, "[ARGS]") ||
            (p->c.st == MA_NAME && nuri_sb_ends(&p->cb.val, "[CALL_ID]"))) {
            bool args = nuri_sb_ends(&p->cb.val, "[ARGS]");
            size_t n = p->cb.val.n - (args ? 6 : 9);
            if (!good_name(p->cb.val.p, n) || memchr(p->cb.val.p, '[', n))
                return fail_c(p, p->c.st == MA_NAME ? "a bad function name" : "a bad call id");
            if (p->c.st == MA_NAME)
                set_name(p, p->cb.val.p, n);
            else if (n < sizeof p->calls[0].id) {
                p->cb.id.n = 0;
                put(p, &p->cb.id, p->cb.val.p, n);
            }
            p->cb.val.n = 0;
            if (!args) {
                p->c.st = MA_ID;
                return C_MORE;
            }
            if (!open_call(p)) return C_FAIL;
            p->cb.id.n = 0;
            p->c.st = MA_ARGS_START;
            return C_MORE;
        }
        if (p->cb.val.n > NURI_TOOLCALL_MAX_NAME + 9)
            return fail_c(p, p->c.st == MA_NAME ? "a bad function name" : "a bad call id");
        return C_MORE;
    case MA_ARGS_START:
        if (is_ws(c)) return C_MORE;
        if (c != '{') return fail_c(p, "its arguments are not a JSON object");
        js_start(&p->c.js, c);
        args_put(p, &c, 1);
        p->c.st = MA_ARGS;
        return C_MORE;
    case MA_ARGS:
        args_put(p, &c, 1);
        if (js_byte(&p->c.js, c) == JS_MORE) return C_MORE;
        if (args_done(p) == R_FAIL) return C_FAIL;
        close_call(p);
        return C_DONE;
    }
    return fail_c(p, "bad state");
}

/* c.val ends with `end`: the value before it is c.val[0..*n). */
static bool val_ends(nuri_reply_parser *p, const char *end, size_t *n)
{
    if (!nuri_sb_ends(&p->cb.val, end)) return false;
    *n = p->cb.val.n - strlen(end);
    return true;
}

/* A qwen-xml value ended: one newline is stripped on each side (the template writes them). */
static void xml_value(nuri_reply_parser *p, size_t n)
{
    const char *v = p->cb.val.p ? p->cb.val.p : "";
    if (n && v[0] == '\n') v++, n--;
    if (n && v[n - 1] == '\n') n--;
    param_emit(p, p->cb.pkey.p ? p->cb.pkey.p : "", p->cb.pkey.n, v, n);
}

static int qwen_xml_byte(nuri_reply_parser *p, char c)
{
    const char *rest;
    size_t n;
    int t;
    switch (p->c.st) {
    case X_OPEN:
        return tag_start(p, c, X_FTAG);
    case X_FTAG:
        if ((t = tag_byte(p, c)) <= 0) return t < 0 ? C_FAIL : C_MORE;
        if (!tag_prefix(p, "<function=", &rest, &n) || !good_name(rest, n))
            return fail_c(p, "expected <function=NAME>");
        set_name(p, rest, n);
        if (!open_call(p)) return C_FAIL;
        p->c.st = X_BODY;
        return C_MORE;
    case X_BODY:
        return tag_start(p, c, X_BTAG);
    case X_BTAG:
        if ((t = tag_byte(p, c)) <= 0) return t < 0 ? C_FAIL : C_MORE;
        if (nuri_sb_is(&p->cb.tag, "</function>")) {
            close_params(p);
            p->c.st = X_END;
            p->c.lit_i = 0;
            return C_MORE;
        }
        if (!tag_prefix(p, "<parameter=", &rest, &n) || !good_name(rest, n))
            return fail_c(p, "expected <parameter=NAME> or </function>");
        p->cb.pkey.n = 0;
        put(p, &p->cb.pkey, rest, n);
        p->cb.val.n = 0;
        p->c.st = X_VALUE;
        return C_MORE;
    case X_VALUE:
        put(p, &p->cb.val, &c, 1);
        if (val_ends(p, "</parameter>", &n)) {
            xml_value(p, n);
            p->c.st = X_BODY;
        } else if (val_ends(p, "</function>", &n)) { // </parameter> left out
            xml_value(p, n);
            close_params(p);
            p->c.st = X_END;
            p->c.lit_i = 0;
        } else if (val_ends(p, "<parameter=", &n)) { // </parameter> left out
            xml_value(p, n);
            p->cb.tag.n = 0;
            put(p, &p->cb.tag, "<parameter=", 11);
            p->c.st = X_BTAG;
        }
        return C_MORE;
    case X_END:
        return expect_lit(p, c, "</tool_call>");
    }
    return fail_c(p, "bad state");
}

static int arg_key_byte(nuri_reply_parser *p, char c)
{
    size_t n;
    int t;
    switch (p->c.st) {
    case A_NAME:
        if (p->cb.val.n == 0 && is_ws(c)) return C_MORE;
        if (c == '\n' || c == '<') {
            if (!good_name(p->cb.val.p, p->cb.val.n)) return fail_c(p, "a bad function name");
            set_name(p, p->cb.val.p, p->cb.val.n);
            if (!open_call(p)) return C_FAIL;
            p->c.st = A_BODY;
            return c == '<' ? C_AGAIN : C_MORE;
        }
        put(p, &p->cb.val, &c, 1);
        if (p->cb.val.n > NURI_TOOLCALL_MAX_NAME) return fail_c(p, "a bad function name");
        return C_MORE;
    case A_BODY:
        return tag_start(p, c, A_TAG);
    case A_TAG:
        if ((t = tag_byte(p, c)) <= 0) return t < 0 ? C_FAIL : C_MORE;
        p->cb.val.n = 0;
        if (nuri_sb_is(&p->cb.tag, "<arg_key>")) {
            p->c.st = A_KEY;
            return C_MORE;
        }
        if (nuri_sb_is(&p->cb.tag, "<arguments>")) {
            p->c.st = A_ARGS;
            return C_MORE;
        }
        if (nuri_sb_is(&p->cb.tag, "</tool_call>")) {
            close_params(p);
            return C_DONE;
        }
        return fail_c(p, "expected <arg_key>, <arguments> or </tool_call>");
    case A_KEY:
        put(p, &p->cb.val, &c, 1);
        if (val_ends(p, "</arg_key>", &n)) {
            if (!good_name(p->cb.val.p, n)) return fail_c(p, "a bad parameter name");
            p->cb.pkey.n = 0;
            put(p, &p->cb.pkey, p->cb.val.p, n);
            p->c.st = A_VWS;
        } else if (p->cb.val.n > NURI_TOOLCALL_MAX_NAME + 10) {
            return fail_c(p, "a bad parameter name");
        }
        return C_MORE;
    case A_VWS:
        return tag_start(p, c, A_VTAG);
    case A_VTAG:
        if ((t = tag_byte(p, c)) <= 0) return t < 0 ? C_FAIL : C_MORE;
        if (!nuri_sb_is(&p->cb.tag, "<arg_value>")) return fail_c(p, "expected <arg_value>");
        p->cb.val.n = 0;
        p->c.st = A_VALUE;
        return C_MORE;
    case A_VALUE:
        put(p, &p->cb.val, &c, 1);
        if (val_ends(p, "</arg_value>", &n)) {
            if (p->c.args_whole) return fail_c(p, "parameters after <arguments>");
            param_emit(p, p->cb.pkey.p, p->cb.pkey.n, p->cb.val.p, n);
            p->c.st = A_BODY;
        }
        return C_MORE;
    case A_ARGS:
        put(p, &p->cb.val, &c, 1);
        if (val_ends(p, "</arguments>", &n)) {
            size_t a = 0;
            while (a < n && is_ws(p->cb.val.p[a])) a++;
            while (n > a && is_ws(p->cb.val.p[n - 1])) n--;
            if (p->c.nparams || p->c.args_whole || !valid_json(p->cb.val.p + a, n - a, true))
                return fail_c(p, "its arguments are not a JSON object");
            args_put(p, p->cb.val.p + a, n - a);
            p->c.args_whole = true;
            p->c.st = A_BODY;
        }
        return C_MORE;
    }
    return fail_c(p, "bad state");
}

static int deepseek_byte(nuri_reply_parser *p, char c)
{
    size_t n;
    int t;
    switch (p->c.st) {
    case D_TYPE:
        put(p, &p->cb.val, &c, 1);
        if (val_ends(p, DS_SEP, &n)) {
            p->cb.val.n = 0;
            p->c.st = D_NAME;
        } else if (p->cb.val.n > 64) {
            return fail_c(p, "a bad call type");
        }
        return C_MORE;
    case D_NAME:
        if (c == '\n') {
            if (!good_name(p->cb.val.p, p->cb.val.n)) return fail_c(p, "a bad function name");
            set_name(p, p->cb.val.p, p->cb.val.n);
            if (!open_call(p)) return C_FAIL;
            p->c.st = D_FENCE;
            return C_MORE;
        }
        put(p, &p->cb.val, &c, 1);
        if (p->cb.val.n > NURI_TOOLCALL_MAX_NAME) return fail_c(p, "a bad function name");
        return C_MORE;
    case D_FENCE:
        if (is_ws(c)) return C_MORE;
        if (c == '{') {
            p->c.st = D_ARGS_START;
            return C_AGAIN;
        }
        if (c != '`') return fail_c(p, "its arguments are not a JSON object");
        p->cb.val.n = 0;
        p->c.st = D_FENCE_LINE;
        return C_AGAIN;
    case D_FENCE_LINE:
        if (c == '\n') {
            p->c.st = D_ARGS_START;
            return C_MORE;
        }
        put(p, &p->cb.val, &c, 1);
        if (p->cb.val.n > 32 || (p->cb.val.n <= 3 && c != '`'))
            return fail_c(p, "a bad code fence before the arguments");
        return C_MORE;
    case D_ARGS_START:
        if (is_ws(c)) return C_MORE;
        if (c != '{') return fail_c(p, "its arguments are not a JSON object");
        js_start(&p->c.js, c);
        args_put(p, &c, 1);
        p->c.st = D_ARGS;
        return C_MORE;
    case D_ARGS:
        args_put(p, &c, 1);
        if (js_byte(&p->c.js, c) == JS_MORE) return C_MORE;
        if (args_done(p) == R_FAIL) return C_FAIL;
        p->c.st = D_AFTER;
        return C_MORE;
    case D_AFTER:
        if (c == '`') return C_MORE;
        return tag_start(p, c, D_ETAG);
    case D_ETAG:
        if ((t = tag_byte(p, c)) <= 0) return t < 0 ? C_FAIL : C_MORE;
        if (!nuri_sb_is(&p->cb.tag, DS_CALL_END))
            return fail_c(p, "expected the call's end marker");
        close_call(p);
        if (!p->c.outer) return C_DONE;
        p->c.st = D_NEXT;
        return C_MORE;
    case D_NEXT:
        return tag_start(p, c, D_NTAG);
    case D_NTAG:
        if ((t = tag_byte(p, c)) <= 0) return t < 0 ? C_FAIL : C_MORE;
        if (nuri_sb_is(&p->cb.tag, DS_CALLS_END)) {
            if (!p->c.committed) return fail_c(p, "no calls");
            return C_DONE;
        }
        if (!nuri_sb_is(&p->cb.tag, DS_CALL_BEGIN))
            return fail_c(p, "expected a call's begin marker");
        p->cb.val.n = 0;
        p->c.st = D_TYPE;
        return C_MORE;
    }
    return fail_c(p, "bad state");
}

static int call_byte(nuri_reply_parser *p, char c)
{
    int st = p->c.st;
    if (st <= MN_NEXT) return json_call_byte(p, c);
    if (st <= MA_ARGS) return mistral_args_byte(p, c);
    if (st <= X_END) return qwen_xml_byte(p, c);
    if (st <= A_ARGS) return arg_key_byte(p, c);
    return deepseek_byte(p, c);
}

/* Whether the reply may end in the current state (the call is then closed). */
static bool call_eof_ok(nuri_reply_parser *p)
{
    switch (p->c.st) {
    case H_OBJ:
    case L_OBJ:
    case MN_OBJ:
        return obj_eof_ok(p);
    case H_CLOSE:
    case L_AFTER:
    case MN_NEXT:
    case X_END:
    case D_NEXT:
    case D_NTAG:
        return true;
    case X_BODY:
    case X_BTAG:
    case A_BODY:
    case A_TAG:
        close_params(p);
        return true;
    case D_AFTER:
    case D_ETAG:
        close_call(p);
        return true;
    }
    return false;
}

/* ---- modes ---- */

static void begin_call(nuri_reply_parser *p, const marker *m)
{
    memset(&p->c, 0, sizeof p->c);
    obj_reset(p);
    p->cb.val.n = p->cb.tag.n = p->cb.pkey.n = 0;
    p->c.from = p->mode;
    p->c.st = m->state;
    p->c.pos = m->s ? m->n : 0;
    p->c.revert = m->s ? m->n : 1;
    // A bare '{' is a call only if it looks like one to the end of its arguments' key: it
    // commits when its arguments start (not at its name) and its name must be one of the
    // request's tools, so that an answer that is a JSON object with a "name" stays content.
    p->c.bare = !m->s;
    p->c.outer = m->state == D_NEXT;
    p->mode = M_CALL;
}

/* The block ended well: back to text. */
static void end_block(nuri_reply_parser *p)
{
    consume(p, p->c.pos);
    p->mode = p->c.from;
    p->skip_ws = true;
    p->ws.n = 0;
}

/* The block broke: before any call its bytes are text; after, the reply records why. */
static void break_block(nuri_reply_parser *p)
{
    p->mode = p->c.from;
    if (!p->c.committed) {
        text_raw(p, p->mode, p->buf.p, p->c.revert);
        consume(p, p->c.revert);
        return;
    }
    if (!p->error.n) {
        char msg[NURI_TOOLCALL_MAX_NAME + 160];
        const pcall *c = p->n_calls ? cur_call(p) : NULL;
        if (p->c.open && c)
            snprintf(msg, sizeof msg, "tool call %zu (%s) is malformed: %s", p->n_calls - 1,
                     c->name.p ? c->name.p : "", p->c.why ? p->c.why : "unterminated");
        else
            snprintf(msg, sizeof msg, "tool call %zu is malformed: %s", p->n_calls,
                     p->c.why ? p->c.why : "unterminated");
        put(p, &p->error, msg, strlen(msg));
    }
    close_call(p);
    consume(p, p->c.pos);
    p->skip_ws = false;
}

/* Runs the call machine over buf; true when the block ended (well or not). */
static bool call_run(nuri_reply_parser *p, bool eof)
{
    while (p->c.pos < p->buf.n && !p->nomem) {
        if (!p->c.committed && p->c.pos > MAX_TENTATIVE) {
            p->c.why = "too long before its name";
            break_block(p);
            return true;
        }
        int r = call_byte(p, p->buf.p[p->c.pos]);
        if (r == C_MORE || r == C_DONE) p->c.pos++;
        if (r == C_DONE || r == C_DONE_AGAIN) {
            end_block(p);
            return true;
        }
        if (r == C_FAIL) {
            if (p->c.ate_fail) p->c.pos++;
            break_block(p);
            return true;
        }
    }
    if (p->nomem) return false;
    if (p->c.committed) { // what the call machine has read is no longer needed
        consume(p, p->c.pos);
        p->c.pos = 0;
    }
    if (!eof) return false;
    if (p->c.committed && call_eof_ok(p)) {
        end_block(p);
        return true;
    }
    if (p->c.committed && !p->c.why) p->c.why = "the reply ended inside it";
    break_block(p);
    return true;
}

/* Which marker starts at s[0..n): its index, -1 none, -2 maybe (s is a proper prefix of one). */
static int match_marker(const nuri_reply_parser *p, const char *s, size_t n, bool eof)
{
    bool maybe = false;
    bool answer_start = p->mode == M_CONTENT && p->content.n == 0 && p->ws.n == 0;
    bool nothing_yet = answer_start && p->reasoning.n == 0 && p->n_calls == 0;
    for (int i = 0; i < p->n_mk; i++) {
        const marker *m = &p->mk[i];
        if (m->kind == MK_THINK_OPEN && !nothing_yet) continue;
        if (m->kind == MK_THINK_CLOSE && p->mode != M_REASONING) continue;
        if (!m->s) {
            if (answer_start && s[0] == '{') return i;
            continue;
        }
        if (n >= m->n) {
            if (!memcmp(s, m->s, m->n)) return i;
        } else if (!eof && !memcmp(s, m->s, n)) {
            maybe = true;
        }
    }
    return maybe ? -2 : -1;
}

/* Text mode over buf: true when a marker changed the mode. */
static bool text_run(nuri_reply_parser *p, bool eof)
{
    const char *b = p->buf.p;
    size_t n = p->buf.n, from = 0;
    if (!n) return false;
    for (size_t i = 0; i < n; i++) {
        if (!p->first_byte[(unsigned char)b[i]]) continue;
        text_out(p, p->mode, b + from, i - from); // first, so that the state is current
        from = i;
        int k = match_marker(p, b + i, n - i, eof);
        if (k == -1) continue;
        consume(p, i);
        if (k == -2) return false; // b[i..n) may be a marker: held
        const marker *m = &p->mk[k];
        if (m->kind == MK_CALL) {
            begin_call(p, m);
            return true;
        }
        consume(p, m->n);
        p->ws.n = 0;
        p->mode = m->kind == MK_THINK_OPEN ? M_REASONING : M_CONTENT;
        p->skip_ws = true;
        return true;
    }
    text_out(p, p->mode, b + from, n - from);
    consume(p, n);
    return false;
}

/* ---- harmony (gpt-oss) ----
 *
 * A reply is messages: a header, <|message|>, text, and an end. The machine is outside a message
 * (HM_FREE: stray text is content), in a header (HM_HEAD: held in buf until <|message|>; the
 * channel and the recipient decide where the text goes), or in a message's text (HM_BODY: it
 * streams out until <|end|>, <|call|> or <|return|>, or a new header). Headers are bounded; one
 * that runs past the bound without <|message|> is given back as content, so no text is lost; one
 * cut by the end of the reply (max_tokens) is dropped: it announced a message that never came. */
enum { HM_FREE, HM_HEAD, HM_BODY };
#define HM_MAX_HEAD 512 // bytes of a message header

static const char *const hm_heads[] = {"<|start|>", "<|channel|>"};
static const char *const hm_ends[] = {"<|end|>", "<|call|>", "<|return|>"};

/* Whether s[0..n) starts with one of list (its index in *k), might (-2, s a proper prefix of one
 * and more may come), or not (-1). */
static int hm_match(const char *const *list, size_t nl, const char *s, size_t n, bool eof)
{
    bool maybe = false;
    for (size_t i = 0; i < nl; i++) {
        size_t m = strlen(list[i]);
        if (n >= m) {
            if (!memcmp(s, list[i], m)) return (int)i;
        } else if (!eof && !memcmp(s, list[i], n)) {
            maybe = true;
        }
    }
    return maybe ? -2 : -1;
}

/* The word after `key` in the header h[0..n) (up to a space, '<' or the end), or NULL. */
static const char *hm_field(const char *h, size_t n, const char *key, size_t *len)
{
    size_t k = strlen(key);
    for (size_t i = 0; i + k <= n; i++) {
        if (memcmp(h + i, key, k)) continue;
        size_t j = i + k;
        while (j < n && h[j] != ' ' && h[j] != '<' && h[j] != '\n') j++;
        *len = j - (i + k);
        return h + i + k;
    }
    return NULL;
}

/* A header h[0..n) read: where its text goes (a call is opened here). */
static void hm_begin_body(nuri_reply_parser *p, const char *h, size_t n)
{
    size_t cn = 0, rn = 0;
    const char *ch = hm_field(h, n, "<|channel|>", &cn);
    const char *to = hm_field(h, n, " to=", &rn);
    p->hm.st = HM_BODY;
    p->skip_ws = true;
    p->ws.n = 0;
    static const char fn[] = "functions.";
    if (to && rn > sizeof fn - 1 && !memcmp(to, fn, sizeof fn - 1) &&
        p->o.syntax.format == NURI_TOOLCALL_HARMONY &&
        good_name(to + sizeof fn - 1, rn - (sizeof fn - 1))) {
        memset(&p->c, 0, sizeof p->c);
        p->cb.name.n = p->cb.id.n = 0;
        put(p, &p->cb.name, to + sizeof fn - 1, rn - (sizeof fn - 1));
        if (open_call(p)) {
            p->hm.target = M_CALL;
            return;
        }
        if (!p->error.n) put(p, &p->error, p->c.why, strlen(p->c.why));
    }
    // analysis (and a built-in tool's input, which nuri does not run) is reasoning; final,
    // commentary and anything else is content
    p->hm.target = ch && cn == 8 && !memcmp(ch, "analysis", 8) ? M_REASONING : M_CONTENT;
}

/* The message's text ended (its end marker, a new header, or the end of the reply). */
static void hm_end_body(nuri_reply_parser *p)
{
    if (p->hm.target == M_CALL && p->c.open) {
        pcall *c = cur_call(p);
        if (!valid_json(c->args.p ? c->args.p : "", c->args.n, true) && !p->error.n) {
            char msg[NURI_TOOLCALL_MAX_NAME + 96];
            snprintf(msg, sizeof msg,
                     "tool call %zu (%s) is malformed: its arguments are not a JSON object",
                     p->n_calls - 1, c->name.p ? c->name.p : "");
            put(p, &p->error, msg, strlen(msg));
        }
        close_call(p);
    }
    p->ws.n = 0; // whitespace at the end of a message
    p->skip_ws = true;
    p->hm.st = HM_FREE;
}

static void hm_text(nuri_reply_parser *p, const char *s, size_t n)
{
    if (!n) return;
    if (p->hm.st == HM_BODY && p->hm.target == M_CALL)
        args_put(p, s, n);
    else
        text_out(p, p->hm.st == HM_BODY ? p->hm.target : M_CONTENT, s, n);
}

/* Runs the harmony machine over buf. */
static void harmony_run(nuri_reply_parser *p, bool eof)
{
    while (!p->nomem) {
        const char *b = p->buf.p;
        size_t n = p->buf.n;
        if (p->hm.st == HM_HEAD) {
            static const char msg[] = "<|message|>";
            const char *m = n ? memmem(b, n, msg, sizeof msg - 1) : NULL;
            if (m && (size_t)(m - b) <= HM_MAX_HEAD) {
                hm_begin_body(p, b, (size_t)(m - b));
                consume(p, (size_t)(m - b) + sizeof msg - 1);
                continue;
            }
            if (n <= HM_MAX_HEAD + sizeof msg - 1 && !eof) return; // held until <|message|>
            if (n <= HM_MAX_HEAD && eof) { // the reply was cut in a header: no message came
                consume(p, n);
                return;
            }
            // not a header after all: its first byte is text, and the rest is scanned again
            p->hm.st = HM_FREE;
            text_raw(p, M_CONTENT, b, 1);
            consume(p, 1);
            continue;
        }
        if (!n) {
            if (eof && p->hm.st == HM_BODY) hm_end_body(p);
            return;
        }
        size_t from = 0, i;
        int k = -1;
        bool head = false;
        for (i = 0; i < n; i++) {
            if (b[i] != '<') continue;
            k = hm_match(hm_heads, 2, b + i, n - i, eof);
            head = k >= 0;
            if (k == -1 && p->hm.st == HM_BODY) k = hm_match(hm_ends, 3, b + i, n - i, eof);
            if (k != -1) break;
        }
        hm_text(p, b + from, i - from);
        if (k == -1) { // all of buf was text
            consume(p, n);
            if (eof && p->hm.st == HM_BODY) hm_end_body(p);
            return;
        }
        consume(p, i);
        if (k == -2) return; // a marker may start here: held
        if (p->hm.st == HM_BODY) hm_end_body(p);
        if (head) {
            p->ws.n = 0;
            p->hm.st = HM_HEAD; // the marker stays in buf: it is part of the header
        } else {
            consume(p, strlen(hm_ends[k]));
        }
    }
}

/* ---- the API ---- */

static void add_marker(nuri_reply_parser *p, const char *s, int kind, int state)
{
    marker *m = &p->mk[p->n_mk++];
    m->s = s;
    m->n = s ? strlen(s) : 0;
    m->kind = kind;
    m->state = state;
    p->first_byte[s ? (unsigned char)s[0] : '{'] = true;
}

nuri_status nuri_reply_parser_new(const nuri_reply_opts *opts, nuri_reply_parser **out)
{
    *out = NULL;
    nuri_reply_parser *p = calloc(1, sizeof *p);
    if (!p) return nuri_error(NURI_ERR_NOMEM, "out of memory");
    p->o = *opts;
    const nuri_chat_syntax *s = &p->o.syntax;
    if (s->think_open && s->think_close && s->think_open[0] && s->think_close[0]) {
        add_marker(p, s->think_open, MK_THINK_OPEN, 0);
        add_marker(p, s->think_close, MK_THINK_CLOSE, 0);
    }
    switch (s->format) {
    case NURI_TOOLCALL_HERMES:
    case NURI_TOOLCALL_EXAONE4:
        add_marker(p, "<tool_call>", MK_CALL, H_OBJ);
        break;
    case NURI_TOOLCALL_QWEN_XML:
        add_marker(p, "<tool_call>", MK_CALL, X_OPEN);
        break;
    case NURI_TOOLCALL_ARG_KEY:
        add_marker(p, "<tool_call>", MK_CALL, A_NAME);
        break;
    case NURI_TOOLCALL_LLAMA3:
        add_marker(p, "<|python_tag|>", MK_CALL, L_OBJ);
        add_marker(p, NULL, MK_CALL, L_OBJ);
        break;
    case NURI_TOOLCALL_GENERIC:
        add_marker(p, NULL, MK_CALL, L_OBJ);
        break;
    case NURI_TOOLCALL_MISTRAL:
    case NURI_TOOLCALL_MISTRAL_ARGS:
        add_marker(p, "[TOOL_CALLS]", MK_CALL, MN_OPEN);
        break;
    case NURI_TOOLCALL_DEEPSEEK_R1:
        add_marker(p, DS_CALLS_BEGIN, MK_CALL, D_NEXT);
        add_marker(p, DS_CALL_BEGIN, MK_CALL, D_TYPE);
        break;
    default:
        break;
    }
    p->mode =
        opts->in_reasoning && p->n_mk && p->mk[0].kind == MK_THINK_OPEN ? M_REASONING : M_CONTENT;
    p->skip_ws = true;
    p->harmony = s->harmony || s->format == NURI_TOOLCALL_HARMONY;
    if (p->harmony && opts->in_reasoning) { // the prompt ended in an analysis header
        p->hm.st = HM_BODY;
        p->hm.target = M_REASONING;
    }
    *out = p;
    return NURI_OK;
}

void nuri_reply_parser_free(nuri_reply_parser *p)
{
    if (!p) return;
    nuri_sb_free(&p->buf);
    nuri_sb_free(&p->ws);
    nuri_sb *cb[] = {&p->cb.name, &p->cb.id, &p->cb.pre, &p->cb.val, &p->cb.tag, &p->cb.pkey};
    for (size_t i = 0; i < sizeof cb / sizeof cb[0]; i++) nuri_sb_free(cb[i]);
    nuri_sb_free(&p->content);
    nuri_sb_free(&p->reasoning);
    nuri_sb_free(&p->error);
    for (size_t i = 0; i < p->n_calls; i++) {
        nuri_sb_free(&p->calls[i].name);
        nuri_sb_free(&p->calls[i].args);
    }
    free(p->calls);
    free(p->view_calls);
    free(p->ev);
    nuri_sb_free(&p->evtext);
    free(p->deltas);
    free(p);
}

static void run(nuri_reply_parser *p, bool eof)
{
    if (p->harmony) {
        harmony_run(p, eof);
        if (eof) p->ws.n = 0;
        return;
    }
    for (;;) {
        if (p->nomem) return;
        bool changed = p->mode == M_CALL ? call_run(p, eof) : text_run(p, eof);
        if (!changed) break;
    }
    if (eof && p->mode != M_CALL) p->ws.n = 0; // whitespace at the end of the reply
}

static nuri_status deliver(nuri_reply_parser *p, const nuri_reply_delta **deltas, size_t *n)
{
    *deltas = NULL;
    *n = 0;
    if (!p->nomem && p->n_ev > p->cap_deltas) {
        nuri_reply_delta *d = realloc(p->deltas, p->n_ev * sizeof *d);
        if (!d)
            p->nomem = true;
        else {
            p->deltas = d;
            p->cap_deltas = p->n_ev;
        }
    }
    if (!p->nomem && p->n_calls) {
        nuri_toolcall *v = realloc(p->view_calls, p->n_calls * sizeof *v);
        if (!v)
            p->nomem = true;
        else
            p->view_calls = v;
    }
    if (p->nomem) return nuri_error(NURI_ERR_NOMEM, "out of memory parsing a reply");
    for (size_t i = 0; i < p->n_ev; i++) {
        const pev *e = &p->ev[i];
        p->deltas[i] = (nuri_reply_delta){
            .kind = (nuri_reply_delta_kind)e->kind,
            .index = e->index,
            .id = e->kind == NURI_DELTA_CALL ? p->evtext.p + e->id_off : NULL,
            .text = p->evtext.p ? p->evtext.p + e->off : "",
            .len = e->len,
        };
    }
    *deltas = p->deltas;
    *n = p->n_ev;
    // the reply so far
    static char empty[1];
    for (size_t i = 0; i < p->n_calls; i++) {
        pcall *c = &p->calls[i];
        p->view_calls[i] = (nuri_toolcall){
            .id = c->id,
            .name = c->name.p ? c->name.p : empty,
            .arguments = c->args.p ? c->args.p : empty,
            .arguments_len = c->args.n,
        };
    }
    p->view = (nuri_reply){
        .content = p->content.p ? p->content.p : empty,
        .content_len = p->content.n,
        .reasoning = p->reasoning.p ? p->reasoning.p : empty,
        .reasoning_len = p->reasoning.n,
        .calls = p->n_calls ? p->view_calls : NULL,
        .n_calls = p->n_calls,
        .error = p->error.n ? p->error.p : NULL,
    };
    return NURI_OK;
}

static nuri_status step_api(nuri_reply_parser *p, const char *text, size_t len, bool eof,
                            const nuri_reply_delta **deltas, size_t *n)
{
    *deltas = NULL;
    *n = 0;
    if (p->nomem) return nuri_error(NURI_ERR_NOMEM, "out of memory parsing a reply");
    if (p->finished)
        return nuri_error(NURI_ERR_INVALID_ARG, "the reply parser was already finished");
    p->n_ev = 0;
    p->evtext.n = 0;
    if (len) put(p, &p->buf, text, len);
    run(p, eof);
    if (eof) p->finished = true;
    return deliver(p, deltas, n);
}

nuri_status nuri_reply_parser_feed(nuri_reply_parser *p, const char *text, size_t len,
                                   const nuri_reply_delta **deltas, size_t *n)
{
    return step_api(p, text, len, false, deltas, n);
}

nuri_status nuri_reply_parser_finish(nuri_reply_parser *p, const nuri_reply_delta **deltas,
                                     size_t *n)
{
    return step_api(p, NULL, 0, true, deltas, n);
}

const nuri_reply *nuri_reply_parser_reply(const nuri_reply_parser *p)
{
    return &p->view;
}

void nuri_reply_free(nuri_reply *r)
{
    if (!r) return;
    free(r->content);
    free(r->reasoning);
    free(r->error);
    for (size_t i = 0; i < r->n_calls; i++) {
        free(r->calls[i].id);
        free(r->calls[i].name);
        free(r->calls[i].arguments);
    }
    free(r->calls);
    memset(r, 0, sizeof *r);
}

static char *dup_n(const char *s, size_t n, bool *bad)
{
    char *d = malloc(n + 1);
    if (!d) {
        *bad = true;
        return NULL;
    }
    if (n) memcpy(d, s, n);
    d[n] = 0;
    return d;
}

nuri_status nuri_reply_parse(const nuri_reply_opts *opts, const char *text, size_t len,
                             nuri_reply *out)
{
    memset(out, 0, sizeof *out);
    nuri_reply_parser *p;
    nuri_status st = nuri_reply_parser_new(opts, &p);
    if (st != NURI_OK) return st;
    const nuri_reply_delta *d;
    size_t n;
    if ((st = nuri_reply_parser_feed(p, text, len, &d, &n)) != NURI_OK ||
        (st = nuri_reply_parser_finish(p, &d, &n)) != NURI_OK) {
        nuri_reply_parser_free(p);
        return st;
    }
    const nuri_reply *v = nuri_reply_parser_reply(p);
    bool bad = false;
    out->content = dup_n(v->content, v->content_len, &bad);
    out->content_len = v->content_len;
    out->reasoning = dup_n(v->reasoning, v->reasoning_len, &bad);
    out->reasoning_len = v->reasoning_len;
    if (v->error) out->error = dup_n(v->error, strlen(v->error), &bad);
    if (v->n_calls && !(out->calls = calloc(v->n_calls, sizeof *out->calls))) bad = true;
    for (size_t i = 0; !bad && i < v->n_calls; i++) {
        out->n_calls++;
        out->calls[i].id = dup_n(v->calls[i].id, strlen(v->calls[i].id), &bad);
        out->calls[i].name = dup_n(v->calls[i].name, strlen(v->calls[i].name), &bad);
        out->calls[i].arguments = dup_n(v->calls[i].arguments, v->calls[i].arguments_len, &bad);
        out->calls[i].arguments_len = v->calls[i].arguments_len;
    }
    nuri_reply_parser_free(p);
    if (bad) {
        nuri_reply_free(out);
        return nuri_error(NURI_ERR_NOMEM, "out of memory parsing a reply");
    }
    return NURI_OK;
}
