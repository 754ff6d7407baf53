/*
 * test_model_errors.c: a model file that is a valid GGUF but not a model nuri can run gets an error
 * that names what is wrong: the architecture, the missing tensor, the wrong shape or type, a bad
 * hyperparameter. Each case copies a good model (tests/data/models/qwen2-tiny-Q8_0.gguf) with one
 * change, in memory, and loads the copy.
 */
#include "base/status.h"
#include "gguf/gguf.h"
#include "model/model.h"
#include "test.h"

#define GOOD "tests/data/models/qwen2-tiny-Q8_0.gguf"

typedef struct change {
    const char *drop_key;     // leave out this key
    const char *drop_tensor;  // leave out this tensor
    const char *arch;         // write general.architecture = this
    const char *shape_tensor; // give this tensor a wrong shape (ne[1] halved; data truncated)
    const char *u32_key;      // set this key to u32_val
    uint32_t u32_val;
} change;

/* Loads a changed copy of GOOD; returns the status and leaves the message in nuri_last_error(). */
static nuri_status load_changed(const change *ch)
{
    gguf_file *f;
    NURI_ASSERT(gguf_open(GOOD, &f) == NURI_OK);
    gguf_writer *w;
    NURI_ASSERT(gguf_writer_new(&w) == NURI_OK);
    for (uint64_t i = 0; i < gguf_n_kv(f); i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        gguf_str k = gguf_kv_key(kv);
        if (ch->drop_key && gguf_str_eq(k, ch->drop_key)) continue;
        if (ch->arch && gguf_str_eq(k, "general.architecture")) {
            gguf_writer_add_str(w, "general.architecture", ch->arch);
            continue;
        }
        if (ch->u32_key && gguf_str_eq(k, ch->u32_key)) {
            gguf_writer_add_u32(w, ch->u32_key, ch->u32_val);
            continue;
        }
        gguf_writer_add_kv(w, kv);
    }
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        if (ch->drop_tensor && !strcmp(name, ch->drop_tensor)) continue;
        int64_t ne[4] = {t->ne[0], t->ne[1], t->ne[2], t->ne[3]};
        if (ch->shape_tensor && !strcmp(name, ch->shape_tensor)) ne[1] /= 2;
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

int main(void)
{
    RUN(the_unchanged_copy_loads);
    RUN(an_unsupported_architecture_is_named);
    RUN(a_missing_tensor_is_named);
    RUN(a_wrong_shape_is_named_with_both_shapes);
    RUN(a_missing_or_bad_hyperparameter_is_named);
    RUN(a_tensor_that_disagrees_with_the_hyperparameters_is_named);
    TEST_DONE();
}
