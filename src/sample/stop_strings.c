/*
 * stop_strings.c: how much generated text may be streamed now without ever sending part of a stop
 * string (see nuri_stop_strings_check in sampler.h). Byte-wise: stop strings and text are UTF-8,
 * but matching needs no decoding; only the final cut avoids ending inside a character.
 * Keeps no state and copies nothing.
 */
#include "sample/sampler.h"

#include <string.h>

/* How many bytes at the end of text[0..len) form an incomplete UTF-8 character (a lead byte
 * followed by fewer continuation bytes than it announces): 0..3. */
static size_t utf8_incomplete_tail(const char *text, size_t len)
{
    const unsigned char *u = (const unsigned char *)text;
    for (size_t back = 1; back <= 3 && back <= len; back++) {
        unsigned char b = u[len - back];
        if ((b & 0xC0) == 0x80) continue; // a continuation byte: look further back
        size_t need = (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : (b & 0xF8) == 0xF0 ? 4 : 1;
        return need > back ? back : 0;
    }
    return 0; // ASCII, complete, or not UTF-8 at all: nothing to hold back
}

void nuri_stop_strings_check(const char *text, size_t len, size_t n_emitted,
                             const char *const *stops, size_t n_stops, nuri_stop_result *out)
{
    if (n_emitted > len) n_emitted = len;
    out->hit = 0;
    out->stop_index = -1;

    // a whole stop string: the earliest start wins, then the first in the list
    size_t best = len;
    for (size_t k = 0; k < n_stops; k++) {
        size_t sl = stops[k] ? strlen(stops[k]) : 0;
        if (sl == 0) continue;
        const char *at = memmem(text + n_emitted, len - n_emitted, stops[k], sl);
        if (at && (size_t)(at - text) < best) {
            best = (size_t)(at - text);
            out->hit = 1;
            out->stop_index = (int32_t)k;
        }
    }
    if (out->hit) {
        out->n_safe = best;
        return;
    }

    // no stop string: hold back the longest suffix that some stop string starts with
    size_t hold = 0;
    for (size_t k = 0; k < n_stops; k++) {
        size_t sl = stops[k] ? strlen(stops[k]) : 0;
        size_t max_h = sl ? sl - 1 : 0; // a proper prefix; a whole one would have been a hit
        if (max_h > len - n_emitted) max_h = len - n_emitted;
        for (size_t h = max_h; h > hold; h--)
            if (!memcmp(text + len - h, stops[k], h)) {
                hold = h;
                break;
            }
    }
    size_t safe = len - hold;
    safe -= utf8_incomplete_tail(text, safe);
    out->n_safe = safe > n_emitted ? safe : n_emitted;
}
