/*
 * hub_pull.c: the network side of hub.h, over libcurl: list a repository, choose its files,
 * download each into <file>.part (resuming from the .part's end with a Range request), hash while
 * writing, compare with the published SHA-256, then write the .meta.json and rename into place.
 *
 * One download at a time per file: the .part is locked (flock), so a second nuri waits for nothing
 * and says another one is downloading. A .part whose hash does not match is kept and never renamed.
 */
#include "hub/hub.h"
#include "hub/hub_parse.h"

#include "base/sha256.h"
#include "base/status.h"

#include <curl/curl.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LIST_BODY_MAX (64u << 20) // bytes of one page of a repository's file list
#define ERR_BODY_MAX 1024         // bytes of an error response kept for the message
#define HASH_CHUNK (1u << 20)     // bytes read at a time when hashing an existing .part

/* ---- HTTP ----------------------------------------------------------------------------------- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;
static void curl_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static size_t on_header(char *line, size_t size, size_t nmemb, void *ud)
{
    hub_head_line(ud, line, size * nmemb);
    return size * nmemb;
}

typedef struct hub_ctx {
    const char *endpoint; // without a trailing '/'
    const char *token;    // NULL when none
    const char *cache;
    const hub_opts *o;
    struct curl_slist *auth;
} hub_ctx;

static CURL *easy_new(hub_ctx *c, const char *url, hub_head *h, char *errbuf)
{
    CURL *e = curl_easy_init();
    if (!e) return NULL;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "nuri/" NURI_VERSION);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(e, CURLOPT_MAXREDIRS, 10L);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, 30L);
    // a stalled transfer (under 1 byte/s for a minute) is a network error, not a hang
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, h);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
    errbuf[0] = 0;
    if (c->auth) curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->auth);
    return e;
}

/* The message for a failed transfer: curl's own words when it has them, then `after`. */
static nuri_status net_error(CURLcode rc, const char *errbuf, const char *what, const char *after)
{
    return nuri_error(NURI_ERR_IO, "network error %s: %s%s", what,
                      errbuf[0] ? errbuf : curl_easy_strerror(rc), after);
}

/* The message for an HTTP error status, saying what to do about it. `file` is NULL for the
 * repository's listing. */
static nuri_status http_error(hub_ctx *c, const hub_ref *ref, const char *file, const hub_head *h,
                              const char *url)
{
    const char *code = h->error_code;
    bool gated = !strcmp(code, "GatedRepo");
    if (gated || h->status == 403 || (h->status == 401 && strcmp(code, "RepoNotFound"))) {
        if (c->token)
            return nuri_error(NURI_ERR_IO,
                              "%s/%s is gated (HTTP %ld): the token in HF_TOKEN has no access; "
                              "accept the licence on %s/%s/%s with that account",
                              ref->org, ref->repo, h->status, c->endpoint, ref->org, ref->repo);
        return nuri_error(NURI_ERR_IO,
                          "%s/%s needs a token (HTTP %ld, gated or private): accept the licence "
                          "on %s/%s/%s, then set HF_TOKEN to an access token of that account",
                          ref->org, ref->repo, h->status, c->endpoint, ref->org, ref->repo);
    }
    if (!strcmp(code, "RepoNotFound") || (h->status == 404 && !file))
        return nuri_error(NURI_ERR_NOT_FOUND, "repository %s/%s not found on %s (HTTP %ld)%s",
                          ref->org, ref->repo, c->endpoint, h->status,
                          c->token ? "" : "; a private repository needs HF_TOKEN");
    if (h->status == 404)
        return nuri_error(NURI_ERR_NOT_FOUND, "%s/%s has no file '%s' (HTTP 404)", ref->org,
                          ref->repo, file);
    return nuri_error(NURI_ERR_IO, "HTTP %ld from %s%s%s", h->status, url,
                      h->error_message[0] ? ": " : "", h->error_message);
}

/* Escapes a repository path for a URL (every byte but unreserved ones and '/'). */
static char *url_path(const char *s)
{
    size_t n = strlen(s);
    char *out = malloc(3 * n + 1), *o = out;
    if (!out) return NULL;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (isalnum(*p) || strchr("-._~/", *p))
            *o++ = (char)*p;
        else
            o += sprintf(o, "%%%02X", *p);
    }
    *o = 0;
    return out;
}

/* ---- listing a repository ------------------------------------------------------------------- */

typedef struct membuf {
    char *p;
    size_t n;
    size_t max;
    bool over; // the body was longer than max
} membuf;

static size_t on_body_mem(char *data, size_t size, size_t nmemb, void *ud)
{
    membuf *b = ud;
    size_t n = size * nmemb;
    if (b->n + n > b->max) {
        b->over = true;
        return 0; // curl reports a write error
    }
    char *p = realloc(b->p, b->n + n + 1);
    if (!p) return 0;
    memcpy(p + b->n, data, n);
    b->p = p;
    b->n += n;
    b->p[b->n] = 0;
    return n;
}

static nuri_status list_repo_files(hub_ctx *c, const hub_ref *ref, hub_file_list *l)
{
    char *url = NULL;
    if (asprintf(&url, "%s/api/models/%s/%s/tree/main?recursive=true", c->endpoint, ref->org,
                 ref->repo) < 0)
        return nuri_error(NURI_ERR_NOMEM, "out of memory");
    nuri_status st = NURI_OK;
    for (int page = 0; url && st == NURI_OK; page++) {
        if (page == 10000) {
            st = nuri_error(NURI_ERR_LIMIT, "%s/%s: the file list goes on past 10000 pages",
                            ref->org, ref->repo);
            break;
        }
        hub_head h = {0};
        membuf b = {.max = LIST_BODY_MAX};
        char errbuf[CURL_ERROR_SIZE];
        CURL *e = easy_new(c, url, &h, errbuf);
        if (!e) {
            st = nuri_error(NURI_ERR_NOMEM, "cannot start a transfer");
            break;
        }
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body_mem);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
        CURLcode rc = curl_easy_perform(e);
        curl_easy_cleanup(e);
        if (rc == CURLE_WRITE_ERROR && b.over)
            st = nuri_error(NURI_ERR_LIMIT, "%s: the file list is over %u MiB", url,
                            LIST_BODY_MAX >> 20);
        else if (rc != CURLE_OK && h.status < 400) {
            char what[1400];
            snprintf(what, sizeof what, "listing %s/%s at %s", ref->org, ref->repo, c->endpoint);
            st = net_error(rc, errbuf, what, "");
        } else if (h.status != 200)
            st = http_error(c, ref, NULL, &h, url);
        else
            st = hub_tree_parse(b.p ? b.p : "", b.n, url, l);
        free(b.p);
        free(url);
        url = NULL;
        if (st == NURI_OK && h.next[0] && !(url = strdup(h.next)))
            st = nuri_error(NURI_ERR_NOMEM, "out of memory");
    }
    free(url);
    return st;
}

/* ---- downloading one file ------------------------------------------------------------------- */

typedef struct transfer {
    int fd;          // the .part file, open for writing at `have`
    uint64_t have;   // bytes in the .part file
    uint64_t start;  // bytes there when this request began
    uint64_t total;  // expected size, 0 when unknown
    nuri_sha256 sha; // over bytes [0, have)
    hub_head *h;
    bool body_started;   // the first byte of the final response's body has been seen
    int write_errno;     // why writing failed (0: it did not)
    bool range_mismatch; // a 206 that does not start where the .part ends
    char err_body[ERR_BODY_MAX];
    size_t err_n;
    hub_progress prog;
    const hub_opts *o;
    struct timespec last; // of the last progress call
} transfer;

static size_t on_body_file(char *data, size_t size, size_t nmemb, void *ud)
{
    transfer *t = ud;
    size_t n = size * nmemb;
    long status = t->h->status;
    if (status != 200 && status != 206) { // an error page: keep its start for the message
        size_t take = n < sizeof t->err_body - 1 - t->err_n ? n : sizeof t->err_body - 1 - t->err_n;
        memcpy(t->err_body + t->err_n, data, take);
        t->err_n += take;
        t->err_body[t->err_n] = 0;
        return n;
    }
    if (!t->body_started) {
        t->body_started = true;
        if (status == 206 && (!t->h->has_range || t->h->range_start != t->have)) {
            t->range_mismatch = true;
            return 0;
        }
        if (status == 200 && t->have) { // the server ignored the Range: start over
            if (ftruncate(t->fd, 0) || lseek(t->fd, 0, SEEK_SET) < 0) {
                t->write_errno = errno;
                return 0;
            }
            t->have = t->start = t->prog.resumed_at = 0;
            nuri_sha256_init(&t->sha);
        }
    }
    for (size_t off = 0; off < n;) {
        ssize_t w = write(t->fd, data + off, n - off);
        if (w < 0) {
            if (errno == EINTR) continue;
            t->write_errno = errno;
            return 0;
        }
        off += (size_t)w;
    }
    nuri_sha256_update(&t->sha, data, n);
    t->have += n;
    return n;
}

static void report(transfer *t, bool finished)
{
    if (!t->o->progress) return;
    t->prog.done = t->have;
    t->prog.total = t->total;
    t->prog.finished = finished;
    t->o->progress(t->o->progress_ud, &t->prog);
}

static int on_xfer(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ult, curl_off_t uln)
{
    transfer *t = ud;
    if (!t->total && dltotal > 0 && (t->h->status == 200 || t->h->status == 206))
        t->total = t->start + (uint64_t)dltotal;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double dt =
        (double)(now.tv_sec - t->last.tv_sec) + 1e-9 * (double)(now.tv_nsec - t->last.tv_nsec);
    if (dt >= 0.1) { // at most 10 progress calls a second
        t->last = now;
        report(t, false);
    }
    return 0;
}

/* Hashes the first `have` bytes of fd into sha. */
static nuri_status hash_prefix(int fd, uint64_t have, nuri_sha256 *sha, const char *path)
{
    uint8_t *buf = malloc(HASH_CHUNK);
    if (!buf) return nuri_error(NURI_ERR_NOMEM, "out of memory");
    nuri_status st = NURI_OK;
    for (uint64_t off = 0; off < have;) {
        size_t want = have - off < HASH_CHUNK ? (size_t)(have - off) : HASH_CHUNK;
        ssize_t r = pread(fd, buf, want, (off_t)off);
        if (r <= 0) {
            if (r < 0 && errno == EINTR) continue;
            st = nuri_error(NURI_ERR_IO, "cannot read %s: %s", path,
                            r < 0 ? strerror(errno) : "it got shorter");
            break;
        }
        nuri_sha256_update(sha, buf, (size_t)r);
        off += (uint64_t)r;
    }
    free(buf);
    return st;
}

/* mkdir -p of the directory part of path. */
static nuri_status make_parent_dirs(const char *path)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return nuri_error(NURI_ERR_LIMIT, "path too long: %s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0755) && errno != EEXIST)
            return nuri_error(NURI_ERR_IO, "cannot create %s: %s", buf, strerror(errno));
        *p = '/';
    }
    return NURI_OK;
}

static nuri_status write_meta(hub_ctx *c, const hub_ref *ref, const hub_file *f, const char *sha,
                              const char *commit, const char *final_path)
{
    char *meta = NULL, *tmp = NULL;
    if (asprintf(&meta, "%s.meta.json", final_path) < 0)
        return nuri_error(NURI_ERR_NOMEM, "out of memory");
    if (asprintf(&tmp, "%s.tmp", meta) < 0) {
        free(meta);
        return nuri_error(NURI_ERR_NOMEM, "out of memory");
    }
    char repo[2 * HUB_NAME_MAX + 2], when[32];
    snprintf(repo, sizeof repo, "%s/%s", ref->org, ref->repo);
    time_t now = time(NULL);
    struct tm tm;
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
    bool commit_ok = commit[0] != 0;
    for (const char *p = commit; *p; p++) commit_ok &= isalnum((unsigned char)*p) != 0;
    json_t *j = json_pack("{s:s, s:s, s:I, s:s?, s:s?, s:s, s:s}", "repo", repo, "file", f->path,
                          "size", (json_int_t)f->size, "sha256", sha[0] ? sha : NULL, "commit",
                          commit_ok ? commit : NULL, "endpoint", c->endpoint, "pulled", when);
    nuri_status st = NURI_OK;
    if (!j || json_dump_file(j, tmp, JSON_INDENT(2)) || rename(tmp, meta)) {
        int err = errno;
        unlink(tmp);
        st = nuri_error(NURI_ERR_IO, "cannot write %s: %s", meta,
                        err == ENOSPC ? "disk full" : strerror(err));
    }
    json_decref(j);
    free(tmp);
    free(meta);
    return st;
}

/* The sha256 the hub publishes for f, in want ("" when it publishes none): the listing's LFS
 * oid, else the X-Linked-Etag of a HEAD on the resolve route, read from the redirect itself (as
 * huggingface_hub does), not from where it points. */
static nuri_status published_sha(hub_ctx *c, const hub_ref *ref, const hub_file *f, const char *url,
                                 char want[65])
{
    want[0] = 0;
    if (f->sha256[0]) {
        memcpy(want, f->sha256, 65);
        return NURI_OK;
    }
    hub_head h = {0};
    char errbuf[CURL_ERROR_SIZE];
    CURL *e = easy_new(c, url, &h, errbuf);
    if (!e) return nuri_error(NURI_ERR_NOMEM, "cannot start a transfer");
    curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    CURLcode rc = curl_easy_perform(e);
    curl_easy_cleanup(e);
    if (rc != CURLE_OK) {
        char what[512];
        snprintf(what, sizeof what, "asking for %s/%s/%s", ref->org, ref->repo, f->path);
        return net_error(rc, errbuf, what, "");
    }
    if (h.status >= 400) return http_error(c, ref, f->path, &h, url);
    hub_etag_sha256(h.linked_etag, want);
    return NURI_OK;
}

/* Brings files[k] into the cache at final_path (unless it is there), verified. */
static nuri_status fetch_one(hub_ctx *c, const hub_ref *ref, const hub_file *f, int part,
                             int n_parts, const char *final_path, bool *fetched, bool *unchecked)
{
    *fetched = *unchecked = false;
    char *part_path = NULL, *url = NULL, *esc = url_path(f->path);
    if (!esc || asprintf(&part_path, "%s.part", final_path) < 0) {
        free(esc);
        return nuri_error(NURI_ERR_NOMEM, "out of memory");
    }
    nuri_status st = NURI_OK;
    int fd = -1;
    if (asprintf(&url, "%s/%s/%s/resolve/main/%s", c->endpoint, ref->org, ref->repo, esc) < 0) {
        url = NULL;
        st = nuri_error(NURI_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((st = make_parent_dirs(final_path)) != NURI_OK) goto done;
    fd = open(part_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        st = nuri_error(NURI_ERR_IO, "cannot open %s: %s", part_path, strerror(errno));
        goto done;
    }
    if (flock(fd, LOCK_EX | LOCK_NB)) {
        st = nuri_error(NURI_ERR_IO, "%s: another nuri is downloading it now", part_path);
        goto done;
    }
    struct stat sb;
    if (fstat(fd, &sb)) {
        st = nuri_error(NURI_ERR_IO, "%s: %s", part_path, strerror(errno));
        goto done;
    }
    hub_head h = {0};
    transfer t = {.fd = fd, .have = (uint64_t)sb.st_size, .total = f->size, .h = &h, .o = c->o};
    t.prog = (hub_progress){.file = f->path, .part = part, .n_parts = n_parts};
    if (f->size && t.have > f->size) t.have = 0; // longer than the file: not ours, start over
    if (ftruncate(fd, (off_t)t.have) || lseek(fd, (off_t)t.have, SEEK_SET) < 0) {
        st = nuri_error(NURI_ERR_IO, "%s: %s", part_path, strerror(errno));
        goto done;
    }
    nuri_sha256_init(&t.sha);
    if ((st = hash_prefix(fd, t.have, &t.sha, part_path)) != NURI_OK) goto done;
    char want[65];
    if ((st = published_sha(c, ref, f, url, want)) != NURI_OK) goto done;

    // Transfer what is missing. A server that answers 416 to the Range (the .part is not a
    // prefix it can extend) gets one more try from byte 0.
    for (int attempt = 0; !(f->size && t.have == f->size); attempt++) {
        memset(&h, 0, sizeof h);
        t.start = t.prog.resumed_at = t.have;
        t.body_started = false;
        t.err_n = 0;
        t.err_body[0] = 0;
        clock_gettime(CLOCK_MONOTONIC, &t.last);
        char errbuf[CURL_ERROR_SIZE], range[48];
        CURL *e = easy_new(c, url, &h, errbuf);
        if (!e) {
            st = nuri_error(NURI_ERR_NOMEM, "cannot start a transfer");
            goto done;
        }
        snprintf(range, sizeof range, "%llu-", (unsigned long long)t.have);
        if (t.have) curl_easy_setopt(e, CURLOPT_RANGE, range);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body_file);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, &t);
        curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_xfer);
        curl_easy_setopt(e, CURLOPT_XFERINFODATA, &t);
        curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
        report(&t, false);
        CURLcode rc = curl_easy_perform(e);
        curl_easy_cleanup(e);
        *fetched = true;
        if (t.write_errno == ENOSPC) {
            st = nuri_error(NURI_ERR_IO,
                            "disk full while writing %s: %llu of %llu bytes kept there; free "
                            "some space and run the command again to resume",
                            part_path, (unsigned long long)t.have, (unsigned long long)t.total);
            goto done;
        }
        if (t.write_errno) {
            st = nuri_error(NURI_ERR_IO, "cannot write %s: %s", part_path, strerror(t.write_errno));
            goto done;
        }
        if (t.range_mismatch) {
            st = nuri_error(NURI_ERR_IO, "%s answered a resume from byte %llu with another range",
                            url, (unsigned long long)t.have);
            goto done;
        }
        if (h.status == 416 && attempt == 0) { // the server cannot extend this .part
            if (ftruncate(fd, 0) || lseek(fd, 0, SEEK_SET) < 0) {
                st = nuri_error(NURI_ERR_IO, "%s: %s", part_path, strerror(errno));
                goto done;
            }
            t.have = 0;
            nuri_sha256_init(&t.sha);
            continue;
        }
        if (h.status >= 400) {
            st = http_error(c, ref, f->path, &h, url);
            goto done;
        }
        if (rc != CURLE_OK) {
            char what[512], after[1024];
            snprintf(what, sizeof what, "downloading %s/%s/%s", ref->org, ref->repo, f->path);
            snprintf(after, sizeof after,
                     "; %llu of %llu bytes are kept in %s: run the command again to resume",
                     (unsigned long long)t.have, (unsigned long long)t.total, part_path);
            st = net_error(rc, errbuf, what, after);
            goto done;
        }
        if (h.status != 200 && h.status != 206) {
            st = nuri_error(NURI_ERR_IO, "HTTP %ld from %s", h.status, url);
            goto done;
        }
        if (!f->size && h.linked_size && t.have != h.linked_size) {
            st = nuri_error(NURI_ERR_IO, "%s: %llu bytes received, the hub said %llu", url,
                            (unsigned long long)t.have, (unsigned long long)h.linked_size);
            goto done;
        }
        if (!f->size) break; // the size was not listed: the transfer's end is the file's end
        if (t.have != f->size) {
            st = nuri_error(NURI_ERR_IO,
                            "downloading %s/%s/%s: %llu bytes received, the file has %llu; run "
                            "the command again to resume",
                            ref->org, ref->repo, f->path, (unsigned long long)t.have,
                            (unsigned long long)f->size);
            goto done;
        }
    }
    t.total = t.have;
    report(&t, true);

    char got[65];
    uint8_t digest[32];
    nuri_sha256_final(&t.sha, digest);
    nuri_sha256_hex(digest, got);
    if (want[0] && strcmp(want, got)) {
        st = nuri_error(NURI_ERR_FORMAT,
                        "checksum mismatch for %s/%s/%s: the hub publishes sha256 %s, the "
                        "download has %s; it stays in %s and is not used (remove it with "
                        "'nuri rm %s/%s/%s' to download it again)",
                        ref->org, ref->repo, f->path, want, got, part_path, ref->org, ref->repo,
                        f->path);
        goto done;
    }
    *unchecked = !want[0];
    if (fsync(fd)) {
        st = nuri_error(NURI_ERR_IO, "%s: %s", part_path,
                        errno == ENOSPC ? "disk full" : strerror(errno));
        goto done;
    }
    if ((st = write_meta(c, ref, f, want, h.commit, final_path)) != NURI_OK) goto done;
    if (rename(part_path, final_path))
        st = nuri_error(NURI_ERR_IO, "cannot rename %s into place: %s", part_path, strerror(errno));
done:
    if (fd >= 0) close(fd);
    free(url);
    free(esc);
    free(part_path);
    return st;
}

/* ---- pulling a model ------------------------------------------------------------------------ */

static nuri_status read_meta_sha(const char *final_path, char sha[65])
{
    sha[0] = 0;
    char *meta = NULL;
    if (asprintf(&meta, "%s.meta.json", final_path) < 0) return NURI_ERR_NOMEM;
    json_t *j = json_load_file(meta, 0, NULL);
    free(meta);
    const char *s = json_string_value(json_object_get(j, "sha256"));
    if (s && hub_is_hex64(s)) memcpy(sha, s, 65);
    json_decref(j);
    return NURI_OK;
}

nuri_status hub_pull(const hub_opts *o, const hub_ref *ref, hub_model *out)
{
    memset(out, 0, sizeof *out);
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK)
        return nuri_error(NURI_ERR_IO, "libcurl: %s", curl_easy_strerror(curl_init_rc));
    hub_ctx c = {.o = o};
    const char *ep = o->endpoint ? o->endpoint : getenv("HF_ENDPOINT");
    if (!ep || !ep[0]) ep = "https://huggingface.co";
    char endpoint[1024];
    size_t en = strlen(ep);
    while (en && ep[en - 1] == '/') en--;
    if (en == 0 || en >= sizeof endpoint ||
        (strncmp(ep, "http://", 7) && strncmp(ep, "https://", 8)))
        return nuri_error(NURI_ERR_INVALID_ARG, "HF_ENDPOINT '%s' is not an http(s) URL", ep);
    memcpy(endpoint, ep, en);
    endpoint[en] = 0;
    c.endpoint = endpoint;
    const char *tok = o->token ? o->token : getenv("HF_TOKEN");
    c.token = tok && tok[0] ? tok : NULL;
    char *cache = NULL, *auth = NULL;
    nuri_status st = hub_cache_dir(o->cache_dir, &cache);
    if (st != NURI_OK) return st;
    c.cache = cache;
    if (c.token) {
        for (const char *p = c.token; *p; p++)
            if ((unsigned char)*p < 0x21 || *p == 0x7f) {
                free(cache);
                return nuri_error(NURI_ERR_INVALID_ARG, "HF_TOKEN holds a space or control "
                                                        "character");
            }
        if (asprintf(&auth, "Authorization: Bearer %s", c.token) < 0 ||
            !(c.auth = curl_slist_append(NULL, auth))) {
            free(auth);
            free(cache);
            return nuri_error(NURI_ERR_NOMEM, "out of memory");
        }
    }

    hub_file_list l = {0};
    size_t *idx = NULL, n_idx = 0;
    if ((st = list_repo_files(&c, ref, &l)) != NURI_OK) goto done;
    if ((st = hub_pick(ref, l.f, l.n, &idx, &n_idx)) != NURI_OK) goto done;
    if (!(out->paths = calloc(n_idx, sizeof *out->paths))) {
        st = nuri_error(NURI_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t k = 0; k < n_idx; k++) {
        const hub_file *f = &l.f[idx[k]];
        if (asprintf(&out->paths[k], "%s/models/%s/%s/%s", cache, ref->org, ref->repo, f->path) <
            0) {
            out->paths[k] = NULL;
            st = nuri_error(NURI_ERR_NOMEM, "out of memory");
            goto done;
        }
        out->n_paths = k + 1;
        out->bytes += f->size;
        // in the cache already, with the digest the hub lists now (or none to compare)
        struct stat sb;
        char have_sha[65];
        if (!stat(out->paths[k], &sb) && (!f->size || (uint64_t)sb.st_size == f->size)) {
            read_meta_sha(out->paths[k], have_sha);
            if (!f->sha256[0] || !strcmp(have_sha, f->sha256)) continue;
        }
        bool fetched, unchecked;
        st = fetch_one(&c, ref, f, (int)k + 1, (int)n_idx, out->paths[k], &fetched, &unchecked);
        if (st != NURI_OK) goto done;
        out->n_fetched += fetched;
        out->n_unchecked += unchecked;
    }
done:
    if (st != NURI_OK) hub_model_free(out);
    free(idx);
    hub_file_list_free(&l);
    curl_slist_free_all(c.auth);
    free(auth);
    free(cache);
    return st;
}
