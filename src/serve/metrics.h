/*
 * metrics.h: the server's counters and histograms, written as Prometheus text for GET /metrics.
 *
 * One mutex guards everything; updates are a few per request and one per generated token, far
 * from any hot loop. Gauges the scheduler owns (queue depth, running sequences, KV pages) are
 * plain stores read under the same mutex.
 */
#ifndef NURI_SERVE_METRICS_H
#define NURI_SERVE_METRICS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define SERVE_HIST_BUCKETS 14

typedef struct serve_hist {
    uint64_t count[SERVE_HIST_BUCKETS + 1]; // per bucket; the last is +Inf
    double sum;                             // seconds
    uint64_t n;
} serve_hist;

typedef struct serve_metrics {
    pthread_mutex_t mu;
    uint64_t requests[600]; // by HTTP status
    uint64_t prompt_tokens, completion_tokens, cached_prompt_tokens;
    uint64_t generated_tokens; // sampled by the scheduler (also for requests cancelled later)
    uint64_t disconnects;      // clients that went away before their answer was complete
    uint64_t preemptions;      // running sequences whose KV was dropped to make room (sched.h)
    uint64_t spec_drafted, spec_accepted; // speculative decoding: draft tokens checked, accepted
    uint64_t kv_source[3]; // admissions by where the prompt's KV came from: none, memory, disk
    uint64_t kv_snapshots_written, kv_snapshots_refused;
    serve_hist ttft; // seconds from arrival to the first token
    serve_hist itl;  // seconds between consecutive tokens of one sequence
    int64_t queue_depth, running, kv_pages_used, kv_pages_total;
    int64_t connections;          // open client connections
    uint64_t connections_refused; // answered 503 at once (over a connection limit)
    double started;               // wall clock, seconds
} serve_metrics;

void serve_metrics_init(serve_metrics *m);
void serve_metrics_destroy(serve_metrics *m);
void serve_metrics_request(serve_metrics *m, int http_status);
void serve_metrics_tokens(serve_metrics *m, int64_t prompt, int64_t completion, int64_t cached);
void serve_metrics_generated(serve_metrics *m, int64_t n);
void serve_metrics_disconnect(serve_metrics *m);
void serve_metrics_connections(serve_metrics *m, int64_t open);
void serve_metrics_refused(serve_metrics *m);
void serve_metrics_preemption(serve_metrics *m);
void serve_metrics_spec(serve_metrics *m, int64_t drafted, int64_t accepted);
void serve_metrics_kv_source(serve_metrics *m, int source); // SERVE_KV_* (sched.h)
void serve_metrics_kv_snapshot(serve_metrics *m, bool written, bool refused);
void serve_metrics_ttft(serve_metrics *m, double seconds);
void serve_metrics_itl(serve_metrics *m, double seconds);
void serve_metrics_gauges(serve_metrics *m, int64_t queue_depth, int64_t running, int64_t kv_used,
                          int64_t kv_total);

/* The Prometheus text exposition (version 0.0.4). Caller frees with free(); NULL if out of memory.
 */
char *serve_metrics_text(serve_metrics *m, const char *model_name);

/* Seconds on a monotonic clock. */
double serve_now(void);

#endif
