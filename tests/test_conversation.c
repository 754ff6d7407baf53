/*
 * test_conversation.c: conversations (src/chat/conversation.h): messages and their checks, prompt
 * rendering with a model's template or ChatML, tokenizing without a doubled BOS, KV cache prefix
 * reuse across turns, dropping the oldest turns when the context is full, and JSON save / load.
 *
 * Vocabularies come from tests/data/vocab/ (llama.cpp's vocab-only files): qwen2 carries a ChatML
 * chat template and adds no BOS; phi-3 adds BOS and its template emits bos_token itself;
 * llama-spm adds BOS and has no template (so ChatML is the fallback). Expected prompt strings are
 * written out here by hand from those templates.
 */
#include "base/status.h"
#include "chat/conversation.h"
#include "test.h"

#include <stdbool.h>
#include <unistd.h>

static char tmpdir[64];

typedef struct fixture {
    gguf_file *g;
    nuri_vocab *v;
    nuri_chat_format *fmt;
} fixture;

static bool fixture_open(fixture *fx, const char *vocab, const char *tpl)
{
    memset(fx, 0, sizeof *fx);
    char path[256];
    snprintf(path, sizeof path, "tests/data/vocab/ggml-vocab-%s.gguf", vocab);
    if (gguf_open(path, &fx->g) != NURI_OK || nuri_vocab_load(fx->g, &fx->v) != NURI_OK ||
        nuri_chat_format_new(fx->g, fx->v, tpl, tpl ? strlen(tpl) : 0, &fx->fmt) != NURI_OK) {
        fprintf(stderr, "  fixture %s: %s\n", vocab, nuri_last_error());
        return false;
    }
    return true;
}

static void fixture_close(fixture *fx)
{
    nuri_chat_format_free(fx->fmt);
    nuri_vocab_free(fx->v);
    gguf_close(fx->g);
}

static void add(nuri_conv *c, const char *role, const char *text)
{
    nuri_status st = nuri_conv_add(c, role, text, strlen(text));
    if (st != NURI_OK) fprintf(stderr, "  add %s: %s\n", role, nuri_last_error());
}

static char *render(const nuri_chat_format *fmt, const nuri_conv *c, bool add_gen)
{
    char *out = NULL;
    size_t len;
    if (nuri_chat_render(fmt, c, add_gen, &out, &len) != NURI_OK)
        fprintf(stderr, "  render: %s\n", nuri_last_error());
    return out;
}

/* ---------------------------------------------------------------- messages */

TEST(utf8_validity_follows_the_unicode_rules)
{
    CHECK(nuri_utf8_valid("", 0));
    CHECK(nuri_utf8_valid("hello", 5));
    CHECK(nuri_utf8_valid("한국어", strlen("한국어")));
    CHECK(nuri_utf8_valid("\xf0\x9f\x98\x80", 4));  // U+1F600
    CHECK(!nuri_utf8_valid("\xc0\xaf", 2));         // overlong '/'
    CHECK(!nuri_utf8_valid("\xed\xa0\x80", 3));     // surrogate U+D800
    CHECK(!nuri_utf8_valid("\xf4\x90\x80\x80", 4)); // past U+10FFFF
    CHECK(!nuri_utf8_valid("\xea\xb0", 2));         // truncated 가
    CHECK(!nuri_utf8_valid("a\x80", 2));            // stray continuation byte
}

TEST(add_refuses_bad_roles_misplaced_system_and_bad_text)
{
    nuri_conv c;
    nuri_conv_init(&c);
    CHECK(nuri_conv_add(&c, "narrator", "x", 1) == NURI_ERR_INVALID_ARG);
    CHECK(strstr(nuri_last_error(), "narrator"));
    CHECK(nuri_conv_add(&c, "user", "a\xff", 2) == NURI_ERR_INVALID_ARG);
    CHECK(strstr(nuri_last_error(), "UTF-8"));
    CHECK(nuri_conv_add(&c, "user", "a\0b", 3) == NURI_ERR_INVALID_ARG);
    CHECK(strstr(nuri_last_error(), "NUL"));
    CHECK(c.n == 0);
    add(&c, "user", "hi");
    CHECK(nuri_conv_add(&c, "system", "late", 4) == NURI_ERR_INVALID_ARG);
    CHECK(strstr(nuri_last_error(), "first"));
    CHECK(c.n == 1);
    nuri_conv_free(&c);
}

TEST(reset_keeps_only_the_system_message)
{
    nuri_conv c;
    nuri_conv_init(&c);
    add(&c, "system", "be brief");
    add(&c, "user", "u1");
    add(&c, "assistant", "a1");
    nuri_conv_reset(&c);
    REQUIRE(c.n == 1);
    CHECK(!strcmp(c.msgs[0].role, "system") && !strcmp(c.msgs[0].content, "be brief"));
    nuri_conv_free(&c);
    add(&c, "user", "u1"); // no system message: reset empties
    nuri_conv_reset(&c);
    CHECK(c.n == 0);
    nuri_conv_free(&c);
}

TEST(drop_oldest_turn_removes_a_user_message_and_its_answers)
{
    nuri_conv c;
    nuri_conv_init(&c);
    add(&c, "system", "s");
    add(&c, "user", "u1");
    add(&c, "assistant", "a1");
    add(&c, "user", "u2");
    add(&c, "assistant", "a2");
    add(&c, "tool", "t2");
    add(&c, "assistant", "a2b");
    add(&c, "user", "u3");
    CHECK(nuri_conv_drop_oldest_turn(&c) == 2);
    REQUIRE(c.n == 6);
    CHECK(!strcmp(c.msgs[0].content, "s") && !strcmp(c.msgs[1].content, "u2"));
    CHECK(nuri_conv_drop_oldest_turn(&c) == 4);
    REQUIRE(c.n == 2);
    CHECK(!strcmp(c.msgs[0].content, "s") && !strcmp(c.msgs[1].content, "u3"));
    CHECK(nuri_conv_drop_oldest_turn(&c) == 0); // the last user turn stays
    CHECK(c.n == 2);
    nuri_conv_free(&c);
}

/* ---------------------------------------------------------------- rendering */

TEST(renders_with_the_models_own_template)
{
    fixture fx;
    REQUIRE(fixture_open(&fx, "qwen2", NULL));
    CHECK(!nuri_chat_format_is_fallback(fx.fmt));
    size_t n_stops;
    nuri_chat_format_stops(fx.fmt, &n_stops);
    CHECK(n_stops == 0);
    nuri_conv c;
    nuri_conv_init(&c);
    add(&c, "user", "안녕하세요");
    char *s = render(fx.fmt, &c, true);
    // qwen2's template adds a default system message when there is none
    const char *want = "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n"
                       "<|im_start|>user\n안녕하세요<|im_end|>\n<|im_start|>assistant\n";
    CHECKF(s && !strcmp(s, want), "got [%s]", s ? s : "(null)");
    free(s);
    s = render(fx.fmt, &c, false);
    CHECK(s && !strstr(s, "<|im_start|>assistant"));
    free(s);
    nuri_conv_free(&c);
    fixture_close(&fx);
}

TEST(falls_back_to_chatml_without_a_template)
{
    fixture fx;
    REQUIRE(fixture_open(&fx, "llama-spm", NULL));
    CHECK(nuri_chat_format_is_fallback(fx.fmt));
    size_t n_stops;
    const char *const *stops = nuri_chat_format_stops(fx.fmt, &n_stops);
    CHECK(n_stops == 2 && !strcmp(stops[0], "<|im_end|>"));
    nuri_conv c;
    nuri_conv_init(&c);
    add(&c, "system", "sys");
    add(&c, "user", "hi");
    add(&c, "assistant", "hello");
    add(&c, "user", "again");
    char *s = render(fx.fmt, &c, true);
    const char *want = "<|im_start|>system\nsys<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
                       "<|im_start|>assistant\nhello<|im_end|>\n<|im_start|>user\nagain<|im_end|>\n"
                       "<|im_start|>assistant\n";
    CHECKF(s && !strcmp(s, want), "got [%s]", s ? s : "(null)");
    free(s);
    nuri_conv_free(&c);
    fixture_close(&fx);
}

TEST(a_given_template_overrides_the_models)
{
    fixture fx;
    REQUIRE(fixture_open(&fx, "qwen2",
                         "{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}"
                         "{% if add_generation_prompt %}[assistant]{% endif %}"));
    CHECK(!nuri_chat_format_is_fallback(fx.fmt));
    nuri_conv c;
    nuri_conv_init(&c);
    add(&c, "user", "x");
    char *s = render(fx.fmt, &c, true);
    CHECKF(s && !strcmp(s, "[user]x[assistant]"), "got [%s]", s ? s : "(null)");
    free(s);
    nuri_conv_free(&c);
    fixture_close(&fx);
}

TEST(a_broken_template_is_an_error_with_its_position)
{
    gguf_file *g;
    nuri_vocab *v;
    REQUIRE(gguf_open("tests/data/vocab/ggml-vocab-qwen2.gguf", &g) == NURI_OK);
    REQUIRE(nuri_vocab_load(g, &v) == NURI_OK);
    nuri_chat_format *fmt = NULL;
    const char *bad = "{% for m in messages %}{{ m.content }";
    CHECK(nuri_chat_format_new(g, v, bad, strlen(bad), &fmt) != NURI_OK);
    CHECK(fmt == NULL);
    CHECKF(strstr(nuri_last_error(), "line 1"), "%s", nuri_last_error());
    nuri_vocab_free(v);
    gguf_close(g);
}

TEST(template_exceptions_come_back_as_errors)
{
    fixture fx;
    REQUIRE(fixture_open(&fx, "qwen2", "{{ raise_exception('roles must alternate') }}"));
    nuri_conv c;
    nuri_conv_init(&c);
    add(&c, "user", "x");
    char *out;
    size_t len;
    CHECK(nuri_chat_render(fx.fmt, &c, true, &out, &len) == NURI_ERR_INVALID_ARG);
    CHECK(!strcmp(nuri_last_error(), "roles must alternate"));
    nuri_conv_free(&c);
    fixture_close(&fx);
}

/* ---------------------------------------------------------------- tokenizing */

TEST(special_token_text_becomes_special_tokens)
{
    fixture fx;
    REQUIRE(fixture_open(&fx, "qwen2", NULL));
    int32_t *ids;
    size_t n;
    const char *p = "<|im_start|>user\nhi<|im_end|>";
    REQUIRE(nuri_chat_tokenize(fx.fmt, p, strlen(p), &ids, &n) == NURI_OK);
    // [<|im_start|>, "user", "\n", "hi", <|im_end|>] as `nuri tokenize --parse-special` gives
    int32_t want[] = {151644, 872, 198, 6023, 151645};
    CHECK(n == 5 && !memcmp(ids, want, sizeof want));
    free(ids);
    fixture_close(&fx);
}

TEST(bos_is_added_once_when_the_template_emits_it)
{
    fixture fx;
    REQUIRE(fixture_open(&fx, "phi-3", NULL));
    CHECK(!nuri_chat_format_is_fallback(fx.fmt));
    nuri_conv c;
    nuri_conv_init(&c);
    add(&c, "user", "hello");
    char *s = render(fx.fmt, &c, true);
    REQUIRE(s);
    CHECKF(!strncmp(s, "<s>", 3), "phi-3's template starts with bos_token: [%s]", s);
    int32_t *ids;
    size_t n;
    REQUIRE(nuri_chat_tokenize(fx.fmt, s, strlen(s), &ids, &n) == NURI_OK);
    int32_t bos = nuri_vocab_bos(fx.v);
    CHECK(n > 2 && ids[0] == bos && ids[1] != bos);
    free(ids);
    free(s);
    nuri_conv_free(&c);
    fixture_close(&fx);
}

TEST(bos_is_added_when_the_vocab_asks_and_the_template_does_not)
{
    fixture fx;
    REQUIRE(fixture_open(&fx, "llama-spm", NULL));
    int32_t *ids;
    size_t n;
    REQUIRE(nuri_chat_tokenize(fx.fmt, "hi", 2, &ids, &n) == NURI_OK);
    int32_t bos = nuri_vocab_bos(fx.v);
    CHECK(n >= 2 && ids[0] == bos && ids[1] != bos);
    free(ids);
    fixture_close(&fx);
    REQUIRE(fixture_open(&fx, "qwen2", NULL)); // qwen2 adds no BOS
    REQUIRE(nuri_chat_tokenize(fx.fmt, "hi", 2, &ids, &n) == NURI_OK);
    CHECK(n == 1 && ids[0] == 6023);
    free(ids);
    fixture_close(&fx);
}

/* ---------------------------------------------------------------- KV reuse */

TEST(reuse_prefix_keeps_the_common_prefix_but_never_the_whole_prompt)
{
    int32_t a[] = {1, 2, 3, 4, 5}, b[] = {1, 2, 3, 9, 9, 9}, c[] = {1, 2, 3};
    CHECK(nuri_chat_reuse_prefix(a, 5, b, 6) == 3); // diverges at 3
    CHECK(nuri_chat_reuse_prefix(a, 5, a, 5) == 4); // identical: redo the last token
    CHECK(nuri_chat_reuse_prefix(a, 5, c, 3) == 2); // cache longer than the prompt
    CHECK(nuri_chat_reuse_prefix(c, 3, a, 5) == 3); // the prompt extends the cache
    CHECK(nuri_chat_reuse_prefix(NULL, 0, a, 5) == 0);
    CHECK(nuri_chat_reuse_prefix(a, 5, b + 3, 3) == 0);
}

TEST(a_new_turn_decodes_only_its_new_suffix)
{
    fixture fx;
    REQUIRE(fixture_open(&fx, "qwen2", NULL));
    nuri_conv c;
    nuri_conv_init(&c);
    add(&c, "system", "You are terse.");
    add(&c, "user", "What is 2+2?");
    int32_t *p1, *ans, *p2;
    size_t n1, n_ans, n2, dropped;
    REQUIRE(nuri_chat_build(fx.fmt, &c, 4096, &p1, &n1, &dropped) == NURI_OK);
    CHECK(dropped == 0);
    // the model answers; the cache then holds the prompt and the answer's tokens (not the
    // end-of-turn token, which is sampled but never decoded)
    const char *answer = "It is 4.";
    REQUIRE(nuri_chat_tokenize(fx.fmt, answer, strlen(answer), &ans, &n_ans) == NURI_OK);
    int32_t *cache = malloc((n1 + n_ans) * sizeof *cache);
    REQUIRE(cache);
    memcpy(cache, p1, n1 * sizeof *cache);
    memcpy(cache + n1, ans, n_ans * sizeof *cache);
    add(&c, "assistant", answer);
    add(&c, "user", "And 3+3?");
    REQUIRE(nuri_chat_build(fx.fmt, &c, 4096, &p2, &n2, &dropped) == NURI_OK);
    size_t keep = nuri_chat_reuse_prefix(cache, n1 + n_ans, p2, n2);
    CHECKF(keep == n1 + n_ans, "keep %zu, cache %zu", keep, n1 + n_ans);
    CHECK(!memcmp(cache, p2, keep * sizeof *cache));
    // the suffix starts at the end-of-turn token that closes the answer
    CHECK(keep < n2 && p2[keep] == 151645);
    char *suffix_text = malloc(4096);
    size_t off = 0;
    for (size_t i = keep; i < n2 && off < 4000; i++)
        off += nuri_token_piece(fx.v, p2[i], suffix_text + off, 4000 - off, true);
    suffix_text[off] = 0;
    CHECKF(!strcmp(suffix_text, "<|im_end|>\n<|im_start|>user\nAnd 3+3?<|im_end|>\n"
                                "<|im_start|>assistant\n"),
           "suffix [%s]", suffix_text);
    free(suffix_text);
    free(cache);
    free(p1);
    free(p2);
    free(ans);
    nuri_conv_free(&c);
    fixture_close(&fx);
}

/* ---------------------------------------------------------------- overflow */

TEST(overflow_drops_the_oldest_turns_and_keeps_the_system_message)
{
    fixture fx;
    REQUIRE(fixture_open(&fx, "qwen2", NULL));
    nuri_conv c;
    nuri_conv_init(&c);
    add(&c, "system", "SYSTEM");
    char buf[64];
    for (int t = 0; t < 6; t++) {
        snprintf(buf, sizeof buf, "question number %d is about apples and pears", t);
        add(&c, "user", buf);
        snprintf(buf, sizeof buf, "answer number %d is about oranges", t);
        add(&c, "assistant", buf);
    }
    add(&c, "user", "last question");
    int32_t *ids;
    size_t n, dropped;
    REQUIRE(nuri_chat_build(fx.fmt, &c, 100000, &ids, &n, &dropped) == NURI_OK);
    free(ids);
    size_t full = n;
    CHECK(dropped == 0 && c.n == 14);
    // room for roughly half: whole turns go, oldest first, until it fits
    REQUIRE(nuri_chat_build(fx.fmt, &c, full / 2, &ids, &n, &dropped) == NURI_OK);
    CHECK(n <= full / 2);
    CHECK(dropped > 0 && dropped % 2 == 0 && c.n == 14 - dropped);
    CHECK(!strcmp(c.msgs[0].role, "system") && !strcmp(c.msgs[0].content, "SYSTEM"));
    CHECK(!strcmp(c.msgs[1].role, "user"));
    CHECK(!strcmp(c.msgs[c.n - 1].content, "last question"));
    snprintf(buf, sizeof buf, "question number %zu is about apples and pears", dropped / 2);
    CHECK(!strcmp(c.msgs[1].content, buf)); // the oldest that is left
    free(ids);
    // too small even for the system message and the last question: a clear error
    CHECK(nuri_chat_build(fx.fmt, &c, 5, &ids, &n, &dropped) == NURI_ERR_LIMIT);
    CHECKF(strstr(nuri_last_error(), "room for 5"), "%s", nuri_last_error());
    CHECK(c.n == 2 && !strcmp(c.msgs[0].content, "SYSTEM"));
    nuri_conv_free(&c);
    fixture_close(&fx);
}

/* ---------------------------------------------------------------- save / load */

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

TEST(save_then_load_round_trips_every_byte)
{
    nuri_conv c, d;
    nuri_conv_init(&c);
    nuri_conv_init(&d);
    add(&c, "system", "시스템: 짧게 답하세요.");
    add(&c, "user", "quotes \" backslash \\ tab\t newline\n emoji 😀 <|im_end|>");
    add(&c, "assistant", "");
    add(&c, "user", "마지막");
    char path[128];
    snprintf(path, sizeof path, "%s/conv.json", tmpdir);
    REQUIRE(nuri_conv_save(&c, path) == NURI_OK);
    add(&d, "user", "to be replaced");
    REQUIRE(nuri_conv_load(&d, path) == NURI_OK);
    REQUIRE(d.n == c.n);
    for (size_t i = 0; i < c.n; i++) {
        CHECK(!strcmp(c.msgs[i].role, d.msgs[i].role));
        CHECK(!strcmp(c.msgs[i].content, d.msgs[i].content));
    }
    nuri_conv_free(&c);
    nuri_conv_free(&d);
}

TEST(save_to_an_impossible_path_is_an_io_error)
{
    nuri_conv c;
    nuri_conv_init(&c);
    add(&c, "user", "x");
    CHECK(nuri_conv_save(&c, "/nonexistent-dir/x.json") == NURI_ERR_IO);
    CHECK(strstr(nuri_last_error(), "/nonexistent-dir/x.json"));
    nuri_conv_free(&c);
}

TEST(bad_save_files_are_clear_errors_and_change_nothing)
{
    static const struct {
        const char *text, *want; // file contents, part of the expected message
    } cases[] = {
        {"", "not valid JSON"},
        {"{\"format\": \"nuri-conversation\", ", "not valid JSON"},
        {"[1, 2]", "expected a JSON object"},
        {"{\"messages\": []}", "not a saved conversation"},
        {"{\"format\": \"other\", \"version\": 1, \"messages\": []}", "not a saved conversation"},
        {"{\"format\": \"nuri-conversation\", \"version\": 2, \"messages\": []}", "version"},
        {"{\"format\": \"nuri-conversation\", \"version\": 1}", "missing \"messages\""},
        {"{\"format\": \"nuri-conversation\", \"version\": 1, \"messages\": {}}", "array"},
        {"{\"format\": \"nuri-conversation\", \"version\": 1, \"messages\": [\"hi\"]}",
         "messages[0]: expected an object"},
        {"{\"format\": \"nuri-conversation\", \"version\": 1, \"messages\": "
         "[{\"role\": \"user\"}]}",
         "messages[0].content: missing"},
        {"{\"format\": \"nuri-conversation\", \"version\": 1, \"messages\": "
         "[{\"role\": \"user\", \"content\": \"a\"}, {\"role\": 7, \"content\": \"b\"}]}",
         "messages[1].role: expected a string"},
        {"{\"format\": \"nuri-conversation\", \"version\": 1, \"messages\": "
         "[{\"role\": \"user\", \"content\": [1]}]}",
         "messages[0].content: expected a string"},
        {"{\"format\": \"nuri-conversation\", \"version\": 1, \"messages\": "
         "[{\"role\": \"wizard\", \"content\": \"x\"}]}",
         "unknown role 'wizard'"},
        {"{\"format\": \"nuri-conversation\", \"version\": 1, \"messages\": "
         "[{\"role\": \"user\", \"content\": \"x\"}, {\"role\": \"system\", \"content\": \"s\"}]}",
         "first message"},
        {"{\"format\": \"nuri-conversation\", \"version\": 1, \"messages\": "
         "[{\"role\": \"user\", \"content\": \"x\", \"name\": \"bob\"}]}",
         "unexpected key 'name'"},
        {"{\"format\": \"nuri-conversation\", \"version\": 1, \"messages\": "
         "[{\"role\": \"user\", \"content\": \"a\\u0000b\"}]}",
         "not valid JSON"}, // jansson refuses NUL escapes
        {"{\"format\": \"nuri-conversation\", \"format\": \"x\", \"version\": 1, \"messages\": []}",
         "duplicate"},
    };
    char path[128];
    snprintf(path, sizeof path, "%s/bad.json", tmpdir);
    nuri_conv c;
    nuri_conv_init(&c);
    add(&c, "user", "keep me");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_text(path, cases[i].text);
        nuri_status st = nuri_conv_load(&c, path);
        CHECKF(st == NURI_ERR_FORMAT, "case %zu: status %d", i, (int)st);
        CHECKF(strstr(nuri_last_error(), cases[i].want) && strstr(nuri_last_error(), path),
               "case %zu: [%s] lacks [%s]", i, nuri_last_error(), cases[i].want);
        CHECK(c.n == 1 && !strcmp(c.msgs[0].content, "keep me"));
    }
    // invalid UTF-8 inside a JSON string
    write_text(path, "{\"format\": \"nuri-conversation\", \"version\": 1, \"messages\": "
                     "[{\"role\": \"user\", \"content\": \"\xff\"}]}");
    CHECK(nuri_conv_load(&c, path) == NURI_ERR_FORMAT);
    CHECK(nuri_conv_load(&c, "tests/data/no-such-conversation.json") == NURI_ERR_IO);
    CHECK(strstr(nuri_last_error(), "no-such-conversation.json"));
    CHECK(nuri_conv_load(&c, "tests/data") == NURI_ERR_IO);
    CHECK(c.n == 1 && !strcmp(c.msgs[0].content, "keep me"));
    unlink(path);
    nuri_conv_free(&c);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/nuri-conv-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(utf8_validity_follows_the_unicode_rules);
    RUN(add_refuses_bad_roles_misplaced_system_and_bad_text);
    RUN(reset_keeps_only_the_system_message);
    RUN(drop_oldest_turn_removes_a_user_message_and_its_answers);
    RUN(renders_with_the_models_own_template);
    RUN(falls_back_to_chatml_without_a_template);
    RUN(a_given_template_overrides_the_models);
    RUN(a_broken_template_is_an_error_with_its_position);
    RUN(template_exceptions_come_back_as_errors);
    RUN(special_token_text_becomes_special_tokens);
    RUN(bos_is_added_once_when_the_template_emits_it);
    RUN(bos_is_added_when_the_vocab_asks_and_the_template_does_not);
    RUN(reuse_prefix_keeps_the_common_prefix_but_never_the_whole_prompt);
    RUN(a_new_turn_decodes_only_its_new_suffix);
    RUN(overflow_drops_the_oldest_turns_and_keeps_the_system_message);
    RUN(save_then_load_round_trips_every_byte);
    RUN(save_to_an_impossible_path_is_an_io_error);
    RUN(bad_save_files_are_clear_errors_and_change_nothing);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    TEST_DONE();
}
