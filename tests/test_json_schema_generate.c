/*
 * test_json_schema_generate.c: structured output end to end. For each schema of
 * tests/json_schema/schemas.json, a random-weight model generates at temperature 1 (no top-k,
 * top-p or min-p: every allowed token can be drawn) under the schema's grammar, for many seeds,
 * and every output is handed to Python's jsonschema (tests/tools/json_schema_validate.py, format
 * assertions on). All of them must validate, and all must be complete.
 *
 * A random model has no reason to ever stop: it can nest a recursive schema forever or wander in
 * a free-text string. So past CLOSE_AFTER tokens the test adds a growing bias to the logits of the
 * tokens that close something ('"', ']' or '}') and open nothing ('{', '[', ',', ':'), as a real
 * model comes to want its answer finished. The grammar still decides which tokens may come; the
 * bias only makes the walk end in time.
 *
 * Two models:
 *   - tests/data/models/qwen2-tiny-Q8_0.gguf, 4096 synthetic SentencePiece tokens (letter
 *     n-grams and bytes): 50 seeds per schema marked "bounded" (10 under the sanitizers). Its
 *     only token with a '"' is the byte token, so a free-text string would hardly ever end:
 *     bounded schemas limit every string.
 *   - a qwen2 tiny model with the real Qwen2 vocabulary (151936 tokens, written by mkmodel into
 *     the build folder once, shared with chat.test.sh): every schema, 3 seeds (1 under the
 *     sanitizers). Its tokens span several JSON symbols ("{\"", "\":", "},{") and split
 *     multi-byte characters.
 */
#include "grammar/json_schema.h"
#include "model/mkmodel.h"
#include "model/model.h"
#include "sample/sampler.h"
#include "test.h"
#include "tokenizer/tokenizer.h"

#include <libgen.h>
#include <unistd.h>

#define SYNTH_MODEL "tests/data/models/qwen2-tiny-Q8_0.gguf"
#define QWEN2_VOCAB "tests/data/vocab/ggml-vocab-qwen2.gguf"
#if defined(__SANITIZE_ADDRESS__) // the sanitizer run checks memory, not coverage: fewer seeds
#define SYNTH_SEEDS 10
#define REAL_SEEDS 1
#else
#define SYNTH_SEEDS 50
#define REAL_SEEDS 3
#endif
#define MAX_NEW 1000    // tokens per output at most
#define CLOSE_AFTER 150 // tokens before the closing bias starts
#define CLOSE_STEP 0.05f

typedef struct gen_model {
    nuri_model *m;
    nuri_vocab *v;
    nuri_token_trie *t;
    nuri_ctx *c;
    float *prompt_logits; // the logits after the prompt, reused by every generation
    int32_t n_prompt;
    float *biased;    // (n_vocab) logits with the closing bias
    int32_t *closers; // tokens whose text closes something and opens nothing
    int32_t n_closers;
} gen_model;

static void model_close(gen_model *gm)
{
    free(gm->prompt_logits);
    free(gm->biased);
    free(gm->closers);
    nuri_ctx_free(gm->c);
    nuri_token_trie_free(gm->t);
    nuri_vocab_free(gm->v);
    nuri_model_free(gm->m);
    memset(gm, 0, sizeof *gm);
}

static bool model_open(gen_model *gm, const char *path)
{
    memset(gm, 0, sizeof *gm);
    if (nuri_model_load(path, &gm->m) != NURI_OK ||
        nuri_vocab_load(gm->m->file, &gm->v) != NURI_OK ||
        nuri_token_trie_new(gm->v, gm->m->hp.n_vocab, &gm->t) != NURI_OK) {
        fprintf(stderr, "  %s: %s\n", path, nuri_last_error());
        return false;
    }
    nuri_ctx_params cp = {.n_ctx = 1024, .n_threads = 1};
    const char *prompt = "Answer in JSON:";
    int32_t *ids;
    size_t n;
    if (nuri_ctx_new(gm->m, &cp, &gm->c) != NURI_OK ||
        nuri_tokenize(gm->v, prompt, strlen(prompt), NURI_TOK_ADD_SPECIAL, &ids, &n) != NURI_OK)
        return false;
    bool ok = nuri_ctx_decode(gm->c, ids, (int32_t)n, 0, false) == NURI_OK;
    free(ids);
    gm->n_prompt = (int32_t)n;
    size_t nv = (size_t)gm->m->hp.n_vocab;
    gm->prompt_logits = malloc(sizeof *gm->prompt_logits * nv);
    gm->biased = malloc(sizeof *gm->biased * nv);
    gm->closers = malloc(sizeof *gm->closers * nv);
    if (!ok || !gm->prompt_logits || !gm->biased || !gm->closers) return false;
    for (int32_t id = 0; id < (int32_t)nv; id++) {
        size_t k;
        const char *t = nuri_token_trie_text(gm->t, id, &k);
        bool closes = memchr(t, '"', k) || memchr(t, ']', k) || memchr(t, '}', k);
        bool opens =
            memchr(t, '{', k) || memchr(t, '[', k) || memchr(t, ',', k) || memchr(t, ':', k);
        if (closes && !opens) gm->closers[gm->n_closers++] = id;
    }
    memcpy(gm->prompt_logits, nuri_ctx_logits(gm->c, 0),
           sizeof *gm->prompt_logits * (size_t)gm->m->hp.n_vocab);
    return true;
}

/* Generates under g with the seed; the text goes to out (cap bytes, NUL-terminated). Returns the
 * number of tokens, -1 on a failure; *complete says whether the grammar was completed. */
static int generate(gen_model *gm, nuri_grammar *g, uint64_t seed, char *out, size_t cap,
                    bool *complete)
{
    nuri_sampler_params sp = nuri_sampler_params_default();
    sp.seed = seed;
    sp.grammar = g;
    sp.grammar_tokens = gm->t;
    nuri_sampler *s;
    if (nuri_sampler_new(&sp, gm->m->hp.n_vocab, &s) != NURI_OK) return -1;
    nuri_ctx_seq_truncate(gm->c, 0, gm->n_prompt);
    const float *logits = gm->prompt_logits;
    size_t len = 0;
    int n = 0;
    *complete = false;
    for (; n < MAX_NEW; n++) {
        if (n > CLOSE_AFTER) {
            memcpy(gm->biased, logits, sizeof *gm->biased * (size_t)gm->m->hp.n_vocab);
            for (int32_t k = 0; k < gm->n_closers; k++)
                gm->biased[gm->closers[k]] += CLOSE_STEP * (float)(n - CLOSE_AFTER);
            logits = gm->biased;
        }
        int32_t tok;
        if (nuri_sampler_sample(s, logits, &tok, NULL) != NURI_OK ||
            nuri_sampler_accept(s, tok) != NURI_OK) {
            fprintf(stderr, "  seed %llu: %s\n", (unsigned long long)seed, nuri_last_error());
            n = -1;
            break;
        }
        nuri_finish_reason fr = nuri_sampler_finish_reason(s, tok);
        if (fr == NURI_FINISH_STOP) { // an end-of-generation token: only where the grammar ends
            *complete = nuri_sampler_grammar_can_end(s);
            break;
        }
        size_t k;
        const char *piece = nuri_token_trie_text(gm->t, tok, &k);
        if (len + k < cap) {
            memcpy(out + len, piece, k);
            len += k;
        }
        if (fr == NURI_FINISH_GRAMMAR) {
            *complete = true;
            n++;
            break;
        }
        if (nuri_ctx_decode(gm->c, &tok, 1, gm->n_prompt + n, false) != NURI_OK) {
            n = -1;
            break;
        }
        logits = nuri_ctx_logits(gm->c, 0);
    }
    out[len] = 0;
    nuri_sampler_free(s);
    return n;
}

/* Runs every schema (all, or only the bounded ones) for n_seeds seeds, writing one JSON line per
 * output to the validator. */
static void sweep(gen_model *gm, const json_t *schemas, bool bounded_only, int n_seeds,
                  FILE *validator, const char *label)
{
    static char out[1 << 16];
    size_t i;
    json_t *e;
    int outputs = 0, tokens = 0, longest = 0, incomplete = 0;
    json_array_foreach(schemas, i, e)
    {
        const char *name = json_string_value(json_object_get(e, "name"));
        if (bounded_only && !json_is_true(json_object_get(e, "bounded"))) continue;
        json_t *schema = json_object_get(e, "schema");
        nuri_grammar *g = NULL;
        char path[256];
        nuri_status st = json_is_true(json_object_get(e, "json_object"))
                             ? nuri_json_object_grammar(&g)
                             : nuri_json_schema_grammar(schema, &g, path, sizeof path);
        CHECKF(st == NURI_OK, "%s: %s", name, nuri_last_error());
        if (st != NURI_OK) continue;
        for (int seed = 1; seed <= n_seeds; seed++) {
            bool complete;
            int n = generate(gm, g, (uint64_t)seed, out, sizeof out, &complete);
            CHECKF(n >= 0, "%s seed %d failed", name, seed);
            if (n < 0) continue;
            outputs++;
            tokens += n;
            if (n > longest) longest = n;
            incomplete += !complete;
            json_t *line = json_pack("{s:s, s:i, s:O, s:s, s:b}", "name", name, "seed", seed,
                                     "schema", schema, "output", out, "complete", complete);
            char *text = line ? json_dumps(line, JSON_COMPACT) : NULL;
            if (text) fprintf(validator, "%s\n", text);
            CHECK(text != NULL);
            free(text);
            json_decref(line);
        }
        nuri_grammar_free(g);
    }
    printf("  %s, %d seeds: %d outputs, %d tokens (longest %d), %d incomplete\n", label, n_seeds,
           outputs, tokens, longest, incomplete);
    CHECK(incomplete == 0);
}

static json_t *schemas;
static const char *real_model_path;

TEST(outputs_of_a_random_model_with_a_synthetic_vocabulary_validate)
{
    gen_model gm;
    REQUIRE(model_open(&gm, SYNTH_MODEL));
    FILE *py = popen("python3 tests/tools/json_schema_validate.py", "w");
    REQUIRE(py != NULL);
    sweep(&gm, schemas, true, SYNTH_SEEDS, py, "synthetic vocabulary");
    int status = pclose(py);
    CHECKF(status == 0, "the validator reported failures (status %d)", status);
    model_close(&gm);
}

TEST(outputs_of_a_random_model_with_the_qwen2_vocabulary_validate)
{
    gen_model gm;
    REQUIRE(real_model_path != NULL);
    REQUIRE(model_open(&gm, real_model_path));
    FILE *py = popen("python3 tests/tools/json_schema_validate.py", "w");
    REQUIRE(py != NULL);
    sweep(&gm, schemas, false, REAL_SEEDS, py, "Qwen2 vocabulary");
    int status = pclose(py);
    CHECKF(status == 0, "the validator reported failures (status %d)", status);
    model_close(&gm);
}

/* The qwen2 model with the real vocabulary: next to this program, or in build/tests/ (a sanitizer
 * build uses the plain build's copy: writing it under ASan is slow), else written now. */
static const char *find_real_model(const char *argv0)
{
    static char here[1024];
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", argv0);
    snprintf(here, sizeof here, "%s/chat-qwen2-tiny.gguf", dirname(dir));
    if (access(here, R_OK) == 0) return here;
    if (access("build/tests/chat-qwen2-tiny.gguf", R_OK) == 0)
        return "build/tests/chat-qwen2-tiny.gguf";
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp%d", here, (int)getpid());
    nuri_mkmodel_params p = {
        .arch = "qwen2", .shape = "tiny", .type = "Q8_0", .vocab = QWEN2_VOCAB, .seed = 1};
    if (nuri_mkmodel(&p, tmp) != NURI_OK || rename(tmp, here) != 0) {
        fprintf(stderr, "  cannot write %s: %s\n", here, nuri_last_error());
        unlink(tmp);
        return NULL;
    }
    return here;
}

int main(int argc, char **argv)
{
    (void)argc;
    json_error_t err;
    schemas = json_load_file("tests/json_schema/schemas.json", 0, &err);
    if (!schemas) {
        fprintf(stderr, "tests/json_schema/schemas.json: %s\n", err.text);
        return 1;
    }
    real_model_path = find_real_model(argv[0]);
    RUN(outputs_of_a_random_model_with_a_synthetic_vocabulary_validate);
    RUN(outputs_of_a_random_model_with_the_qwen2_vocabulary_validate);
    json_decref(schemas);
    TEST_DONE();
}
