/*
 * test_hub_fuzz_replay.c: replays every file of the hub fuzz corpus (fuzz/corpus/hub/) through
 * the same parsing as the libFuzzer target (fuzz/hub_fuzz_one.h), so that CI runs the corpus under
 * ASan and UBSan. Each file must either parse or fail with a message; none may crash.
 */
#include "../fuzz/hub_fuzz_one.h"
#include "test.h"

static void replay(const uint8_t *data, size_t size, const char *path, void *ctx)
{
    nuri_status st = hub_fuzz_one(data, size);
    if (st == NURI_OK)
        ++*(int *)ctx;
    else if (st != NURI_ERR_NOT_FOUND) // a name that is a local path: no message by design
        CHECKF(nuri_last_error()[0] != 0, "%s failed without a message", path);
}

TEST(corpus_replays_cleanly)
{
    int parsed = 0;
    int files = test_each_file("fuzz/corpus/hub", replay, &parsed);
    printf("  %d corpus files: %d parsed, %d refused\n", files, parsed, files - parsed);
    CHECK(files >= 12);
    CHECK(parsed >= 6);
}

int main(void)
{
    RUN(corpus_replays_cleanly);
    TEST_DONE();
}
