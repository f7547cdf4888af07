/*
 * parallel/predict_io.c — the cost model's inputs from JSON files (contract
 * in predict.h): a cluster description, `loom bench` results that calibrate
 * a device, `loom bench comm` results that measure a link, and a model
 * description for models without a GGUF file.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "parallel/predict.h"

/* ------------------------------------------------------------ helpers */

static loom_status open_json(const char *path, json_t **out) {
    json_error_t e;
    *out = json_load_file(path, JSON_REJECT_DUPLICATES, &e);
    if (!*out) return loom_error(LOOM_ERR_FORMAT, "%s:%d: %s", path, e.line, e.text);
    if (!json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return loom_error(LOOM_ERR_FORMAT, "%s: expected a JSON object", path);
    }
    return NULL;
}

/* Every key of object o must be one of `keys` (NULL-terminated). */
static loom_status known_keys(json_t *o, const char *const *keys, const char *path, const char *what) {
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        bool ok = false;
        for (int i = 0; keys[i] && !ok; i++) ok = !strcmp(k, keys[i]);
        if (!ok) return loom_error(LOOM_ERR_FORMAT, "%s: unknown key \"%s\" in %s", path, k, what);
    }
    return NULL;
}

/* A number at key (absent: *v keeps its value); must lie in [lo, hi]. */
static loom_status num(json_t *o, const char *key, double lo, double hi, const char *path, double *v) {
    json_t *x = json_object_get(o, key);
    if (!x) return NULL;
    if (!json_is_number(x)) return loom_error(LOOM_ERR_FORMAT, "%s: \"%s\" must be a number", path, key);
    double d = json_number_value(x);
    if (!(d >= lo && d <= hi)) return loom_error(LOOM_ERR_FORMAT, "%s: \"%s\" = %g is outside %g..%g", path, key, d, lo, hi);
    *v = d;
    return NULL;
}

static loom_status str(json_t *o, const char *key, const char *path, const char **v) {
    json_t *x = json_object_get(o, key);
    if (!x) return NULL;
    if (!json_is_string(x)) return loom_error(LOOM_ERR_FORMAT, "%s: \"%s\" must be a string", path, key);
    *v = json_string_value(x);
    return NULL;
}

/* `rel` relative to the directory of `base` (absolute paths unchanged). */
static void resolve(const char *base, const char *rel, char *out, size_t cap) {
    const char *slash = strrchr(base, '/');
    if (rel[0] == '/' || !slash) snprintf(out, cap, "%s", rel);
    else snprintf(out, cap, "%.*s/%s", (int)(slash - base), base, rel);
}

/* ------------------------------------------------------------ loom bench comm */

loom_status loom_predict_link_load(const char *path, loom_predict_link *l) {
    json_t *root;
    LOOM_TRY(open_json(path, &root));
    loom_status st = NULL;
    json_t *ops = json_object_get(root, "ops"), *ranks = json_object_get(root, "ranks");
    if (!json_is_array(ops) || !json_is_integer(ranks) || json_integer_value(ranks) < 2)
        st = loom_error(LOOM_ERR_FORMAT, "%s: not `loom bench comm --json` output (needs \"ranks\" >= 2 and \"ops\")",
                        path);
    if (!st) l->ranks = (int)json_integer_value(ranks);
    size_t i;
    json_t *op;
    json_array_foreach(ops, i, op) {
        if (st) break;
        const char *name = json_string_value(json_object_get(op, "op"));
        json_t *rows = json_object_get(op, "rows");
        if (!name || !json_is_array(rows)) {
            st = loom_error(LOOM_ERR_FORMAT, "%s: ops[%zu] needs \"op\" and \"rows\"", path, i);
            break;
        }
        int k = -1;
        for (int o = 0; o < LOOM_OP_COUNT; o++)
            if (!strcmp(name, loom_predict_op_name((loom_predict_op)o))) k = o;
        if (k < 0) continue; /* the uneven all-gather and message rows are not priced by op */
        size_t j;
        json_t *row;
        l->n[k] = 0;
        json_array_foreach(rows, j, row) {
            double b = -1, t = -1;
            st = num(row, "bytes", 1, 1e15, path, &b);
            if (!st) st = num(row, "time_us", 0, 1e12, path, &t);
            if (!st) st = num(row, "median_us", 0, 1e12, path, &t); /* the typical call, when measured */
            if (st) break;
            if (b < 0 || t <= 0) {
                st = loom_error(LOOM_ERR_FORMAT, "%s: %s row %zu needs \"bytes\" and \"time_us\" > 0", path, name, j);
                break;
            }
            int n = l->n[k];
            if (n == LOOM_PREDICT_MAX_POINTS) break;
            if (n > 0 && b <= l->bytes[k][n - 1]) {
                st = loom_error(LOOM_ERR_FORMAT, "%s: %s sizes must ascend (row %zu)", path, name, j);
                break;
            }
            l->bytes[k][n] = b, l->secs[k][n] = t * 1e-6, l->n[k] = n + 1;
        }
    }
    json_decref(root);
    return st;
}

/* ------------------------------------------------------------ loom bench */

/* FLOPs of a whole model's step (see loom_predict_rank_work). */
static double model_flops(double L, double dim, double q, double kv, double ffn, double vocab, double rows,
                          double logit_rows, double ctx) {
    return L * rows * (2 * dim * (2 * q + 2 * kv) + 4 * q * ctx + 6 * dim * ffn) + logit_rows * 2 * vocab * dim;
}

/* The fastest repetition: on a shared machine noise only ever slows a run. */
static double best_of(json_t *summary) {
    json_t *vals = json_object_get(summary, "values"), *x;
    double best = 0;
    size_t i;
    json_array_foreach(vals, i, x) if (json_is_number(x) && json_number_value(x) > best) best = json_number_value(x);
    return best > 0 ? best : json_number_value(json_object_get(summary, "mean"));
}

static void add_point(loom_predict_device *d, double rows, double flops) {
    for (int i = 0; i < d->n_curve; i++)
        if (d->curve_rows[i] == rows) { /* measured twice: the faster run, as for repetitions */
            if (flops > d->curve_flops[i]) d->curve_flops[i] = flops;
            return;
        }
    if (d->n_curve == LOOM_PREDICT_MAX_POINTS) return;
    int i = d->n_curve++;
    while (i > 0 && d->curve_rows[i - 1] > rows) {
        d->curve_rows[i] = d->curve_rows[i - 1], d->curve_flops[i] = d->curve_flops[i - 1];
        i--;
    }
    d->curve_rows[i] = rows, d->curve_flops[i] = flops;
}

loom_status loom_predict_calibrate(const char *path, int threads, loom_predict_device *d) {
    json_t *root;
    LOOM_TRY(open_json(path, &root));
    loom_status st = NULL;
    json_t *mi = json_object_get(root, "model_info"), *op = json_object_get(root, "options");
    json_t *res = json_object_get(root, "results");
    double L = 0, dim = 0, heads = 0, kvh = 0, hd = 0, ffn = 0, vocab = 0, ranks = 0, prompt = 0, gen = 0, batch = 256;
    if (!json_is_object(mi) || !json_is_object(op) || !json_is_array(res))
        st = loom_error(LOOM_ERR_FORMAT, "%s: not `loom bench --json` output", path);
    if (!st) st = num(mi, "layers", 1, 1e6, path, &L);
    if (!st) st = num(mi, "dim", 1, 1e8, path, &dim);
    if (!st) st = num(mi, "heads", 1, 1e6, path, &heads);
    if (!st) st = num(mi, "kv_heads", 1, 1e6, path, &kvh);
    if (!st) st = num(mi, "ffn", 1, 1e9, path, &ffn);
    if (!st) st = num(mi, "vocab", 1, 1e9, path, &vocab);
    if (!st) st = num(mi, "head_dim", 1, 1e6, path, &hd);
    if (!st) st = num(op, "ranks", 1, 1e6, path, &ranks);
    if (!st) st = num(op, "prompt_tokens", 1, 1e9, path, &prompt);
    if (!st) st = num(op, "gen_tokens", 1, 1e9, path, &gen);
    if (!st) st = num(op, "batch", 1, 1e9, path, &batch);
    if (!st && ranks != 1)
        st = loom_error(LOOM_ERR_INVALID, "%s: calibration needs a one-rank `loom bench` (this one ran %g ranks)", path,
                        ranks);
    if (!st && hd == 0) hd = dim / heads;
    double kv_elem = 2;
    const char *kvt = json_string_value(json_object_get(op, "kv_type"));
    if (kvt && !strcmp(kvt, "f32")) kv_elem = 4;
    if (kvt && !strcmp(kvt, "q8_0")) kv_elem = 34.0 / 32;
    size_t i;
    json_t *r;
    int used = 0;
    double bw = 0, bytes1 = 0, t1 = 0;
    json_array_foreach(res, i, r) {
        if (st) break;
        double th = 0, seqs = 0, wbytes = 0, membw = 0;
        st = num(r, "threads", 1, 1e6, path, &th);
        if (!st) st = num(r, "sequences", 1, 1e9, path, &seqs);
        if (!st) st = num(r, "weight_bytes_per_step", 0, 1e18, path, &wbytes);
        if (!st) st = num(r, "membw_gb_per_s", 0, 1e9, path, &membw);
        if (st || (threads > 0 && th != threads)) continue;
        if (threads <= 0) threads = (int)th;
        double dec = best_of(json_object_get(r, "decode_tokens_per_s"));
        double pre = best_of(json_object_get(r, "prefill_tokens_per_s"));
        if (!(dec > 0) || !(pre > 0)) {
            st = loom_error(LOOM_ERR_FORMAT, "%s: results[%zu] has no decode or prefill speed", path, i);
            break;
        }
        double ctx = gen / 2, t = seqs / dec; /* one step of `seqs` rows; a 1-token prompt then gen tokens */
        add_point(d, seqs, model_flops(L, dim, heads * hd, kvh * hd, ffn, vocab, seqs, seqs, ctx) / t);
        double rows = prompt < batch ? prompt : batch, tp = prompt / pre;
        const double pf = model_flops(L, dim, heads * hd, kvh * hd, ffn, vocab, prompt, 1, prompt / 2);
        add_point(d, rows, pf / tp);
        int k = 0; /* each row count once: every result ran the same prompt, add_point kept the fastest */
        while (k < d->n_pre && d->pre_rows[k] != rows) k++;
        if (k == d->n_pre && k < LOOM_PREDICT_MAX_POINTS) d->pre_rows[k] = rows, d->pre_flops[d->n_pre++] = pf;
        if (d->n_cal < LOOM_PREDICT_MAX_POINTS) d->cal_rows[d->n_cal] = seqs, d->cal_context[d->n_cal++] = ctx;
        double bytes = wbytes + seqs * ctx * 2 * L * kvh * hd * kv_elem;
        if (membw > 0) bw = bw > membw * 1e9 ? bw : membw * 1e9;
        if (seqs == 1 || bytes1 == 0) bytes1 = bytes, t1 = t;
        used++;
    }
    json_decref(root);
    if (!st && used == 0) st = loom_error(LOOM_ERR_INVALID, "%s: no result with %d thread(s) per rank", path, threads);
    if (st) return st;
    /* memory: the probe's bandwidth, else the stated one, never slower than decode itself read */
    if (bw > 0) d->mem_bw = bw;
    if (d->mem_bw <= 0 || bytes1 / d->mem_bw > t1) d->mem_bw = bytes1 / t1;
    d->threads = threads;
    d->cal_layers = (int)L, d->cal_dim = (int)dim, d->cal_vocab = (int)vocab;
    return NULL;
}

/* ------------------------------------------------------------ cluster */

static loom_status load_link(json_t *o, const char *path, const char *what, loom_predict_link *l) {
    static const char *const keys[] = {"latency_us", "bus_bw_gbs", "comm", "note", NULL};
    if (!json_is_object(o)) return loom_error(LOOM_ERR_FORMAT, "%s: \"%s\" must be an object", path, what);
    LOOM_TRY(known_keys(o, keys, path, what));
    double lat = 0, bw = 0;
    const char *comm = NULL;
    LOOM_TRY(num(o, "latency_us", 0, 1e9, path, &lat));
    LOOM_TRY(num(o, "bus_bw_gbs", 0, 1e9, path, &bw));
    LOOM_TRY(str(o, "comm", path, &comm));
    l->latency_s = lat * 1e-6, l->bus_bw = bw * 1e9;
    if (comm) {
        char p[4096];
        resolve(path, comm, p, sizeof p);
        LOOM_TRY(loom_predict_link_load(p, l));
    }
    if (!comm && bw <= 0)
        return loom_error(LOOM_ERR_FORMAT, "%s: \"%s\" needs \"bus_bw_gbs\" or a measured \"comm\" file", path, what);
    return NULL;
}

loom_status loom_predict_cluster_load(const char *path, loom_predict_cluster *c) {
    static const char *const top[] = {"name", "nodes", "devices_per_node", "device", "intra_node", "inter_node",
                                      "note", "source", NULL};
    static const char *const dev[] = {"name",  "memory_gib", "mem_bw_gbs", "tflops", "bench", "bench_scale", "threads",
                                      "layer_overhead_us", "step_overhead_us", "note", "source", NULL};
    memset(c, 0, sizeof *c);
    json_t *root;
    LOOM_TRY(open_json(path, &root));
    loom_status st = known_keys(root, top, path, "the cluster");
    const char *name = path, *dname = "device", *bench = NULL;
    double nodes = 1, dpn = 1, mem = 0, bw = 0, tf = 0, th = 0, lo = 0, so = 0, scale = 1;
    json_t *d = json_object_get(root, "device");
    if (!st) st = str(root, "name", path, &name);
    if (!st) st = num(root, "nodes", 1, 1e6, path, &nodes);
    if (!st) st = num(root, "devices_per_node", 1, 1e6, path, &dpn);
    if (!st && !json_is_object(d)) st = loom_error(LOOM_ERR_FORMAT, "%s: \"device\" must be an object", path);
    if (!st) st = known_keys(d, dev, path, "the device");
    if (!st) st = str(d, "name", path, &dname);
    if (!st) st = num(d, "memory_gib", 0, 1e9, path, &mem);
    if (!st) st = num(d, "mem_bw_gbs", 0, 1e9, path, &bw);
    if (!st) st = num(d, "tflops", 0, 1e9, path, &tf);
    if (!st) st = num(d, "threads", 0, 1e6, path, &th);
    if (!st) st = num(d, "layer_overhead_us", 0, 1e9, path, &lo);
    if (!st) st = num(d, "step_overhead_us", 0, 1e9, path, &so);
    if (!st) st = str(d, "bench", path, &bench);
    if (!st) st = num(d, "bench_scale", 1e-6, 1e6, path, &scale);
    if (!st) {
        snprintf(c->name, sizeof c->name, "%s", name);
        snprintf(c->dev.name, sizeof c->dev.name, "%s", dname);
        c->nodes = (int)nodes, c->devices_per_node = (int)dpn;
        c->dev.mem_bytes = mem * 1073741824.0, c->dev.mem_bw = bw * 1e9, c->dev.flops = tf * 1e12;
        c->dev.layer_overhead_s = lo * 1e-6, c->dev.step_overhead_s = so * 1e-6, c->dev.threads = (int)th;
    }
    if (!st && bench) {
        char p[4096];
        resolve(path, bench, p, sizeof p);
        double stated_bw = c->dev.mem_bw;
        st = loom_predict_calibrate(p, (int)th, &c->dev);
        /* a device of `bench_scale` times the benched one (more cores of the same kind): its matmul
         * rate scales; its read bandwidth is the stated one when given */
        for (int i = 0; !st && i < c->dev.n_curve; i++) c->dev.curve_flops[i] *= scale;
        if (!st && scale != 1) c->dev.mem_bw = stated_bw > 0 ? stated_bw : c->dev.mem_bw * scale;
        if (!st && scale != 1 && stated_bw > 0) c->dev.n_cal = 0; /* the stated bandwidth stands */
    }
    if (!st && scale != 1 && !bench)
        st = loom_error(LOOM_ERR_FORMAT, "%s: \"bench_scale\" needs a \"bench\" file to scale", path);
    if (!st && !bench && (bw <= 0 || tf <= 0))
        st = loom_error(LOOM_ERR_FORMAT, "%s: the device needs \"mem_bw_gbs\" and \"tflops\", or a \"bench\" file", path);
    json_t *intra = json_object_get(root, "intra_node"), *inter = json_object_get(root, "inter_node");
    if (!st && intra) st = load_link(intra, path, "intra_node", &c->intra);
    if (!st && inter) st = load_link(inter, path, "inter_node", &c->inter);
    if (!st && !intra && c->devices_per_node > 1)
        st = loom_error(LOOM_ERR_FORMAT, "%s: \"intra_node\" is needed with several devices per node", path);
    if (!st && !inter && c->nodes > 1)
        st = loom_error(LOOM_ERR_FORMAT, "%s: \"inter_node\" is needed with several nodes", path);
    if (!st && !inter) c->inter = c->intra;
    if (!st && !intra) c->intra = c->inter;
    json_decref(root);
    return st;
}

/* ------------------------------------------------------------ model description */

static loom_status type_named(const char *name, const char *path, loom_type *t) {
    for (int i = 0; i < LOOM_TYPE_COUNT; i++) {
        const loom_type_traits *tr = loom_type_info((uint32_t)i);
        if (tr && tr->name && !strcasecmp(tr->name, name)) {
            *t = (loom_type)i;
            return NULL;
        }
    }
    return loom_error(LOOM_ERR_FORMAT, "%s: unknown weight type \"%s\" (F16, BF16, Q8_0, Q4_K, ...)", path, name);
}

loom_status loom_predict_model_describe(const char *path, loom_plan_model *m) {
    static const char *const keys[] = {"name",      "layers", "dim",  "heads",     "kv_heads",     "head_dim",
                                       "ffn",       "mlp",    "vocab", "tied",     "type",         "head_type",
                                       "ctx_train", "note",   "source", "experts", "experts_used", "shared_ffn",
                                       "dense_layers", "dense_ffn", NULL};
    memset(m, 0, sizeof *m);
    json_t *root;
    LOOM_TRY(open_json(path, &root));
    loom_status st = known_keys(root, keys, path, "the model description");
    double L = 0, dim = 0, h = 0, kv = 0, hd = 0, ffn = 0, vocab = 0, ctx = 131072, ne = 0, nu = 0, sh = 0, nd = 0, fd = 0;
    const char *mlp = "gated", *type = NULL, *head_type = NULL;
    if (!st) st = num(root, "layers", 1, 4096, path, &L);
    if (!st) st = num(root, "dim", 1, 1 << 20, path, &dim);
    if (!st) st = num(root, "heads", 1, 1 << 16, path, &h);
    if (!st) st = num(root, "kv_heads", 1, 1 << 16, path, &kv);
    if (!st) st = num(root, "head_dim", 0, 1 << 16, path, &hd);
    if (!st) st = num(root, "ffn", 1, 1 << 24, path, &ffn);
    if (!st) st = num(root, "vocab", 1, 1 << 24, path, &vocab);
    if (!st) st = num(root, "ctx_train", 1, 1 << 24, path, &ctx);
    if (!st) st = num(root, "experts", 0, LOOM_MAX_EXPERTS, path, &ne);
    if (!st) st = num(root, "experts_used", 0, LOOM_MAX_EXPERTS, path, &nu);
    if (!st && ((ne > 0) != (nu > 0 && nu <= ne) || fmod(ne, 1) != 0 || fmod(nu, 1) != 0))
        st = loom_error(LOOM_ERR_FORMAT, "%s: a mixture of experts needs \"experts\" and \"experts_used\" (1 to "
                        "\"experts\"; \"ffn\": each expert's width)", path);
    if (!st) st = num(root, "shared_ffn", 0, 1 << 22, path, &sh);
    if (!st) st = num(root, "dense_layers", 0, L, path, &nd);
    if (!st) st = num(root, "dense_ffn", 0, 1 << 22, path, &fd);
    if (!st && (sh > 0 || nd > 0) && ne == 0)
        st = loom_error(LOOM_ERR_FORMAT, "%s: \"shared_ffn\" and \"dense_layers\" describe a mixture of experts", path);
    if (!st && (nd > 0) != (fd > 0))
        st = loom_error(LOOM_ERR_FORMAT, "%s: \"dense_layers\" (leading dense MLP layers) needs \"dense_ffn\" (their "
                        "width), and the other way round", path);
    if (!st) st = str(root, "mlp", path, &mlp);
    if (!st) st = str(root, "type", path, &type);
    if (!st) st = str(root, "head_type", path, &head_type);
    if (!st && (L == 0 || dim == 0 || h == 0 || kv == 0 || ffn == 0 || vocab == 0 || !type))
        st = loom_error(LOOM_ERR_FORMAT, "%s: a model description needs layers, dim, heads, kv_heads, ffn, vocab, type",
                        path);
    if (!st && strcmp(mlp, "gated") && strcmp(mlp, "plain"))
        st = loom_error(LOOM_ERR_FORMAT, "%s: \"mlp\" must be \"gated\" (SwiGLU) or \"plain\" (GELU)", path);
    if (!st && hd == 0 && fmod(dim, h) != 0)
        st = loom_error(LOOM_ERR_FORMAT, "%s: dim is not a multiple of heads: give \"head_dim\"", path);
    if (!st && fmod(h, kv) != 0) st = loom_error(LOOM_ERR_FORMAT, "%s: kv_heads must divide heads", path);
    /* A plain MLP (up, down of width ffn) has the parameters and FLOPs of a
     * gated one (gate, up, down) of width 2/3 ffn: the planner splits both alike. */
    if (!st && !strcmp(mlp, "plain") && fmod(2 * ffn, 3) != 0)
        st = loom_error(LOOM_ERR_FORMAT, "%s: a plain MLP's ffn must be a multiple of 3 (modelled as a gated MLP of "
                        "2/3 the width)", path);
    loom_type t = LOOM_TYPE_F16, ht;
    if (!st) st = type_named(type, path, &t);
    ht = t;
    if (!st && head_type) st = type_named(head_type, path, &ht);
    json_t *tied = json_object_get(root, "tied");
    if (!st) {
        loom_model_config *c = &m->cfg;
        c->arch = LOOM_ARCH_LLAMA;
        snprintf(c->arch_name, sizeof c->arch_name, "%s", "llama");
        c->n_layers = (int)L, c->dim = (int)dim, c->n_heads = (int)h, c->n_kv_heads = (int)kv;
        c->head_dim = hd > 0 ? (int)hd : (int)(dim / h), c->rope_dim = c->head_dim;
        c->ffn = !strcmp(mlp, "plain") ? (int)(2 * ffn / 3) : (int)ffn;
        c->vocab = (int)vocab, c->ctx_train = (int)ctx, c->rope_base = 10000, c->rope_freq_scale = 1;
        c->norm_eps = 1e-5f, c->tied_embeddings = json_is_true(tied);
        c->n_experts = (int)ne, c->n_experts_used = (int)nu, c->expert_norm = ne > 0;
        c->ffn_shared = (int)sh, c->n_dense_lead = (int)nd, c->ffn_dense = (int)fd; /* DeepSeek-V3 / GLM-4.5 style */
        m->embed = t, m->head = c->tied_embeddings ? t : ht;
        m->layers = calloc((size_t)L, sizeof *m->layers);
        if (!m->layers) st = loom_error(LOOM_ERR_NOMEM, "out of memory for %g layers", L);
        for (int l = 0; !st && l < (int)L; l++) m->layers[l] = (loom_plan_layer){t, t, t, t, t, t, t, LOOM_TYPE_F32, t, t, t, LOOM_TYPE_F32, LOOM_TYPE_F32};
    }
    json_decref(root);
    return st;
}
