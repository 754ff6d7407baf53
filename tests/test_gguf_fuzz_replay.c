/*
 * test_gguf_fuzz_replay.c: replays every file of the GGUF fuzz corpus (fuzz/corpus/gguf/) through
 * the same walk as the libFuzzer target (fuzz/gguf_walk.h), so that CI runs the corpus under ASan
 * and UBSan. Each file must either open and be walked completely, or fail with a message.
 */
#include "../fuzz/gguf_walk.h"
#include "test.h"

#include <dirent.h>

#define CORPUS_DIR "fuzz/corpus/gguf"

static void *read_file(const char *path, size_t *size)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    void *p = malloc(n > 0 ? (size_t)n : 1); // exact size: ASan sees any over-read
    *size = fread(p, 1, (size_t)n, fp);
    fclose(fp);
    return p;
}

TEST(corpus_replays_cleanly)
{
    DIR *d = opendir(CORPUS_DIR);
    REQUIRE(d != NULL);
    int files = 0, opened = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", CORPUS_DIR, e->d_name);
        size_t size;
        void *p = read_file(path, &size);
        CHECKF(p != NULL, "cannot read %s", path);
        if (!p) continue;
        uint64_t sum;
        files++;
        if (gguf_walk(p, size, &sum) == NURI_OK) opened++;
        free(p);
    }
    closedir(d);
    printf("  %d corpus files: %d opened, %d refused\n", files, opened, files - opened);
    CHECK(files >= 10);
    CHECK(opened >= 1);
}

int main(void)
{
    RUN(corpus_replays_cleanly);
    TEST_DONE();
}
