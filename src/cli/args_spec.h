/*
 * args_spec.h: the speculative decoding options nuri run and nuri chat share (--draft FILE,
 * --draft-lookup K, --draft-max K, --draft-min N, --draft-p-min P, --draft-greedy), parsed into
 * one struct and checked together; each command turns it into its speculator's parameters.
 */
#ifndef NURI_CLI_ARGS_SPEC_H
#define NURI_CLI_ARGS_SPEC_H

#include <stdbool.h>

#define ARGS_SPEC_MAX 32 // tokens one draft may hold (the speculator's limit)

typedef struct args_spec {
    const char *draft_path; // --draft (a path or a model name), NULL: none
    long draft_max;         // 0: speculation off (after args_spec_check)
    long draft_min;
    bool lookup;
    bool greedy;
    float p_min;
} args_spec;

/* argv[*i] if it is one of the options (advancing *i past its value): 1; not one: 0; a bad value
 * (said on stderr): -1. */
int args_spec_option(int argc, char **argv, int *i, args_spec *a);

/* The options together: fills the default draft size and refuses combinations that mean nothing
 * (said on stderr, naming cmd). */
bool args_spec_check(args_spec *a, const char *cmd);

#define ARGS_SPEC_HELP                                                                             \
    "speculative decoding (-v: forward passes, tokens drafted and accepted):\n"                    \
    "  --draft-lookup K   up to K tokens drafted from earlier text (the last 1-3\n"                \
    "                     tokens found before, what followed them)\n"                              \
    "  --draft FILE       a draft model of the same vocabulary drafts (a smaller or\n"             \
    "                     harder-quantized model); with --draft-lookup, lookup first\n"            \
    "  --draft-max K      tokens per draft (default 8; 1..32)\n"                                   \
    "  --draft-min N      a shorter draft is not checked (default 0)\n"                            \
    "  --draft-p-min P    a draft stops where the draft model gives its token less\n"              \
    "                     than P (its softmax at temperature 1)\n"                                 \
    "  --draft-greedy     the draft model drafts its most likely token at any --temp\n"            \
    "  each draft is checked in one forward pass. Greedy, and with prompt lookup or\n"             \
    "  --draft-greedy, the output is the same as without speculation (same seed);\n"               \
    "  a draft model at --temp > 0 is checked by rejection sampling: the output has\n"             \
    "  the same distribution, but a seed gives another sample\n"

#endif
