/*
 * gguf.h: reading and writing GGUF files (versions 2 and 3).
 *
 * Reading: gguf_open() maps the file and validates all of it before returning: every count, length,
 * type id, dimension, offset and alignment is checked (overflow-safe) against the bytes that are
 * really there; tensors must lie inside the data section, aligned, without overlapping, with the
 * byte size their type and shape imply. After a successful open, nothing in this API can read
 * outside the mapping. Strings and tensor data are borrowed from the mapping until gguf_close().
 *
 * The mapping is read-only and private; a file truncated by another process while it is open makes
 * later reads of the lost pages fault (SIGBUS), as with any mmap: do not rewrite model files in
 * place while nuri runs.
 *
 * This module does not interpret tensors or metadata (that is model/ and tokenizer/); it only
 * checks that the file is well-formed.
 *
 * Writing: gguf_writer collects metadata and tensors in memory and writes a version-3 file.
 */
#ifndef NURI_GGUF_H
#define NURI_GGUF_H

#include "nuri.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Metadata value types, as stored in the file. */
typedef enum gguf_type {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE_COUNT
} gguf_type;

#define GGUF_MAX_DIMS 4
#define GGUF_DEFAULT_ALIGNMENT 32

/* Explicit limits of the reader (a file over one is refused with NURI_ERR_LIMIT; a count that the
 * file's bytes cannot hold is refused with NURI_ERR_FORMAT before anything is allocated):
 * - keys: 1..GGUF_MAX_KEY_LEN bytes of valid UTF-8 without control characters (so that messages
 *   can quote them); tensor names the same, up to GGUF_MAX_NAME_LEN bytes;
 * - string values: any bytes, any length that fits in the rest of the file;
 * - n_kv <= GGUF_MAX_KV and <= (file size - 24) / 14 (the smallest kv takes 14 bytes);
 *   n_tensors <= GGUF_MAX_TENSORS and <= (file size - 24) / 33 (the smallest tensor info);
 * - array element count * element size must fit in the rest of the file (string elements count as
 *   8 bytes); nested arrays (ARRAY of ARRAY) are rejected;
 * - general.alignment must be a UINT32 power of two (1..2^30);
 * - bool values and bool array elements must be 0 or 1; duplicate keys and duplicate tensor names
 *   are rejected; tensors must not overlap.
 * Versions 2 and 3 are read (little-endian only); version 1 and big-endian files are refused with
 * NURI_ERR_UNSUPPORTED and a message saying so. Unknown or removed ggml type ids are
 * NURI_ERR_UNSUPPORTED. Tensor dimensions must be >= 1. The data section starts at the end of the
 * tensor infos rounded up to the alignment; a file without tensors may end before it (vocab-only
 * files do), and then gguf_data_offset() is the file size. */
#define GGUF_MAX_KEY_LEN 65535
#define GGUF_MAX_NAME_LEN 4096
#define GGUF_MAX_KV (1u << 20)
#define GGUF_MAX_TENSORS (1u << 20)
#define GGUF_MAX_ALIGNMENT (1u << 30)

/* A string borrowed from the mapping: not NUL-terminated; may contain any bytes. */
typedef struct gguf_str {
    const char *ptr;
    uint64_t len; // bytes
} gguf_str;

/* An array value. Elements of fixed-size types lie at `data` (little-endian, possibly unaligned:
 * read them with memcpy or the gguf_arr_* getters). String arrays are read with gguf_arr_str(). */
typedef struct gguf_arr {
    gguf_type type; // element type (never ARRAY: nested arrays are rejected)
    uint64_t n;     // element count
    const void *data;
    const struct gguf_kv *kv; // the key-value pair it belongs to (for gguf_arr_str)
} gguf_arr;

typedef struct gguf_tensor {
    gguf_str name;
    uint32_t n_dims;           // 1..GGUF_MAX_DIMS
    int64_t ne[GGUF_MAX_DIMS]; // elements per dimension, ne[0] innermost; unused dims are 1
    uint32_t type;             // ggml type id (kernels/types.h)
    uint64_t offset;           // bytes, from the start of the data section
    uint64_t size;             // bytes, as implied by type and shape
    const void *data;          // borrowed from the mapping
} gguf_tensor;

typedef struct gguf_file gguf_file;
typedef struct gguf_kv gguf_kv;

/* Opens and validates a file. On success *out is owned by the caller: free with gguf_close(). On
 * failure *out is NULL and the message starts with the path, then names what is wrong and where
 * (key or tensor name, byte offset). A missing file is NURI_ERR_NOT_FOUND, a directory or other
 * unreadable path NURI_ERR_IO, a malformed file NURI_ERR_FORMAT (see the limits above). */
nuri_status gguf_open(const char *path, gguf_file **out);

/* The same over bytes in memory, borrowed (not copied) until gguf_close(). For tests and fuzzing.
 */
nuri_status gguf_open_memory(const void *data, size_t size, gguf_file **out);
/* Says that bytes [p, p + n) of a mapped file (tensor data the caller copied elsewhere) will not be
 * read for a while: their whole pages leave the process's resident memory; reading them later
 * maps them in again from the file. No effect on gguf_open_memory files. */
void gguf_release_range(const gguf_file *f, const void *p, size_t n);

void gguf_close(gguf_file *f);

uint32_t gguf_version(const gguf_file *f);
uint32_t gguf_alignment(const gguf_file *f);
uint64_t gguf_data_offset(const gguf_file *f); // bytes from file start to the data section
uint64_t gguf_file_size(const gguf_file *f);

/* ---- metadata ---- */
uint64_t gguf_n_kv(const gguf_file *f);
const gguf_kv *gguf_kv_at(const gguf_file *f, uint64_t i);        // i < gguf_n_kv
const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key); // NULL if absent
gguf_str gguf_kv_key(const gguf_kv *kv);
gguf_type gguf_kv_type(const gguf_kv *kv);
const char *gguf_type_name(gguf_type t); // "uint32", "string", ...

/* Typed getters by key. Each returns NURI_ERR_NOT_FOUND if the key is absent (message names it) and
 * NURI_ERR_FORMAT if the value has an incompatible type or is out of range for the out type.
 * Integer getters accept any integer type whose value fits; float getters accept FLOAT32/FLOAT64.
 */
nuri_status gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out);
nuri_status gguf_get_u64(const gguf_file *f, const char *key, uint64_t *out);
nuri_status gguf_get_i64(const gguf_file *f, const char *key, int64_t *out);
nuri_status gguf_get_f32(const gguf_file *f, const char *key, float *out);
nuri_status gguf_get_bool(const gguf_file *f, const char *key, bool *out);
nuri_status gguf_get_str(const gguf_file *f, const char *key, gguf_str *out);
nuri_status gguf_get_arr(const gguf_file *f, const char *key, gguf_arr *out);

/* The same on a kv found by other means. */
nuri_status gguf_kv_u64(const gguf_kv *kv, uint64_t *out);
nuri_status gguf_kv_i64(const gguf_kv *kv, int64_t *out);
nuri_status gguf_kv_f64(const gguf_kv *kv, double *out);
nuri_status gguf_kv_bool(const gguf_kv *kv, bool *out);
nuri_status gguf_kv_str(const gguf_kv *kv, gguf_str *out);
nuri_status gguf_kv_arr(const gguf_kv *kv, gguf_arr *out);

/* Array elements (i < a->n; the element type must match, else NURI_ERR_FORMAT). */
nuri_status gguf_arr_str(const gguf_arr *a, uint64_t i, gguf_str *out);
nuri_status gguf_arr_i64(const gguf_arr *a, uint64_t i, int64_t *out); // any integer type
nuri_status gguf_arr_f32(const gguf_arr *a, uint64_t i, float *out);   // FLOAT32 / FLOAT64

/* True if s equals the NUL-terminated c string. */
bool gguf_str_eq(gguf_str s, const char *c);

/* ---- tensors ---- */
uint64_t gguf_n_tensors(const gguf_file *f);
const gguf_tensor *gguf_tensor_at(const gguf_file *f, uint64_t i);
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name); // NULL if absent

/* ---- writing ---- */
typedef struct gguf_writer gguf_writer;

/* Caller frees with gguf_writer_free(). */
nuri_status gguf_writer_new(gguf_writer **out);
void gguf_writer_free(gguf_writer *w);

/* Each add copies key and value (a later add of the same key is an error: keys are unique). */
nuri_status gguf_writer_add_u32(gguf_writer *w, const char *key, uint32_t v);
nuri_status gguf_writer_add_i32(gguf_writer *w, const char *key, int32_t v);
nuri_status gguf_writer_add_u64(gguf_writer *w, const char *key, uint64_t v);
nuri_status gguf_writer_add_f32(gguf_writer *w, const char *key, float v);
nuri_status gguf_writer_add_i64(gguf_writer *w, const char *key, int64_t v);
nuri_status gguf_writer_add_f64(gguf_writer *w, const char *key, double v);
nuri_status gguf_writer_add_bool(gguf_writer *w, const char *key, bool v);
nuri_status gguf_writer_add_str(gguf_writer *w, const char *key, const char *v);
/* Any fixed-size scalar type (uint8 .. float64, bool 0/1): the value's bytes at v (copied). */
nuri_status gguf_writer_add_val(gguf_writer *w, const char *key, gguf_type type, const void *v);
/* A string of len bytes (any bytes, NULs included). */
nuri_status gguf_writer_add_strn(gguf_writer *w, const char *key, const char *v, uint64_t len);
/* Arrays of fixed-size elements: n elements of `type` at data (copied). */
nuri_status gguf_writer_add_arr(gguf_writer *w, const char *key, gguf_type type, const void *data,
                                uint64_t n);
/* Arrays of strings (n NUL-terminated strings, copied). */
nuri_status gguf_writer_add_str_arr(gguf_writer *w, const char *key, const char *const *v,
                                    uint64_t n);
/* Arrays of strings given as (pointer, length) pairs (any bytes), copied. */
nuri_status gguf_writer_add_strn_arr(gguf_writer *w, const char *key, const gguf_str *v,
                                     uint64_t n);

/* Copies a key-value pair of an open file (key, type and value). */
nuri_status gguf_writer_add_kv(gguf_writer *w, const gguf_kv *kv);

/* From here on tensor data is copied to a scratch file made at path (created, and unlinked at
 * once: it never outlives the writer) instead of memory, so a model larger than memory can be
 * written; gguf_writer_write copies it over in 8 MiB pieces. Call it before the first tensor. */
nuri_status gguf_writer_spill(gguf_writer *w, const char *path);

/* Adds a tensor: ne[0..n_dims) elements, of ggml type `type`; `data` holds the bytes the type and
 * shape imply and is copied. Names must be unique. */
nuri_status gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                                   const int64_t *ne, const void *data);

/* Writes everything (version 3, alignment 32 unless general.alignment was added) to path (via
 * path.tmp and a rename, so a failed write leaves no partial file at path). general.alignment must
 * be added with gguf_writer_add_u32 (a power of two); the writer refuses other types for it. */
nuri_status gguf_writer_write(gguf_writer *w, const char *path);

/* The same file as bytes in memory: on success *out (size bytes) is owned by the caller, free with
 * free(). For tests and fuzz seeds. */
nuri_status gguf_writer_write_memory(const gguf_writer *w, void **out, size_t *size);

#endif
