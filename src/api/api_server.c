/*
 * api_server.c: the public API's embeddable server (include/nuri.h) over serve/serve.h.
 *
 * nuri_server_params carries the settings a program embedding the server needs; the rest of
 * serve_params (limits, timeouts, CORS, KV snapshots) keep `nuri serve`'s defaults and can be
 * added here, at the end of the struct, as they are asked for.
 */
#include "api/api_internal.h"
#include "base/status.h"
#include "serve/serve.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct nuri_server {
    serve_server *srv;
    char *strings[5]; // copies of the params' strings, which the server reads while it runs
};

static void server_free(nuri_server *ns)
{
    for (int i = 0; i < 5; i++) free(ns->strings[i]);
    free(ns);
}

/* A copy of s kept in ns (NULL stays NULL); false when out of memory. */
static bool keep(nuri_server *ns, int i, const char **s)
{
    if (!*s) return true;
    if (!(ns->strings[i] = strdup(*s))) return false;
    *s = ns->strings[i];
    return true;
}

void nuri_server_params_init(nuri_server_params *p, size_t struct_size)
{
    nuri_server_params d = {.struct_size = sizeof d};
    api_params_init(p, struct_size, &d, sizeof d);
}

nuri_status nuri_server_start(const nuri_server_params *params, nuri_server **out)
{
    *out = NULL;
    nuri_server_params p;
    nuri_server_params_init(&p, sizeof p);
    nuri_status s = api_params_copy(&p, sizeof p, params, "nuri_server_params");
    if (s != NURI_OK) return s;
    if (!p.model_path)
        return nuri_error(NURI_ERR_INVALID_ARG, "nuri_server_params: model_path is not set");
    if (p.port < 0 || p.port > 65535 || p.n_threads < 0 || p.n_ctx < 0 || p.max_seqs < 0 ||
        p.n_api_keys < 0 || (p.n_api_keys > 0 && !p.api_keys))
        return nuri_error(NURI_ERR_INVALID_ARG, "nuri_server_params: %s is out of range",
                          p.port < 0 || p.port > 65535 ? "port"
                          : p.n_threads < 0            ? "n_threads"
                          : p.n_ctx < 0                ? "n_ctx"
                          : p.max_seqs < 0             ? "max_seqs"
                                                       : "api_keys / n_api_keys");
    nuri_server *ns = calloc(1, sizeof *ns);
    if (!ns || !keep(ns, 0, &p.model_path) || !keep(ns, 1, &p.model_name) ||
        !keep(ns, 2, &p.host) || !keep(ns, 3, &p.chat_template) || !keep(ns, 4, &p.store_path)) {
        if (ns) server_free(ns);
        return nuri_error(NURI_ERR_NOMEM, "out of memory");
    }
    serve_params sp = {.model_path = p.model_path,
                       .model_name = p.model_name,
                       .host = p.host,
                       .port = p.port,
                       .n_threads = p.n_threads,
                       .n_ctx = p.n_ctx,
                       .max_seqs = p.max_seqs,
                       .api_keys = p.api_keys,
                       .n_api_keys = p.n_api_keys,
                       .chat_template = p.chat_template,
                       .store_path = p.store_path};
    s = serve_server_start(&sp, &ns->srv);
    if (s != NURI_OK) {
        server_free(ns);
        return s;
    }
    *out = ns;
    return NURI_OK;
}

int nuri_server_port(const nuri_server *s)
{
    return serve_server_port(s->srv);
}

nuri_status nuri_server_wait_loaded(nuri_server *s)
{
    return serve_server_wait_loaded(s->srv);
}

void nuri_server_stop(nuri_server *s)
{
    if (!s) return;
    serve_server_stop(s->srv);
    server_free(s);
}
