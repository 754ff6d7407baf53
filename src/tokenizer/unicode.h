/*
 * unicode.h: the small amount of Unicode the tokenizer needs.
 *
 * - UTF-8 decoding exactly as llama.cpp does it before pre-tokenization (lenient: a lead byte with
 *   the right number of continuation bytes is accepted even if overlong or a surrogate; anything
 *   else yields U+FFFD for one byte), and encoding back.
 * - The class of a code point for the pre-tokenizer regexes (White_Space, then the major general
 *   category: letter, number, punctuation, mark, symbol), from a generated table
 *   (unicode_table.c, made by gen_unicode_table.py).
 * - The byte-level BPE alphabet (GPT-2's bytes_to_unicode): every byte value has a printable code
 *   point, and back.
 *
 * No allocation; all functions are pure and thread-safe after uni_init() (which the vocabulary
 * loader calls; it is idempotent and thread-safe).
 */
#ifndef NURI_TOKENIZER_UNICODE_H
#define NURI_TOKENIZER_UNICODE_H

#include <stddef.h>
#include <stdint.h>

enum uni_class {
    UNI_OTHER = 0, // unassigned, control, format, private use, surrogate, non-space separator
    UNI_SPACE = 1, // White_Space property (wins over the category)
    UNI_NUMBER = 2,
    UNI_LETTER = 3,
    UNI_PUNCT = 4,
    UNI_MARK = 5,
    UNI_SYMBOL = 6,
};

#define UNI_REPLACEMENT 0xFFFDu

extern const uint32_t uni_class_ranges[];
extern const uint32_t uni_class_n_ranges;

/* Builds the fast lookup table for the BMP. Safe to call many times from many threads. */
void uni_init(void);

/* The class of a code point (any value; > 0x10FFFF is UNI_OTHER). */
enum uni_class uni_class_of(uint32_t cpt);

/* Decodes one code point at s[*i] (i < n) the way llama.cpp does, advancing *i by 1..4. */
uint32_t uni_decode_lenient(const uint8_t *s, size_t n, size_t *i);

/* Writes the UTF-8 of cpt (<= 0x10FFFF; surrogates are written as 3 bytes) to out[0..4) and returns
 * its length. Larger values are written as U+FFFD. */
size_t uni_encode(uint32_t cpt, uint8_t out[4]);

/* Length of a UTF-8 sequence from its lead byte, as llama.cpp's unicode_len_utf8 (1 for
 * continuation bytes and 0xF8..0xFF). */
static inline size_t uni_len_from_lead(uint8_t b)
{
    static const uint8_t lookup[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lookup[b >> 4];
}

/* Byte-level BPE: the code point standing for byte b, and the byte a code point stands for
 * (-1 if it stands for none). */
uint32_t uni_byte_to_cpt(uint8_t b);
int uni_cpt_to_byte(uint32_t cpt);

/* Strict UTF-8 validation of one sequence at s (n bytes available): returns its length (1..4) if
 * s starts with a complete well-formed sequence, 0 if the bytes so far are a valid but incomplete
 * prefix (n too short), and -k if the first k bytes form an ill-formed (maximal) subpart that
 * should become one U+FFFD. */
int uni_check_strict(const uint8_t *s, size_t n);

#endif
