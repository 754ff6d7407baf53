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

#endif
