/*
 * fuzz_template.c: libFuzzer target for the chat template engine (parse + render over a fixed
 * conversation, template_fuzz_one.h). Build with `make fuzz`; run e.g.
 *   build-fuzz/fuzz_template -max_total_time=120 -max_len=8192 -dict=fuzz/template.dict \
 *       fuzz/corpus/template
 */
#include "template_fuzz_one.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    (void)template_fuzz_one(data, size);
    return 0;
}
