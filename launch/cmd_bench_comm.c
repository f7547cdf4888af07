/*
 * launch/cmd_bench_comm.c — `loom bench comm`: what the links between ranks
 * cost, measured through the communicator interface (parallel/comm.h) over
 * whichever backend the ranks use, with nccl-tests' conventions.
 *
 * Sizes run from -b to -e, multiplied by -f (or stepped by -i bytes). Per
 * size each rank times -n calls after -w warm-up calls (a barrier first);
 * the row shows the average over ranks (-a: 0 rank 0, 1 mean, 2 min, 3
 * max) of the time per call (nccl-tests': the loop's time over the calls;
 * next to it the median call, which a descheduled rank on a shared machine
 * does not move), the algorithm bandwidth size / time and the
 * bus bandwidth algbw × factor: 2(n-1)/n for all-reduce, (n-1)/n for the
 * all-gathers, 1 for broadcast and send/receive. "size" is nccl-tests': the
 * reduced buffer, the gathered whole, the broadcast buffer, one message.
 * With -c 1, one more call on known data is checked element by element and
 * #wrong is the count of wrong elements over all ranks.
 *
 * Operations (float32 elements):
 *   all_reduce   sum, in place (as the TP blocks call it)
 *   all_gather   every rank contributes size / n bytes
 *   all_gatherv  uneven: rank r contributes (r + 1) / (n (n + 1) / 2) of it
 *   broadcast    from rank 0
 *   sendrecv     every rank sends to rank + 1 and receives from rank - 1 at
 *                once (a pipeline whose stage boundaries all carry data)
 * With --model, also the per-call latency of the messages loom sends for
 * every decode step of S sequences: a hidden state of the model's width
 * (S × dim floats) to the next stage, the TP all-reduce of the same, the
 * packed Step (its size, then its bytes) broadcast in a TP group and sent
 * to the next stage, and the greedy-argmax exchange (8 bytes a row).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launch/args.h"
#include "launch/commands.h"
#include "launch/launch_util.h"
#include "parallel/cluster.h"
#include "parallel/predict.h"
#include "runtime/clock.h"

enum { OP_ALL_REDUCE, OP_ALL_GATHER, OP_ALL_GATHERV, OP_BROADCAST, OP_SENDRECV, N_OPS };
static const char *const op_names[N_OPS] = {"all_reduce", "all_gather", "all_gatherv", "broadcast", "sendrecv"};
#define MAX_ROWS 64
#define TAG_BENCH 91

typedef struct {
    loom_comm *w;
    int n, me;
    float *a, *b;                /* (cap / 4) send and receive buffers */
    size_t *counts, *displs;     /* (n) */
    int average;
} ctx;

typedef struct {
    double bytes, count, time_us, median_us, algbw, busbw;
    long long wrong;
} row;

static double bus_factor(int op, int n) {
    if (op == OP_ALL_REDUCE) return 2.0 * (n - 1) / n;
    if (op == OP_ALL_GATHER || op == OP_ALL_GATHERV) return (double)(n - 1) / n;
    return 1;
}

/* Element i of rank r's contribution: an integer exact in float32. */
static float val(int r, size_t i) { return (float)((r * 131 + (long long)i * 7) % 4093); }

/* Rank r's share of `total` elements in an all-gather (even or uneven). */
static void layout(ctx *c, int op, size_t total) {
    size_t off = 0, tri = (size_t)c->n * (c->n + 1) / 2;
    for (int r = 0; r < c->n; r++) {
        c->counts[r] = op == OP_ALL_GATHERV ? (r == c->n - 1 ? total - off : total * (r + 1) / tri) : total / c->n;
        c->displs[r] = off;
        off += c->counts[r];
    }
}

static loom_status call(ctx *c, int op, size_t count) {
    loom_comm *w = c->w;
    switch (op) {
    case OP_ALL_REDUCE: return loom_comm_all_reduce(w, c->a, count, LOOM_DT_F32, LOOM_RED_SUM);
    case OP_ALL_GATHER:
    case OP_ALL_GATHERV:
        return loom_comm_all_gatherv(w, c->a, c->counts[c->me], c->b, c->counts, c->displs, LOOM_DT_F32);
    case OP_BROADCAST: return loom_comm_broadcast(w, c->a, count, LOOM_DT_F32, 0);
    default: {
        loom_comm_req *rq = NULL, *sq = NULL;
        LOOM_TRY(loom_comm_irecv(w, c->b, count, LOOM_DT_F32, (c->me + c->n - 1) % c->n, TAG_BENCH, &rq));
        loom_status st = loom_comm_isend(w, c->a, count, LOOM_DT_F32, (c->me + 1) % c->n, TAG_BENCH, &sq);
        loom_status s1 = loom_comm_wait(w, sq), s2 = loom_comm_wait(w, rq);
        if (!st) st = s1 ? s1 : s2;
        if (st != s1) loom_status_free(s1);
        if (st != s2) loom_status_free(s2);
        return st;
    }
    }
}

/* Fills the inputs, makes one call, counts wrong elements on this rank. */
static loom_status check(ctx *c, int op, size_t count, long long *wrong) {
    size_t mine = op == OP_ALL_GATHER || op == OP_ALL_GATHERV ? c->counts[c->me] : count;
    for (size_t i = 0; i < mine; i++) c->a[i] = op == OP_BROADCAST && c->me != 0 ? -1.0f : val(c->me, i);
    LOOM_TRY(call(c, op, count));
    long long bad = 0;
    if (op == OP_ALL_REDUCE) {
        for (size_t i = 0; i < count; i++) {
            double want = 0;
            for (int r = 0; r < c->n; r++) want += val(r, i);
            bad += c->a[i] != (float)want;
        }
    } else if (op == OP_ALL_GATHER || op == OP_ALL_GATHERV) {
        for (int r = 0; r < c->n; r++)
            for (size_t i = 0; i < c->counts[r]; i++) bad += c->b[c->displs[r] + i] != val(r, i);
    } else if (op == OP_BROADCAST) {
        for (size_t i = 0; i < count; i++) bad += c->a[i] != val(0, i);
    } else {
        for (size_t i = 0; i < count; i++) bad += c->b[i] != val((c->me + c->n - 1) % c->n, i);
    }
    *wrong = bad;
    return NULL;
}

/* This rank's seconds per call, then combined over ranks as -a asks. */
static loom_status combine(ctx *c, double mine, double *out) {
    double v = mine;
    loom_redop op = c->average == 2 ? LOOM_RED_MIN : c->average == 3 ? LOOM_RED_MAX : LOOM_RED_SUM;
    if (c->average == 0) {
        LOOM_TRY(loom_comm_broadcast(c->w, &v, 1, LOOM_DT_F64, 0));
    } else {
        LOOM_TRY(loom_comm_all_reduce(c->w, &v, 1, LOOM_DT_F64, op));
        if (c->average == 1) v /= c->n;
    }
    *out = v;
    return NULL;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Times `iters` calls one by one: the mean (nccl-tests' figure: the whole
 * loop over the calls) and the median (robust to a rank losing its core for
 * a scheduler tick on a shared machine), each combined over ranks. */
static loom_status timed2(ctx *c, int op, size_t count, int warm, int iters, double *mean, double *median) {
    for (int i = 0; i < warm; i++) LOOM_TRY(call(c, op, count));
    double *t = malloc(sizeof(double) * (size_t)iters);
    if (!t) return loom_error(LOOM_ERR_NOMEM, "out of memory for %d timings", iters);
    loom_status st = loom_comm_barrier(c->w);
    double t0 = loom_now_s(), prev = t0;
    for (int i = 0; i < iters && !st; i++) {
        st = call(c, op, count);
        double now = loom_now_s();
        t[i] = now - prev, prev = now;
    }
    if (!st) {
        double m = (prev - t0) / iters;
        qsort(t, (size_t)iters, sizeof *t, cmp_double);
        double med = iters % 2 ? t[iters / 2] : (t[iters / 2 - 1] + t[iters / 2]) / 2;
        st = combine(c, m, mean);
        if (!st && median) st = combine(c, med, median);
    }
    free(t);
    return st;
}

static loom_status measure(ctx *c, int op, size_t bytes, int warm, int iters, bool chk, row *r) {
    size_t total = bytes / 4;
    if (op == OP_ALL_GATHER) total = total / c->n * c->n;
    if (op == OP_ALL_GATHER || op == OP_ALL_GATHERV) layout(c, op, total);
    r->count = (double)total, r->bytes = 4.0 * total, r->wrong = 0;
    if (chk) {
        LOOM_TRY(check(c, op, total, &r->wrong));
        LOOM_TRY(loom_comm_all_reduce(c->w, &r->wrong, 1, LOOM_DT_I64, LOOM_RED_SUM));
    }
    double s = 0, med = 0;
    LOOM_TRY(timed2(c, op, total, warm, iters, &s, &med));
    r->time_us = 1e6 * s, r->median_us = 1e6 * med;
    r->algbw = s > 0 ? r->bytes / s / 1e9 : 0;
    r->busbw = r->algbw * bus_factor(op, c->n);
    return NULL;
}

/* ------------------------------------------------------------ loom's own messages */

typedef struct {
    char what[96];
    const char *op;
    int sequences;
    double bytes, time_us;
} message;

/* One Step as transfer.c moves it: its size, then its bytes. */
static loom_status step_once(ctx *c, bool bcast, size_t bytes) {
    int64_t size = (int64_t)bytes, in = 0;
    uint8_t *buf = (uint8_t *)c->a;
    if (bcast) {
        LOOM_TRY(loom_comm_broadcast(c->w, &size, 1, LOOM_DT_I64, 0));
        return loom_comm_broadcast(c->w, buf, bytes, LOOM_DT_U8, 0);
    }
    int next = (c->me + 1) % c->n, prev = (c->me + c->n - 1) % c->n;
    loom_comm_req *q[4] = {0};
    LOOM_TRY(loom_comm_irecv(c->w, &in, 1, LOOM_DT_I64, prev, TAG_BENCH, &q[0]));
    LOOM_TRY(loom_comm_irecv(c->w, (uint8_t *)c->b, bytes, LOOM_DT_U8, prev, TAG_BENCH + 1, &q[1]));
    LOOM_TRY(loom_comm_isend(c->w, &size, 1, LOOM_DT_I64, next, TAG_BENCH, &q[2]));
    LOOM_TRY(loom_comm_isend(c->w, buf, bytes, LOOM_DT_U8, next, TAG_BENCH + 1, &q[3]));
    for (int k = 0; k < 4; k++) LOOM_TRY(loom_comm_wait(c->w, q[k]));
    return NULL;
}

/* Median seconds per Step message over `iters` (combined over ranks). */
static loom_status step_message(ctx *c, bool bcast, size_t bytes, int warm, int iters, double *secs) {
    for (int i = 0; i < warm; i++) LOOM_TRY(step_once(c, bcast, bytes));
    double *t = malloc(sizeof(double) * (size_t)iters);
    if (!t) return loom_error(LOOM_ERR_NOMEM, "out of memory for %d timings", iters);
    loom_status st = loom_comm_barrier(c->w);
    for (int i = 0; i < iters && !st; i++) {
        double t0 = loom_now_s();
        st = step_once(c, bcast, bytes);
        t[i] = loom_now_s() - t0;
    }
    if (!st) {
        qsort(t, (size_t)iters, sizeof *t, cmp_double);
        st = combine(c, iters % 2 ? t[iters / 2] : (t[iters / 2 - 1] + t[iters / 2]) / 2, secs);
    }
    free(t);
    return st;
}

static loom_status messages(ctx *c, int dim, const int *seqs, int n_seqs, int warm, int iters, message *out, int *n) {
    *n = 0;
    for (int k = 0; k < n_seqs; k++) {
        int S = seqs[k];
        size_t hidden = (size_t)S * dim, step = loom_predict_step_bytes(S, 1, 100);
        double s, mean;
        message *m = &out[*n];
        LOOM_TRY(timed2(c, OP_SENDRECV, hidden, warm, iters, &mean, &s));
        *m++ = (message){"", "sendrecv", S, 4.0 * hidden, 1e6 * s};
        snprintf(m[-1].what, sizeof m[-1].what, "hidden state to the next stage (%d x %d f32)", S, dim);
        LOOM_TRY(timed2(c, OP_ALL_REDUCE, hidden, warm, iters, &mean, &s));
        *m++ = (message){"", "all_reduce", S, 4.0 * hidden, 1e6 * s};
        snprintf(m[-1].what, sizeof m[-1].what, "TP all-reduce, twice a layer (%d x %d f32)", S, dim);
        LOOM_TRY(step_message(c, true, step, warm, iters, &s));
        *m++ = (message){"", "broadcast", S, (double)step, 1e6 * s};
        snprintf(m[-1].what, sizeof m[-1].what, "Step broadcast in a TP group (8 B size + %zu B)", step);
        LOOM_TRY(step_message(c, false, step, warm, iters, &s));
        *m++ = (message){"", "sendrecv", S, (double)step, 1e6 * s};
        snprintf(m[-1].what, sizeof m[-1].what, "Step to the next stage (8 B size + %zu B)", step);
        LOOM_TRY(timed2(c, OP_SENDRECV, (size_t)S * 2, warm, iters, &mean, &s));
        *m++ = (message){"", "sendrecv", S, 8.0 * S, 1e6 * s};
        snprintf(m[-1].what, sizeof m[-1].what, "greedy argmax to the TP leader (%d x 8 B)", S);
        *n = (int)(m - out);
    }
    return NULL;
}

/* ------------------------------------------------------------ output */

static void print_rows(FILE *f, int op, const row *rows, int n, double avg) {
    fprintf(f, "#\n# %s%s\n", op_names[op],
            op == OP_ALL_REDUCE ? " (sum, in place)" : op == OP_ALL_GATHERV ? " (uneven: rank r sends (r+1) parts)"
                                                   : op == OP_BROADCAST ? " (root 0)" : op == OP_SENDRECV ? " (to rank+1, from rank-1)" : "");
    fprintf(f, "#%13s %12s %6s %6s %10s %10s %9s %9s %7s\n", "size (B)", "count", "type", "redop", "time (us)",
            "median", "algbw", "busbw", "#wrong");
    for (int i = 0; i < n; i++)
        fprintf(f, "%14.0f %12.0f %6s %6s %10.2f %10.2f %9.3f %9.3f %7lld\n", rows[i].bytes, rows[i].count, "float",
                op == OP_ALL_REDUCE ? "sum" : "none", rows[i].time_us, rows[i].median_us, rows[i].algbw, rows[i].busbw,
                rows[i].wrong);
    fprintf(f, "# Avg bus bandwidth    : %.3f GB/s\n", avg);
}

static loom_status write_json(const char *path, int n, int iters, int warm, bool chk, int average, row rows[N_OPS][MAX_ROWS],
                              const int *n_rows, const double *avg, const bool *on, const message *msg, int n_msg,
                              const char *model, int dim) {
    FILE *f = fopen(path, "w");
    if (!f) return loom_error(LOOM_ERR_IO, "cannot write %s", path);
    fprintf(f, "{\"loom_bench_comm\":1,\"ranks\":%d,\"backend\":\"mpi\",\"iters\":%d,\"warmup_iters\":%d,\"check\":%s,"
               "\"average\":%d,\"ops\":[",
            n, iters, warm, chk ? "true" : "false", average);
    int first = 1;
    double sum = 0;
    int cnt = 0;
    for (int op = 0; op < N_OPS; op++) {
        if (!on[op]) continue;
        fprintf(f, "%s{\"op\":\"%s\",\"bus_factor\":%.6f,\"avg_busbw_gbs\":%.4f,\"rows\":[", first ? "" : ",",
                op_names[op], bus_factor(op, n), avg[op]);
        first = 0, sum += avg[op], cnt++;
        for (int i = 0; i < n_rows[op]; i++)
            fprintf(f, "%s{\"bytes\":%.0f,\"count\":%.0f,\"time_us\":%.4f,\"median_us\":%.4f,\"algbw_gbs\":%.5f,"
                       "\"busbw_gbs\":%.5f,\"wrong\":%lld}",
                    i ? "," : "", rows[op][i].bytes, rows[op][i].count, rows[op][i].time_us, rows[op][i].median_us,
                    rows[op][i].algbw, rows[op][i].busbw, rows[op][i].wrong);
        fprintf(f, "]}");
    }
    fprintf(f, "],\"avg_busbw_gbs\":%.4f,\"model\":", cnt ? sum / cnt : 0);
    if (model) fprintf(f, "\"%s\",\"dim\":%d", model, dim); /* a path: no quotes or controls expected */
    else fprintf(f, "null");
    fprintf(f, ",\"messages\":[");
    for (int i = 0; i < n_msg; i++)
        fprintf(f, "%s{\"what\":\"%s\",\"op\":\"%s\",\"sequences\":%d,\"bytes\":%.0f,\"time_us\":%.4f}", i ? "," : "",
                msg[i].what, msg[i].op, msg[i].sequences, msg[i].bytes, msg[i].time_us);
    fprintf(f, "]}\n");
    bool bad = ferror(f) != 0;
    if (fclose(f) != 0) bad = true;
    return bad ? loom_error(LOOM_ERR_IO, "cannot write %s", path) : NULL;
}

/* "1,16" → values in [1, 65536]; returns the count or -1. */
static int parse_seqs(const char *s, int *out, int cap) {
    int n = 0;
    for (const char *p = s; *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > 65536 || n == cap) return -1;
        out[n++] = (int)v;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return n;
}

/* ------------------------------------------------------------ the command */

int cmd_bench_comm(int argc, char **argv) {
    int64_t minb = 8, maxb = 32 << 20, factor = 2, step = 0, iters = 20, warm = 5, chk = 1, average = 1;
    const char *ops_s = "all_reduce,all_gather,all_gatherv,broadcast,sendrecv", *json = NULL, *model = NULL,
               *seqs_s = "1,16";
    const loom_arg args[] = {
        {"-b", LOOM_ARG_BYTES, &minb, "BYTES", "smallest size (nccl-tests --minbytes)"},
        {"-e", LOOM_ARG_BYTES, &maxb, "BYTES", "largest size (--maxbytes)"},
        {"-f", LOOM_ARG_INT, &factor, "F", "multiply the size by F each row (--stepfactor)"},
        {"-i", LOOM_ARG_BYTES, &step, "BYTES", "add BYTES each row instead of -f (--stepbytes); 0 = use -f"},
        {"-n", LOOM_ARG_INT, &iters, "N", "timed calls per size (--iters)"},
        {"-w", LOOM_ARG_INT, &warm, "N", "warm-up calls per size (--warmup_iters)"},
        {"-c", LOOM_ARG_INT, &chk, "0|1", "check the result of one call per size (--check)"},
        {"-a", LOOM_ARG_INT, &average, "0-3", "time over ranks: 0 rank 0, 1 mean, 2 min, 3 max (--average)"},
        {"--op", LOOM_ARG_STR, &ops_s, "LIST", "operations, comma-separated"},
        {"--model", LOOM_ARG_STR, &model, "PATH", "also time loom's per-step messages for this model's width"},
        {"--sequences", LOOM_ARG_STR, &seqs_s, "LIST", "rows of a step for those messages, comma-separated"},
        {"--json", LOOM_ARG_STR, &json, "PATH", "also write the results as JSON (loom predict reads it)"},
    };
    loom_args_result ar = loom_args_parse(
        "bench comm [-b 8] [-e 32M] [-f 2 | -i BYTES] [-n 20] [-w 5] [-c 1] [--op LIST] [--model M] [--json PATH]",
        "Times all-reduce, all-gather (even and uneven), broadcast and send/receive between the ranks of an\n"
        "mpirun job through loom's communicator, as nccl-tests reports them: per size the time per call,\n"
        "algorithm and bus bandwidth, and the wrong elements of a checked call; an average bus bandwidth\n"
        "footer. With --model, the latency of the messages loom sends every decode step.",
        args, (int)(sizeof args / sizeof args[0]), argc, argv);
    if (ar != LOOM_ARGS_OK) return ar == LOOM_ARGS_HELP ? 0 : 2;
    if (minb < 4 || maxb < minb || maxb > ((int64_t)1 << 33))
        return loom_usage_error("bench comm: -b must be >= 4 and <= -e, -e at most 8G");
    if ((step == 0 && factor < 2) || step < 0 || iters < 1 || iters > 1000000 || warm < 0 || warm > 1000000 ||
        (chk != 0 && chk != 1) || average < 0 || average > 3)
        return loom_usage_error("bench comm: -f must be >= 2 (or -i > 0), -n >= 1, -w >= 0, -c 0 or 1, -a 0..3");
    bool on[N_OPS] = {false};
    for (const char *p = ops_s; *p;) {
        size_t len = strcspn(p, ",");
        int k = -1;
        for (int o = 0; o < N_OPS; o++)
            if (strlen(op_names[o]) == len && !strncmp(p, op_names[o], len)) k = o;
        if (k < 0) return loom_usage_error("bench comm: --op takes all_reduce,all_gather,all_gatherv,broadcast,sendrecv");
        on[k] = true;
        p += len + (p[len] == ',');
    }
    int seqs[8];
    int n_seqs = parse_seqs(seqs_s, seqs, 8);
    if (n_seqs < 1) return loom_usage_error("bench comm: --sequences must be a list like 1,16 (at most 8 values)");
    size_t sizes[MAX_ROWS];
    int n_sizes = 0;
    for (int64_t b = minb; b <= maxb && n_sizes < MAX_ROWS; b = step ? b + step : b * factor) sizes[n_sizes++] = (size_t)b;

    loom_cluster_options co = {.model = NULL, .tp = 1, .pp = 1};
    loom_cluster *cl = NULL;
    loom_status st = loom_cluster_start(&co, &cl);
    if (st) return loom_fail("bench comm", st);
    loom_comm *w = loom_cluster_world(cl);
    ctx c = {w, w->size, w->rank, NULL, NULL, NULL, NULL, (int)average};
    int dim = 0;
    if (c.n < 2) st = loom_error(LOOM_ERR_INVALID, "bench comm needs at least 2 ranks: run it under mpirun -np N");
    size_t cap = (size_t)maxb + 64;
    if (!st) {
        c.a = malloc(cap), c.b = malloc(cap);
        c.counts = calloc((size_t)c.n, sizeof(size_t)), c.displs = calloc((size_t)c.n, sizeof(size_t));
        if (!c.a || !c.b || !c.counts || !c.displs) st = loom_error(LOOM_ERR_NOMEM, "out of memory for %zu-byte buffers", cap);
        else memset(c.a, 0, cap), memset(c.b, 0, cap);
    }
    if (!st && model && c.me == 0) {
        loom_gguf *g = NULL;
        loom_model_config cfg;
        st = loom_gguf_open(model, &g);
        if (!st) st = loom_model_config_read(g, &cfg);
        if (!st) dim = cfg.dim;
        loom_gguf_free(g);
    }
    if (c.n >= 2) st = loom_cluster_agree(cl, st, "setting up the bench");
    if (!st && model) st = loom_comm_broadcast(w, &dim, 1, LOOM_DT_I32, 0);
    size_t need = (size_t)seqs[0];
    for (int k = 0; k < n_seqs; k++) need = (size_t)seqs[k] > need ? (size_t)seqs[k] : need;
    if (!st && model && need * (size_t)dim * 4 + 4096 > cap)
        st = loom_error(LOOM_ERR_INVALID, "-e %lld is too small for %zu rows of width %d", (long long)maxb, need, dim);
    if (!st && c.me == 0) {
        printf("# loom bench comm: %d ranks, %s backend; -b %lld -e %lld %s%lld -n %lld -w %lld -c %lld -a %lld\n", c.n,
               w->vt->name, (long long)minb, (long long)maxb, step ? "-i " : "-f ", (long long)(step ? step : factor),
               (long long)iters, (long long)warm, (long long)chk, (long long)average);
        printf("# time: per call, %s over ranks; algbw = size / time; busbw = algbw x factor "
               "(all_reduce 2(n-1)/n, all_gather (n-1)/n, broadcast and sendrecv 1); GB/s = 1e9 B/s\n",
               average == 0 ? "rank 0's" : average == 1 ? "mean" : average == 2 ? "min" : "max");
    }
    static row rows[N_OPS][MAX_ROWS];
    int n_rows[N_OPS] = {0};
    double avg[N_OPS] = {0};
    for (int op = 0; op < N_OPS && !st; op++) {
        if (!on[op]) continue;
        for (int i = 0; i < n_sizes && !st; i++) {
            if (sizes[i] < 4 * (size_t)c.n && (op == OP_ALL_GATHER || op == OP_ALL_GATHERV)) continue;
            st = measure(&c, op, sizes[i], (int)warm, (int)iters, chk == 1, &rows[op][n_rows[op]]);
            if (!st) avg[op] += rows[op][n_rows[op]++].busbw;
        }
        if (n_rows[op]) avg[op] /= n_rows[op];
        if (!st && c.me == 0) print_rows(stdout, op, rows[op], n_rows[op], avg[op]);
        fflush(stdout);
    }
    message msg[64];
    int n_msg = 0;
    if (!st && model) st = messages(&c, dim, seqs, n_seqs, (int)warm, (int)iters, msg, &n_msg);
    if (!st && c.me == 0) {
        double sum = 0;
        int cnt = 0;
        long long wrong = 0;
        for (int op = 0; op < N_OPS; op++)
            if (on[op]) {
                sum += avg[op], cnt++;
                for (int i = 0; i < n_rows[op]; i++) wrong += rows[op][i].wrong;
            }
        printf("#\n# Out of bounds values : %lld %s\n", wrong, wrong ? "FAILED" : "OK");
        printf("# Avg bus bandwidth    : %.3f GB/s (mean over the operations above)\n", cnt ? sum / cnt : 0);
        if (n_msg) {
            printf("#\n# loom's messages per decode step (model width %d), median per call\n#%9s %10s %10s  %s\n", dim,
                   "rows", "bytes", "time (us)", "message");
            for (int i = 0; i < n_msg; i++)
                printf("%10d %10.0f %10.2f  %s\n", msg[i].sequences, msg[i].bytes, msg[i].time_us, msg[i].what);
        }
        if (json) st = write_json(json, c.n, (int)iters, (int)warm, chk == 1, (int)average, rows, n_rows, avg, on, msg,
                                  n_msg, model, dim);
        fflush(stdout);
    }
    free(c.a), free(c.b), free(c.counts), free(c.displs);
    int rc = 0;
    if (st && c.n >= 2 && loom_status_code(st) != LOOM_ERR_PEER && loom_status_code(st) != LOOM_ERR_INVALID)
        loom_cluster_abort(cl, "bench comm", st); /* a failed collective: peers may be waiting */
    if (st) rc = loom_fail("bench comm", st);
    if (!rc) {
        long long wrong = 0;
        for (int op = 0; op < N_OPS; op++)
            for (int i = 0; i < n_rows[op]; i++) wrong += rows[op][i].wrong;
        if (wrong) rc = 1; /* a backend that corrupts data fails the bench, as nccl-tests does */
    }
    loom_cluster_free(cl);
    return rc;
}
