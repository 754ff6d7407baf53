/*
 * test.h: the tests' tiny harness. A test program defines TEST(name) functions, runs them with
 * RUN(name) from main, and ends with TEST_DONE(), which prints "N passed, N failed" (the line
 * tests/run.sh adds up) and returns non-zero if any failed.
 *
 * Each test's line gives its wall time ("ok   name (1.23 s)"): where CI's minutes go.
 * Tests run from the repository root; data lives in tests/data/ (see tests/data/README.md).
 */
#ifndef NURI_TEST_H
#define NURI_TEST_H

#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int test_passed, test_failed, test_cur_failed;

#define TEST(name) static void name(void)

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);             \
            test_cur_failed = 1;                                                                   \
        }                                                                                          \
    } while (0)

#define CHECKF(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "  %s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond);             \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            test_cur_failed = 1;                                                                   \
        }                                                                                          \
    } while (0)

/* Stops the current test (after a failed CHECK that later lines depend on). */
#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        CHECK(cond);                                                                               \
        if (test_cur_failed) return;                                                               \
    } while (0)

static inline void test_run(const char *name, void (*fn)(void))
{
    struct timespec t0, t1;
    test_cur_failed = 0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    fn();
    clock_gettime(CLOCK_MONOTONIC, &t1);
    const double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    if (test_cur_failed) {
        test_failed++;
        printf("FAIL %s (%.2f s)\n", name, s);
    } else {
        test_passed++;
        printf("ok   %s (%.2f s)\n", name, s);
    }
    fflush(stdout);
}

#define RUN(name) test_run(#name, name)

/* Reads a whole file into a buffer of exactly its size (so ASan sees any over-read). Caller frees;
 * NULL if it cannot be read. */
static inline uint8_t *test_read_file(const char *path, size_t *size)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *p = malloc(n > 0 ? (size_t)n : 1);
    *size = p ? fread(p, 1, n > 0 ? (size_t)n : 0, fp) : 0;
    fclose(fp);
    return p;
}

/* Calls fn on the bytes of every file in dir (names starting with '.' skipped): a fuzz corpus
 * replay. Returns the number of files, or -1 if dir cannot be opened. A file that cannot be read
 * fails the current test. */
static inline int
test_each_file(const char *dir,
               void (*fn)(const uint8_t *data, size_t size, const char *path, void *ctx), void *ctx)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    int files = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        size_t size;
        uint8_t *p = test_read_file(path, &size);
        CHECKF(p != NULL, "cannot read %s", path);
        if (!p) continue;
        files++;
        fn(p, size, path, ctx);
        free(p);
    }
    closedir(d);
    return files;
}

#define TEST_DONE()                                                                                \
    do {                                                                                           \
        printf("%d passed, %d failed\n", test_passed, test_failed);                                \
        return test_failed ? 1 : 0;                                                                \
    } while (0)

#endif
