/*
 * vocab.c: building a vocabulary (from GGUF metadata or from a nuri_vocab_desc) and reading it.
 *
 * Mirrors llama.cpp's vocabulary loading: per-model defaults for special ids and add_bos/add_eos,
 * overridden by metadata (an id past the vocabulary is refused, where llama.cpp warns); empty
 * token texts become "[EMPTY_<id>]"; tokens whose text marks an end of generation (<|im_end|>,
 * <|eot_id|>, ...) become CONTROL; the Phi-3 and Jina per-model strip rules; the special-token
 * candidate list in priority order. It also precomputes what the
 * hot paths need: a text -> id hash, the BPE merge table keyed by piece ids, the byte tables and
 * every token's detokenized piece.
 *
 * Does not tokenize (tokenize.c) or detokenize (detok.c).
 */
#include "base/status.h"
#include "tokenizer/tok_internal.h"
#include "tokenizer/unicode.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ============================== small helpers ============================== */

bool tok_reserve(void **buf, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap) return true;
    size_t n = *cap ? *cap : 64;
    while (n < need) {
        if (n > SIZE_MAX / 2) return false;
        n *= 2;
    }
    if (n > SIZE_MAX / size) return false;
    void *p = realloc(*buf, n * size);
    if (!p) return false;
    *buf = p;
    *cap = n;
    return true;
}

uint64_t tok_hash(const void *p, size_t n)
{
    const uint8_t *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 29;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 31;
    return h;
}

static void vocab_warn(nuri_vocab *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void vocab_warn(nuri_vocab *v, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    size_t old = v->warnings ? strlen(v->warnings) : 0, add = strlen(line);
    char *p = realloc(v->warnings, old + add + 2);
    if (!p) return; // a warning is not worth failing for
    memcpy(p + old, line, add);
    p[old + add] = '\n';
    p[old + add + 1] = 0;
    v->warnings = p;
}

/* ============================== string table ============================== */

static bool strtab_grow_index(strtab *t)
{
    uint32_t n_slots = t->n_slots ? t->n_slots * 2 : 1024;
    uint32_t *slots = calloc(n_slots, sizeof *slots);
    if (!slots) return false;
    for (uint32_t i = 0; i < t->n_slots; i++) {
        uint32_t pid1 = t->slots[i];
        if (!pid1) continue;
        uint32_t pid = pid1 - 1;
        uint64_t h = tok_hash(t->arena + t->off[pid], t->len[pid]);
        for (uint32_t j = (uint32_t)h & (n_slots - 1);; j = (j + 1) & (n_slots - 1))
            if (!slots[j]) {
                slots[j] = pid1;
                break;
            }
    }
    free(t->slots);
    t->slots = slots;
    t->n_slots = n_slots;
    return true;
}

static uint32_t *strtab_slot(const strtab *t, const char *s, size_t n, uint64_t h)
{
    for (uint32_t j = (uint32_t)h & (t->n_slots - 1);; j = (j + 1) & (t->n_slots - 1)) {
        uint32_t pid1 = t->slots[j];
        if (!pid1) return &t->slots[j];
        uint32_t pid = pid1 - 1;
        if (t->len[pid] == n && !memcmp(t->arena + t->off[pid], s, n)) return &t->slots[j];
    }
}

int32_t strtab_find(const strtab *t, const char *s, size_t n)
{
    if (!t->n_slots) return -1;
    uint32_t *slot = strtab_slot(t, s, n, tok_hash(s, n));
    return *slot ? (int32_t)(*slot - 1) : -1;
}

int64_t strtab_add(strtab *t, const char *s, size_t n, bool replace)
{
    if (t->n >= INT32_MAX - 1 || n > UINT32_MAX) return -1;
    if ((uint64_t)(t->n + 1) * 2 > t->n_slots && !strtab_grow_index(t)) return -1;
    if (!tok_reserve((void **)&t->arena, &t->arena_cap, t->arena_len + n + 1, 1)) return -1;
    if (t->arena_len + n + 1 > UINT32_MAX) return -1;
    size_t cap = t->cap;
    if (!tok_reserve((void **)&t->off, &cap, t->n + 1, sizeof *t->off)) return -1;
    cap = t->cap;
    if (!tok_reserve((void **)&t->len, &cap, t->n + 1, sizeof *t->len)) return -1;
    t->cap = (uint32_t)(cap > UINT32_MAX ? UINT32_MAX : cap);
    uint32_t pid = t->n++;
    t->off[pid] = (uint32_t)t->arena_len;
    t->len[pid] = (uint32_t)n;
    if (n) memcpy(t->arena + t->arena_len, s, n);
    t->arena[t->arena_len + n] = 0;
    t->arena_len += n + 1;
    uint32_t *slot = strtab_slot(t, s, n, tok_hash(s, n));
    if (!*slot || replace) *slot = pid + 1;
    return pid;
}

int64_t strtab_intern(strtab *t, const char *s, size_t n)
{
    int32_t pid = strtab_find(t, s, n);
    if (pid >= 0) return pid;
    return strtab_add(t, s, n, false);
}

void strtab_free(strtab *t)
{
    free(t->arena);
    free(t->off);
    free(t->len);
    free(t->slots);
    memset(t, 0, sizeof *t);
}

/* ============================== merges ============================== */

static merge_slot *merge_find_slot(merge_slot *m, uint32_t n_slots, uint64_t key)
{
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    h ^= h >> 29;
    for (uint32_t j = (uint32_t)h & (n_slots - 1);; j = (j + 1) & (n_slots - 1))
        if (m[j].key == key || m[j].key == UINT64_MAX) return &m[j];
}

/* ============================== special-token trie ============================== */

static int32_t trie_child(const nuri_vocab *v, int32_t node, uint8_t b)
{
    if (node == 0) return v->root[b];
    uint32_t key = ((uint32_t)node << 8) | b;
    uint64_t h = (uint64_t)key * 0x9E3779B97F4A7C15ull;
    for (uint32_t j = (uint32_t)(h >> 32) & (v->n_edge_slots - 1);;
         j = (j + 1) & (v->n_edge_slots - 1)) {
        if (v->edges[j].key == key) return v->edges[j].child;
        if (v->edges[j].key == UINT32_MAX) return -1;
    }
}

static nuri_status trie_build(nuri_vocab *v)
{
    uint64_t total = 1;
    for (uint32_t i = 0; i < v->n_special; i++) total += v->str.len[v->special[i]];
    if (total >= (1u << 23)) return nuri_error(NURI_ERR_LIMIT, "special tokens: too much text");
    uint32_t n_slots = 16;
    while (n_slots < total * 2) n_slots *= 2;
    v->edges = malloc(n_slots * sizeof *v->edges);
    v->node_token = malloc(total * sizeof *v->node_token);
    if (!v->edges || !v->node_token) return nuri_error(NURI_ERR_NOMEM, "special-token trie");
    for (uint32_t j = 0; j < n_slots; j++) v->edges[j].key = UINT32_MAX;
    v->n_edge_slots = n_slots;
    for (int b = 0; b < 256; b++) v->root[b] = -1;
    v->n_nodes = 1;
    v->node_token[0] = -1;
    for (uint32_t i = 0; i < v->n_special; i++) {
        int32_t id = v->special[i];
        const uint8_t *s = (const uint8_t *)v->str.arena + v->str.off[id];
        uint32_t n = v->str.len[id];
        int32_t node = 0;
        for (uint32_t k = 0; k < n; k++) {
            int32_t child = trie_child(v, node, s[k]);
            if (child < 0) {
                child = (int32_t)v->n_nodes++;
                v->node_token[child] = -1;
                if (node == 0)
                    v->root[s[k]] = child;
                else {
                    uint32_t key = ((uint32_t)node << 8) | s[k];
                    uint64_t h = (uint64_t)key * 0x9E3779B97F4A7C15ull;
                    uint32_t j = (uint32_t)(h >> 32) & (n_slots - 1);
                    while (v->edges[j].key != UINT32_MAX) j = (j + 1) & (n_slots - 1);
                    v->edges[j].key = key;
                    v->edges[j].child = child;
                }
            }
            node = child;
        }
        // candidates come in priority order; two candidates with the same text cannot both match,
        // the first (higher priority) keeps the node
        if (v->node_token[node] < 0) v->node_token[node] = id;
    }
    return NURI_OK;
}

int32_t tok_trie_step(const nuri_vocab *v, int32_t node, uint8_t b)
{
    return trie_child(v, node, b);
}

/* ============================== building ============================== */

void nuri_vocab_desc_init(nuri_vocab_desc *d)
{
    memset(d, 0, sizeof *d);
    d->bos = d->eos = d->eot = d->eom = d->unk = d->sep = d->pad = d->mask = -1;
    d->fim_pre = d->fim_suf = d->fim_mid = d->fim_pad = d->fim_rep = d->fim_sep = -1;
    d->add_bos = d->add_eos = d->add_space_prefix = -1;
}

static const char *const eot_texts[] = {"<|eot_id|>",
                                        "<|im_end|>",
                                        "<|end|>",
                                        "<end_of_turn>",
                                        "<|endoftext|>",
                                        "<|end_of_text|>",
                                        "<EOT>",
                                        "_<EOT>",
                                        "<\xef\xbd\x9c"
                                        "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
                                        "<end_of_utterance>",
                                        NULL};
static const char *const eog_texts[] = {
    "<|eot_id|>",      "<|im_end|>",         "<|end|>",    "<|return|>", "<|call|>",
    "<end_of_turn>",   "<|endoftext|>",      "<|eom_id|>", "<EOT>",      "_<EOT>",
    "<|end_of_text|>", "<end_of_utterance>", "</s>",       NULL}; // "</s>": as llama.cpp v0.4.0
                                                                  // does
static const char *const eom_texts[] = {"<|eom_id|>", NULL};
static const char *const fim_pre_texts[] = {"<|fim_prefix|>",
                                            "<fim-prefix>",
                                            "<fim_prefix>",
                                            "<\xef\xbd\x9c"
                                            "fim\xe2\x96\x81"
                                            "begin\xef\xbd\x9c>",
                                            "<PRE>",
                                            "\xe2\x96\x81<PRE>",
                                            "<|code_prefix|>",
                                            NULL};
static const char *const fim_suf_texts[] = {"<|fim_suffix|>",
                                            "<fim-suffix>",
                                            "<fim_suffix>",
                                            "<\xef\xbd\x9c"
                                            "fim\xe2\x96\x81hole\xef\xbd\x9c>",
                                            "<SUF>",
                                            "\xe2\x96\x81<SUF>",
                                            "<|code_suffix|>",
                                            NULL};
static const char *const fim_mid_texts[] = {"<|fim_middle|>",
                                            "<fim-middle>",
                                            "<fim_middle>",
                                            "<\xef\xbd\x9c"
                                            "fim\xe2\x96\x81"
                                            "end\xef\xbd\x9c>",
                                            "<MID>",
                                            "\xe2\x96\x81<MID>",
                                            "<|code_middle|>",
                                            NULL};
static const char *const fim_pad_texts[] = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", NULL};
static const char *const fim_rep_texts[] = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>",
                                            "<REPO>",       "<reponame>",    NULL};
static const char *const fim_sep_texts[] = {"<|file_sep|>", NULL};

static int32_t find_cstr(const nuri_vocab *v, const char *s)
{
    int32_t pid = strtab_find(&v->str, s, strlen(s));
    return pid >= 0 && (uint32_t)pid < v->n_tokens ? pid : -1;
}

/* llama.cpp finds some special tokens by their text when the metadata does not name them, and makes
 * the token CONTROL. Where several texts match, llama.cpp's choice depends on hash-map order; nuri
 * takes the first text in the list. */
static void detect_by_text(nuri_vocab *v, int32_t *id, const char *const *texts)
{
    if (*id >= 0) return;
    for (const char *const *t = texts; *t; t++) {
        int32_t found = find_cstr(v, *t);
        if (found >= 0) {
            *id = found;
            v->types[found] = NURI_TOKEN_CONTROL;
            return;
        }
    }
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static bool contains_ci(const char *hay, const char *needle)
{
    if (!hay) return false;
    size_t n = strlen(needle);
    for (const char *p = hay; *p; p++) {
        size_t k = 0;
        while (k < n && p[k] && tolower((unsigned char)p[k]) == needle[k]) k++;
        if (k == n) return true;
    }
    return false;
}

static nuri_status build_special(nuri_vocab *v, const nuri_vocab_desc *d)
{
    // end-of-generation set: detected texts, then eos/eot/eom
    int32_t fim_pre = -1, fim_suf = -1, fim_mid = -1, fim_pad = -1, fim_rep = -1, fim_sep = -1;
    const int64_t given[6] = {d->fim_pre, d->fim_suf, d->fim_mid,
                              d->fim_pad, d->fim_rep, d->fim_sep};
    int32_t *slots[6] = {&fim_pre, &fim_suf, &fim_mid, &fim_pad, &fim_rep, &fim_sep};
    for (int i = 0; i < 6; i++) // in range (check_special_ids)
        if (given[i] >= 0) *slots[i] = (int32_t)given[i];
    detect_by_text(v, &v->eot, eot_texts);
    detect_by_text(v, &v->eom, eom_texts);
    detect_by_text(v, &fim_pre, fim_pre_texts);
    detect_by_text(v, &fim_suf, fim_suf_texts);
    detect_by_text(v, &fim_mid, fim_mid_texts);
    detect_by_text(v, &fim_pad, fim_pad_texts);
    detect_by_text(v, &fim_rep, fim_rep_texts);
    detect_by_text(v, &fim_sep, fim_sep_texts);

    size_t cap = 16, n = 0;
    int32_t *eog = malloc(cap * sizeof *eog);
    if (!eog) return nuri_error(NURI_ERR_NOMEM, "vocabulary");
    int32_t extra[6] = {fim_pad, fim_rep, fim_sep, v->eos, v->eot, v->eom};
    for (const char *const *t = eog_texts; *t; t++) {
        int32_t id = find_cstr(v, *t);
        if (id < 0) continue;
        v->types[id] = NURI_TOKEN_CONTROL;
        if (n == cap) {
            int32_t *p = realloc(eog, (cap *= 2) * sizeof *eog);
            if (!p) {
                free(eog);
                return nuri_error(NURI_ERR_NOMEM, "vocabulary");
            }
            eog = p;
        }
        eog[n++] = id;
    }
    for (int i = 0; i < 6; i++) {
        if (extra[i] < 0) continue;
        if (n == cap) {
            int32_t *p = realloc(eog, (cap *= 2) * sizeof *eog);
            if (!p) {
                free(eog);
                return nuri_error(NURI_ERR_NOMEM, "vocabulary");
            }
            eog = p;
        }
        eog[n++] = extra[i];
    }
    // gpt-oss (o200k_harmony): with <|return|> and <|call|>, <|end|> is not an end of generation
    int32_t ret = find_cstr(v, "<|return|>"), call = find_cstr(v, "<|call|>"),
            end = find_cstr(v, "<|end|>");
    qsort(eog, n, sizeof *eog, cmp_i32);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if ((m == 0 || eog[m - 1] != eog[i]) &&
            !(ret >= 0 && call >= 0 && end >= 0 && eog[i] == end))
            eog[m++] = eog[i];
    if (ret >= 0 && call >= 0 && end >= 0) v->types[end] = NURI_TOKEN_USER_DEFINED;
    for (const char *const *t = (const char *const[]){"<|channel|>", "<|message|>", "<|start|>",
                                                      "<|constrain|>", NULL};
         *t; t++) {
        int32_t id = find_cstr(v, *t);
        if (id >= 0) v->types[id] = NURI_TOKEN_USER_DEFINED;
    }
    v->eog = eog;
    v->n_eog = (uint32_t)m;

    // special-token candidates in priority order
    v->special_prio = malloc((size_t)v->n_tokens * sizeof *v->special_prio);
    v->special = malloc((size_t)v->n_tokens * sizeof *v->special);
    if (!v->special_prio || !v->special) return nuri_error(NURI_ERR_NOMEM, "vocabulary");
    // priority: longer text first, then lower id (llama.cpp's sort leaves ties unspecified)
    uint64_t *keys = malloc((size_t)v->n_tokens * sizeof *keys);
    if (!keys) return nuri_error(NURI_ERR_NOMEM, "vocabulary");
    v->n_special = 0;
    for (uint32_t i = 0; i < v->n_tokens; i++) {
        uint8_t t = v->types[i];
        v->special_prio[i] = UINT32_MAX;
        if (t == NURI_TOKEN_CONTROL || t == NURI_TOKEN_USER_DEFINED || t == NURI_TOKEN_UNKNOWN)
            keys[v->n_special++] = ((uint64_t)(UINT32_MAX - v->str.len[i]) << 32) | i;
    }
    qsort(keys, v->n_special, sizeof *keys, cmp_u64);
    for (uint32_t k = 0; k < v->n_special; k++) {
        v->special[k] = (int32_t)(keys[k] & 0xFFFFFFFFu);
        v->special_prio[v->special[k]] = k;
    }
    free(keys);

    // per-model strip rules (llama.cpp sets them by name after building the candidate list)
    if (contains_ci(d->pre, "jina-v2-de") || contains_ci(d->pre, "jina-v2-es") ||
        contains_ci(d->pre, "jina-v2-code") || contains_ci(d->arch, "nomic-bert-moe") ||
        contains_ci(d->arch, "jina-bert-v3")) {
        int32_t id = find_cstr(v, "<mask>");
        if (id >= 0) v->strip[id] |= TOK_ATTR_LSTRIP;
    } else if (contains_ci(d->name, "phi-3") || contains_ci(d->name, "phi3")) {
        for (uint32_t k = 0; k < v->n_special; k++) v->strip[v->special[k]] |= TOK_ATTR_RSTRIP;
        int32_t id = find_cstr(v, "</s>");
        if (id >= 0) v->strip[id] |= TOK_ATTR_RSTRIP;
        for (const char *const *t = (const char *const[]){"<unk>", "<s>", "<|endoftext|>", NULL};
             *t; t++)
            if ((id = find_cstr(v, *t)) >= 0) v->strip[id] &= (uint8_t)~TOK_ATTR_RSTRIP;
    }
    v->any_strip = false;
    for (uint32_t k = 0; k < v->n_special; k++)
        if (v->strip[v->special[k]]) v->any_strip = true;
    return trie_build(v);
}

/* Renders every token's piece once (as llama.cpp's token_to_piece cache, with special = true). */
static nuri_status build_pieces(nuri_vocab *v)
{
    size_t cap = v->str.arena_len + 16, len = 0;
    v->piece_arena = malloc(cap);
    v->piece_off = malloc((size_t)v->n_tokens * sizeof *v->piece_off);
    v->piece_len = malloc((size_t)v->n_tokens * sizeof *v->piece_len);
    if (!v->piece_arena || !v->piece_off || !v->piece_len)
        return nuri_error(NURI_ERR_NOMEM, "vocabulary pieces");
    v->max_piece_len = 0;
    for (uint32_t id = 0; id < v->n_tokens; id++) {
        const uint8_t *s = (const uint8_t *)v->str.arena + v->str.off[id];
        size_t n = v->str.len[id];
        // a piece is never longer than the text (U+2581 -> ' ' and byte decoding only shrink)
        if (!tok_reserve((void **)&v->piece_arena, &cap, len + n + 1, 1))
            return nuri_error(NURI_ERR_NOMEM, "vocabulary pieces");
        uint8_t *o = (uint8_t *)v->piece_arena + len;
        size_t k = 0;
        uint8_t t = v->types[id];
        if (t == NURI_TOKEN_CONTROL || t == NURI_TOKEN_UNKNOWN || t == NURI_TOKEN_USER_DEFINED) {
            memcpy(o, s, n);
            k = n;
        } else if (t == NURI_TOKEN_NORMAL && v->type == NURI_VOCAB_SPM) {
            for (size_t i = 0; i < n;) {
                if (i + 3 <= n && s[i] == 0xE2 && s[i + 1] == 0x96 && s[i + 2] == 0x81) {
                    o[k++] = ' ';
                    i += 3;
                } else
                    o[k++] = s[i++];
            }
        } else if (t == NURI_TOKEN_NORMAL) { // byte-level BPE: each code point stands for a byte
            for (size_t i = 0; i < n;) {
                size_t start = i;
                uint32_t c = uni_decode_lenient(s, n, &i);
                int b = uni_cpt_to_byte(c);
                if (b >= 0 && c != UNI_REPLACEMENT)
                    o[k++] = (uint8_t)b;
                else { // not a byte-level character: keep it as written (llama.cpp marks it)
                    memcpy(o + k, s + start, i - start);
                    k += i - start;
                }
            }
        } else if (t == NURI_TOKEN_BYTE && v->type == NURI_VOCAB_SPM && n >= 5) {
            // <0xXX>: llama.cpp reads the two characters after "<0x" as hex
            char hex[3] = {(char)s[3], (char)s[4], 0};
            o[k++] = (uint8_t)strtol(hex, NULL, 16);
        }
        v->piece_off[id] = (uint32_t)len;
        v->piece_len[id] = (uint32_t)k;
        if (k > v->max_piece_len) v->max_piece_len = (uint32_t)k;
        len += k;
    }
    return NURI_OK;
}

static nuri_status build_bpe(nuri_vocab *v, const nuri_vocab_desc *d)
{
    // byte alphabet
    for (int b = 0; b < 256; b++) {
        uint8_t buf[4];
        size_t n = uni_encode(uni_byte_to_cpt((uint8_t)b), buf);
        v->enc_len[b] = (uint8_t)n;
        memcpy(v->enc[b], buf, n);
        for (size_t k = 0; k < 2; k++) {
            int32_t id = k < n ? strtab_find(&v->str, (const char *)&buf[k], 1) : -1;
            v->byte_fallback[b][k] = id >= 0 && (uint32_t)id < v->n_tokens ? id : -1;
        }
    }
    // merges: both operands and their concatenation get piece ids
    uint64_t n_slots = 1024;
    while (n_slots < d->n_merges * 2 + 2) n_slots *= 2;
    if (n_slots > (1u << 30)) return nuri_error(NURI_ERR_LIMIT, "tokenizer.ggml.merges: too many");
    v->merges = malloc(n_slots * sizeof *v->merges);
    if (!v->merges) return nuri_error(NURI_ERR_NOMEM, "merges");
    for (uint64_t j = 0; j < n_slots; j++) v->merges[j].key = UINT64_MAX;
    v->n_merge_slots = (uint32_t)n_slots;
    char *cat = NULL;
    size_t cat_cap = 0;
    for (uint64_t i = 0; i < d->n_merges; i++) {
        const char *s = d->merges[i].ptr;
        size_t n = d->merges[i].len;
        // llama.cpp splits at the first space after the first byte; a rule without one is inert
        const char *sp = n > 1 ? memchr(s + 1, ' ', n - 1) : NULL;
        if (!sp) continue;
        size_t nl = (size_t)(sp - s), nr = n - nl - 1;
        int64_t l = strtab_intern(&v->str, s, nl), r = strtab_intern(&v->str, sp + 1, nr);
        if (!tok_reserve((void **)&cat, &cat_cap, n, 1)) l = -1;
        int64_t o = -1;
        if (l >= 0 && r >= 0) {
            memcpy(cat, s, nl);
            memcpy(cat + nl, sp + 1, nr);
            o = strtab_intern(&v->str, cat, nl + nr);
        }
        if (l < 0 || r < 0 || o < 0) {
            free(cat);
            return nuri_error(NURI_ERR_NOMEM, "merges");
        }
        uint64_t key = ((uint64_t)l << 32) | (uint64_t)r;
        merge_slot *slot = merge_find_slot(v->merges, v->n_merge_slots, key);
        if (slot->key == UINT64_MAX) { // the first (lowest-rank) rule for a pair wins
            slot->key = key;
            slot->rank = (uint32_t)i;
            slot->out = (int32_t)o;
        }
    }
    free(cat);
    for (int b = 0; b < 256; b++)
        v->byte_pid[b] = strtab_find(&v->str, (const char *)v->enc[b], v->enc_len[b]);
    return NURI_OK;
}

static void build_spm(nuri_vocab *v)
{
    static const char hex[] = "0123456789ABCDEF";
    for (int b = 0; b < 256; b++) {
        char name[7] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>', 0};
        int32_t id = strtab_find(&v->str, name, 6);
        if (id < 0 || (uint32_t)id >= v->n_tokens) { // llama.cpp then tries the byte itself
            char c = (char)b;
            id = strtab_find(&v->str, &c, 1);
            if ((uint32_t)id >= v->n_tokens) id = -1;
        }
        v->byte_token[b] = id;
    }
    // may SentencePiece merging be cut into words? (tokenize.c: spm_fragment)
    v->spm_word_split = true;
    for (uint32_t id = 0; id < v->n_tokens && v->spm_word_split; id++) {
        const uint8_t *s = (const uint8_t *)v->str.arena + v->str.off[id];
        uint32_t n = v->str.len[id];
        for (uint32_t k = 1; k + 3 <= n; k++)
            if (s[k] == 0xE2 && s[k + 1] == 0x96 && s[k + 2] == 0x81 &&
                !(k >= 3 && s[k - 3] == 0xE2 && s[k - 2] == 0x96 && s[k - 1] == 0x81)) {
                v->spm_word_split = false;
                break;
            }
    }
}

static int32_t pick_id(int64_t given, int32_t dflt)
{
    return given < 0 ? dflt : (int32_t)given;
}

/* Every special id the metadata gives must name a token. llama.cpp warns and keeps its default
 * instead; nuri refuses the file, whose ids would otherwise point past the vocabulary (and past
 * the model's embedding rows and logits). */
static nuri_status check_special_ids(const nuri_vocab_desc *d)
{
    const struct {
        int64_t id;
        const char *key;
    } given[] = {
        {d->bos, "bos_token_id"},         {d->eos, "eos_token_id"},
        {d->eot, "eot_token_id"},         {d->eom, "eom_token_id"},
        {d->unk, "unknown_token_id"},     {d->sep, "seperator_token_id"},
        {d->pad, "padding_token_id"},     {d->mask, "mask_token_id"},
        {d->fim_pre, "fim_pre_token_id"}, {d->fim_suf, "fim_suf_token_id"},
        {d->fim_mid, "fim_mid_token_id"}, {d->fim_pad, "fim_pad_token_id"},
        {d->fim_rep, "fim_rep_token_id"}, {d->fim_sep, "fim_sep_token_id"},
    };
    for (size_t i = 0; i < sizeof given / sizeof given[0]; i++)
        if (given[i].id >= 0 && (uint64_t)given[i].id >= d->n_tokens)
            return nuri_error(NURI_ERR_FORMAT,
                              "tokenizer.ggml.%s = %lld is out of range: tokenizer.ggml.tokens has "
                              "%u entries",
                              given[i].key, (long long)given[i].id, d->n_tokens);
    return NURI_OK;
}

nuri_status nuri_vocab_build(const nuri_vocab_desc *d, nuri_vocab **out)
{
    *out = NULL;
    uni_init();
    if (!d->model) return nuri_error(NURI_ERR_FORMAT, "tokenizer.ggml.model is missing");
    nuri_vocab_type type;
    if (!strcmp(d->model, "llama"))
        type = NURI_VOCAB_SPM;
    else if (!strcmp(d->model, "gpt2"))
        type = NURI_VOCAB_BPE;
    else
        return nuri_error(NURI_ERR_UNSUPPORTED,
                          "tokenizer.ggml.model '%s': nuri reads 'gpt2' (BPE) and 'llama' "
                          "(SentencePiece) vocabularies",
                          d->model);
    if (d->n_tokens == 0) return nuri_error(NURI_ERR_FORMAT, "tokenizer.ggml.tokens is empty");
    if (d->n_tokens > NURI_VOCAB_MAX_TOKENS)
        return nuri_error(NURI_ERR_LIMIT, "tokenizer.ggml.tokens: %u tokens (limit %u)",
                          d->n_tokens, NURI_VOCAB_MAX_TOKENS);
    if (type == NURI_VOCAB_BPE && !d->merges && d->n_merges)
        return nuri_error(NURI_ERR_INVALID_ARG, "merges: NULL with a count");
    nuri_status st = check_special_ids(d);
    if (st) return st;

    nuri_vocab *v = calloc(1, sizeof *v);
    if (!v) return nuri_error(NURI_ERR_NOMEM, "vocabulary");
    v->type = type;
    v->n_tokens = d->n_tokens;
    v->scores = malloc((size_t)d->n_tokens * sizeof *v->scores);
    v->types = malloc(d->n_tokens);
    v->strip = calloc(d->n_tokens, 1);
    if (!v->scores || !v->types || !v->strip) {
        st = nuri_error(NURI_ERR_NOMEM, "vocabulary of %u tokens", d->n_tokens);
        goto fail;
    }
    for (uint32_t i = 0; i < d->n_tokens; i++) {
        const char *s = d->tokens[i].ptr;
        size_t n = d->tokens[i].len;
        char empty[32];
        if (n > NURI_VOCAB_MAX_TOKEN_LEN) {
            st = nuri_error(NURI_ERR_LIMIT, "token %u: %zu bytes (limit %u)", i, n,
                            NURI_VOCAB_MAX_TOKEN_LEN);
            goto fail;
        }
        if (n == 0) { // llama.cpp names empty tokens so that they stay distinct
            n = (size_t)snprintf(empty, sizeof empty, "[EMPTY_%u]", i);
            s = empty;
        }
        if (strtab_add(&v->str, s, n, true) < 0) {
            st = nuri_error(NURI_ERR_NOMEM, "vocabulary text");
            goto fail;
        }
        v->scores[i] = d->scores ? d->scores[i] : 0.0f;
        int32_t t = d->types ? d->types[i] : NURI_TOKEN_NORMAL;
        v->types[i] = (uint8_t)(t >= 0 && t <= 6 ? t : NURI_TOKEN_UNDEFINED);
    }

    // per-model defaults, then what the pre-tokenizer implies, then metadata
    pretok_info info = {.ignore_merges = false, .add_bos = -1, .no_bos = false};
    if (type == NURI_VOCAB_SPM) {
        v->bos = 1, v->eos = 2, v->unk = 0;
        v->add_bos = true, v->add_eos = false, v->add_space_prefix = true;
        v->pre_name = strdup("");
    } else {
        v->bos = 11, v->eos = 11, v->unk = -1;
        v->add_bos = false, v->add_eos = false, v->add_space_prefix = false;
        bool known = true;
        const char *pre = d->pre ? d->pre : "default";
        st = pretok_init(&v->pre, pre, &known, &info);
        if (st) goto fail;
        if (!known)
            vocab_warn(v,
                       "tokenizer.ggml.pre '%s' is not known to nuri; using the 'default' "
                       "pre-tokenizer (token ids may differ from llama.cpp)",
                       pre);
        v->pre_name = strdup(v->pre.name);
        v->ignore_merges = info.ignore_merges;
        if (info.add_bos >= 0) v->add_bos = info.add_bos;
        if (info.no_bos) v->bos = -1;
    }
    if (!v->pre_name) {
        st = nuri_error(NURI_ERR_NOMEM, "vocabulary");
        goto fail;
    }
    v->sep = v->pad = v->mask = v->eot = v->eom = -1;
    if (v->bos >= (int32_t)d->n_tokens) v->bos = -1;
    if (v->eos >= (int32_t)d->n_tokens) v->eos = -1;
    if (v->unk >= (int32_t)d->n_tokens) v->unk = -1;
    v->bos = pick_id(d->bos, v->bos);
    v->eos = pick_id(d->eos, v->eos);
    v->eot = pick_id(d->eot, v->eot);
    v->eom = pick_id(d->eom, v->eom);
    v->unk = pick_id(d->unk, v->unk);
    v->sep = pick_id(d->sep, v->sep);
    v->pad = pick_id(d->pad, v->pad);
    v->mask = pick_id(d->mask, v->mask);
    if (d->add_bos >= 0) v->add_bos = d->add_bos;
    if (d->add_eos >= 0) v->add_eos = d->add_eos;
    if (d->add_space_prefix >= 0) v->add_space_prefix = d->add_space_prefix;
    if (v->add_bos && v->bos < 0) {
        vocab_warn(v, "add_bos_token is set but there is no BOS token; not adding one");
        v->add_bos = false;
    }
    if (v->add_eos && v->eos < 0) {
        vocab_warn(v, "add_eos_token is set but there is no EOS token; not adding one");
        v->add_eos = false;
    }

    if (type == NURI_VOCAB_BPE)
        st = build_bpe(v, d);
    else
        build_spm(v);
    if (st) goto fail;
    st = build_special(v, d);
    if (st) goto fail;
    st = build_pieces(v);
    if (st) goto fail;
    *out = v;
    return NURI_OK;
fail:
    nuri_vocab_free(v);
    return st;
}

void nuri_vocab_free(nuri_vocab *v)
{
    if (!v) return;
    strtab_free(&v->str);
    free(v->pre_name);
    free(v->warnings);
    free(v->scores);
    free(v->types);
    free(v->strip);
    free(v->piece_arena);
    free(v->piece_off);
    free(v->piece_len);
    free(v->eog);
    free(v->special);
    free(v->special_prio);
    free(v->edges);
    free(v->node_token);
    pretok_free(&v->pre);
    free(v->merges);
    free(v);
}

/* ============================== loading from GGUF ============================== */

static nuri_status get_cstr(const gguf_file *f, const char *key, char **out)
{
    *out = NULL;
    gguf_str s;
    nuri_status st = gguf_get_str(f, key, &s);
    if (st == NURI_ERR_NOT_FOUND) return NURI_OK;
    if (st) return st;
    *out = malloc(s.len + 1);
    if (!*out) return nuri_error(NURI_ERR_NOMEM, "%s", key);
    memcpy(*out, s.ptr, s.len);
    (*out)[s.len] = 0;
    return NURI_OK;
}

static nuri_status get_opt_id(const gguf_file *f, const char *key, int64_t *out)
{
    uint32_t v;
    nuri_status st = gguf_get_u32(f, key, &v);
    if (st == NURI_ERR_NOT_FOUND) return NURI_OK;
    if (st) return st;
    *out = v;
    return NURI_OK;
}

static nuri_status get_opt_bool(const gguf_file *f, const char *key, int *out)
{
    bool b;
    nuri_status st = gguf_get_bool(f, key, &b);
    if (st == NURI_ERR_NOT_FOUND) return NURI_OK;
    if (st) return st;
    *out = b;
    return NURI_OK;
}

nuri_status nuri_vocab_load(const gguf_file *f, nuri_vocab **out)
{
    return tok_vocab_load_pre(f, NULL, out);
}

nuri_status tok_vocab_load_pre(const gguf_file *f, const char *pre_override, nuri_vocab **out)
{
    *out = NULL;
    nuri_vocab_desc d;
    nuri_vocab_desc_init(&d);
    char *model = NULL, *pre = NULL, *name = NULL, *arch = NULL;
    nuri_strv *tokens = NULL, *merges = NULL;
    float *scores = NULL;
    int32_t *types = NULL;
    nuri_status st;

    if ((st = get_cstr(f, "tokenizer.ggml.model", &model))) goto done;
    if (!model) {
        st =
            nuri_error(NURI_ERR_NOT_FOUND, "tokenizer.ggml.model: not in the file (no vocabulary)");
        goto done;
    }
    if ((st = get_cstr(f, "tokenizer.ggml.pre", &pre))) goto done;
    if ((st = get_cstr(f, "general.name", &name))) goto done;
    if ((st = get_cstr(f, "general.architecture", &arch))) goto done;
    d.model = model, d.pre = pre_override ? pre_override : pre, d.name = name, d.arch = arch;

    gguf_arr a;
    if ((st = gguf_get_arr(f, "tokenizer.ggml.tokens", &a))) goto done;
    if (a.type != GGUF_TYPE_STRING) {
        st = nuri_error(NURI_ERR_FORMAT, "tokenizer.ggml.tokens is an array of %s, not of strings",
                        gguf_type_name(a.type));
        goto done;
    }
    if (a.n == 0) {
        st = nuri_error(NURI_ERR_FORMAT, "tokenizer.ggml.tokens is empty");
        goto done;
    }
    if (a.n > NURI_VOCAB_MAX_TOKENS) {
        st = nuri_error(NURI_ERR_LIMIT, "tokenizer.ggml.tokens has %llu entries (limit %u)",
                        (unsigned long long)a.n, NURI_VOCAB_MAX_TOKENS);
        goto done;
    }
    uint32_t n = (uint32_t)a.n;
    d.n_tokens = n;
    tokens = malloc((size_t)n * sizeof *tokens);
    if (!tokens) {
        st = nuri_error(NURI_ERR_NOMEM, "tokenizer.ggml.tokens");
        goto done;
    }
    for (uint32_t i = 0; i < n; i++) {
        gguf_str s;
        if ((st = gguf_arr_str(&a, i, &s))) goto done;
        tokens[i].ptr = s.ptr;
        tokens[i].len = (size_t)s.len;
    }
    d.tokens = tokens;

    if ((st = gguf_get_arr(f, "tokenizer.ggml.scores", &a)) == NURI_OK) {
        if (a.n != n) {
            st = nuri_error(
                NURI_ERR_FORMAT,
                "tokenizer.ggml.scores has %llu entries but tokenizer.ggml.tokens has %u",
                (unsigned long long)a.n, n);
            goto done;
        }
        scores = malloc((size_t)n * sizeof *scores);
        if (!scores) {
            st = nuri_error(NURI_ERR_NOMEM, "tokenizer.ggml.scores");
            goto done;
        }
        for (uint32_t i = 0; i < n; i++)
            if ((st = gguf_arr_f32(&a, i, &scores[i]))) goto done;
        d.scores = scores;
    } else if (st != NURI_ERR_NOT_FOUND)
        goto done;

    if ((st = gguf_get_arr(f, "tokenizer.ggml.token_type", &a)) == NURI_OK) {
        if (a.n != n) {
            st = nuri_error(
                NURI_ERR_FORMAT,
                "tokenizer.ggml.token_type has %llu entries but tokenizer.ggml.tokens has %u",
                (unsigned long long)a.n, n);
            goto done;
        }
        types = malloc((size_t)n * sizeof *types);
        if (!types) {
            st = nuri_error(NURI_ERR_NOMEM, "tokenizer.ggml.token_type");
            goto done;
        }
        for (uint32_t i = 0; i < n; i++) {
            int64_t t;
            if ((st = gguf_arr_i64(&a, i, &t))) goto done;
            types[i] = t >= 0 && t <= 6 ? (int32_t)t : NURI_TOKEN_UNDEFINED;
        }
        d.types = types;
    } else if (st != NURI_ERR_NOT_FOUND)
        goto done;

    if (!strcmp(model, "gpt2")) {
        if ((st = gguf_get_arr(f, "tokenizer.ggml.merges", &a))) {
            if (st == NURI_ERR_NOT_FOUND)
                st = nuri_error(NURI_ERR_FORMAT, "tokenizer.ggml.merges: missing (BPE vocabulary)");
            goto done;
        }
        if (a.type != GGUF_TYPE_STRING) {
            st = nuri_error(NURI_ERR_FORMAT,
                            "tokenizer.ggml.merges is an array of %s, not of strings",
                            gguf_type_name(a.type));
            goto done;
        }
        if (a.n > (1u << 28)) {
            st = nuri_error(NURI_ERR_LIMIT, "tokenizer.ggml.merges: %llu rules",
                            (unsigned long long)a.n);
            goto done;
        }
        merges = malloc((size_t)(a.n ? a.n : 1) * sizeof *merges);
        if (!merges) {
            st = nuri_error(NURI_ERR_NOMEM, "tokenizer.ggml.merges");
            goto done;
        }
        for (uint64_t i = 0; i < a.n; i++) {
            gguf_str s;
            if ((st = gguf_arr_str(&a, i, &s))) goto done;
            merges[i].ptr = s.ptr;
            merges[i].len = (size_t)s.len;
        }
        d.merges = merges;
        d.n_merges = a.n;
    }

    static const struct {
        const char *key;
        size_t field;
    } ids[] = {
        {"tokenizer.ggml.bos_token_id", offsetof(nuri_vocab_desc, bos)},
        {"tokenizer.ggml.eos_token_id", offsetof(nuri_vocab_desc, eos)},
        {"tokenizer.ggml.eot_token_id", offsetof(nuri_vocab_desc, eot)},
        {"tokenizer.ggml.eom_token_id", offsetof(nuri_vocab_desc, eom)},
        {"tokenizer.ggml.unknown_token_id", offsetof(nuri_vocab_desc, unk)},
        {"tokenizer.ggml.seperator_token_id", offsetof(nuri_vocab_desc, sep)},
        {"tokenizer.ggml.padding_token_id", offsetof(nuri_vocab_desc, pad)},
        {"tokenizer.ggml.mask_token_id", offsetof(nuri_vocab_desc, mask)},
        {"tokenizer.ggml.fim_pre_token_id", offsetof(nuri_vocab_desc, fim_pre)},
        {"tokenizer.ggml.fim_suf_token_id", offsetof(nuri_vocab_desc, fim_suf)},
        {"tokenizer.ggml.fim_mid_token_id", offsetof(nuri_vocab_desc, fim_mid)},
        {"tokenizer.ggml.fim_pad_token_id", offsetof(nuri_vocab_desc, fim_pad)},
        {"tokenizer.ggml.fim_rep_token_id", offsetof(nuri_vocab_desc, fim_rep)},
        {"tokenizer.ggml.fim_sep_token_id", offsetof(nuri_vocab_desc, fim_sep)},
        {"tokenizer.ggml.prefix_token_id", offsetof(nuri_vocab_desc, fim_pre)},
        {"tokenizer.ggml.suffix_token_id", offsetof(nuri_vocab_desc, fim_suf)},
        {"tokenizer.ggml.middle_token_id", offsetof(nuri_vocab_desc, fim_mid)},
    };
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        if ((st = get_opt_id(f, ids[i].key, (int64_t *)((char *)&d + ids[i].field)))) goto done;
    if ((st = get_opt_bool(f, "tokenizer.ggml.add_bos_token", &d.add_bos))) goto done;
    if ((st = get_opt_bool(f, "tokenizer.ggml.add_eos_token", &d.add_eos))) goto done;
    if ((st = get_opt_bool(f, "tokenizer.ggml.add_space_prefix", &d.add_space_prefix))) goto done;

    st = nuri_vocab_build(&d, out);
done:
    free(model);
    free(pre);
    free(name);
    free(arch);
    free(tokens);
    free(merges);
    free(scores);
    free(types);
    return st;
}

/* ============================== getters ============================== */

const char *nuri_vocab_warnings(const nuri_vocab *v)
{
    return v->warnings;
}
nuri_vocab_type nuri_vocab_get_type(const nuri_vocab *v)
{
    return v->type;
}
const char *nuri_vocab_pre(const nuri_vocab *v)
{
    return v->pre_name;
}
uint32_t nuri_vocab_n_tokens(const nuri_vocab *v)
{
    return v->n_tokens;
}
int32_t nuri_vocab_bos(const nuri_vocab *v)
{
    return v->bos;
}
int32_t nuri_vocab_eos(const nuri_vocab *v)
{
    return v->eos;
}
int32_t nuri_vocab_eot(const nuri_vocab *v)
{
    return v->eot;
}
int32_t nuri_vocab_unk(const nuri_vocab *v)
{
    return v->unk;
}
int32_t nuri_vocab_pad(const nuri_vocab *v)
{
    return v->pad;
}
bool nuri_vocab_add_bos(const nuri_vocab *v)
{
    return v->add_bos;
}
bool nuri_vocab_add_eos(const nuri_vocab *v)
{
    return v->add_eos;
}
bool nuri_vocab_add_space_prefix(const nuri_vocab *v)
{
    return v->add_space_prefix;
}

bool nuri_vocab_is_eog(const nuri_vocab *v, int32_t id)
{
    uint32_t lo = 0, hi = v->n_eog;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (v->eog[mid] == id) return true;
        if (v->eog[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

const char *nuri_vocab_token_text(const nuri_vocab *v, int32_t id, size_t *len)
{
    if (id < 0 || (uint32_t)id >= v->n_tokens) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = v->str.len[id];
    return v->str.arena + v->str.off[id];
}

nuri_token_type nuri_vocab_token_type(const nuri_vocab *v, int32_t id)
{
    if (id < 0 || (uint32_t)id >= v->n_tokens) return NURI_TOKEN_UNDEFINED;
    return (nuri_token_type)v->types[id];
}

float nuri_vocab_token_score(const nuri_vocab *v, int32_t id)
{
    if (id < 0 || (uint32_t)id >= v->n_tokens) return 0.0f;
    return v->scores[id];
}

int32_t nuri_vocab_find(const nuri_vocab *v, const char *text, size_t len)
{
    int32_t pid = strtab_find(&v->str, text, len);
    return pid >= 0 && (uint32_t)pid < v->n_tokens ? pid : -1;
}
