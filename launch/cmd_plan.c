/*
 * launch/cmd_plan.c — `loom plan`: prints the shard plan of a model for a
 * world of tp × pp ranks, without mpirun. Reads only the GGUF header and
 * tensor index, so it plans a 70B model (or a sparse header-only file from
 * `loom synth --header-only`) on any machine.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "launch/args.h"
#include "launch/commands.h"
#include "launch/launch_util.h"
#include "launch/predict_cli.h"
#include "parallel/plan.h"
#include "parallel/plan_balance.h"
#include "parallel/predict.h"

static int usage_error(const char *fmt, ...) LOOM_PRINTF(1, 2);
static int usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "loom plan: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return 2;
}

static int fail(loom_status st) {
    fprintf(stderr, "loom plan: %s\n", loom_status_message(st));
    int code = loom_status_code(st) == LOOM_ERR_PLAN || loom_status_code(st) == LOOM_ERR_INVALID ? 2 : 1;
    loom_status_free(st);
    return code;
}

/* Splits a comma-separated list in place into exactly n names. */
static int split_hosts(char *list, const char **names, int n) {
    int k = 0;
    for (char *s = list; k < n;) {
        char *c = strchr(s, ',');
        if (c) *c = 0;
        names[k++] = s;
        if (!c) break;
        s = c + 1;
    }
    return k;
}

/* What the coordinator holds of a draft model (draft_model.h): the model
 * whole with a KV cache of the target's positions, as one rank plans it;
 * bytes[0..3] weights, KV cache, workspace, and rank 0's total with them.
 * Refused when that is more than --max-memory. */
static loom_status plan_draft(const char *path, const loom_plan_request *target, const loom_plan *plan, int64_t bytes[4]) {
    loom_plan_model dm = {0};
    loom_plan *dp = NULL;
    loom_plan_request r = loom_plan_request_defaults(1, 1);
    r.engine = target->engine;
    r.engine.kv_type = LOOM_TYPE_F16;
    loom_status st = loom_predict_open_model(path, &dm);
    if (!st) st = loom_plan_make(&dm, &r, NULL, &dp);
    if (!st) {
        bytes[0] = dp->ranks[0].weight_bytes, bytes[1] = dp->ranks[0].kv_bytes, bytes[2] = dp->ranks[0].workspace_bytes;
        const loom_rank_plan *r0 = &plan->ranks[0];
        const int64_t need = bytes[3] =
            r0->weight_bytes + r0->kv_bytes + r0->workspace_bytes + bytes[0] + bytes[1] + bytes[2];
        if (target->max_memory && need > target->max_memory) {
            char a[32], b[32];
            loom_format_bytes(a, sizeof a, need);
            loom_format_bytes(b, sizeof b, target->max_memory);
            st = loom_error(LOOM_ERR_PLAN, "with the draft model rank 0 needs %s, more than --max-memory %s", a, b);
        }
    }
    loom_plan_free(dp);
    loom_plan_model_free(&dm);
    return st ? loom_error_wrap(st, "--draft-model %s", path) : NULL;
}

static void print_draft(FILE *f, const char *path, const int64_t bytes[4]) {
    char b[4][32];
    for (int i = 0; i < 4; i++) loom_format_bytes(b[i], sizeof b[i], bytes[i]);
    fprintf(f, "draft   %s on rank 0 (the coordinator), in addition: weights %s, KV cache %s, workspace %s; rank 0 needs %s\n",
            path, b[0], b[1], b[2], b[3]);
}

int cmd_plan(int argc, char **argv) {
    const char *model = NULL, *kv_type = "f16", *hosts_arg = NULL, *balance = "bytes", *draft_model = NULL;
    loom_plan_request d = loom_plan_request_defaults(1, 1);
    int64_t tp = 1, pp = 1, world = 0, ctx = d.engine.ctx_size, seqs = d.engine.max_seqs, block = d.engine.block_tokens,
            batch = d.engine.batch_rows, max_memory = 0;
    bool json = false, predict = false;
    const char *cluster = NULL;
    int64_t prompt = 128, gen = 128;
    const loom_arg args[] = {
        {"--model", LOOM_ARG_STR, &model, "PATH", "GGUF model (only its header is read)"},
        {"--tp", LOOM_ARG_INT, &tp, "N", "tensor-parallel ranks per stage"},
        {"--pp", LOOM_ARG_INT, &pp, "N", "pipeline stages"},
        {"--world", LOOM_ARG_INT, &world, "N", "ranks that will be launched (0: tp × pp); checked against tp × pp"},
        {"--ctx-size", LOOM_ARG_INT, &ctx, "N", "positions per sequence"},
        {"--sequences", LOOM_ARG_INT, &seqs, "N", "sequences at once (KV cache slots)"},
        {"--block-tokens", LOOM_ARG_INT, &block, "N", "positions per KV cache block"},
        {"--batch", LOOM_ARG_INT, &batch, "N", "rows per forward call at most (workspace)"},
        {"--kv-type", LOOM_ARG_STR, &kv_type, "T", LOOM_KV_TYPE_HELP},
        {"--balance", LOOM_ARG_STR, &balance, "B",
         "stages by bytes read per token, or by time: bytes weighted by the decode time per byte of each type "
         "measured on this machine, as a run on CPUs does (plan_balance.h)"},
        {"--max-memory", LOOM_ARG_BYTES, &max_memory, "BYTES", "memory per rank, e.g. 24G (0: no limit)"},
        {"--draft-model", LOOM_ARG_STR, &draft_model, "PATH",
         "the draft model of speculative decoding (generate/serve --draft-model): what rank 0 holds of it in addition"},
        {"--hosts", LOOM_ARG_STR, &hosts_arg, "LIST",
         "comma-separated host of each world rank, to place TP groups on one host"},
        {"--json", LOOM_ARG_FLAG, &json, NULL, "print the plan as one JSON object"},
        {"--predict", LOOM_ARG_FLAG, &predict, NULL, "also predict speed on --cluster (as loom predict does)"},
        {"--cluster", LOOM_ARG_STR, &cluster, "PATH", "cluster description .json for --predict"},
        {"--prompt-tokens", LOOM_ARG_INT, &prompt, "N", "--predict: prompt length for the time to first token"},
        {"--gen-tokens", LOOM_ARG_INT, &gen, "G", "--predict: tokens each of --sequences generates"},
    };
    loom_args_result r = loom_args_parse(
        "plan --model PATH --tp T --pp P [options]",
        "Prints which layers, heads, MLP columns and vocabulary rows each of tp × pp ranks holds, and the "
        "memory each needs. Runs without mpirun; reads only the model's header.",
        args, (int)(sizeof args / sizeof args[0]), argc, argv);
    if (r == LOOM_ARGS_HELP) return 0;
    if (r == LOOM_ARGS_ERROR) return 2;
    if (!model) return usage_error("--model PATH is required");
    if (predict && !cluster) return usage_error("--predict needs --cluster PATH");
    if (prompt < 1 || prompt > (1 << 24) || gen < 0 || gen > (1 << 24))
        return usage_error("--prompt-tokens must be 1..16777216 and --gen-tokens 0..16777216");
    const struct {
        const char *name;
        int64_t v, lo, hi;
    } ranges[] = {{"--tp", tp, 1, LOOM_PLAN_MAX_WORLD},
                  {"--pp", pp, 1, 4096},
                  {"--world", world, 0, LOOM_PLAN_MAX_WORLD},
                  {"--ctx-size", ctx, 1, 1 << 24},
                  {"--sequences", seqs, 1, 1 << 16},
                  {"--block-tokens", block, 1, 1 << 16},
                  {"--batch", batch, 1, 1 << 16},
                  {"--max-memory", max_memory, 0, INT64_MAX}};
    for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++)
        if (ranges[i].v < ranges[i].lo || ranges[i].v > ranges[i].hi)
            return usage_error("%s %" PRId64 ": expected %" PRId64 "..%" PRId64, ranges[i].name, ranges[i].v,
                               ranges[i].lo, ranges[i].hi);
    loom_type kv;
    if (loom_parse_kv_type("plan", kv_type, &kv)) return 2;
    if (strcmp(balance, "bytes") && strcmp(balance, "time"))
        return usage_error("--balance %s: expected bytes or time", balance);

    loom_plan_request req = loom_plan_request_defaults((int)tp, (int)pp);
    req.world = (int)world;
    req.engine.ctx_size = (int)ctx;
    req.engine.max_seqs = (int)seqs;
    req.engine.block_tokens = (int)block;
    req.engine.batch_rows = (int)batch;
    req.engine.kv_type = kv;
    req.max_memory = max_memory;

    int64_t n_world = world ? world : tp * pp;
    const char **hosts = NULL;
    char *host_list = NULL;
    if (hosts_arg) {
        if (n_world > LOOM_PLAN_MAX_WORLD) return usage_error("tp × pp = %" PRId64 " ranks is too many", n_world);
        hosts = calloc((size_t)n_world, sizeof *hosts);
        host_list = strdup(hosts_arg);
        if (!hosts || !host_list) {
            free(hosts);
            free(host_list);
            return usage_error("out of memory");
        }
        int n = split_hosts(host_list, hosts, (int)n_world);
        size_t commas = 0;
        for (const char *c = hosts_arg; *c; c++) commas += *c == ',';
        if (n != n_world || commas + 1 != (size_t)n_world) {
            free(hosts);
            free(host_list);
            return usage_error("--hosts names %zu hosts for a world of %" PRId64 " ranks (one per rank)", commas + 1,
                               n_world);
        }
    }

    loom_plan_model m = {0};
    loom_plan *plan = NULL;
    loom_predict_cluster *pc = predict ? calloc(1, sizeof *pc) : NULL;
    char **node_hosts = NULL;
    loom_status st = predict && !pc ? loom_error(LOOM_ERR_NOMEM, "out of memory") : NULL;
    if (!st && predict) st = loom_predict_cluster_load(cluster, pc);
    if (!st && predict && !hosts) { /* ranks fill the cluster's nodes in order */
        st = loom_predict_hosts(pc, (int)n_world, &node_hosts);
        hosts = (const char **)node_hosts;
    }
    if (!st) st = loom_predict_open_model(model, &m); /* a GGUF header, or a model description .json */
    loom_plan_balance bal;
    if (!st && !strcmp(balance, "time") && pp > 1) {
        st = loom_plan_balance_measure(&m, &req, &bal);
        req.balance = &bal;
    }
    if (!st) st = loom_plan_make(&m, &req, hosts, &plan);
    int64_t draft_bytes[4] = {0};
    if (!st && draft_model) st = plan_draft(draft_model, &req, plan, draft_bytes);
    loom_prediction pr = {0};
    loom_predict_workload w = {(int)seqs, (int)prompt, (int)(prompt + gen / 2), 1};
    if (!st && predict) st = loom_predict(&m, plan, pc, &w, &pr);
    int rc = 0;
    if (st) {
        rc = fail(st);
    } else if (json && predict) {
        printf("{\"plan\":");
        loom_plan_print(plan, stdout, true);
        printf(",\"prediction\":");
        loom_prediction_json(&pr, pc, &w, stdout);
        printf("}\n");
    } else {
        if (!json) printf("file    %s\n", model);
        loom_plan_print(plan, stdout, json);
        if (draft_model) print_draft(json ? stderr : stdout, draft_model, draft_bytes);
        if (predict) {
            printf("\n");
            loom_prediction_print(&pr, pc, &w, stdout);
        }
    }
    loom_prediction_free(&pr);
    loom_plan_free(plan);
    loom_plan_model_free(&m);
    if (node_hosts) hosts = NULL;
    loom_predict_hosts_free(node_hosts, (int)n_world);
    free(pc);
    free(hosts);
    free(host_list);
    return rc;
}
