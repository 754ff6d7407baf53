/*
 * generate.c: continue a prompt with a model, through libnuri's public API only.
 *
 *   cc generate.c $(pkg-config --cflags --libs nuri) -o generate
 *   ./generate MODEL.gguf "Once upon a time" 32
 *
 * Prints the prompt and its greedy continuation (as `nuri run -p TEXT -n N` does), streamed as
 * the tokens come, and the generated token ids on stderr. Loading reports its progress.
 */
#include <nuri.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool on_progress(float fraction, void *user_data)
{
    int *calls = user_data;
    (*calls)++;
    (void)fraction;
    return true; // false would cancel loading
}

static bool on_token(int32_t token, const char *text, size_t len, void *user_data)
{
    FILE *ids = user_data;
    if (token >= 0) fprintf(ids, " %d", token);
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return true; // false would stop generating
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL.gguf PROMPT N_TOKENS\n", argv[0]);
        return 2;
    }
    const char *path = argv[1], *prompt = argv[2];
    int n_predict = atoi(argv[3]);
    if (strcmp(nuri_version(), NURI_VERSION) != 0)
        fprintf(stderr, "note: built with nuri.h %s, running libnuri %s\n", NURI_VERSION,
                nuri_version());

    int progress_calls = 0;
    nuri_load_params lp;
    nuri_load_params_init(&lp, sizeof lp);
    lp.progress = on_progress;
    lp.progress_user_data = &progress_calls;
    nuri_model *model;
    if (nuri_model_open(path, &lp, &model) != NURI_OK) {
        fprintf(stderr, "generate: %s\n", nuri_last_error());
        return 1;
    }
    fprintf(stderr, "loaded %s (%s, %d layers, trained context %d) with %d progress calls\n", path,
            nuri_model_arch(model), nuri_model_n_layer(model), nuri_model_n_ctx_train(model),
            progress_calls);

    int32_t *tokens = NULL;
    size_t n_tokens = 0;
    nuri_context *ctx = NULL;
    nuri_sampler_chain *sampler = NULL;
    int rc = 1;
    if (nuri_model_tokenize(model, prompt, strlen(prompt), NURI_TOKENIZE_ADD_SPECIAL, &tokens,
                            &n_tokens) != NURI_OK)
        goto fail;

    nuri_context_params cp;
    nuri_context_params_init(&cp, sizeof cp);
    cp.n_ctx = (int32_t)n_tokens + n_predict;
    if (nuri_context_new(model, &cp, &ctx) != NURI_OK) goto fail;

    nuri_sampling_params sp;
    nuri_sampling_params_init(&sp, sizeof sp);
    sp.temperature = 0.0f; // greedy
    if (nuri_sampler_chain_new(model, &sp, &sampler) != NURI_OK) goto fail;

    nuri_generate_params gp;
    nuri_generate_params_init(&gp, sizeof gp);
    gp.max_tokens = n_predict;
    gp.on_token = on_token;
    gp.user_data = stderr;
    fputs(prompt, stdout);
    fprintf(stderr, "tokens:");
    int32_t n_generated;
    nuri_end_reason why;
    if (nuri_generate(ctx, sampler, tokens, n_tokens, &gp, &n_generated, &why) != NURI_OK)
        goto fail;
    printf("\n");
    fprintf(stderr, "\n%d tokens generated, %s\n", n_generated,
            why == NURI_END_LENGTH ? "as many as asked for" : "the model ended its text");
    rc = 0;
fail:
    if (rc) fprintf(stderr, "generate: %s\n", nuri_last_error());
    nuri_sampler_chain_free(sampler);
    nuri_context_free(ctx);
    nuri_free(tokens);
    nuri_model_close(model);
    return rc;
}
