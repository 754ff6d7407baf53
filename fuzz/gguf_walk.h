/*
 * gguf_walk.h: opens bytes as a GGUF file and touches everything the API can reach (every kv with
 * every getter, every array element, every tensor's name, lookup and first/last data byte), then
 * closes it. Shared by the libFuzzer target (fuzz_gguf.c) and the corpus replay test
 * (tests/test_gguf_fuzz_replay.c), so CI runs the fuzz corpus under ASan.
 */
#ifndef NURI_FUZZ_GGUF_WALK_H
#define NURI_FUZZ_GGUF_WALK_H

#include "gguf/gguf.h"

#include <stdlib.h>
#include <string.h>

/* Returns the status of the open; everything after a successful open must succeed or fail
 * cleanly, and a checksum of what was read goes to *sum (so nothing is optimized away). */
static inline nuri_status gguf_walk(const void *data, size_t size, uint64_t *sum)
{
    gguf_file *f;
    uint64_t acc = 0;
    nuri_status s = gguf_open_memory(data, size, &f);
    if (s != NURI_OK) {
        if (f != NULL) abort(); // *out must be NULL on failure
        if (!nuri_last_error()[0]) abort();
        *sum = 0;
        return s;
    }
    acc += gguf_version(f) + gguf_alignment(f) + gguf_data_offset(f);
    if (gguf_data_offset(f) > gguf_file_size(f)) abort();
    char name[GGUF_MAX_NAME_LEN > GGUF_MAX_KEY_LEN ? GGUF_MAX_NAME_LEN + 1 : GGUF_MAX_KEY_LEN + 1];
    for (uint64_t i = 0; i < gguf_n_kv(f); i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        gguf_str k = gguf_kv_key(kv);
        memcpy(name, k.ptr, k.len);
        name[k.len] = 0;
        if (gguf_find_kv(f, name) != kv) abort(); // keys are unique
        acc += gguf_kv_type(kv) + strlen(gguf_type_name(gguf_kv_type(kv)));
        uint64_t u;
        int64_t v;
        double d;
        bool b;
        gguf_str str;
        uint32_t u32;
        float x;
        if (gguf_kv_u64(kv, &u) == NURI_OK) acc += u;
        if (gguf_kv_i64(kv, &v) == NURI_OK) acc += (uint64_t)v;
        if (gguf_kv_f64(kv, &d) == NURI_OK) acc += d == d;
        if (gguf_kv_bool(kv, &b) == NURI_OK) acc += b;
        if (gguf_get_u32(f, name, &u32) == NURI_OK) acc += u32;
        if (gguf_get_f32(f, name, &x) == NURI_OK) acc += x == x;
        if (gguf_kv_str(kv, &str) == NURI_OK && str.len) acc += (uint8_t)str.ptr[str.len - 1];
        gguf_arr a;
        if (gguf_kv_arr(kv, &a) != NURI_OK) continue;
        for (uint64_t j = 0; j < a.n; j++) {
            if (gguf_arr_str(&a, j, &str) == NURI_OK) {
                acc += str.len;
                if (str.len) acc += (uint8_t)str.ptr[0] + (uint8_t)str.ptr[str.len - 1];
            }
            if (gguf_arr_i64(&a, j, &v) == NURI_OK) acc += (uint64_t)v;
            if (gguf_arr_f32(&a, j, &x) == NURI_OK) acc += x == x;
        }
        if (gguf_arr_str(&a, a.n, &str) == NURI_OK) abort(); // past the end must fail
    }
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        memcpy(name, t->name.ptr, t->name.len);
        name[t->name.len] = 0;
        if (gguf_find_tensor(f, name) != t) abort();
        if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS || t->size == 0) abort();
        const uint8_t *p = (const uint8_t *)t->data;
        if (p < (const uint8_t *)data || p + t->size > (const uint8_t *)data + size) abort();
        acc += p[0] + p[t->size - 1] + (uint64_t)t->ne[0] + t->type;
    }
    if (gguf_tensor_at(f, gguf_n_tensors(f)) || gguf_kv_at(f, gguf_n_kv(f))) abort();
    gguf_close(f);
    *sum = acc;
    return NURI_OK;
}

#endif
