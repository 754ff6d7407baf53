/*
 * tokenize.c: text to token ids (nuri_tokenize).
 *
 * Pipeline, as llama.cpp's llama_tokenize:
 *   1. special tokens: cut the text into raw fragments and special-token fragments (user-defined
 *      tokens always, control/unknown ones with NURI_TOK_PARSE_SPECIAL; longer tokens first);
 *      nuri_tokenize_spans takes a control/unknown token's text only where none of it lies in a
 *      data span, and leaves everything else as it is, so that text without special-token text
 *      in its data spans gets exactly nuri_tokenize's ids;
 *   2. BPE: each raw fragment is decoded (invalid bytes -> U+FFFD), split into words by the
 *      pre-tokenizer regexes (pretok.c), and each word is merged by rank;
 *      SPM: each raw fragment gets the space prefix (at the start and after a special token),
 *      spaces become U+2581, and the whole fragment is merged by score, with byte fallback;
 *   3. BOS / EOS around it all if asked.
 *
 * Merging uses a binary heap of candidate pairs over a doubly linked list of symbols; stale heap
 * entries are recognized by their size and skipped. Each merge costs O(log n), so a long word
 * (100 KB of one letter) is O(n log n), never quadratic.
 *
 * All memory is per call (tok_scratch), so one vocabulary serves many threads at once.
 */
#include "base/status.h"
#include "tokenizer/tok_internal.h"
#include "tokenizer/unicode.h"

#include <stdlib.h>
#include <string.h>

/* ============================== symbols and the heap ============================== */

typedef struct tok_sym {
    uint32_t off; // bytes, into the word / fragment
    uint32_t n;   // bytes; 0 once merged into its left neighbour
    int32_t prev, next;
    int32_t pid; // BPE: piece id of the symbol's text (-1 if none)
} tok_sym;

typedef struct tok_heap_item {
    uint64_t key; // smaller first: (rank or inverted score) << 32 | left
    int32_t left, right;
    uint32_t size; // bytes of left + right when pushed (stale if they changed)
    int32_t out;   // BPE: piece id of the merged text
} tok_heap_item;

static bool heap_push(tok_scratch *s, size_t *n, tok_heap_item it)
{
    if (!tok_reserve((void **)&s->heap, &s->cap_heap, *n + 1, sizeof *s->heap)) return false;
    tok_heap_item *h = s->heap;
    size_t i = (*n)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (h[parent].key <= it.key) break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = it;
    return true;
}

static tok_heap_item heap_pop(tok_scratch *s, size_t *n)
{
    tok_heap_item *h = s->heap, top = h[0], last = h[--(*n)];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && h[c + 1].key < h[c].key) c++;
        if (last.key <= h[c].key) break;
        h[i] = h[c];
        i = c;
    }
    if (m) h[i] = last;
    return top;
}

static bool out_push(tok_scratch *s, int32_t id)
{
    if (!tok_reserve((void **)&s->out, &s->cap_out, s->n_out + 1, sizeof *s->out)) return false;
    s->out[s->n_out++] = id;
    return true;
}

/* Orders floats as unsigned integers (larger float -> larger integer). */
static uint32_t float_order(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/* ============================== SentencePiece ============================== */

static bool spm_try_pair(const nuri_vocab *v, tok_scratch *s, const uint8_t *text, size_t *n_heap,
                         int32_t l, int32_t r)
{
    if (l < 0 || r < 0) return true;
    const tok_sym *a = &s->syms[l], *b = &s->syms[r];
    uint32_t size = a->n + b->n; // a and b are adjacent: their text is contiguous
    int32_t id = strtab_find(&v->str, (const char *)text + a->off, size);
    if (id < 0 || (uint32_t)id >= v->n_tokens) return true;
    // highest score first, then leftmost
    tok_heap_item it = {((uint64_t)~float_order(v->scores[id]) << 32) | (uint32_t)l, l, r, size,
                        id};
    return heap_push(s, n_heap, it);
}

/* Merges the symbols of text[start, end) (whole UTF-8-length symbols) and appends their tokens. */
static nuri_status spm_chunk(const nuri_vocab *v, tok_scratch *s, const uint8_t *text, size_t start,
                             size_t end)
{
    int32_t n_sym = 0;
    for (size_t off = start; off < end;) {
        size_t n = uni_len_from_lead(text[off]);
        if (n > end - off) n = end - off;
        tok_sym *y = &s->syms[n_sym];
        y->off = (uint32_t)off;
        y->n = (uint32_t)n;
        y->prev = n_sym - 1;
        off += n;
        y->next = off == end ? -1 : n_sym + 1;
        y->pid = -1;
        n_sym++;
    }
    size_t n_heap = 0;
    for (int32_t i = 1; i < n_sym; i++)
        if (!spm_try_pair(v, s, text, &n_heap, i - 1, i)) goto nomem;
    while (n_heap) {
        tok_heap_item it = heap_pop(s, &n_heap);
        tok_sym *a = &s->syms[it.left], *b = &s->syms[it.right];
        if (a->n == 0 || b->n == 0 || a->n + b->n != it.size) continue; // stale
        a->n += b->n;
        b->n = 0;
        a->next = b->next;
        if (b->next >= 0) s->syms[b->next].prev = it.left;
        if (!spm_try_pair(v, s, text, &n_heap, a->prev, it.left) ||
            !spm_try_pair(v, s, text, &n_heap, it.left, a->next))
            goto nomem;
    }
    for (int32_t i = 0; i != -1 && n_sym; i = s->syms[i].next) {
        const tok_sym *y = &s->syms[i];
        int32_t id = strtab_find(&v->str, (const char *)text + y->off, y->n);
        if (id >= 0 && (uint32_t)id < v->n_tokens) {
            if (!out_push(s, id)) goto nomem;
            continue;
        }
        // byte fallback (a vocabulary without the byte token: llama.cpp would throw; nuri emits
        // the unknown token, or nothing if there is none)
        for (uint32_t k = 0; k < y->n; k++) {
            int32_t b = v->byte_token[text[y->off + k]];
            if (b < 0) b = v->unk;
            if (b >= 0 && !out_push(s, b)) goto nomem;
        }
    }
    return NURI_OK;
nomem:
    return nuri_error(NURI_ERR_NOMEM, "tokenizer: merging %zu bytes", end - start);
}

static bool is_space_mark(const uint8_t *p, size_t n)
{
    return n == 3 && p[0] == 0xE2 && p[1] == 0x96 && p[2] == 0x81;
}

/* SentencePiece merging over a whole fragment. Merges are local, so where no token can span a
 * position the two sides can be merged apart with the same result: when no token has U+2581 after
 * anything but U+2581 (v->spm_word_split), the fragment is cut before each U+2581 that follows a
 * well-formed character other than U+2581, i.e. into words. Otherwise it is merged in one go. */
static nuri_status spm_fragment(const nuri_vocab *v, tok_scratch *s, const uint8_t *text,
                                size_t len)
{
    if (!len) return NURI_OK;
    size_t start = 0, prev_off = 0, prev_n = 0;
    for (size_t off = 0; off < len;) {
        size_t n = uni_len_from_lead(text[off]);
        if (n > len - off) n = len - off;
        if (v->spm_word_split && off > start && is_space_mark(text + off, n) &&
            !is_space_mark(text + prev_off, prev_n) &&
            uni_check_strict(text + prev_off, prev_n) == (int)prev_n) {
            nuri_status st = spm_chunk(v, s, text, start, off);
            if (st) return st;
            start = off;
        }
        if (off - start + 1 > s->cap_syms &&
            !tok_reserve((void **)&s->syms, &s->cap_syms, off - start + 1, sizeof *s->syms))
            return nuri_error(NURI_ERR_NOMEM, "tokenizer: %zu bytes", len);
        prev_off = off;
        prev_n = n;
        off += n;
    }
    return spm_chunk(v, s, text, start, len);
}

/* SPM: a raw fragment, with the space prefix if it follows the start or a special token. */
static nuri_status spm_raw(const nuri_vocab *v, tok_scratch *s, const uint8_t *raw, size_t len,
                           bool prefix)
{
    size_t n_space = prefix;
    for (size_t i = 0; i < len; i++) n_space += raw[i] == ' ';
    size_t need = len + prefix + 2 * n_space; // each space grows to 3 bytes
    if (need > UINT32_MAX - 4) return nuri_error(NURI_ERR_LIMIT, "tokenizer: fragment too long");
    if (!tok_reserve((void **)&s->bytes, &s->cap_bytes, need + 1, 1))
        return nuri_error(NURI_ERR_NOMEM, "tokenizer: %zu bytes", need);
    uint8_t *o = s->bytes;
    size_t k = 0;
    for (size_t i = 0; i < len + prefix; i++) {
        uint8_t c = prefix ? (i == 0 ? ' ' : raw[i - 1]) : raw[i];
        if (c == ' ') {
            o[k++] = 0xE2;
            o[k++] = 0x96;
            o[k++] = 0x81;
        } else
            o[k++] = c;
    }
    return spm_fragment(v, s, o, k);
}

/* ============================== byte-level BPE ============================== */

static bool bpe_try_pair(const nuri_vocab *v, tok_scratch *s, size_t *n_heap, int32_t l, int32_t r)
{
    if (l < 0 || r < 0) return true;
    const tok_sym *a = &s->syms[l], *b = &s->syms[r];
    if (a->pid < 0 || b->pid < 0) return true;
    uint64_t key = ((uint64_t)(uint32_t)a->pid << 32) | (uint32_t)b->pid;
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    h ^= h >> 29;
    const merge_slot *m = v->merges;
    uint32_t mask = v->n_merge_slots - 1;
    for (uint32_t j = (uint32_t)h & mask;; j = (j + 1) & mask) {
        if (m[j].key == UINT64_MAX) return true; // no rule for this pair
        if (m[j].key == key) {
            // lowest rank first, then leftmost
            tok_heap_item it = {((uint64_t)m[j].rank << 32) | (uint32_t)l, l, r, a->n + b->n,
                                m[j].out};
            return heap_push(s, n_heap, it);
        }
    }
}

/* One pre-tokenized word (raw bytes). */
static nuri_status bpe_word(const nuri_vocab *v, tok_scratch *s, const uint8_t *w, size_t len)
{
    if (!len) return NURI_OK;
    if (v->ignore_merges) { // Llama 3: a word that is a token is that token, whatever the merges
        size_t enc_len = 0;
        for (size_t i = 0; i < len; i++) enc_len += v->enc_len[w[i]];
        if (enc_len <= 256) {
            char buf[256];
            size_t k = 0;
            for (size_t i = 0; i < len; i++) {
                memcpy(buf + k, v->enc[w[i]], v->enc_len[w[i]]);
                k += v->enc_len[w[i]];
            }
            int32_t id = strtab_find(&v->str, buf, k);
            if (id >= 0 && (uint32_t)id < v->n_tokens)
                return out_push(s, id) ? NURI_OK : nuri_error(NURI_ERR_NOMEM, "tokenizer");
        } else {
            // tokens are shorter than any realistic bound, but check exactly anyway
            if (!tok_reserve((void **)&s->collapsed, &s->cap_collapsed, enc_len, 1))
                return nuri_error(NURI_ERR_NOMEM, "tokenizer");
            size_t k = 0;
            for (size_t i = 0; i < len; i++) {
                memcpy(s->collapsed + k, v->enc[w[i]], v->enc_len[w[i]]);
                k += v->enc_len[w[i]];
            }
            int32_t id = strtab_find(&v->str, (const char *)s->collapsed, k);
            if (id >= 0 && (uint32_t)id < v->n_tokens)
                return out_push(s, id) ? NURI_OK : nuri_error(NURI_ERR_NOMEM, "tokenizer");
        }
    }
    if (!tok_reserve((void **)&s->syms, &s->cap_syms, len, sizeof *s->syms))
        return nuri_error(NURI_ERR_NOMEM, "tokenizer: word of %zu bytes", len);
    // one symbol per byte (= per character of the byte-level text)
    int32_t n_sym = (int32_t)len;
    for (int32_t i = 0; i < n_sym; i++) {
        tok_sym *y = &s->syms[i];
        y->off = (uint32_t)i;
        y->n = 1;
        y->prev = i - 1;
        y->next = i + 1 == n_sym ? -1 : i + 1;
        y->pid = v->byte_pid[w[i]];
    }
    size_t n_heap = 0;
    for (int32_t i = 1; i < n_sym; i++)
        if (!bpe_try_pair(v, s, &n_heap, i - 1, i)) goto nomem;
    while (n_heap) {
        tok_heap_item it = heap_pop(s, &n_heap);
        tok_sym *a = &s->syms[it.left], *b = &s->syms[it.right];
        if (a->n == 0 || b->n == 0 || a->n + b->n != it.size) continue; // stale
        a->n += b->n;
        a->pid = it.out;
        b->n = 0;
        a->next = b->next;
        if (b->next >= 0) s->syms[b->next].prev = it.left;
        if (!bpe_try_pair(v, s, &n_heap, a->prev, it.left) ||
            !bpe_try_pair(v, s, &n_heap, it.left, a->next))
            goto nomem;
    }
    for (int32_t i = 0; i != -1; i = s->syms[i].next) {
        const tok_sym *y = &s->syms[i];
        if (y->pid >= 0 && (uint32_t)y->pid < v->n_tokens) {
            if (!out_push(s, y->pid)) goto nomem;
            continue;
        }
        // not a token: llama.cpp looks up each byte of the byte-level text alone
        for (uint32_t k = 0; k < y->n; k++)
            for (int j = 0; j < 2; j++) {
                int32_t id = v->byte_fallback[w[y->off + k]][j];
                if (id >= 0 && !out_push(s, id)) goto nomem;
            }
    }
    return NURI_OK;
nomem:
    return nuri_error(NURI_ERR_NOMEM, "tokenizer: merging a word of %zu bytes", len);
}

static nuri_status bpe_raw(const nuri_vocab *v, tok_scratch *s, const uint8_t *raw, size_t len)
{
    // decode as llama.cpp does, and keep the re-encoded bytes of every code point
    if (!tok_reserve((void **)&s->cpts, &s->cap_cpts, len + 1, sizeof *s->cpts) ||
        !tok_reserve((void **)&s->norm_off, &s->cap_norm_off, len + 1, sizeof *s->norm_off) ||
        !tok_reserve((void **)&s->bytes, &s->cap_bytes, len * 3 + 4, 1))
        return nuri_error(NURI_ERR_NOMEM, "tokenizer: %zu bytes", len);
    uint32_t n = 0;
    size_t k = 0;
    for (size_t i = 0; i < len;) {
        uint32_t c = uni_decode_lenient(raw, len, &i);
        s->cpts[n] = c;
        s->norm_off[n] = (uint32_t)k;
        k += uni_encode(c, s->bytes + k);
        n++;
    }
    s->norm_off[n] = (uint32_t)k;
    uint32_t *words, n_words;
    nuri_status st = pretok_split(&v->pre, s->cpts, n, s, &words, &n_words);
    if (st) return st;
    for (uint32_t i = 0; i < n_words; i++) {
        uint32_t start = words[2 * i], cnt = words[2 * i + 1];
        uint32_t b0 = s->norm_off[start], b1 = s->norm_off[start + cnt];
        if ((st = bpe_word(v, s, s->bytes + b0, b1 - b0))) return st;
    }
    return NURI_OK;
}

/* ============================== special-token fragments ============================== */

typedef struct frag {
    uint32_t off, len; // raw text (len > 0), or
    int32_t id;        // a token (id >= 0)
} frag;

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static bool is_ascii_space(uint8_t c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

/* Cuts text into fragments. *frags is malloc'd (caller frees). Same result as llama.cpp's
 * tokenizer_st_partition: for each candidate in priority order, every leftmost non-overlapping
 * occurrence inside a still-raw region is taken (with its strip rules). With parse_special, an
 * occurrence of a control / unknown token that overlaps one of the data spans (checked, in order)
 * is not a candidate: there the text is ordinary text, as without parse_special. */
static nuri_status partition(const nuri_vocab *v, const uint8_t *text, size_t len,
                             bool parse_special, const nuri_text_spans *data, frag **frags,
                             size_t *n_frags)
{
    *frags = NULL;
    *n_frags = 0;
    uint64_t *occ = NULL; // (prio << 32) | pos
    size_t n_occ = 0, cap_occ = 0;
    uint8_t *used = NULL;
    uint64_t *acc = NULL; // accepted: (pos << 32) | id
    size_t n_acc = 0, cap_acc = 0;
    nuri_status st = NURI_OK;

    size_t span = 0; // the first data span that ends after p
    if (v->n_special)
        for (size_t p = 0; p < len; p++) {
            while (data && span < data->n && data->v[span].off + data->v[span].len <= p) span++;
            int32_t node = v->root[text[p]];
            for (size_t q = p + 1; node >= 0; q++) {
                int32_t id = v->node_token[node];
                // text[p, q) overlaps data when the next span starts before q
                bool in_data = data && span < data->n && data->v[span].off < q;
                if (id >= 0 &&
                    ((parse_special && !in_data) || v->types[id] == NURI_TOKEN_USER_DEFINED)) {
                    if (!tok_reserve((void **)&occ, &cap_occ, n_occ + 1, sizeof *occ)) goto nomem;
                    occ[n_occ++] = ((uint64_t)v->special_prio[id] << 32) | p;
                }
                if (q >= len) break;
                node = tok_trie_step(v, node, text[q]);
            }
        }
    if (n_occ) {
        qsort(occ, n_occ, sizeof *occ, cmp_u64);
        used = calloc(len, 1); // 0 raw, 1 token, 2 stripped whitespace
        if (!used) goto nomem;
        uint32_t cur_prio = UINT32_MAX;
        size_t last_end = 0;
        for (size_t i = 0; i < n_occ; i++) {
            uint32_t prio = (uint32_t)(occ[i] >> 32);
            size_t pos = (uint32_t)occ[i];
            int32_t id = v->special[prio];
            size_t n = v->str.len[id];
            if (prio != cur_prio) cur_prio = prio, last_end = 0;
            if (pos < last_end) continue;
            // free? Earlier candidates are at least as long, so a token inside [pos, pos+n) would
            // cover one of its ends; stripped whitespace can be shorter and needs a full look.
            bool free_ = !used[pos] && !used[pos + n - 1];
            if (free_ && v->any_strip)
                for (size_t k = pos; k < pos + n && free_; k++) free_ = !used[k];
            if (!free_) continue;
            memset(used + pos, 1, n);
            size_t end = pos + n;
            if (v->strip[id] & TOK_ATTR_RSTRIP)
                while (end < len && !used[end] && is_ascii_space(text[end])) used[end++] = 2;
            if (v->strip[id] & TOK_ATTR_LSTRIP)
                for (size_t k = pos; k > 0 && !used[k - 1] && is_ascii_space(text[k - 1]); k--)
                    used[k - 1] = 2;
            last_end = end;
            if (!tok_reserve((void **)&acc, &cap_acc, n_acc + 1, sizeof *acc)) goto nomem;
            acc[n_acc++] = ((uint64_t)pos << 32) | (uint32_t)id;
        }
        qsort(acc, n_acc, sizeof *acc, cmp_u64);
    }
    frag *f = malloc((2 * n_acc + 1) * sizeof *f);
    if (!f) goto nomem;
    size_t nf = 0, cur = 0;
    for (size_t i = 0; i <= n_acc; i++) {
        size_t pos = i < n_acc ? (size_t)(acc[i] >> 32) : len;
        size_t a = cur, b = pos;
        while (a < b && used && used[a] == 2) a++;
        while (b > a && used && used[b - 1] == 2) b--;
        if (b > a) f[nf++] = (frag){(uint32_t)a, (uint32_t)(b - a), -1};
        if (i < n_acc) {
            int32_t id = (int32_t)(uint32_t)acc[i];
            f[nf++] = (frag){(uint32_t)pos, 0, id};
            cur = pos + v->str.len[id];
        }
    }
    *frags = f;
    *n_frags = nf;
    goto done;
nomem:
    st = nuri_error(NURI_ERR_NOMEM, "tokenizer: special tokens in %zu bytes", len);
done:
    free(occ);
    free(used);
    free(acc);
    return st;
}

/* ============================== the entry point ============================== */

static void scratch_free(tok_scratch *s);

nuri_status nuri_tokenize(const nuri_vocab *v, const char *text, size_t len, unsigned flags,
                          int32_t **ids, size_t *n_ids)
{
    return nuri_tokenize_spans(v, text, len, flags, NULL, ids, n_ids);
}

nuri_status nuri_tokenize_spans(const nuri_vocab *v, const char *text, size_t len, unsigned flags,
                                const nuri_text_spans *data, int32_t **ids, size_t *n_ids)
{
    *ids = NULL;
    *n_ids = 0;
    if (len > NURI_TOK_MAX_TEXT)
        return nuri_error(NURI_ERR_LIMIT, "tokenizer: text of %zu bytes (limit %u)", len,
                          NURI_TOK_MAX_TEXT);
    if (len && !text) return nuri_error(NURI_ERR_INVALID_ARG, "tokenizer: text is NULL");
    for (size_t i = 0, end = 0; data && i < data->n; i++) {
        const nuri_text_span *d = &data->v[i];
        if (d->off < end || d->off > len || d->len > len - d->off)
            return nuri_error(NURI_ERR_INVALID_ARG,
                              "tokenizer: data span %zu (%zu + %zu bytes) is out of order or "
                              "outside the text of %zu bytes",
                              i, d->off, d->len, len);
        end = d->off + d->len;
    }
    const uint8_t *t = (const uint8_t *)text;
    bool add_special = flags & NURI_TOK_ADD_SPECIAL;
    tok_scratch s = {0};
    frag *frags = NULL;
    size_t n_frags = 0;
    nuri_status st = NURI_OK;

    if (len && (st = partition(v, t, len, flags & NURI_TOK_PARSE_SPECIAL, data, &frags, &n_frags)))
        goto done;
    if (add_special && v->add_bos && !out_push(&s, v->bos)) goto nomem;
    bool prev_special = true; // SPM: the text start counts as "after a special token"
    for (size_t i = 0; i < n_frags; i++) {
        const frag *f = &frags[i];
        if (f->id >= 0) {
            if (!out_push(&s, f->id)) goto nomem;
            prev_special = true;
            continue;
        }
        if (v->type == NURI_VOCAB_SPM)
            st = spm_raw(v, &s, t + f->off, f->len, v->add_space_prefix && prev_special);
        else
            st = bpe_raw(v, &s, t + f->off, f->len);
        if (st) goto done;
        prev_special = false;
    }
    if (add_special && v->add_eos && !out_push(&s, v->eos)) goto nomem;
    *ids = s.out;
    *n_ids = s.n_out;
    s.out = NULL;
    goto done;
nomem:
    st = nuri_error(NURI_ERR_NOMEM, "tokenizer: output of %zu tokens", s.n_out);
done:
    free(frags);
    scratch_free(&s);
    return st;
}

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

static void scratch_free(tok_scratch *s)
{
    free(s->cpts);
    free(s->bytes);
    free(s->norm_off);
    free(s->cpt_off);
    free(s->collapsed);
    free(s->utf);
    free(s->utf_cpt);
    free(s->seg_a);
    free(s->seg_b);
    if (s->match_data) pcre2_match_data_free(s->match_data);
    if (s->match_ctx) pcre2_match_context_free(s->match_ctx);
    if (s->jit_stack) pcre2_jit_stack_free(s->jit_stack);
    free(s->syms);
    free(s->heap);
    free(s->out);
}
