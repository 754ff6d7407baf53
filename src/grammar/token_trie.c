/*
 * token_trie.c: a byte trie over a vocabulary's token texts, laid out for the grammar filter.
 *
 * The nodes are stored in depth-first preorder, so the filter (matcher.c) walks them as one
 * forward scan: node i hangs below the nearest node before it with a smaller depth, the byte on
 * its incoming edge is byte[i], and skip[i] is the first node after its subtree (a refused prefix
 * jumps there). Tokens are sorted by their bytes, which is the same order, so the tokens whose
 * text ends at node i are the run tok_ids[tok_first[i] .. tok_first[i + 1]) (several tokens may
 * share one text).
 *
 * Built once per vocabulary by sorting the texts and reading off common prefixes; a token text
 * longer than 65535 bytes (the depth is 16 bits) is left out, i.e. never allowed. A subtree is
 * the contiguous run i .. skip[i], so "only plain bytes below" (plain[i]) is one backward scan.
 */
#include "base/status.h"
#include "grammar/grammar_trie.h"

#include <stdlib.h>
#include <string.h>

#define TRIE_MAX_DEPTH 65535u

static int cmp_text(const void *a, const void *b, void *ctx)
{
    const nuri_token_trie *t = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    uint32_t lx = t->text_len[x], ly = t->text_len[y];
    int c = memcmp(t->text + t->text_off[x], t->text + t->text_off[y], lx < ly ? lx : ly);
    if (c) return c;
    if (lx != ly) return lx < ly ? -1 : 1;
    return x < y ? -1 : x > y; // equal texts: by id
}

void nuri_token_trie_free(nuri_token_trie *t)
{
    if (!t) return;
    free(t->byte);
    free(t->depth);
    free(t->skip);
    free(t->tok_first);
    free(t->tok_ids);
    free(t->plain);
    free(t->text_off);
    free(t->text_len);
    free(t->text);
    free(t->is_end);
    free(t->end_ids);
    free(t);
}

/* Builds the nodes from t->text* and t->is_end. */
static nuri_status build_nodes(nuri_token_trie *t)
{
    int32_t n = 0;
    uint64_t total = 0;
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (t->text_len[i] > 0 && t->text_len[i] <= TRIE_MAX_DEPTH && !t->is_end[i]) {
            n++;
            total += t->text_len[i];
        }
    if (total + 1 > UINT32_MAX / 2) return nuri_error(NURI_ERR_LIMIT, "token trie: texts too long");
    size_t cap = (size_t)total + 1; // nodes: at most one per byte, plus the root
    t->tok_ids = malloc(sizeof *t->tok_ids * (size_t)(n ? n : 1));
    t->byte = malloc(cap);
    t->depth = malloc(sizeof *t->depth * cap);
    t->skip = malloc(sizeof *t->skip * cap);
    uint32_t *tok_node = malloc(sizeof *tok_node * (size_t)(n ? n : 1));
    uint32_t *path = malloc(sizeof *path * (TRIE_MAX_DEPTH + 1));
    if (!t->tok_ids || !t->byte || !t->depth || !t->skip || !tok_node || !path) {
        free(tok_node);
        free(path);
        return nuri_error(NURI_ERR_NOMEM, "token trie: out of memory");
    }
    n = 0;
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (t->text_len[i] > 0 && t->text_len[i] <= TRIE_MAX_DEPTH && !t->is_end[i])
            t->tok_ids[n++] = i;
    qsort_r(t->tok_ids, (size_t)n, sizeof *t->tok_ids, cmp_text, t);

    uint32_t nn = 1, open = 0; // nodes made; depth of the deepest open node (path[0..open])
    t->byte[0] = 0;
    t->depth[0] = 0;
    path[0] = 0;
    const char *prev = NULL;
    uint32_t prev_len = 0;
    for (int32_t k = 0; k < n; k++) {
        int32_t id = t->tok_ids[k];
        const char *s = t->text + t->text_off[id];
        uint32_t len = t->text_len[id], l = 0;
        while (l < len && l < prev_len && s[l] == prev[l]) l++;
        while (open > l) t->skip[path[open--]] = nn; // close the nodes below the common prefix
        for (uint32_t d = l; d < len; d++) {
            t->byte[nn] = (uint8_t)s[d];
            t->depth[nn] = (uint16_t)(d + 1);
            path[++open] = nn++;
        }
        tok_node[k] = path[len];
        if (len > t->max_depth) t->max_depth = len;
        prev = s;
        prev_len = len;
    }
    while (open > 0) t->skip[path[open--]] = nn;
    t->skip[0] = nn;
    t->n_nodes = nn;
    t->tok_first = calloc((size_t)nn + 1, sizeof *t->tok_first);
    if (!t->tok_first) {
        free(tok_node);
        free(path);
        return nuri_error(NURI_ERR_NOMEM, "token trie: out of memory");
    }
    for (int32_t k = 0; k < n; k++) t->tok_first[tok_node[k] + 1]++;
    for (uint32_t i = 0; i < nn; i++) t->tok_first[i + 1] += t->tok_first[i];
    free(tok_node);
    free(path);
    // plain[i]: no byte outside the plain set in the run i .. skip[i]
    t->plain = malloc(nn);
    if (!t->plain) return nuri_error(NURI_ERR_NOMEM, "token trie: out of memory");
    uint32_t next_bad = nn; // the first node at or after i whose byte is not plain
    for (uint32_t i = nn; i-- > 1;) {
        if (!trie_plain_byte(t->byte[i])) next_bad = i;
        t->plain[i] = next_bad >= t->skip[i];
    }
    t->plain[0] = 0;
    return NURI_OK;
}

nuri_status nuri_token_trie_build(const nuri_strv *texts, int32_t n_vocab,
                                  const int32_t *end_tokens, int32_t n_end, nuri_token_trie **out)
{
    *out = NULL;
    if (n_vocab <= 0 || (!texts && n_vocab) || n_end < 0 || (n_end && !end_tokens))
        return nuri_error(NURI_ERR_INVALID_ARG, "token trie: bad arguments");
    nuri_token_trie *t = calloc(1, sizeof *t);
    if (!t) return nuri_error(NURI_ERR_NOMEM, "token trie: out of memory");
    t->n_vocab = n_vocab;
    size_t nv = (size_t)n_vocab;
    uint64_t total = 0;
    for (size_t i = 0; i < nv; i++) total += texts[i].len;
    t->text_off = malloc(sizeof *t->text_off * nv);
    t->text_len = malloc(sizeof *t->text_len * nv);
    t->text = malloc(total ? (size_t)total : 1);
    t->is_end = calloc(nv, 1);
    t->end_ids = malloc(sizeof *t->end_ids * (size_t)(n_end ? n_end : 1));
    if (!t->text_off || !t->text_len || !t->text || !t->is_end || !t->end_ids) {
        nuri_token_trie_free(t);
        return nuri_error(NURI_ERR_NOMEM, "token trie: out of memory");
    }
    uint64_t off = 0;
    for (size_t i = 0; i < nv; i++) {
        size_t len = texts[i].len > UINT32_MAX ? 0 : texts[i].len;
        t->text_off[i] = off;
        t->text_len[i] = (uint32_t)len;
        if (len) memcpy(t->text + off, texts[i].ptr, len);
        off += len;
    }
    for (int32_t i = 0; i < n_end; i++) {
        int32_t id = end_tokens[i];
        if (id < 0 || id >= n_vocab) {
            nuri_token_trie_free(t);
            return nuri_error(NURI_ERR_INVALID_ARG,
                              "token trie: end token %d is outside the vocabulary [0, %d)", id,
                              n_vocab);
        }
        if (!t->is_end[id]) t->end_ids[t->n_end++] = id;
        t->is_end[id] = 1;
    }
    nuri_status st = build_nodes(t);
    if (st != NURI_OK) {
        nuri_token_trie_free(t);
        return st;
    }
    *out = t;
    return NURI_OK;
}

nuri_status nuri_token_trie_new(const nuri_vocab *v, int32_t n_vocab, nuri_token_trie **out)
{
    *out = NULL;
    uint32_t n_tok = nuri_vocab_n_tokens(v);
    if (n_vocab <= 0 || (uint32_t)n_vocab < n_tok)
        return nuri_error(NURI_ERR_INVALID_ARG,
                          "token trie: n_vocab %d is smaller than the vocabulary's %u tokens",
                          n_vocab, n_tok);
    nuri_strv *texts = calloc((size_t)n_vocab, sizeof *texts);
    int32_t *ends = malloc(sizeof *ends * (n_tok ? n_tok : 1));
    if (!texts || !ends) {
        free(texts);
        free(ends);
        return nuri_error(NURI_ERR_NOMEM, "token trie: out of memory");
    }
    int32_t n_end = 0;
    for (uint32_t i = 0; i < n_tok; i++) {
        texts[i].ptr = nuri_token_piece_ref(v, (int32_t)i, false, &texts[i].len);
        if (nuri_vocab_is_eog(v, (int32_t)i)) ends[n_end++] = (int32_t)i;
    }
    nuri_status st = nuri_token_trie_build(texts, n_vocab, ends, n_end, out);
    free(texts);
    free(ends);
    return st;
}

int32_t nuri_token_trie_n_vocab(const nuri_token_trie *t)
{
    return t->n_vocab;
}

bool nuri_token_trie_is_end(const nuri_token_trie *t, int32_t token)
{
    return token >= 0 && token < t->n_vocab && t->is_end[token];
}

const char *nuri_token_trie_text(const nuri_token_trie *t, int32_t token, size_t *len)
{
    if (token < 0 || token >= t->n_vocab) {
        *len = 0;
        return "";
    }
    *len = t->text_len[token];
    return t->text + t->text_off[token];
}

uint32_t nuri_token_trie_n_nodes(const nuri_token_trie *t)
{
    return t->n_nodes;
}
