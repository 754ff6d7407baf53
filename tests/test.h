/*
 * test.h: the tests' tiny harness. A test program defines TEST(name) functions, runs them with
 * RUN(name) from main, and ends with TEST_DONE(), which prints "N passed, N failed" (the line
 * tests/run.sh adds up) and returns non-zero if any failed.
 *
 * Tests run from the repository root; data lives in tests/data/ (see tests/data/README.md).
 */
#ifndef NURI_TEST_H
#define NURI_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    test_cur_failed = 0;
    fn();
    if (test_cur_failed) {
        test_failed++;
        printf("FAIL %s\n", name);
    } else {
        test_passed++;
        printf("ok   %s\n", name);
    }
    fflush(stdout);
}

#define RUN(name) test_run(#name, name)

#define TEST_DONE()                                                                                \
    do {                                                                                           \
        printf("%d passed, %d failed\n", test_passed, test_failed);                                \
        return test_failed ? 1 : 0;                                                                \
    } while (0)

#endif
