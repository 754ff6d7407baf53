/*
 * test_request_fuzz_replay.c: replays every file of the request fuzz corpus (fuzz/corpus/request/)
 * through the same steps as the libFuzzer target (fuzz/request_fuzz_one.h), so that CI runs it
 * under ASan and UBSan: each body is accepted or refused with an error object, never a crash.
 */
#include "../fuzz/request_fuzz_one.h"
#include "test.h"

#include <dirent.h>

#define CORPUS_DIR "fuzz/corpus/request"

TEST(corpus_replays_cleanly)
{
    DIR *d = opendir(CORPUS_DIR);
    REQUIRE(d != NULL);
    int files = 0, accepted = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", CORPUS_DIR, e->d_name);
        FILE *fp = fopen(path, "rb");
        CHECKF(fp != NULL, "cannot read %s", path);
        if (!fp) continue;
        fseek(fp, 0, SEEK_END);
        long n = ftell(fp);
        fseek(fp, 0, SEEK_SET);
        uint8_t *p = malloc(n > 0 ? (size_t)n : 1); // exact size: ASan sees any over-read
        size_t got = fread(p, 1, (size_t)n, fp);
        fclose(fp);
        files++;
        accepted += request_fuzz_one(p, got) > 0;
        free(p);
    }
    closedir(d);
    printf("  %d corpus files, %d accepted as a chat or completion request\n", files, accepted);
    CHECK(files >= 10);
    CHECK(accepted >= 3);
}

int main(void)
{
    RUN(corpus_replays_cleanly);
    TEST_DONE();
}
