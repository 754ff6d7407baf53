/*
 * main.c: the nuri command: finds the subcommand and runs it. Only this file's main exits.
 */
#include "cli/cli.h"
#include "nuri.h"

#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    cli_cmd_fn fn;
    const char *help;
} commands[] = {
    {"eval", cmd_eval, "next-token log-probabilities at every prompt position (JSON lines)"},
    {"run", cmd_run, "greedy continuation of a prompt"},
    {"chat", cmd_chat, "talk with a model (interactive, with its chat template)"},
    {"mkmodel", cmd_mkmodel, "write a random-weight model with a real shape"},
    {"serve", cmd_serve, "OpenAI-compatible HTTP server (chat, completions, metrics)"},
    {"info", cmd_info, "show a GGUF file's metadata and tensors"},
    {"bench", cmd_bench, "prompt and generation speed (tokens/s, GB/s of weights)"},
    {"quantize", cmd_quantize, "convert a model's weights to another type or mix"},
    {"tokenize", cmd_tokenize, "show how a model's vocabulary tokenizes a text"},
    {"template", cmd_template, "render a chat template over messages"},
    {"pull", cmd_pull, "download a model from Hugging Face into the cache (resumable, verified)"},
    {"ls", cmd_ls, "list the models in the cache"},
    {"rm", cmd_rm, "remove a model from the cache"},
    {"version", cmd_version, "print the version"},
};

int cli_fail(const char *what)
{
    fprintf(stderr, "nuri: %s: %s\n", what, nuri_last_error());
    return 1;
}

int cmd_version(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("nuri %s\n", NURI_VERSION);
    return 0;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: nuri <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(out,
            "\nRun 'nuri <command> --help' for a command's options.\n"
            "run, eval, bench and serve also take --pp N: a pipeline of the N processes of an\n"
            "MPI job (mpirun -np N nuri-mpi ... --pp N; make MPI=1 builds nuri-mpi).\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) return cmd_version(argc - 1, argv + 1);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(argv[1], commands[i].name)) continue;
        int sub_argc = argc - 1;
        long pp;
        if (cli_pp_take(&sub_argc, argv + 1, &pp)) return 2;
        if (pp > 0) return cli_pp_run(commands[i].fn, commands[i].name, sub_argc, argv + 1, pp);
        return commands[i].fn(sub_argc, argv + 1);
    }
    fprintf(stderr, "nuri: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
