/*
 * parallel/cluster.h — one process, or one MPI job, becomes one loom
 * cluster: the single bring-up every command goes through.
 *
 * loom_cluster_start(), called by every rank with the same options:
 *   1. starts MPI when the process was launched by mpirun (or tp × pp > 1,
 *      which then needs mpirun) — a plain process never touches MPI;
 *   2. opens the model on every rank; one failure stops every rank;
 *   3. runs the coordinator's `prepare` hook (optional) — e.g. `generate`
 *      reads its prompts there and sizes the engine for them;
 *   4. under MPI: gathers host names and the hash of every rank's model
 *      header and tensor index (ranks whose files differ stop with an error
 *      naming them); the coordinator plans from the model's metadata and
 *      the engine options, encodes the plan (protobuf ShardPlan) and
 *      broadcasts it; every rank decodes and validates it against its own
 *      model (no weight has been read yet); the world is split into one TP
 *      communicator per stage; the watchdog starts (timeout > 0).
 * Every rank returns the same success or failure, so no rank is left
 * waiting; after a failure MPI is finalized. The plan carries the
 * coordinator's engine options to every rank: context, sequences, KV type
 * and batch have one source.
 *
 * After start, failures that only some ranks see go through
 * loom_cluster_agree() (collective) while every rank is still in step, and
 * through loom_cluster_abort() once the ranks are in the step loop (a peer
 * would otherwise wait forever). launch/ needs nothing else from MPI.
 */
#ifndef LOOM_CLUSTER_H
#define LOOM_CLUSTER_H

#include <stdbool.h>
#include <stdio.h>

#include "parallel/comm.h"
#include "parallel/engine.h"
#include "parallel/plan.h"
#include "runtime/gguf.h"

typedef struct {
    const char *model;          /* GGUF path; every rank opens its own copy. NULL: only MPI and the
                                   world communicator (no model, plan, TP groups or watchdog) */
    int tp, pp;                 /* 1, 1: the whole model on one rank */
    loom_engine_options engine; /* what the plan sizes and each rank's engine allocates */
    int64_t max_memory;         /* bytes per rank for the plan; 0 = no limit */
    double watchdog_timeout_s;  /* a silent peer stops the job after this long; 0 = off */
    /* Optional, coordinator only, after the model opened and before the
     * plan: may change the engine options. Its error stops every rank. */
    loom_status (*prepare)(void *user, const loom_gguf *g, loom_engine_options *eo);
    void *prepare_user;
    /* LoRA adapters every rank's engine loads (loom_engine_add_lora), each
     * rank its own copy of each file, as of the model */
    const loom_lora_spec *lora;
    int n_lora;
} loom_cluster_options;

typedef struct loom_cluster loom_cluster;

/* Every rank; see above. On error *out is NULL. */
loom_status loom_cluster_start(const loom_cluster_options *o, loom_cluster **out) LOOM_MUST_USE;
/* Every rank: waits for the others (so none sees a peer go quiet), stops
 * the watchdog, frees the communicators and the model, finalizes MPI. */
void loom_cluster_free(loom_cluster *c);

int loom_cluster_rank(const loom_cluster *c);
int loom_cluster_size(const loom_cluster *c);
bool loom_cluster_is_coordinator(const loom_cluster *c);
const loom_gguf *loom_cluster_model(const loom_cluster *c);
/* The engine options every rank agreed on (the coordinator's, after prepare). */
const loom_engine_options *loom_cluster_engine_options(const loom_cluster *c);
/* NULL for a plain process (one rank, no plan). */
const loom_plan *loom_cluster_plan(const loom_cluster *c);
/* This rank's place; for a plain process one rank with the whole model. */
const loom_topology *loom_cluster_topology(const loom_cluster *c);
/* Every rank: a size-1 communicator for a plain process. */
loom_comm *loom_cluster_world(const loom_cluster *c);

/* Collective: this rank's engine. o = NULL takes the agreed options; a
 * caller may pass a copy with other threads, or fewer sequences or a
 * shorter context than planned. A failure on any rank fails every rank. */
loom_status loom_cluster_engine(loom_cluster *c, const loom_engine_options *o,
                                void (*progress)(void *user, double frac), void *user,
                                loom_engine **out) LOOM_MUST_USE;

/* Collective: every rank learns whether any failed. Returns NULL when st
 * is NULL on every rank; otherwise this rank's own error, or one that names
 * the lowest failing rank (LOOM_ERR_PEER: that rank reports its own). */
loom_status loom_cluster_agree(loom_cluster *c, loom_status st, const char *what) LOOM_MUST_USE;

/* Prints "loom <cmd>: <message>" and ends the whole job at once (every
 * rank), for failures inside the step loop where peers would wait forever.
 * A plain process just exits with status 1. Frees st. */
_Noreturn void loom_cluster_abort(loom_cluster *c, const char *cmd, loom_status st);

/* Seconds since the most silent peer's last heartbeat (0 without a
 * watchdog). Thread-safe: health checks read it. */
double loom_cluster_peer_silence(const loom_cluster *c);
/* The watchdog's timeout (0: none). */
double loom_cluster_watchdog_timeout(const loom_cluster *c);

/* Collective: every rank's proportional set size (PSS), printed by the
 * coordinator next to what the plan said the rank needs. Call once the
 * engines are loaded. No-op for a plain process. */
void loom_cluster_report_memory(loom_cluster *c, FILE *f);

/* This process's proportional set size (PSS) in bytes from
 * /proc/self/smaps_rollup, or -1 when unavailable. */
int64_t loom_pss_bytes(void);

#endif
