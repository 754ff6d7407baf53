/*
 * metrics.c: counters, histograms and their Prometheus text form (see metrics.h).
 */
#include "serve/metrics.h"

#include "base/strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Upper bounds of the latency buckets, seconds. */
static const double bucket_le[SERVE_HIST_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                     1,     2.5,  5,     10,   30,  60,   120};

double serve_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void serve_metrics_init(serve_metrics *m)
{
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
    m->started = (double)time(NULL);
}

void serve_metrics_destroy(serve_metrics *m)
{
    pthread_mutex_destroy(&m->mu);
}

void serve_metrics_request(serve_metrics *m, int http_status)
{
    if (http_status < 100 || http_status >= 600) return;
    pthread_mutex_lock(&m->mu);
    m->requests[http_status]++;
    pthread_mutex_unlock(&m->mu);
}

void serve_metrics_tokens(serve_metrics *m, int64_t prompt, int64_t completion, int64_t cached)
{
    pthread_mutex_lock(&m->mu);
    m->prompt_tokens += (uint64_t)prompt;
    m->completion_tokens += (uint64_t)completion;
    m->cached_prompt_tokens += (uint64_t)cached;
    pthread_mutex_unlock(&m->mu);
}

void serve_metrics_generated(serve_metrics *m, int64_t n)
{
    pthread_mutex_lock(&m->mu);
    m->generated_tokens += (uint64_t)n;
    pthread_mutex_unlock(&m->mu);
}

void serve_metrics_disconnect(serve_metrics *m)
{
    pthread_mutex_lock(&m->mu);
    m->disconnects++;
    pthread_mutex_unlock(&m->mu);
}

void serve_metrics_connections(serve_metrics *m, int64_t open)
{
    pthread_mutex_lock(&m->mu);
    m->connections = open;
    pthread_mutex_unlock(&m->mu);
}

void serve_metrics_refused(serve_metrics *m)
{
    pthread_mutex_lock(&m->mu);
    m->connections_refused++;
    pthread_mutex_unlock(&m->mu);
}

void serve_metrics_preemption(serve_metrics *m)
{
    pthread_mutex_lock(&m->mu);
    m->preemptions++;
    pthread_mutex_unlock(&m->mu);
}

void serve_metrics_spec(serve_metrics *m, int64_t drafted, int64_t accepted)
{
    pthread_mutex_lock(&m->mu);
    m->spec_drafted += (uint64_t)drafted;
    m->spec_accepted += (uint64_t)accepted;
    pthread_mutex_unlock(&m->mu);
}

void serve_metrics_kv_source(serve_metrics *m, int source)
{
    if (source < 0 || source > 2) return;
    pthread_mutex_lock(&m->mu);
    m->kv_source[source]++;
    pthread_mutex_unlock(&m->mu);
}

void serve_metrics_kv_snapshot(serve_metrics *m, bool written, bool refused)
{
    pthread_mutex_lock(&m->mu);
    m->kv_snapshots_written += written;
    m->kv_snapshots_refused += refused;
    pthread_mutex_unlock(&m->mu);
}

static void hist_add(serve_hist *h, double s)
{
    int b = 0;
    while (b < SERVE_HIST_BUCKETS && s > bucket_le[b]) b++;
    h->count[b]++;
    h->sum += s;
    h->n++;
}

void serve_metrics_ttft(serve_metrics *m, double seconds)
{
    pthread_mutex_lock(&m->mu);
    hist_add(&m->ttft, seconds);
    pthread_mutex_unlock(&m->mu);
}

void serve_metrics_itl(serve_metrics *m, double seconds)
{
    pthread_mutex_lock(&m->mu);
    hist_add(&m->itl, seconds);
    pthread_mutex_unlock(&m->mu);
}

void serve_metrics_gauges(serve_metrics *m, int64_t queue_depth, int64_t running, int64_t kv_used,
                          int64_t kv_total)
{
    pthread_mutex_lock(&m->mu);
    m->queue_depth = queue_depth;
    m->running = running;
    m->kv_pages_used = kv_used;
    m->kv_pages_total = kv_total;
    pthread_mutex_unlock(&m->mu);
}

static void hist_write(nuri_sb *b, const char *name, const char *help, const serve_hist *h)
{
    nuri_sb_fmt(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i < SERVE_HIST_BUCKETS; i++) {
        cum += h->count[i];
        nuri_sb_fmt(b, "%s_bucket{le=\"%g\"} %llu\n", name, bucket_le[i], (unsigned long long)cum);
    }
    cum += h->count[SERVE_HIST_BUCKETS];
    nuri_sb_fmt(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
    nuri_sb_fmt(b, "%s_sum %.6f\n%s_count %llu\n", name, h->sum, name, (unsigned long long)h->n);
}

char *serve_metrics_text(serve_metrics *m, const char *model_name)
{
    nuri_sb b = {0};
    pthread_mutex_lock(&m->mu);
    nuri_sb_fmt(&b, "# HELP nuri_requests_total HTTP requests answered, by status code.\n"
                    "# TYPE nuri_requests_total counter\n");
    for (int s = 100; s < 600; s++)
        if (m->requests[s])
            nuri_sb_fmt(&b, "nuri_requests_total{code=\"%d\"} %llu\n", s,
                        (unsigned long long)m->requests[s]);
    nuri_sb_fmt(&b,
                "# HELP nuri_prompt_tokens_total Prompt tokens of admitted requests.\n"
                "# TYPE nuri_prompt_tokens_total counter\nnuri_prompt_tokens_total %llu\n",
                (unsigned long long)m->prompt_tokens);
    nuri_sb_fmt(&b,
                "# HELP nuri_prompt_tokens_cached_total Prompt tokens whose KV was reused.\n"
                "# TYPE nuri_prompt_tokens_cached_total counter\n"
                "nuri_prompt_tokens_cached_total %llu\n",
                (unsigned long long)m->cached_prompt_tokens);
    nuri_sb_fmt(&b,
                "# HELP nuri_completion_tokens_total Tokens generated.\n"
                "# TYPE nuri_completion_tokens_total counter\nnuri_completion_tokens_total %llu\n",
                (unsigned long long)m->completion_tokens);
    nuri_sb_fmt(&b,
                "# HELP nuri_generated_tokens_total Tokens sampled by the scheduler.\n"
                "# TYPE nuri_generated_tokens_total counter\nnuri_generated_tokens_total %llu\n",
                (unsigned long long)m->generated_tokens);
    nuri_sb_fmt(
        &b,
        "# HELP nuri_client_disconnects_total Clients gone before their answer was done.\n"
        "# TYPE nuri_client_disconnects_total counter\nnuri_client_disconnects_total %llu\n",
        (unsigned long long)m->disconnects);
    nuri_sb_fmt(&b,
                "# HELP nuri_http_connections Open client connections.\n"
                "# TYPE nuri_http_connections gauge\nnuri_http_connections %lld\n",
                (long long)m->connections);
    nuri_sb_fmt(&b,
                "# HELP nuri_http_connections_refused_total Connections answered 503 at once "
                "(a connection limit).\n"
                "# TYPE nuri_http_connections_refused_total counter\n"
                "nuri_http_connections_refused_total %llu\n",
                (unsigned long long)m->connections_refused);
    nuri_sb_fmt(&b,
                "# HELP nuri_preemptions_total Running requests whose KV was dropped to make room "
                "(recomputed later, output unchanged).\n"
                "# TYPE nuri_preemptions_total counter\nnuri_preemptions_total %llu\n",
                (unsigned long long)m->preemptions);
    nuri_sb_fmt(&b,
                "# HELP nuri_spec_drafted_tokens_total Draft tokens checked by speculative "
                "decoding (--draft-lookup).\n"
                "# TYPE nuri_spec_drafted_tokens_total counter\nnuri_spec_drafted_tokens_total "
                "%llu\n"
                "# HELP nuri_spec_accepted_tokens_total Draft tokens the model agreed with.\n"
                "# TYPE nuri_spec_accepted_tokens_total counter\nnuri_spec_accepted_tokens_total "
                "%llu\n",
                (unsigned long long)m->spec_drafted, (unsigned long long)m->spec_accepted);
    nuri_sb_fmt(
        &b,
        "# HELP nuri_kv_prefix_source_total Requests by where their prompt's KV came from: "
        "the KV pool in memory, a snapshot on disk, or none (computed).\n"
        "# TYPE nuri_kv_prefix_source_total counter\n"
        "nuri_kv_prefix_source_total{tier=\"memory\"} %llu\n"
        "nuri_kv_prefix_source_total{tier=\"disk\"} %llu\n"
        "nuri_kv_prefix_source_total{tier=\"none\"} %llu\n"
        "# HELP nuri_kv_snapshots_written_total KV snapshots written to --kv-dir.\n"
        "# TYPE nuri_kv_snapshots_written_total counter\n"
        "nuri_kv_snapshots_written_total %llu\n"
        "# HELP nuri_kv_snapshots_refused_total Snapshots found damaged or made for another "
        "model, removed (the prompt was computed).\n"
        "# TYPE nuri_kv_snapshots_refused_total counter\n"
        "nuri_kv_snapshots_refused_total %llu\n",
        (unsigned long long)m->kv_source[1], (unsigned long long)m->kv_source[2],
        (unsigned long long)m->kv_source[0], (unsigned long long)m->kv_snapshots_written,
        (unsigned long long)m->kv_snapshots_refused);
    hist_write(&b, "nuri_time_to_first_token_seconds",
               "Seconds from a request's arrival to its first generated token.", &m->ttft);
    hist_write(&b, "nuri_inter_token_latency_seconds",
               "Seconds between consecutive generated tokens of one request.", &m->itl);
    nuri_sb_fmt(&b,
                "# HELP nuri_queue_depth Requests waiting for a sequence slot.\n"
                "# TYPE nuri_queue_depth gauge\nnuri_queue_depth %lld\n",
                (long long)m->queue_depth);
    nuri_sb_fmt(&b,
                "# HELP nuri_running_sequences Requests being prefilled or decoded.\n"
                "# TYPE nuri_running_sequences gauge\nnuri_running_sequences %lld\n",
                (long long)m->running);
    nuri_sb_fmt(&b,
                "# HELP nuri_kv_pages_used KV cache pages in use (sequences and prefix cache).\n"
                "# TYPE nuri_kv_pages_used gauge\nnuri_kv_pages_used %lld\n",
                (long long)m->kv_pages_used);
    nuri_sb_fmt(&b,
                "# HELP nuri_kv_pages_total KV cache pages in the pool.\n"
                "# TYPE nuri_kv_pages_total gauge\nnuri_kv_pages_total %lld\n",
                (long long)m->kv_pages_total);
    nuri_sb_fmt(&b,
                "# HELP nuri_kv_cache_usage_ratio Fraction of the KV pool in use.\n"
                "# TYPE nuri_kv_cache_usage_ratio gauge\nnuri_kv_cache_usage_ratio %.4f\n",
                m->kv_pages_total ? (double)m->kv_pages_used / (double)m->kv_pages_total : 0.0);
    nuri_sb_fmt(&b,
                "# HELP nuri_model_info The model being served.\n# TYPE nuri_model_info gauge\n"
                "nuri_model_info{model=\"%s\"} 1\n",
                model_name);
    pthread_mutex_unlock(&m->mu);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
