/*
 * parallel/placement.h — which GPU each rank takes.
 *
 * Under mpirun, a rank's local rank is its index among the ranks of its
 * node (MPI_Comm_split_type(MPI_COMM_TYPE_SHARED), llm.c's way). A rank
 * that sees several GPUs takes the one of its local rank; a rank that sees
 * exactly one (CUDA_VISIBLE_DEVICES set per rank, Slurm's
 * --gpus-per-task) takes it. Then every rank's choice is gathered and two
 * ranks on one GPU (same host, same GPU UUID) are refused, the message
 * naming both ranks, the host and the GPU — unless LOOM_SHARE_GPU=1 allows
 * it (tests that run TP ranks on one GPU; each rank then warns once).
 *
 * The choice and the check are pure functions of the gathered records, so
 * tests/test_placement.c covers them without MPI or GPUs.
 */
#ifndef LOOM_PLACEMENT_H
#define LOOM_PLACEMENT_H

#include <mpi.h>
#include <stdbool.h>

#include "runtime/device.h"

typedef struct {
    char host[64];
    int local_rank;   /* among the ranks of its host */
    int n_gpus;       /* GPUs the rank sees */
    int ordinal;      /* the one it takes; -1: none */
    char uuid[48];    /* of that GPU */
} loom_place_rank;

/* The ordinal rank `world_rank` takes (see above); an error naming its
 * host, local rank and the GPUs it sees when it has none to take. */
loom_status loom_place_pick(const loom_place_rank *me, int world_rank, int *ordinal) LOOM_MUST_USE;

/* With every rank's record (n of them, this rank's at `me`): an error when
 * this rank's GPU is also another rank's (naming the lowest such rank),
 * unless allow_share. */
loom_status loom_place_check(const loom_place_rank *all, int n, int me, bool allow_share) LOOM_MUST_USE;

/* Collective over world: ranks that want a GPU pick one, every rank's
 * choice is gathered and checked; *ordinal and *info describe this rank's
 * GPU (-1 when it wants none). Every rank takes part even when its own
 * pick failed (the others are not left waiting); the caller agrees on the
 * outcome. */
loom_status loom_place_devices(MPI_Comm world, bool want, int *ordinal, loom_gpu_info *info) LOOM_MUST_USE;

#endif
