/*
 * fuzz_http.c: libFuzzer target for the HTTP request parser (http_fuzz_one.h): request heads,
 * framing and chunked bodies. Build with `make fuzz`; run e.g.
 * build-fuzz/fuzz_http -max_total_time=120 -max_len=20000 fuzz/corpus/http
 */
#include "http_fuzz_one.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    (void)http_fuzz_one(data, size);
    return 0;
}
