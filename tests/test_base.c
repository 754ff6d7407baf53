/* test_base.c: status messages, the text builder and the type table. */
#include "base/status.h"
#include "base/strbuf.h"
#include "kernels/types.h"
#include "test.h"

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

int main(void)
{
    RUN(error_message_is_kept_and_wrapped);
    RUN(type_row_bytes_checks_blocks_and_overflow);
    RUN(text_builder_grows_formats_and_compares);
    TEST_DONE();
}
