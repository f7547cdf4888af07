/*
 * launch/cmd_perplexity.c — `loom perplexity`: a model's perplexity over a
 * text file, on one rank or a cluster (--tp --pp under mpirun), computed as
 * llama.cpp's llama-perplexity computes it, so the two programs' figures
 * for one GGUF file compare directly:
 *
 *   - the file is tokenized whole (BOS first where the model adds one) and
 *     cut into chunks of --ctx-size tokens (as many as fit, at most
 *     --chunks); each chunk is a sequence of its own, whose first token is
 *     the BOS where the model adds one;
 *   - in a chunk, the tokens of its second half are scored (position p
 *     predicting token p + 1 for p from ctx/2 to ctx - 2), so every scored
 *     token has at least half a context before it;
 *   - PPL = exp(mean negative log-likelihood), and its uncertainty
 *     PPL x sd(nll) / sqrt(count - 1).
 *
 * The running figure after each chunk goes to stderr ("[1]8.4561,[2]..."),
 * the result to stdout ("PPL = 8.4561 +/- 0.12345 over N tokens", or one
 * JSON object with --json).
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launch/args.h"
#include "launch/commands.h"
#include "launch/launch_util.h"
#include "parallel/cluster.h"
#include "parallel/engine.h"
#include "runtime/clock.h"
#include "runtime/sampler.h"
#include "runtime/threadpool.h"
#include "runtime/text/tokenizer.h"

typedef struct {
    const int32_t *ids; /* the chunk's tokens */
    int n, first, V;
    double nll, nll2;
    int64_t count;
} ppl_chunk;

/* The chunk's rows p0 .. p0 + rows - 1: row p (from `first` on, below n - 1) predicts token p + 1. */
static void score_rows(void *user, int p0, int rows, const float *logits) {
    ppl_chunk *c = user;
    for (int r = 0; r < rows; r++) {
        const int p = p0 + r;
        if (p < c->first || p >= c->n - 1) continue;
        float lp;
        loom_logprobs(logits + (size_t)r * c->V, c->V, c->ids[p + 1], 0, &lp, NULL, NULL);
        const double nll = -(double)lp;
        c->nll += nll;
        c->nll2 += nll * nll;
        c->count++;
    }
}

static loom_status coordinate(loom_engine *e, const loom_gguf *g, const char *model, const char *file, int ctx,
                              int64_t max_chunks, bool json) {
    const loom_model_config *c = loom_engine_model(e);
    const int R = loom_engine_options_of(e)->batch_rows;
    loom_tokenizer *tok = NULL;
    loom_tokens ids = {0};
    loom_strbuf text = {0};
    int32_t *chunk = malloc(sizeof(int32_t) * (size_t)ctx);
    float *buf = malloc(sizeof(float) * (size_t)R * c->vocab);
    loom_status st = chunk && buf ? NULL : loom_error(LOOM_ERR_NOMEM, "out of memory for %d rows of logits", R);
    if (!st) st = loom_tokenizer_create(g, &tok);
    if (!st) st = loom_read_file(file, &text);
    const double t0 = loom_now_s();
    if (!st) st = loom_tokenize(tok, text.data ? text.data : "", text.len, true, false, &ids);
    const double t_tok = loom_now_s() - t0;
    int64_t n_chunks = ids.n / (size_t)ctx;
    if (!st && n_chunks < 2 && (int64_t)ids.n < 2 * (int64_t)ctx)
        st = loom_error(LOOM_ERR_INVALID, "%s: %zu tokens; perplexity with a context of %d needs at least %d (two chunks)",
                        file, ids.n, ctx, 2 * ctx);
    if (max_chunks > 0 && n_chunks > max_chunks) n_chunks = max_chunks;
    const bool bos = loom_tokenizer_adds_bos(tok) && loom_tokenizer_bos(tok) != LOOM_TOKEN_NULL;
    double nll = 0, nll2 = 0;
    int64_t count = 0;
    const double t1 = loom_now_s();
    if (!st)
        fprintf(stderr, "perplexity: %zu tokens (%.2f s to tokenize), %lld chunks of %d, scoring positions %d..%d of each\n",
                ids.n, t_tok, (long long)n_chunks, ctx, ctx / 2, ctx - 2);
    for (int64_t k = 0; k < n_chunks && !st; k++) {
        memcpy(chunk, ids.ids + (size_t)k * ctx, sizeof(int32_t) * (size_t)ctx);
        if (bos) chunk[0] = loom_tokenizer_bos(tok);
        ppl_chunk pc = {chunk, ctx, ctx / 2, c->vocab, 0, 0, 0};
        st = loom_engine_score_chunks(e, chunk, ctx, buf, score_rows, &pc);
        if (st) break;
        nll += pc.nll, nll2 += pc.nll2, count += pc.count;
        fprintf(stderr, "[%lld]%.4f,", (long long)(k + 1), exp(nll / (double)count));
        fflush(stderr);
    }
    const double secs = loom_now_s() - t1;
    if (!st) {
        fputc('\n', stderr);
        const double mean = nll / (double)count, var = nll2 / (double)count - mean * mean;
        const double ppl = exp(mean), err = count > 1 && var > 0 ? ppl * sqrt(var / (double)(count - 1)) : 0;
        const double tps = secs > 0 ? (double)(n_chunks * ctx) / secs : 0;
        const char *name = strrchr(model, '/') ? strrchr(model, '/') + 1 : model;
        if (json)
            printf("{\"model\": \"%s\", \"file_tokens\": %zu, \"ctx\": %d, \"chunks\": %lld, \"scored\": %lld, "
                   "\"nll\": %.6f, \"ppl\": %.6f, \"ppl_error\": %.6f, \"seconds\": %.3f, \"tokens_per_s\": %.1f}\n",
                   name, ids.n, ctx, (long long)n_chunks, (long long)count, mean, ppl, err, secs, tps);
        else
            printf("PPL = %.4f +/- %.5f over %lld tokens (%lld chunks of %d; %.1f s, %.1f tokens/s evaluated)\n", ppl,
                   err, (long long)count, (long long)n_chunks, ctx, secs, tps);
        if (fflush(stdout) != 0) st = loom_error(LOOM_ERR_IO, "cannot write to stdout");
    }
    loom_strbuf_free(&text);
    loom_tokens_free(&ids);
    loom_tokenizer_free(tok);
    free(chunk);
    free(buf);
    return st;
}

int cmd_perplexity(int argc, char **argv) {
    const char *model = NULL, *file = NULL, *kv = "f16";
    int64_t threads = loom_cpu_count(), batch = 512, tp = 1, pp = 1, ctx = 512, chunks = 0;
    double watchdog = 30;
    bool json = false;
    static loom_lora_args lora; /* static: 8 KiB of paths */
    const loom_arg args[] = {
        {"--model", LOOM_ARG_STR, &model, "PATH", "GGUF model (every rank opens its own copy)"},
        {"--file", LOOM_ARG_STR, &file, "PATH", "the text to score (UTF-8)"},
        {"--ctx-size", LOOM_ARG_INT, &ctx, "N", "tokens per chunk (llama-perplexity's -c)"},
        {"--chunks", LOOM_ARG_INT, &chunks, "N", "score at most N chunks; 0 = all that fit"},
        {"--threads", LOOM_ARG_INT, &threads, "N", "threads per rank"},
        {"--batch", LOOM_ARG_INT, &batch, "N", "rows per forward pass (a chunk goes through in pieces of this)"},
        {"--kv-type", LOOM_ARG_STR, &kv, "T", LOOM_KV_TYPE_HELP},
        LOOM_GRID_ARGS(tp, pp, watchdog),
        LOOM_LORA_ARGS(lora),
        {"--json", LOOM_ARG_FLAG, &json, NULL, "print the result as one JSON object"},
    };
    loom_args_result ar = loom_args_parse(
        "perplexity --model PATH --file PATH [--ctx-size N] [--chunks N]",
        "Prints a model's perplexity over a text, chunk by chunk as llama.cpp's llama-perplexity\n"
        "computes it (the second half of each --ctx-size chunk scored), so the figures compare.",
        args, (int)(sizeof args / sizeof args[0]), argc, argv);
    if (ar != LOOM_ARGS_OK) return ar == LOOM_ARGS_HELP ? 0 : 2;
    if (!model || !file) return loom_usage_error("perplexity: --model and --file are required");
    if (ctx < 4 || ctx > (1 << 24)) return loom_usage_error("perplexity: --ctx-size must be 4..16777216");
    if (chunks < 0) return loom_usage_error("perplexity: --chunks must be >= 0");
    if (threads < 1 || threads > 1024) return loom_usage_error("perplexity: --threads must be 1..1024");
    if (batch < 1 || batch > 65536) return loom_usage_error("perplexity: --batch must be 1..65536");
    if (loom_grid_check("perplexity", tp, pp, watchdog)) return 2;
    if (loom_lora_options("perplexity", &lora, false)) return 2;
    loom_type kvt;
    if (loom_parse_kv_type("perplexity", kv, &kvt)) return 2;
    loom_cluster_options co = {.model = model, .tp = (int)tp, .pp = (int)pp, .watchdog_timeout_s = watchdog};
    co.engine = loom_engine_defaults();
    co.lora = lora.spec, co.n_lora = lora.n;
    co.engine.n_threads = (int)threads;
    co.engine.ctx_size = (int)ctx;
    co.engine.max_seqs = 1;
    co.engine.batch_rows = (int)(batch < ctx ? batch : ctx);
    co.engine.kv_type = kvt;
    loom_cluster *cluster = NULL;
    loom_status st = loom_cluster_start(&co, &cluster);
    int rc = 1;
    loom_engine *e = NULL;
    if (!st) st = loom_cluster_engine(cluster, NULL, NULL, NULL, &e);
    if (!st && loom_engine_model(e)->encoder)
        st = loom_error(LOOM_ERR_UNSUPPORTED, "%s is an encoder (%s): it predicts no tokens; use loom embed", model,
                        loom_engine_model(e)->arch_name);
    if (!st) {
        bool coord = loom_cluster_is_coordinator(cluster);
        if (coord) st = coordinate(e, loom_cluster_model(cluster), model, file, (int)ctx, chunks, json);
        else st = loom_engine_work(e);
        if (st && loom_cluster_size(cluster) > 1) loom_cluster_abort(cluster, "perplexity", st);
        if (!st && coord) st = loom_engine_shutdown(e);
        if (!st) rc = 0;
    }
    if (st) rc = loom_fail("perplexity", st);
    loom_engine_free(e);
    loom_cluster_free(cluster);
    return rc;
}
