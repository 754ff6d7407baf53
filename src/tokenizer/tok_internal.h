/*
 * tok_internal.h: the tokenizer's internal data structures, shared by its .c files only.
 *
 * A vocabulary keeps every string it needs in one string table (strtab): token texts first (index =
 * token id), then, for BPE, the merge operands that are not tokens ("extra pieces"). A piece id
 * (pid) indexes that table; pid < n_tokens means "this string is a token". Lookups by text go
 * through an open-addressing hash index whose duplicates resolve to the last token with that text,
 * as llama.cpp's token_to_id map does.
 */
#ifndef NURI_TOKENIZER_INTERNAL_H
#define NURI_TOKENIZER_INTERNAL_H

#include "tokenizer/tokenizer.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- string table with a hash index ---- */
typedef struct strtab {
    char *arena; // all strings back to back (each followed by a NUL, not counted in len)
    size_t arena_len, arena_cap;
    uint32_t *off, *len; // (n) byte offset in arena, length
    uint32_t n, cap;
    uint32_t *slots; // (n_slots) pid + 1, 0 = empty
    uint32_t n_slots;
} strtab;

uint64_t tok_hash(const void *p, size_t n);
/* Appends a string and indexes it; if `replace` and an equal string exists, the index now points to
 * the new one (last wins), else to the old one. Returns the new pid or -1 (NOMEM/limit). */
int64_t strtab_add(strtab *t, const char *s, size_t n, bool replace);
/* pid of the string, or -1. */
int32_t strtab_find(const strtab *t, const char *s, size_t n);
/* pid of the string, adding it if absent; -1 on NOMEM. */
int64_t strtab_intern(strtab *t, const char *s, size_t n);
void strtab_free(strtab *t);

/* ---- BPE merges: (left pid, right pid) -> (rank, pid of the concatenation) ---- */
typedef struct merge_slot {
    uint64_t key; // (left << 32) | right; UINT64_MAX = empty
    uint32_t rank;
    int32_t out;
} merge_slot;

/* ---- pre-tokenizer (pretok.c) ---- */
#define PRETOK_MAX_REGEX 8

typedef struct pretok {
    char name[64]; // the tokenizer.ggml.pre it implements
    int n_regex;
    void *code[PRETOK_MAX_REGEX];     // pcre2_code_8 *
    bool collapsed[PRETOK_MAX_REGEX]; // runs over one byte per code point (category-collapsed)
    bool any_collapsed, any_utf;
} pretok;

/* Finds the regex list for tokenizer.ggml.pre `pre` and compiles it. Sets *known = false (and uses
 * the default list) if the name is not known. Also says which llama.cpp flags the name implies. */
typedef struct pretok_info {
    bool ignore_merges;
    int add_bos; // -1 = no opinion, else 0/1
    bool no_bos; // the pre-tokenizer clears the BOS id (chatglm)
} pretok_info;
nuri_status pretok_init(pretok *p, const char *pre, bool *known, pretok_info *info);
void pretok_free(pretok *p);

/* Splits cpts[0..n) into words. Appends (start, length) pairs in code points to *words (a growable
 * uint32 array, 2 entries per word). Scratch is owned by the caller's tok_scratch. */
struct tok_scratch;
nuri_status pretok_split(const pretok *p, const uint32_t *cpts, uint32_t n, struct tok_scratch *s,
                         uint32_t **words, uint32_t *n_words);

/* ---- the vocabulary ---- */
#define TOK_ATTR_LSTRIP 1u
#define TOK_ATTR_RSTRIP 2u

struct nuri_vocab {
    nuri_vocab_type type;
    char *pre_name; // the pre-tokenizer in use
    char *warnings; // NULL if none
    uint32_t n_tokens;
    strtab str;                      // token texts (pid < n_tokens) and extra BPE pieces
    float *scores;                   // (n_tokens)
    uint8_t *types;                  // (n_tokens) nuri_token_type, after adjustments
    uint8_t *strip;                  // (n_tokens) TOK_ATTR_* for special-token matching
    char *piece_arena;               // detokenized pieces, rendered as if special
    uint32_t *piece_off, *piece_len; // (n_tokens)
    uint32_t max_piece_len;

    int32_t bos, eos, eot, eom, unk, sep, pad, mask;
    int32_t *eog; // sorted ids
    uint32_t n_eog;
    bool add_bos, add_eos, add_space_prefix, ignore_merges;

    // special-token matching: candidates (control, user-defined, unknown) in priority order
    // (longer text first, then lower id), and a trie over their texts
    int32_t *special;       // (n_special) token ids
    uint32_t *special_prio; // (n_tokens) priority index, UINT32_MAX if not a candidate
    uint32_t n_special;
    bool any_strip;
    int32_t root[256];       // trie: child of the root per byte, -1 none
    struct trie_edge *edges; // hash of (node, byte) -> child
    uint32_t n_edge_slots;
    int32_t *node_token; // (n_nodes) candidate ending here, -1 none
    uint32_t n_nodes;

    // BPE
    pretok pre;
    merge_slot *merges;
    uint32_t n_merge_slots;
    int32_t byte_pid[256]; // pid of the one-character string standing for each byte
    uint8_t enc[256][2];   // that string's UTF-8 bytes
    uint8_t enc_len[256];
    int32_t byte_fallback[256][2]; // tokens for each byte of enc[b] alone (-1 none)

    // SPM
    int32_t byte_token[256]; // <0xXX> (or the one-byte token), -1 none
    bool spm_word_split;     // no token has U+2581 after anything but U+2581 (see tokenize.c)
};

typedef struct trie_edge {
    uint32_t key; // (node << 8) | byte, UINT32_MAX empty
    int32_t child;
} trie_edge;

/* Per-call scratch buffers (grown as needed, freed at the end of nuri_tokenize). */
typedef struct tok_scratch {
    uint32_t *cpts;
    size_t cap_cpts;
    uint8_t *bytes; // normalized UTF-8 of the code points / SPM escaped text
    size_t cap_bytes;
    uint32_t *norm_off; // byte offset of each code point in bytes (n + 1)
    size_t cap_norm_off;
    uint32_t *cpt_off; // byte offset of each code point in utf (n + 1)
    size_t cap_cpt_off;
    uint8_t *collapsed;
    size_t cap_collapsed;
    uint8_t *utf; // UTF-8 subject for the regexes that run on code points
    size_t cap_utf;
    uint32_t *utf_cpt; // code point index of each byte of utf (+1)
    size_t cap_utf_cpt;
    uint32_t *seg_a, *seg_b; // word lists (pairs)
    size_t cap_seg_a, cap_seg_b;
    void *match_data; // pcre2_match_data_8 *
    void *match_ctx;  // pcre2_match_context_8 *
    void *jit_stack;  // pcre2_jit_stack_8 *
    // merging
    struct tok_sym *syms;
    size_t cap_syms;
    struct tok_heap_item *heap;
    size_t cap_heap;
    // output
    int32_t *out;
    size_t n_out, cap_out;
} tok_scratch;

/* Special-token trie: the child of node (0 = root) for byte b, or -1. */
int32_t tok_trie_step(const nuri_vocab *v, int32_t node, uint8_t b);

/* Grows *buf (elements of `size` bytes) to hold at least `need`; false on NOMEM/overflow. */
bool tok_reserve(void **buf, size_t *cap, size_t need, size_t size);

#endif
