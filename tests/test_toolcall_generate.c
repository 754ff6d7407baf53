/*
 * test_toolcall_generate.c: forced tool calls end to end, in every tool-call format. For each
 * format, a random-weight model generates at temperature 1 under nuri_toolcall_grammar (tool_choice
 * "required" with parallel calls, a named function, and "auto" with a response_format schema), the
 * reply parser reads the text back (nuri_reply_parse), and every call's arguments go to Python's
 * jsonschema (tests/tools/json_schema_validate.py) against the tool's parameters. Every reply must
 * be complete, parse without error into at least one call of an allowed tool, and validate.
 *
 * As in test_json_schema_generate.c, a random model has no reason to stop: past CLOSE_AFTER
 * tokens a growing bias goes to tokens that close something ('"', '}', ']', '<') and open nothing
 * (twice as much to '<', the only way out of a raw text value in the XML-like formats).
 * The grammar still decides which tokens may come.
 */
#include "chat/toolcall.h"
#include "grammar/grammar.h"
#include "model/model.h"
#include "sample/sampler.h"
#include "test.h"
#include "tokenizer/tokenizer.h"

#include <string.h>

#define MODEL "tests/data/models/qwen2-tiny-Q8_0.gguf"
#if defined(__SANITIZE_ADDRESS__)
#define SEEDS 3
#else
#define SEEDS 12
#endif
#define MAX_NEW 4000
#define CLOSE_AFTER 120
#define CLOSE_STEP 0.05f

static const char tools_json[] =
    "[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"parameters\": {"
    "  \"type\": \"object\", \"properties\": {"
    "    \"city\": {\"type\": \"string\"},"
    "    \"days\": {\"type\": \"integer\", \"minimum\": 1, \"maximum\": 7},"
    "    \"unit\": {\"enum\": [\"c\", \"f\"]}},"
    "  \"required\": [\"city\", \"days\"], \"additionalProperties\": false}}},"
    " {\"type\": \"function\", \"function\": {\"name\": \"lookup\", \"parameters\": {"
    "  \"type\": \"object\", \"properties\": {"
    "    \"query\": {\"type\": \"string\", \"minLength\": 1, \"maxLength\": 40},"
    "    \"limit\": {\"type\": [\"integer\", \"null\"]},"
    "    \"tags\": {\"type\": \"array\", \"items\": {\"type\": \"string\", \"maxLength\": 8},"
    "               \"maxItems\": 3}},"
    "  \"required\": [\"query\"], \"additionalProperties\": false}}},"
    " {\"type\": \"function\", \"function\": {\"name\": \"ping\"}}]";

static const char answer_json[] =
    "{\"type\": \"object\", \"properties\": {\"ok\": {\"type\": \"boolean\"}}, \"required\": "
    "[\"ok\"], \"additionalProperties\": false}";

typedef struct gen_model {
    nuri_model *m;
    nuri_vocab *v;
    nuri_token_trie *t;
    nuri_ctx *c;
    float *prompt_logits, *biased;
    int32_t n_prompt;
    int32_t *closers;
    int32_t n_closers;
    bool *angle; // (n_vocab) the token closes with '<' (the XML-like formats' closing markers)
} gen_model;

static gen_model gm;
static json_t *tools, *answer;

static bool model_open(const char *path)
{
    if (nuri_model_load(path, &gm.m) != NURI_OK || nuri_vocab_load(gm.m->file, &gm.v) != NURI_OK ||
        nuri_token_trie_new(gm.v, gm.m->hp.n_vocab, &gm.t) != NURI_OK)
        return false;
    nuri_ctx_params cp = {.n_ctx = 2048, .n_threads = 1};
    const char *prompt = "Call a tool:";
    int32_t *ids;
    size_t n;
    if (nuri_ctx_new(gm.m, &cp, &gm.c) != NURI_OK ||
        nuri_tokenize(gm.v, prompt, strlen(prompt), NURI_TOK_ADD_SPECIAL, &ids, &n) != NURI_OK)
        return false;
    bool ok = nuri_ctx_decode(gm.c, ids, (int32_t)n, 0, false) == NURI_OK;
    free(ids);
    gm.n_prompt = (int32_t)n;
    size_t nv = (size_t)gm.m->hp.n_vocab;
    gm.prompt_logits = malloc(sizeof(float) * nv);
    gm.biased = malloc(sizeof(float) * nv);
    gm.closers = malloc(sizeof(int32_t) * nv);
    gm.angle = calloc(nv, sizeof(bool));
    if (!ok || !gm.prompt_logits || !gm.biased || !gm.closers || !gm.angle) return false;
    for (int32_t id = 0; id < (int32_t)nv; id++) {
        size_t k;
        const char *t = nuri_token_trie_text(gm.t, id, &k);
        bool closes =
            memchr(t, '"', k) || memchr(t, ']', k) || memchr(t, '}', k) || memchr(t, '<', k);
        bool opens =
            memchr(t, '{', k) || memchr(t, '[', k) || memchr(t, ',', k) || memchr(t, ':', k);
        if (closes && !opens) gm.closers[gm.n_closers++] = id;
        // '<' and a lone newline: what ends a raw value ("\n</parameter>", "</arg_value>")
        gm.angle[id] = (closes && !opens && memchr(t, '<', k)) || (k == 1 && t[0] == '\n');
        if (k == 1 && t[0] == '\n') gm.closers[gm.n_closers++] = id;
    }
    memcpy(gm.prompt_logits, nuri_ctx_logits(gm.c, 0), sizeof(float) * nv);
    return true;
}

static void model_close(void)
{
    free(gm.prompt_logits);
    free(gm.biased);
    free(gm.closers);
    free(gm.angle);
    nuri_ctx_free(gm.c);
    nuri_token_trie_free(gm.t);
    nuri_vocab_free(gm.v);
    nuri_model_free(gm.m);
}

/* Generates under g (angle: '<' closes something in it); the text goes to out. Returns tokens, -1
 * on failure; *complete: the grammar was completed. */
static int generate(nuri_grammar *g, bool angle, uint64_t seed, char *out, size_t cap,
                    bool *complete)
{
    nuri_sampler_params sp = nuri_sampler_params_default();
    sp.seed = seed;
    sp.grammar = g;
    sp.grammar_tokens = gm.t;
    nuri_sampler *s;
    if (nuri_sampler_new(&sp, gm.m->hp.n_vocab, &s) != NURI_OK) return -1;
    nuri_ctx_seq_truncate(gm.c, 0, gm.n_prompt);
    const float *logits = gm.prompt_logits;
    size_t len = 0;
    int n = 0;
    *complete = false;
    for (; n < MAX_NEW; n++) {
        if (n > CLOSE_AFTER) {
            memcpy(gm.biased, logits, sizeof(float) * (size_t)gm.m->hp.n_vocab);
            // a raw text value (XML-like formats, reasoning) allows '"' and '}': only '<' closes
            // it, so those tokens get twice the push; in JSON '<' is only a character

            for (int32_t k = 0; k < gm.n_closers; k++) {
                int32_t id = gm.closers[k];
                float w = gm.angle[id] ? (angle ? 2.0f : 0.0f) : 1.0f;
                gm.biased[id] += CLOSE_STEP * (float)(n - CLOSE_AFTER) * w;
            }
            logits = gm.biased;
        }
        int32_t tok;
        if (nuri_sampler_sample(s, logits, &tok, NULL) != NURI_OK ||
            nuri_sampler_accept(s, tok) != NURI_OK) {
            fprintf(stderr, "  seed %llu: %s\n", (unsigned long long)seed, nuri_last_error());
            n = -1;
            break;
        }
        nuri_finish_reason fr = nuri_sampler_finish_reason(s, tok);
        if (fr == NURI_FINISH_STOP) {
            *complete = nuri_sampler_grammar_can_end(s);
            break;
        }
        size_t k;
        const char *piece = nuri_token_trie_text(gm.t, tok, &k);
        if (len + k < cap) {
            memcpy(out + len, piece, k);
            len += k;
        }
        if (fr == NURI_FINISH_GRAMMAR) {
            *complete = true;
            n++;
            break;
        }
        if (nuri_ctx_decode(gm.c, &tok, 1, gm.n_prompt + n, false) != NURI_OK) {
            n = -1;
            break;
        }
        logits = nuri_ctx_logits(gm.c, 0);
    }
    out[len] = 0;
    nuri_sampler_free(s);
    return n;
}

static const json_t *params_of(const char *name)
{
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t)
    {
        json_t *f = json_object_get(t, "function");
        if (!strcmp(json_string_value(json_object_get(f, "name")), name))
            return json_object_get(f, "parameters");
    }
    return NULL;
}

typedef enum { MODE_REQUIRED, MODE_NAMED, MODE_SINGLE, MODE_AUTO_ANSWER, N_MODES } mode;
static const char *const mode_names[] = {"required", "named lookup", "required, one call",
                                         "auto with an answer schema"};

/* One format, every mode, SEEDS seeds: each output parsed and its calls sent to the validator. */
static void sweep(nuri_toolcall_format f, FILE *validator)
{
    static char out[1 << 16];
    nuri_chat_syntax syn = {.format = f, .think_open = "<think>", .think_close = "</think>"};
    int outputs = 0, calls = 0, answers = 0, tokens = 0;
    for (int md = 0; md < N_MODES; md++) {
        nuri_toolcall_grammar_opts o = {.format = f,
                                        .syntax = &syn,
                                        .tools = tools,
                                        .only = md == MODE_NAMED ? "lookup" : NULL,
                                        .parallel = md != MODE_SINGLE,
                                        .answer_schema = md == MODE_AUTO_ANSWER ? answer : NULL};
        char *text, param[160];
        size_t len;
        nuri_status st = nuri_toolcall_grammar(&o, &text, &len, param, sizeof param);
        CHECKF(st == NURI_OK, "%s, %s: %s (%s)", nuri_toolcall_format_name(f), mode_names[md],
               nuri_last_error(), param);
        if (st != NURI_OK) continue;
        nuri_grammar *g = NULL;
        st = nuri_grammar_parse(text, len, &g);
        CHECKF(st == NURI_OK, "%s, %s: %s\n%s", nuri_toolcall_format_name(f), mode_names[md],
               nuri_last_error(), text);
        free(text);
        if (st != NURI_OK) continue;
        for (int seed = 1; seed <= SEEDS; seed++) {
            bool complete;
            bool angle = f == NURI_TOOLCALL_QWEN_XML || f == NURI_TOOLCALL_ARG_KEY;
            int n =
                generate(g, angle, (uint64_t)seed * 7919 + (uint64_t)f, out, sizeof out, &complete);
            CHECKF(n >= 0 && complete, "%s, %s, seed %d: %d tokens, %s\n%.3000s",
                   nuri_toolcall_format_name(f), mode_names[md], seed, n,
                   complete ? "complete" : "incomplete", out);
            if (n < 0) continue;
            outputs++;
            tokens += n;
            nuri_reply_opts ro = {.syntax = syn, .tools = tools, .id_seed = (uint64_t)seed};
            nuri_reply rep;
            REQUIRE(nuri_reply_parse(&ro, out, strlen(out), &rep) == NURI_OK);
            if (md == MODE_AUTO_ANSWER && rep.n_calls == 0) {
                // the answer branch: JSON valid against the answer schema
                answers++;
                json_t *line = json_pack("{s:s,s:i,s:O,s:s,s:b}", "name", "answer", "seed", seed,
                                         "schema", answer, "output", rep.content, "complete", 1);
                char *l = json_dumps(line, JSON_COMPACT);
                fprintf(validator, "%s\n", l);
                free(l);
                json_decref(line);
                nuri_reply_free(&rep);
                continue;
            }
            CHECKF(!rep.error && rep.n_calls >= 1, "%s, %s, seed %d: %s\n%s",
                   nuri_toolcall_format_name(f), mode_names[md], seed,
                   rep.error ? rep.error : "no call", out);
            CHECKF(rep.content_len == 0, "%s, %s, seed %d: content \"%s\"",
                   nuri_toolcall_format_name(f), mode_names[md], seed, rep.content);
            if (md == MODE_SINGLE) CHECK(rep.n_calls == 1);
            for (size_t i = 0; i < rep.n_calls; i++) {
                const json_t *params = params_of(rep.calls[i].name);
                CHECKF(params || !strcmp(rep.calls[i].name, "ping"), "unknown tool %s",
                       rep.calls[i].name);
                if (md == MODE_NAMED) CHECK(!strcmp(rep.calls[i].name, "lookup"));
                json_t *schema = params ? json_incref((json_t *)params)
                                        : json_pack("{s:s,s:{},s:b}", "type", "object",
                                                    "properties", "additionalProperties", 0);
                char name[96];
                snprintf(name, sizeof name, "%s/%s/%s", nuri_toolcall_format_name(f),
                         mode_names[md], rep.calls[i].name);
                json_t *line =
                    json_pack("{s:s,s:i,s:o,s:s,s:b}", "name", name, "seed", seed, "schema", schema,
                              "output", rep.calls[i].arguments, "complete", 1);
                char *l = json_dumps(line, JSON_COMPACT);
                fprintf(validator, "%s\n", l);
                free(l);
                json_decref(line);
                calls++;
            }
            nuri_reply_free(&rep);
        }
        nuri_grammar_free(g);
    }
    printf("  %-13s %d replies, %d calls, %d answers, %d tokens\n", nuri_toolcall_format_name(f),
           outputs, calls, answers, tokens);
}

TEST(forced_calls_in_every_format_parse_and_validate)
{
    FILE *py = popen("python3 tests/tools/json_schema_validate.py", "w");
    REQUIRE(py != NULL);
    for (int f = NURI_TOOLCALL_GENERIC; f < NURI_TOOLCALL_N_FORMATS; f++)
        sweep((nuri_toolcall_format)f, py);
    int status = pclose(py);
    CHECKF(status == 0, "the validator reported failures (status %d)", status);
}

TEST(a_reasoning_block_comes_first_where_the_prompt_opened_one)
{
    nuri_chat_syntax syn = {
        .format = NURI_TOOLCALL_HERMES, .think_open = "<think>", .think_close = "</think>"};
    nuri_toolcall_grammar_opts o = {.format = NURI_TOOLCALL_HERMES,
                                    .syntax = &syn,
                                    .tools = tools,
                                    .only = "ping",
                                    .in_reasoning = true};
    char *text, param[160];
    size_t len;
    REQUIRE(nuri_toolcall_grammar(&o, &text, &len, param, sizeof param) == NURI_OK);
    nuri_grammar *g;
    REQUIRE(nuri_grammar_parse(text, len, &g) == NURI_OK);
    free(text);
    static char out[1 << 16];
    for (int seed = 1; seed <= 3; seed++) {
        bool complete;
        int n = generate(g, true, (uint64_t)seed, out, sizeof out, &complete);
        CHECK(n > 0 && complete);
        nuri_reply_opts ro = {.syntax = syn, .in_reasoning = true, .tools = tools};
        nuri_reply rep;
        REQUIRE(nuri_reply_parse(&ro, out, strlen(out), &rep) == NURI_OK);
        json_t *args = rep.n_calls ? json_loads(rep.calls[0].arguments, 0, NULL) : NULL;
        CHECKF(!rep.error && rep.n_calls == 1 && !strcmp(rep.calls[0].name, "ping") &&
                   json_is_object(args) && json_object_size(args) == 0,
               "%s", out);
        json_decref(args);
        CHECK(strstr(out, "</think>") != NULL);
        nuri_reply_free(&rep);
    }
    nuri_grammar_free(g);
}

TEST(a_schema_nuri_cannot_enforce_is_named_as_a_request_parameter)
{
    json_t *t = json_loads(
        "[{\"type\": \"function\", \"function\": {\"name\": \"a\"}},"
        " {\"type\": \"function\", \"function\": {\"name\": \"b\", \"parameters\": {\"type\": "
        "\"object\", \"properties\": {\"x\": {\"type\": \"array\", \"uniqueItems\": true},"
        " \"s\": {\"type\": \"string\", \"pattern\": \"^a\"}}}}}]",
        0, NULL);
    REQUIRE(t);
    char *text, param[160];
    size_t len;
    nuri_toolcall_grammar_opts o = {.format = NURI_TOOLCALL_HERMES, .tools = t, .parallel = true};
    CHECK(nuri_toolcall_grammar(&o, &text, &len, param, sizeof param) == NURI_ERR_UNSUPPORTED);
    CHECKF(!strcmp(param, "tools[1].function.parameters.properties.x.uniqueItems"), "%s", param);
    // in an XML-like format a raw string parameter cannot carry a pattern
    o.format = NURI_TOOLCALL_ARG_KEY;
    json_t *props = json_object_get(
        json_object_get(json_object_get(json_array_get(t, 1), "function"), "parameters"),
        "properties");
    json_object_del(props, "x");
    CHECK(nuri_toolcall_grammar(&o, &text, &len, param, sizeof param) == NURI_ERR_UNSUPPORTED);
    CHECKF(!strcmp(param, "tools[1].function.parameters.properties.s.pattern"), "%s", param);
    // only the named tool's schema matters
    o.only = "a";
    CHECK(nuri_toolcall_grammar(&o, &text, &len, param, sizeof param) == NURI_OK);
    free(text);
    json_decref(t);
}

int main(void)
{
    tools = json_loads(tools_json, 0, NULL);
    answer = json_loads(answer_json, 0, NULL);
    if (!tools || !answer || !model_open(MODEL)) {
        fprintf(stderr, "setup failed: %s\n", nuri_last_error());
        return 1;
    }
    RUN(forced_calls_in_every_format_parse_and_validate);
    RUN(a_reasoning_block_comes_first_where_the_prompt_opened_one);
    RUN(a_schema_nuri_cannot_enforce_is_named_as_a_request_parameter);
    model_close();
    json_decref(tools);
    json_decref(answer);
    TEST_DONE();
}
