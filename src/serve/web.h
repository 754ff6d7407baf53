/*
 * web.h: the web chat page that `nuri serve` answers at GET / (and /index.html); private to
 * src/serve/. The page is one self-contained HTML file, src/serve/web/index.html, embedded into
 * the binary at build time (the Makefile turns it into a byte array, $(BUILD)/gen/web_index.c).
 */
#ifndef NURI_SERVE_WEB_H
#define NURI_SERVE_WEB_H

#include <stddef.h>

/* The page, NUL-terminated, and its length in bytes. Borrowed: static, lives as long as the
 * program. */
const char *serve_web_page(size_t *len);

/* The headers the page is served with, each ending in CRLF: a Content-Security-Policy that allows
 * exactly the page's own inline <script> and <style> (by their SHA-256), connections to its own
 * origin only and nothing else, then nosniff, no referrer, no framing, no caching. Borrowed:
 * static. Computed once, thread-safe. */
const char *serve_web_headers(void);

#endif
