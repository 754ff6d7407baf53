/*
 * dist.c: the pipeline's processes (dist.h). Compiled twice: without NURI_MPI into libnuri (the
 * one-process pipeline only), and with it by mpicc into build/nuri-mpi, whose dist_mpi.o is linked
 * before libnuri.a and so replaces this file's plain object there.
 */
#include "dist/dist.h"
#include "base/status.h"

#include <limits.h>
#include <stdbool.h>

#ifdef NURI_MPI
#include <mpi.h>
#include <sched.h>
#include <time.h>
#endif

static int32_t g_rank = 0, g_size = 1;

int32_t nuri_dist_rank(void)
{
    return g_rank;
}

int32_t nuri_dist_size(void)
{
    return g_size;
}

#ifndef NURI_MPI

nuri_status nuri_dist_init(int32_t n_stages)
{
    if (n_stages != 1)
        return nuri_error(
            NURI_ERR_UNSUPPORTED,
            "--pp %d needs nuri built with OpenMPI (make MPI=1 builds build/nuri-mpi; "
            "run it as mpirun -np %d nuri-mpi ... --pp %d)",
            n_stages, n_stages, n_stages);
    return NURI_OK;
}

void nuri_dist_finish(void) {}

void nuri_dist_abort(int rc)
{
    (void)rc;
    NURI_ASSERT(!"nuri_dist_abort without MPI");
}

void nuri_dist_send(int32_t dst, int tag, const void *buf, size_t bytes)
{
    NURI_ASSERT(!"nuri_dist_send without MPI");
}

void nuri_dist_recv(int32_t src, int tag, void *buf, size_t bytes)
{
    NURI_ASSERT(!"nuri_dist_recv without MPI");
}

void nuri_dist_isend(int32_t dst, int tag, const void *buf, size_t bytes, nuri_dist_req *r)
{
    NURI_ASSERT(!"nuri_dist_isend without MPI");
}

void nuri_dist_irecv(int32_t src, int tag, void *buf, size_t bytes, nuri_dist_req *r)
{
    NURI_ASSERT(!"nuri_dist_irecv without MPI");
}

void nuri_dist_wait(nuri_dist_req *r)
{
    NURI_ASSERT(!r->active);
}

#else

_Static_assert(sizeof(MPI_Request) <= sizeof(((nuri_dist_req *)0)->opaque),
               "nuri_dist_req holds an MPI_Request");

static bool g_started;

nuri_status nuri_dist_init(int32_t n_stages)
{
    NURI_ASSERT(!g_started);
    int provided = 0;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS)
        return nuri_error(NURI_ERR_IO, "MPI_Init_thread failed");
    g_started = true;
    if (provided < MPI_THREAD_SERIALIZED)
        return nuri_error(NURI_ERR_UNSUPPORTED,
                          "this MPI library does not allow calls from several threads "
                          "(MPI_THREAD_SERIALIZED), which the server needs");
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size != n_stages)
        return nuri_error(NURI_ERR_INVALID_ARG,
                          "--pp %d, but the MPI job has %d process%s (mpirun -np %d ... --pp %d)",
                          n_stages, size, size == 1 ? "" : "es", n_stages, n_stages);
    g_rank = rank;
    g_size = size;
    return NURI_OK;
}

void nuri_dist_finish(void)
{
    if (g_started) MPI_Finalize();
    g_started = false;
}

void nuri_dist_abort(int rc)
{
    MPI_Abort(MPI_COMM_WORLD, rc);
}

static MPI_Request *req_of(nuri_dist_req *r)
{
    return (MPI_Request *)(void *)r->opaque;
}

void nuri_dist_isend(int32_t dst, int tag, const void *buf, size_t bytes, nuri_dist_req *r)
{
    NURI_ASSERT(bytes < (size_t)INT_MAX && !r->active);
    MPI_Isend(buf, (int)bytes, MPI_BYTE, dst, tag, MPI_COMM_WORLD, req_of(r));
    r->active = 1;
}

void nuri_dist_irecv(int32_t src, int tag, void *buf, size_t bytes, nuri_dist_req *r)
{
    NURI_ASSERT(bytes < (size_t)INT_MAX && !r->active);
    MPI_Irecv(buf, (int)bytes, MPI_BYTE, src, tag, MPI_COMM_WORLD, req_of(r));
    r->active = 1;
}

/* Polls: a few hundred yields (a message on its way arrives within microseconds), then sleeps
 * of 50 us for the first ~20 ms (a stage waiting for the next micro-batch answers within 50 us),
 * then of 1 ms (an idle server's stages wake 1000 times a second, not 20000). */
void nuri_dist_wait(nuri_dist_req *r)
{
    if (!r->active) return;
    for (long spins = 0;; spins++) {
        int done = 0;
        MPI_Test(req_of(r), &done, MPI_STATUS_IGNORE);
        if (done) break;
        if (spins < 200) {
            sched_yield();
        } else {
            struct timespec ts = {0, spins < 600 ? 50 * 1000 : 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    r->active = 0;
}

void nuri_dist_send(int32_t dst, int tag, const void *buf, size_t bytes)
{
    nuri_dist_req r = {0};
    nuri_dist_isend(dst, tag, buf, bytes, &r);
    nuri_dist_wait(&r);
}

void nuri_dist_recv(int32_t src, int tag, void *buf, size_t bytes)
{
    nuri_dist_req r = {0};
    nuri_dist_irecv(src, tag, buf, bytes, &r);
    nuri_dist_wait(&r);
}

#endif
