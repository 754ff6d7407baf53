/*
 * args.h: small helpers the subcommands share for reading their arguments. Each prints its own
 * message to stderr on failure and returns false; the subcommand then exits with status 2.
 */
#ifndef NURI_CLI_ARGS_H
#define NURI_CLI_ARGS_H

#include "nuri.h"

#include <stdbool.h>
#include <stdint.h>

/* The library's internal types some helpers fill (sample/sampler.h, grammar/grammar.h); commands
 * that use only include/nuri.h use the _api variants. */
struct nuri_sampler_params;
struct nuri_grammar;

/* argv[*i] is an option that takes a value: advances *i and returns the value, or NULL (with a
 * message) when it is missing. */
const char *args_value(int argc, char **argv, int *i);

/* Parses a decimal integer in [lo, hi]; `what` names the option in the message. */
bool args_int(const char *s, long lo, long hi, const char *what, long *out);

/* Parses a finite decimal number in [lo, hi]. */
bool args_float(const char *s, double lo, double hi, const char *what, float *out);

/* The sampling options run and chat share: --temp, --top-k, --top-p, --min-p, --seed,
 * --repeat-penalty, --repeat-last-n. If argv[*i] is one of them, reads it (and its value) into sp
 * and returns 1 (sets *seed_given for --seed); returns 0 if it is not one of them, -1 (with a
 * message) if its value is bad. The commands that sample also load a model: it reads the load
 * option --repack (args_repack) as well. */
int args_sampling(int argc, char **argv, int *i, struct nuri_sampler_params *sp, bool *seed_given);
/* The same options into the public API's parameters. */
int args_sampling_api(int argc, char **argv, int *i, nuri_sampling_params *sp);
#define ARGS_SAMPLING_HELP                                                                         \
    "  sampling: --temp T (0 = greedy) --top-k K --top-p P --min-p P --seed S\n"                   \
    "            --repeat-penalty R --repeat-last-n N\n" ARGS_REPACK_HELP

/* --grammar FILE (GBNF) or --json-schema FILE (a JSON Schema): compiles the one given into *out
 * (NULL when both are NULL; caller frees with nuri_grammar_free). Prints its own message, naming
 * the option, the file and, for a schema, the path of the keyword at fault. */
bool args_grammar(const char *grammar_file, const char *schema_file, struct nuri_grammar **out);
/* The same checks, keeping the file's text for nuri_sampling_params.grammar or .json_schema
 * (*text: caller frees with free(); NULL when both files are NULL). */
bool args_grammar_text(const char *grammar_file, const char *schema_file, char **text);
#define ARGS_GRAMMAR_HELP                                                                          \
    "  output: --grammar FILE (GBNF) or --json-schema FILE: only text the grammar or schema\n"     \
    "          allows is generated; generation ends where it is complete\n"

/* The load options every command that loads a model shares. args_repack reads --repack's value
 * (and sets NURI_PACK to it, so that what a command loads through other code, like the server,
 * follows it too); false with a message when it is not auto, on or off. */
bool args_repack(const char *value);
#define ARGS_REPACK_HELP                                                                           \
    "  --repack auto|on|off: copy the weights into the layout this CPU multiplies fastest (on),\n" \
    "          or read them in place from the mapped file (off: less memory, shared between\n"     \
    "          processes, a model larger than RAM still runs); auto (default) repacks when the\n"  \
    "          copy fits in available memory. NURI_PACK=auto|on|off is the same.\n"

/* The KV cache's types: --kv-type T (K and V), --kv-type-k T, --kv-type-v T, each T one of f16,
 * q8_0, q4_0 (kernels/attn.h: a quantized V is weighted as by llama.cpp's flash attention). If
 * argv[*i] is one of them, reads its value into *k and/or *v (static strings) and returns 1;
 * 0 if it is not one of them; -1 with a message naming the option when the value is bad. */
int args_kv_type(int argc, char **argv, int *i, const char **k, const char **v);
#define ARGS_KV_TYPE_HELP                                                                          \
    "  --kv-type f16|q8_0|q4_0: the KV cache's type for K and V (default f16; q8_0 holds about\n"  \
    "          twice the tokens in the same memory, q4_0 3.5x); --kv-type-k, --kv-type-v set "     \
    "one\n"                                                                                        \
    "          (llama.cpp's -ctk / -ctv; a quantized V is weighted as its flash attention does)\n"

/* Parses "1,2,3" into a newly allocated array (caller frees with free()). */
bool args_token_list(const char *s, int32_t **ids, int32_t *n);

#endif
