/*
 * test_grammar_fuzz_replay.c: replays every file of the grammar fuzz corpus (fuzz/corpus/grammar/)
 * through the same steps as the libFuzzer target (fuzz/grammar_fuzz_one.h), so that CI runs it
 * under ASan and UBSan: each grammar compiles or fails with a message, and its matcher's masks
 * agree with brute force; nothing crashes.
 */
#include "../fuzz/grammar_fuzz_one.h"
#include "test.h"

static void replay(const uint8_t *data, size_t size, const char *path, void *ctx)
{
    nuri_status st = grammar_fuzz_one(data, size);
    if (st == NURI_OK)
        ++*(int *)ctx;
    else
        CHECKF(nuri_last_error()[0] != 0, "%s failed without a message", path);
}

TEST(corpus_replays_cleanly)
{
    int compiled = 0;
    int files = test_each_file("fuzz/corpus/grammar", replay, &compiled);
    printf("  %d corpus files: %d compiled, %d refused\n", files, compiled, files - compiled);
    CHECK(files >= 15);
    CHECK(compiled >= 8);
}

int main(void)
{
    RUN(corpus_replays_cleanly);
    TEST_DONE();
}
