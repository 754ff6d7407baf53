/*
 * cmd_mkmodel.c: `nuri mkmodel --arch A --shape S --type T [--vocab V.gguf] [--seed N]
 * [--layers N] [--template T.jinja] OUT.gguf` writes a random-weight model (see model/mkmodel.h).
 */
#include "chat/conversation.h"
#include "cli/args.h"
#include "cli/cli.h"
#include "cli/progress.h"
#include "model/mkmodel.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void mkmodel_usage(FILE *out)
{
    fprintf(
        out,
        "usage: nuri mkmodel --arch ARCH --shape SHAPE --type TYPE\n"
        "                    [--vocab VOCAB.gguf [--add-control TOKEN]...] [--seed N] [--layers "
        "N]\n"
        "                    [--ctx N] [--swa N] [--template T.jinja] OUT.gguf\n"
        "  archs: llama qwen2 qwen3 exaone exaone4 granite hyperclovax qwen3moe qwen2moe mixtral\n"
        "    gemma2 gemma3 exaone-moe gpt-oss deepseek2\n"
        "    (mixtral: a llama file with experts; MoE archs need a MoE shape)\n"
        "  shapes: %s\n"
        "  types: F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K Q4_K Q5_K Q6_K IQ4_NL IQ4_XS\n"
        "    MXFP4, mixes Q4_K_M Q5_K_M MXFP4_MOE and IQ2_XXS IQ2_XS IQ2_S IQ3_XXS IQ3_S IQ1_S\n"
        "    IQ1_M (the IQ type for the ffn_* weights, Q8_0 for the rest, Q6_K for output)\n"
        "  --vocab copies the tokenizer from another GGUF file (default: a synthetic one)\n"
        "  --add-control appends a control token to that vocabulary (repeatable), e.g. gpt-oss's\n"
        "    harmony markers <|start|> <|channel|> <|message|> <|end|> <|return|> <|call|>\n"
        "    <|constrain|> to try its chat format on another vocabulary\n"
        "  --swa N (exaone4, exaone-moe) gives 3 of every 4 layers an N-token sliding window;\n"
        "    (gemma2, gemma3) sets the window of their sliding layers (default: the shape's);\n"
        "    (gpt-oss) the window of every other layer (default 16; gpt-oss-20b: 128)\n"
        "  --ctx N sets the training context (context_length) instead of the shape's\n"
        "  --template stores the file as tokenizer.chat_template (e.g. a family's real one)\n",
        nuri_mkmodel_shapes());
}

int cmd_mkmodel(int argc, char **argv)
{
    nuri_mkmodel_params p = {.arch = "llama", .shape = "tiny", .type = "F32", .seed = 1};
    const char *out = NULL, *v, *tpl_path = NULL;
    long n;
    enum { MAX_ADD_CONTROL = 64 };
    const char *ctl[MAX_ADD_CONTROL];
    int n_ctl = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            mkmodel_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--arch")) {
            if (!(p.arch = args_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--shape")) {
            if (!(p.shape = args_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--type")) {
            if (!(p.type = args_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--vocab")) {
            if (!(p.vocab = args_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--add-control")) {
            if (!(v = args_value(argc, argv, &i))) return 2;
            if (n_ctl == MAX_ADD_CONTROL || !v[0]) {
                fprintf(stderr, "nuri: mkmodel: --add-control: %s\n",
                        v[0] ? "at most 64 tokens" : "the token is empty");
                return 2;
            }
            ctl[n_ctl++] = v;
        } else if (!strcmp(a, "--seed")) {
            if (!(v = args_value(argc, argv, &i)) || !args_int(v, 0, 0x7fffffffL, "--seed", &n))
                return 2;
            p.seed = (uint64_t)n;
        } else if (!strcmp(a, "--swa")) {
            if (!(v = args_value(argc, argv, &i)) || !args_int(v, 1, 1 << 20, "--swa", &n))
                return 2;
            p.n_swa = (int32_t)n;
        } else if (!strcmp(a, "--template")) {
            if (!(tpl_path = args_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--ctx")) {
            if (!(v = args_value(argc, argv, &i)) || !args_int(v, 16, 1 << 24, "--ctx", &n))
                return 2;
            p.n_ctx = (int32_t)n;
        } else if (!strcmp(a, "--layers")) {
            if (!(v = args_value(argc, argv, &i)) || !args_int(v, 1, 1024, "--layers", &n))
                return 2;
            p.n_layer = (int32_t)n;
        } else if (a[0] == '-' || out) {
            fprintf(stderr, "nuri: mkmodel: unexpected argument '%s'\n", a);
            mkmodel_usage(stderr);
            return 2;
        } else {
            out = a;
        }
    }
    if (!out) {
        mkmodel_usage(stderr);
        return 2;
    }
    p.add_control = ctl;
    p.n_add_control = n_ctl;
    char *tpl = NULL;
    if (tpl_path) {
        if (nuri_chat_template_read(tpl_path, &tpl, &p.chat_template_len) != NURI_OK)
            return cli_fail("mkmodel");
        p.chat_template = tpl;
    }
    cli_bar bar = {.tty = -1};
    p.progress = cli_bar_update;
    p.progress_ud = &bar;
    int rc = nuri_mkmodel(&p, out) != NURI_OK ? (cli_bar_end(&bar), cli_fail("mkmodel")) : 0;
    cli_bar_end(&bar);
    free(tpl);
    return rc;
}
