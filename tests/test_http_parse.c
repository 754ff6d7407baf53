/*
 * test_http_parse.c: the HTTP request parser (src/serve/http_parse.c): heads, framing and chunked
 * bodies, including every ambiguous framing the server must refuse.
 */
#include "serve/http_parse.h"
#include "test.h"

static long parse(const char *text, http_head *h)
{
    const char *why;
    return http_parse_head(text, strlen(text), h, &why);
}

/* The framing of a complete head: true when accepted; *status on refusal. */
static bool framing(const char *text, http_framing *f, int *status)
{
    http_head h;
    const char *why;
    if (parse(text, &h) <= 0) return false;
    *status = 0;
    return http_head_framing(&h, f, status, &why);
}

TEST(a_complete_head_gives_its_length_method_target_and_headers)
{
    const char *t = "POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: a\r\nX-Y:  v w \r\n\r\nBODY";
    http_head h;
    long r = parse(t, &h);
    CHECK(r == (long)(strstr(t, "BODY") - t));
    CHECK(h.method_len == 4 && !memcmp(h.method, "POST", 4));
    CHECK(h.target_len == 24 && !memcmp(h.target, "/v1/chat/completions?x=1", 24));
    CHECK(h.minor == 1 && h.n_headers == 2);
    const http_header *x = http_head_find(&h, "x-y");
    REQUIRE(x != NULL);
    CHECK(x->value_len == 3 && !memcmp(x->value, "v w", 3)); // surrounding blanks trimmed
}

TEST(every_prefix_of_a_head_is_incomplete)
{
    const char *t = "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n";
    http_head h;
    const char *why;
    for (size_t n = 0; n < strlen(t); n++)
        CHECKF(http_parse_head(t, n, &h, &why) == HTTP_INCOMPLETE, "prefix of %zu bytes", n);
    CHECK(http_parse_head(t, strlen(t), &h, &why) == (long)strlen(t));
}

TEST(bare_line_feeds_end_lines_too)
{
    http_head h;
    CHECK(parse("GET / HTTP/1.0\nA: b\n\n", &h) == 21);
    CHECK(h.minor == 0 && h.n_headers == 1);
}

TEST(malformed_heads_are_refused)
{
    const char *bad[] = {
        "GET /\r\n\r\n",                        // no version
        "GET / HTTP/2.0\r\n\r\n",               // unsupported version
        "GET  / HTTP/1.1\r\n\r\n",              // two spaces
        "GET http://a/ HTTP/1.1\r\n\r\n",       // absolute form
        "G(T / HTTP/1.1\r\n\r\n",               // not a token
        "GET / HTTP/1.1\r\nA b: c\r\n\r\n",     // blank in a name
        "GET / HTTP/1.1\r\nA : c\r\n\r\n",      // blank before the colon
        "GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", // folded line
        "GET / HTTP/1.1\r\nA: b\x01\r\n\r\n",   // control byte in a value
        "GET / HTTP/1.1\r\nA: b\r\r\n\r\n",     // stray CR
        "\x16\x03\x01\x02\x00",                 // TLS to a plain port: refused at once
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        http_head h;
        CHECKF(parse(bad[i], &h) == HTTP_MALFORMED, "case %zu", i);
    }
}

TEST(too_many_header_lines_are_refused)
{
    char t[8192] = "GET / HTTP/1.1\r\n";
    for (int i = 0; i <= HTTP_MAX_HEADERS; i++) strcat(t, "A: b\r\n");
    strcat(t, "\r\n");
    http_head h;
    CHECK(parse(t, &h) == HTTP_MALFORMED);
}

TEST(content_length_must_be_a_plain_decimal)
{
    http_framing f;
    int st;
    CHECK(framing("POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n", &f, &st));
    CHECK(f.content_length == 12 && !f.chunked && f.keep_alive);
    const char *bad[] = {"-1", "abc", "+5", "1 2", "0x10", "99999999999999999999", ""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char t[128];
        snprintf(t, sizeof t, "POST / HTTP/1.1\r\nContent-Length: %s\r\n\r\n", bad[i]);
        CHECKF(!framing(t, &f, &st) && st == 400, "Content-Length: '%s'", bad[i]);
    }
}

TEST(two_different_content_lengths_are_refused_two_equal_ones_are_not)
{
    http_framing f;
    int st;
    CHECK(!framing("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", &f, &st));
    CHECK(st == 400);
    CHECK(framing("POST / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n", &f, &st));
    CHECK(f.content_length == 5);
}

TEST(content_length_with_transfer_encoding_is_refused)
{
    http_framing f;
    int st;
    CHECK(!framing("POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", &f,
                   &st));
    CHECK(st == 400);
}

TEST(only_chunked_transfer_coding_is_served)
{
    http_framing f;
    int st;
    CHECK(framing("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", &f, &st));
    CHECK(f.chunked && f.content_length == -1);
    CHECK(!framing("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", &f, &st));
    CHECK(st == 501);
    CHECK(!framing("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", &f, &st));
}

TEST(keep_alive_follows_the_version_and_the_connection_header)
{
    http_framing f;
    int st;
    CHECK(framing("GET / HTTP/1.1\r\n\r\n", &f, &st) && f.keep_alive);
    CHECK(framing("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n", &f, &st) && !f.keep_alive);
    CHECK(framing("GET / HTTP/1.0\r\n\r\n", &f, &st) && !f.keep_alive);
    CHECK(framing("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &f, &st) && f.keep_alive);
    CHECK(framing("POST / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n", &f, &st) && f.expect_continue);
    CHECK(!framing("POST / HTTP/1.1\r\nExpect: something\r\n\r\n", &f, &st) && st == 417);
}

/* Decodes body in pieces of `step` bytes; returns the result and the decoded text. */
static int decode(const char *body, size_t step, char *out, size_t *out_len, size_t *raw)
{
    size_t n = strlen(body);
    char buf[1024];
    memcpy(buf, body, n);
    http_chunked c = {0};
    const char *why;
    int r = 0;
    for (size_t end = step < n ? step : n;; end = end + step < n ? end + step : n) {
        r = http_chunked_decode(&c, buf, end, 1000, &why);
        if (r != 0 || end == n) break;
    }
    memcpy(out, buf, c.out);
    *out_len = c.out;
    *raw = c.in;
    return r;
}

TEST(chunked_bodies_decode_in_any_pieces)
{
    const char *body =
        "4\r\nWiki\r\n5;ext=\"x\"\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nT: v\r\n\r\n"
        "NEXT";
    for (size_t step = 1; step <= strlen(body); step++) {
        char out[256];
        size_t n, raw;
        int r = decode(body, step, out, &n, &raw);
        CHECKF(r == 1, "step %zu", step);
        CHECKF(n == 23 && !memcmp(out, "Wikipedia in\r\n\r\nchunks.", 23), "step %zu", step);
        CHECKF(raw == strlen(body) - 4, "step %zu: raw %zu", step, raw); // NEXT is not the body's
    }
}

TEST(malformed_or_oversized_chunks_are_refused)
{
    const char *bad[] = {"x\r\n", "4\r\nabcdX\r\n", "\r\n", "fffffffffffffffff\r\n",
                         "3e9\r\n" /* 1001 bytes: over the 1000-byte limit */};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char out[256];
        size_t n, raw;
        CHECKF(decode(bad[i], 64, out, &n, &raw) == HTTP_MALFORMED, "case %zu", i);
    }
    char out[256];
    size_t n, raw;
    CHECK(decode("4\r\nabcd\r\n", 64, out, &n, &raw) == 0); // not over yet: more is needed
}

int main(void)
{
    RUN(a_complete_head_gives_its_length_method_target_and_headers);
    RUN(every_prefix_of_a_head_is_incomplete);
    RUN(bare_line_feeds_end_lines_too);
    RUN(malformed_heads_are_refused);
    RUN(too_many_header_lines_are_refused);
    RUN(content_length_must_be_a_plain_decimal);
    RUN(two_different_content_lengths_are_refused_two_equal_ones_are_not);
    RUN(content_length_with_transfer_encoding_is_refused);
    RUN(only_chunked_transfer_coding_is_served);
    RUN(keep_alive_follows_the_version_and_the_connection_header);
    RUN(chunked_bodies_decode_in_any_pieces);
    RUN(malformed_or_oversized_chunks_are_refused);
    TEST_DONE();
}
