/*
 * gguf_internal.h: helpers shared by the GGUF reader and writer (not part of the gguf.h API).
 */
#ifndef NURI_GGUF_INTERNAL_H
#define NURI_GGUF_INTERNAL_H

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

#endif
