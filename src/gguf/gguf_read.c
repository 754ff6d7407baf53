/*
 * gguf_read.c: opens a GGUF file (mmap or bytes in memory) and validates all of it.
 *
 * One pass over the bytes: header, key-value pairs, tensor infos; then the data section is placed
 * and every tensor is checked against it. Every count, length and offset read from the file is
 * checked against the bytes that remain before it is used, with overflow-checked arithmetic, and no
 * allocation is sized by a count before that count has been bounded by the file size. The only
 * allocations are the kv and tensor tables, their hash indexes, and one pointer per string of each
 * string array (so that gguf_arr_str is O(1)).
 *
 * Invariants after a successful parse: every gguf_str, value pointer and tensor data pointer lies
 * inside [base, base + size); keys and tensor names are unique, non-empty, valid UTF-8 without
 * control characters; tensors are aligned, inside the data section and do not overlap.
 *
 * Does not: interpret metadata or tensor contents (model/ and tokenizer/ do), or print anything.
 */
#include "gguf/gguf.h"

#include "base/status.h"
#include "gguf/gguf_internal.h"
#include "kernels/types.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gguf_read.c reads little-endian values with memcpy: port it before using a big-endian host"
#endif

#define GGUF_HEADER_BYTES 24     // magic, version, n_tensors, n_kv
#define GGUF_MIN_KV_BYTES 14     // key length 8 + key 1 + type 4 + smallest value 1
#define GGUF_MIN_TENSOR_BYTES 33 // name length 8 + name 1 + n_dims 4 + ne 8 + type 4 + offset 8
#define GGUF_MSG_NAME_MAX 96     // bytes of a key or name quoted in a message

/* ---- the structures behind the opaque handles ---- */

struct gguf_file {
    const uint8_t *base;
    uint64_t size; // bytes
    void *map;     // the mapping to munmap, NULL for gguf_open_memory
    uint32_t version;
    uint32_t alignment;
    uint64_t data_off; // bytes from file start to the data section
    uint64_t n_kv;
    struct gguf_kv *kvs;
    uint64_t n_tensors;
    gguf_tensor *tensors;
    gguf_name_index kv_index;
    gguf_name_index tensor_index;
};

/* ---- small helpers ---- */

static uint32_t ld_u32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static uint64_t ld_u64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static const char *const type_names[GGUF_TYPE_COUNT] = {
    [GGUF_TYPE_UINT8] = "uint8",     [GGUF_TYPE_INT8] = "int8",     [GGUF_TYPE_UINT16] = "uint16",
    [GGUF_TYPE_INT16] = "int16",     [GGUF_TYPE_UINT32] = "uint32", [GGUF_TYPE_INT32] = "int32",
    [GGUF_TYPE_FLOAT32] = "float32", [GGUF_TYPE_BOOL] = "bool",     [GGUF_TYPE_STRING] = "string",
    [GGUF_TYPE_ARRAY] = "array",     [GGUF_TYPE_UINT64] = "uint64", [GGUF_TYPE_INT64] = "int64",
    [GGUF_TYPE_FLOAT64] = "float64",
};

const char *gguf_type_name(gguf_type t)
{
    if ((unsigned)t >= GGUF_TYPE_COUNT) return "invalid";
    return type_names[t];
}

uint64_t gguf_type_fixed_size(uint32_t t)
{
    switch (t) {
    case GGUF_TYPE_UINT8:
    case GGUF_TYPE_INT8:
    case GGUF_TYPE_BOOL:
        return 1;
    case GGUF_TYPE_UINT16:
    case GGUF_TYPE_INT16:
        return 2;
    case GGUF_TYPE_UINT32:
    case GGUF_TYPE_INT32:
    case GGUF_TYPE_FLOAT32:
        return 4;
    case GGUF_TYPE_UINT64:
    case GGUF_TYPE_INT64:
    case GGUF_TYPE_FLOAT64:
        return 8;
    default:
        return 0;
    }
}

static bool type_is_int(gguf_type t)
{
    return t == GGUF_TYPE_UINT8 || t == GGUF_TYPE_INT8 || t == GGUF_TYPE_UINT16 ||
           t == GGUF_TYPE_INT16 || t == GGUF_TYPE_UINT32 || t == GGUF_TYPE_INT32 ||
           t == GGUF_TYPE_UINT64 || t == GGUF_TYPE_INT64;
}

/* Writes s into dst (cap bytes, NUL-terminated) for quoting in a message: at most
 * GGUF_MSG_NAME_MAX bytes, control bytes, quotes and (unless utf8_ok) bytes >= 0x80 as \xNN. */
static void quote_name(char *dst, size_t cap, const uint8_t *s, uint64_t len, bool utf8_ok)
{
    size_t o = 0;
    uint64_t n = len < GGUF_MSG_NAME_MAX ? len : GGUF_MSG_NAME_MAX;
    for (uint64_t i = 0; i < n && o + 5 < cap; i++) {
        uint8_t c = s[i];
        if (c < 0x20 || c == 0x7f || c == '\'' || c == '\\' || (c >= 0x80 && !utf8_ok)) {
            o += (size_t)snprintf(dst + o, cap - o, "\\x%02x", c);
        } else {
            dst[o++] = (char)c;
        }
    }
    if (n < len && o + 4 < cap) {
        memcpy(dst + o, "...", 3);
        o += 3;
    }
    dst[o] = 0;
}

bool gguf_name_is_valid(const uint8_t *s, uint64_t len)
{
    uint64_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) {
            if (c < 0x20 || c == 0x7f) return false;
            i++;
            continue;
        }
        uint32_t need, cp;
        if (c >= 0xc2 && c <= 0xdf) {
            need = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (len - i - 1 < need) return false;
        for (uint32_t k = 1; k <= need; k++) {
            uint8_t d = s[i + k];
            if ((d & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (d & 0x3f);
        }
        if ((need == 2 && cp < 0x800) || (need == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += need + 1;
    }
    return true;
}

/* ---- name index ---- */

static uint64_t hash_bytes(uint64_t seed, const char *p, uint64_t len)
{
    uint64_t h = 0xcbf29ce484222325ull ^ seed; // FNV-1a from a seeded state
    for (uint64_t i = 0; i < len; i++) {
        h ^= (uint8_t)p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

nuri_status gguf_name_index_init(gguf_name_index *ix, uint64_t n)
{
    uint64_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    ix->slots = calloc(cap, sizeof *ix->slots);
    if (!ix->slots)
        return nuri_error(NURI_ERR_NOMEM, "out of memory for a %llu-entry index",
                          (unsigned long long)n);
    ix->mask = cap - 1;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ix->seed = ((uint64_t)(uintptr_t)ix->slots * 0x9e3779b97f4a7c15ull) ^ (uint64_t)ts.tv_nsec ^
               ((uint64_t)ts.tv_sec << 32);
    return NURI_OK;
}

uint32_t gguf_name_index_find(const gguf_name_index *ix, const char *p, uint64_t len)
{
    if (!ix->slots) return 0;
    for (uint64_t i = hash_bytes(ix->seed, p, len) & ix->mask;; i = (i + 1) & ix->mask) {
        const gguf_name_slot *s = &ix->slots[i];
        if (!s->idx1) return 0;
        if (s->len == len && !memcmp(s->ptr, p, len)) return s->idx1;
    }
}

void gguf_name_index_put(gguf_name_index *ix, const char *p, uint64_t len, uint32_t idx)
{
    uint64_t i = hash_bytes(ix->seed, p, len) & ix->mask;
    while (ix->slots[i].idx1) i = (i + 1) & ix->mask;
    ix->slots[i] = (gguf_name_slot){p, len, idx + 1};
}

/* ---- the parser ---- */

typedef struct parser {
    const uint8_t *base;
    uint64_t size;                          // bytes
    uint64_t pos;                           // bytes from file start
    char where[GGUF_MSG_NAME_MAX * 4 + 64]; // "key 'x' (kv #3)", prefixed to messages
} parser;

static nuri_status perr(parser *p, nuri_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static nuri_status perr(parser *p, nuri_status s, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (p->where[0]) return nuri_error(s, "%s: %s", p->where, msg);
    return nuri_error(s, "%s", msg);
}

/* Checks that n more bytes are there; `what` names them for the message. */
static nuri_status need(parser *p, uint64_t n, const char *what)
{
    if (p->size - p->pos < n)
        return perr(p, NURI_ERR_FORMAT,
                    "file truncated: %s at byte %llu needs %llu bytes, only %llu left", what,
                    (unsigned long long)p->pos, (unsigned long long)n,
                    (unsigned long long)(p->size - p->pos));
    return NURI_OK;
}

static nuri_status rd_u32(parser *p, const char *what, uint32_t *out)
{
    nuri_status s = need(p, 4, what);
    if (s) return s;
    *out = ld_u32(p->base + p->pos);
    p->pos += 4;
    return NURI_OK;
}

static nuri_status rd_u64(parser *p, const char *what, uint64_t *out)
{
    nuri_status s = need(p, 8, what);
    if (s) return s;
    *out = ld_u64(p->base + p->pos);
    p->pos += 8;
    return NURI_OK;
}

/* Reads a name (key or tensor name): length, bytes, non-empty, <= max, valid UTF-8. */
static nuri_status rd_name(parser *p, const char *what, uint64_t max, gguf_str *out)
{
    char lenwhat[64], q[GGUF_MSG_NAME_MAX * 4 + 8];
    snprintf(lenwhat, sizeof lenwhat, "%s length", what);
    uint64_t start = p->pos, len;
    nuri_status s = rd_u64(p, lenwhat, &len);
    if (s) return s;
    if (len == 0)
        return perr(p, NURI_ERR_FORMAT, "empty %s at byte %llu", what, (unsigned long long)start);
    if (len > max)
        return perr(p, NURI_ERR_LIMIT, "%s at byte %llu is %llu bytes long (limit %llu)", what,
                    (unsigned long long)start, (unsigned long long)len, (unsigned long long)max);
    s = need(p, len, what);
    if (s) return s;
    const uint8_t *b = p->base + p->pos;
    if (!gguf_name_is_valid(b, len)) {
        quote_name(q, sizeof q, b, len, false);
        return perr(p, NURI_ERR_FORMAT,
                    "%s '%s' at byte %llu is not valid UTF-8 or contains control characters", what,
                    q, (unsigned long long)start);
    }
    out->ptr = (const char *)b;
    out->len = len;
    p->pos += len;
    return NURI_OK;
}

static nuri_status check_bool(parser *p, uint8_t v, uint64_t at)
{
    if (v > 1)
        return perr(p, NURI_ERR_FORMAT, "bool value %u at byte %llu is not 0 or 1", v,
                    (unsigned long long)at);
    return NURI_OK;
}

/* Reads the value of kv (its type is set) at p->pos. */
static nuri_status rd_value(parser *p, struct gguf_kv *kv)
{
    nuri_status s;
    uint64_t start = p->pos;
    if (kv->type == GGUF_TYPE_STRING) {
        s = rd_u64(p, "string length", &kv->n);
        if (s) return s;
        if (kv->n > p->size - p->pos)
            return perr(p, NURI_ERR_FORMAT,
                        "string at byte %llu is %llu bytes long, past the end of the file "
                        "(%llu bytes left)",
                        (unsigned long long)start, (unsigned long long)kv->n,
                        (unsigned long long)(p->size - p->pos));
        kv->val = p->base + p->pos;
        p->pos += kv->n;
        return NURI_OK;
    }
    if (kv->type != GGUF_TYPE_ARRAY) {
        uint64_t sz = gguf_type_fixed_size(kv->type);
        s = need(p, sz, gguf_type_name(kv->type));
        if (s) return s;
        kv->n = 1;
        kv->val = p->base + p->pos;
        if (kv->type == GGUF_TYPE_BOOL && (s = check_bool(p, kv->val[0], p->pos))) return s;
        p->pos += sz;
        return NURI_OK;
    }

    uint32_t et;
    s = rd_u32(p, "array element type", &et);
    if (s) return s;
    if (et == GGUF_TYPE_ARRAY)
        return perr(p, NURI_ERR_FORMAT,
                    "nested array at byte %llu (arrays of arrays are not supported)",
                    (unsigned long long)start);
    if (et >= GGUF_TYPE_COUNT)
        return perr(p, NURI_ERR_FORMAT, "unknown array element type id %u at byte %llu", et,
                    (unsigned long long)start);
    kv->arr_type = (gguf_type)et;
    s = rd_u64(p, "array element count", &kv->n);
    if (s) return s;
    uint64_t left = p->size - p->pos;
    uint64_t esz = et == GGUF_TYPE_STRING ? 8 : gguf_type_fixed_size(et), total;
    if (nuri_mul_overflow(kv->n, esz, &total) || total > left)
        return perr(p, NURI_ERR_FORMAT,
                    "array at byte %llu of %llu %s elements needs at least %llu x %llu bytes, only "
                    "%llu left in the file",
                    (unsigned long long)start, (unsigned long long)kv->n, gguf_type_name(et),
                    (unsigned long long)kv->n, (unsigned long long)esz, (unsigned long long)left);
    kv->val = p->base + p->pos;
    if (et != GGUF_TYPE_STRING) {
        if (et == GGUF_TYPE_BOOL)
            for (uint64_t i = 0; i < kv->n; i++)
                if ((s = check_bool(p, kv->val[i], p->pos + i))) return s;
        p->pos += total;
        return NURI_OK;
    }
    if (kv->n == 0) return NURI_OK;
    kv->strs = malloc(kv->n * sizeof *kv->strs); // n <= bytes left / 8
    if (!kv->strs)
        return perr(p, NURI_ERR_NOMEM, "out of memory for an index of %llu strings",
                    (unsigned long long)kv->n);
    for (uint64_t i = 0; i < kv->n; i++) {
        uint64_t at = p->pos, len;
        if ((s = need(p, 8, "array string length"))) return s;
        len = ld_u64(p->base + at);
        if (len > p->size - at - 8)
            return perr(p, NURI_ERR_FORMAT,
                        "array element %llu: string at byte %llu is %llu bytes long, past the "
                        "end of the file (%llu bytes left)",
                        (unsigned long long)i, (unsigned long long)at, (unsigned long long)len,
                        (unsigned long long)(p->size - at - 8));
        kv->strs[i] = p->base + at;
        p->pos = at + 8 + len;
    }
    return NURI_OK;
}

static nuri_status parse_kvs(parser *p, gguf_file *f)
{
    char q[GGUF_MSG_NAME_MAX + 8];
    for (uint64_t i = 0; i < f->n_kv; i++) {
        struct gguf_kv *kv = &f->kvs[i];
        kv->offset = p->pos;
        snprintf(p->where, sizeof p->where, "kv #%llu", (unsigned long long)i);
        nuri_status s = rd_name(p, "key", GGUF_MAX_KEY_LEN, &kv->key);
        if (s) return s;
        quote_name(q, sizeof q, (const uint8_t *)kv->key.ptr, kv->key.len, true);
        snprintf(p->where, sizeof p->where, "key '%s' (kv #%llu at byte %llu)", q,
                 (unsigned long long)i, (unsigned long long)kv->offset);
        uint32_t first = gguf_name_index_find(&f->kv_index, kv->key.ptr, kv->key.len);
        if (first)
            return perr(p, NURI_ERR_FORMAT, "duplicate key (first defined as kv #%u)", first - 1);
        gguf_name_index_put(&f->kv_index, kv->key.ptr, kv->key.len, (uint32_t)i);
        uint32_t t;
        uint64_t tpos = p->pos;
        if ((s = rd_u32(p, "value type", &t))) return s;
        if (t >= GGUF_TYPE_COUNT)
            return perr(p, NURI_ERR_FORMAT, "unknown value type id %u at byte %llu", t,
                        (unsigned long long)tpos);
        kv->type = (gguf_type)t;
        if ((s = rd_value(p, kv))) return s;

        if (gguf_str_eq(kv->key, "general.alignment")) {
            if (kv->type != GGUF_TYPE_UINT32)
                return perr(p, NURI_ERR_FORMAT, "has type %s, uint32 expected",
                            gguf_type_name(kv->type));
            uint32_t a = ld_u32(kv->val);
            if (a == 0 || (a & (a - 1)))
                return perr(p, NURI_ERR_FORMAT, "alignment %u is not a power of two", a);
            if (a > GGUF_MAX_ALIGNMENT)
                return perr(p, NURI_ERR_LIMIT, "alignment %u is over the limit %u", a,
                            GGUF_MAX_ALIGNMENT);
            f->alignment = a;
        }
    }
    p->where[0] = 0;
    return NURI_OK;
}

static const char *removed_type_name(uint32_t id)
{
    switch (id) {
    case 4:
        return "Q4_2, removed from the format";
    case 5:
        return "Q4_3, removed from the format";
    case 31:
        return "Q4_0_4_4, removed from the format";
    case 32:
        return "Q4_0_4_8, removed from the format";
    case 33:
        return "Q4_0_8_8, removed from the format";
    case 36:
        return "IQ4_NL_4_4, removed from the format";
    case 37:
        return "IQ4_NL_4_8, removed from the format";
    case 38:
        return "IQ4_NL_8_8, removed from the format";
    default:
        return "not a type nuri knows";
    }
}

static nuri_status parse_tensor_infos(parser *p, gguf_file *f)
{
    char q[GGUF_MSG_NAME_MAX + 8];
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        uint64_t start = p->pos;
        snprintf(p->where, sizeof p->where, "tensor #%llu", (unsigned long long)i);
        nuri_status s = rd_name(p, "tensor name", GGUF_MAX_NAME_LEN, &t->name);
        if (s) return s;
        quote_name(q, sizeof q, (const uint8_t *)t->name.ptr, t->name.len, true);
        snprintf(p->where, sizeof p->where, "tensor '%s' (#%llu at byte %llu)", q,
                 (unsigned long long)i, (unsigned long long)start);
        uint32_t first = gguf_name_index_find(&f->tensor_index, t->name.ptr, t->name.len);
        if (first)
            return perr(p, NURI_ERR_FORMAT, "duplicate tensor name (first defined as tensor #%u)",
                        first - 1);
        gguf_name_index_put(&f->tensor_index, t->name.ptr, t->name.len, (uint32_t)i);

        uint64_t at = p->pos;
        if ((s = rd_u32(p, "n_dims", &t->n_dims))) return s;
        if (t->n_dims == 0 || t->n_dims > GGUF_MAX_DIMS)
            return perr(p, NURI_ERR_FORMAT, "n_dims %u at byte %llu is not in 1..%d", t->n_dims,
                        (unsigned long long)at, GGUF_MAX_DIMS);
        uint64_t nel = 1;
        for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            uint64_t v;
            at = p->pos;
            if ((s = rd_u64(p, "dimension", &v))) return s;
            if (v == 0)
                return perr(p, NURI_ERR_FORMAT, "dimension ne[%u] at byte %llu is 0", d,
                            (unsigned long long)at);
            if (v > INT64_MAX)
                return perr(p, NURI_ERR_FORMAT, "dimension ne[%u] at byte %llu is negative (%lld)",
                            d, (unsigned long long)at, (long long)v);
            if (nuri_mul_overflow(nel, v, &nel) || nel > INT64_MAX)
                return perr(p, NURI_ERR_FORMAT,
                            "element count overflows at dimension ne[%u] = %llu (byte %llu)", d,
                            (unsigned long long)v, (unsigned long long)at);
            t->ne[d] = (int64_t)v;
        }
        at = p->pos;
        if ((s = rd_u32(p, "tensor type", &t->type))) return s;
        const nuri_type_info *ti = nuri_type_get(t->type);
        if (!ti)
            return perr(p, NURI_ERR_UNSUPPORTED, "ggml type id %u at byte %llu (%s)", t->type,
                        (unsigned long long)at, removed_type_name(t->type));
        if ((uint64_t)t->ne[0] % ti->block_size)
            return perr(p, NURI_ERR_FORMAT,
                        "ne[0] = %lld is not a multiple of the block size %u of type %s",
                        (long long)t->ne[0], ti->block_size, ti->name);
        uint64_t bytes;
        if (!nuri_type_row_bytes(t->type, (uint64_t)t->ne[0], &bytes) ||
            nuri_mul_overflow(bytes, (uint64_t)t->ne[1], &bytes) ||
            nuri_mul_overflow(bytes, (uint64_t)t->ne[2], &bytes) ||
            nuri_mul_overflow(bytes, (uint64_t)t->ne[3], &bytes))
            return perr(p, NURI_ERR_FORMAT, "byte size of a %s tensor of %llu elements overflows",
                        ti->name, (unsigned long long)nel);
        t->size = bytes;
        if ((s = rd_u64(p, "tensor offset", &t->offset))) return s;
    }
    p->where[0] = 0;
    return NURI_OK;
}

typedef struct span {
    uint64_t start, end; // bytes from file start
    uint64_t idx;
} span;

static int span_cmp(const void *a, const void *b)
{
    const span *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

/* Places the data section and checks every tensor against it. */
static nuri_status place_tensors(parser *p, gguf_file *f)
{
    uint64_t a = f->alignment, end_infos = p->pos, data_off;
    // alignment <= 2^30 and end_infos <= size < 2^63, so this cannot overflow
    data_off = (end_infos + a - 1) / a * a;
    if (f->n_tensors == 0) {
        f->data_off = data_off < f->size ? data_off : f->size;
        return NURI_OK;
    }
    if (data_off > f->size)
        return perr(p, NURI_ERR_FORMAT,
                    "file truncated: the data section starts at byte %llu, beyond the end of the "
                    "file (%llu bytes)",
                    (unsigned long long)data_off, (unsigned long long)f->size);
    f->data_off = data_off;
    uint64_t data_size = f->size - data_off;
    span *spans = malloc(f->n_tensors * sizeof *spans);
    if (!spans) return nuri_error(NURI_ERR_NOMEM, "out of memory for the tensor table");
    char q[GGUF_MSG_NAME_MAX + 8], q2[GGUF_MSG_NAME_MAX + 8];
    nuri_status s = NURI_OK;
    for (uint64_t i = 0; i < f->n_tensors && !s; i++) {
        gguf_tensor *t = &f->tensors[i];
        quote_name(q, sizeof q, (const uint8_t *)t->name.ptr, t->name.len, true);
        if (t->offset % a)
            s = nuri_error(NURI_ERR_FORMAT,
                           "tensor '%s': offset %llu is not a multiple of the alignment %llu", q,
                           (unsigned long long)t->offset, (unsigned long long)a);
        else if (t->offset > data_size || t->size > data_size - t->offset)
            s = nuri_error(NURI_ERR_FORMAT,
                           "tensor '%s': %llu bytes at offset %llu (byte %llu) run past the end "
                           "of the file (data section of %llu bytes at byte %llu)",
                           q, (unsigned long long)t->size, (unsigned long long)t->offset,
                           (unsigned long long)(t->offset > UINT64_MAX - data_off
                                                    ? UINT64_MAX
                                                    : data_off + t->offset),
                           (unsigned long long)data_size, (unsigned long long)data_off);
        else {
            t->data = f->base + data_off + t->offset;
            spans[i] = (span){data_off + t->offset, data_off + t->offset + t->size, i};
        }
    }
    if (!s) {
        qsort(spans, f->n_tensors, sizeof *spans, span_cmp);
        for (uint64_t i = 1; i < f->n_tensors; i++) {
            if (spans[i].start >= spans[i - 1].end) continue;
            const gguf_tensor *x = &f->tensors[spans[i - 1].idx], *y = &f->tensors[spans[i].idx];
            quote_name(q, sizeof q, (const uint8_t *)x->name.ptr, x->name.len, true);
            quote_name(q2, sizeof q2, (const uint8_t *)y->name.ptr, y->name.len, true);
            s = nuri_error(NURI_ERR_FORMAT,
                           "tensors '%s' (bytes %llu..%llu) and '%s' (bytes %llu..%llu) overlap", q,
                           (unsigned long long)spans[i - 1].start,
                           (unsigned long long)spans[i - 1].end, q2,
                           (unsigned long long)spans[i].start, (unsigned long long)spans[i].end);
            break;
        }
    }
    free(spans);
    return s;
}

static nuri_status parse_header(parser *p, gguf_file *f)
{
    static const uint8_t magic[4] = {'G', 'G', 'U', 'F'};
    if (p->size == 0) return perr(p, NURI_ERR_FORMAT, "empty file (0 bytes), not a GGUF file");
    if (p->size < 4 || memcmp(p->base, magic, 4)) {
        char got[32];
        uint64_t n = p->size < 4 ? p->size : 4;
        quote_name(got, sizeof got, p->base, n, false);
        return perr(p, NURI_ERR_FORMAT,
                    "not a GGUF file: the first %llu bytes are '%s' (the magic 'GGUF' expected)",
                    (unsigned long long)n, got);
    }
    p->pos = 4;
    nuri_status s;
    if ((s = rd_u32(p, "version", &f->version))) return s;
    uint32_t v = f->version, swapped = __builtin_bswap32(v);
    if (v >= 1u << 16 && swapped >= 1 && swapped <= 3)
        return perr(p, NURI_ERR_UNSUPPORTED,
                    "big-endian GGUF file (version reads as 0x%08x, byte-swapped %u): nuri reads "
                    "little-endian files only",
                    v, swapped);
    if (v == 1)
        return perr(p, NURI_ERR_UNSUPPORTED,
                    "GGUF version 1 (32-bit counts, from 2023) is not supported: convert the file "
                    "to version 3");
    if (v == 0) return perr(p, NURI_ERR_FORMAT, "GGUF version 0 at byte 4 is invalid");
    if (v > 3)
        return perr(p, NURI_ERR_UNSUPPORTED,
                    "GGUF version %u is newer than this reader (versions 2 and 3)", v);
    if ((s = rd_u64(p, "tensor count", &f->n_tensors))) return s;
    if ((s = rd_u64(p, "kv count", &f->n_kv))) return s;

    uint64_t room = p->size - GGUF_HEADER_BYTES;
    if (f->n_kv > room / GGUF_MIN_KV_BYTES)
        return perr(p, NURI_ERR_FORMAT,
                    "kv count %llu at byte 16 is impossible: the %llu bytes after the header hold "
                    "at most %llu key-value pairs",
                    (unsigned long long)f->n_kv, (unsigned long long)room,
                    (unsigned long long)(room / GGUF_MIN_KV_BYTES));
    if (f->n_tensors > room / GGUF_MIN_TENSOR_BYTES)
        return perr(p, NURI_ERR_FORMAT,
                    "tensor count %llu at byte 8 is impossible: the %llu bytes after the header "
                    "hold at most %llu tensor infos",
                    (unsigned long long)f->n_tensors, (unsigned long long)room,
                    (unsigned long long)(room / GGUF_MIN_TENSOR_BYTES));
    if (f->n_tensors * GGUF_MIN_TENSOR_BYTES > room - f->n_kv * GGUF_MIN_KV_BYTES)
        return perr(p, NURI_ERR_FORMAT,
                    "%llu key-value pairs and %llu tensor infos cannot fit in a file of %llu bytes",
                    (unsigned long long)f->n_kv, (unsigned long long)f->n_tensors,
                    (unsigned long long)p->size);
    if (f->n_kv > GGUF_MAX_KV)
        return perr(p, NURI_ERR_LIMIT, "kv count %llu is over the limit %u",
                    (unsigned long long)f->n_kv, GGUF_MAX_KV);
    if (f->n_tensors > GGUF_MAX_TENSORS)
        return perr(p, NURI_ERR_LIMIT, "tensor count %llu is over the limit %u",
                    (unsigned long long)f->n_tensors, GGUF_MAX_TENSORS);
    return NURI_OK;
}

/* Parses and validates base[0..size) into f (whose base, size and map are set). */
static nuri_status parse_file(gguf_file *f)
{
    parser p = {.base = f->base, .size = f->size, .pos = 0};
    p.where[0] = 0;
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    nuri_status s = parse_header(&p, f);
    if (s) return s;
    // counts are bounded by the file size and the limits above: these allocations are too
    if (f->n_kv && !(f->kvs = calloc(f->n_kv, sizeof *f->kvs)))
        return nuri_error(NURI_ERR_NOMEM, "out of memory for %llu key-value pairs",
                          (unsigned long long)f->n_kv);
    if (f->n_tensors && !(f->tensors = calloc(f->n_tensors, sizeof *f->tensors)))
        return nuri_error(NURI_ERR_NOMEM, "out of memory for %llu tensors",
                          (unsigned long long)f->n_tensors);
    if ((s = gguf_name_index_init(&f->kv_index, f->n_kv))) return s;
    if ((s = gguf_name_index_init(&f->tensor_index, f->n_tensors))) return s;
    if ((s = parse_kvs(&p, f))) return s;
    if ((s = parse_tensor_infos(&p, f))) return s;
    return place_tensors(&p, f);
}

/* ---- opening and closing ---- */

void gguf_close(gguf_file *f)
{
    if (!f) return;
    for (uint64_t i = 0; i < f->n_kv && f->kvs; i++) free(f->kvs[i].strs);
    free(f->kvs);
    free(f->tensors);
    free(f->kv_index.slots);
    free(f->tensor_index.slots);
    if (f->map) munmap(f->map, (size_t)f->size);
    free(f);
}

nuri_status gguf_open_memory(const void *data, size_t size, gguf_file **out)
{
    *out = NULL;
    if (!data && size)
        return nuri_error(NURI_ERR_INVALID_ARG, "gguf_open_memory: NULL data of %zu bytes", size);
    static const uint8_t empty[1];
    gguf_file *f = calloc(1, sizeof *f);
    if (!f) return nuri_error(NURI_ERR_NOMEM, "out of memory opening a GGUF file");
    f->base = data ? data : empty;
    f->size = size;
    nuri_status s = parse_file(f);
    if (s) {
        gguf_close(f);
        return s;
    }
    *out = f;
    return NURI_OK;
}

nuri_status gguf_open(const char *path, gguf_file **out)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return nuri_error(errno == ENOENT ? NURI_ERR_NOT_FOUND : NURI_ERR_IO, "%s: cannot open: %s",
                          path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return nuri_error(NURI_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return nuri_error(NURI_ERR_IO, "%s: is a directory, not a GGUF file", path);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return nuri_error(NURI_ERR_IO, "%s: not a regular file", path);
    }
    gguf_file *f = calloc(1, sizeof *f);
    if (!f) {
        close(fd);
        return nuri_error(NURI_ERR_NOMEM, "%s: out of memory", path);
    }
    static const uint8_t empty[1];
    f->size = (uint64_t)st.st_size;
    f->base = empty;
    if (st.st_size > 0) {
        void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            int e = errno;
            close(fd);
            free(f);
            return nuri_error(NURI_ERR_IO, "%s: cannot map %lld bytes: %s", path,
                              (long long)st.st_size, strerror(e));
        }
        f->map = m;
        f->base = m;
    }
    close(fd);
    nuri_status s = parse_file(f);
    if (s) {
        gguf_close(f);
        return nuri_error_wrap(s, "%s", path);
    }
    *out = f;
    return NURI_OK;
}

void gguf_release_range(const gguf_file *f, const void *p, size_t n)
{
    const uintptr_t base = (uintptr_t)f->map, at = (uintptr_t)p;
    if (!f->map || at < base || at + n > base + f->size) return;
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t lo = (at + page - 1) & ~(page - 1), hi = (at + n) & ~(page - 1);
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

/* ---- file-level getters ---- */

uint32_t gguf_version(const gguf_file *f)
{
    return f->version;
}

uint32_t gguf_alignment(const gguf_file *f)
{
    return f->alignment;
}

uint64_t gguf_data_offset(const gguf_file *f)
{
    return f->data_off;
}

uint64_t gguf_file_size(const gguf_file *f)
{
    return f->size;
}

/* ---- metadata ---- */

uint64_t gguf_n_kv(const gguf_file *f)
{
    return f->n_kv;
}

const gguf_kv *gguf_kv_at(const gguf_file *f, uint64_t i)
{
    return i < f->n_kv ? &f->kvs[i] : NULL;
}

const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key)
{
    uint32_t i = gguf_name_index_find(&f->kv_index, key, strlen(key));
    return i ? &f->kvs[i - 1] : NULL;
}

gguf_str gguf_kv_key(const gguf_kv *kv)
{
    return kv->key;
}

gguf_type gguf_kv_type(const gguf_kv *kv)
{
    return kv->type;
}

bool gguf_str_eq(gguf_str s, const char *c)
{
    size_t n = strlen(c);
    return s.len == n && !memcmp(s.ptr, c, n);
}

static nuri_status kv_mismatch(const gguf_kv *kv, const char *expected)
{
    return nuri_error(NURI_ERR_FORMAT, "key '%.*s': value is %s, %s expected",
                      (int)(kv->key.len < 200 ? kv->key.len : 200), kv->key.ptr,
                      gguf_type_name(kv->type), expected);
}

/* Reads an integer element of type t at p as a sign and magnitude. */
static void load_int(gguf_type t, const uint8_t *p, bool *neg, uint64_t *mag)
{
    int64_t sv = 0;
    uint64_t uv = 0;
    bool is_signed = true;
    switch (t) {
    case GGUF_TYPE_UINT8:
        uv = p[0], is_signed = false;
        break;
    case GGUF_TYPE_INT8:
        sv = (int8_t)p[0];
        break;
    case GGUF_TYPE_UINT16: {
        uint16_t v;
        memcpy(&v, p, 2);
        uv = v, is_signed = false;
        break;
    }
    case GGUF_TYPE_INT16: {
        int16_t v;
        memcpy(&v, p, 2);
        sv = v;
        break;
    }
    case GGUF_TYPE_UINT32:
        uv = ld_u32(p), is_signed = false;
        break;
    case GGUF_TYPE_INT32:
        sv = (int32_t)ld_u32(p);
        break;
    case GGUF_TYPE_UINT64:
        uv = ld_u64(p), is_signed = false;
        break;
    case GGUF_TYPE_INT64:
        sv = (int64_t)ld_u64(p);
        break;
    default:
        NURI_ASSERT(0 && "load_int on a non-integer type");
    }
    if (is_signed) {
        *neg = sv < 0;
        *mag = sv < 0 ? (uint64_t)0 - (uint64_t)sv : (uint64_t)sv;
    } else {
        *neg = false;
        *mag = uv;
    }
}

static double load_float(gguf_type t, const uint8_t *p)
{
    if (t == GGUF_TYPE_FLOAT32) {
        float v;
        memcpy(&v, p, 4);
        return v;
    }
    double v;
    memcpy(&v, p, 8);
    return v;
}

static nuri_status int_to_i64(bool neg, uint64_t mag, int64_t *out)
{
    if (neg) {
        if (mag > (uint64_t)INT64_MAX + 1) return NURI_ERR_FORMAT;
        *out = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
    } else {
        if (mag > INT64_MAX) return NURI_ERR_FORMAT;
        *out = (int64_t)mag;
    }
    return NURI_OK;
}

static const char *kv_key_for_msg(const gguf_kv *kv, int *len)
{
    *len = (int)(kv->key.len < 200 ? kv->key.len : 200);
    return kv->key.ptr;
}

nuri_status gguf_kv_u64(const gguf_kv *kv, uint64_t *out)
{
    if (!type_is_int(kv->type)) return kv_mismatch(kv, "an integer");
    bool neg;
    uint64_t mag;
    load_int(kv->type, kv->val, &neg, &mag);
    if (neg && mag) {
        int n;
        const char *k = kv_key_for_msg(kv, &n);
        return nuri_error(NURI_ERR_FORMAT, "key '%.*s': value -%llu is negative", n, k,
                          (unsigned long long)mag);
    }
    *out = mag;
    return NURI_OK;
}

nuri_status gguf_kv_i64(const gguf_kv *kv, int64_t *out)
{
    if (!type_is_int(kv->type)) return kv_mismatch(kv, "an integer");
    bool neg;
    uint64_t mag;
    load_int(kv->type, kv->val, &neg, &mag);
    if (int_to_i64(neg, mag, out)) {
        int n;
        const char *k = kv_key_for_msg(kv, &n);
        return nuri_error(NURI_ERR_FORMAT, "key '%.*s': value %llu does not fit in int64", n, k,
                          (unsigned long long)mag);
    }
    return NURI_OK;
}

nuri_status gguf_kv_f64(const gguf_kv *kv, double *out)
{
    if (kv->type != GGUF_TYPE_FLOAT32 && kv->type != GGUF_TYPE_FLOAT64)
        return kv_mismatch(kv, "a float");
    *out = load_float(kv->type, kv->val);
    return NURI_OK;
}

nuri_status gguf_kv_bool(const gguf_kv *kv, bool *out)
{
    if (kv->type != GGUF_TYPE_BOOL) return kv_mismatch(kv, "a bool");
    *out = kv->val[0] != 0;
    return NURI_OK;
}

nuri_status gguf_kv_str(const gguf_kv *kv, gguf_str *out)
{
    if (kv->type != GGUF_TYPE_STRING) return kv_mismatch(kv, "a string");
    out->ptr = (const char *)kv->val;
    out->len = kv->n;
    return NURI_OK;
}

nuri_status gguf_kv_arr(const gguf_kv *kv, gguf_arr *out)
{
    if (kv->type != GGUF_TYPE_ARRAY) return kv_mismatch(kv, "an array");
    out->type = kv->arr_type;
    out->n = kv->n;
    out->data = kv->val;
    out->kv = kv;
    return NURI_OK;
}

static nuri_status find_or_fail(const gguf_file *f, const char *key, const gguf_kv **kv)
{
    *kv = gguf_find_kv(f, key);
    if (!*kv) return nuri_error(NURI_ERR_NOT_FOUND, "key '%s' not found", key);
    return NURI_OK;
}

nuri_status gguf_get_u64(const gguf_file *f, const char *key, uint64_t *out)
{
    const gguf_kv *kv;
    nuri_status s = find_or_fail(f, key, &kv);
    return s ? s : gguf_kv_u64(kv, out);
}

nuri_status gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out)
{
    uint64_t v;
    nuri_status s = gguf_get_u64(f, key, &v);
    if (s) return s;
    if (v > UINT32_MAX)
        return nuri_error(NURI_ERR_FORMAT, "key '%s': value %llu does not fit in uint32", key,
                          (unsigned long long)v);
    *out = (uint32_t)v;
    return NURI_OK;
}

nuri_status gguf_get_i64(const gguf_file *f, const char *key, int64_t *out)
{
    const gguf_kv *kv;
    nuri_status s = find_or_fail(f, key, &kv);
    return s ? s : gguf_kv_i64(kv, out);
}

nuri_status gguf_get_f32(const gguf_file *f, const char *key, float *out)
{
    const gguf_kv *kv;
    double v = 0;
    nuri_status s = find_or_fail(f, key, &kv);
    if (s || (s = gguf_kv_f64(kv, &v))) return s;
    *out = (float)v;
    return NURI_OK;
}

nuri_status gguf_get_bool(const gguf_file *f, const char *key, bool *out)
{
    const gguf_kv *kv;
    nuri_status s = find_or_fail(f, key, &kv);
    return s ? s : gguf_kv_bool(kv, out);
}

nuri_status gguf_get_str(const gguf_file *f, const char *key, gguf_str *out)
{
    const gguf_kv *kv;
    nuri_status s = find_or_fail(f, key, &kv);
    return s ? s : gguf_kv_str(kv, out);
}

nuri_status gguf_get_arr(const gguf_file *f, const char *key, gguf_arr *out)
{
    const gguf_kv *kv;
    nuri_status s = find_or_fail(f, key, &kv);
    return s ? s : gguf_kv_arr(kv, out);
}

/* ---- array elements ---- */

static nuri_status arr_check(const gguf_arr *a, uint64_t i, const char *expected, bool ok)
{
    int n;
    const char *k = kv_key_for_msg(a->kv, &n);
    if (!ok)
        return nuri_error(NURI_ERR_FORMAT, "key '%.*s': array of %s, %s expected", n, k,
                          gguf_type_name(a->type), expected);
    if (i >= a->n)
        return nuri_error(NURI_ERR_INVALID_ARG, "key '%.*s': index %llu past the %llu elements", n,
                          k, (unsigned long long)i, (unsigned long long)a->n);
    return NURI_OK;
}

nuri_status gguf_arr_str(const gguf_arr *a, uint64_t i, gguf_str *out)
{
    nuri_status s = arr_check(a, i, "string", a->type == GGUF_TYPE_STRING);
    if (s) return s;
    const uint8_t *p = a->kv->strs[i];
    out->len = ld_u64(p);
    out->ptr = (const char *)p + 8;
    return NURI_OK;
}

nuri_status gguf_arr_i64(const gguf_arr *a, uint64_t i, int64_t *out)
{
    nuri_status s = arr_check(a, i, "an integer type", type_is_int(a->type));
    if (s) return s;
    bool neg;
    uint64_t mag;
    load_int(a->type, (const uint8_t *)a->data + i * gguf_type_fixed_size(a->type), &neg, &mag);
    if (int_to_i64(neg, mag, out)) {
        int n;
        const char *k = kv_key_for_msg(a->kv, &n);
        return nuri_error(NURI_ERR_FORMAT, "key '%.*s': element %llu = %llu does not fit in int64",
                          n, k, (unsigned long long)i, (unsigned long long)mag);
    }
    return NURI_OK;
}

nuri_status gguf_arr_f32(const gguf_arr *a, uint64_t i, float *out)
{
    nuri_status s = arr_check(a, i, "float32 or float64",
                              a->type == GGUF_TYPE_FLOAT32 || a->type == GGUF_TYPE_FLOAT64);
    if (s) return s;
    *out = (float)load_float(a->type, (const uint8_t *)a->data + i * gguf_type_fixed_size(a->type));
    return NURI_OK;
}

/* ---- tensors ---- */

uint64_t gguf_n_tensors(const gguf_file *f)
{
    return f->n_tensors;
}

const gguf_tensor *gguf_tensor_at(const gguf_file *f, uint64_t i)
{
    return i < f->n_tensors ? &f->tensors[i] : NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name)
{
    uint32_t i = gguf_name_index_find(&f->tensor_index, name, strlen(name));
    return i ? &f->tensors[i - 1] : NULL;
}
