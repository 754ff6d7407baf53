/*
 * args.h: small helpers the subcommands share for reading their arguments. Each prints its own
 * message to stderr on failure and returns false; the subcommand then exits with status 2.
 */
#ifndef NURI_CLI_ARGS_H
#define NURI_CLI_ARGS_H

#include <stdbool.h>
#include <stdint.h>

/* argv[*i] is an option that takes a value: advances *i and returns the value, or NULL (with a
 * message) when it is missing. */
const char *args_value(int argc, char **argv, int *i);

/* Parses a decimal integer in [lo, hi]; `what` names the option in the message. */
bool args_int(const char *s, long lo, long hi, const char *what, long *out);

/* Parses a finite decimal number in [lo, hi]. */
bool args_float(const char *s, double lo, double hi, const char *what, float *out);

/* Parses "1,2,3" into a newly allocated array (caller frees with free()). */
bool args_token_list(const char *s, int32_t **ids, int32_t *n);

#endif
