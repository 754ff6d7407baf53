/*
 * nuri.h: the public C API of libnuri.
 *
 * Handles are opaque. Calls that can fail return a nuri_status; results come back through out
 * parameters, and every function that returns a pointer says who frees it. On failure,
 * nuri_last_error() holds a message for the user (thread-local, valid until the next failing call
 * in the same thread).
 */
#ifndef NURI_H
#define NURI_H

#ifdef __cplusplus
extern "C" {
#endif

#define NURI_VERSION "0.1.0"

typedef enum nuri_status {
    NURI_OK = 0,
    NURI_ERR_INVALID_ARG, // the caller passed something wrong
    NURI_ERR_IO,          // the operating system refused (open, read, mmap)
    NURI_ERR_NOMEM,       // an allocation failed
    NURI_ERR_FORMAT,      // malformed input: a corrupt file, bad text, bad request
    NURI_ERR_UNSUPPORTED, // well-formed, but nuri does not run it (an architecture, a type)
    NURI_ERR_LIMIT,       // over an explicit limit (context length, sizes)
    NURI_ERR_NOT_FOUND,   // a key, tensor or file that is not there
    NURI_ERR_UNAVAILABLE, // a service nuri depends on (a database) cannot be reached now; retry
} nuri_status;

/* A short English name of a status ("malformed input"). Static storage. */
const char *nuri_status_name(nuri_status s);

/* The message of the last failure in this thread. Borrowed; valid until the next failure. */
const char *nuri_last_error(void);

#ifdef __cplusplus
}
#endif
#endif
