/*
 * tests/test_scheduler.c — the scheduler on a small random model (loom
 * synth), scalar kernels (a row's result does not depend on its batch, so
 * tokens can be compared exactly):
 *   - with a KV cache too small for every sequence at once, preemption and
 *     recomputation give each request exactly the tokens it gets alone;
 *   - a prompt sharing full blocks with an earlier one is found in the
 *     prefix cache and gives the same tokens as without the cache;
 *   - cancelling a waiting or running request stops its callbacks and
 *     returns every KV block.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "parallel/run.h"
#include "reference.h"
#include "runtime/kernels.h"
#include "runtime/kv_blocks.h"

#define OK(expr)                                                             \
    do {                                                                     \
        loom_status s_ = (expr);                                             \
        cr_assert_null(s_, "%s failed: %s", #expr, loom_status_message(s_)); \
    } while (0)

static char model_path[256];
static loom_gguf *g;

static void setup(void) {
    OK(loom_isa_set(LOOM_ISA_SCALAR));
    snprintf(model_path, sizeof model_path, "/tmp/loom-test-sched-%d.gguf", (int)getpid());
    cr_assert_eq(loom_test_synth("--layers 2 --dim 128 --heads 4 --kv-heads 2 --ffn 256 --vocab 512 --seed 3", model_path),
                 0);
    OK(loom_gguf_open(model_path, &g));
}

static void teardown(void) {
    loom_gguf_free(g);
    unlink(model_path);
}

static loom_engine *engine(int seqs, int ctx, int kv_blocks, bool prefix) {
    loom_engine_options o = loom_engine_defaults();
    o.n_threads = 1;
    o.max_seqs = seqs;
    o.ctx_size = ctx;
    o.kv_blocks = kv_blocks;
    o.prefix_cache = prefix;
    o.batch_rows = 64;
    loom_engine *e;
    OK(loom_engine_create(g, &o, NULL, NULL, NULL, &e));
    return e;
}

static bool never(void *u, int32_t t) {
    (void)u, (void)t;
    return false;
}

static loom_request greedy(const int32_t *prompt, int n, int max_tokens) {
    loom_request r = {.prompt = prompt, .n_prompt = n, .max_tokens = max_tokens, .ignore_eos = true};
    r.sampling = loom_sampling_defaults();
    r.sampling.temperature = 0;
    return r;
}

static void fill_prompt(int32_t *p, int n, int seed) {
    for (int i = 0; i < n; i++) p[i] = (int32_t)(3 + (seed * 131 + i * 17) % 500);
}

Test(scheduler, preemption_gives_each_request_its_tokens_alone, .init = setup, .fini = teardown, .timeout = 300) {
    enum { N = 4, PROMPT = 21, GEN = 80 };
    int32_t prompts[N][PROMPT];
    loom_request reqs[N];
    for (int i = 0; i < N; i++) {
        fill_prompt(prompts[i], PROMPT, i);
        reqs[i] = greedy(prompts[i], PROMPT, GEN);
    }
    /* 4 sequences of up to 101 positions need 28 blocks of 16; give 12 */
    loom_engine *tight = engine(N, 128, 12, false), *alone = engine(1, 128, 0, false);
    loom_callbacks cb = {.is_eog = never};
    loom_result res[N], ref;
    loom_run_stats stats;
    OK(loom_engine_run(tight, reqs, N, &cb, res, &stats));
    cr_assert_gt(stats.preemptions, 0, "the cache was meant to run out");
    for (int i = 0; i < N; i++) {
        OK(loom_engine_run(alone, &reqs[i], 1, &cb, &ref, NULL));
        cr_assert_str_eq(res[i].stop_reason, "length");
        cr_assert_eq(res[i].n_tokens, GEN, "request %d: %d tokens", i, res[i].n_tokens);
        cr_assert_arr_eq(res[i].tokens, ref.tokens, sizeof(int32_t) * GEN, "request %d differs after preemption", i);
        loom_result_free(&res[i]);
        loom_result_free(&ref);
    }
    loom_kv_blocks *pool = loom_engine_blocks(tight);
    cr_assert_eq(loom_kv_blocks_available(pool), loom_kv_blocks_total(pool), "every block came back");
    loom_engine_free(tight);
    loom_engine_free(alone);
}

Test(scheduler, prefix_cache_reuses_blocks_with_the_same_tokens, .init = setup, .fini = teardown, .timeout = 300) {
    int32_t a[70], b[70];
    fill_prompt(a, 70, 7);
    memcpy(b, a, sizeof a);
    for (int i = 50; i < 70; i++) b[i] = (int32_t)(10 + i); /* shares 3 full blocks of 16 */
    loom_request ra = greedy(a, 70, 20), rb = greedy(b, 70, 20);
    loom_engine *cached = engine(1, 128, 0, true), *plain = engine(1, 128, 0, false);
    loom_callbacks cb = {.is_eog = never};
    loom_result r1, r2, ref;
    loom_run_stats st;
    OK(loom_engine_run(cached, &ra, 1, &cb, &r1, &st));
    cr_assert_eq(st.prefix_hits, 0);
    OK(loom_engine_run(cached, &rb, 1, &cb, &r2, &st));
    cr_assert_eq(st.prefix_hits, 48, "3 full blocks of 16 found: %lld", (long long)st.prefix_hits);
    OK(loom_engine_run(plain, &rb, 1, &cb, &ref, NULL));
    cr_assert_arr_eq(r2.tokens, ref.tokens, sizeof(int32_t) * 20, "tokens differ with the prefix cache");
    /* the whole prompt but its last block, and at least loom_matmul_invariant_rows() tokens to compute */
    OK(loom_engine_run(cached, &ra, 1, &cb, &ref, &st));
    const int tail = loom_matmul_invariant_rows();
    cr_assert(tail >= 1 && tail <= 32, "invariant rows %d", tail);
    cr_assert_eq(st.prefix_hits, (70 - tail) / 16 * 16, "tail of %d tokens", tail);
    cr_assert_arr_eq(r1.tokens, ref.tokens, sizeof(int32_t) * 20);
    loom_result_free(&r1);
    loom_result_free(&r2);
    loom_result_free(&ref);
    loom_engine_free(cached);
    loom_engine_free(plain);
}

typedef struct {
    int tokens[8];
    int finished[8];
    uint64_t cancelled_id;
    int after_cancel; /* callbacks that named a cancelled request */
    bool cancelled;
} tally;

static void count_token(void *u, uint64_t id, int32_t t, const loom_token_logprobs *lp) {
    (void)t, (void)lp;
    tally *c = u;
    c->tokens[id]++;
    if (c->cancelled && id == c->cancelled_id) c->after_cancel++;
}

static void count_finish(void *u, const loom_finished *f) {
    tally *c = u;
    c->finished[f->id]++;
    if (c->cancelled && f->id == c->cancelled_id) c->after_cancel++;
}

Test(scheduler, cancel_stops_callbacks_and_frees_blocks, .init = setup, .fini = teardown, .timeout = 300) {
    loom_engine *e = engine(2, 128, 0, false);
    tally c = {0};
    loom_callbacks cb = {.on_token = count_token, .on_finish = count_finish, .is_eog = never, .user = &c};
    loom_scheduler *s;
    OK(loom_scheduler_create(e, &cb, NULL, &s));
    int32_t p[3][10];
    uint64_t id[3];
    for (int i = 0; i < 3; i++) {
        fill_prompt(p[i], 10, i);
        loom_request r = greedy(p[i], 10, 50);
        OK(loom_scheduler_submit(s, &r, &id[i]));
    }
    cr_assert(id[0] == 0 && id[1] == 1 && id[2] == 2);
    while (c.tokens[0] < 5) OK(loom_scheduler_step(s));
    cr_assert(loom_scheduler_cancel(s, id[2]), "request 2 waits for a slot");
    c.cancelled_id = id[0];
    c.cancelled = true;
    cr_assert(loom_scheduler_cancel(s, id[0]), "request 0 is decoding");
    cr_assert(!loom_scheduler_cancel(s, id[0]), "only once");
    while (loom_scheduler_pending(s) > 0) OK(loom_scheduler_step(s));
    cr_assert_eq(c.after_cancel, 0, "a cancelled request was reported");
    cr_assert_eq(c.tokens[2], 0);
    cr_assert_eq(c.finished[1], 1);
    cr_assert_eq(c.tokens[1], 50);
    cr_assert_float_eq(loom_scheduler_kv_usage(s), 0.0, 1e-9, "blocks still held");
    loom_scheduler_free(s);
    loom_engine_free(e);
}

Test(scheduler, bad_requests_are_refused_at_submit, .init = setup, .fini = teardown) {
    loom_engine *e = engine(1, 32, 0, false);
    loom_callbacks cb = {.is_eog = never};
    loom_scheduler *s;
    OK(loom_scheduler_create(e, &cb, NULL, &s));
    int32_t p[40] = {0};
    uint64_t id;
    loom_request r = greedy(p, 40, 1);
    cr_assert_not_null(loom_scheduler_submit(s, &r, &id), "longer than the context");
    r = greedy(p, 0, 1);
    cr_assert_not_null(loom_scheduler_submit(s, &r, &id), "empty");
    p[3] = 512;
    r = greedy(p, 5, 1);
    cr_assert_not_null(loom_scheduler_submit(s, &r, &id), "outside the vocabulary");
    cr_assert_eq(loom_scheduler_pending(s), 0);
    loom_scheduler_free(s);
    loom_engine_free(e);
}
