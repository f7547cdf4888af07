/*
 * launch/cmd_embed.c — `loom embed`: sentence embeddings of an encoder model
 * (bert, nomic-bert) or a decoder converted as one (a pooling type in its GGUF:
 * Qwen3-Embedding), on one rank or a cluster (--tp --pp under mpirun).
 *
 * Each text (--text, repeatable by a file of one text per line) is
 * tokenized as the model says (BOS/CLS and EOS/SEP when it adds them),
 * encoded in one batch (every token sees every other), pooled as the GGUF
 * says (<arch>.pooling_type; --pooling overrides) and scaled to unit length
 * unless --no-normalize. Output: one line of numbers per text, or with
 * --json {"model": ..., "pooling": ..., "data": [{"index": i, "tokens": n,
 * "embedding": [...]}, ...]}. Pooling "none" gives every token's vector
 * ("embedding" is then a list of lists).
 *
 * A reranker (rank pooling) with --query instead scores each text as a
 * document for the query, the pair built as llama-server builds it
 * (loom_tokenize_rerank): one score a line (its labels' outputs, where it
 * has several), or with --json {"model", "query", "data": [{"index",
 * "tokens", "score", "scores"}, ...]} in the texts' order.
 *
 * Texts (or pairs) share steps, as many as the batch rows and the slots
 * hold (loom_engine_step_texts), the weights read once for them all.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launch/args.h"
#include "launch/commands.h"
#include "launch/launch_util.h"
#include "parallel/cluster.h"
#include "parallel/engine.h"
#include "runtime/pooling.h"
#include "runtime/threadpool.h"
#include "runtime/text/tokenizer.h"

/* Appends a float array (%.9g: round-trips): a JSON array, or numbers separated by spaces. */
static loom_status put_vec(loom_strbuf *b, const float *v, int n, bool json) {
    char num[32];
    if (json) LOOM_TRY(loom_strbuf_append(b, "[", 1));
    for (int d = 0; d < n; d++) {
        int k = snprintf(num, sizeof num, "%s%.9g", d ? (json ? "," : " ") : "", (double)v[d]);
        LOOM_TRY(loom_strbuf_append(b, num, (size_t)k));
    }
    return json ? loom_strbuf_append(b, "]", 1) : NULL;
}

typedef struct {
    const char *text, *file;
    char **texts; /* (n) */
    int n;
} embed_job;

/* Texts: --text, or the lines of --file (empty lines skipped). */
static loom_status read_texts(embed_job *j) {
    if (j->text) {
        j->texts = malloc(sizeof *j->texts);
        if (!j->texts || !(j->texts[0] = strdup(j->text))) return loom_error(LOOM_ERR_NOMEM, "out of memory");
        j->n = 1;
        return NULL;
    }
    loom_strbuf f = {0};
    LOOM_TRY(loom_read_file(j->file, &f));
    int cap = 0;
    loom_status st = NULL;
    for (char *p = f.data, *end = f.data + f.len; p < end && !st;) {
        char *nl = memchr(p, '\n', (size_t)(end - p)), *le = nl ? nl : end;
        if (le > p && le[-1] == '\r') le--;
        if (le > p) {
            if (j->n == cap) {
                cap = cap ? 2 * cap : 16;
                char **v = realloc(j->texts, sizeof *v * (size_t)cap);
                if (!v) st = loom_error(LOOM_ERR_NOMEM, "out of memory");
                else j->texts = v;
            }
            if (!st && !(j->texts[j->n] = strndup(p, (size_t)(le - p)))) st = loom_error(LOOM_ERR_NOMEM, "out of memory");
            if (!st) j->n++;
        }
        p = nl ? nl + 1 : end;
    }
    loom_strbuf_free(&f);
    if (!st && j->n == 0) st = loom_error(LOOM_ERR_INVALID, "%s: no texts (one per non-empty line)", j->file);
    return st;
}

static void free_tokens(int32_t **tk, int *tn, int n) {
    for (int i = 0; tk && i < n; i++) free(tk[i]);
    free(tk), free(tn);
}

/* Every text's tokens: as the model says, or with a query the pair as
 * llama-server builds it (loom_tokenize_rerank, with the model's rerank
 * template where it has one); each 1..R tokens. */
static loom_status tokenize_all(const loom_gguf *g, const embed_job *j, const char *query, int R, int32_t ***tk_out,
                                int **tn_out) {
    loom_tokenizer *tok = NULL;
    loom_tokens ids = {0};
    loom_str tm;
    const bool has_tmpl = query && loom_gguf_get_str(g, "tokenizer.chat_template.rerank", &tm);
    int32_t **tk = calloc((size_t)j->n, sizeof *tk);
    int *tn = calloc((size_t)j->n, sizeof *tn);
    loom_status st = tk && tn ? loom_tokenizer_create(g, &tok) : loom_error(LOOM_ERR_NOMEM, "out of memory");
    for (int i = 0; i < j->n && !st; i++) {
        ids.n = 0;
        st = query ? loom_tokenize_rerank(tok, has_tmpl ? tm.ptr : NULL, has_tmpl ? (size_t)tm.len : 0, query,
                                          strlen(query), j->texts[i], strlen(j->texts[i]), &ids)
                   : loom_tokenize(tok, j->texts[i], strlen(j->texts[i]), true, true, &ids);
        if (!st && (ids.n == 0 || (int)ids.n > R))
            st = loom_error(LOOM_ERR_INVALID, "%s %d is %zu tokens (1..%d: --batch)", query ? "the query with text" : "text",
                            i, ids.n, R);
        if (!st && !(tk[i] = malloc(ids.n * sizeof(int32_t)))) st = loom_error(LOOM_ERR_NOMEM, "out of memory");
        if (!st) memcpy(tk[i], ids.ids, ids.n * sizeof(int32_t)), tn[i] = (int)ids.n;
    }
    loom_tokens_free(&ids);
    loom_tokenizer_free(tok);
    if (st) free_tokens(tk, tn, j->n), tk = NULL, tn = NULL;
    *tk_out = tk, *tn_out = tn;
    return st;
}

/* The texts through the model, as many a step as its rows and slots hold
 * (loom_engine_step_texts: the weights read once for them all); text i's
 * rows (tn[i] of `width` floats: hidden states, or a reranker's outputs)
 * to each(user, i, rows), in order. */
static loom_status run_texts(loom_engine *e, int32_t *const *tk, const int *tn, int n, int width,
                             loom_status (*each)(void *user, int i, const float *rows), void *user) {
    float *buf = malloc(sizeof(float) * (size_t)loom_engine_options_of(e)->batch_rows * (size_t)width);
    loom_status st = buf ? NULL : loom_error(LOOM_ERR_NOMEM, "out of memory");
    for (int i0 = 0, i1; i0 < n && !st; i0 = i1) {
        i1 = i0 + loom_engine_step_texts(e, tn + i0, n - i0);
        st = loom_engine_score_texts(e, (const int32_t *const *)tk + i0, tn + i0, i1 - i0, buf);
        for (int i = i0, off = 0; i < i1 && !st; off += tn[i++]) st = each(user, i, buf + (size_t)off * width);
    }
    free(buf);
    return st;
}

typedef struct {
    loom_strbuf out;
    const loom_model_config *c;
    const int *tn;
    bool json, normalize;
    loom_pooling pool;
    float *vec; /* (dim) */
} emit_ctx;

/* A reranker's scores of one text as a document for the query. */
static loom_status emit_score(void *user, int i, const float *rows) {
    emit_ctx *x = user;
    const int W = x->c->n_cls_out;
    const float *v = rows + (size_t)(x->c->bidirectional ? 0 : x->tn[i] - 1) * W; /* a decoder's: the last row */
    if (x->json) {
        char head[96];
        int k = snprintf(head, sizeof head, "%s{\"index\":%d,\"tokens\":%d,\"score\":%.9g,\"scores\":", i ? "," : "", i,
                         x->tn[i], (double)v[0]);
        LOOM_TRY(loom_strbuf_append(&x->out, head, (size_t)k));
    }
    LOOM_TRY(put_vec(&x->out, v, W, x->json));
    return loom_strbuf_append(&x->out, x->json ? "}" : "\n", 1);
}

/* One text's embedding (pooling none: each token's). */
static loom_status emit_embedding(void *user, int i, const float *rows) {
    emit_ctx *x = user;
    const int n = x->tn[i], dim = x->c->dim;
    if (x->json) {
        char head[64];
        int k = snprintf(head, sizeof head, "%s{\"index\":%d,\"tokens\":%d,\"embedding\":", i ? "," : "", i, n);
        LOOM_TRY(loom_strbuf_append(&x->out, head, (size_t)k));
    }
    if (x->pool == LOOM_POOL_NONE) {
        if (x->json) LOOM_TRY(loom_strbuf_append(&x->out, "[", 1));
        for (int t = 0; t < n; t++) {
            float *h = x->vec; /* (rows are the step's buffer: normalised in a copy) */
            memcpy(h, rows + (size_t)t * dim, sizeof(float) * (size_t)dim);
            if (x->normalize) loom_embedding_normalize(h, dim);
            if (x->json && t) LOOM_TRY(loom_strbuf_append(&x->out, ",", 1));
            LOOM_TRY(put_vec(&x->out, h, dim, x->json));
            if (!x->json) LOOM_TRY(loom_strbuf_append(&x->out, "\n", 1));
        }
        if (x->json) LOOM_TRY(loom_strbuf_append(&x->out, "]", 1));
    } else {
        loom_embedding_pool(x->pool, rows, n, dim, x->normalize, x->vec);
        LOOM_TRY(put_vec(&x->out, x->vec, dim, x->json));
    }
    return x->json || x->pool != LOOM_POOL_NONE ? loom_strbuf_append(&x->out, x->json ? "}" : "\n", 1) : NULL;
}

/* Every text's embedding, or with a query (a reranker) its score as a
 * document for it, written to stdout once all are done. */
static loom_status coordinate(loom_engine *e, const loom_gguf *g, const char *model, const embed_job *j, const char *query,
                              loom_pooling pool, bool normalize, bool json) {
    const loom_model_config *c = loom_engine_model(e);
    emit_ctx x = {.c = c, .json = json, .normalize = normalize, .pool = pool};
    int32_t **tk = NULL;
    int *tn = NULL;
    x.vec = malloc(sizeof(float) * (size_t)c->dim);
    loom_status st = x.vec ? NULL : loom_error(LOOM_ERR_NOMEM, "out of memory");
    const char *name = strrchr(model, '/') ? strrchr(model, '/') + 1 : model;
    if (!st && json) {
        st = loom_strbuf_append(&x.out, "{\"model\":", 9);
        if (!st) st = loom_json_escape(name, strlen(name), &x.out);
        if (!st && query) {
            st = loom_strbuf_append(&x.out, ",\"query\":", 9);
            if (!st) st = loom_json_escape(query, strlen(query), &x.out);
            if (!st) st = loom_strbuf_append(&x.out, ",\"data\":[", 9);
        } else if (!st) {
            char head[96];
            int k = snprintf(head, sizeof head, ",\"pooling\":\"%s\",\"normalized\":%s,\"data\":[",
                             loom_pooling_name(pool), normalize ? "true" : "false");
            st = loom_strbuf_append(&x.out, head, (size_t)k);
        }
    }
    if (!st) st = tokenize_all(g, j, query, loom_engine_options_of(e)->batch_rows, &tk, &tn);
    x.tn = tn;
    if (!st) st = run_texts(e, tk, tn, j->n, query ? c->n_cls_out : c->dim, query ? emit_score : emit_embedding, &x);
    if (!st && json) st = loom_strbuf_append(&x.out, "]}\n", 3);
    if (!st && (fwrite(x.out.data, 1, x.out.len, stdout) != x.out.len || fflush(stdout) != 0))
        st = loom_error(LOOM_ERR_IO, "cannot write to stdout");
    loom_strbuf_free(&x.out);
    free_tokens(tk, tn, j->n);
    free(x.vec);
    return st;
}


int cmd_embed(int argc, char **argv) {
    const char *model = NULL, *text = NULL, *file = NULL, *pooling = NULL, *query = NULL;
    int64_t threads = loom_cpu_count(), batch = 512, tp = 1, pp = 1;
    double watchdog = 30;
    bool json = false, no_normalize = false;
    const loom_arg args[] = {
        {"--model", LOOM_ARG_STR, &model, "PATH", "GGUF embedding model (bert, nomic-bert, or a decoder with a pooling type; every rank opens its own copy)"},
        {"--text", LOOM_ARG_STR, &text, "TEXT", "the text to embed"},
        {"--file", LOOM_ARG_STR, &file, "PATH", "texts to embed, one per line"},
        {"--pooling", LOOM_ARG_STR, &pooling, "P", "none, mean, cls or last (default: the model's pooling_type)"},
        {"--query", LOOM_ARG_STR, &query, "TEXT", "a reranker: score each text as a document for this query"},
        {"--no-normalize", LOOM_ARG_FLAG, &no_normalize, NULL, "keep the pooled vector's length (default: unit L2)"},
        {"--json", LOOM_ARG_FLAG, &json, NULL, "print one JSON object instead of lines of numbers"},
        {"--threads", LOOM_ARG_INT, &threads, "N", "threads per rank"},
        {"--batch", LOOM_ARG_INT, &batch, "N", "tokens of one text at most (a text is encoded in one batch)"},
        LOOM_GRID_ARGS(tp, pp, watchdog),
    };
    loom_args_result ar = loom_args_parse(
        "embed --model PATH (--text TEXT | --file PATH) [--pooling P | --query TEXT] [--json]",
        "Prints the embedding of each text by an embedding model (bert, nomic-bert, or a decoder\n"
        "with a pooling type, as Qwen3-Embedding): the last layer's hidden states (a decoder's after\n"
        "its output norm) pooled as the model says, scaled to unit length. A reranker (rank pooling)\n"
        "with --query: each text's score as a document for the query.",
        args, (int)(sizeof args / sizeof args[0]), argc, argv);
    if (ar != LOOM_ARGS_OK) return ar == LOOM_ARGS_HELP ? 0 : 2;
    if (!model) return loom_usage_error("embed: --model is required");
    if (!text == !file) return loom_usage_error("embed: give exactly one of --text and --file");
    if (threads < 1 || threads > 1024) return loom_usage_error("embed: --threads must be 1..1024");
    if (batch < 1 || batch > 65536) return loom_usage_error("embed: --batch must be 1..65536");
    if (loom_grid_check("embed", tp, pp, watchdog)) return 2;
    loom_pooling pool = LOOM_POOL_MEAN;
    if (pooling && !loom_pooling_parse(pooling, &pool))
        return loom_usage_error("embed: --pooling must be none, mean, cls or last");

    embed_job job = {text, file, NULL, 0};
    loom_status st = read_texts(&job);
    if (st) return loom_fail("embed", st);
    loom_cluster_options co = {.model = model, .tp = (int)tp, .pp = (int)pp, .watchdog_timeout_s = watchdog};
    co.engine = loom_engine_defaults();
    co.engine.n_threads = (int)threads;
    co.engine.ctx_size = (int)batch;
    co.engine.max_seqs = 16; /* texts a step at most (with --batch rows; coordinate) */
    co.engine.batch_rows = (int)batch;
    co.engine.kv_type = LOOM_TYPE_F32;
    loom_cluster *cluster = NULL;
    st = loom_cluster_start(&co, &cluster);
    int rc = 1;
    loom_engine *e = NULL;
    if (!st) st = loom_cluster_engine(cluster, NULL, NULL, NULL, &e);
    if (!st && !loom_engine_model(e)->encoder)
        st = loom_error(LOOM_ERR_UNSUPPORTED, "%s is a %s model without a pooling type, not an embedding model: use "
                        "loom generate",
                        model, loom_engine_model(e)->arch_name);
    const bool ranks = !st && loom_engine_model(e)->pooling == LOOM_POOL_RANK;
    if (ranks && !query)
        st = loom_error(LOOM_ERR_UNSUPPORTED, "%s is a reranker (pooling type rank): it scores documents for a query "
                        "(--query), not embeddings", model);
    if (!st && !ranks && query)
        st = loom_error(LOOM_ERR_UNSUPPORTED, "%s is not a reranker (no rank pooling): --query needs one", model);
    if (!st && ranks && pooling) st = loom_error(LOOM_ERR_INVALID, "--pooling does not apply to a reranker");
    if (!st) {
        bool coord = loom_cluster_is_coordinator(cluster);
        if (!pooling) pool = loom_engine_model(e)->pooling;
        if (coord) st = coordinate(e, loom_cluster_model(cluster), model, &job, query, pool, !no_normalize, json);
        else st = loom_engine_work(e);
        if (st && loom_cluster_size(cluster) > 1) loom_cluster_abort(cluster, "embed", st);
        if (!st && coord) st = loom_engine_shutdown(e);
        if (!st) rc = 0;
    }
    if (st) rc = loom_fail("embed", st);
    for (int i = 0; i < job.n; i++) free(job.texts[i]);
    free(job.texts);
    loom_engine_free(e);
    loom_cluster_free(cluster);
    return rc;
}
