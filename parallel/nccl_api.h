/*
 * parallel/nccl_api.h — the part of NCCL's C interface loom uses, as a
 * table of function pointers, and its loader.
 *
 * The NCCL backend (comm_nccl.h) calls NCCL only through this table. The
 * table is filled from libnccl.so.2 at run time (dlopen), so loom builds
 * without NCCL, runs where it is absent (ranks then use the staged backend,
 * comm_staged.h), and its NCCL backend is tested without a GPU: the test
 * suite fills the table with an emulation over MPI on host memory
 * (tests/support/nccl_mpi.c) that enforces NCCL's rules (grouped
 * point-to-point, collectives in the same order on every rank, messages
 * between a pair matched in issue order, no tags).
 *
 * The types below are NCCL's ABI (nccl.h 2.x): a 128-byte unique id passed
 * by value, an opaque communicator pointer, int-sized enums with these
 * values; tests/nccl_abi_check.c compares them with nccl.h where the
 * header is installed.
 */
#ifndef LOOM_NCCL_API_H
#define LOOM_NCCL_API_H

#include <stddef.h>

#include "runtime/status.h"

typedef struct {
    char internal[128];
} loom_nccl_id;

typedef struct loom_nccl_comm_s *loom_nccl_comm;

enum { /* ncclResult_t */
    LOOM_NCCL_SUCCESS = 0,
    LOOM_NCCL_UNHANDLED_CUDA_ERROR = 1,
    LOOM_NCCL_SYSTEM_ERROR = 2,
    LOOM_NCCL_INTERNAL_ERROR = 3,
    LOOM_NCCL_INVALID_ARGUMENT = 4,
    LOOM_NCCL_INVALID_USAGE = 5,
    LOOM_NCCL_REMOTE_ERROR = 6,
    LOOM_NCCL_IN_PROGRESS = 7,
};
enum { /* ncclDataType_t */
    LOOM_NCCL_INT8 = 0,
    LOOM_NCCL_UINT8 = 1,
    LOOM_NCCL_INT32 = 2,
    LOOM_NCCL_UINT32 = 3,
    LOOM_NCCL_INT64 = 4,
    LOOM_NCCL_UINT64 = 5,
    LOOM_NCCL_FLOAT16 = 6,
    LOOM_NCCL_FLOAT32 = 7,
    LOOM_NCCL_FLOAT64 = 8,
    LOOM_NCCL_BFLOAT16 = 9,
};
enum { LOOM_NCCL_SUM = 0, LOOM_NCCL_PROD = 1, LOOM_NCCL_MAX = 2, LOOM_NCCL_MIN = 3 }; /* ncclRedOp_t */

typedef struct loom_nccl_api {
    char name[128]; /* "libnccl.so.2 (NCCL 2.28.3)", "NCCL emulated over MPI" */
    int (*get_version)(int *version);
    int (*get_unique_id)(loom_nccl_id *id);
    int (*comm_init_rank)(loom_nccl_comm *comm, int nranks, loom_nccl_id id, int rank);
    int (*comm_destroy)(loom_nccl_comm comm);
    int (*comm_abort)(loom_nccl_comm comm);
    int (*comm_get_async_error)(loom_nccl_comm comm, int *async_error);
    const char *(*get_error_string)(int result);
    const char *(*get_last_error)(loom_nccl_comm comm); /* optional */
    int (*all_reduce)(const void *send, void *recv, size_t count, int dt, int op, loom_nccl_comm comm, void *stream);
    int (*broadcast)(const void *send, void *recv, size_t count, int dt, int root, loom_nccl_comm comm, void *stream);
    int (*all_gather)(const void *send, void *recv, size_t send_count, int dt, loom_nccl_comm comm, void *stream);
    int (*send)(const void *buf, size_t count, int dt, int peer, loom_nccl_comm comm, void *stream);
    int (*recv)(void *buf, size_t count, int dt, int peer, loom_nccl_comm comm, void *stream);
    int (*group_start)(void);
    int (*group_end)(void);
} loom_nccl_api;

/* Loads NCCL once per process: $LOOM_NCCL_LIB when set, else libnccl.so.2
 * from the loader's path. The table lives until exit. On failure the error
 * says what was tried and why it failed (and that the staged backend works
 * without NCCL). Thread-safe. */
loom_status loom_nccl_load(const loom_nccl_api **out) LOOM_MUST_USE;

#endif
