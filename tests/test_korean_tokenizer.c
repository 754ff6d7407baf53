/*
 * test_korean_tokenizer.c: Korean text and Korean chat prompts through EXAONE 4.0's real tokenizer
 * give exactly the token ids that llama.cpp gives (and that an independent implementation of
 * Hugging Face's semantics gives), and those ids decode back to the same text.
 *
 * Data (origins and licence in tests/data/README.md and tests/data/templates-korean/README.md):
 *   tests/data/vocab/exaone4.gguf      EXAONE 4.0's vocabulary, merges, token types, special ids
 * and chat template, converted by tools/vocab_from_hf.py tests/data/vocab/exaone4.ids.json
 * {"cases": [{"name", "text", "parse_special", "ids"}, ...]}: llama.cpp's
 * llama_tokenize(add_special = false, parse_special) for each text (gen_exaone4_ids.mjs) The
 * "tpl-<case>" texts are the renderings of
 * tests/data/templates-korean/LGAI-EXAONE-EXAONE-4.0-1.2B.cases.json; here they are also rendered
 * from the GGUF file's own template and tokenized as a chat prompt is (nuri_chat_tokenize).
 */
#include "chat/conversation.h"
#include "chat/template.h"
#include "gguf/gguf.h"
#include "test.h"
#include "tokenizer/tokenizer.h"

#include <jansson.h>
#include <stdbool.h>
#include <time.h>

#define VOCAB "tests/data/vocab/exaone4.gguf"
#define IDS "tests/data/vocab/exaone4.ids.json"
#define CASES "tests/data/templates-korean/LGAI-EXAONE-EXAONE-4.0-1.2B.cases.json"

static gguf_file *file;
static nuri_vocab *vocab;
static json_t *oracle; // the "cases" array of IDS

static bool ids_equal(const int32_t *got, size_t n, json_t *want, const char *name)
{
    size_t k = 0;
    while (k < n && k < json_array_size(want) &&
           got[k] == json_integer_value(json_array_get(want, k)))
        k++;
    if (k == n && n == json_array_size(want)) return true;
    fprintf(stderr, "    %s: %zu ids, llama.cpp %zu; first difference at %zu: %d vs %lld\n", name,
            n, json_array_size(want), k, k < n ? got[k] : -1,
            (long long)json_integer_value(json_array_get(want, k)));
    return false;
}

/* The ids decoded by a streaming detokenizer that renders special tokens; caller frees. */
static char *detokenize(const int32_t *ids, size_t n, size_t *len)
{
    nuri_detok dt;
    if (nuri_detok_init(&dt, vocab, NURI_DETOK_SPECIAL) != NURI_OK) return NULL;
    size_t cap = 64, m = 0;
    char *s = malloc(cap);
    for (size_t i = 0; s && i <= n; i++) {
        size_t k;
        const char *p = i < n ? nuri_detok_feed(&dt, ids[i], &k) : nuri_detok_flush(&dt, &k);
        if (m + k + 1 > cap) {
            char *ns = realloc(s, cap = 2 * (m + k + 1));
            if (!ns) free(s);
            s = ns;
            if (!s) break;
        }
        memcpy(s + m, p, k);
        m += k;
    }
    nuri_detok_free(&dt);
    if (s) s[m] = 0;
    *len = m;
    return s;
}

/* The vocabulary is EXAONE 4.0's: as the model's tokenizer_config.json and config.json say. */
TEST(the_vocabulary_is_exaone_4s)
{
    CHECK(nuri_vocab_get_type(vocab) == NURI_VOCAB_BPE);
    CHECK(!strcmp(nuri_vocab_pre(vocab), "exaone4"));
    CHECK(nuri_vocab_n_tokens(vocab) == 102400);
    CHECK(nuri_vocab_bos(vocab) == 1 && nuri_vocab_find(vocab, "[BOS]", 5) == 1);
    CHECK(nuri_vocab_eos(vocab) == 361 && nuri_vocab_find(vocab, "[|endofturn|]", 13) == 361);
    CHECK(nuri_vocab_pad(vocab) == 0 && nuri_vocab_unk(vocab) == 3);
    CHECK(!nuri_vocab_add_bos(vocab) && !nuri_vocab_add_eos(vocab));
    CHECK(nuri_vocab_token_type(vocab, 360) == NURI_TOKEN_CONTROL);      // [|user|]
    CHECK(nuri_vocab_token_type(vocab, 356) == NURI_TOKEN_USER_DEFINED); // <think>
    CHECK(nuri_vocab_token_type(vocab, 4) == NURI_TOKEN_USER_DEFINED);   // 31 spaces
    CHECK(nuri_vocab_is_eog(vocab, 361));
    CHECK(nuri_vocab_warnings(vocab) == NULL);
}

/* Every text of the oracle file: the same ids as llama.cpp, and the ids decode to the text. */
TEST(korean_texts_tokenize_as_llama_cpp_and_decode_back)
{
    size_t i;
    json_t *c;
    int n_cases = 0, n_ids = 0;
    json_array_foreach(oracle, i, c)
    {
        const char *name = json_string_value(json_object_get(c, "name"));
        json_t *text = json_object_get(c, "text");
        unsigned flags =
            json_is_true(json_object_get(c, "parse_special")) ? NURI_TOK_PARSE_SPECIAL : 0;
        int32_t *ids = NULL;
        size_t n = 0;
        REQUIRE(nuri_tokenize(vocab, json_string_value(text), json_string_length(text), flags, &ids,
                              &n) == NURI_OK);
        CHECKF(ids_equal(ids, n, json_object_get(c, "ids"), name), "%s differs from llama.cpp",
               name);
        size_t len;
        char *back = detokenize(ids, n, &len);
        CHECKF(back && len == json_string_length(text) &&
                   !memcmp(back, json_string_value(text), len),
               "%s does not decode back to its text", name);
        free(back);
        free(ids);
        n_cases++;
        n_ids += (int)n;
    }
    CHECKF(n_cases >= 40, "only %d cases", n_cases);
    printf("  (%d texts, %d ids)\n", n_cases, n_ids);
}

static json_t *oracle_case(const char *name)
{
    size_t i;
    json_t *c;
    json_array_foreach(
        oracle, i, c) if (!strcmp(json_string_value(json_object_get(c, "name")), name)) return c;
    return NULL;
}

/* Each Korean conversation, rendered by the template stored in the GGUF file (with its tools and
 * template arguments) and tokenized as a chat prompt, gives llama.cpp's ids for jinja2's text. */
TEST(korean_chat_prompts_render_and_tokenize_as_the_authors_tooling)
{
    gguf_str src;
    REQUIRE(gguf_get_str(file, "tokenizer.chat_template", &src) == NURI_OK);
    nuri_chat_format *fmt = NULL;
    REQUIRE(nuri_chat_format_new(file, vocab, NULL, 0, &fmt) == NURI_OK);
    nuri_template *tpl = NULL;
    REQUIRE(nuri_template_parse(src.ptr, (size_t)src.len, &tpl) == NURI_OK);
    json_error_t je;
    json_t *cases = json_load_file(CASES, 0, &je);
    CHECKF(cases != NULL, "%s: %s", CASES, je.text);
    size_t i;
    json_t *c;
    int ran = 0;
    json_array_foreach(cases, i, c)
    {
        json_t *want = json_object_get(c, "expected");
        if (!json_is_string(want)) continue; // the case that expects an exception
        const char *name = json_string_value(json_object_get(c, "name"));
        struct tm now = {0};
        const char *ns = json_string_value(json_object_get(c, "now"));
        CHECK(ns && sscanf(ns, "%d-%d-%dT%d:%d:%d", &now.tm_year, &now.tm_mon, &now.tm_mday,
                           &now.tm_hour, &now.tm_min, &now.tm_sec) == 6);
        now.tm_year -= 1900;
        now.tm_mon -= 1;
        json_t *vars = nuri_template_vars(
            json_object_get(c, "messages"), json_object_get(c, "tools"),
            json_is_true(json_object_get(c, "add_generation_prompt")),
            json_string_value(json_object_get(c, "bos_token")),
            json_string_value(json_object_get(c, "eos_token")), json_object_get(c, "kwargs"));
        char *text = NULL;
        size_t len = 0;
        nuri_status st = nuri_template_render(tpl, vars, &now, &text, &len);
        json_decref(vars);
        CHECKF(st == NURI_OK && len == json_string_length(want) &&
                   !memcmp(text, json_string_value(want), len),
               "%s: rendering differs from jinja2 (%s)", name,
               st == NURI_OK ? "text" : nuri_last_error());
        char oname[128];
        snprintf(oname, sizeof oname, "tpl-%s", name);
        json_t *oc = oracle_case(oname);
        CHECKF(oc != NULL, "%s: no llama.cpp ids", oname);
        int32_t *ids = NULL;
        size_t n = 0;
        if (st == NURI_OK && oc && nuri_chat_tokenize(fmt, text, len, &ids, &n) == NURI_OK)
            CHECKF(ids_equal(ids, n, json_object_get(oc, "ids"), oname), "%s", oname);
        else
            CHECKF(false, "%s: not tokenized", oname);
        free(ids);
        free(text);
        ran++;
    }
    CHECKF(ran >= 14, "only %d conversations", ran);
    json_decref(cases);
    nuri_template_free(tpl);
    nuri_chat_format_free(fmt);
}

/* The turn markers of the chat prompt are single tokens, and [|endofturn|] (the file's EOS) ends
 * an answer; [|assistant|] and <think> do not. */
TEST(exaone_turn_markers_are_single_tokens_that_end_turns)
{
    nuri_chat_format *fmt = NULL;
    REQUIRE(nuri_chat_format_new(file, vocab, NULL, 0, &fmt) == NURI_OK);
    static const char *const markers[] = {"[|system|]", "[|user|]", "[|assistant|]",
                                          "[|endofturn|]", "[|tool|]"};
    for (size_t k = 0; k < sizeof markers / sizeof markers[0]; k++) {
        int32_t *ids = NULL;
        size_t n = 0;
        CHECK(nuri_chat_tokenize(fmt, markers[k], strlen(markers[k]), &ids, &n) == NURI_OK);
        CHECKF(n == 1 && ids[0] == nuri_vocab_find(vocab, markers[k], strlen(markers[k])), "%s",
               markers[k]);
        free(ids);
    }
    CHECK(nuri_chat_format_ends_turn(fmt, 361));
    CHECK(!nuri_chat_format_ends_turn(fmt, 359)); // [|assistant|]
    CHECK(!nuri_chat_format_ends_turn(fmt, 356)); // <think>
    nuri_chat_format_free(fmt);
}

int main(void)
{
    if (gguf_open(VOCAB, &file) != NURI_OK || nuri_vocab_load(file, &vocab) != NURI_OK) {
        fprintf(stderr, "%s: %s\n", VOCAB, nuri_last_error());
        return 1;
    }
    json_error_t je;
    json_t *root = json_load_file(IDS, 0, &je);
    oracle = json_object_get(root, "cases");
    if (!json_is_array(oracle)) {
        fprintf(stderr, "%s: %s\n", IDS, root ? "no cases" : je.text);
        return 1;
    }
    RUN(the_vocabulary_is_exaone_4s);
    RUN(korean_texts_tokenize_as_llama_cpp_and_decode_back);
    RUN(korean_chat_prompts_render_and_tokenize_as_the_authors_tooling);
    RUN(exaone_turn_markers_are_single_tokens_that_end_turns);
    json_decref(root);
    nuri_vocab_free(vocab);
    gguf_close(file);
    TEST_DONE();
}
