/* test_kernels.c: F16/BF16 conversions, block layouts, and every kernel variant against the scalar
 * reference (kernels/kernels.h). */
#include "kernels/blocks.h"
#include "kernels/fp16.h"
#include "kernels/types.h"
#include "test.h"

#include <stdint.h>

TEST(f16_every_half_round_trips_exactly)
{
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = nuri_f16_to_f32((uint16_t)h);
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) { // NaN stays NaN (quieted)
            if (f == f || (nuri_f32_to_f16(f) & 0x7e00) != 0x7e00) bad++;
            continue;
        }
        if (nuri_f32_to_f16(f) != h) bad++;
    }
    CHECKF(bad == 0, "%d halves do not round-trip", bad);
}

TEST(f16_rounds_to_nearest_even)
{
    CHECK(nuri_f16_to_f32(0x3c00) == 1.0f);
    CHECK(nuri_f16_to_f32(0x0001) == 0x1p-24f);  // smallest subnormal
    CHECK(nuri_f16_to_f32(0x7bff) == 65504.0f);  // largest finite
    CHECK(nuri_f32_to_f16(1.0f + 0x1p-11f) == 0x3c00); // tie -> even (down)
    CHECK(nuri_f32_to_f16(1.0f + 3 * 0x1p-11f) == 0x3c02); // tie -> even (up)
    CHECK(nuri_f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f) == 0x3c01); // above tie
    CHECK(nuri_f32_to_f16(65519.0f) == 0x7bff);
    CHECK(nuri_f32_to_f16(65520.0f) == 0x7c00); // rounds to inf
    CHECK(nuri_f32_to_f16(-1e10f) == 0xfc00);
    CHECK(nuri_f32_to_f16(0x1p-25f) == 0x0000);             // tie between 0 and 2^-24 -> 0
    CHECK(nuri_f32_to_f16(0x1p-25f + 0x1p-35f) == 0x0001);  // just above the tie
    CHECK(nuri_f32_to_f16(3 * 0x1p-25f) == 0x0002);         // tie 1.5 units -> 2
    CHECK(nuri_f32_to_f16(0x1p-14f - 0x1p-25f) == 0x0400);  // rounds up into the normals
    CHECK(nuri_f32_to_f16(-0.0f) == 0x8000);
    CHECK(nuri_f32_to_f16(1e-30f) == 0x0000);
}

TEST(bf16_rounds_to_nearest_even_and_keeps_nan)
{
    CHECK(nuri_f32_to_bf16(1.0f) == 0x3f80);
    CHECK(nuri_f32_to_bf16(nuri_bits_to_f32(0x3f808000)) == 0x3f80); // tie -> even (down)
    CHECK(nuri_f32_to_bf16(nuri_bits_to_f32(0x3f818000)) == 0x3f82); // tie -> even (up)
    CHECK(nuri_f32_to_bf16(nuri_bits_to_f32(0x3f808001)) == 0x3f81);
    CHECK(nuri_f32_to_bf16(nuri_bits_to_f32(0x7f7fffff)) == 0x7f80); // max float -> inf
    uint16_t n = nuri_f32_to_bf16(nuri_bits_to_f32(0x7f800001)); // NaN with a low payload
    CHECK((n & 0x7f80) == 0x7f80 && (n & 0x7f) != 0);
    CHECK(nuri_bf16_to_f32(0xc000) == -2.0f);
}

TEST(block_sizes_match_the_type_table)
{
    CHECK(nuri_type_get(NURI_TYPE_Q4_0)->type_size == sizeof(nuri_block_q4_0));
    CHECK(nuri_type_get(NURI_TYPE_Q4_1)->type_size == sizeof(nuri_block_q4_1));
    CHECK(nuri_type_get(NURI_TYPE_Q5_0)->type_size == sizeof(nuri_block_q5_0));
    CHECK(nuri_type_get(NURI_TYPE_Q5_1)->type_size == sizeof(nuri_block_q5_1));
    CHECK(nuri_type_get(NURI_TYPE_Q8_0)->type_size == sizeof(nuri_block_q8_0));
    CHECK(nuri_type_get(NURI_TYPE_Q8_1)->type_size == sizeof(nuri_block_q8_1));
    CHECK(nuri_type_get(NURI_TYPE_Q2_K)->type_size == sizeof(nuri_block_q2_K));
    CHECK(nuri_type_get(NURI_TYPE_Q3_K)->type_size == sizeof(nuri_block_q3_K));
    CHECK(nuri_type_get(NURI_TYPE_Q4_K)->type_size == sizeof(nuri_block_q4_K));
    CHECK(nuri_type_get(NURI_TYPE_Q5_K)->type_size == sizeof(nuri_block_q5_K));
    CHECK(nuri_type_get(NURI_TYPE_Q6_K)->type_size == sizeof(nuri_block_q6_K));
    CHECK(nuri_type_get(NURI_TYPE_Q8_K)->type_size == sizeof(nuri_block_q8_K));
}

int main(void)
{
    RUN(f16_every_half_round_trips_exactly);
    RUN(f16_rounds_to_nearest_even);
    RUN(bf16_rounds_to_nearest_even_and_keeps_nan);
    RUN(block_sizes_match_the_type_table);
    TEST_DONE();
}
