/*
 * tokenizer.h: text to token ids and back, exactly as llama.cpp does it for the same GGUF file.
 *
 * Vocabularies: tokenizer.ggml.model "gpt2" (byte-level BPE with merges and a pre-tokenizer chosen
 * by tokenizer.ggml.pre) and "llama" (SentencePiece BPE with scores and <0xXX> byte fallback).
 * Other models ("bert", "t5", "rwkv", ...) are refused with NURI_ERR_UNSUPPORTED.
 *
 * Behaviour that callers can rely on (and that the tests pin down):
 * - Special tokens: text matching a user-defined token (type 4) is always cut out first and becomes
 *   that token; control (3) and unknown (2) tokens are matched only with NURI_TOK_PARSE_SPECIAL.
 *   Longer tokens win over shorter ones. Otherwise special-token text is ordinary text.
 * - NURI_TOK_ADD_SPECIAL adds BOS / EOS as the vocabulary says (tokenizer.ggml.add_bos_token /
 *   add_eos_token, with llama.cpp's defaults per model and pre-tokenizer).
 * - SentencePiece vocabularies with add_space_prefix (the default) put one space before the text
 *   and after every special token; nuri_detok with NURI_DETOK_STRIP_PREFIX_SPACE removes the one
 *   at the start again, so that detokenize(tokenize(s)) == s for every valid UTF-8 s without
 *   special-token text (SPM: and without U+2581, SentencePiece's space mark, which comes back as
 *   ' '). Detokenizing is plain concatenation of pieces: no clean-up of spaces.
 * - Invalid UTF-8 is never an error, and is handled as llama.cpp handles it. BPE: a byte that
 *   does not start a (leniently) well-formed sequence becomes U+FFFD before pre-tokenization (so
 *   it does not round-trip). SPM works on bytes: they become <0xXX> byte tokens and usually
 *   round-trip, except that an ill-formed lead byte right before a space swallows part of the
 *   space's U+2581 mark.
 * - Limits: text up to NURI_TOK_MAX_TEXT bytes (else NURI_ERR_LIMIT); vocabularies up to
 *   NURI_VOCAB_MAX_TOKENS tokens of up to NURI_VOCAB_MAX_TOKEN_LEN bytes each. Time is linear in
 *   the text length (heap-based merging; no quadratic case on long words). Scratch memory is per
 *   call and proportional to the longest stretch of text between special tokens: about 12 bytes
 *   per input byte for BPE (up to ~40 with pre-tokenizers that also run code-point regexes, such
 *   as deepseek-llm), about 5 for SentencePiece; plus 4 bytes per output token.
 *
 * Thread safety: a loaded nuri_vocab is immutable; any number of threads may tokenize with it at
 * once. A nuri_detok belongs to one thread at a time.
 */
#ifndef NURI_TOKENIZER_H
#define NURI_TOKENIZER_H

#include "base/text_spans.h"
#include "gguf/gguf.h"
#include "nuri.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NURI_TOK_MAX_TEXT (1u << 30)          // bytes
#define NURI_VOCAB_MAX_TOKENS (1u << 24)      // tokens
#define NURI_VOCAB_MAX_TOKEN_LEN (64u * 1024) // bytes

typedef struct nuri_vocab nuri_vocab;

typedef enum nuri_vocab_type {
    NURI_VOCAB_SPM = 1, // tokenizer.ggml.model "llama"
    NURI_VOCAB_BPE = 2, // tokenizer.ggml.model "gpt2"
} nuri_vocab_type;

/* Token types as stored in tokenizer.ggml.token_type, after llama.cpp's load-time adjustments
 * (tokens whose text marks an end of turn, such as <|im_end|>, are made CONTROL). */
typedef enum nuri_token_type {
    NURI_TOKEN_UNDEFINED = 0,
    NURI_TOKEN_NORMAL = 1,
    NURI_TOKEN_UNKNOWN = 2,
    NURI_TOKEN_CONTROL = 3,
    NURI_TOKEN_USER_DEFINED = 4,
    NURI_TOKEN_UNUSED = 5,
    NURI_TOKEN_BYTE = 6,
} nuri_token_type;

/* ---- loading ---- */

/* Reads the vocabulary from a GGUF file's tokenizer.ggml.* metadata. On success *out is owned by
 * the caller (free with nuri_vocab_free) and does not borrow from f. A broken vocabulary is
 * refused with a message naming the key: tokens missing, empty or not strings; scores or
 * token_type not one per token; BPE merges missing or not strings; a special token id (bos, eos,
 * eot, unknown, padding, fim_*, ...) that is not a token's. */
nuri_status nuri_vocab_load(const gguf_file *f, nuri_vocab **out);

/* A string that need not be NUL-terminated. */
typedef struct nuri_strv {
    const char *ptr;
    size_t len; // bytes
} nuri_strv;

/* The same from values in memory (tests, fuzzing, other containers). Everything is copied. */
typedef struct nuri_vocab_desc {
    const char *model; // "gpt2" or "llama" (required)
    const char *pre;   // tokenizer.ggml.pre, or NULL (BPE: the "default" pre-tokenizer + warning)
    const char *name;  // general.name, or NULL (a few per-model rules key on it, e.g. Phi-3)
    const char *arch;  // general.architecture, or NULL
    uint32_t n_tokens;
    const nuri_strv *tokens; // n_tokens texts
    const float *scores;     // n_tokens scores, or NULL (all 0)
    const int32_t *types;    // n_tokens nuri_token_type values, or NULL (all NORMAL)
    uint64_t n_merges;
    const nuri_strv *merges; // BPE: "left right" merge rules, rank = index
    // special token ids from metadata; -1 = not given (the model's default applies)
    int64_t bos, eos, eot, eom, unk, sep, pad, mask;
    int64_t fim_pre, fim_suf, fim_mid, fim_pad, fim_rep, fim_sep;
    int add_bos, add_eos, add_space_prefix; // 0/1, or -1 = not given
} nuri_vocab_desc;

/* Sets every id to -1 and every add_* to -1 (then fill in what you have). */
void nuri_vocab_desc_init(nuri_vocab_desc *d);

nuri_status nuri_vocab_build(const nuri_vocab_desc *d, nuri_vocab **out);

void nuri_vocab_free(nuri_vocab *v);

/* Warnings found while loading (an unknown pre-tokenizer and the fallback used, add_bos_token
 * without a BOS token, ...), one per line; NULL if none. Borrowed until nuri_vocab_free. */
const char *nuri_vocab_warnings(const nuri_vocab *v);

/* ---- tokenizing ---- */

#define NURI_TOK_ADD_SPECIAL 1u   // add BOS / EOS as the vocabulary asks
#define NURI_TOK_PARSE_SPECIAL 2u // control-token text (<|im_start|>) in the text becomes the token

/* Tokenizes text[0..len) (any bytes). On success *ids (caller frees with free(); may be NULL when
 * *n_ids is 0) holds *n_ids token ids. Fails only on NURI_ERR_LIMIT (text too long) and
 * NURI_ERR_NOMEM. */
nuri_status nuri_tokenize(const nuri_vocab *v, const char *text, size_t len, unsigned flags,
                          int32_t **ids, size_t *n_ids);

/* nuri_tokenize for a text with data spans (a rendered chat prompt: the spans that came from the
 * user, nuri_template_render_spans). With NURI_TOK_PARSE_SPECIAL, control / unknown token text
 * becomes the token only where none of its bytes lies in a data span; inside them it is ordinary
 * text, as without the flag (user-defined tokens are cut out everywhere, as always). Nothing else
 * changes: a text whose data spans hold no special-token text gets exactly nuri_tokenize's ids.
 * data may be NULL (no spans). Spans out of order or past len: NURI_ERR_INVALID_ARG. */
nuri_status nuri_tokenize_spans(const nuri_vocab *v, const char *text, size_t len, unsigned flags,
                                const nuri_text_spans *data, int32_t **ids, size_t *n_ids);

/* ---- detokenizing ---- */

/* The bytes of one token: the piece with byte-level BPE decoded, SentencePiece's U+2581 as a space
 * and <0xXX> as the byte. Control and unknown tokens give their text if `special`, else nothing;
 * unused and undefined tokens give nothing; an id out of range gives nothing. Copies
 * min(length, cap) bytes to buf (no NUL) and returns the full length (like snprintf). */
size_t nuri_token_piece(const nuri_vocab *v, int32_t id, char *buf, size_t cap, bool special);

/* The same without copying: borrowed until nuri_vocab_free. */
const char *nuri_token_piece_ref(const nuri_vocab *v, int32_t id, bool special, size_t *len);

/* Streaming detokenizer: feed ids one at a time and get back only whole UTF-8 characters. Bytes of
 * a character split across tokens (a Hangul syllable from three <0xXX> tokens) are held until it is
 * complete. Ill-formed UTF-8 comes out as U+FFFD (one per maximal ill-formed subpart, as the
 * Unicode standard recommends) as soon as it is known to be ill-formed, so nothing is held for more
 * than 3 bytes; nuri_detok_flush turns an unfinished tail into U+FFFD. */
#define NURI_DETOK_SPECIAL 1u            // render control/unknown tokens' text
#define NURI_DETOK_STRIP_PREFIX_SPACE 2u // drop the space that SPM tokenizing added at the start

typedef struct nuri_detok {
    const nuri_vocab *vocab;
    unsigned flags;
    bool at_start;   // nothing emitted yet (for NURI_DETOK_STRIP_PREFIX_SPACE)
    uint8_t held[4]; // an incomplete UTF-8 sequence carried to the next token
    size_t n_held;
    char *out; // output buffer, sized at init for the longest piece
    size_t out_cap;
} nuri_detok;

/* Allocates the output buffer once (no allocation per token afterwards). */
nuri_status nuri_detok_init(nuri_detok *d, const nuri_vocab *v, unsigned flags);
void nuri_detok_free(nuri_detok *d);

/* Feeds one token id; returns the bytes now ready (whole characters) and their count in *len.
 * Borrowed until the next call on d. */
const char *nuri_detok_feed(nuri_detok *d, int32_t id, size_t *len);

/* Ends the stream: whatever is held comes out as U+FFFD. Borrowed until the next call on d. The
 * detokenizer is then ready for a new stream (at_start again). */
const char *nuri_detok_flush(nuri_detok *d, size_t *len);

/* ---- the vocabulary ---- */

nuri_vocab_type nuri_vocab_get_type(const nuri_vocab *v);
const char *nuri_vocab_pre(const nuri_vocab *v); // the pre-tokenizer in use ("llama-bpe"); SPM: ""
uint32_t nuri_vocab_n_tokens(const nuri_vocab *v);
int32_t nuri_vocab_bos(const nuri_vocab *v); // -1 if none
int32_t nuri_vocab_eos(const nuri_vocab *v);
int32_t nuri_vocab_eot(const nuri_vocab *v);
int32_t nuri_vocab_unk(const nuri_vocab *v);
int32_t nuri_vocab_pad(const nuri_vocab *v);
bool nuri_vocab_add_bos(const nuri_vocab *v);
bool nuri_vocab_add_eos(const nuri_vocab *v);
bool nuri_vocab_add_space_prefix(const nuri_vocab *v);
/* True if generating id ends the turn: EOS, EOT, EOM and the tokens llama.cpp recognizes by text
 * (<|im_end|>, <|eot_id|>, <|endoftext|>, <end_of_turn>, ...). */
bool nuri_vocab_is_eog(const nuri_vocab *v, int32_t id);
/* The token's text as stored in the vocabulary (byte-level / U+2581 form). Borrowed; NULL if the id
 * is out of range. */
const char *nuri_vocab_token_text(const nuri_vocab *v, int32_t id, size_t *len);
nuri_token_type nuri_vocab_token_type(const nuri_vocab *v, int32_t id);
float nuri_vocab_token_score(const nuri_vocab *v, int32_t id);
/* The id whose text is exactly text[0..len), or -1. */
int32_t nuri_vocab_find(const nuri_vocab *v, const char *text, size_t len);

#endif
