/* test_base.c: status messages and the type table. */
#include "base/status.h"
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

int main(void)
{
    RUN(error_message_is_kept_and_wrapped);
    RUN(type_row_bytes_checks_blocks_and_overflow);
    TEST_DONE();
}
