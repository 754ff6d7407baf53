/*
 * test_kv_snapshot.c: a sequence's KV as bytes (nuri_ctx_seq_kv_read / _write) and the snapshot
 * files (store/kv_snapshot.h). A sequence rebuilt from bytes must hold exactly what computing its
 * tokens writes, and continue exactly as the original; a file that does not match its model, is
 * damaged or cut short is refused and removed; the directory stays within its bound, least
 * recently used out first.
 */
#include "model/model.h"
#include "store/kv_snapshot.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MODEL "tests/data/models/qwen2-tiny-Q8_0.gguf"

static nuri_model *m;

/* tokens[0..n) of seq at positions pos0.., the last one's logits in row 0. */
static nuri_status nuri_ctx_decode_seq(nuri_ctx *c, int32_t seq, const int32_t *tokens, int32_t n,
                                       int32_t pos0)
{
    int32_t pos[128], sq[128];
    int8_t want[128] = {0};
    if (n > 128) return NURI_ERR_INVALID_ARG;
    for (int32_t i = 0; i < n; i++) pos[i] = pos0 + i, sq[i] = seq;
    want[n - 1] = 1;
    nuri_batch b = {.n = n, .token = tokens, .pos = pos, .seq = sq, .logits = want};
    return nuri_ctx_decode_batch(c, &b);
}

/* The same token at the same position on two sequences gives the same logits, bit for bit. */
static bool same_logits(nuri_ctx *c, int32_t seq_a, int32_t seq_b, int32_t pos, int32_t tok)
{
    float *la = malloc(sizeof(float) * (size_t)m->hp.n_vocab);
    bool ok = la != NULL;
    if (ok) ok = nuri_ctx_decode_seq(c, seq_a, &tok, 1, pos) == NURI_OK;
    if (ok) memcpy(la, nuri_ctx_logits(c, 0), sizeof(float) * (size_t)m->hp.n_vocab);
    if (ok) ok = nuri_ctx_decode_seq(c, seq_b, &tok, 1, pos) == NURI_OK;
    if (ok) ok = !memcmp(la, nuri_ctx_logits(c, 0), sizeof(float) * (size_t)m->hp.n_vocab);
    free(la);
    return ok;
}

TEST(a_sequence_rebuilt_from_its_bytes_is_the_sequence)
{
    nuri_ctx_params cp = {.n_ctx = 1024, .n_threads = 1, .n_seq = 4};
    nuri_ctx *c;
    REQUIRE(nuri_ctx_new(m, &cp, &c) == NURI_OK);
    int32_t prompt[100];
    for (int i = 0; i < 100; i++) prompt[i] = (i * 37 + 11) % 4000 + 5;
    // seq 0: 100 tokens in one batch (as a prompt)
    REQUIRE(nuri_ctx_decode_seq(c, 0, prompt, 100, 0) == NURI_OK);
    size_t bytes = nuri_ctx_kv_bytes(c, 100);
    CHECK(bytes == 2 * (size_t)m->hp.n_layer * 100 * m->hp.n_head_kv * m->hp.head_dim * 2);
    uint8_t *kv = malloc(bytes), *kv2 = malloc(bytes);
    REQUIRE(kv && kv2);
    REQUIRE(nuri_ctx_seq_kv_read(c, 0, 100, kv) == NURI_OK);
    // seq 2: the same tokens one at a time (as decode steps write them): the same bytes
    for (int i = 0; i < 100; i++) REQUIRE(nuri_ctx_decode_seq(c, 2, &prompt[i], 1, i) == NURI_OK);
    REQUIRE(nuri_ctx_seq_kv_read(c, 2, 100, kv2) == NURI_OK);
    CHECK(!memcmp(kv, kv2, bytes));
    // seq 1 from the bytes (the first 70 of 100 positions) continues as seq 0 cut to 70
    int32_t before = nuri_ctx_pages_free(c);
    REQUIRE(nuri_ctx_seq_kv_write(c, 1, 70, 100, kv) == NURI_OK);
    CHECK(nuri_ctx_seq_len(c, 1) == 70);
    CHECK(before - nuri_ctx_pages_free(c) == (70 + NURI_KV_PAGE - 1) / NURI_KV_PAGE);
    nuri_ctx_seq_truncate(c, 0, 70);
    CHECK(same_logits(c, 0, 1, 70, prompt[70]));
    CHECK(same_logits(c, 0, 1, 71, 42));
    // errors: more tokens than held, no room
    CHECK(nuri_ctx_seq_kv_read(c, 0, 500, kv) == NURI_ERR_INVALID_ARG);
    CHECK(nuri_ctx_seq_kv_write(c, 3, 101, 100, kv) == NURI_ERR_INVALID_ARG);
    free(kv);
    free(kv2);
    nuri_ctx_free(c);
}

static char dir[256];

static uint64_t file_size(const char *key)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s.kv", dir, key);
    struct stat st;
    return stat(p, &st) == 0 ? (uint64_t)st.st_size : 0;
}

TEST(snapshot_files_round_trip_and_refuse_what_does_not_match)
{
    uint8_t id[32] = {1, 2, 3}, other[32] = {9};
    nuri_kvsnap_dir *d;
    REQUIRE(nuri_kvsnap_open(dir, 0, id, &d) == NURI_OK);
    int32_t toks[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    uint8_t kv[10 * 16];
    for (size_t i = 0; i < sizeof kv; i++) kv[i] = (uint8_t)(i * 7);
    REQUIRE(nuri_kvsnap_put(d, "resp_abc", toks, 10, kv, sizeof kv) == NURI_OK);
    nuri_kv_snapshot s;
    REQUIRE(nuri_kvsnap_get(d, "resp_abc", 16, &s) == NURI_OK);
    CHECK(s.n == 10 && s.kv_bytes == sizeof kv && !memcmp(s.tokens, toks, sizeof toks) &&
          !memcmp(s.kv, kv, sizeof kv));
    nuri_kv_snapshot_free(&s);
    CHECK(nuri_kvsnap_get(d, "resp_none", 16, &s) == NURI_ERR_NOT_FOUND);
    CHECK(nuri_kvsnap_get(d, "../etc", 16, &s) == NURI_ERR_NOT_FOUND);
    CHECK(nuri_kvsnap_put(d, "a/b", toks, 10, kv, sizeof kv) == NURI_ERR_INVALID_ARG);
    // another model's bytes per token: refused and removed
    CHECK(nuri_kvsnap_get(d, "resp_abc", 32, &s) == NURI_ERR_FORMAT);
    CHECK(file_size("resp_abc") == 0);
    // another identity: refused and removed
    nuri_kvsnap_dir *d2;
    REQUIRE(nuri_kvsnap_open(dir, 0, other, &d2) == NURI_OK);
    REQUIRE(nuri_kvsnap_put(d2, "resp_x", toks, 10, kv, sizeof kv) == NURI_OK);
    CHECK(nuri_kvsnap_get(d, "resp_x", 16, &s) == NURI_ERR_FORMAT);
    CHECK(file_size("resp_x") == 0);
    nuri_kvsnap_close(d2);
    // one flipped byte, or a file cut short: refused and removed
    char p[512];
    for (int damage = 0; damage < 2; damage++) {
        REQUIRE(nuri_kvsnap_put(d, "resp_y", toks, 10, kv, sizeof kv) == NURI_OK);
        snprintf(p, sizeof p, "%s/resp_y.kv", dir);
        FILE *f = fopen(p, "r+b");
        REQUIRE(f);
        if (damage == 0) {
            fseek(f, 64 + 40 + 17, SEEK_SET);
            fputc(0x5A ^ kv[17], f);
            fclose(f);
        } else {
            fclose(f);
            REQUIRE(truncate(p, 64 + 40 + 100) == 0);
        }
        CHECK(nuri_kvsnap_get(d, "resp_y", 16, &s) == NURI_ERR_FORMAT);
        CHECK(file_size("resp_y") == 0);
    }
    nuri_kvsnap_close(d);
}

TEST(the_directory_keeps_to_its_bound_least_recently_used_out_first)
{
    uint8_t id[32] = {7};
    int32_t toks[100];
    for (int i = 0; i < 100; i++) toks[i] = i;
    static uint8_t kv[100 * 64];
    uint64_t one = 64 + sizeof toks + sizeof kv;
    nuri_kvsnap_dir *d;
    REQUIRE(nuri_kvsnap_open(dir, 3 * one + one / 2, id, &d) == NURI_OK);
    char key[32];
    for (int i = 0; i < 3; i++) {
        snprintf(key, sizeof key, "conv_%d", i);
        REQUIRE(nuri_kvsnap_put(d, key, toks, 100, kv, sizeof kv) == NURI_OK);
        usleep(20000); // distinct modification times
    }
    nuri_kv_snapshot s;
    REQUIRE(nuri_kvsnap_get(d, "conv_0", 64, &s) == NURI_OK); // conv_0 is now the most recent
    nuri_kv_snapshot_free(&s);
    usleep(20000);
    REQUIRE(nuri_kvsnap_put(d, "conv_3", toks, 100, kv, sizeof kv) == NURI_OK);
    int n;
    uint64_t used = nuri_kvsnap_usage(d, &n);
    CHECK(n == 3 && used <= 3 * one + one / 2);
    CHECK(file_size("conv_1") == 0); // the least recently used went
    CHECK(file_size("conv_0") && file_size("conv_2") && file_size("conv_3"));
    nuri_kvsnap_close(d);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/nuri-kvsnap-test-%d", (int)getpid());
    if (nuri_model_load(MODEL, &m) != NURI_OK) {
        fprintf(stderr, "%s\n", nuri_last_error());
        return 1;
    }
    RUN(a_sequence_rebuilt_from_its_bytes_is_the_sequence);
    RUN(snapshot_files_round_trip_and_refuse_what_does_not_match);
    RUN(the_directory_keeps_to_its_bound_least_recently_used_out_first);
    nuri_model_free(m);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
    TEST_DONE();
}
