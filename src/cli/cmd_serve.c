/*
 * cmd_serve.c: `nuri serve -m MODEL [options]`: the OpenAI-compatible HTTP server (src/serve/).
 *
 * Prints one line "listening on http://HOST:PORT" to stdout as soon as the socket is bound (the
 * model then loads; /health answers 503 until it has), and start-up notes to stderr. Runs until
 * SIGINT or SIGTERM, then stops cleanly.
 */
#include "cli/args.h"
#include "cli/cli.h"
#include "serve/serve.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void serve_usage(FILE *out)
{
    fprintf(
        out,
        "usage: nuri serve -m MODEL [--host 127.0.0.1] [--port 8080] [--api-key KEY ...]\n"
        "                  [--ctx N] [--max-seqs N] [--queue N] [-t N] [--chat-template FILE]\n"
        "                  [--name NAME] [--max-body BYTES] [--header-timeout MS]\n"
        "  OpenAI-compatible API: POST /v1/chat/completions, POST /v1/completions,\n"
        "  GET /v1/models, GET /health, GET /metrics\n"
        "  --ctx        KV cache tokens shared by all sequences (default: the model's, <= 4096)\n"
        "  --max-seqs   requests decoded together (default 8)\n"
        "  --queue      requests waiting beyond those before 503 (default 4 x max-seqs)\n"
        "  --api-key    accepted bearer key (repeatable); none: no authentication\n"
        "  --port 0     any free port (the 'listening on' line says which)\n");
}

static void log_stderr(void *ud, const char *msg)
{
    (void)ud;
    fprintf(stderr, "nuri serve: %s\n", msg);
}

int cmd_serve(int argc, char **argv)
{
    serve_params p = {.port = 8080, .log = log_stderr};
    const char **keys = calloc((size_t)argc, sizeof *keys);
    if (!keys) return 1;
    const char *v;
    long x;
    int rc = 2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            serve_usage(stdout);
            rc = 0;
            goto done;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(p.model_path = args_value(argc, argv, &i))) goto done;
        } else if (!strcmp(a, "--host")) {
            if (!(p.host = args_value(argc, argv, &i))) goto done;
        } else if (!strcmp(a, "--name")) {
            if (!(p.model_name = args_value(argc, argv, &i))) goto done;
        } else if (!strcmp(a, "--chat-template")) {
            if (!(p.chat_template = args_value(argc, argv, &i))) goto done;
        } else if (!strcmp(a, "--api-key")) {
            if (!(keys[p.n_api_keys] = args_value(argc, argv, &i))) goto done;
            if (!keys[p.n_api_keys][0]) {
                fprintf(stderr, "nuri serve: --api-key must not be empty\n");
                goto done;
            }
            p.n_api_keys++;
        } else if (!strcmp(a, "--port")) {
            if (!(v = args_value(argc, argv, &i)) || !args_int(v, 0, 65535, "--port", &x))
                goto done;
            p.port = (int)x;
        } else if (!strcmp(a, "--ctx")) {
            if (!(v = args_value(argc, argv, &i)) || !args_int(v, 32, 1 << 22, "--ctx", &x))
                goto done;
            p.n_ctx = (int)x;
        } else if (!strcmp(a, "--max-seqs")) {
            if (!(v = args_value(argc, argv, &i)) || !args_int(v, 1, 256, "--max-seqs", &x))
                goto done;
            p.max_seqs = (int)x;
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
    p.api_keys = keys;
    // the signals are taken synchronously by sigwait below; every thread inherits the mask
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
    int sig;
    sigwait(&set, &sig);
    fprintf(stderr, "nuri serve: stopping (signal %d)\n", sig);
    serve_server_stop(s);
done:
    free(keys);
    return rc;
}
