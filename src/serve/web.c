/*
 * web.c: the web chat page (src/serve/web/index.html, embedded at build time) and the headers it
 * is served with.
 *
 * The page loads nothing from anywhere: its CSS and JS are inline, in exactly one <style> and one
 * <script> element. The Content-Security-Policy allows those two by hash (computed here, once,
 * from the embedded bytes, so it can never disagree with the page), `connect-src 'self'` for its
 * calls to the API, and nothing else: an injected <script>, inline event handler, external image
 * or form target is refused by the browser even if the page's own escaping ever failed.
 */
#include "serve/web.h"

#include "base/sha256.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

// $(BUILD)/gen/web_index.c: the page's bytes and a NUL after them; len excludes the NUL
extern const unsigned char serve_web_index_html[];
extern const size_t serve_web_index_html_len;

static const char *page;
static char headers[1024]; // the answer's extra headers
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* The standard base64 of d[0..n) into out (4 * ceil(n / 3) + 1 bytes). */
static void base64(const uint8_t *d, size_t n, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16;
        if (i + 1 < n) v |= (uint32_t)d[i + 1] << 8;
        if (i + 2 < n) v |= d[i + 2];
        out[o++] = tab[(v >> 18) & 63];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? tab[v & 63] : '=';
    }
    out[o] = 0;
}

/* "'sha256-...'" for the text of the page's first <tag>...</tag> element, as CSP hashes it (the
 * element's content exactly), or "'none'" when the page has no such element. */
static void element_hash(const char *tag, char out[64])
{
    char open[16], close[16];
    snprintf(open, sizeof open, "<%s>", tag);
    snprintf(close, sizeof close, "</%s>", tag);
    // the element that the first closing tag ends (an opening tag's text may appear earlier, in
    // a comment)
    const char *b = strstr(page, close), *a = NULL;
    for (const char *p = page; b && (p = strstr(p, open)) && p < b; p++) a = p;
    if (!a) {
        snprintf(out, 64, "'none'");
        return;
    }
    a += strlen(open);
    nuri_sha256 sh;
    uint8_t d[32];
    char b64[48];
    nuri_sha256_init(&sh);
    nuri_sha256_update(&sh, a, (size_t)(b - a));
    nuri_sha256_final(&sh, d);
    base64(d, sizeof d, b64);
    snprintf(out, 64, "'sha256-%s'", b64);
}

static void web_init(void)
{
    page = (const char *)serve_web_index_html;
    char script[64], style[64];
    element_hash("script", script);
    element_hash("style", style);
    snprintf(headers, sizeof headers,
             "Content-Security-Policy: default-src 'none'; script-src %s; style-src %s; "
             "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
             "frame-ancestors 'none'\r\n"
             "X-Content-Type-Options: nosniff\r\n"
             "Referrer-Policy: no-referrer\r\n"
             "X-Frame-Options: DENY\r\n"
             "Cache-Control: no-cache\r\n",
             script, style);
}

const char *serve_web_page(size_t *len)
{
    pthread_once(&once, web_init);
    *len = serve_web_index_html_len;
    return page;
}

const char *serve_web_headers(void)
{
    pthread_once(&once, web_init);
    return headers;
}
