/*
 * matcher.c: following text through a grammar, and the per-token filter.
 *
 * Stacks. A position in the grammar is the index of a symbol in g->elems. A stack is a chain of
 * nodes (pos, parent): pos is the symbol to match next, parent the stack to return to once the
 * alternative that pos belongs to is done. Node 0 (NIL) is the empty stack: the grammar is
 * complete. Nodes are hash-consed, so equal stacks are the same node id, and a stack is never
 * left pointing at an END: making (pos, parent) with elems[pos] == END gives parent itself. That
 * keeps tail calls flat: `R ::= x R |` runs in constant stack depth, and a state inside a long
 * repetition repeats exactly.
 *
 * States. After every character, each stack is expanded ("closure") until its top is a character
 * set: a REF r on top is replaced by every alternative of r, continuing after the REF. The sorted
 * list of the resulting stacks (NIL included when the grammar may end) is interned as a set; a DFA
 * state is (set, bytes of a partial UTF-8 character). Interning makes "state, byte -> state" a
 * pure function, cached in a table of 256 entries per state: the first time it is computed from
 * the stacks (advance by the character, or check that some stack can take a character starting
 * with these bytes), later it is one load. Left recursion is refused by the parser, so closure
 * always ends; a closure visits each node once (stamps), so ambiguous grammars do not blow up.
 *
 * Memory. Nodes, sets and states live in an arena of fixed capacity, allocated at creation. When
 * it is full, the live states (the current one, and during a trie walk the states on the walk's
 * path) are copied into the second arena and the first is dropped with every cached transition
 * and mask: a copying collection whose roots are a handful of states. A step that does not fit in
 * an empty arena fails with NURI_ERR_LIMIT. Nothing here allocates after creation.
 *
 * The filter. The trie's nodes are in preorder (grammar_trie.h); the walk keeps the state reached
 * at each depth, takes one table lookup per node, and skips the subtree of a refused byte. One
 * shortcut: when a node's byte leads back to the same state, its subtree holds only plain bytes
 * (printable ASCII but '"' and '\\'), and every plain byte loops on that state (checked once per
 * state: true inside a free-text JSON string), then every token of the subtree is allowed without
 * walking it. The resulting masks are kept for the last n_masks states (least recently used goes
 * first).
 */
#include "base/status.h"
#include "grammar/grammar_internal.h"
#include "grammar/grammar_trie.h"

#include <stdlib.h>
#include <string.h>

#define NIL 0u
#define T_UNKNOWN 0xFFFFu // transition not computed yet
#define T_DEAD 0xFFFEu    // the byte is refused
#define FULL UINT32_MAX   // an arena is full (internal)
#define MAX_STATES_LIMIT 32000u

#define F_CAN_END 1u
#define F_CAN_CONTINUE 2u

typedef struct arena {
    uint32_t *node_pos, *node_parent; // (cap_nodes) node 0 is NIL
    uint32_t n_nodes;
    uint32_t *node_tab; // open addressing: node id, 0 = empty (NIL is never in it)
    uint32_t *set_data; // (cap_set_data) the stacks of every set, sorted within a set
    uint32_t n_set_data;
    uint32_t *set_off, *set_len; // (cap_states)
    uint32_t n_sets;
    uint32_t *set_tab;    // set id + 1, 0 = empty
    uint32_t *state_set;  // (cap_states)
    uint32_t *state_pend; // (cap_states) partial character: count << 24 | bytes
    uint8_t *state_flags; // (cap_states) F_*
    uint32_t n_states;
    uint32_t *state_tab; // state id + 1, 0 = empty
} arena;

struct nuri_grammar_matcher {
    nuri_grammar *g;
    const nuri_token_trie *t;
    uint32_t cap_nodes, cap_set_data, cap_states;
    uint32_t node_mask, set_mask, state_mask; // hash table sizes - 1
    arena ar[2];
    int cur_ar;
    uint16_t *next;   // (cap_states * 256) transitions of the current arena's states
    int16_t *mask_of; // (cap_states) the mask slot holding the state's mask, -1 if none
    uint8_t
        *plain_loop;    // (cap_states) every plain byte leads back to the state: 0 unknown, 1, 2 no
    uint32_t cur;       // the current state
    uint32_t start;     // the start state in the current arena, FULL if not made yet
    uint32_t *work;     // (cap_nodes) closure work list; also the copy chain in collect()
    uint32_t *out;      // (cap_nodes) closure output
    uint32_t *stamp;    // (cap_nodes) closure visit marks
    uint32_t gen;       // the current mark
    uint32_t *remap;    // (cap_nodes) collect(): old node id -> new
    uint32_t *remap_at; // (cap_nodes) collect(): the collection that set remap
    uint32_t n_collect;
    uint32_t *walk; // (max_depth + 1) trie walk: the state at each depth
    uint32_t n_masks, mask_words;
    uint32_t *masks;      // (n_masks * mask_words)
    uint32_t *mask_state; // (n_masks) state whose mask the slot holds, FULL if none
    uint64_t *mask_used;  // (n_masks) last use, for LRU
    uint64_t clock;
    nuri_grammar_matcher_stats stats;
};

/* ---- hashing ---- */

static inline uint32_t mix(uint32_t a, uint32_t b)
{
    uint64_t x = ((uint64_t)a << 32 | b) * 0x9E3779B97F4A7C15ull;
    return (uint32_t)(x >> 32) ^ (uint32_t)x;
}

static uint32_t pow2_at_least(uint32_t x)
{
    uint32_t p = 16;
    while (p < x) p *= 2;
    return p;
}

/* ---- arenas ---- */

static void arena_free(arena *a)
{
    free(a->node_pos);
    free(a->node_parent);
    free(a->node_tab);
    free(a->set_data);
    free(a->set_off);
    free(a->set_len);
    free(a->set_tab);
    free(a->state_set);
    free(a->state_pend);
    free(a->state_flags);
    free(a->state_tab);
}

static bool arena_alloc(nuri_grammar_matcher *m, arena *a)
{
    a->node_pos = malloc(sizeof(uint32_t) * m->cap_nodes);
    a->node_parent = malloc(sizeof(uint32_t) * m->cap_nodes);
    a->node_tab = malloc(sizeof(uint32_t) * ((size_t)m->node_mask + 1));
    a->set_data = malloc(sizeof(uint32_t) * m->cap_set_data);
    a->set_off = malloc(sizeof(uint32_t) * m->cap_states);
    a->set_len = malloc(sizeof(uint32_t) * m->cap_states);
    a->set_tab = malloc(sizeof(uint32_t) * ((size_t)m->set_mask + 1));
    a->state_set = malloc(sizeof(uint32_t) * m->cap_states);
    a->state_pend = malloc(sizeof(uint32_t) * m->cap_states);
    a->state_flags = malloc(m->cap_states);
    a->state_tab = malloc(sizeof(uint32_t) * ((size_t)m->state_mask + 1));
    return a->node_pos && a->node_parent && a->node_tab && a->set_data && a->set_off &&
           a->set_len && a->set_tab && a->state_set && a->state_pend && a->state_flags &&
           a->state_tab;
}

static void arena_clear(nuri_grammar_matcher *m, arena *a)
{
    a->n_nodes = 1; // NIL
    a->node_pos[NIL] = 0;
    a->node_parent[NIL] = NIL;
    a->n_set_data = 0;
    a->n_sets = 0;
    a->n_states = 0;
    memset(a->node_tab, 0, sizeof(uint32_t) * ((size_t)m->node_mask + 1));
    memset(a->set_tab, 0, sizeof(uint32_t) * ((size_t)m->set_mask + 1));
    memset(a->state_tab, 0, sizeof(uint32_t) * ((size_t)m->state_mask + 1));
}

/* The node (pos, parent), made if new; FULL if the arena has no room. */
static uint32_t node_intern(nuri_grammar_matcher *m, arena *a, uint32_t pos, uint32_t parent)
{
    uint32_t h = mix(pos, parent);
    for (;; h++) {
        uint32_t id = a->node_tab[h & m->node_mask];
        if (id == 0) break;
        if (a->node_pos[id] == pos && a->node_parent[id] == parent) return id;
    }
    if (a->n_nodes >= m->cap_nodes) return FULL;
    uint32_t id = a->n_nodes++;
    a->node_pos[id] = pos;
    a->node_parent[id] = parent;
    a->node_tab[h & m->node_mask] = id;
    return id;
}

/* The stack "continue at pos, then parent": parent itself when pos is the end of an alternative. */
static inline uint32_t node_make(nuri_grammar_matcher *m, arena *a, uint32_t pos, uint32_t parent)
{
    if (GE_TYPE(m->g->elems[pos]) == GE_END) return parent;
    return node_intern(m, a, pos, parent);
}

/* The set of the n sorted stacks in ids; FULL if no room. */
static uint32_t set_intern(nuri_grammar_matcher *m, arena *a, const uint32_t *ids, uint32_t n)
{
    uint32_t h = 0x811C9DC5u ^ n;
    for (uint32_t i = 0; i < n; i++) h = mix(h, ids[i]);
    for (;; h++) {
        uint32_t e = a->set_tab[h & m->set_mask];
        if (e == 0) break;
        uint32_t s = e - 1;
        if (a->set_len[s] == n && !memcmp(a->set_data + a->set_off[s], ids, 4 * (size_t)n))
            return s;
    }
    if (a->n_sets >= m->cap_states || (uint64_t)a->n_set_data + n > m->cap_set_data) return FULL;
    uint32_t s = a->n_sets++;
    a->set_off[s] = a->n_set_data;
    a->set_len[s] = n;
    memcpy(a->set_data + a->n_set_data, ids, 4 * (size_t)n);
    a->n_set_data += n;
    a->set_tab[h & m->set_mask] = s + 1;
    return s;
}

/* The DFA state (set, pend); FULL if no room. A new state starts with no transitions and no mask.
 * Only the current arena's states have transitions: callers intern into m->ar[m->cur_ar]. */
static uint32_t state_intern(nuri_grammar_matcher *m, arena *a, uint32_t set, uint32_t pend)
{
    uint32_t h = mix(set, pend);
    for (;; h++) {
        uint32_t e = a->state_tab[h & m->state_mask];
        if (e == 0) break;
        uint32_t s = e - 1;
        if (a->state_set[s] == set && a->state_pend[s] == pend) return s;
    }
    if (a->n_states >= m->cap_states) return FULL;
    uint32_t s = a->n_states++;
    a->state_set[s] = set;
    a->state_pend[s] = pend;
    const uint32_t *st = a->set_data + a->set_off[set];
    uint32_t n = a->set_len[set];
    uint8_t f = 0;
    if (pend == 0 && n > 0 && st[0] == NIL) f |= F_CAN_END; // sorted: NIL first
    if (pend != 0 || (n > 0 && st[n - 1] != NIL)) f |= F_CAN_CONTINUE;
    a->state_flags[s] = f;
    a->state_tab[h & m->state_mask] = s + 1;
    memset(m->next + (size_t)s * 256, 0xFF, 256 * sizeof *m->next);
    m->mask_of[s] = -1;
    m->plain_loop[s] = 0;
    return s;
}

/* ---- closure ---- */

static inline void visit(nuri_grammar_matcher *m, uint32_t *nw, uint32_t node)
{
    if (m->stamp[node] == m->gen) return;
    m->stamp[node] = m->gen;
    m->work[(*nw)++] = node;
}

static void new_gen(nuri_grammar_matcher *m)
{
    if (++m->gen == 0) { // wrapped: forget every old mark
        memset(m->stamp, 0, sizeof *m->stamp * m->cap_nodes);
        m->gen = 1;
    }
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Expands the stacks on the work list (nw of them) until every one has a character set on top (or
 * is NIL), then interns their sorted set. Returns the set, FULL, or T_DEAD-like UINT32_MAX - 1 when
 * no stack is left. */
#define NO_SET (UINT32_MAX - 1)
static uint32_t closure(nuri_grammar_matcher *m, arena *a, uint32_t nw)
{
    const nuri_grammar *g = m->g;
    uint32_t no = 0;
    while (nw > 0) {
        uint32_t n = m->work[--nw];
        if (n == NIL) {
            m->out[no++] = NIL;
            continue;
        }
        uint32_t pos = a->node_pos[n];
        uint32_t e = g->elems[pos];
        if (GE_TYPE(e) == GE_SET) {
            m->out[no++] = n;
            continue;
        }
        // a REF: every alternative of the rule, continuing after the REF
        uint32_t cont = node_make(m, a, pos + 1, a->node_parent[n]);
        if (cont == FULL) return FULL;
        uint32_t r = GE_VAL(e);
        for (uint32_t k = g->rule_alt[r]; k < g->rule_alt[r + 1]; k++) {
            uint32_t x = node_make(m, a, g->alt_pos[k], cont);
            if (x == FULL) return FULL;
            visit(m, &nw, x);
        }
    }
    if (no == 0) return NO_SET;
    qsort(m->out, no, sizeof *m->out, cmp_u32);
    return set_intern(m, a, m->out, no);
}

/* The start state of the grammar in the current arena, or FULL. */
static uint32_t start_state(nuri_grammar_matcher *m)
{
    arena *a = &m->ar[m->cur_ar];
    const nuri_grammar *g = m->g;
    new_gen(m);
    uint32_t nw = 0;
    for (uint32_t k = g->rule_alt[g->root]; k < g->rule_alt[g->root + 1]; k++) {
        uint32_t x = node_make(m, a, g->alt_pos[k], NIL);
        if (x == FULL) return FULL;
        visit(m, &nw, x);
    }
    uint32_t set = closure(m, a, nw);
    if (set == FULL) return FULL;
    NURI_ASSERT(set != NO_SET); // root has at least one alternative
    return state_intern(m, a, set, 0);
}

/* ---- one byte ---- */

/* Bytes of the UTF-8 sequence a lead byte starts (0: not a lead byte), and the range the second
 * byte must be in (Unicode's table of well-formed sequences: no overlongs, no surrogates, nothing
 * past U+10FFFF). */
static inline int utf8_len(unsigned b, unsigned *lo, unsigned *hi)
{
    *lo = 0x80, *hi = 0xBF;
    if (b < 0x80) return 1;
    if (b >= 0xC2 && b <= 0xDF) return 2;
    if (b >= 0xE0 && b <= 0xEF) {
        if (b == 0xE0) *lo = 0xA0;
        if (b == 0xED) *hi = 0x9F;
        return 3;
    }
    if (b >= 0xF0 && b <= 0xF4) {
        if (b == 0xF0) *lo = 0x90;
        if (b == 0xF4) *hi = 0x8F;
        return 4;
    }
    return 0;
}

/* Advances the stacks of set (in arena a) by code point cp: the new set, NO_SET, or FULL. */
static uint32_t advance(nuri_grammar_matcher *m, arena *a, uint32_t set, uint32_t cp)
{
    const nuri_grammar *g = m->g;
    const uint32_t *st = a->set_data + a->set_off[set];
    uint32_t n = a->set_len[set];
    new_gen(m);
    uint32_t nw = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t node = st[i];
        if (node == NIL) continue;
        uint32_t pos = a->node_pos[node];
        if (!grammar_set_has(g, GE_VAL(g->elems[pos]), cp)) continue;
        uint32_t x = node_make(m, a, pos + 1, a->node_parent[node]);
        if (x == FULL) return FULL;
        visit(m, &nw, x);
    }
    if (nw == 0) return NO_SET;
    return closure(m, a, nw);
}

/* Computes the transition (s, b) in the current arena: a state, T_DEAD, or FULL.
 *
 * A partial character is kept in the state in one of two forms:
 *   exact     count << 24 | its bytes: some character set splits the code points it may still
 *             become, so the rest of the bytes matter;
 *   uniform   PEND_UNIFORM | bytes still to come << 24 | allowed range of the next byte: every
 *             completion leads to the same set, which is then the state's set already. All
 *             partial characters inside a free-text string are of this kind, so a Chinese
 *             token's three bytes visit three states, not one per prefix. */
#define PEND_UNIFORM 0x80000000u
static uint32_t transition_compute(nuri_grammar_matcher *m, uint32_t s, unsigned b)
{
    arena *a = &m->ar[m->cur_ar];
    const nuri_grammar *g = m->g;
    m->stats.transitions++;
    uint32_t pend = a->state_pend[s];
    if (pend & PEND_UNIFORM) {
        uint32_t rest = (pend >> 24) & 3;
        if (b < ((pend >> 8) & 0xFF) || b > (pend & 0xFF)) return T_DEAD;
        return state_intern(m, a, a->state_set[s],
                            rest == 1 ? 0 : PEND_UNIFORM | (rest - 1) << 24 | 0x80u << 8 | 0xBFu);
    }
    uint32_t held = pend >> 24; // bytes of a partial character already taken
    unsigned lead = held ? (pend & 0xFF) : b, lo, hi;
    int len = utf8_len(lead, &lo, &hi);
    if (len == 0) return T_DEAD;
    if (held) { // b must continue the character
        if (held >= 2) lo = 0x80, hi = 0xBF;
        if (b < lo || b > hi) return T_DEAD;
    }
    uint32_t have = held + 1; // bytes including b
    uint32_t value = lead & (len == 1 ? 0x7F : len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07);
    for (uint32_t i = 1; i < have; i++) {
        unsigned c = i < held ? (pend >> (8 * i)) & 0xFF : b;
        value = (value << 6) | (c & 0x3F);
    }
    uint32_t set = a->state_set[s];
    if ((int)have == len) { // a whole character
        uint32_t next = advance(m, a, set, value);
        if (next == FULL) return FULL;
        if (next == NO_SET) return T_DEAD;
        return state_intern(m, a, next, 0);
    }
    // still partial: the code points it may become, [cp_lo, cp_hi]
    uint32_t rest = 6 * ((uint32_t)len - have);
    uint32_t cp_lo = value << rest, cp_hi = cp_lo | ((1u << rest) - 1);
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp_lo < min_cp[len]) cp_lo = min_cp[len];
    if (cp_hi > GRAMMAR_MAX_CP) cp_hi = GRAMMAR_MAX_CP;
    if (len == 3 && cp_hi >= 0xD800 && cp_lo <= 0xDFFF) cp_hi = 0xD7FF; // only after 0xED
    const uint32_t *st = a->set_data + a->set_off[set];
    uint32_t n = a->set_len[set];
    bool meets = false, uniform = true;
    for (uint32_t i = 0; i < n; i++) {
        if (st[i] == NIL) continue;
        uint32_t cs = GE_VAL(g->elems[a->node_pos[st[i]]]);
        if (grammar_set_meets(g, cs, cp_lo, cp_hi)) {
            meets = true;
            if (uniform && !grammar_set_covers(g, cs, cp_lo, cp_hi)) uniform = false;
        }
    }
    if (!meets) return T_DEAD;
    uint32_t more = (uint32_t)len - have; // bytes still to come
    if (uniform) {
        uint32_t next = advance(m, a, set, cp_lo);
        if (next == FULL) return FULL;
        if (next == NO_SET) return T_DEAD; // (cannot happen: some set covers cp_lo)
        unsigned nlo = held ? 0x80 : lo, nhi = held ? 0xBF : hi; // range of the next byte
        return state_intern(m, a, next, PEND_UNIFORM | more << 24 | nlo << 8 | nhi);
    }
    uint32_t np = (have << 24) | (held ? pend & 0xFFFFFF : 0) | ((uint32_t)b << (8 * held));
    return state_intern(m, a, set, np);
}

/* The transition (s, b): from the table, or computed and stored. */
static inline uint32_t transition(nuri_grammar_matcher *m, uint32_t s, unsigned b)
{
    uint16_t t = m->next[(size_t)s * 256 + b];
    if (t != T_UNKNOWN) return t;
    uint32_t r = transition_compute(m, s, b);
    if (r != FULL) m->next[(size_t)s * 256 + b] = (uint16_t)r;
    return r;
}

/* ---- collection ---- */

/* The copy of old node n in the new arena (its whole chain is copied as needed). */
static uint32_t copy_node(nuri_grammar_matcher *m, const arena *from, arena *to, uint32_t n)
{
    uint32_t depth = 0;
    uint32_t x = n;
    while (x != NIL && m->remap_at[x] != m->n_collect) { // the part of the chain not copied yet
        m->work[depth++] = x;
        x = from->node_parent[x];
    }
    uint32_t parent = x == NIL ? NIL : m->remap[x];
    while (depth > 0) {
        uint32_t y = m->work[--depth];
        parent = node_intern(m, to, from->node_pos[y], parent);
        NURI_ASSERT(parent != FULL); // a subset of an arena of the same size always fits
        m->remap[y] = parent;
        m->remap_at[y] = m->n_collect;
    }
    return parent;
}

/* Moves the states roots[0..n) into the other arena and drops everything else (transitions, masks,
 * the start state). roots[] gets the new ids. */
static void collect(nuri_grammar_matcher *m, uint32_t *roots, uint32_t n)
{
    arena *from = &m->ar[m->cur_ar], *to = &m->ar[1 - m->cur_ar];
    arena_clear(m, to);
    m->stats.flushes++;
    if (++m->n_collect == 0) {
        memset(m->remap_at, 0, sizeof *m->remap_at * m->cap_nodes);
        m->n_collect = 1;
    }
    m->cur_ar = 1 - m->cur_ar;
    for (uint32_t i = 0; i < m->n_masks; i++) {
        m->mask_state[i] = FULL;
        m->mask_used[i] = 0;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint32_t set = from->state_set[roots[i]];
        const uint32_t *st = from->set_data + from->set_off[set];
        uint32_t len = from->set_len[set];
        for (uint32_t k = 0; k < len; k++) m->out[k] = copy_node(m, from, to, st[k]);
        qsort(m->out, len, sizeof *m->out, cmp_u32);
        uint32_t ns = set_intern(m, to, m->out, len);
        NURI_ASSERT(ns != FULL);
        roots[i] = state_intern(m, to, ns, from->state_pend[roots[i]]);
        NURI_ASSERT(roots[i] != FULL);
    }
    m->start = FULL;
}

/* The transition (s, b) for a caller holding the states roots[0..n) (s among them, at index
 * si): on a full arena, collects and retries once. Returns a state, T_DEAD, or FULL (with the
 * error set) if the step does not fit even in an empty arena. */
static uint32_t step(nuri_grammar_matcher *m, uint32_t *roots, uint32_t n, uint32_t si, unsigned b)
{
    uint32_t r = transition(m, roots[si], b);
    if (r != FULL) return r;
    collect(m, roots, n);
    r = transition(m, roots[si], b);
    if (r == FULL)
        nuri_error(NURI_ERR_LIMIT,
                   "grammar: one step needs more than the matcher's %u stack nodes / %u states "
                   "(the grammar is too ambiguous here)",
                   m->cap_nodes, m->cap_states);
    return r;
}

/* ---- lifecycle ---- */

void nuri_grammar_matcher_free(nuri_grammar_matcher *m)
{
    if (!m) return;
    arena_free(&m->ar[0]);
    arena_free(&m->ar[1]);
    free(m->next);
    free(m->mask_of);
    free(m->plain_loop);
    free(m->work);
    free(m->out);
    free(m->stamp);
    free(m->remap);
    free(m->remap_at);
    free(m->walk);
    free(m->masks);
    free(m->mask_state);
    free(m->mask_used);
    nuri_grammar_free(m->g);
    free(m);
}

nuri_status nuri_grammar_matcher_new(nuri_grammar *g, const nuri_token_trie *tokens,
                                     const nuri_grammar_matcher_params *params,
                                     nuri_grammar_matcher **out)
{
    *out = NULL;
    if (!g) return nuri_error(NURI_ERR_INVALID_ARG, "grammar matcher: no grammar");
    nuri_grammar_matcher_params p = {0};
    if (params) p = *params;
    if (p.max_stacks == 0) p.max_stacks = 32768;
    if (p.max_states == 0) p.max_states = 1024;
    if (p.n_masks == 0) p.n_masks = 8;
    if (p.max_stacks < 64 || p.max_stacks > (1u << 24) || p.max_states < 16 ||
        p.max_states > MAX_STATES_LIMIT || p.n_masks > 1024)
        return nuri_error(NURI_ERR_INVALID_ARG,
                          "grammar matcher: max_stacks must be in [64, 2^24], max_states in "
                          "[16, %u], n_masks at most 1024",
                          MAX_STATES_LIMIT);
    // a trie walk holds the state at every depth of its path: room for all of them and more
    if (tokens && p.max_states < tokens->max_depth + 64) p.max_states = tokens->max_depth + 64;
    if (p.max_states > MAX_STATES_LIMIT)
        return nuri_error(NURI_ERR_LIMIT, "grammar matcher: tokens of %u bytes are too long",
                          tokens->max_depth);
    nuri_grammar_matcher *m = calloc(1, sizeof *m);
    if (!m) return nuri_error(NURI_ERR_NOMEM, "grammar matcher: out of memory");
    m->g = nuri_grammar_ref(g);
    m->t = tokens;
    m->cap_nodes = p.max_stacks;
    m->cap_set_data = 4 * p.max_stacks;
    m->cap_states = p.max_states;
    m->node_mask = pow2_at_least(2 * m->cap_nodes) - 1;
    m->set_mask = pow2_at_least(2 * m->cap_states) - 1;
    m->state_mask = pow2_at_least(2 * m->cap_states) - 1;
    bool ok = arena_alloc(m, &m->ar[0]) && arena_alloc(m, &m->ar[1]);
    m->next = malloc(sizeof *m->next * (size_t)m->cap_states * 256);
    m->mask_of = malloc(sizeof *m->mask_of * m->cap_states);
    m->plain_loop = malloc(m->cap_states);
    m->work = malloc(sizeof *m->work * m->cap_nodes);
    m->out = malloc(sizeof *m->out * m->cap_nodes);
    m->stamp = calloc(m->cap_nodes, sizeof *m->stamp);
    m->remap = malloc(sizeof *m->remap * m->cap_nodes);
    m->remap_at = calloc(m->cap_nodes, sizeof *m->remap_at);
    ok = ok && m->next && m->mask_of && m->plain_loop && m->work && m->out && m->stamp &&
         m->remap && m->remap_at;
    if (ok && tokens) {
        m->n_masks = p.n_masks;
        m->mask_words = ((uint32_t)tokens->n_vocab + 31) / 32;
        m->walk = malloc(sizeof *m->walk * ((size_t)tokens->max_depth + 1));
        m->masks = malloc(sizeof *m->masks * (size_t)m->n_masks * m->mask_words);
        m->mask_state = malloc(sizeof *m->mask_state * m->n_masks);
        m->mask_used = calloc(m->n_masks, sizeof *m->mask_used);
        ok = m->walk && m->masks && m->mask_state && m->mask_used;
        for (uint32_t i = 0; ok && i < m->n_masks; i++) m->mask_state[i] = FULL;
    }
    if (!ok) {
        nuri_grammar_matcher_free(m);
        return nuri_error(NURI_ERR_NOMEM, "grammar matcher: out of memory");
    }
    arena_clear(m, &m->ar[0]);
    m->start = start_state(m);
    if (m->start == FULL) {
        nuri_grammar_matcher_free(m);
        return nuri_error(NURI_ERR_LIMIT,
                          "grammar matcher: the grammar's start needs more than %u stack nodes",
                          p.max_stacks);
    }
    m->cur = m->start;
    *out = m;
    return NURI_OK;
}

void nuri_grammar_matcher_reset(nuri_grammar_matcher *m)
{
    if (m->start == FULL) m->start = start_state(m);
    if (m->start == FULL) { // no room beside what is cached: start over in an empty arena
        collect(m, NULL, 0);
        m->start = start_state(m);
        NURI_ASSERT(m->start != FULL); // it fitted at creation
    }
    m->cur = m->start;
}

/* ---- matching ---- */

/* Walks bytes from the current state; moves there if commit and all of them are taken. */
static nuri_status feed(nuri_grammar_matcher *m, const char *bytes, size_t len, bool commit)
{
    uint32_t roots[2] = {m->cur, m->cur}; // [0]: the state before, kept if refused; [1]: walking
    for (size_t i = 0; i < len; i++) {
        uint32_t r = step(m, roots, 2, 1, (unsigned char)bytes[i]);
        if (r == FULL) {
            m->cur = roots[0];
            return NURI_ERR_LIMIT;
        }
        if (r == T_DEAD) {
            m->cur = roots[0];
            return nuri_error(NURI_ERR_INVALID_ARG,
                              "grammar: the text is refused at byte %zu (0x%02X)", i,
                              (unsigned char)bytes[i]);
        }
        roots[1] = r;
    }
    m->cur = commit ? roots[1] : roots[0];
    return NURI_OK;
}

nuri_status nuri_grammar_matcher_accept(nuri_grammar_matcher *m, const char *bytes, size_t len)
{
    return feed(m, bytes, len, true);
}

nuri_status nuri_grammar_matcher_check(nuri_grammar_matcher *m, const char *bytes, size_t len)
{
    return feed(m, bytes, len, false);
}

bool nuri_grammar_matcher_can_end(const nuri_grammar_matcher *m)
{
    return m->ar[m->cur_ar].state_flags[m->cur] & F_CAN_END;
}

bool nuri_grammar_matcher_can_continue(const nuri_grammar_matcher *m)
{
    return m->ar[m->cur_ar].state_flags[m->cur] & F_CAN_CONTINUE;
}

nuri_status nuri_grammar_matcher_accept_token(nuri_grammar_matcher *m, int32_t token)
{
    const nuri_token_trie *t = m->t;
    if (!t) return nuri_error(NURI_ERR_INVALID_ARG, "grammar matcher: no vocabulary");
    if (token < 0 || token >= t->n_vocab)
        return nuri_error(NURI_ERR_INVALID_ARG, "grammar: token %d is outside the vocabulary",
                          token);
    if (t->is_end[token]) {
        if (nuri_grammar_matcher_can_end(m)) return NURI_OK;
        return nuri_error(NURI_ERR_INVALID_ARG,
                          "grammar: end-of-generation token %d before the grammar is complete",
                          token);
    }
    if (t->text_len[token] == 0)
        return nuri_error(NURI_ERR_INVALID_ARG, "grammar: token %d has no text", token);
    return nuri_grammar_matcher_accept(m, t->text + t->text_off[token], t->text_len[token]);
}

/* ---- the filter ---- */

/* Whether every plain byte leads from walk[si] back to it (computed once per state). Returns 1
 * yes, 2 no, or 0 with the error set when a step does not fit (see step()). The walk's states
 * may be renumbered by a collection on the way. */
static int plain_loop(nuri_grammar_matcher *m, uint32_t *walk, uint32_t d, uint32_t si)
{
    uint8_t known = m->plain_loop[walk[si]];
    if (known) return known;
    int yes = 1;
    for (unsigned b = 0x20; b < 0x7F && yes == 1; b++) {
        if (!trie_plain_byte(b)) continue;
        uint32_t r = step(m, walk, d, si, b);
        if (r == FULL) return 0;
        if (r != walk[si]) yes = 2;
    }
    m->plain_loop[walk[si]] = (uint8_t)yes;
    return yes;
}

nuri_status nuri_grammar_matcher_mask(nuri_grammar_matcher *m, const uint32_t **mask)
{
    const nuri_token_trie *t = m->t;
    *mask = NULL;
    if (!t) return nuri_error(NURI_ERR_INVALID_ARG, "grammar matcher: no vocabulary");
    m->stats.masks++;
    m->clock++;
    int16_t have = m->mask_of[m->cur];
    if (have >= 0) {
        m->stats.mask_hits++;
        m->mask_used[have] = m->clock;
        *mask = m->masks + (size_t)have * m->mask_words;
        return NURI_OK;
    }
    uint32_t slot = 0; // least recently used
    for (uint32_t i = 1; i < m->n_masks; i++)
        if (m->mask_used[i] < m->mask_used[slot]) slot = i;
    if (m->mask_state[slot] != FULL) m->mask_of[m->mask_state[slot]] = -1;
    m->mask_state[slot] = FULL;
    m->mask_used[slot] = m->clock;
    uint32_t *bits = m->masks + (size_t)slot * m->mask_words;
    memset(bits, 0, sizeof *bits * m->mask_words);

    const uint8_t *byte = t->byte;
    const uint16_t *depth = t->depth;
    const uint32_t *skip = t->skip, *tok_first = t->tok_first;
    const int32_t *tok_ids = t->tok_ids;
    uint32_t *walk = m->walk;
    walk[0] = m->cur;
    uint32_t n_nodes = t->n_nodes, walked = 0;
    for (uint32_t i = 1; i < n_nodes;) {
        uint32_t d = depth[i];
        uint32_t s = walk[d - 1];
        uint32_t r = m->next[(size_t)s * 256 + byte[i]];
        walked++;
        if (r == T_UNKNOWN) {
            r = step(m, walk, d, d - 1, byte[i]); // may move walk[0..d) to a new arena
            if (r == FULL) {
                m->cur = walk[0];
                return NURI_ERR_LIMIT;
            }
            s = walk[d - 1]; // (renumbered if the tables were collected)
        }
        if (r == T_DEAD) {
            i = skip[i];
            continue;
        }
        if (r == s && t->plain[i] && tok_first[skip[i]] - tok_first[i] > 1) {
            int loop = plain_loop(m, walk, d, d - 1);
            if (loop == 0) {
                m->cur = walk[0];
                return NURI_ERR_LIMIT;
            }
            // its steps may have collected the tables: r (== s) renumbered with walk[]
            r = s = walk[d - 1];
            if (loop == 1) { // the whole subtree stays on this state: all of its tokens pass
                for (uint32_t k = tok_first[i]; k < tok_first[skip[i]]; k++) {
                    uint32_t id = (uint32_t)tok_ids[k];
                    bits[id >> 5] |= 1u << (id & 31);
                }
                i = skip[i];
                continue;
            }
        }
        walk[d] = r;
        for (uint32_t k = tok_first[i]; k < tok_first[i + 1]; k++) {
            uint32_t id = (uint32_t)tok_ids[k];
            bits[id >> 5] |= 1u << (id & 31);
        }
        i++;
    }
    m->cur = walk[0]; // (renumbered if the tables were collected)
    m->stats.nodes_walked += walked;
    if (nuri_grammar_matcher_can_end(m))
        for (int32_t k = 0; k < t->n_end; k++) {
            uint32_t id = (uint32_t)t->end_ids[k];
            bits[id >> 5] |= 1u << (id & 31);
        }
    // a collection during the walk emptied every slot; this one is still ours
    m->mask_state[slot] = m->cur;
    m->mask_used[slot] = m->clock;
    m->mask_of[m->cur] = (int16_t)slot;
    *mask = bits;
    return NURI_OK;
}

void nuri_grammar_matcher_get_stats(const nuri_grammar_matcher *m, nuri_grammar_matcher_stats *out)
{
    *out = m->stats;
    out->states = m->ar[m->cur_ar].n_states;
    out->stacks = m->ar[m->cur_ar].n_nodes;
}
