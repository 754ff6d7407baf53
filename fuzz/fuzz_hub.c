/*
 * fuzz_hub.c: libFuzzer target for the hub's responses (file list, header lines) and model names
 * (hub_fuzz_one.h). Build with `make fuzz`; run e.g.
 *   build-fuzz/fuzz_hub -max_total_time=120 -max_len=4096 fuzz/corpus/hub
 */
#include "hub_fuzz_one.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    (void)hub_fuzz_one(data, size);
    return 0;
}
