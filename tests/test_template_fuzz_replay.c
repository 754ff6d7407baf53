/*
 * test_template_fuzz_replay.c: replays every file of the template fuzz corpus
 * (fuzz/corpus/template/) through the same parse + render as the libFuzzer target
 * (fuzz/template_fuzz_one.h), so that CI runs the corpus under ASan and UBSan. Each file must
 * either render or fail with a message; none may crash.
 */
#include "../fuzz/template_fuzz_one.h"
#include "test.h"

static void replay(const uint8_t *data, size_t size, const char *path, void *ctx)
{
    nuri_status st = template_fuzz_one(data, size);
    if (st == NURI_OK)
        ++*(int *)ctx;
    else
        CHECKF(nuri_last_error()[0] != 0, "%s failed without a message", path);
}

TEST(corpus_replays_cleanly)
{
    int rendered = 0;
    int files = test_each_file("fuzz/corpus/template", replay, &rendered);
    printf("  %d corpus files: %d rendered, %d refused\n", files, rendered, files - rendered);
    CHECK(files >= 20);
    CHECK(rendered >= 10);
}

int main(void)
{
    RUN(corpus_replays_cleanly);
    TEST_DONE();
}
