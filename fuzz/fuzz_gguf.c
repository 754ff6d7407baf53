/*
 * fuzz_gguf.c: libFuzzer target for the GGUF reader: bytes -> gguf_open_memory -> walk every kv,
 * array element and tensor (gguf_walk.h) -> close. Build with `make fuzz`; run e.g.
 *   build-fuzz/fuzz_gguf -max_total_time=180 -max_len=65536 fuzz/corpus/gguf
 */
#include "gguf_walk.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t sum;
    (void)gguf_walk(data, size, &sum);
    return 0;
}
