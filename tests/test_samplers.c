/*
 * tests/test_samplers.c — the samplers llama.cpp has beyond top-k, top-p and
 * min-p (runtime/sampler.h: DRY, top-n-sigma, typical, XTC, dynamic
 * temperature) against llama.cpp's own, recorded by
 * tests/fixtures/gen_samplers.py with llama-cpp-python: the candidates a
 * chain leaves and their probabilities, and DRY's penalties over the
 * default model's vocabulary with its sequence breakers made from
 * strings; mirostat's candidates step after step. Then what no fixture
 * shows: XTC's own random stream (how often it acts; a resumed sequence
 * skips both streams), a mirostat sequence resumed with its mu, greedy
 * under typical.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/gguf.h"
#include "runtime/sampler.h"
#include "runtime/text/dry_breakers.h"

#define DEFAULT_MODEL LOOM_CACHE_DIR "/models/SmolLM2-135M-Instruct.Q4_1.gguf"

static json_t *fixture(void) {
    json_error_t je;
    json_t *fx = json_load_file(LOOM_TEST_DATA "/fixtures/samplers.json", 0, &je);
    cr_assert_not_null(fx, "tests/fixtures/samplers.json: %s", je.text);
    return fx;
}

static float num(json_t *o, const char *key, float dflt) {
    json_t *v = json_object_get(o, key);
    return v ? (float)json_number_value(v) : dflt;
}

Test(samplers, chains_leave_what_llama_cpp_leaves) {
    json_t *fx = fixture();
    size_t k;
    json_t *c;
    int checked = 0;
    json_array_foreach(json_object_get(fx, "chains"), k, c) {
        json_t *pj = json_object_get(c, "params"), *lj = json_object_get(c, "logits"), *want = json_object_get(c, "candidates");
        loom_sampling_params p = loom_sampling_defaults();
        p.temperature = num(pj, "temperature", 1);
        p.top_k = (int32_t)num(pj, "top_k", 0);
        p.top_p = num(pj, "top_p", 1);
        p.min_p = num(pj, "min_p", 0);
        p.typical_p = num(pj, "typical_p", 1);
        p.top_n_sigma = num(pj, "top_n_sigma", -1);
        p.xtc_probability = num(pj, "xtc_probability", 0);
        p.xtc_threshold = num(pj, "xtc_threshold", 0.1f);
        p.dynatemp_range = num(pj, "dynatemp_range", 0);
        p.dynatemp_exponent = num(pj, "dynatemp_exponent", 1);
        const int32_t n = (int32_t)json_array_size(lj);
        float logits[256], probs[256];
        int32_t ids[256];
        for (int32_t i = 0; i < n; i++) logits[i] = (float)json_number_value(json_array_get(lj, (size_t)i));
        loom_sampler *s;
        cr_assert_null(loom_sampler_create(&p, n, &s));
        const int32_t m = loom_sampler_distribution(s, logits, ids, probs);
        char *ps = json_dumps(pj, JSON_COMPACT);
        cr_assert_eq((size_t)m, json_array_size(want), "%s: %d candidates, llama.cpp %zu", ps, m, json_array_size(want));
        for (int32_t i = 0; i < m; i++) {
            json_t *w = json_array_get(want, (size_t)i);
            const int32_t id = (int32_t)json_integer_value(json_array_get(w, 0));
            const double pr = json_number_value(json_array_get(w, 1));
            cr_assert(ids[i] == id && fabs(probs[i] - pr) <= 2e-6 + 1e-4 * pr, "%s: candidate %d is %d (p %.7f), llama.cpp's %d (p %.7f)",
                      ps, i, ids[i], probs[i], id, pr);
        }
        free(ps);
        loom_sampler_free(s);
        checked++;
    }
    cr_assert_geq(checked, 9);
    json_decref(fx);
}

Test(samplers, dry_penalises_what_llama_cpp_penalises) {
    json_t *fx = fixture();
    loom_gguf *g;
    loom_tokenizer *tok;
    cr_assert_null(loom_gguf_open(DEFAULT_MODEL, &g), "needs %s (launch/fetch-model.sh)", DEFAULT_MODEL);
    cr_assert_null(loom_tokenizer_create(g, &tok));
    const int32_t V = (int32_t)json_integer_value(json_object_get(fx, "n_vocab"));
    cr_assert_eq(V, loom_tokenizer_n_vocab(tok));
    float *logits = malloc((size_t)V * sizeof *logits);
    size_t k;
    json_t *d;
    json_array_foreach(json_object_get(fx, "dry"), k, d) {
        json_t *bj = json_object_get(d, "breakers"), *hj = json_object_get(d, "history_tokens");
        const char *br[16];
        const int nb = (int)json_array_size(bj);
        for (int i = 0; i < nb; i++) br[i] = json_string_value(json_array_get(bj, (size_t)i));
        loom_dry_table t;
        cr_assert_null(loom_dry_table_build(tok, V, br, nb, &t));
        loom_sampling_params p = loom_sampling_defaults();
        p.temperature = 0;
        p.dry_multiplier = num(d, "multiplier", 0);
        p.dry_base = num(d, "base", 0);
        p.dry_allowed_length = (int32_t)num(d, "allowed_length", 0);
        p.dry_penalty_last_n = (int32_t)num(d, "last_n", 0);
        loom_sampler *s;
        cr_assert_null(loom_sampler_create(&p, V, &s));
        loom_sampler_set_dry(s, &t.b);
        size_t i;
        json_t *h;
        json_array_foreach(hj, i, h) loom_sampler_accept(s, (int32_t)json_integer_value(h));
        memset(logits, 0, (size_t)V * sizeof *logits);
        loom_sampler_penalize(s, logits);
        json_t *want = json_object_get(d, "penalties");
        size_t w = 0;
        for (int32_t id = 0; id < V; id++) {
            if (logits[id] == 0) continue;
            cr_assert(w < json_array_size(want), "case %zu: token %d penalised %g, llama.cpp does not", k, id, -logits[id]);
            json_t *e = json_array_get(want, w++);
            const double pen = json_number_value(json_array_get(e, 1));
            cr_assert(json_integer_value(json_array_get(e, 0)) == id && fabs(-logits[id] - pen) <= 1e-5 * pen,
                      "case %zu: token %d penalised %g; llama.cpp: token %lld %g", k, id, -logits[id],
                      (long long)json_integer_value(json_array_get(e, 0)), pen);
        }
        cr_assert_eq(w, json_array_size(want), "case %zu: %zu penalties, llama.cpp %zu", k, w, json_array_size(want));
        loom_sampler_free(s);
        loom_dry_table_free(&t);
    }
    free(logits);
    loom_tokenizer_free(tok);
    loom_gguf_free(g);
    json_decref(fx);
}

/* Mirostat, step after step: from the mu llama.cpp had before each step,
 * the candidates it left and their probabilities; loom's draw moves mu by
 * eta x (the drawn token's surprise - tau), and a sequence resumed with
 * that mu (and its random stream skipped) draws and moves on as the
 * unbroken one. Penalties do nothing under mirostat (llama.cpp's chain). */
Test(samplers, mirostat_leaves_what_llama_cpp_leaves) {
    json_t *fx = fixture();
    size_t k, j;
    json_t *c, *st;
    int checked = 0;
    json_array_foreach(json_object_get(fx, "mirostat"), k, c) {
        loom_sampling_params p = loom_sampling_defaults();
        p.mirostat = (int32_t)num(c, "version", 0);
        p.mirostat_tau = num(c, "tau", 0), p.mirostat_eta = num(c, "eta", 0);
        p.temperature = num(c, "temperature", 1);
        p.repeat_penalty = 1.5f, p.presence_penalty = 1; /* (not applied) */
        p.seed = 5 + k;
        loom_sampler *s;
        cr_assert_null(loom_sampler_create(&p, 200, &s));
        cr_assert_float_eq(loom_sampler_mirostat_mu(s), 2 * p.mirostat_tau, 1e-6, "mu starts at 2 tau");
        json_array_foreach(json_object_get(c, "steps"), j, st) {
            json_t *lj = json_object_get(st, "logits"), *want = json_object_get(st, "candidates");
            float logits[200], l2[200], probs[200];
            int32_t ids[200];
            for (int i = 0; i < 200; i++) logits[i] = (float)json_number_value(json_array_get(lj, (size_t)i));
            const float mu = num(st, "mu", 0);
            loom_sampler_set_mirostat_mu(s, mu);
            loom_sampler_accept_output(s, (int32_t)j); /* a history the penalties would act on */
            memcpy(l2, logits, sizeof l2);
            const int32_t m = loom_sampler_distribution(s, l2, ids, probs);
            cr_assert_eq((size_t)m, json_array_size(want), "mirostat %zu step %zu: %d candidates, llama.cpp %zu", k, j, m,
                         json_array_size(want));
            for (int32_t i = 0; i < m; i++) {
                json_t *w = json_array_get(want, (size_t)i);
                const int32_t id = (int32_t)json_integer_value(json_array_get(w, 0));
                const double pr = json_number_value(json_array_get(w, 1));
                cr_assert(ids[i] == id && fabs(probs[i] - pr) <= 2e-6 + 1e-4 * pr,
                          "mirostat %zu step %zu: candidate %d is %d (p %.7f), llama.cpp's %d (p %.7f)", k, j, i, ids[i],
                          probs[i], id, pr);
            }
            memcpy(l2, logits, sizeof l2);
            const int32_t t = loom_sampler_sample(s, l2);
            int32_t at = 0;
            while (at < m && ids[at] != t) at++;
            cr_assert_lt(at, m, "mirostat %zu step %zu: drew %d, not a candidate", k, j, t);
            const float want_mu = mu - p.mirostat_eta * (-log2f(probs[at]) - p.mirostat_tau);
            cr_assert_float_eq(loom_sampler_mirostat_mu(s), want_mu, 1e-4, "mirostat %zu step %zu: mu %g, expected %g", k, j,
                               loom_sampler_mirostat_mu(s), want_mu);
            checked++;
        }
        loom_sampler_free(s);
    }
    cr_assert_geq(checked, 36);
    json_decref(fx);
}

/* A mirostat sequence resumed after k tokens with the mu it had then (and
 * its stream skipped) draws what the unbroken one draws, mu for mu. */
Test(samplers, mirostat_resumes_with_its_mu) {
    enum { V = 300, N = 40, K = 17 };
    for (int version = 1; version <= 2; version++) {
        loom_sampling_params p = loom_sampling_defaults();
        p.mirostat = version, p.mirostat_tau = 4, p.mirostat_eta = 0.2f, p.temperature = 1, p.seed = 99;
        loom_sampler *a, *b = NULL;
        cr_assert_null(loom_sampler_create(&p, V, &a));
        float l[V], l2[V];
        for (int k = 0; k < N; k++) {
            for (int i = 0; i < V; i++) l[i] = 3.0f * sinf(0.37f * (float)(i * (k + 3))) + 0.01f * (float)(i % 7);
            memcpy(l2, l, sizeof l);
            if (k == K) {
                cr_assert_null(loom_sampler_create(&p, V, &b));
                loom_sampler_skip(b, K);
                loom_sampler_set_mirostat_mu(b, loom_sampler_mirostat_mu(a));
            }
            const int32_t ta = loom_sampler_sample(a, l);
            if (!b) continue;
            const int32_t tb = loom_sampler_sample(b, l2);
            cr_assert_eq(ta, tb, "v%d token %d: resumed %d, unbroken %d", version, k, tb, ta);
            cr_assert_eq(loom_sampler_mirostat_mu(a), loom_sampler_mirostat_mu(b), "v%d token %d: mu", version, k);
        }
        cr_assert(fabsf(loom_sampler_mirostat_mu(a) - 2 * p.mirostat_tau) > 1e-3f, "v%d: mu never moved", version);
        loom_sampler_free(a), loom_sampler_free(b);
    }
}

/* XTC acts on about xtc_probability of the tokens, from its own stream;
 * a sequence resumed after k tokens (skip) draws what the unbroken one
 * draws next, both streams advanced. */
Test(samplers, xtc_stream_and_resumption) {
    enum { V = 64, N = 2000 };
    float base[V], l[V];
    for (int i = 0; i < V; i++) base[i] = (float)(V - i) * 0.05f; /* token 0 the likeliest, then 1, ... */
    loom_sampling_params p = loom_sampling_defaults();
    p.top_k = 0, p.top_p = 1, p.min_p = 0, p.temperature = 0.01f; /* nearly greedy: XTC decides the token */
    p.xtc_probability = 0.3f, p.xtc_threshold = 0.0f;              /* every token is above 0: all but the last go */
    p.seed = 11;
    loom_sampler *a, *b;
    cr_assert_null(loom_sampler_create(&p, V, &a));
    int acted = 0;
    int32_t last = -1;
    for (int k = 0; k < N; k++) {
        memcpy(l, base, sizeof l);
        last = loom_sampler_sample(a, l);
        acted += last == V - 1;
    }
    cr_assert(acted > 0.25 * N && acted < 0.35 * N, "XTC acted on %d of %d tokens at probability 0.3", acted, N);
    cr_assert_null(loom_sampler_create(&p, V, &b));
    loom_sampler_skip(b, N - 1);
    memcpy(l, base, sizeof l);
    cr_assert_eq(loom_sampler_sample(b, l), last, "resumed: skip advances both streams");
    loom_sampler_free(a), loom_sampler_free(b);
}

/* Greedy under typical sampling is the best token typical keeps (not
 * always the argmax), as llama.cpp's chain with temperature 0 gives. */
Test(samplers, greedy_takes_the_best_typical_token) {
    float l[51] = {2.0f}, l2[51]; /* one likelier token among 50 equal ones: they are the typical ones */
    memcpy(l2, l, sizeof l);
    loom_sampling_params p = loom_sampling_defaults();
    p.temperature = 0, p.top_k = 0, p.top_p = 1, p.min_p = 0, p.typical_p = 0.01f;
    loom_sampler *s;
    cr_assert_null(loom_sampler_create(&p, 51, &s));
    int32_t ids[51];
    float pr[51];
    cr_assert_eq(loom_sampler_distribution(s, l, ids, pr), 1);
    const int32_t t = loom_sampler_sample(s, l2);
    cr_assert(t == ids[0] && t == 1, "typical keeps a token nearer the entropy than the argmax: %d", t);
    cr_assert_not(loom_sampling_is_plain_greedy(&p));
    loom_sampler_free(s);
    static const struct {
        const char *what;
        loom_sampling_params p;
    } bad[] = {
        {"typical-p", {.typical_p = -1, .top_p = 1}},
        {"XTC probability", {.xtc_probability = 2, .top_p = 1}},
        {"XTC threshold", {.xtc_threshold = -0.5f, .top_p = 1}},
        {"dynamic temperature", {.dynatemp_range = NAN, .top_p = 1}},
        {"DRY", {.dry_penalty_last_n = -2, .top_p = 1, .repeat_penalty = 1}},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        loom_sampling_params q = bad[i].p;
        q.repeat_penalty = 1;
        loom_status st = loom_sampling_check(&q);
        cr_assert(st && strstr(loom_status_message(st), bad[i].what), "%s: %s", bad[i].what,
                  st ? loom_status_message(st) : "accepted");
        loom_status_free(st);
    }
}
