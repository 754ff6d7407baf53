/*
 * kv_snapshot.c: KV snapshot files (see kv_snapshot.h).
 *
 * File layout (little-endian, as the machine writes it: snapshots do not travel between
 * machines, the identity includes the kernels):
 *   0   "NURIKV02" (01: before the cache had types; such a file is refused by name)
 *   8   identity (32 bytes)
 *   40  u32 n_tokens, u8 K type, u8 V type (GGML type numbers: 1 F16, 2 Q4_0, 8 Q8_0), u16 0
 *   48  u64 kv_bytes
 *   56  u64 checksum of tokens then kv
 *   64  tokens (4 * n_tokens), then kv (kv_bytes)
 */
#include "store/kv_snapshot.h"

#include "base/status.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define HEADER 64
static const char magic[8] = {'N', 'U', 'R', 'I', 'K', 'V', '0', '2'};
static const char magic_v1[8] = {'N', 'U', 'R', 'I', 'K', 'V', '0', '1'};

static const char *type_name(unsigned t)
{
    return t == 1 ? "f16" : t == 8 ? "q8_0" : t == 2 ? "q4_0" : "unknown";
}

struct nuri_kvsnap_dir {
    char *dir;
    uint64_t max_bytes;
    uint8_t identity[32];
    uint8_t kv_type[2];      // K and V types of the cache the snapshots are of
    pthread_mutex_t trim_mu; // one trim at a time
    unsigned tmp_counter;
};

uint64_t nuri_kvsnap_checksum(const void *p, size_t n, uint64_t h)
{
    const uint8_t *b = p;
    const uint64_t k1 = 0x9E3779B185EBCA87ull, k2 = 0xC2B2AE3D27D4EB4Full;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, b + i, 8);
        h ^= w * k1;
        h = ((h << 31) | (h >> 33)) * k2;
    }
    uint64_t w = 0;
    memcpy(&w, b + i, n - i);
    h ^= (w ^ (uint64_t)n) * k1;
    h ^= h >> 29;
    h *= k2;
    return h ^ (h >> 32);
}

static bool good_key(const char *k)
{
    size_t n = strlen(k);
    if (n == 0 || n > 100) return false;
    for (size_t i = 0; i < n; i++) {
        char c = k[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

nuri_status nuri_kvsnap_open(const char *dir, uint64_t max_bytes, const uint8_t identity[32],
                             nuri_kvsnap_dir **out)
{
    return nuri_kvsnap_open_typed(dir, max_bytes, identity, 1, 1, out);
}

nuri_status nuri_kvsnap_open_typed(const char *dir, uint64_t max_bytes, const uint8_t identity[32],
                                   uint32_t kv_type_k, uint32_t kv_type_v, nuri_kvsnap_dir **out)
{
    if (kv_type_k > 255 || kv_type_v > 255)
        return nuri_error(NURI_ERR_INVALID_ARG, "kv snapshots: bad KV cache type");
    *out = NULL;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return nuri_error(NURI_ERR_IO, "kv snapshots: cannot create '%s': %s", dir,
                          strerror(errno));
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return nuri_error(NURI_ERR_IO, "kv snapshots: '%s' is not a directory", dir);
    nuri_kvsnap_dir *d = calloc(1, sizeof *d);
    if (!d || !(d->dir = strdup(dir))) {
        free(d);
        return nuri_error(NURI_ERR_NOMEM, "out of memory");
    }
    d->max_bytes = max_bytes;
    memcpy(d->identity, identity, 32);
    d->kv_type[0] = (uint8_t)kv_type_k;
    d->kv_type[1] = (uint8_t)kv_type_v;
    pthread_mutex_init(&d->trim_mu, NULL);
    *out = d;
    return NURI_OK;
}

void nuri_kvsnap_close(nuri_kvsnap_dir *d)
{
    if (!d) return;
    pthread_mutex_destroy(&d->trim_mu);
    free(d->dir);
    free(d);
}

static bool write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        b += w;
        n -= (size_t)w;
    }
    return true;
}

static bool read_all(int fd, void *p, size_t n)
{
    uint8_t *b = p;
    while (n) {
        ssize_t r = read(fd, b, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        b += r;
        n -= (size_t)r;
    }
    return true;
}

typedef struct entry {
    char name[128];
    uint64_t size;
    struct timespec mtime;
} entry;

static int by_age(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    if (x->mtime.tv_sec != y->mtime.tv_sec) return x->mtime.tv_sec < y->mtime.tv_sec ? -1 : 1;
    if (x->mtime.tv_nsec != y->mtime.tv_nsec) return x->mtime.tv_nsec < y->mtime.tv_nsec ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* The snapshot files (*.kv) with sizes and times; *n of them. */
static entry *list_files(const char *dir, size_t *n)
{
    *n = 0;
    DIR *dh = opendir(dir);
    if (!dh) return NULL;
    size_t cap = 64;
    entry *e = malloc(cap * sizeof *e);
    struct dirent *de;
    while (e && (de = readdir(dh))) {
        size_t l = strlen(de->d_name);
        if (l < 4 || l >= sizeof e->name || strcmp(de->d_name + l - 3, ".kv")) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        if (*n == cap) {
            entry *m = realloc(e, 2 * cap * sizeof *e);
            if (!m) break;
            e = m;
            cap *= 2;
        }
        memcpy(e[*n].name, de->d_name, l + 1); // (l < sizeof name: checked above)
        e[*n].size = (uint64_t)st.st_size;
        e[*n].mtime = st.st_mtim;
        (*n)++;
    }
    closedir(dh);
    return e;
}

uint64_t nuri_kvsnap_usage(nuri_kvsnap_dir *d, int *n_files)
{
    size_t n;
    entry *e = list_files(d->dir, &n);
    uint64_t total = 0;
    for (size_t i = 0; e && i < n; i++) total += e[i].size;
    free(e);
    if (n_files) *n_files = (int)n;
    return total;
}

/* Removes the least recently used snapshots until the directory is within its bound; keep (a
 * file name) is removed last. */
static void trim(nuri_kvsnap_dir *d, const char *keep)
{
    if (!d->max_bytes) return;
    pthread_mutex_lock(&d->trim_mu);
    size_t n;
    entry *e = list_files(d->dir, &n);
    uint64_t total = 0;
    for (size_t i = 0; e && i < n; i++) total += e[i].size;
    if (e) qsort(e, n, sizeof *e, by_age);
    for (int pass = 0; e && pass < 2 && total > d->max_bytes; pass++)
        for (size_t i = 0; i < n && total > d->max_bytes; i++) {
            if ((pass == 0) == !strcmp(e[i].name, keep) || !e[i].size) continue;
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", d->dir, e[i].name);
            if (unlink(path) == 0) total -= e[i].size;
            e[i].size = 0;
        }
    free(e);
    pthread_mutex_unlock(&d->trim_mu);
}

nuri_status nuri_kvsnap_put(nuri_kvsnap_dir *d, const char *key, const int32_t *tokens, int32_t n,
                            const void *kv, size_t kv_bytes)
{
    if (!good_key(key) || n <= 0 || n > NURI_KVSNAP_MAX_TOKENS)
        return nuri_error(NURI_ERR_INVALID_ARG, "kv snapshots: bad key or size");
    uint8_t h[HEADER] = {0};
    memcpy(h, magic, 8);
    memcpy(h + 8, d->identity, 32);
    uint32_t nt = (uint32_t)n;
    uint64_t kb = kv_bytes;
    uint64_t sum = nuri_kvsnap_checksum(tokens, (size_t)n * sizeof *tokens, 0);
    sum = nuri_kvsnap_checksum(kv, kv_bytes, sum);
    memcpy(h + 40, &nt, 4);
    memcpy(h + 44, d->kv_type, 2);
    memcpy(h + 48, &kb, 8);
    memcpy(h + 56, &sum, 8);
    char tmp[4096], path[4096], name[128];
    pthread_mutex_lock(&d->trim_mu);
    unsigned k = d->tmp_counter++;
    pthread_mutex_unlock(&d->trim_mu);
    // The directory may be shared by replicas on other machines or in containers, where every
    // server is pid 1: a random part keeps their temporary names apart.
    uint64_t rnd = 0;
    if (getrandom(&rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) rnd = (uint64_t)time(NULL);
    snprintf(tmp, sizeof tmp, "%s/.tmp-%d-%u-%016llx", d->dir, (int)getpid(), k,
             (unsigned long long)rnd);
    snprintf(name, sizeof name, "%s.kv", key);
    snprintf(path, sizeof path, "%s/%s", d->dir, name);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return nuri_error(NURI_ERR_IO, "kv snapshots: cannot create '%s': %s", tmp,
                          strerror(errno));
    bool ok = write_all(fd, h, sizeof h) && write_all(fd, tokens, (size_t)n * sizeof *tokens) &&
              write_all(fd, kv, kv_bytes);
    int err = errno;
    if (close(fd) != 0) ok = false;
    if (!ok || rename(tmp, path) != 0) {
        if (ok) err = errno;
        unlink(tmp);
        return nuri_error(NURI_ERR_IO, "kv snapshots: cannot write '%s': %s", path, strerror(err));
    }
    trim(d, name);
    return NURI_OK;
}

nuri_status nuri_kvsnap_get(nuri_kvsnap_dir *d, const char *key, size_t kv_bytes_per_token,
                            nuri_kv_snapshot *out)
{
    memset(out, 0, sizeof *out);
    if (!good_key(key)) return nuri_error(NURI_ERR_NOT_FOUND, "kv snapshots: no '%.100s'", key);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.kv", d->dir, key);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return nuri_error(NURI_ERR_NOT_FOUND, "kv snapshots: no '%s'", key);
    struct stat st;
    uint8_t h[HEADER];
    const char *why = NULL;
    char why_buf[160];
    uint32_t nt = 0;
    uint64_t kb = 0, sum = 0;
    if (fstat(fd, &st) != 0 || !read_all(fd, h, sizeof h)) {
        why = "too short";
    } else {
        memcpy(&nt, h + 40, 4);
        memcpy(&kb, h + 48, 8);
        memcpy(&sum, h + 56, 8);
        if (!memcmp(h, magic_v1, 8))
            why = "an older format (nuri-kv-1, F16 only)";
        else if (memcmp(h, magic, 8))
            why = "not a snapshot";
        else if (memcmp(h + 44, d->kv_type, 2)) {
            snprintf(why_buf, sizeof why_buf,
                     "a %s/%s KV cache (K/V) where this server's is %s/%s (--kv-type)",
                     type_name(h[44]), type_name(h[45]), type_name(d->kv_type[0]),
                     type_name(d->kv_type[1]));
            why = why_buf;
        } else if (memcmp(h + 8, d->identity, 32))
            why = "made for another model or build";
        else if (nt == 0 || nt > NURI_KVSNAP_MAX_TOKENS || kb != (uint64_t)nt * kv_bytes_per_token)
            why = "sizes that do not fit this model";
        else if ((uint64_t)st.st_size != HEADER + (uint64_t)nt * 4 + kb)
            why = "a size that does not match its header";
    }
    if (!why) {
        out->tokens = malloc((size_t)nt * sizeof *out->tokens);
        out->kv = malloc(kb ? kb : 1);
        if (!out->tokens || !out->kv) {
            close(fd);
            nuri_kv_snapshot_free(out);
            return nuri_error(NURI_ERR_NOMEM, "out of memory");
        }
        if (!read_all(fd, out->tokens, (size_t)nt * 4) || !read_all(fd, out->kv, kb)) {
            why = "unreadable";
        } else {
            uint64_t c = nuri_kvsnap_checksum(out->tokens, (size_t)nt * 4, 0);
            if (nuri_kvsnap_checksum(out->kv, kb, c) != sum) why = "a wrong checksum";
        }
    }
    close(fd);
    if (why) {
        nuri_kv_snapshot_free(out);
        unlink(path);
        return nuri_error(NURI_ERR_FORMAT, "kv snapshot '%s' has %s; removed", path, why);
    }
    out->n = (int32_t)nt;
    out->kv_bytes = kb;
    utimensat(AT_FDCWD, path, NULL, 0); // recently used
    return NURI_OK;
}

void nuri_kv_snapshot_free(nuri_kv_snapshot *s)
{
    if (!s) return;
    free(s->tokens);
    free(s->kv);
    memset(s, 0, sizeof *s);
}
