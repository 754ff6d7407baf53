/*
 * test_model_errors.c: a model file that is a valid GGUF but not a model nuri can run gets an error
 * at load that names what is wrong: the architecture, the missing tensor, the wrong shape or type,
 * a bad hyperparameter, a broken vocabulary (tokenizer.ggml.*) or one with more tokens than the
 * weights have rows. Each case copies a good model (tests/data/models/qwen2-tiny-Q8_0.gguf: 4096
 * SentencePiece tokens, token_embd.weight and a separate output.weight of 4096 rows) with one
 * change, in memory, and loads the copy.
 */
#include "base/status.h"
#include "gguf/gguf.h"
#include "model/model.h"
#include "test.h"

#define GOOD "tests/data/models/qwen2-tiny-Q8_0.gguf"

typedef struct change {
    const char *drop_key;      // leave out this key
    const char *drop_tensor;   // leave out this tensor
    const char *arch;          // write general.architecture = this
    const char *shape_tensor;  // give this tensor a wrong shape (ne[1] halved; data truncated)
    const char *shape_tensor2; // and this one too
    const char *u32_key;       // set (or add) this key to u32_val
    uint32_t u32_val;
    const char *str_key; // set (or add) this key to the string str_val
    const char *str_val;
    const char *i32_arr_key; // set (or add) this key to an array of three int32
    struct {
        const char *key; // write this array with n elements: its own, then its last repeated
        uint64_t n;
    } resize[3];
} change;

/* Writes array kv again as `key` with n elements: its own, then copies of its last one. */
static void add_resized(gguf_writer *w, const gguf_kv *kv, const char *key, uint64_t n)
{
    gguf_arr a;
    NURI_ASSERT(gguf_kv_arr(kv, &a) == NURI_OK && a.n > 0);
    void *v = malloc((n ? n : 1) * (a.type == GGUF_TYPE_STRING ? sizeof(gguf_str) : 4));
    NURI_ASSERT(v);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t j = i < a.n ? i : a.n - 1;
        int64_t x;
        if (a.type == GGUF_TYPE_STRING)
            NURI_ASSERT(gguf_arr_str(&a, j, &((gguf_str *)v)[i]) == NURI_OK);
        else if (a.type == GGUF_TYPE_FLOAT32)
            NURI_ASSERT(gguf_arr_f32(&a, j, &((float *)v)[i]) == NURI_OK);
        else {
            NURI_ASSERT(gguf_arr_i64(&a, j, &x) == NURI_OK);
            ((int32_t *)v)[i] = (int32_t)x;
        }
    }
    if (a.type == GGUF_TYPE_STRING)
        NURI_ASSERT(gguf_writer_add_strn_arr(w, key, v, n) == NURI_OK);
    else
        NURI_ASSERT(gguf_writer_add_arr(
                        w, key, a.type == GGUF_TYPE_FLOAT32 ? GGUF_TYPE_FLOAT32 : GGUF_TYPE_INT32,
                        v, n) == NURI_OK);
    free(v);
}

/* Loads a changed copy of GOOD; returns the status and leaves the message in nuri_last_error(). */
static nuri_status load_changed(const change *ch)
{
    gguf_file *f;
    NURI_ASSERT(gguf_open(GOOD, &f) == NURI_OK);
    gguf_writer *w;
    NURI_ASSERT(gguf_writer_new(&w) == NURI_OK);
    static const int32_t three[3] = {1, 2, 3};
    for (uint64_t i = 0; i < gguf_n_kv(f); i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        gguf_str k = gguf_kv_key(kv);
        if (ch->drop_key && gguf_str_eq(k, ch->drop_key)) continue;
        if (ch->arch && gguf_str_eq(k, "general.architecture")) {
            gguf_writer_add_str(w, "general.architecture", ch->arch);
            continue;
        }
        // these are added after the loop
        if ((ch->u32_key && gguf_str_eq(k, ch->u32_key)) ||
            (ch->str_key && gguf_str_eq(k, ch->str_key)) ||
            (ch->i32_arr_key && gguf_str_eq(k, ch->i32_arr_key)))
            continue;
        bool resized = false;
        for (int r = 0; r < 3 && ch->resize[r].key; r++) {
            if (gguf_str_eq(k, ch->resize[r].key)) {
                add_resized(w, kv, ch->resize[r].key, ch->resize[r].n);
                resized = true;
            }
        }
        if (!resized) gguf_writer_add_kv(w, kv);
    }
    if (ch->u32_key) NURI_ASSERT(gguf_writer_add_u32(w, ch->u32_key, ch->u32_val) == NURI_OK);
    if (ch->str_key) NURI_ASSERT(gguf_writer_add_str(w, ch->str_key, ch->str_val) == NURI_OK);
    if (ch->i32_arr_key)
        NURI_ASSERT(gguf_writer_add_arr(w, ch->i32_arr_key, GGUF_TYPE_INT32, three, 3) == NURI_OK);
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        if (ch->drop_tensor && !strcmp(name, ch->drop_tensor)) continue;
        int64_t ne[4] = {t->ne[0], t->ne[1], t->ne[2], t->ne[3]};
        if ((ch->shape_tensor && !strcmp(name, ch->shape_tensor)) ||
            (ch->shape_tensor2 && !strcmp(name, ch->shape_tensor2)))
            ne[1] /= 2;
        gguf_writer_add_tensor(w, name, t->type, t->n_dims, ne, t->data);
    }
    void *bytes;
    size_t size;
    NURI_ASSERT(gguf_writer_write_memory(w, &bytes, &size) == NURI_OK);
    gguf_writer_free(w);
    gguf_close(f);
    gguf_file *g;
    nuri_status s = gguf_open_memory(bytes, size, &g);
    nuri_model *m = NULL;
    if (s == NURI_OK) s = nuri_model_from_gguf(g, &m);
    nuri_model_free(m);
    free(bytes);
    return s;
}

static void expect(const change *ch, nuri_status want, const char *words)
{
    nuri_status s = load_changed(ch);
    CHECKF(s == want, "status %d, expected %d (%s)", s, want, nuri_last_error());
    CHECKF(strstr(nuri_last_error(), words) != NULL, "message '%s' lacks '%s'", nuri_last_error(),
           words);
}

TEST(the_unchanged_copy_loads)
{
    change none = {0};
    CHECKF(load_changed(&none) == NURI_OK, "%s", nuri_last_error());
}

TEST(an_unsupported_architecture_is_named)
{
    expect(&(change){.arch = "mamba"}, NURI_ERR_UNSUPPORTED, "architecture 'mamba'");
}

TEST(a_missing_tensor_is_named)
{
    expect(&(change){.drop_tensor = "blk.1.ffn_down.weight"}, NURI_ERR_FORMAT,
           "'blk.1.ffn_down.weight' is missing");
    expect(&(change){.drop_tensor = "blk.0.attn_k.bias"}, NURI_ERR_FORMAT,
           "'blk.0.attn_k.bias' is missing"); // qwen2 needs its biases
}

TEST(a_wrong_shape_is_named_with_both_shapes)
{
    expect(&(change){.shape_tensor = "blk.0.attn_q.weight"}, NURI_ERR_FORMAT,
           "'blk.0.attn_q.weight' has shape [256, 128, 1, 1], expected [256, 256]");
}

TEST(a_missing_or_bad_hyperparameter_is_named)
{
    expect(&(change){.drop_key = "qwen2.block_count"}, NURI_ERR_NOT_FOUND, "qwen2.block_count");
    expect(&(change){.u32_key = "qwen2.attention.head_count_kv", .u32_val = 3}, NURI_ERR_FORMAT,
           "not a multiple of head_count_kv 3");
    expect(&(change){.u32_key = "qwen2.rope.dimension_count", .u32_val = 65}, NURI_ERR_FORMAT,
           "rope.dimension_count 65");
    expect(&(change){.u32_key = "qwen2.embedding_length", .u32_val = 0}, NURI_ERR_FORMAT,
           "qwen2.embedding_length");
}

TEST(a_tensor_that_disagrees_with_the_hyperparameters_is_named)
{
    // n_ff says 512 but the FFN tensors are 768 wide
    expect(&(change){.u32_key = "qwen2.feed_forward_length", .u32_val = 512}, NURI_ERR_FORMAT,
           "'blk.0.ffn_gate.weight' has shape [256, 768, 1, 1], expected [256, 512]");
}

/* ---- the vocabulary, checked whole at load: no command gets a model without a valid one ---- */

TEST(the_model_holds_its_vocabulary)
{
    nuri_model *m;
    REQUIRE(nuri_model_load(GOOD, &m) == NURI_OK);
    CHECK(m->vocab != NULL);
    CHECK(nuri_vocab_n_tokens(m->vocab) == 4096);
    CHECK(nuri_vocab_bos(m->vocab) == 1 && nuri_vocab_eos(m->vocab) == 2);
    nuri_model_free(m);
}

TEST(scores_not_one_per_token_are_refused)
{
    expect(&(change){.resize = {{"tokenizer.ggml.scores", 4095}}}, NURI_ERR_FORMAT,
           "tokenizer.ggml.scores has 4095 entries but tokenizer.ggml.tokens has 4096");
    expect(&(change){.resize = {{"tokenizer.ggml.scores", 5000}}}, NURI_ERR_FORMAT,
           "tokenizer.ggml.scores has 5000 entries but tokenizer.ggml.tokens has 4096");
}

TEST(token_types_not_one_per_token_are_refused)
{
    expect(&(change){.resize = {{"tokenizer.ggml.token_type", 10}}}, NURI_ERR_FORMAT,
           "tokenizer.ggml.token_type has 10 entries but tokenizer.ggml.tokens has 4096");
    expect(&(change){.resize = {{"tokenizer.ggml.token_type", 4097}}}, NURI_ERR_FORMAT,
           "tokenizer.ggml.token_type has 4097 entries but tokenizer.ggml.tokens has 4096");
}

TEST(an_empty_token_list_is_refused)
{
    expect(&(change){.resize = {{"tokenizer.ggml.tokens", 0}}}, NURI_ERR_FORMAT,
           "tokenizer.ggml.tokens is empty");
}

TEST(a_token_list_that_is_not_an_array_of_strings_is_refused)
{
    expect(&(change){.i32_arr_key = "tokenizer.ggml.tokens"}, NURI_ERR_FORMAT,
           "tokenizer.ggml.tokens is an array of int32, not of strings");
    expect(&(change){.str_key = "tokenizer.ggml.tokens", .str_val = "hello"}, NURI_ERR_FORMAT,
           "tokenizer.ggml.tokens");
}

TEST(merges_that_are_not_strings_are_refused)
{
    // a BPE vocabulary needs merges: as ints they are refused, and so is their absence
    expect(&(change){.str_key = "tokenizer.ggml.model",
                     .str_val = "gpt2",
                     .i32_arr_key = "tokenizer.ggml.merges"},
           NURI_ERR_FORMAT, "tokenizer.ggml.merges is an array of int32, not of strings");
    expect(&(change){.str_key = "tokenizer.ggml.model", .str_val = "gpt2"}, NURI_ERR_FORMAT,
           "tokenizer.ggml.merges: missing");
}

TEST(a_special_token_id_out_of_range_is_refused)
{
    expect(&(change){.u32_key = "tokenizer.ggml.bos_token_id", .u32_val = 4096}, NURI_ERR_FORMAT,
           "tokenizer.ggml.bos_token_id = 4096 is out of range: tokenizer.ggml.tokens has 4096");
    expect(&(change){.u32_key = "tokenizer.ggml.eos_token_id", .u32_val = 70000}, NURI_ERR_FORMAT,
           "tokenizer.ggml.eos_token_id = 70000 is out of range");
    expect(&(change){.u32_key = "tokenizer.ggml.unknown_token_id", .u32_val = 5000},
           NURI_ERR_FORMAT, "tokenizer.ggml.unknown_token_id = 5000");
    // keys the file does not have, added
    expect(&(change){.u32_key = "tokenizer.ggml.padding_token_id", .u32_val = 4097},
           NURI_ERR_FORMAT, "tokenizer.ggml.padding_token_id = 4097");
    expect(&(change){.u32_key = "tokenizer.ggml.eot_token_id", .u32_val = 9999}, NURI_ERR_FORMAT,
           "tokenizer.ggml.eot_token_id = 9999");
    expect(&(change){.u32_key = "tokenizer.ggml.fim_pre_token_id", .u32_val = 4096},
           NURI_ERR_FORMAT, "tokenizer.ggml.fim_pre_token_id = 4096");
    // the last id is a token's
    change last = {.u32_key = "tokenizer.ggml.padding_token_id", .u32_val = 4095};
    CHECKF(load_changed(&last) == NURI_OK, "%s", nuri_last_error());
}

TEST(an_embedding_with_fewer_rows_than_tokens_is_refused)
{
    expect(&(change){.shape_tensor = "token_embd.weight", .shape_tensor2 = "output.weight"},
           NURI_ERR_FORMAT,
           "tokenizer.ggml.tokens has 4096 entries but tensors 'token_embd.weight' and "
           "'output.weight' have 2048 rows");
    // tied output (no output.weight): the embedding alone
    expect(&(change){.shape_tensor = "token_embd.weight", .drop_tensor = "output.weight"},
           NURI_ERR_FORMAT,
           "tokenizer.ggml.tokens has 4096 entries but tensor 'token_embd.weight' has 2048 rows");
}

TEST(an_output_matrix_with_fewer_rows_than_tokens_is_refused)
{
    expect(&(change){.shape_tensor = "output.weight"}, NURI_ERR_FORMAT,
           "'output.weight' has shape [256, 2048, 1, 1], expected [256, 4096]");
}

TEST(more_rows_than_tokens_is_a_padded_vocabulary_and_loads)
{
    change padded = {.resize = {{"tokenizer.ggml.tokens", 4000},
                                {"tokenizer.ggml.scores", 4000},
                                {"tokenizer.ggml.token_type", 4000}}};
    CHECKF(load_changed(&padded) == NURI_OK, "%s", nuri_last_error());
}

TEST(a_model_without_a_vocabulary_is_refused)
{
    expect(&(change){.drop_key = "tokenizer.ggml.model"}, NURI_ERR_NOT_FOUND,
           "tokenizer.ggml.model");
}

int main(void)
{
    RUN(the_unchanged_copy_loads);
    RUN(an_unsupported_architecture_is_named);
    RUN(a_missing_tensor_is_named);
    RUN(a_wrong_shape_is_named_with_both_shapes);
    RUN(a_missing_or_bad_hyperparameter_is_named);
    RUN(a_tensor_that_disagrees_with_the_hyperparameters_is_named);
    RUN(the_model_holds_its_vocabulary);
    RUN(scores_not_one_per_token_are_refused);
    RUN(token_types_not_one_per_token_are_refused);
    RUN(an_empty_token_list_is_refused);
    RUN(a_token_list_that_is_not_an_array_of_strings_is_refused);
    RUN(merges_that_are_not_strings_are_refused);
    RUN(a_special_token_id_out_of_range_is_refused);
    RUN(an_embedding_with_fewer_rows_than_tokens_is_refused);
    RUN(an_output_matrix_with_fewer_rows_than_tokens_is_refused);
    RUN(more_rows_than_tokens_is_a_padded_vocabulary_and_loads);
    RUN(a_model_without_a_vocabulary_is_refused);
    TEST_DONE();
}
