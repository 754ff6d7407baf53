/*
 * hub_ref.h: naming models on a Hugging Face style hub, without any network: parsing what a user
 * types after `-m` or `nuri pull`, matching a quant name against file names, recognizing split
 * files, and choosing which files of a repository make up the model asked for.
 *
 * Forms (ORG and REPO: letters, digits, '-', '_', '.'; no leading '.' or '-', no "..", <= 96 each):
 *   hf://ORG/REPO/PATH/IN/REPO.gguf   one file (with all its parts if it is part of a split set)
 *   hf://ORG/REPO[:QUANT]             the same as ORG/REPO[:QUANT]
 *   ORG/REPO[:QUANT]                  the .gguf files whose name carries QUANT (default: see
 *                                     hub_pick)
 * A string ending in ".gguf" without "hf://" is never a hub name: it is a local path.
 */
#ifndef NURI_HUB_REF_H
#define NURI_HUB_REF_H

#include "nuri.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HUB_NAME_MAX 96 // bytes of an ORG or a REPO

typedef struct hub_ref {
    char org[HUB_NAME_MAX + 1];
    char repo[HUB_NAME_MAX + 1];
    char quant[64];  // "" when none was given
    char file[1024]; // a path in the repository ("" unless hf://ORG/REPO/FILE)
} hub_ref;

/* Parses s. Returns NURI_OK with *out filled; NURI_ERR_NOT_FOUND (no message) when s does not
 * look like a hub name at all (treat it as a local path); NURI_ERR_INVALID_ARG with a message when
 * s starts with hf:// but is malformed. */
nuri_status hub_ref_parse(const char *s, hub_ref *out);

/* True when the path `name` carries `quant` (case-insensitive) as a name component: preceded by
 * the start, '/', '-', '.' or '_' and followed by the end, '/', '-' or '.'. So "Q4_K" matches
 * "m-Q4_K.gguf" but not "m-Q4_K_M.gguf", and "Q4_0" does not match "m-IQ4_0.gguf". */
bool hub_quant_match(const char *name, const char *quant);

/* For "x-00002-of-00005.gguf" sets *part = 2, *count = 5 and *stem_len to the length of "x" and
 * returns true; false for a name that is not part of a split set. */
bool hub_split_parse(const char *name, int *part, int *count, size_t *stem_len);

/* True when paths a and b are the same file or parts of one split set. */
bool hub_same_model(const char *a, const char *b);

/* One file of a repository as the hub lists it. */
typedef struct hub_file {
    char *path;      // in the repository, '/'-separated (owned by whoever built the array)
    uint64_t size;   // bytes
    char sha256[65]; // the LFS sha256 in hex, "" when the listing gave none
} hub_file;

/* Chooses the files that make up the model `ref` names among files[0..n), in part order, as
 * indices into *idx (caller frees with free(); *n_idx of them). With ref->file: that file, or
 * every part of its split set. With ref->quant: the .gguf files matching it. Without either:
 * Q4_K_M if present, else the only model. Vision projectors (names starting with "mmproj") are
 * chosen only by file name. A split set must be complete. Errors name what is there:
 * NURI_ERR_NOT_FOUND "no file for quant Q9 in org/repo; quants there: Q4_K_M, Q8_0" and
 * NURI_ERR_INVALID_ARG for a choice that is ambiguous. */
nuri_status hub_pick(const hub_ref *ref, const hub_file *files, size_t n, size_t **idx,
                     size_t *n_idx);

/* The quant-like component of a model file name ("Q4_K_M" for "Qwen2.5-0.5B-Q4_K_M.gguf"), found
 * as the last '-' or '.' separated component that starts with Q, IQ, F or BF and a digit; copies
 * at most cap-1 bytes. Returns false when there is none. */
bool hub_quant_of(const char *name, char *out, size_t cap);

#endif
