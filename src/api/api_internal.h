/*
 * api_internal.h: what the files of src/api/ share: reading a caller's parameter struct safely.
 *
 * src/api/ implements include/nuri.h on top of the modules; it holds no model logic of its own.
 * The public nuri_model is the model module's nuri_model itself (the header only names the
 * struct); the other handles are small wrappers defined in these files.
 */
#ifndef NURI_API_INTERNAL_H
#define NURI_API_INTERNAL_H

#include "nuri.h"

#include <stddef.h>

/*
 * Copies a caller's parameter struct `in` (its first field: size_t struct_size, as the caller
 * compiled it) over `ours` (already holding the defaults, `our_size` bytes). A shorter caller
 * struct (an older header) leaves the fields it lacks at their defaults; a longer one (a newer
 * header) is accepted only when every byte past ours is zero, since those are settings this
 * library does not have. `what` names the struct in the message. in == NULL: defaults.
 */
nuri_status api_params_copy(void *ours, size_t our_size, const void *in, const char *what);

/* Fills a caller's struct of struct_size bytes with our defaults d (d_size bytes): the fields both
 * know get the defaults, fields past ours (a newer header) are zeroed, struct_size is set. */
void api_params_init(void *p, size_t struct_size, const void *d, size_t d_size);

/* The modules' objects behind two public handles (api_run.c), for the other files of src/api/:
 * the context's nuri_ctx, its model and its n_logits; the chain's nuri_sampler. A caller that
 * decodes behind the public context's back calls api_context_forget_rows after it, so that
 * nuri_context_logits answers NULL rather than rows of another decode. */
#include "model/model.h"
#include "sample/sampler.h"
nuri_ctx *api_context_ctx(nuri_context *c);
const nuri_model *api_context_model(const nuri_context *c);
int32_t api_context_n_logits(const nuri_context *c);
void api_context_forget_rows(nuri_context *c);
nuri_sampler *api_chain_sampler(nuri_sampler_chain *s);

#endif
