/*
 * fuzz_grammar.c: libFuzzer target for grammars (grammar_fuzz_one.h): GBNF text (or a JSON
 * Schema) -> compiled grammar -> a matcher with tiny tables fed the text after a NUL byte, every
 * token mask checked against brute force. Build with `make fuzz`; run e.g.
 *   build-fuzz/fuzz_grammar -max_total_time=120 -max_len=4096 fuzz/corpus/grammar
 */
#include "grammar_fuzz_one.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    (void)grammar_fuzz_one(data, size);
    return 0;
}
