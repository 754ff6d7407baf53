/*
 * unicode.c: UTF-8 decoding/encoding, code point classes and the byte-level BPE alphabet.
 * See unicode.h.
 */
#include "base/utf8.h"
#include "tokenizer/unicode.h"

#include <pthread.h>

static uint8_t bmp_class[0x10000]; // class of every BMP code point, filled by uni_init
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static enum uni_class class_search(uint32_t cpt)
{
    uint32_t lo = 0, hi = uni_class_n_ranges; // find the last range starting at or before cpt
    while (hi - lo > 1) {
        uint32_t mid = (lo + hi) / 2;
        if ((uni_class_ranges[mid] >> 3) <= cpt)
            lo = mid;
        else
            hi = mid;
    }
    return (enum uni_class)(uni_class_ranges[lo] & 7);
}

static void init_tables(void)
{
    for (uint32_t c = 0; c < 0x10000; c++) bmp_class[c] = (uint8_t)class_search(c);
}

void uni_init(void)
{
    pthread_once(&init_once, init_tables);
}

enum uni_class uni_class_of(uint32_t cpt)
{
    if (cpt < 0x10000) return (enum uni_class)bmp_class[cpt];
    if (cpt > 0x10FFFF) return UNI_OTHER;
    return class_search(cpt);
}

uint32_t uni_decode_lenient(const uint8_t *s, size_t n, size_t *i)
{
    size_t k = *i;
    uint8_t b = s[k];
    if (!(b & 0x80)) {
        *i = k + 1;
        return b;
    }
    // a continuation byte where a lead was expected, or a lead that needs more bytes than exist or
    // whose continuation bytes are not 10xxxxxx: one U+FFFD for this one byte
    if (!(b & 0x40)) goto bad;
    if (!(b & 0x20)) {
        if (k + 1 >= n || (s[k + 1] & 0xC0) != 0x80) goto bad;
        *i = k + 2;
        return ((uint32_t)(b & 0x1F) << 6) | (s[k + 1] & 0x3F);
    }
    if (!(b & 0x10)) {
        if (k + 2 >= n || (s[k + 1] & 0xC0) != 0x80 || (s[k + 2] & 0xC0) != 0x80) goto bad;
        *i = k + 3;
        return ((uint32_t)(b & 0x0F) << 12) | ((uint32_t)(s[k + 1] & 0x3F) << 6) |
               (s[k + 2] & 0x3F);
    }
    if (!(b & 0x08)) {
        if (k + 3 >= n || (s[k + 1] & 0xC0) != 0x80 || (s[k + 2] & 0xC0) != 0x80 ||
            (s[k + 3] & 0xC0) != 0x80)
            goto bad;
        *i = k + 4;
        uint32_t c = ((uint32_t)(b & 0x07) << 18) | ((uint32_t)(s[k + 1] & 0x3F) << 12) |
                     ((uint32_t)(s[k + 2] & 0x3F) << 6) | (s[k + 3] & 0x3F);
        // llama.cpp would throw when re-encoding these; nuri replaces them (documented)
        return c > 0x10FFFF ? UNI_REPLACEMENT : c;
    }
bad:
    *i = k + 1;
    return UNI_REPLACEMENT;
}

size_t uni_encode(uint32_t c, uint8_t out[4])
{
    return nuri_utf8_encode(c, (char *)out);
}

/* GPT-2's alphabet: the printable bytes '!'..'~', 0xA1..0xAC and 0xAE..0xFF stand for themselves;
 * the other 68 bytes, in increasing order, get 0x100, 0x101, ... */
static int byte_is_printable(unsigned b)
{
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

uint32_t uni_byte_to_cpt(uint8_t b)
{
    if (byte_is_printable(b)) return b;
    uint32_t n = 0; // how many non-printable bytes come before b
    for (unsigned x = 0; x < b; x++) n += !byte_is_printable(x);
    return 0x100 + n;
}

int uni_cpt_to_byte(uint32_t cpt)
{
    if (cpt < 0x100) return byte_is_printable(cpt) ? (int)cpt : -1;
    if (cpt >= 0x100 + 68) return -1;
    uint32_t n = cpt - 0x100;
    for (unsigned x = 0; x < 256; x++)
        if (!byte_is_printable(x) && n-- == 0) return (int)x;
    return -1;
}

int uni_check_strict(const uint8_t *s, size_t n)
{
    uint8_t b = s[0];
    if (b < 0x80) return 1;
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF; // allowed range of the second byte
    if (b >= 0xC2 && b <= 0xDF)
        need = 2;
    else if (b >= 0xE0 && b <= 0xEF) {
        need = 3;
        if (b == 0xE0) lo = 0xA0;
        if (b == 0xED) hi = 0x9F; // no surrogates
    } else if (b >= 0xF0 && b <= 0xF4) {
        need = 4;
        if (b == 0xF0) lo = 0x90;
        if (b == 0xF4) hi = 0x8F; // <= U+10FFFF
    } else
        return -1; // continuation byte, C0, C1, F5..FF
    for (size_t k = 1; k < need; k++) {
        if (k >= n) return 0; // valid so far, incomplete
        uint8_t lo_k = k == 1 ? lo : 0x80, hi_k = k == 1 ? hi : 0xBF;
        if (s[k] < lo_k || s[k] > hi_k) return -(int)k;
    }
    return (int)need;
}
