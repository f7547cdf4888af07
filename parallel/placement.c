/* parallel/placement.c — a GPU per rank (contract in placement.h). */
#include "parallel/placement.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

loom_status loom_place_pick(const loom_place_rank *me, int world_rank, int *ordinal) {
    *ordinal = -1;
    if (me->n_gpus < 1)
        return loom_error(LOOM_ERR_UNSUPPORTED, "rank %d (host %s) sees no GPU for --device cuda", world_rank, me->host);
    if (me->n_gpus == 1) {
        *ordinal = 0;
        return NULL;
    }
    if (me->local_rank >= me->n_gpus)
        return loom_error(LOOM_ERR_INVALID,
                          "rank %d is local rank %d on host %s, which has %d GPUs: start at most %d ranks per node, or "
                          "give each rank its own GPU with CUDA_VISIBLE_DEVICES",
                          world_rank, me->local_rank, me->host, me->n_gpus, me->n_gpus);
    *ordinal = me->local_rank;
    return NULL;
}

loom_status loom_place_check(const loom_place_rank *all, int n, int me, bool allow_share) {
    const loom_place_rank *m = &all[me];
    if (m->ordinal < 0) return NULL; /* its own pick failed and says why */
    for (int r = 0; r < n; r++) {
        if (r == me || all[r].ordinal < 0) continue;
        if (strcmp(all[r].host, m->host) != 0 || strcmp(all[r].uuid, m->uuid) != 0) continue;
        if (allow_share) return NULL;
        return loom_error(LOOM_ERR_INVALID,
                          "ranks %d and %d would share GPU %s on host %s; give each rank its own GPU "
                          "(CUDA_VISIBLE_DEVICES, fewer ranks per node) or set LOOM_SHARE_GPU=1 to allow it",
                          me < r ? me : r, me < r ? r : me, m->uuid, m->host);
    }
    return NULL;
}

loom_status loom_place_devices(MPI_Comm world, bool want, int *ordinal, loom_gpu_info *info) {
    *ordinal = -1;
    memset(info, 0, sizeof *info);
    int rank, n;
    MPI_Comm_rank(world, &rank);
    MPI_Comm_size(world, &n);
    MPI_Comm node;
    MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node);
    loom_place_rank me;
    memset(&me, 0, sizeof me);
    MPI_Comm_rank(node, &me.local_rank);
    MPI_Comm_free(&node);
    char name[MPI_MAX_PROCESSOR_NAME];
    int len = 0;
    MPI_Get_processor_name(name, &len);
    name[len < MPI_MAX_PROCESSOR_NAME ? len : MPI_MAX_PROCESSOR_NAME - 1] = '\0';
    memcpy(me.host, name, strnlen(name, sizeof me.host - 1)); /* me is zeroed: stays terminated */
    me.n_gpus = want ? loom_cuda_device_count(NULL) : 0;
    me.ordinal = -1;
    loom_status st = want ? loom_place_pick(&me, rank, ordinal) : NULL;
    if (!st && want) st = loom_cuda_device_info(*ordinal, info);
    if (!st && want) {
        me.ordinal = *ordinal;
        snprintf(me.uuid, sizeof me.uuid, "%s", info->uuid);
    }
    loom_place_rank *all = malloc(sizeof *all * (size_t)n);
    if (!all) {
        loom_status_free(st);
        return loom_error(LOOM_ERR_NOMEM, "out of memory placing ranks on GPUs");
    }
    MPI_Allgather(&me, (int)sizeof me, MPI_BYTE, all, (int)sizeof me, MPI_BYTE, world);
    const char *share = getenv("LOOM_SHARE_GPU");
    const bool allow = share && !strcmp(share, "1");
    if (!st) st = loom_place_check(all, n, rank, allow);
    if (!st && allow)
        for (int r = 0; r < n; r++)
            if (r != rank && all[r].ordinal >= 0 && !strcmp(all[r].host, me.host) && !strcmp(all[r].uuid, me.uuid)) {
                fprintf(stderr, "loom: rank %d shares GPU %s with rank %d (LOOM_SHARE_GPU=1)\n", rank, me.uuid, r);
                break;
            }
    free(all);
    return st;
}
