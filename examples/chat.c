/*
 * chat.c: one question to a chat model, with the model's chat template, through libnuri's public
 * API only.
 *
 *   cc chat.c $(pkg-config --cflags --libs nuri) -o chat
 *   ./chat MODEL.gguf "What is a GGUF file?" 64
 *
 * Prints the answer (as `nuri run --chat -p TEXT -n N` does); the rendered prompt goes to stderr.
 */
#include <nuri.h>

#include <stdio.h>
#include <stdlib.h>

static bool print_text(int32_t token, const char *text, size_t len, void *user_data)
{
    (void)token;
    (void)user_data;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return true;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL.gguf QUESTION N_TOKENS\n", argv[0]);
        return 2;
    }
    nuri_model *model;
    if (nuri_model_open(argv[1], NULL, &model) != NURI_OK) {
        fprintf(stderr, "chat: %s\n", nuri_last_error());
        return 1;
    }
    const char *roles[] = {"user"};
    const char *contents[] = {argv[2]};
    nuri_chat *chat = NULL;
    nuri_context *ctx = NULL;
    nuri_sampler_chain *sampler = NULL;
    char *text = NULL;
    size_t text_len;
    int32_t *tokens = NULL;
    size_t n_tokens;
    int rc = 1;
    // the model's template (ChatML when it has none); the prompt as text, then as tokens, where
    // the user's text can never become control tokens
    if (nuri_chat_new(model, NULL, 0, &chat) != NURI_OK ||
        nuri_chat_apply(chat, roles, contents, 1, true, &text, &text_len) != NURI_OK ||
        nuri_chat_tokens(chat, roles, contents, 1, true, &tokens, &n_tokens) != NURI_OK)
        goto done;
    fprintf(stderr, "%s--- prompt: %zu bytes, %zu tokens%s\n", text, text_len, n_tokens,
            nuri_chat_is_fallback(chat) ? " (ChatML: the model has no template)" : "");

    nuri_context_params cp;
    nuri_context_params_init(&cp, sizeof cp);
    cp.n_ctx = (int32_t)n_tokens + atoi(argv[3]);
    nuri_sampling_params sp;
    nuri_sampling_params_init(&sp, sizeof sp);
    sp.temperature = 0.0f;
    if (nuri_context_new(model, &cp, &ctx) != NURI_OK ||
        nuri_sampler_chain_new(model, &sp, &sampler) != NURI_OK)
        goto done;

    nuri_generate_params gp;
    nuri_generate_params_init(&gp, sizeof gp);
    gp.max_tokens = atoi(argv[3]);
    gp.chat = chat; // its end-of-turn tokens and stop strings end the answer
    gp.on_token = print_text;
    if (nuri_generate(ctx, sampler, tokens, n_tokens, &gp, NULL, NULL) != NURI_OK) goto done;
    printf("\n");
    rc = 0;
done:
    if (rc) fprintf(stderr, "chat: %s\n", nuri_last_error());
    nuri_free(tokens);
    nuri_free(text);
    nuri_sampler_chain_free(sampler);
    nuri_context_free(ctx);
    nuri_chat_free(chat);
    nuri_model_close(model);
    return rc;
}
