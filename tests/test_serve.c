/*
 * test_serve.c: the server's request validation (src/serve/openai.c) and metrics text, without a
 * server. The HTTP behaviour is tested end to end in tests/serve.test.sh.
 */
#include "serve/metrics.h"
#include "serve/openai.h"
#include "test.h"

/* Parses text as a chat (or completion) request for a 1000-token vocabulary. */
static bool parse(const char *text, serve_kind kind, serve_request *r, serve_error *e)
{
    json_error_t je;
    json_t *body = json_loads(text, 0, &je);
    if (!body) {
        fprintf(stderr, "  bad test JSON: %s\n", je.text);
        return false;
    }
    bool ok = serve_request_parse(body, kind, 1000, r, e);
    if (ok) serve_request_free(r); // the borrowed parts die with body
    json_decref(body);
    return ok;
}

/* The parameter a bad request is blamed on. */
static const char *blamed(const char *text, serve_kind kind)
{
    static serve_error e;
    serve_request r;
    memset(&e, 0, sizeof e);
    if (parse(text, kind, &r, &e)) return "(accepted)";
    return e.param;
}

TEST(chat_minimal_request_gets_openai_defaults)
{
    json_t *body = json_loads(
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", 0, NULL);
    serve_request r;
    serve_error e;
    REQUIRE(serve_request_parse(body, SERVE_CHAT, 1000, &r, &e));
    CHECK(r.sp.temperature == 1.0f);
    CHECK(r.sp.top_p == 1.0f);
    CHECK(r.max_tokens == 0);
    CHECK(!r.stream && !r.logprobs && r.n_stop == 0);
    CHECK(!strcmp(r.model, "m"));
    serve_request_free(&r);
    json_decref(body);
}

TEST(chat_parameters_are_read)
{
    json_t *body =
        json_loads("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"temperature\":0.5,"
                   "\"top_p\":0.9,\"max_completion_tokens\":7,\"seed\":-3,\"stop\":\"END\","
                   "\"logprobs\":true,\"top_logprobs\":4,\"frequency_penalty\":0.5,"
                   "\"presence_penalty\":-1,\"logit_bias\":{\"5\":-100,\"7\":2.5},\"stream\":true,"
                   "\"stream_options\":{\"include_usage\":true}}",
                   0, NULL);
    serve_request r;
    serve_error e;
    REQUIRE(serve_request_parse(body, SERVE_CHAT, 1000, &r, &e));
    CHECK(r.sp.temperature == 0.5f && r.sp.top_p == 0.9f);
    CHECK(r.max_tokens == 7);
    CHECK(r.seed_given && r.sp.seed == (uint64_t)-3);
    CHECK(r.n_stop == 1 && !strcmp(r.stop[0], "END"));
    CHECK(r.logprobs && r.top_logprobs == 4 && r.sp.n_top_logprobs == 4);
    CHECK(r.sp.frequency_penalty == 0.5f && r.sp.presence_penalty == -1.0f);
    REQUIRE(r.sp.n_logit_bias == 2);
    CHECK(r.sp.logit_bias[0].token == 5 && r.sp.logit_bias[0].bias == -100.0f);
    CHECK(r.sp.logit_bias[1].token == 7 && r.sp.logit_bias[1].bias == 2.5f);
    CHECK(r.stream && r.include_usage);
    serve_request_free(&r);
    json_decref(body);
}

TEST(each_bad_parameter_is_named)
{
#define M "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]"
    CHECK(!strcmp(blamed("{" M ",\"temperature\":2.5}", SERVE_CHAT), "temperature"));
    CHECK(!strcmp(blamed("{" M ",\"temperature\":\"hot\"}", SERVE_CHAT), "temperature"));
    CHECK(!strcmp(blamed("{" M ",\"top_p\":1.5}", SERVE_CHAT), "top_p"));
    CHECK(!strcmp(blamed("{" M ",\"max_tokens\":-1}", SERVE_CHAT), "max_tokens"));
    CHECK(!strcmp(blamed("{" M ",\"max_completion_tokens\":0}", SERVE_CHAT),
                  "max_completion_tokens"));
    CHECK(!strcmp(blamed("{" M ",\"stop\":[\"a\",1]}", SERVE_CHAT), "stop[1]"));
    CHECK(!strcmp(blamed("{" M ",\"logit_bias\":{\"1000\":1}}", SERVE_CHAT), "logit_bias"));
    CHECK(!strcmp(blamed("{" M ",\"logit_bias\":{\"x\":1}}", SERVE_CHAT), "logit_bias"));
    CHECK(!strcmp(blamed("{" M ",\"top_logprobs\":3}", SERVE_CHAT), "top_logprobs"));
    CHECK(!strcmp(blamed("{" M ",\"stream\":1}", SERVE_CHAT), "stream"));
    CHECK(!strcmp(
        blamed("{" M ",\"stream\":true,\"stream_options\":{\"include_usage\":3}}", SERVE_CHAT),
        "stream_options.include_usage"));
    CHECK(!strcmp(blamed("{\"messages\":{}}", SERVE_CHAT), "messages"));
    CHECK(!strcmp(blamed("{\"messages\":[1]}", SERVE_CHAT), "messages[0]"));
    CHECK(!strcmp(blamed("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\"}]}]}",
                         SERVE_CHAT),
                  "messages[0].content[0]"));
    CHECK(!strcmp(blamed("{\"prompt\":[1,2000]}", SERVE_COMPLETION), "prompt"));
    CHECK(!strcmp(blamed("{\"prompt\":[\"a\",\"b\"]}", SERVE_COMPLETION), "prompt"));
    CHECK(!strcmp(blamed("{\"prompt\":\"a\",\"logprobs\":6}", SERVE_COMPLETION), "logprobs"));
    CHECK(!strcmp(blamed("{\"prompt\":\"a\",\"echo\":true}", SERVE_COMPLETION), "echo"));
    CHECK(!strcmp(blamed("[]", SERVE_CHAT), ""));
#undef M
}

TEST(assistant_messages_may_have_null_content)
{
    CHECK(!strcmp(blamed("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"},"
                         "{\"role\":\"assistant\",\"content\":null}]}",
                         SERVE_CHAT),
                  "(accepted)"));
}

TEST(top_p_zero_means_greedy)
{
    json_t *body = json_loads("{\"prompt\":\"a\",\"top_p\":0}", 0, NULL);
    serve_request r;
    serve_error e;
    REQUIRE(serve_request_parse(body, SERVE_COMPLETION, 1000, &r, &e));
    CHECK(r.sp.temperature == 0 && r.sp.top_p == 1);
    serve_request_free(&r);
    json_decref(body);
}

TEST(error_json_is_an_openai_error_object)
{
    serve_error e;
    serve_fail(&e, 400, "invalid_request_error", "top_p", "invalid_value", "bad \xff byte");
    char *s = serve_error_json(&e);
    REQUIRE(s != NULL);
    json_t *j = json_loads(s, 0, NULL);
    REQUIRE(j != NULL);
    json_t *err = json_object_get(j, "error");
    CHECK(!strcmp(json_string_value(json_object_get(err, "param")), "top_p"));
    CHECK(!strcmp(json_string_value(json_object_get(err, "code")), "invalid_value"));
    CHECK(!strcmp(json_string_value(json_object_get(err, "message")), "bad \xEF\xBF\xBD byte"));
    json_decref(j);
    free(s);
    serve_fail(&e, 503, "server_error", NULL, NULL, "busy");
    s = serve_error_json(&e);
    j = json_loads(s, 0, NULL);
    CHECK(json_is_null(json_object_get(json_object_get(j, "error"), "param")));
    json_decref(j);
    free(s);
}

TEST(utf8_sanitize_replaces_only_ill_formed_bytes)
{
    size_t n;
    char *s = serve_utf8_sanitize("a\xC3\xA9"
                                  "b\xE2\x82"
                                  "c\xED\xA0\x80",
                                  10, &n);
    CHECK(!strcmp(s, "a\xC3\xA9"
                     "b\xEF\xBF\xBD\xEF\xBF\xBD"
                     "c\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"));
    CHECK(n == strlen(s));
    free(s);
}

TEST(metrics_text_has_counters_histograms_and_gauges)
{
    serve_metrics m;
    serve_metrics_init(&m);
    serve_metrics_request(&m, 200);
    serve_metrics_request(&m, 200);
    serve_metrics_request(&m, 400);
    serve_metrics_tokens(&m, 10, 5, 3);
    serve_metrics_ttft(&m, 0.02);
    serve_metrics_itl(&m, 200.0); // beyond the last bucket: only +Inf
    serve_metrics_gauges(&m, 2, 3, 4, 16);
    char *t = serve_metrics_text(&m, "tiny");
    REQUIRE(t != NULL);
    CHECK(strstr(t, "nuri_requests_total{code=\"200\"} 2\n"));
    CHECK(strstr(t, "nuri_requests_total{code=\"400\"} 1\n"));
    CHECK(strstr(t, "nuri_prompt_tokens_total 10\n"));
    CHECK(strstr(t, "nuri_completion_tokens_total 5\n"));
    CHECK(strstr(t, "nuri_time_to_first_token_seconds_bucket{le=\"0.01\"} 0\n"));
    CHECK(strstr(t, "nuri_time_to_first_token_seconds_bucket{le=\"0.025\"} 1\n"));
    CHECK(strstr(t, "nuri_inter_token_latency_seconds_bucket{le=\"120\"} 0\n"));
    CHECK(strstr(t, "nuri_inter_token_latency_seconds_bucket{le=\"+Inf\"} 1\n"));
    CHECK(strstr(t, "nuri_queue_depth 2\n"));
    CHECK(strstr(t, "nuri_kv_cache_usage_ratio 0.2500\n"));
    free(t);
    serve_metrics_destroy(&m);
}

int main(void)
{
    RUN(chat_minimal_request_gets_openai_defaults);
    RUN(chat_parameters_are_read);
    RUN(each_bad_parameter_is_named);
    RUN(assistant_messages_may_have_null_content);
    RUN(top_p_zero_means_greedy);
    RUN(error_json_is_an_openai_error_object);
    RUN(utf8_sanitize_replaces_only_ill_formed_bytes);
    RUN(metrics_text_has_counters_histograms_and_gauges);
    TEST_DONE();
}
