/*
 * gguf_seedgen.c: writes the small valid GGUF files that seeded the fuzz corpus
 * (fuzz/corpus/gguf/seed-*.gguf) with the GGUF writer. Not built by make; from the repo root:
 *   cc -std=c11 -D_GNU_SOURCE -Iinclude -Isrc -o build/gguf_seedgen fuzz/gguf_seedgen.c \
 *      build/libnuri.a -lm && build/gguf_seedgen DIR
 */
#include "gguf/gguf.h"
#include "kernels/types.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void save(gguf_writer *w, const char *dir, const char *name, int version)
{
    void *buf;
    size_t n;
    if (gguf_writer_write_memory(w, &buf, &n)) {
        fprintf(stderr, "%s\n", nuri_last_error());
        exit(1);
    }
    if (version == 2) ((unsigned char *)buf)[4] = 2;
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "wb");
    fwrite(buf, 1, n, fp);
    fclose(fp);
    printf("%s %zu\n", name, n);
    free(buf);
    gguf_writer_free(w);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gguf_seedgen DIR\n");
        return 2;
    }
    const char *dir = argv[1];
    gguf_writer *w;
    static unsigned char data[65536];
    for (size_t i = 0; i < sizeof data; i++) data[i] = (unsigned char)(i * 31 + 7);

    gguf_writer_new(&w);
    save(w, dir, "empty", 3);

    gguf_writer_new(&w);
    gguf_writer_add_str(w, "general.architecture", "llama");
    save(w, dir, "one_kv_v2", 2);

    /* every value type */
    gguf_writer_new(&w);
    uint8_t u8 = 200;
    int8_t i8 = -3;
    uint16_t u16 = 60000;
    int16_t i16 = -300;
    double f64 = 2.5;
    gguf_writer_add_str(w, "general.architecture", "qwen2");
    gguf_writer_add_val(w, "a.u8", GGUF_TYPE_UINT8, &u8);
    gguf_writer_add_val(w, "a.i8", GGUF_TYPE_INT8, &i8);
    gguf_writer_add_val(w, "a.u16", GGUF_TYPE_UINT16, &u16);
    gguf_writer_add_val(w, "a.i16", GGUF_TYPE_INT16, &i16);
    gguf_writer_add_u32(w, "a.u32", 123456);
    gguf_writer_add_i32(w, "a.i32", -123456);
    gguf_writer_add_f32(w, "a.f32", 1e-6f);
    gguf_writer_add_bool(w, "a.bool", true);
    gguf_writer_add_u64(w, "a.u64", 1ull << 40);
    gguf_writer_add_i64(w, "a.i64", -(1ll << 40));
    gguf_writer_add_val(w, "a.f64", GGUF_TYPE_FLOAT64, &f64);
    gguf_writer_add_strn(w, "a.str", "h\0i", 3);
    int64_t ia[4] = {1, -2, 3, -4};
    uint8_t ba[3] = {1, 0, 1};
    double da[2] = {0.5, -1};
    gguf_writer_add_arr(w, "a.i64s", GGUF_TYPE_INT64, ia, 4);
    gguf_writer_add_arr(w, "a.bools", GGUF_TYPE_BOOL, ba, 3);
    gguf_writer_add_arr(w, "a.f64s", GGUF_TYPE_FLOAT64, da, 2);
    gguf_writer_add_arr(w, "a.u8s", GGUF_TYPE_UINT8, data, 5);
    gguf_writer_add_arr(w, "a.none", GGUF_TYPE_UINT16, NULL, 0);
    const char *ss[] = {"", "x", "\xea\xb0\x80"};
    gguf_writer_add_str_arr(w, "a.strs", ss, 3);
    save(w, dir, "all_types", 3);

    /* vocab-like from the real llama-spm vocab (first 300 tokens) */
    gguf_file *f;
    if (gguf_open("tests/data/vocab/ggml-vocab-llama-spm.gguf", &f)) return 1;
    gguf_writer_new(&w);
    for (uint64_t i = 0; i < gguf_n_kv(f); i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        gguf_arr a;
        gguf_str k = gguf_kv_key(kv);
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)k.len, k.ptr);
        if (gguf_kv_arr(kv, &a) == NURI_OK) {
            uint64_t n = a.n < 300 ? a.n : 300;
            if (a.type == GGUF_TYPE_STRING) {
                gguf_str *v = malloc(n * sizeof *v);
                for (uint64_t j = 0; j < n; j++) gguf_arr_str(&a, j, &v[j]);
                gguf_writer_add_strn_arr(w, key, v, n);
                free(v);
            } else
                gguf_writer_add_arr(w, key, a.type, a.data, n);
        } else
            gguf_writer_add_kv(w, kv);
    }
    gguf_close(f);
    save(w, dir, "vocab_spm_300", 3);

    /* tensors of several types */
    gguf_writer_new(&w);
    gguf_writer_add_str(w, "general.architecture", "llama");
    gguf_writer_add_u32(w, "general.alignment", 64);
    int64_t ne1[] = {4, 3}, ne2[] = {64}, ne3[] = {256, 2}, ne4[] = {2, 2, 2, 2}, ne5[] = {32};
    gguf_writer_add_tensor(w, "f32", NURI_TYPE_F32, 2, ne1, data);
    gguf_writer_add_tensor(w, "q4_0", NURI_TYPE_Q4_0, 1, ne2, data);
    gguf_writer_add_tensor(w, "q4_k", NURI_TYPE_Q4_K, 2, ne3, data);
    gguf_writer_add_tensor(w, "f16.4d", NURI_TYPE_F16, 4, ne4, data);
    gguf_writer_add_tensor(w, "q8_0", NURI_TYPE_Q8_0, 1, ne5, data);
    gguf_writer_add_tensor(w, "bf16", NURI_TYPE_BF16, 1, ne5, data);
    save(w, dir, "tensors_mixed", 3);

    /* model-like: small llama with metadata and a tiny vocab */
    gguf_writer_new(&w);
    gguf_writer_add_str(w, "general.architecture", "llama");
    gguf_writer_add_str(w, "general.name", "seed");
    gguf_writer_add_u32(w, "llama.embedding_length", 32);
    gguf_writer_add_u32(w, "llama.block_count", 1);
    gguf_writer_add_f32(w, "llama.rope.freq_base", 10000.0f);
    const char *toks[] = {"<unk>", "<s>", "</s>", "a", "b"};
    gguf_writer_add_str_arr(w, "tokenizer.ggml.tokens", toks, 5);
    int32_t tt[5] = {2, 3, 3, 1, 1};
    gguf_writer_add_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, tt, 5);
    int64_t e[] = {32, 5}, n1[] = {32}, q[] = {32, 32};
    gguf_writer_add_tensor(w, "token_embd.weight", NURI_TYPE_F32, 2, e, data);
    gguf_writer_add_tensor(w, "blk.0.attn_norm.weight", NURI_TYPE_F32, 1, n1, data);
    gguf_writer_add_tensor(w, "blk.0.attn_q.weight", NURI_TYPE_Q8_0, 2, q, data);
    save(w, dir, "model_tiny", 3);
    return 0;
}
