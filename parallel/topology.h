/*
 * parallel/topology.h — where one rank sits in the cluster.
 *
 * Filled by the cluster bring-up (cluster.h) from the shard plan; borrowed
 * by the engine and its parts. World rank 0 is the coordinator: it runs the
 * scheduler and is also (stage 0, TP rank 0). A NULL topology, wherever one
 * is accepted, means one rank holding the whole model.
 */
#ifndef LOOM_TOPOLOGY_H
#define LOOM_TOPOLOGY_H

#include "parallel/comm.h"
#include "runtime/model.h"

typedef struct {
    int world_rank, world_size;
    int stage, n_stages;
    int tp_rank, tp_size;
    loom_comm *world;       /* point-to-point between stages; NULL when world_size == 1 */
    loom_comm *tp_group;    /* this stage's TP group; NULL when tp_size == 1 */
    int prev, next;         /* world ranks of this TP rank at stage-1 / stage+1; -1 at the ends */
    int last_leader;        /* world rank of (last stage, TP rank 0): samples and answers rank 0 */
    loom_shard shard;       /* what this rank holds */
} loom_topology;

/* One rank holding the whole model of cfg. */
loom_topology loom_topology_single(const loom_model_config *cfg);

#endif
