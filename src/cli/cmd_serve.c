/*
 * cmd_serve.c: `nuri serve -m MODEL [options]`: the OpenAI-compatible HTTP server (src/serve/).
 *
 * Prints one line "listening on http://HOST:PORT" to stdout as soon as the socket is bound (the
 * model then loads; /health answers 503 until it has), and start-up notes to stderr. A model that
 * fails to load ends the process with status 1 and the reason. SIGINT or SIGTERM starts a graceful
 * stop: no new connections, running answers finish within --shutdown-timeout, then the rest end
 * with an in-stream error and the process exits 0; a second signal exits at once (status 1).
 */
#include "cli/args.h"
#include "cli/cli.h"
#include "cli/model_arg.h"
#include "dist/dist.h"
#include "serve/serve.h"
#include "store/store.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_KEY_FILE_KEYS 1024

static void serve_usage(FILE *out)
{
    fprintf(
        out,
        "usage: nuri serve -m MODEL [--host 127.0.0.1] [--port 8080] [--api-key KEY ...]\n"
        "                  [--api-key-file FILE] [--ctx N | --kv-mem F] [--max-seqs N]\n"
        "                  [--queue N] [--draft-lookup K] [--draft FILE [--draft-max K]] [-t N] "
        "[--chat-template FILE]\n"
        "                  [--name NAME]\n"
        "                  [--max-body BYTES] [--header-timeout MS] [--request-timeout MS]\n"
        "                  [--idle-timeout S] [--max-conns N] [--max-conns-per-client N]\n"
        "                  [--allow-host NAME ...] [--cors ORIGIN ...] [--shutdown-timeout S]\n"
        "                  [--unsafe-special-tokens] [--store STORE | --no-store]\n"
        "                  [--kv-dir DIR [--kv-dir-size BYTES]] [--replica-id NAME]\n"
        "                  [--repack auto|on|off] [--kv-type f16|q8_0|q4_0]\n"
        "  OpenAI-compatible API: POST /v1/chat/completions, POST /v1/completions,\n"
        "  POST /v1/responses (GET, DELETE /v1/responses/{id}, .../input_items),\n"
        "  /v1/conversations (and /{id}, /{id}/items), GET /v1/models, GET /health, GET /metrics\n"
        "  GET /       a web chat page (open http://127.0.0.1:8080/ in a browser)\n"
        "  --store      the conversation store: an SQLite file, PATH or sqlite:PATH (default\n"
        "               $XDG_DATA_HOME/nuri/nuri.db), or a PostgreSQL database that several\n"
        "               replicas share, postgresql://USER@HOST:PORT/DB; --no-store keeps none;\n"
        "               without --store, the environment variable NURI_STORE names it\n"
        "  --replica-id NAME  sent as X-Nuri-Replica on every answer, so a balancer can send a\n"
        "               conversation back where its KV pages are (default HOSTNAME:PORT)\n"
        "  --kv-dir     KV snapshots of stored responses, so that a follow-up after a restart (or\n"
        "               after its pages left memory) resumes without recomputing the history;\n"
        "               --kv-dir-size bounds the directory (default 8 GiB; K, M, G suffixes),\n"
        "               least recently used first out\n"
        "  --ctx        KV cache tokens shared by all sequences (default: sized by --kv-mem)\n"
        "  --kv-mem     fraction of the memory available after loading for the KV cache\n"
        "               (default 0.5; at most max-seqs full-length sequences)\n"
        "  --kv-type    the KV cache's type, f16 (default), q8_0 or q4_0: q8_0 holds about\n"
        "               twice the tokens of f16 in the same --kv-mem (--kv-type-k, --kv-type-v\n"
        "               set one; a quantized V is weighted as llama.cpp's flash attention does)\n"
        "  --max-seqs   requests decoded together (default 8)\n"
        "  --queue      requests waiting beyond those before 503 (default 4 x max-seqs)\n"
        "  --draft-lookup K  speculative decoding per sequence: up to K tokens drafted from\n"
        "               its earlier text, checked in the same batched pass; the output is the\n"
        "               same as without it (0-16; requests asking for logprobs do not draft)\n"
        "  --draft FILE a draft model of the same vocabulary (smaller, or quantized harder):\n"
        "               it drafts up to --draft-max K tokens (1-15, default 8) per sequence\n"
        "               and step, greedily; the output is the same as without it (with\n"
        "               --draft-lookup, lookup drafts first)\n"
        "  --api-key    accepted bearer key (repeatable); also --api-key-file FILE (one key a\n"
        "               line) and the environment variable NURI_API_KEY; none: no authentication\n"
        "  --allow-host without keys, the Host header must be an IP address or localhost\n"
        "               (DNS rebinding); this accepts another name too ('*': any)\n"
        "  --cors ORIGIN  let browser pages from ORIGIN (e.g. http://localhost:3000) call the\n"
        "               API: preflight OPTIONS and Access-Control-* headers (repeatable; also\n"
        "               --cors-origin). '*' allows any origin and needs --api-key: without keys\n"
        "               any web page could drive the server. Default: none (the page at / is\n"
        "               same-origin and needs none)\n"
        "  --header-timeout / --request-timeout  time to receive a request's head (10000 ms)\n"
        "               and the whole request (30000 ms); 408 past them\n"
        "  --idle-timeout  kept-alive connections without a request are closed after (60 s)\n"
        "  --max-conns / --max-conns-per-client  open connections in all (8192) and per client\n"
        "               address (256); past them a new connection gets 503 at once\n"
        "  --shutdown-timeout  on SIGTERM, seconds running answers get to finish (30)\n"
        "  --unsafe-special-tokens  let special-token text in messages become control tokens\n"
        "               (off by default: a user cannot forge the template's markup)\n"
        "  --port 0     any free port (the 'listening on' line says which)\n");
}

static void log_stderr(void *ud, const char *msg)
{
    (void)ud;
    fprintf(stderr, "nuri serve: %s\n", msg);
}

/* Reads keys from a file, one a line; blank lines and lines starting with '#' are skipped. Each
 * key is strdup'ed into keys[*n]. */
static bool read_key_file(const char *path, char **keys, int *n, int cap)
{
    FILE *fp = fopen(path, "r");
    if (!fp) {
        fprintf(stderr, "nuri serve: cannot read --api-key-file '%s': %s\n", path, strerror(errno));
        return false;
    }
    char line[1024];
    bool ok = true;
    while (fgets(line, sizeof line, fp)) {
        size_t l = strlen(line);
        while (l && (line[l - 1] == '\n' || line[l - 1] == '\r' || line[l - 1] == ' ' ||
                     line[l - 1] == '\t'))
            line[--l] = 0;
        char *k = line;
        while (*k == ' ' || *k == '\t') k++;
        if (!*k || *k == '#') continue;
        if (*n >= cap || !(keys[*n] = strdup(k))) {
            fprintf(stderr, "nuri serve: too many keys in '%s'\n", path);
            ok = false;
            break;
        }
        (*n)++;
    }
    fclose(fp);
    return ok;
}

int cmd_serve(int argc, char **argv)
{
    serve_params p = {.port = 8080, .log = log_stderr};
    int key_cap = argc + MAX_KEY_FILE_KEYS + 1;
    char **keys = calloc((size_t)key_cap, sizeof *keys);
    const char **hosts = calloc((size_t)argc + 1, sizeof *hosts);
    const char **origins = calloc((size_t)argc + 1, sizeof *origins);
    if (!keys || !hosts || !origins) return 1;
    int n_keys = 0;
    long shutdown_timeout = 30;
    bool no_store = false;
    char *store_default = NULL;
    const char *v;
    long x;
    float fx;
    int rc = 2, kv;
    const char *kv_k = "f16", *kv_v = "f16"; // --kv-type
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            serve_usage(stdout);
            rc = 0;
            goto done;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(p.model_path = args_value(argc, argv, &i))) goto done;
        } else if (!strcmp(a, "--repack")) { // args.h: ARGS_REPACK_HELP
            if (!(v = args_value(argc, argv, &i)) || !args_repack(v)) goto done;
        } else if (!strcmp(a, "--host")) {
            if (!(p.host = args_value(argc, argv, &i))) goto done;
        } else if (!strcmp(a, "--name")) {
            if (!(p.model_name = args_value(argc, argv, &i))) goto done;
        } else if (!strcmp(a, "--chat-template")) {
            if (!(p.chat_template = args_value(argc, argv, &i))) goto done;
        } else if (!strcmp(a, "--api-key")) {
            if (!(v = args_value(argc, argv, &i))) goto done;
            if (!v[0]) {
                fprintf(stderr, "nuri serve: --api-key must not be empty\n");
                goto done;
            }
            if (!(keys[n_keys++] = strdup(v))) goto done;
        } else if (!strcmp(a, "--api-key-file")) {
            if (!(v = args_value(argc, argv, &i))) goto done;
            if (!read_key_file(v, keys, &n_keys, key_cap - 1)) goto done;
        } else if (!strcmp(a, "--allow-host")) {
            if (!(hosts[p.n_allow_hosts++] = args_value(argc, argv, &i))) goto done;
        } else if (!strcmp(a, "--cors") || !strcmp(a, "--cors-origin")) {
            if (!(origins[p.n_cors_origins++] = args_value(argc, argv, &i))) goto done;
        } else if (!strcmp(a, "--port")) {
            if (!(v = args_value(argc, argv, &i)) || !args_int(v, 0, 65535, "--port", &x))
                goto done;
            p.port = (int)x;
        } else if (!strcmp(a, "--ctx")) {
            if (!(v = args_value(argc, argv, &i)) || !args_int(v, 32, 1 << 22, "--ctx", &x))
                goto done;
            p.n_ctx = (int)x;
        } else if (!strcmp(a, "--kv-mem")) {
            if (!(v = args_value(argc, argv, &i)) || !args_float(v, 0.001f, 0.95f, "--kv-mem", &fx))
                goto done;
            p.kv_mem = fx;
        } else if ((kv = args_kv_type(argc, argv, &i, &kv_k, &kv_v)) != 0) {
            if (kv < 0) goto done;
            nuri_kv_type_parse(kv_k, &p.kv_type_k); // names args_kv_type checked
            nuri_kv_type_parse(kv_v, &p.kv_type_v);
        } else if (!strcmp(a, "--max-seqs")) {
            if (!(v = args_value(argc, argv, &i)) || !args_int(v, 1, 256, "--max-seqs", &x))
                goto done;
            p.max_seqs = (int)x;
        } else if (!strcmp(a, "--draft-lookup")) {
            if (!(v = args_value(argc, argv, &i)) || !args_int(v, 0, 16, "--draft-lookup", &x))
                goto done;
            p.draft_lookup = (int)x;
        } else if (!strcmp(a, "--draft")) {
            if (!(v = args_value(argc, argv, &i))) goto done;
            p.draft_path = v;
        } else if (!strcmp(a, "--draft-max")) {
            if (!(v = args_value(argc, argv, &i)) || !args_int(v, 1, 15, "--draft-max", &x))
                goto done;
            p.draft_max = (int)x;
        } else if (!strcmp(a, "--queue")) {
            if (!(v = args_value(argc, argv, &i)) || !args_int(v, 1, 65536, "--queue", &x))
                goto done;
            p.max_queue = (int)x;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (!(v = args_value(argc, argv, &i)) || !args_int(v, 1, 256, "-t", &x)) goto done;
            p.n_threads = (int)x;
        } else if (!strcmp(a, "--max-body")) {
            if (!(v = args_value(argc, argv, &i)) || !args_int(v, 1024, 1L << 30, "--max-body", &x))
                goto done;
            p.max_body = (size_t)x;
        } else if (!strcmp(a, "--header-timeout")) {
            if (!(v = args_value(argc, argv, &i)) ||
                !args_int(v, 10, 600000, "--header-timeout", &x))
                goto done;
            p.header_timeout_ms = (int)x;
        } else if (!strcmp(a, "--request-timeout")) {
            if (!(v = args_value(argc, argv, &i)) ||
                !args_int(v, 10, 3600000, "--request-timeout", &x))
                goto done;
            p.request_timeout_ms = (int)x;
        } else if (!strcmp(a, "--idle-timeout")) {
            if (!(v = args_value(argc, argv, &i)) || !args_int(v, 1, 86400, "--idle-timeout", &x))
                goto done;
            p.idle_timeout_s = (int)x;
        } else if (!strcmp(a, "--max-conns")) {
            if (!(v = args_value(argc, argv, &i)) || !args_int(v, 1, 1 << 20, "--max-conns", &x))
                goto done;
            p.max_connections = (int)x;
        } else if (!strcmp(a, "--max-conns-per-client")) {
            if (!(v = args_value(argc, argv, &i)) ||
                !args_int(v, 1, 1 << 20, "--max-conns-per-client", &x))
                goto done;
            p.max_conns_per_client = (int)x;
        } else if (!strcmp(a, "--shutdown-timeout")) {
            if (!(v = args_value(argc, argv, &i)) ||
                !args_int(v, 0, 86400, "--shutdown-timeout", &shutdown_timeout))
                goto done;
        } else if (!strcmp(a, "--unsafe-special-tokens")) {
            p.unsafe_special_tokens = true;
        } else if (!strcmp(a, "--store")) {
            if (!(p.store_path = args_value(argc, argv, &i))) goto done;
            no_store = false;
        } else if (!strcmp(a, "--replica-id")) {
            if (!(p.replica_id = args_value(argc, argv, &i))) goto done;
        } else if (!strcmp(a, "--kv-dir")) {
            if (!(p.kv_dir = args_value(argc, argv, &i))) goto done;
        } else if (!strcmp(a, "--kv-dir-size")) {
            if (!(v = args_value(argc, argv, &i))) goto done;
            char *end;
            double sz = strtod(v, &end);
            double mul = *end == 'K' || *end == 'k'   ? 1024.0
                         : *end == 'M' || *end == 'm' ? 1048576.0
                         : *end == 'G' || *end == 'g' ? 1073741824.0
                                                      : 1.0;
            if (mul != 1.0) end++;
            if (end == v || *end || !(sz >= 0) || sz * mul > 1e18) {
                fprintf(stderr, "nuri serve: --kv-dir-size '%s' is not a size (e.g. 8G)\n", v);
                goto done;
            }
            p.kv_dir_size = (uint64_t)(sz * mul);
        } else if (!strcmp(a, "--no-store")) {
            no_store = true;
            p.store_path = NULL;
        } else {
            fprintf(stderr, "nuri serve: unknown option '%s'\n", a);
            serve_usage(stderr);
            goto done;
        }
    }
    if (!p.model_path) {
        serve_usage(stderr);
        goto done;
    }
    if (cli_model_arg("serve", &p.model_path) ||
        (p.draft_path && cli_model_arg("serve --draft", &p.draft_path))) {
        rc = 1;
        goto done;
    }
    if (p.draft_max && !p.draft_path) {
        fprintf(stderr, "nuri serve: --draft-max needs --draft FILE\n");
        goto done;
    }
    if (p.draft_path && nuri_dist_size() > 1) {
        // every model a stage loads is split across the pipeline: the draft's passes would be too
        fprintf(stderr, "nuri serve: --draft is not supported with --pp (a draft model in a "
                        "pipeline)\n");
        rc = 2;
        goto done;
    }
    if (p.kv_dir && nuri_dist_size() > 1) {
        // a pipeline's stages each hold their own layers' cache: a snapshot would be a part
        fprintf(stderr, "nuri serve: --kv-dir is not supported with --pp (KV snapshots of a "
                        "pipeline)\n");
        rc = 2;
        goto done;
    }
    if (p.kv_dir && !p.kv_dir_size) p.kv_dir_size = 8ull << 30;
    // NURI_STORE: the store from the environment (a URL with a password stays out of `ps`)
    const char *env_store = getenv("NURI_STORE");
    if (!no_store && !p.store_path && env_store && env_store[0]) p.store_path = env_store;
    if (!no_store && !p.store_path) {
        if (nuri_store_default_path(&store_default) != NURI_OK) {
            rc = cli_fail("serve: the default store (--store PATH or --no-store to choose)");
            goto done;
        }
        p.store_path = store_default;
    }
    const char *env_key = getenv("NURI_API_KEY");
    if (env_key && env_key[0] && !(keys[n_keys++] = strdup(env_key))) goto done;
    p.api_keys = (const char *const *)keys;
    p.n_api_keys = n_keys;
    p.allow_hosts = hosts;
    p.cors_origins = origins;
    // the signals are taken synchronously below; every thread inherits the mask
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    serve_server *s;
    if (serve_server_start(&p, &s) != NURI_OK) {
        rc = cli_fail("serve");
        goto done;
    }
    printf("listening on http://%s:%d\n", p.host ? p.host : "127.0.0.1", serve_server_port(s));
    fflush(stdout);
    rc = 0;
    struct timespec tick = {.tv_sec = 0, .tv_nsec = 50 * 1000000L};
    bool loaded = false;
    // until the first signal: watch the model load
    for (;;) {
        int sig = sigtimedwait(&set, NULL, &tick);
        if (sig > 0) {
            fprintf(stderr,
                    "nuri serve: stopping (signal %d): finishing running answers, at most "
                    "%ld s; a second signal stops at once\n",
                    sig, shutdown_timeout);
            break;
        }
        if (!loaded) {
            char err[512];
            int ls = serve_server_load_state(s, err, sizeof err);
            if (ls < 0) {
                fprintf(stderr, "nuri serve: cannot load the model: %s\n", err);
                serve_server_stop(s);
                rc = 1;
                goto done;
            }
            loaded = ls > 0;
        }
    }
    serve_server_shutdown(s);
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if (serve_server_idle(s)) break;
        clock_gettime(CLOCK_MONOTONIC, &now);
        double el = (double)(now.tv_sec - t0.tv_sec) + (double)(now.tv_nsec - t0.tv_nsec) * 1e-9;
        if (el >= (double)shutdown_timeout) {
            fprintf(stderr, "nuri serve: shutdown timeout: ending the answers still running\n");
            break;
        }
        if (sigtimedwait(&set, NULL, &tick) > 0) {
            fprintf(stderr, "nuri serve: second signal: exiting at once\n");
            fflush(stderr);
            _exit(1);
        }
    }
    serve_server_stop(s);
done:
    free(store_default);
    for (int i = 0; i < n_keys; i++) free(keys[i]);
    free(keys);
    free(hosts);
    free(origins);
    return rc;
}
