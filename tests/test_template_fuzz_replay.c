/*
 * test_template_fuzz_replay.c: replays every file of the template fuzz corpus
 * (fuzz/corpus/template/) through the same parse + render as the libFuzzer target
 * (fuzz/template_fuzz_one.h), so that CI runs the corpus under ASan and UBSan. Each file must
 * either render or fail with a message; none may crash.
 */
#include "../fuzz/template_fuzz_one.h"
#include "test.h"

#include <dirent.h>

#define CORPUS_DIR "fuzz/corpus/template"

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
    int files = 0, rendered = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", CORPUS_DIR, e->d_name);
        size_t size;
        void *p = read_file(path, &size);
        CHECKF(p != NULL, "cannot read %s", path);
        if (!p) continue;
        files++;
        nuri_status st = template_fuzz_one(p, size);
        if (st == NURI_OK)
            rendered++;
        else
            CHECKF(nuri_last_error()[0] != 0, "%s failed without a message", path);
        free(p);
    }
    closedir(d);
    printf("  %d corpus files: %d rendered, %d refused\n", files, rendered, files - rendered);
    CHECK(files >= 20);
    CHECK(rendered >= 10);
}

int main(void)
{
    RUN(corpus_replays_cleanly);
    TEST_DONE();
}
