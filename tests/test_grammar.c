/*
 * test_grammar.c: GBNF grammars (grammar/grammar.h): the parser (good grammars, and errors with
 * their line and column), the matcher over code points fed as UTF-8 bytes (JSON accepted and
 * refused, characters split across calls, ill-formed UTF-8), the token filter on the real Qwen2
 * vocabulary (tokens spanning several grammar symbols, tokens that end inside a character, and the
 * mask compared with a brute-force check of every token on random states, also with tables so
 * small that they are emptied during the walk), and the grammar inside the sampler.
 *
 * The JSON grammar is grammars/json.gbnf; the vocabulary tests/data/vocab/ggml-vocab-qwen2.gguf.
 */
#include "grammar/grammar.h"
#include "sample/sampler.h"
#include "test.h"
#include "tokenizer/tokenizer.h"

#define QWEN2_VOCAB "tests/data/vocab/ggml-vocab-qwen2.gguf"
#define N_VOCAB 152064 // Qwen2's logits row (the vocabulary has 151936 tokens)

static nuri_grammar *parse_str(const char *text)
{
    nuri_grammar *g = NULL;
    if (nuri_grammar_parse(text, strlen(text), &g) != NURI_OK)
        fprintf(stderr, "  parse failed: %s\n", nuri_last_error());
    return g;
}

static nuri_grammar *json_grammar(void)
{
    size_t n;
    uint8_t *text = test_read_file("grammars/json.gbnf", &n);
    if (!text) return NULL;
    nuri_grammar *g = NULL;
    if (nuri_grammar_parse((const char *)text, n, &g) != NURI_OK)
        fprintf(stderr, "  json.gbnf: %s\n", nuri_last_error());
    free(text);
    return g;
}

/* Whether the grammar accepts the whole string as a complete sentence. */
static bool accepts(nuri_grammar *g, const char *s)
{
    nuri_grammar_matcher *m;
    if (nuri_grammar_matcher_new(g, NULL, NULL, &m) != NURI_OK) return false;
    bool ok =
        nuri_grammar_matcher_accept(m, s, strlen(s)) == NURI_OK && nuri_grammar_matcher_can_end(m);
    nuri_grammar_matcher_free(m);
    return ok;
}

/* ---- the parser ---- */

TEST(parses_the_json_grammar)
{
    nuri_grammar *g = json_grammar();
    REQUIRE(g != NULL);
    CHECK(nuri_grammar_n_rules(g) > 10);
    nuri_grammar_free(g);
}

TEST(parses_the_whole_syntax)
{
    const char *text = "# a comment line\r\n"
                       "root ::= greeting (\" \" name)? \"!\"{1,3} tail* # trailing comment\r\n"
                       "greeting ::= \"hi\" | \"hello\" |\n"
                       "    \"hey\"\n"
                       "name ::= [A-Z] [a-z\\-]+ | \"\\u00e9\\x41\\U0001F600\\\"\\\\\\t\"\n"
                       "tail ::= (\n"
                       "  [^\\n] | . # any\n"
                       ")\n"
                       "digits ::= [0-9]{2} [0-9]{2,} [0-9]{0,2}\n";
    nuri_grammar *g = parse_str(text);
    REQUIRE(g != NULL);
    CHECK(accepts(g, "hi!"));
    CHECK(accepts(g, "hey Ann!!!x"));
    CHECK(accepts(g, "hello \xc3\xa9"
                     "A\xf0\x9f\x98\x80\"\\\t!"));
    CHECK(!accepts(g, "hello"));       // {1,3}
    CHECK(!accepts(g, "hi ann!"));     // [A-Z]
    CHECK(accepts(g, "hi Jean-luc!")); // \- in a class
    nuri_grammar_free(g);
}

TEST(rules_may_be_used_before_they_are_defined)
{
    nuri_grammar *g = parse_str("root ::= a b\nb ::= \"2\"\na ::= \"1\"\n");
    REQUIRE(g != NULL);
    CHECK(accepts(g, "12"));
    nuri_grammar_free(g);
}

TEST(repetition_of_a_literal_repeats_the_whole_literal)
{
    nuri_grammar *g = parse_str("root ::= \"ab\"{2,3} \"c\"* \"d\"+ \"e\"?");
    REQUIRE(g != NULL);
    CHECK(accepts(g, "ababd"));
    CHECK(accepts(g, "abababccdde"));
    CHECK(!accepts(g, "abd"));
    CHECK(!accepts(g, "abbd"));
    CHECK(!accepts(g, "ababababd"));
    CHECK(!accepts(g, "ababc"));
    nuri_grammar_free(g);
}

TEST(character_classes_ranges_and_negation)
{
    nuri_grammar *g =
        parse_str("root ::= [a-c0-9_] [^a-z\"] [-x] [x-] [\\]] [\xea\xb0\x80-\xed\x9e\xa3]");
    REQUIRE(g != NULL);
    CHECK(accepts(g, "bQ-x]\xed\x95\x9c"));        // 한
    CHECK(accepts(g, "_\xc3\xa9x-]\xea\xb0\x80")); // é is not in a-z; 가
    CHECK(!accepts(g, "dQ-x]\xed\x95\x9c"));
    CHECK(!accepts(g, "bq-x]\xed\x95\x9c"));
    CHECK(!accepts(g, "b\"-x]\xed\x95\x9c"));
    CHECK(!accepts(g, "bQ-x]a"));
    nuri_grammar_free(g);
}

static void expect_error(const char *text, nuri_status want, const char *where, const char *what)
{
    nuri_grammar *g = (nuri_grammar *)1;
    nuri_status st = nuri_grammar_parse(text, strlen(text), &g);
    CHECKF(st == want, "%s: status %d, want %d (%s)", text, st, want, nuri_last_error());
    CHECK(g == NULL);
    CHECKF(strstr(nuri_last_error(), where) != NULL, "%s: message '%s' lacks '%s'", text,
           nuri_last_error(), where);
    CHECKF(strstr(nuri_last_error(), what) != NULL, "%s: message '%s' lacks '%s'", text,
           nuri_last_error(), what);
}

TEST(errors_say_where_and_why)
{
    expect_error("root ::= \"a\"\nfoo = \"b\"\n", NURI_ERR_FORMAT, "line 2, column 5", "'::='");
    expect_error("root ::= \"abc\n", NURI_ERR_FORMAT, "line 1, column 14", "line break");
    expect_error("root ::= \"abc", NURI_ERR_FORMAT, "line 1, column 10", "not closed");
    expect_error("root ::= [abc", NURI_ERR_FORMAT, "line 1, column 10", "not closed");
    expect_error("root ::= ( \"a\" ", NURI_ERR_FORMAT, "line 1, column 10", "not closed");
    expect_error("root ::= \"a\" )", NURI_ERR_FORMAT, "line 1, column 14", "')'");
    expect_error("root ::= x\n", NURI_ERR_FORMAT, "line 1, column 10", "'x' is used but never");
    expect_error("a ::= \"a\"\n", NURI_ERR_FORMAT, "line 2, column 1", "no rule named 'root'");
    expect_error("root ::= \"a\"\nroot ::= \"b\"\n", NURI_ERR_FORMAT, "line 2, column 1",
                 "already defined on line 1");
    expect_error("root ::= \"\\q\"", NURI_ERR_FORMAT, "column 11", "unknown escape");
    expect_error("root ::= \"\\x4\"", NURI_ERR_FORMAT, "column 14", "hex digits");
    expect_error("root ::= \"\\U00110000\"", NURI_ERR_FORMAT, "column 21", "past U+10FFFF");
    expect_error("root ::= [z-a]", NURI_ERR_FORMAT, "column 11", "backwards");
    expect_error("root ::= * \"a\"", NURI_ERR_FORMAT, "column 10", "nothing before it");
    expect_error("root ::= \"a\"{3,2}", NURI_ERR_FORMAT, "column 13", "below the minimum");
    expect_error("root ::= \"a\"{x}", NURI_ERR_FORMAT, "column 14", "expected a number");
    expect_error("root ::= \"a\"{1;2}", NURI_ERR_FORMAT, "column 15", "',' or '}'");
    expect_error("root ::= <think>", NURI_ERR_FORMAT, "column 10", "token references");
    expect_error("root ::= \"\xc3\xa9\" \xff", NURI_ERR_FORMAT, "line 1, column 14", "byte 0xFF");
    expect_error("root ::= \"\xc0\xaf\"", NURI_ERR_FORMAT, "column 11", "ill-formed UTF-8");
    expect_error("# \xed\x95\x9c\xea\xb8\x80\nroot ::= \"a\" ?? !", NURI_ERR_FORMAT,
                 "line 2, column 17", "token references");
    expect_error("root ::= root \"a\" | \"b\"", NURI_ERR_FORMAT, "line 1, column 1",
                 "'root' is left-recursive");
    expect_error("root ::= x\nx ::= y? \"a\"\ny ::= \"b\"? x\n", NURI_ERR_FORMAT, "line",
                 "left-recursive");
    expect_error("root ::= (\"\")*", NURI_ERR_FORMAT, "line 1", "left-recursive");
    const char nul[] = "root ::= \"a\"\0";
    nuri_grammar *g = NULL;
    CHECK(nuri_grammar_parse(nul, sizeof nul - 1, &g) == NURI_ERR_FORMAT);
    CHECK(strstr(nuri_last_error(), "NUL") != NULL);
}

TEST(limits_are_errors_not_crashes)
{
    expect_error("root ::= \"a\"{10001}", NURI_ERR_LIMIT, "column 14", "limit of 10000");
    expect_error("root ::= \"a\"{0,10001}", NURI_ERR_LIMIT, "column 16", "limit of 10000");
    // 10000 copies of a 200-character literal: 2M symbols
    char big[400];
    memset(big, 0, sizeof big);
    strcpy(big, "root ::= \"");
    memset(big + 10, 'x', 200);
    strcat(big, "\"{10000}");
    expect_error(big, NURI_ERR_LIMIT, "column", "symbols");
    char deep[1024] = "root ::= ";
    for (int i = 0; i < 70; i++) strcat(deep, "(");
    strcat(deep, "\"a\"");
    for (int i = 0; i < 70; i++) strcat(deep, ")");
    expect_error(deep, NURI_ERR_LIMIT, "column 74", "nested deeper");
    nuri_grammar *g;
    CHECK(nuri_grammar_parse("root ::= \"a\"", NURI_GRAMMAR_MAX_TEXT + 1ull, &g) == NURI_ERR_LIMIT);
    // nested repetitions grow the grammar by sums, not products (each level is one rule)...
    g = parse_str("root ::= ((\"a\"{0,10}){0,10}){0,10} \"b\"");
    REQUIRE(g != NULL);
    CHECK(nuri_grammar_n_elems(g) < 200);
    CHECK(accepts(g, "aaaab"));
    nuri_grammar_free(g);
    // ...but matching them is ambiguous: "a"^k splits across the levels in many ways, each a
    // stack of its own. Too many for the matcher's tables is a limit error.
    g = parse_str("root ::= ((\"a\"{0,100}){0,100}){0,100} \"b\"");
    REQUIRE(g != NULL);
    nuri_grammar_matcher *m = NULL;
    nuri_status st = nuri_grammar_matcher_new(g, NULL, NULL, &m);
    if (st == NURI_OK) st = nuri_grammar_matcher_accept(m, "aaaaaaaa", 8);
    CHECK(st == NURI_ERR_LIMIT);
    CHECK(strstr(nuri_last_error(), "stack nodes") != NULL);
    nuri_grammar_matcher_free(m);
    nuri_grammar_free(g);
}

/* ---- the matcher ---- */

static const char *json_good[] = {
    "{}",
    "[]",
    "0",
    "-0.5e+10",
    "\"\"",
    "true",
    "null",
    "{\"a\": 1, \"b\": [true, false, null], \"c\": {\"d\": \"e\"}}",
    "[1, 2.25, -3e-2, \"x\\n\\t\\\"\\\\\\/\\u00e9\\uD7FF\"]",
    "{\n  \"name\": \"\xed\x95\x9c\xea\xb8\x80 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80\",\n  "
    "\"n\": 12\n}",
    "[[[[[]]]]]",
    "{\"a\":{\"b\":{\"c\":[{}]}}}",
};

static const char *json_bad[] = {
    "{",
    "{\"a\"}",
    "{a: 1}",
    "[1,]",
    "[1 2]",
    "01",
    "1.",
    ".5",
    "+1",
    "\"\\x\"",
    "\"\\ud800\"", // a surrogate escape: refused on purpose
    "\"a\nb\"",    // a raw line break inside a string
    "tru",
    "{} ",                  // nothing after the value
    "[1,   2]",             // three blanks: more whitespace than allowed
    "12345678901234567",    // 17 digits
    "\"\xc3\"",             // a cut-off character
    "\"\xe0\x80\xaf\"",     // an overlong form
    "\"\xed\xa0\x80\"",     // a surrogate in UTF-8
    "\"\xf4\x90\x80\x80\"", // past U+10FFFF
    "\"\x80\"",             // a stray continuation byte
};

TEST(json_grammar_accepts_valid_json_and_refuses_the_rest)
{
    nuri_grammar *g = json_grammar();
    REQUIRE(g != NULL);
    for (size_t i = 0; i < sizeof json_good / sizeof *json_good; i++)
        CHECKF(accepts(g, json_good[i]), "refused %s", json_good[i]);
    for (size_t i = 0; i < sizeof json_bad / sizeof *json_bad; i++)
        CHECKF(!accepts(g, json_bad[i]), "accepted %s", json_bad[i]);
    nuri_grammar_free(g);
}

TEST(bytes_may_arrive_in_any_split)
{
    nuri_grammar *g = json_grammar();
    REQUIRE(g != NULL);
    const char *s = json_good[9];
    size_t n = strlen(s);
    nuri_grammar_matcher *m;
    REQUIRE(nuri_grammar_matcher_new(g, NULL, NULL, &m) == NURI_OK);
    for (size_t cut = 0; cut <= n; cut++) { // two pieces, every cut (inside characters too)
        nuri_grammar_matcher_reset(m);
        CHECK(nuri_grammar_matcher_accept(m, s, cut) == NURI_OK);
        CHECK(nuri_grammar_matcher_accept(m, s + cut, n - cut) == NURI_OK);
        CHECK(nuri_grammar_matcher_can_end(m));
    }
    nuri_grammar_matcher_reset(m); // one byte at a time
    for (size_t i = 0; i < n; i++) CHECK(nuri_grammar_matcher_accept(m, s + i, 1) == NURI_OK);
    CHECK(nuri_grammar_matcher_can_end(m));
    nuri_grammar_matcher_free(m);
    nuri_grammar_free(g);
}

TEST(a_partial_character_is_refused_as_soon_as_it_cannot_match)
{
    nuri_grammar *g =
        parse_str("root ::= \"\\\"\" [\xea\xb0\x80-\xed\x9e\xa3]+ \"\\\"\""); // Hangul
    REQUIRE(g != NULL);
    nuri_grammar_matcher *m;
    REQUIRE(nuri_grammar_matcher_new(g, NULL, NULL, &m) == NURI_OK);
    REQUIRE(nuri_grammar_matcher_accept(m, "\"", 1) == NURI_OK);
    CHECK(nuri_grammar_matcher_check(m, "\xe4", 1) == NURI_ERR_INVALID_ARG);     // U+4000-4FFF
    CHECK(nuri_grammar_matcher_check(m, "\xea", 1) == NURI_OK);                  // U+A000-AFFF
    CHECK(nuri_grammar_matcher_check(m, "\xea\xaf", 2) == NURI_ERR_INVALID_ARG); // U+ABC0-ABFF
    CHECK(nuri_grammar_matcher_check(m, "\xea\xb0", 2) == NURI_OK);
    CHECK(nuri_grammar_matcher_check(m, "\xed\x9f", 2) == NURI_ERR_INVALID_ARG); // past U+D7A3
    CHECK(nuri_grammar_matcher_check(m, "\xed\xa0", 2) == NURI_ERR_INVALID_ARG); // surrogates
    CHECK(nuri_grammar_matcher_check(m, "a", 1) == NURI_ERR_INVALID_ARG);
    REQUIRE(nuri_grammar_matcher_accept(m, "\xed\x95", 2) == NURI_OK); // half of 한
    CHECK(!nuri_grammar_matcher_can_end(m));
    CHECK(nuri_grammar_matcher_can_continue(m));
    CHECK(nuri_grammar_matcher_accept(m, "\"", 1) == NURI_ERR_INVALID_ARG);
    REQUIRE(nuri_grammar_matcher_accept(m, "\x9c\"", 2) == NURI_OK);
    CHECK(nuri_grammar_matcher_can_end(m));
    CHECK(!nuri_grammar_matcher_can_continue(m)); // the grammar is complete
    nuri_grammar_matcher_free(m);
    nuri_grammar_free(g);
}

TEST(a_refused_text_leaves_the_state_unchanged)
{
    nuri_grammar *g = json_grammar();
    REQUIRE(g != NULL);
    nuri_grammar_matcher *m;
    REQUIRE(nuri_grammar_matcher_new(g, NULL, NULL, &m) == NURI_OK);
    REQUIRE(nuri_grammar_matcher_accept(m, "[1", 2) == NURI_OK);
    CHECK(nuri_grammar_matcher_accept(m, ", 2x", 4) == NURI_ERR_INVALID_ARG);
    CHECK(strstr(nuri_last_error(), "byte 3") != NULL);
    REQUIRE(nuri_grammar_matcher_accept(m, ", 3]", 4) == NURI_OK);
    CHECK(nuri_grammar_matcher_can_end(m));
    nuri_grammar_matcher_free(m);
    nuri_grammar_free(g);
}

TEST(ambiguous_grammars_stay_small)
{
    // 40 optional x in a row, the pattern llama.cpp's docs warn about: the stacks merge
    char text[512] = "root ::= ";
    for (int i = 0; i < 40; i++) strcat(text, "x? ");
    strcat(text, "\"!\"\nx ::= \"a\" | \"a\" \"a\"\n");
    nuri_grammar *g = parse_str(text);
    REQUIRE(g != NULL);
    CHECK(accepts(g, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!"));
    char many[100];
    memset(many, 'a', 81);
    strcpy(many + 81, "!");
    CHECK(!accepts(g, many));
    nuri_grammar_free(g);
}

TEST(tiny_tables_are_emptied_and_refilled_without_changing_results)
{
    nuri_grammar *g = json_grammar();
    REQUIRE(g != NULL);
    nuri_grammar_matcher_params small = {.max_stacks = 64, .max_states = 16};
    nuri_grammar_matcher *m;
    REQUIRE(nuri_grammar_matcher_new(g, NULL, &small, &m) == NURI_OK);
    for (size_t i = 0; i < sizeof json_good / sizeof *json_good; i++) {
        nuri_grammar_matcher_reset(m);
        const char *s = json_good[i];
        bool ok = true;
        for (size_t k = 0; s[k] && ok; k++)
            ok = nuri_grammar_matcher_accept(m, s + k, 1) == NURI_OK;
        CHECKF(ok && nuri_grammar_matcher_can_end(m), "refused %s", s);
    }
    nuri_grammar_matcher_stats st;
    nuri_grammar_matcher_get_stats(m, &st);
    CHECK(st.flushes > 0);
    // deeper than 64 stack nodes can hold: a clear limit error, not a crash
    char deep[200];
    memset(deep, '[', 150);
    deep[150] = 0;
    nuri_grammar_matcher_reset(m);
    CHECK(nuri_grammar_matcher_accept(m, deep, 150) == NURI_ERR_LIMIT);
    CHECK(strstr(nuri_last_error(), "stack nodes") != NULL);
    nuri_grammar_matcher_reset(m);
    CHECK(nuri_grammar_matcher_accept(m, "[1]", 3) == NURI_OK);
    nuri_grammar_matcher_free(m);
    nuri_grammar_free(g);
}

/* ---- the token filter on a real vocabulary ---- */

static nuri_vocab *qwen2;
static nuri_token_trie *qwen2_trie;

static bool load_qwen2(void)
{
    if (qwen2_trie) return true;
    gguf_file *f;
    if (gguf_open(QWEN2_VOCAB, &f) != NURI_OK) return false;
    nuri_status st = nuri_vocab_load(f, &qwen2);
    gguf_close(f);
    if (st != NURI_OK) return false;
    return nuri_token_trie_new(qwen2, N_VOCAB, &qwen2_trie) == NURI_OK;
}

static bool bit(const uint32_t *mask, int32_t id)
{
    return (mask[id >> 5] >> (id & 31)) & 1;
}

static int32_t token_of(const char *text)
{
    int32_t id = nuri_vocab_find(qwen2, text, strlen(text));
    if (id < 0) fprintf(stderr, "  no token '%s' in the vocabulary\n", text);
    return id;
}

TEST(tokens_spanning_several_symbols_are_allowed_whole)
{
    REQUIRE(load_qwen2());
    nuri_grammar *g = json_grammar();
    REQUIRE(g != NULL);
    nuri_grammar_matcher *m;
    REQUIRE(nuri_grammar_matcher_new(g, qwen2_trie, NULL, &m) == NURI_OK);
    nuri_grammar_free(g); // the matcher holds its own reference
    const uint32_t *mask;
    REQUIRE(nuri_grammar_matcher_mask(m, &mask) == NURI_OK);
    int32_t brace_quote = token_of("{\""), close = token_of("}"), brace = token_of("{");
    int32_t brackets = token_of("[["), letter = token_of("a"), eos = nuri_vocab_eos(qwen2);
    REQUIRE(brace_quote >= 0 && close >= 0 && brace >= 0 && brackets >= 0 && letter >= 0);
    CHECK(bit(mask, brace_quote));
    CHECK(bit(mask, brace));
    CHECK(bit(mask, brackets));
    CHECK(!bit(mask, close));
    CHECK(bit(mask, token_of("\"}"))); // a string that starts with '}'
    CHECK(!bit(mask, letter));
    CHECK(eos >= 0 && !bit(mask, eos)); // nothing written yet: the grammar cannot end
    for (int32_t id = 151936; id < N_VOCAB; id++) CHECK(!bit(mask, id)); // past the vocabulary
    REQUIRE(nuri_grammar_matcher_accept_token(m, brace_quote) == NURI_OK);
    REQUIRE(nuri_grammar_matcher_mask(m, &mask) == NURI_OK);
    CHECK(bit(mask, letter));
    CHECK(bit(mask, token_of("\":")));
    CHECK(bit(mask, brace));                 // inside the key: '{' is a character like any other
    CHECK(!bit(mask, token_of("\xc4\x8a"))); // but not a raw line break ("Ċ" is "\n")
    REQUIRE(nuri_grammar_matcher_accept(m, "k\": [1]", 7) == NURI_OK);
    REQUIRE(nuri_grammar_matcher_mask(m, &mask) == NURI_OK);
    CHECK(bit(mask, token_of("}")));
    CHECK(!bit(mask, eos));
    REQUIRE(nuri_grammar_matcher_accept_token(m, token_of("}")) == NURI_OK);
    REQUIRE(nuri_grammar_matcher_mask(m, &mask) == NURI_OK);
    CHECK(bit(mask, eos)); // complete: only end tokens remain
    int allowed = 0;
    for (int32_t id = 0; id < N_VOCAB; id++) allowed += bit(mask, id);
    CHECK(allowed >= 1 && allowed <= 8);
    CHECK(nuri_grammar_matcher_accept_token(m, eos) == NURI_OK);
    nuri_grammar_matcher_free(m);
}

/* Tokens of the Qwen2 vocabulary around a split character: " \xe2\x80" (a blank and two of the
 * three bytes of U+2000-U+203F), one that starts with a continuation byte and then starts a new
 * character, and one made of two continuation bytes (which can never follow a 2-of-3 prefix). */
static void find_split_tokens(int32_t *ends_inside, int32_t *completes, int32_t *too_many)
{
    *ends_inside = *completes = *too_many = -1;
    for (int32_t id = 0; id < 151936; id++) {
        size_t len;
        const unsigned char *s = (const unsigned char *)nuri_token_trie_text(qwen2_trie, id, &len);
        if (len == 3 && !memcmp(s, " \xe2\x80", 3)) *ends_inside = id;
        if (*completes < 0 && len >= 2 && (s[0] & 0xC0) == 0x80 && s[1] >= 0xE0 && s[1] <= 0xEF)
            *completes = id;
        if (*too_many < 0 && len == 2 && (s[0] & 0xC0) == 0x80 && (s[1] & 0xC0) == 0x80)
            *too_many = id;
    }
}

TEST(tokens_that_split_a_character_are_followed_through)
{
    REQUIRE(load_qwen2());
    int32_t ends_inside, completes, too_many;
    find_split_tokens(&ends_inside, &completes, &too_many);
    REQUIRE(ends_inside >= 0 && completes >= 0 && too_many >= 0);
    nuri_grammar *g = json_grammar();
    REQUIRE(g != NULL);
    nuri_grammar_matcher *m;
    REQUIRE(nuri_grammar_matcher_new(g, qwen2_trie, NULL, &m) == NURI_OK);
    nuri_grammar_free(g);
    const uint32_t *mask;
    REQUIRE(nuri_grammar_matcher_accept(m, "[\"", 2) == NURI_OK);
    REQUIRE(nuri_grammar_matcher_mask(m, &mask) == NURI_OK);
    CHECK(bit(mask, ends_inside));
    CHECK(!bit(mask, completes)); // a continuation byte cannot start a character
    REQUIRE(nuri_grammar_matcher_accept_token(m, ends_inside) == NURI_OK);
    CHECK(!nuri_grammar_matcher_can_end(m));
    REQUIRE(nuri_grammar_matcher_mask(m, &mask) == NURI_OK);
    // now only tokens that start with the one missing continuation byte
    int32_t n_allowed = 0;
    for (int32_t id = 0; id < N_VOCAB; id++) {
        if (!bit(mask, id)) continue;
        n_allowed++;
        size_t len;
        const char *s = nuri_token_trie_text(qwen2_trie, id, &len);
        CHECKF(len > 0 && ((unsigned char)s[0] & 0xC0) == 0x80 &&
                   (len == 1 || ((unsigned char)s[1] & 0xC0) != 0x80),
               "token %d allowed", id);
    }
    CHECK(n_allowed > 0);
    CHECK(bit(mask, completes));
    CHECK(!bit(mask, too_many));
    CHECK(!bit(mask, token_of("\"")));
    REQUIRE(nuri_grammar_matcher_accept_token(m, completes) == NURI_OK);
    nuri_grammar_matcher_free(m);
}

/* The mask must equal, token by token, "feeding the token's text would succeed". */
static int compare_with_brute_force(nuri_grammar_matcher *m)
{
    const uint32_t *mask;
    if (nuri_grammar_matcher_mask(m, &mask) != NURI_OK) {
        fprintf(stderr, "  mask: %s\n", nuri_last_error());
        return -1;
    }
    uint32_t *copy = malloc(sizeof *copy * (N_VOCAB / 32));
    memcpy(copy, mask, sizeof *copy * (N_VOCAB / 32));
    int diffs = 0;
    bool can_end = nuri_grammar_matcher_can_end(m);
    for (int32_t id = 0; id < N_VOCAB; id++) {
        size_t len;
        const char *s = nuri_token_trie_text(qwen2_trie, id, &len);
        bool want;
        if (nuri_token_trie_is_end(qwen2_trie, id))
            want = can_end;
        else
            want = len > 0 && nuri_grammar_matcher_check(m, s, len) == NURI_OK;
        if (want != bit(copy, id)) {
            if (diffs++ < 5)
                fprintf(stderr, "  token %d: mask %d, brute force %d\n", id, !want, want);
        }
    }
    free(copy);
    return diffs;
}

static uint64_t rng = 0x1234567;
static uint32_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

/* Walks random allowed tokens from the start, comparing the mask with brute force at every step. */
static void random_walk_against_brute_force(const nuri_grammar_matcher_params *params, int steps)
{
    nuri_grammar *g = json_grammar();
    REQUIRE(g != NULL);
    nuri_grammar_matcher *m;
    REQUIRE(nuri_grammar_matcher_new(g, qwen2_trie, params, &m) == NURI_OK);
    nuri_grammar_free(g);
    int32_t *allowed = malloc(sizeof *allowed * N_VOCAB);
    int total_diffs = 0, states = 0;
    const char *prefix = "{\"k\": ["; // start inside containers, not in one long string
    REQUIRE(nuri_grammar_matcher_accept(m, prefix, strlen(prefix)) == NURI_OK);
    for (int step = 0; step < steps; step++) {
        int d = compare_with_brute_force(m);
        CHECKF(d == 0, "step %d: %d tokens differ", step, d);
        total_diffs += d;
        states++;
        const uint32_t *mask;
        REQUIRE(nuri_grammar_matcher_mask(m, &mask) == NURI_OK);
        int32_t n = 0;
        for (int32_t id = 0; id < N_VOCAB; id++)
            if (bit(mask, id) && !nuri_token_trie_is_end(qwen2_trie, id)) allowed[n++] = id;
        if (n == 0) { // complete: start over
            nuri_grammar_matcher_reset(m);
            REQUIRE(nuri_grammar_matcher_accept(m, prefix, strlen(prefix)) == NURI_OK);
            continue;
        }
        // every other step, a token without letters, so the walk also visits objects, arrays
        // and numbers rather than staying inside one long string
        int32_t pick = allowed[next_rand() % (uint32_t)n];
        for (int tries = 0; step % 3 && tries < 5000; tries++) {
            size_t len;
            const char *t = nuri_token_trie_text(qwen2_trie, pick, &len);
            bool structure = len <= 2;
            for (size_t k = 0; k < len; k++)
                structure &= strchr("\"{}[],:0123456789 -.e", t[k]) != NULL;
            if (structure) break;
            pick = allowed[next_rand() % (uint32_t)n];
        }
        REQUIRE(nuri_grammar_matcher_accept_token(m, pick) == NURI_OK);
        size_t len;
        const char *t = nuri_token_trie_text(qwen2_trie, pick, &len);
        if (getenv("GRAMMAR_TEST_VERBOSE")) printf("%.*s", (int)len, t);
    }
    nuri_grammar_matcher_stats st;
    nuri_grammar_matcher_get_stats(m, &st);
    printf("  %d states compared, %llu masks (%llu cached), %llu flushes\n", states,
           (unsigned long long)st.masks, (unsigned long long)st.mask_hits,
           (unsigned long long)st.flushes);
    if (params) CHECK(st.flushes > 0);
    CHECK(total_diffs == 0);
    free(allowed);
    nuri_grammar_matcher_free(m);
}

TEST(mask_equals_brute_force_on_random_states)
{
    REQUIRE(load_qwen2());
    random_walk_against_brute_force(NULL, 60);
}

TEST(mask_equals_brute_force_when_tables_are_emptied_mid_walk)
{
    REQUIRE(load_qwen2());
    // 16 states is raised to the longest token + 64 (a walk keeps one state per depth)
    nuri_grammar_matcher_params small = {.max_stacks = 96, .max_states = 16, .n_masks = 1};
    random_walk_against_brute_force(&small, 30);
}

TEST(json_strings_reuse_their_mask)
{
    REQUIRE(load_qwen2());
    nuri_grammar *g = json_grammar();
    REQUIRE(g != NULL);
    nuri_grammar_matcher *m;
    REQUIRE(nuri_grammar_matcher_new(g, qwen2_trie, NULL, &m) == NURI_OK);
    nuri_grammar_free(g);
    const uint32_t *mask;
    REQUIRE(nuri_grammar_matcher_accept(m, "[\"", 2) == NURI_OK);
    const char *words[] = {"hello", " world", ",", " \xed\x95\x9c", "\xea\xb8\x80", " and"};
    for (int i = 0; i < 6; i++) {
        REQUIRE(nuri_grammar_matcher_mask(m, &mask) == NURI_OK);
        REQUIRE(nuri_grammar_matcher_accept(m, words[i], strlen(words[i])) == NURI_OK);
    }
    nuri_grammar_matcher_stats st;
    nuri_grammar_matcher_get_stats(m, &st);
    CHECK(st.masks == 6);
    CHECK(st.mask_hits == 5); // inside the string the state repeats
    nuri_grammar_matcher_free(m);
}

/* ---- in the sampler ---- */

TEST(sampler_samples_only_what_the_grammar_allows_and_stops_when_it_is_complete)
{
    REQUIRE(load_qwen2());
    nuri_grammar *g = parse_str("root ::= \"{\\\"n\\\": \" [1-9] [0-9]{0,3} \"}\"");
    REQUIRE(g != NULL);
    nuri_sampler_params p = nuri_sampler_params_default();
    p.grammar = g;
    p.grammar_tokens = qwen2_trie;
    p.top_k = 40;
    float *logits = malloc(sizeof *logits * N_VOCAB);
    for (int seed = 0; seed < 5; seed++) {
        p.seed = (uint64_t)seed;
        nuri_sampler *s;
        REQUIRE(nuri_sampler_new(&p, N_VOCAB, &s) == NURI_OK);
        char out[256];
        size_t len = 0;
        nuri_finish_reason fr = NURI_FINISH_NONE;
        for (int k = 0; k < 50 && fr == NURI_FINISH_NONE; k++) {
            for (int32_t i = 0; i < N_VOCAB; i++) logits[i] = (float)(next_rand() % 1000) / 100.0f;
            int32_t tok;
            REQUIRE(nuri_sampler_sample(s, logits, &tok, NULL) == NURI_OK);
            REQUIRE(nuri_sampler_accept(s, tok) == NURI_OK);
            fr = nuri_sampler_finish_reason(s, tok);
            size_t n;
            const char *t = nuri_token_trie_text(qwen2_trie, tok, &n);
            if (len + n < sizeof out) memcpy(out + len, t, n), len += n;
        }
        out[len] = 0;
        CHECKF(fr == NURI_FINISH_GRAMMAR, "seed %d: finish %d after '%s'", seed, fr, out);
        CHECKF(len >= 8 && !strncmp(out, "{\"n\": ", 6) && out[len - 1] == '}', "seed %d: %s", seed,
               out);
        nuri_sampler_free(s);
    }
    nuri_grammar_free(g);
    free(logits);
}

TEST(sampler_refuses_a_token_the_grammar_does_not_allow)
{
    REQUIRE(load_qwen2());
    nuri_grammar *g = parse_str("root ::= \"yes\" | \"no\"");
    REQUIRE(g != NULL);
    nuri_sampler_params p = nuri_sampler_params_default();
    p.grammar = g;
    p.grammar_tokens = qwen2_trie;
    p.temperature = 0; // greedy: the best allowed token
    nuri_sampler *s;
    REQUIRE(nuri_sampler_new(&p, N_VOCAB, &s) == NURI_OK);
    nuri_grammar_free(g);
    float *logits = calloc(N_VOCAB, sizeof *logits);
    logits[token_of("maybe")] = 10; // the model's favourite is not allowed
    logits[token_of("no")] = 1;
    int32_t tok;
    REQUIRE(nuri_sampler_sample(s, logits, &tok, NULL) == NURI_OK);
    CHECK(tok == token_of("no"));
    CHECK(nuri_sampler_accept(s, token_of("maybe")) == NURI_ERR_INVALID_ARG);
    CHECK(nuri_sampler_accept(s, tok) == NURI_OK);
    CHECK(nuri_sampler_finish_reason(s, tok) == NURI_FINISH_GRAMMAR);
    // history tokens count for penalties but do not move the grammar
    nuri_sampler_reset(s);
    CHECK(nuri_sampler_accept_history(s, token_of("maybe")) == NURI_OK);
    REQUIRE(nuri_sampler_sample(s, logits, &tok, NULL) == NURI_OK);
    CHECK(tok == token_of("no"));
    // without the trie, or with one of another size, a grammar is refused
    nuri_sampler *bad;
    g = parse_str("root ::= \"x\"");
    nuri_sampler_params q = nuri_sampler_params_default();
    q.grammar = g;
    CHECK(nuri_sampler_new(&q, N_VOCAB, &bad) == NURI_ERR_INVALID_ARG);
    q.grammar_tokens = qwen2_trie;
    CHECK(nuri_sampler_new(&q, 151936, &bad) == NURI_ERR_INVALID_ARG);
    nuri_grammar_free(g);
    free(logits);
    nuri_sampler_free(s);
}

int main(void)
{
    RUN(parses_the_json_grammar);
    RUN(parses_the_whole_syntax);
    RUN(rules_may_be_used_before_they_are_defined);
    RUN(repetition_of_a_literal_repeats_the_whole_literal);
    RUN(character_classes_ranges_and_negation);
    RUN(errors_say_where_and_why);
    RUN(limits_are_errors_not_crashes);
    RUN(json_grammar_accepts_valid_json_and_refuses_the_rest);
    RUN(bytes_may_arrive_in_any_split);
    RUN(a_partial_character_is_refused_as_soon_as_it_cannot_match);
    RUN(a_refused_text_leaves_the_state_unchanged);
    RUN(ambiguous_grammars_stay_small);
    RUN(tiny_tables_are_emptied_and_refilled_without_changing_results);
    RUN(tokens_spanning_several_symbols_are_allowed_whole);
    RUN(tokens_that_split_a_character_are_followed_through);
    RUN(mask_equals_brute_force_on_random_states);
    RUN(mask_equals_brute_force_when_tables_are_emptied_mid_walk);
    RUN(json_strings_reuse_their_mask);
    RUN(sampler_samples_only_what_the_grammar_allows_and_stops_when_it_is_complete);
    RUN(sampler_refuses_a_token_the_grammar_does_not_allow);
    nuri_token_trie_free(qwen2_trie);
    nuri_vocab_free(qwen2);
    TEST_DONE();
}
