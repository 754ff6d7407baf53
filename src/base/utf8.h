/*
 * utf8.h: encoding one code point as UTF-8, shared by the tokenizer and the template engine.
 */
#ifndef NURI_BASE_UTF8_H
#define NURI_BASE_UTF8_H

#include <stddef.h>
#include <stdint.h>

#define NURI_UTF8_REPLACEMENT 0xFFFDu

/* Writes cp as 1-4 UTF-8 bytes to out and returns how many; a value above U+10FFFF is written as
 * U+FFFD. (Surrogates are encoded as they are: callers that must refuse them check first.) */
static inline size_t nuri_utf8_encode(uint32_t cp, char out[4])
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp > 0x10FFFF) cp = NURI_UTF8_REPLACEMENT;
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

#endif
