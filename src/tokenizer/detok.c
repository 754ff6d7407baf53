/*
 * detok.c: token ids back to bytes: single pieces (nuri_token_piece) and the streaming
 * detokenizer that only ever emits whole UTF-8 characters (nuri_detok).
 *
 * Pieces are rendered once at load (vocab.c: build_pieces); here they are only copied. The
 * streaming detokenizer keeps at most 3 bytes of an unfinished character between calls and turns
 * ill-formed sequences into U+FFFD as soon as they are known to be ill-formed.
 */
#include "base/status.h"
#include "tokenizer/tok_internal.h"
#include "tokenizer/unicode.h"

#include <stdlib.h>
#include <string.h>

const char *nuri_token_piece_ref(const nuri_vocab *v, int32_t id, bool special, size_t *len)
{
    *len = 0;
    if (id < 0 || (uint32_t)id >= v->n_tokens) return "";
    uint8_t t = v->types[id];
    if (!special && (t == NURI_TOKEN_CONTROL || t == NURI_TOKEN_UNKNOWN)) return "";
    *len = v->piece_len[id];
    return v->piece_arena + v->piece_off[id];
}

size_t nuri_token_piece(const nuri_vocab *v, int32_t id, char *buf, size_t cap, bool special)
{
    size_t len;
    const char *p = nuri_token_piece_ref(v, id, special, &len);
    if (buf && cap) memcpy(buf, p, len < cap ? len : cap);
    return len;
}

/* ============================== streaming ============================== */

nuri_status nuri_detok_init(nuri_detok *d, const nuri_vocab *v, unsigned flags)
{
    memset(d, 0, sizeof *d);
    d->vocab = v;
    d->flags = flags;
    d->at_start = true;
    // worst case: 3 held bytes + the piece, every byte becoming a 3-byte U+FFFD
    d->out_cap = ((size_t)v->max_piece_len + 4) * 3;
    d->out = malloc(d->out_cap);
    if (!d->out) return nuri_error(NURI_ERR_NOMEM, "detokenizer buffer");
    return NURI_OK;
}

void nuri_detok_free(nuri_detok *d)
{
    free(d->out);
    d->out = NULL;
}

static size_t put_replacement(char *o, size_t k)
{
    o[k] = (char)0xEF;
    o[k + 1] = (char)0xBF;
    o[k + 2] = (char)0xBD;
    return k + 3;
}

/* Appends the whole characters of held + p[0..n) to d->out, keeping an unfinished tail. */
static size_t emit(nuri_detok *d, const uint8_t *p, size_t n)
{
    uint8_t buf[4 + 8];
    size_t k = 0, i = 0;
    char *o = d->out;
    // first finish the held sequence with bytes from p (at most 3 more are needed)
    while (d->n_held) {
        size_t take = n - i < 4 - d->n_held ? n - i : 4 - d->n_held;
        memcpy(buf, d->held, d->n_held);
        memcpy(buf + d->n_held, p + i, take);
        int r = uni_check_strict(buf, d->n_held + take);
        if (r == 0) { // still incomplete: hold everything
            memcpy(d->held + d->n_held, p + i, take);
            d->n_held += take;
            return k;
        }
        size_t used = r > 0 ? (size_t)r : (size_t)-r; // bytes of buf consumed
        if (r > 0) {
            memcpy(o + k, buf, used);
            k += used;
        } else
            k = put_replacement(o, k);
        if (used >= d->n_held) { // consumed all held bytes and some of p
            i += used - d->n_held;
            d->n_held = 0;
        } else { // an ill-formed prefix of the held bytes: keep the rest held
            memmove(d->held, d->held + used, d->n_held - used);
            d->n_held -= used;
        }
    }
    while (i < n) {
        int r = uni_check_strict(p + i, n - i);
        if (r > 0) {
            memcpy(o + k, p + i, (size_t)r);
            k += (size_t)r;
            i += (size_t)r;
        } else if (r < 0) {
            k = put_replacement(o, k);
            i += (size_t)-r;
        } else { // incomplete at the end of the piece: hold it
            memcpy(d->held, p + i, n - i);
            d->n_held = n - i;
            break;
        }
    }
    return k;
}

const char *nuri_detok_feed(nuri_detok *d, int32_t id, size_t *len)
{
    size_t n;
    const uint8_t *p =
        (const uint8_t *)nuri_token_piece_ref(d->vocab, id, d->flags & NURI_DETOK_SPECIAL, &n);
    if (n && d->at_start) {
        if ((d->flags & NURI_DETOK_STRIP_PREFIX_SPACE) && d->vocab->add_space_prefix && p[0] == ' ')
            p++, n--;
        d->at_start = false;
    }
    *len = emit(d, p, n);
    return d->out;
}

const char *nuri_detok_flush(nuri_detok *d, size_t *len)
{
    size_t k = 0;
    // the held bytes are a valid but unfinished prefix: one U+FFFD for all of them
    if (d->n_held) k = put_replacement(d->out, 0);
    d->n_held = 0;
    d->at_start = true;
    *len = k;
    return d->out;
}
