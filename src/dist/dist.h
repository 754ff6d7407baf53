/*
 * dist.h: the processes of a pipeline over MPI: this process's rank among them, and
 * point-to-point messages of bytes between ranks.
 *
 * A pipeline is started once per process, before any model is loaded (nuri_dist_init), and every
 * model loaded afterwards holds only its stage's layers (model.h). In the ordinary build (without
 * OpenMPI) there is only the one-process pipeline: nuri_dist_init(1) succeeds, anything larger is
 * an error that says how to build with MPI, and the messages are never called. `make MPI=1`
 * compiles this file's MPI half (mpicc, -DNURI_MPI) into build/nuri-mpi.
 *
 * Threads: messages may be sent from any one thread at a time (MPI_THREAD_SERIALIZED): the
 * forward pass calls them from whichever thread decodes, never from two at once.
 * Waiting polls politely (yields, then sleeps that grow), so a stage with nothing to do leaves its
 * core to others: OpenMPI's blocking calls would spin, and on an oversubscribed machine a stage
 * waiting at 100% CPU would slow the one it waits for.
 */
#ifndef NURI_DIST_H
#define NURI_DIST_H

#include "nuri.h"

#include <stddef.h>
#include <stdint.h>

/* Starts a pipeline of n_stages processes: with MPI, initialises it and checks that the job has
 * exactly n_stages ranks (NURI_ERR_INVALID_ARG naming both counts otherwise). Without MPI, n_stages
 * must be 1 (NURI_ERR_UNSUPPORTED otherwise). Call once. */
nuri_status nuri_dist_init(int32_t n_stages);
/* Ends it (MPI_Finalize). After the last message. */
void nuri_dist_finish(void);
/* Ends the whole job now, every rank (MPI_Abort), with exit status rc: for a stage that cannot
 * go on (its model failed to load), since its peers would otherwise wait for it forever. */
void nuri_dist_abort(int rc);

/* This process's stage and the number of stages: 0 and 1 unless a pipeline was started. */
int32_t nuri_dist_rank(void);
int32_t nuri_dist_size(void);

/* Message tags: along the pipeline (stage s to s + 1: commands, activations) and back to stage 0
 * (logits). Messages between two ranks with one tag arrive in the order they were sent. */
enum { NURI_DIST_TAG_FWD = 1, NURI_DIST_TAG_BACK = 2 };

/* An outstanding send or receive. */
typedef struct nuri_dist_req {
    _Alignas(8) unsigned char opaque[16];
    int active;
} nuri_dist_req;

/* Blocking: returns when buf may be reused (send) or holds the message (receive). bytes must be
 * below 2^31 (the forward pass sizes its messages so). A broken transport aborts the job: MPI's
 * default error handler, there is nothing a stage could do about it. */
void nuri_dist_send(int32_t dst, int tag, const void *buf, size_t bytes);
void nuri_dist_recv(int32_t src, int tag, void *buf, size_t bytes);
/* Non-blocking: buf must stay untouched until nuri_dist_wait(r) returns. */
void nuri_dist_isend(int32_t dst, int tag, const void *buf, size_t bytes, nuri_dist_req *r);
void nuri_dist_irecv(int32_t src, int tag, void *buf, size_t bytes, nuri_dist_req *r);
void nuri_dist_wait(nuri_dist_req *r); // no-op when r is not active

#endif
