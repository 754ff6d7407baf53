/*
 * grammar_trie.h: the layout of nuri_token_trie (token_trie.c), which the grammar filter in
 * matcher.c walks. Not part of the API.
 */
#ifndef NURI_GRAMMAR_TRIE_H
#define NURI_GRAMMAR_TRIE_H

#include "grammar/grammar.h"

#include <stdint.h>

struct nuri_token_trie {
    int32_t n_vocab;
    uint32_t n_nodes;    // nodes in depth-first preorder; node 0 is the root (the empty text)
    uint8_t *byte;       // (n_nodes) the byte on the edge into the node
    uint16_t *depth;     // (n_nodes) bytes from the root
    uint32_t *skip;      // (n_nodes) the first node after the node's subtree
    uint32_t *tok_first; // (n_nodes + 1) tokens ending at node i: tok_ids[tok_first[i] .. [i+1])
    int32_t *tok_ids;    // token ids in the order of their texts
    uint32_t max_depth;  // the longest text in the trie, bytes
    uint8_t *plain;      // (n_nodes) 1 if the node's subtree (its own byte included) has only
                         // plain bytes: printable ASCII but '"' and '\' (trie_plain_byte)

    uint64_t *text_off; // (n_vocab) where each token's text starts in text
    uint32_t *text_len; // (n_vocab) bytes
    char *text;
    uint8_t *is_end;  // (n_vocab) 1 for an end-of-generation token
    int32_t *end_ids; // (n_end)
    int32_t n_end;
};

/* The bytes that a free-text JSON string takes as themselves. */
static inline bool trie_plain_byte(unsigned b)
{
    return b >= 0x20 && b < 0x7F && b != '"' && b != '\\';
}

#endif
