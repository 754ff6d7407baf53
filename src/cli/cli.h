/*
 * cli.h: the nuri command's subcommands. Each lives in its own cmd_<name>.c and is listed in
 * main.c's table. A subcommand returns the process exit status (0 ok, 1 failure, 2 usage).
 */
#ifndef NURI_CLI_H
#define NURI_CLI_H

typedef int (*cli_cmd_fn)(int argc, char **argv); // argv[0] is the subcommand's name

int cmd_version(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_mkmodel(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_template(int argc, char **argv);
int cmd_pull(int argc, char **argv);
int cmd_ls(int argc, char **argv);
int cmd_rm(int argc, char **argv);

/* --pp N (pipeline.c): takes "--pp N" out of a subcommand's arguments into *n (0 if absent);
 * -1 after a message when N is bad. cli_pp_run then runs the subcommand as rank 0 of an N-process
 * MPI job, or this process's later stage of it; it returns the exit status. */
int cli_pp_take(int *argc, char **argv, long *n);
int cli_pp_run(cli_cmd_fn fn, const char *cmd, int argc, char **argv, long n);

/* Prints "nuri: <what>: <nuri_last_error()>" to stderr and returns 1. */
int cli_fail(const char *what);

#endif
