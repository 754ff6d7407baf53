/*
 * fuzz_request.c: libFuzzer target for the server's request bodies (request_fuzz_one.h): JSON
 * parsing, OpenAI parameter validation, message text extraction, UTF-8 clean-up. Build with
 * `make fuzz`; run e.g. build-fuzz/fuzz_request -max_total_time=120 -max_len=4096
 * fuzz/corpus/request
 */
#include "request_fuzz_one.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    (void)request_fuzz_one(data, size);
    return 0;
}
