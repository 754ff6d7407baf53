/* test_base.c: status messages, the text builder, the type table and the thread pool's shared
 * work. */
#include "base/status.h"
#include "base/strbuf.h"
#include "base/threadpool.h"
#include "kernels/types.h"
#include "test.h"

#include <stdatomic.h>
#include <time.h>

TEST(error_message_is_kept_and_wrapped)
{
    nuri_status s = nuri_error(NURI_ERR_FORMAT, "tensor '%s' is bad", "x");
    CHECK(s == NURI_ERR_FORMAT);
    CHECK(!strcmp(nuri_last_error(), "tensor 'x' is bad"));
    nuri_error_wrap(s, "file %s", "a.gguf");
    CHECK(!strcmp(nuri_last_error(), "file a.gguf: tensor 'x' is bad"));
}

TEST(type_row_bytes_checks_blocks_and_overflow)
{
    uint64_t b;
    CHECK(nuri_type_row_bytes(NURI_TYPE_Q4_K, 512, &b) && b == 288);
    CHECK(nuri_type_row_bytes(NURI_TYPE_F16, 3, &b) && b == 6);
    CHECK(!nuri_type_row_bytes(NURI_TYPE_Q4_0, 33, &b));
    CHECK(!nuri_type_row_bytes(NURI_TYPE_F32, UINT64_MAX, &b));
    CHECK(!nuri_type_row_bytes(4, 32, &b)); // id 4 is no longer a type
    CHECK(nuri_type_get(NURI_TYPE_COUNT) == NULL);
}

TEST(text_builder_grows_formats_and_compares)
{
    nuri_sb b = {0};
    CHECK(nuri_sb_is(&b, "") && nuri_sb_ends(&b, ""));
    for (int i = 0; i < 1000; i++) CHECK(nuri_sb_fmt(&b, "%03d,", i));
    CHECK(b.n == 4000 && b.cap > b.n && b.p[b.n] == 0 && !b.oom);
    CHECK(!strncmp(b.p, "000,001,", 8) && nuri_sb_ends(&b, "998,999,"));
    char big[700];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    CHECK(nuri_sb_fmt(&b, "[%s]", big)); // longer than the formatter's stack buffer
    CHECK(b.n == 4000 + 701 && nuri_sb_ends(&b, "xx]"));
    CHECK(nuri_sb_add(&b, "a\0b", 3) && b.n == 4704 && b.p[4702] == 0);
    nuri_sb_free(&b);
    CHECK(b.p == NULL && b.n == 0 && !b.oom);
    CHECK(nuri_sb_str(&b, "ab") && nuri_sb_is(&b, "ab") && !nuri_sb_is(&b, "a"));
    b.oom = true; // sticky: after a failure nothing more is appended
    CHECK(!nuri_sb_str(&b, "c") && nuri_sb_is(&b, "ab"));
    nuri_sb_free(&b);
}

/* A run of shared steps, lanes and tickets mixed, some empty, with no barrier between them: each
 * item is taken exactly once, and a thread that sleeps through its lane (50 ms, at a 300-item
 * step) has it taken by the others. */
enum { LANE_STEPS = 7, LANE_MAX_ITEMS = 300 };
static const long lane_sizes[LANE_STEPS] = {37, 0, 1, 300, 5, 64, 129};
static _Atomic int lane_taken[LANE_STEPS][LANE_MAX_ITEMS];
static _Atomic int lane_stolen; // items of thread 1's lanes taken by another thread

static void lanes_fn(void *arg, int ith, int nth)
{
    nuri_pool *pool = arg;
    long tickets = 0;
    nuri_lane_totals tot = {{0}};
    for (int st = 0; st < LANE_STEPS; st++) {
        nuri_lanes l;
        const long n = lane_sizes[st];
        const nuri_share s = st % 3 == 2 ? nuri_share_step(pool, &tickets, n)
                                         : nuri_share_lanes(pool, &tickets, &tot, &l, n, ith, nth);
        if (ith == 1 && st == 3) nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
        long b, e;
        nuri_split(n, 1, nth, &b, &e);
        for (long k; (k = nuri_share_take(&s)) >= 0;) {
            atomic_fetch_add(&lane_taken[st][k], 1);
            if (st == 3 && ith != 1 && k >= b && k < e) atomic_fetch_add(&lane_stolen, 1);
        }
    }
}

TEST(lanes_give_every_item_once_and_cover_a_sleeping_thread)
{
    nuri_pool *pool;
    CHECK(nuri_pool_new(4, &pool) == NURI_OK);
    for (int rep = 0; rep < 3; rep++) {
        memset(lane_taken, 0, sizeof lane_taken);
        atomic_store(&lane_stolen, 0);
        nuri_pool_run(pool, lanes_fn, pool);
        for (int st = 0; st < LANE_STEPS; st++)
            for (long k = 0; k < LANE_MAX_ITEMS; k++)
                CHECKF(atomic_load(&lane_taken[st][k]) == (k < lane_sizes[st]),
                       "run %d step %d item %ld taken %d times", rep, st, k,
                       atomic_load(&lane_taken[st][k]));
        CHECKF(atomic_load(&lane_stolen) > 0, "run %d: the sleeping thread's lane waited for it",
               rep);
    }
    nuri_pool_free(pool);
}

int main(void)
{
    RUN(error_message_is_kept_and_wrapped);
    RUN(type_row_bytes_checks_blocks_and_overflow);
    RUN(text_builder_grows_formats_and_compares);
    RUN(lanes_give_every_item_once_and_cover_a_sleeping_thread);
    TEST_DONE();
}
