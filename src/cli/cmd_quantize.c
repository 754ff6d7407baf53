/*
 * cmd_quantize.c: `nuri quantize IN.gguf OUT.gguf TYPE [--pure] [--allow-requantize]`: converts a
 * model's weights to a type (F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K Q4_K Q5_K Q6_K IQ4_NL
 * IQ4_XS MXFP4) or a
 * mix (Q4_K_M, Q5_K_M, and the grid types below 4 bits, IQ2_XXS IQ2_XS IQ2_S IQ3_XXS IQ3_S IQ1_S
 * IQ1_M, which give their type to the feed-forward weights only); --pure gives every 2-D tensor the
 * one type (a mix's base type). A source that is already quantized is refused unless
 * --allow-requantize. See model/quantize.h.
 */
#include "cli/cli.h"
#include "cli/model_arg.h"
#include "cli/progress.h"
#include "model/quantize.h"

#include <stdio.h>
#include <string.h>

static void quantize_usage(FILE *out)
{
    fprintf(out, "usage: nuri quantize IN.gguf OUT.gguf TYPE [--pure] [--allow-requantize]\n"
                 "  TYPE: F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K Q4_K Q5_K Q6_K,\n"
                 "        IQ4_NL IQ4_XS (rows not of 256: IQ4_NL) MXFP4,\n"
                 "        or a mix: Q4_K_M Q5_K_M (Q6_K for output, some attn_v / ffn_down),\n"
                 "        MXFP4_MOE (experts MXFP4, everything else Q8_0: gpt-oss's own files)\n"
                 "        IQ2_XXS IQ2_XS IQ2_S IQ3_XXS IQ3_S IQ1_S IQ1_M (the type for the\n"
                 "        ffn_* weights and experts, Q8_0 for the rest, Q6_K for output; no\n"
                 "        importance matrix is needed or read)\n"
                 "  --pure  every 2-D tensor gets the one type (a mix: its base type)\n"
                 "  --allow-requantize  convert a model that is already quantized (refused\n"
                 "          otherwise: the rounding errors of both types add up)\n");
}

int cmd_quantize(int argc, char **argv)
{
    const char *pos[3] = {0};
    int n_pos = 0;
    nuri_quant_opts o = {0};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            quantize_usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--pure")) {
            o.pure = true;
        } else if (!strcmp(argv[i], "--allow-requantize")) {
            o.allow_requantize = true;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "nuri: quantize: unknown option '%s'\n", argv[i]);
            quantize_usage(stderr);
            return 2;
        } else if (n_pos < 3) {
            pos[n_pos++] = argv[i];
        } else {
            fprintf(stderr, "nuri: quantize: unexpected argument '%s'\n", argv[i]);
            quantize_usage(stderr);
            return 2;
        }
    }
    if (n_pos != 3) {
        quantize_usage(stderr);
        return 2;
    }
    if (!nuri_quant_name_ok(pos[2])) {
        fprintf(stderr, "nuri: quantize: unknown type '%s'\n", pos[2]);
        quantize_usage(stderr);
        return 2;
    }
    if (cli_model_arg("quantize", &pos[0])) return 1;
    nuri_quant_stats st;
    cli_bar bar = {.tty = -1, .bytes = true};
    o.progress = cli_bar_update;
    o.progress_ud = &bar;
    nuri_status s = nuri_quantize_file_with(pos[0], pos[1], pos[2], &o, &st);
    cli_bar_end(&bar);
    if (s != NURI_OK) {
        cli_fail("quantize");
        if (st.already_quantized)
            fprintf(stderr, "nuri: quantize: --allow-requantize converts it all the same\n");
        return 1;
    }
    printf("%s -> %s (%s%s): %llu tensors, %llu converted, %.1f MiB -> %.1f MiB\n", pos[0], pos[1],
           pos[2], o.pure ? ", pure" : "", (unsigned long long)st.n_tensors,
           (unsigned long long)st.n_converted, (double)st.bytes_in / 1048576.0,
           (double)st.bytes_out / 1048576.0);
    return 0;
}
