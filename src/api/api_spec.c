/*
 * api_spec.c: the speculative decoding part of include/nuri.h, over src/spec/speculate.h.
 */
#include "api/api_internal.h"
#include "base/status.h"
#include "spec/speculate.h"

#include <stdlib.h>

struct nuri_speculator {
    nuri_spec *spec;
    nuri_context *c; // borrowed
};

void nuri_speculate_params_init(nuri_speculate_params *p, size_t struct_size)
{
    if (!p || struct_size < sizeof(size_t)) return;
    nuri_speculate_params d = {.struct_size = sizeof d, .draft_max = 8};
    api_params_init(p, struct_size, &d, sizeof d);
}

nuri_status nuri_speculator_new(nuri_context *c, int32_t seq, nuri_sampler_chain *s,
                                const nuri_speculate_params *params, nuri_speculator **out)
{
    if (!out) return nuri_error(NURI_ERR_INVALID_ARG, "nuri_speculator_new: out is NULL");
    *out = NULL;
    if (!c || !s) return nuri_error(NURI_ERR_INVALID_ARG, "nuri_speculator_new: no context");
    nuri_speculate_params p;
    nuri_speculate_params_init(&p, sizeof p);
    nuri_status st = api_params_copy(&p, sizeof p, params, "nuri_speculate_params");
    if (st != NURI_OK) return st;
    if (seq < 0 || seq >= nuri_ctx_n_seq(api_context_ctx(c)))
        return nuri_error(NURI_ERR_INVALID_ARG, "nuri_speculator_new: no sequence %d", seq);
    if (p.draft_max >= 1 && api_context_n_logits(c) < p.draft_max + 1)
        return nuri_error(NURI_ERR_INVALID_ARG,
                          "nuri_speculator_new: the context keeps %d rows of logits; a draft of "
                          "%d needs %d (nuri_context_params.n_logits)",
                          api_context_n_logits(c), p.draft_max, p.draft_max + 1);
    nuri_spec_params sp = {.target = api_context_model(c),
                           .draft_max = p.draft_max,
                           .draft_min = p.draft_min,
                           .lookup = p.lookup,
                           .draft = p.draft,
                           .draft_threads = p.draft_threads,
                           .draft_greedy = p.draft_greedy,
                           .draft_p_min = p.draft_p_min};
    nuri_speculator *r = calloc(1, sizeof *r);
    if (!r) return nuri_error(NURI_ERR_NOMEM, "out of memory");
    r->c = c;
    st = nuri_spec_new(&sp, api_context_ctx(c), seq, api_chain_sampler(s), &r->spec);
    if (st != NURI_OK) {
        free(r);
        return st;
    }
    *out = r;
    return NURI_OK;
}

void nuri_speculator_free(nuri_speculator *sp)
{
    if (!sp) return;
    nuri_spec_free(sp->spec);
    free(sp);
}

nuri_status nuri_speculator_begin(nuri_speculator *sp, const int32_t *tokens, int32_t n)
{
    if (!tokens && n) return nuri_error(NURI_ERR_INVALID_ARG, "nuri_speculator_begin: no tokens");
    return nuri_spec_begin(sp->spec, tokens, n);
}

nuri_status nuri_speculator_next(nuri_speculator *sp, int32_t remaining, int32_t *token)
{
    api_context_forget_rows(sp->c); // its rows are the speculator's from here
    return nuri_spec_next(sp->spec, remaining, token);
}

int32_t nuri_speculator_end(nuri_speculator *sp)
{
    return nuri_spec_end(sp->spec, NULL);
}

void nuri_speculator_counts(const nuri_speculator *sp, int64_t *passes, int64_t *drafted,
                            int64_t *accepted)
{
    nuri_spec_counts k = nuri_spec_get_counts(sp->spec);
    if (passes) *passes = k.passes;
    if (drafted) *drafted = k.drafted;
    if (accepted) *accepted = k.accepted;
}
