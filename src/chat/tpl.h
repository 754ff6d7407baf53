/*
 * tpl.h: the chat template engine's insides, shared by its three files: template_parse.c (lexer
 * and parser to an AST), template_value.c (the value type: printing, JSON, comparison) and
 * template_eval.c (the evaluator with its filters, tests and methods).
 *
 * Memory: everything a parse or a render makes lives in an arena that is freed at once at the end
 * (values are never freed one by one, so they can be shared freely). Errors: a failure sets the
 * nuri_error message and longjmps to the parse / render entry point, which frees the arena.
 *
 * Provenance (nuri_template_render_spans): every byte of a string is either markup, the
 * template's own text (its literals, and the variables the caller declares markup, such as
 * bos_token), or data (everything else the caller passed: contents, names, tools, extra
 * variables). A value carries its provenance in tv.prov; string operations keep it per byte
 * (slices keep the bytes' own, concatenation each side's, rewrites such as upper() give each output
 * character its input character's), and what cannot be traced byte by byte (tojson, printing a
 * list, formatting a number) is data as soon as anything it came from is. A value nobody marked
 * is data (TPL_DATA is 0), so a path that forgets to propagate errs on the safe side.
 */
#ifndef NURI_CHAT_TPL_H
#define NURI_CHAT_TPL_H

#include "base/status.h"
#include "chat/template.h"

#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>

/* ---- arena ---- */
typedef struct tpl_chunk tpl_chunk;
typedef struct tpl_arena {
    tpl_chunk *head;
    size_t used;  // bytes handed out, all chunks
    size_t limit; // bytes; 0 = no limit
} tpl_arena;

/* Returns NULL when out of memory or over the limit. Memory is zeroed. */
void *tpl_arena_alloc(tpl_arena *a, size_t n);
void tpl_arena_free(tpl_arena *a);

/* ---- values ---- */
typedef enum tv_type {
    TV_UNDEF, // jinja2's Undefined; s holds the name (for messages), may be NULL
    TV_NONE,
    TV_BOOL,
    TV_INT,
    TV_FLOAT,
    TV_STR,  // UTF-8 bytes (s.p, s.n); immutable
    TV_LIST, // also tuples (flag tuple); immutable once made
    TV_DICT, // insertion-ordered; immutable once made
    TV_NS,   // namespace(): a dict whose attributes can be set
    TV_FUNC, // macro, global function or bound method
    TV_LOOP, // the `loop` variable of a for loop
} tv_type;

typedef struct tlist tlist;
typedef struct tdict tdict;
typedef struct tfunc tfunc;
typedef struct tloop tloop;

/* tv.prov: where a value's bytes came from. Strings: TPL_DATA or TPL_MARKUP for all their bytes,
 * or TPL_PROV_MIXED + k: record k of the render's tpl_prov table says byte by byte. Other values:
 * TPL_MARKUP if the template made it from its own constants, else TPL_DATA. */
enum { TPL_DATA = 0, TPL_MARKUP = 1, TPL_PROV_MIXED = 2 };

typedef struct tv {
    uint8_t t;
    uint8_t safe;  // TV_STR: markupsafe.Markup (from |safe)
    uint8_t tuple; // TV_LIST: a tuple (prints with parentheses)
    uint8_t gen;   // TV_LIST: a Python generator (from map, select, ...): always true, no len()
    uint32_t prov; // see above; fills what would be padding, so a tv stays 24 bytes
    union {
        bool b;
        int64_t i;
        double f;
        struct {
            const char *p;
            size_t n;
        } s;
        tlist *l;
        tdict *d;
        tfunc *fn;
        tloop *loop;
    };
} tv;
_Static_assert(sizeof(void *) != 8 || sizeof(tv) == 24, "a tv is 24 bytes on 64-bit targets");

struct tlist {
    size_t n;
    tv *v;
};

struct tdict {
    size_t n, cap;
    tv *k;
    tv *v;
};

/* ---- AST ---- */
typedef enum tpl_kind {
    /* statements */
    N_TEXT,   // name/len: the text
    N_OUTPUT, // a: expression
    N_IF,     // a: cond, body, alt (else; elif is an N_IF inside alt)
    N_FOR,    // a: target, b: iterable, c: filter cond or NULL, body, alt (else)
    N_SET,    // a: target, b: value
    N_SETBLK, // a: target, body; c: filter chain applied (E_FILTER with NULL object) or NULL
    N_MACRO,  // name, args (E_NAME params), kwv (defaults, NULL where none), body; op = 1 when
              // the body reads `caller` (then it accepts caller=, as jinja2's macros do)
    N_BREAK,
    N_CONTINUE,
    N_FILTBLK, // c: filter chain (E_FILTER with NULL innermost object), body
    N_CALLBLK, // {% call(args) a %}: a the E_CALL, args / kwv the caller's parameters, body
    /* expressions */
    E_CONST,  // val
    E_NAME,   // name
    E_ATTR,   // a.name
    E_ITEM,   // a[b]
    E_SLICE,  // a[b:c:d] (NULL for an absent part)
    E_CALL,   // a(args; kwnames[i] != NULL for keyword args)
    E_FILTER, // a|name(args)
    E_TEST,   // a is [not] name(args); op = 1 for "not"
    E_BINOP,  // a op b
    E_NEG,    // -a
    E_POS,    // +a
    E_NOT,    // not a
    E_AND,
    E_OR,
    E_CMP,    // args[0] ops[0] args[1] ops[1] ...
    E_COND,   // b if a else c (c NULL: undefined)
    E_LIST,   // args
    E_TUPLE,  // args
    E_DICT,   // args (keys), kwv (values)
    E_CONCAT, // args joined with ~
} tpl_kind;

enum tpl_op {
    OP_ADD = 1,
    OP_SUB,
    OP_MUL,
    OP_DIV,
    OP_FLOORDIV,
    OP_MOD,
    OP_POW,
    OP_EQ,
    OP_NE,
    OP_LT,
    OP_LE,
    OP_GT,
    OP_GE,
    OP_IN,
    OP_NOTIN,
};

typedef struct tpl_node tpl_node;
struct tpl_node {
    uint8_t kind;
    uint8_t op;
    int line, col;
    tpl_node *a, *b, *c, *d;
    tpl_node **body;
    size_t n_body;
    tpl_node **alt;
    size_t n_alt;
    tpl_node **args;
    size_t n_args;
    const char **kwnames; // n_args entries (E_CALL / E_FILTER / E_TEST), or NULL
    tpl_node **kwv;       // n_args entries (E_DICT values, N_MACRO defaults), or NULL
    uint8_t *ops;         // E_CMP: n_args - 1 operators
    const char *name;     // NUL-terminated
    size_t len;           // N_TEXT bytes
    tv val;               // E_CONST
};

struct nuri_template {
    tpl_arena arena;
    tpl_node **body;
    size_t n_body;
};

/* ---- provenance (template_value.c) ---- */

/* A string whose bytes differ in provenance: data[i] != 0 when base[i] is data. Any slice of that
 * string (a pointer into base[]) uses the same record. */
typedef struct tpl_prov_rec {
    const char *base;
    const uint8_t *data;
} tpl_prov_rec;

/* The records of one render (in its arena). */
typedef struct tpl_prov {
    tpl_prov_rec *rec;
    uint32_t n, cap;
    tpl_arena *arena;
} tpl_prov;

/* Registers base[0..) with per-byte flags data[]; returns its prov code, or 0 (TPL_DATA, the safe
 * answer) with *ok false when out of memory. */
uint32_t tpl_prov_add(tpl_prov *pt, const char *base, const uint8_t *data, bool *ok);
/* Whether any of p[0..n) is data; p lies in a string whose code is prov. For n == 0: prov is
 * TPL_DATA. pt NULL: false. */
bool tpl_prov_any_data(const tpl_prov *pt, uint32_t prov, const char *p, size_t n);
/* The per-byte flags of p[0..n) (1 = data) into out[0..n). */
void tpl_prov_flags(const tpl_prov *pt, uint32_t prov, const char *p, size_t n, uint8_t *out);
/* Whether v, printed (or as JSON), contains anything that is data (see the top of this file). */
bool tv_any_data(const tpl_prov *pt, tv v);

/* ---- value helpers (template_value.c) ---- */
typedef struct tpl_buf {
    char *p;
    size_t n, cap;
    size_t limit;     // bytes; a write past it fails
    tpl_arena *arena; // grows in this arena if set, else with realloc (caller frees p)
    // provenance, kept only when prov is set (then arena must be too)
    tpl_prov *prov;
    uint8_t *d;  // (cap) 1 where p[i] is data; NULL while all n bytes have provenance uni
    uint8_t uni; // TPL_DATA / TPL_MARKUP while d is NULL (and n > 0)
    uint8_t cur; // the provenance of bytes that tpl_buf_put appends
} tpl_buf;

/* Appends bytes whose provenance is b->cur; returns false when over the limit or out of memory
 * (the buffer is left as it was). */
bool tpl_buf_put(tpl_buf *b, const void *p, size_t n);
/* Appends p[0..n), which lies in a string whose provenance code is prov (or any bytes, if prov is
 * TPL_DATA / TPL_MARKUP), keeping each byte's provenance. */
bool tpl_buf_put_from(tpl_buf *b, const void *p, size_t n, uint32_t prov);
/* The provenance code of the buffer's n bytes (registers a record when they differ); 0 with *ok
 * false when out of memory. */
uint32_t tpl_buf_prov(tpl_buf *b, bool *ok);

tv tv_undef(const char *name);
tv tv_none(void);
tv tv_bool(bool b);
tv tv_int(int64_t i);
tv tv_float(double f);
tv tv_strn(const char *p, size_t n); // borrows p
bool tv_truthy(tv v);
bool tv_equal(tv a, tv b);
const char *tv_type_name(tv v); // Python's name: 'str', 'int', 'NoneType', ...

/* Python's str(v) / repr(v) appended to b; false when over the limit. Floats as Python repr.
 * Provenance: a string's bytes keep theirs; anything else is all data if tv_any_data(v). */
bool tv_print(tpl_buf *b, tv v);
bool tv_repr(tpl_buf *b, tv v);
/* json.dumps(v, ensure_ascii=False[, indent]) with Python's default separators (", " / ": ",
 * or "," / ": " with an indent; indent < 0: none). Returns 0 ok, -1 over the limit, -2 a value
 * JSON cannot hold (undefined, a function): *bad names its type. Provenance: all of it data if
 * tv_any_data(v), else markup. */
int tv_json(tpl_buf *b, tv v, int indent, int depth, const char **bad);

/* json.dumps with its keyword arguments (as transformers' tojson filter passes them). */
typedef struct tpl_json_opts {
    int indent;           // < 0: None
    const char *item_sep; // separators=(item_sep, key_sep)
    size_t item_sep_n;    // bytes
    const char *key_sep;  //
    size_t key_sep_n;     // bytes
    bool sort_keys;       // -3 (with *bad) when keys cannot be compared, as Python raises
    bool ensure_ascii;    // escapes everything outside ' '..'~' as JSON unicode escapes
} tpl_json_opts;
int tv_json_opts(tpl_buf *b, tv v, const tpl_json_opts *o, const char **bad);

/* UTF-8: number of code points; byte offset of code point i (i <= count). */
size_t tpl_utf8_count(const char *p, size_t n);
size_t tpl_utf8_offset(const char *p, size_t n, size_t i);
/* Decodes one code point at p (n bytes left, n > 0) into *cp; returns its length (>= 1). */
size_t tpl_utf8_decode(const char *p, size_t n, uint32_t *cp);
bool tpl_is_space(uint32_t cp); // Python str.isspace() for one code point

/* ---- parse / eval ---- */
nuri_status tpl_parse(nuri_template *t, const char *src, size_t len);

#endif
