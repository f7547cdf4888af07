/*
 * parallel/cluster.h — one MPI job becomes one loom cluster.
 *
 * loom_cluster_create(), called by every rank with its own open copy of the
 * model, in order:
 *   1. gathers host names and the hash of every rank's model header and
 *      tensor index; ranks whose files differ stop with an error naming them;
 *   2. the coordinator (world rank 0) makes the shard plan from the model's
 *      metadata, encodes it (protobuf ShardPlan) and broadcasts it; every
 *      rank decodes and validates it against its own model; a failure on any
 *      rank stops every rank with a message (no weight has been read);
 *   3. splits the world into one TP communicator per stage and fills this
 *      rank's loom_topology (its shard, its neighbours in the pipeline);
 *   4. starts the watchdog (timeout_s > 0).
 * Every rank returns the same success or failure, so no rank is left
 * waiting. loom_cluster_free() waits for every rank (barrier), stops the
 * watchdog and frees the communicators.
 */
#ifndef LOOM_CLUSTER_H
#define LOOM_CLUSTER_H

#include <stdio.h>

#include "parallel/comm.h"
#include "parallel/engine.h"
#include "runtime/gguf.h"
#include "parallel/plan.h"

typedef struct loom_cluster loom_cluster;

/* MPI must be initialised (loom_mpi_init). */
loom_status loom_cluster_create(const loom_gguf *g, const loom_plan_request *req, double watchdog_timeout_s,
                                loom_cluster **out) LOOM_MUST_USE;
void loom_cluster_free(loom_cluster *c);

const loom_topology *loom_cluster_topology(const loom_cluster *c);
const loom_plan *loom_cluster_plan(const loom_cluster *c);
loom_comm *loom_cluster_world(const loom_cluster *c);

/* Collective: every rank's proportional set size (PSS), printed by rank 0
 * next to what the plan said the rank needs. Call once the engines are
 * loaded (weights touched; the KV cache is allocated but its pages are only
 * charged as they fill). */
void loom_cluster_report_memory(loom_cluster *c, FILE *f);

/* This process's proportional set size (PSS) in bytes from
 * /proc/self/smaps_rollup, or -1 when unavailable. */
int64_t loom_pss_bytes(void);

#endif
