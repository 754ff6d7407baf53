/*
 * test_toolcall_fuzz_replay.c: replays every file of the reply-parser fuzz corpus
 * (fuzz/corpus/toolcall/) through the same checks as the libFuzzer target
 * (fuzz/toolcall_fuzz_one.h: whole and streamed parsing agree, deltas add up to the reply), so
 * that CI runs the corpus under ASan and UBSan.
 */
#include "../fuzz/toolcall_fuzz_one.h"
#include "test.h"

static void replay(const uint8_t *data, size_t size, const char *path, void *ctx)
{
    CHECKF(toolcall_fuzz_one(data, size) == NURI_OK, "%s: %s", path, nuri_last_error());
    ++*(int *)ctx;
}

TEST(corpus_replays_cleanly)
{
    int ok = 0;
    int files = test_each_file("fuzz/corpus/toolcall", replay, &ok);
    printf("  %d corpus files\n", files);
    CHECK(files >= 20);
}

int main(void)
{
    RUN(corpus_replays_cleanly);
    TEST_DONE();
}
