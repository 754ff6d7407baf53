/*
 * gguf_write.c: builds a version-3 GGUF file from metadata and tensors collected in memory.
 *
 * Each add checks its arguments the way the reader checks a file (valid unique keys and tensor
 * names, known types, whole blocks, no size overflow), so that whatever the writer produces the
 * reader opens. Key-value pairs are serialized as they are added; tensors are copied (in memory,
 * or with gguf_writer_spill to a scratch file, for models larger than memory) and laid out at
 * write time: tensor i at offset align_up(end of tensor i-1), data section aligned too.
 *
 * Layout written: header (magic, version 3, n_tensors, n_kv), kvs in the order added, tensor infos
 * in the order added, zero padding to the alignment, tensor data each padded to the alignment.
 */
#include "gguf/gguf.h"

#include "base/status.h"
#include "gguf/gguf_internal.h"
#include "kernels/types.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- a growable byte buffer ---- */

typedef struct bytes {
    uint8_t *p;
    size_t len, cap; // bytes
    bool oom;        // an append failed; the buffer is then unusable
} bytes;

static void bytes_put(bytes *b, const void *src, size_t n)
{
    if (b->oom) return;
    if (n > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n) {
            if (cap > SIZE_MAX / 2) {
                b->oom = true;
                return;
            }
            cap *= 2;
        }
        uint8_t *q = realloc(b->p, cap);
        if (!q) {
            b->oom = true;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    if (n && src) memcpy(b->p + b->len, src, n); // src NULL: room the caller fills
    b->len += n;
}

static void bytes_u32(bytes *b, uint32_t v)
{
    bytes_put(b, &v, 4);
}

static void bytes_u64(bytes *b, uint64_t v)
{
    bytes_put(b, &v, 8);
}

static void bytes_str(bytes *b, const char *s, uint64_t len)
{
    bytes_u64(b, len);
    bytes_put(b, s, (size_t)len);
}

/* ---- the writer ---- */

typedef struct wtensor {
    char *name;
    uint32_t type;
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    uint64_t size;  // bytes
    void *data;     // owned copy, or NULL: spilled
    uint64_t spill; // where the spill file holds it
} wtensor;

struct gguf_writer {
    bytes meta; // serialized kvs
    char **keys;
    uint64_t n_kv, cap_kv;
    wtensor *tensors;
    uint64_t n_tensors, cap_tensors;
    uint32_t alignment;
    gguf_name_index key_index, tensor_index; // rebuilt when the tables grow
    int spill_fd;                            // > 0: tensor data goes to this (unlinked) file
    uint64_t spill_len;
};

#define COPY_CHUNK (8u << 20) // bytes a spilled tensor is copied by

/* All n bytes at off of the spill file into p. */
static nuri_status spill_read(const gguf_writer *w, void *p, size_t n, uint64_t off)
{
    for (size_t done = 0; done < n;) {
        ssize_t r = pread(w->spill_fd, (char *)p + done, n - done, (off_t)(off + done));
        if (r <= 0) {
            if (r < 0 && errno == EINTR) continue;
            return nuri_error(NURI_ERR_IO, "gguf writer: reading back a spilled tensor: %s",
                              r < 0 ? strerror(errno) : "short read");
        }
        done += (size_t)r;
    }
    return NURI_OK;
}

/* Re-creates ix for cap names and inserts the first n of names[] (names stay owned by the
 * writer, so the borrowed pointers stay valid). */
static nuri_status reindex(gguf_name_index *ix, uint64_t cap, char *const *names, size_t stride,
                           uint64_t n)
{
    gguf_name_index fresh;
    nuri_status s = gguf_name_index_init(&fresh, cap);
    if (s) return s;
    for (uint64_t i = 0; i < n; i++) {
        const char *name = *(char *const *)((const char *)names + i * stride);
        gguf_name_index_put(&fresh, name, strlen(name), (uint32_t)i);
    }
    free(ix->slots);
    *ix = fresh;
    return NURI_OK;
}

nuri_status gguf_writer_new(gguf_writer **out)
{
    *out = calloc(1, sizeof **out);
    if (!*out) return nuri_error(NURI_ERR_NOMEM, "out of memory for a GGUF writer");
    (*out)->alignment = GGUF_DEFAULT_ALIGNMENT;
    return NURI_OK;
}

void gguf_writer_free(gguf_writer *w)
{
    if (!w) return;
    for (uint64_t i = 0; i < w->n_kv; i++) free(w->keys[i]);
    free(w->keys);
    for (uint64_t i = 0; i < w->n_tensors; i++) {
        free(w->tensors[i].name);
        free(w->tensors[i].data);
    }
    if (w->spill_fd > 0) close(w->spill_fd);
    free(w->tensors);
    free(w->meta.p);
    free(w->key_index.slots);
    free(w->tensor_index.slots);
    free(w);
}

nuri_status gguf_writer_spill(gguf_writer *w, const char *path)
{
    if (w->spill_fd > 0 || w->n_tensors)
        return nuri_error(NURI_ERR_INVALID_ARG, "gguf writer: spill before the first tensor, once");
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return nuri_error(NURI_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    unlink(path);  // only the descriptor holds it: nothing is left behind, whatever happens
    if (fd == 0) { // 0 means "none" in the writer; keep a descriptor above it
        int d = dup(fd);
        close(fd);
        if (d < 0) return nuri_error(NURI_ERR_IO, "%s: dup: %s", path, strerror(errno));
        fd = d;
    }
    w->spill_fd = fd;
    return NURI_OK;
}

static nuri_status check_name(const char *what, const char *name, size_t max)
{
    if (!name) return nuri_error(NURI_ERR_INVALID_ARG, "gguf writer: NULL %s", what);
    size_t n = strlen(name);
    if (n == 0) return nuri_error(NURI_ERR_INVALID_ARG, "gguf writer: empty %s", what);
    if (n > max)
        return nuri_error(NURI_ERR_INVALID_ARG,
                          "gguf writer: %s '%.64s...' is %zu bytes (limit %zu)", what, name, n,
                          max);
    if (!gguf_name_is_valid((const uint8_t *)name, n))
        return nuri_error(NURI_ERR_INVALID_ARG,
                          "gguf writer: %s is not valid UTF-8 or contains control characters",
                          what);
    return NURI_OK;
}

/* Checks the key, records it, and serializes key + type; the caller appends the value. */
static nuri_status begin_kv(gguf_writer *w, const char *key, gguf_type type)
{
    nuri_status s = check_name("key", key, GGUF_MAX_KEY_LEN);
    if (s) return s;
    if (gguf_name_index_find(&w->key_index, key, strlen(key)))
        return nuri_error(NURI_ERR_INVALID_ARG, "gguf writer: duplicate key '%s'", key);
    if (w->n_kv >= GGUF_MAX_KV)
        return nuri_error(NURI_ERR_LIMIT, "gguf writer: more than %u keys", GGUF_MAX_KV);
    if (w->n_kv == w->cap_kv) {
        uint64_t cap = w->cap_kv ? 2 * w->cap_kv : 16;
        char **k = realloc(w->keys, cap * sizeof *k);
        if (!k) return nuri_error(NURI_ERR_NOMEM, "gguf writer: out of memory");
        w->keys = k;
        nuri_status s2 = reindex(&w->key_index, cap, w->keys, sizeof *w->keys, w->n_kv);
        if (s2) return s2;
        w->cap_kv = cap;
    }
    char *copy = strdup(key);
    if (!copy) return nuri_error(NURI_ERR_NOMEM, "gguf writer: out of memory");
    gguf_name_index_put(&w->key_index, copy, strlen(copy), (uint32_t)w->n_kv);
    w->keys[w->n_kv++] = copy;
    bytes_str(&w->meta, key, strlen(key));
    bytes_u32(&w->meta, (uint32_t)type);
    return NURI_OK;
}

static nuri_status end_kv(gguf_writer *w)
{
    if (w->meta.oom) return nuri_error(NURI_ERR_NOMEM, "gguf writer: out of memory for metadata");
    return NURI_OK;
}

static nuri_status add_scalar(gguf_writer *w, const char *key, gguf_type type, const void *v,
                              size_t n)
{
    nuri_status s = begin_kv(w, key, type);
    if (s) return s;
    bytes_put(&w->meta, v, n);
    return end_kv(w);
}

nuri_status gguf_writer_add_u32(gguf_writer *w, const char *key, uint32_t v)
{
    bool is_alignment = key && !strcmp(key, "general.alignment");
    if (is_alignment && (v == 0 || (v & (v - 1)) || v > GGUF_MAX_ALIGNMENT))
        return nuri_error(NURI_ERR_INVALID_ARG,
                          "gguf writer: general.alignment %u is not a power of two in 1..%u", v,
                          GGUF_MAX_ALIGNMENT);
    nuri_status s = add_scalar(w, key, GGUF_TYPE_UINT32, &v, 4);
    if (!s && is_alignment) w->alignment = v;
    return s;
}

static nuri_status refuse_alignment(const char *key, gguf_type t)
{
    if (key && !strcmp(key, "general.alignment"))
        return nuri_error(NURI_ERR_INVALID_ARG,
                          "gguf writer: general.alignment must be uint32, not %s",
                          gguf_type_name(t));
    return NURI_OK;
}

nuri_status gguf_writer_add_i32(gguf_writer *w, const char *key, int32_t v)
{
    nuri_status s = refuse_alignment(key, GGUF_TYPE_INT32);
    return s ? s : add_scalar(w, key, GGUF_TYPE_INT32, &v, 4);
}

nuri_status gguf_writer_add_u64(gguf_writer *w, const char *key, uint64_t v)
{
    nuri_status s = refuse_alignment(key, GGUF_TYPE_UINT64);
    return s ? s : add_scalar(w, key, GGUF_TYPE_UINT64, &v, 8);
}

nuri_status gguf_writer_add_i64(gguf_writer *w, const char *key, int64_t v)
{
    nuri_status s = refuse_alignment(key, GGUF_TYPE_INT64);
    return s ? s : add_scalar(w, key, GGUF_TYPE_INT64, &v, 8);
}

nuri_status gguf_writer_add_f32(gguf_writer *w, const char *key, float v)
{
    nuri_status s = refuse_alignment(key, GGUF_TYPE_FLOAT32);
    return s ? s : add_scalar(w, key, GGUF_TYPE_FLOAT32, &v, 4);
}

nuri_status gguf_writer_add_f64(gguf_writer *w, const char *key, double v)
{
    nuri_status s = refuse_alignment(key, GGUF_TYPE_FLOAT64);
    return s ? s : add_scalar(w, key, GGUF_TYPE_FLOAT64, &v, 8);
}

nuri_status gguf_writer_add_bool(gguf_writer *w, const char *key, bool v)
{
    uint8_t b = v ? 1 : 0;
    nuri_status s = refuse_alignment(key, GGUF_TYPE_BOOL);
    return s ? s : add_scalar(w, key, GGUF_TYPE_BOOL, &b, 1);
}

nuri_status gguf_writer_add_str(gguf_writer *w, const char *key, const char *v)
{
    if (!v) return nuri_error(NURI_ERR_INVALID_ARG, "gguf writer: key '%s': NULL string", key);
    return gguf_writer_add_strn(w, key, v, strlen(v));
}

nuri_status gguf_writer_add_val(gguf_writer *w, const char *key, gguf_type type, const void *v)
{
    uint64_t esz = gguf_type_fixed_size((uint32_t)type);
    if (!esz || !v)
        return nuri_error(NURI_ERR_INVALID_ARG, "gguf writer: key '%s': %s is not a scalar type",
                          key ? key : "(null)", gguf_type_name(type));
    if (type == GGUF_TYPE_BOOL && *(const uint8_t *)v > 1)
        return nuri_error(NURI_ERR_INVALID_ARG, "gguf writer: key '%s': bool value is not 0 or 1",
                          key ? key : "(null)");
    if (type == GGUF_TYPE_UINT32) {
        uint32_t u;
        memcpy(&u, v, 4);
        return gguf_writer_add_u32(w, key, u);
    }
    nuri_status s = refuse_alignment(key, type);
    return s ? s : add_scalar(w, key, type, v, (size_t)esz);
}

nuri_status gguf_writer_add_strn(gguf_writer *w, const char *key, const char *v, uint64_t len)
{
    if (!v && len)
        return nuri_error(NURI_ERR_INVALID_ARG, "gguf writer: key '%s': NULL string", key);
    if (len > SIZE_MAX / 2)
        return nuri_error(NURI_ERR_INVALID_ARG, "gguf writer: key '%s': string too long", key);
    nuri_status s = refuse_alignment(key, GGUF_TYPE_STRING);
    if (s || (s = begin_kv(w, key, GGUF_TYPE_STRING))) return s;
    bytes_str(&w->meta, v, len);
    return end_kv(w);
}

nuri_status gguf_writer_add_arr(gguf_writer *w, const char *key, gguf_type type, const void *data,
                                uint64_t n)
{
    uint64_t esz = gguf_type_fixed_size((uint32_t)type), total;
    if (!esz)
        return nuri_error(NURI_ERR_INVALID_ARG,
                          "gguf writer: key '%s': arrays of %s need gguf_writer_add_str_arr or are "
                          "not supported",
                          key ? key : "(null)", gguf_type_name(type));
    if (nuri_mul_overflow(n, esz, &total) || total > SIZE_MAX / 2)
        return nuri_error(NURI_ERR_INVALID_ARG, "gguf writer: key '%s': %llu elements is too many",
                          key ? key : "(null)", (unsigned long long)n);
    if (n && !data)
        return nuri_error(NURI_ERR_INVALID_ARG, "gguf writer: key '%s': NULL array data",
                          key ? key : "(null)");
    if (type == GGUF_TYPE_BOOL)
        for (uint64_t i = 0; i < n; i++)
            if (((const uint8_t *)data)[i] > 1)
                return nuri_error(NURI_ERR_INVALID_ARG,
                                  "gguf writer: key '%s': bool element %llu is not 0 or 1", key,
                                  (unsigned long long)i);
    nuri_status s = refuse_alignment(key, GGUF_TYPE_ARRAY);
    if (s || (s = begin_kv(w, key, GGUF_TYPE_ARRAY))) return s;
    bytes_u32(&w->meta, (uint32_t)type);
    bytes_u64(&w->meta, n);
    bytes_put(&w->meta, data, (size_t)total);
    return end_kv(w);
}

nuri_status gguf_writer_add_str_arr(gguf_writer *w, const char *key, const char *const *v,
                                    uint64_t n)
{
    if (n && !v)
        return nuri_error(NURI_ERR_INVALID_ARG, "gguf writer: key '%s': NULL string array",
                          key ? key : "(null)");
    for (uint64_t i = 0; i < n; i++)
        if (!v[i])
            return nuri_error(NURI_ERR_INVALID_ARG, "gguf writer: key '%s': element %llu is NULL",
                              key ? key : "(null)", (unsigned long long)i);
    nuri_status s = refuse_alignment(key, GGUF_TYPE_ARRAY);
    if (s || (s = begin_kv(w, key, GGUF_TYPE_ARRAY))) return s;
    bytes_u32(&w->meta, GGUF_TYPE_STRING);
    bytes_u64(&w->meta, n);
    for (uint64_t i = 0; i < n; i++) bytes_str(&w->meta, v[i], strlen(v[i]));
    return end_kv(w);
}

nuri_status gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                                   const int64_t *ne, const void *data)
{
    nuri_status s = check_name("tensor name", name, GGUF_MAX_NAME_LEN);
    if (s) return s;
    if (gguf_name_index_find(&w->tensor_index, name, strlen(name)))
        return nuri_error(NURI_ERR_INVALID_ARG, "gguf writer: duplicate tensor '%s'", name);
    const nuri_type_info *ti = nuri_type_get(type);
    if (!ti)
        return nuri_error(NURI_ERR_INVALID_ARG, "gguf writer: tensor '%s': unknown type id %u",
                          name, type);
    if (n_dims == 0 || n_dims > GGUF_MAX_DIMS || !ne)
        return nuri_error(NURI_ERR_INVALID_ARG, "gguf writer: tensor '%s': n_dims %u not in 1..%d",
                          name, n_dims, GGUF_MAX_DIMS);
    wtensor t = {.type = type, .n_dims = n_dims, .ne = {1, 1, 1, 1}};
    for (uint32_t d = 0; d < n_dims; d++) {
        if (ne[d] < 1)
            return nuri_error(NURI_ERR_INVALID_ARG, "gguf writer: tensor '%s': ne[%u] = %lld < 1",
                              name, d, (long long)ne[d]);
        t.ne[d] = ne[d];
    }
    uint64_t size;
    if (!nuri_type_row_bytes(type, (uint64_t)t.ne[0], &size) ||
        nuri_mul_overflow(size, (uint64_t)t.ne[1], &size) ||
        nuri_mul_overflow(size, (uint64_t)t.ne[2], &size) ||
        nuri_mul_overflow(size, (uint64_t)t.ne[3], &size) || size > SIZE_MAX / 2)
        return nuri_error(NURI_ERR_INVALID_ARG,
                          "gguf writer: tensor '%s': ne[0] = %lld is not a whole number of %s "
                          "blocks (%u) or the size overflows",
                          name, (long long)t.ne[0], ti->name, ti->block_size);
    if (!data) return nuri_error(NURI_ERR_INVALID_ARG, "gguf writer: tensor '%s': NULL data", name);
    if (w->n_tensors >= GGUF_MAX_TENSORS)
        return nuri_error(NURI_ERR_LIMIT, "gguf writer: more than %u tensors", GGUF_MAX_TENSORS);
    if (w->n_tensors == w->cap_tensors) {
        uint64_t cap = w->cap_tensors ? 2 * w->cap_tensors : 16;
        wtensor *q = realloc(w->tensors, cap * sizeof *q);
        if (!q) return nuri_error(NURI_ERR_NOMEM, "gguf writer: out of memory");
        w->tensors = q;
        s = reindex(&w->tensor_index, cap, &w->tensors[0].name, sizeof *w->tensors, w->n_tensors);
        if (s) return s;
        w->cap_tensors = cap;
    }
    t.size = size;
    t.name = strdup(name);
    t.data = w->spill_fd > 0 ? NULL : malloc((size_t)size);
    if (!t.name || (!t.data && w->spill_fd <= 0)) {
        free(t.name);
        free(t.data);
        return nuri_error(NURI_ERR_NOMEM, "gguf writer: out of memory for tensor '%s'", name);
    }
    if (t.data) {
        memcpy(t.data, data, (size_t)size);
    } else {
        t.spill = w->spill_len;
        for (uint64_t done = 0; done < size;) {
            ssize_t r = pwrite(w->spill_fd, (const char *)data + done, (size_t)(size - done),
                               (off_t)(t.spill + done));
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) {
                free(t.name);
                return nuri_error(NURI_ERR_IO, "gguf writer: spilling tensor '%s': %s", name,
                                  r < 0 ? strerror(errno) : "no progress");
            }
            done += (uint64_t)r;
        }
        w->spill_len += size;
    }
    gguf_name_index_put(&w->tensor_index, t.name, strlen(t.name), (uint32_t)w->n_tensors);
    w->tensors[w->n_tensors++] = t;
    return NURI_OK;
}

/* ---- output ---- */

static uint64_t align_up(uint64_t x, uint64_t a)
{
    return (x + a - 1) / a * a;
}

static const uint8_t zeros[256];

static void bytes_pad(bytes *b, uint64_t a)
{
    uint64_t n = align_up(b->len, a) - b->len;
    while (n) {
        uint64_t k = n < sizeof zeros ? n : sizeof zeros;
        bytes_put(b, zeros, (size_t)k);
        n -= k;
    }
}

/* Everything up to the data section (header, kvs, tensor infos, padding). */
static nuri_status build_head(const gguf_writer *w, bytes *b)
{
    static const uint8_t magic[4] = {'G', 'G', 'U', 'F'};
    bytes_put(b, magic, 4);
    bytes_u32(b, 3);
    bytes_u64(b, w->n_tensors);
    bytes_u64(b, w->n_kv);
    bytes_put(b, w->meta.p, w->meta.len);
    uint64_t off = 0;
    for (uint64_t i = 0; i < w->n_tensors; i++) {
        const wtensor *t = &w->tensors[i];
        bytes_str(b, t->name, strlen(t->name));
        bytes_u32(b, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++) bytes_u64(b, (uint64_t)t->ne[d]);
        bytes_u32(b, t->type);
        bytes_u64(b, off);
        off = align_up(off + t->size, w->alignment);
    }
    if (w->n_tensors) bytes_pad(b, w->alignment);
    if (b->oom) return nuri_error(NURI_ERR_NOMEM, "gguf writer: out of memory");
    return NURI_OK;
}

nuri_status gguf_writer_write_memory(const gguf_writer *w, void **out, size_t *size)
{
    *out = NULL;
    *size = 0;
    bytes b = {0};
    nuri_status s = build_head(w, &b);
    for (uint64_t i = 0; i < w->n_tensors && !s; i++) {
        const wtensor *t = &w->tensors[i];
        if (t->data) {
            bytes_put(&b, t->data, (size_t)t->size);
        } else { // spilled: read back into room at the buffer's end
            size_t at = b.len;
            bytes_put(&b, NULL, (size_t)t->size);
            if (!b.oom) s = spill_read(w, b.p + at, (size_t)t->size, t->spill);
        }
        bytes_pad(&b, w->alignment);
    }
    if (!s && b.oom) s = nuri_error(NURI_ERR_NOMEM, "gguf writer: out of memory");
    if (s) {
        free(b.p);
        return s;
    }
    *out = b.p;
    *size = b.len;
    return NURI_OK;
}

static nuri_status write_all(FILE *fp, const void *p, size_t n, const char *path)
{
    if (n && fwrite(p, 1, n, fp) != n)
        return nuri_error(NURI_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    return NURI_OK;
}

nuri_status gguf_writer_write(gguf_writer *w, const char *path)
{
    // written to path.tmp and renamed, so that a failed write never leaves a half file at path
    size_t n = strlen(path);
    char *tmp = malloc(n + 5);
    if (!tmp) return nuri_error(NURI_ERR_NOMEM, "%s: out of memory", path);
    memcpy(tmp, path, n);
    memcpy(tmp + n, ".tmp", 5);
    bytes head = {0};
    nuri_status s = build_head(w, &head);
    FILE *fp = NULL;
    if (!s && !(fp = fopen(tmp, "wb")))
        s = nuri_error(NURI_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    if (!s) s = write_all(fp, head.p, head.len, tmp);
    void *chunk = NULL;
    for (uint64_t i = 0; i < w->n_tensors && !s; i++) {
        const wtensor *t = &w->tensors[i];
        if (t->data) {
            s = write_all(fp, t->data, (size_t)t->size, tmp);
        } else if (!chunk && !(chunk = malloc(COPY_CHUNK))) {
            s = nuri_error(NURI_ERR_NOMEM, "%s: out of memory", path);
        } else {
            for (uint64_t done = 0; done < t->size && !s; done += COPY_CHUNK) {
                size_t k = t->size - done < COPY_CHUNK ? (size_t)(t->size - done) : COPY_CHUNK;
                s = spill_read(w, chunk, k, t->spill + done);
                if (!s) s = write_all(fp, chunk, k, tmp);
            }
        }
        uint64_t pad = align_up(t->size, w->alignment) - t->size;
        while (!s && pad) {
            uint64_t k = pad < sizeof zeros ? pad : sizeof zeros;
            s = write_all(fp, zeros, (size_t)k, tmp);
            pad -= k;
        }
    }
    if (fp && fclose(fp) != 0 && !s)
        s = nuri_error(NURI_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
    if (!s && rename(tmp, path) != 0)
        s = nuri_error(NURI_ERR_IO, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
    if (s && fp) unlink(tmp);
    free(chunk);
    free(head.p);
    free(tmp);
    return s;
}

nuri_status gguf_writer_add_strn_arr(gguf_writer *w, const char *key, const gguf_str *v, uint64_t n)
{
    if (n && !v)
        return nuri_error(NURI_ERR_INVALID_ARG, "gguf writer: key '%s': NULL string array",
                          key ? key : "(null)");
    for (uint64_t i = 0; i < n; i++)
        if (!v[i].ptr && v[i].len)
            return nuri_error(NURI_ERR_INVALID_ARG, "gguf writer: key '%s': element %llu is NULL",
                              key ? key : "(null)", (unsigned long long)i);
    nuri_status s = refuse_alignment(key, GGUF_TYPE_ARRAY);
    if (s || (s = begin_kv(w, key, GGUF_TYPE_ARRAY))) return s;
    bytes_u32(&w->meta, GGUF_TYPE_STRING);
    bytes_u64(&w->meta, n);
    for (uint64_t i = 0; i < n; i++) bytes_str(&w->meta, v[i].ptr, v[i].len);
    return end_kv(w);
}

nuri_status gguf_writer_add_kv(gguf_writer *w, const gguf_kv *kv)
{
    char *key = strndup(kv->key.ptr, (size_t)kv->key.len); // keys hold no NUL (no control chars)
    if (!key) return nuri_error(NURI_ERR_NOMEM, "gguf writer: out of memory");
    nuri_status s;
    if (kv->type == GGUF_TYPE_STRING) {
        s = gguf_writer_add_strn(w, key, (const char *)kv->val, kv->n);
    } else if (kv->type != GGUF_TYPE_ARRAY) {
        s = gguf_writer_add_val(w, key, kv->type, kv->val);
    } else if (kv->arr_type != GGUF_TYPE_STRING) {
        s = gguf_writer_add_arr(w, key, kv->arr_type, kv->val, kv->n);
    } else {
        gguf_str *v = kv->n ? malloc((size_t)kv->n * sizeof *v) : NULL;
        if (kv->n && !v) {
            free(key);
            return nuri_error(NURI_ERR_NOMEM, "gguf writer: out of memory");
        }
        for (uint64_t i = 0; i < kv->n; i++) {
            memcpy(&v[i].len, kv->strs[i], 8);
            v[i].ptr = (const char *)kv->strs[i] + 8;
        }
        s = gguf_writer_add_strn_arr(w, key, v, kv->n);
        free(v);
    }
    free(key);
    return s;
}
