/*
 * tests/test_scheduler.c — the scheduler on a small random model (loom
 * synth), scalar kernels (a row's result does not depend on its batch, so
 * tokens can be compared exactly):
 *   - with a KV cache too small for every sequence at once, preemption and
 *     recomputation give each request exactly the tokens it gets alone
 *     (greedy, and mirostat, whose running mu the sequence resumes with);
 *   - a prompt sharing full blocks with an earlier one is found in the
 *     prefix cache and gives the same tokens as without the cache;
 *   - cancelling a waiting or running request stops its callbacks and
 *     returns every KV block;
 *   - speculative decoding (prompt lookup: draft.h; a draft model:
 *     draft_model.h) gives every request the tokens, log-probabilities and
 *     ending it gets without it.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "parallel/draft.h"
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

/* Greedy, and mirostat 1 and 2, whose running mu a preempted sequence
 * takes back with it (the random stream skipped as for any draw). */
Test(scheduler, preemption_gives_each_request_its_tokens_alone, .init = setup, .fini = teardown, .timeout = 300) {
    for (int miro = 0; miro <= 2; miro++) {
        enum { N = 4, PROMPT = 21, GEN = 80 };
        int32_t prompts[N][PROMPT];
        loom_request reqs[N];
        for (int i = 0; i < N; i++) {
            fill_prompt(prompts[i], PROMPT, i);
            reqs[i] = greedy(prompts[i], PROMPT, GEN);
            if (miro) { /* (tau low enough that mu moves the cut: a wrong mu after a resumption shows) */
                reqs[i].sampling.temperature = 1, reqs[i].sampling.seed = 40 + (uint64_t)i;
                reqs[i].sampling.mirostat = miro, reqs[i].sampling.mirostat_tau = 3, reqs[i].sampling.mirostat_eta = 0.5f;
            }
        }
        /* 4 sequences of up to 101 positions need 28 blocks of 16; give 12 */
        loom_engine *tight = engine(N, 128, 12, false), *alone = engine(1, 128, 0, false);
        loom_callbacks cb = {.is_eog = never};
        loom_result res[N], ref;
        loom_run_stats stats;
        OK(loom_engine_run(tight, reqs, N, &cb, NULL, res, &stats));
        cr_assert_gt(stats.preemptions, 0, "the cache was meant to run out");
        for (int i = 0; i < N; i++) {
            OK(loom_engine_run(alone, &reqs[i], 1, &cb, NULL, &ref, NULL));
            cr_assert_str_eq(res[i].stop_reason, "length");
            cr_assert_eq(res[i].n_tokens, GEN, "request %d: %d tokens", i, res[i].n_tokens);
            cr_assert_arr_eq(res[i].tokens, ref.tokens, sizeof(int32_t) * GEN, "mirostat %d: request %d differs after "
                             "preemption", miro, i);
            loom_result_free(&res[i]);
            loom_result_free(&ref);
        }
        loom_kv_blocks *pool = loom_engine_blocks(tight);
        cr_assert_eq(loom_kv_blocks_available(pool), loom_kv_blocks_total(pool), "every block came back");
        loom_engine_free(tight);
        loom_engine_free(alone);
    }
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
    OK(loom_engine_run(cached, &ra, 1, &cb, NULL, &r1, &st));
    cr_assert_eq(st.prefix_hits, 0);
    OK(loom_engine_run(cached, &rb, 1, &cb, NULL, &r2, &st));
    cr_assert_eq(st.prefix_hits, 48, "3 full blocks of 16 found: %lld", (long long)st.prefix_hits);
    OK(loom_engine_run(plain, &rb, 1, &cb, NULL, &ref, NULL));
    cr_assert_arr_eq(r2.tokens, ref.tokens, sizeof(int32_t) * 20, "tokens differ with the prefix cache");
    loom_result_free(&ref);
    /* the whole prompt but its last block, and at least loom_matmul_invariant_rows() tokens to compute */
    OK(loom_engine_run(cached, &ra, 1, &cb, NULL, &ref, &st));
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

static void refused(loom_status st, const char *why) {
    cr_assert_not_null(st, "accepted: %s", why);
    loom_status_free(st);
}

Test(scheduler, bad_requests_are_refused_at_submit, .init = setup, .fini = teardown) {
    loom_engine *e = engine(1, 32, 0, false);
    loom_callbacks cb = {.is_eog = never};
    loom_scheduler *s;
    OK(loom_scheduler_create(e, &cb, NULL, &s));
    int32_t p[40] = {0};
    uint64_t id;
    loom_request r = greedy(p, 40, 1);
    refused(loom_scheduler_submit(s, &r, &id), "longer than the context");
    r = greedy(p, 0, 1);
    refused(loom_scheduler_submit(s, &r, &id), "empty");
    p[3] = 512;
    r = greedy(p, 5, 1);
    refused(loom_scheduler_submit(s, &r, &id), "outside the vocabulary");
    cr_assert_eq(loom_scheduler_pending(s), 0);
    loom_scheduler_free(s);
    loom_engine_free(e);
}

/* LoRA adapters per request (engine.h, runtime/lora.h): sequences with
 * different adapters and scales in one batch each get the tokens they get
 * alone; the engine's default scale applies to requests without their own;
 * the prefix cache never shares blocks between different scales. */
Test(scheduler, lora_per_request, .init = setup, .fini = teardown, .timeout = 300) {
    char adapter[256], args[512];
    snprintf(adapter, sizeof adapter, "/tmp/loom-test-sched-lora-%d.gguf", (int)getpid());
    snprintf(args, sizeof args, "--lora-of %s --lora-rank 8 --lora-alpha 16 --seed 9", model_path);
    cr_assert_eq(loom_test_synth(args, adapter), 0);
    enum { N = 4, PROMPT = 70, GEN = 24 };
    int32_t prompt[PROMPT];
    fill_prompt(prompt, PROMPT, 5);
    const float one = 1.0f, half = 0.5f;
    loom_request reqs[N];
    for (int i = 0; i < N; i++) reqs[i] = greedy(prompt, PROMPT, GEN);
    reqs[1].lora = &one, reqs[1].n_lora = 1; /* 0: the engine's default (0) */
    reqs[2].lora = &half, reqs[2].n_lora = 1;
    reqs[3].lora = &one, reqs[3].n_lora = 1;
    loom_engine *mixed = engine(N, 128, 0, true), *alone = engine(1, 128, 0, false), *on = engine(1, 128, 0, false);
    OK(loom_engine_add_lora(mixed, adapter, 0.0f));
    OK(loom_engine_add_lora(alone, adapter, 0.0f));
    OK(loom_engine_add_lora(on, adapter, 1.0f));
    loom_callbacks cb = {.is_eog = never};
    loom_result res[N], ref;
    OK(loom_engine_run(mixed, reqs, N, &cb, NULL, res, NULL));
    for (int i = 0; i < N; i++) {
        OK(loom_engine_run(alone, &reqs[i], 1, &cb, NULL, &ref, NULL));
        cr_assert_arr_eq(res[i].tokens, ref.tokens, sizeof(int32_t) * GEN, "request %d differs in a mixed batch", i);
        loom_result_free(&ref);
    }
    cr_assert(memcmp(res[0].tokens, res[1].tokens, sizeof(int32_t) * GEN), "the adapter changed nothing");
    cr_assert(memcmp(res[1].tokens, res[2].tokens, sizeof(int32_t) * GEN), "scale 0.5 gave scale 1's tokens");
    cr_assert_arr_eq(res[1].tokens, res[3].tokens, sizeof(int32_t) * GEN);
    OK(loom_engine_run(on, &reqs[0], 1, &cb, NULL, &ref, NULL)); /* default 1: the adapter on */
    cr_assert_arr_eq(ref.tokens, res[1].tokens, sizeof(int32_t) * GEN, "the engine's default scale was not applied");
    loom_result_free(&ref);
    /* the prefix cache: the same prompt with other scales finds nothing, with the same ones its blocks */
    loom_engine *cached = engine(1, 128, 32, true); /* room for both runs' blocks */
    OK(loom_engine_add_lora(cached, adapter, 0.0f));
    loom_run_stats st;
    OK(loom_engine_run(cached, &reqs[1], 1, &cb, NULL, &ref, &st));
    loom_result_free(&ref);
    OK(loom_engine_run(cached, &reqs[0], 1, &cb, NULL, &ref, &st));
    cr_assert_eq(st.prefix_hits, 0, "KV blocks computed with the adapter were found without it");
    cr_assert_arr_eq(ref.tokens, res[0].tokens, sizeof(int32_t) * GEN);
    loom_result_free(&ref);
    OK(loom_engine_run(cached, &reqs[3], 1, &cb, NULL, &ref, &st));
    cr_assert_gt(st.prefix_hits, 0, "the same adapter and scale found nothing");
    cr_assert_arr_eq(ref.tokens, res[1].tokens, sizeof(int32_t) * GEN);
    loom_result_free(&ref);
    /* refusals */
    loom_scheduler *s;
    OK(loom_scheduler_create(cached, &cb, NULL, &s));
    uint64_t id;
    const float two[2] = {1, 1}, nan = NAN;
    loom_request r = greedy(prompt, 8, 1);
    r.lora = two, r.n_lora = 2;
    refused(loom_scheduler_submit(s, &r, &id), "two scales for one adapter");
    r.lora = &nan, r.n_lora = 1;
    refused(loom_scheduler_submit(s, &r, &id), "a NaN scale");
    loom_scheduler_free(s);
    for (int i = 0; i < N; i++) loom_result_free(&res[i]);
    loom_engine_free(mixed);
    loom_engine_free(alone);
    loom_engine_free(on);
    loom_engine_free(cached);
    unlink(adapter);
}

/* Every token and log-probability a run reports, per request. */
typedef struct {
    int32_t tok[6][128];
    float lp[6][128];
    int n[6];
    char reason[6][16];
} transcript;

static void log_token(void *u, uint64_t id, int32_t t, const loom_token_logprobs *lp) {
    transcript *x = u;
    cr_assert(id < 6 && x->n[id] < 128);
    x->lp[id][x->n[id]] = lp ? lp->logprob + (lp->n_top ? lp->top_logprobs[lp->n_top - 1] : 0) : 0;
    x->tok[id][x->n[id]++] = t;
}

static void log_finish(void *u, const loom_finished *f) {
    transcript *x = u;
    snprintf(x->reason[f->id], sizeof x->reason[f->id], "%s", f->stop_reason);
}

static bool eog_mod(void *u, int32_t t) {
    (void)u;
    return t % 61 == 0;
}

enum { SPEC_N = 6, SPEC_PROMPT = 24 };

/* Six requests for the speculative runs: greedy, sampled with penalties,
 * logprobs, one that ends on an end-of-generation token. */
static void spec_requests(int32_t prompts[SPEC_N][SPEC_PROMPT], loom_request *reqs) {
    for (int i = 0; i < SPEC_N; i++) {
        /* a prompt that repeats itself, so the lookup finds runs to propose */
        fill_prompt(prompts[i], SPEC_PROMPT / 2, i);
        memcpy(prompts[i] + SPEC_PROMPT / 2, prompts[i], sizeof(int32_t) * (SPEC_PROMPT / 2));
        reqs[i] = greedy(prompts[i], SPEC_PROMPT, 100 - 7 * i);
    }
    reqs[1].sampling.temperature = 0.7f, reqs[1].sampling.seed = 11, reqs[1].sampling.top_k = 0;
    reqs[2].sampling.temperature = 1.0f, reqs[2].sampling.seed = 5, reqs[2].sampling.repeat_penalty = 1.1f;
    reqs[3].sampling.presence_penalty = 0.3f, reqs[3].sampling.frequency_penalty = 0.2f;
    reqs[3].sampling.temperature = 0.5f, reqs[3].sampling.seed = 9;
    reqs[4].logprobs = true, reqs[4].top_logprobs = 3;
    reqs[5].ignore_eos = false;
}

/* The run with proposals reported what the run without them did. */
static void same_transcripts(const transcript *spec, const transcript *plain, loom_result *res, const char *what) {
    for (int i = 0; i < SPEC_N; i++) {
        cr_assert_eq(spec->n[i], plain->n[i], "%s: request %d: %d tokens, %d without proposals", what, i, spec->n[i],
                     plain->n[i]);
        cr_assert_arr_eq(spec->tok[i], plain->tok[i], sizeof(int32_t) * (size_t)plain->n[i], "%s: request %d's tokens",
                         what, i);
        cr_assert_arr_eq(spec->lp[i], plain->lp[i], sizeof(float) * (size_t)plain->n[i], "%s: request %d's logprobs",
                         what, i);
        cr_assert_str_eq(spec->reason[i], plain->reason[i], "%s: request %d", what, i);
        cr_assert_eq(res[i].n_tokens, plain->n[i]);
        loom_result_free(&res[i]);
    }
    cr_assert_str_eq(plain->reason[5], "stop", "request 5 was meant to end on an end-of-generation token");
}

/* Speculative decoding (prompt lookup): proposals the model accepts save
 * steps, and every request gets the tokens, log-probabilities and ending
 * it gets without them — greedy and sampled (each token one draw of the
 * sequence's stream, after the same penalty history), with repetition and
 * presence penalties, logprobs, limits and end-of-generation tokens that
 * fall inside a step's accepted run, and KV blocks short enough to preempt. */
Test(scheduler, speculative_decoding_gives_the_same_tokens, .init = setup, .fini = teardown, .timeout = 300) {
    int32_t prompts[SPEC_N][SPEC_PROMPT];
    loom_request reqs[SPEC_N];
    spec_requests(prompts, reqs);
    for (int kv = 0; kv < 2; kv++) { /* 2 sequences at a time with every block, then 3 with too few */
        const int blocks = kv ? 14 : 0;
        loom_engine *e = engine(2 + kv, 128, blocks, false);
        transcript plain = {0}, spec = {0};
        loom_callbacks cb = {.on_token = log_token, .on_finish = log_finish, .is_eog = eog_mod, .user = &plain};
        loom_result res[SPEC_N];
        loom_run_stats st;
        OK(loom_engine_run(e, reqs, SPEC_N, &cb, NULL, res, &st));
        cr_assert_eq(st.draft_tokens, 0, "no proposals unless asked");
        for (int i = 0; i < SPEC_N; i++) loom_result_free(&res[i]);
        cb.user = &spec;
        loom_scheduler_options o = {.draft_max = 5, .draft_min_ngram = 1}; /* one token: many proposals */
        OK(loom_engine_run(e, reqs, SPEC_N, &cb, &o, res, &st));
        cr_assert_gt(st.draft_accepted, 20, "proposals were made (%lld) and kept (%lld)", (long long)st.draft_tokens,
                     (long long)st.draft_accepted);
        cr_assert_lt(st.draft_accepted, st.draft_tokens, "some proposals were refused");
        if (kv) cr_assert_gt(st.preemptions, 0, "the cache was meant to run out");
        same_transcripts(&spec, &plain, res, blocks ? "too few blocks" : "every block");
        loom_kv_blocks *pool = loom_engine_blocks(e);
        cr_assert_eq(loom_kv_blocks_available(pool), loom_kv_blocks_total(pool), "every block came back");
        loom_engine_free(e);
    }
}

/* Speculative decoding with a draft model (draft_model.h): the target
 * itself as its own draft (greedy requests keep every proposal), and
 * another model of the same vocabulary (most are refused): the same
 * transcripts either way, with too few KV blocks too, and a slot's next
 * request computes only what differs from what the draft model holds. */
/* Under the sanitizers (a model's passes run ~15x slower there) the draft
 * model's test takes only its cache that runs out (preemption: the path
 * with the most to get wrong); the Release build runs both. */
#if defined(__SANITIZE_ADDRESS__)
#define LOOM_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LOOM_SANITIZED 1
#endif
#endif
#ifndef LOOM_SANITIZED
#define LOOM_SANITIZED 0
#endif

Test(scheduler, draft_model_gives_the_same_tokens, .init = setup, .fini = teardown, .timeout = 300) {
    char other[256];
    snprintf(other, sizeof other, "/tmp/loom-test-sched-draft-%d.gguf", (int)getpid());
    cr_assert_eq(loom_test_synth("--layers 1 --dim 64 --heads 2 --kv-heads 1 --ffn 128 --vocab 500 --seed 8", other), 0);
    int32_t prompts[SPEC_N][SPEC_PROMPT];
    loom_request reqs[SPEC_N];
    spec_requests(prompts, reqs);
    for (int kv = LOOM_SANITIZED; kv < 2; kv++) {
        const int blocks = kv ? 14 : 0, seqs = 2 + kv;
        loom_engine *e = engine(seqs, 128, blocks, false);
        transcript plain = {0};
        loom_callbacks cb = {.on_token = log_token, .on_finish = log_finish, .is_eog = eog_mod, .user = &plain};
        loom_result res[SPEC_N];
        loom_run_stats st;
        OK(loom_engine_run(e, reqs, SPEC_N, &cb, NULL, res, &st));
        for (int i = 0; i < SPEC_N; i++) loom_result_free(&res[i]);
        for (int which = 0; which < 4; which++) { /* its own, another, another unsure of every token, its own
                                                      with room for 64 positions (slots give theirs up) */
            loom_drafter_options dopt = {.max_seqs = seqs, .ctx = 128, .batch_rows = 16, .p_min = which == 2 ? 0.9f : 0,
                                         .kv_tokens = which == 3 ? 64 : 0};
            loom_drafter *d;
            OK(loom_drafter_create(which == 1 || which == 2 ? other : model_path, g, loom_engine_pool(e), &dopt, &d));
            transcript spec = {0};
            cb.user = &spec;
            loom_scheduler_options o = {.draft_max = 5, .drafter = d};
            OK(loom_engine_run(e, reqs, SPEC_N, &cb, &o, res, &st));
            cr_assert_gt(st.draft_tokens, 0, "proposals were made (the draft model's, or a lookup's)");
            if (which == 1 || which == 2) { /* the draft model itself: p_min 0 proposes all asked, 0.9 nothing */
                int32_t out[4];
                loom_draft_req rq = {.slot = 0, .toks = prompts[0], .n_toks = SPEC_PROMPT, .want = 4, .out = out};
                OK(loom_drafter_propose(d, &rq, 1));
                cr_assert_eq(rq.n_out, which == 1 ? 4 : 0, "p_min %g: %d proposals", (double)dopt.p_min, rq.n_out);
            }
            if (which == 0 || which == 3) {
                /* greedy requests 0, 4, 5 keep every proposal; sampled ones some */
                cr_assert_gt(st.draft_accepted, st.draft_tokens / 2, "its own proposals: %lld of %lld kept",
                             (long long)st.draft_accepted, (long long)st.draft_tokens);
                cr_assert_gt(st.draft_model_s, 0.0);
            } else if (which == 1) {
                cr_assert_lt(st.draft_accepted, st.draft_tokens / 2, "another model's: %lld of %lld kept",
                             (long long)st.draft_accepted, (long long)st.draft_tokens);
            }
            if (kv) cr_assert_gt(st.preemptions, 0, "the cache was meant to run out");
            same_transcripts(&spec, &plain, res, which == 0 || which == 3 ? "its own draft" : "another model");
            loom_kv_blocks *pool = loom_engine_blocks(e);
            cr_assert_eq(loom_kv_blocks_available(pool), loom_kv_blocks_total(pool), "every block came back");
            /* a slot remembers what it holds: the same tokens again compute only the last one (and the
             * proposals' rows); a new prompt sharing the first 10 computes from the 11th */
            if (which == 0) {
                int32_t toks[SPEC_PROMPT], out[3];
                fill_prompt(toks, SPEC_PROMPT, 77);
                loom_draft_req rq = {.slot = 1, .toks = toks, .n_toks = SPEC_PROMPT, .want = 3, .out = out};
                int64_t r0 = loom_drafter_rows(d);
                OK(loom_drafter_propose(d, &rq, 1));
                int64_t r1 = loom_drafter_rows(d);
                cr_assert_eq(loom_drafter_known(d, 1, toks, SPEC_PROMPT), SPEC_PROMPT);
                OK(loom_drafter_propose(d, &rq, 1));
                int64_t r2 = loom_drafter_rows(d);
                cr_assert_eq(r1 - r0, SPEC_PROMPT + 2, "first: the prompt and two proposals fed back");
                cr_assert_eq(r2 - r1, 1 + 2, "again: the last token and two proposals");
                toks[10] ^= 1;
                OK(loom_drafter_propose(d, &rq, 1));
                cr_assert_eq(loom_drafter_rows(d) - r2, SPEC_PROMPT - 10 + 2, "from the first token that differs");
            }
            loom_drafter_free(d);
        }
        loom_engine_free(e);
    }
    unlink(other);
}

/* The draft model must speak the target's vocabulary; the scheduler needs a slot per sequence. */
Test(scheduler, draft_model_refusals, .init = setup, .fini = teardown) {
    char other[256];
    snprintf(other, sizeof other, "/tmp/loom-test-sched-bert-%d.gguf", (int)getpid());
    cr_assert_eq(loom_test_synth("--arch bert --layers 1 --dim 64 --heads 2 --kv-heads 2 --ffn 128 --vocab 512", other),
                 0);
    loom_engine *e = engine(2, 128, 0, false);
    loom_drafter_options dopt = {.max_seqs = 1, .ctx = 128, .batch_rows = 16};
    loom_drafter *d = NULL;
    loom_status st = loom_drafter_create(other, g, loom_engine_pool(e), &dopt, &d);
    cr_assert(st && d == NULL);
    cr_assert(strstr(loom_status_message(st), "vocabulary") || strstr(loom_status_message(st), "encoder"), "%s",
              loom_status_message(st));
    loom_status_free(st);
    st = loom_drafter_create("/nonexistent.gguf", g, loom_engine_pool(e), &dopt, &d);
    cr_assert(st && d == NULL);
    loom_status_free(st);
    OK(loom_drafter_create(model_path, g, loom_engine_pool(e), &dopt, &d));
    loom_callbacks cb = {.is_eog = never};
    loom_scheduler_options o = {.drafter = d};
    loom_scheduler *s = NULL;
    st = loom_scheduler_create(e, &cb, &o, &s);
    cr_assert(st && strstr(loom_status_message(st), "slots"), "%s", loom_status_message(st));
    loom_status_free(st);
    loom_drafter_free(d);
    loom_engine_free(e);
    unlink(other);
}

Test(draft, lookup_proposes_what_followed_the_longest_latest_match) {
    int32_t out[8];
    /* ... 5 6 7 | 1 2 3 4 | 9 2 3 8 | 1 2 3: "1 2 3" occurred, followed by 4 9 2 */
    const int32_t a[] = {5, 6, 7, 1, 2, 3, 4, 9, 2, 3, 8, 1, 2, 3};
    const int na = (int)(sizeof a / sizeof a[0]);
    cr_assert_eq(loom_draft_lookup(a, na, 2, 4, 3, out), 3);
    cr_assert(out[0] == 4 && out[1] == 9 && out[2] == 2, "the longest match (3 tokens), not the later \"2 3\"");
    cr_assert_eq(loom_draft_lookup(a, na, 2, 2, 2, out), 2);
    cr_assert(out[0] == 8 && out[1] == 1, "among 2-token matches the latest");
    cr_assert_eq(loom_draft_lookup(a, na, 4, 4, 3, out), 0, "no 4-token match");
    cr_assert_eq(loom_draft_lookup(a, na, 1, 4, 8, out), 8, "up to max_out of what followed");
    cr_assert_eq(loom_draft_lookup(a, na, 1, 4, 0, out), 0);
    /* a run of one token proposes more of it, the match overlapping the suffix */
    const int32_t r[] = {7, 7, 7, 7};
    cr_assert_eq(loom_draft_lookup(r, 4, 2, 3, 5, out), 1);
    cr_assert_eq(out[0], 7);
    const int32_t u[] = {1, 2, 3, 4};
    cr_assert_eq(loom_draft_lookup(u, 4, 1, 4, 5, out), 0, "nothing repeats");
    cr_assert_eq(loom_draft_lookup(u, 1, 1, 4, 5, out), 0, "one token");
    cr_assert_eq(loom_draft_lookup(a, na, 3, 2, 5, out), 0, "min above max");
}

Test(draft, lookup_in_an_expected_output) {
    int32_t out[8];
    const int32_t pred[] = {10, 11, 12, 13, 11, 12, 14};
    cr_assert_eq(loom_draft_lookup_in(NULL, 0, pred, 7, 2, 4, 3, out), 3, "nothing written: the start");
    cr_assert(out[0] == 10 && out[1] == 11 && out[2] == 12);
    const int32_t a[] = {10, 11, 12};
    cr_assert_eq(loom_draft_lookup_in(a, 3, pred, 7, 2, 4, 8, out), 4, "10 11 12 matched: what followed it");
    cr_assert(out[0] == 13 && out[3] == 14);
    const int32_t b[] = {99, 11, 12};
    cr_assert_eq(loom_draft_lookup_in(b, 3, pred, 7, 2, 4, 8, out), 4, "11 12 at the output's own place");
    cr_assert_eq(out[0], 13);
    const int32_t b2[] = {1, 2, 3, 4, 5, 11, 12};
    cr_assert_eq(loom_draft_lookup_in(b2, 7, pred, 7, 2, 4, 8, out), 1, "11 12 nearer the end: the later one");
    cr_assert_eq(out[0], 14);
    const int32_t c[] = {11};
    cr_assert_eq(loom_draft_lookup_in(c, 1, pred, 7, 2, 4, 8, out), 5, "a one-token output matches whole, near the start");
    const int32_t d[] = {5, 11};
    cr_assert_eq(loom_draft_lookup_in(d, 2, pred, 7, 2, 4, 8, out), 0, "a longer output needs ngram_min");
    const int32_t e[] = {12, 14};
    cr_assert_eq(loom_draft_lookup_in(e, 2, pred, 7, 2, 4, 8, out), 0, "the match ends the corpus: nothing after it");
}

static void count_done(void *u, const loom_finished *f) {
    int *kept = u;
    kept[f->id] = f->draft_accepted;
}

/* An expected output (OpenAI's predicted outputs) proposes with the
 * scheduler's draft options off: the same tokens whether it is right or
 * wrong, and a right one saves steps. */
Test(scheduler, prediction_proposes_and_changes_nothing, .init = setup, .fini = teardown, .timeout = 300) {
    enum { PROMPT = 20, GEN = 60 };
    int32_t prompt[PROMPT];
    fill_prompt(prompt, PROMPT, 5);
    loom_request r = greedy(prompt, PROMPT, GEN);
    r.sampling.temperature = 0.8f, r.sampling.seed = 4, r.sampling.top_k = 0;
    loom_engine *e = engine(1, 128, 0, false);
    int kept[2] = {0, 0};
    loom_callbacks cb = {.on_finish = count_done, .is_eog = never, .user = kept};
    loom_result plain, res;
    loom_run_stats st;
    OK(loom_engine_run(e, &r, 1, &cb, NULL, &plain, &st));
    cr_assert_eq(plain.n_tokens, GEN);
    int32_t wrong[GEN];
    memcpy(wrong, plain.tokens, sizeof wrong);
    for (int i = GEN / 2; i < GEN; i += 7) wrong[i] = (wrong[i] + 1) % 512;
    for (int w = 0; w < 2; w++) {
        r.prediction = w ? wrong : plain.tokens;
        r.n_prediction = GEN;
        OK(loom_engine_run(e, &r, 1, &cb, NULL, &res, &st));
        cr_assert_eq(res.n_tokens, GEN);
        cr_assert_arr_eq(res.tokens, plain.tokens, sizeof(int32_t) * GEN, "%s prediction changed the tokens",
                         w ? "a wrong" : "the right");
        cr_assert_eq(kept[0], st.draft_accepted);
        if (!w) cr_assert_geq(st.draft_accepted, GEN - 8, "the right prediction: %lld kept", (long long)st.draft_accepted);
        else cr_assert(st.draft_accepted > GEN / 3 && st.draft_accepted < st.draft_tokens, "a wrong one: %lld of %lld",
                       (long long)st.draft_accepted, (long long)st.draft_tokens);
        loom_result_free(&res);
    }
    int32_t bad = 512;
    r.prediction = &bad, r.n_prediction = 1;
    loom_scheduler *s;
    OK(loom_scheduler_create(e, &cb, NULL, &s));
    uint64_t id;
    loom_status refused_st = loom_scheduler_submit(s, &r, &id);
    cr_assert_not_null(refused_st, "a prediction token outside the vocabulary");
    loom_status_free(refused_st);
    loom_scheduler_free(s);
    loom_result_free(&plain);
    loom_engine_free(e);
}
