/*
 * test_request_fuzz_replay.c: replays every file of the request fuzz corpus (fuzz/corpus/request/)
 * through the same steps as the libFuzzer target (fuzz/request_fuzz_one.h), so that CI runs it
 * under ASan and UBSan: each body is accepted or refused with an error object, never a crash.
 */
#include "../fuzz/request_fuzz_one.h"
#include "test.h"

static void replay(const uint8_t *data, size_t size, const char *path, void *ctx)
{
    (void)path;
    *(int *)ctx += request_fuzz_one(data, size) > 0;
}

TEST(corpus_replays_cleanly)
{
    int accepted = 0;
    int files = test_each_file("fuzz/corpus/request", replay, &accepted);
    printf("  %d corpus files, %d accepted as a chat or completion request\n", files, accepted);
    CHECK(files >= 10);
    CHECK(accepted >= 3);
}

int main(void)
{
    RUN(corpus_replays_cleanly);
    TEST_DONE();
}
