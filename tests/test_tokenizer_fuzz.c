/*
 * test_tokenizer_fuzz.c: replays the tokenizer fuzz corpus (fuzz/corpus/tokenizer/) through the
 * fuzz target's checks (fuzz/fuzz_tokenizer.c), so that every input that once mattered stays
 * fixed, with or without libFuzzer.
 */
#define FUZZ_TOKENIZER_NO_MAIN
#include "../fuzz/fuzz_tokenizer.c"
#include "test.h"

static void replay(const uint8_t *data, size_t size, const char *path, void *ctx)
{
    (void)ctx;
    int rc = fuzz_tokenizer_one(data, size);
    CHECKF(rc == 0, "%s: property %d failed", path, rc);
}

TEST(fuzz_corpus_replays_clean)
{
    int n = test_each_file("fuzz/corpus/tokenizer", replay, NULL);
    CHECKF(n >= 10, "only %d corpus files", n);
    printf("  (%d corpus inputs)\n", n);
}

/* Every vocabulary/flag selector on a few fixed texts (so a fresh checkout covers them all). */
TEST(fuzz_selectors_on_fixed_texts)
{
    static const char *const texts[] = {"", "the thin 안녕 111 [U] <|im_start|>x<|im_end|>",
                                        "\xff\xfe\xed\xa0\x80 \xc0\x80 \xf4\x90\x80\x80 a",
                                        "  \n\t 한국 한국어\xEC\x95", "\xE2\x96\x81\xE2\x96\x81 x"};
    uint8_t buf[256];
    for (int sel = 0; sel < 64; sel++)
        for (size_t t = 0; t < sizeof texts / sizeof texts[0]; t++) {
            size_t len = strlen(texts[t]);
            buf[0] = (uint8_t)sel;
            memcpy(buf + 1, texts[t], len);
            int rc = fuzz_tokenizer_one(buf, len + 1);
            CHECKF(rc == 0, "selector %d text %zu: property %d", sel, t, rc);
        }
}

int main(void)
{
    RUN(fuzz_corpus_replays_clean);
    RUN(fuzz_selectors_on_fixed_texts);
    for (int i = 0; i <= FUZZ_N_BPE; i++) nuri_vocab_free(fuzz_vocabs[i]);
    TEST_DONE();
}
