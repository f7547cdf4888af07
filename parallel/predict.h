/*
 * parallel/predict.h — a cost model: how fast would this model run on that
 * cluster, split tp × pp?
 *
 * The prediction walks the same shard plan `loom plan` makes (plan.h): for
 * every rank it counts, per step of R rows, the weight bytes its slices
 * stream, the KV bytes its attention reads and the FLOPs of both, and
 * prices them with the device's figures as a roofline,
 *
 *     t = max(bytes / mem_bw, flops / F(R)) + layers × layer_overhead,
 *
 * separately for the attention half and the MLP half of every layer (each
 * ends in a TP all-reduce, so a TP group moves at its slowest rank twice a
 * layer), plus the lm head, the vocabulary-parallel sampling exchange and a
 * fixed per-step overhead. F(R), the matmul rate at R rows, is either one
 * stated figure or a curve measured by `loom bench` on one rank (the small
 * register tiles of decode and the GEMM panels of prefill run at very
 * different rates on CPUs); between measured row counts it is interpolated
 * in log R.
 *
 * Communication is what the plan implies, message by message, as the engine
 * sends it (stage.c, transfer.c, vocab_sampler.c): two all-reduces of R ×
 * dim floats per layer, the embedding all-reduce when the vocabulary is
 * split, the Step broadcast in each TP group, each TP rank's hidden-state
 * slice to the next stage and its all-gather there, the StepResult back to
 * the coordinator. Each message is priced by a link: a measured table from
 * `loom bench comm` (time by size, interpolated) or stated figures
 * (t = latency + bytes × nccl-tests' bus factor / bus bandwidth). A TP
 * group or a stage hop that leaves a node uses the inter-node link; ranks
 * fill nodes in world-rank order, as mpirun's by-slot mapping does.
 *
 * The pipeline follows the scheduler (scheduler.h): S decoding sequences go
 * in micro-batches of ceil(S / pp), up to pp in flight; a sequence's next
 * token needs its previous one back, so one decode round takes
 *     max(round trip of one micro-batch, micro-batches × slowest stage)
 * and every sequence gains one token per round (inter-token latency = the
 * round, decode tokens/s = S / round). A prompt of N tokens is cut into
 * chunks of batch_rows that follow each other through the stages; the time
 * to first token is one chunk's trip plus (chunks - 1) × the slowest stage.
 * Several prompts prefilled together share the chunks (each row attends
 * within its own prompt); the first tokens come when the last chunk is back.
 *
 * Owns nothing it is given; a loom_prediction owns its per-rank arrays
 * (loom_prediction_free). Errors are returned, never printed.
 */
#ifndef LOOM_PREDICT_H
#define LOOM_PREDICT_H

#include <stdbool.h>
#include <stdio.h>

#include "parallel/plan.h"

#define LOOM_PREDICT_MAX_POINTS 64

/* The collectives a link is priced for (nccl-tests' names). */
typedef enum {
    LOOM_OP_ALL_REDUCE,
    LOOM_OP_ALL_GATHER,
    LOOM_OP_BROADCAST,
    LOOM_OP_SENDRECV,
    LOOM_OP_COUNT
} loom_predict_op;

const char *loom_predict_op_name(loom_predict_op op);
/* nccl-tests' bus-bandwidth factor: busbw = algbw × factor. */
double loom_predict_bus_factor(loom_predict_op op, int ranks);

typedef struct {
    double latency_s; /* time of a call of a few bytes */
    double bus_bw;    /* bytes/s of bus bandwidth (nccl-tests' busbw) */
    /* Measured (loom bench comm): per op, call time by message size, as
     * measured with `ranks` ranks. Sizes ascending; n 0 = not measured. */
    int ranks;
    int n[LOOM_OP_COUNT];
    double bytes[LOOM_OP_COUNT][LOOM_PREDICT_MAX_POINTS];
    double secs[LOOM_OP_COUNT][LOOM_PREDICT_MAX_POINTS];
} loom_predict_link;

/* Seconds of one call of `op` moving `bytes` (nccl-tests' size: the
 * reduced buffer, the gathered whole, the broadcast buffer, one message)
 * among `ranks` ranks. A measured table is used when it has the op and was
 * measured with as many ranks; otherwise the stated (or, when absent, the
 * table's own small-size time and largest bus bandwidth) latency and
 * bandwidth. 0 for ranks < 2 (except sendrecv) or bytes <= 0. */
double loom_predict_comm_time(const loom_predict_link *l, loom_predict_op op, double bytes, int ranks);

typedef struct {
    char name[128];
    double mem_bytes;        /* memory of a device; 0 = unknown */
    double mem_bw;           /* bytes/s the kernels read at */
    double flops;            /* FLOP/s of the matmuls when no curve is given */
    int n_curve;             /* measured points of F(R), rows ascending; 0 = flat `flops` */
    double curve_rows[LOOM_PREDICT_MAX_POINTS];
    double curve_flops[LOOM_PREDICT_MAX_POINTS];
    double layer_overhead_s; /* fixed cost per layer per step (kernel launches) */
    double step_overhead_s;  /* fixed cost per step per rank */
    int threads;             /* threads of a rank (CPU devices), informative */
    /* the decode steps of a `loom bench` calibration (one rank, the whole
     * model): rows and mean context of each, and the model's shape */
    int n_cal;
    double cal_rows[LOOM_PREDICT_MAX_POINTS], cal_context[LOOM_PREDICT_MAX_POINTS];
    int cal_layers, cal_dim, cal_vocab;
    /* its prefill runs: rows of the curve point each gave, and the FLOPs it
     * counted for them (the whole model, one row of logits) */
    int n_pre;
    double pre_rows[LOOM_PREDICT_MAX_POINTS], pre_flops[LOOM_PREDICT_MAX_POINTS];
} loom_predict_device;

/* F(R) of a device: the curve interpolated in log R (clamped at its ends),
 * or the flat figure. */
double loom_predict_flops_at(const loom_predict_device *d, double rows);

typedef struct {
    char name[128];
    int nodes, devices_per_node; /* world ranks fill node 0 first */
    loom_predict_device dev;     /* every rank runs on one such device */
    loom_predict_link intra, inter;
} loom_predict_cluster;

typedef struct {
    int sequences;      /* decoding at once */
    int prompt_tokens;  /* tokens of a prompt, for the time to first token */
    int decode_context; /* mean positions a decoding row attends to */
    int prompts;        /* prompts prefilled together (rows of all in the same chunks); 0 = 1 */
} loom_predict_workload;

typedef struct {
    int world_rank, stage, tp_rank, node;
    int64_t weight_bytes, kv_bytes, workspace_bytes; /* from the plan */
    bool fits;                                       /* total <= device memory (or memory unknown) */
    /* seconds per decode round: own compute, TP collectives (waits for the
     * group's slowest rank included), stage transfers; share of the round idle */
    double dec_compute_s, dec_tp_s, dec_pp_s, dec_idle;
    double pre_compute_s, pre_tp_s, pre_pp_s; /* the same for the whole prompt */
} loom_predict_rank;

typedef struct {
    int tp, pp, world, nodes_used;
    double mem_bw;              /* bytes/s the roofline used (the device's, raised to its calibration's floor) */
    int micro_batches, micro_batch_rows, prompt_chunks, chunk_rows;
    double ttft_s, prefill_tps;
    double round_s, decode_tps; /* round = inter-token latency of every sequence */
    double stage_max_s;         /* slowest stage's time for one decode micro-batch */
    double round_trip_s;        /* one decode micro-batch through every stage and back */
    double decode_bytes_per_token; /* weight + KV bytes read by the cluster per generated token */
    bool fits;                  /* every rank fits its device */
    int n_ranks;
    loom_predict_rank *ranks;   /* (n_ranks) by world rank */
} loom_prediction;

/* Predicts plan `p` (made for model `m`) on cluster `c` under workload `w`.
 * Fails with LOOM_ERR_INVALID when the plan needs more devices than the
 * cluster has or an argument is out of range. On error *out is zeroed. */
loom_status loom_predict(const loom_plan_model *m, const loom_plan *p, const loom_predict_cluster *c,
                         const loom_predict_workload *w, loom_prediction *out) LOOM_MUST_USE;
void loom_prediction_free(loom_prediction *r);

/* A human table (ranks, memory, time split) or one JSON object. */
void loom_prediction_print(const loom_prediction *r, const loom_predict_cluster *c, const loom_predict_workload *w,
                           FILE *f);
void loom_prediction_json(const loom_prediction *r, const loom_predict_cluster *c, const loom_predict_workload *w,
                          FILE *f);

/* Rows R of one decode micro-batch for S sequences on P stages (the
 * scheduler's rule) and how many there are. */
int loom_predict_micro_batch_rows(int sequences, int stages);

/* ---- the cost of one step, exposed for calibration and tests ---- */

/* Weight bytes, KV bytes and FLOPs one rank spends on a step of `rows`
 * rows attending to `context` positions on average: separately the
 * attention half and the MLP half of every layer it holds, and its head. */
typedef struct {
    double attn_bytes, attn_flops, mlp_bytes, mlp_flops; /* summed over the rank's layers */
    double head_bytes, head_flops;
    int layers;
} loom_predict_work;

void loom_predict_rank_work(const loom_plan_model *m, const loom_shard *s, loom_type kv_type, double rows,
                            double logit_rows, double context, loom_predict_work *out);

/* Bytes of the packed Step (proto/step.proto) the coordinator sends for
 * `seqs` running sequences of `tokens` rows each at position `pos`: what
 * travels with every micro-batch. */
size_t loom_predict_step_bytes(int seqs, int tokens, int pos);

/* ---- inputs from JSON files (parallel/predict_io.c) ----
 * Errors name the file and the key; on error the output may be partly
 * filled and must not be used. */

/* A cluster description:
 *   {"name": "...", "nodes": N, "devices_per_node": D,
 *    "device": {"name", "memory_gib", "mem_bw_gbs", "tflops", "layer_overhead_us",
 *               "step_overhead_us", "threads", "bench": "one-rank `loom bench --json` file",
 *               "bench_scale": k (the device is k benched ranks' worth of matmul rate, e.g.
 *               more cores of the same kind; its bandwidth is then mem_bw_gbs)},
 *    "intra_node": {"latency_us", "bus_bw_gbs", "comm": "`loom bench comm --json` file"},
 *    "inter_node": {...}}
 * File names are relative to the cluster file. A "bench" file calibrates
 * F(R) and, with its bandwidth probe, mem_bw (loom_predict_calibrate); a
 * "comm" file gives the link its measured table. */
loom_status loom_predict_cluster_load(const char *path, loom_predict_cluster *c) LOOM_MUST_USE;
/* Calibrates d from a one-rank `loom bench --json` run (rows with `threads`
 * threads; 0 = the first thread count): each decode row (S sequences: one
 * step of S rows) and each prefill row (one prompt) gives a point
 * F(R) = FLOPs / time, timed by the fastest repetition; mem_bw becomes the probe's bandwidth when measured,
 * and never less than what one-sequence decode itself read. The decode rows are kept (n_cal) so that
 * loom_predict raises mem_bw, for a model of the same shape, to what each part of those steps must have
 * read at (calibrated_mem_bw in predict.c). */
loom_status loom_predict_calibrate(const char *path, int threads, loom_predict_device *d) LOOM_MUST_USE;
/* Fills l's measured tables from `loom bench comm --json` output. */
loom_status loom_predict_link_load(const char *path, loom_predict_link *l) LOOM_MUST_USE;
/* A model without a GGUF file:
 *   {"layers", "dim", "heads", "kv_heads", "head_dim" (0 = dim/heads), "ffn",
 *    "mlp": "gated" | "plain", "vocab", "tied", "type": "F16", "head_type"}
 * A plain (GELU) MLP of width ffn is planned as a gated one of width 2/3 ffn:
 * the same parameters and FLOPs, split the same way. */
loom_status loom_predict_model_describe(const char *path, loom_plan_model *m) LOOM_MUST_USE;

#endif
