/*
 * hub_fuzz_one.h: one fuzz iteration for what a hub sends back and what a user types as a model
 * name (src/hub/hub_parse.h, src/hub/hub_ref.h), shared by the libFuzzer target (fuzz_hub.c) and
 * the corpus replay test (tests/test_hub_fuzz_replay.c).
 *
 * Input: one byte selecting the mode, then the bytes. Mode 0 (byte % 3): a tree listing page,
 * parsed, then every way of choosing from it (the default, a quant taken from each file's name,
 * each file by name); every path kept must be safe. Mode 1: header lines separated by '\n', fed
 * to hub_head_line; the fields must stay NUL-terminated within their arrays. Mode 2: the text as a
 * model name (hub_ref_parse), a quant (hub_quant_match, hub_quant_of) and an etag
 * (hub_etag_sha256). Returns NURI_OK, or the status of the first parse that refused its input.
 */
#ifndef NURI_FUZZ_HUB_FUZZ_ONE_H
#define NURI_FUZZ_HUB_FUZZ_ONE_H

#include "hub/hub_parse.h"
#include "hub/hub_ref.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void hub_fuzz_pick(const hub_ref *r, const hub_file_list *l)
{
    size_t *idx, n_idx;
    if (hub_pick(r, l->f, l->n, &idx, &n_idx) != NURI_OK) return;
    if (n_idx == 0) abort();
    for (size_t i = 0; i < n_idx; i++)
        if (idx[i] >= l->n) abort();
    free(idx);
}

static nuri_status hub_fuzz_one(const uint8_t *data, size_t size)
{
    if (size == 0) return NURI_OK;
    int mode = data[0] % 3;
    const char *text = (const char *)data + 1;
    size_t n = size - 1;
    char *s = malloc(n + 1);
    if (!s) abort();
    memcpy(s, text, n);
    s[n] = 0;
    nuri_status st = NURI_OK;
    if (mode == 0) {
        hub_file_list l = {0};
        st = hub_tree_parse(text, n, "fuzz", &l);
        if (st == NURI_OK) {
            hub_ref r = {.org = "o", .repo = "r"};
            hub_fuzz_pick(&r, &l);
            for (size_t i = 0; i < l.n && i < 64; i++) {
                if (!hub_path_safe(l.f[i].path)) abort();
                memset(r.quant, 0, sizeof r.quant);
                if (hub_quant_of(l.f[i].path, r.quant, sizeof r.quant)) hub_fuzz_pick(&r, &l);
                r.quant[0] = 0;
                snprintf(r.file, sizeof r.file, "%s", l.f[i].path);
                hub_fuzz_pick(&r, &l);
                r.file[0] = 0;
            }
        }
        hub_file_list_free(&l);
    } else if (mode == 1) {
        hub_head h;
        memset(&h, 0, sizeof h);
        for (size_t i = 0; i < n;) {
            size_t j = i;
            while (j < n && text[j] != '\n') j++;
            hub_head_line(&h, text + i, j - i + (j < n));
            i = j + 1;
        }
        if (memchr(h.error_code, 0, sizeof h.error_code) == NULL ||
            memchr(h.error_message, 0, sizeof h.error_message) == NULL ||
            memchr(h.linked_etag, 0, sizeof h.linked_etag) == NULL ||
            memchr(h.commit, 0, sizeof h.commit) == NULL ||
            memchr(h.next, 0, sizeof h.next) == NULL)
            abort();
        char sha[65];
        hub_etag_sha256(h.linked_etag, sha);
    } else {
        hub_ref r;
        st = hub_ref_parse(s, &r);
        if (st == NURI_OK && r.file[0] && !hub_path_safe(r.file)) abort();
        char q[64], sha[65];
        (void)hub_quant_of(s, q, sizeof q);
        (void)hub_quant_match(s, "Q4_K_M");
        if (hub_etag_sha256(s, sha) && !hub_is_hex64(sha)) abort();
        int part, count;
        size_t stem;
        if (hub_split_parse(s, &part, &count, &stem) && (stem > n || part > count)) abort();
    }
    free(s);
    return st;
}

#endif
