/*
 * test_http_fuzz_replay.c: replays every file of the HTTP parser's fuzz corpus (fuzz/corpus/http/)
 * through the same steps as the libFuzzer target (fuzz/http_fuzz_one.h), so that CI runs it under
 * ASan and UBSan: each input is parsed or refused, never a crash or a broken promise.
 */
#include "../fuzz/http_fuzz_one.h"
#include "test.h"

static void replay(const uint8_t *data, size_t size, const char *path, void *ctx)
{
    (void)path;
    *(int *)ctx += http_fuzz_one(data, size);
}

TEST(corpus_replays_cleanly)
{
    int accepted = 0;
    int files = test_each_file("fuzz/corpus/http", replay, &accepted);
    printf("  %d corpus files, %d complete well-framed requests\n", files, accepted);
    CHECK(files >= 10);
    CHECK(accepted >= 3);
}

int main(void)
{
    RUN(corpus_replays_cleanly);
    TEST_DONE();
}
