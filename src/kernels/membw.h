/*
 * membw.h: a memory read-bandwidth probe: how many bytes per second n threads can stream from a
 * buffer much larger than the last-level cache. It is the roof that decode speed is compared with
 * (tokens/s x bytes of weights per token / this = the fraction of the memory limit reached).
 */
#ifndef NURI_KERNELS_MEMBW_H
#define NURI_KERNELS_MEMBW_H

#include "nuri.h"

#include <stddef.h>

/* Streams `bytes` (rounded down to a multiple of 4 KiB, at least 64 MiB) with n_threads threads,
 * `reps` times after one warm-up pass, and stores the best pass in *gb_per_s (1e9 bytes/s).
 * NURI_ERR_NOMEM if the buffer cannot be had; NURI_ERR_INVALID_ARG for n_threads < 1 or reps < 1.
 */
nuri_status nuri_membw_measure(int n_threads, size_t bytes, int reps, double *gb_per_s);

#endif
