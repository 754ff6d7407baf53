/*
 * cmd_template.c: `nuri template` renders a chat template (from a model or a file) over messages
 * and prints the prompt exactly, with nothing added (no trailing newline).
 */
#include "chat/template.h"
#include "cli/cli.h"
#include "cli/model_arg.h"
#include "gguf/gguf.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: nuri template (-m MODEL | --file TEMPLATE.jinja) --messages MESSAGES.json\n"
            "                     [--tools TOOLS.json] [--add-generation-prompt]\n"
            "                     [--bos TEXT] [--eos TEXT] [--now 2026-11-26T09:00:00]\n"
            "                     [--vars JSON]\n\n"
            "Prints the rendered prompt, byte for byte. With -m the template is the model's\n"
            "tokenizer.chat_template and bos/eos default to the model's token texts. With --file,\n"
            "a missing --bos/--eos leaves bos_token/eos_token undefined (as transformers does for\n"
            "None). --vars adds variables, e.g. '{\"enable_thinking\": false}'. --now fixes what\n"
            "strftime_now() sees (default: the current local time).\n");
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) break;
        cap *= 2;
        char *nb = realloc(buf, cap + 1);
        if (!nb) {
            free(buf);
            buf = NULL;
        }
        buf = nb;
    }
    fclose(f);
    if (buf) {
        buf[n] = 0;
        *len = n;
    }
    return buf;
}

static json_t *load_json(const char *path, const char *what)
{
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e);
    if (!j) fprintf(stderr, "nuri: %s %s: line %d: %s\n", what, path, e.line, e.text);
    return j;
}

/* The text of token `id_key`'s id in tokenizer.ggml.tokens, copied (caller frees), or NULL. */
static char *token_text(const gguf_file *g, const char *id_key)
{
    uint32_t id;
    gguf_arr toks;
    gguf_str s;
    if (gguf_get_u32(g, id_key, &id) != NURI_OK) return NULL;
    if (gguf_get_arr(g, "tokenizer.ggml.tokens", &toks) != NURI_OK || id >= toks.n) return NULL;
    if (gguf_arr_str(&toks, id, &s) != NURI_OK) return NULL;
    char *t = malloc(s.len + 1);
    if (!t) return NULL;
    memcpy(t, s.ptr, s.len);
    t[s.len] = 0;
    return t;
}

int cmd_template(int argc, char **argv)
{
    const char *model = NULL, *file = NULL, *messages_path = NULL, *tools_path = NULL;
    const char *bos = NULL, *eos = NULL, *now_s = NULL, *vars_s = NULL;
    int add_gen = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **dst = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--add-generation-prompt")) {
            add_gen = 1;
            continue;
        }
        if (!strcmp(a, "-m") || !strcmp(a, "--model"))
            dst = &model;
        else if (!strcmp(a, "--file"))
            dst = &file;
        else if (!strcmp(a, "--messages"))
            dst = &messages_path;
        else if (!strcmp(a, "--tools"))
            dst = &tools_path;
        else if (!strcmp(a, "--bos"))
            dst = &bos;
        else if (!strcmp(a, "--eos"))
            dst = &eos;
        else if (!strcmp(a, "--now"))
            dst = &now_s;
        else if (!strcmp(a, "--vars"))
            dst = &vars_s;
        if (!dst || i + 1 >= argc) {
            fprintf(stderr, "nuri template: %s '%s'\n",
                    dst ? "missing value for" : "unknown option", a);
            usage(stderr);
            return 2;
        }
        *dst = argv[++i];
    }
    if (!!model == !!file || !messages_path) {
        fprintf(stderr, "nuri template: give one of -m / --file, and --messages\n");
        usage(stderr);
        return 2;
    }
    if (model && cli_model_arg("template", &model)) return 1;
    struct tm now_tm, *now = NULL;
    if (now_s) {
        memset(&now_tm, 0, sizeof now_tm);
        const char *end = strptime(now_s, "%Y-%m-%dT%H:%M:%S", &now_tm);
        if (!end || *end) {
            fprintf(stderr, "nuri template: --now wants YYYY-MM-DDTHH:MM:SS, got '%s'\n", now_s);
            return 2;
        }
        time_t t = timegm(&now_tm); // fills in the weekday and day of the year
        gmtime_r(&t, &now_tm);
        now = &now_tm;
    }

    int rc = 1;
    char *src = NULL, *bos_owned = NULL, *eos_owned = NULL, *out = NULL;
    size_t src_len = 0, out_len = 0;
    gguf_file *g = NULL;
    json_t *messages = NULL, *tools = NULL, *extra = NULL, *vars = NULL;
    nuri_template *t = NULL;

    if (file) {
        src = read_all(file, &src_len);
        if (!src) {
            fprintf(stderr, "nuri template: cannot read %s\n", file);
            goto done;
        }
    } else {
        if (gguf_open(model, &g) != NURI_OK) {
            rc = cli_fail(model);
            goto done;
        }
        gguf_str s;
        if (gguf_get_str(g, "tokenizer.chat_template", &s) != NURI_OK) {
            fprintf(stderr, "nuri template: %s has no tokenizer.chat_template; use --file\n",
                    model);
            goto done;
        }
        src = malloc(s.len + 1);
        if (!src) goto done;
        memcpy(src, s.ptr, s.len);
        src[s.len] = 0;
        src_len = s.len;
        if (!bos) bos = bos_owned = token_text(g, "tokenizer.ggml.bos_token_id");
        if (!eos) eos = eos_owned = token_text(g, "tokenizer.ggml.eos_token_id");
        if (!bos || !eos) {
            fprintf(stderr, "nuri template: %s does not name its %s token; pass %s\n", model,
                    !bos ? "BOS" : "EOS", !bos ? "--bos" : "--eos");
            goto done;
        }
    }
    if (!(messages = load_json(messages_path, "messages"))) goto done;
    if (tools_path && !(tools = load_json(tools_path, "tools"))) goto done;
    if (vars_s) {
        json_error_t e;
        extra = json_loads(vars_s, 0, &e);
        if (!json_is_object(extra)) {
            fprintf(stderr, "nuri template: --vars must be a JSON object (%s)\n",
                    extra ? "not an object" : e.text);
            goto done;
        }
    }
    vars = nuri_template_vars(messages, tools, add_gen, bos, eos, extra);
    if (!vars) {
        fprintf(stderr, "nuri template: out of memory\n");
        goto done;
    }
    if (nuri_template_parse(src, src_len, &t) != NURI_OK) {
        rc = cli_fail(file ? file : model);
        goto done;
    }
    if (nuri_template_render(t, vars, now, &out, &out_len) != NURI_OK) {
        rc = cli_fail("render");
        goto done;
    }
    if (fwrite(out, 1, out_len, stdout) != out_len || fflush(stdout)) {
        fprintf(stderr, "nuri template: write failed\n");
        goto done;
    }
    rc = 0;
done:
    free(out);
    nuri_template_free(t);
    json_decref(vars);
    json_decref(extra);
    json_decref(tools);
    json_decref(messages);
    free(bos_owned);
    free(eos_owned);
    free(src);
    gguf_close(g);
    return rc;
}
