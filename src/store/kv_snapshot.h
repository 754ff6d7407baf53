/*
 * kv_snapshot.h: KV snapshots on disk, the SSD tier under the KV pool. When a stored
 * conversation's turn ends, the server may write its sequence's tokens and KV
 * (nuri_ctx_seq_kv_read) to a directory; a follow-up after the pages left memory (evicted, or a
 * restart) loads them back instead of recomputing the prompt, and gets the same answer (the KV is
 * what computing those tokens writes).
 *
 * A snapshot is one file, <dir>/<key>.kv (key: a response or conversation id), written to a
 * temporary name and renamed (a reader never sees half a file). It holds the model's identity (32
 * bytes the caller derives from the model file, the kernels and the KV layout: a snapshot never
 * loads into another model), the tokens, the KV bytes and a checksum of both. A file that does not
 * match (another model, a torn or corrupt file) is removed and reported as NURI_ERR_FORMAT: the
 * caller recomputes. The directory is bounded: after each write the least recently used snapshots
 * (by modification time; a load touches its file) are removed until the total is within max_bytes.
 *
 * Thread-safe: any number of threads may put and get at once (different keys, or the same: the
 * last rename wins). Calls block on disk: call them from request workers, never the decode loop.
 */
#ifndef NURI_STORE_KV_SNAPSHOT_H
#define NURI_STORE_KV_SNAPSHOT_H

#include "nuri.h"

#include <stddef.h>
#include <stdint.h>

#define NURI_KVSNAP_MAX_TOKENS (1 << 24)

typedef struct nuri_kvsnap_dir nuri_kvsnap_dir;

/* Opens (creating it, mode 0700) the snapshot directory. identity: 32 bytes; max_bytes: the
 * directory's bound (0: no bound). */
nuri_status nuri_kvsnap_open(const char *dir, uint64_t max_bytes, const uint8_t identity[32],
                             nuri_kvsnap_dir **out);
/* The same for snapshots of a cache of the given K and V types (GGML type numbers, as
 * nuri_ctx_kv_types gives them; nuri_kvsnap_open: F16 and F16). The types are written into every
 * snapshot; one of other types is refused by name (NURI_ERR_FORMAT) and removed. */
nuri_status nuri_kvsnap_open_typed(const char *dir, uint64_t max_bytes, const uint8_t identity[32],
                                   uint32_t kv_type_k, uint32_t kv_type_v, nuri_kvsnap_dir **out);
void nuri_kvsnap_close(nuri_kvsnap_dir *d);

/* Writes the snapshot of key (letters, digits, '_' and '-', at most 100): n tokens and kv_bytes of
 * KV. Replaces an older one of the same key. Then trims the directory to its bound. */
nuri_status nuri_kvsnap_put(nuri_kvsnap_dir *d, const char *key, const int32_t *tokens, int32_t n,
                            const void *kv, size_t kv_bytes);

typedef struct nuri_kv_snapshot {
    int32_t *tokens;
    int32_t n;
    void *kv;
    size_t kv_bytes;
} nuri_kv_snapshot;

/* Reads the snapshot of key. kv_bytes_per_token: what one token's KV takes for the caller's model
 * (a file with another size is refused). NURI_ERR_NOT_FOUND when there is none; NURI_ERR_FORMAT
 * (the file removed) when it does not match or is damaged. *out is the caller's (free with
 * nuri_kv_snapshot_free). */
nuri_status nuri_kvsnap_get(nuri_kvsnap_dir *d, const char *key, size_t kv_bytes_per_token,
                            nuri_kv_snapshot *out);
void nuri_kv_snapshot_free(nuri_kv_snapshot *s);

/* Bytes the directory's snapshots take now, and how many there are. */
uint64_t nuri_kvsnap_usage(nuri_kvsnap_dir *d, int *n_files);

/* A 64-bit checksum of n bytes (fast; detects damage, not tampering). */
uint64_t nuri_kvsnap_checksum(const void *p, size_t n, uint64_t seed);

#endif
