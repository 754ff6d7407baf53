/*
 * test_gguf_fuzz_replay.c: replays every file of the GGUF fuzz corpus (fuzz/corpus/gguf/) through
 * the same walk as the libFuzzer target (fuzz/gguf_walk.h), so that CI runs the corpus under ASan
 * and UBSan. Each file must either open and be walked completely, or fail with a message.
 */
#include "../fuzz/gguf_walk.h"
#include "test.h"

static void replay(const uint8_t *data, size_t size, const char *path, void *ctx)
{
    uint64_t sum;
    if (gguf_walk(data, size, &sum) == NURI_OK)
        ++*(int *)ctx;
    else
        CHECKF(nuri_last_error()[0] != 0, "%s failed without a message", path);
}

TEST(corpus_replays_cleanly)
{
    int opened = 0;
    int files = test_each_file("fuzz/corpus/gguf", replay, &opened);
    printf("  %d corpus files: %d opened, %d refused\n", files, opened, files - opened);
    CHECK(files >= 10);
    CHECK(opened >= 1);
}

int main(void)
{
    RUN(corpus_replays_cleanly);
    TEST_DONE();
}
