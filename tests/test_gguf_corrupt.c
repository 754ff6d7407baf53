/*
 * test_gguf_corrupt.c: the GGUF reader on hostile input. Each test builds one corrupt file in
 * memory (a tiny byte builder below, or a valid file from the writer with bytes patched) and checks
 * the status and that the message names the problem (key or tensor name, byte offset). Files are
 * opened from an exactly-sized heap copy, so ASan catches any read past the end.
 */
#include "base/status.h"
#include "gguf/gguf.h"
#include "kernels/types.h"
#include "test.h"

#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- a byte builder ---- */

typedef struct bb {
    uint8_t p[4096];
    size_t n;
} bb;

static void put(bb *b, const void *src, size_t n)
{
    if (b->n + n > sizeof b->p) abort();
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void u8(bb *b, uint8_t v)
{
    put(b, &v, 1);
}
static void u32(bb *b, uint32_t v)
{
    put(b, &v, 4);
}
static void u64(bb *b, uint64_t v)
{
    put(b, &v, 8);
}
static void str(bb *b, const char *s)
{
    u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void header(bb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    b->n = 0;
    put(b, "GGUF", 4);
    u32(b, version);
    u64(b, n_tensors);
    u64(b, n_kv);
}
static void kv_u32(bb *b, const char *key, uint32_t v)
{
    str(b, key);
    u32(b, GGUF_TYPE_UINT32);
    u32(b, v);
}
static void kv_str(bb *b, const char *key, const char *v)
{
    str(b, key);
    u32(b, GGUF_TYPE_STRING);
    str(b, v);
}
static void tinfo(bb *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                  uint64_t offset)
{
    str(b, name);
    u32(b, n_dims);
    for (uint32_t i = 0; i < n_dims; i++) u64(b, ne[i]);
    u32(b, type);
    u64(b, offset);
}
static void pad(bb *b, size_t a)
{
    while (b->n % a) u8(b, 0);
}
static void zeros(bb *b, size_t n)
{
    while (n--) u8(b, 0);
}

/* Opens b->p[0..n) from an exact heap copy; checks the status and that the message contains each
 * of the (up to two) strings. */
static int expect_n(const uint8_t *p, size_t n, nuri_status want, const char *s1, const char *s2,
                    int line)
{
    uint8_t *copy = malloc(n ? n : 1);
    memcpy(copy, p, n);
    gguf_file *f = (gguf_file *)&f; // must be reset to NULL on failure
    nuri_status s = gguf_open_memory(copy, n, &f);
    int ok = 1;
    const char *msg = nuri_last_error();
    if (s != want) {
        fprintf(stderr, "  line %d: status %s, expected %s (%s)\n", line, nuri_status_name(s),
                nuri_status_name(want), s ? msg : "opened");
        ok = 0;
    } else if (s != NURI_OK) {
        if (f != NULL) fprintf(stderr, "  line %d: *out not NULL on failure\n", line), ok = 0;
        if (s1 && !strstr(msg, s1))
            fprintf(stderr, "  line %d: message lacks '%s': %s\n", line, s1, msg), ok = 0;
        if (s2 && !strstr(msg, s2))
            fprintf(stderr, "  line %d: message lacks '%s': %s\n", line, s2, msg), ok = 0;
    }
    if (s == NURI_OK) gguf_close(f);
    free(copy);
    if (!ok) test_cur_failed = 1;
    return ok;
}
#define EXPECT(b, want, s1, s2) expect_n((b)->p, (b)->n, want, s1, s2, __LINE__)

/* A small valid file: two kvs, one F32 tensor of 8 elements. */
static void valid_file(bb *b)
{
    uint64_t ne[] = {8};
    header(b, 3, 1, 2);
    kv_str(b, "general.architecture", "llama");
    kv_u32(b, "a.n", 7);
    tinfo(b, "t", 1, ne, NURI_TYPE_F32, 0);
    pad(b, 32);
    zeros(b, 32);
}

/* ---- header ---- */

TEST(valid_builder_file_opens)
{
    bb b;
    valid_file(&b);
    EXPECT(&b, NURI_OK, NULL, NULL);
}

TEST(bad_magic)
{
    bb b;
    valid_file(&b);
    memcpy(b.p, "GGML", 4);
    EXPECT(&b, NURI_ERR_FORMAT, "not a GGUF file", "GGML");
}

TEST(big_endian_file_is_named)
{
    bb b;
    valid_file(&b);
    uint32_t v = __builtin_bswap32(3);
    memcpy(b.p + 4, &v, 4);
    EXPECT(&b, NURI_ERR_UNSUPPORTED, "big-endian", NULL);
}

TEST(version_1_is_refused_clearly)
{
    bb b;
    valid_file(&b);
    b.p[4] = 1;
    EXPECT(&b, NURI_ERR_UNSUPPORTED, "version 1", "not supported");
}

TEST(version_0_and_huge)
{
    bb b;
    valid_file(&b);
    b.p[4] = 0;
    EXPECT(&b, NURI_ERR_FORMAT, "version 0", NULL);
    uint32_t v = 4;
    memcpy(b.p + 4, &v, 4);
    EXPECT(&b, NURI_ERR_UNSUPPORTED, "version 4", NULL);
    v = 0xffffffffu;
    memcpy(b.p + 4, &v, 4);
    EXPECT(&b, NURI_ERR_UNSUPPORTED, "version 4294967295", NULL);
}

TEST(version_2_is_read)
{
    bb b;
    valid_file(&b);
    b.p[4] = 2;
    EXPECT(&b, NURI_OK, NULL, NULL);
}

TEST(truncated_header_at_every_byte)
{
    bb b;
    valid_file(&b);
    expect_n(b.p, 0, NURI_ERR_FORMAT, "empty file", NULL, __LINE__);
    for (size_t n = 1; n < 4; n++)
        expect_n(b.p, n, NURI_ERR_FORMAT, "not a GGUF file", NULL, __LINE__);
    for (size_t n = 4; n < 8; n++)
        expect_n(b.p, n, NURI_ERR_FORMAT, "version", "truncated", __LINE__);
    for (size_t n = 8; n < 16; n++)
        expect_n(b.p, n, NURI_ERR_FORMAT, "tensor count", "truncated", __LINE__);
    for (size_t n = 16; n < 24; n++)
        expect_n(b.p, n, NURI_ERR_FORMAT, "kv count", "truncated", __LINE__);
}

TEST(counts_impossible_for_the_file_size)
{
    bb b;
    valid_file(&b);
    uint64_t v = 1ull << 63;
    memcpy(b.p + 16, &v, 8);
    EXPECT(&b, NURI_ERR_FORMAT, "kv count 9223372036854775808", "impossible");
    v = UINT64_MAX; // would wrap any count * size computation
    memcpy(b.p + 16, &v, 8);
    EXPECT(&b, NURI_ERR_FORMAT, "kv count", "impossible");
    valid_file(&b);
    v = 1ull << 63;
    memcpy(b.p + 8, &v, 8);
    EXPECT(&b, NURI_ERR_FORMAT, "tensor count", "impossible");
    v = 3; // 3 tensor infos + 2 kvs cannot fit in this small file
    memcpy(b.p + 8, &v, 8);
    v = 5;
    memcpy(b.p + 16, &v, 8);
    EXPECT(&b, NURI_ERR_FORMAT, "cannot fit", NULL);
}

TEST(more_kvs_than_present_is_truncation)
{
    bb b;
    header(&b, 3, 0, 3);
    kv_u32(&b, "a", 1);
    zeros(&b, 40); // room for the count check, but the second kv's key length is 0
    EXPECT(&b, NURI_ERR_FORMAT, "kv #1", "empty key");
}

/* ---- truncation at every section of a file that has all of them ---- */

static void full_file(uint8_t **out, size_t *size, size_t *data_end)
{
    gguf_writer *w;
    gguf_writer_new(&w);
    const char *toks[] = {"x", "yy", "zzz"};
    int32_t ints[] = {1, 2, 3};
    char desc[201];
    memset(desc, 'd', 200); // makes the file big enough that the count check passes early on
    desc[200] = 0;
    gguf_writer_add_str(w, "general.description", desc);
    gguf_writer_add_u32(w, "a.u32", 5);
    gguf_writer_add_bool(w, "a.bool", true);
    gguf_writer_add_str_arr(w, "a.toks", toks, 3);
    gguf_writer_add_arr(w, "a.ints", GGUF_TYPE_INT32, ints, 3);
    float x[64] = {0};
    int64_t ne[] = {8, 2}, ne2[] = {32};
    gguf_writer_add_tensor(w, "t.first", NURI_TYPE_F32, 2, ne, x);
    gguf_writer_add_tensor(w, "t.second", NURI_TYPE_Q8_0, 1, ne2, x);
    void *buf;
    gguf_writer_write_memory(w, &buf, size);
    gguf_writer_free(w);
    *out = buf;
    gguf_file *f;
    NURI_ASSERT(gguf_open_memory(buf, *size, &f) == NURI_OK);
    const gguf_tensor *t = gguf_find_tensor(f, "t.second");
    *data_end = gguf_data_offset(f) + t->offset + t->size;
    gguf_close(f);
}

TEST(truncation_at_every_byte_fails_cleanly)
{
    uint8_t *p;
    size_t size, data_end;
    full_file(&p, &size, &data_end);
    int bad = 0;
    for (size_t n = 0; n < data_end && !bad; n++) {
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, p, n);
        gguf_file *f;
        nuri_status s = gguf_open_memory(copy, n, &f);
        if (s != NURI_ERR_FORMAT || f != NULL || !nuri_last_error()[0]) {
            fprintf(stderr, "  prefix %zu: status %s: %s\n", n, nuri_status_name(s),
                    nuri_last_error());
            bad = 1;
        }
        if (!s) gguf_close(f);
        free(copy);
    }
    CHECK(!bad);
    // trailing padding after the last tensor may be cut
    for (size_t n = data_end; n <= size; n++) expect_n(p, n, NURI_OK, NULL, NULL, __LINE__);
    free(p);
}

/* Finds needle in p[0..n); returns its offset. */
static size_t find(const uint8_t *p, size_t n, const void *needle, size_t k)
{
    for (size_t i = 0; i + k <= n; i++)
        if (!memcmp(p + i, needle, k)) return i;
    NURI_ASSERT(0 && "needle not found");
    return 0;
}

TEST(truncation_names_the_section)
{
    uint8_t *p;
    size_t size, data_end;
    full_file(&p, &size, &data_end);
    size_t k = find(p, size, "a.u32", 5); // key bytes of kv #1
    expect_n(p, k - 4, NURI_ERR_FORMAT, "kv #1", "key length", __LINE__);
    expect_n(p, k + 2, NURI_ERR_FORMAT, "kv #1", "key at byte", __LINE__);
    expect_n(p, k + 5 + 2, NURI_ERR_FORMAT, "'a.u32'", "value type", __LINE__);
    expect_n(p, k + 5 + 4 + 1, NURI_ERR_FORMAT, "'a.u32'", "uint32", __LINE__);
    k = find(p, size, "a.toks", 6);
    expect_n(p, k + 6 + 4 + 2, NURI_ERR_FORMAT, "'a.toks'", "array element type", __LINE__);
    expect_n(p, k + 6 + 4 + 4 + 3, NURI_ERR_FORMAT, "'a.toks'", "array element count", __LINE__);
    expect_n(p, k + 6 + 4 + 4 + 8 + 3, NURI_ERR_FORMAT, "'a.toks'", "array", __LINE__);
    k = find(p, size, "a.ints", 6);
    expect_n(p, k + 6 + 4 + 4 + 8 + 5, NURI_ERR_FORMAT, "'a.ints'", "array", __LINE__);
    k = find(p, size, "t.second", 8);
    expect_n(p, k + 8 + 1, NURI_ERR_FORMAT, "'t.second'", "n_dims", __LINE__);
    expect_n(p, k + 8 + 4 + 1, NURI_ERR_FORMAT, "'t.second'", "dimension", __LINE__);
    expect_n(p, k + 8 + 4 + 8 + 1, NURI_ERR_FORMAT, "'t.second'", "tensor type", __LINE__);
    expect_n(p, k + 8 + 4 + 8 + 4 + 1, NURI_ERR_FORMAT, "'t.second'", "tensor offset", __LINE__);
    expect_n(p, k + 8 + 4 + 8 + 4 + 8 + 1, NURI_ERR_FORMAT, "data section", "beyond", __LINE__);
    expect_n(p, data_end - 1, NURI_ERR_FORMAT, "'t.second'", "past the end", __LINE__);
    free(p);
}

/* ---- keys and values ---- */

TEST(string_length_huge_or_wrapping)
{
    bb b;
    header(&b, 3, 0, 1);
    str(&b, "general.name");
    u32(&b, GGUF_TYPE_STRING);
    size_t at = b.n;
    u64(&b, 1ull << 63);
    zeros(&b, 16);
    EXPECT(&b, NURI_ERR_FORMAT, "'general.name'", "past the end of the file");
    uint64_t v = UINT64_MAX - 3; // pos + len would wrap
    memcpy(b.p + at, &v, 8);
    EXPECT(&b, NURI_ERR_FORMAT, "'general.name'", "past the end of the file");
    v = 17; // one more than what is there
    memcpy(b.p + at, &v, 8);
    EXPECT(&b, NURI_ERR_FORMAT, "string at byte", NULL);
}

TEST(key_length_huge_past_end_or_over_limit)
{
    bb b;
    header(&b, 3, 0, 1);
    u64(&b, UINT64_MAX);
    zeros(&b, 16);
    EXPECT(&b, NURI_ERR_LIMIT, "kv #0", "key at byte 24");
    header(&b, 3, 0, 1);
    u64(&b, 100); // under the limit, but past the end
    zeros(&b, 16);
    EXPECT(&b, NURI_ERR_FORMAT, "kv #0", "truncated");
}

TEST(empty_key)
{
    bb b;
    header(&b, 3, 0, 1);
    u64(&b, 0);
    u32(&b, GGUF_TYPE_UINT32);
    u32(&b, 1);
    EXPECT(&b, NURI_ERR_FORMAT, "kv #0", "empty key at byte 24");
}

TEST(key_invalid_utf8_or_control_chars)
{
    // decision: keys must be valid UTF-8 without control characters (documented in gguf.h)
    bb b;
    header(&b, 3, 0, 1);
    kv_u32(&b, "bad\xff.key", 1);
    EXPECT(&b, NURI_ERR_FORMAT, "not valid UTF-8", "bad\\xff.key");
    header(&b, 3, 0, 1);
    kv_u32(&b, "bad\xc0\xaf", 1); // overlong '/'
    EXPECT(&b, NURI_ERR_FORMAT, "not valid UTF-8", NULL);
    header(&b, 3, 0, 1);
    kv_u32(&b, "tab\there", 1);
    EXPECT(&b, NURI_ERR_FORMAT, "control characters", "tab\\x09here");
    header(&b, 3, 0, 1);
    kv_u32(&b, "\xed\xa0\x80", 1); // a UTF-16 surrogate
    EXPECT(&b, NURI_ERR_FORMAT, "not valid UTF-8", NULL);
    header(&b, 3, 0, 1);
    kv_u32(&b, "\xea\xb0\x80.ok", 1); // Korean is fine
    EXPECT(&b, NURI_OK, NULL, NULL);
}

TEST(unknown_value_type)
{
    bb b;
    header(&b, 3, 0, 1);
    str(&b, "a.k");
    u32(&b, 13);
    u32(&b, 0);
    EXPECT(&b, NURI_ERR_FORMAT, "'a.k'", "unknown value type id 13 at byte 35");
    header(&b, 3, 0, 1);
    str(&b, "a.k");
    u32(&b, 0x80000000u);
    u32(&b, 0);
    EXPECT(&b, NURI_ERR_FORMAT, "unknown value type id 2147483648", NULL);
}

TEST(nested_arrays_are_rejected)
{
    bb b;
    header(&b, 3, 0, 1);
    str(&b, "a.nested");
    u32(&b, GGUF_TYPE_ARRAY);
    u32(&b, GGUF_TYPE_ARRAY);
    u64(&b, 1);
    u32(&b, GGUF_TYPE_UINT8);
    u64(&b, 1);
    u8(&b, 0);
    EXPECT(&b, NURI_ERR_FORMAT, "'a.nested'", "nested array");
}

TEST(array_unknown_element_type)
{
    bb b;
    header(&b, 3, 0, 1);
    str(&b, "a.arr");
    u32(&b, GGUF_TYPE_ARRAY);
    u32(&b, 77);
    u64(&b, 0);
    EXPECT(&b, NURI_ERR_FORMAT, "'a.arr'", "unknown array element type id 77");
}

TEST(array_count_times_size_overflows)
{
    bb b;
    header(&b, 3, 0, 1);
    str(&b, "a.arr");
    u32(&b, GGUF_TYPE_ARRAY);
    u32(&b, GGUF_TYPE_UINT64);
    u64(&b, (1ull << 61) + 1); // * 8 wraps to 8
    u64(&b, 0);
    EXPECT(&b, NURI_ERR_FORMAT, "'a.arr'", "only");
    header(&b, 3, 0, 1);
    str(&b, "a.arr");
    u32(&b, GGUF_TYPE_ARRAY);
    u32(&b, GGUF_TYPE_UINT32);
    u64(&b, 3); // 12 bytes, 8 there
    u64(&b, 0);
    EXPECT(&b, NURI_ERR_FORMAT, "3 uint32 elements", NULL);
}

TEST(string_array_count_huge_or_element_past_end)
{
    bb b;
    header(&b, 3, 0, 1);
    str(&b, "tokenizer.ggml.tokens");
    u32(&b, GGUF_TYPE_ARRAY);
    u32(&b, GGUF_TYPE_STRING);
    u64(&b, 1ull << 62); // must not allocate 2^65 bytes of index
    str(&b, "a");
    EXPECT(&b, NURI_ERR_FORMAT, "'tokenizer.ggml.tokens'", "string elements");
    header(&b, 3, 0, 1);
    str(&b, "tokenizer.ggml.tokens");
    u32(&b, GGUF_TYPE_ARRAY);
    u32(&b, GGUF_TYPE_STRING);
    u64(&b, 2);
    str(&b, "a");
    u64(&b, UINT64_MAX); // second element's length
    zeros(&b, 8);
    EXPECT(&b, NURI_ERR_FORMAT, "array element 1", "past the end");
}

TEST(bool_not_0_or_1)
{
    bb b;
    header(&b, 3, 0, 1);
    str(&b, "a.flag");
    u32(&b, GGUF_TYPE_BOOL);
    u8(&b, 2);
    zeros(&b, 8);
    EXPECT(&b, NURI_ERR_FORMAT, "'a.flag'", "bool value 2 at byte 42");
    header(&b, 3, 0, 1);
    str(&b, "a.flags");
    u32(&b, GGUF_TYPE_ARRAY);
    u32(&b, GGUF_TYPE_BOOL);
    u64(&b, 3);
    u8(&b, 1);
    u8(&b, 0);
    u8(&b, 0xff);
    zeros(&b, 8);
    EXPECT(&b, NURI_ERR_FORMAT, "'a.flags'", "bool value 255");
}

TEST(duplicate_keys)
{
    bb b;
    header(&b, 3, 0, 3);
    kv_u32(&b, "a.x", 1);
    kv_u32(&b, "a.y", 1);
    kv_str(&b, "a.x", "again");
    EXPECT(&b, NURI_ERR_FORMAT, "'a.x' (kv #2", "duplicate key (first defined as kv #0)");
}

TEST(alignment_zero_not_power_of_two_wrong_type_or_huge)
{
    bb b;
    header(&b, 3, 0, 1);
    kv_u32(&b, "general.alignment", 0);
    EXPECT(&b, NURI_ERR_FORMAT, "general.alignment", "not a power of two");
    header(&b, 3, 0, 1);
    kv_u32(&b, "general.alignment", 48);
    EXPECT(&b, NURI_ERR_FORMAT, "alignment 48", "not a power of two");
    header(&b, 3, 0, 1);
    str(&b, "general.alignment");
    u32(&b, GGUF_TYPE_UINT64);
    u64(&b, 32);
    EXPECT(&b, NURI_ERR_FORMAT, "general.alignment", "uint32 expected");
    header(&b, 3, 0, 1);
    kv_u32(&b, "general.alignment", 1u << 31);
    EXPECT(&b, NURI_ERR_LIMIT, "general.alignment", "limit");
    header(&b, 3, 0, 1);
    kv_u32(&b, "general.alignment", 1); // 1 is a power of two: fine
    EXPECT(&b, NURI_OK, NULL, NULL);
}

/* ---- tensor infos ---- */

static void one_tensor(bb *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                       uint64_t offset, size_t data_bytes)
{
    header(b, 3, 1, 1);
    kv_str(b, "general.architecture", "llama");
    tinfo(b, name, n_dims, ne, type, offset);
    pad(b, 32);
    zeros(b, data_bytes);
}

TEST(duplicate_tensor_names)
{
    bb b;
    uint64_t ne[] = {8};
    header(&b, 3, 2, 0);
    tinfo(&b, "w", 1, ne, NURI_TYPE_F32, 0);
    tinfo(&b, "w", 1, ne, NURI_TYPE_F32, 32);
    pad(&b, 32);
    zeros(&b, 64);
    EXPECT(&b, NURI_ERR_FORMAT, "tensor 'w' (#1", "duplicate tensor name");
}

TEST(empty_or_invalid_tensor_name)
{
    bb b;
    uint64_t ne[] = {8};
    one_tensor(&b, "", 1, ne, NURI_TYPE_F32, 0, 32);
    EXPECT(&b, NURI_ERR_FORMAT, "tensor #0", "empty tensor name");
    one_tensor(&b, "w\x80", 1, ne, NURI_TYPE_F32, 0, 32);
    EXPECT(&b, NURI_ERR_FORMAT, "tensor #0", "not valid UTF-8");
    header(&b, 3, 1, 0);
    u64(&b, GGUF_MAX_NAME_LEN + 1);
    zeros(&b, 64);
    EXPECT(&b, NURI_ERR_LIMIT, "tensor name", "limit");
}

TEST(n_dims_zero_or_over_four)
{
    bb b;
    uint64_t ne[] = {8, 1, 1, 1, 1};
    one_tensor(&b, "w", 0, ne, NURI_TYPE_F32, 0, 32);
    EXPECT(&b, NURI_ERR_FORMAT, "tensor 'w'", "n_dims 0");
    one_tensor(&b, "w", 5, ne, NURI_TYPE_F32, 0, 32);
    EXPECT(&b, NURI_ERR_FORMAT, "tensor 'w'", "n_dims 5");
}

TEST(dimension_zero_negative_or_overflowing)
{
    bb b;
    uint64_t ne0[] = {8, 0};
    one_tensor(&b, "w", 2, ne0, NURI_TYPE_F32, 0, 32);
    EXPECT(&b, NURI_ERR_FORMAT, "tensor 'w'", "ne[1] at byte");
    uint64_t neg[] = {(uint64_t)-8};
    one_tensor(&b, "w", 1, neg, NURI_TYPE_F32, 0, 32);
    EXPECT(&b, NURI_ERR_FORMAT, "tensor 'w'", "negative (-8)");
    uint64_t big[] = {1ull << 32, 1ull << 32};
    one_tensor(&b, "w", 2, big, NURI_TYPE_F32, 0, 32);
    EXPECT(&b, NURI_ERR_FORMAT, "tensor 'w'", "element count overflows");
    uint64_t bytes[] = {1ull << 61, 2}; // 2^62 elements fit int64; 2^64 bytes do not
    one_tensor(&b, "w", 2, bytes, NURI_TYPE_F32, 0, 32);
    EXPECT(&b, NURI_ERR_FORMAT, "tensor 'w'", "byte size");
}

TEST(unknown_and_removed_type_ids)
{
    bb b;
    uint64_t ne[] = {32};
    uint32_t removed[] = {4, 5, 31, 32, 33};
    for (size_t i = 0; i < 5; i++) {
        one_tensor(&b, "w", 1, ne, removed[i], 0, 64);
        EXPECT(&b, NURI_ERR_UNSUPPORTED, "tensor 'w'", "removed");
    }
    one_tensor(&b, "w", 1, ne, 99, 0, 64);
    EXPECT(&b, NURI_ERR_UNSUPPORTED, "ggml type id 99", NULL);
    one_tensor(&b, "w", 1, ne, UINT32_MAX, 0, 64);
    EXPECT(&b, NURI_ERR_UNSUPPORTED, "ggml type id 4294967295", NULL);
}

TEST(ne0_not_a_multiple_of_the_block_size)
{
    bb b;
    uint64_t ne[] = {48, 2};
    one_tensor(&b, "w", 2, ne, NURI_TYPE_Q4_0, 0, 64);
    EXPECT(&b, NURI_ERR_FORMAT, "tensor 'w'", "not a multiple of the block size 32 of type Q4_0");
    uint64_t nk[] = {128};
    one_tensor(&b, "w", 1, nk, NURI_TYPE_Q4_K, 0, 256);
    EXPECT(&b, NURI_ERR_FORMAT, "block size 256 of type Q4_K", NULL);
}

/* ---- data section ---- */

TEST(tensor_offset_not_aligned)
{
    bb b;
    uint64_t ne[] = {8};
    one_tensor(&b, "w", 1, ne, NURI_TYPE_F32, 4, 64);
    EXPECT(&b, NURI_ERR_FORMAT, "tensor 'w'", "offset 4 is not a multiple of the alignment 32");
}

TEST(tensor_outside_the_file)
{
    bb b;
    uint64_t ne[] = {8};
    one_tensor(&b, "w", 1, ne, NURI_TYPE_F32, 0, 31); // needs 32 bytes
    EXPECT(&b, NURI_ERR_FORMAT, "tensor 'w'", "past the end of the file");
    one_tensor(&b, "w", 1, ne, NURI_TYPE_F32, 1ull << 40, 32);
    EXPECT(&b, NURI_ERR_FORMAT, "tensor 'w'", "past the end of the file");
    one_tensor(&b, "w", 1, ne, NURI_TYPE_F32, UINT64_MAX - 31, 32); // aligned, wraps when added
    EXPECT(&b, NURI_ERR_FORMAT, "tensor 'w'", "past the end of the file");
}

TEST(overlapping_tensors)
{
    bb b;
    uint64_t ne[] = {16}, ne2[] = {8};
    header(&b, 3, 3, 0);
    tinfo(&b, "a", 1, ne, NURI_TYPE_F32, 0);   // bytes 0..64
    tinfo(&b, "c", 1, ne2, NURI_TYPE_F32, 64); // 64..96
    tinfo(&b, "b", 1, ne2, NURI_TYPE_F32, 32); // 32..64: inside a
    pad(&b, 32);
    zeros(&b, 96);
    EXPECT(&b, NURI_ERR_FORMAT, "tensors 'a'", "and 'b'");
    header(&b, 3, 2, 0);
    tinfo(&b, "a", 1, ne2, NURI_TYPE_F32, 0);
    tinfo(&b, "b", 1, ne2, NURI_TYPE_F32, 0); // the same bytes
    pad(&b, 32);
    zeros(&b, 32);
    EXPECT(&b, NURI_ERR_FORMAT, "overlap", NULL);
}

TEST(data_section_start_beyond_the_file)
{
    bb b;
    uint64_t ne[] = {8};
    header(&b, 3, 1, 0);
    tinfo(&b, "w", 1, ne, NURI_TYPE_F32, 0);
    // no padding: the data section would start past the end
    EXPECT(&b, NURI_ERR_FORMAT, "data section starts at byte 64", "beyond the end");
    header(&b, 3, 1, 1);
    kv_u32(&b, "general.alignment", 1u << 20);
    tinfo(&b, "w", 1, ne, NURI_TYPE_F32, 0);
    zeros(&b, 64);
    EXPECT(&b, NURI_ERR_FORMAT, "data section starts at byte 1048576", NULL);
}

TEST(no_tensors_and_no_padding_is_fine)
{
    bb b;
    header(&b, 3, 0, 1);
    kv_str(&b, "general.architecture", "llama");
    gguf_file *f;
    REQUIRE(gguf_open_memory(b.p, b.n, &f) == NURI_OK);
    CHECK(gguf_data_offset(f) == b.n);
    gguf_close(f);
}

/* ---- mutation: random byte changes never crash ---- */

TEST(random_byte_mutations_never_crash)
{
    uint8_t *p;
    size_t size, data_end;
    full_file(&p, &size, &data_end);
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    int opened = 0, failed = 0;
    uint8_t *copy = malloc(size);
    for (int iter = 0; iter < 3000; iter++) {
        memcpy(copy, p, size);
        int edits = 1 + iter % 4;
        for (int e = 0; e < edits; e++) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            size_t at = (size_t)(rng % data_end);
            uint8_t v = (uint8_t)(rng >> 32);
            copy[at] = (rng >> 40) & 1 ? v : copy[at] ^ (uint8_t)(1u << (v & 7));
        }
        gguf_file *f;
        nuri_status s = gguf_open_memory(copy, size, &f);
        if (s == NURI_OK) {
            opened++;
            // walk it all: every getter must stay inside the buffer
            for (uint64_t i = 0; i < gguf_n_kv(f); i++) {
                gguf_arr a;
                if (gguf_kv_arr(gguf_kv_at(f, i), &a) == NURI_OK)
                    for (uint64_t j = 0; j < a.n; j++) {
                        gguf_str s2;
                        int64_t v;
                        (void)gguf_arr_str(&a, j, &s2);
                        (void)gguf_arr_i64(&a, j, &v);
                    }
            }
            gguf_close(f);
        } else {
            failed++;
            CHECK(f == NULL && nuri_last_error()[0]);
        }
    }
    printf("  3000 mutants: %d opened, %d refused\n", opened, failed);
    free(copy);
    free(p);
}

/* ---- through the file system ---- */

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *fp = fopen(path, "wb");
    NURI_ASSERT(fp);
    if (n) NURI_ASSERT(fwrite(p, 1, n, fp) == n);
    fclose(fp);
}

TEST(open_empty_file_directory_missing_and_truncated)
{
    char path[128];
    snprintf(path, sizeof path, "/tmp/nuri_test_gguf_corrupt_%d.gguf", (int)getpid());
    gguf_file *f;
    write_file(path, "", 0);
    CHECK(gguf_open(path, &f) == NURI_ERR_FORMAT && f == NULL);
    CHECK(strstr(nuri_last_error(), path) && strstr(nuri_last_error(), "empty file"));

    bb b;
    valid_file(&b);
    write_file(path, b.p, b.n - 1);
    CHECK(gguf_open(path, &f) == NURI_ERR_FORMAT && f == NULL);
    CHECK(strstr(nuri_last_error(), path) && strstr(nuri_last_error(), "past the end"));
    write_file(path, b.p, 20);
    CHECK(gguf_open(path, &f) == NURI_ERR_FORMAT);
    CHECK(strstr(nuri_last_error(), "truncated") != NULL);
    write_file(path, b.p, b.n);
    CHECK(gguf_open(path, &f) == NURI_OK);
    gguf_close(f);
    unlink(path);

    CHECK(gguf_open("tests/data", &f) == NURI_ERR_IO && f == NULL);
    CHECK(strstr(nuri_last_error(), "tests/data") && strstr(nuri_last_error(), "directory"));
    CHECK(gguf_open("/dev/null", &f) == NURI_ERR_IO && f == NULL);
    CHECK(strstr(nuri_last_error(), "/dev/null: not a regular file") != NULL);
    CHECK(gguf_open(path, &f) == NURI_ERR_NOT_FOUND && f == NULL);
    CHECK(strstr(nuri_last_error(), "No such file") != NULL);
}

int main(void)
{
    RUN(valid_builder_file_opens);
    RUN(bad_magic);
    RUN(big_endian_file_is_named);
    RUN(version_1_is_refused_clearly);
    RUN(version_0_and_huge);
    RUN(version_2_is_read);
    RUN(truncated_header_at_every_byte);
    RUN(counts_impossible_for_the_file_size);
    RUN(more_kvs_than_present_is_truncation);
    RUN(truncation_at_every_byte_fails_cleanly);
    RUN(truncation_names_the_section);
    RUN(string_length_huge_or_wrapping);
    RUN(key_length_huge_past_end_or_over_limit);
    RUN(empty_key);
    RUN(key_invalid_utf8_or_control_chars);
    RUN(unknown_value_type);
    RUN(nested_arrays_are_rejected);
    RUN(array_unknown_element_type);
    RUN(array_count_times_size_overflows);
    RUN(string_array_count_huge_or_element_past_end);
    RUN(bool_not_0_or_1);
    RUN(duplicate_keys);
    RUN(alignment_zero_not_power_of_two_wrong_type_or_huge);
    RUN(duplicate_tensor_names);
    RUN(empty_or_invalid_tensor_name);
    RUN(n_dims_zero_or_over_four);
    RUN(dimension_zero_negative_or_overflowing);
    RUN(unknown_and_removed_type_ids);
    RUN(ne0_not_a_multiple_of_the_block_size);
    RUN(tensor_offset_not_aligned);
    RUN(tensor_outside_the_file);
    RUN(overlapping_tensors);
    RUN(data_section_start_beyond_the_file);
    RUN(no_tensors_and_no_padding_is_fine);
    RUN(random_byte_mutations_never_crash);
    RUN(open_empty_file_directory_missing_and_truncated);
    TEST_DONE();
}
