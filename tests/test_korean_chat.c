/*
 * test_korean_chat.c: Korean model families in a chat. A model file made by nuri mkmodel with a
 * family's real chat template (tests/data/templates-korean/, origins in its README) renders Korean
 * conversations exactly as jinja2 did (the cases' "expected"), the prompt's turn markers become
 * single tokens, and each family's end-of-turn marker ends an answer whether or not the file's
 * EOS is that token.
 *
 * The vocabulary is written here: SentencePiece byte tokens (so any Korean text tokenizes), its
 * space token, and the families' special tokens, with BOS [BOS] and an EOS chosen per test.
 */
#include "chat/conversation.h"
#include "gguf/gguf.h"
#include "model/mkmodel.h"
#include "test.h"
#include "tokenizer/tokenizer.h"

#include <stdbool.h>
#include <unistd.h>

static char tmpdir[64];

static const char *const
    specials[] = {"[|system|]", "[|user|]",     "[|assistant|]", "[|endofturn|]",
                  "[|tool|]",   "<|im_start|>", "<|im_end|>",    "<|endofturn|>",
                  "<|stop|>",   "\xe2\x96\x81"}; // the last: SentencePiece's space, a normal token
#define N_SPECIALS (sizeof specials / sizeof specials[0])
#define FIRST_SPECIAL 260 // ids: 0 <unk>, 1 [BOS], 2 [EOS], 3 [PAD], 4..259 bytes

/* Writes a vocab-only GGUF whose EOS is the token with text eos. */
static bool write_vocab(const char *path, const char *eos)
{
    const int32_t n = FIRST_SPECIAL + (int32_t)N_SPECIALS;
    char *tok[FIRST_SPECIAL + N_SPECIALS], bytes[256][8];
    float score[FIRST_SPECIAL + N_SPECIALS] = {0};
    int32_t type[FIRST_SPECIAL + N_SPECIALS];
    tok[0] = "<unk>", type[0] = 2;
    tok[1] = "[BOS]", tok[2] = "[EOS]", tok[3] = "[PAD]";
    type[1] = type[2] = type[3] = 3;
    for (int i = 0; i < 256; i++) {
        snprintf(bytes[i], sizeof bytes[i], "<0x%02X>", i);
        tok[4 + i] = bytes[i], type[4 + i] = 6;
    }
    uint32_t eos_id = 2;
    for (size_t i = 0; i < N_SPECIALS; i++) {
        tok[FIRST_SPECIAL + i] = (char *)specials[i], type[FIRST_SPECIAL + i] = 3;
        if (i == N_SPECIALS - 1) type[FIRST_SPECIAL + i] = 1;
        if (!strcmp(specials[i], eos)) eos_id = FIRST_SPECIAL + (uint32_t)i;
    }
    gguf_writer *w;
    if (gguf_writer_new(&w) != NURI_OK) return false;
    bool ok = gguf_writer_add_str(w, "general.architecture", "llama") == NURI_OK &&
              gguf_writer_add_str(w, "tokenizer.ggml.model", "llama") == NURI_OK &&
              gguf_writer_add_str(w, "tokenizer.ggml.pre", "default") == NURI_OK &&
              gguf_writer_add_str_arr(w, "tokenizer.ggml.tokens", (const char *const *)tok,
                                      (uint64_t)n) == NURI_OK &&
              gguf_writer_add_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, score,
                                  (uint64_t)n) == NURI_OK &&
              gguf_writer_add_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, type,
                                  (uint64_t)n) == NURI_OK &&
              gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", 1) == NURI_OK &&
              gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", eos_id) == NURI_OK &&
              gguf_writer_add_u32(w, "tokenizer.ggml.padding_token_id", 3) == NURI_OK &&
              gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", false) == NURI_OK &&
              gguf_writer_add_bool(w, "tokenizer.ggml.add_space_prefix", false) == NURI_OK &&
              gguf_writer_write(w, path) == NURI_OK;
    gguf_writer_free(w);
    return ok;
}

static char *read_all(const char *path, size_t *len)
{
    char *s = NULL;
    if (nuri_chat_template_read(path, &s, len) != NURI_OK) return NULL;
    return s;
}

/* An open model file (made by nuri_mkmodel with the template file tpl_path, or no template) with
 * its vocabulary and chat format. */
typedef struct fixture {
    gguf_file *g;
    nuri_vocab *v;
    nuri_chat_format *fmt;
} fixture;

static bool fixture_open(fixture *fx, const char *arch, const char *tpl_path, const char *eos)
{
    memset(fx, 0, sizeof *fx);
    char vpath[128], mpath[128];
    snprintf(vpath, sizeof vpath, "%s/vocab.gguf", tmpdir);
    snprintf(mpath, sizeof mpath, "%s/model.gguf", tmpdir);
    size_t tlen = 0;
    char *tpl = tpl_path ? read_all(tpl_path, &tlen) : NULL;
    nuri_mkmodel_params p = {.arch = arch,
                             .shape = "tiny",
                             .type = "F32",
                             .vocab = vpath,
                             .seed = 7,
                             .chat_template = tpl,
                             .chat_template_len = tlen};
    bool ok = write_vocab(vpath, eos) && (!tpl_path || tpl) && nuri_mkmodel(&p, mpath) == NURI_OK &&
              gguf_open(mpath, &fx->g) == NURI_OK && nuri_vocab_load(fx->g, &fx->v) == NURI_OK &&
              nuri_chat_format_new(fx->g, fx->v, NULL, 0, &fx->fmt) == NURI_OK;
    if (!ok) fprintf(stderr, "  fixture %s %s: %s\n", arch, tpl_path, nuri_last_error());
    free(tpl);
    return ok;
}

static void fixture_close(fixture *fx)
{
    nuri_chat_format_free(fx->fmt);
    nuri_vocab_free(fx->v);
    gguf_close(fx->g);
}

static int32_t id_of(const fixture *fx, const char *text)
{
    return nuri_vocab_find(fx->v, text, strlen(text));
}

static const struct {
    const char *arch, *name;
} families[] = {
    {"exaone", "LGAI-EXAONE-EXAONE-3.5-Instruct"},
    {"exaone4", "LGAI-EXAONE-EXAONE-4.0-1.2B"},
};

/* Every case of the family's cases.json that a plain conversation can hold (no tools, tool calls
 * or template arguments) renders from the model file's own template exactly as jinja2 rendered
 * it. Returns how many cases ran. */
static int render_family_cases(const char *arch, const char *name)
{
    char tpath[256], cpath[256];
    snprintf(tpath, sizeof tpath, "tests/data/templates-korean/%s.jinja", name);
    snprintf(cpath, sizeof cpath, "tests/data/templates-korean/%s.cases.json", name);
    fixture fx;
    if (!fixture_open(&fx, arch, tpath, "[|endofturn|]")) {
        CHECKF(false, "%s: cannot make the model", name);
        return 0;
    }
    CHECK(!nuri_chat_format_is_fallback(fx.fmt));
    json_error_t je;
    json_t *cases = json_load_file(cpath, 0, &je);
    CHECKF(cases != NULL, "%s: %s", cpath, je.text);
    int ran = 0;
    size_t i, j;
    json_t *c, *m;
    json_array_foreach(cases, i, c)
    {
        json_t *want = json_object_get(c, "expected"), *msgs = json_object_get(c, "messages");
        bool plain = want && !json_object_get(c, "tools") && !json_object_get(c, "kwargs");
        json_array_foreach(msgs, j, m) plain = plain && json_object_size(m) == 2;
        if (!plain) continue;
        nuri_conv conv;
        nuri_conv_init(&conv);
        CHECKF(nuri_conv_from_json(&conv, msgs, "messages") == NURI_OK, "%s", nuri_last_error());
        char *out = NULL;
        size_t n = 0;
        nuri_status st = nuri_chat_render(
            fx.fmt, &conv, json_is_true(json_object_get(c, "add_generation_prompt")), &out, &n);
        const char *cname = json_string_value(json_object_get(c, "name"));
        CHECKF(st == NURI_OK && n == json_string_length(want) &&
                   !memcmp(out, json_string_value(want), n),
               "%s [%s]:\n--- want\n%s\n--- got\n%s\n---", name, cname, json_string_value(want),
               out ? out : nuri_last_error());
        free(out);
        nuri_conv_free(&conv);
        ran++;
    }
    json_decref(cases);
    fixture_close(&fx);
    return ran;
}

TEST(korean_conversations_render_from_the_model_files_template_like_jinja2)
{
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++) {
        int ran = render_family_cases(families[f].arch, families[f].name);
        CHECKF(ran >= 5, "%s: only %d cases", families[f].name, ran);
    }
}

TEST(turn_markers_are_single_tokens_and_the_prompt_decodes_back_exactly)
{
    fixture fx;
    REQUIRE(fixture_open(&fx, "exaone4",
                         "tests/data/templates-korean/LGAI-EXAONE-EXAONE-4.0-1.2B.jinja",
                         "[|endofturn|]"));
    nuri_conv conv;
    nuri_conv_init(&conv);
    const char *sys = "당신은 친절한 비서입니다.", *user = "김치찌개 끓이는 법 알려 줘 🍲";
    nuri_conv_add(&conv, "system", sys, strlen(sys));
    nuri_conv_add(&conv, "user", user, strlen(user));
    char *text = NULL;
    size_t len = 0;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    REQUIRE(nuri_chat_render(fx.fmt, &conv, true, &text, &len) == NURI_OK);
    REQUIRE(nuri_chat_tokenize(fx.fmt, text, len, &ids, &n_ids) == NURI_OK);
    int32_t eot = id_of(&fx, "[|endofturn|]"), usr = id_of(&fx, "[|user|]");
    int n_eot = 0, n_usr = 0;
    for (size_t i = 0; i < n_ids; i++) n_eot += ids[i] == eot, n_usr += ids[i] == usr;
    CHECKF(n_eot == 2 && n_usr == 1, "%d [|endofturn|], %d [|user|]", n_eot, n_usr);
    CHECK(ids[0] == id_of(&fx, "[|system|]")); // EXAONE adds no BOS
    nuri_detok dt;
    REQUIRE(nuri_detok_init(&dt, fx.v, NURI_DETOK_SPECIAL) == NURI_OK);
    char *back = malloc(len + 64);
    size_t bl = 0, pl;
    for (size_t i = 0; i < n_ids; i++) {
        const char *p = nuri_detok_feed(&dt, ids[i], &pl);
        if (bl + pl <= len + 64) memcpy(back + bl, p, pl);
        bl += pl;
    }
    const char *p = nuri_detok_flush(&dt, &pl);
    if (bl + pl <= len + 64) memcpy(back + bl, p, pl);
    bl += pl;
    CHECKF(bl == len && !memcmp(back, text, len), "decoded %zu bytes of %zu:\n[%.*s]\n[%s]", bl,
           len, (int)(bl < len + 64 ? bl : len + 64), back, text);
    nuri_detok_free(&dt);
    free(back);
    free(ids);
    free(text);
    nuri_conv_free(&conv);
    fixture_close(&fx);
}

TEST(exaone_endofturn_ends_the_answer_whether_or_not_it_is_the_files_eos)
{
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++) {
        char tpath[256];
        snprintf(tpath, sizeof tpath, "tests/data/templates-korean/%s.jinja", families[f].name);
        for (int as_eos = 0; as_eos < 2; as_eos++) {
            fixture fx;
            REQUIRE(fixture_open(&fx, families[f].arch, tpath, as_eos ? "[|endofturn|]" : "[EOS]"));
            int32_t eot = id_of(&fx, "[|endofturn|]");
            CHECK(nuri_vocab_is_eog(fx.v, eot) == (as_eos == 1)); // llama.cpp's rule alone
            CHECKF(nuri_chat_format_ends_turn(fx.fmt, eot), "%s, eos %s", families[f].name,
                   as_eos ? "[|endofturn|]" : "[EOS]");
            CHECK(nuri_chat_format_ends_turn(fx.fmt, id_of(&fx, "[EOS]")) == !as_eos);
            CHECK(!nuri_chat_format_ends_turn(fx.fmt, id_of(&fx, "[|assistant|]")));
            CHECK(!nuri_chat_format_ends_turn(fx.fmt, id_of(&fx, "[|user|]")));
            size_t n;
            const char *const *stops = nuri_chat_format_stops(fx.fmt, &n);
            CHECK(n == 1 && !strcmp(stops[0], "[|endofturn|]")); // for vocabularies without it
            fixture_close(&fx);
        }
    }
}

TEST(hyperclovax_endofturn_and_stop_end_the_answer_when_the_template_uses_them)
{
    // Written for this test (HyperCLOVA X SEED's own template was not available): the two markers
    // its model cards say end an answer (<|endofturn|>) or a tool-calling answer (<|stop|>).
    char tpath[128];
    snprintf(tpath, sizeof tpath, "%s/hcx.jinja", tmpdir);
    FILE *f = fopen(tpath, "w");
    REQUIRE(f != NULL);
    fputs("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>"
          "{% if m.role == 'assistant' %}{{ '<|stop|>' if m.tool_calls else '<|endofturn|>' }}"
          "{% endif %}\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
          "{% endif %}",
          f);
    fclose(f);
    fixture fx;
    REQUIRE(fixture_open(&fx, "hyperclovax", tpath, "[EOS]"));
    CHECK(nuri_chat_format_ends_turn(fx.fmt, id_of(&fx, "<|endofturn|>")));
    CHECK(nuri_chat_format_ends_turn(fx.fmt, id_of(&fx, "<|stop|>")));
    CHECK(nuri_chat_format_ends_turn(fx.fmt, id_of(&fx, "<|im_end|>")));     // llama.cpp's EOG text
    CHECK(!nuri_chat_format_ends_turn(fx.fmt, id_of(&fx, "[|endofturn|]"))); // not in this template
    CHECK(!nuri_chat_format_ends_turn(fx.fmt, id_of(&fx, "<|im_start|>")));
    size_t n;
    const char *const *stops = nuri_chat_format_stops(fx.fmt, &n);
    CHECK(n == 2 && !strcmp(stops[0], "<|endofturn|>") && !strcmp(stops[1], "<|stop|>"));
    fixture_close(&fx);
}

TEST(a_model_without_a_template_keeps_chatml_and_its_stops)
{
    fixture fx;
    REQUIRE(fixture_open(&fx, "exaone", NULL, "[EOS]"));
    CHECK(nuri_chat_format_is_fallback(fx.fmt));
    CHECK(!nuri_chat_format_ends_turn(fx.fmt, id_of(&fx, "[|endofturn|]")));
    CHECK(nuri_chat_format_ends_turn(fx.fmt, id_of(&fx, "[EOS]")));
    size_t n;
    nuri_chat_format_stops(fx.fmt, &n);
    CHECK(n == 2); // <|im_end|>, <|im_start|>
    fixture_close(&fx);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/nuri-korean-XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    RUN(korean_conversations_render_from_the_model_files_template_like_jinja2);
    RUN(turn_markers_are_single_tokens_and_the_prompt_decodes_back_exactly);
    RUN(exaone_endofturn_ends_the_answer_whether_or_not_it_is_the_files_eos);
    RUN(hyperclovax_endofturn_and_stop_end_the_answer_when_the_template_uses_them);
    RUN(a_model_without_a_template_keeps_chatml_and_its_stops);
    char path[128];
    const char *files[] = {"vocab.gguf", "model.gguf", "hcx.jinja"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", tmpdir, files[i]);
        unlink(path);
    }
    rmdir(tmpdir);
    TEST_DONE();
}
