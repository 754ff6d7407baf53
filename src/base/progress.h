/*
 * progress.h: how library code reports the progress of a long step (repacking weights, writing a
 * model, quantizing) to whoever shows it. The library only calls the function; the CLI draws it
 * (src/cli/progress.h), the server and the tests pass none.
 */
#ifndef NURI_BASE_PROGRESS_H
#define NURI_BASE_PROGRESS_H

#include <stdint.h>

/* what: the step, in words ("repacking the weights"); done of total: how far, in units of the
 * step (bytes, tensors); done == total ends the step. Called from the thread doing the work. */
typedef void (*nuri_work_progress_fn)(void *ud, const char *what, uint64_t done, uint64_t total);

#endif
