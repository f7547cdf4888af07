/*
 * tests/test_predict.c — the cost model (parallel/predict.h).
 *
 * Links: nccl-tests' bus factors; stated figures give latency + bytes ×
 * factor / bandwidth; a measured table is hit exactly at its sizes and
 * interpolated between them. Work: a one-rank shard reads what the planner
 * (independent code) says a stage reads per token, and TP shards add up to
 * the whole model's FLOPs. Pipeline: properties any correct schedule has
 * (one sequence gains nothing from stages; compute-bound micro-batches
 * overlap; prompt chunks follow each other through the stages), each with
 * its expected value worked out by hand. Calibration: a one-rank bench
 * predicted from its own calibration comes back as measured. Inputs: bad
 * files are refused with a message naming the key.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "parallel/plan.h"
#include "parallel/predict.h"

#define OK(expr)                                                                                                       \
    do {                                                                                                               \
        loom_status s_ = (expr);                                                                                       \
        cr_assert_null(s_, "%s failed: %s", #expr, loom_status_message(s_));                                           \
    } while (0)

static void expect_error(loom_status st, const char *want) {
    cr_assert_not_null(st, "expected an error naming '%s'", want);
    cr_assert(strstr(loom_status_message(st), want), "message '%s' lacks '%s'", loom_status_message(st), want);
    loom_status_free(st);
}

static char dir[64];

static void make_dir(void) {
    snprintf(dir, sizeof dir, "/tmp/loom-predict-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void rm_dir(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

/* Writes text to dir/name and returns the path (static buffer per call site). */
static const char *put(const char *name, const char *text, char *path, size_t cap) {
    snprintf(path, cap, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    cr_assert_eq(fclose(f), 0);
    return path;
}

static bool near(double a, double b, double rel) { return fabs(a - b) <= rel * fabs(b); }

/* ------------------------------------------------------------ links */

Test(predict, bus_factors_are_nccl_tests) {
    cr_assert(near(loom_predict_bus_factor(LOOM_OP_ALL_REDUCE, 8), 1.75, 1e-12));
    cr_assert(near(loom_predict_bus_factor(LOOM_OP_ALL_GATHER, 8), 0.875, 1e-12));
    cr_assert(near(loom_predict_bus_factor(LOOM_OP_BROADCAST, 8), 1, 1e-12));
    cr_assert(near(loom_predict_bus_factor(LOOM_OP_SENDRECV, 2), 1, 1e-12));
    cr_assert(near(loom_predict_bus_factor(LOOM_OP_ALL_REDUCE, 2), 1, 1e-12));
}

Test(predict, stated_link) {
    loom_predict_link l = {.latency_s = 5e-6, .bus_bw = 10e9};
    cr_assert(near(loom_predict_comm_time(&l, LOOM_OP_ALL_REDUCE, 1e6, 4), 5e-6 + 1e6 * 1.5 / 10e9, 1e-12));
    cr_assert(near(loom_predict_comm_time(&l, LOOM_OP_SENDRECV, 1e6, 2), 5e-6 + 1e-4, 1e-12));
    cr_assert_eq(loom_predict_comm_time(&l, LOOM_OP_ALL_REDUCE, 1e6, 1), 0, "one rank reduces nothing");
    cr_assert_eq(loom_predict_comm_time(&l, LOOM_OP_ALL_GATHER, 0, 4), 0);
}

Test(predict, measured_link_table) {
    loom_predict_link l = {.ranks = 2};
    double b[] = {8, 1024, 65536}, t[] = {2e-6, 3e-6, 10e-6};
    l.n[LOOM_OP_ALL_REDUCE] = 3;
    memcpy(l.bytes[LOOM_OP_ALL_REDUCE], b, sizeof b);
    memcpy(l.secs[LOOM_OP_ALL_REDUCE], t, sizeof t);
    for (int i = 0; i < 3; i++) cr_assert(near(loom_predict_comm_time(&l, LOOM_OP_ALL_REDUCE, b[i], 2), t[i], 1e-12));
    cr_assert(near(loom_predict_comm_time(&l, LOOM_OP_ALL_REDUCE, 516, 2), 2.5e-6, 1e-12), "linear between sizes");
    cr_assert(near(loom_predict_comm_time(&l, LOOM_OP_ALL_REDUCE, 4, 2), 2e-6, 1e-12), "below: the smallest call");
    double slope = (10e-6 - 3e-6) / (65536 - 1024);
    cr_assert(near(loom_predict_comm_time(&l, LOOM_OP_ALL_REDUCE, 131072, 2), 10e-6 + slope * 65536, 1e-9));
    /* 4 ranks: not measured; latency and bus bandwidth are read off the table */
    double bw = 65536 / 10e-6 * 1.0; /* the best busbw of the table (factor 1 at 2 ranks) */
    cr_assert(near(loom_predict_comm_time(&l, LOOM_OP_ALL_REDUCE, 1e6, 4), 2e-6 + 1e6 * 1.5 / bw, 1e-9));
}

Test(predict, flops_curve_in_log_rows) {
    loom_predict_device d = {.n_curve = 2, .curve_rows = {1, 16}, .curve_flops = {10, 50}};
    cr_assert(near(loom_predict_flops_at(&d, 4), 30, 1e-12), "halfway in log 1..16");
    cr_assert(near(loom_predict_flops_at(&d, 0.5), 10, 1e-12));
    cr_assert(near(loom_predict_flops_at(&d, 64), 50, 1e-12));
    d.n_curve = 0, d.flops = 7;
    cr_assert(near(loom_predict_flops_at(&d, 3), 7, 1e-12));
}

Test(predict, step_bytes_grow_with_sequences) {
    size_t one = loom_predict_step_bytes(1, 1, 100), sixteen = loom_predict_step_bytes(16, 1, 100);
    cr_assert(one > 8 && one < 64, "one decoding sequence: %zu bytes", one);
    cr_assert(sixteen > 12 * one, "16 sequences: %zu bytes vs %zu", sixteen, one);
    cr_assert(loom_predict_step_bytes(1, 512, 0) > 512 * 2, "a 512-token chunk carries its token ids");
}

/* ------------------------------------------------------------ work of a shard */

static const char *small_model =
    "{\"layers\": 4, \"dim\": 256, \"heads\": 4, \"kv_heads\": 4, \"ffn\": 512, \"vocab\": 1000, \"type\": \"F16\"}";

static loom_plan *plan_of(const loom_plan_model *m, int tp, int pp, int seqs, int batch) {
    loom_plan_request req = loom_plan_request_defaults(tp, pp);
    req.engine.max_seqs = seqs, req.engine.ctx_size = 2048, req.engine.batch_rows = batch;
    loom_plan *p = NULL;
    OK(loom_plan_make(m, &req, NULL, &p));
    return p;
}

Test(predict, shard_reads_what_the_planner_counts, .init = make_dir, .fini = rm_dir) {
    char path[256];
    loom_plan_model m;
    OK(loom_predict_model_describe(put("m.json", small_model, path, sizeof path), &m));
    loom_plan *p = plan_of(&m, 1, 1, 1, 256);
    loom_predict_work w;
    loom_predict_rank_work(&m, &p->ranks[0].shard, LOOM_TYPE_F16, 1, 1, 0, &w);
    double mine = w.attn_bytes + w.mlp_bytes + w.head_bytes, plan = (double)p->stages[0].cost;
    double embed_row = 256 * 2; /* F16; the planner counts the one embedding row a token reads */
    cr_assert(fabs(mine + embed_row - plan) <= 0.001 * plan, "shard reads %.0f + %.0f, plan says %.0f", mine,
              embed_row, plan);
    /* FLOPs: 2 per weight of the 7 matrices and the head, per row */
    double weights = 4 * (256.0 * 256 * 4 + 3 * 256.0 * 512) + 1000.0 * 256;
    cr_assert(near(w.attn_flops + w.mlp_flops + w.head_flops, 2 * weights, 1e-12));
    loom_plan_free(p);
    loom_plan_model_free(&m);
}

Test(predict, tp_shards_add_up, .init = make_dir, .fini = rm_dir) {
    char path[256];
    loom_plan_model m;
    OK(loom_predict_model_describe(put("m.json", small_model, path, sizeof path), &m));
    loom_plan *one = plan_of(&m, 1, 1, 1, 256), *two = plan_of(&m, 2, 1, 1, 256);
    loom_predict_work w1, a, b;
    loom_predict_rank_work(&m, &one->ranks[0].shard, LOOM_TYPE_F16, 4, 4, 100, &w1);
    loom_predict_rank_work(&m, &two->ranks[0].shard, LOOM_TYPE_F16, 4, 4, 100, &a);
    loom_predict_rank_work(&m, &two->ranks[1].shard, LOOM_TYPE_F16, 4, 4, 100, &b);
    double f1 = w1.attn_flops + w1.mlp_flops + w1.head_flops;
    cr_assert(near(a.attn_flops + a.mlp_flops + a.head_flops + b.attn_flops + b.mlp_flops + b.head_flops, f1, 1e-12));
    /* bytes: the same, except the norms every TP rank reads whole */
    double norms = 4 * 2 * 4 * 256 + 4 * 256;
    double sum = a.attn_bytes + a.mlp_bytes + a.head_bytes + b.attn_bytes + b.mlp_bytes + b.head_bytes;
    cr_assert(near(sum - norms, w1.attn_bytes + w1.mlp_bytes + w1.head_bytes, 1e-9));
    loom_plan_free(one), loom_plan_free(two);
    loom_plan_model_free(&m);
}

/* A mixture of experts: one row reads and computes its k experts (what the
 * planner counts per token), the router read whole; a step of many rows
 * reads nearly every expert but computes k a row. */
Test(predict, experts_read_what_the_rows_take, .init = make_dir, .fini = rm_dir) {
    char path[256];
    loom_plan_model m;
    OK(loom_predict_model_describe(put("m.json",
                                       "{\"layers\": 4, \"dim\": 256, \"heads\": 4, \"kv_heads\": 4, \"ffn\": 128, "
                                       "\"experts\": 16, \"experts_used\": 2, \"vocab\": 1000, \"type\": \"F16\"}",
                                       path, sizeof path),
                               &m));
    cr_assert(m.cfg.n_experts == 16 && m.cfg.n_experts_used == 2 && m.cfg.ffn == 128);
    loom_plan *p = plan_of(&m, 1, 1, 1, 256);
    loom_predict_work w, many;
    loom_predict_rank_work(&m, &p->ranks[0].shard, LOOM_TYPE_F16, 1, 1, 0, &w);
    double mine = w.attn_bytes + w.mlp_bytes + w.head_bytes, plan = (double)p->stages[0].cost;
    cr_assert(fabs(mine + 256 * 2 - plan) <= 0.001 * plan, "shard reads %.0f + 512, plan says %.0f", mine, plan);
    const double expert = 3 * 256.0 * 128 * 2, router = 16 * 256.0 * 4; /* F16 experts, an F32 router */
    cr_assert(near(w.mlp_bytes, 4 * (2 * expert + router + 4 * 256), 1e-12), "mlp bytes %.0f", w.mlp_bytes);
    cr_assert(near(w.mlp_flops, 4 * (2 * 2 * 3 * 256.0 * 128 + 2 * 256.0 * 16), 1e-12));
    loom_predict_rank_work(&m, &p->ranks[0].shard, LOOM_TYPE_F16, 256, 1, 0, &many);
    cr_assert(many.mlp_bytes > 4 * 15.9 * expert && many.mlp_bytes < 4 * (16 * expert + router + 4 * 256) + 1,
              "256 rows read %.0f bytes of experts", many.mlp_bytes);
    cr_assert(near(many.mlp_flops, 256 * w.mlp_flops, 1e-12));
    /* half the experts' columns on each of two TP ranks */
    loom_plan *two = plan_of(&m, 2, 1, 1, 256);
    loom_predict_work a;
    loom_predict_rank_work(&m, &two->ranks[0].shard, LOOM_TYPE_F16, 1, 1, 0, &a);
    cr_assert(near(a.mlp_bytes - 4 * (router + 4 * 256), 4 * expert, 1e-12), "tp 2 rank 0: %.0f", a.mlp_bytes);
    const char *bad[] = {"{\"layers\": 1, \"dim\": 64, \"heads\": 1, \"kv_heads\": 1, \"ffn\": 64, \"vocab\": 9, "
                         "\"type\": \"F16\", \"experts\": 8}",
                         "{\"layers\": 1, \"dim\": 64, \"heads\": 1, \"kv_heads\": 1, \"ffn\": 64, \"vocab\": 9, "
                         "\"type\": \"F16\", \"experts\": 8, \"experts_used\": 9}"};
    for (int i = 0; i < 2; i++) {
        loom_plan_model b;
        loom_status st = loom_predict_model_describe(put("b.json", bad[i], path, sizeof path), &b);
        cr_assert(st && strstr(loom_status_message(st), "experts_used"), "%s", st ? loom_status_message(st) : "accepted");
        loom_status_free(st);
    }
    loom_plan_free(p), loom_plan_free(two);
    loom_plan_model_free(&m);
}

/* ------------------------------------------------------------ the pipeline */

/* A device that is either purely compute-bound or purely memory-bound, and
 * links too fast to matter. */
static loom_predict_cluster cluster_of(bool compute_bound) {
    loom_predict_cluster c = {.name = "test", .nodes = 1, .devices_per_node = 8};
    snprintf(c.dev.name, sizeof c.dev.name, "dev");
    c.dev.mem_bw = compute_bound ? 1e18 : 1e9;
    c.dev.flops = compute_bound ? 1e9 : 1e18;
    c.intra = (loom_predict_link){.latency_s = 1e-12, .bus_bw = 1e18};
    c.inter = c.intra;
    return c;
}

static loom_prediction run(const loom_plan_model *m, const loom_predict_cluster *c, int tp, int pp, int seqs,
                           int prompt, int batch) {
    loom_plan *p = plan_of(m, tp, pp, seqs, batch);
    loom_predict_workload w = {seqs, prompt, 10, 1};
    loom_prediction r;
    OK(loom_predict(m, p, c, &w, &r));
    loom_plan_free(p);
    return r;
}

Test(predict, pipeline_properties, .init = make_dir, .fini = rm_dir) {
    char path[256];
    loom_plan_model m;
    /* heads and layers that split evenly: per-stage and per-rank work halves exactly */
    OK(loom_predict_model_describe(put("m.json",
                                       "{\"layers\": 8, \"dim\": 256, \"heads\": 4, \"kv_heads\": 4, \"ffn\": 512, "
                                       "\"vocab\": 256, \"type\": \"F16\"}",
                                       path, sizeof path),
                                   &m));
    loom_predict_cluster cb = cluster_of(true), mb = cluster_of(false);
    /* one sequence: stages run one after the other, so no speed-up */
    loom_prediction a = run(&m, &cb, 1, 1, 1, 16, 256), b = run(&m, &cb, 1, 2, 1, 16, 256);
    cr_assert(b.decode_tps <= a.decode_tps * 1.0001, "pp 2, 1 sequence: %g vs %g tok/s", b.decode_tps, a.decode_tps);
    cr_assert(b.decode_tps >= a.decode_tps * 0.95);
    loom_prediction_free(&a), loom_prediction_free(&b);
    /* compute-bound, 4 sequences on 2 stages: 2 micro-batches of 2 overlap: round = 2 x half of a
     * 2-row step = one 4-row step of one rank over 2 -> twice the tokens/s (the head is not split
     * by stages, so allow it its share) */
    a = run(&m, &cb, 1, 1, 4, 16, 256), b = run(&m, &cb, 1, 2, 4, 16, 256);
    cr_assert_eq(b.micro_batches, 2);
    cr_assert_eq(b.micro_batch_rows, 2);
    cr_assert(b.decode_tps > 1.6 * a.decode_tps && b.decode_tps <= 2.0001 * a.decode_tps, "%g vs %g", b.decode_tps,
              a.decode_tps);
    loom_prediction_free(&a), loom_prediction_free(&b);
    /* memory-bound decode, TP 2: each rank streams half the weights: about twice as fast, never more */
    a = run(&m, &mb, 1, 1, 1, 16, 256), b = run(&m, &mb, 2, 1, 1, 16, 256);
    cr_assert(b.decode_tps <= 2.0001 * a.decode_tps && b.decode_tps > 1.8 * a.decode_tps, "%g vs %g", b.decode_tps,
              a.decode_tps);
    loom_prediction_free(&a), loom_prediction_free(&b);
    /* a 1024-token prompt in 8 chunks of 128, compute-bound, 2 balanced stages: the first chunk's trip
     * (2 halves) and 7 more halves = 4.5 chunk times instead of 8 (attention grows with the position,
     * so allow a few per cent) */
    a = run(&m, &cb, 1, 1, 1, 1024, 128), b = run(&m, &cb, 1, 2, 1, 1024, 128);
    cr_assert_eq(a.prompt_chunks, 8);
    cr_assert(near(b.ttft_s / a.ttft_s, 4.5 / 8, 0.05), "TTFT pp2 / pp1 = %g, expected 0.5625", b.ttft_s / a.ttft_s);
    loom_prediction_free(&a), loom_prediction_free(&b);
    loom_plan_model_free(&m);
}

Test(predict, too_few_devices, .init = make_dir, .fini = rm_dir) {
    char path[256];
    loom_plan_model m;
    OK(loom_predict_model_describe(put("m.json", small_model, path, sizeof path), &m));
    loom_predict_cluster c = cluster_of(true);
    c.devices_per_node = 1;
    loom_plan *p = plan_of(&m, 2, 1, 1, 256);
    loom_predict_workload w = {1, 16, 10, 1};
    loom_prediction r;
    expect_error(loom_predict(&m, p, &c, &w, &r), "needs 2 devices");
    cr_assert_null(r.ranks);
    loom_plan_free(p);
    loom_plan_model_free(&m);
}

/* ------------------------------------------------------------ calibration */

/* A one-rank bench of the small model: decode 1 and 4 sequences, a 64-token prompt. */
static const char *bench_json =
    "{\"loom_bench\":1,\"model\":\"m.gguf\",\"model_info\":{\"arch\":\"llama\",\"layers\":4,\"dim\":256,\"heads\":4,"
    "\"kv_heads\":4,\"head_dim\":64,\"ffn\":512,\"vocab\":1000,\"types\":\"F16 x28\"},"
    "\"machine\":{\"cpu\":\"x\"},\"options\":{\"ranks\":1,\"tp\":1,\"pp\":1,\"prompt_tokens\":64,\"gen_tokens\":20,"
    "\"reps\":2,\"ctx_size\":65,\"batch\":256,\"kv_type\":\"f16\"},\"results\":["
    "{\"ranks\":1,\"threads\":1,\"sequences\":1,\"prefill_tokens_per_s\":{\"mean\":900,\"values\":[800,1000]},"
    "\"decode_tokens_per_s\":{\"mean\":90,\"values\":[100,80]},\"weight_bytes_per_step\":4000000,"
    "\"membw_gb_per_s\":20.0},"
    "{\"ranks\":1,\"threads\":1,\"sequences\":4,\"prefill_tokens_per_s\":{\"mean\":950,\"values\":[950]},"
    "\"decode_tokens_per_s\":{\"mean\":300,\"values\":[300]},\"weight_bytes_per_step\":4000000,"
    "\"membw_gb_per_s\":20.0}]}";

Test(predict, calibration_round_trip, .init = make_dir, .fini = rm_dir) {
    char mp[256], bp[256], cp[256];
    put("bench.json", bench_json, bp, sizeof bp);
    put("cluster.json",
        "{\"name\": \"here\", \"nodes\": 1, \"devices_per_node\": 2, \"device\": {\"bench\": \"bench.json\"},"
        " \"intra_node\": {\"latency_us\": 2, \"bus_bw_gbs\": 5}}",
        cp, sizeof cp);
    loom_predict_cluster c;
    OK(loom_predict_cluster_load(cp, &c));
    cr_assert(near(c.dev.mem_bw, 20e9, 1e-12), "the probe's bandwidth");
    cr_assert_eq(c.dev.n_curve, 3, "points at 1, 4 and 64 rows");
    cr_assert(c.dev.curve_rows[0] == 1 && c.dev.curve_rows[1] == 4 && c.dev.curve_rows[2] == 64);
    loom_plan_model m;
    OK(loom_predict_model_describe(put("m.json", small_model, mp, sizeof mp), &m));
    /* the bench's own shapes come back as measured (fastest repetitions: 100 and 300 tok/s) */
    loom_plan *p = plan_of(&m, 1, 1, 4, 256);
    loom_predict_workload w1 = {1, 64, 10, 1}, w4 = {4, 64, 10, 1};
    loom_prediction r;
    OK(loom_predict(&m, p, &c, &w1, &r));
    cr_assert(near(r.decode_tps, 100, 1e-6), "decode 1: %g", r.decode_tps);
    cr_assert(near(r.prefill_tps, 1000, 0.01), "prefill: %g", r.prefill_tps);
    loom_prediction_free(&r);
    OK(loom_predict(&m, p, &c, &w4, &r));
    cr_assert(near(r.decode_tps, 300, 1e-6), "decode 4: %g", r.decode_tps);
    loom_prediction_free(&r);
    /* a device of 8 such ranks' matmul rate and a stated bandwidth */
    double f1 = c.dev.curve_flops[0];
    put("big.json",
        "{\"nodes\": 1, \"device\": {\"bench\": \"bench.json\", \"bench_scale\": 8, \"mem_bw_gbs\": 100}}", cp,
        sizeof cp);
    OK(loom_predict_cluster_load(cp, &c));
    cr_assert(near(c.dev.curve_flops[0], 8 * f1, 1e-12));
    cr_assert(near(c.dev.mem_bw, 100e9, 1e-12));
    loom_plan_free(p);
    loom_plan_model_free(&m);
}

/* A calibration whose prefill read a big lm head (vocab 64000 x dim 256 in
 * F16: 33 MB, a third of a 32-token prefill's time at the probe's 20 GB/s)
 * still gives its own prefill back: the head's read is charged apart from
 * the FLOP rate, not twice (predict.c: calibrated_prefill). */
Test(predict, calibration_round_trip_big_head, .init = make_dir, .fini = rm_dir) {
    char mp[256], bp[256], cp[256];
    put("bench.json",
        "{\"loom_bench\":1,\"model\":\"m.gguf\",\"model_info\":{\"arch\":\"llama\",\"layers\":4,\"dim\":256,\"heads\":4,"
        "\"kv_heads\":4,\"head_dim\":64,\"ffn\":512,\"vocab\":64000,\"types\":\"F16 x28\"},"
        "\"machine\":{\"cpu\":\"x\"},\"options\":{\"ranks\":1,\"tp\":1,\"pp\":1,\"prompt_tokens\":32,\"gen_tokens\":20,"
        "\"reps\":1,\"ctx_size\":65,\"batch\":256,\"kv_type\":\"f16\"},\"results\":["
        "{\"ranks\":1,\"threads\":1,\"sequences\":1,\"prefill_tokens_per_s\":{\"mean\":6000,\"values\":[6000]},"
        "\"decode_tokens_per_s\":{\"mean\":300,\"values\":[300]},\"weight_bytes_per_step\":36000000,"
        "\"membw_gb_per_s\":20.0},"
        "{\"ranks\":1,\"threads\":1,\"sequences\":2,\"prefill_tokens_per_s\":{\"mean\":6000,\"values\":[6000]},"
        "\"decode_tokens_per_s\":{\"mean\":560,\"values\":[560]},\"weight_bytes_per_step\":36000000,"
        "\"membw_gb_per_s\":20.0}]}",
        bp, sizeof bp);
    put("cluster.json", "{\"nodes\": 1, \"devices_per_node\": 1, \"device\": {\"bench\": \"bench.json\"}}", cp,
        sizeof cp);
    loom_predict_cluster c;
    OK(loom_predict_cluster_load(cp, &c));
    loom_plan_model m;
    OK(loom_predict_model_describe(
        put("m.json",
            "{\"layers\": 4, \"dim\": 256, \"heads\": 4, \"kv_heads\": 4, \"ffn\": 512, \"vocab\": 64000, \"type\": \"F16\"}",
            mp, sizeof mp),
        &m));
    loom_plan *p = plan_of(&m, 1, 1, 2, 256);
    loom_predict_workload w1 = {1, 32, 10, 1}, w2 = {2, 32, 10, 1};
    loom_prediction r;
    OK(loom_predict(&m, p, &c, &w1, &r));
    cr_assert(near(r.decode_tps, 300, 1e-6), "decode 1: %g", r.decode_tps);
    cr_assert(near(r.prefill_tps, 6000, 1e-6), "prefill: %g (6000 measured)", r.prefill_tps);
    loom_prediction_free(&r);
    OK(loom_predict(&m, p, &c, &w2, &r));
    cr_assert(near(r.decode_tps, 560, 1e-6), "decode 2: %g", r.decode_tps);
    cr_assert(near(r.prefill_tps, 6000, 1e-6), "prefill with 2 sequences: %g (6000 measured)", r.prefill_tps);
    loom_prediction_free(&r);
    loom_plan_free(p);
    loom_plan_model_free(&m);
}

/* ------------------------------------------------------------ bad inputs */

Test(predict, bad_files_name_the_key, .init = make_dir, .fini = rm_dir) {
    char path[256];
    loom_plan_model m;
    expect_error(loom_predict_model_describe(put("a.json", "{\"layers\": 4, \"dmi\": 3}", path, sizeof path), &m),
                 "unknown key \"dmi\"");
    expect_error(loom_predict_model_describe(
                     put("b.json",
                         "{\"layers\": 4, \"dim\": 256, \"heads\": 4, \"kv_heads\": 4, \"ffn\": 500, \"mlp\": \"plain\", "
                         "\"vocab\": 100, \"type\": \"F16\"}",
                         path, sizeof path),
                     &m),
                 "multiple of 3");
    expect_error(loom_predict_model_describe(
                     put("c.json",
                         "{\"layers\": 4, \"dim\": 256, \"heads\": 4, \"kv_heads\": 4, \"ffn\": 512, \"vocab\": 100, "
                         "\"type\": \"Q9_X\"}",
                         path, sizeof path),
                     &m),
                 "unknown weight type \"Q9_X\"");
    loom_predict_cluster c;
    expect_error(loom_predict_cluster_load(put("d.json",
                                               "{\"nodes\": 1, \"devices_per_node\": 4, \"device\": {\"mem_bw_gbs\": 1, "
                                               "\"tflops\": 1}}",
                                               path, sizeof path),
                                           &c),
                 "\"intra_node\" is needed");
    expect_error(loom_predict_cluster_load(put("e.json", "{\"nodes\": 1, \"device\": {\"mem_bw_gbs\": 1}}", path,
                                               sizeof path),
                                           &c),
                 "needs \"mem_bw_gbs\" and \"tflops\"");
    expect_error(loom_predict_cluster_load(put("f.json", "{\"nodes\": -2, \"device\": {}}", path, sizeof path), &c),
                 "\"nodes\" = -2");
    expect_error(loom_predict_cluster_load(put("g.json", "{\"nodes\": 1,", path, sizeof path), &c), "g.json:");
}

Test(predict, plain_mlp_is_planned_as_gated, .init = make_dir, .fini = rm_dir) {
    char path[256];
    loom_plan_model m;
    OK(loom_predict_model_describe(put("gpt.json",
                                       "{\"layers\": 2, \"dim\": 768, \"heads\": 12, \"kv_heads\": 12, \"ffn\": 3072, "
                                       "\"mlp\": \"plain\", \"vocab\": 50257, \"type\": \"F16\"}",
                                       path, sizeof path),
                                   &m));
    cr_assert_eq(m.cfg.ffn, 2048, "2/3 of 3072: the same parameters in three matrices");
    cr_assert_eq(m.cfg.head_dim, 64);
    cr_assert(!m.cfg.tied_embeddings);
    loom_plan_model_free(&m);
}
