/*
 * cmd_tokenize.c: `nuri tokenize`: shows how a model's vocabulary tokenizes a text.
 *
 *   nuri tokenize -m MODEL [--no-bos] [--parse-special] [--ids] TEXT
 *   nuri tokenize -m MODEL ... --file F
 *
 * Default output: one line per token, `id<TAB>'piece'` (the piece's bytes as they are, with
 * control tokens shown by their text). --ids prints the ids as one JSON array. BOS/EOS are added
 * as the vocabulary asks unless --no-bos. Warnings from loading the vocabulary go to stderr.
 * The model file may be a vocabulary-only GGUF. It uses only the public API (include/nuri.h).
 */
#include "cli/cli.h"
#include "cli/model_arg.h"
#include "nuri.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out, "usage: nuri tokenize -m MODEL [--no-bos] [--parse-special] [--ids] TEXT\n"
                 "       nuri tokenize -m MODEL [options] --file FILE\n"
                 "  --no-bos         do not add BOS/EOS (default: as the vocabulary asks)\n"
                 "  --parse-special  text like <|im_start|> becomes the special token\n"
                 "  --ids            print the ids as a JSON array instead of id<TAB>'piece'\n");
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) break;
        char *p = realloc(buf, cap *= 2);
        if (!p) {
            free(buf);
            buf = NULL;
        } else
            buf = p;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

int cmd_tokenize(int argc, char **argv)
{
    const char *model = NULL, *file = NULL, *text = NULL;
    bool no_bos = false, parse_special = false, ids_only = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if ((!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) && i + 1 < argc)
            model = argv[++i];
        else if (!strcmp(argv[i], "--file") && i + 1 < argc)
            file = argv[++i];
        else if (!strcmp(argv[i], "--no-bos"))
            no_bos = true;
        else if (!strcmp(argv[i], "--parse-special"))
            parse_special = true;
        else if (!strcmp(argv[i], "--ids"))
            ids_only = true;
        else if (argv[i][0] == '-' && argv[i][1] && !text) {
            fprintf(stderr, "nuri tokenize: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        } else if (!text)
            text = argv[i];
        else {
            fprintf(stderr, "nuri tokenize: one TEXT only (quote it)\n");
            return 2;
        }
    }
    if (!model || (!text == !file)) {
        usage(stderr);
        return 2;
    }
    if (cli_model_arg("tokenize", &model)) return 1;
    size_t len = 0;
    char *owned = NULL;
    if (file) {
        owned = read_file(file, &len);
        if (!owned) {
            fprintf(stderr, "nuri tokenize: cannot read '%s'\n", file);
            return 1;
        }
        text = owned;
    } else
        len = strlen(text);

    nuri_model *m = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = 0;
    nuri_load_params lp;
    nuri_load_params_init(&lp, sizeof lp);
    lp.vocab_only = true;
    if (nuri_model_open(model, &lp, &m)) {
        rc = cli_fail("loading the model");
        goto done;
    }
    if (nuri_model_warnings(m)) fprintf(stderr, "nuri: warning: %s", nuri_model_warnings(m));
    unsigned flags = (no_bos ? 0 : NURI_TOKENIZE_ADD_SPECIAL) |
                     (parse_special ? NURI_TOKENIZE_PARSE_SPECIAL : 0);
    if (nuri_model_tokenize(m, text, len, flags, &ids, &n)) {
        rc = cli_fail("tokenizing");
        goto done;
    }
    if (ids_only) {
        putchar('[');
        for (size_t i = 0; i < n; i++) printf(i ? ", %d" : "%d", ids[i]);
        printf("]\n");
    } else {
        for (size_t i = 0; i < n; i++) {
            size_t plen;
            const char *p;
            nuri_model_token_piece(m, ids[i], NURI_DETOKENIZE_SPECIAL, &p, &plen);
            printf("%d\t'", ids[i]);
            fwrite(p, 1, plen, stdout);
            printf("'\n");
        }
    }
done:
    nuri_free(ids);
    nuri_model_close(m);
    free(owned);
    return rc;
}
