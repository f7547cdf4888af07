/*
 * parallel/cluster.c — bring-up of a cluster (contract in cluster.h).
 */
#include "parallel/cluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "parallel/comm_mpi.h"
#include "parallel/plan_balance.h"
#include "parallel/placement.h"
#include "parallel/watchdog.h"
#include "runtime/device_forward.h"

struct loom_cluster {
    bool mpi;              /* this process started MPI */
    loom_gguf *model;
    loom_engine_options eo;/* agreed: the coordinator's (threads: this rank's) */
    loom_comm *world;      /* MPI world, or a size-1 communicator */
    loom_comm *tp;
    loom_plan *plan;       /* NULL without MPI */
    loom_topology topo;
    char **hosts;          /* (world) */
    loom_watchdog *wd;
    double watchdog_s;
    const loom_lora_spec *lora; /* borrowed from the options */
    int n_lora;
};

int64_t loom_pss_bytes(void) {
    FILE *f = fopen("/proc/self/smaps_rollup", "r");
    if (!f) return -1;
    char line[256];
    int64_t kb = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "Pss:", 4)) {
            kb = strtoll(line + 4, NULL, 10);
            break;
        }
    fclose(f);
    return kb < 0 ? -1 : kb * 1024;
}

/* Every rank learns whether any rank failed; returns the lowest failing
 * rank or -1. */
static int agree(loom_comm *world, loom_status st) {
    int32_t mine = st ? world->rank : INT32_MAX, first = mine;
    MPI_Allreduce(&mine, &first, 1, MPI_INT32_T, MPI_MIN, loom_comm_mpi_handle(world));
    return first == INT32_MAX ? -1 : first;
}

/* On failure somewhere, every rank returns an error: its own, or one that
 * points at the failing rank. */
static loom_status settle(loom_comm *world, loom_status st, const char *what) {
    int bad = agree(world, st);
    if (bad < 0) return NULL;
    if (st) return st;
    return loom_error(LOOM_ERR_PEER, "%s failed on rank %d (see its message)", what, bad);
}

static loom_status check_models(loom_cluster *c, const loom_gguf *g) {
    int n = c->world->size;
    uint64_t mine = loom_gguf_header_hash(g), *all = malloc(sizeof(uint64_t) * (size_t)n);
    if (!all) return loom_error(LOOM_ERR_NOMEM, "out of memory checking model files");
    MPI_Allgather(&mine, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, loom_comm_mpi_handle(c->world));
    loom_status st = NULL;
    for (int r = 1; r < n && !st; r++)
        if (all[r] != all[0] && c->world->rank != 0)
            st = loom_error(LOOM_ERR_PEER, "rank %d has a different model file (rank 0 reports it)", r);
        else if (all[r] != all[0])
            st = loom_error(LOOM_ERR_INVALID,
                            "rank %d (host %s) has a different model file than rank 0 (host %s): header and tensor "
                            "index hashes %016llx and %016llx; every rank must load the same GGUF",
                            r, c->hosts[r], c->hosts[0], (unsigned long long)all[r], (unsigned long long)all[0]);
    free(all);
    return st;
}

static loom_status gather_hosts(loom_cluster *c) {
    int n = c->world->size;
    char mine[LOOM_PLAN_HOST_MAX] = {0};
    int len = 0;
    char name[MPI_MAX_PROCESSOR_NAME];
    MPI_Get_processor_name(name, &len);
    snprintf(mine, sizeof mine, "%s", name);
    char *all = malloc((size_t)n * LOOM_PLAN_HOST_MAX);
    c->hosts = calloc((size_t)n, sizeof *c->hosts);
    if (!all || !c->hosts) {
        free(all);
        return loom_error(LOOM_ERR_NOMEM, "out of memory gathering host names");
    }
    MPI_Allgather(mine, LOOM_PLAN_HOST_MAX, MPI_CHAR, all, LOOM_PLAN_HOST_MAX, MPI_CHAR,
                  loom_comm_mpi_handle(c->world));
    for (int r = 0; r < n; r++) {
        all[(size_t)r * LOOM_PLAN_HOST_MAX + LOOM_PLAN_HOST_MAX - 1] = 0;
        c->hosts[r] = strdup(all + (size_t)r * LOOM_PLAN_HOST_MAX);
    }
    free(all);
    return NULL;
}

/* Rank 0 plans and broadcasts; every rank decodes and validates. */
static loom_status share_plan(loom_cluster *c, const loom_gguf *g, const loom_plan_request *req) {
    loom_model_config cfg;
    loom_plan_model pm = {0};
    loom_status st = loom_model_config_read(g, &cfg);
    if (!st) st = loom_plan_model_read(g, &cfg, &pm);
    uint8_t *buf = NULL;
    size_t len = 0;
    if (c->world->rank == 0 && !st) {
        /* stages by decode time where rank 0 computes on the CPU (plan_balance.h) */
        loom_plan_request r = *req;
        loom_plan_balance bal;
        bool by_bytes = true;
        st = loom_plan_balance_by_bytes(&by_bytes);
        if (!st && !by_bytes && r.pp > 1 && loom_engine_device(r.engine.device, r.engine.kv_type, &cfg) == LOOM_DEVICE_CPU) {
            st = loom_plan_balance_measure(&pm, &r, &bal);
            if (!st) { /* (where the head cannot be timed, out of memory: its bytes as the figures weigh them) */
                loom_status ps = loom_plan_balance_probe_head(g, &pm, &r, &bal);
                if (ps) bal.head_time = 0, loom_status_free(ps);
            }
            if (!st) r.balance = &bal;
        }
        loom_plan *p = NULL;
        if (!st) st = loom_plan_make(&pm, &r, (const char *const *)c->hosts, &p);
        if (!st) st = loom_plan_encode(p, &buf, &len);
        loom_plan_free(p);
    }
    /* a failed plan on rank 0 is announced as a negative size, its message follows */
    int64_t size = st ? -1 : (int64_t)len;
    MPI_Comm w = loom_comm_mpi_handle(c->world);
    if (c->world->rank == 0) {
        MPI_Bcast(&size, 1, MPI_INT64_T, 0, w);
        if (st) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", loom_status_message(st));
            MPI_Bcast(msg, sizeof msg, MPI_CHAR, 0, w);
        } else {
            MPI_Bcast(buf, (int)len, MPI_UINT8_T, 0, w);
        }
    } else {
        MPI_Bcast(&size, 1, MPI_INT64_T, 0, w);
        if (size < 0) {
            char msg[1024];
            MPI_Bcast(msg, sizeof msg, MPI_CHAR, 0, w);
            msg[sizeof msg - 1] = 0;
            loom_status_free(st);
            st = loom_error(LOOM_ERR_PEER, "the coordinator could not plan: %s", msg);
        } else {
            buf = malloc((size_t)size + 1);
            if (!buf) {
                /* still take part in the broadcast */
                uint8_t *sink = malloc((size_t)size + 1);
                MPI_Bcast(sink, (int)size, MPI_UINT8_T, 0, w);
                free(sink);
                if (!st) st = loom_error(LOOM_ERR_NOMEM, "out of memory receiving the plan");
            } else {
                MPI_Bcast(buf, (int)size, MPI_UINT8_T, 0, w);
                len = (size_t)size;
            }
        }
    }
    if (!st) st = loom_plan_decode(buf, len, &pm, &c->plan);
    free(buf);
    loom_plan_model_free(&pm);
    return st;
}


/* Under MPI: hosts, model hashes, the plan, TP groups, the watchdog. */
static loom_status connect_ranks(loom_cluster *c, const loom_cluster_options *o) {
    loom_plan_request req = loom_plan_request_defaults(o->tp, o->pp);
    req.world = c->world->size;
    req.engine = c->eo;
    req.max_memory = o->max_memory;
    loom_status st = settle(c->world, gather_hosts(c), "gathering host names");
    if (!st) st = settle(c->world, check_models(c, c->model), "checking model files");
    if (!st) st = settle(c->world, share_plan(c, c->model, &req), "planning");
    if (st) return st;
    const loom_plan *p = c->plan;
    const loom_rank_plan *me = loom_plan_rank(p, c->world->rank);
    c->eo = p->req.engine; /* the coordinator's options reach every rank with the plan */
    c->eo.n_threads = o->engine.n_threads;
    c->eo.prefix_cache = o->engine.prefix_cache;
    c->eo.device = loom_engine_device(o->engine.device, p->req.engine.kv_type, &p->cfg); /* per rank, like the threads */
    c->eo.host_ranks = 0;
    for (int r = 0; r < c->world->size; r++) c->eo.host_ranks += !strcmp(c->hosts[r], c->hosts[c->world->rank]);
    loom_topology *t = &c->topo;
    t->world_rank = c->world->rank;
    t->world_size = c->world->size;
    t->stage = me->stage;
    t->n_stages = p->pp;
    t->tp_rank = me->tp_rank;
    t->tp_size = p->tp;
    t->world = c->world;
    t->prev = me->stage > 0 ? loom_plan_world_rank(p, me->stage - 1, me->tp_rank) : -1;
    t->next = me->stage + 1 < p->pp ? loom_plan_world_rank(p, me->stage + 1, me->tp_rank) : -1;
    t->last_leader = loom_plan_world_rank(p, p->pp - 1, 0);
    t->shard = me->shard;
    MPI_Comm tpc;
    MPI_Comm_split(loom_comm_mpi_handle(c->world), me->stage, me->tp_rank, &tpc);
    char what[32];
    snprintf(what, sizeof what, "TP group of stage %d", me->stage);
    st = loom_comm_mpi_create(tpc, what, &c->tp);
    MPI_Comm_free(&tpc);
    t->tp_group = p->tp > 1 ? c->tp : NULL;
    st = settle(c->world, st, "creating TP groups");
    if (!st) { /* a GPU per rank that computes on one (placement.h); collective when any does */
        int32_t want = c->eo.device == LOOM_DEVICE_CUDA, any = want;
        MPI_Allreduce(&want, &any, 1, MPI_INT32_T, MPI_MAX, loom_comm_mpi_handle(c->world));
        loom_gpu_info gi;
        if (any)
            st = settle(c->world, loom_place_devices(loom_comm_mpi_handle(c->world), want, &c->eo.device_ordinal, &gi),
                        "placing ranks on GPUs");
    }
    c->watchdog_s = o->watchdog_timeout_s;
    if (!st && o->watchdog_timeout_s > 0)
        st = settle(c->world,
                    loom_watchdog_start(MPI_COMM_WORLD, o->watchdog_timeout_s, (const char *const *)c->hosts, &c->wd),
                    "starting the watchdog");
    return st;
}

loom_status loom_cluster_start(const loom_cluster_options *o, loom_cluster **out) {
    *out = NULL;
    if (o->tp < 1 || o->pp < 1) return loom_error(LOOM_ERR_INVALID, "tp %d and pp %d must be >= 1", o->tp, o->pp);
    loom_cluster *c = calloc(1, sizeof *c);
    if (!c) return loom_error(LOOM_ERR_NOMEM, "out of memory creating the cluster");
    c->eo = o->engine;
    c->lora = o->lora, c->n_lora = o->n_lora;
    /* MPI only when launched by mpirun or asked to split the model */
    c->mpi = (int64_t)o->tp * o->pp > 1 || getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE");
    loom_status st = NULL;
    if (c->mpi) {
        st = loom_mpi_init(NULL, NULL);
        /* after a failed start MPI ends at exit, once the caller has printed
         * why (Open MPI may stop the peers of a finalized rank at once) */
        static bool registered;
        if (!registered) registered = atexit(loom_mpi_finalize) == 0;
        if (!st) st = loom_comm_mpi_create(MPI_COMM_WORLD, "world", &c->world);
        if (!st) loom_status_set_rank(c->world->rank);
        if (!st && c->world->size == 1 && (int64_t)o->tp * o->pp > 1)
            st = loom_error(LOOM_ERR_INVALID, "--tp %d --pp %d needs %d ranks: run it under mpirun -np %d", o->tp,
                            o->pp, o->tp * o->pp, o->tp * o->pp);
    } else {
        st = loom_comm_self_create(&c->world);
    }
    if (st) {
        c->mpi = false; /* finalized at exit */
        loom_cluster_free(c);
        return st;
    }
    if (!o->model) { /* no model: the world communicator only */
        *out = c;
        return NULL;
    }
    st = loom_gguf_open(o->model, &c->model);
    if (c->world->size > 1) st = settle(c->world, st, "opening the model");
    if (!st && c->world->rank == 0 && o->prepare) st = o->prepare(o->prepare_user, c->model, &c->eo);
    if (c->world->size > 1) st = settle(c->world, st, "preparing the run");
    if (!st && c->mpi) st = connect_ranks(c, o);
    if (!st && !c->mpi) {
        loom_model_config cfg;
        st = loom_model_config_read(c->model, &cfg);
        if (!st) c->topo = loom_topology_single(&cfg);
        if (!st) c->eo.device = loom_engine_device(c->eo.device, c->eo.kv_type, &cfg); /* one process: the GPU it sees first */
    }
    if (st) {
        if (c->mpi) MPI_Barrier(loom_comm_mpi_handle(c->world));
        loom_watchdog_stop(c->wd);
        c->mpi = false; /* finalized at exit */
        loom_cluster_free(c);
        return st;
    }
    *out = c;
    return NULL;
}

void loom_cluster_free(loom_cluster *c) {
    if (!c) return;
    if (c->mpi && c->world) MPI_Barrier(loom_comm_mpi_handle(c->world));
    loom_watchdog_stop(c->wd);
    loom_comm_free(c->tp);
    if (c->hosts)
        for (int r = 0; r < c->world->size; r++) free(c->hosts[r]);
    free(c->hosts);
    loom_plan_free(c->plan);
    loom_comm_free(c->world);
    loom_gguf_free(c->model);
    if (c->mpi) loom_mpi_finalize();
    free(c);
}

int loom_cluster_rank(const loom_cluster *c) { return c->world->rank; }
int loom_cluster_size(const loom_cluster *c) { return c->world->size; }
bool loom_cluster_is_coordinator(const loom_cluster *c) { return c->world->rank == 0; }
const loom_gguf *loom_cluster_model(const loom_cluster *c) { return c->model; }
const loom_engine_options *loom_cluster_engine_options(const loom_cluster *c) { return &c->eo; }
const loom_topology *loom_cluster_topology(const loom_cluster *c) { return &c->topo; }
const loom_plan *loom_cluster_plan(const loom_cluster *c) { return c->plan; }
loom_comm *loom_cluster_world(const loom_cluster *c) { return c->world; }
double loom_cluster_peer_silence(const loom_cluster *c) { return loom_watchdog_silence(c->wd); }
double loom_cluster_watchdog_timeout(const loom_cluster *c) { return c->wd ? c->watchdog_s : 0; }

loom_status loom_cluster_agree(loom_cluster *c, loom_status st, const char *what) {
    if (c->world->size == 1) return st;
    return settle(c->world, st, what);
}

_Noreturn void loom_cluster_abort(loom_cluster *c, const char *cmd, loom_status st) {
    fprintf(stderr, "loom %s: %s\n", cmd, st ? loom_status_message(st) : "aborted");
    fflush(stderr);
    loom_status_free(st);
    if (c && c->mpi) MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);
}

loom_status loom_cluster_engine(loom_cluster *c, const loom_engine_options *o,
                                void (*progress)(void *user, double frac), void *user, loom_engine **out) {
    *out = NULL;
    const loom_engine_options *eo = o ? o : &c->eo;
    loom_status st = NULL;
    if (eo->max_seqs > c->eo.max_seqs || eo->ctx_size > c->eo.ctx_size || eo->batch_rows > c->eo.batch_rows ||
        eo->kv_type != c->eo.kv_type || eo->block_tokens != c->eo.block_tokens)
        st = loom_error(LOOM_ERR_INVALID,
                        "an engine of %d sequences x %d positions, batch %d, does not fit the plan's %d x %d, batch %d",
                        eo->max_seqs, eo->ctx_size, eo->batch_rows, c->eo.max_seqs, c->eo.ctx_size, c->eo.batch_rows);
    if (!st) st = loom_engine_create(c->model, eo, &c->topo, progress, user, out);
    for (int i = 0; i < c->n_lora && !st; i++) st = loom_engine_add_lora(*out, c->lora[i].path, c->lora[i].scale);
    st = loom_cluster_agree(c, st, "loading the model");
    if (st && *out) {
        loom_engine_free(*out);
        *out = NULL;
    }
    return st;
}

void loom_cluster_report_memory(loom_cluster *c, FILE *f) {
    if (!c->plan) return;
    int n = c->world->size;
    int64_t mine = loom_pss_bytes(), *all = c->world->rank == 0 ? malloc(sizeof(int64_t) * (size_t)n) : NULL;
    MPI_Gather(&mine, 1, MPI_INT64_T, all, 1, MPI_INT64_T, 0, loom_comm_mpi_handle(c->world));
    if (c->world->rank != 0 || !all) return;
    fprintf(f, "\nmemory after loading (PSS: file pages shared between ranks count in part)\n");
    fprintf(f, "rank  stage   tp   plan weights   plan KV cache   plan total       PSS\n");
    for (int r = 0; r < n; r++) {
        const loom_rank_plan *p = loom_plan_rank(c->plan, r);
        char w[32], k[32], t[32], m[32];
        loom_format_bytes(w, sizeof w, p->weight_bytes);
        loom_format_bytes(k, sizeof k, p->kv_bytes);
        loom_format_bytes(t, sizeof t, p->weight_bytes + p->kv_bytes + p->workspace_bytes);
        if (all[r] >= 0) loom_format_bytes(m, sizeof m, all[r]);
        else snprintf(m, sizeof m, "n/a");
        fprintf(f, "%4d %6d %4d %14s %15s %12s %10s\n", r, p->stage, p->tp_rank, w, k, t, m);
    }
    free(all);
}
