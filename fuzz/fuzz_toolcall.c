/*
 * fuzz_toolcall.c: libFuzzer target for the reply parser (tool calls and reasoning in generated
 * text; toolcall_fuzz_one.h). Build with `make fuzz`; run e.g.
 *   build-fuzz/fuzz_toolcall -max_total_time=120 -max_len=2048 -dict=fuzz/toolcall.dict \
 *       fuzz/corpus/toolcall
 */
#include "toolcall_fuzz_one.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    (void)toolcall_fuzz_one(data, size);
    return 0;
}
