/*
 * mpi_equivalence — multi-rank output equals single-rank output.
 *
 * Run under mpirun with --tp T --pp P (T × P ranks). Rank 0 scores the
 * tokens of reference fixture cases teacher-forced twice: on its own with
 * the whole model, and through the cluster (every rank holding only its
 * shard), and compares position by position.
 *
 * Tolerances. Pipeline stages pass float32 hidden states and compute exactly
 * what one rank computes, so with tp = 1 the logits must be bit-identical.
 * Tensor parallelism sums partial products in another order; the float
 * difference is tiny, but 8-bit activation quantization turns it into whole
 * quantization steps wherever a value sits on a rounding boundary (worst in
 * blocks holding the model's outlier dimensions), and that noise grows
 * through the layers. It is the noise of any change of summation order:
 * one rank running its AVX2 kernels instead of its AVX-512 ones differs
 * from itself by up to 0.35σ (RMS 0.064σ) on the default model. So with
 * tp > 1, per position, σ being the standard deviation of the single-rank
 * logits:
 *   - argmax equal unless the single-rank top-2 are within NEAR_TIE·σ;
 *   - after removing the common shift, max |Δ| <= MAX_DEV·σ and
 *     RMS(Δ) <= RMS_DEV·σ;
 * in a mixture of experts every position but 1 % (allowed_off), where a
 * router near tie may take another expert.
 *
 *   mpirun -np 4 mpi_equivalence --fixture F.json [--model M.gguf] --tp 2 --pp 2 [--cases N] [--draft N]
 *                                [--device cpu|cuda|host] [--ref-device cpu|cuda|host]
 * --device: where the cluster's ranks compute (host: the GPU's code path on
 * the CPU, with the staged TP communicator); --ref-device: where the
 * single-rank reference does (cpu by default).
 * A fixture made from a `loom synth` model is rebuilt from its arguments;
 * one with a LoRA adapter (lora_args) has both sides apply it, each rank
 * its own slices of it.
 *
 * Encoders (bert): the last layer's hidden states of every position take
 * the logits' place (no argmax, no generation; pass --batch >= the longest
 * prompt: an encoder takes a sequence in one batch).
 *
 * The cluster's own scores are also held against llama.cpp's in the fixture
 * with test_reference's tolerances (argmax outside REF_EPS·σ near ties;
 * last prompt position within REF_MAX_DEV·σ, RMS REF_RMS_DEV·σ; encoders:
 * the pooled embedding's cosine >= REF_EMBED_COS), so every layout is
 * checked against the independent implementation, not only against one
 * rank.
 *
 * Then the cluster generates greedily from the prompt whose reference
 * continuation reaches the highest token ids (the
 * path where TP ranks send only their vocabulary slice's argmax): every
 * generated token must be the argmax of the cluster's own teacher-forced
 * logits at its position, outside NEAR_TIE·σ near ties (prefill and decode
 * take different kernels, so the logits are close, not bit-equal); with
 * --draft N by speculative decoding, from the prompt and its reference
 * continuation followed by the prompt again.
 */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "parallel/cluster.h"
#include "parallel/comm_mpi.h"
#include "parallel/engine.h"
#include "parallel/run.h"
#include "reference.h"
#include "runtime/pooling.h"

#define NEAR_TIE 0.3f /* σ */
#define MAX_DEV 0.6f  /* σ */
#define RMS_DEV 0.12f /* σ */
/* against llama.cpp: test_reference's tolerances (the TP noise above is
 * far below them on every fixture) */
#define REF_EPS 0.3f      /* σ */
#define REF_MAX_DEV 0.25f /* σ */
#define REF_RMS_DEV 0.08f /* σ */
#define REF_EMBED_COS 0.9995

/* Positions of n that may differ beyond the tolerances: none, but in a
 * mixture of experts 1 %, rounded up — a row whose router scores two
 * experts nearly alike may take the other one where the summation order
 * (TP) or the activations' rounding (llama.cpp) differs, and then differs
 * by a whole expert's share (tests/test_reference.c). */
static int allowed_off(int n, bool experts) { return experts ? (n + 99) / 100 : 0; }

/* The cluster's scores b (n, V) against llama.cpp's in the fixture; prints
 * one line, returns whether they agree. */
static bool check_reference(const loom_ref *ref, const loom_ref_case *c, const float *b, int V, bool encoder,
                            bool experts, int tp, int pp) {
    bool ok;
    if (encoder) {
        if (!c->embedding || c->dim != V || ref->pooling < LOOM_POOL_MEAN || ref->pooling > LOOM_POOL_LAST) {
            printf("tp=%d pp=%d %-8s the fixture holds no pooled embedding of width %d  FAIL\n", tp, pp, c->name, V);
            return false;
        }
        float *mine = malloc(sizeof(float) * (size_t)V);
        loom_embedding_pool((loom_pooling)ref->pooling, b, c->n_prompt, V, true, mine);
        double dot = 0, nn = 0;
        for (int d = 0; d < V; d++) dot += (double)mine[d] * c->embedding[d], nn += (double)c->embedding[d] * c->embedding[d];
        double cosine = nn > 0 ? dot / sqrt(nn) : 0;
        ok = cosine >= REF_EMBED_COS;
        printf("tp=%d pp=%d %-8s vs llama.cpp: cosine %.6f (1 - cos %.2e)  %s\n", tp, pp, c->name, cosine, 1 - cosine,
               ok ? "ok" : "FAIL");
        free(mine);
        return ok;
    }
    if (!c->last_logits || c->vocab != V) {
        printf("tp=%d pp=%d %-8s the fixture holds no logits of width %d  FAIL\n", tp, pp, c->name, V);
        return false;
    }
    loom_ref_report rep;
    loom_ref_compare(c, b, 0.0f, &rep); /* for σ */
    loom_ref_compare(c, b, REF_EPS * rep.last_std, &rep);
    float mx = rep.last_max_dev / rep.last_std, rms = rep.last_rms_dev / rep.last_std;
    ok = rep.mismatches <= allowed_off(rep.positions, experts) && mx <= REF_MAX_DEV && rms <= REF_RMS_DEV;
    printf("tp=%d pp=%d %-8s vs llama.cpp: argmax mismatches %d  near-tie flips %d  last: max dev %.3fσ rms %.3fσ"
           "  all top-5: %.3fσ  %s\n",
           tp, pp, c->name, rep.mismatches, rep.near_tie_flips, mx, rms, rep.top5_max_dev / rep.last_std, ok ? "ok" : "FAIL");
    return ok;
}

static void die(const char *what, loom_status st) {
    fprintf(stderr, "mpi_equivalence: %s: %s\n", what, loom_status_message(st));
    MPI_Abort(MPI_COMM_WORLD, 1);
}

static bool never_eog(void *user, int32_t token) {
    (void)user, (void)token;
    return false;
}

/* Greedy generation through the cluster against its own scoring; returns
 * the number of failures. With draft > 0, speculative decoding proposes up
 * to that many tokens a step from a prompt that holds the case's prompt and
 * continuation and then its prompt again (a run the lookup finds), and some
 * proposals must be kept. */
static int check_greedy(loom_engine *e, const loom_ref_case *c, int tp, int pp, int draft) {
    const int V = loom_engine_model(e)->vocab, gen = c->n_gen < 24 ? c->n_gen : 24;
    /* with proposals: the case's prompt and continuation, then its prompt again, so the model's
     * reply repeats text the lookup finds */
    const int first = draft ? c->n_prompt + c->n_gen : c->n_prompt, n_prompt = draft ? first + c->n_prompt : first;
    int32_t *prompt = malloc(sizeof(int32_t) * (size_t)n_prompt);
    memcpy(prompt, c->ids, sizeof(int32_t) * (size_t)first);
    if (draft) memcpy(prompt + first, c->ids, sizeof(int32_t) * (size_t)c->n_prompt);
    loom_request rq = {.prompt = prompt, .n_prompt = n_prompt, .max_tokens = gen, .ignore_eos = true};
    rq.sampling = loom_sampling_defaults();
    rq.sampling.temperature = 0;
    rq.sampling.repeat_penalty = 1;
    loom_callbacks cb = {.is_eog = never_eog};
    loom_result res = {0};
    loom_scheduler_options so = {.draft_max = draft, .draft_min_ngram = 1};
    loom_run_stats rs;
    loom_status st = loom_engine_run(e, &rq, 1, &cb, &so, &res, &rs);
    if (st) die("generation", st);
    if (draft && rs.draft_accepted == 0) {
        printf("tp=%d pp=%d greedy: no proposal kept (%lld made)  FAIL\n", tp, pp, (long long)rs.draft_tokens);
        free(prompt);
        loom_result_free(&res);
        return 1;
    }
    if (res.n_tokens != gen) {
        printf("tp=%d pp=%d greedy: %d tokens (%s), expected %d  FAIL\n", tp, pp, res.n_tokens, res.stop_reason, gen);
        free(prompt);
        loom_result_free(&res);
        return 1;
    }
    const int n = n_prompt + gen;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)n);
    float *lg = malloc(sizeof(float) * (size_t)n * V);
    memcpy(ids, prompt, sizeof(int32_t) * (size_t)n_prompt);
    memcpy(ids + n_prompt, res.tokens, sizeof(int32_t) * (size_t)gen);
    free(prompt);
    st = loom_engine_score(e, ids, n, lg);
    if (st) die("scoring the generated tokens", st);
    int mism = 0, ties = 0;
    for (int i = 0; i < gen; i++) {
        const float *x = lg + (size_t)(n_prompt - 1 + i) * V;
        int ax = 0;
        double mean = 0, var = 0;
        for (int v = 0; v < V; v++) {
            if (x[v] > x[ax]) ax = v;
            mean += x[v];
        }
        mean /= V;
        for (int v = 0; v < V; v++) var += ((double)x[v] - mean) * ((double)x[v] - mean);
        const int32_t t = ids[n_prompt + i];
        if (t == ax) continue;
        if (t >= 0 && t < V && x[ax] - x[t] < NEAR_TIE * sqrt(var / V)) ties++;
        else mism++;
    }
    printf("tp=%d pp=%d greedy   tokens %4d  not the argmax %d  near ties %d", tp, pp, gen, mism, ties);
    if (draft) printf("  proposals %lld, kept %lld", (long long)rs.draft_tokens, (long long)rs.draft_accepted);
    printf("  %s\n", mism ? "FAIL" : "ok");
    free(ids);
    free(lg);
    loom_result_free(&res);
    return mism != 0;
}

int main(int argc, char **argv) {
    const char *fixture = NULL, *model = NULL;
    int tp = 1, pp = 1, max_cases = 1000, batch = 64, draft = 0;
    loom_type kv_type = LOOM_TYPE_F16;
    loom_device_kind device = LOOM_DEVICE_CPU, ref_device = LOOM_DEVICE_CPU;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--fixture")) fixture = argv[i + 1];
        else if (!strcmp(argv[i], "--model")) model = argv[i + 1];
        else if (!strcmp(argv[i], "--tp")) tp = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--pp")) pp = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--cases")) max_cases = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch")) batch = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--draft")) draft = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--kv-type"))
            kv_type = !strcmp(argv[i + 1], "f32") ? LOOM_TYPE_F32 : !strcmp(argv[i + 1], "q8_0") ? LOOM_TYPE_Q8_0 : LOOM_TYPE_F16;
        else if (!strcmp(argv[i], "--device") || !strcmp(argv[i], "--ref-device")) {
            loom_status ks = loom_device_kind_parse(argv[i + 1], !strcmp(argv[i], "--device") ? &device : &ref_device);
            if (ks) {
                fprintf(stderr, "mpi_equivalence: %s\n", loom_status_message(ks));
                return 2;
            }
        }
    }
    loom_status st = loom_mpi_init(&argc, &argv);
    if (st) {
        fprintf(stderr, "%s\n", loom_status_message(st));
        return 1;
    }
    int rank, world;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    if (!fixture) {
        if (rank == 0) fprintf(stderr, "usage: mpi_equivalence --fixture F.json [--model M] --tp T --pp P\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    loom_ref ref;
    st = loom_ref_load(fixture, &ref);
    if (st) die("fixture", st);
    char tmp[256];
    if (ref.synth_args) { /* rank 0 writes the model, everyone reads it */
        snprintf(tmp, sizeof tmp, "/tmp/loom-mpi-synth-%d.gguf", (int)getppid());
        if (rank == 0) {
            if (loom_test_synth(ref.synth_args, tmp) != 0 || loom_test_fnv1a_file(tmp) != ref.fnv1a64) {
                fprintf(stderr, "mpi_equivalence: loom synth %s did not rebuild the fixture's model\n", ref.synth_args);
                MPI_Abort(MPI_COMM_WORLD, 1);
            }
        }
        MPI_Barrier(MPI_COMM_WORLD);
        model = tmp;
    }
    if (!model) model = LOOM_DEFAULT_MODEL;
    char adapter[256];
    loom_lora_spec lora = {adapter, (float)ref.lora_scale};
    if (ref.lora_args) {
        snprintf(adapter, sizeof adapter, "/tmp/loom-mpi-lora-%d.gguf", (int)getppid());
        if (rank == 0) {
            char args[1024];
            snprintf(args, sizeof args, "--lora-of %s %s", model, ref.lora_args);
            if (loom_test_synth(args, adapter) != 0 || loom_test_fnv1a_file(adapter) != ref.lora_fnv1a64) {
                fprintf(stderr, "mpi_equivalence: loom synth %s did not rebuild the fixture's adapter\n", args);
                MPI_Abort(MPI_COMM_WORLD, 1);
            }
        }
        MPI_Barrier(MPI_COMM_WORLD);
    }
    loom_engine_options o = loom_engine_defaults();
    o.n_threads = 1;
    o.ctx_size = 1024;
    o.max_seqs = 1;
    o.batch_rows = batch;
    o.kv_type = kv_type;
    o.device = device;
    loom_cluster_options co = {.model = model, .tp = tp, .pp = pp, .engine = o, .watchdog_timeout_s = 60,
                               .lora = &lora, .n_lora = ref.lora_args ? 1 : 0};
    loom_cluster *cl;
    st = loom_cluster_start(&co, &cl);
    if (st) die("cluster", st);
    loom_engine *e;
    st = loom_cluster_engine(cl, NULL, NULL, NULL, &e);
    if (st) die("engine", st);

    int failures = 0;
    if (rank == 0) {
        loom_engine *single;
        loom_engine_options so = o;
        so.device = ref_device;
        so.device_ordinal = loom_cluster_engine_options(cl)->device_ordinal;
        st = loom_engine_create(loom_cluster_model(cl), &so, NULL, NULL, NULL, &single);
        if (!st && ref.lora_args) st = loom_engine_add_lora(single, adapter, lora.scale);
        if (st) die("single-rank engine", st);
        const bool encoder = loom_engine_model(e)->encoder, experts = loom_engine_model(e)->n_experts > 0;
        int V = encoder ? loom_engine_model(e)->dim : loom_engine_model(e)->vocab;
        for (int i = 0; i < ref.n && i < max_cases; i++) {
            loom_ref_case *c = &ref.cases[i];
            int n = c->n_prompt + c->n_gen;
            float *a = malloc(sizeof(float) * (size_t)n * V), *b = malloc(sizeof(float) * (size_t)n * V);
            st = loom_engine_score(single, c->ids, n, a);
            if (!st) st = loom_engine_score(e, c->ids, n, b);
            if (st) die("scoring", st);
            int mism = 0, flips = 0, off = 0; /* off: positions beyond MAX_DEV / RMS_DEV or a mismatch */
            double worst_max = 0, worst_rms = 0, exact_diff = 0;
            for (int p = 0; p < n; p++) {
                const float *x = a + (size_t)p * V, *y = b + (size_t)p * V;
                int ax = 0, ay = 0;
                double mean = 0, mx = 0, var = 0;
                for (int v = 0; v < V; v++) {
                    if (x[v] > x[ax]) ax = v;
                    if (y[v] > y[ay]) ay = v;
                    mean += (double)y[v] - x[v];
                    mx += x[v];
                    double d = fabs((double)y[v] - x[v]);
                    if (d > exact_diff) exact_diff = d;
                }
                mean /= V;
                mx /= V;
                double ss = 0, dmax = 0;
                for (int v = 0; v < V; v++) {
                    double d = (double)y[v] - x[v] - mean;
                    ss += d * d;
                    if (fabs(d) > dmax) dmax = fabs(d);
                    var += ((double)x[v] - mx) * ((double)x[v] - mx);
                }
                double sigma = sqrt(var / V);
                int second = ax == 0 ? 1 : 0;
                for (int v = 0; v < V; v++)
                    if (v != ax && x[v] > x[second]) second = v;
                bool bad = dmax / sigma > MAX_DEV || sqrt(ss / V) / sigma > RMS_DEV;
                if (ax != ay && !encoder) {
                    if (x[ax] - x[second] < NEAR_TIE * sigma) flips++;
                    else mism++, bad = true;
                }
                off += bad;
                if (dmax / sigma > worst_max) worst_max = dmax / sigma;
                if (sqrt(ss / V) / sigma > worst_rms) worst_rms = sqrt(ss / V) / sigma;
            }
            bool ok = tp == 1 ? exact_diff == 0 : off <= allowed_off(n, experts);
            printf("tp=%d pp=%d %-8s positions %4d  argmax mismatches %d  near-tie flips %d  max |dlogit| %.2e"
                   "  worst max dev %.3fσ rms %.3fσ  beyond them at %d  %s\n",
                   tp, pp, c->name, n, mism, flips, exact_diff, worst_max, worst_rms, off, ok ? "ok" : "FAIL");
            failures += !ok;
            failures += !check_reference(&ref, c, b, V, encoder, experts, tp, pp);
            free(a);
            free(b);
        }
        /* the case whose reference continuation reaches the highest ids, so that
         * the winning logit lies in a later rank's vocabulary slice */
        int pick = 0, top = -1;
        for (int i = 0; i < ref.n; i++)
            for (int j = 0; j < ref.cases[i].n_gen && j < 24; j++)
                if (ref.cases[i].ids[ref.cases[i].n_prompt + j] > top) top = ref.cases[i].ids[ref.cases[i].n_prompt + j], pick = i;
        if (ref.n > 0 && !encoder) failures += check_greedy(e, &ref.cases[pick], tp, pp, draft);
        loom_engine_free(single);
        st = loom_engine_shutdown(e);
        if (st) die("shutdown", st);
    } else {
        st = loom_engine_work(e);
        if (st) die("worker", st);
    }
    loom_engine_free(e);
    st = loom_comm_broadcast(loom_cluster_world(cl), &failures, 1, LOOM_DT_I32, 0);
    if (st) die("broadcast", st);
    loom_cluster_free(cl); /* finalizes MPI */
    if (ref.synth_args && rank == 0) unlink(tmp);
    if (ref.lora_args && rank == 0) unlink(adapter);
    loom_ref_free(&ref);
    return failures ? 1 : 0;
}
