/*
 * cmd_info.c: `nuri info [--json] MODEL`: what is in a GGUF file.
 *
 * Prints the GGUF version, architecture and name, every metadata key (arrays summarized by element
 * type, count and first values), a tensor table (name, type, shape, bytes, offset) and totals
 * (tensors, parameters, bytes, bytes by type). With --json the same as one JSON object. The file is
 * validated by gguf_open first; a bad file exits 1 with "nuri: info: <path>: <message>".
 */
#include "cli/args.h"
#include "cli/cli.h"
#include "cli/model_arg.h"
#include "model/model.h"
#include "gguf/gguf.h"
#include "kernels/types.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INFO_STR_MAX 80   // bytes of a string value shown in text output
#define INFO_ARR_FIRST 4  // array elements shown in text output
#define INFO_JSON_FIRST 8 // array elements shown in JSON output

/* ---- text output ---- */

/* Prints s quoted, escaping control bytes, quotes and backslashes; at most max bytes. */
static void print_str(FILE *out, gguf_str s, uint64_t max)
{
    uint64_t n = s.len < max ? s.len : max;
    fputc('"', out);
    for (uint64_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", out);
        else if (c < 0x20 || c == 0x7f)
            fprintf(out, "\\x%02x", c);
        else
            fputc(c, out);
    }
    fputc('"', out);
    if (n < s.len) fprintf(out, "... (%llu bytes)", (unsigned long long)s.len);
}

static void print_scalar(FILE *out, const gguf_kv *kv)
{
    uint64_t u;
    int64_t i;
    double d;
    bool b;
    gguf_str s;
    if (gguf_kv_u64(kv, &u) == NURI_OK)
        fprintf(out, "%llu", (unsigned long long)u);
    else if (gguf_kv_i64(kv, &i) == NURI_OK)
        fprintf(out, "%lld", (long long)i);
    else if (gguf_kv_f64(kv, &d) == NURI_OK)
        fprintf(out, "%.9g", d);
    else if (gguf_kv_bool(kv, &b) == NURI_OK)
        fputs(b ? "true" : "false", out);
    else if (gguf_kv_str(kv, &s) == NURI_OK)
        print_str(out, s, INFO_STR_MAX);
}

static void print_arr_elem(FILE *out, const gguf_arr *a, uint64_t j)
{
    gguf_str s;
    int64_t i;
    float x;
    if (gguf_arr_str(a, j, &s) == NURI_OK)
        print_str(out, s, 32);
    else if (gguf_arr_i64(a, j, &i) == NURI_OK)
        fprintf(out, "%lld", (long long)i);
    else if (gguf_arr_f32(a, j, &x) == NURI_OK)
        fprintf(out, "%.9g", x);
    else if (a->type == GGUF_TYPE_BOOL)
        fputs(((const unsigned char *)a->data)[j] ? "true" : "false", out);
    else
        fputs("?", out); // uint64 over INT64_MAX
}

static void shape_str(const gguf_tensor *t, char *buf, size_t cap)
{
    size_t o = 0;
    for (uint32_t d = 0; d < t->n_dims && o < cap; d++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%lld", d ? " x " : "", (long long)t->ne[d]);
}

static uint64_t n_elements(const gguf_tensor *t)
{
    // the reader checked that the product fits in int64
    return (uint64_t)t->ne[0] * (uint64_t)t->ne[1] * (uint64_t)t->ne[2] * (uint64_t)t->ne[3];
}

static const char *type_name(uint32_t type)
{
    const nuri_type_info *ti = nuri_type_get(type);
    return ti ? ti->name : "?";
}

/* The model as nuri reads it: family, hyperparameters, and whether it runs (and why not). */
static void print_model(FILE *out, const char *path)
{
    nuri_model *m;
    // only whether it loads: the weights stay in the file, not repacked
    nuri_model_load_opts o = {.repack = NURI_REPACK_OFF};
    if (nuri_model_load_with(path, &o, &m) != NURI_OK) {
        fprintf(out, "runs:         no: %s\n", nuri_last_error());
        return;
    }
    const nuri_hparams *hp = &m->hp;
    fprintf(out, "family:       %s\n", nuri_model_family(m));
    fprintf(out, "runs:         yes (%.1f MiB of weights read per token)\n",
            (double)nuri_model_bytes_per_token(m) / 1048576.0);
    fprintf(
        out,
        "hparams:      n_vocab %d, n_embd %d, n_layer %d, n_head %d, n_head_kv %d, head_dim %d, "
        "n_ff %d, n_ctx_train %d\n",
        hp->n_vocab, hp->n_embd, hp->n_layer, hp->n_head, hp->n_head_kv, hp->head_dim, hp->n_ff,
        hp->n_ctx_train);
    fprintf(out, "              rope %s over %d dims, base %g%s; rms eps %g; %s%s\n",
            hp->rope_type == NURI_ROPE_NEOX ? "neox" : "norm", hp->n_rot,
            (double)hp->rope_freq_base, m->rope_freqs ? ", rope_freqs scaling" : "",
            (double)hp->rms_eps, hp->pre_norm ? "pre-norms" : "no pre-norms",
            hp->post_norm ? " + post-norms" : "");
    uint64_t total, active;
    nuri_model_params(m, &total, &active);
    if (hp->n_expert > 0)
        fprintf(out,
                "params:       %.3f B total, %.3f B active per token (%d experts of width %d, %d "
                "used per token)\n",
                (double)total / 1e9, (double)active / 1e9, hp->n_expert, hp->n_ff_exp,
                hp->n_expert_used);
    else
        fprintf(out, "params:       %.3f B\n", (double)total / 1e9);
    if (hp->embd_scale != 1.0f || hp->residual_scale != 1.0f || hp->logit_scale != 1.0f)
        fprintf(out, "              scales: embedding %g, residual %g, attention %g, logits 1/%g\n",
                (double)hp->embd_scale, (double)hp->residual_scale, (double)hp->attn_scale,
                (double)hp->logit_scale);
    if (hp->n_swa > 0) {
        int n = 0;
        for (int il = 0; il < hp->n_layer; il++) n += m->layers[il].swa;
        fprintf(out, "              sliding window %d tokens on %d of %d layers\n", hp->n_swa, n,
                hp->n_layer);
        if (n > 0 && (hp->rope_freq_base_swa != hp->rope_freq_base ||
                      hp->rope_freq_scale_swa != hp->rope_freq_scale))
            fprintf(out, "              rope on sliding layers: base %g, scale %g\n",
                    (double)hp->rope_freq_base_swa, (double)hp->rope_freq_scale_swa);
    }
    if (hp->rope_freq_scale != 1.0f && !hp->rope_yarn)
        fprintf(out, "              linear rope scaling: positions x %g\n",
                (double)hp->rope_freq_scale);
    if (hp->ffn_geglu)
        fprintf(out,
                "              GeGLU feed-forward; attention scale %g on Q; soft-caps: attention "
                "%g, logits %g (0: none)\n",
                (double)hp->attn_scale, (double)hp->attn_softcap, (double)hp->final_softcap);
    if (hp->rope_yarn)
        fprintf(out, "              rope YaRN x%g over %d original positions (magnitude %.4f)\n",
                (double)(1.0f / hp->rope_freq_scale), hp->n_ctx_orig, (double)hp->rope_mscale);
    if (hp->arch == NURI_ARCH_GPTOSS)
        fprintf(out,
                "              attention sinks and biases; router: top %d of the biased "
                "logits, softmax over them; clamped SwiGLU experts with biases\n",
                hp->n_expert_used);
    nuri_model_free(m);
}

static void print_text(FILE *out, const char *path, const gguf_file *f)
{
    gguf_str s;
    fprintf(out, "file:         %s\n", path);
    fprintf(out, "gguf version: %u\n", gguf_version(f));
    fprintf(out, "architecture: ");
    if (gguf_get_str(f, "general.architecture", &s) == NURI_OK)
        fprintf(out, "%.*s\n", (int)(s.len < 64 ? s.len : 64), s.ptr);
    else
        fprintf(out, "(none)\n");
    fprintf(out, "name:         ");
    if (gguf_get_str(f, "general.name", &s) == NURI_OK)
        fprintf(out, "%.*s\n", (int)(s.len < 64 ? s.len : 64), s.ptr);
    else
        fprintf(out, "(none)\n");
    fprintf(out, "size:         %llu bytes (data section at byte %llu, alignment %u)\n",
            (unsigned long long)gguf_file_size(f), (unsigned long long)gguf_data_offset(f),
            gguf_alignment(f));
    print_model(out, path);

    fprintf(out, "\nmetadata (%llu keys):\n", (unsigned long long)gguf_n_kv(f));
    for (uint64_t i = 0; i < gguf_n_kv(f); i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        gguf_str k = gguf_kv_key(kv);
        fprintf(out, "  %-44.*s ", (int)(k.len < 200 ? k.len : 200), k.ptr);
        gguf_arr a;
        if (gguf_kv_arr(kv, &a) == NURI_OK) {
            char t[32];
            snprintf(t, sizeof t, "%s[%llu]", gguf_type_name(a.type), (unsigned long long)a.n);
            fprintf(out, "%-16s ", t);
            for (uint64_t j = 0; j < a.n && j < INFO_ARR_FIRST; j++) {
                if (j) fputs(", ", out);
                print_arr_elem(out, &a, j);
            }
            if (a.n > INFO_ARR_FIRST) fputs(", ...", out);
        } else {
            fprintf(out, "%-16s ", gguf_type_name(gguf_kv_type(kv)));
            print_scalar(out, kv);
        }
        fputc('\n', out);
    }

    uint64_t nt = gguf_n_tensors(f), params = 0, bytes = 0;
    uint64_t by_type_bytes[NURI_TYPE_COUNT] = {0}, by_type_n[NURI_TYPE_COUNT] = {0};
    fprintf(out, "\ntensors (%llu):\n", (unsigned long long)nt);
    if (nt)
        fprintf(out, "  %-5s %-36s %-8s %-24s %12s %12s\n", "#", "name", "type", "shape", "bytes",
                "offset");
    for (uint64_t i = 0; i < nt; i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        char shape[128];
        shape_str(t, shape, sizeof shape);
        fprintf(out, "  %-5llu %-36.*s %-8s %-24s %12llu %12llu\n", (unsigned long long)i,
                (int)(t->name.len < 200 ? t->name.len : 200), t->name.ptr, type_name(t->type),
                shape, (unsigned long long)t->size, (unsigned long long)t->offset);
        params += n_elements(t);
        bytes += t->size;
        by_type_bytes[t->type] += t->size;
        by_type_n[t->type]++;
    }
    fprintf(out, "\ntotals: %llu tensors, %llu parameters, %llu bytes (%.2f MiB)\n",
            (unsigned long long)nt, (unsigned long long)params, (unsigned long long)bytes,
            bytes / 1048576.0);
    for (uint32_t ty = 0; ty < NURI_TYPE_COUNT; ty++)
        if (by_type_n[ty])
            fprintf(out, "  %-8s %6llu tensors %14llu bytes (%5.1f%%)\n", type_name(ty),
                    (unsigned long long)by_type_n[ty], (unsigned long long)by_type_bytes[ty],
                    bytes ? 100.0 * by_type_bytes[ty] / bytes : 0.0);
}

/* ---- JSON output ---- */

/* A JSON string of s; bytes that are not valid UTF-8 are replaced by "\xNN" text. */
static json_t *json_str(gguf_str s)
{
    json_t *j = json_stringn(s.ptr, (size_t)s.len);
    if (j) return j;
    size_t cap = (size_t)s.len * 4 + 1;
    char *buf = malloc(cap);
    if (!buf) return json_null();
    size_t o = 0;
    for (uint64_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (c < 0x80)
            buf[o++] = (char)c;
        else
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", c);
    }
    j = json_stringn(buf, o);
    free(buf);
    return j ? j : json_null();
}

static json_t *json_scalar(const gguf_kv *kv)
{
    uint64_t u;
    int64_t i;
    double d;
    bool b;
    gguf_str s;
    if (gguf_kv_i64(kv, &i) == NURI_OK) return json_integer(i);
    if (gguf_kv_u64(kv, &u) == NURI_OK) return json_real((double)u); // over INT64_MAX
    if (gguf_kv_f64(kv, &d) == NURI_OK) return json_real(d);
    if (gguf_kv_bool(kv, &b) == NURI_OK) return json_boolean(b);
    if (gguf_kv_str(kv, &s) == NURI_OK) return json_str(s);
    return json_null();
}

static json_t *json_arr_elem(const gguf_arr *a, uint64_t j)
{
    gguf_str s;
    int64_t i;
    float x;
    if (gguf_arr_str(a, j, &s) == NURI_OK) return json_str(s);
    if (gguf_arr_i64(a, j, &i) == NURI_OK) return json_integer(i);
    if (gguf_arr_f32(a, j, &x) == NURI_OK) return json_real(x);
    if (a->type == GGUF_TYPE_BOOL) return json_boolean(((const unsigned char *)a->data)[j]);
    return json_null();
}

static int print_json(FILE *out, const char *path, const gguf_file *f)
{
    json_t *root = json_object();
    gguf_str s;
    json_t *jpath = json_string(path); // NULL if the path is not UTF-8
    json_object_set_new(root, "path", jpath ? jpath : json_null());
    json_object_set_new(root, "version", json_integer(gguf_version(f)));
    json_object_set_new(root, "architecture",
                        gguf_get_str(f, "general.architecture", &s) == NURI_OK ? json_str(s)
                                                                               : json_null());
    json_object_set_new(root, "name",
                        gguf_get_str(f, "general.name", &s) == NURI_OK ? json_str(s) : json_null());
    json_object_set_new(root, "file_size", json_integer((json_int_t)gguf_file_size(f)));
    json_object_set_new(root, "data_offset", json_integer((json_int_t)gguf_data_offset(f)));
    json_object_set_new(root, "alignment", json_integer(gguf_alignment(f)));

    json_t *meta = json_object();
    for (uint64_t i = 0; i < gguf_n_kv(f); i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        gguf_str k = gguf_kv_key(kv);
        json_t *v;
        gguf_arr a;
        if (gguf_kv_arr(kv, &a) == NURI_OK) {
            v = json_object();
            json_object_set_new(v, "type", json_string("array"));
            json_object_set_new(v, "element_type", json_string(gguf_type_name(a.type)));
            json_object_set_new(v, "count", json_integer((json_int_t)a.n));
            json_t *first = json_array();
            for (uint64_t j = 0; j < a.n && j < INFO_JSON_FIRST; j++)
                json_array_append_new(first, json_arr_elem(&a, j));
            json_object_set_new(v, "first", first);
        } else {
            v = json_object();
            json_object_set_new(v, "type", json_string(gguf_type_name(gguf_kv_type(kv))));
            json_object_set_new(v, "value", json_scalar(kv));
        }
        // keys are valid UTF-8 without NULs (the reader checked)
        json_object_setn_new(meta, k.ptr, (size_t)k.len, v);
    }
    json_object_set_new(root, "metadata", meta);

    json_t *tensors = json_array();
    uint64_t params = 0, bytes = 0;
    uint64_t by_type_bytes[NURI_TYPE_COUNT] = {0}, by_type_n[NURI_TYPE_COUNT] = {0};
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        json_t *jt = json_object();
        json_object_set_new(jt, "name", json_str(t->name));
        json_object_set_new(jt, "type", json_string(type_name(t->type)));
        json_t *shape = json_array();
        for (uint32_t d = 0; d < t->n_dims; d++)
            json_array_append_new(shape, json_integer(t->ne[d]));
        json_object_set_new(jt, "shape", shape);
        json_object_set_new(jt, "bytes", json_integer((json_int_t)t->size));
        json_object_set_new(jt, "offset", json_integer((json_int_t)t->offset));
        json_array_append_new(tensors, jt);
        params += n_elements(t);
        bytes += t->size;
        by_type_bytes[t->type] += t->size;
        by_type_n[t->type]++;
    }
    json_object_set_new(root, "tensors", tensors);
    json_t *totals = json_object(), *by_type = json_object();
    json_object_set_new(totals, "tensors", json_integer((json_int_t)gguf_n_tensors(f)));
    json_object_set_new(totals, "parameters", json_integer((json_int_t)params));
    json_object_set_new(totals, "bytes", json_integer((json_int_t)bytes));
    for (uint32_t ty = 0; ty < NURI_TYPE_COUNT; ty++) {
        if (!by_type_n[ty]) continue;
        json_t *e = json_object();
        json_object_set_new(e, "tensors", json_integer((json_int_t)by_type_n[ty]));
        json_object_set_new(e, "bytes", json_integer((json_int_t)by_type_bytes[ty]));
        json_object_set_new(by_type, type_name(ty), e);
    }
    json_object_set_new(totals, "by_type", by_type);
    json_object_set_new(root, "totals", totals);

    int rc = json_dumpf(root, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER) == 0 ? 0 : 1;
    fputc('\n', out);
    json_decref(root);
    return rc;
}

/* ---- the command ---- */

static void info_usage(FILE *out)
{
    fprintf(out, "usage: nuri info [--json] [-m] MODEL.gguf\n\n"
                 "Prints the GGUF version, architecture, all metadata, a tensor table and totals.\n"
                 "  --json   the same as one JSON object\n");
}

int cmd_info(int argc, char **argv)
{
    const char *path = NULL;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) {
            json = true;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            info_usage(stdout);
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1] && strcmp(argv[i], "-m") &&
                   strcmp(argv[i], "--model")) {
            fprintf(stderr, "nuri: info: unknown option '%s'\n", argv[i]);
            info_usage(stderr);
            return 2;
        } else {
            // MODEL, or -m MODEL as the other commands take it
            const char *v = argv[i][0] == '-' && argv[i][1] ? args_value(argc, argv, &i) : argv[i];
            if (!v) return 2;
            if (path) {
                fprintf(stderr, "nuri: info: one MODEL only ('%s' and '%s')\n", path, v);
                return 2;
            }
            path = v;
        }
    }
    if (!path) {
        info_usage(stderr);
        return 2;
    }
    if (cli_model_arg("info", &path)) return 1;
    gguf_file *f;
    if (gguf_open(path, &f) != NURI_OK) return cli_fail("info");
    int rc = json ? print_json(stdout, path, f) : (print_text(stdout, path, f), 0);
    gguf_close(f);
    if (fflush(stdout) != 0) rc = 1;
    return rc;
}
