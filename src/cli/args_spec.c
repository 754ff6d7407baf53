/*
 * args_spec.c: the speculative decoding options of args_spec.h.
 */
#include "cli/args_spec.h"

#include "cli/args.h"

#include <stdio.h>
#include <string.h>

int args_spec_option(int argc, char **argv, int *i, args_spec *a)
{
    const char *o = argv[*i], *v;
    if (!strcmp(o, "--draft")) {
        return (a->draft_path = args_value(argc, argv, i)) ? 1 : -1;
    } else if (!strcmp(o, "--draft-lookup")) {
        if (!(v = args_value(argc, argv, i)) ||
            !args_int(v, 0, ARGS_SPEC_MAX, "--draft-lookup", &a->draft_max))
            return -1;
        a->lookup = a->draft_max > 0;
    } else if (!strcmp(o, "--draft-max")) {
        if (!(v = args_value(argc, argv, i)) ||
            !args_int(v, 1, ARGS_SPEC_MAX, "--draft-max", &a->draft_max))
            return -1;
    } else if (!strcmp(o, "--draft-min")) {
        if (!(v = args_value(argc, argv, i)) ||
            !args_int(v, 0, ARGS_SPEC_MAX, "--draft-min", &a->draft_min))
            return -1;
    } else if (!strcmp(o, "--draft-p-min")) {
        if (!(v = args_value(argc, argv, i)) ||
            !args_float(v, 0.0, 1.0, "--draft-p-min", &a->p_min))
            return -1;
    } else if (!strcmp(o, "--draft-greedy")) {
        a->greedy = true;
    } else {
        return 0;
    }
    return 1;
}

bool args_spec_check(args_spec *a, const char *cmd)
{
    if (a->draft_path && a->draft_max == 0) a->draft_max = 8;
    if (a->draft_max > 0 && !a->lookup && !a->draft_path) {
        fprintf(stderr, "nuri: %s: --draft-max needs --draft FILE or --draft-lookup K\n", cmd);
        return false;
    }
    if ((a->draft_min || a->greedy || a->p_min > 0.0f) && !a->draft_max) {
        fprintf(stderr,
                "nuri: %s: --draft-min, --draft-p-min and --draft-greedy need --draft FILE or "
                "--draft-lookup K\n",
                cmd);
        return false;
    }
    if ((a->greedy || a->p_min > 0.0f) && !a->draft_path) {
        fprintf(stderr, "nuri: %s: --draft-p-min and --draft-greedy need --draft FILE\n", cmd);
        return false;
    }
    if (a->draft_min > a->draft_max) {
        fprintf(stderr, "nuri: %s: --draft-min %ld is more than the draft size %ld\n", cmd,
                a->draft_min, a->draft_max);
        return false;
    }
    return true;
}
