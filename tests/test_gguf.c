/*
 * test_gguf.c: the GGUF reader on the real test files (tests/data/models, tests/data/vocab), the
 * typed getters, and the writer's round trip (write -> open -> same metadata and tensor bytes).
 *
 * Expected values come from the files themselves (llama-tiny-*.gguf were written by llama.cpp's
 * converter for nuri's test data; see tests/data/README.md).
 */
#include "gguf/gguf.h"
#include "kernels/types.h"
#include "test.h"

#include <dirent.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

static int ends_with(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && !strcmp(s + n - m, suf);
}

/* Opens every *.gguf in dir; checks basic invariants of each. Returns the number opened. */
static int open_all_in(const char *dir)
{
    DIR *d = opendir(dir);
    CHECKF(d != NULL, "cannot open %s", dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!ends_with(e->d_name, ".gguf")) continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        gguf_file *f = NULL;
        nuri_status s = gguf_open(path, &f);
        CHECKF(s == NURI_OK, "%s: %s", path, nuri_last_error());
        if (s) continue;
        n++;
        CHECK(gguf_version(f) == 3);
        CHECK(gguf_alignment(f) == 32);
        CHECK(gguf_data_offset(f) <= gguf_file_size(f));
        gguf_str arch;
        CHECKF(gguf_get_str(f, "general.architecture", &arch) == NURI_OK, "%s", path);
        for (uint64_t i = 0; i < gguf_n_kv(f); i++) {
            const gguf_kv *kv = gguf_kv_at(f, i);
            gguf_str k = gguf_kv_key(kv);
            char key[256];
            snprintf(key, sizeof key, "%.*s", (int)k.len, k.ptr);
            CHECK(gguf_find_kv(f, key) == kv);
        }
        for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
            const gguf_tensor *t = gguf_tensor_at(f, i);
            char name[256];
            snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
            CHECK(gguf_find_tensor(f, name) == t);
            CHECK((const char *)t->data >= (const char *)gguf_tensor_at(f, 0)->data - t->offset);
            CHECK(gguf_data_offset(f) + t->offset + t->size <= gguf_file_size(f));
        }
        gguf_close(f);
    }
    closedir(d);
    return n;
}

TEST(opens_every_test_model_and_vocab)
{
    CHECK(open_all_in("tests/data/models") == 23);
    CHECK(open_all_in("tests/data/vocab") == 7); // the 6 ggml-vocab-*, exaone4
}

TEST(llama_tiny_f32_metadata)
{
    gguf_file *f;
    REQUIRE(gguf_open("tests/data/models/llama-tiny-F32.gguf", &f) == NURI_OK);
    CHECK(gguf_n_kv(f) == 25);
    CHECK(gguf_n_tensors(f) == 20);
    gguf_str s;
    CHECK(gguf_get_str(f, "general.architecture", &s) == NURI_OK && gguf_str_eq(s, "llama"));
    CHECK(gguf_get_str(f, "general.name", &s) == NURI_OK && gguf_str_eq(s, "llama-tiny"));
    uint32_t u32;
    CHECK(gguf_get_u32(f, "llama.embedding_length", &u32) == NURI_OK && u32 == 256);
    CHECK(gguf_get_u32(f, "llama.block_count", &u32) == NURI_OK && u32 == 2);
    CHECK(gguf_get_u32(f, "llama.attention.head_count_kv", &u32) == NURI_OK && u32 == 2);
    uint64_t u64;
    CHECK(gguf_get_u64(f, "llama.vocab_size", &u64) == NURI_OK && u64 == 4096);
    int64_t i64;
    CHECK(gguf_get_i64(f, "llama.context_length", &i64) == NURI_OK && i64 == 512);
    float x;
    CHECK(gguf_get_f32(f, "llama.rope.freq_base", &x) == NURI_OK && x == 10000.0f);
    CHECK(gguf_get_f32(f, "llama.attention.layer_norm_rms_epsilon", &x) == NURI_OK && x == 1e-5f);
    bool b;
    CHECK(gguf_get_bool(f, "tokenizer.ggml.add_bos_token", &b) == NURI_OK && b);
    CHECK(gguf_get_bool(f, "tokenizer.ggml.add_eos_token", &b) == NURI_OK && !b);
    gguf_close(f);
}

TEST(getters_report_missing_keys_and_wrong_types)
{
    gguf_file *f;
    REQUIRE(gguf_open("tests/data/models/llama-tiny-F32.gguf", &f) == NURI_OK);
    uint32_t u32;
    CHECK(gguf_get_u32(f, "llama.no_such_key", &u32) == NURI_ERR_NOT_FOUND);
    CHECK(strstr(nuri_last_error(), "llama.no_such_key") != NULL);
    CHECK(gguf_find_kv(f, "llama.no_such_key") == NULL);
    CHECK(gguf_get_u32(f, "general.name", &u32) == NURI_ERR_FORMAT);
    CHECK(strstr(nuri_last_error(), "general.name") && strstr(nuri_last_error(), "string"));
    float x;
    CHECK(gguf_get_f32(f, "llama.block_count", &x) == NURI_ERR_FORMAT);
    gguf_str s;
    CHECK(gguf_get_str(f, "llama.block_count", &s) == NURI_ERR_FORMAT);
    bool b;
    CHECK(gguf_get_bool(f, "llama.block_count", &b) == NURI_ERR_FORMAT);
    gguf_arr a;
    CHECK(gguf_get_arr(f, "general.name", &a) == NURI_ERR_FORMAT);
    CHECK(gguf_find_tensor(f, "no.such.tensor") == NULL);
    gguf_close(f);
}

TEST(llama_tiny_f32_tensors)
{
    gguf_file *f;
    REQUIRE(gguf_open("tests/data/models/llama-tiny-F32.gguf", &f) == NURI_OK);
    const gguf_tensor *t = gguf_find_tensor(f, "token_embd.weight");
    REQUIRE(t != NULL);
    CHECK(t->n_dims == 2);
    CHECK(t->ne[0] == 256 && t->ne[1] == 4096 && t->ne[2] == 1 && t->ne[3] == 1);
    CHECK(t->type == NURI_TYPE_F32);
    CHECK(t->offset == 0);
    CHECK(t->size == 256 * 4096 * 4);
    CHECK(t == gguf_tensor_at(f, 0));
    t = gguf_find_tensor(f, "blk.0.attn_k.weight");
    REQUIRE(t != NULL);
    CHECK(t->ne[0] == 256 && t->ne[1] == 128);
    CHECK(t->offset == 4457472);
    CHECK((const char *)t->data ==
          (const char *)gguf_tensor_at(f, 0)->data + 4457472); // data = section + offset
    t = gguf_find_tensor(f, "blk.0.attn_norm.weight");
    REQUIRE(t != NULL);
    CHECK(t->n_dims == 1 && t->ne[0] == 256 && t->ne[1] == 1);
    CHECK(gguf_tensor_at(f, 20) == NULL);
    gguf_close(f);
}

TEST(quantized_tensor_sizes_follow_the_type_table)
{
    gguf_file *f;
    REQUIRE(gguf_open("tests/data/models/llama-tiny-Q4_K.gguf", &f) == NURI_OK);
    int quantized = 0;
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        const nuri_type_info *ti = nuri_type_get(t->type);
        REQUIRE(ti != NULL);
        uint64_t row;
        REQUIRE(nuri_type_row_bytes(t->type, (uint64_t)t->ne[0], &row));
        CHECK(t->size == row * (uint64_t)(t->ne[1] * t->ne[2] * t->ne[3]));
        if (ti->block_size > 1) quantized++;
    }
    CHECK(quantized > 0);
    gguf_close(f);
}

TEST(vocab_token_arrays)
{
    gguf_file *f;
    REQUIRE(gguf_open("tests/data/vocab/ggml-vocab-llama-spm.gguf", &f) == NURI_OK);
    CHECK(gguf_n_tensors(f) == 0);
    CHECK(gguf_data_offset(f) <= gguf_file_size(f));
    gguf_arr a;
    REQUIRE(gguf_get_arr(f, "tokenizer.ggml.tokens", &a) == NURI_OK);
    CHECK(a.type == GGUF_TYPE_STRING);
    CHECK(a.n == 32000);
    gguf_str s;
    CHECK(gguf_arr_str(&a, 0, &s) == NURI_OK && gguf_str_eq(s, "<unk>"));
    CHECK(gguf_arr_str(&a, 1, &s) == NURI_OK && gguf_str_eq(s, "<s>"));
    CHECK(gguf_arr_str(&a, 2, &s) == NURI_OK && gguf_str_eq(s, "</s>"));
    CHECK(gguf_arr_str(&a, 31999, &s) == NURI_OK && s.len > 0);
    CHECK(gguf_arr_str(&a, 32000, &s) == NURI_ERR_INVALID_ARG);
    int64_t v;
    CHECK(gguf_arr_i64(&a, 0, &v) == NURI_ERR_FORMAT); // strings are not integers

    REQUIRE(gguf_get_arr(f, "tokenizer.ggml.token_type", &a) == NURI_OK);
    CHECK(a.type == GGUF_TYPE_INT32 && a.n == 32000);
    CHECK(gguf_arr_i64(&a, 0, &v) == NURI_OK && v == 2);
    CHECK(gguf_arr_i64(&a, 1, &v) == NURI_OK && v == 3);
    REQUIRE(gguf_get_arr(f, "tokenizer.ggml.scores", &a) == NURI_OK);
    float x;
    CHECK(a.type == GGUF_TYPE_FLOAT32 && gguf_arr_f32(&a, 0, &x) == NURI_OK && x == 0.0f);
    CHECK(gguf_arr_str(&a, 0, &s) == NURI_ERR_FORMAT);
    gguf_close(f);
}

TEST(every_vocab_has_a_string_token_array)
{
    const char *names[] = {"deepseek-llm", "gpt-2", "llama-bpe", "llama-spm", "phi-3", "qwen2"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char path[256];
        snprintf(path, sizeof path, "tests/data/vocab/ggml-vocab-%s.gguf", names[i]);
        gguf_file *f;
        REQUIRE(gguf_open(path, &f) == NURI_OK);
        gguf_arr a;
        CHECKF(gguf_get_arr(f, "tokenizer.ggml.tokens", &a) == NURI_OK, "%s", path);
        CHECK(a.type == GGUF_TYPE_STRING && a.n >= 32000);
        uint64_t total = 0;
        for (uint64_t j = 0; j < a.n; j++) {
            gguf_str s;
            CHECK(gguf_arr_str(&a, j, &s) == NURI_OK);
            total += s.len;
        }
        CHECK(total > a.n); // more than a byte per token on average
        gguf_close(f);
    }
}

TEST(large_vocab_opens_fast)
{
    // llama-bpe has 128k tokens and 280k merges: the open must be one quick pass.
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    gguf_file *f;
    REQUIRE(gguf_open("tests/data/vocab/ggml-vocab-llama-bpe.gguf", &f) == NURI_OK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
    gguf_arr a;
    CHECK(gguf_get_arr(f, "tokenizer.ggml.tokens", &a) == NURI_OK && a.n == 128256);
    printf("  llama-bpe vocab (%llu tokens) opened in %.1f ms\n", (unsigned long long)a.n, ms);
    CHECKF(ms < 2000, "open took %.1f ms", ms); // generous: sanitizer builds, shared CPUs
    gguf_close(f);
}

TEST(open_missing_file_is_not_found)
{
    gguf_file *f = (gguf_file *)1;
    CHECK(gguf_open("tests/data/no-such-file.gguf", &f) == NURI_ERR_NOT_FOUND);
    CHECK(f == NULL);
    CHECK(strstr(nuri_last_error(), "tests/data/no-such-file.gguf") != NULL);
}

/* ---- writer ---- */

static int read_whole(const char *path, void **out, size_t *size)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return 0;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    *out = malloc((size_t)n + 1);
    *size = fread(*out, 1, (size_t)n, fp);
    fclose(fp);
    return *size == (size_t)n;
}

TEST(writer_roundtrip_every_value_type)
{
    gguf_writer *w;
    REQUIRE(gguf_writer_new(&w) == NURI_OK);
    const char *toks[] = {"a", "", "\xea\xb0\x80\xeb\x82\x98", "<|end|>"};
    int32_t ints[] = {-1, 0, 7, 2147483647};
    float fl[] = {0.5f, -2.0f};
    uint8_t bools[] = {1, 0, 1};
    uint16_t u16 = 65535;
    int8_t i8 = -128;
    CHECK(gguf_writer_add_str(w, "general.architecture", "llama") == NURI_OK);
    CHECK(gguf_writer_add_u32(w, "a.u32", 4000000000u) == NURI_OK);
    CHECK(gguf_writer_add_i32(w, "a.i32", -5) == NURI_OK);
    CHECK(gguf_writer_add_u64(w, "a.u64", UINT64_MAX) == NURI_OK);
    CHECK(gguf_writer_add_i64(w, "a.i64", INT64_MIN) == NURI_OK);
    CHECK(gguf_writer_add_f32(w, "a.f32", 1.5f) == NURI_OK);
    CHECK(gguf_writer_add_f64(w, "a.f64", 0.1) == NURI_OK);
    CHECK(gguf_writer_add_bool(w, "a.bool", true) == NURI_OK);
    CHECK(gguf_writer_add_val(w, "a.u16", GGUF_TYPE_UINT16, &u16) == NURI_OK);
    CHECK(gguf_writer_add_val(w, "a.i8", GGUF_TYPE_INT8, &i8) == NURI_OK);
    CHECK(gguf_writer_add_strn(w, "a.nul", "x\0y", 3) == NURI_OK);
    CHECK(gguf_writer_add_str_arr(w, "a.toks", toks, 4) == NURI_OK);
    CHECK(gguf_writer_add_arr(w, "a.ints", GGUF_TYPE_INT32, ints, 4) == NURI_OK);
    CHECK(gguf_writer_add_arr(w, "a.floats", GGUF_TYPE_FLOAT32, fl, 2) == NURI_OK);
    CHECK(gguf_writer_add_arr(w, "a.bools", GGUF_TYPE_BOOL, bools, 3) == NURI_OK);
    CHECK(gguf_writer_add_arr(w, "a.empty", GGUF_TYPE_UINT8, NULL, 0) == NURI_OK);
    void *buf;
    size_t size;
    REQUIRE(gguf_writer_write_memory(w, &buf, &size) == NURI_OK);
    gguf_writer_free(w);

    gguf_file *f;
    nuri_status st = gguf_open_memory(buf, size, &f);
    CHECKF(st == NURI_OK, "%s", nuri_last_error());
    if (st) {
        free(buf);
        return;
    }
    CHECK(gguf_version(f) == 3 && gguf_n_kv(f) == 16 && gguf_n_tensors(f) == 0);
    gguf_str s;
    CHECK(gguf_get_str(f, "general.architecture", &s) == NURI_OK && gguf_str_eq(s, "llama"));
    uint32_t u32;
    CHECK(gguf_get_u32(f, "a.u32", &u32) == NURI_OK && u32 == 4000000000u);
    int64_t i64;
    CHECK(gguf_get_i64(f, "a.i32", &i64) == NURI_OK && i64 == -5);
    CHECK(gguf_get_u32(f, "a.i32", &u32) == NURI_ERR_FORMAT); // negative
    uint64_t u64;
    CHECK(gguf_get_u64(f, "a.u64", &u64) == NURI_OK && u64 == UINT64_MAX);
    CHECK(gguf_get_i64(f, "a.u64", &i64) == NURI_ERR_FORMAT); // does not fit
    CHECK(gguf_get_u32(f, "a.u64", &u32) == NURI_ERR_FORMAT);
    CHECK(gguf_get_i64(f, "a.i64", &i64) == NURI_OK && i64 == INT64_MIN);
    float x;
    CHECK(gguf_get_f32(f, "a.f32", &x) == NURI_OK && x == 1.5f);
    double d;
    CHECK(gguf_kv_f64(gguf_find_kv(f, "a.f64"), &d) == NURI_OK && d == 0.1);
    bool b;
    CHECK(gguf_get_bool(f, "a.bool", &b) == NURI_OK && b);
    CHECK(gguf_get_u32(f, "a.u16", &u32) == NURI_OK && u32 == 65535);
    CHECK(gguf_get_i64(f, "a.i8", &i64) == NURI_OK && i64 == -128);
    CHECK(gguf_kv_type(gguf_find_kv(f, "a.i8")) == GGUF_TYPE_INT8);
    CHECK(gguf_get_str(f, "a.nul", &s) == NURI_OK && s.len == 3 && !memcmp(s.ptr, "x\0y", 3));
    gguf_arr a;
    REQUIRE(gguf_get_arr(f, "a.toks", &a) == NURI_OK);
    CHECK(a.type == GGUF_TYPE_STRING && a.n == 4);
    for (uint64_t i = 0; i < 4; i++)
        CHECK(gguf_arr_str(&a, i, &s) == NURI_OK && gguf_str_eq(s, toks[i]));
    REQUIRE(gguf_get_arr(f, "a.ints", &a) == NURI_OK);
    for (uint64_t i = 0; i < 4; i++) CHECK(gguf_arr_i64(&a, i, &i64) == NURI_OK && i64 == ints[i]);
    REQUIRE(gguf_get_arr(f, "a.floats", &a) == NURI_OK);
    CHECK(gguf_arr_f32(&a, 1, &x) == NURI_OK && x == -2.0f);
    REQUIRE(gguf_get_arr(f, "a.bools", &a) == NURI_OK);
    CHECK(a.type == GGUF_TYPE_BOOL && a.n == 3 && ((const uint8_t *)a.data)[2] == 1);
    REQUIRE(gguf_get_arr(f, "a.empty", &a) == NURI_OK);
    CHECK(a.type == GGUF_TYPE_UINT8 && a.n == 0);
    CHECK(!strcmp(gguf_type_name(gguf_kv_type(gguf_kv_at(f, 1))), "uint32"));
    gguf_close(f);
    free(buf);
}

TEST(writer_roundtrip_tensors_aligned)
{
    gguf_writer *w;
    REQUIRE(gguf_writer_new(&w) == NURI_OK);
    CHECK(gguf_writer_add_u32(w, "general.alignment", 64) == NURI_OK);
    float a[3 * 5];
    for (int i = 0; i < 15; i++) a[i] = (float)i * 0.25f;
    uint8_t q[2 * 18]; // two Q4_0 blocks (64 elements)
    for (int i = 0; i < 36; i++) q[i] = (uint8_t)(i * 7);
    uint16_t h[7] = {1, 2, 3, 4, 5, 6, 7};
    int64_t ne_a[] = {3, 5}, ne_q[] = {64}, ne_h[] = {7, 1, 1, 1};
    CHECK(gguf_writer_add_tensor(w, "a", NURI_TYPE_F32, 2, ne_a, a) == NURI_OK);
    CHECK(gguf_writer_add_tensor(w, "blk.0.q", NURI_TYPE_Q4_0, 1, ne_q, q) == NURI_OK);
    CHECK(gguf_writer_add_tensor(w, "h", NURI_TYPE_F16, 4, ne_h, h) == NURI_OK);
    char path[128], tmp[140];
    snprintf(path, sizeof path, "/tmp/nuri_test_gguf_%d.gguf", (int)getpid());
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    REQUIRE(gguf_writer_write(w, path) == NURI_OK);
    gguf_writer_free(w);
    CHECK(access(tmp, F_OK) != 0);

    gguf_file *f;
    nuri_status st = gguf_open(path, &f);
    CHECKF(st == NURI_OK, "%s", nuri_last_error());
    if (st) return;
    CHECK(gguf_alignment(f) == 64 && gguf_data_offset(f) % 64 == 0);
    CHECK(gguf_n_tensors(f) == 3);
    const gguf_tensor *t = gguf_find_tensor(f, "a");
    REQUIRE(t);
    CHECK(t->n_dims == 2 && t->ne[0] == 3 && t->ne[1] == 5 && t->type == NURI_TYPE_F32);
    CHECK(t->size == sizeof a && !memcmp(t->data, a, sizeof a) && t->offset == 0);
    t = gguf_find_tensor(f, "blk.0.q");
    REQUIRE(t);
    CHECK(t->size == sizeof q && !memcmp(t->data, q, sizeof q) && t->offset == 64);
    t = gguf_find_tensor(f, "h");
    REQUIRE(t);
    CHECK(t->n_dims == 4 && t->size == sizeof h && !memcmp(t->data, h, sizeof h));
    CHECK(t->offset == 128);
    gguf_close(f);
    unlink(path);
}

/* Copies every kv and tensor of a file through the writer; the bytes must come out identical
 * (llama.cpp's writer uses the same layout: kvs, infos, padding, aligned tensors). */
static void check_copy_is_identical(const char *path, bool spill)
{
    gguf_file *f;
    REQUIRE(gguf_open(path, &f) == NURI_OK);
    gguf_writer *w;
    REQUIRE(gguf_writer_new(&w) == NURI_OK);
    char scratch[128];
    snprintf(scratch, sizeof scratch, "/tmp/nuri_test_spill_%d", (int)getpid());
    if (spill) { // the tensors wait in a scratch file, unlinked at once
        REQUIRE(gguf_writer_spill(w, scratch) == NURI_OK);
        CHECK(access(scratch, F_OK) != 0);
    }
    for (uint64_t i = 0; i < gguf_n_kv(f); i++)
        CHECKF(gguf_writer_add_kv(w, gguf_kv_at(f, i)) == NURI_OK, "%s", nuri_last_error());
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        CHECK(gguf_writer_add_tensor(w, name, t->type, t->n_dims, t->ne, t->data) == NURI_OK);
    }
    void *buf, *orig;
    size_t size, orig_size;
    REQUIRE(gguf_writer_write_memory(w, &buf, &size) == NURI_OK);
    REQUIRE(read_whole(path, &orig, &orig_size));
    CHECKF(size == orig_size, "%s: %zu bytes written, %zu in the original", path, size, orig_size);
    CHECKF(size == orig_size && !memcmp(buf, orig, size), "%s: bytes differ", path);
    free(buf);
    // and through a file (copied over from the scratch file when spilled)
    char out[140];
    snprintf(out, sizeof out, "%s.gguf", scratch);
    REQUIRE(gguf_writer_write(w, out) == NURI_OK);
    REQUIRE(read_whole(out, &buf, &size));
    CHECKF(size == orig_size && !memcmp(buf, orig, size), "%s: written file differs", path);
    unlink(out);
    free(buf);
    free(orig);
    gguf_writer_free(w);
    gguf_close(f);
}

TEST(writer_copy_of_real_files_is_byte_identical)
{
    check_copy_is_identical("tests/data/models/llama-tiny-Q4_K.gguf", false);
    check_copy_is_identical("tests/data/models/qwen2-tiny-Q8_0.gguf", false);
    check_copy_is_identical("tests/data/vocab/ggml-vocab-llama-spm.gguf", false);
    check_copy_is_identical("tests/data/models/llama-tiny-Q4_K.gguf", true);
    check_copy_is_identical("tests/data/models/qwen2-tiny-Q8_0.gguf", true);
}

TEST(writer_refuses_bad_arguments)
{
    gguf_writer *w;
    REQUIRE(gguf_writer_new(&w) == NURI_OK);
    float x[32] = {0};
    uint8_t bad_bool = 2;
    int64_t ne[] = {32, 1}, ne0[] = {0}, ne_q[] = {33};
    CHECK(gguf_writer_add_u32(w, "k", 1) == NURI_OK);
    CHECK(gguf_writer_add_u32(w, "k", 2) == NURI_ERR_INVALID_ARG); // duplicate
    CHECK(strstr(nuri_last_error(), "duplicate key 'k'") != NULL);
    CHECK(gguf_writer_add_u32(w, "", 2) == NURI_ERR_INVALID_ARG);
    CHECK(gguf_writer_add_str(w, "bad\x01key", "v") == NURI_ERR_INVALID_ARG);
    CHECK(gguf_writer_add_u32(w, "general.alignment", 48) == NURI_ERR_INVALID_ARG);
    CHECK(gguf_writer_add_u64(w, "general.alignment", 64) == NURI_ERR_INVALID_ARG);
    CHECK(gguf_writer_add_arr(w, "s", GGUF_TYPE_STRING, x, 1) == NURI_ERR_INVALID_ARG);
    CHECK(gguf_writer_add_arr(w, "b", GGUF_TYPE_BOOL, &bad_bool, 1) == NURI_ERR_INVALID_ARG);
    CHECK(gguf_writer_add_tensor(w, "t", NURI_TYPE_F32, 2, ne, x) == NURI_OK);
    CHECK(gguf_writer_add_tensor(w, "t", NURI_TYPE_F32, 2, ne, x) == NURI_ERR_INVALID_ARG);
    CHECK(gguf_writer_add_tensor(w, "u", NURI_TYPE_F32, 1, ne0, x) == NURI_ERR_INVALID_ARG);
    CHECK(gguf_writer_add_tensor(w, "u", NURI_TYPE_Q4_0, 1, ne_q, x) == NURI_ERR_INVALID_ARG);
    CHECK(gguf_writer_add_tensor(w, "u", 4, 1, ne, x) == NURI_ERR_INVALID_ARG);
    CHECK(gguf_writer_add_tensor(w, "u", NURI_TYPE_F32, 5, ne, x) == NURI_ERR_INVALID_ARG);
    CHECK(gguf_writer_add_tensor(w, "", NURI_TYPE_F32, 1, ne, x) == NURI_ERR_INVALID_ARG);
    // what was accepted still writes a valid file
    void *buf;
    size_t size;
    REQUIRE(gguf_writer_write_memory(w, &buf, &size) == NURI_OK);
    gguf_file *f;
    CHECK(gguf_open_memory(buf, size, &f) == NURI_OK);
    if (f) CHECK(gguf_n_kv(f) == 1 && gguf_n_tensors(f) == 1);
    gguf_close(f);
    free(buf);
    CHECK(gguf_writer_write(w, "/nonexistent-dir/x.gguf") == NURI_ERR_IO);
    gguf_writer_free(w);
}

TEST(many_keys_and_tensors_write_and_open_quickly)
{
    // hash indexes on both sides: 20000 keys and 5000 tensors must not be quadratic
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    gguf_writer *w;
    REQUIRE(gguf_writer_new(&w) == NURI_OK);
    char name[64];
    float x[8] = {0};
    int64_t ne[] = {8};
    for (uint32_t i = 0; i < 20000; i++) {
        snprintf(name, sizeof name, "k.%u", i);
        REQUIRE(gguf_writer_add_u32(w, name, i) == NURI_OK);
    }
    for (uint32_t i = 0; i < 5000; i++) {
        snprintf(name, sizeof name, "blk.%u.w", i);
        x[0] = (float)i;
        REQUIRE(gguf_writer_add_tensor(w, name, NURI_TYPE_F32, 1, ne, x) == NURI_OK);
    }
    CHECK(gguf_writer_add_u32(w, "k.19999", 0) == NURI_ERR_INVALID_ARG);
    CHECK(gguf_writer_add_tensor(w, "blk.4999.w", NURI_TYPE_F32, 1, ne, x) == NURI_ERR_INVALID_ARG);
    void *buf;
    size_t size;
    REQUIRE(gguf_writer_write_memory(w, &buf, &size) == NURI_OK);
    gguf_writer_free(w);
    gguf_file *f;
    REQUIRE(gguf_open_memory(buf, size, &f) == NURI_OK);
    CHECK(gguf_n_kv(f) == 20000 && gguf_n_tensors(f) == 5000);
    for (uint32_t i = 0; i < 20000; i += 997) {
        uint32_t v;
        snprintf(name, sizeof name, "k.%u", i);
        CHECK(gguf_get_u32(f, name, &v) == NURI_OK && v == i);
    }
    const gguf_tensor *t = gguf_find_tensor(f, "blk.4321.w");
    REQUIRE(t != NULL);
    float y;
    memcpy(&y, t->data, 4);
    CHECK(y == 4321.0f && t->offset == 4321 * 32);
    gguf_close(f);
    free(buf);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
    printf("  20000 keys + 5000 tensors written and opened in %.1f ms\n", ms);
    CHECKF(ms < 3000, "took %.1f ms", ms);
}

int main(void)
{
    RUN(opens_every_test_model_and_vocab);
    RUN(llama_tiny_f32_metadata);
    RUN(getters_report_missing_keys_and_wrong_types);
    RUN(llama_tiny_f32_tensors);
    RUN(quantized_tensor_sizes_follow_the_type_table);
    RUN(vocab_token_arrays);
    RUN(every_vocab_has_a_string_token_array);
    RUN(large_vocab_opens_fast);
    RUN(open_missing_file_is_not_found);
    RUN(writer_roundtrip_every_value_type);
    RUN(writer_roundtrip_tensors_aligned);
    RUN(writer_copy_of_real_files_is_byte_identical);
    RUN(writer_refuses_bad_arguments);
    RUN(many_keys_and_tensors_write_and_open_quickly);
    TEST_DONE();
}
