/*
 * gguf_internal.h: helpers shared by the GGUF reader and writer (not part of the gguf.h API).
 */
#ifndef NURI_GGUF_INTERNAL_H
#define NURI_GGUF_INTERNAL_H

#include "base/status.h"
#include "gguf/gguf.h"

#include <stdbool.h>
#include <stdint.h>

/* A key-value pair of an open file; every pointer lies inside the file's bytes. */
struct gguf_kv {
    gguf_str key;
    gguf_type type;
    gguf_type arr_type;   // element type if type == ARRAY
    uint64_t n;           // STRING: bytes; ARRAY: elements; otherwise 1
    const uint8_t *val;   // scalar bytes, string bytes, or the first array element
    const uint8_t **strs; // ARRAY of STRING: each element's length field (n entries); owned
    uint64_t offset;      // bytes from file start to the kv (for messages)
};

/* True if s[0..len) is valid UTF-8 (no overlongs, surrogates or code points past U+10FFFF) without
 * control characters (U+0000..U+001F, U+007F): the rule for keys and tensor names. */
bool gguf_name_is_valid(const uint8_t *s, uint64_t len);

/* Bytes of one value of a fixed-size gguf_type; 0 for STRING, ARRAY and invalid ids. */
uint64_t gguf_type_fixed_size(uint32_t t);

/* Open-addressing index from names to table positions. */
typedef struct gguf_name_slot {
    const char *ptr;
    uint64_t len;
    uint32_t idx1; // index + 1; 0 = empty slot
} gguf_name_slot;

typedef struct gguf_name_index {
    gguf_name_slot *slots;
    uint64_t mask; // slot count - 1 (slot count is a power of two)
    uint64_t seed; // per index, so that a file cannot be crafted to collide every name
} gguf_name_index;

/* Sizes the index for n names (n bounded by the caller: GGUF_MAX_KV / GGUF_MAX_TENSORS). Frees
 * nothing: free(ix->slots) when done. */
nuri_status gguf_name_index_init(gguf_name_index *ix, uint64_t n);
/* The index + 1 of the name, or 0 if absent. */
uint32_t gguf_name_index_find(const gguf_name_index *ix, const char *p, uint64_t len);
/* Inserts the name (not present: callers check with find first; at most n names). The bytes are
 * borrowed and must outlive the index. */
void gguf_name_index_put(gguf_name_index *ix, const char *p, uint64_t len, uint32_t idx);

#endif
