/*
 * pretok.c: BPE pre-tokenization: splitting text into words with the regexes that
 * tokenizer.ggml.pre names, the way llama.cpp does it.
 *
 * The regex lists are facts taken from each model family's tokenizer.json (as adapted by llama.cpp
 * for a regex engine without (?i:...)); each regex is applied in turn to every piece the previous
 * ones produced, and text that a regex does not match stays a piece of its own.
 *
 * llama.cpp does not run these regexes with full Unicode semantics, and parity means doing as it
 * does. A regex that uses \p{L}, \p{N}, \p{P}, \p{M} or \p{S} runs over a "collapsed" copy of the
 * text, one byte per code point: ASCII stays itself, White_Space becomes \v, and every other code
 * point becomes one byte for its class (0xD1 number, 0xD2 letter, 0xD3 punctuation, 0xD4 mark,
 * 0xD5 symbol, 0xD0 anything else); in the regex, \p{X} becomes a class of that byte plus the
 * ASCII members of X. So, e.g., every non-ASCII letter is both [^a-z] and [^A-Z]. A regex without
 * categories runs on the code points themselves, with non-ASCII White_Space replaced by \v (\s is
 * ASCII-only there). Both run on PCRE2 (JIT when available): the collapsed form in 8-bit mode,
 * the other in UTF mode; $ matches only at the very end, as in ECMAScript.
 *
 * Unknown pre-tokenizer names fall back to the "default" list (the caller warns).
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "base/status.h"
#include "tokenizer/tok_internal.h"
#include "tokenizer/unicode.h"

#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ============================== the regex lists ============================== */

#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define RE_CONTRACTIONS "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
#define RE_LLAMA3                                                                                  \
    RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"   \
                    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_QWEN2                                                                                   \
    RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"        \
                    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_UPPER "((?=[\\p{L}])([^a-z]))"
#define RE_LOWER "((?=[\\p{L}])([^A-Z]))"
#define RE_BLOOM                                                                                   \
    " ?[^(\\s|.,!?\xe2\x80\xa6\xe3\x80\x82\xef\xbc\x8c\xe3\x80\x81\xe0\xa5\xa4\xdb\x94\xd8\x8c)]+"

typedef struct pretok_def {
    const char *names; // '|'-separated tokenizer.ggml.pre values
    bool ignore_merges;
    int add_bos;
    bool no_bos;
    const char *regex[PRETOK_MAX_REGEX];
} pretok_def;

static const pretok_def defs[] = {
    {"default",
     false,
     -1,
     false,
     {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"}},
    {"llama3|llama-v3|llama-bpe|falcon3|falcon-h1|pixtral|midm-2.0|lfm2",
     true,
     1,
     false,
     {RE_LLAMA3}},
    {"dbrx|smaug-bpe", false, -1, false, {RE_LLAMA3}},
    {"glm4|chatglm-bpe", false, -1, true, {RE_LLAMA3}},
    {"deepseek-llm",
     false,
     -1,
     false,
     {"[\r\n]",
      "\\s?[A-Za-z\xc2\xb5\xc3\x80-\xc3\x96\xc3\x98-\xc3\xb6\xc3\xb8-\xc6\xba\xc6\xbc-\xc6\xbf\xc7"
      "\x84-\xca\x93\xca\x95-\xca\xaf\xcd\xb0-\xcd\xb3\xcd\xb6\xcd\xb7\xcd\xbb-\xcd\xbd\xcd\xbf\xce"
      "\x86\xce\x88-\xce\x8a\xce\x8c\xce\x8e-\xce\xa1\xce\xa3-\xcf\xb5\xcf\xb7-\xd2\x81\xd2\x8a-"
      "\xd4"
      "\xaf\xd4\xb1-\xd5\x96\xe1\x82\xa0-\xe1\x83\x85\xe1\x8e\xa0-\xe1\x8f\xb5\xe1\x8f\xb8-\xe1\x8f"
      "\xbd\xe1\xb2\x90-\xe1\xb2\xba\xe1\xb2\xbd-\xe1\xb2\xbf\xe1\xb4\x80-\xe1\xb4\xab\xe1\xb5\xab-"
      "\xe1\xb5\xb7\xe1\xb5\xb9-\xe1\xb6\x9a\xe1\xb8\x80-\xe1\xbc\x95\xe1\xbc\x98-\xe1\xbc\x9d\xe1"
      "\xbc\xa0-\xe1\xbd\x85\xe1\xbd\x88-\xe1\xbd\x8d\xe1\xbd\x90-\xe1\xbd\x97\xe1\xbd\x99\xe1\xbd"
      "\x9b\xe1\xbd\x9d\xe1\xbd\x9f-\xe1\xbd\xbd\xe1\xbe\x80-\xe1\xbe\xb4\xe1\xbe\xb6-\xe1\xbe\xbc"
      "\xe1\xbe\xbe\xe1\xbf\x82-\xe1\xbf\x84\xe1\xbf\x86-\xe1\xbf\x8c\xe1\xbf\x90-\xe1\xbf\x93\xe1"
      "\xbf\x96-\xe1\xbf\x9b\xe1\xbf\xa0-\xe1\xbf\xac\xe1\xbf\xb2-\xe1\xbf\xb4\xe1\xbf\xb6-\xe1\xbf"
      "\xbc\xe2\x84\x82\xe2\x84\x87\xe2\x84\x8a-\xe2\x84\x93\xe2\x84\x95\xe2\x84\x99-\xe2\x84\x9d"
      "\xe2\x84\xa4\xe2\x84\xa6\xe2\x84\xa8\xe2\x84\xaa-\xe2\x84\xad\xe2\x84\xaf-\xe2\x84\xb4\xe2"
      "\x84\xb9\xe2\x84\xbc-\xe2\x84\xbf\xe2\x85\x85-\xe2\x85\x89\xe2\x85\x8e\xe2\x86\x83\xe2\x86"
      "\x84\xe2\xb0\x80-\xe2\xb1\xbb\xe2\xb1\xbe-\xe2\xb3\xa4\xe2\xb3\xab-\xe2\xb3\xae\xe2\xb3\xb2"
      "\xe2\xb3\xb3\xea\x99\x80-\xea\x99\xad\xea\x9a\x80-\xea\x9a\x9b\xea\x9c\xa2-\xea\x9d\xaf\xea"
      "\x9d\xb1-\xea\x9e\x87\xea\x9e\x8b-\xea\x9e\x8e\xea\xad\xb0-\xea\xae\xbf\xef\xac\x80-\xef\xac"
      "\x86\xef\xac\x93-\xef\xac\x97\xef\xbc\xa1-\xef\xbc\xba\xef\xbd\x81-\xef\xbd\x9a\xf0\x90\x90"
      "\x80-\xf0\x90\x91\x8f\xf0\x90\x92\xb0-\xf0\x90\x93\x93\xf0\x90\x93\x98-\xf0\x90\x93\xbb\xf0"
      "\x90\xb2\x80-\xf0\x90\xb2\xb2\xf0\x90\xb3\x80-\xf0\x90\xb3\xb2\xf0\x91\xa2\xa0-\xf0\x91\xa3"
      "\x9f\xf0\x9e\xa4\x80-\xf0\x9e\xa5\x83]+",
      "\\s?[!-/:-~\xef\xbc\x81-\xef\xbc\x8f\xef\xbc\x9a-\xef\xbd\x9e\xe2\x80\x98-\xe2\x80\x9f\xe3"
      "\x80\x80-\xe3\x80\x82]+",
      "\\s+$", "[\xe4\xb8\x80-\xe9\xbe\xa5\xe0\xa0\x80-\xe4\xb8\x80\xea\xb0\x80-\xed\x9f\xbf]+",
      "\\p{N}+"}},
    {"deepseek-coder",
     false,
     -1,
     false,
     {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+",
      "[\xe4\xb8\x80-\xe9\xbe\xa5\xe0\xa0\x80-\xe4\xb8\x80\xea\xb0\x80-\xed\x9f\xbf]+", "\\p{N}"}},
    {"deepseek-v3|hunyuan-dense",
     false,
     -1,
     false,
     {"\\p{N}{1,3}",
      "[\xe4\xb8\x80-\xe9\xbe\xa5\xe3\x81\x80-\xe3\x82\x9f\xe3\x82\xa0-\xe3\x83\xbf]+",
      "[!\"#$%&'()*+,\\-./"
      ":;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]"
      "+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"}},
    {"falcon", false, -1, false, {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]"}},
    {"starcoder|refact|command-r|smollm|codeshell|exaone|minerva-7b",
     false,
     -1,
     false,
     {"\\p{N}", RE_GPT2}},
    {"gpt-2|phi-2|jina-es|jina-de|gigachat|jina-v2-es|jina-v2-de|a.x-4.0|mellum|exaone4|jina-v1-en|"
     "jina-v2-code|roberta-bpe|mpt|olmo|jais|trillion|granite-docling",
     false,
     -1,
     false,
     {RE_GPT2}},
    {"qwen2|deepseek-r1-qwen|kormo|megrez|stablelm2|hunyuan|grok-2", false, -1, false, {RE_QWEN2}},
    {"poro-chat|bloom|gpt3-finnish", false, -1, false, {RE_BLOOM}},
    {"viking", false, -1, false, {RE_BLOOM, "\\p{N}"}},
    {"tekken",
     true,
     1,
     false,
     {"[^\\r\\n\\p{L}\\p{N}]?" RE_UPPER "*" RE_LOWER "+|[^\\r\\n\\p{L}\\p{N}]?" RE_UPPER
      "+" RE_LOWER "*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
    {"gpt-4o|llama4|minimax-m2",
     false,
     -1,
     false,
     {"[^\\r\\n\\p{L}\\p{N}]?" RE_UPPER "*" RE_LOWER "+" RE_CONTRACTIONS
      "?|[^\\r\\n\\p{L}\\p{N}]?" RE_UPPER "+" RE_LOWER "*" RE_CONTRACTIONS
      "?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|"
      "\\s+(?!\\S)|\\s+"}},
    {"bailingmoe|bailingmoe2|llada-moe",
     false,
     -1,
     false,
     {"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
      "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+"}},
    {"seed-coder",
     false,
     -1,
     false,
     {RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+|"
                      "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
};

static bool name_in(const char *names, const char *pre)
{
    size_t n = strlen(pre);
    for (const char *p = names; *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && !memcmp(p, pre, n)) return true;
        if (!bar) break;
        p = bar + 1;
    }
    return false;
}

/* ============================== compiling ============================== */

static const char *const ucat_names = "NLPMS";
static const char ucat_byte[5] = {(char)0xD1, (char)0xD2, (char)0xD3, (char)0xD4, (char)0xD5};
static const char *const ucat_ascii[5] = {
    "\\x30-\\x39",                                                                       // 0-9
    "\\x41-\\x5A\\x61-\\x7A",                                                            // A-Za-z
    "\\x21-\\x23\\x25-\\x2A\\x2C-\\x2F\\x3A-\\x3B\\x3F-\\x40\\x5B-\\x5D\\x5F\\x7B\\x7D", // punct
    "",                                     // no ASCII marks
    "\\x24\\x2B\\x3C-\\x3E\\x5E\\x60\\x7C", // $+<=>^`|
};

static int ucat_index(const char *re, size_t i, size_t n)
{
    if (i + 4 < n && re[i] == '\\' && re[i + 1] == 'p' && re[i + 2] == '{' && re[i + 4] == '}') {
        const char *c = strchr(ucat_names, re[i + 3]);
        if (c && re[i + 3]) return (int)(c - ucat_names);
    }
    return -1;
}

static bool uses_categories(const char *re)
{
    size_t n = strlen(re);
    for (size_t i = 0; i < n; i++)
        if (ucat_index(re, i, n) >= 0) return true;
    return false;
}

/* Rewrites \p{X} as llama.cpp does for the collapsed text; the result uses \xHH escapes, which
 * PCRE2 reads as single bytes in non-UTF mode. */
static char *collapse_regex(const char *re)
{
    size_t n = strlen(re), cap = n * 8 + 64, k = 0;
    char *out = malloc(cap);
    if (!out) return NULL;
    bool inside = false;
    for (size_t i = 0; i < n; i++) {
        if (re[i] == '[' && (i == 0 || re[i - 1] != '\\')) {
            out[k++] = '[';
            inside = true;
            continue;
        }
        if (inside && re[i] == ']' && re[i - 1] != '\\') {
            out[k++] = ']';
            inside = false;
            continue;
        }
        int c = ucat_index(re, i, n);
        if (c >= 0) {
            k += (size_t)snprintf(out + k, cap - k, "%s\\x%02X%s%s", inside ? "" : "[",
                                  (unsigned char)ucat_byte[c], ucat_ascii[c], inside ? "" : "]");
            i += 4;
            continue;
        }
        out[k++] = re[i];
    }
    out[k] = 0;
    return out;
}

nuri_status pretok_init(pretok *p, const char *pre, bool *known, pretok_info *info)
{
    memset(p, 0, sizeof *p);
    const pretok_def *def = &defs[0];
    *known = false;
    for (size_t i = 0; i < sizeof defs / sizeof defs[0]; i++)
        if (name_in(defs[i].names, pre)) {
            def = &defs[i];
            *known = true;
            break;
        }
    snprintf(p->name, sizeof p->name, "%s", *known ? pre : "default");
    info->ignore_merges = def->ignore_merges;
    info->add_bos = def->add_bos;
    info->no_bos = def->no_bos;
    for (int i = 0; i < PRETOK_MAX_REGEX && def->regex[i]; i++) {
        const char *re = def->regex[i];
        bool collapsed = uses_categories(re);
        char *src = collapsed ? collapse_regex(re) : NULL;
        if (collapsed && !src) return nuri_error(NURI_ERR_NOMEM, "pre-tokenizer regex");
        int err;
        PCRE2_SIZE at;
        uint32_t opts = PCRE2_DOLLAR_ENDONLY | (collapsed ? 0 : PCRE2_UTF | PCRE2_UCP);
        pcre2_code *code = pcre2_compile((PCRE2_SPTR)(collapsed ? src : re), PCRE2_ZERO_TERMINATED,
                                         opts, &err, &at, NULL);
        free(src);
        if (!code) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(err, msg, sizeof msg);
            pretok_free(p);
            return nuri_error(NURI_ERR_UNSUPPORTED,
                              "pre-tokenizer '%s': regex %d does not compile at %zu: %s", pre, i,
                              (size_t)at, (const char *)msg);
        }
        pcre2_jit_compile(code, PCRE2_JIT_COMPLETE); // optional: the interpreter is the fallback
        p->code[i] = code;
        p->collapsed[i] = collapsed;
        p->any_collapsed |= collapsed;
        p->any_utf |= !collapsed;
        p->n_regex = i + 1;
    }
    return NURI_OK;
}

void pretok_free(pretok *p)
{
    for (int i = 0; i < p->n_regex; i++) pcre2_code_free(p->code[i]);
    p->n_regex = 0;
}

/* ============================== splitting ============================== */

static uint8_t collapse_cpt(uint32_t c)
{
    if (c < 128) return (uint8_t)c;
    switch (uni_class_of(c)) {
    case UNI_SPACE:
        return 0x0B;
    case UNI_NUMBER:
        return 0xD1;
    case UNI_LETTER:
        return 0xD2;
    case UNI_PUNCT:
        return 0xD3;
    case UNI_MARK:
        return 0xD4;
    case UNI_SYMBOL:
        return 0xD5;
    default:
        return 0xD0;
    }
}

static nuri_status match_ready(tok_scratch *s)
{
    if (!s->match_data) {
        s->match_data = pcre2_match_data_create(4, NULL);
        s->match_ctx = pcre2_match_context_create(NULL);
        if (!s->match_data || !s->match_ctx) return nuri_error(NURI_ERR_NOMEM, "regex match data");
        // a JIT stack big enough for long words; if it still runs out, the interpreter takes over
        s->jit_stack = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, NULL);
        if (s->jit_stack) pcre2_jit_stack_assign(s->match_ctx, NULL, s->jit_stack);
    }
    return NURI_OK;
}

/* One match of code in subj[0..len) at or after `from`. Returns 1 and the match, 0 if none. */
static int match_one(const pretok *p, int r, tok_scratch *s, const uint8_t *subj, size_t len,
                     size_t from, size_t *m0, size_t *m1, nuri_status *st)
{
    uint32_t opts = p->collapsed[r] ? 0 : PCRE2_NO_UTF_CHECK;
    int rc = pcre2_match(p->code[r], subj, len, from, opts, s->match_data, s->match_ctx);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
        rc = pcre2_match(p->code[r], subj, len, from, opts | PCRE2_NO_JIT, s->match_data,
                         s->match_ctx);
    if (rc == PCRE2_ERROR_NOMATCH) return 0;
    if (rc < 0) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(rc, msg, sizeof msg);
        *st = nuri_error(NURI_ERR_LIMIT, "pre-tokenizer '%s': regex %d failed: %s", p->name, r,
                         (const char *)msg);
        return -1;
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(s->match_data);
    *m0 = ov[0];
    *m1 = ov[1];
    return 1;
}

static bool push_seg(uint32_t **seg, size_t *cap, uint32_t *n, uint32_t start, uint32_t len)
{
    if (!tok_reserve((void **)seg, cap, (size_t)*n * 2 + 2, sizeof **seg)) return false;
    (*seg)[*n * 2] = start;
    (*seg)[*n * 2 + 1] = len;
    (*n)++;
    return true;
}

nuri_status pretok_split(const pretok *p, const uint32_t *cpts, uint32_t n, tok_scratch *s,
                         uint32_t **words, uint32_t *n_words)
{
    nuri_status st = match_ready(s);
    if (st) return st;
    if (p->any_collapsed) {
        if (!tok_reserve((void **)&s->collapsed, &s->cap_collapsed, (size_t)n + 1, 1))
            return nuri_error(NURI_ERR_NOMEM, "pre-tokenizer");
        for (uint32_t i = 0; i < n; i++) s->collapsed[i] = collapse_cpt(cpts[i]);
    }
    if (p->any_utf) {
        // UTF-8 subject: non-ASCII White_Space as \v; surrogates (which PCRE2 refuses and no regex
        // range contains) as U+FFFD; plus the code point index of every byte
        if (!tok_reserve((void **)&s->utf, &s->cap_utf, (size_t)n * 4 + 1, 1) ||
            !tok_reserve((void **)&s->utf_cpt, &s->cap_utf_cpt, (size_t)n * 4 + 1,
                         sizeof *s->utf_cpt) ||
            !tok_reserve((void **)&s->cpt_off, &s->cap_cpt_off, (size_t)n + 1, sizeof *s->cpt_off))
            return nuri_error(NURI_ERR_NOMEM, "pre-tokenizer");
        size_t k = 0;
        for (uint32_t i = 0; i < n; i++) {
            uint32_t c = cpts[i];
            if (c >= 0x80 && uni_class_of(c) == UNI_SPACE) c = 0x0B;
            if (c >= 0xD800 && c <= 0xDFFF) c = UNI_REPLACEMENT;
            s->cpt_off[i] = (uint32_t)k;
            size_t l = uni_encode(c, s->utf + k);
            for (size_t j = 0; j < l; j++) s->utf_cpt[k + j] = i;
            k += l;
        }
        s->cpt_off[n] = (uint32_t)k;
        s->utf_cpt[k] = n;
    }

    uint32_t n_a = 0, n_b = 0;
    if (n && !push_seg(&s->seg_a, &s->cap_seg_a, &n_a, 0, n))
        return nuri_error(NURI_ERR_NOMEM, "pre-tokenizer");
    for (int r = 0; r < p->n_regex; r++) {
        n_b = 0;
        for (uint32_t w = 0; w < n_a; w++) {
            uint32_t start = s->seg_a[w * 2], len = s->seg_a[w * 2 + 1];
            const uint8_t *subj;
            size_t subj_len;
            if (p->collapsed[r]) {
                subj = s->collapsed + start;
                subj_len = len;
            } else {
                subj = s->utf + s->cpt_off[start];
                subj_len = s->cpt_off[start + len] - s->cpt_off[start];
            }
            size_t pos = 0;    // in subject units
            uint32_t done = 0; // code points of this segment already emitted
            while (pos <= subj_len) {
                size_t m0, m1;
                int rc = match_one(p, r, s, subj, subj_len, pos, &m0, &m1, &st);
                if (rc < 0) return st;
                if (rc == 0) break;
                uint32_t c0, c1; // match in code points, relative to the segment
                if (p->collapsed[r]) {
                    c0 = (uint32_t)m0;
                    c1 = (uint32_t)m1;
                } else {
                    c0 = s->utf_cpt[s->cpt_off[start] + m0] - start;
                    c1 = s->utf_cpt[s->cpt_off[start] + m1] - start;
                }
                if (m1 == m0) { // an empty match splits nothing; step over one code point
                    if (m0 >= subj_len) break;
                    pos = p->collapsed[r] ? m0 + 1 : s->cpt_off[start + c0 + 1] - s->cpt_off[start];
                    continue;
                }
                if (c0 > done && !push_seg(&s->seg_b, &s->cap_seg_b, &n_b, start + done, c0 - done))
                    return nuri_error(NURI_ERR_NOMEM, "pre-tokenizer");
                if (!push_seg(&s->seg_b, &s->cap_seg_b, &n_b, start + c0, c1 - c0))
                    return nuri_error(NURI_ERR_NOMEM, "pre-tokenizer");
                done = c1;
                pos = m1;
            }
            if (done < len && !push_seg(&s->seg_b, &s->cap_seg_b, &n_b, start + done, len - done))
                return nuri_error(NURI_ERR_NOMEM, "pre-tokenizer");
        }
        // swap
        uint32_t *t = s->seg_a;
        s->seg_a = s->seg_b;
        s->seg_b = t;
        size_t tc = s->cap_seg_a;
        s->cap_seg_a = s->cap_seg_b;
        s->cap_seg_b = tc;
        n_a = n_b;
    }
    *words = s->seg_a;
    *n_words = n_a;
    return NURI_OK;
}
