/*
 * grammar_internal.h: the compiled form of a grammar, shared by the parser (gbnf_parse.c) and the
 * matcher (matcher.c). Not part of the API.
 *
 * A grammar is a flat array of symbols ("elems"). Every rule is a list of alternatives; every
 * alternative is a run of symbols ending with END. A symbol is a 32-bit word: its type in the top
 * two bits, a value in the other 30:
 *
 *   END        the end of an alternative
 *   SET  s     one code point out of character set s (a literal character is a one-point set)
 *   REF  r     rule r
 *
 * Character sets are sorted, disjoint, non-adjacent inclusive ranges of code points (negated
 * classes are complemented at compile time, within 0..0x10FFFF), plus a bitmap of their ASCII part
 * for the common case.
 *
 * Invariants the matcher relies on (established by the parser): every REF names a defined rule;
 * no rule is left-recursive (so expanding rules without consuming a character always ends);
 * root < n_rules.
 */
#ifndef NURI_GRAMMAR_INTERNAL_H
#define NURI_GRAMMAR_INTERNAL_H

#include "grammar/grammar.h"

#include <stdatomic.h>
#include <stdint.h>

enum { GE_END = 0u, GE_SET = 1u, GE_REF = 2u };
#define GE_TYPE(e) ((uint32_t)(e) >> 30)
#define GE_VAL(e) ((uint32_t)(e)&0x3FFFFFFFu)
#define GE_MAKE(t, v) (((uint32_t)(t) << 30) | (uint32_t)(v))

#define GRAMMAR_MAX_CP 0x10FFFFu

struct nuri_grammar {
    atomic_int refs;
    uint32_t n_elems;
    uint32_t *elems; // (n_elems) symbols, alternatives end with END
    uint32_t n_rules;
    uint32_t *rule_alt; // (n_rules + 1) rule r's alternatives are alt_pos[rule_alt[r] .. [r+1])
    uint32_t n_alts;
    uint32_t *alt_pos; // (n_alts) index in elems of each alternative's first symbol
    uint32_t root;
    uint32_t n_sets;
    uint32_t *set_off;   // (n_sets + 1) set s is ranges[2*set_off[s] .. 2*set_off[s+1])
    uint32_t *ranges;    // pairs lo, hi (inclusive)
    uint64_t *set_ascii; // (n_sets * 2) bit c of set s: code point c < 128 is in it
};

/* Whether code point c is in set s. */
static inline bool grammar_set_has(const nuri_grammar *g, uint32_t s, uint32_t c)
{
    if (c < 128) return (g->set_ascii[2 * s + (c >> 6)] >> (c & 63)) & 1;
    uint32_t lo = g->set_off[s], hi = g->set_off[s + 1]; // binary search over ranges [lo, hi)
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (c < g->ranges[2 * mid])
            hi = mid;
        else if (c > g->ranges[2 * mid + 1])
            lo = mid + 1;
        else
            return true;
    }
    return false;
}

/* Whether set s has any code point in [a, b]. */
static inline bool grammar_set_meets(const nuri_grammar *g, uint32_t s, uint32_t a, uint32_t b)
{
    uint32_t lo = g->set_off[s], hi = g->set_off[s + 1]; // first range whose end is >= a
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (g->ranges[2 * mid + 1] < a)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < g->set_off[s + 1] && g->ranges[2 * lo] <= b;
}

/* Whether set s has every code point in [a, b] (ranges are merged, so one range must hold it). */
static inline bool grammar_set_covers(const nuri_grammar *g, uint32_t s, uint32_t a, uint32_t b)
{
    uint32_t lo = g->set_off[s], hi = g->set_off[s + 1];
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (g->ranges[2 * mid + 1] < a)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < g->set_off[s + 1] && g->ranges[2 * lo] <= a && b <= g->ranges[2 * lo + 1];
}

#endif
