/*
 * launch/cmd_predict.c — `loom predict`: how fast a model would run on a
 * cluster described in JSON, split tp × pp (the arithmetic is
 * parallel/predict.h; the split is the plan `loom plan` makes).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "launch/args.h"
#include "launch/commands.h"
#include "launch/launch_util.h"
#include "launch/predict_cli.h"
#include "parallel/plan.h"
#include "parallel/predict.h"

static int fail(loom_status st) {
    fprintf(stderr, "loom predict: %s\n", loom_status_message(st));
    loom_code c = loom_status_code(st);
    loom_status_free(st);
    return c == LOOM_ERR_PLAN || c == LOOM_ERR_INVALID ? 2 : 1;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcasecmp(s + n - k, suffix);
}

loom_status loom_predict_open_model(const char *path, loom_plan_model *m) {
    if (ends_with(path, ".json")) return loom_predict_model_describe(path, m);
    loom_gguf *g = NULL;
    loom_model_config cfg;
    loom_status st = loom_gguf_open(path, &g);
    if (!st) st = loom_model_config_read(g, &cfg);
    if (!st) st = loom_plan_model_read(g, &cfg, m);
    loom_gguf_free(g);
    return st;
}

loom_status loom_predict_hosts(const loom_predict_cluster *c, int world, char ***names) {
    *names = calloc((size_t)world, sizeof **names);
    if (!*names) return loom_error(LOOM_ERR_NOMEM, "out of memory");
    for (int r = 0; r < world; r++) {
        (*names)[r] = malloc(32);
        if (!(*names)[r]) return loom_error(LOOM_ERR_NOMEM, "out of memory");
        snprintf((*names)[r], 32, "node%d", r / (c->devices_per_node > 0 ? c->devices_per_node : 1));
    }
    return NULL;
}

void loom_predict_hosts_free(char **names, int world) {
    for (int r = 0; names && r < world; r++) free(names[r]);
    free(names);
}

int cmd_predict(int argc, char **argv) {
    const char *model = NULL, *cluster = NULL, *kv_type = "f16";
    int64_t tp = 1, pp = 1, seqs = 1, prompt = 128, gen = 128, ctx = 0, batch = 256, dctx = -1, prompts = 1;
    bool json = false;
    const loom_arg args[] = {
        {"--model", LOOM_ARG_STR, &model, "PATH", "GGUF model (header only is read) or a model description .json"},
        {"--cluster", LOOM_ARG_STR, &cluster, "PATH", "cluster description .json (nodes, devices, links)"},
        {"--tp", LOOM_ARG_INT, &tp, "T", "tensor-parallel ranks per stage"},
        {"--pp", LOOM_ARG_INT, &pp, "P", "pipeline stages"},
        {"--sequences", LOOM_ARG_INT, &seqs, "S", "sequences decoding at once"},
        {"--prompt-tokens", LOOM_ARG_INT, &prompt, "N", "prompt length for the time to first token"},
        {"--prompts", LOOM_ARG_INT, &prompts, "B", "prompts prefilled together for the time to first token"},
        {"--gen-tokens", LOOM_ARG_INT, &gen, "G", "tokens each sequence generates (decode context)"},
        {"--decode-context", LOOM_ARG_INT, &dctx, "C", "mean positions a decoding row attends to; -1 = N + G/2"},
        {"--ctx-size", LOOM_ARG_INT, &ctx, "N", "positions per sequence planned (KV cache); 0 = N + G"},
        {"--batch", LOOM_ARG_INT, &batch, "N", "rows per forward pass at most (prefill chunk)"},
        {"--kv-type", LOOM_ARG_STR, &kv_type, "T", LOOM_KV_TYPE_HELP},
        {"--json", LOOM_ARG_FLAG, &json, NULL, "print the prediction as one JSON object"},
    };
    loom_args_result r = loom_args_parse(
        "predict --model M --cluster C.json --tp T --pp P --sequences S --prompt-tokens N [options]",
        "Predicts prefill and decode tokens/s, time to first token, inter-token latency and memory per rank of a\n"
        "model split tp x pp on the cluster C describes: the plan `loom plan` makes, each rank's bytes and FLOPs\n"
        "priced with the device's figures (or a one-rank `loom bench` calibration), each message the engine\n"
        "sends priced with the links' figures (or `loom bench comm` measurements), and the scheduler's pipeline.",
        args, (int)(sizeof args / sizeof args[0]), argc, argv);
    if (r != LOOM_ARGS_OK) return r == LOOM_ARGS_HELP ? 0 : 2;
    if (!model || !cluster) {
        fprintf(stderr, "loom predict: --model and --cluster are required (see --help)\n");
        return 2;
    }
    if (tp < 1 || pp < 1 || tp * pp > LOOM_PLAN_MAX_WORLD || seqs < 1 || seqs > 65536 || prompt < 1 ||
        prompt > (1 << 24) || gen < 0 || gen > (1 << 24) || batch < 1 || batch > 65536 || ctx < 0 || ctx > (1 << 24) ||
        dctx < -1 || dctx > (1 << 24) || prompts < 1 || prompts > 65536) {
        fprintf(stderr, "loom predict: an option is out of range (see --help)\n");
        return 2;
    }
    loom_type kvt;
    if (loom_parse_kv_type("predict", kv_type, &kvt)) return 2;
    loom_predict_cluster *c = calloc(1, sizeof *c);
    if (!c) return fail(loom_error(LOOM_ERR_NOMEM, "out of memory"));
    loom_plan_model m;
    memset(&m, 0, sizeof m);
    loom_plan *plan = NULL;
    char **hosts = NULL;
    int world = (int)(tp * pp);
    loom_status st = loom_predict_cluster_load(cluster, c);
    if (!st) st = loom_predict_open_model(model, &m);
    if (!st) st = loom_predict_hosts(c, world, &hosts);
    if (!st) {
        loom_plan_request req = loom_plan_request_defaults((int)tp, (int)pp);
        req.engine.max_seqs = (int)seqs;
        req.engine.ctx_size = (int)(ctx ? ctx : prompt + gen);
        req.engine.batch_rows = (int)batch;
        req.engine.kv_type = kvt;
        st = loom_plan_make(&m, &req, (const char *const *)hosts, &plan);
    }
    loom_prediction pr;
    memset(&pr, 0, sizeof pr);
    loom_predict_workload w = {(int)seqs, (int)prompt, (int)(dctx >= 0 ? dctx : prompt + gen / 2), (int)prompts};
    if (!st) st = loom_predict(&m, plan, c, &w, &pr);
    int rc = 0;
    if (st) {
        rc = fail(st);
    } else if (json) {
        loom_prediction_json(&pr, c, &w, stdout);
    } else {
        char moe[192];
        loom_model_describe_extras(&m.cfg, moe, sizeof moe);
        printf("model       %s: %d layers, width %d, %d/%d heads, FFN %d%s, vocab %d\n", model, m.cfg.n_layers,
               m.cfg.dim, m.cfg.n_heads, m.cfg.n_kv_heads, m.cfg.ffn, moe, m.cfg.vocab);
        loom_prediction_print(&pr, c, &w, stdout);
        for (int i = 0; i < plan->n_warnings; i++) printf("plan warning: %s\n", plan->warnings[i]);
    }
    loom_prediction_free(&pr);
    loom_plan_free(plan);
    loom_plan_model_free(&m);
    loom_predict_hosts_free(hosts, world);
    free(c);
    return rc;
}
