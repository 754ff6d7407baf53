/*
 * hub_parse.h: reading what a hub (or anything answering at HF_ENDPOINT) sends back: response
 * header lines and the JSON file list. Both are untrusted input: every field is bounded, and a
 * file path that could leave the repository's directory in the cache is dropped. No I/O here, so
 * fuzz/fuzz_hub.c can drive it directly.
 */
#ifndef NURI_HUB_PARSE_H
#define NURI_HUB_PARSE_H

#include "hub/hub_ref.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What the headers of a response (and of the redirects before it) said. */
typedef struct hub_head {
    long status;             // of the latest response in the redirect chain
    char error_code[64];     // X-Error-Code of the latest response
    char error_message[256]; // X-Error-Message of the latest response
    char linked_etag[128];   // X-Linked-Etag of the first response that had one (the sha256)
    uint64_t linked_size;    // X-Linked-Size (bytes) of the first response that had one
    char commit[64];         // X-Repo-Commit of the first response that had one
    char next[4096];         // the Link header's rel="next" URL of the latest response
    uint64_t range_start;    // the first byte of the latest response's Content-Range
    bool has_range;          // a Content-Range was there
} hub_head;

/* Takes one header line (n bytes, not NUL-terminated, CRLF included or not) into h. A status
 * line ("HTTP/1.1 302 Found") starts a new response and clears the per-response fields. */
void hub_head_line(hub_head *h, const char *line, size_t n);

/* The sha256 in an X-Linked-Etag value ("<hex>", W/"<hex>"), lowercase, into out; false when
 * the value is not one. */
bool hub_etag_sha256(const char *etag, char out[65]);

/* True for 64 hex digits and nothing else. */
bool hub_is_hex64(const char *s);

/* A path from the hub that is safe to put under the repository's cache directory: relative, at
 * most 1023 bytes, no empty, "." or ".." component, no backslash or control character. */
bool hub_path_safe(const char *path);

typedef struct hub_file_list {
    hub_file *f; // n files; each path owned by the list
    size_t n, cap;
} hub_file_list;

void hub_file_list_free(hub_file_list *l);

/* Adds the files of one page of GET /api/models/ORG/REPO/tree/REV (a JSON array of {type, path,
 * size, lfs: {oid, size}}; entries that are not files or whose path is unsafe are skipped).
 * `url` names the page in messages. */
nuri_status hub_tree_parse(const char *body, size_t n, const char *url, hub_file_list *l);

#endif
