/*
 * hub.h: models from a Hugging Face style hub, kept in a local cache.
 *
 * The cache ($XDG_CACHE_HOME/nuri, else ~/.cache/nuri, or a directory given) holds
 *   models/<org>/<repo>/<path in repo>             a complete, verified file
 *   models/<org>/<repo>/<path in repo>.part        a download in progress (resumed from its end)
 *   models/<org>/<repo>/<path in repo>.meta.json   where it came from: repo, file, size, sha256,
 *                                                  commit, endpoint, time
 * A file gets its final name only after its SHA-256 matched the one the hub publishes (the LFS
 * oid in the tree listing, else the X-Linked-Etag of the resolve redirect), so a model path from
 * this module is never a partial or corrupt download.
 *
 * Routes used (as huggingface.co serves them; HF_ENDPOINT points elsewhere):
 *   GET {endpoint}/api/models/{org}/{repo}/tree/main?recursive=true   the file list (JSON array of
 *       {type, path, size, lfs: {oid, size}}), continued through Link: <...>; rel="next"
 *   GET {endpoint}/{org}/{repo}/resolve/main/{path}   the file, usually a 302 to a CDN, with
 *       Range: bytes=N- to resume; X-Repo-Commit, X-Linked-Etag, X-Linked-Size on the redirect
 *   HEAD on the same route, not following the redirect, only when the listing gave no LFS oid:
 *       its X-Linked-Etag is then the sha256 to check
 * Errors carry X-Error-Code (GatedRepo, RepoNotFound, EntryNotFound) and become messages that say
 * what to do. A token (HF_TOKEN) goes out as "Authorization: Bearer ..." to the endpoint's host
 * only (libcurl does not pass it on across a redirect to another host).
 *
 * Library code: nothing is printed; progress goes to a callback.
 */
#ifndef NURI_HUB_H
#define NURI_HUB_H

#include "hub/hub_ref.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct hub_progress {
    const char *file;    // path in the repository
    int part, n_parts;   // this file is part `part` (1-based) of the n_parts being pulled
    uint64_t done;       // bytes of the file on disk now
    uint64_t total;      // bytes of the whole file; 0 when unknown
    uint64_t resumed_at; // bytes already on disk when this transfer started
    bool finished;       // the last call for this file
} hub_progress;

typedef void (*hub_progress_fn)(void *ud, const hub_progress *p);

typedef struct hub_opts {
    const char *endpoint;  // NULL: $HF_ENDPOINT, else https://huggingface.co
    const char *token;     // NULL: $HF_TOKEN (none when unset or empty)
    const char *cache_dir; // NULL: $XDG_CACHE_HOME/nuri, else $HOME/.cache/nuri
    hub_progress_fn progress;
    void *progress_ud;
} hub_opts;

/* The local files of one model. */
typedef struct hub_model {
    char **paths; // n_paths absolute paths, in part order (caller frees with hub_model_free)
    size_t n_paths;
    uint64_t bytes;     // all parts together
    size_t n_fetched;   // files transferred by this call (0: all were in the cache already)
    size_t n_unchecked; // files for which the hub published no sha256 (kept, but not verified)
} hub_model;

void hub_model_free(hub_model *m);

/* The cache directory: dir if given, else from the environment. Caller frees with free(). */
nuri_status hub_cache_dir(const char *dir, char **out);

/* Finds the model `ref` names among the complete files in the cache, without the network.
 * NURI_ERR_NOT_FOUND (with a message) when the cache cannot answer. */
nuri_status hub_find_cached(const hub_opts *o, const hub_ref *ref, hub_model *out);

/* Lists the repository, chooses the files (hub_pick), and downloads each one that is not in the
 * cache with the sha256 the hub lists (resuming a .part file), verifies and renames it. */
nuri_status hub_pull(const hub_opts *o, const hub_ref *ref, hub_model *out);

/* One model in the cache, for `nuri ls`. */
typedef struct hub_entry {
    char *name;     // "org/repo/path" (the first part of a split set), usable with hub_remove
    char *path;     // absolute path of that file
    uint64_t bytes; // all its parts on disk
    int n_parts;    // parts on disk (1 for a single file)
    bool partial;   // a .part download, not usable yet
} hub_entry;

/* Every model in the cache, sorted by name. Caller frees with hub_entries_free. */
nuri_status hub_list(const char *cache_dir, hub_entry **out, size_t *n);
void hub_entries_free(hub_entry *e, size_t n);

/* Removes from the cache what `name` names: "org/repo" (everything of the repository),
 * "org/repo:QUANT", or "org/repo/path" / "hf://org/repo/path" (that file, all parts of its split
 * set, their .part and .meta.json files). *n_removed counts model files and partial downloads
 * removed; NURI_ERR_NOT_FOUND when nothing matched. */
nuri_status hub_remove(const char *cache_dir, const char *name, size_t *n_removed);

#endif
